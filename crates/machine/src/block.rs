//! Block devices: the drives of the configuration, their media and trays.
//!
//! A minimal model: one [`Drive`] per configured drive, holding what the
//! monitor can see and change (the medium, the tray, the lock, the I/O
//! status). Images are never opened; a medium is a file name, a format and
//! a size. Commands: `query-block`, `eject`, `change` (block devices; the
//! VNC form lives in `display`), `blockdev-change-medium`,
//! `blockdev-open-tray`, `blockdev-close-tray`, `x-blockdev-remove-medium`
//! and `blockdev-remove-medium`.
//!
//! Tray semantics follow QEMU's: a device with a tray (the IDE CD-ROM)
//! reports `DEVICE_TRAY_MOVED` each time its tray opens or closes;
//! changing the medium opens the tray, swaps the medium and closes it.

use qmpkit_wire::{ErrorClass, QmpError};
use serde_json::{json, Map, Value};

use crate::qom::types;
use crate::{arg_bool, arg_str, Args, CmdResult, Cx, Machine, MachineConfig};

pub const HANDLED: &[&str] = &[
    "blockdev-change-medium",
    "blockdev-close-tray",
    "blockdev-open-tray",
    "blockdev-remove-medium",
    "change",
    "eject",
    "query-block",
    "x-blockdev-remove-medium",
];

/// A medium in a drive.
#[derive(Debug, Clone, PartialEq)]
pub struct Medium {
    pub file: String,
    /// Format driver (`qcow2`, `raw`, …).
    pub format: String,
    pub read_only: bool,
    /// Virtual size in bytes.
    pub size: u64,
    /// The node name of the image (QEMU's generated `#blockNNN` form).
    pub node_name: String,
}

/// One drive's state.
#[derive(Debug, Clone, PartialEq)]
pub struct Drive {
    /// The drive's name (`ide0-hd0`, `virtio0`, `ide1-cd0`, …).
    pub id: String,
    /// `ide`, `virtio`, `scsi`, `floppy`, …
    pub interface: String,
    /// Whether the medium can be changed (CD-ROMs, floppies).
    pub removable: bool,
    /// Whether the device has a tray (CD-ROMs).
    pub has_tray: bool,
    pub tray_open: bool,
    /// Locked by the guest (prevent medium removal).
    pub locked: bool,
    pub medium: Option<Medium>,
    /// `ok`, `failed` or `nospace`.
    pub io_status: &'static str,
}

/// The block layer of one machine.
#[derive(Debug, Clone, Default)]
pub struct BlockState {
    pub drives: Vec<Drive>,
    /// Counter for generated node names.
    next_node: u32,
}

impl BlockState {
    pub fn new(config: &MachineConfig) -> BlockState {
        let mut s = BlockState::default();
        for d in &config.drives {
            let cdrom = d.media == "cdrom";
            let removable = cdrom || d.interface == "floppy";
            let medium = d.file.as_ref().map(|f| Medium {
                file: f.clone(),
                format: d.format.clone().unwrap_or_else(|| guess_format(f)),
                read_only: d.readonly,
                size: d.size,
                node_name: s.node_name(),
            });
            s.drives.push(Drive {
                id: d.id.clone(),
                interface: d.interface.clone(),
                removable,
                has_tray: cdrom,
                tray_open: false,
                locked: false,
                medium,
                io_status: "ok",
            });
        }
        s
    }

    /// A fresh generated node name.
    fn node_name(&mut self) -> String {
        let n = 100 + 13 * self.next_node;
        self.next_node += 1;
        format!("#block{n}")
    }

    pub fn find(&self, id: &str) -> Option<&Drive> {
        self.drives.iter().find(|d| d.id == id)
    }

    fn index(&self, id: &str) -> Option<usize> {
        self.drives.iter().position(|d| d.id == id)
    }
}

/// The node name of drive `id`'s medium, if any.
pub fn node_name_of(m: &Machine, id: &str) -> Option<String> {
    m.block
        .find(id)
        .and_then(|d| d.medium.as_ref())
        .map(|x| x.node_name.clone())
}

