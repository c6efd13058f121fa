//! Dirty bitmaps: which parts of a node's disk were written since a point in time, one bit per
//! `granularity` bytes, with QEMU's rules and words for adding, removing, clearing, enabling,
//! disabling and merging them. Persistent bitmaps live in the qcow2 file itself
//! ([`crate::qcow2_bitmaps`]); the graph loads them when a node opens and stores them when it
//! closes or becomes read-only.
//!
//! A node's bitmaps are shared with its data path ([`Tracked`]), so every write that reaches
//! the node (the guest's, an NBD client's, a job's) marks them.

use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

use crate::counted::WriteMark;
use crate::nbd::{ExportBackend, SharedImage};
use crate::{Error, Result};

/// The granularity a bitmap gets when none is asked for (QEMU's for a 64 KiB-cluster image
/// and for raw files alike).
pub const DEFAULT_GRANULARITY: u64 = 65536;
/// The longest bitmap name (the qcow2 format's limit, which QEMU applies to every bitmap).
pub const MAX_NAME: usize = 1023;
/// The coarsest granularity QEMU accepts.
pub const MAX_GRANULARITY: u64 = 1 << 31;

/// One dirty bitmap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirtyBitmap {
    pub name: String,
    pub granularity: u64,
    /// Bytes of disk covered (the node's size).
    size: u64,
    words: Vec<u64>,
    /// Recording writes (`enabled`; the qcow2 `auto` flag).
    pub enabled: bool,
    /// Stored in the image when the node closes.
    pub persistent: bool,
    /// Loaded from a file that says it was not stored cleanly (qcow2 `in_use`).
    pub inconsistent: bool,
    /// Persistent in a read-only image: may be enabled or disabled, not changed.
    pub readonly: bool,
    /// In use by a job (a backup copying by it): frozen, its writes going to a successor.
    pub busy: bool,
    /// An anonymous bitmap that records the writes a busy one misses: the busy one's name.
    pub successor_of: Option<String>,
}

impl DirtyBitmap {
    pub fn new(name: &str, granularity: u64, size: u64) -> DirtyBitmap {
        let bits = size.div_ceil(granularity);
        DirtyBitmap {
            name: name.to_string(),
            granularity,
            size,
            words: vec![0; bits.div_ceil(64) as usize],
            enabled: true,
            persistent: false,
            inconsistent: false,
            readonly: false,
            busy: false,
            successor_of: None,
        }
    }

    /// Number of bits (granules covering the disk).
    pub fn bits(&self) -> u64 {
        self.size.div_ceil(self.granularity)
    }

    fn set_bits(&mut self, first: u64, last: u64) {
        for b in first..=last {
            self.words[(b / 64) as usize] |= 1 << (b % 64);
        }
    }

    /// Marks `len` bytes at `offset` dirty, whether or not the bitmap records (what a merge
    /// does).
    pub fn set_range(&mut self, offset: u64, len: u64) {
        let bits = self.bits();
        if len == 0 || bits == 0 || offset >= bits.saturating_mul(self.granularity) {
            return;
        }
        let first = offset / self.granularity;
        let last = (offset.saturating_add(len - 1) / self.granularity).min(bits - 1);
        self.set_bits(first, last);
    }

    /// A write of `len` bytes at `offset` reached the node.
    pub fn record(&mut self, offset: u64, len: u64) {
        if self.enabled && !self.busy {
            self.set_range(offset, len);
        }
    }

    /// Clears the bits of the first `bytes` bytes' worth of dirty granules, in order (what a
    /// job that copied by this bitmap has copied).
    pub fn clear_first(&mut self, bytes: u64) {
        let mut left = bytes.div_ceil(self.granularity);
        for b in 0..self.bits() {
            if left == 0 {
                break;
            }
            if self.is_set(b) {
                self.words[(b / 64) as usize] &= !(1 << (b % 64));
                left -= 1;
            }
        }
    }

    /// Marks the first `bytes` bytes' worth of granules dirty and the rest clean.
    pub fn set_first(&mut self, bytes: u64) {
        self.clear();
        let n = bytes.div_ceil(self.granularity).min(self.bits());
        if n > 0 {
            self.set_bits(0, n - 1);
        }
    }

