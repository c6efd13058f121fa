//! The static QOM type registry: type names, parents, interfaces, and the
//! properties each type declares. Nothing here is per machine.

/// One property a type declares (qdev static property or class property).
#[derive(Debug)]
pub struct PropDef {
    pub name: &'static str,
    /// QOM type name as `qom-list` reports it (`str`, `uint32`, `bool`, …).
    pub ty: &'static str,
    /// Default value as JSON text; `None` when the property has no value to
    /// read (write-only or unset string).
    pub default: Option<&'static str>,
    /// Description as `device-list-properties` reports it.
    pub desc: Option<&'static str>,
    /// Settable after creation (class properties of objects); qdev static
    /// properties are not settable once the device is realized.
    pub dynamic: bool,
}

/// One QOM type.
#[derive(Debug)]
pub struct TypeDef {
    pub name: &'static str,
    pub parent: Option<&'static str>,
    pub is_abstract: bool,
    pub interfaces: &'static [&'static str],
    pub props: &'static [PropDef],
    /// For device types: the bus type they plug into (`PCI`, `IDE`, …).
    pub bus: Option<&'static str>,
    /// For device types: `-device`/`device_add` may create it.
    pub user_creatable: bool,
    /// For device types: can be unplugged/plugged at runtime.
    pub hotpluggable: bool,
}

macro_rules! p {
    ($n:expr, $t:expr) => {
        PropDef {
            name: $n,
            ty: $t,
            default: None,
            desc: None,
            dynamic: false,
        }
    };
    ($n:expr, $t:expr, $d:expr) => {
        PropDef {
            name: $n,
            ty: $t,
            default: Some($d),
            desc: None,
            dynamic: false,
        }
    };
    ($n:expr, $t:expr, $d:expr, $desc:expr) => {
        PropDef {
            name: $n,
            ty: $t,
            default: Some($d),
            desc: Some($desc),
            dynamic: false,
        }
    };
}

macro_rules! dp {
    ($n:expr, $t:expr, $d:expr) => {
        PropDef {
            name: $n,
            ty: $t,
            default: Some($d),
            desc: None,
            dynamic: true,
        }
    };
}

macro_rules! t {
    ($n:expr, $p:expr) => {
        TypeDef {
            name: $n,
            parent: $p,
            is_abstract: false,
            interfaces: &[],
            props: &[],
            bus: None,
            user_creatable: false,
            hotpluggable: false,
        }
    };
}

const ON_OFF: &str = "on/off";
const DRIVE: &str = "Node name or ID of a block device to use as a backend";
const CHARDEV: &str = "ID of a chardev to use as a backend";
const NETDEV: &str = "ID of a netdev to use as a backend";
const MAC: &str = "Ethernet 6-byte MAC Address, example: 52:54:00:12:34:56";
const ADDR: &str = "Slot and optional function number, example: 06.0 or 06";
const ON_OFF_AUTO: &str = "on/off/auto";

static PCI_PROPS: &[PropDef] = &[
    p!("addr", "int32", "-1", ADDR),
    p!("romfile", "str", "null"),
    p!("rombar", "uint32", "1"),
    p!("multifunction", "bool", "false", ON_OFF),
    p!("command_serr_enable", "bool", "true", ON_OFF),
    p!("x-pcie-lnksta-dllla", "bool", "true", ON_OFF),
    p!("x-pcie-extcap-init", "bool", "true", ON_OFF),
];

static NIC_PROPS: &[PropDef] = &[
    dp!("bootindex", "int32", "-1"),
    p!("mac", "str", "null", MAC),
    p!("vlan", "int32", "-1", "Integer VLAN id to connect to"),
    p!("netdev", "str", "null", NETDEV),
];

static ROCKER_PROPS: &[PropDef] = &[
    p!("name", "str"),
    p!("world", "str"),
    p!("switch_id", "uint64", "0"),
    PropDef {
        desc: Some(MAC),
        ..p!("fp_start_macaddr", "str")
    },
    // The back ends of the switch's ports, in port order.
    p!("ports", "list", "[]"),
];

static E1000_PROPS: &[PropDef] = &[
    dp!("bootindex", "int32", "-1"),
    p!("autonegotiation", "bool", "true", ON_OFF),
    p!("mitigation", "bool", "true", ON_OFF),
    p!("extra_mac_registers", "bool", "true", ON_OFF),
    p!("migrate_tso_props", "bool", "true", ON_OFF),
];

static VIRTIO_PCI_PROPS: &[PropDef] = &[
    p!(
        "virtio-pci-bus-master-bug-migration",
        "bool",
        "false",
        ON_OFF
    ),
    p!("disable-legacy", "OnOffAuto", "\"auto\"", ON_OFF_AUTO),
    p!("disable-modern", "bool", "false", ON_OFF),
    p!("migrate-extra", "bool", "true", ON_OFF),
    p!("modern-pio-notify", "bool", "false", ON_OFF),
    p!("x-disable-pcie", "bool", "false", ON_OFF),
    p!("page-per-vq", "bool", "false", ON_OFF),
    p!("x-ignore-backend-features", "bool", "false", ON_OFF),
    p!("ats", "bool", "false", ON_OFF),
    p!("x-pcie-deverr-init", "bool", "true", ON_OFF),
    p!("x-pcie-lnkctl-init", "bool", "true", ON_OFF),
    p!("x-pcie-pm-init", "bool", "true", ON_OFF),
    p!("ioeventfd", "bool", "true", ON_OFF),
    p!("vectors", "uint32", "2"),
];

static VIRTIO_DEV_PROPS: &[PropDef] = &[
    p!("indirect_desc", "bool", "true", ON_OFF),
    p!("event_idx", "bool", "true", ON_OFF),
    p!("notify_on_empty", "bool", "true", ON_OFF),
    p!("any_layout", "bool", "true", ON_OFF),
    p!("iommu_platform", "bool", "false", ON_OFF),
];

