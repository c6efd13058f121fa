//! File descriptors the monitor's clients hand to the machine.
//!
//! Two kinds, as in QEMU:
//!
//! - **Named descriptors** (`getfd` / `closefd`): each belongs to the client connection that
//!   passed it (the session's map, [`Cx::session_fds`]), so it is closed when that client goes
//!   away. A command that takes `fd:NAME` (migrate, a dump) takes the descriptor out of the
//!   caller's map ([`take_named_fd`]). A call without a session (the human monitor, tests)
//!   uses the machine's own map instead.
//! - **Fd sets** (`add-fd` / `remove-fd` / `query-fdsets`): numbered sets of descriptors,
//!   each with an optional opaque string, that outlive the client that added them. A
//!   subsystem opens `/dev/fdset/N` through [`open`]: it gets its own duplicate of the first
//!   descriptor of the set whose access mode (read, write, read-write) is the one asked for,
//!   and the set keeps track of that duplicate while the opener holds it ([`HostFile`]).
//!   `remove-fd` closes the set's descriptors at once; a set without descriptors and without
//!   duplicates in use goes away (so a set emptied while a chardev still writes through it
//!   is listed with no descriptors until the chardev is removed). Everything left is closed
//!   when the machine is dropped.
//!
//! Listing order is QEMU's: sets by descending id, descriptors of a set in the order they
//! were added. A new set without `fdset-id` takes the lowest id from 0 not in use.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use qmpkit_wire::QmpError;

use crate::{Cx, Machine};

/// One descriptor of a set.
#[derive(Debug)]
pub struct FdsetFd {
    pub fd: OwnedFd,
    pub opaque: Option<String>,
}

/// Marks one duplicate of a set's descriptor that a subsystem holds.
#[derive(Debug)]
pub struct FdsetUse {
    pub fdset_id: i64,
}

/// One fd set.
#[derive(Debug, Default)]
pub struct Fdset {
    /// Oldest first.
    pub fds: Vec<FdsetFd>,
    /// The duplicates handed out (dead once their holder dropped them).
    dups: Vec<Weak<FdsetUse>>,
}

impl Fdset {
    /// Duplicates still held.
    pub fn dups_in_use(&self) -> usize {
        self.dups.iter().filter(|w| w.strong_count() > 0).count()
    }
}

/// Fd sets by id.
pub type Sets = BTreeMap<i64, Fdset>;

/// The machine's descriptors.
#[derive(Debug, Default)]
pub struct FdState {
    /// Named descriptors of calls that come without a session.
    pub named: HashMap<String, OwnedFd>,
    /// Fd sets by id, shared with the block graph, which opens `/dev/fdset/N` for its file
    /// nodes itself ([`block_opener`]).
    sets: Arc<Mutex<Sets>>,
}

impl FdState {
    /// The sets, with duplicates whose holders closed them forgotten and sets left unused
    /// dropped.
    pub fn sets(&self) -> MutexGuard<'_, Sets> {
        let mut sets = self.sets.lock().unwrap_or_else(|e| e.into_inner());
        prune(&mut sets);
        sets
    }
}

fn prune(sets: &mut Sets) {
    sets.retain(|_, s| {
        s.dups.retain(|w| w.strong_count() > 0);
        !(s.fds.is_empty() && s.dups.is_empty())
    });
}

/// A file a subsystem opened through [`open`]: a host file, or a duplicate of an fd set's
/// descriptor that the set counts as in use while this value lives.
#[derive(Debug)]
pub struct HostFile {
    pub file: File,
    used: Option<Arc<FdsetUse>>,
}

impl HostFile {
    /// A plain host file.
    pub fn plain(file: File) -> HostFile {
        HostFile { file, used: None }
    }

    /// The fd set this file came from, if any.
    pub fn fdset(&self) -> Option<i64> {
        self.used.as_ref().map(|u| u.fdset_id)
    }
}

impl std::ops::Deref for HostFile {
    type Target = File;
    fn deref(&self) -> &File {
        &self.file
    }
}

impl std::ops::DerefMut for HostFile {
    fn deref_mut(&mut self) -> &mut File {
        &mut self.file
    }
}

impl AsFd for HostFile {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

impl io::Write for HostFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl io::Read for HostFile {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.file.read(buf)
    }
}

/// How a file is opened: the access mode an fd set's descriptor must have, and for host
/// paths the flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
    ReadWrite,
}

