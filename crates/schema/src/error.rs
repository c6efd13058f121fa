//! The one error type of the schema crate.

use crate::source::Info;
use std::fmt;

/// The hint attached to errors caused by constructs of the legacy dialect.
pub const LEGACY_HINT: &str = "accepted with --dialect legacy";

/// The hint attached to doc comment errors that the legacy dialect's
/// reading of doc comments (as QEMU before 9.1 wrote them) does not raise.
pub const LEGACY_DOC_HINT: &str =
    "accepted with --dialect legacy (which reads doc comments as QEMU before 9.1 wrote them)";

/// A schema error, printed exactly as QEMU prints it:
/// `<include path><context>F:L[:C]: message`.
///
/// `Display` gives QEMU's text only (what `schema dump --format qemu-test`
/// prints, byte for byte). An optional [`QapiError::hint`] says more, e.g.
/// that `--dialect legacy` accepts the construct; [`QapiError::full`]
/// appends it as a separate `note:` line, for `schema check`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct QapiError {
    /// Where; `None` for errors with no position (e.g. the top file cannot
    /// be opened), which print as the bare message.
    pub info: Option<Info>,
    /// Column for lexical/syntax errors (1-based, tabs to multiples of 8).
    pub col: Option<u32>,
    pub msg: String,
    /// A note that is not part of QEMU's message.
    pub hint: Option<String>,
    /// Raised by the doc comment parser (the front end then retries with
    /// the doc syntax of older QEMU, see `expr::parse_schema`).
    pub(crate) doc_syntax: bool,
}

impl QapiError {
    pub fn new(info: &Info, msg: impl Into<String>) -> QapiError {
        QapiError {
            info: Some(info.clone()),
            col: None,
            msg: msg.into(),
            hint: None,
            doc_syntax: false,
        }
    }

    pub fn at(info: &Info, col: u32, msg: impl Into<String>) -> QapiError {
        QapiError {
            info: Some(info.clone()),
            col: Some(col),
            msg: msg.into(),
            hint: None,
            doc_syntax: false,
        }
    }

    pub fn bare(msg: impl Into<String>) -> QapiError {
        QapiError {
            info: None,
            col: None,
            msg: msg.into(),
            hint: None,
            doc_syntax: false,
        }
    }

    /// Mark as an error in a doc comment's syntax.
    pub(crate) fn doc_error(mut self) -> QapiError {
        self.doc_syntax = true;
        self
    }

    /// Attach a note.
    pub fn with_hint(mut self, hint: impl Into<String>) -> QapiError {
        self.hint = Some(hint.into());
        self
    }

    /// Mark as caused by a construct the legacy dialect accepts.
    pub fn legacy_hint(self) -> QapiError {
        self.with_hint(LEGACY_HINT)
    }

    /// True when the legacy dialect accepts what caused this error.
    pub fn is_legacy_construct(&self) -> bool {
        self.hint
            .as_deref()
            .is_some_and(|h| h.starts_with(LEGACY_HINT))
    }

    /// QEMU's text, then `note: <hint>` on its own line when there is one
    /// (e.g. "note: accepted with --dialect legacy").
    pub fn full(&self) -> String {
        match &self.hint {
            Some(h) => format!("{self}\nnote: {h}"),
            None => self.to_string(),
        }
    }
}

impl fmt::Display for QapiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.info {
            None => write!(f, "{}", self.msg),
            Some(info) => {
                write!(f, "{info}")?;
                if let Some(col) = self.col {
                    write!(f, ":{col}")?;
                }
                write!(f, ": {}", self.msg)
            }
        }
    }
}
