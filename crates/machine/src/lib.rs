//! qmpkit-machine: one simulated virtual machine, as its QMP monitor sees it.
//!
//! Pure library: no sockets, no threads, no global state. A [`Machine`] is a
//! value; a fleet is many of them. Time comes from outside (`now_ns`, a
//! monotonic count of nanoseconds since the machine started) so that tests
//! can step a simulated clock and a server (`qmpkit-machine-server`) can use
//! real time.
//!
//! Layout: the subsystems' typed state and behaviour (`runstate`, `devices`, `block`, …),
//! the QMP handlers above them ([`qmp`], bound to the commands of the machine's own schema
//! by one table and called through the generated [`api::dispatch`]), HMP above those, and
//! the version view ([`view`]) that converts requests of the served interface to the
//! machine's own and replies and events back; `tests/layers.rs` holds the order.
//! [`Machine::execute`] runs one request through the view and the table. Events go to the
//! machine's outbox typed with [`Machine::emit_event`]; the glue drains it after every call
//! and every timer with [`Machine::take_events`].
//!
//! Subsystem state lives in one `pub` field per subsystem on [`Machine`]
//! (`pub run: runstate::RunStateData`, …), created from the configuration in
//! [`Machine::new`]. A subsystem that acts later schedules its own variant
//! of [`TimerAction`] (`TimerAction::Dump(dump::Timer::Done { .. })`);
//! [`Machine::advance`] hands due timers back to that subsystem's `on_timer`. Devices reach
//! the subsystems that keep state about them through the hooks [`Machine::pre_plug`],
//! [`Machine::on_plug`] and [`Machine::on_unplug`].

use std::collections::BTreeMap;
use std::sync::Arc;

use qmpkit_schema::Schema;
use qmpkit_wire::QmpError;
use serde_json::{Map, Value};

/// The machine's own interface as Rust types, generated from `schema/` by
/// `qmpkit schema codegen --lang rust --handlers` (a test fails when it is stale; run
/// `QMPKIT_UPDATE=1 cargo test -p qmpkit-machine --test api_fresh` to refresh it).
#[allow(clippy::all, clippy::pedantic, missing_docs, non_camel_case_types, unused)]
#[rustfmt::skip]
pub mod api;
pub mod catalog;
pub mod compat;
pub mod config;
pub mod embedded;
pub mod fdsets;
pub mod identity;
pub mod qmp;
pub mod runstate;
pub mod shape;
pub mod testctl;
pub mod view;

pub mod balloon;
pub mod block;
pub mod block_throttle;
pub mod chardev;
pub mod devices;
pub mod display;
pub mod dump;
pub mod hmp;
pub mod input;
pub mod memory;
pub mod migration;
pub mod misc;
pub mod net;
pub mod qom;
pub mod readline;
pub mod savevm;

pub use config::MachineConfig;
pub use runstate::RunState;

/// Commands a QMP server answers itself: a machine behind one never sees
/// them (they can still be made to fail with test control).
pub const SERVER_BUILTINS: &[&str] = &["qmp_capabilities", "query-commands", "query-qmp-schema"];

/// Commands of the machine's interface that belong to another target (s390x, ARM): QEMU's
/// x86 build has no handler for them (`qemu-system-x86_64` 10.0.2 answers CommandNotFound,
/// its interface having them only on their target). The server leaves them out: they answer
/// CommandNotFound, and `query-commands` does not list them.
pub const OTHER_TARGETS: &[&str] = &["dump-skeys", "query-gic-capabilities"];

/// Arguments of one call, validated against the schema by the server.
pub type Args = Map<String, Value>;

/// A command's result: the `return` value in schema order, or an error.
pub type CmdResult = Result<Value, QmpError>;

/// A successful reply as [`Machine::execute_written`] gives it.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// The `return` value in the served schema's order (a server writes it in QEMU's).
    Value(Value),
    /// The `return` value already in QEMU's output form, members in QEMU's order.
    Written(Vec<u8>),
}

/// What [`Machine::execute_written`] gives.
pub type ReplyResult = Result<Reply, QmpError>;

