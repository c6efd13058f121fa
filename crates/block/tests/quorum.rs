//! The quorum driver and `x-blockdev-change`, step by step beside a live qemu-storage-daemon
//! doing the same: the same successes, the same errors word for word, the same children with
//! the same numbers and permissions; and I/O through a quorum whose children disagree, read
//! through an NBD export on both sides, with the same data, failures and reports.

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use common::{run, Qmp};
use qmpkit_block::graph::{
    BlockGraph, BlockdevOptions, BlockdevRef, Driver, Perm, PermSet, QuorumEvent, QuorumOptions,
    ReadPattern, UserKind,
};
use qmpkit_testkit::program_or_skip;
use serde_json::{json, Value};

/// `blockdev-add`'s arguments as the graph's options (the drivers these tests use).
fn options(v: &Value) -> BlockdevOptions {
    let r = |v: &Value| match v {
        Value::String(s) => BlockdevRef::Node(s.clone()),
        o => BlockdevRef::Inline(Box::new(options(o))),
    };
    let driver = v["driver"].as_str().unwrap();
    let mut o = match driver {
        "null-co" | "null-aio" => {
            let mut o = BlockdevOptions::null(v["size"].as_u64());
            o.driver = Driver::from_name(driver).unwrap();
            o
        }
        "file" => BlockdevOptions::file(v["filename"].as_str().unwrap()),
        "raw" => BlockdevOptions::format(Driver::Raw, r(&v["file"])),
        "quorum" => {
            let mut o = BlockdevOptions::new(Driver::Quorum);
            let children = v["children"].as_array().map(|c| c.iter().map(r).collect());
            o.quorum = children.map(|c| {
                let mut q = QuorumOptions::new(c, v["vote-threshold"].as_i64().unwrap_or(0));
                q.blkverify = v["blkverify"].as_bool();
                q.rewrite_corrupted = v["rewrite-corrupted"].as_bool();
                q.read_pattern = v["read-pattern"].as_str().map(|p| match p {
                    "fifo" => ReadPattern::Fifo,
                    _ => ReadPattern::Quorum,
                });
                q
            });
            o
        }
        d => panic!("driver {d}"),
    };
    o.node_name = v["node-name"].as_str().map(str::to_string);
    o.read_only = v["read-only"].as_bool().unwrap_or(false);
    o
}

/// A generated name without its two random digits.
fn norm(name: &str) -> String {
    if name.starts_with("#block") && name.len() > 8 {
        name[..name.len() - 2].to_string()
    } else {
        name.to_string()
    }
}

type Edges = BTreeSet<(String, String, String, String, String)>;

