//! `qmpkit replay TRANSCRIPT --listen ADDRESS`: serve a recorded QMP session back, strictly.
//!
//! The transcript is `qmpkit proxy --record`'s JSONL (one client's side of it, `--client N`, by
//! default the first), or libvirt's `.replies` test format (pretty-printed JSON objects, each
//! command followed by its reply, separated by blank lines; the greeting is made up from the
//! `query-version` answer in it). The client must send the recorded commands in order; each
//! gets its recorded reply (with the client's own id) and the events recorded up to the next
//! command, re-encoded in QEMU's form, so a recording of QEMU replays byte for byte. A command
//! that is not the recorded one, or whose arguments the schema refuses (when the transcript
//! has the `query-qmp-schema` answer, or `--schema` is given), is answered with an error and
//! counted; the exit status says whether the client played the whole script without one.
//! With `--timing`, each message the server sends waits for its recorded gap after the message
//! before it (either way), scaled; the order is the recorded one.

use crate::proxy::policy::{parse_listen, Address};
use clap::{CommandFactory, Parser};
use qmpkit_schema::Schema;
use qmpkit_wire::{encode_line, response_error, JsonStreamer, QmpError, Request, RequestError};
use serde_json::{Map, Value};
use std::process::ExitCode;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

const AFTER_HELP: &str = "\
Exit status: 0 the client sent every recorded command as recorded; 1 it did not (each
difference is printed on stderr); 2 usage error or unreadable transcript.

Examples:
  qmpkit replay session.jsonl --listen unix:/tmp/vm.sock
  qmpkit replay caps.x86_64.replies --listen unix:/tmp/vm.sock --repeat";

/// Serve a recorded QMP session back to a client, checking what it sends
#[derive(Parser, Debug)]
#[command(name = "qmpkit replay", after_help = AFTER_HELP)]
pub(crate) struct Cli {
    /// A `qmpkit proxy --record` file (JSON lines) or a libvirt `.replies` file
    #[arg(value_name = "TRANSCRIPT")]
    transcript: std::path::PathBuf,
    /// Where the client connects: unix:PATH or tcp:HOST:PORT
    #[arg(long, value_name = "ADDRESS")]
    listen: String,
    /// Which client of a proxy recording to replay [default: the first]
    #[arg(long, value_name = "N")]
    client: Option<u64>,
    /// Check arguments against this schema (source or a query-qmp-schema answer)
    #[arg(long, value_name = "FILE")]
    schema: Option<std::path::PathBuf>,
    /// Serve one client after another, each from the start, instead of exiting after one
    #[arg(long)]
    repeat: bool,
    /// Keep the recorded time between consecutive messages (a proxy recording's `t`), each gap
    /// multiplied by SCALE (0.5: twice as fast)
    #[arg(long, value_name = "SCALE", num_args = 0..=1, default_missing_value = "1")]
    timing: Option<f64>,
}

pub(crate) fn command() -> clap::Command {
    Cli::command().name("replay")
}

/// One step of the script, from the server's point of view.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// The client sends this request.
    In(Value),
    /// The server sends this message.
    Out(Value),
}

/// Read a transcript (either format) into the steps for one client, with each step's recorded
/// time in seconds (none in a `.replies` file).
pub fn load_timed(
    text: &str,
    client: Option<u64>,
) -> Result<(Vec<Step>, Vec<Option<f64>>), String> {
    let mut values = Vec::new();
    for v in serde_json::Deserializer::from_str(text).into_iter::<Value>() {
        values.push(v.map_err(|e| format!("not JSON: {e}"))?);
    }
    let Some(first) = values.first() else {
        return Err("the transcript is empty".into());
    };
    if first.get("dir").is_some() {
        from_recording(&values, client)
    } else {
        if client.is_some() {
            return Err("--client applies to a proxy recording only".into());
        }
        let steps = from_replies(values)?;
        let times = vec![None; steps.len()];
        Ok((steps, times))
    }
}

