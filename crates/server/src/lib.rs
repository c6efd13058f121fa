//! qmpkit-server: QMP sessions over a checked schema.
//!
//! * [`handler`] — the contract with command implementations: [`Registry`],
//!   [`Call`], [`EventSender`], [`SessionInfo`].
//! * `validate` — arguments checked as QEMU's input visitor checks them.
//! * `synth` — reply values synthesised from a command's return type.

pub mod handler;

pub use handler::{
    Call, EventSender, HandlerFn, HandlerFuture, HandlerResult, Registry, SessionInfo,
};
pub mod synth;
pub mod validate;
