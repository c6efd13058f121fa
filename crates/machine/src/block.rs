//! Block devices over the block layer ([`qmpkit_block`]): the drives of the configuration as
//! block backends over graph nodes, their media and trays, the node graph itself, block jobs
//! and NBD exports.
//!
//! A drive's image opens for real: `-drive` creates a format node over a file node (named
//! `#blockNNN`, as QEMU names them) and the drive's backend uses it, so `query-block`, jobs,
//! snapshots and exports see the image's own facts and data. An image that does not open
//! stops the machine from starting, with QEMU's words ([`Machine::try_new`]). Only the
//! default machine's own disks, whose files exist nowhere, are simulated media (a file name,
//! a format and a size, never opened; commands that need the data refuse them in words that
//! say so). `blockdev-add` nodes are always real.
//!
//! Tray semantics follow QEMU's: a device with a tray (the IDE CD-ROM) reports
//! `DEVICE_TRAY_MOVED` each time its tray opens or closes; changing the medium opens the
//! tray, swaps the medium and closes it.
//!
//! Jobs progress on the machine's clock: while one runs, a [`Timer::Jobs`] tick advances them
//! ([`on_timer`]), and their notifications become `JOB_STATUS_CHANGE` / `BLOCK_JOB_*` events
//! in the order the job model gives them ([`pump`]).

mod filename;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use qmpkit_block::graph::{
    BlockGraph, BlockdevOptions, BlockdevRef, Driver, Perm, PermSet, UserId, UserKind,
};
use qmpkit_block::job::{JobEvent, JobKind, JobStatus, Jobs};
use qmpkit_block::nbd::{NbdExport, NbdServer, Switchable};
use qmpkit_wire::{ErrorClass, QmpError};

use crate::api;
use crate::block_throttle::Bucket;
use crate::config::DriveConfig;
use crate::qom::types;
use crate::{Machine, MachineConfig, TimerAction};

/// The block layer's timers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Timer {
    /// Advance the running jobs.
    Jobs,
    /// An export removed in `hard` mode is gone (its `BLOCK_EXPORT_DELETED`).
    ExportDeleted(String),
    /// A second has passed since a quorum event of this key was sent (see
    /// [`QuorumThrottle`]).
    QuorumEvent(String),
}

/// QEMU sends a quorum's events at most once a second: `QUORUM_REPORT_BAD` per child node,
/// `QUORUM_FAILURE` all together. The first goes at once; later ones within the second wait,
/// only the latest kept, and go when it ends (which starts another second).
#[derive(Debug, Default)]
pub struct QuorumThrottle {
    /// Keys whose second runs, with the event waiting for its end.
    waiting: std::collections::BTreeMap<String, Option<qmpkit_block::graph::QuorumEvent>>,
}

/// How long a quorum event holds back the next one of its key.
const QUORUM_EVENT_RATE_NS: u64 = 1_000_000_000;

/// A medium in a drive.
#[derive(Debug, Clone, PartialEq)]
pub struct Medium {
    pub file: String,
    /// Format driver (`qcow2`, `raw`, …).
    pub format: String,
    pub read_only: bool,
    /// Virtual size in bytes.
    pub size: u64,
    /// The node name of the image (QEMU's generated `#blockNNN` form).
    pub node_name: String,
    /// The drive's backend on the node when the medium is a real image in the graph.
    pub user: Option<UserId>,
}

/// One drive's state.
#[derive(Debug, Clone, PartialEq)]
pub struct Drive {
    /// The drive's name (`ide0-hd0`, `virtio0`, `ide1-cd0`, …).
    pub id: String,
    /// `ide`, `virtio`, `scsi`, `floppy`, …
    pub interface: String,
    /// Whether the medium can be changed (CD-ROMs, floppies).
    pub removable: bool,
    /// Whether the device has a tray (CD-ROMs).
    pub has_tray: bool,
    /// A floppy disk drive's: removable, without a tray, and without an I/O status.
    pub floppy: bool,
    pub tray_open: bool,
    /// Locked by the guest (prevent medium removal).
    pub locked: bool,
    pub medium: Option<Medium>,
    /// `ok`, `failed` or `nospace`.
    pub io_status: &'static str,
    /// I/O the guest did through the drive.
    pub stats: IoStats,
}

/// What `query-blockstats` counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IoStats {
    pub rd_bytes: u64,
    pub wr_bytes: u64,
    pub rd_operations: u64,
    pub wr_operations: u64,
    pub flush_operations: u64,
    pub wr_highest_offset: u64,
}

/// One NBD export of the running server.
#[derive(Debug)]
pub struct Export {
    /// The export's id (`block-export-add`), its name for `nbd-server-add`.
    pub id: String,
    pub name: String,
    pub node: String,
    pub writable: bool,
    pub user: UserId,
    /// The data path the NBD server uses, and the node it goes to now.
    pub backend: Arc<Switchable>,
    pub bound: String,
}

/// The block layer of one machine.
#[derive(Debug, Default)]
pub struct BlockState {
    pub drives: Vec<Drive>,
    /// Counter for the node names of simulated media.
    next_node: u32,
    /// The node graph (real images).
    pub graph: BlockGraph,
    /// Block jobs and `blockdev-create` jobs.
    pub jobs: Jobs,
    /// The NBD server, when started.
    pub nbd: Option<NbdServer>,
    pub exports: Vec<Export>,
    /// Guest devices plugged onto a node (`device_add … drive=<node-name>`): their qdev
    /// (id or QOM path) and their backend on the node.
    pub plugged: Vec<(String, UserId)>,
    /// When the pending job timer is due, if one is.
    tick_at: Option<u64>,
    /// Drives' I/O limits and throttle groups.
    pub throttle: crate::block_throttle::Throttles,
    /// The file names QEMU shows for the graph's nodes, kept while the graph is unchanged.
    names: filename::Names,
    /// The graph's generation when the drives' media last followed it ([`sync_media`]).
    media_synced: Option<qmpkit_block::graph::Generation>,
    /// Quorum events held back.
    quorum_events: QuorumThrottle,
    /// Drives opened read-write whose image can only be read (an fd set without a descriptor
    /// for writing), with QEMU's words for the writer that is refused.
    unwritable: Vec<(String, String)>,
    /// Warnings QEMU prints on its standard error (not in QMP), waiting to be printed
    /// ([`Machine::take_diagnostics`]).
    pub diagnostics: Vec<String>,
}

/// Hook: a device is about to be plugged. A device that would write to a drive whose image
/// can only be read (see `BlockState::unwritable`) is refused in the words of the open
/// for writing that failed; a CD-ROM device only reads.
pub fn pre_plug(m: &Machine, info: &crate::devices::PlugInfo) -> Result<(), QmpError> {
    let Some(drive) = info
        .props
        .iter()
        .find(|(k, _)| k == "drive")
        .and_then(|(_, v)| v.as_str())
    else {
        return Ok(());
    };
    if info.ty.ends_with("-cd") {
        return Ok(());
    }
    match m.block.unwritable.iter().find(|(d, _)| d == drive) {
        Some((_, e)) => Err(QmpError::generic(e.clone())),
        None => Ok(()),
    }
}

/// QEMU's warning for an image opened for writing whose format was probed as raw.
fn probed_raw_warning(file: &str) -> String {
    format!(
        "WARNING: Image format was not specified for '{file}' and probing guessed raw.\n\
         \x20        Automatically detecting the format is dangerous for raw images, write operations on block 0 will be restricted.\n\
         \x20        Specify the 'raw' format explicitly to remove the restrictions.\n"
    )
}

/// Queues QEMU's warning when `medium`, whose format was probed (not given), is raw and
/// opened for writing: read-only media get none.
fn warn_probed_raw(m: &mut Machine, file: &str, medium: &Medium) {
    if medium.format == "raw" && !medium.read_only {
        m.block.diagnostics.push(probed_raw_warning(file));
    }
}

/// The permissions a guest device's backend takes on its node, and what it shares.
fn device_perms(read_only: bool) -> (PermSet, PermSet) {
    let perm = if read_only {
        PermSet::of(&[Perm::ConsistentRead])
    } else {
        PermSet::of(&[Perm::ConsistentRead, Perm::Write])
    };
    (perm, PermSet::ALL)
}

