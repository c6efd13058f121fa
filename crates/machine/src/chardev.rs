//! Character devices as the monitor reports them (`query-chardev`).
//!
//! The chardevs are the children of `/chardevs` in the QOM tree (serial
//! backends `serialN`, `-qmp` monitors `compat_monitorN`, `-chardev`
//! backends by id); their file names are derived from the options that
//! made them, in QEMU's spelling (`vc`, `pty:/dev/pts/N`,
//! `unix:PATH,server`, …). HMP's `info chardev` reads the same list.
//!
//! `chardev-add` makes back ends that really exist ([`backend`]): ring
//! buffers (`ringbuf-write`/`ringbuf-read`, with the encodings of
//! [`text`]), files on the host, host pseudo-terminals, the null device.
//! Other back ends answer that they are not implemented.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::config::parse_keyval;
use crate::qom::Tree;
use crate::{Args, CmdResult, Cx, Machine};

pub mod backend;
pub mod text;

use backend::{Backend, Ringbuf};

pub const HANDLED: &[&str] = &[
    "chardev-add",
    "chardev-remove",
    "chardev-send-break",
    "query-chardev",
    "query-chardev-backends",
    "ringbuf-read",
    "ringbuf-write",
    "__org.qmpkit_chardev-write",
];

/// The back ends that hold data, by id: ring buffers of the configuration
/// (`-chardev ringbuf,id=…,size=…`) and everything added at run time
/// (their QOM nodes are under `/chardevs` like the configured ones).
#[derive(Debug, Default)]
pub struct ChardevState {
    pub added: BTreeMap<String, Backend>,
}

impl ChardevState {
    /// The configured ring buffers, empty.
    pub fn new(config: &crate::MachineConfig) -> ChardevState {
        let mut added = BTreeMap::new();
        for spec in &config.chardevs {
            let kv = parse_keyval(spec, Some("backend"));
            let (Some(b), Some(id)) = (kv.get("backend"), kv.get("id")) else {
                continue;
            };
            if b != "ringbuf" && b != "memory" {
                continue;
            }
            let size = kv
                .get("size")
                .and_then(|s| s.parse::<u64>().ok())
                .filter(|s| s & s.wrapping_sub(1) == 0)
                .unwrap_or(backend::DEFAULT_RINGBUF_SIZE as u64);
            added.insert(
                id.clone(),
                Backend::Ringbuf(Ringbuf::new(size), b == "memory"),
            );
        }
        ChardevState { added }
    }
}

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
    let suffix = if m.compat().options_6_0 {
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
        let filename = if let Some(b) = m.chardev.added.get(&label) {
            b.filename()
        } else if let Some(s) = serial.or(monitor) {
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
    // Dropping the back end closes its file or terminal.
    m.chardev.added.remove(id);
    crate::empty()
}

/// `Failed to add chardev 'ID': WHY`, QEMU's error for a back end that
/// could not be made.
fn add_failed(id: &str, why: impl std::fmt::Display) -> qmpkit_wire::QmpError {
    crate::generic(format!("Failed to add chardev '{id}': {why}"))
}

/// `chardev-add`: `{"id": ID, "backend": {"type": T, "data": {...}}}`.
fn chardev_add(m: &mut Machine, args: &Args) -> CmdResult {
    let id = crate::arg_str(args, "id").unwrap_or("");
    let backend = args.get("backend");
    let ty = backend
        .and_then(|b| b.get("type"))
        .and_then(Value::as_str)
        .unwrap_or("");
    let empty = serde_json::Map::new();
    let data = backend
        .and_then(|b| b.get("data"))
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let Some(chardevs) = m.qom.tree.child(Tree::ROOT, "chardevs") else {
        return Err(crate::not_implemented("chardev-add"));
    };
    if m.qom.tree.child(chardevs, id).is_some() || m.chardev.added.contains_key(id) {
        return Err(crate::generic(format!(
            "Chardev with id '{id}' already exists"
        )));
    }
    let made = match ty {
        "null" => Backend::Null,
        "ringbuf" | "memory" => {
            let size = crate::arg_i64(data, "size").unwrap_or(backend::DEFAULT_RINGBUF_SIZE);
            // Zero passes QEMU's check too (a ring that keeps nothing).
            if size < 0 || size & size.wrapping_sub(1) != 0 {
                return Err(add_failed(
                    id,
                    "size of ringbuf chardev must be power of two",
                ));
            }
            Backend::Ringbuf(Ringbuf::new(size as u64), ty == "memory")
        }
        "file" => backend::open_file(
            crate::arg_str(data, "out").unwrap_or(""),
            crate::arg_str(data, "in"),
            crate::arg_bool(data, "append").unwrap_or(false),
        )
        .map_err(|e| add_failed(id, e))?,
        "pty" => backend::open_pty().map_err(|e| add_failed(id, e))?,
        other => {
            return Err(crate::generic(format!(
                "Chardev backend '{other}' is not implemented by this simulated machine"
            )))
        }
    };
    let qom_type = crate::qom::types::find(&format!("chardev-{ty}"))
        .map(|t| t.name)
        .unwrap_or("chardev-null");
    m.qom.tree.add(chardevs, id, qom_type);
    let reply = match &made {
        Backend::Pty(p) => json!({ "pty": p.path }),
        _ => json!({}),
    };
    m.chardev.added.insert(id.to_string(), made);
    Ok(reply)
}

/// `query-chardev-backends`: the branches of the backend union that the
/// served schema's `chardev-add` takes (found through the command, so that
/// an interface loaded from introspection, whose type names are masked,
/// answers too), less `console`, which exists on Windows hosts only.
fn query_chardev_backends(m: &Machine) -> Value {
    use qmpkit_schema::model::EntityKind;
    let schema = &m.schema;
    let object = |id| match &schema.entity(id).kind {
        EntityKind::Object(o) => Some(o),
        _ => None,
    };
    let union = schema
        .lookup("chardev-add")
        .and_then(|id| match &schema.entity(id).kind {
            EntityKind::Command(c) => c.arg_type,
            _ => None,
        })
        .and_then(object)
        .and_then(|args| {
            args.members
                .iter()
                .map(|&r| schema.member(r))
                .find(|mem| mem.name == "backend")
        })
        .and_then(|mem| object(mem.typ));
    let names: Vec<Value> = union
        .and_then(|u| u.branches.as_ref())
        .map(|b| {
            b.variants
                .iter()
                .filter(|v| v.name != "console")
                .map(|v| json!({ "name": v.name }))
                .collect()
        })
        .unwrap_or_default();
    Value::Array(names)
}

/// The ring buffer `device`, or QEMU's errors for a missing device and
/// for one that is not a ring buffer.
fn ringbuf<'a>(m: &'a mut Machine, device: &str) -> Result<&'a mut Ringbuf, qmpkit_wire::QmpError> {
    let exists = m
        .qom
        .tree
        .child(Tree::ROOT, "chardevs")
        .and_then(|c| m.qom.tree.child(c, device))
        .is_some();
    match m.chardev.added.get_mut(device) {
        Some(Backend::Ringbuf(r, _)) => Ok(r),
        _ if exists => Err(crate::generic(format!("{device} is not a ringbuf device"))),
        _ => Err(crate::generic(format!("Device '{device}' not found"))),
    }
}

