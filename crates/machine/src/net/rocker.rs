//! Rocker switches: a `rocker` device with a `name` (`rocker` when not given), a `world`
//! (only `ofdpa` exists) and its `ports` (a list of back ends).
//!
//! `query-rocker` reports the switch: its id is `switch_id`, else the first port's MAC address
//! read as a little-endian number. That address is `fp_start_macaddr`, else QEMU's default
//! 52:54:00:12:35:01 with its fifth byte counting the switches made so far with the default.
//! `query-rocker-ports` lists its ports `NAMEpN` at 10 Gb/s full duplex. The simulated guest
//! has no rocker driver, so, as in QEMU with such a guest, no port is enabled, a port's link
//! is down until `set_link` brings its back end up, and the OF-DPA flow and group tables are
//! empty, as on a switch nobody programmed.

use crate::qom::value::QomValue;
use qmpkit_wire::QmpError;
use serde_json::Value;

use crate::api;
use crate::qom::{NodeId, Tree};
use crate::{generic, Machine};

use crate::config::rocker::check_new;
pub use crate::config::rocker::TYPE;
use crate::devices::{Backend, PlugInfo};

/// The first front-panel MAC address when `fp_start_macaddr` is not given.
const DEFAULT_FP_MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x35, 0x01];

/// Every switch, in the order they were made.
fn switches(tree: &Tree) -> Vec<NodeId> {
    crate::devices::all_devices(tree)
        .into_iter()
        .filter(|&n| crate::qom::types::is_a(tree.node(n).ty, TYPE))
        .collect()
}

/// A switch's name.
fn name_of(tree: &Tree, n: NodeId) -> &str {
    tree.val(n, "name")
        .and_then(QomValue::as_str)
        .unwrap_or(TYPE)
}

/// The rocker device named `name`, or QEMU's error.
fn find(m: &Machine, name: &str) -> Result<NodeId, QmpError> {
    let tree = &m.qom.tree;
    switches(tree)
        .into_iter()
        .find(|&n| name_of(tree, n) == name)
        .ok_or_else(|| generic(format!("rocker {name} not found")))
}

/// The back ends of a switch's ports, in port order.
fn port_backends(tree: &Tree, n: NodeId) -> Vec<String> {
    match tree.val(n, "ports") {
        Some(QomValue::List(a)) => a
            .iter()
            .filter_map(QomValue::as_str)
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    }
}

/// Whether a switch's port uses back end `netdev`.
pub fn port_uses(tree: &Tree, netdev: &str) -> bool {
    switches(tree)
        .into_iter()
        .any(|n| port_backends(tree, n).iter().any(|p| p == netdev))
}

/// Hook: a switch about to be plugged (`device_add`) gets QEMU's checks of a new switch
/// ([`check_new`]) against the back ends, devices and switches the machine has besides it.
pub fn pre_plug(m: &Machine, info: &PlugInfo) -> Result<(), QmpError> {
    if !crate::qom::types::is_a(info.ty, TYPE) {
        return Ok(());
    }
    let props: Vec<(String, Value)> = info
        .props
        .iter()
        .map(|(k, v)| (k.clone(), v.to_json()))
        .collect();
    let tree = &m.qom.tree;
    let others: Vec<NodeId> = switches(tree)
        .into_iter()
        .filter(|&n| tree.path(n) != info.path)
        .collect();
    check_new(
        &props,
        |p| m.has_backend(Backend::Netdev, p),
        |p| {
            crate::devices::backend_in_use(tree, "netdev", p)
                || others
                    .iter()
                    .any(|&n| port_backends(tree, n).iter().any(|x| x == p))
        },
        |name| others.iter().any(|&n| name_of(tree, n) == name),
    )
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
        .and_then(QomValue::as_i64)
        .filter(|&v| v != 0);
    let id = explicit.map(|v| v as u64).unwrap_or_else(|| {
        let mut b = [0u8; 8];
        b[..6].copy_from_slice(&start_mac(tree, n));
        u64::from_le_bytes(b)
    });
    Ok(api::RockerSwitch {
        name: name.to_string(),
        id,
        ports: u32::try_from(port_backends(tree, n).len()).unwrap_or(u32::MAX),
    })
}

/// A switch's first port MAC address: `fp_start_macaddr`, else the default with the fifth
/// byte counting the switches before it that took the default too.
fn start_mac(tree: &Tree, n: NodeId) -> [u8; 6] {
    let given = |n: NodeId| {
        tree.val(n, "fp_start_macaddr")
            .and_then(QomValue::as_str)
            .and_then(parse_mac)
    };
    if let Some(mac) = given(n) {
        return mac;
    }
    let before = switches(tree)
        .into_iter()
        .take_while(|&o| o != n)
        .filter(|&o| given(o).is_none())
        .count();
    let mut mac = DEFAULT_FP_MAC;
    mac[4] = mac[4].wrapping_add(before as u8);
    mac
}

/// `query-rocker-ports`.
pub fn ports(m: &mut Machine, name: &str) -> Result<Vec<api::RockerPort>, QmpError> {
    let n = find(m, name)?;
    Ok(port_backends(&m.qom.tree, n)
        .iter()
        .enumerate()
        .map(|(i, be)| api::RockerPort {
            name: format!("{name}p{}", i + 1),
            enabled: false,
            link_up: m.net.backend_up.iter().any(|b| b == be),
            speed: 10000,
            duplex: api::RockerPortDuplex::Full,
            autoneg: api::RockerPortAutoneg::Off,
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
