//! `qmpkit replay`: a session recorded by `qmpkit proxy` in front of qemu-storage-daemon
//! replays byte for byte to the same client script; differences are refused and reported;
//! libvirt's `.replies` format; arguments checked against a schema.

#[path = "tools_support/mod.rs"]
mod support;

use serde_json::Value;
use std::path::Path;
use std::process::{Command, Stdio};
use support::*;

/// A client script: everything it received, byte for byte.
fn script(sock: &Path) -> String {
    let mut c = Line::connect(sock);
    let mut got = c.greeting.clone();
    let exchange = |c: &mut Line, line: &str, got: &mut String| {
        c.send(line);
        loop {
            let l = c
                .next()
                .unwrap_or_else(|| panic!("no reply to {line}; so far: {got}"));
            got.push_str(&l);
            if !l.starts_with("{\"timestamp\"") {
                return l;
            }
        }
    };
    exchange(
        &mut c,
        r#"{"execute": "qmp_capabilities", "arguments": {"enable": ["oob"]}}"#,
        &mut got,
    );
    exchange(
        &mut c,
        r#"{"execute": "query-qmp-schema", "id": "schema"}"#,
        &mut got,
    );
    for node in ["src", "dst"] {
        exchange(
            &mut c,
            &format!(
                r#"{{"execute": "blockdev-add", "arguments": {{"driver": "null-co", "node-name": "{node}", "size": 1048576}}, "id": "{node}"}}"#
            ),
            &mut got,
        );
    }
    exchange(
        &mut c,
        r#"{"execute": "blockdev-backup", "arguments": {"job-id": "j0", "device": "src", "target": "dst", "sync": "full"}, "id": {"job": [0]}}"#,
        &mut got,
    );
    // The job's events up to its end.
    while !got.contains("\"status\": \"null\"") {
        got.push_str(&c.next().expect("event"));
    }
    exchange(
        &mut c,
        r#"{"execute": "blockdev-del", "arguments": {"node-name": "nope"}}"#,
        &mut got,
    );
    exchange(
        &mut c,
        r#"{"execute": "query-block-jobs", "id": 3}"#,
        &mut got,
    );
    got
}

fn spawn_replay(args: &[&str]) -> std::process::Child {
    Command::new(qmpkit())
        .arg("replay")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn qmpkit replay")
}

