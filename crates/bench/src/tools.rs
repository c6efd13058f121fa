//! The QMP tools' costs: what `qmpkit proxy` adds to a round trip and keeps of pipelined
//! throughput (against the trivial responder of the client section and against
//! qemu-storage-daemon, each directly and through the proxy, in the same run), and how long
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

const MEASURE: Duration = Duration::from_millis(1500);

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

/// Round-trip latencies (µs, sorted) of sequential requests on a raw blocking socket.
fn latencies(socket: &Path, d: Duration) -> Result<Vec<f64>, String> {
    let s = UnixStream::connect(socket).map_err(|e| e.to_string())?;
    let mut w = s.try_clone().map_err(|e| e.to_string())?;
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line).map_err(|e| e.to_string())?;
    let mut rt = |req: &[u8], line: &mut String| -> Result<(), String> {
        w.write_all(req).map_err(|e| e.to_string())?;
        line.clear();
        match r.read_line(line) {
            Ok(0) => Err("hung up".into()),
            Ok(_) => Ok(()),
            Err(e) => Err(e.to_string()),
        }
    };
    rt(b"{\"execute\": \"qmp_capabilities\"}\n", &mut line)?;
    let req = b"{\"execute\": \"query-version\", \"id\": 1}\n";
    for _ in 0..500 {
        rt(req, &mut line)?;
    }
    let mut lat = Vec::new();
    let start = Instant::now();
    while start.elapsed() < d {
        let t = Instant::now();
        rt(req, &mut line)?;
        lat.push(t.elapsed().as_secs_f64() * 1e6);
    }
    lat.sort_by(|a, b| a.total_cmp(b));
    Ok(lat)
}

fn pct(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// Round trips and pipelined throughput to `upstream` directly, then through a proxy started in
/// front of it (after: QEMU's monitor serves one client at a time); `key` prefixes the figures.
fn proxy_figures(bin: &Path, upstream: &Path, name: &str, key: &str) -> Result<Value, String> {
    let dir = upstream.parent().ok_or("no dir")?.to_path_buf();
    let psock = dir.join("proxy.sock");
    let _ = std::fs::remove_file(&psock);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let pipelined_on = |sock: &Path, cpu_of: Option<u32>| {
        rt.block_on(async {
            let c = ConnectOptions::default()
                .connect_unix(sock)
                .await
                .map_err(|e| e.to_string())?;
            let dir = cpu_of.map(|pid| PathBuf::from(format!("/proc/{pid}")));
            let cpu0 = dir.as_deref().and_then(cpu_ns);
            let t0 = Instant::now();
            let rate = pipelined(&c, 16, MEASURE).await?;
            let n = rate * t0.elapsed().as_secs_f64();
            let cpu = match (cpu0, dir.as_deref().and_then(cpu_ns)) {
                (Some(a), Some(b)) => Some((b - a) as f64 / 1e3 / n),
                _ => None,
            };
            c.shutdown().await;
            Ok::<(f64, Option<f64>), String>((rate, cpu))
        })
    };
    let direct = latencies(upstream, MEASURE)?;
    let (pd, _) = pipelined_on(upstream, None)?;
    // Let QEMU see the last client go before the proxy connects.
    std::thread::sleep(Duration::from_millis(100));
    let proxy = Kill(
        Command::new(bin)
            .args(["proxy", "--upstream"])
            .arg(upstream)
            .arg("--listen")
            .arg(&psock)
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| e.to_string())?,
    );
    wait_listening(&psock)?;
    let via = latencies(&psock, MEASURE)?;
    let (pp, proxy_cpu) = pipelined_on(&psock, Some(proxy.0.id()))?;
    drop(proxy);
    let added = pct(&via, 0.5) - pct(&direct, 0.5);
    println!();
    println!("qmpkit proxy in front of {name} (unix sockets, query-version)");
    println!(
        "{:<28} {:>10} {:>10} {:>14}",
        "path", "p50 µs", "p99 µs", "pipelined16/s"
    );
    println!(
        "{:<28} {:>10.1} {:>10.1} {:>14.0}",
        "direct",
        pct(&direct, 0.5),
        pct(&direct, 0.99),
        pd
    );
    println!(
        "{:<28} {:>10.1} {:>10.1} {:>14.0}",
        "through qmpkit proxy",
        pct(&via, 0.5),
        pct(&via, 0.99),
        pp
    );
    println!(
        "proxy: +{added:.1} µs p50 per round trip (goal < 20), pipelined throughput kept {:.0} % (goal >= 80), proxy CPU {} µs per request",
        pp / pd * 100.0,
        proxy_cpu.map_or("-".into(), |c| format!("{c:.2}"))
    );
    let r1 = |x: f64| (x * 10.0).round() / 10.0;
    let mut m = Map::new();
    let mut put = |k: &str, v: Value| {
        m.insert(format!("{key}{k}"), v);
    };
    put("direct_p50_us", json!(r1(pct(&direct, 0.5))));
    put("proxy_p50_us", json!(r1(pct(&via, 0.5))));
    put("proxy_added_p50_us", json!(r1(added)));
    put("direct_pipelined16_per_sec", json!(pd.round()));
    put("proxy_pipelined16_per_sec", json!(pp.round()));
    put(
        "proxy_pipelined_kept",
        json!((pp / pd * 100.0).round() / 100.0),
    );
    put(
        "proxy_cpu_us_per_req",
        json!(proxy_cpu.map(|c| (c * 100.0).round() / 100.0)),
    );
    put("goal_added_p50_under_20us", json!(added < 20.0));
    put("goal_pipelined_kept_80pct", json!(pp / pd >= 0.8));
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
    let trivial =
        start_responder().and_then(|up| proxy_figures(&bin, &up, "a trivial responder", ""));
    match trivial {
        Ok(Value::Object(o)) => m.extend(o),
        Ok(_) => {}
        Err(e) => eprintln!("tools: proxy: {e}"),
    }
    // The upstream the proxy is for: QEMU's own monitor.
    match Target::qsd().and_then(|q| {
        let sock = q.socket().ok_or("no socket")?.to_path_buf();
        let r = proxy_figures(&bin, &sock, &q.name, "qsd_");
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
