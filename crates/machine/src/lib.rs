//! qmpkit-machine: one simulated virtual machine, as its QMP monitor sees it.
//!
//! Pure library: no sockets, no threads, no global state. A [`Machine`] is a
//! value; a fleet is many of them. Time comes from outside (`now_ns`, a
//! monotonic count of nanoseconds since the machine started) so that tests
//! can step a simulated clock and the server glue can use real time.
//!
//! Layout: one module per subsystem. Each subsystem module exposes
//!
//! ```ignore
//! pub fn execute(m: &mut Machine, cmd: &str, args: &Args, cx: &mut Cx) -> Option<CmdResult>
//! ```
//!
//! answering `None` for commands it does not own; [`Machine::execute`] asks
//! each in turn, and [`HANDLED`] lists what they own (for `--list-handlers`).
//! Events go to the machine's outbox with [`Machine::emit`]; the glue
//! drains it after every call and every timer with [`Machine::take_events`].

use std::collections::BTreeMap;

use qmpkit_wire::QmpError;
use serde_json::{Map, Value};

pub mod embedded;

/// Arguments of one call, validated against the schema by the server.
pub type Args = Map<String, Value>;

/// A command's result: the `return` value in schema order, or an error.
pub type CmdResult = Result<Value, QmpError>;

/// Per-call context that is not machine state.
#[derive(Default)]
pub struct Cx {
    /// Monotonic time, nanoseconds since the machine started.
    pub now_ns: u64,
    /// File descriptors that came with the request (getfd, add-fd).
    pub fds: Vec<std::os::fd::OwnedFd>,
    /// Named fds of the calling session (getfd/closefd), if the glue has them.
    pub session_fds: Option<
        std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, std::os::fd::OwnedFd>>>,
    >,
}

/// Something the machine will do by itself later (the modelled guest, jobs,
/// rate-limited follow-ups).
#[derive(Debug, Clone, PartialEq)]
pub enum TimerAction {
    /// A subsystem-defined action: `(subsystem, what, data)`.
    Custom(&'static str, String, Value),
}

/// One simulated machine.
pub struct Machine {
    /// Events waiting to be broadcast: `(name, data)` in emission order.
    outbox: Vec<(String, Option<Value>)>,
    /// Pending timers by deadline (ns), then by insertion order.
    timers: BTreeMap<(u64, u64), TimerAction>,
    timer_seq: u64,
    /// Current time as last seen (ns since start).
    pub now_ns: u64,
}

impl Machine {
    /// Queue an event for broadcast.
    pub fn emit(&mut self, name: &str, data: Option<Value>) {
        self.outbox.push((name.to_string(), data));
    }

    /// Drain queued events, oldest first.
    pub fn take_events(&mut self) -> Vec<(String, Option<Value>)> {
        std::mem::take(&mut self.outbox)
    }

    /// Run `action` `after_ns` from now.
    pub fn schedule(&mut self, after_ns: u64, action: TimerAction) {
        let at = self.now_ns.saturating_add(after_ns);
        self.timer_seq += 1;
        self.timers.insert((at, self.timer_seq), action);
    }

    /// When the next timer is due, if any.
    pub fn next_deadline(&self) -> Option<u64> {
        self.timers.keys().next().map(|k| k.0)
    }

    /// Remove due timers (deadline <= now) and return them in order.
    pub fn take_due(&mut self, now_ns: u64) -> Vec<TimerAction> {
        self.now_ns = self.now_ns.max(now_ns);
        let mut due = Vec::new();
        while let Some((&k, _)) = self.timers.iter().next() {
            if k.0 > now_ns {
                break;
            }
            if let Some(a) = self.timers.remove(&k) {
                due.push(a);
            }
        }
        due
    }
}
