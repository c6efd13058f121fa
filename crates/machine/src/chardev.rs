//! Character devices as the monitor reports them (`query-chardev`).
//!
//! The chardevs are the children of `/chardevs` in the QOM tree (serial
//! backends `serialN`, `-qmp` monitors `compat_monitorN`, `-chardev`
//! backends by id); their file names are derived from the options that
//! made them, in QEMU's spelling (`vc`, `pty:/dev/pts/N`,
//! `unix:PATH,server`, …). HMP's `info chardev` reads the same list.

use serde_json::{json, Value};

use crate::config::parse_keyval;
use crate::qom::Tree;
use crate::{Args, CmdResult, Cx, Machine};

pub const HANDLED: &[&str] = &["chardev-remove", "chardev-send-break", "query-chardev"];

/// The pty a backend gets: deterministic per machine and label order.
fn pty_name(n: usize) -> String {
    format!("pty:/dev/pts/{}", n + 2)
}

/// QEMU's file name of a legacy backend spec (`-serial`, `-qmp`):
/// `vc`, `pty`, `stdio`, `null`, `unix:PATH[,server…]`,
/// `tcp:HOST:PORT[,server…]`, `file:PATH`, ….
fn legacy_filename(spec: &str, ptys: &mut usize, suffix_on: &'static str) -> String {
    let mut parts = spec.split(',');
    let head = parts.next().unwrap_or("");
    let server = parts.any(|p| p == "server" || p == "server=on");
    let suffix = if server { suffix_on } else { "" };
    match head.split_once(':') {
        Some(("unix", path)) => format!("unix:{path}{suffix}"),
        Some(("tcp", addr)) => {
            let addr = if addr.starts_with(':') {
                format!("0.0.0.0{addr}")
            } else {
                addr.to_string()
            };
            format!("tcp:{addr}{suffix}")
        }
        _ if head == "pty" => {
            *ptys += 1;
            pty_name(*ptys - 1)
        }
        _ if head.is_empty() => "null".into(),
        _ => head.to_string(),
    }
}

/// QEMU's file name of a `-chardev backend,id=…,…` spec.
fn chardev_filename(spec: &str, ptys: &mut usize, suffix_on: &'static str) -> String {
    let kv = parse_keyval(spec, Some("backend"));
    let backend = kv.get("backend").map(String::as_str).unwrap_or("null");
    let server = if kv.get("server").map(String::as_str) == Some("on") {
        suffix_on
    } else {
        ""
    };
    match backend {
        "socket" => match (kv.get("path"), kv.get("port")) {
            (Some(p), _) => format!("unix:{p}{server}"),
            (None, Some(port)) => format!(
                "tcp:{}:{port}{server}",
                kv.get("host").map(String::as_str).unwrap_or("0.0.0.0")
            ),
            _ => "socket".into(),
        },
        "pty" => {
            *ptys += 1;
            pty_name(*ptys - 1)
        }
        "file" => match kv.get("path") {
            Some(p) => format!("file:{p}"),
            None => "file".into(),
        },
        other => other.to_string(),
    }
}

/// Whether some front end uses chardev `label` (a serial port, a monitor,
/// a device's `chardev` property).
fn frontend_open(m: &Machine, label: &str) -> bool {
    if label.starts_with("serial") || label.starts_with("compat_monitor") {
        return true;
    }
    let by_mon = m.config.mon.iter().any(|s| {
        parse_keyval(s, Some("chardev"))
            .get("chardev")
            .map(String::as_str)
            == Some(label)
    });
    let by_device = m
        .config
        .devices
        .iter()
        .any(|d| d.props.get("chardev").map(String::as_str) == Some(label));
    by_mon || by_device
}

/// `query-chardev` (richest shape; fitted to the served schema by the
/// dispatcher).
pub fn query_chardev(m: &Machine) -> Value {
    let tree = &m.qom.tree;
    let Some(c) = tree.child(Tree::ROOT, "chardevs") else {
        return json!([]);
    };
    let mut ptys = 0usize;
    // QEMU 6.0 spells a listening socket's flag `server=on`.
    let suffix = if m.version_at_least(6, 0) {
        ",server=on"
    } else {
        ",server"
    };
    let mut out = Vec::new();
    for &n in &tree.node(c).children {
        let label = tree.node(n).name.to_string();
        let serial = label
            .strip_prefix("serial")
            .and_then(|i| i.parse::<usize>().ok())
            .and_then(|i| m.config.serials.get(i));
        let monitor = label
            .strip_prefix("compat_monitor")
            .and_then(|i| i.parse::<usize>().ok())
            .and_then(|i| m.config.qmp.get(i));
        let filename = if let Some(s) = serial.or(monitor) {
            legacy_filename(s, &mut ptys, suffix)
        } else {
            match m
                .config
                .chardevs
                .iter()
                .find(|s| parse_keyval(s, Some("backend")).get("id") == Some(&label))
            {
                Some(spec) => chardev_filename(spec, &mut ptys, suffix),
                None => "null".into(),
            }
        };
        let open = frontend_open(m, &label);
        out.push(json!({"label": label, "filename": filename, "frontend-open": open}));
    }
    Value::Array(out)
}

/// The QOM node of chardev `id`, or QEMU's error for a missing one.
fn find(m: &Machine, id: &str) -> Result<crate::qom::NodeId, qmpkit_wire::QmpError> {
    let tree = &m.qom.tree;
    tree.child(Tree::ROOT, "chardevs")
        .and_then(|c| tree.child(c, id))
        .ok_or_else(|| crate::generic(format!("Chardev '{id}' not found")))
}

/// `chardev-remove`: a back end no front end uses goes away.
fn chardev_remove(m: &mut Machine, args: &Args) -> CmdResult {
    let id = crate::arg_str(args, "id").unwrap_or("");
    let node = find(m, id)?;
    if frontend_open(m, id) {
        return Err(crate::generic(format!("Chardev '{id}' is busy")));
    }
    m.qom.tree.remove(node);
    crate::empty()
}

/// Dispatch.
pub fn execute(m: &mut Machine, cmd: &str, args: &Args, _cx: &mut Cx) -> Option<CmdResult> {
    match cmd {
        "query-chardev" => Some(Ok(query_chardev(m))),
        "chardev-remove" => Some(chardev_remove(m, args)),
        // The break goes to the back end; the machine's back ends (null,
        // vc, pty, sockets, files) carry no line state to change, as in
        // QEMU for most of them.
        "chardev-send-break" => {
            Some(find(m, crate::arg_str(args, "id").unwrap_or("")).and_then(|_| crate::empty()))
        }
        _ => None,
    }
}
