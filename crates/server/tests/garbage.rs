//! Any bytes, cut anywhere: the session neither panics nor wedges. After a lexical error
//! (a control character, as the protocol specification recommends) a request is answered.

mod common;

use proptest::prelude::*;
use qmpkit_server::{Server, ServerOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn pieces() -> impl Strategy<Value = Vec<u8>> {
    let token = prop_oneof![
        Just(b"{".to_vec()),
        Just(b"}".to_vec()),
        Just(b"[".to_vec()),
        Just(b"]".to_vec()),
        Just(b"\"".to_vec()),
        Just(b"'".to_vec()),
        Just(b":".to_vec()),
        Just(b",".to_vec()),
        Just(b"\"execute\"".to_vec()),
        Just(b"\"exec-oob\"".to_vec()),
        Just(b"\"qmp_capabilities\"".to_vec()),
        Just(b"\"arguments\"".to_vec()),
        Just(b"\"id\"".to_vec()),
        Just(b"\"echo\"".to_vec()),
        Just(b"\"value\"".to_vec()),
        Just(
            b"{\"execute\": \"qmp_capabilities\", \"arguments\": {\"enable\": [\"oob\"]}}".to_vec()
        ),
        Just(b"{\"execute\": \"slow\", \"arguments\": {\"ms\": 1}}".to_vec()),
        Just(b"{\"exec-oob\": \"oob-ping\"}".to_vec()),
        Just(b"\\u12".to_vec()),
        Just(b"1e999".to_vec()),
        Just(b"-0".to_vec()),
        Just(b"null".to_vec()),
        proptest::collection::vec(any::<u8>(), 0..8),
    ];
    proptest::collection::vec(token, 0..40).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn garbage_then_recovery(input in pieces(), cut in 1usize..64) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let out = rt.block_on(async {
            let server = Server::new(common::mini_schema(), common::mini_registry(), ServerOptions::default());
            let (mut ours, theirs) = tokio::io::duplex(1 << 16);
            let task = tokio::spawn(async move { server.serve_stream(theirs).await });
            let reader = tokio::spawn(async move {
                let (mut rd, mut wr) = tokio::io::split(&mut ours);
                let writer = async {
                    for chunk in input.chunks(cut) {
                        wr.write_all(chunk).await.unwrap();
                    }
                    // A lexical error resets the parser, then one more request.
                    wr.write_all(b"\x01{\"execute\": \"echo\", \"arguments\": {\"value\": 1}, \"id\": \"end\"}\n").await.unwrap();
                    wr.shutdown().await.unwrap();
                };
                let mut out = Vec::new();
                let reading = rd.read_to_end(&mut out);
                let (_, r) = tokio::join!(writer, reading);
                r.unwrap();
                out
            });
            let out = tokio::time::timeout(std::time::Duration::from_secs(20), reader)
                .await
                .expect("the session answers and ends")
                .unwrap();
            let _ = task.await;
            out
        });
        let text = String::from_utf8_lossy(&out);
        let last = text.trim_end().rsplit("\r\n").next().unwrap_or("").to_string();
        prop_assert!(last.contains("\"id\": \"end\""), "last line {last:?}");
        for line in text.split_terminator("\r\n") {
            prop_assert!(serde_json::from_str::<serde_json::Value>(line).is_ok(), "{line:?}");
        }
    }
}
