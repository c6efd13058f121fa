//! Identity and capabilities: what the machine is (version, name, UUID,
//! target, machine types, CPU models) and what it has (vCPUs and their
//! threads, iothreads, the PCI bus, mice, memory, the TPM).
//!
//! Values come in QEMU 2.12's richest shape; the served schema cuts them to
//! its own (see [`crate::shape`]).

use serde_json::{json, Map, Value};

use crate::{arg_str, generic, Args, CmdResult, Cx, Machine, MachineConfig};

/// Commands this module implements.
pub const HANDLED: &[&str] = &[
    "query-version",
    "query-name",
    "query-uuid",
    "query-kvm",
    "query-target",
    "query-machines",
    "query-cpu-definitions",
    "query-cpu-model-expansion",
    "query-cpu-model-comparison",
    "query-cpu-model-baseline",
    "query-events",
    "query-command-line-options",
    "query-cpus",
    "query-cpus-fast",
    "query-hotpluggable-cpus",
    "query-iothreads",
    "query-pci",
    "query-memory-size-summary",
    "query-memdev",
    "query-memory-devices",
    "query-vm-generation-id",
    "query-tpm",
    "query-tpm-models",
    "query-tpm-types",
    "query-acpi-ospm-status",
    "cpu",
];

/// One vCPU.
#[derive(Debug, Clone, PartialEq)]
pub struct Cpu {
    /// `CPU`/`cpu-index`.
    pub index: u32,
    pub socket: u32,
    pub core: u32,
    pub thread: u32,
    pub qom_path: String,
    /// The host thread that runs it.
    pub thread_id: i64,
    pub hotplugged: bool,
}

/// Identity values of one machine.
#[derive(Debug, Clone)]
pub struct IdentityState {
    pub name: Option<String>,
    pub uuid: String,
    /// The VM generation ID (when a `vmgenid` device is configured).
    pub vm_gen_id: Option<String>,
    /// Present vCPUs, by index.
    pub cpus: Vec<Cpu>,
    /// First host thread id handed out for this machine.
    pub thread_base: i64,
}

impl IdentityState {
    pub fn new(config: &MachineConfig, index: usize) -> IdentityState {
        let stride = config.max_cpus.max(config.cpus) as i64 + 8;
        let thread_base = std::process::id() as i64 + 1 + index as i64 * stride;
        let mut s = IdentityState {
            name: config.name.clone(),
            uuid: config
                .uuid
                .clone()
                .unwrap_or_else(|| "00000000-0000-0000-0000-000000000000".into()),
            vm_gen_id: config
                .devices
                .iter()
                .find(|d| d.driver == "vmgenid")
                .map(|d| {
                    d.props
                        .get("guid")
                        .filter(|g| g.as_str() != "auto")
                        .cloned()
                        .unwrap_or_else(|| "324e6eaf-d1d1-4bf6-bf41-b9bb6c91fb87".into())
                }),
            cpus: Vec::new(),
            thread_base,
        };
        for i in 0..config.vcpus() {
            s.cpus.push(s.make_cpu(config, i, false));
        }
        s
    }

    fn topology(config: &MachineConfig) -> (u32, u32) {
        let threads = config.threads.max(1);
        let cores = config.cores.max(1);
        (cores, threads)
    }

    fn make_cpu(&self, config: &MachineConfig, index: u32, hotplugged: bool) -> Cpu {
        let (cores, threads) = Self::topology(config);
        Cpu {
            index,
            socket: index / (cores * threads),
            core: (index / threads) % cores,
            thread: index % threads,
            qom_path: if hotplugged {
                format!("/machine/peripheral-anon/device[{index}]")
            } else {
                format!("/machine/unattached/device[{index}]")
            },
            thread_id: self.thread_base + 1 + index as i64,
            hotplugged,
        }
    }
}

