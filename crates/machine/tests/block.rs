//! Block devices and character devices: query-block, query-chardev, the
//! CD-ROM tray (change, eject, blockdev-*-tray).

use std::path::Path;
use std::sync::Arc;

use qmpkit_machine::{Cx, Machine, MachineConfig};
use qmpkit_schema::{Dialect, Schema};
use serde_json::{json, Value};

mod common;

use common::{events, machine, run_cx, schema};

fn schema_13() -> Option<Arc<Schema>> {
    let p = qmpkit_testkit::data::path("seeds/qemu-1.3-dev.json");
    Some(Arc::new(
        qmpkit_schema::load(&p, Dialect::Legacy).expect("1.3 schema loads"),
    ))
}

/// Run `cmd` at time zero; errors as "Class: desc".
fn run(m: &mut Machine, cmd: &str, a: Value) -> Result<Value, String> {
    run_cx(m, cmd, a, &mut Cx::default())
}

fn drive<'a>(list: &'a Value, dev: &str) -> &'a Value {
    list.as_array()
        .and_then(|a| a.iter().find(|b| b["device"] == dev))
        .unwrap_or_else(|| panic!("no {dev} in {list}"))
}

#[test]
fn query_block_lists_the_configured_drives() {
    let mut m = machine();
    let v = run(&mut m, "query-block", json!({})).unwrap();
    let names: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["device"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["ide0-hd0", "virtio0", "ide1-cd0", "floppy0"]);
    let hd = drive(&v, "ide0-hd0");
    assert_eq!(hd["removable"], false);
    assert_eq!(hd["locked"], false);
    assert_eq!(hd["io-status"], "ok");
    assert_eq!(hd["type"], "unknown");
    assert!(hd.get("tray_open").is_none());
    let ins = &hd["inserted"];
    assert_eq!(ins["file"], "disk0.qcow2");
    assert_eq!(ins["drv"], "qcow2");
    assert_eq!(ins["ro"], false);
    assert_eq!(ins["encrypted"], false);
    assert_eq!(ins["bps"], 0);
    assert_eq!(ins["image"]["filename"], "disk0.qcow2");
    assert_eq!(ins["image"]["format"], "qcow2");
    assert_eq!(ins["image"]["virtual-size"], 10u64 << 30);
    assert!(hd["qdev"]
        .as_str()
        .unwrap()
        .starts_with("/machine/unattached/device["));
    let vd = drive(&v, "virtio0");
    assert!(vd["qdev"].as_str().unwrap().ends_with("/virtio-backend"));
    let cd = drive(&v, "ide1-cd0");
    assert_eq!(cd["removable"], true);
    assert_eq!(cd["tray_open"], false);
    assert!(cd.get("inserted").is_none());
    // QEMU's PC has an empty floppy drive by default: removable, no tray, no I/O status.
    let fd = drive(&v, "floppy0");
    let mut keys: Vec<&String> = fd.as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(keys, ["device", "locked", "qdev", "removable", "type"]);
    assert_eq!(fd["removable"], true);
    assert_eq!(fd["locked"], false);
    let qdev = fd["qdev"].as_str().unwrap();
    assert_eq!(
        run(&mut m, "qom-get", json!({"path": qdev, "property": "type"})),
        Ok(json!("floppy"))
    );
    assert_eq!(
        run(&mut m, "qom-get", json!({"path": qdev, "property": "unit"})),
        Ok(json!(0))
    );
}

/// A machine claiming QEMU 10.0.2, serving its interface, started with `opts`.
fn machine_10_with(opts: &[(&str, &str)]) -> Machine {
    let p = qmpkit_testkit::data::path("qemu-ref/schema-10.0.2/qapi/qapi-schema.json");
    let s = qmpkit_schema::load(&p, Dialect::Modern).expect("10.0.2 schema loads");
    let mut c = MachineConfig::default_machine();
    c.qemu_version = (10, 0, 2);
    c.apply_option("nodefaults", None).unwrap();
    for (k, v) in opts {
        c.apply_option(k, Some(v)).unwrap();
    }
    Machine::new(Arc::new(c), Arc::new(s))
}

/// The floppy controllers among the machine's unattached devices, by QOM path.
fn fdcs(m: &mut Machine) -> Vec<String> {
    let children = run(m, "qom-list", json!({"path": "/machine/unattached"})).unwrap();
    children
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["type"] == "child<isa-fdc>")
        .map(|c| format!("/machine/unattached/{}", c["name"].as_str().unwrap()))
        .collect()
}

/// A raw image of 1 MiB for the CD-ROM drive, `name` in the test's scratch directory.
fn cd_image(name: &str) -> String {
    let d = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("qmpkit-cdrom");
    std::fs::create_dir_all(&d).unwrap();
    let p = d.join(name);
    std::fs::write(&p, vec![0u8; 1 << 20]).unwrap();
    p.to_string_lossy().into_owned()
}

