//! The machine's block layer over real images: hot-plug and mirror with pivot, streaming a
//! backing chain, snapshot then commit, an all-or-nothing transaction, a locked tray, and an
//! NBD client reading what the guest wrote. States and events are checked in QEMU's order.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use qmpkit_block::image::{self, Image, ImageFormat};
use qmpkit_machine::config::DriveConfig;
use qmpkit_machine::{Machine, MachineConfig};
use serde_json::{json, Value};

mod common;

use common::{ok, qcow2, run, schema, step};

fn dir(name: &str) -> PathBuf {
    common::scratch_dir("qmpkit-block-layer", name)
}

fn fill(path: &Path, offset: u64, byte: u8, len: usize) {
    let img = Image::open(path, Some(ImageFormat::Qcow2), true).expect("open");
    img.write(&vec![byte; len], offset).expect("write");
    img.flush().expect("flush");
}

/// Events by name, with data, raw (the machine's 2.12 schema lacks JOB_STATUS_CHANGE; the
/// raw outbox shows what a newer interface sees).
fn events(m: &mut Machine) -> Vec<(String, Value)> {
    m.take_raw_events()
        .into_iter()
        .map(|(n, d)| (n, d.unwrap_or(Value::Null)))
        .collect()
}

fn names(evs: &[(String, Value)]) -> Vec<String> {
    evs.iter()
        .map(|(n, d)| match n.as_str() {
            "JOB_STATUS_CHANGE" => format!("{n} {}", d["status"].as_str().unwrap_or("")),
            _ => n.clone(),
        })
        .collect()
}

fn machine_with_drive(file: &Path, format: &str) -> Machine {
    let mut c = MachineConfig::default_machine();
    c.drives[0] = DriveConfig {
        id: "ide0-hd0".into(),
        interface: "ide".into(),
        file: Some(file.to_string_lossy().into_owned()),
        format: Some(format.into()),
        ..Default::default()
    };
    Machine::new(Arc::new(c), schema())
}

fn inserted<'a>(blocks: &'a Value, qdev_or_device: &str) -> &'a Value {
    blocks
        .as_array()
        .and_then(|a| {
            a.iter()
                .find(|b| b["device"] == qdev_or_device || b["qdev"] == qdev_or_device)
        })
        .map(|b| &b["inserted"])
        .unwrap_or_else(|| panic!("no {qdev_or_device} in {blocks}"))
}

#[test]
fn hot_plugged_disk_mirrors_and_pivots() {
    let d = dir("mirror");
    let src = d.join("src.qcow2");
    qcow2(&src, 4 << 20, None);
    fill(&src, 0, 0x5a, 65536);
    let mut m = common::machine();
    ok(run(
        &mut m,
        "blockdev-add",
        json!({"driver": "qcow2", "node-name": "disk1",
               "file": {"driver": "file", "filename": src}}),
    ));
    ok(run(
        &mut m,
        "device_add",
        json!({"driver": "virtio-blk-pci", "id": "vd1", "drive": "disk1"}),
    ));
    let blocks = ok(run(&mut m, "query-block", json!({})));
    assert_eq!(inserted(&blocks, "vd1")["node-name"], "disk1");
    // In use by the device: not deletable.
    assert_eq!(
        run(&mut m, "blockdev-del", json!({"node-name": "disk1"})),
        Err("GenericError: Node disk1 is in use".into())
    );
    let tgt = d.join("tgt.qcow2");
    events(&mut m);
    ok(run(
        &mut m,
        "drive-mirror",
        json!({"device": "disk1", "job-id": "m0", "target": tgt, "sync": "full",
               "node-name": "copy"}),
    ));
    // Complete before ready: QEMU's verb table.
    assert_eq!(
        run(&mut m, "block-job-complete", json!({"device": "m0"})),
        Err(
            "GenericError: Job 'm0' in state 'running' cannot accept command verb 'complete'"
                .into()
        )
    );
    step(&mut m, 100);
    let jobs = ok(run(&mut m, "query-block-jobs", json!({})));
    assert_eq!(jobs[0]["ready"], true, "{jobs}");
    ok(run(&mut m, "block-job-complete", json!({"device": "m0"})));
    let evs = events(&mut m);
    assert_eq!(
        names(&evs),
        [
            "JOB_STATUS_CHANGE created",
            "JOB_STATUS_CHANGE running",
            "JOB_STATUS_CHANGE ready",
            "BLOCK_JOB_READY",
            "JOB_STATUS_CHANGE waiting",
            "JOB_STATUS_CHANGE pending",
            "BLOCK_JOB_COMPLETED",
            "JOB_STATUS_CHANGE concluded",
            "JOB_STATUS_CHANGE null",
        ]
    );
    let done = &evs[6].1;
    assert_eq!(done["type"], "mirror");
    assert_eq!(done["device"], "m0");
    assert_eq!(done["len"], 4 << 20);
    assert_eq!(done["offset"], 4 << 20);
    // The device now reads the target.
    let blocks = ok(run(&mut m, "query-block", json!({})));
    let ins = inserted(&blocks, "vd1");
    assert_eq!(ins["node-name"], "copy");
    assert_eq!(ins["file"], tgt.to_string_lossy().as_ref());
    assert_eq!(ok(run(&mut m, "query-block-jobs", json!({}))), json!([]));
    let img = Image::open(&tgt, Some(ImageFormat::Qcow2), false).expect("target");
    let mut buf = vec![0; 65536];
    img.read(&mut buf, 0).expect("read");
    assert!(buf.iter().all(|&b| b == 0x5a));
}

