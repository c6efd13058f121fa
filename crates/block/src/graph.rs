//! The node graph: nodes with node-names (QEMU's `#blockNNN` when implicit), drivers, `file`
//! and `backing` children, users outside the graph (exports, devices, jobs), QEMU's permission
//! rules and conflict words, in-use checks for deletion, and the answers of
//! `query-named-block-nodes` and `x-debug-query-block-graph` as typed values.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use crate::bitmap::{SharedBitmaps, Tracked};
use crate::counted::WriteMark;
use crate::image::{self, Image, ImageFormat, ImageInfo};
use crate::lock::{FileLock, Locking};
use crate::nbd::{ExportBackend, SharedImage};
use crate::{Error, ErrorClass, Result};

mod backing;
mod bitmaps;
mod describe;
mod length;
mod passed;
pub mod quorum;
mod reopen;
mod snapshots;
pub mod status;

pub use length::{Growth, LengthsBefore};
pub use passed::{OpenFlags, OpenFn, PassedFile};
pub use quorum::{QuorumEvent, QuorumOp, QuorumOptions, QuorumSettings, ReadPattern};

/// Block drivers the graph knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Driver {
    File,
    Raw,
    Qcow2,
    NullCo,
    NullAio,
    /// A filter that throttles its parents' I/O to its file child by a throttle group.
    Throttle,
    /// A mirror job's filter above its source (`backing` child).
    MirrorTop,
    /// An active commit's filter above the top (QEMU's `mirror_top` driver, with a commit's
    /// permissions).
    CommitActiveTop,
    /// A commit job's filter above its top, below the top's overlay (`backing` child).
    CommitTop,
    /// A stream job's filter above its node (`file` child).
    CopyOnRead,
    /// A backup job's filter above its source (`file` child) that writes to the target
    /// (`target` child).
    CopyBeforeWrite,
    /// Votes between its `children.N` children (see [`quorum`]).
    Quorum,
}

impl Driver {
    pub fn name(self) -> &'static str {
        match self {
            Driver::File => "file",
            Driver::Raw => "raw",
            Driver::Qcow2 => "qcow2",
            Driver::NullCo => "null-co",
            Driver::NullAio => "null-aio",
            Driver::Throttle => "throttle",
            Driver::MirrorTop | Driver::CommitActiveTop => "mirror_top",
            Driver::CommitTop => "commit_top",
            Driver::CopyOnRead => "copy-on-read",
            Driver::CopyBeforeWrite => "copy-before-write",
            Driver::Quorum => "quorum",
        }
    }

    /// The filters block jobs put into the graph while they run.
    pub fn is_job_filter(self) -> bool {
        matches!(
            self,
            Driver::MirrorTop
                | Driver::CommitActiveTop
                | Driver::CommitTop
                | Driver::CopyOnRead
                | Driver::CopyBeforeWrite
        )
    }

    /// The role of the child whose data a filter passes through.
    pub fn filtered_role(self) -> Option<ChildRole> {
        match self {
            Driver::Throttle | Driver::CopyOnRead | Driver::CopyBeforeWrite => {
                Some(ChildRole::File)
            }
            Driver::MirrorTop | Driver::CommitActiveTop | Driver::CommitTop => {
                Some(ChildRole::Backing)
            }
            _ => None,
        }
    }

    pub fn from_name(name: &str) -> Option<Driver> {
        Some(match name {
            "file" => Driver::File,
            "raw" => Driver::Raw,
            "qcow2" => Driver::Qcow2,
            "null-co" => Driver::NullCo,
            "null-aio" => Driver::NullAio,
            "throttle" => Driver::Throttle,
            "quorum" => Driver::Quorum,
            _ => return None,
        })
    }

    fn format(self) -> Option<ImageFormat> {
        match self {
            Driver::Raw => Some(ImageFormat::Raw),
            Driver::Qcow2 => Some(ImageFormat::Qcow2),
            _ => None,
        }
    }
}

/// One permission (`BlockPermission`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Perm {
    ConsistentRead,
    Write,
    WriteUnchanged,
    Resize,
    GraphMod,
}

impl Perm {
    pub const ALL: [Perm; 5] = [
        Perm::ConsistentRead,
        Perm::Write,
        Perm::WriteUnchanged,
        Perm::Resize,
        Perm::GraphMod,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Perm::ConsistentRead => "consistent-read",
            Perm::Write => "write",
            Perm::WriteUnchanged => "write-unchanged",
            Perm::Resize => "resize",
            Perm::GraphMod => "graph-mod",
        }
    }

    /// The name QEMU's messages give it (its permission table's, not the QAPI enum's).
    pub fn words(self) -> &'static str {
        match self {
            Perm::ConsistentRead => "consistent read",
            Perm::Write => "write",
            Perm::WriteUnchanged => "write unchanged",
            Perm::Resize => "resize",
            Perm::GraphMod => "change children",
        }
    }

    fn bit(self) -> u8 {
        match self {
            Perm::ConsistentRead => 1,
            Perm::Write => 2,
            Perm::WriteUnchanged => 4,
            Perm::Resize => 8,
            Perm::GraphMod => 16,
        }
    }
}

/// A set of permissions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PermSet(u8);

impl PermSet {
    pub const NONE: PermSet = PermSet(0);
    /// Every permission but graph-mod (which QEMU no longer uses).
    pub const ALL: PermSet = PermSet(15);

    pub fn of(perms: &[Perm]) -> PermSet {
        PermSet(perms.iter().fold(0, |a, p| a | p.bit()))
    }
    pub fn contains(self, p: Perm) -> bool {
        self.0 & p.bit() != 0
    }
    pub fn union(self, o: PermSet) -> PermSet {
        PermSet(self.0 | o.0)
    }
    pub fn intersect(self, o: PermSet) -> PermSet {
        PermSet(self.0 & o.0)
    }
    pub fn minus(self, o: PermSet) -> PermSet {
        PermSet(self.0 & !o.0)
    }
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
    /// In ascending order, as QEMU names them in errors.
    pub fn list(self) -> Vec<Perm> {
        Perm::ALL
            .into_iter()
            .filter(|p| self.contains(*p))
            .collect()
    }
    /// In descending order, as `x-debug-query-block-graph` lists them.
    pub fn list_desc(self) -> Vec<Perm> {
        let mut v = self.list();
        v.reverse();
        v
    }
    fn words(self) -> String {
        self.list()
            .iter()
            .map(|p| p.words())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// `BlockdevDetectZeroesOptions`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DetectZeroes {
    #[default]
    Off,
    On,
    Unmap,
}

impl DetectZeroes {
    pub fn name(self) -> &'static str {
        match self {
            DetectZeroes::Off => "off",
            DetectZeroes::On => "on",
            DetectZeroes::Unmap => "unmap",
        }
    }
}

/// `BlockdevRef`: a child by node name or defined inline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlockdevRef {
    Node(String),
    Inline(Box<BlockdevOptions>),
}

/// `BlockdevOptions` for the drivers the graph knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockdevOptions {
    pub driver: Driver,
    pub node_name: Option<String>,
    pub read_only: bool,
    pub detect_zeroes: DetectZeroes,
    pub cache_direct: bool,
    pub cache_no_flush: bool,
    /// Whether `cache` was given: without it, an inline child takes its parent's.
    pub cache_given: bool,
    /// `file`: the host file.
    pub filename: Option<PathBuf>,
    /// `file`: whether the node takes QEMU's locks on the file.
    pub locking: Locking,
    /// `raw` / `qcow2`: the protocol child.
    pub file: Option<BlockdevRef>,
    /// `qcow2`: None opens the backing file the image names; `Some(None)` is `"backing": null`.
    pub backing: Option<Option<BlockdevRef>>,
    /// `null-co` / `null-aio`: the size (1 GiB when absent).
    pub size: Option<u64>,
    /// `null-co` / `null-aio`: `read-zeroes` as given (such nodes always read zeroes).
    pub read_zeroes: Option<bool>,
    /// `throttle`: the throttle group (callers check that it exists).
    pub throttle_group: Option<String>,
    /// `quorum`: its children and voting options.
    pub quorum: Option<QuorumOptions>,
    /// Given as a command line's text (`-drive`): options a node's `json:` name shows are
    /// strings.
    pub from_text: bool,
    /// `auto-read-only` (what `-drive` sets for its file): a read-write file node opens its
    /// file for writing only once a parent needs to write; where it cannot (an fd set with
    /// only a read-only descriptor) the node opens all the same and refuses the writer.
    pub auto_read_only: bool,
}

impl BlockdevOptions {
    pub fn new(driver: Driver) -> BlockdevOptions {
        BlockdevOptions {
            driver,
            node_name: None,
            read_only: false,
            detect_zeroes: DetectZeroes::Off,
            cache_direct: false,
            cache_no_flush: false,
            cache_given: false,
            filename: None,
            locking: Locking::Auto,
            file: None,
            backing: None,
            size: None,
            read_zeroes: None,
            throttle_group: None,
            quorum: None,
            from_text: false,
            auto_read_only: false,
        }
    }

    pub fn file(path: impl Into<PathBuf>) -> BlockdevOptions {
        let mut o = BlockdevOptions::new(Driver::File);
        o.filename = Some(path.into());
        o
    }

    /// A format node over a child.
    pub fn format(driver: Driver, file: BlockdevRef) -> BlockdevOptions {
        let mut o = BlockdevOptions::new(driver);
        o.file = Some(file);
        o
    }

    pub fn null(size: Option<u64>) -> BlockdevOptions {
        let mut o = BlockdevOptions::new(Driver::NullCo);
        o.size = size;
        o
    }

    pub fn named(mut self, name: &str) -> BlockdevOptions {
        self.node_name = Some(name.to_string());
        self
    }

    pub fn read_only(mut self, ro: bool) -> BlockdevOptions {
        self.read_only = ro;
        self
    }

    pub fn backing(mut self, backing: Option<BlockdevRef>) -> BlockdevOptions {
        self.backing = Some(backing);
        self
    }
}

/// The role of a child link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChildRole {
    File,
    Backing,
    /// A backup filter's target.
    Target,
    /// A quorum's `children.N`.
    Children(u32),
}

impl ChildRole {
    pub fn name(self) -> std::borrow::Cow<'static, str> {
        match self {
            ChildRole::File => "file".into(),
            ChildRole::Backing => "backing".into(),
            ChildRole::Target => "target".into(),
            ChildRole::Children(n) => format!("children.{n}").into(),
        }
    }
}

/// Something outside the graph that uses a node (a block backend in QEMU's terms).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserKind {
    /// A block export (by export id): an unnamed block device to QEMU.
    Export(String),
    /// A guest device's drive (by device or backend name).
    Device(String),
    /// A block job (`kind` is the job type, e.g. "mirror").
    Job {
        id: String,
        kind: String,
        role: String,
    },
    /// A block backend a job opens on a node (a mirror's or commit's writer on its target, a
    /// stream's reader on its filter): an unnamed block device to QEMU.
    JobBackend(String),
}

/// Handle for a registered user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct UserId(u64);

#[derive(Debug, Clone)]
struct User {
    id: UserId,
    /// Attach order among all parents of a node (QEMU lists a node's parents newest first).
    attached: u64,
    kind: UserKind,
    node: String,
    perm: PermSet,
    shared: PermSet,
}

#[derive(Debug, Clone)]
struct Edge {
    role: ChildRole,
    child: String,
    /// Attach order among all parents of a node.
    attached: u64,
}

/// Data behind a node.
#[derive(Debug, Clone)]
enum Data {
    Image(SharedImage),
    /// A null node: its size, and whether it reads as zeroes (`read-zeroes`), which makes
    /// its whole disk allocated (as zeroes) to the layers above it.
    Null(u64, bool),
    Quorum(Arc<quorum::QuorumData>),
}

impl Data {
    fn size(&self) -> u64 {
        match self {
            Data::Image(i) => ExportBackend::size(&**i),
            Data::Null(s, _) => *s,
            Data::Quorum(q) => q.size(),
        }
    }
}

impl Node {
    /// Where the node's file is on the host ([`BlockGraph::host_path`]).
    fn path(&self) -> PathBuf {
        match &self.passed {
            Some(p) => p.path(),
            None => PathBuf::from(&self.filename),
        }
    }
}

#[derive(Debug, Clone)]
struct Node {
    /// Creation number (x-debug-query-block-graph's ids).
    serial: u64,
    name: String,
    driver: Driver,
    read_only: bool,
    /// Added by the monitor (named at top level), so blockdev-del may remove it.
    monitor_owned: bool,
    detect_zeroes: DetectZeroes,
    cache_direct: bool,
    cache_no_flush: bool,
    /// The file's name as given (file nodes: their own; format nodes: their file child's).
    filename: String,
    /// The descriptor behind a file name that is not a host path (`/dev/fdset/N`).
    passed: Option<Arc<PassedFile>>,
    /// A read-write file node whose file could only be had for reading (an fd set with no
    /// descriptor for writing): why it cannot be written, said when a writer comes (QEMU
    /// opens a file for writing only once a parent needs to write).
    write_error: Option<String>,
    children: Vec<Edge>,
    data: Data,
    write_threshold: u64,
    /// Operation blockers: the reason a job gives ("block device is in use by block job: stream").
    blockers: Vec<(String, String)>,
    /// Dirty bitmaps, shared with the node's data path.
    bitmaps: SharedBitmaps,
    /// `throttle` filters: their group.
    throttle_group: Option<String>,
    /// A job's filter put in without a name from the client (left out of `query-block`).
    implicit: bool,
    /// Taken out of its chain by a commit while it stayed open: QEMU then names it by a
    /// `json:` description that includes its backing.
    dropped_from_chain: bool,
    /// The backing file name a backing child is compared with to tell whether the client
    /// chose another backing than the image's own (QEMU's `auto_backing_file`).
    auto_backing: Option<String>,
    /// A raw node over a node that is no host file (a format, another raw node, a null
    /// node, a filter): its data is that child's, read and written through the child.
    passthrough: bool,
    /// Where the writes through the node ended, at the highest (`wr_highest_offset`): a
    /// file node counts every write to its file, the formats' metadata included.
    written: WriteMark,
    /// File and raw nodes: the length QEMU counts for the node, in whole sectors, kept from
    /// when it opened until a write through it ends beyond it, a truncation through it or a
    /// reopen (`graph/length`); None: not counted yet (the file's length now).
    length: Option<u64>,
    /// How far writes through a data path grew the file since (`graph/length`).
    grown: length::GrownCell,
    /// A mirror's filter: what is written through it, for the job.
    mirror_writes: Option<Arc<crate::mirror_writes::MirrorWrites>>,
}

