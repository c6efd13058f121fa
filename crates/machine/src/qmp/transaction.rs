//! `transaction` and the snapshot commands, which QEMU runs as transactions of one action.
//!
//! QEMU runs a transaction's actions in phases: each action prepares, in order; once all
//! have, they commit in order; when one fails, those prepared before it abort, newest
//! first; then every action that began (the failed one too) is cleaned, newest first. What
//! the phases drain shows in the jobs that pause and resume with each drain (measured on
//! qemu-storage-daemon 10.0.2, through ready mirrors going to `standby` and back):
//!
//! - The transaction drains the whole graph once before its first action.
//! - A snapshot action, once it has found its node, drains that node (the jobs linked to it
//!   or to a node above it pause) until it is cleaned; `blockdev-snapshot` drains its
//!   overlay as well once the overlay passed its checks (until it is cleaned too, or at
//!   once when attaching the overlay fails). Inside that section it drains the
//!   whole graph once as it attaches the overlay (`blockdev-snapshot`), or 19 times as it
//!   creates the overlay's image and opens it (`blockdev-snapshot-sync`; 4 times to open an
//!   existing image, 3, 6 or 7 when that fails as the file is missing, locked or of
//!   another format, none when the image cannot be created). A link refused as a cycle or
//!   a permission conflict as the users move fails it after the attaching drain.
//! - It commits with one drain of the whole graph (the node becomes a read-only backing).
//! - It aborts with one drain of the whole graph; its section ends, and its node and overlay
//!   are drained again, until it is cleaned, around one more drain of the whole graph.
//! - It is cleaned: its section ends. An overlay image that `blockdev-snapshot-sync` opened
//!   and nobody uses (its node had no users, or the action aborted) closes then, draining
//!   the whole graph twice.
//!
//! The other actions keep what their own commands drain; their undoing drains nothing.

use std::path::PathBuf;

use qmpkit_block::graph::{ChildRole, Driver};
use qmpkit_qapi::Empty;

use super::block::{self as handlers, BackupUndo};
use super::R;
use crate::api;
use crate::block::{self, qerr};
use crate::{generic, not_implemented, Cx, Machine};

/// A transaction (and the snapshot commands, which are one in QEMU) first drains the graph.
pub(super) fn transaction_drain(m: &mut Machine) {
    m.block.graph.note_drains(1);
    block::pump(m);
}

/// The drains of the graph counted so far reach the jobs now, in order with what follows.
fn flush_drains(m: &mut Machine) {
    m.block.jobs.rank(&m.block.graph);
    let drains = m.block.graph.take_drains();
    m.block.jobs.drain(drains);
    for jobs in m.block.graph.take_node_drains() {
        m.block.jobs.drain_jobs(&jobs);
    }
}

/// Drains the whole graph `n` times, in place of what the graph counted since the last
/// flush (QEMU's numbers for what it did there).
fn drains_instead(m: &mut Machine, n: u32) {
    m.block.graph.take_drains();
    m.block.graph.note_drains(n);
    flush_drains(m);
}

/// A drained section of `node` begins: the jobs linked to it or above it pause until
/// [`end_section`]; they are added to `held`.
fn drain_node(m: &mut Machine, node: &str, held: &mut Vec<String>) {
    flush_drains(m);
    let ids = m.block.graph.jobs_drained_with(node);
    held.extend(m.block.jobs.drain_begin(&ids));
}

/// A drained section ends: its jobs go on, the last drained first.
fn end_section(m: &mut Machine, held: &mut Vec<String>) {
    flush_drains(m);
    held.reverse();
    m.block.jobs.drain_end(held);
    held.clear();
}

// ---------------------------------------------------------------------------
// Snapshots.

/// The drains of an overlay image that closes unused.
const SNAPSHOT_CLOSE_DRAINS: u32 = 2;
/// The drains of `blockdev-snapshot-sync` as it creates its overlay's image and opens it,
/// or opens an existing one.
const SNAPSHOT_CREATE_DRAINS: u32 = 19;
const SNAPSHOT_OPEN_DRAINS: u32 = 4;

/// The drains of an existing overlay image that fails to open, by how it fails.
/// (The checks that come before the opening refuse it without draining.)
fn failed_open_drains(e: &qmpkit_wire::QmpError) -> u32 {
    let desc = &e.desc;
    if desc.starts_with("Could not open") {
        3
    } else if desc.starts_with("Failed to get") {
        6
    } else if desc.starts_with("Image is not in") || desc.contains("format") {
        7
    } else {
        0
    }
}