/// What running a command gave: the handler's reply, encoded, or the request conversion's
/// own answer.
enum Ran<T> {
    Encoded(T),
    Answered(Value),
}

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
    /// Run state and the modelled guest's power behaviour.
    RunState(runstate::Timer),
    /// Unplug acknowledgements and ACPI status reports of the modelled guest.
    Devices(devices::Timer),
    /// A detached dump finishing.
    Dump(dump::Timer),
    /// The guest's balloon driver stepping toward its target.
    Balloon(balloon::Timer),
    /// Migration progress and incoming streams.
    Migration(migration::Timer),
    /// A key of a `send-key` sequence.
    Input(input::Timer),
    /// The block layer (jobs).
    Block(block::Timer),
    /// Real VNC viewers' connections.
    Display(display::Timer),
}

/// Why a machine's process (or its slot in a fleet) ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitReason {
    /// `quit`, or a shutdown without `-no-shutdown`.
    Shutdown,
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
    /// The schema being served: handlers shape replies and events after it.
    pub schema: Arc<Schema>,
    /// The configuration the machine was started with (shared in a fleet).
    pub config: Arc<MachineConfig>,
    /// Index in a fleet (0 for a single machine).
    pub index: usize,
    /// Set when the machine has ended (the glue stops serving it).
    pub exit: Option<ExitReason>,
    /// Behaviour switches of the QEMU version the machine claims.
    compat: compat::Compat,
    /// What converting replies and events to the served interface invented beyond the
    /// listed gaps (see [`view`]): nothing, when all is well.
    pub view_faults: view::Faults,
    /// Run state and the modelled guest's life cycle.
    pub run: runstate::RunStateData,
    /// Identity values that commands can change at run time.
    pub ident: identity::IdentityState,
    /// Test control: injected failures and guest behaviour knobs.
    pub testctl: testctl::TestCtl,
    // Device-level subsystems add their `pub NAME: NAME::State` fields here
    /// The QOM tree (devices, objects, …).
    pub qom: qom::QomState,
    pub devices: devices::DevicesState,
    pub memory: memory::MemoryState,
    pub dump: dump::DumpState,
    pub display: display::DisplayState,
    pub input: input::InputState,
    pub balloon: balloon::BalloonState,
    /// Drives, media and trays.
    pub block: block::BlockState,
    /// Network back ends added or removed at run time.
    pub net: net::NetState,
    /// Character device back ends added at run time.
    pub chardev: chardev::ChardevState,
    pub misc: misc::MiscState,
    /// Descriptors passed by clients: named ones without a session, fd sets.
    pub fds: fdsets::FdState,
    /// Capabilities, parameters, the outgoing and the incoming migration.
    pub migration: migration::MigrationState,
    /// RAM saved by the human monitor's `savevm`, by tag.
    pub savevm: savevm::SavedVms,
    /// The modules of the binary the machine claims to be that it has loaded (see
    /// [`catalog::Modules`]).
    pub modules: catalog::Loaded,
    // and create them in `Machine::new`.
}

impl Machine {
    /// A machine built from `config`, serving `schema`.
    pub fn new(config: Arc<MachineConfig>, schema: Arc<Schema>) -> Machine {
        Machine::with_index(config, schema, 0)
    }

    /// A machine built from `config`, or QEMU's start-up error when it cannot be (a drive
    /// whose image does not open). [`Machine::new`] builds it all the same, that drive empty.
    pub fn try_new(config: Arc<MachineConfig>, schema: Arc<Schema>) -> Result<Machine, String> {
        Machine::try_with_index(config, schema, 0)
    }

    /// A fleet member.
    pub fn with_index(config: Arc<MachineConfig>, schema: Arc<Schema>, index: usize) -> Machine {
        Machine::build(config, schema, index).0
    }

    /// A fleet member, or its start-up error (see [`Machine::try_new`]).
    pub fn try_with_index(
        config: Arc<MachineConfig>,
        schema: Arc<Schema>,
        index: usize,
    ) -> Result<Machine, String> {
        match Machine::build(config, schema, index) {
            (m, None) => Ok(m),
            (_, Some(e)) => Err(e),
        }
    }

