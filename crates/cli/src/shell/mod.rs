//! `qmpkit shell SERVER` (or `--sim`): an interactive QMP shell in qmp-shell's syntax.
//!
//! On a terminal: line editing (rustyline) with completion from the server's own schema
//! (`complete`), events printed above the line being typed, job progress lines fed by
//! `query-jobs`, history per server. Piped input behaves like qmp-shell: a `(QEMU) ` prompt per
//! line, the whole reply as JSON, events shown when an empty line is read.

mod complete;
mod progress;

use crate::proxy::record::Recorder;
use crate::qmp_syntax::{Parsed, Request, Shorthand};
use clap::{CommandFactory, Parser};
use complete::{Live, Model, Want};
use qmpkit_client::{Client, Command, ConnectOptions, Endpoint, Error, EventItem};
use serde_json::{Map, Value};
use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const AFTER_HELP: &str = "\
Input: COMMAND [KEY=VALUE ...] (a.b=value nests; values are numbers, true/false/null, JSON or
Python literals, or strings), raw JSON requests, and transaction( ... ) over one or more lines.
Shell commands: help, help COMMAND, .events all|none|NAME[,NAME*...], .pretty on|off.
On a terminal: Tab completes commands, argument names, enum values and live values (node names,
job ids, chardev ids, device and object ids, QOM paths); events appear as they arrive; Ctrl-D
leaves.

Examples:
  qmpkit shell /run/vm.sock
  qmpkit shell --sim
  echo 'query-status' | qmpkit shell localhost:4444";

/// Interactive QMP shell
#[derive(Parser, Debug)]
#[command(name = "qmpkit shell", after_help = AFTER_HELP)]
pub(crate) struct Cli {
    /// QMP server: a unix socket path, unix:PATH, HOST:PORT or tcp:HOST:PORT
    #[arg(value_name = "SERVER", required_unless_present = "sim")]
    server: Option<String>,
    /// Start a simulated machine in this process and talk to it
    #[arg(long, conflicts_with = "server")]
    sim: bool,
    /// Input lines are HMP commands (sent with human-monitor-command)
    #[arg(short = 'H', long)]
    hmp: bool,
    /// Pretty-print JSON
    #[arg(short, long)]
    pretty: bool,
    /// Echo each request before sending it
    #[arg(short, long)]
    verbose: bool,
    /// Append the session to FILE as JSON lines (the format qmpkit replay reads)
    #[arg(short = 'l', long = "logfile", value_name = "FILE")]
    log: Option<PathBuf>,
    /// Which events to show: all, none, or names (a trailing * matches a prefix)
    #[arg(long, value_name = "FILTER", default_value = "all")]
    events: String,
    /// Do not read or write the history file
    #[arg(long)]
    no_history: bool,
}

pub(crate) fn command() -> clap::Command {
    Cli::command().name("shell")
}

/// Which events are shown.
#[derive(Debug, Clone)]
struct EventFilter(Option<Vec<String>>);

impl EventFilter {
    fn parse(s: &str) -> EventFilter {
        match s.trim() {
            "all" | "" => EventFilter(None),
            "none" => EventFilter(Some(Vec::new())),
            list => EventFilter(Some(
                list.split(',')
                    .map(|p| p.trim().to_string())
                    .filter(|p| !p.is_empty())
                    .collect(),
            )),
        }
    }

    fn shows(&self, name: &str) -> bool {
        match &self.0 {
            None => true,
            Some(pats) => pats.iter().any(|p| match p.strip_suffix('*') {
                Some(pre) => name.starts_with(pre),
                None => p == name,
            }),
        }
    }
}

/// Output settings shared with the event task.
struct Shared {
    pretty: AtomicBool,
    filter: Mutex<EventFilter>,
    log: Option<Recorder>,
}

fn format(v: &Value, pretty: bool) -> String {
    if pretty {
        let mut buf = Vec::new();
        let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
        let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
        if serde::Serialize::serialize(v, &mut ser).is_ok() {
            return String::from_utf8_lossy(&buf).into_owned();
        }
    }
    qmpkit_wire::to_qemu_string(v)
}

