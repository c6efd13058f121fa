//! A [`Machine`] behind a QMP server.
//!
//! [`MachineHandle::register`] puts a handler into the server's
//! [`Registry`] for every command of the served schema that the machine
//! implements, and for the others what [`Unhandled`] says: a handler that
//! answers that the command is not implemented ([`qmpkit_machine::not_implemented`]; the
//! default), or one that answers a value synthesised from the return type
//! (a mock), or none (`CommandNotFound`). Unimplemented commands get a
//! handler so that injected failures reach them too. After each call the events
//! the machine queued are broadcast at once (QEMU sends STOP/RESUME before
//! the reply); requests the machine serves later (reset, power button,
//! quit, the guest's own actions) are zero-delay timers that a task runs as
//! soon as the reply is out (on machines of QEMU 5.2 and later, shutdown,
//! reset and the power button are served before the reply, so that their
//! events precede it as there), and timer deadlines are real time.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use qmpkit_schema::model::EntityKind;
use qmpkit_schema::Schema;
use qmpkit_server::{Call, EventSender, Registry, Returned, ReturnedResult, Unhandled};
use qmpkit_wire::{ErrorClass, QmpError};
use serde_json::Value;
use tokio::sync::{watch, Notify};

use qmpkit_machine::{Cx, ExitReason, Machine, Reply};

pub use qmpkit_machine::SERVER_BUILTINS;

/// What a command no subsystem takes answers, as `unhandled` says:
/// `entity` is the command's entity in the served schema (the synthesised
/// value is made from its return type).
pub fn answer_unhandled(
    schema: &Schema,
    command: &str,
    entity: Option<usize>,
    unhandled: Unhandled,
) -> Result<Value, QmpError> {
    if qmpkit_machine::OTHER_TARGETS.contains(&command) {
        return Err(QmpError::new(
            ErrorClass::CommandNotFound,
            format!("The command {command} has not been found"),
        ));
    }
    match (entity, unhandled) {
        (Some(id), Unhandled::Synthesize) => {
            Ok(qmpkit_server::synth::synthesize_return(schema, id))
        }
        (_, Unhandled::NotFound) => Err(QmpError::new(
            ErrorClass::CommandNotFound,
            format!("The command {command} has not been found"),
        )),
        _ => Err(qmpkit_machine::not_implemented(command)),
    }
}

/// A machine shared between the handlers of one server and its timer task.
#[derive(Clone)]
pub struct MachineHandle {
    pub machine: Arc<Mutex<Machine>>,
    start: Instant,
    wake: Arc<Notify>,
    exit_tx: Arc<watch::Sender<Option<ExitReason>>>,
    /// Resolves when the machine has ended (`quit`, guest shutdown).
    pub exit_rx: watch::Receiver<Option<ExitReason>>,
    /// The events sink of the timer task, once started.
    events: Arc<Mutex<Option<EventSender>>>,
}

/// Lock a machine, recovering from a poisoned lock (a handler that
/// panicked must not take the machine down with it).
pub fn lock(m: &Mutex<Machine>) -> MutexGuard<'_, Machine> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// Prints on the process's standard error what the machine would have printed on QEMU's
/// (warnings that are not part of any reply).
fn print_diagnostics(m: &mut Machine) {
    let lines = m.take_diagnostics();
    if !lines.is_empty() {
        use std::io::Write;
        let mut err = std::io::stderr().lock();
        for l in lines {
            let _ = err.write_all(l.as_bytes());
        }
        let _ = err.flush();
    }
}

impl MachineHandle {
    pub fn new(mut machine: Machine) -> MachineHandle {
        // What building the machine had to say (its drives' warnings), as QEMU says it at
        // start-up.
        print_diagnostics(&mut machine);
        let (tx, rx) = watch::channel(None);
        MachineHandle {
            machine: Arc::new(Mutex::new(machine)),
            start: Instant::now(),
            wake: Arc::new(Notify::new()),
            exit_tx: Arc::new(tx),
            exit_rx: rx,
            events: Arc::new(Mutex::new(None)),
        }
    }

    /// Nanoseconds since the machine started.
    pub fn now_ns(&self) -> u64 {
        self.start.elapsed().as_nanos().min(u64::MAX as u128) as u64
    }

    /// Register handlers into `reg` for the commands of `schema`; the
    /// commands the machine does not implement answer as `unhandled` says.
    pub fn register(&self, reg: &mut Registry, schema: &Schema, unhandled: Unhandled) {
        self.register_with(reg, schema, unhandled, false)
    }

