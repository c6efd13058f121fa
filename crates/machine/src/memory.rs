//! Simulated guest RAM: `memsave` (virtual addresses through a vCPU) and
//! `pmemsave` (physical addresses).
//!
//! RAM is never allocated. Its content is a deterministic function of the
//! address, as an idle guest's memory looks: the first megabytes (firmware
//! and kernel) and one page in [`SPARSE_STRIDE`] hold data, everything else
//! reads as zero. Pages written through [`write_phys`] are kept in a sparse
//! map. Each populated page starts with the ASCII tag `qmpkit page
//! <16 hex digits of the page number>` so that tests can recognise it.

use std::collections::BTreeMap;
use std::io::Write;

use crate::Machine;
use qmpkit_wire::QmpError;

pub const PAGE: u64 = 4096;
/// Pages below this number (8 MiB) are populated.
pub const LOW_POPULATED_PAGES: u64 = 2048;
/// Above it, one page in this many is.
pub const SPARSE_STRIDE: u64 = 251;
/// Where the guest kernel's text mapping starts (virtual).
pub const KERNEL_TEXT_BASE: u64 = 0xffff_ffff_8000_0000;
/// Where the guest kernel's direct map starts (virtual).
pub const DIRECT_MAP_BASE: u64 = 0xffff_8800_0000_0000;

/// Pages the guest (or a test) wrote.
#[derive(Debug, Clone, Default)]
pub struct MemoryState {
    pub written: BTreeMap<u64, Box<[u8; PAGE as usize]>>,
}

pub use crate::config::ram_ranges;

fn is_ram(ram_size: u64, gpa: u64) -> bool {
    ram_ranges(ram_size)
        .iter()
        .any(|&(s, l)| gpa >= s && gpa - s < l)
}

/// Whether a page of RAM has non-zero content.
pub fn populated(m: &Machine, page: u64) -> bool {
    m.memory.written.contains_key(&page) || page_has_pattern(page)
}

