//! Quorum nodes and `x-blockdev-change` on `qmpkit storage-daemon` beside the live
//! qemu-storage-daemon 10.0.2: the same requests, in order, to both; their replies and events
//! must be the same bytes once the directories (`$DIR`), event timestamps, the last two
//! digits of generated node names and files' `actual-size` are made equal. The requests
//! cover the options' checks, children given by reference and inline, adding and removing
//! children, what `query-named-block-nodes`, `x-debug-query-block-graph` and
//! `query-blockstats` show of a quorum, deleting quorums and children, and reads and writes
//! through an NBD export of a quorum whose children disagree (with the reports they make).

#[macro_use]
#[path = "storage_daemon_support/mod.rs"]
mod support;

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};
use support::Qmp;

/// `#block1234` becomes `#block12xx` (QEMU draws the last two digits at random).
fn generated_names(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("#block") {
        let (head, tail) = rest.split_at(at + "#block".len());
        out.push_str(head);
        let digits = tail.bytes().take_while(u8::is_ascii_digit).count();
        if digits >= 3 {
            out.push_str(&tail[..digits - 2]);
            out.push_str("xx");
        } else {
            out.push_str(&tail[..digits]);
        }
        rest = &tail[digits..];
    }
    out.push_str(rest);
    out
}

fn normalise(text: &str, dir: &Path) -> String {
    let text = generated_names(&text.replace(&*dir.to_string_lossy(), "$DIR"));
    let Ok(mut v) = serde_json::from_str::<Value>(&text) else {
        return text;
    };
    fn walk(v: &mut Value) {
        match v {
            Value::Object(m) => {
                m.remove("actual-size");
                m.values_mut().for_each(walk);
            }
            Value::Array(a) => a.iter_mut().for_each(walk),
            _ => {}
        }
    }
    if let Some(m) = v.as_object_mut() {
        m.remove("timestamp");
        // The distribution's package string, which qmpkit does not claim.
        if let Some(r) = m.get_mut("return").and_then(Value::as_object_mut) {
            if r.contains_key("qemu") && r.contains_key("package") {
                r.insert("package".into(), json!("(package)"));
            }
        }
    }
    walk(&mut v);
    v.to_string()
}

/// Both daemons, each over its own directory.
struct Pair {
    a: Qmp,
    b: Qmp,
    da: std::path::PathBuf,
    db: std::path::PathBuf,
    failures: Vec<String>,
}

const DIR: &str = "@DIR@";

impl Pair {
    /// Sends `req` (with `@DIR@` for the directory) to both; compares replies and events.
    fn step(&mut self, req: Value) -> Value {
        let text = req.to_string();
        let (ra, ea) = self.a.send(&text.replace(DIR, &self.da.to_string_lossy()));
        let (rb, eb) = self.b.send(&text.replace(DIR, &self.db.to_string_lossy()));
        let (na, nb) = (normalise(&ra, &self.da), normalise(&rb, &self.db));
        if na != nb {
            // Where they part, with some context.
            let at = na
                .bytes()
                .zip(nb.bytes())
                .take_while(|(x, y)| x == y)
                .count();
            let from = at.saturating_sub(150);
            let cut = |s: &str| {
                s.get(from..(at + 150).min(s.len()))
                    .unwrap_or(s)
                    .to_string()
            };
            self.failures.push(format!(
                "{text}: at byte {at}\n  theirs: {}\n  ours:   {}",
                cut(&na),
                cut(&nb)
            ));
        }
        let ea: Vec<String> = ea.iter().map(|e| normalise(e, &self.da)).collect();
        let eb: Vec<String> = eb.iter().map(|e| normalise(e, &self.db)).collect();
        if ea != eb {
            self.failures.push(format!(
                "{text}: events\n  theirs: {ea:?}\n  ours:   {eb:?}"
            ));
        }
        serde_json::from_str(&na).unwrap_or(Value::Null)
    }

