//! The block layer at scale, each figure beside a QEMU peer measured in the same run:
//!
//! - **Jobs across a fleet**: `qmpkit serve --machines 100`, each machine with 10 speed-limited
//!   `blockdev-backup` jobs between `null-co` nodes (1 000 jobs), all started at once. At a
//!   common instant (a `query-jobs` sent to every machine before any reply is read) each job's
//!   progress is compared with what its speed and the time from its start's reply to the
//!   query's sending call for. **Skew**
//!   is the spread (max − min) of that lag over all jobs, in ms of the jobs' own progress; the
//!   spread of the raw progress fractions at that instant is shown too (it also holds the time
//!   it took to start the jobs one after another). Then the time until every job is gone
//!   (concluded and dismissed), against the ideal (size / speed after the last start). Peer:
//!   qemu-storage-daemon running 100 such jobs, measured the same way.
//! - **`query-block` with 500 drives** (see `query_block`): `qmpkit serve` and a paused
//!   `qemu-system-x86_64` with 500 `-drive`s, and the floor (the same bytes from a responder
//!   that does nothing); round trips on the bytes, each server's CPU time, and the client's
//!   parse of the reply apart. Goal: median under 2 ms.
//! - **NBD read throughput**: a raw file of `NBD_MIB` MiB exported over NBD on a unix socket by
//!   `qmpkit storage-daemon` and by `qemu-storage-daemon`, read whole with 1 MiB requests by
//!   `qemu-img bench` (QEMU's own NBD client), four requests in flight, in turns.
//!
//! A peer that is not installed or does not start shows as `-`.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::machine::{qmpkit_bin_or_say, tmpdir};
use crate::migration::{spawn_monitor, Proc};
use crate::startup::figures;
use qmpkit_testkit::qmp::Conn;
use serde_json::{json, Map, Value};

const MACHINES: usize = 100;
const JOBS_PER_MACHINE: usize = 10;
const QSD_JOBS: usize = 100;
/// Each job's size (bytes) and speed limit (bytes/s): 32 s of work, longer than starting a
/// thousand jobs takes on a loaded machine (10–15 s have been seen), so that every job still
/// runs at the common instant.
const JOB_SIZE: u64 = 2 << 30;
const JOB_SPEED: u64 = 64 << 20;
/// When the common instant falls, after the last job started.
const QUERY_AFTER: Duration = Duration::from_millis(1500);
const NBD_MIB: u64 = 256;
const NBD_ROUNDS: usize = 3;

/// What one set of concurrent jobs did.
struct JobFigures {
    jobs: usize,
    /// Jobs already finished at the common instant (the other figures are of the rest).
    gone: usize,
    /// Spread of progress fractions at the common instant.
    fraction_spread: f64,
    /// Spread of the lag behind each job's ideal progress (ms).
    skew_ms: f64,
    /// Median lag (ms).
    lag_median_ms: f64,
    /// From the last start until every job was gone.
    all_done: Duration,
    /// Starting them all.
    start: Duration,
}

/// The nodes of `n` source/target pairs as `blockdev-add` arguments.
fn job_nodes(n: usize) -> Vec<Value> {
    (0..n)
        .flat_map(|k| {
            ["s", "t"].map(
                |p| json!({"driver": "null-co", "node-name": format!("{p}{k}"), "size": JOB_SIZE}),
            )
        })
        .collect()
}

