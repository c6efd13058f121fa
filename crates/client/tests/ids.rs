//! Property: a reply is matched to its request whatever JSON value the id is and however the
//! server spells it back (member order, escapes, `1e3` for `1000`), through a live connection.

mod common;

use proptest::prelude::*;
use qmpkit_client::{Client, Command};
use serde_json::{json, Map, Value};

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-1e6f64..1e6).prop_map(|f| json!(f)),
        "\\PC{0,8}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec(("[a-z]{0,3}", inner), 0..4)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// Reverse every object's members, as a server free to reorder them might.
fn reorder(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut pairs: Vec<(String, Value)> =
                m.iter().map(|(k, v)| (k.clone(), reorder(v))).collect();
            pairs.reverse();
            Value::Object(pairs.into_iter().collect())
        }
        Value::Array(a) => Value::Array(a.iter().map(reorder).collect()),
        other => other.clone(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn any_id_is_matched(id in json_value()) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("rt");
        rt.block_on(async {
            // An in-memory server that echoes the id with its members reordered and every
            // non-ASCII character escaped.
            let (client_io, server_io) = tokio::io::duplex(1 << 16);
            tokio::spawn(async move {
                use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
                let (r, mut w) = tokio::io::split(server_io);
                let _ = w.write_all(b"{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, \"minor\": 0, \"major\": 1}, \"package\": \"\"}, \"capabilities\": []}}\r\n").await;
                let mut lines = BufReader::new(r).lines();
                while let Ok(Some(l)) = lines.next_line().await {
                    let Ok(v) = serde_json::from_str::<Value>(&l) else { continue };
                    let id = reorder(v.get("id").unwrap_or(&Value::Null));
                    let text = serde_json::to_string(&id).unwrap_or_default();
                    let escaped: String = text
                        .chars()
                        .flat_map(|c| {
                            if c.is_ascii() {
                                vec![c.to_string()]
                            } else {
                                let mut b = [0u16; 2];
                                c.encode_utf16(&mut b).iter().map(|u| format!("\\u{u:04X}")).collect()
                            }
                        })
                        .collect();
                    let out = format!("{{\"return\": {{}}, \"id\": {escaped}}}\r\n");
                    if w.write_all(out.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
            let (r, w) = tokio::io::split(client_io);
            let c: Client = qmpkit_client::ConnectOptions::default().from_io(r, w).await.expect("connect");
            let v = c
                .call(Command::new("x").id(id.clone()).timeout(std::time::Duration::from_secs(5)))
                .await;
            prop_assert_eq!(v.map_err(|e| e.to_string()), Ok(json!({})));
            prop_assert_eq!(c.unmatched_count(), 0);
            Ok(())
        })?;
    }
}
