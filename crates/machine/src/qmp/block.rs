//! Block layer commands: drives, media and trays, nodes (`blockdev-add` / `-del`, the named
//! nodes), resizing, block jobs and NBD exports (snapshots and `transaction` are in
//! `transaction`).

use std::path::PathBuf;

use qmpkit_block::graph::{
    BlockdevOptions as Opts, BlockdevRef as Ref, DetectZeroes, Driver, ReadPattern,
};
use qmpkit_block::image::{self, CreateOptions, ImageFormat};
use qmpkit_block::job::{BackupBitmap, BitmapMode, JobOptions, SyncMode};
use qmpkit_block::nbd::{NbdListen, NbdServer};
use qmpkit_qapi::Empty;

use super::R;
use crate::api;
use crate::block::{self, qerr};
use crate::{generic, not_implemented, Cx, Machine};

// ---------------------------------------------------------------------------
// Drives, media, trays.

pub fn query_block(m: &mut Machine, _: api::QueryBlock, _: &mut Cx) -> R<Vec<api::BlockInfo>> {
    block::catch_up(m);
    Ok(block::query_block(m))
}

pub fn query_blockstats(
    m: &mut Machine,
    a: api::QueryBlockstats,
    _: &mut Cx,
) -> R<Vec<api::BlockStats>> {
    if a.query_nodes == Some(true) {
        block::catch_up(m);
        return Ok(block::query_node_stats(m));
    }
    Ok(block::query_blockstats(m))
}

pub fn eject(m: &mut Machine, a: api::Eject, _: &mut Cx) -> R<Empty> {
    let (dev, id) = (a.device.as_deref(), a.id.as_deref());
    let i = block::lookup(m, dev, id)?;
    let name = block::display_name(dev, id);
    block::eject(m, i, &name, a.force.unwrap_or(false))?;
    Ok(Empty)
}

pub fn blockdev_open_tray(m: &mut Machine, a: api::BlockdevOpenTray, _: &mut Cx) -> R<Empty> {
    let (dev, id) = (a.device.as_deref(), a.id.as_deref());
    let i = block::lookup(m, dev, id)?;
    let name = block::display_name(dev, id);
    block::open_tray(m, i, &name, a.force.unwrap_or(false))?;
    Ok(Empty)
}

pub fn blockdev_close_tray(m: &mut Machine, a: api::BlockdevCloseTray, _: &mut Cx) -> R<Empty> {
    let (i, name) = drive(m, a.device.as_deref(), a.id.as_deref())?;
    block::close_tray(m, i, &name)?;
    Ok(Empty)
}

pub fn x_blockdev_remove_medium(
    m: &mut Machine,
    a: api::XBlockdevRemoveMedium,
    _: &mut Cx,
) -> R<Empty> {
    let (i, name) = drive(m, a.device.as_deref(), a.id.as_deref())?;
    block::remove_medium(m, i, &name)?;
    Ok(Empty)
}

pub fn x_blockdev_insert_medium(
    m: &mut Machine,
    a: api::XBlockdevInsertMedium,
    _: &mut Cx,
) -> R<Empty> {
    let (i, name) = drive(m, a.device.as_deref(), a.id.as_deref())?;
    block::insert_medium(m, i, &name, &a.node_name)?;
    Ok(Empty)
}

pub fn blockdev_change_medium(
    m: &mut Machine,
    a: api::BlockdevChangeMedium,
    _: &mut Cx,
) -> R<Empty> {
    let (dev, id) = (a.device.as_deref(), a.id.as_deref());
    let i = block::lookup(m, dev, id)?;
    let name = block::display_name(dev, id);
    let ro = match a.read_only_mode {
        Some(api::BlockdevChangeReadOnlyMode::ReadOnly) => Some(true),
        Some(api::BlockdevChangeReadOnlyMode::ReadWrite) => Some(false),
        _ => None,
    };
    block::change_medium(m, i, &name, &a.filename, a.format.as_deref(), ro)?;
    Ok(Empty)
}

// ---------------------------------------------------------------------------
// Nodes.

