mod common;

use common::*;
use qmpkit_machine::{Cx, Machine};
use serde_json::{json, Value};

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
    // The refused call took (and closed) its descriptor, as QEMU does.
    assert!(cx.fds.is_empty(), "the fd was taken");
    cx.fds.push(devnull());
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
        // QEMU's order: sets by descending id, a set's descriptors oldest first.
        json!([
            {"fdset-id": 1, "fds": [{"fd": fd1, "opaque": "rdonly:/path/to/file"}, {"fd": fd1b}]},
            {"fdset-id": 0, "fds": [{"fd": fd0}]},
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
