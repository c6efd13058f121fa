//! `qmpkit serve` takes the machine's schema as the build script checked it (the compact
//! model) and the `query-qmp-schema` answer it encoded: served, they must be
//! indistinguishable from the schema parsed and checked at start, byte for byte, for the
//! built-in answers and for what argument validation says about every command.

use std::sync::Arc;

use qmpkit_machine::embedded;
use qmpkit_schema::model::EntityKind;
use qmpkit_server::{Registry, Server, ServerOptions};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Everything a server writes for `input` on one connection.
async fn transcript(server: Server, input: Vec<u8>) -> Vec<u8> {
    let (ours, theirs) = tokio::net::UnixStream::pair().expect("socketpair");
    let session = tokio::spawn(async move { server.serve_unix_stream(theirs).await });
    let (mut r, mut w) = ours.into_split();
    let writer = tokio::spawn(async move {
        let _ = w.write_all(&input).await;
        let _ = w.shutdown().await;
    });
    let mut out = Vec::new();
    let _ = r.read_to_end(&mut out).await;
    let _ = writer.await;
    let _ = session.await;
    out
}

#[test]
fn prechecked_schema_serves_as_the_parsed_one() {
    let parsed = Arc::new(embedded::load_schema().expect("the embedded schema loads"));
    let pre = Arc::new(embedded::load_prechecked().expect("the prechecked model reads"));
    let mut input = Vec::new();
    let mut line = |v: Value| {
        input.extend_from_slice(v.to_string().as_bytes());
        input.extend_from_slice(b"\r\n");
    };
    line(json!({"execute": "qmp_capabilities"}));
    for c in ["query-qmp-schema", "query-commands", "query-version"] {
        line(json!({"execute": c, "id": c}));
    }
    // Every command: without arguments, with one it does not take, and with each of its
    // members given a value of the wrong type.
    for (_, e) in parsed.iter() {
        let EntityKind::Command(c) = &e.kind else {
            continue;
        };
        line(json!({"execute": e.name}));
        line(json!({"execute": e.name, "arguments": {"no-such-member": 1}}));
        if let Some(t) = c.arg_type {
            for m in parsed.object_members(t) {
                line(json!({"execute": e.name, "arguments": {m.name.clone(): [[{}]]}}));
            }
        }
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (a, b) = rt.block_on(async {
        let a = Server::new(parsed.clone(), Registry::new(), ServerOptions::default());
        let b = Server::with_schema_reply(
            pre,
            Registry::new(),
            ServerOptions::default(),
            embedded::QMP_SCHEMA_REPLY,
        );
        (
            transcript(a, input.clone()).await,
            transcript(b, input).await,
        )
    });
    let text = String::from_utf8_lossy(&a);
    assert!(text.lines().count() > 500, "{text}");
    assert!(text.contains("\"id\": \"query-qmp-schema\""), "{text}");
    if a != b {
        let b = String::from_utf8_lossy(&b);
        for (x, y) in text.lines().zip(b.lines()) {
            assert_eq!(x, y);
        }
        panic!("the transcripts differ in length");
    }
}
