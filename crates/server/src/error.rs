//! The server's error type: setting up transports and serving them.

use std::path::PathBuf;

/// What can go wrong outside a session (sessions answer in QMP instead).
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A `-qmp`, `-chardev` or `-mon` option that cannot be used.
    #[error("{0}")]
    Option(String),
    /// Listening on a non-loopback TCP address without the explicit opt-in.
    #[error(
        "refusing to serve QMP on non-loopback address '{0}': anyone who can reach it controls \
         the machine; allow remote connections explicitly to do so"
    )]
    NonLoopback(String),
    /// Something that is not a socket is in the way of a unix socket path.
    #[error("{}: exists and is not a socket", .0.display())]
    NotASocket(PathBuf),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl ServerError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> ServerError {
        ServerError::Io {
            context: context.into(),
            source,
        }
    }
}
