//! `qmpkit proxy`: many QMP clients on one QEMU monitor.
//!
//! The proxy negotiates with QEMU once (enabling `oob` when offered). Each client gets QEMU's
//! greeting as QEMU sent it and negotiates with the proxy, which answers as QEMU would. A
//! command is forwarded under an id of the proxy's own; the reply goes back to the client that
//! sent it with the client's id put back in its place (or no id, as sent), the rest of QEMU's
//! bytes untouched. Events go to every negotiated client as QEMU sent them.
//!
//! When QEMU goes away, commands in flight are answered with an error, clients get a
//! `__org.qmpkit_PROXY_UPSTREAM_LOST` event, and the proxy reconnects (clients get
//! `__org.qmpkit_PROXY_UPSTREAM_BACK`). Listener rules are in [`policy`]; the recording format
//! in [`record`].
//!
//! Not forwarded: file descriptors passed with SCM_RIGHTS (`getfd`, `add-fd` need a direct
//! connection).

pub mod policy;
pub mod record;
mod sink;

use clap::{CommandFactory, Parser};
use policy::{Address, Bucket, Policy};
use qmpkit_wire::{
    encode_line, request_from, response_error, to_qemu_string, ErrorClass, JsonStreamer, QmpError,
};
use record::Recorder;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use sink::{Sink, WriteHalf};
use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};

const AFTER_HELP: &str = "\
Listener options (after the address, comma-separated):
  readonly=on            only query-* and commands that change nothing
  allow=CMD[:CMD...]     only these commands (CMD may end in * for a prefix)
  deny=CMD[:CMD...]      never these commands
  rate=N                 at most N commands per second per client
  uid=N[:N...]           only unix peers with these user ids (SO_PEERCRED)
  admin-uid=N[:N...]     unix peers with these user ids are not restricted
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
    /// Allow listening on a non-loopback TCP address
    #[arg(long)]
    allow_remote_tcp: bool,
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
    id: Option<String>,
    /// Replies the proxy made itself to the same client's later commands, held back so that the
    /// client gets its replies in the order of its commands, as QEMU answers in-band commands.
    then: Vec<Vec<u8>>,
}

/// A client as the rest of the proxy sees it.
struct Downstream {
    sink: Arc<Sink>,
    negotiated: bool,
    /// The client's latest in-band command still in flight.
    last_inband: Option<u64>,
}

#[derive(Default)]
struct State {
    up: Option<Up>,
    /// QEMU's latest greeting, as it sent it.
    greeting: Arc<[u8]>,
    offers_oob: bool,
    inflight: HashMap<u64, InFlight>,
    clients: HashMap<u64, Downstream>,
}

struct Hub {
    state: Mutex<State>,
    next_tag: AtomicU64,
    next_client: AtomicU64,
    record: Option<Recorder>,
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

fn error_line(class: ErrorClass, desc: &str, id: Option<Value>) -> Vec<u8> {
    encode_line(&response_error(&QmpError::new(class, desc), id))
}

/// An event of the proxy's own, stamped now.
fn own_event(name: &str, data: Value) -> Vec<u8> {
    let e = qmpkit_wire::Event::now(name, Some(data));
    encode_line(&e.to_value())
}

/// Messages gathered per client while a batch is handled, written once per client after it.
#[derive(Default)]
struct Batch {
    out: Vec<(u64, Vec<u8>)>,
}

impl Batch {
    fn push(&mut self, cid: u64, bytes: &[u8]) {
        match self.out.iter_mut().find(|(c, _)| *c == cid) {
            Some((_, b)) => b.extend_from_slice(bytes),
            None => self.out.push((cid, bytes.to_vec())),
        }
    }

    fn flush(self, st: &State) {
        for (cid, bytes) in self.out {
            if let Some(c) = st.clients.get(&cid) {
                c.sink.send(&bytes);
            }
        }
    }
}

impl Hub {
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

    /// The answer to the command tagged `tag` (and what was held back behind it).
    fn answered(&self, st: &mut State, batch: &mut Batch, tag: u64, reply: &[u8]) {
        let Some(f) = st.inflight.remove(&tag) else {
            return;
        };
        let Some(c) = st.clients.get_mut(&f.client) else {
            return;
        };
        if c.last_inband == Some(tag) {
            c.last_inband = None;
        }
        self.recorded(Some(f.client), reply);
        batch.push(f.client, reply);
        for b in f.then {
            self.recorded(Some(f.client), &b);
            batch.push(f.client, &b);
        }
    }

