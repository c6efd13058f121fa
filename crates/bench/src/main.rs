//! `cargo run --release -p qmpkit-bench` — the benchmark harness.

fn main() {
    println!("no benchmarks yet");
}
