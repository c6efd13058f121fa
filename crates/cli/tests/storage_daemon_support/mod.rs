//! Helpers shared by the storage daemon tests (included with `#[path]`): start
//! `qmpkit storage-daemon` (as a binary named `qemu-storage-daemon`) or the real daemon with
//! a command line, talk QMP to it line by line.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;

/// qemu-storage-daemon 10.0.2, qemu-img and qemu-io, or the test is skipped.
#[allow(unused_macros)]
macro_rules! qemu_tools {
    () => {{
        let real = qmpkit_testkit::program_or_skip!("qemu-storage-daemon");
        let img = qmpkit_testkit::program_or_skip!("qemu-img");
        let io = qmpkit_testkit::program_or_skip!("qemu-io");
        let v = support::run(&real, &["--version"]);
        if !String::from_utf8_lossy(&v.stdout).contains("version 10.0.2") {
            qmpkit_testkit::skip!("qemu-storage-daemon is not 10.0.2");
        }
        (real, img, io)
    }};
}

/// A fresh directory.
pub fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("qmpkit-qsd-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

/// A symlink named `qemu-storage-daemon` to the binary, in `dir`.
pub fn ours(dir: &Path) -> PathBuf {
    let p = dir.join("qemu-storage-daemon");
    let _ = std::fs::remove_file(&p);
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_qmpkit"), &p).expect("symlink");
    p
}

/// Run `program` to its end with `args` (no daemon started: a probe or an error).
pub fn run(program: &Path, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", program.display()))
}

/// A running daemon, killed on drop.
pub struct Daemon {
    pub child: Child,
    /// Its monitor's socket.
    pub socket: PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Start `program` in `dir` with a QMP monitor on `dir/qmp.sock` and `args` after it.
pub fn start(program: &Path, dir: &Path, args: &[String]) -> Daemon {
    let socket = dir.join("qmp.sock");
    let _ = std::fs::remove_file(&socket);
    let child = Command::new(program)
        .current_dir(dir)
        .arg("--chardev")
        .arg(format!(
            "socket,id=mon0,path={},server=on,wait=off",
            socket.display()
        ))
        .args(["--monitor", "chardev=mon0"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(
            std::fs::File::create(dir.join("stderr.log"))
                .map(Stdio::from)
                .unwrap_or_else(|_| Stdio::null()),
        )
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e}", program.display()));
    qmpkit_testkit::cmd::wait_for(&socket);
    Daemon { child, socket }
}

/// A QMP connection that keeps each message's text.
pub struct Qmp {
    r: BufReader<UnixStream>,
    w: UnixStream,
    pub greeting: String,
    /// The socket's path, for messages.
    name: String,
}

impl Qmp {
    /// Connect and negotiate.
    pub fn connect(path: &Path) -> Qmp {
        let s = qmpkit_testkit::cmd::connect_unix(path);
        s.set_read_timeout(Some(Duration::from_secs(20))).ok();
        let w = s.try_clone().expect("clone");
        let mut q = Qmp {
            r: BufReader::new(s),
            w,
            greeting: String::new(),
            name: path.display().to_string(),
        };
        // The greeting (anything a daemon wrote before it is not QMP).
        q.greeting = loop {
            let l = q.line().expect("greeting");
            if l.starts_with("{\"QMP\"") {
                break l;
            }
        };
        let (mut reply, _) = q.send(r#"{"execute": "qmp_capabilities"}"#);
        // qemu-storage-daemon 10.0.2 greets a client that connects while it starts twice,
        // now and then (about 1 in 150 starts).
        while reply == q.greeting {
            reply = q.line().expect("reply to qmp_capabilities");
        }
        assert_eq!(reply, r#"{"return": {}}"#);
        q
    }

    /// One line, without its line end.
    pub fn line(&mut self) -> Option<String> {
        let mut l = String::new();
        match self.r.read_line(&mut l) {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(l.trim_end_matches(['\r', '\n']).to_string()),
        }
    }

    /// Send one request line; its reply and the events that came before it, as text.
    pub fn send(&mut self, req: &str) -> (String, Vec<String>) {
        self.w.write_all(req.as_bytes()).expect("write");
        self.w.write_all(b"\n").expect("write");
        let mut events = Vec::new();
        loop {
            let l = self
                .line()
                .unwrap_or_else(|| panic!("no reply from {} to {req}", self.name));
            let is_event = serde_json::from_str::<Value>(&l)
                .map(|v| v.get("event").is_some())
                .unwrap_or(false);
            if is_event {
                events.push(l);
            } else {
                return (l, events);
            }
        }
    }

    /// The `return` of a command that must succeed.
    pub fn ok(&mut self, req: &str) -> Value {
        let (r, _) = self.send(req);
        let v: Value = serde_json::from_str(&r).expect("reply JSON");
        match v.get("return") {
            Some(x) => x.clone(),
            None => panic!("{req}: {r}"),
        }
    }
}
