//! A blocking wrapper for scripts: the async client on a private one-worker runtime.
//! Do not use it from inside an async context.

use crate::client::{AddFdInfo, ConnectOptions, Endpoint, Subscription};
use crate::error::Result;
use crate::message::{EventItem, Greeting};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::os::fd::BorrowedFd;
use std::path::Path;
use std::time::Duration;

/// A blocking QMP client. Events are collected from the moment it connects
/// (see [`Client::next_event`]).
pub struct Client {
    inner: crate::Client,
    events: Subscription,
    // Dropped last: the tasks of `inner` run on it.
    rt: tokio::runtime::Runtime,
}

impl Client {
    /// Connect to a unix socket path.
    pub fn connect_unix(path: impl AsRef<Path>) -> Result<Client> {
        Client::connect_with(
            &Endpoint::Unix(path.as_ref().to_path_buf()),
            &ConnectOptions::default(),
        )
    }

    /// Connect over TCP (`HOST:PORT`).
    pub fn connect_tcp(addr: &str) -> Result<Client> {
        Client::connect_with(&Endpoint::Tcp(addr.into()), &ConnectOptions::default())
    }

    /// Connect to `unix:PATH` / `tcp:HOST:PORT`.
    pub fn connect(endpoint: &str) -> Result<Client> {
        Client::connect_with(&Endpoint::parse(endpoint), &ConnectOptions::default())
    }

    pub fn connect_with(endpoint: &Endpoint, opts: &ConnectOptions) -> Result<Client> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        // Subscribe before negotiating so that no event after it is missed.
        let mut o = opts.clone();
        o.negotiate = false;
        let inner = rt.block_on(o.connect(endpoint))?;
        let events = inner.events();
        if opts.negotiate {
            rt.block_on(inner.negotiate())?;
        }
        Ok(Client { inner, events, rt })
    }

    pub fn greeting(&self) -> &Greeting {
        self.inner.greeting()
    }

    /// The async client underneath (its futures must run on [`Client::block_on`]).
    pub fn as_async(&self) -> &crate::Client {
        &self.inner
    }

    /// Run a future on this client's runtime.
    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    /// Run a command; see [`crate::Client::execute`].
    pub fn execute<T: DeserializeOwned>(&self, command: &str, args: impl Serialize) -> Result<T> {
        self.rt.block_on(self.inner.execute(command, args))
    }

    /// Send a [`crate::Command`] or a generated command's struct; see [`crate::Client::call`].
    pub fn call<R: crate::typed::Request>(&self, req: R) -> Result<R::Output> {
        self.rt.block_on(self.inner.call(req))
    }

    pub fn getfd(&self, fdname: &str, fd: BorrowedFd<'_>) -> Result<()> {
        self.rt.block_on(self.inner.getfd(fdname, fd))
    }

    pub fn add_fd(
        &self,
        fd: BorrowedFd<'_>,
        fdset_id: Option<i64>,
        opaque: Option<&str>,
    ) -> Result<AddFdInfo> {
        self.rt.block_on(self.inner.add_fd(fd, fdset_id, opaque))
    }

    /// The next event (or lag marker / unmatched reply) received since connecting, waiting up to
    /// `timeout` (`None`: wait as long as it takes). `None` on timeout or when the connection closed.
    pub fn next_event(&mut self, timeout: Option<Duration>) -> Option<EventItem> {
        let events = &mut self.events;
        match timeout {
            Some(t) => self
                .rt
                .block_on(async { tokio::time::timeout(t, events.recv()).await.ok().flatten() }),
            None => self.rt.block_on(events.recv()),
        }
    }

    pub fn close(&self) {
        self.inner.close();
    }
}
