//! Fuzz the model built from a server's `query-qmp-schema` answer: any
//! bytes that are JSON shaped like an answer either load or give an error,
//! never a panic; what loads introspects without a panic, compares with
//! itself as unchanged, and introspects back to the answer it was loaded
//! from (up to equivalent spellings, see `normal`); that introspection
//! loads again to the same model (masked or not).

#![no_main]

use libfuzzer_sys::fuzz_target;
use qmpkit_schema::diff::diff;
use qmpkit_schema::introspect::{introspect, to_json_text, Options, SchemaInfo, SchemaInfoMeta};
use qmpkit_schema::model::from_introspection::{looks_like_introspection, parse_answer};
use qmpkit_schema::{load_introspection, Schema};

fn unmasked() -> Options {
    Options {
        unmask: true,
        ..Default::default()
    }
}

fn no_empty(f: &mut Option<Vec<String>>) {
    if f.as_ref().is_some_and(|v| v.is_empty()) {
        *f = None;
    }
}

/// One spelling for what an answer may say in several ways: no features
/// and an empty feature list, `allow-oob: false` and no `allow-oob`. An
/// enum's `values` (what servers before QEMU 6.0 gave instead of
/// `members`) are not kept where `members` are given: they are left out.
fn normal(infos: &[SchemaInfo]) -> Vec<SchemaInfo> {
    let mut out = infos.to_vec();
    for i in &mut out {
        no_empty(&mut i.features);
        match &mut i.meta {
            SchemaInfoMeta::Enum { members, values } => {
                *values = None;
                members.iter_mut().for_each(|m| no_empty(&mut m.features));
            }
            SchemaInfoMeta::Object { members, .. } => {
                members.iter_mut().for_each(|m| no_empty(&mut m.features));
            }
            SchemaInfoMeta::Command { allow_oob, .. } => {
                if *allow_oob == Some(false) {
                    *allow_oob = None;
                }
            }
            _ => {}
        }
    }
    out
}

/// Load the text of an introspection that must load.
fn reload(text: &str, what: &str) -> Schema {
    let Some(v) = looks_like_introspection(text) else {
        panic!("{what}: not recognised as an answer: {text}");
    };
    match load_introspection(&v) {
        Ok(s) => s,
        Err(e) => panic!("{what} does not load: {e}\n{text}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Some(v) = looks_like_introspection(text) else {
        return;
    };
    let s = match load_introspection(&v) {
        Ok(s) => s,
        Err(e) => {
            let _ = e.full();
            return;
        }
    };
    let d = diff(&s, &s);
    assert!(
        d.is_empty(),
        "a schema differs from itself: {}",
        d.to_text("a", "a")
    );

    // What loaded introspects back to the answer, element for element
    // (up to spellings that say the same thing).
    let again = introspect(&s, &unmasked());
    if let Ok(answer) = parse_answer(&v) {
        let (got, want) = (normal(&again), normal(&answer));
        assert_eq!(got.len(), want.len(), "number of elements");
        for (i, (a, b)) in got.iter().zip(want.iter()).enumerate() {
            assert_eq!(a, b, "element {i}");
        }
    }
    let again_text = match to_json_text(&again) {
        Ok(t) => t,
        Err(e) => panic!("introspection does not print: {e}"),
    };
    let s2 = reload(&again_text, "own introspection");
    let twice = introspect(&s2, &unmasked());
    assert!(
        twice == again,
        "the introspection of the reloaded answer changed"
    );
    let d = diff(&s, &s2);
    assert!(
        d.is_empty(),
        "reloading changed the schema: {}",
        d.to_text("a", "b")
    );

    // The masked introspection (numbers for type names) loads too; type
    // names differ, what they are does not.
    let masked = introspect(&s, &Options::default());
    if let Ok(masked_text) = to_json_text(&masked) {
        let s3 = reload(&masked_text, "masked introspection");
        let d = diff(&s, &s3);
        let _ = d.to_text("a", "masked");
        let _ = d.to_json("a", "masked");
        let _ = d.summary_line();
    }
});
