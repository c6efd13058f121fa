//! A model loaded from a `query-qmp-schema` answer introspects back to
//! that answer, element for element and in the same order.

use qmpkit_schema::introspect::{self, Options, SchemaInfo};
use qmpkit_schema::model::from_introspection::is_hidden;
use qmpkit_schema::model::EntityKind;
use qmpkit_schema::{load_any, load_introspection, Dialect, SchemaSource};
use serde_json::{json, Value};

fn to_json(infos: &[SchemaInfo]) -> Value {
    serde_json::to_value(infos).expect("serialise")
}

fn unmasked() -> Options {
    Options {
        unmask: true,
        ..Default::default()
    }
}

fn assert_same(got: &Value, want: &Value, what: &str) {
    let (g, w) = (
        got.as_array().expect("array"),
        want.as_array().expect("array"),
    );
    for (i, (a, b)) in g.iter().zip(w.iter()).enumerate() {
        assert_eq!(a, b, "{what}: element {i} differs");
    }
    assert_eq!(g.len(), w.len(), "{what}: number of elements");
}

/// source → introspect → load → introspect.
fn round_trip_source(rel: &str, dialect: Dialect, cfg: Option<&str>) {
    let path = qmpkit_testkit::data::dir().join(rel);
    let s = qmpkit_schema::load(&path, dialect).unwrap_or_else(|e| panic!("{rel}: {e}"));
    let mut opts = Options::default();
    if let Some(cfg) = cfg {
        let text = std::fs::read_to_string(qmpkit_testkit::data::dir().join(cfg)).expect("cfg");
        opts.enabled = introspect::parse_cfg_file(&text).into_iter().collect();
    }
    for unmask in [false, true] {
        opts.unmask = unmask;
        let first = to_json(&introspect::introspect(&s, &opts));
        let loaded = load_introspection(&first).unwrap_or_else(|e| panic!("{rel}: {e}"));
        let again = to_json(&introspect::introspect(&loaded, &unmasked()));
        assert_same(&again, &first, rel);
    }
}

#[test]
fn round_trip_seed_2_12() {
    round_trip_source(
        "seeds/qemu-2.12-dev/qapi-schema.json",
        Dialect::Legacy,
        None,
    );
}

#[test]
fn round_trip_seed_1_3() {
    round_trip_source("seeds/qemu-1.3-dev.json", Dialect::Legacy, None);
}

#[test]
fn round_trip_qemu_10_0_2() {
    round_trip_source(
        "qemu-ref/schema-10.0.2/qapi/qapi-schema.json",
        Dialect::Modern,
        None,
    );
}

#[test]
fn round_trip_qemu_10_0_2_storage_daemon() {
    round_trip_source(
        "qemu-ref/schema-10.0.2/storage-daemon/qapi/qapi-schema.json",
        Dialect::Modern,
        Some("qemu-ref/introspection/cfg-qemu-storage-daemon-10.0.2.txt"),
    );
}

#[test]
fn round_trip_qemu_7_2_22() {
    round_trip_source(
        "qemu-ref/schema-7.2.22/qapi/qapi-schema.json",
        Dialect::Modern,
        Some("qemu-ref/introspection/cfg-qemu-system-x86_64-7.2.22.txt"),
    );
}

/// A real server's answer → load → introspect gives the answer back.
fn real_answer(binary: &str) {
    let path = qmpkit_testkit::data::dir().join(format!(
        "qemu-ref/introspection/{binary}-query-qmp-schema.json"
    ));
    let text = std::fs::read_to_string(&path).expect("test data");
    let v: Value = serde_json::from_str(&text).expect("JSON");
    let s = load_introspection(&v).unwrap_or_else(|e| panic!("{binary}: {e}"));
    let got = to_json(&introspect::introspect(&s, &unmasked()));
    assert_same(&got, &v["return"], binary);
    // The bare array loads the same.
    let s2 = load_introspection(&v["return"]).expect("bare array");
    assert_eq!(s2.entities.len(), s.entities.len());
    // load_any recognises the file.
    let (s3, how) = load_any(&path, None).expect("load_any");
    assert_eq!(how, SchemaSource::Introspection);
    assert_eq!(s3.entities.len(), s.entities.len());
}

#[test]
fn real_answer_storage_daemon_10_0_2() {
    real_answer("qemu-storage-daemon-10.0.2");
}

