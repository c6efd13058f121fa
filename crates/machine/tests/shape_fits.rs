//! `shape::fits` says a value is already in the served shape only when `conform` would give
//! it back unchanged, members in the same order (the reply is then sent as it is).

use qmpkit_machine::shape::{conform, fits, synth};
use qmpkit_schema::model::EntityKind;
use serde_json::{Map, Value};

/// `conform`'s result, compared with member order (serde_json's `==` on maps ignores it).
fn same(a: &Value, b: &Value) -> bool {
    serde_json::to_string(a).ok() == serde_json::to_string(b).ok()
}

/// Variants of `v`: each member dropped, an unknown member added, members reversed, and
/// each member's value replaced by a value of another JSON type.
fn mutations(v: &Value) -> Vec<Value> {
    let mut out = Vec::new();
    let Value::Object(m) = v else {
        out.push(Value::from("not an object"));
        return out;
    };
    for k in m.keys() {
        let mut d = m.clone();
        d.shift_remove(k);
        out.push(Value::Object(d));
        for other in [
            Value::Null,
            Value::from(7),
            Value::from("s"),
            Value::Bool(true),
        ] {
            let mut c = m.clone();
            c.insert(k.clone(), other);
            out.push(Value::Object(c));
        }
    }
    let mut extra = m.clone();
    extra.insert("__not_a_member".into(), Value::from(1));
    out.push(Value::Object(extra));
    let rev: Map<String, Value> = m
        .iter()
        .rev()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    out.push(Value::Object(rev));
    out
}

#[test]
fn fits_only_what_conform_keeps() {
    let schema = qmpkit_machine::embedded::load_schema().expect("the machine's schema loads");
    let mut kept = 0;
    let (mut total, mut refit) = (0, 0);
    for (id, e) in schema.iter() {
        if !matches!(
            e.kind,
            EntityKind::Object(_)
                | EntityKind::Alternate(_)
                | EntityKind::Array(_)
                | EntityKind::Enum(_)
        ) {
            continue;
        }
        let v = synth(&schema, id, 0);
        let mut cases = vec![v.clone()];
        cases.extend(mutations(&v));
        for c in cases {
            if fits(&schema, id, &c, 0) {
                kept += 1;
                let shaped = conform(&schema, id, c.clone());
                assert!(
                    same(&shaped.value, &c),
                    "{}: {c} fits but conforms to {}",
                    e.name,
                    shaped.value
                );
                assert!(
                    shaped.inventions.is_empty(),
                    "{}: {c} fits but {:?}",
                    e.name,
                    shaped.inventions
                );
            }
        }
        // What conform makes fits (short of its depth limit, where `fits` says no).
        let shaped = conform(&schema, id, v).value;
        total += 1;
        if fits(&schema, id, &shaped, 0) {
            refit += 1;
        }
    }
    assert!(kept > 100, "only {kept} values fit");
    assert!(
        refit * 100 >= total * 95,
        "{refit} of {total} conformed values fit"
    );
}
