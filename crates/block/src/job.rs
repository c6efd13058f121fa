//! One job model with QEMU's job state machine: statuses, verbs and their transition tables and
//! words, auto-finalize/auto-dismiss, progress that follows a caller-supplied clock and speed
//! limit, and the ordered notifications a caller turns into `JOB_STATUS_CHANGE` and
//! `BLOCK_JOB_*` events. Stream, commit, mirror, backup and create jobs do their data work on the
//! real files when their run ends (and change the graph when they finalize, as QEMU does).

use std::path::PathBuf;
use std::sync::Arc;

use crate::graph::{BlockGraph, ChildRole, Driver, Perm, PermSet, UserId, UserKind};
use crate::image::{self, CreateOptions, Image, ImageFormat};
use crate::mirror_writes::MirrorWrites;
use crate::qcow2;
use crate::{Error, ErrorClass, Result};

/// `JobStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobStatus {
    Undefined,
    Created,
    Running,
    Paused,
    Ready,
    Standby,
    Waiting,
    Pending,
    Aborting,
    Concluded,
    Null,
}

impl JobStatus {
    pub fn name(self) -> &'static str {
        match self {
            JobStatus::Undefined => "undefined",
            JobStatus::Created => "created",
            JobStatus::Running => "running",
            JobStatus::Paused => "paused",
            JobStatus::Ready => "ready",
            JobStatus::Standby => "standby",
            JobStatus::Waiting => "waiting",
            JobStatus::Pending => "pending",
            JobStatus::Aborting => "aborting",
            JobStatus::Concluded => "concluded",
            JobStatus::Null => "null",
        }
    }

    /// QEMU's status transition table: may a job go from `self` to `to`?
    pub fn can_become(self, to: JobStatus) -> bool {
        use JobStatus::*;
        matches!(
            (self, to),
            (Undefined, Created)
                | (Created, Running | Aborting | Null)
                | (Running, Paused | Ready | Waiting | Aborting)
                | (Paused, Running)
                | (Ready, Standby | Waiting | Aborting)
                | (Standby, Ready)
                | (Waiting, Pending | Aborting)
                | (Pending, Concluded | Aborting)
                | (Aborting, Concluded | Aborting)
                | (Concluded, Null)
        )
    }
}

/// `JobVerb`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobVerb {
    Cancel,
    Pause,
    Resume,
    SetSpeed,
    Complete,
    Finalize,
    Dismiss,
    Change,
}

impl JobVerb {
    pub fn name(self) -> &'static str {
        match self {
            JobVerb::Cancel => "cancel",
            JobVerb::Pause => "pause",
            JobVerb::Resume => "resume",
            JobVerb::SetSpeed => "set-speed",
            JobVerb::Complete => "complete",
            JobVerb::Finalize => "finalize",
            JobVerb::Dismiss => "dismiss",
            JobVerb::Change => "change",
        }
    }

    /// QEMU's verb table: may a job in `status` accept this verb?
    pub fn allowed_in(self, status: JobStatus) -> bool {
        use JobStatus::*;
        let live = matches!(
            status,
            Created | Running | Paused | Ready | Standby | Waiting | Pending
        );
        // A job that has done its work (waiting for its transaction, pending) can only be
        // cancelled or finalized.
        let working = matches!(status, Created | Running | Paused | Ready | Standby);
        match self {
            JobVerb::Cancel => live,
            JobVerb::Pause | JobVerb::Resume | JobVerb::SetSpeed | JobVerb::Change => working,
            // A ready job its user paused (standby) takes it too, and completes once resumed.
            JobVerb::Complete => matches!(status, Ready | Standby),
            JobVerb::Finalize => status == Pending,
            JobVerb::Dismiss => status == Concluded,
        }
    }
}

/// `JobType` of the kinds with data work here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobKind {
    Commit,
    Stream,
    Mirror,
    Backup,
    Create,
}

impl JobKind {
    pub fn name(self) -> &'static str {
        match self {
            JobKind::Commit => "commit",
            JobKind::Stream => "stream",
            JobKind::Mirror => "mirror",
            JobKind::Backup => "backup",
            JobKind::Create => "create",
        }
    }

    /// Block jobs (all but create) also report through `BLOCK_JOB_*` and `query-block-jobs`.
    pub fn is_block_job(self) -> bool {
        self != JobKind::Create
    }
}

/// `MirrorSyncMode` as mirror and backup take it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SyncMode {
    #[default]
    Full,
    Top,
    None,
    /// What a dirty bitmap marks (`incremental` and `bitmap`).
    Bitmap,
}

/// What a `BLOCK_JOB_*` event carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockJobEventInfo {
    pub kind: JobKind,
    pub device: String,
    pub len: u64,
    pub offset: u64,
    pub speed: u64,
    pub error: Option<String>,
}

/// Notifications in QEMU's order; callers make QMP events of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobEvent {
    /// `JOB_STATUS_CHANGE`.
    StatusChange { id: String, status: JobStatus },
    /// `BLOCK_JOB_READY`.
    Ready(BlockJobEventInfo),
    /// `BLOCK_JOB_COMPLETED` (with `error` when it failed).
    Completed(BlockJobEventInfo),
    /// `BLOCK_JOB_CANCELLED`.
    Cancelled(BlockJobEventInfo),
    /// `BLOCK_JOB_PENDING`.
    Pending { kind: JobKind, id: String },
}

/// `JobInfo` (`query-jobs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobInfo {
    pub id: String,
    pub kind: JobKind,
    pub status: JobStatus,
    pub current_progress: u64,
    pub total_progress: u64,
    pub error: Option<String>,
}

/// `BlockJobInfo` (`query-block-jobs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockJobInfo {
    pub kind: JobKind,
    pub device: String,
    pub len: u64,
    pub offset: u64,
    pub busy: bool,
    pub paused: bool,
    pub speed: u64,
    pub io_status: &'static str,
    pub ready: bool,
    pub status: JobStatus,
    pub auto_finalize: bool,
    pub auto_dismiss: bool,
    pub error: Option<String>,
    /// A mirror in `write-blocking` copy mode that has reached its target's state: guest
    /// writes now reach both at once (QEMU's `actively-synced`).
    pub actively_synced: bool,
}

/// Options every job takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobOptions {
    pub id: String,
    pub auto_finalize: bool,
    pub auto_dismiss: bool,
    /// Bytes per second; 0 is unlimited.
    pub speed: u64,
    /// The name of the job's filter node (`#blockNNN`, implicit, when absent).
    pub filter_node_name: Option<String>,
    /// A negative speed was asked: the job is created, takes its links, and is dropped
    /// with [`NEGATIVE_SPEED`] (QEMU sets the speed once the job is made).
    pub negative_speed: bool,
    /// A mirror's dirty-tracking granularity in bytes (0: the default, from its target's
    /// cluster size).
    pub granularity: u64,
}

/// QEMU's words for a negative speed.
pub const NEGATIVE_SPEED: &str = "Parameter 'speed' expects a non-negative value";

impl JobOptions {
    /// The job's speed, once its links are in place.
    fn check_speed(&self) -> Result<()> {
        if self.negative_speed {
            return Err(Error::generic(NEGATIVE_SPEED));
        }
        Ok(())
    }
}

impl JobOptions {
    pub fn new(id: &str) -> JobOptions {
        JobOptions {
            id: id.to_string(),
            auto_finalize: true,
            auto_dismiss: true,
            speed: 0,
            filter_node_name: None,
            negative_speed: false,
            granularity: 0,
        }
    }
}

/// `BitmapSyncMode`: what a backup with a bitmap does with it when the job ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BitmapMode {
    /// Cleared when the job succeeds, left as it was (with the writes since) when not.
    OnSuccess,
    /// Left as it was, with the writes since.
    Never,
    /// What was copied is cleared, whatever the outcome.
    Always,
}

impl BitmapMode {
    pub fn name(self) -> &'static str {
        match self {
            BitmapMode::OnSuccess => "on-success",
            BitmapMode::Never => "never",
            BitmapMode::Always => "always",
        }
    }
}

/// What a backup asks of a bitmap: `sync` `incremental` or `bitmap` copies what it marks.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BackupBitmap {
    /// `sync` was `incremental` or `bitmap` (by its name, for the words of the checks).
    pub bitmap_sync: Option<&'static str>,
    pub bitmap: Option<String>,
    pub mode: Option<BitmapMode>,
}

#[derive(Debug, Clone)]
enum Work {
    Stream {
        top: String,
        base: Option<String>,
    },
    Commit {
        top: String,
        base: String,
        /// The node above `top` (none: active commit, which pivots to `base` on complete).
        overlay: Option<String>,
    },
    Mirror {
        source: String,
        target: String,
        sync: SyncMode,
    },
    Backup {
        source: String,
        target: String,
        sync: SyncMode,
        /// The bitmap it copies by or handles at its end (frozen while the job runs).
        bitmap: Option<(String, BitmapMode)>,
    },
    Create {
        path: PathBuf,
        options: CreateOptions,
        /// The node whose file the job writes (an image format over a node), opened by an
        /// unnamed block device that writes and resizes it when the job runs.
        node: Option<String>,
        /// Why the job fails when it runs, before anything else (a node it cannot find).
        fails: Option<String>,
    },
}

impl Work {
    /// The node the data work writes into (the files below it may grow).
    fn written_node(&self) -> Option<&str> {
        match self {
            Work::Stream { top, .. } => Some(top),
            Work::Commit { base, .. } => Some(base),
            Work::Mirror { target, .. } | Work::Backup { target, .. } => Some(target),
            Work::Create { .. } => None,
        }
    }
}

#[derive(Debug)]
struct Job {
    id: String,
    kind: JobKind,
    status: JobStatus,
    auto_finalize: bool,
    auto_dismiss: bool,
    speed: u64,
    user_paused: bool,
    /// How many drained sections of nodes hold the job paused now ([`Jobs::drain_begin`]).
    quiesced: u32,
    current: u64,
    total: u64,
    /// Fractional bytes owed from clock steps, in byte-nanoseconds / 1e9 units.
    carry: u128,
    last_ns: Option<u64>,
    /// Under a speed limit: when the job may do its next chunk of work (`None`: its first
    /// chunk is still to come, at once).
    next_chunk_ns: Option<u64>,
    error: Option<String>,
    /// Whether a ready job was cancelled softly (finishes without a pivot).
    soft_cancel: bool,
    /// `complete` was asked while its user had the ready job paused (standby): it completes
    /// when resumed.
    complete_asked: bool,
    /// A mirror's copy mode is `write-blocking` (else `background`).
    write_blocking: bool,
    actively_synced: bool,
    work: Work,
    users: Vec<UserId>,
    /// The job's filter node, and where its parents go when it leaves (the node below it).
    filter: Option<(String, String)>,
    /// A node the job opened read-write for itself (a stream's backing file, a commit's
    /// base), to make read-only again at its end.
    reopened: Option<String>,
    /// The disk ranges the job's data work goes over, in order (worked out when its first
    /// data moves), and how many of their bytes it has done: data moves as progress does.
    plan: Option<Vec<(u64, u64)>>,
    moved: u64,
    /// Whether its data work waits for a file's I/O (not when it only reads and writes null
    /// nodes, whose I/O completes at once).
    file_io: bool,
    /// A backup's chunks, the lengths of its plan's pieces in order (see [`backup_plan`]);
    /// other jobs go in chunks of one size ([`Job::chunk`]).
    chunks: Option<Vec<u64>>,
    /// Where [`Job::next_chunk_len`] last found `current`: the chunk's index and start.
    chunk_cursor: (usize, u64),
    /// Under a speed limit: the bytes moved since the job last waited (QEMU's rate limiter
    /// lets chunks go at once until a 100 ms slice's quota is reached).
    batch: u64,
    /// A backup with `sync` `none`: it copies only what writes are about to change, and runs
    /// until it is cancelled.
    endless: bool,
    /// A mirror: what is written through its filter (which it copies, and counts).
    writes: Option<Arc<MirrorWrites>>,
}

/// A rate-limited job's time slice, as QEMU's rate limiter measures speed.
const SLICE_NS: u64 = 100_000_000;

impl Job {
    /// The most a job does in one go: QEMU's stream and commit copy up to 512 KiB at a time,
    /// a backup 1 MiB, a mirror (and so an active commit) its whole 16 MiB buffer.
    fn chunk(&self) -> u64 {
        match &self.work {
            Work::Mirror { .. } | Work::Commit { overlay: None, .. } => 16 << 20,
            Work::Backup { .. } => 1 << 20,
            _ => 512 << 10,
        }
    }

    /// Whether QEMU's mirror job does the work (a mirror, or an active commit).
    fn is_mirror(&self) -> bool {
        matches!(
            self.work,
            Work::Mirror { .. } | Work::Commit { overlay: None, .. }
        )
    }

    /// Whether the run phase ends with a wait after its last chunk (a mirror finds it has
    /// nothing left to copy only once it may copy again) rather than at once.
    fn waits_after_last_chunk(&self) -> bool {
        self.is_mirror()
    }