    fn cmd(&mut self, cmd: &str, args: Value) -> Value {
        self.step(json!({"execute": cmd, "arguments": args}))
    }

    fn queries(&mut self) {
        self.cmd("query-named-block-nodes", json!({}));
        self.cmd("query-named-block-nodes", json!({"flat": true}));
        self.cmd("x-debug-query-block-graph", json!({}));
        self.cmd("query-blockstats", json!({"query-nodes": true}));
    }
}

#[test]
fn quorum_nodes_and_x_blockdev_change_match_the_live_daemon() {
    let (real, qemu_img, qemu_io) = qemu_tools!();
    let root = support::tmpdir("quorum");
    let (da, db) = (root.join("a"), root.join("b"));
    for d in [&da, &db] {
        std::fs::create_dir_all(d).unwrap();
        for i in 0..3 {
            let f = d.join(format!("f{i}.raw"));
            let out = support::run(
                &qemu_img,
                &["create", "-q", "-f", "raw", f.to_str().unwrap(), "1M"],
            );
            assert!(out.status.success());
        }
        for (i, cmd) in [
            (0, "write -P 0x11 0 4k"),
            (1, "write -P 0x11 0 4k"),
            (2, "write -P 0x22 0 4k"),
            (1, "write -P 0x44 64k 512"),
            (2, "write -P 0x33 64k 512"),
        ] {
            let f = d.join(format!("f{i}.raw"));
            let out = support::run(&qemu_io, &["-f", "raw", "-c", cmd, f.to_str().unwrap()]);
            assert!(out.status.success());
        }
    }
    let prog = support::ours(&root);
    let qa = support::start(&real, &da, &[]);
    let qb = support::start(&prog, &db, &[]);
    let mut p = Pair {
        a: Qmp::connect(&qa.socket),
        b: Qmp::connect(&qb.socket),
        da: da.clone(),
        db: db.clone(),
        failures: Vec::new(),
    };
    for n in ["n0", "n1", "n2", "n3"] {
        p.cmd("blockdev-add", json!({"driver": "null-co", "node-name": n}));
    }
    p.cmd(
        "blockdev-add",
        json!({"driver": "null-co", "node-name": "s", "size": 512}),
    );
    // The options' checks, and quorums that open (each deleted again).
    let quorum = |extra: Value| {
        let mut a = json!({"driver": "quorum", "node-name": "q"});
        for (k, v) in extra.as_object().unwrap() {
            a[k] = v.clone();
        }
        a
    };
    for extra in [
        json!({"vote-threshold": 0, "children": []}),
        json!({"vote-threshold": 0, "children": ["n0"]}),
        json!({"vote-threshold": 3, "children": ["n0", "n1"]}),
        json!({"vote-threshold": 1, "children": ["nx"]}),
        json!({"vote-threshold": 1, "children": ["n0", "s"]}),
        json!({"vote-threshold": 1, "children": ["n0"], "blkverify": true}),
        json!({"vote-threshold": 2, "children": ["n0", "n1"], "blkverify": true,
               "rewrite-corrupted": true}),
        json!({"children": ["n0"]}),
        json!({"vote-threshold": 1}),
        json!({"vote-threshold": 1, "children": ["n0"], "read-pattern": "nope"}),
        json!({"vote-threshold": 1, "children": ["n0", "n0"]}),
        json!({"vote-threshold": 2, "children": ["n0", "n1"], "blkverify": false,
               "read-pattern": "fifo", "rewrite-corrupted": false}),
        json!({"vote-threshold": 1, "children": [{"driver": "null-co", "size": 512},
                                                 {"driver": "null-aio", "size": 512}],
               "read-only": true}),
        json!({"vote-threshold": 1, "children": [
            {"driver": "quorum", "vote-threshold": 1, "children": ["n2"]}]}),
    ] {
        let r = p.cmd("blockdev-add", quorum(extra));
        if r.get("return").is_some() {
            p.queries();
            p.cmd("blockdev-del", json!({"node-name": "q"}));
        }
    }
    // Adding and removing children.
    p.cmd(
        "blockdev-add",
        json!({"driver": "quorum", "node-name": "q", "vote-threshold": 1,
               "children": ["n0", {"driver": "null-co", "node-name": "i1"}]}),
    );
    for args in [
        json!({"parent": "n0", "node": "n3"}),
        json!({"parent": "n0", "child": "c"}),
        json!({"parent": "q"}),
        json!({"parent": "q", "child": "children.0", "node": "n3"}),
        json!({"parent": "nx", "node": "n3"}),
        json!({"parent": "q", "node": "nx"}),
        json!({"parent": "q", "node": "n3"}),
        json!({"parent": "q", "node": "n3"}),
        json!({"parent": "q", "node": "q"}),
        json!({"parent": "q", "child": "children.1"}),
        json!({"parent": "q", "node": "s"}),
        json!({"parent": "q", "child": "children.0"}),
        json!({"parent": "q", "child": "children.9"}),
        json!({"parent": "q", "child": "children.2"}),
    ] {
        p.cmd("x-blockdev-change", args);
    }
    // One child left: query-blockstats shows it as the quorum's parent.
    p.cmd("query-blockstats", json!({"query-nodes": true}));
    p.cmd("x-blockdev-change", json!({"parent": "q", "node": "n3"}));
    p.queries();
    for n in ["n3", "i1", "n0", "q"] {
        p.cmd("blockdev-del", json!({"node-name": n}));
    }
    p.queries();

    // I/O through an export of a quorum over three images that disagree.
    for i in 0..3 {
        p.cmd(
            "blockdev-add",
            json!({"driver": "raw", "node-name": format!("r{i}"),
                   "file": {"driver": "file", "filename": format!("{DIR}/f{i}.raw")}}),
        );
    }
    p.cmd(
        "blockdev-add",
        json!({"driver": "quorum", "node-name": "vq", "vote-threshold": 2,
               "children": ["r0", "r1", "r2"]}),
    );
    p.cmd(
        "nbd-server-start",
        json!({"addr": {"type": "unix", "data": {"path": format!("{DIR}/nbd.sock")}}}),
    );
    p.cmd(
        "block-export-add",
        json!({"type": "nbd", "id": "vq", "node-name": "vq", "writable": true}),
    );
    p.cmd("x-debug-query-block-graph", json!({}));
    p.cmd(
        "block-export-add",
        json!({"type": "nbd", "id": "r1", "node-name": "r1", "writable": true}),
    );
    p.cmd("blockdev-del", json!({"node-name": "vq"}));
    for cmd in [
        "read -P 0x11 0 4k",
        "read 64k 512",
        "write -P 0x55 1024 512",
        "read -P 0x55 1024 512",
    ] {
        for d in [&da, &db] {
            let url = format!("nbd+unix:///vq?socket={}/nbd.sock", d.display());
            support::run(&qemu_io, &["-f", "raw", "-c", cmd, &url]);
        }
        // QEMU sends at most one quorum event a second.
        std::thread::sleep(Duration::from_millis(1100));
        p.cmd("query-version", json!({}));
    }
    // Two reports on one child within a second: the second waits for the second to end.
    for cmd in ["read 0 512", "read 512 512"] {
        for d in [&da, &db] {
            let url = format!("nbd+unix:///vq?socket={}/nbd.sock", d.display());
            support::run(&qemu_io, &["-f", "raw", "-c", cmd, &url]);
        }
    }
    p.cmd("query-version", json!({}));
    std::thread::sleep(Duration::from_millis(1500));
    p.cmd("query-version", json!({}));
    assert!(
        p.failures.is_empty(),
        "differences from qemu-storage-daemon:\n{}",
        p.failures.join("\n")
    );
}
