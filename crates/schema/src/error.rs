//! The one error type of the schema crate.

use crate::source::Info;
use std::fmt;

/// A schema error, printed exactly as QEMU prints it:
/// `<include path><context>F:L[:C]: message`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct QapiError {
    /// Where; `None` for errors with no position (e.g. the top file cannot
    /// be opened), which print as the bare message.
    pub info: Option<Info>,
    /// Column for lexical/syntax errors (1-based, tabs to multiples of 8).
    pub col: Option<u32>,
    pub msg: String,
}

impl QapiError {
    pub fn new(info: &Info, msg: impl Into<String>) -> QapiError {
        QapiError { info: Some(info.clone()), col: None, msg: msg.into() }
    }

    pub fn at(info: &Info, col: u32, msg: impl Into<String>) -> QapiError {
        QapiError { info: Some(info.clone()), col: Some(col), msg: msg.into() }
    }

    pub fn bare(msg: impl Into<String>) -> QapiError {
        QapiError { info: None, col: None, msg: msg.into() }
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
