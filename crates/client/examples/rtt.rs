//! `cargo run --release -p qmpkit-client --example rtt -- SOCKET [SECONDS]`: sequential and
//! pipelined `query-version` rates against any QMP server on a unix socket.

use qmpkit_client::Client;
use serde_json::Value;
use std::time::{Duration, Instant};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let socket = args.next().ok_or("usage: rtt SOCKET [SECONDS]")?;
    let secs: f64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(1.0);
    let d = Duration::from_secs_f64(secs);
    let c = Client::connect_unix(&socket).await?;
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < d {
        c.execute::<Value>("query-version", ()).await?;
        n += 1;
    }
    println!(
        "sequential: {:.0}/s",
        n as f64 / start.elapsed().as_secs_f64()
    );
    let start = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let c = c.clone();
        set.spawn(async move {
            let mut n = 0u64;
            while start.elapsed() < d {
                if c.execute::<Value>("query-version", ()).await.is_err() {
                    break;
                }
                n += 1;
            }
            n
        });
    }
    let mut total = 0;
    while let Some(r) = set.join_next().await {
        total += r.unwrap_or(0);
    }
    println!(
        "pipelined16: {:.0}/s",
        total as f64 / start.elapsed().as_secs_f64()
    );
    c.shutdown().await;
    Ok(())
}
