//! Internal snapshots in a qcow2 file: taking one (a copy of the active L1 table, every cluster
//! it reaches counted once more, the "copied" flags cleared so the next write copies) and
//! deleting one (its references dropped, "copied" set again where a cluster is the active
//! image's alone), with the snapshot table rewritten. `qemu-img check` finds the result clean
//! and `qemu-img snapshot -l` lists it.
//!
//! Layout facts follow the published qcow2 format: a table entry is the L1 table's offset
//! (u64) and size (u32), the id and name lengths (u16 each), the date (u32 seconds, u32
//! nanoseconds), the VM clock (u64 ns), the VM state size (u32), the extra data size (u32),
//! the extra data (VM state size as u64, disk size u64, icount u64), the id, the name, padding
//! to 8 bytes. L1 and L2 entries keep the host offset in bits 9-55 and "copied" in bit 63;
//! bit 62 of an L2 entry marks a compressed cluster.
//!
//! Like the bitmap edits, these work on a file whose other handle is flushed and idle.

use std::fs::File;
use std::path::Path;

use crate::qcow2::{Header, Snapshot, INCOMPAT_DATA_FILE, INCOMPAT_EXTENDED_L2};
use crate::qcow2_file::{
    be32, be64, header_of, invalid, read_exact_at, write_at, Refcounts, OFFSET_MASK,
};
use crate::{Error, Result};

const COPIED: u64 = 1 << 63;
const COMPRESSED: u64 = 1 << 62;
const EXTRA_DATA: u32 = 24;

/// A snapshot table entry: what it says ([`Snapshot`], also through `Deref`), where its L1
/// table is, and its bytes as stored (written back unchanged).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub info: Snapshot,
    pub l1_offset: u64,
    pub l1_size: u32,
    raw: Vec<u8>,
}

impl std::ops::Deref for Entry {
    type Target = Snapshot;
    fn deref(&self) -> &Snapshot {
        &self.info
    }
}

/// What a new snapshot records besides its L1 table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub date_sec: u32,
    pub date_nsec: u32,
    pub vm_clock_nsec: u64,
}

/// Parses `count` table entries (the bytes are untrusted).
pub fn parse_table(b: &[u8], count: u32) -> Result<Vec<Entry>> {
    if count > 65536 {
        return Err(invalid("Too many snapshots"));
    }
    let mut out = Vec::new();
    let mut at = 0usize;
    for _ in 0..count {
        let id_len = usize::from(u16::from_be_bytes([
            *b.get(at + 12)
                .ok_or_else(|| invalid("Snapshot table truncated"))?,
            *b.get(at + 13)
                .ok_or_else(|| invalid("Snapshot table truncated"))?,
        ]));
        let name_len = (be32(b, at + 12)? & 0xffff) as usize;
        let extra = be32(b, at + 36)? as usize;
        if extra > 1024 {
            return Err(invalid("Snapshot extra data too large"));
        }
        let get = |o: usize| -> Option<u64> {
            (o + 8 <= extra)
                .then(|| be64(b, at + 40 + o).ok())
                .flatten()
        };
        let vm_state_size = get(0).unwrap_or(u64::from(be32(b, at + 32)?));
        let id_at = at + 40 + extra;
        let end = id_at + id_len + name_len;
        let text = b
            .get(id_at..end)
            .ok_or_else(|| invalid("Snapshot table truncated"))?;
        let next = end.div_ceil(8) * 8;
        let mut raw = b.get(at..end).unwrap_or(&[]).to_vec();
        raw.resize(next - at, 0);
        out.push(Entry {
            info: Snapshot {
                id: String::from_utf8_lossy(&text[..id_len]).into_owned(),
                name: String::from_utf8_lossy(&text[id_len..]).into_owned(),
                date_sec: be32(b, at + 16)?,
                date_nsec: be32(b, at + 20)?,
                vm_clock_nsec: be64(b, at + 24)?,
                vm_state_size,
                icount: get(16).filter(|&v| v != u64::MAX),
                disk_size: get(8),
            },
            l1_offset: be64(b, at)?,
            l1_size: be32(b, at + 8)?,
            raw,
        });
        at = next;
    }
    Ok(out)
}