/// Plug vCPU `id` (`cpu-add`): QEMU's checks and messages.
pub fn plug_cpu(m: &mut Machine, id: i64) -> Result<(), qmpkit_wire::QmpError> {
    let max = m.config.max_cpus.max(m.config.cpus) as i64;
    if id < 0 || id >= max {
        return Err(generic(format!(
            "Unable to add CPU: {id}, max allowed: {}",
            max - 1
        )));
    }
    if m.ident.cpus.iter().any(|c| c.index as i64 == id) {
        return Err(generic(format!(
            "Unable to add CPU: {id}, it already exists"
        )));
    }
    let cpu = m.ident.make_cpu(&m.config, id as u32, true);
    m.ident.cpus.push(cpu);
    m.ident.cpus.sort_by_key(|c| c.index);
    Ok(())
}

fn cpu_props(c: &Cpu) -> Value {
    json!({"socket-id": c.socket, "core-id": c.core, "thread-id": c.thread})
}

fn query_cpus(m: &Machine) -> Value {
    Value::Array(
        m.ident
            .cpus
            .iter()
            .enumerate()
            .map(|(i, c)| {
                json!({
                    "CPU": c.index,
                    "current": i == 0,
                    // The boot CPU works; the others wait in HLT.
                    "halted": i != 0,
                    "qom_path": c.qom_path,
                    "thread_id": c.thread_id,
                    "props": cpu_props(c),
                    "arch": "x86",
                    "pc": 0xffff_fff0u64 + if i == 0 { 0 } else { 0x1000 },
                })
            })
            .collect(),
    )
}

fn query_cpus_fast(m: &Machine) -> Value {
    Value::Array(
        m.ident
            .cpus
            .iter()
            .map(|c| {
                json!({
                    "cpu-index": c.index,
                    "qom-path": c.qom_path,
                    "thread-id": c.thread_id,
                    "props": cpu_props(c),
                    "arch": "x86",
                    "target": "x86_64",
                })
            })
            .collect(),
    )
}

fn hotpluggable_cpus(m: &Machine) -> Value {
    let max = m.config.max_cpus.max(m.config.cpus);
    let mut out = Vec::new();
    // QEMU lists the slots highest first.
    for i in (0..max).rev() {
        let probe = m.ident.make_cpu(&m.config, i, false);
        let mut v = json!({
            "type": crate::devices::cpu_type_name(&m.config),
            "vcpus-count": 1,
            "props": cpu_props(&probe),
        });
        if let Some(c) = m.ident.cpus.iter().find(|c| c.index == i) {
            if let Some(o) = v.as_object_mut() {
                o.insert("qom-path".into(), Value::String(c.qom_path.clone()));
            }
        }
        out.push(v);
    }
    Value::Array(out)
}

fn machines(m: &Machine) -> Value {
    // QEMU 8.0 tells whether the machine type supports ACPI.
    let has_acpi = crate::shape::member_names(&m.schema, "MachineInfo")
        .iter()
        .any(|n| n == "acpi");
    let mut v = Vec::new();
    for (name, alias, default) in [
        ("pc-i440fx-2.12", Some("pc"), true),
        ("pc-q35-2.12", Some("q35"), false),
        ("pc-i440fx-2.11", None, false),
        ("pc-q35-2.11", None, false),
        ("pc-i440fx-2.10", None, false),
        ("pc-1.3", None, false),
        ("isapc", None, false),
        ("none", None, false),
    ] {
        let mut o = Map::new();
        o.insert("name".into(), json!(name));
        if let Some(a) = alias {
            o.insert("alias".into(), json!(a));
        }
        if default {
            o.insert("is-default".into(), json!(true));
        }
        let cpu_max = crate::config::machine_type_info(name).map_or(255, |(_, max)| max);
        o.insert("cpu-max".into(), json!(cpu_max));
        o.insert("hotpluggable-cpus".into(), json!(name != "none"));
        if has_acpi {
            o.insert("acpi".into(), json!(!matches!(name, "none" | "isapc")));
        }
        v.push(Value::Object(o));
    }
    Value::Array(v)
}