/// Record an I/O error status on drive `id` (a stopped VM shows it).
pub fn set_io_status(m: &mut Machine, id: &str, status: &'static str) {
    if let Some(i) = m.block.index(id) {
        m.block.drives[i].io_status = status;
    }
}

/// `cont` resets every drive's I/O status, as QEMU does.
pub fn reset_io_status(m: &mut Machine) {
    for d in &mut m.block.drives {
        d.io_status = "ok";
    }
}

fn guess_format(file: &str) -> String {
    let lower = file.to_ascii_lowercase();
    for f in ["qcow2", "qcow", "vmdk", "vdi", "vhdx", "qed"] {
        if lower.ends_with(&format!(".{f}")) {
            return f.to_string();
        }
    }
    "raw".to_string()
}

/// The guest device a drive is attached to, in the QOM tree.
fn frontend(m: &Machine, id: &str) -> Option<crate::qom::NodeId> {
    let tree = &m.qom.tree;
    crate::devices::all_devices(tree)
        .into_iter()
        .find(|&n| tree.val(n, "drive").and_then(|v| v.as_str()) == Some(id))
}

/// The `qdev` of a drive as QEMU reports it: the device's id when it has
/// one, else its QOM path (a virtio proxy's backend for virtio drives).
fn qdev_of(m: &Machine, id: &str) -> Option<String> {
    let n = frontend(m, id)?;
    let tree = &m.qom.tree;
    if let Some(qid) = crate::devices::device_id(tree, n) {
        return Some(qid);
    }
    let path = tree.path(n);
    if types::is_a(tree.node(n).ty, "virtio-pci") {
        return Some(format!("{path}/virtio-backend"));
    }
    Some(path)
}

/// The QOM path of the device in front of drive `id` (its virtio back end for virtio
/// devices), as QEMU names it in events.
pub fn qom_path_of(m: &Machine, id: &str) -> Option<String> {
    let n = frontend(m, id)?;
    let tree = &m.qom.tree;
    let path = tree.path(n);
    if types::is_a(tree.node(n).ty, "virtio-pci") {
        return Some(format!("{path}/virtio-backend"));
    }
    Some(path)
}

fn not_found(name: &str) -> QmpError {
    QmpError::new(
        ErrorClass::DeviceNotFound,
        format!("Device '{name}' not found"),
    )
}

/// The drive a command names with `device` (drive name) or `id` (the
/// guest device's qdev id or path).
fn lookup(m: &Machine, args: &Args) -> Result<usize, QmpError> {
    match (arg_str(args, "device"), arg_str(args, "id")) {
        (Some(_), Some(_)) => Err(QmpError::generic("Cannot specify both 'device' and 'id'")),
        (None, None) => Err(QmpError::generic(
            "Either 'device' or 'id' must be specified",
        )),
        (Some(dev), None) => m.block.index(dev).ok_or_else(|| not_found(dev)),
        (None, Some(qid)) => {
            let tree = &m.qom.tree;
            m.block
                .drives
                .iter()
                .position(|d| {
                    frontend(m, &d.id).is_some_and(|n| {
                        crate::devices::device_id(tree, n).as_deref() == Some(qid)
                            || tree.path(n) == qid
                    })
                })
                .ok_or_else(|| not_found(qid))
        }
    }
}

/// The name commands' errors use for a drive: the drive name, or the
/// device id the caller gave.
fn display_name(args: &Args) -> String {
    arg_str(args, "device")
        .or_else(|| arg_str(args, "id"))
        .unwrap_or("")
        .to_string()
}

fn tray_moved(m: &mut Machine, i: usize, open: bool) {
    m.block.drives[i].tray_open = open;
    let id = m.block.drives[i].id.clone();
    // QEMU 1.1 introduced the event.
    if !m.compat().tray_moved_event {
        return;
    }
    let qdev = qdev_of(m, &id).unwrap_or_default();
    m.emit(
        "DEVICE_TRAY_MOVED",
        Some(json!({"device": id, "id": qdev, "tray-open": open})),
    );
}