/// Options of a format node over a file node, as `-drive file=…,format=…` opens it.
fn drive_options(
    file: &str,
    format: &str,
    read_only: bool,
    auto_read_only: bool,
) -> Option<BlockdevOptions> {
    let driver = match format {
        "qcow2" => Driver::Qcow2,
        "raw" => Driver::Raw,
        _ => return None,
    };
    let mut f = BlockdevOptions::file(file).read_only(read_only);
    f.auto_read_only = auto_read_only;
    let child = BlockdevRef::Inline(Box::new(f));
    Some(BlockdevOptions::format(driver, child).read_only(read_only))
}

impl BlockState {
    /// The drives of `config` over their media; `opener`: how file nodes open `/dev/fdset/N`
    /// (the machine's fd sets). Also QEMU's start-up error for the first drive whose image
    /// cannot be opened (that drive is left empty; the others are opened all the same).
    pub fn new(
        config: &MachineConfig,
        opener: std::sync::Arc<qmpkit_block::graph::OpenFn>,
    ) -> (BlockState, Option<String>) {
        let mut s = BlockState::default();
        s.graph.set_opener(opener);
        let mut first_error = None;
        for d in &config.drives {
            let cdrom = d.media == "cdrom";
            let floppy = config.is_floppy_drive(&d.id);
            let removable = cdrom || floppy;
            let medium = match s.drive_medium(d) {
                Ok(m) => m,
                Err(e) => {
                    first_error.get_or_insert_with(|| match &d.option {
                        Some(o) => format!("{o}: {}", e.desc),
                        None => e.desc,
                    });
                    None
                }
            };
            s.drives.push(Drive {
                id: d.id.clone(),
                interface: d.interface.clone(),
                removable,
                has_tray: cdrom,
                floppy,
                tray_open: false,
                locked: false,
                medium,
                io_status: "ok",
                stats: IoStats::default(),
            });
        }
        // A guest device on a drive that cannot be written is refused when it is created:
        // the board's own (`if=ide`, …) with the bare error, a `-device` with its option.
        if first_error.is_none() {
            let unwritable = s.unwritable.clone();
            first_error = unwritable.iter().find_map(|(id, e)| {
                let d = config.drives.iter().find(|d| &d.id == id)?;
                (d.interface != "none").then(|| e.clone())
            });
            if first_error.is_none() {
                first_error = config.devices.iter().find_map(|dev| {
                    let drive = dev.props.get("drive")?;
                    let (_, e) = unwritable.iter().find(|(id, _)| id == drive)?;
                    Some(match &dev.option {
                        Some(o) => format!("{o}: {e}"),
                        None => e.clone(),
                    })
                });
            }
        }
        (s, first_error)
    }

    /// Drive `d`'s medium at start-up: a simulated one where the configuration says so (the
    /// default machine's disks, whose files exist nowhere), else its image opened in the
    /// graph, or the error that refuses it.
    fn drive_medium(&mut self, d: &DriveConfig) -> Result<Option<Medium>, QmpError> {
        if d.format.is_none()
            && matches!(d.driver.as_deref(), Some("null-co" | "null-aio" | "file"))
        {
            return self.open_driver_medium(d).map(Some);
        }
        let Some(f) = &d.file else {
            return Ok(None);
        };
        let format = d
            .format
            .clone()
            .or_else(|| d.driver.clone())
            .unwrap_or_else(|| probe_format(f));
        if d.simulated {
            return Ok(Some(self.unread_medium(f, &format, d.readonly, d.size)));
        }
        let node_name = d.options.get("node-name").map(String::as_str);
        let medium = self.open_medium(&d.id, f, &format, d.readonly, node_name, true)?;
        // A snapshot writes to a temporary overlay: the image itself is only read.
        let snapshot = d
            .options
            .get("snapshot")
            .is_some_and(|v| matches!(v.as_str(), "on" | "yes" | "true"));
        if d.format.is_none()
            && d.driver.is_none()
            && medium.format == "raw"
            && !medium.read_only
            && !snapshot
        {
            self.diagnostics.push(probed_raw_warning(f));
        }
        Ok(Some(medium))
    }

    /// Opens `file` (a host file, or `/dev/fdset/N` through the machine's fd sets) in the
    /// graph as `format` for drive `id`, its format node named `node_name` where given (else
    /// a generated name), or says why not in QEMU's words. A format the block
    /// layer does not read (only raw and qcow2 are) gives a medium of the file's size that
    /// is never read, once the file itself opens.
    fn open_medium(
        &mut self,
        id: &str,
        file: &str,
        format: &str,
        read_only: bool,
        node_name: Option<&str>,
        auto_read_only: bool,
    ) -> Result<Medium, QmpError> {
        // A host device (`/dev/sdb`, …) would take QEMU's `host_device` protocol, which the
        // block layer does not have: a medium that is never read.
        let device = std::fs::metadata(file).is_ok_and(|m| !m.is_file() && !m.is_dir());
        if device && !file.starts_with("/dev/fdset/") {
            return Ok(self.unread_medium(file, format, read_only, 0));
        }
        if let Some(mut opts) = drive_options(file, format, read_only, auto_read_only) {
            opts.node_name = node_name.map(str::to_string);
            let e = match self.open_node_medium(id, &opts, file, format) {
                Err(e) if !read_only && auto_read_only => e,
                r => return r,
            };
            // A drive's image opens read-only where it cannot be opened for writing (QEMU's
            // `auto-read-only`, which `-drive` sets), and then says what that attempt met.
            let ro = drive_options(file, format, true, true).unwrap_or(opts);
            return match self.graph.add_implicit(&ro) {
                Ok(node) => {
                    self.graph.discard_unused(&node);
                    Err(e)
                }
                Err(ro_err) => Err(qerr(ro_err)),
            };
        }
        // Protocols that name no file.
        match format {
            "nbd" if !file.starts_with("nbd:") => {
                return Err(QmpError::generic(
                    "File name string for NBD must start with 'nbd:'",
                ))
            }
            "nbd" => return Ok(self.unread_medium(file, format, read_only, 0)),
            "iscsi" => return Err(QmpError::generic(
                "Unable to load module iscsi. Perhaps you want to install qemu-block-extra or qemu-block-supplemental package?",
            )),
            _ => {}
        }
        let opts = BlockdevOptions::file(file).read_only(read_only);
        let node = self.graph.add_implicit(&opts).map_err(qerr)?;
        let size = self.graph.size(&node).unwrap_or(0);
        // The format's driver reads the file's header and refuses one not of its kind.
        let refused = self
            .graph
            .host_path(&node)
            .ok()
            .and_then(|path| qmpkit_block::image::foreign_format_error(&path, file, format));
        self.graph.discard_unused(&node);
        if let Some(e) = refused {
            return Err(QmpError::generic(e));
        }
        Ok(self.unread_medium(file, format, read_only, size))
    }

    /// Lets go of a medium opened for a drive but never put in (a change that failed after
    /// the new image opened): its user leaves the node, and the node goes unless used.
    fn drop_medium(&mut self, med: Medium) {
        if let Some(u) = med.user {
            self.graph.detach_user(u);
        }
        self.graph.discard_unused(&med.node_name);
    }

    /// Opens the node of `-drive driver=…` (a null node, a file node by `filename=`) with
    /// the driver's own options, for drive `d`.
    fn open_driver_medium(&mut self, d: &DriveConfig) -> Result<Medium, QmpError> {
        let drv = d.driver.as_deref().unwrap_or_default();
        let text = |k: &str| d.options.get(k).map(String::as_str);
        // QEMU 10.0.2 aborts on a size that is no number, after these words.
        let bad = |k: &str| {
            QmpError::generic(format!(
                "Parameter '{k}' expects a non-negative number below 2^64"
            ))
        };
        let mut o = match drv {
            "null-co" | "null-aio" => {
                let mut o = BlockdevOptions::new(Driver::from_name(drv).unwrap_or(Driver::NullCo));
                o.size = match text("size") {
                    Some(v) => Some(v.parse().map_err(|_| bad("size"))?),
                    None => None,
                };
                o.read_zeroes = text("read-zeroes").map(|v| matches!(v, "on" | "true" | "yes"));
                o
            }
            _ => BlockdevOptions::file(text("filename").ok_or_else(|| {
                QmpError::generic("The 'file' block driver requires a file name")
            })?),
        };
        o.from_text = true;
        o.read_only = d.readonly;
        o.node_name = text("node-name").map(str::to_string);
        let file = match drv {
            "file" => text("filename").unwrap_or_default().to_string(),
            _ => String::new(),
        };
        self.open_node_medium(&d.id, &o, &file, drv)
    }