static VIRTIO_NET_PROPS: &[PropDef] = &[
    dp!("bootindex", "int32", "-1"),
    p!("mac", "str", "null", MAC),
    p!("vlan", "int32", "-1", "Integer VLAN id to connect to"),
    p!("netdev", "str", "null", NETDEV),
    p!("csum", "bool", "true", ON_OFF),
    p!("guest_csum", "bool", "true", ON_OFF),
    p!("gso", "bool", "true", ON_OFF),
    p!("guest_tso4", "bool", "true", ON_OFF),
    p!("guest_tso6", "bool", "true", ON_OFF),
    p!("host_tso4", "bool", "true", ON_OFF),
    p!("host_tso6", "bool", "true", ON_OFF),
    p!("mrg_rxbuf", "bool", "true", ON_OFF),
    p!("status", "bool", "true", ON_OFF),
    p!("ctrl_vq", "bool", "true", ON_OFF),
    p!("mq", "bool", "false", ON_OFF),
    p!("x-txtimer", "uint32", "150000"),
    p!("x-txburst", "int32", "256"),
    p!("tx", "str", "null"),
    p!("rx_queue_size", "uint16", "256"),
    p!("tx_queue_size", "uint16", "256"),
    p!("host_mtu", "uint16", "0"),
    p!("speed", "int32", "-1"),
    p!("duplex", "str", "null"),
];

static VMGENID_PROPS: &[PropDef] = &[p!("guid", "str", "\"auto\"")];

static VIRTIO_BLK_PROPS: &[PropDef] = &[
    dp!("bootindex", "int32", "-1"),
    p!("drive", "str", "\"\"", DRIVE),
    p!(
        "logical_block_size",
        "uint16",
        "512",
        "A power of two between 512 and 32768"
    ),
    p!(
        "physical_block_size",
        "uint16",
        "512",
        "A power of two between 512 and 32768"
    ),
    p!("min_io_size", "uint16", "0"),
    p!("opt_io_size", "uint32", "0"),
    p!("discard_granularity", "uint32", "4294967295"),
    p!("write-cache", "OnOffAuto", "\"auto\"", ON_OFF_AUTO),
    p!("share-rw", "bool", "false", ON_OFF),
    p!("cyls", "uint32", "0"),
    p!("heads", "uint32", "0"),
    p!("secs", "uint32", "0"),
    p!("serial", "str", "null"),
    p!("config-wce", "bool", "true", ON_OFF),
    p!("scsi", "bool", "false", ON_OFF),
    p!("request-merging", "bool", "true", ON_OFF),
    p!("num-queues", "uint16", "1"),
    p!("iothread", "link<iothread>", "\"\""),
];

static IDE_PROPS: &[PropDef] = &[
    dp!("bootindex", "int32", "-1"),
    p!("drive", "str", "\"\"", DRIVE),
    p!(
        "logical_block_size",
        "uint16",
        "512",
        "A power of two between 512 and 32768"
    ),
    p!(
        "physical_block_size",
        "uint16",
        "512",
        "A power of two between 512 and 32768"
    ),
    p!("min_io_size", "uint16", "0"),
    p!("opt_io_size", "uint32", "0"),
    p!("discard_granularity", "uint32", "4294967295"),
    p!("write-cache", "OnOffAuto", "\"auto\"", ON_OFF_AUTO),
    p!("share-rw", "bool", "false", ON_OFF),
    p!("unit", "uint32", "4294967295"),
    p!("ver", "str", "null"),
    p!("wwn", "uint64", "0"),
    p!("serial", "str", "null"),
    p!("model", "str", "null"),
];

static IDE_HD_PROPS: &[PropDef] = &[
    p!("cyls", "uint32", "0"),
    p!("heads", "uint32", "0"),
    p!("secs", "uint32", "0"),
    p!(
        "bios-chs-trans",
        "BiosAtaTranslation",
        "\"auto\"",
        "Logical CHS translation algorithm, auto/none/lba/large/rechs"
    ),
    p!("rotation_rate", "uint16", "0"),
];

static SCSI_PROPS: &[PropDef] = &[
    p!("channel", "uint32", "0"),
    p!("scsi-id", "uint32", "4294967295"),
    p!("lun", "uint32", "4294967295"),
];

static SCSI_DISK_PROPS: &[PropDef] = &[
    dp!("bootindex", "int32", "-1"),
    p!("drive", "str", "\"\"", DRIVE),
    p!(
        "logical_block_size",
        "uint16",
        "512",
        "A power of two between 512 and 32768"
    ),
    p!(
        "physical_block_size",
        "uint16",
        "512",
        "A power of two between 512 and 32768"
    ),
    p!("min_io_size", "uint16", "0"),
    p!("opt_io_size", "uint32", "0"),
    p!("discard_granularity", "uint32", "4294967295"),
    p!("write-cache", "OnOffAuto", "\"auto\"", ON_OFF_AUTO),
    p!("share-rw", "bool", "false", ON_OFF),
    p!("ver", "str", "null"),
    p!("serial", "str", "null"),
    p!("vendor", "str", "null"),
    p!("product", "str", "null"),
    p!("removable", "bool", "false", ON_OFF),
    p!("dpofua", "bool", "false", ON_OFF),
    p!("wwn", "uint64", "0"),
    p!("rotation_rate", "uint16", "0"),
];

static SERIAL_PROPS: &[PropDef] = &[
    p!("index", "uint32", "4294967295"),
    p!("iobase", "uint32", "4294967295"),
    p!("irq", "uint32", "4294967295"),
    p!("chardev", "str", "\"\"", CHARDEV),
    p!("wakeup", "uint8", "0"),
];

static VGA_PROPS: &[PropDef] = &[
    p!("vgamem_mb", "uint32", "16"),
    p!("mmio", "bool", "true", ON_OFF),
    p!("qemu-extended-regs", "bool", "true", ON_OFF),
    p!("global-vmstate", "bool", "false", ON_OFF),
];

