//! Introspection equals what real QEMU binaries answered to
//! `query-qmp-schema`, element for element and in the same order, for the
//! matching schema sources and build symbols.

use qmpkit_schema::introspect::{self, Options, SchemaInfo};
use qmpkit_schema::Dialect;
use serde_json::Value;

fn compare(schema: &str, binary: &str) {
    let base = qmpkit_testkit::data::path("qemu-ref");
    let src = base.join(schema);
    let answer = base.join(format!("introspection/{binary}-query-qmp-schema.json"));
    let cfg = base.join(format!("introspection/cfg-{binary}.txt"));
    let answer = std::fs::read_to_string(&answer).expect("answer");
    let cfg = std::fs::read_to_string(&cfg).expect("cfg");
    let s = qmpkit_schema::load(&src, Dialect::Modern).unwrap_or_else(|e| panic!("{schema}: {e}"));
    let opts = Options {
        enabled: introspect::parse_cfg_file(&cfg).into_iter().collect(),
        unmask: false,
    };
    let got = introspect::introspect(&s, &opts);
    let want: Value = serde_json::from_str(&answer).expect("answer is JSON");
    let want = want["return"].as_array().expect("a return array").clone();
    let got_json: Vec<Value> = got
        .iter()
        .map(|x| serde_json::to_value(x).expect("serialise"))
        .collect();
    for (i, (g, w)) in got_json.iter().zip(want.iter()).enumerate() {
        assert_eq!(g, w, "{binary}: element {i} differs");
    }
    assert_eq!(got_json.len(), want.len(), "{binary}: number of elements");
    // The typed values read back from QEMU's answer equal ours.
    let typed: Vec<SchemaInfo> =
        serde_json::from_value(Value::Array(want)).expect("answer parses as SchemaInfo");
    assert_eq!(typed, got);
}

#[test]
fn qemu_storage_daemon_10_0_2() {
    compare(
        "schema-10.0.2/storage-daemon/qapi/qapi-schema.json",
        "qemu-storage-daemon-10.0.2",
    );
}

#[test]
fn qemu_storage_daemon_7_2_22() {
    compare(
        "schema-7.2.22/storage-daemon/qapi/qapi-schema.json",
        "qemu-storage-daemon-7.2.22",
    );
}

#[test]
fn qemu_system_x86_64_7_2_22() {
    compare(
        "schema-7.2.22/qapi/qapi-schema.json",
        "qemu-system-x86_64-7.2.22",
    );
}

#[test]
fn unmasked_names_and_no_symbols() {
    let src = qmpkit_testkit::data::qemu_ref("schema-10.0.2/storage-daemon/qapi/qapi-schema.json");
    let s = qmpkit_schema::load(&src, Dialect::Modern).expect("loads");
    let infos = introspect::introspect(
        &s,
        &Options {
            enabled: Default::default(),
            unmask: true,
        },
    );
    let names: Vec<&str> = infos.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names[0], "JOB_STATUS_CHANGE");
    assert!(names.contains(&"q_empty"));
    assert!(names.contains(&"BlockdevOptions"));
    assert!(names.contains(&"[int]"));
    let masked = introspect::introspect(&s, &Options::default());
    assert_eq!(masked.len(), infos.len());
    assert!(masked.iter().all(|i| !i.name.starts_with("q_")));
}
