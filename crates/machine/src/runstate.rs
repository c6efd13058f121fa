//! Run state: QEMU's `RunState` machine, the commands that move it, and the
//! modelled guest's life cycle (power button, shutdown, reboot, suspend,
//! panic, watchdog).
//!
//! As in QEMU, some commands act at once (stop and cont: STOP/RESUME come
//! before the reply) and some only post a request that the main loop serves
//! after the reply (system_reset, system_powerdown, system_wakeup, quit, and
//! everything the guest does): those are zero-delay timers here.

use serde_json::{json, Value};

use crate::{empty, generic, Args, CmdResult, Cx, ExitReason, Machine, TimerAction};

/// Timer subsystem name.
pub const SUBSYSTEM: &str = "runstate";

/// Commands this module implements.
pub const HANDLED: &[&str] = &[
    "stop",
    "cont",
    "system_reset",
    "system_powerdown",
    "system_wakeup",
    "quit",
    "inject-nmi",
    "watchdog-set-action",
    "query-status",
];

/// QEMU's run states (QAPI enum `RunState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RunState {
    Debug,
    InMigrate,
    InternalError,
    IoError,
    Paused,
    PostMigrate,
    Prelaunch,
    FinishMigrate,
    RestoreVm,
    Running,
    SaveVm,
    Shutdown,
    Suspended,
    Watchdog,
    GuestPanicked,
    Colo,
}

impl RunState {
    /// Every state, in the schema's order.
    pub const ALL: [RunState; 16] = [
        RunState::Debug,
        RunState::InMigrate,
        RunState::InternalError,
        RunState::IoError,
        RunState::Paused,
        RunState::PostMigrate,
        RunState::Prelaunch,
        RunState::FinishMigrate,
        RunState::RestoreVm,
        RunState::Running,
        RunState::SaveVm,
        RunState::Shutdown,
        RunState::Suspended,
        RunState::Watchdog,
        RunState::GuestPanicked,
        RunState::Colo,
    ];

    /// The name QMP uses.
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Debug => "debug",
            RunState::InMigrate => "inmigrate",
            RunState::InternalError => "internal-error",
            RunState::IoError => "io-error",
            RunState::Paused => "paused",
            RunState::PostMigrate => "postmigrate",
            RunState::Prelaunch => "prelaunch",
            RunState::FinishMigrate => "finish-migrate",
            RunState::RestoreVm => "restore-vm",
            RunState::Running => "running",
            RunState::SaveVm => "save-vm",
            RunState::Shutdown => "shutdown",
            RunState::Suspended => "suspended",
            RunState::Watchdog => "watchdog",
            RunState::GuestPanicked => "guest-panicked",
            RunState::Colo => "colo",
        }
    }

    /// Parse a QMP name.
    pub fn from_name(s: &str) -> Option<RunState> {
        RunState::ALL.iter().copied().find(|r| r.as_str() == s)
    }
}

impl std::fmt::Display for RunState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether QEMU allows moving from `from` to `to`.
pub fn transition_allowed(from: RunState, to: RunState) -> bool {
    use RunState::*;
    if from == to {
        return true;
    }
    matches!(
        (from, to),
        (Debug, Running | FinishMigrate | Prelaunch | Suspended)
            | (
                InMigrate,
                InternalError
                    | IoError
                    | Paused
                    | Running
                    | Shutdown
                    | Suspended
                    | Watchdog
                    | GuestPanicked
                    | FinishMigrate
                    | Prelaunch
                    | PostMigrate
                    | Colo
            )
            | (InternalError, Paused | FinishMigrate | Prelaunch)
            | (IoError, Running | FinishMigrate | Prelaunch)
            | (
                Paused,
                Running | FinishMigrate | PostMigrate | Prelaunch | Colo
            )
            | (PostMigrate, Running | FinishMigrate | Prelaunch)
            | (Prelaunch, Running | FinishMigrate | InMigrate)
            | (
                FinishMigrate,
                Running | Paused | PostMigrate | Prelaunch | Colo
            )
            | (RestoreVm, Running | Prelaunch)
            | (Colo, Running)
            | (
                Running,
                Debug
                    | InternalError
                    | IoError
                    | Paused
                    | FinishMigrate
                    | RestoreVm
                    | SaveVm
                    | Shutdown
                    | Watchdog
                    | GuestPanicked
                    | Colo
                    | Suspended
            )
            | (SaveVm, Running)
            | (Shutdown, Paused | FinishMigrate | Prelaunch)
            | (Suspended, Running | FinishMigrate | Prelaunch | Colo)
            | (Watchdog, Running | FinishMigrate | Prelaunch | Colo)
            | (GuestPanicked, Running | FinishMigrate | Prelaunch)
    )
}

