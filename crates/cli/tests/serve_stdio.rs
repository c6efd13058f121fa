//! `qmpkit serve -qmp stdio`: what a client is owed is written before the
//! process exits, whether standard input ends at once or stays open.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn qmpkit() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_BIN_EXE_qmpkit"))
}

const REQUESTS: &[u8] = b"{\"execute\":\"qmp_capabilities\"}\n{\"execute\":\"quit\"}\n";

/// The `event` names and `return`s of the output, in order.
fn shape(out: &str) -> Vec<String> {
    out.lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect(l);
            if v.get("QMP").is_some() {
                "greeting".to_string()
            } else if let Some(e) = v.get("event") {
                e.as_str().unwrap_or("?").to_string()
            } else if v.get("return").is_some() {
                "return".to_string()
            } else {
                l.to_string()
            }
        })
        .collect()
}

#[test]
fn shutdown_event_survives_stdin_ending_at_once() {
    // Standard input ends with the requests: the reply to quit and the
    // SHUTDOWN event it causes are still written, every time.
    for _ in 0..10 {
        let mut child = Command::new(qmpkit())
            .args(["serve", "-qmp", "stdio"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(REQUESTS).expect("write");
        drop(stdin);
        let out = child.wait_with_output().expect("wait");
        assert!(out.status.success(), "{out:?}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            shape(&text),
            ["greeting", "return", "return", "SHUTDOWN"],
            "{text}"
        );
    }
}

#[test]
fn quit_exits_while_stdin_stays_open() {
    let mut child = Command::new(qmpkit())
        .args(["serve", "-qmp", "stdio"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(REQUESTS).expect("write");
    let t = Instant::now();
    let mut out = String::new();
    child
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut out)
        .expect("read");
    let status = child.wait().expect("wait");
    // The process ended although its standard input is still open.
    assert!(t.elapsed() < Duration::from_secs(5));
    drop(stdin);
    assert!(status.success());
    assert_eq!(
        shape(&out),
        ["greeting", "return", "return", "SHUTDOWN"],
        "{out}"
    );
}

/// Runs `qmpkit serve -qmp stdio` over REQUESTS with `RUST_LOG` as given;
/// (stdout, stderr).
fn serve_logged(rust_log: Option<&str>) -> (String, String) {
    let mut cmd = Command::new(qmpkit());
    cmd.args(["serve", "-qmp", "stdio"])
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(v) = rust_log {
        cmd.env("RUST_LOG", v);
    }
    let mut child = cmd.spawn().expect("spawn");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(REQUESTS).expect("write");
    drop(stdin);
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success());
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn rust_log_logs_requests_and_replies_on_stderr() {
    let (out, err) = serve_logged(Some("qmpkit_server=debug"));
    // The protocol on stdout is untouched.
    assert_eq!(
        shape(&out),
        ["greeting", "return", "return", "SHUTDOWN"],
        "{out}"
    );
    let debug: Vec<&str> = err.lines().filter(|l| l.contains(" DEBUG ")).collect();
    let said = |what: &str| {
        debug
            .iter()
            .any(|l| l.contains(what) && l.contains("session="))
    };
    assert!(said(r#"request {"execute":"qmp_capabilities"}"#), "{err}");
    assert!(said(r#"request {"execute":"quit"}"#), "{err}");
    assert!(said(r#"reply {"return": {}}"#), "{err}");
    assert_eq!(debug.len(), 4, "{err}");
    // Without RUST_LOG (or below debug), nothing is logged.
    for v in [None, Some("qmpkit_server=info")] {
        let (out, err) = serve_logged(v);
        assert_eq!(shape(&out), ["greeting", "return", "return", "SHUTDOWN"]);
        assert!(
            !err.contains("DEBUG") && !err.contains("request"),
            "{v:?}: {err}"
        );
    }
}
