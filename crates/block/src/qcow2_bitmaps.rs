//! Persistent dirty bitmaps in a qcow2 file: the bitmaps header extension, the bitmap
//! directory, bitmap tables and data clusters, kept consistent with the file's refcounts so
//! that `qemu-img check` finds the file clean and QEMU loads the bitmaps.
//!
//! Layout facts follow the published qcow2 format: the extension (type 0x23852875) holds the
//! number of bitmaps, four reserved bytes, the directory's size and offset; autoclear feature
//! bit 0 says the extension is consistent. A directory entry is the table's offset (u64) and
//! size (u32, entries), flags (u32: bit 0 in use, bit 1 auto), type (u8, 1 = dirty tracking),
//! granularity bits (u8), name size (u16), extra data size (u32), the extra data, the name,
//! padding to 8 bytes. A table entry is a data cluster's offset (bits 9-55), or 0 for a cluster
//! of zeroes (bit 0 set: of ones).
//!
//! The editing functions work on a closed file (or one whose other handle is flushed and
//! idle): they read and write the header, refcount table and refcount blocks themselves.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use crate::qcow2::{Extension, Header, EXT_BITMAPS};
use crate::{Error, Result};

/// Autoclear feature bit: the bitmaps extension is consistent.
pub const AUTOCLEAR_BITMAPS: u64 = 1;
const FLAG_IN_USE: u32 = 1;
const FLAG_AUTO: u32 = 2;
const TYPE_DIRTY_TRACKING: u8 = 1;
const MAX_BITMAPS: u32 = 65535;
const MAX_DIRECTORY: u64 = 64 * 1024 * 1024;
const MAX_TABLE_ENTRIES: u32 = 0x0800_0000;
const OFFSET_MASK: u64 = 0x00ff_ffff_ffff_fe00;

/// One bitmap as the file stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredBitmap {
    pub name: String,
    pub granularity_bits: u8,
    /// `auto`: recording when loaded.
    pub auto: bool,
    /// `in_use`: not stored cleanly.
    pub in_use: bool,
    /// The bits, bit `i` in byte `i / 8` at position `i % 8`.
    pub data: Vec<u8>,
}

/// A directory entry as parsed (where its table is).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    pub table_offset: u64,
    pub table_size: u32,
    pub flags: u32,
    pub kind: u8,
    pub granularity_bits: u8,
    pub name: String,
}

fn invalid(s: &str) -> Error {
    Error::generic(s.to_string())
}

fn be32(b: &[u8], at: usize) -> Result<u32> {
    let s = b
        .get(at..at + 4)
        .ok_or_else(|| invalid("Bitmap directory truncated"))?;
    Ok(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

fn be64(b: &[u8], at: usize) -> Result<u64> {
    Ok((u64::from(be32(b, at)?) << 32) | u64::from(be32(b, at + 4)?))
}

/// Parses a bitmap directory of `count` entries (the bytes are untrusted).
pub fn parse_directory(dir: &[u8], count: u32) -> Result<Vec<DirEntry>> {
    if count > MAX_BITMAPS {
        return Err(invalid("Too many bitmaps"));
    }
    let mut out = Vec::new();
    let mut at = 0usize;
    for _ in 0..count {
        let table_offset = be64(dir, at)?;
        let table_size = be32(dir, at + 8)?;
        let flags = be32(dir, at + 12)?;
        let kind = *dir
            .get(at + 16)
            .ok_or_else(|| invalid("Bitmap directory truncated"))?;
        let granularity_bits = *dir
            .get(at + 17)
            .ok_or_else(|| invalid("Bitmap directory truncated"))?;
        let name_len = u16::from_be_bytes([
            *dir.get(at + 18).unwrap_or(&0),
            *dir.get(at + 19).unwrap_or(&0),
        ]) as usize;
        let extra = be32(dir, at + 20)? as usize;
        let name_at = at
            .checked_add(24)
            .and_then(|v| v.checked_add(extra))
            .ok_or_else(|| invalid("Bitmap directory truncated"))?;
        let name = dir
            .get(name_at..name_at + name_len)
            .ok_or_else(|| invalid("Bitmap directory truncated"))?;
        if !(9..=31).contains(&granularity_bits) {
            return Err(invalid("Bitmap granularity out of range"));
        }
        if table_size > MAX_TABLE_ENTRIES {
            return Err(invalid("Bitmap table too large"));
        }
        out.push(DirEntry {
            table_offset,
            table_size,
            flags,
            kind,
            granularity_bits,
            name: String::from_utf8_lossy(name).into_owned(),
        });
        at = (name_at + name_len).div_ceil(8) * 8;
    }
    Ok(out)
}

/// Serialises directory entries (tables already placed).
pub fn serialise_directory(entries: &[DirEntry]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in entries {
        out.extend_from_slice(&e.table_offset.to_be_bytes());
        out.extend_from_slice(&e.table_size.to_be_bytes());
        out.extend_from_slice(&e.flags.to_be_bytes());
        out.push(e.kind);
        out.push(e.granularity_bits);
        out.extend_from_slice(&(e.name.len() as u16).to_be_bytes());
        out.extend_from_slice(&0u32.to_be_bytes());
        out.extend_from_slice(e.name.as_bytes());
        out.resize(out.len().div_ceil(8) * 8, 0);
    }
    out
}

fn read_exact_at(f: &mut File, off: u64, len: usize) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; len];
    f.seek(SeekFrom::Start(off))?;
    f.read_exact(&mut buf)
        .map_err(|_| invalid("Bitmap data beyond the end of the image file"))?;
    Ok(buf)
}

