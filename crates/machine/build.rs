//! Runs the schema pipeline on the machine's own schema (`schema/` at the repository root) at
//! build time, so that `qmpkit serve` does not parse and check it at every start:
//!
//! - `schema.model`: the checked model in the schema crate's compact form (no doc comments,
//!   no source positions),
//!   read back by `embedded::load_prechecked`;
//! - `schema_model.rs`: the same model as static data (`Schema::to_static_rust`), which
//!   `embedded::own` borrows: serving starts without reading or building a model;
//! - `qmp-schema.json`: the `query-qmp-schema` answer with the default introspection options
//!   (no configuration symbols, masked names), encoded as the server encodes it (QEMU's
//!   member order and formatting).
//!
//! A schema that does not load fails the build with the schema's own diagnostic.

use std::path::{Path, PathBuf};

fn main() {
    let manifest = PathBuf::from(env("CARGO_MANIFEST_DIR"));
    let dir = manifest.join("../../schema");
    let out = PathBuf::from(env("OUT_DIR"));
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=../../schema");

    let mut files = Vec::new();
    json_files(&dir, "", &mut files);
    let provider = qmpkit_schema::MemoryProvider::from_files(
        files.iter().map(|(n, t)| (n.as_str(), t.as_str())),
    );
    let schema = match qmpkit_schema::load_from(
        "qapi-schema.json",
        qmpkit_schema::Dialect::Legacy,
        &provider,
    ) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("the machine's schema (schema/) does not load:\n{e}");
            std::process::exit(1);
        }
    };
    // Serving never says where a definition was written: the model leaves positions out,
    // which makes it smaller and faster to read at start-up.
    let mut served = schema.clone();
    served.forget_positions();
    write(&out.join("schema.model"), &served.to_compact());
    match served.to_static_rust() {
        Ok(src) => write(&out.join("schema_model.rs"), src.as_bytes()),
        Err(e) => {
            eprintln!("the machine's schema (schema/) cannot be static data:\n{e}");
            std::process::exit(1);
        }
    }

    let infos = qmpkit_schema::introspect::introspect(
        &schema,
        &qmpkit_schema::introspect::Options::default(),
    );
    let value = match serde_json::to_value(&infos) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("cannot encode the machine's query-qmp-schema answer: {e}");
            std::process::exit(1);
        }
    };
    let mut reply = Vec::new();
    qmpkit_wire::json::write_qemu(&qmpkit_wire::qdict::qemu_order(value), &mut reply);
    write(&out.join("qmp-schema.json"), &reply);
}

fn env(name: &str) -> String {
    match std::env::var(name) {
        Ok(v) => v,
        Err(_) => {
            eprintln!("{name} is not set");
            std::process::exit(1);
        }
    }
}

fn write(path: &Path, bytes: &[u8]) {
    if let Err(e) = std::fs::write(path, bytes) {
        eprintln!("cannot write {}: {e}", path.display());
        std::process::exit(1);
    }
}

/// Every `.json` file under `dir`, as (path relative to `schema/`, text).
fn json_files(dir: &Path, rel: &str, out: &mut Vec<(String, String)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        eprintln!("cannot read {}", dir.display());
        std::process::exit(1);
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let rel_name = if rel.is_empty() {
            name.clone()
        } else {
            format!("{rel}/{name}")
        };
        let path = entry.path();
        if path.is_dir() {
            json_files(&path, &rel_name, out);
        } else if name.ends_with(".json") {
            match std::fs::read_to_string(&path) {
                Ok(t) => out.push((rel_name, t)),
                Err(e) => {
                    eprintln!("cannot read {}: {e}", path.display());
                    std::process::exit(1);
                }
            }
        }
    }
}
