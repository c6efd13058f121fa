//! The async client: requests matched to replies by `id`.
//!
//! A request is written to the socket by the task that makes it; a writer task takes over only
//! what the socket does not take at once (and everything on a stream that is not a socket). The
//! socket is read by whoever is waiting: a request waiting for its reply reads and dispatches
//! what has arrived itself, and a reader task reads whenever the socket is readable, so that
//! events and late replies are read when no request waits. A sequential request thus costs one
//! `send`, one wait for readiness and one `recv`, all in the caller's task.
//!
//! Invariants:
//! - A request is written, or queued to the writer task as one whole frame, before its future
//!   first yields, and the writer task writes whole frames only; so dropping a request future
//!   (cancellation, timeout) never leaves a partial message on the wire.
//! - An `id` stays registered until its reply arrives, even when its waiter has gone: a late
//!   reply is consumed quietly and can never be mistaken for another request's reply.
//! - Ids the client generates are integers from a per-connection counter, never reused.
//! - The reader never waits for a subscriber: each subscriber has its own queue of bounded
//!   length; when it is full the subscriber gets an [`EventItem::Lagged`] in place of what it missed.
//! - When the connection ends, every waiter gets [`Error::Disconnected`] and every subscription ends.

use crate::error::{Error, RequestInfo, Result};
use crate::fdpass::MAX_FDS;
use crate::message::{
    check_limits, Event, EventFilter, EventItem, Greeting, IdKey, MAX_NESTING, MAX_TOKENS,
};
use crate::outbox::{Outbox, SendError, WriteSide};
use crate::transport::{Lines, Socket, Source};

/// Deepest nesting accepted in a custom request id.
const MAX_ID_NESTING: usize = 64;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::future::Future;
use std::hash::{BuildHasherDefault, Hasher};
use std::os::fd::{BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, ToSocketAddrs, UnixStream};
use tokio::sync::{mpsc, watch};

/// Where a QMP server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    Unix(PathBuf),
    /// `HOST:PORT`.
    Tcp(String),
}

impl Endpoint {
    /// `unix:PATH`, `tcp:HOST:PORT`, or a bare path (unix) / `HOST:PORT` (tcp).
    pub fn parse(s: &str) -> Endpoint {
        if let Some(p) = s.strip_prefix("unix:") {
            Endpoint::Unix(PathBuf::from(p))
        } else if let Some(a) = s.strip_prefix("tcp:") {
            Endpoint::Tcp(a.to_string())
        } else if s.contains(':') && !s.contains('/') {
            Endpoint::Tcp(s.to_string())
        } else {
            Endpoint::Unix(PathBuf::from(s))
        }
    }
}

/// How to connect. `ConnectOptions::default()` negotiates, enables `oob` when offered, and sets
/// no request timeout.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// Send `qmp_capabilities` right after the greeting (default true).
    pub negotiate: bool,
    /// Enable the `oob` capability when the server offers it (default true).
    pub enable_oob: bool,
    /// Default timeout for every request (a [`Command`] can override it). Default: none.
    pub timeout: Option<Duration>,
    /// How long to wait for the greeting (default 10 s).
    pub greeting_timeout: Duration,
    /// Events a subscriber may have queued before it starts lagging (default 4096).
    pub event_buffer: usize,
    /// Longest message accepted from the server (default 1 GiB).
    pub max_message: usize,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            negotiate: true,
            enable_oob: true,
            timeout: None,
            greeting_timeout: Duration::from_secs(10),
            event_buffer: 4096,
            max_message: 1 << 30,
        }
    }
}

impl ConnectOptions {
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = Some(t);
        self
    }

    pub fn negotiate(mut self, yes: bool) -> Self {
        self.negotiate = yes;
        self
    }

    pub fn enable_oob(mut self, yes: bool) -> Self {
        self.enable_oob = yes;
        self
    }

    pub fn event_buffer(mut self, n: usize) -> Self {
        self.event_buffer = n.max(1);
        self
    }

    pub async fn connect(&self, endpoint: &Endpoint) -> Result<Client> {
        match endpoint {
            Endpoint::Unix(p) => self.connect_unix(p).await,
            Endpoint::Tcp(a) => self.connect_tcp(a.as_str()).await,
        }
    }

    pub async fn connect_unix(&self, path: impl AsRef<Path>) -> Result<Client> {
        let s = UnixStream::connect(path).await?;
        self.from_unix_stream(s).await
    }

    pub async fn connect_tcp(&self, addr: impl ToSocketAddrs) -> Result<Client> {
        let s = TcpStream::connect(addr).await?;
        self.from_tcp_stream(s).await
    }

    /// Use an already connected unix socket (file descriptors can be passed).
    pub async fn from_unix_stream(&self, s: UnixStream) -> Result<Client> {
        let fd = OwnedFd::from(s.into_std()?);
        let s = Arc::new(Socket::new(fd, true)?);
        Client::start(Source::Socket(s.clone()), WriteSide::Socket(s), self).await
    }

    pub async fn from_tcp_stream(&self, s: TcpStream) -> Result<Client> {
        s.set_nodelay(true)?;
        let fd = OwnedFd::from(s.into_std()?);
        let s = Arc::new(Socket::new(fd, false)?);
        Client::start(Source::Socket(s.clone()), WriteSide::Socket(s), self).await
    }

    /// Any byte stream (no file descriptor passing), e.g. stdio of a child or an in-memory pipe.
    pub async fn from_io(
        &self,
        reader: impl AsyncRead + Send + Unpin + 'static,
        writer: impl AsyncWrite + Send + Unpin + 'static,
    ) -> Result<Client> {
        Client::start(
            Source::Io(Box::new(reader)),
            WriteSide::Io(Box::new(writer)),
            self,
        )
        .await
    }
}

