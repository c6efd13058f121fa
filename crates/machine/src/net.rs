//! Network back ends and cards.
//!
//! Back ends: the configured `-netdev`s plus those added at run time
//! (`netdev_add`/`netdev_del`), so that devices can be checked against the
//! back ends that exist. `netdev_add` checks each back end type's options in
//! QEMU's words; the machine makes no host interface, except that a
//! descriptor a `tap` or `socket` back end names (`fd=`, `fds=`, `vhostfd=`)
//! is taken from the client's named descriptors and held until `netdev_del`.
//!
//! Cards: every device that is a network card (it has `mac` and `netdev`
//! properties) is a net client named by its id, with a link state
//! (`set_link`). A virtio card also has the receive filter its guest driver
//! programs (`query-rx-filter`, `NIC_RX_FILTER_CHANGED`).
//!
//! The model of the guest's filter: the simulated guest has a driver that
//! has programmed each virtio card from the start (also under `-S`, where
//! QEMU would still report its reset state: promiscuous, every VLAN). As
//! Linux's does, the driver turns promiscuous mode off, accepts only VLAN 0
//! and joins the all-hosts groups and the solicited-node group of its
//! link-local address (`01:00:5e:00:00:01`, `33:33:00:00:00:01`,
//! `33:33:ff:XX:XX:XX` from the MAC). While its
//! link is down it leaves the IPv6 groups (its link-local address goes with
//! the link) and it joins them again when the link comes back. Test control
//! (`__org.qmpkit_guest-rx-filter`) makes the guest program anything else.
//! Each change the guest makes sends `NIC_RX_FILTER_CHANGED` once; the next
//! one waits until `query-rx-filter` has read the card, as in QEMU.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::os::fd::OwnedFd;

use qmpkit_wire::{ErrorClass, QmpError};
use serde_json::Value;

use crate::api;
use crate::config::NetdevConfig;
use crate::qom::NodeId;
use crate::{generic, Args, Cx, Machine};

pub mod rocker;

/// Commands outside the machine's own schema (newer interfaces).

/// A virtio card's receive filter, as the guest programmed it.
#[derive(Debug, Clone, PartialEq)]
pub struct RxFilter {
    pub promiscuous: bool,
    pub multicast: api::RxState,
    pub unicast: api::RxState,
    pub vlan: api::RxState,
    /// QEMU reports the "no broadcast" flag under this name: false while
    /// broadcasts are received.
    pub broadcast_allowed: bool,
    pub multicast_overflow: bool,
    pub unicast_overflow: bool,
    pub main_mac: String,
    /// Ascending; reported highest first, as QEMU lists them.
    pub vlan_table: Vec<i64>,
    pub unicast_table: Vec<String>,
    pub multicast_table: Vec<String>,
}

impl RxFilter {
    /// QEMU's state before a guest driver runs.
    fn reset(mac: &str) -> RxFilter {
        RxFilter {
            promiscuous: true,
            multicast: api::RxState::Normal,
            unicast: api::RxState::Normal,
            vlan: api::RxState::All,
            broadcast_allowed: false,
            multicast_overflow: false,
            unicast_overflow: false,
            main_mac: mac.to_string(),
            vlan_table: (0..4096).collect(),
            unicast_table: Vec::new(),
            multicast_table: Vec::new(),
        }
    }

    /// What the simulated guest's driver programs, link up or down.
    fn driver(mac: &str, link_up: bool) -> RxFilter {
        let tail = mac.get(9..).unwrap_or("00:00:00");
        let mut multicast_table = vec!["01:00:5e:00:00:01".to_string()];
        if link_up {
            multicast_table.push("33:33:00:00:00:01".into());
            multicast_table.push(format!("33:33:ff:{tail}"));
        }
        RxFilter {
            promiscuous: false,
            vlan: api::RxState::Normal,
            vlan_table: vec![0],
            multicast_table,
            ..RxFilter::reset(mac)
        }
    }
}