/// `BlockdevCacheInfo`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheInfo {
    pub writeback: bool,
    pub direct: bool,
    pub no_flush: bool,
}

/// `BlockDeviceInfo` (one entry of `query-named-block-nodes`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    pub node_name: String,
    pub file: String,
    pub ro: bool,
    pub drv: String,
    pub backing_file: Option<String>,
    /// The number of backing links below this node.
    pub backing_file_depth: u64,
    pub encrypted: bool,
    pub detect_zeroes: DetectZeroes,
    pub bps: u64,
    pub bps_rd: u64,
    pub bps_wr: u64,
    pub iops: u64,
    pub iops_rd: u64,
    pub iops_wr: u64,
    pub write_threshold: u64,
    pub cache: CacheInfo,
    pub active: bool,
    /// The format name `image.format` shows: the driver's ("file", "raw", "qcow2", "null-co").
    pub image_format: String,
    /// What the node's image says about itself; `backing_image` filled for non-flat queries.
    pub image: ImageInfo,
    pub backing_image: Option<Box<NodeInfo>>,
    /// The node's dirty bitmaps.
    pub bitmaps: Vec<crate::bitmap::DirtyBitmap>,
}

/// `XDbgBlockGraphNodeType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GraphNodeType {
    BlockBackend,
    BlockJob,
    BlockDriver,
}

impl GraphNodeType {
    pub fn name(self) -> &'static str {
        match self {
            GraphNodeType::BlockBackend => "block-backend",
            GraphNodeType::BlockJob => "block-job",
            GraphNodeType::BlockDriver => "block-driver",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphNode {
    pub id: u64,
    pub kind: GraphNodeType,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphEdge {
    pub parent: u64,
    pub child: u64,
    pub name: String,
    pub perm: Vec<Perm>,
    pub shared_perm: Vec<Perm>,
}

/// `XDbgBlockGraph`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DebugGraph {
    pub nodes: Vec<GraphNode>,
    pub edges: Vec<GraphEdge>,
}

/// A parent of a node for the permission check, newest first.
#[derive(Debug, Clone)]
struct Parent {
    desc: String,
    role: String,
    perm: PermSet,
    shared: PermSet,
}

/// Reads zeroes and drops writes, like `null-co`.
#[derive(Debug)]
pub struct NullBackend(pub u64);

impl ExportBackend for NullBackend {
    fn size(&self) -> u64 {
        self.0
    }
    fn reads_zeroes(&self, _: u64, _: u64) -> bool {
        true
    }
    fn read(&self, _: u64, buf: &mut [u8]) -> Result<()> {
        buf.fill(0);
        Ok(())
    }
    fn write(&self, _: u64, _: &[u8]) -> Result<()> {
        Ok(())
    }
    fn write_zeroes(&self, _: u64, _: u64) -> Result<()> {
        Ok(())
    }
    fn trim(&self, _: u64, _: u64) -> Result<()> {
        Ok(())
    }
    fn flush(&self) -> Result<()> {
        Ok(())
    }
}

/// A part of the graph each mutable use of which counts as a change (see
/// [`BlockGraph::generation`]): what is worked out from the graph can be kept until it changes.
#[derive(Debug, Default)]
struct Counted<T> {
    value: T,
    changes: u64,
}

impl<T> Counted<T> {
    fn new(value: T) -> Counted<T> {
        Counted { value, changes: 0 }
    }
}

impl<T> std::ops::Deref for Counted<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T> std::ops::DerefMut for Counted<T> {
    fn deref_mut(&mut self) -> &mut T {
        self.changes += 1;
        &mut self.value
    }
}

/// A graph's state as [`BlockGraph::generation`] tells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Generation {
    graph: u64,
    changes: u64,
}

/// Numbers graphs, so that no two graphs' generations are the same.
static GRAPHS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// The graph of one machine (or storage daemon).
#[derive(Debug)]
pub struct BlockGraph {
    /// This graph's number (see [`Generation`]).
    id: u64,
    nodes: Counted<BTreeMap<String, Node>>,
    users: Counted<Vec<User>>,
    next_serial: u64,
    next_user: u64,
    auto_counter: u64,
    rng: u64,
    /// Attach order of edges and users.
    next_attach: u64,
    /// The locks of file nodes that lock their file (by node name).
    locks: BTreeMap<String, FileLock>,
    /// Whether `locking=auto` locks (as where the host has OFD locks).
    auto_locking: bool,
    /// While a transaction runs ([`BlockGraph::hold_overlays`]): the overlays of snapshots
    /// of nodes nothing uses, kept open (with their locks) until it ends.
    held: Option<Vec<String>>,
    /// Drains of the whole graph since [`BlockGraph::take_drains`] (QEMU drains every node
    /// each time it changes the graph: they pause and resume the jobs).
    drains: u32,
    /// Drains of single nodes since [`BlockGraph::take_node_drains`], each as the jobs it
    /// reaches (those linked to the node or to a node above it).
    node_drains: Vec<Vec<String>>,
    /// Opens file names that are not host paths ([`BlockGraph::set_opener`]).
    opener: passed::Opener,
}

impl Default for BlockGraph {
    fn default() -> Self {
        BlockGraph::new(0x9e37_79b9_7f4a_7c15)
    }
}

/// `node`'s child in a role.
fn child_in(node: &Node, role: ChildRole) -> Option<&str> {
    node.children
        .iter()
        .find(|e| e.role == role)
        .map(|e| e.child.as_str())
}

/// A child opened with its parent takes the parent's cache mode unless it gives its own.
fn inherit_cache(child: &mut BlockdevOptions, parent: &BlockdevOptions) {
    if !child.cache_given {
        child.cache_direct = parent.cache_direct;
        child.cache_no_flush = parent.cache_no_flush;
        child.cache_given = parent.cache_given;
    }
}

/// QEMU's rule for ids: a letter, then letters, digits, '-', '.', '_'.
pub fn id_wellformed(id: &str) -> bool {
    let mut chars = id.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
}

/// The drains of a `blockdev-add` that failed, by where it failed, as QEMU opens a node: a
/// node that goes again drains once; a file that cannot be opened twice; a format node
/// attaches its file child before it checks its own name and header (and detaches and
/// closes it again).
fn failed_open_drains(o: &BlockdevOptions, e: &Error) -> u32 {
    let msg = e.desc.as_str();
    let inline = matches!(o.file, Some(BlockdevRef::Inline(_)));
    let Some(file) = &o.file else {
        return if msg.starts_with("Could not open") {
            2
        } else {
            1
        };
    };
    let name_error = msg.starts_with("Invalid node-name")
        || msg.starts_with("Duplicate nodes")
        || msg.starts_with("Node name too long");
    if name_error {
        return 3 + u32::from(inline);
    }
    if let Some(cause) = msg.strip_prefix("Could not open backing file: ") {
        // The node attached its file (three drains) and closes it again if inline; the
        // backing image, a format node over an implicit file node, failed as such a node
        // fails at the top, and one more drain (measured on qemu-storage-daemon 10.0.2,
        // down to chains of three images).
        let implicit = BlockdevOptions::format(
            Driver::Qcow2,
            BlockdevRef::Inline(Box::new(BlockdevOptions::file(Path::new("")))),
        );
        return 3 + u32::from(inline) + 1 + failed_open_drains(&implicit, &Error::generic(cause));
    }
    match file {
        BlockdevRef::Node(_) if msg.starts_with("Cannot find device") => 1,
        BlockdevRef::Inline(child) if msg.starts_with("Could not open") => {
            failed_open_drains(child, e) + 1
        }
        _ if msg.contains("format") => 6 + u32::from(inline),
        _ => 5 + u32::from(inline),
    }
}

fn not_found(name: &str) -> Error {
    Error::generic(format!(
        "Cannot find device='{name}' nor node-name='{name}'"
    ))
}

impl BlockGraph {
    /// `seed` drives the two random digits of generated node names.
    pub fn new(seed: u64) -> BlockGraph {
        BlockGraph {
            id: GRAPHS.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            nodes: Counted::new(BTreeMap::new()),
            users: Counted::new(Vec::new()),
            next_serial: 1,
            next_user: 1,
            auto_counter: 0,
            rng: seed | 1,
            next_attach: 0,
            locks: BTreeMap::new(),
            auto_locking: true,
            held: None,
            drains: 0,
            node_drains: Vec::new(),
            opener: passed::Opener::default(),
        }
    }

    /// Which graph this is and how often its nodes and users may have changed (a node added,
    /// removed or changed in any way, a child or user attached, moved or detached): while it
    /// stays the same, anything worked out from the graph's nodes and users still holds.
    pub fn generation(&self) -> Generation {
        Generation {
            graph: self.id,
            changes: self.nodes.changes + self.users.changes,
        }
    }

    /// How file names that are not host paths open (QEMU's `/dev/fdset/N`, which the
    /// graph's owner keeps): the file nodes naming them hold what `open` gives.
    pub fn set_opener(&mut self, open: Arc<OpenFn>) {
        self.opener = passed::Opener(Some(open));
    }

    /// Why a node cannot be written although it was opened read-write (its file, or that of
    /// a child, could only be had for reading), if so.
    pub fn write_error(&self, name: &str) -> Option<String> {
        let mut stack = vec![name.to_string()];
        while let Some(n) = stack.pop() {
            let node = self.nodes.get(&n)?;
            if let Some(e) = &node.write_error {
                return Some(e.clone());
            }
            stack.extend(
                node.children
                    .iter()
                    .filter(|e| e.role == ChildRole::File)
                    .map(|e| e.child.clone()),
            );
        }
        None
    }

    /// Where a node's file is on the host (its file child's, for a format node): its name,
    /// or the descriptor handed over for it.
    pub fn host_path(&self, name: &str) -> Result<PathBuf> {
        Ok(self.node(name)?.path())
    }

