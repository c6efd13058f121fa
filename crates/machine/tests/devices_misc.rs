use std::sync::Arc;

use qmpkit_machine::{Args, Cx, Machine, MachineConfig};
use serde_json::{json, Value};

fn schema() -> Arc<qmpkit_schema::Schema> {
    Arc::new(qmpkit_machine::embedded::load_schema().expect("embedded schema loads"))
}

#[allow(dead_code)]
fn machine_with(f: impl FnOnce(&mut MachineConfig)) -> Machine {
    let mut c = MachineConfig::default_machine();
    f(&mut c);
    Machine::new(Arc::new(c), schema())
}

#[allow(dead_code)]
fn machine() -> Machine {
    machine_with(|_| {})
}

fn args(v: Value) -> Args {
    match v {
        Value::Object(m) => m,
        _ => Args::new(),
    }
}

/// Run `cmd` now; errors as "Class: desc".
#[allow(dead_code)]
fn run(m: &mut Machine, cmd: &str, a: Value) -> Result<Value, String> {
    let mut cx = Cx {
        now_ns: m.now_ns,
        ..Default::default()
    };
    run_cx(m, cmd, a, &mut cx)
}

#[allow(dead_code)]
fn run_cx(m: &mut Machine, cmd: &str, a: Value, cx: &mut Cx) -> Result<Value, String> {
    m.execute(cmd, &args(a), cx)
        .unwrap_or_else(|| Err(qmpkit_wire::QmpError::generic("unhandled")))
        .map_err(|e| format!("{}: {}", e.class, e.desc))
}

/// Step the clock by `ms`, running due timers.
#[allow(dead_code)]
fn step(m: &mut Machine, ms: u64) {
    let t = m.now_ns + ms * 1_000_000;
    m.advance(t);
    m.now_ns = m.now_ns.max(t);
}

/// Drain events as `NAME data`.
#[allow(dead_code)]
fn events(m: &mut Machine) -> Vec<String> {
    m.take_events()
        .into_iter()
        .map(|(n, d)| match d {
            Some(d) => format!("{n} {d}"),
            None => n,
        })
        .collect()
}

#[allow(dead_code)]
fn ok(r: Result<Value, String>) -> Value {
    match r {
        Ok(v) => v,
        Err(e) => panic!("unexpected error: {e}"),
    }
}

#[allow(dead_code)]
fn tmp(name: &str) -> std::path::PathBuf {
    let d = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("qmpkit-machine-devices");
    let _ = std::fs::create_dir_all(&d);
    d.join(name)
}

#[allow(dead_code)]
fn _unused() -> Value {
    json!(null)
}

use std::os::fd::OwnedFd;

fn devnull() -> OwnedFd {
    OwnedFd::from(std::fs::File::open("/dev/null").unwrap())
}

