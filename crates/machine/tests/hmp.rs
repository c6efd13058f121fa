mod common;

use common::*;
use serde_json::json;

#[test]
fn info_commands() {
    let mut m = machine_with(|c| {
        c.name = Some("vm1".into());
        c.uuid = Some("550e8400-e29b-41d4-a716-446655440000".into());
    });
    assert_eq!(hmp(&mut m, "info kvm"), "kvm support: enabled\r\n");
    assert_eq!(hmp(&mut m, "info status"), "VM status: running\r\n");
    assert_eq!(hmp(&mut m, "info version"), "2.12.0\r\n");
    assert_eq!(hmp(&mut m, "info name"), "vm1\r\n");
    assert_eq!(
        hmp(&mut m, "info uuid"),
        "550e8400-e29b-41d4-a716-446655440000\r\n"
    );
    assert_eq!(hmp(&mut m, "info balloon"), "balloon: actual=1024\r\n");
    assert_eq!(hmp(&mut m, "info dump"), "Status: none\r\n");
    let cpus = hmp(&mut m, "info cpus");
    let lines: Vec<&str> = cpus.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert_eq!(lines.len(), 2, "{cpus:?}");
    assert!(lines[0].starts_with("* CPU #0: thread_id="), "{cpus:?}");
    assert!(lines[1].starts_with("  CPU #1: thread_id="), "{cpus:?}");
    // Before 2.12, with the program counter and halted state.
    let mut old = machine_with(|c| c.qemu_version = (2, 11, 0));
    let cpus = hmp(&mut old, "info cpus");
    let lines: Vec<&str> = cpus.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert!(
        lines[0].starts_with("* CPU #0: pc=0x") && lines[0].contains(" thread_id="),
        "{cpus:?}"
    );
    assert!(
        lines[1].starts_with("  CPU #1: pc=0x") && lines[1].contains("(halted)"),
        "{cpus:?}"
    );
    let t = hmp(&mut m, "info trace-events qemu_memalign");
    assert_eq!(t, "qemu_memalign : state 0\r\n");
    assert_eq!(hmp(&mut m, "info nope"), "unknown command: 'info nope'\r\n");
}

#[test]
fn info_trees() {
    let mut m = machine();
    let q = hmp(&mut m, "info qtree");
    assert!(
        q.starts_with("bus: main-system-bus\r\n  type System\r\n"),
        "{q}"
    );
    assert!(q.contains("  dev: i440FX-pcihost, id \"\"\r\n"), "{q}");
    assert!(q.contains("    bus: pci.0\r\n      type PCI\r\n"), "{q}");
    assert!(
        q.contains("      dev: virtio-net-pci, id \"net0\"\r\n"),
        "{q}"
    );
    assert!(q.contains("        mac = \"52:54:00:12:34:56\"\r\n"), "{q}");
    assert!(q.contains("        addr = 03.0\r\n"), "{q}");
    assert!(q.contains("        vgamem_mb = 16 (0x10)\r\n"), "{q}");
    assert!(q.contains("dev: ide-cd, id \"\""), "{q}");
    assert!(!q.contains('\n') || q.matches('\n').count() == q.matches("\r\n").count());
    let t = hmp(&mut m, "info qom-tree");
    assert!(
        t.starts_with("/machine (pc-i440fx-2.12-machine)\r\n"),
        "{t}"
    );
    assert!(t.contains("\r\n    /net0 (virtio-net-pci)\r\n"), "{t}");
}

#[test]
fn run_state_commands() {
    let mut m = machine();
    assert_eq!(hmp(&mut m, "stop"), "");
    assert_eq!(events(&mut m), vec!["STOP"]);
    assert_eq!(hmp(&mut m, "info status"), "VM status: paused\r\n");
    assert_eq!(hmp(&mut m, "c"), "");
    assert_eq!(events(&mut m), vec!["RESUME"]);
    assert_eq!(hmp(&mut m, "system_reset"), "");
    step(&mut m, 10);
    let ev = events(&mut m);
    assert!(ev.iter().any(|e| e.starts_with("RESET")), "{ev:?}");
    let mut p = machine_with(|c| c.start_paused = true);
    assert_eq!(
        hmp(&mut p, "info status"),
        "VM status: paused (prelaunch)\r\n"
    );
}

