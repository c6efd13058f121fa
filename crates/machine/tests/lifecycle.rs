//! The run state machine and the modelled guest, driven as a pure library
//! with a stepped clock: events and states in QEMU's order.

use std::sync::Arc;

use qmpkit_machine::{Cx, Machine, MachineConfig};
use serde_json::{json, Value};

mod common;

use common::{events, machine_with, run_cx};

/// Run `cmd` at time `t` (ms), then serve what the main loop would serve
/// right after the reply; answer (result, events in order).
fn run(m: &mut Machine, t_ms: u64, cmd: &str, a: Value) -> (Result<Value, String>, Vec<String>) {
    let mut cx = Cx {
        now_ns: t_ms * 1_000_000,
        ..Default::default()
    };
    let r = run_cx(m, cmd, a, &mut cx);
    m.advance(t_ms * 1_000_000);
    (r, events(m))
}

fn status(m: &mut Machine) -> String {
    let (r, _) = run(m, m.now_ns / 1_000_000, "query-status", json!({}));
    r.unwrap()["status"].as_str().unwrap().to_string()
}

#[test]
fn start_paused_cont_stop_powerdown() {
    let mut m = machine_with(|c| c.start_paused = true);
    assert_eq!(status(&mut m), "prelaunch");
    let (r, ev) = run(&mut m, 0, "query-status", json!({}));
    assert_eq!(
        r.unwrap(),
        json!({"running": false, "singlestep": false, "status": "prelaunch"})
    );
    assert!(ev.is_empty());
    assert_eq!(run(&mut m, 1, "cont", json!({})).1, ["RESUME"]);
    assert_eq!(status(&mut m), "running");
    // cont while running: nothing happens.
    assert_eq!(run(&mut m, 2, "cont", json!({})).1, Vec::<String>::new());
    assert_eq!(run(&mut m, 3, "stop", json!({})).1, ["STOP"]);
    assert_eq!(status(&mut m), "paused");
    assert_eq!(run(&mut m, 4, "stop", json!({})).1, Vec::<String>::new());
    assert_eq!(run(&mut m, 5, "cont", json!({})).1, ["RESUME"]);
    assert_eq!(
        run(&mut m, 6, "system_powerdown", json!({})).1,
        ["POWERDOWN"]
    );
    // The guest takes its time (500 ms by default).
    m.advance(400_000_000);
    assert!(events(&mut m).is_empty());
    assert!(m.exit.is_none());
    m.advance(600_000_000);
    assert_eq!(
        events(&mut m),
        [r#"SHUTDOWN {"guest":true,"reason":"guest-shutdown"}"#]
    );
    assert!(m.exit.is_some());
}

#[test]
fn no_shutdown_stays_in_shutdown_and_needs_reset() {
    let mut m = machine_with(|c| c.no_shutdown = true);
    let _ = run(&mut m, 0, "system_powerdown", json!({}));
    m.advance(1_000_000_000);
    assert_eq!(
        events(&mut m),
        [
            r#"SHUTDOWN {"guest":true,"reason":"guest-shutdown"}"#,
            "STOP"
        ]
    );
    assert!(m.exit.is_none());
    assert_eq!(status(&mut m), "shutdown");
    let (r, _) = run(&mut m, 1000, "cont", json!({}));
    assert_eq!(
        r.unwrap_err(),
        "GenericError: Resetting the Virtual Machine is required"
    );
    let (r, ev) = run(&mut m, 1001, "system_reset", json!({}));
    assert!(r.is_ok());
    assert_eq!(
        ev,
        [r#"RESET {"guest":false,"reason":"host-qmp-system-reset"}"#]
    );
    assert_eq!(status(&mut m), "prelaunch");
    assert_eq!(run(&mut m, 1002, "cont", json!({})).1, ["RESUME"]);
    assert_eq!(status(&mut m), "running");
}

#[test]
fn powerdown_while_paused_waits_for_the_guest() {
    let mut m = machine_with(|_| {});
    let _ = run(&mut m, 0, "stop", json!({}));
    assert_eq!(
        run(&mut m, 1, "system_powerdown", json!({})).1,
        ["POWERDOWN"]
    );
    m.advance(5_000_000_000);
    assert!(events(&mut m).is_empty());
    assert_eq!(run(&mut m, 5000, "cont", json!({})).1, ["RESUME"]);
    m.advance(5_600_000_000);
    assert_eq!(
        events(&mut m),
        [r#"SHUTDOWN {"guest":true,"reason":"guest-shutdown"}"#]
    );
}

#[test]
fn guest_without_acpi_ignores_the_button() {
    let mut m = machine_with(|_| {});
    let _ = run(&mut m, 0, "__org.qmpkit_set-guest", json!({"acpi": false}));
    let _ = run(&mut m, 0, "system_powerdown", json!({}));
    m.advance(60_000_000_000);
    assert!(events(&mut m).is_empty());
    assert_eq!(status(&mut m), "running");
}

#[test]
fn quit_shuts_down_even_with_no_shutdown() {
    let mut m = machine_with(|c| c.no_shutdown = true);
    let (r, ev) = run(&mut m, 0, "quit", json!({}));
    assert_eq!(r.unwrap(), json!({}));
    assert_eq!(ev, [r#"SHUTDOWN {"guest":false,"reason":"host-qmp-quit"}"#]);
    assert!(m.exit.is_some());
}

#[test]
fn suspend_and_wakeup() {
    let mut m = machine_with(|_| {});
    // QEMU 2.12 accepts a wakeup of a running guest silently.
    assert_eq!(
        run(&mut m, 0, "system_wakeup", json!({})).0.unwrap(),
        json!({})
    );
    assert_eq!(
        run(&mut m, 1, "__org.qmpkit_guest-suspend", json!({})).1,
        ["SUSPEND"]
    );
    assert_eq!(status(&mut m), "suspended");
    // cont of a suspended guest does nothing.
    assert_eq!(run(&mut m, 2, "cont", json!({})).1, Vec::<String>::new());
    assert_eq!(run(&mut m, 3, "system_wakeup", json!({})).1, ["WAKEUP"]);
    assert_eq!(status(&mut m), "running");
}

#[test]
fn wakeup_error_from_qemu_4() {
    let mut m = machine_with(|c| c.qemu_version = (4, 0, 0));
    assert_eq!(
        run(&mut m, 0, "system_wakeup", json!({})).0.unwrap_err(),
        "GenericError: Unable to wake up: guest is not in suspended state"
    );
}

#[test]
fn guest_reboot_and_shutdown() {
    let mut m = machine_with(|_| {});
    let (_, ev) = run(
        &mut m,
        0,
        "__org.qmpkit_guest-shutdown",
        json!({"reboot": true}),
    );
    assert_eq!(ev, [r#"RESET {"guest":true,"reason":"guest-reset"}"#]);
    assert_eq!(status(&mut m), "running");
    let (_, ev) = run(&mut m, 1, "__org.qmpkit_guest-shutdown", json!({}));
    assert_eq!(ev, [r#"SHUTDOWN {"guest":true,"reason":"guest-shutdown"}"#]);
    assert!(m.exit.is_some());
}

#[test]
fn no_reboot_turns_reboot_into_shutdown() {
    let mut m = machine_with(|c| c.no_reboot = true);
    let (_, ev) = run(
        &mut m,
        0,
        "__org.qmpkit_guest-shutdown",
        json!({"reboot": true}),
    );
    assert_eq!(ev, [r#"SHUTDOWN {"guest":true,"reason":"guest-reset"}"#]);
}

#[test]
fn panic_with_and_without_no_shutdown() {
    let mut m = machine_with(|c| c.no_shutdown = true);
    let (_, ev) = run(&mut m, 0, "__org.qmpkit_guest-panic", json!({}));
    assert_eq!(ev, [r#"GUEST_PANICKED {"action":"pause"}"#, "STOP"]);
    assert_eq!(status(&mut m), "guest-panicked");
    // QEMU 2.12 lets a panicked guest continue.
    assert_eq!(run(&mut m, 1, "cont", json!({})).1, ["RESUME"]);

    let mut m = machine_with(|c| {
        c.no_shutdown = true;
        c.qemu_version = (2, 0, 0)
    });
    let _ = run(&mut m, 0, "__org.qmpkit_guest-panic", json!({}));
    assert_eq!(
        run(&mut m, 1, "cont", json!({})).0.unwrap_err(),
        "GenericError: Resetting the Virtual Machine is required"
    );

    let mut m = machine_with(|_| {});
    let (_, ev) = run(&mut m, 0, "__org.qmpkit_guest-panic", json!({}));
    assert_eq!(
        ev,
        [
            r#"GUEST_PANICKED {"action":"pause"}"#,
            "STOP",
            r#"GUEST_PANICKED {"action":"poweroff"}"#,
            r#"SHUTDOWN {"guest":true,"reason":"guest-panic"}"#
        ]
    );
    assert!(m.exit.is_some());
}

#[test]
fn watchdog_actions() {
    let mut m = machine_with(|_| {});
    let (_, ev) = run(&mut m, 0, "__org.qmpkit_watchdog-fire", json!({}));
    assert_eq!(
        ev,
        [
            r#"WATCHDOG {"action":"reset"}"#,
            r#"RESET {"guest":true,"reason":"guest-reset"}"#
        ]
    );
    let _ = run(&mut m, 1, "watchdog-set-action", json!({"action": "pause"}));
    let (_, ev) = run(&mut m, 2, "__org.qmpkit_watchdog-fire", json!({}));
    assert_eq!(ev, [r#"WATCHDOG {"action":"pause"}"#, "STOP"]);
    assert_eq!(status(&mut m), "watchdog");
    assert_eq!(run(&mut m, 3, "cont", json!({})).1, ["RESUME"]);
    // A stopped guest's watchdog does not fire.
    let _ = run(&mut m, 4, "stop", json!({}));
    assert!(run(&mut m, 5, "__org.qmpkit_watchdog-fire", json!({}))
        .0
        .is_err());
}

#[test]
fn io_error_stops_on_enospc() {
    let mut m = machine_with(|_| {});
    let (_, ev) = run(
        &mut m,
        0,
        "__org.qmpkit_io-error",
        json!({"device": "virtio0", "nospace": true}),
    );
    assert_eq!(ev.len(), 2, "{ev:?}");
    assert!(ev[0].starts_with("BLOCK_IO_ERROR "), "{ev:?}");
    assert!(ev[0].contains(r#""action":"stop""#), "{ev:?}");
    assert_eq!(ev[1], "STOP");
    assert_eq!(status(&mut m), "io-error");
    assert_eq!(run(&mut m, 1, "cont", json!({})).1, ["RESUME"]);
    let (_, ev) = run(
        &mut m,
        2,
        "__org.qmpkit_io-error",
        json!({"device": "ide0-hd0", "operation": "read"}),
    );
    assert_eq!(ev.len(), 1);
    assert!(ev[0].contains(r#""action":"report""#));
    let (r, _) = run(
        &mut m,
        3,
        "__org.qmpkit_io-error",
        json!({"device": "nope"}),
    );
    assert_eq!(r.unwrap_err(), "DeviceNotFound: Device 'nope' not found");
}

#[test]
fn injected_failures() {
    let mut m = machine_with(|_| {});
    let _ = run(
        &mut m,
        0,
        "__org.qmpkit_inject-failure",
        json!({"command": "query-status", "desc": "boom", "count": 2}),
    );
    assert_eq!(
        run(&mut m, 1, "query-status", json!({})).0.unwrap_err(),
        "GenericError: boom"
    );
    assert_eq!(
        run(&mut m, 2, "query-status", json!({})).0.unwrap_err(),
        "GenericError: boom"
    );
    assert!(run(&mut m, 3, "query-status", json!({})).0.is_ok());
    let _ = run(
        &mut m,
        4,
        "__org.qmpkit_inject-failure",
        json!({"command": "stop", "class": "DeviceNotActive"}),
    );
    assert_eq!(
        run(&mut m, 5, "stop", json!({})).0.unwrap_err(),
        "DeviceNotActive: Injected failure of 'stop'"
    );
    assert_eq!(status(&mut m), "running");
}

#[test]
fn identity_answers() {
    let mut m = machine_with(|c| {
        c.name = Some("vm1".into());
        c.uuid = Some("550e8400-e29b-41d4-a716-446655440000".into());
        c.package = "qmpkit".into();
    });
    let q = |m: &mut Machine, c: &str, a: Value| run(m, 0, c, a).0.unwrap();
    assert_eq!(
        q(&mut m, "query-version", json!({})),
        json!({"qemu": {"major": 2, "minor": 12, "micro": 0}, "package": "qmpkit"})
    );
    assert_eq!(q(&mut m, "query-name", json!({})), json!({"name": "vm1"}));
    assert_eq!(
        q(&mut m, "query-uuid", json!({})),
        json!({"UUID": "550e8400-e29b-41d4-a716-446655440000"})
    );
    let cpus = q(&mut m, "query-cpus", json!({}));
    assert_eq!(cpus.as_array().unwrap().len(), 2);
    assert_eq!(cpus[0]["arch"], "x86");
    assert_eq!(cpus[0]["CPU"], 0);
    assert!(cpus[0]["thread_id"].as_i64().unwrap() > 0);
    let hp = q(&mut m, "query-hotpluggable-cpus", json!({}));
    assert_eq!(hp.as_array().unwrap().len(), 4);
    assert_eq!(
        hp.as_array()
            .unwrap()
            .iter()
            .filter(|c| c.get("qom-path").is_some())
            .count(),
        2
    );
    let it = q(&mut m, "query-iothreads", json!({}));
    assert_eq!(it[0]["id"], "iothread0");
    assert_eq!(it[1]["id"], "iothread1");
    let tpm = q(&mut m, "query-tpm", json!({}));
    assert_eq!(
        tpm,
        json!([{"model": "tpm-tis", "options": {"type": "passthrough", "data": {"cancel-path": "/sys/class/misc/tpm0/device/cancel", "path": "/dev/tpm0"}}, "id": "tpm0"}])
    );
    let pci = q(&mut m, "query-pci", json!({}));
    let ids: Vec<&str> = pci[0]["devices"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|d| d["qdev_id"].as_str())
        .filter(|s| !s.is_empty())
        .collect();
    assert_eq!(ids, ["video0", "net0", "balloon0"]);
    assert_eq!(
        q(&mut m, "query-memory-size-summary", json!({})),
        json!({"base-memory": 1073741824u64, "plugged-memory": 0})
    );
    let err = run(
        &mut m,
        0,
        "query-command-line-options",
        json!({"option": "nope"}),
    )
    .0;
    assert_eq!(err.unwrap_err(), "GenericError: Invalid option name: nope");
    let events = q(&mut m, "query-events", json!({}));
    assert!(events
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["name"] == "SHUTDOWN"));
}

#[test]
fn old_schema_shapes() {
    let p = qmpkit_testkit::data::path("seeds/qemu-1.3-dev.json");
    let s = Arc::new(qmpkit_schema::load(&p, qmpkit_schema::Dialect::Legacy).unwrap());
    let mut c = MachineConfig::default_machine();
    c.qemu_version = (1, 3, 0);
    let mut m = Machine::new(Arc::new(c), s);
    let cpus = run(&mut m, 0, "query-cpus", json!({})).0.unwrap();
    let keys: Vec<&String> = cpus[0].as_object().unwrap().keys().collect();
    assert_eq!(keys, ["CPU", "current", "halted", "pc", "thread_id"]);
    // 1.3's RESET and SHUTDOWN carry no data.
    let (_, ev) = run(&mut m, 1, "system_reset", json!({}));
    assert_eq!(ev, ["RESET"]);
    let (_, ev) = run(&mut m, 2, "quit", json!({}));
    assert_eq!(ev, ["SHUTDOWN"]);
}

#[test]
fn incoming_waits_in_inmigrate() {
    let mut m = machine_with(|c| c.incoming = Some("defer".into()));
    assert_eq!(status(&mut m), "inmigrate");
    // cont and stop only choose whether to run once migrated.
    assert_eq!(run(&mut m, 0, "cont", json!({})).1, Vec::<String>::new());
    assert!(m.run.autostart);
    assert_eq!(run(&mut m, 1, "stop", json!({})).1, Vec::<String>::new());
    assert!(!m.run.autostart);
    assert_eq!(status(&mut m), "inmigrate");
}

#[test]
fn hibernate_reports_suspend_disk_then_shuts_down() {
    let mut m = machine_with(|c| c.no_shutdown = true);
    let (_, ev) = run(&mut m, 0, "__org.qmpkit_guest-hibernate", json!({}));
    assert_eq!(
        ev,
        [
            "SUSPEND_DISK",
            r#"SHUTDOWN {"guest":true,"reason":"guest-shutdown"}"#,
            "STOP"
        ]
    );
    assert_eq!(status(&mut m), "shutdown");
}
