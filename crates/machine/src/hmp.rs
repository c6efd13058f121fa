//! `human-monitor-command`: a subset of QEMU's human monitor, printing what
//! QEMU prints. Commands run through [`Machine::execute`] (so run-state
//! changes, events and injected failures behave as over QMP) and format
//! the result; errors print their description. Output lines end in CRLF,
//! as the monitor writes them.

use std::fmt::Write as _;

use serde_json::{json, Map, Value};

use crate::api::{self, Handlers as _};
use crate::qom::{types, NodeId, Tree};
use crate::{Cx, Machine};
use qmpkit_qapi::Enum as _;

/// Commands this module implements.

/// Top-level HMP commands understood here.
pub const COMMANDS: &[(&str, &str, &str)] = &[
    (
        "balloon",
        "balloon target",
        "request VM to change its memory allocation (in MB)",
    ),
    ("c|cont", "", "resume emulation"),
    (
        "change",
        "change device filename [format]",
        "change a removable medium, optional format",
    ),
    (
        "closefd",
        "closefd name",
        "close a file descriptor previously passed via SCM rights",
    ),
    ("cpu-add", "cpu-add id", "add cpu"),
    ("delvm", "delvm tag", "delete a VM snapshot from its tag"),
    (
        "device_add",
        "device_add driver[,prop=value][,...]",
        "add device, like -device on the command line",
    ),
    ("device_del", "device_del device", "remove device"),
    (
        "dump-guest-memory",
        "dump-guest-memory [-p] [-d] filename [begin length]",
        "dump guest memory into file 'filename'",
    ),
    (
        "eject",
        "eject [-f] device",
        "eject a removable medium (use -f to force it)",
    ),
    (
        "expire_password",
        "expire_password protocol time",
        "set password expiry time",
    ),
    ("help|?", "help|? [cmd]", "show the help"),
    (
        "info",
        "info [subcommand]",
        "show various information about the system state",
    ),
    ("loadvm", "loadvm tag", "restore a VM snapshot from its tag"),
    (
        "memsave",
        "memsave addr size file",
        "save to disk virtual memory dump starting at 'addr' of size 'size'",
    ),
    (
        "mouse_button",
        "mouse_button state",
        "change mouse button state (1=L, 2=M, 4=R)",
    ),
    (
        "mouse_move",
        "mouse_move dx dy [dz]",
        "send mouse move events",
    ),
    ("nmi", "nmi", "inject an NMI"),
    (
        "object_add",
        "object_add [qom-type=]type,id=str[,prop=value][,...]",
        "create QOM object",
    ),
    ("object_del", "object_del id", "destroy QOM object"),
    (
        "pmemsave",
        "pmemsave addr size file",
        "save to disk physical memory dump starting at 'addr' of size 'size'",
    ),
    ("q|quit", "", "quit the emulator"),
    ("qom-list", "qom-list path", "list QOM properties"),
    ("qom-set", "qom-set path property value", "set QOM property"),
    (
        "savevm",
        "savevm tag",
        "save a VM snapshot. If no tag is provided, a new snapshot is created",
    ),
    (
        "screendump",
        "screendump filename",
        "save screen into PPM image 'filename'",
    ),
    (
        "sendkey",
        "sendkey keys [hold_ms]",
        "send keys to the VM (e.g. 'sendkey ctrl-alt-f1', default hold time=100 ms)",
    ),
    (
        "set_password",
        "set_password protocol password action-if-connected",
        "set spice/vnc password",
    ),
    ("stop", "", "stop emulation"),
    ("system_powerdown", "", "send system power down event"),
    ("system_reset", "", "reset the system"),
    ("system_wakeup", "", "wakeup guest from suspend"),
    ("x", "x /fmt addr", "virtual memory dump starting at 'addr'"),
    (
        "xp",
        "xp /fmt addr",
        "physical memory dump starting at 'addr'",
    ),
    (
        "trace-event",
        "trace-event name on|off [vcpu]",
        "changes status of a specific trace event (vcpu: vCPU to set, default is all)",
    ),
];

/// `info` subcommands understood here.
pub const INFO: &[&str] = &[
    "balloon",
    "block",
    "chardev",
    "cpus",
    "dump",
    "iothreads",
    "kvm",
    "mice",
    "memdev",
    "memory-devices",
    "name",
    "network",
    "pci",
    "qom-tree",
    "qtree",
    "registers",
    "snapshots",
    "status",
    "trace-events",
    "uuid",
    "version",
    "vnc",
];

/// A typed handler's answer as the monitor prints an error.
fn typed<T>(r: qmpkit_qapi::server::Reply<T>) -> Result<T, String> {
    r.map_err(|e| e.desc)
}

/// Run `cmd` over QMP with arguments built from the command line (as QEMU's HMP builds a
/// QDict for `device_add` and friends); `Err(text)` is what the monitor prints.
fn qmp(m: &mut Machine, cx: &mut Cx, cmd: &str, args: Value) -> Result<Value, String> {
    let args = match args {
        Value::Object(o) => o,
        _ => Map::new(),
    };
    match m.execute(cmd, &args, cx) {
        None => Err(format!("The command {cmd} has not been found")),
        Some(Ok(v)) => Ok(v),
        Some(Err(e)) => Err(e.desc),
    }
}

fn split_args(rest: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote = false;
    for c in rest.chars() {
        match c {
            '"' => quote = !quote,
            c if c.is_whitespace() && !quote => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// HMP's integer expressions: decimal, 0x hex, with k/M/G suffixes where
/// sizes are meant (kept simple: no arithmetic).
fn parse_num(s: &str) -> Option<i64> {
    let s = s.trim();
    let (neg, s) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s),
    };
    let v = if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        u64::from_str_radix(h, 16).ok()? as i64
    } else {
        let (n, mult) = match s.chars().last()? {
            'k' | 'K' => (&s[..s.len() - 1], 1i64 << 10),
            'M' => (&s[..s.len() - 1], 1 << 20),
            'G' => (&s[..s.len() - 1], 1 << 30),
            _ => (s, 1),
        };
        n.parse::<i64>().ok()?.checked_mul(mult)?
    };
    Some(if neg { -v } else { v })
}

