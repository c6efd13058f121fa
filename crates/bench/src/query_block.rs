//! `query-block` with 500 drives (part of the `block` section; `QMPKIT_BENCH_ONLY=query-block`
//! runs it alone): `-drive if=none,driver=null-co` 500 times on `qmpkit serve` and on
//! `qemu-system-x86_64`, both with `-S -display none -nodefaults`, and beside them the **floor**: the very bytes `qmpkit serve`
//! answered, served by a responder that does nothing to make them (`ceiling::floor`, the C
//! responder of the protocol benchmark reading its reply from a file).
//!
//! A round trip is timed from writing the request to reading the reply's last byte; the reply
//! is not parsed inside it (a QMP message holds no raw newline, so the client looks only at
//! the last byte each read brings). What the three servers spend is told apart from what the
//! client spends: each server's CPU time per query (the scheduler's accounting of the
//! process), and, separately, what parsing the whole reply into a `serde_json::Value` costs
//! the client. The three are measured in interleaved blocks whose order rotates, so that a
//! busy moment of the shared machine falls on all of them. **Share of the floor** is the
//! floor's median over ours: 1.0 would be a server that costs nothing.
//!
//! Goal: median round trip under 2 ms.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::ceiling;
use crate::migration::{qmp_opt, Proc};
use crate::proto::{cpu_ns, Target};
use serde_json::{json, Map, Value};

pub const DRIVES: usize = 500;
/// Round trips per server, in blocks of [`BLOCK`].
const ROUNDS: usize = 200;
const BLOCK: usize = 10;
/// Parses of each reply to time the client's part.
const PARSES: usize = 30;
const GOAL_MS: f64 = 2.0;

const REQUEST: &[u8] = b"{\"execute\": \"query-block\"}\n";

/// A QMP connection that times round trips on bytes: a reply is read to its end, not parsed.
struct RawConn {
    s: UnixStream,
    buf: Vec<u8>,
    len: usize,
    /// Where the reply of the last round trip is in `buf`.
    reply: (usize, usize),
}

impl RawConn {
    fn open(sock: &Path) -> Result<RawConn, String> {
        let t = Instant::now();
        let s = loop {
            match UnixStream::connect(sock) {
                Ok(s) => break s,
                Err(e) if t.elapsed() < Duration::from_secs(20) => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(5))
                }
                Err(e) => return Err(format!("{}: {e}", sock.display())),
            }
        };
        s.set_read_timeout(Some(Duration::from_secs(60)))
            .map_err(|e| e.to_string())?;
        let mut c = RawConn {
            s,
            buf: vec![0; 1 << 20],
            len: 0,
            reply: (0, 0),
        };
        // The greeting, then negotiation.
        c.len = 0;
        c.fill()?;
        c.round_trip(b"{\"execute\": \"qmp_capabilities\"}\n")?;
        Ok(c)
    }

    /// Reads until what has arrived ends a line.
    fn fill(&mut self) -> Result<(), String> {
        loop {
            if self.len == self.buf.len() {
                self.buf.resize(self.buf.len() * 2, 0);
            }
            let n = self
                .s
                .read(&mut self.buf[self.len..])
                .map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("connection closed".into());
            }
            self.len += n;
            if self.buf[self.len - 1] == b'\n' {
                return Ok(());
            }
        }
    }

    /// Sends `request` and reads up to the end of its reply (events before it are skipped);
    /// an error reply is an `Err` with its text.
    fn round_trip(&mut self, request: &[u8]) -> Result<(), String> {
        self.s.write_all(request).map_err(|e| e.to_string())?;
        self.len = 0;
        loop {
            let from = self.len;
            self.fill()?;
            let got = &self.buf[from..self.len];
            // Nearly always the reply alone; otherwise look at each line.
            let reply = if got.starts_with(b"{\"return\"") || got.starts_with(b"{\"error\"") {
                Some((from, self.len))
            } else {
                let mut at = from;
                got.split_inclusive(|&b| b == b'\n').find_map(|l| {
                    at += l.len();
                    (l.starts_with(b"{\"return\"") || l.starts_with(b"{\"error\""))
                        .then_some((at - l.len(), at))
                })
            };
            if let Some((a, b)) = reply {
                self.reply = (a, b);
                if self.buf[a..].starts_with(b"{\"error\"") {
                    return Err(String::from_utf8_lossy(&self.buf[a..b]).trim().to_string());
                }
                return Ok(());
            }
        }
    }

    /// The reply line of the last round trip (with its `\r\n`).
    fn last_reply(&self) -> &[u8] {
        &self.buf[self.reply.0..self.reply.1]
    }
}

