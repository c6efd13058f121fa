//! Files a node names that are not host paths: QEMU's `/dev/fdset/N`, whose descriptor the
//! graph's owner (the machine, which keeps the fd sets) hands over. The graph reaches the
//! file through `/proc/self/fd/N` of the descriptor it holds for as long as the node lives.

use std::fmt;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::Arc;

use crate::Result;

/// How a file node opens its file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenFlags {
    /// Read-write (else read-only).
    pub write: bool,
    /// `cache.direct` (`O_DIRECT`).
    pub direct: bool,
}

/// A descriptor handed over for a node, and what must live as long as the node holds it
/// (the fd set counts the duplicate as in use).
pub struct PassedFile {
    pub file: File,
    pub keep: Box<dyn std::any::Any + Send + Sync>,
}

impl fmt::Debug for PassedFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PassedFile({})", self.file.as_raw_fd())
    }
}

impl PassedFile {
    /// Where the graph opens the file again (its images, locks and headers open by path).
    pub fn path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}", self.file.as_raw_fd()))
    }
}

/// Opens a file name that is not a host path: `None` when `name` is a host path.
pub type OpenFn = dyn Fn(&str, OpenFlags) -> Option<Result<PassedFile>> + Send + Sync;

/// The graph's opener, if its owner gave one.
#[derive(Clone, Default)]
pub struct Opener(pub Option<Arc<OpenFn>>);

impl fmt::Debug for Opener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "Opener(set)"
        } else {
            "Opener(none)"
        })
    }
}

impl Opener {
    pub fn open(&self, name: &str, flags: OpenFlags) -> Option<Result<PassedFile>> {
        self.0.as_ref().and_then(|f| f(name, flags))
    }
}
