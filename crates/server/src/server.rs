//! The server value: the command table built once from the schema and the registry, the
//! protocol's built-in answers, dispatch of one request, and event broadcast with QEMU's
//! rate limits.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use qmpkit_schema::introspect;
use qmpkit_schema::model::{EntityId, EntityKind};
use qmpkit_schema::Schema;
use qmpkit_wire::{
    encode_line, qemu_order, request_from, response_error, write_qemu, write_qemu_ordered,
    ErrorClass, Event, Greeting, JsonError, QmpError,
};
use serde_json::{Map, Value};
use tokio::sync::Notify;

use crate::handler::{
    Call, EventSender, HandlerFn, HandlerFuture, NameMap, Registry, Returned, ReturnedResult,
    SessionInfo,
};
use crate::validate::{validate_args_cfg, validate_args_owned, ValidateOptions};

/// How a server presents itself and behaves.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// The QEMU version claimed in the greeting and `query-version`: `(major, minor, micro)`.
    pub qemu_version: (u64, u64, u64),
    /// The `package` string of the greeting and `query-version`.
    pub package: String,
    /// What a command of the schema without a handler (other than the protocol's
    /// built-ins) answers.
    pub unhandled: Unhandled,
    /// Configuration symbols (`if` conditions) and masking for `query-qmp-schema`; commands
    /// whose condition does not hold do not exist for clients.
    pub introspection: introspect::Options,
    /// In-band requests queued per session before the server stops reading it, once `oob`
    /// is enabled (QEMU: 8); without `oob`, QEMU (and this server) queues one.
    pub max_inband_queue: usize,
    /// Unwritten output (the session's own replies) beyond which the server stops reading
    /// that session until the client reads.
    pub pause_backlog: usize,
    /// Unread output beyond which a session is disconnected (a client that never reads
    /// while events keep coming).
    pub max_backlog: usize,
}

impl Default for ServerOptions {
    fn default() -> ServerOptions {
        ServerOptions {
            qemu_version: (10, 0, 2),
            package: String::new(),
            unhandled: Unhandled::NotImplemented,
            introspection: introspect::Options::default(),
            max_inband_queue: 8,
            pause_backlog: 1 << 20,
            max_backlog: 64 << 20,
        }
    }
}

/// What a command of the schema answers when no handler implements it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Unhandled {
    /// It is listed (`query-commands`) and answers a `GenericError` saying that it is not
    /// implemented ([`not_implemented`]): nothing answers success without doing anything.
    #[default]
    NotImplemented,
    /// It does not exist for clients: `CommandNotFound`, and `query-commands` leaves it out
    /// (what QEMU answers for a command it was built without).
    NotFound,
    /// It answers a value synthesised from its return type ([`crate::synth`]): a mock of
    /// the schema, for clients that only need well-formed replies.
    Synthesize,
}

/// The error of a command the server (or the program behind it) does not implement.
pub fn not_implemented(command: &str, by: &str) -> QmpError {
    QmpError::not_implemented(command, by)
}

/// What the server answers a command with when it has no handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Builtin {
    None,
    Capabilities,
    QueryVersion,
    QueryCommands,
    QueryQmpSchema,
}

/// How a command is served (see [`Server::commands`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Served {
    /// A registered handler.
    Handler,
    /// The server's own answer (`qmp_capabilities`, `query-version`, `query-commands`,
    /// `query-qmp-schema`).
    Builtin,
    /// A value synthesised from the command's return type ([`Unhandled::Synthesize`]).
    Synthesized,
    /// A `GenericError` saying that the command is not implemented
    /// ([`Unhandled::NotImplemented`]).
    NotImplemented,
}

/// One available command.
pub(crate) struct Entry {
    pub(crate) name: String,
    pub(crate) entity: Option<EntityId>,
    pub(crate) handler: Option<HandlerFn>,
    pub(crate) builtin: Builtin,
    pub(crate) allow_oob: bool,
    pub(crate) success_response: bool,
    /// Arguments go through the validator (`gen: false` commands get what the client sent).
    pub(crate) validate: bool,
    /// Encoded synthesised return value, made on first use (shared with the same
    /// command's entry in sibling servers).
    synth: Arc<OnceLock<Arc<[u8]>>>,
}