/// One server being measured.
struct Server {
    name: String,
    conn: RawConn,
    /// Where its CPU time is read.
    cpu: Option<PathBuf>,
    /// What keeps it running.
    _guard: Box<dyn std::any::Any>,
    /// Its answer, as first read.
    reply: Vec<u8>,
    /// Entries in the answer.
    devices: usize,
    times_ms: Vec<f64>,
    cpu_ns: Option<u64>,
    /// What parsing the reply costs the client (ms, median), once measured.
    parse_ms: f64,
}

impl Server {
    fn new(
        name: impl Into<String>,
        sock: &Path,
        cpu: Option<PathBuf>,
        guard: Box<dyn std::any::Any>,
    ) -> Result<Server, String> {
        let mut conn = RawConn::open(sock)?;
        conn.round_trip(REQUEST)?;
        let reply = conn.last_reply().to_vec();
        let v: Value = serde_json::from_slice(&reply).map_err(|e| e.to_string())?;
        let devices = v["return"].as_array().ok_or("query-block: no list")?.len();
        Ok(Server {
            name: name.into(),
            conn,
            cpu,
            _guard: guard,
            reply,
            devices,
            times_ms: Vec::with_capacity(ROUNDS),
            cpu_ns: Some(0),
            parse_ms: f64::NAN,
        })
    }

    /// One block of round trips, timed, and the server's CPU time over it.
    fn block(&mut self, n: usize) -> Result<(), String> {
        let c0 = self.cpu.as_deref().and_then(cpu_ns);
        for _ in 0..n {
            let t = Instant::now();
            self.conn.round_trip(REQUEST)?;
            self.times_ms.push(t.elapsed().as_secs_f64() * 1e3);
            if self.conn.reply.1 - self.conn.reply.0 != self.reply.len() {
                return Err(format!(
                    "{}: the reply changed length ({} bytes, then {})",
                    self.name,
                    self.reply.len(),
                    self.conn.reply.1 - self.conn.reply.0
                ));
            }
        }
        let c1 = self.cpu.as_deref().and_then(cpu_ns);
        self.cpu_ns = match (self.cpu_ns, c0, c1) {
            (Some(a), Some(x), Some(y)) => Some(a + y.saturating_sub(x)),
            _ => None,
        };
        Ok(())
    }

    /// (median, p99) round trip in ms.
    fn latency(&self) -> (f64, f64) {
        let mut v = self.times_ms.clone();
        v.sort_by(f64::total_cmp);
        (v[v.len() / 2], v[v.len() * 99 / 100])
    }

    /// The server's CPU time per query (ms).
    fn cpu_ms(&self) -> Option<f64> {
        self.cpu_ns
            .map(|ns| ns as f64 / 1e6 / self.times_ms.len().max(1) as f64)
    }

    /// Median time (ms) the client spends parsing the reply into a JSON value.
    fn measure_parse(&self) -> f64 {
        let mut v: Vec<f64> = (0..PARSES)
            .map(|_| {
                let t = Instant::now();
                let r: Result<Value, _> = serde_json::from_slice(&self.reply);
                std::hint::black_box(r.is_ok());
                t.elapsed().as_secs_f64() * 1e3
            })
            .collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    }
}

/// The command line both machines get: paused, no display, no default devices, the drives.
fn machine_args() -> Vec<String> {
    let mut args: Vec<String> = ["-S", "-display", "none", "-nodefaults"]
        .map(String::from)
        .to_vec();
    args.extend(
        (0..DRIVES).flat_map(|i| ["-drive".into(), format!("if=none,id=d{i},driver=null-co")]),
    );
    args
}

fn spawn(program: &Path, args: &[String], sock: &Path) -> Result<(Proc, PathBuf), String> {
    let child = Command::new(program)
        .args(args)
        .args(qmp_opt(sock))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("{}: {e}", program.display()))?;
    let cpu = PathBuf::from(format!("/proc/{}", child.id()));
    let p = Proc(child);
    if !crate::machine::wait_path(sock, Duration::from_secs(30)) {
        return Err(format!("{}: no monitor", program.display()));
    }
    Ok((p, cpu))
}

fn qmpkit(bin: &Path, dir: &Path) -> Result<Server, String> {
    let sock = dir.join("qb.sock");
    let args = [&["serve".to_string()][..], &machine_args()].concat();
    let (p, cpu) = spawn(bin, &args, &sock)?;
    Server::new("qmpkit", &sock, Some(cpu), Box::new(p))
}

fn qemu(dir: &Path) -> Result<Server, String> {
    let sock = dir.join("qbq.sock");
    let (p, cpu) = spawn(Path::new("qemu-system-x86_64"), &machine_args(), &sock)?;
    Server::new("qemu-system-x86_64", &sock, Some(cpu), Box::new(p))
}

