//! The block layer's further features through the machine's monitor, over real image files:
//! dirty bitmaps (counts that move as the guest writes, persistent ones in the qcow2 file that
//! qemu-img lists), and their transaction actions.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use qmpkit_block::image::{self, CreateOptions, ImageFormat};
use qmpkit_machine::config::DriveConfig;
use qmpkit_machine::{Machine, MachineConfig};
use serde_json::{json, Value};

mod common;

use common::{hmp, ok, run, schema};

fn dir(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("qmpkit-block-features")
        .join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("test dir");
    d
}

fn qcow2(path: &Path, size: u64) {
    image::create(path, &CreateOptions::new(ImageFormat::Qcow2, size)).expect("create image");
}

fn machine_with_drive(file: &Path, version: Option<(u64, u64, u64)>) -> Machine {
    let mut c = MachineConfig::default_machine();
    c.drives[0] = DriveConfig {
        id: "ide0-hd0".into(),
        interface: "ide".into(),
        file: Some(file.to_string_lossy().into_owned()),
        format: Some("qcow2".into()),
        ..Default::default()
    };
    match version {
        None => Machine::new(Arc::new(c), schema()),
        Some(v) => {
            let p = qmpkit_testkit::data::path("qemu-ref/schema-10.0.2/qapi/qapi-schema.json");
            let s = qmpkit_schema::load(&p, qmpkit_schema::Dialect::Modern).expect("schema");
            c.qemu_version = v;
            Machine::new(Arc::new(c), Arc::new(s))
        }
    }
}

fn err(r: Result<Value, String>) -> String {
    r.expect_err("an error")
}

fn drive_bitmaps(m: &mut Machine) -> Value {
    let blocks = ok(run(m, "query-block", json!({})));
    blocks[0]["dirty-bitmaps"].clone()
}

fn qemu_img_info(path: &Path) -> Option<Value> {
    let out = Command::new("qemu-img")
        .args(["info", "-U", "--output=json"])
        .arg(path)
        .output()
        .ok()?;
    serde_json::from_slice(&out.stdout).ok()
}

fn qemu_img_check_clean(path: &Path) -> Option<bool> {
    let out = Command::new("qemu-img")
        .arg("check")
        .arg(path)
        .output()
        .ok()?;
    Some(String::from_utf8_lossy(&out.stdout).contains("No errors were found"))
}

#[test]
fn dirty_bitmaps_count_guest_writes() {
    let d = dir("bitmaps");
    let disk = d.join("disk.qcow2");
    qcow2(&disk, 1 << 20);
    let mut m = machine_with_drive(&disk, None);
    let node = ok(run(&mut m, "query-block", json!({})))[0]["inserted"]["node-name"].clone();
    let node = node.as_str().unwrap().to_string();
    // By drive name and by node name.
    ok(run(
        &mut m,
        "block-dirty-bitmap-add",
        json!({"node": "ide0-hd0", "name": "b0"}),
    ));
    ok(run(
        &mut m,
        "block-dirty-bitmap-add",
        json!({"node": node, "name": "fine", "granularity": 512}),
    ));
    assert_eq!(
        drive_bitmaps(&mut m),
        json!([
            {"name": "fine", "count": 0, "granularity": 512, "status": "active",
                "recording": true, "busy": false, "persistent": false},
            {"name": "b0", "count": 0, "granularity": 65536, "status": "active",
                "recording": true, "busy": false, "persistent": false},
        ])
    );
    qmpkit_machine::block::guest_write(&mut m, "ide0-hd0", 0, &[1]).unwrap();
    qmpkit_machine::block::guest_write(&mut m, "ide0-hd0", 200_000, &[2; 70_000]).unwrap();
    qmpkit_machine::block::guest_write(&mut m, "ide0-hd0", (1 << 20) - 1, &[3]).unwrap();
    // QEMU 10.0.2 counts these writes as 262144 and 71680 dirty bytes.
    assert_eq!(
        drive_bitmaps(&mut m),
        json!([
            {"name": "fine", "count": 71680, "granularity": 512, "status": "active",
                "recording": true, "busy": false, "persistent": false},
            {"name": "b0", "count": 262144, "granularity": 65536, "status": "active",
                "recording": true, "busy": false, "persistent": false},
        ])
    );
    assert_eq!(
        ok(run(
            &mut m,
            "x-debug-block-dirty-bitmap-sha256",
            json!({"node": "ide0-hd0", "name": "b0"})
        )),
        json!({"sha256": "ba13ff208e825925dd4f17e4330e028982bfabba8fbb2ec3a370f728e1d4f630"})
    );
    ok(run(
        &mut m,
        "block-dirty-bitmap-clear",
        json!({"node": "ide0-hd0", "name": "fine"}),
    ));
    qmpkit_machine::block::guest_write(&mut m, "ide0-hd0", 4096, &[3; 512]).unwrap();
    assert_eq!(drive_bitmaps(&mut m)[0]["count"], 512);

    // Errors in QEMU's words.
    assert_eq!(
        err(run(
            &mut m,
            "block-dirty-bitmap-add",
            json!({"node": "ide0-hd0", "name": "b0"})
        )),
        "GenericError: Bitmap already exists: b0"
    );
    assert_eq!(
        err(run(
            &mut m,
            "block-dirty-bitmap-add",
            json!({"node": "ide0-hd0", "name": "x", "granularity": 1000})
        )),
        "GenericError: Granularity must be power of 2 and at least 512"
    );
    assert_eq!(
        err(run(
            &mut m,
            "block-dirty-bitmap-add",
            json!({"node": "nope", "name": "x"})
        )),
        "GenericError: Cannot find device='nope' nor node-name='nope'"
    );
    assert_eq!(
        err(run(
            &mut m,
            "block-dirty-bitmap-add",
            json!({"node": "ide0-hd0", "name": ""})
        )),
        "GenericError: Bitmap name cannot be empty"
    );
    assert_eq!(
        err(run(
            &mut m,
            "block-dirty-bitmap-add",
            json!({"node": "ide0-hd0", "name": "a", "autoload": true})
        )),
        "GenericError: Autoload flag must be used only for persistent bitmaps"
    );
    assert_eq!(
        err(run(
            &mut m,
            "block-dirty-bitmap-remove",
            json!({"node": "ide0-hd0", "name": "zz"})
        )),
        "GenericError: Dirty bitmap 'zz' not found"
    );
    assert_eq!(
        err(run(
            &mut m,
            "block-dirty-bitmap-clear",
            json!({"node": "nn", "name": "b0"})
        )),
        "GenericError: Node 'nn' not found"
    );
    ok(run(
        &mut m,
        "block-dirty-bitmap-remove",
        json!({"node": "ide0-hd0", "name": "fine"}),
    ));
    ok(run(
        &mut m,
        "block-dirty-bitmap-remove",
        json!({"node": "ide0-hd0", "name": "b0"}),
    ));
    // No bitmaps: no member.
    assert_eq!(drive_bitmaps(&mut m), Value::Null);
}

