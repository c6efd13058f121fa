//! Live migration: capabilities and parameters, outgoing migrations with QEMU's status
//! machine, incoming migrations, and the real stream between two machines
//! ([`stream`]).
//!
//! # The model
//!
//! An outgoing migration advances on the machine's clock in ticks of [`TICK_NS`] (QEMU's
//! rate-limit period, 100 ms). Each tick may send `bandwidth × tick` bytes, where the
//! bandwidth is `max-bandwidth` (set by `migrate-set-parameters` or the legacy
//! `migrate_set_speed`; 0 or less means unlimited, i.e. the link, [`LINK_BYTES_PER_S`]).
//!
//! - **RAM.** Guest RAM (`-m`) is pages of [`PAGE`] bytes. A page with content (what
//!   [`crate::memory`] says is populated, plus every page the guest wrote) costs
//!   [`NORMAL_PAGE_COST`] bytes on the wire and counts as `normal`; an all-zero page costs
//!   [`ZERO_PAGE_COST`] and counts as `duplicate`. The first pass sends every page, zero
//!   and populated pages in proportion.
//! - **Dirtying.** While the source runs, its guest dirties `dirty rate` distinct populated
//!   pages per second (default [`DEFAULT_DIRTY_PAGES_PER_S`]; test control
//!   `__org.qmpkit_guest-dirty-rate` changes it), less the throttle that `auto-converge`
//!   applies (starting at `cpu-throttle-initial` %, growing by `cpu-throttle-increment` %
//!   after each pass that does not converge). A paused guest dirties nothing. Dirtied
//!   pages keep their content; only the work of resending them is modelled.
//! - **Passes.** When a pass has sent all its pages the dirty bitmap is synchronised
//!   (`dirty-sync-count`, a `MIGRATION_PASS` event): the pages dirtied meanwhile make the
//!   next pass. The expected downtime is the time to send them at the bandwidth; when it is
//!   within `downtime-limit` the source stops (`finish-migrate`), optionally waits in
//!   `pre-switchover` for `migrate-continue` (capability `pause-before-switchover`), moves
//!   to `device`, sends the last pages and the device state without a rate limit (at the
//!   link's speed), and completes: the real downtime is the time from the stop to then. A
//!   guest that dirties faster than the bandwidth never converges, as in QEMU, unless
//!   throttled or switched to postcopy.
//! - **Postcopy.** `migrate-start-postcopy` (capability `postcopy-ram`) stops the source at
//!   the next tick, hands the destination the device state so that it runs, and sends the
//!   remaining pages at the bandwidth in `postcopy-active` (`postcopy-requests` counts the
//!   pages the destination faulted on: one in eight).
//! - **Statistics** (`query-migrate`): `transferred`, `remaining` (bytes still dirty),
//!   `total` (RAM size), `duplicate`, `normal`, `normal-bytes`, `dirty-pages-rate` (pages/s
//!   at the last synchronisation), `mbps` (last tick), `dirty-sync-count`, `setup-time`
//!   ([`SETUP_NS`]), `total-time`, `expected-downtime` and, once completed, `downtime`.
//!
//! The real data moves beside the model: the stream ([`stream`]) carries the device state
//! and the RAM pages the guest wrote at switchover; completion waits for both the model's
//! time and the stream's last byte. Failing I/O (a refused connection, a command that
//! exits) fails the migration with QEMU's words in `error-desc`.
//!
//! Events (`MIGRATION`, `MIGRATION_PASS`) are sent when capability `events` is on, on each
//! side, in QEMU's order: `setup` before `migrate` answers, the first pass, `active`, …,
//! `STOP`, [`pre-switchover`], `device`, the last pass, `completed`; the destination says
//! `setup` (on `migrate-incoming`), `active` (connected), then `RESUME` and `completed`.

pub mod stream;

use std::net::TcpListener;
use std::os::unix::net::UnixListener;

use qmpkit_qapi::Enum;
use qmpkit_wire::QmpError;

use crate::api::{self, MigrationCapability, MigrationStatus};
use crate::memory::{self, PAGE};
use crate::runstate::{self, RunState};
use crate::{generic, Cx, Machine, TimerAction};

/// The rate-limit period: one tick of the model.
pub const TICK_NS: u64 = 100_000_000;
/// How often an incoming migration's thread is polled.
pub const POLL_NS: u64 = 5_000_000;
/// Least time spent in `setup` (it also lasts until the channel is up).
pub const SETUP_NS: u64 = 2_000_000;
/// Wire cost of a page with content: its bytes and a header.
pub const NORMAL_PAGE_COST: u64 = PAGE + 8;
/// Wire cost of a zero page: a header and a flag byte.
pub const ZERO_PAGE_COST: u64 = 9;
/// The link's speed (10 Gbit/s), the bandwidth when there is no limit.
pub const LINK_BYTES_PER_S: u64 = 1_250_000_000;
/// Pages the simulated guest dirties per second while it runs.
pub const DEFAULT_DIRTY_PAGES_PER_S: u64 = 256;
/// Cap on downtime_limit (ms).
const MAX_DOWNTIME_MS: i64 = 2000 * 1000;

/// A timer of this module.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timer {
    /// Advance outgoing migration number `.0`.
    Tick(u64),
    /// Poll incoming migration number `.0`.
    Incoming(u64),
}

/// One outgoing migration (the current one, or the last one, which `query-migrate`
/// reports).
pub struct Outgoing {
    pub id: u64,
    pub status: MigrationStatus,
    start_ns: u64,
    setup_ns: Option<u64>,
    stop_ns: Option<u64>,
    end_ns: Option<u64>,
    last_tick_ns: u64,
    /// The source was running when the migration began (it resumes on failure).
    was_running: bool,
    // RAM model.
    total_pages: u64,
    /// Pages of the current pass still to send.
    left_normal: u64,
    left_zero: u64,
    /// Pages dirtied since the last synchronisation (fractional).
    dirtied: f64,
    pub passes: i64,
    transferred: u64,
    normal: u64,
    duplicate: u64,
    mbps: f64,
    dirty_pages_rate: u64,
    dirty_at_last_sync: f64,
    last_sync_ns: u64,
    throttle: i64,
    expected_downtime_ms: i64,
    downtime_ms: Option<i64>,
    postcopy_requested: bool,
    postcopy_requests: i64,
    /// Stopped for the switchover (or postcopy): sending the last pages.
    final_phase: bool,
    /// Time by which the device state is sent.
    final_due_ns: Option<u64>,
    pub error: Option<String>,
    link: Option<stream::Sender>,
}

