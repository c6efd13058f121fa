//! A live qemu-storage-daemon 10.0.2 with its monitor on a unix socket, for the differential
//! tests, and the in-process server that stands for it (same schema, configuration, version
//! and package).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use qmpkit_server::{Registry, ServerOptions};

/// The daemon and its directory (both gone when this is dropped).
pub struct Qsd {
    child: Child,
    _dir: tempfile::TempDir,
    pub socket: PathBuf,
}

impl Drop for Qsd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts qemu-storage-daemon 10.0.2; the error is the reason to skip (not installed, another
/// version, no monitor socket).
pub fn start() -> Result<Qsd, String> {
    let out = Command::new("qemu-storage-daemon")
        .arg("--version")
        .output()
        .map_err(|e| format!("qemu-storage-daemon: {e}"))?;
    let v = String::from_utf8_lossy(&out.stdout);
    if !v.contains("version 10.0.2") {
        return Err(format!("qemu-storage-daemon is not 10.0.2 ({})", v.trim()));
    }
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let socket = dir.path().join("qsd.sock");
    let child = Command::new("qemu-storage-daemon")
        .arg("--chardev")
        .arg(format!(
            "socket,path={},server=on,wait=off,id=m",
            socket.display()
        ))
        .args(["--monitor", "chardev=m"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("qemu-storage-daemon: {e}"))?;
    let q = Qsd {
        child,
        _dir: dir,
        socket,
    };
    let t = Instant::now();
    while !q.socket.exists() {
        if t.elapsed() > Duration::from_secs(10) {
            return Err("qemu-storage-daemon did not listen".into());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(q)
}

/// An in-process server over qemu-storage-daemon 10.0.2's schema and build configuration,
/// greeting with the version and package of `greeting` (the daemon's greeting line).
pub fn twin(greeting: &[u8]) -> super::Running {
    let greeting: serde_json::Value = serde_json::from_slice(greeting).expect("greeting");
    let ver = &greeting["QMP"]["version"];
    let n = |k: &str| ver["qemu"][k].as_u64().unwrap_or(0);
    let root = qmpkit_testkit::data::path("qemu-ref");
    let schema = Arc::new(super::load_schema(
        &root.join("schema-10.0.2/storage-daemon/qapi/qapi-schema.json"),
    ));
    let cfg = root.join("introspection/cfg-qemu-storage-daemon-10.0.2.txt");
    super::start(
        schema,
        Registry::new(),
        ServerOptions {
            qemu_version: (n("major"), n("minor"), n("micro")),
            package: ver["package"].as_str().unwrap_or("").to_string(),
            introspection: super::cfg(&[cfg.as_path()]),
            ..ServerOptions::default()
        },
    )
}
