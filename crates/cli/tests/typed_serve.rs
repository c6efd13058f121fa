//! A typed client session against `qmpkit serve`, with bindings generated from the machine's
//! own schema (`schema/`): typed calls, replies that encode back to what the server sent,
//! events decoded into the generated event enum.

#[path = "serve_support/mod.rs"]
mod support;

use std::time::Duration;

use qmpkit_client::{Client, TypedEventItem};
use qmpkit_codegen_tests::machine as m;
use support::*;

/// The next typed event, within a few seconds.
async fn next(events: &mut qmpkit_client::TypedSubscription<m::AnyEvent>) -> m::AnyEvent {
    let item = tokio::time::timeout(Duration::from_secs(5), events.recv())
        .await
        .expect("an event in time")
        .expect("connection open");
    match item {
        TypedEventItem::Event { event, .. } => event,
        other => panic!("not an event: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_session_against_qmpkit_serve() {
    let dir = tmpdir("typed");
    let sock = dir.join("m.sock");
    let spec = format!("unix:{},server=on,wait=off", sock.display());
    let _s = spawn(&["-qmp", &spec]);
    wait_for(&sock);
    let client = Client::connect_unix(&sock).await.expect("connect");
    let mut events = client.typed_events::<m::AnyEvent>();

    let status = client.call(m::QueryStatus {}).await.unwrap();
    assert!(status.running);
    assert_eq!(status.status, m::RunState::Running);

    client.call(m::Stop {}).await.unwrap();
    assert!(matches!(next(&mut events).await, m::AnyEvent::Stop(_)));
    let status = client.call(m::QueryStatus {}).await.unwrap();
    assert_eq!(status.status, m::RunState::Paused);
    client.call(m::Cont {}).await.unwrap();
    assert!(matches!(next(&mut events).await, m::AnyEvent::Resume(_)));

    // A reply with nested structs, optional members and enums: typed, and encoded back to
    // exactly what the server sent.
    let blocks = client.call(m::QueryBlock {}).await.unwrap();
    let raw = client
        .call(qmpkit_client::Command::new("query-block"))
        .await
        .unwrap();
    assert_eq!(
        qmpkit_qapi::first_difference(&raw, &serde_json::to_value(&blocks).unwrap()),
        None
    );
    let cd = blocks
        .iter()
        .find(|b| b.device == "ide1-cd0")
        .expect("a CD-ROM");
    assert!(cd.removable);
    let strict: Vec<m::BlockInfo> = qmpkit_qapi::decode_strict(&raw).unwrap();
    assert_eq!(strict, blocks);

    client
        .call(m::Eject {
            device: Some("ide1-cd0".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    match next(&mut events).await {
        m::AnyEvent::DeviceTrayMoved(t) => {
            assert_eq!(t.device, "ide1-cd0");
            assert!(t.tray_open);
        }
        other => panic!("expected DEVICE_TRAY_MOVED, got {other:?}"),
    }

    // The server's errors come back as errors.
    let e = client
        .call(m::Eject {
            device: Some("no-such-drive".into()),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(e.class().is_some(), "{e}");
    client.call(m::Quit {}).await.unwrap();
}