    /// Whether the job is at work rather than waiting (QEMU's `busy`, as qemu-storage-daemon
    /// 10.0.2 shows it): only a running job works; one under a speed limit waits between its
    /// chunks (and after its last), a backup waits for the copies it hands out, and one
    /// without a limit is seen at work only while it waits for a file's I/O (a mirror between
    /// null nodes never does). A job that is paused, ready, pending or done waits.
    fn busy(&self) -> bool {
        if self.status != JobStatus::Running
            || matches!(self.work, Work::Backup { .. } | Work::Create { .. })
        {
            return false;
        }
        if self.speed == 0 {
            return self.file_io;
        }
        match (self.next_chunk_ns, self.last_ns) {
            (Some(at), Some(now)) => at <= now,
            _ => true,
        }
    }

    /// Whether the job's progress counts disk offsets (so data up to `current` is done);
    /// else it counts the bytes of its plan (an active commit's allocated data, a backup's
    /// marked granules).
    fn counts_offsets(&self) -> bool {
        match &self.work {
            Work::Commit { overlay, .. } => overlay.is_some(),
            Work::Backup { .. } => false,
            Work::Create { .. } => false,
            _ => true,
        }
    }

    /// How long a job under its speed limit waits after moving `bytes` at its speed.
    fn delay_ns(&self, bytes: u64) -> u64 {
        let speed = self.speed.max(1) as u128;
        u64::try_from(bytes as u128 * 1_000_000_000 / speed).unwrap_or(u64::MAX)
    }

    /// Whether `batch` bytes moved since the last wait reach the quota of a 100 ms slice at
    /// the job's speed (then the job waits until they are paid for).
    fn quota_reached(&self, batch: u64) -> bool {
        batch as u128 * 1_000_000_000 >= self.speed as u128 * SLICE_NS as u128
    }

    /// The bytes of the chunk the job does next, from `current` (the rest of a chunk it is
    /// inside, when progress went otherwise than by chunks).
    fn next_chunk_len(&mut self) -> u64 {
        let left = self.total.saturating_sub(self.current);
        let Some(lens) = &self.chunks else {
            return self.chunk().min(left).max(1);
        };
        let (mut i, mut start) = self.chunk_cursor;
        if self.current < start {
            (i, start) = (0, 0);
        }
        while let Some(&l) = lens.get(i) {
            if self.current < start + l {
                self.chunk_cursor = (i, start);
                return (start + l - self.current).min(left).max(1);
            }
            start += l;
            i += 1;
        }
        self.chunk_cursor = (i, start);
        left.max(1)
    }

    /// Moves a rate-limited job to `now_ns`, as QEMU's rate limiter goes (measured on
    /// qemu-storage-daemon 10.0.2): its first chunk at once, and further chunks at once
    /// while the bytes since the last wait stay below the quota of a 100 ms slice; once they
    /// reach it, the next chunk goes when they are paid for at the job's speed. Whether the
    /// run phase is over.
    fn limited_steps(&mut self, now_ns: u64) -> bool {
        let mut at = *self.next_chunk_ns.get_or_insert(now_ns);
        while self.current < self.total && at <= now_ns {
            let n = self.next_chunk_len();
            self.current += n;
            self.batch += n;
            if self.quota_reached(self.batch) {
                at = at.saturating_add(self.delay_ns(self.batch));
                self.batch = 0;
            }
        }
        self.next_chunk_ns = Some(at);
        self.current >= self.total && (!self.waits_after_last_chunk() || at <= now_ns)
    }

    /// When a rate-limited job's run phase ends, at the speed it has now.
    fn limited_end(&self, now_ns: u64) -> u64 {
        let mut at = self.next_chunk_ns.or(self.last_ns).unwrap_or(now_ns);
        let left = self.total.saturating_sub(self.current);
        if left == 0 {
            return if self.waits_after_last_chunk() {
                at
            } else {
                now_ns
            };
        }
        if self.chunks.is_none() && self.batch == 0 && self.quota_reached(self.chunk()) {
            // Every chunk waits for itself.
            let chunk = self.chunk();
            let chunks = left.div_ceil(chunk);
            let last = left - (chunks - 1) * chunk;
            let end = at.saturating_add((chunks - 1).saturating_mul(self.delay_ns(chunk)));
            return if self.waits_after_last_chunk() {
                end.saturating_add(self.delay_ns(last))
            } else {
                end
            };
        }
        // Chunk by chunk, as [`Job::limited_steps`] will go.
        let mut probe = Job {
            chunks: self.chunks.clone(),
            ..self.shallow()
        };
        loop {
            let n = probe.next_chunk_len();
            probe.current += n;
            probe.batch += n;
            let full = probe.quota_reached(probe.batch);
            if probe.current >= probe.total {
                return if self.waits_after_last_chunk() && full {
                    at.saturating_add(probe.delay_ns(probe.batch))
                } else {
                    at
                };
            }
            if full {
                at = at.saturating_add(probe.delay_ns(probe.batch));
                probe.batch = 0;
            }
        }
    }

    /// The figures [`Job::limited_end`] steps through (its work and links left out).
    fn shallow(&self) -> Job {
        Job {
            id: String::new(),
            kind: self.kind,
            status: self.status,
            auto_finalize: self.auto_finalize,
            auto_dismiss: self.auto_dismiss,
            speed: self.speed,
            user_paused: self.user_paused,
            quiesced: self.quiesced,
            current: self.current,
            total: self.total,
            carry: 0,
            last_ns: self.last_ns,
            next_chunk_ns: self.next_chunk_ns,
            error: None,
            soft_cancel: false,
            complete_asked: false,
            write_blocking: false,
            actively_synced: false,
            work: self.work.clone(),
            users: Vec::new(),
            filter: None,
            reopened: None,
            plan: None,
            moved: 0,
            file_io: self.file_io,
            chunks: None,
            chunk_cursor: self.chunk_cursor,
            batch: self.batch,
            endless: self.endless,
            writes: None,
        }
    }
}

/// All jobs of one machine.
#[derive(Debug)]
pub struct Jobs {
    jobs: Vec<Job>,
    /// The clock's last reading (a new job's progress counts from here).
    now_ns: u64,
    events: Vec<JobEvent>,
    unlimited_rate: u64,
    /// Inside a transaction: the jobs made so far stay created until it commits
    /// ([`Jobs::hold_starts`]), oldest first.
    held: Option<Vec<String>>,
    /// The jobs a backup's filter holds paused from its first drain until the job has
    /// started (or failed to).
    start_section: Vec<String>,
    /// The order in which a drain of the whole graph pauses the jobs (by the nodes they are
    /// linked to, [`Jobs::rank`]); those not in it pause after, oldest first.
    pause_order: Vec<String>,
}

impl Default for Jobs {
    fn default() -> Self {
        Jobs::new(1 << 30)
    }
}

const CHUNK: u64 = 1 << 20;

/// The drains of the graph as a job goes once dismissed (its block backend freed), as
/// measured on QEMU 10.0: one for a mirror, an active commit and a backup.
fn dismiss_drains(work: &Work) -> u32 {
    match work {
        Work::Mirror { .. } | Work::Commit { overlay: None, .. } | Work::Backup { .. } => 1,
        _ => 0,
    }
}

/// The drains of the graph while a qcow2 image is formatted over a node.
const QCOW2_CREATE_DRAINS: u32 = 14;

/// The most QEMU's stream job copies in one step.
const STREAM_STEP: u64 = 512 << 10;

fn job_not_found() -> Error {
    Error::generic("Job not found")
}

impl Jobs {
    /// `unlimited_rate`: bytes per simulated second a job without a speed limit moves.
    pub fn new(unlimited_rate: u64) -> Jobs {
        Jobs {
            jobs: Vec::new(),
            now_ns: 0,
            events: Vec::new(),
            unlimited_rate: unlimited_rate.max(1),
            held: None,
            start_section: Vec::new(),
            pause_order: Vec::new(),
        }
    }

    /// The notifications since the last call, in order.
    pub fn take_events(&mut self) -> Vec<JobEvent> {
        std::mem::take(&mut self.events)
    }

    fn index(&self, id: &str) -> Result<usize> {
        self.jobs
            .iter()
            .position(|j| j.id == id)
            .ok_or_else(job_not_found)
    }

    /// For the `block-job-*` commands, whose words differ: "Block job 'x' not found".
    pub fn require_block_job(&self, id: &str) -> Result<()> {
        match self.jobs.iter().find(|j| j.id == id) {
            Some(j) if j.kind.is_block_job() => Ok(()),
            _ => Err(Error::with_class(
                ErrorClass::DeviceNotActive,
                format!("Block job '{id}' not found"),
            )),
        }
    }

    fn set_status(&mut self, i: usize, to: JobStatus) {
        let j = &mut self.jobs[i];
        if j.status == to {
            return;
        }
        debug_assert!(j.status.can_become(to), "{:?} -> {:?}", j.status, to);
        j.status = to;
        let id = j.id.clone();
        self.events.push(JobEvent::StatusChange { id, status: to });
    }

    fn block_info(&self, i: usize) -> BlockJobEventInfo {
        let j = &self.jobs[i];
        BlockJobEventInfo {
            kind: j.kind,
            device: j.id.clone(),
            len: j.total,
            offset: j.current,
            speed: j.speed,
            error: None,
        }
    }

    fn check_verb(&self, i: usize, verb: JobVerb) -> Result<()> {
        let j = &self.jobs[i];
        if verb.allowed_in(j.status) {
            Ok(())
        } else {
            Err(Error::generic(format!(
                "Job '{}' in state '{}' cannot accept command verb '{}'",
                j.id,
                j.status.name(),
                verb.name()
            )))
        }
    }

    fn check_new_id(&self, id: &str) -> Result<()> {
        if !crate::graph::id_wellformed(id) {
            return Err(Error::generic(format!("Invalid job ID '{id}'")));
        }
        if self.jobs.iter().any(|j| j.id == id) {
            return Err(Error::generic(format!("Job ID '{id}' already in use")));
        }
        Ok(())
    }

    fn push(
        &mut self,
        opts: &JobOptions,
        kind: JobKind,
        work: Work,
        total: u64,
        users: Vec<UserId>,
    ) {
        self.jobs.insert(
            0,
            Job {
                id: opts.id.clone(),
                kind,
                status: JobStatus::Undefined,
                auto_finalize: opts.auto_finalize,
                auto_dismiss: opts.auto_dismiss,
                speed: opts.speed,
                user_paused: false,
                quiesced: 0,
                current: 0,
                total,
                carry: 0,
                last_ns: Some(self.now_ns),
                next_chunk_ns: None,
                error: None,
                soft_cancel: false,
                complete_asked: false,
                write_blocking: false,
                actively_synced: false,
                work,
                users,
                filter: None,
                reopened: None,
                plan: None,
                moved: 0,
                file_io: true,
                chunks: None,
                chunk_cursor: (0, 0),
                batch: 0,
                endless: false,
                writes: None,
            },
        );
        // QEMU drains the graph as the job's filter goes in, then as the job takes its links
        // (the other jobs pause and resume each time; the new one is not running yet).
        let (before, links) = match kind {
            JobKind::Mirror | JobKind::Commit => (2, 2),
            JobKind::Stream => (3, 2),
            // (A backup's filter drained the graph as it opened.)
            JobKind::Backup => (0, 1),
            JobKind::Create => (0, 0),
        };
        self.drain(before);
        self.set_status(0, JobStatus::Created);
        self.drain(links);
        // The jobs a backup's filter held paused since it opened go on once it started.
        let held_section = std::mem::take(&mut self.start_section);
        if let Some(held) = &mut self.held {
            held.push(opts.id.clone());
            self.drain_end(&held_section);
            return;
        }
        self.set_status(0, JobStatus::Running);
        if kind == JobKind::Backup {
            // QEMU's backup job is paused and resumed once while its filter is put in place.
            self.set_status(0, JobStatus::Paused);
            self.set_status(0, JobStatus::Running);
        }
        self.drain_end(&held_section);
    }

    /// A transaction begins: jobs made until [`Jobs::release_starts`] stay created (QEMU
    /// starts a transaction's jobs when it commits; an aborted one cancels them unstarted).
    pub fn hold_starts(&mut self) {
        self.held = Some(Vec::new());
    }

    /// The transaction ends: `commit` starts the jobs it made, as QEMU's commit does, newest
    /// first, each backup pausing while its filter goes in, and then resuming, newest first.
    /// Without `commit` (they were cancelled) nothing more happens.
    pub fn release_starts(&mut self, commit: bool) {
        let Some(held) = self.held.take() else {
            return;
        };
        if !commit {
            return;
        }
        let live = |s: &Jobs, id: &str| {
            s.index(id)
                .ok()
                .filter(|&i| s.jobs[i].status == JobStatus::Created)
        };
        let mut backups = Vec::new();
        for id in held.iter().rev() {
            let Some(i) = live(self, id) else { continue };
            self.set_status(i, JobStatus::Running);
            if self.jobs[i].kind == JobKind::Backup {
                self.set_status(i, JobStatus::Paused);
                backups.push(id.clone());
            }
        }
        for id in backups {
            if let Ok(i) = self.index(&id) {
                self.set_status(i, JobStatus::Running);
            }
        }
    }

