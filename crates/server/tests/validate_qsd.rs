//! Arguments checked against QEMU 10.0.2's schemas, compared with what
//! real QEMU answered: the transcripts in `tests/data` and the answers
//! qemu-storage-daemon 10.0.2 gave to `validate/qsd-cases.txt`, recorded
//! in `validate/qsd-10.0.2.txt`.

#[path = "validate/common.rs"]
mod common;

use common::*;
use qmpkit_schema::model::EntityKind;
use qmpkit_schema::{Dialect, Schema};
use qmpkit_server::validate::{validate_args_cfg, ValidateOptions};
use serde_json::Value;
use std::collections::HashSet;

/// Check every exchange whose request is a command with arguments:
/// argument errors must match byte for byte; any other answer means the
/// arguments were accepted.
fn check(schema: &Schema, enabled: Option<&HashSet<String>>, pairs: &[(String, String)]) -> usize {
    let opts = ValidateOptions::default();
    let mut checked = 0;
    let mut failures = Vec::new();
    for (req, resp) in pairs {
        let Ok(Value::Object(req_v)) = serde_json::from_str::<Value>(req) else {
            continue;
        };
        let Some(Value::String(cmd)) = req_v.get("execute") else {
            continue;
        };
        let Ok(resp_v) = serde_json::from_str::<Value>(resp) else {
            continue;
        };
        let err = resp_v.get("error");
        let desc = err
            .and_then(|e| e.get("desc"))
            .and_then(Value::as_str)
            .unwrap_or("");
        let class = err
            .and_then(|e| e.get("class"))
            .and_then(Value::as_str)
            .unwrap_or("");
        let Some(id) = schema.lookup(cmd) else {
            continue;
        };
        if !matches!(schema.entity(id).kind, EntityKind::Command(_)) {
            continue;
        }
        if matches!(req_v.get("arguments"), Some(a) if !a.is_object()) {
            continue;
        }
        let got = validate_args_cfg(schema, id, req_v.get("arguments"), &opts, enabled);
        checked += 1;
        let expect_err = !desc.is_empty() && is_argument_error(desc);
        match (&got, expect_err) {
            (Err(e), true) if e.desc == desc && e.class.as_str() == class => {}
            (Ok(_), false) => {}
            _ => failures.push(format!(
                "{req}\n  qemu: {resp}\n  ours: {:?}",
                got.as_ref().map(|_| "accepted").map_err(|e| &e.desc)
            )),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    eprintln!("{checked} requests checked");
    checked
}

#[test]
fn storage_daemon_recorded_answers() {
    let schema = load_data(
        "qemu-ref/schema-10.0.2/storage-daemon/qapi/qapi-schema.json",
        Dialect::Modern,
    );
    let enabled = cfg("qemu-ref/introspection/cfg-qemu-storage-daemon-10.0.2.txt");
    let text = std::fs::read_to_string(golden_dir().join("qsd-10.0.2.txt")).unwrap_or_default();
    let pairs = exchanges(&text);
    assert!(pairs.len() > 100);
    let n = check(&schema, Some(&enabled), &pairs);
    assert_eq!(n, pairs.len());
}

fn transcript_pairs(name: &str) -> Vec<(String, String)> {
    let text = qmpkit_testkit::data::read(&format!("qemu-ref/transcripts/{name}"));
    exchanges(&text)
        .into_iter()
        .filter_map(|(a, b)| Some((unrepr(&a)?, unrepr(&b)?)))
        .map(|(a, b)| (a.trim().to_string(), b.trim().to_string()))
        .collect()
}

#[test]
fn storage_daemon_transcript() {
    let schema = load_data(
        "qemu-ref/schema-10.0.2/storage-daemon/qapi/qapi-schema.json",
        Dialect::Modern,
    );
    let pairs = transcript_pairs("qemu-storage-daemon-10.0.2.txt");
    let enabled = cfg("qemu-ref/introspection/cfg-qemu-storage-daemon-10.0.2.txt");
    let n = check(&schema, Some(&enabled), &pairs);
    assert!(n >= 10, "{n}");
}

#[test]
fn system_transcript() {
    let schema = load_data(
        "qemu-ref/schema-10.0.2/qapi/qapi-schema.json",
        Dialect::Modern,
    );
    let pairs = transcript_pairs("qemu-system-x86_64-10.0.2.txt");
    let n = check(&schema, None, &pairs);
    assert!(n >= 10, "{n}");
}

#[test]
fn storage_daemon_7_2_transcript() {
    let schema = load_data(
        "qemu-ref/schema-7.2.22/storage-daemon/qapi/qapi-schema.json",
        Dialect::Modern,
    );
    let pairs = transcript_pairs("qemu-storage-daemon-7.2.22.txt");
    let enabled = cfg("qemu-ref/introspection/cfg-qemu-storage-daemon-7.2.22.txt");
    let n = check(&schema, Some(&enabled), &pairs);
    assert!(n >= 10, "{n}");
}

#[test]
fn system_7_2_transcript() {
    let schema = load_data(
        "qemu-ref/schema-7.2.22/qapi/qapi-schema.json",
        Dialect::Modern,
    );
    let pairs = transcript_pairs("qemu-system-x86_64-7.2.22.txt");
    let enabled = cfg("qemu-ref/introspection/cfg-qemu-system-x86_64-7.2.22.txt");
    let n = check(&schema, Some(&enabled), &pairs);
    assert!(n >= 10, "{n}");
}
