//! Migration at fleet scale and ring buffers.
//!
//! - **Fleet migration**: two `qmpkit serve --machines 500` processes (sources, and
//!   destinations started with `-incoming defer`), 128 MiB guests; all 500 pairs migrate at once,
//!   each over its own unix socket (`qmpkit_testkit::fleet`). Figures: the time from the first
//!   `migrate` until every migration completed, the time to send every `migrate-incoming` and
//!   `migrate` and take their replies, the sources' `total-time`, each process's RSS afterwards, and how many
//!   pairs were verified (destination running with the source's RAM, source in postmigrate). The
//!   peer is one pair of paused `qemu-system-x86_64 -m 128` migrating over a unix socket, measured
//!   in the same run (1 000 QEMU processes do not fit this machine).
//! - **Ring buffer**: `ringbuf-write` then `ringbuf-read` of 11 bytes on a `ringbuf` chardev
//!   made with `chardev-add`, each request waiting for its reply, then pipelined (16 pairs in
//!   flight, answered in order); pairs per second, beside `qemu-system-x86_64 -S` asked the
//!   same way. Goal: 10 000 pairs/s.
//! - **A 4 GiB guest** (`qmpkit serve -m 4096`) migrating at the default bandwidth to a process
//!   that reads the stream: its `total-time` beside the model's time for the bytes it sent
//!   (`transferred` at `max-bandwidth`); consistent when within the setup and last pass.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::machine::{kib, qmpkit_bin_or_say, tmpdir, wait_path};
use qmpkit_testkit::fleet::migrate_pairs;
use qmpkit_testkit::qmp::{request_line, Conn};
use serde_json::{json, Map, Value};

const PAIRS: usize = 500;
const RAM_MIB: u64 = 128;
const RINGBUF_PAIRS: usize = 10_000;
const RINGBUF_GOAL: f64 = 10_000.0;

