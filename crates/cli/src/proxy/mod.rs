//! `qmpkit proxy`: many QMP clients on one QEMU monitor.
//!
//! The proxy negotiates with QEMU once (enabling `oob` when offered). Each client gets QEMU's
//! greeting as QEMU sent it and negotiates with the proxy, which answers as QEMU would. A
//! command is forwarded under an id of the proxy's own; the reply goes back to the client that
//! sent it with the client's id put back in its place (or no id, as sent), the rest of QEMU's
//! bytes untouched. Events go to every negotiated client as QEMU sent them.
//!
//! A plain request (standard JSON, as [`ObjectScanner`] reads it) is passed on as its own
//! bytes with only the `id` value replaced, and a reply as QEMU's bytes with only the tag at
//! its end replaced: nothing is decoded or re-encoded. What a client sends in one read goes to
//! QEMU in one write, and what QEMU sends in one read goes to each client in one write. Anything
//! else (QEMU's JSON extensions, invalid requests, negotiation, rate-limited listeners, a
//! recording proxy) goes through the exact decoder. Sockets are watched for input only (see
//! [`sink`]), so the proxy wakes once per message it passes on.
//!
//! File descriptors a unix client passes with SCM_RIGHTS wait with the proxy, as QEMU keeps
//! them for its connection until a command takes them (newer ones replace older ones), and go
//! to QEMU with that client's next command that takes descriptors ([`takes_fds`]), on the first
//! byte of the write that carries it. Such commands of two clients are never in flight at QEMU
//! at once (a gate: the second waits, with the rest of its client's input), and before one
//! whose client has nothing on QEMU's connection, whatever another client's command left there
//! (one refused on its arguments leaves them) is taken out by a `getfd` of the proxy's own and
//! given back to its client. So `getfd` and `add-fd` work as on a direct connection, and one
//! client's descriptors never reach another client's command.
//!
//! With `--busy-poll N`, after each message read the proxy keeps its runtime polling the
//! sockets, without sleeping, for N µs: an answer that comes within that time is passed on at
//! once rather than after the process is woken (which costs more than the proxy's own work),
//! at the price of a core kept busy meanwhile.
//!
//! When QEMU goes away, commands in flight are answered with an error, clients get a
//! `__org.qmpkit_PROXY_UPSTREAM_LOST` event, and the proxy reconnects (clients get
//! `__org.qmpkit_PROXY_UPSTREAM_BACK`). Listener rules are in [`policy`]; the recording format
//! in [`record`].

pub mod policy;
pub mod record;
mod sink;

use clap::{CommandFactory, Parser};
use policy::{Address, Bucket, Policy, Rules};
use qmpkit_wire::{
    encode_line, request_from, response_error, to_qemu_string, ErrorClass, JsonStreamer,
    ObjectScanner, QmpError, Scanned,
};
use record::Recorder;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use sink::{ReadHalf, Sink, Stream};
use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

const AFTER_HELP: &str = "\
Listener options (after the address, comma-separated):
  readonly=on            only query-* and commands that change nothing
  allow=CMD[:CMD...]     only these commands (CMD may end in * for a prefix)
  deny=CMD[:CMD...]      never these commands
  rate=N                 at most N commands per second per client
  uid=N[:N...]           only unix peers with these user ids (SO_PEERCRED)
  admin-uid=N[:N...]     unix peers with these user ids are not restricted
  arg=CMD.ARG=V[|V...]   where CMD is sent with ARG (a.b for a member of a), it must
                         be one of these values (V* matches a prefix; repeatable)
--uid-rules UID[:UID...],OPTION[,...] holds unix clients with these peer user ids to
  these rules (readonly, allow, deny, rate, arg) as well as to their listener's.
A refused command is answered {\"error\": {\"class\": \"GenericError\", \"desc\": ...}}.

Examples:
  qmpkit proxy --upstream unix:/run/vm.sock --listen unix:/run/vm-rw.sock \\
      --listen unix:/run/vm-ro.sock,readonly=on --record /var/log/vm-qmp.jsonl";

/// Share one QMP monitor between many clients
#[derive(Parser, Debug)]
#[command(name = "qmpkit proxy", after_help = AFTER_HELP)]
pub(crate) struct Cli {
    /// QEMU's monitor: unix:PATH, tcp:HOST:PORT, a socket path or HOST:PORT
    #[arg(long, value_name = "ADDRESS")]
    upstream: String,
    /// Where clients connect: unix:PATH[,option...] or tcp:HOST:PORT[,option...] (repeatable)
    #[arg(long, value_name = "ADDRESS[,OPTION...]", required = true)]
    listen: Vec<String>,
    /// Append every message to FILE as JSON lines (time, client, direction, message)
    #[arg(long, value_name = "FILE")]
    record: Option<std::path::PathBuf>,
    /// Rules for unix clients whose peer user id is listed, on top of their listener's:
    /// UID[:UID...],OPTION[,OPTION...] with readonly, allow, deny, rate, arg (repeatable)
    #[arg(long, value_name = "UID[:UID...],OPTION...")]
    uid_rules: Vec<String>,
    /// Allow listening on a non-loopback TCP address
    #[arg(long)]
    allow_remote_tcp: bool,
    /// After each message, keep polling the sockets for this long before sleeping, so that
    /// an answer coming soon is passed on without waiting to be woken: lower latency for a
    /// core kept busy (worth it on a machine with cores to spare)
    #[arg(long, value_name = "MICROSECONDS", default_value_t = 0)]
    busy_poll: u64,
}

pub(crate) fn command() -> clap::Command {
    Cli::command().name("proxy")
}

pub fn run(args: Vec<String>) -> ExitCode {
    let argv = std::iter::once("qmpkit proxy".to_string()).chain(args);
    let cli = match Cli::try_parse_from(argv) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("qmpkit proxy: {e}");
            return ExitCode::from(2);
        }
    };
    match rt.block_on(main(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("qmpkit proxy: {e}");
            ExitCode::from(2)
        }
    }
}

/// A connected QEMU.
struct Up {
    sink: Arc<Sink>,
    oob: bool,
}

/// A command forwarded and not yet answered.
struct InFlight {
    client: u64,
    /// The client's id, already in QEMU's text form; `None` when it sent none.
    id: Option<IdText>,
    /// Replies the proxy made itself to the same client's later commands, held back so that the
    /// client gets its replies in the order of its commands, as QEMU answers in-band commands.
    then: Vec<Vec<u8>>,
    /// A command that takes descriptors (it holds the descriptor gate while in flight).
    takes_fds: bool,
    /// The proxy's own `getfd` that empties QEMU's descriptors before another client's
    /// command that takes some: what QEMU held, and whose they were.
    drain: Option<Slot>,
}