    fn next_random(&mut self) -> u64 {
        // xorshift64*
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A fresh `#blockNNN` name: a counter, then two random digits, as QEMU makes them.
    pub fn generate_name(&mut self) -> String {
        loop {
            let rnd = self.next_random() % 100;
            let name = format!("#block{}{:02}", self.auto_counter, rnd);
            self.auto_counter += 1;
            if !self.nodes.contains_key(&name) {
                return name;
            }
        }
    }

    /// Whether a node may be given the name `n`, in QEMU's order and words.
    pub fn check_new_node_name(&self, n: &str) -> Result<()> {
        if !id_wellformed(n) {
            return Err(Error::generic(format!("Invalid node-name: '{n}'")));
        }
        if self.nodes.contains_key(n) {
            return Err(Error::generic(format!(
                "Duplicate nodes with node-name='{n}'"
            )));
        }
        if n.len() > 31 {
            return Err(Error::generic("Node name too long"));
        }
        Ok(())
    }

    /// Whether file nodes with `locking=auto` lock their files (they do by default, as QEMU
    /// does where the host offers OFD locks; without, as where it does not).
    pub fn set_auto_locking(&mut self, on: bool) {
        self.auto_locking = on;
    }

    pub fn contains(&self, name: &str) -> bool {
        self.nodes.contains_key(name)
    }

    pub fn node_names(&self) -> Vec<String> {
        let mut v: Vec<&Node> = self.nodes.values().collect();
        v.sort_by_key(|n| std::cmp::Reverse(n.serial));
        v.into_iter().map(|n| n.name.clone()).collect()
    }

    fn node(&self, name: &str) -> Result<&Node> {
        self.nodes.get(name).ok_or_else(|| not_found(name))
    }

    /// `blockdev-add`: adds the node and its inline children; all or nothing. Returns the
    /// top node's name.
    pub fn add(&mut self, opts: &BlockdevOptions) -> Result<String> {
        if opts.node_name.is_none() {
            return Err(Error::generic(
                "'node-name' must be specified for the root node",
            ));
        }
        let mut added = Vec::new();
        let r = self
            .add_inner(opts, true, &mut added)
            .and_then(|name| self.check_perms_from(&name).map(|()| name));
        self.drains += match &r {
            Ok(_) => self.open_drains(&added),
            Err(e) => failed_open_drains(opts, e),
        };
        if r.is_ok() {
            self.note_attach_drains(&added);
        }
        if r.is_err() {
            for n in added.iter().rev() {
                self.nodes.remove(n);
            }
            self.commit_locks();
        }
        r
    }

    /// The drains of opening the nodes `added`: three for a node that takes a file child (it
    /// attaches the child, then refreshes itself twice), one for each backing child attached.
    fn open_drains(&self, added: &[String]) -> u32 {
        added
            .iter()
            .filter_map(|n| self.nodes.get(n))
            .flat_map(|n| &n.children)
            .map(|e| match e.role {
                ChildRole::File => 3,
                _ => 1,
            })
            .sum()
    }

    /// Drains since the last call (each pauses and resumes every job once).
    pub fn take_drains(&mut self) -> u32 {
        std::mem::take(&mut self.drains)
    }

    /// Drains of single nodes since the last call, each as the ids of the jobs it pauses
    /// and resumes.
    pub fn take_node_drains(&mut self) -> Vec<Vec<String>> {
        std::mem::take(&mut self.node_drains)
    }

    /// A new node that takes an existing node as its child drains that child twice (as
    /// measured on qemu-storage-daemon 10.0.2): the jobs linked to it or to a node above it
    /// pause and resume each time.
    fn note_attach_drains(&mut self, added: &[String]) {
        let existing: Vec<String> = added
            .iter()
            .filter_map(|n| self.nodes.get(n))
            .flat_map(|n| &n.children)
            .map(|e| e.child.clone())
            .filter(|c| !added.contains(c))
            .collect();
        for c in existing {
            let jobs = self.jobs_drained_with(&c);
            if !jobs.is_empty() {
                self.node_drains.push(jobs.clone());
                self.node_drains.push(jobs);
            }
        }
    }

    /// Counts `n` drains of the whole graph.
    pub fn note_drains(&mut self, n: u32) {
        self.drains += n;
    }

    /// What `-drive` does: adds the node and its children with a generated `#blockNNN` name
    /// for the top as well, owned by the drive rather than the monitor (`blockdev-del` refuses
    /// it). All or nothing, like [`BlockGraph::add`]. Returns the top node's name.
    pub fn add_implicit(&mut self, opts: &BlockdevOptions) -> Result<String> {
        let mut added = Vec::new();
        let r = self
            .add_inner(opts, false, &mut added)
            .and_then(|name| self.check_perms_from(&name).map(|()| name));
        if r.is_err() {
            for n in added.iter().rev() {
                self.nodes.remove(n);
            }
            self.commit_locks();
        }
        r
    }

    /// A child by reference, or opened from its options: read-only under a read-only
    /// parent (`ro`), and with its parent's cache mode unless it gives its own.
    fn resolve_child(
        &mut self,
        r: &BlockdevRef,
        added: &mut Vec<String>,
        ro: bool,
        parent: &BlockdevOptions,
    ) -> Result<String> {
        match r {
            BlockdevRef::Node(name) => {
                self.node(name)?;
                Ok(name.clone())
            }
            BlockdevRef::Inline(o) => {
                let mut o = (**o).clone();
                o.read_only |= ro;
                inherit_cache(&mut o, parent);
                self.add_inner(&o, false, added)
            }
        }
    }

    fn add_inner(
        &mut self,
        o: &BlockdevOptions,
        top: bool,
        added: &mut Vec<String>,
    ) -> Result<String> {
        if let Some(n) = &o.node_name {
            self.check_new_node_name(n)?;
        }
        let mut children = Vec::new();
        let mut pending_backing: Option<Option<Option<BlockdevRef>>> = None;
        let mut stored_bitmaps = None;
        let mut passed: Option<Arc<PassedFile>> = None;
        let mut own_mark: Option<WriteMark> = None;
        let mut write_error: Option<String> = None;
        // A node is named before it opens (so a failed open still uses up a generated name,
        // as in QEMU), but after its file child.
        let name: Option<String>;
        let (filename, data) = match o.driver {
            Driver::MirrorTop
            | Driver::CommitActiveTop
            | Driver::CommitTop
            | Driver::CopyOnRead
            | Driver::CopyBeforeWrite => {
                // Only jobs put these in (see `insert_job_filter`).
                return Err(Error::generic(format!(
                    "Unknown driver '{}'",
                    o.driver.name()
                )));
            }
            Driver::File => {
                name = Some(self.name_for(o));
                let given = o
                    .filename
                    .as_ref()
                    .ok_or_else(|| Error::generic("Parameter 'filename' is missing"))?;
                let flags = OpenFlags {
                    write: !o.read_only,
                    direct: o.cache_direct,
                };
                passed = match self.opener.open(&given.to_string_lossy(), flags) {
                    // Without a descriptor for writing, the file is held for reading until
                    // a writer comes.
                    Some(Err(e)) if flags.write && o.auto_read_only => {
                        let read = OpenFlags {
                            write: false,
                            ..flags
                        };
                        match self.opener.open(&given.to_string_lossy(), read) {
                            Some(Ok(f)) => {
                                write_error = Some(e.desc);
                                Some(Arc::new(f))
                            }
                            _ => return Err(e),
                        }
                    }
                    other => other.transpose()?.map(Arc::new),
                };
                let host = passed.as_ref().map(|p| p.path());
                let path = host.as_ref().unwrap_or(given);
                // Only regular files: a directory does not even open for writing.
                if let Ok(meta) = std::fs::metadata(path) {
                    let shown = given.to_string_lossy();
                    // (With `auto-read-only` the open for writing falls back to reading,
                    // and the check below speaks.)
                    if meta.is_dir() && !o.read_only && !o.auto_read_only {
                        return Err(Error::generic(format!(
                            "Could not open '{shown}': Is a directory"
                        )));
                    }
                    if !meta.is_file() {
                        return Err(Error::generic(format!(
                            "'file' driver requires '{shown}' to be a regular file"
                        )));
                    }
                }
                let mark = WriteMark::new();
                own_mark = Some(mark.clone());
                let img = Image::open_marked(
                    path,
                    ImageFormat::Raw,
                    !o.read_only && write_error.is_none(),
                    None,
                    mark,
                )?;
                let locks = match o.locking {
                    Locking::On => true,
                    Locking::Off => false,
                    Locking::Auto => self.auto_locking,
                };
                if locks {
                    let lock = FileLock::open(path)?;
                    if let Some(n) = &name {
                        self.locks.insert(n.clone(), lock);
                    }
                }
                (
                    given.to_string_lossy().into_owned(),
                    Data::Image(Arc::new(RwLock::new(img))),
                )
            }
            Driver::NullCo | Driver::NullAio => {
                name = Some(self.name_for(o));
                // QEMU names a null node by its protocol unless options were given, else by
                // them (in the order QEMU's dictionary keeps these names).
                let filename = if o.size.is_none() && o.read_zeroes.is_none() {
                    format!("{}://", o.driver.name())
                } else {
                    // A command line's options are text ("on", "512").
                    let q = if o.from_text { "\"" } else { "" };
                    let mut members = Vec::new();
                    if let Some(z) = o.read_zeroes {
                        let z = if o.from_text && z {
                            "on"
                        } else if o.from_text {
                            "off"
                        } else if z {
                            "true"
                        } else {
                            "false"
                        };
                        members.push(format!("\"read-zeroes\": {q}{z}{q}"));
                    }
                    members.push(format!("\"driver\": \"{}\"", o.driver.name()));
                    if let Some(size) = o.size {
                        members.push(format!("\"size\": {q}{size}{q}"));
                    }
                    format!("json:{{{}}}", members.join(", "))
                };
                (
                    filename,
                    Data::Null(o.size.unwrap_or(1 << 30), o.read_zeroes.unwrap_or(false)),
                )
            }
            Driver::Quorum => {
                let (n, edges, data) = self.open_quorum(o, top, added)?;
                children = edges;
                name = Some(n);
                (String::new(), data)
            }
            Driver::Throttle => {
                o.throttle_group
                    .as_ref()
                    .ok_or_else(|| Error::generic("Parameter 'throttle-group' is missing"))?;
                let file_ref = o
                    .file
                    .as_ref()
                    .ok_or_else(|| Error::generic("Parameter 'file' is missing"))?;
                let file = self.resolve_child(file_ref, added, o.read_only, o)?;
                let (n, opened) =
                    self.open_over_child(o, top, &file, &mut children, &mut passed, added, false)?;
                name = Some(n);
                opened
            }
            Driver::Raw | Driver::Qcow2 => {
                let file_ref = o
                    .file
                    .as_ref()
                    .ok_or_else(|| Error::generic("Parameter 'file' is missing"))?;
                let file = self.resolve_child(file_ref, added, o.read_only, o)?;
                let file_node = self.node(&file)?;
                if o.driver == Driver::Raw && file_node.driver != Driver::File {
                    // Any node may be a raw node's file: its data goes through that node.
                    let (n, opened) = self.open_over_child(
                        o,
                        top,
                        &file,
                        &mut children,
                        &mut passed,
                        added,
                        true,
                    )?;
                    name = Some(n);
                    opened
                } else {
                    // A qcow2 image is read from the host file below its file child: through raw
                    // nodes and filters that pass their data on unchanged.
                    let holder = self.data_holder(&file);
                    let holder_node = self.node(&holder)?;
                    if !matches!(holder_node.driver, Driver::File | Driver::Raw) {
                        // Data that is no host file (a null node's zeroes, another image's
                        // disk): a qcow2 image only where its header is.
                        let mut magic = [0u8; 4];
                        let backend = self.backend(&file)?;
                        if backend.size() < 4
                            || backend.read(0, &mut magic).is_err()
                            || &magic != b"QFI\xfb"
                        {
                            return Err(Error::generic("Image is not in qcow2 format"));
                        }
                        return Err(Error::generic(format!(
                            "A qcow2 image inside the disk of node '{holder}' is not supported"
                        )));
                    }
                    let file_node = holder_node;
                    let file_filename = file_node.filename.clone();
                    let path = file_node.path();
                    passed = file_node.passed.clone();
                    let n = self.name_for(o);
                    children.push(self.edge(ChildRole::File, &file));
                    // The file child is attached (its permissions taken, its file locked) before
                    // the format reads anything from it.
                    let placeholder = Data::Null(0, false);
                    self.put_node(
                        &n,
                        o,
                        top,
                        file_filename.clone(),
                        children.clone(),
                        placeholder,
                        added,
                    );
                    self.check_perms_from(&n)?;
                    name = Some(n);
                    let format = o.driver.format().unwrap_or(ImageFormat::Raw);
                    if format == ImageFormat::Qcow2 {
                        image::image_info(&path, Some(ImageFormat::Qcow2)).map_err(|e| {
                            if e.desc.contains("not in qcow2 format") {
                                Error::generic("Image is not in qcow2 format")
                            } else {
                                e
                            }
                        })?;
                    }
                    // Persistent bitmaps are read before the image opens for writing (which marks
                    // them as no longer consistent in the file until they are stored again).
                    if format == ImageFormat::Qcow2 {
                        stored_bitmaps = Some(bitmaps::load_stored(&path));
                    }
                    // The node opens first, its backing after it (so implicit names count up as
                    // QEMU's do); the data is re-opened with the chain once it is there.
                    let mark = self.storage_mark(&file);
                    let img = Image::open_marked(&path, format, !o.read_only, None, mark)?;
                    if format == ImageFormat::Qcow2 {
                        pending_backing = Some(o.backing.clone());
                    }
                    (file_filename, Data::Image(Arc::new(RwLock::new(img))))
                }
            }
        };
        let name = match name {
            Some(n) => n,
            None => self.name_for(o),
        };
        let passthrough = self.nodes.get(&name).is_some_and(|n| n.passthrough);
        self.put_node(&name, o, top, filename, children, data, added);
        if let Some(n) = self.nodes.get_mut(&name) {
            n.passed = passed;
            n.passthrough = passthrough;
            if let Some(m) = own_mark {
                n.written = m;
            }
            n.write_error = write_error;
        }
        self.count_length(&name);
        if let Some(stored) = stored_bitmaps {
            self.attach_stored_bitmaps(&name, stored);
        }
        if let Some(backing) = pending_backing {
            let path = self.node(&name)?.path();
            // What QEMU compares the backing child's file name with: the header's name as
            // written, or the file name of the backing it opened from the header itself.
            let header = image::image_info(&path, Some(ImageFormat::Qcow2)).ok();
            let auto = header.and_then(|h| match backing {
                None => h.full_backing_filename,
                Some(_) => h.backing_filename,
            });
            if let Some(n) = self.nodes.get_mut(&name) {
                n.auto_backing = auto;
            }
            let child = match backing {
                Some(Some(r)) => Some(self.resolve_child(&r, added, true, o)),
                Some(None) => None,
                None => self.open_header_backing(&path, o, added).transpose(),
            };
            let child = child
                .transpose()
                .map_err(|e| e.prepend("Could not open backing file: "))?;
            if let Some(b) = child {
                let edge = self.edge(ChildRole::Backing, &b);
                if let Some(n) = self.nodes.get_mut(&name) {
                    n.children.push(edge);
                }
                self.check_perms_from(&name)?;
                self.reopen(&name)?;
            }
        }
        Ok(name)
    }

    /// The child whose data a node passes on unchanged: a filter's filtered child, a
    /// pass-through raw node's file.
    fn passes_to<'a>(&self, node: &'a Node) -> Option<&'a str> {
        let role = match node.driver.filtered_role() {
            Some(r) => r,
            None if node.passthrough => ChildRole::File,
            None => return None,
        };
        node.children
            .iter()
            .find(|e| e.role == role)
            .map(|e| e.child.as_str())
    }

    /// The node that holds `name`'s data: `name`, or the node below the filters and
    /// pass-through raw nodes over it.
    fn data_holder(&self, name: &str) -> String {
        let mut cur = name;
        for _ in 0..256 {
            match self.nodes.get(cur).and_then(|n| self.passes_to(n)) {
                Some(c) => cur = c,
                None => break,
            }
        }
        cur.to_string()
    }

    /// The node that holds `name`'s data (below its filters and pass-through raw nodes) and
    /// its driver.
    pub fn data_holder_driver(&self, name: &str) -> Result<(String, Driver)> {
        let holder = self.data_holder(name);
        let driver = self.driver(&holder)?;
        Ok((holder, driver))
    }