impl Access {
    fn accmode(self) -> libc::c_int {
        match self {
            Access::Read => libc::O_RDONLY,
            Access::Write => libc::O_WRONLY,
            Access::ReadWrite => libc::O_RDWR,
        }
    }
}

/// What [`open`] does with a host path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenOptions {
    pub access: Access,
    /// Create the file if missing.
    pub create: bool,
    /// Truncate it.
    pub truncate: bool,
    /// Append to it.
    pub append: bool,
}

impl OpenOptions {
    pub fn read() -> OpenOptions {
        OpenOptions {
            access: Access::Read,
            create: false,
            truncate: false,
            append: false,
        }
    }
    pub fn write_create() -> OpenOptions {
        OpenOptions {
            access: Access::Write,
            create: true,
            truncate: true,
            append: false,
        }
    }
}

/// The fd set id of a `/dev/fdset/N` path; `Some(Err)` when the number does not parse.
pub fn fdset_path(path: &str) -> Option<Result<i64, io::Error>> {
    let rest = path.strip_prefix("/dev/fdset/")?;
    Some(
        rest.parse::<i64>()
            .ok()
            .filter(|n| *n >= 0 && rest.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL)),
    )
}

/// Open `path` as QEMU opens files a command names: `/dev/fdset/N` is a duplicate of the
/// set's descriptor with the wanted access mode (ENOENT when there is no such set, EACCES
/// when no descriptor of it has that mode); any other path is the host file. The caller
/// words the error (`Could not open '…': <strerror>`, see [`crate::memory::strerror`]).
pub fn open(m: &mut Machine, path: &str, opts: OpenOptions) -> io::Result<HostFile> {
    if let Some(id) = fdset_path(path) {
        let want = opts.access.accmode();
        return dup_from_set(&mut m.fds.sets(), id?, want)
            .map(|(file, used)| HostFile {
                file,
                used: Some(used),
            })
            .map_err(|e| match e {
                DupError::NoSet => io::Error::from_raw_os_error(libc::ENOENT),
                DupError::NoMatch => io::Error::from_raw_os_error(libc::EACCES),
                DupError::Io(e) => e,
            });
    }
    let mut o = std::fs::OpenOptions::new();
    match opts.access {
        Access::Read => o.read(true),
        Access::Write => o.write(true),
        Access::ReadWrite => o.read(true).write(true),
    };
    o.create(opts.create)
        .truncate(opts.truncate && !opts.append)
        .append(opts.append);
    Ok(HostFile::plain(o.open(path)?))
}

/// Why a set gave no duplicate.
enum DupError {
    NoSet,
    NoMatch,
    Io(io::Error),
}

/// A duplicate of the first descriptor of set `id` whose access mode and `O_DIRECT` flag
/// are `want`'s (QEMU's rule), counted as in use while the returned mark lives.
fn dup_from_set(
    sets: &mut Sets,
    id: i64,
    want: libc::c_int,
) -> Result<(File, Arc<FdsetUse>), DupError> {
    let set = sets.get_mut(&id).ok_or(DupError::NoSet)?;
    let fd = set
        .fds
        .iter()
        .find(|f| matched_flags(f.fd.as_raw_fd()) == Some(want))
        .ok_or(DupError::NoMatch)?;
    let dup = fd.fd.try_clone().map_err(DupError::Io)?;
    let used = Arc::new(FdsetUse { fdset_id: id });
    set.dups.push(Arc::downgrade(&used));
    Ok((File::from(dup), used))
}

/// The flags of a descriptor an fd set compares: its access mode and `O_DIRECT`.
fn matched_flags(fd: RawFd) -> Option<libc::c_int> {
    // SAFETY: F_GETFL on a descriptor this process owns reads its status flags only.
    let fl = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    (fl >= 0).then_some(fl & (libc::O_ACCMODE | libc::O_DIRECT))
}

