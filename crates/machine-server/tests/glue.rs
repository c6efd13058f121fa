//! The glue's answer to calls, in each of the modes `qmpkit serve` offers
//! for commands no subsystem takes.

use std::sync::Arc;

use qmpkit_machine::{Args, Machine, MachineConfig};
use qmpkit_machine_server::MachineHandle;
use qmpkit_schema::{Dialect, Schema};
use qmpkit_server::{Call, EventSender, Registry, Returned, SessionInfo, Unhandled};
use serde_json::{json, Value};

fn schema() -> Arc<Schema> {
    Arc::new(qmpkit_machine::embedded::load_schema().expect("embedded schema loads"))
}

fn schema_13() -> Option<Arc<Schema>> {
    let p = qmpkit_testkit::data::path("seeds/qemu-1.3-dev.json");
    Some(Arc::new(
        qmpkit_schema::load(&p, Dialect::Legacy).expect("1.3 schema loads"),
    ))
}

fn args(v: Value) -> Args {
    match v {
        Value::Object(m) => m,
        _ => Args::new(),
    }
}

fn call(reg: &Registry, cmd: &str, a: Value) -> Result<Value, String> {
    let h = reg
        .get(cmd)
        .unwrap_or_else(|| panic!("{cmd} not registered"))
        .clone();
    let c = Call {
        command: cmd.to_string(),
        args: args(a),
        oob: false,
        session: SessionInfo::new(1),
        events: EventSender::from_fn(|_, _| {}),
        fds: Vec::new(),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    match rt.block_on(h(c)) {
        Ok(Returned::Value(v)) => Ok(v),
        // A reply written straight from its type: read back as a client reads it.
        Ok(Returned::Written(bytes)) => match qmpkit_wire::json::decode_all(&bytes).pop() {
            Some(Ok(v)) => Ok(v),
            other => panic!("{cmd}: unreadable reply {other:?}"),
        },
        Err(e) => Err(format!("{}: {}", e.class, e.desc)),
    }
}

fn registry(s: Arc<Schema>, version: (u64, u64, u64), unhandled: Unhandled) -> Registry {
    let mut c = MachineConfig::default_machine();
    c.qemu_version = version;
    let h = MachineHandle::new(Machine::new(Arc::new(c), s.clone()));
    let mut reg = Registry::new();
    h.register_with(&mut reg, &s, unhandled, true);
    reg
}

/// Through the glue, in each of the three modes: a command the machine
/// implements is served; one it does not implement answers that it is not
/// implemented (default), a synthesised value (`--synthesize`) or is not
/// registered at all (`--strict`). No served command is "not found".
#[test]
fn glue_serves_each_command_as_the_mode_says() {
    let mut sets = vec![(schema(), (2, 12, 0))];
    if let Some(s) = schema_13() {
        sets.push((s, (1, 3, 0)));
    }
    let implemented = qmpkit_machine::handled();
    // The medium `change` puts in (one that does not open is refused).
    let iso = std::env::temp_dir().join(format!("qmpkit-glue-{}.iso", std::process::id()));
    std::fs::write(&iso, vec![0u8; 1 << 16]).expect("image");
    for (s, ver) in sets {
        for mode in [
            Unhandled::NotImplemented,
            Unhandled::Synthesize,
            Unhandled::NotFound,
        ] {
            let reg = registry(s.clone(), ver, mode);
            let r = call(&reg, "change", json!({"device": "ide1-cd0", "target": iso}));
            assert_eq!(r, Ok(json!({})), "{mode:?} {ver:?}");
            let mut unimplemented = 0;
            for name in reg.names() {
                if name == "quit" || name.starts_with("__org.qmpkit_") {
                    continue;
                }
                let r = call(&reg, name, json!({}));
                if let Err(e) = &r {
                    assert!(!e.starts_with("CommandNotFound"), "{name}: {e}");
                }
                if implemented.contains(&name) {
                    continue;
                }
                unimplemented += 1;
                match mode {
                    Unhandled::NotImplemented => assert_eq!(
                        r,
                        Err(format!(
                            "GenericError: Command '{name}' is not implemented by this simulated machine"
                        )),
                        "{ver:?}"
                    ),
                    Unhandled::Synthesize => assert!(r.is_ok(), "{name}: {r:?}"),
                    Unhandled::NotFound => panic!("{name} registered with {mode:?}"),
                }
            }
            if mode != Unhandled::NotFound {
                assert!(unimplemented > 0, "{mode:?} {ver:?}: {unimplemented}");
            }
        }
    }
    let _ = std::fs::remove_file(&iso);
}