/// One request: command name, arguments and options.
#[derive(Debug)]
pub struct Command {
    name: String,
    args: Value,
    oob: bool,
    id: Option<Value>,
    timeout: Option<Option<Duration>>,
    fds: Vec<OwnedFd>,
}

impl Command {
    pub fn new(name: impl Into<String>) -> Command {
        Command {
            name: name.into(),
            args: Value::Null,
            oob: false,
            id: None,
            timeout: None,
            fds: Vec::new(),
        }
    }

    /// The `arguments` member: a JSON object (or `null` for none).
    pub fn args(mut self, args: Value) -> Command {
        self.args = args;
        self
    }

    /// Add one argument.
    pub fn arg(mut self, key: impl Into<String>, value: impl Into<Value>) -> Command {
        if !self.args.is_object() {
            self.args = Value::Object(Map::new());
        }
        if let Value::Object(m) = &mut self.args {
            m.insert(key.into(), value.into());
        }
        self
    }

    /// Send with `exec-oob` instead of `execute`.
    pub fn oob(mut self) -> Command {
        self.oob = true;
        self
    }

    /// Use this `id` (any JSON value nested at most 64 deep) instead of a generated one; it must
    /// not be in flight.
    pub fn id(mut self, id: Value) -> Command {
        self.id = Some(id);
        self
    }

    /// Give up waiting after `t` (overrides the connection's default).
    pub fn timeout(mut self, t: Duration) -> Command {
        self.timeout = Some(Some(t));
        self
    }

    /// Wait as long as it takes (overrides the connection's default).
    pub fn no_timeout(mut self) -> Command {
        self.timeout = Some(None);
        self
    }

    /// Pass a file descriptor with SCM_RIGHTS alongside this command (unix sockets only).
    pub fn fd(mut self, fd: OwnedFd) -> Command {
        self.fds.push(fd);
        self
    }
}

/// What `add-fd` answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddFdInfo {
    #[serde(rename = "fdset-id")]
    pub fdset_id: i64,
    pub fd: i64,
}

enum Reply {
    Return(Body),
    Error { class: String, desc: String },
}

/// A `return` value: as text (the common case) or decoded.
enum Body {
    Raw(Box<RawValue>),
    Value(Value),
}

/// The members of a message that say what it is, the values left as text. A member that is
/// present is `Some`, even when it is `null`.
#[derive(Deserialize)]
struct Head<'a> {
    #[serde(default, borrow, deserialize_with = "present")]
    id: Option<&'a RawValue>,
    #[serde(rename = "return", default, borrow, deserialize_with = "present")]
    ret: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    error: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    event: Option<&'a RawValue>,
}

impl<'a> Head<'a> {
    /// The head of a message that is a JSON object.
    fn of(line: &'a [u8]) -> Option<Head<'a>> {
        let first = line.iter().find(|b| !b.is_ascii_whitespace())?;
        if *first != b'{' {
            return None;
        }
        serde_json::from_slice(line).ok()
    }
}

fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

/// The value of an id made of digits only that fits a `u64` (as serde_json reads it).
fn small_uint(text: &str) -> Option<u64> {
    if text.is_empty() || text.len() > 19 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if text.len() > 1 && text.starts_with('0') {
        return None;
    }
    text.parse().ok()
}

fn error_reply(e: Value) -> Reply {
    let class = e.get("class").and_then(Value::as_str).map(str::to_owned);
    let desc = e.get("desc").and_then(Value::as_str).map(str::to_owned);
    Reply::Error {
        class: class.unwrap_or_default(),
        desc: desc.unwrap_or_else(|| e.to_string()),
    }
}

/// Where a request stands, from its registration until its caller takes the reply.
enum Waiter {
    /// No reply yet; the waker of the task waiting for it.
    Waiting(Option<Waker>),
    /// The reply arrived and waits for its caller.
    Ready(Reply),
    /// The caller gave up (timeout, cancellation): the reply will be consumed quietly.
    Abandoned,
}

/// A cheap hasher for request ids (integers from a counter, mostly): one multiply per word.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut w = [0u8; 8];
            w[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(w));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x517c_c1b7_2722_0a95);
    }

    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }

    fn write_isize(&mut self, n: isize) {
        self.write_u64(n as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

struct Pending {
    map: HashMap<IdKey, Waiter, BuildHasherDefault<IdHasher>>,
    /// Custom ids holding non-integer numbers whose reply has not arrived: a server may print
    /// those back with a last digit that decodes one unit off, so a reply whose id misses the
    /// map is compared to these too.
    inexact: Vec<(IdKey, Value)>,
    closed: Option<Arc<str>>,
}

impl Pending {
    fn remove(&mut self, key: &IdKey) -> Option<Waiter> {
        let w = self.map.remove(key)?;
        if !self.inexact.is_empty() {
            self.inexact.retain(|(k, _)| k != key);
        }
        Some(w)
    }

    /// Hand a reply to the request under `key`: the waker to wake, if any. An abandoned
    /// request's reply is consumed here.
    fn answer(&mut self, key: IdKey, reply: Reply) -> Option<Waker> {
        if !self.inexact.is_empty() {
            self.inexact.retain(|(k, _)| *k != key);
        }
        match self.map.get_mut(&key) {
            Some(w @ Waiter::Waiting(_)) => match std::mem::replace(w, Waiter::Ready(reply)) {
                Waiter::Waiting(waker) => waker,
                _ => None,
            },
            Some(Waiter::Abandoned) => {
                self.map.remove(&key);
                None
            }
            _ => None,
        }
    }

    /// The key of the request a reply's id answers, when one waits for it.
    fn find(&self, id: &Value) -> Option<IdKey> {
        let key = IdKey::of(id);
        match self.map.get(&key) {
            Some(Waiter::Ready(_)) => return None,
            Some(_) => return Some(key),
            None => {}
        }
        self.inexact
            .iter()
            .find(|(_, v)| close_enough(v, id))
            .map(|(k, _)| k.clone())
    }
}

/// True when a value holds a number that is not an integer.
fn has_fraction(v: &Value) -> bool {
    match v {
        Value::Number(n) => n.is_f64(),
        Value::Array(a) => a.iter().any(has_fraction),
        Value::Object(m) => m.values().any(has_fraction),
        _ => false,
    }
}

/// Equal JSON values, numbers equal to within a few units in the last place.
fn close_enough(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_f64(), y.as_f64()) {
            (Some(x), Some(y)) => x == y || (x - y).abs() <= 1e-12 * x.abs().max(y.abs()),
            _ => x == y,
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| close_enough(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| close_enough(v, w)))
        }
        _ => a == b,
    }
}