/// How the block graph opens `/dev/fdset/N` for a file node, in QEMU's words when it
/// cannot: the set must exist and hold a descriptor with the node's access mode and
/// `O_DIRECT` as its cache mode asks; the node holds a duplicate, which keeps the set.
pub fn block_opener(fds: &FdState) -> Arc<qmpkit_block::graph::OpenFn> {
    let sets = Arc::clone(&fds.sets);
    Arc::new(move |path: &str, flags: qmpkit_block::graph::OpenFlags| {
        let id = fdset_path(path)?;
        let err = |desc: String| Some(Err(qmpkit_block::Error::generic(desc)));
        let Ok(id) = id else {
            return err(format!("Could not parse fdset {path}"));
        };
        let mut want = if flags.write {
            libc::O_RDWR
        } else {
            libc::O_RDONLY
        };
        if flags.direct {
            want |= libc::O_DIRECT;
        }
        let mut sets = sets.lock().unwrap_or_else(|e| e.into_inner());
        prune(&mut sets);
        match dup_from_set(&mut sets, id, want) {
            Ok((file, used)) => Some(Ok(qmpkit_block::graph::PassedFile {
                file,
                keep: Box::new(used),
            })),
            Err(DupError::NoSet) => err(format!("Failed to find fdset {path}")),
            Err(DupError::NoMatch) => err(format!(
                "Failed to find file descriptor with matching flags=0x{want:x}"
            )),
            Err(DupError::Io(e)) => err(format!(
                "Could not open '{path}': {}",
                qmpkit_schema::source::strerror(&e)
            )),
        }
    })
}

/// Take the descriptor named `name` from the calling client (or from the machine's own
/// names when the call has no client). QEMU's words when it is missing are the caller's
/// (`File descriptor named '…' has not been found` for `fd:` URIs).
pub fn take_named_fd(m: &mut Machine, cx: &mut Cx, name: &str) -> Option<OwnedFd> {
    if let Some(s) = &cx.session_fds {
        if let Ok(mut map) = s.lock() {
            if let Some(fd) = map.remove(name) {
                return Some(fd);
            }
        }
    }
    m.fds.named.remove(name)
}

/// The error of `fd:NAME` when the client passed no such descriptor.
pub fn fd_not_found(name: &str) -> QmpError {
    QmpError::generic(format!("File descriptor named '{name}' has not been found"))
}

/// `getfd`: keep the descriptor that came with the call under `name` (replacing, and so
/// closing, one of the same name).
pub fn getfd(m: &mut Machine, cx: &mut Cx, name: &str) -> Result<(), QmpError> {
    // Taken (and on a bad name closed) before the name is checked, as QEMU does.
    let fd = take_received_fd(cx)?;
    if name.starts_with(|c: char| c.is_ascii_digit()) {
        return Err(QmpError::generic(
            "Parameter 'fdname' expects a name not starting with a digit",
        ));
    }
    if let Some(s) = &cx.session_fds {
        if let Ok(mut map) = s.lock() {
            map.insert(name.to_string(), fd);
            return Ok(());
        }
    }
    m.fds.named.insert(name.to_string(), fd);
    Ok(())
}

/// `closefd`.
pub fn closefd(m: &mut Machine, cx: &mut Cx, name: &str) -> Result<(), QmpError> {
    match take_named_fd(m, cx, name) {
        Some(fd) => {
            drop(fd);
            Ok(())
        }
        None => Err(QmpError::generic(format!(
            "File descriptor named '{name}' not found"
        ))),
    }
}

/// The first descriptor that came with the call; the others close, as QEMU closes the
/// rest of a message's descriptors once a command takes one.
fn take_received_fd(cx: &mut Cx) -> Result<OwnedFd, QmpError> {
    if cx.fds.is_empty() {
        return Err(QmpError::generic(
            "No file descriptor supplied via SCM_RIGHTS",
        ));
    }
    let fd = cx.fds.remove(0);
    cx.fds.clear();
    Ok(fd)
}

/// `add-fd`: the descriptor that came with the call joins set `want` (a new set, the lowest
/// free id, without). Answers `(fdset id, descriptor number)`.
pub fn add_fd(
    m: &mut Machine,
    cx: &mut Cx,
    want: Option<i64>,
    opaque: Option<String>,
) -> Result<(i64, i64), QmpError> {
    let fd = take_received_fd(cx)?;
    if want.is_some_and(|id| id < 0) {
        return Err(QmpError::generic(
            "Parameter 'fdset-id' expects a non-negative value",
        ));
    }
    let raw = fd.as_raw_fd() as i64;
    let mut sets = m.fds.sets();
    let id = match want {
        Some(id) => id,
        None => {
            let mut id = 0;
            while sets.contains_key(&id) {
                id += 1;
            }
            id
        }
    };
    sets.entry(id).or_default().fds.push(FdsetFd { fd, opaque });
    Ok((id, raw))
}

