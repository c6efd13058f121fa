//! Node-level block commands: `change-backing-file` (the header's backing file name) and
//! `block_set_io_throttle` (drives' limits and throttle groups, reported by `query-block`).

use qmpkit_qapi::Empty;
use qmpkit_wire::{ErrorClass, QmpError};

use super::R;
use crate::api;
use crate::block::{self, qerr};
use crate::block_throttle::{Bucket, Limits};
use crate::{generic, Cx, Machine};
use qmpkit_block::qcow2_snapshots::{Entry, Stamp};

pub fn change_backing_file(m: &mut Machine, a: api::ChangeBackingFile, _: &mut Cx) -> R<Empty> {
    block::catch_up(m);
    let top = block::resolve_node(m, &a.device)?;
    m.block
        .graph
        .change_backing_file(&top, &a.image_node_name, &a.backing_file)
        .map_err(qerr)?;
    Ok(Empty)
}

fn limits(a: &api::BlockIOThrottle) -> Limits {
    // Negative numbers arrive as QEMU's unsigned fields see them: too large.
    let u = |v: i64| v as u64;
    let bucket = |avg: i64, max: Option<i64>, len: Option<i64>| Bucket {
        avg: u(avg),
        max: max.map_or(0, u),
        burst_length: len.map_or(1, u),
    };
    Limits {
        buckets: [
            bucket(a.bps, a.bps_max, a.bps_max_length),
            bucket(a.bps_rd, a.bps_rd_max, a.bps_rd_max_length),
            bucket(a.bps_wr, a.bps_wr_max, a.bps_wr_max_length),
            bucket(a.iops, a.iops_max, a.iops_max_length),
            bucket(a.iops_rd, a.iops_rd_max, a.iops_rd_max_length),
            bucket(a.iops_wr, a.iops_wr_max, a.iops_wr_max_length),
        ],
        op_size: a.iops_size.map_or(0, u),
    }
}

pub fn block_set_io_throttle(m: &mut Machine, a: api::BlockSetIoThrottle, _: &mut Cx) -> R<Empty> {
    let a = a.0;
    let (device, id) = (a.device.as_deref(), a.id.as_deref());
    if device.is_some() == id.is_some() {
        return Err(generic("Need exactly one of 'device' and 'id'"));
    }
    let name = device.or(id).unwrap_or_default();
    let i = block::lookup(m, device, id).map_err(|_| {
        QmpError::new(
            ErrorClass::DeviceNotFound,
            format!("Device '{name}' not found"),
        )
    })?;
    if m.block.drives[i].medium.is_none() {
        return Err(generic(format!("Device '{name}' has no medium")));
    }
    let l = limits(&a);
    l.validate().map_err(generic)?;
    let drive = m.block.drives[i].id.clone();
    let group = a.group.clone().unwrap_or_else(|| name.to_string());
    m.block.throttle.set(&drive, &group, l);
    Ok(Empty)
}

// ---------------------------------------------------------------------------
// Internal snapshots.

fn stamp(m: &Machine) -> Stamp {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    Stamp {
        date_sec: u32::try_from(now.as_secs()).unwrap_or(u32::MAX),
        date_nsec: now.subsec_nanos(),
        vm_clock_nsec: m.now_ns,
    }
}

/// Takes an internal snapshot of a device's image; what a failed transaction deletes again.
pub fn snapshot_internal(m: &mut Machine, device: &str, name: &str) -> R<(String, Entry)> {
    block::catch_up(m);
    let node = block::resolve_node(m, device)?;
    let st = stamp(m);
    let e = m
        .block
        .graph
        .snapshot_internal(&node, device, name, st)
        .map_err(qerr)?;
    Ok((node, e))
}

/// Deletes a snapshot [`snapshot_internal`] took (a failed transaction's undo).
pub fn undo_snapshot_internal(m: &mut Machine, node: &str, e: &Entry) {
    let _ = m
        .block
        .graph
        .snapshot_delete_internal(node, node, Some(&e.id), Some(&e.name));
}