struct Slot {
    filter: EventFilter,
    tx: mpsc::UnboundedSender<EventItem>,
    queued: Arc<AtomicUsize>,
    cap: usize,
    missed: u64,
}

impl Slot {
    /// Queue an item, or count it as missed when the subscriber is full. False once the
    /// subscription is gone.
    fn push(&mut self, item: EventItem) -> bool {
        if self.tx.is_closed() {
            return false;
        }
        if self.queued.load(Ordering::Acquire) >= self.cap {
            self.missed += 1;
            return true;
        }
        if self.missed > 0 {
            let missed = std::mem::take(&mut self.missed);
            if self.tx.send(EventItem::Lagged { missed }).is_err() {
                return false;
            }
        }
        self.queued.fetch_add(1, Ordering::AcqRel);
        self.tx.send(item).is_ok()
    }
}

struct Subs {
    slots: Vec<Slot>,
    closed: bool,
    unmatched: u64,
}

/// State shared by the client handles and the reader/writer tasks.
struct Conn {
    pending: Mutex<Pending>,
    subs: Mutex<Subs>,
    closed_tx: watch::Sender<Option<Arc<str>>>,
    /// What the server sends. Read by the reader task, and by a request waiting for its reply
    /// (which saves a hand-over per reply), one at a time.
    input: Mutex<Input>,
    /// The waker every read registers: it wakes the reader task, and the request that read
    /// last, if any (see [`ReadWaker`]).
    read_waker: Arc<ReadWaker>,
    input_waker: Waker,
    /// Set once the connection has ended: nothing more is read.
    ended: AtomicBool,
}

struct Input {
    lines: Lines,
    done: bool,
}

/// Who to wake when the socket has something to read: the reader task always (so that events
/// are read whoever waits), and the latest request that read while waiting for its reply
/// (so that it reads its reply itself, in its own task).
#[derive(Default)]
struct ReadWaker {
    wakers: Mutex<(Option<Waker>, Option<Waker>)>,
}

impl ReadWaker {
    fn set_task(&self, w: &Waker) {
        let mut g = lock(&self.wakers);
        if !g.0.as_ref().is_some_and(|t| t.will_wake(w)) {
            g.0 = Some(w.clone());
        }
    }

    fn set_caller(&self, w: &Waker) {
        let mut g = lock(&self.wakers);
        if !g.1.as_ref().is_some_and(|t| t.will_wake(w)) {
            g.1 = Some(w.clone());
        }
    }
}

impl std::task::Wake for ReadWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let (task, caller) = {
            let mut g = lock(&self.wakers);
            (g.0.take(), g.1.take())
        };
        if let Some(c) = caller {
            c.wake();
        }
        if let Some(t) = task {
            t.wake();
        }
    }
}

