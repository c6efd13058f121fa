//! Generated code compiles without warnings, for every schema in reach: the seed schemas,
//! QEMU 7.2.22's and 10.0.2's schemas (system and storage daemon), the saved introspection
//! answers, the machine's own schema and every case of QEMU's schema test suite that loads.
//!
//! All bindings go into one temporary crate, one module per schema, checked once with
//! `cargo check` (a full build adds code generation for nothing the compiler has not already
//! checked: the generic serde impls are only instantiated by users). The crate sits under
//! `CARGO_TARGET_TMPDIR` with a target directory of its own, kept between runs so that its
//! dependencies are built once; `#![deny(warnings)]` makes any warning fail.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use qmpkit_codegen::{generate, Options};
use qmpkit_schema::Dialect;
use qmpkit_testkit::data;

struct Bindings {
    module: String,
    code: String,
}

fn cfg_file(rel: &str) -> HashSet<String> {
    qmpkit_schema::introspect::parse_cfg_file(&data::read(rel))
        .into_iter()
        .collect()
}

fn gen(module: &str, schema: &qmpkit_schema::Schema, cfg: HashSet<String>) -> Bindings {
    let opts = Options {
        cfg,
        source_name: Some(module.to_string()),
        handlers: true,
        ..Options::default()
    };
    Bindings {
        module: module.to_string(),
        code: generate(schema, &opts),
    }
}

fn load(path: &Path, dialect: Option<Dialect>) -> qmpkit_schema::Schema {
    match qmpkit_schema::load_any(path, dialect) {
        Ok((s, _)) => s,
        Err(e) => panic!("{}: {e}", path.display()),
    }
}

/// Every schema in reach, generated.
fn all_bindings() -> Vec<Bindings> {
    let mut out = Vec::new();
    let legacy = Some(Dialect::Legacy);
    for (m, rel) in [
        ("seed_qemu_1_0", "qemu-1.0-dev.json"),
        ("seed_qemu_1_1", "qemu-1.1-dev.json"),
        ("seed_qemu_1_3", "qemu-1.3-dev.json"),
        ("seed_qemu_2_12", "qemu-2.12-dev/qapi-schema.json"),
    ] {
        out.push(gen(m, &load(&data::seeds(rel), legacy), HashSet::new()));
    }
    let x86 = cfg_file("qemu-ref/introspection/cfg-qemu-system-x86_64-7.2.22.txt");
    for v in ["7.2.22", "10.0.2"] {
        let m = v.replace('.', "_");
        let sys = load(
            &data::qemu_ref(&format!("schema-{v}/qapi/qapi-schema.json")),
            None,
        );
        // The x86_64 build's symbols; 10.0.2 also with none at all (everything conditional
        // left out).
        out.push(gen(&format!("qemu_{m}_system_x86_64"), &sys, x86.clone()));
        if v == "10.0.2" {
            out.push(gen(&format!("qemu_{m}_system_bare"), &sys, HashSet::new()));
        }
        let qsd = load(
            &data::qemu_ref(&format!("schema-{v}/storage-daemon/qapi/qapi-schema.json")),
            None,
        );
        let cfg = cfg_file(&format!(
            "qemu-ref/introspection/cfg-qemu-storage-daemon-{v}.txt"
        ));
        out.push(gen(&format!("qemu_{m}_storage_daemon"), &qsd, cfg));
    }
    for (m, rel) in [
        (
            "answer_qsd_7_2_22",
            "qemu-storage-daemon-7.2.22-query-qmp-schema.json",
        ),
        (
            "answer_qsd_10_0_2",
            "qemu-storage-daemon-10.0.2-query-qmp-schema.json",
        ),
        (
            "answer_system_7_2_22",
            "qemu-system-x86_64-7.2.22-query-qmp-schema.json",
        ),
    ] {
        let p = data::qemu_ref(&format!("introspection/{rel}"));
        out.push(gen(m, &load(&p, None), HashSet::new()));
    }
    let machine = qmpkit_machine::embedded::load_schema().expect("the machine's schema loads");
    out.push(gen("machine", &machine, HashSet::new()));
    // QEMU's schema test suite: every case that loads.
    let dir = data::qemu_ref("qapi-schema-tests-10.0.2");
    let cases = data::read("qemu-ref/qapi-schema-tests-10.0.2/CASES");
    let mut loaded = 0;
    for case in cases.lines().map(str::trim).filter(|c| !c.is_empty()) {
        let p = dir.join(format!("{case}.json"));
        let Ok(s) = qmpkit_schema::load(&p, Dialect::Modern) else {
            continue;
        };
        loaded += 1;
        let m = format!("case_{}", case.replace('-', "_"));
        out.push(gen(&m, &s, HashSet::new()));
        // With every TEST_IF_ symbol on, too.
        let text = std::fs::read_to_string(&p).unwrap_or_default();
        let syms: HashSet<String> = text
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|w| w.starts_with("TEST_IF_"))
            .map(str::to_string)
            .collect();
        if !syms.is_empty() {
            out.push(gen(&format!("{m}_all_if"), &s, syms));
        }
    }
    assert!(loaded >= 3, "only {loaded} test cases loaded");
    out
}