/// One network card's state.
#[derive(Debug, Clone)]
pub struct Nic {
    pub link_up: bool,
    /// The guest driver's filter (virtio cards only).
    pub filter: Option<RxFilter>,
    /// Whether the next filter change sends `NIC_RX_FILTER_CHANGED`.
    pub notify: bool,
}

/// Back ends changed at run time, and the cards' state.
#[derive(Debug, Default)]
pub struct NetState {
    /// Added with `netdev_add`.
    pub added: Vec<NetdevConfig>,
    /// Configured ones removed with `netdev_del`.
    pub removed: Vec<String>,
    /// Back ends whose link `set_link` took down.
    pub backend_down: Vec<String>,
    /// Back ends whose link `set_link` brought up (a switch port's link is down until then).
    pub backend_up: Vec<String>,
    /// Descriptors a back end holds, by back end id.
    pub held: BTreeMap<String, Vec<OwnedFd>>,
    /// Cards by net client name, made when first needed.
    pub nics: BTreeMap<String, Nic>,
}

impl NetState {
    /// A card goes away: its link and filter go with it (a card plugged
    /// again under the same id starts afresh).
    pub fn on_unplug(&mut self, info: &crate::devices::PlugInfo) {
        if let Some(id) = &info.id {
            self.nics.remove(id);
        }
    }
}

/// The back ends that exist now, configured ones first.
pub fn netdevs(m: &Machine) -> Vec<&NetdevConfig> {
    m.config
        .netdevs
        .iter()
        .filter(|n| !m.net.removed.contains(&n.id))
        .chain(m.net.added.iter())
        .collect()
}

/// Whether back end `id` exists.
pub fn exists(m: &Machine, id: &str) -> bool {
    netdevs(m).iter().any(|n| n.id == id)
}

// ---------------------------------------------------------------------------
// Cards

/// Whether QOM type `ty` is a network card.
fn is_nic_type(ty: &str) -> bool {
    crate::qom::types::find_prop(ty, "mac").is_some()
        && crate::qom::types::find_prop(ty, "netdev").is_some()
}

/// A card: its net client name, QOM node and MAC address.
struct CardRef {
    name: String,
    node: NodeId,
    mac: String,
    virtio: bool,
}

/// Every card, in device order. A card without an id is named after its
/// type and a counter (`virtio-net-pci.0`); one without a MAC gets the
/// first free address from 52:54:00:12:34:56 on, as QEMU hands them out.
fn cards(m: &Machine) -> Vec<CardRef> {
    let tree = &m.qom.tree;
    let nodes: Vec<NodeId> = crate::devices::all_devices(tree)
        .into_iter()
        .filter(|&n| is_nic_type(tree.node(n).ty) && &*tree.node(n).name != "virtio-backend")
        .collect();
    let mac_of = |n: NodeId| {
        tree.val(n, "mac")
            .and_then(crate::qom::value::QomValue::as_str)
            .map(str::to_ascii_lowercase)
    };
    let mut used: Vec<u8> = nodes
        .iter()
        .filter_map(|&n| mac_of(n))
        .filter_map(|mac| {
            mac.strip_prefix("52:54:00:12:34:")
                .and_then(|b| u8::from_str_radix(b, 16).ok())
        })
        .collect();
    let mut unnamed: BTreeMap<&str, usize> = BTreeMap::new();
    let mut out = Vec::new();
    for n in nodes {
        let ty = tree.node(n).ty;
        let name = crate::devices::device_id(tree, n).unwrap_or_else(|| {
            let c = unnamed.entry(ty).or_insert(0);
            *c += 1;
            format!("{ty}.{}", *c - 1)
        });
        let mac = match mac_of(n) {
            Some(mac) => mac,
            None => {
                let b = (0x56u8..=0xff).find(|b| !used.contains(b)).unwrap_or(0x56);
                used.push(b);
                format!("52:54:00:12:34:{b:02x}")
            }
        };
        let virtio = crate::qom::types::is_a(ty, "virtio-net-pci")
            || crate::qom::types::is_a(ty, "virtio-net-device");
        out.push(CardRef {
            name,
            node: n,
            mac,
            virtio,
        });
    }
    out
}