    pub fn is_set(&self, bit: u64) -> bool {
        bit < self.bits() && self.words[(bit / 64) as usize] & (1 << (bit % 64)) != 0
    }

    /// Dirty bytes, as QEMU counts them: set bits times the granularity.
    pub fn count(&self) -> u64 {
        self.words
            .iter()
            .map(|w| u64::from(w.count_ones()))
            .sum::<u64>()
            * self.granularity
    }

    pub fn clear(&mut self) {
        self.words.iter_mut().for_each(|w| *w = 0);
    }

    /// Adds every dirty area of `other` (any granularity) to this bitmap.
    pub fn merge_from(&mut self, other: &DirtyBitmap) {
        for (wi, &w) in other.words.iter().enumerate() {
            let mut w = w;
            while w != 0 {
                let b = wi as u64 * 64 + u64::from(w.trailing_zeros());
                w &= w - 1;
                self.set_range(b * other.granularity, other.granularity);
            }
        }
    }

    /// The bits as bytes, bit `i` in byte `i / 8` at position `i % 8` (the qcow2 layout, and
    /// the little-endian words QEMU hashes).
    pub fn to_bytes(&self) -> Vec<u8> {
        self.words.iter().flat_map(|w| w.to_le_bytes()).collect()
    }

    /// Replaces the bits from bytes in [`DirtyBitmap::to_bytes`]'s layout (short input: the
    /// rest stays clean; bits past the disk's end are dropped).
    pub fn load_bytes(&mut self, bytes: &[u8]) {
        let bits = self.bits();
        for (i, w) in self.words.iter_mut().enumerate() {
            let mut b = [0u8; 8];
            for (j, x) in b.iter_mut().enumerate() {
                *x = bytes.get(i * 8 + j).copied().unwrap_or(0);
            }
            *w = u64::from_le_bytes(b);
        }
        if bits % 64 != 0 {
            if let Some(last) = self.words.last_mut() {
                *last &= (1u64 << (bits % 64)) - 1;
            }
        }
    }

    /// `x-debug-block-dirty-bitmap-sha256`: SHA-256 of the bits as little-endian 64-bit words.
    pub fn sha256(&self) -> String {
        let digest = Sha256::digest(self.to_bytes());
        digest.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The disk grew or shrank (`block_resize`): bits past the new end go.
    pub fn resize(&mut self, size: u64) {
        let bits = size.div_ceil(self.granularity);
        self.size = size;
        self.words.resize(bits.div_ceil(64) as usize, 0);
        if bits % 64 != 0 {
            if let Some(last) = self.words.last_mut() {
                *last &= (1u64 << (bits % 64)) - 1;
            }
        }
    }
}

/// A node's bitmaps, newest first (the order QEMU lists them in), and the names in the order
/// the image file stores them.
#[derive(Debug, Clone, Default)]
pub struct BitmapSet {
    pub list: Vec<DirtyBitmap>,
    /// Names of the persistent bitmaps in the file's directory order.
    pub file_order: Vec<String>,
    /// Whether the image file holds a bitmap directory that a store must replace.
    pub file_has_bitmaps: bool,
}

/// A node's bitmaps shared with its data path.
pub type SharedBitmaps = Arc<Mutex<BitmapSet>>;

fn not_found(name: &str) -> Error {
    Error::generic(format!("Dirty bitmap '{name}' not found"))
}

/// The words for a bitmap a job holds.
pub fn in_use(name: &str) -> Error {
    Error::generic(format!(
        "Bitmap '{name}' is currently in use by another operation and cannot be used"
    ))
}

impl BitmapSet {
    pub fn get(&self, name: &str) -> Result<&DirtyBitmap> {
        self.list
            .iter()
            .find(|b| b.name == name && !name.is_empty())
            .ok_or_else(|| not_found(name))
    }

    pub fn get_mut(&mut self, name: &str) -> Result<&mut DirtyBitmap> {
        self.list
            .iter_mut()
            .find(|b| b.name == name && !name.is_empty())
            .ok_or_else(|| not_found(name))
    }

