//! The machine as a client sees it: behind a real server in this process,
//! reached through a client session. Every request passes the server's
//! validation first, so what reaches the machine is only what a client can
//! make reach it.
#![allow(dead_code)]

use std::sync::{Arc, MutexGuard};

use qmpkit_client::{Client, ConnectOptions, Error, EventItem, Subscription};
use qmpkit_machine::{Machine, MachineConfig};
use qmpkit_machine_server::{lock, MachineHandle};
use qmpkit_server::{Registry, Server, ServerOptions, Unhandled};
use serde_json::Value;

/// The embedded (2.12) schema.
pub fn schema() -> Arc<qmpkit_schema::Schema> {
    Arc::new(qmpkit_machine::embedded::load_schema().expect("embedded schema loads"))
}

/// The default machine on the embedded schema.
pub fn machine() -> Machine {
    Machine::new(Arc::new(MachineConfig::default_machine()), schema())
}

/// One machine behind its own server, and one negotiated client session.
/// No timer task runs: the clock moves only when the test steps it
/// ([`Session::step`]), so runs are deterministic.
pub struct Session {
    pub handle: MachineHandle,
    client: Client,
    events: Subscription,
    // Last: the runtime ends the server's tasks when dropped.
    rt: tokio::runtime::Runtime,
}

impl Session {
    /// Serve `machine` (its schema, its claimed version) as `qmpkit serve`
    /// does by default, with the test-control commands.
    pub fn new(machine: Machine) -> Session {
        let schema = machine.schema.clone();
        let config = machine.config.clone();
        let handle = MachineHandle::new(machine);
        let mut reg = Registry::new();
        handle.register_with(&mut reg, &schema, Unhandled::NotImplemented, true);
        let opts = ServerOptions {
            qemu_version: config.qemu_version,
            package: config.package.clone(),
            ..ServerOptions::default()
        };
        let server = Server::new(schema, reg, opts);
        handle.set_events(Some(server.events()));
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let client = rt.block_on(async {
            let (a, b) = tokio::net::UnixStream::pair().expect("socket pair");
            tokio::spawn(async move { server.serve_unix_stream(a).await });
            ConnectOptions::default()
                .from_unix_stream(b)
                .await
                .expect("session negotiated")
        });
        let events = client.events();
        Session {
            handle,
            client,
            events,
            rt,
        }
    }

    /// Send `cmd` with `args` (a JSON object, or `null` for none); the reply's
    /// `return`, or its error as "Class: desc".
    pub fn run(&self, cmd: &str, args: Value) -> Result<Value, String> {
        let mut c = qmpkit_client::Command::new(cmd);
        if !args.is_null() {
            c = c.args(args);
        }
        match self.rt.block_on(self.client.call(c)) {
            Ok(v) => Ok(v),
            Err(Error::Qmp { class, desc, .. }) => Err(format!("{class}: {desc}")),
            Err(e) => panic!("{cmd}: the session failed: {e}"),
        }
    }

    /// Step the machine's clock by `ms`, running due timers (their events
    /// go to the session).
    pub fn step(&self, ms: u64) {
        let t = self.machine().now_ns + ms * 1_000_000;
        self.handle.advance(t);
    }

    /// The events received so far, as `NAME data` (after a round trip, so
    /// every event sent before now is in).
    pub fn events(&mut self) -> Vec<String> {
        let _ = self.run("query-version", Value::Null);
        let mut out = Vec::new();
        while let Some(item) = self.events.try_recv() {
            if let EventItem::Event(e) = item {
                out.push(match e.data {
                    Value::Null => e.event,
                    d => format!("{} {d}", e.event),
                });
            }
        }
        out
    }

    /// The machine, for checking its state.
    pub fn machine(&self) -> MutexGuard<'_, Machine> {
        lock(&self.handle.machine)
    }
}