fn zeroes(d: &Option<api::BlockdevDetectZeroesOptions>) -> DetectZeroes {
    match d {
        Some(api::BlockdevDetectZeroesOptions::On) => DetectZeroes::On,
        Some(api::BlockdevDetectZeroesOptions::Unmap) => DetectZeroes::Unmap,
        _ => DetectZeroes::Off,
    }
}

fn map_ref(r: &api::BlockdevRef) -> R<Ref> {
    Ok(match r {
        api::BlockdevRef::Reference(n) => Ref::Node(n.clone()),
        api::BlockdevRef::Definition(o) => Ref::Inline(Box::new(map_options(o)?)),
    })
}

/// The generated `BlockdevOptions` as the block layer's options, for the drivers it has.
pub fn map_options(o: &api::BlockdevOptions) -> R<Opts> {
    use api::BlockdevOptionsBranch as B;
    let mut out = match &o.driver {
        B::File(f) => {
            let mut x = Opts::file(&f.filename);
            x.locking = match f.locking {
                Some(api::OnOffAuto::On) => qmpkit_block::lock::Locking::On,
                Some(api::OnOffAuto::Off) => qmpkit_block::lock::Locking::Off,
                _ => qmpkit_block::lock::Locking::Auto,
            };
            x
        }
        B::Raw(r) => Opts::format(Driver::Raw, map_ref(&r.file)?),
        B::Qcow2(q) => {
            let mut x = Opts::format(Driver::Qcow2, map_ref(&q.file)?);
            x.backing = match q.backing.as_deref() {
                None => None,
                Some(api::BlockdevRefOrNull::Null(_)) => Some(None),
                // QEMU's deprecated spelling of null.
                Some(api::BlockdevRefOrNull::Reference(n)) if n.is_empty() => Some(None),
                Some(api::BlockdevRefOrNull::Reference(n)) => Some(Some(Ref::Node(n.clone()))),
                Some(api::BlockdevRefOrNull::Definition(d)) => {
                    Some(Some(Ref::Inline(Box::new(map_options(d)?))))
                }
            };
            x
        }
        B::Throttle(t) => {
            let mut x = Opts::format(Driver::Throttle, map_ref(&t.file)?);
            x.throttle_group = Some(t.throttle_group.clone());
            x
        }
        B::Quorum(q) => {
            let children = q.children.iter().map(map_ref).collect::<R<Vec<_>>>()?;
            let mut qo = qmpkit_block::graph::QuorumOptions::new(children, q.vote_threshold);
            qo.blkverify = q.blkverify;
            qo.rewrite_corrupted = q.rewrite_corrupted;
            qo.read_pattern = match &q.read_pattern {
                None => None,
                Some(api::QuorumReadPattern::Fifo) => Some(ReadPattern::Fifo),
                Some(_) => Some(ReadPattern::Quorum),
            };
            let mut x = Opts::new(Driver::Quorum);
            x.quorum = Some(qo);
            x
        }
        B::NullCo(n) | B::NullAio(n) => {
            let mut x = Opts::null(n.size.map(|s| s.max(0) as u64));
            x.read_zeroes = n.read_zeroes;
            if matches!(o.driver, B::NullAio(_)) {
                x.driver = Driver::NullAio;
            }
            x
        }
        other => {
            return Err(not_implemented(&format!(
                "blockdev-add with driver '{}'",
                other.tag()
            )))
        }
    };
    out.node_name = o.node_name.clone();
    out.read_only = o.read_only.unwrap_or(false);
    out.detect_zeroes = zeroes(&o.detect_zeroes);
    if let Some(c) = &o.cache {
        out.cache_direct = c.direct.unwrap_or(false);
        out.cache_no_flush = c.no_flush.unwrap_or(false);
        out.cache_given = true;
    }
    Ok(out)
}

pub fn blockdev_add(m: &mut Machine, a: api::BlockdevAdd, _: &mut Cx) -> R<Empty> {
    let r = add_node(m, &a);
    block::pump(m);
    r
}

