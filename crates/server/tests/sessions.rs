//! Session behaviour beyond the transcripts: out-of-band overtaking, the in-band queue limit,
//! `success-response: false`, events (negotiated sessions only, rate limits), strict mode,
//! fd passing, and robustness (many clients, stalled, vanishing, huge and deep input).

mod common;

use std::io::Write;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::Raw;
use qmpkit_server::{Registry, Served, ServerOptions, Unhandled};
use serde_json::{json, Value};

fn mini(opts: ServerOptions) -> common::Running {
    common::start(common::mini_schema(), common::mini_registry(), opts)
}

fn reply_id(v: &Value) -> Value {
    v.get("id").cloned().unwrap_or(Value::Null)
}

#[test]
fn oob_overtakes_inband() {
    let r = mini(ServerOptions::default());
    let mut c = Raw::connect(&r.socket);
    c.negotiate(true);
    c.send(b"{\"execute\": \"slow\", \"arguments\": {\"ms\": 300}, \"id\": \"slow\"}\n");
    c.send(b"{\"execute\": \"query-version\", \"id\": \"after-slow\"}\n");
    c.send(b"{\"exec-oob\": \"oob-ping\", \"id\": \"oob\"}\n");
    let order: Vec<Value> = (0..3).map(|_| reply_id(&c.json())).collect();
    assert_eq!(
        order,
        vec![json!("oob"), json!("slow"), json!("after-slow")]
    );
}

#[test]
fn inband_queue_limit_stops_reading() {
    let r = mini(ServerOptions::default());
    let mut c = Raw::connect(&r.socket);
    c.negotiate(true);
    c.send(b"{\"execute\": \"slow\", \"arguments\": {\"ms\": 600}, \"id\": \"slow\"}\n");
    std::thread::sleep(Duration::from_millis(50));
    // Eight more in-band requests fill the queue: the server stops reading.
    for i in 0..8 {
        c.send(format!("{{\"execute\": \"query-version\", \"id\": {i}}}\n").as_bytes());
        std::thread::sleep(Duration::from_millis(20));
    }
    c.send(b"{\"exec-oob\": \"oob-ping\", \"id\": \"oob\"}\n");
    let first = reply_id(&c.json());
    assert_eq!(
        first,
        json!("slow"),
        "the oob request must wait until there is room"
    );
    let mut rest: Vec<Value> = (0..9).map(|_| reply_id(&c.json())).collect();
    assert!(rest.contains(&json!("oob")));
    rest.retain(|v| v != "oob");
    assert_eq!(rest, (0..8).map(|i| json!(i)).collect::<Vec<_>>());
}

#[test]
fn oob_behind_a_full_queue_waits_even_in_one_write() {
    let r = mini(ServerOptions::default());
    let mut c = Raw::connect(&r.socket);
    c.negotiate(true);
    let mut msg =
        b"{\"execute\": \"slow\", \"arguments\": {\"ms\": 300}, \"id\": \"slow\"}".to_vec();
    for i in 0..8 {
        msg.extend_from_slice(
            format!("{{\"execute\": \"query-version\", \"id\": {i}}}").as_bytes(),
        );
    }
    msg.extend_from_slice(b"{\"exec-oob\": \"oob-ping\", \"id\": \"oob\"}");
    c.send(&msg);
    assert_eq!(reply_id(&c.json()), json!("slow"));
    // With one request fewer in the queue, the oob one is read at once and overtakes.
    let r = mini(ServerOptions::default());
    let mut c = Raw::connect(&r.socket);
    c.negotiate(true);
    let mut msg =
        b"{\"execute\": \"slow\", \"arguments\": {\"ms\": 300}, \"id\": \"slow\"}".to_vec();
    for i in 0..7 {
        msg.extend_from_slice(
            format!("{{\"execute\": \"query-version\", \"id\": {i}}}").as_bytes(),
        );
    }
    msg.extend_from_slice(b"{\"exec-oob\": \"oob-ping\", \"id\": \"oob\"}");
    c.send(&msg);
    assert_eq!(reply_id(&c.json()), json!("oob"));
}

