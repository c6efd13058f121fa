//! Client cost: our client and Python qemu.qmp against the same trivial in-process responder
//! (it frames requests by brace counting and answers each with `{"return": {}, "id": …}`), so the server's
//! own cost is as small as it gets and the figures compare the two client stacks.

use crate::proto::{pipelined, python, python_sequential, sequential, wait_listening};
use qmpkit_client::ConnectOptions;
use serde_json::{json, Map, Value};
use std::io::{BufWriter, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::time::Duration;

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

fn start_responder() -> Result<PathBuf, String> {
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
        let seq = sequential(&c, MEASURE).await?;
        let pipe = pipelined(&c, 16, MEASURE).await?;
        c.shutdown().await;
        Ok::<(f64, f64), String>((seq, pipe))
    });
    let (seq, pipe) = match ours {
        Ok(v) => v,
        Err(e) => {
            eprintln!("client: {e}");
            return;
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
    println!("{:<28} {:>12} {:>14}", "client", "seq/s", "pipelined16/s");
    println!("{:<28} {:>12.0} {:>14.0}", "qmpkit-client", seq, pipe);
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
            "pipelined16_per_sec": pipe.round(),
            "python_seq_per_sec": py.map(f64::round),
            "ratio_vs_python_seq": py.map(|p| (seq / p * 100.0).round() / 100.0),
        }),
    );
}