    /// Adds the node `opts` describes as drive `id`'s medium, the drive's device on it.
    fn open_node_medium(
        &mut self,
        id: &str,
        opts: &BlockdevOptions,
        file: &str,
        format: &str,
    ) -> Result<Medium, QmpError> {
        let read_only = opts.read_only;
        let node = self.graph.add_implicit(opts).map_err(qerr)?;
        let (perm, shared) = device_perms(read_only);
        let user =
            match self
                .graph
                .attach_user(&node, UserKind::Device(id.to_string()), perm, shared)
            {
                Ok(u) => Some(u),
                Err(e) => {
                    // A drive whose image cannot be written opens all the same; the device
                    // that would write it is refused (see `BlockState::new`).
                    if self.graph.write_error(&node).is_some() {
                        self.unwritable.push((id.to_string(), e.desc));
                    }
                    None
                }
            };
        let size = self.graph.size(&node).unwrap_or(0);
        let file = match file {
            "" => self.graph.filename(&node).unwrap_or_default(),
            f => f.to_string(),
        };
        Ok(Medium {
            file,
            format: format.to_string(),
            read_only,
            size,
            node_name: node,
            user,
        })
    }

    /// A medium of `size` bytes that is never read (not in the graph).
    fn unread_medium(&mut self, file: &str, format: &str, read_only: bool, size: u64) -> Medium {
        Medium {
            file: file.to_string(),
            format: format.to_string(),
            read_only,
            size,
            node_name: self.node_name(),
            user: None,
        }
    }

    /// A fresh generated node name for a simulated medium.
    fn node_name(&mut self) -> String {
        let n = 100 + 13 * self.next_node;
        self.next_node += 1;
        format!("#block{n}")
    }

    pub fn find(&self, id: &str) -> Option<&Drive> {
        self.drives.iter().find(|d| d.id == id)
    }

    fn index(&self, id: &str) -> Option<usize> {
        self.drives.iter().position(|d| d.id == id)
    }

    /// Takes the medium out of drive `i`, releasing its backend on the node.
    fn take_medium(&mut self, i: usize) {
        let id = self.drives[i].id.clone();
        self.unwritable.retain(|(d, _)| *d != id);
        if let Some(med) = self.drives[i].medium.take() {
            if let Some(u) = med.user {
                self.graph.detach_user(u);
            }
        }
    }
}

/// A new export of a node on the NBD server.
pub struct NewExport<'a> {
    /// Its ID (`block-export-add`'s `id`; `nbd-server-add`'s name).
    pub id: &'a str,
    /// The name clients ask for.
    pub name: &'a str,
    /// Free text shown to clients.
    pub description: Option<&'a str>,
    /// The node (a resolved node name).
    pub node: &'a str,
    pub writable: bool,
}

/// Exports a node on the running server, in QEMU's order of checks: the ID, the server, the
/// name.
pub fn add_export(m: &mut Machine, e: &NewExport) -> Result<(), QmpError> {
    if m.block.exports.iter().any(|x| x.id == e.id) {
        return Err(QmpError::generic(format!(
            "Block export id '{}' is already in use",
            e.id
        )));
    }
    let perm = if e.writable {
        PermSet::of(&[Perm::ConsistentRead, Perm::Write])
    } else {
        PermSet::of(&[Perm::ConsistentRead])
    };
    let backend = m.block.graph.backend(e.node).map_err(qerr)?;
    // The export's block backend goes onto the node first, taking what it needs and sharing
    // everything (a conflict or a lock shows first); then the NBD server is asked for, and
    // the export stops sharing resizes (qemu-storage-daemon 10.0.2's order).
    let user = m
        .block
        .graph
        .attach_user(
            e.node,
            UserKind::Export(e.name.to_string()),
            perm,
            PermSet::ALL,
        )
        .map_err(qerr);
    // Refused as it goes onto the node (a permission conflict, an image lock): the graph
    // drained once.
    let user = user.map_err(|err| {
        m.block.graph.note_drains(1);
        pump(m);
        err
    })?;
    let refused = |m: &mut Machine, err: QmpError| {
        m.block.graph.detach_user(user);
        export_refused(m, err)
    };
    if m.block.nbd.is_none() {
        return Err(refused(m, QmpError::generic("NBD server not running")));
    }
    if m.block.exports.iter().any(|x| x.name == e.name) {
        let msg = format!("NBD server already has export named '{}'", e.name);
        return Err(refused(m, QmpError::generic(msg)));
    }
    // An NBD export keeps others from resizing its node.
    let shared = PermSet::ALL.minus(PermSet::of(&[Perm::Resize]));
    if let Err(err) = m.block.graph.set_user_shared(user, shared) {
        return Err(refused(m, qerr(err)));
    }
    let backend = Arc::new(Switchable::new(backend));
    let export = NbdExport {
        name: e.name.to_string(),
        description: e.description.map(str::to_string),
        writable: e.writable,
        backend: backend.clone(),
    };
    if let Some(Err(err)) = m.block.nbd.as_ref().map(|s| s.add_export(export)) {
        m.block.graph.detach_user(user);
        return Err(qerr(err));
    }
    m.block.exports.push(Export {
        id: e.id.to_string(),
        name: e.name.to_string(),
        node: e.node.to_string(),
        writable: e.writable,
        user,
        backend,
        bound: e.node.to_string(),
    });
    // Its block backend went onto the node.
    m.block.graph.note_drains(1);
    pump(m);
    Ok(())
}

/// An export refused once its block backend was on the node: QEMU finds out with it there,
/// so it came and went (two drains of the graph).
pub fn export_refused(m: &mut Machine, e: QmpError) -> QmpError {
    m.block.graph.note_drains(2);
    pump(m);
    e
}

/// Removes the export named `name` (`BLOCK_EXPORT_DELETED` follows).
pub fn remove_export(
    m: &mut Machine,
    id: &str,
    mode: Option<api::BlockExportRemoveMode>,
) -> Result<(), QmpError> {
    let Some(i) = m.block.exports.iter().position(|e| e.id == id) else {
        return Err(QmpError::generic(format!("Export '{id}' is not found")));
    };
    let hard = mode == Some(api::BlockExportRemoveMode::Hard);
    let name = m.block.exports[i].name.clone();
    if let Some(s) = &m.block.nbd {
        // `safe` leaves an export that has clients alone; `hard` disconnects them.
        if !hard && s.export_clients(&name) > 0 {
            return Err(QmpError::generic(format!("export '{id}' still in use")));
        }
        s.remove_export(&name);
        if hard {
            s.disconnect_export(&name);
        }
    }
    let e = m.block.exports.remove(i);
    m.block.graph.detach_user(e.user);
    m.block.graph.note_drains(1);
    pump(m);
    if hard {
        // QEMU's hard removal announces the export gone once its clients are, after the
        // command's reply.
        m.schedule(0, TimerAction::Block(Timer::ExportDeleted(e.id)));
    } else {
        m.emit_event(api::BlockExportDeleted { id: e.id });
    }
    Ok(())
}

/// Stops the NBD server and drops its exports, each with its `BLOCK_EXPORT_DELETED`.
pub fn stop_nbd(m: &mut Machine) -> Result<(), QmpError> {
    let Some(mut s) = m.block.nbd.take() else {
        return Err(QmpError::generic("NBD server not running"));
    };
    s.stop();
    // Every export's block backend leaves its node (a drain each), then the exports are
    // announced gone, the newest first.
    let exports = std::mem::take(&mut m.block.exports);
    for e in &exports {
        m.block.graph.detach_user(e.user);
    }
    m.block.graph.note_drains(exports.len() as u32);
    pump(m);
    for e in exports.into_iter().rev() {
        m.emit_event(api::BlockExportDeleted { id: e.id });
    }
    Ok(())
}

