//! One connection: greeting, negotiation, command mode, as one task.
//!
//! The task reads, decodes, queues and executes requests and writes replies itself; other
//! tasks (event broadcasters, out-of-band handlers still running) hand it bytes through the
//! session's [`Shared`] output. Replies gathered while handling one read go out in one write.
//!
//! QEMU's rules kept here: in-band requests (and JSON errors) are answered in order, one at a
//! time; at most `max_inband_queue` wait, then reading stops until there is room;
//! `exec-oob` requests (once `oob` is negotiated) run as soon as they are read, overtaking
//! queued in-band ones; events reach only negotiated sessions.

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use qmpkit_wire::{JsonError, JsonStreamer};
use serde_json::Value;
use tokio::io::Interest;

use crate::fdpass::short_read;
use crate::handler::SessionInfo;
use crate::server::{Inner, Pending, Server, SessState, Shared};

/// A connected socket the session task drives directly.
pub(crate) enum Sock {
    Unix(tokio::net::UnixStream),
    Tcp(tokio::net::TcpStream),
}

impl Sock {
    async fn readable(&self) -> io::Result<()> {
        match self {
            Sock::Unix(s) => s.readable().await,
            Sock::Tcp(s) => s.readable().await,
        }
    }

    async fn writable(&self) -> io::Result<()> {
        match self {
            Sock::Unix(s) => s.writable().await,
            Sock::Tcp(s) => s.writable().await,
        }
    }

    /// One read (see [`crate::fdpass::try_read_unix`]: a short read clears the readiness, as
    /// tokio's own reads do, except one that brought descriptors).
    fn try_read(&self, buf: &mut [u8], fds: &mut Vec<OwnedFd>) -> io::Result<usize> {
        let s = match self {
            Sock::Unix(s) => return crate::fdpass::try_read_unix(s, buf, fds),
            Sock::Tcp(s) => s,
        };
        let len = buf.len();
        let mut got = 0usize;
        let r = s.try_io(Interest::READABLE, || {
            // SAFETY: reading into a live, writable buffer of `len` bytes.
            let n = unsafe {
                libc::recv(
                    s.as_raw_fd(),
                    buf.as_mut_ptr() as *mut libc::c_void,
                    len,
                    libc::MSG_DONTWAIT,
                )
            };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            short_read(n as usize, len, &mut got)
        });
        match r {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && got > 0 => Ok(got),
            other => other,
        }
    }

    fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Sock::Unix(s) => s.try_write(buf),
            Sock::Tcp(s) => s.try_write(buf),
        }
    }
}

/// A queued in-band item and the descriptors that came before it.
struct Queued {
    item: Result<Value, JsonError>,
    fds: Vec<OwnedFd>,
}

/// Size of a session's first reads, and the most it grows to.
const FIRST_READ: usize = 4 * 1024;
const READ_CHUNK: usize = 64 * 1024;
/// How long a session that is ending waits for its client to take the last replies.
const LINGER: Duration = Duration::from_secs(10);

/// Is this decoded item an `exec-oob` request QEMU would run at once?
fn is_oob(item: &Result<Value, JsonError>) -> bool {
    match item {
        Ok(Value::Object(m)) => m.contains_key("exec-oob") && !m.contains_key("execute"),
        _ => false,
    }
}

/// How a session writes (QEMU's per-monitor choices).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionOptions {
    /// QEMU's `pretty=on` (`-mon …,pretty=on`, `-qmp-pretty`): every message pretty-printed
    /// over several lines (see [`qmpkit_wire::write_qemu_pretty`]).
    pub pretty: bool,
}

struct Out {
    buf: Vec<u8>,
    /// Replies written into `buf`, freed once it is sent.
    sent_values: Vec<crate::handler::Returned>,
    pos: usize,
    pretty: bool,
    /// With `pretty`: where the messages not yet reformatted start.
    plain_from: usize,
}

