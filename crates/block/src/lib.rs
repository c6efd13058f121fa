//! qmpkit's block layer as a typed library, the way QEMU's block layer behaves: real raw and
//! qcow2 image files ([`image`], [`qcow2`]), the node graph with QEMU's permission rules and
//! words ([`graph`]), one job model with QEMU's job state machine whose jobs do their data work
//! on the real files ([`job`]), and an NBD export server on std threads ([`nbd`]).
//!
//! No JSON and no async runtime: callers (the machine's handlers) map their generated QAPI types
//! onto these types and turn [`job::JobEvent`]s into QMP events. Time comes from the caller
//! (nanoseconds of a simulated clock, see [`job::Jobs::advance`]), so tests step it.
//!
//! How a handler uses it:
//!
//! ```no_run
//! use qmpkit_block::graph::{BlockGraph, BlockdevOptions, BlockdevRef, Driver, Perm, PermSet, UserKind};
//! use qmpkit_block::job::{JobOptions, Jobs, SyncMode};
//! use qmpkit_block::nbd::{NbdExport, NbdListen, NbdServer};
//!
//! # fn main() -> qmpkit_block::Result<()> {
//! let mut graph = BlockGraph::default();
//! // blockdev-add: a qcow2 node over an inline file node; the backing chain the header names
//! // opens as read-only nodes named #blockNNN.
//! let file = BlockdevRef::Inline(Box::new(BlockdevOptions::file("/images/disk.qcow2")));
//! graph.add(&BlockdevOptions::format(Driver::Qcow2, file).named("disk0"))?;
//! // A writable export takes write on the node (conflicts answer in QEMU's words) …
//! let perm = PermSet::of(&[Perm::ConsistentRead, Perm::Write]);
//! let shared = PermSet::of(&[Perm::ConsistentRead, Perm::Write, Perm::WriteUnchanged]);
//! graph.attach_user("disk0", UserKind::Export("e0".into()), perm, shared)?;
//! // … and serves the node's real data over NBD until the server is dropped.
//! let server = NbdServer::start(NbdListen::Unix("/run/nbd.sock".into()))?;
//! server.add_export(NbdExport {
//!     name: "disk0".into(),
//!     description: None,
//!     writable: true,
//!     backend: graph.backend("disk0")?,
//! })?;
//! // block-stream, driven by the machine's clock; events come out in QEMU's order.
//! let mut jobs = Jobs::default();
//! jobs.start_stream(&mut graph, &JobOptions::new("job0"), "disk0", None)?;
//! jobs.advance(&mut graph, 1_000_000_000);
//! for event in jobs.take_events() {
//!     println!("{event:?}");
//! }
//! # let _ = SyncMode::Full;
//! # Ok(())
//! # }
//! ```

pub mod bitmap;
pub mod counted;
pub mod graph;
pub mod image;
pub mod job;
pub mod lock;
pub mod mirror_writes;
pub mod nbd;
pub mod qcow2;
pub mod qcow2_bitmaps;
mod qcow2_file;
pub mod qcow2_snapshots;

pub use graph::{BlockGraph, BlockdevOptions, BlockdevRef, Driver, NodeInfo, Perm, PermSet};
pub use image::{CreateOptions, Image, ImageFormat, ImageInfo};
pub use job::{JobEvent, JobKind, JobOptions, JobStatus, JobVerb, Jobs};

/// QMP's error classes the block layer answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    GenericError,
    DeviceNotFound,
    DeviceNotActive,
}

impl ErrorClass {
    pub fn name(self) -> &'static str {
        match self {
            ErrorClass::GenericError => "GenericError",
            ErrorClass::DeviceNotFound => "DeviceNotFound",
            ErrorClass::DeviceNotActive => "DeviceNotActive",
        }
    }
}

/// An error in QEMU's class and words (the `desc` is what QMP shows).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{desc}")]
pub struct Error {
    pub class: ErrorClass,
    pub desc: String,
    /// What QEMU adds below the error where a person reads it (a program's stderr), never
    /// in QMP: "Is another process using the image [FILE]?".
    pub hint: Option<String>,
}

impl Error {
    pub fn generic(desc: impl Into<String>) -> Error {
        Error {
            class: ErrorClass::GenericError,
            desc: desc.into(),
            hint: None,
        }
    }

    /// The same error with words put before it ("Could not open backing file: …").
    pub fn prepend(mut self, words: &str) -> Error {
        self.desc.insert_str(0, words);
        self
    }

    pub fn with_class(class: ErrorClass, desc: impl Into<String>) -> Error {
        Error {
            class,
            desc: desc.into(),
            hint: None,
        }
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Error {
        Error::generic(e.to_string())
    }
}

impl From<qcow2::HeaderError> for Error {
    fn from(e: qcow2::HeaderError) -> Error {
        Error::generic(e.to_string())
    }
}

pub type Result<T> = std::result::Result<T, Error>;
