//! The argument validator on arbitrary JSON against the machine's commands.
//!
//! Input: a first line naming a command (a name that is none picks one of
//! the commands by its hash), then JSON text in QEMU's dialect, decoded by
//! the wire decoder. Every value is checked as the arguments of that
//! command; a request-shaped value (`execute` / `exec-oob` naming a
//! command) also has its `arguments` checked against the command it
//! names. Every generation of wording is tried, and the build without any
//! optional configuration.
//!
//! Invariants: no panic; accepted arguments come back unchanged; refusals
//! carry a message.

#![no_main]

use std::collections::HashSet;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use qmpkit_schema::model::{EntityId, EntityKind};
use qmpkit_schema::Schema;
use qmpkit_server::validate::{validate_args, validate_args_cfg, ValidateOptions};
use qmpkit_wire::JsonStreamer;
use serde_json::Value;

struct Fixture {
    schema: Schema,
    commands: Vec<EntityId>,
    versions: Vec<ValidateOptions>,
    no_config: HashSet<String>,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let schema = match qmpkit_machine::embedded::load_schema() {
            Ok(s) => s,
            Err(e) => panic!("embedded schema does not load: {e}"),
        };
        let commands = (0..schema.entities.len())
            .filter(|&id| matches!(schema.entity(id).kind, EntityKind::Command(_)))
            .collect::<Vec<_>>();
        assert!(!commands.is_empty());
        // One version per generation of wording (see validate::wording).
        let versions = [
            None,
            Some((2, 7, 0)),
            Some((2, 8, 0)),
            Some((2, 9, 0)),
            Some((4, 2, 0)),
        ]
        .into_iter()
        .map(|qemu_version| ValidateOptions { qemu_version })
        .collect();
        Fixture {
            schema,
            commands,
            versions,
            no_config: HashSet::new(),
        }
    })
}

fn command(f: &Fixture, name: &str) -> Option<EntityId> {
    f.schema
        .lookup(name)
        .filter(|&id| matches!(f.schema.entity(id).kind, EntityKind::Command(_)))
}

fn check(f: &Fixture, cmd: EntityId, args: Option<&Value>) {
    for (i, opts) in f.versions.iter().enumerate() {
        let enabled = (i == 0).then_some(&f.no_config);
        for r in [
            validate_args(&f.schema, cmd, args, opts),
            validate_args_cfg(&f.schema, cmd, args, opts, enabled),
        ] {
            match r {
                Ok(map) => {
                    let back = Value::Object(map);
                    match args {
                        Some(a) => assert!(&back == a, "accepted arguments changed"),
                        None => assert_eq!(back, Value::Object(Default::default())),
                    }
                }
                Err(e) => assert!(!e.desc.is_empty(), "a refusal without a message"),
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let (first, json) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let name = String::from_utf8_lossy(first);
    let cmd = command(f, &name).unwrap_or_else(|| {
        let h = first.iter().fold(0usize, |h, &b| {
            h.wrapping_mul(31).wrapping_add(usize::from(b))
        });
        f.commands[h % f.commands.len()]
    });
    check(f, cmd, None);
    let mut values = Vec::new();
    let mut dec = JsonStreamer::new();
    dec.feed(json, &mut values);
    dec.finish(&mut values);
    for v in values.into_iter().flatten() {
        check(f, cmd, Some(&v));
        let named = ["execute", "exec-oob"]
            .iter()
            .find_map(|k| v.get(*k).and_then(Value::as_str))
            .and_then(|n| command(f, n));
        if let Some(c) = named {
            check(f, c, v.get("arguments"));
        }
    }
});