/// A raw image of a 1.44 MB floppy disk.
fn floppy_image(name: &str) -> String {
    let d = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("qmpkit-floppy");
    std::fs::create_dir_all(&d).unwrap();
    let p = d.join(name);
    let o = qmpkit_block::CreateOptions::new(qmpkit_block::ImageFormat::Raw, 1_474_560);
    qmpkit_block::image::create(&p, &o).unwrap();
    p.to_string_lossy().into_owned()
}

/// The floppy controller and its drives as `qemu-system-x86_64 -M pc -nodefaults` 10.0.2 has
/// them: the controller always on the ISA bus, with its bus `floppy-bus.0`; a drive device
/// on it per floppy drive; neither plugs nor unplugs at run time.
#[test]
fn the_pcs_floppy_controller_and_its_drives() {
    // Without floppy drives the PC still has its controller (the Q35 has none).
    let mut m = machine_10_with(&[]);
    assert_eq!(run(&mut m, "query-block", json!({})), Ok(json!([])));
    assert_eq!(
        run(&mut m, "qom-list-types", json!({"implements": "isa-fdc"})),
        Ok(json!([{"name": "isa-fdc", "parent": "isa-device"}]))
    );
    let fdc = match fdcs(&mut m).as_slice() {
        [one] => one.clone(),
        other => panic!("floppy controllers: {other:?}"),
    };
    assert_eq!(
        run(
            &mut m,
            "qom-get",
            json!({"path": fdc, "property": "parent_bus"})
        ),
        // Two vCPUs, the first one's kvmvapic and the i440FX come before the PIIX3 (as
        // `-smp 2` numbers them in QEMU).
        Ok(json!("/machine/unattached/device[4]/isa.0"))
    );
    assert_eq!(
        run(
            &mut m,
            "qom-get",
            json!({"path": format!("{fdc}/floppy-bus.0"), "property": "type"})
        ),
        Ok(json!("floppy-bus"))
    );
    assert_eq!(
        fdcs(&mut machine_10_with(&[("machine", "q35")])),
        Vec::<String>::new()
    );

    // -fda: the drive floppy0 behind an anonymous drive device, unit 0.
    let a = floppy_image("a.img");
    let mut m = machine_10_with(&[("fda", &a)]);
    let v = run(&mut m, "query-block", json!({})).unwrap();
    let fd = drive(&v, "floppy0");
    assert_eq!(fd["removable"], true);
    assert!(
        fd.get("io-status").is_none() && fd.get("tray_open").is_none(),
        "{fd}"
    );
    assert_eq!(fd["inserted"]["file"], a.as_str());
    assert_eq!(fd["inserted"]["image"]["virtual-size"], 1_474_560);
    let qdev = fd["qdev"].as_str().unwrap().to_string();
    assert_eq!(
        run(
            &mut m,
            "qom-get",
            json!({"path": qdev, "property": "parent_bus"})
        ),
        Ok(json!(format!("{fdc}/floppy-bus.0")))
    );

    // -device floppy over an if=none drive: its id is the qdev, and it takes the first unit.
    let drive_opt = format!("if=none,id=fd0,file={a},format=raw");
    let mut m = machine_10_with(&[
        ("drive", &drive_opt),
        ("device", "floppy,drive=fd0,id=floppyA"),
    ]);
    let v = run(&mut m, "query-block", json!({})).unwrap();
    let fd = drive(&v, "fd0");
    assert_eq!(
        (&fd["qdev"], &fd["removable"]),
        (&json!("floppyA"), &json!(true))
    );
    assert!(fd.get("io-status").is_none(), "{fd}");
    let get = |m: &mut Machine, prop: &str| {
        run(
            m,
            "qom-get",
            json!({"path": "/machine/peripheral/floppyA", "property": prop}),
        )
    };
    assert_eq!(get(&mut m, "unit"), Ok(json!(0)));
    assert_eq!(get(&mut m, "drive"), Ok(json!("fd0")));
    assert_eq!(
        get(&mut m, "parent_bus"),
        Ok(json!(format!("{fdc}/floppy-bus.0")))
    );
    // No tray: the medium changes without tray events, read-only when asked.
    events(&mut m);
    let b = floppy_image("b.img");
    run(
        &mut m,
        "blockdev-change-medium",
        json!({"id": "floppyA", "filename": b, "format": "raw", "read-only-mode": "read-only"}),
    )
    .unwrap();
    assert_eq!(events(&mut m), Vec::<String>::new());
    let v = run(&mut m, "query-block", json!({})).unwrap();
    assert_eq!(drive(&v, "fd0")["inserted"]["file"], b.as_str());
    assert_eq!(drive(&v, "fd0")["inserted"]["ro"], true);
    assert_eq!(
        run(&mut m, "blockdev-open-tray", json!({"id": "floppyA"})),
        Ok(json!({}))
    );
    assert_eq!(
        run(&mut m, "eject", json!({"id": "floppyA"})),
        Ok(json!({}))
    );
    assert_eq!(
        run(&mut m, "blockdev-remove-medium", json!({"id": "floppyA"})),
        Ok(json!({}))
    );
    assert_eq!(events(&mut m), Vec::<String>::new());
    let v = run(&mut m, "query-block", json!({})).unwrap();
    assert!(drive(&v, "fd0").get("inserted").is_none());
    // Neither the drive nor the controller plugs or unplugs at run time.
    assert_eq!(
        run(&mut m, "device_del", json!({"id": "floppyA"})),
        Err("GenericError: Bus 'floppy-bus.0' does not support hotplugging".into())
    );
    assert_eq!(
        run(
            &mut m,
            "device_add",
            json!({"driver": "floppy", "id": "f2"})
        ),
        Err("GenericError: Bus 'floppy-bus.0' does not support hotplugging".into())
    );
    assert_eq!(
        run(
            &mut m,
            "device_add",
            json!({"driver": "isa-fdc", "id": "f3"})
        ),
        Err("GenericError: Bus 'isa.0' does not support hotplugging".into())
    );
}