    /// The machine, and its start-up error if it has one.
    fn build(
        config: Arc<MachineConfig>,
        schema: Arc<Schema>,
        index: usize,
    ) -> (Machine, Option<String>) {
        let run = runstate::RunStateData::new(&config);
        let testctl = testctl::TestCtl::new(&config);
        let mut qom = qom::QomState {
            tree: devices::build_tree(&config),
        };
        let input = input::InputState::new(&qom.tree);
        let ident = identity::IdentityState::new(&config, index);
        // The generation ID device reads back the GUID the query reports.
        if let Some(g) = &ident.vm_gen_id {
            for n in devices::all_devices(&qom.tree) {
                if qom.tree.node(n).ty == "vmgenid" {
                    qom.tree.set_val(n, "guid", g.clone());
                }
            }
        }
        let fds = fdsets::FdState::default();
        fdsets::add_from_config(&fds, &config.fds);
        let (block, start_error) = block::BlockState::new(&config, fdsets::block_opener(&fds));
        let chardev = chardev::ChardevState::new(&config);
        let migration = migration::MigrationState::new(&config);
        let (major, minor, _) = config.qemu_version;
        let mut m = Machine {
            compat: compat::Compat::of(major, minor),
            view_faults: Default::default(),
            outbox: Vec::new(),
            timers: BTreeMap::new(),
            timer_seq: 0,
            now_ns: 0,
            schema,
            config,
            index,
            exit: None,
            run,
            ident,
            testctl,
            qom,
            devices: Default::default(),
            memory: Default::default(),
            dump: Default::default(),
            display: Default::default(),
            input,
            balloon: Default::default(),
            block,
            net: Default::default(),
            chardev,
            misc: Default::default(),
            fds,
            migration,
            savevm: Default::default(),
            modules: Default::default(),
        };
        migration::start_from_config(&mut m);
        catalog::start(&mut m);
        (m, start_error)
    }

    /// Queue a typed event of the machine's own interface.
    pub fn emit_event<E: qmpkit_qapi::Event>(&mut self, event: E) {
        let data = if E::HAS_DATA {
            qmpkit_qapi::encode(&event).ok()
        } else {
            None
        };
        self.outbox.push((E::NAME.to_string(), data));
    }

    /// The behaviour switches of the QEMU version this machine claims.
    pub fn compat(&self) -> &compat::Compat {
        &self.compat
    }

    /// Drain queued events, oldest first, shaped after the served schema:
    /// events it does not define are dropped, data fits the event's type
    /// (see [`shape::conform_event`]).
    pub fn take_events(&mut self) -> Vec<(String, Option<Value>)> {
        let schema = self.schema.clone();
        let raw = self.take_raw_events();
        let mut out = Vec::with_capacity(raw.len());
        for (name, mut data) in raw {
            view::derive_event(self, &name, &mut data);
            if let Some(ev) = view::event(&schema, &name, data, &mut self.view_faults) {
                out.push((name, ev));
            }
        }
        out
    }

    /// Drain queued events, oldest first, as the subsystems made them
    /// (before any shaping: what tests check against the machine's own
    /// schema).
    pub fn take_raw_events(&mut self) -> Vec<(String, Option<Value>)> {
        std::mem::take(&mut self.outbox)
    }

    /// Drain the lines QEMU would have printed on its standard error since last asked
    /// (warnings, never in QMP), each ending in a newline: the glue prints them.
    pub fn take_diagnostics(&mut self) -> Vec<String> {
        std::mem::take(&mut self.block.diagnostics)
    }

    /// Whether events are waiting.
    pub fn has_events(&self) -> bool {
        !self.outbox.is_empty()
    }

    /// Run `action` `after_ns` from now.
    pub fn schedule(&mut self, after_ns: u64, action: TimerAction) {
        let at = self.now_ns.saturating_add(after_ns);
        self.timer_seq += 1;
        self.timers.insert((at, self.timer_seq), action);
    }

