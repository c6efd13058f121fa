//! qmpkit-server: QMP sessions over a checked schema.
//!
//! ```no_run
//! # async fn demo(schema: std::sync::Arc<qmpkit_schema::Schema>) -> Result<(), qmpkit_server::ServerError> {
//! use qmpkit_server::{BindOptions, Registry, Server, ServerOptions, Transport};
//! let mut registry = Registry::new();
//! registry.register_sync("stop", |call| {
//!     call.events.emit("STOP", None);
//!     Ok(serde_json::json!({}))
//! });
//! let server = Server::new(schema, registry, ServerOptions::default());
//! let t = Transport::parse_qmp("unix:/tmp/qmp.sock,server=on,wait=off")?;
//! let listener = qmpkit_server::bind(&t, &BindOptions::default()).await?;
//! println!("QMP on {}", listener.describe());
//! server.serve(listener).await
//! # }
//! ```
//!
//! One [`Server`] is one QEMU monitor: any number of connections at once, events broadcast
//! to every negotiated session ([`Server::events`]), [`Server::shutdown`] to stop (after
//! `quit`), [`Server::sibling`] for the next machine of a fleet (shares the encoded
//! introspection), [`Server::commands`] for how each command is served. Commands without a
//! handler answer what [`ServerOptions::unhandled`] says: by default a `GenericError` that
//! says they are not implemented, or `CommandNotFound` ([`Unhandled::NotFound`]), or a value
//! synthesised from their return type ([`Unhandled::Synthesize`], a mock of the schema); `qmp_capabilities`, `query-version`, `query-commands` and
//! `query-qmp-schema` have built-in answers unless a handler is registered (the first one
//! always belongs to the server).
//!
//! * [`handler`] — the contract with command implementations: [`Registry`],
//!   [`Call`], [`EventSender`], [`SessionInfo`].
//! * `server` — [`Server`], [`ServerOptions`]: the command table built once, the
//!   protocol's built-in answers, dispatch, event broadcast and QEMU's event rate limits.
//! * `session` (private) — one connection's task: greeting, negotiation, command mode,
//!   the in-band queue, out-of-band overtaking, output without blocking on slow clients.
//! * [`transport`] — QEMU's `-qmp` / `-chardev` / `-mon` options, binding (unix 0600,
//!   loopback-only TCP unless allowed), serving listeners and streams.
//! * `validate` — arguments checked as QEMU's input visitor checks them.
//! * `synth` — reply values synthesised from a command's return type.
//! * [`typed`] — [`typed::TypedRegistry`]: handlers from the trait `qmpkit schema codegen`
//!   generates, arguments and replies as Rust types.

pub mod error;
pub mod fdpass;
pub mod handler;
mod server;
mod session;
pub mod synth;
pub mod transport;
pub mod typed;
pub mod validate;

pub use error::ServerError;
pub use handler::{
    Call, EventSender, HandlerFn, HandlerFuture, HandlerResult, Registry, Returned, ReturnedResult,
    SessionInfo,
};
pub use server::{not_implemented, Served, Server, ServerOptions, Unhandled, EVENT_RATE_LIMIT};
pub use session::SessionOptions;
pub use transport::{
    bind, bind_unix, bind_unix_mode, BindOptions, Listener, Monitor, MonitorMode, Transport,
};