/// Parse `a=b,c=d` into an argument object; the first bare word is `first`.
fn keyval_args(s: &str, first: &str) -> Map<String, Value> {
    let mut out = Map::new();
    for (k, v) in crate::config::parse_keyval(s, Some(first)) {
        out.insert(k, Value::String(v));
    }
    out
}

fn info(m: &mut Machine, cx: &mut Cx, sub: &str, rest: &[String]) -> Result<String, String> {
    let mut o = String::new();
    match sub {
        "status" => {
            let s = typed(m.query_status(api::QueryStatus {}, cx))?;
            let _ = write!(
                o,
                "VM status: {}",
                if s.running { "running" } else { "paused" }
            );
            if s.singlestep {
                o.push_str(" (single step mode)");
            }
            if !s.running && s.status != api::RunState::Paused {
                let _ = write!(o, " ({})", s.status.as_str());
            }
            o.push('\n');
        }
        "version" => {
            let v = typed(m.query_version(api::QueryVersion {}, cx))?;
            let q = &v.qemu;
            let _ = writeln!(o, "{}.{}.{}{}", q.major, q.minor, q.micro, v.package);
        }
        "name" => {
            if let Some(n) = typed(m.query_name(api::QueryName {}, cx))?.name {
                let _ = writeln!(o, "{n}");
            }
        }
        "uuid" => {
            let v = typed(m.query_uuid(api::QueryUuid {}, cx))?;
            let _ = writeln!(o, "{}", v.uuid);
        }
        "kvm" => {
            let v = typed(m.query_kvm(api::QueryKvm {}, cx))?;
            let state = if !v.present {
                "not compiled"
            } else if v.enabled {
                "enabled"
            } else {
                "disabled"
            };
            let _ = writeln!(o, "kvm support: {state}");
        }
        // QEMU 2.12 and later print only thread ids (from query-cpus-fast,
        // which does not stop the vCPUs).
        "cpus" => {
            let cpus = typed(m.query_cpus(api::QueryCpus {}, cx))?;
            let cur = m.misc.hmp_cpu as i64;
            let fast = m.compat().hmp_info_cpus_fast;
            for c in cpus {
                let mark = if c.cpu == cur { '*' } else { ' ' };
                let _ = write!(o, "{mark} CPU #{}:", c.cpu);
                if !fast {
                    if let api::CpuInfoBranch::X86(x) = &c.arch {
                        let _ = write!(o, " pc=0x{:016x}", x.pc as u64);
                    }
                    if c.halted {
                        o.push_str(" (halted)");
                    }
                }
                let _ = writeln!(o, " thread_id={}", c.thread_id);
            }
        }
        "snapshots" => o = crate::savevm::info_snapshots(m)?,
        "block" => {
            let list = typed(m.query_block(api::QueryBlock {}, cx))?;
            let want = rest.first().map(String::as_str);
            let mut first = true;
            for b in list {
                if want.is_some_and(|w| w != b.device) {
                    continue;
                }
                if !first {
                    o.push('\n');
                }
                first = false;
                o.push_str(&b.device);
                if let Some(n) = b.inserted.as_ref().and_then(|i| i.node_name.as_ref()) {
                    let _ = write!(o, " ({n})");
                }
                match &b.inserted {
                    Some(i) => {
                        let _ = writeln!(
                            o,
                            ": {} ({}{}{})",
                            i.file,
                            i.drv,
                            if i.ro { ", read-only" } else { "" },
                            if i.encrypted { ", encrypted" } else { "" },
                        );
                    }
                    None => o.push_str(": [not inserted]\n"),
                }
                if let Some(q) = &b.qdev {
                    let _ = writeln!(o, "    Attached to:      {q}");
                }
                if let Some(st) = &b.io_status {
                    if *st != api::BlockDeviceIoStatus::Ok {
                        let _ = writeln!(o, "    I/O status:       {}", st.as_str());
                    }
                }
                if b.removable {
                    let _ = writeln!(
                        o,
                        "    Removable device: {}locked, tray {}",
                        if b.locked { "" } else { "not " },
                        if b.tray_open.unwrap_or(false) {
                            "open"
                        } else {
                            "closed"
                        }
                    );
                }
                if let Some(i) = &b.inserted {
                    let c = &i.cache;
                    let _ = writeln!(
                        o,
                        "    Cache mode:       {}{}{}",
                        if c.writeback {
                            "writeback"
                        } else {
                            "writethrough"
                        },
                        if c.direct { ", direct" } else { "" },
                        if c.no_flush { ", ignore flushes" } else { "" },
                    );
                    if let Some(bf) = &i.backing_file {
                        let _ = writeln!(
                            o,
                            "    Backing file:     {bf} (chain depth: {})",
                            i.backing_file_depth
                        );
                    }
                    let avg = [i.bps, i.bps_rd, i.bps_wr, i.iops, i.iops_rd, i.iops_wr];
                    if avg.iter().any(|&v| v != 0) {
                        let z = |v: Option<i64>| v.unwrap_or(0);
                        let _ = writeln!(
                            o,
                            "    I/O throttling:   bps={} bps_rd={} bps_wr={} bps_max={} \
                             bps_rd_max={} bps_wr_max={} iops={} iops_rd={} iops_wr={} \
                             iops_max={} iops_rd_max={} iops_wr_max={} iops_size={} group={}",
                            i.bps,
                            i.bps_rd,
                            i.bps_wr,
                            z(i.bps_max),
                            z(i.bps_rd_max),
                            z(i.bps_wr_max),
                            i.iops,
                            i.iops_rd,
                            i.iops_wr,
                            z(i.iops_max),
                            z(i.iops_rd_max),
                            z(i.iops_wr_max),
                            z(i.iops_size),
                            i.group.as_deref().unwrap_or("")
                        );
                    }
                }
            }
        }
        "chardev" => {
            for c in crate::chardev::query_chardev(m) {
                let _ = writeln!(o, "{}: filename={}", c.label, c.filename);
            }
        }
        "mice" => {
            let list = typed(m.query_mice(api::QueryMice {}, cx))?;
            if list.is_empty() {
                o.push_str("No mouse devices connected\n");
            }
            for mo in list {
                let _ = writeln!(
                    o,
                    "{} Mouse #{}: {}{}",
                    if mo.current { '*' } else { ' ' },
                    mo.index,
                    mo.name,
                    if mo.absolute { " (absolute)" } else { "" }
                );
            }
        }
        "balloon" => {
            let v = typed(m.query_balloon(api::QueryBalloon {}, cx))?;
            let _ = writeln!(o, "balloon: actual={}", v.actual >> 20);
        }
        "vnc" if m.compat().hmp_info_vnc_servers => {
            let list = typed(m.query_vnc_servers(api::QueryVncServers {}, cx))?;
            if list.is_empty() {
                o.push_str("None\n");
            }
            for d in list {
                let _ = writeln!(o, "{}:", d.id);
                // One end of a connection: "  Server: HOST:PORT (FAMILY)".
                let end = |o: &mut String,
                           what: &str,
                           host: &str,
                           service: &str,
                           family: &api::NetworkAddressFamily,
                           ws: bool| {
                    let ws = if ws { " (Websocket)" } else { "" };
                    let _ = writeln!(o, "  {what}: {host}:{service} ({}{ws})", family.as_str());
                };
                for srv in &d.server {
                    end(
                        &mut o,
                        "Server",
                        &srv.host,
                        &srv.service,
                        &srv.family,
                        srv.websocket,
                    );
                    let _ = writeln!(
                        o,
                        "    Auth: {} (Sub: {})",
                        srv.auth.as_str(),
                        srv.vencrypt.as_ref().map_or("none", |v| v.as_str())
                    );
                }
                for c in &d.clients {
                    end(
                        &mut o,
                        "Client",
                        &c.host,
                        &c.service,
                        &c.family,
                        c.websocket,
                    );
                    let none = |v: &Option<String>| v.clone().unwrap_or_else(|| "none".into());
                    let _ = writeln!(o, "    x509_dname: {}", none(&c.x509_dname));
                    let _ = writeln!(o, "    sasl_username: {}", none(&c.sasl_username));
                }
                if let Some(disp) = &d.display {
                    let _ = writeln!(o, "  Display: {disp}");
                }
            }
        }
        "spice" => {
            let v = typed(m.query_spice(api::QuerySpice {}, cx))?;
            crate::display::spice::hmp_info(&mut o, &v);
        }
        "vnc" => {
            let v = typed(m.query_vnc(api::QueryVnc {}, cx))?;
            if !v.enabled {
                o.push_str("Server: disabled\n");
            } else {
                o.push_str("Server:\n");
                let _ = writeln!(
                    o,
                    "     address: {}:{}",
                    v.host.as_deref().unwrap_or(""),
                    v.service.as_deref().unwrap_or("")
                );
                let _ = writeln!(o, "        auth: {}", v.auth.as_deref().unwrap_or("none"));
                let clients = v.clients.unwrap_or_default();
                if clients.is_empty() {
                    o.push_str("Client: none\n");
                }
                for c in clients {
                    o.push_str("Client:\n");
                    let _ = writeln!(o, "     address: {}:{}", c.host, c.service);
                    let _ = writeln!(
                        o,
                        "  x509_dname: {}",
                        c.x509_dname.as_deref().unwrap_or("none")
                    );
                    let _ = writeln!(
                        o,
                        "    username: {}",
                        c.sasl_username.as_deref().unwrap_or("none")
                    );
                }
            }
        }
        "iothreads" => {
            for t in typed(m.query_iothreads(api::QueryIothreads {}, cx))? {
                let _ = writeln!(o, "{}:", t.id);
                let _ = writeln!(o, "  thread_id={}", t.thread_id);
                let _ = writeln!(o, "  poll-max-ns={}", t.poll_max_ns);
                let _ = writeln!(o, "  poll-grow={}", t.poll_grow);
                let _ = writeln!(o, "  poll-shrink={}", t.poll_shrink);
            }
        }
        "dump" => {
            let v = typed(m.query_dump(api::QueryDump {}, cx))?;
            let _ = writeln!(o, "Status: {}", v.status.as_str());
            if v.status == api::DumpStatus::Active {
                let pct = if v.total > 0 {
                    v.completed as f64 * 100.0 / v.total as f64
                } else {
                    0.0
                };
                let _ = writeln!(o, "Finished: {pct:.2} %");
            }
        }
        "trace-events" => {
            let name = rest.first().map(String::as_str).unwrap_or("*").to_string();
            let vcpu = rest.get(1).and_then(|s| parse_num(s));
            let list = typed(m.trace_event_get_state(api::TraceEventGetState { name, vcpu }, cx))?;
            for e in list {
                let _ = writeln!(
                    o,
                    "{} : state {}",
                    e.name,
                    u8::from(e.state == api::TraceEventState::Enabled)
                );
            }
        }
        "qom-tree" => {
            let tree = &m.qom.tree;
            let start = match rest.first() {
                Some(p) => tree
                    .resolve(p)
                    .map_err(|_| format!("Path '{p}' could not be resolved"))?,
                None => tree.child(Tree::ROOT, "machine").unwrap_or(Tree::ROOT),
            };
            qom_tree(tree, start, 0, &mut o);
        }
        "qtree" => qtree(&m.qom.tree, &mut o),
        "network" => network(m, &mut o),
        "memdev" => {
            for b in typed(m.query_memdev(api::QueryMemdev {}, cx))? {
                if let Some(id) = &b.id {
                    let _ = writeln!(o, "memory backend: {id}");
                }
                let _ = writeln!(o, "  size:  {}", b.size);
                let _ = writeln!(o, "  merge: {}", b.merge);
                let _ = writeln!(o, "  dump: {}", b.dump);
                let _ = writeln!(o, "  prealloc: {}", b.prealloc);
                let _ = writeln!(o, "  policy: {}", b.policy.as_str());
                let nodes: Vec<String> = b.host_nodes.iter().map(u16::to_string).collect();
                let _ = writeln!(o, "  host nodes: {}", nodes.join(","));
                o.push('\n');
            }
        }
        "memory-devices" => {
            for d in typed(m.query_memory_devices(api::QueryMemoryDevices {}, cx))? {
                let api::MemoryDeviceInfo::Dimm(data) = d else {
                    continue;
                };
                let _ = writeln!(
                    o,
                    "Memory device [dimm]: \"{}\"",
                    data.id.as_deref().unwrap_or("")
                );
                let _ = writeln!(o, "  addr: 0x{:x}", data.addr);
                let _ = writeln!(o, "  slot: {}", data.slot);
                let _ = writeln!(o, "  node: {}", data.node);
                let _ = writeln!(o, "  size: {}", data.size);
                let _ = writeln!(o, "  memdev: {}", data.memdev);
                let _ = writeln!(o, "  hotplugged: {}", data.hotplugged);
                let _ = writeln!(o, "  hotpluggable: {}", data.hotpluggable);
            }
        }
        "registers" => {
            let all = rest.first().map(String::as_str) == Some("-a");
            let cpus = crate::identity::cpu_paths(m);
            let cur = m.misc.hmp_cpu;
            for c in cpus.iter() {
                if !all && c.0 != cur {
                    continue;
                }
                if all {
                    let _ = writeln!(o, "\nCPU#{}", c.0);
                }
                registers(c.0, &mut o);
            }
        }
        "pci" => {
            for bus in typed(m.query_pci(api::QueryPci {}, cx))? {
                for d in &bus.devices {
                    pci_device(d, &mut o);
                }
            }
        }
        "" => {
            for s in INFO {
                let _ = writeln!(o, "info {s}");
            }
        }
        other => return Err(format!("unknown command: 'info {other}'")),
    }
    Ok(o)
}

