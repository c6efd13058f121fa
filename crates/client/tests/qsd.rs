//! The client against the real qemu-storage-daemon (skipped when it is not installed).

mod common;

use qmpkit_client::{Client, Command, EventFilter, EventItem, VersionInfo};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::os::fd::AsFd;
use std::time::Duration;

const T: Duration = Duration::from_secs(10);

async fn connect(q: &common::Qsd) -> Client {
    common::connect_retry(&q.socket).await
}

#[tokio::test]
async fn negotiation_with_oob() {
    let q = qsd_or_skip!();
    let c = connect(&q).await;
    let g = c.greeting();
    assert_eq!(g.capabilities, vec!["oob".to_string()]);
    assert!(c.oob_enabled());
    let v: VersionInfo = c.execute("query-version", ()).await.expect("query-version");
    assert_eq!(v, g.version, "query-version agrees with the greeting");
    // exec-oob works once negotiated: the server refuses the command, not the envelope.
    let e = c
        .execute_oob::<Value>("query-version", ())
        .await
        .unwrap_err();
    assert_eq!(e.class(), Some("GenericError"));
    assert_eq!(
        e.desc(),
        Some("The command query-version does not support OOB")
    );
    assert!(e.request().is_some_and(|r| r.oob));
}

#[tokio::test]
async fn without_oob_exec_oob_is_refused() {
    let q = qsd_or_skip!();
    let opts = qmpkit_client::ConnectOptions::default().enable_oob(false);
    let c = common::connect_retry_with(&q.socket, &opts).await;
    assert!(!c.oob_enabled());
    let e = c
        .execute_oob::<Value>("query-version", ())
        .await
        .unwrap_err();
    assert_eq!(e.desc(), Some("QMP input member 'exec-oob' is unexpected"));
}

#[tokio::test]
async fn hundred_pipelined_requests() {
    let q = qsd_or_skip!();
    let c = connect(&q).await;
    let expected: VersionInfo = c.execute("query-version", ()).await.expect("query-version");
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..100 {
        let c = c.clone();
        set.spawn(async move { c.execute::<VersionInfo>("query-version", ()).await });
    }
    let mut n = 0;
    while let Some(r) = set.join_next().await {
        assert_eq!(r.expect("join").expect("query-version"), expected);
        n += 1;
    }
    assert_eq!(n, 100);
    // Replies that differ per request land on the right request.
    let mut set = tokio::task::JoinSet::new();
    for i in 0..100 {
        let c = c.clone();
        set.spawn(async move {
            let e = c
                .execute::<Value>("blockdev-del", json!({"node-name": format!("n{i}")}))
                .await
                .unwrap_err();
            assert_eq!(
                e.desc().map(str::to_owned),
                Some(format!("Failed to find node with node-name='n{i}'"))
            );
        });
    }
    while let Some(r) = set.join_next().await {
        r.expect("task");
    }
    assert_eq!(c.in_flight(), 0);
}

#[tokio::test]
async fn errors_keep_class_desc_and_request() {
    let q = qsd_or_skip!();
    let c = connect(&q).await;
    let e = c
        .execute::<Value>("blockdev-del", json!({"node-name": "nope"}))
        .await
        .unwrap_err();
    assert_eq!(e.class(), Some("GenericError"));
    assert_eq!(e.desc(), Some("Failed to find node with node-name='nope'"));
    let r = e.request().expect("request");
    assert_eq!(r.command, "blockdev-del");
    assert_eq!(
        r.arguments.as_ref().and_then(|a| a.get("node-name")),
        Some(&json!("nope"))
    );
    let e = c.execute::<Value>("query-status", ()).await.unwrap_err();
    assert_eq!(e.class(), Some("CommandNotFound"));
    assert_eq!(
        e.desc(),
        Some("The command query-status has not been found")
    );
    let e = c
        .execute::<Value>("qom-list", json!({"path": 42}))
        .await
        .unwrap_err();
    assert_eq!(
        e.desc(),
        Some("Invalid parameter type for 'path', expected: string")
    );
}