fn from_recording(
    records: &[Value],
    client: Option<u64>,
) -> Result<(Vec<Step>, Vec<Option<f64>>), String> {
    let who = match client {
        Some(c) => c,
        None => records
            .iter()
            .find_map(|r| r.get("client").and_then(Value::as_u64))
            .ok_or("the recording has no client")?,
    };
    let mut steps = Vec::new();
    let mut times = Vec::new();
    let mut started = false;
    for (n, r) in records.iter().enumerate() {
        let c = r.get("client").unwrap_or(&Value::Null);
        let mine = c.as_u64() == Some(who);
        if !(mine || (c.is_null() && started)) {
            continue;
        }
        started = true;
        if r.get("eof").is_some() {
            break;
        }
        let Some(msg) = r.get("msg") else {
            continue;
        };
        match r.get("dir").and_then(Value::as_str) {
            Some("in") => steps.push(Step::In(msg.clone())),
            Some("out") => steps.push(Step::Out(msg.clone())),
            _ => return Err(format!("record {}: 'dir' must be \"in\" or \"out\"", n + 1)),
        }
        times.push(r.get("t").and_then(Value::as_f64));
    }
    if steps.is_empty() {
        return Err(format!("the recording has nothing for client {who}"));
    }
    Ok((steps, times))
}

fn from_replies(values: Vec<Value>) -> Result<Vec<Step>, String> {
    let version = values
        .windows(2)
        .find(|w| w[0].get("execute").and_then(Value::as_str) == Some("query-version"))
        .and_then(|w| w[1].get("return").cloned())
        .unwrap_or_else(
            || serde_json::json!({"qemu": {"micro": 0, "minor": 0, "major": 0}, "package": ""}),
        );
    let mut qmp = Map::new();
    qmp.insert("version".into(), version);
    qmp.insert("capabilities".into(), Value::Array(Vec::new()));
    let mut greeting = Map::new();
    greeting.insert("QMP".into(), Value::Object(qmp));
    let mut steps = vec![Step::Out(Value::Object(greeting))];
    for v in values {
        if !v.is_object() {
            return Err(format!("not a JSON object: {v}"));
        }
        if v.get("execute").is_some() || v.get("exec-oob").is_some() {
            steps.push(Step::In(v));
        } else {
            steps.push(Step::Out(v));
        }
    }
    Ok(steps)
}

/// The `query-qmp-schema` answer in the script, if any.
fn schema_answer(steps: &[Step]) -> Option<&Value> {
    steps.windows(2).find_map(|w| match w {
        [Step::In(i), Step::Out(o)]
            if i.get("execute").and_then(Value::as_str) == Some("query-qmp-schema") =>
        {
            o.get("return")
        }
        _ => None,
    })
}

/// `msg` (a reply) answering `id`: the recorded id replaced in place, removed, or added where
/// QEMU puts it (after `return`, before `error`).
fn with_id(msg: &Value, id: Option<&Value>) -> Value {
    let Value::Object(m) = msg else {
        return msg.clone();
    };
    let mut out = Map::new();
    let had = m.contains_key("id");
    for (k, v) in m {
        if k == "id" {
            if let Some(id) = id {
                out.insert("id".into(), id.clone());
            }
            continue;
        }
        if k == "error" && !had {
            if let Some(id) = id {
                out.insert("id".into(), id.clone());
            }
        }
        out.insert(k.clone(), v.clone());
        if k == "return" && !had {
            if let Some(id) = id {
                out.insert("id".into(), id.clone());
            }
        }
    }
    Value::Object(out)
}

fn is_reply(v: &Value) -> bool {
    v.get("return").is_some() || v.get("error").is_some()
}

/// What a client did to the script.
#[derive(Debug, Default)]
pub struct Report {
    pub problems: Vec<String>,
    pub left: usize,
}

/// The replay of `steps` to one client.
pub struct Player<'a> {
    steps: &'a [Step],
    schema: Option<&'a Schema>,
    pos: usize,
    pub report: Report,
    /// Where each recorded message starts in the output, with its step: `(offset, step)`.
    pub marks: Vec<(usize, usize)>,
}

