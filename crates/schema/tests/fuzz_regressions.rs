//! Inputs the fuzz targets (crates/schema/fuzz) once failed on, minimised,
//! with the property each one broke.

use qmpkit_schema::diff::diff;
use qmpkit_schema::introspect::{introspect, Options, SchemaInfo};
use qmpkit_schema::load_introspection;
use qmpkit_schema::model::from_introspection::parse_answer;
use serde_json::{json, Value};

fn unmasked() -> Options {
    Options {
        unmask: true,
        ..Default::default()
    }
}

/// What the `introspection` target checks of an answer that loads: it
/// introspects back to itself, reloads to the same model, and the model
/// does not differ from itself.
fn round_trips(answer: &Value) {
    let s = load_introspection(answer).expect("loads");
    let want = parse_answer(answer).expect("parses");
    let got = introspect(&s, &unmasked());
    let names = |v: &[SchemaInfo]| v.iter().map(|i| i.name.clone()).collect::<Vec<_>>();
    assert_eq!(names(&got), names(&want), "order of the elements");
    assert_eq!(got, want);
    let again = serde_json::to_value(&got).expect("prints");
    let s2 = load_introspection(&again).expect("own introspection loads");
    assert_eq!(introspect(&s2, &unmasked()), got);
    assert!(diff(&s, &s).is_empty());
    assert!(diff(&s, &s2).is_empty());
}

/// A type listed between a command's argument type and its return type:
/// a command the server compiled out (no arguments, returning `str`) used
/// it first. Found by the `introspection` target on a part of
/// qemu-storage-daemon 10.0.2's answer (`query-uuid` alone).
#[test]
fn type_between_argument_and_return_type() {
    round_trips(&json!([
        {"name": "query-uuid", "ret-type": "194", "meta-type": "command", "arg-type": "0"},
        {"name": "0", "members": [], "meta-type": "object"},
        {"name": "str", "json-type": "string", "meta-type": "builtin"},
        {"name": "194", "members": [{"name": "UUID", "type": "str"}], "meta-type": "object"}
    ]));
}

/// The same with several types in between, and a second command using
/// the first one's types.
#[test]
fn types_between_argument_and_return_type() {
    round_trips(&json!([
        {"name": "c", "meta-type": "command", "arg-type": "1", "ret-type": "2"},
        {"name": "d", "meta-type": "command", "arg-type": "0", "ret-type": "int"},
        {"name": "1", "members": [{"name": "a", "type": "int"}], "meta-type": "object"},
        {"name": "str", "json-type": "string", "meta-type": "builtin"},
        {"name": "bool", "json-type": "boolean", "meta-type": "builtin"},
        {"name": "2", "members": [{"name": "b", "type": "str"}], "meta-type": "object"},
        {"name": "int", "json-type": "int", "meta-type": "builtin"},
        {"name": "0", "members": [], "meta-type": "object"}
    ]));
}

/// An answer using a built-in type (or an array type) it does not list
/// used to load, the model's own `str` standing in, and then introspected
/// to one element more than the answer. Such an answer is refused, the
/// way a type nobody defines is.
#[test]
fn used_type_missing_from_the_answer() {
    let builtin = json!([
        {"name": "q", "meta-type": "command", "arg-type": "0", "ret-type": "1"},
        {"name": "0", "members": [], "meta-type": "object"},
        {"name": "str-", "json-type": "string", "meta-type": "builtin"},
        {"name": "1", "members": [{"name": "a", "type": "str"}], "meta-type": "object"}
    ]);
    let e = load_introspection(&builtin).expect_err("refused");
    assert_eq!(e.to_string(), "'1' uses type 'str', which is not defined");
    let array = json!([
        {"name": "q", "meta-type": "command", "arg-type": "0", "ret-type": "[int]"},
        {"name": "0", "members": [], "meta-type": "object"},
        {"name": "int", "json-type": "int", "meta-type": "builtin"}
    ]);
    let e = load_introspection(&array).expect_err("refused");
    assert_eq!(e.to_string(), "'q' uses type '[int]', which is not defined");
    // Listed, both load and round-trip.
    round_trips(&json!([
        {"name": "q", "meta-type": "command", "arg-type": "0", "ret-type": "[int]"},
        {"name": "0", "members": [], "meta-type": "object"},
        {"name": "[int]", "element-type": "int", "meta-type": "array"},
        {"name": "int", "json-type": "int", "meta-type": "builtin"}
    ]));
}

