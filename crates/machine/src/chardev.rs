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
//! [`text`]), files on the host (also through `/dev/fdset/N`), host
//! pseudo-terminals, sockets that listen or connect (plain, telnet, TN3270, or TLS with a
//! `tls-creds-x509` object's certificates), the null device.
//! Other back ends answer that they are not implemented. `chardev-change`
//! swaps a back end under a front end that allows it.
//!
//! The guest side: `__org.qmpkit_chardev-write` sends the guest's output
//! through a front end, `__org.qmpkit_chardev-read` takes what its back end
//! received, and `__org.qmpkit_guest-serial-port` makes the guest open or
//! close a virtio serial port (`VSERPORT_CHANGE`; the port's chardev reports
//! its front end open while the guest has it open).

use std::collections::{BTreeMap, BTreeSet};
use std::os::fd::OwnedFd;

use qmpkit_wire::{ErrorClass, QmpError};

use crate::api;
use crate::config::parse_keyval;
use crate::qom::{NodeId, Tree};
use crate::{generic, Cx, Machine};

pub mod backend;
pub mod text;
pub mod tls;

use backend::{Backend, Ringbuf, SockAddr};

/// The back ends that hold data, by id: ring buffers of the configuration
/// (`-chardev ringbuf,id=…,size=…`) and everything added at run time
/// (their QOM nodes are under `/chardevs` like the configured ones).
#[derive(Debug, Default)]
pub struct ChardevState {
    pub added: BTreeMap<String, Backend>,
    /// Chardevs whose virtio serial port the guest has open.
    pub guest_open: BTreeSet<String>,
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
        ChardevState {
            added,
            guest_open: BTreeSet::new(),
        }
    }
}

impl ChardevState {
    /// A virtio serial port goes away: the guest no longer has its chardev
    /// open.
    pub fn on_unplug(&mut self, info: &crate::devices::PlugInfo) {
        if !crate::qom::types::is_a(info.ty, "virtio-serial-port") {
            return;
        }
        for (k, v) in &info.props {
            if k == "chardev" {
                if let Some(c) = v.as_str() {
                    self.guest_open.remove(c);
                }
            }
        }
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

/// The devices whose `chardev` property names `label`.
fn users(m: &Machine, label: &str) -> Vec<NodeId> {
    let tree = &m.qom.tree;
    crate::devices::all_devices(tree)
        .into_iter()
        .filter(|&n| tree.val(n, "chardev").and_then(|v| v.as_str()) == Some(label))
        .collect()
}

/// Whether a monitor (`-mon chardev=…`) uses chardev `label`.
fn monitor_uses(m: &Machine, label: &str) -> bool {
    label.starts_with("compat_monitor")
        || m.config.mon.iter().any(|s| {
            parse_keyval(s, Some("chardev"))
                .get("chardev")
                .map(String::as_str)
                == Some(label)
        })
}

/// Whether some front end uses chardev `label` (a serial port, a monitor,
/// a device's `chardev` property).
fn has_frontend(m: &Machine, label: &str) -> bool {
    label.starts_with("serial")
        || monitor_uses(m, label)
        || !users(m, label).is_empty()
        || m.config
            .devices
            .iter()
            .any(|d| d.props.get("chardev").map(String::as_str) == Some(label))
}

/// Whether a device node is a virtio serial port.
fn is_serial_port(m: &Machine, n: NodeId) -> bool {
    crate::qom::types::is_a(m.qom.tree.node(n).ty, "virtio-serial-port")
}

/// `frontend-open`: serial ports and monitors open their chardev at once;
/// a virtio serial port's is open while the guest has the port open.
fn frontend_open(m: &Machine, label: &str) -> bool {
    let ports: Vec<NodeId> = users(m, label)
        .into_iter()
        .filter(|&n| is_serial_port(m, n))
        .collect();
    if !ports.is_empty() {
        return m.chardev.guest_open.contains(label);
    }
    has_frontend(m, label)
}

/// A listening socket's flag as `query-chardev` spells it (QEMU 6.0 says
/// `server=on`).
fn server_flag(m: &Machine) -> &'static str {
    if m.compat().options_6_0 {
        ",server=on"
    } else {
        ",server"
    }
}

/// `query-chardev`. Sockets are brought up to date first (a client that
/// connected to a listening socket is taken then).
pub fn query_chardev(m: &mut Machine) -> Vec<api::ChardevInfo> {
    for b in m.chardev.added.values_mut() {
        b.poll();
    }
    let m = &*m;
    let tree = &m.qom.tree;
    let Some(c) = tree.child(Tree::ROOT, "chardevs") else {
        return Vec::new();
    };
    let mut ptys = 0usize;
    let suffix = server_flag(m);
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
            b.filename(suffix)
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
        let frontend_open = frontend_open(m, &label);
        out.push(api::ChardevInfo {
            label,
            filename,
            frontend_open,
        });
    }
    out
}