/// Per-session output shared with event broadcasters and out-of-band tasks.
pub(crate) struct Shared {
    pub(crate) pending: Mutex<Vec<u8>>,
    /// Bytes queued for the client and not written yet (approximate).
    pub(crate) backlog: AtomicUsize,
    /// Set when the session must end (backlog overflow, server shutdown).
    pub(crate) closed: AtomicBool,
    pub(crate) notify: Notify,
}

impl Shared {
    pub(crate) fn new() -> Shared {
        Shared {
            pending: Mutex::new(Vec::new()),
            backlog: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
            notify: Notify::new(),
        }
    }

    /// Queue bytes for the client; a client whose unread output would pass `max` is cut off.
    pub(crate) fn push(&self, bytes: &[u8], max: usize) {
        if self.closed.load(Ordering::Relaxed) {
            return;
        }
        let before = self.backlog.fetch_add(bytes.len(), Ordering::Relaxed);
        if before.saturating_add(bytes.len()) > max {
            self.closed.store(true, Ordering::Relaxed);
        } else if let Ok(mut p) = self.pending.lock() {
            p.extend_from_slice(bytes);
        }
        self.notify.notify_one();
    }
}

/// Throttled event keys with a pending (delayed) event, if any.
type ThrottleMap = HashMap<String, Option<Vec<u8>>>;

pub(crate) struct Inner {
    pub(crate) schema: Arc<Schema>,
    pub(crate) opts: ServerOptions,
    table: NameMap<Arc<Entry>>,
    pub(crate) greeting: Vec<u8>,
    version_ret: Arc<[u8]>,
    /// Encoded `query-commands` answer (built on the first request for it), shared with
    /// sibling servers that list the same commands.
    commands_ret: Arc<OnceLock<Arc<[u8]>>>,
    /// The commands `query-commands` lists, in the order it lists them.
    commands_listed: Arc<[String]>,
    /// Encoded `query-qmp-schema` answer, shared with sibling servers.
    schema_ret: Arc<OnceLock<Encoded>>,
    /// The names `query-commands` lists, hashed: siblings with the same list share
    /// `commands_ret`.
    commands_key: u64,
    validate_opts: ValidateOptions,
    sessions: Mutex<HashMap<u64, Arc<Shared>>>,
    next_session: AtomicU64,
    throttle: Mutex<ThrottleMap>,
    runtime: Mutex<Option<tokio::runtime::Handle>>,
    pub(crate) shutdown: tokio::sync::watch::Sender<bool>,
    pub(crate) active_sessions: AtomicUsize,
    /// Woken whenever a session ends (see [`Server::drained`]).
    pub(crate) session_ended: tokio::sync::Notify,
    events: EventSender,
}

/// A QMP server over one schema and one registry of handlers: the equivalent of one QEMU
/// monitor, serving any number of connections at once. Cheap to clone.
#[derive(Clone)]
pub struct Server {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("commands", &self.inner.table.len())
            .finish()
    }
}

/// A request that is running: its handler's future and how to answer.
pub(crate) struct Pending {
    pub(crate) fut: CatchUnwind<HandlerFuture>,
    pub(crate) id: Option<Value>,
    pub(crate) respond: bool,
}

/// Per-session state the dispatcher reads and changes.
pub(crate) struct SessState {
    pub(crate) negotiated: bool,
    pub(crate) oob: bool,
    pub(crate) info: SessionInfo,
    pub(crate) shared: Arc<Shared>,
}

/// A future whose panics become an error instead of ending the session.
pub(crate) struct CatchUnwind<F>(pub(crate) F);