fn pci_device(d: &api::PciDeviceInfo, o: &mut String) {
    let _ = writeln!(
        o,
        "  Bus {:2}, device {:3}, function {}:",
        d.bus, d.slot, d.function
    );
    o.push_str("    ");
    match &d.class_info.desc {
        Some(desc) => o.push_str(desc),
        None => {
            let _ = write!(o, "Class {:04}", d.class_info.class);
        }
    }
    let _ = writeln!(o, ": PCI device {:04x}:{:04x}", d.id.vendor, d.id.device);
    if let Some(irq) = d.irq {
        let _ = writeln!(o, "      IRQ {irq}.");
    }
    for r in &d.regions {
        let addr = r.address as u64;
        let end = addr.wrapping_add(r.size as u64).wrapping_sub(1);
        let _ = write!(o, "      BAR{}: ", r.bar);
        if r.r#type == "io" {
            let _ = writeln!(o, "I/O at 0x{addr:04x} [0x{end:04x}].");
        } else {
            let _ = writeln!(
                o,
                "{} bit{} memory at 0x{addr:08x} [0x{end:08x}].",
                if r.mem_type_64.unwrap_or(false) {
                    64
                } else {
                    32
                },
                if r.prefetch.unwrap_or(false) {
                    " prefetchable"
                } else {
                    ""
                }
            );
        }
    }
    let _ = writeln!(o, "      id \"{}\"", d.qdev_id);
}

