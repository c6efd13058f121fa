//! Properties: values generated to be valid for a type always validate;
//! no input panics; deep input neither overflows the stack nor loops.

#[path = "validate/common.rs"]
mod common;
#[path = "validate/gen.rs"]
mod gen;

use common::*;
use gen::*;
use proptest::prelude::*;
use qmpkit_schema::model::EntityKind;
use qmpkit_schema::{Dialect, Schema};
use qmpkit_server::synth::synthesize_return;
use qmpkit_server::validate::{validate_args, validate_value, ValidateOptions, MAX_DEPTH};
use serde_json::{json, Map, Value};
use std::sync::OnceLock;

fn schemas() -> &'static Vec<Schema> {
    static S: OnceLock<Vec<Schema>> = OnceLock::new();
    S.get_or_init(|| {
        let mut v = Vec::new();
        for (f, d) in [
            (
                "qemu-ref/schema-10.0.2/qapi/qapi-schema.json",
                Dialect::Modern,
            ),
            ("seeds/qemu-2.12-dev/qapi-schema.json", Dialect::Legacy),
            ("seeds/qemu-1.3-dev.json", Dialect::Legacy),
        ] {
            v.push(load_data(f, d));
        }
        v
    })
}

fn commands(s: &Schema) -> Vec<usize> {
    s.iter()
        .filter(|(_, e)| matches!(e.kind, EntityKind::Command(_)))
        .map(|(i, _)| i)
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 600, ..ProptestConfig::default() })]

    #[test]
    fn valid_arguments_validate(seed in 1u64.., which in 0usize..3, pick in any::<usize>()) {
        let all = schemas();
        if all.is_empty() {
            return Ok(());
        }
        prop_assert_eq!(all.len(), 3);
        let s = &all[which % all.len()];
        let cmds = commands(s);
        let id = cmds[pick % cmds.len()];
        let EntityKind::Command(c) = &s.entity(id).kind else { unreachable!() };
        let mut r = Rng(seed);
        let mut args = Map::new();
        if let Some(t) = c.arg_type {
            fill(s, t, &mut args, &mut r, 0);
        }
        let args = Value::Object(args);
        let got = validate_args(s, id, Some(&args), &ValidateOptions::default());
        prop_assert!(got.is_ok(), "{}: {} -> {:?}", s.entity(id).name, args, got.err());
        // Return values too.
        if let Some(t) = c.ret_type {
            let v = valid(s, t, &mut r, 0);
            let got = validate_value(s, t, None, &v, &ValidateOptions::default(), None);
            prop_assert!(got.is_ok(), "{} returns {} -> {:?}", s.entity(id).name, v, got.err());
        }
    }

    #[test]
    fn any_input_is_answered(seed in 1u64.., which in 0usize..3, pick in any::<usize>(),
                             major in 1u64..11, minor in 0u64..13) {
        let all = schemas();
        if all.is_empty() {
            return Ok(());
        }
        let s = &all[which % all.len()];
        let cmds = commands(s);
        let id = cmds[pick % cmds.len()];
        let EntityKind::Command(c) = &s.entity(id).kind else { unreachable!() };
        let mut r = Rng(seed);
        // Start from valid arguments and damage them, or take noise.
        let mut args = Map::new();
        if let Some(t) = c.arg_type {
            fill(s, t, &mut args, &mut r, 0);
        }
        for _ in 0..r.below(3) {
            let keys: Vec<String> = args.keys().cloned().collect();
            if !keys.is_empty() && r.chance(50) {
                let k = &keys[r.below(keys.len() as u64) as usize];
                let v = any_json(&mut r, 0);
                args.insert(k.clone(), v);
            } else {
                args.insert(format!("x{}", r.below(4)), any_json(&mut r, 0));
            }
        }
        let args = if r.chance(10) { any_json(&mut r, 0) } else { Value::Object(args) };
        let opts = ValidateOptions { qemu_version: Some((major, minor, 0)) };
        // Answered: accepted, or refused in one line of QEMU's kind.
        for got in [validate_args(s, id, Some(&args), &opts), validate_args(s, id, None, &opts)] {
            if let Err(e) = got {
                prop_assert!(!e.desc.is_empty() && !e.desc.contains('\n'), "{:?}", e);
            }
        }
        // A mock's reply is a value of the return type.
        let v = synthesize_return(s, id);
        match c.ret_type {
            Some(t) => {
                let got = validate_value(s, t, None, &v, &opts, None);
                prop_assert!(got.is_ok(), "{} synthesised {} -> {:?}", s.entity(id).name, v, got.err());
            }
            None => prop_assert_eq!(v, json!({})),
        }
    }
}