    /// A bitmap no job holds.
    pub fn get_usable(&mut self, name: &str) -> Result<&mut DirtyBitmap> {
        let b = self.get_mut(name)?;
        if b.busy {
            return Err(in_use(name));
        }
        Ok(b)
    }

    /// A bitmap whose bits may change: no job holds it, not read-only.
    pub fn get_writable(&mut self, name: &str) -> Result<&mut DirtyBitmap> {
        let b = self.get_usable(name)?;
        if b.readonly {
            return Err(Error::generic(format!(
                "Bitmap '{name}' is readonly and cannot be modified"
            )));
        }
        Ok(b)
    }

    pub fn record(&mut self, offset: u64, len: u64) {
        for b in &mut self.list {
            b.record(offset, len);
        }
    }

    pub fn remove(&mut self, name: &str) -> Result<DirtyBitmap> {
        self.get_writable(name)?;
        let i = self
            .list
            .iter()
            .position(|b| b.name == name)
            .ok_or_else(|| not_found(name))?;
        Ok(self.list.remove(i))
    }

    /// The persistent bitmaps in the order a store writes them: those already in the file in
    /// its order, then new ones in list order.
    pub fn store_order(&self) -> Vec<&DirtyBitmap> {
        let persistent: Vec<&DirtyBitmap> = self.list.iter().filter(|b| b.persistent).collect();
        let mut out: Vec<&DirtyBitmap> = self
            .file_order
            .iter()
            .filter_map(|n| persistent.iter().find(|b| &b.name == n).copied())
            .collect();
        for b in persistent {
            if !self.file_order.contains(&b.name) {
                out.push(b);
            }
        }
        out
    }
}

/// What `block-dirty-bitmap-add` asks for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AddOptions {
    pub granularity: Option<u64>,
    pub persistent: bool,
    pub disabled: bool,
}

/// Checks a new bitmap's name and granularity in QEMU's order and words; `node` names the
/// node in the persistent-name error.
pub fn check_new(
    set: &BitmapSet,
    node: &str,
    name: &str,
    opts: &AddOptions,
    can_persist: Option<&str>,
) -> Result<u64> {
    if name.is_empty() {
        return Err(Error::generic("Bitmap name cannot be empty"));
    }
    if name.len() > MAX_NAME {
        if opts.persistent {
            return Err(Error::generic(format!(
                "Can't make bitmap '{name}' persistent in '{node}': Name length exceeds maximum \
                 ({MAX_NAME} characters)"
            )));
        }
        return Err(Error::generic(format!("Bitmap name too long: {name}")));
    }
    let granularity = opts.granularity.unwrap_or(DEFAULT_GRANULARITY);
    if !granularity.is_power_of_two() || granularity < 512 {
        return Err(Error::generic(
            "Granularity must be power of 2 and at least 512",
        ));
    }
    if set.list.iter().any(|b| b.name == name) {
        return Err(Error::generic(format!("Bitmap already exists: {name}")));
    }
    if opts.persistent {
        if let Some(why) = can_persist {
            return Err(Error::generic(format!(
                "Can't store persistent bitmaps to {node}: {why}"
            )));
        }
    }
    Ok(granularity)
}

/// A node's data with its bitmaps: writes mark them.
pub struct Tracked {
    pub image: SharedImage,
    pub bitmaps: SharedBitmaps,
    /// Where the node's writes ended, at the highest.
    pub written: WriteMark,
    /// The file nodes below, whose counted length the writes may grow.
    pub growth: crate::graph::Growth,
}

impl Tracked {
    fn mark(&self, offset: u64, len: u64) {
        if let Ok(mut s) = self.bitmaps.lock() {
            s.record(offset, len);
        }
    }
}

