//! Replay QEMU's recorded sessions (tests/data/qemu-ref/transcripts) against an in-process
//! server serving the same schema, and compare byte for byte.
//!
//! Same bytes are required for every protocol line: greeting (the version and package are set
//! to the transcript's), negotiation, envelope and JSON errors (same number of lines), argument
//! errors, ids, `query-version`, `query-commands` and `query-qmp-schema` (against the saved
//! answers where the reference has them). Machine-dependent replies are compared loosely:
//! where QEMU's reply came from a command's implementation (a return value, or an error of
//! the command's own semantics: no such node, duplicate node, migration state), ours, with no
//! implementation behind this server, must be the error saying that the command is not
//! implemented, with the same `id`; events (emitted by QEMU's command implementations) are
//! left out. `quit` is served by a
//! test handler that shuts the server down, so the closing of the connection is compared too.
//!
//! Configuration symbols: the reference's cfg-*.txt for each binary (for qemu-system-x86_64
//! 10.0.2, the symbols under which its schema gives exactly the recorded answer).

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use qmpkit_server::{Registry, ServerOptions};
use qmpkit_testkit::transcript::unrepr;

#[derive(Debug, Clone)]
enum Expect {
    /// An exact line (with CRLF), possibly repeated.
    Line(Vec<u8>, usize),
    /// A long line saved elsewhere: its length, file name and first bytes.
    Saved {
        len: usize,
        file: Option<String>,
        prefix: Vec<u8>,
    },
    /// A long line shown truncated: first and last bytes.
    Truncated {
        head: Vec<u8>,
        tail: Vec<u8>,
    },
    Nothing,
    Closed,
}

#[derive(Debug, Clone)]
struct Exchange {
    title: String,
    session: usize,
    send: Option<Vec<u8>>,
    expect: Vec<Expect>,
}

/// `[N bytes] b'head' ... b'tail'` on the sending side: the deep-nesting requests.
fn expand_truncated_send(len: usize, head: &[u8], tail: &[u8]) -> Vec<u8> {
    // The elided middle continues the run of brackets the head ends with, then the tail's.
    let open = *head.last().unwrap_or(&b'[');
    let close = *tail.first().unwrap_or(&b']');
    let opens_in_head = head.iter().rev().take_while(|&&b| b == open).count();
    let closes_in_tail = tail.iter().take_while(|&&b| b == close).count();
    let missing = len - head.len() - tail.len();
    let depth_total = (missing + opens_in_head + closes_in_tail) / 2;
    let mut v = head.to_vec();
    v.extend(std::iter::repeat_n(open, depth_total - opens_in_head));
    v.extend(std::iter::repeat_n(close, depth_total - closes_in_tail));
    v.extend_from_slice(tail);
    assert_eq!(v.len(), len);
    v
}

