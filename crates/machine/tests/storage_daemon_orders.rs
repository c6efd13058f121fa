//! A storage daemon's machine answering as qemu-storage-daemon 10.0.2 did for the same
//! requests: the order of its checks (blockdev-snapshot, nbd-server-remove), the order in
//! which it lists character devices and objects, and `query-blockstats` over its nodes.

use std::path::{Path, PathBuf};

use qmpkit_block::image::{self, CreateOptions, ImageFormat};
use qmpkit_machine::Machine;
use serde_json::{json, Value};

mod common;

use common::{ok, run, storage_daemon};

fn dir(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("qmpkit-storage-daemon-orders")
        .join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("test dir");
    d
}

fn err(r: Result<Value, String>) -> String {
    r.expect_err("the request fails")
}

fn add(m: &mut Machine, opts: Value) {
    ok(run(m, "blockdev-add", opts));
}

/// One member of every entry of a listing.
fn member(listing: &Value, key: &str) -> Vec<String> {
    listing
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p[key].as_str().unwrap().to_string())
        .collect()
}

/// `qom-list /chardevs`' names and `query-chardev`'s labels.
fn listings(m: &mut Machine) -> (Vec<String>, Vec<String>) {
    let listed = ok(run(m, "qom-list", json!({"path": "/chardevs"})));
    let chardevs = ok(run(m, "query-chardev", json!({})));
    (member(&listed, "name"), member(&chardevs, "label"))
}

/// Character devices are listed in the order of QEMU's property table: by their names'
/// hashes, the table's size and its history, not by creation.
#[test]
fn chardevs_listed_in_the_daemons_order() {
    let mut m = storage_daemon();
    let backend = json!({"type": "null", "data": {}});
    for id in ["mon0", "c0", "char48", "char72", "char80"] {
        ok(run(
            &mut m,
            "chardev-add",
            json!({"id": id, "backend": backend}),
        ));
    }
    let (names, labels) = listings(&mut m);
    assert_eq!(
        names,
        ["type", "c0", "mon0", "char72", "char48", "char80"],
        "qom-list"
    );
    assert_eq!(labels, ["c0", "mon0", "char72", "char48", "char80"]);
    // The table grows to 16 buckets and keeps them when entries go.
    for id in ["char392", "serial14", "a1", "a2", "a3"] {
        ok(run(
            &mut m,
            "chardev-add",
            json!({"id": id, "backend": backend}),
        ));
    }
    for id in ["c0", "char48", "char72", "char80", "a1", "a2", "a3"] {
        ok(run(&mut m, "chardev-remove", json!({"id": id})));
    }
    let (names, labels) = listings(&mut m);
    assert_eq!(names, ["type", "serial14", "mon0", "char392"]);
    assert_eq!(labels, ["serial14", "mon0", "char392"]);
}

#[test]
fn objects_listed_in_the_daemons_order() {
    let mut m = storage_daemon();
    for id in ["io0", "obj160"] {
        ok(run(
            &mut m,
            "object-add",
            json!({"qom-type": "iothread", "id": id}),
        ));
    }
    let listed = ok(run(&mut m, "qom-list", json!({"path": "/objects"})));
    assert_eq!(
        listed,
        json!([
            {"name": "type", "type": "string"},
            {"name": "obj160", "type": "child<iothread>"},
            {"name": "io0", "type": "child<iothread>"}
        ])
    );
}

