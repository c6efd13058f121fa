//! A machine's configuration: the default machine, QEMU's command-line
//! options that mean the same here, and a TOML machine file.
//!
//! The default machine is rich enough for QEMU's documented examples to work
//! as written: QEMU's default device names (`ide0-hd0`, `virtio0`,
//! `ide1-cd0`, `net0`, `serial0`, …), a balloon, two iothreads, a memory
//! backend, a TPM and a display console.

pub mod rocker;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A configuration error, worded for the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

fn err<T>(msg: impl Into<String>) -> Result<T, ConfigError> {
    Err(ConfigError(msg.into()))
}

/// A block drive (`-drive`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DriveConfig {
    /// Device name (`ide0-hd0`, `virtio0`, or the `id=` given).
    pub id: String,
    /// `ide`, `virtio`, `scsi`, `floppy`, `none`, …
    pub interface: String,
    /// `disk` or `cdrom`.
    pub media: String,
    pub file: Option<String>,
    pub format: Option<String>,
    /// `driver=`: the top node's driver (`null-co`, `file`, `raw`, …) where no `format=`.
    pub driver: Option<String>,
    /// The driver's own options (`size`, `read-zeroes`, `filename`) and `node-name`.
    pub options: BTreeMap<String, String>,
    pub readonly: bool,
    /// A simulated medium: `file` names no host file and is never opened; the medium has
    /// `size` bytes. Only the default machine's own disks are (their files exist nowhere);
    /// any other drive's file must open, or the machine does not start, as in QEMU.
    pub simulated: bool,
    /// A simulated medium's virtual size in bytes.
    pub size: u64,
    /// The option that gave the drive, as the user wrote it (`-drive file=…`, `-hda a.img`):
    /// what QEMU's start-up errors about the drive begin with.
    #[serde(skip)]
    pub option: Option<String>,
}

impl Default for DriveConfig {
    fn default() -> Self {
        DriveConfig {
            id: String::new(),
            interface: "ide".into(),
            media: "disk".into(),
            file: None,
            format: None,
            driver: None,
            options: BTreeMap::new(),
            readonly: false,
            simulated: false,
            size: 10 << 30,
            option: None,
        }
    }
}

/// A device (`-device driver,id=…,prop=…`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct DeviceConfig {
    pub driver: String,
    pub id: Option<String>,
    pub props: BTreeMap<String, String>,
    /// The option as given (`-device TEXT`), for errors that name it.
    #[serde(skip)]
    pub option: Option<String>,
}

/// A network backend (`-netdev type,id=…`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct NetdevConfig {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub props: BTreeMap<String, String>,
}

/// A QOM object (`-object type,id=…`): iothreads, memory backends, …
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct ObjectConfig {
    #[serde(rename = "qom-type")]
    pub qom_type: String,
    pub id: String,
    pub props: BTreeMap<String, String>,
}

/// A block node (`-blockdev`, JSON or keyval): its node name, driver and
/// the other options (nested ones dotted: `file.filename`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct BlockdevConfig {
    #[serde(rename = "node-name")]
    pub node_name: String,
    pub driver: String,
    pub props: BTreeMap<String, String>,
}

/// An audio back end (`-audiodev driver,id=…`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct AudiodevConfig {
    pub id: String,
    pub driver: String,
    pub props: BTreeMap<String, String>,
}

/// A file descriptor handed to the process (`-add-fd fd=N,set=S`): it is
/// reachable as `/dev/fdset/S`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct FdConfig {
    pub fd: i32,
    pub set: i64,
    pub opaque: Option<String>,
}

/// An option recorded as given: its name without the dash, and its
/// argument if it takes one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct OptionConfig {
    pub name: String,
    pub value: Option<String>,
}

/// The TPM (`-tpmdev` + `-device tpm-tis`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TpmConfig {
    pub id: String,
    pub model: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub path: Option<String>,
    #[serde(rename = "cancel-path")]
    pub cancel_path: Option<String>,
}

impl Default for TpmConfig {
    fn default() -> Self {
        TpmConfig {
            id: "tpm0".into(),
            model: "tpm-tis".into(),
            kind: "passthrough".into(),
            path: Some("/dev/tpm0".into()),
            cancel_path: Some("/sys/class/misc/tpm0/device/cancel".into()),
        }
    }
}

/// How the modelled guest behaves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GuestConfig {
    /// The guest reacts to ACPI power button presses.
    pub acpi: bool,
    /// How long the guest takes to shut down after a power button press.
    #[serde(rename = "powerdown-delay-ms")]
    pub powerdown_delay_ms: u64,
    /// The guest's balloon driver follows balloon targets.
    #[serde(rename = "balloon-follow")]
    pub balloon_follow: bool,
}

impl Default for GuestConfig {
    fn default() -> Self {
        GuestConfig {
            acpi: true,
            powerdown_delay_ms: 500,
            balloon_follow: true,
        }
    }
}

/// One machine's configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MachineConfig {
    /// `-name`.
    pub name: Option<String>,
    /// `-uuid`.
    pub uuid: Option<String>,
    /// Guest RAM in bytes (`-m`); a machine file may also write a size
    /// with a suffix, as `-m` takes it (`"2G"`, `"512"` in MiB).
    #[serde(rename = "memory", deserialize_with = "size::deserialize")]
    pub memory_bytes: u64,
    /// `-m maxmem=`: 0 when memory hotplug is off.
    #[serde(rename = "maxmem", deserialize_with = "size::deserialize")]
    pub max_memory_bytes: u64,
    /// `-smp N`.
    pub cpus: u32,
    /// `-smp maxcpus=`.
    #[serde(rename = "maxcpus")]
    pub max_cpus: u32,
    pub sockets: u32,
    pub cores: u32,
    pub threads: u32,
    /// `-machine type=`.
    #[serde(rename = "machine")]
    pub machine_type: String,
    /// `-cpu`.
    #[serde(rename = "cpu")]
    pub cpu_model: String,
    /// KVM acceleration (`-enable-kvm`, `-machine accel=kvm`).
    pub kvm: bool,
    /// Under KVM, answer what depends on the host's CPU (`host` and `max`, each CPU
    /// model's unavailable features) as the host the catalogue was recorded on, not as the
    /// host's `/dev/kvm` says (for comparing with recorded transcripts; without a usable
    /// `/dev/kvm`, the recorded host's answers stand anyway).
    #[serde(rename = "kvm-recorded-host")]
    pub kvm_recorded_host: bool,
    /// `-S`: start in `prelaunch` and wait for `cont`.
    #[serde(rename = "start-paused")]
    pub start_paused: bool,
    /// `-no-shutdown`: stay in `shutdown` state instead of exiting.
    #[serde(rename = "no-shutdown")]
    pub no_shutdown: bool,
    /// `-no-reboot`: a guest reboot is a shutdown.
    #[serde(rename = "no-reboot")]
    pub no_reboot: bool,
    /// `-incoming URI`: wait in `inmigrate` for an incoming migration.
    pub incoming: Option<String>,
    /// `-watchdog-action`: what the watchdog does when it fires.
    #[serde(rename = "watchdog-action")]
    pub watchdog_action: String,
    pub drives: Vec<DriveConfig>,
    pub devices: Vec<DeviceConfig>,
    pub netdevs: Vec<NetdevConfig>,
    pub objects: Vec<ObjectConfig>,
    /// `-chardev` option strings as given (the transports parse them).
    pub chardevs: Vec<String>,
    /// `-qmp` option strings as given.
    pub qmp: Vec<String>,
    /// `-mon` option strings as given.
    pub mon: Vec<String>,
    /// `-qmp-pretty` option strings as given (QMP, pretty-printed).
    #[serde(rename = "qmp-pretty")]
    pub qmp_pretty: Vec<String>,
    /// `-monitor` option strings as given (the human monitor).
    pub monitor: Vec<String>,
    pub tpm: Option<TpmConfig>,
    /// `-vnc` display (`:0`, `0.0.0.0:0`, `none`).
    pub vnc: Option<String>,
    /// `-spice` options (`port=5930,addr=…,disable-ticketing=on`).
    pub spice: Option<String>,
    /// `-serial` backends, in order (`serial0`, `serial1`, …).
    pub serials: Vec<String>,
    pub pidfile: Option<String>,
    pub daemonize: bool,
    /// `-machine` properties other than the type and accelerator
    /// (`usb=off`, `dump-guest-core=off`, `memory-backend=pc.ram`, …).
    #[serde(rename = "machine-props")]
    pub machine_props: BTreeMap<String, String>,
    /// `-cpu` features after the model (`+vmx,-svm`, `migratable=on`).
    #[serde(rename = "cpu-props")]
    pub cpu_props: Vec<String>,
    /// `-accel` (or `-machine accel=`) as given: the accelerators to try in
    /// order.
    pub accel: Vec<String>,
    /// `-m slots=`: memory hotplug slots.
    #[serde(rename = "ram-slots")]
    pub ram_slots: u64,
    /// The rest of `-smp` (`dies`, `clusters`, `modules`, `books`, `drawers`).
    #[serde(rename = "smp-props")]
    pub smp_props: BTreeMap<String, u32>,
    /// `-blockdev` nodes, in order.
    pub blockdevs: Vec<BlockdevConfig>,
    /// `-audiodev` back ends.
    pub audiodevs: Vec<AudiodevConfig>,
    /// `-add-fd` descriptors.
    pub fds: Vec<FdConfig>,
    /// Options recorded as given: `-rtc`, `-boot`, `-global`,
    /// `-overcommit`, `-sandbox`, `-msg`, `-kernel`, `-initrd`, `-append`,
    /// `-net`, `-display`, `-snapshot`, ….
    pub options: Vec<OptionConfig>,
    /// What `query-version` and the greeting report.
    #[serde(rename = "qemu-version", with = "version_str")]
    pub qemu_version: (u64, u64, u64),
    pub package: String,
    pub guest: GuestConfig,
    /// Drives of the default machine that a drive given on the command
    /// line in the same place (or with the same id) replaces, as QEMU
    /// creates its default drives only where the command line left room.
    #[serde(skip)]
    pub default_drives: Vec<String>,
    /// Where an IDE drive whose id does not say it sits: id → (bus, unit).
    #[serde(skip)]
    pub drive_slots: BTreeMap<String, (u32, u32)>,
    /// Run as qemu-storage-daemon: no machine, no CPUs, no guest devices; the QOM tree and
    /// type list are the daemon's.
    #[serde(skip)]
    pub storage_daemon: bool,
}

mod size {
    use serde::{Deserialize, Deserializer};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Size {
        Bytes(u64),
        Text(String),
    }

    /// Bytes as an integer, or a size string with `-m`'s units.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        match Size::deserialize(d)? {
            Size::Bytes(b) => Ok(b),
            Size::Text(t) => super::parse_size(&t, 1 << 20)
                .ok_or_else(|| serde::de::Error::custom(format!("invalid size '{t}'"))),
        }
    }
}

mod version_str {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &(u64, u64, u64), s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{}.{}.{}", v.0, v.1, v.2))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<(u64, u64, u64), D::Error> {
        let s = String::deserialize(d)?;
        super::parse_version(&s).map_err(|e| serde::de::Error::custom(e.0))
    }
}

