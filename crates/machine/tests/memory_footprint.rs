//! Per-machine footprint of the device-level state: build many default
//! machines and compare the process's resident memory before and after.

use std::sync::Arc;

use qmpkit_machine::{Machine, MachineConfig};

fn rss_kib() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = s.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4)
}

#[test]
fn many_idle_machines_stay_small() {
    let Some(before) = rss_kib() else {
        qmpkit_testkit::skip::skip("no /proc/self/statm");
        return;
    };
    let schema = Arc::new(qmpkit_machine::embedded::load_schema().expect("schema"));
    let config = Arc::new(MachineConfig::default_machine());
    let after_schema = rss_kib().unwrap_or(before);
    let n = 2000u64;
    let machines: Vec<Machine> = (0..n)
        .map(|i| Machine::with_index(config.clone(), schema.clone(), i as usize))
        .collect();
    let after = rss_kib().unwrap_or(after_schema);
    let per = (after.saturating_sub(after_schema)) * 1024 / n;
    eprintln!("{n} machines: {per} bytes each");
    // 10 000 machines in well under 2 GiB: keep each under 64 KiB.
    assert!(per < 64 * 1024, "{per} bytes per machine");
    drop(machines);
}