fn new_entry(
    id: &str,
    name: &str,
    l1_offset: u64,
    l1_size: u32,
    stamp: Stamp,
    disk_size: u64,
) -> Entry {
    let mut raw = Vec::new();
    raw.extend_from_slice(&l1_offset.to_be_bytes());
    raw.extend_from_slice(&l1_size.to_be_bytes());
    raw.extend_from_slice(&(id.len() as u16).to_be_bytes());
    raw.extend_from_slice(&(name.len() as u16).to_be_bytes());
    raw.extend_from_slice(&stamp.date_sec.to_be_bytes());
    raw.extend_from_slice(&stamp.date_nsec.to_be_bytes());
    raw.extend_from_slice(&stamp.vm_clock_nsec.to_be_bytes());
    raw.extend_from_slice(&0u32.to_be_bytes());
    raw.extend_from_slice(&EXTRA_DATA.to_be_bytes());
    raw.extend_from_slice(&0u64.to_be_bytes());
    raw.extend_from_slice(&disk_size.to_be_bytes());
    raw.extend_from_slice(&u64::MAX.to_be_bytes());
    raw.extend_from_slice(id.as_bytes());
    raw.extend_from_slice(name.as_bytes());
    raw.resize(raw.len().div_ceil(8) * 8, 0);
    Entry {
        info: Snapshot {
            id: id.to_string(),
            name: name.to_string(),
            date_sec: stamp.date_sec,
            date_nsec: stamp.date_nsec,
            vm_clock_nsec: stamp.vm_clock_nsec,
            vm_state_size: 0,
            icount: None,
            disk_size: Some(disk_size),
        },
        l1_offset,
        l1_size,
        raw,
    }
}

fn table_len(entries: &[Entry]) -> u64 {
    entries.iter().map(|e| e.raw.len() as u64).sum()
}

fn read_entries(f: &mut File, h: &Header) -> Result<Vec<Entry>> {
    if h.nb_snapshots == 0 {
        return Ok(Vec::new());
    }
    let len = f.metadata()?.len().saturating_sub(h.snapshots_offset);
    let want = (u64::from(h.nb_snapshots) * 1100).min(len) as usize;
    let b = read_exact_at(f, h.snapshots_offset, want)?;
    parse_table(&b, h.nb_snapshots)
}

/// The snapshots a file holds, in table order.
pub fn list(path: &Path) -> Result<Vec<Entry>> {
    let mut f = File::open(path)?;
    let (h, _) = header_of(&mut f)?;
    read_entries(&mut f, &h)
}

fn u64s(b: &[u8]) -> Vec<u64> {
    b.chunks_exact(8)
        .map(|c| u64::from_be_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
        .collect()
}

fn bytes(v: &[u64]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_be_bytes()).collect()
}

fn check_supported(h: &Header) -> Result<()> {
    if h.incompatible_features & (INCOMPAT_EXTENDED_L2 | INCOMPAT_DATA_FILE) != 0 {
        return Err(Error::generic(
            "Internal snapshots of images with subclusters or an external data file are not supported here",
        ));
    }
    Ok(())
}

/// Adds `addend` (+1 or -1) to the refcount of every cluster `l1` reaches (its L2 tables and
/// their data clusters).
fn update_refcounts(
    f: &mut File,
    rc: &mut Refcounts,
    cs: u64,
    l1: &[u64],
    addend: i64,
) -> Result<()> {
    for &e in l1 {
        let l2_off = e & OFFSET_MASK;
        if l2_off == 0 {
            continue;
        }
        for d in u64s(&read_exact_at(f, l2_off, cs as usize)?) {
            if d & COMPRESSED != 0 {
                return Err(Error::generic(
                    "Internal snapshots of images with compressed clusters are not supported here",
                ));
            }
            let off = d & OFFSET_MASK;
            if off != 0 {
                rc.add(f, off / cs, addend)?;
            }
        }
        rc.add(f, l2_off / cs, addend)?;
    }
    Ok(())
}

