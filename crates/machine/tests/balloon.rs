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

/// Step the clock by `ms` in 10 ms ticks, running due timers.
#[allow(dead_code)]
fn step(m: &mut Machine, ms: u64) {
    for _ in 0..ms.div_ceil(10) {
        let t = m.now_ns + 10_000_000;
        m.advance(t);
        m.now_ns = m.now_ns.max(t);
    }
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

#[test]
fn guest_follows_the_balloon_in_steps() {
    let mut m = machine();
    assert_eq!(
        ok(run(&mut m, "query-balloon", json!({}))),
        json!({"actual": 1073741824u64})
    );
    ok(run(&mut m, "balloon", json!({"value": 536870912})));
    assert!(events(&mut m).is_empty());
    step(&mut m, 100);
    assert_eq!(
        events(&mut m),
        vec![r#"BALLOON_CHANGE {"actual":939524096}"#]
    );
    assert_eq!(
        ok(run(&mut m, "query-balloon", json!({}))),
        json!({"actual": 939524096u64})
    );
    step(&mut m, 1000);
    assert_eq!(
        events(&mut m),
        vec![
            r#"BALLOON_CHANGE {"actual":805306368}"#,
            r#"BALLOON_CHANGE {"actual":671088640}"#,
            r#"BALLOON_CHANGE {"actual":536870912}"#,
        ]
    );
    assert_eq!(
        ok(run(&mut m, "query-balloon", json!({}))),
        json!({"actual": 536870912u64})
    );
    // Above RAM: back to all of it.
    ok(run(&mut m, "balloon", json!({"value": 1u64 << 40})));
    step(&mut m, 2000);
    assert_eq!(
        ok(run(&mut m, "query-balloon", json!({}))),
        json!({"actual": 1073741824u64})
    );
}

#[test]
fn paused_guest_does_not_move() {
    let mut m = machine();
    ok(run(&mut m, "stop", json!({})));
    events(&mut m);
    ok(run(&mut m, "balloon", json!({"value": 805306368})));
    step(&mut m, 3000);
    assert!(events(&mut m).is_empty());
    ok(run(&mut m, "cont", json!({})));
    step(&mut m, 3000);
    let ev = events(&mut m);
    assert_eq!(
        ev,
        vec![
            "RESUME",
            r#"BALLOON_CHANGE {"actual":939524096}"#,
            r#"BALLOON_CHANGE {"actual":805306368}"#
        ]
    );
}

#[test]
fn balloon_errors() {
    let mut m = machine();
    assert_eq!(
        run(&mut m, "balloon", json!({"value": 0})).unwrap_err(),
        "GenericError: Parameter 'target' expects a size"
    );
    let mut none = machine_with(|c| c.devices.retain(|d| d.driver != "virtio-balloon-pci"));
    assert_eq!(
        run(&mut none, "balloon", json!({"value": 1})).unwrap_err(),
        "DeviceNotActive: No balloon device has been activated"
    );
    assert_eq!(
        run(&mut none, "query-balloon", json!({})).unwrap_err(),
        "DeviceNotActive: No balloon device has been activated"
    );
    // Hot-plugging one activates it.
    ok(run(
        &mut none,
        "device_add",
        json!({"driver": "virtio-balloon-pci", "id": "b1"}),
    ));
    ok(run(&mut none, "query-balloon", json!({})));
}

#[test]
fn balloon_stats_properties() {
    let mut m = machine();
    let p = "/machine/peripheral/balloon0";
    let stats = ok(run(
        &mut m,
        "qom-get",
        json!({"path": p, "property": "guest-stats"}),
    ));
    assert_eq!(stats["stats"]["stat-total-memory"], json!(-1));
    assert_eq!(stats["last-update"], json!(0));
    ok(run(
        &mut m,
        "qom-set",
        json!({"path": p, "property": "guest-stats-polling-interval", "value": 2}),
    ));
    let stats = ok(run(
        &mut m,
        "qom-get",
        json!({"path": p, "property": "guest-stats"}),
    ));
    assert_eq!(stats["stats"]["stat-total-memory"], json!(1073741824u64));
    assert_eq!(
        run(
            &mut m,
            "qom-set",
            json!({"path": p, "property": "guest-stats-polling-interval", "value": -1})
        )
        .unwrap_err(),
        "GenericError: timer value must be greater than zero"
    );
}

#[test]
fn reset_guest_inflates_again() {
    let mut m = machine();
    ok(run(&mut m, "balloon", json!({"value": 805306368})));
    step(&mut m, 300);
    assert_eq!(
        ok(run(&mut m, "query-balloon", json!({}))),
        json!({"actual": 805306368u64})
    );
    events(&mut m);
    ok(run(&mut m, "system_reset", json!({})));
    step(&mut m, 10);
    // The device forgot the guest's size; the driver has not loaded yet.
    assert_eq!(
        ok(run(&mut m, "query-balloon", json!({}))),
        json!({"actual": 1073741824u64})
    );
    step(&mut m, 1500);
    assert!(events(&mut m)
        .iter()
        .all(|e| !e.starts_with("BALLOON_CHANGE")));
    step(&mut m, 1000);
    assert_eq!(
        events(&mut m),
        vec![
            r#"BALLOON_CHANGE {"actual":939524096}"#,
            r#"BALLOON_CHANGE {"actual":805306368}"#
        ]
    );
}