fn is_base64(args: &Args) -> bool {
    crate::arg_str(args, "format") == Some("base64")
}

/// `ringbuf-write`: append `data` (utf8 or base64).
fn ringbuf_write(m: &mut Machine, args: &Args) -> CmdResult {
    let device = crate::arg_str(args, "device").unwrap_or("");
    let data = crate::arg_str(args, "data").unwrap_or("");
    let r = ringbuf(m, device)?;
    let bytes = if is_base64(args) {
        text::base64_decode(data).map_err(crate::generic)?
    } else {
        text::utf8_bytes(data)
    };
    r.write(&bytes);
    crate::empty()
}

/// `ringbuf-read`: take up to `size` bytes out (utf8 or base64).
fn ringbuf_read(m: &mut Machine, args: &Args) -> CmdResult {
    let device = crate::arg_str(args, "device").unwrap_or("");
    let size = crate::arg_i64(args, "size").unwrap_or(0);
    let r = ringbuf(m, device)?;
    if size <= 0 {
        return Err(crate::generic("size must be greater than zero"));
    }
    let bytes = r.read(size as u64);
    Ok(Value::String(if is_base64(args) {
        text::base64_encode(&bytes)
    } else {
        text::bytes_to_text(&bytes)
    }))
}

/// `__org.qmpkit_chardev-write`: the guest's output through the front end
/// of chardev `id` reaches its back end for real.
fn guest_write(m: &mut Machine, args: &Args) -> CmdResult {
    let id = crate::arg_str(args, "id").unwrap_or("");
    let data = crate::arg_str(args, "data").unwrap_or("");
    find(m, id)?;
    match m.chardev.added.get_mut(id) {
        Some(b) => b
            .write(data.as_bytes())
            .map_err(|e| crate::generic(format!("Chardev '{id}': {e}")))
            .and_then(|_| crate::empty()),
        None => Err(crate::generic(format!(
            "Output to chardev '{id}' is not implemented by this simulated machine"
        ))),
    }
}

/// Dispatch.
pub fn execute(m: &mut Machine, cmd: &str, args: &Args, _cx: &mut Cx) -> Option<CmdResult> {
    match cmd {
        "query-chardev" => Some(Ok(query_chardev(m))),
        "chardev-remove" => Some(chardev_remove(m, args)),
        "chardev-add" => Some(chardev_add(m, args)),
        "query-chardev-backends" => Some(Ok(query_chardev_backends(m))),
        "ringbuf-write" => Some(ringbuf_write(m, args)),
        "ringbuf-read" => Some(ringbuf_read(m, args)),
        "__org.qmpkit_chardev-write" => Some(guest_write(m, args)),
        // The break goes to the back end; the machine's back ends (null,
        // vc, pty, sockets, files) carry no line state to change, as in
        // QEMU for most of them.
        "chardev-send-break" => {
            Some(find(m, crate::arg_str(args, "id").unwrap_or("")).and_then(|_| crate::empty()))
        }
        _ => None,
    }
}