/// Whether `/dev/kvm` can be opened for a guest (as QEMU's KVM accelerator needs it).
pub fn kvm_usable() -> bool {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok()
}

/// Parse `X.Y.Z` (or `X.Y`).
pub fn parse_version(s: &str) -> Result<(u64, u64, u64), ConfigError> {
    let parts: Vec<&str> = s.split('.').collect();
    if parts.len() < 2 || parts.len() > 3 {
        return err(format!("invalid version '{s}' (expected X.Y.Z)"));
    }
    let mut v = [0u64; 3];
    for (i, p) in parts.iter().enumerate() {
        v[i] = p
            .parse()
            .map_err(|_| ConfigError(format!("invalid version '{s}' (expected X.Y.Z)")))?;
    }
    Ok((v[0], v[1], v[2]))
}

impl Default for MachineConfig {
    fn default() -> Self {
        MachineConfig::default_machine()
    }
}

impl MachineConfig {
    /// A machine with nothing but RAM and CPUs (what QEMU gives with
    /// `-nodefaults`).
    pub fn empty() -> MachineConfig {
        MachineConfig {
            name: None,
            uuid: None,
            memory_bytes: 1 << 30,
            max_memory_bytes: 0,
            cpus: 2,
            max_cpus: 4,
            sockets: 0,
            cores: 0,
            threads: 0,
            machine_type: "pc-i440fx-2.12".into(),
            cpu_model: "qemu64".into(),
            kvm: true,
            start_paused: false,
            no_shutdown: false,
            no_reboot: false,
            watchdog_action: "reset".into(),
            incoming: None,
            drives: Vec::new(),
            devices: Vec::new(),
            netdevs: Vec::new(),
            objects: Vec::new(),
            chardevs: Vec::new(),
            qmp: Vec::new(),
            qmp_pretty: Vec::new(),
            monitor: Vec::new(),
            mon: Vec::new(),
            tpm: None,
            vnc: None,
            spice: None,
            serials: Vec::new(),
            pidfile: None,
            daemonize: false,
            machine_props: BTreeMap::new(),
            cpu_props: Vec::new(),
            accel: Vec::new(),
            ram_slots: 0,
            smp_props: BTreeMap::new(),
            blockdevs: Vec::new(),
            audiodevs: Vec::new(),
            fds: Vec::new(),
            options: Vec::new(),
            qemu_version: (2, 12, 0),
            package: String::new(),
            guest: GuestConfig::default(),
            default_drives: Vec::new(),
            drive_slots: BTreeMap::new(),
            storage_daemon: false,
            kvm_recorded_host: false,
        }
    }