fn finish(child: std::process::Child) -> (i32, String) {
    let out = child.wait_with_output().expect("wait");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_recorded_session_replays_byte_for_byte() {
    let program = qmpkit_testkit::program_or_skip!("qemu-storage-daemon");
    let dir = TempDir::new("replay");
    let qsock = dir.join("qsd.sock");
    let psock = dir.join("proxy.sock");
    let rec = dir.join("rec.jsonl");
    let _qemu = qsd(&program, &qsock);
    let live = {
        let _p = Proc(
            Command::new(qmpkit())
                .args(["proxy", "--upstream"])
                .arg(&qsock)
                .arg("--listen")
                .arg(&psock)
                .arg("--record")
                .arg(&rec)
                .stderr(Stdio::null())
                .spawn()
                .expect("proxy"),
        );
        wait_for(&psock);
        let live = script(&psock);
        // The hang-up is recorded too.
        let t = std::time::Instant::now();
        while !std::fs::read_to_string(&rec)
            .unwrap_or_default()
            .contains("\"eof\"")
        {
            assert!(t.elapsed().as_secs() < 10, "no eof record");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        live
    };
    assert!(
        live.contains("Failed to find node with node-name='nope'"),
        "{live}"
    );
    assert!(live.contains("\"status\": \"concluded\""), "{live}");

    let rsock = dir.join("replay.sock");
    let child = spawn_replay(&[
        rec.to_str().expect("path"),
        "--listen",
        &format!("unix:{}", rsock.display()),
    ]);
    wait_for(&rsock);
    let replayed = script(&rsock);
    let (code, err) = finish(child);
    assert_eq!(replayed, live, "the replay differs from the live session");
    assert_eq!((code, err.lines().count()), (0, 1), "{err}");

    // A client that strays gets an error in QEMU's shape, and the replay fails.
    let rsock = dir.join("replay2.sock");
    let child = spawn_replay(&[
        rec.to_str().expect("path"),
        "--listen",
        &format!("unix:{}", rsock.display()),
    ]);
    wait_for(&rsock);
    let mut c = Line::connect(&rsock);
    c.send(r#"{"execute": "qmp_capabilities", "arguments": {"enable": ["oob"]}}"#);
    assert_eq!(c.next().as_deref(), Some("{\"return\": {}}\r\n"));
    c.send(r#"{"execute": "query-jobs", "id": 1}"#);
    let v: Value = serde_json::from_str(&c.next().expect("reply")).expect("JSON");
    assert_eq!(v["id"], 1);
    assert_eq!(v["error"]["class"], "GenericError");
    let desc = v["error"]["desc"].as_str().expect("desc");
    assert!(
        desc.starts_with(
            "replay: expected {\"execute\":\"query-qmp-schema\"}, got {\"execute\":\"query-jobs\"}"
        ),
        "{desc}"
    );
    drop(c);
    let (code, err) = finish(child);
    assert_eq!(code, 1);
    assert!(err.contains("replay: expected"), "{err}");
    assert!(err.contains("recorded command(s) not sent"), "{err}");
}

const REPLIES: &str = r#"{
  "execute": "qmp_capabilities",
  "id": "libvirt-1"
}

{
  "return": {
  },
  "id": "libvirt-1"
}

{
  "execute": "query-version",
  "id": "libvirt-2"
}

{
  "return": {
    "qemu": {
      "micro": 2,
      "minor": 0,
      "major": 10
    },
    "package": "v10.0.2"
  },
  "id": "libvirt-2"
}

{
  "execute": "blockdev-add",
  "arguments": {
    "driver": "null-co",
    "node-name": "n0",
    "colour": "red"
  },
  "id": "libvirt-3"
}

{
  "return": {
  },
  "id": "libvirt-3"
}

"#;

#[test]
fn libvirt_replies_and_schema_checks() {
    let dir = TempDir::new("replay-replies");
    let file = dir.join("caps.replies");
    std::fs::write(&file, REPLIES).expect("write");
    let sock = dir.join("r.sock");
    let schema = qmpkit_testkit::data::qemu_ref(
        "introspection/qemu-storage-daemon-10.0.2-query-qmp-schema.json",
    );
    let child = spawn_replay(&[
        file.to_str().expect("path"),
        "--listen",
        sock.to_str().expect("path"),
        "--schema",
        schema.to_str().expect("path"),
    ]);
    wait_for(&sock);
    let s = sock.to_str().expect("path");
    // The greeting is made up from the recorded query-version answer.
    let o = run(
        &["qmp", s],
        "query-version\nblockdev-add driver=null-co node-name=n0 colour=red\n",
    );
    assert_eq!(o.code, 0, "{o:?}");
    let lines = json_lines(&o.stdout);
    assert_eq!(lines[0]["package"], "v10.0.2");
    assert_eq!(lines[1], serde_json::json!({}));
    let (code, err) = finish(child);
    // The recording says it worked; QEMU 10.0's schema says otherwise.
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(
            "blockdev-add: the schema refuses its arguments: Parameter 'colour' is unexpected"
        ),
        "{err}"
    );

    // Without the bad command the same client passes.
    let good = REPLIES
        .split("{\n  \"execute\": \"blockdev-add\"")
        .next()
        .expect("head");
    std::fs::write(&file, good).expect("write");
    let sock = dir.join("r2.sock");
    let s = sock.to_str().expect("path");
    let child = spawn_replay(&[file.to_str().expect("path"), "--listen", s]);
    wait_for(&sock);
    let o = run(&["qmp", s, "query-version"], "");
    assert_eq!(o.code, 0, "{o:?}");
    let (code, err) = finish(child);
    assert_eq!(code, 0, "{err}");

    let o = run(&["replay", "/nonexistent.jsonl", "--listen", s], "");
    assert_eq!(o.code, 2);
    assert!(
        o.stderr.starts_with("qmpkit replay: /nonexistent.jsonl: "),
        "{o:?}"
    );
}

/// A recording with the gaps QEMU took: the reply 0.2 s after its command, then two events
/// 0.3 s apart.
const TIMED: &str = r#"{"t": 100.0, "client": 1, "dir": "out", "msg": {"QMP": {"version": {"qemu": {"micro": 2, "minor": 0, "major": 10}, "package": ""}, "capabilities": []}}}
{"t": 100.5, "client": 1, "dir": "in", "msg": {"execute": "qmp_capabilities"}}
{"t": 100.5, "client": 1, "dir": "out", "msg": {"return": {}}}
{"t": 101.0, "client": 1, "dir": "in", "msg": {"execute": "job-dismiss", "arguments": {"id": "j"}, "id": 1}}
{"t": 101.2, "client": 1, "dir": "out", "msg": {"return": {}, "id": 1}}
{"t": 101.5, "client": null, "dir": "out", "msg": {"event": "A", "data": {}, "timestamp": {"seconds": 101, "microseconds": 500000}}}
{"t": 101.8, "client": null, "dir": "out", "msg": {"event": "B", "data": {}, "timestamp": {"seconds": 101, "microseconds": 800000}}}
"#;

/// When each line after the command arrived, measured from the command.
fn timed_run(dir: &TempDir, scale: &str) -> Vec<(String, std::time::Duration)> {
    let rec = dir.join(&format!("timed-{scale}.jsonl"));
    std::fs::write(&rec, TIMED).expect("write");
    let sock = dir.join(&format!("timed-{scale}.sock"));
    let child = spawn_replay(&[
        rec.to_str().expect("utf-8"),
        "--listen",
        &format!("unix:{}", sock.display()),
        "--timing",
        scale,
    ]);
    let mut c = Line::connect(&sock);
    c.send(r#"{"execute": "qmp_capabilities"}"#);
    assert_eq!(c.next().as_deref(), Some("{\"return\": {}}\r\n"));
    let t = std::time::Instant::now();
    c.send(r#"{"execute": "job-dismiss", "arguments": {"id": "j"}, "id": "x"}"#);
    let got = (0..3)
        .map(|_| (c.next().expect("a line"), t.elapsed()))
        .collect();
    drop(c);
    let (code, err) = finish(child);
    assert_eq!(code, 0, "{err}");
    got
}

#[test]
fn timing_keeps_the_recorded_gaps() {
    use std::time::Duration;
    let dir = TempDir::new("replay-timing");
    let got = timed_run(&dir, "1");
    let lines: Vec<&str> = got.iter().map(|(l, _)| l.as_str()).collect();
    assert_eq!(lines[0], "{\"return\": {}, \"id\": \"x\"}\r\n");
    assert!(lines[1].contains("\"event\": \"A\"") && lines[2].contains("\"event\": \"B\""));
    // Lower bounds only, each counted from the command: a loaded machine may add to a gap,
    // never take from it. (The difference between two arrivals is no bound: a line read late
    // shortens the gap seen after it.)
    let from_command = |got: &[(String, Duration)], ms: [u64; 3]| {
        for (i, (line, at)) in got.iter().enumerate() {
            assert!(*at >= Duration::from_millis(ms[i]), "{line}: {got:?}");
        }
    };
    from_command(&got, [200, 500, 800]);
    // Scaled: half the gaps.
    let half = timed_run(&dir, "0.5");
    from_command(&half, [100, 250, 400]);
    // A libvirt .replies file has no times to keep.
    let replies = dir.join("x.replies");
    std::fs::write(
        &replies,
        "{\"execute\": \"qmp_capabilities\"}\n\n{\"return\": {}}\n",
    )
    .unwrap();
    let out = run(
        &[
            "replay",
            replies.to_str().unwrap(),
            "--listen",
            "unix:/nonexistent/x",
            "--timing",
        ],
        "",
    );
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("--timing needs a recording with times"),
        "{}",
        out.stderr
    );
}
