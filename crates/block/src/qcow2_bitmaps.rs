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

use std::fs::File;
use std::path::Path;

use crate::qcow2::{Extension, Header, EXT_BITMAPS};
use crate::qcow2_file::{
    be32, be64, header_of, invalid, read_exact_at, write_at, Refcounts, OFFSET_MASK,
};
use crate::Result;

/// Autoclear feature bit: the bitmaps extension is consistent.
pub const AUTOCLEAR_BITMAPS: u64 = 1;
const FLAG_IN_USE: u32 = 1;
const FLAG_AUTO: u32 = 2;
const TYPE_DIRTY_TRACKING: u8 = 1;
const MAX_BITMAPS: u32 = 65535;
const MAX_DIRECTORY: u64 = 64 * 1024 * 1024;
const MAX_TABLE_ENTRIES: u32 = 0x0800_0000;

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
}

/// Marks every bitmap of a file as in use and the extension as consistent again (what QEMU
/// does once it has loaded the bitmaps of an image it opened for writing; until they are
/// stored, readers see them as in use). The directory keeps its place and size.
pub fn mark_in_use(path: &Path) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)?;
    let (h, _) = header_of(&mut f)?;
    let Some((count, size, offset)) = extension(&h) else {
        return Ok(());
    };
    if h.version < 3 || size > MAX_DIRECTORY {
        return Ok(());
    }
    let mut entries = read_directory(&mut f, &h)?;
    if entries.len() != count as usize {
        return Ok(());
    }
    for e in &mut entries {
        e.flags |= FLAG_IN_USE;
    }
    let dir = serialise_directory(&entries);
    if dir.len() as u64 != size {
        // Entries with extra data: leave the file as it is.
        return Ok(());
    }
    write_at(&mut f, offset, &dir)?;
    f.sync_data()?;
    write_at(
        &mut f,
        88,
        &(h.autoclear_features | AUTOCLEAR_BITMAPS).to_be_bytes(),
    )?;
    f.sync_data()?;
    Ok(())
}