/// Why the machine shuts down or resets (QAPI enum `ShutdownCause`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShutdownCause {
    HostQmpQuit,
    HostQmpSystemReset,
    HostSignal,
    GuestShutdown,
    GuestReset,
    GuestPanic,
}

impl ShutdownCause {
    fn names(self) -> &'static [&'static str] {
        match self {
            ShutdownCause::HostQmpQuit => &["host-qmp-quit", "host-qmp"],
            ShutdownCause::HostQmpSystemReset => &["host-qmp-system-reset", "host-qmp"],
            ShutdownCause::HostSignal => &["host-signal"],
            ShutdownCause::GuestShutdown => &["guest-shutdown"],
            ShutdownCause::GuestReset => &["guest-reset"],
            ShutdownCause::GuestPanic => &["guest-panic"],
        }
    }

    fn is_guest(self) -> bool {
        matches!(
            self,
            ShutdownCause::GuestShutdown | ShutdownCause::GuestReset | ShutdownCause::GuestPanic
        )
    }

    fn key(self) -> &'static str {
        self.names()[0]
    }

    fn from_key(s: &str) -> ShutdownCause {
        match s {
            "host-qmp-quit" => ShutdownCause::HostQmpQuit,
            "host-qmp-system-reset" => ShutdownCause::HostQmpSystemReset,
            "host-signal" => ShutdownCause::HostSignal,
            "guest-reset" => ShutdownCause::GuestReset,
            "guest-panic" => ShutdownCause::GuestPanic,
            _ => ShutdownCause::GuestShutdown,
        }
    }
}

/// Run-state data of one machine.
#[derive(Debug, Clone)]
pub struct RunStateData {
    pub state: RunState,
    /// `-no-shutdown` (cleared by `quit`).
    pub no_shutdown: bool,
    /// `-no-reboot`.
    pub no_reboot: bool,
    /// What the watchdog does when it fires (`watchdog-set-action`).
    pub watchdog_action: String,
    /// In `inmigrate`: start running once migration completes.
    pub autostart: bool,
    /// A power button press the guest has not acted on (it was not running).
    pub powerdown_pending: bool,
    /// NMIs injected so far.
    pub nmi_count: u64,
    /// Resets so far (guest and host).
    pub reset_count: u64,
}

impl RunStateData {
    pub fn new(config: &crate::MachineConfig) -> RunStateData {
        RunStateData {
            state: if config.incoming.is_some() {
                RunState::InMigrate
            } else if config.start_paused {
                RunState::Prelaunch
            } else {
                RunState::Running
            },
            no_shutdown: config.no_shutdown,
            no_reboot: config.no_reboot,
            watchdog_action: config.watchdog_action.clone(),
            autostart: !config.start_paused,
            powerdown_pending: false,
            nmi_count: 0,
            reset_count: 0,
        }
    }
}

/// Move to `to`, or fail with QEMU's words if the transition is not
/// allowed (QEMU aborts there; a command checks before it gets that far).
pub fn set_state(m: &mut Machine, to: RunState) -> Result<(), qmpkit_wire::QmpError> {
    let from = m.run.state;
    if !transition_allowed(from, to) {
        return Err(generic(format!(
            "invalid runstate transition: '{from}' -> '{to}'"
        )));
    }
    m.run.state = to;
    Ok(())
}

/// Stop the vCPUs and enter `state` (QEMU's `vm_stop`): only a running
/// machine stops, with a STOP event.
pub fn vm_stop(m: &mut Machine, state: RunState) {
    if m.run.state == RunState::Running && set_state(m, state).is_ok() {
        m.emit("STOP", None);
    }
}

/// Start the vCPUs (QEMU's `vm_start`): RESUME when the machine was not
/// running.
pub fn vm_start(m: &mut Machine) {
    if m.run.state == RunState::Running {
        return;
    }
    if set_state(m, RunState::Running).is_ok() {
        m.emit("RESUME", None);
        if m.run.powerdown_pending {
            m.run.powerdown_pending = false;
            guest_react_to_powerdown(m);
        }
    }
}