#[test]
fn change_inserts_a_medium_through_the_tray() {
    let mut m = machine();
    let x = cd_image("change-x.iso");
    let y = cd_image("change-y.img");
    common::qcow2(Path::new(&y), 1 << 20, None);
    events(&mut m);
    run(&mut m, "change", json!({"device": "ide1-cd0", "target": x})).unwrap();
    let ev = events(&mut m);
    assert_eq!(ev.len(), 2, "{ev:?}");
    assert!(
        ev[0].starts_with("DEVICE_TRAY_MOVED {\"device\":\"ide1-cd0\",\"id\":\"/machine/"),
        "{ev:?}"
    );
    assert!(ev[0].ends_with("\"tray-open\":true}"), "{ev:?}");
    assert!(ev[1].ends_with("\"tray-open\":false}"), "{ev:?}");
    let v = run(&mut m, "query-block", json!({})).unwrap();
    let cd = drive(&v, "ide1-cd0");
    assert_eq!(cd["tray_open"], false);
    assert_eq!(cd["inserted"]["file"], x.as_str());
    assert_eq!(cd["inserted"]["drv"], "raw");
    assert_eq!(cd["inserted"]["ro"], true);
    // The format argument names the driver.
    run(
        &mut m,
        "change",
        json!({"device": "ide1-cd0", "target": y, "arg": "qcow2"}),
    )
    .unwrap();
    let v = run(&mut m, "query-block", json!({})).unwrap();
    assert_eq!(drive(&v, "ide1-cd0")["inserted"]["drv"], "qcow2");
    assert_eq!(
        run(
            &mut m,
            "change",
            json!({"device": "ide1-cd0", "target": y, "arg": "nosuch"}),
        ),
        Err("GenericError: Unknown driver 'nosuch'".into())
    );
    // HMP shows the same.
    let b = run(
        &mut m,
        "human-monitor-command",
        json!({"command-line": "info block ide1-cd0"}),
    )
    .unwrap();
    assert!(b.as_str().unwrap().contains("ide1-cd0 (#block"), "{b}");
    assert!(
        b.as_str()
            .unwrap()
            .contains(&format!("): {y} (qcow2, read-only)")),
        "{b}"
    );
}

/// A new medium that does not open is refused in QEMU's words before the tray moves, and
/// the drive keeps what it had (qemu-system-x86_64 10.0.2's answers to the same changes;
/// `crates/cli/tests/emulate_media.rs` runs them side by side).
#[test]
fn change_to_a_medium_that_does_not_open_changes_nothing() {
    let mut m = machine();
    let x = cd_image("refused-x.iso");
    run(&mut m, "change", json!({"device": "ide1-cd0", "target": x})).unwrap();
    events(&mut m);
    let before = run(&mut m, "query-block", json!({})).unwrap();
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("qmpkit-cdrom");
    let d = dir.display().to_string();
    let text = dir.join("refused.txt");
    std::fs::write(&text, b"hello\n").unwrap();
    let t = text.display().to_string();
    let cases: Vec<(Value, String)> = vec![
        (
            json!({"device": "ide1-cd0", "filename": format!("{d}/nosuch.iso")}),
            format!("Could not open '{d}/nosuch.iso': No such file or directory"),
        ),
        (
            json!({"device": "ide1-cd0", "filename": d}),
            format!("'file' driver requires '{d}' to be a regular file"),
        ),
        (
            json!({"device": "ide1-cd0", "filename": ""}),
            "The 'file' block driver requires a file name".into(),
        ),
        (
            json!({"device": "ide1-cd0", "filename": x, "format": "qcow2"}),
            "Image is not in qcow2 format".into(),
        ),
        (
            json!({"device": "ide1-cd0", "filename": t, "format": "vdi"}),
            "Image not in VDI format (bad signature 00000000)".into(),
        ),
        (
            json!({"device": "ide1-cd0", "filename": t, "format": "vmdk"}),
            "invalid VMDK image descriptor".into(),
        ),
        (
            json!({"device": "ide1-cd0", "filename": t, "format": "qcow"}),
            "Image not in qcow format".into(),
        ),
        (
            json!({"device": "ide1-cd0", "filename": t, "format": "cloop"}),
            "block_size cannot be zero".into(),
        ),
        (
            json!({"device": "ide1-cd0", "filename": t, "format": "nbd"}),
            "File name string for NBD must start with 'nbd:'".into(),
        ),
        (
            json!({"device": "ide1-cd0", "filename": t, "format": "host_device"}),
            format!("'host_device' driver requires '{t}' to be either a character or block device"),
        ),
    ];
    for (args, want) in cases {
        assert_eq!(
            run(&mut m, "blockdev-change-medium", args.clone()),
            Err(format!("GenericError: {want}")),
            "{args}"
        );
        let target = args["filename"].clone();
        let mut legacy = json!({"device": "ide1-cd0", "target": target});
        if let Some(f) = args.get("format") {
            legacy["arg"] = f.clone();
        }
        assert_eq!(
            run(&mut m, "change", legacy),
            Err(format!("GenericError: {want}")),
            "{args}"
        );
        assert_eq!(events(&mut m), Vec::<String>::new(), "{args}");
        assert_eq!(run(&mut m, "query-block", json!({})).unwrap(), before);
    }
}