    /// What a job whose filter takes its permissions once the job was announced (a mirror,
    /// an active commit, a stream) checks before it exists: it opens its filter first (a
    /// refused name announces no job, and a generated one is used up even when the job's id
    /// is refused then). `inserted`: the filter opens as a node of its own options (a
    /// stream's), whose refused name QEMU reports as such.
    fn filter_name_then_id(
        &self,
        graph: &mut BlockGraph,
        opts: &JobOptions,
        inserted: bool,
    ) -> Result<()> {
        match opts.filter_node_name.as_deref() {
            Some(n) => graph.check_new_node_name(n).map_err(|e| {
                if inserted {
                    e.prepend("Could not create node: ")
                } else {
                    e
                }
            })?,
            None => {
                if self.check_new_id(&opts.id).is_err() {
                    graph.generate_name();
                }
            }
        }
        self.check_new_id(&opts.id)
    }

    /// Opens a backup's filter over `below` and `target` as a node of its own options before
    /// the job exists (a refusal, as it takes its children, is reported as such), then
    /// checks the job's id: a refusal of either announces no job, and a filter whose job is
    /// refused goes again (its generated name stays used up). The graph drains four times
    /// as the filter opens, and twice more as a refused job's filter goes. The filter takes
    /// its place above `below` once the job was announced.
    fn filter_then_id(
        &mut self,
        graph: &mut BlockGraph,
        opts: &JobOptions,
        below: &str,
        driver: Driver,
        target: Option<&str>,
    ) -> Result<String> {
        let name = opts.filter_node_name.as_deref();
        // The jobs on `below` or above it pause with the filter's first drain and stay
        // paused until the job has started (measured on QEMU 10.0.2).
        let section = graph.jobs_drained_with(below);
        let f = name
            .map_or(Ok(()), |n| graph.check_new_node_name(n))
            .and_then(|()| graph.open_job_filter(below, driver, name, target))
            .map_err(|e| e.prepend("Could not create node: "));
        self.start_section = self.drain_begin(&section);
        self.drain(4);
        let f = match f {
            Ok(f) => f,
            Err(e) => {
                self.end_start_section();
                return Err(e);
            }
        };
        if let Err(e) = self.check_new_id(&opts.id) {
            graph.remove_job_filter(&f, below);
            self.drain(2);
            self.end_start_section();
            return Err(e);
        }
        Ok(f)
    }

    /// A job that was created and then could not take its links: QEMU announces it, then
    /// drops it.
    /// The graph is drained twice as the job's filter goes in, once for each link it took
    /// before the refused one, and three times as its links and filter go again.
    fn failed_early(&mut self, id: &str, e: Error) -> Error {
        let took = u32::from(!e.desc.starts_with("Failed to get"));
        self.failed_early_after(id, e, took)
    }

    /// [`Jobs::failed_early`] of a copy job that held `links` links when one was refused:
    /// the graph drains once between the job's announcement and its end when it held two
    /// or more (a refusal of its source link, the second, drains nothing there).
    fn failed_after_links(&mut self, id: &str, e: Error, links: usize) -> Error {
        self.failed_early_after(id, e, u32::from(links >= 2))
    }

    /// A backup whose filter opened and that could not go on once announced (its filter
    /// could not take the source's place, or its links or speed were refused): QEMU
    /// announces it, drops it, and drains the graph three times as its filter goes.
    fn backup_failed(&mut self, id: &str, e: Error) -> Error {
        for status in [JobStatus::Created, JobStatus::Null] {
            self.events.push(JobEvent::StatusChange {
                id: id.to_string(),
                status,
            });
        }
        self.drain(3);
        self.end_start_section();
        e
    }

    /// The jobs a backup's filter held paused as it opened go on.
    fn end_start_section(&mut self) {
        let held = std::mem::take(&mut self.start_section);
        self.drain_end(&held);
    }

    fn failed_early_after(&mut self, id: &str, e: Error, took: u32) -> Error {
        self.drain(2);
        for (status, drains) in [(JobStatus::Created, took), (JobStatus::Null, 3)] {
            self.events.push(JobEvent::StatusChange {
                id: id.to_string(),
                status,
            });
            self.drain(drains);
        }
        e
    }

    /// A job's links `(node, role, (perm, shared))`, attached in order.
    fn attach_all(
        graph: &mut BlockGraph,
        users: &mut Vec<UserId>,
        opts: &JobOptions,
        kind: JobKind,
        links: &[(&str, &str, (PermSet, PermSet))],
    ) -> Result<()> {
        for (node, role, perms) in links {
            Self::attach(graph, users, node, opts, kind, role, *perms)?;
        }
        Ok(())
    }

    fn attach(
        graph: &mut BlockGraph,
        users: &mut Vec<UserId>,
        node: &str,
        opts: &JobOptions,
        kind: JobKind,
        role: &str,
        (perm, shared): (PermSet, PermSet),
    ) -> Result<()> {
        match graph.attach_user(
            node,
            UserKind::Job {
                id: opts.id.clone(),
                kind: kind.name().to_string(),
                role: role.to_string(),
            },
            perm,
            shared,
        ) {
            Ok(u) => {
                users.push(u);
                // Every node a job links is blocked for other operations while it runs.
                graph.block(node, &opts.id, &Self::in_use_reason(kind));
                Ok(())
            }
            Err(e) => {
                for u in users.drain(..) {
                    graph.detach_user(u);
                }
                graph.unblock_all(&opts.id);
                Err(e)
            }
        }
    }

    /// A commit's links on the layers it writes down (they may be written, not read).
    fn attach_intermediates(
        graph: &mut BlockGraph,
        users: &mut Vec<UserId>,
        opts: &JobOptions,
        layers: &[String],
    ) -> Result<()> {
        use crate::graph::Perm::*;
        let link = (PermSet::NONE, PermSet::of(&[Write, WriteUnchanged]));
        for n in layers {
            Self::attach(
                graph,
                users,
                n,
                opts,
                JobKind::Commit,
                "intermediate node",
                link,
            )?;
        }
        Ok(())
    }

    fn in_use_reason(kind: JobKind) -> String {
        format!("block device is in use by block job: {}", kind.name())
    }

    /// A block backend the job opens on a node (an unnamed block device in QEMU's words).
    fn attach_backend(
        graph: &mut BlockGraph,
        users: &mut Vec<UserId>,
        node: &str,
        opts: &JobOptions,
        (perm, shared): (PermSet, PermSet),
    ) -> Result<()> {
        match graph.attach_user(node, UserKind::JobBackend(opts.id.clone()), perm, shared) {
            Ok(u) => {
                users.push(u);
                Ok(())
            }
            Err(e) => {
                for u in users.drain(..) {
                    graph.detach_user(u);
                }
                Err(e)
            }
        }
    }

    /// Undoes a start that failed after its filter went in: the links and their blockers go,
    /// then the filter.
    fn undo_start(
        graph: &mut BlockGraph,
        id: &str,
        users: Vec<UserId>,
        filter: Option<&(String, String)>,
    ) {
        for u in users {
            graph.detach_user(u);
        }
        graph.unblock_all(id);
        if let Some((f, below)) = filter {
            graph.remove_job_filter(f, below);
        }
    }

    /// `block-stream`: copies the backing data above `base` (all of it without one) into
    /// `device`, then drops the backing files in between.
    pub fn start_stream(
        &mut self,
        graph: &mut BlockGraph,
        opts: &JobOptions,
        device: &str,
        base: Option<&str>,
    ) -> Result<()> {
        graph.require(device)?;
        // Every layer streamed from must be free of jobs (a backing file may be streamed
        // into: QEMU lets its overlay's blocker pass); then the job's id.
        for n in graph
            .layers_below(device)
            .iter()
            .take_while(|n| Some(n.as_str()) != base)
        {
            graph.check_job_blocked(n)?;
        }
        if let Some(b) = base {
            if !graph.backing_chain(device).iter().skip(1).any(|n| n == b) {
                return Err(Error::generic(format!(
                    "Node '{b}' is not a backing image of '{device}'"
                )));
            }
        }
        // Nothing to stream when the device has no backing image above the base: QEMU's job
        // then has length 0 and ends at once, whatever its speed.
        let backing = graph
            .child(device, crate::graph::ChildRole::Backing)
            .map(|b| graph.below_job_filters(&b));
        let nothing = backing.is_none() || backing.as_deref() == base;
        let total = if nothing { 0 } else { graph.size(device)? };
        // A read-only node (a backing file) is opened read-write while the job writes it.
        let was_read_only = graph.is_read_only(device)?;
        if was_read_only {
            graph.set_read_only(device, false)?;
        }
        let reopened = was_read_only.then(|| device.to_string());
        let restore = |graph: &mut BlockGraph| {
            if was_read_only {
                let _ = graph.set_read_only(device, true);
            }
        };
        // A copy-on-read filter above the device, then the job's links: the filter, a
        // reader on it, the device and the images it streams from. The job is announced
        // before any of them can be refused.
        if let Err(e) = self.filter_name_then_id(graph, opts, true) {
            restore(graph);
            if !e.desc.starts_with("Could not create node") {
                // QEMU refuses the job's id with its filter in place (three drains of the
                // graph), which goes again (two more).
                self.drain(5);
            }
            return Err(e);
        }
        let name = opts.filter_node_name.as_deref();
        let filter = match graph.insert_job_filter(device, Driver::CopyOnRead, name, None) {
            Ok(f) => f,
            Err(e) => {
                restore(graph);
                return Err(self.failed_early(&opts.id, e));
            }
        };
        let filter = (filter, device.to_string());
        let mut users = Vec::new();
        use crate::graph::Perm::*;
        let most = PermSet::of(&[ConsistentRead, Write, WriteUnchanged]);
        let job = (|| -> Result<()> {
            Self::attach(
                graph,
                &mut users,
                &filter.0,
                opts,
                JobKind::Stream,
                "main node",
                (PermSet::NONE, PermSet::ALL),
            )?;
            Self::attach_backend(
                graph,
                &mut users,
                &filter.0,
                opts,
                (PermSet::of(&[ConsistentRead]), most),
            )
        })();
        if let Err(e) = job {
            Self::undo_start(graph, &opts.id, users, Some(&filter));
            restore(graph);
            return Err(self.failed_early(&opts.id, e));
        }
        // The links on the device and the images streamed from come once the job exists.
        let mut links = Vec::new();
        let attached = (|| -> Result<()> {
            Self::attach(
                graph,
                &mut links,
                device,
                opts,
                JobKind::Stream,
                "active node",
                (PermSet::NONE, most),
            )?;
            let below: Vec<String> = graph
                .backing_chain(device)
                .into_iter()
                .skip(1)
                .take_while(|n| Some(n.as_str()) != base)
                .collect();
            for n in &below {
                Self::attach(
                    graph,
                    &mut links,
                    n,
                    opts,
                    JobKind::Stream,
                    "intermediate node",
                    (
                        PermSet::NONE,
                        PermSet::of(&[ConsistentRead, WriteUnchanged]),
                    ),
                )?;
            }
            Ok(())
        })();
        if let Err(e) = attached {
            // QEMU drops the job and its filter but not the job's block backend: it stays on
            // the device (reading it, sharing all but resize), for good.
            let backend = users.pop();
            Self::undo_start(graph, &opts.id, users, None);
            if let Some(b) = backend {
                graph.move_user(b, device);
            }
            graph.remove_job_filter(&filter.0, device);
            restore(graph);
            return Err(self.failed_early(&opts.id, e));
        }
        users.extend(links);
        if let Err(e) = opts.check_speed() {
            Self::undo_start(graph, &opts.id, users, Some(&filter));
            restore(graph);
            return Err(self.failed_early(&opts.id, e));
        }
        graph.block(device, &opts.id, &Self::in_use_reason(JobKind::Stream));
        let work = Work::Stream {
            top: device.to_string(),
            base: base.map(str::to_string),
        };
        self.rank(graph);
        self.push(opts, JobKind::Stream, work, total, users);
        self.jobs[0].filter = Some(filter);
        self.jobs[0].reopened = reopened;
        Ok(())
    }