/// The QOM node of chardev `id`.
fn node(m: &Machine, id: &str) -> Option<NodeId> {
    let tree = &m.qom.tree;
    tree.child(Tree::ROOT, "chardevs")
        .and_then(|c| tree.child(c, id))
}

/// Whether chardev `id` exists.
pub fn exists(m: &Machine, id: &str) -> bool {
    node(m, id).is_some()
}

/// The QOM node of chardev `id`, or QEMU's error for a missing one.
fn find(m: &Machine, id: &str) -> Result<NodeId, QmpError> {
    node(m, id).ok_or_else(|| generic(format!("Chardev '{id}' not found")))
}

/// `chardev-remove`: a back end no front end uses goes away, and with it
/// what it holds on the host (file, terminal, socket and its path).
pub fn remove(m: &mut Machine, id: &str) -> Result<(), QmpError> {
    let node = find(m, id)?;
    if has_frontend(m, id) {
        return Err(generic(format!("Chardev '{id}' is busy")));
    }
    m.qom.tree.remove(node);
    m.chardev.added.remove(id);
    m.chardev.guest_open.remove(id);
    Ok(())
}

/// `add_client` with a character device's id: a listening socket back end without a
/// peer takes `fd` as its peer; any other back end refuses, in QEMU's words.
pub fn add_client(m: &mut Machine, id: &str, fd: std::os::fd::OwnedFd) -> Result<(), QmpError> {
    let added = match m.chardev.added.get_mut(id) {
        Some(Backend::Socket(s)) if s.server => s.add_client(fd),
        _ => false,
    };
    if added {
        Ok(())
    } else {
        Err(generic("failed to add client"))
    }
}

/// `chardev-send-break`: the break goes to the back end; none of the
/// machine's back ends carries line state that a break changes (as in
/// QEMU for all but serial host devices).
pub fn send_break(m: &mut Machine, id: &str) -> Result<(), QmpError> {
    find(m, id)?;
    if let Some(b) = m.chardev.added.get_mut(id) {
        b.poll();
    }
    Ok(())
}

/// The name of a back end type, as the union spells it.
fn backend_type(b: &api::ChardevBackend) -> String {
    use api::ChardevBackend as B;
    match b {
        B::File(_) => "file",
        B::Serial(_) => "serial",
        B::Parallel(_) => "parallel",
        B::Pipe(_) => "pipe",
        B::Socket(_) => "socket",
        B::Udp(_) => "udp",
        B::Pty(_) => "pty",
        B::Null(_) => "null",
        B::Mux(_) => "mux",
        B::Msmouse(_) => "msmouse",
        B::Wctablet(_) => "wctablet",
        B::Braille(_) => "braille",
        B::Testdev(_) => "testdev",
        B::Stdio(_) => "stdio",
        B::Console(_) => "console",
        B::Spicevmc(_) => "spicevmc",
        B::Spiceport(_) => "spiceport",
        B::Vc(_) => "vc",
        B::Ringbuf(_) => "ringbuf",
        B::Memory(_) => "memory",
        B::Unknown(v) => {
            return v
                .get("type")
                .and_then(|t| t.as_str())
                .unwrap_or("")
                .to_string()
        }
    }
    .to_string()
}

