//! `cargo run --release -p qmpkit-bench` — the benchmark harness.

mod client;
mod proto;
mod schema;
mod wire;

fn main() {
    let mut results = serde_json::Map::new();
    wire::run(&mut results);
    proto::run(&mut results);
    client::run(&mut results);
    schema::run(&mut results);
    println!("{}", serde_json::Value::Object(results));
}
