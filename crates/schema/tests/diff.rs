//! `diff`: verdicts on small schemas, and golden files for the seeds and
//! QEMU's own schemas. `QMPKIT_BLESS=1 cargo test -p qmpkit-schema --test
//! diff` rewrites the golden files under `tests/golden/diff/`.

use qmpkit_schema::diff::{diff, ChangeKind, Impact, RootKind, SchemaDiff};
use qmpkit_schema::introspect::{self, Options};
use qmpkit_schema::{load_any, load_from, load_introspection, Dialect, MemoryProvider, Schema};
use std::path::{Path, PathBuf};

fn schema(text: &str) -> Schema {
    let mut files = MemoryProvider::new();
    files.add("s.json", text);
    load_from("s.json", Dialect::Modern, &files).unwrap_or_else(|e| panic!("{e}"))
}

/// The same schema, as a server's masked introspection answer.
fn as_answer(s: &Schema) -> Schema {
    let v = serde_json::to_value(introspect::introspect(s, &Options::default())).expect("json");
    load_introspection(&v).expect("loads")
}

/// `(kind, name path: text, client, server)` of each change.
fn lines(d: &SchemaDiff) -> Vec<(String, Impact, Impact)> {
    d.changes
        .iter()
        .map(|c| (c.describe(), c.client, c.server))
        .collect()
}

use Impact::{Breaking as B, Compatible as C};

const BASE: &str = r#"
{ 'enum': 'Mode', 'data': ['a', 'b'] }
{ 'struct': 'Info', 'data': { 'name': 'str', '*size': 'int', 'mode': 'Mode' } }
{ 'command': 'query-info', 'data': { 'id': 'str', '*verbose': 'bool' },
  'returns': ['Info'] }
{ 'command': 'set-mode', 'data': { 'mode': 'Mode' } }
{ 'event': 'CHANGED', 'data': { 'mode': 'Mode' } }
"#;

#[test]
fn same_schema_no_changes() {
    let a = schema(BASE);
    assert!(diff(&a, &a).is_empty());
    assert!(diff(&a, &as_answer(&a)).is_empty());
    assert!(diff(&as_answer(&a), &a).is_empty());
    assert_eq!(diff(&a, &a).summary_line(), "no changes");
}

#[test]
fn input_and_output_verdicts() {
    let a = schema(BASE);
    let b = schema(
        r#"
{ 'enum': 'Mode', 'data': ['a', 'b', 'c'] }
{ 'struct': 'Info', 'data': { 'name': 'str', 'size': 'int', 'mode': 'Mode',
                              'extra': 'str' } }
{ 'command': 'query-info', 'data': { 'id': 'str', '*verbose': 'bool', '*all': 'bool' },
  'returns': ['Info'], 'allow-oob': true }
{ 'command': 'set-mode', 'data': { 'mode': 'Mode' } }
{ 'event': 'CHANGED', 'data': { 'mode': 'Mode' } }
"#,
    );
    let got = lines(&diff(&a, &b));
    let want: Vec<(String, Impact, Impact)> = vec![
        ("query-info: allow-oob: false → true".into(), C, B),
        (
            "query-info arguments: member 'all' added (bool, optional)".into(),
            C,
            B,
        ),
        ("Info: member 'extra' added (str)".into(), C, B),
        ("Info: member 'size' made mandatory".into(), C, B),
        // Mode is used both ways: the worse verdict of each.
        ("Mode: value 'c' added".into(), B, B),
    ];
    assert_eq!(got, want);
    // Backwards, each verdict mirrors.
    let got = lines(&diff(&b, &a));
    let want: Vec<(String, Impact, Impact)> = vec![
        ("query-info: allow-oob: true → false".into(), B, C),
        (
            "query-info arguments: member 'all' removed (bool, optional)".into(),
            B,
            C,
        ),
        ("Info: member 'extra' removed (str)".into(), B, C),
        ("Info: member 'size' made optional".into(), B, C),
        ("Mode: value 'c' removed".into(), B, B),
    ];
    assert_eq!(got, want);
}

#[test]
fn masked_answers_compare_by_place() {
    let a = as_answer(&schema(BASE));
    let b = as_answer(&schema(
        r#"
{ 'enum': 'Mode', 'data': ['a', 'b'] }
{ 'struct': 'Info', 'data': { 'name': 'str', '*size': 'int', 'mode': 'str' } }
{ 'command': 'query-info', 'data': { 'id': 'str', 'verbose': 'bool' },
  'returns': ['Info'], 'features': ['deprecated'] }
{ 'command': 'set-mode', 'data': { 'mode': 'Mode' } }
{ 'event': 'CHANGED', 'data': { 'mode': 'Mode' } }
{ 'event': 'GONE' }
"#,
    ));
    let got = lines(&diff(&a, &b));
    let want: Vec<(String, Impact, Impact)> = vec![
        ("query-info: feature 'deprecated' added".into(), C, C),
        (
            "query-info arguments: member 'verbose' made mandatory".into(),
            B,
            C,
        ),
        // An enum in output turned into a string: clients see the same
        // values, servers may now send any string.
        (
            "query-info returns[]: member 'mode' retyped: enum → str".into(),
            B,
            C,
        ),
        ("GONE: added".into(), C, B),
    ];
    assert_eq!(got, want);
}