pub fn blockdev_snapshot_internal_sync(
    m: &mut Machine,
    a: api::BlockdevSnapshotInternalSync,
    _: &mut Cx,
) -> R<Empty> {
    snapshot_internal(m, &a.device, &a.name)?;
    Ok(Empty)
}

pub fn blockdev_snapshot_delete_internal_sync(
    m: &mut Machine,
    a: api::BlockdevSnapshotDeleteInternalSync,
    _: &mut Cx,
) -> R<api::SnapshotInfo> {
    block::catch_up(m);
    let node = block::resolve_node(m, &a.device)?;
    let e = m
        .block
        .graph
        .snapshot_delete_internal(&node, &a.device, a.id.as_deref(), a.name.as_deref())
        .map_err(qerr)?;
    Ok(block::snapshot_info(&e))
}

// ---------------------------------------------------------------------------
// Reopening nodes (QEMU 6.0's `blockdev-reopen`).

/// `blockdev-reopen`: every node's new options, all or none.
pub fn blockdev_reopen(m: &mut Machine, a: api::BlockdevReopen, _: &mut Cx) -> R<Empty> {
    let opts = a
        .options
        .iter()
        .map(super::block::map_options)
        .collect::<R<Vec<_>>>()?;
    m.block.graph.reopen_options(&opts).map_err(qerr)?;
    Ok(Empty)
}

/// `x-blockdev-set-iothread`: QEMU's checks and words. The simulated machine runs no I/O
/// threads and no interface reports which one a node is in, so nothing else changes.
pub fn x_blockdev_set_iothread(
    m: &mut Machine,
    a: api::XBlockdevSetIothread,
    _: &mut Cx,
) -> R<Empty> {
    block::catch_up(m);
    if !m.block.graph.contains(&a.node_name) {
        return Err(generic(format!(
            "Failed to find node with node-name='{}'",
            a.node_name
        )));
    }
    if let api::StrOrNull::S(id) = &a.iothread {
        if !crate::identity::iothreads(m).iter().any(|t| &t.id == id) {
            return Err(generic(format!("Cannot find iothread {id}")));
        }
    }
    if !a.force.unwrap_or(false) && !m.block.graph.users_of(&a.node_name).is_empty() {
        return Err(generic(format!(
            "Node {} is associated with a BlockBackend and could be in use (use force=true \
             to override this check)",
            a.node_name
        )));
    }
    Ok(Empty)
}

/// `x-blockdev-change`: a child added to a quorum or removed from it. `parent` names a
/// node or a drive (its root node).
pub fn x_blockdev_change(m: &mut Machine, a: api::XBlockdevChange, _: &mut Cx) -> R<Empty> {
    block::catch_up(m);
    let parent = match m.block.find(&a.parent).and_then(|d| d.medium.as_ref()) {
        Some(med) if m.block.graph.contains(&med.node_name) => med.node_name.clone(),
        _ => a.parent.clone(),
    };
    let r = m
        .block
        .graph
        .change_child(&parent, a.child.as_deref(), a.node.as_deref())
        .map_err(qerr);
    block::pump(m);
    r.map(|()| Empty)
}

// ---------------------------------------------------------------------------
// Throttle filters.

/// Every `throttle` filter in `opts` (inline children too) names an existing throttle group.
pub fn check_throttle_groups(m: &Machine, opts: &qmpkit_block::BlockdevOptions) -> R<()> {
    if let Some(g) = &opts.throttle_group {
        let tree = &m.qom.tree;
        let exists = tree
            .child(crate::qom::Tree::ROOT, "objects")
            .and_then(|objects| tree.child(objects, g))
            .is_some_and(|n| tree.node(n).ty == "throttle-group");
        if !exists {
            return Err(generic(format!("Throttle group '{g}' does not exist")));
        }
    }
    let children = [
        opts.file.as_ref(),
        opts.backing.as_ref().and_then(Option::as_ref),
    ];
    for c in children.into_iter().flatten() {
        if let qmpkit_block::BlockdevRef::Inline(o) = c {
            check_throttle_groups(m, o)?;
        }
    }
    Ok(())
}