fn deep_schema() -> Schema {
    schema_from(
        "{ 'struct': 'Node', 'data': { '*next': 'Node', '*list': ['Node'], '*val': 'any' } }
{ 'alternate': 'Ref', 'data': { 'node': 'Node', 'name': 'str' } }
{ 'struct': 'Chain', 'data': { '*ref': 'RefNode' } }
{ 'struct': 'RefNode', 'data': { '*down': 'Ref' } }
{ 'command': 'deep', 'data': 'Node', 'boxed': true }\n",
        false,
    )
}

/// `{k: v}` (`json!` would serialise `v` again, recursively).
fn wrap(k: &str, v: Value) -> Value {
    let mut m = Map::new();
    m.insert(k.to_string(), v);
    Value::Object(m)
}

/// `{"next": {"list": [ ... {"val": leaf}]}}`, `n` levels (built without
/// recursion).
fn nested(n: usize, leaf: Value) -> Value {
    let mut v = wrap("val", leaf);
    for i in 0..n {
        v = if i % 2 == 0 {
            wrap("next", v)
        } else {
            wrap("list", Value::Array(vec![v]))
        };
    }
    v
}

/// Drop a deep value without recursion.
fn dismantle(v: Value) {
    let mut stack = vec![v];
    while let Some(v) = stack.pop() {
        match v {
            Value::Array(a) => stack.extend(a),
            Value::Object(m) => stack.extend(m.into_iter().map(|(_, v)| v)),
            _ => {}
        }
    }
}

/// Run `f` on a thread with a 2 MiB stack (a tokio worker's).
fn on_small_stack<F: FnOnce() + Send + 'static>(f: F) {
    std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(f)
        .expect("thread")
        .join()
        .expect("no overflow");
}

#[test]
fn deep_valid_input_1024_levels() {
    on_small_stack(|| {
        let s = deep_schema();
        let id = s.lookup("deep").unwrap();
        let v = nested(1024, json!(1));
        let got = validate_args(&s, id, Some(&v), &ValidateOptions::default());
        let Ok(copy) = got else { panic!("refused") };
        dismantle(Value::Object(copy));
        dismantle(v);
        // A wrong leaf deep down: the error carries the whole path.
        let v = nested(1023, json!(1));
        let mut bad = wrap("next", v);
        if let Some(m) = bad.as_object_mut() {
            m.insert("oops".into(), json!(1));
        }
        let e = validate_args(&s, id, Some(&bad), &ValidateOptions::default()).unwrap_err();
        assert_eq!(e.desc, "Parameter 'oops' is unexpected");
        dismantle(bad);
        let mut v = json!({ "val": "x", "bad": 1 });
        for _ in 0..1024 {
            v = wrap("next", v);
        }
        let e = validate_args(&s, id, Some(&v), &ValidateOptions::default()).unwrap_err();
        assert!(
            e.desc.starts_with("Parameter 'next.next.next."),
            "{}",
            &e.desc[..60]
        );
        assert!(e.desc.ends_with(".next.bad' is unexpected"), "{}", e.desc);
        dismantle(v);
    });
}

#[test]
fn deeper_than_the_limit_is_refused() {
    on_small_stack(|| {
        let s = deep_schema();
        let id = s.lookup("deep").unwrap();
        let v = nested(MAX_DEPTH + 10, json!(1));
        let e = validate_args(&s, id, Some(&v), &ValidateOptions::default()).unwrap_err();
        assert_eq!(e.desc, "JSON nesting depth limit exceeded");
        dismantle(v);
        // 'any' is not walked: any depth is fine.
        let mut leaf = json!(1);
        for _ in 0..(MAX_DEPTH * 2) {
            leaf = Value::Array(vec![leaf]);
        }
        let v = wrap("val", leaf);
        assert!(validate_args(&s, id, Some(&v), &ValidateOptions::default()).is_ok());
        dismantle(v);
    });
}