/// How qemu-storage-daemon 10.0.2 (Debian's build) refuses to create an overlay image of
/// format `f` over a qcow2 node, as `blockdev-snapshot-sync` does without `mode`
/// `existing` (the node is never a vmdk image here): a driver it was built without is unknown, one that creates no images says
/// so, and one whose images have no backing file says that. `Ok` for the formats whose
/// images can have a backing file (qcow, qed, and vmdk over vmdk images).
fn overlay_format_refusal(f: &str) -> R<()> {
    // Drivers of the build that do not create images.
    const NO_CREATE: &[&str] = &[
        "blkdebug",
        "blklogwrites",
        "blkverify",
        "bochs",
        "cloop",
        "compress",
        "copy-before-write",
        "copy-on-read",
        "dmg",
        "null-aio",
        "null-co",
        "preallocate",
        "quorum",
        "replication",
        "snapshot-access",
        "throttle",
        "vvfat",
    ];
    // Drivers that create images without a backing file.
    const NO_BACKING: &[&str] = &[
        "file",
        "host_cdrom",
        "host_device",
        "luks",
        "nbd",
        "nvme",
        "parallels",
        "raw",
        "vdi",
        "vhdx",
        "vpc",
    ];
    if NO_CREATE.contains(&f) {
        return Err(generic(format!(
            "Format driver '{f}' does not support image creation"
        )));
    }
    if NO_BACKING.contains(&f) {
        return Err(generic(format!(
            "Backing file not supported for file format '{f}'"
        )));
    }
    match f {
        // A vmdk image's backing file is a vmdk image (the node is a qcow2 image).
        "vmdk" => Err(generic("backing_file must be a vmdk image")),
        "qcow" | "qed" => Ok(()),
        _ => Err(generic(format!("Unknown file format '{f}'"))),
    }
}

/// A snapshot action that began: what it did, so that it can be committed, undone and
/// cleaned.
pub(super) struct SnapshotAction {
    node: String,
    /// The overlay in the graph (`None`: an overlay image nobody uses, not kept open).
    overlay: Option<String>,
    was_read_only: bool,
    /// Whether the action opened its overlay's image (`blockdev-snapshot-sync`).
    opened: bool,
    aborted: bool,
    /// The jobs its drained section holds.
    held: Vec<String>,
}

fn snapshot_sync_prepare(
    m: &mut Machine,
    a: &api::BlockdevSnapshotSync,
    held: &mut Vec<String>,
) -> R<SnapshotAction> {
    let node = handlers::device_or_node(m, a.device.as_deref(), a.node_name.as_deref())?;
    drain_node(m, &node, held);
    let existing = matches!(a.mode, Some(api::NewImageMode::Existing));
    // A node named by its node name needs its overlay named too; a drive's gets a
    // generated name.
    if a.node_name.is_some() && a.snapshot_node_name.is_none() {
        return Err(generic("New overlay node-name missing"));
    }
    if let Some(f) = a.format.as_deref().filter(|f| *f != "qcow2") {
        if !existing {
            overlay_format_refusal(f)?;
        }
        return Err(not_implemented(&format!(
            "blockdev-snapshot-sync with format '{f}'"
        )));
    }
    let path = PathBuf::from(&a.snapshot_file);
    let was_read_only = m.block.graph.is_read_only(&node).map_err(qerr)?;
    let g = &mut m.block.graph;
    let overlay = match (a.snapshot_node_name.as_deref(), existing) {
        (name, true) => g.snapshot_onto_existing(&node, &path, name),
        (Some(name), false) => g.snapshot_sync(&node, &path, Some(name)),
        (None, false) => g.snapshot_sync_unnamed(&node, &path),
    }
    .map_err(qerr);
    let drains = match (&overlay, existing) {
        (Ok(_), true) => SNAPSHOT_OPEN_DRAINS,
        (Ok(_), false) => SNAPSHOT_CREATE_DRAINS,
        (Err(e), true) => failed_open_drains(e),
        // Checks that come first refuse it, or the image cannot be created.
        (Err(_), false) => 0,
    };
    drains_instead(m, drains);
    let overlay = overlay?;
    block::sync_media(m);
    Ok(SnapshotAction {
        node,
        overlay,
        was_read_only,
        opened: true,
        aborted: false,
        held: Vec::new(),
    })
}