/// A client as the rest of the proxy sees it.
struct Downstream {
    sink: Arc<Sink>,
    negotiated: bool,
    /// The client's latest in-band command still in flight.
    last_inband: Option<u64>,
    /// Descriptors received and not yet sent on: they go to QEMU with the client's next
    /// command that takes descriptors (see [`takes_fds`]).
    fds: Vec<OwnedFd>,
}

/// The commands that take the descriptors passed with them (or before them) on QEMU's
/// connection. Descriptors wait with the proxy until their client sends one of these.
fn takes_fds(command: &str) -> bool {
    matches!(command, "getfd" | "add-fd")
}

/// Descriptors handed to QEMU with a client's command: QEMU keeps them for its connection
/// until a command takes them (one that fails on its arguments leaves them there).
struct Slot {
    client: u64,
    /// Copies, given back to the client if QEMU still held them when another client's command
    /// needed the connection's descriptors emptied.
    dups: Vec<OwnedFd>,
}

#[derive(Default)]
struct State {
    up: Option<Up>,
    /// QEMU's latest greeting, as it sent it.
    greeting: Arc<[u8]>,
    offers_oob: bool,
    inflight: Tags<InFlight>,
    clients: Tags<Downstream>,
    /// The client whose commands that take descriptors are in flight, and how many: another
    /// client's such commands wait, so that descriptors reach QEMU only while their own
    /// client's commands are the ones that can take them.
    gate: Option<(u64, usize)>,
    /// Whose descriptors QEMU may still hold.
    slot: Option<Slot>,
}

struct Hub {
    state: Mutex<State>,
    /// Signalled when the descriptor gate opens.
    gate: tokio::sync::Notify,
    next_tag: AtomicU64,
    next_client: AtomicU64,
    record: Option<Recorder>,
    /// `--uid-rules`: rule sets by peer user id.
    uid_rules: Vec<(Vec<u32>, Arc<Policy>)>,
    /// Messages handled so far (any direction), and the busy-poller's wake-up.
    activity: AtomicU64,
    poller: tokio::sync::Notify,
}

impl Hub {
    /// Something was read: the busy-poller keeps the sockets polled for a while.
    fn active(&self) {
        self.activity.fetch_add(1, Ordering::Relaxed);
        self.poller.notify_one();
    }
}

/// Keep the runtime polling its sockets without sleeping until `window` has passed without
/// anything read: a reply that comes within it is handled at once, not after a wake-up of
/// the process (which, on a busy machine, costs more than the proxy's own work). Each turn
/// yields, and the runtime polls its I/O driver (without blocking) before the next.
async fn busy_poll(hub: Arc<Hub>, window: Duration) {
    loop {
        hub.poller.notified().await;
        let mut seen = hub.activity.load(Ordering::Relaxed);
        let mut since = std::time::Instant::now();
        while since.elapsed() < window {
            tokio::task::yield_now().await;
            let now = hub.activity.load(Ordering::Relaxed);
            if now != seen {
                seen = now;
                since = std::time::Instant::now();
            }
        }
    }
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    match m.lock() {
        Ok(g) => g,
        Err(e) => e.into_inner(),
    }
}

/// The members of a line from QEMU that route it.
#[derive(Deserialize)]
struct Head<'a> {
    #[serde(default, borrow)]
    id: Option<&'a RawValue>,
    #[serde(default, borrow)]
    event: Option<&'a RawValue>,
}

/// `line` with its `id` member's value (at `raw`, a slice of `line`) replaced by `new`, or the
/// member removed when `new` is `None`.
fn splice_id(line: &[u8], raw: &RawValue, new: Option<&str>) -> Vec<u8> {
    let start = (raw.get().as_ptr() as usize).wrapping_sub(line.as_ptr() as usize);
    let end = start + raw.get().len();
    if end > line.len() {
        return line.to_vec();
    }
    let mut out = Vec::with_capacity(line.len() + 16);
    if let Some(text) = new {
        out.extend_from_slice(&line[..start]);
        out.extend_from_slice(text.as_bytes());
        out.extend_from_slice(&line[end..]);
        return out;
    }
    // Remove `, "id": VALUE` (or `"id": VALUE, ` when it comes first).
    let ws = |b: u8| b.is_ascii_whitespace();
    let mut k = start;
    while k > 0 && ws(line[k - 1]) {
        k -= 1;
    }
    if k == 0 || line[k - 1] != b':' {
        return line.to_vec();
    }
    k -= 1;
    while k > 0 && ws(line[k - 1]) {
        k -= 1;
    }
    if k < 4 || &line[k - 4..k] != b"\"id\"" {
        return line.to_vec();
    }
    let key = k - 4;
    let mut b = key;
    while b > 0 && ws(line[b - 1]) {
        b -= 1;
    }
    if b > 0 && line[b - 1] == b',' {
        out.extend_from_slice(&line[..b - 1]);
        out.extend_from_slice(&line[end..]);
    } else {
        let mut e = end;
        while e < line.len() && ws(line[e]) {
            e += 1;
        }
        if e < line.len() && line[e] == b',' {
            e += 1;
            while e < line.len() && ws(line[e]) {
                e += 1;
            }
        }
        out.extend_from_slice(&line[..key]);
        out.extend_from_slice(&line[e..]);
    }
    out
}

/// How QEMU writes a reply's `id` member, which it puts last.
const TAIL_ID: &[u8] = b", \"id\": ";

/// The proxy's tag in a reply line that ends `…, "id": TAG}` and the range of its digits.
/// Nothing but the top-level `id` can be written there: the object's closing brace follows.
fn tail_tag(line: &[u8]) -> Option<(u64, std::ops::Range<usize>)> {
    let mut end = line.len();
    while end > 0 && matches!(line[end - 1], b'\r' | b'\n' | b' ') {
        end -= 1;
    }
    if end == 0 || line[end - 1] != b'}' {
        return None;
    }
    let digits_end = end - 1;
    let mut start = digits_end;
    while start > 0 && line[start - 1].is_ascii_digit() {
        start -= 1;
    }
    if start == digits_end || digits_end - start > 19 || !line[..start].ends_with(TAIL_ID) {
        return None;
    }
    let tag = line[start..digits_end].iter().try_fold(0u64, |n, &d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })?;
    Some((tag, start..digits_end))
}

