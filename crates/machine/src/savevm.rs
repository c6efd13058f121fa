//! The human monitor's VM snapshots: `savevm`, `loadvm`, `delvm` and `info snapshots` over
//! every drive with a writable qcow2 image. The disks' part is a real internal snapshot in
//! each image (`qmpkit_block::qcow2_snapshots`); the guest's RAM is kept by the machine (in
//! memory, by tag), so an image holds no VM state (`VM_SIZE` 0) and `loadvm` of a snapshot
//! this machine did not take is refused as a disk-only snapshot, as QEMU refuses one.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use qmpkit_block::qcow2_snapshots::Entry;

use crate::block::{self, qerr};
use crate::memory::PAGE;
use crate::Machine;

const NO_VMSTATE: &str = "no block device can store vmstate for snapshot";

/// RAM as `savevm` saw it, by tag.
#[derive(Debug, Clone, Default)]
pub struct SavedVms {
    ram: BTreeMap<String, BTreeMap<u64, Box<[u8; PAGE as usize]>>>,
}

/// The drives taking part: (drive name, node) of each inserted writable medium, in drive
/// order. A writable medium that cannot take snapshots refuses the command in QEMU's words.
fn drives(m: &Machine) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for d in &m.block.drives {
        let Some(med) = &d.medium else { continue };
        if med.read_only {
            continue;
        }
        let node = block::resolve_node(m, &d.id).map_err(|e| e.desc)?;
        if m.block.graph.driver(&node).map(|x| x.name()) != Ok("qcow2") {
            return Err(format!(
                "Device '{}' is writable but does not support snapshots",
                d.id
            ));
        }
        out.push((d.id.clone(), node));
    }
    Ok(out)
}

fn stamp_of(m: &Machine) -> qmpkit_block::qcow2_snapshots::Stamp {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    qmpkit_block::qcow2_snapshots::Stamp {
        date_sec: u32::try_from(now.as_secs()).unwrap_or(u32::MAX),
        date_nsec: now.subsec_nanos(),
        vm_clock_nsec: m.now_ns,
    }
}

/// `savevm [tag]`: a snapshot named `tag` (or `vm-YYYYMMDDHHMMSS`) on every drive, replacing
/// one of that name.
pub fn savevm(m: &mut Machine, tag: Option<&str>) -> Result<(), String> {
    let list = drives(m)?;
    if list.is_empty() {
        return Err(NO_VMSTATE.into());
    }
    let stamp = stamp_of(m);
    let tag = match tag {
        Some(t) => t.to_string(),
        None => {
            let (y, mo, d, h, mi, s) = civil(u64::from(stamp.date_sec));
            format!("vm-{y:04}{mo:02}{d:02}{h:02}{mi:02}{s:02}")
        }
    };
    for (id, node) in &list {
        let has = m.block.graph.snapshots(node).map_err(|e| e.desc)?;
        if has.iter().any(|e| e.name == tag) {
            m.block
                .graph
                .snapshot_delete_internal(node, id, None, Some(&tag))
                .map_err(|e| e.desc)?;
        }
        m.block
            .graph
            .snapshot_internal(node, id, &tag, stamp)
            .map_err(|e| qerr(e).desc)?;
    }
    let ram = m.memory.written.clone();
    m.savevm.ram.insert(tag, ram);
    Ok(())
}

/// `loadvm tag`: every drive back to its snapshot `tag`, and the guest's RAM.
pub fn loadvm(m: &mut Machine, tag: &str) -> Result<(), String> {
    let list = drives(m)?;
    if list.is_empty() {
        return Err(NO_VMSTATE.into());
    }
    for (_, node) in &list {
        let has = m.block.graph.snapshots(node).map_err(|e| e.desc)?;
        if !has.iter().any(|e| e.name == tag) {
            return Err(format!(
                "Snapshot '{tag}' does not exist in one or more devices"
            ));
        }
    }
    let Some(ram) = m.savevm.ram.get(tag).cloned() else {
        return Err("This is a disk-only snapshot. Revert to it offline using qemu-img".into());
    };
    for (_, node) in &list {
        m.block.graph.snapshot_goto(node, tag).map_err(|e| e.desc)?;
    }
    m.memory.written = ram;
    Ok(())
}

/// `delvm tag`: the snapshot `tag` goes from every drive that has it.
pub fn delvm(m: &mut Machine, tag: &str) -> Result<(), String> {
    let list = drives(m)?;
    for (id, node) in &list {
        let has = m.block.graph.snapshots(node).map_err(|e| e.desc)?;
        if has.iter().any(|e| e.name == tag) {
            m.block
                .graph
                .snapshot_delete_internal(node, id, None, Some(tag))
                .map_err(|e| e.desc)?;
        }
    }
    m.savevm.ram.remove(tag);
    Ok(())
}