impl<F: std::future::Future + Unpin> std::future::Future for CatchUnwind<F> {
    type Output = Option<F::Output>;
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let inner = &mut self.0;
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            std::pin::Pin::new(inner).poll(cx)
        })) {
            Ok(std::task::Poll::Ready(v)) => std::task::Poll::Ready(Some(v)),
            Ok(std::task::Poll::Pending) => std::task::Poll::Pending,
            Err(_) => std::task::Poll::Ready(None),
        }
    }
}

/// Events QEMU rate-limits to one per second (the last one wins), with the data member that
/// tells instances apart, if any.
fn throttle_key(name: &str, data: Option<&Value>) -> Option<String> {
    let member = match name {
        "RTC_CHANGE"
        | "WATCHDOG"
        | "BALLOON_CHANGE"
        | "QUORUM_FAILURE"
        | "ACPI_DEVICE_OST"
        | "HV_BALLOON_STATUS_REPORT" => None,
        "VSERPORT_CHANGE" => Some("id"),
        "QUORUM_REPORT_BAD" => Some("node-name"),
        "MEMORY_DEVICE_SIZE_CHANGE" => Some("qom-path"),
        _ => return None,
    };
    let mut key = name.to_string();
    if let Some(m) = member {
        key.push('\0');
        if let Some(Value::String(s)) = data.and_then(|d| d.get(m)) {
            key.push_str(s);
        }
    }
    Some(key)
}

/// The window of QEMU's event rate limit.
pub const EVENT_RATE_LIMIT: Duration = Duration::from_secs(1);

fn raw_return(out: &mut Vec<u8>, ret: &[u8], id: Option<&Value>) {
    out.extend_from_slice(b"{\"return\": ");
    out.extend_from_slice(ret);
    if let Some(id) = id {
        out.extend_from_slice(b", \"id\": ");
        write_qemu(id, out);
    }
    out.extend_from_slice(b"}\r\n");
}

fn error_line(out: &mut Vec<u8>, err: &QmpError, id: Option<Value>) {
    write_qemu(&response_error(err, id), out);
    out.extend_from_slice(b"\r\n");
}

/// An encoded answer: made by this server, or handed over ready-made (built with the program).
#[derive(Clone)]
enum Encoded {
    Static(&'static [u8]),
    Shared(Arc<[u8]>),
}

impl std::ops::Deref for Encoded {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Encoded::Static(b) => b,
            Encoded::Shared(b) => b,
        }
    }
}

fn encode_value(v: Value) -> Arc<[u8]> {
    let mut out = Vec::new();
    write_qemu(&qemu_order(v), &mut out);
    out.into()
}

impl Server {
    /// A server for `schema` with `registry`'s handlers. Builds the command table, the
    /// greeting and the built-in answers (including the encoded `query-qmp-schema` reply)
    /// once, here.
    pub fn new(schema: Arc<Schema>, registry: Registry, opts: ServerOptions) -> Server {
        Server::build(schema, registry, opts, None, None)
    }

    /// [`Server::new`] with the `query-qmp-schema` answer already encoded: `reply` is the
    /// value of its `return` exactly as this server would write it for `schema` under
    /// `opts.introspection` (a program that embeds a schema encodes it when it is built),
    /// so nothing is introspected or encoded here.
    pub fn with_schema_reply(
        schema: Arc<Schema>,
        registry: Registry,
        opts: ServerOptions,
        reply: &'static [u8],
    ) -> Server {
        Server::build(schema, registry, opts, None, Some(reply))
    }

    /// Another server over the same schema (one machine of a fleet). What does not depend
    /// on the handlers is shared with this one, not rebuilt: with the same introspection
    /// options the encoded `query-qmp-schema` answer, with the same command list the
    /// `query-commands` answer, with the same version the `query-version` answer, and the
    /// synthesised replies of the commands both serve.
    pub fn sibling(&self, registry: Registry, opts: ServerOptions) -> Server {
        Server::build(
            self.inner.schema.clone(),
            registry,
            opts,
            Some(&self.inner),
            None,
        )
    }