#[test]
fn bitmap_transaction_actions_are_all_or_nothing() {
    let d = dir("bitmap-transaction");
    let disk = d.join("disk.qcow2");
    qcow2(&disk, 1 << 20);
    let mut m = machine_with_drive(&disk, None);
    ok(run(
        &mut m,
        "block-dirty-bitmap-add",
        json!({"node": "ide0-hd0", "name": "b0"}),
    ));
    qmpkit_machine::block::guest_write(&mut m, "ide0-hd0", 0, &[1; 10]).unwrap();
    let t = |name: &str| {
        json!({"actions": [
            {"type": "block-dirty-bitmap-add", "data": {"node": "ide0-hd0", "name": "t1"}},
            {"type": "block-dirty-bitmap-clear", "data": {"node": "ide0-hd0", "name": "b0"}},
            {"type": "block-dirty-bitmap-add", "data": {"node": "ide0-hd0", "name": name}},
        ]})
    };
    assert_eq!(
        err(run(&mut m, "transaction", t("t1"))),
        "GenericError: Bitmap already exists: t1"
    );
    assert_eq!(
        drive_bitmaps(&mut m),
        json!([{"name": "b0", "count": 65536, "granularity": 65536, "status": "active",
                "recording": true, "busy": false, "persistent": false}])
    );
    ok(run(&mut m, "transaction", t("t2")));
    assert_eq!(
        drive_bitmaps(&mut m),
        json!([
            {"name": "t2", "count": 0, "granularity": 65536, "status": "active",
                "recording": true, "busy": false, "persistent": false},
            {"name": "t1", "count": 0, "granularity": 65536, "status": "active",
                "recording": true, "busy": false, "persistent": false},
            {"name": "b0", "count": 0, "granularity": 65536, "status": "active",
                "recording": true, "busy": false, "persistent": false},
        ])
    );
}

/// QEMU 10.0's interface: enable, disable, merge, `disabled`, and the bitmaps in the node's
/// information; persistent bitmaps end up in the file, which qemu-img lists.
#[test]
fn newer_bitmap_commands_and_persistence() {
    let d = dir("bitmaps-10");
    let disk = d.join("disk.qcow2");
    qcow2(&disk, 1 << 20);
    let mut m = machine_with_drive(&disk, Some((10, 0, 2)));
    ok(run(
        &mut m,
        "block-dirty-bitmap-add",
        json!({"node": "ide0-hd0", "name": "p0", "persistent": true}),
    ));
    ok(run(
        &mut m,
        "block-dirty-bitmap-add",
        json!({"node": "ide0-hd0", "name": "p1", "persistent": true, "disabled": true,
               "granularity": 131072}),
    ));
    ok(run(
        &mut m,
        "block-dirty-bitmap-add",
        json!({"node": "ide0-hd0", "name": "m", "granularity": 512}),
    ));
    qmpkit_machine::block::guest_write(&mut m, "ide0-hd0", 70_000, &[5; 100]).unwrap();
    ok(run(
        &mut m,
        "block-dirty-bitmap-merge",
        json!({"node": "ide0-hd0", "target": "p1",
               "bitmaps": ["m", {"node": "ide0-hd0", "name": "p0"}]}),
    ));
    assert_eq!(
        err(run(
            &mut m,
            "block-dirty-bitmap-merge",
            json!({"node": "ide0-hd0", "target": "p1", "bitmaps": [{"node": "nn", "name": "p0"}]})
        )),
        "GenericError: Node 'nn' not found"
    );
    ok(run(
        &mut m,
        "block-dirty-bitmap-disable",
        json!({"node": "ide0-hd0", "name": "m"}),
    ));
    ok(run(
        &mut m,
        "block-dirty-bitmap-enable",
        json!({"node": "ide0-hd0", "name": "p1"}),
    ));
    assert_eq!(
        err(run(
            &mut m,
            "block-dirty-bitmap-enable",
            json!({"node": "ide0-hd0", "name": "zz"})
        )),
        "GenericError: Dirty bitmap 'zz' not found"
    );
    qmpkit_machine::block::guest_write(&mut m, "ide0-hd0", 600_000, &[6; 1]).unwrap();
    let blocks = ok(run(&mut m, "query-block", json!({})));
    assert_eq!(blocks[0].get("dirty-bitmaps"), None);
    let expected = json!([
        {"name": "m", "recording": false, "persistent": false, "busy": false,
         "granularity": 512, "count": 512},
        {"name": "p1", "recording": true, "persistent": true, "busy": false,
         "granularity": 131072, "count": 262144},
        {"name": "p0", "recording": true, "persistent": true, "busy": false,
         "granularity": 65536, "count": 131072},
    ]);
    assert_eq!(blocks[0]["inserted"]["dirty-bitmaps"], expected);
    let node = blocks[0]["inserted"]["node-name"]
        .as_str()
        .unwrap()
        .to_string();
    let nodes = ok(run(&mut m, "query-named-block-nodes", json!({})));
    let mine = nodes
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["node-name"] == node.as_str())
        .unwrap();
    assert_eq!(mine["dirty-bitmaps"], expected);
    // The machine goes away: its persistent bitmaps are in the image.
    drop(m);
    if qemu_img_info(&disk).is_none() {
        qmpkit_testkit::skip::skip("qemu-img is not installed");
        return;
    }
    assert_eq!(qemu_img_check_clean(&disk), Some(true));
    assert_eq!(
        qemu_img_info(&disk).unwrap()["format-specific"]["data"]["bitmaps"],
        json!([
            {"flags": ["auto"], "name": "p1", "granularity": 131072},
            {"flags": ["auto"], "name": "p0", "granularity": 65536},
        ])
    );
    // A machine opening the image finds them, with their bits.
    let mut m = machine_with_drive(&disk, Some((10, 0, 2)));
    let blocks = ok(run(&mut m, "query-block", json!({})));
    assert_eq!(
        blocks[0]["inserted"]["dirty-bitmaps"],
        json!([
            {"name": "p0", "recording": true, "persistent": true, "busy": false,
             "granularity": 65536, "count": 131072},
            {"name": "p1", "recording": true, "persistent": true, "busy": false,
             "granularity": 131072, "count": 262144},
        ])
    );
    // The node's image facts agree with qemu-img's view of the open file (bitmaps in use).
    let nodes = ok(run(&mut m, "query-named-block-nodes", json!({})));
    let file = disk.to_string_lossy();
    let fmt = nodes
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["drv"] == "qcow2" && n["file"] == file.as_ref())
        .map(|n| n["image"]["format-specific"].clone())
        .unwrap();
    assert_eq!(fmt, qemu_img_info(&disk).unwrap()["format-specific"]);
    assert_eq!(
        fmt["data"]["bitmaps"][0]["flags"],
        json!(["in-use", "auto"])
    );
}

fn qcow2_on(path: &Path, backing: &Path) {
    let mut o = CreateOptions::new(ImageFormat::Qcow2, 1 << 20);
    o.backing_file = Some(backing.to_string_lossy().into_owned());
    o.backing_format = Some(ImageFormat::Qcow2);
    image::create(path, &o).expect("create overlay");
}

fn node_of_file(m: &mut Machine, file: &Path) -> String {
    let nodes = ok(run(m, "query-named-block-nodes", json!({})));
    nodes
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["file"] == file.to_string_lossy().as_ref() && n["drv"] == "qcow2")
        .and_then(|n| n["node-name"].as_str())
        .unwrap()
        .to_string()
}

