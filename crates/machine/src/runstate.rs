//! Run state: QEMU's `RunState` machine, the commands that move it, and the
//! modelled guest's life cycle (power button, shutdown, reboot, suspend,
//! panic, watchdog).
//!
//! As in QEMU, some commands act at once (stop and cont: STOP/RESUME come
//! before the reply) and some only post a request that the main loop serves
//! after the reply (system_reset, system_powerdown, system_wakeup, quit, and
//! everything the guest does): those are zero-delay timers here.

use qmpkit_wire::QmpError;

use crate::api;
use crate::{generic, ExitReason, Machine, TimerAction};

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
    /// As the interface says it (QEMU 4.2's names; the version view renames them for 4.0's
    /// and drops `reason` for interfaces before it).
    fn api(self) -> api::ShutdownCause {
        match self {
            ShutdownCause::HostQmpQuit => api::ShutdownCause::HostQmpQuit,
            ShutdownCause::HostQmpSystemReset => api::ShutdownCause::HostQmpSystemReset,
            ShutdownCause::HostSignal => api::ShutdownCause::HostSignal,
            ShutdownCause::GuestShutdown => api::ShutdownCause::GuestShutdown,
            ShutdownCause::GuestReset => api::ShutdownCause::GuestReset,
            ShutdownCause::GuestPanic => api::ShutdownCause::GuestPanic,
        }
    }

    fn is_guest(self) -> bool {
        matches!(
            self,
            ShutdownCause::GuestShutdown | ShutdownCause::GuestReset | ShutdownCause::GuestPanic
        )
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
    pub watchdog_action: api::WatchdogAction,
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
            watchdog_action: qmpkit_qapi::Enum::from_name(&config.watchdog_action),
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
        m.emit_event(api::StopEvent {});
    }
}

/// Start the vCPUs (QEMU's `vm_start`): RESUME when the machine was not
/// running.
pub fn vm_start(m: &mut Machine) {
    if m.run.state == RunState::Running {
        return;
    }
    if set_state(m, RunState::Running).is_ok() {
        m.emit_event(api::Resume {});
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
        RunState::GuestPanicked => m.compat().reset_after_panic,
        _ => false,
    }
}

/// Post a request the main loop serves after the current reply.
pub fn request(m: &mut Machine, what: Timer) {
    m.schedule(0, TimerAction::RunState(what));
}

/// Serve a shutdown request now: SHUTDOWN, then exit or (with
/// `-no-shutdown`) stop in `shutdown`.
pub fn do_shutdown(m: &mut Machine, cause: ShutdownCause) {
    m.emit_event(api::Shutdown {
        guest: cause.is_guest(),
        reason: cause.api(),
    });
    m.cancel_timers(|a| *a != TimerAction::RunState(Timer::GuestPowerdown));
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
    m.emit_event(api::Reset {
        guest: cause.is_guest(),
        reason: cause.api(),
    });
    m.run.reset_count += 1;
    m.run.powerdown_pending = false;
    m.cancel_timers(|a| *a != TimerAction::RunState(Timer::GuestPowerdown));
    if !matches!(m.run.state, RunState::Running | RunState::InMigrate) {
        let _ = set_state(m, RunState::Prelaunch);
    }
}

/// The power button: POWERDOWN, and an ACPI-aware running guest shuts
/// itself down after its delay.
pub fn do_powerdown(m: &mut Machine) {
    m.emit_event(api::Powerdown {});
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
    m.schedule(delay, TimerAction::RunState(Timer::GuestPowerdown));
}

/// Serve a suspend request: the guest enters S3.
pub fn do_suspend(m: &mut Machine) {
    if m.run.state != RunState::Running {
        return;
    }
    if set_state(m, RunState::Suspended).is_ok() {
        m.emit_event(api::Suspend {});
    }
}

