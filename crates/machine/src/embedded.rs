//! The machine's own QAPI schema (`schema/` at the repository root),
//! compiled into the binary.
//!
//! The files keep their names relative to `schema/`, so include
//! directives resolve exactly as they do on disk and diagnostics name the
//! same files. [`load_schema`] runs the whole schema pipeline on them
//! under the legacy dialect (the schema keeps QEMU 2.12's constructs, such
//! as simple unions, that shape its introspection).
//!
//! The build script runs the same pipeline once, at build time: a program
//! that serves the schema takes the checked model from [`own`] (static data
//! the build script wrote, borrowed: no parsing, checking, reading or
//! building; [`load_prechecked`] reads the same model from its compact
//! form) and the encoded `query-qmp-schema` answer from
//! [`QMP_SCHEMA_REPLY`].

use qmpkit_schema::{Dialect, MemoryProvider, QapiError, Schema};

/// Name of the main schema file (the others are reached through its
/// includes).
pub const ROOT: &str = "qapi-schema.json";

/// The dialect the schema is written in.
pub const DIALECT: Dialect = Dialect::Legacy;

macro_rules! embed {
    ($($name:literal),* $(,)?) => {
        &[$(
            (
                $name,
                include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../schema/", $name)),
            ),
        )*]
    };
}

/// Every file under `schema/`: `(path relative to schema/, text)`.
/// A test checks that this list matches the directory.
pub const FILES: &[(&str, &str)] = embed![
    "qapi-schema.json",
    "qmpkit.json",
    "qapi/block-core.json",
    "qapi/block-export.json",
    "qapi/block-graph.json",
    "qapi/block.json",
    "qapi/char.json",
    "qapi/common.json",
    "qapi/crypto.json",
    "qapi/introspect.json",
    "qapi/job.json",
    "qapi/migration.json",
    "qapi/net.json",
    "qapi/rocker.json",
    "qapi/run-state.json",
    "qapi/sockets.json",
    "qapi/tpm.json",
    "qapi/trace.json",
    "qapi/transaction.json",
    "qapi/ui.json",
];

/// The text of one embedded file, by its path relative to `schema/`.
pub fn file(name: &str) -> Option<&'static str> {
    FILES.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
}

/// A source provider serving the embedded files.
pub fn provider() -> MemoryProvider {
    MemoryProvider::from_files(FILES.iter().copied())
}

/// Parse and check the embedded schema.
pub fn load_schema() -> Result<Schema, QapiError> {
    qmpkit_schema::load_from(ROOT, DIALECT, &provider())
}

/// The model [`load_schema`] builds, as the build script checked it, in
/// the schema crate's compact form (no doc comments, no source positions:
/// a program serving the schema reports neither).
pub const MODEL: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/schema.model"));

/// The embedded schema's `query-qmp-schema` answer (the value of its
/// `return`) with the default introspection options (no configuration
/// symbols, type names masked), encoded as a server writes it.
pub const QMP_SCHEMA_REPLY: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/qmp-schema.json"));

/// The embedded schema's checked model without its doc comments and source positions, read
/// from the form the build script wrote ([`MODEL`]): what [`load_schema`]
/// returns, docs and positions aside, at a fraction of the cost.
pub fn load_prechecked() -> Result<Schema, QapiError> {
    Schema::from_compact(MODEL)
}

/// The model [`load_prechecked`] reads, as static data the build script wrote
/// (`Schema::to_static_rust`).
mod model {
    include!(concat!(env!("OUT_DIR"), "/schema_model.rs"));
}

/// The embedded schema's checked model without its doc comments and source positions, made of
/// the static data the build script wrote: nothing is read or built but a few small tables
/// (what [`load_prechecked`] returns, borrowed from the program).
pub fn load_static() -> Schema {
    Schema::from_static(&model::MODEL)
}

/// The machine's own interface, made once per process ([`load_static`]).
static OWN: std::sync::OnceLock<std::sync::Arc<Schema>> = std::sync::OnceLock::new();

/// The machine's own interface, made once per process from the static model ([`load_static`]):
/// what converting another served interface's requests compares against, and what
/// `query-events` lists.
pub fn own() -> &'static Schema {
    OWN.get_or_init(|| std::sync::Arc::new(load_static()))
}

