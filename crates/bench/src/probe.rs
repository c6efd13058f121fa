//! libvirt's capability probe of an emulator, as libvirt runs it, both passes: the emulator
//! started with libvirt's probe command line (`-S -no-user-config -nodefaults -nographic
//! -machine none,accel=… -qmp unix:…,server=on,wait=off -pidfile … -daemonize`, first with
//! `accel=kvm:tcg`, then `accel=tcg`), the parent's exit awaited (the monitor is ready then),
//! the capabilities negotiated, `query-qmp-schema` asked (libvirt's probe starts with it),
//! then the requests libvirt 9.0 sent to qemu-system-x86_64 10.0.2 in that pass (recorded in
//! `tests/data/qemu-ref/probe/`), then `quit`, until the process has exited.
//!
//! `qmpkit emulate` against a real `qemu-system-x86_64` 10.0.2 (skipped with the reason when
//! it cannot run), in turns. Each figure is the minimum and the median of its rounds, in ms
//! of wall-clock time, for both passes together and for the start alone (spawn to the
//! parent's exit, both passes).
//!
//! Goal: the probe (both passes) under one second.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

use crate::startup::figures;

const ROUNDS: usize = 5;
const GOAL_MS: f64 = 1000.0;
const LIMIT: Duration = Duration::from_secs(30);

/// One request of the recorded probe.
struct Request {
    /// The pass it belongs to: `kvm` or `tcg`.
    accel: String,
    line: Vec<u8>,
}

fn recorded() -> Result<Vec<Request>, String> {
    let path =
        qmpkit_testkit::data::path("qemu-ref/probe/qemu-system-x86_64-10.0.2-libvirt-probe.json");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let v: Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    let list = v.as_array().ok_or("the recorded probe is not a list")?;
    let mut out = Vec::with_capacity(list.len());
    for r in list {
        let mut m = Map::new();
        m.insert("execute".into(), r["execute"].clone());
        if let Some(a) = r.get("arguments").filter(|a| !a.is_null()) {
            m.insert("arguments".into(), a.clone());
        }
        let mut line = serde_json::to_vec(&Value::Object(m)).map_err(|e| e.to_string())?;
        line.push(b'\n');
        out.push(Request {
            accel: r["accel"].as_str().unwrap_or("kvm").to_string(),
            line,
        });
    }
    Ok(out)
}

/// Whether process `pid` has ended (gone, or a zombie nobody reaped yet: a daemon's parent
/// is whoever adopted it).
fn ended(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => s
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .map_or(true, |state| state == "Z" || state == "X"),
        Err(_) => true,
    }
}

/// Read until the answer to the request just sent (events are skipped).
fn answer(r: &mut BufReader<UnixStream>) -> Result<(), String> {
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line).map_err(|e| e.to_string())? == 0 {
            return Err("connection closed".into());
        }
        if line.starts_with("{\"return\"") || line.starts_with("{\"error\"") {
            return Ok(());
        }
    }
}

