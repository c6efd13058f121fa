//! Network back ends: the configured `-netdev`s plus those added at run
//! time (`netdev_add`/`netdev_del`), so that devices can be checked
//! against the back ends that exist.

use qmpkit_wire::{ErrorClass, QmpError};
use serde_json::Value;

use crate::config::NetdevConfig;
use crate::{arg_str, Args, CmdResult, Cx, Machine};

pub const HANDLED: &[&str] = &[
    "netdev_add",
    "netdev_del",
    "query-rocker",
    "query-rocker-of-dpa-flows",
    "query-rocker-of-dpa-groups",
    "query-rocker-ports",
];

/// Back ends changed at run time.
#[derive(Debug, Clone, Default)]
pub struct NetState {
    /// Added with `netdev_add`.
    pub added: Vec<NetdevConfig>,
    /// Configured ones removed with `netdev_del`.
    pub removed: Vec<String>,
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

fn netdev_add(m: &mut Machine, args: &Args) -> CmdResult {
    let Some(kind) = arg_str(args, "type") else {
        return Err(QmpError::generic("Parameter 'type' is missing"));
    };
    let Some(id) = arg_str(args, "id") else {
        return Err(QmpError::generic("Parameter 'id' is missing"));
    };
    // The options first (id syntax, uniqueness), then the back end type.
    if !crate::qom::props::id_wellformed(id) {
        return Err(QmpError::generic("Parameter 'id' expects an identifier"));
    }
    if exists(m, id) {
        return Err(QmpError::generic(format!("Duplicate ID '{id}' for netdev")));
    }
    m.config
        .check_netdev_type(kind)
        .map_err(QmpError::generic)?;
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
    m.net.added.push(NetdevConfig {
        id: id.to_string(),
        kind: kind.to_string(),
        props,
    });
    crate::empty()
}

fn netdev_del(m: &mut Machine, args: &Args) -> CmdResult {
    let id = arg_str(args, "id").unwrap_or("");
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
    crate::empty()
}

/// Dispatch.
pub fn execute(m: &mut Machine, cmd: &str, args: &Args, _cx: &mut Cx) -> Option<CmdResult> {
    Some(match cmd {
        "netdev_add" => netdev_add(m, args),
        "netdev_del" => netdev_del(m, args),
        // The machine models no rocker switch.
        "query-rocker"
        | "query-rocker-ports"
        | "query-rocker-of-dpa-flows"
        | "query-rocker-of-dpa-groups" => Err(crate::generic(format!(
            "rocker {} not found",
            crate::arg_str(args, "name").unwrap_or("")
        ))),
        _ => return None,
    })
}
