//! Image file locking as QEMU's `file` driver does it, so that qmpkit and QEMU's programs
//! (qemu-img, qemu-io, qemu-storage-daemon, qemu-system-*) see each other's locks.
//!
//! Each file node holds open-file-description (OFD) byte-range read locks on its image:
//! byte `100 + i` while it holds permission bit `i` (consistent-read 0, write 1,
//! write-unchanged 2, resize 3), byte `200 + i` while it does not share permission `i`. A node
//! about to take a permission tests byte `200 + i` for a lock held through another open file
//! (any process, or another node of this one: OFD locks conflict within a process too); a
//! node about to stop sharing one tests byte `100 + i`. The change is prepared (the new locks
//! taken beside the old, then tested), then committed (the surplus dropped) or aborted.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;

use crate::graph::{Perm, PermSet};
use crate::{Error, Result};

const PERM_BASE: i64 = 100;
const SHARED_BASE: i64 = 200;

/// The `locking` option of a file node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Locking {
    On,
    Off,
    #[default]
    Auto,
}

/// A file node's locks: its own open file description and what it holds.
#[derive(Debug)]
pub struct FileLock {
    file: File,
    /// Held (committed) permissions and shared permissions.
    perm: PermSet,
    shared: PermSet,
    /// Bytes locked now (a prepared change may lock more than is held).
    locked_perm: PermSet,
    locked_unshared: PermSet,
}

fn bit_index(p: Perm) -> i64 {
    match p {
        Perm::ConsistentRead => 0,
        Perm::Write => 1,
        Perm::WriteUnchanged => 2,
        Perm::Resize => 3,
        Perm::GraphMod => 4,
    }
}

fn flock(kind: libc::c_int, start: i64) -> libc::flock {
    // SAFETY: `flock` is plain data; all-zero is a valid value of it.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = kind as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = start as libc::off_t;
    fl.l_len = 1;
    fl.l_pid = 0;
    fl
}

impl FileLock {
    /// Opens the image once more for its locks; nothing is locked yet.
    pub fn open(path: &Path) -> std::io::Result<FileLock> {
        Ok(FileLock {
            file: File::open(path)?,
            perm: PermSet::NONE,
            shared: PermSet::ALL,
            locked_perm: PermSet::NONE,
            locked_unshared: PermSet::NONE,
        })
    }

    fn set(&self, byte: i64, lock: bool) -> std::io::Result<()> {
        let kind = if lock { libc::F_RDLCK } else { libc::F_UNLCK };
        let fl = flock(kind, byte);
        // SAFETY: a valid descriptor and a pointer to a live `flock`.
        let r = unsafe { libc::fcntl(self.file.as_raw_fd(), libc::F_OFD_SETLK, &fl) };
        if r < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// Whether another open file description holds a lock on `byte`.
    fn taken_elsewhere(&self, byte: i64) -> bool {
        let mut fl = flock(libc::F_WRLCK, byte);
        // SAFETY: a valid descriptor and a pointer to a live `flock`.
        let r = unsafe { libc::fcntl(self.file.as_raw_fd(), libc::F_OFD_GETLK, &mut fl) };
        r == 0 && fl.l_type != libc::F_UNLCK as libc::c_short
    }

    /// Locks the bytes of `perm` and `unshared`; with `unlock`, unlocks the others.
    fn apply(&mut self, perm: PermSet, unshared: PermSet, unlock: bool) -> Result<()> {
        let mut locked = [self.locked_perm, self.locked_unshared];
        let mut r = Ok(());
        'out: for (k, (base, want)) in [(PERM_BASE, perm), (SHARED_BASE, unshared)]
            .into_iter()
            .enumerate()
        {
            for p in PermSet::ALL.list() {
                let bit = PermSet::of(&[p]);
                let byte = base + bit_index(p);
                if want.contains(p) && !locked[k].contains(p) {
                    if self.set(byte, true).is_err() {
                        r = Err(Error::generic(format!("Failed to lock byte {byte}")));
                        break 'out;
                    }
                    locked[k] = locked[k].union(bit);
                } else if !want.contains(p) && unlock && locked[k].contains(p) {
                    let _ = self.set(byte, false);
                    locked[k] = locked[k].minus(bit);
                }
            }
        }
        [self.locked_perm, self.locked_unshared] = locked;
        r
    }

    /// Tests the new permissions against the locks of everyone else, in QEMU's order and words.
    fn check(&self, perm: PermSet, shared: PermSet) -> Result<()> {
        for p in perm.list() {
            if self.taken_elsewhere(SHARED_BASE + bit_index(p)) {
                return Err(Error::generic(format!(
                    "Failed to get \"{}\" lock",
                    p.words()
                )));
            }
        }
        for p in PermSet::ALL.minus(shared).list() {
            if self.taken_elsewhere(PERM_BASE + bit_index(p)) {
                return Err(Error::generic(format!(
                    "Failed to get shared \"{}\" lock",
                    p.words()
                )));
            }
        }
        Ok(())
    }

    /// The first phase of a permission change: takes the new locks beside the held ones and
    /// tests the new permissions. Nothing to do when the change only gives up permissions.
    /// On failure the locks are as they were.
    pub fn prepare(&mut self, perm: PermSet, shared: PermSet) -> Result<()> {
        let (held, held_shared) = (self.perm, self.shared);
        if held.union(perm) == held && held_shared.intersect(shared) == held_shared {
            return Ok(());
        }
        let r = self
            .apply(
                held.union(perm),
                PermSet::ALL
                    .minus(held_shared)
                    .union(PermSet::ALL.minus(shared)),
                false,
            )
            .and_then(|()| self.check(perm, shared));
        if r.is_err() {
            self.abort();
        }
        r
    }

    /// Back to the held permissions' locks.
    pub fn abort(&mut self) {
        let (p, s) = (self.perm, self.shared);
        let _ = self.apply(p, PermSet::ALL.minus(s), true);
    }

    /// The change holds: exactly the new permissions' locks.
    pub fn commit(&mut self, perm: PermSet, shared: PermSet) {
        self.perm = perm;
        self.shared = shared;
        let _ = self.apply(perm, PermSet::ALL.minus(shared), true);
    }

    /// What the node holds: (permissions, shared permissions).
    pub fn held(&self) -> (PermSet, PermSet) {
        (self.perm, self.shared)
    }
}