/// The incoming side.
#[derive(Default)]
pub struct Incoming {
    pub id: u64,
    pub status: Option<MigrationStatus>,
    /// `migrate-incoming` (or `-incoming URI`) has been used.
    pub started: bool,
    receiver: Option<stream::Receiver>,
    pub error: Option<String>,
}

/// The machine's migration state.
pub struct MigrationState {
    pub caps: Vec<(MigrationCapability, bool)>,
    pub params: api::MigrationParameters,
    pub out: Option<Outgoing>,
    pub inc: Incoming,
    /// Pages per second the guest dirties while it runs.
    pub dirty_rate: u64,
    next_id: u64,
}

impl MigrationState {
    pub fn new(config: &crate::MachineConfig) -> MigrationState {
        let (major, minor, _) = config.qemu_version;
        let bandwidth = if (major, minor) >= (9, 0) {
            128 << 20
        } else {
            32 << 20
        };
        MigrationState {
            caps: if crate::compat::Compat::of(major, minor).catalog_10_0 {
                // The capabilities of the interface the catalogue describes, in its order.
                crate::catalog::x86_64_10_0()
                    .migrate_capabilities()
                    .into_iter()
                    .map(|c| (c.capability, c.state))
                    .collect()
            } else {
                MigrationCapability::NAMES
                    .iter()
                    .take(13) // QEMU 2.12's; the others came later
                    .map(|n| (MigrationCapability::from_name(n), false))
                    .collect()
            },
            params: api::MigrationParameters {
                compress_level: Some(1),
                compress_threads: Some(8),
                decompress_threads: Some(2),
                cpu_throttle_initial: Some(20),
                cpu_throttle_increment: Some(10),
                tls_creds: Some(String::new()),
                tls_hostname: Some(String::new()),
                max_bandwidth: Some(bandwidth),
                downtime_limit: Some(300),
                x_checkpoint_delay: Some(20000),
                block_incremental: Some(false),
                x_multifd_channels: Some(2),
                x_multifd_page_count: Some(16),
                xbzrle_cache_size: Some(64 << 20),
            },
            out: None,
            inc: Incoming::default(),
            dirty_rate: DEFAULT_DIRTY_PAGES_PER_S,
            next_id: 0,
        }
    }

    pub fn cap(&self, c: &MigrationCapability) -> bool {
        self.caps.iter().any(|(k, on)| k == c && *on)
    }

    /// An outgoing migration is under way (QEMU's "migration is active").
    pub fn active(&self) -> bool {
        self.out.as_ref().is_some_and(|o| {
            matches!(
                o.status,
                MigrationStatus::Setup
                    | MigrationStatus::Active
                    | MigrationStatus::PreSwitchover
                    | MigrationStatus::Device
                    | MigrationStatus::PostcopyActive
                    | MigrationStatus::Cancelling
            )
        })
    }

    fn bandwidth(&self) -> u64 {
        match self.params.max_bandwidth {
            Some(b) if b > 0 => (b as u64).min(LINK_BYTES_PER_S),
            _ => LINK_BYTES_PER_S,
        }
    }
}

fn in_progress() -> QmpError {
    generic("There's a migration process in progress")
}

fn emit_status(m: &mut Machine, status: MigrationStatus) {
    if m.migration.cap(&MigrationCapability::Events) {
        m.emit_event(api::Migration { status });
    }
}

fn emit_pass(m: &mut Machine, pass: i64) {
    if m.migration.cap(&MigrationCapability::Events) {
        m.emit_event(api::MigrationPass { pass });
    }
}

fn set_out_status(m: &mut Machine, status: MigrationStatus) {
    if let Some(o) = m.migration.out.as_mut() {
        o.status = status.clone();
    }
    emit_status(m, status);
}

/// Pages of RAM with content, and all pages.
pub fn ram_pages(m: &Machine) -> (u64, u64) {
    let ram = m.config.memory_bytes;
    let mut populated = 0u64;
    let mut total = 0u64;
    for (start, len) in memory::ram_ranges(ram) {
        let (s, e) = (start / PAGE, (start + len) / PAGE);
        total += e - s;
        let low_end = e.min(memory::LOW_POPULATED_PAGES);
        if low_end > s {
            populated += low_end - s;
        }
        let from = s.max(memory::LOW_POPULATED_PAGES);
        if e > from {
            // Multiples of the stride in [from, e) (from >= 1).
            let k = memory::SPARSE_STRIDE;
            populated += (e - 1) / k - (from - 1) / k;
        }
        populated += m
            .memory
            .written
            .range(s..e)
            .filter(|(p, _)| **p >= memory::LOW_POPULATED_PAGES && **p % memory::SPARSE_STRIDE != 0)
            .count() as u64;
    }
    (populated.min(total), total)
}

// ---------------------------------------------------------------------------------------
// Capabilities and parameters

pub fn set_capabilities(
    m: &mut Machine,
    caps: Vec<api::MigrationCapabilityStatus>,
) -> Result<(), QmpError> {
    if m.migration.active() {
        return Err(in_progress());
    }
    let mut new = m.migration.caps.clone();
    for c in caps {
        if let Some(e) = new.iter_mut().find(|(k, _)| *k == c.capability) {
            e.1 = c.state;
        }
    }
    let on = |c: MigrationCapability| new.iter().any(|(k, s)| *k == c && *s);
    if m.compat().migration_caps_10_0 {
        if let Some(e) = incompatible_10_0(on) {
            return Err(generic(e));
        }
    } else if on(MigrationCapability::PostcopyRam) && on(MigrationCapability::Compress) {
        return Err(generic(
            "Postcopy is not currently compatible with compression",
        ));
    }
    m.migration.caps = new;
    Ok(())
}

/// The capabilities background snapshots cannot be combined with, in the order QEMU 10.0
/// names the first one set.
const NOT_WITH_BACKGROUND_SNAPSHOT: &[MigrationCapability] = &[
    MigrationCapability::PostcopyRam,
    MigrationCapability::DirtyBitmaps,
    MigrationCapability::PostcopyBlocktime,
    MigrationCapability::LateBlockActivate,
    MigrationCapability::ReturnPath,
    MigrationCapability::Multifd,
    MigrationCapability::PauseBeforeSwitchover,
    MigrationCapability::AutoConverge,
    MigrationCapability::ReleaseRam,
    MigrationCapability::RdmaPinAll,
    MigrationCapability::Xbzrle,
    MigrationCapability::XColo,
    MigrationCapability::ValidateUuid,
    MigrationCapability::ZeroCopySend,
];

