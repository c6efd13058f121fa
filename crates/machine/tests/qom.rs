mod common;

use common::*;
use qmpkit_machine::Machine;
use serde_json::{json, Value};

fn names(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|p| {
            format!(
                "{} {}",
                p["name"].as_str().unwrap(),
                p["type"].as_str().unwrap()
            )
        })
        .collect()
}

#[test]
fn qom_list_root_and_errors() {
    let mut m = machine();
    let v = ok(run(&mut m, "qom-list", json!({"path": "/"})));
    let n = names(&v);
    assert_eq!(n[0], "type string");
    assert!(
        n.contains(&"machine child<pc-i440fx-2.12-machine>".to_string()),
        "{n:?}"
    );
    assert!(n.contains(&"objects child<container>".to_string()));
    assert!(n.contains(&"chardevs child<container>".to_string()));
    assert_eq!(
        run(&mut m, "qom-list", json!({"path": "/nonexistent"})).unwrap_err(),
        "DeviceNotFound: Device '/nonexistent' not found"
    );
    // Partial paths: unique ones resolve, shared names are ambiguous.
    let v = ok(run(&mut m, "qom-list", json!({"path": "net0"})));
    assert!(names(&v).contains(&"virtio-backend child<virtio-net-device>".to_string()));
    assert_eq!(
        run(&mut m, "qom-list", json!({"path": "device[0]"})).unwrap_err(),
        "GenericError: Path 'device[0]' is ambiguous"
    );
    // qom-get does not tell ambiguous from missing.
    assert_eq!(
        run(
            &mut m,
            "qom-get",
            json!({"path": "device[0]", "property": "type"})
        )
        .unwrap_err(),
        "DeviceNotFound: Device 'device[0]' not found"
    );
    assert_eq!(
        run(&mut m, "qom-list", json!({"path": ""})).unwrap_err(),
        "GenericError: Path '' is ambiguous"
    );
    assert_eq!(
        ok(run(
            &mut m,
            "qom-get",
            json!({"path": "//machine//peripheral/net0/", "property": "type"})
        )),
        json!("virtio-net-pci")
    );
}

#[test]
fn qom_list_peripherals() {
    let mut m = machine();
    let v = ok(run(
        &mut m,
        "qom-list",
        json!({"path": "/machine/peripheral"}),
    ));
    let n = names(&v);
    for want in [
        "video0 child<VGA>",
        "net0 child<virtio-net-pci>",
        "balloon0 child<virtio-balloon-pci>",
    ] {
        assert!(n.contains(&want.to_string()), "{want} in {n:?}");
    }
    let v = ok(run(
        &mut m,
        "qom-list",
        json!({"path": "/machine/peripheral-anon"}),
    ));
    assert!(names(&v).contains(&"device[0] child<virtio-blk-pci>".to_string()));
    let v = ok(run(
        &mut m,
        "qom-list",
        json!({"path": "/machine/peripheral/net0"}),
    ));
    let n = names(&v);
    for want in [
        "type string",
        "realized bool",
        "parent_bus link<bus>",
        "mac str",
        "netdev str",
        "addr int32",
    ] {
        assert!(n.contains(&want.to_string()), "{want} in {n:?}");
    }
}

#[test]
fn qom_get_values() {
    let mut m = machine();
    let get = |m: &mut Machine, p: &str, prop: &str| {
        run(m, "qom-get", json!({"path": p, "property": prop}))
    };
    assert_eq!(
        ok(get(&mut m, "/machine/peripheral/net0", "mac")),
        json!("52:54:00:12:34:56")
    );
    assert_eq!(
        ok(get(&mut m, "/machine/peripheral/net0", "netdev")),
        json!("hostnet0")
    );
    assert_eq!(
        ok(get(&mut m, "/machine/peripheral/net0", "type")),
        json!("virtio-net-pci")
    );
    assert_eq!(
        ok(get(&mut m, "/machine/peripheral/net0", "realized")),
        json!(true)
    );
    assert_eq!(
        ok(get(&mut m, "/machine/peripheral/net0", "hotpluggable")),
        json!(true)
    );
    assert_eq!(
        ok(get(&mut m, "/machine/peripheral/net0", "parent_bus")),
        json!("/machine/i440fx/pci.0")
    );
    assert_eq!(
        ok(get(&mut m, "/machine/peripheral/net0", "virtio-backend")),
        json!("/machine/peripheral/net0/virtio-backend")
    );
    assert_eq!(
        ok(get(&mut m, "/machine/peripheral/video0", "vgamem_mb")),
        json!(16)
    );
    assert_eq!(ok(get(&mut m, "/objects/mem1", "size")), json!(536870912));
    assert_eq!(
        ok(get(&mut m, "/objects/iothread0", "poll-max-ns")),
        json!(32768)
    );
    // Unset strings read as empty.
    assert_eq!(
        ok(get(&mut m, "/machine/peripheral/net0", "romfile")),
        json!("")
    );
    assert_eq!(
        get(&mut m, "/machine/peripheral/net0", "nope").unwrap_err(),
        "GenericError: Property '.nope' not found"
    );
    assert_eq!(
        get(&mut m, "/nope", "type").unwrap_err(),
        "DeviceNotFound: Device '/nope' not found"
    );
    // A link can be followed in a path.
    assert_eq!(
        ok(get(&mut m, "/machine/peripheral/net0/parent_bus", "type")),
        json!("PCI")
    );
}