fn add_node(m: &mut Machine, a: &api::BlockdevAdd) -> R<Empty> {
    let mut opts = map_options(&a.0)?;
    super::block_node::check_throttle_groups(m, &opts)?;
    let first = match m.block.graph.add(&opts) {
        Ok(_) => return Ok(Empty),
        Err(e) => qerr(e),
    };
    // `auto-read-only`: a file that cannot be opened for writing is opened read-only.
    if a.0.auto_read_only == Some(true) && !opts.read_only && opts.driver == Driver::File {
        // QEMU falls back within one open: only the outcome's drains count.
        let drains = m.block.graph.take_drains();
        opts.read_only = true;
        if m.block.graph.add(&opts).is_ok() {
            return Ok(Empty);
        }
        m.block.graph.take_drains();
        m.block.graph.note_drains(drains);
    }
    Err(first)
}

pub fn blockdev_del(m: &mut Machine, a: api::BlockdevDel, _: &mut Cx) -> R<Empty> {
    block::catch_up(m);
    m.block.graph.delete(&a.node_name).map_err(qerr)?;
    block::pump(m);
    Ok(Empty)
}

pub fn query_named_block_nodes(
    m: &mut Machine,
    a: api::QueryNamedBlockNodes,
    _: &mut Cx,
) -> R<Vec<api::BlockDeviceInfo>> {
    block::catch_up(m);
    let flat = a.flat.unwrap_or(false);
    let nodes = m.block.graph.named_nodes(flat).map_err(qerr)?;
    Ok(nodes
        .into_iter()
        .map(|n| block::node_device_info(m, n))
        .collect())
}

/// The node a command names with `device` or `node-name` (one of them).
pub(super) fn device_or_node(m: &Machine, device: Option<&str>, node: Option<&str>) -> R<String> {
    match (device, node) {
        (Some(d), None) => block::resolve_node(m, d),
        (_, Some(n)) => {
            m.block.graph.require_node(n).map_err(qerr)?;
            Ok(n.to_string())
        }
        (None, None) => Err(generic("Cannot find device='' nor node-name=''")),
    }
}

pub fn block_resize(m: &mut Machine, a: api::BlockResize, _: &mut Cx) -> R<Empty> {
    let node = device_or_node(m, a.device.as_deref(), a.node_name.as_deref())?;
    if a.size < 0 {
        return Err(generic("Parameter 'size' expects a >0 size"));
    }
    let r = m.block.graph.resize(&node, a.size as u64).map_err(qerr);
    block::pump(m);
    r.map(|()| Empty)
}

pub fn block_set_write_threshold(
    m: &mut Machine,
    a: api::BlockSetWriteThreshold,
    _: &mut Cx,
) -> R<Empty> {
    m.block
        .graph
        .require(&a.node_name)
        .map_err(|_| generic(format!("Device '{}' not found", a.node_name)))?;
    m.block
        .graph
        .set_write_threshold(&a.node_name, a.write_threshold)
        .map_err(qerr)?;
    Ok(Empty)
}

// ---------------------------------------------------------------------------
// Jobs.

/// A speed limit; a negative one refused in the served version's words.
fn speed(m: &Machine, s: Option<i64>) -> R<u64> {
    match s {
        Some(s) if s < 0 => Err(generic(negative_speed(m))),
        Some(s) => Ok(s as u64),
        None => Ok(0),
    }
}

/// Whether the served version creates a job with a negative speed and drops it once the
/// job's links are in place (10.0), rather than refusing the command at once (2.12).
fn creates_then_drops(m: &Machine) -> bool {
    m.qemu_version() >= (10, 0, 0)
}

fn negative_speed(m: &Machine) -> &'static str {
    if creates_then_drops(m) {
        qmpkit_block::job::NEGATIVE_SPEED
    } else {
        "Invalid parameter 'speed'"
    }
}

/// What every block job takes: its id, speed limit, and when it finalizes and is dismissed.
struct JobArgs<'a> {
    id: Option<&'a str>,
    speed: Option<i64>,
    auto_finalize: Option<bool>,
    auto_dismiss: Option<bool>,
    filter_node_name: Option<&'a str>,
}

/// The [`JobArgs`] of a job command's arguments `a` (each command's own type, the same
/// member names), with the filter node's name.
macro_rules! job_args {
    ($a:expr, $filter:expr) => {
        JobArgs {
            id: $a.job_id.as_deref(),
            speed: $a.speed,
            auto_finalize: $a.auto_finalize,
            auto_dismiss: $a.auto_dismiss,
            filter_node_name: $filter,
        }
    };
}