/// `x` / `xp`: examine guest memory, `/Nfu` as in QEMU (count, format
/// x d u o c, unit b h w g).
fn examine(m: &Machine, cmd: &str, words: &[String]) -> Result<String, String> {
    let (fmt, addr_s) = match words.first() {
        Some(w) if w.starts_with('/') => (w[1..].to_string(), words.get(1)),
        _ => (String::new(), words.first()),
    };
    let Some(addr) = addr_s.and_then(|s| parse_num(s)) else {
        return Err(missing(cmd, "integer"));
    };
    let digits: String = fmt.chars().take_while(|c| c.is_ascii_digit()).collect();
    let count: u64 = digits.parse().unwrap_or(1).max(1);
    let mut format = 'x';
    let mut size = 4u64;
    for c in fmt[digits.len()..].chars() {
        match c {
            'x' | 'd' | 'u' | 'o' | 'c' => format = c,
            'b' => size = 1,
            'h' => size = 2,
            'w' => size = 4,
            'g' => size = 8,
            _ => return Err(format!("invalid char in format: '{c}'")),
        }
    }
    if format == 'c' {
        size = 1;
    }
    let len = count.saturating_mul(size).min(1 << 20);
    let mut buf = vec![0u8; len as usize];
    let addr = addr as u64;
    if cmd == "xp" {
        crate::memory::read_phys(m, addr, &mut buf);
    } else {
        for (i, b) in buf.iter_mut().enumerate() {
            let va = addr.wrapping_add(i as u64);
            match crate::memory::virt_to_phys(m, va) {
                Some(pa) => crate::memory::read_phys(m, pa, std::slice::from_mut(b)),
                None => return Err("Cannot access memory".into()),
            }
        }
    }
    let line = if size == 1 { 8 } else { 16 };
    let bits = size * 8;
    let mut o = String::new();
    let mut i = 0u64;
    while i < len {
        let _ = write!(o, "{:016x}:", addr.wrapping_add(i));
        let end = (i + line).min(len);
        while i < end {
            let mut v = 0u64;
            for k in 0..size {
                v |= (buf[(i + k) as usize] as u64) << (8 * k);
            }
            o.push(' ');
            let _ = match format {
                'x' => write!(o, "0x{v:0w$x}", w = bits.div_ceil(4) as usize),
                'o' => write!(o, "{:#0w$o}", v, w = bits.div_ceil(3) as usize),
                'u' => write!(o, "{v:w$}", w = (bits * 10).div_ceil(33) as usize),
                'd' => {
                    let sv = if bits < 64 && (v >> (bits - 1)) & 1 == 1 {
                        (v as i64) - (1i64 << bits)
                    } else {
                        v as i64
                    };
                    write!(o, "{sv:w$}", w = (bits * 10).div_ceil(33) as usize)
                }
                _ => {
                    let c = v as u8;
                    if (0x20..0x7f).contains(&c) {
                        write!(o, "'{}'", c as char)
                    } else {
                        write!(o, "'\\x{c:02x}'")
                    }
                }
            };
            i += size;
        }
        o.push('\n');
    }
    Ok(o)
}