#[test]
fn qom_set_rules() {
    let mut m = machine();
    let set = |m: &mut Machine, p: &str, prop: &str, v: Value| {
        run(
            m,
            "qom-set",
            json!({"path": p, "property": prop, "value": v}),
        )
    };
    assert_eq!(
        set(&mut m, "/machine/peripheral/net0", "mac", json!("52:54:00:00:00:01")).unwrap_err(),
        "GenericError: Attempt to set property 'mac' on device 'net0' (type 'virtio-net-pci') after it was realized"
    );
    assert_eq!(
        set(&mut m, "/machine/peripheral-anon/device[0]", "serial", json!("x")).unwrap_err(),
        "GenericError: Attempt to set property 'serial' on anonymous device (type 'virtio-blk-pci') after it was realized"
    );
    assert_eq!(
        set(&mut m, "/machine/peripheral/net0", "type", json!("x")).unwrap_err(),
        "GenericError: Insufficient permission to perform this operation"
    );
    assert_eq!(
        set(&mut m, "/objects/iothread0", "poll-max-ns", json!("x")).unwrap_err(),
        "GenericError: Invalid parameter type for 'poll-max-ns', expected: integer"
    );
    assert_eq!(
        set(&mut m, "/objects/iothread0", "poll-max-ns", json!(-1)).unwrap_err(),
        "GenericError: poll-max-ns value must be in range [0, 9223372036854775807]"
    );
    ok(set(
        &mut m,
        "/objects/iothread0",
        "poll-max-ns",
        json!(1000),
    ));
    assert_eq!(
        ok(run(
            &mut m,
            "qom-get",
            json!({"path": "/objects/iothread0", "property": "poll-max-ns"})
        )),
        json!(1000)
    );
    assert_eq!(
        set(&mut m, "/objects/mem1", "size", json!(1)).unwrap_err(),
        "GenericError: cannot change property value"
    );
    ok(set(&mut m, "/machine", "kernel", json!("/boot/vmlinuz")));
    assert_eq!(
        ok(run(
            &mut m,
            "qom-get",
            json!({"path": "/machine", "property": "kernel"})
        )),
        json!("/boot/vmlinuz")
    );
    assert_eq!(
        set(&mut m, "/machine", "nope", json!(1)).unwrap_err(),
        "GenericError: Property '.nope' not found"
    );
}

#[test]
fn qom_list_types_filters() {
    let mut m = machine();
    let all = ok(run(&mut m, "qom-list-types", json!({})));
    let find = |v: &Value, n: &str| {
        v.as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == n)
            .cloned()
    };
    assert_eq!(
        find(&all, "e1000"),
        Some(json!({"name": "e1000", "parent": "e1000-base"}))
    );
    assert!(
        find(&all, "device").is_none(),
        "abstract types are left out by default"
    );
    let abs = ok(run(&mut m, "qom-list-types", json!({"abstract": true})));
    assert_eq!(
        find(&abs, "device"),
        Some(json!({"name": "device", "abstract": true, "parent": "object"}))
    );
    let pci = ok(run(
        &mut m,
        "qom-list-types",
        json!({"implements": "pci-device"}),
    ));
    assert!(find(&pci, "VGA").is_some() && find(&pci, "virtio-net-pci").is_some());
    assert!(find(&pci, "isa-serial").is_none());
    let uc = ok(run(
        &mut m,
        "qom-list-types",
        json!({"implements": "user-creatable"}),
    ));
    assert!(find(&uc, "rng-random").is_some() && find(&uc, "e1000").is_none());
    let none = ok(run(&mut m, "qom-list-types", json!({"implements": "nope"})));
    assert_eq!(none, json!([]));
}

