//! Low-level access to a qcow2 file for the edits the block layer makes itself (persistent
//! bitmaps, internal snapshots): reading and writing at offsets, the header, and the
//! refcounts, read and changed block by block with clusters allocated first-fit.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};

use crate::qcow2::Header;
use crate::{Error, Result};

/// The host offset bits of L1, L2, refcount-table and bitmap-table entries.
pub(crate) const OFFSET_MASK: u64 = 0x00ff_ffff_ffff_fe00;

/// The most entries an L1 table may have (32 MiB of them), as QEMU 10.0.2 allows.
const MAX_L1_ENTRIES: u64 = (32 << 20) / 8;

pub(crate) fn invalid(s: &str) -> Error {
    Error::generic(s.to_string())
}

pub(crate) fn be32(b: &[u8], at: usize) -> Result<u32> {
    let s = b
        .get(at..at + 4)
        .ok_or_else(|| invalid("Bitmap directory truncated"))?;
    Ok(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

pub(crate) fn be64(b: &[u8], at: usize) -> Result<u64> {
    Ok((u64::from(be32(b, at)?) << 32) | u64::from(be32(b, at + 4)?))
}

pub(crate) fn read_exact_at(f: &mut File, off: u64, len: usize) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; len];
    f.seek(SeekFrom::Start(off))?;
    f.read_exact(&mut buf)
        .map_err(|_| invalid("Bitmap data beyond the end of the image file"))?;
    Ok(buf)
}

pub(crate) fn write_at(f: &mut File, off: u64, data: &[u8]) -> Result<()> {
    f.seek(SeekFrom::Start(off))?;
    f.write_all(data)?;
    Ok(())
}

pub(crate) fn header_of(f: &mut File) -> Result<(Header, Vec<u8>)> {
    let len = f
        .metadata()?
        .len()
        .min(crate::qcow2::MAX_HEADER_READ as u64) as usize;
    let area = read_exact_at(f, 0, len)?;
    let h = Header::parse(&area)?;
    Ok((h, area))
}

/// The file's refcounts, read and changed block by block.
pub(crate) struct Refcounts {
    cluster_size: u64,
    bits: u32,
    table_offset: u64,
    table: Vec<u64>,
    blocks: BTreeMap<usize, Vec<u8>>,
    dirty_blocks: Vec<usize>,
    table_dirty: bool,
    /// Clusters in the file (allocation appends after the last).
    end: u64,
}

impl Refcounts {
    pub(crate) fn open(f: &mut File, h: &Header) -> Result<Refcounts> {
        let cs = h.cluster_size();
        let bits = 1u32 << h.refcount_order;
        let table_len = u64::from(h.refcount_table_clusters) * cs;
        if table_len > 64 * 1024 * 1024 {
            return Err(invalid("Refcount table too large"));
        }
        let raw = read_exact_at(f, h.refcount_table_offset, table_len as usize)?;
        let table = raw
            .chunks_exact(8)
            .map(|c| u64::from_be_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
            .collect();
        let end = f.metadata()?.len().div_ceil(cs);
        Ok(Refcounts {
            cluster_size: cs,
            bits,
            table_offset: h.refcount_table_offset,
            table,
            blocks: BTreeMap::new(),
            dirty_blocks: Vec::new(),
            table_dirty: false,
            end,
        })
    }

    fn per_block(&self) -> u64 {
        self.cluster_size * 8 / u64::from(self.bits)
    }

    fn block(&mut self, f: &mut File, idx: usize) -> Result<Option<&mut Vec<u8>>> {
        let off = self.table.get(idx).copied().unwrap_or(0) & OFFSET_MASK;
        if off == 0 {
            return Ok(None);
        }
        if !self.blocks.contains_key(&idx) {
            let b = read_exact_at(f, off, self.cluster_size as usize)?;
            self.blocks.insert(idx, b);
        }
        Ok(self.blocks.get_mut(&idx))
    }

    pub(crate) fn get(&mut self, f: &mut File, cluster: u64) -> Result<u64> {
        let per = self.per_block();
        let bits = self.bits;
        let (idx, i) = ((cluster / per) as usize, cluster % per);
        let Some(b) = self.block(f, idx)? else {
            return Ok(0);
        };
        Ok(get_entry(b, i, bits))
    }

    /// Makes sure a refcount block covers `cluster`. A missing one means nothing in its range
    /// is in use, so it goes at its own range's first cluster and counts itself.
    pub(crate) fn ensure_block(&mut self, f: &mut File, cluster: u64) -> Result<()> {
        let per = self.per_block();
        let idx = (cluster / per) as usize;
        if self.block(f, idx)?.is_some() {
            return Ok(());
        }
        if idx >= self.table.len() {
            return Err(invalid(
                "The refcount table is full; the image cannot take more clusters here",
            ));
        }
        let first = idx as u64 * per;
        self.table[idx] = first * self.cluster_size;
        self.table_dirty = true;
        let mut b = vec![0u8; self.cluster_size as usize];
        set_entry(&mut b, 0, self.bits, 1);
        self.blocks.insert(idx, b);
        self.dirty_blocks.push(idx);
        self.end = self.end.max(first + 1);
        Ok(())
    }

    pub(crate) fn set(&mut self, f: &mut File, cluster: u64, value: u64) -> Result<()> {
        self.ensure_block(f, cluster)?;
        let per = self.per_block();
        let bits = self.bits;
        let idx = (cluster / per) as usize;
        let b = self
            .blocks
            .get_mut(&idx)
            .ok_or_else(|| invalid("Refcount block missing"))?;
        set_entry(b, cluster % per, bits, value);
        if !self.dirty_blocks.contains(&idx) {
            self.dirty_blocks.push(idx);
        }
        Ok(())
    }

    /// Adds `addend` to a cluster's refcount (never below zero nor above the width's maximum).
    pub(crate) fn add(&mut self, f: &mut File, cluster: u64, addend: i64) -> Result<()> {
        let v = self.get(f, cluster)?;
        let max = if self.bits == 64 {
            u64::MAX
        } else {
            (1u64 << self.bits) - 1
        };
        let n = if addend < 0 {
            v.saturating_sub(addend.unsigned_abs())
        } else {
            v.checked_add(addend as u64)
                .filter(|&n| n <= max)
                .ok_or_else(|| {
                    invalid("Refcount overflow: the image's refcount width is too narrow")
                })?
        };
        self.set(f, cluster, n)
    }

    pub(crate) fn free(&mut self, f: &mut File, offset: u64, clusters: u64) -> Result<()> {
        let first = offset / self.cluster_size;
        for c in first..first + clusters {
            let v = self.get(f, c)?;
            if v > 0 {
                self.set(f, c, v - 1)?;
            }
        }
        Ok(())
    }

    /// Takes `n` free contiguous clusters, the first that fit (the file grows when none do).
    pub(crate) fn alloc(&mut self, f: &mut File, n: u64) -> Result<u64> {
        let mut start = 1;
        'search: loop {
            for x in start..start + n {
                self.ensure_block(f, x)?;
                if self.get(f, x)? != 0 {
                    start = x + 1;
                    continue 'search;
                }
            }
            break;
        }
        for x in start..start + n {
            self.set(f, x, 1)?;
        }
        self.end = self.end.max(start + n);
        Ok(start * self.cluster_size)
    }

