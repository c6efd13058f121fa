//! The argument checking rules, one golden table: `validate/rules.txt`.

#[path = "validate/common.rs"]
mod common;

use common::*;
use qmpkit_server::validate::{validate_args, validate_args_owned, ValidateOptions};
use serde_json::Value;

struct Case {
    line: usize,
    version: Option<(u64, u64, u64)>,
    command: String,
    args: Option<Value>,
    expect: String,
}

fn parse_version(v: &str) -> Option<(u64, u64, u64)> {
    let mut it = v.split('.').map(|p| p.parse::<u64>().ok());
    Some((it.next()??, it.next()??, 0))
}

#[test]
fn rules_table() {
    let text = std::fs::read_to_string(golden_dir().join("rules.txt")).expect("rules.txt");
    // (legacy, schema text, cases)
    let mut blocks: Vec<(bool, String, Vec<Case>)> = Vec::new();
    let mut in_schema = false;
    let mut pending: Option<Case> = None;
    for (n, line) in text.lines().enumerate() {
        let n = n + 1;
        if line == "schema:" || line == "legacy schema:" {
            blocks.push((line.starts_with("legacy"), String::new(), Vec::new()));
            in_schema = true;
            continue;
        }
        if let Some(rest) = line.strip_prefix("case") {
            in_schema = false;
            let (version, rest) = match rest.strip_prefix('@') {
                Some(r) => {
                    let (v, r) = r.split_once(' ').expect("version");
                    (parse_version(v), r)
                }
                None => (None, rest.trim_start()),
            };
            let (cmd, args) = rest.split_once(' ').expect("command and args");
            let args = if args.trim() == "-" {
                None
            } else {
                Some(serde_json::from_str(args).unwrap_or_else(|e| panic!("line {n}: {e}")))
            };
            pending = Some(Case {
                line: n,
                version,
                command: cmd.to_string(),
                args,
                expect: String::new(),
            });
            continue;
        }
        if let Some(e) = line.strip_prefix("=> ") {
            let mut c = pending
                .take()
                .unwrap_or_else(|| panic!("line {n}: no case"));
            c.expect = e.to_string();
            blocks.last_mut().expect("schema first").2.push(c);
            continue;
        }
        if in_schema && !line.starts_with('#') {
            let b = blocks.last_mut().expect("schema");
            b.1.push_str(line);
            b.1.push('\n');
        }
    }
    let mut failures = Vec::new();
    let mut count = 0;
    for (legacy, text, cases) in &blocks {
        let schema = schema_from(text, *legacy);
        for c in cases {
            count += 1;
            let id = schema
                .lookup(&c.command)
                .unwrap_or_else(|| panic!("line {}: no command {}", c.line, c.command));
            let opts = ValidateOptions {
                qemu_version: c.version,
            };
            let result = validate_args(&schema, id, c.args.as_ref(), &opts);
            // The server's form, which takes the arguments over, answers the same.
            let owned = validate_args_owned(&schema, id, c.args.clone(), &opts, None);
            assert_eq!(
                owned.as_ref().map_err(|e| &e.desc),
                result.as_ref().map_err(|e| &e.desc),
                "line {}",
                c.line
            );
            let got = match result {
                Ok(_) => "ok".to_string(),
                Err(e) => {
                    assert_eq!(e.class.as_str(), "GenericError");
                    e.desc
                }
            };
            if got != c.expect {
                failures.push(format!(
                    "line {}: expected {:?}, got {:?}",
                    c.line, c.expect, got
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(count > 100, "{count}");
}

#[test]
fn successful_arguments_come_back_unchanged() {
    let s = schema_from(
        "{ 'command': 'c', 'data': { 'a': 'int', '*b': ['str'] } }\n",
        false,
    );
    let id = s.lookup("c").unwrap();
    let args = serde_json::json!({"b": ["x"], "a": 1});
    let got = validate_args(&s, id, Some(&args), &ValidateOptions::default()).unwrap();
    assert_eq!(Value::Object(got), args);
}

#[test]
fn conditions_against_a_configuration() {
    use qmpkit_server::validate::validate_args_cfg;
    use std::collections::HashSet;
    let s = schema_from(
        "{ 'enum': 'Color', 'data': [ 'red', { 'name': 'blue', 'if': 'HAVE_BLUE' } ] }
{ 'struct': 'Args', 'data': { 'c': 'Color', '*x': { 'type': 'int', 'if': 'HAVE_X' } } }
{ 'command': 'c', 'data': 'Args', 'boxed': true }\n",
        false,
    );
    let id = s.lookup("c").unwrap();
    let none = HashSet::new();
    let both: HashSet<String> = ["HAVE_BLUE", "HAVE_X"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let o = ValidateOptions::default();
    let run = |args: Value, cfg: &HashSet<String>| {
        validate_args_cfg(&s, id, Some(&args), &o, Some(cfg)).map_err(|e| e.desc)
    };
    assert_eq!(
        run(serde_json::json!({"c": "blue"}), &none).unwrap_err(),
        "Parameter 'c' does not accept value 'blue'"
    );
    assert!(run(serde_json::json!({"c": "blue"}), &both).is_ok());
    assert_eq!(
        run(serde_json::json!({"c": "red", "x": 1}), &none).unwrap_err(),
        "Parameter 'x' is unexpected"
    );
    assert!(run(serde_json::json!({"c": "red", "x": 1}), &both).is_ok());
}
