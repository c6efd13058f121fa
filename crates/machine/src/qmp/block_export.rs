//! Exports by ID (`block-export-add`/`-del`, `query-block-exports`), named legacy NBD exports'
//! removal, `blockdev-create` and `block-job-change`: later QEMU releases' commands over the
//! same graph, jobs and NBD server as `qmp/block.rs`.

use std::path::PathBuf;

use qmpkit_block::image::{CreateOptions, ImageFormat};
use qmpkit_qapi::Empty;
use qmpkit_wire::{ErrorClass, QmpError};

use super::R;
use crate::api;
use crate::block::{self, qerr};
use crate::{generic, not_implemented, Cx, Machine};

pub fn query_block_exports(
    m: &mut Machine,
    _: api::QueryBlockExports,
    _: &mut Cx,
) -> R<Vec<api::BlockExportInfo>> {
    // Newest first.
    Ok(m.block
        .exports
        .iter()
        .rev()
        .map(|e| api::BlockExportInfo {
            id: e.id.clone(),
            r#type: api::BlockExportType::Nbd,
            // The node its block device is on now: a job's filter above the node, or where
            // a job moved the node's parents.
            node_name: m
                .block
                .graph
                .user_node(e.user)
                .unwrap_or_else(|| e.node.clone()),
            shutting_down: false,
        })
        .collect())
}

pub fn block_export_add(m: &mut Machine, a: api::BlockExportAdd, _: &mut Cx) -> R<Empty> {
    let a = a.0;
    let api::BlockExportOptionsBranch::Nbd(nbd) = &a.r#type else {
        return Err(not_implemented(&format!(
            "block-export-add of type '{}'",
            a.r#type.tag()
        )));
    };
    if m.block.exports.iter().any(|e| e.id == a.id) {
        return Err(generic(format!(
            "Block export id '{}' is already in use",
            a.id
        )));
    }
    m.block.graph.require_node(&a.node_name).map_err(qerr)?;
    let writable = a.writable.unwrap_or(false);
    if writable && m.block.graph.is_read_only(&a.node_name).map_err(qerr)? {
        return Err(generic("Cannot export read-only node as writable"));
    }
    // Unnamed, the export is known by its node's name (QEMU's `device` default).
    let e = block::NewExport {
        id: &a.id,
        name: nbd.name.as_deref().unwrap_or(&a.node_name),
        description: nbd.description.as_deref(),
        node: &a.node_name,
        writable,
    };
    block::add_export(m, &e)?;
    Ok(Empty)
}

pub fn block_export_del(m: &mut Machine, a: api::BlockExportDel, _: &mut Cx) -> R<Empty> {
    block::remove_export(m, &a.id, a.mode)?;
    Ok(Empty)
}

pub fn nbd_server_remove(m: &mut Machine, a: api::NbdServerRemove, _: &mut Cx) -> R<Empty> {
    if m.block.nbd.is_none() && !m.compat().nbd_server_add_as_export {
        return Err(generic("NBD server not running"));
    }
    // The name is looked up among the exports' IDs (the legacy command's exports have their
    // name as ID), as QEMU does.
    block::remove_export(m, &a.name, a.mode)?;
    Ok(Empty)
}

/// The drivers QEMU 10.0 creates images with (the branches of its `BlockdevCreateOptions`):
/// the others "do not support blockdev-create".
const CREATE_DRIVERS: &[&str] = &[
    "file",
    "gluster",
    "luks",
    "nfs",
    "parallels",
    "qcow",
    "qcow2",
    "qed",
    "rbd",
    "ssh",
    "vdi",
    "vhdx",
    "vmdk",
    "vpc",
];

/// `blockdev-create` for a file on the host, or a qcow2 image over a `file` node (the job
/// writes the file that node opened).
pub fn blockdev_create(m: &mut Machine, a: api::BlockdevCreate, _: &mut Cx) -> R<Empty> {
    block::catch_up(m);
    let (node, path, co) = match &a.options {
        api::BlockdevCreateOptions::File(f) => (
            None,
            PathBuf::from(&f.filename),
            CreateOptions::new(ImageFormat::Raw, f.size),
        ),
        api::BlockdevCreateOptions::Qcow2(q) => {
            let api::BlockdevRef::Reference(file) = &q.file else {
                return Err(not_implemented(
                    "blockdev-create with an inline definition of 'file'",
                ));
            };
            let node = match block::resolve_node(m, file) {
                Ok(n) => n,
                // QEMU looks the node up when the job runs, and the job fails there.
                Err(e) => {
                    m.block
                        .jobs
                        .start_create_failing(&a.job_id, &e.desc)
                        .map_err(qerr)?;
                    block::pump(m);
                    return Ok(Empty);
                }
            };
            let path = PathBuf::from(m.block.graph.filename(&node).map_err(qerr)?);
            let mut co = CreateOptions::new(ImageFormat::Qcow2, q.size);
            co.cluster_size = q.cluster_size;
            co.refcount_bits = q.refcount_bits.map(|b| b.max(0) as u64);
            co.backing_file = q.backing_file.clone();
            co.backing_format = q
                .backing_fmt
                .as_ref()
                .and_then(|f| ImageFormat::from_name(qmpkit_qapi::Enum::as_str(f)));
            (Some(node), path, co)
        }
        other if CREATE_DRIVERS.contains(&other.tag()) => {
            return Err(not_implemented(&format!(
                "blockdev-create with driver '{}'",
                other.tag()
            )))
        }
        _ => return Err(generic("Driver does not support blockdev-create")),
    };
    m.block
        .jobs
        .start_create_on(&a.job_id, node, path, co)
        .map_err(qerr)?;
    block::pump(m);
    Ok(Empty)
}

/// `block-job-change`: a mirror's copy mode, from `background` to `write-blocking`.
pub fn block_job_change(m: &mut Machine, a: api::BlockJobChange, _: &mut Cx) -> R<Empty> {
    block::catch_up(m);
    let a = a.0;
    if m.block.jobs.require_block_job(&a.id).is_err() {
        return Err(QmpError::new(
            ErrorClass::DeviceNotActive,
            format!("Block job '{}' not found", a.id),
        ));
    }
    // QEMU reads the options as a mirror's whatever their type says (another type's carry
    // no copy mode: `background`).
    let write_blocking = match &a.r#type {
        api::BlockJobChangeOptionsBranch::Mirror(c) => {
            c.copy_mode == api::MirrorCopyMode::WriteBlocking
        }
        _ => false,
    };
    let block::BlockState { graph, jobs, .. } = &mut m.block;
    jobs.change_copy_mode(graph, &a.id, write_blocking)
        .map_err(qerr)?;
    Ok(Empty)
}