static BALLOON_PROPS: &[PropDef] = &[
    p!("deflate-on-oom", "bool", "false", ON_OFF),
    PropDef {
        name: "guest-stats-polling-interval",
        ty: "int",
        default: Some("0"),
        desc: None,
        dynamic: true,
    },
    PropDef {
        name: "guest-stats",
        ty: "guest statistics",
        default: None,
        desc: None,
        dynamic: true,
    },
];

static USB_PROPS: &[PropDef] = &[
    p!("port", "str", "null"),
    p!("serial", "str", "null"),
    p!("msos-desc", "bool", "true", ON_OFF),
];

static VIRTIO_SERIAL_PROPS: &[PropDef] = &[
    p!("max_ports", "uint32", "31"),
    p!("emergency-write", "bool", "true", ON_OFF),
];

static VIRTIO_SERIAL_PORT_PROPS: &[PropDef] = &[
    p!("nr", "uint32", "0"),
    p!("chardev", "str", "\"\"", CHARDEV),
    p!("name", "str", "null"),
];

static VIRTIO_RNG_PROPS: &[PropDef] = &[
    p!("max-bytes", "uint64", "9223372036854775807"),
    p!("period", "uint32", "65536"),
    p!("rng", "link<rng-backend>", "\"\""),
];

static DIMM_PROPS: &[PropDef] = &[
    p!("addr", "uint64", "0"),
    p!("node", "uint32", "0"),
    p!("slot", "int32", "-1"),
    p!("memdev", "link<memory-backend>", "\"\""),
    PropDef {
        name: "size",
        ty: "uint64",
        default: Some("0"),
        desc: None,
        dynamic: true,
    },
];

static CPU_PROPS: &[PropDef] = &[
    p!("apic-id", "uint32", "4294967295"),
    p!("socket-id", "int32", "0"),
    p!("core-id", "int32", "0"),
    p!("thread-id", "int32", "0"),
    p!("node-id", "int32", "-1"),
    p!("pmu", "bool", "false", ON_OFF),
    p!("hv-relaxed", "bool", "false", ON_OFF),
    p!("check", "bool", "true", ON_OFF),
    p!("enforce", "bool", "false", ON_OFF),
    p!("kvm", "bool", "true", ON_OFF),
    p!("start-powered-off", "bool", "false", ON_OFF),
    PropDef {
        name: "family",
        ty: "int",
        default: Some("6"),
        desc: None,
        dynamic: true,
    },
    PropDef {
        name: "model",
        ty: "int",
        default: Some("6"),
        desc: None,
        dynamic: true,
    },
    PropDef {
        name: "stepping",
        ty: "int",
        default: Some("3"),
        desc: None,
        dynamic: true,
    },
    PropDef {
        name: "vendor",
        ty: "string",
        default: Some("\"GenuineIntel\""),
        desc: None,
        dynamic: true,
    },
    PropDef {
        name: "model-id",
        ty: "string",
        default: Some("\"QEMU Virtual CPU version 2.5+\""),
        desc: None,
        dynamic: true,
    },
    PropDef {
        name: "feature-words",
        ty: "X86CPUFeatureWordInfo",
        default: None,
        desc: None,
        dynamic: true,
    },
    PropDef {
        name: "filtered-features",
        ty: "X86CPUFeatureWordInfo",
        default: None,
        desc: None,
        dynamic: true,
    },
    PropDef {
        name: "tsc-frequency",
        ty: "int",
        default: Some("0"),
        desc: None,
        dynamic: true,
    },
];

static WATCHDOG_PROPS: &[PropDef] = &[];

static TPM_PROPS: &[PropDef] = &[
    p!("irq", "uint32", "5"),
    p!("tpmdev", "str", "\"\"", "ID of a TPM backend to use"),
];

static PVPANIC_PROPS: &[PropDef] = &[p!("ioport", "uint16", "1285")];

const FLOPPY_DRIVE_TYPE: &str = "Floppy drive type (144/288/120/none/auto)";
const BLOCK_SIZE: &str = "A power of two between 512 B and 2 MiB";

/// A boot index the firmware may be told (no value until set).
const fn bootindex(name: &'static str) -> PropDef {
    PropDef {
        name,
        ty: "int32",
        default: None,
        desc: None,
        dynamic: true,
    }
}

/// The PC's floppy controller, in the order QEMU 10.0.2 lists them.
static ISA_FDC_PROPS: &[PropDef] = &[
    p!("fallback", "FloppyDriveType", "\"288\"", FLOPPY_DRIVE_TYPE),
    p!("fdtypeB", "FloppyDriveType", "\"auto\"", FLOPPY_DRIVE_TYPE),
    p!("dma", "uint32", "2"),
    p!("irq", "uint32", "6"),
    p!("fdtypeA", "FloppyDriveType", "\"auto\"", FLOPPY_DRIVE_TYPE),
    p!("iobase", "uint32", "1008"),
    bootindex("bootindexB"),
    bootindex("bootindexA"),
];

/// A floppy drive on the controller's bus, in the order QEMU 10.0.2 lists them.
static FLOPPY_PROPS: &[PropDef] = &[
    p!(
        "drive-type",
        "FloppyDriveType",
        "\"auto\"",
        FLOPPY_DRIVE_TYPE
    ),
    p!("min_io_size", "size", "0"),
    p!("backend_defaults", "OnOffAuto", "\"auto\"", ON_OFF_AUTO),
    p!("account-invalid", "OnOffAuto", "\"auto\"", ON_OFF_AUTO),
    p!("share-rw", "bool", "false", ON_OFF),
    p!("account-failed", "OnOffAuto", "\"auto\"", ON_OFF_AUTO),
    p!("logical_block_size", "size", "0", BLOCK_SIZE),
    p!("write-cache", "OnOffAuto", "\"auto\"", ON_OFF_AUTO),
    p!("opt_io_size", "size", "0"),
    PropDef {
        name: "drive",
        ty: "str",
        default: None,
        desc: Some(DRIVE),
        dynamic: false,
    },
    p!("unit", "uint32", "4294967295"),
    p!("physical_block_size", "size", "0", BLOCK_SIZE),
    p!("discard_granularity", "size", "4294967295"),
];