#[test]
fn change_errors_in_qemus_words() {
    let mut m = machine();
    assert_eq!(
        run(
            &mut m,
            "change",
            json!({"device": "nosuch", "target": "/x"})
        ),
        Err("DeviceNotFound: Device 'nosuch' not found".into())
    );
    // The new image opens first (qemu-system-x86_64 10.0.2's order).
    assert_eq!(
        run(
            &mut m,
            "change",
            json!({"device": "ide0-hd0", "target": "/x"})
        ),
        Err("GenericError: Could not open '/x': No such file or directory".into())
    );
    let x = cd_image("errors-x.iso");
    assert_eq!(
        run(&mut m, "change", json!({"device": "ide0-hd0", "target": x})),
        Err("GenericError: Device 'ide0-hd0' is not removable".into())
    );
    // The VNC form still reaches the display.
    assert_eq!(
        run(
            &mut m,
            "change",
            json!({"device": "vnc", "target": "password", "arg": "secret"})
        ),
        Ok(json!({}))
    );
}

#[test]
fn eject_and_tray_commands() {
    let mut m = machine();
    let x = cd_image("eject-x.iso");
    run(&mut m, "change", json!({"device": "ide1-cd0", "target": x})).unwrap();
    events(&mut m);
    run(&mut m, "eject", json!({"device": "ide1-cd0"})).unwrap();
    let ev = events(&mut m);
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert!(ev[0].ends_with("\"tray-open\":true}"), "{ev:?}");
    let v = run(&mut m, "query-block", json!({})).unwrap();
    let cd = drive(&v, "ide1-cd0");
    assert_eq!(cd["tray_open"], true);
    assert!(cd.get("inserted").is_none());
    // Ejecting again: the tray is open already, nothing moves.
    run(&mut m, "eject", json!({"device": "ide1-cd0"})).unwrap();
    assert!(events(&mut m).is_empty());
    run(&mut m, "blockdev-close-tray", json!({"device": "ide1-cd0"})).unwrap();
    assert_eq!(events(&mut m).len(), 1);
    assert_eq!(
        run(
            &mut m,
            "x-blockdev-remove-medium",
            json!({"device": "ide1-cd0"})
        ),
        Err("GenericError: Tray of device 'ide1-cd0' is not open".into())
    );
    run(&mut m, "blockdev-open-tray", json!({"device": "ide1-cd0"})).unwrap();
    assert_eq!(events(&mut m).len(), 1);
    run(
        &mut m,
        "x-blockdev-remove-medium",
        json!({"device": "ide1-cd0"}),
    )
    .unwrap();
    // A locked tray needs force.
    run(&mut m, "blockdev-close-tray", json!({"device": "ide1-cd0"})).unwrap();
    if let Some(d) = m.block.drives.iter_mut().find(|d| d.id == "ide1-cd0") {
        d.locked = true;
    }
    assert_eq!(
        run(&mut m, "eject", json!({"device": "ide1-cd0"})),
        Err("GenericError: Device 'ide1-cd0' is locked and force was not specified, wait for tray to open and try again".into())
    );
    run(
        &mut m,
        "eject",
        json!({"device": "ide1-cd0", "force": true}),
    )
    .unwrap();
    assert_eq!(
        run(&mut m, "eject", json!({"device": "ide0-hd0"})),
        Err("GenericError: Device 'ide0-hd0' is not removable".into())
    );
    assert_eq!(
        run(&mut m, "eject", json!({"device": "zz"})),
        Err("DeviceNotFound: Device 'zz' not found".into())
    );
    assert_eq!(
        run(&mut m, "eject", json!({})),
        Err("GenericError: Either 'device' or 'id' must be specified".into())
    );
}

