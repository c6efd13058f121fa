//! The QMP tools' costs: what `qmpkit proxy` adds to a round trip and keeps of pipelined
//! throughput (against the trivial responder of the client section and against
//! qemu-storage-daemon, each directly and through the proxy at the same time, in alternating
//! blocks over several rounds: medians and spread), and how long
//! `qmpkit shell` takes from exec to its prompt and to a loaded schema against QEMU 10.0's
//! monitors (qemu-storage-daemon, qemu-system-x86_64) when they are installed. Needs the `qmpkit` binary next to this one
//! (`cargo build --release -p qmpkit`); the section is skipped without it.

use crate::client::start_responder;
use crate::proto::{cpu_ns, pipelined, wait_listening, Target};
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

/// Within a round's latency part: blocks of this many round trips, alternating between the
/// direct connection and the proxied one (which goes first alternates too) ...
const BLOCK: usize = 100;
/// ... this many blocks per path.
const BLOCKS: usize = 10;

/// Within a round's throughput part: each path pipelines for this long, in turn.
const BURST: Duration = Duration::from_millis(150);

/// One pipelined burst through the proxy whose `/proc` directory is `proc`: requests per
/// second, the proxy's CPU time meanwhile (ns), the number of requests.
async fn burst_with_cpu(
    c: &qmpkit_client::Client,
    proc: &Path,
) -> Result<(f64, Option<u64>, f64), String> {
    let c0 = cpu_ns(proc);
    let t0 = Instant::now();
    let r = pipelined(c, 16, BURST).await?;
    let n = r * t0.elapsed().as_secs_f64();
    Ok((r, c0.zip(cpu_ns(proc)).map(|(a, b)| b - a), n))
}

