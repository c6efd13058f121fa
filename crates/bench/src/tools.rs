//! The QMP tools' costs: what `qmpkit proxy` adds to a round trip and keeps of pipelined
//! throughput, against the trivial responder of the client section and against
//! qemu-storage-daemon, and how long `qmpkit shell` takes from exec to its prompt and to a
//! loaded schema against QEMU 10.0's monitors (qemu-storage-daemon, qemu-system-x86_64) when
//! they are installed.
//!
//! The proxy (as it starts by default, and with `--busy-poll 50`) is measured beside
//! do-nothing forwarders ([`forward`]): processes in between that only copy bytes, the floor
//! of any proxy in a process of its own on this machine. All paths, and the direct one, are
//! connected at once and used in turn in short blocks whose order rotates, over several
//! rounds: each round gives, per path, its p50 minus the direct p50 of the same round, and the
//! figures are the medians of the rounds, with their spread. For each process in between the
//! scheduler's own accounting tells, one round trip at a time, how often it ran (each run is a
//! wake-up), its CPU time and how long it waited for a CPU once woken: figures that depend far
//! less than latencies on what else the machine is doing.
//!
//! `QMPKIT_BENCH_VIAS=proxy,busy,threads,...` replaces the paths in front of the trivial
//! responder by the ones listed, in that order (`proxy`, `busy` for `--busy-poll 50`, or a
//! forwarder mode), to compare like with like. Needs the `qmpkit` binary next to this one
//! (`cargo build --release -p qmpkit`); the section is skipped without it.

use crate::client::start_responder;
use crate::forward;
use crate::proto::{cpu_ns, pipelined, sched_stat, wait_listening, Target};
use qmpkit_client::ConnectOptions;
use serde_json::{json, Map, Value};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn qmpkit() -> Option<PathBuf> {
    let p = std::env::current_exe().ok()?.parent()?.join("qmpkit");
    p.exists().then_some(p)
}

/// A negotiated raw blocking connection for sequential round trips.
struct Raw {
    w: UnixStream,
    r: BufReader<UnixStream>,
    line: String,
}

impl Raw {
    fn connect(socket: &Path) -> Result<Raw, String> {
        let s = UnixStream::connect(socket).map_err(|e| format!("{}: {e}", socket.display()))?;
        let w = s.try_clone().map_err(|e| e.to_string())?;
        let mut c = Raw {
            w,
            r: BufReader::new(s),
            line: String::new(),
        };
        c.r.read_line(&mut c.line).map_err(|e| e.to_string())?;
        c.rt(b"{\"execute\": \"qmp_capabilities\"}\n")?;
        Ok(c)
    }

    fn rt(&mut self, req: &[u8]) -> Result<(), String> {
        self.w.write_all(req).map_err(|e| e.to_string())?;
        self.line.clear();
        match self.r.read_line(&mut self.line) {
            Ok(0) => Err("hung up".into()),
            Ok(_) => Ok(()),
            Err(e) => Err(e.to_string()),
        }
    }

    /// `n` timed round trips of `query-version`, their latencies (µs) appended to `out`.
    fn timed(&mut self, n: usize, out: &mut Vec<f64>) -> Result<(), String> {
        let req = b"{\"execute\": \"query-version\", \"id\": 1}\n";
        for _ in 0..n {
            let t = Instant::now();
            self.rt(req)?;
            out.push(t.elapsed().as_secs_f64() * 1e6);
        }
        Ok(())
    }
}

fn pct(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    pct(&v, 0.5)
}

fn spread(v: &[f64]) -> (f64, f64) {
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (lo, hi)
}

/// Rounds of the proxy comparison: each gives one added latency and one throughput ratio.
const ROUNDS: usize = 9;

/// Within a round's latency part: blocks of this many round trips on each path in turn (which
/// goes first rotates) ...
const BLOCK: usize = 100;
/// ... this many blocks per path.
const BLOCKS: usize = 10;

/// Within a round's throughput part: bursts of pipelining this long on each path in turn
/// (which goes first rotates) ...
const BURST: Duration = Duration::from_millis(30);
/// ... this many per path.
const BURSTS: usize = 5;