    /// Drop pending timers that `keep` refuses.
    pub fn cancel_timers(&mut self, mut keep: impl FnMut(&TimerAction) -> bool) {
        self.timers.retain(|_, a| keep(a));
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

    /// Serve what a command just asked of the main loop (shutdown, reset, the power button:
    /// due run-state timers at the head of the queue) when the machine's QEMU does so before
    /// the command's reply goes out (see [`compat::Compat::main_loop_events_before_reply`]).
    pub fn serve_main_loop_requests(&mut self, now_ns: u64) {
        if self.compat().main_loop_events_before_reply {
            self.run_due(now_ns, |a| matches!(a, TimerAction::RunState(_)));
        }
    }

    /// Bring the machine to time `now_ns`: run every due timer (and the
    /// timers those schedule, when they are due too), in deadline order.
    pub fn advance(&mut self, now_ns: u64) {
        self.run_due(now_ns, |_| true);
        self.now_ns = self.now_ns.max(now_ns);
    }

    /// Run due timers in deadline order while `next` takes the first one.
    fn run_due(&mut self, now_ns: u64, next: impl Fn(&TimerAction) -> bool) {
        // Each timer runs at its own deadline (what it schedules counts from
        // there), so one long step behaves as many short ones. Bounded: a
        // timer scheduling zero-delay timers forever must not hang the caller.
        for _ in 0..1_000_000 {
            let Some((&key, action)) = self.timers.iter().next() else {
                break;
            };
            if key.0 > now_ns || self.exit.is_some() || !next(action) {
                break;
            }
            let Some(action) = self.timers.remove(&key) else {
                break;
            };
            self.now_ns = self.now_ns.max(key.0);
            self.fire(action);
        }
    }

    /// Hand a due timer to the subsystem that scheduled it.
    fn fire(&mut self, action: TimerAction) {
        match action {
            TimerAction::RunState(t) => runstate::on_timer(self, t),
            TimerAction::Devices(t) => devices::on_timer(self, t),
            TimerAction::Dump(t) => dump::on_timer(self, t),
            TimerAction::Balloon(t) => balloon::on_timer(self, t),
            TimerAction::Migration(t) => migration::on_timer(self, t),
            TimerAction::Input(t) => input::on_timer(self, t),
            TimerAction::Block(t) => block::on_timer(self, t),
            TimerAction::Display(t) => display::on_timer(self, t),
        }
    }

    /// Execute `cmd` with `args` that the server validated against the served schema; the
    /// reply converted to the served schema (see [`view`]).
    /// `None`: no subsystem implements the command (the glue answers that
    /// it is not implemented, or a synthesised value when asked to).
    pub fn execute(&mut self, cmd: &str, args: &Args, cx: &mut Cx) -> Option<CmdResult> {
        let r = self.execute_raw(cmd, args, cx)?;
        let schema = self.schema.clone();
        Some(r.map(|v| view::reply(&schema, cmd, v, &mut self.view_faults)))
    }

    /// [`Machine::execute`] for a server: where the served interface is the machine's own
    /// and the reply is the handler's as it is (no reply of the served interface's own, no
    /// member added for it), the handler's typed reply is written straight to QEMU's output
    /// form ([`Reply::Written`]), the bytes `execute` would give (the types guarantee the
    /// shape that converting would check); otherwise the converted value.
    pub fn execute_written(&mut self, cmd: &str, args: &Args, cx: &mut Cx) -> Option<ReplyResult> {
        if !self.writes_straight(cmd) {
            return Some(self.execute(cmd, args, cx)?.map(Reply::Value));
        }
        Some(match self.run(cmd, args, cx, &mut qmp::WriteQemu)? {
            Ok(Ran::Encoded(bytes)) => Ok(Reply::Written(bytes)),
            Ok(Ran::Answered(v)) => {
                let schema = self.schema.clone();
                Ok(Reply::Value(view::reply(
                    &schema,
                    cmd,
                    v,
                    &mut self.view_faults,
                )))
            }
            Err(e) => Err(e),
        })
    }

    /// [`Machine::execute`], and the bytes [`Machine::execute_written`] would have written
    /// instead where it writes them straight (`None` elsewhere), from one run of the handler:
    /// for tests that the two agree.
    #[doc(hidden)]
    pub fn execute_both(
        &mut self,
        cmd: &str,
        args: &Args,
        cx: &mut Cx,
    ) -> Option<Result<(Value, Option<Vec<u8>>), QmpError>> {
        let straight = self.writes_straight(cmd);
        let r = self.run(cmd, args, cx, &mut qmp::Both)?;
        let (raw, written) = match r {
            Ok(Ran::Encoded((v, bytes))) => (v, straight.then_some(bytes)),
            Ok(Ran::Answered(v)) => (v, None),
            Err(e) => return Some(Err(e)),
        };
        let schema = self.schema.clone();
        let v = view::reply(
            &schema,
            cmd,
            self.served_members(cmd, raw),
            &mut self.view_faults,
        );
        Some(Ok((v, written)))
    }

    /// Whether [`Machine::execute_written`] writes `cmd`'s reply straight from its type.
    fn writes_straight(&self, cmd: &str) -> bool {
        std::ptr::eq(Arc::as_ptr(&self.schema), embedded::own())
            && view::reply_is_the_handlers(cmd)
            && !qmp::identity::SERVED_REPLY_MEMBERS.contains(&cmd)
    }

    /// [`Machine::execute`] without converting the reply: the request converted to the
    /// machine's own form (see [`view::request`]) and the reply as the handler made it, in
    /// the machine's own types (what tests check against the machine's own schema).
    pub fn execute_raw(&mut self, cmd: &str, args: &Args, cx: &mut Cx) -> Option<CmdResult> {
        Some(
            match self.run(cmd, args, cx, &mut qmpkit_qapi::server::ToValue)? {
                Ok(Ran::Encoded(v) | Ran::Answered(v)) => Ok(self.served_members(cmd, v)),
                Err(e) => Err(e),
            },
        )
    }

    /// A handler's reply with the members the served interface adds to it.
    fn served_members(&self, cmd: &str, mut v: Value) -> Value {
        qmp::identity::served_reply_members(self, cmd, &mut v);
        v
    }

    /// Run `cmd`: the request converted to the machine's own form, then its handler, whose
    /// reply `enc` encodes (unless the conversion answered it itself).
    fn run<E: qmpkit_qapi::server::Encode>(
        &mut self,
        cmd: &str,
        args: &Args,
        cx: &mut Cx,
        enc: &mut E,
    ) -> Option<Result<Ran<E::Out>, QmpError>> {
        self.now_ns = self.now_ns.max(cx.now_ns);
        block::report_quorum_io(self);
        if let Some(err) = self.testctl.take_injected(cmd) {
            return Some(Err(err));
        }
        let (command, args) = match view::request(cmd, args) {
            Ok(view::Request::Own { command, args }) => (command, args),
            Ok(view::Request::Answered(v)) => return Some(Ok(Ran::Answered(v))),
            Err(e) => return Some(Err(e)),
        };
        Some(qmp::dispatch_with(self, &command, &args, cx, enc)?.map(Ran::Encoded))
    }

    /// Hook: a device is about to be plugged; a subsystem that keeps state about such
    /// devices may refuse it (QEMU's `pre_plug`). Devices call it once the device exists and
    /// remove the device again on an error.
    pub fn pre_plug(&mut self, info: &devices::PlugInfo) -> Result<(), QmpError> {
        self.ident.pre_plug(&self.config, info)?;
        block::pre_plug(self, info)?;
        net::rocker::pre_plug(self, info)
    }

    /// Hook: a device was plugged. Each subsystem that keeps state about devices updates it
    /// here (the vCPU list, the mice); the others (balloon, block, network, character
    /// devices, memory, display) read the QOM tree when asked and keep nothing to update.
    pub fn on_plug(&mut self, info: &devices::PlugInfo) {
        self.ident.on_plug(&self.config, info);
        self.input.on_plug(info);
    }

    /// Hook: a device is about to be removed (it is still in the tree).
    pub fn on_unplug(&mut self, info: &devices::PlugInfo) {
        self.input.on_unplug(info);
        self.ident.on_unplug(info);
        self.net.on_unplug(info);
        self.chardev.on_unplug(info);
    }

    /// Runs a line of the human monitor (HMP, the layer above the QMP handlers) for
    /// `human-monitor-command`.
    pub fn human_monitor(
        &mut self,
        line: &str,
        cpu_index: Option<i64>,
        cx: &mut Cx,
    ) -> Result<String, QmpError> {
        hmp::human_monitor_command(self, line, cpu_index, cx)
    }

    /// Whether the back end a device property names exists (for `device_add`).
    pub fn has_backend(&self, kind: devices::Backend, name: &str) -> bool {
        match kind {
            devices::Backend::Netdev => net::exists(self, name),
            // A drive's name, its medium's node name or a node, as QEMU looks the value up.
            devices::Backend::Drive => block::drive_known(self, name),
        }
    }

    /// Whether a device or a switch's port already uses the back end `name` (for
    /// `device_add`).
    pub fn backend_in_use(&self, kind: devices::Backend, name: &str) -> bool {
        let tree = &self.qom.tree;
        match kind {
            devices::Backend::Netdev => {
                devices::backend_in_use(tree, "netdev", name) || net::rocker::port_uses(tree, name)
            }
            devices::Backend::Drive => devices::backend_in_use(tree, "drive", name),
        }
    }

    /// Whether the machine's state is `state`.
    pub fn is(&self, state: RunState) -> bool {
        self.run.state == state
    }

    /// The QEMU version this machine claims, `(major, minor, micro)`.
    pub fn qemu_version(&self) -> (u64, u64, u64) {
        self.config.qemu_version
    }

    /// Whether the claimed QEMU version is at least `major.minor`.
    pub fn version_at_least(&self, major: u64, minor: u64) -> bool {
        let (a, b, _) = self.config.qemu_version;
        (a, b) >= (major, minor)
    }

    /// Whether the served schema has a definition named `name`.
    pub fn schema_has(&self, name: &str) -> bool {
        self.schema.lookup(name).is_some()
    }
}

/// Every command some subsystem implements, sorted (for `--list-handlers`).
pub fn handled() -> Vec<&'static str> {
    let mut v: Vec<&'static str> = handled_set().iter().copied().collect();
    v.sort_unstable();
    v
}