#[test]
fn change_backing_file_rewrites_the_header() {
    let d = dir("change-backing");
    let (base, mid, top) = (
        d.join("base.qcow2"),
        d.join("mid.qcow2"),
        d.join("top.qcow2"),
    );
    qcow2(&base, 1 << 20);
    qcow2_on(&mid, &base);
    qcow2_on(&top, &mid);
    let other = d.join("other.qcow2");
    qcow2(&other, 1 << 20);
    let mut m = machine_with_drive(&top, None);
    ok(run(
        &mut m,
        "blockdev-add",
        json!({"driver": "qcow2", "node-name": "other",
               "file": {"driver": "file", "filename": other}}),
    ));
    let mid_node = node_of_file(&mut m, &mid);
    let c = |dev: &str, img: &str, b: &str| json!({"device": dev, "image-node-name": img, "backing-file": b});
    assert_eq!(
        err(run(
            &mut m,
            "change-backing-file",
            c("nope", &mid_node, "x")
        )),
        "GenericError: Cannot find device='nope' nor node-name='nope'"
    );
    assert_eq!(
        err(run(
            &mut m,
            "change-backing-file",
            c("ide0-hd0", "nope", "x")
        )),
        "GenericError: Cannot find device='' nor node-name='nope'"
    );
    assert_eq!(
        err(run(
            &mut m,
            "change-backing-file",
            c("ide0-hd0", "other", "x")
        )),
        "GenericError: not allowing backing file change on an image without a backing file"
    );
    assert_eq!(
        err(run(
            &mut m,
            "change-backing-file",
            c("other", &mid_node, "x")
        )),
        "GenericError: 'other' and image file are not in the same chain"
    );
    // A read-only image below the top, named relative to its directory now.
    ok(run(
        &mut m,
        "change-backing-file",
        c("ide0-hd0", &mid_node, "base.qcow2"),
    ));
    let blocks = ok(run(&mut m, "query-block", json!({})));
    let mid_info = &blocks[0]["inserted"]["image"]["backing-image"];
    assert_eq!(mid_info["backing-filename"], "base.qcow2");
    assert_eq!(
        mid_info["full-backing-filename"],
        base.to_string_lossy().as_ref()
    );
    // The guest still writes through the chain.
    qmpkit_machine::block::guest_write(&mut m, "ide0-hd0", 0, &[7; 512]).unwrap();
    drop(m);
    let Some(info) = qemu_img_info(&mid) else {
        qmpkit_testkit::skip::skip("qemu-img is not installed");
        return;
    };
    assert_eq!(info["backing-filename"], "base.qcow2");
    assert_eq!(info["backing-filename-format"], "qcow2");
    assert_eq!(qemu_img_check_clean(&mid), Some(true));
    assert_eq!(qemu_img_check_clean(&top), Some(true));
}

#[test]
fn io_throttle_limits_and_groups() {
    let d = dir("throttle");
    let disk = d.join("disk.qcow2");
    qcow2(&disk, 1 << 20);
    let mut m = machine_with_drive(&disk, None);
    let zero = json!({"bps": 0, "bps_rd": 0, "bps_wr": 0, "iops": 0, "iops_rd": 0, "iops_wr": 0});
    let t = |extra: Value| {
        let mut a = zero.clone();
        for (k, v) in extra.as_object().unwrap() {
            a[k] = v.clone();
        }
        a
    };
    // The documented example, on the first disk.
    ok(run(
        &mut m,
        "block_set_io_throttle",
        t(json!({"device": "ide0-hd0", "bps": 1000000, "bps_max": 8000000, "bps_max_length": 60})),
    ));
    let blocks = ok(run(&mut m, "query-block", json!({})));
    let ins = &blocks[0]["inserted"];
    assert_eq!(ins["bps"], 1000000);
    assert_eq!(ins["bps_max"], 8000000);
    assert_eq!(ins["bps_max_length"], 60);
    assert_eq!(ins["group"], "ide0-hd0");
    assert_eq!(ins.get("iops_max"), None);
    assert_eq!(ins.get("iops_size"), None);
    // QEMU 10.0.2's words for bad limits.
    for (extra, words) in [
        (
            json!({"bps": 100, "bps_rd": 10}),
            "bps/iops/max total values and read/write values cannot be used at the same time",
        ),
        (
            json!({"bps": -1}),
            "bps/iops/max values must be within [0, 1000000000000000]",
        ),
        (
            json!({"bps": 1000000000000001_i64}),
            "bps/iops/max values must be within [0, 1000000000000000]",
        ),
        (
            json!({"bps_max": 10}),
            "bps_max/iops_max require corresponding bps/iops values",
        ),
        (
            json!({"bps": 100, "bps_max": 10}),
            "bps_max/iops_max cannot be lower than bps/iops",
        ),
        (
            json!({"bps": 100, "bps_max": 1000, "bps_max_length": 0}),
            "the burst length cannot be 0",
        ),
        (
            json!({"bps": 100, "bps_max_length": 5}),
            "burst length set without burst rate",
        ),
        (
            json!({"iops_size": 4096}),
            "iops size requires an iops value to be set",
        ),
    ] {
        let mut a = t(extra);
        a["device"] = json!("ide0-hd0");
        assert_eq!(
            err(run(&mut m, "block_set_io_throttle", a)),
            format!("GenericError: {words}")
        );
    }
    assert_eq!(
        err(run(
            &mut m,
            "block_set_io_throttle",
            t(json!({"device": "nope"}))
        )),
        "DeviceNotFound: Device 'nope' not found"
    );
    assert_eq!(
        err(run(&mut m, "block_set_io_throttle", t(json!({})))),
        "GenericError: Need exactly one of 'device' and 'id'"
    );
    // Two drives in one group share its limits; all zero leaves the group.
    ok(run(
        &mut m,
        "block_set_io_throttle",
        t(json!({"device": "ide0-hd0", "bps": 5, "group": "g1"})),
    ));
    ok(run(
        &mut m,
        "block_set_io_throttle",
        t(json!({"device": "virtio0", "iops": 7, "iops_size": 4096, "group": "g1"})),
    ));
    let blocks = ok(run(&mut m, "query-block", json!({})));
    let by = |b: &Value, dev: &str| {
        b.as_array()
            .unwrap()
            .iter()
            .find(|x| x["device"] == dev)
            .unwrap()["inserted"]
            .clone()
    };
    for dev in ["ide0-hd0", "virtio0"] {
        let ins = by(&blocks, dev);
        assert_eq!(
            (
                ins["group"].clone(),
                ins["iops"].clone(),
                ins["bps"].clone(),
                ins["iops_size"].clone()
            ),
            (json!("g1"), json!(7), json!(0), json!(4096)),
            "{dev}"
        );
    }
    // The human monitor prints them as QEMU 10.0.2 does.
    let info = hmp(&mut m, "info block ide0-hd0");
    assert!(
        info.contains(
            "\r\n    I/O throttling:   bps=0 bps_rd=0 bps_wr=0 bps_max=0 bps_rd_max=0 \
             bps_wr_max=0 iops=7 iops_rd=0 iops_wr=0 iops_max=0 iops_rd_max=0 iops_wr_max=0 \
             iops_size=4096 group=g1\r\n"
        ),
        "{info}"
    );
    ok(run(
        &mut m,
        "block_set_io_throttle",
        t(json!({"device": "ide0-hd0"})),
    ));
    let blocks = ok(run(&mut m, "query-block", json!({})));
    assert_eq!(by(&blocks, "ide0-hd0").get("group"), None);
    assert_eq!(by(&blocks, "ide0-hd0")["iops"], 0);
    assert_eq!(by(&blocks, "virtio0")["group"], "g1");
}