#[test]
fn unions_alternates_and_renames() {
    let a = schema(
        r#"
{ 'pragma': { 'command-name-exceptions': ['block_job_set_speed'] } }
{ 'struct': 'Cpu', 'data': { 'id': 'int', '*pc': 'int' } }
{ 'command': 'query-cpus', 'returns': ['Cpu'] }
{ 'command': 'block_job_set_speed', 'data': { 'device': 'str', 'value': 'int' } }
{ 'command': 'set-name', 'data': { 'name': 'str' } }
"#,
    );
    let b = schema(
        r#"
{ 'enum': 'Arch', 'data': ['x86', 'other'] }
{ 'struct': 'CpuX86', 'data': { 'pc': 'int' } }
{ 'union': 'Cpu', 'base': { 'id': 'int', 'arch': 'Arch' }, 'discriminator': 'arch',
  'data': { 'x86': 'CpuX86' } }
{ 'command': 'query-cpus', 'returns': ['Cpu'] }
{ 'command': 'block-job-set-speed', 'data': { 'device': 'str', 'speed': 'int' } }
{ 'alternate': 'StrOrNull', 'data': { 's': 'str', 'n': 'null' } }
{ 'command': 'set-name', 'data': { 'name': 'StrOrNull' } }
"#,
    );
    let d = diff(&a, &b);
    let got = lines(&d);
    let want: Vec<(String, Impact, Impact)> = vec![
        ("block-job-set-speed: added".into(), C, B),
        ("block_job_set_speed: removed".into(), B, C),
        (
            "set-name arguments: member 'name' retyped: str → alternate StrOrNull".into(),
            C,
            B,
        ),
        ("Arch: added".into(), C, C),
        ("Cpu: member 'arch' added (enum Arch)".into(), C, B),
        (
            "Cpu: member 'pc' removed (int, optional); now in branch 'x86'".into(),
            C,
            C,
        ),
        ("Cpu: became a union (tag 'arch')".into(), C, C),
        ("Cpu: branch 'other' added (struct)".into(), B, C),
        ("Cpu: branch 'x86' added (struct CpuX86)".into(), B, C),
        ("CpuX86: added".into(), C, C),
        ("StrOrNull: added".into(), C, C),
    ];
    assert_eq!(got, want);
    assert_eq!(d.renames.len(), 1);
    let r = &d.renames[0];
    assert_eq!((r.kind, r.old.as_str()), ("command", "block_job_set_speed"));
    assert_eq!(r.new, "block-job-set-speed");
    assert_eq!(
        r.details[0],
        "member 'value' → 'speed' in command block-job-set-speed arguments (probably)"
    );
    assert!(d
        .changes
        .iter()
        .all(|c| c.root_kind != RootKind::Type || c.kind != ChangeKind::Retyped));
}

// ---- golden files -------------------------------------------------------

fn golden_dir() -> PathBuf {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/diff")).to_path_buf()
}

/// Compare (or, with QMPKIT_BLESS=1, rewrite) a golden file.
fn check_golden(name: &str, got: &str) {
    let path = golden_dir().join(name);
    if std::env::var_os("QMPKIT_BLESS").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(golden_dir()).expect("mkdir");
        std::fs::write(&path, got).expect("write golden");
        return;
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (QMPKIT_BLESS=1 creates it)", path.display()));
    if want != got {
        let d = similar::TextDiff::from_lines(want.as_str(), got);
        panic!(
            "{name} differs from the golden file (QMPKIT_BLESS=1 to accept):\n{}",
            d.unified_diff().context_radius(2)
        );
    }
}

/// Diff two files under tests/data, labelled by their path there.
fn shared_diff(old: &str, new: &str, dialect: Option<Dialect>) -> Option<(SchemaDiff, String)> {
    let (po, pn) = (
        qmpkit_testkit::data::dir().join(old),
        qmpkit_testkit::data::dir().join(new),
    );
    let (a, _) = load_any(&po, dialect).unwrap_or_else(|e| panic!("{old}: {e}"));
    let (b, _) = load_any(&pn, dialect).unwrap_or_else(|e| panic!("{new}: {e}"));
    let d = diff(&a, &b);
    let text = d.to_text(old, new);
    Some((d, text))
}

fn has(d: &SchemaDiff, line: &str) -> bool {
    d.changes.iter().any(|c| c.describe() == line)
}