    fn build(
        schema: Arc<Schema>,
        registry: Registry,
        opts: ServerOptions,
        template: Option<&Inner>,
        schema_reply: Option<&'static [u8]>,
    ) -> Server {
        let same_introspection = template.is_some_and(|t| {
            opts.introspection.enabled == t.opts.introspection.enabled
                && opts.introspection.unmask == t.opts.introspection.unmask
        });
        let shared_schema_reply = template
            .filter(|_| same_introspection)
            .map(|t| t.schema_ret.clone());
        // The template's synthesised-reply cache for a command, when both serve it from
        // the same definition (replies do not depend on the handlers or the version).
        let synth_of = |name: &str, entity: Option<EntityId>| -> Arc<OnceLock<Arc<[u8]>>> {
            template
                .and_then(|t| t.table.get(name))
                .filter(|e| e.entity == entity && entity.is_some())
                .map(|e| e.synth.clone())
                .unwrap_or_default()
        };
        let enabled = |s: &str| opts.introspection.enabled.contains(s);
        let mut table: NameMap<Arc<Entry>> = NameMap::default();
        // Generated commands in definition order, then `gen: false` ones: QEMU registers them
        // in that order and lists them (query-commands) last registered first.
        let mut generated = Vec::new();
        let mut by_hand = Vec::new();
        for m in &schema.modules {
            for &id in &m.entities {
                let e = schema.entity(id);
                let EntityKind::Command(c) = &e.kind else {
                    continue;
                };
                if !e.ifcond.eval(&enabled) || registry.left_out(&e.name) {
                    continue;
                }
                let handler = registry.get(&e.name).cloned();
                let builtin = match e.name.as_str() {
                    "qmp_capabilities" => Builtin::Capabilities,
                    "query-version" => Builtin::QueryVersion,
                    "query-commands" => Builtin::QueryCommands,
                    "query-qmp-schema" => Builtin::QueryQmpSchema,
                    _ => Builtin::None,
                };
                if opts.unhandled == Unhandled::NotFound
                    && handler.is_none()
                    && builtin == Builtin::None
                {
                    continue;
                }
                if table.contains_key(e.name.as_str()) {
                    continue;
                }
                table.insert(
                    e.name.clone().into(),
                    Arc::new(Entry {
                        name: e.name.clone().into(),
                        entity: Some(id),
                        handler,
                        builtin,
                        allow_oob: c.allow_oob,
                        success_response: c.success_response,
                        validate: c.gen,
                        synth: synth_of(&e.name, Some(id)),
                    }),
                );
                if c.gen {
                    generated.push(e.name.to_string());
                } else {
                    by_hand.push(e.name.to_string());
                }
            }
        }
        // Handlers for commands the schema does not define: served with the arguments as sent.
        let mut extra: Vec<String> = Vec::new();
        for name in registry.keys() {
            if table.contains_key(name) {
                continue;
            }
            let declared = schema
                .lookup(name)
                .is_some_and(|id| matches!(schema.entity(id).kind, EntityKind::Command(_)));
            if declared {
                continue;
            }
            table.insert(
                name.to_string(),
                Arc::new(Entry {
                    name: name.to_string(),
                    entity: None,
                    handler: registry.get(name).cloned(),
                    builtin: Builtin::None,
                    allow_oob: false,
                    success_response: true,
                    validate: false,
                    synth: Arc::default(),
                }),
            );
            extra.push(name.to_string());
        }
        extra.sort_unstable();
        // The protocol's own command exists even in a schema that lacks it.
        if !table.contains_key("qmp_capabilities") {
            table.insert(
                "qmp_capabilities".into(),
                Arc::new(Entry {
                    name: "qmp_capabilities".into(),
                    entity: None,
                    handler: None,
                    builtin: Builtin::Capabilities,
                    allow_oob: false,
                    success_response: true,
                    validate: false,
                    synth: Arc::default(),
                }),
            );
            generated.push("qmp_capabilities".into());
        }
        let commands_key = {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            for n in generated.iter().chain(&by_hand).chain(&extra) {
                n.hash(&mut h);
            }
            h.finish()
        };
        // Encoded when first asked for (most clients never ask).
        let (commands_ret, commands_listed) =
            match template.filter(|t| t.commands_key == commands_key) {
                Some(t) => (t.commands_ret.clone(), t.commands_listed.clone()),
                None => {
                    let mut listed: Vec<String> =
                        generated.into_iter().chain(by_hand).chain(extra).collect();
                    listed.reverse();
                    (Arc::default(), listed.into())
                }
            };

        let (major, minor, micro) = opts.qemu_version;
        // `oob` is offered when the schema's qmp_capabilities can enable it (QEMU 2.12 on);
        // older schemas greet with no capabilities, as their QEMU did. A schema without
        // qmp_capabilities at all is from before QEMU 1.4 (the command was defined outside
        // the schema then): no capabilities either.
        let offers_oob = match schema
            .lookup("qmp_capabilities")
            .map(|id| &schema.entity(id).kind)
        {
            Some(EntityKind::Command(c)) => c
                .arg_type
                .is_some_and(|t| schema.object_members(t).any(|m| m.name == "enable")),
            _ => false,
        };
        let mut greeting = Greeting::new(major, minor, micro, opts.package.clone());
        if !offers_oob {
            greeting.capabilities.clear();
        }
        let greeting = encode_line(&greeting.to_value());
        let mut triple = Map::new();
        triple.insert("major".into(), Value::from(major));
        triple.insert("minor".into(), Value::from(minor));
        triple.insert("micro".into(), Value::from(micro));
        let mut version = Map::new();
        version.insert("qemu".into(), Value::Object(triple));
        version.insert("package".into(), Value::String(opts.package.clone()));
        let version_ret = match template
            .filter(|t| t.opts.qemu_version == opts.qemu_version && t.opts.package == opts.package)
        {
            Some(t) => t.version_ret.clone(),
            None => encode_value(Value::Object(version)),
        };
        let validate_opts = ValidateOptions {
            qemu_version: Some(opts.qemu_version),
        };
        let (shutdown, _) = tokio::sync::watch::channel(false);
        let inner = Inner {
            schema,
            opts,
            table,
            greeting,
            version_ret,
            commands_ret,
            commands_listed,
            commands_key,
            schema_ret: match (shared_schema_reply, schema_reply) {
                (Some(shared), _) => shared,
                (None, Some(r)) => Arc::new(OnceLock::from(Encoded::Static(r))),
                (None, None) => Arc::default(),
            },
            validate_opts,
            sessions: Mutex::new(HashMap::new()),
            next_session: AtomicU64::new(0),
            throttle: Mutex::new(HashMap::new()),
            runtime: Mutex::new(tokio::runtime::Handle::try_current().ok()),
            shutdown,
            active_sessions: AtomicUsize::new(0),
            session_ended: tokio::sync::Notify::new(),
            events: EventSender::from_fn(|_, _| {}),
        };
        // Encoded now so that the first query-qmp-schema is as fast as the others.
        let _ = inner.schema_reply();
        let inner = Arc::new_cyclic(|weak: &Weak<Inner>| {
            let weak = weak.clone();
            Inner {
                events: EventSender::from_fn(move |name, data| {
                    if let Some(inner) = weak.upgrade() {
                        Inner::emit(&inner, name, data);
                    }
                }),
                ..inner
            }
        });
        Server { inner }
    }