/// Whether `cont` needs a reset first.
pub fn needs_reset(m: &Machine) -> bool {
    match m.run.state {
        RunState::InternalError | RunState::Shutdown => true,
        // QEMU 1.5 to 2.4 also required a reset after a guest panic.
        RunState::GuestPanicked => !m.version_at_least(2, 5),
        _ => false,
    }
}

fn cause_value(m: &Machine, cause: ShutdownCause) -> Value {
    let names = cause.names();
    let pick = names
        .iter()
        .find(|n| crate::shape::enum_has(&m.schema, "ShutdownCause", n))
        .unwrap_or(&names[0]);
    Value::String(pick.to_string())
}

/// The data of SHUTDOWN or RESET: who asked, and why where the served
/// interface says (QEMU 4.0 added `reason`).
fn cause_data(m: &Machine, event: &str, cause: ShutdownCause) -> Value {
    let mut data = json!({"guest": cause.is_guest()});
    if crate::shape::event_has_member(&m.schema, event, "reason") {
        data["reason"] = cause_value(m, cause);
    }
    data
}

/// Post a request the main loop serves after the current reply.
pub fn request(m: &mut Machine, what: &str, data: Value) {
    m.schedule(0, TimerAction::Custom(SUBSYSTEM, what.to_string(), data));
}

/// Serve a shutdown request now: SHUTDOWN, then exit or (with
/// `-no-shutdown`) stop in `shutdown`.
pub fn do_shutdown(m: &mut Machine, cause: ShutdownCause) {
    let data = cause_data(m, "SHUTDOWN", cause);
    m.emit("SHUTDOWN", Some(data));
    m.cancel_timers(
        |a| !matches!(a, TimerAction::Custom(SUBSYSTEM, w, _) if w == "guest-powerdown"),
    );
    if m.run.no_shutdown && cause != ShutdownCause::HostQmpQuit {
        vm_stop(m, RunState::Shutdown);
    } else {
        m.exit = Some(ExitReason::Shutdown);
    }
}

/// Serve a reset request now: RESET, and a stopped machine goes back to
/// `prelaunch`.
pub fn do_reset(m: &mut Machine, cause: ShutdownCause) {
    if cause == ShutdownCause::GuestReset && m.run.no_reboot {
        do_shutdown(m, cause);
        return;
    }
    let data = cause_data(m, "RESET", cause);
    m.emit("RESET", Some(data));
    m.run.reset_count += 1;
    m.run.powerdown_pending = false;
    m.cancel_timers(
        |a| !matches!(a, TimerAction::Custom(SUBSYSTEM, w, _) if w == "guest-powerdown"),
    );
    if !matches!(m.run.state, RunState::Running | RunState::InMigrate) {
        let _ = set_state(m, RunState::Prelaunch);
    }
}

/// The power button: POWERDOWN, and an ACPI-aware running guest shuts
/// itself down after its delay.
pub fn do_powerdown(m: &mut Machine) {
    m.emit("POWERDOWN", None);
    guest_react_to_powerdown(m);
}

fn guest_react_to_powerdown(m: &mut Machine) {
    if !m.testctl.guest.acpi {
        return;
    }
    if m.run.state != RunState::Running {
        m.run.powerdown_pending = true;
        return;
    }
    let delay = m.testctl.guest.powerdown_delay_ms.saturating_mul(1_000_000);
    m.schedule(
        delay,
        TimerAction::Custom(SUBSYSTEM, "guest-powerdown".into(), Value::Null),
    );
}

/// Serve a suspend request: the guest enters S3.
pub fn do_suspend(m: &mut Machine) {
    if m.run.state != RunState::Running {
        return;
    }
    if set_state(m, RunState::Suspended).is_ok() {
        m.emit("SUSPEND", None);
    }
}

/// A guest panic: GUEST_PANICKED (pause), STOP; without `-no-shutdown`,
/// GUEST_PANICKED (poweroff) and a shutdown. Interfaces older than the
/// `guest-panicked` state (QEMU before 1.5) stop in `internal-error`,
/// without GUEST_PANICKED.
pub fn do_panic(m: &mut Machine) {
    let known = crate::shape::enum_has(&m.schema, "RunState", "guest-panicked");
    if known {
        m.emit("GUEST_PANICKED", Some(json!({"action": "pause"})));
        vm_stop(m, RunState::GuestPanicked);
    } else {
        vm_stop(m, RunState::InternalError);
    }
    if !m.run.no_shutdown {
        if known {
            m.emit("GUEST_PANICKED", Some(json!({"action": "poweroff"})));
        }
        do_shutdown(m, ShutdownCause::GuestPanic);
    }
}