    pub(crate) fn write(&mut self, f: &mut File) -> Result<()> {
        for idx in std::mem::take(&mut self.dirty_blocks) {
            let off = self.table[idx] & OFFSET_MASK;
            if let Some(b) = self.blocks.get(&idx) {
                write_at(f, off, b)?;
            }
        }
        if self.table_dirty {
            let raw: Vec<u8> = self.table.iter().flat_map(|v| v.to_be_bytes()).collect();
            write_at(f, self.table_offset, &raw)?;
        }
        let len = f.metadata()?.len();
        let want = self.end * self.cluster_size;
        if len < want {
            f.set_len(want)?;
        }
        Ok(())
    }
}

/// Grows a qcow2 image to `new_size` as QEMU does (measured on QEMU 10.0.2): the header
/// takes the new size; the L1 table grows only when the new size needs more entries than it
/// has, to exactly that many, into the first free clusters that fit while the old table
/// still holds its own (which are given back afterwards); the file then ends where the new
/// table does if that is past its end. Returns where the writes ended, at the highest.
pub(crate) fn grow(path: &std::path::Path, new_size: u64) -> Result<u64> {
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)?;
    let (h, _) = header_of(&mut f)?;
    let cs = h.cluster_size();
    let per_l1 = cs.saturating_mul(cs / 8).max(1);
    let needed = new_size.div_ceil(per_l1);
    let l1_size = u64::from(h.l1_size);
    // The header's size field.
    let mut highest = 32;
    if needed > l1_size {
        // QEMU's largest L1 table: 32 MiB (checked before anything is allocated).
        if needed > MAX_L1_ENTRIES {
            return Err(invalid("Failed to grow the L1 table: File too large"));
        }
        let entries = u32::try_from(needed).map_err(|_| invalid("The L1 table is too large"))?;
        let old_bytes = l1_size * 8;
        let new_bytes = needed * 8;
        let mut table = if old_bytes > 0 && h.l1_table_offset != 0 {
            read_exact_at(&mut f, h.l1_table_offset, old_bytes as usize)?
        } else {
            Vec::new()
        };
        table.resize(new_bytes as usize, 0);
        let len_before = f.metadata()?.len();
        let mut rc = Refcounts::open(&mut f, &h)?;
        let at = rc.alloc(&mut f, new_bytes.div_ceil(cs))?;
        if old_bytes > 0 && h.l1_table_offset != 0 {
            rc.free(&mut f, h.l1_table_offset, old_bytes.div_ceil(cs))?;
        }
        for idx in &rc.dirty_blocks {
            let off = rc.table[*idx] & OFFSET_MASK;
            highest = highest.max(off + cs);
        }
        rc.write(&mut f)?;
        write_at(&mut f, at, &table)?;
        highest = highest.max(at + new_bytes);
        // The file grows by what was written (the table's bytes, not its cluster's end).
        let want = len_before.max(highest);
        if f.metadata()?.len() > want {
            f.set_len(want)?;
        }
        write_at(&mut f, 36, &entries.to_be_bytes())?;
        write_at(&mut f, 40, &at.to_be_bytes())?;
        highest = highest.max(48);
    }
    write_at(&mut f, 24, &new_size.to_be_bytes())?;
    Ok(highest)
}

