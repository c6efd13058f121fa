//! Replies written straight from their types (`Machine::execute_written`) are the bytes the
//! converted value gives (`Machine::execute`, then QEMU's writer), on a machine serving its
//! own interface: every query of the interface that needs no argument, on a machine with
//! drives of every kind, before and after the block graph changes. Another served interface
//! keeps the conversion. (Every reply of the other scenario tests is compared the same way
//! by their common helper.)

use std::path::{Path, PathBuf};
use std::sync::Arc;

use qmpkit_machine::config::DriveConfig;
use qmpkit_machine::{Cx, Machine, MachineConfig, Reply};
use qmpkit_schema::model::EntityKind;
use serde_json::{json, Value};

mod common;

use common::{machine_10, ok, qcow2, run, schema, served_args, WRITTEN};

fn dir(name: &str) -> PathBuf {
    common::scratch_dir("qmpkit-written-replies", name)
}

/// A machine with a real qcow2 chain, null drives with and without options, an empty
/// CD-ROM and the default machine's other drives.
fn machine(d: &Path) -> Machine {
    let base = d.join("base.qcow2");
    let top = d.join("top.qcow2");
    qcow2(&base, 64 << 20, None);
    qcow2(&top, 64 << 20, Some(&base));
    let mut c = MachineConfig::default_machine();
    c.drives[0] = DriveConfig {
        id: "ide0-hd0".into(),
        file: Some(top.to_string_lossy().into_owned()),
        format: Some("qcow2".into()),
        ..Default::default()
    };
    for i in 0..40 {
        let mut dc = DriveConfig {
            id: format!("d{i}"),
            interface: "none".into(),
            driver: Some("null-co".into()),
            ..Default::default()
        };
        if i % 3 == 0 {
            dc.options
                .insert("size".into(), format!("{}", (i + 1) << 20));
        }
        c.drives.push(dc);
    }
    c.drives.push(DriveConfig {
        id: "cd1".into(),
        interface: "none".into(),
        media: "cdrom".into(),
        ..Default::default()
    });
    Machine::new(Arc::new(c), schema())
}

/// The commands of the served interface that take no argument or only optional ones.
fn queries(m: &Machine) -> Vec<String> {
    let s = &m.schema;
    s.iter()
        .filter_map(|(_, e)| match &e.kind {
            EntityKind::Command(c) if e.name.starts_with("query-") => {
                let needs_args = c
                    .arg_type
                    .is_some_and(|t| s.object_members(t).any(|mb| !mb.optional));
                (!needs_args).then(|| e.name.to_string())
            }
            _ => None,
        })
        .collect()
}

/// `cmd` through `execute_written` and through `execute`: the bytes written straight must be
/// those of the converted value. Whether it was written straight.
fn compare(m: &mut Machine, cmd: &str) -> bool {
    let a = served_args(m, cmd, json!({}));
    let mut cx = Cx {
        now_ns: m.now_ns,
        ..Default::default()
    };
    let written = m.execute_written(cmd, &a, &mut cx);
    let value = m.execute(cmd, &a, &mut cx);
    match (written, value) {
        (Some(Ok(Reply::Written(bytes))), Some(Ok(v))) => {
            let mut expected = Vec::new();
            qmpkit_wire::write_qemu_ordered(&v, &mut expected);
            assert_eq!(
                String::from_utf8_lossy(&bytes),
                String::from_utf8_lossy(&expected),
                "{cmd}"
            );
            true
        }
        (Some(Ok(Reply::Value(w))), Some(Ok(v))) => {
            assert_eq!(w, v, "{cmd}");
            false
        }
        (Some(Err(a)), Some(Err(b))) => {
            assert_eq!((a.class, a.desc), (b.class, b.desc), "{cmd}");
            false
        }
        (None, None) => false,
        (w, v) => panic!("{cmd}: written {w:?}, converted {v:?}"),
    }
}

fn compare_all(m: &mut Machine) -> usize {
    let mut n = 0;
    for q in queries(m) {
        if compare(m, &q) {
            n += 1;
        }
    }
    n
}

#[test]
fn every_query_writes_the_bytes_of_the_converted_value() {
    let d = dir("queries");
    let mut m = machine(&d);
    let written = compare_all(&mut m);
    // Most of the interface's queries are implemented and written straight.
    assert!(written >= 40, "only {written} queries written straight");

    // The graph changes: a snapshot's overlay, a node added and plugged, a resize.
    let overlay = d.join("overlay.qcow2");
    ok(run(
        &mut m,
        "blockdev-snapshot-sync",
        json!({"device": "ide0-hd0", "snapshot-file": overlay.to_string_lossy(),
               "format": "qcow2"}),
    ));
    ok(run(
        &mut m,
        "blockdev-add",
        json!({"driver": "null-co", "node-name": "extra", "size": 1048576}),
    ));
    ok(run(
        &mut m,
        "device_add",
        json!({"driver": "virtio-blk-pci", "drive": "extra", "id": "vd9"}),
    ));
    ok(run(
        &mut m,
        "block_resize",
        json!({"device": "ide0-hd0", "size": 134217728}),
    ));
    let blocks = ok(run(&mut m, "query-block", json!({})));
    let top = blocks
        .as_array()
        .and_then(|a| a.iter().find(|b| b["device"] == "ide0-hd0"))
        .map(|b| b["inserted"]["file"].clone());
    assert_eq!(top, Some(Value::from(overlay.to_string_lossy())));
    assert!(compare_all(&mut m) >= written);
    assert!(compare(&mut m, "query-block"));
}

#[test]
fn replies_the_served_interface_makes_its_own_keep_the_conversion() {
    let d = dir("served");
    let mut m = machine(&d);
    // query-events lists the served interface's events; query-machines gains members.
    assert!(!compare(&mut m, "query-events"));
    assert!(!compare(&mut m, "query-machines"));
    // Another interface: every reply is converted.
    let mut m = machine_10();
    assert!(!compare(&mut m, "query-block"));
    assert!(!compare(&mut m, "query-status"));
}

#[test]
fn the_common_helper_compares_what_it_runs() {
    let d = dir("helper");
    let mut m = machine(&d);
    let before = WRITTEN.with(|n| n.get());
    ok(run(&mut m, "query-block", json!({})));
    ok(run(&mut m, "query-status", json!({})));
    // An error is not compared, nor a reply the served interface makes itself.
    assert!(run(
        &mut m,
        "block_resize",
        json!({"device": "nosuch", "size": 1})
    )
    .is_err());
    ok(run(&mut m, "query-events", json!({})));
    assert_eq!(WRITTEN.with(|n| n.get()) - before, 2);
}