/// Open a drive's tray. `Ok(false)`: the device has no tray (nothing to
/// open, QEMU's ENOSYS case that callers ignore).
fn open_tray(m: &mut Machine, i: usize, name: &str, force: bool) -> Result<bool, QmpError> {
    let d = &m.block.drives[i];
    if !d.removable {
        return Err(QmpError::generic(format!(
            "Device '{name}' is not removable"
        )));
    }
    if !d.has_tray {
        return Ok(false);
    }
    if d.tray_open {
        return Ok(true);
    }
    if d.locked && !force {
        // Before the tray commands (QEMU 2.5) the refusal was terse.
        return Err(QmpError::generic(if m.compat().block_errors_2_5 {
            format!(
                "Device '{name}' is locked and force was not specified, wait for tray to open and try again"
            )
        } else {
            format!("Device '{name}' is locked")
        }));
    }
    m.block.drives[i].locked = false;
    tray_moved(m, i, true);
    Ok(true)
}

fn close_tray(m: &mut Machine, i: usize, name: &str) -> CmdResult {
    let d = &m.block.drives[i];
    if !d.removable {
        return Err(QmpError::generic(format!(
            "Device '{name}' is not removable"
        )));
    }
    if d.has_tray && d.tray_open {
        tray_moved(m, i, false);
    }
    crate::empty()
}

fn remove_medium(m: &mut Machine, i: usize, name: &str) -> CmdResult {
    let d = &m.block.drives[i];
    if !d.removable {
        return Err(QmpError::generic(format!(
            "Device '{name}' is not removable"
        )));
    }
    if d.has_tray && !d.tray_open {
        return Err(QmpError::generic(format!(
            "Tray of device '{name}' is not open"
        )));
    }
    m.block.drives[i].medium = None;
    crate::empty()
}

fn eject(m: &mut Machine, args: &Args) -> CmdResult {
    let i = lookup(m, args)?;
    let name = display_name(args);
    let force = arg_bool(args, "force").unwrap_or(false);
    open_tray(m, i, &name, force)?;
    remove_medium(m, i, &name)
}

/// Replace the medium: open the tray, remove, insert, close the tray.
fn change_medium(
    m: &mut Machine,
    args: &Args,
    filename: &str,
    format: Option<&str>,
    ro_mode: Option<&str>,
) -> CmdResult {
    let i = lookup(m, args)?;
    let name = display_name(args);
    if let Some(f) = format {
        const KNOWN: &[&str] = &[
            "raw",
            "qcow2",
            "qcow",
            "vmdk",
            "vdi",
            "vhdx",
            "vpc",
            "qed",
            "luks",
            "dmg",
            "cloop",
            "parallels",
            "bochs",
            "file",
            "host_device",
            "host_cdrom",
            "nbd",
            "iscsi",
        ];
        if !KNOWN.contains(&f) {
            return Err(QmpError::generic(if m.compat().block_errors_2_5 {
                format!("Unknown driver '{f}'")
            } else {
                format!("Invalid block format '{f}'")
            }));
        }
    }
    let had_tray = open_tray(m, i, &name, true)?;
    remove_medium(m, i, &name)?;
    let was_ro = m
        .config
        .drives
        .iter()
        .find(|d| d.id == m.block.drives[i].id)
        .is_some_and(|d| d.readonly);
    let read_only = match ro_mode {
        Some("read-only") => true,
        Some("read-write") => false,
        _ => was_ro,
    };
    let node_name = m.block.node_name();
    m.block.drives[i].medium = Some(Medium {
        file: filename.to_string(),
        format: format
            .map(str::to_string)
            .unwrap_or_else(|| guess_format(filename)),
        read_only,
        size: 0,
        node_name,
    });
    if had_tray {
        close_tray(m, i, &name)?;
    }
    crate::empty()
}

