//! QMP round trips over a unix socket, per target server, measured in the same run:
//! sequential `query-version` per second, pipelined (16 in flight) requests per second,
//! p50/p99 latency at a paced 1 000 requests per second — all with our client — and Python
//! qemu.qmp's sequential rate against the same target (the client ratio).
//!
//! A target is anything serving QMP on a unix socket. qemu-storage-daemon is started here when
//! installed; another server is one call away:
//! `targets.push(Target::unix("qmpkit serve", socket_path, guard))` in [`run`], where `guard`
//! keeps that server alive (a child process handle, a runtime, …) until the target is dropped.
//! Ratios against qemu-storage-daemon are reported for every other target. The project's
//! server (in process, on its own one-thread runtime) is measured beside it, with its goals:
//! sequential ≥ 3.5× qemu-storage-daemon, pipelined ≥ 250 000/s, paced p99 < 100 µs, our
//! client ≥ 10× Python qemu.qmp against it.

use qmpkit_client::{Client, ConnectOptions, Endpoint};
use serde_json::{json, Map, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long each rate is measured.
const MEASURE: Duration = Duration::from_millis(1500);
/// Requests in flight for the pipelined figure.
const IN_FLIGHT: usize = 16;
/// Paced latency: this many requests, one per millisecond.
const PACED: usize = 2000;

/// A QMP server to measure.
pub struct Target {
    pub name: String,
    pub endpoint: Endpoint,
    /// Where the server's CPU time can be read (`/proc/<pid>` or `/proc/<pid>/task/<tid>`).
    pub cpu: Option<PathBuf>,
    _guard: Box<dyn Send>,
}

/// The scheduler's own accounting (`schedstat`: exact, not sampled by ticks) of the process
/// (all its threads) or thread whose `/proc` directory is `dir`: CPU time (ns), time spent
/// runnable but waiting for a CPU (ns), and times it was given a CPU.
pub fn sched_stat(dir: &Path) -> Option<[u64; 3]> {
    let one = |d: &Path| -> Option<[u64; 3]> {
        let text = std::fs::read_to_string(d.join("schedstat")).ok()?;
        let mut f = text.split_whitespace().map(|x| x.parse::<u64>().ok());
        Some([f.next()??, f.next()??, f.next()??])
    };
    match std::fs::read_dir(dir.join("task")) {
        Ok(tasks) => tasks
            .flatten()
            .map(|t| one(&t.path()))
            .try_fold([0; 3], |a, s| {
                let s = s?;
                Some([a[0] + s[0], a[1] + s[1], a[2] + s[2]])
            }),
        // A thread's directory has no `task` directory of its own.
        Err(_) => one(dir),
    }
}

/// CPU time (ns) of the process (all its threads) or thread whose `/proc` directory is
/// `dir`, from the scheduler's own accounting ([`sched_stat`]).
pub fn cpu_ns(dir: &Path) -> Option<u64> {
    sched_stat(dir).map(|s| s[0])
}

impl Target {
    /// A server already listening on a unix socket; `guard` is dropped with the target.
    pub fn unix(
        name: impl Into<String>,
        socket: impl Into<PathBuf>,
        guard: impl Send + 'static,
    ) -> Target {
        Target {
            name: name.into(),
            endpoint: Endpoint::Unix(socket.into()),
            cpu: None,
            _guard: Box::new(guard),
        }
    }

    /// Read the server's CPU time from `/proc/<pid>` (a process) or a thread's directory.
    pub fn with_cpu(mut self, dir: PathBuf) -> Target {
        self.cpu = Some(dir);
        self
    }

    /// Start qemu-storage-daemon on a socket in a temporary directory.
    pub fn qsd() -> Result<Target, String> {
        Target::qsd_with(&[])
    }

    /// [`Target::qsd`] with more monitors, each on `NAME.sock` next to the first socket.
    pub fn qsd_with(more: &[&str]) -> Result<Target, String> {
        let dir = std::env::temp_dir().join(format!("qmpkit-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let socket = dir.join("qsd.sock");
        let mut c = Command::new("qemu-storage-daemon");
        for (i, name) in std::iter::once("qsd")
            .chain(more.iter().copied())
            .enumerate()
        {
            let path = dir.join(format!("{name}.sock"));
            let _ = std::fs::remove_file(&path);
            c.arg("--chardev")
                .arg(format!(
                    "socket,path={},server=on,wait=off,id=m{i}",
                    path.display()
                ))
                .args(["--monitor", &format!("chardev=m{i}")]);
        }
        let child = c
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("qemu-storage-daemon: {e}"))?;
        let pid = child.id();
        let guard = ChildGuard(child, dir.clone());
        for name in std::iter::once("qsd").chain(more.iter().copied()) {
            wait_listening(&dir.join(format!("{name}.sock")))?;
        }
        let version = Command::new("qemu-storage-daemon")
            .arg("--version")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.split_whitespace().nth(2).map(str::to_owned))
            .unwrap_or_default();
        Ok(
            Target::unix(format!("qemu-storage-daemon {version}"), socket, guard)
                .with_cpu(PathBuf::from(format!("/proc/{pid}"))),
        )
    }

    /// The unix socket the server listens on.
    pub fn socket(&self) -> Option<&Path> {
        match &self.endpoint {
            Endpoint::Unix(p) => Some(p),
            Endpoint::Tcp(_) => None,
        }
    }
}

struct ChildGuard(Child, PathBuf);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        let _ = std::fs::remove_dir_all(&self.1);
    }
}

