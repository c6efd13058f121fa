//! A typed client session against a live qemu-storage-daemon 10.0.2, with the bindings
//! generated (at build time, see `build.rs`) from that same daemon's `query-qmp-schema`
//! answer: greeting, `blockdev-add` of null-co nodes, `query-named-block-nodes`, a backup job
//! and its events, decoded into the generated event enum.

use std::time::Duration;

use qmpkit_client::{Client, TypedEventItem};
use qmpkit_codegen_tests::qsd_10_0_2 as q;
use qmpkit_codegen_tests::QSD_SCHEMA_SOURCE;
use qmpkit_qapi::first_difference;

fn null_node(name: &str, size: i64) -> q::BlockdevAdd {
    q::BlockdevAdd(q::BlockdevAddArg {
        node_name: Some(name.to_string()),
        discard: None,
        cache: None,
        active: None,
        read_only: None,
        auto_read_only: None,
        force_share: None,
        detect_zeroes: None,
        driver: q::BlockdevAddArgBranch::NullCo(q::BlockdevAddArgNullAio {
            size: Some(size),
            latency_ns: None,
            read_zeroes: None,
        }),
    })
}

#[tokio::test]
async fn typed_session_with_bindings_from_the_live_daemon() {
    qmpkit_testkit::program_or_skip!("qemu-storage-daemon");
    let qsd = match qmpkit_testkit::qsd::start() {
        Ok(q) => q,
        Err(reason) => qmpkit_testkit::skip!("{reason}"),
    };
    if QSD_SCHEMA_SOURCE != "live" {
        qmpkit_testkit::skip!(
            "the bindings were generated from the saved answer: no qemu-storage-daemon ran at build time"
        );
    }
    let client = Client::connect_unix(&qsd.socket).await.expect("connect");
    let v = &client.greeting().version;
    assert_eq!((v.qemu.major, v.qemu.minor), (10, 0));

    // The schema the daemon serves now is the one the bindings were made from, and its answer
    // decodes strictly into the generated types.
    let raw = client
        .call(qmpkit_client::Command::new("query-qmp-schema"))
        .await
        .unwrap();
    let typed: Vec<q::QueryQmpSchemaRet> = qmpkit_qapi::decode_strict(&raw).unwrap();
    assert!(typed.len() > 100);
    let version = client.call(q::QueryVersion {}).await.unwrap();
    assert_eq!(version.qemu.major, 10);

    let mut events = client.typed_events::<q::AnyEvent>();
    client.call(null_node("src", 64 << 20)).await.unwrap();
    client.call(null_node("dst", 64 << 20)).await.unwrap();
    let nodes = client
        .call(q::QueryNamedBlockNodes { flat: Some(true) })
        .await
        .unwrap();
    let src = nodes
        .iter()
        .find(|n| n.node_name.as_deref() == Some("src"))
        .expect("node src listed");
    assert_eq!(src.drv, "null-co");
    assert_eq!(src.image.virtual_size, 64 << 20);
    // The typed reply encodes back to what the daemon sent.
    let raw_nodes = client
        .call(
            qmpkit_client::Command::new("query-named-block-nodes")
                .args(serde_json::json!({"flat": true})),
        )
        .await
        .unwrap();
    assert_eq!(
        first_difference(&raw_nodes, &serde_json::to_value(&nodes).unwrap()),
        None
    );

    // A backup job, its events typed.
    let backup = q::BlockdevBackup {
        job_id: Some("job0".into()),
        device: "src".into(),
        sync: q::DriveMirrorSync::Full,
        speed: None,
        bitmap: None,
        bitmap_mode: None,
        compress: None,
        on_source_error: None,
        on_target_error: None,
        auto_finalize: None,
        auto_dismiss: None,
        filter_node_name: None,
        discard_source: None,
        x_perf: None,
        target: "dst".into(),
    };
    client.call(backup).await.unwrap();
    let mut statuses = Vec::new();
    let mut completed = None;
    tokio::time::timeout(Duration::from_secs(30), async {
        // Until the job has completed and concluded (the two come in either order).
        while completed.is_none() || statuses.last() != Some(&q::JobStatusChangeStatus::Concluded) {
            match events.recv().await {
                Some(TypedEventItem::Event { event, timestamp }) => {
                    assert!(timestamp.seconds > 0);
                    match event {
                        q::AnyEvent::JobStatusChange(c) => {
                            assert_eq!(c.id, "job0");
                            statuses.push(c.status);
                        }
                        q::AnyEvent::BlockJobCompleted(c) => completed = Some(c),
                        q::AnyEvent::Unknown { name, .. } => panic!("unknown event {name}"),
                        _ => {}
                    }
                }
                Some(TypedEventItem::Invalid { event, error }) => {
                    panic!("event {} does not decode: {error}", event.event)
                }
                Some(TypedEventItem::Lagged { .. }) => {}
                None => panic!("connection closed"),
            }
        }
    })
    .await
    .expect("the job completes");
    let completed = completed.expect("BLOCK_JOB_COMPLETED");
    assert_eq!(completed.device, "job0");
    assert_eq!(completed.r#type, q::BlockJobCompletedType::Backup);
    assert_eq!(completed.len, 64 << 20);
    assert_eq!(completed.error, None);
    assert!(statuses.contains(&q::JobStatusChangeStatus::Created));
    assert!(statuses.contains(&q::JobStatusChangeStatus::Running));

    // An error from the daemon comes back as the error it is.
    let e = client
        .call(q::BlockdevDel {
            node_name: "nonexistent".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.class(), Some("GenericError"), "{e}");
    client.call(q::Quit {}).await.unwrap();
}
