//! Start-up as a test suite sees it: from spawning the server process to its QMP greeting
//! read on the monitor socket, for `qmpkit serve --qmp unix:…` and, measured the same way in
//! the same run (in turns, so that whatever else the machine does falls on both alike), a
//! paused `qemu-system-x86_64 -S -display none -nodefaults -qmp unix:…` as the peer (skipped
//! with the reason when it cannot run). Also from spawning to the answer of the first command
//! after negotiation (`qmp_capabilities`, then `query-status`), so that work put off until
//! the first request would show, and the CPU time the process used up to the greeting (which
//! a busy machine disturbs less than wall-clock time). Each figure is the minimum and the median of its runs, in
//! ms of wall-clock time.
//!
//! The socket is polled by connecting: the greeting comes once the server accepts, which it
//! does once it is ready to serve.
//!
//! Goal: `qmpkit serve` greeting under 3 ms (median).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

const ROUNDS: usize = 40;
const GOAL_MS: f64 = 3.0;
const LIMIT: Duration = Duration::from_secs(10);

/// The `qmpkit` binary next to this harness (`cargo build --release` builds both).
pub(crate) fn qmpkit_bin() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let p = exe.parent()?.join("qmpkit");
    p.exists().then_some(p)
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One server to start: its command line for a socket path.
struct Case {
    label: &'static str,
    argv: Box<dyn Fn(&Path) -> (PathBuf, Vec<String>)>,
    greeting: Vec<f64>,
    first_answer: Vec<f64>,
    /// CPU time the process used up to the greeting (all its threads).
    cpu: Vec<f64>,
    failed: Option<String>,
}

/// Connect as soon as the socket accepts.
fn connect(sock: &Path, t: Instant) -> Result<UnixStream, String> {
    let mut tries = 0u32;
    loop {
        match UnixStream::connect(sock) {
            Ok(s) => return Ok(s),
            Err(e) => {
                if t.elapsed() > LIMIT {
                    return Err(format!("no socket after {LIMIT:?}: {e}"));
                }
                tries += 1;
                if tries < 5000 {
                    std::thread::yield_now();
                } else {
                    std::thread::sleep(Duration::from_micros(50));
                }
            }
        }
    }
}

/// One start: ms to the greeting, ms to the first command's answer, CPU ms to the greeting.
fn start_once(case: &Case, dir: &Path) -> Result<(f64, f64, f64), String> {
    let sock = dir.join("s.sock");
    let _ = std::fs::remove_file(&sock);
    let (prog, args) = (case.argv)(&sock);
    let mut cmd = Command::new(&prog);
    cmd.args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let t = Instant::now();
    let child = Killed(
        cmd.spawn()
            .map_err(|e| format!("{}: {e}", prog.display()))?,
    );
    let s = connect(&sock, t)?;
    s.set_read_timeout(Some(LIMIT)).map_err(|e| e.to_string())?;
    let mut w = s.try_clone().map_err(|e| e.to_string())?;
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line).map_err(|e| e.to_string())?;
    let greeting = t.elapsed();
    let cpu = crate::proto::cpu_ns(Path::new(&format!("/proc/{}", child.0.id())))
        .ok_or("no CPU time in /proc")?;
    if !line.starts_with("{\"QMP\"") {
        return Err(format!("no greeting: {line:?}"));
    }
    w.write_all(b"{\"execute\": \"qmp_capabilities\"}\r\n{\"execute\": \"query-status\"}\r\n")
        .map_err(|e| e.to_string())?;
    let mut answers = 0;
    while answers < 2 {
        line.clear();
        if r.read_line(&mut line).map_err(|e| e.to_string())? == 0 {
            return Err("connection closed".into());
        }
        if line.starts_with("{\"return\"") {
            answers += 1;
        } else if line.starts_with("{\"error\"") {
            return Err(format!("error: {}", line.trim()));
        }
    }
    let first = t.elapsed();
    drop(child);
    Ok((
        greeting.as_secs_f64() * 1e3,
        first.as_secs_f64() * 1e3,
        cpu as f64 / 1e6,
    ))
}