#[tokio::test]
async fn block_job_events_while_commands_run() {
    let q = qsd_or_skip!();
    let c = connect(&q).await;
    let mut all = c.events();
    let mut done = c.subscribe(EventFilter::name("BLOCK_JOB_COMPLETED"));
    for node in ["src", "dst"] {
        c.execute::<()>(
            "blockdev-add",
            json!({"driver": "null-co", "node-name": node, "size": 1048576}),
        )
        .await
        .expect("blockdev-add");
    }
    // Keep requests in flight while the job runs and emits.
    let (job, v1, v2) = tokio::join!(
        c.execute::<()>(
            "blockdev-backup",
            json!({"job-id": "j", "device": "src", "target": "dst", "sync": "full"}),
        ),
        c.execute::<VersionInfo>("query-version", ()),
        c.execute::<VersionInfo>("query-version", ()),
    );
    job.expect("blockdev-backup");
    assert_eq!(v1.expect("v1"), v2.expect("v2"));
    let ev = tokio::time::timeout(T, done.recv())
        .await
        .expect("BLOCK_JOB_COMPLETED in time");
    let Some(EventItem::Event(ev)) = ev else {
        panic!("unexpected {ev:?}");
    };
    assert_eq!(ev.event, "BLOCK_JOB_COMPLETED");
    assert_eq!(ev.data["device"], json!("j"));
    assert_eq!(ev.data["type"], json!("backup"));
    assert_eq!(ev.data["len"], json!(1048576));
    assert!(ev.timestamp.seconds > 0);
    // The unfiltered subscription saw the job's status changes in order, up to concluded.
    let mut statuses = Vec::new();
    let mut names = HashSet::new();
    while !statuses.contains(&"concluded".to_string()) {
        match tokio::time::timeout(T, all.recv())
            .await
            .expect("events in time")
        {
            Some(EventItem::Event(e)) => {
                names.insert(e.event.clone());
                if e.event == "JOB_STATUS_CHANGE" {
                    assert_eq!(e.data["id"], json!("j"));
                    statuses.push(e.data["status"].as_str().unwrap_or("").to_string());
                }
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(statuses.first().map(String::as_str), Some("created"));
    assert!(statuses.contains(&"running".to_string()), "{statuses:?}");
    assert!(names.contains("BLOCK_JOB_COMPLETED"));
}

#[tokio::test]
async fn quit_reports_connection_loss() {
    let mut q = qsd_or_skip!();
    let c = connect(&q).await;
    let mut events = c.events();
    c.execute::<()>("quit", ()).await.expect("quit");
    assert_eq!(
        tokio::time::timeout(T, c.closed()).await.as_deref(),
        Ok("the server closed the connection")
    );
    // Every subscription ends (SHUTDOWN may or may not come first).
    loop {
        match tokio::time::timeout(T, events.recv()).await.expect("end") {
            None => break,
            Some(EventItem::Event(_)) => {}
            Some(other) => panic!("unexpected {other:?}"),
        }
    }
    let e = c.execute::<Value>("query-version", ()).await.unwrap_err();
    assert!(e.is_disconnected(), "{e}");
    assert!(q.exited_within(T));
}

#[tokio::test]
async fn timeouts_and_cancellation() {
    let q = qsd_or_skip!();
    let c = connect(&q).await;
    // A request queued behind 2000 others cannot be answered within 1 ms; its reply, when it
    // comes, is consumed quietly and the 2000 still get their own replies.
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..2000 {
        let c = c.clone();
        set.spawn(async move { c.execute::<VersionInfo>("query-version", ()).await });
    }
    tokio::task::yield_now().await;
    let e = c
        .call(Command::new("query-version").timeout(Duration::from_millis(1)))
        .await
        .unwrap_err();
    assert!(e.is_timeout(), "{e}");
    assert_eq!(
        e.request().map(|r| r.command.as_str()),
        Some("query-version")
    );
    while let Some(r) = set.join_next().await {
        assert_eq!(
            r.expect("join").expect("query-version"),
            c.greeting().version
        );
    }
    // Futures cancelled after sending, interleaved with requests that wait.
    let mut set = tokio::task::JoinSet::new();
    for i in 0..60 {
        if i % 3 == 0 {
            let fut = c.execute::<Value>("blockdev-del", json!({"node-name": format!("c{i}")}));
            assert!(
                common::poll_once(fut).await.is_none(),
                "sent, not answered yet"
            );
            continue;
        }
        let c = c.clone();
        set.spawn(async move {
            let e = c
                .execute::<Value>("blockdev-del", json!({"node-name": format!("k{i}")}))
                .await
                .unwrap_err();
            assert_eq!(
                e.desc().map(str::to_owned),
                Some(format!("Failed to find node with node-name='k{i}'"))
            );
        });
    }
    while let Some(r) = set.join_next().await {
        r.expect("task");
    }
    let v: VersionInfo = c.execute("query-version", ()).await.expect("query-version");
    assert_eq!(v.qemu.major, c.greeting().version.qemu.major);
    assert_eq!(c.in_flight(), 0);
    assert_eq!(c.unmatched_count(), 0);
}

#[tokio::test]
async fn fd_passing_keeps_the_stream_in_step() {
    // qemu-storage-daemon 10.0.2 has neither getfd nor add-fd (see its query-commands); the
    // descriptor still travels with the command, and the answer and everything after it match.
    let q = qsd_or_skip!();
    let c = connect(&q).await;
    let (r, _w) = std::io::pipe().expect("pipe");
    for cmd in ["getfd", "add-fd"] {
        let fd = r.as_fd().try_clone_to_owned().expect("dup");
        let mut command = Command::new(cmd).fd(fd);
        if cmd == "getfd" {
            command = command.arg("fdname", "f");
        }
        let e = c.call(command).await.unwrap_err();
        assert_eq!(e.class(), Some("CommandNotFound"));
        assert_eq!(
            e.desc().map(str::to_owned),
            Some(format!("The command {cmd} has not been found"))
        );
    }
    let e = c.add_fd(r.as_fd(), Some(1), None).await.unwrap_err();
    assert_eq!(e.class(), Some("CommandNotFound"));
    let v: VersionInfo = c.execute("query-version", ()).await.expect("query-version");
    assert_eq!(v, c.greeting().version);
}

#[test]
fn blocking_wrapper_against_qsd() {
    let q = qsd_or_skip!();
    let c = common::blocking_connect_retry(&q.socket);
    let v: VersionInfo = c.execute("query-version", ()).expect("query-version");
    assert_eq!(v, c.greeting().version);
    let names: Vec<Value> = c.execute("query-commands", ()).expect("query-commands");
    assert!(names.contains(&json!({"name": "query-version"})));
}

fn nested(depth: usize) -> Value {
    let mut v = json!("x");
    for _ in 0..depth {
        v = json!([v]);
    }
    v
}

#[tokio::test]
async fn inputs_beyond_the_parser_limits_are_refused_before_sending() {
    // QEMU answers input nested deeper than 1024 with errors that carry no id (one per token
    // it then skips); the client refuses such a request itself, so no reply ever loses its id.
    let q = qsd_or_skip!();
    let c = connect(&q).await;
    // Request object + arguments object + 1022 arrays = 1024 levels: the server parses it.
    let e = c
        .execute::<Value>("qom-list", json!({"path": nested(1022)}))
        .await
        .unwrap_err();
    assert_eq!(
        e.desc(),
        Some("Invalid parameter type for 'path', expected: string")
    );
    let e = c
        .execute::<Value>("qom-list", json!({"path": nested(1023)}))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, qmpkit_client::Error::InvalidRequest { reason, .. } if reason == "nesting deeper than 1024"),
        "{e}"
    );
    let v: VersionInfo = c.execute("query-version", ()).await.expect("query-version");
    assert_eq!(v, c.greeting().version);
    assert_eq!(c.unmatched_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_on_a_multi_thread_runtime() {
    let q = qsd_or_skip!();
    let c = connect(&q).await;
    let mut set = tokio::task::JoinSet::new();
    for i in 0..200 {
        let c = c.clone();
        set.spawn(async move {
            if i % 2 == 0 {
                c.execute::<VersionInfo>("query-version", ())
                    .await
                    .map(|v| v.qemu.major > 0)
            } else {
                let e = c
                    .execute::<Value>("blockdev-del", json!({"node-name": format!("m{i}")}))
                    .await
                    .unwrap_err();
                Ok(e.desc() == Some(&format!("Failed to find node with node-name='m{i}'")))
            }
        });
    }
    while let Some(r) = set.join_next().await {
        assert!(r.expect("join").expect("reply"));
    }
}