    /// The sender handlers and the embedding program use to broadcast events to every
    /// negotiated session of this server.
    pub fn events(&self) -> EventSender {
        self.inner.events.clone()
    }

    /// Available commands and how each is served, sorted by name.
    pub fn commands(&self) -> Vec<(String, Served)> {
        let mut v: Vec<(String, Served)> = self
            .command_kinds()
            .map(|(name, how)| (name.to_string(), how))
            .collect();
        v.sort();
        v
    }

    /// Available commands and how each is served, in no particular order.
    pub fn command_kinds(&self) -> impl Iterator<Item = (&str, Served)> {
        self.inner.table.values().map(|e| {
            let how = if e.builtin == Builtin::Capabilities {
                Served::Builtin
            } else if e.handler.is_some() {
                Served::Handler
            } else if e.builtin != Builtin::None {
                Served::Builtin
            } else if self.inner.opts.unhandled == Unhandled::Synthesize {
                Served::Synthesized
            } else {
                Served::NotImplemented
            };
            (e.name.as_str(), how)
        })
    }

    /// Whether the server offers `command`.
    pub fn serves(&self, command: &str) -> bool {
        self.inner.table.contains_key(command)
    }

    /// The schema this server serves.
    pub fn schema(&self) -> &Arc<Schema> {
        &self.inner.schema
    }