#[test]
fn io_error_status_until_cont() {
    let mut m = machine();
    run(
        &mut m,
        "__org.qmpkit_io-error",
        json!({"device": "virtio0", "nospace": true}),
    )
    .unwrap();
    let v = run(&mut m, "query-block", json!({})).unwrap();
    assert_eq!(drive(&v, "virtio0")["io-status"], "nospace");
    let node = drive(&v, "virtio0")["inserted"]["node-name"].clone();
    let ev = events(&mut m);
    assert!(
        ev.iter().any(
            |e| e.starts_with("BLOCK_IO_ERROR") && e.contains(&format!("\"node-name\":{node}"))
        ),
        "{ev:?}"
    );
    run(&mut m, "cont", json!({})).unwrap();
    let v = run(&mut m, "query-block", json!({})).unwrap();
    assert_eq!(drive(&v, "virtio0")["io-status"], "ok");
}

#[test]
fn query_chardev_matches_the_configuration() {
    let mut c = MachineConfig::default_machine();
    c.apply_option("serial", Some("pty")).unwrap();
    c.apply_option(
        "chardev",
        Some("socket,id=ch0,path=/tmp/ch0.sock,server=on,wait=off"),
    )
    .unwrap();
    c.apply_option("qmp", Some("unix:/tmp/q.sock,server,nowait"))
        .unwrap();
    let mut m = Machine::new(Arc::new(c), schema());
    let v = run(&mut m, "query-chardev", json!({})).unwrap();
    let by = |label: &str| -> Value {
        v.as_array()
            .and_then(|a| a.iter().find(|x| x["label"] == label).cloned())
            .unwrap_or_else(|| panic!("no {label} in {v}"))
    };
    assert_eq!(
        by("serial0"),
        json!({"label": "serial0", "filename": "vc", "frontend-open": true})
    );
    assert_eq!(by("serial1")["filename"], "pty:/dev/pts/2");
    assert_eq!(
        by("compat_monitor0"),
        json!({"label": "compat_monitor0", "filename": "unix:/tmp/q.sock,server", "frontend-open": true})
    );
    assert_eq!(
        by("ch0"),
        json!({"label": "ch0", "filename": "unix:/tmp/ch0.sock,server", "frontend-open": false})
    );
    let h = run(
        &mut m,
        "human-monitor-command",
        json!({"command-line": "info chardev"}),
    )
    .unwrap();
    let h = h.as_str().unwrap();
    assert!(h.contains("serial0: filename=vc\r\n"), "{h}");
    assert!(h.contains("serial1: filename=pty:/dev/pts/2\r\n"), "{h}");
    assert!(
        h.contains("ch0: filename=unix:/tmp/ch0.sock,server\r\n"),
        "{h}"
    );
}

#[test]
fn legacy_13_change_and_query_block() {
    let Some(s) = schema_13() else { return };
    let mut c = MachineConfig::default_machine();
    c.qemu_version = (1, 3, 0);
    let mut m = Machine::new(Arc::new(c), s);
    let x = cd_image("legacy-x.iso");
    run(&mut m, "change", json!({"device": "ide1-cd0", "target": x})).unwrap();
    let ev = events(&mut m);
    assert_eq!(
        ev,
        [
            "DEVICE_TRAY_MOVED {\"device\":\"ide1-cd0\",\"tray-open\":true}",
            "DEVICE_TRAY_MOVED {\"device\":\"ide1-cd0\",\"tray-open\":false}"
        ]
    );
    assert_eq!(
        run(
            &mut m,
            "change",
            json!({"device": "ide1-cd0", "target": "/x", "arg": "nosuch"})
        ),
        Err("GenericError: Invalid block format 'nosuch'".into())
    );
    if let Some(d) = m.block.drives.iter_mut().find(|d| d.id == "ide1-cd0") {
        d.locked = true;
    }
    assert_eq!(
        run(&mut m, "eject", json!({"device": "ide1-cd0"})),
        Err("GenericError: Device 'ide1-cd0' is locked".into())
    );
    if let Some(d) = m.block.drives.iter_mut().find(|d| d.id == "ide1-cd0") {
        d.locked = false;
    }
    let v = run(&mut m, "query-block", json!({})).unwrap();
    let cd = drive(&v, "ide1-cd0");
    assert_eq!(cd["inserted"]["file"], x.as_str());
    // 1.3's BlockDeviceInfo has no `image`: cut to the served type.
    assert!(cd["inserted"].get("image").is_none(), "{cd}");
}

