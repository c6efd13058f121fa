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

/// Fills a drive's `BlockDeviceInfo` with its limits: every average; a burst rate and its
/// length where the rate is set; the iops size where set; the group when throttled.
pub fn report(m: &Machine, drive: &str, info: &mut api::BlockDeviceInfo) {
    let Some((group, l)) = m.block.throttle.of(drive) else {
        return;
    };
    let i = block::i;
    let b = &l.buckets;
    let max = |k: &Bucket| (k.max != 0).then(|| i(k.max));
    let len = |k: &Bucket| (k.max != 0).then(|| i(k.burst_length));
    info.bps = i(b[0].avg);
    info.bps_rd = i(b[1].avg);
    info.bps_wr = i(b[2].avg);
    info.iops = i(b[3].avg);
    info.iops_rd = i(b[4].avg);
    info.iops_wr = i(b[5].avg);
    info.bps_max = max(&b[0]);
    info.bps_rd_max = max(&b[1]);
    info.bps_wr_max = max(&b[2]);
    info.iops_max = max(&b[3]);
    info.iops_rd_max = max(&b[4]);
    info.iops_wr_max = max(&b[5]);
    info.bps_max_length = len(&b[0]);
    info.bps_rd_max_length = len(&b[1]);
    info.bps_wr_max_length = len(&b[2]);
    info.iops_max_length = len(&b[3]);
    info.iops_rd_max_length = len(&b[4]);
    info.iops_wr_max_length = len(&b[5]);
    info.iops_size = (l.op_size != 0).then(|| i(l.op_size));
    info.group = Some(group.to_string());
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
// Reopening nodes (QEMU 6.0's `blockdev-reopen`, 4.0's `x-blockdev-reopen`), by name.

/// Commands of newer interfaces answered here by name.
pub const HANDLED: &[&str] = &["blockdev-reopen", "x-blockdev-reopen"];

fn reopen(m: &mut Machine, list: &[serde_json::Value]) -> R<()> {
    let mut opts = Vec::new();
    for v in list {
        let o: api::BlockdevOptions = serde_json::from_value(v.clone())
            .map_err(|e| generic(format!("Invalid parameter: {e}")))?;
        opts.push(super::block::map_options(&o)?);
    }
    m.block.graph.reopen_options(&opts).map_err(qerr)
}

/// `blockdev-reopen` (a list of options) and `x-blockdev-reopen` (one, flat).
pub fn execute_newer(m: &mut Machine, cmd: &str, args: &crate::Args) -> Option<crate::CmdResult> {
    let r = match cmd {
        "blockdev-reopen" => {
            let list = args
                .get("options")
                .and_then(serde_json::Value::as_array)
                .cloned()
                .unwrap_or_default();
            reopen(m, &list)
        }
        "x-blockdev-reopen" => reopen(m, &[serde_json::Value::Object(args.clone())]),
        _ => return None,
    };
    Some(r.map(|()| serde_json::Value::Object(serde_json::Map::new())))
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

/// The `json:` description QEMU gives a node whose options no plain file name says (a
/// filter): its driver's options down to the file, members in QEMU's order.
pub fn json_filename(m: &Machine, node: &str) -> String {
    format!(
        "json:{}",
        qmpkit_wire::json::to_qemu_string(&describe(&m.block.graph, node, 0))
    )
}

fn describe(g: &qmpkit_block::BlockGraph, node: &str, depth: u32) -> serde_json::Value {
    use qmpkit_block::graph::ChildRole;
    use serde_json::json;
    let Ok(driver) = g.driver(node) else {
        return serde_json::Value::Null;
    };
    let mut o = serde_json::Map::new();
    if let Some(t) = g.throttle_group(node) {
        o.insert("throttle-group".into(), json!(t));
    }
    o.insert("driver".into(), json!(driver.name()));
    match g.child(node, ChildRole::File) {
        Some(c) if depth < 16 => {
            o.insert("file".into(), describe(g, &c, depth + 1));
        }
        _ => {
            if driver == qmpkit_block::Driver::File {
                o.insert(
                    "filename".into(),
                    json!(g.filename(node).unwrap_or_default()),
                );
            }
        }
    }
    serde_json::Value::Object(o)
}