/// blockdev-add a qcow2 node, plug a disk on it, refuse to delete the node in use, unplug,
/// then delete it.
#[test]
fn hot_plugged_disk_unplugs_and_its_node_goes() {
    let d = dir("hotplug");
    let disk = d.join("disk.qcow2");
    qcow2(&disk, 1 << 20);
    let mut m = common::machine();
    ok(run(
        &mut m,
        "blockdev-add",
        json!({"driver": "qcow2", "node-name": "disk1",
               "file": {"driver": "file", "filename": disk}}),
    ));
    ok(run(
        &mut m,
        "device_add",
        json!({"driver": "virtio-blk-pci", "id": "vd1", "drive": "disk1"}),
    ));
    let blocks = ok(run(&mut m, "query-block", json!({})));
    let plugged = blocks
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["qdev"] == "vd1")
        .unwrap();
    assert_eq!(plugged["inserted"]["node-name"], "disk1");
    assert_eq!(plugged["inserted"]["file"], disk.to_string_lossy().as_ref());
    assert_eq!(
        err(run(&mut m, "blockdev-del", json!({"node-name": "disk1"}))),
        "GenericError: Node disk1 is in use"
    );
    common::events(&mut m);
    ok(run(&mut m, "device_del", json!({"id": "vd1"})));
    common::step(&mut m, 5000);
    let evs = common::events(&mut m);
    assert!(
        evs.iter()
            .any(|e| e.starts_with("DEVICE_DELETED") && e.contains("\"vd1\"")),
        "{evs:?}"
    );
    let blocks = ok(run(&mut m, "query-block", json!({})));
    assert!(
        blocks
            .as_array()
            .unwrap()
            .iter()
            .all(|b| b["qdev"] != "vd1"),
        "{blocks}"
    );
    ok(run(&mut m, "blockdev-del", json!({"node-name": "disk1"})));
    let nodes = ok(run(&mut m, "query-named-block-nodes", json!({})));
    assert_eq!(nodes, json!([]));
    assert_eq!(qemu_img_check_clean(&disk).unwrap_or(true), true);
}

#[test]
fn internal_snapshots_in_the_image_file() {
    let d = dir("internal-snapshots");
    let disk = d.join("disk.qcow2");
    qcow2(&disk, 1 << 20);
    let mut m = machine_with_drive(&disk, None);
    qmpkit_machine::block::guest_write(&mut m, "ide0-hd0", 0, &[0x11; 4096]).unwrap();
    common::step(&mut m, 1500);
    ok(run(
        &mut m,
        "blockdev-snapshot-internal-sync",
        json!({"device": "ide0-hd0", "name": "s1"}),
    ));
    qmpkit_machine::block::guest_write(&mut m, "ide0-hd0", 0, &[0x22; 4096]).unwrap();
    assert_eq!(
        err(run(
            &mut m,
            "blockdev-snapshot-internal-sync",
            json!({"device": "ide0-hd0", "name": "s1"})
        )),
        "GenericError: Snapshot with name 's1' already exists on device 'ide0-hd0'"
    );
    assert_eq!(
        err(run(
            &mut m,
            "blockdev-snapshot-internal-sync",
            json!({"device": "nope", "name": "s1"})
        )),
        "GenericError: Cannot find device='nope' nor node-name='nope'"
    );
    // A transaction whose last action fails takes its snapshot back.
    assert_eq!(
        err(run(
            &mut m,
            "transaction",
            json!({"actions": [
                {"type": "blockdev-snapshot-internal-sync", "data": {"device": "ide0-hd0", "name": "t"}},
                {"type": "abort", "data": {}},
            ]})
        )),
        "GenericError: Transaction aborted using Abort action"
    );
    ok(run(
        &mut m,
        "blockdev-snapshot-internal-sync",
        json!({"device": "ide0-hd0", "name": "s2"}),
    ));
    let blocks = ok(run(&mut m, "query-block", json!({})));
    let snaps = &blocks[0]["inserted"]["image"]["snapshots"];
    let names: Vec<(&str, &str)> = snaps
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["id"].as_str().unwrap(), s["name"].as_str().unwrap()))
        .collect();
    assert_eq!(names, [("1", "s1"), ("2", "s2")]);
    assert_eq!(snaps[0]["vm-clock-sec"], 1);
    assert_eq!(snaps[0]["vm-clock-nsec"], 500_000_000);
    assert_eq!(snaps[0]["vm-state-size"], 0);
    let gone = ok(run(
        &mut m,
        "blockdev-snapshot-delete-internal-sync",
        json!({"device": "ide0-hd0", "name": "s1"}),
    ));
    assert_eq!(gone["id"], "1");
    assert_eq!(gone["name"], "s1");
    assert_eq!(gone["vm-clock-sec"], 1);
    assert_eq!(
        err(run(
            &mut m,
            "blockdev-snapshot-delete-internal-sync",
            json!({"device": "ide0-hd0", "name": "s9"})
        )),
        "GenericError: Snapshot with id 'null' and name 's9' does not exist on device 'ide0-hd0'"
    );
    assert_eq!(
        err(run(
            &mut m,
            "blockdev-snapshot-delete-internal-sync",
            json!({"device": "ide0-hd0"})
        )),
        "GenericError: Name or id must be provided"
    );
    drop(m);
    let Some(info) = qemu_img_info(&disk) else {
        qmpkit_testkit::skip::skip("qemu-img is not installed");
        return;
    };
    assert_eq!(info["snapshots"][0]["id"], "2");
    assert_eq!(info["snapshots"][0]["name"], "s2");
    assert_eq!(info["snapshots"].as_array().unwrap().len(), 1);
    assert_eq!(qemu_img_check_clean(&disk), Some(true));
}