    /// `block-commit`: writes the data of `top` (the device's active layer when absent) and
    /// everything between into `base` (the bottom of the chain when absent). Committing the
    /// active layer becomes ready and pivots the device's users to `base` on complete.
    pub fn start_commit(
        &mut self,
        graph: &mut BlockGraph,
        opts: &JobOptions,
        device: &str,
        top: Option<&str>,
        base: Option<&str>,
    ) -> Result<()> {
        graph.require(device)?;
        if !graph.is_root(device) {
            return Err(Error::generic("Need a root block node"));
        }
        graph.check_blocked(device)?;
        let chain = graph.backing_chain(device);
        let top = top.unwrap_or(device).to_string();
        let top_at = chain
            .iter()
            .position(|n| *n == top)
            .ok_or_else(|| Error::generic(format!("Top image file {top} not found")))?;
        let base = match base {
            Some(b) => b.to_string(),
            None => match chain.last() {
                Some(b) => b.clone(),
                None => return Err(Error::generic("cannot commit an image into itself")),
            },
        };
        let base_at = chain
            .iter()
            .position(|n| *n == base)
            .ok_or_else(|| Error::generic(format!("Base '{base}' not found")))?;
        if base_at <= top_at {
            return Err(Error::generic(if base_at == top_at {
                "cannot commit an image into itself".to_string()
            } else {
                format!("Base '{base}' is not below top '{top}'")
            }));
        }
        let overlay = if top_at == 0 {
            None
        } else {
            Some(chain[top_at - 1].clone())
        };
        // Progress: an active commit counts the data it has to move (what is allocated above
        // the base), a commit below the active layer the top's whole size, as QEMU's do.
        let layers: Vec<String> = chain[top_at..base_at].to_vec();
        let total = if overlay.is_none() {
            allocated_bytes(graph, &layers)?
        } else {
            graph.size(&top)?
        };
        let mut users = Vec::new();
        use crate::graph::Perm::*;
        let most = PermSet::of(&[ConsistentRead, Write, WriteUnchanged]);
        let was_read_only = graph.is_read_only(&base)?;
        // A base smaller than the top is grown as the job starts: the job's writer on the
        // base asks for resize as well, from the start.
        let grows = match (graph.size(&top), graph.size(&base)) {
            (Ok(t), Ok(b)) => b < t,
            _ => false,
        };
        let resize = if grows {
            PermSet::of(&[Resize])
        } else {
            PermSet::NONE
        };
        let mut filter: Option<(String, String)> = None;
        // An active commit is a mirror of the top into the base: the base is opened
        // read-write and its filter goes above the top before the job exists (a base that
        // cannot be reopened fails before any other check). A commit below the active layer
        // is a job first.
        if overlay.is_none() {
            graph.set_read_only(&base, false)?;
            if let Err(e) = self.filter_name_then_id(graph, opts, false) {
                let _ = graph.set_read_only(&base, was_read_only);
                return Err(e);
            }
        } else {
            self.check_new_id(&opts.id)?;
        }
        let links = (|| -> Result<()> {
            if overlay.is_none() {
                // Its filter above the top, the job's links, and a writer on the base
                // (opened read-write already).
                let f = graph.insert_job_filter(
                    &top,
                    Driver::CommitActiveTop,
                    opts.filter_node_name.as_deref(),
                    None,
                )?;
                filter = Some((f.clone(), top.clone()));
                Self::attach_all(
                    graph,
                    &mut users,
                    opts,
                    JobKind::Commit,
                    &[
                        (&f, "main node", (PermSet::of(&[ConsistentRead]), most)),
                        (&top, "source", (PermSet::NONE, most)),
                        (&base, "target", (PermSet::NONE, PermSet::ALL)),
                    ],
                )?;
                Self::attach_intermediates(graph, &mut users, opts, &chain[top_at + 1..base_at])?;
                let granularity = crate::bitmap::DEFAULT_GRANULARITY;
                graph.add_job_bitmaps(&f, 1, granularity);
                Self::attach_backend(
                    graph,
                    &mut users,
                    &base,
                    opts,
                    (PermSet::of(&[Write]).union(resize), most),
                )
            } else {
                // The job on the device, a commit_top filter above the top (in its overlay's
                // place), the layers in between and the base, and block backends on the base
                // (writing, opened read-write first) and on the top.
                Self::attach(
                    graph,
                    &mut users,
                    device,
                    opts,
                    JobKind::Commit,
                    "main node",
                    (PermSet::NONE, PermSet::ALL),
                )?;
                let f = graph.insert_job_filter(
                    &top,
                    Driver::CommitTop,
                    opts.filter_node_name.as_deref(),
                    None,
                )?;
                filter = Some((f, top.clone()));
                Self::attach_intermediates(graph, &mut users, opts, &chain[top_at..base_at])?;
                Self::attach(
                    graph,
                    &mut users,
                    &base,
                    opts,
                    JobKind::Commit,
                    "base",
                    (PermSet::NONE, PermSet::ALL),
                )?;
                graph.set_read_only(&base, false)?;
                let unchanged = PermSet::of(&[ConsistentRead, WriteUnchanged]);
                let writer = (
                    PermSet::of(&[ConsistentRead, Write]).union(resize),
                    unchanged,
                );
                Self::attach_backend(graph, &mut users, &base, opts, writer)?;
                Self::attach_backend(graph, &mut users, &top, opts, (PermSet::NONE, PermSet::ALL))
            }
        })()
        .and_then(|()| opts.check_speed());
        if let Err(e) = links {
            Self::undo_start(graph, &opts.id, users, filter.as_ref());
            let _ = graph.set_read_only(&base, was_read_only);
            return Err(self.failed_early(&opts.id, e));
        }
        graph.block(device, &opts.id, &Self::in_use_reason(JobKind::Commit));
        let work = Work::Commit {
            top,
            base: base.clone(),
            overlay: overlay.clone(),
        };
        self.rank(graph);
        self.push(opts, JobKind::Commit, work, total, users);
        self.jobs[0].filter = filter;
        if overlay.is_none() {
            self.show_remaining(graph, 0);
        }
        // The base is read-only again when the job ends (an active commit that completes
        // makes it the active layer, writable, afterwards).
        if was_read_only {
            self.jobs[0].reopened = Some(base);
        }
        Ok(())
    }

    /// `blockdev-mirror`: copies `device` into `target`; ready once in sync, and `complete`
    /// pivots the device's users to the target.
    pub fn start_mirror(
        &mut self,
        graph: &mut BlockGraph,
        opts: &JobOptions,
        device: &str,
        target: &str,
        sync: SyncMode,
    ) -> Result<()> {
        self.start_copy(graph, opts, JobKind::Mirror, device, target, sync, None)
    }

    /// `blockdev-backup`: copies `device` into `target` once (what a bitmap marks, with one).
    pub fn start_backup(
        &mut self,
        graph: &mut BlockGraph,
        opts: &JobOptions,
        device: &str,
        target: &str,
        sync: SyncMode,
        bitmap: &BackupBitmap,
    ) -> Result<()> {
        self.start_copy(
            graph,
            opts,
            JobKind::Backup,
            device,
            target,
            sync,
            Some(bitmap),
        )
    }

    /// A backup's bitmap checks, in QEMU's order and words: the bitmap and how to end with it.
    fn check_backup_bitmap(
        graph: &BlockGraph,
        device: &str,
        sync: SyncMode,
        b: &BackupBitmap,
    ) -> Result<Option<(String, BitmapMode)>> {
        if let (Some(word), None) = (b.bitmap_sync, &b.bitmap) {
            return Err(Error::generic(format!(
                "must provide a valid bitmap name for '{word}' sync mode"
            )));
        }
        let Some(name) = &b.bitmap else {
            if b.mode.is_some() {
                return Err(Error::generic(
                    "Cannot specify bitmap sync mode without a bitmap",
                ));
            }
            return Ok(None);
        };
        let bitmap = graph
            .bitmap(device, name)
            .map_err(|_| Error::generic(format!("Bitmap '{name}' could not be found")))?;
        let mode = match (b.bitmap_sync, b.mode) {
            (Some("incremental"), Some(m)) if m != BitmapMode::OnSuccess => {
                return Err(Error::generic(
                    "Bitmap sync mode must be 'on-success' when using sync mode 'incremental'",
                ))
            }
            (Some("incremental"), _) => BitmapMode::OnSuccess,
            (_, Some(m)) => m,
            (_, None) => {
                return Err(Error::generic(
                    "Bitmap sync mode must be given when providing a bitmap",
                ))
            }
        };
        if bitmap.busy {
            return Err(crate::bitmap::in_use(name));
        }
        let sync_word = match sync {
            SyncMode::Full if b.bitmap_sync.is_none() => Some("full"),
            SyncMode::Top => Some("top"),
            _ => None,
        };
        if let (Some(w), BitmapMode::Never) = (sync_word, mode) {
            return Err(Error::generic(format!(
                "Bitmap sync mode 'never' has no meaningful effect when combined with sync mode '{w}'"
            )));
        }
        Ok(Some((name.clone(), mode)))
    }

    #[allow(clippy::too_many_arguments)]
    fn start_copy(
        &mut self,
        graph: &mut BlockGraph,
        opts: &JobOptions,
        kind: JobKind,
        device: &str,
        target: &str,
        sync: SyncMode,
        backup_bitmap: Option<&BackupBitmap>,
    ) -> Result<()> {
        graph.require(device)?;
        // A mirror's source must be a root, which is checked before its target is looked up.
        if kind == JobKind::Mirror && !graph.is_root(device) {
            return Err(Error::generic("Need a root block node"));
        }
        graph.require(target)?;
        let bitmap = match backup_bitmap {
            Some(b) => Self::check_backup_bitmap(graph, device, sync, b)?,
            None => None,
        };
        let granularity = match kind {
            JobKind::Mirror => mirror_granularity(graph, target, opts.granularity)?,
            _ => crate::bitmap::DEFAULT_GRANULARITY,
        };
        if device == target {
            return Err(Error::generic(if kind == JobKind::Mirror {
                "Can't mirror node into itself"
            } else {
                "Source and target cannot be the same"
            }));
        }
        if kind == JobKind::Backup {
            // A backing file may be a backup's source or target.
            graph.check_job_blocked(device)?;
            graph.check_job_blocked(target)?;
        } else {
            graph.check_blocked(device)?;
            graph.check_blocked(target)?;
        }
        let size = graph.size(device)?;
        let same_size = graph.size(target)? == size;
        // A backup compares the sizes first; a mirror starts, and fails once it runs.
        let different = || Error::generic("Source and target image have different sizes");
        if kind == JobKind::Backup && !same_size {
            return Err(different());
        }
        // A backup's length is worked out with its plan, once it has its links.
        let total = match sync {
            _ if !same_size || kind == JobKind::Backup => 0,
            SyncMode::None => 0,
            _ => size,
        };
        let mut users = Vec::new();
        use crate::graph::Perm::*;
        let most = PermSet::of(&[ConsistentRead, Write, WriteUnchanged]);
        let read = PermSet::of(&[ConsistentRead]);
        let write = PermSet::of(&[Write]);
        // The filter goes in before the job exists (a refused name announces no job, nor
        // does a backup's refused filter); a mirror's filter takes its permissions once the
        // job was announced.
        let (driver, filter_target) = if kind == JobKind::Mirror {
            (Driver::MirrorTop, None)
        } else {
            (Driver::CopyBeforeWrite, Some(target))
        };
        let f = if kind == JobKind::Backup {
            let f = self.filter_then_id(graph, opts, device, driver, filter_target)?;
            // The job is announced, then its filter takes the source's place.
            if let Err(e) = graph.place_job_filter(&f, device) {
                return Err(self.backup_failed(&opts.id, e));
            }
            f
        } else {
            self.filter_name_then_id(graph, opts, false)?;
            let name = opts.filter_node_name.as_deref();
            match graph.insert_job_filter(device, driver, name, filter_target) {
                Ok(f) => f,
                // Refused as the filter takes the device's place: as at the source link.
                Err(e) => return Err(self.failed_after_links(&opts.id, e, 1)),
            }
        };
        let filter = (f.clone(), device.to_string());
        // How many links the job held when one was refused.
        let mut held = 0;
        let links = if kind == JobKind::Mirror {
            // The job's links, then a writer on the target.
            (|| -> Result<()> {
                for (node, role, perms) in [
                    (f.as_str(), "main node", (read, most)),
                    (device, "source", (PermSet::NONE, most)),
                    (target, "target", (PermSet::NONE, PermSet::ALL)),
                ] {
                    Self::attach(graph, &mut users, node, opts, kind, role, perms)?;
                    held += 1;
                }
                Self::attach_backend(
                    graph,
                    &mut users,
                    target,
                    opts,
                    (write, PermSet::of(&[WriteUnchanged])),
                )?;
                held += 1;
                Ok(())
            })()
        } else {
            Self::attach_all(
                graph,
                &mut users,
                opts,
                kind,
                &[
                    (&f, "main node", (PermSet::NONE, PermSet::ALL)),
                    (target, "target", (PermSet::NONE, PermSet::ALL)),
                ],
            )
        }
        .and_then(|()| opts.check_speed());
        if let Err(e) = links {
            Self::undo_start(graph, &opts.id, users, Some(&filter));
            return Err(if kind == JobKind::Mirror {
                self.failed_after_links(&opts.id, e, held)
            } else {
                self.backup_failed(&opts.id, e)
            });
        }
        if let Some((b, _)) = &bitmap {
            graph.bitmap_freeze(device, b)?;
        }
        // The filter's own bitmaps: what is left to copy (and, for a backup, two more).
        let count = if kind == JobKind::Mirror { 1 } else { 3 };
        graph.add_job_bitmaps(&f, count, granularity);
        if kind == JobKind::Backup {
            graph.set_job_bitmap_full(&f);
        }
        let writes = (kind == JobKind::Mirror).then(|| {
            let w = MirrorWrites::new(granularity);
            graph.set_mirror_writes(&f, Some(w.clone()));
            w
        });
        if kind == JobKind::Mirror {
            graph.block(device, &opts.id, &Self::in_use_reason(kind));
        }
        // A backup's source stays free for other operations (another backup from it, a
        // stream into it): its job holds the filter above it and the target.
        graph.block(target, &opts.id, &Self::in_use_reason(kind));
        let plan = (kind == JobKind::Backup).then(|| {
            let marks = bitmap.as_ref().map(|(b, _)| b.as_str());
            backup_plan(graph, device, target, sync, marks)
        });
        let total = plan.as_ref().map_or(total, |p| p.total);
        let (source, target) = (device.to_string(), target.to_string());
        let work = if kind == JobKind::Mirror {
            Work::Mirror {
                source,
                target,
                sync,
            }
        } else {
            Work::Backup {
                source,
                target,
                sync,
                bitmap,
            }
        };
        self.rank(graph);
        self.push(opts, kind, work, total, users);
        self.jobs[0].filter = Some(filter);
        if let Some(p) = plan {
            let j = &mut self.jobs[0];
            j.chunks = Some(p.chunks.iter().map(|(s, e)| e - s).collect());
            j.plan = Some(p.chunks);
            j.endless = p.endless;
        }
        self.jobs[0].writes = writes;
        self.note_copied(0);
        self.show_remaining(graph, 0);
        Ok(())
    }