/// The state of card `c`, made on first use: the filter its guest's
/// driver programmed.
fn nic<'a>(m: &'a mut Machine, c: &CardRef) -> &'a mut Nic {
    m.net.nics.entry(c.name.clone()).or_insert_with(|| Nic {
        link_up: true,
        filter: c.virtio.then(|| RxFilter::driver(&c.mac, true)),
        notify: true,
    })
}

/// The QOM path `NIC_RX_FILTER_CHANGED` names: the virtio device inside
/// the PCI card.
fn event_path(m: &Machine, c: &CardRef) -> String {
    let p = m.qom.tree.path(c.node);
    if m.qom.tree.child(c.node, "virtio-backend").is_some() {
        format!("{p}/virtio-backend")
    } else {
        p
    }
}

/// Apply a change the guest makes to card `c`'s filter; the event goes out
/// if the filter changed and the card's notification is armed.
fn guest_sets_filter(m: &mut Machine, c: &CardRef, f: impl FnOnce(&mut RxFilter)) {
    let path = event_path(m, c);
    let n = nic(m, c);
    let Some(filter) = &mut n.filter else { return };
    let before = filter.clone();
    f(filter);
    if *filter == before || !n.notify {
        return;
    }
    n.notify = false;
    let name = Some(c.name.clone());
    m.emit_event(api::NicRxFilterChanged { name, path });
}

/// `set_link`: a card's link (and its back end's), or a back end's alone,
/// as QEMU changes them. The guest of a virtio card reacts to its link.
pub fn set_link(m: &mut Machine, name: &str, up: bool) -> Result<(), QmpError> {
    let card = cards(m).into_iter().find(|c| c.name == name);
    let Some(c) = card else {
        if !exists(m, name) {
            return Err(QmpError::new(
                ErrorClass::DeviceNotFound,
                format!("Device '{name}' not found"),
            ));
        }
        m.net.backend_down.retain(|b| b != name);
        m.net.backend_up.retain(|b| b != name);
        if up {
            m.net.backend_up.push(name.to_string());
        } else {
            m.net.backend_down.push(name.to_string());
        }
        return Ok(());
    };
    nic(m, &c).link_up = up;
    if let Some(nd) = m
        .qom
        .tree
        .val(c.node, "netdev")
        .and_then(crate::qom::value::QomValue::as_str)
        .map(str::to_string)
    {
        m.net.backend_down.retain(|b| *b != nd);
        if !up {
            m.net.backend_down.push(nd);
        }
    }
    let mac = c.mac.clone();
    guest_sets_filter(m, &c, |f| {
        let ipv6 = [
            "33:33:00:00:00:01".to_string(),
            format!("33:33:ff:{}", mac.get(9..).unwrap_or("")),
        ];
        f.multicast_table.retain(|a| !ipv6.contains(a));
        if up {
            f.multicast_table.extend(ipv6);
        }
    });
    Ok(())
}

/// Whether card or back end `name`'s link is up.
pub fn link_up(m: &Machine, name: &str) -> Option<bool> {
    if let Some(n) = m.net.nics.get(name) {
        return Some(n.link_up);
    }
    if cards(m).iter().any(|c| c.name == name) {
        return Some(true);
    }
    exists(m, name).then(|| !m.net.backend_down.iter().any(|b| b == name))
}

fn filter_info(name: &str, f: &RxFilter) -> api::RxFilterInfo {
    api::RxFilterInfo {
        name: name.to_string(),
        promiscuous: f.promiscuous,
        multicast: f.multicast.clone(),
        unicast: f.unicast.clone(),
        vlan: f.vlan.clone(),
        broadcast_allowed: f.broadcast_allowed,
        multicast_overflow: f.multicast_overflow,
        unicast_overflow: f.unicast_overflow,
        main_mac: f.main_mac.clone(),
        vlan_table: f.vlan_table.iter().rev().copied().collect(),
        unicast_table: f.unicast_table.clone(),
        multicast_table: f.multicast_table.clone(),
    }
}