fn error_line(class: ErrorClass, desc: &str, id: Option<Value>) -> Vec<u8> {
    encode_line(&response_error(&QmpError::new(class, desc), id))
}

/// An event of the proxy's own, stamped now.
fn own_event(name: &str, data: Value) -> Vec<u8> {
    let e = qmpkit_wire::Event::now(name, Some(data));
    encode_line(&e.to_value())
}

/// Messages gathered per client while a batch is handled, written once per client after it
/// (kept between batches, with its buffers).
#[derive(Default)]
struct Batch {
    out: Vec<(u64, Vec<u8>)>,
}

impl Batch {
    fn buffer(&mut self, cid: u64) -> &mut Vec<u8> {
        let at = match self.out.iter().position(|(c, _)| *c == cid) {
            Some(i) => i,
            None => {
                self.out.push((cid, Vec::new()));
                self.out.len() - 1
            }
        };
        &mut self.out[at].1
    }

    fn push(&mut self, cid: u64, bytes: &[u8]) {
        self.buffer(cid).extend_from_slice(bytes);
    }

    fn flush(&mut self, st: &State) {
        // Gone clients' buffers go.
        self.out
            .retain_mut(|(cid, bytes)| match st.clients.get(cid) {
                Some(c) => {
                    c.sink.send(bytes);
                    bytes.clear();
                    true
                }
                None => false,
            });
    }
}

/// QEMU's answer to the proxy's draining `getfd` when it held a descriptor.
const DRAINED: &str = "expects a name not starting with a digit";

impl Hub {
    /// A command of `client` that takes descriptors is answered (or gone).
    fn took_fds(&self, st: &mut State, client: u64) {
        if let Some((c, n)) = &mut st.gate {
            if *c == client {
                *n -= 1;
                if *n == 0 {
                    st.gate = None;
                    self.gate.notify_waiters();
                }
            }
        }
    }

    fn recorded(&self, client: Option<u64>, bytes: &[u8]) {
        if let Some(r) = &self.record {
            r.text(client, "out", bytes);
        }
    }

    /// A reply the proxy makes itself: after the client's in-band commands still in flight.
    fn local_reply(&self, st: &mut State, batch: &mut Batch, cid: u64, bytes: Vec<u8>) {
        let behind = st.clients.get(&cid).and_then(|c| c.last_inband);
        if let Some(f) = behind.and_then(|t| st.inflight.get_mut(&t)) {
            f.then.push(bytes);
            return;
        }
        self.recorded(Some(cid), &bytes);
        batch.push(cid, &bytes);
    }

    fn broadcast(&self, st: &State, batch: &mut Batch, bytes: &[u8]) {
        self.recorded(None, bytes);
        for (cid, c) in &st.clients {
            if c.negotiated {
                batch.push(*cid, bytes);
            }
        }
    }

    /// The answer to the command tagged `tag` (and what was held back behind it), given in
    /// pieces that follow each other.
    fn answered(&self, st: &mut State, batch: &mut Batch, tag: u64, reply: &[&[u8]]) {
        if let Some(mut f) = st.inflight.remove(&tag) {
            self.deliver(st, batch, tag, &mut f, reply);
        }
    }

    /// [`Hub::answered`] for a command already taken out of the table.
    fn deliver(
        &self,
        st: &mut State,
        batch: &mut Batch,
        tag: u64,
        f: &mut InFlight,
        reply: &[&[u8]],
    ) {
        if f.takes_fds {
            self.took_fds(st, f.client);
        }
        if let Some(slot) = f.drain.take() {
            // QEMU answers a digit-led name so only once it has taken a descriptor.
            let held = reply.concat();
            let held = held.windows(DRAINED.len()).any(|w| w == DRAINED.as_bytes());
            if let Some(c) = st.clients.get_mut(&slot.client) {
                if held && c.fds.is_empty() {
                    c.fds = slot.dups;
                }
            }
            return;
        }
        let Some(c) = st.clients.get_mut(&f.client) else {
            return;
        };
        if c.last_inband == Some(tag) {
            c.last_inband = None;
        }
        if self.record.is_some() {
            self.recorded(Some(f.client), &reply.concat());
        }
        let out = batch.buffer(f.client);
        for part in reply {
            out.extend_from_slice(part);
        }
        for b in std::mem::take(&mut f.then) {
            self.recorded(Some(f.client), &b);
            batch.push(f.client, &b);
        }
    }

    /// Complete lines from QEMU (ranges of `data`, each with its line end).
    fn on_upstream_lines(&self, data: &[u8], lines: &[(usize, usize)], batch: &mut Batch) {
        let mut st = lock(&self.state);
        for &(a, b) in lines {
            let line = &data[a..b];
            // A reply to a forwarded command: QEMU writes `id` last.
            if let Some((tag, digits)) = tail_tag(line) {
                let Some(mut f) = st.inflight.remove(&tag) else {
                    continue;
                };
                let id = f.id.take();
                let parts = match &id {
                    Some(id) => [&line[..digits.start], id.as_bytes(), &line[digits.end..]],
                    None => [
                        &line[..digits.start - TAIL_ID.len()],
                        &line[digits.end..],
                        b"",
                    ],
                };
                self.deliver(&mut st, batch, tag, &mut f, &parts);
                continue;
            }
            let Ok(head) = serde_json::from_slice::<Head>(line) else {
                continue;
            };
            if head.event.is_some() {
                self.broadcast(&st, batch, line);
                continue;
            }
            let Some(raw) = head.id else {
                continue;
            };
            let Ok(tag) = raw.get().parse::<u64>() else {
                continue;
            };
            let Some(id) = st.inflight.get(&tag).map(|f| f.id.clone()) else {
                continue;
            };
            let bytes = splice_id(line, raw, id.as_deref());
            self.answered(&mut st, batch, tag, &[&bytes]);
        }
        batch.flush(&st);
    }

    /// QEMU went away: answer what was in flight, tell everyone.
    fn lost(&self, reason: &str) {
        let mut st = lock(&self.state);
        let mut batch = Batch::default();
        st.up = None;
        // A new connection holds no descriptors.
        st.slot = None;
        let mut tags: Vec<u64> = st.inflight.keys().copied().collect();
        tags.sort_unstable();
        for tag in tags {
            let Some(id) = st.inflight.get(&tag).map(|f| f.id.clone()) else {
                continue;
            };
            let id = id.and_then(|t| serde_json::from_str::<Value>(&t).ok());
            let bytes = error_line(
                ErrorClass::GenericError,
                &format!("QEMU closed the monitor connection before answering ({reason})"),
                id,
            );
            self.answered(&mut st, &mut batch, tag, &[&bytes]);
        }
        for c in st.clients.values_mut() {
            c.last_inband = None;
        }
        let mut data = Map::new();
        data.insert("reason".into(), Value::String(reason.into()));
        let ev = own_event("__org.qmpkit_PROXY_UPSTREAM_LOST", Value::Object(data));
        self.broadcast(&st, &mut batch, &ev);
        batch.flush(&st);
    }
}