const CPU_MODELS: &[&str] = &[
    "max",
    "host",
    "base",
    "qemu64",
    "qemu32",
    "kvm64",
    "kvm32",
    "phenom",
    "core2duo",
    "coreduo",
    "pentium",
    "pentium2",
    "pentium3",
    "athlon",
    "n270",
    "Conroe",
    "Penryn",
    "Nehalem",
    "Westmere",
    "SandyBridge",
    "IvyBridge",
    "Haswell",
    "Broadwell",
    "Skylake-Client",
    "Skylake-Server",
    "Opteron_G1",
    "Opteron_G2",
    "Opteron_G3",
    "Opteron_G4",
    "Opteron_G5",
    "EPYC",
];

fn cpu_definitions() -> Value {
    Value::Array(
        CPU_MODELS
            .iter()
            .map(|n| {
                json!({
                    "name": n,
                    "migration-safe": !matches!(*n, "host" | "max"),
                    "static": *n == "base",
                    "unavailable-features": [],
                    "typename": format!("{n}-x86_64-cpu"),
                })
            })
            .collect(),
    )
}

fn cpu_model_expansion(args: &Args) -> CmdResult {
    let kind = arg_str(args, "type").unwrap_or("full");
    let model = args.get("model").and_then(Value::as_object);
    let name = model
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("");
    if !CPU_MODELS.contains(&name) {
        return Err(generic(format!("CPU model '{name}' not found")));
    }
    let mut props = Map::new();
    for (k, v) in [
        ("fpu", true),
        ("de", true),
        ("pse", true),
        ("tsc", true),
        ("msr", true),
        ("pae", true),
        ("mce", true),
        ("cx8", true),
        ("apic", true),
        ("sep", true),
        ("mtrr", true),
        ("pge", true),
        ("mca", true),
        ("cmov", true),
        ("pat", true),
        ("pse36", true),
        ("clflush", true),
        ("mmx", true),
        ("fxsr", true),
        ("sse", true),
        ("sse2", true),
        ("syscall", true),
        ("nx", true),
        ("lm", true),
        ("sse3", true),
        ("cx16", true),
        ("lahf-lm", true),
    ] {
        props.insert(k.into(), Value::Bool(v));
    }
    if let Some(given) = model
        .and_then(|m| m.get("props"))
        .and_then(Value::as_object)
    {
        for (k, v) in given {
            props.insert(k.clone(), v.clone());
        }
    }
    let out_name = if kind == "static" { "base" } else { name };
    if kind == "full" {
        props.insert("model-id".into(), json!("QEMU Virtual CPU version 2.5+"));
        props.insert("vendor".into(), json!("AuthenticAMD"));
    }
    Ok(json!({"model": {"name": out_name, "props": props}}))
}

