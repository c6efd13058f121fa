//! Block layer commands of interfaces newer than the machine's own schema (`blockdev-create`,
//! 5.0's `block-export-*`, `block-job-change`): answered by name
//! over the same job model and graph as the typed handlers in `qmp/block.rs` and
//! `qmp/jobs.rs`, for a served schema that has them (a newer QEMU's, or the storage
//! daemon's).

use std::path::PathBuf;

use qmpkit_block::image::{CreateOptions, ImageFormat};
use qmpkit_wire::{ErrorClass, QmpError};
use serde_json::{json, Map, Value};

use crate::block::{self, qerr};
use crate::{arg_bool, arg_str, generic, Args, CmdResult, Cx, Machine};

pub const HANDLED: &[&str] = &[
    "block-export-add",
    "block-export-del",
    "block-job-change",
    "blockdev-create",
    "nbd-server-remove",
    "query-block-exports",
];

fn empty() -> CmdResult {
    Ok(Value::Object(Map::new()))
}

fn block_job_not_found(id: &str) -> QmpError {
    QmpError::new(
        ErrorClass::DeviceNotActive,
        format!("Block job '{id}' not found"),
    )
}

/// `blockdev-create` for a file on the host with raw or qcow2 on top: the options name the
/// format driver and its `file` (a `file` node's name or an inline file definition is not
/// needed: the job creates the file the `file` node points at).
fn blockdev_create(m: &mut Machine, args: &Args) -> CmdResult {
    let job_id = arg_str(args, "job-id").unwrap_or("").to_string();
    let opts = args
        .get("options")
        .and_then(Value::as_object)
        .ok_or_else(|| generic("Parameter 'options' is missing"))?;
    let driver = opts.get("driver").and_then(Value::as_str).unwrap_or("");
    let size = opts.get("size").and_then(Value::as_u64).unwrap_or(0);
    let (format, path) = match driver {
        "file" => {
            let f = opts.get("filename").and_then(Value::as_str).unwrap_or("");
            (ImageFormat::Raw, PathBuf::from(f))
        }
        "qcow2" | "raw" => {
            let file = opts.get("file").and_then(Value::as_str).unwrap_or("");
            let node = block::resolve_node(m, file)?;
            let path = PathBuf::from(m.block.graph.filename(&node).map_err(qerr)?);
            let f = if driver == "qcow2" {
                ImageFormat::Qcow2
            } else {
                ImageFormat::Raw
            };
            (f, path)
        }
        other => {
            return Err(crate::not_implemented(&format!(
                "blockdev-create with driver '{other}'"
            )))
        }
    };
    let mut co = CreateOptions::new(format, size);
    co.cluster_size = opts.get("cluster-size").and_then(Value::as_u64);
    co.refcount_bits = opts.get("refcount-bits").and_then(Value::as_u64);
    co.backing_file = opts
        .get("backing-file")
        .and_then(Value::as_str)
        .map(str::to_string);
    co.backing_format = opts
        .get("backing-fmt")
        .and_then(Value::as_str)
        .and_then(ImageFormat::from_name);
    m.block.jobs.start_create(&job_id, path, co).map_err(qerr)?;
    block::pump(m);
    empty()
}

fn query_block_exports(m: &Machine) -> Value {
    Value::Array(
        m.block
            .exports
            .iter()
            .map(|e| {
                json!({
                    "id": e.id,
                    "type": "nbd",
                    "node-name": e.node,
                    "shutting-down": false,
                })
            })
            .collect(),
    )
}

fn block_export_add(m: &mut Machine, args: &Args) -> CmdResult {
    let ty = arg_str(args, "type").unwrap_or("");
    if ty != "nbd" {
        return Err(crate::not_implemented(&format!(
            "block-export-add of type '{ty}'"
        )));
    }
    let id = arg_str(args, "id").unwrap_or("").to_string();
    let node = arg_str(args, "node-name").unwrap_or("").to_string();
    if m.block.exports.iter().any(|e| e.id == id) {
        return Err(generic(format!("Block export id '{id}' is already in use")));
    }
    m.block.graph.require_node(&node).map_err(qerr)?;
    if m.block.nbd.is_none() {
        return Err(generic("NBD server not running"));
    }
    // Unnamed, the export is known by its node's name (QEMU's `device` default).
    let name = arg_str(args, "name").unwrap_or(&node).to_string();
    let writable = arg_bool(args, "writable").unwrap_or(false);
    if writable && m.block.graph.is_read_only(&node).map_err(qerr)? {
        return Err(generic("Cannot export read-only node as writable"));
    }
    crate::qmp::block::add_export(m, &id, &name, &node, writable)?;
    empty()
}

/// Dispatch.
pub fn execute(m: &mut Machine, cmd: &str, args: &Args, _cx: &mut Cx) -> Option<CmdResult> {
    if !HANDLED.contains(&cmd) {
        return None;
    }
    block::catch_up(m);
    let id = arg_str(args, "id").unwrap_or("").to_string();
    let r = match cmd {
        "query-block-exports" => Ok(query_block_exports(m)),
        "blockdev-create" => blockdev_create(m, args),
        "block-export-add" => block_export_add(m, args),
        "block-export-del" => match m.block.exports.iter().find(|e| e.id == id) {
            None => Err(generic(format!("Export '{id}' is not found"))),
            Some(e) => {
                let name = e.name.clone();
                crate::qmp::block::remove_export(m, &name).and_then(|()| empty())
            }
        },
        "nbd-server-remove" => {
            let name = arg_str(args, "name").unwrap_or("").to_string();
            if m.block.nbd.is_none() {
                Err(generic("NBD server not running"))
            } else if !m.block.exports.iter().any(|e| e.name == name) {
                Err(generic(format!("Export '{name}' is not found")))
            } else {
                crate::qmp::block::remove_export(m, &name).and_then(|()| empty())
            }
        }
        "block-job-change" => {
            if m.block.jobs.require_block_job(&id).is_err() {
                Err(block_job_not_found(&id))
            } else if args.contains_key("copy-mode") {
                // A mirror's copy mode, the one change QEMU offers, is not modelled.
                Err(crate::not_implemented("block-job-change with 'copy-mode'"))
            } else {
                empty()
            }
        }
        _ => Err(crate::not_implemented(cmd)),
    };
    block::pump(m);
    Some(r)
}