/// `blockdev-reopen` on QEMU 10.0's interface: the same steps and words as
/// qemu-storage-daemon 10.0.2.
#[test]
fn blockdev_reopen_changes_nodes_all_or_nothing() {
    let d = dir("reopen");
    let (base, top, other, plain) = (
        d.join("base.qcow2"),
        d.join("top.qcow2"),
        d.join("other.qcow2"),
        d.join("plain.qcow2"),
    );
    qcow2(&base, 1 << 20);
    qcow2_on(&top, &base);
    qcow2(&other, 1 << 20);
    qcow2(&plain, 1 << 20);
    let mut m = common::machine_10();
    let add = |m: &mut Machine, v: Value| ok(run(m, "blockdev-add", v));
    add(
        &mut m,
        json!({"driver": "file", "node-name": "f0", "filename": plain}),
    );
    add(
        &mut m,
        json!({"driver": "qcow2", "node-name": "d0", "file": "f0"}),
    );
    add(
        &mut m,
        json!({"driver": "file", "node-name": "ftop", "filename": top}),
    );
    add(
        &mut m,
        json!({"driver": "qcow2", "node-name": "top", "file": "ftop"}),
    );
    add(
        &mut m,
        json!({"driver": "file", "node-name": "foth", "filename": other, "read-only": true}),
    );
    add(
        &mut m,
        json!({"driver": "qcow2", "node-name": "oth", "read-only": true, "file": "foth"}),
    );
    let reopen = |m: &mut Machine, opts: Value| run(m, "blockdev-reopen", json!({"options": opts}));
    let state = |m: &mut Machine, node: &str| {
        let nodes = ok(run(m, "query-named-block-nodes", json!({"flat": true})));
        let n = nodes
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["node-name"] == node)
            .cloned();
        n.map(|n| {
            (
                n["ro"].clone(),
                n.get("backing_file").cloned().unwrap_or(Value::Null),
            )
        })
    };
    ok(reopen(
        &mut m,
        json!([{"driver": "qcow2", "node-name": "d0", "read-only": true, "file": "f0"}]),
    ));
    assert_eq!(state(&mut m, "d0").unwrap().0, true);
    assert_eq!(state(&mut m, "f0").unwrap().0, false);
    ok(reopen(
        &mut m,
        json!([{"driver": "qcow2", "node-name": "d0", "file": "f0",
                              "detect-zeroes": "on"}]),
    ));
    assert_eq!(state(&mut m, "d0").unwrap().0, false);
    for (opts, words) in [
        (
            json!([{"driver": "raw", "node-name": "d0", "file": "f0"}]),
            "Cannot change the option 'driver'",
        ),
        (
            json!([{"driver": "qcow2", "node-name": "nope", "file": "f0"}]),
            "Failed to find node with node-name='nope'",
        ),
        (
            json!([{"driver": "qcow2", "file": "f0"}]),
            "node-name not specified",
        ),
        (
            json!([{"driver": "qcow2", "node-name": "top", "file": "ftop"}]),
            "backing is missing for 'top'",
        ),
        (
            json!([{"driver": "qcow2", "node-name": "top", "file": "nope"}]),
            "backing is missing for 'top'",
        ),
        (
            json!([{"driver": "qcow2", "node-name": "top", "file": "ftop", "backing": "nope"}]),
            "Cannot find device='' nor node-name='nope'",
        ),
        (
            json!([{"driver": "qcow2", "node-name": "top", "file": "ftop", "backing": "top"}]),
            "Making 'top' a backing child of 'top' would create a cycle",
        ),
        (
            json!([{"driver": "qcow2", "node-name": "oth", "read-only": false, "file": "foth"}]),
            "Block node is read-only",
        ),
        (
            json!([{"driver": "qcow2", "node-name": "oth", "read-only": false,
                 "file": {"driver": "file", "filename": other}}]),
            "Cannot change the option 'file.driver'",
        ),
        (
            json!([{"driver": "file", "node-name": "foth", "filename": plain, "read-only": true}]),
            "Cannot change the option 'filename'",
        ),
        // All or nothing: the first node keeps its options when the second fails.
        (
            json!([{"driver": "qcow2", "node-name": "d0", "read-only": true, "file": "f0"},
                {"driver": "qcow2", "node-name": "nope", "file": "f0"}]),
            "Failed to find node with node-name='nope'",
        ),
    ] {
        assert_eq!(
            err(reopen(&mut m, opts.clone())),
            format!("GenericError: {words}"),
            "{opts}"
        );
    }
    assert_eq!(state(&mut m, "d0").unwrap().0, false);
    // The backing child: dropped (its implicit nodes go), then another node.
    assert_eq!(
        state(&mut m, "top").unwrap().1,
        base.to_string_lossy().as_ref()
    );
    ok(reopen(
        &mut m,
        json!([{"driver": "qcow2", "node-name": "top", "file": "ftop", "backing": null}]),
    ));
    assert_eq!(state(&mut m, "top").unwrap().1, Value::Null);
    let nodes = ok(run(
        &mut m,
        "query-named-block-nodes",
        json!({"flat": true}),
    ));
    assert!(nodes
        .as_array()
        .unwrap()
        .iter()
        .all(|n| n["file"] != base.to_string_lossy().as_ref()));
    ok(reopen(
        &mut m,
        json!([{"driver": "qcow2", "node-name": "top", "file": "ftop", "backing": "oth"}]),
    ));
    assert_eq!(
        state(&mut m, "top").unwrap().1,
        other.to_string_lossy().as_ref()
    );
    assert_eq!(
        err(reopen(
            &mut m,
            json!([{"driver": "qcow2", "node-name": "oth", "file": "foth",
                                    "read-only": true, "backing": "top"}])
        )),
        "GenericError: Making 'top' a backing child of 'oth' would create a cycle"
    );
    // A writer keeps a node writable. (A file left at the socket's path is replaced, as
    // QEMU replaces a stale socket.)
    std::fs::write(d.join("nbd.sock"), b"stale").unwrap();
    ok(run(
        &mut m,
        "nbd-server-start",
        json!({"addr": {"type": "unix", "data": {"path": d.join("nbd.sock")}}}),
    ));
    ok(run(
        &mut m,
        "block-export-add",
        json!({"type": "nbd", "id": "e0", "node-name": "d0", "writable": true}),
    ));
    assert_eq!(
        err(reopen(
            &mut m,
            json!([{"driver": "qcow2", "node-name": "d0", "read-only": true, "file": "f0"}])
        )),
        "GenericError: Read-only block node 'd0' cannot support read-write users"
    );
    // Unnamed, the export is known to NBD clients by its node's name.
    if let Some(qemu_io) = qmpkit_testkit::skip::program("qemu-io") {
        let uri = format!("nbd+unix:///d0?socket={}", d.join("nbd.sock").display());
        let out = Command::new(qemu_io)
            .args(["-f", "raw", "-c", "write -P 5 0 512", &uri])
            .output()
            .expect("qemu-io");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Both layers read-only in one go, then writable again in one go.
    ok(run(&mut m, "block-export-del", json!({"id": "e0"})));
    ok(reopen(
        &mut m,
        json!([
            {"driver": "qcow2", "node-name": "d0", "read-only": true, "file": "f0"},
            {"driver": "file", "node-name": "f0", "filename": plain, "read-only": true},
        ]),
    ));
    assert_eq!(
        (
            state(&mut m, "d0").unwrap().0,
            state(&mut m, "f0").unwrap().0
        ),
        (json!(true), json!(true))
    );
    ok(reopen(
        &mut m,
        json!([
            {"driver": "file", "node-name": "f0", "filename": plain},
            {"driver": "qcow2", "node-name": "d0", "file": "f0"},
        ]),
    ));
    assert_eq!(
        (
            state(&mut m, "d0").unwrap().0,
            state(&mut m, "f0").unwrap().0
        ),
        (json!(false), json!(false))
    );
}

