//! Helpers shared by the tests of the QMP tools (`qmp`, `proxy`, `replay`, `shell`), included
//! with `#[path]`: a fresh directory, a live qemu-storage-daemon or `qmpkit serve`, and running
//! `qmpkit` with input.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub fn qmpkit() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_qmpkit"))
}

/// A fresh directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let d = std::env::temp_dir().join(format!("qmpkit-tools-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("temp dir");
        TempDir(d)
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A child process killed on drop.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub use qmpkit_testkit::cmd::wait_for;

/// `c` started with no standard input or output, once its monitor listens on `sock`.
pub fn monitor(mut c: Command, sock: &Path) -> Proc {
    let child = c
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {:?}: {e}", c.get_program()));
    // Guarded before the wait, so a monitor that never listens is killed with the test.
    let guard = Proc(child);
    wait_for(sock);
    guard
}

/// qemu-storage-daemon with a QMP monitor on `sock`.
pub fn qsd(program: &Path, sock: &Path) -> Proc {
    let mut c = Command::new(program);
    c.arg("--chardev")
        .arg(format!(
            "socket,id=m,path={},server=on,wait=off",
            sock.display()
        ))
        .args(["--monitor", "chardev=m,mode=control"]);
    monitor(c, sock)
}

/// `qmpkit serve` with its monitor on `sock`.
pub fn serve(sock: &Path) -> Proc {
    let mut c = Command::new(qmpkit());
    c.args(["serve", "--qmp"])
        .arg(format!("unix:{},server=on,wait=off", sock.display()));
    monitor(c, sock)
}

/// Output of one run of `qmpkit ARGS` with `stdin`.
#[derive(Debug)]
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

pub fn run(args: &[&str], stdin: &str) -> Out {
    let mut child = Command::new(qmpkit())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run qmpkit");
    let mut i = child.stdin.take().expect("stdin");
    let input = stdin.as_bytes().to_vec();
    let feeder = std::thread::spawn(move || {
        let _ = i.write_all(&input);
    });
    let out = child.wait_with_output().expect("wait");
    let _ = feeder.join();
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The JSON lines of a text.
pub fn json_lines(s: &str) -> Vec<serde_json::Value> {
    s.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// A raw QMP connection read line by line (the bytes as the server sent them).
pub struct Line {
    r: std::io::BufReader<std::os::unix::net::UnixStream>,
    w: std::os::unix::net::UnixStream,
    /// The greeting line as sent.
    pub greeting: String,
}

impl Line {
    /// Connect and read the greeting (not negotiated).
    pub fn connect(path: &Path) -> Line {
        use std::io::BufRead;
        let s = qmpkit_testkit::cmd::connect_unix(path);
        s.set_read_timeout(Some(Duration::from_secs(10))).ok();
        let w = s.try_clone().expect("clone");
        let mut r = std::io::BufReader::new(s);
        let mut greeting = String::new();
        r.read_line(&mut greeting).expect("greeting");
        Line { r, w, greeting }
    }

    /// Write bytes as they are (no line end added).
    pub fn w_raw(&mut self, bytes: &[u8]) {
        self.w.write_all(bytes).expect("write");
    }

    /// Write bytes as they are, `fds` passed with their first byte (SCM_RIGHTS).
    pub fn w_fds(&mut self, bytes: &[u8], fds: &[std::os::fd::OwnedFd]) {
        use std::os::fd::AsRawFd;
        let n =
            qmpkit_client::fdpass::send_with_fds(self.w.as_raw_fd(), bytes, fds).expect("sendmsg");
        self.w.write_all(&bytes[n..]).expect("write");
    }

    pub fn send(&mut self, text: &str) {
        self.w.write_all(text.as_bytes()).expect("write");
        self.w.write_all(b"\n").expect("write");
    }

    /// The next line as sent (with its line end); `None` at the end or after the read timeout.
    pub fn next(&mut self) -> Option<String> {
        use std::io::BufRead;
        let mut s = String::new();
        match self.r.read_line(&mut s) {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(s),
        }
    }

    /// The next line as JSON.
    pub fn value(&mut self) -> serde_json::Value {
        let l = self.next().expect("a line");
        serde_json::from_str(&l).unwrap_or_else(|e| panic!("{e}: {l}"))
    }

    /// The next message that is not an event; events meanwhile are pushed on `events`.
    pub fn reply(&mut self, events: &mut Vec<serde_json::Value>) -> serde_json::Value {
        loop {
            let v = self.value();
            if v.get("event").is_some() {
                events.push(v);
            } else {
                return v;
            }
        }
    }

    pub fn set_timeout(&self, t: Duration) {
        self.w.set_read_timeout(Some(t)).ok();
    }
}