#[test]
fn golden_seeds_1_0_to_1_1() {
    let Some((_, text)) = shared_diff(
        "seeds/qemu-1.0-dev.json",
        "seeds/qemu-1.1-dev.json",
        Some(Dialect::Legacy),
    ) else {
        return;
    };
    check_golden("seeds-1.0-to-1.1.txt", &text);
}

#[test]
fn golden_seeds_1_1_to_1_3() {
    let Some((d, text)) = shared_diff(
        "seeds/qemu-1.1-dev.json",
        "seeds/qemu-1.3-dev.json",
        Some(Dialect::Legacy),
    ) else {
        return;
    };
    check_golden("seeds-1.1-to-1.3.txt", &text);
    let json = serde_json::to_string_pretty(
        &d.to_json("seeds/qemu-1.1-dev.json", "seeds/qemu-1.3-dev.json"),
    )
    .expect("json")
        + "\n";
    check_golden("seeds-1.1-to-1.3.json", &json);
    // block_job_set_speed became block-job-set-speed, 'value' now 'speed'.
    assert!(has(&d, "block_job_set_speed: removed"));
    assert!(has(&d, "block-job-set-speed: added"));
    let r = d
        .renames
        .iter()
        .find(|r| r.old == "block_job_set_speed")
        .expect("rename found");
    assert_eq!(r.new, "block-job-set-speed");
    assert!(r
        .details
        .iter()
        .any(|l| l.starts_with("member 'value' → 'speed'")));
}

#[test]
fn golden_seeds_1_3_to_2_12() {
    let Some((d, text)) = shared_diff(
        "seeds/qemu-1.3-dev.json",
        "seeds/qemu-2.12-dev/qapi-schema.json",
        Some(Dialect::Legacy),
    ) else {
        return;
    };
    check_golden("seeds-1.3-to-2.12.txt", &text);
    assert!(has(&d, "CpuInfo: became a union (tag 'arch')"));
    assert!(has(&d, "CpuInfo: branch 'x86' added (struct CpuInfoX86)"));
    assert!(has(
        &d,
        "MigrationInfo: member 'status' retyped: str → enum MigrationStatus"
    ));
}

#[test]
fn golden_qemu_7_2_22_to_10_0_2() {
    let Some((d, text)) = shared_diff(
        "qemu-ref/schema-7.2.22/qapi/qapi-schema.json",
        "qemu-ref/schema-10.0.2/qapi/qapi-schema.json",
        Some(Dialect::Modern),
    ) else {
        return;
    };
    check_golden("qemu-7.2.22-to-10.0.2.txt", &text);
    assert!(has(&d, "x-query-rdma: removed"));
    assert!(has(&d, "blockdev-set-active: added"));
}

#[test]
fn golden_storage_daemon_answers_7_2_22_to_10_0_2() {
    let Some((d, text)) = shared_diff(
        "qemu-ref/introspection/qemu-storage-daemon-7.2.22-query-qmp-schema.json",
        "qemu-ref/introspection/qemu-storage-daemon-10.0.2-query-qmp-schema.json",
        None,
    ) else {
        return;
    };
    check_golden("storage-daemon-answers-7.2.22-to-10.0.2.txt", &text);
    assert!(has(
        &d,
        "query-block-jobs returns[]: member 'type' retyped: str → enum"
    ));
}

#[test]
fn dialect_fallback_reads_legacy_sources() {
    let p = qmpkit_testkit::data::path("seeds/qemu-1.0-dev.json");
    let (_, how) = load_any(&p, None).expect("loads");
    assert_eq!(how, qmpkit_schema::SchemaSource::Source(Dialect::Legacy));
}

#[test]
fn renames_by_identical_shape() {
    let a = schema(
        r#"
{ 'command': 'eject-disk', 'data': { 'device': 'str', '*force': 'bool' } }
{ 'command': 'stop-a' }
{ 'event': 'DISK_GONE', 'data': { 'device': 'str' } }
"#,
    );
    let b = schema(
        r#"
{ 'command': 'media-eject', 'data': { 'device': 'str', '*force': 'bool' } }
{ 'command': 'stop-b' }
{ 'event': 'MEDIA_REMOVED', 'data': { 'device': 'str' } }
"#,
    );
    let d = diff(&a, &b);
    let got: Vec<(&str, &str, &str)> = d
        .renames
        .iter()
        .map(|r| (r.kind, r.old.as_str(), r.new.as_str()))
        .collect();
    // Commands without arguments are not matched by shape.
    assert_eq!(
        got,
        [
            ("command", "eject-disk", "media-eject"),
            ("event", "DISK_GONE", "MEDIA_REMOVED")
        ]
    );
    assert!(d.renames.iter().all(|r| r.details.is_empty()));
    assert_eq!(d.summary().changes, 6);
}
