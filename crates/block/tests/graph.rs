//! The node graph, step by step beside a live qemu-storage-daemon doing the same: the same
//! successes, the same errors word for word, the same permissions on every edge.

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use common::{run, Qmp};
use qmpkit_block::graph::{
    BlockGraph, BlockdevOptions, BlockdevRef, Driver, Perm, PermSet, UserKind,
};
use qmpkit_testkit::program_or_skip;
use serde_json::{json, Value};

fn same(what: &str, ours: Result<(), String>, theirs: Result<Value, String>) {
    assert_eq!(
        ours,
        theirs.map(|_| ()),
        "{what}: ours vs qemu-storage-daemon"
    );
}

fn node_ref(name: &str) -> BlockdevRef {
    BlockdevRef::Node(name.into())
}

fn inline_file(path: &Path) -> BlockdevRef {
    BlockdevRef::Inline(Box::new(BlockdevOptions::file(path)))
}

fn writable_export() -> (PermSet, PermSet) {
    (
        PermSet::of(&[Perm::ConsistentRead, Perm::Write]),
        PermSet::of(&[Perm::ConsistentRead, Perm::Write, Perm::WriteUnchanged]),
    )
}

/// A generated name without its two random digits.
fn norm(name: String) -> String {
    if name.starts_with("#block") && name.len() > 8 {
        name[..name.len() - 2].to_string()
    } else {
        name
    }
}

