//! Helpers shared by the `serve*` tests (included with `#[path]`): start
//! `qmpkit serve`, talk QMP over its unix socket line by line.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

pub fn qmpkit() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_qmpkit"))
}

/// A fresh directory for sockets.
pub fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("qmpkit-serve-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

/// A running `qmpkit serve`, killed on drop.
pub struct Serve {
    pub child: Child,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn spawn(args: &[&str]) -> Serve {
    let child = Command::new(qmpkit())
        .arg("serve")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn qmpkit serve");
    Serve { child }
}

#[allow(unused_imports)]
pub use qmpkit_testkit::cmd::wait_for;

/// A line-based QMP connection.
pub struct Qmp {
    r: BufReader<UnixStream>,
    w: UnixStream,
    pub greeting: Value,
    /// The greeting exactly as sent (with its CRLF).
    pub greeting_line: String,
    /// Events received while waiting for replies.
    pub events: Vec<Value>,
}

impl Qmp {
    pub fn connect(path: &Path) -> Qmp {
        let s = qmpkit_testkit::cmd::connect_unix(path);
        s.set_read_timeout(Some(Duration::from_secs(10))).ok();
        let w = s.try_clone().expect("clone");
        let mut q = Qmp {
            r: BufReader::new(s),
            w,
            greeting: Value::Null,
            greeting_line: String::new(),
            events: Vec::new(),
        };
        q.r.read_line(&mut q.greeting_line).expect("greeting");
        q.greeting = serde_json::from_str(&q.greeting_line).expect("greeting JSON");
        let r = q.cmd("qmp_capabilities", json!({}));
        assert_eq!(r, json!({"return": {}}));
        q
    }

    pub fn read(&mut self) -> Option<Value> {
        let mut line = String::new();
        match self.r.read_line(&mut line) {
            Ok(0) | Err(_) => None,
            Ok(_) => serde_json::from_str(&line).ok(),
        }
    }

    /// Send a command, answer its reply (events meanwhile go to `events`).
    pub fn cmd(&mut self, name: &str, args: Value) -> Value {
        let mut req = json!({"execute": name});
        if args.as_object().is_some_and(|o| !o.is_empty()) {
            req["arguments"] = args;
        }
        let mut line = req.to_string();
        line.push('\n');
        self.w.write_all(line.as_bytes()).expect("write");
        loop {
            let v = self.read().expect("reply");
            if v.get("event").is_some() {
                self.events.push(v);
            } else {
                return v;
            }
        }
    }

    /// The `return` of a command that must succeed.
    pub fn ok(&mut self, name: &str, args: Value) -> Value {
        let r = self.cmd(name, args);
        match r.get("return") {
            Some(v) => v.clone(),
            None => panic!("{name}: {r}"),
        }
    }

    /// Wait for event `name` (already received or coming).
    pub fn event(&mut self, name: &str) -> Value {
        if let Some(i) = self.events.iter().position(|e| e["event"] == name) {
            return self.events.remove(i);
        }
        loop {
            let v = self.read().unwrap_or_else(|| panic!("no {name} event"));
            if v["event"] == name {
                return v;
            }
            if v.get("event").is_some() {
                self.events.push(v);
            }
        }
    }

    pub fn event_names(&self) -> Vec<String> {
        self.events
            .iter()
            .filter_map(|e| e["event"].as_str().map(str::to_string))
            .collect()
    }
}