    pub fn options(&self) -> &ServerOptions {
        &self.inner.opts
    }

    /// Sessions currently connected.
    pub fn session_count(&self) -> usize {
        self.inner.active_sessions.load(Ordering::Relaxed)
    }

    /// Stop accepting connections and end every session once its pending output is written
    /// (as QEMU does after `quit`). Serving calls return.
    pub fn shutdown(&self) {
        self.inner.shutdown.send_replace(true);
    }

    /// Resolves once no session is left. After [`Server::shutdown`], that is when every
    /// session has written what it owed its client (or given up on a client that does not
    /// read): a program that exits after this loses no reply and no event.
    pub async fn drained(&self) {
        loop {
            let ended = self.inner.session_ended.notified();
            tokio::pin!(ended);
            ended.as_mut().enable();
            if self.inner.active_sessions.load(Ordering::SeqCst) == 0 {
                return;
            }
            ended.await;
        }
    }

    /// True once [`Server::shutdown`] was called.
    pub fn is_shut_down(&self) -> bool {
        *self.inner.shutdown.borrow()
    }

    pub(crate) fn note_runtime(&self) {
        // The runtime that serves is alive for as long as sessions are: rate-limit timers run
        // there (the one current at construction may be gone by now).
        if let Ok(h) = tokio::runtime::Handle::try_current() {
            if let Ok(mut rt) = self.inner.runtime.lock() {
                *rt = Some(h);
            }
        }
    }
}

impl Inner {
    pub(crate) fn new_session_id(&self) -> u64 {
        self.next_session.fetch_add(1, Ordering::Relaxed) + 1
    }

    fn schema_reply(&self) -> Encoded {
        self.schema_ret
            .get_or_init(|| {
                let infos = introspect::introspect(&self.schema, &self.opts.introspection);
                Encoded::Shared(match serde_json::to_value(&infos) {
                    Ok(v) => encode_value(v),
                    Err(_) => Arc::from(&b"[]"[..]),
                })
            })
            .clone()
    }

    fn commands_reply(&self) -> Arc<[u8]> {
        self.commands_ret
            .get_or_init(|| {
                let list = self
                    .commands_listed
                    .iter()
                    .map(|n| {
                        let mut m = Map::new();
                        m.insert("name".into(), Value::String(n.clone()));
                        Value::Object(m)
                    })
                    .collect();
                encode_value(Value::Array(list))
            })
            .clone()
    }

    fn synth_reply(&self, entry: &Entry) -> Arc<[u8]> {
        entry
            .synth
            .get_or_init(|| match entry.entity {
                Some(id) => encode_value(crate::synth::synthesize_return(&self.schema, id)),
                None => Arc::from(&b"{}"[..]),
            })
            .clone()
    }

    pub(crate) fn register_session(&self, id: u64, shared: &Arc<Shared>) {
        if let Ok(mut s) = self.sessions.lock() {
            s.insert(id, shared.clone());
        }
    }

    pub(crate) fn unregister_session(&self, id: u64) {
        if let Ok(mut s) = self.sessions.lock() {
            s.remove(&id);
        }
    }

    fn broadcast(&self, line: &[u8]) {
        let targets: Vec<Arc<Shared>> = match self.sessions.lock() {
            Ok(s) => s.values().cloned().collect(),
            Err(_) => return,
        };
        for t in targets {
            t.push(line, self.opts.max_backlog);
        }
    }