/// `info network`: each NIC with its backend, as QEMU prints them.
fn network(m: &Machine, o: &mut String) {
    let tree = &m.qom.tree;
    let mut used = Vec::new();
    for d in crate::devices::all_devices(tree) {
        let ty = tree.node(d).ty;
        if types::find_prop(ty, "netdev").is_none()
            || types::find_prop(ty, "mac").is_none()
            || types::is_a(ty, "virtio-device")
        {
            continue;
        }
        let name = crate::devices::device_id(tree, d).unwrap_or_else(|| ty.to_string());
        let mac = tree
            .val(d, "mac")
            .and_then(|v| v.as_str())
            .unwrap_or("52:54:00:12:34:56")
            .to_string();
        let _ = writeln!(o, "{name}: index=0,type=nic,model={ty},macaddr={mac}");
        if let Some(nd) = tree.val(d, "netdev").and_then(|v| v.as_str()) {
            if let Some(n) = crate::net::netdevs(m).into_iter().find(|n| n.id == nd) {
                let _ = writeln!(
                    o,
                    " \\ {}: index=0,type={},{}",
                    n.id,
                    n.kind,
                    netdev_info(&n.kind)
                );
                used.push(n.id.clone());
            }
        }
    }
    for n in crate::net::netdevs(m)
        .into_iter()
        .filter(|n| !used.contains(&n.id))
    {
        let _ = writeln!(
            o,
            "{}: index=0,type={},{}",
            n.id,
            n.kind,
            netdev_info(&n.kind)
        );
    }
}

fn netdev_info(kind: &str) -> String {
    match kind {
        "user" => "net=10.0.2.0,restrict=off".into(),
        "tap" => "ifname=tap0,script=/etc/qemu-ifup,downscript=/etc/qemu-ifdown".into(),
        "bridge" => "helper=/usr/lib/qemu/qemu-bridge-helper,br=br0".into(),
        other => format!("type={other}"),
    }
}

/// The modelled vCPU state in QEMU's `info registers` layout (x86-64,
/// long mode, halted in the guest kernel's idle loop).
fn registers(index: u32, o: &mut String) {
    let r = crate::dump::cpu_regs(index);
    let rbp = r.rsp + 0x10;
    let z = 0u64;
    let _ = writeln!(o, "RAX={z:016x} RBX={z:016x} RCX={z:016x} RDX={z:016x}");
    let _ = writeln!(
        o,
        "RSI={z:016x} RDI={z:016x} RBP={rbp:016x} RSP={:016x}",
        r.rsp
    );
    let _ = writeln!(o, "R8 ={z:016x} R9 ={z:016x} R10={z:016x} R11={z:016x}");
    let _ = writeln!(o, "R12={z:016x} R13={z:016x} R14={z:016x} R15={z:016x}");
    let fl = r.rflags;
    let flag = |bit: u64, c: char| if fl & bit != 0 { c } else { '-' };
    let _ = writeln!(
        o,
        "RIP={:016x} RFL={:08x} [{}{}{}{}{}{}{}] CPL=0 II=0 A20=1 SMM=0 HLT=1",
        r.rip,
        fl,
        flag(0x400, 'D'),
        flag(0x800, 'O'),
        flag(0x80, 'S'),
        flag(0x40, 'Z'),
        flag(0x10, 'A'),
        flag(0x4, 'P'),
        flag(0x1, 'C'),
    );
    let gs_base = 0xffff_8800_3fc0_0000u64 + index as u64 * 0x10000;
    o.push_str("ES =0000 0000000000000000 ffffffff 00c00000\n");
    o.push_str("CS =0010 0000000000000000 ffffffff 00a09b00 DPL=0 CS64 [-RA]\n");
    o.push_str("SS =0018 0000000000000000 ffffffff 00c09300 DPL=0 DS   [-WA]\n");
    o.push_str("DS =0000 0000000000000000 ffffffff 00c00000\n");
    o.push_str("FS =0000 0000000000000000 ffffffff 00c00000\n");
    let _ = writeln!(o, "GS =0000 {gs_base:016x} ffffffff 00c00000");
    o.push_str("LDT=0000 0000000000000000 ffffffff 00c00000\n");
    let _ = writeln!(
        o,
        "TR =0040 {:016x} 00002087 00008b00 DPL=0 TSS64-busy",
        gs_base + 0x4000
    );
    let _ = writeln!(o, "GDT=     {:016x} 0000007f", gs_base + 0x9000);
    o.push_str("IDT=     ffffffffff57b000 00000fff\n");
    o.push_str("CR0=80050033 CR2=0000000000000000 CR3=0000000001e0a000 CR4=000006e0\n");
    o.push_str(
        "DR0=0000000000000000 DR1=0000000000000000 DR2=0000000000000000 DR3=0000000000000000 \n",
    );
    o.push_str("DR6=00000000ffff0ff0 DR7=0000000000000400\n");
    o.push_str("EFER=0000000000000d01\n");
}