/// Whether some subsystem implements `command`: itself, or the command of the machine's
/// own interface that serves it (its unstable `x-` form, or the stable form of an `x-`
/// name; see [`view::own_command`]).
pub fn implements(command: &str) -> bool {
    let set = handled_set();
    set.contains(command)
        || view::own_command(embedded::own(), command)
            .is_some_and(|own| own != command && set.contains(own.as_ref()))
}

/// The commands of [`handled`], gathered once per process (asked about every command of
/// the schema while a machine's server is built).
fn handled_set() -> &'static std::collections::HashSet<&'static str, foldhash::fast::FixedState> {
    static HANDLED: std::sync::OnceLock<
        std::collections::HashSet<&'static str, foldhash::fast::FixedState>,
    > = std::sync::OnceLock::new();
    HANDLED.get_or_init(|| {
        let own = qmp::implemented();
        let mut set = std::collections::HashSet::with_capacity_and_hasher(
            own.len() + view::REQUESTS.len(),
            foldhash::fast::FixedState::default(),
        );
        set.extend(own.iter().copied());
        set.extend(view::REQUESTS.iter().map(|r| r.command));
        set
    })
}

/// The error of a command the machine does not implement (or of a case of
/// one it implements only in part): said plainly, never a silent success.
pub fn not_implemented(command: &str) -> QmpError {
    QmpError::not_implemented(command, "this simulated machine")
}

/// A GenericError with `desc`.
pub fn generic(desc: impl Into<String>) -> QmpError {
    QmpError::generic(desc)
}
