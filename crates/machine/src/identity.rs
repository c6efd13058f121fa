//! Identity and capabilities: what the machine is (version, name, UUID,
//! target, machine types, CPU models) and what it has (vCPUs and their
//! threads, iothreads, the PCI bus, mice, memory, the TPM), as the machine's
//! own typed values (`crate::api`); the QMP handlers in `crate::qmp::identity`
//! hand them out.

use serde_json::{json, Map, Value};

use crate::api;
use crate::devices::PlugInfo;
use crate::{generic, Machine, MachineConfig};
use qmpkit_qapi::Enum;
use qmpkit_wire::QmpError;

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
                // The first vCPU's APIC brings a device numbered after it (kvmvapic).
                format!(
                    "/machine/unattached/device[{}]",
                    if index == 0 { 0 } else { index + 1 }
                )
            },
            thread_id: self.thread_base + 1 + index as i64,
            hotplugged,
        }
    }
}

impl IdentityState {
    /// Hook: a vCPU is about to be plugged (QEMU's checks and messages).
    pub fn pre_plug(&self, config: &MachineConfig, info: &PlugInfo) -> Result<(), QmpError> {
        let Some(id) = info.cpu_index() else {
            return Ok(());
        };
        let id = i64::from(id);
        let max = config.max_cpus.max(config.cpus) as i64;
        if id >= max {
            return Err(generic(format!(
                "Unable to add CPU: {id}, max allowed: {}",
                max - 1
            )));
        }
        if self.cpus.iter().any(|c| c.index as i64 == id) {
            return Err(generic(format!(
                "Unable to add CPU: {id}, it already exists"
            )));
        }
        Ok(())
    }

    /// Hook: a vCPU joins the machine's CPU list.
    pub fn on_plug(&mut self, config: &MachineConfig, info: &PlugInfo) {
        let Some(id) = info.cpu_index() else {
            return;
        };
        let mut cpu = self.make_cpu(config, id, true);
        cpu.qom_path = info.path.clone();
        self.cpus.push(cpu);
        self.cpus.sort_by_key(|c| c.index);
    }

    /// Hook: a vCPU leaves the machine's CPU list.
    pub fn on_unplug(&mut self, info: &PlugInfo) {
        self.cpus.retain(|c| c.qom_path != info.path);
    }
}

/// The vCPUs present, as `(cpu-index, canonical QOM path)`, by index.
pub fn cpu_paths(m: &Machine) -> Vec<(u32, String)> {
    m.ident
        .cpus
        .iter()
        .map(|c| (c.index, c.qom_path.clone()))
        .collect()
}

fn cpu_props(c: &Cpu) -> api::CpuInstanceProperties {
    api::CpuInstanceProperties {
        node_id: None,
        socket_id: Some(c.socket.into()),
        core_id: Some(c.core.into()),
        thread_id: Some(c.thread.into()),
    }
}

/// `query-cpus`: the boot CPU works, the others wait in HLT.
pub fn cpus(m: &Machine) -> Vec<api::CpuInfo> {
    m.ident
        .cpus
        .iter()
        .enumerate()
        .map(|(i, c)| api::CpuInfo {
            cpu: c.index.into(),
            current: i == 0,
            halted: i != 0,
            qom_path: c.qom_path.clone(),
            thread_id: c.thread_id,
            props: Some(cpu_props(c)),
            arch: api::CpuInfoBranch::X86(api::CpuInfoX86 {
                pc: 0xffff_fff0i64 + if i == 0 { 0 } else { 0x1000 },
            }),
        })
        .collect()
}

/// `query-cpus-fast`: every CPU, as the machine knows it without asking the CPU.
pub fn query_cpus_fast(m: &Machine) -> Vec<api::CpuInfoFast> {
    m.ident
        .cpus
        .iter()
        .map(|c| api::CpuInfoFast {
            cpu_index: c.index.into(),
            qom_path: c.qom_path.clone(),
            thread_id: c.thread_id.into(),
            props: Some(cpu_props(c)),
            arch: api::CpuInfoArch::X86,
            target: api::SysEmuTarget::X8664,
        })
        .collect()
}

