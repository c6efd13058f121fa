//! Runs the schema pipeline at build time on QEMU 10.0.2's schema (`qapi/` of
//! `tests/data/qemu-ref/schema-10.0.2`), the interface the emulator mode serves, so that an
//! emulator does not parse and check it at every start:
//!
//! - `qemu-10.0.2.model`: the checked model in the schema crate's compact form (no doc
//!   comments);
//! - `qemu-10.0.2-qmp-schema.json`: its `query-qmp-schema` answer with the x86_64 KVM build's
//!   configuration symbols, encoded as the server encodes it (QEMU's member order and
//!   formatting).
//!
//! A schema that does not load fails the build with the schema's own diagnostic.

use std::path::{Path, PathBuf};

fn main() {
    let manifest = PathBuf::from(env("CARGO_MANIFEST_DIR"));
    let data = manifest.join("../../tests/data/qemu-ref");
    let dir = data.join("schema-10.0.2/qapi");
    let cfg = data.join("introspection/cfg-qemu-system-x86_64-10.0.2.txt");
    let out = PathBuf::from(env("OUT_DIR"));
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed={}", dir.display());
    println!("cargo:rerun-if-changed={}", cfg.display());

    let mut files = Vec::new();
    let Ok(entries) = std::fs::read_dir(&dir) else {
        fail(&format!("cannot read {}", dir.display()));
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".json") {
            files.push((format!("qapi/{name}"), read(&entry.path())));
        }
    }
    let provider = qmpkit_schema::MemoryProvider::from_files(
        files.iter().map(|(n, t)| (n.as_str(), t.as_str())),
    );
    let schema = match qmpkit_schema::load_from(
        "qapi/qapi-schema.json",
        qmpkit_schema::Dialect::Modern,
        &provider,
    ) {
        Ok(s) => s,
        Err(e) => fail(&format!("QEMU 10.0.2's schema does not load:\n{e}")),
    };
    write(&out.join("qemu-10.0.2.model"), &schema.to_compact());

    let options = qmpkit_schema::introspect::Options {
        enabled: qmpkit_schema::introspect::parse_cfg_file(&read(&cfg))
            .into_iter()
            .collect(),
        unmask: false,
    };
    let infos = qmpkit_schema::introspect::introspect(&schema, &options);
    let value = match serde_json::to_value(&infos) {
        Ok(v) => v,
        Err(e) => fail(&format!(
            "cannot encode QEMU 10.0.2's query-qmp-schema answer: {e}"
        )),
    };
    let mut reply = Vec::new();
    qmpkit_wire::json::write_qemu(&qmpkit_wire::qdict::qemu_order(value), &mut reply);
    write(&out.join("qemu-10.0.2-qmp-schema.json"), &reply);
}

fn fail(msg: &str) -> ! {
    eprintln!("{msg}");
    std::process::exit(1);
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| fail(&format!("{name} is not set")))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| fail(&format!("cannot read {}: {e}", path.display())))
}

fn write(path: &Path, bytes: &[u8]) {
    if let Err(e) = std::fs::write(path, bytes) {
        fail(&format!("cannot write {}: {e}", path.display()));
    }
}