/// Most messages one poll of the input dispatches before letting other tasks run.
const INPUT_BUDGET: usize = 256;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Conn {
    /// End the connection: every waiter gets `Disconnected` (a reply that already arrived is
    /// still handed over), every subscription ends.
    fn fail(&self, reason: &str) {
        let reason: Arc<str> = Arc::from(reason);
        let mut wakers = Vec::new();
        {
            let mut p = lock(&self.pending);
            if p.closed.is_some() {
                return;
            }
            p.closed = Some(reason.clone());
            self.ended.store(true, Ordering::Release);
            p.map.retain(|_, w| match w {
                Waiter::Ready(_) => true,
                Waiter::Waiting(waker) => {
                    wakers.extend(waker.take());
                    false
                }
                Waiter::Abandoned => false,
            });
            p.inexact.clear();
        }
        for w in wakers {
            w.wake();
        }
        {
            let mut s = lock(&self.subs);
            s.closed = true;
            s.slots.clear();
        }
        self.closed_tx.send_replace(Some(reason));
    }

    /// Read and dispatch what has arrived; `Ready` once the input has ended. `me` is the
    /// request reading, if any: its reply is left in the map without a wake-up. With `wait`, a
    /// read in progress elsewhere is waited for; else it is left to finish on its own.
    fn poll_input(&self, wait: bool, me: Option<&IdKey>) -> Poll<()> {
        if self.ended.load(Ordering::Acquire) {
            return Poll::Ready(());
        }
        let mut input = if wait {
            lock(&self.input)
        } else {
            match self.input.try_lock() {
                Ok(g) => g,
                Err(std::sync::TryLockError::Poisoned(e)) => e.into_inner(),
                Err(std::sync::TryLockError::WouldBlock) => return Poll::Pending,
            }
        };
        if input.done {
            return Poll::Ready(());
        }
        let mut cx = Context::from_waker(&self.input_waker);
        for _ in 0..INPUT_BUDGET {
            let reason = match input.lines.poll_next(&mut cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(Some(r))) => {
                    self.dispatch(input.lines.get(r), me);
                    continue;
                }
                Poll::Ready(Ok(None)) => "the server closed the connection".to_string(),
                Poll::Ready(Err(e)) => format!("read failed: {e}"),
            };
            input.done = true;
            drop(input);
            self.fail(&reason);
            return Poll::Ready(());
        }
        // More to read: come back after the others had their turn.
        self.input_waker.wake_by_ref();
        Poll::Pending
    }

    fn dispatch(&self, line: &[u8], me: Option<&IdKey>) {
        if self.dispatch_reply(line, me) {
            return;
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            return;
        }
        let v: Value = match serde_json::from_slice(line) {
            Ok(v) => v,
            Err(_) => {
                self.unmatched(Value::String(
                    String::from_utf8_lossy(line).trim_end().into(),
                ));
                return;
            }
        };
        let mut m = match v {
            Value::Object(m) => m,
            other => return self.unmatched(other),
        };
        if m.contains_key("event") {
            match Event::from_map(m) {
                Ok(e) => self.deliver(e),
                Err(m) => self.unmatched(Value::Object(m)),
            }
            return;
        }
        if !(m.contains_key("return") || m.contains_key("error")) {
            return self.unmatched(Value::Object(m));
        }
        let waker = {
            let mut p = lock(&self.pending);
            let key = match m.get("id") {
                Some(id) => p.find(id),
                None => None,
            };
            let Some(key) = key else {
                drop(p);
                return self.unmatched(Value::Object(m));
            };
            let reply = match m.remove("return") {
                Some(r) => Reply::Return(Body::Value(r)),
                None => error_reply(m.remove("error").unwrap_or(Value::Null)),
            };
            let mine = me == Some(&key);
            let waker = p.answer(key, reply);
            // The request reading now takes its reply when it is done reading.
            waker.filter(|_| !mine)
        };
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// The common case: a reply to a waiting request, read without building the message's
    /// value (the `return` member is kept as text, decoded by the caller into what it wants).
    /// False, having done nothing, for anything else, which [`Conn::dispatch`] then reads in full.
    fn dispatch_reply(&self, line: &[u8], me: Option<&IdKey>) -> bool {
        let Some(head) = Head::of(line) else {
            return false;
        };
        let (Some(id), None) = (head.id, head.event) else {
            return false;
        };
        if head.ret.is_none() && head.error.is_none() {
            return false;
        }
        let id = match small_uint(id.get()) {
            Some(n) => Value::from(n),
            None => match serde_json::from_str::<Value>(id.get()) {
                Ok(v) => v,
                Err(_) => return false,
            },
        };
        let reply = match (head.ret, head.error) {
            (Some(r), _) => Reply::Return(Body::Raw(r.to_owned())),
            (None, Some(e)) => match serde_json::from_str::<Value>(e.get()) {
                Ok(e) => error_reply(e),
                Err(_) => return false,
            },
            (None, None) => return false,
        };
        let waker = {
            let mut p = lock(&self.pending);
            let Some(key) = p.find(&id) else {
                return false;
            };
            let mine = me == Some(&key);
            let waker = p.answer(key, reply);
            waker.filter(|_| !mine)
        };
        if let Some(w) = waker {
            w.wake();
        }
        true
    }

    fn deliver(&self, e: Event) {
        let mut s = lock(&self.subs);
        s.slots.retain_mut(|slot| {
            if slot.filter.matches(&e.event) {
                slot.push(EventItem::Event(e.clone()))
            } else {
                !slot.tx.is_closed()
            }
        });
    }

    fn unmatched(&self, v: Value) {
        let mut s = lock(&self.subs);
        s.unmatched += 1;
        s.slots.retain_mut(|slot| {
            if slot.filter == EventFilter::All {
                slot.push(EventItem::Unmatched(v.clone()))
            } else {
                !slot.tx.is_closed()
            }
        });
    }
}

async fn writer_loop(conn: Arc<Conn>, outbox: Arc<Outbox>, w: WriteSide) {
    if let Err(e) = outbox.run(w).await {
        conn.fail(&format!("write failed: {e}"));
    }
}

async fn reader_loop(conn: Arc<Conn>) {
    std::future::poll_fn(|cx| {
        conn.read_waker.set_task(cx.waker());
        conn.poll_input(true, None)
    })
    .await;
}

struct Inner {
    conn: Arc<Conn>,
    outbox: Arc<Outbox>,
    greeting: Greeting,
    oob: AtomicBool,
    want_oob: bool,
    next_id: AtomicU64,
    timeout: Option<Duration>,
    event_buffer: usize,
    fd_capable: bool,
    reader: tokio::task::AbortHandle,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.reader.abort();
        self.conn.fail("the client was dropped");
        self.outbox.close();
    }
}

/// Waits for the reply to one registered request; gives the request up when dropped first.
struct ReplyWait<'a> {
    conn: &'a Conn,
    key: Option<IdKey>,
}

enum Outcome {
    Reply(Reply),
    Closed(Arc<str>),
}

impl Future for ReplyWait<'_> {
    type Output = Outcome;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Outcome> {
        if let Poll::Ready(o) = self.check(cx) {
            return Poll::Ready(o);
        }
        // No reply yet: read what has arrived (the reply may be there), and have the next
        // arrival wake this task.
        let conn = self.conn;
        conn.read_waker.set_caller(cx.waker());
        let _ = conn.poll_input(false, self.key.as_ref());
        self.check(cx)
    }
}