/// `query-hotpluggable-cpus`: every slot, highest first (as QEMU lists them).
pub fn hotpluggable_cpus(m: &Machine) -> Vec<api::HotpluggableCPU> {
    let max = m.config.max_cpus.max(m.config.cpus);
    (0..max)
        .rev()
        .map(|i| {
            let probe = m.ident.make_cpu(&m.config, i, false);
            api::HotpluggableCPU {
                r#type: crate::devices::cpu_type_name(&m.config).to_string(),
                vcpus_count: 1,
                props: cpu_props(&probe),
                qom_path: m
                    .ident
                    .cpus
                    .iter()
                    .find(|c| c.index == i)
                    .map(|c| c.qom_path.clone()),
            }
        })
        .collect()
}

/// The machine types: `(name, alias, default)`.
const MACHINE_TYPES: &[(&str, Option<&str>, bool)] = &[
    ("pc-i440fx-2.12", Some("pc"), true),
    ("pc-q35-2.12", Some("q35"), false),
    ("pc-i440fx-2.11", None, false),
    ("pc-q35-2.11", None, false),
    ("pc-i440fx-2.10", None, false),
    ("pc-1.3", None, false),
    ("isapc", None, false),
    ("none", None, false),
];

/// Whether a machine type supports ACPI (QEMU 8.0's `MachineInfo.acpi`).
pub fn machine_type_has_acpi(name: &str) -> bool {
    !matches!(name, "none" | "isapc")
}