/// Edges between nodes: (parent, child, role, perm, shared).
fn qsd_edges(q: &mut Qmp) -> Edges {
    let g = q.call("x-debug-query-block-graph", json!({})).unwrap();
    let name_of = |id: &Value| {
        g["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| &n["id"] == id && n["type"] == "block-driver")
            .map(|n| norm(n["name"].as_str().unwrap()))
    };
    g["edges"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| {
            Some((
                name_of(&e["parent"])?,
                name_of(&e["child"])?,
                e["name"].as_str().unwrap().to_string(),
                e["perm"].to_string(),
                e["shared-perm"].to_string(),
            ))
        })
        .collect()
}

fn our_edges(g: &BlockGraph) -> Edges {
    let d = g.debug_graph();
    let name_of = |id: u64| {
        d.nodes
            .iter()
            .find(|n| n.id == id && n.kind == qmpkit_block::graph::GraphNodeType::BlockDriver)
            .map(|n| norm(&n.name))
    };
    let perms = |p: &[Perm]| {
        serde_json::to_string(&p.iter().map(|p| p.name()).collect::<Vec<_>>()).unwrap()
    };
    d.edges
        .iter()
        .filter_map(|e| {
            Some((
                name_of(e.parent)?,
                name_of(e.child)?,
                e.name.clone(),
                perms(&e.perm),
                perms(&e.shared_perm),
            ))
        })
        .collect()
}

/// The graph and the daemon side by side.
struct Pair {
    g: BlockGraph,
    q: Qmp,
}

impl Pair {
    fn compare(&mut self, what: &str, ours: Result<(), String>, theirs: Result<Value, String>) {
        assert_eq!(
            ours,
            theirs.map(|_| ()),
            "{what}: ours vs qemu-storage-daemon"
        );
    }

    fn add(&mut self, args: Value) {
        let ours = self.g.add(&options(&args)).map(|_| ()).map_err(|e| e.desc);
        let theirs = self.q.call("blockdev-add", args.clone());
        self.compare(&format!("blockdev-add {args}"), ours, theirs);
    }

    fn change(&mut self, args: Value) {
        let s = |k: &str| args[k].as_str();
        let ours = self
            .g
            .change_child(s("parent").unwrap(), s("child"), s("node"))
            .map_err(|e| e.desc);
        let theirs = self.q.call("x-blockdev-change", args.clone());
        self.compare(&format!("x-blockdev-change {args}"), ours, theirs);
    }

    fn del(&mut self, node: &str) {
        let ours = self.g.delete(node).map_err(|e| e.desc);
        let theirs = self.q.call("blockdev-del", json!({ "node-name": node }));
        self.compare(&format!("blockdev-del {node}"), ours, theirs);
    }

    fn export(&mut self, id: &str, node: &str, writable: bool) {
        let perm = if writable {
            PermSet::of(&[Perm::ConsistentRead, Perm::Write])
        } else {
            PermSet::of(&[Perm::ConsistentRead])
        };
        let shared = PermSet::of(&[Perm::ConsistentRead, Perm::Write, Perm::WriteUnchanged]);
        let ours = self
            .g
            .attach_user(node, UserKind::Export(id.into()), perm, shared)
            .map(|_| ())
            .map_err(|e| e.desc);
        let theirs = self.q.call(
            "block-export-add",
            json!({"type": "nbd", "id": id, "node-name": node, "writable": writable}),
        );
        self.compare(&format!("export {id} of {node}"), ours, theirs);
    }

    fn same_edges(&mut self, when: &str) {
        assert_eq!(our_edges(&self.g), qsd_edges(&mut self.q), "edges {when}");
    }

    /// The quorum's virtual size and `ro` as `query-named-block-nodes` shows them.
    fn same_node(&mut self, node: &str) {
        let all = self.q.call("query-named-block-nodes", json!({})).unwrap();
        let theirs = all
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["node-name"] == node)
            .unwrap()
            .clone();
        let ours = self.g.node_info(node, false).unwrap();
        assert_eq!(
            json!(ours.image.virtual_size),
            theirs["image"]["virtual-size"]
        );
        assert_eq!(json!(ours.ro), theirs["ro"]);
        assert_eq!(json!(ours.drv), theirs["drv"]);
        assert_eq!(json!(ours.image_format), theirs["image"]["format"]);
    }
}

fn start() -> Option<(qmpkit_testkit::qsd::Qsd, Pair)> {
    let (qsd, q) = common::start_qsd()?;
    let mut g = BlockGraph::default();
    g.set_auto_locking(false);
    Some((qsd, Pair { g, q }))
}

