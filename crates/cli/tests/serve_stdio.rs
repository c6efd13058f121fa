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

/// A socket client (or standard input) that sends `quit` and at once ends its side of the
/// connection (shutdown(SHUT_WR)) still gets `quit`'s reply and the SHUTDOWN event before the
/// server closes. QEMU 10.0.2 (qemu-system-x86_64, tests/data/qemu-ref/transcripts) sends
/// SHUTDOWN first, then `{"return": {}}`: its dispatcher lets the main loop serve the request
/// before the reply goes out (QEMU 5.2 and later); the default 2.12 machine answers first.
#[test]
fn quit_then_half_close_gets_the_reply_and_the_shutdown_event() {
    let dir = std::env::temp_dir().join(format!("qmpkit-halfclose-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let qemu_10 = qmpkit_testkit::data::qemu_ref(
        "introspection/qemu-system-x86_64-10.0.2-query-qmp-schema.json",
    );
    let qemu_10 = qemu_10.to_str().expect("path");
    let orders: [(&[&str], [&str; 4], serde_json::Value); 2] = [
        (
            &[],
            ["greeting", "return", "return", "SHUTDOWN"],
            // The machine's own interface carries SHUTDOWN's later `reason` member.
            serde_json::json!({"guest": false, "reason": "host-qmp-quit"}),
        ),
        (
            &["--schema", qemu_10],
            ["greeting", "return", "SHUTDOWN", "return"],
            serde_json::json!({"guest": false, "reason": "host-qmp-quit"}),
        ),
    ];
    for (version, want, data) in orders {
        for transport in ["unix", "tcp", "stdio"] {
            for round in 0..3 {
                let sock = dir.join(format!("m{round}.sock"));
                let port = std::net::TcpListener::bind("127.0.0.1:0")
                    .and_then(|l| l.local_addr())
                    .expect("port")
                    .port();
                let spec = match transport {
                    "unix" => format!("unix:{},server=on,wait=off", sock.display()),
                    "tcp" => format!("tcp:127.0.0.1:{port},server=on,wait=off"),
                    _ => "stdio".to_string(),
                };
                let mut child = Command::new(qmpkit())
                    .args(["serve", "-qmp", &spec])
                    .args(version)
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("spawn");
                let text = if transport == "stdio" {
                    let mut stdin = child.stdin.take().expect("stdin");
                    stdin.write_all(REQUESTS).expect("write");
                    drop(stdin);
                    let mut out = String::new();
                    let mut o = child.stdout.take().expect("stdout");
                    o.read_to_string(&mut out).expect("read");
                    out
                } else {
                    half_closed_session(transport, &sock, port)
                };
                let status = child.wait().expect("wait");
                assert!(status.success(), "{transport} {version:?}");
                assert_eq!(shape(&text), want, "{transport} {version:?}: {text}");
                let v: serde_json::Value = serde_json::from_str(
                    text.lines()
                        .find(|l| l.contains("SHUTDOWN"))
                        .expect("event"),
                )
                .expect("json");
                assert_eq!(v["data"], data);
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Connect (waiting for the server), send REQUESTS, shut the write side, read to the end.
fn half_closed_session(transport: &str, sock: &std::path::Path, port: u16) -> String {
    fn exchange<S: Read + Write>(mut s: S, shut: impl FnOnce(&S) -> std::io::Result<()>) -> String {
        s.write_all(REQUESTS).expect("write");
        shut(&s).expect("shutdown(SHUT_WR)");
        let mut out = String::new();
        s.read_to_string(&mut out).expect("read to the end");
        out
    }
    let t = Instant::now();
    loop {
        let r = if transport == "unix" {
            std::os::unix::net::UnixStream::connect(sock).map(|s| {
                let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
                exchange(s, |s| s.shutdown(std::net::Shutdown::Write))
            })
        } else {
            std::net::TcpStream::connect(("127.0.0.1", port)).map(|s| {
                let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
                exchange(s, |s| s.shutdown(std::net::Shutdown::Write))
            })
        };
        match r {
            Ok(out) => return out,
            Err(_) if t.elapsed() < Duration::from_secs(10) => {
                std::thread::sleep(Duration::from_millis(10))
            }
            Err(e) => panic!("connect ({transport}): {e}"),
        }
    }
}
