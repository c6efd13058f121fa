//! What is written through a mirror job's filter node while the job runs or is ready: the
//! job copies it to its target, and its progress (`len` and `offset` of `query-block-jobs`,
//! `total-progress` and `current-progress` of `query-jobs`) grows by it, as QEMU's does.
//!
//! Measured on qemu-storage-daemon 10.0.2: in the background copy mode a write marks the
//! granules it touches (the job's granularity); the job counts and copies each marked
//! granule once the next time it looks (a ready mirror within about 100 ms; one under a
//! speed limit when its next chunk is due), the last granule only up to the end of the disk;
//! granules written again before that count once. While the job still copies the disk
//! for the first time, only granules it has already copied count (the others are copied
//! anyway). In the `write-blocking` mode, once the job is actively synced, every write goes
//! to the target too and counts its own bytes, at once. Writes that do not go through the
//! filter (a block backend attached to the source node after the job started) are not seen.
//!
//! The writers run on other threads (an export's NBD connections), so the record is shared
//! with the job behind a lock.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use crate::nbd::ExportBackend;
use crate::Result;

/// The writes through one mirror's filter, until the job takes them.
pub struct MirrorWrites {
    granularity: u64,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Granules written since the job last looked, to copy.
    to_copy: BTreeSet<u64>,
    /// Granules written where a running job had copied, counted when it looks (once each).
    dirty: BTreeSet<u64>,
    /// Bytes a ready job counted as they were written (each write its granules).
    counted: u64,
    /// Bytes written to the target at once since the job last looked.
    synced: u64,
    /// Granules that start below this offset have been copied (the rest are copied anyway).
    copied_below: u64,
    /// The job is ready: it copies each write's granules as it comes.
    ready: bool,
    /// Where writes go at once too (write-blocking and actively synced); None otherwise.
    target: Option<Arc<dyn ExportBackend>>,
}

impl std::fmt::Debug for MirrorWrites {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MirrorWrites")
            .field("granularity", &self.granularity)
            .finish_non_exhaustive()
    }
}

/// What the job takes: the granules written as disk ranges (to copy), and the bytes its
/// progress grows by.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Taken {
    pub ranges: Vec<(u64, u64)>,
    pub bytes: u64,
}

/// The bytes of granules `bits` (of `g` bytes) on a disk of `size` bytes.
fn granule_bytes(bits: impl Iterator<Item = u64>, g: u64, size: u64) -> u64 {
    bits.map(|b| {
        let start = b.saturating_mul(g);
        start.saturating_add(g).min(size).saturating_sub(start)
    })
    .sum()
}

impl MirrorWrites {
    /// A record for a job copying in granules of `granularity` bytes (at least 1).
    pub fn new(granularity: u64) -> Arc<MirrorWrites> {
        Arc::new(MirrorWrites {
            granularity: granularity.max(1),
            state: Mutex::new(State::default()),
        })
    }