    /// `blockdev-create` for a file plus raw or qcow2 format: the file is written when the job
    /// runs. Never auto-dismissed, as QEMU's create jobs.
    pub fn start_create(&mut self, id: &str, path: PathBuf, options: CreateOptions) -> Result<()> {
        self.start_create_on(id, None, path, options)
    }

    /// `blockdev-create` whose file node does not exist: the job starts all the same and
    /// fails with `error` when it runs, as QEMU's looks the node up only then.
    pub fn start_create_failing(&mut self, id: &str, error: &str) -> Result<()> {
        self.push_create(
            id,
            Work::Create {
                path: PathBuf::new(),
                options: CreateOptions::new(ImageFormat::Raw, 0),
                node: None,
                fails: Some(error.to_string()),
            },
        )
    }

    /// `blockdev-create` of an image format over `node` (the file it opened at `path`): the
    /// options are checked, then the node is opened to write and resize it, when the job runs;
    /// a failure there ends the job with the error.
    pub fn start_create_on(
        &mut self,
        id: &str,
        node: Option<String>,
        path: PathBuf,
        options: CreateOptions,
    ) -> Result<()> {
        self.push_create(
            id,
            Work::Create {
                path,
                options,
                node,
                fails: None,
            },
        )
    }

    /// A `blockdev-create` job doing `work`: not dismissed on its own, one unit of progress.
    fn push_create(&mut self, id: &str, work: Work) -> Result<()> {
        self.check_new_id(id)?;
        let mut opts = JobOptions::new(id);
        opts.auto_dismiss = false;
        self.push(&opts, JobKind::Create, work, 1, Vec::new());
        Ok(())
    }

    /// Advances every running job to `now_ns` on the caller's clock: progress at the speed
    /// limit (or the unlimited rate), and the work's end when progress is complete.
    pub fn advance(&mut self, graph: &mut BlockGraph, now_ns: u64) {
        self.now_ns = self.now_ns.max(now_ns);
        let mut i = 0;
        while i < self.jobs.len() {
            let id = self.jobs[i].id.clone();
            self.advance_one(graph, i, now_ns);
            // The job may have been dismissed; find where the next one is.
            i = match self.jobs.iter().position(|j| j.id == id) {
                Some(p) => p + 1,
                None => i,
            };
        }
    }

    /// When the first running job's run phase ends on the caller's clock (the next time
    /// [`Jobs::advance`] changes more than progress figures), if one runs.
    pub fn next_deadline(&self) -> Option<u64> {
        self.jobs
            .iter()
            .filter(|j| j.status == JobStatus::Running && !j.endless)
            .map(|j| {
                if j.speed > 0 {
                    return j.limited_end(self.now_ns);
                }
                let rate = match j.speed {
                    0 => self.unlimited_rate,
                    s => s,
                } as u128;
                let need = (j.total.saturating_sub(j.current) as u128 * 1_000_000_000)
                    .saturating_sub(j.carry);
                let dt = need.div_ceil(rate);
                let from = j.last_ns.unwrap_or(self.now_ns) as u128;
                u64::try_from(from + dt).unwrap_or(u64::MAX)
            })
            .min()
    }

    fn advance_one(&mut self, graph: &mut BlockGraph, i: usize, now_ns: u64) {
        let rate = match self.jobs[i].speed {
            0 => self.unlimited_rate,
            s => s,
        };
        let file_io = match &self.jobs[i].work {
            Work::Mirror { source, target, .. } | Work::Backup { source, target, .. } => {
                [source, target]
                    .iter()
                    .any(|n| !matches!(graph.driver(n), Ok(Driver::NullCo | Driver::NullAio)))
            }
            _ => true,
        };
        let j = &mut self.jobs[i];
        j.file_io = file_io;
        let last = j.last_ns.replace(now_ns).unwrap_or(now_ns);
        if j.status != JobStatus::Running || j.endless {
            // (A backup without a sync mode copies nothing of its own.)
            // Time a job does not run earns it no chunks: once it runs again, its next
            // chunk goes at once.
            if let Some(at) = j.next_chunk_ns.as_mut() {
                *at = (*at).max(now_ns);
            }
            // A ready mirror copies what was written through its filter since it last
            // looked, at once.
            // What was mirrored at once counts even while the job is paused.
            if j.status == JobStatus::Ready {
                self.take_writes(graph, i);
                self.show_remaining(graph, i);
            } else if let Some(w) = &j.writes {
                let synced = w.take_synced();
                j.total = j.total.saturating_add(synced);
                j.current = j.current.saturating_add(synced);
            }
            return;
        }
        if j.speed > 0 {
            // The first chunk goes when the job started running (or got its limit), not
            // when the clock is next looked at.
            j.next_chunk_ns.get_or_insert(last);
            let mut done = j.limited_steps(now_ns);
            // Due again after its last chunk, a mirror first copies what was written
            // where it had copied: a chunk more, and a wait for it.
            if done && self.take_writes(graph, i) {
                done = self.jobs[i].limited_steps(now_ns);
            }
            self.note_copied(i);
            self.show_remaining(graph, i);
            if !self.move_data(graph, i, false) {
                return;
            }
            if done {
                self.run_finished(graph, i);
            }
            return;
        }
        let dt = now_ns.saturating_sub(last) as u128;
        j.carry += dt * rate as u128;
        let bytes = (j.carry / 1_000_000_000) as u64;
        j.carry %= 1_000_000_000;
        j.current = j.current.saturating_add(bytes).min(j.total);
        let mut done = j.current >= j.total;
        if done && self.take_writes(graph, i) {
            done = false;
        }
        self.note_copied(i);
        self.show_remaining(graph, i);
        if !self.move_data(graph, i, false) {
            return;
        }
        if done {
            self.run_finished(graph, i);
        }
    }

    /// Tells a mirror's record of writes how far the job has copied its disk: writes below
    /// count, the rest is copied anyway.
    fn note_copied(&self, i: usize) {
        let j = &self.jobs[i];
        if let Some(w) = &j.writes {
            let done = j.current >= j.total || !j.counts_offsets();
            w.set_copied_below(if done { u64::MAX } else { j.current });
        }
    }

    /// A mirror takes what was written through its filter since it last looked: it copies
    /// it to its target, and its progress grows by it (a ready job's done at once, a
    /// running one's still to do). Whether there was any.
    fn take_writes(&mut self, graph: &mut BlockGraph, i: usize) -> bool {
        let Some(w) = self.jobs[i].writes.clone() else {
            return false;
        };
        let Work::Mirror { source, target, .. } = &self.jobs[i].work else {
            return false;
        };
        let (source, target) = (source.clone(), target.clone());
        let size = graph.size(&source).unwrap_or(0);
        let taken = w.take(size);
        let bytes = taken.bytes;
        if !taken.ranges.is_empty() {
            let before = graph.lengths_before(&target);
            let copied = copy_ranges(graph, &source, &target, SyncMode::Full, None, &taken.ranges)
                .and_then(|()| graph.backend(&target)?.flush());
            graph.note_written(before);
            if let Err(e) = copied {
                self.jobs[i].error = Some(e.desc);
                self.abort(graph, i, false);
                return false;
            }
        }
        if bytes == 0 {
            return false;
        }
        let j = &mut self.jobs[i];
        j.total = j.total.saturating_add(bytes);
        if j.status != JobStatus::Running {
            j.current = j.current.saturating_add(bytes);
        }
        true
    }

    /// A mirror in the `write-blocking` mode that is actively synced writes what goes
    /// through its filter to its target at once; otherwise only marks it.
    fn mirror_at_once(&self, graph: &BlockGraph, i: usize) {
        let j = &self.jobs[i];
        let (Some(w), Work::Mirror { target, .. }) = (&j.writes, &j.work) else {
            return;
        };
        let at_once = match j.actively_synced {
            true => graph.backend(target).ok(),
            false => None,
        };
        w.set_mirrored_at_once(at_once);
    }

    /// Moves job `i`'s data as far as its progress goes (`all`: the whole plan, as its run
    /// phase ends). A failure fails the job: false then.
    fn move_data(&mut self, graph: &mut BlockGraph, i: usize, all: bool) -> bool {
        let r = self.move_data_inner(graph, i, all);
        if let Err(e) = r {
            self.jobs[i].error = Some(e.desc);
            self.abort(graph, i, false);
            return false;
        }
        true
    }

    fn move_data_inner(&mut self, graph: &mut BlockGraph, i: usize, all: bool) -> Result<()> {
        let j = &self.jobs[i];
        if matches!(j.work, Work::Create { .. }) || (j.current == 0 && !all) {
            return Ok(());
        }
        if j.plan.is_none() {
            let plan = data_plan(graph, &j.work)?;
            self.jobs[i].plan = Some(plan);
        }
        let j = &self.jobs[i];
        let plan = j.plan.as_deref().unwrap_or_default();
        let plan_len: u64 = plan.iter().map(|(s, e)| e - s).sum();
        let target = if all || j.current >= j.total {
            plan_len
        } else if j.counts_offsets() {
            plan.iter()
                .map(|&(s, e)| e.min(j.current).saturating_sub(s))
                .sum()
        } else {
            u64::try_from(j.current as u128 * plan_len as u128 / j.total.max(1) as u128)
                .unwrap_or(plan_len)
        };
        // A stream copies whole pieces: its plan is made of them.
        let target = if matches!(j.work, Work::Stream { .. }) {
            let mut end = 0;
            for &(s, e) in plan {
                if end >= target {
                    break;
                }
                end += e - s;
            }
            end
        } else {
            target
        };
        if target <= j.moved {
            return Ok(());
        }
        // The plan's bytes [moved, target) as disk ranges.
        let mut ranges = Vec::new();
        let mut pos = 0;
        for &(s, e) in plan {
            let (a, b) = (pos, pos + (e - s));
            let from = a.max(j.moved);
            let to = b.min(target);
            if from < to {
                ranges.push((s + (from - a), s + (to - a)));
            }
            pos = b;
        }
        let work = j.work.clone();
        // The files below the node written into may grow with this chunk.
        let before = work.written_node().map(|n| graph.lengths_before(n));
        match &work {
            Work::Stream { top, base } => stream_ranges(graph, top, base.as_deref(), &ranges)?,
            Work::Commit { top, base, .. } => {
                grow_base(graph, top, base)?;
                commit_ranges(graph, top, base, &ranges)?
            }
            Work::Mirror {
                source,
                target,
                sync,
            } => {
                // A null source that does not read as zeroes has nothing a mirror copies
                // (measured on QEMU 10.0.2: the target is left as it was).
                if !graph.is_unzeroed_null(source) {
                    copy_ranges(graph, source, target, *sync, None, &ranges)?
                }
            }
            Work::Backup {
                source,
                target,
                sync,
                bitmap,
            } => copy_ranges(
                graph,
                source,
                target,
                *sync,
                bitmap.as_ref().map(|b| b.0.as_str()),
                &ranges,
            )?,
            Work::Create { .. } => {}
        }
        if let Some(before) = before {
            graph.note_written(before);
        }
        self.jobs[i].moved = target;
        Ok(())
    }

