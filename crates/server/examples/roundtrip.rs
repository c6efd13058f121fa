//! Sequential `query-version` round trips against an in-process server, from a plain blocking
//! socket: `cargo run --release -p qmpkit-server --example roundtrip [current|multi] [SECONDS]`.

use std::io::{BufRead, BufReader, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use qmpkit_schema::{Dialect, MemoryProvider};
use qmpkit_server::{Registry, Server, ServerOptions};

const SCHEMA: &str = "{ 'pragma': { 'command-name-exceptions': [ 'qmp_capabilities' ] } }
{ 'command': 'qmp_capabilities', 'data': { '*enable': [ 'QMPCapability' ] } }
{ 'enum': 'QMPCapability', 'data': [ 'oob' ] }
{ 'struct': 'VersionTriple', 'data': {'major': 'int', 'minor': 'int', 'micro': 'int'} }
{ 'struct': 'VersionInfo', 'data': {'qemu': 'VersionTriple', 'package': 'str'} }
{ 'command': 'query-version', 'returns': 'VersionInfo' }";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let flavor = args
        .get(1)
        .map(String::as_str)
        .unwrap_or("current")
        .to_string();
    let secs: f64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(2.0);
    let provider = MemoryProvider::from_files([("s.json", SCHEMA)]);
    let schema = match qmpkit_schema::load_from("s.json", Dialect::Modern, &provider) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            eprintln!("{e}");
            return;
        }
    };
    let server = Server::new(schema, Registry::new(), ServerOptions::default());
    let dir = std::env::temp_dir().join(format!("qmpkit-rt-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join("s.sock");
    let p2 = path.clone();
    let s2 = server.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = if flavor == "multi" {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
        } else {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
        };
        let Ok(rt) = rt else { return };
        rt.block_on(async move {
            let Ok(l) = qmpkit_server::bind_unix(&p2) else {
                return;
            };
            let _ = tx.send(());
            let _ = s2.serve_unix(l).await;
        });
    });
    let _ = rx.recv();
    let Ok(mut s) = std::os::unix::net::UnixStream::connect(&path) else {
        return;
    };
    let Ok(rs) = s.try_clone() else { return };
    let mut r = BufReader::new(rs);
    let mut line = String::new();
    let _ = r.read_line(&mut line);
    let _ = s.write_all(b"{\"execute\": \"qmp_capabilities\"}\n");
    line.clear();
    let _ = r.read_line(&mut line);
    let start = Instant::now();
    let mut n = 0u64;
    let mut lat = Vec::new();
    while start.elapsed() < Duration::from_secs_f64(secs) {
        let t = Instant::now();
        let _ = s.write_all(b"{\"execute\": \"query-version\", \"id\": 1}\n");
        line.clear();
        let _ = r.read_line(&mut line);
        lat.push(t.elapsed().as_secs_f64() * 1e6);
        n += 1;
    }
    lat.sort_by(f64::total_cmp);
    let q = |x: f64| lat[((lat.len() - 1) as f64 * x) as usize];
    println!(
        "{:.0} round trips/s, p50 {:.1} µs, p99 {:.1} µs",
        n as f64 / start.elapsed().as_secs_f64(),
        q(0.5),
        q(0.99)
    );
    server.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
}