/// A job's options; its id is by default the name of the drive whose node `node` is
/// (empty, and so refused, for a node no drive has).
fn job_options(m: &Machine, node: &str, a: JobArgs) -> R<JobOptions> {
    let id = match a.id {
        Some(id) => id.to_string(),
        None => block::drive_name_of(m, node),
    };
    let mut o = JobOptions::new(&id);
    if creates_then_drops(m) && a.speed.is_some_and(|s| s < 0) {
        o.negative_speed = true;
    } else {
        o.speed = speed(m, a.speed)?;
    }
    o.auto_finalize = a.auto_finalize.unwrap_or(true);
    o.auto_dismiss = a.auto_dismiss.unwrap_or(true);
    o.filter_node_name = a.filter_node_name.map(str::to_string);
    Ok(o)
}

/// A mirror's sync mode: it copies by no bitmap.
fn sync_mode(s: &api::MirrorSyncMode) -> R<SyncMode> {
    match s {
        api::MirrorSyncMode::Full => Ok(SyncMode::Full),
        api::MirrorSyncMode::Top => Ok(SyncMode::Top),
        api::MirrorSyncMode::None => Ok(SyncMode::None),
        api::MirrorSyncMode::Incremental => Err(generic("Sync mode 'incremental' not supported")),
        api::MirrorSyncMode::Bitmap => Err(generic("Sync mode 'bitmap' not supported")),
        api::MirrorSyncMode::Unknown(x) => Err(generic(format!(
            "Parameter 'sync' does not accept value '{x}'"
        ))),
    }
}

/// A backup's sync mode and what it asks of a bitmap.
fn backup_sync(
    s: &api::MirrorSyncMode,
    bitmap: Option<&str>,
    mode: Option<&api::BitmapSyncMode>,
) -> R<(SyncMode, BackupBitmap)> {
    let (sync, word) = match s {
        api::MirrorSyncMode::Incremental => (SyncMode::Bitmap, Some("incremental")),
        api::MirrorSyncMode::Bitmap => (SyncMode::Bitmap, Some("bitmap")),
        other => (sync_mode(other)?, None),
    };
    let mode = match mode {
        None => None,
        Some(api::BitmapSyncMode::OnSuccess) => Some(BitmapMode::OnSuccess),
        Some(api::BitmapSyncMode::Never) => Some(BitmapMode::Never),
        Some(api::BitmapSyncMode::Always) => Some(BitmapMode::Always),
        Some(api::BitmapSyncMode::Unknown(x)) => {
            return Err(generic(format!(
                "Parameter 'bitmap-mode' does not accept value '{x}'"
            )))
        }
    };
    let b = BackupBitmap {
        bitmap_sync: word,
        bitmap: bitmap.map(str::to_string),
        mode,
    };
    Ok((sync, b))
}

/// The node of a backing-chain member named by its file name (the 2.12 `base` / `top`).
fn chain_node_by_file(m: &Machine, top: &str, file: &str) -> Option<String> {
    m.block
        .graph
        .backing_chain(top)
        .into_iter()
        .find(|n| m.block.graph.filename(n).ok().as_deref() == Some(file))
}

pub fn block_stream(m: &mut Machine, a: api::BlockStream, _: &mut Cx) -> R<Empty> {
    block::catch_up(m);
    let node = block::resolve_node(m, &a.device)?;
    let base = match (&a.base, &a.base_node) {
        (Some(_), Some(_)) => {
            return Err(generic(
                "'base' and 'base-node' cannot be specified at the same time",
            ))
        }
        (Some(f), None) => Some(
            chain_node_by_file(m, &node, f)
                .ok_or_else(|| generic(format!("Can't find '{f}' in the backing chain")))?,
        ),
        (None, Some(b)) => {
            m.block.graph.require(b).map_err(qerr)?;
            Some(b.clone())
        }
        (None, None) => None,
    };
    let opts = job_options(m, &node, job_args!(a, a.filter_node_name.as_deref()))?;
    let block::BlockState { graph, jobs, .. } = &mut m.block;
    let r = jobs.start_stream(graph, &opts, &node, base.as_deref());
    // A job that failed after it was created still announces itself.
    block::pump(m);
    r.map_err(qerr)?;
    Ok(Empty)
}