fn parse(text: &str) -> Vec<Exchange> {
    let mut out: Vec<Exchange> = Vec::new();
    let mut session = 1;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# ---- session ") {
            session = rest
                .split(':')
                .next()
                .and_then(|n| n.trim().parse().ok())
                .unwrap_or(session + 1);
            continue;
        }
        if let Some(t) = line.strip_prefix("### ") {
            out.push(Exchange {
                title: t.to_string(),
                session,
                send: None,
                expect: Vec::new(),
            });
            continue;
        }
        let Some(ex) = out.last_mut() else {
            continue;
        };
        if let Some(rest) = line.strip_prefix(">>> ") {
            if let Some(r) = rest.strip_prefix('[') {
                let (n, r) = r.split_once(" bytes] ").expect("sized send");
                let (head, r) = unrepr(r).expect("head");
                let r = r
                    .trim_start()
                    .strip_prefix("...")
                    .expect("...")
                    .trim_start();
                let (tail, _) = unrepr(r).expect("tail");
                ex.send = Some(expand_truncated_send(n.parse().expect("n"), &head, &tail));
            } else {
                ex.send = Some(unrepr(rest).expect("send repr").0);
            }
        } else if let Some(rest) = line.strip_prefix("<<< ") {
            if rest.starts_with("(no response") {
                ex.expect.push(Expect::Nothing);
            } else if rest.starts_with("b'<E") {
                ex.expect.push(Expect::Closed);
            } else if let Some(r) = rest.strip_prefix('[') {
                let (info, r) = r.split_once("] ").expect("info");
                let len: usize = info
                    .split(' ')
                    .next()
                    .and_then(|n| n.parse().ok())
                    .expect("len");
                if info.contains("saved to") {
                    let file = info
                        .split("saved to ")
                        .nth(1)
                        .and_then(|f| f.rsplit('/').next())
                        .map(str::to_string);
                    let (prefix, _) = unrepr(r).expect("prefix");
                    ex.expect.push(Expect::Saved { len, file, prefix });
                } else {
                    let (head, r) = unrepr(r).expect("head");
                    let r = r
                        .trim_start()
                        .strip_prefix("...")
                        .expect("...")
                        .trim_start();
                    let (tail, _) = unrepr(r).expect("tail");
                    ex.expect.push(Expect::Truncated { head, tail });
                }
            } else {
                let (bytes, rest) = unrepr(rest).expect("recv repr");
                let times = rest
                    .split("[x")
                    .nth(1)
                    .and_then(|r| r.split(' ').next())
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(1);
                ex.expect.push(Expect::Line(bytes, times));
            }
        }
    }
    out
}

/// Errors that come from what a command does, not from the protocol or its arguments.
fn semantic_error(line: &[u8]) -> bool {
    let s = String::from_utf8_lossy(line);
    [
        "\"desc\": \"Device '",
        "\"desc\": \"Failed to find node",
        "\"desc\": \"Duplicate nodes",
        "\"desc\": \"migrate-pause is currently",
    ]
    .iter()
    .any(|p| s.contains(p))
}

fn is_event(line: &[u8]) -> bool {
    line.starts_with(b"{\"timestamp\": ")
}

/// The server's answer for a command without a handler (read as text: ids nested deeper
/// than a JSON reader goes are replayed too).
fn not_implemented(line: &[u8]) -> bool {
    let s = String::from_utf8_lossy(line);
    s.contains("\"error\": {\"class\": \"GenericError\", \"desc\": \"Command '")
        && s.ends_with(" is not implemented by this server\"}}\r\n")
}

/// The id member of a reply, as printed.
fn id_of(line: &[u8]) -> Option<serde_json::Value> {
    let v: serde_json::Value = serde_json::from_slice(line).ok()?;
    v.get("id").cloned()
}

struct Case {
    name: &'static str,
    schema: &'static str,
    cfg: &'static [&'static str],
}

const CASES: &[Case] = &[
    Case {
        name: "qemu-storage-daemon-10.0.2",
        schema: "schema-10.0.2/storage-daemon/qapi/qapi-schema.json",
        cfg: &["cfg-qemu-storage-daemon-10.0.2.txt"],
    },
    Case {
        name: "qemu-storage-daemon-7.2.22",
        schema: "schema-7.2.22/storage-daemon/qapi/qapi-schema.json",
        cfg: &["cfg-qemu-storage-daemon-7.2.22.txt"],
    },
    Case {
        name: "qemu-system-x86_64-7.2.22",
        schema: "schema-7.2.22/qapi/qapi-schema.json",
        cfg: &["cfg-qemu-system-x86_64-7.2.22.txt"],
    },
    Case {
        name: "qemu-system-x86_64-10.0.2",
        schema: "schema-10.0.2/qapi/qapi-schema.json",
        cfg: &["cfg-qemu-system-x86_64-10.0.2.txt"],
    },
];

