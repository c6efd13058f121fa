//! Jobs (block jobs and QEMU 3.0's generic `job-*`) and block exports: the
//! machine starts none (no command that starts a job, such as
//! `drive-mirror`, `block-stream` or `blockdev-backup`, nor
//! `nbd-server-start`, is implemented yet), so the lists are empty and
//! every command on a job or the NBD server names one that does not exist,
//! answered in QEMU's words.

use qmpkit_wire::{ErrorClass, QmpError};
use serde_json::Value;

use crate::{arg_str, generic, Args, CmdResult, Cx, Machine};

pub const HANDLED: &[&str] = &[
    "block-job-cancel",
    "block-job-change",
    "block-job-complete",
    "block-job-dismiss",
    "block-job-finalize",
    "block-job-pause",
    "block-job-resume",
    "block-job-set-speed",
    "job-cancel",
    "job-complete",
    "job-dismiss",
    "job-finalize",
    "job-pause",
    "job-resume",
    "nbd-server-stop",
    "query-block-exports",
    "query-block-jobs",
    "query-jobs",
];

/// Dispatch.
pub fn execute(_m: &mut Machine, cmd: &str, args: &Args, _cx: &mut Cx) -> Option<CmdResult> {
    Some(match cmd {
        "query-block-jobs" | "query-jobs" => Ok(Value::Array(Vec::new())),
        "block-job-cancel"
        | "block-job-complete"
        | "block-job-pause"
        | "block-job-resume"
        | "block-job-set-speed"
        | "block-job-change"
        | "block-job-dismiss"
        | "block-job-finalize" => {
            // The job's id: `device` for the older commands, `id` for the
            // newer ones.
            let id = arg_str(args, "device")
                .or_else(|| arg_str(args, "id"))
                .unwrap_or("");
            Err(QmpError::new(
                ErrorClass::DeviceNotActive,
                format!("Block job '{id}' not found"),
            ))
        }
        "job-cancel" | "job-complete" | "job-dismiss" | "job-finalize" | "job-pause"
        | "job-resume" => Err(generic("Job not found")),
        // nbd-server-start is not implemented: no server, no exports.
        "nbd-server-stop" => Err(generic("NBD server not running")),
        "query-block-exports" => Ok(Value::Array(Vec::new())),
        _ => return None,
    })
}