/// blockdev-snapshot checks the node's blockers, then finds the overlay, then whether it is
/// in use (a block backend on it, a qcow2 node's file, or below a node in use), whether it
/// can have a backing image, and whether it has one.
#[test]
fn blockdev_snapshot_checks_in_qemus_order() {
    let d = dir("snapshot");
    for f in ["top.qcow2", "b.qcow2"] {
        image::create(&d.join(f), &CreateOptions::new(ImageFormat::Qcow2, 1 << 20)).expect("image");
    }
    std::fs::File::create(d.join("r.raw"))
        .unwrap()
        .set_len(1 << 20)
        .unwrap();
    let mut m = storage_daemon();
    for (file, fnode, node, driver) in [
        ("top.qcow2", "ft", "top", "qcow2"),
        ("b.qcow2", "fb", "b", "qcow2"),
        ("r.raw", "fr", "r", "raw"),
    ] {
        add(
            &mut m,
            json!({"driver": "file", "filename": d.join(file), "node-name": fnode}),
        );
        let mut o = json!({"driver": driver, "file": fnode, "node-name": node});
        if driver == "qcow2" {
            o["backing"] = Value::Null;
        }
        add(&mut m, o);
    }
    for n in ["n0", "n1"] {
        add(&mut m, json!({"driver": "null-co", "node-name": n}));
    }
    let snap = |m: &mut Machine, node: &str, overlay: &str| {
        run(
            m,
            "blockdev-snapshot",
            json!({"node": node, "overlay": overlay}),
        )
        .err()
        .unwrap_or_else(|| "ok".into())
    };
    let g = "GenericError: ";
    assert_eq!(snap(&mut m, "b", "top"), "ok");
    assert_eq!(
        snap(&mut m, "n0", "top"),
        format!("{g}The overlay already has a backing image")
    );
    let unsupported = format!("{g}The overlay does not support backing images");
    assert_eq!(snap(&mut m, "n1", "n1"), unsupported);
    assert_eq!(snap(&mut m, "n1", "fr"), unsupported, "a raw node's file");
    let in_use = format!("{g}The overlay is already in use");
    assert_eq!(snap(&mut m, "n1", "fb"), in_use, "a qcow2 node's file");
    ok(run(
        &mut m,
        "nbd-server-start",
        json!({"addr": {"type": "unix", "data": {"path": d.join("nbd.sock")}}}),
    ));
    for (id, node, writable) in [("e1", "top", false), ("e2", "r", true)] {
        ok(run(
            &mut m,
            "block-export-add",
            json!({"type": "nbd", "id": id, "node-name": node, "writable": writable}),
        ));
    }
    for overlay in ["b", "fr"] {
        assert_eq!(snap(&mut m, "n1", overlay), in_use, "{overlay}");
    }
    assert_eq!(
        snap(&mut m, "n1", "nosuch"),
        format!("{g}Cannot find device='nosuch' nor node-name='nosuch'")
    );
    assert_eq!(
        snap(&mut m, "b", "nosuch"),
        format!("{g}Node 'b' is busy: node is used as backing hd of 'top'")
    );
    ok(run(&mut m, "nbd-server-stop", json!({})));
}

/// nbd-server-remove looks the export up first: without a server, none is found.
#[test]
fn nbd_server_remove_without_a_server() {
    let mut m = storage_daemon();
    assert_eq!(
        err(run(&mut m, "nbd-server-remove", json!({"name": "x"}))),
        "GenericError: Export 'x' is not found"
    );
}

