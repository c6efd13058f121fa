//! Shared helpers for the client's integration tests: a qemu-storage-daemon fixture and a
//! runner for Python's qemu.qmp (tests/py/qmp_run.py).
#![allow(dead_code)]

pub mod mock;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A qemu-storage-daemon serving QMP on a unix socket in a temporary directory; killed on drop.
pub struct Qsd {
    child: Child,
    pub socket: PathBuf,
    pub dir: tempfile::TempDir,
}

impl Qsd {
    /// Start one, or `Err(reason)` when the program is not installed.
    pub fn start() -> Result<Qsd, String> {
        let dir = tempfile::tempdir().map_err(|e| format!("tempdir: {e}"))?;
        let socket = dir.path().join("qmp.sock");
        let child = Command::new("qemu-storage-daemon")
            .arg("--chardev")
            .arg(format!(
                "socket,path={},server=on,wait=off,id=m",
                socket.display()
            ))
            .arg("--monitor")
            .arg("chardev=m")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("qemu-storage-daemon not runnable: {e}"))?;
        let mut qsd = Qsd { child, socket, dir };
        let start = Instant::now();
        // The socket file appears just before the daemon listens; a probing connection would
        // take the daemon's one client slot, so look for the listening socket in /proc instead.
        while !listening(&qsd.socket) {
            if let Ok(Some(status)) = qsd.child.try_wait() {
                return Err(format!("qemu-storage-daemon exited: {status}"));
            }
            if start.elapsed() > Duration::from_secs(10) {
                return Err("qemu-storage-daemon did not create its socket".into());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(qsd)
    }

    /// True once the daemon has exited (waits up to `t`).
    pub fn exited_within(&mut self, t: Duration) -> bool {
        let start = Instant::now();
        while start.elapsed() < t {
            if let Ok(Some(_)) = self.child.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }
}

/// True when a unix socket bound to `path` is listening (`/proc/net/unix` flag __SO_ACCEPTCON),
/// or when /proc cannot tell and the file exists.
fn listening(path: &Path) -> bool {
    let Ok(table) = std::fs::read_to_string("/proc/net/unix") else {
        return path.exists();
    };
    let p = path.to_string_lossy();
    table.lines().any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.len() >= 8 && f[7] == p && f[3] == "00010000"
    })
}

impl Drop for Qsd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Start qemu-storage-daemon or print `skipped: …` and return from the test.
#[macro_export]
macro_rules! qsd_or_skip {
    () => {
        match common::Qsd::start() {
            Ok(q) => q,
            Err(reason) => {
                qmpkit_testkit::skip::skip(&format!("{reason}"));
                return;
            }
        }
    };
}

#[allow(unused_imports)]
pub use qmpkit_testkit::python::python;

pub fn qmp_run_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/qmp_run.py")
}

/// Run tests/py/qmp_run.py against `socket` with `extra` arguments, feeding `stdin`;
/// returns stdout's JSON lines.
pub fn run_python(
    python: &Path,
    socket: &Path,
    extra: &[&str],
    stdin: &str,
) -> Result<Vec<serde_json::Value>, String> {
    let mut child = Command::new(python)
        .arg(qmp_run_script())
        .arg(socket)
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", python.display()))?;
    if let Some(mut i) = child.stdin.take() {
        i.write_all(stdin.as_bytes())
            .map_err(|e| format!("stdin: {e}"))?;
    }
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!(
            "qmp_run.py failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).map_err(|e| format!("{e}: {l}")))
        .collect()
}

/// Poll a future exactly once, then drop it (the sharpest cancellation there is).
pub async fn poll_once<F: std::future::Future>(f: F) -> Option<F::Output> {
    let mut f = std::pin::pin!(f);
    std::future::poll_fn(|cx| {
        std::task::Poll::Ready(match f.as_mut().poll(cx) {
            std::task::Poll::Ready(v) => Some(v),
            std::task::Poll::Pending => None,
        })
    })
    .await
}

/// Connect, retrying while the server has created its socket but is not listening yet.
pub async fn connect_retry(path: &Path) -> qmpkit_client::Client {
    connect_retry_with(path, &qmpkit_client::ConnectOptions::default()).await
}

pub async fn connect_retry_with(
    path: &Path,
    opts: &qmpkit_client::ConnectOptions,
) -> qmpkit_client::Client {
    let start = Instant::now();
    loop {
        match opts.connect_unix(path).await {
            Ok(c) => return c,
            Err(qmpkit_client::Error::Io(e))
                if e.kind() == std::io::ErrorKind::ConnectionRefused
                    && start.elapsed() < Duration::from_secs(5) =>
            {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Err(e) => panic!("connect {}: {e}", path.display()),
        }
    }
}

/// Blocking `connect_retry`.
pub fn blocking_connect_retry(path: &Path) -> qmpkit_client::blocking::Client {
    let start = Instant::now();
    loop {
        match qmpkit_client::blocking::Client::connect_unix(path) {
            Ok(c) => return c,
            Err(qmpkit_client::Error::Io(e))
                if e.kind() == std::io::ErrorKind::ConnectionRefused
                    && start.elapsed() < Duration::from_secs(5) =>
            {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => panic!("connect {}: {e}", path.display()),
        }
    }
}
