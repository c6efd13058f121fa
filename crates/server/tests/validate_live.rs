//! Optional cross-check against a live qemu-storage-daemon: every request
//! of `validate/qsd-cases.txt` is sent to it and its answer compared with
//! ours. Prints `skipped:` when the program (or the schema) is missing.

#[path = "validate/common.rs"]
mod common;
#[path = "validate/gen.rs"]
mod gen;

use common::*;
use qmpkit_schema::model::EntityKind;
use qmpkit_schema::Dialect;
use qmpkit_server::validate::{validate_args_cfg, ValidateOptions};
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn read_answer(r: &mut BufReader<UnixStream>) -> Option<Value> {
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let v: Value = serde_json::from_str(&line).ok()?;
        if v.get("event").is_none() {
            return Some(v);
        }
    }
}

/// A negotiated monitor connection to a fresh qemu-storage-daemon 10.0,
/// or `None` (after printing `skipped:`).
fn start_daemon(dir: &std::path::Path) -> Option<(Daemon, UnixStream, BufReader<UnixStream>)> {
    let _ = std::fs::create_dir_all(dir);
    let sock = dir.join("qsd.sock");
    let child = Command::new("qemu-storage-daemon")
        .arg("--chardev")
        .arg(format!(
            "socket,id=m,path={},server=on,wait=off",
            sock.display()
        ))
        .args(["--monitor", "chardev=m"])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let Ok(child) = child else {
        qmpkit_testkit::skip::skip("qemu-storage-daemon not found");
        return None;
    };
    let daemon = Daemon(child);
    let start = Instant::now();
    let stream = loop {
        if let Ok(s) = UnixStream::connect(&sock) {
            break s;
        }
        if start.elapsed() > Duration::from_secs(10) {
            qmpkit_testkit::skip::skip("qemu-storage-daemon did not open its monitor");
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut w = stream.try_clone().ok()?;
    let mut r = BufReader::new(stream);
    let greeting = read_answer(&mut r)?;
    let version = &greeting["QMP"]["version"]["qemu"];
    if (version["major"].as_u64(), version["minor"].as_u64()) != (Some(10), Some(0)) {
        qmpkit_testkit::skip::skip(&format!("qemu-storage-daemon is not 10.0 ({version})"));
        return None;
    }
    w.write_all(b"{\"execute\": \"qmp_capabilities\"}\n").ok()?;
    read_answer(&mut r)?;
    Some((daemon, w, r))
}

/// Compare our verdict on `req` with the daemon's `answer`.
fn compare(
    schema: &qmpkit_schema::Schema,
    enabled: &std::collections::HashSet<String>,
    req: &Value,
    answer: &Value,
) -> Option<String> {
    let id = req["execute"].as_str().and_then(|c| schema.lookup(c))?;
    if !matches!(schema.entity(id).kind, EntityKind::Command(_)) {
        return None;
    }
    let ours = validate_args_cfg(
        schema,
        id,
        req.get("arguments"),
        &ValidateOptions::default(),
        Some(enabled),
    );
    let desc = answer["error"]["desc"].as_str().unwrap_or("");
    let theirs_is_arg_error = is_argument_error(desc);
    let same = match &ours {
        Err(e) => theirs_is_arg_error && e.desc == desc,
        Ok(_) => !theirs_is_arg_error,
    };
    if same {
        Some(String::new())
    } else {
        Some(format!(
            "{req}\n  qemu: {answer}\n  ours: {:?}",
            ours.map(|_| ()).map_err(|e| e.desc)
        ))
    }
}

#[test]
fn against_live_storage_daemon() {
    let schema = load_data(
        "qemu-ref/schema-10.0.2/storage-daemon/qapi/qapi-schema.json",
        Dialect::Modern,
    );
    let dir = std::env::temp_dir().join(format!("qmpkit-validate-live-{}", std::process::id()));
    let Some((_daemon, mut w, mut r)) = start_daemon(&dir) else {
        return;
    };
    let enabled = cfg("qemu-ref/introspection/cfg-qemu-storage-daemon-10.0.2.txt");
    let cases = std::fs::read_to_string(golden_dir().join("qsd-cases.txt")).expect("cases");
    let mut failures = Vec::new();
    let mut n = 0;
    for line in cases.lines().filter(|l| l.starts_with('{')) {
        w.write_all(line.as_bytes())
            .and_then(|()| w.write_all(b"\n"))
            .expect("write");
        let answer = read_answer(&mut r).expect("answer");
        let req: Value = serde_json::from_str(line).expect("case");
        match compare(&schema, &enabled, &req, &answer) {
            None => {}
            Some(f) if f.is_empty() => n += 1,
            Some(f) => {
                n += 1;
                failures.push(f);
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    eprintln!("{n} requests agree with the live daemon");
}

/// Commands left out of random requests: they would stop the daemon,
/// reach out to the network or mount file systems. (`blockdev-reopen`
/// with `"options": []` brings qemu-storage-daemon 10.0.2 down.)
const UNSAFE: &[&str] = &[
    "quit",
    "blockdev-reopen",
    "nbd-server-start",
    "chardev-add",
    "chardev-change",
    "block-export-add",
    "blockdev-create",
    "x-blockdev-amend",
];

/// Random requests (valid ones, damaged ones, noise) for the daemon's
/// commands: `QMPKIT_LIVE_RANDOM` of them (default 2000), from seed
/// `QMPKIT_LIVE_SEED` (fixed by default).
#[test]
fn against_live_storage_daemon_random() {
    let schema = load_data(
        "qemu-ref/schema-10.0.2/storage-daemon/qapi/qapi-schema.json",
        Dialect::Modern,
    );
    let dir = std::env::temp_dir().join(format!("qmpkit-validate-rand-{}", std::process::id()));
    let Some((mut daemon, mut w, mut r)) = start_daemon(&dir) else {
        return;
    };
    let enabled = cfg("qemu-ref/introspection/cfg-qemu-storage-daemon-10.0.2.txt");
    let count: u64 = std::env::var("QMPKIT_LIVE_RANDOM")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let cmds: Vec<usize> = schema
        .iter()
        .filter(|(_, e)| {
            matches!(e.kind, EntityKind::Command(_)) && !UNSAFE.contains(&e.name.as_str())
        })
        .map(|(i, _)| i)
        .collect();
    let seed: u64 = std::env::var("QMPKIT_LIVE_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x9e37_79b9_7f4a_7c15);
    let mut rng = gen::Rng(seed.max(1));
    let mut failures = Vec::new();
    for _ in 0..count {
        let id = cmds[rng.below(cmds.len() as u64) as usize];
        let EntityKind::Command(c) = &schema.entity(id).kind else {
            continue;
        };
        let mut args = serde_json::Map::new();
        if let Some(t) = c.arg_type {
            gen::fill(&schema, t, &mut args, &mut rng, 0);
        }
        let mut args = Value::Object(args);
        gen::damage(&mut args, &mut rng);
        let req = serde_json::json!({"execute": schema.entity(id).name, "arguments": args});
        // serde_json keeps `1.0` a float on the wire (QEMU's own
        // formatter would write `1`).
        let line = req.to_string();
        let sent = w
            .write_all(line.as_bytes())
            .and_then(|()| w.write_all(b"\n"));
        let Some(answer) = sent.ok().and_then(|()| read_answer(&mut r)) else {
            // The daemon died on arguments it accepted: ours must accept
            // them too. Start a new one.
            eprintln!("qemu-storage-daemon died on {line}");
            let crashed =
                serde_json::json!({"error": {"class": "GenericError", "desc": "crashed"}});
            if let Some(f) = compare(&schema, &enabled, &req, &crashed) {
                if !f.is_empty() {
                    failures.push(f);
                }
            }
            drop(daemon);
            let _ = std::fs::remove_dir_all(&dir);
            let Some(again) = start_daemon(&dir) else {
                break;
            };
            (daemon, w, r) = again;
            continue;
        };
        if let Some(f) = compare(&schema, &enabled, &req, &answer) {
            if !f.is_empty() {
                failures.push(f);
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        failures.is_empty(),
        "{} disagreements:\n{}",
        failures.len(),
        failures.join("\n")
    );
    eprintln!("{count} random requests agree with the live daemon");
}

/// Which of many leftover members QEMU names depends on its hash tables:
/// random key sets (sizes 2 to 150, some consumed by real members, some
/// non-ASCII) sent to the daemon, its choice compared with ours.
#[test]
fn leftover_order_live() {
    let schema = load_data(
        "qemu-ref/schema-10.0.2/storage-daemon/qapi/qapi-schema.json",
        Dialect::Modern,
    );
    let dir = std::env::temp_dir().join(format!("qmpkit-validate-keys-{}", std::process::id()));
    let Some((_daemon, mut w, mut r)) = start_daemon(&dir) else {
        return;
    };
    let enabled = cfg("qemu-ref/introspection/cfg-qemu-storage-daemon-10.0.2.txt");
    let mut rng = gen::Rng(0x2545_f491_4f6c_dd1d);
    let alphabet: Vec<char> = "abcdefghijklmnopqrstuvwxyz-_0123456789éü€"
        .chars()
        .collect();
    let mut failures = Vec::new();
    for round in 0..600u64 {
        let n = 2 + rng.below(if round % 10 == 0 { 150 } else { 24 }) as usize;
        let mut args = serde_json::Map::new();
        // Half the rounds use a command whose real members are consumed
        // (and removed from QEMU's table) before the leftover check.
        let mut n = n;
        let cmd = if round % 3 == 2 {
            // Many consumed members and few leftovers: the table shrinks
            // (or not) as the visit takes members out of it.
            let members = [
                ("discard", Value::from("ignore")),
                ("read-only", Value::from(false)),
                ("auto-read-only", Value::from(false)),
                ("force-share", Value::from(false)),
                ("detect-zeroes", Value::from("off")),
                ("size", Value::from(0)),
                ("latency-ns", Value::from(0)),
                ("read-zeroes", Value::from(true)),
            ];
            args.insert("driver".into(), Value::from("null-co"));
            args.insert("node-name".into(), Value::from(format!("n{round}")));
            for (k, v) in members {
                if rng.below(4) != 0 {
                    args.insert(k.into(), v);
                }
            }
            n = args.len() + 1 + rng.below(3) as usize;
            "blockdev-add"
        } else if round % 2 == 0 {
            args.insert("driver".into(), Value::from("null-co"));
            args.insert("node-name".into(), Value::from(format!("n{round}")));
            args.insert("size".into(), Value::from(0));
            args.insert("read-zeroes".into(), Value::from(true));
            "blockdev-add"
        } else {
            "query-version"
        };
        let target = if cmd == "blockdev-add" && args.len() > 4 {
            n
        } else {
            n + 4
        };
        while args.len() < target {
            let len = 1 + rng.below(12) as usize;
            let key: String = (0..len)
                .map(|_| alphabet[rng.below(alphabet.len() as u64) as usize])
                .collect();
            args.insert(key, Value::from(1));
        }
        // Shuffle the request order of the members.
        let mut entries: Vec<(String, Value)> = args.into_iter().collect();
        for i in (1..entries.len()).rev() {
            let j = rng.below(i as u64 + 1) as usize;
            entries.swap(i, j);
        }
        let args: serde_json::Map<String, Value> = entries.into_iter().collect();
        let req = serde_json::json!({"execute": cmd, "arguments": args});
        let line = req.to_string();
        w.write_all(line.as_bytes())
            .and_then(|()| w.write_all(b"\n"))
            .expect("write");
        let answer = read_answer(&mut r).expect("answer");
        if let Some(f) = compare(&schema, &enabled, &req, &answer) {
            if !f.is_empty() {
                failures.push(f);
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        failures.is_empty(),
        "{} disagreements:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
