//! Where the workspace's test data lives: `tests/data/` at the workspace root (QEMU's schemas,
//! schema test cases, transcripts, introspection answers and the seed schemas; see its README
//! for origins and licences). A fresh clone has all of it, so no test depends on anything
//! outside the repository.

use std::path::{Path, PathBuf};

/// The workspace root (the directory holding the top-level `Cargo.toml`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."))
}

/// `tests/data` at the workspace root.
pub fn dir() -> PathBuf {
    workspace_root().join("tests/data")
}

/// A file or directory under `tests/data`, e.g. `data::path("seeds/qemu-1.0-dev.json")` or
/// `data::path("qemu-ref/schema-10.0.2/qapi/qapi-schema.json")`. Panics when it is missing:
/// test data is part of the repository, so a missing file is a bug, never a reason to skip.
pub fn path(rel: &str) -> PathBuf {
    let p = dir().join(rel);
    assert!(p.exists(), "test data {} is missing", p.display());
    p
}

/// `tests/data/qemu-ref/<rel>`.
pub fn qemu_ref(rel: &str) -> PathBuf {
    path(&format!("qemu-ref/{rel}"))
}

/// `tests/data/seeds/<rel>`.
pub fn seeds(rel: &str) -> PathBuf {
    path(&format!("seeds/{rel}"))
}

/// Reads a test data file as text.
pub fn read(rel: &str) -> String {
    let p = path(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}