#[test]
fn success_response_false_answers_nothing() {
    let r = mini(ServerOptions::default());
    let mut c = Raw::connect(&r.socket);
    c.negotiate(false);
    c.send(b"{\"execute\": \"silent\", \"id\": 1}\n{\"execute\": \"query-version\", \"id\": 2}\n");
    assert_eq!(reply_id(&c.json()), json!(2));
}

#[test]
fn builtins_and_synthesis() {
    let r = mini(ServerOptions {
        qemu_version: (2, 12, 0),
        package: "qmpkit".into(),
        ..ServerOptions::default()
    });
    let mut c = Raw::connect(&r.socket);
    assert_eq!(
        c.line().unwrap(),
        b"{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, \"minor\": 12, \"major\": 2}, \"package\": \"qmpkit\"}, \"capabilities\": [\"oob\"]}}\r\n"
    );
    c.send(b"{\"execute\": \"qmp_capabilities\", \"arguments\": {\"enable\": [\"oob\", \"x\"]}}\n");
    // QEMU 2.12's wording (the validator speaks the claimed version's).
    let e = c.json();
    assert_eq!(e["error"]["class"], "GenericError");
    assert!(e["error"]["desc"].as_str().unwrap().contains("'x'"), "{e}");
    c.send(b"{\"execute\": \"qmp_capabilities\"}\n");
    c.line().unwrap();
    // exec-oob is refused: oob was not enabled.
    c.send(b"{\"exec-oob\": \"oob-ping\", \"id\": 1}\n");
    assert_eq!(
        c.line().unwrap(),
        b"{\"id\": 1, \"error\": {\"class\": \"GenericError\", \"desc\": \"QMP input member 'exec-oob' is unexpected\"}}\r\n"
    );
    c.send(b"{\"execute\": \"query-commands\"}\n");
    let cmds = c.json();
    let names: Vec<&str> = cmds["return"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    // Last defined first.
    assert_eq!(names.first(), Some(&"silent"));
    assert_eq!(names.last(), Some(&"qmp_capabilities"));
    // cont has no handler: it says so.
    c.send(b"{\"execute\": \"cont\", \"id\": \"c\"}\n");
    assert_eq!(
        c.line().unwrap(),
        b"{\"id\": \"c\", \"error\": {\"class\": \"GenericError\", \"desc\": \"Command 'cont' is not implemented by this server\"}}\r\n"
    );
    // Handler results are printed in QEMU's member order.
    c.send(b"{\"execute\": \"echo\", \"arguments\": {\"value\": {\"major\": 1, \"minor\": 2, \"micro\": 3}}}\n");
    assert_eq!(
        c.line().unwrap(),
        b"{\"return\": {\"micro\": 3, \"minor\": 2, \"major\": 1}}\r\n"
    );
    // query-qmp-schema: cached, fast.
    let t = Instant::now();
    c.send(b"{\"execute\": \"query-qmp-schema\"}\n");
    let s = c.json();
    assert!(t.elapsed() < Duration::from_millis(200));
    assert!(s["return"]
        .as_array()
        .is_some_and(|a| a.iter().any(|i| i["name"] == "echo")));
    let served = r.server.commands();
    assert!(served.contains(&("cont".to_string(), Served::NotImplemented)));
    assert!(served.contains(&("echo".to_string(), Served::Handler)));
    assert!(served.contains(&("query-version".to_string(), Served::Builtin)));
}

#[test]
fn strict_mode() {
    let r = mini(ServerOptions {
        unhandled: Unhandled::NotFound,
        ..ServerOptions::default()
    });
    let mut c = Raw::connect(&r.socket);
    c.negotiate(false);
    c.send(b"{\"execute\": \"cont\", \"id\": \"c\"}\n");
    assert_eq!(
        c.line().unwrap(),
        b"{\"id\": \"c\", \"error\": {\"class\": \"CommandNotFound\", \"desc\": \"The command cont has not been found\"}}\r\n"
    );
    c.send(b"{\"execute\": \"query-commands\"}\n");
    let v = c.json();
    let names: Vec<&str> = v["return"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert!(!names.contains(&"cont"));
    assert!(names.contains(&"stop"));
}

/// A mock of the schema: commands without a handler answer a value made
/// from their return type, and are listed as such.
#[test]
fn synthesize_mode() {
    let r = mini(ServerOptions {
        unhandled: Unhandled::Synthesize,
        ..ServerOptions::default()
    });
    let mut c = Raw::connect(&r.socket);
    c.negotiate(false);
    c.send(b"{\"execute\": \"cont\", \"id\": \"c\"}\n");
    assert_eq!(c.line().unwrap(), b"{\"return\": {}, \"id\": \"c\"}\r\n");
    assert!(r
        .server
        .commands()
        .contains(&("cont".to_string(), Served::Synthesized)));
}

#[test]
fn events_reach_negotiated_sessions_only() {
    let r = mini(ServerOptions::default());
    let mut a = Raw::connect(&r.socket);
    a.negotiate(false);
    let mut b = Raw::connect(&r.socket);
    b.line().unwrap(); // greeting only: still negotiating
    a.send(b"{\"execute\": \"stop\", \"id\": 1}\n");
    let ev = a.json();
    assert_eq!(ev["event"], "STOP");
    let ts = &ev["timestamp"];
    assert!(ts["seconds"].as_i64().unwrap() > 1_600_000_000);
    assert!(ts["microseconds"].as_i64().unwrap() < 1_000_000);
    assert_eq!(reply_id(&a.json()), json!(1));
    assert!(b.line_within(Duration::from_millis(100)).is_none());
    // From outside any handler.
    r.server.events().emit("RESUME", None);
    assert_eq!(a.json()["event"], "RESUME");
}

#[test]
fn rate_limited_events() {
    let r = mini(ServerOptions::default());
    let mut a = Raw::connect(&r.socket);
    a.negotiate(false);
    let ev = r.server.events();
    let t = Instant::now();
    for i in 0..5 {
        ev.emit("RTC_CHANGE", Some(json!({"offset": i})));
    }
    ev.emit("VSERPORT_CHANGE", Some(json!({"id": "a", "open": true})));
    ev.emit("VSERPORT_CHANGE", Some(json!({"id": "b", "open": true})));
    ev.emit("VSERPORT_CHANGE", Some(json!({"id": "a", "open": false})));
    let first = a.json();
    assert_eq!(first["event"], "RTC_CHANGE");
    assert_eq!(first["data"]["offset"], 0);
    assert_eq!(a.json()["data"], json!({"id": "a", "open": true}));
    assert_eq!(a.json()["data"], json!({"id": "b", "open": true}));
    // The rest come when the window closes: the last RTC_CHANGE only.
    let mut later = [a.json(), a.json()];
    assert!(
        t.elapsed() >= Duration::from_millis(900),
        "{:?}",
        t.elapsed()
    );
    later.sort_by_key(|v| v["event"].as_str().unwrap_or("").to_string());
    assert_eq!(later[0]["event"], "RTC_CHANGE");
    assert_eq!(later[0]["data"]["offset"], 4);
    assert_eq!(later[1]["data"], json!({"id": "a", "open": false}));
    assert!(a.line_within(Duration::from_millis(1300)).is_none());
}

#[test]
fn fd_passing_with_scm_rights() {
    let r = mini(ServerOptions::default());
    let socket = r.socket.clone();
    r.rt.block_on(async move {
        let c = qmpkit_client::Client::connect_unix(&socket)
            .await
            .expect("connect");
        let (pr, _pw) = std::os::unix::net::UnixStream::pair().expect("pair");
        let fd: std::os::fd::OwnedFd = pr.into();
        c.call(
            qmpkit_client::Command::new("getfd")
                .arg("fdname", "x")
                .fd(fd),
        )
        .await
        .expect("getfd");
        let n: u64 = c.execute("count-fds", ()).await.expect("count");
        assert_eq!(n, 1);
        let e = c
            .execute::<Value>("getfd", json!({"fdname": "y"}))
            .await
            .expect_err("no fd");
        assert!(e.to_string().contains("No file descriptor supplied"), "{e}");
        // Named fds are per session.
        let c2 = qmpkit_client::Client::connect_unix(&socket)
            .await
            .expect("connect");
        let n2: u64 = c2.execute("count-fds", ()).await.expect("count");
        assert_eq!(n2, 0);
    });
}

#[test]
fn many_concurrent_clients() {
    let r = mini(ServerOptions::default());
    let socket = r.socket.clone();
    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let answered = client_rt.block_on(async move {
        let mut set = tokio::task::JoinSet::new();
        for i in 0..500u64 {
            let socket = socket.clone();
            set.spawn(async move {
                use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
                let s = tokio::net::UnixStream::connect(&socket).await.ok()?;
                let (rd, mut wr) = s.into_split();
                let mut rd = BufReader::new(rd);
                let mut line = String::new();
                rd.read_line(&mut line).await.ok()?;
                wr.write_all(
                    format!("{{\"execute\": \"qmp_capabilities\"}}\n{{\"execute\": \"echo\", \"arguments\": {{\"value\": {i}}}, \"id\": {i}}}\n")
                        .as_bytes(),
                )
                .await
                .ok()?;
                line.clear();
                rd.read_line(&mut line).await.ok()?;
                line.clear();
                rd.read_line(&mut line).await.ok()?;
                (line == format!("{{\"return\": {i}, \"id\": {i}}}\r\n")).then_some(())
            });
        }
        let mut ok = 0;
        while let Some(r) = set.join_next().await {
            if matches!(r, Ok(Some(()))) {
                ok += 1;
            }
        }
        ok
    });
    assert_eq!(answered, 500);
}

/// A client that is answered promptly while `disturb` runs.
fn still_answered(r: &common::Running) {
    let mut c = Raw::connect(&r.socket);
    c.negotiate(false);
    for i in 0..3 {
        let t = Instant::now();
        c.send(format!("{{\"execute\": \"query-version\", \"id\": {i}}}\n").as_bytes());
        let v = c.json();
        assert_eq!(reply_id(&v), json!(i));
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    }
}

#[test]
fn stalled_and_vanishing_clients_do_not_delay_others() {
    let r = mini(ServerOptions::default());
    // Half a message, then nothing.
    let mut half = Raw::connect(&r.socket);
    half.negotiate(false);
    half.send(b"{\"execute\": \"query-ver");
    // Gone in the middle of a request.
    let mut gone = Raw::connect(&r.socket);
    gone.negotiate(false);
    gone.send(b"{\"execute\": \"slow\", \"arguments\": {\"ms\": 200}}\n");
    drop(gone);
    // Half-closed: wrote, shut its side, still reads.
    let mut hc = Raw::connect(&r.socket);
    hc.negotiate(false);
    hc.send(b"{\"execute\": \"query-version\", \"id\": \"hc\"}\n");
    hc.stream.shutdown(std::net::Shutdown::Write).unwrap();
    // Never reads, and sends a lot.
    let mut deaf = std::os::unix::net::UnixStream::connect(&r.socket).unwrap();
    deaf.set_nonblocking(true).unwrap();
    let _ = deaf.write_all(b"{\"execute\": \"qmp_capabilities\"}\n");
    for _ in 0..200 {
        let _ = deaf.write_all(b"{\"execute\": \"query-qmp-schema\"}\n");
    }
    still_answered(&r);
    assert_eq!(reply_id(&hc.json()), json!("hc"));
    assert!(hc.closed_within(Duration::from_secs(5)));
    // The rest of the half message, late: still a whole request.
    half.send(b"sion\", \"id\": \"late\"}\n");
    assert_eq!(reply_id(&half.json()), json!("late"));
    let _ = deaf.as_raw_fd();
}

#[test]
fn client_that_never_reads_is_cut_off() {
    let r = mini(ServerOptions {
        max_backlog: 256 << 10,
        ..ServerOptions::default()
    });
    let mut deaf = Raw::connect(&r.socket);
    deaf.negotiate(false);
    let before = r.server.session_count();
    let ev = r.server.events();
    let big = "x".repeat(4096);
    let mut c = Raw::connect(&r.socket);
    c.negotiate(false);
    // Events pile up for the deaf client (the other one reads them). Emission waits for the
    // reader to stay within 32 events (128 KiB, half its backlog limit), so however slow
    // the machine, only the deaf client overflows.
    let read = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = read.clone();
    let reader = std::thread::spawn(move || {
        let mut n = 0;
        while n < 2000 {
            if c.line().is_none() {
                break;
            }
            n += 1;
            counter.store(n, std::sync::atomic::Ordering::Release);
        }
        n
    });
    for i in 0..2000 {
        ev.emit("BIG", Some(json!({"payload": big})));
        let t = Instant::now();
        while i >= 32 + read.load(std::sync::atomic::Ordering::Acquire)
            && t.elapsed() < Duration::from_secs(10)
            && !reader.is_finished()
        {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    assert_eq!(reader.join().unwrap(), 2000);
    let t = Instant::now();
    while r.server.session_count() >= before && t.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        r.server.session_count() < before,
        "the deaf client is still connected"
    );
    still_answered(&r);
}

#[test]
fn huge_string_and_deep_nesting() {
    let r = mini(ServerOptions::default());
    let socket = r.socket.clone();
    let big = std::thread::spawn(move || {
        let mut c = Raw::connect(&socket);
        c.negotiate(false);
        let mut msg = b"{\"execute\": \"echo\", \"arguments\": {\"value\": \"".to_vec();
        msg.extend(std::iter::repeat_n(b'a', 64 << 20));
        msg.extend_from_slice(b"\"}}\n{\"execute\": \"query-version\", \"id\": \"after\"}\n");
        c.send(&msg);
        let mut lines = 0;
        loop {
            let Some(l) = c.line() else { break false };
            lines += 1;
            if l.ends_with(b"\"id\": \"after\"}\r\n") {
                break lines < 10;
            }
        }
    });
    let deep = std::thread::spawn({
        let socket = r.socket.clone();
        move || {
            let mut c = Raw::connect(&socket);
            c.negotiate(false);
            let mut msg = b"{\"execute\": \"query-version\", \"id\": ".to_vec();
            msg.extend(std::iter::repeat_n(b'[', 1025));
            msg.extend(std::iter::repeat_n(b']', 1025));
            msg.extend_from_slice(b"}\n{\"execute\": \"query-version\", \"id\": \"after\"}\n");
            c.send(&msg);
            let mut lines = 0;
            loop {
                let Some(l) = c.line() else { break 0 };
                lines += 1;
                if l.ends_with(b"\"id\": \"after\"}\r\n") {
                    break lines;
                }
            }
        }
    });
    still_answered(&r);
    assert_eq!(deep.join().unwrap(), 1025 + 3);
    assert!(big.join().unwrap());
}

#[test]
fn handler_panic_is_an_error_not_a_crash() {
    let mut reg = Registry::new();
    reg.register_sync("stop", |_| panic!("boom"));
    let r = common::start(common::mini_schema(), reg, ServerOptions::default());
    let mut c = Raw::connect(&r.socket);
    c.negotiate(false);
    c.send(b"{\"execute\": \"stop\", \"id\": 1}\n");
    let v = c.json();
    assert_eq!(v["error"]["class"], "GenericError");
    c.send(b"{\"execute\": \"query-version\", \"id\": 2}\n");
    assert_eq!(reply_id(&c.json()), json!(2));
    let _ = Arc::new(());
}

/// Serve an already built server on a fresh unix socket of runtime `rt`.
fn serve_on(
    rt: &tokio::runtime::Runtime,
    server: &qmpkit_server::Server,
    dir: &std::path::Path,
    tag: &str,
) -> std::path::PathBuf {
    let socket = dir.join(format!("{tag}.sock"));
    let listener = {
        let _g = rt.enter();
        qmpkit_server::bind_unix(&socket).expect("bind")
    };
    let s = server.clone();
    rt.spawn(async move { s.serve_unix(listener).await });
    socket
}

/// Negotiate, then the reply line of each command.
fn answers(socket: &std::path::Path, cmds: &[&str]) -> Vec<Vec<u8>> {
    let mut c = Raw::connect(socket);
    c.line().unwrap();
    c.send(b"{\"execute\": \"qmp_capabilities\"}\n");
    assert_eq!(c.line().unwrap(), b"{\"return\": {}}\r\n");
    cmds.iter()
        .map(|name| {
            c.send(format!("{{\"execute\": \"{name}\"}}\n").as_bytes());
            c.line().unwrap()
        })
        .collect()
}

/// A fleet's servers are siblings: what does not depend on the handlers is shared, and a
/// sibling with other options or other handlers still answers for itself.
#[test]
fn siblings_share_the_introspection() {
    let text = format!(
        "{}\n{{ 'struct': 'Info', 'data': {{ 'name': 'str', 'count': 'int' }} }}\n\
         {{ 'command': 'query-info', 'returns': 'Info' }}\n\
         {{ 'command': 'only-x', 'if': 'CONFIG_X' }}\n",
        common::MINI_SCHEMA
    );
    let provider = qmpkit_schema::MemoryProvider::from_files([("sib.json", text.as_str())]);
    let schema = Arc::new(
        qmpkit_schema::load_from("sib.json", qmpkit_schema::Dialect::Legacy, &provider)
            .expect("schema"),
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c) = rt.block_on(async {
        // Mocks of the schema: their synthesised replies are shared too.
        let mock = ServerOptions {
            unhandled: Unhandled::Synthesize,
            ..ServerOptions::default()
        };
        let a = qmpkit_server::Server::new(schema.clone(), common::mini_registry(), mock.clone());
        let b = a.sibling(common::mini_registry(), mock);
        let mut extra = Registry::new();
        extra.register_sync("query-info", |_| Ok(json!({"name": "mine", "count": 7})));
        extra.register_sync("x-extra", |_| Ok(json!(1)));
        let mut opts = ServerOptions::default();
        opts.qemu_version = (7, 2, 0);
        opts.introspection.enabled.insert("CONFIG_X".to_string());
        let c = a.sibling(extra, opts);
        (a, b, c)
    });
    assert_eq!(b.commands(), a.commands());
    assert!(a
        .commands()
        .contains(&("query-info".to_string(), Served::Synthesized)));
    assert!(c
        .commands()
        .contains(&("query-info".to_string(), Served::Handler)));
    let cmds = [
        "query-qmp-schema",
        "query-commands",
        "query-version",
        "query-info",
    ];
    let ra = answers(&serve_on(&rt, &a, dir.path(), "a"), &cmds);
    let rb = answers(&serve_on(&rt, &b, dir.path(), "b"), &cmds);
    let rc = answers(&serve_on(&rt, &c, dir.path(), "c"), &cmds);
    // The same answers from the sibling.
    assert_eq!(ra, rb);
    assert_eq!(
        ra[3],
        b"{\"return\": {\"name\": \"\", \"count\": 0}}\r\n".to_vec()
    );
    // Its own symbols, command list, version and handlers.
    let schema_c: Value = serde_json::from_slice(&rc[0]).unwrap();
    let schema_a: Value = serde_json::from_slice(&ra[0]).unwrap();
    let has_x = |v: &Value| {
        v["return"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["name"] == "only-x")
    };
    assert!(has_x(&schema_c) && !has_x(&schema_a));
    let names = |l: &[u8]| -> Vec<String> {
        let v: Value = serde_json::from_slice(l).unwrap();
        v["return"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert!(names(&rc[1]).contains(&"x-extra".to_string()));
    assert!(names(&rc[1]).contains(&"only-x".to_string()));
    assert!(!names(&ra[1]).contains(&"x-extra".to_string()));
    assert_eq!(
        rc[2],
        b"{\"return\": {\"qemu\": {\"micro\": 0, \"minor\": 2, \"major\": 7}, \"package\": \"\"}}\r\n".to_vec()
    );
    assert_eq!(
        rc[3],
        b"{\"return\": {\"name\": \"mine\", \"count\": 7}}\r\n".to_vec()
    );
}

#[test]
fn old_schemas_greet_without_oob() {
    let text = "{ 'command': 'qmp_capabilities' }\n{ 'command': 'stop' }\n";
    let provider = qmpkit_schema::MemoryProvider::from_files([("old.json", text)]);
    let schema = qmpkit_schema::load_from("old.json", qmpkit_schema::Dialect::Legacy, &provider)
        .expect("schema");
    let r = common::start(
        Arc::new(schema),
        Registry::new(),
        ServerOptions {
            qemu_version: (1, 1, 0),
            ..ServerOptions::default()
        },
    );
    let mut c = Raw::connect(&r.socket);
    assert_eq!(
        c.line().unwrap(),
        b"{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, \"minor\": 1, \"major\": 1}, \"package\": \"\"}, \"capabilities\": []}}\r\n"
    );
    c.send(b"{\"execute\": \"qmp_capabilities\"}\n{\"execute\": \"stop\", \"id\": 1}\n");
    assert_eq!(c.line().unwrap(), b"{\"return\": {}}\r\n");
    assert_eq!(
        c.line().unwrap(),
        b"{\"id\": 1, \"error\": {\"class\": \"GenericError\", \"desc\": \"Command 'stop' is not implemented by this server\"}}\r\n"
    );
}

/// QEMU 1.0–1.3 defined qmp_capabilities outside the schema: a schema without it is from
/// then, and its QEMU greeted with no capabilities (the command still exists).
#[test]
fn schemas_without_qmp_capabilities_greet_without_oob() {
    let text = "{ 'command': 'stop' }\n{ 'command': 'query-name', 'returns': 'NameInfo' }\n\
                { 'type': 'NameInfo', 'data': { '*name': 'str' } }\n";
    let provider = qmpkit_schema::MemoryProvider::from_files([("v13.json", text)]);
    let schema = qmpkit_schema::load_from("v13.json", qmpkit_schema::Dialect::Legacy, &provider)
        .expect("schema");
    let r = common::start(
        Arc::new(schema),
        Registry::new(),
        ServerOptions {
            qemu_version: (1, 3, 0),
            ..ServerOptions::default()
        },
    );
    let mut c = Raw::connect(&r.socket);
    assert_eq!(
        c.line().unwrap(),
        b"{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, \"minor\": 3, \"major\": 1}, \"package\": \"\"}, \"capabilities\": []}}\r\n"
    );
    c.send(b"{\"execute\": \"qmp_capabilities\"}\n{\"execute\": \"stop\", \"id\": 1}\n");
    assert_eq!(c.line().unwrap(), b"{\"return\": {}}\r\n");
    assert_eq!(
        c.line().unwrap(),
        b"{\"id\": 1, \"error\": {\"class\": \"GenericError\", \"desc\": \"Command 'stop' is not implemented by this server\"}}\r\n"
    );
}