    /// The default machine: 2 vCPUs, 1 GiB, disks `ide0-hd0` and `virtio0`,
    /// a CD-ROM `ide1-cd0`, an empty floppy drive `floppy0` (as QEMU's PC has), a NIC `net0` on netdev `hostnet0` (user), a
    /// serial port `serial0`, a VNC display, a balloon, iothreads
    /// `iothread0`/`iothread1`, a memory backend `mem1`, a TPM `tpm0`, a
    /// display console `video0` and a VM generation ID device.
    pub fn default_machine() -> MachineConfig {
        let mut c = MachineConfig::empty();
        c.drives = vec![
            DriveConfig {
                id: "ide0-hd0".into(),
                interface: "ide".into(),
                file: Some("disk0.qcow2".into()),
                format: Some("qcow2".into()),
                simulated: true,
                ..Default::default()
            },
            DriveConfig {
                id: "virtio0".into(),
                interface: "virtio".into(),
                file: Some("disk1.qcow2".into()),
                format: Some("qcow2".into()),
                simulated: true,
                ..Default::default()
            },
            DriveConfig {
                id: "ide1-cd0".into(),
                interface: "ide".into(),
                media: "cdrom".into(),
                readonly: true,
                size: 0,
                ..Default::default()
            },
            DriveConfig {
                id: "floppy0".into(),
                interface: "floppy".into(),
                size: 0,
                ..Default::default()
            },
        ];
        c.default_drives = c.drives.iter().map(|d| d.id.clone()).collect();
        c.netdevs = vec![NetdevConfig {
            id: "hostnet0".into(),
            kind: "user".into(),
            props: BTreeMap::new(),
        }];
        let dev = |driver: &str, id: &str, props: &[(&str, &str)]| DeviceConfig {
            driver: driver.into(),
            id: Some(id.into()),
            props: props
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            option: None,
        };
        c.devices = vec![
            dev("VGA", "video0", &[]),
            dev(
                "virtio-net-pci",
                "net0",
                &[("netdev", "hostnet0"), ("mac", "52:54:00:12:34:56")],
            ),
            dev("virtio-balloon-pci", "balloon0", &[]),
            dev(
                "vmgenid",
                "vmgenid0",
                &[("guid", "324e6eaf-d1d1-4bf6-bf41-b9bb6c91fb87")],
            ),
        ];
        let obj = |t: &str, id: &str, props: &[(&str, &str)]| ObjectConfig {
            qom_type: t.into(),
            id: id.into(),
            props: props
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        c.objects = vec![
            obj("iothread", "iothread0", &[]),
            obj("iothread", "iothread1", &[]),
            obj("memory-backend-ram", "mem1", &[("size", "536870912")]),
        ];
        c.tpm = Some(TpmConfig::default());
        c.vnc = Some("0.0.0.0:0,password=on".into());
        c.serials = vec!["vc".into()];
        c
    }

    /// Read a TOML machine file. Keys are those of [`MachineConfig`] in
    /// QEMU's spelling (`memory`, `maxcpus`, `start-paused`, `[[drives]]`,
    /// `[guest]`, …); absent keys keep the default machine's values.
    pub fn from_toml(text: &str) -> Result<MachineConfig, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError(format!("machine file: {e}")))
    }

    /// Serialise as TOML (for `--print-config` and tests).
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_default()
    }

    /// Number of vCPUs present at start.
    pub fn vcpus(&self) -> u32 {
        self.cpus.max(1)
    }

    /// The serial devices' names (`serial0`, …).
    pub fn serial_names(&self) -> Vec<String> {
        (0..self.serials.len())
            .map(|i| format!("serial{i}"))
            .collect()
    }

    /// The iothreads' ids.
    pub fn iothreads(&self) -> impl Iterator<Item = &ObjectConfig> {
        self.objects.iter().filter(|o| o.qom_type == "iothread")
    }

    /// The memory backends.
    pub fn memdevs(&self) -> impl Iterator<Item = &ObjectConfig> {
        self.objects
            .iter()
            .filter(|o| o.qom_type.starts_with("memory-backend-"))
    }

    /// A whole command line's options, as (name, value) in the order given.
    /// QEMU settles the machine type before it creates anything, so the
    /// `-machine`/`-M` options apply first wherever they stand; the others
    /// follow in their order.
    pub fn apply_options(&mut self, opts: &[(String, Option<String>)]) -> Result<(), ConfigError> {
        let is_machine = |n: &str| matches!(n, "machine" | "M");
        let (first, rest): (Vec<_>, Vec<_>) = opts.iter().partition(|(n, _)| is_machine(n));
        for (name, value) in first.into_iter().chain(rest) {
            self.apply_option(name, value.as_deref())?;
        }
        Ok(())
    }

    /// Apply one QEMU option (`name` without leading dashes). `value` is
    /// the option's argument for options that take one.
    pub fn apply_option(&mut self, name: &str, value: Option<&str>) -> Result<(), ConfigError> {
        let need = |v: Option<&str>| -> Result<String, ConfigError> {
            v.map(str::to_string)
                .ok_or_else(|| ConfigError(format!("-{name}: requires an argument")))
        };
        match name {
            "S" => self.start_paused = true,
            "no-shutdown" => self.no_shutdown = true,
            "no-reboot" => self.no_reboot = true,
            "no-acpi" if self.qemu_version >= (9, 0, 0) => return err("-no-acpi: invalid option"),
            "no-acpi" => self.guest.acpi = false,
            "incoming" => self.incoming = Some(need(value)?),
            "watchdog-action" => {
                let v = need(value)?;
                const ACTIONS: [&str; 7] = [
                    "reset",
                    "shutdown",
                    "poweroff",
                    "pause",
                    "debug",
                    "none",
                    "inject-nmi",
                ];
                if !ACTIONS.contains(&v.as_str()) {
                    return err(format!(
                        "-watchdog-action {v}: unknown -watchdog-action parameter"
                    ));
                }
                self.watchdog_action = v;
            }
            "daemonize" => self.daemonize = true,
            "enable-kvm" => self.kvm = true,
            "nodefaults" => {
                self.remove_defaults();
                // The board leaves out its own default devices too (the parallel port).
                self.options.push(OptionConfig {
                    name: name.to_string(),
                    value: None,
                });
            }
            "nographic" => self.vnc = None,
            "name" => {
                let v = need(value)?;
                let kv = parse_keyval(&v, Some("guest"));
                match kv.get("guest") {
                    Some(g) => self.name = Some(g.clone()),
                    None => return err(format!("-name {v}: missing guest name")),
                }
            }
            "uuid" => {
                let v = need(value)?;
                if !is_uuid(&v) {
                    return err(format!("-uuid {v}: Fail to parse UUID string"));
                }
                self.uuid = Some(v.to_ascii_lowercase());
            }
            "m" => {
                let v = need(value)?;
                let kv = parse_keyval(&v, Some("size"));
                if kv.is_empty() {
                    return err(format!("-m {v}: missing 'size' option value"));
                }
                if let Some(k) = kv
                    .keys()
                    .find(|k| !matches!(k.as_str(), "size" | "slots" | "maxmem"))
                {
                    return err(format!("-m {v}: Invalid parameter '{k}'"));
                }
                let mut memory = self.memory_bytes;
                if let Some(s) = kv.get("size") {
                    if size_out_of_range(s, 1 << 20) {
                        return err(format!(
                            "-m {v}: Value '{s}' is out of range for parameter 'size'"
                        ));
                    }
                    memory = parse_size(s, 1 << 20)
                        .ok_or_else(|| ConfigError(format!("-m {v}: invalid RAM size")))?;
                }
                let mut maxmem = self.max_memory_bytes;
                if let Some(s) = kv.get("maxmem") {
                    maxmem = parse_size(s, 1 << 20)
                        .ok_or_else(|| ConfigError(format!("-m {v}: invalid maxmem size")))?;
                }
                let slots = match kv.get("slots") {
                    Some(s) => s.parse::<u64>().map_err(|_| {
                        ConfigError(format!("-m {v}: Parameter 'slots' expects uint64"))
                    })?,
                    None => self.ram_slots,
                };
                if memory == 0 {
                    return err(format!("-m {v}: RAM size too small"));
                }
                if kv.contains_key("slots") && !kv.contains_key("maxmem") {
                    return err("slots specified but no max-size");
                }
                if kv.contains_key("maxmem") && maxmem < memory {
                    return err(format!(
                        "invalid value of maxmem: maximum memory size (0x{maxmem:x}) must be at least the initial memory size (0x{memory:x})"
                    ));
                }
                self.memory_bytes = memory;
                self.max_memory_bytes = maxmem;
                self.ram_slots = slots;
            }
            "smp" => {
                let v = need(value)?;
                self.apply_smp(&v)?;
            }
            "machine" | "M" => {
                let v = need(value)?;
                let kv = parse_keyval(&v, Some("type"));
                for (k, x) in kv {
                    match k.as_str() {
                        "type" => self.machine_type = x,
                        "accel" => {
                            self.accel = x.split(':').map(str::to_string).collect();
                            self.kvm = self.accel.first().map(String::as_str) == Some("kvm");
                        }
                        _ => {
                            self.machine_props.insert(k, x);
                        }
                    }
                }
                // A machine type that takes fewer CPUs than the defaults
                // starts with what it takes; an -smp asking for more (it
                // applies after) is still refused.
                if let Some((_, max)) = machine_type_info(&self.machine_type) {
                    self.cpus = self.cpus.min(max);
                    self.max_cpus = self.max_cpus.min(max);
                }
                self.place_default_cdrom();
                self.drop_default_floppy();
            }
            "accel" => {
                let v = need(value)?;
                let kv = parse_keyval(&v, Some("accel"));
                let Some(a) = kv.get("accel") else {
                    return err(format!("-accel {v}: Parameter 'accel' is missing"));
                };
                if !matches!(a.as_str(), "kvm" | "tcg" | "qtest" | "xen") {
                    return err(format!("-accel {v}: invalid accelerator {a}"));
                }
                self.accel.push(a.clone());
                self.kvm = self.accel.first().map(String::as_str) == Some("kvm");
            }
            "cpu" => {
                let v = need(value)?;
                let mut parts = qmpkit_wire::opts::split_options(&v).into_iter();
                self.cpu_model = parts.next().unwrap_or_else(|| "qemu64".into());
                self.cpu_props = parts.filter(|p| !p.is_empty()).collect();
            }
            "drive" => {
                let v = need(value)?;
                self.add_drive(&v, format!("-drive {v}"))?;
            }
            "hda" | "hdb" | "hdc" | "hdd" | "cdrom" | "fda" | "fdb" => {
                let v = need(value)?;
                let (interface, index, media) = match name {
                    "hda" => ("ide", 0, "disk"),
                    "hdb" => ("ide", 1, "disk"),
                    "hdc" => ("ide", 2, "disk"),
                    "hdd" => ("ide", 3, "disk"),
                    "fda" => ("floppy", 0, "disk"),
                    "fdb" => ("floppy", 1, "disk"),
                    _ => ("ide", 2, "cdrom"),
                };
                let opt = format!(
                    "file={},if={interface},index={index},media={media}",
                    v.replace(',', ",,")
                );
                self.add_drive(&opt, format!("-{name} {v}")).map_err(|e| {
                    // Errors name the option as given.
                    let prefix = format!("-drive {opt}: ");
                    ConfigError(match e.0.strip_prefix(&prefix) {
                        Some(rest) => format!("-{name} {v}: {rest}"),
                        None => e.0,
                    })
                })?;
            }
            "device" => {
                let v = need(value)?;
                let mut kv = option_args(name, &v, Some("driver"))?;
                let driver = match kv.remove("driver") {
                    Some(d) => d,
                    None => return err(format!("-device {v}: Parameter 'driver' is missing")),
                };
                let id = kv.remove("id");
                if let Some(id) = &id {
                    if self.devices.iter().any(|d| d.id.as_deref() == Some(id)) {
                        return err(format!("-device {v}: Duplicate ID '{id}' for device"));
                    }
                }
                crate::qom::props::check_device_option(&driver, &kv, self.modern())
                    .map_err(|e| ConfigError(format!("-device {v}: {}", e.desc)))?;
                self.devices.push(DeviceConfig {
                    driver,
                    id,
                    props: kv,
                    option: Some(format!("-device {v}")),
                });
                self.follow_cd_devices();
            }
            "netdev" => {
                let v = need(value)?;
                let mut kv = option_args(name, &v, Some("type"))?;
                let kind = match kv.remove("type") {
                    Some(k) => k,
                    None => return err(format!("-netdev {v}: Parameter 'type' is missing")),
                };
                if let Err(e) = self.check_netdev_type(&kind) {
                    return err(format!("-netdev {v}: {e}"));
                }
                let id = match kv.remove("id") {
                    Some(id) => id,
                    None => return err(format!("-netdev {v}: Parameter 'id' is missing")),
                };
                if self.netdevs.iter().any(|n| n.id == id) {
                    return err(format!("-netdev {v}: Duplicate ID '{id}' for netdev"));
                }
                self.netdevs.push(NetdevConfig {
                    id,
                    kind,
                    props: kv,
                });
            }
            "object" => {
                let v = need(value)?;
                let mut kv = option_args(name, &v, Some("qom-type"))?;
                let qom_type = kv.remove("qom-type").unwrap_or_default();
                let id = match kv.remove("id") {
                    Some(id) => id,
                    None => return err(format!("-object {v}: Parameter 'id' is missing")),
                };
                if self.objects.iter().any(|o| o.id == id) {
                    return err(format!(
                        "-object {v}: attempt to add duplicate property '{id}' to object (type 'container')"
                    ));
                }
                self.objects.push(ObjectConfig {
                    qom_type,
                    id,
                    props: kv,
                });
            }
            "tpmdev" => {
                let v = need(value)?;
                let kv = parse_keyval(&v, Some("type"));
                let mut t = TpmConfig {
                    kind: kv
                        .get("type")
                        .cloned()
                        .unwrap_or_else(|| "passthrough".into()),
                    id: kv.get("id").cloned().unwrap_or_else(|| "tpm0".into()),
                    path: kv.get("path").cloned(),
                    cancel_path: kv.get("cancel-path").cloned(),
                    ..TpmConfig::default()
                };
                if t.kind != "passthrough" {
                    t.path = None;
                    t.cancel_path = None;
                }
                self.tpm = Some(t);
            }
            "vnc" => {
                let v = need(value)?;
                self.vnc = if v == "none" { None } else { Some(v) };
            }
            "spice" => self.spice = Some(need(value)?),
            "serial" => {
                let v = need(value)?;
                if v != "none" {
                    self.serials.push(v);
                }
            }
            "qmp" => self.qmp.push(need(value)?),
            "qmp-pretty" => self.qmp_pretty.push(need(value)?),
            "monitor" => self.monitor.push(need(value)?),
            "chardev" => self.chardevs.push(need(value)?),
            "mon" => self.mon.push(need(value)?),
            "pidfile" => self.pidfile = Some(need(value)?),
            "blockdev" => {
                let v = need(value)?;
                let mut kv = option_args(name, &v, None)?;
                let Some(driver) = kv.remove("driver") else {
                    return err(format!("-blockdev {v}: Parameter 'driver' is missing"));
                };
                let Some(node_name) = kv.remove("node-name") else {
                    return err(format!(
                        "-blockdev {v}: A block device must be given a node-name"
                    ));
                };
                if self.blockdevs.iter().any(|b| b.node_name == node_name) {
                    return err(format!(
                        "-blockdev {v}: Duplicate nodes with node-name='{node_name}'"
                    ));
                }
                self.blockdevs.push(BlockdevConfig {
                    node_name,
                    driver,
                    props: kv,
                });
            }
            "audiodev" => {
                let v = need(value)?;
                let mut kv = option_args(name, &v, Some("driver"))?;
                let Some(id) = kv.remove("id") else {
                    return err(format!("-audiodev {v}: Parameter 'id' is missing"));
                };
                let Some(driver) = kv.remove("driver") else {
                    return err(format!("-audiodev {v}: Parameter 'driver' is missing"));
                };
                self.audiodevs.push(AudiodevConfig {
                    id,
                    driver,
                    props: kv,
                });
            }
            "add-fd" => {
                let v = need(value)?;
                let kv = parse_keyval(&v, None);
                if let Some(k) = kv
                    .keys()
                    .find(|k| !matches!(k.as_str(), "fd" | "set" | "opaque"))
                {
                    return err(format!("-add-fd {v}: Invalid parameter '{k}'"));
                }
                let fd = kv.get("fd").and_then(|f| f.parse::<i32>().ok());
                let set = kv.get("set").and_then(|f| f.parse::<i64>().ok());
                let Some(fd) = fd.filter(|f| *f >= 0) else {
                    return err(format!(
                        "-add-fd {v}: fd option is required and must be non-negative"
                    ));
                };
                if fd <= 2 {
                    return err(format!("-add-fd {v}: fd cannot be a standard I/O stream"));
                }
                let Some(set) = set.filter(|s| *s >= 0) else {
                    return err(format!(
                        "-add-fd {v}: set option is required and must be non-negative"
                    ));
                };
                self.fds.push(FdConfig {
                    fd,
                    set,
                    opaque: kv.get("opaque").cloned(),
                });
            }
            // Removed in QEMU 9.0 (`-machine hpet=off`, `acpi=off`).
            "no-hpet" if self.qemu_version >= (9, 0, 0) => return err("-no-hpet: invalid option"),
            "no-hpet" | "snapshot" | "no-user-config" | "nodefconfig" | "enable-fips" | "usb"
            | "no-fd-bootchk" | "nographic-compat" => self.options.push(OptionConfig {
                name: name.to_string(),
                value: None,
            }),
            other if option_takes_value(other) == Some(true) => self.options.push(OptionConfig {
                name: name.to_string(),
                value: Some(need(value)?),
            }),
            other => return err(format!("-{other}: invalid option")),
        }
        Ok(())
    }

    /// `-drive v` (shown as `shown` in start-up errors about the drive).
    fn add_drive(&mut self, v: &str, shown: String) -> Result<(), ConfigError> {
        let (mut d, slot) = self.drive_from_option(v)?;
        d.option = Some(shown);
        // A default drive in the same place, or with the same id,
        // gives way (QEMU creates it only where there is room).
        let defaults = std::mem::take(&mut self.default_drives);
        let (gone, kept): (Vec<String>, Vec<String>) = defaults.into_iter().partition(|id| {
            *id == d.id
                || (slot.is_some()
                    && self.slot(id) == slot
                    && self
                        .drives
                        .iter()
                        .any(|x| x.id == *id && x.interface == d.interface))
        });
        self.default_drives = kept;
        self.drives.retain(|x| !gone.contains(&x.id));
        // QEMU creates the command line's drives in its order and its default ones after
        // them (query-block lists drives in the order they were created).
        let at = self
            .drives
            .iter()
            .position(|x| self.default_drives.contains(&x.id));
        if self.drives.iter().any(|x| x.id == d.id) {
            return err(format!("-drive {v}: Duplicate ID '{}' for drive", d.id));
        }
        if let Some(slot) = slot {
            self.drive_slots.insert(d.id.clone(), slot);
        }
        match at {
            Some(i) => self.drives.insert(i, d),
            None => self.drives.push(d),
        }
        self.follow_cd_devices();
        Ok(())
    }

    /// `-nodefaults`: the default machine's devices, drives and back ends
    /// go; what the command line gave (before or after) stays.
    fn remove_defaults(&mut self) {
        let d = MachineConfig::default_machine();
        let defaults = std::mem::take(&mut self.default_drives);
        self.drives.retain(|x| !defaults.contains(&x.id));
        for id in &defaults {
            self.drive_slots.remove(id);
        }
        self.devices.retain(|x| !d.devices.contains(x));
        self.netdevs.retain(|x| !d.netdevs.contains(x));
        self.objects.retain(|x| !d.objects.contains(x));
        if self.tpm == d.tpm {
            self.tpm = None;
        }
        if self.vnc == d.vnc {
            self.vnc = None;
        }
        if self.serials.first() == d.serials.first() {
            self.serials.remove(0);
        }
    }

    /// `-smp [cpus=]N[,maxcpus=M][,sockets=S][,dies=D][,modules=…]
    /// [,cores=C][,threads=T]`: missing counts are derived as QEMU 6.2
    /// and later derive them (cores preferred over sockets), and the
    /// topology must multiply to `maxcpus`.
    fn apply_smp(&mut self, v: &str) -> Result<(), ConfigError> {
        const KEYS: &[&str] = &[
            "cpus", "maxcpus", "drawers", "books", "sockets", "dies", "clusters", "modules",
            "cores", "threads",
        ];
        let kv = parse_keyval(v, Some("cpus"));
        let mut n: BTreeMap<&str, u32> = BTreeMap::new();
        for (k, x) in &kv {
            let Some(key) = KEYS.iter().find(|key| **key == k.as_str()) else {
                return err(if self.modern() {
                    format!("Parameter 'smp.{k}' is unexpected")
                } else {
                    format!("-smp {v}: Invalid parameter '{k}'")
                });
            };
            let num = x
                .parse::<u32>()
                .map_err(|_| ConfigError(format!("-smp {v}: invalid value for {k}")))?;
            n.insert(key, num);
        }
        if n.values().any(|x| *x == 0) {
            return err(if self.modern() {
                "Invalid CPU topology: CPU topology parameters must be greater than zero"
                    .to_string()
            } else {
                format!("-smp {v}: invalid number of CPUs")
            });
        }
        let get = |k: &str| n.get(k).copied();
        let (dies, modules) = (get("dies").unwrap_or(1), get("modules").unwrap_or(1));
        let threads = get("threads").unwrap_or(1);
        let given = get("sockets").is_some() || get("cores").is_some() || get("threads").is_some();
        let mut cpus = get("cpus");
        let mut maxcpus = get("maxcpus");
        let (mut sockets, mut cores) = (get("sockets"), get("cores"));
        let inner = dies.saturating_mul(modules).saturating_mul(threads);
        let top = maxcpus.or(cpus);
        match (sockets, cores) {
            (Some(_), Some(_)) => {}
            (Some(s), None) => {
                cores = Some(top.map_or(1, |t| (t / s.saturating_mul(inner).max(1)).max(1)))
            }
            (None, Some(c)) => {
                sockets = Some(top.map_or(1, |t| (t / c.saturating_mul(inner).max(1)).max(1)))
            }
            (None, None) => {
                sockets = Some(1);
                cores = Some(top.map_or(1, |t| (t / inner.max(1)).max(1)));
            }
        }
        let (sockets, cores) = (sockets.unwrap_or(1), cores.unwrap_or(1));
        let product = u64::from(sockets) * u64::from(inner) * u64::from(cores);
        let product32 = u32::try_from(product).unwrap_or(u32::MAX);
        if maxcpus.is_none() {
            maxcpus = Some(cpus.unwrap_or(product32));
        }
        if cpus.is_none() {
            cpus = maxcpus;
        }
        let (cpus, maxcpus) = (cpus.unwrap_or(1), maxcpus.unwrap_or(1));
        if cpus == 0 {
            return err(format!("-smp {v}: invalid number of CPUs"));
        }
        if given && product != u64::from(maxcpus) {
            return err(format!(
                "Invalid CPU topology: product of the hierarchy must match maxcpus: sockets ({sockets}) * dies ({dies}) * modules ({modules}) * cores ({cores}) * threads ({threads}) != maxcpus ({maxcpus})"
            ));
        }
        if maxcpus < cpus {
            return err(format!(
                "-smp {v}: maxcpus must be equal to or greater than smp"
            ));
        }
        self.cpus = cpus;
        self.max_cpus = maxcpus;
        if given {
            self.sockets = sockets;
            self.cores = cores;
            self.threads = threads;
        } else {
            self.sockets = 0;
            self.cores = 0;
            self.threads = 0;
        }
        self.smp_props = n
            .iter()
            .filter(|(k, _)| matches!(**k, "drawers" | "books" | "dies" | "clusters" | "modules"))
            .map(|(k, x)| (k.to_string(), *x))
            .collect();
        Ok(())
    }

    /// A drive behind a CD-ROM device (`-drive if=none,id=cd1 -device
    /// ide-cd,drive=cd1`) is removable media: removability follows the
    /// device, not `media=`.
    /// The default CD-ROM sits where `-cdrom` would put it, IDE index 2:
    /// `ide1-cd0` on the PC's two channels of two, `ide2-cd0` on the Q35's
    /// six ports of one.
    /// The Q35 has no default floppy drive (nor a floppy controller without one).
    fn drop_default_floppy(&mut self) {
        if !(self.machine_type == "q35" || self.machine_type.starts_with("pc-q35")) {
            return;
        }
        let gone: Vec<String> = self
            .default_drives
            .iter()
            .filter(|id| {
                self.drives
                    .iter()
                    .any(|d| d.id == **id && d.interface == "floppy")
            })
            .cloned()
            .collect();
        self.drives.retain(|d| !gone.contains(&d.id));
        self.default_drives.retain(|id| !gone.contains(id));
    }

    fn place_default_cdrom(&mut self) {
        let (_, units) = self.ide_geometry();
        let want = format!("ide{}-cd{}", 2 / units, 2 % units);
        let Some(pos) = self.default_drives.iter().position(|id| {
            id.starts_with("ide")
                && id.contains("-cd")
                && self
                    .drives
                    .iter()
                    .any(|d| &d.id == id && d.media == "cdrom")
        }) else {
            return;
        };
        let old = std::mem::replace(&mut self.default_drives[pos], want.clone());
        if old == want || self.drives.iter().any(|d| d.id == want) {
            self.default_drives[pos] = old;
            return;
        }
        if let Some(d) = self.drives.iter_mut().find(|d| d.id == old) {
            d.id = want;
        }
    }

    fn follow_cd_devices(&mut self) {
        for d in &self.devices {
            if !matches!(d.driver.as_str(), "ide-cd" | "scsi-cd") {
                continue;
            }
            let Some(id) = d.props.get("drive") else {
                continue;
            };
            if let Some(dr) = self.drives.iter_mut().find(|x| &x.id == id) {
                dr.media = "cdrom".into();
                dr.readonly = true;
            }
        }
    }

    /// Whether the options speak as QEMU 6.0 and later (QAPI-style
    /// parameter errors).
    fn modern(&self) -> bool {
        let (a, b, _) = self.qemu_version;
        (a, b) >= (6, 0)
    }

    /// `-netdev TYPE`: QEMU's words for a type that is no network back end.
    pub fn check_netdev_type(&self, kind: &str) -> Result<(), String> {
        const BACKENDS: &[&str] = &[
            "user",
            "tap",
            "l2tpv3",
            "socket",
            "vde",
            "bridge",
            "hubport",
            "netmap",
            "vhost-user",
        ];
        // Newer back ends (QEMU 7.2 and later).
        const NEWER: &[&str] = &["stream", "dgram", "vhost-vdpa", "af-xdp"];
        let known =
            BACKENDS.contains(&kind) || (self.qemu_version >= (7, 2, 0) && NEWER.contains(&kind));
        if known {
            return Ok(());
        }
        // `nic` and `none` are client kinds, not back ends.
        if kind == "nic" || kind == "none" {
            return Err("Parameter 'type' expects a netdev backend type".into());
        }
        if self.modern() {
            Err(format!("Parameter 'type' does not accept value '{kind}'"))
        } else {
            Err(format!("Invalid parameter '{kind}'"))
        }
    }

    /// Checks that need the whole command line: the back ends devices name
    /// (`netdev=`, `drive=`, `chardev=`) exist, whatever the order of the
    /// options (QEMU creates back ends before devices). Call once all
    /// options are applied; the error is QEMU's, after the option.
    /// Whether every `-add-fd` descriptor is one the process has: QEMU's refusal otherwise.
    /// Apart from [`validate`](Self::validate), which also checks saved configurations whose
    /// descriptors belonged to another process.
    pub fn check_fds(&self) -> Result<(), ConfigError> {
        for f in &self.fds {
            // SAFETY: F_GETFD only reads the descriptor's flags.
            if unsafe { libc::fcntl(f.fd, libc::F_GETFD) } < 0 {
                let mut spec = format!("fd={},set={}", f.fd, f.set);
                if let Some(o) = &f.opaque {
                    spec.push_str(&format!(",opaque={o}"));
                }
                return err(format!("-add-fd {spec}: fd is not valid or already in use"));
            }
        }
        Ok(())
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        self.check_machine_limits()?;
        crate::catalog::check_cpu_option(self).map_err(ConfigError)?;
        if let Some(b) = self.machine_props.get("memory-backend") {
            if !self.objects.iter().any(|o| &o.id == b) {
                return err(format!("Memory backend '{b}' not found"));
            }
        }
        for n in &self.netdevs {
            if let Err(e) = self.check_netdev_type(&n.kind) {
                return err(format!("-netdev {},id={}: {e}", n.kind, n.id));
            }
        }
        let chardev_ids: Vec<String> = self
            .chardevs
            .iter()
            .filter_map(|c| parse_keyval(c, Some("backend")).get("id").cloned())
            .chain(self.serial_names())
            .collect();
        for (i, d) in self.devices.iter().enumerate() {
            let ty = crate::qom::types::find(&d.driver)
                .or_else(|| {
                    crate::qom::types::resolve_alias(&d.driver).and_then(crate::qom::types::find)
                })
                .map(|t| t.name)
                .unwrap_or("");
            let owner = crate::qom::props::backend_prop_owner(ty);
            let opt = device_option_text(d);
            let missing = |prop: &str, val: &str| {
                ConfigError(format!(
                    "-device {opt}: Property '{owner}.{prop}' can't find value '{val}'"
                ))
            };
            crate::qom::props::check_device_option(&d.driver, &d.props, self.modern())
                .map_err(|e| ConfigError(format!("-device {opt}: {}", e.desc)))?;
            if ty == rocker::TYPE {
                self.check_switch(&self.devices[..i], d)
                    .map_err(|e| ConfigError(format!("-device {opt}: {}", e.desc)))?;
            }
            if let Some(n) = d.props.get("netdev") {
                if !self.netdevs.iter().any(|x| &x.id == n) {
                    return Err(missing("netdev", n));
                }
            }
            if let Some(dr) = d.props.get("drive") {
                if !self.drives.iter().any(|x| &x.id == dr)
                    && !self.blockdevs.iter().any(|x| &x.node_name == dr)
                {
                    return Err(missing("drive", dr));
                }
            }
            if let Some(c) = d.props.get("chardev") {
                if !chardev_ids.iter().any(|x| x == c) {
                    return Err(missing("chardev", c));
                }
            }
        }
        Ok(())
    }

    /// A rocker switch's ports and world, and its name among the switches `before` it.
    fn check_switch(
        &self,
        before: &[DeviceConfig],
        d: &DeviceConfig,
    ) -> Result<(), qmpkit_wire::QmpError> {
        let json = |m: &BTreeMap<String, String>| -> Vec<(String, serde_json::Value)> {
            m.iter()
                .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                .collect()
        };
        let is_switch = |o: &DeviceConfig| {
            crate::qom::types::find(&o.driver).map(|t| t.name) == Some(rocker::TYPE)
        };
        let ports_of = |o: &DeviceConfig| -> Vec<String> {
            o.props
                .get("ports")
                .and_then(|p| serde_json::from_str::<Vec<String>>(p).ok())
                .unwrap_or_default()
        };
        rocker::check_new(
            &json(&d.props),
            |p| self.netdevs.iter().any(|x| x.id == p),
            |p| {
                before.iter().any(|o| {
                    o.props.get("netdev").map(String::as_str) == Some(p)
                        || (is_switch(o) && ports_of(o).iter().any(|x| x == p))
                })
            },
            |name| {
                before.iter().any(|o| {
                    is_switch(o)
                        && o.props
                            .get("name")
                            .map(String::as_str)
                            .unwrap_or(rocker::TYPE)
                            == name
                })
            },
        )
    }

    /// IDE buses and units per bus of the machine type: the PC's two
    /// channels of two, the Q35's six AHCI ports of one.
    fn ide_geometry(&self) -> (u32, u32) {
        if self.machine_type == "q35" || self.machine_type.starts_with("pc-q35") {
            (6, 1)
        } else {
            (2, 2)
        }
    }

    /// Buses and units per bus of a drive interface with fixed places: IDE's
    /// ([`Self::ide_geometry`]) and the floppy controller's one bus of two drives.
    fn geometry(&self, interface: &str) -> (u32, u32) {
        match interface {
            "floppy" => (1, 2),
            _ => self.ide_geometry(),
        }
    }

    /// Where IDE or floppy drive `id` sits: from its generated name
    /// (`ide1-cd0`, `floppy1`) or as it was placed.
    fn slot(&self, id: &str) -> Option<(u32, u32)> {
        if let Some(s) = self.drive_slots.get(id) {
            return Some(*s);
        }
        let d = self.drives.iter().find(|d| d.id == id)?;
        match d.interface.as_str() {
            "ide" => {
                let rest = id.strip_prefix("ide")?;
                let (bus, unit) = rest.split_once('-')?;
                let unit = unit
                    .strip_prefix("hd")
                    .or_else(|| unit.strip_prefix("cd"))?;
                Some((bus.parse().ok()?, unit.parse().ok()?))
            }
            "floppy" => Some((0, id.strip_prefix("floppy")?.parse().ok()?)),
            _ => None,
        }
    }

    /// The unit of floppy drive `id` on the controller (the drive it is, A or B).
    pub fn floppy_unit(&self, id: &str) -> Option<u32> {
        self.drives
            .iter()
            .any(|d| d.id == id && d.interface == "floppy")
            .then(|| self.slot(id).map(|(_, u)| u))
            .flatten()
    }

    /// Whether drive `id` is a floppy disk drive's: an `if=floppy` drive, or one a `floppy`
    /// device takes.
    pub fn is_floppy_drive(&self, id: &str) -> bool {
        self.drives
            .iter()
            .any(|d| d.id == id && d.interface == "floppy")
            || self.devices.iter().any(|d| {
                d.driver == "floppy" && d.props.get("drive").map(String::as_str) == Some(id)
            })
    }

    /// A slot of `interface` held by a drive the command line gave (default
    /// drives give way).
    fn slot_taken(&self, interface: &str, slot: (u32, u32)) -> bool {
        self.drives.iter().any(|d| {
            !self.default_drives.contains(&d.id)
                && d.interface == interface
                && self.slot(&d.id) == Some(slot)
        })
    }

    /// A `-drive` option: the drive, and for IDE the (bus, unit) it takes,
    /// placed as QEMU places it (`index` = bus × units per bus + unit; the
    /// first free unit when neither is given).
    /// The machine type's limits, in QEMU's words: its most CPUs, and RAM
    /// that fits the guest's physical address space (40 bits, the PC's
    /// layout: RAM above 4 GiB, then the 64-bit PCI hole; with an AMD CPU
    /// model, memory that would reach the HyperTransport range below 1 TiB
    /// moves above 1 TiB).
    fn check_machine_limits(&self) -> Result<(), ConfigError> {
        let Some((name, max)) = machine_type_info(&self.machine_type) else {
            return Ok(());
        };
        let want = self.max_cpus.max(self.cpus);
        if want > max {
            return err(format!(
                "Invalid SMP CPUs {want}. The max CPUs supported by machine '{name}' is {max}"
            ));
        }
        let q35 = name.starts_with("pc-q35");
        if !(q35 || name.starts_with("pc-")) {
            return Ok(());
        }
        const GIB: u64 = 1 << 30;
        let ram = self.memory_bytes;
        let below = if q35 {
            if ram >= 0xb000_0000 {
                0x8000_0000
            } else {
                ram
            }
        } else if ram >= 0xe000_0000 {
            0xc000_0000
        } else {
            ram
        };
        let above = ram - below;
        let hole64: u64 = if q35 { 32 * GIB } else { 2 * GIB };
        let round_gib = |x: u128| x.div_ceil(GIB as u128) * GIB as u128;
        let max_used = |start: u64| round_gib(start as u128 + above as u128) + hole64 as u128 - 1;
        let mut used = max_used(4 * GIB);
        const AMD_HT_START: u128 = 0xfd_0000_0000;
        let amd = matches!(
            self.cpu_model.as_str(),
            "qemu64" | "qemu32" | "phenom" | "athlon"
        ) || self.cpu_model.starts_with("Opteron")
            || self.cpu_model.starts_with("EPYC");
        if amd && above > 0 && used >= AMD_HT_START {
            used = max_used(1 << 40);
        }
        const PHYS_BITS: u32 = 40;
        let limit: u128 = (1u128 << PHYS_BITS) - 1;
        if used > limit {
            return err(format!(
                "Address space limit 0x{limit:x} < 0x{used:x} phys-bits too low ({PHYS_BITS})"
            ));
        }
        Ok(())
    }

    fn drive_from_option(&self, v: &str) -> Result<(DriveConfig, Option<(u32, u32)>), ConfigError> {
        let kv = parse_keyval(v, None);
        let driver = kv.get("driver").cloned();
        if let Some(d) = &driver {
            if kv.contains_key("format") {
                return err(format!(
                    "-drive {v}: Cannot specify both 'driver' and 'format'"
                ));
            }
            if !DRIVE_DRIVERS.contains(&d.as_str()) {
                return err(format!("-drive {v}: Unknown driver '{d}'"));
            }
        }
        let own = |k: &str| driver.as_deref().is_some_and(|d| driver_option(d, k));
        for k in kv.keys() {
            if !drive_option_known(k) && !own(k) {
                let msg = match (kv.get("format"), kv.get("file")) {
                    _ if driver.as_deref().is_some_and(is_protocol) => format!(
                        "Block protocol '{}' doesn't support the option '{k}'",
                        driver.as_deref().unwrap_or_default()
                    ),
                    _ if driver.is_some() => format!(
                        "Block format '{}' does not support the option '{k}'",
                        driver.as_deref().unwrap_or_default()
                    ),
                    (Some(f), _) => format!("Block format '{f}' does not support the option '{k}'"),
                    (None, Some(_)) => {
                        format!("Block protocol 'file' doesn't support the option '{k}'")
                    }
                    (None, None) => "Must specify either driver or file".to_string(),
                };
                return err(format!("-drive {v}: {msg}"));
            }
        }
        let interface = kv.get("if").cloned().unwrap_or_else(|| "ide".into());
        let media = kv.get("media").cloned().unwrap_or_else(|| "disk".into());
        if media != "disk" && media != "cdrom" {
            return err(format!("-drive {v}: '{media}' invalid media"));
        }
        let number = |k: &str| -> Result<Option<u32>, ConfigError> {
            match kv.get(k) {
                None => Ok(None),
                Some(x) => x
                    .parse::<u32>()
                    .map(Some)
                    .map_err(|_| ConfigError(format!("-drive {v}: invalid {k}"))),
            }
        };
        let index = number("index")?;
        let bus = number("bus")?;
        let unit = number("unit")?;
        let suffix = if media == "cdrom" { "cd" } else { "hd" };
        let mut slot = None;
        let id = match interface.as_str() {
            "ide" | "floppy" => {
                let (buses, units) = self.geometry(&interface);
                // Floppy drives count units without a limit per bus (an index is a
                // unit); the controller then takes two.
                let per_bus = if interface == "floppy" {
                    u32::MAX
                } else {
                    units
                };
                let (b, u) = match (index, bus.unwrap_or(0), unit) {
                    (Some(_), b, u) if b != 0 || u.is_some() => {
                        return err(format!(
                            "-drive {v}: index cannot be used with bus and unit"
                        ))
                    }
                    (Some(i), _, _) => (i / per_bus, i % per_bus),
                    (None, b, Some(u)) => {
                        if u >= per_bus {
                            return err(format!(
                                "-drive {v}: unit {u} too big (max is {})",
                                units - 1
                            ));
                        }
                        (b, u)
                    }
                    (None, b, None) => {
                        let (mut b, mut u) = (b, 0);
                        while self.slot_taken(&interface, (b, u)) {
                            u += 1;
                            if u >= units {
                                u = 0;
                                b = b.saturating_add(1);
                            }
                            if b >= buses {
                                break;
                            }
                        }
                        (b, u)
                    }
                };
                if b >= buses || u >= units {
                    return err(format!(
                        "-drive {v}: machine type does not support if={interface},bus={b},unit={u}"
                    ));
                }
                if self.slot_taken(&interface, (b, u)) {
                    return err(format!(
                        "-drive {v}: drive with bus={b}, unit={u} (index={}) exists",
                        b * units + u
                    ));
                }
                slot = Some((b, u));
                match (kv.get("id"), interface.as_str()) {
                    (Some(id), _) => id.clone(),
                    (None, "floppy") => format!("floppy{}", b * units + u),
                    (None, _) => format!("ide{b}-{suffix}{u}"),
                }
            }
            _ => match kv.get("id") {
                Some(id) => id.clone(),
                None => {
                    let index = match index {
                        Some(i) => i as usize,
                        // The first index no drive the command line gave
                        // holds (default drives give way).
                        None => self
                            .drives
                            .iter()
                            .filter(|d| {
                                d.interface == interface && !self.default_drives.contains(&d.id)
                            })
                            .count(),
                    };
                    match interface.as_str() {
                        "scsi" => format!("scsi0-{}{}", suffix, index),
                        "sd" => format!("sd{index}"),
                        "pflash" => format!("pflash{index}"),
                        "mtd" => format!("mtd{index}"),
                        "none" => format!("none{index}"),
                        "virtio" => format!("virtio{index}"),
                        other => return err(format!("-drive {v}: unsupported bus type '{other}'")),
                    }
                }
            },
        };
        let readonly = matches!(
            kv.get("readonly").map(String::as_str),
            Some("on") | Some("yes") | Some("true")
        ) || media == "cdrom";
        Ok((
            DriveConfig {
                id,
                interface,
                media: media.clone(),
                file: kv.get("file").cloned(),
                format: kv.get("format").cloned(),
                options: kv
                    .iter()
                    .filter(|(k, _)| own(k) || matches!(k.as_str(), "node-name" | "snapshot"))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
                driver,
                readonly,
                simulated: false,
                size: if media == "cdrom" && !kv.contains_key("file") {
                    0
                } else {
                    10 << 30
                },
                option: None,
            },
            slot,
        ))
    }
}

