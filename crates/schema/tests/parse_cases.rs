//! The front end (parser, doc comments, expression checks) against every
//! test case of QEMU 10.0.2's schema suite found in `tests/data`, not only
//! those in `CASES`: when the front end rejects a case, its message must be
//! the case's `.err` exactly; a case with an empty `.err` must pass the
//! front end. (Cases that fail later, in the model, pass the front end
//! and are checked end to end by `cases.rs`.)

use qmpkit_schema::{parse_schema, Dialect, DirProvider};
use std::path::PathBuf;

fn cases_dir() -> PathBuf {
    qmpkit_testkit::data::path("qemu-ref/qapi-schema-tests-10.0.2")
}

/// Files included by other cases but not present in the sample.
fn missing_includes(json: &str) -> bool {
    json.contains("'include'")
}

#[test]
fn front_end_errors_match_qemu() {
    let dir = cases_dir();
    let rd = std::fs::read_dir(&dir).expect("test data");
    let mut names: Vec<String> = rd
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .filter_map(|n| n.strip_suffix(".json").map(str::to_string))
        .collect();
    names.sort();
    let provider = DirProvider::new(&dir);
    let mut checked = 0;
    let mut failures = Vec::new();
    for name in &names {
        let Ok(want) = std::fs::read_to_string(dir.join(format!("{name}.err"))) else {
            continue; // an included file, not a case
        };
        let json = std::fs::read_to_string(dir.join(format!("{name}.json"))).unwrap_or_default();
        let got = parse_schema(&format!("{name}.json"), Dialect::Modern, &provider);
        match got {
            Err(e) => {
                let text = format!("{e}\n");
                if text != want {
                    if text.contains("can't read include file") && missing_includes(&json) {
                        continue;
                    }
                    failures.push(format!("{name}: got\n{text}want\n{want}"));
                }
            }
            Ok(_) => {
                if want.is_empty() {
                    // passes the front end as it should
                }
            }
        }
        checked += 1;
    }
    assert!(checked > 100, "only {checked} cases found");
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Cases whose error QEMU raises in the front end (lexer, parser, doc
/// comments, expression checks) must be rejected by ours, not later.
#[test]
fn front_end_stage_errors_are_front_end_errors() {
    let dir = cases_dir();
    let provider = DirProvider::new(&dir);
    let front_end_cases = [
        "bad-type-bool",
        "bad-type-int",
        "double-type",
        "duplicate-key",
        "enum-bad-member",
        "enum-dict-no-name",
        "enum-int-member",
        "enum-member-case",
        "enum-missing-data",
        "enum-wrong-data",
        "funny-char",
        "funny-word",
        "ident-with-escape",
        "include-cycle",
        "include-no-file",
        "include-self-cycle",
        "leading-comma-list",
        "leading-comma-object",
        "missing-array-rsqb",
        "missing-comma-list",
        "missing-comma-object",
        "missing-object-member-element",
        "non-objects",
        "pragma-extra-junk",
        "pragma-non-dict",
        "pragma-unknown",
        "pragma-value-not-bool",
        "pragma-value-not-list-of-str",
        "trailing-comma-list",
        "trailing-comma-object",
        "unclosed-list",
        "unclosed-object",
        "unknown-escape",
        "unknown-expr-key",
        "doc-bad-indent",
        "doc-bad-section",
        "doc-before-include",
        "doc-duplicate-features",
        "doc-duplicated-arg",
        "doc-duplicated-return",
        "doc-duplicated-since",
        "doc-empty-arg",
        "doc-empty-features",
        "doc-empty-symbol",
        "doc-interleaved-section",
        "doc-invalid-end",
        "doc-invalid-end2",
        "doc-invalid-return2",
        "doc-invalid-section",
        "doc-invalid-start",
        "doc-missing",
        "doc-missing-colon",
        "doc-missing-expr",
        "doc-missing-space",
        "doc-no-symbol",
        "doc-non-first-section",
        "bad-if-empty",
        "bad-if-empty-list",
        "bad-if-key",
        "bad-if-keys",
        "features-if-invalid",
        "features-missing-name",
        "struct-member-if-invalid",
        "struct-member-invalid",
        "struct-member-invalid-dict",
        "struct-data-typename",
        "nested-struct-data",
        "event-nest-struct",
        "event-case",
        "event-boxed-empty",
        "type-case",
        "args-invalid",
        "args-bad-boxed",
        "args-array-empty",
        "args-member-array-bad",
        "args-member-case",
        "bad-data",
        "oob-test",
        "reserved-command-q",
        "reserved-enum-q",
        "reserved-member-has",
        "reserved-member-q",
        "reserved-member-u",
        "returns-array-bad",
        "returns-dict",
        "union-array-branch",
        "union-bad-discriminator",
        "union-base-no-discriminator",
        "union-branch-if-invalid",
        "union-branch-invalid-dict",
        "union-inline-invalid-dict",
        "union-invalid-data",
        "union-no-base",
        "alternate-base",
        "alternate-data-invalid",
        "alternate-empty",
        "enum-if-invalid",
    ];
    let mut failures = Vec::new();
    for name in front_end_cases {
        let Ok(want) = std::fs::read_to_string(dir.join(format!("{name}.err"))) else {
            continue;
        };
        match parse_schema(&format!("{name}.json"), Dialect::Modern, &provider) {
            Err(e) if format!("{e}\n") == want => {}
            Err(e) => failures.push(format!("{name}: got\n{e}\nwant\n{want}")),
            Ok(_) => failures.push(format!("{name}: accepted, want\n{want}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// doc-good's doc comments, in the harness's format.
#[test]
fn doc_good_doc_comments() {
    let dir = cases_dir();
    let out = std::fs::read_to_string(dir.join("doc-good.out")).expect("test data");
    let p = match parse_schema("doc-good.json", Dialect::Modern, &DirProvider::new(&dir)) {
        Ok(p) => p,
        Err(e) => panic!("doc-good: {e}"),
    };
    // The harness prints docs after the model; stub sections for
    // undocumented members are added by the model, so compare what the
    // front end owns: symbol, body, documented args/features, sections.
    let mut got = String::new();
    for d in &p.docs {
        match &d.symbol {
            Some(s) => got.push_str(&format!("doc symbol={s}\n")),
            None => got.push_str("doc freeform\n"),
        }
        got.push_str(&format!("    body=\n{}\n", d.body.text));
        for a in &d.args {
            got.push_str(&format!(
                "    arg={}\n{}\n",
                a.name.as_deref().unwrap_or(""),
                a.text
            ));
        }
        for f in &d.features {
            got.push_str(&format!(
                "    feature={}\n{}\n",
                f.name.as_deref().unwrap_or(""),
                f.text
            ));
        }
        for s in &d.sections {
            got.push_str(&format!("    section={}\n{}\n", s.kind, s.text));
        }
    }
    let want_docs = &out[out.find("doc freeform").unwrap_or(0)..];
    // Remove the model's stubs (undocumented members: empty arg lines
    // for 'two', 'var1', 'b', 'arg3') from the expectation.
    let stubs = [
        "    arg=two\n\n",
        "    arg=var1\n\n",
        "    arg=b\n\n",
        "    arg=arg3\n\n",
    ];
    let mut want = want_docs.to_string();
    for s in stubs {
        want = want.replacen(s, "", 1);
    }
    assert_eq!(got, want);
}