/// [`own`] to keep: the one copy of the machine's own interface in this process (a program
/// serving it and the conversions share it).
pub fn shared() -> Result<std::sync::Arc<Schema>, QapiError> {
    Ok(OWN
        .get_or_init(|| std::sync::Arc::new(load_static()))
        .clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use std::path::Path;

    fn json_files_under(dir: &Path, rel: &str, out: &mut BTreeSet<String>) {
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) => panic!("cannot read {}: {e}", dir.display()),
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
                json_files_under(&path, &rel_name, out);
            } else if name.ends_with(".json") {
                out.insert(rel_name);
            }
        }
    }

    #[test]
    fn every_schema_file_is_embedded() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schema");
        let mut on_disk = BTreeSet::new();
        json_files_under(&dir, "", &mut on_disk);
        let embedded: BTreeSet<String> = FILES.iter().map(|(n, _)| n.to_string()).collect();
        assert_eq!(embedded.len(), FILES.len(), "a file is listed twice");
        let missing: Vec<_> = on_disk.difference(&embedded).collect();
        let stale: Vec<_> = embedded.difference(&on_disk).collect();
        assert!(
            missing.is_empty() && stale.is_empty(),
            "schema/ files not embedded: {missing:?}; embedded but gone: {stale:?} \
             (update FILES in crates/machine/src/embedded.rs)"
        );
    }

    #[test]
    fn embedded_schema_loads_and_uses_every_file() {
        let schema = match load_schema() {
            Ok(s) => s,
            Err(e) => panic!("embedded schema does not load:\n{e}"),
        };
        // Every embedded file is a module of the schema (none is dead).
        let modules: BTreeSet<&str> = schema.modules.iter().map(|m| m.name.as_str()).collect();
        for (name, _) in FILES {
            assert!(
                modules.contains(name),
                "{name} is embedded but not included; modules: {modules:?}"
            );
        }
        assert!(schema.lookup("query-qmp-schema").is_some());
        assert!(schema.lookup("__org.qmpkit_guest-panic").is_some());
        assert_eq!(file(ROOT).map(|t| t.is_empty()), Some(false));
        assert_eq!(file("nope.json"), None);
    }

    #[test]
    fn prechecked_model_is_the_loaded_one() {
        let loaded = match load_schema() {
            Ok(s) => s,
            Err(e) => panic!("embedded schema does not load:\n{e}"),
        };
        let pre = match load_prechecked() {
            Ok(s) => s,
            Err(e) => panic!("the build script's model does not read back: {e}"),
        };
        // Fresh from the sources: the build script's copy is not stale.
        let mut loaded = loaded;
        loaded.forget_positions();
        let mut undocumented = loaded.clone();
        undocumented.docs = Vec::new();
        undocumented.doc_links = Vec::new();
        assert!(undocumented.to_compact() == MODEL, "stale schema.model");
        let undoc = |s: &Schema| -> Vec<_> {
            s.entities
                .iter()
                .cloned()
                .map(|mut e| {
                    e.doc = None;
                    e
                })
                .collect()
        };
        assert_eq!(undoc(&loaded), undoc(&pre));
        assert_eq!(loaded.modules, pre.modules);
        assert_eq!(loaded.pragma, pre.pragma);
        assert_eq!(loaded.dialect, pre.dialect);
        for (_, e) in loaded.iter() {
            assert_eq!(pre.lookup(&e.name), loaded.lookup(&e.name), "{}", e.name);
        }
        assert_eq!(pre.q_empty(), loaded.q_empty());
        assert_eq!(pre.qtype(), loaded.qtype());
    }

    #[test]
    fn static_model_is_the_prechecked_one() {
        let pre = match load_prechecked() {
            Ok(s) => s,
            Err(e) => panic!("the build script's model does not read back: {e}"),
        };
        let st = load_static();
        assert!(
            st.to_compact() == MODEL,
            "the static model differs from the compact one"
        );
        assert_eq!(st.entities.len(), pre.entities.len());
        for (id, e) in pre.iter() {
            assert_eq!(&st.entities[id], e);
            assert_eq!(st.lookup(&e.name), pre.lookup(&e.name), "{}", e.name);
        }
        assert_eq!(st.modules, pre.modules);
        assert_eq!(st.pragma, pre.pragma);
        assert_eq!(st.lookup("no-such-definition"), None);
        assert_eq!((st.q_empty(), st.qtype()), (pre.q_empty(), pre.qtype()));
        // Changing a static model makes the part changed owned; the rest stays shared.
        let mut changed = st.clone();
        changed.entities[0].name = "renamed".to_string().into();
        assert_eq!(changed.entities[0].name, "renamed");
        assert_eq!(own().entities[0].name, pre.entities[0].name);
    }

    #[test]
    fn prechecked_reply_is_the_introspection() {
        let loaded = match load_schema() {
            Ok(s) => s,
            Err(e) => panic!("embedded schema does not load:\n{e}"),
        };
        let infos = qmpkit_schema::introspect::introspect(&loaded, &Default::default());
        let v = serde_json::to_value(&infos).expect("introspection encodes");
        let mut want = Vec::new();
        qmpkit_wire::json::write_qemu(&qmpkit_wire::qdict::qemu_order(v), &mut want);
        assert!(want == QMP_SCHEMA_REPLY, "stale qmp-schema.json");
    }
}
