//! QMP on the wire: QEMU's JSON dialect and the protocol's messages.

pub mod error;
mod fast;
pub mod json;
pub mod message;
pub mod qdict;

pub use error::{ErrorClass, QmpError};
pub use json::{to_qemu_string, write_qemu, JsonError, JsonStreamer};
pub use message::*;
pub use qdict::qemu_order;