fn qom_tree(tree: &Tree, n: NodeId, depth: usize, o: &mut String) {
    let node = tree.node(n);
    let name = if n == Tree::ROOT { "" } else { &node.name };
    let _ = writeln!(o, "{:w$}/{} ({})", "", name, node.ty, w = depth * 2);
    for &c in &node.children {
        qom_tree(tree, c, depth + 1, o);
    }
}

fn fmt_prop(name: &str, ty: &str, v: &Value) -> String {
    match (ty, v) {
        ("bool", Value::Bool(b)) => format!("{b}"),
        ("int32", Value::Number(n)) if name == "addr" => {
            let d = n.as_i64().unwrap_or(-1);
            if d < 0 {
                "ff.7".into()
            } else {
                format!("{:02x}.{:x}", d >> 3, d & 7)
            }
        }
        (t, Value::Number(n)) if t.starts_with("uint") => {
            let u = n.as_u64().unwrap_or(0);
            format!("{u} (0x{u:x})")
        }
        (_, Value::Number(n)) => match n.as_i64() {
            Some(i) => format!("{i} (0x{:x})", i as u64),
            None => format!("{n}"),
        },
        (_, Value::String(s)) if ty.starts_with("str") => format!("\"{s}\""),
        (_, Value::String(s)) => s.clone(),
        (_, Value::Null) => "\"\"".into(),
        (_, other) => other.to_string(),
    }
}

fn qtree_bus(tree: &Tree, bus: NodeId, depth: usize, o: &mut String) {
    let ind = depth * 2;
    let _ = writeln!(o, "{:ind$}bus: {}", "", tree.node(bus).name);
    let _ = writeln!(o, "{:w$}type {}", "", tree.node(bus).ty, w = ind + 2);
    for d in crate::devices::bus_children(tree, bus) {
        qtree_dev(tree, d, depth + 1, o);
    }
}

fn qtree_dev(tree: &Tree, d: NodeId, depth: usize, o: &mut String) {
    let ind = depth * 2;
    let node = tree.node(d);
    let id = crate::devices::device_id(tree, d).unwrap_or_default();
    let _ = writeln!(o, "{:ind$}dev: {}, id \"{}\"", "", node.ty, id);
    for p in types::all_props(node.ty) {
        if p.dynamic {
            continue;
        }
        let v = tree
            .prop_value(d, p.name)
            .map_or(Value::Null, |v| v.to_json());
        let _ = writeln!(
            o,
            "{:w$}{} = {}",
            "",
            p.name,
            fmt_prop(p.name, p.ty, &v),
            w = ind + 2
        );
    }
    for &c in &node.children {
        if tree.is_bus(c) {
            qtree_bus(tree, c, depth + 1, o);
        }
    }
}

fn qtree(tree: &Tree, o: &mut String) {
    o.push_str("bus: main-system-bus\n  type System\n");
    // System-bus devices: those that plug into no bus.
    for d in crate::devices::all_devices(tree) {
        let sysbus = types::is_a(tree.node(d).ty, "sys-bus-device");
        if sysbus {
            qtree_dev(tree, d, 1, o);
        }
    }
}

fn help(o: &mut String, which: Option<&str>) {
    for (names, usage, text) in COMMANDS {
        if let Some(w) = which {
            if !names.split('|').any(|n| n == w) {
                continue;
            }
        }
        let u = if usage.is_empty() { *names } else { usage };
        let _ = writeln!(o, "{u} -- {text}");
    }
}

fn missing(cmd: &str, what: &str) -> String {
    format!("{cmd}: {what} expected\nTry \"help {cmd}\" for more information")
}