#[test]
fn stream_pulls_a_backing_chain_into_the_top() {
    let d = dir("stream");
    let (base, mid, top) = (
        d.join("base.qcow2"),
        d.join("mid.qcow2"),
        d.join("top.qcow2"),
    );
    qcow2(&base, 1 << 20, None);
    fill(&base, 0, 0x11, 4096);
    qcow2(&mid, 1 << 20, Some(&base));
    fill(&mid, 65536, 0x22, 4096);
    qcow2(&top, 1 << 20, Some(&mid));
    let mut m = common::machine();
    ok(run(
        &mut m,
        "blockdev-add",
        json!({"driver": "qcow2", "node-name": "top",
               "file": {"driver": "file", "filename": top}}),
    ));
    let nodes = ok(run(&mut m, "query-named-block-nodes", json!({})));
    let topinfo = nodes
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["node-name"] == "top")
        .unwrap();
    assert_eq!(topinfo["backing_file_depth"], 2);
    events(&mut m);
    ok(run(
        &mut m,
        "block-stream",
        json!({"device": "top", "job-id": "top"}),
    ));
    // A second job on the node is refused in QEMU's words.
    assert_eq!(
        run(
            &mut m,
            "block-stream",
            json!({"device": "top", "job-id": "again"})
        ),
        Err("GenericError: Node 'top' is busy: block device is in use by block job: stream".into())
    );
    step(&mut m, 50);
    let evs = events(&mut m);
    assert_eq!(
        names(&evs),
        [
            "JOB_STATUS_CHANGE created",
            "JOB_STATUS_CHANGE running",
            "JOB_STATUS_CHANGE waiting",
            "JOB_STATUS_CHANGE pending",
            "BLOCK_JOB_COMPLETED",
            "JOB_STATUS_CHANGE concluded",
            "JOB_STATUS_CHANGE null",
        ]
    );
    assert_eq!(evs[4].1["type"], "stream");
    let nodes = ok(run(&mut m, "query-named-block-nodes", json!({})));
    let topinfo = nodes
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["node-name"] == "top")
        .unwrap();
    assert_eq!(topinfo["backing_file_depth"], 0);
    let info = image::image_info(&top, Some(ImageFormat::Qcow2)).unwrap();
    assert_eq!(info.backing_filename, None);
    let img = Image::open(&top, Some(ImageFormat::Qcow2), false).unwrap();
    let mut buf = vec![0; 4096];
    img.read(&mut buf, 0).unwrap();
    assert!(buf.iter().all(|&b| b == 0x11));
    img.read(&mut buf, 65536).unwrap();
    assert!(buf.iter().all(|&b| b == 0x22));
}