/// `query-rx-filter`: every virtio card's filter, or the named one's (a
/// card of another model and a back end are QEMU's errors). Reading a
/// card's filter arms its next `NIC_RX_FILTER_CHANGED`.
pub fn query_rx_filter(
    m: &mut Machine,
    name: Option<&str>,
) -> Result<Vec<api::RxFilterInfo>, QmpError> {
    let all = cards(m);
    let chosen: Vec<&CardRef> = match name {
        Some(n) => match all.iter().find(|c| c.name == n) {
            Some(c) if c.virtio => vec![c],
            Some(_) => {
                return Err(generic(format!(
                    "net client({n}) doesn't support rx-filter querying"
                )))
            }
            None if exists(m, n) => return Err(generic(format!("net client({n}) isn't a NIC"))),
            None => return Err(generic(format!("invalid net client name: {n}"))),
        },
        None => all.iter().filter(|c| c.virtio).collect(),
    };
    let mut out = Vec::new();
    for c in chosen {
        let n = nic(m, c);
        n.notify = true;
        if let Some(f) = &n.filter {
            out.push(filter_info(&c.name, f));
        }
    }
    Ok(out)
}

/// `__org.qmpkit_guest-rx-filter`: the guest programs card `name`'s filter.
pub fn guest_rx_filter(m: &mut Machine, a: api::OrgQmpkitGuestRxFilter) -> Result<(), QmpError> {
    let Some(c) = cards(m).into_iter().find(|c| c.name == a.name) else {
        return Err(QmpError::new(
            ErrorClass::DeviceNotFound,
            format!("Device '{}' not found", a.name),
        ));
    };
    if !c.virtio {
        return Err(generic(format!(
            "net client({}) doesn't support rx-filter querying",
            a.name
        )));
    }
    guest_sets_filter(m, &c, |f| {
        if let Some(v) = a.promiscuous {
            f.promiscuous = v;
        }
        if let Some(v) = a.multicast {
            f.multicast = v;
        }
        if let Some(v) = a.unicast {
            f.unicast = v;
        }
        if let Some(v) = a.multicast_table {
            f.multicast_table = v;
        }
        if let Some(v) = a.unicast_table {
            f.unicast_table = v;
        }
        if let Some(mut v) = a.vlan_table {
            v.sort_unstable();
            v.dedup();
            f.vlan = api::RxState::Normal;
            f.vlan_table = v;
        }
        if let Some(v) = a.main_mac {
            f.main_mac = v.to_ascii_lowercase();
        }
    });
    Ok(())
}

// ---------------------------------------------------------------------------
// Back ends

/// An option as text: strings as they are, numbers and booleans spelled
/// out (the older `netdev_add` takes every option as a string).
fn opt(args: &Args, k: &str) -> Option<String> {
    match args.get(k)? {
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        v => Some(v.to_string()),
    }
}