/// One `BlockDeviceInfo` (the `inserted` member) in QEMU 2.12's shape,
/// with `active` (QEMU 10.0) where the served interface has it.
fn inserted(schema: &qmpkit_schema::Schema, medium: &Medium) -> Value {
    let mut v = json!({
        "file": medium.file,
        "node-name": medium.node_name,
        "ro": medium.read_only,
        "drv": medium.format,
        "backing_file_depth": 0,
        "encrypted": false,
        "encryption_key_missing": false,
        "detect_zeroes": "off",
        "bps": 0, "bps_rd": 0, "bps_wr": 0,
        "iops": 0, "iops_rd": 0, "iops_wr": 0,
        "image": {
            "filename": medium.file,
            "format": medium.format,
            "virtual-size": medium.size,
            "actual-size": 0,
            "dirty-flag": false,
        },
        "bps_max": 0, "bps_rd_max": 0, "bps_wr_max": 0,
        "iops_max": 0, "iops_rd_max": 0, "iops_wr_max": 0,
        "bps_max_length": 0, "bps_rd_max_length": 0, "bps_wr_max_length": 0,
        "iops_max_length": 0, "iops_rd_max_length": 0, "iops_wr_max_length": 0,
        "iops_size": 0,
        "cache": {"writeback": true, "direct": false, "no-flush": false},
        "write_threshold": 0,
    });
    // A node is active unless migration handed it over.
    if crate::shape::member_names(schema, "BlockDeviceInfo")
        .iter()
        .any(|n| n == "active")
    {
        v["active"] = json!(true);
    }
    v
}

/// `query-block` in QEMU 2.12's shape (before fitting to the served
/// schema); HMP's `info block` reads the same.
pub fn query_block(m: &Machine) -> Value {
    let mut out = Vec::new();
    for d in &m.block.drives {
        let mut b = Map::new();
        b.insert("device".into(), json!(d.id));
        if let Some(q) = qdev_of(m, &d.id) {
            b.insert("qdev".into(), json!(q));
        }
        b.insert("type".into(), json!("unknown"));
        b.insert("removable".into(), json!(d.removable));
        b.insert("locked".into(), json!(d.locked));
        if let Some(med) = &d.medium {
            b.insert("inserted".into(), inserted(&m.schema, med));
        }
        if d.has_tray {
            b.insert("tray_open".into(), json!(d.tray_open));
        }
        if d.interface != "floppy" {
            b.insert("io-status".into(), json!(d.io_status));
        }
        out.push(Value::Object(b));
    }
    Value::Array(out)
}

/// Dispatch.
pub fn execute(m: &mut Machine, cmd: &str, args: &Args, _cx: &mut Cx) -> Option<CmdResult> {
    Some(match cmd {
        "query-block" => Ok(query_block(m)),
        "eject" => eject(m, args),
        "change" => {
            // `change vnc …` belongs to the display.
            if arg_str(args, "device") == Some("vnc") {
                return None;
            }
            let target = arg_str(args, "target").unwrap_or("").to_string();
            let format = arg_str(args, "arg").map(str::to_string);
            change_medium(m, args, &target, format.as_deref(), None)
        }
        "blockdev-change-medium" => {
            let filename = arg_str(args, "filename").unwrap_or("").to_string();
            let format = arg_str(args, "format").map(str::to_string);
            let mode = arg_str(args, "read-only-mode").map(str::to_string);
            change_medium(m, args, &filename, format.as_deref(), mode.as_deref())
        }
        "blockdev-open-tray" => lookup(m, args).and_then(|i| {
            let name = display_name(args);
            let force = arg_bool(args, "force").unwrap_or(false);
            open_tray(m, i, &name, force).and_then(|_| crate::empty())
        }),
        "blockdev-close-tray" => {
            lookup(m, args).and_then(|i| close_tray(m, i, &display_name(args)))
        }
        "x-blockdev-remove-medium" | "blockdev-remove-medium" => {
            lookup(m, args).and_then(|i| remove_medium(m, i, &display_name(args)))
        }
        _ => return None,
    })
}