pub fn block_commit(m: &mut Machine, a: api::BlockCommit, _: &mut Cx) -> R<Empty> {
    block::catch_up(m);
    let node = block::resolve_node(m, &a.device)?;
    if m.block.graph.has_parent_node(&node) {
        return Err(generic("Need a root block node"));
    }
    // The top, then the base below it: each by node name or by file name, never both.
    let top = match (&a.top_node, &a.top) {
        (None, Some(f)) => Some(
            chain_node_by_file(m, &node, f)
                .ok_or_else(|| generic(format!("Top image file {f} not found")))?,
        ),
        _ => commit_layer(m, &node, &a.top_node, &a.top, "top")?,
    };
    let top_or_device = top.clone().unwrap_or_else(|| node.clone());
    // A base named by its file is looked for below the top; by node, from the top down.
    let below_top = m
        .block
        .graph
        .backing_chain(&top_or_device)
        .get(1)
        .cloned()
        .unwrap_or_default();
    let base = match (&a.base_node, &a.base) {
        (None, Some(f)) => Some(
            chain_node_by_file(m, &below_top, f)
                .ok_or_else(|| generic(format!("Can't find '{f}' in the backing chain")))?,
        ),
        _ => commit_layer(m, &top_or_device, &a.base_node, &a.base, "base")?,
    };
    let bottom = base
        .clone()
        .or_else(|| m.block.graph.backing_chain(&top_or_device).pop());
    if bottom.as_deref() == Some(top_or_device.as_str()) {
        return Err(generic("cannot commit an image into itself"));
    }
    let opts = job_options(m, &node, job_args!(a, a.filter_node_name.as_deref()))?;
    let block::BlockState { graph, jobs, .. } = &mut m.block;
    let r = jobs.start_commit(graph, &opts, &node, top.as_deref(), base.as_deref());
    block::pump(m);
    r.map_err(qerr)?;
    Ok(Empty)
}

/// A layer of `block-commit` named by `WHAT-node` (`by_node`, looked for in the backing chain
/// from `from`) and not also by file (`by_file`), in QEMU's words.
fn commit_layer(
    m: &Machine,
    from: &str,
    by_node: &Option<String>,
    by_file: &Option<String>,
    what: &str,
) -> R<Option<String>> {
    let Some(n) = by_node else {
        return Ok(None);
    };
    if by_file.is_some() {
        return Err(generic(format!(
            "'{what}-node' and '{what}' are mutually exclusive"
        )));
    }
    if !m.block.graph.contains(n) {
        return Err(generic(format!(
            "Cannot find device='' nor node-name='{n}'"
        )));
    }
    if !m.block.graph.backing_chain(from).contains(n) {
        return Err(generic(format!("'{n}' is not in this backing file chain")));
    }
    Ok(Some(n.clone()))
}

/// A target file made for drive-mirror / drive-backup (`mode` absolute-paths): the source's
/// format and size, opened as a node. Returns the node. A file it created stays on the host
/// whatever happens next, as QEMU leaves it.
fn open_target(
    m: &mut Machine,
    source: &str,
    target: &str,
    format: Option<&str>,
    node_name: Option<&str>,
    mode: Option<&api::NewImageMode>,
    sync: SyncMode,
) -> R<String> {
    let g = &m.block.graph;
    let src_format = match g.driver(source).map_err(qerr)? {
        Driver::Qcow2 => "qcow2",
        _ => "raw",
    };
    let format = format.unwrap_or(src_format);
    let fmt = ImageFormat::from_name(format)
        .ok_or_else(|| not_implemented(&format!("a target in format '{format}'")))?;
    let path = PathBuf::from(target);
    if !matches!(mode, Some(api::NewImageMode::Existing)) {
        let size = g.size(source).map_err(qerr)?;
        let mut co = CreateOptions::new(fmt, size);
        if sync == SyncMode::Top && fmt == ImageFormat::Qcow2 {
            if let Some(b) = g.child(source, qmpkit_block::graph::ChildRole::Backing) {
                co.backing_file = g.filename(&b).ok();
                co.backing_format = g
                    .driver(&b)
                    .ok()
                    .and_then(|d| ImageFormat::from_name(d.name()));
            }
        }
        image::create(&path, &co).map_err(qerr)?;
    }
    let driver = if fmt == ImageFormat::Qcow2 {
        Driver::Qcow2
    } else {
        Driver::Raw
    };
    let mut opts = Opts::format(driver, Ref::Inline(Box::new(Opts::file(&path))));
    if sync != SyncMode::Top && driver == Driver::Qcow2 {
        opts.backing = Some(None);
    }
    let added = match node_name {
        Some(n) => {
            let mut o = opts.clone();
            o.node_name = Some(n.to_string());
            m.block.graph.add(&o)
        }
        None => m.block.graph.add_implicit(&opts),
    };
    added.map_err(qerr)
}

