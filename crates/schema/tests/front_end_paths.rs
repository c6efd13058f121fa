//! The front end's shortcuts give what its plain path gives, on QEMU's
//! whole schemas and on every case of QEMU's schema test suite:
//!
//! - a schema's files parsed on two threads and put in order give what
//!   reading them one after the other gives: the same expressions,
//!   positions (include chains too), doc comments in the same order,
//!   pragmas and errors;
//! - checking without keeping doc comment text (`load_checking`, what
//!   `qmpkit schema check` uses) gives the verdict loading gives: the same
//!   errors in the same words, the same doc comments with empty texts.

use qmpkit_schema::ast::{Doc, DocSection};
use qmpkit_schema::parser::{parse_files, RawSchema, TextArena};
use qmpkit_schema::source::{ReadError, SourceProvider};
use qmpkit_schema::{load, load_checking, Dialect, DirProvider};
use std::fmt::Write;
use std::path::{Path, PathBuf};

/// QEMU's schema test suite: its directory and every `.json` file in it
/// (cases, and files cases include).
fn case_files() -> (PathBuf, Vec<String>) {
    let dir = qmpkit_testkit::data::path("qemu-ref/qapi-schema-tests-10.0.2");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .expect("test data")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".json"))
        .collect();
    names.sort();
    assert!(names.len() > 100, "only {} cases", names.len());
    (dir, names)
}

/// A provider that cannot be shared between threads: files are read one
/// after the other.
struct OneThread(DirProvider);

impl SourceProvider for OneThread {
    fn read(&self, path: &str) -> Result<String, ReadError> {
        self.0.read(path)
    }

    fn canonical(&self, path: &str) -> String {
        self.0.canonical(path)
    }
}

/// A doc comment's sections: body, descriptions, then the others.
fn sections(d: &Doc) -> impl Iterator<Item = &DocSection> {
    std::iter::once(&d.body)
        .chain(&d.args)
        .chain(&d.features)
        .chain(&d.sections)
}

fn section(out: &mut String, s: &DocSection) {
    let _ = writeln!(out, "  {} {:?} {:?} at {}", s.kind, s.name, s.text, s.info);
}

/// Everything parsing produced, positions as QEMU prints them.
fn render(raw: &RawSchema<'_>) -> String {
    let mut out = String::new();
    for e in &raw.exprs {
        let _ = writeln!(
            out,
            "{} {:?} doc {:?} {:?}",
            e.info, e.value, e.doc, e.include
        );
    }
    for d in &raw.docs {
        let _ = writeln!(out, "doc {:?} at {}", d.symbol, d.info);
        for s in sections(d) {
            section(&mut out, s);
        }
    }
    let _ = writeln!(
        out,
        "{:?} {:?} {:?} {} {} {}",
        raw.pragma,
        raw.legacy_returns_whitelist,
        raw.legacy_name_case_whitelist,
        raw.lenient_docs,
        raw.old_style_docs,
        raw.old_style_blocks
    );
    out
}

fn both(dir: &Path, file: &str, dialect: Dialect, lenient: bool) -> (String, String) {
    let run = |provider: &dyn SourceProvider| {
        let arena = TextArena::new();
        match parse_files(file, dialect, provider, lenient, true, &arena) {
            Ok(raw) => render(&raw),
            Err(e) => format!("error: {e}"),
        }
    };
    (
        run(&DirProvider::new(dir)),
        run(&OneThread(DirProvider::new(dir))),
    )
}

#[test]
fn whole_schemas_parse_alike_on_two_threads() {
    // (schema, doc syntax of older QEMU, parses without error)
    for (schema, lenient, clean) in [
        ("schema-10.0.2/qapi/qapi-schema.json", false, true),
        ("schema-10.0.2/qapi/qapi-schema.json", true, true),
        (
            "schema-10.0.2/storage-daemon/qapi/qapi-schema.json",
            false,
            true,
        ),
        ("schema-7.2.22/qapi/qapi-schema.json", true, true),
        ("schema-7.2.22/qapi/qapi-schema.json", false, false),
    ] {
        let dir = qmpkit_testkit::data::path("qemu-ref");
        let (two, one) = both(&dir, schema, Dialect::Modern, lenient);
        assert_eq!(two, one, "{schema}, lenient {lenient}");
        assert_eq!(!two.starts_with("error: "), clean, "{schema}: {two:.300}");
        assert!(!clean || two.lines().count() > 1000, "{schema}: {two:.300}");
    }
}

#[test]
fn test_cases_parse_alike_on_two_threads() {
    let (dir, names) = case_files();
    let mut errors = 0;
    for name in &names {
        for dialect in [Dialect::Modern, Dialect::Legacy] {
            let lenient = dialect == Dialect::Legacy;
            let (two, one) = both(&dir, name, dialect, lenient);
            errors += usize::from(one.starts_with("error: "));
            assert_eq!(two, one, "{name} ({dialect:?})");
        }
    }
    assert!(errors > 50, "only {errors} cases with errors");
}

/// A doc comment's shape: everything but its texts.
fn shape(d: &Doc) -> String {
    let mut out = format!("{:?} at {}", d.symbol, d.info);
    for s in sections(d) {
        out.push_str(&format!("; {} {:?} at {}", s.kind, s.name, s.info));
    }
    out
}