async fn connect(addr: &Address) -> std::io::Result<Stream> {
    match addr {
        Address::Unix(p) => Stream::unix(tokio::net::UnixStream::connect(p).await?),
        Address::Tcp(a) => Stream::tcp(tokio::net::TcpStream::connect(a.as_str()).await?),
    }
}

/// QEMU's side as it is read: a buffer of 64 KiB read into, and the start of a line whose end
/// has not come yet.
struct UpReader {
    r: ReadHalf,
    buf: Vec<u8>,
    acc: Vec<u8>,
}

impl UpReader {
    /// Read one line (up to and with `\n`); `None` at the end.
    async fn line(&mut self) -> std::io::Result<Option<Vec<u8>>> {
        loop {
            if let Some(i) = self.acc.iter().position(|&b| b == b'\n') {
                let rest = self.acc.split_off(i + 1);
                return Ok(Some(std::mem::replace(&mut self.acc, rest)));
            }
            let n = self.r.read(&mut self.buf, None).await?;
            if n == 0 {
                return Ok(None);
            }
            self.acc.extend_from_slice(&self.buf[..n]);
        }
    }
}

/// Connect and negotiate with QEMU: its reader (past negotiation), writer, greeting, oob.
async fn open_upstream(addr: &Address) -> Result<(UpReader, Arc<Sink>, Vec<u8>, bool), String> {
    let (r, sink) = connect(addr)
        .await
        .and_then(Stream::split)
        .map_err(|e| format!("{addr}: {e}"))?;
    let mut r = UpReader {
        r,
        buf: vec![0; 64 * 1024],
        acc: Vec::new(),
    };
    let res = async {
        let greeting = tokio::time::timeout(Duration::from_secs(10), r.line())
            .await
            .map_err(|_| format!("{addr}: no greeting within 10 s"))?
            .map_err(|e| format!("{addr}: {e}"))?
            .ok_or_else(|| format!("{addr}: closed before greeting"))?;
        let g: Value = serde_json::from_slice(&greeting)
            .map_err(|e| format!("{addr}: invalid greeting: {e}"))?;
        let caps = g
            .pointer("/QMP/capabilities")
            .and_then(Value::as_array)
            .ok_or_else(|| format!("{addr}: not a QMP greeting"))?;
        let oob = caps.iter().any(|c| c == "oob");
        let neg: &[u8] = if oob {
            b"{\"execute\": \"qmp_capabilities\", \"arguments\": {\"enable\": [\"oob\"]}}\n"
        } else {
            b"{\"execute\": \"qmp_capabilities\"}\n"
        };
        sink.send(neg);
        loop {
            let line = r
                .line()
                .await
                .map_err(|e| format!("{addr}: {e}"))?
                .ok_or_else(|| format!("{addr}: closed during negotiation"))?;
            let v: Value = serde_json::from_slice(&line).unwrap_or(Value::Null);
            if v.get("return").is_some() {
                break;
            }
            if let Some(e) = v.get("error") {
                return Err(format!("{addr}: qmp_capabilities failed: {e}"));
            }
        }
        Ok((greeting, oob))
    }
    .await;
    match res {
        Ok((greeting, oob)) => Ok((r, sink, greeting, oob)),
        Err(e) => {
            sink.close();
            Err(e)
        }
    }
}

/// Serve QEMU's side for as long as it is connected; the reason it ended.
async fn run_upstream(
    hub: Arc<Hub>,
    r: UpReader,
    sink: Arc<Sink>,
    greeting: Vec<u8>,
    oob: bool,
) -> String {
    {
        let mut st = lock(&hub.state);
        st.up = Some(Up {
            sink: sink.clone(),
            oob,
        });
        st.greeting = Arc::from(greeting);
        st.offers_oob = oob;
    }
    let UpReader {
        r,
        mut buf,
        mut acc,
    } = r;
    let mut lines = Vec::new();
    let mut batch = Batch::default();
    // What negotiation read past its reply comes first.
    let mut n = 0;
    let reason = loop {
        // Whole lines are handled where they were read; only the start of a line whose end
        // has not come yet is kept, and joined with what comes next.
        let data: &[u8] = if acc.is_empty() {
            &buf[..n]
        } else {
            acc.extend_from_slice(&buf[..n]);
            &acc
        };
        lines.clear();
        let mut start = 0;
        while let Some(i) = data[start..].iter().position(|&b| b == b'\n') {
            lines.push((start, start + i + 1));
            start += i + 1;
        }
        if !lines.is_empty() {
            hub.on_upstream_lines(data, &lines, &mut batch);
            hub.active();
        }
        if acc.is_empty() {
            acc.extend_from_slice(&buf[start..n]);
        } else {
            acc.drain(..start);
        }
        n = match r.read(&mut buf, None).await {
            Ok(0) => break "QEMU closed the connection".to_string(),
            Ok(n) => n,
            Err(e) => break format!("read failed: {e}"),
        };
    };
    sink.close();
    reason
}
async fn main(cli: Cli) -> Result<(), String> {
    let upstream = match qmpkit_client::Endpoint::parse(&cli.upstream) {
        qmpkit_client::Endpoint::Unix(p) => Address::Unix(p),
        qmpkit_client::Endpoint::Tcp(a) => Address::Tcp(a),
    };
    let mut listeners = Vec::new();
    for spec in &cli.listen {
        let (addr, policy) =
            policy::parse_listen(spec).map_err(|e| format!("--listen {spec}: {e}"))?;
        listeners.push((addr, Arc::new(policy)));
    }
    let mut uid_rules = Vec::new();
    for spec in &cli.uid_rules {
        let (ids, p) =
            policy::parse_uid_rules(spec).map_err(|e| format!("--uid-rules {spec}: {e}"))?;
        uid_rules.push((ids, Arc::new(p)));
    }
    let record = match &cli.record {
        Some(p) => Some(Recorder::create(p).map_err(|e| format!("--record {}: {e}", p.display()))?),
        None => None,
    };
    let hub = Arc::new(Hub {
        state: Mutex::new(State::default()),
        gate: tokio::sync::Notify::new(),
        next_tag: AtomicU64::new(1),
        next_client: AtomicU64::new(1),
        record,
        uid_rules,
        activity: AtomicU64::new(0),
        poller: tokio::sync::Notify::new(),
    });
    if cli.busy_poll > 0 {
        tokio::spawn(busy_poll(hub.clone(), Duration::from_micros(cli.busy_poll)));
    }
    // QEMU first: a proxy that cannot reach it at start is misconfigured.
    let first = open_upstream(&upstream).await?;
    for (addr, policy) in listeners {
        listen(hub.clone(), addr, policy, cli.allow_remote_tcp).await?;
    }
    let hub2 = hub.clone();
    let up = tokio::spawn(async move {
        let mut conn = Some(first);
        loop {
            if let Some((r, sink, g, oob)) = conn.take() {
                let reason = run_upstream(hub2.clone(), r, sink, g, oob).await;
                eprintln!("qmpkit proxy: {upstream}: {reason}; reconnecting");
                hub2.lost(&reason);
            }
            let mut delay = Duration::from_millis(50);
            let greeting = loop {
                tokio::time::sleep(delay).await;
                match open_upstream(&upstream).await {
                    Ok(c) => {
                        let g = c.2.clone();
                        conn = Some(c);
                        break g;
                    }
                    Err(_) => delay = (delay * 2).min(Duration::from_secs(2)),
                }
            };
            eprintln!("qmpkit proxy: {upstream}: connected again");
            let st = lock(&hub2.state);
            let mut data = Map::new();
            data.insert(
                "greeting".into(),
                serde_json::from_slice(&greeting).unwrap_or(Value::Null),
            );
            let ev = own_event("__org.qmpkit_PROXY_UPSTREAM_BACK", Value::Object(data));
            let mut batch = Batch::default();
            hub2.broadcast(&st, &mut batch, &ev);
            batch.flush(&st);
        }
    });
    tokio::select! {
        _ = up => Err("the upstream task ended".into()),
        _ = tokio::signal::ctrl_c() => Ok(()),
        _ = terminate() => Ok(()),
    }
}

