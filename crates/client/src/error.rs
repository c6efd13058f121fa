//! The client's one error type.

use serde_json::{Map, Value};
use std::sync::Arc;
use std::time::Duration;

/// What was asked when a request failed: kept in every request-related error.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestInfo {
    /// The command name.
    pub command: String,
    /// The `arguments` member that was sent, if any.
    pub arguments: Option<Map<String, Value>>,
    /// The `id` member that was sent.
    pub id: Value,
    /// True when sent with `exec-oob`.
    pub oob: bool,
}

impl std::fmt::Display for RequestInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.oob {
            write!(f, "{} (exec-oob, id {})", self.command, self.id)
        } else {
            write!(f, "{} (id {})", self.command, self.id)
        }
    }
}

/// Every way a client operation can fail.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Connecting, reading or writing the socket failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),

    /// The server's first message was not a QMP greeting.
    #[error("invalid QMP greeting: {0}")]
    Greeting(String),

    /// The server answered the request with `{"error": {"class": …, "desc": …}}`.
    #[error("{request}: {class}: {desc}")]
    Qmp {
        /// The error class (`GenericError`, `CommandNotFound`, …), as the server sent it.
        class: String,
        /// The human-readable description, as the server sent it.
        desc: String,
        /// The request that failed.
        request: Box<RequestInfo>,
    },

    /// No reply arrived in time. The connection stays usable: a late reply is discarded.
    #[error("{request}: no reply within {timeout:?}")]
    Timeout {
        timeout: Duration,
        request: Box<RequestInfo>,
    },

    /// The connection closed (or broke) before the reply arrived, or was already closed.
    #[error("connection closed: {reason}{}", .request.as_ref().map(|r| format!(" (while waiting for {r})")).unwrap_or_default())]
    Disconnected {
        reason: Arc<str>,
        request: Option<Box<RequestInfo>>,
    },

    /// The request cannot be sent as given (arguments not an object, beyond the server's
    /// input limits, an `id` already in flight, file descriptors on a socket that cannot carry them…).
    #[error("invalid request for {command}: {reason}")]
    InvalidRequest { command: String, reason: String },

    /// The reply arrived but does not have the shape the caller asked for.
    #[error("{request}: cannot decode the reply: {source}")]
    Decode {
        #[source]
        source: serde_json::Error,
        request: Box<RequestInfo>,
    },

    /// The reply arrived but does not decode into the generated type of the command's return
    /// value (the error names the JSON path that failed).
    #[error("{request}: cannot decode the reply {source}")]
    Reply {
        #[source]
        source: qmpkit_qapi::DecodeError,
        request: Box<RequestInfo>,
    },
}

impl Error {
    /// The path in the reply where a typed reply failed to decode.
    pub fn reply_path(&self) -> Option<&str> {
        match self {
            Error::Reply { source, .. } => Some(&source.path),
            _ => None,
        }
    }

    /// The error class when the server answered with an error.
    pub fn class(&self) -> Option<&str> {
        match self {
            Error::Qmp { class, .. } => Some(class),
            _ => None,
        }
    }

    /// The error description when the server answered with an error.
    pub fn desc(&self) -> Option<&str> {
        match self {
            Error::Qmp { desc, .. } => Some(desc),
            _ => None,
        }
    }

    /// The request this error is about, when there is one.
    pub fn request(&self) -> Option<&RequestInfo> {
        match self {
            Error::Qmp { request, .. }
            | Error::Timeout { request, .. }
            | Error::Decode { request, .. }
            | Error::Reply { request, .. } => Some(request),
            Error::Disconnected { request, .. } => request.as_deref(),
            _ => None,
        }
    }

    /// True for [`Error::Disconnected`].
    pub fn is_disconnected(&self) -> bool {
        matches!(self, Error::Disconnected { .. })
    }

    /// True for [`Error::Timeout`].
    pub fn is_timeout(&self) -> bool {
        matches!(self, Error::Timeout { .. })
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
