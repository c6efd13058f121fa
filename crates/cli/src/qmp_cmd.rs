//! `qmpkit qmp SERVER [COMMAND [KEY=VALUE …]]`: QMP for scripts.
//!
//! One command from the command line, or several from stdin (one per line, qmp-shell's
//! shorthand or raw JSON); each `return` printed as one JSON line on stdout, errors on stderr as
//! `Class: description`. `--wait-event` waits for an event after the commands.

use crate::qmp_syntax::{self, Parsed, Request, Shorthand};
use clap::{CommandFactory, Parser};
use qmpkit_client::{Client, Command, ConnectOptions, Endpoint, Error, Event, EventFilter};
use serde_json::{Map, Value};
use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

/// Exit status: a command answered an error.
pub const EXIT_COMMAND: u8 = 1;
/// Exit status: usage error, cannot connect, connection lost.
pub const EXIT_CONNECTION: u8 = 2;
/// Exit status: no reply or no event within `--timeout`.
pub const EXIT_TIMEOUT: u8 = 3;

const AFTER_HELP: &str = "\
Values use qmp-shell's syntax: key=value, a.b=value for nested objects, numbers,
true/false/null, JSON or Python literals for objects and arrays ({'a':1}, [1,2]).
Without COMMAND, commands are read from stdin, one per line, in the same syntax or
as raw JSON ({\"execute\": ...}); blank lines and lines starting with # are skipped.

Exit status: 0 success; 1 a command answered an error (printed on stderr as
'Class: description'); 2 usage error, connection failed or lost; 3 timeout.

Examples:
  qmpkit qmp /run/vm.sock query-status
  qmpkit qmp /run/vm.sock blockdev-add driver=null-co node-name=n0 size=1048576
  qmpkit qmp localhost:4444 --wait-event SHUTDOWN --timeout 30 system_powerdown
  printf 'stop\\ncont\\n' | qmpkit qmp /run/vm.sock";

/// Run QMP commands for scripts.
#[derive(Parser, Debug)]
#[command(name = "qmpkit qmp", after_help = AFTER_HELP)]
pub(crate) struct Cli {
    /// QMP server: a unix socket path, unix:PATH, HOST:PORT or tcp:HOST:PORT
    #[arg(value_name = "SERVER")]
    server: String,
    /// The command to run; without it, commands are read from stdin
    #[arg(value_name = "COMMAND")]
    command: Option<String>,
    /// Arguments: key=value, a.b=value, JSON values
    #[arg(value_name = "KEY=VALUE")]
    args: Vec<String>,
    /// Pretty-print JSON output
    #[arg(short, long)]
    pretty: bool,
    /// After the commands, wait for this event and print it
    #[arg(long, value_name = "NAME")]
    wait_event: Option<String>,
    /// Only an event whose data has this member value counts (repeatable; a.b=value nests)
    #[arg(long = "match", value_name = "KEY=VALUE", requires = "wait_event")]
    matches: Vec<String>,
    /// Give up after SECS waiting for a reply or for the event [default: no limit for
    /// replies, 60 for the event]
    #[arg(long, value_name = "SECS")]
    timeout: Option<f64>,
    /// Go on with the next stdin command after an error (the exit status still says 1)
    #[arg(long)]
    keep_going: bool,
    /// COMMAND and stdin lines are HMP command lines (sent with human-monitor-command)
    #[arg(short = 'H', long)]
    hmp: bool,
}

pub(crate) fn command() -> clap::Command {
    Cli::command().name("qmp")
}

pub fn run(args: Vec<String>) -> ExitCode {
    let argv = std::iter::once("qmpkit qmp".to_string()).chain(args);
    let cli = match Cli::try_parse_from(argv) {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_CONNECTION } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("qmpkit qmp: {e}");
            return ExitCode::from(EXIT_CONNECTION);
        }
    };
    ExitCode::from(rt.block_on(main(cli)))
}