/// A `-device` option as the user would have written it (for errors).
fn device_option_text(d: &DeviceConfig) -> String {
    let mut s = d.driver.clone();
    if let Some(id) = &d.id {
        s.push_str(",id=");
        s.push_str(id);
    }
    for (k, v) in &d.props {
        s.push(',');
        s.push_str(k);
        s.push('=');
        s.push_str(v);
    }
    s
}

/// Whether `key` is an option `-drive` takes (the drive's own and the
/// block layer's common ones).
/// The drivers `-drive driver=` opens.
const DRIVE_DRIVERS: &[&str] = &["file", "raw", "qcow2", "null-co", "null-aio"];

/// Drivers that are protocols (the words of their refusals differ).
fn is_protocol(driver: &str) -> bool {
    matches!(driver, "file" | "null-co" | "null-aio")
}

/// Options of a driver's own, given on `-drive` next to `driver=`.
fn driver_option(driver: &str, key: &str) -> bool {
    match driver {
        "null-co" | "null-aio" => matches!(key, "size" | "read-zeroes" | "latency-ns"),
        "file" => matches!(key, "filename" | "locking" | "aio"),
        _ => false,
    }
}

fn drive_option_known(key: &str) -> bool {
    const KEYS: &[&str] = &[
        "file",
        "if",
        "bus",
        "unit",
        "index",
        "media",
        "cyls",
        "heads",
        "secs",
        "trans",
        "snapshot",
        "cache",
        "aio",
        "format",
        "serial",
        "addr",
        "werror",
        "rerror",
        "readonly",
        "read-only",
        "copy-on-read",
        "discard",
        "detect-zeroes",
        "id",
        "node-name",
        "driver",
        "group",
        "auto-read-only",
        "force-share",
        "boot",
        "bps",
        "bps_rd",
        "bps_wr",
        "iops",
        "iops_rd",
        "iops_wr",
        "bps_max",
        "bps_rd_max",
        "bps_wr_max",
        "iops_max",
        "iops_rd_max",
        "iops_wr_max",
        "iops_size",
        "bps_max_length",
        "bps_rd_max_length",
        "bps_wr_max_length",
        "iops_max_length",
        "iops_rd_max_length",
        "iops_wr_max_length",
        "stats-account-invalid",
        "stats-account-failed",
        "stats-intervals",
        "password-secret",
        "encrypt",
    ];
    KEYS.contains(&key)
        || [
            "cache.",
            "throttling.",
            "file.",
            "encrypt.",
            "backing.",
            "stats-intervals.",
        ]
        .iter()
        .any(|p| key.starts_with(p))
}

