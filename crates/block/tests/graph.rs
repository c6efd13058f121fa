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
    run(
        &qemu_img,
        &[
            "create",
            "-f",
            "qcow2",
            "-b",
            "base.img",
            "-F",
            "raw",
            &s("mid.qcow2"),
        ],
    );
    run(
        &qemu_img,
        &[
            "create",
            "-f",
            "qcow2",
            "-b",
            "mid.qcow2",
            "-F",
            "qcow2",
            &s("top.qcow2"),
        ],
    );
    let mut g = BlockGraph::default();
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