impl<'a> Player<'a> {
    pub fn new(steps: &'a [Step], schema: Option<&'a Schema>) -> Player<'a> {
        Player {
            steps,
            schema,
            pos: 0,
            report: Report::default(),
            marks: Vec::new(),
        }
    }

    /// What the server sends until the client must speak (the greeting, at first).
    pub fn pending_out(&mut self, out: &mut Vec<u8>, reply_id: Option<Option<&Value>>) {
        let mut id = reply_id;
        while let Some(Step::Out(v)) = self.steps.get(self.pos) {
            self.marks.push((out.len(), self.pos));
            match id.take() {
                Some(i) if is_reply(v) => out.extend(encode_line(&with_id(v, i))),
                other => {
                    id = other;
                    out.extend(encode_line(v));
                }
            }
            self.pos += 1;
        }
    }

    fn refuse(&mut self, out: &mut Vec<u8>, id: Option<Value>, desc: String) {
        self.report.problems.push(desc.clone());
        out.extend(encode_line(&response_error(&QmpError::generic(desc), id)));
    }

    /// One item from the client.
    pub fn input(&mut self, item: Result<Value, qmpkit_wire::JsonError>, out: &mut Vec<u8>) {
        let v = match item {
            Ok(v) => v,
            Err(e) => {
                self.report
                    .problems
                    .push(format!("the client sent invalid JSON: {}", e.desc()));
                out.extend(encode_line(&RequestError::from(e).to_response()));
                return;
            }
        };
        let req = match Request::parse(v.clone(), true) {
            Ok(r) => r,
            Err(e) => {
                self.report.problems.push(format!(
                    "the client sent an invalid request: {}",
                    e.error.desc
                ));
                out.extend(encode_line(&e.to_response()));
                return;
            }
        };
        let expected = match self.steps.get(self.pos) {
            Some(Step::In(e)) => e,
            _ => {
                return self.refuse(
                    out,
                    req.id,
                    format!(
                        "replay: the recording has no more commands; got {}",
                        compact(&v)
                    ),
                )
            }
        };
        let want = Request::parse(expected.clone(), true).ok();
        let same = want.as_ref().is_some_and(|w| {
            w.command == req.command
                && w.oob == req.oob
                && w.arguments.clone().unwrap_or_default()
                    == req.arguments.clone().unwrap_or_default()
        });
        if !same {
            let mut why = format!(
                "replay: expected {}, got {}",
                compact(&strip_id(expected)),
                compact(&strip_id(&v))
            );
            if let Some(err) = self.check_schema(&req) {
                why.push_str(&format!(" ({err})"));
            }
            return self.refuse(out, req.id, why);
        }
        if let Some(err) = self.check_schema(&req) {
            // A recording of QEMU refusing the same arguments is played as recorded.
            let recorded_same = matches!(self.steps.get(self.pos + 1), Some(Step::Out(o))
                if o.pointer("/error/desc").and_then(Value::as_str) == Some(err.desc.as_str()));
            if !recorded_same {
                self.report.problems.push(format!(
                    "{}: the schema refuses its arguments: {}",
                    req.command, err.desc
                ));
            }
        }
        self.pos += 1;
        self.pending_out(out, Some(req.id.as_ref()));
    }

    fn check_schema(&self, req: &Request) -> Option<QmpError> {
        let schema = self.schema?;
        if req.command == "qmp_capabilities" {
            return None;
        }
        let Some(eid) = schema.lookup(&req.command) else {
            return Some(QmpError::new(
                qmpkit_wire::ErrorClass::CommandNotFound,
                format!("The command {} has not been found", req.command),
            ));
        };
        let args = req.arguments.clone().map(Value::Object);
        qmpkit_server::validate::validate_args(
            schema,
            eid,
            args.as_ref(),
            &qmpkit_server::validate::ValidateOptions::default(),
        )
        .err()
    }

    /// The client has gone: what it did not send.
    pub fn finish(mut self) -> Report {
        self.report.left = self.steps[self.pos.min(self.steps.len())..]
            .iter()
            .filter(|s| matches!(s, Step::In(_)))
            .count();
        self.report
    }
}

fn strip_id(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| *k != "id")
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ),
        other => other.clone(),
    }
}

fn compact(v: &Value) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

