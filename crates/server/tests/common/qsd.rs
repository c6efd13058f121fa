//! The in-process server that stands for a live qemu-storage-daemon 10.0.2 (started with
//! `qmpkit_testkit::qsd`) in the differential tests: same schema, build configuration,
//! version and package.

use std::sync::Arc;

use qmpkit_server::{Registry, ServerOptions};

/// An in-process server over qemu-storage-daemon 10.0.2's schema and build configuration,
/// greeting with the version and package of `greeting` (the daemon's greeting line).
pub fn twin(greeting: &[u8]) -> super::Running {
    let greeting: serde_json::Value = serde_json::from_slice(greeting).expect("greeting");
    let ver = &greeting["QMP"]["version"];
    let n = |k: &str| ver["qemu"][k].as_u64().unwrap_or(0);
    let root = qmpkit_testkit::data::path("qemu-ref");
    let schema = Arc::new(super::load_schema(
        &root.join("schema-10.0.2/storage-daemon/qapi/qapi-schema.json"),
    ));
    let cfg = root.join("introspection/cfg-qemu-storage-daemon-10.0.2.txt");
    super::start(
        schema,
        Registry::new(),
        ServerOptions {
            qemu_version: (n("major"), n("minor"), n("micro")),
            package: ver["package"].as_str().unwrap_or("").to_string(),
            introspection: super::cfg(&[cfg.as_path()]),
            ..ServerOptions::default()
        },
    )
}