#[test]
fn snapshot_sync_then_commit_back() {
    let d = dir("snapshot");
    let base = d.join("base.qcow2");
    qcow2(&base, 1 << 20, None);
    let mut m = machine_with_drive(&base, "qcow2");
    let blocks = ok(run(&mut m, "query-block", json!({})));
    let ins = inserted(&blocks, "ide0-hd0");
    assert_eq!(ins["file"], base.to_string_lossy().as_ref());
    assert_eq!(ins["image"]["virtual-size"], 1 << 20);
    assert!(ins["node-name"].as_str().unwrap().starts_with("#block"));
    let snap = d.join("snap.qcow2");
    ok(run(
        &mut m,
        "blockdev-snapshot-sync",
        json!({"device": "ide0-hd0", "snapshot-file": snap, "snapshot-node-name": "snap"}),
    ));
    let blocks = ok(run(&mut m, "query-block", json!({})));
    let ins = inserted(&blocks, "ide0-hd0");
    assert_eq!(ins["node-name"], "snap");
    assert_eq!(ins["backing_file_depth"], 1);
    assert_eq!(
        ins["image"]["backing-filename"],
        base.to_string_lossy().as_ref()
    );
    // The guest writes to the overlay …
    qmpkit_machine::block::guest_write(&mut m, "ide0-hd0", 0, &[0x77; 4096]).unwrap();
    events(&mut m);
    // … and an active commit brings it down into the base.
    ok(run(
        &mut m,
        "block-commit",
        json!({"device": "ide0-hd0", "job-id": "c0"}),
    ));
    step(&mut m, 50);
    ok(run(&mut m, "block-job-complete", json!({"device": "c0"})));
    let evs = events(&mut m);
    assert_eq!(
        names(&evs),
        [
            "JOB_STATUS_CHANGE created",
            "JOB_STATUS_CHANGE running",
            "JOB_STATUS_CHANGE ready",
            "BLOCK_JOB_READY",
            "JOB_STATUS_CHANGE waiting",
            "JOB_STATUS_CHANGE pending",
            "BLOCK_JOB_COMPLETED",
            "JOB_STATUS_CHANGE concluded",
            "JOB_STATUS_CHANGE null",
        ]
    );
    assert_eq!(evs[3].1["type"], "commit");
    let blocks = ok(run(&mut m, "query-block", json!({})));
    let ins = inserted(&blocks, "ide0-hd0");
    assert_eq!(ins["file"], base.to_string_lossy().as_ref());
    assert_eq!(ins["backing_file_depth"], 0);
    let img = Image::open(&base, Some(ImageFormat::Qcow2), false).unwrap();
    let mut buf = vec![0; 4096];
    img.read(&mut buf, 0).unwrap();
    assert!(buf.iter().all(|&b| b == 0x77));
}