async fn terminate() {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut s) => {
            s.recv().await;
        }
        Err(_) => std::future::pending().await,
    }
}

async fn listen(
    hub: Arc<Hub>,
    addr: Address,
    policy: Arc<Policy>,
    allow_remote: bool,
) -> Result<(), String> {
    match &addr {
        Address::Unix(p) => {
            let l = qmpkit_server::bind_unix_mode(std::path::Path::new(p), None)
                .map_err(|e| format!("{addr}: {e}"))?;
            eprintln!("qmpkit proxy: listening on {addr}");
            tokio::spawn(async move {
                loop {
                    let Ok((s, _)) = l.accept().await else {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    };
                    let uid = s.peer_cred().ok().map(|c| c.uid());
                    if let Ok(s) = Stream::unix(s) {
                        tokio::spawn(client(hub.clone(), s, policy.clone(), uid));
                    }
                }
            });
        }
        Address::Tcp(a) => {
            let l = tokio::net::TcpListener::bind(a.as_str())
                .await
                .map_err(|e| format!("{addr}: {e}"))?;
            let local = l.local_addr().map_err(|e| format!("{addr}: {e}"))?;
            if !local.ip().is_loopback() && !allow_remote {
                return Err(format!(
                    "{addr}: not a loopback address (use --allow-remote-tcp)"
                ));
            }
            eprintln!("qmpkit proxy: listening on tcp:{local}");
            tokio::spawn(async move {
                loop {
                    let Ok((s, _)) = l.accept().await else {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    };
                    if let Ok(s) = Stream::tcp(s) {
                        tokio::spawn(client(hub.clone(), s, policy.clone(), None));
                    }
                }
            });
        }
    }
    Ok(())
}

/// What a client's session knows about itself.
struct ClientState {
    cid: u64,
    negotiated: bool,
    oob: bool,
    /// The strictest rate that applies, and the refusal past it.
    bucket: Option<(Bucket, String)>,
}

/// One client, from its greeting to its hang-up.
async fn client(hub: Arc<Hub>, s: Stream, policy: Arc<Policy>, uid: Option<u32>) {
    if !policy.admits(uid) {
        eprintln!(
            "qmpkit proxy: refused a client with user id {}",
            uid.map(|u| u.to_string())
                .unwrap_or_else(|| "unknown".into())
        );
        return;
    }
    let Ok((r, sink)) = s.split() else {
        return;
    };
    let rules = Rules::new(policy, &hub.uid_rules, uid);
    let cid = hub.next_client.fetch_add(1, Ordering::Relaxed);
    {
        let mut st = lock(&hub.state);
        st.clients.insert(
            cid,
            Downstream {
                sink: sink.clone(),
                negotiated: false,
                last_inband: None,
                fds: Vec::new(),
            },
        );
        let g = st.greeting.clone();
        hub.recorded(Some(cid), &g);
        sink.send(&g);
    }
    let mut me = ClientState {
        cid,
        negotiated: false,
        oob: false,
        bucket: rules.bucket(),
    };
    let mut streamer = JsonStreamer::new();
    let mut scanner = ObjectScanner::new();
    let mut items = Vec::new();
    // Decoded messages not handled yet (behind one that waits for the descriptor gate).
    let mut queue = std::collections::VecDeque::new();
    let mut buf = vec![0u8; 64 * 1024];
    // The start of a plain request whose end has not come yet.
    let mut held: Vec<u8> = Vec::new();
    let mut up_out = Vec::new();
    let mut up_fds = Vec::new();
    let mut got_fds = Vec::new();
    let mut batch = Batch::default();
    loop {
        let n = match r.read(&mut buf, Some(&mut got_fds)).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        hub.active();
        let joined;
        let data: &[u8] = if held.is_empty() {
            &buf[..n]
        } else {
            held.extend_from_slice(&buf[..n]);
            joined = std::mem::take(&mut held);
            &joined
        };
        let mut pos = 0;
        loop {
            let mut up_sink = None;
            let (waits, gate) = {
                let mut st = lock(&hub.state);
                if !got_fds.is_empty() {
                    // As QEMU does, descriptors from a later message replace those still waiting.
                    if let Some(c) = st.clients.get_mut(&cid) {
                        c.fds = std::mem::take(&mut got_fds);
                    }
                }
                let mut out = Forward {
                    up: &mut up_out,
                    fds: &mut up_fds,
                    sink: &mut up_sink,
                };
                let waits = consume(
                    &hub,
                    &mut st,
                    &mut me,
                    &rules,
                    &mut batch,
                    &mut out,
                    Input {
                        data,
                        pos: &mut pos,
                        held: &mut held,
                        streamer: &mut streamer,
                        scanner: &mut scanner,
                        items: &mut items,
                        queue: &mut queue,
                    },
                );
                batch.flush(&st);
                // Registered before the lock goes, so a release in between is not missed.
                (waits, hub.gate.notified())
            };
            if let Some(s) = up_sink {
                s.send_fds(&up_out, std::mem::take(&mut up_fds));
            }
            up_out.clear();
            if !waits {
                break;
            }
            gate.await;
        }
    }
    // Gone: replies still on their way are dropped when they arrive.
    if let Some(rec) = &hub.record {
        rec.eof(cid);
    }
    {
        let mut st = lock(&hub.state);
        st.clients.remove(&cid);
        st.inflight.retain(|_, f| f.client != cid);
        if st.gate.is_some_and(|(c, _)| c == cid) {
            st.gate = None;
            hub.gate.notify_waiters();
        }
    }
    sink.close();
}