#[test]
fn quorum_options_are_checked_as_qemu_storage_daemon_checks_them() {
    let Some((_qsd, mut p)) = start() else {
        return;
    };
    for (n, size) in [("n0", None), ("n1", None), ("n2", None), ("s", Some(512))] {
        let mut a = json!({"driver": "null-co", "node-name": n});
        if let Some(s) = size {
            a["size"] = json!(s);
        }
        p.add(a);
    }
    let quorum = |extra: Value| {
        let mut a = json!({"driver": "quorum", "node-name": "q"});
        for (k, v) in extra.as_object().unwrap() {
            a[k] = v.clone();
        }
        a
    };
    let cases = [
        json!({"vote-threshold": 0, "children": []}),
        json!({"vote-threshold": 0, "children": ["nx"]}),
        json!({"vote-threshold": -3, "children": ["n0"]}),
        json!({"vote-threshold": 3, "children": ["n0", "n1"]}),
        json!({"vote-threshold": 2, "children": ["nx"]}),
        json!({"vote-threshold": 1, "children": ["nx"]}),
        json!({"vote-threshold": 1, "children": ["n0", "nx"]}),
        json!({"vote-threshold": 1, "children": ["n0", "s"]}),
        json!({"vote-threshold": 1, "children": [{"driver": "null-co", "size": 512}, "n1"]}),
        json!({"vote-threshold": 1, "children": [{"driver": "null-co", "node-name": "n0"}]}),
        json!({"vote-threshold": 1, "children": ["n0"], "node-name": "n1"}),
        json!({"vote-threshold": 1, "children": ["n0"], "node-name": "bad name"}),
        json!({"vote-threshold": 1, "children": ["n0"], "blkverify": true}),
        json!({"vote-threshold": 2, "children": ["n0", "n1", "n2"], "blkverify": true}),
        json!({"vote-threshold": 2, "children": ["n0", "n1"], "blkverify": true,
               "rewrite-corrupted": true}),
        json!({"vote-threshold": 1, "children": ["n0"], "blkverify": true,
               "rewrite-corrupted": true}),
        // Accepted ones, each deleted again.
        json!({"vote-threshold": 1, "children": ["n0", "n0"]}),
        json!({"vote-threshold": 2, "children": ["n0", "n1"], "blkverify": true,
               "read-pattern": "fifo"}),
        json!({"vote-threshold": 2, "children": ["n0", "n1"], "read-pattern": "fifo",
               "rewrite-corrupted": true}),
        json!({"vote-threshold": 1, "children": [{"driver": "null-co", "node-name": "i0"}, "n1"]}),
        json!({"vote-threshold": 1, "children": ["s"], "read-only": true}),
    ];
    for c in cases {
        let a = quorum(c);
        p.add(a.clone());
        let name = a["node-name"].as_str().unwrap().to_string();
        if p.g.contains(&name) && name != "n1" {
            p.same_node(&name);
            p.same_edges(&format!("after {a}"));
            p.del(&name);
        }
    }
    // Inline children went with their quorum.
    p.add(json!({"driver": "null-co", "node-name": "i0"}));
    p.same_edges("at the end");
}

