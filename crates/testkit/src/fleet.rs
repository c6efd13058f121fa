//! Two fleets of `qmpkit serve` migrating pairwise: machine `i` of a source fleet to machine
//! `i` of a destination fleet (`-incoming defer`), every migration over its own unix socket,
//! all started at once. Used by the test that checks every pair and by the benchmark harness.
//!
//! Each source's guest first writes a text of its own into its RAM; afterwards each
//! destination must be running with that text at the same address (read back with
//! `pmemsave`), and each source must be in `postmigrate`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::cmd::wait_path;
use crate::qmp::Conn;

/// Guest-physical address each source writes its text at.
const ADDR: u64 = 0x12345;

/// What a pairwise migration of two fleets did.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub pairs: usize,
    /// Sources whose migration completed.
    pub completed: usize,
    /// Pairs where the destination runs with the source's text and the source is in
    /// `postmigrate`.
    pub verified: usize,
    /// The first problems seen (at most ten), one line each.
    pub problems: Vec<String>,
    /// Starting all the migrations (the `migrate-incoming`s and `migrate`s sent).
    pub start: Duration,
    /// From the first `migrate` until every source reported `completed`.
    pub all_completed: Duration,
    /// `total-time` the sources reported (ms): median and maximum.
    pub total_time_ms: (u64, u64),
    /// Resident memory (KiB) of the source and destination processes, after the
    /// migrations.
    pub rss_kib: (Option<u64>, Option<u64>),
}

/// A fleet process, killed on drop.
pub struct Fleet {
    child: Child,
}

impl Drop for Fleet {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Resident set size of a process, in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// `qmpkit serve` (at `bin`) with `n` machines and `extra` arguments, machine `i`'s monitor
/// on `DIR/TAG-i.sock`; returns once the last monitor is there.
pub fn spawn_fleet(
    bin: &Path,
    dir: &Path,
    tag: &str,
    n: usize,
    extra: &[&str],
) -> Result<Fleet, String> {
    // One machine is not a fleet: its monitor path is taken as it is.
    let (machines, pattern) = match n {
        1 => (Vec::new(), format!("{tag}-0")),
        _ => (
            vec!["--machines".to_string(), n.to_string()],
            format!("{tag}-%d"),
        ),
    };
    let child = Command::new(bin)
        .arg("serve")
        .args(machines)
        .args(extra)
        .arg("--qmp")
        .arg(format!(
            "unix:{}/{pattern}.sock,server=on,wait=off",
            dir.display()
        ))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("{}: {e}", bin.display()))?;
    let f = Fleet { child };
    let last = dir.join(format!("{tag}-{}.sock", n - 1));
    if !wait_path(&last, Duration::from_secs(300)) {
        return Err(format!("{}: never appeared", last.display()));
    }
    Ok(f)
}

/// Migrate `pairs` machines of one fleet (`qmpkit` at `bin`, each with `-m ram_mib`) to as
/// many of another, in `dir` (sockets and RAM dumps; left for the caller to remove).
pub fn migrate_pairs(bin: &Path, dir: &Path, pairs: usize, ram_mib: u64) -> Result<Report, String> {
    let mut report = Report {
        pairs,
        ..Report::default()
    };
    if pairs == 0 {
        return Ok(report);
    }
    let m = ram_mib.to_string();
    let src = spawn_fleet(bin, dir, "src", pairs, &["-m", &m])?;
    let dst = spawn_fleet(bin, dir, "dst", pairs, &["-m", &m, "-incoming", "defer"])?;
    let text = |i: usize| format!("the guest RAM of source {i:05}");
    let mut conns = Vec::with_capacity(pairs);
    for i in 0..pairs {
        let mut s = Conn::open(&dir.join(format!("src-{i}.sock")))?;
        let d = Conn::open(&dir.join(format!("dst-{i}.sock")))?;
        s.ok(
            "__org.qmpkit_guest-memory-write",
            json!({"addr": ADDR, "data": text(i)}),
        )?;
        conns.push((s, d));
    }
    let uri = |i: usize| format!("unix:{}/mig-{i}.sock", dir.display());
    // Every destination listens, then every source starts: requests first, replies after,
    // so that the migrations overlap as much as the machines let them.
    let t = Instant::now();
    for (i, (_, d)) in conns.iter_mut().enumerate() {
        d.send("migrate-incoming", json!({"uri": uri(i)}))?;
    }
    for (_, d) in conns.iter_mut() {
        d.reply("migrate-incoming")?;
    }
    let migrate_at = Instant::now();
    for (i, (s, _)) in conns.iter_mut().enumerate() {
        s.send("migrate", json!({"uri": uri(i)}))?;
    }
    for (s, _) in conns.iter_mut() {
        s.reply("migrate")?;
    }
    report.start = t.elapsed();
    // Poll until every source has finished.
    let mut done: Vec<Option<Value>> = vec![None; pairs];
    let deadline = Instant::now() + Duration::from_secs(600);
    while done.iter().any(Option::is_none) {
        if Instant::now() > deadline {
            problem(&mut report, "migrations still running after 600 s".into());
            break;
        }
        for (i, (s, _)) in conns.iter_mut().enumerate() {
            if done[i].is_none() {
                s.send("query-migrate", json!({}))?;
            }
        }
        for (i, (s, _)) in conns.iter_mut().enumerate() {
            if done[i].is_some() {
                continue;
            }
            let info = s.reply("query-migrate")?;
            match info["status"].as_str() {
                Some("completed") | Some("failed") | Some("cancelled") => done[i] = Some(info),
                _ => {}
            }
        }
        if done.iter().any(Option::is_none) {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    report.all_completed = migrate_at.elapsed();
    let mut times = Vec::new();
    for (i, info) in done.iter().enumerate() {
        let Some(info) = info else { continue };
        if info["status"] == "completed" {
            report.completed += 1;
            times.extend(info["total-time"].as_u64());
        } else {
            problem(&mut report, format!("source {i}: {info}"));
        }
    }
    times.sort_unstable();
    if let (Some(mid), Some(max)) = (times.get(times.len() / 2), times.last()) {
        report.total_time_ms = (*mid, *max);
    }
    // Each pair: the source in postmigrate, the destination running with the source's RAM.
    for (i, (s, d)) in conns.iter_mut().enumerate() {
        let want = text(i);
        let src_status = s.ok("query-status", json!({}))?["status"].clone();
        let dst_status = wait_running(d)?;
        let dump: PathBuf = dir.join(format!("ram-{i}"));
        d.ok(
            "pmemsave",
            json!({"val": ADDR, "size": want.len(), "filename": dump.to_string_lossy()}),
        )?;
        let got = std::fs::read(&dump).unwrap_or_default();
        let _ = std::fs::remove_file(&dump);
        if src_status == "postmigrate" && dst_status == "running" && got == want.as_bytes() {
            report.verified += 1;
        } else {
            problem(
                &mut report,
                format!(
                    "pair {i}: source {src_status}, destination {dst_status}, RAM {:?}",
                    String::from_utf8_lossy(&got)
                ),
            );
        }
    }
    report.rss_kib = (rss_kib(src.child.id()), rss_kib(dst.child.id()));
    Ok(report)
}

fn problem(r: &mut Report, s: String) {
    if r.problems.len() < 10 {
        r.problems.push(s);
    }
}

/// The destination's run state once its side of the migration is over.
fn wait_running(d: &mut Conn) -> Result<Value, String> {
    let t = Instant::now();
    loop {
        let st = d.ok("query-status", json!({}))?["status"].clone();
        if st != "inmigrate" || t.elapsed() > Duration::from_secs(30) {
            return Ok(st);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