/// Run one HMP command line; returns the monitor's output (LF line ends).
pub fn run_line(m: &mut Machine, cx: &mut Cx, line: &str) -> String {
    let line = line.trim();
    if line.is_empty() {
        return String::new();
    }
    let (cmd, rest) = match line.split_once(char::is_whitespace) {
        Some((c, r)) => (c, r.trim()),
        None => (line, ""),
    };
    let words = split_args(rest);
    let w = |i: usize| words.get(i).map(String::as_str);
    let r: Result<String, String> = match cmd {
        "info" => {
            let sub = w(0).unwrap_or("");
            info(m, cx, sub, words.get(1..).unwrap_or(&[]))
        }
        "help" | "?" => {
            let mut o = String::new();
            help(&mut o, w(0));
            Ok(o)
        }
        "savevm" => crate::savevm::savevm(m, w(0)).map(|()| String::new()),
        "loadvm" => match w(0) {
            None => Err(missing(cmd, "string")),
            Some(tag) => crate::savevm::loadvm(m, tag).map(|()| String::new()),
        },
        "delvm" => match w(0) {
            None => Err(missing(cmd, "string")),
            Some(tag) => crate::savevm::delvm(m, tag).map(|()| String::new()),
        },
        "stop" => typed(m.stop(api::Stop {}, cx)).map(|_| String::new()),
        "c" | "cont" => typed(m.cont(api::Cont {}, cx)).map(|_| String::new()),
        "system_reset" => typed(m.system_reset(api::SystemReset {}, cx)).map(|_| String::new()),
        "system_powerdown" => {
            typed(m.system_powerdown(api::SystemPowerdown {}, cx)).map(|_| String::new())
        }
        "system_wakeup" => typed(m.system_wakeup(api::SystemWakeup {}, cx)).map(|_| String::new()),
        "nmi" => typed(m.inject_nmi(api::InjectNmi {}, cx)).map(|_| String::new()),
        "q" | "quit" => typed(m.quit(api::Quit {}, cx)).map(|_| String::new()),
        "device_add" => match w(0) {
            None => Err(missing(cmd, "string")),
            Some("help") | Some("?") => {
                let mut o = String::new();
                for t in types::TYPES
                    .iter()
                    .filter(|t| t.user_creatable && !t.is_abstract && types::is_a(t.name, "device"))
                {
                    match types::bus_of(t.name) {
                        Some(b) => {
                            let _ = writeln!(o, "name \"{}\", bus {b}", t.name);
                        }
                        None => {
                            let _ = writeln!(o, "name \"{}\"", t.name);
                        }
                    }
                }
                Ok(o)
            }
            Some(spec) if spec.ends_with(",help") || spec.ends_with(",?") => {
                // Properties of one device type.
                let driver = spec.split(',').next().unwrap_or("");
                let driver = types::resolve_alias(driver).unwrap_or(driver);
                match types::find(driver).filter(|t| types::is_a(t.name, "device")) {
                    None => Err(format!("'{driver}' is not a valid device model name")),
                    Some(t) => {
                        let mut o = String::new();
                        for p in types::all_props(t.name) {
                            let _ = write!(o, "{}.{}={}", t.name, p.name, p.ty);
                            if let Some(d) = p.desc {
                                let _ = write!(o, " ({d})");
                            }
                            o.push('\n');
                        }
                        Ok(o)
                    }
                }
            }
            Some(spec) => {
                let a = keyval_args(spec, "driver");
                qmp(m, cx, "device_add", Value::Object(a)).map(|_| String::new())
            }
        },
        "eject" => {
            let force = w(0) == Some("-f");
            match w(usize::from(force)) {
                None => Err(missing(cmd, "block device name")),
                Some(dev) => qmp(m, cx, "eject", json!({"device": dev, "force": force}))
                    .map(|_| String::new()),
            }
        }
        "change" => match (w(0), w(1)) {
            (None, _) => Err(missing(cmd, "block device name")),
            (Some(_), None) => Err(missing(cmd, "filename")),
            (Some(dev), Some(target)) => {
                let a = api::Change {
                    device: dev.to_string(),
                    target: target.to_string(),
                    arg: w(2).map(str::to_string),
                };
                typed(m.change(a, cx)).map(|_| String::new())
            }
        },
        "device_del" => match w(0) {
            None => Err(missing(cmd, "string")),
            Some(id) => qmp(m, cx, "device_del", json!({ "id": id })).map(|_| String::new()),
        },
        "object_add" => match w(0) {
            None => Err(missing(cmd, "string")),
            Some(spec) => {
                let mut a = keyval_args(spec, "qom-type");
                let qom_type = a.remove("qom-type").unwrap_or(Value::String(String::new()));
                let id = a.remove("id").unwrap_or(Value::String(String::new()));
                // Typed values the way the option parser gives them.
                let mut props = Map::new();
                let ty_name = qom_type.as_str().unwrap_or("").to_string();
                for (k, v) in a {
                    let s = v.as_str().unwrap_or("").to_string();
                    let pv = match types::find_prop(&ty_name, &k).map(|p| p.ty) {
                        Some("bool") => Value::Bool(matches!(s.as_str(), "on" | "yes" | "true")),
                        Some("int" | "size" | "uint32" | "uint64") => {
                            crate::config::parse_size(&s, 1)
                                .map(Value::from)
                                .unwrap_or(Value::String(s))
                        }
                        _ => Value::String(s),
                    };
                    props.insert(k, pv);
                }
                qmp(
                    m,
                    cx,
                    "object-add",
                    json!({"qom-type": qom_type, "id": id, "props": props}),
                )
                .map(|_| String::new())
            }
        },
        "object_del" => match w(0) {
            None => Err(missing(cmd, "string")),
            Some(id) => qmp(m, cx, "object-del", json!({ "id": id })).map(|_| String::new()),
        },
        "x" | "xp" => examine(m, cmd, &words),
        "mouse_move" => match (w(0).and_then(parse_num), w(1).and_then(parse_num)) {
            (Some(dx), Some(dy)) => {
                let r = &mut m.input.rel;
                r.0 = r.0.saturating_add(dx);
                r.1 = r.1.saturating_add(dy);
                Ok(String::new())
            }
            _ => Err(missing(cmd, "string")),
        },
        "mouse_button" => match w(0).and_then(parse_num) {
            Some(state) => {
                let mut b = Vec::new();
                for (bit, name) in [(1, "left"), (2, "right"), (4, "middle")] {
                    if state & bit != 0 {
                        b.push(name);
                    }
                }
                m.input.buttons = b;
                Ok(String::new())
            }
            None => Err(missing(cmd, "integer")),
        },
        "balloon" => match w(0).and_then(parse_num) {
            None => Err(missing(cmd, "integer")),
            Some(mb) => qmp(
                m,
                cx,
                "balloon",
                json!({ "value": mb.saturating_mul(1 << 20) }),
            )
            .map(|_| String::new()),
        },
        "cpu-add" => match w(0).and_then(parse_num) {
            None => Err(missing(cmd, "integer")),
            Some(id) => qmp(m, cx, "cpu-add", json!({ "id": id })).map(|_| String::new()),
        },
        "screendump" => match w(0) {
            None => Err(missing(cmd, "filename")),
            Some(f) => qmp(m, cx, "screendump", json!({ "filename": f })).map(|_| String::new()),
        },
        "memsave" | "pmemsave" => {
            match (w(0).and_then(parse_num), w(1).and_then(parse_num), w(2)) {
                (Some(a), Some(s), Some(f)) => {
                    qmp(m, cx, cmd, json!({"val": a, "size": s, "filename": f}))
                        .map(|_| String::new())
                }
                (Some(_), Some(_), None) => Err(missing(cmd, "filename")),
                _ => Err(missing(cmd, "integer")),
            }
        }
        "dump-guest-memory" => {
            let mut paging = false;
            let mut detach = false;
            let mut pos = Vec::new();
            for a in &words {
                match a.as_str() {
                    "-p" => paging = true,
                    "-d" => detach = true,
                    _ => pos.push(a.as_str()),
                }
            }
            match pos.first() {
                None => Err(missing(cmd, "filename")),
                Some(f) => {
                    let range = pos
                        .get(1)
                        .and_then(|s| parse_num(s))
                        .zip(pos.get(2).and_then(|s| parse_num(s)));
                    let a = api::DumpGuestMemory {
                        paging,
                        protocol: format!("file:{f}"),
                        detach: Some(detach),
                        begin: range.map(|(b, _)| b),
                        length: range.map(|(_, l)| l),
                        ..Default::default()
                    };
                    typed(m.dump_guest_memory(a, cx)).map(|_| String::new())
                }
            }
        }
        "sendkey" => match w(0) {
            None => Err(missing(cmd, "string")),
            Some(spec) => {
                let mut keys = Vec::new();
                let mut bad = None;
                for k in spec.split('-').filter(|k| !k.is_empty()) {
                    let k = match k {
                        "ctrl_l" => "ctrl",
                        "alt_l" => "alt",
                        "shift_l" => "shift",
                        "space" => "spc",
                        "enter" | "return" => "ret",
                        other => other,
                    };
                    if crate::input::QKEYCODES.contains(&k) {
                        keys.push(api::KeyValue::Qcode(api::QKeyCode::from_name(k)));
                    } else if let Some(n) = parse_num(k) {
                        keys.push(api::KeyValue::Number(n));
                    } else {
                        bad = Some(k.to_string());
                        break;
                    }
                }
                match bad {
                    Some(k) => Err(format!("invalid parameter: {k}")),
                    None => {
                        let a = api::SendKey {
                            keys,
                            hold_time: w(1).and_then(parse_num),
                        };
                        typed(m.send_key(a, cx)).map(|_| String::new())
                    }
                }
            }
        },
        "trace-event" => match (w(0), w(1)) {
            (Some(n), Some(state)) => {
                let a = api::TraceEventSetState {
                    name: n.to_string(),
                    enable: state == "on",
                    vcpu: w(2).and_then(parse_num),
                    ..Default::default()
                };
                typed(m.trace_event_set_state(a, cx)).map(|_| String::new())
            }
            _ => Err(missing(cmd, "string")),
        },
        "set_password" => match (w(0), w(1)) {
            (Some(p), Some(pw)) => {
                let a = api::SetPassword {
                    protocol: p.to_string(),
                    password: pw.to_string(),
                    connected: w(2).map(str::to_string),
                };
                typed(m.set_password(a, cx)).map(|_| String::new())
            }
            _ => Err(missing(cmd, "string")),
        },
        "expire_password" => match (w(0), w(1)) {
            (Some(p), Some(t)) => qmp(m, cx, "expire_password", json!({"protocol": p, "time": t}))
                .map(|_| String::new()),
            _ => Err(missing(cmd, "string")),
        },
        "closefd" => match w(0) {
            None => Err(missing(cmd, "string")),
            Some(n) => qmp(m, cx, "closefd", json!({ "fdname": n })).map(|_| String::new()),
        },
        "qom-list" => {
            let path = w(0).unwrap_or("/");
            let a = api::QomList {
                path: path.to_string(),
            };
            typed(m.qom_list(a, cx)).map(|list| {
                let mut o = String::new();
                for p in list {
                    let _ = writeln!(o, "{} ({})", p.name, p.r#type);
                }
                o
            })
        }
        "qom-set" => match (w(0), w(1), w(2)) {
            (Some(p), Some(prop), Some(v)) => {
                let val =
                    serde_json::from_str::<Value>(v).unwrap_or_else(|_| Value::String(v.into()));
                qmp(
                    m,
                    cx,
                    "qom-set",
                    json!({"path": p, "property": prop, "value": val}),
                )
                .map(|_| String::new())
            }
            _ => Err(missing(cmd, "string")),
        },
        _ => Err(format!("unknown command: '{cmd}'")),
    };
    match r {
        Ok(s) => s,
        // QEMU 5.0 and later prefix command errors; parse errors and
        // unknown commands print as they are.
        Err(e) if m.compat().hmp_error_prefix && !is_parse_error(&e) => format!("Error: {e}\n"),
        Err(e) => e + "\n",
    }
}

fn is_parse_error(e: &str) -> bool {
    e == "Cannot access memory"
        || e.starts_with("unknown command: ")
        || e.contains(" expected\nTry \"help ")
        || e.starts_with("invalid ")
}

/// Monitor output uses CRLF line ends.
pub fn crlf(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + s.len() / 16);
    for c in s.chars() {
        if c == '\n' {
            o.push('\r');
        }
        o.push(c);
    }
    o
}

/// `human-monitor-command`: run one HMP command line, `cpu_index` picking the monitor's
/// current vCPU for it; the output with QEMU's line ends.
pub fn human_monitor_command(
    m: &mut Machine,
    line: &str,
    cpu_index: Option<i64>,
    cx: &mut Cx,
) -> Result<String, qmpkit_wire::QmpError> {
    let cpus = crate::identity::cpu_paths(m);
    let cpu = match cpu_index {
        None => cpus.first().map(|c| c.0).unwrap_or(0),
        Some(i) => match cpus.iter().find(|c| c.0 as i64 == i) {
            Some(c) => c.0,
            None => {
                return Err(qmpkit_wire::QmpError::generic(
                    "Parameter 'cpu-index' expects a CPU number",
                ))
            }
        },
    };
    m.misc.hmp_cpu = cpu;
    let out = run_line(m, cx, line);
    Ok(crlf(&out))
}