/// Whether `opt` (without dashes) is a QEMU option that takes an argument:
/// `Some(true)` takes one, `Some(false)` is a flag, `None` unknown.
pub fn option_takes_value(opt: &str) -> Option<bool> {
    Some(match opt {
        "S" | "no-shutdown" | "no-reboot" | "no-acpi" | "daemonize" | "enable-kvm"
        | "nodefaults" | "nographic" | "enable-fips" | "no-user-config" | "nodefconfig" | "usb"
        | "no-hpet" | "snapshot" | "no-fd-bootchk" => false,
        "name" | "incoming" | "watchdog-action" | "uuid" | "m" | "smp" | "machine" | "M"
        | "monitor" | "accel" | "cpu" | "drive" | "hda" | "hdb" | "hdc" | "hdd" | "cdrom"
        | "device" | "netdev" | "object" | "tpmdev" | "vnc" | "serial" | "qmp" | "qmp-pretty"
        | "chardev" | "mon" | "pidfile" | "display" | "vga" | "boot" | "k" | "rtc" | "global"
        | "usbdevice" | "msg" | "D" | "d" | "realtime" | "overcommit" | "sandbox" | "runas"
        | "chroot" | "blockdev" | "audiodev" | "add-fd" | "kernel" | "initrd" | "append"
        | "dtb" | "bios" | "L" | "net" | "nic" | "numa" | "smbios" | "fw_cfg" | "fsdev"
        | "virtfs" | "parallel" | "spice" | "acpitable" | "iscsi" | "action" | "compat"
        | "debugcon" | "set" | "trace" | "plugin" | "mem-path" | "run-with" | "icount"
        | "rtc-td-hack" | "fda" | "fdb" | "mtdblock" | "sd" | "pflash" | "audio" | "loadvm"
        | "device-tree" | "option-rom" | "semihosting-config" | "object-add" => true,
        _ => return None,
    })
}

