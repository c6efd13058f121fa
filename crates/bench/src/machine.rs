//! The simulated machine: one idle `qmpkit serve` process's resident memory, the latency of
//! `query-qmp-schema` on it, and a fleet of 10 000 machines in one process (its memory, and
//! that a sample of the machines answer). qemu-storage-daemon and a paused
//! `qemu-system-x86_64 -S -display none -nodefaults`, when installed, are measured in the same
//! run as peers (real QEMU monitor processes; a peer that cannot run shows as `-`).
//!
//! Goals: idle machine ≤ 7.5 MiB RSS; `query-qmp-schema` < 100 µs (median); 10 000 machines
//! < 1 GiB after every one of them answered once.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

pub(crate) use qmpkit_testkit::cmd::wait_path;
use qmpkit_testkit::fleet::rss_kib;

const FLEET: usize = 10_000;
/// Goals: idle RSS (KiB), `query-qmp-schema` median (µs), the fleet after all answered (KiB).
const IDLE_RSS_GOAL_KIB: u64 = 7 * 1024 + 512;
const SCHEMA_GOAL_US: f64 = 100.0;
const FLEET_GOAL_KIB: u64 = 1024 * 1024;

/// The `qmpkit` binary next to this harness (`cargo build --release` builds both).
fn qmpkit_bin() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let p = exe.parent()?.join("qmpkit");
    p.exists().then_some(p)
}

/// A size in KiB as MiB for the table (`-` when not measured).
pub(crate) fn kib(v: Option<u64>) -> String {
    v.map(|k| format!("{:.1} MiB", k as f64 / 1024.0))
        .unwrap_or("-".into())
}

/// [`qmpkit_bin`], or else a line saying why the section is skipped.
pub(crate) fn qmpkit_bin_or_say() -> Option<PathBuf> {
    let bin = qmpkit_bin();
    if bin.is_none() {
        println!("skipped: no qmpkit binary next to the harness (cargo build --release -p qmpkit)");
    }
    bin
}

struct Proc {
    child: Child,
    dir: PathBuf,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub(crate) fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("qmpkit-bench-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    let _ = std::fs::create_dir_all(&d);
    d
}

struct Conn {
    r: BufReader<UnixStream>,
    w: UnixStream,
}

impl Conn {
    fn open(p: &Path) -> Option<Conn> {
        let s = UnixStream::connect(p).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(20))).ok()?;
        let w = s.try_clone().ok()?;
        let mut c = Conn {
            r: BufReader::new(s),
            w,
        };
        c.line()?;
        c.call("qmp_capabilities")?;
        Some(c)
    }

    fn line(&mut self) -> Option<String> {
        let mut l = String::new();
        match self.r.read_line(&mut l) {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(l),
        }
    }

    /// Send a command; the reply line (events skipped).
    fn call(&mut self, cmd: &str) -> Option<String> {
        writeln!(self.w, "{{\"execute\": \"{cmd}\"}}").ok()?;
        loop {
            let l = self.line()?;
            if !l.starts_with("{\"timestamp\"") {
                return Some(l);
            }
        }
    }
}

fn spawn_qmpkit(bin: &Path, tag: &str, extra: &[String]) -> Option<(Proc, PathBuf)> {
    let dir = tmpdir(tag);
    let sock = dir.join("m.sock");
    let mut args = vec![
        "serve".to_string(),
        "-qmp".to_string(),
        format!("unix:{},server=on,wait=off", sock.display()),
    ];
    args.extend_from_slice(extra);
    let child = Command::new(bin)
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let p = Proc { child, dir };
    wait_path(&sock, Duration::from_secs(10)).then_some((p, sock))
}

fn spawn_qsd(tag: &str) -> Option<(Proc, PathBuf)> {
    let dir = tmpdir(tag);
    let sock = dir.join("qsd.sock");
    let child = Command::new("qemu-storage-daemon")
        .arg("--chardev")
        .arg(format!(
            "socket,id=m,path={},server=on,wait=off",
            sock.display()
        ))
        .arg("--monitor")
        .arg("chardev=m")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let p = Proc { child, dir };
    wait_path(&sock, Duration::from_secs(10)).then_some((p, sock))
}