/// One pipelined burst on `c`: requests per second, the CPU time meanwhile (ns) of the process
/// whose `/proc` directory is `proc` (when given), the number of requests.
async fn burst_with_cpu(
    c: &qmpkit_client::Client,
    proc: Option<&Path>,
) -> Result<(f64, Option<u64>, f64), String> {
    let c0 = proc.and_then(cpu_ns);
    let t0 = Instant::now();
    let r = pipelined(c, 16, BURST).await?;
    let n = r * t0.elapsed().as_secs_f64();
    Ok((r, c0.zip(proc.and_then(cpu_ns)).map(|(a, b)| b - a), n))
}

/// A way to the upstream compared with the direct one: a process in between, listening on
/// `sock`.
struct Via {
    /// As printed: "qmpkit proxy", "do-nothing forwarder (threads)", ...
    label: String,
    /// Prefix of its figures' keys.
    key: String,
    /// `qmpkit proxy` itself: its figures have goals.
    goals: bool,
    sock: PathBuf,
    process: Kill,
}

impl Via {
    /// `qmpkit proxy` (with `--busy-poll` when given) from `sock` to `upstream`.
    fn proxy(
        bin: &Path,
        upstream: &Path,
        sock: PathBuf,
        busy_poll: Option<u32>,
    ) -> Result<Via, String> {
        let _ = std::fs::remove_file(&sock);
        let process = Kill(
            Command::new(bin)
                .args(["proxy", "--upstream"])
                .arg(upstream)
                .arg("--listen")
                .arg(&sock)
                .args(busy_poll.map(|us| format!("--busy-poll={us}")))
                .stdin(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|e| e.to_string())?,
        );
        let how = busy_poll.map_or(String::new(), |us| format!(" --busy-poll {us}"));
        Via {
            label: format!("qmpkit proxy{how}"),
            key: busy_poll.map_or(String::new(), |_| "busy_poll_".into()),
            goals: true,
            sock,
            process,
        }
        .listening()
    }

    /// A do-nothing forwarder ([`forward`]) in `mode` from `sock` to `upstream`.
    fn forwarder(mode: &str, upstream: &Path, sock: PathBuf) -> Result<Via, String> {
        Via {
            label: format!("do-nothing forwarder ({mode})"),
            key: format!("forwarder_{mode}_"),
            goals: false,
            process: Kill(forward::spawn(mode, upstream, &sock)?),
            sock,
        }
        .listening()
    }