    /// [`MachineHandle::register`], and with `test_control` the test-control
    /// commands (`__org.qmpkit_…`) even when the served schema lacks them
    /// (they are then served with their arguments unchecked).
    pub fn register_with(
        &self,
        reg: &mut Registry,
        schema: &Schema,
        unhandled: Unhandled,
        test_control: bool,
    ) {
        // One shared handle for all the closures: a fleet registers some
        // 160 handlers per machine.
        let shared = Arc::new(self.clone());
        if test_control {
            for name in qmpkit_machine::testctl::COMMANDS {
                if schema.lookup(name).is_none() {
                    let h = shared.clone();
                    reg.register_sync_returned(name, move |call: Call| {
                        h.call(call, None, unhandled)
                    });
                }
            }
        }
        for (id, e) in schema.iter() {
            if !matches!(e.kind, EntityKind::Command(_)) {
                continue;
            }
            let name = e.name.as_str();
            if qmpkit_machine::OTHER_TARGETS.contains(&name) {
                reg.leave_out(name);
                continue;
            }
            if SERVER_BUILTINS.contains(&name) {
                continue;
            }
            let has = qmpkit_machine::implements(name);
            if !has && unhandled == Unhandled::NotFound {
                continue;
            }
            let h = shared.clone();
            reg.register_sync_returned(name, move |call: Call| h.call(call, Some(id), unhandled));
        }
    }

    /// Serve one call; `entity`: the command's entity in the served schema.
    /// When no subsystem takes the call, `unhandled` says what to answer.
    fn call(&self, call: Call, entity: Option<usize>, unhandled: Unhandled) -> ReturnedResult {
        let given = call.fds.len();
        let mut cx = Cx {
            now_ns: self.now_ns(),
            fds: call.fds,
            session_fds: Some(call.session.named_fds.clone()),
        };
        let (result, timers_due, exit) = {
            let mut m = lock(&self.machine);
            if m.exit.is_some() {
                return Err(QmpError::generic("The machine is shutting down"));
            }
            let r = match m.execute_written(&call.command, &call.args, &mut cx) {
                Some(Ok(Reply::Written(bytes))) => Ok(Returned::Written(bytes)),
                Some(Ok(Reply::Value(v))) => Ok(Returned::Value(v)),
                Some(Err(e)) => Err(e),
                None => answer_unhandled(&m.schema, &call.command, entity, unhandled)
                    .map(Returned::Value),
            };
            m.serve_main_loop_requests(cx.now_ns);
            print_diagnostics(&mut m);
            // Broadcast while the machine is locked, so that events of
            // concurrent calls go out in the order the machine made them.
            for (name, data) in m.take_events() {
                call.events.emit(&name, data);
            }
            // Any timer: the timer task recomputes its deadline.
            (r, m.next_deadline().is_some(), m.exit)
        };
        // A command that took no descriptor leaves them for the next one.
        if cx.fds.len() == given {
            call.session.keep_unused_fds(std::mem::take(&mut cx.fds));
        }
        {
            *self.events_slot() = Some(call.events.clone());
        }
        if timers_due {
            self.wake.notify_one();
        }
        if exit.is_some() {
            let _ = self.exit_tx.send(exit);
        }
        result
    }

    /// Run the machine's timers until it exits: sleep until the next
    /// deadline (or a wake-up after a call), advance the machine, broadcast
    /// its events. `events` may be `None` until the server exists; the
    /// first call's sender is used then.
    pub async fn run_timers(self, events: Option<EventSender>) {
        if let Some(ev) = events {
            if let Ok(mut slot) = self.events.lock() {
                *slot = Some(ev);
            }
        }
        loop {
            let deadline = lock(&self.machine).next_deadline();
            match deadline {
                Some(d) => {
                    let now = self.now_ns();
                    if d > now {
                        let sleep = tokio::time::sleep(Duration::from_nanos(d - now));
                        tokio::select! {
                            _ = sleep => {}
                            _ = self.wake.notified() => {}
                        }
                    } else {
                        // Let the reply of the call that posted the
                        // request go out first.
                        tokio::task::yield_now().await;
                    }
                }
                None => self.wake.notified().await,
            }
            if self.advance(self.now_ns()).is_some() {
                return;
            }
        }
    }