fn command_line_options(args: &Args) -> CmdResult {
    let table: &[(&str, &[(&str, &str)])] = &[
        ("acpi", &[("data", "string"), ("file", "string")]),
        (
            "boot-opts",
            &[
                ("order", "string"),
                ("once", "string"),
                ("menu", "boolean"),
                ("splash", "string"),
                ("splash-time", "string"),
                ("reboot-timeout", "string"),
                ("strict", "boolean"),
            ],
        ),
        (
            "chardev",
            &[
                ("backend", "string"),
                ("path", "string"),
                ("host", "string"),
                ("port", "string"),
                ("server", "boolean"),
                ("wait", "boolean"),
                ("logfile", "string"),
                ("mux", "boolean"),
            ],
        ),
        ("device", &[]),
        (
            "drive",
            &[
                ("bus", "number"),
                ("unit", "number"),
                ("if", "string"),
                ("index", "number"),
                ("media", "string"),
                ("file", "string"),
                ("format", "string"),
                ("cache", "string"),
                ("aio", "string"),
                ("readonly", "boolean"),
                ("werror", "string"),
                ("rerror", "string"),
                ("id", "string"),
            ],
        ),
        (
            "machine",
            &[
                ("type", "string"),
                ("accel", "string"),
                ("kernel-irqchip", "boolean"),
                ("dump-guest-core", "boolean"),
                ("mem-merge", "boolean"),
                ("usb", "boolean"),
                ("graphics", "boolean"),
            ],
        ),
        (
            "memory",
            &[("size", "size"), ("slots", "number"), ("maxmem", "size")],
        ),
        (
            "mon",
            &[
                ("mode", "string"),
                ("chardev", "string"),
                ("default", "boolean"),
                ("pretty", "boolean"),
            ],
        ),
        (
            "name",
            &[
                ("guest", "string"),
                ("process", "string"),
                ("debug-threads", "boolean"),
            ],
        ),
        ("netdev", &[]),
        ("object", &[]),
        (
            "option-rom",
            &[("romfile", "string"), ("bootindex", "number")],
        ),
        ("realtime", &[("mlock", "boolean")]),
        (
            "rtc",
            &[
                ("base", "string"),
                ("clock", "string"),
                ("driftfix", "string"),
            ],
        ),
        (
            "smp-opts",
            &[
                ("cpus", "number"),
                ("sockets", "number"),
                ("cores", "number"),
                ("threads", "number"),
                ("maxcpus", "number"),
            ],
        ),
        (
            "spice",
            &[
                ("port", "number"),
                ("tls-port", "number"),
                ("addr", "string"),
                ("password", "string"),
                ("disable-ticketing", "boolean"),
            ],
        ),
        (
            "tpmdev",
            &[
                ("type", "string"),
                ("path", "string"),
                ("cancel-path", "string"),
            ],
        ),
        (
            "vnc",
            &[
                ("vnc", "string"),
                ("to", "number"),
                ("password", "boolean"),
                ("reverse", "boolean"),
                ("lossy", "boolean"),
                ("share", "string"),
            ],
        ),
    ];
    let render = |(name, params): &(&str, &[(&str, &str)])| {
        json!({
            "parameters": params.iter().map(|(n, t)| json!({"name": n, "type": t})).collect::<Vec<_>>(),
            "option": name,
        })
    };
    match arg_str(args, "option") {
        None => Ok(Value::Array(table.iter().map(render).collect())),
        Some(o) => match table.iter().find(|(n, _)| *n == o) {
            Some(e) => Ok(Value::Array(vec![render(e)])),
            None => Err(generic(format!("Invalid option name: {o}"))),
        },
    }
}

/// `(vendor, device, class, description)` of a PCI device model.
fn pci_ids(driver: &str) -> Option<(u64, u64, u64, &'static str)> {
    Some(match driver {
        "i440FX" => (0x8086, 0x1237, 0x0600, "Host bridge"),
        "PIIX3" => (0x8086, 0x7000, 0x0601, "ISA bridge"),
        "piix3-ide" => (0x8086, 0x7010, 0x0101, "IDE controller"),
        "PIIX4_PM" => (0x8086, 0x7113, 0x0680, "Bridge"),
        "mch" => (0x8086, 0x29c0, 0x0600, "Host bridge"),
        "ICH9-LPC" => (0x8086, 0x2918, 0x0601, "ISA bridge"),
        "ich9-usb-uhci1" => (0x8086, 0x2934, 0x0c03, "USB controller"),
        "pci-bridge" => (0x1b36, 0x0001, 0x0604, "PCI bridge"),
        "virtio-net-pci" => (0x1af4, 0x1000, 0x0200, "Ethernet controller"),
        "virtio-blk-pci" => (0x1af4, 0x1001, 0x0100, "SCSI controller"),
        "virtio-balloon-pci" => (0x1af4, 0x1002, 0x00ff, "Class 00ff"),
        "virtio-scsi-pci" => (0x1af4, 0x1004, 0x0100, "SCSI controller"),
        "virtio-serial-pci" => (0x1af4, 0x1003, 0x0780, "Class 0780"),
        "virtio-rng-pci" => (0x1af4, 0x1005, 0x00ff, "Class 00ff"),
        "e1000" => (0x8086, 0x100e, 0x0200, "Ethernet controller"),
        "rtl8139" => (0x10ec, 0x8139, 0x0200, "Ethernet controller"),
        "VGA" => (0x1234, 0x1111, 0x0300, "VGA controller"),
        "cirrus-vga" => (0x1013, 0x00b8, 0x0300, "VGA controller"),
        "qxl-vga" => (0x1b36, 0x0100, 0x0300, "VGA controller"),
        "piix3-usb-uhci" => (0x8086, 0x7020, 0x0c03, "USB controller"),
        "nec-usb-xhci" => (0x1033, 0x0194, 0x0c03, "USB controller"),
        "ich9-ahci" => (0x8086, 0x2922, 0x0106, "SATA controller"),
        _ => return None,
    })
}

