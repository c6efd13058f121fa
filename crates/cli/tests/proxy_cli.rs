//! `qmpkit proxy` in front of a live qemu-storage-daemon: qmp-shell and a second client at
//! once, a read-only listener, QEMU going away and coming back, the recording.

#[path = "tools_support/mod.rs"]
mod support;

use serde_json::{json, Value};
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;
use support::*;

fn proxy(upstream: &Path, listen: &[String], record: &Path) -> Proc {
    let mut c = Command::new(qmpkit());
    c.args(["proxy", "--upstream"]).arg(upstream);
    for l in listen {
        c.args(["--listen", l]);
    }
    c.arg("--record").arg(record);
    let child = c
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn qmpkit proxy");
    Proc(child)
}

fn negotiate(c: &mut Line) {
    c.send(r#"{"execute": "qmp_capabilities", "arguments": {"enable": ["oob"]}}"#);
    assert_eq!(c.next().as_deref(), Some("{\"return\": {}}\r\n"));
}

fn negotiate_plain(c: &mut Line) {
    c.send(r#"{"execute": "qmp_capabilities"}"#);
    assert_eq!(c.next().as_deref(), Some("{\"return\": {}}\r\n"));
}

#[test]
fn qmp_shell_and_a_second_client_share_one_qemu() {
    let program = qmpkit_testkit::program_or_skip!("qemu-storage-daemon");
    let py = qmpkit_testkit::python_or_skip!();
    let dir = TempDir::new("proxy");
    let qsock = dir.join("qsd.sock");
    let rw = dir.join("rw.sock");
    let ro = dir.join("ro.sock");
    let rec = dir.join("rec.jsonl");
    let mut qemu = qsd(&program, &qsock);
    let _p = proxy(
        &qsock,
        &[
            format!("unix:{}", rw.display()),
            format!("unix:{},readonly=on", ro.display()),
        ],
        &rec,
    );
    wait_for(&rw);
    wait_for(&ro);

    // The second client: QEMU's greeting, as QEMU sent it.
    let mut b = Line::connect(&rw);
    let g: Value = serde_json::from_str(&b.greeting).expect("greeting");
    assert_eq!(g["QMP"]["version"]["qemu"]["major"], 10);
    assert_eq!(g["QMP"]["capabilities"], json!(["oob"]));
    assert!(b.greeting.ends_with("}\r\n") && b.greeting.contains("\"QMP\": {"));
    // Before negotiating, the proxy answers as QEMU does.
    b.send(r#"{"execute": "query-jobs", "id": 7}"#);
    assert_eq!(
        b.next().as_deref(),
        Some("{\"id\": 7, \"error\": {\"class\": \"CommandNotFound\", \"desc\": \"Expecting capabilities negotiation with 'qmp_capabilities'\"}}\r\n")
    );
    negotiate(&mut b);

    // qmp-shell on the same listener, at the same time.
    let mut shell = Command::new(qmpkit_testkit::python::qmp_shell(&py))
        .arg(&rw)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("qmp-shell");
    let mut sin = shell.stdin.take().expect("stdin");
    sin.write_all(
        b"blockdev-add driver=null-co node-name=src size=1048576\n\
          blockdev-add driver=null-co node-name=dst size=1048576\n\
          blockdev-backup job-id=j0 device=src target=dst sync=full\n",
    )
    .expect("write");

    // Meanwhile the second client's own commands, ids of every kind (1 is qemu.qmp's too).
    let mut events = Vec::new();
    b.send(r#"{"execute": "query-block-exports", "id": 1}"#);
    assert_eq!(b.reply(&mut events), json!({"return": [], "id": 1}));
    b.send(r#"{"execute": "query-block-exports", "id": {"x": [1, "two"]}}"#);
    let line = loop {
        let l = b.next().expect("reply");
        if !l.contains("\"event\"") {
            break l;
        }
        events.push(serde_json::from_str(&l).expect("event"));
    };
    assert_eq!(line, "{\"return\": [], \"id\": {\"x\": [1, \"two\"]}}\r\n");
    b.send(r#"{"execute": "blockdev-del", "arguments": {"node-name": "nope"}}"#);
    assert_eq!(
        b.reply(&mut events),
        json!({"error": {"class": "GenericError", "desc": "Failed to find node with node-name='nope'"}})
    );
    // Every event of qmp-shell's job reaches the second client too.
    while !events
        .iter()
        .any(|e| e["event"] == "JOB_STATUS_CHANGE" && e["data"]["status"] == "concluded")
    {
        let v = b.value();
        assert!(v.get("event").is_some(), "only events now: {v}");
        events.push(v);
    }
    let statuses: Vec<&str> = events
        .iter()
        .filter(|e| e["event"] == "JOB_STATUS_CHANGE")
        .filter_map(|e| e["data"]["status"].as_str())
        .collect();
    assert_eq!(statuses.first(), Some(&"created"));
    assert!(events.iter().any(|e| e["event"] == "BLOCK_JOB_COMPLETED"));

    // qmp-shell shows its events when given an empty line.
    sin.write_all(b"\nquery-jobs\n").expect("write");
    drop(sin);
    let mut out = String::new();
    shell
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut out)
        .expect("read");
    assert!(shell.wait().expect("wait").success());
    let replies: Vec<&str> = out.matches("{\"return\": {}}").collect();
    assert_eq!(replies.len(), 3, "{out}");
    assert!(out.contains("'status': 'concluded', 'id': 'j0'"), "{out}");
    assert!(out.contains("{\"return\": []}"), "{out}");
    assert!(
        !out.contains("\"nope\"") && !out.contains("\"two\""),
        "{out}"
    );

    // The read-only listener refuses what changes anything, in QEMU's error shape.
    let mut c = Line::connect(&ro);
    negotiate(&mut c);
    c.send(r#"{"execute": "quit", "id": "q"}"#);
    assert_eq!(
        c.next().as_deref(),
        Some("{\"id\": \"q\", \"error\": {\"class\": \"GenericError\", \"desc\": \"The command quit is not allowed on this read-only QMP proxy listener\"}}\r\n")
    );
    c.send(r#"{"execute": "query-named-block-nodes", "arguments": {"flat": true}}"#);
    let v = c.value();
    assert_eq!(v["return"].as_array().map(Vec::len), Some(2), "{v}");

    // QEMU goes away: clients hear it, commands fail cleanly; it comes back.
    let _ = qemu.0.kill();
    let _ = qemu.0.wait();
    let _ = std::fs::remove_file(&qsock);
    let until_lost = |l: &mut Line| loop {
        let v = l.value();
        assert!(v.get("event").is_some(), "{v}");
        if v["event"] == "__org.qmpkit_PROXY_UPSTREAM_LOST" {
            break v;
        }
    };
    let lost = until_lost(&mut b);
    assert!(lost["data"]["reason"].as_str().is_some(), "{lost}");
    until_lost(&mut c);
    b.send(r#"{"execute": "query-jobs", "id": "while-down"}"#);
    assert_eq!(
        b.value(),
        json!({"id": "while-down", "error": {"class": "GenericError",
            "desc": "QEMU is not connected to the QMP proxy (it is reconnecting)"}})
    );
    let _qemu2 = qsd(&program, &qsock);
    let back = b.value();
    assert_eq!(back["event"], "__org.qmpkit_PROXY_UPSTREAM_BACK", "{back}");
    assert_eq!(
        back["data"]["greeting"]["QMP"]["version"]["qemu"]["major"],
        10
    );
    b.send(r#"{"execute": "query-named-block-nodes", "id": 2}"#);
    assert_eq!(b.value(), json!({"return": [], "id": 2}));

    // The recording: every exchange, with time, client and direction.
    let text = std::fs::read_to_string(&rec).expect("recording");
    let recs = json_lines(&text);
    assert!(recs.iter().all(|r| r["t"].as_f64().unwrap_or(0.0) > 1.0e9));
    let shell_backup = recs
        .iter()
        .find(|r| r["dir"] == "in" && r["msg"]["execute"] == "blockdev-backup")
        .expect("qmp-shell's blockdev-backup recorded");
    let shell_client = shell_backup["client"].as_u64().expect("client");
    let b_refused = recs
        .iter()
        .find(|r| {
            r["dir"] == "out"
                && r["msg"]["error"]["desc"]
                    .as_str()
                    .is_some_and(|d| d.contains("read-only"))
        })
        .expect("refusal recorded");
    assert_ne!(b_refused["client"], shell_backup["client"]);
    assert!(recs
        .iter()
        .any(|r| r["client"].is_null() && r["msg"]["data"]["status"] == "concluded"));
    assert!(recs
        .iter()
        .any(|r| r["client"] == shell_client && r["dir"] == "out" && r["msg"]["QMP"].is_object()));
}

#[test]
fn bad_options_exit_2() {
    let o = run(
        &[
            "proxy",
            "--upstream",
            "/nonexistent/q.sock",
            "--listen",
            "unix:/tmp/x.sock,colour=red",
        ],
        "",
    );
    assert_eq!(o.code, 2);
    assert!(o.stderr.contains("unknown listener option"), "{o:?}");
    let dir = TempDir::new("proxy-bad");
    let l = format!("unix:{}", dir.join("p.sock").display());
    let o = run(
        &["proxy", "--upstream", "/nonexistent/q.sock", "--listen", &l],
        "",
    );
    assert_eq!(o.code, 2);
    assert!(o.stderr.contains("/nonexistent/q.sock"), "{o:?}");
    let _ = Duration::from_secs(0);
}

/// A stand-in for QEMU on `path`: greets (offering oob), answers every command `{}` with its
/// id, and hangs up without answering a command named `hang-up`. Serves connection after
/// connection, so the proxy can reconnect.
fn fake_qemu(path: &Path) {
    use std::io::BufRead;
    let l = std::os::unix::net::UnixListener::bind(path).expect("bind");
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let mut w = s.try_clone().expect("clone");
            let _ = w.write_all(b"{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, \"minor\": 0, \"major\": 10}, \"package\": \"fake\"}, \"capabilities\": [\"oob\"]}}\r\n");
            for line in std::io::BufReader::new(s).lines() {
                let Ok(line) = line else { break };
                let v: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
                if v["execute"] == "hang-up" {
                    break;
                }
                let reply = json!({"return": {}, "id": v["id"]});
                let _ = w.write_all(format!("{reply}\r\n").as_bytes());
            }
        }
    });
}

/// A directory, a stand-in for QEMU on `qemu.sock` in it, the test's own user id and another.
fn fake_qemu_and_uids(tag: &str) -> (TempDir, std::path::PathBuf, u32, u32) {
    let dir = TempDir::new(tag);
    let up = dir.join("qemu.sock");
    fake_qemu(&up);
    let me = unsafe { libc::getuid() };
    let other = if me == 4242 { 4243 } else { 4242 };
    (dir, up, me, other)
}

/// Three commands at once on a client allowed two per second: the third is refused with `desc`.
fn two_per_second(c: &mut Line, desc: &str) {
    for i in 0..3 {
        c.send(&format!(r#"{{"execute": "query-x", "id": {i}}}"#));
    }
    assert_eq!(c.value(), json!({"return": {}, "id": 0}));
    assert_eq!(c.value(), json!({"return": {}, "id": 1}));
    assert_eq!(
        c.value(),
        json!({"id": 2, "error": {"class": "GenericError", "desc": desc}})
    );
}

#[test]
fn listener_rules_peer_uids_rate_and_commands_in_flight() {
    let (dir, up, me, other) = fake_qemu_and_uids("proxy-rules");
    let sock = |n: &str| dir.join(n);
    let _p = proxy(
        &up,
        &[
            format!("unix:{},uid={other}", sock("uid.sock").display()),
            format!(
                "unix:{},readonly=on,admin-uid={me}",
                sock("admin.sock").display()
            ),
            format!("unix:{},rate=2", sock("rate.sock").display()),
            format!(
                "unix:{},allow=query-*:system_*,deny=system_powerdown",
                sock("lists.sock").display()
            ),
        ],
        &dir.join("rec.jsonl"),
    );
    for n in ["uid.sock", "admin.sock", "rate.sock", "lists.sock"] {
        wait_for(&sock(n));
    }
    // A peer whose uid is not listed is hung up on before the greeting.
    let s = qmpkit_testkit::cmd::connect_unix(&sock("uid.sock"));
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    let mut buf = String::new();
    assert_eq!(
        std::io::BufReader::new(s).read_to_string(&mut buf).ok(),
        Some(0)
    );

    // An admin peer is not held to the read-only rule.
    let mut a = Line::connect(&sock("admin.sock"));
    negotiate(&mut a);
    a.send(r#"{"execute": "quit", "id": "q"}"#);
    // QEMU's bytes as it sent them (this one writes compact JSON), the client's id in place.
    assert_eq!(
        a.next().as_deref(),
        Some("{\"return\":{},\"id\":\"q\"}\r\n")
    );

    // Allow and deny lists (deny wins), each refusal in QEMU's shape.
    let mut l = Line::connect(&sock("lists.sock"));
    negotiate(&mut l);
    for (cmd, want) in [
        ("system_reset", None),
        ("query-foo", None),
        (
            "system_powerdown",
            Some("The command system_powerdown is denied on this QMP proxy listener"),
        ),
        (
            "quit",
            Some("The command quit is not in this QMP proxy listener's allow list"),
        ),
    ] {
        l.send(&format!(r#"{{"execute": "{cmd}"}}"#));
        let v = l.value();
        match want {
            None => assert_eq!(v, json!({"return": {}}), "{cmd}"),
            Some(d) => assert_eq!(
                v,
                json!({"error": {"class": "GenericError", "desc": d}}),
                "{cmd}"
            ),
        }
    }

    // Two commands per second.
    let mut r = Line::connect(&sock("rate.sock"));
    negotiate(&mut r);
    two_per_second(
        &mut r,
        "Rate limit exceeded: this QMP proxy listener allows 2 commands per second",
    );

    // QEMU goes away with a command in flight: it gets an error, everyone gets the event, and
    // the proxy comes back by itself.
    a.send(r#"{"execute": "hang-up", "id": ["last", 1]}"#);
    let v = a.value();
    assert_eq!(v["id"], json!(["last", 1]), "{v}");
    assert_eq!(v["error"]["class"], "GenericError");
    assert!(v["error"]["desc"]
        .as_str()
        .is_some_and(|d| d.starts_with("QEMU closed the monitor connection before answering")));
    assert_eq!(a.value()["event"], "__org.qmpkit_PROXY_UPSTREAM_LOST");
    assert_eq!(l.value()["event"], "__org.qmpkit_PROXY_UPSTREAM_LOST");
    assert_eq!(a.value()["event"], "__org.qmpkit_PROXY_UPSTREAM_BACK");
    a.send(r#"{"execute": "query-status", "id": 9}"#);
    assert_eq!(a.value(), json!({"return": {}, "id": 9}));
}

/// Every reply line a client gets for `block` (written at once), then for `parts` (written one
/// after the other, with a pause between).
fn session(sock: &Path, block: &[&str], parts: &[&str]) -> Vec<String> {
    let mut c = Line::connect(sock);
    negotiate(&mut c);
    c.send(&block.join("\n"));
    let mut lines: Vec<String> = (0..block.len())
        .map(|_| c.next().expect("a reply"))
        .collect();
    for p in parts {
        c.w_raw(p.as_bytes());
        std::thread::sleep(Duration::from_millis(50));
    }
    lines.push(c.next().expect("a reply"));
    c.send(r#"{"exec-oob": "query-jobs", "id": "oob"}"#);
    lines.push(c.next().expect("a reply"));
    lines
}

#[test]
fn forwarded_replies_are_qemus_own_bytes() {
    let program = qmpkit_testkit::program_or_skip!("qemu-storage-daemon");
    let dir = TempDir::new("proxy-bytes");
    let (q1, q2, ps) = (dir.join("q1.sock"), dir.join("q2.sock"), dir.join("p.sock"));
    let _direct = qsd(&program, &q1);
    let _behind = qsd(&program, &q2);
    let _p = plain_proxy(&q2, &ps);
    wait_for(&q1);
    let block = [
        r#"{"execute": "query-version", "id": 1}"#,
        r#"{"execute": "query-version", "id": "a b"}"#,
        r#"{"execute": "query-jobs"}"#,
        r#"{"id": {"k": [1, 2.5, null, "x"]}, "execute": "query-jobs"}"#,
        r#"{"execute": "query-jobs", "id": 1.5e3}"#,
        r#"{"execute": "query-jobs", "id": "caf\u00e9"}"#,
        r#"{"execute": "no-such-command", "id": -3}"#,
        r#"{"execute": "query-jobs", "arguments": {"x": {"y": [true]}}, "id": 8}"#,
        r#"{"execute": "query-jobs", "id": 10, "extra": 1}"#,
        r#"{ "execute" :"query-jobs" ,"id":   11   }"#,
        r#"{"execute": "query-jobs", "arguments": { }}"#,
        r#"[1]"#,
        r#"{"execute": "query-jobs", "id": 0}"#,
        r#"{"execute": "query-jobs", "id": -0}"#,
        r#"{"execute": "query-jobs", "id": 123456789012345678901234}"#,
        r#"{"execute": "query-jobs", "id": 1.7976931348623157e308}"#,
        r#"{"execute": "query-jobs", "id": [1e400, -1.5E-3]}"#,
        r#"{"execute": "query-jobs", "id": "tab\tquote\""}"#,
        r#"{"execute": 'query-jobs', "id": 'single'}"#,
    ];
    let parts = [r#"{"execute": "query-jo"#, r#"bs", "id": "split"}"#, "\n"];
    let want = session(&q1, &block, &parts);
    let got = session(&ps, &block, &parts);
    assert_eq!(got, want);
    // The requests were answered, not refused wholesale.
    assert!(want[0].starts_with("{\"return\": {\"qemu\": "), "{want:?}");
    assert_eq!(want[2], "{\"return\": []}\r\n");
}

/// A pipe's read end, to pass as a descriptor.
fn pipe_fd() -> std::os::fd::OwnedFd {
    let (r, _w) = std::io::pipe().expect("pipe");
    r.into()
}

/// Every reply line of a session that passes descriptors the ways clients do: alone (with a
/// blank, as qemu.qmp's `send_fd_scm`), with the command that takes them, with a command that
/// does not (they wait for the next), two at once, and with a request in QEMU's JSON dialect.
fn fd_session(sock: &Path) -> Vec<String> {
    let mut c = Line::connect(sock);
    negotiate_plain(&mut c);
    let mut lines = Vec::new();
    let mut ask = |c: &mut Line, text: &str, fds: &[std::os::fd::OwnedFd]| {
        if fds.is_empty() {
            c.send(text);
        } else {
            c.w_fds(format!("{text}\n").as_bytes(), fds);
        }
        lines.push(c.next().expect("a reply"));
    };
    c.w_fds(b" ", &[pipe_fd()]);
    std::thread::sleep(Duration::from_millis(50));
    ask(
        &mut c,
        r#"{"execute": "add-fd", "arguments": {"opaque": "alone"}, "id": 1}"#,
        &[],
    );
    ask(
        &mut c,
        r#"{"execute": "add-fd", "arguments": {"fdset-id": 5, "opaque": "with"}, "id": 2}"#,
        &[pipe_fd()],
    );
    ask(
        &mut c,
        r#"{"execute": "query-fdsets", "id": 3}"#,
        &[pipe_fd()],
    );
    ask(
        &mut c,
        r#"{"execute": "add-fd", "arguments": {"opaque": "kept"}, "id": 4}"#,
        &[],
    );
    ask(
        &mut c,
        r#"{"execute": "add-fd", "id": 5}"#,
        &[pipe_fd(), pipe_fd()],
    );
    ask(&mut c, r#"{"execute": "add-fd", "id": 6}"#, &[]);
    ask(
        &mut c,
        r#"{'execute': 'getfd', 'arguments': {'fdname': 'x'}, 'id': 7}"#,
        &[pipe_fd()],
    );
    ask(
        &mut c,
        r#"{"execute": "closefd", "arguments": {"fdname": "x"}, "id": 8}"#,
        &[],
    );
    ask(
        &mut c,
        r#"{"execute": "closefd", "arguments": {"fdname": "x"}, "id": 9}"#,
        &[],
    );
    ask(&mut c, r#"{"execute": "query-fdsets", "id": 10}"#, &[]);
    // A command that takes descriptors but fails on its arguments leaves them for the next.
    ask(
        &mut c,
        r#"{"execute": "getfd", "arguments": {}, "id": 11}"#,
        &[pipe_fd()],
    );
    ask(
        &mut c,
        r#"{"execute": "getfd", "arguments": {"fdname": "y"}, "id": 12}"#,
        &[],
    );
    // One that fails in its own checks has taken them (and closed them).
    ask(
        &mut c,
        r#"{"execute": "getfd", "arguments": {"fdname": "1y"}, "id": 13}"#,
        &[pipe_fd()],
    );
    ask(
        &mut c,
        r#"{"execute": "getfd", "arguments": {"fdname": "z"}, "id": 14}"#,
        &[],
    );
    lines
}

/// A simulated machine or a real QEMU with its monitor on `sock`.
fn fd_upstream(qemu: Option<&Path>, sock: &Path) -> Proc {
    let Some(program) = qemu else {
        return serve(sock);
    };
    let mut c = Command::new(program);
    c.args([
        "-machine",
        "none",
        "-display",
        "none",
        "-nodefaults",
        "-qmp",
    ])
    .arg(format!("unix:{},server=on,wait=off", sock.display()));
    monitor(c, sock)
}

/// A proxy with no rules and no recording (every plain request on the fast path).
fn plain_proxy(upstream: &Path, listen: &Path) -> Proc {
    let mut c = Command::new(qmpkit());
    c.args(["proxy", "--upstream"])
        .arg(upstream)
        .arg("--listen")
        .arg(format!("unix:{}", listen.display()));
    monitor(c, listen)
}

/// Descriptors passed through the proxy reach QEMU with the command sent after them, as on a
/// direct connection (same replies, same descriptor numbers, same fd sets), and never another
/// client's command. (qemu-storage-daemon has no `add-fd`; QEMU itself is the referee here.)
fn descriptors_go_with_their_command(qemu: Option<&Path>, tag: &str) {
    let dir = TempDir::new(tag);
    let (q1, q2, ps) = (dir.join("q1.sock"), dir.join("q2.sock"), dir.join("p.sock"));
    let _direct = fd_upstream(qemu, &q1);
    let _behind = fd_upstream(qemu, &q2);
    let _p = plain_proxy(&q2, &ps);
    let want = fd_session(&q1);
    let got = fd_session(&ps);
    assert_eq!(got, want);
    let v: Vec<Value> = want
        .iter()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert_eq!(v[0]["return"]["fdset-id"], 0, "{want:?}");
    assert_eq!(v[1]["return"]["fdset-id"], 5, "{want:?}");
    assert_eq!(v[3]["return"]["fdset-id"], 1, "{want:?}");
    assert!(v[4]["return"]["fd"].is_u64(), "{want:?}");
    let none =
        json!({"class": "GenericError", "desc": "No file descriptor supplied via SCM_RIGHTS"});
    assert_eq!(v[5]["error"], none, "{want:?}");
    assert_eq!(v[6], json!({"return": {}, "id": 7}));
    assert_eq!(v[7], json!({"return": {}, "id": 8}));
    assert_eq!(
        v[8]["error"],
        json!({"class": "GenericError", "desc": "File descriptor named 'x' not found"}),
        "{want:?}"
    );
    let sets = v[9]["return"].as_array().expect("fd sets");
    assert_eq!(sets.len(), 4, "{want:?}");
    assert_eq!(
        v[10]["error"],
        json!({"class": "GenericError", "desc": "Parameter 'fdname' is missing"}),
        "{want:?}"
    );
    assert_eq!(v[11], json!({"return": {}, "id": 12}));
    assert_eq!(
        v[12]["error"],
        json!({"class": "GenericError", "desc": "Parameter 'fdname' expects a name not starting with a digit"}),
        "{want:?}"
    );
    assert_eq!(v[13]["error"], none, "{want:?}");

    // Two clients: one's descriptors wait for its own command, not the other's.
    let mut a = Line::connect(&ps);
    let mut b = Line::connect(&ps);
    negotiate_plain(&mut a);
    negotiate_plain(&mut b);
    a.w_fds(b" ", &[pipe_fd()]);
    std::thread::sleep(Duration::from_millis(50));
    b.send(r#"{"execute": "add-fd", "arguments": {"opaque": "b"}, "id": "b"}"#);
    assert_eq!(b.value(), json!({"error": none, "id": "b"}));
    a.send(r#"{"execute": "add-fd", "arguments": {"opaque": "a"}, "id": "a"}"#);
    let r = a.value();
    // The lowest free set: 0, 1, 2 and 5 are taken.
    assert_eq!(r["return"]["fdset-id"], 3, "{r}");
    b.send(r#"{"execute": "query-fdsets"}"#);
    let sets = b.value();
    let new = sets["return"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["fdset-id"] == 3))
        .expect("the new set");
    assert_eq!(
        new["fds"],
        json!([{"fd": r["return"]["fd"], "opaque": "a"}]),
        "{sets}"
    );

    // Descriptors sent with a command that does not take them wait for their client's next
    // one that does, as QEMU keeps them for the connection; another client's never gets them.
    let getfd = |c: &mut Line, name: &str, fds: &[std::os::fd::OwnedFd]| {
        let req = format!(r#"{{"execute": "getfd", "arguments": {{"fdname": "{name}"}}}}"#);
        if fds.is_empty() {
            c.send(&req);
        } else {
            c.w_fds(format!("{req}\n").as_bytes(), fds);
        }
        c.value()
    };
    a.w_fds(b"{\"execute\": \"query-status\"}\n", &[pipe_fd()]);
    assert!(a.value()["return"]["status"].is_string());
    assert_eq!(getfd(&mut b, "b1", &[]), json!({"error": none}));
    assert_eq!(getfd(&mut a, "a1", &[]), json!({"return": {}}));
    // Left on QEMU's connection by a command refused on its arguments: still the sender's.
    a.w_fds(
        b"{\"execute\": \"getfd\", \"arguments\": {}}\n",
        &[pipe_fd()],
    );
    assert_eq!(
        a.value(),
        json!({"error": {"class": "GenericError", "desc": "Parameter 'fdname' is missing"}})
    );
    assert_eq!(getfd(&mut b, "b2", &[]), json!({"error": none}));
    assert_eq!(getfd(&mut a, "a2", &[]), json!({"return": {}}));
    assert_eq!(getfd(&mut a, "a3", &[]), json!({"error": none}));
    // A client's own descriptors are its own, whatever the other did before.
    a.w_fds(b" ", &[pipe_fd()]);
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(getfd(&mut b, "b3", &[pipe_fd()]), json!({"return": {}}));
    assert_eq!(getfd(&mut b, "b4", &[]), json!({"error": none}));
    assert_eq!(getfd(&mut a, "a4", &[]), json!({"return": {}}));
    // Each name was taken.
    for name in ["a1", "a2", "a4", "b3"] {
        a.send(&format!(
            r#"{{"execute": "closefd", "arguments": {{"fdname": "{name}"}}}}"#
        ));
        assert_eq!(a.value(), json!({"return": {}}), "{name}");
    }
}

#[test]
fn descriptors_pass_through_to_qemu() {
    let program = qmpkit_testkit::program_or_skip!("qemu-system-x86_64");
    descriptors_go_with_their_command(Some(&program), "proxy-fds-qemu");
}

#[test]
fn descriptors_pass_through_to_a_simulated_machine() {
    descriptors_go_with_their_command(None, "proxy-fds-serve");
}

/// Argument rules: a command whose argument (or a member of one) is outside the listed values
/// is refused in QEMU's shape; within them, or not given, it reaches QEMU (plain requests on
/// the fast path as well as QEMU's JSON dialect).
#[test]
fn argument_rules_refuse_values_outside_the_list() {
    let dir = TempDir::new("proxy-args");
    let up = dir.join("qemu.sock");
    fake_qemu(&up);
    let ps = dir.join("p.sock");
    let mut c = Command::new(qmpkit());
    c.args(["proxy", "--upstream"]).arg(&up).arg("--listen").arg(format!(
        "unix:{},arg=blockdev-add.driver=null-co|raw,arg=blockdev-add.file.filename=/img/*,arg=block-*.speed=0",
        ps.display()
    ));
    let _p = monitor(c, &ps);
    let mut l = Line::connect(&ps);
    negotiate(&mut l);
    let refused = |d: &str| json!({"error": {"class": "GenericError", "desc": d}});
    for (req, want) in [
        (
            r#"{"execute": "blockdev-add", "arguments": {"driver": "raw", "node-name": "a"}}"#,
            json!({"return": {}}),
        ),
        (
            r#"{"execute": "blockdev-add", "arguments": {"driver": "qcow2"}, "id": 1}"#,
            json!({"id": 1, "error": {"class": "GenericError", "desc": "Parameter 'driver' of blockdev-add may only be null-co or raw on this QMP proxy listener"}}),
        ),
        (
            r#"{'execute': 'blockdev-add', 'arguments': {'driver': 'file'}}"#,
            refused("Parameter 'driver' of blockdev-add may only be null-co or raw on this QMP proxy listener"),
        ),
        (
            r#"{"execute": "blockdev-add", "arguments": {"driver": "raw", "file": {"driver": "file", "filename": "/img/vm.raw"}}}"#,
            json!({"return": {}}),
        ),
        (
            r#"{"execute": "blockdev-add", "arguments": {"driver": "raw", "file": {"driver": "file", "filename": "/etc/shadow"}}}"#,
            refused("Parameter 'file.filename' of blockdev-add may only be /img/* on this QMP proxy listener"),
        ),
        (
            r#"{"execute": "block-stream", "arguments": {"device": "a"}}"#,
            json!({"return": {}}),
        ),
        (
            r#"{"execute": "block-commit", "arguments": {"device": "a", "speed": 100}}"#,
            refused("Parameter 'speed' of block-commit may only be 0 on this QMP proxy listener"),
        ),
        (
            r#"{"execute": "query-block"}"#,
            json!({"return": {}}),
        ),
    ] {
        l.send(req);
        assert_eq!(l.value(), want, "{req}");
    }
}

/// Rule sets by peer user id: a set that lists the test's own user id holds its clients (on
/// top of the listener's rules), and a set for another user id does not.
#[test]
fn rule_sets_by_peer_uid() {
    let (dir, up, me, other) = fake_qemu_and_uids("proxy-uid-rules");
    let ps = dir.join("p.sock");
    let mut c = Command::new(qmpkit());
    c.args(["proxy", "--upstream"])
        .arg(&up)
        .arg("--listen")
        .arg(format!("unix:{},deny=stop", ps.display()))
        .arg("--uid-rules")
        .arg(format!(
            "{other}:{me},deny=quit,arg=blockdev-add.driver=raw"
        ))
        .arg("--uid-rules")
        .arg(format!("{other},deny=query-status,rate=1"))
        .arg("--uid-rules")
        .arg(format!("{me},allow=query-*:blockdev-add:quit:stop,rate=2"));
    let _p = monitor(c, &ps);
    let mut l = Line::connect(&ps);
    negotiate(&mut l);
    let refused = |d: String| json!({"error": {"class": "GenericError", "desc": d}});
    for (req, want) in [
        // The other user id's deny list and rate do not apply.
        (r#"{"execute": "query-status"}"#, json!({"return": {}})),
        (
            r#"{"execute": "blockdev-add", "arguments": {"driver": "raw"}}"#,
            json!({"return": {}}),
        ),
        (
            r#"{"execute": "quit"}"#,
            refused(format!(
                "The command quit is denied on this QMP proxy for user id {me}"
            )),
        ),
        (
            r#"{"execute": "cont"}"#,
            refused(format!(
                "The command cont is not in the allow list for user id {me} on this QMP proxy"
            )),
        ),
        (
            r#"{'execute': 'blockdev-add', 'arguments': {'driver': 'qcow2'}}"#,
            refused(format!(
                "Parameter 'driver' of blockdev-add may only be raw on this QMP proxy for user id {me}"
            )),
        ),
        // The listener's own rules still hold.
        (
            r#"{"execute": "stop"}"#,
            refused("The command stop is denied on this QMP proxy listener".into()),
        ),
    ] {
        l.send(req);
        assert_eq!(l.value(), want, "{req}");
    }
    // The rate of this user id's set: two commands per second.
    std::thread::sleep(Duration::from_millis(1100));
    two_per_second(
        &mut l,
        &format!("Rate limit exceeded: this QMP proxy allows user id {me} 2 commands per second"),
    );
}