/// An object with a `tag` and no `variants` (QEMU always gives both) used
/// to load as a union without branches, which introspects with
/// `"variants": []`. It is refused, like `variants` without a `tag`.
#[test]
fn tag_without_variants() {
    let answer = json!([
        {"name": "q", "meta-type": "command", "arg-type": "1", "ret-type": "0"},
        {"name": "0", "members": [], "meta-type": "object"},
        {"name": "1", "tag": "type", "members": [{"name": "type", "type": "2"}],
         "meta-type": "object"},
        {"name": "2", "members": [{"name": "a"}], "meta-type": "enum", "values": ["a"]}
    ]);
    let e = load_introspection(&answer).expect_err("refused");
    assert_eq!(e.to_string(), "object type '1' has a tag but no variants");
}

/// A member listed twice (here `speed`, once `int` and once `bool`) used
/// to load, and the model then differed from itself (the comparison goes
/// by name). Names given twice are refused: members, enum values, variant
/// cases and alternatives.
#[test]
fn names_given_twice() {
    let cases = [
        (
            json!({"name": "1", "meta-type": "object", "members": [
                {"name": "speed", "type": "int"}, {"name": "speed", "type": "bool"}]}),
            "object type '1' has member 'speed' twice",
        ),
        (
            json!({"name": "1", "meta-type": "enum", "members": [{"name": "a"}, {"name": "a"}]}),
            "enum type '1' has value 'a' twice",
        ),
        (
            json!({"name": "1", "meta-type": "object", "members": [{"name": "t", "type": "2"}],
                "tag": "t", "variants": [{"case": "a", "type": "0"}, {"case": "a", "type": "0"}]}),
            "object type '1' has variant 'a' twice",
        ),
        (
            json!({"name": "1", "meta-type": "alternate", "members": [
                {"type": "int"}, {"type": "int"}]}),
            "alternate type '1' has alternative 'int' twice",
        ),
    ];
    for (element, want) in cases {
        let answer = json!([
            {"name": "q", "meta-type": "command", "arg-type": "0", "ret-type": "1"},
            {"name": "0", "members": [], "meta-type": "object"},
            element,
            {"name": "2", "members": [{"name": "a"}], "meta-type": "enum"},
            {"name": "int", "json-type": "int", "meta-type": "builtin"},
            {"name": "bool", "json-type": "boolean", "meta-type": "builtin"}
        ]);
        let e = load_introspection(&answer).expect_err(want);
        assert_eq!(e.to_string(), want);
    }
}

/// A built-in type of another name with json-type `int` (or `value`)
/// loaded, and introspected as `int` (`any`): it is refused.
#[test]
fn builtin_integer_type_of_another_name() {
    for (jt, shown) in [("int", "int"), ("value", "any")] {
        let answer = json!([{"name": "count", "json-type": jt, "meta-type": "builtin"}]);
        let e = load_introspection(&answer).expect_err("refused");
        assert_eq!(
            e.to_string(),
            format!("built-in type 'count' has json-type '{jt}', shown as '{shown}'")
        );
    }
    // A new built-in type of another JSON type still loads.
    round_trips(&json!([{"name": "text", "json-type": "string", "meta-type": "builtin"}]));
}

/// A built-in type listed twice loaded (the second listing was taken for
/// the model's own type again) and introspected once: every name an answer
/// lists twice is refused.
#[test]
fn element_listed_twice() {
    for name in ["str", "q_empty", "1"] {
        let answer = json!([
            {"name": "e", "meta-type": "event", "arg-type": "1"},
            {"name": "str", "json-type": "string", "meta-type": "builtin"},
            {"name": "1", "members": [{"name": "a", "type": "str"}], "meta-type": "object"},
            {"name": "q_empty", "members": [], "meta-type": "object"},
            if name == "str" {
                json!({"name": "str", "json-type": "string", "meta-type": "builtin"})
            } else {
                json!({"name": name, "members": [], "meta-type": "object"})
            }
        ]);
        let e = load_introspection(&answer).expect_err(name);
        assert_eq!(e.to_string(), format!("'{name}' is defined twice"));
    }
}

/// A command listed after a type loaded, and introspected before it:
/// an answer whose commands and events do not all come first is refused.
#[test]
fn command_after_a_type() {
    let answer = json!([
        {"name": "a", "meta-type": "command", "arg-type": "0", "ret-type": "0"},
        {"name": "0", "members": [], "meta-type": "object"},
        {"name": "b", "meta-type": "event", "arg-type": "0"}
    ]);
    let e = load_introspection(&answer).expect_err("refused");
    assert_eq!(
        e.to_string(),
        "'b' is listed after type '0' (commands and events come first)"
    );
}