#[test]
fn x_blockdev_change_adds_and_removes_children_as_qemu_storage_daemon_does() {
    let Some((_qsd, mut p)) = start() else {
        return;
    };
    for n in ["n0", "n1", "n2", "n3", "n4"] {
        p.add(json!({"driver": "null-co", "node-name": n}));
    }
    p.add(json!({"driver": "null-co", "node-name": "s", "size": 512}));
    // Parents that are no quorum, and the arguments' checks.
    for args in [
        json!({"parent": "n0", "node": "n1"}),
        json!({"parent": "n0", "child": "c"}),
        json!({"parent": "n0", "child": "file"}),
        json!({"parent": "n0"}),
        json!({"parent": "n0", "child": "c", "node": "n1"}),
        json!({"parent": "nx", "child": "c"}),
        json!({"parent": "nx", "node": "nx"}),
        json!({"parent": "nx", "child": "c", "node": "n1"}),
        json!({"parent": "n0", "node": "nx"}),
    ] {
        p.change(args);
    }
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("r.raw");
    std::fs::write(&f, vec![0u8; 1 << 20]).unwrap();
    p.add(json!({"driver": "file", "node-name": "n5", "filename": f}));
    p.add(json!({"driver": "raw", "node-name": "r", "file": "n5"}));
    p.change(json!({"parent": "r", "child": "file"}));
    p.change(json!({"parent": "r", "node": "n4"}));
    p.change(json!({"parent": "r", "node": "n0"}));

    p.add(
        json!({"driver": "quorum", "node-name": "q", "vote-threshold": 1,
                 "children": ["n0", "n1", "n2"]}),
    );
    p.same_edges("with three children");
    for args in [
        json!({"parent": "q", "child": "c"}),
        json!({"parent": "q", "child": "children.3"}),
        // Any child may go; the highest number is handed out again, and only that one.
        json!({"parent": "q", "child": "children.1"}),
        json!({"parent": "q", "child": "children.1"}),
        json!({"parent": "q", "child": "children.2"}),
        json!({"parent": "q", "node": "n1"}),
        json!({"parent": "q", "node": "n1"}),
        json!({"parent": "q", "node": "n0"}),
        json!({"parent": "q", "node": "n5"}),
        json!({"parent": "q", "node": "s"}),
        json!({"parent": "q", "node": "q"}),
        json!({"parent": "q", "node": "r"}),
        json!({"parent": "q", "child": "children.0"}),
        json!({"parent": "q", "child": "children.2"}),
        json!({"parent": "q", "node": "n2"}),
    ] {
        p.change(args);
    }
    p.same_edges("after adding and removing");
    p.same_node("q");

    // A quorum over a quorum: cycles either way.
    p.add(
        json!({"driver": "quorum", "node-name": "q2", "vote-threshold": 2,
                 "children": ["n3", "n4"]}),
    );
    for args in [
        json!({"parent": "q2", "child": "children.0"}),
        json!({"parent": "q2", "child": "children.1"}),
        json!({"parent": "q2", "node": "q"}),
        json!({"parent": "q", "node": "q2"}),
        json!({"parent": "q2", "child": "children.2"}),
        json!({"parent": "q", "node": "q2"}),
    ] {
        p.change(args);
    }
    p.same_edges("quorum over quorum");

    // Inline children go when they are removed; named ones stay.
    p.add(
        json!({"driver": "quorum", "node-name": "iq", "vote-threshold": 1,
                 "children": [{"driver": "null-co", "node-name": "i0"}, {"driver": "null-co"}]}),
    );
    p.change(json!({"parent": "iq", "child": "children.0"}));
    p.add(json!({"driver": "null-co", "node-name": "i0"}));
    p.same_edges("after removing an inline child");

    // A quorum is never reopened; it does not resize, and passes the resize its parents
    // need to its children.
    for (ours, args) in [
        (
            options(&json!({"driver": "null-co", "node-name": "q"})),
            json!({"driver": "null-co", "node-name": "q"}),
        ),
        (
            options(
                &json!({"driver": "quorum", "node-name": "q", "vote-threshold": 1,
                            "children": ["n0"]}),
            ),
            json!({"driver": "quorum", "node-name": "q", "vote-threshold": 1, "children": ["n0"]}),
        ),
    ] {
        let mine = p.g.reopen_options(&[ours]).map_err(|e| e.desc);
        let theirs = p.q.call("blockdev-reopen", json!({ "options": [args] }));
        p.compare("blockdev-reopen", mine, theirs);
    }
    for (node, size) in [("q", 1024u64), ("q2", 1 << 30), ("n3", 1024)] {
        let mine = p.g.resize(node, size).map_err(|e| e.desc);
        let theirs =
            p.q.call("block_resize", json!({"node-name": node, "size": size}));
        p.compare(&format!("block_resize {node}"), mine, theirs);
    }

    // Deleting: a child in use, a quorum in use, a removed child.
    for n in ["n2", "q", "q2", "n1"] {
        p.del(n);
    }
    p.same_edges("after deleting");
}

#[test]
fn a_quorum_passes_its_parents_permissions_to_its_children() {
    let Some((_qsd, mut p)) = start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    p.q.call(
        "nbd-server-start",
        json!({"addr": {"type": "unix", "data": {"path": dir.path().join("nbd.sock")}}}),
    )
    .unwrap();
    for n in ["n0", "n1", "n2", "n3", "n4"] {
        p.add(json!({"driver": "null-co", "node-name": n}));
    }
    p.add(json!({"driver": "null-co", "node-name": "ro", "read-only": true}));
    p.add(
        json!({"driver": "quorum", "node-name": "q", "vote-threshold": 1,
                 "children": ["n0", "n1"]}),
    );
    p.same_edges("without users");
    p.export("e1", "q", true);
    p.same_edges("written through an export");
    p.export("e2", "n1", true);
    p.export("e3", "n1", false);
    p.change(json!({"parent": "q", "node": "n2"}));
    p.export("e4", "n3", true);
    p.change(json!({"parent": "q", "node": "n3"}));
    p.change(json!({"parent": "q", "node": "ro"}));
    p.same_edges("with other users");
    p.del("q");
    p.add(
        json!({"driver": "quorum", "node-name": "rq", "vote-threshold": 1,
                 "children": ["n4"], "read-only": true}),
    );
    p.export("e5", "rq", false);
    p.same_edges("read through a read-only quorum");
}