pub fn run(args: Vec<String>) -> ExitCode {
    let argv = std::iter::once("qmpkit replay".to_string()).chain(args);
    let cli = match Cli::try_parse_from(argv) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    let fail = |e: String| {
        eprintln!("qmpkit replay: {e}");
        ExitCode::from(2)
    };
    let text = match std::fs::read_to_string(&cli.transcript) {
        Ok(t) => t,
        Err(e) => return fail(format!("{}: {e}", cli.transcript.display())),
    };
    let (steps, times) = match load_timed(&text, cli.client) {
        Ok(s) => s,
        Err(e) => return fail(format!("{}: {e}", cli.transcript.display())),
    };
    let schema = match &cli.schema {
        Some(p) => match qmpkit_schema::load_any(p, None) {
            Ok((s, _)) => Some(s),
            Err(e) => return fail(format!("--schema: {e}")),
        },
        None => match schema_answer(&steps).map(qmpkit_schema::load_introspection) {
            Some(Ok(s)) => Some(s),
            Some(Err(e)) => {
                eprintln!("qmpkit replay: note: the recorded query-qmp-schema answer does not load ({e}); arguments are not checked");
                None
            }
            None => None,
        },
    };
    let address = match parse_listen(&cli.listen) {
        Ok((a, p)) if p.allow.is_empty() && p.deny.is_empty() && !p.readonly => a,
        Ok(_) => return fail(format!("--listen {}: takes no options", cli.listen)),
        Err(e) => return fail(format!("--listen {}: {e}", cli.listen)),
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(e.to_string()),
    };
    let timing = match cli.timing {
        Some(scale) if !(scale.is_finite() && scale >= 0.0) => {
            return fail(format!("--timing {scale}: the scale must be a number >= 0"))
        }
        Some(_) if times.iter().all(Option::is_none) => {
            return fail(format!(
                "{}: --timing needs a recording with times (qmpkit proxy --record)",
                cli.transcript.display()
            ))
        }
        Some(scale) => Some(Timing { times, scale }),
        None => None,
    };
    let steps = Arc::new(steps);
    let schema = Arc::new(schema);
    match rt.block_on(serve(address, steps, schema, cli.repeat, timing)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => fail(e),
    }
}

type Conn = (
    Box<dyn AsyncRead + Send + Unpin>,
    Box<dyn AsyncWrite + Send + Unpin>,
);

async fn serve(
    address: Address,
    steps: Arc<Vec<Step>>,
    schema: Arc<Option<Schema>>,
    repeat: bool,
    timing: Option<Timing>,
) -> Result<bool, String> {
    enum L {
        Unix(tokio::net::UnixListener),
        Tcp(tokio::net::TcpListener),
    }
    let l = match &address {
        Address::Unix(p) => L::Unix(
            qmpkit_server::bind_unix_mode(std::path::Path::new(p), None)
                .map_err(|e| format!("{address}: {e}"))?,
        ),
        Address::Tcp(a) => L::Tcp(
            tokio::net::TcpListener::bind(a.as_str())
                .await
                .map_err(|e| format!("{address}: {e}"))?,
        ),
    };
    eprintln!("qmpkit replay: listening on {address}");
    let mut all_ok = true;
    loop {
        let (r, w): Conn = match &l {
            L::Unix(l) => {
                let (s, _) = l.accept().await.map_err(|e| e.to_string())?;
                let (r, w) = s.into_split();
                (Box::new(r), Box::new(w))
            }
            L::Tcp(l) => {
                let (s, _) = l.accept().await.map_err(|e| e.to_string())?;
                let _ = s.set_nodelay(true);
                let (r, w) = s.into_split();
                (Box::new(r), Box::new(w))
            }
        };
        let report = play(r, w, &steps, schema.as_ref().as_ref(), timing.as_ref()).await;
        for p in &report.problems {
            eprintln!("qmpkit replay: {p}");
        }
        if report.left > 0 {
            eprintln!(
                "qmpkit replay: the client hung up with {} recorded command(s) not sent",
                report.left
            );
        }
        let ok = report.problems.is_empty() && report.left == 0;
        all_ok &= ok;
        if !repeat {
            return Ok(all_ok);
        }
    }
}

/// The recorded gaps before each step, already scaled, for `--timing`.
struct Timing {
    times: Vec<Option<f64>>,
    scale: f64,
}

impl Timing {
    /// How long after the step before it step `i` happened in the recording.
    fn gap(&self, i: usize) -> std::time::Duration {
        let t = |k: usize| self.times.get(k).copied().flatten();
        match (i.checked_sub(1).and_then(t), t(i)) {
            (Some(a), Some(b)) if b > a => {
                std::time::Duration::from_secs_f64(((b - a) * self.scale).clamp(0.0, 86_400.0))
            }
            _ => std::time::Duration::ZERO,
        }
    }
}

/// Output waiting for its time: each piece and how long after the previous message it goes.
type Queue = std::collections::VecDeque<(std::time::Duration, Vec<u8>)>;

/// Cut `out` at the player's marks into queued pieces, each with its recorded gap (nothing
/// for what the recording does not have, such as refusals).
fn enqueue(queue: &mut Queue, out: &[u8], marks: &mut Vec<(usize, usize)>, timing: &Timing) {
    let mut cut = 0;
    let mut gap = std::time::Duration::ZERO;
    for &(at, step) in marks.iter() {
        if at > cut {
            queue.push_back((gap, out[cut..at].to_vec()));
        }
        cut = at;
        gap = timing.gap(step);
    }
    if out.len() > cut {
        queue.push_back((gap, out[cut..].to_vec()));
    }
    marks.clear();
}