/// Wait until a unix socket listens on `path` (without connecting: QEMU serves one client at a time).
pub fn wait_listening(path: &Path) -> Result<(), String> {
    let start = Instant::now();
    let p = path.to_string_lossy().into_owned();
    loop {
        let listening = match std::fs::read_to_string("/proc/net/unix") {
            Ok(t) => t.lines().any(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                f.len() >= 8 && f[7] == p && f[3] == "00010000"
            }),
            Err(_) => path.exists(),
        };
        if listening {
            return Ok(());
        }
        if start.elapsed() > Duration::from_secs(10) {
            return Err(format!("nothing listens on {p}"));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// What one target measured.
#[derive(Debug, Clone, Default)]
pub struct Figures {
    pub seq_per_sec: f64,
    pub pipelined_per_sec: f64,
    /// The server's CPU time per request while pipelined (µs), where it can be read.
    pub pipelined_server_cpu_us: Option<f64>,
    pub paced_p50_us: f64,
    pub paced_p99_us: f64,
    pub python_seq_per_sec: Option<f64>,
}

impl Figures {
    pub fn client_ratio(&self) -> Option<f64> {
        self.python_seq_per_sec.map(|p| self.seq_per_sec / p)
    }

    fn to_json(&self) -> Value {
        json!({
            "seq_per_sec": self.seq_per_sec.round(),
            "pipelined16_per_sec": self.pipelined_per_sec.round(),
            "pipelined16_server_cpu_us": self.pipelined_server_cpu_us.map(|c| (c * 100.0).round() / 100.0),
            "paced1000_p50_us": (self.paced_p50_us * 10.0).round() / 10.0,
            "paced1000_p99_us": (self.paced_p99_us * 10.0).round() / 10.0,
            "python_seq_per_sec": self.python_seq_per_sec.map(f64::round),
            "client_ratio_vs_python": self.client_ratio().map(|r| (r * 100.0).round() / 100.0),
        })
    }
}

async fn connect(endpoint: &Endpoint) -> Result<Client, String> {
    let start = Instant::now();
    loop {
        match ConnectOptions::default().connect(endpoint).await {
            Ok(c) => return Ok(c),
            Err(e) if start.elapsed() > Duration::from_secs(10) => return Err(e.to_string()),
            Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    }
}

/// Sequential round trips of `query-version` per second.
pub async fn sequential(c: &Client, d: Duration) -> Result<f64, String> {
    for _ in 0..200 {
        c.execute::<Value>("query-version", ())
            .await
            .map_err(|e| e.to_string())?;
    }
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < d {
        for _ in 0..100 {
            c.execute::<Value>("query-version", ())
                .await
                .map_err(|e| e.to_string())?;
        }
        n += 100;
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

/// Requests per second with `in_flight` requests outstanding at all times on one connection.
pub async fn pipelined(c: &Client, in_flight: usize, d: Duration) -> Result<f64, String> {
    let start = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..in_flight {
        let c = c.clone();
        set.spawn(async move {
            let mut n = 0u64;
            while start.elapsed() < d {
                c.execute::<Value>("query-version", ())
                    .await
                    .map_err(|e| e.to_string())?;
                n += 1;
            }
            Ok::<u64, String>(n)
        });
    }
    let mut total = 0;
    while let Some(r) = set.join_next().await {
        total += r.map_err(|e| e.to_string())??;
    }
    Ok(total as f64 / start.elapsed().as_secs_f64())
}

/// p50 and p99 latency (µs) of `n` requests sent one per millisecond.
pub async fn paced(c: &Client, n: usize) -> Result<(f64, f64), String> {
    let mut lat = Vec::with_capacity(n);
    let start = tokio::time::Instant::now();
    for i in 0..n {
        tokio::time::sleep_until(start + Duration::from_millis(i as u64)).await;
        let t = Instant::now();
        c.execute::<Value>("query-version", ())
            .await
            .map_err(|e| e.to_string())?;
        lat.push(t.elapsed().as_secs_f64() * 1e6);
    }
    lat.sort_by(f64::total_cmp);
    let at = |q: f64| {
        lat.get(((lat.len() as f64 - 1.0) * q).round() as usize)
            .copied()
            .unwrap_or(0.0)
    };
    Ok((at(0.50), at(0.99)))
}

/// The Python interpreter with qemu.qmp: `$QMPKIT_PYTHON`, the repo's `.ci/venv`, or `python3`.
pub fn python() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("QMPKIT_PYTHON") {
        return Some(PathBuf::from(p));
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.ci/venv/bin/python");
    if venv.exists() {
        return Some(venv);
    }
    let ok = Command::new("python3")
        .args(["-c", "import qemu.qmp"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    ok.then(|| PathBuf::from("python3"))
}

/// Python qemu.qmp's sequential `query-version` rate against a unix socket.
pub fn python_sequential(python: &Path, socket: &Path, d: Duration) -> Result<f64, String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../client/tests/py/qmp_run.py");
    let mut child = Command::new(python)
        .arg(script)
        .arg(socket)
        .arg("--bench-seq")
        .arg(format!("{}", d.as_secs_f64()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{}: {e}", python.display()))?;
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if start.elapsed() < d + Duration::from_secs(30) => {
                std::thread::sleep(Duration::from_millis(20));
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err("qmp_run.py did not finish in time".into());
            }
        }
    }
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find_map(|v| v.get("seq_per_sec").and_then(Value::as_f64))
        .ok_or_else(|| "no rate in qmp_run.py's output".to_string())
}

/// Rounds the rates are measured in: each round measures every target for
/// `MEASURE / ROUNDS` in turn, so that a change in what else the machine runs falls on
/// every target alike.
const ROUNDS: u32 = 6;

/// Measure the targets, one connection to each: sequential and pipelined rates interleaved
/// round by round, then each target's paced latency, then Python's rate. A target that
/// fails is reported and left out.
pub fn measure_all<'t>(
    rt: &tokio::runtime::Runtime,
    targets: &'t [Target],
) -> Vec<(&'t Target, Figures)> {
    let slice = MEASURE / ROUNDS;
    let mut live: Vec<(&Target, Client, Figures)> = Vec::new();
    for t in targets {
        match rt.block_on(connect(&t.endpoint)) {
            Ok(c) => live.push((t, c, Figures::default())),
            Err(e) => eprintln!("proto: {}: {e}", t.name),
        }
    }
    // (requests, seconds) per target, then the server's CPU time while pipelined.
    let mut seq = vec![(0.0f64, 0.0f64); live.len()];
    let mut pip = vec![(0.0f64, 0.0f64); live.len()];
    let mut cpu: Vec<Option<u64>> = vec![Some(0); live.len()];
    let mut failed: Vec<Option<String>> = vec![None; live.len()];
    for _ in 0..ROUNDS {
        for (i, (t, c, _)) in live.iter().enumerate() {
            if failed[i].is_some() {
                continue;
            }
            let r = rt.block_on(async {
                let t0 = Instant::now();
                let rate = sequential(c, slice).await?;
                let secs = t0.elapsed().as_secs_f64();
                seq[i].0 += rate * secs;
                seq[i].1 += secs;
                let cpu0 = t.cpu.as_deref().and_then(cpu_ns);
                let t0 = Instant::now();
                let rate = pipelined(c, IN_FLIGHT, slice).await?;
                let secs = t0.elapsed().as_secs_f64();
                let cpu1 = t.cpu.as_deref().and_then(cpu_ns);
                pip[i].0 += rate * secs;
                pip[i].1 += secs;
                cpu[i] = match (cpu[i], cpu0, cpu1) {
                    (Some(sum), Some(a), Some(b)) => Some(sum + b.saturating_sub(a)),
                    _ => None,
                };
                Ok::<(), String>(())
            });
            if let Err(e) = r {
                failed[i] = Some(e);
            }
        }
    }
    let mut out = Vec::new();
    for (i, (t, c, mut f)) in live.into_iter().enumerate() {
        let r = rt.block_on(async {
            if let Some(e) = failed[i].take() {
                return Err(e);
            }
            f.seq_per_sec = seq[i].0 / seq[i].1.max(1e-9);
            f.pipelined_per_sec = pip[i].0 / pip[i].1.max(1e-9);
            if let Some(ns) = cpu[i] {
                if pip[i].0 > 0.0 {
                    f.pipelined_server_cpu_us = Some(ns as f64 / 1e3 / pip[i].0);
                }
            }
            let (p50, p99) = paced(&c, PACED).await?;
            f.paced_p50_us = p50;
            f.paced_p99_us = p99;
            Ok::<(), String>(())
        });
        // The server must see the hang-up before the next client connects.
        rt.block_on(c.shutdown());
        match r {
            Ok(()) => out.push((t, f)),
            Err(e) => eprintln!("proto: {}: {e}", t.name),
        }
    }
    for (t, f) in &mut out {
        if let (Some(py), Some(sock)) = (python(), t.socket()) {
            match python_sequential(&py, sock, MEASURE) {
                Ok(r) => f.python_seq_per_sec = Some(r),
                Err(e) => eprintln!("proto: python qemu.qmp against {}: {e}", t.name),
            }
        }
    }
    out
}

/// The section: measure every target, print a table, add figures and ratios to `results`.
pub fn run(results: &mut Map<String, Value>) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("proto: no runtime: {e}");
            return;
        }
    };
    // `QMPKIT_BENCH_TARGETS=ceiling,serve` measures only the targets named (qsd, ceiling,
    // serve, server); `QMPKIT_BENCH_SERVE_OTHER` adds another build's `qmpkit serve`.
    let only = std::env::var("QMPKIT_BENCH_TARGETS").ok();
    let on = |name: &str| match only.as_deref() {
        None => true,
        Some(o) => o.split(',').any(|s| s.trim() == name),
    };
    let mut targets = Vec::new();
    let makers: [(&str, &str, fn() -> Result<Target, String>); 4] = [
        ("qsd", "qemu-storage-daemon", Target::qsd),
        ("ceiling", "the ceiling", crate::ceiling::target),
        ("serve", "qmpkit serve", Target::qmpkit_serve),
        ("server", "qmpkit-server", Target::qmpkit_server),
    ];
    let other = std::env::var_os("QMPKIT_BENCH_SERVE_OTHER").is_some();
    for (key, label, make) in makers {
        if !on(key) {
            continue;
        }
        match make() {
            Ok(t) => targets.push(t),
            Err(e) => println!("proto: skipped {label}: {e}"),
        }
        if key == "serve" && other {
            match Target::qmpkit_serve_other() {
                Ok(t) => targets.push(t),
                Err(e) => println!("proto: skipped the other qmpkit serve: {e}"),
            }
        }
    }
    run_targets(&rt, &targets, results);
}

/// Keeps the in-process server alive: its thread (a one-thread runtime) and socket directory.
struct ServerGuard {
    server: qmpkit_server::Server,
    thread: Option<std::thread::JoinHandle<()>>,
    dir: PathBuf,
}

impl Drop for ServerGuard {
    fn drop(&mut self) {
        self.server.shutdown();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Target {
    /// `qmpkit serve` (the simulated machine, its handlers answering) as its own process: the
    /// `qmpkit` binary next to this harness (`cargo build --release` builds both).
    pub fn qmpkit_serve() -> Result<Target, String> {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let bin = exe
            .parent()
            .map(|d| d.join("qmpkit"))
            .filter(|p| p.exists())
            .ok_or("no qmpkit binary next to the harness (cargo build --release -p qmpkit)")?;
        Target::qmpkit_serve_bin(&bin, "qmpkit serve")
    }

    /// `qmpkit serve` from another build (`QMPKIT_BENCH_SERVE_OTHER=/path/to/qmpkit`), measured
    /// beside this one in the same run: a before/after comparison of a change.
    pub fn qmpkit_serve_other() -> Result<Target, String> {
        let bin = std::env::var_os("QMPKIT_BENCH_SERVE_OTHER")
            .map(PathBuf::from)
            .ok_or("QMPKIT_BENCH_SERVE_OTHER is not set")?;
        Target::qmpkit_serve_bin(&bin, "qmpkit serve (other build)")
    }

    fn qmpkit_serve_bin(bin: &Path, name: &str) -> Result<Target, String> {
        let tag: String = name.chars().filter(char::is_ascii_alphanumeric).collect();
        let dir = std::env::temp_dir().join(format!("qmpkit-bench-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let socket = dir.join("qmp.sock");
        let _ = std::fs::remove_file(&socket);
        let child = Command::new(&bin)
            .arg("serve")
            .args([
                "--qemu-version",
                "10.0.2",
                "--package",
                crate::ceiling::PACKAGE,
            ])
            .arg("-qmp")
            .arg(format!("unix:{},server=on,wait=off", socket.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("{}: {e}", bin.display()))?;
        let pid = child.id();
        let guard = ChildGuard(child, dir);
        // It listens under a temporary name and renames the socket into place.
        let start = Instant::now();
        while !socket.exists() {
            if start.elapsed() > Duration::from_secs(10) {
                return Err(format!("nothing listens on {}", socket.display()));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(Target::unix(name, socket, guard).with_cpu(PathBuf::from(format!("/proc/{pid}"))))
    }

    /// The project's server, in process on its own thread (a current-thread runtime),
    /// serving the machine's schema without handlers (`query-version` is the server's own
    /// answer).
    pub fn qmpkit_server() -> Result<Target, String> {
        let schema = qmpkit_machine::embedded::load_schema().map_err(|e| e.to_string())?;
        let dir = std::env::temp_dir().join(format!("qmpkit-bench-srv-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let socket = dir.join("qmp.sock");
        let opts = qmpkit_server::ServerOptions {
            qemu_version: (10, 0, 2),
            package: crate::ceiling::PACKAGE.into(),
            ..qmpkit_server::ServerOptions::default()
        };
        let server = qmpkit_server::Server::new(
            std::sync::Arc::new(schema),
            qmpkit_server::Registry::new(),
            opts,
        );
        let (tx, rx) = std::sync::mpsc::channel();
        let s = server.clone();
        let sock = socket.clone();
        let thread = std::thread::Builder::new()
            .name("qmpkit-server".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = tx.send(Err(e.to_string()));
                        return;
                    }
                };
                // This thread's /proc directory, for its CPU time.
                let me = std::fs::read_link("/proc/thread-self")
                    .map(|p| Path::new("/proc").join(p))
                    .ok();
                rt.block_on(async move {
                    match qmpkit_server::bind_unix(&sock) {
                        Ok(l) => {
                            let _ = tx.send(Ok(me));
                            let _ = s.serve_unix(l).await;
                        }
                        Err(e) => {
                            let _ = tx.send(Err(e.to_string()));
                        }
                    }
                });
            })
            .map_err(|e| e.to_string())?;
        let me = rx.recv().map_err(|e| e.to_string())??;
        let guard = ServerGuard {
            server,
            thread: Some(thread),
            dir,
        };
        let t = Target::unix("qmpkit-server", socket, guard);
        Ok(match me {
            Some(dir) => t.with_cpu(dir),
            None => t,
        })
    }
}

/// The server's goals against qemu-storage-daemon, measured in the same run.
fn goals(ours: &Figures, qsd: Option<&Figures>) -> Value {
    let seq_ratio = qsd.map(|q| ours.seq_per_sec / q.seq_per_sec);
    let mut g = Map::new();
    g.insert(
        "seq_vs_qsd".into(),
        json!({"goal": ">= 3.5x", "value": seq_ratio.map(|r| (r * 100.0).round() / 100.0), "met": seq_ratio.map(|r| r >= 3.5)}),
    );
    g.insert(
        "pipelined16_per_sec".into(),
        json!({"goal": ">= 250000", "value": ours.pipelined_per_sec.round(), "met": ours.pipelined_per_sec >= 250_000.0}),
    );
    g.insert(
        "paced1000_p99_us".into(),
        json!({"goal": "< 100", "value": (ours.paced_p99_us * 10.0).round() / 10.0, "met": ours.paced_p99_us < 100.0}),
    );
    let cr = ours.client_ratio();
    g.insert(
        "client_vs_python".into(),
        json!({"goal": ">= 10x", "value": cr.map(|r| (r * 100.0).round() / 100.0), "met": cr.map(|r| r >= 10.0)}),
    );
    Value::Object(g)
}

/// Measure `targets` (the first is the reference for ratios) and report.
pub fn run_targets(
    rt: &tokio::runtime::Runtime,
    targets: &[Target],
    results: &mut Map<String, Value>,
) {
    if targets.is_empty() {
        return;
    }
    let measured = measure_all(rt, targets);
    println!();
    println!("QMP round trips over a unix socket (query-version; our client unless noted)");
    println!(
        "{:<32} {:>12} {:>14} {:>11} {:>10} {:>10} {:>14} {:>8}",
        "target",
        "seq/s",
        "pipelined16/s",
        "srv cpu µs",
        "p50 µs",
        "p99 µs",
        "python seq/s",
        "ours/py"
    );
    let mut out = Map::new();
    for (t, f) in &measured {
        println!(
            "{:<32} {:>12.0} {:>14.0} {:>11} {:>10.1} {:>10.1} {:>14} {:>8}",
            t.name,
            f.seq_per_sec,
            f.pipelined_per_sec,
            f.pipelined_server_cpu_us
                .map_or("-".into(), |c| format!("{c:.2}")),
            f.paced_p50_us,
            f.paced_p99_us,
            f.python_seq_per_sec
                .map_or("-".into(), |p| format!("{p:.0}")),
            f.client_ratio().map_or("-".into(), |r| format!("{r:.2}x")),
        );
        out.insert(t.name.clone(), f.to_json());
    }
    if let Some((reference, base)) = measured.first() {
        let mut ratios = Map::new();
        for (t, f) in measured.iter().skip(1) {
            println!(
                "{} vs {}: sequential {:.2}x, pipelined {:.2}x, p99 {:.2}x",
                t.name,
                reference.name,
                f.seq_per_sec / base.seq_per_sec,
                f.pipelined_per_sec / base.pipelined_per_sec,
                f.paced_p99_us / base.paced_p99_us
            );
            ratios.insert(
                format!("{} / {}", t.name, reference.name),
                json!({
                    "seq": (f.seq_per_sec / base.seq_per_sec * 100.0).round() / 100.0,
                    "pipelined16": (f.pipelined_per_sec / base.pipelined_per_sec * 100.0).round() / 100.0,
                    "p99": (f.paced_p99_us / base.paced_p99_us * 100.0).round() / 100.0,
                }),
            );
        }
        if !ratios.is_empty() {
            out.insert("ratios".into(), Value::Object(ratios));
        }
    }
    if let Some((ceiling, top)) = measured.iter().find(|(t, _)| t.name.starts_with("ceiling")) {
        let mut fr = Map::new();
        println!("as a fraction of {} (same run):", ceiling.name);
        for (t, f) in measured.iter().filter(|(t, _)| t.name != ceiling.name) {
            let seq = f.seq_per_sec / top.seq_per_sec;
            let pip = f.pipelined_per_sec / top.pipelined_per_sec;
            println!(
                "  {:<32} sequential {:>5.1} %   pipelined16 {:>5.1} %",
                t.name,
                seq * 100.0,
                pip * 100.0
            );
            fr.insert(
                t.name.clone(),
                json!({"seq": (seq * 1000.0).round() / 1000.0, "pipelined16": (pip * 1000.0).round() / 1000.0}),
            );
        }
        if let Some((_, serve)) = measured.iter().find(|(t, _)| t.name == "qmpkit serve") {
            let pip = serve.pipelined_per_sec / top.pipelined_per_sec;
            let verdict = if pip >= 0.5 { "met" } else { "NOT MET" };
            println!(
                "  qmpkit serve pipelined16 goal >= 50 % of the ceiling: {:.1} % {verdict}",
                pip * 100.0
            );
            fr.insert(
                "goal_qmpkit_serve_pipelined16".into(),
                json!({"goal": ">= 0.5", "value": (pip * 1000.0).round() / 1000.0, "met": pip >= 0.5}),
            );
        }
        out.insert("vs_ceiling".into(), Value::Object(fr));
    }
    if let Some((_, ours)) = measured.iter().find(|(t, _)| t.name == "qmpkit-server") {
        let qsd = measured
            .iter()
            .find(|(t, _)| t.name.starts_with("qemu-storage-daemon"))
            .map(|(_, f)| f);
        let g = goals(ours, qsd);
        println!("qmpkit-server goals:");
        if let Value::Object(m) = &g {
            for (k, v) in m {
                println!(
                    "  {:<22} goal {:<9} value {:<10} {}",
                    k,
                    v["goal"].as_str().unwrap_or(""),
                    v["value"].to_string(),
                    match v["met"].as_bool() {
                        Some(true) => "met",
                        Some(false) => "NOT MET",
                        None => "-",
                    }
                );
            }
        }
        out.insert("qmpkit_server_goals".into(), g);
    }
    results.insert("proto".into(), Value::Object(out));
}
