//! `qmpkit schema diff` end to end, on the built binary. The expected
//! output is the schema crate's golden files (`QMPKIT_BLESS=1 cargo test
//! -p qmpkit-schema --test diff` rewrites them): the command prints exactly
//! what the library produces.

use std::path::Path;

fn golden(name: &str) -> String {
    let p = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../schema/tests/golden/diff"
    ))
    .join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn qmpkit(dir: &Path, args: &[&str]) -> (i32, String, String) {
    qmpkit_testkit::cmd::run_in(Path::new(env!("CARGO_BIN_EXE_qmpkit")), dir, args)
}

/// `qmpkit schema diff ARGS` run in `dir`.
fn schema_diff(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let mut all = vec!["schema", "diff"];
    all.extend_from_slice(args);
    qmpkit(dir, &all)
}

/// `qmpkit schema diff ARGS` in tests/data exits 1 (changes), prints nothing on stderr and
/// exactly the golden file `name` on stdout.
fn diff_matches_golden(args: &[&str], name: &str) {
    let dir = qmpkit_testkit::data::dir();
    let (code, out, err) = schema_diff(&dir, args);
    assert_eq!((code, err.as_str()), (1, ""));
    assert_eq!(out, golden(name));
}

#[test]
fn text_diff_of_seeds_matches_golden() {
    // No --dialect: the seeds fail under the modern dialect and are read
    // with the legacy one.
    diff_matches_golden(
        &["seeds/qemu-1.0-dev.json", "seeds/qemu-1.1-dev.json"],
        "seeds-1.0-to-1.1.txt",
    );
}

#[test]
fn json_diff_of_seeds_matches_golden() {
    diff_matches_golden(
        &[
            "--format",
            "json",
            "--dialect",
            "legacy",
            "seeds/qemu-1.1-dev.json",
            "seeds/qemu-1.3-dev.json",
        ],
        "seeds-1.1-to-1.3.json",
    );
}

#[test]
fn introspection_answers_match_golden() {
    let dir = qmpkit_testkit::data::dir();
    let (code, out, _) = schema_diff(
        &dir,
        &[
            "qemu-ref/introspection/qemu-storage-daemon-7.2.22-query-qmp-schema.json",
            "qemu-ref/introspection/qemu-storage-daemon-10.0.2-query-qmp-schema.json",
        ],
    );
    assert_eq!(code, 1);
    assert_eq!(out, golden("storage-daemon-answers-7.2.22-to-10.0.2.txt"));
}

#[test]
fn source_against_its_own_introspection_is_unchanged() {
    let dir = qmpkit_testkit::data::dir();
    let (code, answer, err) = qmpkit(
        &dir,
        &[
            "schema",
            "introspect",
            "--dialect",
            "legacy",
            "seeds/qemu-2.12-dev/qapi-schema.json",
        ],
    );
    assert_eq!((code, err.as_str()), (0, ""));
    let tmp = std::env::temp_dir().join(format!("qmpkit-diff-{}.json", std::process::id()));
    std::fs::write(&tmp, answer).expect("write answer");
    let tmp_s = tmp.to_string_lossy().into_owned();
    let (code, out, err) = schema_diff(&dir, &["seeds/qemu-2.12-dev/qapi-schema.json", &tmp_s]);
    let _ = std::fs::remove_file(&tmp);
    assert_eq!((code, err.as_str()), (0, ""));
    assert!(out.ends_with("\nno changes\n"), "{out}");
}

#[test]
fn errors_exit_2() {
    let dir = qmpkit_testkit::data::dir();
    let (code, out, err) = schema_diff(&dir, &["seeds/qemu-1.0-dev.json", "no-such-file.json"]);
    assert_eq!((code, out.as_str()), (2, ""));
    assert!(err.contains("no-such-file.json"), "{err}");
    // A bad answer: an array that is not a query-qmp-schema answer.
    let tmp = std::env::temp_dir().join(format!("qmpkit-diff-bad-{}.json", std::process::id()));
    std::fs::write(&tmp, "[{\"name\": \"x\", \"meta-type\": \"nothing\"}]").expect("write");
    let tmp_s = tmp.to_string_lossy().into_owned();
    let (code, out, err) = schema_diff(&dir, &[&tmp_s, "seeds/qemu-1.0-dev.json"]);
    let _ = std::fs::remove_file(&tmp);
    assert_eq!((code, out.as_str()), (2, ""));
    assert!(err.contains("element 0 ('x')"), "{err}");
    // Bad usage is 2 as well.
    let (code, _, _) = schema_diff(&dir, &["--format", "xml", "a", "b"]);
    assert_eq!(code, 2);
}