fn floor(reply: &[u8]) -> Result<Server, String> {
    let t: Target = ceiling::floor("query-block-floor", reply)?;
    let sock = t.socket().ok_or("no socket")?.to_path_buf();
    let cpu = t.cpu.clone();
    Server::new(t.name.clone(), &sock, cpu, Box::new(t))
}

/// Measures, prints its rows of the block section's table and puts its figures in `out`.
pub fn run(bin: &Path, dir: &Path, out: &mut Map<String, Value>) {
    let ours = qmpkit(bin, dir);
    let theirs = qemu(dir);
    let flo = match &ours {
        Ok(s) => floor(&s.reply),
        Err(_) => Err("no reply to serve".into()),
    };
    let mut servers: Vec<Result<Server, String>> = vec![ours, theirs, flo];
    // Interleaved blocks, the order rotating.
    let n = servers.len();
    for b in 0..ROUNDS / BLOCK {
        for k in 0..n {
            let r = &mut servers[(b + k) % n];
            if let Ok(s) = r {
                if let Err(e) = s.block(BLOCK) {
                    *r = Err(e);
                }
            }
        }
    }
    // The client's part, apart from the round trips.
    for s in servers.iter_mut().flatten() {
        s.parse_ms = s.measure_parse();
    }
    let [ours, theirs, flo] = &servers[..] else {
        return;
    };
    let cell = |r: &Result<Server, String>, f: &dyn Fn(&Server) -> String| match r {
        Ok(s) => f(s),
        Err(_) => "-".into(),
    };
    let lat = |s: &Server| {
        let (m, p) = s.latency();
        format!("{m:.3} / {p:.3} ms ({})", s.devices)
    };
    let cpu = |s: &Server| s.cpu_ms().map_or("-".into(), |c| format!("{c:.3} ms"));
    let parse = |s: &Server| format!("{:.3} ms ({} KB)", s.parse_ms, s.reply.len() / 1000);
    println!(
        "{:<48} {:>20} {:>20} {:>10}",
        format!("query-block, {DRIVES} drives: median / p99"),
        cell(ours, &lat),
        cell(theirs, &lat),
        format!("< {GOAL_MS} ms")
    );
    println!(
        "{:<48} {:>20} {:>20}",
        "  server CPU per query",
        cell(ours, &cpu),
        cell(theirs, &cpu)
    );
    println!(
        "{:<48} {:>20}",
        "  floor: our bytes from a do-nothing responder",
        cell(flo, &lat)
    );
    println!(
        "{:<48} {:>20}",
        "  floor: its CPU per query",
        cell(flo, &cpu)
    );
    let share = match (ours, flo) {
        (Ok(o), Ok(f)) => Some(f.latency().0 / o.latency().0),
        _ => None,
    };
    println!(
        "{:<48} {:>20}",
        "  share of the floor (floor / ours, medians)",
        share.map_or("-".into(), |s| format!("{s:.2}"))
    );
    println!(
        "{:<48} {:>20} {:>20}",
        "  client: parsing the reply (serde_json Value)",
        cell(ours, &parse),
        cell(theirs, &parse)
    );
    for r in [ours, theirs, flo] {
        if let Err(e) = r {
            println!("  query-block: {e}");
        }
    }
    if let Ok(o) = ours {
        let (med, p99) = o.latency();
        out.insert("query_block_drives".into(), json!(o.devices));
        out.insert("query_block_reply_bytes".into(), json!(o.reply.len()));
        out.insert("query_block_median_ms".into(), json!(med));
        out.insert("query_block_p99_ms".into(), json!(p99));
        out.insert("query_block_goal_met".into(), json!(med < GOAL_MS));
        out.insert("query_block_server_cpu_ms".into(), json!(o.cpu_ms()));
        out.insert("query_block_client_parse_ms".into(), json!(o.parse_ms));
        if let Ok(f) = flo {
            let (fm, fp) = f.latency();
            out.insert("query_block_floor_median_ms".into(), json!(fm));
            out.insert("query_block_floor_p99_ms".into(), json!(fp));
            out.insert("query_block_floor_cpu_ms".into(), json!(f.cpu_ms()));
            out.insert("query_block_share_of_floor".into(), json!(fm / med));
        }
        if let Ok(q) = theirs {
            let (qm, qp) = q.latency();
            out.insert("query_block_qemu_system_median_ms".into(), json!(qm));
            out.insert("query_block_qemu_system_p99_ms".into(), json!(qp));
            out.insert(
                "query_block_qemu_system_server_cpu_ms".into(),
                json!(q.cpu_ms()),
            );
            out.insert(
                "query_block_qemu_system_reply_bytes".into(),
                json!(q.reply.len()),
            );
            out.insert(
                "query_block_qemu_system_client_parse_ms".into(),
                json!(q.parse_ms),
            );
            out.insert("query_block_speedup_vs_qemu_system".into(), json!(qm / med));
        }
    }
}