    /// The [`WriteMark`] of the host file below `name` (the file node under its raw nodes
    /// and filters): what images opened over that file count their writes in.
    fn storage_mark(&self, name: &str) -> WriteMark {
        let mut cur = name;
        for _ in 0..256 {
            let Some(n) = self.nodes.get(cur) else { break };
            if n.driver == Driver::File {
                return n.written.clone();
            }
            let below = self.passes_to(n).or_else(|| {
                n.children
                    .iter()
                    .find(|e| e.role == ChildRole::File)
                    .map(|e| e.child.as_str())
            });
            match below {
                Some(c) => cur = c,
                None => break,
            }
        }
        WriteMark::new()
    }

    /// Where the writes through a node ended, at the highest (`query-blockstats`'
    /// `wr_highest_offset`).
    pub fn wr_highest_offset(&self, name: &str) -> u64 {
        self.nodes.get(name).map_or(0, |n| n.written.get())
    }

    /// Writes through `name` ended at `end`: it and the nodes its data passes through down
    /// to the one that holds it count them.
    pub fn note_written_through(&self, name: &str, end: u64) {
        let mut cur = name;
        for _ in 0..256 {
            let Some(n) = self.nodes.get(cur) else { break };
            n.written.record(end);
            match self.passes_to(n) {
                Some(c) => cur = c,
                None => break,
            }
        }
    }

    /// Something wrote `name`'s host file directly up to `end` (creating an image in it,
    /// rewriting a header): its file node counts it.
    pub fn note_file_written(&self, name: &str, end: u64) {
        self.storage_mark(name).record(end);
    }

    /// A child link attached now.
    fn edge(&mut self, role: ChildRole, child: &str) -> Edge {
        self.next_attach += 1;
        Edge {
            role,
            child: child.to_string(),
            attached: self.next_attach,
        }
    }

    /// Opens a node whose data is its file child `file`'s (a filter, a raw node over a node
    /// that is no file): the child is attached, and its permissions taken, before the node
    /// opens. Its name and its filename and data.
    #[allow(clippy::too_many_arguments)]
    fn open_over_child(
        &mut self,
        o: &BlockdevOptions,
        top: bool,
        file: &str,
        children: &mut Vec<Edge>,
        passed: &mut Option<Arc<PassedFile>>,
        added: &mut Vec<String>,
        passthrough: bool,
    ) -> Result<(String, (String, Data))> {
        let child = self.node(file)?;
        let (filename, data) = (child.filename.clone(), child.data.clone());
        *passed = child.passed.clone();
        let n = self.name_for(o);
        children.push(self.edge(ChildRole::File, file));
        self.put_node(
            &n,
            o,
            top,
            filename.clone(),
            children.clone(),
            data.clone(),
            added,
        );
        if passthrough {
            if let Some(node) = self.nodes.get_mut(&n) {
                node.passthrough = true;
            }
        }
        self.check_perms_from(&n)?;
        Ok((n, (filename, data)))
    }

    /// Puts a node in the graph, or completes the one put there while it opened (keeping its
    /// place in the creation order).
    #[allow(clippy::too_many_arguments)]
    fn put_node(
        &mut self,
        name: &str,
        o: &BlockdevOptions,
        top: bool,
        filename: String,
        children: Vec<Edge>,
        data: Data,
        added: &mut Vec<String>,
    ) {
        let serial = match self.nodes.get(name) {
            Some(n) => n.serial,
            None => {
                self.next_serial += 1;
                self.next_serial - 1
            }
        };
        let written = self
            .nodes
            .get(name)
            .map(|n| n.written.clone())
            .unwrap_or_default();
        self.nodes.insert(
            name.to_string(),
            Node {
                serial,
                name: name.to_string(),
                driver: o.driver,
                read_only: o.read_only,
                monitor_owned: top,
                detect_zeroes: o.detect_zeroes,
                cache_direct: o.cache_direct,
                cache_no_flush: o.cache_no_flush,
                filename,
                children,
                data,
                write_threshold: 0,
                blockers: Vec::new(),
                bitmaps: SharedBitmaps::default(),
                throttle_group: o.throttle_group.clone(),
                implicit: false,
                dropped_from_chain: false,
                auto_backing: None,
                passed: None,
                passthrough: false,
                written,
                write_error: None,
                length: None,
                grown: Default::default(),
                mirror_writes: None,
            },
        );
        if !added.iter().any(|n| n == name) {
            added.push(name.to_string());
        }
    }

    fn name_for(&mut self, o: &BlockdevOptions) -> String {
        match &o.node_name {
            Some(n) => n.clone(),
            None => self.generate_name(),
        }
    }

    /// Opens the backing file a qcow2 header names as implicit read-only nodes.
    fn open_header_backing(
        &mut self,
        path: &Path,
        parent: &BlockdevOptions,
        added: &mut Vec<String>,
    ) -> Result<Option<String>> {
        let info = image::image_info(path, Some(ImageFormat::Qcow2))?;
        let Some(full) = info.full_backing_filename else {
            return Ok(None);
        };
        let fmt = match info.backing_filename_format.as_deref() {
            Some(f) => ImageFormat::from_name(f)
                .ok_or_else(|| Error::generic(format!("Unknown driver '{f}'")))?,
            None => image::probe_format(Path::new(&full))?,
        };
        let driver = match fmt {
            ImageFormat::Raw => Driver::Raw,
            ImageFormat::Qcow2 => Driver::Qcow2,
        };
        let o = BlockdevOptions::format(
            driver,
            BlockdevRef::Inline(Box::new(BlockdevOptions::file(&full).read_only(true))),
        )
        .read_only(true);
        let mut o = o;
        inherit_cache(&mut o, parent);
        if let Some(BlockdevRef::Inline(f)) = &mut o.file {
            inherit_cache(f, parent);
        }
        self.add_inner(&o, false, added).map(Some)
    }

    /// How to open a format node's data: its file and format, and its backing below.
    fn chain_spec(&self, name: &str) -> Result<image::ChainSpec> {
        let mut depth = 0;
        let mut specs = Vec::new();
        let mut cur = Some(name.to_string());
        while let Some(n) = cur {
            depth += 1;
            if depth > 256 {
                return Err(Error::generic("Backing chain too deep"));
            }
            // A pass-through raw node's data is its file's.
            let node = match self.node(&n)?.passthrough {
                true => self.node(&self.data_holder(&n))?,
                false => self.node(&n)?,
            };
            let format = match node.driver {
                Driver::File | Driver::Raw => ImageFormat::Raw,
                Driver::Qcow2 => ImageFormat::Qcow2,
                // A null node below an image reads as zeroes, as the image's unallocated
                // parts read without a backing: the chain of data ends above it.
                Driver::NullCo | Driver::NullAio if depth > 1 => break,
                d => {
                    return Err(Error::generic(format!(
                        "Driver '{}' cannot be used as a backing node here",
                        d.name()
                    )))
                }
            };
            specs.push((node.path(), format));
            cur = node
                .children
                .iter()
                .find(|e| e.role == ChildRole::Backing)
                .map(|e| e.child.clone());
        }
        let mut spec: Option<image::ChainSpec> = None;
        for (path, format) in specs.into_iter().rev() {
            spec = Some(image::ChainSpec {
                path,
                format,
                backing: spec.map(Box::new),
            });
        }
        spec.ok_or_else(|| not_found(name))
    }

    /// Parents of `name` (node parents and users), newest first as QEMU lists them, with the
    /// permissions each takes and shares.
    fn parents(&self, name: &str) -> Vec<Parent> {
        let mut out: Vec<(u64, Parent)> = Vec::new();
        for n in self.nodes.values() {
            for e in n.children.iter().filter(|e| e.child == name) {
                let (perm, shared) = self.edge_perms(n, e.role);
                out.push((
                    e.attached,
                    Parent {
                        desc: format!("node '{}'", n.name),
                        role: e.role.name().to_string(),
                        perm,
                        shared,
                    },
                ));
            }
        }
        for u in self.users.iter().filter(|u| u.node == name) {
            let (desc, role) = match &u.kind {
                UserKind::Export(_) | UserKind::JobBackend(_) => {
                    ("an unnamed block device".to_string(), "root".to_string())
                }
                UserKind::Device(d) => (format!("block device '{d}'"), "root".to_string()),
                UserKind::Job { id, kind, role } => (format!("{kind} job '{id}'"), role.clone()),
            };
            out.push((
                u.attached,
                Parent {
                    desc,
                    role,
                    perm: u.perm,
                    shared: u.shared,
                },
            ));
        }
        out.sort_by_key(|(s, _)| std::cmp::Reverse(*s));
        out.into_iter().map(|(_, p)| p).collect()
    }

    /// What the parents of a node take and share, all together.
    fn cumulative(&self, name: &str, depth: u32) -> (PermSet, PermSet) {
        let mut perm = PermSet::NONE;
        let mut shared = PermSet::ALL;
        if depth > 64 {
            return (perm, shared);
        }
        for n in self.nodes.values() {
            for e in n.children.iter().filter(|e| e.child == name) {
                let (p, s) = self.edge_perms_depth(n, e.role, depth + 1);
                perm = perm.union(p);
                shared = shared.intersect(s);
            }
        }
        for u in self.users.iter().filter(|u| u.node == name) {
            perm = perm.union(u.perm);
            shared = shared.intersect(u.shared);
        }
        (perm, shared)
    }

    /// Whether a node has a parent: a node that links it, or a user (export, device, job).
    fn has_parents(&self, name: &str) -> bool {
        self.users.iter().any(|u| u.node == name)
            || self
                .nodes
                .values()
                .any(|n| n.children.iter().any(|e| e.child == name))
    }

    fn edge_perms(&self, parent: &Node, role: ChildRole) -> (PermSet, PermSet) {
        self.edge_perms_depth(parent, role, 0)
    }

    /// The permissions a parent node takes on a child and what it shares, by driver and role,
    /// from what the parent's own parents take and share (QEMU's default rules: a format's
    /// file child is its storage, a qcow2 backing child is copied from, raw and filters pass
    /// their parents' needs through).
    fn edge_perms_depth(&self, parent: &Node, role: ChildRole, depth: u32) -> (PermSet, PermSet) {
        let (p, s) = self.cumulative(&parent.name, depth);
        self.edge_perms_given(parent, role, p, s)
    }

    /// What `parent` takes of its `role` child and shares, given what its own parents take
    /// (`p`) and share (`s`).
    fn edge_perms_given(
        &self,
        parent: &Node,
        role: ChildRole,
        p: PermSet,
        s: PermSet,
    ) -> (PermSet, PermSet) {
        use Perm::*;
        // A job's filter that no parent uses yet (it is being opened over its children,
        // before it takes its place above the job's node) asks nothing of the node it
        // filters but what its driver always does, and shares everything with it (measured
        // on QEMU 10.0: a backup's filter opens over a source that another parent writes,
        // and refuses it only once it is in place; a copy-on-read filter takes unchanged
        // writes alone). A backup's target is written from the start.
        if parent.driver.is_job_filter()
            && parent.driver.filtered_role() == Some(role)
            && !self.has_parents(&parent.name)
        {
            let always = match parent.driver {
                Driver::CopyOnRead => PermSet::of(&[WriteUnchanged]),
                _ => PermSet::NONE,
            };
            return (always, PermSet::ALL);
        }
        edge_perms_from(parent, role, p, s)
    }
}

/// What `parent` takes of its `role` child and shares, by its driver alone, given what its
/// own parents take (`p`) and share (`s`).
fn edge_perms_from(parent: &Node, role: ChildRole, p: PermSet, s: PermSet) -> (PermSet, PermSet) {
    {
        use Perm::*;
        let passthrough = PermSet::ALL;
        let unchanged = PermSet::of(&[ConsistentRead, WriteUnchanged]);
        let write_resize = PermSet::of(&[Write, Resize]);
        let filtered = (
            p.intersect(passthrough),
            s.intersect(passthrough).union(unchanged),
        );
        // Job filters, as measured on QEMU 10.0: what they share does not depend on their
        // parents.
        let shared_rw = PermSet::of(&[ConsistentRead, Write, WriteUnchanged]);
        match (parent.driver, role) {
            (Driver::MirrorTop, _) => return (p, shared_rw),
            (Driver::CommitActiveTop, _) => {
                return (p.minus(PermSet::of(&[ConsistentRead])), shared_rw)
            }
            (Driver::CommitTop, _) => return (PermSet::NONE, PermSet::ALL),
            (Driver::CopyOnRead, _) => return (p.union(unchanged), shared_rw),
            (Driver::CopyBeforeWrite, ChildRole::Target) => {
                return (PermSet::of(&[Write]), shared_rw)
            }
            (Driver::CopyBeforeWrite, _) => {
                return (p.union(PermSet::of(&[ConsistentRead])), unchanged)
            }
            _ => {}
        }
        match (parent.driver, role) {
            // Measured on QEMU 10.0: a quorum passes its parents' needs to every child and
            // shares only reads and unchanged writes, whatever its parents share.
            (Driver::Quorum, _) => (p, unchanged),
            (Driver::Qcow2, ChildRole::File) => {
                let mut perm = filtered.0;
                // Metadata: written whenever the node is, always read consistently; nobody
                // else may write or resize it. What the parents do not share is not shared
                // (not even unchanged data: measured against QEMU 10.0).
                if !parent.read_only {
                    perm = perm.union(write_resize);
                }
                perm = perm.union(PermSet::of(&[ConsistentRead]));
                let shared = s.intersect(passthrough).minus(write_resize);
                // Data.
                if perm.contains(WriteUnchanged) {
                    perm = perm.union(PermSet::of(&[Write]));
                }
                if perm.contains(Write) {
                    perm = perm.union(PermSet::of(&[Resize]));
                }
                (perm, shared)
            }
            (_, ChildRole::Backing) => {
                let mut shared = unchanged;
                if s.contains(Write) {
                    shared = shared.union(write_resize);
                }
                (p.intersect(PermSet::of(&[ConsistentRead])), shared)
            }
            // raw passes its parents' needs and sharing through as they are (measured on
            // QEMU 10.0: a mirror target's writer sharing only unchanged writes makes the
            // raw node share only those with its file).
            (Driver::Raw, ChildRole::File) => (p, s),
            (_, ChildRole::File | ChildRole::Target | ChildRole::Children(_)) => filtered,
        }
    }
}