fn page_has_pattern(page: u64) -> bool {
    page < LOW_POPULATED_PAGES || page.checked_rem(SPARSE_STRIDE) == Some(0)
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Fill `buf` with the content of physical page `page` (RAM only).
pub fn fill_page(m: &Machine, page: u64, buf: &mut [u8; PAGE as usize]) {
    if let Some(p) = m.memory.written.get(&page) {
        buf.copy_from_slice(&p[..]);
        return;
    }
    if !page_has_pattern(page) {
        buf.fill(0);
        return;
    }
    for (w, chunk) in buf.chunks_exact_mut(8).enumerate() {
        chunk.copy_from_slice(
            &splitmix(page.wrapping_mul(512).wrapping_add(w as u64)).to_le_bytes(),
        );
    }
    let tag = format!("qmpkit page {page:016x}\n");
    buf[..tag.len()].copy_from_slice(tag.as_bytes());
}

/// A piece of a guest-physical access that stays within one page.
struct Piece {
    /// Its guest-physical address.
    gpa: u64,
    page: u64,
    /// Its offset in the page.
    off: usize,
    /// Its offset in the caller's buffer.
    at: usize,
    len: usize,
}

/// Split an access of `len` bytes at `gpa` at page boundaries (the address
/// wraps around at the top).
fn pieces(gpa: u64, len: usize) -> impl Iterator<Item = Piece> {
    let mut at = 0usize;
    std::iter::from_fn(move || {
        if at >= len {
            return None;
        }
        let a = gpa.wrapping_add(at as u64);
        let off = (a % PAGE) as usize;
        let n = (PAGE as usize - off).min(len - at);
        let p = Piece {
            gpa: a,
            page: a / PAGE,
            off,
            at,
            len: n,
        };
        at += n;
        Some(p)
    })
}

/// Read guest-physical memory; non-RAM reads as zero.
pub fn read_phys(m: &Machine, gpa: u64, out: &mut [u8]) {
    let ram = m.config.memory_bytes;
    let mut page_buf = [0u8; PAGE as usize];
    for p in pieces(gpa, out.len()) {
        let dst = &mut out[p.at..p.at + p.len];
        if is_ram(ram, p.gpa) {
            fill_page(m, p.page, &mut page_buf);
            dst.copy_from_slice(&page_buf[p.off..p.off + p.len]);
        } else {
            dst.fill(0);
        }
    }
}

/// Write guest-physical memory (RAM only; other writes are dropped).
pub fn write_phys(m: &mut Machine, gpa: u64, data: &[u8]) {
    let ram = m.config.memory_bytes;
    for p in pieces(gpa, data.len()) {
        if !is_ram(ram, p.gpa) {
            continue;
        }
        if !m.memory.written.contains_key(&p.page) {
            let mut b = Box::new([0u8; PAGE as usize]);
            fill_page(m, p.page, &mut b);
            m.memory.written.insert(p.page, b);
        }
        if let Some(w) = m.memory.written.get_mut(&p.page) {
            w[p.off..p.off + p.len].copy_from_slice(&data[p.at..p.at + p.len]);
        }
    }
}

/// Translate a guest-virtual address the way the modelled guest kernel
/// maps memory: its text mapping, its direct map, and identity below the
/// end of RAM (firmware and early boot). `None`: not mapped.
pub fn virt_to_phys(m: &Machine, va: u64) -> Option<u64> {
    let ram = m.config.memory_bytes;
    let top = ram_ranges(ram).last().map(|&(s, l)| s + l).unwrap_or(0);
    let gpa = if va >= KERNEL_TEXT_BASE {
        va - KERNEL_TEXT_BASE
    } else if (DIRECT_MAP_BASE..DIRECT_MAP_BASE + (64u64 << 40)).contains(&va) {
        va - DIRECT_MAP_BASE
    } else {
        va
    };
    (gpa < top && is_ram(ram, gpa)).then_some(gpa)
}

pub use crate::devices::strerror;

fn open_out(filename: &str) -> Result<std::fs::File, QmpError> {
    std::fs::File::create(filename)
        .map_err(|e| QmpError::generic(format!("Could not open '{filename}': {}", strerror(&e))))
}

fn write_err(_e: std::io::Error) -> QmpError {
    QmpError::generic("An IO error has occurred")
}

/// `memsave`: `size` bytes of guest-virtual memory at `addr`, as vCPU `cpu_index` sees it,
/// to `filename`.
pub fn memsave(
    m: &Machine,
    addr: u64,
    size: i64,
    filename: &str,
    cpu_index: i64,
) -> Result<(), QmpError> {
    if cpu_index < 0
        || !crate::identity::cpu_paths(m)
            .iter()
            .any(|c| c.0 as i64 == cpu_index)
    {
        return Err(QmpError::generic(
            "Parameter 'cpu-index' expects a CPU number",
        ));
    }
    let invalid = || QmpError::generic(format!("Invalid addr 0x{addr:016x}/size {size} specified"));
    let mut f = open_out(filename)?;
    if size < 0 {
        return Err(invalid());
    }
    let mut left = size as u64;
    let mut va = addr;
    let mut buf = vec![0u8; 1024];
    while left > 0 {
        let l = left.min(1024);
        // Each page must be mapped.
        let chunk = &mut buf[..l as usize];
        let mut i = 0usize;
        while i < chunk.len() {
            let a = va.wrapping_add(i as u64);
            let n = ((PAGE - a % PAGE) as usize).min(chunk.len() - i);
            let gpa = virt_to_phys(m, a).ok_or_else(invalid)?;
            read_phys(m, gpa, &mut chunk[i..i + n]);
            i += n;
        }
        f.write_all(chunk).map_err(write_err)?;
        va = va.wrapping_add(l);
        left -= l;
    }
    Ok(())
}

/// `pmemsave`: `size` bytes of guest-physical memory at `addr` to `filename`.
pub fn pmemsave(m: &Machine, addr: u64, size: i64, filename: &str) -> Result<(), QmpError> {
    let mut f = open_out(filename)?;
    if size < 0 {
        return Err(QmpError::generic(format!(
            "Invalid addr 0x{addr:016x}/size {size} specified"
        )));
    }
    let mut left = size as u64;
    let mut a = addr;
    let mut buf = vec![0u8; 64 * 1024];
    while left > 0 {
        let l = left.min(buf.len() as u64) as usize;
        read_phys(m, a, &mut buf[..l]);
        f.write_all(&buf[..l]).map_err(write_err)?;
        a = a.wrapping_add(l as u64);
        left -= l as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::MachineConfig;

    fn machine() -> Machine {
        let schema = crate::embedded::load_schema().expect("embedded schema loads");
        Machine::new(Arc::new(MachineConfig::default_machine()), Arc::new(schema))
    }

    #[test]
    fn writes_across_pages_read_back_and_beyond_ram_are_dropped() {
        let mut m = machine();
        let ram = m.config.memory_bytes;
        let data: Vec<u8> = (0..PAGE as usize + 100).map(|i| (i % 251) as u8).collect();
        // Straddles three pages.
        let gpa = 5 * PAGE - 50;
        write_phys(&mut m, gpa, &data);
        let mut back = vec![0u8; data.len()];
        read_phys(&m, gpa, &mut back);
        assert_eq!(back, data);
        // The bytes around the write keep the page's own content.
        let mut page = [0u8; PAGE as usize];
        fill_page(&m, 4, &mut page);
        let mut before = [0u8; 8];
        read_phys(&m, gpa - 8, &mut before);
        assert_eq!(before[..], page[PAGE as usize - 58..PAGE as usize - 50]);
        assert_eq!(m.memory.written.len(), 3);
        // Half in RAM, half past its end: only the RAM half is kept.
        write_phys(&mut m, ram - 4, &[0xaa; 8]);
        let mut edge = [0x55u8; 8];
        read_phys(&m, ram - 4, &mut edge);
        assert_eq!(edge, [0xaa, 0xaa, 0xaa, 0xaa, 0, 0, 0, 0]);
        assert_eq!(m.memory.written.len(), 4);
    }
}