/// Finishes shrinking a qcow2 image to `new_size` as QEMU does: the L2 tables of the L1
/// entries the new size no longer reaches are given back, and the file ends after its last
/// cluster in use.
pub(crate) fn finish_shrink(path: &std::path::Path, new_size: u64) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)?;
    let (h, _) = header_of(&mut f)?;
    let cs = h.cluster_size();
    let per_l1 = cs.saturating_mul(cs / 8).max(1);
    let needed = new_size.div_ceil(per_l1);
    let mut rc = Refcounts::open(&mut f, &h)?;
    let l1_size = u64::from(h.l1_size);
    if l1_size > needed && h.l1_table_offset != 0 {
        let l1 = read_exact_at(&mut f, h.l1_table_offset, (l1_size * 8) as usize)?;
        for i in needed..l1_size {
            let off = be64(&l1, (i * 8) as usize)? & OFFSET_MASK;
            if off != 0 {
                rc.add(&mut f, off / cs, -1)?;
                write_at(&mut f, h.l1_table_offset + i * 8, &[0u8; 8])?;
            }
        }
        rc.write(&mut f)?;
    }
    let len = f.metadata()?.len();
    let mut end = 0;
    for c in (0..len.div_ceil(cs)).rev() {
        if rc.get(&mut f, c)? > 0 {
            end = (c + 1) * cs;
            break;
        }
    }
    if end > 0 && end < len {
        f.set_len(end)?;
    }
    Ok(())
}

pub(crate) fn get_entry(b: &[u8], i: u64, bits: u32) -> u64 {
    match bits {
        8 | 16 | 32 | 64 => {
            let w = (bits / 8) as usize;
            let at = i as usize * w;
            b[at..at + w]
                .iter()
                .fold(0u64, |a, &x| (a << 8) | u64::from(x))
        }
        _ => {
            let bit = i * u64::from(bits);
            let byte = b[(bit / 8) as usize];
            (u64::from(byte) >> (bit % 8)) & ((1u64 << bits) - 1)
        }
    }
}

pub(crate) fn set_entry(b: &mut [u8], i: u64, bits: u32, v: u64) {
    match bits {
        8 | 16 | 32 | 64 => {
            let w = (bits / 8) as usize;
            let at = i as usize * w;
            let bytes = v.to_be_bytes();
            b[at..at + w].copy_from_slice(&bytes[8 - w..]);
        }
        _ => {
            let bit = i * u64::from(bits);
            let mask = ((1u64 << bits) - 1) as u8;
            let shift = (bit % 8) as u32;
            let byte = &mut b[(bit / 8) as usize];
            *byte = (*byte & !(mask << shift)) | (((v as u8) & mask) << shift);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refcount_entries_of_every_width() {
        for bits in [1u32, 2, 4, 8, 16, 32, 64] {
            let mut b = vec![0u8; 64];
            let max = if bits == 64 {
                u64::MAX
            } else {
                (1u64 << bits) - 1
            };
            set_entry(&mut b, 3, bits, max);
            set_entry(&mut b, 4, bits, 1);
            assert_eq!(get_entry(&b, 3, bits), max, "{bits}");
            assert_eq!(get_entry(&b, 4, bits), 1, "{bits}");
            assert_eq!(get_entry(&b, 2, bits), 0, "{bits}");
            assert_eq!(get_entry(&b, 5, bits), 0, "{bits}");
        }
    }
}

/// Whether every cluster that holds the image's own structures (the header, the refcount
/// table, the L1 table) lies within the file and is counted in use by the refcounts. In an
/// image where one is not (a file cut short, refcounts lost), the next cluster allocated
/// would land on it, which QEMU refuses as metadata corruption; such an image takes no
/// writes (and imago's allocator, which takes the refcounts at their word, never ends on
/// it).
pub(crate) fn structures_counted(path: &std::path::Path) -> bool {
    let check = || -> Result<bool> {
        let mut f = File::open(path)?;
        let (h, _) = header_of(&mut f)?;
        let cs = h.cluster_size();
        let len = f.metadata()?.len();
        let mut rc = Refcounts::open(&mut f, &h)?;
        let l1_len = u64::from(h.l1_size) * 8;
        let rt_len = u64::from(h.refcount_table_clusters) * cs;
        for (off, bytes) in [
            (0, 1),
            (h.refcount_table_offset, rt_len),
            (h.l1_table_offset, l1_len),
        ] {
            if bytes == 0 {
                continue;
            }
            let Some(end) = off.checked_add(bytes) else {
                return Ok(false);
            };
            if end > len {
                return Ok(false);
            }
            for c in off / cs..end.div_ceil(cs) {
                if rc.get(&mut f, c)? == 0 {
                    return Ok(false);
                }
            }
        }
        Ok(true)
    };
    check().unwrap_or(false)
}