    /// The run phase is over: do the data work, then become ready or go on to finalize.
    fn run_finished(&mut self, graph: &mut BlockGraph, i: usize) {
        let work = self.jobs[i].work.clone();
        // The node the data work writes into: the files below it may grow.
        let before = work.written_node().map(|n| graph.lengths_before(n));
        let result = match &work {
            Work::Stream { top, .. } => self
                .move_data_inner(graph, i, true)
                .and_then(|()| flush_node(graph, top)),
            // Through the base's data path: a base without an image of its own (a null
            // node) takes the writes and the flush too.
            Work::Commit { top, base, .. } => grow_base(graph, top, base)
                .and_then(|()| self.move_data_inner(graph, i, true))
                .and_then(|()| graph.backend(base)?.flush()),
            Work::Mirror { source, target, .. } => match (graph.size(source), graph.size(target)) {
                (Ok(a), Ok(b)) if a != b => Err(Error::generic(
                    "Source and target image have different sizes",
                )),
                _ => self
                    .move_data_inner(graph, i, true)
                    .and_then(|()| graph.backend(target)?.flush()),
            },
            Work::Backup { target, .. } => self
                .move_data_inner(graph, i, true)
                .and_then(|()| graph.backend(target)?.flush()),
            Work::Create { fails: Some(e), .. } => Err(Error::generic(e.clone())),
            Work::Create {
                path,
                options,
                node,
                ..
            } => image::check_create_options(options)
                .and_then(|()| match node {
                    Some(n) => open_to_create(graph, n, &self.jobs[i].id)
                        .and_then(|()| create_over_host_file(graph, n, options)),
                    None => Ok(()),
                })
                .and_then(|()| {
                    let created = match node {
                        // Creating the image writes its file from the start to where the
                        // image ends (a longer file keeps its length, but its file node
                        // counts the writes only: measured on qemu-storage-daemon 10.0.2).
                        Some(n) => image::create_in_place(path, options).map(|end| {
                            let len = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
                            let written = match options.format {
                                ImageFormat::Qcow2 => end.min(len),
                                ImageFormat::Raw => len,
                            };
                            graph.note_file_written(n, written);
                            graph.note_written_to(n, end);
                            // QEMU opens the new image twice to finish it, under two
                            // generated names.
                            if options.format == ImageFormat::Qcow2 {
                                graph.generate_name();
                                graph.generate_name();
                            }
                        }),
                        None => image::create(path, options),
                    };
                    created.map_err(|e| {
                        let reason = e
                            .desc
                            .split_once(": ")
                            .map(|(_, r)| r.to_string())
                            .unwrap_or(e.desc.clone());
                        Error::generic(format!("Could not create '{}': {reason}", path.display()))
                    })
                }),
        };
        if let Some(before) = before {
            graph.note_written(before);
        }
        if let Err(e) = result {
            self.jobs[i].error = Some(e.desc);
            self.abort(graph, i, false);
            return;
        }
        if let Work::Create {
            node: Some(_),
            options,
            ..
        } = &work
        {
            if options.format == ImageFormat::Qcow2 {
                // Formatting a qcow2 image over a node (its block device opened and closed,
                // the new image opened twice to write its tables, resized and closed)
                // drains the whole graph fourteen times, as measured on QEMU 10.0.
                self.drain_others(QCOW2_CREATE_DRAINS, Some(i));
            }
        }
        let becomes_ready = matches!(work, Work::Mirror { .. })
            || matches!(work, Work::Commit { overlay: None, .. });
        if becomes_ready {
            self.set_status(i, JobStatus::Ready);
            let j = &mut self.jobs[i];
            j.actively_synced = j.write_blocking;
            self.note_copied(i);
            if let Some(w) = &self.jobs[i].writes {
                w.set_ready(true);
            }
            self.mirror_at_once(graph, i);
            let info = self.block_info(i);
            self.events.push(JobEvent::Ready(info));
        } else {
            self.enter_pending(graph, i);
        }
    }

    fn enter_pending(&mut self, graph: &mut BlockGraph, i: usize) {
        self.set_status(i, JobStatus::Waiting);
        self.set_status(i, JobStatus::Pending);
        if self.jobs[i].auto_finalize {
            self.finalize_at(graph, i);
        } else if self.jobs[i].kind.is_block_job() {
            let j = &self.jobs[i];
            self.events.push(JobEvent::Pending {
                kind: j.kind,
                id: j.id.clone(),
            });
        }
    }

    /// Applies the job's graph change, then concludes (and is dismissed when auto-dismiss).
    fn finalize_at(&mut self, graph: &mut BlockGraph, i: usize) {
        let soft = self.jobs[i].soft_cancel;
        // A mirror copies what was written through its filter since it last looked.
        self.take_writes(graph, i);
        // The job's links and filter go first: its node's parents are back on it.
        self.release(graph, i);
        let result = match self.jobs[i].work.clone() {
            Work::Stream { top, base } => stream_finish(graph, &top, base.as_deref()),
            Work::Commit { top, base, overlay } => {
                commit_finish(graph, &top, &base, overlay.as_deref())
            }
            Work::Mirror { source, target, .. } if !soft => graph
                .backend(&target)
                .and_then(|t| t.flush())
                .and_then(|()| graph.move_users(&source, &target)),
            Work::Backup {
                source,
                bitmap: Some((b, mode)),
                ..
            } => {
                // Success: the bitmap starts over from the writes since, unless `never`.
                graph.bitmap_thaw(&source, &b, mode != BitmapMode::Never, None);
                Ok(())
            }
            _ => Ok(()),
        };
        if let Err(e) = result {
            self.jobs[i].error = Some(e.desc);
            self.abort(graph, i, false);
            return;
        }
        self.release(graph, i);
        // The graph change and the job's filter and links going, as measured on QEMU 10.0:
        // a mirror's pivot (or an active commit's) five drains, a mirror cancelled once
        // ready four, a backup three, a stream two.
        let drains = match &self.jobs[i].work {
            Work::Stream { .. } => 2,
            Work::Mirror { .. } if soft => 4,
            Work::Mirror { .. } | Work::Commit { overlay: None, .. } => 5,
            Work::Backup { .. } => 3,
            _ => 0,
        };
        self.drain(drains);
        if self.jobs[i].kind.is_block_job() {
            let info = self.block_info(i);
            self.events.push(JobEvent::Completed(info));
        }
        self.conclude(i);
    }

    /// Lets go of the job's links and takes its filter out (idempotent).
    fn release(&mut self, graph: &mut BlockGraph, i: usize) {
        let users = std::mem::take(&mut self.jobs[i].users);
        for u in users {
            graph.detach_user(u);
        }
        if let Some((f, below)) = self.jobs[i].filter.take() {
            graph.remove_job_filter(&f, &below);
        }
        if let Some(b) = self.jobs[i].reopened.take() {
            let _ = graph.set_read_only(&b, true);
        }
        graph.unblock_all(&self.jobs[i].id);
    }

    /// A copy job's filter shows in its bitmap what is left to copy.
    fn show_remaining(&self, graph: &BlockGraph, i: usize) {
        let j = &self.jobs[i];
        if let Some((f, _)) = &j.filter {
            graph.set_job_bitmap_count(f, j.total.saturating_sub(j.current));
        }
    }

    fn conclude(&mut self, i: usize) {
        self.set_status(i, JobStatus::Concluded);
        if self.jobs[i].auto_dismiss {
            self.set_status(i, JobStatus::Null);
            let j = self.jobs.remove(i);
            if matches!(j.work, Work::Stream { .. }) {
                // Its links on the nodes go with it.
                self.drain(2);
            } else {
                self.drain(dismiss_drains(&j.work));
            }
        }
    }

    /// Aborting: cancelled (`cancelled` true) or failed (error set).
    fn abort(&mut self, graph: &mut BlockGraph, i: usize, cancelled: bool) {
        // A job a failed transaction cancels before it started reports no end of its own.
        let started = self.jobs[i].status != JobStatus::Created;
        if matches!(self.jobs[i].work, Work::Create { node: Some(_), .. }) {
            // The block device it opened on its node went (the job itself runs on).
            self.drain_others(1, Some(i));
        }
        // A paused job runs again to abort (a ready one in standby is ready again first).
        match self.jobs[i].status {
            JobStatus::Paused => self.set_status(i, JobStatus::Running),
            JobStatus::Standby => self.set_status(i, JobStatus::Ready),
            _ => {}
        }
        self.set_status(i, JobStatus::Aborting);
        self.release(graph, i);
        match self.jobs[i].kind {
            // Its filter and links go.
            JobKind::Mirror => self.drain(4),
            JobKind::Backup => self.drain(3),
            _ => {}
        }
        if let Work::Backup {
            source,
            bitmap: Some((b, mode)),
            ..
        } = &self.jobs[i].work
        {
            // The bitmap keeps what it marked (and the writes since); `always` drops what
            // was copied.
            let copied = (*mode == BitmapMode::Always).then_some(self.jobs[i].current);
            graph.bitmap_thaw(source, b, false, copied);
        }
        if cancelled {
            self.jobs[i].error = Some("Operation canceled".to_string());
        }
        if started && self.jobs[i].kind.is_block_job() {
            let mut info = self.block_info(i);
            if cancelled {
                self.events.push(JobEvent::Cancelled(info));
            } else {
                info.error = self.jobs[i].error.clone();
                self.events.push(JobEvent::Completed(info));
            }
        }
        self.conclude(i);
    }

    /// `job-cancel` / `block-job-cancel`. A ready mirror cancelled without `force` finishes
    /// without pivoting (and reports completion), as QEMU's does.
    pub fn cancel(&mut self, graph: &mut BlockGraph, id: &str, force: bool) -> Result<()> {
        let i = self.index(id)?;
        self.check_verb(i, JobVerb::Cancel)?;
        if !force && self.jobs[i].user_paused {
            // `block-job-cancel`'s own check (`job-cancel` always forces).
            return Err(Error::generic(format!(
                "The block job for device '{id}' is currently paused"
            )));
        }
        let j = &self.jobs[i];
        if !force && j.kind == JobKind::Mirror && j.status == JobStatus::Ready {
            self.jobs[i].soft_cancel = true;
            self.enter_pending(graph, i);
            return Ok(());
        }
        self.abort(graph, i, true);
        Ok(())
    }

    /// `n` drains of the graph (QEMU drains every node when it takes the graph's write lock:
    /// adding, deleting or resizing a node, an export, a transaction, …). Each drain pauses
    /// every job that runs or is ready and that its user has not paused, oldest first (a
    /// ready job goes to standby), then resumes them in the same order.
    pub fn drain(&mut self, n: u32) {
        self.drain_others(n, None);
    }

    /// A drain of one node: only the jobs `ids` (those linked to it or above it) pause and
    /// resume, oldest first.
    pub fn drain_jobs(&mut self, ids: &[String]) {
        let held = self.drain_begin(ids);
        self.drain_end(&held);
    }

    /// Takes the order in which drains of the whole graph pause the jobs from the graph's
    /// links ([`BlockGraph::jobs_by_first_node`]); they resume oldest first.
    pub fn rank(&mut self, graph: &BlockGraph) {
        self.pause_order = graph.jobs_by_first_node();
    }

    /// [`Jobs::drain`] from within job `busy`'s own work, which goes on.
    fn drain_others(&mut self, n: u32, busy: Option<usize>) {
        for _ in 0..n {
            let hit: Vec<usize> = (0..self.jobs.len())
                .rev()
                .filter(|&i| {
                    let j = &self.jobs[i];
                    Some(i) != busy
                        && !j.user_paused
                        && j.quiesced == 0
                        && matches!(j.status, JobStatus::Running | JobStatus::Ready)
                })
                .collect();
            let mut pausing = hit.clone();
            let rank = |i: &usize| {
                let id = &self.jobs[*i].id;
                self.pause_order
                    .iter()
                    .position(|j| j == id)
                    .unwrap_or(usize::MAX)
            };
            pausing.sort_by_key(rank);
            for &i in &pausing {
                let to = match self.jobs[i].status {
                    JobStatus::Ready => JobStatus::Standby,
                    _ => JobStatus::Paused,
                };
                self.set_status(i, to);
            }
            for &i in &hit {
                let to = match self.jobs[i].status {
                    JobStatus::Standby => JobStatus::Ready,
                    _ => JobStatus::Running,
                };
                self.set_status(i, to);
            }
        }
    }

    /// A drain of one node begins: the jobs `ids` (those it reaches, see
    /// [`crate::graph::BlockGraph::jobs_drained_with`]) are held until [`Jobs::drain_end`];
    /// those that run or are ready, and that their user has not paused, pause (a ready one
    /// goes to standby) unless another section holds them already, oldest first. Drains of
    /// the whole graph meanwhile pass them by. Returns the jobs it holds, for
    /// [`Jobs::drain_end`].
    pub fn drain_begin(&mut self, ids: &[String]) -> Vec<String> {
        let hit: Vec<usize> = (0..self.jobs.len())
            .rev()
            .filter(|&i| ids.contains(&self.jobs[i].id))
            .collect();
        let mut held = Vec::new();
        for i in hit {
            let j = &mut self.jobs[i];
            j.quiesced += 1;
            held.push(j.id.clone());
            if j.quiesced > 1 || j.user_paused {
                continue;
            }
            let to = match j.status {
                JobStatus::Ready => JobStatus::Standby,
                JobStatus::Running => JobStatus::Paused,
                _ => continue,
            };
            self.set_status(i, to);
        }
        held
    }

    /// A section [`Jobs::drain_begin`] began ends: the jobs no other section holds go on as
    /// they were, in the order given.
    pub fn drain_end(&mut self, held: &[String]) {
        for id in held {
            let Ok(i) = self.index(id) else { continue };
            let j = &mut self.jobs[i];
            j.quiesced = j.quiesced.saturating_sub(1);
            if j.quiesced > 0 || j.user_paused {
                continue;
            }
            let to = match j.status {
                JobStatus::Standby => JobStatus::Ready,
                JobStatus::Paused => JobStatus::Running,
                _ => continue,
            };
            self.set_status(i, to);
        }
    }

    pub fn pause(&mut self, id: &str) -> Result<()> {
        let i = self.index(id)?;
        self.check_verb(i, JobVerb::Pause)?;
        if self.jobs[i].user_paused {
            return Err(Error::generic("Job is already paused"));
        }
        self.jobs[i].user_paused = true;
        match self.jobs[i].status {
            JobStatus::Running => self.set_status(i, JobStatus::Paused),
            JobStatus::Ready => self.set_status(i, JobStatus::Standby),
            _ => {}
        }
        Ok(())
    }

