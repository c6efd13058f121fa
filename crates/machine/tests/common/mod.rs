//! Helpers shared by the machine's integration tests: build a machine on
//! the embedded schema, run commands, step the clock, drain events.
#![allow(dead_code)]

use std::sync::Arc;

use qmpkit_machine::{Args, Cx, Machine, MachineConfig};
use serde_json::Value;

pub fn schema() -> Arc<qmpkit_schema::Schema> {
    Arc::new(qmpkit_machine::embedded::load_schema().expect("embedded schema loads"))
}

pub fn machine_with(f: impl FnOnce(&mut MachineConfig)) -> Machine {
    let mut c = MachineConfig::default_machine();
    f(&mut c);
    Machine::new(Arc::new(c), schema())
}

pub fn machine() -> Machine {
    machine_with(|_| {})
}

pub fn args(v: Value) -> Args {
    match v {
        Value::Object(m) => m,
        _ => Args::new(),
    }
}

/// Run `cmd` now; errors as "Class: desc".
pub fn run(m: &mut Machine, cmd: &str, a: Value) -> Result<Value, String> {
    let mut cx = Cx {
        now_ns: m.now_ns,
        ..Default::default()
    };
    run_cx(m, cmd, a, &mut cx)
}

pub fn run_cx(m: &mut Machine, cmd: &str, a: Value, cx: &mut Cx) -> Result<Value, String> {
    m.execute(cmd, &args(a), cx)
        .unwrap_or_else(|| Err(qmpkit_wire::QmpError::generic("unhandled")))
        .map_err(|e| format!("{}: {}", e.class, e.desc))
}

/// Step the clock by `ms`, running due timers.
pub fn step(m: &mut Machine, ms: u64) {
    let t = m.now_ns + ms * 1_000_000;
    m.advance(t);
    m.now_ns = m.now_ns.max(t);
}

/// Drain events as `NAME data`.
pub fn events(m: &mut Machine) -> Vec<String> {
    m.take_events()
        .into_iter()
        .map(|(n, d)| match d {
            Some(d) => format!("{n} {d}"),
            None => n,
        })
        .collect()
}

pub fn ok(r: Result<Value, String>) -> Value {
    match r {
        Ok(v) => v,
        Err(e) => panic!("unexpected error: {e}"),
    }
}

pub fn tmp(name: &str) -> std::path::PathBuf {
    let d = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("qmpkit-machine-devices");
    let _ = std::fs::create_dir_all(&d);
    d.join(name)
}