/// Seconds from the command line as a duration (`None` for nonsense).
pub(crate) fn secs(s: f64) -> Option<Duration> {
    (s.is_finite() && (0.0..1e9).contains(&s)).then(|| Duration::from_secs_f64(s))
}

/// The event as QEMU sends it: `{"timestamp": …, "event": …, "data": …}`.
pub(crate) fn event_json(e: &Event) -> Value {
    let mut m = Map::new();
    let mut ts = Map::new();
    ts.insert("seconds".into(), e.timestamp.seconds.into());
    ts.insert("microseconds".into(), e.timestamp.microseconds.into());
    m.insert("timestamp".into(), Value::Object(ts));
    m.insert("event".into(), Value::String(e.event.clone()));
    if !e.data.is_null() {
        m.insert("data".into(), e.data.clone());
    }
    Value::Object(m)
}

/// True when every member of `want` (nested objects compared member by member) is in `have`.
pub(crate) fn contains(have: &Value, want: &Value) -> bool {
    match (have, want) {
        (_, Value::Object(w)) if w.is_empty() => true,
        (Value::Object(h), Value::Object(w)) => w
            .iter()
            .all(|(k, wv)| h.get(k).is_some_and(|hv| contains(hv, wv))),
        (h, w) => h == w,
    }
}

pub(crate) fn to_text(v: &Value, pretty: bool) -> String {
    let r = if pretty {
        serde_json::to_string_pretty(v)
    } else {
        serde_json::to_string(v)
    };
    r.unwrap_or_else(|_| "null".into())
}

/// A client-side failure in one line, and the exit status it deserves.
pub(crate) fn describe(e: &Error) -> (String, u8) {
    match e {
        Error::Qmp { class, desc, .. } => (format!("{class}: {desc}"), EXIT_COMMAND),
        Error::Timeout { timeout, request } => (
            format!("{}: no reply within {:?}", request.command, timeout),
            EXIT_TIMEOUT,
        ),
        other => (other.to_string(), EXIT_CONNECTION),
    }
}

/// Build the client request for a parsed line.
pub(crate) fn to_command(r: Request, timeout: Option<Duration>) -> Command {
    let mut c = Command::new(r.name).args(r.arguments.map(Value::Object).unwrap_or(Value::Null));
    if let Some(id) = r.id {
        c = c.id(id);
    }
    if r.oob {
        c = c.oob();
    }
    if let Some(t) = timeout {
        c = c.timeout(t);
    }
    c
}

/// The request for an HMP command line.
pub(crate) fn hmp_request(line: &str) -> Request {
    let mut a = Map::new();
    a.insert("command-line".into(), Value::String(line.to_string()));
    Request {
        name: "human-monitor-command".into(),
        arguments: Some(a),
        id: None,
        oob: false,
    }
}