#[test]
fn inject_failure_of_an_unknown_command() {
    let mut m = machine();
    assert_eq!(
        run(
            &mut m,
            "__org.qmpkit_inject-failure",
            json!({"command": "nosuch"})
        ),
        Err("CommandNotFound: The command nosuch has not been found".into())
    );
    // A type is no command.
    assert_eq!(
        run(
            &mut m,
            "__org.qmpkit_inject-failure",
            json!({"command": "BlockInfo"})
        ),
        Err("CommandNotFound: The command BlockInfo has not been found".into())
    );
    // Served commands (including the server's own) can be made to fail.
    run(
        &mut m,
        "__org.qmpkit_inject-failure",
        json!({"command": "query-block"}),
    )
    .unwrap();
    assert!(run(&mut m, "query-block", json!({})).is_err());
    run(
        &mut m,
        "__org.qmpkit_inject-failure",
        json!({"command": "query-commands"}),
    )
    .unwrap();
}

#[test]
fn vmgenid_device_is_in_the_qom_tree() {
    let mut m = machine();
    let guid = run(&mut m, "query-vm-generation-id", json!({})).unwrap()["guid"].clone();
    assert_eq!(guid, "324e6eaf-d1d1-4bf6-bf41-b9bb6c91fb87");
    assert_eq!(
        run(
            &mut m,
            "qom-get",
            json!({"path": "/machine/peripheral/vmgenid0", "property": "guid"})
        ),
        Ok(guid)
    );
    assert_eq!(
        run(
            &mut m,
            "qom-get",
            json!({"path": "vmgenid0", "property": "type"})
        ),
        Ok(json!("vmgenid"))
    );
}

#[test]
fn device_add_of_a_block_device_needs_a_drive() {
    let mut m = machine();
    assert_eq!(
        run(
            &mut m,
            "device_add",
            json!({"driver": "virtio-blk-pci", "id": "vb1"})
        ),
        Err("GenericError: drive property not set".into())
    );
    run(
        &mut m,
        "device_add",
        json!({"driver": "virtio-scsi-pci", "id": "scsi0"}),
    )
    .unwrap();
    assert_eq!(
        run(
            &mut m,
            "device_add",
            json!({"driver": "scsi-hd", "id": "sh1"})
        ),
        Err("GenericError: drive property not set".into())
    );
    assert!(run(
        &mut m,
        "qom-get",
        json!({"path": "/machine/peripheral/vb1", "property": "type"})
    )
    .is_err());
}

