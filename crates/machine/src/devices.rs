//! Devices and user-creatable objects: the initial QOM tree built from the
//! configuration (chipset, vCPUs, IDE/ISA/PCI buses, `-device`s, implicit
//! devices of `-drive if=virtio`, the TPM, `/objects`, `/chardevs`),
//! `device_add` / `device_del`, `object-add` / `object-del`, `cpu-add`.
//!
//! Devices plug into buses by type (PCI slots are allocated, IDE and ISA
//! refuse hotplug); controllers bring their own buses (`usb.0`,
//! `<id>.0`, …). Unplugging a PCI device or a DIMM is a request the
//! modelled guest acknowledges after [`UNPLUG_ACK_NS`] of running time;
//! then the device and everything plugged into it go, each announced with
//! `DEVICE_DELETED` (children first). Other devices go at once. DIMMs take
//! their memory from a `memory-backend` and an address in the `maxmem`
//! area. Other modules read the result through [`pci_devices`],
//! [`memory_devices`], [`cpus`] and [`objects_of_type`].

use serde_json::{json, Map, Value};

use crate::qom::props::{
    backend_prop_owner, check_backend_set, device_prop_value, id_wellformed, parse_int, RESERVED,
};
use crate::qom::{self, types, NodeId, QomValue, Tree};
use crate::{api, Machine, MachineConfig, RunState};
use qmpkit_wire::{ErrorClass, QmpError};

/// What the devices subsystem does later by itself.
#[derive(Debug, Clone, PartialEq)]
pub enum Timer {
    /// The modelled guest acknowledges the unplug request of the device at this canonical
    /// path (or looks again later).
    Unplug(String),
    /// The guest's ACPI code reports on a plugged DIMM or vCPU (`ACPI_DEVICE_OST`).
    Ost(api::ACPIOSTInfo),
}

/// A device as devices announce its plugging and unplugging to the subsystems that keep
/// state about devices ([`Machine::pre_plug`], [`Machine::on_plug`],
/// [`Machine::on_unplug`]), so that devices never call into them.
#[derive(Debug, Clone, PartialEq)]
pub struct PlugInfo {
    /// The qdev id (its name under `/machine/peripheral`), if it has one.
    pub id: Option<String>,
    /// Canonical QOM path.
    pub path: String,
    /// QOM type.
    pub ty: &'static str,
    /// Canonical path of the bus it is plugged into, if any.
    pub bus: Option<String>,
    /// Slot << 3 | function, on a PCI bus.
    pub addr: Option<i64>,
    /// The properties set on it (those differing from the type's defaults).
    pub props: Vec<(String, QomValue)>,
    /// Plugged after start-up.
    pub hotplugged: bool,
}

impl PlugInfo {
    /// The device at `node` as it is now.
    pub fn of(tree: &Tree, node: NodeId) -> PlugInfo {
        let n = tree.node(node);
        PlugInfo {
            id: device_id(tree, node),
            path: tree.path(node),
            ty: n.ty,
            bus: tree.link(node, "parent_bus").map(|l| l.target.to_string()),
            addr: pci_devfn(tree, node),
            props: n
                .vals
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
            hotplugged: tree.val(node, "hotplugged").and_then(QomValue::as_bool) == Some(true),
        }
    }

    /// A property set on the device.
    pub fn prop(&self, name: &str) -> Option<&QomValue> {
        self.props.iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }

    /// For a vCPU: its index (APIC ID).
    pub fn cpu_index(&self) -> Option<u32> {
        if !types::is_a(self.ty, "x86_64-cpu") {
            return None;
        }
        let id = self.prop("apic-id").and_then(QomValue::as_u64)?;
        u32::try_from(id).ok()
    }
}

/// A back end a device property names, which another subsystem owns
/// ([`Machine::has_backend`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A network back end (`netdev`).
    Netdev,
    /// A drive, by its name or its medium's node name (`drive`).
    Drive,
}

/// The device options of `device_add`: what is not an option is a property.
pub type DeviceOptions = Map<String, Value>;

fn opt_str<'a>(args: &'a DeviceOptions, name: &str) -> Option<&'a str> {
    args.get(name).and_then(Value::as_str)
}

/// How long the modelled guest takes to acknowledge an unplug request.
pub const UNPLUG_ACK_NS: u64 = 100_000_000;

/// Per-machine device bookkeeping beyond the tree.
#[derive(Debug, Clone, Default)]
pub struct DevicesState {
    /// Canonical paths of devices with an unplug request pending.
    pub unplug_pending: Vec<String>,
}

fn machine_type_name(config: &MachineConfig) -> &'static str {
    let want = format!("{}-machine", config.machine_type);
    if let Some(t) = types::find(&want) {
        return t.name;
    }
    match config.machine_type.as_str() {
        "q35" => "pc-q35-2.12-machine",
        "none" => "none-machine",
        _ => "pc-i440fx-2.12-machine",
    }
}

/// The QOM type of the configured CPU model.
pub fn cpu_type_name(config: &MachineConfig) -> &'static str {
    let want = format!("{}-x86_64-cpu", config.cpu_model);
    types::find(&want)
        .map(|t| t.name)
        .unwrap_or("qemu64-x86_64-cpu")
}

/// Well-known places in the tree.
pub struct Places {
    pub machine: NodeId,
    pub peripheral: NodeId,
    pub anon: NodeId,
    pub unattached: NodeId,
    pub objects: NodeId,
}

/// Find the standard containers.
pub fn places(tree: &Tree) -> Option<Places> {
    let machine = tree.child(Tree::ROOT, "machine")?;
    Some(Places {
        machine,
        peripheral: tree.child(machine, "peripheral")?,
        anon: tree.child(machine, "peripheral-anon")?,
        unattached: tree.child(machine, "unattached")?,
        objects: tree.child(Tree::ROOT, "objects")?,
    })
}

/// Add a child named `device[N]`; numbers count up and are never reused
/// while the machine lives, as in QEMU.
fn add_numbered(tree: &mut Tree, parent: NodeId, ty: &'static str) -> NodeId {
    let i = tree
        .val(parent, "x-next")
        .and_then(QomValue::as_u64)
        .unwrap_or(0);
    tree.set_val(parent, "x-next", i + 1);
    tree.add(parent, &format!("device[{i}]"), ty)
}

/// Plug `dev` into `bus` (a link property and, for PCI, a slot).
fn attach(tree: &mut Tree, dev: NodeId, bus: NodeId) {
    let bus_path = tree.path(bus);
    let bus_ty = tree.node(bus).ty;
    tree.set_link(dev, "parent_bus", &format!("link<{bus_ty}>"), &bus_path);
}