impl BlockGraph {
    fn check_node_perms(&self, name: &str) -> Result<()> {
        let parents = self.parents(name);
        for a in &parents {
            for b in &parents {
                if std::ptr::eq(a, b) {
                    continue;
                }
                let conflict = b.perm.minus(a.shared);
                if !conflict.is_empty() {
                    return Err(Error::generic(format!(
                        "Permission conflict on node '{name}': permissions '{}' are both \
                         required by {} (uses node '{name}' as '{}' child) and unshared by {} \
                         (uses node '{name}' as '{}' child).",
                        conflict.words(),
                        b.desc,
                        b.role,
                        a.desc,
                        a.role
                    )));
                }
            }
        }
        Ok(())
    }

    /// Nodes with every parent before its children (QEMU refreshes permissions in this order).
    fn topological(&self) -> Vec<&str> {
        let children: HashSet<&str> = self
            .nodes
            .values()
            .flat_map(|n| n.children.iter().map(|e| e.child.as_str()))
            .collect();
        let mut roots: Vec<&Node> = self
            .nodes
            .values()
            .filter(|n| !children.contains(n.name.as_str()))
            .collect();
        roots.sort_by_key(|n| n.serial);
        self.walk_down(roots.iter().map(|n| n.name.as_str()))
    }

    /// `top` and the nodes below it, every parent before its children.
    fn topological_from(&self, top: &str) -> Vec<String> {
        self.walk_down(std::iter::once(top))
            .into_iter()
            .map(str::to_string)
            .collect()
    }