/// Edges between named nodes: (parent, child, role, perm, shared).
fn qsd_edges(q: &mut Qmp) -> BTreeSet<(String, String, String, String, String)> {
    let g = q.call("x-debug-query-block-graph", json!({})).unwrap();
    let name_of = |id: &Value| {
        g["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| &n["id"] == id && n["type"] == "block-driver")
            .map(|n| n["name"].as_str().unwrap().to_string())
    };
    let mut out = BTreeSet::new();
    for e in g["edges"].as_array().unwrap() {
        if let (Some(p), Some(c)) = (name_of(&e["parent"]), name_of(&e["child"])) {
            out.insert((
                norm(p),
                norm(c),
                e["name"].as_str().unwrap().to_string(),
                e["perm"].to_string(),
                e["shared-perm"].to_string(),
            ));
        }
    }
    out
}

fn our_edges(g: &BlockGraph) -> BTreeSet<(String, String, String, String, String)> {
    let d = g.debug_graph();
    let name_of = |id: u64| {
        d.nodes
            .iter()
            .find(|n| n.id == id && n.kind == qmpkit_block::graph::GraphNodeType::BlockDriver)
            .map(|n| n.name.clone())
    };
    let perms = |p: &[Perm]| {
        serde_json::to_string(&p.iter().map(|p| p.name()).collect::<Vec<_>>()).unwrap()
    };
    d.edges
        .iter()
        .filter_map(|e| {
            Some((
                norm(name_of(e.parent)?),
                norm(name_of(e.child)?),
                e.name.clone(),
                perms(&e.perm),
                perms(&e.shared_perm),
            ))
        })
        .collect()
}

#[test]
fn nodes_names_and_errors_match_qemu_storage_daemon() {
    let qemu_img = program_or_skip!("qemu-img");
    let qsd = match qmpkit_testkit::qsd::start() {
        Ok(q) => q,
        Err(why) => qmpkit_testkit::skip!("{why}"),
    };
    let mut q = Qmp::connect(&qsd.socket);
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.qcow2");
    let r = dir.path().join("r.raw");
    run(
        &qemu_img,
        &["create", "-f", "qcow2", a.to_str().unwrap(), "1M"],
    );
    run(
        &qemu_img,
        &["create", "-f", "raw", r.to_str().unwrap(), "4M"],
    );
    let mut g = BlockGraph::default();
    // Beside the daemon on the same files: the permission model without the locks between
    // the two processes (the locks have tests of their own).
    g.set_auto_locking(false);

    macro_rules! step {
        ($what:expr, $ours:expr, $cmd:expr, $args:expr) => {
            same(
                $what,
                $ours.map(|_| ()).map_err(|e| e.desc),
                q.call($cmd, $args),
            )
        };
    }
    step!(
        "no node-name",
        g.add(&BlockdevOptions::file(&a)),
        "blockdev-add",
        json!({"driver": "file", "filename": a})
    );
    step!(
        "file f",
        g.add(&BlockdevOptions::file(&a).named("f")),
        "blockdev-add",
        json!({"driver": "file", "filename": a, "node-name": "f"})
    );
    step!(
        "qcow2 a",
        g.add(&BlockdevOptions::format(Driver::Qcow2, node_ref("f")).named("a")),
        "blockdev-add",
        json!({"driver": "qcow2", "file": "f", "node-name": "a"})
    );
    step!(
        "raw b",
        g.add(&BlockdevOptions::format(Driver::Raw, node_ref("f")).named("b")),
        "blockdev-add",
        json!({"driver": "raw", "file": "f", "node-name": "b"})
    );
    step!(
        "raw c ro",
        g.add(
            &BlockdevOptions::format(Driver::Raw, node_ref("f"))
                .named("c")
                .read_only(true)
        ),
        "blockdev-add",
        json!({"driver": "raw", "file": "f", "node-name": "c", "read-only": true})
    );
    step!(
        "del f",
        g.delete("f"),
        "blockdev-del",
        json!({"node-name": "f"})
    );
    step!(
        "del zz",
        g.delete("zz"),
        "blockdev-del",
        json!({"node-name": "zz"})
    );
    step!(
        "null n1",
        g.add(&BlockdevOptions::null(None).named("n1")),
        "blockdev-add",
        json!({"driver": "null-co", "node-name": "n1"})
    );
    step!(
        "null n1 again",
        g.add(&BlockdevOptions::null(None).named("n1")),
        "blockdev-add",
        json!({"driver": "null-co", "node-name": "n1"})
    );
    step!(
        "bad name",
        g.add(&BlockdevOptions::null(None).named("#x")),
        "blockdev-add",
        json!({"driver": "null-co", "node-name": "#x"})
    );
    let long = "a".repeat(32);
    step!(
        "long name",
        g.add(&BlockdevOptions::null(None).named(&long)),
        "blockdev-add",
        json!({"driver": "null-co", "node-name": long})
    );
    let longest = "a".repeat(31);
    step!(
        "longest name",
        g.add(&BlockdevOptions::null(Some(1 << 20)).named(&longest)),
        "blockdev-add",
        json!({"driver": "null-co", "node-name": longest, "size": 1 << 20})
    );
    let missing = dir.path().join("missing.qcow2");
    step!(
        "missing file",
        g.add(&BlockdevOptions::format(Driver::Qcow2, inline_file(&missing)).named("x")),
        "blockdev-add",
        json!({"driver": "qcow2", "file": {"driver": "file", "filename": missing}, "node-name": "x"})
    );
    step!(
        "missing child",
        g.add(&BlockdevOptions::format(Driver::Qcow2, node_ref("nonode")).named("x")),
        "blockdev-add",
        json!({"driver": "qcow2", "file": "nonode", "node-name": "x"})
    );
    step!(
        "raw over inline file",
        g.add(&BlockdevOptions::format(Driver::Raw, inline_file(&r)).named("r")),
        "blockdev-add",
        json!({"driver": "raw", "file": {"driver": "file", "filename": r}, "node-name": "r"})
    );
    q.call(
        "nbd-server-start",
        json!({"addr": {"type": "unix", "data": {"path": dir.path().join("nbd.sock")}}}),
    )
    .unwrap();
    let (perm, shared) = writable_export();
    step!(
        "writable export of b conflicts with a",
        g.attach_user("b", UserKind::Export("e1".into()), perm, shared),
        "block-export-add",
        json!({"type": "nbd", "id": "e1", "node-name": "b", "writable": true})
    );
    step!(
        "export r",
        g.attach_user("r", UserKind::Export("e2".into()), perm, shared),
        "block-export-add",
        json!({"type": "nbd", "id": "e2", "node-name": "r", "writable": true})
    );
    step!(
        "del r in use",
        g.delete("r"),
        "blockdev-del",
        json!({"node-name": "r"})
    );

    // The implicit file node under r is not the monitor's to delete.
    let ours_implicit = g.child("r", qmpkit_block::graph::ChildRole::File).unwrap();
    let nodes = q
        .call("query-named-block-nodes", json!({"flat": true}))
        .unwrap();
    let theirs_implicit = nodes
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["node-name"].as_str().unwrap().to_string())
        .find(|n| n.starts_with("#block"))
        .unwrap();
    assert!(
        ours_implicit.starts_with("#block")
            && ours_implicit[6..].chars().all(|c| c.is_ascii_digit())
    );
    let ours = g
        .delete(&ours_implicit)
        .map_err(|e| e.desc.replace(&ours_implicit, "N"));
    let theirs = q
        .call("blockdev-del", json!({"node-name": theirs_implicit}))
        .map(|_| ())
        .map_err(|e| e.replace(&theirs_implicit, "N"));
    assert_eq!(ours, theirs);

    // The same nodes, newest first, with the same facts.
    let theirs = q
        .call("query-named-block-nodes", json!({"flat": true}))
        .unwrap();
    let ours = g.named_nodes(true).unwrap();
    assert_eq!(ours.len(), theirs.as_array().unwrap().len());
    for (o, t) in ours.iter().zip(theirs.as_array().unwrap()) {
        assert_eq!(
            norm(t["node-name"].as_str().unwrap().to_string()),
            norm(o.node_name.clone())
        );
        assert_eq!(t["drv"], o.drv, "{t}");
        assert_eq!(t["ro"], o.ro, "{t}");
        assert_eq!(t["file"], o.file, "{t}");
        assert_eq!(t["detect_zeroes"], o.detect_zeroes.name());
        assert_eq!(t["image"]["format"], o.image_format, "{t}");
        assert_eq!(t["image"]["filename"], o.image.filename, "{t}");
        assert_eq!(t["image"]["virtual-size"], o.image.virtual_size, "{t}");
        assert_eq!(
            t["image"]["cluster-size"].as_u64(),
            o.image.cluster_size,
            "{t}"
        );
        assert_eq!(t["cache"]["direct"], o.cache.direct);
    }
    assert_eq!(our_edges(&g), qsd_edges(&mut q));
}