#[test]
fn real_answer_storage_daemon_7_2_22() {
    real_answer("qemu-storage-daemon-7.2.22");
}

#[test]
fn real_answer_system_x86_64_7_2_22() {
    real_answer("qemu-system-x86_64-7.2.22");
}

/// Types the x86 answer lists but reaches only through compiled-out parts
/// (e.g. the cocoa display options) are kept in order by hidden helpers.
#[test]
fn hidden_helpers_only_when_needed() {
    let dir = qmpkit_testkit::data::path("qemu-ref/introspection");
    for (binary, want_hidden) in [
        ("qemu-system-x86_64-7.2.22", true),
        ("qemu-storage-daemon-10.0.2", false),
    ] {
        let path = dir.join(format!("{binary}-query-qmp-schema.json"));
        let text = std::fs::read_to_string(&path).expect("test data");
        let v: Value = serde_json::from_str(&text).expect("JSON");
        let s = load_introspection(&v).expect("loads");
        let hidden = s.iter().filter(|(_, e)| is_hidden(e)).count();
        assert_eq!(hidden > 0, want_hidden, "{binary}: {hidden} hidden");
        assert!(s
            .iter()
            .filter(|(_, e)| is_hidden(e))
            .all(|(_, e)| !e.ifcond.eval(&|_| true) && !e.ifcond.eval(&|_| false)));
    }
}

#[test]
fn loaded_model_is_usable() {
    let v = json!([
        {"name": "block-job-set-speed", "meta-type": "command", "arg-type": "1", "ret-type": "0"},
        {"name": "query-x", "meta-type": "command", "arg-type": "0", "ret-type": "[2]",
         "allow-oob": true, "features": ["unstable"]},
        {"name": "1", "meta-type": "object", "members": [
            {"name": "device", "type": "str"},
            {"name": "speed", "type": "int", "default": null, "features": ["deprecated"]}]},
        {"name": "0", "meta-type": "object", "members": []},
        {"name": "[2]", "meta-type": "array", "element-type": "2"},
        {"name": "2", "meta-type": "object", "members": [
            {"name": "kind", "type": "3"}, {"name": "v", "type": "4"}],
         "tag": "kind", "variants": [{"case": "a", "type": "0"}, {"case": "b", "type": "0"}]},
        {"name": "str", "meta-type": "builtin", "json-type": "string"},
        {"name": "int", "meta-type": "builtin", "json-type": "int"},
        {"name": "3", "meta-type": "enum", "values": ["a", "b"]},
        {"name": "4", "meta-type": "alternate", "members": [{"type": "str"}, {"type": "int"}]}
    ]);
    let s = load_introspection(&v).expect("loads");
    let cmd = s.lookup("block-job-set-speed").expect("command");
    let EntityKind::Command(c) = &s.entity(cmd).kind else {
        panic!("not a command")
    };
    assert_eq!(c.ret_type, None, "the empty object is 'no return value'");
    let arg = c.arg_type.expect("arguments");
    let members: Vec<(&str, &str, bool)> = s
        .object_members(arg)
        .map(|m| (m.name.as_str(), s.entity(m.typ).name.as_str(), m.optional))
        .collect();
    assert_eq!(members, [("device", "str", false), ("speed", "int", true)]);
    let q = s.lookup("query-x").expect("command");
    let EntityKind::Command(c) = &s.entity(q).kind else {
        panic!("not a command")
    };
    assert!(c.allow_oob);
    assert_eq!(c.arg_type, None);
    let ret = c.ret_type.expect("returns");
    let EntityKind::Array(a) = &s.entity(ret).kind else {
        panic!("not an array")
    };
    assert_eq!(s.meta(a.element), "union");
    let EntityKind::Object(o) = &s.entity(a.element).kind else {
        panic!("not an object")
    };
    let b = o.branches.as_ref().expect("branches");
    assert_eq!(s.member(b.tag_member.expect("tag")).name, "kind");
    assert_eq!(b.variants.len(), 2);
    // An enum given with values only gets members.
    let e = s.lookup_type("3").expect("enum");
    let EntityKind::Enum(en) = &s.entity(e).kind else {
        panic!("not an enum")
    };
    assert_eq!(en.members.len(), 2);
    // The answer is in the order the model gives: no hidden helpers.
    assert!(s.iter().all(|(_, e)| !is_hidden(e)));
    let mut v2 = v.clone();
    v2[8]["members"] = json!([{"name": "a"}, {"name": "b"}]);
    let back = serde_json::to_value(introspect::introspect(&s, &unmasked())).expect("json");
    assert_eq!(back, v2);
}

