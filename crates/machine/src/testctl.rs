//! Test control: commands under the downstream prefix `__org.qmpkit_` that
//! make the modelled guest do what guests do (shut down or reboot on its
//! own, suspend, panic, trip the watchdog, hit an I/O error) and make the
//! next calls of a command fail, so that management software can be tested
//! against those situations.

use std::collections::HashMap;

use qmpkit_qapi::Enum;
use qmpkit_wire::{ErrorClass, QmpError};

use crate::api;
use crate::config::GuestConfig;
use crate::runstate::{self, RunState};
use crate::{generic, Machine};

/// The prefix of test-control commands.
pub const PREFIX: &str = "__org.qmpkit_";

/// The test-control commands: served on request even when the served schema lacks them,
/// and always open to `__org.qmpkit_inject-failure`.
pub const COMMANDS: &[&str] = &[
    "__org.qmpkit_guest-shutdown",
    "__org.qmpkit_guest-panic",
    "__org.qmpkit_guest-suspend",
    "__org.qmpkit_guest-hibernate",
    "__org.qmpkit_watchdog-fire",
    "__org.qmpkit_io-error",
    "__org.qmpkit_inject-failure",
    "__org.qmpkit_set-guest",
    "__org.qmpkit_viewer-connect",
    "__org.qmpkit_viewer-disconnect",
];

/// Test-control state of one machine.
#[derive(Debug, Clone)]
pub struct TestCtl {
    /// How the modelled guest behaves (`__org.qmpkit_set-guest`).
    pub guest: GuestConfig,
    /// Failures to answer, by command: `(remaining count, error)`.
    injected: HashMap<String, (u64, QmpError)>,
}

impl TestCtl {
    pub fn new(config: &crate::MachineConfig) -> TestCtl {
        TestCtl {
            guest: config.guest.clone(),
            injected: HashMap::new(),
        }
    }

    /// The error to answer for this call of `cmd`, if one was injected
    /// (consumes one count).
    pub fn take_injected(&mut self, cmd: &str) -> Option<QmpError> {
        if self.injected.is_empty() {
            return None;
        }
        let (left, e) = self.injected.get_mut(cmd)?;
        let e = e.clone();
        *left = left.saturating_sub(1);
        if *left == 0 {
            self.injected.remove(cmd);
        }
        Some(e)
    }
}

fn error_class(c: &api::QapiErrorClass) -> Option<ErrorClass> {
    Some(match c {
        api::QapiErrorClass::GenericError => ErrorClass::GenericError,
        api::QapiErrorClass::CommandNotFound => ErrorClass::CommandNotFound,
        api::QapiErrorClass::DeviceNotActive => ErrorClass::DeviceNotActive,
        api::QapiErrorClass::DeviceNotFound => ErrorClass::DeviceNotFound,
        api::QapiErrorClass::KVMMissingCap => ErrorClass::KVMMissingCap,
        // Classes of later QEMU versions than the machine's own interface knows.
        api::QapiErrorClass::Unknown(name) => match name.as_str() {
            "DeviceEncrypted" => ErrorClass::DeviceEncrypted,
            "MigrationExpected" => ErrorClass::MigrationExpected,
            _ => return None,
        },
    })
}

fn require_running(m: &Machine) -> Result<(), QmpError> {
    if m.is(RunState::Running) {
        Ok(())
    } else {
        Err(generic(format!(
            "The guest is not running (state '{}')",
            m.run.state
        )))
    }
}