#[test]
fn chains_permissions_and_exports_match_qemu_storage_daemon() {
    let qemu_img = program_or_skip!("qemu-img");
    let qsd = match qmpkit_testkit::qsd::start() {
        Ok(q) => q,
        Err(why) => qmpkit_testkit::skip!("{why}"),
    };
    let mut q = Qmp::connect(&qsd.socket);
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    let s = |n: &str| p(n).to_str().unwrap().to_string();
    run(&qemu_img, &["create", "-f", "raw", &s("base.img"), "4M"]);
    let layers = ["mid.qcow2", "top.qcow2"];
    qmpkit_testkit::cmd::qcow2_chain(&qemu_img, dir.path(), "base.img", "raw", &layers, None);
    let mut g = BlockGraph::default();
    // Beside the daemon on the same files: the permission model without the locks between
    // the two processes (the locks have tests of their own).
    g.set_auto_locking(false);
    macro_rules! step {
        ($what:expr, $ours:expr, $cmd:expr, $args:expr) => {
            same(
                $what,
                $ours.map(|_| ()).map_err(|e| e.desc),
                q.call($cmd, $args),
            )
        };
    }
    for (name, file) in [("bf", "base.img"), ("mf", "mid.qcow2"), ("tf", "top.qcow2")] {
        step!(
            name,
            g.add(&BlockdevOptions::file(p(file)).named(name)),
            "blockdev-add",
            json!({"driver": "file", "filename": p(file), "node-name": name})
        );
    }
    step!(
        "base",
        g.add(&BlockdevOptions::format(Driver::Raw, node_ref("bf")).named("base")),
        "blockdev-add",
        json!({"driver": "raw", "file": "bf", "node-name": "base"})
    );
    step!(
        "mid",
        g.add(
            &BlockdevOptions::format(Driver::Qcow2, node_ref("mf"))
                .named("mid")
                .backing(Some(node_ref("base")))
        ),
        "blockdev-add",
        json!({"driver": "qcow2", "file": "mf", "backing": "base", "node-name": "mid"})
    );
    step!(
        "top",
        g.add(
            &BlockdevOptions::format(Driver::Qcow2, node_ref("tf"))
                .named("top")
                .backing(Some(node_ref("mid")))
        ),
        "blockdev-add",
        json!({"driver": "qcow2", "file": "tf", "backing": "mid", "node-name": "top"})
    );
    step!(
        "top2 ro over the same file",
        g.add(
            &BlockdevOptions::format(Driver::Qcow2, node_ref("tf"))
                .named("top2")
                .read_only(true)
                .backing(Some(node_ref("mid")))
        ),
        "blockdev-add",
        json!({"driver": "qcow2", "file": "tf", "backing": "mid", "node-name": "top2", "read-only": true})
    );
    assert_eq!(our_edges(&g), qsd_edges(&mut q));

    q.call(
        "nbd-server-start",
        json!({"addr": {"type": "unix", "data": {"path": p("nbd.sock")}}}),
    )
    .unwrap();
    let (perm, shared) = writable_export();
    for (id, node) in [("e1", "base"), ("e2", "mid"), ("e3", "mf"), ("e4", "top")] {
        step!(
            id,
            g.attach_user(node, UserKind::Export(id.into()), perm, shared),
            "block-export-add",
            json!({"type": "nbd", "id": id, "node-name": node, "writable": true})
        );
    }
    for node in ["top", "mid", "base", "tf"] {
        step!(
            node,
            g.delete(node),
            "blockdev-del",
            json!({"node-name": node})
        );
    }
    // Backing edges now carry consistent-read; node-to-node edges agree.
    assert_eq!(our_edges(&g), qsd_edges(&mut q));

    // A qcow2 node opened from the header's chain: implicit read-only nodes below.
    let mut g2 = BlockGraph::default();
    // The first graph still holds the chain for writing.
    g2.set_auto_locking(false);
    g2.add(
        &BlockdevOptions::format(
            Driver::Qcow2,
            BlockdevRef::Inline(Box::new(BlockdevOptions::file(p("top.qcow2")))),
        )
        .named("t"),
    )
    .unwrap();
    let nodes = g2.named_nodes(true).unwrap();
    let drvs: Vec<(&str, bool)> = nodes.iter().map(|n| (n.drv.as_str(), n.ro)).collect();
    assert_eq!(
        drvs,
        [
            ("raw", true),
            ("file", true),
            ("qcow2", true),
            ("file", true),
            ("qcow2", false),
            ("file", false)
        ]
    );
    let t = g2.node_info("t", true).unwrap();
    assert_eq!(t.backing_file.as_deref(), Some(s("mid.qcow2").as_str()));
    assert_eq!(t.image.backing_filename.as_deref(), Some("mid.qcow2"));
    let deep = t.backing_image.as_ref().unwrap();
    assert_eq!(deep.image.backing_filename.as_deref(), Some("base.img"));
    // Deleting the top removes the implicit nodes with it.
    g2.delete("t").unwrap();
    assert!(g2.node_names().is_empty());
}