    /// Stamp, rate-limit and broadcast one event.
    fn emit(this: &Arc<Inner>, name: &str, data: Option<Value>) {
        let key = throttle_key(name, data.as_ref());
        let ev = Event::now(name, data.map(qemu_order));
        let line = encode_line(&ev.to_value());
        let Some(key) = key else {
            this.broadcast(&line);
            return;
        };
        let handle = this.runtime.lock().ok().and_then(|h| h.clone());
        let Some(handle) = handle else {
            this.broadcast(&line);
            return;
        };
        {
            let Ok(mut t) = this.throttle.lock() else {
                return;
            };
            if let Some(pending) = t.get_mut(&key) {
                // Within the window: the last one wins, sent when the window ends.
                *pending = Some(line);
                return;
            }
            t.insert(key.clone(), None);
        }
        this.broadcast(&line);
        let weak = Arc::downgrade(this);
        handle.spawn(async move {
            loop {
                tokio::time::sleep(EVENT_RATE_LIMIT).await;
                let Some(inner) = weak.upgrade() else {
                    return;
                };
                let next = {
                    let Ok(mut t) = inner.throttle.lock() else {
                        return;
                    };
                    match t.get_mut(&key).and_then(Option::take) {
                        Some(line) => line,
                        None => {
                            t.remove(&key);
                            return;
                        }
                    }
                };
                inner.broadcast(&next);
            }
        });
    }

