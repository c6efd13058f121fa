//! Wire codec: decoding typical QMP messages with `JsonStreamer` against
//! `serde_json::from_slice`, and encoding with `encode_line` against
//! `serde_json::to_vec`, measured in the same run. Ratios are ours / theirs
//! (time per message): below 1.0 means faster than serde_json.

use qmpkit_wire::{encode_line, JsonStreamer};
use serde_json::{json, Map, Value};
use std::hint::black_box;
use std::time::{Duration, Instant};

fn messages() -> Vec<(&'static str, Vec<u8>)> {
    let mut m: Vec<(&'static str, Vec<u8>)> = vec![
        ("request query-version", br#"{"execute": "query-version", "id": 1}"#.to_vec()),
        (
            "request qom-list",
            br#"{"execute": "qom-list", "arguments": {"path": "/machine/peripheral"}, "id": "req-17"}"#
                .to_vec(),
        ),
        (
            "request blockdev-add",
            br#"{"execute": "blockdev-add", "arguments": {"driver": "qcow2", "node-name": "disk0", "file": {"driver": "file", "filename": "/var/lib/images/guest.qcow2", "aio": "native", "cache": {"direct": true, "no-flush": false}}, "read-only": false, "discard": "unmap"}, "id": 42}"#
                .to_vec(),
        ),
        (
            "reply query-version",
            br#"{"return": {"qemu": {"micro": 2, "minor": 0, "major": 10}, "package": "Debian 1:10.0.2+ds-2+deb13u1~bpo12+1"}, "id": "v1"}"#
                .to_vec(),
        ),
        (
            "event SHUTDOWN",
            br#"{"timestamp": {"seconds": 1795462007, "microseconds": 768529}, "event": "SHUTDOWN", "data": {"guest": false, "reason": "host-qmp-quit"}}"#
                .to_vec(),
        ),
    ];
    let schema = qmpkit_testkit::data::dir()
        .join("qemu-ref/introspection/qemu-storage-daemon-10.0.2-query-qmp-schema.json");
    match std::fs::read(schema) {
        Ok(bytes) => {
            let trimmed = bytes.trim_ascii_end().to_vec();
            m.push(("reply query-qmp-schema (117 KB)", trimmed));
        }
        Err(_) => {
            let list: Vec<Value> = (0..1500)
                .map(|i| json!({"name": format!("cmd-{i}"), "ret-type": "1", "meta-type": "command", "arg-type": "0"}))
                .collect();
            let v = json!({ "return": list });
            m.push((
                "reply synthetic schema",
                serde_json::to_vec(&v).unwrap_or_default(),
            ));
        }
    }
    m
}

fn calibrate(budget: Duration, f: &mut impl FnMut()) -> u64 {
    let mut n = 1u64;
    loop {
        let t = Instant::now();
        for _ in 0..n {
            f();
        }
        if t.elapsed() > budget / 10 || n > 1 << 30 {
            return n;
        }
        n *= 2;
    }
}

/// Best time per iteration of `a` and of `b`, measured in alternating rounds
/// so that a burst of load elsewhere hits both alike.
fn time_pair(budget: Duration, mut a: impl FnMut(), mut b: impl FnMut()) -> (f64, f64) {
    let na = calibrate(budget, &mut a);
    let nb = calibrate(budget, &mut b);
    let (mut best_a, mut best_b) = (f64::INFINITY, f64::INFINITY);
    for _ in 0..7 {
        let t = Instant::now();
        for _ in 0..na {
            a();
        }
        best_a = best_a.min(t.elapsed().as_secs_f64() / na as f64);
        let t = Instant::now();
        for _ in 0..nb {
            b();
        }
        best_b = best_b.min(t.elapsed().as_secs_f64() / nb as f64);
    }
    (best_a, best_b)
}

fn fmt_time(s: f64) -> String {
    if s < 1e-6 {
        format!("{:8.1} ns", s * 1e9)
    } else if s < 1e-3 {
        format!("{:8.2} µs", s * 1e6)
    } else {
        format!("{:8.2} ms", s * 1e3)
    }
}

/// Print the wire table; add the ratios to `results` under `wire`.
pub fn run(results: &mut Map<String, Value>) {
    let budget = Duration::from_millis(60);
    println!("\n== wire: decode (JsonStreamer::feed vs serde_json::from_slice) and encode (encode_line vs serde_json::to_vec)");
    println!(
        "{:34} {:>11} {:>11} {:>6}   {:>11} {:>11} {:>6}",
        "message", "decode", "serde_json", "ratio", "encode", "serde_json", "ratio"
    );
    let mut out = Map::new();
    let mut worst_decode: f64 = 0.0;
    let mut worst_encode: f64 = 0.0;
    for (name, bytes) in messages() {
        let mut line = bytes.clone();
        line.extend_from_slice(b"\r\n");
        let mut streamer = JsonStreamer::new();
        let mut items = Vec::with_capacity(4);
        let (ours, theirs) = time_pair(
            budget,
            || {
                streamer.feed(black_box(&line), &mut items);
                black_box(items.drain(..).count());
            },
            || {
                let v: Result<Value, _> = serde_json::from_slice(black_box(&bytes));
                black_box(v.is_ok());
            },
        );
        let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let (enc_ours, enc_theirs) = time_pair(
            budget,
            || {
                black_box(encode_line(black_box(&value)).len());
            },
            || {
                black_box(
                    serde_json::to_vec(black_box(&value))
                        .map(|v| v.len())
                        .unwrap_or(0),
                );
            },
        );
        let (rd, re) = (ours / theirs, enc_ours / enc_theirs);
        worst_decode = worst_decode.max(rd);
        worst_encode = worst_encode.max(re);
        println!(
            "{:34} {} {} {:6.2}   {} {} {:6.2}",
            name,
            fmt_time(ours),
            fmt_time(theirs),
            rd,
            fmt_time(enc_ours),
            fmt_time(enc_theirs),
            re
        );
        out.insert(
            name.to_owned(),
            json!({"decode_vs_serde_json": (rd * 1000.0).round() / 1000.0,
                   "encode_vs_serde_json": (re * 1000.0).round() / 1000.0}),
        );
    }
    println!("worst decode ratio {worst_decode:.2}, worst encode ratio {worst_encode:.2}");

    // For information: QEMU's extensions take the exact path.
    let plain =
        br#"{"execute": "qom-list", "arguments": {"path": "/machine/peripheral"}, "id": "req-17"}"#;
    let quoted = b"{'execute': 'qom-list', 'arguments': {'path': '/machine/peripheral'}, 'id': 'req-17'}\r\n";
    let mut streamer = JsonStreamer::new();
    let mut items = Vec::with_capacity(4);
    let (exact, theirs) = time_pair(
        budget,
        || {
            streamer.feed(black_box(quoted), &mut items);
            black_box(items.drain(..).count());
        },
        || {
            let v: Result<Value, _> = serde_json::from_slice(black_box(plain));
            black_box(v.is_ok());
        },
    );
    println!(
        "exact path (single-quoted qom-list) {} vs serde_json on the double-quoted form {}: {:.2}",
        fmt_time(exact),
        fmt_time(theirs),
        exact / theirs
    );
    out.insert(
        "exact_path_vs_serde_json".into(),
        json!((exact / theirs * 1000.0).round() / 1000.0),
    );
    out.insert(
        "worst_decode_vs_serde_json".into(),
        json!((worst_decode * 1000.0).round() / 1000.0),
    );
    out.insert(
        "worst_encode_vs_serde_json".into(),
        json!((worst_encode * 1000.0).round() / 1000.0),
    );
    results.insert("wire".into(), Value::Object(out));
}