async fn play(
    mut r: Box<dyn AsyncRead + Send + Unpin>,
    mut w: Box<dyn AsyncWrite + Send + Unpin>,
    steps: &[Step],
    schema: Option<&Schema>,
    timing: Option<&Timing>,
) -> Report {
    use tokio::time::Instant;
    let mut player = Player::new(steps, schema);
    let mut out = Vec::new();
    let mut queue = Queue::new();
    // When the last message went either way: gaps count from there.
    let mut last = Instant::now();
    player.pending_out(&mut out, None);
    if let Some(t) = timing {
        enqueue(&mut queue, &out, &mut player.marks, t);
    } else if w.write_all(&out).await.is_err() {
        return player.finish();
    }
    let mut streamer = JsonStreamer::new();
    let mut items = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        while let Some((gap, _)) = queue.front() {
            if last + *gap > Instant::now() {
                break;
            }
            let Some((_, bytes)) = queue.pop_front() else {
                break;
            };
            if w.write_all(&bytes).await.is_err() {
                return player.finish();
            }
            last = Instant::now();
        }
        let due = queue.front().map(|(gap, _)| last + *gap);
        let n = tokio::select! {
            n = r.read(&mut buf) => n,
            _ = tokio::time::sleep_until(due.unwrap_or(last)), if due.is_some() => continue,
        };
        let n = match n {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        streamer.feed(&buf[..n], &mut items);
        if !items.is_empty() {
            last = Instant::now();
        }
        out.clear();
        for item in items.drain(..) {
            player.input(item, &mut out);
        }
        if let Some(t) = timing {
            enqueue(&mut queue, &out, &mut player.marks, t);
        } else if !out.is_empty() && w.write_all(&out).await.is_err() {
            break;
        }
    }
    player.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn replies_format_and_ids() {
        let text = "{\n  \"execute\": \"qmp_capabilities\",\n  \"id\": \"libvirt-1\"\n}\n\n{\n  \"return\": {\n  },\n  \"id\": \"libvirt-1\"\n}\n\n{\"execute\": \"query-version\", \"id\": \"libvirt-2\"}\n\n{\"return\": {\"qemu\": {\"micro\": 2, \"minor\": 0, \"major\": 10}, \"package\": \"\"}, \"id\": \"libvirt-2\"}\n";
        let (steps, _) = load_timed(text, None).unwrap();
        assert_eq!(steps.len(), 5);
        let Step::Out(g) = &steps[0] else { panic!() };
        assert_eq!(g["QMP"]["version"]["qemu"]["major"], 10);
        let mut p = Player::new(&steps, None);
        let mut out = Vec::new();
        p.pending_out(&mut out, None);
        assert!(String::from_utf8_lossy(&out)
            .starts_with("{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 2"));
        out.clear();
        p.input(Ok(json!({"execute": "qmp_capabilities"})), &mut out);
        assert_eq!(String::from_utf8_lossy(&out), "{\"return\": {}}\r\n");
        out.clear();
        p.input(Ok(json!({"execute": "query-status", "id": 5})), &mut out);
        assert!(String::from_utf8_lossy(&out).starts_with("{\"id\": 5, \"error\": {\"class\": \"GenericError\", \"desc\": \"replay: expected {\\\"execute\\\":\\\"query-version\\\"}, got {\\\"execute\\\":\\\"query-status\\\"}\"}}"), "{}", String::from_utf8_lossy(&out));
        out.clear();
        p.input(Ok(json!({"execute": "query-version", "id": [1]})), &mut out);
        assert!(String::from_utf8_lossy(&out).ends_with("\"package\": \"\"}, \"id\": [1]}\r\n"));
        let r = p.finish();
        assert_eq!((r.problems.len(), r.left), (1, 0));
    }

    #[test]
    fn id_placement() {
        assert_eq!(
            with_id(&json!({"return": 1}), Some(&json!("a"))),
            json!({"return": 1, "id": "a"})
        );
        let e = with_id(&json!({"error": {}}), Some(&json!(1)));
        assert_eq!(e.as_object().unwrap().keys().next().unwrap(), "id");
        assert_eq!(
            with_id(&json!({"return": 1, "id": 9}), None),
            json!({"return": 1})
        );
    }
}
