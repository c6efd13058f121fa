//! The contract between a generated server trait and a QMP server.
//!
//! Generated code has, for a schema, a trait `Commands<C>` with one method per command (each
//! with a default body answering [`CommandError::not_implemented`]) and a function
//! `register_commands(registrar)` that hands every command to a [`Registrar`] as a
//! [`HandlerFn`]. A server (e.g. `qmpkit_server::typed`) implements [`Registrar`]: it decodes
//! the arguments into the command's struct, calls the handler and encodes what it returns.
//! `C` is whatever context the server gives a handler (its call, session, event sender…).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::Command;

/// An error a handler answers: an error class (`GenericError`, `DeviceNotFound`, …) and a
/// description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandError {
    pub class: String,
    pub desc: String,
    /// True for the answer of a command the implementation leaves out; the server decides
    /// what that becomes (an error, or a reply synthesised from the return type).
    pub not_implemented: bool,
}

impl CommandError {
    /// A `GenericError` with this description (what most QEMU errors are).
    pub fn generic(desc: impl Into<String>) -> CommandError {
        CommandError::new("GenericError", desc)
    }

    pub fn new(class: impl Into<String>, desc: impl Into<String>) -> CommandError {
        CommandError {
            class: class.into(),
            desc: desc.into(),
            not_implemented: false,
        }
    }

    /// The answer of a command the implementation does not provide.
    pub fn not_implemented(command: &str) -> CommandError {
        CommandError {
            class: "CommandNotFound".into(),
            desc: format!("The command {command} has no implementation"),
            not_implemented: true,
        }
    }
}

impl std::fmt::Display for CommandError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.class, self.desc)
    }
}

impl std::error::Error for CommandError {}

/// What a typed handler returns.
pub type Reply<T> = Result<T, CommandError>;

/// A boxed handler future.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// A typed handler of command `K` over implementation `S` with context `C`.
pub type HandlerFn<S, K, C> = fn(Arc<S>, K, C) -> BoxFuture<Reply<<K as Command>::Returns>>;

/// Receives the commands of a generated trait, one at a time.
pub trait Registrar<S: ?Sized, C> {
    /// Serve command `K` with `handler`.
    fn command<K: Command>(&mut self, handler: HandlerFn<S, K, C>);
}

/// How a generated `dispatch_with` hands back what a handler returned: as a JSON value
/// ([`ToValue`], what `dispatch` uses), or in any other form the server writes (its wire
/// bytes, say), straight from the typed value.
pub trait Encode {
    /// The encoded reply.
    type Out;
    /// Encode a handler's typed reply.
    fn encode<T: serde::Serialize + ?Sized>(&mut self, reply: &T) -> Result<Self::Out, String>;
}

/// Replies as JSON values.
#[derive(Debug, Clone, Copy, Default)]
pub struct ToValue;

impl Encode for ToValue {
    type Out = serde_json::Value;
    fn encode<T: serde::Serialize + ?Sized>(&mut self, reply: &T) -> Result<Self::Out, String> {
        crate::encode(&reply).map_err(|e| e.to_string())
    }
}

/// What a generated `dispatch` does for one command: decode `args` into `K`, run `f`, encode
/// the value it returns. `args` is an `arguments` object the server has already validated
/// against the schema; should it still not decode (a server that skipped validation), the
/// answer is a `GenericError` naming the member that failed, never a panic.
pub fn call<K: Command>(
    args: serde_json::Value,
    f: impl FnOnce(K) -> Reply<K::Returns>,
) -> Result<serde_json::Value, CommandError> {
    call_with(args, &mut ToValue, f)
}

/// [`call`], the reply encoded by `enc`.
pub fn call_with<K: Command, E: Encode>(
    args: serde_json::Value,
    enc: &mut E,
    f: impl FnOnce(K) -> Reply<K::Returns>,
) -> Result<E::Out, CommandError> {
    let args = match args {
        serde_json::Value::Null => serde_json::Value::Object(serde_json::Map::new()),
        a => a,
    };
    let k: K = crate::decode(&args)
        .map_err(|e| CommandError::generic(format!("Invalid arguments for '{}': {e}", K::NAME)))?;
    let ret = f(k)?;
    enc.encode(&ret).map_err(|e| {
        CommandError::generic(format!("Cannot encode the reply of '{}': {e}", K::NAME))
    })
}