    pub fn resume(&mut self, graph: &mut BlockGraph, id: &str) -> Result<()> {
        let i = self.index(id)?;
        // QEMU asks whether the user paused the job before it asks the state table.
        if !self.jobs[i].user_paused {
            return Err(Error::generic("Can't resume a job that was not paused"));
        }
        self.check_verb(i, JobVerb::Resume)?;
        self.jobs[i].user_paused = false;
        if self.jobs[i].quiesced > 0 {
            // A drained section still holds it: it goes on when the section ends.
            return Ok(());
        }
        match self.jobs[i].status {
            JobStatus::Paused => self.set_status(i, JobStatus::Running),
            JobStatus::Standby => {
                self.set_status(i, JobStatus::Ready);
                if self.jobs[i].complete_asked {
                    self.enter_pending(graph, i);
                }
            }
            _ => {}
        }
        Ok(())
    }

    pub fn set_speed(&mut self, id: &str, speed: u64) -> Result<()> {
        let i = self.index(id)?;
        self.check_verb(i, JobVerb::SetSpeed)?;
        let now = self.now_ns;
        let j = &mut self.jobs[i];
        if j.speed == 0 && speed > 0 {
            // From here on in chunks, the next at once.
            j.next_chunk_ns = None;
            j.batch = 0;
        }
        j.speed = speed;
        j.last_ns = Some(now);
        Ok(())
    }

    /// `job-complete`: a ready mirror or active commit pivots and finishes; one its user
    /// paused (standby) does so once resumed (asking again changes nothing).
    pub fn complete(&mut self, graph: &mut BlockGraph, id: &str) -> Result<()> {
        let i = self.index(id)?;
        self.check_verb(i, JobVerb::Complete)?;
        if self.jobs[i].status == JobStatus::Standby {
            self.jobs[i].complete_asked = true;
        } else {
            self.enter_pending(graph, i);
        }
        Ok(())
    }

    pub fn finalize(&mut self, graph: &mut BlockGraph, id: &str) -> Result<()> {
        let i = self.index(id)?;
        self.check_verb(i, JobVerb::Finalize)?;
        self.finalize_at(graph, i);
        Ok(())
    }

    pub fn dismiss(&mut self, id: &str) -> Result<()> {
        let i = self.index(id)?;
        self.check_verb(i, JobVerb::Dismiss)?;
        self.set_status(i, JobStatus::Null);
        let j = self.jobs.remove(i);
        self.drain(dismiss_drains(&j.work));
        Ok(())
    }

    /// `block-job-change` of a mirror's copy mode, with QEMU's checks and words: only from
    /// `background` to `write-blocking` (or to the mode it has). Once the mirror is ready in
    /// `write-blocking` mode it is actively synced.
    pub fn change_copy_mode(
        &mut self,
        graph: &BlockGraph,
        id: &str,
        write_blocking: bool,
    ) -> Result<()> {
        let i = self.index(id)?;
        self.check_verb(i, JobVerb::Change)?;
        let j = &mut self.jobs[i];
        if j.kind != JobKind::Mirror {
            return Err(Error::generic("Job type does not support change"));
        }
        if j.write_blocking == write_blocking {
            return Ok(());
        }
        if !write_blocking {
            return Err(Error::generic(
                "Change to copy mode 'background' is not implemented",
            ));
        }
        j.write_blocking = true;
        j.actively_synced = matches!(j.status, JobStatus::Ready | JobStatus::Standby);
        self.mirror_at_once(graph, i);
        Ok(())
    }

    /// `query-jobs`: newest first.
    pub fn query_jobs(&self) -> Vec<JobInfo> {
        self.jobs
            .iter()
            .map(|j| JobInfo {
                id: j.id.clone(),
                kind: j.kind,
                status: j.status,
                current_progress: j.current,
                total_progress: j.total,
                error: j.error.clone(),
            })
            .collect()
    }

    /// The ids of the block jobs that exist (not dismissed), newest first.
    pub fn block_job_ids(&self) -> Vec<String> {
        self.jobs
            .iter()
            .filter(|j| j.kind.is_block_job())
            .map(|j| j.id.clone())
            .collect()
    }

    /// `query-block-jobs`: the block jobs, newest first.
    pub fn query_block_jobs(&self) -> Vec<BlockJobInfo> {
        self.jobs
            .iter()
            .filter(|j| j.kind.is_block_job())
            .map(|j| BlockJobInfo {
                kind: j.kind,
                device: j.id.clone(),
                len: j.total,
                offset: j.current,
                busy: j.busy(),
                // A mirror (or active commit) that has done its work holds its source
                // drained until it is finalized, which pauses it.
                paused: j.user_paused || (j.status == JobStatus::Pending && j.is_mirror()),
                speed: j.speed,
                io_status: "ok",
                ready: matches!(j.status, JobStatus::Ready | JobStatus::Standby),
                status: j.status,
                auto_finalize: j.auto_finalize,
                auto_dismiss: j.auto_dismiss,
                error: j.error.clone(),
                actively_synced: j.actively_synced,
            })
            .collect()
    }

    pub fn status(&self, id: &str) -> Option<JobStatus> {
        self.jobs.iter().find(|j| j.id == id).map(|j| j.status)
    }
}

/// An image formatted over node `n` is written into the host file below it. Over a null
/// node, whose data reads back as zeroes whatever is written, QEMU writes the image's first
/// three clusters (header, refcount table and block), opens the new image under a generated
/// name and finds no image ("Image is not in qcow2 format"); an image inside another image's
/// disk is not modelled.
fn create_over_host_file(graph: &mut BlockGraph, n: &str, options: &CreateOptions) -> Result<()> {
    match graph.data_holder_driver(n)? {
        // (A raw node over a file node holds that file's data.)
        (_, Driver::File | Driver::Raw) => Ok(()),
        (_, Driver::NullCo | Driver::NullAio) => {
            let cluster = options.cluster_size.unwrap_or(image::DEFAULT_CLUSTER_SIZE);
            graph.note_written_through(n, 3 * cluster);
            graph.generate_name();
            Err(Error::generic("Image is not in qcow2 format"))
        }
        (holder, _) => Err(Error::generic(format!(
            "A qcow2 image inside the disk of node '{holder}' is not supported"
        ))),
    }
}

fn open_to_create(graph: &mut BlockGraph, node: &str, job_id: &str) -> Result<()> {
    let user = graph.attach_user(
        node,
        UserKind::Export(job_id.to_string()),
        PermSet::of(&[Perm::Write, Perm::Resize]),
        PermSet::ALL,
    )?;
    graph.detach_user(user);
    Ok(())
}

fn lock_err() -> Error {
    Error::generic("image lock poisoned")
}

/// Granularity at which commit counts and copies (QEMU's default dirty-bitmap granularity).
const GRANULE: u64 = 64 * 1024;

/// The union of what `layers` (top first) hold themselves, widened to whole granules and cut
/// at `size`.
fn union_allocated(graph: &BlockGraph, layers: &[String], size: u64) -> Result<Vec<(u64, u64)>> {
    let mut all: Vec<(u64, u64)> = Vec::new();
    for l in layers {
        let mut at = 0;
        while at < size {
            let (here, n) = graph.allocated_here(l, at, size - at)?;
            let n = n.min(size - at);
            if here {
                match all.last_mut() {
                    Some(last) if last.1 == at => last.1 = at + n,
                    _ => all.push((at, at + n)),
                }
            }
            at += n;
        }
    }
    let mut widened: Vec<(u64, u64)> = all
        .into_iter()
        .map(|(s, e)| {
            (
                s / GRANULE * GRANULE,
                e.div_ceil(GRANULE).saturating_mul(GRANULE).min(size),
            )
        })
        .filter(|(s, e)| s < e)
        .collect();
    widened.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::new();
    for (s, e) in widened {
        match out.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => out.push((s, e)),
        }
    }
    Ok(out)
}

/// Bytes allocated in any of `layers` (top first), over the first layer's size.
fn allocated_bytes(graph: &BlockGraph, layers: &[String]) -> Result<u64> {
    let Some(first) = layers.first() else {
        return Ok(0);
    };
    let size = graph.size(first)?;
    Ok(union_allocated(graph, layers, size)?
        .iter()
        .map(|(s, e)| e - s)
        .sum())
}

/// Whether any byte of `[off, off+len)` is allocated in this image itself.
fn range_allocated(img: &Image, off: u64, len: u64) -> Result<bool> {
    let end = (off + len).min(img.size());
    let mut at = off;
    while at < end {
        let (here, n) = img.allocated(at, end - at)?;
        if here {
            return Ok(true);
        }
        at += n.max(1);
    }
    Ok(false)
}

/// The disk ranges a job's data work goes over, in order: what the layers a stream or
/// commit takes data from hold, the whole disk for a mirror, a backup's chunks
/// ([`backup_plan`]), nothing for a mirror between different sizes (which fails instead).
fn data_plan(graph: &BlockGraph, work: &Work) -> Result<Vec<(u64, u64)>> {
    match work {
        Work::Stream { top, base } => stream_pieces(graph, top, base.as_deref()),
        Work::Commit { top, base, .. } => {
            let chain = graph.backing_chain(top);
            let base_at = chain
                .iter()
                .position(|n| n == base)
                .ok_or_else(|| Error::generic(format!("Base '{base}' not found")))?;
            union_allocated(graph, &chain[..base_at], graph.size(top)?)
        }
        Work::Mirror { source, target, .. } => {
            let size = graph.size(source)?;
            Ok(if graph.size(target)? != size || size == 0 {
                Vec::new()
            } else {
                vec![(0, size)]
            })
        }
        Work::Backup {
            source,
            target,
            sync,
            bitmap,
        } => {
            let marks = bitmap.as_ref().map(|(b, _)| b.as_str());
            Ok(backup_plan(graph, source, target, *sync, marks).chunks)
        }
        Work::Create { .. } => Ok(Vec::new()),
    }
}

/// What a backup copies and how: its chunks in order and its length.
#[derive(Debug, Clone, PartialEq, Eq)]
struct BackupPlan {
    chunks: Vec<(u64, u64)>,
    total: u64,
    /// `sync` `none`: nothing to copy of its own; it runs until cancelled.
    endless: bool,
}

/// The most a backup copies in one chunk (more with clusters larger than that: one).
const BACKUP_MAX_CHUNK: u64 = 1 << 20;

/// A backup's plan, as QEMU 10.0.2's backup job goes (measured on qemu-storage-daemon): it
/// works in clusters of its own (64 KiB, or the target's larger ones), and its length is
/// what it has to copy in whole clusters: the whole disk (`full`, and `none`, which copies
/// nothing of its own), the clusters with data of the source's own layer (`top`), or those
/// its bitmap marks. It copies each stretch of those in chunks that follow the source's
/// block status ([`BlockGraph::block_status`]): one run of data or of zeroes from one layer,
/// cut down to whole clusters (a run shorter than a cluster makes one cluster; one that
/// reaches the disk's end takes its last cluster in), at most 1 MiB or one larger cluster.
/// A failure to read the source's status gives the whole disk in chunks of the most.
fn backup_plan(
    graph: &BlockGraph,
    source: &str,
    target: &str,
    sync: SyncMode,
    bitmap: Option<&str>,
) -> BackupPlan {
    let cluster = backup_cluster(graph, target);
    let size = graph.size(source).unwrap_or(0);
    let end = size.div_ceil(cluster) * cluster;
    let planned = (|| -> Result<BackupPlan> {
        let stretches = match (sync, bitmap) {
            (SyncMode::None, _) => {
                return Ok(BackupPlan {
                    chunks: Vec::new(),
                    total: end,
                    endless: true,
                })
            }
            (SyncMode::Top, _) => allocated_clusters(graph, source, size, cluster)?,
            (SyncMode::Bitmap, Some(b)) => marked_clusters(graph, source, b, size, cluster)?,
            _ if end > 0 => vec![(0, end)],
            _ => Vec::new(),
        };
        let most = BACKUP_MAX_CHUNK.max(cluster);
        let mut chunks = Vec::new();
        for (s, e) in stretches {
            let mut at = s;
            while at < e {
                let (_, run) = graph.block_status(source, at, e - at)?;
                let n = if at.saturating_add(run) >= size {
                    e - at
                } else if run >= cluster {
                    run / cluster * cluster
                } else {
                    cluster
                };
                let n = n.min(most).min(e - at);
                chunks.push((at, at + n));
                at += n;
            }
        }
        let total = chunks.iter().map(|(s, e)| e - s).sum();
        Ok(BackupPlan {
            chunks,
            total,
            endless: false,
        })
    })();
    planned.unwrap_or_else(|_| {
        let mut chunks = Vec::new();
        let mut at = 0;
        while at < end {
            let n = BACKUP_MAX_CHUNK.max(cluster).min(end - at);
            chunks.push((at, at + n));
            at += n;
        }
        BackupPlan {
            chunks,
            total: end,
            endless: sync == SyncMode::None,
        }
    })
}

/// A backup's cluster: 64 KiB, or the target's cluster when larger.
fn backup_cluster(graph: &BlockGraph, target: &str) -> u64 {
    let target_cluster = graph
        .node_info(target, false)
        .ok()
        .and_then(|i| i.image.cluster_size)
        .unwrap_or(0);
    target_cluster.max(65536)
}