/// Sets or clears "copied" on the active L1 and L2 entries by their refcounts (1: copied).
fn fix_copied(f: &mut File, rc: &mut Refcounts, cs: u64, l1: &mut [u64]) -> Result<()> {
    for e in l1.iter_mut() {
        let l2_off = *e & OFFSET_MASK;
        if l2_off == 0 {
            continue;
        }
        let mut l2 = u64s(&read_exact_at(f, l2_off, cs as usize)?);
        let mut changed = false;
        for d in l2.iter_mut() {
            let off = *d & OFFSET_MASK;
            if off == 0 {
                continue;
            }
            let want = if rc.get(f, off / cs)? == 1 {
                *d | COPIED
            } else {
                *d & !COPIED
            };
            changed |= want != *d;
            *d = want;
        }
        if changed {
            write_at(f, l2_off, &bytes(&l2))?;
        }
        *e = if rc.get(f, l2_off / cs)? == 1 {
            *e | COPIED
        } else {
            *e & !COPIED
        };
    }
    Ok(())
}

fn write_table(
    f: &mut File,
    rc: &mut Refcounts,
    h: &Header,
    old: &[Entry],
    new: &[Entry],
) -> Result<()> {
    let cs = h.cluster_size();
    let old_len = table_len(old);
    let len = table_len(new);
    let offset = if new.is_empty() {
        0
    } else {
        let clusters = len.div_ceil(cs);
        let off = rc.alloc(f, clusters)?;
        let mut raw: Vec<u8> = new.iter().flat_map(|e| e.raw.iter().copied()).collect();
        raw.resize((clusters * cs) as usize, 0);
        write_at(f, off, &raw)?;
        off
    };
    if h.nb_snapshots > 0 && h.snapshots_offset != 0 {
        rc.free(f, h.snapshots_offset, old_len.div_ceil(cs))?;
    }
    let mut fields = Vec::with_capacity(12);
    fields.extend_from_slice(&(new.len() as u32).to_be_bytes());
    fields.extend_from_slice(&offset.to_be_bytes());
    rc.write(f)?;
    f.sync_data()?;
    write_at(f, 60, &fields)?;
    f.sync_data()?;
    Ok(())
}

fn active_l1(f: &mut File, h: &Header) -> Result<Vec<u64>> {
    if u64::from(h.l1_size) > 32 * 1024 * 1024 {
        return Err(invalid("Active L1 table too large"));
    }
    Ok(u64s(&read_exact_at(
        f,
        h.l1_table_offset,
        h.l1_size as usize * 8,
    )?))
}

/// A file open for a snapshot edit: its header, cluster size, snapshot table and refcounts.
struct Edit {
    f: File,
    h: Header,
    cs: u64,
    entries: Vec<Entry>,
    rc: Refcounts,
}

impl Edit {
    fn open(path: &Path) -> Result<Edit> {
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)?;
        let (h, _) = header_of(&mut f)?;
        check_supported(&h)?;
        let entries = read_entries(&mut f, &h)?;
        let rc = Refcounts::open(&mut f, &h)?;
        Ok(Edit {
            cs: h.cluster_size(),
            f,
            h,
            entries,
            rc,
        })
    }

    fn snapshot_l1(&mut self, e: &Entry) -> Result<Vec<u64>> {
        Ok(u64s(&read_exact_at(
            &mut self.f,
            e.l1_offset,
            e.l1_size as usize * 8,
        )?))
    }

    /// Counts every cluster `l1` reaches once more (or less).
    fn update(&mut self, l1: &[u64], addend: i64) -> Result<()> {
        update_refcounts(&mut self.f, &mut self.rc, self.cs, l1, addend)
    }

    /// The active L1 with its "copied" flags set by the refcounts, written where it is.
    fn fix_active(&mut self) -> Result<Vec<u64>> {
        let mut l1 = active_l1(&mut self.f, &self.h)?;
        fix_copied(&mut self.f, &mut self.rc, self.cs, &mut l1)?;
        write_at(&mut self.f, self.h.l1_table_offset, &bytes(&l1))?;
        Ok(l1)
    }

    fn clusters(&self, bytes: u64) -> u64 {
        bytes.div_ceil(self.cs).max(1)
    }

    fn write_table(&mut self, new: &[Entry]) -> Result<()> {
        write_table(&mut self.f, &mut self.rc, &self.h, &self.entries, new)
    }
}