    /// Answer one decoded item (a value or a JSON error). The reply, if any, is appended to
    /// `out`; a handler still running is returned.
    pub(crate) fn dispatch(
        self: &Arc<Inner>,
        st: &mut SessState,
        item: Result<Value, JsonError>,
        fds: Vec<OwnedFd>,
        out: &mut Vec<u8>,
    ) -> Option<Pending> {
        // The descriptors of the latest message that carried any wait on the connection for a
        // command that takes them, whatever happens to the request they came with (as in
        // QEMU, where a request refused before its command runs leaves them there).
        if !fds.is_empty() {
            if let Ok(mut slot) = st.info.received_fds.lock() {
                *slot = fds;
            }
        }
        let req = match request_from(item, st.oob) {
            Ok(r) => r,
            Err(e) => {
                error_line(out, &e.error, e.id);
                return None;
            }
        };
        let id = req.id;
        if !st.negotiated {
            if req.command != "qmp_capabilities" {
                let e = QmpError::new(
                    ErrorClass::CommandNotFound,
                    "Expecting capabilities negotiation with 'qmp_capabilities'",
                );
                error_line(out, &e, id);
                return None;
            }
            match self.capabilities(req.arguments) {
                Ok(oob) => {
                    st.negotiated = true;
                    st.oob = oob;
                    self.register_session(st.info.id, &st.shared);
                    raw_return(out, b"{}", id.as_ref());
                }
                Err(e) => error_line(out, &e, id),
            }
            return None;
        }
        let Some(entry) = self.table.get(req.command.as_str()) else {
            let e = QmpError::new(
                ErrorClass::CommandNotFound,
                format!("The command {} has not been found", req.command),
            );
            error_line(out, &e, id);
            return None;
        };
        if req.oob && !entry.allow_oob {
            let e = QmpError::generic(format!("The command {} does not support OOB", req.command));
            error_line(out, &e, id);
            return None;
        }
        let argv = req.arguments.map(Value::Object);
        let args = match (entry.validate, entry.entity) {
            (true, Some(eid)) => {
                match validate_args_owned(
                    &self.schema,
                    eid,
                    argv,
                    &self.validate_opts,
                    Some(&self.opts.introspection.enabled),
                ) {
                    Ok(a) => a,
                    Err(e) => {
                        error_line(out, &e, id);
                        return None;
                    }
                }
            }
            _ => match argv {
                Some(Value::Object(m)) => m,
                _ => Map::new(),
            },
        };
        if entry.builtin == Builtin::Capabilities {
            let e = QmpError::new(
                ErrorClass::CommandNotFound,
                "Capabilities negotiation is already complete, command ignored",
            );
            error_line(out, &e, id);
            return None;
        }
        if let Some(h) = &entry.handler {
            // The descriptors of the latest message that carried any, whether they
            // came just before this request or before an earlier one that took none.
            let fds = match st.info.received_fds.lock() {
                Ok(mut slot) => std::mem::take(&mut *slot),
                Err(_) => Vec::new(),
            };
            let call = Call {
                command: req.command,
                args,
                oob: req.oob,
                session: st.info.clone(),
                events: self.events.clone(),
                fds,
            };
            let h = h.clone();
            let fut = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| h(call))) {
                Ok(f) => f,
                Err(_) => {
                    error_line(out, &handler_panicked(&entry.name), id);
                    return None;
                }
            };
            return Some(Pending {
                fut: CatchUnwind(fut),
                id,
                respond: entry.success_response,
            });
        }
        if !entry.success_response {
            return None;
        }
        let ret = match entry.builtin {
            Builtin::QueryVersion => self.version_ret.clone(),
            Builtin::QueryCommands => self.commands_reply(),
            Builtin::QueryQmpSchema => {
                raw_return(out, &self.schema_reply(), id.as_ref());
                return None;
            }
            _ if self.opts.unhandled == Unhandled::Synthesize => self.synth_reply(entry),
            _ => {
                error_line(out, &not_implemented(&entry.name, "this server"), id);
                return None;
            }
        };
        raw_return(out, &ret, id.as_ref());
        None
    }

    /// `qmp_capabilities` in negotiation mode: whether `oob` gets enabled.
    fn capabilities(&self, arguments: Option<Map<String, Value>>) -> Result<bool, QmpError> {
        let argv = arguments.map(Value::Object);
        let args = match self.schema.lookup("qmp_capabilities") {
            Some(eid) if matches!(self.schema.entity(eid).kind, EntityKind::Command(_)) => {
                validate_args_cfg(
                    &self.schema,
                    eid,
                    argv.as_ref(),
                    &self.validate_opts,
                    Some(&self.opts.introspection.enabled),
                )?
            }
            _ => match argv {
                Some(Value::Object(m)) => m,
                _ => Map::new(),
            },
        };
        let mut oob = false;
        for (k, v) in &args {
            if k != "enable" {
                return Err(QmpError::generic(format!("Parameter '{k}' is unexpected")));
            }
            let Value::Array(caps) = v else {
                return Err(QmpError::generic(
                    "Invalid parameter type for 'enable', expected: array",
                ));
            };
            for c in caps {
                match c {
                    Value::String(s) if s == "oob" => oob = true,
                    Value::String(s) => {
                        return Err(QmpError::generic(format!(
                            "Parameter 'null' does not accept value '{s}'"
                        )))
                    }
                    _ => {
                        return Err(QmpError::generic(
                            "Invalid parameter type for 'null', expected: string",
                        ))
                    }
                }
            }
        }
        Ok(oob)
    }

    /// The reply line of a finished handler.
    /// Writes the reply; gives back what was written, for the caller to free once the reply
    /// is sent (a large one takes a while to free).
    pub(crate) fn finish(
        &self,
        command_result: Option<ReturnedResult>,
        id: Option<Value>,
        respond: bool,
        out: &mut Vec<u8>,
    ) -> Option<Returned> {
        if !respond {
            return None;
        }
        match command_result {
            Some(Ok(r)) => {
                out.extend_from_slice(b"{\"return\": ");
                match &r {
                    // In QEMU's order, written straight from the handler's value.
                    Returned::Value(v) => write_qemu_ordered(v, out),
                    Returned::Written(bytes) => out.extend_from_slice(bytes),
                }
                if let Some(id) = &id {
                    out.extend_from_slice(b", \"id\": ");
                    write_qemu(id, out);
                }
                out.extend_from_slice(b"}\r\n");
                return Some(r);
            }
            Some(Err(e)) => error_line(out, &e, id),
            None => error_line(out, &handler_panicked("command"), id),
        }
        None
    }
}

fn handler_panicked(name: &str) -> QmpError {
    QmpError::generic(format!("internal error: the {name} handler failed"))
}
