//! Migration, as far as the machine goes today: none ever starts
//! (`migrate` itself is not implemented), so the commands that only look
//! at or act on a migration in progress answer what QEMU answers when
//! there is none. On a machine started with `-incoming`, which waits for a
//! migration it cannot receive, they answer that they are not implemented,
//! as does everything else about migration.

use serde_json::{Map, Value};

use qmpkit_wire::{ErrorClass, QmpError};

use crate::{arg_str, generic, not_implemented, Args, CmdResult, Cx, Machine};

pub const HANDLED: &[&str] = &[
    "client_migrate_info",
    "migrate-continue",
    "migrate-incoming",
    "migrate-start-postcopy",
    "migrate_cancel",
    "query-migrate",
    "x-colo-lost-heartbeat",
];

/// Dispatch.
pub fn execute(m: &mut Machine, cmd: &str, args: &Args, _cx: &mut Cx) -> Option<CmdResult> {
    // A machine started with -incoming waits for a migration that this
    // machine cannot receive: nothing here describes that state.
    let incoming = m.config.incoming.is_some();
    Some(match cmd {
        // No migration has ever happened: nothing to report.
        "query-migrate" if !incoming => Ok(Value::Object(Map::new())),
        // Nothing to cancel.
        "migrate_cancel" if !incoming => crate::empty(),
        "migrate-incoming" if !incoming => {
            Err(generic("'-incoming' was not specified on the command line"))
        }
        "migrate-continue" if !incoming => Err(generic("Migration not in expected state: none")),
        // The capability can't be set (migrate-set-capabilities is not
        // implemented).
        "migrate-start-postcopy" if !incoming => Err(generic(
            "Enable postcopy with migrate_set_capability before the start of migration",
        )),
        "x-colo-lost-heartbeat" => Err(generic("VM is not in COLO mode")),
        // Only SPICE clients can be told, and the machine has no SPICE.
        "client_migrate_info" => match arg_str(args, "protocol") {
            Some("spice") => Err(QmpError::new(
                ErrorClass::DeviceNotActive,
                "SPICE is not in use",
            )),
            _ => Err(generic("Parameter 'protocol' expects 'spice'")),
        },
        _ if HANDLED.contains(&cmd) => Err(not_implemented(cmd)),
        _ => return None,
    })
}
