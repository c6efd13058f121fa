//! Test control: commands under the downstream prefix `__org.qmpkit_` that
//! make the modelled guest do what guests do (shut down or reboot on its
//! own, suspend, panic, trip the watchdog, hit an I/O error) and make the
//! next calls of a command fail, so that management software can be tested
//! against those situations.

use std::collections::HashMap;

use qmpkit_wire::{ErrorClass, QmpError};
use serde_json::{json, Value};

use crate::config::GuestConfig;
use crate::runstate::{self, RunState};
use crate::{arg_bool, arg_i64, arg_str, empty, generic, Args, CmdResult, Cx, Machine};

/// The prefix of test-control commands.
pub const PREFIX: &str = "__org.qmpkit_";

/// Commands this module implements.
pub const HANDLED: &[&str] = &[
    "__org.qmpkit_guest-shutdown",
    "__org.qmpkit_guest-panic",
    "__org.qmpkit_guest-suspend",
    "__org.qmpkit_guest-hibernate",
    "__org.qmpkit_watchdog-fire",
    "__org.qmpkit_io-error",
    "__org.qmpkit_inject-failure",
    "__org.qmpkit_set-guest",
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

fn error_class(name: &str) -> Option<ErrorClass> {
    Some(match name {
        "GenericError" => ErrorClass::GenericError,
        "CommandNotFound" => ErrorClass::CommandNotFound,
        "DeviceNotActive" => ErrorClass::DeviceNotActive,
        "DeviceNotFound" => ErrorClass::DeviceNotFound,
        "KVMMissingCap" => ErrorClass::KVMMissingCap,
        "DeviceEncrypted" => ErrorClass::DeviceEncrypted,
        "MigrationExpected" => ErrorClass::MigrationExpected,
        _ => return None,
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

fn io_error(m: &mut Machine, args: &Args) -> CmdResult {
    let device = arg_str(args, "device").unwrap_or("");
    if !m.config.drives.iter().any(|d| d.id == device) {
        return Err(QmpError::new(
            ErrorClass::DeviceNotFound,
            format!("Device '{device}' not found"),
        ));
    }
    require_running(m)?;
    let operation = arg_str(args, "operation").unwrap_or("write");
    if operation != "read" && operation != "write" {
        return Err(generic(
            "Invalid parameter 'operation': expected 'read' or 'write'",
        ));
    }
    let nospace = arg_bool(args, "nospace").unwrap_or(false);
    // QEMU's defaults: werror=enospc (stop on ENOSPC), rerror=report.
    let action = if nospace && operation == "write" {
        "stop"
    } else {
        "report"
    };
    let reason = if nospace {
        "No space left on device"
    } else {
        "Input/output error"
    };
    let mut data = json!({
        "device": device,
        "node-name": crate::block::node_name_of(m, device).unwrap_or_default(),
        "operation": operation,
        "action": action,
        "reason": reason,
    });
    if nospace {
        if let Some(o) = data.as_object_mut() {
            o.insert("nospace".into(), Value::Bool(true));
        }
    }
    m.emit("BLOCK_IO_ERROR", Some(data));
    if action == "stop" {
        let status = if nospace { "nospace" } else { "failed" };
        crate::block::set_io_status(m, device, status);
        runstate::vm_stop(m, RunState::IoError);
    }
    empty()
}

/// What the running guest asks for (`what`, no data); refused unless it runs.
fn guest_request(m: &mut Machine, what: runstate::Timer) -> CmdResult {
    require_running(m).and_then(|()| {
        runstate::request(m, what);
        empty()
    })
}

pub fn execute(m: &mut Machine, cmd: &str, args: &Args, _cx: &mut Cx) -> Option<CmdResult> {
    let sub = cmd.strip_prefix(PREFIX)?;
    Some(match sub {
        "guest-shutdown" => match require_running(m) {
            Err(e) => Err(e),
            Ok(()) => {
                if arg_bool(args, "reboot").unwrap_or(false) {
                    runstate::request(
                        m,
                        runstate::Timer::Reset(runstate::ShutdownCause::GuestReset),
                    );
                } else {
                    runstate::request(
                        m,
                        runstate::Timer::Shutdown(runstate::ShutdownCause::GuestShutdown),
                    );
                }
                empty()
            }
        },
        "guest-panic" => guest_request(m, runstate::Timer::Panic),
        "guest-suspend" => guest_request(m, runstate::Timer::Suspend),
        "guest-hibernate" => guest_request(m, runstate::Timer::Hibernate),
        "watchdog-fire" => guest_request(m, runstate::Timer::Watchdog),
        "io-error" => io_error(m, args),
        "inject-failure" => {
            let command = arg_str(args, "command").unwrap_or("").to_string();
            // Only commands the monitor serves can fail; QEMU's words for
            // any other name.
            let in_schema = m.schema.lookup(&command).is_some_and(|id| {
                matches!(
                    m.schema.entity(id).kind,
                    qmpkit_schema::model::EntityKind::Command(_)
                )
            });
            let served = in_schema
                || HANDLED.contains(&command.as_str())
                || crate::SERVER_BUILTINS.contains(&command.as_str());
            if !served {
                return Some(Err(QmpError::new(
                    ErrorClass::CommandNotFound,
                    format!("The command {command} has not been found"),
                )));
            }
            let class_name = arg_str(args, "class").unwrap_or("GenericError");
            let Some(class) = error_class(class_name) else {
                return Some(Err(generic(format!(
                    "Invalid parameter 'class': unknown error class '{class_name}'"
                ))));
            };
            let count = arg_i64(args, "count").unwrap_or(1);
            if count < 0 {
                return Some(Err(generic(
                    "Parameter 'count' expects a non-negative number",
                )));
            }
            let desc = arg_str(args, "desc")
                .map(str::to_string)
                .unwrap_or_else(|| format!("Injected failure of '{command}'"));
            if count == 0 {
                m.testctl.injected.remove(&command);
            } else {
                m.testctl
                    .injected
                    .insert(command, (count as u64, QmpError::new(class, desc)));
            }
            empty()
        }
        "set-guest" => {
            if let Some(a) = arg_bool(args, "acpi") {
                m.testctl.guest.acpi = a;
            }
            if let Some(d) = arg_i64(args, "powerdown-delay-ms") {
                m.testctl.guest.powerdown_delay_ms = d.max(0) as u64;
            }
            if let Some(b) = arg_bool(args, "balloon-follow") {
                m.testctl.guest.balloon_follow = b;
            }
            empty()
        }
        _ => return None,
    })
}