pub fn drive_mirror(m: &mut Machine, a: api::DriveMirrorCommand, _: &mut Cx) -> R<Empty> {
    block::catch_up(m);
    let a = a.0;
    let source = block::resolve_node(m, &a.device)?;
    let sync = sync_mode(&a.sync)?;
    let mut opts = job_options(m, &source, job_args!(a, None))?;
    opts.granularity = a.granularity.map_or(0, u64::from);
    let target = open_target(
        m,
        &source,
        &a.target,
        a.format.as_deref(),
        a.node_name.as_deref(),
        a.mode.as_ref(),
        sync,
    )?;
    // The target's opening drains the graph before the job exists.
    block::pump(m);
    let block::BlockState { graph, jobs, .. } = &mut m.block;
    if let Err(e) = jobs.start_mirror(graph, &opts, &source, &target, sync) {
        let e = drop_target(graph, &target, e);
        block::pump(m);
        return Err(e);
    }
    block::pump(m);
    Ok(Empty)
}

pub fn blockdev_mirror(m: &mut Machine, a: api::BlockdevMirror, _: &mut Cx) -> R<Empty> {
    block::catch_up(m);
    let source = block::resolve_node(m, &a.device)?;
    let sync = sync_mode(&a.sync)?;
    let mut opts = job_options(m, &source, job_args!(a, a.filter_node_name.as_deref()))?;
    opts.granularity = a.granularity.map_or(0, u64::from);
    let block::BlockState { graph, jobs, .. } = &mut m.block;
    let r = jobs.start_mirror(graph, &opts, &source, &a.target, sync);
    block::pump(m);
    r.map_err(qerr)?;
    Ok(Empty)
}

/// A job that could not start leaves its target node out of the graph (the image file it
/// created stays, as QEMU leaves it).
fn drop_target(
    graph: &mut qmpkit_block::graph::BlockGraph,
    target: &str,
    e: qmpkit_block::Error,
) -> qmpkit_wire::QmpError {
    graph.discard_unused(target);
    qerr(e)
}

/// What a backup started, so a failed transaction can undo it.
pub(super) struct BackupUndo {
    job: String,
    target: Option<String>,
}

pub(super) fn drive_backup_start(m: &mut Machine, a: &api::DriveBackup) -> R<BackupUndo> {
    let source = block::resolve_node(m, &a.device)?;
    let (sync, bitmap) = backup_sync(&a.sync, a.bitmap.as_deref(), a.bitmap_mode.as_ref())?;
    let opts = job_options(m, &source, job_args!(a, a.filter_node_name.as_deref()))?;
    let target = open_target(
        m,
        &source,
        &a.target,
        a.format.as_deref(),
        None,
        a.mode.as_ref(),
        sync,
    )?;
    // The target's opening drains the graph before the job exists.
    block::pump(m);
    let block::BlockState { graph, jobs, .. } = &mut m.block;
    if let Err(e) = jobs.start_backup(graph, &opts, &source, &target, sync, &bitmap) {
        return Err(drop_target(graph, &target, e));
    }
    Ok(BackupUndo {
        job: opts.id,
        target: Some(target),
    })
}