/// `query-machines`.
pub fn machines() -> Vec<api::MachineInfo> {
    MACHINE_TYPES
        .iter()
        .map(|&(name, alias, default)| api::MachineInfo {
            name: name.to_string(),
            alias: alias.map(str::to_string),
            is_default: default.then_some(true),
            cpu_max: crate::config::machine_type_info(name).map_or(255, |(_, max)| max.into()),
            hotpluggable_cpus: name != "none",
            numa_mem_supported: None,
            deprecated: None,
            default_cpu_type: None,
            default_ram_id: None,
            acpi: None,
        })
        .collect()
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

/// `query-cpu-definitions`.
pub fn cpu_definitions() -> Vec<api::CpuDefinitionInfo> {
    CPU_MODELS
        .iter()
        .map(|n| api::CpuDefinitionInfo {
            name: n.to_string(),
            migration_safe: Some(!matches!(*n, "host" | "max")),
            r#static: *n == "base",
            unavailable_features: Some(Vec::new()),
            typename: format!("{n}-x86_64-cpu"),
            alias_of: None,
            deprecated: None,
        })
        .collect()
}

/// The features every CPU model of the machine has.
const BASE_FEATURES: &[&str] = &[
    "fpu", "de", "pse", "tsc", "msr", "pae", "mce", "cx8", "apic", "sep", "mtrr", "pge", "mca",
    "cmov", "pat", "pse36", "clflush", "mmx", "fxsr", "sse", "sse2", "syscall", "nx", "lm", "sse3",
    "cx16", "lahf-lm",
];

/// `query-cpu-model-expansion`: `model`'s properties, the given ones over the base set.
pub fn cpu_model_expansion(
    kind: &api::CpuModelExpansionType,
    model: &api::CpuModelInfo,
) -> Result<api::CpuModelInfo, QmpError> {
    let name = model.name.as_str();
    if !CPU_MODELS.contains(&name) {
        return Err(generic(format!("CPU model '{name}' not found")));
    }
    let mut props = Map::new();
    for k in BASE_FEATURES {
        props.insert(k.to_string(), Value::Bool(true));
    }
    if let Some(Value::Object(given)) = &model.props {
        for (k, v) in given {
            props.insert(k.clone(), v.clone());
        }
    }
    let out_name = if *kind == api::CpuModelExpansionType::Static {
        "base"
    } else {
        name
    };
    if *kind == api::CpuModelExpansionType::Full {
        props.insert("model-id".into(), json!("QEMU Virtual CPU version 2.5+"));
        props.insert("vendor".into(), json!("AuthenticAMD"));
    }
    Ok(api::CpuModelInfo {
        name: out_name.to_string(),
        props: Some(Value::Object(props)),
    })
}

/// The command-line options `query-command-line-options` describes: option and
/// `(parameter, type)`s.
#[rustfmt::skip]
const COMMAND_LINE_OPTIONS: &[(&str, &[(&str, &str)])] = &[

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

/// `query-command-line-options`: all options, or the one named `option`.
pub fn command_line_options(
    option: Option<&str>,
) -> Result<Vec<api::CommandLineOptionInfo>, QmpError> {
    let render = |(name, params): &(&str, &[(&str, &str)])| api::CommandLineOptionInfo {
        option: name.to_string(),
        parameters: params
            .iter()
            .map(|(n, t)| api::CommandLineParameterInfo {
                name: n.to_string(),
                r#type: api::CommandLineParameterType::from_name(t),
                help: None,
                default: None,
            })
            .collect(),
    };
    match option {
        None => Ok(COMMAND_LINE_OPTIONS.iter().map(render).collect()),
        Some(o) => match COMMAND_LINE_OPTIONS.iter().find(|(n, _)| *n == o) {
            Some(e) => Ok(vec![render(e)]),
            None => Err(generic(format!("Invalid option name: {o}"))),
        },
    }
}

/// `query-iothreads`.
pub fn iothreads(m: &Machine) -> Vec<api::IOThreadInfo> {
    m.config
        .iothreads()
        .enumerate()
        .map(|(i, o)| api::IOThreadInfo {
            id: o.id.clone(),
            thread_id: m.ident.thread_base + 200 + i as i64,
            poll_max_ns: 32768,
            poll_grow: 0,
            poll_shrink: 0,
        })
        .collect()
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
        "rocker" => (0x1b36, 0x0006, 0x0280, "Network controller"),
        "VGA" => (0x1234, 0x1111, 0x0300, "VGA controller"),
        "cirrus-vga" => (0x1013, 0x00b8, 0x0300, "VGA controller"),
        "qxl-vga" => (0x1b36, 0x0100, 0x0300, "VGA controller"),
        "piix3-usb-uhci" => (0x8086, 0x7020, 0x0c03, "USB controller"),
        "nec-usb-xhci" => (0x1033, 0x0194, 0x0c03, "USB controller"),
        "ich9-ahci" => (0x8086, 0x2922, 0x0106, "SATA controller"),
        _ => return None,
    })
}

fn io_region(bar: i64, address: i64, size: i64) -> api::PciMemoryRegion {
    api::PciMemoryRegion {
        bar,
        r#type: "io".into(),
        address,
        size,
        prefetch: None,
        mem_type_64: None,
    }
}

/// `query-pci`: bus 0 and the devices on it.
pub fn pci(m: &Machine) -> Vec<api::PciInfo> {
    let mut devices = Vec::new();
    let mut io = 0xc000i64;
    let mut mem = 0xfebf_0000i64;
    for d in crate::devices::pci_devices(m) {
        let slot = d.devfn >> 3;
        let function = d.devfn & 7;
        let (vendor, device, class, desc) =
            pci_ids(d.driver).unwrap_or((0x1b36, 0x0005, 0x00ff, "Class 00ff"));
        let (regions, irq) = match d.driver {
            "i440FX" | "PIIX3" | "mch" | "ICH9-LPC" => (vec![], None),
            "piix3-ide" => (vec![io_region(4, 0xc000, 16)], None),
            "PIIX4_PM" => (vec![], Some(9)),
            _ => {
                io += 0x40;
                mem -= 0x1000;
                (
                    vec![
                        io_region(0, io, 32),
                        api::PciMemoryRegion {
                            bar: 1,
                            r#type: "memory".into(),
                            address: mem,
                            size: 4096,
                            prefetch: Some(false),
                            mem_type_64: Some(false),
                        },
                    ],
                    Some(10 + slot % 2),
                )
            }
        };
        devices.push(api::PciDeviceInfo {
            bus: 0,
            slot,
            function,
            class_info: api::PciDeviceClass {
                desc: Some(desc.to_string()),
                class: class as i64,
            },
            id: api::PciDeviceId {
                device: device as i64,
                vendor: vendor as i64,
            },
            irq,
            qdev_id: d.id,
            pci_bridge: None,
            regions,
        });
    }
    vec![api::PciInfo { bus: 0, devices }]
}

