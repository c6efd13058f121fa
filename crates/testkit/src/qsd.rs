//! A live qemu-storage-daemon 10.0.2 with its QMP monitor on a unix socket.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The daemon and its directory (both gone when this is dropped).
pub struct Qsd {
    child: Child,
    dir: PathBuf,
    /// The monitor's socket.
    pub socket: PathBuf,
}

impl Drop for Qsd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
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
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "qmpkit-qsd-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let socket = dir.join("qsd.sock");
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
    let q = Qsd { child, dir, socket };
    let t = Instant::now();
    while !q.socket.exists() {
        if t.elapsed() > Duration::from_secs(10) {
            return Err("qemu-storage-daemon did not listen".into());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(q)
}

/// The daemon's greeting line (from a connection opened and closed for it).
pub fn greeting(q: &Qsd) -> Vec<u8> {
    crate::differential::connect(&q.socket, crate::differential::Mode::Greeted).1
}
