//! Every schema command reads a legacy seed without `--dialect legacy`, as
//! `schema diff` does; `--dialect` still forces the dialect.

use std::path::Path;

fn qmpkit(dir: &Path, args: &[&str]) -> (i32, String, String) {
    qmpkit_testkit::cmd::run_in(Path::new(env!("CARGO_BIN_EXE_qmpkit")), dir, args)
}

#[test]
fn legacy_seeds_need_no_dialect_flag() {
    let seeds = qmpkit_testkit::data::seeds("");
    for seed in [
        "qemu-1.0-dev.json",
        "qemu-1.3-dev.json",
        "qemu-2.12-dev/qapi-schema.json",
    ] {
        for cmd in [
            &["schema", "check"][..],
            &["schema", "stats"],
            &["schema", "stats", "--json"],
            &["schema", "introspect"],
        ] {
            let detected = qmpkit(&seeds, &[cmd, &[seed]].concat());
            let forced = qmpkit(&seeds, &[cmd, &["--dialect", "legacy", seed]].concat());
            assert_eq!(detected.0, 0, "{cmd:?} {seed}: {}", detected.2);
            assert_eq!(detected, forced, "{cmd:?} {seed}");
        }
        // --dialect modern still forces QEMU 10.0's rules.
        let (code, _, err) = qmpkit(&seeds, &["schema", "check", "--dialect", "modern", seed]);
        assert_eq!(code, 1, "{seed}");
        assert!(err.contains("--dialect legacy"), "{seed}: {err}");
    }
    // dump, in the schema's directory as QEMU's harness runs.
    let dir = seeds.join("qemu-2.12-dev");
    let detected = qmpkit(&dir, &["schema", "dump", "qapi-schema.json"]);
    let forced = qmpkit(
        &dir,
        &["schema", "dump", "--dialect", "legacy", "qapi-schema.json"],
    );
    assert_eq!(detected.0, 0, "{}", detected.2);
    assert_eq!(detected, forced);
}

#[test]
fn qemu_test_cases_are_read_as_modern() {
    // None of QEMU 10.0's schema test cases declares the legacy dialect, so
    // their expected errors stay QEMU 10.0's.
    let dir = qmpkit_testkit::data::qemu_ref("qapi-schema-tests-10.0.2");
    let cases = std::fs::read_to_string(dir.join("CASES")).expect("CASES");
    let mut n = 0;
    for case in cases.split_whitespace() {
        let f = dir
            .join(case.trim_end_matches(".json"))
            .with_extension("json");
        if let Ok(text) = std::fs::read_to_string(&f) {
            assert_eq!(
                qmpkit_schema::Dialect::declared_by(&text),
                qmpkit_schema::Dialect::Modern,
                "{case}"
            );
            n += 1;
        }
    }
    assert!(n > 100, "{n} cases");
    assert_eq!(
        qmpkit_schema::Dialect::declared_by("{ 'type': 'Foo', 'data': {} }\n"),
        qmpkit_schema::Dialect::Legacy
    );
    assert_eq!(
        qmpkit_schema::Dialect::declared_by("{ 'struct': 'Foo',\n  'data': { 'type': 'str' } }\n"),
        qmpkit_schema::Dialect::Modern
    );
}