/// savevm / loadvm / delvm / info snapshots over two qcow2 disks, printed as QEMU 10.0.2
/// prints them.
#[test]
fn hmp_vm_snapshots() {
    let d = dir("savevm");
    let (a, b) = (d.join("a.qcow2"), d.join("b.qcow2"));
    qcow2(&a, 1 << 20);
    qcow2(&b, 1 << 20);
    let drive = |id: &str, file: &Path| DriveConfig {
        id: id.into(),
        interface: "ide".into(),
        file: Some(file.to_string_lossy().into_owned()),
        format: Some("qcow2".into()),
        ..Default::default()
    };
    let mut c = MachineConfig::default_machine();
    c.drives = vec![drive("ide0-hd0", &a), drive("ide0-hd1", &b)];
    c.qemu_version = (10, 0, 2);
    let p = qmpkit_testkit::data::path("qemu-ref/schema-10.0.2/qapi/qapi-schema.json");
    let s = qmpkit_schema::load(&p, qmpkit_schema::Dialect::Modern).expect("schema");
    let mut m = Machine::new(Arc::new(c), Arc::new(s));
    assert_eq!(
        hmp(&mut m, "info snapshots"),
        "There is no snapshot available.\r\n"
    );
    qmpkit_machine::block::guest_write(&mut m, "ide0-hd0", 0, &[0x11; 512]).unwrap();
    common::step(&mut m, 2250);
    assert_eq!(hmp(&mut m, "savevm s1"), "");
    qmpkit_machine::block::guest_write(&mut m, "ide0-hd0", 0, &[0x22; 512]).unwrap();
    assert_eq!(hmp(&mut m, "savevm s2"), "");
    assert_eq!(hmp(&mut m, "savevm s1"), "");
    qmpkit_machine::block::guest_write(&mut m, "ide0-hd0", 0, &[0x33; 512]).unwrap();
    ok(run(
        &mut m,
        "blockdev-snapshot-internal-sync",
        json!({"device": "ide0-hd1", "name": "only1"}),
    ));
    let text = hmp(&mut m, "info snapshots");
    let lines: Vec<&str> = text.split("\r\n").collect();
    assert_eq!(lines[0], "List of snapshots present on all disks:");
    assert_eq!(
        lines[1],
        "ID      TAG               VM_SIZE                DATE        VM_CLOCK     ICOUNT"
    );
    // s2 first: s1 was taken again after it.
    assert!(
        lines[2].starts_with("--      s2                    0 B "),
        "{text}"
    );
    assert!(lines[2].ends_with("  0000:00:02.250         --"), "{text}");
    assert!(
        lines[3].starts_with("--      s1                    0 B "),
        "{text}"
    );
    assert_eq!(lines[4], "");
    assert_eq!(
        lines[5],
        "List of partial (non-loadable) snapshots on 'ide0-hd1':"
    );
    assert!(
        lines[7].starts_with("4       only1                 0 B "),
        "{text}"
    );
    assert_eq!(
        hmp(&mut m, "loadvm nope"),
        "Error: Snapshot 'nope' does not exist in one or more devices\r\n"
    );
    assert_eq!(
        hmp(&mut m, "loadvm only1"),
        "Error: Snapshot 'only1' does not exist in one or more devices\r\n"
    );
    assert_eq!(hmp(&mut m, "loadvm s1"), "");
    let data = qmpkit_machine::block::guest_read(&mut m, "ide0-hd0", 0, 1).unwrap();
    // s1 was taken again after 0x22 was written.
    assert_eq!(data, [0x22]);
    assert_eq!(hmp(&mut m, "delvm s1"), "");
    assert_eq!(hmp(&mut m, "delvm nope"), "");
    assert_eq!(hmp(&mut m, "delvm only1"), "");
    assert_eq!(
        hmp(&mut m, "loadvm"),
        "loadvm: string expected\r\nTry \"help loadvm\" for more information\r\n"
    );
    assert_eq!(
        hmp(&mut m, "help savevm"),
        "savevm tag -- save a VM snapshot. If no tag is provided, a new snapshot is created\r\n"
    );
    let text = hmp(&mut m, "info snapshots");
    assert_eq!(text.split("\r\n").count(), 4, "{text}");
    drop(m);
    for f in [&a, &b] {
        if let Some(clean) = qemu_img_check_clean(f) {
            assert!(clean, "{}", f.display());
        }
    }
    if let Some(info) = qemu_img_info(&a) {
        assert_eq!(info["snapshots"][0]["name"], "s2");
        assert_eq!(info["snapshots"].as_array().unwrap().len(), 1);
    }
    // A machine without a qcow2 disk.
    let mut m = common::machine_10();
    assert_eq!(
        hmp(&mut m, "info snapshots"),
        "no block device can store vmstate for snapshot\r\n"
    );
}

#[test]
fn set_iothread_checks_in_qemus_words() {
    let d = dir("iothread");
    let disk = d.join("disk.qcow2");
    qcow2(&disk, 1 << 20);
    let mut m = common::machine_with(|c| {
        c.objects.push(qmpkit_machine::config::ObjectConfig {
            qom_type: "iothread".into(),
            id: "io0".into(),
            ..Default::default()
        })
    });
    ok(run(
        &mut m,
        "blockdev-add",
        json!({"driver": "qcow2", "node-name": "d0",
               "file": {"driver": "file", "node-name": "f0", "filename": disk}}),
    ));
    let set = |m: &mut Machine, v: Value| run(m, "x-blockdev-set-iothread", v);
    ok(set(&mut m, json!({"node-name": "d0", "iothread": "io0"})));
    ok(set(&mut m, json!({"node-name": "d0", "iothread": null})));
    ok(set(&mut m, json!({"node-name": "f0", "iothread": "io0"})));
    assert_eq!(
        err(set(&mut m, json!({"node-name": "nope", "iothread": "io0"}))),
        "GenericError: Failed to find node with node-name='nope'"
    );
    assert_eq!(
        err(set(&mut m, json!({"node-name": "d0", "iothread": "nope"}))),
        "GenericError: Cannot find iothread nope"
    );
    ok(run(
        &mut m,
        "device_add",
        json!({"driver": "virtio-blk-pci", "id": "vd1", "drive": "d0"}),
    ));
    assert_eq!(
        err(set(&mut m, json!({"node-name": "d0", "iothread": "io0"}))),
        "GenericError: Node d0 is associated with a BlockBackend and could be in use \
         (use force=true to override this check)"
    );
    ok(set(
        &mut m,
        json!({"node-name": "d0", "iothread": "io0", "force": true}),
    ));
}