#[test]
fn generated_code_compiles_without_warnings() {
    let started = Instant::now();
    let bindings = all_bindings();
    let gen_time = started.elapsed();
    let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("codegen-compile");
    let src = root.join("src");
    std::fs::create_dir_all(&src).unwrap();
    let ws = data::workspace_root();
    let manifest = format!(
        "[package]\nname = \"qmpkit-codegen-compile-test\"\nversion = \"0.0.0\"\nedition = \"2021\"\npublish = false\n\n[dependencies]\nqmpkit-qapi = {{ path = {:?} }}\nserde = \"1\"\nserde_json = {{ version = \"1\", features = [\"preserve_order\"] }}\n\n[workspace]\n",
        ws.join("crates/qapi").display().to_string()
    );
    write_if_changed(&root.join("Cargo.toml"), &manifest);
    // The workspace's lock file: the same dependency versions, no index lookups.
    if let Ok(lock) = std::fs::read_to_string(ws.join("Cargo.lock")) {
        if !root.join("Cargo.lock").exists() {
            std::fs::write(root.join("Cargo.lock"), lock).unwrap();
        }
    }
    let mut lib = String::from(
        "//! Bindings of every schema in reach, one module each.\n#![deny(warnings)]\n\n",
    );
    let mut lines = 0;
    let mut keep = HashSet::new();
    for b in &bindings {
        lib.push_str(&format!("pub mod {};\n", b.module));
        lines += b.code.lines().count();
        let file = format!("{}.rs", b.module);
        write_if_changed(&src.join(&file), &b.code);
        keep.insert(file);
    }
    write_if_changed(&src.join("lib.rs"), &lib);
    keep.insert("lib.rs".to_string());
    for e in std::fs::read_dir(&src).unwrap().flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        if !keep.contains(&n) {
            let _ = std::fs::remove_file(e.path());
        }
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let t = Instant::now();
    let out = Command::new(cargo)
        .arg("check")
        .arg("--quiet")
        .arg("--manifest-path")
        .arg(root.join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", root.join("target"))
        .env_remove("RUSTFLAGS")
        .output()
        .expect("cargo runs");
    let check_time = t.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!(
        "codegen compile test: {} modules, {lines} lines generated in {gen_time:?}; cargo check {check_time:?}",
        bindings.len()
    );
    assert!(
        out.status.success(),
        "generated code does not compile:\n{}",
        stderr.chars().take(20000).collect::<String>()
    );
    assert!(
        !stderr.contains("warning"),
        "warnings:\n{}",
        stderr.chars().take(20000).collect::<String>()
    );
}

/// Leave unchanged files untouched, so that a rerun checks only what changed.
fn write_if_changed(p: &Path, text: &str) {
    if std::fs::read_to_string(p).ok().as_deref() != Some(text) {
        std::fs::write(p, text).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    }
}