fn snapshot_prepare(
    m: &mut Machine,
    a: &api::BlockdevSnapshot,
    held: &mut Vec<String>,
) -> R<SnapshotAction> {
    // The node may be named by its drive.
    let node = block::resolve_node(m, &a.node)?;
    drain_node(m, &node, held);
    let overlay = a.overlay.as_str();
    // QEMU's order: the node's blockers, then the overlay: found, unused, able to have a
    // backing image, without one yet.
    let g = &m.block.graph;
    g.check_blocked(&node).map_err(qerr)?;
    g.require(overlay).map_err(qerr)?;
    if g.in_use_as_overlay(overlay) {
        return Err(generic("The overlay is already in use"));
    }
    if g.driver(overlay).map_err(qerr)? != Driver::Qcow2 {
        return Err(generic("The overlay does not support backing images"));
    }
    if g.child(overlay, ChildRole::Backing).is_some() {
        return Err(generic("The overlay already has a backing image"));
    }
    let mut overlay_held = Vec::new();
    drain_node(m, overlay, &mut overlay_held);
    let g = &mut m.block.graph;
    // Attaching the backing child drains the graph, also when it finds a cycle.
    let r = g
        .check_no_cycle(overlay, &node, ChildRole::Backing)
        .and_then(|()| g.is_read_only(&node))
        .and_then(|ro| {
            g.set_backing(overlay, Some(&node))?;
            if let Err(e) = g.move_all_users(&node, overlay) {
                let _ = g.set_backing(overlay, None);
                return Err(e);
            }
            let _ = g.make_backing_read_only(&node);
            Ok(ro)
        });
    drains_instead(m, 1);
    let was_read_only = match r {
        Ok(ro) => ro,
        Err(e) => {
            // Refused, it lets its overlay go at once (its node stays drained until the
            // action is cleaned).
            end_section(m, &mut overlay_held);
            return Err(qerr(e));
        }
    };
    held.append(&mut overlay_held);
    block::sync_media(m);
    Ok(SnapshotAction {
        node,
        overlay: Some(overlay.to_string()),
        was_read_only,
        opened: false,
        aborted: false,
        held: Vec::new(),
    })
}

/// The snapshot commits: its node is reopened as a read-only backing.
fn snapshot_commit(m: &mut Machine) {
    drains_instead(m, 1);
}

/// Undoes a snapshot of a failed transaction. The overlay's image file stays on the host
/// when the snapshot created it, as QEMU leaves it.
fn snapshot_abort(m: &mut Machine, s: &mut SnapshotAction) {
    drains_instead(m, 1);
    end_section(m, &mut s.held);
    let g = &mut m.block.graph;
    // QEMU makes the old node read-only only once the transaction commits.
    let _ = g.set_read_only(&s.node, s.was_read_only);
    if let Some(o) = &s.overlay {
        if g.move_all_users(o, &s.node).is_err() {
            let _ = g.move_users(o, &s.node);
        }
        if s.opened {
            g.discard_unused(o);
        } else {
            let _ = g.set_backing(o, None);
        }
    }
    block::sync_media(m);
    m.block.graph.take_drains();
    m.block.graph.take_node_drains();
    let mut held = Vec::new();
    drain_node(m, &s.node.clone(), &mut held);
    if let Some(o) = s.overlay.clone().filter(|_| !s.opened) {
        drain_node(m, &o, &mut held);
    }
    s.held = held;
    s.aborted = true;
    drains_instead(m, 1);
}

/// The snapshot is cleaned: its section ends, and an overlay image nobody uses closes.
fn snapshot_clean(m: &mut Machine, s: &mut SnapshotAction) {
    end_section(m, &mut s.held);
    if s.opened && (s.aborted || s.overlay.is_none()) {
        drains_instead(m, SNAPSHOT_CLOSE_DRAINS);
    }
}

pub fn blockdev_snapshot_sync(
    m: &mut Machine,
    a: api::BlockdevSnapshotSync,
    _: &mut Cx,
) -> R<Empty> {
    block::catch_up(m);
    transaction_drain(m);
    run_alone(m, |m, held| snapshot_sync_prepare(m, &a, held))
}

pub fn blockdev_snapshot(m: &mut Machine, a: api::BlockdevSnapshot, _: &mut Cx) -> R<Empty> {
    block::catch_up(m);
    transaction_drain(m);
    run_alone(m, |m, held| snapshot_prepare(m, &a, held))
}

/// A snapshot command: a transaction of its one action.
fn run_alone(
    m: &mut Machine,
    prepare: impl FnOnce(&mut Machine, &mut Vec<String>) -> R<SnapshotAction>,
) -> R<Empty> {
    let mut held = Vec::new();
    let r = prepare(m, &mut held);
    let r = match r {
        Ok(mut s) => {
            s.held = held;
            snapshot_commit(m);
            snapshot_clean(m, &mut s);
            Ok(Empty)
        }
        Err(e) => {
            end_section(m, &mut held);
            Err(e)
        }
    };
    block::pump(m);
    r
}

