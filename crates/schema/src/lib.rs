//! The QAPI schema language, from source text to a checked model.
//!
//! Pipeline (each module has one job; later stages never look back at
//! earlier stages' raw data):
//!
//! `source` (files, positions, error locations) → `parser` (tokens,
//! expressions, doc comments) → `expr` (shape checks and normalisation of
//! one expression) → `model` (entities, resolved references, semantic
//! checks) → back ends (`dump`, `introspect`, `diff`).

pub mod error;
pub mod source;

pub use error::QapiError;
pub use source::{Dialect, Info};
pub mod dump;
pub mod introspect;
pub mod model;
pub mod stats;

pub use model::Schema;