fn event_value(e: &qmpkit_client::Event) -> Value {
    crate::qmp_cmd::event_json(e)
}

pub fn run(args: Vec<String>) -> ExitCode {
    let argv = std::iter::once("qmpkit shell".to_string()).chain(args);
    let cli = match Cli::try_parse_from(argv) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("qmpkit shell: {e}");
            return ExitCode::from(2);
        }
    };
    let started = std::time::Instant::now();
    let conn = rt.block_on(connect(&cli));
    let (client, name) = match conn {
        Ok(c) => c,
        Err(e) => {
            eprintln!("qmpkit shell: {e}");
            return ExitCode::from(2);
        }
    };
    // The interface loads while the shell gets ready; completion and help wait for it.
    let timing = std::env::var_os("QMPKIT_SHELL_TIMING")
        .is_some()
        .then_some(started);
    let model = LazyModel::start(client.clone(), rt.handle().clone(), timing);
    let log = match &cli.log {
        Some(p) => match Recorder::create(p) {
            Ok(r) => Some(r),
            Err(e) => {
                eprintln!("qmpkit shell: {}: {e}", p.display());
                return ExitCode::from(2);
            }
        },
        None => None,
    };
    if let Some(l) = &log {
        l.value(Some(1), "out", &client.greeting().raw);
        let mut neg = Map::new();
        neg.insert("execute".into(), "qmp_capabilities".into());
        if client.oob_enabled() {
            neg.insert("arguments".into(), serde_json::json!({"enable": ["oob"]}));
        }
        l.value(Some(1), "in", &Value::Object(neg));
        l.value(Some(1), "out", &serde_json::json!({"return": {}}));
    }
    let shared = Arc::new(Shared {
        pretty: AtomicBool::new(cli.pretty),
        filter: Mutex::new(EventFilter::parse(&cli.events)),
        log,
    });
    let v = &client.greeting().version.qemu;
    let banner = format!(
        "qmpkit shell: connected to QEMU {}.{}.{} (help lists its commands)",
        v.major, v.minor, v.micro
    );
    if timing.is_some() {
        eprintln!("qmpkit shell: ready in {:?}", started.elapsed());
    }
    let session = Session {
        client,
        rt: rt.handle().clone(),
        model,
        shared,
        hmp: cli.hmp,
        verbose: cli.verbose,
        parser: Shorthand::new(),
    };
    let code = if std::io::stdin().is_terminal() {
        interactive(session, &banner, &cli, &name)
    } else {
        piped(session, &banner)
    };
    // Exit here: the schema loader may still be waiting on the runtime, which must not be
    // shut down under it.
    let _ = std::io::stdout().flush();
    let _ = rt;
    std::process::exit(code)
}

/// Connect (or start the simulated machine); the client and a name for the history file.
async fn connect(cli: &Cli) -> Result<(Client, String), String> {
    if cli.sim {
        let s = sim().await?;
        let c = ConnectOptions::default()
            .from_unix_stream(s)
            .await
            .map_err(|e| format!("simulated machine: {e}"))?;
        return Ok((c, "sim".into()));
    }
    let server = cli.server.clone().unwrap_or_default();
    let c = ConnectOptions::default()
        .connect(&Endpoint::parse(&server))
        .await
        .map_err(|e| format!("{server}: {e}"))?;
    Ok((c, server))
}