/// QEMU 10.0's rules for the capabilities `on` would leave set: the first one broken, in
/// its words. (No compression or TLS parameter exists in the machine's interface, so zero
/// copy needs only multifd without xbzrle; `dirty-limit` needs a KVM dirty ring, which the
/// machine never has.)
fn incompatible_10_0(on: impl Fn(MigrationCapability) -> bool) -> Option<String> {
    use MigrationCapability as C;
    if on(C::PostcopyRam) {
        if on(C::XIgnoreShared) {
            return Some("Postcopy is not compatible with ignore-shared".into());
        }
        if on(C::Multifd) {
            return Some("Postcopy is not yet compatible with multifd".into());
        }
    }
    if on(C::BackgroundSnapshot) {
        if let Some(c) = NOT_WITH_BACKGROUND_SNAPSHOT
            .iter()
            .find(|c| on((*c).clone()))
        {
            return Some(format!(
                "Background-snapshot is not compatible with {}",
                c.as_str()
            ));
        }
    }
    if on(C::ZeroCopySend) && (!on(C::Multifd) || on(C::Xbzrle)) {
        return Some(
            "Zero copy only available for non-compressed non-TLS multifd migration".into(),
        );
    }
    if on(C::PostcopyPreempt) && !on(C::PostcopyRam) {
        return Some("Postcopy preempt requires postcopy-ram".into());
    }
    if on(C::SwitchoverAck) && !on(C::ReturnPath) {
        return Some("Capability 'switchover-ack' requires capability 'return-path'".into());
    }
    if on(C::DirtyLimit) {
        if on(C::AutoConverge) {
            return Some(
                "dirty-limit conflicts with auto-converge either of then available currently"
                    .into(),
            );
        }
        return Some(
            "dirty-limit requires KVM with accelerator property 'dirty-ring-size' set".into(),
        );
    }
    if on(C::Multifd) && on(C::Xbzrle) {
        return Some("Multifd is not compatible with xbzrle".into());
    }
    if on(C::MappedRam) {
        if on(C::Xbzrle) {
            return Some("Mapped-ram migration is incompatible with xbzrle".into());
        }
        if on(C::PostcopyRam) {
            return Some("Mapped-ram migration is incompatible with postcopy".into());
        }
    }
    None
}

fn invalid(name: &str, what: &str) -> QmpError {
    generic(format!("Parameter '{name}' expects {what}"))
}

/// `migrate-set-parameters`: check everything, then apply.
pub fn set_parameters(m: &mut Machine, p: api::MigrateSetParameters) -> Result<(), QmpError> {
    if let Some(v) = p.compress_level {
        if !(0..=9).contains(&v) {
            return Err(invalid(
                "compress_level",
                "is invalid, it should be in the range of 0 to 9",
            ));
        }
    }
    for (v, n) in [
        (p.compress_threads, "compress_threads"),
        (p.decompress_threads, "decompress_threads"),
    ] {
        if v.is_some_and(|v| !(1..=255).contains(&v)) {
            return Err(invalid(
                n,
                "is invalid, it should be in the range of 1 to 255",
            ));
        }
    }
    for (v, n) in [
        (p.cpu_throttle_initial, "cpu_throttle_initial"),
        (p.cpu_throttle_increment, "cpu_throttle_increment"),
    ] {
        if v.is_some_and(|v| !(1..=99).contains(&v)) {
            return Err(invalid(n, "an integer in the range of 1 to 99"));
        }
    }
    if p.downtime_limit
        .is_some_and(|v| !(0..=MAX_DOWNTIME_MS).contains(&v))
    {
        return Err(invalid(
            "downtime_limit",
            "an integer in the range of 0 to (2000 * 1000) ms",
        ));
    }
    if p.x_checkpoint_delay.is_some_and(|v| v < 0) {
        return Err(invalid(
            "x_checkpoint_delay",
            "is invalid, it should be positive",
        ));
    }
    if p.x_multifd_channels
        .is_some_and(|v| !(1..=255).contains(&v))
    {
        return Err(invalid(
            "multifd_channels",
            "is invalid, it should be in the range of 1 to 255",
        ));
    }
    if p.x_multifd_page_count
        .is_some_and(|v| !(1..=10000).contains(&v))
    {
        return Err(invalid(
            "multifd_page_count",
            "is invalid, it should be in the range of 1 to 10000",
        ));
    }
    if let Some(v) = p.xbzrle_cache_size {
        check_cache_size(v)?;
    }
    let q = &mut m.migration.params;
    macro_rules! take {
        ($($f:ident),*) => { $( if let Some(v) = p.$f { q.$f = Some(v); } )* };
    }
    take!(
        compress_level,
        compress_threads,
        decompress_threads,
        cpu_throttle_initial,
        cpu_throttle_increment,
        max_bandwidth,
        downtime_limit,
        x_checkpoint_delay,
        block_incremental,
        x_multifd_channels,
        x_multifd_page_count,
        xbzrle_cache_size
    );
    let s = |v: api::StrOrNull| match v {
        api::StrOrNull::S(s) => s,
        api::StrOrNull::N(_) => String::new(),
    };
    if let Some(v) = p.tls_creds {
        q.tls_creds = Some(s(v));
    }
    if let Some(v) = p.tls_hostname {
        q.tls_hostname = Some(s(v));
    }
    Ok(())
}

fn check_cache_size(v: u64) -> Result<(), QmpError> {
    if v < PAGE || !v.is_power_of_two() {
        return Err(invalid(
            "xbzrle_cache_size",
            "a power of two no less than the target page size",
        ));
    }
    Ok(())
}

/// `migrate_set_downtime` (seconds).
pub fn set_downtime(m: &mut Machine, seconds: f64) -> Result<(), QmpError> {
    if !(0.0..=2000.0).contains(&seconds) || seconds.is_nan() {
        return Err(invalid(
            "downtime_limit",
            "an integer in the range of 0 to 2000 seconds",
        ));
    }
    m.migration.params.downtime_limit = Some((seconds * 1000.0) as i64);
    Ok(())
}