impl ReplyWait<'_> {
    /// The reply when it is there; else (re)register `cx` for it.
    fn check(&mut self, cx: &mut Context<'_>) -> Poll<Outcome> {
        let Some(key) = &self.key else {
            return Poll::Ready(Outcome::Closed(Arc::from("the reply was already taken")));
        };
        let mut p = lock(&self.conn.pending);
        match p.map.get_mut(key) {
            Some(Waiter::Waiting(w)) => {
                match w {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    _ => *w = Some(cx.waker().clone()),
                }
                return Poll::Pending;
            }
            Some(Waiter::Ready(_)) => {
                let reply = p.remove(key);
                drop(p);
                self.key = None;
                if let Some(Waiter::Ready(r)) = reply {
                    return Poll::Ready(Outcome::Reply(r));
                }
                return Poll::Ready(Outcome::Closed(Arc::from("the reply was lost")));
            }
            Some(Waiter::Abandoned) | None => {}
        }
        let reason = p
            .closed
            .clone()
            .unwrap_or_else(|| Arc::from("the connection was dropped"));
        drop(p);
        self.key = None;
        Poll::Ready(Outcome::Closed(reason))
    }

    /// The request was not sent after all: forget it.
    fn unregister(mut self) {
        if let Some(key) = self.key.take() {
            lock(&self.conn.pending).remove(&key);
        }
    }
}

impl Drop for ReplyWait<'_> {
    fn drop(&mut self) {
        let Some(key) = self.key.take() else {
            return;
        };
        let mut p = lock(&self.conn.pending);
        match p.map.get_mut(&key) {
            Some(w @ Waiter::Waiting(_)) => *w = Waiter::Abandoned,
            Some(Waiter::Ready(_)) => {
                p.remove(&key);
            }
            _ => {}
        }
    }
}

/// An async QMP client. Cheap to clone; all clones share the connection, which closes when the
/// last clone is dropped (or on [`Client::close`]).
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("greeting", &self.inner.greeting.raw)
            .field("oob", &self.oob_enabled())
            .field("closed", &self.is_closed())
            .finish()
    }
}

/// A stream of events (and lag markers) from one subscription; see [`Client::subscribe`].
pub struct Subscription {
    rx: mpsc::UnboundedReceiver<EventItem>,
    queued: Arc<AtomicUsize>,
}

impl Subscription {
    /// The next item; `None` once the connection has closed and everything queued was read.
    pub async fn recv(&mut self) -> Option<EventItem> {
        let item = self.rx.recv().await?;
        self.took(&item);
        Some(item)
    }

    /// The next item if one is queued.
    pub fn try_recv(&mut self) -> Option<EventItem> {
        let item = self.rx.try_recv().ok()?;
        self.took(&item);
        Some(item)
    }

    /// Wait for an event named `name`, skipping everything else; `None` if the connection closes.
    pub async fn wait_for(&mut self, name: &str) -> Option<Event> {
        loop {
            if let EventItem::Event(e) = self.recv().await? {
                if e.event == name {
                    return Some(e);
                }
            }
        }
    }