/// Devices plugged into `bus`, in tree order.
pub fn bus_children(tree: &Tree, bus: NodeId) -> Vec<NodeId> {
    let bus_path = tree.path(bus);
    tree.walk(Tree::ROOT)
        .into_iter()
        .filter(|&n| {
            tree.node(n).alive
                && tree
                    .link(n, "parent_bus")
                    .map(|l| *l.target == *bus_path)
                    .unwrap_or(false)
        })
        .collect()
}

/// Every bus in the tree, in tree order.
pub fn buses(tree: &Tree) -> Vec<NodeId> {
    tree.walk(Tree::ROOT)
        .into_iter()
        .filter(|&n| tree.is_bus(n))
        .collect()
}

/// A bus by its name (`pci.0`, `ide.1`, …).
pub fn find_bus(tree: &Tree, name: &str) -> Option<NodeId> {
    if name.starts_with('/') {
        return tree.resolve(name).ok().filter(|&n| tree.is_bus(n));
    }
    buses(tree)
        .into_iter()
        .find(|&b| &*tree.node(b).name == name)
}

/// The PCI address (devfn) of a device on a PCI bus.
pub fn pci_devfn(tree: &Tree, dev: NodeId) -> Option<i64> {
    tree.val(dev, "addr")
        .and_then(QomValue::as_i64)
        .filter(|&a| a >= 0)
}

fn free_devfn(tree: &Tree, bus: NodeId) -> Option<i64> {
    let used: Vec<i64> = bus_children(tree, bus)
        .into_iter()
        .filter_map(|d| pci_devfn(tree, d))
        .collect();
    (0..32i64)
        .map(|s| s << 3)
        .find(|d| !used.iter().any(|u| u >> 3 == d >> 3))
}

fn is_full(tree: &Tree, bus: NodeId) -> bool {
    let n = bus_children(tree, bus).len();
    match tree.node(bus).ty {
        "IDE" | "floppy-bus" => n >= 2,
        _ => false,
    }
}

/// Create a device node (no checks beyond property parsing). `props` are
/// `(name, raw value)`.
fn create_device(
    tree: &mut Tree,
    ty: &'static str,
    id: Option<&str>,
    bus: Option<NodeId>,
    props: &[(String, Value)],
    hotplugged: bool,
    modern: bool,
) -> Result<NodeId, QmpError> {
    let p = places(tree).ok_or_else(|| QmpError::generic("machine not initialised"))?;
    // Parse properties before creating anything.
    let mut parsed = Vec::new();
    for (k, v) in props {
        let def = types::find_prop(ty, k).ok_or_else(|| qom::err_prop_not_found(modern, ty, k))?;
        parsed.push((def.name, device_prop_value(ty, def, v)?));
    }
    // PCI slot.
    let mut devfn = None;
    if let Some(b) = bus {
        if matches!(tree.node(b).ty, "PCI" | "PCIE") {
            let want = parsed
                .iter()
                .find(|(k, _)| *k == "addr")
                .and_then(|(_, v)| v.as_i64());
            match want {
                Some(d) if d >= 0 => {
                    if let Some(other) = bus_children(tree, b)
                        .into_iter()
                        .find(|&o| pci_devfn(tree, o) == Some(d))
                    {
                        return Err(QmpError::generic(format!(
                            "PCI: slot {} function {} not available for {}, in use by {}",
                            d >> 3,
                            d & 7,
                            ty,
                            tree.node(other).ty
                        )));
                    }
                    devfn = Some(d);
                }
                _ => {
                    devfn = Some(free_devfn(tree, b).ok_or_else(|| {
                        QmpError::generic(format!(
                            "PCI: no slot/function available for {ty}, all in use"
                        ))
                    })?);
                }
            }
        }
    }
    let node = match id {
        Some(id) => tree.add(p.peripheral, id, ty),
        None if hotplugged || bus.is_some() => add_numbered(tree, p.anon, ty),
        None => add_numbered(tree, p.unattached, ty),
    };
    for (k, v) in parsed {
        tree.set_val(node, k, v);
    }
    if let Some(d) = devfn {
        tree.set_val(node, "addr", d);
    }
    if hotplugged {
        tree.set_val(node, "hotplugged", true);
    }
    if let Some(b) = bus {
        // A floppy drive takes the first unit free on its controller unless given one.
        if tree.node(b).ty == "floppy-bus" && tree.val(node, "unit").is_none() {
            let used: Vec<u64> = bus_children(tree, b)
                .into_iter()
                .filter_map(|d| tree.val(d, "unit").and_then(QomValue::as_u64))
                .collect();
            let unit = (0u64..).find(|u| !used.contains(u)).unwrap_or(0);
            tree.set_val(node, "unit", unit);
        }
        attach(tree, node, b);
    }
    // Controllers carry the bus their devices plug into.
    if let Some(bty) = child_bus_type(ty) {
        let name = match id {
            Some(id) => format!("{id}.0"),
            None => {
                let lower = bty.to_ascii_lowercase();
                let n = buses(tree)
                    .into_iter()
                    .filter(|&b| tree.node(b).name.starts_with(&format!("{lower}.")))
                    .count();
                format!("{lower}.{n}")
            }
        };
        tree.add(node, &name, bty);
    }
    // Virtio proxies carry their backend device on a virtio bus.
    if let Some(base) = ty.strip_suffix("-pci") {
        if types::is_a(ty, "virtio-pci") {
            let vbus = tree.add(node, "virtio-bus", "virtio-pci-bus");
            let backend_ty = types::find(&format!("{base}-device"))
                .map(|t| t.name)
                .unwrap_or("virtio-device");
            let be = tree.add(node, "virtio-backend", backend_ty);
            attach(tree, be, vbus);
        }
    }
    Ok(node)
}

/// The bus a controller type provides.
pub fn child_bus_type(ty: &str) -> Option<&'static str> {
    Some(match ty {
        "piix3-usb-uhci" | "ich9-usb-ehci1" | "nec-usb-xhci" | "qemu-xhci" => "usb-bus",
        "virtio-serial-pci" => "virtio-serial-bus",
        "virtio-scsi-pci" | "lsi53c895a" => "SCSI",
        "isa-fdc" => "floppy-bus",
        _ => return None,
    })
}

fn default_bus(tree: &Tree, bus_type: &str) -> Option<NodeId> {
    buses(tree)
        .into_iter()
        .find(|&b| types::is_a(tree.node(b).ty, bus_type) && !is_full(tree, b))
}

/// The unit of an IDE drive by its name (`ide0-hd1` → 1).
fn ide_unit_of(id: &str) -> u32 {
    id.chars().last().and_then(|c| c.to_digit(10)).unwrap_or(0)
}

/// The display adapter the last `-vga` names, which the board creates itself (none without
/// the option: the machine's default display is a device of its configuration).
fn vga_type(config: &MachineConfig) -> Option<&'static str> {
    let v = config.options.iter().rev().find(|o| o.name == "vga")?;
    match v.value.as_deref()? {
        "std" => Some("VGA"),
        "cirrus" => Some("cirrus-vga"),
        "vmware" => Some("vmware-svga"),
        "qxl" => Some("qxl-vga"),
        "virtio" => Some("virtio-vga"),
        "bochs" => Some("bochs-display"),
        "ramfb" => Some("ramfb"),
        _ => None,
    }
}