/// A simulated machine (the default one) served in this process over a socket pair.
async fn sim() -> Result<tokio::net::UnixStream, String> {
    use qmpkit_machine_server::MachineHandle;
    use qmpkit_server::{Registry, Server, ServerOptions};
    let schema = qmpkit_machine::embedded::load_schema().map_err(|e| e.to_string())?;
    let schema = Arc::new(schema);
    let config = Arc::new(qmpkit_machine::config::MachineConfig::default_machine());
    let handle = MachineHandle::new(qmpkit_machine::Machine::new(config.clone(), schema.clone()));
    let mut reg = Registry::new();
    // What the machine does not implement says so, as under `qmpkit serve`.
    handle.register(&mut reg, &schema, qmpkit_server::Unhandled::NotImplemented);
    let sopts = ServerOptions {
        qemu_version: config.qemu_version,
        package: config.package.clone(),
        ..ServerOptions::default()
    };
    let server = Server::new(schema, reg, sopts);
    handle.set_events(Some(server.events()));
    tokio::spawn(handle.clone().run_timers(None));
    let (a, b) = tokio::net::UnixStream::pair().map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _keep = handle;
        server.serve_unix_stream(a).await;
    });
    Ok(b)
}

type Loader = std::thread::JoinHandle<Option<Arc<Model>>>;

/// The server's interface, loaded in the background from the moment the shell connects.
#[derive(Clone)]
struct LazyModel {
    cell: Arc<std::sync::OnceLock<Option<Arc<Model>>>>,
    loader: Arc<Mutex<Option<Loader>>>,
}

impl LazyModel {
    /// Load in the background; with `timing`, say on stderr how long after it the model was
    /// ready (the benchmark harness reads it).
    fn start(
        client: Client,
        rt: tokio::runtime::Handle,
        timing: Option<std::time::Instant>,
    ) -> LazyModel {
        let loader = std::thread::spawn(move || {
            match rt.block_on(client.call(Command::new("query-qmp-schema"))) {
                Ok(v) => match qmpkit_schema::load_introspection(&v) {
                    Ok(s) => {
                        let m = Arc::new(Model::new(s));
                        if let Some(t) = timing {
                            eprintln!("qmpkit shell: schema loaded in {:?}", t.elapsed());
                        }
                        Some(m)
                    }
                    Err(e) => {
                        eprintln!("qmpkit shell: note: the server's schema does not load ({e}); no completion");
                        None
                    }
                },
                Err(e) => {
                    eprintln!("qmpkit shell: note: no schema from the server ({e}); no completion");
                    None
                }
            }
        });
        LazyModel {
            cell: Arc::new(std::sync::OnceLock::new()),
            loader: Arc::new(Mutex::new(Some(loader))),
        }
    }

    /// The model, once loaded (waits for the loader the first time).
    fn get(&self) -> Option<Arc<Model>> {
        if let Some(m) = self.cell.get() {
            return m.clone();
        }
        let h = self.loader.lock().ok().and_then(|mut g| g.take());
        if let Some(h) = h {
            let m = h.join().ok().flatten();
            let _ = self.cell.set(m);
        }
        self.cell.get().cloned().flatten()
    }
}

struct Session {
    client: Client,
    rt: tokio::runtime::Handle,
    model: LazyModel,
    shared: Arc<Shared>,
    hmp: bool,
    verbose: bool,
    parser: Shorthand,
}

/// What one input line did.
enum Outcome {
    /// Text to print (may be empty).
    Print(String),
    /// Keep reading (inside a transaction).
    More,
}