    /// Bring the machine to `now_ns` (ns since it started): run its due
    /// timers and broadcast their events, as the timer task does at each
    /// deadline. Tests that step a clock call it with times ahead of
    /// [`MachineHandle::now_ns`] and start no timer task. `Some` once the
    /// machine has ended.
    pub fn advance(&self, now_ns: u64) -> Option<ExitReason> {
        let exit = {
            let mut m = lock(&self.machine);
            m.advance(now_ns);
            self.broadcast(m.take_events());
            m.exit
        };
        if exit.is_some() {
            let _ = self.exit_tx.send(exit);
        }
        exit
    }

    /// Where the timer task and later calls broadcast events (a fleet
    /// member's server is replaced when it is rebuilt).
    pub fn set_events(&self, events: Option<EventSender>) {
        *self.events_slot() = events;
    }

    /// The events sink slot, even if a holder panicked.
    fn events_slot(&self) -> MutexGuard<'_, Option<EventSender>> {
        match self.events.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Send `events` through the timer task's sink, if there is one yet.
    fn broadcast(&self, events: Vec<(String, Option<Value>)>) {
        if events.is_empty() {
            return;
        }
        let sink = self.events_slot().clone();
        if let Some(sink) = sink {
            for (name, data) in events {
                sink.emit(&name, data);
            }
        }
    }

    /// Wait until the machine has ended.
    pub async fn wait_exit(&self) -> ExitReason {
        let mut rx = self.exit_rx.clone();
        loop {
            if let Some(r) = *rx.borrow() {
                return r;
            }
            if rx.changed().await.is_err() {
                return ExitReason::Shutdown;
            }
        }
    }

    /// End the machine from outside (a signal): SHUTDOWN as QEMU sends on
    /// SIGTERM/SIGINT, broadcast now.
    /// Run one human monitor command line as a readline monitor does:
    /// its output (CR LF line ends); events go to the QMP clients.
    pub fn hmp_line(&self, line: &str) -> String {
        let mut cx = Cx {
            now_ns: self.now_ns(),
            fds: Vec::new(),
            session_fds: None,
        };
        let (out, events, timers_due, exit) = {
            let mut m = lock(&self.machine);
            if m.exit.is_some() {
                return String::new();
            }
            let out = qmpkit_machine::hmp::run_line(&mut m, &mut cx, line);
            print_diagnostics(&mut m);
            (
                qmpkit_machine::hmp::crlf(&out),
                m.take_events(),
                m.next_deadline().is_some(),
                m.exit,
            )
        };
        self.broadcast(events);
        if timers_due {
            self.wake.notify_one();
        }
        if exit.is_some() {
            let _ = self.exit_tx.send(exit);
        }
        out
    }

    /// Serve QEMU's human monitor with its line editor on `stream` (a
    /// `-monitor` / `-mon …,mode=readline` connection): the banner, then for
    /// each line typed its echo, the command's output and the prompt; after
    /// `quit` the connection ends with the machine.
    pub async fn serve_readline<S>(&self, stream: S)
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite,
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut rd, mut wr) = tokio::io::split(stream);
        let version = lock(&self.machine).config.qemu_version;
        let mut out = qmpkit_machine::readline::banner(version).into_bytes();
        out.extend_from_slice(qmpkit_machine::readline::PROMPT.as_bytes());
        let mut ed = qmpkit_machine::readline::LineEditor::new();
        let mut buf = vec![0u8; 4096];
        loop {
            if !out.is_empty() {
                if wr.write_all(&out).await.is_err() || wr.flush().await.is_err() {
                    return;
                }
                out.clear();
            }
            let n = tokio::select! {
                r = rd.read(&mut buf) => match r {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                },
                _ = self.wait_exit() => return,
            };
            for &b in &buf[..n] {
                let Some(line) = ed.feed(b, &mut out) else {
                    continue;
                };
                out.extend_from_slice(self.hmp_line(&line).as_bytes());
                let word = line.split_whitespace().next().unwrap_or("");
                if matches!(word, "q" | "quit") {
                    // QEMU never comes back to the prompt after quit.
                    let _ = wr.write_all(&out).await;
                    let _ = wr.flush().await;
                    self.wait_exit().await;
                    return;
                }
                out.extend_from_slice(qmpkit_machine::readline::PROMPT.as_bytes());
            }
        }
    }

    pub fn host_signal(&self) {
        let events = {
            let mut m = lock(&self.machine);
            if m.exit.is_none() {
                m.run.no_shutdown = false;
                qmpkit_machine::runstate::do_shutdown(
                    &mut m,
                    qmpkit_machine::runstate::ShutdownCause::HostSignal,
                );
            }
            m.take_events()
        };
        self.broadcast(events);
        let _ = self.exit_tx.send(Some(ExitReason::Shutdown));
    }
}
