mod common;

use common::*;
use qmpkit_machine::Machine;
use serde_json::{json, Value};

fn keyboard(m: &mut Machine) -> Value {
    ok(run(m, "__org.qmpkit_query-keyboard", json!({})))
}

fn qcodes(keys: &[&str]) -> Value {
    Value::Array(
        keys.iter()
            .map(|k| json!({"type": "qcode", "data": k}))
            .collect(),
    )
}

#[test]
fn send_key_presses_in_order_then_releases_in_reverse() {
    let mut m = machine();
    ok(run(
        &mut m,
        "send-key",
        json!({"keys": qcodes(&["ctrl", "alt", "delete"])}),
    ));
    // One event every 10 ms: the first goes at once.
    assert_eq!(keyboard(&mut m), json!({"pressed": ["ctrl"], "typed": ""}));
    step(&mut m, 10);
    assert_eq!(keyboard(&mut m)["pressed"], json!(["ctrl", "alt"]));
    step(&mut m, 10);
    assert_eq!(
        keyboard(&mut m)["pressed"],
        json!(["ctrl", "alt", "delete"])
    );
    step(&mut m, 10);
    assert_eq!(keyboard(&mut m)["pressed"], json!(["ctrl", "alt"]));
    step(&mut m, 20);
    assert_eq!(keyboard(&mut m), json!({"pressed": [], "typed": ""}));
    // The queue drains 10 ms after the last release.
    step(&mut m, 10);
    // hold-time spaces the events.
    ok(run(
        &mut m,
        "send-key",
        json!({"keys": qcodes(&["a"]), "hold-time": 500}),
    ));
    step(&mut m, 400);
    assert_eq!(keyboard(&mut m)["pressed"], json!(["a"]));
    step(&mut m, 100);
    assert_eq!(keyboard(&mut m)["pressed"], json!([]));
}

#[test]
fn calls_queue_behind_each_other() {
    let mut m = machine();
    ok(run(
        &mut m,
        "send-key",
        json!({"keys": qcodes(&["shift", "a"])}),
    ));
    ok(run(&mut m, "send-key", json!({"keys": qcodes(&["b"])})));
    step(&mut m, 100);
    // "b" came after shift was released.
    assert_eq!(keyboard(&mut m), json!({"pressed": [], "typed": "Ab"}));
}

#[test]
fn typing_text() {
    let mut m = machine();
    for k in ["h", "i", "spc", "backspace"] {
        ok(run(&mut m, "send-key", json!({"keys": qcodes(&[k])})));
    }
    ok(run(
        &mut m,
        "send-key",
        json!({"keys": qcodes(&["shift", "1"])}),
    ));
    // Numbers are PC scancodes: 0x1c is return.
    ok(run(
        &mut m,
        "send-key",
        json!({"keys": [{"type": "number", "data": 0x1c}]}),
    ));
    step(&mut m, 200);
    assert_eq!(keyboard(&mut m), json!({"pressed": [], "typed": "hi!\n"}));
}

#[test]
fn input_send_event_keys_buttons_axes() {
    let mut m = machine();
    ok(run(
        &mut m,
        "input-send-event",
        json!({"events": [
            {"type": "key", "data": {"down": true, "key": {"type": "qcode", "data": "shift"}}},
            {"type": "key", "data": {"down": true, "key": {"type": "qcode", "data": "x"}}},
            {"type": "key", "data": {"down": false, "key": {"type": "qcode", "data": "x"}}},
        ]}),
    ));
    assert_eq!(
        keyboard(&mut m),
        json!({"pressed": ["shift"], "typed": "X"})
    );
    ok(run(
        &mut m,
        "input-send-event",
        json!({"device": "video0", "events": [
            {"type": "btn", "data": {"down": true, "button": "left"}},
            {"type": "abs", "data": {"axis": "x", "value": 20000}},
            {"type": "abs", "data": {"axis": "y", "value": 400}},
            {"type": "rel", "data": {"axis": "x", "value": -5}},
        ]}),
    ));
    assert_eq!(m.input.buttons, vec!["left"]);
    assert_eq!(m.input.abs, (20000, 400));
    assert_eq!(m.input.rel, (-5, 0));
    assert_eq!(
        run(
            &mut m,
            "input-send-event",
            json!({"device": "nope", "events": []})
        )
        .unwrap_err(),
        "DeviceNotFound: Device 'nope' not found"
    );
    assert_eq!(
        run(
            &mut m,
            "input-send-event",
            json!({"device": "net0", "events": []})
        )
        .unwrap_err(),
        "GenericError: Device 'net0' (head 0) is not a graphic console"
    );
    ok(run(&mut m, "stop", json!({})));
    assert_eq!(
        run(&mut m, "input-send-event", json!({"events": []})).unwrap_err(),
        "GenericError: VM not running"
    );
}

fn mice(m: &mut Machine) -> Value {
    ok(run(m, "query-mice", json!({})))
}

#[test]
fn mice_follow_devices() {
    let mut m = machine();
    assert_eq!(
        mice(&mut m),
        json!([{"name": "QEMU PS/2 Mouse", "index": 1, "current": true, "absolute": false}])
    );
    ok(run(
        &mut m,
        "device_add",
        json!({"driver": "virtio-tablet-pci", "id": "tab0"}),
    ));
    assert_eq!(
        mice(&mut m),
        json!([
            {"name": "QEMU Virtio Tablet", "index": 2, "current": true, "absolute": true},
            {"name": "QEMU PS/2 Mouse", "index": 1, "current": false, "absolute": false},
        ])
    );
    ok(run(&mut m, "device_del", json!({"id": "tab0"})));
    step(&mut m, 200);
    assert_eq!(mice(&mut m).as_array().unwrap().len(), 1);
}

#[test]
fn reset_clears_the_keyboard() {
    let mut m = machine();
    ok(run(&mut m, "send-key", json!({"keys": qcodes(&["a"])})));
    step(&mut m, 50);
    assert_eq!(keyboard(&mut m)["typed"], "a");
    ok(run(&mut m, "system_reset", json!({})));
    step(&mut m, 10);
    assert_eq!(keyboard(&mut m), json!({"pressed": [], "typed": ""}));
}