/// Days since 1970-01-01 as (year, month, day), and the time of day: the civil calendar.
fn civil(secs: u64) -> (u64, u64, u64, u64, u64, u64) {
    let days = secs / 86400;
    let rem = secs % 86400;
    // Howard Hinnant's days-to-civil, for days since the epoch.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if mo <= 2 { y + 1 } else { y };
    (
        y as u64,
        mo as u64,
        d as u64,
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
    )
}

/// QEMU's `size_to_str`: a binary unit from the point where the number would reach 1000,
/// and three significant digits (C's `%0.3g`).
fn size_str(n: u64) -> String {
    const UNITS: [&str; 7] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let scaled = n as f64 * 1024.0 / 1000.0;
    let exp = if n == 0 {
        0
    } else {
        scaled.log2().floor() as i64 + 1
    };
    let i = (((exp - 1) / 10).max(0) as usize).min(UNITS.len() - 1);
    let v = n as f64 / (1u64 << (i * 10)) as f64;
    let decimals = if v == 0.0 {
        0
    } else {
        (2 - v.log10().floor() as i64).max(0) as usize
    };
    let s = format!("{v:.decimals$}");
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    };
    format!("{s} {}", UNITS[i])
}

fn row(o: &mut String, id: &str, e: &Entry) {
    let (y, mo, d, h, mi, s) = civil(u64::from(e.date_sec));
    let secs = e.vm_clock_nsec / 1_000_000_000;
    let clock = format!(
        "{:04}:{:02}:{:02}.{:03}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        e.vm_clock_nsec / 1_000_000 % 1000
    );
    let date = format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}");
    let _ = writeln!(
        o,
        "{:<7} {:<16} {:>8} {:>19} {:>15} {:>10}",
        id,
        e.name,
        size_str(e.vm_state_size),
        date,
        clock,
        "--"
    );
}

fn header(o: &mut String) {
    let _ = writeln!(
        o,
        "{:<7} {:<16} {:>8} {:>19} {:>15} {:>10}",
        "ID", "TAG", "VM_SIZE", "DATE", "VM_CLOCK", "ICOUNT"
    );
}

/// `info snapshots`: those on every drive (listed from the first), then each drive's others.
/// Drives that cannot take snapshots are left out here.
pub fn info_snapshots(m: &Machine) -> Result<String, String> {
    let list: Vec<(String, String)> = m
        .block
        .drives
        .iter()
        .filter(|d| d.medium.as_ref().is_some_and(|x| !x.read_only))
        .filter_map(|d| Some((d.id.clone(), block::resolve_node(m, &d.id).ok()?)))
        .filter(|(_, n)| m.block.graph.driver(n).map(|x| x.name()) == Ok("qcow2"))
        .collect();
    if list.is_empty() {
        return Ok(format!("{NO_VMSTATE}\n"));
    }
    let mut per = Vec::new();
    for (id, node) in &list {
        per.push((
            id.clone(),
            m.block.graph.snapshots(node).map_err(|e| e.desc)?,
        ));
    }
    let on_all = |name: &str| per.iter().all(|(_, s)| s.iter().any(|e| e.name == name));
    let common: Vec<&Entry> = per[0].1.iter().filter(|e| on_all(&e.name)).collect();
    let partial: Vec<(&String, Vec<&Entry>)> = per
        .iter()
        .map(|(id, s)| {
            (
                id,
                s.iter().filter(|e| !on_all(&e.name)).collect::<Vec<_>>(),
            )
        })
        .filter(|(_, s)| !s.is_empty())
        .collect();
    let mut o = String::new();
    if per[0].1.is_empty() && partial.is_empty() {
        o.push_str("There is no snapshot available.\n");
        return Ok(o);
    }
    if common.is_empty() {
        o.push_str("None\n");
    } else {
        o.push_str("List of snapshots present on all disks:\n");
        header(&mut o);
        for e in common {
            row(&mut o, "--", e);
        }
    }
    for (id, s) in partial {
        let _ = writeln!(o, "\nList of partial (non-loadable) snapshots on '{id}':");
        header(&mut o);
        for e in s {
            row(&mut o, &e.id, e);
        }
    }
    Ok(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_dates_as_qemu_prints_them() {
        assert_eq!(size_str(0), "0 B");
        assert_eq!(size_str(617_472), "603 KiB");
        assert_eq!(size_str(1536), "1.5 KiB");
        assert_eq!(size_str(5_452_595), "5.2 MiB");
        assert_eq!(size_str(20 * 1024 * 1024), "20 MiB");
        assert_eq!(size_str(1000 * 1024), "0.977 MiB");
        assert_eq!(civil(1_796_565_508), (2026, 12, 6, 13, 58, 28));
        assert_eq!(civil(951_782_400), (2000, 2, 29, 0, 0, 0));
    }
}