fn write_at(f: &mut File, off: u64, data: &[u8]) -> Result<()> {
    f.seek(SeekFrom::Start(off))?;
    f.write_all(data)?;
    Ok(())
}

fn header_of(f: &mut File) -> Result<(Header, Vec<u8>)> {
    let len = f
        .metadata()?
        .len()
        .min(crate::qcow2::MAX_HEADER_READ as u64) as usize;
    let area = read_exact_at(f, 0, len)?;
    let h = Header::parse(&area)?;
    Ok((h, area))
}

/// The bitmaps extension's count, directory size and offset.
fn extension(h: &Header) -> Option<(u32, u64, u64)> {
    h.bitmap_directory()
}

fn read_directory(f: &mut File, h: &Header) -> Result<Vec<DirEntry>> {
    let Some((count, size, offset)) = extension(h) else {
        return Ok(Vec::new());
    };
    if size > MAX_DIRECTORY || offset % h.cluster_size() != 0 {
        return Err(invalid("Invalid bitmap directory"));
    }
    let dir = read_exact_at(f, offset, size as usize)?;
    parse_directory(&dir, count)
}

fn read_table(f: &mut File, e: &DirEntry) -> Result<Vec<u64>> {
    let raw = read_exact_at(f, e.table_offset, e.table_size as usize * 8)?;
    Ok(raw
        .chunks_exact(8)
        .map(|c| u64::from_be_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
        .collect())
}

/// The bitmaps a qcow2 file holds: none unless the extension is there and marked consistent.
pub fn load(path: &Path) -> Result<Vec<StoredBitmap>> {
    let mut f = File::open(path)?;
    let (h, _) = header_of(&mut f)?;
    if h.version < 3 || h.autoclear_features & AUTOCLEAR_BITMAPS == 0 {
        return Ok(Vec::new());
    }
    let cs = h.cluster_size();
    let mut out = Vec::new();
    for e in read_directory(&mut f, &h)? {
        if e.kind != TYPE_DIRTY_TRACKING {
            continue;
        }
        let granularity = 1u64 << e.granularity_bits;
        let bits = h.size.div_ceil(granularity);
        let bytes = bits.div_ceil(8) as usize;
        let mut data = Vec::with_capacity(bytes);
        for entry in read_table(&mut f, &e)? {
            let want = (bytes - data.len()).min(cs as usize);
            if want == 0 {
                break;
            }
            let off = entry & OFFSET_MASK;
            if off == 0 {
                let fill = if entry & 1 != 0 { 0xff } else { 0 };
                data.resize(data.len() + want, fill);
            } else {
                data.extend(read_exact_at(&mut f, off, want)?);
            }
        }
        data.resize(bytes, 0);
        out.push(StoredBitmap {
            name: e.name,
            granularity_bits: e.granularity_bits,
            auto: e.flags & FLAG_AUTO != 0,
            in_use: e.flags & FLAG_IN_USE != 0,
            data,
        });
    }
    Ok(out)
}

/// Whether the file has a bitmaps extension at all (consistent or not).
pub fn has_bitmaps(path: &Path) -> Result<bool> {
    let mut f = File::open(path)?;
    let (h, _) = header_of(&mut f)?;
    Ok(h.extension(EXT_BITMAPS).is_some())
}

/// The file's refcounts, read and changed block by block.
struct Refcounts {
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
    fn open(f: &mut File, h: &Header) -> Result<Refcounts> {
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

    fn get(&mut self, f: &mut File, cluster: u64) -> Result<u64> {
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
    fn ensure_block(&mut self, f: &mut File, cluster: u64) -> Result<()> {
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

    fn set(&mut self, f: &mut File, cluster: u64, value: u64) -> Result<()> {
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

    fn free(&mut self, f: &mut File, offset: u64, clusters: u64) -> Result<()> {
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
    fn alloc(&mut self, f: &mut File, n: u64) -> Result<u64> {
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

    fn write(&mut self, f: &mut File) -> Result<()> {
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

fn get_entry(b: &[u8], i: u64, bits: u32) -> u64 {
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

fn set_entry(b: &mut [u8], i: u64, bits: u32, v: u64) {
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

/// Replaces the bitmaps a qcow2 file holds with `bitmaps` (none: the extension goes): the old
/// directory, tables and data clusters are freed, the new ones written, the extension and the
/// autoclear bit set. Clusters of zeroes are not stored.
pub fn store(path: &Path, bitmaps: &[StoredBitmap]) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)?;
    let (h, area) = header_of(&mut f)?;
    if h.version < 3 {
        return Err(invalid("Persistent bitmaps need a qcow2 version 3 image"));
    }
    if bitmaps.len() > MAX_BITMAPS as usize {
        return Err(invalid("Too many bitmaps"));
    }
    let cs = h.cluster_size();
    let mut rc = Refcounts::open(&mut f, &h)?;
    // Free what the old directory holds (an unreadable one is left as it is: leaked at worst).
    if let Some((_, size, offset)) = extension(&h) {
        if let Ok(entries) = read_directory(&mut f, &h) {
            for e in &entries {
                if let Ok(table) = read_table(&mut f, e) {
                    for t in table {
                        let off = t & OFFSET_MASK;
                        if off != 0 {
                            rc.free(&mut f, off, 1)?;
                        }
                    }
                    let tl = (u64::from(e.table_size) * 8).div_ceil(cs);
                    rc.free(&mut f, e.table_offset, tl)?;
                }
            }
            rc.free(&mut f, offset, size.div_ceil(cs))?;
        }
    }
    let mut entries = Vec::new();
    for b in bitmaps {
        let granularity = 1u64 << b.granularity_bits;
        let bits = h.size.div_ceil(granularity);
        let bytes = bits.div_ceil(8);
        let table_size = bytes.div_ceil(cs);
        let mut table = Vec::with_capacity(table_size as usize);
        for i in 0..table_size {
            let from = (i * cs) as usize;
            let to = ((i + 1) * cs).min(bytes) as usize;
            let chunk = b.data.get(from..to.min(b.data.len())).unwrap_or(&[]);
            if chunk.iter().all(|&x| x == 0) {
                table.push(0u64);
                continue;
            }
            let off = rc.alloc(&mut f, 1)?;
            let mut cluster = chunk.to_vec();
            cluster.resize(cs as usize, 0);
            write_at(&mut f, off, &cluster)?;
            table.push(off);
        }
        let raw: Vec<u8> = table.iter().flat_map(|v| v.to_be_bytes()).collect();
        let table_clusters = (raw.len() as u64).div_ceil(cs).max(1);
        let table_offset = rc.alloc(&mut f, table_clusters)?;
        let mut padded = raw;
        padded.resize((table_clusters * cs) as usize, 0);
        write_at(&mut f, table_offset, &padded)?;
        entries.push(DirEntry {
            table_offset,
            table_size: table_size as u32,
            flags: if b.auto { FLAG_AUTO } else { 0 },
            kind: TYPE_DIRTY_TRACKING,
            granularity_bits: b.granularity_bits,
            name: b.name.clone(),
        });
    }
    let mut h2 = h.clone();
    h2.extensions.retain(|e| e.kind != EXT_BITMAPS);
    if entries.is_empty() {
        h2.autoclear_features &= !AUTOCLEAR_BITMAPS;
    } else {
        let dir = serialise_directory(&entries);
        let dir_clusters = (dir.len() as u64).div_ceil(cs);
        let dir_offset = rc.alloc(&mut f, dir_clusters)?;
        let mut padded = dir.clone();
        padded.resize((dir_clusters * cs) as usize, 0);
        write_at(&mut f, dir_offset, &padded)?;
        let mut ext = Vec::with_capacity(24);
        ext.extend_from_slice(&(entries.len() as u32).to_be_bytes());
        ext.extend_from_slice(&0u32.to_be_bytes());
        ext.extend_from_slice(&(dir.len() as u64).to_be_bytes());
        ext.extend_from_slice(&dir_offset.to_be_bytes());
        // QEMU writes the bitmaps extension after the backing format's.
        h2.extensions.push(Extension {
            kind: EXT_BITMAPS,
            data: ext,
        });
        h2.autoclear_features |= AUTOCLEAR_BITMAPS;
    }
    rc.write(&mut f)?;
    f.sync_data()?;
    let mut bytes = h2.serialise_as_is(&area)?;
    if h2.version >= 3 {
        bytes[88..96].copy_from_slice(&h2.autoclear_features.to_be_bytes());
    }
    write_at(&mut f, 0, &bytes)?;
    f.sync_data()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directory_round_trips() {
        let e = vec![
            DirEntry {
                table_offset: 0x30000,
                table_size: 1,
                flags: FLAG_AUTO,
                kind: 1,
                granularity_bits: 16,
                name: "p0".into(),
            },
            DirEntry {
                table_offset: 0x40000,
                table_size: 2,
                flags: 0,
                kind: 1,
                granularity_bits: 9,
                name: "a-longer-name".into(),
            },
        ];
        let raw = serialise_directory(&e);
        assert_eq!(raw.len() % 8, 0);
        assert_eq!(parse_directory(&raw, 2).unwrap(), e);
        assert!(parse_directory(&raw, 3).is_err());
    }

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