/// How many parallel ports the board has: one per `-parallel` other than `none`, else the
/// default one unless `-nodefaults` or `-parallel none` took it away.
fn parallel_ports(config: &MachineConfig) -> usize {
    let given: Vec<&str> = config
        .options
        .iter()
        .filter(|o| o.name == "parallel")
        .filter_map(|o| o.value.as_deref())
        .collect();
    if given.is_empty() {
        usize::from(!config.options.iter().any(|o| o.name == "nodefaults"))
    } else {
        given.iter().filter(|v| **v != "none").count()
    }
}

/// Build the initial tree from the configuration.
pub fn build_tree(config: &MachineConfig) -> Tree {
    let mut t = Tree::new();
    // The storage daemon has no machine: its root holds the containers it uses.
    if config.storage_daemon {
        let chardevs = t.add(Tree::ROOT, "chardevs", "container");
        let objects = t.add(Tree::ROOT, "objects", "container");
        t.add(Tree::ROOT, "backend", "container");
        add_config_chardevs(&mut t, config, chardevs);
        add_config_objects(&mut t, config, objects);
        return t;
    }
    let machine = t.add(Tree::ROOT, "machine", machine_type_name(config));
    let unattached = t.add(machine, "unattached", "container");
    t.add(machine, "peripheral", "container");
    t.add(machine, "peripheral-anon", "container");
    t.add(Tree::ROOT, "chardevs", "container");
    t.add(Tree::ROOT, "objects", "container");
    if machine_type_name(config) == "none-machine" {
        return t;
    }
    // The board's own devices under /machine/unattached, numbered in the order QEMU's PC
    // creates them: the first vCPU and the TPR patching device of its APIC (kvmvapic), the
    // other vCPUs, the chipset (PIIX3 with its IDE, ISA, power management and RTC functions
    // as children), the IDE drives' devices, the interrupt controllers, the VGA `-vga`
    // asked for, the HPET, timer and speaker, the serial and parallel ports, the floppy
    // controller and its drives, the keyboard controller, VMware's port and mouse, port 92,
    // the memory's SPD EEPROMs.
    let cpu_ty = cpu_type_name(config);
    for i in 0..config.vcpus() {
        let c = add_numbered(&mut t, unattached, cpu_ty);
        t.set_val(c, "apic-id", i);
        if i == 0 {
            add_numbered(&mut t, unattached, "kvmvapic");
        }
    }
    // Chipset.
    let host = t.add(machine, "i440fx", "i440FX-pcihost");
    let pci = t.add(host, "pci.0", "PCI");
    let fw = t.add(machine, "fw_cfg", "fw_cfg_io");
    let _ = fw;
    let chip = add_numbered(&mut t, unattached, "i440FX");
    t.set_val(chip, "addr", 0i64);
    attach(&mut t, chip, pci);
    let piix3 = add_numbered(&mut t, unattached, "PIIX3");
    t.set_val(piix3, "addr", 8i64);
    t.set_val(piix3, "multifunction", true);
    attach(&mut t, piix3, pci);
    let ide = t.add(piix3, "ide", "piix3-ide");
    t.set_val(ide, "addr", 9i64);
    attach(&mut t, ide, pci);
    let ide0 = t.add(ide, "ide.0", "IDE");
    let ide1 = t.add(ide, "ide.1", "IDE");
    let isa = t.add(piix3, "isa.0", "ISA");
    let pm = t.add(piix3, "pm", "PIIX4_PM");
    t.set_val(pm, "addr", 11i64);
    attach(&mut t, pm, pci);
    let rtc = t.add(piix3, "rtc", "mc146818rtc");
    attach(&mut t, rtc, isa);
    for i in 0..2 {
        let dma = t.add(piix3, &format!("dma[{i}]"), "i8257");
        attach(&mut t, dma, isa);
    }
    let chardevs = t.child(Tree::ROOT, "chardevs").unwrap_or(Tree::ROOT);
    // -qmp monitors get chardevs of their own.
    for (i, q) in config.qmp.iter().enumerate() {
        let cty = match q.split(':').next().unwrap_or("") {
            "unix" | "tcp" => "chardev-socket",
            "stdio" => "chardev-stdio",
            "pty" => "chardev-pty",
            _ => "chardev-null",
        };
        let label = format!("compat_monitor{i}");
        if t.child(chardevs, &label).is_none() {
            t.add(chardevs, &label, cty);
        }
    }
    add_config_chardevs(&mut t, config, chardevs);
    let objects = t.child(Tree::ROOT, "objects").unwrap_or(Tree::ROOT);
    add_config_objects(&mut t, config, objects);
    // IDE drives live on the chipset's buses, created in the order of their index (bus,
    // then unit).
    let mut ide_drives: Vec<(usize, u32, &crate::config::DriveConfig)> = Vec::new();
    for d in &config.drives {
        if d.interface != "ide" {
            continue;
        }
        let busno =
            d.id.strip_prefix("ide")
                .and_then(|r| r.chars().next())
                .and_then(|c| c.to_digit(10))
                .unwrap_or(0)
                .min(1) as usize;
        ide_drives.push((busno, ide_unit_of(&d.id), d));
    }
    ide_drives.sort_by_key(|&(bus, unit, _)| (bus, unit));
    for (busno, unit, d) in ide_drives {
        let bus = if busno == 0 { ide0 } else { ide1 };
        let ty = if d.media == "cdrom" {
            "ide-cd"
        } else {
            "ide-hd"
        };
        let n = add_numbered(&mut t, unattached, ty);
        t.set_val(n, "drive", d.id.clone());
        t.set_val(n, "unit", unit);
        attach(&mut t, n, bus);
    }
    for _ in 0..2 {
        let pic = add_numbered(&mut t, unattached, "isa-i8259");
        attach(&mut t, pic, isa);
    }
    if let Some(ty) = vga_type(config) {
        let n = add_numbered(&mut t, unattached, ty);
        attach(&mut t, n, pci);
    }
    if !config.options.iter().any(|o| o.name == "no-hpet") {
        add_numbered(&mut t, unattached, "hpet");
    }
    for ty in ["isa-pit", "isa-pcspk"] {
        let n = add_numbered(&mut t, unattached, ty);
        attach(&mut t, n, isa);
    }
    // Serial ports.
    for (i, backend) in config.serials.iter().enumerate() {
        let s = add_numbered(&mut t, unattached, "isa-serial");
        t.set_val(s, "index", i);
        t.set_val(s, "chardev", format!("serial{i}"));
        attach(&mut t, s, isa);
        let kind = backend.split([',', ':']).next().unwrap_or("null");
        let cty = types::find(&format!("chardev-{kind}"))
            .map(|x| x.name)
            .unwrap_or("chardev-null");
        t.add(chardevs, &format!("serial{i}"), cty);
    }
    for i in 0..parallel_ports(config) {
        let p = add_numbered(&mut t, unattached, "isa-parallel");
        t.set_val(p, "index", i);
        attach(&mut t, p, isa);
    }
    // The PC's floppy controller (the Q35's only for floppy drives), with a drive device for
    // each floppy drive, in the unit the drive took.
    let mut floppies: Vec<(u32, &str)> = config
        .drives
        .iter()
        .filter(|d| d.interface == "floppy")
        .map(|d| (config.floppy_unit(&d.id).unwrap_or(0), d.id.as_str()))
        .collect();
    floppies.sort_unstable();
    if !machine_type_name(config).starts_with("pc-q35") || !floppies.is_empty() {
        let fdc = add_numbered(&mut t, unattached, "isa-fdc");
        attach(&mut t, fdc, isa);
        let fbus = t.add(fdc, "floppy-bus.0", "floppy-bus");
        for (unit, drive) in floppies {
            let n = add_numbered(&mut t, unattached, "floppy");
            t.set_val(n, "drive", drive.to_string());
            t.set_val(n, "unit", unit);
            attach(&mut t, n, fbus);
        }
    }
    let kbd = add_numbered(&mut t, unattached, "i8042");
    attach(&mut t, kbd, isa);
    for ty in ["vmport", "vmmouse", "port92"] {
        let n = add_numbered(&mut t, unattached, ty);
        attach(&mut t, n, isa);
    }
    for _ in 0..8 {
        add_numbered(&mut t, unattached, "smbus-eeprom");
    }
    // -device, in order.
    for dc in &config.devices {
        let Some(td) = types::find(&dc.driver)
            .or_else(|| types::resolve_alias(&dc.driver).and_then(types::find))
        else {
            continue;
        };
        let bus = types::bus_of(td.name).and_then(|bt| {
            dc.props
                .get("bus")
                .and_then(|b| find_bus(&t, b))
                .or_else(|| default_bus(&t, bt))
        });
        if types::bus_of(td.name).is_some() && bus.is_none() {
            continue;
        }
        let props: Vec<(String, Value)> = dc
            .props
            .iter()
            .filter(|(k, _)| k.as_str() != "bus" && k.as_str() != "id")
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        if let Ok(n) = create_device(&mut t, td.name, dc.id.as_deref(), bus, &props, false, false) {
            if types::is_a(td.name, "pc-dimm") && place_dimm(&mut t, config, n).is_err() {
                t.remove(n);
            }
        }
    }
    // -drive if=virtio: an implicit anonymous virtio-blk-pci per drive.
    for d in &config.drives {
        if d.interface != "virtio" {
            continue;
        }
        let bus = default_bus(&t, "PCI");
        if let Ok(n) = create_device(&mut t, "virtio-blk-pci", None, bus, &[], false, false) {
            t.set_val(n, "drive", d.id.clone());
        }
    }
    // The TPM's front end.
    if let Some(tpm) = &config.tpm {
        if let Ok(n) = create_device(&mut t, "tpm-tis", None, Some(isa), &[], false, false) {
            t.set_val(n, "tpmdev", tpm.id.clone());
        }
    }
    t
}