/// A client's input being handled, from `pos` on.
struct Input<'a> {
    data: &'a [u8],
    pos: &'a mut usize,
    /// Where the start of a plain request whose end has not come yet is kept.
    held: &'a mut Vec<u8>,
    streamer: &'a mut JsonStreamer,
    scanner: &'a mut ObjectScanner,
    items: &'a mut Vec<Result<Value, qmpkit_wire::JsonError>>,
    queue: &'a mut std::collections::VecDeque<Result<Value, qmpkit_wire::JsonError>>,
}

/// Handle a client's input: true when it stopped before a command that takes descriptors
/// while another client's are in flight (the rest waits for the gate).
fn consume(
    hub: &Hub,
    st: &mut State,
    me: &mut ClientState,
    policy: &Rules,
    batch: &mut Batch,
    out: &mut Forward<'_>,
    inp: Input<'_>,
) -> bool {
    let data = inp.data;
    loop {
        while let Some(item) = inp.queue.front() {
            if me.negotiated && command_of(item).is_some_and(takes_fds) && gate_closed(st, me.cid) {
                return true;
            }
            let Some(item) = inp.queue.pop_front() else {
                break;
            };
            if let Some(rec) = &hub.record {
                match &item {
                    Ok(v) => rec.value(Some(me.cid), "in", v),
                    Err(e) => rec.invalid(me.cid, e.desc()),
                }
            }
            handle(hub, st, batch, me, policy, item, out);
        }
        let pos = *inp.pos;
        if pos >= data.len() {
            return false;
        }
        let rest = &data[pos..];
        if !inp.streamer.is_idle() {
            inp.streamer.feed(rest, inp.items);
            *inp.pos = data.len();
        } else {
            match rest[0] {
                b' ' | b'\t' | b'\r' | b'\n' => *inp.pos += 1,
                b'{' => match inp.scanner.scan(rest) {
                    Scanned::Object(len) => {
                        let msg = &rest[..len];
                        match forward_plain(hub, st, me, policy, msg, inp.scanner, out) {
                            Plain::Done => {}
                            Plain::Wait => return true,
                            Plain::Exact => inp.streamer.feed(msg, inp.items),
                        }
                        *inp.pos += len;
                    }
                    Scanned::Incomplete if rest.len() <= HOLD_MAX => {
                        inp.held.extend_from_slice(rest);
                        *inp.pos = data.len();
                    }
                    _ => {
                        inp.streamer.feed(rest, inp.items);
                        *inp.pos = data.len();
                    }
                },
                _ => {
                    inp.streamer.feed(rest, inp.items);
                    *inp.pos = data.len();
                }
            }
        }
        if !inp.items.is_empty() {
            inp.queue.extend(inp.items.drain(..));
        }
    }
}

/// The longest beginning of a plain request held back for its end (longer ones go to the
/// exact decoder, which holds them itself).
const HOLD_MAX: usize = 64 * 1024;

/// Where commands for QEMU gather while a client's input is handled: sent in one write after.
/// The client's waiting descriptors go with the first command, on the write's first byte.
struct Forward<'a> {
    up: &'a mut Vec<u8>,
    fds: &'a mut Vec<OwnedFd>,
    sink: &'a mut Option<Arc<Sink>>,
}

impl Forward<'_> {
    /// Before a command of `cid` that takes descriptors: its waiting descriptors go with the
    /// write (QEMU replaces what it held with them); with none, what QEMU may hold of another
    /// client's is taken out first by a `getfd` of the proxy's own. The gate is `cid`'s.
    fn hand_fds(&mut self, hub: &Hub, st: &mut State, cid: u64) {
        let own = st
            .clients
            .get_mut(&cid)
            .map(|c| std::mem::take(&mut c.fds))
            .unwrap_or_default();
        if !own.is_empty() {
            let dups = own.iter().filter_map(|f| f.try_clone().ok()).collect();
            st.slot = Some(Slot { client: cid, dups });
            self.fds.extend(own);
        } else if st.slot.as_ref().is_some_and(|s| s.client != cid) {
            let tag = hub.next_tag.fetch_add(1, Ordering::Relaxed);
            st.inflight.insert(
                tag,
                InFlight {
                    client: 0,
                    id: None,
                    then: Vec::new(),
                    takes_fds: false,
                    drain: st.slot.take(),
                },
            );
            self.up.extend_from_slice(
                b"{\"execute\": \"getfd\", \"arguments\": {\"fdname\": \"0\"}, \"id\": ",
            );
            push_u64(self.up, tag);
            self.up.extend_from_slice(b"}\n");
        }
        match &mut st.gate {
            Some((c, n)) if *c == cid => *n += 1,
            _ => st.gate = Some((cid, 1)),
        }
    }

    /// Note a command to forward under `tag`; its bytes are then appended to `self.up`.
    fn start(
        &mut self,
        hub: &Hub,
        st: &mut State,
        me: &mut ClientState,
        id: Option<IdText>,
        oob: bool,
        takes: bool,
    ) -> u64 {
        if let (None, Some(up)) = (&self.sink, &st.up) {
            *self.sink = Some(up.sink.clone());
        }
        if takes {
            self.hand_fds(hub, st, me.cid);
        }
        let tag = hub.next_tag.fetch_add(1, Ordering::Relaxed);
        st.inflight.insert(
            tag,
            InFlight {
                client: me.cid,
                id,
                then: Vec::new(),
                takes_fds: takes,
                drain: None,
            },
        );
        if !oob {
            if let Some(c) = st.clients.get_mut(&me.cid) {
                c.last_inband = Some(tag);
            }
        }
        tag
    }
}