/// Adds `[s, e)` to sorted, merged `ranges` (appended at their end or joined to the last).
fn push_range(ranges: &mut Vec<(u64, u64)>, s: u64, e: u64) {
    match ranges.last_mut() {
        Some(last) if s <= last.1 => last.1 = last.1.max(e),
        _ => ranges.push((s, e)),
    }
}

/// The clusters of `source`'s disk that hold anything of its own layer (data or zero
/// clusters; all of a disk without layers below, such as a raw one).
fn allocated_clusters(
    graph: &BlockGraph,
    source: &str,
    size: u64,
    cluster: u64,
) -> Result<Vec<(u64, u64)>> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < size {
        let (here, n) = graph.allocated_here(source, at, size - at)?;
        let n = n.clamp(1, size - at);
        if here {
            let s = at / cluster * cluster;
            let e = (at + n).div_ceil(cluster).saturating_mul(cluster);
            push_range(&mut out, s, e);
        }
        at += n;
    }
    Ok(out)
}

/// The clusters of the disk that `bitmap` of `source` marks, in part or whole.
fn marked_clusters(
    graph: &BlockGraph,
    source: &str,
    bitmap: &str,
    size: u64,
    cluster: u64,
) -> Result<Vec<(u64, u64)>> {
    let m = graph.bitmap(source, bitmap)?;
    let g = m.granularity.max(1);
    let mut out = Vec::new();
    for bit in 0..size.div_ceil(g) {
        if m.is_set(bit) {
            let (s, e) = (bit * g, ((bit + 1) * g).min(size));
            let s = s / cluster * cluster;
            let e = e.div_ceil(cluster).saturating_mul(cluster);
            push_range(&mut out, s, e);
        }
    }
    Ok(out)
}

/// Flushes what a job wrote into `node` (a null node has nothing to flush).
fn flush_node(graph: &BlockGraph, node: &str) -> Result<()> {
    graph.backend(node)?.flush()
}

/// The layers a stream into `top` takes data from: those below it down to `base` (all
/// without a base).
fn stream_layers(graph: &BlockGraph, top: &str, base: Option<&str>) -> Vec<String> {
    graph
        .backing_chain(top)
        .iter()
        .skip(1)
        .take_while(|n| Some(n.as_str()) != base)
        .cloned()
        .collect()
}

/// Whether `top` holds `[off, off + max)` itself, and for how long from `off`. Over a raw
/// layer, what `top` leaves to it is one run: QEMU does not tell the raw file's holes from
/// its data there (the image's mapping would end its runs where they change).
fn stream_top_run(img: &Image, off: u64, max: u64, over_raw: bool) -> Result<(bool, u64)> {
    let (here, mut n) = img.allocated(off, max)?;
    n = n.max(1).min(max);
    while over_raw && !here && n < max {
        let (h, more) = img.allocated(off + n, max - n)?;
        if h {
            break;
        }
        n = (n + more.max(1)).min(max);
    }
    Ok((here, n))
}

/// Whether the layer right below a stream's top is a raw image (or file).
fn first_layer_raw(graph: &BlockGraph, layers: &[String]) -> bool {
    layers
        .first()
        .and_then(|l| graph.driver(l).ok())
        .is_some_and(|d| matches!(d, Driver::Raw | Driver::File))
}

/// The pieces a stream into `top` copies, in order, as QEMU's stream job goes over the disk
/// from its start: each step covers at most [`STREAM_STEP`] bytes, a run that `top` holds
/// itself (passed over) or a run the layers between it and `base` agree on (copied when one
/// of them holds it). A raw layer holds all of its disk, its file's holes too.
fn stream_pieces(graph: &BlockGraph, top: &str, base: Option<&str>) -> Result<Vec<(u64, u64)>> {
    let layers = stream_layers(graph, top, base);
    if layers.is_empty() {
        return Ok(Vec::new());
    }
    let img = graph.image(top)?;
    let g = img.read().map_err(|_| lock_err())?;
    let size = g.size();
    let over_raw = first_layer_raw(graph, &layers);
    let mut out = Vec::new();
    let mut off = 0;
    while off < size {
        let (here, mut n) = stream_top_run(&g, off, (size - off).min(STREAM_STEP), over_raw)?;
        if !here {
            let mut below = false;
            for l in &layers {
                let (h, len) = graph.allocated_here(l, off, n)?;
                n = n.min(len.max(1));
                if h {
                    below = true;
                    break;
                }
            }
            if below {
                out.push((off, off + n));
            }
        }
        off += n;
    }
    Ok(out)
}

/// Stream, over `ranges`: copy into `top`, piece by piece as QEMU's stream job goes (at
/// most [`STREAM_STEP`], each piece a run the layers agree on), what the layers between it
/// and `base` hold where `top` has nothing of its own. A piece that reads as zeroes is
/// written as zeroes (no data allocated), whether its layer held data or zeroes.
fn stream_ranges(
    graph: &BlockGraph,
    top: &str,
    base: Option<&str>,
    ranges: &[(u64, u64)],
) -> Result<()> {
    if ranges.is_empty() {
        return Ok(());
    }
    let layers = stream_layers(graph, top, base);
    let over_raw = first_layer_raw(graph, &layers);
    let img = graph.image(top)?;
    let g = img.read().map_err(|_| lock_err())?;
    let mut buf = vec![0u8; STREAM_STEP as usize];
    for &(start, end) in ranges {
        let end = end.min(g.size());
        let mut off = start;
        while off < end {
            let (here, mut n) = stream_top_run(&g, off, (end - off).min(STREAM_STEP), over_raw)?;
            if here {
                off += n;
                continue;
            }
            let mut below = false;
            for l in &layers {
                let (h, len) = graph.allocated_here(l, off, n)?;
                n = n.min(len);
                if h {
                    below = true;
                    break;
                }
            }
            if below {
                let b = &mut buf[..n as usize];
                g.read(b, off)?;
                if b.iter().all(|&x| x == 0) {
                    g.write_zeroes(off, n)?;
                } else {
                    g.write(b, off)?;
                }
            }
            off += n;
        }
    }
    Ok(())
}

/// The format and name a header records for a node as backing file.
fn backing_entry(graph: &BlockGraph, node: &str) -> Result<(String, &'static str)> {
    let name = graph.filename(node)?;
    let fmt = match graph.driver(node)? {
        Driver::Qcow2 => "qcow2",
        _ => "raw",
    };
    Ok((name, fmt))
}

fn stream_finish(graph: &mut BlockGraph, top: &str, base: Option<&str>) -> Result<()> {
    if graph.child(top, ChildRole::Backing).is_none() {
        return Ok(());
    }
    rewrite_backing(graph, top, base)
}

/// Points `node`'s header and graph backing link at `backing`.
fn rewrite_backing(graph: &mut BlockGraph, node: &str, backing: Option<&str>) -> Result<()> {
    if graph.driver(node)? != Driver::Qcow2 {
        return Err(Error::generic(format!(
            "Node '{node}' cannot have a backing file"
        )));
    }
    let path = graph.host_path(node)?;
    {
        let img = graph.image(node)?;
        let g = img.read().map_err(|_| lock_err())?;
        g.flush()?;
    }
    let entry = match backing {
        Some(b) => Some(backing_entry(graph, b)?),
        None => None,
    };
    qcow2::change_backing_file(&path, entry.as_ref().map(|(n, f)| (n.as_str(), *f)))?;
    // QEMU writes the header's whole cluster again.
    let cluster = image::image_info(&path, Some(image::ImageFormat::Qcow2))
        .ok()
        .and_then(|i| i.cluster_size)
        .unwrap_or(65536);
    if let Some(f) = graph.child(node, ChildRole::File) {
        graph.note_file_written(&f, cluster);
    }
    graph.set_auto_backing_file(node, entry.as_ref().map(|(n, _)| n.as_str()));
    graph.set_backing(node, backing)
}

/// A commit's base smaller than its top grows to the top's size as the job starts to run
/// (even with nothing to move); one that cannot grow fails the job.
fn grow_base(graph: &mut BlockGraph, top: &str, base: &str) -> Result<()> {
    let (t, b) = (graph.size(top)?, graph.size(base)?);
    if b < t {
        graph.grow_for_job(base, t)?;
    }
    Ok(())
}

/// Commit, over `ranges`: write what `top` reads (its data and the layers' down to `base`)
/// into `base`, which the job opened read-write.
fn commit_ranges(graph: &BlockGraph, top: &str, base: &str, ranges: &[(u64, u64)]) -> Result<()> {
    let top_img = graph.image(top)?;
    let top_g = top_img.read().map_err(|_| lock_err())?;
    // Through the base node's data path (its bitmaps and counters see the writes).
    let writer = graph.backend(base)?;
    if writer.size() < top_g.size() {
        return Err(Error::generic("Top image is larger than the base image"));
    }
    let mut buf = vec![0u8; CHUNK as usize];
    for &(s, e) in ranges {
        let mut off = s;
        while off < e {
            let n = CHUNK.min(e - off);
            let b = &mut buf[..n as usize];
            top_g.read(b, off)?;
            writer.write(off, b)?;
            off += n;
        }
    }
    Ok(())
}

fn commit_finish(
    graph: &mut BlockGraph,
    top: &str,
    base: &str,
    overlay: Option<&str>,
) -> Result<()> {
    // The base's cached view is stale after the writes.
    graph.reopen(base)?;
    match overlay {
        Some(o) => {
            let dropped: Vec<String> = graph
                .backing_chain(top)
                .into_iter()
                .take_while(|n| n != base)
                .collect();
            rewrite_backing(graph, o, Some(base))?;
            for n in dropped {
                graph.mark_dropped_from_chain(&n);
            }
            Ok(())
        }
        None => {
            // Active commit: the device's users now use the base, writable.
            graph.set_read_only(base, false)?;
            graph.move_users(top, base)
        }
    }
}

/// Copies `ranges` of the disk from `source` into `target`, as `sync` (and `bitmap`) say.
fn copy_ranges(
    graph: &BlockGraph,
    source: &str,
    target: &str,
    sync: SyncMode,
    bitmap: Option<&str>,
    ranges: &[(u64, u64)],
) -> Result<()> {
    if sync == SyncMode::None {
        return Ok(());
    }
    let marked = match (sync, bitmap) {
        (SyncMode::Bitmap, Some(b)) => Some(graph.bitmap(source, b)?),
        _ => None,
    };
    let src = graph.backend(source)?;
    let dst = graph.backend(target)?;
    let size = src.size();
    let below_top = if sync == SyncMode::Top {
        Some(graph.image(source)?)
    } else {
        None
    };
    let mut buf = vec![0u8; CHUNK as usize];
    for &(start, end) in ranges {
        let end = end.min(size);
        // A source known to read as zeroes (a null node) is copied as zeroes, without its
        // data.
        if below_top.is_none() && start < end && src.reads_zeroes(start, end - start) {
            dst.write_zeroes(start, end - start)?;
            continue;
        }
        let mut off = start;
        while off < end {
            let n = CHUNK.min(end - off);
            if let Some(m) = &marked {
                // Granule by granule: only what the bitmap marks.
                let g = m.granularity;
                let bit = off / g;
                let n = n.min(g - off % g);
                if m.is_set(bit) {
                    let b = &mut buf[..n as usize];
                    src.read(off, b)?;
                    dst.write(off, b)?;
                }
                off += n;
                continue;
            }
            if let Some(top) = &below_top {
                let g = top.read().map_err(|_| lock_err())?;
                if !range_allocated(&g, off, n)? {
                    off += n;
                    continue;
                }
            }
            let b = &mut buf[..n as usize];
            src.read(off, b)?;
            // Zeroes are written as zeroes (no data allocated), granule by granule.
            let mut at = 0usize;
            for piece in b.chunks(GRANULE as usize) {
                let o = off + at as u64;
                if piece.iter().all(|&x| x == 0) {
                    dst.write_zeroes(o, piece.len() as u64)?;
                } else {
                    dst.write(o, piece)?;
                }
                at += piece.len();
            }
            off += n;
        }
    }
    Ok(())
}

/// A mirror's dirty-tracking granularity: the one asked for (a power of two from 512 bytes
/// to 64 MiB), or its target's cluster size within 4 KiB to 64 KiB (64 KiB for a target
/// without clusters), as QEMU 10.0 chooses it.
fn mirror_granularity(graph: &BlockGraph, target: &str, asked: u64) -> Result<u64> {
    if asked != 0 {
        if !(512..=64 << 20).contains(&asked) {
            return Err(Error::generic(
                "Parameter 'granularity' expects a value in range [512B, 64MB]",
            ));
        }
        if !asked.is_power_of_two() {
            return Err(Error::generic(
                "Parameter 'granularity' expects a power of 2",
            ));
        }
        return Ok(asked);
    }
    let cluster = graph
        .node_info(target, false)
        .ok()
        .and_then(|i| i.image.cluster_size)
        .unwrap_or(0);
    Ok(match cluster {
        0 => crate::bitmap::DEFAULT_GRANULARITY,
        c => c.clamp(4096, crate::bitmap::DEFAULT_GRANULARITY),
    })
}