/// A transaction whose last action fails, as `qemu-system-x86_64` 10.0.2 answers it: the
/// drive and the nodes are as before, the backup job was made and cancelled unstarted
/// (created, aborting, concluded, null), and the image files the actions created stay on the
/// host (QEMU never deletes an image it created).
#[test]
fn a_transaction_whose_last_action_fails_undoes_its_actions() {
    let d = dir("transaction");
    let base = d.join("base.qcow2");
    qcow2(&base, 1 << 20, None);
    let mut m = machine_with_drive(&base, "qcow2");
    let before_nodes = ok(run(&mut m, "query-named-block-nodes", json!({})));
    let before_block = ok(run(&mut m, "query-block", json!({})));
    events(&mut m);
    let snap = d.join("snap.qcow2");
    let backup = d.join("backup.qcow2");
    let r = run(
        &mut m,
        "transaction",
        json!({"actions": [
            {"type": "blockdev-snapshot-sync",
             "data": {"device": "ide0-hd0", "snapshot-file": snap, "snapshot-node-name": "snap"}},
            {"type": "drive-backup",
             "data": {"device": "ide0-hd0", "job-id": "b0", "target": backup, "sync": "full"}},
            {"type": "abort", "data": {}},
        ]}),
    );
    assert_eq!(
        r,
        Err("GenericError: Transaction aborted using Abort action".into())
    );
    assert!(snap.is_file(), "the overlay file went");
    assert!(backup.is_file(), "the backup target went");
    assert_eq!(ok(run(&mut m, "query-block-jobs", json!({}))), json!([]));
    assert_eq!(
        ok(run(&mut m, "query-named-block-nodes", json!({}))),
        before_nodes
    );
    assert_eq!(ok(run(&mut m, "query-block", json!({}))), before_block);
    let evs = events(&mut m);
    assert_eq!(
        names(&evs),
        [
            "JOB_STATUS_CHANGE created",
            "JOB_STATUS_CHANGE aborting",
            "JOB_STATUS_CHANGE concluded",
            "JOB_STATUS_CHANGE null",
        ]
    );
    assert!(evs.iter().all(|(_, data)| data["id"] == "b0"), "{evs:?}");
    // The same actions without the abort all happen (over the files left behind).
    ok(run(
        &mut m,
        "transaction",
        json!({"actions": [
            {"type": "blockdev-snapshot-sync",
             "data": {"device": "ide0-hd0", "snapshot-file": snap, "snapshot-node-name": "snap"}},
            {"type": "drive-backup",
             "data": {"device": "ide0-hd0", "job-id": "b0", "target": backup, "sync": "full"}},
        ]}),
    ));
    step(&mut m, 50);
    let evs = names(&events(&mut m));
    assert!(evs.contains(&"BLOCK_JOB_COMPLETED".to_string()), "{evs:?}");
}

/// A transaction's jobs start when it commits, as `qemu-system-x86_64` 10.0.2 starts two
/// backups: both are created, then each runs and pauses while its filter goes in, newest
/// first, and then each resumes, newest first.
#[test]
fn a_transactions_jobs_start_when_it_commits() {
    let d = dir("transaction-start");
    let (a, b) = (d.join("a.qcow2"), d.join("b.qcow2"));
    qcow2(&a, 1 << 20, None);
    qcow2(&b, 1 << 20, None);
    let mut m = machine_with_drive(&a, "qcow2");
    ok(run(
        &mut m,
        "blockdev-add",
        json!({"driver": "qcow2", "node-name": "b",
               "file": {"driver": "file", "filename": b}}),
    ));
    events(&mut m);
    ok(run(
        &mut m,
        "transaction",
        json!({"actions": [
            {"type": "drive-backup",
             "data": {"device": "ide0-hd0", "job-id": "b0", "speed": 1,
                      "target": d.join("ta.qcow2"), "sync": "full"}},
            {"type": "drive-backup",
             "data": {"device": "b", "job-id": "b1", "speed": 1,
                      "target": d.join("tb.qcow2"), "sync": "full"}},
        ]}),
    ));
    let evs: Vec<String> = events(&mut m)
        .iter()
        .map(|(n, data)| {
            format!(
                "{n} {} {}",
                data["status"].as_str().unwrap_or(""),
                data["id"].as_str().unwrap_or("")
            )
        })
        .collect();
    assert_eq!(
        evs,
        [
            "JOB_STATUS_CHANGE created b0",
            "JOB_STATUS_CHANGE created b1",
            "JOB_STATUS_CHANGE running b1",
            "JOB_STATUS_CHANGE paused b1",
            "JOB_STATUS_CHANGE running b0",
            "JOB_STATUS_CHANGE paused b0",
            "JOB_STATUS_CHANGE running b1",
            "JOB_STATUS_CHANGE running b0",
        ]
    );
}