/// A throttle filter over a qcow2 node, by a throttle group object: the same steps, names
/// and words as qemu-storage-daemon 10.0.2.
#[test]
fn throttle_filter_nodes_and_groups() {
    let d = dir("throttle-filter");
    let disk = d.join("a.qcow2");
    qcow2(&disk, 1 << 20);
    let mut m = common::machine_10();
    ok(run(
        &mut m,
        "object-add",
        json!({"qom-type": "throttle-group", "id": "tg0", "limits": {"iops-total": 100}}),
    ));
    ok(run(
        &mut m,
        "blockdev-add",
        json!({"driver": "qcow2", "node-name": "d0", "file": {"driver": "file", "filename": disk}}),
    ));
    assert_eq!(
        err(run(
            &mut m,
            "blockdev-add",
            json!({"driver": "throttle", "node-name": "t0", "throttle-group": "nope", "file": "d0"})
        )),
        "GenericError: Throttle group 'nope' does not exist"
    );
    ok(run(
        &mut m,
        "blockdev-add",
        json!({"driver": "throttle", "node-name": "t0", "throttle-group": "tg0", "file": "d0"}),
    ));
    let nodes = ok(run(
        &mut m,
        "query-named-block-nodes",
        json!({"flat": true}),
    ));
    let t0 = nodes
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["node-name"] == "t0")
        .unwrap();
    let name = format!(
        "json:{{\"throttle-group\": \"tg0\", \"driver\": \"throttle\", \"file\": {{\"driver\": \
         \"qcow2\", \"file\": {{\"driver\": \"file\", \"filename\": \"{}\"}}}}}}",
        disk.display()
    );
    assert_eq!(t0["drv"], "throttle");
    assert_eq!(t0["file"], name.as_str());
    assert_eq!(t0["image"]["filename"], name.as_str());
    assert_eq!(t0["image"]["format"], "throttle");
    assert_eq!(t0["image"]["virtual-size"], 1 << 20);
    assert_eq!(t0["image"]["cluster-size"], 65536);
    assert_eq!(t0["image"].get("format-specific"), None);
    // The filter passes its parents' needs down: nothing while it has none.
    let graph = ok(run(&mut m, "x-debug-query-block-graph", json!({})));
    let edge = graph["edges"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "file" && e["perm"] == json!([]))
        .cloned();
    assert_eq!(
        edge.map(|e| e["shared-perm"].clone()),
        Some(json!([
            "resize",
            "write-unchanged",
            "write",
            "consistent-read"
        ]))
    );
    assert_eq!(
        err(run(&mut m, "object-del", json!({"id": "tg0"}))),
        "GenericError: object 'tg0' is in use, can not be deleted"
    );
    assert_eq!(
        err(run(&mut m, "blockdev-del", json!({"node-name": "d0"}))),
        "GenericError: Block device d0 is in use"
    );
    ok(run(&mut m, "blockdev-del", json!({"node-name": "t0"})));
    ok(run(&mut m, "object-del", json!({"id": "tg0"})));
    assert_eq!(
        err(run(
            &mut m,
            "blockdev-add",
            json!({"driver": "throttle", "node-name": "t1", "throttle-group": "tg9",
                   "file": {"driver": "null-co"}})
        )),
        "GenericError: Throttle group 'tg9' does not exist"
    );
}

/// The same on a storage daemon's machine (no PC machine in the QOM tree).
#[test]
fn throttle_filter_on_a_storage_daemon() {
    let d = dir("throttle-daemon");
    let disk = d.join("a.qcow2");
    qcow2(&disk, 1 << 20);
    let mut m = common::storage_daemon();
    ok(run(
        &mut m,
        "object-add",
        json!({"qom-type": "throttle-group", "id": "tg0", "limits": {"iops-total": 100}}),
    ));
    ok(run(
        &mut m,
        "blockdev-add",
        json!({"driver": "qcow2", "node-name": "d0", "file": {"driver": "file", "filename": disk}}),
    ));
    ok(run(
        &mut m,
        "blockdev-add",
        json!({"driver": "throttle", "node-name": "t0", "throttle-group": "tg0", "file": "d0"}),
    ));
    assert_eq!(
        err(run(&mut m, "object-del", json!({"id": "tg0"}))),
        "GenericError: object 'tg0' is in use, can not be deleted"
    );
    ok(run(&mut m, "blockdev-del", json!({"node-name": "t0"})));
    ok(run(&mut m, "object-del", json!({"id": "tg0"})));
}

/// `block-export-del` and `nbd-server-remove` with a real NBD client (qemu-io) reading the
/// export: `safe` (the default) refuses in QEMU's words while the client is there, `hard`
/// disconnects it (its next read fails) and announces the export gone after the reply.
#[test]
fn export_removal_modes_with_a_client() {
    use std::io::{BufRead, BufReader, Write};
    use std::process::Stdio;
    let Some(qemu_io) = qmpkit_testkit::skip::program("qemu-io") else {
        return;
    };
    let d = dir("export-modes");
    let file = d.join("disk.raw");
    std::fs::write(&file, vec![7u8; 1 << 20]).unwrap();
    let sock = d.join("nbd.sock");
    let mut m = common::machine_10();
    ok(run(
        &mut m,
        "blockdev-add",
        json!({"driver": "file", "node-name": "f0", "filename": file}),
    ));
    ok(run(
        &mut m,
        "nbd-server-start",
        json!({"addr": {"type": "unix", "data": {"path": sock}}}),
    ));
    for (cmd, id, args) in [
        (
            "block-export-del",
            "e0",
            json!({"type": "nbd", "id": "e0", "node-name": "f0", "name": "disk"}),
        ),
        // The legacy command's export has its name as ID.
        (
            "nbd-server-remove",
            "disk",
            json!({"device": "f0", "name": "disk"}),
        ),
    ] {
        let add = if cmd == "block-export-del" {
            "block-export-add"
        } else {
            "nbd-server-add"
        };
        ok(run(&mut m, add, args));
        common::events(&mut m);
        let uri = format!("nbd+unix:///disk?socket={}", sock.display());
        let mut client = Command::new(&qemu_io)
            .args(["-r", "-f", "raw", &uri])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("qemu-io");
        let mut stdin = client.stdin.take().unwrap();
        let mut out = BufReader::new(client.stdout.take().unwrap());
        // A first read: the client is connected once it has its answer.
        writeln!(stdin, "read -P 7 0 512").unwrap();
        let mut line = String::new();
        while !line.contains("bytes at offset") {
            line.clear();
            assert_ne!(out.read_line(&mut line).unwrap(), 0, "qemu-io ended");
        }
        let del = |mode: Option<&str>| {
            let mut a = json!({ if cmd == "block-export-del" { "id" } else { "name" }: id });
            if let Some(mode) = mode {
                a["mode"] = json!(mode);
            }
            a
        };
        for mode in [None, Some("safe")] {
            assert_eq!(
                err(run(&mut m, cmd, del(mode))),
                format!("GenericError: export '{id}' still in use")
            );
        }
        assert_eq!(
            ok(run(&mut m, "query-block-exports", json!({}))),
            json!([{"type": "nbd", "id": id, "node-name": "f0", "shutting-down": false}])
        );
        assert_eq!(common::events(&mut m), Vec::<String>::new());
        ok(run(&mut m, cmd, del(Some("hard"))));
        // The event follows the reply.
        assert_eq!(common::events(&mut m), Vec::<String>::new());
        common::step(&mut m, 1);
        assert_eq!(
            common::events(&mut m),
            vec![format!("BLOCK_EXPORT_DELETED {{\"id\":\"{id}\"}}")]
        );
        assert_eq!(ok(run(&mut m, "query-block-exports", json!({}))), json!([]));
        writeln!(stdin, "read -P 7 0 512").unwrap();
        drop(stdin);
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
        let _ = client.wait();
        assert!(rest.contains("read failed"), "{cmd}: {rest}");
    }
    // Without clients, `safe` removes at once, the event before the reply.
    ok(run(
        &mut m,
        "block-export-add",
        json!({"type": "nbd", "id": "e1", "node-name": "f0"}),
    ));
    ok(run(
        &mut m,
        "block-export-del",
        json!({"id": "e1", "mode": "safe"}),
    ));
    assert_eq!(
        common::events(&mut m),
        vec!["BLOCK_EXPORT_DELETED {\"id\":\"e1\"}".to_string()]
    );
}