/// A process, killed when dropped.
pub(crate) struct Proc(pub(crate) Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `-qmp` serving on the unix socket `sock`.
pub(crate) fn qmp_opt(sock: &Path) -> [String; 2] {
    [
        "-qmp".into(),
        format!("unix:{},server=on,wait=off", sock.display()),
    ]
}

/// A process serving QMP on `sock` (`program` with `args`, then the monitor option).
fn spawn(program: &Path, args: &[&str], sock: &Path) -> Option<(Proc, Conn)> {
    let mut all: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    all.extend(qmp_opt(sock));
    spawn_monitor(program, &all, sock)
}

/// A process serving QMP on `sock`, started with `args` (which name the monitor).
pub(crate) fn spawn_monitor(program: &Path, args: &[String], sock: &Path) -> Option<(Proc, Conn)> {
    let child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let p = Proc(child);
    if !wait_path(sock, Duration::from_secs(20)) {
        return None;
    }
    let c = Conn::open(sock).ok()?;
    Some((p, c))
}

/// One pair of real QEMU migrating: (time to complete, `total-time` ms).
fn qemu_pair(dir: &Path) -> Option<(Duration, u64)> {
    let qemu = Path::new("qemu-system-x86_64");
    let base = ["-S", "-display", "none", "-nodefaults", "-m", "128"];
    let (_s, mut s) = spawn(qemu, &base, &dir.join("qs.sock"))?;
    let mut dargs = base.to_vec();
    dargs.extend(["-incoming", "defer"]);
    let (_d, mut d) = spawn(qemu, &dargs, &dir.join("qd.sock"))?;
    let uri = format!("unix:{}/qmig.sock", dir.display());
    d.ok("migrate-incoming", json!({ "uri": uri })).ok()?;
    let t = Instant::now();
    s.ok("migrate", json!({ "uri": uri })).ok()?;
    loop {
        let info = s.ok("query-migrate", json!({})).ok()?;
        match info["status"].as_str() {
            Some("completed") => return Some((t.elapsed(), info["total-time"].as_u64()?)),
            Some("failed") | Some("cancelled") => return None,
            _ if t.elapsed() > Duration::from_secs(120) => return None,
            _ => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

/// What the model may add to a migration's bytes at the bandwidth: the setup and the pages
/// dirtied meanwhile, sent in the last pass.
const BIG_SLACK_MS: u64 = 400;

/// A 4 GiB guest's migration: its `total-time`, the model's time for what it sent
/// (`transferred` at `max-bandwidth`), and the wall time to completed.
struct BigGuest {
    total_ms: u64,
    model_ms: u64,
    wall: Duration,
}

/// `qmpkit serve -m 4096` migrating to a process that reads the stream, at the interface's
/// default bandwidth.
fn big_guest(bin: &Path, dir: &Path) -> Option<BigGuest> {
    let (_p, mut c) = spawn(bin, &["serve", "-m", "4096"], &dir.join("big.sock"))?;
    let bw = c.ok("query-migrate-parameters", json!({})).ok()?["max-bandwidth"].as_u64()?;
    let t = Instant::now();
    c.ok("migrate", json!({"uri": "exec:cat > /dev/null"}))
        .ok()?;
    loop {
        let info = c.ok("query-migrate", json!({})).ok()?;
        match info["status"].as_str() {
            Some("completed") => {
                let sent = info["ram"]["transferred"].as_u64()?;
                return Some(BigGuest {
                    total_ms: info["total-time"].as_u64()?,
                    model_ms: sent * 1000 / bw.max(1),
                    wall: t.elapsed(),
                });
            }
            Some("failed") | Some("cancelled") => return None,
            _ if t.elapsed() > Duration::from_secs(300) => return None,
            _ => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// `ringbuf-write` + `ringbuf-read` pairs per second on `c`, with up to `depth` pairs in
/// flight (plain pipelining: the monitor answers in order; 1: each request waits for its
/// reply). Every read must give back what its write wrote.
fn ringbuf_rate(c: &mut Conn, n: usize, depth: usize) -> Option<f64> {
    c.ok(
        "chardev-add",
        json!({"id": "rb", "backend": {"type": "ringbuf", "data": {"size": 1024}}}),
    )
    .ok()?;
    let data = "hello world";
    // Each request is encoded once: the figure is the server's, not the JSON encoder's.
    let write = request_line("ringbuf-write", json!({"device": "rb", "data": data}));
    let read = request_line("ringbuf-read", json!({"device": "rb", "size": data.len()}));
    let t = Instant::now();
    if depth <= 1 {
        for _ in 0..n {
            c.send_line(&write).ok()?;
            c.reply("ringbuf-write").ok()?;
            c.send_line(&read).ok()?;
            if c.reply("ringbuf-read").ok()? != data {
                return None;
            }
        }
        return Some(n as f64 / t.elapsed().as_secs_f64());
    }
    let mut pair = write.clone();
    pair.extend_from_slice(&read);
    let (mut sent, mut answered) = (0, 0);
    while answered < n {
        while sent < n && sent - answered < depth {
            c.send_line(&pair).ok()?;
            sent += 1;
        }
        c.reply("ringbuf-write").ok()?;
        if c.reply("ringbuf-read").ok()? != data {
            return None;
        }
        answered += 1;
    }
    Some(n as f64 / t.elapsed().as_secs_f64())
}

/// Pairs in flight in the pipelined figure: what QEMU's monitor queues before it stops
/// reading (8 requests) is 4 pairs; more only wait in the socket.
const RINGBUF_DEPTH: usize = 16;

/// The ring buffer figures (section `ringbuf`) and, with `fleet`, the migrations (section
/// `migration` runs both).
pub fn run(results: &mut Map<String, Value>, fleet: bool) {
    println!("== migration and ring buffers ==");
    let mut out = Map::new();
    let Some(bin) = qmpkit_bin_or_say() else {
        return;
    };
    let dir = tmpdir("migration");
    let fmt_s = |d: Duration| format!("{:.2} s", d.as_secs_f64());
    println!(
        "{:<48} {:>16} {:>18} {:>12}",
        "", "qmpkit", "qemu-system", "goal"
    );

    // Ring buffers: one pair at a time, then pipelined.
    let rate = |v: Option<f64>| v.map(|r| format!("{r:.0}/s")).unwrap_or("-".into());
    for (depth, key) in [
        (1, "ringbuf_pairs_per_s"),
        (RINGBUF_DEPTH, "ringbuf_pipelined_pairs_per_s"),
    ] {
        let ours = spawn(&bin, &["serve"], &dir.join(format!("rb{depth}.sock")))
            .and_then(|(_p, mut c)| ringbuf_rate(&mut c, RINGBUF_PAIRS, depth));
        let theirs = spawn(
            Path::new("qemu-system-x86_64"),
            &["-S", "-display", "none", "-nodefaults"],
            &dir.join(format!("qrb{depth}.sock")),
        )
        .and_then(|(_p, mut c)| ringbuf_rate(&mut c, RINGBUF_PAIRS, depth));
        let how = match depth {
            1 => "sequential".to_string(),
            d => format!("{d} in flight"),
        };
        println!(
            "{:<48} {:>16} {:>18} {:>12}",
            format!("ringbuf write+read pairs ({RINGBUF_PAIRS}, {how})"),
            rate(ours),
            rate(theirs),
            "≥ 10000/s"
        );
        let goal = key.replace("_per_s", "_goal_met");
        let vs = key.replace("pairs_per_s", "speedup_vs_qemu_system");
        let qkey = key.replace("ringbuf_", "ringbuf_qemu_system_");
        if let Some(r) = ours {
            out.insert(key.into(), json!(r));
            out.insert(goal, json!(r >= RINGBUF_GOAL));
            if let Some(q) = theirs {
                out.insert(qkey, json!(q));
                out.insert(vs, json!(r / q));
            }
        }
    }

    // A 4 GiB guest at the default bandwidth: its simulated time against the model's.
    match big_guest(&bin, &dir) {
        Some(g) => {
            println!(
                "{:<48} {:>16} {:>18} {:>12}",
                "4 GiB guest: total-time / the model's",
                format!("{} / {} ms", g.total_ms, g.model_ms),
                "",
                "consistent"
            );
            println!("{:<48} {:>16}", "  wall time to completed", fmt_s(g.wall));
            out.insert("big_guest_total_time_ms".into(), json!(g.total_ms));
            out.insert("big_guest_model_ms".into(), json!(g.model_ms));
            out.insert("big_guest_wall_s".into(), json!(g.wall.as_secs_f64()));
            out.insert(
                "big_guest_consistent".into(),
                json!(g.total_ms >= g.model_ms && g.total_ms <= g.model_ms + BIG_SLACK_MS),
            );
        }
        None => println!("4 GiB guest: the migration did not complete"),
    }

    if !fleet {
        let _ = std::fs::remove_dir_all(&dir);
        println!();
        results.insert("migration".into(), Value::Object(out));
        return;
    }
    // One pair, then the fleets.
    let one = migrate_pairs(&bin, &dir, 1, RAM_MIB);
    let peer = qemu_pair(&dir);
    println!(
        "{:<48} {:>16} {:>18}",
        "one pair, 128 MiB: migrate to completed",
        one.as_ref()
            .map(|r| fmt_s(r.all_completed))
            .unwrap_or("-".into()),
        peer.map(|p| fmt_s(p.0)).unwrap_or("-".into()),
    );
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::create_dir_all(&dir);
    match migrate_pairs(&bin, &dir, PAIRS, RAM_MIB) {
        Ok(r) => {
            println!(
                "{:<48} {:>16}",
                format!("{} machines, {PAIRS} pairs: all completed", 2 * PAIRS),
                fmt_s(r.all_completed)
            );
            println!(
                "{:<48} {:>16}",
                "  sending all migrate-incoming, then migrate",
                fmt_s(r.start)
            );
            println!(
                "{:<48} {:>16}",
                "  total-time per migration, median / max",
                format!("{} / {} ms", r.total_time_ms.0, r.total_time_ms.1)
            );
            println!(
                "{:<48} {:>16}",
                "  completed / verified",
                format!("{} / {} of {PAIRS}", r.completed, r.verified)
            );
            println!("{:<48} {:>16}", "  RSS after, sources", kib(r.rss_kib.0));
            println!(
                "{:<48} {:>16}",
                "  RSS after, destinations",
                kib(r.rss_kib.1)
            );
            for p in &r.problems {
                println!("  problem: {p}");
            }
            out.insert("fleet_migration_pairs".into(), json!(PAIRS));
            out.insert(
                "fleet_migration_all_completed_s".into(),
                json!(r.all_completed.as_secs_f64()),
            );
            out.insert(
                "fleet_migration_start_s".into(),
                json!(r.start.as_secs_f64()),
            );
            out.insert("fleet_migration_completed".into(), json!(r.completed));
            out.insert("fleet_migration_verified".into(), json!(r.verified));
            out.insert(
                "fleet_migration_total_time_ms_median".into(),
                json!(r.total_time_ms.0),
            );
            out.insert(
                "fleet_migration_total_time_ms_max".into(),
                json!(r.total_time_ms.1),
            );
            out.insert("fleet_migration_rss_kib_sources".into(), json!(r.rss_kib.0));
            out.insert(
                "fleet_migration_rss_kib_destinations".into(),
                json!(r.rss_kib.1),
            );
        }
        Err(e) => println!("fleet migration: {e}"),
    }
    if let Some((t, total)) = peer {
        out.insert(
            "qemu_system_pair_migration_s".into(),
            json!(t.as_secs_f64()),
        );
        out.insert("qemu_system_pair_total_time_ms".into(), json!(total));
    }
    if let Ok(r) = &one {
        out.insert(
            "one_pair_migration_s".into(),
            json!(r.all_completed.as_secs_f64()),
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    println!();
    results.insert("migration".into(), Value::Object(out));
}