    /// Depth first from each of `tops` in turn, reversed: parents before children, and a
    /// node's children (with what lies below them) in the order they were attached, so that
    /// a refresh meets the first child's conflicts first (as QEMU's does).
    fn walk_down<'a>(&'a self, tops: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
        fn visit<'a>(
            g: &'a BlockGraph,
            n: &'a str,
            seen: &mut HashSet<&'a str>,
            out: &mut Vec<&'a str>,
        ) {
            if !seen.insert(n) {
                return;
            }
            if let Some(node) = g.nodes.get(n) {
                // QEMU keeps a node's children newest first and walks them in that order.
                let mut children: Vec<&'a Edge> = node.children.iter().collect();
                children.sort_by_key(|e| std::cmp::Reverse(e.attached));
                for e in children {
                    visit(g, &e.child, seen, out);
                }
            }
            out.push(n);
        }
        let (mut seen, mut out) = (HashSet::new(), Vec::new());
        for n in tops {
            visit(self, n, &mut seen, &mut out);
        }
        out.reverse();
        out
    }

    /// Reopens a node read-only for a snapshot's overlay, as QEMU tries to: a node a parent
    /// still writes (the overlay's own file, say) stays read-write, without an error.
    pub fn make_backing_read_only(&mut self, name: &str) -> Result<()> {
        let (perm, _) = self.cumulative(name, 0);
        if perm.contains(Perm::Write) || perm.contains(Perm::WriteUnchanged) {
            return Ok(());
        }
        self.set_read_only(name, true)
    }

    /// A node whose parents take write may not be read-only.
    fn check_writable(&self, name: &str) -> Result<()> {
        let (perm, _) = self.cumulative(name, 0);
        let writes = perm.contains(Perm::Write) || perm.contains(Perm::WriteUnchanged);
        let node = self.node(name)?;
        if writes && node.read_only {
            return Err(Error::generic("Block node is read-only"));
        }
        if let (true, Some(e)) = (writes, &node.write_error) {
            return Err(Error::generic(e.clone()));
        }
        Ok(())
    }

    /// QEMU's permission refresh over the whole graph: per node, parents first, the parents'
    /// conflicts, write on a read-only node, then a file node's locks on its file (taken from
    /// everyone else's, this process's other nodes and other programs alike). All or nothing:
    /// on an error every lock is as it was.
    fn check_all_perms(&mut self) -> Result<()> {
        let all = self.topological().into_iter().map(str::to_string).collect();
        self.refresh_perms(all)
    }

    /// The permission refresh of the nodes a change touched: `start` and every node below it,
    /// in a walk down from `start` alone (parents first, a node's children in the order they
    /// were attached), as QEMU refreshes only the subgraph of a changed node: a node below
    /// that another parent outside also reaches is met where the walk from `start` meets it.
    fn check_perms_from(&mut self, start: &str) -> Result<()> {
        let order = self.topological_from(start);
        self.refresh_perms(order)
    }

    fn refresh_perms(&mut self, order: Vec<String>) -> Result<()> {
        let mut prepared: Vec<String> = Vec::new();
        let mut result = Ok(());
        for name in order {
            if let Err(e) = self
                .check_node_perms(&name)
                .and_then(|()| self.check_writable(&name))
            {
                result = Err(e);
                break;
            }
            let (perm, shared) = self.cumulative(&name, 0);
            let filename = self.nodes.get(&name).map(|n| n.filename.clone());
            if let Some(lock) = self.locks.get_mut(&name) {
                if let Err(mut e) = lock.prepare(perm, shared) {
                    e.hint = Some(format!(
                        "Is another process using the image [{}]?",
                        filename.unwrap_or_default()
                    ));
                    result = Err(e);
                    break;
                }
                prepared.push(name);
            }
        }
        match result {
            Ok(()) => {
                // Only the nodes refreshed can have other parents' permissions now.
                for n in prepared {
                    let (perm, shared) = self.cumulative(&n, 0);
                    if let Some(l) = self.locks.get_mut(&n) {
                        l.commit(perm, shared);
                    }
                }
                Ok(())
            }
            Err(e) => {
                for n in prepared {
                    if let Some(l) = self.locks.get_mut(&n) {
                        l.abort();
                    }
                }
                Err(e)
            }
        }
    }

    /// Every file node's locks to what its parents take and share now (after a change that
    /// can only give permissions up, or one that was checked); the locks of nodes that are
    /// gone are released.
    fn commit_locks(&mut self) {
        let names: Vec<String> = self.locks.keys().cloned().collect();
        for n in names {
            if !self.nodes.contains_key(&n) {
                self.locks.remove(&n);
                continue;
            }
            let (perm, shared) = self.cumulative(&n, 0);
            if let Some(l) = self.locks.get_mut(&n) {
                l.commit(perm, shared);
            }
        }
    }

    /// Registers a user of a node (an export, a device, a job) with the permissions it takes
    /// and shares; refused in QEMU's words on a conflict.
    pub fn attach_user(
        &mut self,
        node: &str,
        kind: UserKind,
        perm: PermSet,
        shared: PermSet,
    ) -> Result<UserId> {
        self.node(node)?;
        if perm.contains(Perm::Write) && self.node(node)?.read_only {
            return Err(Error::generic("Block node is read-only"));
        }
        let id = UserId(self.next_user);
        self.next_user += 1;
        self.next_attach += 1;
        // An export attaches sharing everything, then stops sharing what it must (QEMU's
        // NBD export forbids resizing only once it is in place): a conflict shows in the
        // words of the first step that meets it. (The machine asks for the NBD server in
        // between: it attaches sharing everything and then calls
        // [`BlockGraph::set_user_shared`].)
        let steps = match kind {
            UserKind::Export(_) if shared != PermSet::ALL => vec![PermSet::ALL, shared],
            _ => vec![shared],
        };
        self.users.push(User {
            id,
            attached: self.next_attach,
            kind,
            node: node.to_string(),
            perm,
            shared: steps[0],
        });
        for s in steps {
            if let Some(u) = self.users.iter_mut().find(|u| u.id == id) {
                u.shared = s;
            }
            if let Err(e) = self.check_perms_from(node) {
                self.users.retain(|u| u.id != id);
                self.commit_locks();
                return Err(e);
            }
        }
        Ok(id)
    }

    /// Changes what a user shares with the node's other parents (QEMU's NBD export stops
    /// sharing resizes once it is in place); on a conflict, it shares what it did.
    pub fn set_user_shared(&mut self, id: UserId, shared: PermSet) -> Result<()> {
        let Some(u) = self.users.iter_mut().find(|u| u.id == id) else {
            return Ok(());
        };
        let before = std::mem::replace(&mut u.shared, shared);
        let node = u.node.clone();
        if let Err(e) = self.check_perms_from(&node) {
            if let Some(u) = self.users.iter_mut().find(|u| u.id == id) {
                u.shared = before;
            }
            self.commit_locks();
            return Err(e);
        }
        Ok(())
    }

    /// Removes a user. A node the monitor does not own (a snapshot's overlay) that is left
    /// with no parent and no user goes away with its implicit children, as in QEMU.
    pub fn detach_user(&mut self, id: UserId) {
        let Some(pos) = self.users.iter().position(|u| u.id == id) else {
            return;
        };
        let node = self.users.remove(pos).node;
        let orphan = self.nodes.get(&node).is_some_and(|n| !n.monitor_owned)
            && !self.has_parent_node(&node)
            && self.users.iter().all(|u| u.node != node);
        if orphan {
            self.remove_unreferenced(&node);
        }
        self.commit_locks();
    }

    /// Moves every parent of `from` to `to`, as QEMU replaces a node (a snapshot's overlay,
    /// a mirror's or active commit's pivot): its users but its jobs, and the links of its
    /// parent nodes but `to`'s own and those below `to`.
    pub fn move_users(&mut self, from: &str, to: &str) -> Result<()> {
        self.move_users_inner(from, to, false)
    }

    /// [`BlockGraph::move_users`] as a snapshot puts its overlay in its node's place, or an
    /// undone one the node back in the overlay's: the block backends jobs opened there (a
    /// mirror's writer on its target) go with the rest, as QEMU moves them (measured on
    /// qemu-storage-daemon 10.0.2); the jobs' own links stay.
    pub fn move_all_users(&mut self, from: &str, to: &str) -> Result<()> {
        self.move_users_inner(from, to, true)
    }

    fn move_users_inner(&mut self, from: &str, to: &str, backends: bool) -> Result<()> {
        self.node(to)?;
        let saved = self.users.clone();
        let moved = self.move_users_unchecked(from, to, backends);
        if let Err(e) = self.check_perms_from(to) {
            *self.users = saved;
            self.unmove_links(moved, from);
            return Err(e);
        }
        Ok(())
    }

    /// The node a user is attached to now (a job's filter, or the node a job moved its
    /// parents to, once it is over).
    pub fn user_node(&self, id: UserId) -> Option<String> {
        self.users
            .iter()
            .find(|u| u.id == id)
            .map(|u| u.node.clone())
    }

    /// Moves one user to another node that gives it the same data (a filter's child as the
    /// filter goes), without a permission check.
    pub fn move_user(&mut self, id: UserId, to: &str) {
        if let Some(u) = self.users.iter_mut().find(|u| u.id == id) {
            u.node = to.to_string();
        }
        self.commit_locks();
    }

    /// What [`BlockGraph::move_users`] moves, without the permission check: the parent
    /// links it moved.
    /// A link moved is attached anew: the newest parent of `to`, and its parent's newest
    /// child (as qemu-storage-daemon 10.0.2 lists them), in the order they were attached.
    fn move_users_unchecked(
        &mut self,
        from: &str,
        to: &str,
        backends: bool,
    ) -> Vec<(String, ChildRole, u64)> {
        // (attached before, user index or (node, child index)).
        let mut links: Vec<(u64, std::result::Result<usize, (String, usize)>)> = Vec::new();
        for (i, u) in self.users.iter().enumerate() {
            let moves = match u.kind {
                UserKind::Job { .. } => false,
                UserKind::JobBackend(_) => backends,
                _ => true,
            };
            if u.node == from && moves {
                links.push((u.attached, Ok(i)));
            }
        }
        let below_to = self.descendants(to);
        for n in self.nodes.values() {
            if n.name == to || below_to.contains(&n.name) {
                continue;
            }
            for (i, e) in n.children.iter().enumerate() {
                if e.child == from {
                    links.push((e.attached, Err((n.name.clone(), i))));
                }
            }
        }
        links.sort_by_key(|(at, _)| *at);
        let mut moved = Vec::new();
        for (before, link) in links {
            self.next_attach += 1;
            let at = self.next_attach;
            match link {
                Ok(i) => {
                    if let Some(u) = self.users.get_mut(i) {
                        u.node = to.to_string();
                        u.attached = at;
                    }
                }
                Err((n, i)) => {
                    if let Some(e) = self.nodes.get_mut(&n).and_then(|n| n.children.get_mut(i)) {
                        e.child = to.to_string();
                        e.attached = at;
                        moved.push((n, e.role, before));
                    }
                }
            }
        }
        moved
    }

    /// Refuses to make `child` a `role` child of `parent` where `parent` is `child` or lies
    /// below it (through any kind of child), in QEMU's words: the graph never holds a cycle,
    /// so every walk down from a node ends.
    pub fn check_no_cycle(&self, parent: &str, child: &str, role: ChildRole) -> Result<()> {
        if parent == child || self.descendants(child).iter().any(|d| d == parent) {
            return Err(Error::generic(format!(
                "Making '{child}' a {} child of '{parent}' would create a cycle",
                role.name()
            )));
        }
        Ok(())
    }

    /// The jobs in the order a drain of the whole graph pauses them: QEMU drains the nodes in
    /// the order they were made, and a job pauses as the first node it is linked to is
    /// drained (measured on qemu-storage-daemon 10.0.2).
    pub fn jobs_by_first_node(&self) -> Vec<String> {
        let mut first: Vec<(u64, String)> = Vec::new();
        for u in self.users.iter() {
            let UserKind::Job { id, .. } = &u.kind else {
                continue;
            };
            let Some(serial) = self.nodes.get(&u.node).map(|n| n.serial) else {
                continue;
            };
            match first.iter_mut().find(|(_, j)| j == id) {
                Some(f) => f.0 = f.0.min(serial),
                None => first.push((serial, id.clone())),
            }
        }
        first.sort();
        first.into_iter().map(|(_, id)| id).collect()
    }

    /// The jobs a drain of `name` alone reaches (QEMU drains a node's parents with it, up
    /// to the block backends and jobs on them): those linked to the node or to a node above
    /// it, oldest link first.
    pub fn jobs_drained_with(&self, name: &str) -> Vec<String> {
        let mut nodes = vec![name.to_string()];
        let mut i = 0;
        while i < nodes.len() && nodes.len() < 4096 {
            let n = nodes[i].clone();
            for p in self.nodes.values() {
                if p.children.iter().any(|e| e.child == n) && !nodes.contains(&p.name) {
                    nodes.push(p.name.clone());
                }
            }
            i += 1;
        }
        let mut ids: Vec<String> = Vec::new();
        for u in self.users.iter() {
            // A block backend a job opened is no link of the job's: draining its node does
            // not pause the job.
            let UserKind::Job { id, .. } = &u.kind else {
                continue;
            };
            if nodes.contains(&u.node) && !ids.contains(id) {
                ids.push(id.clone());
            }
        }
        ids
    }

    /// Puts back the parent links [`BlockGraph::move_users_unchecked`] moved from `from`,
    /// as they were.
    fn unmove_links(&mut self, moved: Vec<(String, ChildRole, u64)>, from: &str) {
        for (n, role, before) in moved {
            if let Some(node) = self.nodes.get_mut(&n) {
                for e in node.children.iter_mut().filter(|e| e.role == role) {
                    e.child = from.to_string();
                    e.attached = before;
                }
            }
        }
    }

    /// Every node below `name` (its children, theirs, …).
    fn descendants(&self, name: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let mut queue = vec![name.to_string()];
        while let Some(n) = queue.pop() {
            for e in self
                .nodes
                .get(&n)
                .map(|x| x.children.as_slice())
                .unwrap_or(&[])
            {
                if !out.contains(&e.child) && out.len() < 4096 {
                    out.push(e.child.clone());
                    queue.push(e.child.clone());
                }
            }
        }
        out
    }

    /// Users of a node: (kind, perm).
    /// For each device with a backend in the graph, the newest node it is on (one pass).
    pub fn device_nodes(&self) -> std::collections::HashMap<&str, &str> {
        let mut out: std::collections::HashMap<&str, &Node> = std::collections::HashMap::new();
        for u in self.users.iter() {
            let (UserKind::Device(d), Some(n)) = (&u.kind, self.nodes.get(&u.node)) else {
                continue;
            };
            let e = out.entry(d.as_str()).or_insert(n);
            if n.serial > e.serial {
                *e = n;
            }
        }
        out.into_iter().map(|(d, n)| (d, n.name.as_str())).collect()
    }

    /// The newest node that has a user of this kind.
    pub fn node_with_user(&self, kind: &UserKind) -> Option<String> {
        self.users
            .iter()
            .filter(|u| u.kind == *kind)
            .filter_map(|u| self.nodes.get(&u.node))
            .max_by_key(|n| n.serial)
            .map(|n| n.name.clone())
    }

    pub fn users_of(&self, node: &str) -> Vec<UserKind> {
        self.users
            .iter()
            .filter(|u| u.node == node)
            .map(|u| u.kind.clone())
            .collect()
    }

    /// Blocks operations on a node for a job: `reason` is QEMU's ("block device is in use by
    /// block job: stream").
    pub fn block(&mut self, node: &str, owner: &str, reason: &str) {
        if let Some(n) = self.nodes.get_mut(node) {
            n.blockers.push((owner.to_string(), reason.to_string()));
        }
    }

    pub fn unblock_all(&mut self, owner: &str) {
        for n in self.nodes.values_mut() {
            n.blockers.retain(|(o, _)| o != owner);
        }
    }

    /// The first blocker's error, if the node is blocked.
    /// A node is blocked by the jobs using it and, for most operations, by being some node's
    /// backing file ("node is used as backing hd of 'top'").
    pub fn check_blocked(&self, node: &str) -> Result<()> {
        self.check_job_blocked(node)?;
        let overlay = self.nodes.values().find(|n| {
            n.children
                .iter()
                .any(|e| e.role == ChildRole::Backing && e.child == node)
        });
        match overlay {
            Some(o) => Err(Error::generic(format!(
                "Node '{node}' is busy: node is used as backing hd of '{}'",
                o.name
            ))),
            None => Ok(()),
        }
    }

    /// Only the jobs' blockers (for operations QEMU allows on backing files, such as being a
    /// backup's source).
    pub fn check_job_blocked(&self, node: &str) -> Result<()> {
        let n = self.node(node)?;
        match n.blockers.first() {
            Some((_, reason)) => Err(Error::generic(format!("Node '{node}' is busy: {reason}"))),
            None => Ok(()),
        }
    }

    /// The words of commands that take only a node name (`block_resize`,
    /// `blockdev-snapshot-sync` with `node-name`, …) for a node that does not exist.
    pub fn require_node(&self, name: &str) -> Result<()> {
        if self.nodes.contains_key(name) {
            Ok(())
        } else {
            Err(Error::generic(format!(
                "Cannot find device='' nor node-name='{name}'"
            )))
        }
    }

    /// `blockdev-snapshot-sync` (mode absolute-paths, format qcow2): creates a qcow2 overlay
    /// file whose backing file is the node's, opens it as a node above the node and moves the
    /// node's users onto it. Returns the overlay's node name. As in QEMU, an overlay nobody
    /// uses does not stay in the graph (only its file remains).
    pub fn snapshot_sync(
        &mut self,
        node: &str,
        overlay_file: &Path,
        overlay_name: Option<&str>,
    ) -> Result<Option<String>> {
        self.require_node(node)?;
        let name = overlay_name.ok_or_else(|| Error::generic("New overlay node-name missing"))?;
        self.snapshot_overlay(node, (overlay_file, Some(name)), true)
    }

    /// [`BlockGraph::snapshot_sync`] of a drive's node without an overlay name: the overlay
    /// gets a generated one, as QEMU names it.
    pub fn snapshot_sync_unnamed(&mut self, node: &str, file: &Path) -> Result<Option<String>> {
        self.snapshot_overlay(node, (file, None), true)
    }

    /// A snapshot onto an image that exists already (mode `existing`): it is opened, without
    /// its own backing chain, over `node`, not created. `overlay_name`: as
    /// [`BlockGraph::snapshot_sync`] (`None`: a generated one, for a drive's node).
    pub fn snapshot_onto_existing(
        &mut self,
        node: &str,
        overlay_file: &Path,
        overlay_name: Option<&str>,
    ) -> Result<Option<String>> {
        self.snapshot_overlay(node, (overlay_file, overlay_name), false)
    }

    fn snapshot_overlay(
        &mut self,
        node: &str,
        overlay: (&Path, Option<&str>),
        create: bool,
    ) -> Result<Option<String>> {
        let (overlay_file, overlay_name) = overlay;
        self.require_node(node)?;
        if overlay_name.is_some_and(|n| self.nodes.contains_key(n)) {
            return Err(Error::generic("New overlay node-name already in use"));
        }
        self.check_blocked(node)?;
        let n = self.node(node)?;
        let (backing_file, driver, read_only) = (n.filename.clone(), n.driver, n.read_only);
        let null = matches!(driver, Driver::NullCo | Driver::NullAio);
        if !null && !matches!(driver, Driver::Qcow2 | Driver::Raw | Driver::File) {
            return Err(Error::generic(format!(
                "Driver '{}' cannot be snapshotted here",
                driver.name()
            )));
        }
        if create {
            // The overlay takes the node's size and records the node's file name and driver
            // (a `file` node's overlay says so: measured against qemu-storage-daemon 10.0.2),
            // without opening that file again from the overlay's directory.
            let size = self.size(node)?;
            image::create_overlay_over(overlay_file, &backing_file, driver.name(), size)?;
            // QEMU opens the new image to write it and the backing file to read its size,
            // under three generated names; the overlay's own file node takes a fourth when
            // it opens (measured against qemu-storage-daemon 10.0.2: four in all, whether
            // the overlay stays or not, in a transaction or not).
            for _ in 0..3 {
                self.generate_name();
            }
        }
        let opts = BlockdevOptions::format(
            Driver::Qcow2,
            BlockdevRef::Inline(Box::new(BlockdevOptions::file(overlay_file))),
        )
        .backing(Some(BlockdevRef::Node(node.to_string())))
        // The overlay opens read-only when the node it covers is (a backing file already).
        .read_only(read_only);
        // The overlay takes the node's place under every parent, nodes as well as users.
        let in_use = self.users.iter().any(|u| u.node == node) || self.has_parent_node(node);
        if !in_use {
            // The overlay goes once opened (at once, or when the transaction ends), but
            // the node was reopened read-only for it.
            // (An overlay over a null node cannot be opened here: none is held.)
            if (create && self.held.is_none()) || null {
                // Opened and closed at once: its file node's name is used up all the same.
                self.generate_name();
            } else {
                let o = match overlay_name {
                    Some(n) if self.held.is_some() => self.add(&opts.clone().named(n))?,
                    _ => self.add_implicit(&opts)?,
                };
                if let Some(o) = self.nodes.get_mut(&o) {
                    o.monitor_owned = false;
                }
                match &mut self.held {
                    Some(h) => h.push(o),
                    None => {
                        self.remove_unreferenced(&o);
                    }
                }
            }
            self.make_backing_read_only(node)?;
            return Ok(None);
        }
        let name = match overlay_name {
            Some(n) => self.add(&opts.named(n))?,
            None => self.add_implicit(&opts)?,
        };
        if let Some(o) = self.nodes.get_mut(&name) {
            o.monitor_owned = false;
        }
        if let Err(e) = self.move_all_users(node, &name) {
            self.remove_unreferenced(&name);
            return Err(e);
        }
        // The old image is a backing file now: read-only, as QEMU reopens it.
        self.make_backing_read_only(node)?;
        Ok(Some(name))
    }

    /// A transaction starts: overlays of snapshots of unused nodes stay open until
    /// [`BlockGraph::release_overlays`], as QEMU holds them until the transaction ends.
    pub fn hold_overlays(&mut self) {
        self.held = Some(Vec::new());
    }

    /// The transaction ended: the overlays it held go.
    pub fn release_overlays(&mut self) {
        for o in self.held.take().unwrap_or_default().into_iter().rev() {
            if !self.has_parent_node(&o) && !self.users.iter().any(|u| u.node == o) {
                self.remove_unreferenced(&o);
            }
        }
    }

    /// Whether a node has any parent node (is not a root).
    /// Whether `node` is a root as QEMU's mirror and commit ask: no node above it and no
    /// block job's link on it (a device's, an export's or a job's block backend is no parent
    /// of this kind).
    pub fn is_root(&self, node: &str) -> bool {
        !self.has_parent_node(node)
            && !self
                .users
                .iter()
                .any(|u| u.node == node && matches!(u.kind, UserKind::Job { .. }))
    }

    /// Whether `blockdev-snapshot` finds `node` "already in use" as an overlay (found against
    /// qemu-storage-daemon 10.0.2): when what its parents and users take on it includes
    /// consistent reads (an export or a device on it or on a node above it through a data
    /// link, a job's filter that reads it, a commit's writer on its base); a node only
    /// written (a mirror's or backup's target, an active commit's base) or not read through
    /// (the backing of an overlay nobody reads) is not.
    pub fn in_use_as_overlay(&self, node: &str) -> bool {
        self.cumulative(node, 0).0.contains(Perm::ConsistentRead)
    }

    pub fn has_parent_node(&self, node: &str) -> bool {
        self.nodes
            .values()
            .any(|n| n.children.iter().any(|e| e.child == node))
    }

    /// `blockdev-del` with QEMU's checks in QEMU's order.
    pub fn delete(&mut self, name: &str) -> Result<()> {
        let node = self.nodes.get(name).ok_or_else(|| {
            Error::generic(format!("Failed to find node with node-name='{name}'"))
        })?;
        // Exports, devices and a job's target have a block backend on the node (QEMU checks
        // those first); a job's other links only block the node.
        let has_backend = |u: &User| match &u.kind {
            UserKind::Job { role, .. } => role == "target",
            _ => true,
        };
        if self.users.iter().any(|u| u.node == name && has_backend(u)) {
            return Err(Error::generic(format!("Node {name} is in use")));
        }
        self.check_blocked(name)?;
        if self.users.iter().any(|u| u.node == name) {
            return Err(Error::generic(format!("Node {name} is in use")));
        }
        if !node.monitor_owned {
            return Err(Error::generic(format!(
                "Node {name} is not owned by the monitor"
            )));
        }
        if self.has_parent_node(name) {
            return Err(Error::generic(format!("Block device {name} is in use")));
        }
        // Closing a node drains the graph once.
        self.drains += self.remove_unreferenced(name);
        Ok(())
    }

    /// Drops a node no user and no parent holds any more, with its implicit children (what a
    /// command that opened a node undoes when it fails later).
    pub fn discard_unused(&mut self, name: &str) {
        if self.has_parent_node(name) || self.users.iter().any(|u| u.node == name) {
            return;
        }
        self.remove_unreferenced(name);
    }

    /// Removes a node and then every implicit child no longer referenced.
    /// Returns how many nodes went.
    fn remove_unreferenced(&mut self, name: &str) -> u32 {
        let mut queue = vec![name.to_string()];
        let mut removed = 0;
        while let Some(n) = queue.pop() {
            self.store_bitmaps_quietly(&n);
            if let Some(node) = self.nodes.remove(&n) {
                removed += 1;
                for e in node.children {
                    let still_used = self.has_parent_node(&e.child)
                        || self.users.iter().any(|u| u.node == e.child);
                    let implicit = self.nodes.get(&e.child).is_some_and(|c| !c.monitor_owned);
                    if !still_used && implicit {
                        queue.push(e.child);
                    }
                }
            }
        }
        self.commit_locks();
        removed
    }

    pub fn driver(&self, name: &str) -> Result<Driver> {
        Ok(self.node(name)?.driver)
    }

    pub fn is_read_only(&self, name: &str) -> Result<bool> {
        Ok(self.node(name)?.read_only)
    }

    pub fn filename(&self, name: &str) -> Result<String> {
        Ok(self.node(name)?.filename.clone())
    }

    /// A node's child in a role.
    pub fn child(&self, name: &str, role: ChildRole) -> Option<String> {
        self.child_of(name, role).map(str::to_string)
    }

    /// [`BlockGraph::child`], borrowed.
    fn child_of(&self, name: &str, role: ChildRole) -> Option<&str> {
        child_in(self.nodes.get(name)?, role)
    }

    /// The child holding a node's data (`query-blockstats`' `parent`): a filter's filtered
    /// child, a format node's file; none for protocol and null nodes.
    pub fn data_child(&self, name: &str) -> Option<String> {
        let role = match self.nodes.get(name)?.driver {
            Driver::Raw | Driver::Qcow2 => ChildRole::File,
            Driver::Quorum => return self.quorum_only_child(name),
            d => d.filtered_role()?,
        };
        self.child(name, role)
    }

    /// The backing chain from `name` down: `name`, its backing, its backing's backing, …
    /// (the filters jobs put in between left out, as QEMU skips them).
    pub fn backing_chain(&self, name: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut cur = Some(name.to_string());
        while let Some(n) = cur {
            if out.len() > 256 || !self.nodes.contains_key(&n) {
                break;
            }
            cur = self
                .child(&n, ChildRole::Backing)
                .map(|b| self.below_job_filters(&b));
            out.push(n);
        }
        out
    }

    /// `name` and the layers below it, filters included (each node's filtered or backing
    /// child in turn).
    pub fn layers_below(&self, name: &str) -> Vec<String> {
        let mut out = vec![name.to_string()];
        while out.len() < 256 {
            let cur = &out[out.len() - 1];
            let Some(n) = self.nodes.get(cur) else { break };
            let role = n.driver.filtered_role().unwrap_or(ChildRole::Backing);
            match self.child(cur, role) {
                Some(c) => out.push(c),
                None => break,
            }
        }
        out
    }

    /// `name`, or the node below the job filters stacked on it.
    pub fn below_job_filters(&self, name: &str) -> String {
        self.below_filters(name, false).to_string()
    }

    /// `name`, or the node below the job filters stacked on it (only those a job put in
    /// without a name, with `implicit_only`).
    fn below_filters<'a>(&'a self, name: &'a str, implicit_only: bool) -> &'a str {
        let mut cur = name;
        for _ in 0..64 {
            let Some(n) = self.nodes.get(cur) else { break };
            if !n.driver.is_job_filter() || (implicit_only && !n.implicit) {
                break;
            }
            match n.driver.filtered_role().and_then(|r| self.child_of(cur, r)) {
                Some(c) => cur = c,
                None => break,
            }
        }
        cur
    }

    /// Whether `name` is a filter a job put in without a name from the client.
    pub fn is_implicit(&self, name: &str) -> bool {
        self.nodes.get(name).is_some_and(|n| n.implicit)
    }

    /// `name`, or the node below the implicit job filters on it (what `query-block` shows of a
    /// drive whose node a job filters).
    pub fn below_implicit_filters(&self, name: &str) -> String {
        self.below_implicit(name).to_string()
    }

    /// [`BlockGraph::below_implicit_filters`], borrowed.
    pub fn below_implicit<'a>(&'a self, name: &'a str) -> &'a str {
        self.below_filters(name, true)
    }

    /// Puts a job's filter driver above `below`: the filter opens over its children, then
    /// takes the place of `below` (see [`BlockGraph::open_job_filter`] and
    /// [`BlockGraph::place_job_filter`]). The filter's name, generated unless given.
    pub fn insert_job_filter(
        &mut self,
        below: &str,
        driver: Driver,
        name: Option<&str>,
        target: Option<&str>,
    ) -> Result<String> {
        let f = self.open_job_filter(below, driver, name, target)?;
        self.place_job_filter(&f, below)?;
        Ok(f)
    }

    /// Opens a job's filter driver over `below` (and a backup's `target`) as a node no
    /// parent uses yet: its children's permissions are checked as it takes them. On an
    /// error nothing is left of it. The filter's name, generated unless given.
    pub fn open_job_filter(
        &mut self,
        below: &str,
        driver: Driver,
        name: Option<&str>,
        target: Option<&str>,
    ) -> Result<String> {
        let role = driver
            .filtered_role()
            .ok_or_else(|| Error::generic("not a filter"))?;
        let child = self.node(below)?;
        let (filename, data, read_only) =
            (child.filename.clone(), child.data.clone(), child.read_only);
        if let Some(n) = name {
            self.check_new_node_name(n)?;
        }
        if let Some(t) = target {
            self.node(t)?;
        }
        let implicit = name.is_none();
        let name = match name {
            Some(n) => n.to_string(),
            None => self.generate_name(),
        };
        let mut children = vec![self.edge(role, below)];
        if let Some(t) = target {
            children.push(self.edge(ChildRole::Target, t));
        }
        let mut o = BlockdevOptions::new(driver);
        o.read_only = read_only;
        let mut added = Vec::new();
        self.put_node(&name, &o, false, filename, children, data, &mut added);
        if let Some(n) = self.nodes.get_mut(&name) {
            n.implicit = implicit;
        }
        if let Err(e) = self.check_perms_from(&name) {
            self.nodes.remove(&name);
            self.commit_locks();
            return Err(e);
        }
        Ok(name)
    }

    /// Puts an opened job filter in the place of `below`: the parents of `below` move over
    /// and the permissions are checked at once, as QEMU replaces a node. On an error the
    /// parents are back and the filter is gone.
    pub fn place_job_filter(&mut self, filter: &str, below: &str) -> Result<()> {
        let users = self.users.clone();
        let moved = self.move_users_unchecked(below, filter, false);
        if let Err(e) = self.check_perms_from(filter) {
            *self.users = users;
            self.unmove_links(moved, below);
            self.nodes.remove(filter);
            self.commit_locks();
            return Err(e);
        }
        Ok(())
    }

    /// Takes a job's filter out: its parents go to `to` (the node below it, or where a
    /// mirror or active commit pivots), and the filter goes.
    pub fn remove_job_filter(&mut self, filter: &str, to: &str) {
        if self.nodes.get(filter).is_none() || self.nodes.get(to).is_none() {
            return;
        }
        if self.move_users(filter, to).is_err() {
            // The parents had what they need through the filter: they keep it.
            self.move_users_unchecked(filter, to, false);
        }
        self.nodes.remove(filter);
        self.commit_locks();
    }

    /// The node whose backing child is `name`, if any.
    pub fn overlay_of(&self, name: &str) -> Option<String> {
        self.nodes
            .values()
            .find(|n| {
                n.children
                    .iter()
                    .any(|e| e.role == ChildRole::Backing && e.child == name)
            })
            .map(|n| n.name.clone())
    }

    /// Whether the data at `offset` is the node's own (allocated in it, not left to its
    /// backing), and for how many bytes from `offset` that holds (at most `max`, at least
    /// one), as QEMU asks it of a chain (without looking for zeroes). A raw image holds its
    /// whole disk in one run, its file's holes too (measured on qemu-storage-daemon 10.0.2:
    /// a stream over a sparse raw file goes in whole pieces). A null node holds its whole
    /// disk when it reads as zeroes (`read-zeroes`) and nothing otherwise; past a node's end
    /// nothing is its own.
    pub fn allocated_here(&self, name: &str, offset: u64, max: u64) -> Result<(bool, u64)> {
        let max = max.max(1);
        let node = self.node(name)?;
        match &node.data {
            Data::Image(i) if matches!(node.driver, Driver::Raw | Driver::File) => {
                let size = i
                    .read()
                    .map_err(|_| Error::generic("image lock poisoned"))?
                    .size();
                Ok((offset < size, max))
            }
            Data::Image(i) => {
                let g = i
                    .read()
                    .map_err(|_| Error::generic("image lock poisoned"))?;
                let size = g.size();
                if offset >= size {
                    return Ok((false, max));
                }
                let (here, n) = g.allocated(offset, max.min(size - offset))?;
                Ok((here, n.max(1).min(max)))
            }
            Data::Null(size, zeroes) => Ok((*zeroes && offset < *size, max)),
            Data::Quorum(_) => Err(Error::generic(format!("Node '{name}' has no image file"))),
        }
    }

    /// The open image of a raw/qcow2/file node.
    pub fn image(&self, name: &str) -> Result<SharedImage> {
        match &self.node(name)?.data {
            Data::Image(i) => Ok(i.clone()),
            Data::Null(..) | Data::Quorum(_) => {
                Err(Error::generic(format!("Node '{name}' has no image file")))
            }
        }
    }

    /// The data behind a node, for exports and jobs.
    pub fn backend(&self, name: &str) -> Result<Arc<dyn ExportBackend>> {
        let node = self.node(name)?;
        if node.passthrough {
            // A raw node's writes mark its own bitmaps, then go on through its file.
            if let Some(c) = self.passes_to(node) {
                return Ok(Arc::new(crate::bitmap::Marking {
                    inner: self.backend(c)?,
                    bitmaps: Some(node.bitmaps.clone()),
                    written: node.written.clone(),
                }));
            }
        }
        if let Some(role) = node.driver.filtered_role() {
            // A filter's I/O is its child's (and marks the child's bitmaps); it counts where
            // its writes end.
            if let Some(c) = self.child(name, role) {
                let marking = Arc::new(crate::bitmap::Marking {
                    inner: self.backend(&c)?,
                    bitmaps: None,
                    written: node.written.clone(),
                });
                // A mirror's filter notes what is written through it for its job.
                return Ok(match &node.mirror_writes {
                    Some(w) => Arc::new(crate::mirror_writes::Tracking {
                        inner: marking,
                        writes: w.clone(),
                    }),
                    None => marking,
                });
            }
        }
        Ok(match &node.data {
            Data::Image(i) => Arc::new(Tracked {
                image: i.clone(),
                bitmaps: self.node(name)?.bitmaps.clone(),
                written: node.written.clone(),
                growth: self.growth_of(name),
            }),
            // A null node drops what is written, but counts where the writes end and marks
            // its bitmaps as any node does.
            Data::Null(size, _) => Arc::new(crate::bitmap::Marking {
                inner: Arc::new(NullBackend(*size)),
                bitmaps: Some(node.bitmaps.clone()),
                written: node.written.clone(),
            }),
            Data::Quorum(q) => q.clone(),
        })
    }

    /// Whether a node's data is a null node's that does not say it reads as zeroes (no
    /// `read-zeroes`): a mirror finds nothing to copy from it.
    pub fn is_unzeroed_null(&self, name: &str) -> bool {
        matches!(
            self.nodes.get(name).map(|n| &n.data),
            Some(Data::Null(_, false))
        )
    }

    /// The virtual size of a node's data.
    pub fn size(&self, name: &str) -> Result<u64> {
        if let Some(length) = self.counted_length(self.data_node(name)) {
            return Ok(length);
        }
        Ok(self.backend(name)?.size())
    }

    /// Changes a node's backing child (and the image data's chain) without touching any file;
    /// callers rewrite the header where QEMU would.
    pub fn set_backing(&mut self, name: &str, backing: Option<&str>) -> Result<()> {
        if let Some(b) = backing {
            self.node(b)?;
            self.check_no_cycle(name, b, ChildRole::Backing)?;
        }
        let old = self.child(name, ChildRole::Backing);
        let edge = backing.map(|b| self.edge(ChildRole::Backing, b));
        let node = self.nodes.get_mut(name).ok_or_else(|| not_found(name))?;
        let saved = node.children.clone();
        node.children.retain(|e| e.role != ChildRole::Backing);
        node.children.extend(edge);
        if let Err(e) = self.reopen(name) {
            // The node keeps the backing it had when its image does not open over the new one.
            if let Some(n) = self.nodes.get_mut(name) {
                n.children = saved;
            }
            let _ = self.reopen(name);
            return Err(e);
        }
        if let Some(old) = old {
            let implicit = self.nodes.get(&old).is_some_and(|n| !n.monitor_owned);
            if implicit && !self.has_parent_node(&old) && self.users.iter().all(|u| u.node != old) {
                self.remove_unreferenced(&old);
            }
        }
        self.commit_locks();
        Ok(())
    }

    /// Re-opens a format node's image from the file (after its header or size changed).
    pub fn reopen(&mut self, name: &str) -> Result<()> {
        self.edit_closed(name, |_| Ok(()))
    }

    /// Runs `edit` on a node's file while its image is flushed and held (no write reaches it,
    /// not even an export's), then opens the image again from the file.
    pub(crate) fn edit_closed<T>(
        &mut self,
        name: &str,
        edit: impl FnOnce(&Path) -> Result<T>,
    ) -> Result<T> {
        let node = self.node(name)?;
        let format = node.driver.format();
        let path = node.path();
        let writable = !node.read_only;
        let Data::Image(shared) = &node.data else {
            return edit(&path);
        };
        if node.driver.filtered_role().is_some() || node.passthrough {
            // A filter's data is its child's, opened by the child (a pass-through raw
            // node's too).
            return edit(&path);
        }
        let shared = shared.clone();
        let spec = match (format, self.child(name, ChildRole::Backing)) {
            // A null backing reads as zeroes: as no backing at all.
            (Some(_), Some(b))
                if matches!(self.node(&b)?.driver, Driver::NullCo | Driver::NullAio) =>
            {
                None
            }
            (Some(_), Some(b)) => Some(self.chain_spec(&b)?),
            _ => None,
        };
        let mut guard = shared
            .write()
            .map_err(|_| Error::generic("image lock poisoned"))?;
        guard.flush()?;
        let r = edit(&path);
        let img = match format {
            Some(f) => {
                let mark = match self.child(name, ChildRole::File) {
                    Some(c) => self.storage_mark(&c),
                    None => WriteMark::new(),
                };
                Image::open_marked(&path, f, writable, spec.as_ref(), mark)?
            }
            None => {
                let mark = self.node(name)?.written.clone();
                Image::open_marked(&path, ImageFormat::Raw, writable, None, mark)?
            }
        };
        *guard = img;
        drop(guard);
        self.mark_bitmaps_in_use(name);
        r
    }

    /// Switches a node between read-only and read-write (re-opening its data).
    pub fn set_read_only(&mut self, name: &str, read_only: bool) -> Result<()> {
        let node = self.nodes.get_mut(name).ok_or_else(|| not_found(name))?;
        if node.read_only == read_only {
            return Ok(());
        }
        // An implicit file child inherits the mode, as QEMU reopens it with its parent.
        let mut child_reopened = None;
        if !read_only {
            if let Some(f) = self.child(name, ChildRole::File) {
                if self
                    .nodes
                    .get(&f)
                    .is_some_and(|n| !n.monitor_owned && n.read_only)
                {
                    self.set_read_only(&f, false)?;
                    child_reopened = Some(f);
                }
            }
        }
        if read_only {
            self.store_bitmaps(name)?;
        }
        let node = self.nodes.get_mut(name).ok_or_else(|| not_found(name))?;
        node.read_only = read_only;
        if !read_only {
            // Writable, the node takes more of its children (a format node writes and
            // resizes its file): refused, as QEMU's reopen is, when another user of a
            // child does not share that.
            if let Err(e) = self.check_perms_from(name) {
                if let Some(n) = self.nodes.get_mut(name) {
                    n.read_only = true;
                }
                if let Some(f) = child_reopened {
                    let _ = self.set_read_only(&f, true);
                }
                return Err(e);
            }
        }
        if let Err(e) = self.reopen(name) {
            if let Some(n) = self.nodes.get_mut(name) {
                n.read_only = !read_only;
            }
            return Err(e);
        }
        self.bitmaps_follow_read_only(name, read_only);
        self.recount_reopened(name);
        // Made read-only, the implicit file child follows (once no other parent writes it).
        if read_only {
            if let Some(f) = self.child(name, ChildRole::File) {
                let implicit = self.nodes.get(&f).is_some_and(|n| !n.monitor_owned);
                let (perm, _) = self.cumulative(&f, 0);
                if implicit && !perm.contains(Perm::Write) && !perm.contains(Perm::WriteUnchanged) {
                    let _ = self.set_read_only(&f, true);
                }
            }
        }
        self.commit_locks();
        Ok(())
    }

    /// Resizes a node's image (`block_resize`).
    pub fn resize(&mut self, name: &str, size: u64) -> Result<()> {
        self.require_node(name)?;
        self.check_blocked(name)?;
        // Like QEMU, resize through a short-lived block backend that needs the permission
        // (its image lock and conflicts are checked before the node's read-only flag).
        let temp = self.attach_user(
            name,
            UserKind::Export(String::new()),
            PermSet::of(&[Perm::Resize]),
            PermSet::ALL,
        )?;
        self.detach_user(temp);
        // QEMU drains the node's graph around the truncation, and once more as its
        // temporary block backend goes.
        self.drains += 2;
        if self.node(name)?.read_only {
            return Err(Error::generic("Image is read-only"));
        }
        if matches!(self.node(name)?.data, Data::Null(..) | Data::Quorum(_)) {
            return Err(Error::generic(
                "Image format driver does not support resize",
            ));
        }
        self.truncate(name, size)
    }

    /// A job grows the node it writes into to `size` (a commit's base smaller than its
    /// top), through its own link that may resize: a node whose driver cannot change its
    /// size (null, quorum) refuses with QEMU's "Operation not supported".
    pub fn grow_for_job(&mut self, name: &str, size: u64) -> Result<()> {
        if matches!(self.node(name)?.data, Data::Null(..) | Data::Quorum(_)) {
            return Err(Error::generic("Operation not supported"));
        }
        self.truncate(name, size)
    }

    /// Changes the size of a node's image (its bitmaps, a shrinking qcow2 image's clusters
    /// and the lengths counted below follow).
    fn truncate(&mut self, name: &str, size: u64) -> Result<()> {
        let before = self.lengths_before(name);
        let img = self.image(name)?;
        let mut g = img
            .write()
            .map_err(|_| Error::generic("image lock poisoned"))?;
        let shrinks = size < g.size();
        let qcow2 = self.node(name)?.driver == Driver::Qcow2;
        if qcow2 && size > g.size() {
            // A qcow2 image grows as QEMU grows it (its L1 table only as far as needed).
            g.check_resize(size)?;
            drop(g);
            let end = self.edit_closed(name, |path| crate::qcow2_file::grow(path, size))?;
            if let Some(file) = self.child(name, ChildRole::File) {
                self.note_file_written(&file, end);
            }
            let now = self
                .image(name)?
                .read()
                .map_err(|_| Error::generic("image lock poisoned"))?
                .size();
            self.resize_bitmaps(name, now);
        } else {
            g.resize(size)?;
            let now = g.size();
            drop(g);
            self.resize_bitmaps(name, now);
        }
        if shrinks && qcow2 {
            self.edit_closed(name, |path| crate::qcow2_file::finish_shrink(path, size))?;
        }
        if matches!(self.node(name)?.driver, Driver::File | Driver::Raw) {
            self.note_truncated(name, size);
        } else {
            self.note_written(before);
        }
        Ok(())
    }

    pub fn set_write_threshold(&mut self, name: &str, threshold: u64) -> Result<()> {
        let node = self.nodes.get_mut(name).ok_or_else(|| not_found(name))?;
        node.write_threshold = threshold;
        Ok(())
    }

    /// The backing file name a node's backing child must have to be the image's own (QEMU's
    /// `auto_backing_file`): the header's name as written, or, where the node opened the
    /// backing its header names, that backing's file name. None for no name at all.
    pub fn auto_backing_file(&self, name: &str) -> Option<String> {
        self.nodes.get(name)?.auto_backing.clone()
    }

    /// Records the backing file name just written into a node's header.
    pub fn set_auto_backing_file(&mut self, name: &str, file: Option<&str>) {
        if let Some(n) = self.nodes.get_mut(name) {
            n.auto_backing = file.map(str::to_string);
        }
    }

    /// `x-debug-query-block-graph`: block drivers and users with every edge's permissions.
    /// As QEMU builds it: block backends (oldest first), then jobs (newest first, each with
    /// its links newest first), then block drivers (oldest first, each with its children
    /// newest first); a node's id is the order in which the walk first meets it, and both
    /// lists come out in the reverse of the walk.
    pub fn debug_graph(&self) -> DebugGraph {
        self.debug_graph_with_jobs(&[])
    }

    /// [`BlockGraph::debug_graph`] with every block job that exists, newest first (`jobs`):
    /// QEMU lists a job until it is dismissed, with the links it still holds (none once it
    /// concluded).
    pub fn debug_graph_with_jobs(&self, block_jobs: &[String]) -> DebugGraph {
        #[derive(PartialEq, Eq, Hash)]
        enum Key {
            User(u64),
            Job(String),
            Node(String),
        }
        let mut ids: std::collections::HashMap<Key, u64> = Default::default();
        let mut id = |k: Key| -> u64 {
            let next = ids.len() as u64 + 1;
            *ids.entry(k).or_insert(next)
        };
        let cumulative = self.all_cumulative();
        let mut nodes = Vec::new();
        let mut edges = Vec::new();
        let mut edge = |parent: u64, child: u64, name: String, perm: PermSet, shared: PermSet| {
            edges.push(GraphEdge {
                parent,
                child,
                name,
                perm: perm.list_desc(),
                shared_perm: shared.list_desc(),
            })
        };
        for u in self.users.iter() {
            let name = match &u.kind {
                UserKind::Export(_) | UserKind::JobBackend(_) => String::new(),
                UserKind::Device(d) => d.clone(),
                UserKind::Job { .. } => continue,
            };
            let me = id(Key::User(u.id.0));
            nodes.push(GraphNode {
                id: me,
                kind: GraphNodeType::BlockBackend,
                name,
            });
            let child = id(Key::Node(u.node.clone()));
            edge(me, child, "root".into(), u.perm, u.shared);
        }
        let mut jobs: Vec<&str> = block_jobs.iter().map(String::as_str).collect();
        for u in self.users.iter().rev() {
            if let UserKind::Job { id: j, .. } = &u.kind {
                if !jobs.contains(&j.as_str()) {
                    jobs.push(j);
                }
            }
        }
        for j in jobs {
            let me = id(Key::Job(j.to_string()));
            nodes.push(GraphNode {
                id: me,
                kind: GraphNodeType::BlockJob,
                name: j.to_string(),
            });
            for u in self.users.iter().rev() {
                if let UserKind::Job { id: uj, role, .. } = &u.kind {
                    if uj == j {
                        let child = id(Key::Node(u.node.clone()));
                        edge(me, child, role.clone(), u.perm, u.shared);
                    }
                }
            }
        }
        let mut sorted: Vec<&Node> = self.nodes.values().collect();
        sorted.sort_by_key(|n| n.serial);
        for n in sorted {
            let me = id(Key::Node(n.name.clone()));
            nodes.push(GraphNode {
                id: me,
                kind: GraphNodeType::BlockDriver,
                name: n.name.clone(),
            });
            let mut children: Vec<&Edge> = n.children.iter().collect();
            children.sort_by_key(|e| std::cmp::Reverse(e.attached));
            for e in children {
                let (p, s) = cumulative
                    .get(n.name.as_str())
                    .copied()
                    .unwrap_or((PermSet::NONE, PermSet::ALL));
                let (perm, shared) = self.edge_perms_given(n, e.role, p, s);
                let child = id(Key::Node(e.child.clone()));
                edge(me, child, e.role.name().to_string(), perm, shared);
            }
        }
        nodes.reverse();
        edges.reverse();
        DebugGraph { nodes, edges }
    }

    /// Error for a missing node in the words of commands that take a device or node name.
    pub fn require(&self, name: &str) -> Result<()> {
        self.node(name).map(|_| ())
    }

    /// `DeviceNotFound`-class variant for commands that say so.
    pub fn require_device(&self, name: &str) -> Result<()> {
        self.node(name)
            .map(|_| ())
            .map_err(|e| Error::with_class(ErrorClass::DeviceNotFound, e.desc))
    }
}