/// (min, median).
pub(crate) fn figures(v: &[f64]) -> Option<(f64, f64)> {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    Some((*s.first()?, s[s.len() / 2]))
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

pub fn run(results: &mut Map<String, Value>) {
    println!("== start-up: spawn to QMP greeting ==");
    let Some(bin) = qmpkit_bin() else {
        println!("skipped: no qmpkit binary next to the harness (cargo build --release -p qmpkit)");
        return;
    };
    let dir = std::env::temp_dir().join(format!("qmpkit-bench-startup-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let mut cases = vec![Case {
        label: "qmpkit serve",
        argv: Box::new(move |sock| {
            let spec = format!("unix:{},server=on,wait=off", sock.display());
            (bin.clone(), vec!["serve".into(), "--qmp".into(), spec])
        }),
        greeting: Vec::new(),
        first_answer: Vec::new(),
        cpu: Vec::new(),
        failed: None,
    }];
    cases.push(Case {
        label: "qemu-system-x86_64 -S",
        argv: Box::new(|sock| {
            let spec = format!("unix:{},server=on,wait=off", sock.display());
            let args = ["-S", "-display", "none", "-nodefaults", "-qmp", &spec];
            (
                PathBuf::from("qemu-system-x86_64"),
                args.iter().map(|s| s.to_string()).collect(),
            )
        }),
        greeting: Vec::new(),
        first_answer: Vec::new(),
        cpu: Vec::new(),
        failed: None,
    });
    // One start each to warm the page cache (and find out what cannot run).
    for c in &mut cases {
        if let Err(e) = start_once(c, &dir) {
            c.failed = Some(e);
        }
    }
    for _ in 0..ROUNDS {
        for c in &mut cases {
            if c.failed.is_some() {
                continue;
            }
            match start_once(c, &dir) {
                Ok((g, f, cpu)) => {
                    c.greeting.push(g);
                    c.first_answer.push(f);
                    c.cpu.push(cpu);
                }
                Err(e) => c.failed = Some(e),
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "{:<32} {:>8} {:>10} {:>16} {:>14}",
        format!("to greeting ({ROUNDS} runs, in turns)"),
        "min ms",
        "median ms",
        "1st answer, med",
        "CPU ms, med"
    );
    let mut out = Map::new();
    for c in &cases {
        if let Some(e) = &c.failed {
            println!("{:<32} skipped: {e}", c.label);
            out.insert(c.label.into(), json!({"skipped": e}));
            continue;
        }
        if let (Some((min, med)), Some((amin, amed)), Some((_, cmed))) = (
            figures(&c.greeting),
            figures(&c.first_answer),
            figures(&c.cpu),
        ) {
            println!(
                "{:<32} {min:>8.2} {med:>10.2} {amed:>16.2} {cmed:>14.2}",
                c.label
            );
            out.insert(
                c.label.into(),
                json!({
                    "greeting_min_ms": round2(min),
                    "greeting_median_ms": round2(med),
                    "first_answer_min_ms": round2(amin),
                    "first_answer_median_ms": round2(amed),
                    "cpu_to_greeting_median_ms": round2(cmed),
                }),
            );
        }
    }
    let ours = figures(&cases[0].greeting).filter(|_| cases[0].failed.is_none());
    if let Some((_, med)) = ours {
        let verdict = if med < GOAL_MS { "met" } else { "NOT met" };
        println!("goal: qmpkit serve greeting < {GOAL_MS} ms (median): {med:.2} ms {verdict}");
        out.insert(
            "goal_greeting_ms".into(),
            json!({"goal": format!("< {GOAL_MS}"), "value": round2(med), "met": med < GOAL_MS}),
        );
        let peer = figures(&cases[1].greeting).filter(|_| cases[1].failed.is_none());
        if let Some((_, qmed)) = peer {
            println!(
                "qemu-system-x86_64 -S / qmpkit serve (median): {:.1}x",
                qmed / med
            );
            out.insert(
                "ratio_qemu_over_ours".into(),
                json!((qmed / med * 10.0).round() / 10.0),
            );
        }
    }
    println!();
    results.insert("startup".into(), Value::Object(out));
}