static MACHINE_PROPS: &[PropDef] = &[
    dp!("kernel", "string", "\"\""),
    dp!("initrd", "string", "\"\""),
    dp!("append", "string", "\"\""),
    dp!("dtb", "string", "\"\""),
    dp!("dumpdtb", "string", "\"\""),
    dp!("phandle-start", "int", "0"),
    dp!("dt-compatible", "string", "\"\""),
    dp!("dump-guest-core", "bool", "true"),
    dp!("mem-merge", "bool", "true"),
    dp!("usb", "bool", "false"),
    dp!("igd-passthru", "bool", "false"),
    dp!("firmware", "string", "\"\""),
    dp!("suppress-vmdesc", "bool", "false"),
    dp!("enforce-config-section", "bool", "false"),
    dp!("memory-encryption", "string", "\"\""),
    dp!("accel", "string", "\"kvm\""),
    dp!("kernel-irqchip", "OnOffSplit", "\"on\""),
    dp!("kvm-shadow-mem", "int", "-1"),
    dp!("graphics", "bool", "true"),
];

static PC_MACHINE_PROPS: &[PropDef] = &[
    dp!("max-ram-below-4g", "size", "0"),
    dp!("vmport", "OnOffAuto", "\"auto\""),
    dp!("smm", "OnOffAuto", "\"auto\""),
    dp!("nvdimm", "bool", "false"),
    dp!("acpi", "OnOffAuto", "\"auto\""),
    dp!("pit", "bool", "true"),
    dp!("smbus", "bool", "true"),
    dp!("sata", "bool", "true"),
];

static MEM_BACKEND_PROPS: &[PropDef] = &[
    dp!("size", "int", "0"),
    dp!("merge", "bool", "true"),
    dp!("dump", "bool", "true"),
    dp!("prealloc", "bool", "false"),
    dp!("host-nodes", "int", "[]"),
    dp!("policy", "HostMemPolicy", "\"default\""),
    dp!("share", "bool", "false"),
];

static MEM_BACKEND_FILE_PROPS: &[PropDef] = &[
    dp!("mem-path", "string", "\"\""),
    dp!("discard-data", "bool", "false"),
    dp!("align", "int", "0"),
];

static RNG_RANDOM_PROPS: &[PropDef] = &[
    dp!("opened", "bool", "true"),
    dp!("filename", "string", "\"/dev/urandom\""),
];

static RNG_EGD_PROPS: &[PropDef] = &[
    dp!("opened", "bool", "true"),
    dp!("chardev", "string", "\"\""),
];

static IOTHREAD_PROPS: &[PropDef] = &[
    dp!("poll-max-ns", "int", "32768"),
    dp!("poll-grow", "int", "0"),
    dp!("poll-shrink", "int", "0"),
];

static SECRET_PROPS: &[PropDef] = &[
    dp!("loaded", "bool", "true"),
    dp!("format", "QCryptoSecretFormat", "\"raw\""),
    dp!("data", "string", "\"\""),
    dp!("file", "string", "\"\""),
    dp!("keyid", "string", "\"\""),
    dp!("iv", "string", "\"\""),
];

static TLS_PROPS: &[PropDef] = &[
    dp!("loaded", "bool", "true"),
    dp!("dir", "string", "\"\""),
    dp!("endpoint", "QCryptoTLSCredsEndpoint", "\"client\""),
    dp!("verify-peer", "bool", "true"),
    dp!("priority", "string", "\"\""),
];

static THROTTLE_GROUP_PROPS: &[PropDef] = &[
    dp!("limits", "ThrottleLimits", "{}"),
    dp!("x-iops-total", "int", "0"),
    dp!("x-bps-total", "int", "0"),
];

static FILTER_PROPS: &[PropDef] = &[
    dp!("netdev", "string", "\"\""),
    dp!("queue", "NetFilterDirection", "\"all\""),
    dp!("status", "string", "\"on\""),
];

static FILTER_BUFFER_PROPS: &[PropDef] = &[dp!("interval", "uint32", "0")];
static FILTER_DUMP_PROPS: &[PropDef] = &[
    dp!("file", "string", "\"\""),
    dp!("maxlen", "uint32", "65536"),
];

static TPM_EMU_PROPS: &[PropDef] = &[dp!("chardev", "string", "\"\"")];
static TPM_PT_PROPS: &[PropDef] = &[
    dp!("path", "string", "\"\""),
    dp!("cancel-path", "string", "\"\""),
];

static CHARDEV_PROPS: &[PropDef] = &[];
static CHARDEV_SOCKET_PROPS: &[PropDef] = &[
    dp!("addr", "SocketAddress", "null"),
    dp!("connected", "bool", "false"),
];

