mod common;

use common::*;
use qmpkit_machine::Machine;
use serde_json::json;

/// Step the clock by `ms` in 10 ms ticks, running due timers.
fn step(m: &mut Machine, ms: u64) {
    for _ in 0..ms.div_ceil(10) {
        let t = m.now_ns + 10_000_000;
        m.advance(t);
        m.now_ns = m.now_ns.max(t);
    }
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
