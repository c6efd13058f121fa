//! Synthesised replies validate against their command's return type, for
//! every command of the seed schemas and of QEMU 10.0.2.

#[path = "validate/common.rs"]
mod common;

use common::*;
use qmpkit_schema::model::EntityKind;
use qmpkit_schema::{Dialect, Schema};
use qmpkit_server::synth::{synthesize_return, synthesize_value};
use qmpkit_server::validate::{validate_value, ValidateOptions};
use serde_json::json;

/// Synthesise and validate every command's reply; returns the count.
fn all_commands(schema: &Schema) -> usize {
    let mut n = 0;
    let mut failures = Vec::new();
    for (id, e) in schema.iter() {
        let EntityKind::Command(c) = &e.kind else {
            continue;
        };
        let v = synthesize_return(schema, id);
        n += 1;
        match c.ret_type {
            None => assert_eq!(v, json!({}), "{}", e.name),
            Some(t) => {
                if let Err(err) = validate_value(
                    schema,
                    t,
                    Some("return"),
                    &v,
                    &ValidateOptions::default(),
                    None,
                ) {
                    failures.push(format!("{}: {} -> {}", e.name, v, err.desc));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    n
}

#[test]
fn seed_2_12() {
    let s = load_data("seeds/qemu-2.12-dev/qapi-schema.json", Dialect::Legacy);
    let n = all_commands(&s);
    assert!(n > 150, "{n}");
}

#[test]
fn seed_1_3() {
    let s = load_data("seeds/qemu-1.3-dev.json", Dialect::Legacy);
    let n = all_commands(&s);
    assert!(n > 80, "{n}");
}

#[test]
fn seeds_1_0_and_1_1() {
    for f in ["seeds/qemu-1.0-dev.json", "seeds/qemu-1.1-dev.json"] {
        let s = load_data(f, Dialect::Legacy);
        let n = all_commands(&s);
        assert!(n > 15, "{f}: {n}");
    }
}

#[test]
fn qemu_10_0_2_system_and_storage_daemon() {
    for f in [
        "qemu-ref/schema-10.0.2/qapi/qapi-schema.json",
        "qemu-ref/schema-10.0.2/storage-daemon/qapi/qapi-schema.json",
        "qemu-ref/schema-7.2.22/qapi/qapi-schema.json",
    ] {
        let s = load_data(f, Dialect::Modern);
        assert!(all_commands(&s) > 70);
    }
}

#[test]
fn shapes() {
    let s = schema_from(
        r#"
{ 'enum': 'Color', 'data': [ 'one', 'two' ] }
{ 'struct': 'Base', 'data': { 'kind': 'Color', '*opt': 'int' } }
{ 'struct': 'One', 'data': { 'x': 'uint8', '*y': 'str' } }
{ 'union': 'Uni', 'base': 'Base', 'discriminator': 'kind',
  'data': { 'one': 'One' } }
{ 'struct': 'Tree', 'data': { 'name': 'str', 'kids': ['Tree'], '*next': 'Tree' } }
{ 'alternate': 'Alt', 'data': { 'n': 'number', 'l': ['int'] } }
{ 'struct': 'All', 'data': { 's': 'str', 'i': 'int', 'n': 'number', 'b': 'bool',
  'a': 'any', 'z': 'null', 'e': 'Color', 'l': ['int'], 'un': 'Uni', 't': 'Tree',
  'alt': 'Alt', 'sz': 'size' } }
{ 'command': 'get-all', 'returns': 'All' }
{ 'command': 'nothing' }
{ 'command': 'list', 'returns': ['All'] }
"#,
        false,
    );
    let cmd = |n: &str| s.lookup(n).unwrap();
    assert_eq!(
        synthesize_return(&s, cmd("get-all")),
        json!({"s": "", "i": 0, "n": 0.0, "b": false, "a": {}, "z": null, "e": "one",
               "l": [], "un": {"kind": "one", "x": 0}, "t": {"name": "", "kids": []},
               "alt": 0.0, "sz": 0})
    );
    assert_eq!(synthesize_return(&s, cmd("nothing")), json!({}));
    assert_eq!(synthesize_return(&s, cmd("list")), json!([]));
    let t = s.lookup("Tree").unwrap();
    assert_eq!(
        synthesize_value(&s, t, None),
        json!({"name": "", "kids": []})
    );
}

#[test]
fn recursive_alternate_terminates() {
    let s = schema_from(
        r#"
{ 'struct': 'Node', 'data': { 'child': 'Ref' } }
{ 'alternate': 'Ref', 'data': { 'node': 'Node', 'name': 'str' } }
{ 'command': 'get', 'returns': 'Node' }
"#,
        false,
    );
    let c = s.lookup("get").unwrap();
    let v = synthesize_return(&s, c);
    let t = s.lookup("Node").unwrap();
    validate_value(&s, t, None, &v, &ValidateOptions::default(), None).unwrap();
}
