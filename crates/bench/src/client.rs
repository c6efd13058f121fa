//! Client cost: our client and Python qemu.qmp against the same trivial in-process responder
//! (it frames requests by brace counting and answers each with `{"return": {}, "id": …}`), so the server's
//! own cost is as small as it gets and the figures compare the two client stacks. A raw
//! blocking socket (write a request, read its line) against the same responder is the floor;
//! the CPU time the client's thread spends per sequential request is measured too (it depends
//! much less than the rates on what else the machine is doing).

use crate::proto::{pipelined, python, python_sequential, sequential, wait_listening};
use qmpkit_client::ConnectOptions;
use serde_json::{json, Map, Value};
use std::io::{BufWriter, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const MEASURE: Duration = Duration::from_millis(1500);

const GREETING: &[u8] = b"{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, \"minor\": 0, \"major\": 10}, \"package\": \"\"}, \"capabilities\": [\"oob\"]}}\r\n";

/// Split complete top-level JSON objects out of `acc` by brace counting (clients need not end
/// a request with a newline: Python's qemu.qmp does not).
fn frames(acc: &mut Vec<u8>, state: &mut (usize, bool, bool), out: &mut Vec<Vec<u8>>) {
    let (depth, in_str, esc) = state;
    let mut start = 0;
    for (i, &b) in acc.iter().enumerate() {
        if *in_str {
            match (b, *esc) {
                (_, true) => *esc = false,
                (b'\\', false) => *esc = true,
                (b'"', false) => *in_str = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => *in_str = true,
            b'{' | b'[' => *depth += 1,
            b'}' | b']' => {
                *depth = depth.saturating_sub(1);
                if *depth == 0 {
                    out.push(acc[start..=i].to_vec());
                    start = i + 1;
                }
            }
            _ => {
                if *depth == 0 {
                    start = i + 1;
                }
            }
        }
    }
    acc.drain(..start);
}

fn respond(mut stream: UnixStream) {
    let Ok(w) = stream.try_clone() else {
        return;
    };
    let mut w = BufWriter::new(w);
    if w.write_all(GREETING).and_then(|()| w.flush()).is_err() {
        return;
    }
    let mut buf = vec![0u8; 65536];
    let mut acc = Vec::new();
    let mut state = (0usize, false, false);
    let mut msgs = Vec::new();
    loop {
        let n = match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        acc.extend_from_slice(&buf[..n]);
        msgs.clear();
        frames(&mut acc, &mut state, &mut msgs);
        for m in &msgs {
            let id = serde_json::from_slice::<Value>(m)
                .ok()
                .and_then(|v| v.get("id").cloned());
            let ok = match id {
                Some(id) => write!(w, "{{\"return\": {{}}, \"id\": {id}}}\r\n"),
                None => w.write_all(b"{\"return\": {}}\r\n"),
            };
            if ok.is_err() {
                return;
            }
        }
        // One write per batch of requests read together.
        if w.flush().is_err() {
            return;
        }
    }
}

pub fn start_responder() -> Result<PathBuf, String> {
    let dir = std::env::temp_dir().join(format!("qmpkit-bench-client-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let socket = dir.join("trivial.sock");
    let _ = std::fs::remove_file(&socket);
    let listener = UnixListener::bind(&socket).map_err(|e| e.to_string())?;
    std::thread::spawn(move || {
        for s in listener.incoming().flatten() {
            std::thread::spawn(move || respond(s));
        }
    });
    wait_listening(&socket)?;
    Ok(socket)
}

/// CPU time the calling thread has used, in nanoseconds (`None` without /proc).
fn thread_cpu_ns() -> Option<u64> {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// One request written, its reply line read, on a blocking socket.
fn round_trip(
    w: &mut UnixStream,
    r: &mut std::io::BufReader<UnixStream>,
    line: &mut String,
    req: &[u8],
) -> Result<(), String> {
    use std::io::BufRead;
    w.write_all(req).map_err(|e| e.to_string())?;
    line.clear();
    match r.read_line(line) {
        Ok(0) => Err("the responder hung up".into()),
        Ok(_) => Ok(()),
        Err(e) => Err(e.to_string()),
    }
}

/// Sequential rate and CPU µs per request of a raw blocking socket: write one request, read
/// its reply line.
fn raw_sequential(socket: &Path, d: Duration) -> Result<(f64, Option<f64>), String> {
    use std::io::BufRead;
    let s = UnixStream::connect(socket).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let mut w = s.try_clone().map_err(|e| e.to_string())?;
    let mut r = std::io::BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line).map_err(|e| e.to_string())?; // the greeting
    round_trip(
        &mut w,
        &mut r,
        &mut line,
        b"{\"execute\": \"qmp_capabilities\", \"id\": 0}\n",
    )?;
    let mut req = Vec::with_capacity(64);
    let mut id = 0u64;
    let mut one = |line: &mut String| {
        id += 1;
        req.clear();
        let _ = writeln!(req, "{{\"execute\": \"query-version\", \"id\": {id}}}");
        round_trip(&mut w, &mut r, line, &req)
    };
    for _ in 0..200 {
        one(&mut line)?;
    }
    let cpu0 = thread_cpu_ns();
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < d {
        for _ in 0..100 {
            one(&mut line)?;
        }
        n += 100;
    }
    let secs = start.elapsed().as_secs_f64();
    Ok((n as f64 / secs, cpu_per_request(cpu0, n)))
}

fn cpu_per_request(start_ns: Option<u64>, n: u64) -> Option<f64> {
    let end = thread_cpu_ns()?;
    Some(end.saturating_sub(start_ns?) as f64 / 1e3 / n.max(1) as f64)
}

/// The section: rates of both clients against the trivial responder.
pub fn run(results: &mut Map<String, Value>) {
    let socket = match start_responder() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("client: no responder: {e}");
            return;
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("client: no runtime: {e}");
            return;
        }
    };
    let ours = rt.block_on(async {
        let c = ConnectOptions::default()
            .connect_unix(&socket)
            .await
            .map_err(|e| e.to_string())?;
        let cpu0 = thread_cpu_ns();
        let seq = sequential(&c, MEASURE).await?;
        // `sequential` warms up with 200 requests, then measures.
        let n = (seq * MEASURE.as_secs_f64()) as u64 + 200;
        let cpu = cpu_per_request(cpu0, n);
        let pipe = pipelined(&c, 16, MEASURE).await?;
        c.shutdown().await;
        Ok::<(f64, Option<f64>, f64), String>((seq, cpu, pipe))
    });
    let (seq, cpu, pipe) = match ours {
        Ok(v) => v,
        Err(e) => {
            eprintln!("client: {e}");
            return;
        }
    };
    let raw = match raw_sequential(&socket, MEASURE) {
        Ok(r) => Some(r),
        Err(e) => {
            eprintln!("client: raw socket: {e}");
            None
        }
    };
    let py = python().and_then(|p| match python_sequential(&p, &socket, MEASURE) {
        Ok(r) => Some(r),
        Err(e) => {
            eprintln!("client: python qemu.qmp: {e}");
            None
        }
    });
    let _ = std::fs::remove_file(&socket);
    println!();
    println!("Client cost against a trivial responder (unix socket, query-version)");
    let us = |c: Option<f64>| c.map_or("-".to_string(), |c| format!("{c:.2}"));
    println!(
        "{:<28} {:>12} {:>14} {:>12}",
        "client", "seq/s", "pipelined16/s", "CPU µs/req"
    );
    println!(
        "{:<28} {:>12.0} {:>14.0} {:>12}",
        "qmpkit-client",
        seq,
        pipe,
        us(cpu)
    );
    if let Some((r, rcpu)) = raw {
        println!(
            "{:<28} {:>12.0} {:>14} {:>12}",
            "raw blocking socket",
            r,
            "-",
            us(rcpu)
        );
        println!("qmpkit-client / raw socket, sequential: {:.2}x", seq / r);
    }
    match py {
        Some(p) => {
            println!("{:<28} {:>12.0} {:>14}", "python qemu.qmp", p, "-");
            println!("qmpkit-client / qemu.qmp, sequential: {:.2}x", seq / p);
        }
        None => println!("python qemu.qmp: skipped (not installed)"),
    }
    results.insert(
        "client".into(),
        json!({
            "seq_per_sec": seq.round(),
            "seq_cpu_us_per_req": cpu.map(|c| (c * 100.0).round() / 100.0),
            "pipelined16_per_sec": pipe.round(),
            "raw_socket_seq_per_sec": raw.map(|r| r.0.round()),
            "raw_socket_cpu_us_per_req": raw.and_then(|r| r.1).map(|c| (c * 100.0).round() / 100.0),
            "python_seq_per_sec": py.map(f64::round),
            "ratio_vs_python_seq": py.map(|p| (seq / p * 100.0).round() / 100.0),
        }),
    );
}