impl Session {
    fn prompt(&self) -> &'static str {
        if self.parser.in_transaction() {
            "TRANS> "
        } else {
            "(QEMU) "
        }
    }

    /// Handle one line of input.
    fn line(&mut self, line: &str) -> Outcome {
        let t = line.trim();
        if !self.parser.in_transaction() {
            if t == "help" || t.starts_with("help ") {
                return Outcome::Print(self.help(t[4..].trim()));
            }
            if let Some(f) = t.strip_prefix(".events") {
                let f = f.trim();
                if let Ok(mut g) = self.shared.filter.lock() {
                    *g = EventFilter::parse(if f.is_empty() { "all" } else { f });
                }
                return Outcome::Print(String::new());
            }
            if let Some(p) = t.strip_prefix(".pretty") {
                self.shared
                    .pretty
                    .store(p.trim() != "off", Ordering::Relaxed);
                return Outcome::Print(String::new());
            }
        }
        let parsed = if self.hmp && !t.is_empty() {
            Ok(Parsed::Request(crate::qmp_cmd::hmp_request(t)))
        } else {
            self.parser.feed(line)
        };
        match parsed {
            Ok(Parsed::Empty) => Outcome::Print(String::new()),
            Ok(Parsed::Pending) => Outcome::More,
            Ok(Parsed::Request(r)) => Outcome::Print(self.execute(r)),
            Err(e) => Outcome::Print(format!("Error while parsing command line: {e}")),
        }
    }

    fn help(&self, what: &str) -> String {
        let Some(m) = self.model.get() else {
            return "no schema from the server".into();
        };
        if what.is_empty() {
            return m.commands().join("\n");
        }
        m.signature(what)
            .unwrap_or_else(|| format!("help: no command '{what}' in the server's schema"))
    }

    fn execute(&mut self, r: Request) -> String {
        let pretty = self.shared.pretty.load(Ordering::Relaxed);
        let sent = r.to_json();
        let mut out = String::new();
        if self.verbose {
            out.push_str(&format(&sent, pretty));
            out.push('\n');
        }
        if let Some(l) = &self.shared.log {
            l.value(Some(1), "in", &sent);
        }
        let reply = match self
            .rt
            .block_on(self.client.call(crate::qmp_cmd::to_command(r, None)))
        {
            Ok(v) => {
                let mut m = Map::new();
                m.insert("return".into(), v);
                Value::Object(m)
            }
            Err(Error::Qmp { class, desc, .. }) => {
                serde_json::json!({"error": {"class": class, "desc": desc}})
            }
            Err(e) => {
                out.push_str(&format!("qmpkit shell: {e}"));
                return out;
            }
        };
        if let Some(l) = &self.shared.log {
            l.value(Some(1), "out", &reply);
        }
        match (self.hmp, reply.get("return")) {
            (true, Some(Value::String(s))) => out.push_str(s.trim_end_matches('\n')),
            _ => out.push_str(&format(&reply, pretty)),
        }
        out
    }
}

/// Piped input: qmp-shell's behaviour.
fn piped(mut s: Session, banner: &str) -> i32 {
    let mut events = s.client.events();
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{banner}\n");
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    loop {
        let _ = write!(out, "{}", s.prompt());
        let _ = out.flush();
        let Some(Ok(line)) = lines.next() else {
            let _ = writeln!(out);
            break;
        };
        if line.trim().is_empty() && !s.parser.in_transaction() {
            // An empty line shows the events received so far.
            let pretty = s.shared.pretty.load(Ordering::Relaxed);
            while let Some(item) = events.try_recv() {
                if let EventItem::Event(e) = item {
                    if let Some(l) = &s.shared.log {
                        l.value(Some(1), "out", &event_value(&e));
                    }
                    let shown = s
                        .shared
                        .filter
                        .lock()
                        .map(|f| f.shows(&e.event))
                        .unwrap_or(true);
                    if shown {
                        let _ = writeln!(out, "{}", format(&event_value(&e), pretty));
                    }
                }
            }
            continue;
        }
        match s.line(&line) {
            Outcome::Print(text) if !text.is_empty() => {
                let _ = writeln!(out, "{text}");
            }
            _ => {}
        }
        if s.client.is_closed() {
            let _ = writeln!(out);
            return 2;
        }
    }
    0
}

/// The history file for a server.
fn history_path(name: &str) -> Option<PathBuf> {
    let base = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))?;
    let file: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    Some(base.join("qmpkit/history").join(file))
}

struct Helper {
    model: LazyModel,
    client: Client,
    rt: tokio::runtime::Handle,
    in_transaction: Arc<AtomicBool>,
}

impl Helper {
    fn call(&self, cmd: Command) -> Option<Value> {
        let c = self.client.clone();
        self.rt
            .block_on(
                async move { tokio::time::timeout(Duration::from_millis(500), c.call(cmd)).await },
            )
            .ok()?
            .ok()
    }

    fn names(&self, cmd: Command, key: &str) -> Vec<String> {
        match self.call(cmd) {
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(|x| x.get(key).and_then(Value::as_str))
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
            _ => Vec::new(),
        }
    }

