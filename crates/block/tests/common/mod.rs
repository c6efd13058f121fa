//! A minimal QMP client for the live qemu-storage-daemon the tests compare against.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Command;

use serde_json::{json, Value};

pub struct Qmp {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    pub events: Vec<Value>,
}

impl Qmp {
    pub fn connect(socket: &Path) -> Qmp {
        let s = qmpkit_testkit::cmd::connect_unix(socket);
        // A fresh daemon's monitor has been seen never to read its first command: fail
        // rather than wait for ever.
        s.set_read_timeout(Some(std::time::Duration::from_secs(30)))
            .unwrap();
        let writer = s.try_clone().unwrap();
        let mut q = Qmp {
            reader: BufReader::new(s),
            writer,
            events: Vec::new(),
        };
        let mut greeting = String::new();
        q.reader.read_line(&mut greeting).unwrap();
        q.call("qmp_capabilities", json!({})).unwrap();
        q
    }

    /// Ok(return) or Err(desc).
    pub fn call(&mut self, cmd: &str, args: Value) -> Result<Value, String> {
        let msg = json!({"execute": cmd, "arguments": args});
        writeln!(self.writer, "{msg}").unwrap();
        loop {
            let mut line = String::new();
            if self.reader.read_line(&mut line).unwrap() == 0 {
                panic!("qemu-storage-daemon closed the monitor");
            }
            let v: Value = serde_json::from_str(&line).unwrap();
            if v.get("event").is_some() {
                self.events.push(v);
                continue;
            }
            if let Some(e) = v.get("error") {
                return Err(e["desc"].as_str().unwrap_or_default().to_string());
            }
            return Ok(v["return"].clone());
        }
    }

    /// Events (name, data) seen so far, in order, forgetting them.
    pub fn take_events(&mut self) -> Vec<(String, Value)> {
        std::mem::take(&mut self.events)
            .into_iter()
            .map(|e| {
                (
                    e["event"].as_str().unwrap_or_default().to_string(),
                    e["data"].clone(),
                )
            })
            .collect()
    }
}

pub fn run(prog: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(prog).args(args).output().expect("run program");
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// `qemu-img check` finds the image clean (sharing it: the graph may hold it locked).
pub fn check_clean(qemu_img: &Path, path: &Path) {
    let (ok, text) = run(qemu_img, &["check", "-U", path.to_str().unwrap()]);
    assert!(
        ok && text.contains("No errors were found"),
        "qemu-img check {}: {text}",
        path.display()
    );
}

/// A live qemu-storage-daemon with its monitor, or a skip when it cannot start.
pub fn start_qsd() -> Option<(qmpkit_testkit::qsd::Qsd, Qmp)> {
    match qmpkit_testkit::qsd::start() {
        Ok(q) => {
            let m = Qmp::connect(&q.socket);
            Some((q, m))
        }
        Err(why) => {
            qmpkit_testkit::skip::skip(&why);
            None
        }
    }
}

/// A qcow2 format node over an inline file node.
pub fn qcow2_node(path: &Path, name: &str) -> qmpkit_block::BlockdevOptions {
    use qmpkit_block::graph::{BlockdevOptions, BlockdevRef, Driver};
    BlockdevOptions::format(
        Driver::Qcow2,
        BlockdevRef::Inline(Box::new(BlockdevOptions::file(path))),
    )
    .named(name)
}

/// A graph with a raw node `r0` over a fresh 1 MiB file in `dir`.
pub fn graph_with_raw(dir: &Path) -> qmpkit_block::BlockGraph {
    use qmpkit_block::graph::{BlockdevOptions, BlockdevRef, Driver};
    let raw = dir.join("r.raw");
    std::fs::write(&raw, vec![0u8; 1 << 20]).unwrap();
    let mut g = qmpkit_block::BlockGraph::default();
    g.add(
        &BlockdevOptions::format(
            Driver::Raw,
            BlockdevRef::Inline(Box::new(BlockdevOptions::file(&raw))),
        )
        .named("r0"),
    )
    .unwrap();
    g
}

/// `qemu-img create -q -f qcow2 [-o OPTIONS] PATH SIZE`, which must succeed.
pub fn qemu_img_create(qemu_img: &Path, path: &Path, options: Option<&str>, size: &str) {
    let mut args = vec!["create", "-q", "-f", "qcow2"];
    if let Some(o) = options {
        args.extend(["-o", o]);
    }
    args.extend([path.to_str().unwrap(), size]);
    let (ok, text) = run(qemu_img, &args);
    assert!(ok, "{text}");
}