#[test]
fn snapshot_and_resize_match_qemu_storage_daemon() {
    let qemu_img = program_or_skip!("qemu-img");
    let qsd = match qmpkit_testkit::qsd::start() {
        Ok(q) => q,
        Err(why) => qmpkit_testkit::skip!("{why}"),
    };
    let mut q = Qmp::connect(&qsd.socket);
    let (dq, dour) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    for d in [dq.path(), dour.path()] {
        run(
            &qemu_img,
            &[
                "create",
                "-f",
                "raw",
                d.join("base.img").to_str().unwrap(),
                "4M",
            ],
        );
    }
    let mut g = BlockGraph::default();
    // Beside the daemon on the same files: the permission model without the locks between
    // the two processes (the locks have tests of their own).
    g.set_auto_locking(false);
    macro_rules! step {
        ($what:expr, $ours:expr, $cmd:expr, $args:expr) => {
            same(
                $what,
                $ours.map(|_| ()).map_err(|e| e.desc),
                q.call($cmd, $args),
            )
        };
    }
    let (qp, op) = (dq.path(), dour.path());
    step!(
        "base",
        g.add(
            &BlockdevOptions::format(Driver::Raw, inline_file(&op.join("base.img"))).named("base")
        ),
        "blockdev-add",
        json!({"driver": "raw", "file": {"driver": "file", "filename": qp.join("base.img")}, "node-name": "base"})
    );
    q.call(
        "nbd-server-start",
        json!({"addr": {"type": "unix", "data": {"path": qp.join("nbd.sock")}}}),
    )
    .unwrap();
    let (perm, shared) = writable_export();
    let e1 = g.attach_user("base", UserKind::Export("e1".into()), perm, shared);
    same(
        "export",
        e1.clone().map(|_| ()).map_err(|e| e.desc),
        q.call(
            "block-export-add",
            json!({"type": "nbd", "id": "e1", "node-name": "base", "writable": true}),
        ),
    );
    let e1 = e1.unwrap();
    step!(
        "snapshot",
        g.snapshot_sync("base", &op.join("snap1.qcow2"), Some("snap1")),
        "blockdev-snapshot-sync",
        json!({"node-name": "base", "snapshot-file": qp.join("snap1.qcow2"), "snapshot-node-name": "snap1"})
    );
    step!(
        "snapshot of a backing file",
        g.snapshot_sync("base", &op.join("snap2.qcow2"), Some("snap2")),
        "blockdev-snapshot-sync",
        json!({"node-name": "base", "snapshot-file": qp.join("snap2.qcow2"), "snapshot-node-name": "snap2"})
    );
    step!(
        "name in use",
        g.snapshot_sync("snap1", &op.join("snap2.qcow2"), Some("snap1")),
        "blockdev-snapshot-sync",
        json!({"node-name": "snap1", "snapshot-file": qp.join("snap2.qcow2"), "snapshot-node-name": "snap1"})
    );
    step!(
        "name missing",
        g.snapshot_sync("snap1", &op.join("snap3.qcow2"), None),
        "blockdev-snapshot-sync",
        json!({"node-name": "snap1", "snapshot-file": qp.join("snap3.qcow2")})
    );
    step!(
        "no node",
        g.snapshot_sync("nonode", &op.join("snap4.qcow2"), Some("snap4")),
        "blockdev-snapshot-sync",
        json!({"node-name": "nonode", "snapshot-file": qp.join("snap4.qcow2"), "snapshot-node-name": "snap4"})
    );
    step!(
        "resize a backing file",
        g.resize("base", 8 << 20),
        "block_resize",
        json!({"node-name": "base", "size": 8 << 20})
    );
    step!(
        "resize nothing",
        g.resize("nonode", 8 << 20),
        "block_resize",
        json!({"node-name": "nonode", "size": 8 << 20})
    );
    step!(
        "resize under an export",
        g.resize("snap1", 8 << 20),
        "block_resize",
        json!({"node-name": "snap1", "size": 8 << 20})
    );
    assert_eq!(g.users_of("snap1"), vec![UserKind::Export("e1".into())]);
    let ours = g.node_info("snap1", false).unwrap();
    let theirs = q
        .call("query-named-block-nodes", json!({"flat": true}))
        .unwrap();
    let t = theirs
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["node-name"] == "snap1")
        .unwrap()
        .clone();
    assert_eq!(t["drv"], ours.drv);
    assert_eq!(t["image"]["virtual-size"], ours.image.virtual_size);
    assert_eq!(
        t["backing_file"].as_str().unwrap(),
        qp.join("base.img").to_str().unwrap()
    );
    assert_eq!(ours.backing_file.as_deref(), op.join("base.img").to_str());
    // The overlay belongs to its users: with the export gone, it goes too.
    q.call("block-export-del", json!({"id": "e1"})).unwrap();
    g.detach_user(e1);
    step!(
        "resize the gone overlay",
        g.resize("snap1", 8 << 20),
        "block_resize",
        json!({"node-name": "snap1", "size": 8 << 20})
    );
    step!(
        "resize the base",
        g.resize("base", 8 << 20),
        "block_resize",
        json!({"node-name": "base", "size": 8 << 20})
    );
    step!(
        "delete the base",
        g.delete("base"),
        "blockdev-del",
        json!({"node-name": "base"})
    );
    assert_eq!(
        q.call("query-named-block-nodes", json!({})).unwrap(),
        json!([])
    );
    assert!(g.node_names().is_empty());
    drop(qsd);
    drop(g);
    for d in [qp, op] {
        let snap = d.join("snap1.qcow2");
        common::check_clean(&qemu_img, &snap);
        let (_, text) = run(
            &qemu_img,
            &["info", "--output=json", snap.to_str().unwrap()],
        );
        let info: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(info["virtual-size"], 4 << 20);
        assert_eq!(info["backing-filename"], json!(d.join("base.img")));
        assert_eq!(info["backing-filename-format"], "raw");
        let (_, text) = run(
            &qemu_img,
            &[
                "info",
                "--output=json",
                d.join("base.img").to_str().unwrap(),
            ],
        );
        let info: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(info["virtual-size"], 4 << 20, "a backing file is read-only");
    }
}