    pub fn granularity(&self) -> u64 {
        self.granularity
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The job has copied the disk below `offset` (`u64::MAX`: all of it).
    pub fn set_copied_below(&self, offset: u64) {
        self.state().copied_below = offset;
    }

    /// Writes go to `target` at once too (Some), or are only marked (None).
    pub fn set_mirrored_at_once(&self, target: Option<Arc<dyn ExportBackend>>) {
        self.state().target = target;
    }

    /// Takes the bytes mirrored at once since the job last looked (they count whatever the
    /// job is doing, a paused job too).
    pub fn take_synced(&self) -> u64 {
        std::mem::take(&mut self.state().synced)
    }

    /// The job is ready (it copies each write as it comes), or not.
    pub fn set_ready(&self, ready: bool) {
        self.state().ready = ready;
    }

    /// Takes what was written since the job last looked, on a disk of `size` bytes.
    pub fn take(&self, size: u64) -> Taken {
        let mut s = self.state();
        let g = self.granularity;
        let dirty = std::mem::take(&mut s.dirty);
        let bytes = std::mem::take(&mut s.counted)
            + std::mem::take(&mut s.synced)
            + granule_bytes(dirty.into_iter(), g, size);
        let mut ranges: Vec<(u64, u64)> = Vec::new();
        for bit in std::mem::take(&mut s.to_copy) {
            let start = bit.saturating_mul(g);
            let end = start.saturating_add(g).min(size);
            match ranges.last_mut() {
                Some(last) if last.1 == start => last.1 = end,
                _ if start < end => ranges.push((start, end)),
                _ => {}
            }
        }
        Taken { ranges, bytes }
    }

    /// `len` bytes at `offset` were written through the filter, on a disk of `size` bytes;
    /// `mirror` writes them to the target when writes are mirrored at once.
    fn note(
        &self,
        offset: u64,
        len: u64,
        size: u64,
        mirror: impl FnOnce(&dyn ExportBackend) -> Result<()>,
    ) -> Result<()> {
        if len == 0 {
            return Ok(());
        }
        let mut s = self.state();
        if let Some(t) = s.target.clone() {
            mirror(t.as_ref())?;
            s.synced = s.synced.saturating_add(len);
            return Ok(());
        }
        let g = self.granularity;
        let first = offset / g;
        let last = (offset.saturating_add(len) - 1) / g;
        if s.ready {
            s.counted = s
                .counted
                .saturating_add(granule_bytes(first..=last, g, size));
            s.to_copy.extend(first..=last);
            return Ok(());
        }
        for bit in first..=last {
            if bit.saturating_mul(g) < s.copied_below {
                s.dirty.insert(bit);
                s.to_copy.insert(bit);
            }
        }
        Ok(())
    }
}

/// A mirror filter's data path: its child's, with what is written noted for the job.
pub struct Tracking {
    pub inner: Arc<dyn ExportBackend>,
    pub writes: Arc<MirrorWrites>,
}

impl ExportBackend for Tracking {
    fn size(&self) -> u64 {
        self.inner.size()
    }
    fn read(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.inner.read(offset, buf)
    }
    fn write(&self, offset: u64, data: &[u8]) -> Result<()> {
        self.inner.write(offset, data)?;
        let size = self.inner.size();
        self.writes
            .note(offset, data.len() as u64, size, |t| t.write(offset, data))
    }
    fn write_zeroes(&self, offset: u64, len: u64) -> Result<()> {
        self.inner.write_zeroes(offset, len)?;
        let size = self.inner.size();
        self.writes
            .note(offset, len, size, |t| t.write_zeroes(offset, len))
    }
    fn trim(&self, offset: u64, len: u64) -> Result<()> {
        self.inner.trim(offset, len)?;
        let size = self.inner.size();
        self.writes.note(offset, len, size, |t| t.trim(offset, len))
    }
    fn flush(&self) -> Result<()> {
        self.inner.flush()
    }
    fn reads_zeroes(&self, offset: u64, len: u64) -> bool {
        self.inner.reads_zeroes(offset, len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn granules_count_as_the_job_looks_or_as_written() {
        const MIB: u64 = 1 << 20;
        let w = MirrorWrites::new(65536);
        w.set_copied_below(131072);
        let mark = |off: u64, len: u64, size: u64| w.note(off, len, size, |_| Ok(())).unwrap();
        // Running: once each, where the job had copied (the rest is copied anyway).
        mark(0, 4096, MIB);
        mark(100, 1000, MIB);
        mark(65535, 2, MIB);
        mark(200_000, 10, MIB);
        let t = w.take(MIB);
        assert_eq!(t.ranges, vec![(0, 131072)]);
        assert_eq!(t.bytes, 131072);
        assert_eq!(w.take(MIB), Taken::default());
        // Ready: each write its granules, the last one only up to the disk's end.
        w.set_copied_below(u64::MAX);
        w.set_ready(true);
        mark(0, 4096, MIB);
        mark(0, 4096, MIB);
        mark(MIB, 512, MIB + 512);
        let t = w.take(MIB + 512);
        assert_eq!(t.ranges, vec![(0, 65536), (MIB, MIB + 512)]);
        assert_eq!(t.bytes, 2 * 65536 + 512);
    }
}