/// `__org.qmpkit_io-error`: the guest's next request to `device` fails (`operation`
/// `write` when not given; out of space with `nospace`), with QEMU's default error
/// actions: a write out of space stops the machine, anything else is reported.
pub fn io_error(
    m: &mut Machine,
    device: &str,
    operation: Option<&api::IoOperationType>,
    nospace: bool,
) -> Result<(), QmpError> {
    if !m.config.drives.iter().any(|d| d.id == device) {
        return Err(QmpError::new(
            ErrorClass::DeviceNotFound,
            format!("Device '{device}' not found"),
        ));
    }
    require_running(m)?;
    let operation = operation.cloned().unwrap_or(api::IoOperationType::Write);
    if operation.is_unknown() {
        return Err(generic(
            "Invalid parameter 'operation': expected 'read' or 'write'",
        ));
    }
    // QEMU's defaults: werror=enospc (stop on ENOSPC), rerror=report.
    let action = if nospace && operation == api::IoOperationType::Write {
        api::BlockErrorAction::Stop
    } else {
        api::BlockErrorAction::Report
    };
    let reason = if nospace {
        "No space left on device"
    } else {
        "Input/output error"
    };
    let stop = action == api::BlockErrorAction::Stop;
    m.emit_event(api::BlockIoError {
        device: device.to_string(),
        node_name: crate::block::node_name_of(m, device).unwrap_or_default(),
        operation,
        action,
        nospace: nospace.then_some(true),
        reason: reason.to_string(),
    });
    if stop {
        let status = if nospace { "nospace" } else { "failed" };
        crate::block::set_io_status(m, device, status);
        runstate::vm_stop(m, RunState::IoError);
    }
    Ok(())
}

/// What the running guest asks for; refused unless it runs.
pub fn guest_request(m: &mut Machine, what: runstate::Timer) -> Result<(), QmpError> {
    require_running(m)?;
    runstate::request(m, what);
    Ok(())
}

/// `__org.qmpkit_guest-shutdown`: the guest powers off, or reboots.
pub fn guest_shutdown(m: &mut Machine, reboot: bool) -> Result<(), QmpError> {
    let what = if reboot {
        runstate::Timer::Reset(runstate::ShutdownCause::GuestReset)
    } else {
        runstate::Timer::Shutdown(runstate::ShutdownCause::GuestShutdown)
    };
    guest_request(m, what)
}

/// `__org.qmpkit_inject-failure`: the next `count` calls of `command` (1 when not given; 0
/// clears) fail with `class` (GenericError when not given) and `desc`.
pub fn inject_failure(m: &mut Machine, a: &api::OrgQmpkitInjectFailure) -> Result<(), QmpError> {
    let command = a.command.clone();
    if !served_command(m, &command) {
        return Err(QmpError::new(
            ErrorClass::CommandNotFound,
            format!("The command {command} has not been found"),
        ));
    }
    let class_value = a.class.clone().unwrap_or(api::QapiErrorClass::GenericError);
    let Some(class) = error_class(&class_value) else {
        return Err(generic(format!(
            "Invalid parameter 'class': unknown error class '{}'",
            class_value.as_str()
        )));
    };
    let count = a.count.unwrap_or(1);
    if count < 0 {
        return Err(generic("Parameter 'count' expects a non-negative number"));
    }
    let desc = a
        .desc
        .clone()
        .unwrap_or_else(|| format!("Injected failure of '{command}'"));
    if count == 0 {
        m.testctl.injected.remove(&command);
    } else {
        m.testctl
            .injected
            .insert(command, (count as u64, QmpError::new(class, desc)));
    }
    Ok(())
}

/// Whether the monitor serves `command`: a command of the served schema, a test-control
/// command or one the server answers itself. Only those can be made to fail; QEMU's words
/// for any other name. (Follows the served schema; it moves to the version view.)
fn served_command(m: &Machine, command: &str) -> bool {
    let in_schema = m.schema.lookup(command).is_some_and(|id| {
        matches!(
            m.schema.entity(id).kind,
            qmpkit_schema::model::EntityKind::Command(_)
        )
    });
    in_schema || COMMANDS.contains(&command) || crate::SERVER_BUILTINS.contains(&command)
}

/// `__org.qmpkit_set-guest`: change how the modelled guest behaves.
pub fn set_guest(m: &mut Machine, a: &api::OrgQmpkitSetGuest) {
    if let Some(acpi) = a.acpi {
        m.testctl.guest.acpi = acpi;
    }
    if let Some(d) = a.powerdown_delay_ms {
        m.testctl.guest.powerdown_delay_ms = d.max(0) as u64;
    }
    if let Some(b) = a.balloon_follow {
        m.testctl.guest.balloon_follow = b;
    }
}