/// Runs `per` backup jobs on every connection, all at once; see the module text.
fn jobs_on(conns: &mut [Conn], per: usize) -> Result<JobFigures, String> {
    for c in conns.iter_mut() {
        for n in job_nodes(per) {
            c.ok("blockdev-add", n)?;
        }
    }
    let t0 = Instant::now();
    let mut started = Vec::new();
    for c in conns.iter_mut() {
        for k in 0..per {
            c.send(
                "blockdev-backup",
                json!({"job-id": format!("j{k}"), "device": format!("s{k}"),
                       "target": format!("t{k}"), "sync": "full", "speed": JOB_SPEED}),
            )?;
        }
    }
    for c in conns.iter_mut() {
        for _ in 0..per {
            c.reply("blockdev-backup")?;
            started.push(t0.elapsed());
        }
    }
    let start = t0.elapsed();
    // The common instant: soon after the last start, and before the first job's ideal end.
    let first_end = started.first().copied().unwrap_or_default()
        + Duration::from_secs_f64(JOB_SIZE as f64 / JOB_SPEED as f64);
    if first_end <= start + QUERY_AFTER / 3 {
        return Err(format!(
            "starting the jobs took {:.1} s, past the first one's ideal end",
            start.as_secs_f64()
        ));
    }
    std::thread::sleep(QUERY_AFTER.min(first_end - start - QUERY_AFTER / 3));
    let mut sent = Vec::new();
    for c in conns.iter_mut() {
        c.send("query-jobs", json!({}))?;
        sent.push(t0.elapsed());
    }
    let mut fractions = Vec::new();
    let mut lags = Vec::new();
    for (n, c) in conns.iter_mut().enumerate() {
        let (i, at) = (n * per, sent[n]);
        let jobs = c.reply("query-jobs")?;
        let jobs = jobs.as_array().ok_or("query-jobs: not a list")?;
        for j in jobs {
            let k: usize = j["id"]
                .as_str()
                .and_then(|id| id.strip_prefix('j')?.parse().ok())
                .ok_or_else(|| format!("query-jobs: {j}"))?;
            let cur = j["current-progress"].as_u64().unwrap_or(0);
            let total = j["total-progress"].as_u64().unwrap_or(JOB_SIZE).max(1);
            fractions.push(cur as f64 / total as f64);
            let ideal_s = at.saturating_sub(started[i + k]).as_secs_f64();
            lags.push((ideal_s - cur as f64 / JOB_SPEED as f64) * 1e3);
        }
    }
    if fractions.is_empty() {
        return Err("every job gone before the common instant".into());
    }
    let spread = |v: &[f64]| {
        let max = v.iter().copied().fold(f64::MIN, f64::max);
        let min = v.iter().copied().fold(f64::MAX, f64::min);
        max - min
    };
    let fraction_spread = spread(&fractions);
    let skew_ms = spread(&lags);
    let lag_median_ms = figures(&lags).map(|f| f.1).unwrap_or(f64::NAN);
    // Wait until every job is gone.
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut left: Vec<bool> = vec![true; conns.len()];
    while left.iter().any(|l| *l) {
        if Instant::now() > deadline {
            return Err("jobs still there after 600 s".into());
        }
        for (c, _) in conns.iter_mut().zip(&left).filter(|(_, l)| **l) {
            c.send("query-jobs", json!({}))?;
        }
        for (c, l) in conns.iter_mut().zip(left.iter_mut()).filter(|(_, l)| **l) {
            let jobs = c.reply("query-jobs")?;
            *l = jobs.as_array().is_some_and(|a| !a.is_empty());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(JobFigures {
        jobs: started.len(),
        gone: started.len() - fractions.len(),
        fraction_spread,
        skew_ms,
        lag_median_ms,
        all_done: t0.elapsed().saturating_sub(start),
        start,
    })
}

fn qmpkit_jobs(bin: &Path, dir: &Path) -> Result<JobFigures, String> {
    let _fleet = qmpkit_testkit::fleet::spawn_fleet(bin, dir, "f", MACHINES, &[])?;
    let mut conns = (0..MACHINES)
        .map(|i| open_retrying(&dir.join(format!("f-{i}.sock"))))
        .collect::<Result<Vec<_>, _>>()?;
    jobs_on(&mut conns, JOBS_PER_MACHINE)
}

/// [`Conn::open`], again while the server's queue of connections is full.
fn open_retrying(sock: &Path) -> Result<Conn, String> {
    let t = Instant::now();
    loop {
        match Conn::open(sock) {
            Err(e) if e.contains("temporarily unavailable") && t.elapsed().as_secs() < 20 => {
                std::thread::sleep(Duration::from_millis(5))
            }
            r => return r,
        }
    }
}

/// A storage daemon (`program` and its first arguments `pre`) with its monitor on `sock`,
/// and `extra` arguments.
fn storage_daemon(
    program: &Path,
    pre: &[&str],
    sock: &Path,
    extra: &[String],
) -> Option<(Proc, Conn)> {
    let mut args: Vec<String> = pre.iter().map(|s| s.to_string()).collect();
    args.extend([
        "--chardev".to_string(),
        format!("socket,id=m,path={},server=on,wait=off", sock.display()),
        "--monitor".into(),
        "chardev=m".into(),
    ]);
    args.extend_from_slice(extra);
    spawn_monitor(program, &args, sock)
}

fn qsd(sock: &Path, extra: &[String]) -> Option<(Proc, Conn)> {
    storage_daemon(Path::new("qemu-storage-daemon"), &[], sock, extra)
}

fn qsd_jobs(dir: &Path) -> Result<JobFigures, String> {
    let (_p, c) = qsd(&dir.join("qsd-jobs.sock"), &[]).ok_or("qemu-storage-daemon: no monitor")?;
    jobs_on(&mut [c], QSD_JOBS)
}

/// A raw file of `NBD_MIB` MiB of varied data.
fn raw_file(path: &Path) -> Result<(), String> {
    let mut f = std::fs::File::create(path).map_err(|e| e.to_string())?;
    let mut chunk = vec![0u8; 1 << 20];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..NBD_MIB {
        for b in chunk.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            b.copy_from_slice(&x.to_le_bytes()[..b.len()]);
        }
        f.write_all(&chunk).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// The storage daemon's arguments exporting `image` as `img` on the NBD socket `nbd`.
fn export_args(image: &Path, nbd: &Path) -> Vec<String> {
    vec![
        "--blockdev".into(),
        format!(
            "driver=file,node-name=f,filename={},cache.direct=off",
            image.display()
        ),
        "--nbd-server".into(),
        format!("addr.type=unix,addr.path={}", nbd.display()),
        "--export".into(),
        "type=nbd,id=e,node-name=f,name=img".into(),
    ]
}

/// Reads the whole export once with `qemu-img bench`: MiB/s.
fn nbd_read(nbd: &Path) -> Result<f64, String> {
    let t = Instant::now();
    let out = Command::new("qemu-img")
        .args(["bench", "-f", "raw", "-s", "1M", "-d", "4", "-c"])
        .arg(NBD_MIB.to_string())
        .arg(format!("nbd+unix:///img?socket={}", nbd.display()))
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("qemu-img: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "qemu-img bench: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(NBD_MIB as f64 / t.elapsed().as_secs_f64())
}

/// The two exporters of one file, read in turns: (qmpkit, qemu-storage-daemon) MiB/s, best
/// and median of each.
fn nbd_figures(bin: &Path, dir: &Path) -> (Result<Vec<f64>, String>, Result<Vec<f64>, String>) {
    let image = dir.join("nbd.raw");
    if let Err(e) = raw_file(&image) {
        return (Err(e.clone()), Err(e));
    }
    // Both open the file read-only through a shared lock: the exports are read-only.
    let ours_nbd = dir.join("ours-nbd.sock");
    let theirs_nbd = dir.join("qsd-nbd.sock");
    let ours = storage_daemon(
        bin,
        &["storage-daemon"],
        &dir.join("ours-m.sock"),
        &export_args(&image, &ours_nbd),
    );
    let theirs = qsd(&dir.join("qsd-m.sock"), &export_args(&image, &theirs_nbd));
    let (mut a, mut b) = (Ok(Vec::new()), Ok(Vec::new()));
    let round = |r: &mut Result<Vec<f64>, String>, up: bool, nbd: &Path| {
        if let Ok(v) = r {
            if !up {
                *r = Err("did not start".into());
                return;
            }
            match nbd_read(nbd) {
                Ok(x) => v.push(x),
                Err(e) => *r = Err(e),
            }
        }
    };
    for _ in 0..NBD_ROUNDS {
        round(&mut a, ours.is_some(), &ours_nbd);
        round(&mut b, theirs.is_some(), &theirs_nbd);
    }
    (a, b)
}

/// The block section; `all` false runs only its `query-block` part.
pub fn run(results: &mut Map<String, Value>, all: bool) {
    println!("== block layer ==");
    let Some(bin) = qmpkit_bin_or_say() else {
        return;
    };
    let mut out = Map::new();
    let dir = tmpdir("block");
    println!("{:<48} {:>20} {:>20} {:>10}", "", "qmpkit", "QEMU", "goal");
    if all {
        jobs_rows(&bin, &dir, &mut out);
    }
    crate::query_block::run(&bin, &dir, &mut out);
    if all {
        nbd_rows(&bin, &dir, &mut out);
    }
    let _ = std::fs::remove_dir_all(&dir);
    println!();
    results.insert("block".into(), Value::Object(out));
}

/// The jobs' rows of the table.
fn jobs_rows(bin: &Path, dir: &Path, out: &mut Map<String, Value>) {
    let ours = qmpkit_jobs(bin, dir);
    let theirs = qsd_jobs(dir);
    let show = |r: &Result<JobFigures, String>, f: &dyn Fn(&JobFigures) -> String| match r {
        Ok(j) => f(j),
        Err(_) => "-".into(),
    };
    for (label, f) in [
        (
            "concurrent backup jobs (machines)",
            &(|j: &JobFigures| format!("{}", j.jobs)) as &dyn Fn(&JobFigures) -> String,
        ),
        ("  finished before the common instant", &|j| {
            format!("{}", j.gone)
        }),
        ("  starting them all", &|j| {
            format!("{:.2} s", j.start.as_secs_f64())
        }),
        ("  skew: spread of lag behind ideal progress", &|j| {
            format!("{:.1} ms", j.skew_ms)
        }),
        ("  median lag behind ideal progress", &|j| {
            format!("{:.1} ms", j.lag_median_ms)
        }),
        ("  spread of progress fractions at one instant", &|j| {
            format!("{:.4}", j.fraction_spread)
        }),
        ("  all gone after the last start", &|j| {
            format!("{:.2} s", j.all_done.as_secs_f64())
        }),
    ] {
        println!(
            "{:<48} {:>20} {:>20}",
            label,
            show(&ours, f),
            show(&theirs, f)
        );
    }
    println!(
        "{:<48} {:>20}",
        "  ideal (size / speed)",
        format!("{:.2} s", JOB_SIZE as f64 / JOB_SPEED as f64)
    );
    for (who, r) in [("qmpkit", &ours), ("qemu-storage-daemon", &theirs)] {
        if let Err(e) = r {
            println!("  {who}: {e}");
        }
    }
    let put_jobs = |out: &mut Map<String, Value>, key: &str, j: &JobFigures| {
        out.insert(format!("{key}jobs"), json!(j.jobs));
        out.insert(format!("{key}jobs_gone_early"), json!(j.gone));
        out.insert(format!("{key}jobs_skew_ms"), json!(j.skew_ms));
        out.insert(format!("{key}jobs_lag_median_ms"), json!(j.lag_median_ms));
        out.insert(
            format!("{key}jobs_fraction_spread"),
            json!(j.fraction_spread),
        );
        out.insert(format!("{key}jobs_start_s"), json!(j.start.as_secs_f64()));
        out.insert(
            format!("{key}jobs_all_done_s"),
            json!(j.all_done.as_secs_f64()),
        );
    };
    if let Ok(j) = &ours {
        put_jobs(out, "", j);
    }
    if let Ok(j) = &theirs {
        put_jobs(out, "qsd_", j);
    }
}

/// The NBD rows of the table.
fn nbd_rows(bin: &Path, dir: &Path, out: &mut Map<String, Value>) {
    let (a, b) = nbd_figures(bin, dir);
    let rate = |r: &Result<Vec<f64>, String>| match r.as_ref().ok().and_then(|v| {
        let (min, med) = figures(v)?;
        Some((v.iter().copied().fold(min, f64::max), med))
    }) {
        Some((best, med)) => format!("{best:.0} / {med:.0} MiB/s"),
        None => "-".into(),
    };
    println!(
        "{:<48} {:>20} {:>20}",
        format!("NBD read, raw {NBD_MIB} MiB, 1 MiB x4: best / median"),
        rate(&a),
        rate(&b)
    );
    for (who, r) in [("qmpkit", &a), ("qemu-storage-daemon", &b)] {
        if let Err(e) = r {
            println!("  {who}: {e}");
        }
    }
    let med = |r: &Result<Vec<f64>, String>| r.as_ref().ok().and_then(|v| figures(v)).map(|f| f.1);
    if let Some(x) = med(&a) {
        out.insert("nbd_read_mib_per_s".into(), json!(x));
        if let Some(y) = med(&b) {
            out.insert("nbd_read_qsd_mib_per_s".into(), json!(y));
            out.insert("nbd_read_ratio_vs_qsd".into(), json!(x / y));
        }
    }
}