/// The command line's `-add-fd` descriptors, each a close-on-exec duplicate in its set with
/// its opaque string, in the order given, as QEMU takes them at start-up. The descriptors
/// themselves stay the process's (a fleet's machines each take their own duplicates). One the
/// process does not have is left out: the front ends refuse it, in QEMU's words, before a
/// machine is made.
pub fn add_from_config(state: &FdState, given: &[crate::config::FdConfig]) {
    let mut sets = state.sets.lock().unwrap_or_else(|e| e.into_inner());
    for g in given {
        // SAFETY: F_DUPFD_CLOEXEC makes a new descriptor and leaves `g.fd` as it is.
        let dup = unsafe { libc::fcntl(g.fd, libc::F_DUPFD_CLOEXEC, 3) };
        if dup < 0 {
            continue;
        }
        // SAFETY: `dup` was just made and nothing else owns it.
        let fd = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(dup) };
        sets.entry(g.set).or_default().fds.push(FdsetFd {
            fd,
            opaque: g.opaque.clone(),
        });
    }
}

/// `remove-fd`: close descriptor `fd` of set `id`, or all of the set's.
pub fn remove_fd(m: &mut Machine, id: i64, fd: Option<i64>) -> Result<(), QmpError> {
    let not_found = || {
        QmpError::generic(format!(
            "File descriptor named '{}' not found",
            match fd {
                Some(f) => format!("fdset-id:{id}, fd:{f}"),
                None => format!("fdset-id:{id}"),
            }
        ))
    };
    let mut sets = m.fds.sets();
    let set = sets.get_mut(&id).ok_or_else(not_found)?;
    match fd {
        Some(f) => {
            let i = set
                .fds
                .iter()
                .position(|e| e.fd.as_raw_fd() as i64 == f)
                .ok_or_else(not_found)?;
            set.fds.remove(i);
        }
        None => set.fds.clear(),
    }
    prune(&mut sets);
    Ok(())
}

/// One set as listed: `(id, [(fd, opaque)])`.
pub type Listed = (i64, Vec<(i64, Option<String>)>);

/// The sets as `query-fdsets` lists them, descending ids.
pub fn list(m: &mut Machine) -> Vec<Listed> {
    m.fds
        .sets()
        .iter()
        .rev()
        .map(|(id, s)| {
            (
                *id,
                s.fds
                    .iter()
                    .map(|f| (f.fd.as_raw_fd() as i64, f.opaque.clone()))
                    .collect(),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn machine() -> Machine {
        let schema = crate::embedded::load_schema().expect("embedded schema loads");
        Machine::new(
            Arc::new(crate::MachineConfig::default_machine()),
            Arc::new(schema),
        )
    }

    fn fd_of(path: &std::path::Path, write: bool) -> OwnedFd {
        let f = std::fs::OpenOptions::new()
            .read(!write)
            .write(write)
            .create(write)
            .truncate(write)
            .open(path)
            .expect("open test file");
        OwnedFd::from(f)
    }

    #[test]
    fn sets_follow_qemus_ids_order_and_access_modes() {
        let dir = std::env::temp_dir().join(format!("qmpkit-fdsets-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let p = dir.join("f");
        let mut m = machine();
        let mut cx = Cx::default();
        cx.fds.push(fd_of(&p, true));
        let (a, _) = add_fd(&mut m, &mut cx, None, Some("hello".into())).expect("add");
        cx.fds.push(fd_of(&p, false));
        let (b, _) = add_fd(&mut m, &mut cx, Some(3), None).expect("add");
        cx.fds.push(fd_of(&p, false));
        let (c, _) = add_fd(&mut m, &mut cx, None, None).expect("add");
        assert_eq!((a, b, c), (0, 3, 1));
        let ids: Vec<i64> = list(&mut m).iter().map(|s| s.0).collect();
        assert_eq!(ids, vec![3, 1, 0]);
        // Access modes must match exactly.
        let e = open(&mut m, "/dev/fdset/3", OpenOptions::write_create()).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EACCES));
        let e = open(&mut m, "/dev/fdset/9", OpenOptions::read()).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOENT));
        let f = open(&mut m, "/dev/fdset/0", OpenOptions::write_create()).expect("dup");
        assert_eq!(f.fdset(), Some(0));
        // Emptied while in use: listed without descriptors until the user lets go.
        remove_fd(&mut m, 0, None).expect("remove");
        assert!(list(&mut m).iter().any(|s| s.0 == 0 && s.1.is_empty()));
        drop(f);
        assert!(!list(&mut m).iter().any(|s| s.0 == 0));
        let e = remove_fd(&mut m, 1, Some(999)).unwrap_err();
        assert_eq!(
            e.desc,
            "File descriptor named 'fdset-id:1, fd:999' not found"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