/// Takes an internal snapshot named `name` with the next free numeric id; returns its entry.
pub fn create(path: &Path, name: &str, stamp: Stamp) -> Result<Entry> {
    let mut x = Edit::open(path)?;
    let next = x
        .entries
        .iter()
        .filter_map(|e| e.id.parse::<u64>().ok())
        .max()
        .unwrap_or(0)
        + 1;
    let l1 = active_l1(&mut x.f, &x.h)?;
    x.update(&l1, 1)?;
    let l1 = x.fix_active()?;
    let l1_clusters = x.clusters(l1.len() as u64 * 8);
    let l1_copy = x.rc.alloc(&mut x.f, l1_clusters)?;
    let mut raw = bytes(&l1);
    raw.resize((l1_clusters * x.cs) as usize, 0);
    write_at(&mut x.f, l1_copy, &raw)?;
    let entry = new_entry(
        &next.to_string(),
        name,
        l1_copy,
        x.h.l1_size,
        stamp,
        x.h.size,
    );
    let mut new = x.entries.clone();
    new.push(entry.clone());
    x.write_table(&new)?;
    Ok(entry)
}

/// Deletes the snapshot `pick` chooses; returns its entry.
pub fn delete(path: &Path, pick: impl Fn(&Entry) -> bool) -> Result<Option<Entry>> {
    let mut x = Edit::open(path)?;
    let Some(i) = x.entries.iter().position(pick) else {
        return Ok(None);
    };
    let gone = x.entries[i].clone();
    let snap_l1 = x.snapshot_l1(&gone)?;
    x.update(&snap_l1, -1)?;
    let l1_clusters = x.clusters(u64::from(gone.l1_size) * 8);
    x.rc.free(&mut x.f, gone.l1_offset, l1_clusters)?;
    x.fix_active()?;
    let mut new = x.entries.clone();
    new.remove(i);
    x.write_table(&new)?;
    Ok(Some(gone))
}

/// Reverts the active image to the snapshot `pick` chooses (what `loadvm` and
/// `qemu-img snapshot -a` do): the active L1 becomes a copy of the snapshot's, clusters
/// counted for the new references before the old ones are dropped. Returns the snapshot.
pub fn goto(path: &Path, pick: impl Fn(&Entry) -> bool) -> Result<Option<Entry>> {
    let mut x = Edit::open(path)?;
    let Some(e) = x.entries.iter().find(|e| pick(e)).cloned() else {
        return Ok(None);
    };
    let snap_l1 = x.snapshot_l1(&e)?;
    x.update(&snap_l1, 1)?;
    let old_l1 = active_l1(&mut x.f, &x.h)?;
    x.update(&old_l1, -1)?;
    let (mut l1_offset, mut l1_size) = (x.h.l1_table_offset, x.h.l1_size);
    if e.l1_size > l1_size {
        let clusters = x.clusters(u64::from(e.l1_size) * 8);
        l1_offset = x.rc.alloc(&mut x.f, clusters)?;
        let old_clusters = x.clusters(u64::from(l1_size) * 8);
        x.rc.free(&mut x.f, x.h.l1_table_offset, old_clusters)?;
        l1_size = e.l1_size;
    }
    let mut l1 = snap_l1;
    l1.resize(l1_size as usize, 0);
    fix_copied(&mut x.f, &mut x.rc, x.cs, &mut l1)?;
    let mut raw = bytes(&l1);
    raw.resize((x.clusters(raw.len() as u64) * x.cs) as usize, 0);
    write_at(&mut x.f, l1_offset, &raw)?;
    x.rc.write(&mut x.f)?;
    x.f.sync_data()?;
    if l1_offset != x.h.l1_table_offset {
        let mut fields = Vec::with_capacity(12);
        fields.extend_from_slice(&l1_size.to_be_bytes());
        fields.extend_from_slice(&l1_offset.to_be_bytes());
        write_at(&mut x.f, 36, &fields)?;
        x.f.sync_data()?;
    }
    Ok(Some(e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip() {
        let stamp = Stamp {
            date_sec: 1_796_565_508,
            date_nsec: 917_017_000,
            vm_clock_nsec: 5_000_000_123,
        };
        let a = new_entry("1", "s1", 0x50000, 1, stamp, 1 << 20);
        let b = new_entry("12", "a longer name", 0x60000, 2, stamp, 1 << 30);
        let raw: Vec<u8> = a.raw.iter().chain(b.raw.iter()).copied().collect();
        assert_eq!(parse_table(&raw, 2).unwrap(), vec![a, b]);
        assert!(parse_table(&raw, 3).is_err());
    }
}