/// A guest panic: GUEST_PANICKED (pause), STOP; without `-no-shutdown`,
/// GUEST_PANICKED (poweroff) and a shutdown. Interfaces older than the
/// `guest-panicked` state (QEMU before 1.5) stop in `internal-error`,
/// without GUEST_PANICKED.
pub fn do_panic(m: &mut Machine) {
    let known = crate::shape::enum_has(&m.schema, "RunState", "guest-panicked");
    if known {
        m.emit_event(api::GuestPanicked {
            action: api::GuestPanicAction::Pause,
            info: None,
        });
        vm_stop(m, RunState::GuestPanicked);
    } else {
        vm_stop(m, RunState::InternalError);
    }
    if !m.run.no_shutdown {
        if known {
            m.emit_event(api::GuestPanicked {
                action: api::GuestPanicAction::Poweroff,
                info: None,
            });
        }
        do_shutdown(m, ShutdownCause::GuestPanic);
    }
}

/// The watchdog fired: WATCHDOG with the configured action, then the action.
pub fn do_watchdog(m: &mut Machine) {
    use api::WatchdogAction as A;
    let action = m.run.watchdog_action.clone();
    m.emit_event(api::Watchdog {
        action: action.clone(),
    });
    match action {
        A::Reset => do_reset(m, ShutdownCause::GuestReset),
        A::Shutdown => do_powerdown(m),
        A::Poweroff => do_shutdown(m, ShutdownCause::GuestShutdown),
        A::Pause => vm_stop(m, RunState::Watchdog),
        A::InjectNmi => m.run.nmi_count += 1,
        _ => {}
    }
}

/// What this module does later: requests served after the current reply, and the
/// modelled guest's reactions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timer {
    Shutdown(ShutdownCause),
    Reset(ShutdownCause),
    Powerdown,
    Wakeup,
    Suspend,
    Hibernate,
    Panic,
    Watchdog,
    /// An ACPI-aware guest acting on the power button.
    GuestPowerdown,
}

/// A timer of this module is due.
pub fn on_timer(m: &mut Machine, t: Timer) {
    match t {
        Timer::Shutdown(cause) => do_shutdown(m, cause),
        Timer::Reset(cause) => do_reset(m, cause),
        Timer::Powerdown => do_powerdown(m),
        Timer::Wakeup => m.emit_event(api::Wakeup {}),
        Timer::Suspend => do_suspend(m),
        Timer::Hibernate => {
            if m.run.state == RunState::Running {
                m.emit_event(api::SuspendDisk {});
                do_shutdown(m, ShutdownCause::GuestShutdown);
            }
        }
        Timer::Panic => do_panic(m),
        Timer::Watchdog => do_watchdog(m),
        Timer::GuestPowerdown => {
            if m.run.state == RunState::Running {
                do_shutdown(m, ShutdownCause::GuestShutdown);
            } else {
                m.run.powerdown_pending = true;
            }
        }
    }
}

/// `cont`: start the vCPUs, in QEMU's words when they cannot start.
pub fn cont(m: &mut Machine) -> Result<(), QmpError> {
    if needs_reset(m) {
        return Err(generic("Resetting the Virtual Machine is required"));
    }
    match m.run.state {
        RunState::Suspended => return Ok(()),
        RunState::FinishMigrate if m.compat().cont_refuses_finish_migrate => {
            return Err(generic("Migration is not finalized yet"))
        }
        _ => {}
    }
    // A continued VM starts with clean I/O statuses.
    crate::block::reset_io_status(m);
    if m.run.state == RunState::InMigrate {
        m.run.autostart = true;
        return Ok(());
    }
    vm_start(m);
    Ok(())
}

/// `system_reset`: a reset request, served after the reply.
pub fn system_reset(m: &mut Machine) {
    request(m, Timer::Reset(ShutdownCause::HostQmpSystemReset));
}

/// `system_powerdown`: the power button, served after the reply.
pub fn system_powerdown(m: &mut Machine) {
    request(m, Timer::Powerdown);
}

/// `system_wakeup` of a suspended guest: running again, WAKEUP after the reply.
pub fn wakeup(m: &mut Machine) {
    let _ = set_state(m, RunState::Running);
    request(m, Timer::Wakeup);
}

/// `quit`: the process ends after the reply, whatever `-no-shutdown` says.
pub fn quit(m: &mut Machine) {
    m.run.no_shutdown = false;
    request(m, Timer::Shutdown(ShutdownCause::HostQmpQuit));
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

impl From<RunState> for api::RunState {
    fn from(s: RunState) -> api::RunState {
        qmpkit_qapi::Enum::from_name(s.as_str())
    }
}