/// `-chardev` back ends of the configuration under `/chardevs`.
fn add_config_chardevs(t: &mut Tree, config: &MachineConfig, chardevs: NodeId) {
    for spec in &config.chardevs {
        let kv = crate::config::parse_keyval(spec, Some("backend"));
        if let (Some(b), Some(id)) = (kv.get("backend"), kv.get("id")) {
            let cty = types::find(&format!("chardev-{b}"))
                .map(|x| x.name)
                .unwrap_or("chardev-null");
            if t.child(chardevs, id).is_none() {
                t.add(chardevs, id, cty);
            }
        }
    }
}

/// `-object`s of the configuration under `/objects`.
fn add_config_objects(t: &mut Tree, config: &MachineConfig, objects: NodeId) {
    for o in &config.objects {
        if let Some(ty) = types::find(&o.qom_type) {
            if t.child(objects, &o.id).is_some() {
                continue;
            }
            let n = t.add(objects, &o.id, ty.name);
            for (k, v) in &o.props {
                if let Some(def) = types::find_prop(ty.name, k) {
                    let val = match def.ty {
                        "int" | "size" | "uint32" | "uint64" => crate::config::parse_size(v, 1)
                            .map(QomValue::from)
                            .unwrap_or_else(|| QomValue::Str(v.clone())),
                        "bool" => QomValue::Bool(matches!(v.as_str(), "on" | "yes" | "true")),
                        _ => QomValue::Str(v.clone()),
                    };
                    t.set_val(n, def.name, val);
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Queries other subsystems use.

/// The device whose qdev id is `id` (under /machine/peripheral).
pub fn find_device(m: &Machine, id: &str) -> Option<NodeId> {
    let p = places(&m.qom.tree)?;
    m.qom.tree.child(p.peripheral, id)
}

/// Every device node, in tree order.
pub fn all_devices(tree: &Tree) -> Vec<NodeId> {
    tree.walk(Tree::ROOT)
        .into_iter()
        .filter(|&n| tree.is_device(n))
        .collect()
}

/// Whether a device's `prop` (`netdev`, `drive`) already names `name` (the other users of
/// back ends answer through [`Machine::backend_in_use`]).
pub fn backend_in_use(tree: &Tree, prop: &str, name: &str) -> bool {
    all_devices(tree)
        .into_iter()
        .any(|n| tree.val(n, prop).and_then(QomValue::as_str) == Some(name))
}

/// The qdev id of a device (its name under /machine/peripheral).
pub fn device_id(tree: &Tree, dev: NodeId) -> Option<String> {
    let p = tree.node(dev).parent?;
    if &*tree.node(p).name == "peripheral" {
        Some(tree.node(dev).name.to_string())
    } else {
        None
    }
}

/// Whether a vCPU with index (APIC ID) `index` is plugged.
fn cpu_present(tree: &Tree, index: u64) -> bool {
    all_devices(tree).into_iter().any(|n| {
        types::is_a(tree.node(n).ty, "x86_64-cpu")
            && tree.val(n, "apic-id").and_then(QomValue::as_u64) == Some(index)
    })
}

/// A device on the PCI bus, for `query-pci` and `info pci`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PciDevice {
    /// Slot << 3 | function.
    pub devfn: i64,
    /// QOM type (`e1000`, `virtio-net-pci`, `i440FX`, …).
    pub driver: &'static str,
    /// qdev id, empty when anonymous.
    pub id: String,
    /// Canonical QOM path.
    pub path: String,
}

/// The devices on `pci.0` now (including hot-plugged ones, excluding those
/// already unplugged), by address.
pub fn pci_devices(m: &Machine) -> Vec<PciDevice> {
    let tree = &m.qom.tree;
    let Some(bus) = find_bus(tree, "pci.0") else {
        return Vec::new();
    };
    let mut v: Vec<PciDevice> = bus_children(tree, bus)
        .into_iter()
        .filter_map(|d| {
            Some(PciDevice {
                devfn: pci_devfn(tree, d)?,
                driver: tree.node(d).ty,
                id: device_id(tree, d).unwrap_or_default(),
                path: tree.path(d),
            })
        })
        .collect();
    v.sort_by_key(|d| d.devfn);
    v
}

/// Ids of the objects of type `ty` (or derived) under /objects.
pub fn objects_of_type(m: &Machine, ty: &str) -> Vec<String> {
    let tree = &m.qom.tree;
    let Some(p) = places(tree) else {
        return Vec::new();
    };
    tree.node(p.objects)
        .children
        .iter()
        .filter(|&&c| types::is_a(tree.node(c).ty, ty))
        .map(|&c| tree.node(c).name.to_string())
        .collect()
}

/// Whether any device of type `ty` (or derived) exists.
pub fn has_device_of_type(m: &Machine, ty: &str) -> bool {
    let tree = &m.qom.tree;
    all_devices(tree)
        .into_iter()
        .any(|n| types::is_a(tree.node(n).ty, ty))
}

// ---------------------------------------------------------------------------

/// `device_add`: create and plug a device.
pub fn device_add(m: &mut Machine, args: &DeviceOptions) -> Result<(), QmpError> {
    let Some(driver) = opt_str(args, "driver") else {
        return Err(QmpError::generic("Parameter 'driver' is missing"));
    };
    crate::catalog::look_up(m, driver);
    // Options first: id syntax and uniqueness.
    let id = opt_str(args, "id");
    if let Some(id) = id {
        if !id_wellformed(id) {
            return Err(QmpError::generic("Parameter 'id' expects an identifier"));
        }
        if find_device(m, id).is_some() {
            return Err(QmpError::generic(format!("Duplicate ID '{id}' for device")));
        }
    }
    // The device type.
    let td = match types::find(driver) {
        Some(t) if types::is_a(t.name, "device") => t,
        _ => {
            return Err(QmpError::generic(match types::resolve_alias(driver) {
                Some(real) if types::find(real).is_some() => {
                    return device_add_as(m, args, real);
                }
                _ => format!("'{driver}' is not a valid device model name"),
            }))
        }
    };
    device_add_as(m, args, td.name)
}

fn device_add_as(m: &mut Machine, args: &DeviceOptions, driver: &str) -> Result<(), QmpError> {
    let Some(td) = types::find(driver) else {
        return Err(QmpError::generic(format!(
            "'{driver}' is not a valid device model name"
        )));
    };
    if td.is_abstract {
        return Err(QmpError::generic(
            "Parameter 'driver' expects non-abstract device type",
        ));
    }
    if !td.user_creatable || !types::hotpluggable(td.name) {
        return Err(QmpError::generic(
            "Parameter 'driver' expects pluggable device type",
        ));
    }
    let id = opt_str(args, "id");
    let tree = &m.qom.tree;
    let bus_type = types::bus_of(td.name);
    let bus = match opt_str(args, "bus") {
        Some(path) => {
            let b = find_bus(tree, path).ok_or_else(|| {
                QmpError::new(
                    ErrorClass::DeviceNotFound,
                    format!("Bus '{path}' not found"),
                )
            })?;
            let bty = tree.node(b).ty;
            if !bus_type.map(|t| types::is_a(bty, t)).unwrap_or(false) {
                return Err(QmpError::generic(format!(
                    "Device '{}' can't go on {} bus",
                    td.name, bty
                )));
            }
            Some(b)
        }
        None => match bus_type {
            Some(bt) => Some(default_bus(tree, bt).ok_or_else(|| {
                QmpError::generic(format!("No '{bt}' bus found for device '{}'", td.name))
            })?),
            None => None,
        },
    };
    if let Some(b) = bus {
        if !types::bus_hotpluggable(tree.node(b).ty) {
            return Err(QmpError::generic(format!(
                "Bus '{}' does not support hotplugging",
                tree.node(b).name
            )));
        }
    }
    let props: Vec<(String, Value)> = args
        .iter()
        .filter(|(k, _)| !RESERVED.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    // Backends that must exist and be free.
    for (k, v) in &props {
        if k == "name" && types::is_a(td.name, "virtio-serial-port") {
            let name = v.as_str().unwrap_or("");
            let tree = &m.qom.tree;
            let taken = all_devices(tree).into_iter().any(|n| {
                types::is_a(tree.node(n).ty, "virtio-serial-port")
                    && tree.val(n, "name").and_then(QomValue::as_str) == Some(name)
            });
            if taken {
                return Err(QmpError::generic(format!(
                    "virtio-serial-bus: A port already exists by name {name}"
                )));
            }
        }
        if k == "netdev" {
            let name = v.as_str().unwrap_or("");
            let owner = backend_prop_owner(td.name);
            if !m.has_backend(Backend::Netdev, name) {
                return Err(QmpError::generic(format!(
                    "Property '{owner}.netdev' can't find value '{name}'"
                )));
            }
            if m.backend_in_use(Backend::Netdev, name) {
                return Err(QmpError::generic(format!(
                    "Property '{owner}.netdev' can't take value '{name}', it's in use"
                )));
            }
        }
        if k == "drive" {
            let name = v.as_str().unwrap_or("");
            let backend_ty = match td.name {
                t if types::is_a(t, "virtio-pci") => {
                    format!("{}-device", t.trim_end_matches("-pci"))
                }
                t => t.to_string(),
            };
            if !m.has_backend(Backend::Drive, name) {
                return Err(QmpError::generic(format!(
                    "Property '{backend_ty}.drive' can't find value '{name}'"
                )));
            }
            if m.backend_in_use(Backend::Drive, name) {
                return Err(QmpError::generic(format!(
                    "Property '{backend_ty}.drive' can't take value '{name}', it's in use"
                )));
            }
        }
    }
    check_backend_set(
        td.name,
        props
            .iter()
            .find(|(k, _)| k == "drive")
            .and_then(|(_, v)| v.as_str()),
    )?;
    let cpu_index = if types::is_a(td.name, "x86_64-cpu") {
        Some(check_cpu(m, td.name, &props)?)
    } else {
        None
    };
    if types::is_a(td.name, "pc-dimm") {
        check_dimm(m, &props)?;
    }
    let modern = m.compat().options_6_0;
    let node = create_device(&mut m.qom.tree, td.name, id, bus, &props, true, modern)?;
    if let Some(idx) = cpu_index {
        m.qom.tree.set_val(node, "apic-id", idx);
    }
    if let Err(e) = m.pre_plug(&PlugInfo::of(&m.qom.tree, node)) {
        m.qom.tree.remove(node);
        return Err(e);
    }
    if types::is_a(td.name, "pc-dimm") {
        if let Err(e) = place_dimm(&mut m.qom.tree, &m.config, node) {
            m.qom.tree.remove(node);
            return Err(e);
        }
    }
    m.on_plug(&PlugInfo::of(&m.qom.tree, node));
    announce_ost(m, node);
    Ok(())
}

/// After a DIMM or vCPU is plugged, the guest's ACPI code reports on it
/// (`ACPI_DEVICE_OST`, insert processed) once it has handled the
/// notification.
fn announce_ost(m: &mut Machine, node: NodeId) {
    let tree = &m.qom.tree;
    let ty = tree.node(node).ty;
    let (slot_type, slot) = if types::is_a(ty, "pc-dimm") {
        (
            api::ACPISlotType::Dimm,
            tree.val(node, "slot")
                .and_then(QomValue::as_i64)
                .unwrap_or(0),
        )
    } else if types::is_a(ty, "x86_64-cpu") {
        (
            api::ACPISlotType::Cpu,
            tree.val(node, "apic-id")
                .and_then(QomValue::as_i64)
                .unwrap_or(0),
        )
    } else {
        return;
    };
    let info = api::ACPIOSTInfo {
        device: device_id(tree, node),
        slot: slot.to_string(),
        slot_type,
        // Insertion event, processed successfully.
        source: 1,
        status: 0,
    };
    m.schedule(UNPLUG_ACK_NS, crate::TimerAction::Devices(Timer::Ost(info)));
}

// ---------------------------------------------------------------------------
// Memory hotplug (pc-dimm, nvdimm).

/// Where hot-pluggable memory starts: above RAM over 4 GiB, 1 GiB aligned.
pub fn hotplug_base(config: &MachineConfig) -> u64 {
    let ranges = crate::config::ram_ranges(config.memory_bytes);
    let above = ranges.get(1).map(|r| r.1).unwrap_or(0);
    ((1u64 << 32) + above).div_ceil(1 << 30) << 30
}

/// Size of the hot-pluggable area.
pub fn hotplug_size(config: &MachineConfig) -> u64 {
    config.max_memory_bytes.saturating_sub(config.memory_bytes)
}

fn dimms(tree: &Tree) -> Vec<NodeId> {
    all_devices(tree)
        .into_iter()
        .filter(|&n| types::is_a(tree.node(n).ty, "pc-dimm"))
        .collect()
}

fn backend_of(tree: &Tree, memdev: &str) -> Option<NodeId> {
    let n = tree.resolve(memdev).ok()?;
    types::is_a(tree.node(n).ty, "memory-backend").then_some(n)
}

fn check_dimm(m: &Machine, props: &[(String, Value)]) -> Result<(), QmpError> {
    let tree = &m.qom.tree;
    let Some(memdev) = props
        .iter()
        .find(|(k, _)| k == "memdev")
        .and_then(|(_, v)| v.as_str())
    else {
        return Err(QmpError::generic("'memdev' property is not set"));
    };
    let Some(b) = backend_of(tree, memdev) else {
        return Err(QmpError::new(
            ErrorClass::DeviceNotFound,
            format!("Device '{memdev}' not found"),
        ));
    };
    let path = tree.path(b);
    let busy = dimms(tree)
        .into_iter()
        .any(|d| tree.val(d, "memdev").and_then(QomValue::as_str) == Some(path.as_str()));
    if busy {
        return Err(QmpError::generic(format!(
            "can't use already busy memdev: {}",
            tree.node(b).name
        )));
    }
    Ok(())
}

/// Give a new DIMM its backend, address and slot.
fn place_dimm(tree: &mut Tree, config: &MachineConfig, node: NodeId) -> Result<(), QmpError> {
    let memdev = tree
        .val(node, "memdev")
        .and_then(QomValue::as_str)
        .unwrap_or("")
        .to_string();
    let b = backend_of(tree, &memdev).ok_or_else(|| {
        QmpError::new(
            ErrorClass::DeviceNotFound,
            format!("Device '{memdev}' not found"),
        )
    })?;
    let size = tree
        .prop_value(b, "size")
        .and_then(|v| v.as_u64())
        .unwrap_or(0);
    let total = hotplug_size(config);
    if total == 0 {
        return Err(QmpError::generic(
            "memory hotplug is not enabled, please add maxmem option",
        ));
    }
    let others: Vec<NodeId> = dimms(tree).into_iter().filter(|&d| d != node).collect();
    let mut used: Vec<(u64, u64)> = others
        .iter()
        .map(|&d| {
            (
                tree.val(d, "addr").and_then(QomValue::as_u64).unwrap_or(0),
                tree.val(d, "size").and_then(QomValue::as_u64).unwrap_or(0),
            )
        })
        .collect();
    used.sort_unstable();
    let in_use: u64 = used.iter().map(|u| u.1).sum();
    let base = hotplug_base(config);
    // First fit.
    let mut addr = base;
    for (a, s) in &used {
        if addr + size <= *a {
            break;
        }
        addr = addr.max(a + s);
    }
    if addr + size > base + total {
        return Err(QmpError::generic(format!(
            "not enough space, currently 0x{in_use:x} in use of total hot pluggable 0x{total:x}"
        )));
    }
    let slots: Vec<i64> = others
        .iter()
        .filter_map(|&d| tree.val(d, "slot").and_then(QomValue::as_i64))
        .collect();
    let slot = (0..).find(|s| !slots.contains(s)).unwrap_or(0);
    let path = tree.path(b);
    tree.set_val(node, "memdev", path);
    tree.set_val(node, "addr", addr);
    tree.set_val(node, "size", size);
    tree.set_val(node, "slot", slot);
    Ok(())
}

/// Check a vCPU for `device_add` against the machine's topology; answer
/// its index.
fn check_cpu(m: &Machine, ty: &str, props: &[(String, Value)]) -> Result<u32, QmpError> {
    let want = cpu_type_name(&m.config);
    if ty != want {
        return Err(QmpError::generic(format!(
            "Invalid CPU type, expected cpu type: '{want}'"
        )));
    }
    let get = |name: &str| -> Option<i64> {
        props
            .iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| match v {
                Value::String(s) => parse_int(s),
                v => v.as_i64(),
            })
    };
    let cores = m.config.cores.max(1);
    let threads = m.config.threads.max(1);
    let max_cpus = m.config.max_cpus.max(m.config.vcpus());
    let max_socket = (max_cpus - 1) / threads / cores;
    let mut ids = [0u32; 3];
    for (i, (name, max)) in [
        ("socket", max_socket),
        ("core", cores - 1),
        ("thread", threads - 1),
    ]
    .into_iter()
    .enumerate()
    {
        match get(&format!("{name}-id")) {
            None => return Err(QmpError::generic(format!("CPU {name}-id is not set"))),
            Some(v) if v < 0 => return Err(QmpError::generic(format!("CPU {name}-id is not set"))),
            Some(v) if v > max as i64 => {
                return Err(QmpError::generic(format!(
                    "Invalid CPU {name}-id: {v} must be in range 0:{max}"
                )))
            }
            Some(v) => ids[i] = v as u32,
        }
    }
    let idx = ids[0] * cores * threads + ids[1] * threads + ids[2];
    if cpu_present(&m.qom.tree, u64::from(idx)) {
        return Err(QmpError::generic(format!(
            "CPU[{idx}] with APIC ID {idx} exists"
        )));
    }
    Ok(idx)
}

/// `query-memory-devices` entries for the DIMMs present now.
pub fn memory_devices(m: &Machine) -> Vec<api::MemoryDeviceInfo> {
    let tree = &m.qom.tree;
    dimms(tree)
        .into_iter()
        .map(|d| {
            let num = |k: &str| tree.prop_value(d, k).and_then(|v| v.as_i64()).unwrap_or(0);
            let info = api::PCDIMMDeviceInfo {
                id: device_id(tree, d),
                addr: num("addr"),
                size: num("size"),
                slot: num("slot"),
                node: num("node"),
                memdev: tree
                    .val(d, "memdev")
                    .and_then(QomValue::as_str)
                    .unwrap_or_default()
                    .to_string(),
                hotplugged: tree.val(d, "hotplugged").and_then(QomValue::as_bool) == Some(true),
                hotpluggable: true,
            };
            if tree.node(d).ty == "nvdimm" {
                // A branch the machine's own schema lacks (QEMU 2.12 reports NVDIMMs so).
                let data = qmpkit_qapi::encode(&info).unwrap_or_default();
                api::MemoryDeviceInfo::Unknown(json!({"type": "nvdimm", "data": data}))
            } else {
                api::MemoryDeviceInfo::Dimm(info)
            }
        })
        .collect()
}

/// Devices that go with `node`, in the order QEMU announces them: those
/// plugged into buses below it first (depth first), then devices inside
/// it (virtio backends), then `node` itself.
fn unplug_order(tree: &Tree, node: NodeId, out: &mut Vec<NodeId>, depth: usize) {
    if depth > 16 {
        return;
    }
    let inside = tree.walk(node);
    for &n in &inside {
        if tree.is_bus(n) {
            for d in bus_children(tree, n) {
                if !inside.contains(&d) && !out.contains(&d) {
                    unplug_order(tree, d, out, depth + 1);
                }
            }
        }
    }
    for &n in inside.iter().skip(1) {
        if tree.is_device(n) && !out.contains(&n) {
            out.push(n);
        }
    }
    if !out.contains(&node) {
        out.push(node);
    }
}

/// Finish unplugging the device at `path`: remove it (and what hangs off
/// it) and announce it.
fn finish_unplug(m: &mut Machine, path: &str) {
    m.devices.unplug_pending.retain(|p| p != path);
    let tree = &m.qom.tree;
    let Ok(node) = tree.resolve(path) else {
        return;
    };
    let mut order = Vec::new();
    unplug_order(tree, node, &mut order, 0);
    let gone: Vec<PlugInfo> = order.iter().map(|&n| PlugInfo::of(tree, n)).collect();
    for info in &gone {
        m.on_unplug(info);
    }
    let gone: Vec<(String, Option<String>)> = gone.into_iter().map(|i| (i.path, i.id)).collect();
    for (p, _) in gone.iter().rev() {
        if let Ok(n) = m.qom.tree.resolve(p) {
            m.qom.tree.remove(n);
        }
    }
    // The event exists from QEMU 1.5.
    if !m.compat().device_deleted_event {
        return;
    }
    for (path, device) in gone {
        m.emit_event(api::DeviceDeleted { device, path });
    }
}

/// Timer callback.
pub fn on_timer(m: &mut Machine, t: Timer) {
    // A paused guest cannot answer, nor one that ignores ACPI (test control): look again
    // later.
    if !m.is(RunState::Running) || !m.testctl.guest.acpi {
        m.schedule(UNPLUG_ACK_NS, crate::TimerAction::Devices(t));
        return;
    }
    match t {
        Timer::Ost(info) => {
            if m.compat().acpi_ost_event {
                m.emit_event(api::AcpiDeviceOst { info });
            }
        }
        Timer::Unplug(path) => finish_unplug(m, &path),
    }
}

/// `device_del`: unplug a device by id or QOM path (at once, or as a request the guest
/// acknowledges).
pub fn device_del(m: &mut Machine, id: &str) -> Result<(), QmpError> {
    let tree = &m.qom.tree;
    let node = if id.starts_with('/') {
        tree.resolve(id).ok()
    } else {
        find_device(m, id)
    };
    let Some(node) = node else {
        return Err(QmpError::new(
            ErrorClass::DeviceNotFound,
            format!("Device '{id}' not found"),
        ));
    };
    if !tree.is_device(node) {
        return Err(QmpError::generic(format!(
            "{id} is not a hotpluggable device"
        )));
    }
    if let Some(bus) = tree
        .link(node, "parent_bus")
        .and_then(|l| tree.resolve(&l.target).ok())
    {
        if !types::bus_hotpluggable(tree.node(bus).ty) {
            return Err(QmpError::generic(format!(
                "Bus '{}' does not support hotplugging",
                tree.node(bus).name
            )));
        }
    }
    let ty = tree.node(node).ty;
    if !types::hotpluggable(ty) {
        return Err(QmpError::generic(format!(
            "Device '{ty}' does not support hotplugging"
        )));
    }
    let is_cpu = types::is_a(ty, "x86_64-cpu");
    if is_cpu && tree.val(node, "apic-id").and_then(QomValue::as_u64) == Some(0) {
        return Err(QmpError::generic("Boot CPU is unpluggable"));
    }
    let path = tree.path(node);
    let on_pci = tree
        .link(node, "parent_bus")
        .map(|l| l.ty.contains("PCI"))
        .unwrap_or(false);
    if on_pci || is_cpu || types::is_a(ty, "pc-dimm") {
        // ACPI hotplug: the guest ejects the device when it gets to it.
        if m.devices.unplug_pending.contains(&path) {
            // QEMU 6.2 and later refuse a second request.
            if m.compat().refuse_repeated_unplug {
                return Err(QmpError::generic(format!(
                    "Device {id} is already in the process of unplug"
                )));
            }
        } else {
            m.devices.unplug_pending.push(path.clone());
            m.schedule(
                UNPLUG_ACK_NS,
                crate::TimerAction::Devices(Timer::Unplug(path)),
            );
        }
    } else {
        finish_unplug(m, &path);
    }
    Ok(())
}

/// `cpu-add`: plug vCPU `id`.
pub fn cpu_add(m: &mut Machine, id: i64) -> Result<(), QmpError> {
    if id < 0 {
        return Err(QmpError::generic(format!("Invalid CPU id: {id}")));
    }
    let max = m.config.max_cpus.max(m.config.vcpus()) as i64;
    if id >= max {
        return Err(QmpError::generic(format!(
            "Unable to add CPU: {id}, max allowed: {}",
            max - 1
        )));
    }
    if cpu_present(&m.qom.tree, id as u64) {
        return Err(QmpError::generic(format!(
            "Unable to add CPU: {id}, it already exists"
        )));
    }
    let ty = cpu_type_name(&m.config);
    let Some(p) = places(&m.qom.tree) else {
        return Err(QmpError::generic("Not supported"));
    };
    let tree = &mut m.qom.tree;
    let n = add_numbered(tree, p.unattached, ty);
    tree.set_val(n, "apic-id", id);
    tree.set_val(n, "hotplugged", true);
    let info = PlugInfo::of(&m.qom.tree, n);
    if let Err(e) = m.pre_plug(&info) {
        m.qom.tree.remove(n);
        return Err(e);
    }
    m.on_plug(&info);
    announce_ost(m, n);
    Ok(())
}

/// `object-add`: make a user-creatable object under `/objects`. `props` is the `props`
/// member as given (QOM property values are dynamic, as in QEMU).
pub fn object_add(
    m: &mut Machine,
    qom_type: &str,
    id: &str,
    props: Option<&Value>,
) -> Result<(), QmpError> {
    crate::catalog::look_up(m, qom_type);
    if !id_wellformed(id) {
        return Err(QmpError::generic("Parameter 'id' expects an identifier"));
    }
    let Some(td) = types::find(qom_type) else {
        return Err(QmpError::generic(format!(
            "invalid object type: {qom_type}"
        )));
    };
    if !types::is_a(td.name, "user-creatable") {
        return Err(QmpError::generic(format!(
            "object type '{qom_type}' isn't supported by object-add"
        )));
    }
    if td.is_abstract {
        return Err(QmpError::generic(format!(
            "object type '{qom_type}' is abstract"
        )));
    }
    // Properties: the 'props' dictionary (newer interfaces' flat members are folded into it
    // before the command gets here).
    let empty = Map::new();
    let props = match props {
        Some(Value::Object(o)) => o,
        Some(Value::Null) | None => &empty,
        Some(_) => {
            return Err(QmpError::generic(
                "Invalid parameter type for 'props', expected: object",
            ))
        }
    };
    let mut vals = Vec::new();
    for (k, v) in props {
        let def = types::find_prop(td.name, k)
            .ok_or_else(|| qom::err_prop_not_found(m.compat().options_6_0, td.name, k))?;
        vals.push((def.name, qom::check_value(k, def.ty, v)?));
    }
    let get = |name: &str| vals.iter().find(|(k, _)| *k == name).map(|(_, v)| v);
    // Property setters check their values before the object goes into the tree.
    if td.name == "iothread" {
        for k in ["poll-max-ns", "poll-grow", "poll-shrink"] {
            if get(k)
                .and_then(QomValue::as_i64)
                .map(|x| x < 0)
                .unwrap_or(false)
            {
                return Err(QmpError::generic(format!(
                    "{k} value must be in range [0, {}]",
                    i64::MAX
                )));
            }
        }
    }
    let tree = &m.qom.tree;
    let Some(objects) = tree.child(Tree::ROOT, "objects") else {
        return Err(QmpError::generic("machine not initialised"));
    };
    if tree.child(objects, id).is_some() {
        return Err(QmpError::generic(format!(
            "attempt to add duplicate property '{id}' to object (type 'container')"
        )));
    }
    if types::is_a(td.name, "memory-backend") {
        if td.name == "memory-backend-file" && get("mem-path").is_none() {
            return Err(QmpError::generic("mem-path property not set"));
        }
        if get("size").and_then(QomValue::as_u64).unwrap_or(0) == 0 {
            return Err(QmpError::generic("can't create backend with size 0"));
        }
    }
    if td.name == "secret" && get("data").is_none() && get("file").is_none() {
        return Err(QmpError::generic(
            "Either 'file' or 'data' must be provided",
        ));
    }
    if td.name == "tls-creds-x509" {
        // The certificates are read when the object is made.
        let dir = get("dir").and_then(QomValue::as_str).unwrap_or("");
        let server = get("endpoint").and_then(QomValue::as_str) == Some("server");
        check_x509_dir(dir, server).map_err(QmpError::generic)?;
    }
    if td.name == "rng-egd" && get("chardev").is_none() {
        return Err(QmpError::generic("chardev property not set"));
    }
    let n = m.qom.tree.add(objects, id, td.name);
    for (k, v) in vals {
        m.qom.tree.set_val(n, k, v);
    }
    Ok(())
}

/// A file of a TLS credentials object's directory, read as QEMU reads it (its words when
/// missing).
pub fn read_credentials(dir: &str, name: &str) -> Result<Vec<u8>, String> {
    let path = format!("{dir}/{name}");
    std::fs::read(&path)
        .map_err(|e| format!("Unable to access credentials {path}: {}", strerror(&e)))
}

/// The text of an OS error the way C's `strerror` prints it.
pub use qmpkit_schema::source::strerror;

/// The files an x509 credentials object needs in `dir` (`server`: for a server endpoint):
/// those QEMU refuses to create the object without.
fn check_x509_dir(dir: &str, server: bool) -> Result<(), String> {
    read_credentials(dir, "ca-cert.pem")?;
    if server {
        read_credentials(dir, "server-cert.pem")?;
        read_credentials(dir, "server-key.pem")?;
    }
    Ok(())
}

/// `object-del`: remove an object made by `object-add` (or `-object`).
pub fn object_del(m: &mut Machine, id: &str) -> Result<(), QmpError> {
    let tree = &m.qom.tree;
    let Some(n) = tree
        .child(Tree::ROOT, "objects")
        .and_then(|objects| tree.child(objects, id))
    else {
        return Err(QmpError::generic(format!("object '{id}' not found")));
    };
    // A memory backend mapped by a DIMM cannot go.
    if types::is_a(tree.node(n).ty, "memory-backend") {
        let path = tree.path(n);
        let used = all_devices(tree).into_iter().any(|d| {
            let v = tree.val(d, "memdev").and_then(QomValue::as_str);
            v == Some(id) || v == Some(path.as_str())
        });
        if used {
            return Err(QmpError::generic(format!(
                "object '{id}' is in use, can not be deleted"
            )));
        }
    }
    // So is a throttle group a throttle filter uses.
    if tree.node(n).ty == "throttle-group" && m.block.graph.throttle_group_in_use(id) {
        return Err(QmpError::generic(format!(
            "object '{id}' is in use, can not be deleted"
        )));
    }
    m.qom.tree.remove(n);
    Ok(())
}