impl Out {
    /// With `pretty`, reformat the complete messages added since the last call: each
    /// one-line message pretty-printed, every line ended by CR LF as the monitor sends it.
    fn prettify(&mut self) {
        if !self.pretty || self.plain_from >= self.buf.len() {
            return;
        }
        // Only whole lines: the server always adds whole messages.
        let Some(end) = self.buf[self.plain_from..]
            .iter()
            .rposition(|b| *b == b'\n')
        else {
            return;
        };
        let end = self.plain_from + end + 1;
        let rest = self.buf.split_off(end);
        let plain = self.buf.split_off(self.plain_from);
        for line in plain.split(|b| *b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.is_empty() {
                continue;
            }
            match serde_json::from_slice::<Value>(line) {
                Ok(v) => {
                    let mut p = Vec::with_capacity(line.len() * 2);
                    qmpkit_wire::write_qemu_pretty(&v, &mut p);
                    for b in p {
                        if b == b'\n' {
                            self.buf.push(b'\r');
                        }
                        self.buf.push(b);
                    }
                }
                Err(_) => self.buf.extend_from_slice(line),
            }
            self.buf.extend_from_slice(b"\r\n");
        }
        self.plain_from = self.buf.len();
        self.buf.extend_from_slice(&rest);
    }

    fn unwritten(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Write what can be written without blocking. `Ok(true)`: all written.
    fn write(&mut self, sock: &Sock) -> io::Result<bool> {
        self.prettify();
        while self.pos < self.buf.len() {
            match sock.try_write(&self.buf[self.pos..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.pos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.buf.clear();
        self.sent_values.clear();
        self.pos = 0;
        self.plain_from = 0;
        if self.buf.capacity() > 4 << 20 {
            self.buf = Vec::with_capacity(64 * 1024);
        }
        Ok(true)
    }
}

/// What a session does when its input ends.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum OnEof {
    /// End once the last request is answered (a socket whose peer is gone).
    End,
    /// Keep sending events until the server shuts down (standard input closed while
    /// standard output is still read, as QEMU's `-qmp stdio` does).
    KeepOutput,
}

impl Server {
    pub(crate) async fn run_session_with(&self, sock: Sock, on_eof: OnEof, sopts: SessionOptions) {
        let inner = self.inner.clone();
        inner.active_sessions.fetch_add(1, Ordering::SeqCst);
        let id = inner.new_session_id();
        let shared = Arc::new(Shared::new());
        let mut st = SessState {
            negotiated: false,
            oob: false,
            info: SessionInfo::new(id),
            shared: shared.clone(),
        };
        run(&inner, &sock, &mut st, on_eof, sopts).await;
        shared.closed.store(true, Ordering::Relaxed);
        inner.unregister_session(id);
        inner.active_sessions.fetch_sub(1, Ordering::SeqCst);
        inner.session_ended.notify_waiters();
    }
}

async fn run(
    inner: &Arc<Inner>,
    sock: &Sock,
    st: &mut SessState,
    on_eof: OnEof,
    sopts: SessionOptions,
) {
    let shared = st.shared.clone();
    let max_queue = inner.opts.max_inband_queue.max(1);
    let pause = inner.opts.pause_backlog;
    let mut out = Out {
        buf: inner.greeting.clone(),
        sent_values: Vec::new(),
        pos: 0,
        pretty: sopts.pretty,
        plain_from: 0,
    };
    let mut decoder = JsonStreamer::new();
    let mut items: Vec<Result<Value, JsonError>> = Vec::new();
    let mut queue: VecDeque<Queued> = VecDeque::new();
    // Decoded, not yet taken in (behind a full queue).
    let mut unread: VecDeque<Queued> = VecDeque::new();
    let mut new_fds: Vec<OwnedFd> = Vec::new();
    let mut pending_fds: Vec<OwnedFd> = Vec::new();
    let mut current: Option<Pending> = None;
    let mut rbuf = vec![0u8; FIRST_READ];
    let mut eof = false;
    let mut blocked = false;
    let mut shutdown = inner.shutdown.subscribe();
    loop {
        loop {
            // Take in what QEMU would have read by now: it reads until its queue is full,
            // so requests (out-of-band ones too) behind a full queue wait their turn.
            // Without `oob`, QEMU queues one request at a time.
            let limit = if st.oob { max_queue } else { 1 };
            while queue.len() < limit {
                let Some(q) = unread.pop_front() else {
                    break;
                };
                if st.oob && is_oob(&q.item) {
                    run_oob(inner, st, q.item, q.fds, &mut out);
                } else {
                    queue.push_back(q);
                }
            }
            if current.is_some() || queue.is_empty() {
                break;
            }
            run_queue(inner, st, &shared, &mut queue, &mut current, &mut out);
        }
        // Events and out-of-band replies from other tasks.
        drain_shared(&shared, &mut out);
        if shared.closed.load(Ordering::Relaxed) {
            return;
        }
        if !blocked && out.unwritten() > 0 {
            match out.write(sock) {
                Ok(done) => blocked = !done,
                Err(_) => return,
            }
        }
        shared.backlog.store(out.unwritten(), Ordering::Relaxed);
        if eof && on_eof == OnEof::End && unread.is_empty() && queue.is_empty() && current.is_none()
        {
            linger(sock, &mut out).await;
            return;
        }
        if *shutdown.borrow() {
            linger(sock, &mut out).await;
            return;
        }
        let limit = if st.oob { max_queue } else { 1 };
        let can_read = !eof && unread.is_empty() && queue.len() < limit && out.unwritten() < pause;
        tokio::select! {
            biased;
            r = async {
                match current.as_mut() {
                    Some(p) => (&mut p.fut).await,
                    None => std::future::pending().await,
                }
            }, if current.is_some() => {
                if let Some(p) = current.take() {
                    drain_shared(&shared, &mut out);
                    let at = out.buf.len();
                    out.sent_values.extend(inner.finish(r, p.id, p.respond, &mut out.buf));
                    log_reply(st.info.id, &out.buf[at.min(out.buf.len())..]);
                }
            }
            r = sock.readable(), if can_read => {
                if r.is_err() {
                    eof = true;
                    continue;
                }
                match sock.try_read(&mut rbuf, &mut new_fds) {
                    Ok(0) => {
                        eof = true;
                        decoder.finish(&mut items);
                    }
                    Ok(n) => {
                        decoder.feed(&rbuf[..n], &mut items);
                        // Start small (many idle sessions), grow for clients that send a lot.
                        if n == rbuf.len() && rbuf.len() < READ_CHUNK {
                            rbuf.resize(rbuf.len() * 2, 0);
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock
                        || e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => {
                        // The connection is gone: nobody is left to answer.
                        return;
                    }
                }
                if !new_fds.is_empty() {
                    // One read brings one message's descriptors; as in QEMU, they
                    // replace those of an earlier message that nothing took.
                    pending_fds = std::mem::take(&mut new_fds);
                }
                for item in items.drain(..) {
                    let fds = std::mem::take(&mut pending_fds);
                    unread.push_back(Queued { item, fds });
                }
            }
            r = sock.writable(), if blocked => {
                if r.is_err() {
                    return;
                }
                blocked = false;
            }
            _ = shared.notify.notified() => {}
            _ = shutdown.changed() => {}
        }
    }
}

/// Run queued in-band requests, in order, until one has to wait (its handler is pending).
fn run_queue(
    inner: &Arc<Inner>,
    st: &mut SessState,
    shared: &Shared,
    queue: &mut VecDeque<Queued>,
    current: &mut Option<Pending>,
    out: &mut Out,
) {
    while current.is_none() {
        let Some(q) = queue.pop_front() else {
            break;
        };
        log_request(st.info.id, &q.item);
        let at = out.buf.len();
        *current = inner.dispatch(st, q.item, q.fds, &mut out.buf);
        // Answered at once (an error before any handler runs).
        log_reply(st.info.id, &out.buf[at.min(out.buf.len())..]);
        if let Some(p) = current.as_mut() {
            // Events the handler emitted go out before its reply, as in QEMU.
            drain_shared(shared, out);
            // Most handlers are done at once: answer without another turn of the loop.
            let waker = noop_waker();
            let mut cx = std::task::Context::from_waker(&waker);
            if let std::task::Poll::Ready(r) = std::pin::Pin::new(&mut p.fut).poll(&mut cx) {
                if let Some(p) = current.take() {
                    let at = out.buf.len();
                    out.sent_values
                        .extend(inner.finish(r, p.id, p.respond, &mut out.buf));
                    log_reply(st.info.id, &out.buf[at.min(out.buf.len())..]);
                }
            }
        }
    }
}

/// Dispatch an out-of-band request now; a handler that does not finish at once completes on
/// its own task and hands its reply over through the session's shared output.
fn run_oob(
    inner: &Arc<Inner>,
    st: &mut SessState,
    item: Result<Value, JsonError>,
    fds: Vec<OwnedFd>,
    out: &mut Out,
) {
    let id = st.info.id;
    log_request(id, &item);
    let at = out.buf.len();
    let dispatched = inner.dispatch(st, item, fds, &mut out.buf);
    log_reply(id, &out.buf[at.min(out.buf.len())..]);
    let Some(mut p) = dispatched else {
        return;
    };
    let waker = noop_waker();
    let mut cx = std::task::Context::from_waker(&waker);
    if let std::task::Poll::Ready(r) = std::pin::Pin::new(&mut p.fut).poll(&mut cx) {
        drain_shared(&st.shared, out);
        let at = out.buf.len();
        out.sent_values
            .extend(inner.finish(r, p.id, p.respond, &mut out.buf));
        log_reply(id, &out.buf[at.min(out.buf.len())..]);
        return;
    }
    let inner = inner.clone();
    let shared = st.shared.clone();
    tokio::spawn(async move {
        let r = (&mut p.fut).await;
        let mut line = Vec::new();
        inner.finish(r, p.id, p.respond, &mut line);
        log_reply(id, &line);
        if !line.is_empty() {
            shared.push(&line, inner.opts.max_backlog);
        }
    });
}

/// A request as decoded, at debug level (`RUST_LOG=qmpkit_server=debug`). Nothing is
/// formatted unless that level is enabled.
#[inline]
fn log_request(session: u64, item: &Result<Value, JsonError>) {
    if tracing::enabled!(tracing::Level::DEBUG) {
        match item {
            Ok(v) => tracing::debug!(session, "request {v}"),
            Err(e) => tracing::debug!(session, "request not JSON: {e}"),
        }
    }
}

/// The reply bytes a request produced (one line each), at debug level.
#[inline]
fn log_reply(session: u64, bytes: &[u8]) {
    if !bytes.is_empty() && tracing::enabled!(tracing::Level::DEBUG) {
        for line in String::from_utf8_lossy(bytes).lines() {
            tracing::debug!(session, "reply {line}");
        }
    }
}

/// Move what other tasks queued for this session into the output, in order.
fn drain_shared(shared: &Shared, out: &mut Out) {
    if let Ok(mut p) = shared.pending.lock() {
        if !p.is_empty() {
            if out.unwritten() == 0 {
                out.buf.clear();
                out.pos = 0;
                out.plain_from = 0;
                std::mem::swap(&mut out.buf, &mut p);
            } else {
                out.buf.extend_from_slice(&p);
                p.clear();
            }
        }
    }
}

/// Give the client a last chance to read what is left, bounded in time.
async fn linger(sock: &Sock, out: &mut Out) {
    let _ = tokio::time::timeout(LINGER, async {
        while out.unwritten() > 0 {
            match out.write(sock) {
                Ok(true) => break,
                Ok(false) => {
                    if sock.writable().await.is_err() {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
    })
    .await;
}

/// A waker that does nothing: for the first, immediate poll of a handler's future (the
/// session's own loop polls it again with a real waker if it is not done).
fn noop_waker() -> std::task::Waker {
    use std::task::{RawWaker, RawWakerVTable, Waker};
    fn clone(_: *const ()) -> RawWaker {
        RawWaker::new(std::ptr::null(), &VTABLE)
    }
    fn noop(_: *const ()) {}
    static VTABLE: RawWakerVTable = RawWakerVTable::new(clone, noop, noop, noop);
    // SAFETY: the vtable's functions ignore the data pointer and do nothing.
    unsafe { Waker::from_raw(RawWaker::new(std::ptr::null(), &VTABLE)) }
}