fn pci_device(
    slot: u64,
    function: u64,
    ids: (u64, u64, u64, &str),
    qdev_id: &str,
    regions: Vec<Value>,
    irq: Option<u64>,
) -> Value {
    let mut o = Map::new();
    o.insert("bus".into(), json!(0));
    o.insert("slot".into(), json!(slot));
    o.insert("function".into(), json!(function));
    o.insert("class_info".into(), json!({"desc": ids.3, "class": ids.2}));
    o.insert("id".into(), json!({"device": ids.1, "vendor": ids.0}));
    if let Some(i) = irq {
        o.insert("irq".into(), json!(i));
    }
    o.insert("qdev_id".into(), json!(qdev_id));
    o.insert("regions".into(), Value::Array(regions));
    Value::Object(o)
}

fn query_pci(m: &Machine) -> Value {
    let mut devs = Vec::new();
    let mut io = 0xc000u64;
    let mut mem = 0xfebf_0000u64;
    for d in crate::devices::pci_devices(m) {
        let slot = (d.devfn >> 3) as u64;
        let function = (d.devfn & 7) as u64;
        let ids = pci_ids(d.driver).unwrap_or((0x1b36, 0x0005, 0x00ff, "Class 00ff"));
        let (regions, irq) = match d.driver {
            "i440FX" | "PIIX3" | "mch" | "ICH9-LPC" => (vec![], None),
            "piix3-ide" => (
                vec![json!({"bar": 4, "type": "io", "address": 0xc000, "size": 16})],
                None,
            ),
            "PIIX4_PM" => (vec![], Some(9)),
            _ => {
                io += 0x40;
                mem -= 0x1000;
                (
                    vec![
                        json!({"bar": 0, "type": "io", "address": io, "size": 32}),
                        json!({"bar": 1, "type": "memory", "address": mem, "size": 4096,
                               "prefetch": false, "mem_type_64": false}),
                    ],
                    Some(10 + slot % 2),
                )
            }
        };
        devs.push(pci_device(slot, function, ids, &d.id, regions, irq));
    }
    json!([{"bus": 0, "devices": devs}])
}

fn query_memdev(m: &Machine) -> Value {
    Value::Array(
        m.config
            .memdevs()
            .map(|o| {
                let size = o
                    .props
                    .get("size")
                    .and_then(|s| crate::config::parse_size(s, 1))
                    .unwrap_or(0);
                let flag = |k: &str, def: bool| match o.props.get(k).map(String::as_str) {
                    Some("on") | Some("yes") | Some("true") => true,
                    Some(_) => false,
                    None => def,
                };
                json!({
                    "id": o.id,
                    "size": size,
                    "merge": flag("merge", true),
                    "dump": flag("dump", true),
                    "prealloc": flag("prealloc", false),
                    "host-nodes": [],
                    "policy": o.props.get("policy").cloned().unwrap_or_else(|| "default".into()),
                })
            })
            .collect(),
    )
}

fn memory_devices(m: &Machine) -> Vec<Value> {
    crate::devices::memory_devices(m)
}

fn filtered_enum(m: &Machine, type_name: &str, wanted: &[&str]) -> Value {
    Value::Array(
        wanted
            .iter()
            .filter(|w| crate::shape::enum_has(&m.schema, type_name, w))
            .map(|w| json!(w))
            .collect(),
    )
}

