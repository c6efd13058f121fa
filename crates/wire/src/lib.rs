//! QMP on the wire: QEMU's JSON dialect and the protocol's messages.

pub mod error;

pub use error::{ErrorClass, QmpError};