/// `block-job-change` of a mirror's copy mode, in QEMU 10.0.2's words: background to
/// write-blocking only; other jobs cannot change.
#[test]
fn mirror_copy_mode_changes_as_in_qemu() {
    let mut m = common::machine_10();
    // The backup's nodes are larger than the 1 MiB it copies at once under its speed limit:
    // it stays, waiting for its next chunk.
    for (n, size) in [
        ("s0", 1 << 20),
        ("t0", 1 << 20),
        ("s1", 4 << 20),
        ("t1", 4 << 20),
    ] {
        ok(run(
            &mut m,
            "blockdev-add",
            json!({"driver": "null-co", "node-name": n, "size": size}),
        ));
    }
    ok(run(
        &mut m,
        "blockdev-mirror",
        json!({"job-id": "m0", "device": "s0", "target": "t0", "sync": "full", "speed": 1024}),
    ));
    ok(run(
        &mut m,
        "blockdev-backup",
        json!({"job-id": "b0", "device": "s1", "target": "t1", "sync": "full", "speed": 1024}),
    ));
    let change = |id: &str, ty: &str, mode: Option<&str>| {
        let mut a = json!({"id": id, "type": ty});
        if let Some(mode) = mode {
            a["copy-mode"] = json!(mode);
        }
        a
    };
    // Background to background changes nothing.
    ok(run(
        &mut m,
        "block-job-change",
        change("m0", "mirror", Some("background")),
    ));
    ok(run(
        &mut m,
        "block-job-change",
        change("m0", "mirror", Some("write-blocking")),
    ));
    ok(run(
        &mut m,
        "block-job-change",
        change("m0", "mirror", Some("write-blocking")),
    ));
    assert_eq!(
        err(run(
            &mut m,
            "block-job-change",
            change("m0", "mirror", Some("background"))
        )),
        "GenericError: Change to copy mode 'background' is not implemented"
    );
    // Options of another type carry no copy mode: they ask for background.
    assert_eq!(
        err(run(
            &mut m,
            "block-job-change",
            change("m0", "commit", None)
        )),
        "GenericError: Change to copy mode 'background' is not implemented"
    );
    assert_eq!(
        err(run(
            &mut m,
            "block-job-change",
            change("b0", "mirror", Some("write-blocking"))
        )),
        "GenericError: Job type does not support change"
    );
    assert_eq!(
        err(run(
            &mut m,
            "block-job-change",
            change("nope", "mirror", Some("write-blocking"))
        )),
        "DeviceNotActive: Block job 'nope' not found"
    );
}

/// A qcow2 node over a raw node over the file: QEMU allows it (the raw node passes the file's
/// data through), and names the qcow2 node by its description.
#[test]
fn qcow2_node_over_a_raw_node() {
    let d = dir("qcow2-over-raw");
    let img = d.join("disk.qcow2");
    qcow2(&img, 1 << 20);
    let mut m = common::machine_10();
    for a in [
        json!({"driver": "file", "node-name": "f", "filename": img}),
        json!({"driver": "raw", "node-name": "r", "file": "f"}),
        json!({"driver": "qcow2", "node-name": "q", "file": "r"}),
    ] {
        ok(run(&mut m, "blockdev-add", a));
    }
    let nodes = ok(run(&mut m, "query-named-block-nodes", json!({})));
    let q = nodes
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["node-name"] == "q")
        .expect("node q");
    let name = format!(
        "json:{{\"driver\": \"qcow2\", \"file\": {{\"driver\": \"raw\", \"file\": {{\"driver\": \
         \"file\", \"filename\": \"{}\"}}}}}}",
        img.display()
    );
    assert_eq!(q["file"], json!(name));
    assert_eq!(q["image"]["filename"], json!(name));
    assert_eq!(
        (
            &q["drv"],
            &q["image"]["format"],
            &q["image"]["virtual-size"],
            &q["image"]["cluster-size"]
        ),
        (
            &json!("qcow2"),
            &json!("qcow2"),
            &json!(1 << 20),
            &json!(65536)
        )
    );
    for n in ["q", "r", "f"] {
        ok(run(&mut m, "blockdev-del", json!({"node-name": n})));
    }
}

/// A drive whose medium is the top of a deep stack of throttle filters: `query-block`
/// nests every layer's image under the drive's (each named by its options, with those of
/// the layers below, and cut where QEMU cuts a name), and the machine describes the stack in
/// time that follows the answer's size, not once more for every layer above.
#[test]
fn deep_filter_stacks_under_a_drive_are_described_in_bounded_time() {
    const TOP: usize = 100;
    let d = dir("deep-stack");
    let disk = d.join("a.qcow2");
    qcow2(&disk, 1 << 20);
    let mut m = common::machine_10();
    ok(run(
        &mut m,
        "object-add",
        json!({"qom-type": "throttle-group", "id": "tg0"}),
    ));
    ok(run(
        &mut m,
        "blockdev-add",
        json!({"driver": "qcow2", "node-name": "n0", "file": {"driver": "file", "filename": disk}}),
    ));
    for i in 1..=TOP {
        ok(run(
            &mut m,
            "blockdev-add",
            json!({"driver": "throttle", "node-name": format!("n{i}"), "throttle-group": "tg0",
                   "file": format!("n{}", i - 1)}),
        ));
    }
    let blocks = ok(run(&mut m, "query-block", json!({})));
    let cd = blocks
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["device"] == "ide1-cd0")
        .expect("the CD-ROM drive");
    let qdev = cd["qdev"].as_str().unwrap().to_string();
    ok(run(&mut m, "blockdev-open-tray", json!({"id": qdev})));
    ok(run(
        &mut m,
        "blockdev-insert-medium",
        json!({"id": qdev, "node-name": format!("n{TOP}")}),
    ));
    ok(run(&mut m, "blockdev-close-tray", json!({"id": qdev})));
    let start = std::time::Instant::now();
    let blocks = ok(run(&mut m, "query-block", json!({})));
    let nodes = ok(run(&mut m, "query-named-block-nodes", json!({})));
    let took = start.elapsed();
    assert!(
        took < std::time::Duration::from_secs(20),
        "describing {TOP} layers took {took:?}"
    );
    let nodes = nodes.as_array().unwrap();
    let file_of = |name: &str| {
        nodes
            .iter()
            .find(|n| n["node-name"] == name)
            .map(|n| n["file"].clone())
            .unwrap_or_else(|| panic!("no node {name}"))
    };
    let cd = blocks
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["device"] == "ide1-cd0")
        .unwrap();
    let inserted = &cd["inserted"];
    assert_eq!(inserted["node-name"], format!("n{TOP}"));
    assert_eq!(inserted["backing_file_depth"], TOP);
    let mut image = &inserted["image"];
    for k in (0..=TOP).rev() {
        assert_eq!(image["filename"], file_of(&format!("n{k}")), "layer n{k}");
        assert_eq!(image["virtual-size"], 1 << 20, "layer n{k}");
        image = &image["backing-image"];
    }
    assert_eq!(*image, Value::Null);
    // Each layer's name nests those below it: whole low in the stack, cut near its top.
    let whole = |k: usize| {
        let mut o = json!({"driver": "qcow2", "file": {"driver": "file", "filename": disk}});
        for _ in 0..k {
            o = json!({"throttle-group": "tg0", "driver": "throttle", "file": o});
        }
        format!(
            "json:{}",
            qmpkit_wire::json::to_qemu_string(&qmpkit_wire::qdict::qemu_order(o))
        )
    };
    assert_eq!(file_of("n3"), whole(3));
    let top = file_of(&format!("n{TOP}"));
    let top = top.as_str().unwrap();
    assert_eq!(top.len(), 4095);
    assert_eq!(&top[..4092], &whole(TOP)[..4092]);
    assert!(top.ends_with("..."));
}