/// A client's id as QEMU echoes it: kept inline when short (as most are), so that forwarding
/// a command allocates nothing for it.
#[derive(Clone)]
enum IdText {
    Inline(u8, [u8; 30]),
    Heap(Box<str>),
}

impl From<&str> for IdText {
    fn from(s: &str) -> IdText {
        let mut bytes = [0u8; 30];
        match bytes.get_mut(..s.len()) {
            Some(b) => {
                b.copy_from_slice(s.as_bytes());
                IdText::Inline(s.len() as u8, bytes)
            }
            None => IdText::Heap(s.into()),
        }
    }
}

impl std::ops::Deref for IdText {
    type Target = str;

    fn deref(&self) -> &str {
        match self {
            // Copied whole from a str, so a whole UTF-8 text.
            IdText::Inline(n, b) => std::str::from_utf8(&b[..usize::from(*n)]).unwrap_or(""),
            IdText::Heap(s) => s,
        }
    }
}

/// QEMU's text of a request's `id` as it echoes it (the raw text when that is the same).
fn echoed_id(raw: &[u8]) -> Option<IdText> {
    let plain_string = raw.len() >= 2
        && raw[0] == b'"'
        && raw[1..raw.len() - 1]
            .iter()
            .all(|&b| (0x20..0x7F).contains(&b) && b != b'\\' && b != b'"');
    let digits = raw.strip_prefix(b"-").unwrap_or(raw);
    let plain_int = !digits.is_empty()
        && digits.len() <= 18
        && digits.iter().all(u8::is_ascii_digit)
        && (digits[0] != b'0' || raw == b"0");
    if plain_string || plain_int {
        return std::str::from_utf8(raw).ok().map(IdText::from);
    }
    // Read as the member it is (how a value is read can depend on where it stands).
    let member = [&b"{\"id\": "[..], raw, b"}"].concat();
    match qmpkit_wire::json::decode_all(&member).into_iter().next() {
        Some(Ok(Value::Object(mut m))) => m
            .shift_remove("id")
            .map(|v| IdText::from(to_qemu_string(&qmpkit_wire::qemu_order(v)).as_str())),
        _ => None,
    }
}

/// What [`forward_plain`] did.
enum Plain {
    Done,
    /// Nothing: the exact path judges the message.
    Exact,
    /// Nothing: the command takes descriptors and waits for the gate.
    Wait,
}

/// Whether a command of `cid` that takes descriptors must wait: another client's are in flight.
fn gate_closed(st: &State, cid: u64) -> bool {
    st.gate.is_some_and(|(c, _)| c != cid)
}

/// The command a decoded message names, if it names one.
fn command_of(item: &Result<Value, qmpkit_wire::JsonError>) -> Option<&str> {
    let m = item.as_ref().ok()?.as_object()?;
    m.get("execute").or_else(|| m.get("exec-oob"))?.as_str()
}

/// Forward a plain, valid request as its own bytes with only its `id` replaced by a tag;
/// [`Plain::Exact`] (nothing done) for anything the exact path must judge: errors, refusals, negotiation,
/// rate limits, recording.
fn forward_plain(
    hub: &Hub,
    st: &mut State,
    me: &mut ClientState,
    policy: &Rules,
    msg: &[u8],
    scanner: &ObjectScanner,
    out: &mut Forward<'_>,
) -> Plain {
    if !me.negotiated || me.bucket.is_some() || hub.record.is_some() {
        return Plain::Exact;
    }
    let mut command = None;
    let mut id = None;
    for (k, v) in &scanner.members {
        let val = &msg[v.clone()];
        match &msg[k.clone()] {
            key @ (b"execute" | b"exec-oob") => {
                let oob = key.len() == 8;
                if command.is_some()
                    || (oob && !me.oob)
                    || val.first() != Some(&b'"')
                    || val.contains(&b'\\')
                {
                    return Plain::Exact;
                }
                command = Some((&val[1..val.len() - 1], oob));
            }
            b"arguments" if val.first() == Some(&b'{') => {}
            b"id" => id = Some(v.clone()),
            _ => return Plain::Exact,
        }
    }
    let Some((name, oob)) = command else {
        return Plain::Exact;
    };
    if oob && !st.up.as_ref().is_some_and(|u| u.oob) {
        return Plain::Exact;
    }
    if st.up.is_none() {
        return Plain::Exact;
    }
    if policy.restricts() {
        match std::str::from_utf8(name) {
            Ok(name) if policy.refuses(name).is_none() && !policy.constrains(name) => {}
            _ => return Plain::Exact,
        }
    }
    let echo = id.clone().map(|r| echoed_id(&msg[r]));
    if echo.as_ref().is_some_and(Option::is_none) {
        return Plain::Exact;
    }
    let name = std::str::from_utf8(name).unwrap_or("");
    let takes = takes_fds(name);
    if takes && gate_closed(st, me.cid) {
        return Plain::Wait;
    }
    let tag = out.start(hub, st, me, echo.flatten(), oob, takes);
    let up = &mut *out.up;
    match id {
        Some(r) => {
            up.extend_from_slice(&msg[..r.start]);
            push_u64(up, tag);
            up.extend_from_slice(&msg[r.end..]);
        }
        None => {
            up.extend_from_slice(b"{\"id\": ");
            push_u64(up, tag);
            up.extend_from_slice(b", ");
            up.extend_from_slice(&msg[1..]);
        }
    }
    up.push(b'\n');
    Plain::Done
}

fn push_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut k = digits.len();
    loop {
        k -= 1;
        digits[k] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[k..]);
}

/// Hashes the proxy's tags (consecutive numbers) with one multiplication: the table's keys
/// are never chosen by a client.
#[derive(Default, Clone, Copy)]
struct TagHasher(u64);

impl std::hash::Hasher for TagHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type Tags<V> = HashMap<u64, V, std::hash::BuildHasherDefault<TagHasher>>;

