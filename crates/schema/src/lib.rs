//! The QAPI schema language, from source text to a checked model.
//!
//! Pipeline (each module has one job; later stages never look back at
//! earlier stages' raw data):
//!
//! `source` (files, positions, error locations) → `parser` (tokens,
//! expressions, doc comments) → `expr` (shape checks and normalisation of
//! one expression) → `model` (entities, resolved references, semantic
//! checks) → back ends (`dump`, `introspect`, `diff`).

pub mod ast;
pub mod doc;
pub mod error;
pub mod expr;
pub mod helper;
pub mod parser;
pub mod source;

pub use ast::ParsedSchema;
pub use error::QapiError;
pub use expr::{parse_schema, parse_schema_file, parse_schema_with};
pub use source::{Dialect, DirProvider, FsProvider, Info, MemoryProvider, SourceProvider};
pub mod diff;
pub mod dump;
pub mod introspect;
pub mod model;
pub mod stats;

pub use model::from_introspection::{
    check_any, check_declared, load_any, load_introspection, SchemaSource,
};
pub use model::Schema;

/// Read, parse and check the schema at `path` (and its includes) from the
/// file system: the whole pipeline up to the checked model.
pub fn load(path: &std::path::Path, dialect: Dialect) -> Result<Schema, QapiError> {
    load_from(&path.to_string_lossy(), dialect, &FsProvider)
}

/// [`load`], with the text of the main file when it was read already.
pub(crate) fn load_text(
    path: &std::path::Path,
    dialect: Dialect,
    text: Option<String>,
) -> Result<Schema, QapiError> {
    let path = path.to_string_lossy();
    load_from(&path, dialect, &source::SchemaFiles::new(&path, text))
}

/// [`load`] with files from any [`SourceProvider`].
pub fn load_from(
    path: &str,
    dialect: Dialect,
    provider: &dyn SourceProvider,
) -> Result<Schema, QapiError> {
    let parsed = parse_schema(path, dialect, provider)?;
    Schema::from_parsed(parsed)
}

/// [`load`] for a schema that is only checked: every check is made, but
/// the text of doc comments is not kept (the model's doc sections have
/// empty texts). Expressions are defined in the model while later ones
/// are still being checked on another core; errors are the same as
/// [`load`]'s.
pub fn load_checking(path: &std::path::Path, dialect: Dialect) -> Result<Schema, QapiError> {
    check_text(path, dialect, None)
}

/// [`load_checking`], with the text of the main file when it was read
/// already.
pub(crate) fn check_text(
    path: &std::path::Path,
    dialect: Dialect,
    text: Option<String>,
) -> Result<Schema, QapiError> {
    let path = path.to_string_lossy();
    let files = source::SchemaFiles::new(&path, text);
    expr::parse_then(&path, dialect, &files, false, |raw, parsed| {
        let mut s = Schema::begin(&parsed.fname, dialect, parsed.legacy_docs, raw.len());
        let doc_required = parsed.pragma.doc_required;
        expr::check_each(raw, &parsed, &mut |e| {
            s.define(e, &parsed.docs, doc_required)
        })?;
        // The model's checks share the helper too; then it is no longer needed.
        let checked = s.finish(parsed.pragma, parsed.docs);
        helper::shared_work_done();
        checked
    })
}