/// Snapshots in mode `existing`, as `qemu-system-x86_64` 10.0.2 answers them: the image is
/// opened over the drive's node, not created; a missing one cannot be opened; an unused
/// node's overlay goes at once, except in a transaction, which holds it (and its lock) to the
/// end, so that a second snapshot onto the same image cannot take the write lock.
#[test]
fn snapshots_onto_existing_images() {
    let d = dir("existing");
    let base = d.join("base.qcow2");
    let other = d.join("other.qcow2");
    let existing = d.join("existing.qcow2");
    let unused = d.join("unused.qcow2");
    for f in [&base, &other, &existing, &unused] {
        qcow2(f, 1 << 20, None);
    }
    let mut m = machine_with_drive(&base, "qcow2");
    ok(run(
        &mut m,
        "blockdev-add",
        json!({"driver": "qcow2", "node-name": "unused",
               "file": {"driver": "file", "filename": unused}}),
    ));
    let missing = d.join("missing.qcow2");
    assert_eq!(
        run(
            &mut m,
            "blockdev-snapshot-sync",
            json!({"device": "ide0-hd0", "snapshot-file": missing, "mode": "existing"}),
        ),
        Err(format!(
            "GenericError: Could not open '{}': No such file or directory",
            missing.display()
        ))
    );
    assert!(!missing.exists());
    // Alone, an unused node's overlay goes at once, so the image is free again.
    ok(run(
        &mut m,
        "blockdev-snapshot-sync",
        json!({"node-name": "unused", "snapshot-file": existing,
               "snapshot-node-name": "held", "mode": "existing"}),
    ));
    let nodes = ok(run(&mut m, "query-named-block-nodes", json!({})));
    assert!(!nodes.to_string().contains("\"held\""), "{nodes}");
    // In a transaction it is held: the drive's snapshot onto the same image fails, and
    // nothing of the transaction stays.
    let before = ok(run(&mut m, "query-block", json!({})));
    let snap = d.join("snap.qcow2");
    assert_eq!(
        run(
            &mut m,
            "transaction",
            json!({"actions": [
                {"type": "blockdev-snapshot-sync",
                 "data": {"node-name": "unused", "snapshot-file": existing,
                          "snapshot-node-name": "held", "mode": "existing"}},
                {"type": "blockdev-snapshot-sync",
                 "data": {"device": "ide0-hd0", "snapshot-file": snap}},
                {"type": "blockdev-snapshot-sync",
                 "data": {"device": "ide0-hd0", "snapshot-file": existing, "mode": "existing"}},
            ]}),
        ),
        Err("GenericError: Failed to get \"write\" lock".into())
    );
    assert_eq!(ok(run(&mut m, "query-block", json!({}))), before);
    let nodes = ok(run(&mut m, "query-named-block-nodes", json!({})));
    assert!(!nodes.to_string().contains("\"held\""), "{nodes}");
    // The drive's snapshot onto the existing image: opened over the drive's node, not made.
    let size = std::fs::metadata(&existing).unwrap().len();
    ok(run(
        &mut m,
        "blockdev-snapshot-sync",
        json!({"device": "ide0-hd0", "snapshot-file": existing, "mode": "existing"}),
    ));
    let blocks = ok(run(&mut m, "query-block", json!({})));
    let ins = inserted(&blocks, "ide0-hd0");
    // Its header names no backing file: QEMU names the node by its options.
    let file = |p: &Path| format!(r#"{{"driver": "file", "filename": "{}"}}"#, p.display());
    let named = format!(
        r#"json:{{"backing": {{"driver": "qcow2", "file": {}}}, "driver": "qcow2", "file": {}}}"#,
        file(&base),
        file(&existing)
    );
    assert_eq!(ins["file"], named);
    assert_eq!(ins["backing_file_depth"], 1);
    assert_eq!(
        ins["image"]["backing-image"]["filename"],
        base.to_string_lossy().as_ref()
    );
    assert_eq!(std::fs::metadata(&existing).unwrap().len(), size);
}

#[test]
fn a_locked_tray_is_asked_then_forced() {
    let mut m = common::machine();
    let iso = dir("locked-tray").join("x.iso");
    std::fs::write(&iso, vec![0u8; 1 << 16]).unwrap();
    ok(run(
        &mut m,
        "blockdev-change-medium",
        json!({"device": "ide1-cd0", "filename": iso, "format": "raw"}),
    ));
    events(&mut m);
    // The guest locks the tray.
    if let Some(d) = m.block.drives.iter_mut().find(|d| d.id == "ide1-cd0") {
        d.locked = true;
    }
    assert_eq!(
        run(&mut m, "eject", json!({"device": "ide1-cd0"})),
        Err("GenericError: Device 'ide1-cd0' is locked and force was not specified, wait for tray to open and try again".into())
    );
    assert_eq!(events(&mut m), []);
    ok(run(
        &mut m,
        "eject",
        json!({"device": "ide1-cd0", "force": true}),
    ));
    let evs = events(&mut m);
    assert_eq!(names(&evs), ["DEVICE_TRAY_MOVED"]);
    assert_eq!(evs[0].1["tray-open"], true);
    let blocks = ok(run(&mut m, "query-block", json!({})));
    let cd = blocks
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["device"] == "ide1-cd0")
        .unwrap();
    assert_eq!(cd["tray_open"], true);
    assert_eq!(cd["locked"], false);
    assert!(cd.get("inserted").is_none());
}

