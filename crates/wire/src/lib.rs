//! QMP on the wire: QEMU's JSON dialect and the protocol's messages, byte for byte.
//!
//! * [`json`] — [`JsonStreamer`], the streaming decoder (bytes in, top-level
//!   values or QEMU's JSON errors out, with QEMU's limits and error recovery),
//!   and the writer of QEMU's output form ([`to_qemu_string`], [`write_qemu`]).
//! * `fast` (private) — a one-pass reader for plain, complete messages; it
//!   refuses anything QEMU reads differently, and the exact path takes over.
//!   Its [`ObjectScanner`] reads only a message's outline (extent and member
//!   ranges), for code that passes messages on as they are.
//! * [`qdict`] — the order in which QEMU walks and prints an object's members
//!   ([`qemu_order`]); QEMU prints every object in that order.
//! * [`ser`] — the same output form written straight from any `Serialize` value
//!   ([`write_qemu_serialized`]: a typed reply without a JSON value in between).
//! * [`ghash`] — GLib's string hash and hash table constants, for the orders
//!   QEMU's GLib tables give their keys.
//! * [`message`] — greeting, responses, events, requests and QEMU's envelope
//!   checks ([`Request::parse`]), and [`encode_line`] (output form + CRLF).
//! * [`error`] — [`ErrorClass`] and [`QmpError`].
//! * [`opts`] — QEMU's `key=value,…` option text ([`opts::split_options`]).
//!
//! Invariants: decoding never panics and never recurses without bound; the
//! way input is cut into chunks never changes what comes out; the fast path
//! and the exact path give the same results (the fuzz target checks both).

pub mod error;
mod fast;
pub mod ghash;
pub mod json;
pub mod message;
pub mod opts;
pub mod qdict;
pub mod ser;

pub use error::{ErrorClass, QmpError};
pub use fast::{ObjectScanner, Scanned};
pub use json::{
    to_qemu_string, write_qemu, write_qemu_ordered, write_qemu_pretty, JsonError, JsonStreamer,
};
pub use message::*;
pub use qdict::qemu_order;
pub use ser::write_qemu_serialized;