    /// The names of the QOM children of `path`.
    fn children(&self, path: &str) -> Vec<String> {
        match self.call(Command::new("qom-list").arg("path", path)) {
            Some(Value::Array(a)) => a
                .iter()
                .filter(|p| p["type"].as_str().is_some_and(|t| t.starts_with("child<")))
                .filter_map(|p| p["name"].as_str().map(str::to_string))
                .collect(),
            _ => Vec::new(),
        }
    }

    fn live(&self, kind: Live, prefix: &str, hint: &str) -> Vec<String> {
        let mut v = match kind {
            Live::NodeName => {
                let mut v = self.names(Command::new("query-named-block-nodes"), "node-name");
                v.extend(self.names(Command::new("query-block"), "device"));
                v
            }
            Live::JobId => {
                let mut v = self.names(Command::new("query-jobs"), "id");
                v.extend(self.names(Command::new("query-block-jobs"), "device"));
                v
            }
            Live::ChardevId => self.names(Command::new("query-chardev"), "label"),
            Live::DeviceId => self.children("/machine/peripheral"),
            Live::ObjectId => self.children("/objects"),
            Live::QomPath => {
                let dir = match prefix.rfind('/') {
                    Some(0) | None => "/".to_string(),
                    Some(i) => prefix[..i].to_string(),
                };
                let list = self.call(Command::new("qom-list").arg("path", dir.clone()));
                let mut out = Vec::new();
                if let Some(Value::Array(a)) = list {
                    for p in a {
                        let (Some(n), Some(t)) = (p["name"].as_str(), p["type"].as_str()) else {
                            continue;
                        };
                        if t.starts_with("child<") || t.starts_with("link<") {
                            let base = if dir == "/" {
                                String::new()
                            } else {
                                dir.clone()
                            };
                            out.push(format!("{base}/{n}"));
                        }
                    }
                }
                out
            }
            Live::QomProperty => {
                if hint.is_empty() {
                    Vec::new()
                } else {
                    self.names(Command::new("qom-list").arg("path", hint), "name")
                }
            }
        };
        v.sort();
        v.dedup();
        v.retain(|s| s.starts_with(prefix));
        v
    }
}

/// Unless `polled` says it is already done: ask `query` four times a second and draw its
/// answer's bars until nothing is active.
fn poll_bars(
    client: &qmpkit_client::Client,
    polled: &Arc<AtomicBool>,
    print: &(impl Fn(String) + Clone + Send + Sync + 'static),
    query: &'static str,
    items: fn(&Value) -> Vec<progress::Item>,
) {
    if polled.swap(true, Ordering::AcqRel) {
        return;
    }
    let (client, polled, print) = (client.clone(), polled.clone(), print.clone());
    tokio::spawn(async move {
        let mut bars = progress::Bars::new(Arc::new(print));
        loop {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let Ok(v) = client.call(Command::new(query)).await else {
                break;
            };
            if !bars.update(&items(&v)) {
                break;
            }
        }
        polled.store(false, Ordering::Release);
    });
}

impl rustyline::completion::Completer for Helper {
    type Candidate = String;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &rustyline::Context<'_>,
    ) -> rustyline::Result<(usize, Vec<String>)> {
        let Some(m) = self.model.get() else {
            return Ok((pos, Vec::new()));
        };
        let head = line.get(..pos).unwrap_or(line);
        let trans = self.in_transaction.load(Ordering::Relaxed);
        Ok(match complete::complete(&m, head, trans) {
            Want::Words(start, words) => (start, words),
            Want::Live(start, kind, prefix, hint) => (start, self.live(kind, &prefix, &hint)),
        })
    }
}

impl rustyline::hint::Hinter for Helper {
    type Hint = String;
}
impl rustyline::highlight::Highlighter for Helper {}
impl rustyline::validate::Validator for Helper {}
impl rustyline::Helper for Helper {}