/// `query-memdev`: the memory back ends of the configuration.
pub fn memdevs(m: &Machine) -> Vec<api::Memdev> {
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
            api::Memdev {
                id: Some(o.id.clone()),
                size,
                merge: flag("merge", true),
                dump: flag("dump", true),
                prealloc: flag("prealloc", false),
                host_nodes: Vec::new(),
                policy: api::HostMemPolicy::from_name(
                    o.props.get("policy").map_or("default", String::as_str),
                ),
            }
        })
        .collect()
}

/// `query-memory-devices`: the DIMMs plugged in.
pub fn memory_devices(m: &Machine) -> Vec<api::MemoryDeviceInfo> {
    crate::devices::memory_devices(m)
}

/// The plugged memory devices' `(id, size)`.
fn dimm_ids_and_sizes(m: &Machine) -> Vec<(Option<String>, u64)> {
    memory_devices(m)
        .into_iter()
        .map(|d| match d {
            api::MemoryDeviceInfo::Dimm(d) => (d.id, d.size.max(0) as u64),
            api::MemoryDeviceInfo::Unknown(v) => (
                v["data"]["id"].as_str().map(str::to_string),
                v["data"]["size"].as_u64().unwrap_or(0),
            ),
        })
        .collect()
}

/// `query-memory-size-summary`.
pub fn memory_size_summary(m: &Machine) -> api::MemoryInfo {
    let plugged = dimm_ids_and_sizes(m).iter().map(|d| d.1).sum();
    api::MemoryInfo {
        base_memory: m.config.memory_bytes,
        plugged_memory: Some(plugged),
    }
}

/// `query-acpi-ospm-status`: one DIMM slot per memory device, status 0.
pub fn acpi_ospm_status(m: &Machine) -> Vec<api::ACPIOSTInfo> {
    dimm_ids_and_sizes(m)
        .into_iter()
        .enumerate()
        .map(|(i, (id, _))| api::ACPIOSTInfo {
            device: id,
            slot: i.to_string(),
            slot_type: api::ACPISlotType::Dimm,
            source: 0,
            status: 0,
        })
        .collect()
}

/// `query-tpm`: the configured TPM, if any.
pub fn tpm(m: &Machine) -> Vec<api::TPMInfo> {
    let Some(t) = &m.config.tpm else {
        return Vec::new();
    };
    let options = match t.kind.as_str() {
        "passthrough" => api::TpmTypeOptions::Passthrough(api::TPMPassthroughOptions {
            path: t.path.clone(),
            cancel_path: t.cancel_path.clone(),
        }),
        "emulator" => api::TpmTypeOptions::Emulator(api::TPMEmulatorOptions {
            chardev: format!("char{}", t.id),
        }),
        other => {
            let mut data = Map::new();
            if let Some(p) = &t.cancel_path {
                data.insert("cancel-path".into(), json!(p));
            }
            if let Some(p) = &t.path {
                data.insert("path".into(), json!(p));
            }
            api::TpmTypeOptions::Unknown(json!({"type": other, "data": data}))
        }
    };
    vec![api::TPMInfo {
        id: t.id.clone(),
        model: api::TpmModel::from_name(&t.model),
        options,
    }]
}

/// The TPM models the machine offers.
pub const TPM_MODELS: &[&str] = &["tpm-tis", "tpm-crb"];
/// The TPM back-end types the machine offers.
pub const TPM_TYPES: &[&str] = &["passthrough", "emulator"];