#[test]
fn device_list_properties() {
    let mut m = machine();
    let v = ok(run(
        &mut m,
        "device-list-properties",
        json!({"typename": "e1000"}),
    ));
    let mac = v
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "mac")
        .cloned();
    assert_eq!(
        mac,
        Some(
            json!({"name": "mac", "type": "str", "description": "Ethernet 6-byte MAC Address, example: 52:54:00:12:34:56"})
        )
    );
    assert!(v
        .as_array()
        .unwrap()
        .iter()
        .all(|p| p["name"] != "type" && p["name"] != "realized"));
    assert_eq!(
        run(
            &mut m,
            "device-list-properties",
            json!({"typename": "nope"})
        )
        .unwrap_err(),
        "DeviceNotFound: Class 'nope' not found"
    );
    assert_eq!(
        run(
            &mut m,
            "device-list-properties",
            json!({"typename": "pci-device"})
        )
        .unwrap_err(),
        "GenericError: Parameter 'typename' expects non-abstract device type"
    );
    assert_eq!(
        run(
            &mut m,
            "device-list-properties",
            json!({"typename": "rng-random"})
        )
        .unwrap_err(),
        "GenericError: Parameter 'typename' expects device"
    );
}

#[test]
fn newer_qemu_words() {
    let mut m = machine_10();
    assert_eq!(
        run(
            &mut m,
            "qom-get",
            json!({"path": "/machine/peripheral/net0", "property": "nope"})
        )
        .unwrap_err(),
        "GenericError: Property 'virtio-net-pci.nope' not found"
    );
    assert_eq!(
        run(&mut m, "device_add", json!({"driver": "e1000", "foo": 1})).unwrap_err(),
        "GenericError: Property 'e1000.foo' not found"
    );
    ok(run(&mut m, "device_del", json!({"id": "net0"})));
    assert_eq!(
        run(&mut m, "device_del", json!({"id": "net0"})).unwrap_err(),
        "GenericError: Device net0 is already in the process of unplug"
    );
    assert_eq!(
        run(
            &mut m,
            "qom-set",
            json!({"path": "/objects/iothread0", "property": "type", "value": "x"})
        )
        .unwrap_err(),
        "GenericError: Property 'iothread.type' is not writable"
    );
    assert_eq!(
        run(
            &mut m,
            "qom-set",
            json!({"path": "/objects", "property": "iothread0", "value": "x"})
        )
        .unwrap_err(),
        "GenericError: Property 'container.iothread0' is not writable"
    );
    assert_eq!(
        run(&mut m, "qom-list-properties", json!({"typename": "nope"})).unwrap_err(),
        "DeviceNotFound: Class 'nope' not found"
    );
}

#[test]
fn chardevs_container() {
    let mut m = machine_with(|c| c.qmp = vec!["unix:/tmp/x.sock,server,nowait".into()]);
    let v = ok(run(&mut m, "qom-list", json!({"path": "/chardevs"})));
    let n = names(&v);
    assert!(
        n.contains(&"serial0 child<chardev-vc>".to_string()),
        "{n:?}"
    );
    assert!(
        n.contains(&"compat_monitor0 child<chardev-socket>".to_string()),
        "{n:?}"
    );
}

#[test]
fn cpu_feature_words() {
    let mut m = machine();
    let fw = ok(run(
        &mut m,
        "qom-get",
        json!({"path": "/machine/unattached/device[0]", "property": "feature-words"}),
    ));
    let words = fw.as_array().unwrap();
    assert_eq!(
        words[0],
        json!({"cpuid-input-eax": 1, "cpuid-register": "EDX", "features": 0x078b_fbfdu32})
    );
    assert!(words.iter().any(|w| w["cpuid-input-ecx"] == 0));
    let ff = ok(run(
        &mut m,
        "qom-get",
        json!({"path": "/machine/unattached/device[0]", "property": "filtered-features"}),
    ));
    assert!(ff.as_array().unwrap().iter().all(|w| w["features"] == 0));
}