#[test]
fn trace_events_get_and_set() {
    let mut m = machine();
    assert_eq!(
        ok(run(
            &mut m,
            "trace-event-get-state",
            json!({"name": "qemu_memalign"})
        )),
        json!([{"name": "qemu_memalign", "state": "disabled", "vcpu": false}])
    );
    ok(run(
        &mut m,
        "trace-event-set-state",
        json!({"name": "qemu_memalign", "enable": true}),
    ));
    assert_eq!(
        ok(run(
            &mut m,
            "trace-event-get-state",
            json!({"name": "qemu_memalign"})
        ))[0]["state"],
        "enabled"
    );
    // Patterns.
    let v = ok(run(
        &mut m,
        "trace-event-get-state",
        json!({"name": "qemu_*"}),
    ));
    let names: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"qemu_vfree") && names.iter().all(|n| n.starts_with("qemu_")));
    assert_eq!(
        ok(run(&mut m, "trace-event-get-state", json!({"name": "zz*"}))),
        json!([])
    );
    // Unavailable events.
    assert_eq!(
        ok(run(
            &mut m,
            "trace-event-get-state",
            json!({"name": "exec_tb"})
        ))[0]["state"],
        "unavailable"
    );
    assert_eq!(
        run(
            &mut m,
            "trace-event-set-state",
            json!({"name": "exec_*", "enable": true})
        )
        .unwrap_err(),
        "GenericError: event \"exec_tb\" is disabled"
    );
    ok(run(
        &mut m,
        "trace-event-set-state",
        json!({"name": "exec_*", "enable": true, "ignore-unavailable": true}),
    ));
    assert_eq!(
        run(&mut m, "trace-event-get-state", json!({"name": "nope"})).unwrap_err(),
        "GenericError: unknown event \"nope\""
    );
    // Per-vCPU events.
    ok(run(
        &mut m,
        "trace-event-set-state",
        json!({"name": "guest_cpu_enter", "enable": true, "vcpu": 1}),
    ));
    assert_eq!(
        ok(run(
            &mut m,
            "trace-event-get-state",
            json!({"name": "guest_cpu_enter", "vcpu": 0})
        )),
        json!([{"name": "guest_cpu_enter", "state": "disabled", "vcpu": true}])
    );
    assert_eq!(
        ok(run(
            &mut m,
            "trace-event-get-state",
            json!({"name": "guest_cpu_enter"})
        ))[0]["state"],
        "enabled"
    );
    assert_eq!(
        run(
            &mut m,
            "trace-event-get-state",
            json!({"name": "qemu_vfree", "vcpu": 0})
        )
        .unwrap_err(),
        "GenericError: event \"qemu_vfree\" is not vCPU-specific"
    );
    assert_eq!(
        run(
            &mut m,
            "trace-event-get-state",
            json!({"name": "guest_cpu_enter", "vcpu": 5})
        )
        .unwrap_err(),
        "GenericError: invalid vCPU index 5"
    );
    ok(run(&mut m, "rtc-reset-reinjection", json!({})));
}

#[test]
fn getfd_and_closefd() {
    let mut m = machine();
    assert_eq!(
        run(&mut m, "getfd", json!({"fdname": "fd1"})).unwrap_err(),
        "GenericError: No file descriptor supplied via SCM_RIGHTS"
    );
    let mut cx = Cx {
        fds: vec![devnull()],
        ..Default::default()
    };
    assert_eq!(
        run_cx(&mut m, "getfd", json!({"fdname": "1x"}), &mut cx).unwrap_err(),
        "GenericError: Parameter 'fdname' expects a name not starting with a digit"
    );
    ok(run_cx(&mut m, "getfd", json!({"fdname": "fd1"}), &mut cx));
    assert!(cx.fds.is_empty(), "the fd was taken");
    ok(run(&mut m, "closefd", json!({"fdname": "fd1"})));
    assert_eq!(
        run(&mut m, "closefd", json!({"fdname": "fd1"})).unwrap_err(),
        "GenericError: File descriptor named 'fd1' not found"
    );
    // With a session, names live in the session's table.
    let table = std::sync::Arc::new(std::sync::Mutex::new(std::collections::HashMap::new()));
    let mut cx = Cx {
        fds: vec![devnull()],
        session_fds: Some(table.clone()),
        ..Default::default()
    };
    ok(run_cx(&mut m, "getfd", json!({"fdname": "s1"}), &mut cx));
    assert!(table.lock().unwrap().contains_key("s1"));
}