/// Make the back end `b` for chardev `id` (for `chardev-add` and
/// `chardev-change`). Errors are QEMU's, without the `Failed to add
/// chardev` prefix.
fn make(m: &mut Machine, b: &api::ChardevBackend, cx: &mut Cx) -> Result<Backend, String> {
    use api::ChardevBackend as B;
    Ok(match b {
        B::Null(_) => Backend::Null,
        B::Ringbuf(r) | B::Memory(r) => {
            let size = r.size.unwrap_or(backend::DEFAULT_RINGBUF_SIZE);
            // Zero passes QEMU's check too (a ring that keeps nothing).
            if size < 0 || size & size.wrapping_sub(1) != 0 {
                return Err("size of ringbuf chardev must be power of two".into());
            }
            Backend::Ringbuf(Ringbuf::new(size as u64), matches!(b, B::Memory(_)))
        }
        B::File(f) => {
            // `out` first (created, truncated unless appending), then `in`.
            let append = f.append.unwrap_or(false);
            let opts = crate::fdsets::OpenOptions {
                append,
                truncate: !append,
                ..crate::fdsets::OpenOptions::write_create()
            };
            let out = crate::fdsets::open(m, &f.out, opts)
                .map_err(|e| format!("Could not open '{}': {}", f.out, backend::os_text(&e)))?;
            let input = f.r#in.as_deref().map(backend::open_input).transpose()?;
            Backend::File { out, _input: input }
        }
        B::Pty(_) => backend::open_pty()?,
        B::Socket(s) => {
            let server = s.server.unwrap_or(true);
            // The credentials first, then whether the address can carry TLS, as QEMU checks.
            let tls = s
                .tls_creds
                .as_deref()
                .map(|id| tls::creds(m, id, server))
                .transpose()?;
            if tls.is_some() && matches!(s.addr, api::SocketAddressLegacy::Unix(_)) {
                return Err("'tls_creds' option is incompatible with 'unix' address type".into());
            }
            let reconnect = s.reconnect.unwrap_or(0) > 0;
            if server && reconnect {
                return Err(
                    "'reconnect' option is incompatible with socket in server listen mode".into(),
                );
            }
            if !server && s.wait.is_some() {
                return Err(
                    "'wait' option is incompatible with socket in client connect mode".into(),
                );
            }
            let addr = match &s.addr {
                api::SocketAddressLegacy::Unix(u) => SockAddr::Unix(u.path.clone()),
                api::SocketAddressLegacy::Inet(i) => SockAddr::Inet(i.host.clone(), i.port.clone()),
                api::SocketAddressLegacy::Fd(f) => {
                    let fd = take_named_fd(m, &f.str, cx)?;
                    return backend::socket_from_fd(fd, server);
                }
                api::SocketAddressLegacy::Vsock(_) | api::SocketAddressLegacy::Unknown(_) => {
                    return Err(
                        "This kind of socket is not implemented by this simulated machine".into(),
                    )
                }
            };
            backend::open_socket(
                addr,
                server,
                reconnect,
                s.telnet == Some(true),
                s.tn3270 == Some(true),
                tls,
            )?
        }
        other => {
            return Err(format!(
                "Chardev backend '{}' is not implemented by this simulated machine",
                backend_type(other)
            ))
        }
    })
}

/// A descriptor the client passed with `getfd`, taken out of its table as
/// QEMU takes it.
fn take_named_fd(m: &mut Machine, name: &str, cx: &mut Cx) -> Result<OwnedFd, String> {
    crate::fdsets::take_named_fd(m, cx, name)
        .ok_or_else(|| format!("File descriptor named '{name}' has not been found"))
}