fn interactive(mut s: Session, banner: &str, cli: &Cli, name: &str) -> i32 {
    use rustyline::error::ReadlineError;
    use rustyline::ExternalPrinter;
    let config = rustyline::Config::builder()
        .completion_type(rustyline::CompletionType::List)
        .auto_add_history(false)
        .build();
    let mut ed: rustyline::Editor<Helper, rustyline::history::FileHistory> =
        match rustyline::Editor::with_config(config) {
            Ok(e) => e,
            Err(e) => {
                eprintln!("qmpkit shell: {e}");
                return 2;
            }
        };
    let in_transaction = Arc::new(AtomicBool::new(false));
    ed.set_helper(Some(Helper {
        model: s.model.clone(),
        client: s.client.clone(),
        rt: s.rt.clone(),
        in_transaction: in_transaction.clone(),
    }));
    let history = (!cli.no_history).then(|| history_path(name)).flatten();
    if let Some(h) = &history {
        let _ = ed.load_history(h);
    }
    println!("{banner}");
    // Events (and job progress) printed above the line being edited.
    let printer = ed
        .create_external_printer()
        .ok()
        .map(|p| Arc::new(Mutex::new(p)));
    let mut events = s.client.events();
    let shared = s.shared.clone();
    let client = s.client.clone();
    let print = {
        let printer = printer.clone();
        move |text: String| match &printer {
            Some(p) => {
                if let Ok(mut p) = p.lock() {
                    let _ = p.print(format!("{text}\n"));
                }
            }
            None => println!("{text}"),
        }
    };
    let print2 = print.clone();
    s.rt.spawn(async move {
        let jobs_polled = Arc::new(AtomicBool::new(false));
        let migration_polled = Arc::new(AtomicBool::new(false));
        while let Some(item) = events.recv().await {
            let EventItem::Event(e) = item else { continue };
            let v = event_value(&e);
            if let Some(l) = &shared.log {
                l.value(Some(1), "out", &v);
            }
            let pretty = shared.pretty.load(Ordering::Relaxed);
            if shared
                .filter
                .lock()
                .map(|f| f.shows(&e.event))
                .unwrap_or(true)
            {
                print2(format(&v, pretty));
            }
            let status = e.data["status"].as_str().unwrap_or("");
            if e.event == "JOB_STATUS_CHANGE" && status == "running" {
                poll_bars(&client, &jobs_polled, &print2, "query-jobs", |v| {
                    v.as_array().map(|j| progress::jobs(j)).unwrap_or_default()
                });
            }
            if e.event == "MIGRATION" && matches!(status, "setup" | "active") {
                poll_bars(
                    &client,
                    &migration_polled,
                    &print2,
                    "query-migrate",
                    progress::migration,
                );
            }
        }
    });
    let mut code = 0;
    loop {
        in_transaction.store(s.parser.in_transaction(), Ordering::Relaxed);
        let prompt = s.prompt();
        match ed.readline(prompt) {
            Ok(line) => {
                if !line.trim().is_empty() {
                    let _ = ed.add_history_entry(line.as_str());
                }
                match s.line(&line) {
                    Outcome::Print(t) if !t.is_empty() => println!("{t}"),
                    _ => {}
                }
                if s.client.is_closed() {
                    eprintln!("qmpkit shell: the server closed the connection");
                    code = 2;
                    break;
                }
            }
            Err(ReadlineError::Interrupted) => {
                s.parser.cancel();
            }
            Err(ReadlineError::Eof) => break,
            Err(e) => {
                eprintln!("qmpkit shell: {e}");
                code = 2;
                break;
            }
        }
    }
    if let Some(h) = &history {
        if let Some(dir) = h.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let _ = ed.save_history(h);
    }
    code
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_filters() {
        let f = EventFilter::parse("JOB_*,STOP");
        assert!(f.shows("JOB_STATUS_CHANGE") && f.shows("STOP") && !f.shows("RESUME"));
        assert!(!EventFilter::parse("none").shows("STOP"));
        assert!(EventFilter::parse("all").shows("STOP"));
    }
}
