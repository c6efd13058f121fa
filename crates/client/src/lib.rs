//! qmpkit-client: an async QMP client (tokio) and a small blocking wrapper.
//!
//! ```no_run
//! # async fn demo() -> qmpkit_client::Result<()> {
//! use qmpkit_client::{Client, EventFilter, VersionInfo};
//! let client = Client::connect_unix("/run/qemu/qmp.sock").await?; // greeting + negotiation
//! println!("{:?}", client.greeting().version);
//! let mut shutdown = client.subscribe(EventFilter::name("SHUTDOWN"));
//! let v: VersionInfo = client.execute("query-version", ()).await?;
//! let raw: serde_json::Value = client.execute("query-status", ()).await?;
//! # let _ = (v, raw, shutdown.recv().await);
//! # Ok(()) }
//! ```
//!
//! Requests pipeline freely: every request gets a unique `id` and replies are matched by it.
//! See [`client`] for the invariants the connection keeps.

pub mod blocking;
pub mod client;
pub mod error;
pub mod fdpass;
pub mod message;
mod outbox;
mod transport;
pub mod typed;

pub use client::{AddFdInfo, Client, Command, ConnectOptions, Endpoint, Subscription};
pub use error::{Error, RequestInfo, Result};
pub use fdpass::MAX_FDS;
pub use message::{Event, EventFilter, EventItem, Greeting, Timestamp, VersionInfo, VersionTriple};
pub use typed::{Request, TypedEventItem, TypedSubscription};