/// What the proxy adds, in front of `name`: the proxy is connected to `for_proxy` (QEMU's
/// monitor serves one client at a time, so a second monitor of the same process, or the same
/// socket for a server that takes many clients) while the direct client uses `direct`. Both
/// connections stay open and are used in turn, in short alternating blocks, so that both paths
/// see the same machine: on a busy machine a burst of load then moves both alike. Each of
/// [`ROUNDS`] rounds gives a difference of p50 round trips and a ratio of pipelined
/// throughput; the verdicts are on their medians, and their spread is reported; `key` prefixes
/// the figures.
fn proxy_figures(
    bin: &Path,
    direct: &Path,
    for_proxy: &Path,
    name: &str,
    key: &str,
    busy_poll: Option<u32>,
) -> Result<Value, String> {
    let dir = direct.parent().ok_or("no dir")?.to_path_buf();
    let psock = dir.join("proxy.sock");
    let _ = std::fs::remove_file(&psock);
    let proxy = Kill(
        Command::new(bin)
            .args(["proxy", "--upstream"])
            .arg(for_proxy)
            .arg("--listen")
            .arg(&psock)
            .args(busy_poll.map(|us| format!("--busy-poll={us}")))
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| e.to_string())?,
    );
    // The proxy's path appears once it listens (bound under another name, then renamed:
    // /proc/net/unix shows the first).
    let t = Instant::now();
    while !psock.exists() {
        if t.elapsed() > Duration::from_secs(10) {
            return Err(format!("the proxy did not listen on {}", psock.display()));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let proxy_dir = PathBuf::from(format!("/proc/{}", proxy.0.id()));

    // Round trips.
    let mut d = Raw::connect(direct)?;
    let mut v = Raw::connect(&psock)?;
    let mut warm = Vec::new();
    d.timed(500, &mut warm)?;
    v.timed(500, &mut warm)?;
    let mut lat: Vec<(Vec<f64>, Vec<f64>)> = Vec::new();
    for round in 0..ROUNDS {
        let (mut ld, mut lv) = (Vec::new(), Vec::new());
        for b in 0..BLOCKS {
            if (round + b) % 2 == 0 {
                d.timed(BLOCK, &mut ld)?;
                v.timed(BLOCK, &mut lv)?;
            } else {
                v.timed(BLOCK, &mut lv)?;
                d.timed(BLOCK, &mut ld)?;
            }
        }
        ld.sort_by(|a, b| a.total_cmp(b));
        lv.sort_by(|a, b| a.total_cmp(b));
        lat.push((ld, lv));
    }
    drop((d, v));

    // Pipelined throughput, and the proxy's CPU per request while it pipelines.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let (rates, cpu) = rt.block_on(async {
        let cd = ConnectOptions::default()
            .connect_unix(direct)
            .await
            .map_err(|e| e.to_string())?;
        let cv = ConnectOptions::default()
            .connect_unix(&psock)
            .await
            .map_err(|e| e.to_string())?;
        pipelined(&cd, 16, BURST).await?;
        pipelined(&cv, 16, BURST).await?;
        let (mut cpu_ns_total, mut proxied) = (0u64, 0f64);
        let mut rates = Vec::new();
        for round in 0..ROUNDS {
            let (rd, (rv, c, n)) = if round % 2 == 0 {
                let rd = pipelined(&cd, 16, BURST).await?;
                (rd, burst_with_cpu(&cv, &proxy_dir).await?)
            } else {
                let x = burst_with_cpu(&cv, &proxy_dir).await?;
                (pipelined(&cd, 16, BURST).await?, x)
            };
            if let Some(c) = c {
                cpu_ns_total += c;
                proxied += n;
            }
            rates.push((rd, rv));
        }
        cd.shutdown().await;
        cv.shutdown().await;
        let cpu = (proxied > 0.0).then(|| cpu_ns_total as f64 / 1e3 / proxied);
        Ok::<_, String>((rates, cpu))
    })?;
    drop(proxy);
    let _ = std::fs::remove_file(&psock);

    let added: Vec<f64> = lat.iter().map(|(d, v)| pct(v, 0.5) - pct(d, 0.5)).collect();
    let kept: Vec<f64> = rates.iter().map(|(d, v)| v / d).collect();
    let col = |f: &dyn Fn(&(Vec<f64>, Vec<f64>)) -> f64| median(lat.iter().map(f).collect());
    let (dp50, vp50) = (col(&|r| pct(&r.0, 0.5)), col(&|r| pct(&r.1, 0.5)));
    let (dp99, vp99) = (col(&|r| pct(&r.0, 0.99)), col(&|r| pct(&r.1, 0.99)));
    let pd = median(rates.iter().map(|r| r.0).collect());
    let pp = median(rates.iter().map(|r| r.1).collect());
    let (added_med, kept_med) = (median(added.clone()), median(kept.clone()));
    let (added_lo, added_hi) = spread(&added);
    let (kept_lo, kept_hi) = spread(&kept);
    println!();
    let how = busy_poll.map_or(String::new(), |us| format!(" with --busy-poll {us}"));
    println!(
        "qmpkit proxy{how} in front of {name} (unix sockets, query-version; {ROUNDS} rounds, each of {BLOCKS}x{BLOCK} round trips per path in alternating blocks and {} ms of pipelining per path; medians of the rounds)",
        BURST.as_millis()
    );
    println!(
        "{:<28} {:>10} {:>10} {:>14}",
        "path", "p50 µs", "p99 µs", "pipelined16/s"
    );
    println!("{:<28} {dp50:>10.1} {dp99:>10.1} {pd:>14.0}", "direct");
    println!(
        "{:<28} {vp50:>10.1} {vp99:>10.1} {pp:>14.0}",
        "through qmpkit proxy"
    );
    let list = |v: &[f64], f: &dyn Fn(f64) -> String| {
        v.iter().map(|x| f(*x)).collect::<Vec<_>>().join(" ")
    };
    println!(
        "rounds: added p50 µs [{}], throughput kept % [{}]",
        list(&added, &|x| format!("{x:+.1}")),
        list(&kept, &|x| format!("{:.0}", x * 100.0))
    );
    println!(
        "proxy: +{added_med:.1} µs p50 per round trip (median of rounds, spread {added_lo:+.1}..{added_hi:+.1}; goal < 20), pipelined throughput kept {:.0} % (spread {:.0}..{:.0}; goal >= 80), proxy CPU {} µs per request",
        kept_med * 100.0,
        kept_lo * 100.0,
        kept_hi * 100.0,
        cpu.map_or("-".into(), |c| format!("{c:.2}"))
    );
    let r1 = |x: f64| (x * 10.0).round() / 10.0;
    let r2 = |x: f64| (x * 100.0).round() / 100.0;
    let mut m = Map::new();
    let mut put = |k: &str, v: Value| {
        m.insert(format!("{key}{k}"), v);
    };
    put("proxy_rounds", json!(ROUNDS));
    put("direct_p50_us", json!(r1(dp50)));
    put("proxy_p50_us", json!(r1(vp50)));
    put("proxy_added_p50_us", json!(r1(added_med)));
    put("proxy_added_p50_us_min", json!(r1(added_lo)));
    put("proxy_added_p50_us_max", json!(r1(added_hi)));
    put("direct_pipelined16_per_sec", json!(pd.round()));
    put("proxy_pipelined16_per_sec", json!(pp.round()));
    put("proxy_pipelined_kept", json!(r2(kept_med)));
    put("proxy_pipelined_kept_min", json!(r2(kept_lo)));
    put("proxy_pipelined_kept_max", json!(r2(kept_hi)));
    put("proxy_cpu_us_per_req", json!(cpu.map(r2)));
    put("goal_added_p50_under_20us", json!(added_med < 20.0));
    put("goal_pipelined_kept_80pct", json!(kept_med >= 0.8));
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
    // Each proxy as it starts by default, then busy polling for 50 µs after each message.
    for busy in [None, Some(50)] {
        let key = |k: &str| match busy {
            Some(_) => format!("{k}busy_poll_"),
            None => k.to_string(),
        };
        let trivial = start_responder()
            .and_then(|up| proxy_figures(&bin, &up, &up, "a trivial responder", &key(""), busy));
        match trivial {
            Ok(Value::Object(o)) => m.extend(o),
            Ok(_) => {}
            Err(e) => eprintln!("tools: proxy: {e}"),
        }
        // The upstream the proxy is for: QEMU's own monitor (a second one for the proxy).
        match Target::qsd_with(&["proxied"]).and_then(|q| {
            let sock = q.socket().ok_or("no socket")?.to_path_buf();
            let other = sock.with_file_name("proxied.sock");
            let r = proxy_figures(&bin, &sock, &other, &q.name, &key("qsd_"), busy);
            drop(q);
            r
        }) {
            Ok(Value::Object(o)) => m.extend(o),
            Ok(_) => {}
            Err(e) => eprintln!("tools: proxy before qemu-storage-daemon: {e}"),
        }
    }
    match shell_figures(&bin) {
        Ok(Value::Object(o)) => m.extend(o),
        Ok(_) => {}
        Err(e) => eprintln!("tools: shell: {e}"),
    }
    results.insert("tools".into(), Value::Object(m));
}
