//! Random sequences of commands (with arguments of any shape, checked by
//! the server's validator as a client's would be: what it refuses never
//! reaches the machine) and clock steps never panic a machine, and its run
//! state stays one QEMU could reach: every change is an allowed transition.
//! Replies and events are values of the machine's own interface as the
//! handlers made them.

use std::sync::Arc;

use qmpkit_machine::runstate::transition_allowed;
use qmpkit_machine::shape::{conform_event, conform_return};
use qmpkit_machine::{Args, Cx, Machine, MachineConfig, RunState};
use qmpkit_schema::model::EntityKind;
use qmpkit_schema::Schema;
use qmpkit_server::validate::{validate_args, validate_value, ValidateOptions};
use serde_json::{json, Value};

/// A small deterministic generator (xorshift).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[(self.next() % v.len() as u64) as usize]
    }
}

const COMMANDS: &[&str] = &[
    "stop",
    "cont",
    "system_reset",
    "system_powerdown",
    "system_wakeup",
    "inject-nmi",
    "watchdog-set-action",
    "query-status",
    "query-cpus",
    "query-hotpluggable-cpus",
    "query-pci",
    "query-memdev",
    "query-cpu-model-expansion",
    "query-command-line-options",
    "__org.qmpkit_guest-shutdown",
    "__org.qmpkit_guest-panic",
    "__org.qmpkit_guest-suspend",
    "__org.qmpkit_watchdog-fire",
    "__org.qmpkit_io-error",
    "__org.qmpkit_inject-failure",
    "__org.qmpkit_set-guest",
];

fn random_value(r: &mut Rng) -> Value {
    match r.next() % 8 {
        0 => Value::Null,
        1 => json!(r.next() & 1 == 0),
        2 => json!(r.next() as i64),
        3 => json!(-1),
        4 => json!(*r.pick(&[
            "reset",
            "pause",
            "none",
            "shutdown",
            "poweroff",
            "inject-nmi",
            "x"
        ])),
        5 => json!(*r.pick(&["ide0-hd0", "virtio0", "stop", "query-status", "", "nope"])),
        6 => json!([1, "a"]),
        _ => json!({"name": "qemu64", "props": {"x": 1}}),
    }
}

fn random_args(r: &mut Rng) -> Args {
    let keys = [
        "action",
        "reboot",
        "device",
        "operation",
        "nospace",
        "command",
        "desc",
        "class",
        "count",
        "acpi",
        "powerdown-delay-ms",
        "type",
        "model",
        "option",
    ];
    let mut a = Args::new();
    for _ in 0..(r.next() % 4) {
        a.insert(r.pick(&keys).to_string(), random_value(r));
    }
    a
}

#[test]
fn random_operations_never_panic() {
    let schema = Arc::new(qmpkit_machine::embedded::load_schema().expect("schema"));
    let opts = ValidateOptions {
        qemu_version: Some((2, 12, 0)),
    };
    for seed in 1..=40u64 {
        let mut r = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let mut cfg = MachineConfig::default_machine();
        cfg.start_paused = seed & 1 == 0;
        cfg.no_shutdown = seed % 3 != 0;
        let mut m = Machine::new(Arc::new(cfg), schema.clone());
        let mut t = 0u64;
        let mut prev = m.run.state;
        for _ in 0..400 {
            if m.exit.is_some() {
                break;
            }
            let cmd = *r.pick(COMMANDS);
            let args = random_args(&mut r);
            let mut cx = Cx {
                now_ns: t,
                ..Default::default()
            };
            // What a client sends goes through the server's validation
            // first: arguments it refuses (`watchdog-set-action` with
            // action "x") never reach the machine.
            let id = schema.lookup(cmd).expect("a command of the schema");
            let sent = Value::Object(args);
            if let Ok(args) = validate_args(&schema, id, Some(&sent), &opts) {
                // The reply is one of the machine's own interface, as the
                // handler made it.
                if let Some(Ok(v)) = m.execute_raw(cmd, &args, &mut cx) {
                    check_reply(&schema, cmd, &v);
                }
            }
            check(prev, m.run.state, cmd);
            prev = m.run.state;
            t += r.next() % 2_000_000_000;
            m.advance(t);
            check(prev, m.run.state, "timers");
            prev = m.run.state;
            for (ev, data) in m.take_raw_events() {
                let shaped = conform_event(&schema, &ev, data.clone());
                assert!(
                    shaped.inventions.is_empty(),
                    "{ev} {data:?}: {:?}",
                    shaped.inventions
                );
            }
        }
    }
}

/// A reply valid against the command's return type, with nothing for the
/// shaping to invent.
fn check_reply(schema: &Schema, cmd: &str, v: &Value) {
    let opts = ValidateOptions {
        qemu_version: Some((2, 12, 0)),
    };
    if let Some(EntityKind::Command(c)) = schema.lookup(cmd).map(|id| &schema.entity(id).kind) {
        match c.ret_type {
            Some(rt) => {
                if let Err(e) = validate_value(schema, rt, None, v, &opts, None) {
                    panic!("{cmd}: {} in {v}", e.desc);
                }
            }
            None => assert_eq!(v, &json!({}), "{cmd}"),
        }
    }
    let shaped = conform_return(schema, cmd, v.clone());
    assert!(
        shaped.inventions.is_empty(),
        "{cmd} {v}: {:?}",
        shaped.inventions
    );
}

fn check(from: RunState, to: RunState, what: &str) {
    // Through zero-delay timers a call may pass several states; each
    // visible change must still be reachable: directly, or via running or
    // prelaunch as QEMU's reset and resume do.
    let ok = transition_allowed(from, to)
        || (transition_allowed(from, RunState::Running)
            && transition_allowed(RunState::Running, to))
        || (transition_allowed(from, RunState::Prelaunch)
            && transition_allowed(RunState::Prelaunch, to));
    assert!(ok, "{what}: {from} -> {to}");
}