/// `{"pty": PATH}` for a pty back end.
fn reply_of(b: &Backend) -> api::ChardevReturn {
    api::ChardevReturn {
        pty: match b {
            Backend::Pty(p) => Some(p.path.clone()),
            _ => None,
        },
    }
}

/// Whether the back end `b` is one the machine did not make (a front end
/// of the machine's own, like `vc`): ids are checked before types.
fn unimplemented_type(b: &api::ChardevBackend) -> bool {
    use api::ChardevBackend as B;
    !matches!(
        b,
        B::Null(_) | B::Ringbuf(_) | B::Memory(_) | B::File(_) | B::Pty(_) | B::Socket(_)
    )
}

/// `chardev-add`.
pub fn add(
    m: &mut Machine,
    id: &str,
    b: &api::ChardevBackend,
    cx: &mut Cx,
) -> Result<api::ChardevReturn, QmpError> {
    crate::catalog::look_up(m, &format!("chardev-{}", backend_type(b)));
    let Some(chardevs) = m.qom.tree.child(Tree::ROOT, "chardevs") else {
        return Err(crate::not_implemented("chardev-add"));
    };
    if m.qom.tree.child(chardevs, id).is_some() || m.chardev.added.contains_key(id) {
        return Err(generic(format!("Chardev with id '{id}' already exists")));
    }
    let made = match make(m, b, cx) {
        Ok(made) => made,
        Err(e) if unimplemented_type(b) => return Err(generic(e)),
        Err(e) => return Err(generic(format!("Failed to add chardev '{id}': {e}"))),
    };
    let ty = backend_type(b);
    let qom_type = crate::qom::types::find(&format!("chardev-{ty}"))
        .map(|t| t.name)
        .unwrap_or("chardev-null");
    m.qom.tree.add(chardevs, id, qom_type);
    let reply = reply_of(&made);
    m.chardev.added.insert(id.to_string(), made);
    Ok(reply)
}

/// Whether the front ends of chardev `id` take a new back end: serial
/// ports do; monitors and other devices do not; no front end at all is
/// fine.
fn hotswap_ok(m: &Machine, id: &str) -> bool {
    if monitor_uses(m, id) {
        return false;
    }
    let tree = &m.qom.tree;
    users(m, id).into_iter().all(|n| {
        let ty = tree.node(n).ty;
        crate::qom::types::is_a(ty, "isa-serial") || crate::qom::types::is_a(ty, "pci-serial")
    })
}

/// `chardev-change`: a new back end under the same id and front ends.
/// The old one is released only once the new one exists.
pub fn change(
    m: &mut Machine,
    id: &str,
    b: &api::ChardevBackend,
    cx: &mut Cx,
) -> Result<api::ChardevReturn, QmpError> {
    let Some(n) = node(m, id) else {
        return Err(generic(format!("Chardev '{id}' does not exist")));
    };
    if !hotswap_ok(m, id) {
        return Err(generic("Chardev user does not support chardev hotswap"));
    }
    let made = make(m, b, cx).map_err(generic)?;
    let ty = backend_type(b);
    if let Some(t) = crate::qom::types::find(&format!("chardev-{ty}")) {
        m.qom.tree.nodes[n as usize].ty = t.name;
    }
    let reply = reply_of(&made);
    m.chardev.added.insert(id.to_string(), made);
    Ok(reply)
}

/// The ring buffer `device`, or QEMU's errors for a missing device and
/// for one that is not a ring buffer.
fn ringbuf<'a>(m: &'a mut Machine, device: &str) -> Result<&'a mut Ringbuf, QmpError> {
    let exists = node(m, device).is_some();
    match m.chardev.added.get_mut(device) {
        Some(Backend::Ringbuf(r, _)) => Ok(r),
        _ if exists => Err(generic(format!("{device} is not a ringbuf device"))),
        _ => Err(generic(format!("Device '{device}' not found"))),
    }
}

