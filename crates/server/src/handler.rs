//! The contract between the server and whatever implements commands.
//!
//! A command is a schema entity plus a [`HandlerFn`] registered under its
//! name in a [`Registry`]. Handlers receive a [`Call`]: the arguments,
//! already validated against the schema, and a context (the session, an
//! event sender, the file descriptors that came with the request).

use std::collections::HashMap;
use std::future::Future;
use std::os::fd::OwnedFd;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use qmpkit_wire::QmpError;
use serde_json::{Map, Value};

/// What a handler answers: the `return` value (in schema order; the server applies
/// `qemu_order` once when it writes the reply), or the error to answer.
pub type HandlerResult = Result<Value, QmpError>;

/// The `return` of a reply as a handler hands it over.
#[derive(Debug, Clone, PartialEq)]
pub enum Returned {
    /// A value in schema order, which the server writes in QEMU's order.
    Value(Value),
    /// The value already in QEMU's output form, members in QEMU's order (what
    /// `qmpkit_wire::write_qemu_ordered` writes): the server copies it as it is.
    Written(Vec<u8>),
}

impl From<Value> for Returned {
    fn from(v: Value) -> Returned {
        Returned::Value(v)
    }
}

/// What a handler's future resolves to.
pub type ReturnedResult = Result<Returned, QmpError>;

/// A boxed handler future.
pub type HandlerFuture = Pin<Box<dyn Future<Output = ReturnedResult> + Send + 'static>>;

/// A command handler: an async function of the call.
pub type HandlerFn = Arc<dyn Fn(Call) -> HandlerFuture + Send + Sync + 'static>;

/// Broadcasts events to every negotiated session of one server (one
/// monitor). Cheap to clone. The server stamps the timestamp and applies
/// QEMU's per-event rate limits.
#[derive(Clone)]
pub struct EventSender {
    pub(crate) inner: Arc<EventFn>,
}

/// What an [`EventSender`] calls: event name and data (schema order).
pub type EventFn = dyn Fn(&str, Option<Value>) + Send + Sync + 'static;

impl EventSender {
    /// An event sender over any sink (tests, fleets, bridges).
    pub fn from_fn(f: impl Fn(&str, Option<Value>) + Send + Sync + 'static) -> EventSender {
        EventSender { inner: Arc::new(f) }
    }

    /// Emit `name` with optional `data` (schema order).
    pub fn emit(&self, name: &str, data: Option<Value>) {
        (self.inner)(name, data)
    }
}

impl std::fmt::Debug for EventSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EventSender")
    }
}

/// What a handler may know and keep about the session that sent the call.
#[derive(Clone, Debug)]
pub struct SessionInfo {
    /// Unique per server, counting from 1 in connection order.
    pub id: u64,
    /// File descriptors kept by name for this session (`getfd`/`closefd`):
    /// in QEMU they belong to the monitor connection and close with it.
    pub named_fds: Arc<Mutex<HashMap<String, OwnedFd>>>,
    /// Descriptors the connection received (SCM_RIGHTS) that no command has
    /// taken yet. As in QEMU they wait for the next command that takes
    /// descriptors, and descriptors that come later replace them.
    pub received_fds: Arc<Mutex<Vec<OwnedFd>>>,
}

impl SessionInfo {
    /// A session with nothing received or kept yet.
    pub fn new(id: u64) -> SessionInfo {
        SessionInfo {
            id,
            named_fds: Arc::new(Mutex::new(HashMap::new())),
            received_fds: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// A handler that took none of its call's descriptors gives them back:
    /// they stay for the next command, unless newer ones came meanwhile.
    /// (A handler that took some drops the rest, as QEMU closes them.)
    pub fn keep_unused_fds(&self, fds: Vec<OwnedFd>) {
        if fds.is_empty() {
            return;
        }
        if let Ok(mut slot) = self.received_fds.lock() {
            if slot.is_empty() {
                *slot = fds;
            }
        }
    }
}

/// One command call, as a handler receives it.
pub struct Call {
    /// The command's name as the client sent it.
    pub command: String,
    /// Arguments, validated against the schema (an empty map when the
    /// client sent none). For `boxed` commands: the members of the boxed
    /// type; for `gen: false` commands: exactly what the client sent.
    pub args: Map<String, Value>,
    /// Whether the request came as `exec-oob`.
    pub oob: bool,
    pub session: SessionInfo,
    pub events: EventSender,
    /// File descriptors received (SCM_RIGHTS) before this request and not
    /// yet taken (those of the latest message that carried any); a handler
    /// takes what it uses, or hands them back untouched with
    /// [`SessionInfo::keep_unused_fds`].
    pub fds: Vec<OwnedFd>,
}

/// Hash maps keyed by command names: a fast hash (a machine registers some two hundred
/// handlers at every start, and every request looks its command up).
pub(crate) type NameMap<V> = HashMap<String, V, foldhash::fast::RandomState>;

/// Handlers by command name.
#[derive(Clone, Default)]
pub struct Registry {
    handlers: NameMap<HandlerFn>,
    /// Commands of the schema that do not exist for clients, whatever
    /// [`crate::Unhandled`] says (a build of QEMU for a target without them).
    absent: Vec<String>,
}

impl Registry {
    pub fn new() -> Registry {
        Registry::default()
    }

    /// Register an async handler.
    pub fn register<F, Fut>(&mut self, name: &str, f: F)
    where
        F: Fn(Call) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = HandlerResult> + Send + 'static,
    {
        let f = Arc::new(f);
        self.handlers.insert(
            name.to_string(),
            Arc::new(move |call| {
                let fut = f(call);
                Box::pin(async move { fut.await.map(Returned::Value) })
            }),
        );
    }

    /// Register a synchronous handler (most machine commands).
    pub fn register_sync<F>(&mut self, name: &str, f: F)
    where
        F: Fn(Call) -> HandlerResult + Send + Sync + 'static,
    {
        self.register_sync_returned(name, move |call| f(call).map(Returned::Value))
    }

    /// Register a synchronous handler that may hand its reply over already written
    /// ([`Returned::Written`]).
    pub fn register_sync_returned<F>(&mut self, name: &str, f: F)
    where
        F: Fn(Call) -> ReturnedResult + Send + Sync + 'static,
    {
        self.handlers.insert(
            name.to_string(),
            Arc::new(move |call| {
                let r = f(call);
                Box::pin(async move { r })
            }),
        );
    }

    /// Leave `name` out although the schema has it: it answers CommandNotFound and
    /// `query-commands` does not list it, as QEMU's build for a target without it.
    pub fn leave_out(&mut self, name: &str) {
        self.handlers.remove(name);
        self.absent.push(name.to_string());
    }

    /// Whether [`Registry::leave_out`] left `name` out.
    pub fn left_out(&self, name: &str) -> bool {
        self.absent.iter().any(|a| a == name)
    }

    pub fn get(&self, name: &str) -> Option<&HandlerFn> {
        self.handlers.get(name)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.handlers.contains_key(name)
    }

    /// Registered command names, in no particular order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.handlers.keys().map(String::as_str)
    }

    /// Registered command names, sorted.
    pub fn names(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.handlers.keys().map(String::as_str).collect();
        v.sort_unstable();
        v
    }
}