// ---------------------------------------------------------------------------
// Transactions.

enum Undo {
    Snapshot(SnapshotAction),
    Backup(BackupUndo),
    Bitmap(super::block_bitmap::Undo),
    Internal(String, qmpkit_block::qcow2_snapshots::Entry),
}

fn apply(
    m: &mut Machine,
    action: &api::TransactionAction,
    held: &mut Vec<String>,
) -> R<Option<Undo>> {
    use api::TransactionAction as A;
    let snapshot = |s: SnapshotAction| Some(Undo::Snapshot(s));
    match action {
        A::Abort(_) => Err(generic("Transaction aborted using Abort action")),
        A::BlockdevSnapshotSync(s) => Ok(snapshot(snapshot_sync_prepare(m, s, held)?)),
        A::BlockdevSnapshot(s) => Ok(snapshot(snapshot_prepare(m, s, held)?)),
        A::DriveBackup(b) => Ok(Some(Undo::Backup(handlers::drive_backup_start(m, b)?))),
        A::BlockdevBackup(b) => Ok(Some(Undo::Backup(handlers::blockdev_backup_start(m, b)?))),
        A::BlockDirtyBitmapAdd(b) => Ok(Some(Undo::Bitmap(super::block_bitmap::add_action(m, b)?))),
        A::BlockDirtyBitmapClear(b) => {
            Ok(Some(Undo::Bitmap(super::block_bitmap::clear_action(m, b)?)))
        }
        A::BlockdevSnapshotInternalSync(s) => {
            let (node, e) = super::block_node::snapshot_internal(m, &s.device, &s.name)?;
            Ok(Some(Undo::Internal(node, e)))
        }
        A::Unknown(_) => Err(not_implemented("this transaction action")),
    }
}

/// `transaction`: every action, or none. A failing action undoes the ones before it, newest
/// first: no overlay, no target file, no job stays behind, and the jobs it would have started
/// send no events.
pub fn transaction(m: &mut Machine, a: api::Transaction, _: &mut Cx) -> R<Empty> {
    block::catch_up(m);
    if let Some(p) = &a.properties {
        if matches!(p.completion_mode, Some(api::ActionCompletionMode::Grouped)) {
            return Err(generic(
                "Action 'completion-mode' not supported by this action",
            ));
        }
    }
    transaction_drain(m);
    let mut done: Vec<Undo> = Vec::new();
    m.block.graph.hold_overlays();
    m.block.jobs.hold_starts();
    let mut failed = None;
    for action in &a.actions {
        let mut held = Vec::new();
        let r = apply(m, action, &mut held);
        flush_drains(m);
        match r {
            Ok(Some(Undo::Snapshot(mut s))) => {
                s.held = held;
                done.push(Undo::Snapshot(s));
            }
            Ok(Some(u)) => done.push(u),
            Ok(None) => {}
            Err(e) => {
                failed = Some((e, held));
                break;
            }
        }
    }
    let Some((e, mut failed_held)) = failed else {
        for u in &done {
            if let Undo::Snapshot(_) = u {
                snapshot_commit(m);
            }
        }
        m.block.graph.release_overlays();
        drains_instead(m, 0);
        m.block.jobs.release_starts(true);
        for u in done.iter_mut().rev() {
            if let Undo::Snapshot(s) = u {
                snapshot_clean(m, s);
            }
        }
        block::pump(m);
        return Ok(Empty);
    };
    m.block.graph.release_overlays();
    drains_instead(m, 0);
    m.block.jobs.release_starts(false);
    let mut cleaned = Vec::new();
    for u in done.into_iter().rev() {
        match u {
            Undo::Snapshot(mut s) => {
                snapshot_abort(m, &mut s);
                cleaned.push(s);
            }
            // Undoing the other actions drains nothing that shows.
            Undo::Backup(b) => handlers::undo_backup(m, b),
            Undo::Bitmap(b) => super::block_bitmap::undo(m, b),
            Undo::Internal(node, e) => super::block_node::undo_snapshot_internal(m, &node, &e),
        }
        drains_instead(m, 0);
    }
    // The failed action is cleaned first (it began last), then those before it.
    end_section(m, &mut failed_held);
    for s in cleaned.iter_mut() {
        snapshot_clean(m, s);
    }
    block::pump(m);
    Err(e)
}