#[test]
fn an_nbd_client_reads_what_the_guest_wrote() {
    qmpkit_testkit::program_or_skip!("qemu-io");
    let d = dir("nbd");
    let disk = d.join("disk.qcow2");
    qcow2(&disk, 1 << 20, None);
    let mut m = machine_with_drive(&disk, "qcow2");
    qmpkit_machine::block::guest_write(&mut m, "ide0-hd0", 8192, &[0xab; 4096]).unwrap();
    let sock = d.join("nbd.sock");
    ok(run(
        &mut m,
        "nbd-server-start",
        json!({"addr": {"type": "unix", "data": {"path": sock}}}),
    ));
    assert_eq!(
        run(
            &mut m,
            "nbd-server-start",
            json!({"addr": {"type": "unix", "data": {"path": sock}}}),
        ),
        Err("GenericError: NBD server already running".into())
    );
    ok(run(&mut m, "nbd-server-add", json!({"device": "ide0-hd0"})));
    let stats = ok(run(&mut m, "query-blockstats", json!({})));
    assert_eq!(stats[0]["stats"]["wr_bytes"], 4096);
    let url = format!("nbd+unix:///ide0-hd0?socket={}", sock.display());
    let out = std::process::Command::new("qemu-io")
        .args(["-r", "-f", "raw", &url, "-c", "read -P 0xab 8192 4096"])
        .output()
        .expect("qemu-io runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("read 4096/4096 bytes at offset 8192"),
        "{text}"
    );
    assert!(!text.contains("Pattern verification failed"), "{text}");
    // A drive in use by an export keeps its node.
    ok(run(&mut m, "nbd-server-stop", json!({})));
    assert_eq!(
        run(&mut m, "nbd-server-stop", json!({})),
        Err("GenericError: NBD server not running".into())
    );
}

/// A machine with 500 drives over real image files starts (the graph's permission refresh is
/// linear in its nodes) and shows each drive's medium and both of its nodes.
#[test]
fn five_hundred_drives_over_real_files_start() {
    let d = dir("many");
    let mut c = MachineConfig::default_machine();
    for i in 0..500 {
        let f = d.join(format!("d{i}.raw"));
        std::fs::write(&f, vec![0u8; 4096]).expect("image file");
        c.drives.push(DriveConfig {
            id: format!("d{i}"),
            interface: "none".into(),
            file: Some(f.to_string_lossy().into_owned()),
            format: Some("raw".into()),
            ..Default::default()
        });
    }
    let mut m = Machine::new(Arc::new(c), schema());
    let blocks = ok(run(&mut m, "query-block", json!({})));
    let ours: Vec<&Value> = blocks
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["device"].as_str().is_some_and(|n| n.starts_with('d')))
        .collect();
    assert_eq!(ours.len(), 500);
    for (i, b) in ours.iter().enumerate() {
        let file = d.join(format!("d{i}.raw"));
        assert_eq!(b["device"], format!("d{i}"));
        assert_eq!(b["inserted"]["file"], file.to_string_lossy().as_ref());
        assert_eq!(b["inserted"]["image"]["virtual-size"], 4096);
    }
    let nodes = ok(run(
        &mut m,
        "query-named-block-nodes",
        json!({"flat": true}),
    ));
    let n = |drv: &str| {
        nodes
            .as_array()
            .unwrap()
            .iter()
            .filter(|x| x["drv"] == drv)
            .count()
    };
    assert_eq!((n("raw"), n("file")), (500, 500));
}