/// Version and package from the transcript's greeting.
fn version_of(greeting: &[u8]) -> ((u64, u64, u64), String) {
    let v: serde_json::Value = serde_json::from_slice(greeting).expect("greeting JSON");
    let ver = &v["QMP"]["version"];
    let n = |k: &str| ver["qemu"][k].as_u64().unwrap_or(0);
    (
        (n("major"), n("minor"), n("micro")),
        ver["package"].as_str().unwrap_or("").to_string(),
    )
}

fn replay(case: &Case) -> Vec<String> {
    let root = qmpkit_testkit::data::path("qemu-ref");
    let text = std::fs::read_to_string(root.join("transcripts").join(format!("{}.txt", case.name)))
        .expect("transcript");
    let exchanges = parse(&text);
    let greeting = match exchanges.first().and_then(|e| e.expect.first()) {
        Some(Expect::Line(l, _)) => l.clone(),
        _ => panic!("no greeting"),
    };
    let (version, package) = version_of(&greeting);
    let schema = Arc::new(common::load_schema(&root.join(case.schema)));
    let cfg_paths: Vec<PathBuf> = case
        .cfg
        .iter()
        .map(|c| root.join("introspection").join(c))
        .collect();
    let cfg_refs: Vec<&Path> = cfg_paths.iter().map(PathBuf::as_path).collect();
    let opts = ServerOptions {
        qemu_version: version,
        package,
        introspection: common::cfg(&cfg_refs),
        ..ServerOptions::default()
    };
    let mut registry = Registry::new();
    let quit_server: Arc<std::sync::OnceLock<qmpkit_server::Server>> = Arc::default();
    let qs = quit_server.clone();
    registry.register_sync("quit", move |_| {
        if let Some(s) = qs.get() {
            s.shutdown();
        }
        Ok(serde_json::json!({}))
    });
    let running = common::start(schema, registry, opts);
    let _ = quit_server.set(running.server.clone());

    let mut failures = Vec::new();
    let mut exact = 0usize;
    let mut loose = 0usize;
    let mut session = 0;
    let mut conn: Option<common::Raw> = None;
    for ex in &exchanges {
        if ex.session != session {
            session = ex.session;
            let mut c = common::Raw::connect(&running.socket);
            let g = c.line().expect("greeting");
            if g != greeting {
                failures.push(format!(
                    "{}: greeting {:?}",
                    case.name,
                    String::from_utf8_lossy(&g)
                ));
            }
            conn = Some(c);
        }
        let Some(c) = conn.as_mut() else { continue };
        let Some(send) = &ex.send else { continue };
        c.send(send);
        let mut fail =
            |what: String| failures.push(format!("{} / {}: {what}", case.name, ex.title));
        for exp in &ex.expect {
            match exp {
                Expect::Nothing => {
                    if let Some(l) = c.line_within(Duration::from_millis(150)) {
                        fail(format!(
                            "expected nothing, got {:?}",
                            String::from_utf8_lossy(&l)
                        ));
                    }
                }
                Expect::Closed => {
                    if !c.closed_within(Duration::from_secs(5)) {
                        fail("expected the server to close the connection".into());
                    }
                }
                Expect::Line(want, times) if is_event(want) => {
                    // Emitted by QEMU's command implementations; not this framework's.
                    let _ = times;
                }
                Expect::Line(want, times) => {
                    for _ in 0..*times {
                        let Some(got) = c.line() else {
                            fail(format!(
                                "no reply, expected {:?}",
                                String::from_utf8_lossy(want)
                            ));
                            break;
                        };
                        if got == *want {
                            exact += 1;
                            continue;
                        }
                        let unimplemented = not_implemented(&got)
                            && id_of(&got) == id_of(want)
                            && (want.starts_with(b"{\"return\": ") || semantic_error(want));
                        if unimplemented {
                            loose += 1;
                        } else {
                            fail(format!(
                                "\n   want {:?}\n    got {:?}",
                                String::from_utf8_lossy(want),
                                String::from_utf8_lossy(&got)
                            ));
                        }
                    }
                }
                Expect::Saved { len, file, prefix } => {
                    let Some(got) = c.line() else {
                        fail("no reply".into());
                        continue;
                    };
                    let saved = file
                        .as_ref()
                        .map(|f| root.join("introspection").join(f))
                        .filter(|p| p.exists());
                    match saved {
                        Some(p) => {
                            let mut want = std::fs::read(&p).expect("saved answer");
                            while want.last().is_some_and(|b| b.is_ascii_whitespace()) {
                                want.pop();
                            }
                            want.extend_from_slice(b"\r\n");
                            if got == want {
                                exact += 1;
                            } else {
                                let at =
                                    got.iter().zip(&want).position(|(a, b)| a != b).unwrap_or(0);
                                fail(format!(
                                    "differs from {} at byte {at} (got {} bytes, want {}): got {:?} want {:?}",
                                    p.display(),
                                    got.len(),
                                    want.len(),
                                    String::from_utf8_lossy(&got[at.saturating_sub(80)..(at + 80).min(got.len())]),
                                    String::from_utf8_lossy(&want[at.saturating_sub(80)..(at + 80).min(want.len())]),
                                ));
                            }
                        }
                        None => {
                            // Only the beginning is known.
                            if !got.starts_with(prefix) {
                                let at = got
                                    .iter()
                                    .zip(prefix)
                                    .position(|(a, b)| a != b)
                                    .unwrap_or(0);
                                fail(format!(
                                    "prefix differs at byte {at}: got {:?} want {:?} (got {} bytes, QEMU {len})",
                                    String::from_utf8_lossy(&got[at.saturating_sub(60)..(at + 60).min(got.len())]),
                                    String::from_utf8_lossy(&prefix[at.saturating_sub(60)..(at + 60).min(prefix.len())]),
                                    got.len()
                                ));
                            }
                        }
                    }
                }
                Expect::Truncated { head, tail } => {
                    let Some(got) = c.line() else {
                        fail("no reply".into());
                        continue;
                    };
                    // QEMU's long return of a command without a handler here: ours says it
                    // is not implemented.
                    let want_impl = head.starts_with(b"{\"return\": ");
                    if want_impl && not_implemented(&got) {
                        loose += 1;
                    } else if !(got.ends_with(tail) && got.starts_with(head)) {
                        fail(format!(
                            "long line: got {:?}…",
                            String::from_utf8_lossy(&got[..got.len().min(200)])
                        ));
                    }
                }
            }
        }
    }
    eprintln!(
        "{}: {} exchanges, {exact} lines byte-identical, {loose} replies of commands not implemented here compared by id",
        case.name,
        exchanges.len()
    );
    assert!(
        exchanges.len() > 90 && exact > 1050,
        "the transcript was not replayed"
    );
    failures
}

fn run_case(i: usize) {
    let failures = replay(&CASES[i]);
    for f in &failures {
        eprintln!("{f}");
    }
    assert!(failures.is_empty(), "{} exchanges differ", failures.len());
}

#[test]
fn qsd_10_0_2() {
    run_case(0);
}

#[test]
fn qsd_7_2_22() {
    run_case(1);
}

#[test]
fn system_7_2_22() {
    run_case(2);
}

#[test]
fn system_10_0_2() {
    run_case(3);
}

#[test]
fn python_repr_parsing() {
    assert_eq!(unrepr(r"b'a\r\n'").map(|x| x.0), Some(b"a\r\n".to_vec()));
    assert_eq!(
        unrepr(r#"b"{'x'}\n""#).map(|x| x.0),
        Some(b"{'x'}\n".to_vec())
    );
    assert_eq!(
        unrepr(r"b'\xff\\q'").map(|x| x.0),
        Some(b"\xff\\q".to_vec())
    );
    let v = expand_truncated_send(12, b"{\"a\": [[", b"]]}\n");
    assert_eq!(v, b"{\"a\": [[]]}\n");
}
