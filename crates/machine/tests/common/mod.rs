//! Helpers shared by the machine's integration tests: build a machine on
//! the embedded schema, run commands, step the clock, drain events.
#![allow(dead_code)]

use std::sync::Arc;

use qmpkit_machine::{Args, Cx, Machine, MachineConfig};
use serde_json::Value;

/// The machine's own interface, as a program serving it has it (so that replies are written
/// straight from their types, as [`run_cx`] checks).
pub fn schema() -> Arc<qmpkit_schema::Schema> {
    qmpkit_machine::embedded::shared().expect("embedded schema loads")
}

pub fn machine_with(f: impl FnOnce(&mut MachineConfig)) -> Machine {
    let mut c = MachineConfig::default_machine();
    f(&mut c);
    Machine::new(Arc::new(c), schema())
}

pub fn machine() -> Machine {
    machine_with(|_| {})
}

/// A default machine claiming QEMU 10.0.2 and serving its interface (for
/// arguments only newer interfaces take: flat object-add properties,
/// screendump's format, …).
pub fn machine_10() -> Machine {
    let p = qmpkit_testkit::data::path("qemu-ref/schema-10.0.2/qapi/qapi-schema.json");
    let s = qmpkit_schema::load(&p, qmpkit_schema::Dialect::Modern).expect("10.0.2 schema loads");
    let mut c = MachineConfig::default_machine();
    c.qemu_version = (10, 0, 2);
    Machine::new(Arc::new(c), Arc::new(s))
}

/// A storage daemon's machine claiming qemu-storage-daemon 10.0.2 and serving its
/// interface (no PC machine, drives or devices).
pub fn storage_daemon() -> Machine {
    let p =
        qmpkit_testkit::data::path("qemu-ref/schema-10.0.2/storage-daemon/qapi/qapi-schema.json");
    let s = qmpkit_schema::load(&p, qmpkit_schema::Dialect::Modern).expect("schema");
    let mut c = MachineConfig::empty();
    c.storage_daemon = true;
    c.qemu_version = (10, 0, 2);
    c.drives.clear();
    c.devices.clear();
    Machine::new(Arc::new(c), Arc::new(s))
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

/// Run `cmd` with `cx`; errors as "Class: desc". The arguments must be
/// ones the server lets through ([`served_args`]). Where a server would have the reply
/// written straight from its type ([`Machine::execute_written`]), those bytes must be the
/// ones the converted value gives.
pub fn run_cx(m: &mut Machine, cmd: &str, a: Value, cx: &mut Cx) -> Result<Value, String> {
    let a = served_args(m, cmd, a);
    let (v, written) = m
        .execute_both(cmd, &a, cx)
        .unwrap_or_else(|| Err(qmpkit_wire::QmpError::generic("unhandled")))
        .map_err(|e| format!("{}: {}", e.class, e.desc))?;
    if let Some(written) = written {
        let mut expected = Vec::new();
        qmpkit_wire::write_qemu_ordered(&v, &mut expected);
        assert!(
            written == expected,
            "{cmd}: the reply written from its type differs from the converted value's\n\
             written:   {}\nconverted: {}",
            String::from_utf8_lossy(&written),
            String::from_utf8_lossy(&expected)
        );
        WRITTEN.with(|n| n.set(n.get() + 1));
    }
    Ok(v)
}

thread_local! {
    /// How many replies [`run_cx`] compared in this thread.
    pub static WRITTEN: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// `a` as the server hands it to the machine: validated against the served
/// schema as a client's request is. Arguments the server would refuse never
/// reach a machine, so a test that passes them is a mistake (tests of what a
/// client sees for them go through a server: `crates/machine-server/tests`).
pub fn served_args(m: &Machine, cmd: &str, a: Value) -> Args {
    let Some(id) = m.schema.lookup(cmd) else {
        // Test control is served unchecked where the schema lacks it.
        assert!(
            cmd.starts_with("__org.qmpkit_"),
            "{cmd} is not a command of the served schema"
        );
        return args(a);
    };
    let opts = qmpkit_server::validate::ValidateOptions {
        qemu_version: Some(m.config.qemu_version),
    };
    match qmpkit_server::validate::validate_args(&m.schema, id, Some(&a), &opts) {
        Ok(a) => a,
        Err(e) => panic!("the server refuses {cmd} {a}: {}: {}", e.class, e.desc),
    }
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

/// Run a human monitor command line; the monitor's output.
pub fn hmp(m: &mut Machine, line: &str) -> String {
    ok(run(
        m,
        "human-monitor-command",
        serde_json::json!({"command-line": line}),
    ))
    .as_str()
    .unwrap()
    .to_string()
}

/// A fresh scratch directory `name` of the test group `group`, under the target's temporary
/// directory.
pub fn scratch_dir(group: &str, name: &str) -> std::path::PathBuf {
    let d = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(group)
        .join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("test dir");
    d
}

/// A real qcow2 image of `size` bytes at `path`, over the qcow2 image `backing` if given.
pub fn qcow2(path: &std::path::Path, size: u64, backing: Option<&std::path::Path>) {
    use qmpkit_block::{image, CreateOptions, ImageFormat};
    let mut o = CreateOptions::new(ImageFormat::Qcow2, size);
    if let Some(b) = backing {
        o.backing_file = Some(b.to_string_lossy().into_owned());
        o.backing_format = Some(ImageFormat::Qcow2);
    }
    image::create(path, &o).expect("create image");
}
