//! QEMU 10.0.2's schema test suite: every case listed in `CASES` must give
//! exactly its `.out` (stdout of the harness) and `.err` (error text).
//! Runs through the same function as `qmpkit schema dump --format qemu-test`.

use qmpkit_schema::source::ReadError;
use qmpkit_schema::{dump, Dialect, FsProvider, SourceProvider};
use std::path::{Path, PathBuf};

/// The case directory, plus our own stand-ins for the few helper files the
/// sampled cases include but the sample does not ship (`comments.json`,
/// `missing-colon.json`), written from what the expected output says they
/// contain. Files in the case directory always win.
struct CasesProvider {
    dir: String,
    extra: PathBuf,
}

impl SourceProvider for CasesProvider {
    fn read(&self, path: &str) -> Result<String, ReadError> {
        match FsProvider.read(path) {
            Err(e) if !Path::new(path).exists() => {
                let rel = path
                    .strip_prefix(&self.dir)
                    .unwrap_or(path)
                    .trim_start_matches('/');
                FsProvider
                    .read(&self.extra.join(rel).to_string_lossy())
                    .map_err(|_| e)
            }
            r => r,
        }
    }

    fn canonical(&self, path: &str) -> String {
        FsProvider.canonical(path)
    }
}

fn cases_dir() -> PathBuf {
    qmpkit_testkit::data::path("qemu-ref/qapi-schema-tests-10.0.2")
}

/// A unified-style diff of two texts (line based, good enough to read).
fn diff(expected: &str, actual: &str) -> String {
    let mut out = String::new();
    for change in similar::TextDiff::from_lines(expected, actual)
        .unified_diff()
        .context_radius(2)
        .iter_hunks()
    {
        out.push_str(&change.to_string());
    }
    out
}

fn run_case(dir: &Path, name: &str) -> Result<(), String> {
    let json = dir.join(format!("{name}.json"));
    let want_out = std::fs::read_to_string(dir.join(format!("{name}.out"))).unwrap_or_default();
    let want_err = std::fs::read_to_string(dir.join(format!("{name}.err"))).unwrap_or_default();
    let provider = CasesProvider {
        dir: dir.to_string_lossy().into_owned(),
        extra: Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/qemu-cases-extra"
        ))
        .to_path_buf(),
    };
    let r = dump::run_qemu_test_from(&json.to_string_lossy(), Dialect::Modern, &provider);
    let mut msg = String::new();
    if r.stdout != want_out {
        msg.push_str(&format!("--- {name}.out\n{}", diff(&want_out, &r.stdout)));
    }
    if r.stderr != want_err {
        msg.push_str(&format!("--- {name}.err\n{}", diff(&want_err, &r.stderr)));
    }
    if !want_err.is_empty() && r.ok {
        msg.push_str("expected failure, got success\n");
    }
    if msg.is_empty() {
        Ok(())
    } else {
        Err(msg)
    }
}

/// Runs of the cases one at a time: each sets how large a schema must be to be checked on
/// two cores, for the whole process.
static MODE: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn qemu_schema_test_cases() {
    all_cases(usize::MAX);
}

/// The same cases, every one checked on two cores (as QEMU's large schemas are): each error
/// is found again in order, so the diagnostics are the same.
#[test]
fn qemu_schema_test_cases_checked_on_two_cores() {
    all_cases(0);
}

fn all_cases(parallel_min: usize) {
    let _one_at_a_time = MODE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    qmpkit_schema::model::check::set_parallel_check_min(parallel_min);
    let dir = cases_dir();
    let list = std::fs::read_to_string(dir.join("CASES")).expect("test data");
    let names: Vec<&str> = list
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let mut failures = Vec::new();
    for name in &names {
        if let Err(m) = run_case(&dir, name) {
            failures.push((name.to_string(), m));
        }
    }
    for (name, m) in &failures {
        eprintln!("=== {name} FAIL\n{m}");
    }
    let failed: Vec<&str> = failures.iter().map(|(n, _)| n.as_str()).collect();
    assert!(
        failures.is_empty(),
        "{} of {} cases fail: {}",
        failed.len(),
        names.len(),
        failed.join(" ")
    );
}