async fn main(cli: Cli) -> u8 {
    let timeout = match cli.timeout.map(secs) {
        Some(None) => {
            eprintln!("qmpkit qmp: --timeout: expected a number of seconds");
            return EXIT_CONNECTION;
        }
        Some(Some(t)) => Some(t),
        None => None,
    };
    let want = match qmp_syntax::parse_args(&cli.matches) {
        Ok(m) => Value::Object(m),
        Err(e) => {
            eprintln!("qmpkit qmp: --match: {e}");
            return EXIT_CONNECTION;
        }
    };
    let endpoint = Endpoint::parse(&cli.server);
    let mut opts = ConnectOptions::default();
    if let Some(t) = timeout {
        opts.greeting_timeout = t;
    }
    let client = match opts.connect(&endpoint).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("qmpkit qmp: {}: {e}", cli.server);
            return EXIT_CONNECTION;
        }
    };
    // Subscribed before any command runs, so the event a command causes is not missed.
    let mut events = cli
        .wait_event
        .as_ref()
        .map(|n| client.subscribe(EventFilter::Names(vec![n.clone()])));

    let mut status = 0u8;
    let stdout = std::io::stdout();
    if let Some(name) = &cli.command {
        let req = if cli.hmp {
            let mut line = name.clone();
            for a in &cli.args {
                line.push(' ');
                line.push_str(a);
            }
            Ok(hmp_request(&line))
        } else {
            qmp_syntax::parse_args(&cli.args).map(|a| Request {
                name: name.clone(),
                arguments: (!a.is_empty()).then_some(a),
                id: None,
                oob: false,
            })
        };
        match req {
            Ok(r) => status = run_one(&client, r, timeout, cli.pretty, cli.hmp, &stdout).await,
            Err(e) => {
                eprintln!("qmpkit qmp: {e}");
                return EXIT_CONNECTION;
            }
        }
    } else if !std::io::stdin().is_terminal() || cli.wait_event.is_none() {
        let mut parser = Shorthand::new();
        let stdin = std::io::stdin();
        for (n, line) in stdin.lock().lines().enumerate() {
            let line = match line {
                Ok(l) => l,
                Err(e) => {
                    eprintln!("qmpkit qmp: stdin: {e}");
                    return EXIT_CONNECTION;
                }
            };
            let parsed = if cli.hmp && !line.trim().is_empty() {
                Ok(Parsed::Request(hmp_request(line.trim())))
            } else {
                parser.feed(&line)
            };
            let s = match parsed {
                Ok(Parsed::Request(r)) => {
                    run_one(&client, r, timeout, cli.pretty, cli.hmp, &stdout).await
                }
                Ok(_) => continue,
                Err(e) => {
                    eprintln!("qmpkit qmp: stdin line {}: {e}", n + 1);
                    EXIT_CONNECTION
                }
            };
            if s != 0 {
                if status == 0 || s > status {
                    status = s;
                }
                if !cli.keep_going || s != EXIT_COMMAND {
                    return status;
                }
            }
        }
        if parser.in_transaction() {
            eprintln!("qmpkit qmp: stdin ended inside transaction( … )");
            return EXIT_CONNECTION;
        }
    }
    if status != 0 && !cli.keep_going {
        return status;
    }
    if let (Some(sub), Some(name)) = (events.as_mut(), &cli.wait_event) {
        let limit = timeout.unwrap_or(Duration::from_secs(60));
        let wait = async {
            loop {
                match sub.recv().await {
                    Some(qmpkit_client::EventItem::Event(e)) if contains(&e.data, &want) => {
                        return Some(e)
                    }
                    Some(_) => continue,
                    None => return None,
                }
            }
        };
        match tokio::time::timeout(limit, wait).await {
            Ok(Some(e)) => {
                let mut out = stdout.lock();
                let _ = writeln!(out, "{}", to_text(&event_json(&e), cli.pretty));
                let _ = out.flush();
            }
            Ok(None) => {
                eprintln!(
                    "qmpkit qmp: connection closed while waiting for {name}: {}",
                    client.closed().await
                );
                return EXIT_CONNECTION;
            }
            Err(_) => {
                eprintln!("qmpkit qmp: no {name} event within {limit:?}");
                return EXIT_TIMEOUT;
            }
        }
    }
    client.shutdown().await;
    status
}

async fn run_one(
    client: &Client,
    r: Request,
    timeout: Option<Duration>,
    pretty: bool,
    hmp: bool,
    stdout: &std::io::Stdout,
) -> u8 {
    match client.call(to_command(r, timeout)).await {
        Ok(v) => {
            let mut out = stdout.lock();
            match (&v, hmp) {
                // HMP's answer is text: print it as it is.
                (Value::String(s), true) => {
                    let _ = write!(out, "{s}");
                }
                _ => {
                    let _ = writeln!(out, "{}", to_text(&v, pretty));
                }
            }
            let _ = out.flush();
            0
        }
        Err(e) => {
            let (text, code) = describe(&e);
            eprintln!("{text}");
            code
        }
    }
}