    /// Once its socket's path appears (bound under another name, then renamed: /proc/net/unix
    /// shows the first).
    fn listening(self) -> Result<Via, String> {
        let t = Instant::now();
        while !self.sock.exists() {
            if t.elapsed() > Duration::from_secs(10) {
                return Err(format!(
                    "{} did not listen on {}",
                    self.label,
                    self.sock.display()
                ));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        Ok(self)
    }

    fn proc_dir(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}", self.process.0.id()))
    }
}

/// `(round + block)`'s order of the paths `0..n`: each goes first in turn.
fn order(n: usize, turn: usize) -> impl Iterator<Item = usize> {
    (0..n).map(move |i| (i + turn) % n)
}

/// What each of `vias` adds in front of `name` (reached directly at `direct`). All the
/// connections stay open and are used in turn, in short blocks whose order rotates, so that
/// every path sees the same machine: on a busy machine a burst of load then moves all alike.
/// Each of [`ROUNDS`] rounds gives, per via, the difference of its p50 round trip and the
/// direct one's in that round, and the ratio of its pipelined throughput to the direct one's
/// (measured next to each other); the verdicts are on the medians of the rounds, and their
/// spread is reported; `key` prefixes the figures.
fn proxy_figures(direct: &Path, vias: &[Via], name: &str, key: &str) -> Result<Value, String> {
    let paths: Vec<&Path> = std::iter::once(direct)
        .chain(vias.iter().map(|v| v.sock.as_path()))
        .collect();
    let n = paths.len();

    // Round trips: lat[round][path], sorted.
    let mut conns = paths
        .iter()
        .map(|p| Raw::connect(p))
        .collect::<Result<Vec<_>, _>>()?;
    let mut warm = Vec::new();
    for c in &mut conns {
        c.timed(500, &mut warm)?;
    }
    let procs: Vec<Option<PathBuf>> = std::iter::once(None)
        .chain(vias.iter().map(|v| Some(v.proc_dir())))
        .collect();
    let mut lat: Vec<Vec<Vec<f64>>> = Vec::new();
    // Per path, the scheduler's accounting of the process in between over its round trips.
    let mut sched = vec![[0u64; 3]; n];
    for round in 0..ROUNDS {
        let mut l = vec![Vec::new(); n];
        for b in 0..BLOCKS {
            for i in order(n, round + b) {
                let s0 = procs[i].as_deref().and_then(sched_stat);
                conns[i].timed(BLOCK, &mut l[i])?;
                if let (Some(a), Some(b)) = (s0, procs[i].as_deref().and_then(sched_stat)) {
                    for k in 0..3 {
                        sched[i][k] += b[k] - a[k];
                    }
                }
            }
        }
        for v in &mut l {
            v.sort_by(|a, b| a.total_cmp(b));
        }
        lat.push(l);
    }
    drop(conns);

    // Pipelined throughput, and each process's CPU per request while it pipelines.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    // rates[round][path]; cpu[path] = (ns, requests)
    let (rates, cpu) = rt.block_on(async {
        let mut clients = Vec::new();
        for p in &paths {
            clients.push(
                ConnectOptions::default()
                    .connect_unix(p)
                    .await
                    .map_err(|e| format!("{}: {e}", p.display()))?,
            );
        }
        for c in &clients {
            pipelined(c, 16, BURST).await?;
        }
        let mut cpu = vec![(0u64, 0f64); n];
        let mut rates: Vec<Vec<f64>> = Vec::new();
        for round in 0..ROUNDS {
            // Per path: requests and seconds over the round's bursts.
            let mut r = vec![(0f64, 0f64); n];
            for b in 0..BURSTS {
                for i in order(n, round + b) {
                    let (rate, c, count) = burst_with_cpu(&clients[i], procs[i].as_deref()).await?;
                    r[i].0 += count;
                    r[i].1 += count / rate;
                    if let Some(c) = c {
                        cpu[i].0 += c;
                        cpu[i].1 += count;
                    }
                }
            }
            rates.push(r.iter().map(|(k, t)| k / t).collect());
        }
        for c in clients {
            c.shutdown().await;
        }
        Ok::<_, String>((rates, cpu))
    })?;

    let p50 = |round: &Vec<Vec<f64>>, i: usize| pct(&round[i], 0.5);
    let col = |i: usize, q: f64| median(lat.iter().map(|r| pct(&r[i], q)).collect());
    let rate = |i: usize| median(rates.iter().map(|r| r[i]).collect());
    println!();
    println!(
        "what a process in between adds in front of {name} (unix sockets, query-version; {ROUNDS} rounds, each of {BLOCKS}x{BLOCK} round trips and {BURSTS}x{} ms of pipelining per path in rotating blocks; medians of the rounds)",
        BURST.as_millis()
    );
    println!(
        "{:<40} {:>10} {:>10} {:>14} {:>8}",
        "path", "p50 µs", "p99 µs", "pipelined16/s", "CPU µs"
    );
    println!(
        "{:<40} {:>10.1} {:>10.1} {:>14.0} {:>8}",
        "direct",
        col(0, 0.5),
        col(0, 0.99),
        rate(0),
        "-"
    );
    let r1 = |x: f64| (x * 10.0).round() / 10.0;
    let r2 = |x: f64| (x * 100.0).round() / 100.0;
    let mut m = Map::new();
    m.insert(format!("{key}proxy_rounds"), json!(ROUNDS));
    m.insert(format!("{key}direct_p50_us"), json!(r1(col(0, 0.5))));
    m.insert(
        format!("{key}direct_pipelined16_per_sec"),
        json!(rate(0).round()),
    );
    let mut verdicts = Vec::new();
    for (k, via) in vias.iter().enumerate() {
        let i = k + 1;
        let added: Vec<f64> = lat.iter().map(|r| p50(r, i) - p50(r, 0)).collect();
        let kept: Vec<f64> = rates.iter().map(|r| r[i] / r[0]).collect();
        let cpu = (cpu[i].1 > 0.0).then(|| cpu[i].0 as f64 / 1e3 / cpu[i].1);
        println!(
            "{:<40} {:>10.1} {:>10.1} {:>14.0} {:>8}",
            format!("through {}", via.label),
            col(i, 0.5),
            col(i, 0.99),
            rate(i),
            cpu.map_or("-".into(), |c| format!("{c:.2}"))
        );
        let (added_med, kept_med) = (median(added.clone()), median(kept.clone()));
        let (added_lo, added_hi) = spread(&added);
        let (kept_lo, kept_hi) = spread(&kept);
        let list = |v: &[f64], f: &dyn Fn(f64) -> String| {
            v.iter().map(|x| f(*x)).collect::<Vec<_>>().join(" ")
        };
        let goal = |g: &str| {
            if via.goals {
                format!("; goal {g}")
            } else {
                String::new()
            }
        };
        // One by one, per round trip: its CPU, its waits for a CPU once woken, its runs.
        let trips = (ROUNDS * BLOCKS * BLOCK) as f64;
        let per = |k: usize| sched[i][k] as f64 / trips;
        let seq = format!(
            "one by one it runs {:.2} times per round trip, for {:.2} µs of CPU, after waiting {:.2} µs for a CPU",
            per(2),
            per(0) / 1e3,
            per(1) / 1e3
        );
        verdicts.push(format!(
            "{}: {added_med:+.1} µs p50 per round trip (median of rounds [{}]{}), pipelined throughput kept {:.0} % (rounds [{}]{}), CPU {} µs per request; {seq}",
            via.label,
            list(&added, &|x| format!("{x:+.1}")),
            goal("< 20"),
            kept_med * 100.0,
            list(&kept, &|x| format!("{:.0}", x * 100.0)),
            goal(">= 80"),
            cpu.map_or("-".into(), |c| format!("{c:.2}"))
        ));
        let mut put = |k: &str, v: Value| {
            m.insert(format!("{key}{}{k}", via.key), v);
        };
        put("proxy_p50_us", json!(r1(col(i, 0.5))));
        put("proxy_added_p50_us", json!(r1(added_med)));
        put("proxy_added_p50_us_min", json!(r1(added_lo)));
        put("proxy_added_p50_us_max", json!(r1(added_hi)));
        put("proxy_pipelined16_per_sec", json!(rate(i).round()));
        put("proxy_pipelined_kept", json!(r2(kept_med)));
        put("proxy_pipelined_kept_min", json!(r2(kept_lo)));
        put("proxy_pipelined_kept_max", json!(r2(kept_hi)));
        put("proxy_cpu_us_per_req", json!(cpu.map(r2)));
        put("sequential_runs_per_req", json!(r2(per(2))));
        put("sequential_cpu_us_per_req", json!(r2(per(0) / 1e3)));
        put("sequential_wait_us_per_req", json!(r2(per(1) / 1e3)));
        if via.goals {
            put("goal_added_p50_under_20us", json!(added_med < 20.0));
            put("goal_pipelined_kept_80pct", json!(kept_med >= 0.8));
        }
    }
    for v in verdicts {
        println!("{v}");
    }
    Ok(Value::Object(m))
}

fn program(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// A QEMU 10.0 monitor for the shell to start against: (program, its options but the monitor's).
const SHELL_SERVERS: &[(&str, &str, &[&str])] = &[
    ("qemu-storage-daemon", "qsd", &[]),
    (
        "qemu-system-x86_64",
        "qemu",
        &["-machine", "none", "-display", "none", "-nodefaults"],
    ),
];

/// One shell run against `sock`: (from exec to the prompt, as the shell reports it from its
/// start, until the server's schema is loaded and `help` answered, whole run), in ms.
fn shell_run(bin: &Path, sock: &Path) -> Result<[f64; 4], String> {
    let t = Instant::now();
    let mut child = Kill(
        Command::new(bin)
            .args(["shell", "--no-history"])
            .arg(sock)
            .env("QMPKIT_SHELL_TIMING", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| e.to_string())?,
    );
    let mut err = BufReader::new(child.0.stderr.take().ok_or("no stderr")?);
    let timing = |err: &mut BufReader<_>, what: &str| -> Result<(f64, f64), String> {
        let mut line = String::new();
        loop {
            line.clear();
            if err.read_line(&mut line).map_err(|e| e.to_string())? == 0 {
                return Err(format!("the shell ended before saying '{what}'"));
            }
            if let Some(d) = line.trim_end().strip_prefix(what) {
                let own = parse_duration_ms(d).ok_or_else(|| format!("bad timing: {line}"))?;
                return Ok((t.elapsed().as_secs_f64() * 1e3, own));
            }
        }
    };
    let (ready_wall, ready_own) = timing(&mut err, "qmpkit shell: ready in ")?;
    // `help` needs the server's schema: the answer comes once the model is built.
    let mut stdin = child.0.stdin.take().ok_or("no stdin")?;
    stdin
        .write_all(b"help query-version\n")
        .map_err(|e| e.to_string())?;
    drop(stdin);
    let (schema_wall, _) = timing(&mut err, "qmpkit shell: schema loaded in ")?;
    let _ = std::io::copy(&mut err, &mut std::io::sink());
    let _ = child.0.wait();
    Ok([
        ready_wall,
        ready_own,
        schema_wall,
        t.elapsed().as_secs_f64() * 1e3,
    ])
}

/// Median times of `qmpkit shell` against QEMU 10.0's monitors (qemu-storage-daemon and
/// qemu-system-x86_64, whichever are installed): from exec to the prompt, the shell's own
/// start-to-ready, until the server's schema is loaded (completion and help ready), and the
/// whole run of `help query-version` piped in.
fn shell_figures(bin: &Path) -> Result<Value, String> {
    let dir = std::env::temp_dir().join(format!("qmpkit-bench-shell-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let mut out = Map::new();
    println!();
    for (name, key, args) in SHELL_SERVERS {
        let Some(prog) = program(name) else {
            eprintln!("tools: shell against {name}: not installed");
            continue;
        };
        let sock = dir.join(format!("{key}.sock"));
        let _ = std::fs::remove_file(&sock);
        let mut c = Command::new(prog);
        c.args(*args);
        if *key == "qsd" {
            c.arg("--chardev")
                .arg(format!(
                    "socket,id=m,path={},server=on,wait=off",
                    sock.display()
                ))
                .args(["--monitor", "chardev=m,mode=control"]);
        } else {
            c.arg("-qmp")
                .arg(format!("unix:{},server=on,wait=off", sock.display()));
        }
        let _q = Kill(
            c.stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|e| e.to_string())?,
        );
        wait_listening(&sock)?;
        // The monitor serves one client at a time: each run ends before the next.
        std::thread::sleep(Duration::from_millis(100));
        let mut runs = Vec::new();
        for _ in 0..7 {
            runs.push(shell_run(bin, &sock)?);
        }
        let med = |i: usize| {
            let mut v: Vec<f64> = runs.iter().map(|r| r[i]).collect();
            v.sort_by(|a, b| a.total_cmp(b));
            (v[v.len() / 2] * 10.0).round() / 10.0
        };
        let (wall, own, schema, whole) = (med(0), med(1), med(2), med(3));
        println!(
            "qmpkit shell against {name} 10.0: prompt {wall:.1} ms after exec ({own:.1} ms by the shell's clock; goal < 100), schema loaded {schema:.1} ms after exec, whole piped run {whole:.1} ms (medians of 7)"
        );
        out.insert(format!("shell_ready_ms_{key}"), json!(wall));
        out.insert(format!("shell_ready_own_ms_{key}"), json!(own));
        out.insert(format!("shell_schema_loaded_ms_{key}"), json!(schema));
        out.insert(format!("shell_piped_run_ms_{key}"), json!(whole));
        out.insert(
            format!("goal_shell_ready_under_100ms_{key}"),
            json!(wall < 100.0),
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    if out.is_empty() {
        return Err("neither qemu-storage-daemon nor qemu-system-x86_64 is installed".into());
    }
    Ok(Value::Object(out))
}

/// `12.3ms`, `850.1µs`, `1.2s` (Debug of a Duration) in milliseconds.
fn parse_duration_ms(s: &str) -> Option<f64> {
    let s = s.trim();
    for (unit, f) in [("ms", 1.0), ("µs", 1e-3), ("ns", 1e-6), ("s", 1e3)] {
        if let Some(n) = s.strip_suffix(unit) {
            return n.parse::<f64>().ok().map(|v| v * f);
        }
    }
    None
}

pub fn run(results: &mut Map<String, Value>) {
    let Some(bin) = qmpkit() else {
        eprintln!("tools: skipped (no qmpkit binary next to the harness; cargo build --release -p qmpkit)");
        return;
    };
    let mut m = Map::new();
    // The proxy as it starts by default and busy polling for 50 µs after each message, beside
    // the do-nothing forwarders, all in the same rounds.
    let trivial = start_responder().and_then(|up| {
        let dir = up.parent().ok_or("no dir")?.to_path_buf();
        let mut vias = Vec::new();
        if let Ok(list) = std::env::var("QMPKIT_BENCH_VIAS") {
            for (k, v) in list.split(',').enumerate() {
                let sock = dir.join(format!("via{k}.sock"));
                let mut via = match v {
                    "proxy" => Via::proxy(&bin, &up, sock, None)?,
                    "busy" => Via::proxy(&bin, &up, sock, Some(50))?,
                    mode => Via::forwarder(mode, &up, sock)?,
                };
                via.label = format!("{k}: {}", via.label);
                via.key = format!("via{k}_");
                vias.push(via);
            }
        } else {
            vias.push(Via::proxy(&bin, &up, dir.join("proxy.sock"), None)?);
            vias.push(Via::proxy(
                &bin,
                &up,
                dir.join("proxy-busy.sock"),
                Some(50),
            )?);
            for mode in forward::MODES {
                vias.push(Via::forwarder(
                    mode,
                    &up,
                    dir.join(format!("fwd-{mode}.sock")),
                )?);
            }
        }
        proxy_figures(&up, &vias, "a trivial responder", "")
    });
    match trivial {
        Ok(Value::Object(o)) => m.extend(o),
        Ok(_) => {}
        Err(e) => eprintln!("tools: proxy: {e}"),
    }
    // The upstream the proxy is for: QEMU's own monitor (one each for the processes in
    // between: it serves one client at a time).
    let monitors = ["proxied", "busy", "threads"];
    match Target::qsd_with(&monitors).and_then(|q| {
        let sock = q.socket().ok_or("no socket")?.to_path_buf();
        let other = |n: &str| sock.with_file_name(format!("{n}.sock"));
        let vias = vec![
            Via::proxy(&bin, &other("proxied"), other("proxy"), None)?,
            Via::proxy(&bin, &other("busy"), other("proxy-busy"), Some(50))?,
            Via::forwarder("threads", &other("threads"), other("fwd-threads"))?,
        ];
        let r = proxy_figures(&sock, &vias, &q.name, "qsd_");
        drop(vias);
        drop(q);
        r
    }) {
        Ok(Value::Object(o)) => m.extend(o),
        Ok(_) => {}
        Err(e) => eprintln!("tools: proxy before qemu-storage-daemon: {e}"),
    }
    match shell_figures(&bin) {
        Ok(Value::Object(o)) => m.extend(o),
        Ok(_) => {}
        Err(e) => eprintln!("tools: shell: {e}"),
    }
    results.insert("tools".into(), Value::Object(m));
}