/// The watchdog fired: WATCHDOG with the configured action, then the action.
pub fn do_watchdog(m: &mut Machine) {
    let action = m.run.watchdog_action.clone();
    m.emit("WATCHDOG", Some(json!({"action": action})));
    match action.as_str() {
        "reset" => do_reset(m, ShutdownCause::GuestReset),
        "shutdown" => do_powerdown(m),
        "poweroff" => do_shutdown(m, ShutdownCause::GuestShutdown),
        "pause" => vm_stop(m, RunState::Watchdog),
        "inject-nmi" => m.run.nmi_count += 1,
        _ => {}
    }
}

/// Timers of this module.
pub fn on_timer(m: &mut Machine, what: &str, data: &Value) {
    let cause = || ShutdownCause::from_key(data.as_str().unwrap_or(""));
    match what {
        "shutdown" => do_shutdown(m, cause()),
        "reset" => do_reset(m, cause()),
        "powerdown" => do_powerdown(m),
        "wakeup" => m.emit("WAKEUP", None),
        "suspend" => do_suspend(m),
        "hibernate" if m.run.state == RunState::Running => {
            m.emit("SUSPEND_DISK", None);
            do_shutdown(m, ShutdownCause::GuestShutdown);
        }
        "panic" => do_panic(m),
        "watchdog" => do_watchdog(m),
        "guest-powerdown" => {
            if m.run.state == RunState::Running {
                do_shutdown(m, ShutdownCause::GuestShutdown);
            } else {
                m.run.powerdown_pending = true;
            }
        }
        _ => {}
    }
}

fn key(c: ShutdownCause) -> Value {
    Value::String(c.key().to_string())
}

/// `query-status`'s value.
pub fn status(m: &Machine) -> Value {
    json!({
        "running": m.run.state == RunState::Running,
        "singlestep": false,
        "status": m.run.state.as_str(),
    })
}

pub fn execute(m: &mut Machine, cmd: &str, args: &Args, _cx: &mut Cx) -> Option<CmdResult> {
    Some(match cmd {
        "query-status" => Ok(status(m)),
        "stop" => {
            if m.run.state == RunState::InMigrate {
                m.run.autostart = false;
            } else {
                vm_stop(m, RunState::Paused);
            }
            empty()
        }
        "cont" => cont(m),
        "system_reset" => {
            request(m, "reset", key(ShutdownCause::HostQmpSystemReset));
            empty()
        }
        "system_powerdown" => {
            request(m, "powerdown", Value::Null);
            empty()
        }
        "system_wakeup" => {
            if m.run.state != RunState::Suspended {
                if m.version_at_least(4, 0) {
                    return Some(Err(generic(
                        "Unable to wake up: guest is not in suspended state",
                    )));
                }
                return Some(empty());
            }
            let _ = set_state(m, RunState::Running);
            request(m, "wakeup", Value::Null);
            empty()
        }
        "quit" => {
            m.run.no_shutdown = false;
            request(m, "shutdown", key(ShutdownCause::HostQmpQuit));
            empty()
        }
        "inject-nmi" => {
            m.run.nmi_count += 1;
            empty()
        }
        "watchdog-set-action" => {
            if let Some(a) = crate::arg_str(args, "action") {
                m.run.watchdog_action = a.to_string();
            }
            empty()
        }
        _ => return None,
    })
}

fn cont(m: &mut Machine) -> CmdResult {
    if needs_reset(m) {
        return Err(generic("Resetting the Virtual Machine is required"));
    }
    match m.run.state {
        RunState::Suspended => return empty(),
        RunState::FinishMigrate if m.version_at_least(2, 0) => {
            return Err(generic("Migration is not finalized yet"))
        }
        _ => {}
    }
    // A continued VM starts with clean I/O statuses.
    crate::block::reset_io_status(m);
    if m.run.state == RunState::InMigrate {
        m.run.autostart = true;
        return empty();
    }
    vm_start(m);
    empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for s in RunState::ALL {
            assert_eq!(RunState::from_name(s.as_str()), Some(s));
        }
    }

    #[test]
    fn transitions() {
        use RunState::*;
        assert!(transition_allowed(Prelaunch, Running));
        assert!(transition_allowed(Running, Paused));
        assert!(!transition_allowed(Shutdown, Running));
        assert!(!transition_allowed(Prelaunch, Paused));
        assert!(transition_allowed(GuestPanicked, Running));
        assert!(transition_allowed(Suspended, Running));
    }
}