/// What qemu-io printed, reduced to success or the failure.
fn io_outcome(text: &str) -> Result<(), String> {
    if text.contains("failed") || text.contains("Pattern verification") {
        Err(text.lines().next().unwrap_or_default().to_string())
    } else {
        Ok(())
    }
}

fn our_events(g: &mut BlockGraph) -> Vec<Value> {
    g.take_quorum_events()
        .into_iter()
        .map(|e| match e {
            QuorumEvent::ReportBad {
                op,
                error,
                node,
                sector_num,
                sectors_count,
            } => {
                let mut v = json!({"node-name": node, "sector-num": sector_num,
                                   "sectors-count": sectors_count, "type": op.name()});
                if let Some(e) = error {
                    v["error"] = json!(e);
                }
                json!({"QUORUM_REPORT_BAD": v})
            }
            QuorumEvent::Failure {
                reference,
                sector_num,
                sectors_count,
            } => json!({"QUORUM_FAILURE": {"reference": reference, "sector-num": sector_num,
                                           "sectors-count": sectors_count}}),
        })
        .collect()
}

#[test]
fn reads_vote_and_writes_reach_every_child_as_in_qemu_storage_daemon() {
    let qemu_img = program_or_skip!("qemu-img");
    let qemu_io = program_or_skip!("qemu-io");
    let Some((_qsd, mut p)) = start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let io = |file: &Path, cmd: &str| {
        let (ok, text) = run(&qemu_io, &["-f", "raw", "-c", cmd, file.to_str().unwrap()]);
        assert!(ok && io_outcome(&text).is_ok(), "{cmd}: {text}");
    };
    // Three children whose data differ, once for each side.
    for side in ["ours", "theirs"] {
        let d = dir.path().join(side);
        std::fs::create_dir(&d).unwrap();
        for i in 0..3 {
            let f = d.join(format!("f{i}.raw"));
            run(
                &qemu_img,
                &["create", "-q", "-f", "raw", f.to_str().unwrap(), "1M"],
            );
        }
        io(&d.join("f0.raw"), "write -P 0x11 0 4k");
        io(&d.join("f1.raw"), "write -P 0x11 0 4k");
        io(&d.join("f2.raw"), "write -P 0x22 0 4k");
        io(&d.join("f1.raw"), "write -P 0x44 64k 512");
        io(&d.join("f2.raw"), "write -P 0x33 64k 512");
    }
    let child = |side: &str, i: u32| {
        let f = dir.path().join(side).join(format!("f{i}.raw"));
        json!({"driver": "raw", "node-name": format!("n{i}"),
               "file": {"driver": "file", "filename": f}})
    };
    for i in 0..3 {
        p.g.add(&options(&child("ours", i))).unwrap();
        p.q.call("blockdev-add", child("theirs", i)).unwrap();
    }
    p.add(
        json!({"driver": "quorum", "node-name": "q", "vote-threshold": 2,
                 "children": ["n0", "n1", "n2"]}),
    );
    // Both sides serve the quorum over NBD and qemu-io reads and writes through it.
    let ours_sock = dir.path().join("ours.sock");
    let theirs_sock = dir.path().join("theirs.sock");
    p.q.call(
        "nbd-server-start",
        json!({"addr": {"type": "unix", "data": {"path": theirs_sock}}}),
    )
    .unwrap();
    p.export("q", "q", true);
    let server =
        qmpkit_block::nbd::NbdServer::start(qmpkit_block::nbd::NbdListen::Unix(ours_sock.clone()))
            .unwrap();
    server
        .add_export(qmpkit_block::nbd::NbdExport {
            name: "q".into(),
            description: None,
            writable: true,
            backend: p.g.backend("q").unwrap(),
        })
        .unwrap();
    let url = |s: &Path| format!("nbd+unix:///q?socket={}", s.display());
    for cmd in [
        // Two children agree, the third is reported.
        "read -P 0x11 0 4k",
        // No two agree: the read fails.
        "read 64k 512",
        // All agree.
        "read -P 0 128k 4k",
        // Writes reach every child: all agree afterwards.
        "write -P 0x55 1024 512",
        "read -P 0x55 1024 512",
        "read -P 0x11 512 512",
    ] {
        let (_, ours) = run(&qemu_io, &["-f", "raw", "-c", cmd, &url(&ours_sock)]);
        let (_, theirs) = run(&qemu_io, &["-f", "raw", "-c", cmd, &url(&theirs_sock)]);
        assert_eq!(
            io_outcome(&ours).is_ok(),
            io_outcome(&theirs).is_ok(),
            "{cmd}: ours {ours}, theirs {theirs}"
        );
        // QEMU sends at most one quorum event a second: wait that long, then ask.
        std::thread::sleep(std::time::Duration::from_millis(1100));
        p.q.call("query-version", json!({})).unwrap();
        let theirs_events: Vec<Value> =
            p.q.take_events()
                .into_iter()
                .filter(|(n, _)| n.starts_with("QUORUM"))
                .map(|(n, d)| json!({ n: d }))
                .collect();
        assert_eq!(our_events(&mut p.g), theirs_events, "{cmd}");
    }
    drop(server);
    // The write reached every child's file.
    for i in 0..3 {
        let f = dir.path().join("ours").join(format!("f{i}.raw"));
        io(&f, "read -P 0x55 1024 512");
    }
}