impl Drop for BlockGraph {
    /// Closing the graph closes its nodes: persistent bitmaps go into their images.
    fn drop(&mut self) {
        for name in self.node_names() {
            self.store_bitmaps_quietly(&name);
        }
    }
}

impl BlockGraph {
    /// Whether a commit took `name` out of its backing chain (see [`Node`]).
    pub fn dropped_from_chain(&self, name: &str) -> bool {
        self.nodes.get(name).is_some_and(|n| n.dropped_from_chain)
    }

    /// Marks `name` as taken out of its backing chain by a commit.
    pub fn mark_dropped_from_chain(&mut self, name: &str) {
        if let Some(n) = self.nodes.get_mut(name) {
            n.dropped_from_chain = true;
        }
    }

    /// What is written through a mirror's filter `name` is noted in `writes` from now on.
    pub fn set_mirror_writes(
        &mut self,
        name: &str,
        writes: Option<Arc<crate::mirror_writes::MirrorWrites>>,
    ) {
        if let Some(n) = self.nodes.get_mut(name) {
            n.mirror_writes = writes;
        }
    }

    /// A `throttle` filter's group.
    pub fn throttle_group(&self, name: &str) -> Option<String> {
        self.nodes.get(name)?.throttle_group.clone()
    }

    /// Whether some `throttle` filter uses group `group` (which may then not be deleted).
    pub fn throttle_group_in_use(&self, group: &str) -> bool {
        self.nodes
            .values()
            .any(|n| n.throttle_group.as_deref() == Some(group))
    }
}