/// The registry. Order is the order `qom-list-types` answers in.
pub static TYPES: &[TypeDef] = &[
    TypeDef {
        is_abstract: true,
        ..t!("object", None)
    },
    TypeDef {
        is_abstract: true,
        ..t!("interface", None)
    },
    TypeDef {
        is_abstract: true,
        ..t!("user-creatable", Some("interface"))
    },
    TypeDef {
        is_abstract: true,
        ..t!("hotplug-handler", Some("interface"))
    },
    TypeDef {
        is_abstract: true,
        ..t!("conventional-pci-device", Some("interface"))
    },
    TypeDef {
        is_abstract: true,
        ..t!("pci-express-device", Some("interface"))
    },
    TypeDef {
        is_abstract: true,
        ..t!("tpm-if", Some("interface"))
    },
    TypeDef {
        is_abstract: true,
        ..t!("fw_cfg_data_generator", Some("interface"))
    },
    t!("container", Some("object")),
    TypeDef {
        is_abstract: true,
        props: MACHINE_PROPS,
        ..t!("machine", Some("object"))
    },
    TypeDef {
        is_abstract: true,
        props: PC_MACHINE_PROPS,
        interfaces: &["hotplug-handler"],
        ..t!("generic-pc-machine", Some("machine"))
    },
    t!("pc-i440fx-2.12-machine", Some("generic-pc-machine")),
    t!("pc-i440fx-2.11-machine", Some("generic-pc-machine")),
    t!("pc-q35-2.12-machine", Some("generic-pc-machine")),
    t!("none-machine", Some("machine")),
    // buses
    TypeDef {
        is_abstract: true,
        ..t!("bus", Some("object"))
    },
    t!("System", Some("bus")),
    t!("PCI", Some("bus")),
    t!("PCIE", Some("PCI")),
    t!("ISA", Some("bus")),
    t!("IDE", Some("bus")),
    t!("SCSI", Some("bus")),
    t!("usb-bus", Some("bus")),
    t!("virtio-bus", Some("bus")),
    t!("virtio-pci-bus", Some("virtio-bus")),
    t!("virtio-serial-bus", Some("bus")),
    t!("i2c-bus", Some("bus")),
    t!("floppy-bus", Some("bus")),
    // devices
    TypeDef {
        is_abstract: true,
        ..t!("device", Some("object"))
    },
    TypeDef {
        is_abstract: true,
        ..t!("sys-bus-device", Some("device"))
    },
    TypeDef {
        is_abstract: true,
        bus: Some("PCI"),
        props: PCI_PROPS,
        ..t!("pci-device", Some("device"))
    },
    TypeDef {
        is_abstract: true,
        bus: Some("ISA"),
        ..t!("isa-device", Some("device"))
    },
    TypeDef {
        is_abstract: true,
        bus: Some("IDE"),
        props: IDE_PROPS,
        ..t!("ide-device", Some("device"))
    },
    TypeDef {
        is_abstract: true,
        bus: Some("SCSI"),
        props: SCSI_PROPS,
        ..t!("scsi-device", Some("device"))
    },
    TypeDef {
        is_abstract: true,
        bus: Some("usb-bus"),
        props: USB_PROPS,
        hotpluggable: true,
        ..t!("usb-device", Some("device"))
    },
    TypeDef {
        is_abstract: true,
        bus: Some("virtio-bus"),
        props: VIRTIO_DEV_PROPS,
        ..t!("virtio-device", Some("device"))
    },
    TypeDef {
        is_abstract: true,
        bus: Some("virtio-serial-bus"),
        props: VIRTIO_SERIAL_PORT_PROPS,
        hotpluggable: true,
        ..t!("virtio-serial-port", Some("device"))
    },
    TypeDef {
        is_abstract: true,
        ..t!("x86_64-cpu", Some("device"))
    },
    TypeDef {
        props: DIMM_PROPS,
        user_creatable: true,
        hotpluggable: true,
        ..t!("pc-dimm", Some("device"))
    },
    TypeDef {
        is_abstract: true,
        props: VIRTIO_PCI_PROPS,
        interfaces: &["conventional-pci-device"],
        ..t!("virtio-pci", Some("pci-device"))
    },
    TypeDef {
        is_abstract: true,
        props: NIC_PROPS,
        ..t!("e1000-base", Some("pci-device"))
    },
    TypeDef {
        props: E1000_PROPS,
        user_creatable: true,
        hotpluggable: true,
        interfaces: &["conventional-pci-device"],
        ..t!("e1000", Some("e1000-base"))
    },
    TypeDef {
        props: E1000_PROPS,
        user_creatable: true,
        hotpluggable: true,
        interfaces: &["conventional-pci-device"],
        ..t!("e1000-82544gc", Some("e1000-base"))
    },
    TypeDef {
        props: NIC_PROPS,
        user_creatable: true,
        hotpluggable: true,
        interfaces: &["pci-express-device"],
        ..t!("e1000e", Some("pci-device"))
    },
    TypeDef {
        props: NIC_PROPS,
        user_creatable: true,
        hotpluggable: true,
        interfaces: &["conventional-pci-device"],
        ..t!("rtl8139", Some("pci-device"))
    },
    TypeDef {
        props: NIC_PROPS,
        user_creatable: true,
        hotpluggable: true,
        interfaces: &["conventional-pci-device"],
        ..t!("pcnet", Some("pci-device"))
    },
    TypeDef {
        props: NIC_PROPS,
        user_creatable: true,
        hotpluggable: true,
        interfaces: &["conventional-pci-device"],
        ..t!("ne2k_pci", Some("pci-device"))
    },
    TypeDef {
        props: ROCKER_PROPS,
        user_creatable: true,
        hotpluggable: true,
        interfaces: &["conventional-pci-device"],
        ..t!("rocker", Some("pci-device"))
    },
    TypeDef {
        props: VIRTIO_NET_PROPS,
        user_creatable: true,
        hotpluggable: true,
        ..t!("virtio-net-pci", Some("virtio-pci"))
    },
    TypeDef {
        props: VIRTIO_BLK_PROPS,
        user_creatable: true,
        hotpluggable: true,
        ..t!("virtio-blk-pci", Some("virtio-pci"))
    },
    TypeDef {
        props: BALLOON_PROPS,
        user_creatable: true,
        hotpluggable: true,
        ..t!("virtio-balloon-pci", Some("virtio-pci"))
    },
    TypeDef {
        props: VIRTIO_SERIAL_PROPS,
        user_creatable: true,
        hotpluggable: true,
        ..t!("virtio-serial-pci", Some("virtio-pci"))
    },
    TypeDef {
        props: &[
            p!("num_queues", "uint32", "1"),
            p!("iothread", "link<iothread>", "\"\""),
        ],
        user_creatable: true,
        hotpluggable: true,
        ..t!("virtio-scsi-pci", Some("virtio-pci"))
    },
    TypeDef {
        props: VIRTIO_RNG_PROPS,
        user_creatable: true,
        hotpluggable: true,
        ..t!("virtio-rng-pci", Some("virtio-pci"))
    },
    TypeDef {
        user_creatable: true,
        hotpluggable: true,
        ..t!("virtio-keyboard-pci", Some("virtio-pci"))
    },
    TypeDef {
        user_creatable: true,
        hotpluggable: true,
        ..t!("virtio-mouse-pci", Some("virtio-pci"))
    },
    TypeDef {
        user_creatable: true,
        hotpluggable: true,
        ..t!("virtio-tablet-pci", Some("virtio-pci"))
    },
    TypeDef {
        user_creatable: true,
        hotpluggable: true,
        ..t!("virtio-vga", Some("virtio-pci"))
    },
    TypeDef {
        props: VIRTIO_NET_PROPS,
        ..t!("virtio-net-device", Some("virtio-device"))
    },
    TypeDef {
        props: VIRTIO_BLK_PROPS,
        ..t!("virtio-blk-device", Some("virtio-device"))
    },
    TypeDef {
        props: BALLOON_PROPS,
        ..t!("virtio-balloon-device", Some("virtio-device"))
    },
    TypeDef {
        ..t!("virtio-serial-device", Some("virtio-device"))
    },
    TypeDef {
        user_creatable: true,
        ..t!("virtserialport", Some("virtio-serial-port"))
    },
    TypeDef {
        user_creatable: true,
        ..t!("virtconsole", Some("virtserialport"))
    },
    TypeDef {
        props: VGA_PROPS,
        user_creatable: true,
        interfaces: &["conventional-pci-device"],
        ..t!("VGA", Some("pci-device"))
    },
    TypeDef {
        props: VGA_PROPS,
        user_creatable: true,
        interfaces: &["conventional-pci-device"],
        ..t!("cirrus-vga", Some("pci-device"))
    },
    TypeDef {
        props: VGA_PROPS,
        user_creatable: true,
        interfaces: &["conventional-pci-device"],
        ..t!("qxl-vga", Some("pci-device"))
    },
    TypeDef {
        props: VGA_PROPS,
        user_creatable: true,
        interfaces: &["conventional-pci-device"],
        ..t!("secondary-vga", Some("pci-device"))
    },
    TypeDef {
        props: WATCHDOG_PROPS,
        user_creatable: true,
        hotpluggable: true,
        interfaces: &["conventional-pci-device"],
        ..t!("i6300esb", Some("pci-device"))
    },
    TypeDef {
        user_creatable: true,
        ..t!("ib700", Some("isa-device"))
    },
    TypeDef {
        user_creatable: true,
        hotpluggable: true,
        interfaces: &["conventional-pci-device"],
        ..t!("intel-hda", Some("pci-device"))
    },
    TypeDef {
        user_creatable: true,
        hotpluggable: true,
        interfaces: &["conventional-pci-device"],
        ..t!("ich9-intel-hda", Some("pci-device"))
    },
    TypeDef {
        user_creatable: true,
        hotpluggable: true,
        interfaces: &["conventional-pci-device"],
        ..t!("piix3-usb-uhci", Some("pci-device"))
    },
    TypeDef {
        user_creatable: true,
        hotpluggable: true,
        interfaces: &["conventional-pci-device"],
        ..t!("ich9-usb-ehci1", Some("pci-device"))
    },
    TypeDef {
        user_creatable: true,
        hotpluggable: true,
        interfaces: &["pci-express-device", "conventional-pci-device"],
        ..t!("nec-usb-xhci", Some("pci-device"))
    },
    TypeDef {
        user_creatable: true,
        hotpluggable: true,
        interfaces: &["pci-express-device", "conventional-pci-device"],
        ..t!("qemu-xhci", Some("pci-device"))
    },
    TypeDef {
        user_creatable: true,
        hotpluggable: true,
        interfaces: &["conventional-pci-device"],
        ..t!("lsi53c895a", Some("pci-device"))
    },
    TypeDef {
        user_creatable: true,
        hotpluggable: true,
        interfaces: &["conventional-pci-device"],
        ..t!("pci-bridge", Some("pci-device"))
    },
    TypeDef {
        user_creatable: false,
        interfaces: &["conventional-pci-device"],
        ..t!("i440FX", Some("pci-device"))
    },
    TypeDef {
        user_creatable: false,
        interfaces: &["conventional-pci-device"],
        ..t!("PIIX3", Some("pci-device"))
    },
    TypeDef {
        user_creatable: false,
        interfaces: &["conventional-pci-device"],
        ..t!("piix3-ide", Some("pci-device"))
    },
    TypeDef {
        user_creatable: false,
        interfaces: &["conventional-pci-device", "hotplug-handler"],
        ..t!("PIIX4_PM", Some("pci-device"))
    },
    TypeDef {
        is_abstract: true,
        ..t!("pci-host-bridge", Some("sys-bus-device"))
    },
    TypeDef {
        ..t!("i440FX-pcihost", Some("pci-host-bridge"))
    },
    TypeDef {
        props: IDE_HD_PROPS,
        user_creatable: true,
        ..t!("ide-hd", Some("ide-device"))
    },
    TypeDef {
        user_creatable: true,
        ..t!("ide-cd", Some("ide-device"))
    },
    TypeDef {
        props: IDE_HD_PROPS,
        user_creatable: true,
        ..t!("ide-drive", Some("ide-device"))
    },
    TypeDef {
        props: SCSI_DISK_PROPS,
        user_creatable: true,
        hotpluggable: true,
        ..t!("scsi-hd", Some("scsi-device"))
    },
    TypeDef {
        props: SCSI_DISK_PROPS,
        user_creatable: true,
        hotpluggable: true,
        ..t!("scsi-cd", Some("scsi-device"))
    },
    TypeDef {
        user_creatable: true,
        hotpluggable: true,
        ..t!("scsi-generic", Some("scsi-device"))
    },
    TypeDef {
        user_creatable: true,
        ..t!("usb-tablet", Some("usb-device"))
    },
    TypeDef {
        user_creatable: true,
        ..t!("usb-mouse", Some("usb-device"))
    },
    TypeDef {
        user_creatable: true,
        ..t!("usb-kbd", Some("usb-device"))
    },
    TypeDef {
        user_creatable: true,
        ..t!("usb-storage", Some("usb-device"))
    },
    TypeDef {
        user_creatable: true,
        ..t!("usb-host", Some("usb-device"))
    },
    TypeDef {
        user_creatable: true,
        ..t!("usb-hub", Some("usb-device"))
    },
    TypeDef {
        props: SERIAL_PROPS,
        user_creatable: true,
        ..t!("isa-serial", Some("isa-device"))
    },
    TypeDef {
        props: &[
            p!("chardev", "str", "\"\"", CHARDEV),
            p!("index", "uint32", "4294967295"),
        ],
        user_creatable: true,
        ..t!("isa-parallel", Some("isa-device"))
    },
    TypeDef {
        props: &[
            p!("chardev", "str", "\"\"", CHARDEV),
            p!("iobase", "uint32", "233"),
        ],
        user_creatable: true,
        ..t!("isa-debugcon", Some("isa-device"))
    },
    TypeDef {
        user_creatable: false,
        ..t!("i8042", Some("isa-device"))
    },
    TypeDef {
        props: ISA_FDC_PROPS,
        user_creatable: true,
        ..t!("isa-fdc", Some("isa-device"))
    },
    TypeDef {
        props: FLOPPY_PROPS,
        bus: Some("floppy-bus"),
        user_creatable: true,
        ..t!("floppy", Some("device"))
    },
    TypeDef {
        user_creatable: false,
        ..t!("mc146818rtc", Some("isa-device"))
    },
    TypeDef {
        props: PVPANIC_PROPS,
        user_creatable: true,
        ..t!("pvpanic", Some("isa-device"))
    },
    TypeDef {
        props: TPM_PROPS,
        user_creatable: true,
        interfaces: &["tpm-if"],
        ..t!("tpm-tis", Some("isa-device"))
    },
    TypeDef {
        user_creatable: true,
        ..t!("vmcoreinfo", Some("device"))
    },
    TypeDef {
        props: VMGENID_PROPS,
        user_creatable: true,
        hotpluggable: true,
        ..t!("vmgenid", Some("device"))
    },
    TypeDef {
        props: CPU_PROPS,
        user_creatable: true,
        hotpluggable: true,
        ..t!("qemu64-x86_64-cpu", Some("x86_64-cpu"))
    },
    TypeDef {
        props: CPU_PROPS,
        user_creatable: true,
        hotpluggable: true,
        ..t!("host-x86_64-cpu", Some("x86_64-cpu"))
    },
    TypeDef {
        props: CPU_PROPS,
        user_creatable: true,
        hotpluggable: true,
        ..t!("kvm64-x86_64-cpu", Some("x86_64-cpu"))
    },
    TypeDef {
        props: CPU_PROPS,
        user_creatable: true,
        hotpluggable: true,
        ..t!("Haswell-x86_64-cpu", Some("x86_64-cpu"))
    },
    TypeDef {
        user_creatable: true,
        hotpluggable: true,
        ..t!("nvdimm", Some("pc-dimm"))
    },
    TypeDef {
        ..t!("fw_cfg_io", Some("sys-bus-device"))
    },
    TypeDef {
        ..t!("kvmvapic", Some("sys-bus-device"))
    },
    TypeDef {
        ..t!("hpet", Some("sys-bus-device"))
    },
    TypeDef {
        ..t!("isa-i8259", Some("isa-device"))
    },
    TypeDef {
        ..t!("isa-pit", Some("isa-device"))
    },
    TypeDef {
        ..t!("i8257", Some("isa-device"))
    },
    TypeDef {
        ..t!("isa-pcspk", Some("isa-device"))
    },
    TypeDef {
        ..t!("vmport", Some("isa-device"))
    },
    TypeDef {
        ..t!("vmmouse", Some("isa-device"))
    },
    TypeDef {
        ..t!("port92", Some("isa-device"))
    },
    TypeDef {
        ..t!("smbus-eeprom", Some("device"))
    },
    // user-creatable objects
    TypeDef {
        is_abstract: true,
        props: MEM_BACKEND_PROPS,
        interfaces: &["user-creatable"],
        ..t!("memory-backend", Some("object"))
    },
    TypeDef {
        ..t!("memory-backend-ram", Some("memory-backend"))
    },
    TypeDef {
        props: MEM_BACKEND_FILE_PROPS,
        ..t!("memory-backend-file", Some("memory-backend"))
    },
    TypeDef {
        is_abstract: true,
        interfaces: &["user-creatable"],
        ..t!("rng-backend", Some("object"))
    },
    TypeDef {
        props: RNG_RANDOM_PROPS,
        ..t!("rng-random", Some("rng-backend"))
    },
    TypeDef {
        props: RNG_EGD_PROPS,
        ..t!("rng-egd", Some("rng-backend"))
    },
    TypeDef {
        props: IOTHREAD_PROPS,
        interfaces: &["user-creatable"],
        ..t!("iothread", Some("object"))
    },
    TypeDef {
        props: SECRET_PROPS,
        interfaces: &["user-creatable"],
        ..t!("secret", Some("object"))
    },
    TypeDef {
        is_abstract: true,
        props: TLS_PROPS,
        interfaces: &["user-creatable"],
        ..t!("tls-creds", Some("object"))
    },
    TypeDef {
        ..t!("tls-creds-x509", Some("tls-creds"))
    },
    TypeDef {
        ..t!("tls-creds-anon", Some("tls-creds"))
    },
    TypeDef {
        props: THROTTLE_GROUP_PROPS,
        interfaces: &["user-creatable"],
        ..t!("throttle-group", Some("object"))
    },
    TypeDef {
        is_abstract: true,
        props: FILTER_PROPS,
        interfaces: &["user-creatable"],
        ..t!("netfilter", Some("object"))
    },
    TypeDef {
        props: FILTER_BUFFER_PROPS,
        ..t!("filter-buffer", Some("netfilter"))
    },
    TypeDef {
        props: FILTER_DUMP_PROPS,
        ..t!("filter-dump", Some("netfilter"))
    },
    TypeDef {
        ..t!("filter-mirror", Some("netfilter"))
    },
    TypeDef {
        ..t!("filter-redirector", Some("netfilter"))
    },
    TypeDef {
        interfaces: &["user-creatable"],
        ..t!("cryptodev-backend-builtin", Some("object"))
    },
    TypeDef {
        interfaces: &["user-creatable"],
        ..t!("input-linux", Some("object"))
    },
    TypeDef {
        is_abstract: true,
        ..t!("tpm-backend", Some("object"))
    },
    TypeDef {
        props: TPM_PT_PROPS,
        ..t!("tpm-passthrough", Some("tpm-backend"))
    },
    TypeDef {
        props: TPM_EMU_PROPS,
        ..t!("tpm-emulator", Some("tpm-backend"))
    },
    // character devices
    TypeDef {
        is_abstract: true,
        props: CHARDEV_PROPS,
        ..t!("chardev", Some("object"))
    },
    TypeDef {
        props: CHARDEV_SOCKET_PROPS,
        ..t!("chardev-socket", Some("chardev"))
    },
    t!("chardev-pty", Some("chardev")),
    t!("chardev-file", Some("chardev")),
    t!("chardev-null", Some("chardev")),
    t!("chardev-stdio", Some("chardev")),
    t!("chardev-ringbuf", Some("chardev")),
    t!("chardev-memory", Some("chardev-ringbuf")),
    t!("chardev-vc", Some("chardev")),
    t!("chardev-pipe", Some("chardev")),
    t!("chardev-udp", Some("chardev")),
    t!("chardev-mux", Some("chardev")),
    t!("chardev-serial", Some("chardev")),
    t!("chardev-spicevmc", Some("chardev")),
    t!("chardev-testdev", Some("chardev")),
];