#[test]
fn device_and_balloon_commands() {
    let mut m = machine();
    assert_eq!(
        hmp(&mut m, "device_add e1000,id=nic9,mac=52:54:00:00:00:09"),
        ""
    );
    assert_eq!(
        ok(run(
            &mut m,
            "qom-get",
            json!({"path": "/machine/peripheral/nic9", "property": "mac"})
        )),
        json!("52:54:00:00:00:09")
    );
    assert_eq!(
        hmp(&mut m, "device_add e1000,id=nic9"),
        "Duplicate ID 'nic9' for device\r\n"
    );
    assert_eq!(hmp(&mut m, "device_del nic9"), "");
    step(&mut m, 200);
    let ev = events(&mut m);
    assert_eq!(
        ev,
        vec![r#"DEVICE_DELETED {"device":"nic9","path":"/machine/peripheral/nic9"}"#]
    );
    assert_eq!(
        hmp(&mut m, "device_del nic9"),
        "Device 'nic9' not found\r\n"
    );
    assert_eq!(
        hmp(&mut m, "device_del"),
        "device_del: string expected\r\nTry \"help device_del\" for more information\r\n"
    );
    assert_eq!(hmp(&mut m, "balloon 512"), "");
    step(&mut m, 100);
    assert_eq!(
        events(&mut m),
        vec![r#"BALLOON_CHANGE {"actual":939524096}"#]
    );
    assert_eq!(hmp(&mut m, "object_add iothread,id=io9"), "");
    assert_eq!(hmp(&mut m, "object_del io9"), "");
    assert_eq!(hmp(&mut m, "object_del io9"), "object 'io9' not found\r\n");
    assert_eq!(hmp(&mut m, "cpu-add 3"), "");
    assert_eq!(hmp(&mut m, "sendkey ctrl-alt-f1 50"), "");
    assert_eq!(m.input.pressed, vec!["ctrl"]);
    step(&mut m, 100);
    assert_eq!(m.input.pressed, vec!["ctrl", "alt", "f1"]);
    assert_eq!(hmp(&mut m, "sendkey foo"), "invalid parameter: foo\r\n");
    let f = tmp("hmp.ppm");
    assert_eq!(hmp(&mut m, &format!("screendump {}", f.display())), "");
    assert!(std::fs::read(&f)
        .unwrap()
        .starts_with(b"P6\n720 400\n255\n"));
    assert_eq!(hmp(&mut m, "trace-event qemu_vfree on"), "");
    assert_eq!(
        hmp(&mut m, "info trace-events qemu_vfree"),
        "qemu_vfree : state 1\r\n"
    );
}

#[test]
fn unknown_command() {
    let mut m = machine();
    assert_eq!(hmp(&mut m, "bogus"), "unknown command: 'bogus'\r\n");
    assert_eq!(hmp(&mut m, ""), "");
    assert!(hmp(&mut m, "help device_del").starts_with("device_del device -- remove device\r\n"));
}

#[test]
fn info_block_and_chardev() {
    let mut m = machine();
    let b = hmp(&mut m, "info block");
    assert!(b.starts_with("ide0-hd0 (#block"), "{b}");
    assert!(
        b.contains("): disk0.qcow2 (qcow2)\r\n    Attached to:      /machine/unattached/device["),
        "{b}"
    );
    assert!(
        b.contains("]\r\n    Cache mode:       writeback\r\n"),
        "{b}"
    );
    assert!(
        b.contains(
            "\r\nide1-cd0: [not inserted]\r\n    Attached to:      /machine/unattached/device["
        ),
        "{b}"
    );
    assert!(
        b.contains("]\r\n    Removable device: not locked, tray closed\r\n"),
        "{b}"
    );
    let one = hmp(&mut m, "info block virtio0");
    assert!(
        one.starts_with("virtio0 (#block") && !one.contains("ide0"),
        "{one}"
    );
    let c = hmp(&mut m, "info chardev");
    assert!(c.contains("serial0: filename=vc\r\n"), "{c}");
}

#[test]
fn examine_memory() {
    let mut m = machine();
    // "qmpkit page 0000…" at physical 0.
    assert_eq!(
        hmp(&mut m, "xp /8xb 0"),
        "0000000000000000: 0x71 0x6d 0x70 0x6b 0x69 0x74 0x20 0x70\r\n"
    );
    assert_eq!(
        hmp(&mut m, "xp /2xw 0"),
        "0000000000000000: 0x6b706d71 0x70207469\r\n"
    );
    assert_eq!(
        hmp(&mut m, "x /6c 0xffffffff80000000"),
        "ffffffff80000000: 'q' 'm' 'p' 'k' 'i' 't'\r\n"
    );
    assert_eq!(hmp(&mut m, "xp /2ub 0"), "0000000000000000: 113 109\r\n");
    assert_eq!(
        hmp(&mut m, "x /1xb 0x700000000000"),
        "Cannot access memory\r\n"
    );
    assert_eq!(hmp(&mut m, "xp /4z 0"), "invalid char in format: 'z'\r\n");
}

#[test]
fn info_pci() {
    let mut m = machine();
    let p = hmp(&mut m, "info pci");
    assert!(
        p.starts_with(
            "  Bus  0, device   0, function 0:\r\n    Host bridge: PCI device 8086:1237\r\n"
        ),
        "{p}"
    );
    assert!(p.contains("      id \"net0\"\r\n"), "{p}");
}

#[test]
fn newer_qemu_prefixes_errors() {
    let mut m = machine_with(|c| c.qemu_version = (10, 0, 2));
    assert_eq!(
        hmp(&mut m, "device_del nope"),
        "Error: Device 'nope' not found\r\n"
    );
    assert_eq!(hmp(&mut m, "bogus"), "unknown command: 'bogus'\r\n");
    let mut old = machine();
    assert_eq!(
        hmp(&mut old, "device_del nope"),
        "Device 'nope' not found\r\n"
    );
}

#[test]
fn info_vnc_and_mouse() {
    let mut m = machine();
    assert_eq!(
        hmp(&mut m, "info vnc"),
        "default:\r\n  Server: 0.0.0.0:5900 (ipv4)\r\n    Auth: vnc (Sub: none)\r\n  Display: video0\r\n"
    );
    let mut old = machine_with(|c| c.qemu_version = (2, 1, 0));
    assert_eq!(
        hmp(&mut old, "info vnc"),
        "Server:\r\n     address: 0.0.0.0:5900\r\n        auth: vnc\r\nClient: none\r\n"
    );
    assert_eq!(hmp(&mut m, "mouse_move 10 -4"), "");
    assert_eq!(hmp(&mut m, "mouse_button 5"), "");
    assert_eq!(m.input.rel, (10, -4));
    assert_eq!(m.input.buttons, vec!["left", "middle"]);
}

#[test]
fn info_mice_follows_devices() {
    let mut m = machine();
    assert_eq!(hmp(&mut m, "info mice"), "* Mouse #1: QEMU PS/2 Mouse\r\n");
    ok(run(
        &mut m,
        "device_add",
        json!({"driver": "virtio-tablet-pci"}),
    ));
    assert_eq!(
        hmp(&mut m, "info mice"),
        "* Mouse #2: QEMU Virtio Tablet (absolute)\r\n  Mouse #1: QEMU PS/2 Mouse\r\n"
    );
}

#[test]
fn info_registers() {
    let mut m = machine();
    let r = hmp(&mut m, "info registers");
    assert!(r.starts_with("RAX=0000000000000000 RBX="), "{r}");
    assert!(
        r.contains(
            "\r\nRIP=ffffffff81063f76 RFL=00000246 [---Z-P-] CPL=0 II=0 A20=1 SMM=0 HLT=1\r\n"
        ),
        "{r}"
    );
    assert!(r.ends_with("EFER=0000000000000d01\r\n"), "{r}");
    let all = hmp(&mut m, "info registers -a");
    assert_eq!(all.matches("\r\nCPU#").count(), 2, "{all}");
}

#[test]
fn info_memory() {
    let mut m = machine_with(|c| c.max_memory_bytes = 2 << 30);
    let md = hmp(&mut m, "info memdev");
    assert!(
        md.starts_with("memory backend: mem1\r\n  size:  536870912\r\n  merge: "),
        "{md}"
    );
    ok(run(
        &mut m,
        "device_add",
        json!({"driver": "pc-dimm", "id": "d1", "memdev": "mem1"}),
    ));
    let d = hmp(&mut m, "info memory-devices");
    assert!(
        d.starts_with("Memory device [dimm]: \"d1\"\r\n  addr: 0x100000000\r\n  slot: 0\r\n"),
        "{d}"
    );
    assert!(
        d.contains("  memdev: /objects/mem1\r\n  hotplugged: true\r\n"),
        "{d}"
    );
}

#[test]
fn info_network() {
    let mut m = machine();
    assert_eq!(
        hmp(&mut m, "info network"),
        "net0: index=0,type=nic,model=virtio-net-pci,macaddr=52:54:00:12:34:56\r\n \\ hostnet0: index=0,type=user,net=10.0.2.0,restrict=off\r\n"
    );
}

#[test]
fn cpu_index_picks_the_current_vcpu() {
    let mut m = machine();
    let r0 = hmp(&mut m, "info registers");
    let r1 = ok(run(
        &mut m,
        "human-monitor-command",
        json!({"command-line": "info registers", "cpu-index": 1}),
    ));
    assert_ne!(json!(r0), r1);
    assert!(
        r1.as_str().unwrap().contains("RSP=ffffffff81bffe98"),
        "{r1}"
    );
    assert_eq!(
        run(
            &mut m,
            "human-monitor-command",
            json!({"command-line": "info registers", "cpu-index": 7})
        )
        .unwrap_err(),
        "GenericError: Parameter 'cpu-index' expects a CPU number"
    );
}

#[test]
fn device_add_help() {
    let mut m = machine();
    let all = hmp(&mut m, "device_add help");
    assert!(all.contains("name \"e1000\", bus PCI\r\n"), "{all}");
    assert!(
        all.contains("name \"usb-tablet\", bus usb-bus\r\n"),
        "{all}"
    );
    let e = hmp(&mut m, "device_add e1000,help");
    assert!(
        e.contains("e1000.mac=str (Ethernet 6-byte MAC Address, example: 52:54:00:12:34:56)\r\n"),
        "{e}"
    );
    assert_eq!(
        hmp(&mut m, "device_add nope,help"),
        "'nope' is not a valid device model name\r\n"
    );
}
