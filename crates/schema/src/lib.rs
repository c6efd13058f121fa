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
pub mod error;
pub mod expr;
pub mod source;

pub use error::QapiError;
pub use ast::ParsedSchema;
pub use expr::parse_schema;
pub use source::{Dialect, FsProvider, Info, MemoryProvider, SourceProvider};
pub mod dump;
pub mod introspect;
pub mod model;
pub mod stats;

pub use model::Schema;