/// One pass: ms from spawn to the parent's exit, ms from spawn to the process's exit.
fn pass(
    prog: &Path,
    pre: &[String],
    accel: &str,
    requests: &[&Request],
    dir: &Path,
) -> Result<(f64, f64), String> {
    let sock = dir.join("probe.sock");
    let pidfile = dir.join("probe.pid");
    let _ = std::fs::remove_file(&sock);
    let _ = std::fs::remove_file(&pidfile);
    let t = Instant::now();
    let st = Command::new(prog)
        .args(pre)
        .args(["-S", "-no-user-config", "-nodefaults", "-nographic"])
        .args(["-machine", &format!("none,accel={accel}")])
        .arg("-qmp")
        .arg(format!("unix:{},server=on,wait=off", sock.display()))
        .arg("-pidfile")
        .arg(&pidfile)
        .arg("-daemonize")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("{}: {e}", prog.display()))?;
    if !st.status.success() {
        return Err(format!(
            "{}: {}",
            st.status,
            String::from_utf8_lossy(&st.stderr).trim()
        ));
    }
    let started = t.elapsed();
    let pid: u32 = std::fs::read_to_string(&pidfile)
        .map_err(|e| format!("pid file: {e}"))?
        .trim()
        .parse()
        .map_err(|_| "pid file: not a number".to_string())?;
    let s = UnixStream::connect(&sock).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(LIMIT)).map_err(|e| e.to_string())?;
    let mut w = s.try_clone().map_err(|e| e.to_string())?;
    let mut r = BufReader::new(s);
    let mut greeting = String::new();
    r.read_line(&mut greeting).map_err(|e| e.to_string())?;
    if !greeting.starts_with("{\"QMP\"") {
        return Err(format!("no greeting: {greeting:?}"));
    }
    let mut send = |line: &[u8], r: &mut BufReader<UnixStream>| -> Result<(), String> {
        w.write_all(line).map_err(|e| e.to_string())?;
        answer(r)
    };
    send(b"{\"execute\": \"qmp_capabilities\"}\n", &mut r)?;
    send(b"{\"execute\": \"query-qmp-schema\"}\n", &mut r)?;
    for q in requests {
        send(&q.line, &mut r)?;
    }
    send(b"{\"execute\": \"quit\"}\n", &mut r)?;
    // The end of the conversation, then of the process.
    let mut rest = Vec::new();
    let _ = std::io::Read::read_to_end(&mut r, &mut rest);
    while !ended(pid) {
        if t.elapsed() > LIMIT {
            kill9(pid);
            return Err(format!("still running {LIMIT:?} after quit"));
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    Ok((started.as_secs_f64() * 1e3, t.elapsed().as_secs_f64() * 1e3))
}

/// SIGKILL to `pid` (a daemon this pass started), without a libc dependency for one call.
fn kill9(pid: u32) {
    let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
}

struct Case {
    label: &'static str,
    prog: PathBuf,
    pre: Vec<String>,
    total: Vec<f64>,
    start: Vec<f64>,
    failed: Option<String>,
}

fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

pub fn run(results: &mut Map<String, Value>) {
    println!();
    println!("== libvirt's capability probe, both passes (kvm:tcg, then tcg) ==");
    let Some(bin) = crate::startup::qmpkit_bin() else {
        println!("skipped: no qmpkit binary next to the harness (cargo build --release -p qmpkit)");
        return;
    };
    let requests = match recorded() {
        Ok(r) => r,
        Err(e) => {
            println!("skipped: {e}");
            return;
        }
    };
    let kvm: Vec<&Request> = requests.iter().filter(|r| r.accel == "kvm").collect();
    let tcg: Vec<&Request> = requests.iter().filter(|r| r.accel == "tcg").collect();
    let dir = std::env::temp_dir().join(format!("qmpkit-bench-probe-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let mut cases = vec![Case {
        label: "qmpkit emulate",
        prog: bin,
        pre: vec!["emulate".into()],
        total: Vec::new(),
        start: Vec::new(),
        failed: None,
    }];
    let real = PathBuf::from("qemu-system-x86_64");
    let version = Command::new(&real)
        .arg("-version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    cases.push(Case {
        label: "qemu-system-x86_64 10.0.2",
        prog: real,
        pre: Vec::new(),
        total: Vec::new(),
        start: Vec::new(),
        failed: (!version.starts_with("QEMU emulator version 10.0.2"))
            .then(|| "no qemu-system-x86_64 10.0.2 on this machine".to_string()),
    });
    let round = |c: &Case| -> Result<(f64, f64), String> {
        let a = pass(&c.prog, &c.pre, "kvm:tcg", &kvm, &dir)?;
        let b = pass(&c.prog, &c.pre, "tcg", &tcg, &dir)?;
        Ok((a.0 + b.0, a.1 + b.1))
    };
    // One round each to warm the page cache (and find out what cannot run).
    for c in &mut cases {
        if c.failed.is_none() {
            if let Err(e) = round(c) {
                c.failed = Some(e);
            }
        }
    }
    for _ in 0..ROUNDS {
        for c in &mut cases {
            if c.failed.is_some() {
                continue;
            }
            match round(c) {
                Ok((start, total)) => {
                    c.start.push(start);
                    c.total.push(total);
                }
                Err(e) => c.failed = Some(e),
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "{:<28} {:>8} {:>10} {:>18}",
        format!("probe ({ROUNDS} rounds, in turns)"),
        "min ms",
        "median ms",
        "of which start, med"
    );
    let mut out = Map::new();
    out.insert(
        "requests".into(),
        json!({"kvm": kvm.len() + 2, "tcg": tcg.len() + 2}),
    );
    for c in &cases {
        if let Some(e) = &c.failed {
            println!("{:<28} skipped: {e}", c.label);
            out.insert(c.label.into(), json!({"skipped": e}));
            continue;
        }
        if let (Some((min, med)), Some((_, smed))) = (figures(&c.total), figures(&c.start)) {
            println!("{:<28} {min:>8.1} {med:>10.1} {smed:>18.1}", c.label);
            out.insert(
                c.label.into(),
                json!({"min_ms": round1(min), "median_ms": round1(med), "start_median_ms": round1(smed)}),
            );
        }
    }
    if let Some((_, med)) = figures(&cases[0].total).filter(|_| cases[0].failed.is_none()) {
        let verdict = if med < GOAL_MS { "met" } else { "NOT met" };
        println!("goal: probe, both passes < {GOAL_MS} ms (median): {med:.1} ms {verdict}");
        out.insert(
            "goal_probe_ms".into(),
            json!({"goal": format!("< {GOAL_MS}"), "value": round1(med), "met": med < GOAL_MS}),
        );
        if let Some((_, qmed)) = figures(&cases[1].total).filter(|_| cases[1].failed.is_none()) {
            println!(
                "qemu-system-x86_64 / qmpkit emulate (median): {:.1}x",
                qmed / med
            );
            out.insert("ratio_qemu_over_ours".into(), json!(round1(qmed / med)));
        }
    }
    results.insert("probe".into(), Value::Object(out));
}