/// `migrate-set-cache-size`.
pub fn set_cache_size(m: &mut Machine, v: i64) -> Result<(), QmpError> {
    let v = u64::try_from(v).unwrap_or(u64::MAX);
    check_cache_size(v)?;
    m.migration.params.xbzrle_cache_size = Some(v);
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Outgoing

/// Parse a migration URI into where it goes (also used for incoming URIs).
enum Uri<'a> {
    Tcp(&'a str),
    Unix(&'a str),
    Exec(&'a str),
    Fd(&'a str),
    File(&'a str),
}

fn parse_uri<'a>(m: &Machine, uri: &'a str) -> Result<Uri<'a>, QmpError> {
    let u = if let Some(a) = uri.strip_prefix("tcp:") {
        // host:port, the host possibly in brackets.
        let ok = a.rfind(':').is_some_and(|i| !a[i + 1..].is_empty());
        if !ok {
            return Err(generic(format!("error parsing address '{a}'")));
        }
        Uri::Tcp(a)
    } else if let Some(p) = uri.strip_prefix("unix:") {
        Uri::Unix(p)
    } else if let Some(c) = uri.strip_prefix("exec:") {
        Uri::Exec(c)
    } else if let Some(n) = uri.strip_prefix("fd:") {
        Uri::Fd(n)
    } else if let Some(f) = uri.strip_prefix("file:") {
        Uri::File(f)
    } else if m.compat().migrate_uri_words_8_2 {
        return Err(generic(format!("unknown migration protocol: {uri}")));
    } else {
        return Err(invalid("uri", "a valid migration protocol"));
    };
    Ok(u)
}

fn tcp_addr(a: &str) -> String {
    // Brackets around an IPv6 address stay (the socket address parser takes them).
    match a.strip_prefix(':') {
        Some(port) => format!("0.0.0.0:{port}"),
        None => a.to_string(),
    }
}

/// `migrate`.
pub fn migrate(
    m: &mut Machine,
    cx: &mut Cx,
    uri: &str,
    blk: bool,
    inc: bool,
) -> Result<(), QmpError> {
    if m.migration.active() {
        return Err(in_progress());
    }
    if m.run.state == RunState::InMigrate {
        return Err(generic("Guest is waiting for an incoming migration"));
    }
    if blk || inc {
        return Err(crate::not_implemented("migrate with blk or inc"));
    }
    let target = match parse_uri(m, uri)? {
        Uri::Tcp(a) => stream::Target::Tcp(tcp_addr(a)),
        Uri::Unix(p) => stream::Target::Unix(p.to_string()),
        Uri::Exec(c) => stream::Target::Exec(c.to_string()),
        Uri::Fd(name) => stream::Target::Fd(
            crate::fdsets::take_named_fd(m, cx, name)
                .ok_or_else(|| crate::fdsets::fd_not_found(name))?,
        ),
        Uri::File(path) => {
            let (path, _offset) = match path.rsplit_once(",offset=") {
                Some((p, o)) => (p, o),
                None => (path, "0"),
            };
            if let Some(id) = crate::fdsets::fdset_path(path) {
                let known = id.is_ok_and(|id| m.fds.sets().contains_key(&id));
                if !known {
                    return Err(generic(format!("Failed to find fdset {path}")));
                }
            }
            let f = crate::fdsets::open(m, path, crate::fdsets::OpenOptions::write_create())
                .map_err(|e| {
                    generic(format!(
                        "Could not create '{path}': {}",
                        memory::strerror(&e)
                    ))
                })?;
            stream::Target::File(f)
        }
    };
    let (populated, total) = ram_pages(m);
    m.migration.next_id += 1;
    let id = m.migration.next_id;
    let now = m.now_ns;
    m.migration.out = Some(Outgoing {
        id,
        status: MigrationStatus::Setup,
        start_ns: now,
        setup_ns: None,
        stop_ns: None,
        end_ns: None,
        last_tick_ns: now,
        was_running: m.run.state == RunState::Running,
        total_pages: total,
        left_normal: populated,
        left_zero: total - populated,
        dirtied: 0.0,
        passes: 0,
        transferred: 0,
        normal: 0,
        duplicate: 0,
        mbps: 0.0,
        dirty_pages_rate: 0,
        dirty_at_last_sync: 0.0,
        last_sync_ns: now,
        throttle: 0,
        expected_downtime_ms: m.migration.params.downtime_limit.unwrap_or(300),
        downtime_ms: None,
        postcopy_requested: false,
        postcopy_requests: 0,
        final_phase: false,
        final_due_ns: None,
        error: None,
        link: Some(stream::Sender::start(target)),
    });
    emit_status(m, MigrationStatus::Setup);
    m.schedule(SETUP_NS, TimerAction::Migration(Timer::Tick(id)));
    Ok(())
}

/// The source's state for the stream, and the pages the guest wrote.
fn snapshot(m: &Machine, run_state: RunState) -> Vec<u8> {
    let st = state_line(m, run_state);
    let pages: Vec<(u64, &[u8; PAGE as usize])> =
        m.memory.written.iter().map(|(n, p)| (*n, &**p)).collect();
    stream::encode(&st, &pages)
}

/// `xen-save-devices-state`: the devices' state without RAM, written to `filename` in the
/// machine's own migration format (its magic line, the state line and the end marker;
/// QEMU writes its own device-state format there). A running machine stops while the file
/// is written and runs again afterwards, also when the file cannot be made (STOP, RESUME),
/// as QEMU does.
pub fn save_devices_state(m: &mut Machine, filename: &str) -> Result<(), QmpError> {
    let was = m.run.state;
    runstate::vm_stop(m, RunState::SaveVm);
    let mut data = stream::MAGIC.to_vec();
    data.extend(stream::encode(&state_line(m, was), &[]));
    data.extend_from_slice(&stream::END.to_be_bytes());
    let opts = crate::fdsets::OpenOptions {
        truncate: true,
        ..crate::fdsets::OpenOptions::write_create()
    };
    let written = crate::fdsets::open(m, filename, opts)
        .map_err(|e| format!("Could not create '{filename}': {}", memory::strerror(&e)))
        .and_then(|mut f| {
            std::io::Write::write_all(&mut f, &data)
                .map_err(|e| format!("Could not write '{filename}': {}", memory::strerror(&e)))
        });
    if was == RunState::Running {
        runstate::vm_start(m);
    }
    written.map_err(generic)
}

/// `xen-load-devices-state`: QEMU refuses while the guest runs, then opens the file; what
/// it does with a file on a stopped machine (QEMU 10.0.2 aborts on every file, its own
/// saved state included) is not modelled.
pub fn load_devices_state(m: &mut Machine, filename: &str) -> Result<(), QmpError> {
    if m.is(RunState::Running) {
        return Err(generic("Cannot update device state while vm is running"));
    }
    crate::fdsets::open(m, filename, crate::fdsets::OpenOptions::read()).map_err(|e| {
        generic(format!(
            "Could not open '{filename}': {}",
            memory::strerror(&e)
        ))
    })?;
    Err(crate::not_implemented("xen-load-devices-state"))
}

/// The state line of the stream: RAM size, run state, devices and drives.
fn state_line(m: &Machine, run_state: RunState) -> stream::StateLine {
    let devices = crate::devices::all_devices(&m.qom.tree)
        .into_iter()
        .map(|n| {
            let node = m.qom.tree.node(n);
            (node.name.to_string(), node.ty.to_string())
        })
        .collect();
    let drives = m
        .block
        .drives
        .iter()
        .map(|d| stream::DriveState {
            id: d.id.clone(),
            tray_open: d.tray_open,
            locked: d.locked,
            medium: d.medium.as_ref().map(|md| stream::MediumState {
                file: md.file.clone(),
                format: md.format.clone(),
                read_only: md.read_only,
                size: md.size,
                node_name: md.node_name.clone(),
            }),
        })
        .collect();
    stream::StateLine {
        ram_size: m.config.memory_bytes,
        run_state: run_state.as_str().to_string(),
        devices,
        drives,
    }
}

fn fail(m: &mut Machine, error: String) {
    let resume = m.migration.out.as_ref().is_some_and(|o| o.was_running);
    if let Some(o) = m.migration.out.as_mut() {
        o.error = Some(error);
        o.end_ns = Some(m.now_ns);
        if let Some(mut l) = o.link.take() {
            l.abort();
        }
    }
    if resume && matches!(m.run.state, RunState::FinishMigrate) {
        runstate::vm_start(m);
    }
    set_out_status(m, MigrationStatus::Failed);
}

/// One tick of outgoing migration `id`.
fn tick(m: &mut Machine, id: u64) {
    let now = m.now_ns;
    let bw = m.migration.bandwidth();
    let dirty_rate = m.migration.dirty_rate;
    let limit_ms = m.migration.params.downtime_limit.unwrap_or(300).max(0) as u64;
    let pause = m.migration.cap(&MigrationCapability::PauseBeforeSwitchover);
    let auto_converge = m.migration.cap(&MigrationCapability::AutoConverge);
    let running = m.run.state == RunState::Running;
    let (t_init, t_inc) = (
        m.migration.params.cpu_throttle_initial.unwrap_or(20),
        m.migration.params.cpu_throttle_increment.unwrap_or(10),
    );
    let Some(o) = m.migration.out.as_mut().filter(|o| o.id == id) else {
        return;
    };
    if let Some(e) = o.link.as_ref().and_then(|l| l.error()) {
        return fail(m, e);
    }
    let status = o.status.clone();
    let final_phase = o.final_phase;
    match status {
        MigrationStatus::Setup => {
            // Setup lasts until the channel is up (connected, command started).
            let up = o.link.as_ref().is_none_or(|l| l.connected());
            if !up || now < o.start_ns + SETUP_NS {
                m.schedule(POLL_NS / 5, TimerAction::Migration(Timer::Tick(id)));
                return;
            }
            o.setup_ns = Some(now - o.start_ns);
            o.passes = 1;
            o.last_tick_ns = now;
            o.last_sync_ns = now;
            emit_pass(m, 1);
            set_out_status(m, MigrationStatus::Active);
            m.schedule(TICK_NS, TimerAction::Migration(Timer::Tick(id)));
        }
        MigrationStatus::Active if !final_phase => {
            let dt = now.saturating_sub(o.last_tick_ns);
            o.last_tick_ns = now;
            if running {
                let rate = dirty_rate as f64 * (100 - o.throttle).max(0) as f64 / 100.0;
                // Distinct pages: never more than the guest has.
                o.dirtied = (o.dirtied + rate * dt as f64 / 1e9).min(o.total_pages as f64);
            }
            let budget = bw as f64 * dt as f64 / 1e9;
            let sent = send(o, budget);
            o.mbps = if dt > 0 {
                sent as f64 * 8.0 / 1e6 / (dt as f64 / 1e9)
            } else {
                0.0
            };
            if o.postcopy_requested {
                o.postcopy_requested = false;
                return start_postcopy_now(m, id);
            }
            if o.left_normal + o.left_zero > 0 {
                m.schedule(TICK_NS, TimerAction::Migration(Timer::Tick(id)));
                return;
            }
            // End of a pass: synchronise the dirty bitmap.
            let since = now.saturating_sub(o.last_sync_ns).max(1);
            let dirty = o.dirtied.min(o.total_pages as f64);
            o.dirty_pages_rate =
                ((dirty - o.dirty_at_last_sync).max(0.0) * 1e9 / since as f64) as u64;
            o.last_sync_ns = now;
            let pages = dirty.ceil() as u64;
            let bytes = pages * NORMAL_PAGE_COST;
            let expected_ms = bytes * 1000 / bw.max(1);
            o.expected_downtime_ms = expected_ms as i64;
            o.dirtied = 0.0;
            o.dirty_at_last_sync = 0.0;
            o.left_normal = pages;
            if expected_ms <= limit_ms {
                // Converged: stop and switch over.
                o.passes += 1;
                let pass = o.passes;
                o.stop_ns = Some(now);
                runstate::vm_stop(m, RunState::FinishMigrate);
                if m.run.state != RunState::FinishMigrate {
                    let _ = runstate::set_state(m, RunState::FinishMigrate);
                }
                if pause {
                    set_out_status(m, MigrationStatus::PreSwitchover);
                    // The last pass is counted when the switchover goes on.
                    if let Some(o) = m.migration.out.as_mut() {
                        o.passes -= 1;
                    }
                    return;
                }
                switchover(m, id, pass);
            } else {
                o.passes += 1;
                let pass = o.passes;
                if auto_converge && pass > 2 {
                    o.throttle = if o.throttle == 0 {
                        t_init
                    } else {
                        (o.throttle + t_inc).min(99)
                    };
                }
                emit_pass(m, pass);
                m.schedule(TICK_NS, TimerAction::Migration(Timer::Tick(id)));
            }
        }
        MigrationStatus::Active | MigrationStatus::Device | MigrationStatus::PostcopyActive => {
            let dt = now.saturating_sub(o.last_tick_ns);
            o.last_tick_ns = now;
            // The switchover sends without a rate limit; postcopy at the bandwidth.
            let rate = if status == MigrationStatus::PostcopyActive {
                bw
            } else {
                LINK_BYTES_PER_S
            };
            let before = o.left_normal;
            let sent = send(o, rate as f64 * dt as f64 / 1e9);
            if status == MigrationStatus::PostcopyActive {
                o.postcopy_requests += ((before - o.left_normal) / 8) as i64;
            }
            o.mbps = if dt > 0 {
                sent as f64 * 8.0 / 1e6 / (dt as f64 / 1e9)
            } else {
                0.0
            };
            let model_done =
                o.left_normal + o.left_zero == 0 && o.final_due_ns.is_none_or(|d| now >= d);
            if model_done && o.final_due_ns.is_some() {
                // The model is done: say so to the stream once.
                o.final_due_ns = None;
                if let Some(l) = o.link.as_mut() {
                    if status == MigrationStatus::PostcopyActive {
                        l.send(stream::END.to_be_bytes().to_vec());
                    }
                    l.finish();
                }
            }
            let io_done = o.link.as_ref().is_none_or(|l| l.all_written());
            if model_done && io_done {
                return complete(m, id);
            }
            let next = if model_done {
                POLL_NS
            } else {
                TICK_NS.min(POLL_NS * 4)
            };
            m.schedule(next, TimerAction::Migration(Timer::Tick(id)));
        }
        _ => {}
    }
}

/// Send up to `budget` bytes of the current pass: zero and populated pages in proportion.
/// Answers the bytes sent.
fn send(o: &mut Outgoing, budget: f64) -> u64 {
    let (n, z) = (o.left_normal, o.left_zero);
    if n + z == 0 || budget <= 0.0 {
        return 0;
    }
    let cost = (n * NORMAL_PAGE_COST + z * ZERO_PAGE_COST) as f64 / (n + z) as f64;
    let pages = ((budget / cost) as u64).clamp(1, n + z);
    let sn = if pages == n + z {
        n
    } else {
        ((pages as u128 * n as u128) / (n + z) as u128) as u64
    };
    let sz = pages - sn;
    o.left_normal -= sn;
    o.left_zero -= sz.min(o.left_zero);
    o.normal += sn;
    o.duplicate += sz;
    let bytes = sn * NORMAL_PAGE_COST + sz * ZERO_PAGE_COST;
    o.transferred += bytes;
    bytes
}

/// Stopped and past pre-switchover: `device`, the last pass, the state to the stream.
fn switchover(m: &mut Machine, id: u64, pass: i64) {
    let device_state = m.compat().migration_device_state_always
        || m.migration.cap(&MigrationCapability::PauseBeforeSwitchover);
    if device_state {
        set_out_status(m, MigrationStatus::Device);
    }
    emit_pass(m, pass);
    let blob = snapshot(m, runstate_before(m));
    let now = m.now_ns;
    let Some(o) = m.migration.out.as_mut().filter(|o| o.id == id) else {
        return;
    };
    o.passes = pass;
    o.final_phase = true;
    o.final_due_ns = Some(now + blob.len() as u64 * 1_000_000_000 / LINK_BYTES_PER_S);
    o.last_tick_ns = now;
    if let Some(l) = o.link.as_mut() {
        let mut data = blob;
        data.extend_from_slice(&stream::END.to_be_bytes());
        l.send(data);
    }
    m.schedule(0, TimerAction::Migration(Timer::Tick(id)));
}

/// The run state the destination takes over: what the source was in before migration
/// stopped it.
fn runstate_before(m: &Machine) -> RunState {
    if m.migration.out.as_ref().is_some_and(|o| o.was_running) {
        RunState::Running
    } else {
        RunState::Paused
    }
}

fn complete(m: &mut Machine, id: u64) {
    let now = m.now_ns;
    let Some(o) = m.migration.out.as_mut().filter(|o| o.id == id) else {
        return;
    };
    o.end_ns = Some(now);
    o.downtime_ms = Some((now - o.stop_ns.unwrap_or(now)) as i64 / 1_000_000);
    o.link = None;
    let _ = runstate::set_state(m, RunState::PostMigrate);
    set_out_status(m, MigrationStatus::Completed);
    crate::display::spice::migration_completed(m);
}

/// `migrate-continue`.
pub fn continue_(m: &mut Machine, state: MigrationStatus) -> Result<(), QmpError> {
    let cur = m
        .migration
        .out
        .as_ref()
        .map(|o| o.status.clone())
        .unwrap_or(MigrationStatus::None);
    if cur != state {
        return Err(generic(format!("Migration not in expected state: {cur}")));
    }
    if cur != MigrationStatus::PreSwitchover {
        return Ok(());
    }
    let (id, pass) = match m.migration.out.as_ref() {
        Some(o) => (o.id, o.passes + 1),
        None => return Ok(()),
    };
    switchover(m, id, pass);
    Ok(())
}

/// `migrate_cancel`.
pub fn cancel(m: &mut Machine) {
    if !m.migration.active() {
        return;
    }
    let stopped_by_us = matches!(m.run.state, RunState::FinishMigrate);
    let postcopy = m
        .migration
        .out
        .as_ref()
        .is_some_and(|o| o.status == MigrationStatus::PostcopyActive);
    set_out_status(m, MigrationStatus::Cancelling);
    if let Some(o) = m.migration.out.as_mut() {
        if let Some(mut l) = o.link.take() {
            l.abort();
        }
        o.end_ns = Some(m.now_ns);
    }
    if stopped_by_us && !postcopy {
        let was_running = m.migration.out.as_ref().is_some_and(|o| o.was_running);
        if was_running {
            runstate::vm_start(m);
        } else {
            let _ = runstate::set_state(m, RunState::Paused);
        }
    }
    set_out_status(m, MigrationStatus::Cancelled);
}

/// `migrate-start-postcopy`.
pub fn start_postcopy(m: &mut Machine) -> Result<(), QmpError> {
    if !m.migration.cap(&MigrationCapability::PostcopyRam) {
        return Err(generic(
            "Enable postcopy with migrate_set_capability before the start of migration",
        ));
    }
    let Some(o) = m.migration.out.as_mut() else {
        return Err(generic(
            "Postcopy must be started after migration has been started",
        ));
    };
    if matches!(o.status, MigrationStatus::Setup | MigrationStatus::Active) {
        o.postcopy_requested = true;
    }
    Ok(())
}

fn start_postcopy_now(m: &mut Machine, id: u64) {
    let now = m.now_ns;
    runstate::vm_stop(m, RunState::FinishMigrate);
    if m.run.state != RunState::FinishMigrate {
        let _ = runstate::set_state(m, RunState::FinishMigrate);
    }
    let blob = snapshot(m, runstate_before(m));
    let Some(o) = m.migration.out.as_mut().filter(|o| o.id == id) else {
        return;
    };
    o.stop_ns = Some(now);
    o.final_phase = true;
    // What is left of this pass and the pages dirtied meanwhile go by postcopy.
    o.left_normal += o.dirtied.ceil() as u64;
    o.dirtied = 0.0;
    o.final_due_ns = Some(now);
    o.last_tick_ns = now;
    if let Some(l) = o.link.as_mut() {
        let mut data = blob;
        data.extend_from_slice(&stream::RUN.to_be_bytes());
        l.send(data);
    }
    set_out_status(m, MigrationStatus::PostcopyActive);
    // The destination runs from now: downtime is the switch itself.
    if let Some(o) = m.migration.out.as_mut() {
        o.downtime_ms = Some(0);
    }
    m.schedule(TICK_NS, TimerAction::Migration(Timer::Tick(id)));
}

/// `query-migrate`.
pub fn info(m: &Machine) -> api::MigrationInfo {
    let now = m.now_ns;
    if let Some(o) = &m.migration.out {
        let ms = |ns: u64| (ns / 1_000_000) as i64;
        let mut i = api::MigrationInfo {
            status: Some(o.status.clone()),
            ..Default::default()
        };
        let ram = || api::MigrationStats {
            transferred: o.transferred as i64,
            remaining: ((o.left_normal + o.dirtied.ceil() as u64) * PAGE) as i64,
            total: (o.total_pages * PAGE) as i64,
            duplicate: o.duplicate as i64,
            skipped: 0,
            normal: o.normal as i64,
            normal_bytes: (o.normal * PAGE) as i64,
            dirty_pages_rate: o.dirty_pages_rate as i64,
            mbps: o.mbps,
            dirty_sync_count: o.passes,
            postcopy_requests: o.postcopy_requests,
            page_size: PAGE as i64,
        };
        match o.status {
            MigrationStatus::Setup => {}
            MigrationStatus::Active
            | MigrationStatus::PreSwitchover
            | MigrationStatus::Device
            | MigrationStatus::PostcopyActive
            | MigrationStatus::Cancelling => {
                i.total_time = Some(ms(now - o.start_ns));
                i.expected_downtime = Some(o.expected_downtime_ms);
                i.setup_time = o.setup_ns.map(ms);
                i.ram = Some(ram());
                if m.migration.cap(&MigrationCapability::AutoConverge) {
                    i.cpu_throttle_percentage = Some(o.throttle);
                }
            }
            MigrationStatus::Completed => {
                i.total_time = o.end_ns.map(|e| ms(e - o.start_ns));
                i.downtime = o.downtime_ms;
                i.setup_time = o.setup_ns.map(ms);
                i.ram = Some(ram());
            }
            MigrationStatus::Failed => i.error_desc = o.error.clone(),
            _ => {}
        }
        if i.ram.is_some() && m.migration.cap(&MigrationCapability::Xbzrle) {
            i.xbzrle_cache = Some(api::XBZRLECacheStats {
                cache_size: m.migration.params.xbzrle_cache_size.unwrap_or(0) as i64,
                ..Default::default()
            });
        }
        return i;
    }
    api::MigrationInfo {
        status: m.migration.inc.status.clone(),
        error_desc: m
            .migration
            .inc
            .status
            .as_ref()
            .filter(|s| **s == MigrationStatus::Failed)
            .and(m.migration.inc.error.clone()),
        ..Default::default()
    }
}

// ---------------------------------------------------------------------------------------
// Incoming

/// `-incoming URI` at start: listen now (`defer` waits for `migrate-incoming`).
pub fn start_from_config(m: &mut Machine) {
    let Some(uri) = m.config.incoming.clone() else {
        return;
    };
    if uri == "defer" {
        return;
    }
    if let Err(e) = listen(m, &mut Cx::default(), &uri) {
        m.migration.inc.status = Some(MigrationStatus::Failed);
        m.migration.inc.error = Some(e.desc);
    }
}

/// `migrate-incoming`.
pub fn incoming(m: &mut Machine, cx: &mut Cx, uri: &str) -> Result<(), QmpError> {
    if m.config.incoming.is_none() {
        return Err(generic("'-incoming' was not specified on the command line"));
    }
    if m.migration.inc.started {
        return Err(generic("The incoming migration has already been started"));
    }
    listen(m, cx, uri)
}

fn listen(m: &mut Machine, cx: &mut Cx, uri: &str) -> Result<(), QmpError> {
    let source = match parse_uri(m, uri)? {
        Uri::Tcp(a) => {
            let l = TcpListener::bind(tcp_addr(a))
                .map_err(|e| generic(format!("Failed to bind socket: {}", memory::strerror(&e))))?;
            stream::Source::Tcp(l)
        }
        Uri::Unix(p) => {
            let l = UnixListener::bind(p).map_err(|e| {
                generic(format!(
                    "Failed to bind socket to {p}: {}",
                    memory::strerror(&e)
                ))
            })?;
            stream::Source::Unix(l, p.to_string())
        }
        Uri::Exec(c) => stream::Source::Exec(c.to_string()),
        Uri::Fd(name) => stream::Source::Fd(
            crate::fdsets::take_named_fd(m, cx, name)
                .ok_or_else(|| crate::fdsets::fd_not_found(name))?,
        ),
        Uri::File(path) => {
            let path = path.rsplit_once(",offset=").map_or(path, |(p, _)| p);
            let f =
                crate::fdsets::open(m, path, crate::fdsets::OpenOptions::read()).map_err(|e| {
                    generic(format!("Could not open '{path}': {}", memory::strerror(&e)))
                })?;
            stream::Source::File(f)
        }
    };
    m.migration.next_id += 1;
    let id = m.migration.next_id;
    let inc = &mut m.migration.inc;
    inc.id = id;
    inc.started = true;
    inc.status = Some(MigrationStatus::Setup);
    inc.receiver = Some(stream::Receiver::start(source));
    emit_status(m, MigrationStatus::Setup);
    m.schedule(POLL_NS, TimerAction::Migration(Timer::Incoming(id)));
    Ok(())
}

fn poll_incoming(m: &mut Machine, id: u64) {
    if m.migration.inc.id != id {
        return;
    }
    let Some(rx) = m.migration.inc.receiver.as_ref() else {
        return;
    };
    let (connected, loaded, ended, error) = {
        let mut s = match rx.state.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        (s.connected, s.loaded.take(), s.ended, s.error.clone())
    };
    let status = m.migration.inc.status.clone();
    if connected && status == Some(MigrationStatus::Setup) {
        m.migration.inc.status = Some(MigrationStatus::Active);
        emit_status(m, MigrationStatus::Active);
    }
    if let Some(l) = loaded {
        if let Err(e) = load(m, &l) {
            return incoming_failed(m, e);
        }
        if l.postcopy && !ended {
            m.migration.inc.status = Some(MigrationStatus::PostcopyActive);
            emit_status(m, MigrationStatus::PostcopyActive);
            resume_after_load(m, &l);
        } else {
            finish_incoming(m, Some(&l));
            return;
        }
    } else if ended {
        finish_incoming(m, None);
        return;
    }
    if let Some(e) = error {
        return incoming_failed(m, e);
    }
    m.schedule(POLL_NS, TimerAction::Migration(Timer::Incoming(id)));
}

fn incoming_failed(m: &mut Machine, e: String) {
    m.migration.inc.status = Some(MigrationStatus::Failed);
    m.migration.inc.error = Some(e);
    m.migration.inc.receiver = None;
    emit_status(m, MigrationStatus::Failed);
}

fn finish_incoming(m: &mut Machine, l: Option<&stream::Loaded>) {
    m.migration.inc.receiver = None;
    if let Some(l) = l {
        resume_after_load(m, l);
    }
    m.migration.inc.status = Some(MigrationStatus::Completed);
    emit_status(m, MigrationStatus::Completed);
}

/// Start (or not) as the source was and as `-S` / `cont` / `stop` said.
fn resume_after_load(m: &mut Machine, l: &stream::Loaded) {
    if m.run.state != RunState::InMigrate {
        return;
    }
    if l.state.run_state == "running" && m.run.autostart {
        runstate::vm_start(m);
    } else {
        let _ = runstate::set_state(m, RunState::Paused);
    }
}

fn unknown_section(what: &str) -> String {
    format!(
        "Unknown savevm section or instance '{what}' 0. Make sure that your current VM setup \
         matches your saved VM setup, including any hotplugged devices"
    )
}

/// Take over the source's state: check that the machines match, then RAM and drives.
fn load(m: &mut Machine, l: &stream::Loaded) -> Result<(), String> {
    if l.state.ram_size != m.config.memory_bytes {
        return Err(format!(
            "Length mismatch: pc.ram: 0x{:x} in != 0x{:x}: Invalid argument",
            l.state.ram_size, m.config.memory_bytes
        ));
    }
    let mine: Vec<(String, String)> = crate::devices::all_devices(&m.qom.tree)
        .into_iter()
        .map(|n| {
            let node = m.qom.tree.node(n);
            (node.name.to_string(), node.ty.to_string())
        })
        .collect();
    if let Some((name, _)) = l.state.devices.iter().find(|d| !mine.contains(d)) {
        return Err(unknown_section(name));
    }
    for d in &l.state.drives {
        if !m.block.drives.iter().any(|x| x.id == d.id) {
            return Err(unknown_section(&d.id));
        }
    }
    let ranges = memory::ram_ranges(m.config.memory_bytes);
    let in_ram = |n: u64| {
        ranges
            .iter()
            .any(|&(s, len)| n >= s / PAGE && n < (s + len) / PAGE)
    };
    m.memory.written = l
        .pages
        .iter()
        .filter(|(n, _)| in_ram(*n))
        .map(|(n, p)| (*n, p.clone()))
        .collect();
    for d in &l.state.drives {
        if let Some(x) = m.block.drives.iter_mut().find(|x| x.id == d.id) {
            x.tray_open = d.tray_open;
            x.locked = d.locked;
            // A destination drive that opened the same image keeps its node.
            let keep = match (&x.medium, &d.medium) {
                (Some(cur), Some(md)) => cur.user.is_some() && cur.file == md.file,
                _ => false,
            };
            if !keep {
                x.medium = d.medium.as_ref().map(|md| crate::block::Medium {
                    file: md.file.clone(),
                    format: md.format.clone(),
                    read_only: md.read_only,
                    size: md.size,
                    node_name: md.node_name.clone(),
                    user: None,
                });
            }
        }
    }
    Ok(())
}

/// A timer of this module is due.
pub fn on_timer(m: &mut Machine, t: Timer) {
    match t {
        Timer::Tick(id) => tick(m, id),
        Timer::Incoming(id) => poll_incoming(m, id),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn populated_pages_counted_in_closed_form() {
        let schema = Arc::new(crate::embedded::load_schema().expect("schema"));
        for mib in [1u64, 8, 9, 128, 4096] {
            let mut c = crate::MachineConfig::default_machine();
            c.memory_bytes = mib << 20;
            let m = Machine::new(Arc::new(c), schema.clone());
            let (pop, total) = ram_pages(&m);
            let mut want = 0;
            for (s, l) in memory::ram_ranges(m.config.memory_bytes) {
                for p in s / PAGE..(s + l) / PAGE {
                    want += memory::populated(&m, p) as u64;
                }
            }
            assert_eq!(pop, want, "{mib} MiB");
            assert_eq!(total, (mib << 20) / PAGE);
        }
    }
}