pub(super) fn blockdev_backup_start(m: &mut Machine, a: &api::BlockdevBackup) -> R<BackupUndo> {
    let source = block::resolve_node(m, &a.device)?;
    let (sync, bitmap) = backup_sync(&a.sync, a.bitmap.as_deref(), a.bitmap_mode.as_ref())?;
    let opts = job_options(m, &source, job_args!(a, a.filter_node_name.as_deref()))?;
    let block::BlockState { graph, jobs, .. } = &mut m.block;
    jobs.start_backup(graph, &opts, &source, &a.target, sync, &bitmap)
        .map_err(qerr)?;
    Ok(BackupUndo {
        job: opts.id,
        target: None,
    })
}

pub(super) fn undo_backup(m: &mut Machine, u: BackupUndo) {
    let block::BlockState { graph, jobs, .. } = &mut m.block;
    let _ = jobs.cancel(graph, &u.job, true);
    let _ = jobs.dismiss(&u.job);
    if let Some(t) = &u.target {
        graph.discard_unused(t);
    }
}

pub fn drive_backup(m: &mut Machine, a: api::DriveBackupCommand, _: &mut Cx) -> R<Empty> {
    block::catch_up(m);
    super::transaction::transaction_drain(m);
    let r = drive_backup_start(m, &a.0);
    block::pump(m);
    r.map(|_| Empty)
}

pub fn blockdev_backup(m: &mut Machine, a: api::BlockdevBackupCommand, _: &mut Cx) -> R<Empty> {
    block::catch_up(m);
    super::transaction::transaction_drain(m);
    let r = blockdev_backup_start(m, &a.0);
    block::pump(m);
    r?;
    Ok(Empty)
}

/// The `block-job-*` commands find their job by id, in their own words.
fn block_job(m: &mut Machine, id: &str) -> R<()> {
    block::catch_up(m);
    m.block.jobs.require_block_job(id).map_err(qerr)
}

pub fn query_block_jobs(
    m: &mut Machine,
    _: api::QueryBlockJobs,
    _: &mut Cx,
) -> R<Vec<api::BlockJobInfo>> {
    block::catch_up(m);
    Ok(m.block
        .jobs
        .query_block_jobs()
        .into_iter()
        .map(|j| api::BlockJobInfo {
            r#type: j.kind.name().to_string(),
            device: j.device,
            len: j.len as i64,
            offset: j.offset as i64,
            busy: j.busy,
            paused: j.paused,
            speed: j.speed as i64,
            io_status: api::BlockDeviceIoStatus::Ok,
            ready: j.ready,
            status: Some(block::job_status(j.status)),
            auto_finalize: Some(j.auto_finalize),
            auto_dismiss: Some(j.auto_dismiss),
            // Writes reach a mirror's target as they happen only in write-blocking mode,
            // once the job is in sync.
            actively_synced: (j.kind == qmpkit_block::job::JobKind::Mirror)
                .then_some(j.actively_synced),
            error: j.error,
        })
        .collect())
}

pub fn block_job_set_speed(m: &mut Machine, a: api::BlockJobSetSpeed, _: &mut Cx) -> R<Empty> {
    block_job(m, &a.device)?;
    let s = speed(m, Some(a.speed))?;
    m.block.jobs.set_speed(&a.device, s).map_err(qerr)?;
    block::pump(m);
    Ok(Empty)
}

pub fn block_job_cancel(m: &mut Machine, a: api::BlockJobCancel, _: &mut Cx) -> R<Empty> {
    block_job(m, &a.device)?;
    let block::BlockState { graph, jobs, .. } = &mut m.block;
    jobs.cancel(graph, &a.device, a.force.unwrap_or(false))
        .map_err(qerr)?;
    block::pump(m);
    Ok(Empty)
}

pub fn block_job_pause(m: &mut Machine, a: api::BlockJobPause, _: &mut Cx) -> R<Empty> {
    block_job(m, &a.device)?;
    m.block.jobs.pause(&a.device).map_err(qerr)?;
    block::pump(m);
    Ok(Empty)
}

pub fn block_job_resume(m: &mut Machine, a: api::BlockJobResume, _: &mut Cx) -> R<Empty> {
    block_job(m, &a.device)?;
    let block::BlockState { graph, jobs, .. } = &mut m.block;
    jobs.resume(graph, &a.device).map_err(qerr)?;
    block::pump(m);
    Ok(Empty)
}

