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

/// The type name, and a switch's name when it is given none.
pub const TYPE: &str = "rocker";
/// The one world a switch can run.
const WORLD: &str = "ofdpa";

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

/// The checks QEMU makes when a switch is created, in its order: each port's back end exists
/// and is free (also of the ports before it), then the world exists, then the name is new.
/// `props`: the device's options; `exists` / `in_use`: whether a back end exists / is taken.
pub fn check_new(
    props: &[(String, Value)],
    exists: impl Fn(&str) -> bool,
    in_use: impl Fn(&str) -> bool,
    name_taken: impl Fn(&str) -> bool,
) -> Result<(), QmpError> {
    let get = |k: &str| props.iter().find(|(p, _)| p == k).map(|(_, v)| v);
    if let Some(v) = get("ports") {
        let def = crate::qom::types::find_prop(TYPE, "ports")
            .ok_or_else(|| generic("rocker has no ports property"))?;
        let ports = match crate::qom::props::device_prop_value(TYPE, def, v)? {
            QomValue::List(l) => l,
            _ => Vec::new(),
        };
        let mut taken: Vec<&str> = Vec::new();
        for p in ports.iter().filter_map(QomValue::as_str) {
            if !exists(p) {
                return Err(generic(format!(
                    "Property '{TYPE}.ports' can't find value '{p}'"
                )));
            }
            if in_use(p) || taken.contains(&p) {
                return Err(generic(format!(
                    "Property '{TYPE}.ports' can't take value '{p}', it's in use"
                )));
            }
            taken.push(p);
        }
    }
    if let Some(w) = get("world").and_then(Value::as_str) {
        if w != WORLD {
            return Err(generic(format!(
                "invalid argument requested world {w} does not exist"
            )));
        }
    }
    let name = get("name").and_then(Value::as_str).unwrap_or(TYPE);
    if name_taken(name) {
        return Err(generic(format!("{name} already exists")));
    }
    Ok(())
}

/// `check_new` for `device_add` on a running machine.
pub fn check_device_add(m: &Machine, props: &[(String, Value)]) -> Result<(), QmpError> {
    let tree = &m.qom.tree;
    check_new(
        props,
        |p| m.has_backend(crate::devices::Backend::Netdev, p),
        |p| crate::devices::netdev_in_use(tree, p),
        |name| find(m, name).is_ok(),
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