/// [`TYPES`] by name, built on first use (a machine asks for types by name thousands of
/// times while it starts: walking ancestries, finding buses).
static BY_NAME: std::sync::OnceLock<
    std::collections::HashMap<&'static str, &'static TypeDef, foldhash::fast::FixedState>,
> = std::sync::OnceLock::new();

/// Look a type up by name.
pub fn find(name: &str) -> Option<&'static TypeDef> {
    BY_NAME
        .get_or_init(|| {
            let mut m = std::collections::HashMap::with_capacity_and_hasher(
                TYPES.len(),
                foldhash::fast::FixedState::default(),
            );
            // The first definition of a name wins, as a search in order finds it.
            for t in TYPES {
                m.entry(t.name).or_insert(t);
            }
            m
        })
        .get(name)
        .copied()
}

/// The type and its ancestors, the type itself first.
pub fn ancestry(name: &str) -> impl Iterator<Item = &'static TypeDef> {
    ancestry_in(TYPES, name)
}

/// [`ancestry`] in another registry (the storage daemon's).
pub fn ancestry_in(
    table: &'static [TypeDef],
    name: &str,
) -> impl Iterator<Item = &'static TypeDef> {
    let indexed = std::ptr::eq(table, TYPES);
    let find = move |n: &str| {
        if indexed {
            self::find(n)
        } else {
            table.iter().find(|t| t.name == n)
        }
    };
    let mut cur = find(name);
    std::iter::from_fn(move || {
        let t = cur?;
        cur = t.parent.and_then(find);
        Some(t)
    })
}