#[test]
fn an_nbd_export_of_a_node_serves_its_chain() {
    let qemu_img = program_or_skip!("qemu-img");
    let qemu_io = program_or_skip!("qemu-io");
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    let s = |n: &str| p(n).to_str().unwrap().to_string();
    run(&qemu_img, &["create", "-f", "raw", &s("base.img"), "4M"]);
    run(
        &qemu_io,
        &["-f", "raw", "-c", "write -P 0x41 0 1M", &s("base.img")],
    );
    qmpkit_testkit::cmd::qcow2_chain(
        &qemu_img,
        dir.path(),
        "base.img",
        "raw",
        &["top.qcow2"],
        None,
    );
    run(&qemu_io, &["-c", "write -P 0x42 1M 1M", &s("top.qcow2")]);
    let mut g = BlockGraph::default();
    g.add(&BlockdevOptions::format(Driver::Qcow2, inline_file(&p("top.qcow2"))).named("top"))
        .unwrap();
    let (perm, shared) = writable_export();
    g.attach_user("top", UserKind::Export("disk".into()), perm, shared)
        .unwrap();
    let server =
        qmpkit_block::nbd::NbdServer::start(qmpkit_block::nbd::NbdListen::Unix(p("nbd.sock")))
            .unwrap();
    server
        .add_export(qmpkit_block::nbd::NbdExport {
            name: "disk".into(),
            description: None,
            writable: true,
            backend: g.backend("top").unwrap(),
        })
        .unwrap();
    let url = format!("nbd+unix:///disk?socket={}", s("nbd.sock"));
    for cmd in [
        "read -P 0x41 0 1M",
        "read -P 0x42 1M 1M",
        "write -P 0x44 3M 64k",
        "read -P 0x44 3M 64k",
    ] {
        let (ok, text) = run(&qemu_io, &["-f", "raw", "-c", cmd, &url]);
        assert!(
            ok && !text.contains("failed") && !text.contains("error"),
            "{cmd}: {text}"
        );
    }
    drop(server);
    drop(g);
    common::check_clean(&qemu_img, &p("top.qcow2"));
    let (ok, text) = run(&qemu_io, &["-c", "read -P 0x44 3M 64k", &s("top.qcow2")]);
    assert!(ok && !text.contains("failed"), "{text}");
    let (ok, text) = run(
        &qemu_io,
        &["-f", "raw", "-c", "read -P 0 3M 64k", &s("base.img")],
    );
    assert!(
        ok && !text.contains("failed"),
        "the write stayed in the overlay: {text}"
    );
}