/// An option's argument as keys and values: a JSON object, as management
/// tools write `-object`, `-device`, `-netdev`, `-blockdev` and
/// `-audiodev` (nested objects become dotted keys, `file.filename`;
/// booleans `on`/`off`), or QEMU's `key=value,…` syntax.
pub fn option_args(
    name: &str,
    v: &str,
    implied: Option<&str>,
) -> Result<BTreeMap<String, String>, ConfigError> {
    if !v.trim_start().starts_with('{') {
        return Ok(parse_keyval(v, implied));
    }
    let json: serde_json::Value = serde_json::from_str(v)
        .map_err(|e| ConfigError(format!("-{name} {v}: JSON parse error, {e}")))?;
    let serde_json::Value::Object(map) = json else {
        return err(format!("-{name} {v}: Parameter 'id' is missing"));
    };
    let mut out = BTreeMap::new();
    fn flatten(
        prefix: &str,
        map: &serde_json::Map<String, serde_json::Value>,
        out: &mut BTreeMap<String, String>,
    ) {
        for (k, v) in map {
            let key = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            match v {
                serde_json::Value::Object(m) => flatten(&key, m, out),
                serde_json::Value::String(s) => {
                    out.insert(key, s.clone());
                }
                serde_json::Value::Bool(b) => {
                    out.insert(key, if *b { "on" } else { "off" }.to_string());
                }
                other => {
                    out.insert(key, other.to_string());
                }
            }
        }
    }
    flatten("", &map, &mut out);
    Ok(out)
}

/// Split QEMU's `key=value,key=value` syntax (`,,` escapes a comma). A first
/// element without `=` is the value of `implied` when given, else `key=on`.
pub fn parse_keyval(s: &str, implied: Option<&str>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let parts = qmpkit_wire::opts::split_options(s);
    for (i, p) in parts.into_iter().enumerate() {
        if p.is_empty() {
            continue;
        }
        match p.split_once('=') {
            Some((k, v)) => {
                out.insert(k.to_string(), v.to_string());
            }
            None => match (i, implied) {
                (0, Some(k)) => {
                    out.insert(k.to_string(), p);
                }
                _ => {
                    let (k, v) = match p.strip_prefix("no") {
                        Some(rest) if !rest.is_empty() => (rest.to_string(), "off"),
                        _ => (p, "on"),
                    };
                    out.insert(k, v.to_string());
                }
            },
        }
    }
    out
}

/// Guest-physical RAM ranges `(start, length)` of `ram_size` bytes of RAM: below 4 GiB up to
/// the PCI hole, the rest above 4 GiB (QEMU's pc layout).
pub fn ram_ranges(ram_size: u64) -> Vec<(u64, u64)> {
    let below = if ram_size >= 0xe000_0000 {
        0xc000_0000
    } else {
        ram_size
    };
    let mut v = vec![(0, below)];
    if ram_size > below {
        v.push((1 << 32, ram_size - below));
    }
    v
}

/// Parse a size with QEMU's suffixes (`k`, `M`, `G`, `T`, `P`, `E`,
/// binary); a bare number is in units of `default_unit` bytes.
pub fn parse_size(s: &str, default_unit: u64) -> Option<u64> {
    let s = s.trim();
    let (num, unit) = match s.char_indices().find(|(_, c)| c.is_ascii_alphabetic()) {
        Some((i, _)) => (&s[..i], &s[i..]),
        None => (s, ""),
    };
    let mult: u64 = match unit {
        "" => default_unit,
        "b" | "B" => 1,
        "k" | "K" => 1 << 10,
        "m" | "M" => 1 << 20,
        "g" | "G" => 1 << 30,
        "t" | "T" => 1 << 40,
        "p" | "P" => 1 << 50,
        "e" | "E" => 1 << 60,
        _ => return None,
    };
    if let Ok(n) = num.parse::<u64>() {
        return n.checked_mul(mult);
    }
    let f: f64 = num.parse().ok()?;
    if !f.is_finite() || f < 0.0 {
        return None;
    }
    let b = f * mult as f64;
    if b >= u64::MAX as f64 {
        return None;
    }
    Some(b as u64)
}

/// Whether size `s` is well formed but beyond 2^64 - 1 bytes (QEMU's
/// "out of range" rather than "invalid").
pub fn size_out_of_range(s: &str, default_unit: u64) -> bool {
    let s = s.trim();
    let (num, unit) = match s.char_indices().find(|(_, c)| c.is_ascii_alphabetic()) {
        Some((i, _)) => (&s[..i], &s[i..]),
        None => (s, ""),
    };
    let known = matches!(
        unit,
        "" | "b" | "B" | "k" | "K" | "m" | "M" | "g" | "G" | "t" | "T" | "p" | "P" | "e" | "E"
    );
    let f: Option<f64> = num
        .parse()
        .ok()
        .filter(|f: &f64| f.is_finite() && *f >= 0.0);
    known && f.is_some() && parse_size(s, default_unit).is_none()
}

/// A machine type QEMU knows: its canonical name (aliases resolved) and
/// the most CPUs it takes.
pub fn machine_type_info(name: &str) -> Option<(&'static str, u32)> {
    if let Some(t) = MODERN_TYPES.iter().find(|(n, _)| *n == name) {
        return Some(*t);
    }
    const TYPES: &[(&str, &[&str], u32)] = &[
        ("pc-i440fx-2.12", &["pc"], 255),
        ("pc-q35-2.12", &["q35"], 288),
        ("pc-i440fx-2.11", &[], 255),
        ("pc-q35-2.11", &[], 288),
        ("pc-i440fx-2.10", &[], 255),
        ("pc-1.3", &[], 255),
        ("isapc", &[], 1),
        ("none", &[], 1),
    ];
    TYPES
        .iter()
        .find(|(n, aliases, _)| *n == name || aliases.contains(&name))
        .map(|(n, _, max)| (*n, *max))
}

/// QEMU 10.0's versioned PC machine types and their most CPUs (the
/// aliases `pc` and `q35` stay with the generation the machine serves).
const MODERN_TYPES: &[(&str, u32)] = &[
    ("pc-i440fx-10.0", 255),
    ("pc-q35-10.0", 4096),
    ("pc-i440fx-9.2", 255),
    ("pc-q35-9.2", 4096),
    ("pc-i440fx-9.1", 255),
    ("pc-q35-9.1", 4096),
    ("pc-i440fx-9.0", 255),
    ("pc-q35-9.0", 4096),
    ("pc-i440fx-8.2", 255),
    ("pc-q35-8.2", 1024),
    ("pc-i440fx-8.1", 255),
    ("pc-q35-8.1", 1024),
    ("pc-i440fx-8.0", 255),
    ("pc-q35-8.0", 288),
    ("pc-i440fx-7.2", 255),
    ("pc-q35-7.2", 288),
];