/// `ringbuf-write`: append `data` (utf8 or base64).
pub fn ringbuf_write(
    m: &mut Machine,
    device: &str,
    data: &str,
    base64: bool,
) -> Result<(), QmpError> {
    let r = ringbuf(m, device)?;
    let bytes = if base64 {
        text::base64_decode(data).map_err(generic)?
    } else {
        text::utf8_bytes(data)
    };
    r.write(&bytes);
    Ok(())
}

/// `ringbuf-read`: take up to `size` bytes out (utf8 or base64).
pub fn ringbuf_read(
    m: &mut Machine,
    device: &str,
    size: i64,
    base64: bool,
) -> Result<String, QmpError> {
    let r = ringbuf(m, device)?;
    if size <= 0 {
        return Err(generic("size must be greater than zero"));
    }
    let bytes = r.read(size as u64);
    Ok(if base64 {
        text::base64_encode(&bytes)
    } else {
        text::bytes_to_text(&bytes)
    })
}

/// The guest's output through the front end of chardev `id` reaches its
/// back end for real.
pub fn guest_write(m: &mut Machine, id: &str, data: &[u8]) -> Result<(), QmpError> {
    find(m, id)?;
    match m.chardev.added.get_mut(id) {
        Some(b) => b
            .write(data)
            .map_err(|e| generic(format!("Chardev '{id}': {e}"))),
        None => Err(generic(format!(
            "Output to chardev '{id}' is not implemented by this simulated machine"
        ))),
    }
}

/// What the back end of chardev `id` received for the guest, up to `max`
/// bytes (nothing waits in back ends that receive nothing).
pub fn guest_read(m: &mut Machine, id: &str, max: usize) -> Result<Vec<u8>, QmpError> {
    find(m, id)?;
    match m.chardev.added.get_mut(id) {
        Some(b) => Ok(b.read_input(max)),
        None => Err(generic(format!(
            "Input from chardev '{id}' is not implemented by this simulated machine"
        ))),
    }
}

/// The guest opens or closes virtio serial port `port` (a device id or
/// QOM path): `VSERPORT_CHANGE` for a port with an id, every time, as
/// QEMU sends it; a port that is not a console opens its chardev's front
/// end.
pub fn guest_port(m: &mut Machine, port: &str, open: bool) -> Result<(), QmpError> {
    let n = crate::devices::find_device(m, port)
        .or_else(|| m.qom.tree.resolve(port).ok())
        .ok_or_else(|| {
            QmpError::new(
                ErrorClass::DeviceNotFound,
                format!("Device '{port}' not found"),
            )
        })?;
    if !is_serial_port(m, n) {
        return Err(generic(format!(
            "Device '{port}' is not a virtio serial port"
        )));
    }
    let tree = &m.qom.tree;
    let console = crate::qom::types::is_a(tree.node(n).ty, "virtconsole");
    let chardev = tree
        .val(n, "chardev")
        .and_then(|v| v.as_str())
        .map(str::to_string);
    let id = crate::devices::device_id(tree, n);
    if let (Some(c), false) = (chardev, console) {
        if open {
            m.chardev.guest_open.insert(c);
        } else {
            m.chardev.guest_open.remove(&c);
        }
    }
    if let Some(id) = id {
        m.emit_event(api::VserportChange { id, open });
    }
    Ok(())
}

/// `query-chardev-backends`: the branches of the backend union that the
/// served schema's `chardev-add` takes (found through the command, so that
/// an interface loaded from introspection, whose type names are masked,
/// answers too), less `console`, which exists on Windows hosts only.
pub fn backends(m: &Machine) -> Vec<api::ChardevBackendInfo> {
    if let Some(names) = crate::catalog::chardev_backends(m) {
        return names
            .into_iter()
            .map(|name| api::ChardevBackendInfo { name })
            .collect();
    }
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
    union
        .and_then(|u| u.branches.as_ref())
        .map(|b| {
            b.variants
                .iter()
                .filter(|v| v.name != "console")
                .map(|v| api::ChardevBackendInfo {
                    name: v.name.to_string(),
                })
                .collect()
        })
        .unwrap_or_default()
}
