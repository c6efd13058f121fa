//! `cargo run --release -p qmpkit-bench` — the benchmark harness.

mod block;
mod ceiling;
mod client;
mod codegen;
mod forward;
mod machine;
mod migration;
mod probe;
mod process;
mod proto;
mod query_block;
mod schema;
mod startup;
mod tools;
mod wire;

fn main() {
    // The tools section runs do-nothing forwarders as processes of their own.
    forward::from_env();
    // `QMPKIT_BENCH_ONLY=schema,wire` runs only the sections named.
    let only = std::env::var("QMPKIT_BENCH_ONLY").ok();
    let on = |name: &str| match only.as_deref() {
        None => true,
        Some(o) => o.split(',').any(|s| s.trim() == name),
    };
    let mut results = serde_json::Map::new();
    if on("wire") {
        wire::run(&mut results);
    }
    if on("proto") {
        proto::run(&mut results);
    }
    if on("client") {
        client::run(&mut results);
    }
    if on("schema") {
        schema::run(&mut results);
    }
    if on("schema") || on("process") {
        process::run(&mut results);
    }
    if on("codegen") {
        codegen::run(&mut results);
    }
    if on("machine") || on("startup") {
        startup::run(&mut results);
    }
    if on("machine") {
        machine::run(&mut results);
    }
    if on("probe") {
        probe::run(&mut results);
    }
    if on("migration") || on("ringbuf") {
        migration::run(&mut results, on("migration"));
    }
    // `query-block` alone is the block section's `query-block` part.
    if on("block") || on("query-block") {
        block::run(&mut results, on("block"));
    }
    if on("tools") {
        tools::run(&mut results);
    }
    println!("{}", serde_json::Value::Object(results));
}