fn same_verdict(path: &Path, dialect: Dialect) -> bool {
    let (full, checked) = (load(path, dialect), load_checking(path, dialect));
    match (full, checked) {
        (Ok(full), Ok(checked)) => {
            assert_eq!(full.docs.len(), checked.docs.len(), "{}", path.display());
            for (a, b) in full.docs.iter().zip(&checked.docs) {
                assert_eq!(shape(a), shape(b), "{}", path.display());
                let texts = sections(b);
                assert!(texts.into_iter().all(|s| s.text.is_empty()));
            }
            assert_eq!(full.entities, checked.entities, "{}", path.display());
            true
        }
        (Err(full), Err(checked)) => {
            assert_eq!(full.to_string(), checked.to_string(), "{}", path.display());
            false
        }
        (full, checked) => panic!(
            "{}: loading {} but checking {}",
            path.display(),
            if full.is_ok() { "passes" } else { "fails" },
            if checked.is_ok() { "passes" } else { "fails" },
        ),
    }
}

#[test]
fn test_cases_check_alike_without_doc_text() {
    let (dir, names) = case_files();
    let (mut passed, mut failed) = (0, 0);
    for name in &names {
        for dialect in [Dialect::Modern, Dialect::Legacy] {
            if same_verdict(&dir.join(name), dialect) {
                passed += 1;
            } else {
                failed += 1;
            }
        }
    }
    // Doc comment errors among them: every one of QEMU's doc-bad-* cases.
    assert!(
        passed >= 40 && failed >= 200,
        "{passed} passed, {failed} failed"
    );
}

#[test]
fn whole_schemas_check_alike_without_doc_text() {
    for schema in [
        "schema-10.0.2/qapi/qapi-schema.json",
        "schema-10.0.2/storage-daemon/qapi/qapi-schema.json",
    ] {
        let path = qmpkit_testkit::data::path(&format!("qemu-ref/{schema}"));
        assert!(same_verdict(&path, Dialect::Modern), "{schema}");
    }
}

/// A definition in a doc comment block, with `extra` in its doc comment and
/// `keys` added to its expression.
fn definition(name: &str, extra: &str, keys: &str) -> String {
    format!("\n##\n# @{name}:\n#\n{extra}# Since: 1.0\n##\n{{ 'struct': '{name}', 'data': {{ 'a': 'int' }}{keys} }}\n")
}

/// QEMU 10.0.2's system schema with errors added at the end of some of its
/// files: errors of the model (found while defining) and of single
/// expressions (found while checking them), early and late in the schema's
/// order, alone and together. Checking, which defines expressions while
/// later ones are still being checked, reports what loading reports: an
/// expression's error wins over any error of the model.
#[test]
fn whole_schema_errors_check_alike_without_doc_text() {
    let src = qmpkit_testkit::data::path("qemu-ref/schema-10.0.2/qapi");
    // Defining a name twice is an error of the model; a `Returns` section
    // outside a command and an unknown key are errors of one expression.
    let redefined_early = definition("QapiErrorClass", "", "");
    let redefined_late = definition("YankInstanceChardev", "", "");
    let returns = definition("QmpkitA", "# Returns: nothing\n#\n", "");
    let bogus = definition("QmpkitB", "", ", 'bogus': true");
    let variants: [&[(&str, &str)]; 8] = [
        &[("common.json", &redefined_early)],
        &[("uefi.json", &redefined_late)],
        &[("uefi.json", &bogus)],
        &[("common.json", &redefined_early), ("uefi.json", &bogus)],
        &[("common.json", &bogus), ("uefi.json", &redefined_late)],
        &[("block-core.json", &redefined_late), ("cxl.json", &returns)],
        &[("block-core.json", &bogus), ("cxl.json", &returns)],
        &[("common.json", &returns), ("cxl.json", &redefined_late)],
    ];
    let dir = std::env::temp_dir().join(format!("qmpkit-front-end-paths-{}", std::process::id()));
    for (i, added) in variants.iter().enumerate() {
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temporary directory");
        for e in std::fs::read_dir(&src).expect("test data").flatten() {
            let name = e.file_name().into_string().expect("file name");
            let mut text = std::fs::read_to_string(e.path()).expect("schema file");
            for (_, t) in added.iter().filter(|(f, _)| *f == name) {
                text.push_str(t);
            }
            std::fs::write(dir.join(&name), text).expect("schema copy");
        }
        let path = dir.join("qapi-schema.json");
        assert!(!same_verdict(&path, Dialect::Modern), "variant {i} passes");
        let e = load_checking(&path, Dialect::Modern)
            .unwrap_err()
            .to_string();
        // The first expression error in the schema's order, else the
        // model's.
        let first = |needle: &str| added.iter().position(|(_, t)| t.contains(needle));
        let expected = match (first("bogus"), first("Returns")) {
            (Some(b), Some(r)) if r < b => "'Returns' section is only valid for commands",
            (Some(_), _) => "has unknown key 'bogus'",
            (None, Some(_)) => "'Returns' section is only valid for commands",
            (None, None) => "is already defined",
        };
        assert!(e.contains(expected), "variant {i}: {e}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