impl ExportBackend for Tracked {
    fn size(&self) -> u64 {
        ExportBackend::size(&*self.image)
    }
    fn read(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        ExportBackend::read(&*self.image, offset, buf)
    }
    fn write(&self, offset: u64, data: &[u8]) -> Result<()> {
        ExportBackend::write(&*self.image, offset, data)?;
        self.mark(offset, data.len() as u64);
        self.written.record(offset + data.len() as u64);
        self.growth.after_write();
        Ok(())
    }
    fn write_zeroes(&self, offset: u64, len: u64) -> Result<()> {
        ExportBackend::write_zeroes(&*self.image, offset, len)?;
        self.mark(offset, len);
        self.written.record(offset + len);
        self.growth.after_write();
        Ok(())
    }
    fn trim(&self, offset: u64, len: u64) -> Result<()> {
        ExportBackend::trim(&*self.image, offset, len)?;
        self.mark(offset, len);
        Ok(())
    }
    fn flush(&self) -> Result<()> {
        ExportBackend::flush(&*self.image)
    }
}

/// Another node's data path seen through a node with bitmaps of its own (a raw node over
/// a format node): writes mark these bitmaps, then the node's below.
pub struct Marking {
    pub inner: std::sync::Arc<dyn ExportBackend>,
    /// The node's own bitmaps (none for a filter, whose writes mark its child's).
    pub bitmaps: Option<SharedBitmaps>,
    /// Where the node's writes ended, at the highest.
    pub written: WriteMark,
}

impl Marking {
    fn mark(&self, offset: u64, len: u64) {
        if let Some(Ok(mut s)) = self.bitmaps.as_ref().map(|b| b.lock()) {
            s.record(offset, len);
        }
    }
}

impl ExportBackend for Marking {
    fn size(&self) -> u64 {
        self.inner.size()
    }
    fn read(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.inner.read(offset, buf)
    }
    fn write(&self, offset: u64, data: &[u8]) -> Result<()> {
        self.inner.write(offset, data)?;
        self.mark(offset, data.len() as u64);
        self.written.record(offset + data.len() as u64);
        Ok(())
    }
    fn write_zeroes(&self, offset: u64, len: u64) -> Result<()> {
        self.inner.write_zeroes(offset, len)?;
        self.mark(offset, len);
        self.written.record(offset + len);
        Ok(())
    }
    fn trim(&self, offset: u64, len: u64) -> Result<()> {
        self.inner.trim(offset, len)?;
        self.mark(offset, len);
        Ok(())
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
    fn counts_and_hash_follow_qemu() {
        // Writes at 0, 200000+70000 and the last byte of a 1 MiB disk, 64 KiB granularity:
        // QEMU 10.0.2 counts 262144 dirty bytes and hashes ba13ff20….
        let mut b = DirtyBitmap::new("b0", 65536, 1 << 20);
        b.record(0, 1);
        b.record(200_000, 70_000);
        b.record((1 << 20) - 1, 1);
        assert_eq!(b.count(), 262_144);
        assert_eq!(
            b.sha256(),
            "ba13ff208e825925dd4f17e4330e028982bfabba8fbb2ec3a370f728e1d4f630"
        );
        let empty = DirtyBitmap::new("e", 65536, 1 << 20);
        assert_eq!(
            empty.sha256(),
            "af5570f5a1810b7af78caf4bc70a660f0df51e42baf91d4de5b2328de0e83dfc"
        );
    }

    #[test]
    fn merge_across_granularities() {
        let mut g = DirtyBitmap::new("g", 512, 1 << 20);
        g.record(0, 1);
        g.record(200_000, 70_000);
        g.record((1 << 20) - 1, 1);
        assert_eq!(g.count(), 71_680);
        let mut m = DirtyBitmap::new("m", 131_072, 1 << 20);
        m.merge_from(&g);
        assert_eq!(m.count(), 524_288);
        let mut m2 = DirtyBitmap::new("m2", 512, 1 << 20);
        m2.merge_from(&m);
        assert_eq!(m2.count(), 524_288);
        // A granularity coarser than the disk still counts whole granules.
        let mut big = DirtyBitmap::new("big", 1 << 31, 1 << 20);
        big.record(5, 1);
        assert_eq!(big.count(), 1 << 31);
    }

    #[test]
    fn disabled_bitmaps_do_not_record() {
        let mut b = DirtyBitmap::new("b", 65536, 1 << 20);
        b.enabled = false;
        b.record(0, 4096);
        assert_eq!(b.count(), 0);
        b.set_range(0, 4096);
        assert_eq!(b.count(), 65536);
    }
}