pub fn block_job_complete(m: &mut Machine, a: api::BlockJobComplete, _: &mut Cx) -> R<Empty> {
    block_job(m, &a.device)?;
    let block::BlockState { graph, jobs, .. } = &mut m.block;
    jobs.complete(graph, &a.device).map_err(qerr)?;
    block::pump(m);
    Ok(Empty)
}

// ---------------------------------------------------------------------------
// NBD.

fn listen_addr(addr: &api::SocketAddressLegacy) -> R<NbdListen> {
    match addr {
        api::SocketAddressLegacy::Unix(u) => Ok(NbdListen::Unix(PathBuf::from(&u.path))),
        api::SocketAddressLegacy::Inet(i) => {
            use std::net::ToSocketAddrs;
            let host = if i.host.is_empty() {
                "0.0.0.0"
            } else {
                &i.host
            };
            let port: u16 = i
                .port
                .parse()
                .map_err(|_| generic(format!("Service '{}' is not a port number", i.port)))?;
            (host, port)
                .to_socket_addrs()
                .ok()
                .and_then(|mut a| a.next())
                .map(NbdListen::Tcp)
                .ok_or_else(|| {
                    generic(format!(
                        "address resolution failed for {}:{}: Name or service not known",
                        i.host, i.port
                    ))
                })
        }
        _ => Err(not_implemented("nbd-server-start on this address type")),
    }
}

/// Starts the NBD server (`nbd-server-start`, and the storage daemon's `--nbd-server`).
pub fn start_nbd(m: &mut Machine, listen: NbdListen) -> R<()> {
    if m.block.nbd.is_some() {
        return Err(generic("NBD server already running"));
    }
    let server = NbdServer::start(listen).map_err(qerr)?;
    m.block.nbd = Some(server);
    Ok(())
}

pub fn nbd_server_start(m: &mut Machine, a: api::NbdServerStart, _: &mut Cx) -> R<Empty> {
    if a.tls_creds.is_some() {
        return Err(not_implemented("nbd-server-start with TLS"));
    }
    if m.block.nbd.is_some() {
        return Err(generic("NBD server already running"));
    }
    let listen = listen_addr(&a.addr)?;
    start_nbd(m, listen)?;
    Ok(Empty)
}

pub fn nbd_server_add(m: &mut Machine, a: api::NbdServerAdd, _: &mut Cx) -> R<Empty> {
    // The node is looked up before the server is asked for (a simulated medium, which
    // QEMU has no words for, is refused after it).
    let node = match block::resolve_node(m, &a.device) {
        Ok(n) => Some(n),
        Err(_) if m.block.find(&a.device).is_some_and(|d| d.medium.is_some()) => None,
        Err(e) => return Err(e),
    };
    // Since 5.2 the export's block backend goes onto the node before the server is asked
    // for (`block::add_export`).
    if m.block.nbd.is_none() && (node.is_none() || !m.compat().nbd_server_add_as_export) {
        return Err(block::export_refused(m, generic("NBD server not running")));
    }
    let node = match node {
        Some(n) => n,
        None => block::resolve_node(m, &a.device)?,
    };
    let mut writable = a.writable.unwrap_or(false);
    if writable && m.block.graph.is_read_only(&node).map_err(qerr)? {
        if !m.compat().nbd_server_add_as_export {
            return Err(generic("Cannot export read-only node as writable"));
        }
        writable = false;
    }
    // The export's ID is its name.
    let name = a.name.as_deref().unwrap_or(&a.device);
    let e = block::NewExport {
        id: name,
        name,
        description: a.description.as_deref(),
        node: &node,
        writable,
    };
    block::add_export(m, &e)?;
    Ok(Empty)
}

pub fn nbd_server_stop(m: &mut Machine, _: api::NbdServerStop, _: &mut Cx) -> R<Empty> {
    block::stop_nbd(m)?;
    Ok(Empty)
}

/// The drive a tray or medium command names (by `device` or by `id`), and how its errors
/// name it.
fn drive(m: &Machine, dev: Option<&str>, id: Option<&str>) -> R<(usize, String)> {
    let i = block::lookup(m, dev, id)?;
    Ok((i, block::display_name(dev, id)))
}