thread_local! {
    /// The hint of the last block-layer error made a QMP error on this thread.
    static LAST_HINT: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// The hint of the last block-layer error made a QMP error on this thread, taken: what QEMU
/// prints below an error where a person reads it (a program's stderr), never in QMP ("Is
/// another process using the image [FILE]?").
pub fn take_error_hint() -> Option<String> {
    LAST_HINT.with(|h| h.borrow_mut().take())
}

/// A block-layer error as a QMP error.
pub fn qerr(e: qmpkit_block::Error) -> QmpError {
    LAST_HINT.with(|h| *h.borrow_mut() = e.hint.clone());
    let class = match e.class {
        qmpkit_block::ErrorClass::GenericError => ErrorClass::GenericError,
        qmpkit_block::ErrorClass::DeviceNotFound => ErrorClass::DeviceNotFound,
        qmpkit_block::ErrorClass::DeviceNotActive => ErrorClass::DeviceNotActive,
    };
    QmpError::new(class, e.desc)
}

/// The node name of drive `id`'s medium, if any.
pub fn node_name_of(m: &Machine, id: &str) -> Option<String> {
    m.block
        .find(id)
        .and_then(|d| d.medium.as_ref())
        .map(|x| x.node_name.clone())
}

/// The name of the drive whose medium is node `node` (QEMU's device name of a node), empty
/// for a node no drive has.
pub fn drive_name_of(m: &Machine, node: &str) -> String {
    m.block
        .drives
        .iter()
        .find(|d| d.medium.as_ref().is_some_and(|x| x.node_name == node))
        .map(|d| d.id.clone())
        .unwrap_or_default()
}

/// Whether `name` names a drive, a drive's medium or a node (what a device's `drive`
/// property may take).
pub fn drive_known(m: &Machine, name: &str) -> bool {
    m.block
        .drives
        .iter()
        .any(|d| d.id == name || d.medium.as_ref().is_some_and(|x| x.node_name == name))
        || m.block.graph.contains(name)
}

/// The graph node a command's `device` names: a drive's node (by drive name) or a node
/// name, in QEMU's words when neither exists.
pub fn resolve_node(m: &Machine, name: &str) -> Result<String, QmpError> {
    if let Some(d) = m.block.find(name) {
        return match &d.medium {
            None => Err(QmpError::generic(format!("Device '{name}' has no medium"))),
            Some(med) if med.user.is_none() && !m.block.graph.contains(&med.node_name) => {
                Err(QmpError::generic(format!(
                    "Device '{name}' has a simulated medium ('{}' does not exist on the host): \
                     this operation needs a real image",
                    med.file
                )))
            }
            Some(med) => Ok(med.node_name.clone()),
        };
    }
    m.block.graph.require(name).map_err(qerr)?;
    Ok(name.to_string())
}

/// The node the guest's requests through drive `id` reach first: where the drive's block
/// backend is now (a job's filter above its medium's node sees them), else the node `id`
/// names.
fn io_node(m: &Machine, id: &str) -> Result<String, QmpError> {
    let node = resolve_node(m, id)?;
    Ok(m.block
        .graph
        .device_nodes()
        .get(id)
        .map_or(node, |n| n.to_string()))
}

/// The guest writes `data` at `offset` through drive `id` (what an NBD client or a job then
/// sees in the image).
pub fn guest_write(m: &mut Machine, id: &str, offset: u64, data: &[u8]) -> Result<(), QmpError> {
    let node = io_node(m, id)?;
    let backend = m.block.graph.backend(&node).map_err(qerr)?;
    backend.write(offset, data).map_err(qerr)?;
    backend.flush().map_err(qerr)?;
    if let Some(i) = m.block.index(id) {
        let s = &mut m.block.drives[i].stats;
        s.wr_bytes += data.len() as u64;
        s.wr_operations += 1;
        s.flush_operations += 1;
        s.wr_highest_offset = s.wr_highest_offset.max(offset + data.len() as u64);
    }
    Ok(())
}

/// The guest reads `len` bytes at `offset` through drive `id`.
pub fn guest_read(m: &mut Machine, id: &str, offset: u64, len: usize) -> Result<Vec<u8>, QmpError> {
    let node = io_node(m, id)?;
    let backend = m.block.graph.backend(&node).map_err(qerr)?;
    let mut buf = vec![0; len];
    backend.read(offset, &mut buf).map_err(qerr)?;
    if let Some(i) = m.block.index(id) {
        let s = &mut m.block.drives[i].stats;
        s.rd_bytes += len as u64;
        s.rd_operations += 1;
    }
    Ok(buf)
}

/// Record an I/O error status on drive `id` (a stopped VM shows it).
pub fn set_io_status(m: &mut Machine, id: &str, status: &'static str) {
    if let Some(i) = m.block.index(id) {
        m.block.drives[i].io_status = status;
    }
}

/// `cont` resets every drive's I/O status, as QEMU does.
pub fn reset_io_status(m: &mut Machine) {
    for d in &mut m.block.drives {
        d.io_status = "ok";
    }
}

fn probe_format(file: &str) -> String {
    if let Ok(f) = qmpkit_block::image::probe_format(Path::new(file)) {
        return f.name().to_string();
    }
    guess_format(file)
}

fn guess_format(file: &str) -> String {
    let lower = file.to_ascii_lowercase();
    for f in ["qcow2", "qcow", "vmdk", "vdi", "vhdx", "qed"] {
        if lower.ends_with(&format!(".{f}")) {
            return f.to_string();
        }
    }
    "raw".to_string()
}

/// The guest device a drive is attached to, in the QOM tree.
fn frontend(m: &Machine, id: &str) -> Option<crate::qom::NodeId> {
    let tree = &m.qom.tree;
    crate::devices::all_devices(tree)
        .into_iter()
        .find(|&n| tree.val(n, "drive").and_then(|v| v.as_str()) == Some(id))
}

/// The devices in front of drives, by drive name (one walk of the tree for all drives).
fn frontends(m: &Machine) -> HashMap<&str, crate::qom::NodeId> {
    let tree = &m.qom.tree;
    let mut out = HashMap::new();
    for n in crate::devices::all_devices(tree) {
        if let Some(drive) = tree.val(n, "drive").and_then(|v| v.as_str()) {
            out.entry(drive).or_insert(n);
        }
    }
    out
}

/// The `qdev` of a drive as QEMU reports it: for a virtio proxy its back end's QOM path
/// (the back end has no id), else the device's id when it has one, else its QOM path.
fn qdev_of(m: &Machine, id: &str) -> Option<String> {
    qdev_of_device(m, frontend(m, id)?)
}

/// [`qdev_of`] for the device `n` in front of the drive.
fn qdev_of_device(m: &Machine, n: crate::qom::NodeId) -> Option<String> {
    let tree = &m.qom.tree;
    let path = tree.path(n);
    // A virtio proxy's drive is its back end's, which has no id of its own.
    if types::is_a(tree.node(n).ty, "virtio-pci") {
        return Some(format!("{path}/virtio-backend"));
    }
    if let Some(qid) = crate::devices::device_id(tree, n) {
        return Some(qid);
    }
    Some(path)
}

/// The QOM path of the device in front of drive `id` (its virtio back end for virtio
/// devices), as QEMU names it in events.
pub fn qom_path_of(m: &Machine, id: &str) -> Option<String> {
    let n = frontend(m, id)?;
    let tree = &m.qom.tree;
    let path = tree.path(n);
    if types::is_a(tree.node(n).ty, "virtio-pci") {
        return Some(format!("{path}/virtio-backend"));
    }
    Some(path)
}

fn not_found(name: &str) -> QmpError {
    QmpError::new(
        ErrorClass::DeviceNotFound,
        format!("Device '{name}' not found"),
    )
}

/// The drive a command names with `device` (drive name) or `id` (the
/// guest device's qdev id or path).
pub fn lookup(m: &Machine, device: Option<&str>, id: Option<&str>) -> Result<usize, QmpError> {
    match (device, id) {
        (Some(_), Some(_)) => Err(QmpError::generic("Cannot specify both 'device' and 'id'")),
        (None, None) => Err(QmpError::generic(
            "Either 'device' or 'id' must be specified",
        )),
        (Some(dev), None) => m.block.index(dev).ok_or_else(|| not_found(dev)),
        (None, Some(qid)) => {
            let tree = &m.qom.tree;
            m.block
                .drives
                .iter()
                .position(|d| {
                    frontend(m, &d.id).is_some_and(|n| {
                        crate::devices::device_id(tree, n).as_deref() == Some(qid)
                            || tree.path(n) == qid
                    })
                })
                .ok_or_else(|| not_found(qid))
        }
    }
}

/// The name commands' errors use for a drive: the drive name, or the
/// device id the caller gave.
pub fn display_name(device: Option<&str>, id: Option<&str>) -> String {
    device.or(id).unwrap_or("").to_string()
}

fn tray_moved(m: &mut Machine, i: usize, open: bool) {
    m.block.drives[i].tray_open = open;
    let id = m.block.drives[i].id.clone();
    // QEMU 1.1 introduced the event.
    if !m.compat().tray_moved_event {
        return;
    }
    let qdev = qdev_of(m, &id).unwrap_or_default();
    m.emit_event(api::DeviceTrayMoved {
        device: id,
        id: qdev,
        tray_open: open,
    });
}

/// Open a drive's tray. `Ok(false)`: the device has no tray (nothing to
/// open, QEMU's ENOSYS case that callers ignore).
pub fn open_tray(m: &mut Machine, i: usize, name: &str, force: bool) -> Result<bool, QmpError> {
    let d = &m.block.drives[i];
    if !d.removable {
        return Err(QmpError::generic(format!(
            "Device '{name}' is not removable"
        )));
    }
    if !d.has_tray {
        return Ok(false);
    }
    if d.tray_open {
        return Ok(true);
    }
    if d.locked && !force {
        // Before the tray commands (QEMU 2.5) the refusal was terse.
        return Err(QmpError::generic(if m.compat().block_errors_2_5 {
            format!(
                "Device '{name}' is locked and force was not specified, wait for tray to open and try again"
            )
        } else {
            format!("Device '{name}' is locked")
        }));
    }
    m.block.drives[i].locked = false;
    tray_moved(m, i, true);
    Ok(true)
}

pub fn close_tray(m: &mut Machine, i: usize, name: &str) -> Result<(), QmpError> {
    let d = &m.block.drives[i];
    if !d.removable {
        return Err(QmpError::generic(format!(
            "Device '{name}' is not removable"
        )));
    }
    if d.has_tray && d.tray_open {
        tray_moved(m, i, false);
    }
    Ok(())
}

/// A removable drive whose tray (if it has one) is open: what taking out or putting in a
/// medium needs. `name`: how the errors name the drive (`None`: "the device", as QEMU 10.0
/// words them for putting a medium in).
fn tray_is_open(d: &Drive, name: Option<&str>) -> Result<(), QmpError> {
    let (dev, tray) = match name {
        Some(n) => (format!("Device '{n}'"), format!("Tray of device '{n}'")),
        None => ("Device".to_string(), "Tray of the device".to_string()),
    };
    if !d.removable {
        return Err(QmpError::generic(format!("{dev} is not removable")));
    }
    if d.has_tray && !d.tray_open {
        return Err(QmpError::generic(format!("{tray} is not open")));
    }
    Ok(())
}

pub fn remove_medium(m: &mut Machine, i: usize, name: &str) -> Result<(), QmpError> {
    let d = &m.block.drives[i];
    tray_is_open(d, Some(name))?;
    if let Some(med) = &d.medium {
        if med.user.is_some() {
            m.block.graph.check_blocked(&med.node_name).map_err(qerr)?;
        }
    }
    m.block.take_medium(i);
    Ok(())
}

/// `x-blockdev-insert-medium`: the node `node` becomes the medium of the drive whose tray is
/// open and empty.
pub fn insert_medium(m: &mut Machine, i: usize, name: &str, node: &str) -> Result<(), QmpError> {
    let d = &m.block.drives[i];
    let named = (!m.compat().insert_medium_unnamed).then_some(name);
    tray_is_open(d, named)?;
    if d.medium.is_some() {
        return Err(QmpError::generic(match named {
            Some(n) => format!("There already is a medium in device '{n}'"),
            None => "There already is a medium in the device".to_string(),
        }));
    }
    let info = m
        .block
        .graph
        .node_info(node, false)
        .map_err(|_| QmpError::generic(format!("Node '{node}' not found")))?;
    let id = d.id.clone();
    let (perm, shared) = device_perms(info.ro);
    let user = m
        .block
        .graph
        .attach_user(node, UserKind::Device(id), perm, shared)
        .map_err(qerr)?;
    let size = m.block.graph.size(node).unwrap_or(0);
    m.block.drives[i].medium = Some(Medium {
        file: info.file,
        format: info.drv,
        read_only: info.ro,
        size,
        node_name: node.to_string(),
        user: Some(user),
    });
    Ok(())
}

pub fn eject(m: &mut Machine, i: usize, name: &str, force: bool) -> Result<(), QmpError> {
    open_tray(m, i, name, force)?;
    remove_medium(m, i, name)
}

const KNOWN_FORMATS: &[&str] = &[
    "raw",
    "qcow2",
    "qcow",
    "vmdk",
    "vdi",
    "vhdx",
    "vpc",
    "qed",
    "luks",
    "dmg",
    "cloop",
    "parallels",
    "bochs",
    "file",
    "host_device",
    "host_cdrom",
    "nbd",
    "iscsi",
];

/// Replace the medium: open the tray, remove, insert, close the tray.
pub fn change_medium(
    m: &mut Machine,
    i: usize,
    name: &str,
    filename: &str,
    format: Option<&str>,
    read_only: Option<bool>,
) -> Result<(), QmpError> {
    if let Some(f) = format {
        if !KNOWN_FORMATS.contains(&f) {
            return Err(QmpError::generic(if m.compat().block_errors_2_5 {
                format!("Unknown driver '{f}'")
            } else {
                format!("Invalid block format '{f}'")
            }));
        }
    }
    let id = m.block.drives[i].id.clone();
    let was_ro = m
        .config
        .drives
        .iter()
        .find(|d| d.id == id)
        .is_some_and(|d| d.readonly);
    let read_only = read_only.unwrap_or(was_ro);
    if filename.is_empty() {
        return Err(QmpError::generic(
            "The 'file' block driver requires a file name",
        ));
    }
    // The new image opens first: one that does not open is refused before the tray moves,
    // and the drive keeps what it had.
    let probed = format.is_none();
    let format = format
        .map(str::to_string)
        .unwrap_or_else(|| probe_format(filename));
    let medium = m
        .block
        .open_medium(&id, filename, &format, read_only, None, false)?;
    let had_tray =
        match open_tray(m, i, name, true).and_then(|t| remove_medium(m, i, name).map(|()| t)) {
            Ok(t) => t,
            Err(e) => {
                m.block.drop_medium(medium);
                return Err(e);
            }
        };
    if probed {
        warn_probed_raw(m, filename, &medium);
    }
    m.block.drives[i].medium = Some(medium);
    if had_tray {
        close_tray(m, i, name)?;
    }
    Ok(())
}

fn detect_zeroes(d: qmpkit_block::graph::DetectZeroes) -> api::BlockdevDetectZeroesOptions {
    use qmpkit_block::graph::DetectZeroes as D;
    match d {
        D::Off => api::BlockdevDetectZeroesOptions::Off,
        D::On => api::BlockdevDetectZeroesOptions::On,
        D::Unmap => api::BlockdevDetectZeroesOptions::Unmap,
    }
}

pub(crate) fn i(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// An internal snapshot as `SnapshotInfo`.
pub(crate) fn snapshot_info(s: &qmpkit_block::qcow2::Snapshot) -> api::SnapshotInfo {
    api::SnapshotInfo {
        id: s.id.clone(),
        name: s.name.clone(),
        vm_state_size: i(s.vm_state_size),
        date_sec: i64::from(s.date_sec),
        date_nsec: i64::from(s.date_nsec),
        vm_clock_sec: i(s.vm_clock_nsec / 1_000_000_000),
        vm_clock_nsec: i(s.vm_clock_nsec % 1_000_000_000),
    }
}

/// A bitmap a qcow2 image stores, as its header's bitmap directory records it.
fn qcow2_bitmap(b: &qmpkit_block::qcow2::Bitmap) -> api::Qcow2BitmapInfo {
    let mut flags = Vec::new();
    if b.in_use {
        flags.push(api::Qcow2BitmapInfoFlags::InUse);
    }
    if b.auto {
        flags.push(api::Qcow2BitmapInfoFlags::Auto);
    }
    api::Qcow2BitmapInfo {
        name: b.name.clone(),
        granularity: u32::try_from(b.granularity).unwrap_or(u32::MAX),
        flags,
    }
}

/// A qcow2 image's details.
fn qcow2_specific(q: &qmpkit_block::image::Qcow2Info) -> api::ImageInfoSpecific {
    api::ImageInfoSpecific::Qcow2(api::ImageInfoSpecificQCow2 {
        compat: q.compat.clone(),
        lazy_refcounts: q.lazy_refcounts,
        corrupt: q.corrupt,
        refcount_bits: i(q.refcount_bits),
        encrypt: None,
        extended_l2: q.extended_l2,
        bitmaps: (!q.bitmaps.is_empty()).then(|| q.bitmaps.iter().map(qcow2_bitmap).collect()),
        compression_type: qmpkit_qapi::Enum::from_name(&q.compression_type),
    })
}

/// An image's facts as `ImageInfo`.
pub fn image_info(
    info: qmpkit_block::ImageInfo,
    format: &str,
    backing: Option<api::ImageInfo>,
) -> api::ImageInfo {
    let snapshots =
        (!info.snapshots.is_empty()).then(|| info.snapshots.iter().map(snapshot_info).collect());
    let format_specific = if format == "file" {
        // A file on the host: QEMU 8.0 and later report its (empty) details.
        Some(api::ImageInfoSpecific::File(api::ImageInfoSpecificFile {
            extent_size_hint: None,
        }))
    } else {
        info.qcow2.as_ref().map(qcow2_specific)
    };

    api::ImageInfo {
        filename: info.filename,
        format: format.to_string(),
        // The null and quorum drivers tell nothing of the kind (nor a raw node over a null
        // node).
        dirty_flag: (info.has_info && format != "quorum").then_some(info.dirty_flag),
        actual_size: info.actual_size.map(i),
        virtual_size: i(info.virtual_size),
        cluster_size: info.cluster_size.map(i),
        encrypted: info.encrypted.then_some(true),
        compressed: None,
        backing_filename: info.backing_filename,
        full_backing_filename: info.full_backing_filename,
        backing_filename_format: info.backing_filename_format,
        snapshots,
        backing_image: backing.map(Box::new),
        format_specific,
    }
}

/// A node's `BlockDeviceInfo` as the machine reports it: each file name (the node's, its
/// backing file's, its image chain's) the one QEMU shows ([`filename`]).
pub fn node_device_info(m: &Machine, n: qmpkit_block::NodeInfo) -> api::BlockDeviceInfo {
    let g = &m.block.graph;
    let names = &m.block.names;
    let dirty_bitmaps = dirty_list(&n.bitmaps);
    let file = names.filename(g, &n.node_name);
    let backing_file = match n.backing_file {
        Some(_) => g
            .child(&n.node_name, qmpkit_block::graph::ChildRole::Backing)
            .map(|b| names.filename(g, &b)),
        None => None,
    };
    let mut info = device_info(n, &|node| names.filename(g, node));
    info.dirty_bitmaps = dirty_bitmaps;
    info.file = file;
    info.backing_file = backing_file;
    info
}

/// A node's image and those below it; each level's file name as `filename` names its node.
fn image_chain(
    node_name: &str,
    image: qmpkit_block::ImageInfo,
    format: &str,
    below: Option<Box<qmpkit_block::NodeInfo>>,
    filename: &dyn Fn(&str) -> String,
) -> api::ImageInfo {
    let backing = below.map(|b| {
        let b = *b;
        image_chain(
            &b.node_name,
            b.image,
            &b.image_format,
            b.backing_image,
            filename,
        )
    });
    let mut info = image_info(image, format, backing);
    info.filename = filename(node_name);
    info
}

/// A `BlockDeviceInfo` with no limits, backing file or threshold: what the callers start from.
fn plain_info(
    file: String,
    node_name: String,
    ro: bool,
    drv: String,
    image: api::ImageInfo,
) -> api::BlockDeviceInfo {
    api::BlockDeviceInfo {
        file,
        node_name: Some(node_name),
        ro,
        drv,
        backing_file: None,
        backing_file_depth: 0,
        active: true,
        encrypted: false,
        encryption_key_missing: false,
        detect_zeroes: api::BlockdevDetectZeroesOptions::Off,
        bps: 0,
        bps_rd: 0,
        bps_wr: 0,
        iops: 0,
        iops_rd: 0,
        iops_wr: 0,
        image,
        // QEMU reports burst rates, their lengths and the iops size only when set.
        bps_max: None,
        bps_rd_max: None,
        bps_wr_max: None,
        iops_max: None,
        iops_rd_max: None,
        iops_wr_max: None,
        bps_max_length: None,
        bps_rd_max_length: None,
        bps_wr_max_length: None,
        iops_max_length: None,
        iops_rd_max_length: None,
        iops_wr_max_length: None,
        iops_size: None,
        group: None,
        cache: api::BlockdevCacheInfo {
            writeback: true,
            direct: false,
            no_flush: false,
        },
        write_threshold: 0,
        dirty_bitmaps: None,
    }
}

/// A node's `BlockDeviceInfo`, its image chain's file names as `filename` names each node.
fn device_info(
    n: qmpkit_block::NodeInfo,
    filename: &dyn Fn(&str) -> String,
) -> api::BlockDeviceInfo {
    let qmpkit_block::NodeInfo {
        node_name,
        file,
        ro,
        drv,
        backing_file,
        backing_file_depth,
        encrypted,
        detect_zeroes: zeroes,
        bps,
        bps_rd,
        bps_wr,
        iops,
        iops_rd,
        iops_wr,
        write_threshold,
        cache,
        active,
        image_format,
        image,
        backing_image,
        bitmaps: _,
    } = n;
    let image = image_chain(&node_name, image, &image_format, backing_image, filename);
    let mut b = plain_info(file, node_name, ro, drv, image);
    b.backing_file = backing_file;
    b.backing_file_depth = i(backing_file_depth);
    b.active = active;
    b.encrypted = encrypted;
    b.detect_zeroes = detect_zeroes(zeroes);
    b.bps = i(bps);
    b.bps_rd = i(bps_rd);
    b.bps_wr = i(bps_wr);
    b.iops = i(iops);
    b.iops_rd = i(iops_rd);
    b.iops_wr = i(iops_wr);
    b.cache = api::BlockdevCacheInfo {
        writeback: cache.writeback,
        direct: cache.direct,
        no_flush: cache.no_flush,
    };
    b.write_threshold = i(write_threshold);
    b
}

/// A simulated medium's `BlockDeviceInfo` (no file behind it).
fn simulated_info(medium: &Medium) -> api::BlockDeviceInfo {
    let image = api::ImageInfo {
        filename: medium.file.clone(),
        format: medium.format.clone(),
        virtual_size: i(medium.size),
        actual_size: Some(0),
        dirty_flag: Some(false),
        ..Default::default()
    };
    plain_info(
        medium.file.clone(),
        medium.node_name.clone(),
        medium.read_only,
        medium.format.clone(),
        image,
    )
}

/// The `inserted` member of a drive.
fn inserted(m: &Machine, medium: &Medium) -> Option<api::BlockDeviceInfo> {
    if medium.user.is_some() {
        if let Ok(n) = m.block.graph.node_info(&medium.node_name, true) {
            return Some(node_device_info(m, n));
        }
    }
    Some(simulated_info(medium))
}

fn io_status(s: &str) -> api::BlockDeviceIoStatus {
    match s {
        "failed" => api::BlockDeviceIoStatus::Failed,
        "nospace" => api::BlockDeviceIoStatus::Nospace,
        _ => api::BlockDeviceIoStatus::Ok,
    }
}

/// `query-block`.
pub fn query_block(m: &Machine) -> Vec<api::BlockInfo> {
    let fronts = frontends(m);
    // Made at its size at once: each entry is large, and a machine may have hundreds.
    let mut out = Vec::with_capacity(m.block.drives.len() + m.block.plugged.len());
    out.extend(m.block.drives.iter().map(|d| {
        // A medium that went away under the drive (pivoted by a job) is found by its
        // backend.
        let medium = d.medium.as_ref();
        let inserted = medium.and_then(|med| inserted(m, med)).map(|mut ins| {
            report(m, &d.id, &mut ins);
            ins
        });
        // A real medium's node's bitmaps, as its `inserted` has them (a medium whose node
        // is gone has none).
        let dirty_bitmaps = match medium {
            Some(med) if med.user.is_some() => {
                inserted.as_ref().and_then(|i| i.dirty_bitmaps.clone())
            }
            _ => None,
        };
        // A drive no guest device uses has no tray and no I/O status, and counts as
        // removable (QEMU asks the device, and without one the medium can always go).
        let front = fronts.get(d.id.as_str()).copied();
        api::BlockInfo {
            device: d.id.clone(),
            qdev: front.and_then(|n| qdev_of_device(m, n)),
            r#type: "unknown".into(),
            removable: d.removable || front.is_none(),
            locked: d.locked,
            inserted,
            tray_open: (d.has_tray && front.is_some()).then_some(d.tray_open),
            io_status: (!d.floppy && front.is_some()).then(|| io_status(d.io_status)),
            dirty_bitmaps,
        }
    }));
    out.extend(plugged_info(m));
    out
}

/// Fills a drive's `BlockDeviceInfo` with its limits: every average; a burst rate and its
/// length where the rate is set; the iops size where set; the group when throttled.
pub fn report(m: &Machine, drive: &str, info: &mut api::BlockDeviceInfo) {
    let Some((group, l)) = m.block.throttle.of(drive) else {
        return;
    };

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

/// `dirty-bitmaps` of a node (2.12's `status` and 4.0's `recording`, `busy`, `persistent`
/// and `inconsistent` alike); None when it has none.
pub fn dirty_info(m: &Machine, node: &str) -> Option<Vec<api::BlockDirtyInfo>> {
    dirty_list(&m.block.graph.bitmaps(node))
}

/// [`dirty_info`] of a node's bitmaps.
fn dirty_list(list: &[qmpkit_block::bitmap::DirtyBitmap]) -> Option<Vec<api::BlockDirtyInfo>> {
    (!list.is_empty()).then(|| {
        list.iter()
            .map(|b| api::BlockDirtyInfo {
                // A job's bitmaps have no name.
                name: (!b.name.is_empty()).then(|| b.name.clone()),
                count: i(b.count()),
                granularity: u32::try_from(b.granularity).unwrap_or(u32::MAX),
                status: if b.busy {
                    api::DirtyBitmapStatus::Frozen
                } else if b.enabled {
                    api::DirtyBitmapStatus::Active
                } else {
                    api::DirtyBitmapStatus::Disabled
                },
                recording: b.enabled,
                busy: b.busy,
                persistent: b.persistent,
                inconsistent: b.inconsistent.then_some(true),
            })
            .collect()
    })
}

/// `query-blockstats`: one entry per drive, counters of the guest's I/O.
pub fn query_blockstats(m: &Machine) -> Vec<api::BlockStats> {
    m.block
        .drives
        .iter()
        .map(|d| {
            let s = d.stats;
            api::BlockStats {
                device: Some(d.id.clone()),
                node_name: d.medium.as_ref().map(|x| x.node_name.clone()),
                stats: api::BlockDeviceStats {
                    rd_bytes: i(s.rd_bytes),
                    wr_bytes: i(s.wr_bytes),
                    rd_operations: i(s.rd_operations),
                    wr_operations: i(s.wr_operations),
                    flush_operations: i(s.flush_operations),
                    wr_highest_offset: i(s.wr_highest_offset),
                    invalid_rd_operations: 0,
                    invalid_wr_operations: 0,
                    invalid_flush_operations: 0,
                    account_invalid: true,
                    account_failed: true,
                    ..Default::default()
                },
                driver_specific: None,
                parent: None,
                backing: None,
            }
        })
        .collect()
}

/// `query-blockstats` with `query-nodes`: every named node, oldest first, each with the
/// statistics of the child holding its data as `parent`. A node counts no guest requests
/// (those are its block backend's); a host file node adds its discard counters.
pub fn query_node_stats(m: &Machine) -> Vec<api::BlockStats> {
    let g = &m.block.graph;
    let names = g.node_names();
    names.iter().rev().map(|n| node_stats(g, n, 0)).collect()
}

fn node_stats(g: &qmpkit_block::graph::BlockGraph, name: &str, depth: usize) -> api::BlockStats {
    use qmpkit_block::graph::Driver;
    let driver_specific = match g.driver(name) {
        Ok(Driver::File) => Some(api::BlockStatsSpecific::File(api::BlockStatsSpecificFile {
            discard_nb_ok: 0,
            discard_nb_failed: 0,
            discard_bytes_ok: 0,
        })),
        _ => None,
    };
    let parent = g
        .data_child(name)
        .filter(|_| depth < 64)
        .map(|c| Box::new(node_stats(g, &c, depth + 1)));
    api::BlockStats {
        device: None,
        node_name: Some(name.to_string()),
        // A node counts no requests of its own (those are its block backend's), only where
        // the writes through it ended.
        stats: api::BlockDeviceStats {
            wr_highest_offset: i(g.wr_highest_offset(name)),
            ..Default::default()
        },
        driver_specific,
        parent,
        backing: None,
    }
}

// ---------------------------------------------------------------------------
// Jobs: events and the clock.

fn job_type(k: JobKind) -> api::BlockJobType {
    match k {
        JobKind::Commit => api::BlockJobType::Commit,
        JobKind::Stream => api::BlockJobType::Stream,
        JobKind::Mirror => api::BlockJobType::Mirror,
        JobKind::Backup | JobKind::Create => api::BlockJobType::Backup,
    }
}

/// A job's kind as the generic job interface names it.
pub fn job_kind(k: JobKind) -> api::JobType {
    match k {
        JobKind::Commit => api::JobType::Commit,
        JobKind::Stream => api::JobType::Stream,
        JobKind::Mirror => api::JobType::Mirror,
        JobKind::Backup => api::JobType::Backup,
        JobKind::Create => api::JobType::Create,
    }
}

/// A job's status.
pub fn job_status(s: JobStatus) -> api::JobStatus {
    match s {
        JobStatus::Undefined => api::JobStatus::Undefined,
        JobStatus::Created => api::JobStatus::Created,
        JobStatus::Running => api::JobStatus::Running,
        JobStatus::Paused => api::JobStatus::Paused,
        JobStatus::Ready => api::JobStatus::Ready,
        JobStatus::Standby => api::JobStatus::Standby,
        JobStatus::Waiting => api::JobStatus::Waiting,
        JobStatus::Pending => api::JobStatus::Pending,
        JobStatus::Aborting => api::JobStatus::Aborting,
        JobStatus::Concluded => api::JobStatus::Concluded,
        JobStatus::Null => api::JobStatus::Null,
    }
}

/// Turns the job model's notifications into events, in order, and keeps the clock ticking
/// while a job runs. Called after every job command and timer. The graph's drains since the
/// last call pause and resume the jobs first.
pub fn pump(m: &mut Machine) {
    report_quorum_io(m);
    m.block.jobs.rank(&m.block.graph);
    let drains = m.block.graph.take_drains();
    m.block.jobs.drain(drains);
    for jobs in m.block.graph.take_node_drains() {
        m.block.jobs.drain_jobs(&jobs);
    }
    for ev in m.block.jobs.take_events() {
        match ev {
            JobEvent::StatusChange { id, status } => m.emit_event(api::JobStatusChange {
                id,
                status: job_status(status),
            }),
            JobEvent::Ready(e) => m.emit_event(api::BlockJobReady {
                r#type: job_type(e.kind),
                device: e.device,
                len: i(e.len),
                offset: i(e.offset),
                speed: i(e.speed),
            }),
            JobEvent::Completed(e) => m.emit_event(api::BlockJobCompleted {
                r#type: job_type(e.kind),
                device: e.device,
                len: i(e.len),
                offset: i(e.offset),
                speed: i(e.speed),
                error: e.error,
            }),
            JobEvent::Cancelled(e) => m.emit_event(api::BlockJobCancelled {
                r#type: job_type(e.kind),
                device: e.device,
                len: i(e.len),
                offset: i(e.offset),
                speed: i(e.speed),
            }),
            JobEvent::Pending { kind, id } => m.emit_event(api::BlockJobPending {
                r#type: job_kind(kind),
                id,
            }),
        }
    }
    sync_media(m);
    // The jobs move on whenever a command looks at them (`catch_up`); a timer is needed only
    // where a running job's run phase ends (its events, its next state).
    if let Some(at) = m.block.jobs.next_deadline() {
        if m.block.tick_at.is_none_or(|t| at < t) {
            m.block.tick_at = Some(at);
            let after = at.saturating_sub(m.now_ns);
            m.schedule(after, TimerAction::Block(Timer::Jobs));
        }
    }
}

/// Drives whose backend a job moved (a mirror's pivot, an active commit, a snapshot) follow
/// it: the medium names the node the backend now uses. Done again only once the graph has
/// changed (its [`Generation`](qmpkit_block::graph::Generation)): a medium changes with the
/// graph (its backend attached, moved or detached), never alone.
pub fn sync_media(m: &mut Machine) {
    let BlockState {
        graph,
        drives,
        media_synced,
        ..
    } = &mut m.block;
    let now = graph.generation();
    if *media_synced == Some(now) {
        // Builds with debug assertions (the tests) check that nothing moved unseen.
        debug_assert!(
            moved_media(graph, drives).is_empty(),
            "a drive's medium left its node without the graph changing"
        );
        return;
    }
    *media_synced = Some(now);
    for (i, now) in moved_media(graph, drives) {
        let Some(med) = drives[i].medium.as_mut() else {
            continue;
        };
        med.file = graph.filename(&now).unwrap_or_default();
        med.format = graph
            .driver(&now)
            .map(|d| d.name().to_string())
            .unwrap_or_default();
        med.node_name = now;
    }
    sync_exports(m);
}

/// Exports whose block backend moved in the graph (onto a job's filter, back, onto a
/// mirror's target) send their requests to where it is now.
fn sync_exports(m: &mut Machine) {
    let BlockState { graph, exports, .. } = &mut m.block;
    for e in exports.iter_mut() {
        let Some(now) = graph.node_with_user(&UserKind::Export(e.name.clone())) else {
            continue;
        };
        if now != e.bound {
            if let Ok(b) = graph.backend(&now) {
                e.backend.set(b);
                e.bound = now;
            }
        }
    }
}

/// The drives (by index) whose backend is on another node than their medium names, and that
/// node.
fn moved_media(graph: &BlockGraph, drives: &[Drive]) -> Vec<(usize, String)> {
    let on = graph.device_nodes();
    let mut out = Vec::new();
    for (i, d) in drives.iter().enumerate() {
        let Some(med) = d.medium.as_ref().filter(|med| med.user.is_some()) else {
            continue;
        };
        // A job's implicit filter above the drive's node does not show.
        let Some(now) = on.get(d.id.as_str()).map(|n| graph.below_implicit(n)) else {
            continue;
        };
        if now != med.node_name {
            out.push((i, now.to_string()));
        }
    }
    out
}

/// The node a user of the graph is on now.
fn node_of_user(graph: &BlockGraph, kind: &UserKind) -> Option<String> {
    graph.node_with_user(kind)
}

/// Guest devices whose `drive` names a graph node get a backend on it (and lose it when
/// they go), as QEMU's devices attach to the node they are given.
pub fn sync_devices(m: &mut Machine) {
    let tree = &m.qom.tree;
    let mut present = Vec::new();
    for n in crate::devices::all_devices(tree) {
        let Some(drive) = tree.val(n, "drive").and_then(|v| v.as_str()) else {
            continue;
        };
        if m.block.drives.iter().any(|d| d.id == drive) || !m.block.graph.contains(drive) {
            continue;
        }
        let qdev = crate::devices::device_id(tree, n).unwrap_or_else(|| tree.path(n));
        present.push((qdev, drive.to_string()));
    }
    let BlockState { graph, plugged, .. } = &mut m.block;
    plugged.retain(|(q, u)| {
        let keep = present.iter().any(|(p, _)| p == q);
        if !keep {
            graph.detach_user(*u);
        }
        keep
    });
    for (qdev, node) in present {
        if plugged.iter().any(|(q, _)| *q == qdev) {
            continue;
        }
        let ro = graph.is_read_only(&node).unwrap_or(true);
        let (perm, shared) = device_perms(ro);
        if let Ok(u) = graph.attach_user(&node, UserKind::Device(qdev.clone()), perm, shared) {
            plugged.push((qdev, u));
        }
    }
}

/// `query-block`'s entries of devices plugged onto nodes (no drive name).
fn plugged_info(m: &Machine) -> Vec<api::BlockInfo> {
    m.block
        .plugged
        .iter()
        .map(|(qdev, _)| {
            let node = node_of_user(&m.block.graph, &UserKind::Device(qdev.clone()));
            let dirty_bitmaps = node.as_deref().and_then(|n| dirty_info(m, n));
            let inserted = node
                .and_then(|n| m.block.graph.node_info(&n, true).ok())
                .map(|n| node_device_info(m, n));
            api::BlockInfo {
                device: String::new(),
                qdev: Some(qdev.clone()),
                r#type: "unknown".into(),
                removable: false,
                locked: false,
                inserted,
                tray_open: None,
                io_status: Some(api::BlockDeviceIoStatus::Ok),
                dirty_bitmaps,
            }
        })
        .collect()
}

/// A due block-layer timer.
pub fn on_timer(m: &mut Machine, t: Timer) {
    match t {
        Timer::Jobs => {
            if m.block.tick_at.is_some_and(|t| t <= m.now_ns) {
                m.block.tick_at = None;
            }
            let now = m.now_ns;
            let BlockState { graph, jobs, .. } = &mut m.block;
            jobs.advance(graph, now);
            pump(m);
        }
        Timer::ExportDeleted(id) => m.emit_event(api::BlockExportDeleted { id }),
        Timer::QuorumEvent(key) => quorum_event_due(m, key),
    }
}

/// The events of what quorums' I/O (exports' clients, jobs) reported since the last time:
/// the machine looks before each command, so they come before its reply.
pub fn report_quorum_io(m: &mut Machine) {
    for ev in m.block.graph.take_quorum_events() {
        use qmpkit_block::graph::QuorumEvent;
        let key = match &ev {
            QuorumEvent::ReportBad { node, .. } => format!("QUORUM_REPORT_BAD {node}"),
            QuorumEvent::Failure { .. } => "QUORUM_FAILURE".to_string(),
        };
        match m.block.quorum_events.waiting.get_mut(&key) {
            Some(waiting) => *waiting = Some(ev),
            None => {
                quorum_event(m, ev);
                m.block.quorum_events.waiting.insert(key.clone(), None);
                m.schedule(
                    QUORUM_EVENT_RATE_NS,
                    TimerAction::Block(Timer::QuorumEvent(key)),
                );
            }
        }
    }
}

/// The second of a quorum event's key ended: the event that waited goes now.
fn quorum_event_due(m: &mut Machine, key: String) {
    match m
        .block
        .quorum_events
        .waiting
        .get_mut(&key)
        .map(Option::take)
    {
        Some(Some(ev)) => {
            quorum_event(m, ev);
            m.schedule(
                QUORUM_EVENT_RATE_NS,
                TimerAction::Block(Timer::QuorumEvent(key)),
            );
        }
        _ => {
            m.block.quorum_events.waiting.remove(&key);
        }
    }
}

/// `QUORUM_REPORT_BAD` / `QUORUM_FAILURE` for what a quorum's I/O reported.
fn quorum_event(m: &mut Machine, ev: qmpkit_block::graph::QuorumEvent) {
    use qmpkit_block::graph::{QuorumEvent, QuorumOp};
    match ev {
        QuorumEvent::ReportBad {
            op,
            error,
            node,
            sector_num,
            sectors_count,
        } => m.emit_event(api::QuorumReportBad {
            r#type: match op {
                QuorumOp::Read => api::QuorumOpType::Read,
                QuorumOp::Write => api::QuorumOpType::Write,
                QuorumOp::Flush => api::QuorumOpType::Flush,
            },
            error,
            node_name: node,
            sector_num: i(sector_num),
            sectors_count: i(sectors_count),
        }),
        QuorumEvent::Failure {
            reference,
            sector_num,
            sectors_count,
        } => m.emit_event(api::QuorumFailure {
            reference,
            sector_num: i(sector_num),
            sectors_count: i(sectors_count),
        }),
    }
}

/// Brings the jobs to the machine's current time before a command looks at them.
pub fn catch_up(m: &mut Machine) {
    sync_devices(m);
    let now = m.now_ns;
    let BlockState { graph, jobs, .. } = &mut m.block;
    jobs.advance(graph, now);
    pump(m);
}