    fn took(&self, item: &EventItem) {
        if !matches!(item, EventItem::Lagged { .. }) {
            self.queued.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

fn to_arguments(command: &str, args: Value) -> Result<Option<Map<String, Value>>> {
    match args {
        Value::Null => Ok(None),
        Value::Object(m) => Ok(Some(m)),
        other => Err(Error::InvalidRequest {
            command: command.to_string(),
            reason: format!("arguments must be a JSON object, not {other}"),
        }),
    }
}

/// What a request sent, for the errors about its reply.
struct Sent {
    name: String,
    arguments: Option<Map<String, Value>>,
    id: Value,
    oob: bool,
}

impl Sent {
    fn info(self) -> Box<RequestInfo> {
        request_info(self.name, self.arguments, self.id, self.oob)
    }
}

/// [`decode`] from the text of the value, without building the value first.
fn decode_raw<T: DeserializeOwned>(
    raw: &RawValue,
    request: impl FnOnce() -> RequestInfo,
) -> Result<T> {
    if let Ok(t) = serde_json::from_str::<T>(raw.get()) {
        return Ok(t);
    }
    if raw.get() == "{}" {
        if let Ok(t) = serde_json::from_str::<T>("null") {
            return Ok(t);
        }
    }
    // Exactly what decoding the value says.
    match serde_json::from_str::<Value>(raw.get()) {
        Ok(v) => decode(v, request),
        Err(e) => Err(Error::Decode {
            source: e,
            request: Box::new(request()),
        }),
    }
}

fn decode<T: DeserializeOwned>(v: Value, request: impl FnOnce() -> RequestInfo) -> Result<T> {
    // Commands that return nothing answer `{}`: let `()` (and other unit-like types) accept it.
    let empty = matches!(&v, Value::Object(m) if m.is_empty());
    match serde_json::from_value::<T>(v) {
        Ok(t) => Ok(t),
        Err(e) => {
            if empty {
                if let Ok(t) = serde_json::from_value::<T>(Value::Null) {
                    return Ok(t);
                }
            }
            Err(Error::Decode {
                source: e,
                request: Box::new(request()),
            })
        }
    }
}

impl Client {
    /// Connect to a unix socket with default options.
    pub async fn connect_unix(path: impl AsRef<Path>) -> Result<Client> {
        ConnectOptions::default().connect_unix(path).await
    }

    /// Connect over TCP with default options.
    pub async fn connect_tcp(addr: impl ToSocketAddrs) -> Result<Client> {
        ConnectOptions::default().connect_tcp(addr).await
    }

    /// Connect to `unix:PATH` / `tcp:HOST:PORT` with default options.
    pub async fn connect(endpoint: &str) -> Result<Client> {
        ConnectOptions::default()
            .connect(&Endpoint::parse(endpoint))
            .await
    }

    async fn start(source: Source, writer: WriteSide, opts: &ConnectOptions) -> Result<Client> {
        let fd_capable = matches!(&writer, WriteSide::Socket(s) if s.is_unix());
        let mut r = Lines::new(source, opts.max_message);
        let got = tokio::time::timeout(
            opts.greeting_timeout,
            std::future::poll_fn(|cx| r.poll_next(cx)),
        )
        .await
        .map_err(|_| Error::Greeting(format!("none within {:?}", opts.greeting_timeout)))??;
        let Some(range) = got else {
            return Err(Error::Greeting(
                "the server closed the connection before greeting".into(),
            ));
        };
        let line = r.get(range);
        let raw: Value = serde_json::from_slice(line).map_err(|e| {
            Error::Greeting(format!("{e}: {}", String::from_utf8_lossy(line).trim_end()))
        })?;
        let greeting = Greeting::from_value(raw)?;

        let (closed_tx, _) = watch::channel(None);
        let read_waker = Arc::new(ReadWaker::default());
        let conn = Arc::new(Conn {
            pending: Mutex::new(Pending {
                map: HashMap::default(),
                inexact: Vec::new(),
                closed: None,
            }),
            subs: Mutex::new(Subs {
                slots: Vec::new(),
                closed: false,
                unmatched: 0,
            }),
            closed_tx,
            input: Mutex::new(Input {
                lines: r,
                done: false,
            }),
            input_waker: Waker::from(read_waker.clone()),
            read_waker,
            ended: AtomicBool::new(false),
        });
        let outbox = Arc::new(Outbox::new(&writer));
        let writer = tokio::spawn(writer_loop(conn.clone(), outbox.clone(), writer));
        let reader = tokio::spawn(reader_loop(conn.clone()));
        let client = Client {
            inner: Arc::new(Inner {
                conn,
                outbox,
                greeting,
                oob: AtomicBool::new(false),
                want_oob: opts.enable_oob,
                next_id: AtomicU64::new(1),
                timeout: opts.timeout,
                event_buffer: opts.event_buffer.max(1),
                fd_capable,
                reader: reader.abort_handle(),
                tasks: Mutex::new(vec![writer, reader]),
            }),
        };
        if opts.negotiate {
            client.negotiate().await?;
        }
        Ok(client)
    }

    /// Send `qmp_capabilities` (done by `connect` unless [`ConnectOptions::negotiate`] is off),
    /// enabling `oob` when the server offers it and the options allow it.
    pub async fn negotiate(&self) -> Result<()> {
        let oob = self.inner.want_oob && self.inner.greeting.offers("oob");
        let mut cmd = Command::new("qmp_capabilities");
        if oob {
            cmd = cmd.arg("enable", Value::Array(vec![Value::from("oob")]));
        }
        self.call(cmd).await?;
        self.inner.oob.store(oob, Ordering::Release);
        Ok(())
    }

    /// The server's greeting (version and capabilities).
    pub fn greeting(&self) -> &Greeting {
        &self.inner.greeting
    }

    /// True once `oob` was negotiated (`exec-oob` is then allowed).
    pub fn oob_enabled(&self) -> bool {
        self.inner.oob.load(Ordering::Acquire)
    }

    /// True when the server's socket can carry file descriptors (unix sockets).
    pub fn can_pass_fds(&self) -> bool {
        self.inner.fd_capable
    }

    /// Run a command and deserialize what it returns (`Value` for raw JSON, `()` for `{}`).
    /// `args` must serialize to a JSON object, or to `null` (`()`, `None`) for no arguments.
    pub async fn execute<T: DeserializeOwned>(
        &self,
        command: &str,
        args: impl Serialize,
    ) -> Result<T> {
        self.typed(Command::new(command), args).await
    }

    /// Like [`Client::execute`] with `exec-oob`.
    pub async fn execute_oob<T: DeserializeOwned>(
        &self,
        command: &str,
        args: impl Serialize,
    ) -> Result<T> {
        self.typed(Command::new(command).oob(), args).await
    }

    async fn typed<T: DeserializeOwned>(&self, cmd: Command, args: impl Serialize) -> Result<T> {
        let args = serde_json::to_value(args).map_err(|e| Error::InvalidRequest {
            command: cmd.name.clone(),
            reason: format!("arguments: {e}"),
        })?;
        let (body, sent) = self.request(cmd.args(args)).await?;
        match body {
            Body::Value(v) => decode(v, || *sent.info()),
            Body::Raw(raw) => decode_raw(&raw, || *sent.info()),
        }
    }

    /// Send a request and wait for its reply: the `return` value, or the error. The request is
    /// a [`Command`] (the reply is a JSON value) or the struct of a command generated by
    /// `qmpkit schema codegen` (the reply decodes into the command's return type, e.g.
    /// `client.call(QueryBlock {})` gives `Vec<BlockInfo>`).
    pub async fn call<R: crate::typed::Request>(&self, req: R) -> Result<R::Output> {
        let (body, sent) = self.request(req.into_command()?).await?;
        match body {
            Body::Value(v) => R::decode(crate::typed::ReplyData::Value(v), sent.info()),
            Body::Raw(raw) => R::decode(crate::typed::ReplyData::Text(raw.get()), sent.info()),
        }
    }

    /// Send a request and wait for its reply; the `return` value with what was sent.
    async fn request(&self, cmd: Command) -> Result<(Body, Sent)> {
        let Command {
            name,
            args,
            oob,
            id,
            timeout,
            fds,
        } = cmd;
        let invalid = |reason: String| Error::InvalidRequest {
            command: name.clone(),
            reason,
        };
        let arguments = to_arguments(&name, args)?;
        if !fds.is_empty() && !self.inner.fd_capable {
            return Err(invalid(
                "file descriptors can only be passed over a unix socket".into(),
            ));
        }
        if fds.len() > MAX_FDS {
            return Err(invalid(format!("more than {MAX_FDS} file descriptors")));
        }
        let (id, key) = match id {
            Some(id) => {
                // The reply echoes the id, and replies are decoded with serde_json's
                // recursion limit (128): keep custom ids well inside it.
                check_limits(&id, MAX_NESTING - MAX_ID_NESTING)
                    .map_err(|_| invalid(format!("id nested deeper than {MAX_ID_NESTING}")))?;
                let key = IdKey::of(&id);
                (id, key)
            }
            None => {
                let n = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
                (Value::from(n), IdKey::Int(n))
            }
        };

        let mut tokens = 12u64 + check_limits(&id, 1).map_err(&invalid)?;
        if let Some(a) = &arguments {
            tokens += check_limits_map(a).map_err(&invalid)?;
        }
        if tokens > MAX_TOKENS {
            return Err(invalid(format!("more than {MAX_TOKENS} JSON tokens")));
        }
        let inexact = has_fraction(&id).then(|| id.clone());
        let alone;
        {
            let mut p = lock(&self.inner.conn.pending);
            if let Some(reason) = &p.closed {
                let reason = reason.clone();
                drop(p);
                return Err(Error::Disconnected {
                    reason,
                    request: Some(request_info(name, arguments, id, oob)),
                });
            }
            let clash = inexact
                .as_ref()
                .is_some_and(|id| p.inexact.iter().any(|(_, v)| close_enough(v, id)));
            if p.map.contains_key(&key) || clash {
                drop(p);
                return Err(Error::InvalidRequest {
                    reason: format!("id {id} is already in flight"),
                    command: name,
                });
            }
            // With other requests outstanding, replies are on their way and will wake their
            // tasks: queue this one behind whatever they send, so that the writer task writes
            // them all at once. Alone, it is written at once.
            alone = p.map.is_empty();
            p.map.insert(key.clone(), Waiter::Waiting(None));
            if let Some(id) = inexact {
                p.inexact.push((key.clone(), id));
            }
        }
        // From here the request is registered: `wait` unregisters it if it is dropped.
        let wait = ReplyWait {
            conn: &self.inner.conn,
            key: Some(key),
        };
        let sent = self.inner.outbox.send(alone, fds, |buf| {
            encode_request(buf, &name, arguments.as_ref(), &id, oob)
        });
        if let Err(e) = sent {
            wait.unregister();
            return Err(match e {
                SendError::Encode(e) => Error::InvalidRequest {
                    command: name,
                    reason: e.to_string(),
                },
                SendError::Stopped => Error::Disconnected {
                    reason: lock(&self.inner.conn.pending)
                        .closed
                        .clone()
                        .unwrap_or_else(|| Arc::from("the connection's writer has stopped")),
                    request: Some(request_info(name, arguments, id, oob)),
                },
                SendError::Failed(e) => {
                    self.inner.conn.fail(&format!("write failed: {e}"));
                    Error::Disconnected {
                        reason: Arc::from(format!("write failed: {e}")),
                        request: Some(request_info(name, arguments, id, oob)),
                    }
                }
            });
        }

        let timeout = timeout.unwrap_or(self.inner.timeout);
        let outcome = match timeout {
            Some(t) => match tokio::time::timeout(t, wait).await {
                Ok(r) => r,
                Err(_) => {
                    return Err(Error::Timeout {
                        timeout: t,
                        request: request_info(name, arguments, id, oob),
                    })
                }
            },
            None => wait.await,
        };
        match outcome {
            Outcome::Reply(Reply::Return(body)) => Ok((
                body,
                Sent {
                    name,
                    arguments,
                    id,
                    oob,
                },
            )),
            Outcome::Reply(Reply::Error { class, desc }) => Err(Error::Qmp {
                class,
                desc,
                request: request_info(name, arguments, id, oob),
            }),
            Outcome::Closed(reason) => Err(Error::Disconnected {
                reason,
                request: Some(request_info(name, arguments, id, oob)),
            }),
        }
    }

    /// Subscribe to events. Only events that arrive after this call are delivered.
    pub fn subscribe(&self, filter: EventFilter) -> Subscription {
        let (tx, rx) = mpsc::unbounded_channel();
        let queued = Arc::new(AtomicUsize::new(0));
        let mut s = lock(&self.inner.conn.subs);
        if !s.closed {
            s.slots.push(Slot {
                filter,
                tx,
                queued: queued.clone(),
                cap: self.inner.event_buffer,
                missed: 0,
            });
        }
        Subscription { rx, queued }
    }

    /// Subscribe to every event (and unmatched replies).
    pub fn events(&self) -> Subscription {
        self.subscribe(EventFilter::All)
    }

    /// `getfd`: pass `fd` to the server under `fdname`.
    pub async fn getfd(&self, fdname: &str, fd: BorrowedFd<'_>) -> Result<()> {
        let fd = fd.try_clone_to_owned()?;
        let v = self
            .call(Command::new("getfd").arg("fdname", fdname).fd(fd))
            .await?;
        decode(v, || RequestInfo {
            command: "getfd".into(),
            arguments: None,
            id: Value::Null,
            oob: false,
        })
    }

    /// `add-fd`: pass `fd` into an fd set (a new one when `fdset_id` is `None`).
    pub async fn add_fd(
        &self,
        fd: BorrowedFd<'_>,
        fdset_id: Option<i64>,
        opaque: Option<&str>,
    ) -> Result<AddFdInfo> {
        let fd = fd.try_clone_to_owned()?;
        let mut cmd = Command::new("add-fd").fd(fd);
        if let Some(id) = fdset_id {
            cmd = cmd.arg("fdset-id", id);
        }
        if let Some(o) = opaque {
            cmd = cmd.arg("opaque", o);
        }
        let v = self.call(cmd).await?;
        decode(v, || RequestInfo {
            command: "add-fd".into(),
            arguments: None,
            id: Value::Null,
            oob: false,
        })
    }

    /// Requests sent whose reply has not arrived (including abandoned ones).
    pub fn in_flight(&self) -> usize {
        lock(&self.inner.conn.pending)
            .map
            .values()
            .filter(|w| !matches!(w, Waiter::Ready(_)))
            .count()
    }

    /// Messages received that matched no request (no `id`, unknown `id`, not JSON).
    pub fn unmatched_count(&self) -> u64 {
        lock(&self.inner.conn.subs).unmatched
    }

    /// True once the connection has ended.
    pub fn is_closed(&self) -> bool {
        lock(&self.inner.conn.pending).closed.is_some()
    }

    /// Wait until the connection ends; returns why.
    pub async fn closed(&self) -> Arc<str> {
        let mut rx = self.inner.conn.closed_tx.subscribe();
        loop {
            if let Some(r) = rx.borrow_and_update().clone() {
                return r;
            }
            if rx.changed().await.is_err() {
                return Arc::from("the connection was dropped");
            }
        }
    }

    /// Close the connection: waiters get [`Error::Disconnected`], subscriptions end, and the
    /// socket is shut down once what was already queued is written.
    pub fn close(&self) {
        self.inner.conn.fail("closed by the client");
        self.inner.outbox.close();
        self.inner.reader.abort();
    }

    /// [`Client::close`], then wait until the socket is closed (the server sees the hang-up).
    pub async fn shutdown(&self) {
        self.close();
        let tasks = std::mem::take(&mut *lock(&self.inner.tasks));
        for t in tasks {
            let _ = t.await;
        }
    }
}

fn request_info(
    command: String,
    arguments: Option<Map<String, Value>>,
    id: Value,
    oob: bool,
) -> Box<RequestInfo> {
    Box::new(RequestInfo {
        command,
        arguments,
        id,
        oob,
    })
}

/// `{"execute": NAME, "arguments": ARGS, "id": ID}` and a newline, as QEMU's own tools space it.
fn encode_request(
    buf: &mut Vec<u8>,
    name: &str,
    arguments: Option<&Map<String, Value>>,
    id: &Value,
    oob: bool,
) -> serde_json::Result<()> {
    buf.extend_from_slice(if oob {
        b"{\"exec-oob\": "
    } else {
        b"{\"execute\": "
    });
    if name
        .bytes()
        .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
    {
        buf.push(b'"');
        buf.extend_from_slice(name.as_bytes());
        buf.push(b'"');
    } else {
        serde_json::to_writer(&mut *buf, name)?;
    }
    if let Some(a) = arguments {
        buf.extend_from_slice(b", \"arguments\": ");
        serde_json::to_writer(&mut *buf, a)?;
    }
    buf.extend_from_slice(b", \"id\": ");
    match id.as_u64() {
        Some(n) => push_u64(buf, n),
        None => serde_json::to_writer(&mut *buf, id)?,
    }
    buf.extend_from_slice(b"}\n");
    Ok(())
}

fn push_u64(buf: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    buf.extend_from_slice(&digits[i..]);
}

fn check_limits_map(m: &Map<String, Value>) -> std::result::Result<u64, String> {
    // The arguments object sits inside the request object.
    let mut tokens = 2 + m.len().saturating_sub(1) as u64 + 2 * m.len() as u64;
    for v in m.values() {
        tokens += check_limits(v, 2)?;
    }
    if m.keys()
        .any(|k| k.len() > crate::message::MAX_TOKEN_BYTES / 6)
    {
        check_limits(&Value::Object(m.clone()), 1)?;
    }
    Ok(tokens)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `id`, `return`, `error`, `event` as text.
    type Members = (
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
    );

    fn head(s: &str) -> Option<Members> {
        let h = Head::of(s.as_bytes())?;
        let t = |r: Option<&RawValue>| r.map(|r| r.get().to_string());
        Some((t(h.id), t(h.ret), t(h.error), t(h.event)))
    }

    #[test]
    fn heads_tell_null_from_absent() {
        assert_eq!(
            head(r#"{"return": null, "error": {"class": "X"}, "id": 7}"#),
            Some((
                Some("7".into()),
                Some("null".into()),
                Some(r#"{"class": "X"}"#.into()),
                None
            ))
        );
        assert_eq!(
            head(r#"{"\u0072eturn": {"a": [1]}, "id": null, "x": 1}"#),
            Some((
                Some("null".into()),
                Some(r#"{"a": [1]}"#.into()),
                None,
                None
            ))
        );
        // Duplicate members are left to the full reading (the last one wins there).
        assert_eq!(head(r#"{"return": 1, "return": 2, "id": 1}"#), None);
        // A derived struct would take an array too: only objects are replies.
        assert!(Head::of(b"[1, 2, null]").is_none());
        assert!(Head::of(b" \t{\"id\": 1, \"return\": 2}\r\n").is_some());
    }

    #[test]
    fn small_uints() {
        assert_eq!(small_uint("0"), Some(0));
        assert_eq!(small_uint("1234"), Some(1234));
        assert_eq!(small_uint("007"), None);
        assert_eq!(small_uint("-1"), None);
        assert_eq!(small_uint("1e3"), None);
        assert_eq!(small_uint("18446744073709551615"), None);
        assert_eq!(small_uint(""), None);
    }
}