#[test]
fn fifo_reads_the_first_child_and_rewrite_corrupted_repairs() {
    let dir = tempfile::tempdir().unwrap();
    let mut g = BlockGraph::default();
    let mut files = Vec::new();
    for i in 0..3u8 {
        let f = dir.path().join(format!("f{i}.raw"));
        let mut data = vec![0u8; 64 << 10];
        data[..4096].fill(if i == 2 { 0x22 } else { 0x11 });
        std::fs::write(&f, &data).unwrap();
        g.add(&options(
            &json!({"driver": "raw", "node-name": format!("n{i}"),
                                "file": {"driver": "file", "filename": f}}),
        ))
        .unwrap();
        files.push(f);
    }
    g.add(
        &options(
            &json!({"driver": "quorum", "node-name": "fifo", "vote-threshold": 1,
                           "children": ["n2", "n0"], "read-pattern": "fifo"}),
        )
        .named("fifo"),
    )
    .unwrap();
    let mut buf = vec![0u8; 4096];
    g.backend("fifo").unwrap().read(0, &mut buf).unwrap();
    assert!(buf.iter().all(|b| *b == 0x22), "the first child's data");
    assert!(g.take_quorum_events().is_empty());
    g.delete("fifo").unwrap();

    g.add(&options(
        &json!({"driver": "quorum", "node-name": "fix", "vote-threshold": 2,
                           "children": ["n0", "n1", "n2"], "rewrite-corrupted": true}),
    ))
    .unwrap();
    g.backend("fix").unwrap().read(0, &mut buf).unwrap();
    assert!(buf.iter().all(|b| *b == 0x11), "the majority's data");
    assert_eq!(
        g.take_quorum_events(),
        [QuorumEvent::ReportBad {
            op: qmpkit_block::graph::QuorumOp::Read,
            error: None,
            node: "n2".into(),
            sector_num: 0,
            sectors_count: 8
        }]
    );
    // The disagreeing child was rewritten: the next read finds all of them agreeing.
    g.backend("fix").unwrap().read(0, &mut buf).unwrap();
    assert!(g.take_quorum_events().is_empty());
    g.delete("fix").unwrap();
    drop(g);
    assert_eq!(std::fs::read(&files[2]).unwrap()[..4096], [0x11u8; 4096]);
}