/// A paused full-system QEMU (no devices, no display), its QMP monitor on a unix socket.
fn spawn_qemu_system(tag: &str) -> Option<(Proc, PathBuf)> {
    let dir = tmpdir(tag);
    let sock = dir.join("qemu.sock");
    let child = Command::new("qemu-system-x86_64")
        .args(["-S", "-display", "none", "-nodefaults", "-qmp"])
        .arg(format!("unix:{},server=on,wait=off", sock.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let p = Proc { child, dir };
    wait_path(&sock, Duration::from_secs(10)).then_some((p, sock))
}

/// Idle RSS after one session (greeting, negotiation, one query).
fn idle_rss(p: &Proc, sock: &Path) -> Option<u64> {
    let mut c = Conn::open(sock)?;
    c.call("query-version")?;
    drop(c);
    std::thread::sleep(Duration::from_millis(200));
    rss_kib(p.child.id())
}

/// Latency of `query-qmp-schema` in µs: (median, p99, reply bytes).
fn schema_latency(sock: &Path) -> Option<(f64, f64, usize)> {
    let mut c = Conn::open(sock)?;
    let len = c.call("query-qmp-schema")?.len();
    let mut v = Vec::new();
    for _ in 0..300 {
        let t = Instant::now();
        c.call("query-qmp-schema")?;
        v.push(t.elapsed().as_secs_f64() * 1e6);
    }
    v.sort_by(|a, b| a.total_cmp(b));
    Some((v[v.len() / 2], v[v.len() * 99 / 100], len))
}

pub fn run(results: &mut Map<String, Value>) {
    println!("== simulated machine ==");
    let Some(bin) = qmpkit_bin_or_say() else {
        return;
    };
    let mut out = Map::new();
    let qsd = spawn_qsd("qsd");
    let qsd_rss = qsd.as_ref().and_then(|(p, s)| idle_rss(p, s));
    let qsd_lat = qsd.as_ref().and_then(|(_, s)| schema_latency(s));
    drop(qsd);
    let sys = spawn_qemu_system("qemu-system");
    if sys.is_none() {
        println!("qemu-system-x86_64 -S: absent or does not start (its column shows -)");
    }
    let sys_rss = sys.as_ref().and_then(|(p, s)| idle_rss(p, s));
    let sys_lat = sys.as_ref().and_then(|(_, s)| schema_latency(s));
    drop(sys);

    let one = spawn_qmpkit(&bin, "one", &[]);
    let rss = one.as_ref().and_then(|(p, s)| idle_rss(p, s));
    let lat = one.as_ref().and_then(|(_, s)| schema_latency(s));
    drop(one);

    println!(
        "{:<44} {:>14} {:>14} {:>14} {:>10}",
        "", "qmpkit", "qsd 10.0", "qemu-system -S", "goal"
    );
    println!(
        "{:<44} {:>14} {:>14} {:>14} {:>10}",
        "idle machine RSS",
        kib(rss),
        kib(qsd_rss),
        kib(sys_rss),
        "≤ 7.5 MiB"
    );
    let us = |v: Option<(f64, f64, usize)>, i: usize| {
        v.map(|t| format!("{:.0} µs", if i == 0 { t.0 } else { t.1 }))
            .unwrap_or("-".into())
    };
    println!(
        "{:<44} {:>14} {:>14} {:>14} {:>10}",
        "query-qmp-schema latency, median",
        us(lat, 0),
        us(qsd_lat, 0),
        us(sys_lat, 0),
        "< 100 µs"
    );
    println!(
        "{:<44} {:>14} {:>14} {:>14}",
        "query-qmp-schema latency, p99",
        us(lat, 1),
        us(qsd_lat, 1),
        us(sys_lat, 1)
    );
    if let Some(k) = rss {
        out.insert("idle_rss_kib".into(), json!(k));
        out.insert("idle_rss_goal_met".into(), json!(k <= IDLE_RSS_GOAL_KIB));
        if let Some(q) = qsd_rss {
            out.insert("idle_rss_vs_qsd".into(), json!(k as f64 / q as f64));
        }
        if let Some(q) = sys_rss {
            out.insert("qemu_system_idle_rss_kib".into(), json!(q));
            out.insert("idle_rss_vs_qemu_system".into(), json!(k as f64 / q as f64));
        }
    }
    if let Some((med, p99, bytes)) = lat {
        out.insert("qmp_schema_median_us".into(), json!(med));
        out.insert("qmp_schema_p99_us".into(), json!(p99));
        out.insert("qmp_schema_reply_bytes".into(), json!(bytes));
        out.insert("qmp_schema_goal_met".into(), json!(med < SCHEMA_GOAL_US));
        if let Some((qmed, _, _)) = qsd_lat {
            out.insert("qmp_schema_speedup_vs_qsd".into(), json!(qmed / med));
        }
        if let Some((qmed, _, _)) = sys_lat {
            out.insert(
                "qmp_schema_speedup_vs_qemu_system".into(),
                json!(qmed / med),
            );
        }
    }

    // The fleet.
    let dir = tmpdir("fleet");
    let t = Instant::now();
    let child = Command::new(&bin)
        .args([
            "serve",
            "--machines",
            &FLEET.to_string(),
            "--qmp",
            &format!("unix:{}/vm-%d.sock,server=on,wait=off", dir.display()),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let Ok(child) = child else {
        println!("fleet: cannot start qmpkit");
        results.insert("machine".into(), Value::Object(out));
        return;
    };
    let fleet = Proc {
        child,
        dir: dir.clone(),
    };
    let last = dir.join(format!("vm-{}.sock", FLEET - 1));
    if !wait_path(&last, Duration::from_secs(120)) {
        println!("fleet: the last machine's socket never appeared");
        results.insert("machine".into(), Value::Object(out));
        return;
    }
    // Binding happens before serving starts: give the process a moment.
    std::thread::sleep(Duration::from_millis(300));
    let startup = t.elapsed();
    // A sample of machines, spread over the fleet: each answers with its own name.
    let mut answered = 0;
    let sample = 200;
    let t = Instant::now();
    for k in 0..sample {
        let i = (k * 7919) % FLEET;
        let Some(mut c) = Conn::open(&dir.join(format!("vm-{i}.sock"))) else {
            continue;
        };
        let want = format!("\"vm-{i}\"");
        if c.call("query-name").is_some_and(|r| r.contains(&want))
            && c.call("query-status")
                .is_some_and(|r| r.contains("running"))
        {
            answered += 1;
        }
    }
    let sample_time = t.elapsed();
    let fleet_rss = rss_kib(fleet.child.id());
    // Then every machine answers once (each gets its server on its first
    // connection): memory with all of them connected at least once.
    let t = Instant::now();
    let mut all_answered = 0;
    for i in 0..FLEET {
        let Some(mut c) = Conn::open(&dir.join(format!("vm-{i}.sock"))) else {
            continue;
        };
        if c.call("query-name")
            .is_some_and(|r| r.contains(&format!("\"vm-{i}\"")))
        {
            all_answered += 1;
        }
    }
    let all_time = t.elapsed();
    std::thread::sleep(Duration::from_millis(200));
    let all_rss = rss_kib(fleet.child.id());
    drop(fleet);
    println!(
        "{:<44} {:>14} {:>14} {:>14} {:>10}",
        format!("fleet of {FLEET} machines, RSS"),
        kib(fleet_rss),
        "",
        "",
        ""
    );
    if let Some(k) = fleet_rss {
        println!(
            "{:<44} {:>14}",
            "  per machine",
            format!("{:.0} KiB", k as f64 / FLEET as f64)
        );
        out.insert("fleet_rss_kib".into(), json!(k));
    }
    println!(
        "{:<44} {:>14}",
        "  start-up (all sockets bound)",
        format!("{:.1} s", startup.as_secs_f64())
    );
    println!(
        "{:<44} {:>14}",
        format!("  sample answering ({sample} machines)"),
        format!(
            "{answered}/{sample} in {:.0} ms",
            sample_time.as_secs_f64() * 1e3
        )
    );
    println!(
        "{:<44} {:>14} {:>14} {:>14} {:>10}",
        format!("  after all {FLEET} answered once, RSS"),
        kib(all_rss),
        "",
        "",
        "< 1 GiB"
    );
    println!(
        "{:<44} {:>14}",
        "  all answering",
        format!("{all_answered}/{FLEET} in {:.1} s", all_time.as_secs_f64())
    );
    if let Some(k) = all_rss {
        out.insert("fleet_all_connected_rss_kib".into(), json!(k));
        out.insert(
            "fleet_all_connected_goal_met".into(),
            json!(k < FLEET_GOAL_KIB),
        );
    }
    out.insert("fleet_all_answered".into(), json!(all_answered));
    out.insert("fleet_machines".into(), json!(FLEET));
    out.insert("fleet_sample_answered".into(), json!(answered));
    out.insert("fleet_sample".into(), json!(sample));
    out.insert("fleet_startup_s".into(), json!(startup.as_secs_f64()));
    println!();
    results.insert("machine".into(), Value::Object(out));
}
