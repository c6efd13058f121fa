//! Rocker switches: a `rocker` device with a `name` and its `ports` (back ends).
//!
//! `query-rocker` reports the switch (its id is the first port's MAC address read as a
//! little-endian number, as QEMU derives it when `switch_id` is not given), `query-rocker-ports`
//! its ports `NAMEpN` at 10 Gb/s full duplex, enabled while the guest runs and up
//! while their back end's link is up. The guest's driver installs no OF-DPA flows or groups of
//! its own in this model, so those tables are empty, as on a switch nobody programmed.

use crate::qom::value::QomValue;
use qmpkit_wire::QmpError;

use crate::api;
use crate::qom::NodeId;
use crate::{generic, Machine};

/// The first front-panel MAC address when `fp_start_macaddr` is not given.
const DEFAULT_FP_MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x35, 0x01];

/// The rocker device named `name`, or QEMU's error.
fn find(m: &Machine, name: &str) -> Result<NodeId, QmpError> {
    let tree = &m.qom.tree;
    crate::devices::all_devices(tree)
        .into_iter()
        .find(|&n| {
            crate::qom::types::is_a(tree.node(n).ty, "rocker")
                && tree.val(n, "name").and_then(QomValue::as_str) == Some(name)
        })
        .ok_or_else(|| generic(format!("rocker {name} not found")))
}

/// The back ends of a switch's ports, in port order (`ports` is a list, or one string with
/// comma-separated names).
fn port_backends(m: &Machine, n: NodeId) -> Vec<String> {
    match m.qom.tree.val(n, "ports") {
        Some(QomValue::List(a)) => a
            .iter()
            .filter_map(QomValue::as_str)
            .map(str::to_string)
            .collect(),
        Some(QomValue::Str(s)) => s
            .split(',')
            .filter(|p| !p.is_empty())
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    }
}

fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut out = [0u8; 6];
    let mut parts = s.split(':');
    for b in &mut out {
        *b = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(out)
}

/// `query-rocker`.
pub fn switch(m: &mut Machine, name: &str) -> Result<api::RockerSwitch, QmpError> {
    let n = find(m, name)?;
    let tree = &m.qom.tree;
    let explicit = tree
        .val(n, "switch_id")
        .and_then(QomValue::as_u64)
        .filter(|&v| v != 0);
    let id = explicit.unwrap_or_else(|| {
        let mac = tree
            .val(n, "fp_start_macaddr")
            .and_then(QomValue::as_str)
            .and_then(parse_mac)
            .unwrap_or(DEFAULT_FP_MAC);
        let mut b = [0u8; 8];
        b[..6].copy_from_slice(&mac);
        u64::from_le_bytes(b)
    });
    Ok(api::RockerSwitch {
        name: name.to_string(),
        id,
        ports: u32::try_from(port_backends(m, n).len()).unwrap_or(u32::MAX),
    })
}

/// `query-rocker-ports`.
pub fn ports(m: &mut Machine, name: &str) -> Result<Vec<api::RockerPort>, QmpError> {
    let n = find(m, name)?;
    let running = m.run.state == crate::RunState::Running;
    Ok(port_backends(m, n)
        .iter()
        .enumerate()
        .map(|(i, be)| {
            let up = super::link_up(m, be).unwrap_or(false);
            api::RockerPort {
                name: format!("{name}p{}", i + 1),
                enabled: running,
                link_up: running && up,
                speed: 10000,
                duplex: api::RockerPortDuplex::Full,
                autoneg: api::RockerPortAutoneg::Off,
            }
        })
        .collect())
}

/// `query-rocker-of-dpa-flows`.
pub fn flows(
    m: &mut Machine,
    name: &str,
    _tbl_id: Option<u32>,
) -> Result<Vec<api::RockerOfDpaFlow>, QmpError> {
    find(m, name)?;
    Ok(Vec::new())
}

/// `query-rocker-of-dpa-groups`.
pub fn groups(
    m: &mut Machine,
    name: &str,
    _ty: Option<u8>,
) -> Result<Vec<api::RockerOfDpaGroup>, QmpError> {
    find(m, name)?;
    Ok(Vec::new())
}
