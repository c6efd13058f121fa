//! `qmpkit schema …` end to end, on the built binary.

use std::path::{Path, PathBuf};

fn cases() -> PathBuf {
    qmpkit_testkit::data::qemu_ref("qapi-schema-tests-10.0.2")
}

fn qmpkit(dir: &Path, args: &[&str]) -> (i32, String, String) {
    qmpkit_testkit::cmd::run_in(Path::new(env!("CARGO_BIN_EXE_qmpkit")), dir, args)
}

#[test]
fn dump_matches_qemu_harness_output() {
    let dir = cases();
    for case in ["qapi-schema-test", "doc-good", "include-simple"] {
        let want = std::fs::read_to_string(dir.join(format!("{case}.out"))).expect("read .out");
        let (code, out, err) = qmpkit(
            &dir,
            &[
                "schema",
                "dump",
                "--format",
                "qemu-test",
                &format!("{case}.json"),
            ],
        );
        assert_eq!((code, err.as_str()), (0, ""), "{case}");
        assert_eq!(out, want, "{case}");
    }
}

#[test]
fn dump_error_matches_qemu_harness_error() {
    let dir = cases();
    for case in ["redefined-command", "include-cycle", "union-bad-base"] {
        let want = std::fs::read_to_string(dir.join(format!("{case}.err"))).expect("read .err");
        let (code, out, err) = qmpkit(
            &dir,
            &[
                "schema",
                "dump",
                "--format",
                "qemu-test",
                &format!("{case}.json"),
            ],
        );
        assert_eq!((code, out.as_str()), (1, ""), "{case}");
        assert_eq!(err, want, "{case}");
    }
}

#[test]
fn check_reports_in_qemu_words() {
    let dir = cases();
    let (code, out, err) = qmpkit(&dir, &["schema", "check", "union-clash-member.json"]);
    assert_eq!(code, 1);
    assert_eq!(out, "");
    assert_eq!(
        err,
        "union-clash-member.json: In union 'TestUnion':\n\
         union-clash-member.json:11: member 'name' of type 'Branch1' collides with member 'name' of type 'Base'\n"
    );
    let (code, out, err) = qmpkit(&dir, &["schema", "check", "qapi-schema-test.json"]);
    assert_eq!((code, out.as_str(), err.as_str()), (0, "", ""));
    // Column for syntax errors.
    let (code, _, err) = qmpkit(&dir, &["schema", "check", "funny-char.json"]);
    assert_eq!(
        (code, err.as_str()),
        (1, "funny-char.json:2:36: stray ';'\n")
    );
}

#[test]
fn check_dialects_on_a_seed() {
    let seeds = qmpkit_testkit::data::path("seeds");
    let (code, _, err) = qmpkit(
        &seeds,
        &[
            "schema",
            "check",
            "--dialect",
            "legacy",
            "qemu-1.0-dev.json",
        ],
    );
    assert_eq!((code, err.as_str()), (0, ""));
    // The seed declares the legacy dialect; forcing the modern one fails.
    let (code, _, err) = qmpkit(
        &seeds,
        &[
            "schema",
            "check",
            "--dialect",
            "modern",
            "qemu-1.0-dev.json",
        ],
    );
    assert_eq!(code, 1);
    assert!(
        err.contains("--dialect legacy"),
        "modern error should point at the legacy dialect: {err}"
    );
}

#[test]
fn stats_text_and_json() {
    let seeds = qmpkit_testkit::data::path("seeds");
    let (code, out, err) = qmpkit(
        &seeds,
        &[
            "schema",
            "stats",
            "--dialect",
            "legacy",
            "--json",
            "qemu-2.12-dev/qapi-schema.json",
        ],
    );
    assert_eq!((code, err.as_str()), (0, ""));
    let v: serde_json::Value = serde_json::from_str(&out).expect("stats --json is JSON");
    assert_eq!(
        v,
        serde_json::json!({"commands": 156, "events": 37, "structs": 201, "unions": 22,
                           "alternates": 4, "enums": 79, "includes": 24, "files": 16})
    );
    let (code, out, _) = qmpkit(
        &seeds,
        &[
            "schema",
            "stats",
            "--dialect",
            "legacy",
            "qemu-1.0-dev.json",
        ],
    );
    assert_eq!(code, 0);
    assert_eq!(
        out,
        "commands   19\nevents     0\nstructs    19\nunions     0\nalternates 0\nenums      2\nincludes   0\nfiles      1\n"
    );
}

#[test]
fn usage_errors_exit_2() {
    let (code, _, err) = qmpkit(
        Path::new("."),
        &["schema", "dump", "--format", "nope", "x.json"],
    );
    assert_eq!(code, 2);
    assert!(err.contains("nope"));
    let (code, _, err) = qmpkit(Path::new("."), &["schema", "check", "/nonexistent/x.json"]);
    assert_eq!(code, 1);
    assert!(err.contains("x.json"), "{err}");
}

