//! The client against an in-process mock server (tests/common/mock.rs).

mod common;

use qmpkit_client::{
    blocking, Client, Command, ConnectOptions, Error, EventFilter, EventItem, VersionInfo,
};
use serde_json::{json, Value};
use std::io::Write;
use std::os::fd::AsFd;
use std::time::Duration;

async fn connect(m: &common::mock::Mock) -> Client {
    Client::connect_unix(&m.socket).await.expect("connect")
}

#[tokio::test]
async fn greeting_negotiation_and_typed_results() {
    let m = common::mock::start();
    let c = connect(&m).await;
    assert_eq!(c.greeting().version.qemu.major, 9);
    assert_eq!(c.greeting().version.package, "mock");
    assert_eq!(c.greeting().capabilities, vec!["oob".to_string()]);
    assert!(c.oob_enabled());
    let v: VersionInfo = c.execute("query-version", ()).await.expect("query-version");
    assert_eq!((v.qemu.major, v.qemu.minor, v.qemu.micro), (9, 2, 0));
    // `()` accepts `{}`.
    c.execute::<()>("echo", ()).await.expect("unit");
    let echoed: Value = c
        .execute("echo", json!({"a": [1, "b"]}))
        .await
        .expect("echo");
    assert_eq!(echoed, json!({"a": [1, "b"]}));
    // Arguments that are not an object are refused before sending.
    let e = c.execute::<Value>("echo", json!([1])).await.unwrap_err();
    assert!(matches!(e, Error::InvalidRequest { .. }), "{e}");
    // A decoding mismatch keeps the request.
    let e = c.execute::<u32>("query-version", ()).await.unwrap_err();
    assert!(matches!(e, Error::Decode { .. }), "{e}");
    assert_eq!(
        e.request().map(|r| r.command.as_str()),
        Some("query-version")
    );
}

#[tokio::test]
async fn negotiation_without_oob() {
    let m = common::mock::start();
    let c = ConnectOptions::default()
        .enable_oob(false)
        .connect_unix(&m.socket)
        .await
        .expect("connect");
    assert!(!c.oob_enabled());
}

#[tokio::test]
async fn out_of_order_replies_are_matched_by_id() {
    let m = common::mock::start();
    let c = connect(&m).await;
    let mut set = tokio::task::JoinSet::new();
    for i in 0..20u64 {
        let c = c.clone();
        set.spawn(async move {
            // Later requests sleep less, so replies arrive in reverse order.
            let ms = 200 - i * 10;
            let v: Value = c.execute("sleep", json!({"ms": ms})).await.expect("sleep");
            (ms, v)
        });
    }
    let mut n = 0;
    while let Some(r) = set.join_next().await {
        let (ms, v) = r.expect("join");
        assert_eq!(v, json!({"slept": ms}));
        n += 1;
    }
    assert_eq!(n, 20);
    assert_eq!(c.in_flight(), 0);
}

#[tokio::test]
async fn custom_ids_of_any_json_type() {
    let m = common::mock::start();
    let c = connect(&m).await;
    for id in [
        json!("s"),
        json!(-1),
        json!(1.5),
        json!([1, {"a": null}]),
        json!({"x": true}),
        json!(null),
    ] {
        let v = c
            .call(Command::new("echo").arg("k", id.clone()).id(id.clone()))
            .await
            .expect("echo");
        assert_eq!(v, json!({"k": id}));
    }
    // Ids too deep for the reply to be decoded are refused.
    let mut deep = json!(1);
    for _ in 0..65 {
        deep = json!([deep]);
    }
    let e = c.call(Command::new("echo").id(deep)).await.unwrap_err();
    assert!(matches!(e, Error::InvalidRequest { .. }), "{e}");
    // An id already in flight is refused.
    let slow = c.call(Command::new("sleep").arg("ms", 300).id(json!("dup")));
    let dup = async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        c.call(Command::new("echo").id(json!("dup"))).await
    };
    let (a, b) = tokio::join!(slow, dup);
    assert_eq!(a.expect("slow"), json!({"slept": 300}));
    assert!(matches!(b, Err(Error::InvalidRequest { .. })));
}