/// Whether `name` is `target` or derives from it or implements it.
pub fn is_a(name: &str, target: &str) -> bool {
    ancestry(name).any(|t| t.name == target || t.interfaces.contains(&target))
}

/// The nearest declaration of property `prop` along `name`'s ancestry.
pub fn find_prop(name: &str, prop: &str) -> Option<&'static PropDef> {
    ancestry(name)
        .flat_map(|t| t.props.iter())
        .find(|p| p.name == prop)
}

/// All properties along the ancestry, the type's own first.
pub fn all_props(name: &str) -> impl Iterator<Item = &'static PropDef> {
    ancestry(name).flat_map(|t| t.props.iter())
}

/// The bus type a device type plugs into, if any.
pub fn bus_of(name: &str) -> Option<&'static str> {
    ancestry(name).find_map(|t| t.bus)
}

/// Whether a device type may be plugged or unplugged at run time (QEMU's
/// `DeviceClass.hotpluggable`: true for devices except system-bus ones and
/// the chipset; the bus must allow hotplug too).
pub fn hotpluggable(name: &str) -> bool {
    is_a(name, "device")
        && !is_a(name, "sys-bus-device")
        && !matches!(name, "i440FX" | "PIIX3" | "piix3-ide" | "PIIX4_PM")
}

/// Whether a bus type allows hotplug.
pub fn bus_hotpluggable(bus_type: &str) -> bool {
    matches!(
        bus_type,
        "PCI" | "PCIE" | "usb-bus" | "SCSI" | "virtio-serial-bus"
    )
}

/// Aliases QEMU accepts for device names.
pub fn resolve_alias(name: &str) -> Option<&'static str> {
    Some(match name {
        "virtio-net" => "virtio-net-pci",
        "virtio-blk" => "virtio-blk-pci",
        "virtio-balloon" => "virtio-balloon-pci",
        "virtio-serial" => "virtio-serial-pci",
        "virtio-scsi" => "virtio-scsi-pci",
        "virtio-rng" => "virtio-rng-pci",
        "virtio-keyboard" => "virtio-keyboard-pci",
        "virtio-mouse" => "virtio-mouse-pci",
        "virtio-tablet" => "virtio-tablet-pci",
        "lsi" => "lsi53c895a",
        "e1000-82540em" => "e1000",
        _ => return None,
    })
}