fn query_events(m: &Machine) -> Value {
    use qmpkit_schema::model::EntityKind;
    Value::Array(
        m.schema
            .iter()
            .filter(|(_, e)| matches!(e.kind, EntityKind::Event(_)))
            .map(|(_, e)| json!({"name": e.name}))
            .collect(),
    )
}

pub fn execute(m: &mut Machine, cmd: &str, args: &Args, _cx: &mut Cx) -> Option<CmdResult> {
    Some(Ok(match cmd {
        "query-version" => {
            let (a, b, c) = m.config.qemu_version;
            json!({"qemu": {"major": a, "minor": b, "micro": c}, "package": m.config.package})
        }
        "query-name" => match &m.ident.name {
            Some(n) => json!({"name": n}),
            None => json!({}),
        },
        "query-uuid" => json!({"UUID": m.ident.uuid}),
        "query-kvm" => json!({"enabled": m.config.kvm, "present": true}),
        "query-target" => json!({"arch": "x86_64"}),
        // QEMU 1.x: selects the monitor's current CPU, which QMP never uses.
        "cpu" => json!({}),
        "query-machines" => machines(m),
        "query-cpu-definitions" => cpu_definitions(),
        "query-cpu-model-expansion" => return Some(cpu_model_expansion(args)),
        "query-cpu-model-comparison" | "query-cpu-model-baseline" => {
            return Some(Err(generic(
                "this feature or command is not currently supported",
            )))
        }
        "query-events" => query_events(m),
        "query-command-line-options" => return Some(command_line_options(args)),
        "query-cpus" => query_cpus(m),
        "query-cpus-fast" => query_cpus_fast(m),
        "query-hotpluggable-cpus" => hotpluggable_cpus(m),
        "query-iothreads" => Value::Array(
            m.config
                .iothreads()
                .enumerate()
                .map(|(i, o)| {
                    json!({
                        "id": o.id,
                        "thread-id": m.ident.thread_base + 200 + i as i64,
                        "poll-max-ns": 32768,
                        "poll-grow": 0,
                        "poll-shrink": 0,
                    })
                })
                .collect(),
        ),
        "query-pci" => query_pci(m),
        "query-memory-size-summary" => {
            let plugged: u64 = memory_devices(m)
                .iter()
                .filter_map(|d| d["data"]["size"].as_u64())
                .sum();
            json!({"base-memory": m.config.memory_bytes, "plugged-memory": plugged})
        }
        "query-memdev" => query_memdev(m),
        "query-memory-devices" => Value::Array(memory_devices(m)),
        "query-vm-generation-id" => match &m.ident.vm_gen_id {
            Some(g) => json!({"guid": g}),
            None => return Some(Err(generic("VM Generation ID device not found"))),
        },
        "query-tpm" => match &m.config.tpm {
            Some(t) => {
                let mut data = Map::new();
                if let Some(p) = &t.cancel_path {
                    data.insert("cancel-path".into(), json!(p));
                }
                if let Some(p) = &t.path {
                    data.insert("path".into(), json!(p));
                }
                if t.kind == "emulator" {
                    data.insert("chardev".into(), json!(format!("char{}", t.id)));
                }
                json!([{"model": t.model, "options": {"type": t.kind, "data": data}, "id": t.id}])
            }
            None => json!([]),
        },
        "query-tpm-models" => filtered_enum(m, "TpmModel", &["tpm-tis", "tpm-crb"]),
        "query-tpm-types" => filtered_enum(m, "TpmType", &["passthrough", "emulator"]),
        "query-acpi-ospm-status" => Value::Array(
            memory_devices(m)
                .iter()
                .enumerate()
                .map(|(i, d)| {
                    let mut o = Map::new();
                    if let Some(id) = d["data"].get("id") {
                        o.insert("device".into(), id.clone());
                    }
                    o.insert("slot".into(), json!(i.to_string()));
                    o.insert("slot-type".into(), json!("DIMM"));
                    o.insert("source".into(), json!(0));
                    o.insert("status".into(), json!(0));
                    Value::Object(o)
                })
                .collect(),
        ),
        _ => return None,
    }))
}