fn opt_bool(args: &Args, k: &str) -> Option<bool> {
    match args.get(k)? {
        Value::Bool(b) => Some(*b),
        Value::String(s) => match s.as_str() {
            "on" | "yes" | "true" | "y" => Some(true),
            "off" | "no" | "false" | "n" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

/// A list of `String` (`[{"str": …}]`), or one string.
fn opt_strings(args: &Args, k: &str) -> Vec<String> {
    match args.get(k) {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|v| match v {
                Value::String(s) => Some(s.clone()),
                v => v.get("str").and_then(Value::as_str).map(str::to_string),
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// A missing required option, in QEMU's words.
fn missing(k: &str) -> QmpError {
    generic(format!("Parameter '{k}' is missing"))
}

/// Take the client's named descriptor `name` (what QEMU's `monitor_fd_param`
/// does: a number is used as it is, a name is taken out of the table).
fn take_fd(
    m: &mut Machine,
    name: &str,
    cx: &mut Cx,
    held: &mut Vec<OwnedFd>,
) -> Result<(), QmpError> {
    let not_found = || generic(format!("File descriptor named '{name}' has not been found"));
    if name.parse::<i32>().is_ok() {
        return Err(generic(format!(
            "Passing descriptors by number is not implemented by this simulated machine ('{name}')"
        )));
    }
    let fd = crate::fdsets::take_named_fd(m, cx, name);
    held.push(fd.ok_or_else(not_found)?);
    Ok(())
}

/// `A.B.C.D` as QEMU's address parser reads it.
fn ipv4(s: &str) -> Option<u32> {
    s.parse::<Ipv4Addr>().ok().map(u32::from)
}

/// The `user` back end's network options.
fn check_user(args: &Args) -> Result<(), QmpError> {
    if opt_bool(args, "ipv4") == Some(false) && opt_bool(args, "ipv6") == Some(false) {
        return Err(generic("IPv4 and IPv6 disabled"));
    }
    let (mut net, mut mask) = (0x0a00_0200u32, 0xffff_ff00u32);
    if let Some(n) = opt(args, "net") {
        match n.split_once('/') {
            None => {
                let a = ipv4(&n).ok_or_else(|| generic("Failed to parse netmask"))?;
                mask = if a & 0x8000_0000 == 0 {
                    0xff00_0000
                } else if a & 0xfff0_0000 == 0xac10_0000 {
                    0xfff0_0000
                } else if a & 0xc000_0000 == 0x8000_0000 {
                    0xffff_0000
                } else if a & 0xffff_0000 == 0xc0a8_0000 {
                    0xffff_0000
                } else if a & 0xffff_0000 == 0xc612_0000 {
                    0xfffe_0000
                } else if a & 0xe000_0000 == 0xe000_0000 {
                    0xffff_ff00
                } else {
                    0xffff_fff0
                };
                net = a;
            }
            Some((a, m)) => {
                net = ipv4(a).ok_or_else(|| generic("Failed to parse netmask"))?;
                mask = match m.parse::<i64>() {
                    Ok(shift) if (4..=32).contains(&shift) => {
                        (0xffff_ffffu64 << (32 - shift)) as u32
                    }
                    Ok(_) => {
                        return Err(generic("Invalid netmask provided (must be in range 4-32)"))
                    }
                    Err(_) => {
                        ipv4(m).ok_or_else(|| generic(format!("Failed to parse netmask '{m}'")))?
                    }
                };
            }
        }
        net &= mask;
    }
    let within = |k: &str, what: &str| -> Result<(), QmpError> {
        if let Some(v) = opt(args, k) {
            let a = ipv4(&v).ok_or_else(|| generic(format!("Failed to parse {what}")))?;
            if a & mask != net {
                return Err(generic(format!("{what} doesn't belong to network")));
            }
        }
        Ok(())
    };
    within("host", "Host")?;
    within("dhcpstart", "DHCP")?;
    within("dns", "DNS")?;
    if let Some(p) = opt(args, "ipv6-prefix") {
        if p.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(generic("Failed to parse IPv6 prefix"));
        }
    }
    if let Some(l) = args.get("ipv6-prefixlen") {
        let v = l
            .as_i64()
            .or_else(|| l.as_str().and_then(|s| s.parse().ok()))
            .unwrap_or(-1);
        if !(0..=126).contains(&v) {
            return Err(generic(
                "Invalid IPv6 prefix provided (IPv6 prefix length must be between 0 and 126)",
            ));
        }
    }
    if opt(args, "smb").is_some() && !std::path::Path::new("/usr/sbin/smbd").exists() {
        return Err(generic(
            "Could not find '/usr/sbin/smbd', please install it",
        ));
    }
    for rule in opt_strings(args, "hostfwd") {
        if let Err(why) = hostfwd(&rule) {
            return Err(generic(format!(
                "Invalid host forwarding rule '{rule}' ({why})"
            )));
        }
    }
    for rule in opt_strings(args, "guestfwd") {
        let port = guestfwd(&rule)
            .ok_or_else(|| generic(format!("Invalid guest forwarding rule '{rule}'")))?;
        // The rule's device is a chardev QEMU opens; the machine makes none.
        return Err(generic(format!(
            "Could not open guest forwarding device 'guestfwd.tcp.{port}'"
        )));
    }
    Ok(())
}

/// `[tcp|udp]:[HOSTADDR]:HOSTPORT-[GUESTADDR]:GUESTPORT`.
fn hostfwd(rule: &str) -> Result<(), &'static str> {
    let (proto, rest) = rule.split_once(':').ok_or("No : separators")?;
    if !matches!(proto, "" | "tcp" | "udp") {
        return Err("Bad protocol name");
    }
    let (haddr, rest) = rest.split_once(':').ok_or("No : separators")?;
    if !haddr.is_empty() && ipv4(haddr).is_none() {
        return Err("Bad host address");
    }
    let (hport, rest) = rest.split_once('-').ok_or("Bad host port separator")?;
    if hport.parse::<u16>().is_err() {
        return Err("Bad host port");
    }
    let (gaddr, gport) = rest.split_once(':').ok_or("Missing guest address")?;
    if !gaddr.is_empty() && ipv4(gaddr).is_none() {
        return Err("Bad guest address");
    }
    if gport.parse::<u16>().is_err() {
        return Err("Bad guest port");
    }
    Ok(())
}

/// `[tcp]:SERVER:PORT-DEV`: the port, when the rule reads.
fn guestfwd(rule: &str) -> Option<u16> {
    let rest = rule
        .strip_prefix("tcp:")
        .or_else(|| rule.strip_prefix(':'))?;
    let (server, rest) = rest.split_once(':')?;
    let (port, dev) = rest.split_once('-')?;
    if dev.is_empty() || (!server.is_empty() && ipv4(server).is_none()) {
        return None;
    }
    port.parse().ok()
}

/// `HOST:PORT` of a `socket` back end.
fn check_host_port(s: &str) -> Result<(), QmpError> {
    let Some((host, port)) = s.rsplit_once(':') else {
        return Err(generic(format!(
            "host address '{s}' doesn't contain ':' separating host from port"
        )));
    };
    let h = if host.is_empty() { "0.0.0.0" } else { host };
    let ok = port.parse::<u16>().is_ok()
        && std::net::ToSocketAddrs::to_socket_addrs(&(h, 0))
            .map(|mut i| i.next().is_some())
            .unwrap_or(false);
    if !ok {
        return Err(generic(format!("can't resolve host address '{host}'")));
    }
    Ok(())
}

fn check_socket(
    m: &mut Machine,
    args: &Args,
    cx: &mut Cx,
    held: &mut Vec<OwnedFd>,
) -> Result<(), QmpError> {
    let modes = ["listen", "connect", "mcast", "udp"];
    let given = modes.iter().filter(|k| opt(args, k).is_some()).count();
    if let Some(fd) = opt(args, "fd") {
        if given > 0 {
            return Err(generic(
                "exactly one of listen=, connect=, mcast= or udp= is required",
            ));
        }
        return take_fd(m, &fd, cx, held);
    }
    if given != 1 {
        return Err(generic(
            "exactly one of listen=, connect=, mcast= or udp= is required",
        ));
    }
    let local = opt(args, "localaddr");
    if local.is_some() && opt(args, "mcast").is_none() && opt(args, "udp").is_none() {
        return Err(generic("localaddr= is only valid with mcast= or udp="));
    }
    if let Some(u) = opt(args, "udp") {
        if local.is_none() {
            return Err(generic("localaddr= is mandatory with udp="));
        }
        return check_host_port(&u);
    }
    if let Some(mc) = opt(args, "mcast") {
        check_host_port(&mc)?;
        let host = mc.rsplit_once(':').map(|p| p.0).unwrap_or("");
        let a = ipv4(host).unwrap_or(0);
        if !Ipv4Addr::from(a).is_multicast() {
            return Err(generic(format!(
                "specified mcastaddr {} (0x{a:08x}) does not contain a multicast address",
                Ipv4Addr::from(a)
            )));
        }
        return Ok(());
    }
    let addr = opt(args, "listen")
        .or_else(|| opt(args, "connect"))
        .unwrap_or_default();
    check_host_port(&addr)
}

fn check_tap(
    m: &mut Machine,
    args: &Args,
    cx: &mut Cx,
    held: &mut Vec<OwnedFd>,
) -> Result<(), QmpError> {
    let has = |k: &str| args.get(k).is_some_and(|v| !v.is_null());
    let any = |ks: &[&str]| ks.iter().any(|k| has(k));
    if has("fd") {
        if any(&[
            "ifname",
            "script",
            "downscript",
            "vnet_hdr",
            "helper",
            "queues",
            "fds",
            "vhostfds",
        ]) {
            return Err(generic("ifname=, script=, downscript=, vnet_hdr=, helper=, queues=, fds=, and vhostfds= are invalid with fd="));
        }
        take_fd(m, &opt(args, "fd").unwrap_or_default(), cx, held)?;
    } else if has("fds") {
        if any(&[
            "ifname",
            "script",
            "downscript",
            "vnet_hdr",
            "helper",
            "queues",
            "vhostfd",
        ]) {
            return Err(generic("ifname=, script=, downscript=, vnet_hdr=, helper=, queues=, and vhostfd= are invalid with fds="));
        }
        let fds = opt(args, "fds").unwrap_or_default();
        let vhostfds = opt(args, "vhostfds");
        let n = fds.split(':').count();
        if let Some(v) = &vhostfds {
            if v.split(':').count() != n {
                return Err(generic(
                    "The number of fds passed does not match the number of vhostfds passed",
                ));
            }
        }
        for name in fds.split(':') {
            take_fd(m, name, cx, held)?;
        }
        for name in vhostfds.iter().flat_map(|v| v.split(':')) {
            take_fd(m, name, cx, held)?;
        }
        return Ok(());
    } else if has("helper") {
        if any(&[
            "ifname",
            "script",
            "downscript",
            "vnet_hdr",
            "queues",
            "vhostfds",
        ]) {
            return Err(generic("ifname=, script=, downscript=, vnet_hdr=, queues=, and vhostfds= are invalid with helper="));
        }
    }
    if let Some(v) = opt(args, "vhostfd") {
        take_fd(m, &v, cx, held)?;
    }
    Ok(())
}

/// The options of back end type `kind`, in QEMU's words; descriptors the
/// options name are taken into `held`.
fn check_options(
    m: &mut Machine,
    kind: &str,
    args: &Args,
    cx: &mut Cx,
    held: &mut Vec<OwnedFd>,
) -> Result<(), QmpError> {
    match kind {
        "user" => check_user(args),
        "tap" => check_tap(m, args, cx, held),
        "socket" => check_socket(m, args, cx, held),
        "l2tpv3" => {
            let src = opt(args, "src").ok_or_else(|| missing("src"))?;
            let dst = opt(args, "dst").ok_or_else(|| missing("dst"))?;
            if opt(args, "txsession").is_none() {
                return Err(missing("txsession"));
            }
            let resolves = |h: &str| {
                std::net::ToSocketAddrs::to_socket_addrs(&(h, 0))
                    .map(|mut i| i.next().is_some())
                    .unwrap_or(false)
            };
            if !resolves(&src) {
                return Err(generic(
                    "could not resolve src, errno = Name or service not known",
                ));
            }
            if !resolves(&dst) {
                return Err(generic(
                    "could not resolve dst, error = Name or service not known",
                ));
            }
            Ok(())
        }
        "hubport" => {
            if opt(args, "hubid").is_none() {
                return Err(missing("hubid"));
            }
            match opt(args, "netdev") {
                Some(nd) if !exists(m, &nd) => Err(generic(format!("netdev '{nd}' not found"))),
                _ => Ok(()),
            }
        }
        "bridge" => Err(generic("bridge helper failed")),
        "vde" => Err(generic("Could not open vde: No such file or directory")),
        "netmap" | "af-xdp" => Err(generic(format!(
            "network backend '{kind}' is not compiled into this binary"
        ))),
        "vhost-user" => {
            let c = opt(args, "chardev").ok_or_else(|| missing("chardev"))?;
            match m.chardev.added.get(&c) {
                Some(crate::chardev::backend::Backend::Socket(_)) => Err(generic(
                    "vhost-user back ends are not implemented by this simulated machine",
                )),
                _ if crate::chardev::exists(m, &c) => {
                    Err(generic(format!("chardev \"{c}\" is not reconnectable")))
                }
                _ => Err(generic(format!("chardev \"{c}\" not found"))),
            }
        }
        "stream" => {
            if args.get("addr").is_none() {
                return Err(missing("addr"));
            }
            Err(generic(
                "stream back ends are not implemented by this simulated machine",
            ))
        }
        "dgram" => {
            if args.get("local").is_none() {
                return Err(generic("dgram requires local= parameter"));
            }
            Err(generic(
                "dgram back ends are not implemented by this simulated machine",
            ))
        }
        "vhost-vdpa" => {
            if opt(args, "vhostdev").is_none() && opt(args, "vhostfd").is_none() {
                return Err(generic(
                    "vhost-vdpa: neither vhostdev= nor vhostfd= was specified",
                ));
            }
            Err(generic(
                "vhost-vdpa back ends are not implemented by this simulated machine",
            ))
        }
        _ => Ok(()),
    }
}

/// `netdev_add`: the checks in QEMU's order (id syntax; then, from 5.2 on,
/// the back end type before the id's uniqueness; then the type's options).
pub fn netdev_add(m: &mut Machine, args: &Args, cx: &mut Cx) -> Result<(), QmpError> {
    let Some(kind) = opt(args, "type") else {
        return Err(missing("type"));
    };
    let Some(id) = opt(args, "id") else {
        return Err(missing("id"));
    };
    if !crate::qom::props::id_wellformed(&id) {
        return Err(generic("Parameter 'id' expects an identifier"));
    }
    let qapi = m.compat().netdev_add_qapi;
    if qapi {
        if matches!(kind.as_str(), "nic" | "none") {
            return Err(generic(format!(
                "network backend '{kind}' is not compiled into this binary"
            )));
        }
        m.config.check_netdev_type(&kind).map_err(generic)?;
        if exists(m, &id) {
            return Err(generic(format!("Duplicate ID '{id}'")));
        }
    } else {
        if exists(m, &id) {
            return Err(generic(format!("Duplicate ID '{id}' for netdev")));
        }
        m.config.check_netdev_type(&kind).map_err(generic)?;
    }
    let mut held = Vec::new();
    check_options(m, &kind, args, cx, &mut held)?;
    let props = args
        .iter()
        .filter(|(k, _)| k.as_str() != "type" && k.as_str() != "id")
        .map(|(k, v)| {
            let text = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (k.clone(), text)
        })
        .collect();
    if !held.is_empty() {
        m.net.held.insert(id.clone(), held);
    }
    m.net.added.push(NetdevConfig { id, kind, props });
    Ok(())
}

/// `netdev_del`: the back end goes, with the descriptors it held.
pub fn netdev_del(m: &mut Machine, id: &str) -> Result<(), QmpError> {
    if !exists(m, id) {
        return Err(QmpError::new(
            ErrorClass::DeviceNotFound,
            format!("Device '{id}' not found"),
        ));
    }
    if let Some(i) = m.net.added.iter().position(|n| n.id == id) {
        m.net.added.remove(i);
    } else {
        m.net.removed.push(id.to_string());
    }
    m.net.held.remove(id);
    m.net.backend_down.retain(|b| b != id);
    Ok(())
}