/// Every named node, oldest first, each with its data child's statistics as `parent`; a
/// host file node with its discard counters.
#[test]
fn node_stats_as_the_daemon_lists_them() {
    let d = dir("stats");
    let img = d.join("a.qcow2");
    image::create(&img, &CreateOptions::new(ImageFormat::Qcow2, 1 << 20)).expect("image");
    let mut m = storage_daemon();
    add(
        &mut m,
        json!({"driver": "file", "filename": img, "node-name": "f0"}),
    );
    add(
        &mut m,
        json!({"driver": "qcow2", "file": "f0", "node-name": "q0"}),
    );
    add(&mut m, json!({"driver": "null-co", "node-name": "n0"}));
    ok(run(
        &mut m,
        "object-add",
        json!({"qom-type": "throttle-group", "id": "tg0", "limits": {}}),
    ));
    add(
        &mut m,
        json!({"driver": "throttle", "node-name": "t0", "throttle-group": "tg0", "file": "q0"}),
    );
    let zero = json!({
        "rd_bytes": 0, "wr_bytes": 0, "unmap_bytes": 0, "zone_append_bytes": 0,
        "rd_operations": 0, "wr_operations": 0, "flush_operations": 0,
        "unmap_operations": 0, "zone_append_operations": 0,
        "rd_total_time_ns": 0, "wr_total_time_ns": 0, "flush_total_time_ns": 0,
        "unmap_total_time_ns": 0, "zone_append_total_time_ns": 0,
        "wr_highest_offset": 0, "rd_merged": 0, "wr_merged": 0, "unmap_merged": 0,
        "zone_append_merged": 0, "failed_rd_operations": 0, "failed_wr_operations": 0,
        "failed_flush_operations": 0, "failed_unmap_operations": 0,
        "failed_zone_append_operations": 0, "invalid_rd_operations": 0,
        "invalid_wr_operations": 0, "invalid_flush_operations": 0,
        "invalid_unmap_operations": 0, "invalid_zone_append_operations": 0,
        "account_invalid": false, "account_failed": false, "timed_stats": []
    });
    let file = json!({
        "stats": zero, "node-name": "f0",
        "driver-specific": {"driver": "file", "discard-nb-ok": 0, "discard-nb-failed": 0,
                            "discard-bytes-ok": 0}
    });
    let q0 = json!({"stats": zero, "node-name": "q0", "parent": file});
    let want = json!([
        file,
        q0,
        {"stats": zero, "node-name": "n0"},
        {"stats": zero, "node-name": "t0", "parent": q0},
    ]);
    assert_eq!(
        ok(run(
            &mut m,
            "query-blockstats",
            json!({"query-nodes": true})
        )),
        want
    );
    // Without query-nodes: the daemon's block backends, of which it has none by name.
    assert_eq!(ok(run(&mut m, "query-blockstats", json!({}))), json!([]));
}

/// block_resize takes the resize permission (its image lock) before it looks at the node's
/// read-only flag, and that before the driver's support.
#[test]
fn block_resize_checks_in_qemus_order() {
    let d = dir("resize");
    let raw = d.join("z.raw");
    std::fs::File::create(&raw)
        .unwrap()
        .set_len(1 << 20)
        .unwrap();
    let img = d.join("y.qcow2");
    image::create(&img, &CreateOptions::new(ImageFormat::Qcow2, 1 << 20)).expect("image");
    let mut m = storage_daemon();
    add(
        &mut m,
        json!({"driver": "file", "filename": raw, "node-name": "f1", "read-only": true}),
    );
    add(
        &mut m,
        json!({"driver": "file", "filename": img, "node-name": "fy"}),
    );
    add(
        &mut m,
        json!({"driver": "qcow2", "file": "fy", "node-name": "qy"}),
    );
    add(
        &mut m,
        json!({"driver": "file", "filename": img, "node-name": "fy2", "read-only": true}),
    );
    add(
        &mut m,
        json!({"driver": "null-co", "node-name": "n1", "read-only": true}),
    );
    add(&mut m, json!({"driver": "null-co", "node-name": "n2"}));
    let resize = |m: &mut Machine, node: &str| {
        err(run(
            m,
            "block_resize",
            json!({"node-name": node, "size": 2 << 20}),
        ))
    };
    let g = "GenericError: ";
    assert_eq!(resize(&mut m, "f1"), format!("{g}Image is read-only"));
    assert_eq!(
        resize(&mut m, "fy2"),
        format!("{g}Failed to get \"resize\" lock"),
        "a read-only node on a file whose qcow2 node shares no resizing"
    );
    assert_eq!(resize(&mut m, "n1"), format!("{g}Image is read-only"));
    assert_eq!(
        resize(&mut m, "n2"),
        format!("{g}Image format driver does not support resize")
    );
}
