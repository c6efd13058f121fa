//! The documentation examples of the seed schemas: their requests and
//! their documented replies checked against the schema they document.
//! Examples that the schema itself contradicts are listed in
//! `validate/examples-2.12-refused.txt` with the error we give (golden).

#[path = "validate/common.rs"]
mod common;

use common::*;
use qmpkit_schema::model::EntityKind;
use qmpkit_schema::{Dialect, Schema};
use qmpkit_server::validate::{validate_args, validate_value, ValidateOptions};
use serde_json::Value;

fn run(schema: &Schema, examples: &str, version: (u64, u64, u64)) -> (usize, Vec<String>) {
    let opts = ValidateOptions {
        qemu_version: Some(version),
    };
    let mut n = 0;
    let mut refused = Vec::new();
    for line in examples.lines() {
        let Ok(ex) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let req = &ex["request"];
        let Some(cmd) = req["execute"].as_str() else {
            continue;
        };
        let Some(id) = schema.lookup(cmd) else {
            continue;
        };
        let EntityKind::Command(c) = &schema.entity(id).kind else {
            continue;
        };
        n += 1;
        if let Err(e) = validate_args(schema, id, req.get("arguments"), &opts) {
            refused.push(format!("{} line {}: request: {}", cmd, ex["line"], e.desc));
        }
        let Some(t) = c.ret_type else { continue };
        for resp in ex["responses"].as_array().into_iter().flatten() {
            if let Some(ret) = resp.get("return") {
                if let Err(e) = validate_value(schema, t, None, ret, &opts, None) {
                    refused.push(format!("{} line {}: return: {}", cmd, ex["line"], e.desc));
                }
            }
        }
    }
    (n, refused)
}

#[test]
fn seed_2_12_examples() {
    let schema = load_data("seeds/qemu-2.12-dev/qapi-schema.json", Dialect::Legacy);
    let text = qmpkit_testkit::data::read("seeds/examples-schema-2.12-dev.jsonl");
    let (n, refused) = run(&schema, &text, (2, 12, 0));
    assert!(n > 150, "{n}");
    let got = refused.join("\n") + "\n";
    let path = golden_dir().join("examples-2.12-refused.txt");
    if std::env::var_os("QMPKIT_BLESS").is_some() {
        std::fs::write(&path, &got).expect("bless");
    }
    let want = std::fs::read_to_string(&path).unwrap_or_default();
    assert_eq!(got, want);
}
