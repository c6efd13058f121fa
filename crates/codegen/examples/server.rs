//! A QMP server whose commands are implemented through a generated trait.
//!
//! `examples/demo/demo.json` is a small schema; `examples/demo/qapi.rs` its bindings, made by
//! `qmpkit schema codegen --lang rust examples/demo/demo.json -o examples/demo/qapi.rs` (the
//! test `example_bindings_are_fresh` fails when they are stale). `Counters` implements the
//! trait `Commands`: each method takes the command's struct and returns its reply type; the
//! server decodes arguments (after checking them against the schema as QEMU does) and encodes
//! replies. `counter-reset-all` is left out: it answers that it has no implementation.
//!
//! Run it with `cargo run -p qmpkit-codegen --example server -- /tmp/demo.sock`, then talk to
//! it with any QMP client.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use qmpkit_qapi::server::{CommandError, Reply};
use qmpkit_qapi::Empty;
use qmpkit_server::typed::TypedRegistry;
use qmpkit_server::{BindOptions, Call, Registry, Server, ServerOptions, Transport};

#[allow(dead_code)]
mod demo {
    include!("demo/qapi.rs");
}

/// The example's state: counters by name.
#[derive(Default)]
pub struct Counters {
    counters: Mutex<BTreeMap<String, demo::Counter>>,
}

impl Counters {
    fn changed(call: &Call, c: &demo::Counter) {
        let data = demo::CounterChanged {
            name: c.name.clone(),
            value: c.value,
        };
        call.events.emit(
            <demo::CounterChanged as qmpkit_qapi::Event>::NAME,
            serde_json::to_value(data).ok(),
        );
    }
}

impl demo::Commands<Call> for Counters {
    async fn counter_add(&self, args: demo::CounterAdd, _: Call) -> Reply<demo::Counter> {
        let mut map = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        if map.contains_key(&args.name) {
            return Err(CommandError::generic(format!(
                "Counter '{}' already exists",
                args.name
            )));
        }
        let c = demo::Counter {
            name: args.name.clone(),
            value: 0,
            color: args.color,
        };
        map.insert(args.name, c.clone());
        Ok(c)
    }

    async fn counter_incr(&self, args: demo::CounterIncr, call: Call) -> Reply<demo::Counter> {
        let mut map = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        let Some(c) = map.get_mut(&args.name) else {
            return Err(CommandError::new(
                "DeviceNotFound",
                format!("Counter '{}' not found", args.name),
            ));
        };
        c.value = c.value.saturating_add(args.by.unwrap_or(1));
        Self::changed(&call, c);
        Ok(c.clone())
    }

    async fn counter_del(&self, args: demo::CounterDel, _: Call) -> Reply<Empty> {
        let mut map = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        match map.remove(&args.name) {
            Some(_) => Ok(Empty),
            None => Err(CommandError::new(
                "DeviceNotFound",
                format!("Counter '{}' not found", args.name),
            )),
        }
    }

    async fn query_counters(&self, _: demo::QueryCounters, _: Call) -> Reply<Vec<demo::Counter>> {
        let map = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        Ok(map.values().cloned().collect())
    }
}

/// The demo schema, checked.
pub fn schema() -> Arc<qmpkit_schema::Schema> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/demo/demo.json");
    match qmpkit_schema::load(path.as_ref(), qmpkit_schema::Dialect::Modern) {
        Ok(s) => Arc::new(s),
        Err(e) => panic!("{e}"),
    }
}

/// A server of the demo schema with `Counters` behind it.
pub fn server() -> Server {
    let mut registry = Registry::new();
    demo::register_commands(&mut TypedRegistry::new(
        &mut registry,
        Arc::new(Counters::default()),
    ));
    Server::new(schema(), registry, ServerOptions::default())
}

#[tokio::main]
async fn main() {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "/tmp/qmpkit-demo.sock".to_string());
    let t = match Transport::parse_qmp(&format!("unix:{path},server=on,wait=off")) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    };
    let listener = match qmpkit_server::bind(&t, &BindOptions::default()).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    };
    println!("QMP on {}", listener.describe());
    if let Err(e) = server().serve(listener).await {
        eprintln!("{e}");
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use qmpkit_client::{Client, TypedEventItem};

    #[tokio::test]
    async fn typed_handlers_answer_typed_calls() {
        let dir = std::env::temp_dir().join(format!("qmpkit-demo-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let sock = dir.join("demo.sock");
        let _ = std::fs::remove_file(&sock);
        let t =
            Transport::parse_qmp(&format!("unix:{},server=on,wait=off", sock.display())).unwrap();
        let listener = qmpkit_server::bind(&t, &BindOptions::default())
            .await
            .unwrap();
        let srv = server();
        let running = srv.clone();
        tokio::spawn(async move { running.serve(listener).await });
        let client = Client::connect_unix(&sock).await.unwrap();
        let mut events = client.typed_events::<demo::AnyEvent>();

        let c = client
            .call(demo::CounterAdd {
                name: "a".into(),
                color: Some(demo::Color::Blue),
            })
            .await
            .unwrap();
        assert_eq!((c.value, c.color), (0, Some(demo::Color::Blue)));
        let c = client
            .call(demo::CounterIncr {
                name: "a".into(),
                by: Some(5),
            })
            .await
            .unwrap();
        assert_eq!(c.value, 5);
        match events.recv().await {
            Some(TypedEventItem::Event {
                event: demo::AnyEvent::CounterChanged(e),
                ..
            }) => assert_eq!((e.name.as_str(), e.value), ("a", 5)),
            other => panic!("{other:?}"),
        }
        let all = client.call(demo::QueryCounters {}).await.unwrap();
        assert_eq!(all.len(), 1);
        // The implementation's errors, in its classes.
        let e = client
            .call(demo::CounterAdd {
                name: "a".into(),
                color: None,
            })
            .await
            .unwrap_err();
        assert_eq!(e.desc(), Some("Counter 'a' already exists"));
        let e = client
            .call(demo::CounterDel { name: "b".into() })
            .await
            .unwrap_err();
        assert_eq!(e.class(), Some("DeviceNotFound"));
        // A command the implementation leaves out.
        let e = client.call(demo::CounterResetAll {}).await.unwrap_err();
        assert_eq!(e.class(), Some("CommandNotFound"));
        assert_eq!(
            e.desc(),
            Some("The command counter-reset-all has no implementation")
        );
        // Arguments are checked against the schema before any handler runs.
        let e = client
            .call(qmpkit_client::Command::new("counter-incr").arg("by", 1))
            .await
            .unwrap_err();
        assert_eq!(e.desc(), Some("Parameter 'name' is missing"));
        client
            .call(demo::CounterDel { name: "a".into() })
            .await
            .unwrap();
        srv.shutdown();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