/// Whether `s` is a UUID in the 8-4-4-4-12 hex form.
pub fn is_uuid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.chars().all(|c| c.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyval() {
        let kv = parse_keyval(
            "user,id=n0,hostfwd=a,,b,ipv6=off,server,nowait",
            Some("type"),
        );
        assert_eq!(kv["type"], "user");
        assert_eq!(kv["id"], "n0");
        assert_eq!(kv["hostfwd"], "a,b");
        assert_eq!(kv["server"], "on");
        assert_eq!(kv["wait"], "off");
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512", 1 << 20), Some(512 << 20));
        assert_eq!(parse_size("1G", 1 << 20), Some(1 << 30));
        assert_eq!(parse_size("1.5k", 1), Some(1536));
        assert_eq!(parse_size("x", 1), None);
        assert_eq!(parse_size("99999999999E", 1), None);
    }

    #[test]
    fn command_line_drives_come_before_the_default_ones() {
        let mut c = MachineConfig::default_machine();
        c.apply_option("fdb", Some("b.img")).unwrap();
        c.apply_option("fda", Some("a.img")).unwrap();
        c.apply_option("drive", Some("file=x.img,if=none,id=x"))
            .unwrap();
        let ids: Vec<&str> = c.drives.iter().map(|d| d.id.as_str()).collect();
        // `-fda` took the default floppy drive's place; the other defaults keep their order.
        assert_eq!(
            ids,
            ["floppy1", "floppy0", "x", "ide0-hd0", "virtio0", "ide1-cd0"]
        );
    }

    #[test]
    fn options() {
        let mut c = MachineConfig::empty();
        c.apply_option("m", Some("2G")).unwrap();
        c.apply_option("smp", Some("4,maxcpus=8")).unwrap();
        c.apply_option("name", Some("guest=vm1,debug-threads=on"))
            .unwrap();
        c.apply_option("drive", Some("file=a.img,if=virtio"))
            .unwrap();
        c.apply_option("drive", Some("file=b.img")).unwrap();
        c.apply_option("cdrom", Some("x.iso")).unwrap();
        assert_eq!(c.memory_bytes, 2 << 30);
        assert_eq!((c.cpus, c.max_cpus), (4, 8));
        assert_eq!(c.name.as_deref(), Some("vm1"));
        let ids: Vec<&str> = c.drives.iter().map(|d| d.id.as_str()).collect();
        assert_eq!(ids, ["virtio0", "ide0-hd0", "ide1-cd0"]);
        assert!(c.apply_option("uuid", Some("nope")).is_err());
        assert_eq!(
            c.apply_option("bogus", None).unwrap_err().0,
            "-bogus: invalid option"
        );
        assert!(c.apply_option("smp", Some("4,maxcpus=2")).is_err());
    }

    fn opt_err(c: &mut MachineConfig, name: &str, v: &str) -> String {
        match c.apply_option(name, Some(v)) {
            Err(e) => e.0,
            Ok(()) => panic!("-{name} {v} accepted"),
        }
    }

    #[test]
    fn options_are_checked_as_qemu_checks_them() {
        let mut c = MachineConfig::default_machine();
        assert!(c.validate().is_ok());
        for (name, v, why) in [
            (
                "device",
                "nosuch,id=zz",
                "'nosuch' is not a valid device model name",
            ),
            ("device", "e1000,id=e9,foo=1", "Property '.foo' not found"),
            ("device", "virtio-blk-pci,id=vb", "drive property not set"),
            (
                "device",
                "e1000,mac=xx",
                "Property 'e1000.mac' doesn't take value 'xx'",
            ),
            ("netdev", "nosuch,id=n9", "Invalid parameter 'nosuch'"),
            (
                "netdev",
                "nic,id=n9",
                "Parameter 'type' expects a netdev backend type",
            ),
            (
                "drive",
                "if=ide,id=x,bogus=1",
                "Must specify either driver or file",
            ),
            (
                "drive",
                "file=a.qcow2,format=qcow2,bogus=1",
                "Block format 'qcow2' does not support the option 'bogus'",
            ),
            (
                "drive",
                "file=a.img,bogus=1",
                "Block protocol 'file' doesn't support the option 'bogus'",
            ),
        ] {
            assert_eq!(opt_err(&mut c, name, v), format!("-{name} {v}: {why}"));
        }
        // Nothing was added by the failures.
        assert_eq!(c, MachineConfig::default_machine());
        // What management tools pass is accepted (boot order included).
        for ok in [
            "ide-cd,drive=ide1-cd0,bus=ide.1,unit=0,bootindex=1",
            "virtio-blk-pci,drive=virtio0,bootindex=2,addr=0x6",
            "e1000,netdev=hostnet0,bootindex=3,mac=52:54:00:aa:bb:cc",
        ] {
            let mut c = MachineConfig::default_machine();
            c.apply_option("device", Some(ok)).unwrap();
        }
        // Back ends are looked up once the whole command line is known,
        // whatever the order.
        c.apply_option("device", Some("e1000,netdev=later"))
            .unwrap();
        c.apply_option("netdev", Some("user,id=later")).unwrap();
        assert!(c.validate().is_ok());
        c.apply_option("device", Some("e1000,netdev=nosuch"))
            .unwrap();
        assert_eq!(
            c.validate().unwrap_err().0,
            "-device e1000,netdev=nosuch: Property 'e1000.netdev' can't find value 'nosuch'"
        );
        let mut c = MachineConfig::default_machine();
        c.apply_option("device", Some("virtio-net-pci,netdev=zz"))
            .unwrap();
        assert_eq!(
            c.validate().unwrap_err().0,
            "-device virtio-net-pci,netdev=zz: Property 'virtio-net-device.netdev' can't find value 'zz'"
        );
        let mut c = MachineConfig::default_machine();
        c.apply_option("device", Some("virtio-blk-pci,drive=d9"))
            .unwrap();
        assert_eq!(
            c.validate().unwrap_err().0,
            "-device virtio-blk-pci,drive=d9: Property 'virtio-blk-device.drive' can't find value 'd9'"
        );
        c.apply_option("drive", Some("if=none,id=d9,file=x.img"))
            .unwrap();
        assert!(c.validate().is_ok());
        // QEMU 6.0 and later word a bad enum value after the parameter.
        let mut c = MachineConfig::default_machine();
        c.qemu_version = (10, 0, 2);
        assert_eq!(
            opt_err(&mut c, "netdev", "nosuch,id=n9"),
            "-netdev nosuch,id=n9: Parameter 'type' does not accept value 'nosuch'"
        );
        assert_eq!(
            opt_err(&mut c, "device", "e1000,foo=1"),
            "-device e1000,foo=1: Property 'e1000.foo' not found"
        );
        // A machine file goes through the same checks.
        let c = MachineConfig::from_toml("[[devices]]\ndriver = \"nosuch\"\n").unwrap();
        assert_eq!(
            c.validate().unwrap_err().0,
            "-device nosuch: 'nosuch' is not a valid device model name"
        );
    }

    #[test]
    fn management_tool_command_lines() {
        let mut c = MachineConfig::default_machine();
        c.qemu_version = (10, 0, 2);
        for (n, v) in [
            ("m", Some("size=64M,slots=2,maxmem=1G")),
            ("smp", Some("1,sockets=1,cores=1,threads=1")),
            (
                "machine",
                Some("pc-i440fx-10.0,usb=off,memory-backend=pc.ram"),
            ),
            (
                "object",
                Some(r#"{"qom-type":"memory-backend-ram","id":"pc.ram","size":67108864}"#),
            ),
            ("nodefaults", None),
            ("accel", Some("kvm")),
            ("cpu", Some("qemu64,+vmx")),
            ("add-fd", Some("fd=5,set=0,opaque=serial0-source")),
            (
                "blockdev",
                Some(
                    r#"{"driver":"file","filename":"/d.qcow2","node-name":"s0","auto-read-only":true}"#,
                ),
            ),
            ("audiodev", Some(r#"{"id":"audio1","driver":"none"}"#)),
            (
                "device",
                Some(r#"{"driver":"virtio-blk-pci","drive":"s0","id":"vd0","bootindex":1}"#),
            ),
            ("drive", Some("if=none,id=cd1,readonly=on")),
            ("device", Some("ide-cd,drive=cd1,id=ide0-1-0")),
            ("rtc", Some("base=utc")),
            ("snapshot", None),
        ] {
            c.apply_option(n, v).unwrap_or_else(|e| panic!("-{n}: {e}"));
        }
        c.validate().unwrap();
        // -nodefaults kept what came before it.
        assert_eq!(
            (c.memory_bytes, c.max_memory_bytes, c.ram_slots),
            (64 << 20, 1 << 30, 2)
        );
        assert_eq!((c.cpus, c.max_cpus, c.sockets), (1, 1, 1));
        assert_eq!(c.objects.len(), 1);
        assert!(c.drives.iter().all(|d| d.id == "cd1"));
        assert_eq!(c.drives[0].media, "cdrom");
        assert_eq!(c.machine_props["memory-backend"], "pc.ram");
        assert_eq!(c.cpu_props, ["+vmx"]);
        assert_eq!(c.blockdevs[0].props["auto-read-only"], "on");
        assert_eq!(c.devices[0].props["bootindex"], "1");
        assert_eq!(c.fds[0].fd, 5);
        assert_eq!(c.audiodevs[0].driver, "none");
        assert!(c.tpm.is_none() && c.vnc.is_none() && c.serials.is_empty());
        // What was parsed survives a machine file.
        let back = MachineConfig::from_toml(&c.to_toml()).unwrap();
        assert_eq!(
            (&back.blockdevs, &back.audiodevs, &back.fds, &back.options),
            (&c.blockdevs, &c.audiodevs, &c.fds, &c.options)
        );
        assert_eq!(
            (
                &back.machine_props,
                &back.cpu_props,
                &back.accel,
                back.ram_slots
            ),
            (&c.machine_props, &c.cpu_props, &c.accel, c.ram_slots)
        );
        // Topologies: the missing counts are derived.
        let mut c = MachineConfig::default_machine();
        c.apply_option("smp", Some("sockets=2,cores=2")).unwrap();
        assert_eq!(
            (c.cpus, c.max_cpus, c.sockets, c.cores, c.threads),
            (4, 4, 2, 2, 1)
        );
        c.apply_option("smp", Some("3,maxcpus=4,sockets=2,cores=2,threads=1"))
            .unwrap();
        assert_eq!((c.cpus, c.max_cpus), (3, 4));
    }

    #[test]
    fn toml_round_trip() {
        let c = MachineConfig::default_machine();
        let t = c.to_toml();
        let back = MachineConfig::from_toml(&t).unwrap();
        assert_eq!(back, c);
        let small = MachineConfig::from_toml("name = \"a\"\nmemory = 2048\n").unwrap();
        assert_eq!(small.name.as_deref(), Some("a"));
        assert_eq!(small.memory_bytes, 2048);
        let sized = MachineConfig::from_toml("memory = \"2G\"\nmaxmem = \"512\"\n").unwrap();
        assert_eq!(
            (sized.memory_bytes, sized.max_memory_bytes),
            (2 << 30, 512 << 20)
        );
        assert!(MachineConfig::from_toml("memory = \"lots\"").is_err());
        assert!(MachineConfig::from_toml("nonsense = 1").is_err());
    }

    /// Applies `opts` (name, value) to the default machine, then the
    /// whole-command-line checks; the first error.
    fn command_line(opts: &[(&str, Option<&str>)]) -> Result<MachineConfig, String> {
        let mut c = MachineConfig::default_machine();
        let opts: Vec<(String, Option<String>)> = opts
            .iter()
            .map(|(n, v)| (n.to_string(), v.map(str::to_string)))
            .collect();
        c.apply_options(&opts).map_err(|e| e.0)?;
        c.validate().map_err(|e| e.0)?;
        Ok(c)
    }

    #[test]
    fn option_arity_is_qemus() {
        // Options QEMU takes without an argument (`qemu-system-x86_64
        // -help`): the next word is never swallowed.
        for o in [
            "S",
            "usb",
            "nodefaults",
            "no-shutdown",
            "no-reboot",
            "daemonize",
            "nographic",
        ] {
            assert_eq!(option_takes_value(o), Some(false), "-{o}");
        }
        for o in [
            "m",
            "smp",
            "drive",
            "hda",
            "cdrom",
            "device",
            "usbdevice",
            "k",
            "msg",
            "mon",
        ] {
            assert_eq!(option_takes_value(o), Some(true), "-{o}");
        }
    }

    #[test]
    fn machine_limits_in_qemus_words() {
        let cases: &[(&[(&str, Option<&str>)], &str)] = &[
            (
                &[("smp", Some("2,maxcpus=1000000"))],
                "Invalid SMP CPUs 1000000. The max CPUs supported by machine 'pc-i440fx-2.12' is 255",
            ),
            (
                &[("smp", Some("300"))],
                "Invalid SMP CPUs 300. The max CPUs supported by machine 'pc-i440fx-2.12' is 255",
            ),
            (
                &[("machine", Some("q35")), ("smp", Some("2,maxcpus=289"))],
                "Invalid SMP CPUs 289. The max CPUs supported by machine 'pc-q35-2.12' is 288",
            ),
            (
                &[("m", Some("16E"))],
                "-m 16E: Value '16E' is out of range for parameter 'size'",
            ),
            (
                &[("m", Some("99999999999999999999"))],
                "-m 99999999999999999999: Value '99999999999999999999' is out of range for parameter 'size'",
            ),
            // The numbers are real QEMU 10.0's for these sizes.
            (
                &[("m", Some("1020G"))],
                "Address space limit 0xffffffffff < 0x1febfffffff phys-bits too low (40)",
            ),
            (
                &[("m", Some("1T"))],
                "Address space limit 0xffffffffff < 0x1ffbfffffff phys-bits too low (40)",
            ),
            (
                &[("m", Some("2T"))],
                "Address space limit 0xffffffffff < 0x2ffbfffffff phys-bits too low (40)",
            ),
            (
                &[("machine", Some("q35")), ("m", Some("1000G"))],
                "Address space limit 0xffffffffff < 0x2017fffffff phys-bits too low (40)",
            ),
            (
                &[("m", Some("99999999G"))],
                "Address space limit 0xffffffffff < 0x17d793f7fffffff phys-bits too low (40)",
            ),
        ];
        for (opts, want) in cases {
            assert_eq!(command_line(opts).unwrap_err(), *want, "{opts:?}");
        }
        // Within the limits.
        for opts in [
            &[("m", Some("1000G"))][..],
            &[("machine", Some("q35")), ("m", Some("900G"))],
            &[("smp", Some("2,maxcpus=255"))],
            &[("machine", Some("q35")), ("smp", Some("288"))],
        ] {
            assert!(command_line(opts).is_ok(), "{opts:?}");
        }
    }

    #[test]
    fn the_machine_type_places_drives_wherever_it_stands() {
        let ide = |c: &MachineConfig| {
            c.drives
                .iter()
                .filter(|d| d.interface == "ide")
                .map(|d| format!("{}={}", d.id, d.file.as_deref().unwrap_or("")))
                .collect::<Vec<_>>()
        };
        // The Q35's six ports of one: index 2 (the CD-ROM's) is ide2-cd0.
        let c = command_line(&[("machine", Some("q35"))]).unwrap();
        assert_eq!(ide(&c), ["ide0-hd0=disk0.qcow2", "ide2-cd0="]);
        let c = command_line(&[("M", Some("pc"))]).unwrap();
        assert_eq!(ide(&c), ["ide0-hd0=disk0.qcow2", "ide1-cd0="]);
        // -machine after the drives places them as it does before them.
        let before = command_line(&[
            ("machine", Some("q35")),
            ("hdb", Some("b.img")),
            ("cdrom", Some("c.iso")),
        ])
        .unwrap();
        let after = command_line(&[
            ("hdb", Some("b.img")),
            ("cdrom", Some("c.iso")),
            ("machine", Some("q35")),
        ])
        .unwrap();
        // (The command line's drives in its order, then the defaults left.)
        assert_eq!(
            ide(&before),
            ["ide1-hd0=b.img", "ide2-cd0=c.iso", "ide0-hd0=disk0.qcow2"]
        );
        assert_eq!(ide(&after), ide(&before));
    }

    #[test]
    fn a_small_machine_type_takes_its_own_cpu_count() {
        let c = command_line(&[("machine", Some("none"))]).unwrap();
        assert_eq!((c.cpus, c.max_cpus), (1, 1));
        let refused =
            "Invalid SMP CPUs 2. The max CPUs supported by machine 'none' is 1".to_string();
        for opts in [
            [("machine", Some("none")), ("smp", Some("2"))],
            [("smp", Some("2")), ("machine", Some("none"))],
        ] {
            assert_eq!(command_line(&opts).unwrap_err(), refused);
        }
    }

    #[test]
    fn default_drives_give_way_as_in_qemu() {
        let ids = |c: &MachineConfig| {
            c.drives
                .iter()
                .map(|d| format!("{}={}", d.id, d.file.as_deref().unwrap_or("")))
                .collect::<Vec<_>>()
        };
        // -hda takes ide0-hd0, -cdrom ide1-cd0; the defaults left come after them.
        let c = command_line(&[("hda", Some("a.img")), ("cdrom", Some("b.iso"))]).unwrap();
        assert_eq!(
            ids(&c),
            [
                "ide0-hd0=a.img",
                "ide1-cd0=b.iso",
                "virtio0=disk1.qcow2",
                "floppy0="
            ]
        );
        // -fda takes the default floppy drive's place, -fdb the second unit.
        let c = command_line(&[("fdb", Some("b.img")), ("fda", Some("a.img"))]).unwrap();
        let mut floppies: Vec<String> = ids(&c)
            .into_iter()
            .filter(|d| d.starts_with("floppy"))
            .collect();
        floppies.sort();
        assert_eq!(floppies, ["floppy0=a.img", "floppy1=b.img"]);
        assert_eq!(
            (c.floppy_unit("floppy0"), c.floppy_unit("floppy1")),
            (Some(0), Some(1))
        );
        // The Q35 has no default floppy drive.
        let c = command_line(&[("machine", Some("q35"))]).unwrap();
        assert!(!ids(&c).iter().any(|d| d.starts_with("floppy")), "{c:?}");
        let c = command_line(&[
            ("machine", Some("q35")),
            ("drive", Some("file=f,if=floppy")),
        ])
        .unwrap();
        assert!(ids(&c).contains(&"floppy0=f".to_string()));
        // -hdc takes index 2: no default CD-ROM then.
        let c = command_line(&[("hdc", Some("c.img"))]).unwrap();
        assert_eq!(
            ids(&c),
            [
                "ide1-hd0=c.img",
                "ide0-hd0=disk0.qcow2",
                "virtio0=disk1.qcow2",
                "floppy0="
            ]
        );
        // Drives without an index take the first free unit.
        let d = |f: &'static str| ("drive", Some(f));
        let c = command_line(&[
            d("file=1,if=ide"),
            d("file=2,if=ide"),
            d("file=3,if=ide"),
            d("file=4,if=ide"),
        ])
        .unwrap();
        assert_eq!(
            ids(&c),
            [
                "ide0-hd0=1",
                "ide0-hd1=2",
                "ide1-hd0=3",
                "ide1-hd1=4",
                "virtio0=disk1.qcow2",
                "floppy0="
            ]
        );
        let c = command_line(&[d("file=x,if=ide,bus=1")]).unwrap();
        assert!(ids(&c).contains(&"ide1-hd0=x".to_string()));
        let c = command_line(&[d("file=x,if=virtio")]).unwrap();
        assert!(ids(&c).contains(&"virtio0=x".to_string()));
        // QEMU's errors.
        let cases: &[(&[(&str, Option<&str>)], &str)] = &[
            (
                &[("hdc", Some("c.img")), ("cdrom", Some("d.iso"))],
                "-cdrom d.iso: drive with bus=1, unit=0 (index=2) exists",
            ),
            (
                &[("hda", Some("a")), ("hda", Some("b"))],
                "-hda b: drive with bus=0, unit=0 (index=0) exists",
            ),
            (
                &[d("file=x,if=ide,unit=2")],
                "-drive file=x,if=ide,unit=2: unit 2 too big (max is 1)",
            ),
            (
                &[d("file=x,if=ide,bus=2")],
                "-drive file=x,if=ide,bus=2: machine type does not support if=ide,bus=2,unit=0",
            ),
            (
                &[d("file=x,if=ide,index=4")],
                "-drive file=x,if=ide,index=4: machine type does not support if=ide,bus=2,unit=0",
            ),
            (
                &[d("file=x,if=ide,index=1,unit=0")],
                "-drive file=x,if=ide,index=1,unit=0: index cannot be used with bus and unit",
            ),
            (
                &[("machine", Some("q35")), d("file=x,if=ide,unit=1")],
                "-drive file=x,if=ide,unit=1: unit 1 too big (max is 0)",
            ),
            (
                &[
                    d("file=1,if=ide"),
                    d("file=2,if=ide"),
                    d("file=3,if=ide"),
                    d("file=4,if=ide"),
                    d("file=5,if=ide"),
                ],
                "-drive file=5,if=ide: machine type does not support if=ide,bus=2,unit=0",
            ),
            (
                &[d("file=x,if=floppy,index=2")],
                "-drive file=x,if=floppy,index=2: machine type does not support if=floppy,bus=0,unit=2",
            ),
            (
                &[d("file=x,if=floppy,unit=2")],
                "-drive file=x,if=floppy,unit=2: machine type does not support if=floppy,bus=0,unit=2",
            ),
            (
                &[d("file=x,if=floppy,bus=1")],
                "-drive file=x,if=floppy,bus=1: machine type does not support if=floppy,bus=1,unit=0",
            ),
            (
                &[d("file=x,if=floppy,index=0"), d("file=y,if=floppy,index=0")],
                "-drive file=y,if=floppy,index=0: drive with bus=0, unit=0 (index=0) exists",
            ),
        ];
        for (opts, want) in cases {
            assert_eq!(command_line(opts).unwrap_err(), *want, "{opts:?}");
        }
    }
}