#[test]
fn introspect_equals_the_real_answer() {
    let base = qmpkit_testkit::data::path("qemu-ref");
    let answer = base.join("introspection/qemu-storage-daemon-10.0.2-query-qmp-schema.json");
    let answer = std::fs::read_to_string(&answer).expect("test data");
    let (code, out, err) = qmpkit(
        &base,
        &[
            "schema",
            "introspect",
            "--cfg-file",
            "introspection/cfg-qemu-storage-daemon-10.0.2.txt",
            "schema-10.0.2/storage-daemon/qapi/qapi-schema.json",
        ],
    );
    assert_eq!((code, err.as_str()), (0, ""));
    let got: serde_json::Value = serde_json::from_str(&out).expect("introspect prints JSON");
    let want: serde_json::Value = serde_json::from_str(&answer).expect("answer is JSON");
    assert_eq!(got, want["return"]);

    // --unmask gives real names; --cfg adds symbols one by one.
    let (code, out, _) = qmpkit(
        &base,
        &[
            "schema",
            "introspect",
            "--unmask",
            "--cfg",
            "CONFIG_POSIX",
            "schema-10.0.2/storage-daemon/qapi/qapi-schema.json",
        ],
    );
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    let names: Vec<&str> = v
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|e| e["name"].as_str())
        .collect();
    assert!(names.contains(&"BlockdevOptions") && names.contains(&"q_empty"));
}

/// A server's `query-qmp-schema` answer is a schema like any other: introspecting it
/// gives the answer back, byte for byte what introspecting the matching source gives.
#[test]
fn introspect_and_stats_take_an_answer() {
    let answer = qmpkit_testkit::data::qemu_ref(
        "introspection/qemu-storage-daemon-10.0.2-query-qmp-schema.json",
    );
    let source =
        qmpkit_testkit::data::qemu_ref("schema-10.0.2/storage-daemon/qapi/qapi-schema.json");
    let cfg = qmpkit_testkit::data::qemu_ref("introspection/cfg-qemu-storage-daemon-10.0.2.txt");
    let here = Path::new(".");
    let (code, from_answer, err) =
        qmpkit(here, &["schema", "introspect", answer.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let (code, from_source, err) = qmpkit(
        here,
        &[
            "schema",
            "introspect",
            "--cfg-file",
            cfg.to_str().unwrap(),
            source.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(from_answer, from_source);
    let file: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&answer).unwrap()).unwrap();
    let printed: serde_json::Value = serde_json::from_str(&from_answer).unwrap();
    assert_eq!(printed, file["return"]);
    // --unmask changes nothing: the answer's names are repeated as given.
    let (_, unmasked, _) = qmpkit(
        here,
        &["schema", "introspect", "--unmask", answer.to_str().unwrap()],
    );
    assert_eq!(unmasked, from_answer);

    // Everything the server listed, none of the loader's hidden helpers.
    let (code, out, err) = qmpkit(here, &["schema", "stats", answer.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        "commands   76\nevents     13\nstructs    284\nunions     22\nalternates 5\nenums      68\nincludes   0\nfiles      0\n"
    );
    let (code, out, _) = qmpkit(
        here,
        &["schema", "stats", "--json", answer.to_str().unwrap()],
    );
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["commands"], 76);
    assert_eq!(v["events"], 13);
}

#[test]
fn codegen_writes_rust_bindings() {
    let seeds = qmpkit_testkit::data::seeds("");
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("codegen-cli-seed-1.0.rs");
    let out_s = out.to_string_lossy().into_owned();
    // A legacy seed (the dialect is found out), to a file.
    let (code, _, err) = qmpkit(
        &seeds,
        &[
            "schema",
            "codegen",
            "--lang",
            "rust",
            "qemu-1.0-dev.json",
            "-o",
            &out_s,
        ],
    );
    assert_eq!(code, 0, "{err}");
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(text.contains("impl ::qmpkit_qapi::Command for QueryVersion {"));
    assert!(text.contains("const NAME: &'static str = \"query-version\";"));
    assert!(text.contains("pub trait Commands<C: Send + 'static = ()>"));
    // A build symbol decides whether a conditional member is there.
    let cases = qmpkit_testkit::data::qemu_ref("qapi-schema-tests-10.0.2");
    let (code, plain, err) = qmpkit(
        &cases,
        &["schema", "codegen", "--no-server", "qapi-schema-test.json"],
    );
    assert_eq!(code, 0, "{err}");
    let (_, with, _) = qmpkit(
        &cases,
        &[
            "schema",
            "codegen",
            "--cfg",
            "TEST_IF_STRUCT",
            "qapi-schema-test.json",
        ],
    );
    assert!(!plain.contains("pub struct TestIfStruct {"));
    assert!(with.contains("pub struct TestIfStruct {"));
    assert!(!plain.contains("pub trait Commands"));
    // An unreadable schema is one line on stderr and exit 1.
    let (code, _, err) = qmpkit(&seeds, &["schema", "codegen", "no-such.json"]);
    assert_eq!(code, 1);
    assert!(err.contains("no-such.json"), "{err}");
}