    /// Complete lines from QEMU, each with its line end.
    fn on_upstream_lines(&self, lines: &[&[u8]]) {
        let mut st = lock(&self.state);
        let mut batch = Batch::default();
        for line in lines {
            let Ok(head) = serde_json::from_slice::<Head>(line) else {
                continue;
            };
            if head.event.is_some() {
                self.broadcast(&st, &mut batch, line);
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
            self.answered(&mut st, &mut batch, tag, &bytes);
        }
        batch.flush(&st);
    }

    /// QEMU went away: answer what was in flight, tell everyone.
    fn lost(&self, reason: &str) {
        let mut st = lock(&self.state);
        let mut batch = Batch::default();
        st.up = None;
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
            self.answered(&mut st, &mut batch, tag, &bytes);
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

type BoxRead = Box<dyn AsyncRead + Send + Unpin>;

async fn connect(addr: &Address) -> std::io::Result<(BoxRead, WriteHalf)> {
    Ok(match addr {
        Address::Unix(p) => {
            let s = tokio::net::UnixStream::connect(p).await?;
            let (r, w) = s.into_split();
            (Box::new(r), WriteHalf::Unix(w))
        }
        Address::Tcp(a) => {
            let s = tokio::net::TcpStream::connect(a.as_str()).await?;
            s.set_nodelay(true)?;
            let (r, w) = s.into_split();
            (Box::new(r), WriteHalf::Tcp(w))
        }
    })
}

/// Read one line (up to and with `\n`); `None` at the end.
async fn read_line<R: AsyncRead + Unpin>(r: &mut BufReader<R>) -> std::io::Result<Option<Vec<u8>>> {
    let mut buf = Vec::new();
    let n = r.read_until(b'\n', &mut buf).await?;
    Ok((n > 0).then_some(buf))
}

/// Connect and negotiate with QEMU: its reader (past negotiation), writer, greeting, oob.
async fn open_upstream(
    addr: &Address,
) -> Result<(BufReader<BoxRead>, Arc<Sink>, Vec<u8>, bool), String> {
    let (r, w) = connect(addr).await.map_err(|e| format!("{addr}: {e}"))?;
    let sink = Sink::new(w);
    let mut r = BufReader::new(r);
    let res = async {
        let greeting = tokio::time::timeout(Duration::from_secs(10), read_line(&mut r))
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
            let line = read_line(&mut r)
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
    mut r: BufReader<BoxRead>,
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
    let mut buf = vec![0u8; 64 * 1024];
    let mut acc: Vec<u8> = Vec::new();
    let reason = loop {
        let n = match r.read(&mut buf).await {
            Ok(0) => break "QEMU closed the connection".to_string(),
            Ok(n) => n,
            Err(e) => break format!("read failed: {e}"),
        };
        let data: &[u8] = if acc.is_empty() {
            &buf[..n]
        } else {
            acc.extend_from_slice(&buf[..n]);
            &acc
        };
        let mut lines = Vec::new();
        let mut start = 0;
        for (i, b) in data.iter().enumerate() {
            if *b == b'\n' {
                lines.push(&data[start..=i]);
                start = i + 1;
            }
        }
        hub.on_upstream_lines(&lines);
        let rest = data[start..].to_vec();
        acc = rest;
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
    let record = match &cli.record {
        Some(p) => Some(Recorder::create(p).map_err(|e| format!("--record {}: {e}", p.display()))?),
        None => None,
    };
    let hub = Arc::new(Hub {
        state: Mutex::new(State::default()),
        next_tag: AtomicU64::new(1),
        next_client: AtomicU64::new(1),
        record,
    });
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
            use std::os::unix::fs::FileTypeExt;
            if std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_socket()) {
                let _ = std::fs::remove_file(p);
            }
            let l = tokio::net::UnixListener::bind(p).map_err(|e| format!("{addr}: {e}"))?;
            eprintln!("qmpkit proxy: listening on {addr}");
            tokio::spawn(async move {
                loop {
                    let Ok((s, _)) = l.accept().await else {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    };
                    let uid = s.peer_cred().ok().map(|c| c.uid());
                    let (r, w) = s.into_split();
                    tokio::spawn(client(
                        hub.clone(),
                        Box::new(r),
                        WriteHalf::Unix(w),
                        policy.clone(),
                        uid,
                    ));
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
                    let _ = s.set_nodelay(true);
                    let (r, w) = s.into_split();
                    tokio::spawn(client(
                        hub.clone(),
                        Box::new(r),
                        WriteHalf::Tcp(w),
                        policy.clone(),
                        None,
                    ));
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
    bucket: Option<Bucket>,
    uid: Option<u32>,
}

/// One client, from its greeting to its hang-up.
async fn client(
    hub: Arc<Hub>,
    mut r: BoxRead,
    w: WriteHalf,
    policy: Arc<Policy>,
    uid: Option<u32>,
) {
    if !policy.admits(uid) {
        eprintln!(
            "qmpkit proxy: refused a client with user id {}",
            uid.map(|u| u.to_string())
                .unwrap_or_else(|| "unknown".into())
        );
        return;
    }
    let cid = hub.next_client.fetch_add(1, Ordering::Relaxed);
    let sink = Sink::new(w);
    {
        let mut st = lock(&hub.state);
        st.clients.insert(
            cid,
            Downstream {
                sink: sink.clone(),
                negotiated: false,
                last_inband: None,
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
        bucket: policy
            .rate
            .filter(|_| !policy.is_admin(uid))
            .map(Bucket::new),
        uid,
    };
    let mut streamer = JsonStreamer::new();
    let mut items = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut up_out = Vec::new();
    loop {
        let n = match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        streamer.feed(&buf[..n], &mut items);
        if items.is_empty() {
            continue;
        }
        let mut st = lock(&hub.state);
        let mut batch = Batch::default();
        let mut up_sink = None;
        for item in items.drain(..) {
            if let Some(rec) = &hub.record {
                match &item {
                    Ok(v) => rec.value(Some(cid), "in", v),
                    Err(e) => rec.invalid(cid, e.desc()),
                }
            }
            handle(
                &hub,
                &mut st,
                &mut batch,
                &mut me,
                &policy,
                item,
                &mut up_out,
                &mut up_sink,
            );
        }
        batch.flush(&st);
        drop(st);
        if let Some(s) = up_sink {
            s.send(&up_out);
        }
        up_out.clear();
    }
    // Gone: replies still on their way are dropped when they arrive.
    if let Some(rec) = &hub.record {
        rec.eof(cid);
    }
    {
        let mut st = lock(&hub.state);
        st.clients.remove(&cid);
        st.inflight.retain(|_, f| f.client != cid);
    }
    sink.close();
}

/// One message from a client: answered here, or queued for QEMU in `up_out`.
#[allow(clippy::too_many_arguments)]
fn handle(
    hub: &Hub,
    st: &mut State,
    batch: &mut Batch,
    me: &mut ClientState,
    policy: &Policy,
    item: Result<Value, qmpkit_wire::JsonError>,
    up_out: &mut Vec<u8>,
    up_sink: &mut Option<Arc<Sink>>,
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
    if let Some(why) = policy.refuses(&req.command, me.uid) {
        let reply = error_line(ErrorClass::GenericError, &why, req.id);
        return hub.local_reply(st, batch, cid, reply);
    }
    if me.bucket.as_mut().is_some_and(|b| !b.take()) {
        let rate = policy.rate.unwrap_or(0);
        let reply = error_line(
            ErrorClass::GenericError,
            &format!(
                "Rate limit exceeded: this QMP proxy listener allows {rate} commands per second"
            ),
            req.id,
        );
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
    let tag = hub.next_tag.fetch_add(1, Ordering::Relaxed);
    let oob = req.oob && up.oob;
    let key = if oob { "exec-oob" } else { "execute" };
    let mut m = Map::new();
    m.insert(key.into(), Value::String(req.command));
    if let Some(a) = req.arguments {
        m.insert("arguments".into(), Value::Object(a));
    }
    m.insert("id".into(), Value::from(tag));
    qmpkit_wire::write_qemu(&Value::Object(m), up_out);
    up_out.push(b'\n');
    if up_sink.is_none() {
        *up_sink = Some(up.sink.clone());
    }
    st.inflight.insert(
        tag,
        InFlight {
            client: cid,
            id: req.id.as_ref().map(to_qemu_string),
            then: Vec::new(),
        },
    );
    if !oob {
        if let Some(c) = st.clients.get_mut(&cid) {
            c.last_inband = Some(tag);
        }
    }
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