#[test]
fn hmp_change_and_eject() {
    let mut m = machine();
    let z = cd_image("hmp-z.iso");
    let hmp = |m: &mut Machine, line: &str| -> String {
        run(m, "human-monitor-command", json!({"command-line": line}))
            .unwrap()
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(hmp(&mut m, &format!("change ide1-cd0 {z} raw")), "");
    assert_eq!(events(&mut m).len(), 2);
    let b = hmp(&mut m, "info block ide1-cd0");
    assert!(b.contains(&format!("): {z} (raw, read-only)")), "{b}");
    assert!(
        b.contains("Removable device: not locked, tray closed"),
        "{b}"
    );
    assert_eq!(hmp(&mut m, "eject -f ide1-cd0"), "");
    let b = hmp(&mut m, "info block ide1-cd0");
    assert!(b.starts_with("ide1-cd0: [not inserted]"), "{b}");
    assert!(b.contains("tray open"), "{b}");
    assert_eq!(
        hmp(&mut m, "eject ide0-hd0"),
        "Device 'ide0-hd0' is not removable\r\n"
    );
    assert_eq!(
        hmp(&mut m, "change ide1-cd0"),
        "change: filename expected\r\nTry \"help change\" for more information\r\n"
    );
}

#[test]
fn device_add_checks_its_netdev() {
    let mut m = machine();
    assert_eq!(
        run(
            &mut m,
            "device_add",
            json!({"driver": "e1000", "id": "e1", "netdev": "nosuch"})
        ),
        Err("GenericError: Property 'e1000.netdev' can't find value 'nosuch'".into())
    );
    assert_eq!(
        run(
            &mut m,
            "device_add",
            json!({"driver": "virtio-net-pci", "id": "e1", "netdev": "hostnet0"})
        ),
        Err(
            "GenericError: Property 'virtio-net-device.netdev' can't take value 'hostnet0', it's in use"
                .into()
        )
    );
    assert_eq!(
        run(&mut m, "netdev_add", json!({"type": "nosuch", "id": "n9"})),
        Err("GenericError: Invalid parameter 'nosuch'".into())
    );
    run(
        &mut m,
        "netdev_add",
        json!({"type": "user", "id": "netdev1", "dnssearch": "example.org"}),
    )
    .unwrap();
    assert_eq!(
        run(
            &mut m,
            "netdev_add",
            json!({"type": "user", "id": "netdev1"})
        ),
        Err("GenericError: Duplicate ID 'netdev1' for netdev".into())
    );
    run(
        &mut m,
        "device_add",
        json!({"driver": "e1000", "id": "e1", "netdev": "netdev1"}),
    )
    .unwrap();
    let net = run(
        &mut m,
        "human-monitor-command",
        json!({"command-line": "info network"}),
    )
    .unwrap();
    assert!(
        net.as_str()
            .unwrap()
            .contains(" \\ netdev1: index=0,type=user,"),
        "{net}"
    );
    run(&mut m, "netdev_del", json!({"id": "netdev1"})).unwrap();
    assert_eq!(
        run(&mut m, "netdev_del", json!({"id": "netdev1"})),
        Err("DeviceNotFound: Device 'netdev1' not found".into())
    );
}

#[test]
fn query_chardev_spells_server_as_the_version_does() {
    let mut c = MachineConfig::default_machine();
    c.qemu_version = (10, 0, 2);
    c.apply_option("qmp", Some("unix:/tmp/q.sock,server=on,wait=off"))
        .unwrap();
    let mut m = Machine::new(Arc::new(c), schema());
    let v = run(&mut m, "query-chardev", json!({})).unwrap();
    let monitor = v
        .as_array()
        .and_then(|a| a.iter().find(|x| x["label"] == "compat_monitor0"))
        .unwrap_or_else(|| panic!("no monitor in {v}"));
    assert_eq!(monitor["filename"], "unix:/tmp/q.sock,server=on", "{v}");
}

#[test]
fn insert_medium_by_node_in_qemus_order() {
    let iso = std::env::temp_dir().join(format!("qmpkit-insert-{}.iso", std::process::id()));
    std::fs::File::create(&iso)
        .unwrap()
        .set_len(1 << 20)
        .unwrap();
    let mut m = machine();
    let node = json!({"node-name": "disc", "driver": "raw",
                      "file": {"driver": "file", "filename": iso.to_str().unwrap()}});
    run(&mut m, "blockdev-add", node).unwrap();
    let insert = |m: &mut Machine, id: &str, node: &str| {
        run(
            m,
            "x-blockdev-insert-medium",
            json!({"id": id, "node-name": node}),
        )
    };
    assert_eq!(
        insert(&mut m, "nodev", "disc"),
        Err("DeviceNotFound: Device 'nodev' not found".into())
    );
    // The CD-ROM drive of the default machine: its tray closed, then open.
    let cd = run(&mut m, "query-block", json!({})).unwrap();
    let qdev = drive(&cd, "ide1-cd0")["qdev"].as_str().unwrap().to_string();
    assert_eq!(
        insert(&mut m, &qdev, "disc"),
        Err(format!("GenericError: Tray of device '{qdev}' is not open"))
    );
    run(&mut m, "blockdev-open-tray", json!({"id": qdev})).unwrap();
    assert_eq!(
        insert(&mut m, &qdev, "nonode"),
        Err("GenericError: Node 'nonode' not found".into())
    );
    insert(&mut m, &qdev, "disc").unwrap();
    assert_eq!(
        insert(&mut m, &qdev, "disc"),
        Err(format!(
            "GenericError: There already is a medium in device '{qdev}'"
        ))
    );
    run(&mut m, "blockdev-close-tray", json!({"id": qdev})).unwrap();
    let after = run(&mut m, "query-block", json!({})).unwrap();
    let cd = drive(&after, "ide1-cd0");
    assert_eq!(cd["tray_open"], json!(false));
    assert_eq!(cd["inserted"]["node-name"], json!("disc"));
    assert_eq!(cd["inserted"]["file"], json!(iso.to_str().unwrap()));
    drop(m);
    let _ = std::fs::remove_file(&iso);
}

/// A `-drive` over an image names its format node after `node-name=`, and
/// `query-named-block-nodes` lists the chain as qemu-system-x86_64 10.0.2 does for
/// `-drive file=disks/test.qcow2,if=none,id=drive0,format=qcow2,node-name=my-node` over an
/// overlay whose header names `base.qcow2` relatively: backing format node, its file node,
/// `my-node`, its file node; generated names elsewhere; I/O limits are the drive's, not the
/// node's (zero here).
#[test]
fn drive_node_name_names_the_format_node() {
    use qmpkit_block::{image, CreateOptions, ImageFormat};
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("qmpkit-drive-node-name/disks");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (base, top) = (dir.join("base.qcow2"), dir.join("test.qcow2"));
    image::create(&base, &CreateOptions::new(ImageFormat::Qcow2, 2_048_000)).unwrap();
    let mut o = CreateOptions::new(ImageFormat::Qcow2, 2_048_000);
    o.backing_file = Some("base.qcow2".into());
    o.backing_format = Some(ImageFormat::Qcow2);
    image::create(&top, &o).unwrap();
    let opt = format!(
        "file={},if=none,id=drive0,format=qcow2,node-name=my-node",
        top.display()
    );
    let mut m = machine_10_with(&[("drive", &opt)]);
    run(
        &mut m,
        "block_set_io_throttle",
        json!({"device": "drive0", "bps": 1_000_000, "bps_rd": 0, "bps_wr": 0,
               "iops": 1_000_000, "iops_rd": 0, "iops_wr": 0, "bps_max": 8_000_000}),
    )
    .unwrap();
    let v = run(&mut m, "query-named-block-nodes", json!({})).unwrap();
    let ours: Vec<(String, String, String, u64, u64)> = v
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| {
            n["file"]
                .as_str()
                .is_some_and(|f| f.starts_with(dir.to_str().unwrap()))
        })
        .map(|n| {
            let name = n["node-name"].as_str().unwrap();
            let name = if name.starts_with("#block") {
                "#block"
            } else {
                name
            };
            (
                name.to_string(),
                n["drv"].as_str().unwrap().to_string(),
                n["file"]
                    .as_str()
                    .unwrap()
                    .rsplit('/')
                    .next()
                    .unwrap()
                    .to_string(),
                n["backing_file_depth"].as_u64().unwrap(),
                n["bps"].as_u64().unwrap(),
            )
        })
        .collect();
    let want = [
        ("#block", "qcow2", "base.qcow2", 0, 0),
        ("#block", "file", "base.qcow2", 0, 0),
        ("my-node", "qcow2", "test.qcow2", 1, 0),
        ("#block", "file", "test.qcow2", 0, 0),
    ];
    let want: Vec<_> = want
        .iter()
        .map(|(a, b, c, d, e)| (a.to_string(), b.to_string(), c.to_string(), *d, *e))
        .collect();
    assert_eq!(ours, want, "{v}");
    let q = run(&mut m, "query-block", json!({})).unwrap();
    let ins = &drive(&q, "drive0")["inserted"];
    assert_eq!(
        (&ins["node-name"], &ins["bps"]),
        (&json!("my-node"), &json!(1_000_000))
    );
    let img = &ins["image"];
    assert_eq!(
        (&img["backing-filename"], &img["full-backing-filename"]),
        (&json!("base.qcow2"), &json!(base.to_str().unwrap()))
    );
    drop(m);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `-drive driver=…` opens that driver's node with its own options, as QEMU 10.0.2 shows
/// them in `query-block` (a command line's options are text in a `json:` name), and refuses
/// what QEMU refuses in its words.
#[test]
fn drive_driver_opens_the_node_it_names() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("qmpkit-drive-driver");
    std::fs::create_dir_all(&dir).unwrap();
    let raw = dir.join("r.raw");
    std::fs::write(&raw, vec![0u8; 1 << 20]).unwrap();
    let file_opt = format!("if=none,id=d3,driver=file,filename={}", raw.display());
    let mut m = machine_10_with(&[
        (
            "drive",
            "if=none,id=d0,driver=null-co,size=512,read-zeroes=on",
        ),
        (
            "drive",
            "if=none,id=d1,driver=null-co,node-name=nn,readonly=on",
        ),
        ("drive", "if=none,id=d2,driver=null-aio"),
        ("drive", &file_opt),
    ]);
    let v = run(&mut m, "query-block", json!({})).unwrap();
    let ins = |d: &str| drive(&v, d)["inserted"].clone();
    let d0 = ins("d0");
    let json_name = r#"json:{"read-zeroes": "on", "driver": "null-co", "size": "512"}"#;
    assert_eq!(
        (&d0["drv"], &d0["file"], &d0["ro"]),
        (&json!("null-co"), &json!(json_name), &json!(false))
    );
    assert_eq!(
        (&d0["image"]["virtual-size"], &d0["image"]["format"]),
        (&json!(512), &json!("null-co"))
    );
    assert!(
        d0["node-name"].as_str().unwrap().starts_with("#block"),
        "{d0}"
    );
    let d1 = ins("d1");
    assert_eq!(
        (&d1["node-name"], &d1["file"], &d1["ro"]),
        (&json!("nn"), &json!("null-co://"), &json!(true))
    );
    assert_eq!(d1["image"]["virtual-size"], 1u64 << 30);
    assert_eq!(
        (&ins("d2")["drv"], &ins("d2")["file"]),
        (&json!("null-aio"), &json!("null-aio://"))
    );
    let d3 = ins("d3");
    assert_eq!(
        (&d3["drv"], &d3["file"], &d3["image"]["virtual-size"]),
        (
            &json!("file"),
            &json!(raw.to_str().unwrap()),
            &json!(1 << 20)
        )
    );
    let refused = |opt: &str| {
        let mut c = MachineConfig::default_machine();
        c.apply_option("drive", Some(opt)).unwrap_err().0
    };
    assert_eq!(
        refused("if=none,id=d0,driver=null-co,format=raw"),
        "-drive if=none,id=d0,driver=null-co,format=raw: Cannot specify both 'driver' and 'format'"
    );
    assert_eq!(
        refused("if=none,id=d0,driver=nosuch"),
        "-drive if=none,id=d0,driver=nosuch: Unknown driver 'nosuch'"
    );
    assert_eq!(
        refused("if=none,id=d0,driver=null-co,foo=1"),
        "-drive if=none,id=d0,driver=null-co,foo=1: Block protocol 'null-co' doesn't support the option 'foo'"
    );
}