#[tokio::test]
async fn errors_keep_class_desc_and_request() {
    let m = common::mock::start();
    let c = connect(&m).await;
    let e = c
        .execute::<Value>("frobnicate", json!({"x": 1}))
        .await
        .unwrap_err();
    assert_eq!(e.class(), Some("CommandNotFound"));
    assert_eq!(e.desc(), Some("The command frobnicate has not been found"));
    let r = e.request().expect("request");
    assert_eq!(r.command, "frobnicate");
    assert_eq!(
        r.arguments,
        Some(json!({"x": 1}).as_object().cloned().unwrap_or_default())
    );
    assert!(!r.oob);
    assert_eq!(
        e.to_string(),
        format!(
            "frobnicate (id {}): CommandNotFound: The command frobnicate has not been found",
            r.id
        )
    );
}

#[tokio::test]
async fn timeout_and_cancellation_keep_the_connection_in_step() {
    let m = common::mock::start();
    let c = connect(&m).await;
    // Timeout: the late reply must not be handed to anyone else.
    let e = c
        .call(
            Command::new("sleep")
                .arg("ms", 150)
                .timeout(Duration::from_millis(20)),
        )
        .await
        .unwrap_err();
    assert!(e.is_timeout(), "{e}");
    assert_eq!(e.request().map(|r| r.command.as_str()), Some("sleep"));
    // Cancellation: futures dropped after their first poll (sent) and before it (never sent).
    for ms in [100u64, 120, 140] {
        let fut = c.execute::<Value>("sleep", json!({"ms": ms}));
        assert!(common::poll_once(fut).await.is_none());
    }
    let never_polled = c.execute::<Value>("sleep", json!({"ms": 1}));
    drop(never_polled);
    // Meanwhile, and after the late replies arrive, every reply goes to its own request.
    let mut set = tokio::task::JoinSet::new();
    for i in 0..50u64 {
        let c = c.clone();
        set.spawn(async move {
            if i % 10 == 0 {
                tokio::time::sleep(Duration::from_millis(100 + i)).await;
            }
            let v: Value = c.execute("echo", json!({"i": i})).await.expect("echo");
            assert_eq!(v, json!({"i": i}));
        });
    }
    while let Some(r) = set.join_next().await {
        r.expect("task");
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(c.in_flight(), 0, "late replies consumed");
    assert_eq!(c.unmatched_count(), 0, "late replies are not unmatched");
    // Aborting a task mid-wait is cancellation too.
    let c2 = c.clone();
    let t = tokio::spawn(async move { c2.execute::<Value>("sleep", json!({"ms": 100})).await });
    tokio::time::sleep(Duration::from_millis(10)).await;
    t.abort();
    let v: Value = c
        .execute("echo", json!({"after": "abort"}))
        .await
        .expect("echo");
    assert_eq!(v, json!({"after": "abort"}));
}

#[tokio::test]
async fn default_timeout_from_options() {
    let m = common::mock::start();
    let c = ConnectOptions::default()
        .timeout(Duration::from_millis(30))
        .connect_unix(&m.socket)
        .await
        .expect("connect");
    assert!(c
        .execute::<Value>("sleep", json!({"ms": 200}))
        .await
        .unwrap_err()
        .is_timeout());
    // A command can wait longer than the default.
    let v = c
        .call(Command::new("sleep").arg("ms", 60).no_timeout())
        .await
        .expect("sleep");
    assert_eq!(v, json!({"slept": 60}));
}

#[tokio::test]
async fn events_filtered_and_unfiltered_while_commands_run() {
    let m = common::mock::start();
    let c = connect(&m).await;
    let mut all = c.events();
    let mut only_b = c.subscribe(EventFilter::name("B"));
    let (r1, r2, r3) = tokio::join!(
        c.execute::<Value>("emit", json!({"name": "A", "count": 100})),
        c.execute::<Value>("emit", json!({"name": "B", "count": 3})),
        c.execute::<Value>("echo", json!({"x": 1})),
    );
    r1.expect("emit A");
    r2.expect("emit B");
    assert_eq!(r3.expect("echo"), json!({"x": 1}));
    let mut a = 0;
    let mut b = 0;
    while let Some(item) = all.try_recv() {
        match item {
            EventItem::Event(e) if e.event == "A" => {
                assert_eq!(e.data, json!({"i": a}));
                assert_eq!(e.timestamp.microseconds, a);
                a += 1
            }
            EventItem::Event(e) if e.event == "B" => b += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((a, b), (100, 3));
    for i in 0..3 {
        match only_b.try_recv() {
            Some(EventItem::Event(e)) => {
                assert_eq!((e.event.as_str(), e.data.clone()), ("B", json!({"i": i})))
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(only_b.try_recv(), None);
}

#[tokio::test]
async fn a_slow_subscriber_sees_lagged() {
    let m = common::mock::start();
    let c = ConnectOptions::default()
        .event_buffer(10)
        .connect_unix(&m.socket)
        .await
        .expect("connect");
    let mut slow = c.subscribe(EventFilter::name("E"));
    c.execute::<()>("emit", json!({"name": "E", "count": 25}))
        .await
        .expect("emit");
    // The first 10 are intact, then one marker for the 15 that did not fit.
    for i in 0..10 {
        match slow.recv().await {
            Some(EventItem::Event(e)) => assert_eq!(e.data, json!({"i": i})),
            other => panic!("unexpected {other:?}"),
        }
    }
    c.execute::<()>("emit", json!({"name": "E", "count": 1}))
        .await
        .expect("emit");
    assert_eq!(slow.recv().await, Some(EventItem::Lagged { missed: 15 }));
    match slow.recv().await {
        Some(EventItem::Event(e)) => assert_eq!(e.data, json!({"i": 0})),
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn replies_without_or_with_foreign_ids_are_unmatched() {
    let m = common::mock::start();
    let c = connect(&m).await;
    let mut all = c.events();
    let v: Value = c.execute("stray", ()).await.expect("stray");
    assert_eq!(v, json!({"after": "stray"}));
    assert_eq!(c.unmatched_count(), 3);
    let mut got = Vec::new();
    while let Some(EventItem::Unmatched(v)) = all.try_recv() {
        got.push(v);
    }
    assert_eq!(
        got,
        vec![
            json!({"error": {"class": "GenericError", "desc": "JSON parse error, expecting value"}}),
            json!({"return": {}, "id": "not-ours"}),
            json!([1, 2]),
        ]
    );
    // Still in step.
    let v: VersionInfo = c.execute("query-version", ()).await.expect("query-version");
    assert_eq!(v.package, "mock");
}

#[tokio::test]
async fn connection_loss_reaches_every_waiter_and_subscriber() {
    let m = common::mock::start();
    let c = connect(&m).await;
    let mut events = c.events();
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..10 {
        let c = c.clone();
        set.spawn(async move { c.execute::<Value>("sleep", json!({"ms": 5000})).await });
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(c.in_flight(), 10);
    let e = c.execute::<Value>("die", ()).await.unwrap_err();
    assert!(e.is_disconnected(), "{e}");
    while let Some(r) = set.join_next().await {
        let e = r.expect("task").unwrap_err();
        assert!(e.is_disconnected(), "{e}");
        assert_eq!(e.request().map(|r| r.command.as_str()), Some("sleep"));
    }
    assert_eq!(events.recv().await, None);
    assert!(c.is_closed());
    assert_eq!(&*c.closed().await, "the server closed the connection");
    let e = c.execute::<Value>("query-version", ()).await.unwrap_err();
    assert!(e.is_disconnected());
}

#[tokio::test]
async fn close_by_the_client() {
    let m = common::mock::start();
    let c = connect(&m).await;
    let c2 = c.clone();
    let t = tokio::spawn(async move { c2.execute::<Value>("sleep", json!({"ms": 5000})).await });
    tokio::time::sleep(Duration::from_millis(20)).await;
    c.close();
    let e = t.await.expect("join").unwrap_err();
    assert!(e.is_disconnected(), "{e}");
    assert_eq!(&*c.closed().await, "closed by the client");
}

#[tokio::test]
async fn file_descriptors_travel_with_their_command() {
    let m = common::mock::start();
    let c = connect(&m).await;
    assert!(c.can_pass_fds());
    let (r, mut w) = std::io::pipe().expect("pipe");
    w.write_all(b"hello through SCM_RIGHTS").expect("write");
    drop(w);
    c.getfd("fd0", r.as_fd()).await.expect("getfd");
    let named: Value = c.execute("mock-fds", ()).await.expect("mock-fds");
    assert_eq!(named, json!({"fd0": "hello through SCM_RIGHTS"}));
    // Without an fd the server says so.
    let e = c
        .execute::<Value>("getfd", json!({"fdname": "x"}))
        .await
        .unwrap_err();
    assert_eq!(e.desc(), Some("No file descriptor supplied via SCM_RIGHTS"));
    // add-fd answers with fdset info.
    let (r2, _w2) = std::io::pipe().expect("pipe");
    let info = c
        .add_fd(r2.as_fd(), Some(7), Some("x"))
        .await
        .expect("add-fd");
    assert_eq!(info.fdset_id, 7);
    assert!(info.fd >= 0);
    let info = c.add_fd(r2.as_fd(), None, None).await.expect("add-fd");
    assert_eq!(info.fdset_id, 0);
}

#[tokio::test]
async fn fds_need_a_unix_socket() {
    let (client_io, server_io) = tokio::io::duplex(4096);
    let server = tokio::spawn(async move {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
        let (r, mut w) = tokio::io::split(server_io);
        w.write_all(b"{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, \"minor\": 0, \"major\": 1}, \"package\": \"\"}, \"capabilities\": []}}\r\n").await.expect("greet");
        let mut lines = BufReader::new(r).lines();
        while let Ok(Some(l)) = lines.next_line().await {
            let v: Value = serde_json::from_str(&l).expect("json");
            let id = v.get("id").cloned().unwrap_or(Value::Null);
            let out = json!({"return": {}, "id": id});
            w.write_all(format!("{out}\r\n").as_bytes())
                .await
                .expect("reply");
        }
    });
    let (r, w) = tokio::io::split(client_io);
    let c = ConnectOptions::default()
        .from_io(r, w)
        .await
        .expect("connect");
    assert!(!c.oob_enabled(), "not offered");
    assert!(!c.can_pass_fds());
    let (p, _w) = std::io::pipe().expect("pipe");
    let e = c.getfd("x", p.as_fd()).await.unwrap_err();
    assert!(matches!(e, Error::InvalidRequest { .. }), "{e}");
    c.execute::<()>("anything", ()).await.expect("still fine");
    c.close();
    let _ = server.await;
}

#[tokio::test]
async fn bad_greetings() {
    for greeting in ["{\"return\": {}}\n", "not json\n", ""] {
        let (client_io, server_io) = tokio::io::duplex(4096);
        let g = greeting.to_string();
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            let mut s = server_io;
            let _ = s.write_all(g.as_bytes()).await;
            let _ = s.shutdown().await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        });
        let (r, w) = tokio::io::split(client_io);
        let e = ConnectOptions::default().from_io(r, w).await.unwrap_err();
        assert!(matches!(e, Error::Greeting(_)), "{greeting:?}: {e}");
    }
}

#[test]
fn blocking_wrapper() {
    let m = common::mock::start();
    let mut c = blocking::Client::connect_unix(&m.socket).expect("connect");
    assert_eq!(c.greeting().version.package, "mock");
    let v: VersionInfo = c.execute("query-version", ()).expect("query-version");
    assert_eq!(v.qemu.minor, 2);
    c.execute::<()>("emit", json!({"name": "X", "count": 2}))
        .expect("emit");
    for i in 0..2 {
        match c.next_event(Some(Duration::from_secs(5))) {
            Some(EventItem::Event(e)) => {
                assert_eq!((e.event.as_str(), e.data.clone()), ("X", json!({"i": i})))
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(c.next_event(Some(Duration::from_millis(20))), None);
    let e = c.execute::<Value>("nope", ()).unwrap_err();
    assert_eq!(e.class(), Some("CommandNotFound"));
}

#[tokio::test]
async fn over_tcp() {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (r, mut w) = s.into_split();
                let _ = w.write_all(b"{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 3, \"minor\": 2, \"major\": 1}, \"package\": \"tcp\"}, \"capabilities\": [\"oob\"]}}\r\n").await;
                let mut lines = BufReader::new(r).lines();
                while let Ok(Some(l)) = lines.next_line().await {
                    let v: Value = serde_json::from_str(&l).unwrap_or(Value::Null);
                    let out = json!({"return": {"got": v.get("arguments")}, "id": v.get("id")});
                    if w.write_all(format!("{out}\r\n").as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    let c = Client::connect_tcp(addr).await.expect("connect");
    assert_eq!(c.greeting().version.package, "tcp");
    assert!(c.oob_enabled());
    assert!(!c.can_pass_fds());
    let v: Value = c.execute("x", json!({"a": 1})).await.expect("x");
    assert_eq!(v, json!({"got": {"a": 1}}));
    let c2 = Client::connect(&format!("tcp:{addr}"))
        .await
        .expect("connect tcp:");
    let v: Value = c2.execute("y", ()).await.expect("y");
    assert_eq!(v, json!({"got": null}));
}

#[tokio::test]
async fn requests_larger_than_the_socket_buffer() {
    let m = common::mock::start();
    let c = connect(&m).await;
    // 2 MiB does not fit in a unix socket's buffer: the first request is written in parts, and
    // the requests made meanwhile queue behind it, each whole and in order.
    let big = "x".repeat(2 << 20);
    let mut set = tokio::task::JoinSet::new();
    for i in 0..20u64 {
        let c = c.clone();
        let s = if i % 7 == 0 {
            big.clone()
        } else {
            i.to_string()
        };
        set.spawn(async move {
            let v: Value = c
                .execute("echo", json!({"i": i, "s": s}))
                .await
                .expect("echo");
            assert_eq!(v, json!({"i": i, "s": s}));
        });
    }
    while let Some(r) = set.join_next().await {
        r.expect("task");
    }
    // A big request given up after its first poll is still written whole.
    let fut = c.execute::<Value>("echo", json!({"s": big}));
    assert!(common::poll_once(fut).await.is_none());
    let (r, mut w) = std::io::pipe().expect("pipe");
    w.write_all(b"after the big one").expect("write");
    drop(w);
    c.getfd("fd1", r.as_fd()).await.expect("getfd");
    let named: Value = c.execute("mock-fds", ()).await.expect("mock-fds");
    assert_eq!(named, json!({"fd1": "after the big one"}));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(c.in_flight(), 0);
    assert_eq!(c.unmatched_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_tasks_and_events_on_a_multi_thread_runtime() {
    // Replies are read by whichever waiting request (or the reader task) gets there first:
    // every reply must reach its request and every event its subscriber, in order.
    let m = common::mock::start();
    let c = connect(&m).await;
    let mut events = c.subscribe(EventFilter::name("TICK"));
    let mut set = tokio::task::JoinSet::new();
    for t in 0..8u64 {
        let c = c.clone();
        set.spawn(async move {
            for i in 0..150u64 {
                if t == 0 && i % 10 == 0 {
                    let _: Value = c
                        .execute("emit", json!({"name": "TICK", "count": 5}))
                        .await
                        .expect("emit");
                } else {
                    let v: Value = c
                        .execute("echo", json!({"t": t, "i": i}))
                        .await
                        .expect("echo");
                    assert_eq!(v, json!({"t": t, "i": i}));
                }
                if i % 50 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        });
    }
    while let Some(r) = set.join_next().await {
        r.expect("task");
    }
    // The events were emitted before their command's reply: all of them are in by now.
    let mut n = 0;
    while let Some(item) = events.try_recv() {
        match item {
            EventItem::Event(e) => assert_eq!(e.data, json!({"i": n % 5})),
            other => panic!("unexpected {other:?}"),
        }
        n += 1;
    }
    assert_eq!(n, 15 * 5);
    // With no request waiting, the reader task still reads: an event arriving alone is seen.
    let c2 = c.clone();
    let waiter = tokio::spawn(async move {
        let mut s = c2.subscribe(EventFilter::name("LATE"));
        s.recv().await
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    let _: Value = c
        .execute("emit", json!({"name": "LATE", "count": 1}))
        .await
        .expect("emit");
    let got = tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .expect("in time")
        .expect("join");
    assert!(matches!(got, Some(EventItem::Event(e)) if e.event == "LATE"));
    assert_eq!(c.in_flight(), 0);
    // A reply arriving when no request waits any more is read all the same.
    let e = c
        .call(
            Command::new("sleep")
                .arg("ms", 60)
                .timeout(Duration::from_millis(5)),
        )
        .await
        .unwrap_err();
    assert!(e.is_timeout(), "{e}");
    assert_eq!(c.in_flight(), 1);
    let start = std::time::Instant::now();
    while c.in_flight() > 0 && start.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(c.in_flight(), 0, "the late reply was read");
}