#[test]
fn bad_answers_are_errors() {
    for bad in [
        json!(42),
        json!({"return": 1}),
        json!([{"name": "x", "meta-type": "command", "arg-type": "9", "ret-type": "0"}]),
        json!([{"name": "x", "meta-type": "nothing"}]),
        json!([{"name": "o", "meta-type": "object", "members": [], "tag": "t"}]),
        json!([{"name": "int", "meta-type": "builtin", "json-type": "string"}]),
        json!([{"name": "e", "meta-type": "enum", "members": []},
               {"name": "e", "meta-type": "enum", "members": []}]),
    ] {
        assert!(load_introspection(&bad).is_err(), "{bad}");
    }
}

mod arbitrary_answers {
    use super::*;
    use proptest::prelude::*;

    fn type_ref() -> BoxedStrategy<String> {
        prop_oneof![
            Just("0".to_string()),
            Just("1".to_string()),
            Just("2".to_string()),
            Just("int".to_string()),
            Just("str".to_string()),
            Just("[1]".to_string()),
            Just("[[2]]".to_string()),
            Just("q_empty".to_string()),
            Just("intList".to_string()),
        ]
        .boxed()
    }

    fn element(name: String) -> BoxedStrategy<Value> {
        let n = name.clone();
        prop_oneof![
            (type_ref(), type_ref(), any::<bool>()).prop_map(move |(a, r, oob)| json!({
                "name": format!("cmd-{n}"), "meta-type": "command",
                "arg-type": a, "ret-type": r, "allow-oob": oob })),
            prop::collection::vec((type_ref(), any::<bool>()), 0..4).prop_map({
                let n = name.clone();
                move |ms| {
                    let members: Vec<Value> = ms
                        .iter()
                        .enumerate()
                        .map(|(i, (t, o))| {
                            if *o {
                                json!({"name": format!("m{i}"), "type": t, "default": null})
                            } else {
                                json!({"name": format!("m{i}"), "type": t})
                            }
                        })
                        .collect();
                    json!({"name": n, "meta-type": "object", "members": members})
                }
            }),
            (type_ref(), type_ref()).prop_map({
                let n = name.clone();
                move |(a, b)| {
                    json!({"name": n, "meta-type": "object",
                    "members": [{"name": "t", "type": "str"}], "tag": "t",
                    "variants": [{"case": "a", "type": a}, {"case": "b", "type": b}]})
                }
            }),
            prop::collection::vec(type_ref(), 0..3).prop_map({
                let n = name.clone();
                move |ts| {
                    json!({"name": n, "meta-type": "alternate",
                    "members": ts.iter().map(|t| json!({"type": t})).collect::<Vec<_>>()})
                }
            }),
            Just(json!({"name": name, "meta-type": "enum", "values": ["a", "b"]})),
        ]
        .boxed()
    }

    fn answer() -> BoxedStrategy<Value> {
        (
            element("0".into()),
            element("1".into()),
            element("2".into()),
            element("3".into()),
        )
            .prop_map(|(a, b, c, d)| {
                json!([a, b, c, d,
                    {"name": "int", "meta-type": "builtin", "json-type": "int"},
                    {"name": "str", "meta-type": "builtin", "json-type": "string"}])
            })
            .boxed()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]
        /// No answer panics the loader, introspection of the result, or a
        /// diff against it; what loads introspects to what loads again.
        #[test]
        fn load_introspect_diff_never_panic(v in answer(), w in answer()) {
            let a = load_introspection(&v);
            let b = load_introspection(&w);
            if let Ok(a) = &a {
                let again = to_json(&introspect::introspect(a, &unmasked()));
                let a2 = load_introspection(&again).expect("own introspection loads");
                let again2 = to_json(&introspect::introspect(&a2, &unmasked()));
                prop_assert_eq!(&again, &again2);
                prop_assert!(qmpkit_schema::diff::diff(a, &a2).is_empty());
                if let Ok(b) = &b {
                    let d = qmpkit_schema::diff::diff(a, b);
                    let _ = d.to_text("a", "b");
                    let _ = d.to_json("a", "b");
                }
            }
        }
    }
}
