mod common;

use common::*;
use qmpkit_machine::Machine;
use serde_json::{json, Value};

fn peripherals(m: &mut Machine) -> Vec<String> {
    ok(run(m, "qom-list", json!({"path": "/machine/peripheral"})))
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn device_add_then_del_after_guest_ack() {
    let mut m = machine();
    ok(run(
        &mut m,
        "device_add",
        json!({"driver": "e1000", "id": "net1", "bus": "pci.0", "mac": "52:54:00:12:34:57"}),
    ));
    assert!(peripherals(&mut m).contains(&"net1".to_string()));
    assert_eq!(
        ok(run(
            &mut m,
            "qom-get",
            json!({"path": "/machine/peripheral/net1", "property": "hotplugged"})
        )),
        json!(true)
    );
    assert_eq!(
        run(
            &mut m,
            "device_add",
            json!({"driver": "e1000", "id": "net1"})
        )
        .unwrap_err(),
        "GenericError: Duplicate ID 'net1' for device"
    );
    ok(run(&mut m, "device_del", json!({"id": "net1"})));
    assert!(
        events(&mut m).is_empty(),
        "the guest has not acknowledged yet"
    );
    // Asking again while pending is accepted.
    ok(run(&mut m, "device_del", json!({"id": "net1"})));
    step(&mut m, 50);
    assert!(events(&mut m).is_empty());
    assert!(peripherals(&mut m).contains(&"net1".to_string()));
    step(&mut m, 60);
    assert_eq!(
        events(&mut m),
        vec![r#"DEVICE_DELETED {"device":"net1","path":"/machine/peripheral/net1"}"#]
    );
    assert!(!peripherals(&mut m).contains(&"net1".to_string()));
    // The id is free again.
    ok(run(
        &mut m,
        "device_add",
        json!({"driver": "e1000", "id": "net1"}),
    ));
}

#[test]
fn virtio_unplug_announces_backend_first() {
    let mut m = machine();
    ok(run(&mut m, "device_del", json!({"id": "net0"})));
    step(&mut m, 200);
    assert_eq!(
        events(&mut m),
        vec![
            r#"DEVICE_DELETED {"path":"/machine/peripheral/net0/virtio-backend"}"#,
            r#"DEVICE_DELETED {"device":"net0","path":"/machine/peripheral/net0"}"#,
        ]
    );
    ok(run(
        &mut m,
        "device_del",
        json!({"id": "/machine/peripheral-anon/device[0]"}),
    ));
    step(&mut m, 200);
    let ev = events(&mut m);
    assert_eq!(ev.len(), 2);
    assert_eq!(
        ev[1],
        r#"DEVICE_DELETED {"path":"/machine/peripheral-anon/device[0]"}"#
    );
}

#[test]
fn paused_guest_acknowledges_after_cont() {
    let mut m = machine();
    ok(run(&mut m, "stop", json!({})));
    events(&mut m);
    ok(run(&mut m, "device_del", json!({"id": "video0"})));
    step(&mut m, 1000);
    assert!(events(&mut m).is_empty());
    ok(run(&mut m, "cont", json!({})));
    step(&mut m, 200);
    let ev = events(&mut m);
    assert!(
        ev.iter()
            .any(|e| e
                == r#"DEVICE_DELETED {"device":"video0","path":"/machine/peripheral/video0"}"#),
        "{ev:?}"
    );
}

#[test]
fn device_add_errors() {
    let mut m = machine();
    for (a, want) in [
        (json!({"driver": "bogus"}), "GenericError: 'bogus' is not a valid device model name"),
        (json!({"driver": "pci-device"}), "GenericError: Parameter 'driver' expects non-abstract device type"),
        (json!({"driver": "i440FX"}), "GenericError: Parameter 'driver' expects pluggable device type"),
        (json!({"driver": "e1000", "bus": "nope"}), "DeviceNotFound: Bus 'nope' not found"),
        (json!({"driver": "e1000", "bus": "ide.0"}), "GenericError: Device 'e1000' can't go on IDE bus"),
        (json!({"driver": "ide-hd", "drive": "ide0-hd0"}), "GenericError: Bus 'ide.0' does not support hotplugging"),
        (json!({"driver": "usb-tablet"}), "GenericError: No 'usb-bus' bus found for device 'usb-tablet'"),
        (json!({"driver": "e1000", "id": "1bad"}), "GenericError: Parameter 'id' expects an identifier"),
        (json!({"driver": "e1000", "foo": "1"}), "GenericError: Property '.foo' not found"),
        (json!({"driver": "e1000", "mac": "xx"}), "GenericError: Property 'e1000.mac' doesn't take value 'xx'"),
        (json!({"driver": "virtio-blk-pci", "drive": "virtio0"}), "GenericError: Property 'virtio-blk-device.drive' can't take value 'virtio0', it's in use"),
        (json!({"driver": "virtio-blk-pci", "drive": "nosuchdrive"}), "GenericError: Property 'virtio-blk-device.drive' can't find value 'nosuchdrive'"),
        (json!({"driver": "e1000", "addr": "3"}), "GenericError: PCI: slot 3 function 0 not available for e1000, in use by virtio-net-pci"),
    ] {
        let got = run(&mut m, "device_add", a.clone()).unwrap_err();
        assert_eq!(got, want, "device_add {a}");
    }
    // Nothing was created by the failures.
    assert_eq!(peripherals(&mut m).len(), 5);
}

#[test]
fn pci_slots_fill_up() {
    let mut m = machine();
    let mut n = 0;
    let err = loop {
        match run(&mut m, "device_add", json!({"driver": "e1000"})) {
            Ok(_) => n += 1,
            Err(e) => break e,
        }
        assert!(n < 40);
    };
    assert_eq!(
        err,
        "GenericError: PCI: no slot/function available for e1000, all in use"
    );
    assert!(n > 20, "{n}");
}

#[test]
fn device_del_errors() {
    let mut m = machine();
    assert_eq!(
        run(&mut m, "device_del", json!({"id": "nope"})).unwrap_err(),
        "DeviceNotFound: Device 'nope' not found"
    );
    assert_eq!(
        run(
            &mut m,
            "device_del",
            json!({"id": "/machine/unattached/device[0]"})
        )
        .unwrap_err(),
        "GenericError: Boot CPU is unpluggable"
    );
    assert_eq!(
        run(&mut m, "device_del", json!({"id": "/objects"})).unwrap_err(),
        "GenericError: /objects is not a hotpluggable device"
    );
    // IDE disks sit on a bus without hotplug.
    let ide = ok(run(
        &mut m,
        "qom-list",
        json!({"path": "/machine/unattached"}),
    ));
    let hd = ide
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["type"] == "child<ide-hd>")
        .unwrap()["name"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        run(
            &mut m,
            "device_del",
            json!({"id": format!("/machine/unattached/{hd}")})
        )
        .unwrap_err(),
        "GenericError: Bus 'ide.0' does not support hotplugging"
    );
}

#[test]
fn cpu_add_shows_in_query_cpus() {
    let mut m = machine();
    ok(run(&mut m, "cpu-add", json!({"id": 2})));
    let cpus = ok(run(&mut m, "query-cpus", json!({})));
    let c2 = cpus
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["CPU"] == 2)
        .cloned()
        .unwrap();
    let path = c2["qom_path"].as_str().unwrap().to_string();
    assert!(path.starts_with("/machine/unattached/device["), "{path}");
    assert_eq!(
        ok(run(
            &mut m,
            "qom-get",
            json!({"path": path, "property": "apic-id"})
        )),
        json!(2)
    );
    assert_eq!(
        run(&mut m, "cpu-add", json!({"id": 2})).unwrap_err(),
        "GenericError: Unable to add CPU: 2, it already exists"
    );
    assert_eq!(
        run(&mut m, "cpu-add", json!({"id": 9})).unwrap_err(),
        "GenericError: Unable to add CPU: 9, max allowed: 3"
    );
    assert_eq!(
        run(&mut m, "cpu-add", json!({"id": -1})).unwrap_err(),
        "GenericError: Invalid CPU id: -1"
    );
}

#[test]
fn object_add_and_del() {
    let mut m = machine();
    ok(run(
        &mut m,
        "object-add",
        json!({"qom-type": "rng-random", "id": "rng1", "props": {"filename": "/dev/hwrng"}}),
    ));
    assert_eq!(
        ok(run(
            &mut m,
            "qom-get",
            json!({"path": "/objects/rng1", "property": "filename"})
        )),
        json!("/dev/hwrng")
    );
    assert_eq!(
        run(
            &mut m,
            "object-add",
            json!({"qom-type": "rng-random", "id": "rng1"})
        )
        .unwrap_err(),
        "GenericError: attempt to add duplicate property 'rng1' to object (type 'container')"
    );
    ok(run(&mut m, "object-del", json!({"id": "rng1"})));
    assert_eq!(
        run(&mut m, "object-del", json!({"id": "rng1"})).unwrap_err(),
        "GenericError: object 'rng1' not found"
    );
    // Newer interfaces pass properties flat.
    let mut m10 = machine_10();
    ok(run(
        &mut m10,
        "object-add",
        json!({"qom-type": "memory-backend-ram", "id": "mem2", "size": 1073741824}),
    ));
    assert_eq!(
        ok(run(
            &mut m10,
            "qom-get",
            json!({"path": "/objects/mem2", "property": "size"})
        )),
        json!(1073741824)
    );
    let e = |m: &mut Machine, a: Value| run(m, "object-add", a).unwrap_err();
    assert_eq!(
        e(&mut m, json!({"qom-type": "nope", "id": "x"})),
        "GenericError: invalid object type: nope"
    );
    assert_eq!(
        e(&mut m, json!({"qom-type": "e1000", "id": "x"})),
        "GenericError: object type 'e1000' isn't supported by object-add"
    );
    assert_eq!(
        e(&mut m, json!({"qom-type": "memory-backend", "id": "x"})),
        "GenericError: object type 'memory-backend' is abstract"
    );
    assert_eq!(
        e(&mut m, json!({"qom-type": "secret", "id": "s1"})),
        "GenericError: Either 'file' or 'data' must be provided"
    );
    ok(run(
        &mut m10,
        "object-add",
        json!({"qom-type": "secret", "id": "s1", "data": "x"}),
    ));
    assert_eq!(
        e(
            &mut m10,
            json!({"qom-type": "iothread", "id": "x", "poll-grow": -2})
        ),
        "GenericError: poll-grow value must be in range [0, 9223372036854775807]"
    );
    assert_eq!(
        e(&mut m, json!({"qom-type": "iothread", "id": ""})),
        "GenericError: Parameter 'id' expects an identifier"
    );
    assert_eq!(
        e(&mut m, json!({"qom-type": "memory-backend-ram", "id": "x"})),
        "GenericError: can't create backend with size 0"
    );
    assert_eq!(
        e(
            &mut m,
            json!({"qom-type": "iothread", "id": "x", "props": {"bogus": 1}})
        ),
        "GenericError: Property '.bogus' not found"
    );
    assert_eq!(
        e(
            &mut m,
            json!({"qom-type": "iothread", "id": "x", "props": {"poll-max-ns": "1"}})
        ),
        "GenericError: Invalid parameter type for 'poll-max-ns', expected: integer"
    );
}

#[test]
fn memory_hotplug() {
    let mut m = machine_with(|c| c.max_memory_bytes = (2 << 30) + (768 << 20));
    ok(run(
        &mut m,
        "object-add",
        json!({"qom-type": "memory-backend-ram", "id": "m1", "props": {"size": 1073741824}}),
    ));
    ok(run(
        &mut m,
        "object-add",
        json!({"qom-type": "memory-backend-ram", "id": "m2", "props": {"size": 1073741824}}),
    ));
    ok(run(
        &mut m,
        "device_add",
        json!({"driver": "pc-dimm", "id": "dimm1", "memdev": "m1"}),
    ));
    let get = |m: &mut Machine, p: &str| {
        ok(run(
            m,
            "qom-get",
            json!({"path": "/machine/peripheral/dimm1", "property": p}),
        ))
    };
    assert_eq!(get(&mut m, "addr"), json!(0x1_0000_0000u64));
    assert_eq!(get(&mut m, "size"), json!(1u64 << 30));
    assert_eq!(get(&mut m, "slot"), json!(0));
    assert_eq!(get(&mut m, "memdev"), json!("/objects/m1"));
    assert_eq!(
        qmpkit_qapi::encode(&qmpkit_machine::devices::memory_devices(&m)).unwrap(),
        json!([{"type": "dimm", "data": {
            "id": "dimm1", "addr": 0x1_0000_0000u64, "size": 1u64 << 30, "slot": 0, "node": 0,
            "memdev": "/objects/m1", "hotplugged": true, "hotpluggable": true}}])
    );
    assert_eq!(
        run(
            &mut m,
            "device_add",
            json!({"driver": "pc-dimm", "id": "dimm2", "memdev": "m1"})
        )
        .unwrap_err(),
        "GenericError: can't use already busy memdev: m1"
    );
    assert_eq!(
        run(
            &mut m,
            "device_add",
            json!({"driver": "pc-dimm", "id": "dimm2", "memdev": "nope"})
        )
        .unwrap_err(),
        "DeviceNotFound: Device 'nope' not found"
    );
    assert_eq!(
        run(
            &mut m,
            "device_add",
            json!({"driver": "pc-dimm", "id": "dimm2"})
        )
        .unwrap_err(),
        "GenericError: 'memdev' property is not set"
    );
    assert_eq!(
        run(&mut m, "device_add", json!({"driver": "pc-dimm", "id": "dimm2", "memdev": "m2"})).unwrap_err(),
        "GenericError: not enough space, currently 0x40000000 in use of total hot pluggable 0x70000000"
    );
    ok(run(
        &mut m,
        "device_add",
        json!({"driver": "pc-dimm", "id": "dimm2", "memdev": "mem1"}),
    ));
    assert_eq!(
        ok(run(
            &mut m,
            "qom-get",
            json!({"path": "/machine/peripheral/dimm2", "property": "addr"})
        )),
        json!(0x1_4000_0000u64)
    );
    assert_eq!(
        run(&mut m, "object-del", json!({"id": "m1"})).unwrap_err(),
        "GenericError: object 'm1' is in use, can not be deleted"
    );
    // The guest reports both insertions.
    step(&mut m, 200);
    assert_eq!(
        events(&mut m),
        vec![
            r#"ACPI_DEVICE_OST {"info":{"device":"dimm1","slot":"0","slot-type":"DIMM","source":1,"status":0}}"#,
            r#"ACPI_DEVICE_OST {"info":{"device":"dimm2","slot":"1","slot-type":"DIMM","source":1,"status":0}}"#,
        ]
    );
    ok(run(&mut m, "device_del", json!({"id": "dimm1"})));
    step(&mut m, 200);
    assert_eq!(
        events(&mut m),
        vec![r#"DEVICE_DELETED {"device":"dimm1","path":"/machine/peripheral/dimm1"}"#]
    );
    ok(run(&mut m, "object-del", json!({"id": "m1"})));
    // Without maxmem there is no hotplug area.
    let mut d = machine();
    assert_eq!(
        run(
            &mut d,
            "device_add",
            json!({"driver": "pc-dimm", "id": "x", "memdev": "mem1"})
        )
        .unwrap_err(),
        "GenericError: memory hotplug is not enabled, please add maxmem option"
    );
}

#[test]
fn controllers_bring_their_buses() {
    let mut m = machine_with(|c| {
        c.chardevs = vec!["socket,id=charchannel0,path=/tmp/qga.sock,server,nowait".into()]
    });
    assert_eq!(
        run(
            &mut m,
            "device_add",
            json!({"driver": "usb-tablet", "id": "input0"})
        )
        .unwrap_err(),
        "GenericError: No 'usb-bus' bus found for device 'usb-tablet'"
    );
    ok(run(
        &mut m,
        "device_add",
        json!({"driver": "piix3-usb-uhci", "id": "usb"}),
    ));
    ok(run(
        &mut m,
        "device_add",
        json!({"driver": "usb-tablet", "id": "input0", "bus": "usb.0", "port": "1"}),
    ));
    assert_eq!(
        ok(run(
            &mut m,
            "qom-get",
            json!({"path": "/machine/peripheral/input0", "property": "parent_bus"})
        )),
        json!("/machine/peripheral/usb/usb.0")
    );
    let mice = qmpkit_machine::input::query_mice(&mut m);
    assert_eq!(mice[0].name, "QEMU HID Tablet");
    // Anonymous controllers get numbered buses.
    ok(run(&mut m, "device_add", json!({"driver": "nec-usb-xhci"})));
    ok(run(
        &mut m,
        "device_add",
        json!({"driver": "usb-kbd", "bus": "usb-bus.0"}),
    ));
    // A guest agent channel.
    ok(run(
        &mut m,
        "device_add",
        json!({"driver": "virtio-serial-pci", "id": "vs0"}),
    ));
    ok(run(
        &mut m,
        "device_add",
        json!({"driver": "virtserialport", "id": "channel0", "bus": "vs0.0",
               "chardev": "charchannel0", "name": "org.qemu.guest_agent.0"}),
    ));
    assert_eq!(
        run(
            &mut m,
            "device_add",
            json!({"driver": "virtserialport", "chardev": "charchannel0", "name": "org.qemu.guest_agent.0"})
        )
        .unwrap_err(),
        "GenericError: virtio-serial-bus: A port already exists by name org.qemu.guest_agent.0"
    );
    ok(run(
        &mut m,
        "device_add",
        json!({"driver": "virtserialport", "chardev": "added-later"}),
    ));
    events(&mut m);
    // Unplugging a controller takes its devices along, announced first.
    ok(run(&mut m, "device_del", json!({"id": "usb"})));
    step(&mut m, 200);
    assert_eq!(
        events(&mut m),
        vec![
            r#"DEVICE_DELETED {"device":"input0","path":"/machine/peripheral/input0"}"#,
            r#"DEVICE_DELETED {"device":"usb","path":"/machine/peripheral/usb"}"#,
        ]
    );
    assert_eq!(
        run(
            &mut m,
            "qom-get",
            json!({"path": "/machine/peripheral/input0", "property": "type"})
        )
        .unwrap_err(),
        "DeviceNotFound: Device '/machine/peripheral/input0' not found"
    );
    // Devices off the PCI bus leave at once, without the guest.
    ok(run(&mut m, "device_del", json!({"id": "channel0"})));
    assert_eq!(
        events(&mut m),
        vec![r#"DEVICE_DELETED {"device":"channel0","path":"/machine/peripheral/channel0"}"#]
    );
}

#[test]
fn vcpu_hotplug_with_device_add() {
    let mut m = machine();
    let add = |m: &mut Machine, a: Value| run(m, "device_add", a);
    assert_eq!(
        add(&mut m, json!({"driver": "Haswell-x86_64-cpu", "id": "c2", "socket-id": 2, "core-id": 0, "thread-id": 0}))
            .unwrap_err(),
        "GenericError: Invalid CPU type, expected cpu type: 'qemu64-x86_64-cpu'"
    );
    assert_eq!(
        add(
            &mut m,
            json!({"driver": "qemu64-x86_64-cpu", "id": "c2", "core-id": 0, "thread-id": 0})
        )
        .unwrap_err(),
        "GenericError: CPU socket-id is not set"
    );
    assert_eq!(
        add(&mut m, json!({"driver": "qemu64-x86_64-cpu", "id": "c2", "socket-id": 9, "core-id": 0, "thread-id": 0}))
            .unwrap_err(),
        "GenericError: Invalid CPU socket-id: 9 must be in range 0:3"
    );
    assert_eq!(
        add(&mut m, json!({"driver": "qemu64-x86_64-cpu", "id": "c1", "socket-id": 1, "core-id": 0, "thread-id": 0}))
            .unwrap_err(),
        "GenericError: CPU[1] with APIC ID 1 exists"
    );
    ok(add(
        &mut m,
        json!({"driver": "qemu64-x86_64-cpu", "id": "c2", "socket-id": 2, "core-id": 0, "thread-id": 0}),
    ));
    let cpus = ok(run(&mut m, "query-cpus", json!({})));
    let c2 = cpus
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["CPU"] == 2)
        .cloned()
        .unwrap();
    assert_eq!(c2["qom_path"], "/machine/peripheral/c2");
    step(&mut m, 200);
    assert_eq!(
        events(&mut m),
        vec![
            r#"ACPI_DEVICE_OST {"info":{"device":"c2","slot":"2","slot-type":"CPU","source":1,"status":0}}"#
        ]
    );
    ok(run(&mut m, "device_del", json!({"id": "c2"})));
    step(&mut m, 200);
    assert_eq!(
        events(&mut m),
        vec![r#"DEVICE_DELETED {"device":"c2","path":"/machine/peripheral/c2"}"#]
    );
    let cpus = ok(run(&mut m, "query-cpus", json!({})));
    assert_eq!(cpus.as_array().unwrap().len(), 2);
    // The slot is free again.
    ok(run(&mut m, "cpu-add", json!({"id": 2})));
}

#[test]
fn guest_without_acpi_never_ejects() {
    let mut m = machine();
    ok(run(
        &mut m,
        "__org.qmpkit_set-guest",
        json!({"acpi": false}),
    ));
    ok(run(&mut m, "device_del", json!({"id": "video0"})));
    step(&mut m, 2000);
    assert!(events(&mut m).is_empty());
    assert!(peripherals(&mut m).contains(&"video0".to_string()));
    ok(run(&mut m, "__org.qmpkit_set-guest", json!({"acpi": true})));
    step(&mut m, 200);
    assert_eq!(
        events(&mut m),
        vec![r#"DEVICE_DELETED {"device":"video0","path":"/machine/peripheral/video0"}"#]
    );
}
