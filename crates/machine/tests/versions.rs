//! One machine, many interfaces: every command the machine implements that
//! takes no mandatory argument answers, on each seed schema (QEMU 1.0, 1.1,
//! 1.3), the built-in one (2.12) and QEMU 7.2's and 10.0's, a value that
//! validates against that schema's return type; events validate too.

use std::sync::Arc;

use qmpkit_machine::{Cx, Machine, MachineConfig};
use qmpkit_schema::model::EntityKind;
use qmpkit_schema::{Dialect, Schema};
use qmpkit_server::validate::{validate_members, validate_value, ValidateOptions};
use serde_json::Value;

/// `(label, schema, QEMU version)`.
type Interface = (String, Arc<Schema>, (u64, u64, u64));

fn schemas() -> Vec<Interface> {
    let shared = qmpkit_testkit::data::dir();
    let mut v = vec![(
        "built-in 2.12".to_string(),
        Arc::new(qmpkit_machine::embedded::load_schema().expect("embedded")),
        (2, 12, 0),
    )];
    for (rel, dialect, ver) in [
        ("seeds/qemu-1.0-dev.json", Dialect::Legacy, (1, 0, 0)),
        ("seeds/qemu-1.1-dev.json", Dialect::Legacy, (1, 1, 0)),
        ("seeds/qemu-1.3-dev.json", Dialect::Legacy, (1, 3, 0)),
        (
            "qemu-ref/schema-7.2.22/qapi/qapi-schema.json",
            Dialect::Modern,
            (7, 2, 22),
        ),
        (
            "qemu-ref/schema-10.0.2/qapi/qapi-schema.json",
            Dialect::Modern,
            (10, 0, 2),
        ),
    ] {
        let p = shared.join(rel);
        match qmpkit_schema::load(&p, dialect) {
            Ok(s) => v.push((rel.to_string(), Arc::new(s), ver)),
            Err(e) => panic!("{rel}: {e}"),
        }
    }
    v
}

fn mandatory_args(schema: &Schema, cmd: usize) -> bool {
    match &schema.entity(cmd).kind {
        EntityKind::Command(c) => c
            .arg_type
            .is_some_and(|t| schema.object_members(t).any(|m| !m.optional)),
        _ => true,
    }
}

#[test]
fn replies_and_events_validate_on_every_interface() {
    let mut failures = Vec::new();
    let mut checked = 0;
    for (name, schema, ver) in schemas() {
        let opts = ValidateOptions {
            qemu_version: Some(ver),
        };
        let mut cfg = MachineConfig::default_machine();
        cfg.qemu_version = ver;
        cfg.name = Some("vm".into());
        let cfg = Arc::new(cfg);
        for cmd in qmpkit_machine::handled() {
            let Some(id) = schema.lookup(cmd) else {
                continue;
            };
            if mandatory_args(&schema, id) || matches!(cmd, "quit") {
                continue;
            }
            let EntityKind::Command(c) = &schema.entity(id).kind else {
                continue;
            };
            let mut m = Machine::new(cfg.clone(), schema.clone());
            let mut cx = Cx::default();
            let r = m.execute(cmd, &Default::default(), &mut cx);
            m.advance(5_000_000_000);
            checked += 1;
            match r {
                None => failures.push(format!("{name}: {cmd}: no handler")),
                Some(Err(_)) => {} // an error is a valid answer (e.g. no vmgenid)
                Some(Ok(v)) => {
                    if let Some(rt) = c.ret_type {
                        if let Err(e) = validate_value(&schema, rt, None, &v, &opts, None) {
                            failures.push(format!("{name}: {cmd}: {} in {v}", e.desc));
                        }
                    } else if v != serde_json::json!({}) {
                        failures.push(format!("{name}: {cmd}: {v} without return type"));
                    }
                }
            }
            for (ev, data) in m.take_events() {
                let Some(eid) = schema.lookup(&ev) else {
                    continue; // interfaces before 2.1 declare no events
                };
                if let EntityKind::Event(e) = &schema.entity(eid).kind {
                    let ok = match (&data, e.arg_type) {
                        (None, None) => true,
                        (Some(Value::Object(d)), Some(t)) => {
                            validate_members(&schema, Some(t), d, &opts, None).is_ok()
                        }
                        _ => false,
                    };
                    if !ok {
                        failures.push(format!("{name}: {cmd}: event {ev} {data:?}"));
                    }
                }
            }
        }
    }
    assert!(checked > 100, "{checked}");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