/// One message from a client: answered here, or queued for QEMU in `out`.
fn handle(
    hub: &Hub,
    st: &mut State,
    batch: &mut Batch,
    me: &mut ClientState,
    policy: &Rules,
    item: Result<Value, qmpkit_wire::JsonError>,
    out: &mut Forward<'_>,
) {
    let cid = me.cid;
    let req = match request_from(item, me.oob) {
        Ok(r) => r,
        Err(e) => return hub.local_reply(st, batch, cid, encode_line(&e.to_response())),
    };
    if !me.negotiated {
        let reply = if req.command != "qmp_capabilities" {
            error_line(
                ErrorClass::CommandNotFound,
                "Expecting capabilities negotiation with 'qmp_capabilities'",
                req.id,
            )
        } else {
            match capabilities(req.arguments, st.offers_oob) {
                Ok(o) => {
                    me.negotiated = true;
                    me.oob = o;
                    if let Some(c) = st.clients.get_mut(&cid) {
                        c.negotiated = true;
                    }
                    encode_line(&qmpkit_wire::response_return(
                        Value::Object(Map::new()),
                        req.id,
                    ))
                }
                Err(e) => encode_line(&response_error(&e, req.id)),
            }
        };
        return hub.local_reply(st, batch, cid, reply);
    }
    if let Some(why) = policy
        .refuses(&req.command)
        .or_else(|| policy.refuses_args(&req.command, req.arguments.as_ref()))
    {
        let reply = error_line(ErrorClass::GenericError, &why, req.id);
        return hub.local_reply(st, batch, cid, reply);
    }
    let over = match &mut me.bucket {
        Some((b, why)) => (!b.take()).then(|| why.clone()),
        None => None,
    };
    if let Some(why) = over {
        let reply = error_line(ErrorClass::GenericError, &why, req.id);
        return hub.local_reply(st, batch, cid, reply);
    }
    let Some(up) = &st.up else {
        let reply = error_line(
            ErrorClass::GenericError,
            "QEMU is not connected to the QMP proxy (it is reconnecting)",
            req.id,
        );
        return hub.local_reply(st, batch, cid, reply);
    };
    // Forward under a tag of the proxy's own.
    let oob = req.oob && up.oob;
    let takes = takes_fds(&req.command);
    let key = if oob { "exec-oob" } else { "execute" };
    let mut m = Map::new();
    m.insert(key.into(), Value::String(req.command));
    if let Some(a) = req.arguments {
        m.insert("arguments".into(), Value::Object(a));
    }
    let id = req
        .id
        .as_ref()
        .map(|v| IdText::from(to_qemu_string(v).as_str()));
    let tag = out.start(hub, st, me, id, oob, takes);
    m.insert("id".into(), Value::from(tag));
    qmpkit_wire::write_qemu(&Value::Object(m), out.up);
    out.up.push(b'\n');
}

/// `qmp_capabilities`' arguments, checked as QEMU checks them: whether `oob` was enabled.
fn capabilities(args: Option<Map<String, Value>>, offers_oob: bool) -> Result<bool, QmpError> {
    let mut oob = false;
    for (k, v) in args.unwrap_or_default() {
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
                Value::String(s) if s == "oob" && offers_oob => oob = true,
                Value::String(s) if s == "oob" => {
                    return Err(QmpError::generic("Capability 'oob' not available"))
                }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn splice(line: &str, new: Option<&str>) -> String {
        let head: Head = serde_json::from_str(line).unwrap();
        String::from_utf8(splice_id(line.as_bytes(), head.id.unwrap(), new)).unwrap()
    }

    #[test]
    fn ids_are_put_back_byte_for_byte() {
        assert_eq!(
            splice("{\"return\": {}, \"id\": 17}\r\n", Some("\"a\"")),
            "{\"return\": {}, \"id\": \"a\"}\r\n"
        );
        assert_eq!(
            splice("{\"return\": {}, \"id\": 17}\r\n", None),
            "{\"return\": {}}\r\n"
        );
        assert_eq!(
            splice(
                "{\"id\": 3, \"error\": {\"class\": \"GenericError\", \"desc\": \"x\"}}\r\n",
                None
            ),
            "{\"error\": {\"class\": \"GenericError\", \"desc\": \"x\"}}\r\n"
        );
        assert_eq!(
            splice("{\"id\": 3, \"error\": {}}\r\n", Some("{\"x\": [1, 2]}")),
            "{\"id\": {\"x\": [1, 2]}, \"error\": {}}\r\n"
        );
    }

    #[test]
    fn tags_are_read_from_the_end_of_a_reply() {
        let line = b"{\"return\": {\"id\": 5}, \"id\": 42}\r\n";
        let (tag, r) = tail_tag(line).unwrap();
        assert_eq!((tag, &line[r]), (42, &b"42"[..]));
        for other in [
            &b"{\"return\": {\"id\": 5}}\r\n"[..],
            b"{\"event\": \"X\", \"data\": {\"id\": 5}}\r\n",
            b"{\"return\": {}, \"id\": \"5\"}\r\n",
            b"{\"return\": {}, \"id\": 99999999999999999999999}\r\n",
        ] {
            assert_eq!(tail_tag(other), None, "{}", String::from_utf8_lossy(other));
        }
    }

    #[test]
    fn echoed_ids_are_qemus_text() {
        let e = |s: &str| echoed_id(s.as_bytes());
        assert_eq!(e("17").as_deref(), Some("17"));
        assert_eq!(e("\"a b\"").as_deref(), Some("\"a b\""));
        assert_eq!(e("1.5e3").as_deref(), Some("1500"));
        // Longer than kept inline.
        let long = format!("\"{}\"", "x".repeat(40));
        assert_eq!(e(&long).as_deref(), Some(long.as_str()));
        assert_eq!(e("\"\"").as_deref(), Some("\"\""));
        assert_eq!(
            e("{\"b\": 1, \"a\": 2}").as_deref(),
            Some("{\"a\": 2, \"b\": 1}")
        );
        let mut out = Vec::new();
        push_u64(&mut out, 0);
        push_u64(&mut out, u64::MAX);
        assert_eq!(out, b"018446744073709551615");
    }

    #[test]
    fn negotiation_arguments() {
        assert!(!capabilities(None, false).unwrap());
        let en = |v: Value| {
            Some(
                serde_json::from_value::<Map<String, Value>>(serde_json::json!({"enable": v}))
                    .unwrap(),
            )
        };
        assert!(capabilities(en(serde_json::json!(["oob"])), true).unwrap());
        assert_eq!(
            capabilities(en(serde_json::json!(["bogus"])), true)
                .unwrap_err()
                .desc,
            "Parameter 'null' does not accept value 'bogus'"
        );
    }
}