#[test]
fn fdsets() {
    let mut m = machine();
    let add = |m: &mut Machine, a: Value| {
        let mut cx = Cx {
            fds: vec![devnull()],
            ..Default::default()
        };
        run_cx(m, "add-fd", a, &mut cx)
    };
    let r = ok(add(
        &mut m,
        json!({"fdset-id": 1, "opaque": "rdonly:/path/to/file"}),
    ));
    assert_eq!(r["fdset-id"], 1);
    let fd1 = r["fd"].as_i64().unwrap();
    let r = ok(add(&mut m, json!({})));
    assert_eq!(r["fdset-id"], 0, "the lowest free id");
    let fd0 = r["fd"].as_i64().unwrap();
    let r = ok(add(&mut m, json!({"fdset-id": 1})));
    let fd1b = r["fd"].as_i64().unwrap();
    assert_eq!(
        ok(run(&mut m, "query-fdsets", json!({}))),
        json!([
            {"fdset-id": 0, "fds": [{"fd": fd0}]},
            {"fdset-id": 1, "fds": [{"fd": fd1b}, {"fd": fd1, "opaque": "rdonly:/path/to/file"}]},
        ])
    );
    ok(run(&mut m, "remove-fd", json!({"fdset-id": 1, "fd": fd1})));
    assert_eq!(
        run(&mut m, "remove-fd", json!({"fdset-id": 1, "fd": fd1})).unwrap_err(),
        format!("GenericError: File descriptor named 'fdset-id:1, fd:{fd1}' not found")
    );
    ok(run(&mut m, "remove-fd", json!({"fdset-id": 0})));
    assert_eq!(
        run(&mut m, "remove-fd", json!({"fdset-id": 0})).unwrap_err(),
        "GenericError: File descriptor named 'fdset-id:0' not found"
    );
    assert_eq!(
        ok(run(&mut m, "query-fdsets", json!({})))
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        run(&mut m, "add-fd", json!({})).unwrap_err(),
        "GenericError: No file descriptor supplied via SCM_RIGHTS"
    );
    assert_eq!(
        add(&mut m, json!({"fdset-id": -1})).unwrap_err(),
        "GenericError: Parameter 'fdset-id' expects a non-negative value"
    );
}

/// Every device-level command, with missing, odd or hostile arguments:
/// an answer (value or error), never a panic.
#[test]
fn odd_arguments_never_panic() {
    use qmpkit_machine::{balloon, devices, display, dump, hmp, input, memory, misc, qom};
    let cmds: Vec<&str> = [
        qom::HANDLED,
        devices::HANDLED,
        memory::HANDLED,
        dump::HANDLED,
        display::HANDLED,
        input::HANDLED,
        balloon::HANDLED,
        misc::HANDLED,
        hmp::HANDLED,
    ]
    .concat();
    let odd = [
        json!({}),
        json!({"path": "", "property": "", "id": "", "name": "", "driver": "", "typename": ""}),
        json!({"path": "////", "id": "/", "val": -1, "size": -1, "filename": "/dev/null"}),
        json!({"path": "device[", "value": {"a": [1, 2]}, "keys": [{"type": "number", "data": -5}]}),
        json!({"id": -1, "value": i64::MIN, "begin": -1, "length": i64::MAX, "protocol": "file:/dev/null", "paging": true}),
        json!({"events": [{"type": "key"}, {"type": "btn"}, {"type": "abs"}, {"type": "bogus"}], "device": ""}),
        json!({"command-line": "xp /99999999999999999999xg 0xffffffffffffffff"}),
        json!({"command-line": "info qom-tree device["}),
        json!({"command-line": "\u{0}\u{1} ---- ,,,, ===="}),
        json!({"qom-type": "memory-backend-ram", "id": "x", "props": {"size": -1}}),
        json!({"driver": "virtio-net-pci", "addr": "1f.7", "bus": "/machine/i440fx/pci.0"}),
        json!({"name": "*", "enable": true, "vcpu": 99999}),
        json!({"fdset-id": i64::MAX, "fd": -1}),
        json!({"driver": "qemu64-x86_64-cpu", "socket-id": "x", "core-id": -1, "thread-id": 99}),
        json!({"driver": "qemu64-x86_64-cpu", "socket-id": 3, "core-id": 0, "thread-id": 0}),
        json!({"driver": "pc-dimm", "memdev": 5, "id": "d"}),
        json!({"driver": "piix3-usb-uhci", "id": "u"}),
        json!({"command-line": "device_add usb-tablet,bus=u.0,id=t"}),
        json!({"command-line": "device_del u"}),
        json!({"command-line": "info registers -a"}),
        json!({"command-line": "info qtree"}),
        json!({"command-line": "device_add e1000,help"}),
    ];
    for a in &odd {
        let mut m = machine();
        for c in &cmds {
            if matches!(*c, "memsave" | "pmemsave") && a.get("size").is_some() {
                // Sizes are honoured as given; keep the files small.
                let mut small = a.clone();
                small["size"] = json!(16);
                let _ = run(&mut m, c, small);
                continue;
            }
            let _ = run(&mut m, c, a.clone());
            step(&mut m, 200);
        }
    }
}
