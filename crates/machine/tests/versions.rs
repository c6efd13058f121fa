//! One machine, many interfaces.
//!
//! On its own interface (the built-in 2.12 schema), every reply and event
//! the machine makes is checked as the handler made it, before the shaping
//! that fits values to the served schema: it validates, and the shaping has
//! nothing to invent. On the seed schemas (QEMU 1.0, 1.1, 1.3) and QEMU
//! 7.2's and 10.0's, the shaped replies and events validate and the shaping
//! changes nothing but what the interfaces' differences require.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use qmpkit_machine::shape::{self, Invention};
use qmpkit_machine::view;
use qmpkit_machine::{Cx, Machine, MachineConfig};
use qmpkit_schema::model::EntityKind;
use qmpkit_schema::{Dialect, Schema};
use qmpkit_server::validate::{validate_args, validate_members, validate_value, ValidateOptions};
use serde_json::{json, Value};

/// `(label, schema, QEMU version)`.
type Interface = (String, Arc<Schema>, (u64, u64, u64));

fn schemas() -> Vec<Interface> {
    let shared = qmpkit_testkit::data::dir();
    let mut v = vec![(
        "built-in 2.12".to_string(),
        Arc::new(qmpkit_machine::embedded::load_schema().expect("embedded")),
        (2, 12, 0),
    )];
    for (rel, dialect, ver) in [
        ("seeds/qemu-1.0-dev.json", Dialect::Legacy, (1, 0, 0)),
        ("seeds/qemu-1.1-dev.json", Dialect::Legacy, (1, 1, 0)),
        ("seeds/qemu-1.3-dev.json", Dialect::Legacy, (1, 3, 0)),
        (
            "qemu-ref/schema-7.2.22/qapi/qapi-schema.json",
            Dialect::Modern,
            (7, 2, 22),
        ),
        (
            "qemu-ref/schema-10.0.2/qapi/qapi-schema.json",
            Dialect::Modern,
            (10, 0, 2),
        ),
    ] {
        let p = shared.join(rel);
        match qmpkit_schema::load(&p, dialect) {
            Ok(s) => v.push((rel.to_string(), Arc::new(s), ver)),
            Err(e) => panic!("{rel}: {e}"),
        }
    }
    v
}

fn mandatory_args(schema: &Schema, cmd: usize) -> bool {
    match &schema.entity(cmd).kind {
        EntityKind::Command(c) => c
            .arg_type
            .is_some_and(|t| schema.object_members(t).any(|m| !m.optional)),
        _ => true,
    }
}

/// What converting a value for interface `name` changed: members the
/// interface lacks are dropped (derived from the schema difference), members
/// it requires and the machine does not give are filled in only where
/// [`view::GAPS`] lists them; anything else is a wrong answer.
fn judge(
    name: &str,
    what: &str,
    item: &str,
    inventions: &[Invention],
    filled: &mut Vec<(String, String)>,
    failures: &mut Vec<String>,
) {
    for i in inventions {
        match view::judge(item, i) {
            view::Judgement::Derived => {}
            view::Judgement::Gap(g) => filled.push((g.item.to_string(), g.path.to_string())),
            view::Judgement::Fault => failures.push(format!("{name}: {what}: {i}")),
        }
    }
}

/// Every command the machine implements that takes no mandatory argument,
/// on every interface it serves: the raw reply, shaped for that interface,
/// validates against its return type, and the shaping only drops members
/// the interface lacks or fills in the gaps of [`view::GAPS`]; events too.
#[test]
fn replies_and_events_validate_on_every_interface() {
    let mut failures = Vec::new();
    let mut filled = Vec::new();
    let mut checked = 0;
    for (name, schema, ver) in schemas() {
        let opts = ValidateOptions {
            qemu_version: Some(ver),
        };
        let mut cfg = MachineConfig::default_machine();
        cfg.qemu_version = ver;
        cfg.name = Some("vm".into());
        let cfg = Arc::new(cfg);
        for cmd in qmpkit_machine::handled() {
            let Some(id) = schema.lookup(cmd) else {
                continue;
            };
            if mandatory_args(&schema, id) || matches!(cmd, "quit") {
                continue;
            }
            let EntityKind::Command(c) = &schema.entity(id).kind else {
                continue;
            };
            let mut m = Machine::new(cfg.clone(), schema.clone());
            let mut cx = Cx::default();
            let r = m.execute_raw(cmd, &Default::default(), &mut cx);
            m.advance(5_000_000_000);
            checked += 1;
            match r {
                None => failures.push(format!("{name}: {cmd}: no handler")),
                Some(Err(_)) => {} // an error is a valid answer (e.g. no vmgenid)
                Some(Ok(raw)) => {
                    let shaped = view::convert_reply(&schema, cmd, raw);
                    judge(
                        &name,
                        cmd,
                        cmd,
                        &shaped.inventions,
                        &mut filled,
                        &mut failures,
                    );
                    let v = shaped.value;
                    if let Some(rt) = c.ret_type {
                        if let Err(e) = validate_value(&schema, rt, None, &v, &opts, None) {
                            failures.push(format!("{name}: {cmd}: {} in {v}", e.desc));
                        }
                    } else if v != json!({}) {
                        failures.push(format!("{name}: {cmd}: {v} without return type"));
                    }
                }
            }
            for (ev, data) in m.take_raw_events() {
                let shaped = view::convert_event(&schema, &ev, data);
                let what = format!("{cmd}: event {ev}");
                judge(
                    &name,
                    &what,
                    &ev,
                    &shaped.inventions,
                    &mut filled,
                    &mut failures,
                );
                let Some(data) = shaped.value else {
                    continue; // an event the interface does not have
                };
                let Some(eid) = schema.lookup(&ev) else {
                    continue; // interfaces before 2.1 declare no events
                };
                if let EntityKind::Event(e) = &schema.entity(eid).kind {
                    let ok = match (&data, e.arg_type) {
                        (None, None) => true,
                        (Some(Value::Object(d)), Some(t)) => {
                            validate_members(&schema, Some(t), d, &opts, None).is_ok()
                        }
                        _ => false,
                    };
                    if !ok {
                        failures.push(format!("{name}: {cmd}: event {ev} {data:?}"));
                    }
                }
            }
        }
    }
    assert!(checked > 100, "{checked}");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

// ---------------------------------------------------------------------------
// The machine's own interface: raw replies and events, before any shaping.

/// Arguments for the machine's commands that have mandatory ones, chosen so
/// that the call succeeds on the default machine (after [`SETUP`]).
fn call_args(cmd: &str, tmp: &str) -> Option<Value> {
    Some(match cmd {
        "__org.qmpkit_inject-failure" => json!({"command": "query-status"}),
        "__org.qmpkit_io-error" => json!({"device": "virtio0"}),
        "blockdev-close-tray" | "blockdev-open-tray" | "eject" | "x-blockdev-remove-medium" => {
            json!({"device": "ide1-cd0"})
        }
        "x-blockdev-insert-medium" => json!({"device": "ide1-cd0", "node-name": "null9"}),
        "balloon" => json!({"value": 536870912}),
        "add_client" => json!({"protocol": "spice", "fdname": "none"}),
        "xen-set-global-dirty-log" => json!({"enable": true}),
        "xen-set-replication" => json!({"enable": true, "primary": true}),
        "announce-self" => json!({"initial": 50, "max": 550, "rounds": 5, "step": 100}),
        "blockdev-add" => json!({"driver": "null-co", "node-name": "null0"}),
        "blockdev-del" => json!({"node-name": "null9"}),
        "block_resize" => json!({"node-name": "null9", "size": 1024}),
        "block-set-write-threshold" => json!({"node-name": "null9", "write-threshold": 1}),
        "block-stream" | "block-commit" => json!({"device": "virtio0"}),
        "blockdev-mirror" | "blockdev-backup" => {
            json!({"device": "virtio0", "target": "null9", "sync": "full"})
        }
        "drive-mirror" | "drive-backup" => {
            json!({"device": "virtio0", "target": format!("{tmp}/copy.qcow2"), "sync": "full"})
        }
        "blockdev-snapshot" => json!({"node": "null9", "overlay": "null8"}),
        "blockdev-snapshot-sync" => {
            json!({"device": "virtio0", "snapshot-file": format!("{tmp}/snap.qcow2")})
        }
        "nbd-server-add" => json!({"device": "virtio0"}),
        "nbd-server-remove" => json!({"name": "exp0"}),
        "block-export-add" => json!({"type": "nbd", "id": "exp0", "node-name": "null9"}),
        "block-export-del" => json!({"id": "exp0"}),
        "blockdev-create" => json!({"job-id": "create0", "options":
            {"driver": "file", "filename": format!("{tmp}/created.img"), "size": 65536}}),
        "block-job-change" => json!({"id": "job0", "type": "mirror", "copy-mode": "background"}),
        "nbd-server-start" => {
            json!({"addr": {"type": "unix", "data": {"path": format!("{tmp}/nbd.sock")}}})
        }
        "transaction" => json!({"actions": []}),
        "block-dirty-bitmap-add"
        | "block-dirty-bitmap-remove"
        | "block-dirty-bitmap-clear"
        | "x-debug-block-dirty-bitmap-sha256" => json!({"node": "null9", "name": "b0"}),
        "blockdev-snapshot-internal-sync" => json!({"device": "virtio0", "name": "s1"}),
        "block-dirty-bitmap-enable" | "block-dirty-bitmap-disable" => {
            json!({"node": "null9", "name": "b0"})
        }
        "block-dirty-bitmap-merge" => json!({"node": "null9", "target": "b0", "bitmaps": ["b1"]}),
        "blockdev-reopen" => json!({"options": [{"driver": "null-co", "node-name": "null9"}]}),
        "x-blockdev-set-iothread" => json!({"node-name": "null9", "iothread": null}),
        "x-blockdev-change" => json!({"parent": "null9", "node": "null8"}),
        "blockdev-snapshot-delete-internal-sync" => json!({"device": "virtio0", "name": "s1"}),
        "change-backing-file" => {
            json!({"device": "virtio0", "image-node-name": "null9", "backing-file": "x"})
        }
        "block_set_io_throttle" => json!({"device": "virtio0", "bps": 1000, "bps_rd": 0,
            "bps_wr": 0, "iops": 0, "iops_rd": 0, "iops_wr": 0, "bps_max": 2000}),
        "block-job-cancel" | "block-job-complete" | "block-job-pause" | "block-job-resume" => {
            json!({"device": "job0"})
        }
        "block-job-dismiss" | "block-job-finalize" | "job-pause" | "job-resume" | "job-cancel"
        | "job-complete" | "job-dismiss" | "job-finalize" => json!({"id": "job0"}),
        "block-job-set-speed" => json!({"device": "job0", "speed": 0}),
        "chardev-remove" => json!({"id": "spare"}),
        "chardev-add" => json!({"id": "pty9", "backend": {"type": "pty", "data": {}}}),
        "ringbuf-write" => json!({"device": "ring0", "data": "abc"}),
        "ringbuf-read" => json!({"device": "ring0", "size": 16}),
        "__org.qmpkit_chardev-write" => json!({"id": "ring0", "data": "abc"}),
        "migrate-continue" => json!({"state": "pre-switchover"}),
        "migrate" => json!({"uri": "exec:cat > /dev/null"}),
        "migrate-set-cache-size" => json!({"value": 1048576}),
        "migrate-set-capabilities" => {
            json!({"capabilities": [{"capability": "events", "state": true}]})
        }
        "migrate_set_downtime" => json!({"value": 0.5}),
        "migrate_set_speed" => json!({"value": 1048576}),
        "__org.qmpkit_guest-memory-write" => json!({"addr": 4096, "data": "abc"}),
        "__org.qmpkit_guest-dirty-rate" => json!({"pages-per-second": 100}),
        "migrate-incoming" => json!({"uri": "tcp:127.0.0.1:4444"}),
        "query-rocker"
        | "query-rocker-ports"
        | "query-rocker-of-dpa-flows"
        | "query-rocker-of-dpa-groups" => json!({"name": "sw0"}),
        "client_migrate_info" => json!({"protocol": "spice", "hostname": "dst"}),
        "chardev-send-break" => json!({"id": "spare"}),
        "chardev-change" => json!({"id": "spare", "backend": {"type": "ringbuf", "data": {}}}),
        "__org.qmpkit_chardev-read" => json!({"id": "ring0", "format": "base64"}),
        "__org.qmpkit_guest-serial-port" => json!({"id": "port0", "open": true}),
        "__org.qmpkit_guest-rx-filter" => json!({"name": "net0", "promiscuous": true}),
        "set_link" => json!({"name": "net0", "up": false}),
        "blockdev-change-medium" => {
            json!({"device": "ide1-cd0", "filename": format!("{tmp}/cd.iso")})
        }
        "change" => json!({"device": "ide1-cd0", "target": format!("{tmp}/cd.iso")}),
        "change-vnc-password" => json!({"password": "secret"}),
        "closefd" => json!({"fdname": "fd0"}),
        "cpu-add" => json!({"id": 2}),
        "device-list-properties" => json!({"typename": "e1000"}),
        "qom-list-properties" => json!({"typename": "e1000"}),
        "device_add" => json!({"driver": "e1000", "id": "nic9"}),
        "device_del" => json!({"id": "nic1"}),
        "dump-guest-memory" => {
            json!({"paging": false, "protocol": format!("file:{tmp}/core"), "detach": true})
        }
        "expire_password" => json!({"protocol": "vnc", "time": "now"}),
        "getfd" => json!({"fdname": "fd9"}),
        "human-monitor-command" => json!({"command-line": "info status"}),
        "input-send-event" => json!({"events": [
            {"type": "key", "data": {"down": true, "key": {"type": "qcode", "data": "a"}}},
            {"type": "rel", "data": {"axis": "x", "value": 10}},
            {"type": "btn", "data": {"down": true, "button": "left"}},
        ]}),
        "memsave" => json!({"val": 0, "size": 4096, "filename": format!("{tmp}/mem")}),
        "pmemsave" => json!({"val": 0, "size": 4096, "filename": format!("{tmp}/pmem")}),
        "netdev_add" => json!({"type": "user", "id": "netdev9"}),
        "netdev_del" => json!({"id": "hostnet1"}),
        "object-add" => json!({"qom-type": "iothread", "id": "iothread9"}),
        "object-del" => json!({"id": "iothread1"}),
        "qom-get" => json!({"path": "/machine", "property": "type"}),
        "qom-list" => json!({"path": "/machine/peripheral"}),
        "qom-set" => json!({
            "path": "/machine/peripheral/balloon0",
            "property": "guest-stats-polling-interval",
            "value": 2
        }),
        "query-cpu-model-baseline" | "query-cpu-model-comparison" => {
            json!({"modela": {"name": "qemu64"}, "modelb": {"name": "qemu64"}})
        }
        "query-cpu-model-expansion" => json!({"type": "static", "model": {"name": "qemu64"}}),
        "remove-fd" => json!({"fdset-id": 0}),
        "screendump" => json!({"filename": format!("{tmp}/screen.ppm")}),
        "send-key" => json!({"keys": [{"type": "qcode", "data": "a"}]}),
        "set_password" => json!({"protocol": "vnc", "password": "secret"}),
        "__org.qmpkit_viewer-connect" => json!({"protocol": "vnc", "password": "secret"}),
        "xen-save-devices-state" | "xen-load-devices-state" => {
            json!({"filename": format!("{tmp}/devices-state")})
        }
        "__org.qmpkit_viewer-disconnect" => json!({"protocol": "vnc", "service": "40000"}),
        "trace-event-get-state" => json!({"name": "*"}),
        "trace-event-set-state" => json!({"name": "guest_cpu_reset", "enable": true}),
        "watchdog-set-action" => json!({"action": "pause"}),
        _ => return None,
    })
}

/// Requests made before each command, so that replies have something to
/// report (a hot-plugged DIMM and NIC, a netdev, a named fd and an fd set)
/// and commands have something to act on.
const SETUP: &[(&str, &str)] = &[
    (
        "object-add",
        r#"{"qom-type": "memory-backend-ram", "id": "mem9", "props": {"size": 134217728}}"#,
    ),
    (
        "device_add",
        r#"{"driver": "pc-dimm", "id": "dimm1", "memdev": "mem9"}"#,
    ),
    ("netdev_add", r#"{"type": "user", "id": "hostnet1"}"#),
    (
        "device_add",
        r#"{"driver": "e1000", "id": "nic1", "netdev": "hostnet1"}"#,
    ),
    ("getfd", r#"{"fdname": "fd0"}"#),
    ("add-fd", r#"{"opaque": "setup"}"#),
    (
        "chardev-add",
        r#"{"id": "ring0", "backend": {"type": "ringbuf", "data": {"size": 64}}}"#,
    ),
];

/// Commands that answer an error on the default machine even with the
/// arguments above, and the error: `(command, desc)`.
const SIMULATED: &str = "Device 'virtio0' has a simulated medium ('disk1.qcow2' does not exist on the host): this operation needs a real image";

const ERRORS: &[(&str, &str)] = &[
    // No job, NBD server, migration, COLO or rocker switch ever exists.
    ("block-job-cancel", "Block job 'job0' not found"),
    ("block-job-complete", "Block job 'job0' not found"),
    ("block-job-pause", "Block job 'job0' not found"),
    ("block-job-resume", "Block job 'job0' not found"),
    ("block-job-set-speed", "Block job 'job0' not found"),
    ("block-job-dismiss", "Block job 'job0' not found"),
    ("block-job-finalize", "Block job 'job0' not found"),
    ("job-pause", "Job not found"),
    ("job-resume", "Job not found"),
    ("job-cancel", "Job not found"),
    ("job-complete", "Job not found"),
    ("job-dismiss", "Job not found"),
    ("job-finalize", "Job not found"),
    ("nbd-server-stop", "NBD server not running"),
    // The guest runs.
    (
        "xen-load-devices-state",
        "Cannot update device state while vm is running",
    ),
    // No viewer is connected.
    (
        "__org.qmpkit_viewer-disconnect",
        "No VNC viewer is connected from port 40000",
    ),
    // No descriptor was passed.
    (
        "add_client",
        "File descriptor named 'none' has not been found",
    ),
    // The host has neither (QEMU 10.0.2's words; the default machine uses KVM).
    ("query-sev-capabilities", "SEV is not enabled in KVM"),
    (
        "query-sgx-capabilities",
        "Could not open '/dev/sgx_vepc': No such file or directory",
    ),
    ("nbd-server-add", "NBD server not running"),
    ("nbd-server-remove", "NBD server not running"),
    (
        "block-export-add",
        "Cannot find device='' nor node-name='null9'",
    ),
    ("block-export-del", "Export 'exp0' is not found"),
    ("block-job-change", "Block job 'job0' not found"),
    // The default machine's disks are simulated (their files do not exist); no node
    // `null9` exists.
    ("blockdev-del", "Failed to find node with node-name='null9'"),
    (
        "block_resize",
        "Cannot find device='' nor node-name='null9'",
    ),
    ("block-set-write-threshold", "Device 'null9' not found"),
    (
        "x-blockdev-change",
        "Cannot find device='null9' nor node-name='null9'",
    ),
    (
        "block-dirty-bitmap-add",
        "Cannot find device='null9' nor node-name='null9'",
    ),
    ("block-dirty-bitmap-remove", "Node 'null9' not found"),
    ("block-dirty-bitmap-clear", "Node 'null9' not found"),
    ("block-dirty-bitmap-enable", "Node 'null9' not found"),
    ("block-dirty-bitmap-disable", "Node 'null9' not found"),
    ("block-dirty-bitmap-merge", "Node 'null9' not found"),
    (
        "blockdev-reopen",
        "Failed to find node with node-name='null9'",
    ),
    (
        "x-debug-block-dirty-bitmap-sha256",
        "Node 'null9' not found",
    ),
    (
        "blockdev-snapshot",
        "Cannot find device='null9' nor node-name='null9'",
    ),
    ("block-stream", SIMULATED),
    ("block-commit", SIMULATED),
    ("blockdev-mirror", SIMULATED),
    ("blockdev-backup", SIMULATED),
    ("drive-mirror", SIMULATED),
    ("drive-backup", SIMULATED),
    ("blockdev-snapshot-sync", SIMULATED),
    ("change-backing-file", SIMULATED),
    (
        "x-blockdev-set-iothread",
        "Failed to find node with node-name='null9'",
    ),
    ("blockdev-snapshot-internal-sync", SIMULATED),
    ("blockdev-snapshot-delete-internal-sync", SIMULATED),
    ("migrate-continue", "Migration not in expected state: none"),
    (
        "migrate-incoming",
        "'-incoming' was not specified on the command line",
    ),
    (
        "migrate-start-postcopy",
        "Enable postcopy with migrate_set_capability before the start of migration",
    ),
    ("x-colo-lost-heartbeat", "VM is not in COLO mode"),
    ("query-rocker", "rocker sw0 not found"),
    ("query-rocker-ports", "rocker sw0 not found"),
    ("query-rocker-of-dpa-flows", "rocker sw0 not found"),
    ("query-rocker-of-dpa-groups", "rocker sw0 not found"),
    ("client_migrate_info", "SPICE is not in use"),
    // The default machine has no virtio serial port.
    ("__org.qmpkit_guest-serial-port", "Device 'port0' not found"),
    // The tray must be open first.
    (
        "x-blockdev-remove-medium",
        "Tray of device 'ide1-cd0' is not open",
    ),
    (
        "x-blockdev-insert-medium",
        "Tray of device 'ide1-cd0' is not open",
    ),
    (
        "query-cpu-model-baseline",
        "this feature or command is not currently supported",
    ),
    (
        "query-cpu-model-comparison",
        "this feature or command is not currently supported",
    ),
];

/// Scenarios that make the machine send its events: `(label, requests)`.
fn event_scenarios() -> Vec<(&'static str, Vec<(&'static str, Value)>)> {
    vec![
        ("stop/cont", vec![("stop", json!({})), ("cont", json!({}))]),
        ("reset", vec![("system_reset", json!({}))]),
        ("powerdown", vec![("system_powerdown", json!({}))]),
        ("quit", vec![("quit", json!({}))]),
        (
            "guest shutdown",
            vec![("__org.qmpkit_guest-shutdown", json!({}))],
        ),
        (
            "guest reboot",
            vec![("__org.qmpkit_guest-shutdown", json!({"reboot": true}))],
        ),
        ("panic", vec![("__org.qmpkit_guest-panic", json!({}))]),
        (
            "suspend/wakeup",
            vec![
                ("__org.qmpkit_guest-suspend", json!({})),
                ("system_wakeup", json!({})),
            ],
        ),
        (
            "hibernate",
            vec![("__org.qmpkit_guest-hibernate", json!({}))],
        ),
        ("watchdog", vec![("__org.qmpkit_watchdog-fire", json!({}))]),
        (
            "vnc viewers",
            vec![
                ("set_password", json!({"protocol": "vnc", "password": "pw"})),
                (
                    "__org.qmpkit_viewer-connect",
                    json!({"protocol": "vnc", "service": "40000", "password": "pw"}),
                ),
                (
                    "__org.qmpkit_viewer-disconnect",
                    json!({"protocol": "vnc", "service": "40000"}),
                ),
            ],
        ),
        (
            "link down",
            vec![("set_link", json!({"name": "net0", "up": false}))],
        ),
        (
            "serial port",
            vec![
                (
                    "device_add",
                    json!({"driver": "virtio-serial-pci", "id": "vs9"}),
                ),
                (
                    "device_add",
                    json!({"driver": "virtserialport", "id": "port9", "chardev": "spare"}),
                ),
                (
                    "__org.qmpkit_guest-serial-port",
                    json!({"id": "port9", "open": true}),
                ),
            ],
        ),
        (
            "io error",
            vec![(
                "__org.qmpkit_io-error",
                json!({"device": "virtio0", "nospace": true}),
            )],
        ),
        (
            "read error",
            vec![(
                "__org.qmpkit_io-error",
                json!({"device": "ide0-hd0", "operation": "read"}),
            )],
        ),
        ("balloon", vec![("balloon", json!({"value": 536870912}))]),
        (
            "export",
            vec![
                (
                    "nbd-server-start",
                    json!({"addr": {"type": "unix", "data": {"path": concat!(
                        env!("CARGO_TARGET_TMPDIR"),
                        "/versions-export.sock"
                    )}}}),
                ),
                (
                    "blockdev-add",
                    json!({"driver": "null-co", "node-name": "null0"}),
                ),
                (
                    "block-export-add",
                    json!({"type": "nbd", "id": "exp0", "node-name": "null0"}),
                ),
                ("block-export-del", json!({"id": "exp0"})),
            ],
        ),
        (
            "unplug",
            vec![
                ("device_del", json!({"id": "nic1"})),
                ("device_del", json!({"id": "dimm1"})),
            ],
        ),
        (
            "tray",
            vec![
                ("eject", json!({"device": "ide1-cd0"})),
                ("blockdev-close-tray", json!({"device": "ide1-cd0"})),
                ("blockdev-open-tray", json!({"device": "ide1-cd0"})),
            ],
        ),
        (
            "dump",
            vec![(
                "dump-guest-memory",
                json!({"paging": false, "protocol": "file:/dev/null", "detach": true}),
            )],
        ),
    ]
}

/// Events the scenarios above must make the machine send.
const EVENTS: &[&str] = &[
    "ACPI_DEVICE_OST",
    "BALLOON_CHANGE",
    "BLOCK_EXPORT_DELETED",
    "BLOCK_IO_ERROR",
    "DEVICE_DELETED",
    "DEVICE_TRAY_MOVED",
    "DUMP_COMPLETED",
    "GUEST_PANICKED",
    "NIC_RX_FILTER_CHANGED",
    "POWERDOWN",
    "RESET",
    "RESUME",
    "SHUTDOWN",
    "STOP",
    "SUSPEND",
    "SUSPEND_DISK",
    "VNC_CONNECTED",
    "VNC_DISCONNECTED",
    "VNC_INITIALIZED",
    "VSERPORT_CHANGE",
    "WAKEUP",
    "WATCHDOG",
];

fn devnull() -> std::os::fd::OwnedFd {
    std::os::fd::OwnedFd::from(std::fs::File::open("/dev/null").expect("/dev/null"))
}

/// A machine and its monitor session's named fds.
struct Bench {
    m: Machine,
    /// Events the setup made.
    setup_events: Vec<String>,
    /// Gaps (and faults) the version view used.
    gaps: Vec<(String, String)>,
    session_fds: Arc<Mutex<HashMap<String, std::os::fd::OwnedFd>>>,
}

/// One call at `t` seconds, with an fd for the commands that take one.
fn call_raw(
    b: &mut Bench,
    cmd: &str,
    args: &Value,
    t: u64,
) -> Option<Result<Value, qmpkit_wire::QmpError>> {
    let fds = if matches!(cmd, "getfd" | "add-fd") {
        vec![devnull()]
    } else {
        Vec::new()
    };
    let mut cx = Cx {
        now_ns: t * 1_000_000_000,
        fds,
        session_fds: Some(b.session_fds.clone()),
    };
    let m = &mut b.m;
    let a = args.as_object().cloned().unwrap_or_default();
    m.execute_raw(cmd, &a, &mut cx)
}

/// Check one raw reply of `cmd` against the own schema: valid, and nothing
/// for the shaping to invent.
fn check_reply(schema: &Schema, cmd: &str, v: &Value, failures: &mut Vec<String>) {
    let opts = ValidateOptions {
        qemu_version: Some((2, 12, 0)),
    };
    let Some(EntityKind::Command(c)) = schema.lookup(cmd).map(|id| &schema.entity(id).kind) else {
        failures.push(format!("{cmd}: not a command of the machine's schema"));
        return;
    };
    match c.ret_type {
        Some(rt) => {
            if let Err(e) = validate_value(schema, rt, Some("return"), v, &opts, None) {
                failures.push(format!("{cmd}: raw reply invalid: {} in {v}", e.desc));
            }
        }
        None if *v != json!({}) => {
            failures.push(format!("{cmd}: raw reply {v} without return type"))
        }
        None => {}
    }
    for inv in qmpkit_machine::shape::conform_return(schema, cmd, v.clone()).inventions {
        failures.push(format!("{cmd}: reply shaped: {inv} in {v}"));
    }
}

/// Check raw events against the own schema; returns their names.
fn check_events(
    schema: &Schema,
    label: &str,
    events: Vec<(String, Option<Value>)>,
    failures: &mut Vec<String>,
) -> Vec<String> {
    let opts = ValidateOptions {
        qemu_version: Some((2, 12, 0)),
    };
    let mut names = Vec::new();
    for (ev, data) in events {
        let Some(EntityKind::Event(e)) = schema.lookup(&ev).map(|id| &schema.entity(id).kind)
        else {
            failures.push(format!(
                "{label}: event {ev} is not in the machine's schema"
            ));
            continue;
        };
        let ok = match (&data, e.arg_type) {
            (None, None) => Ok(()),
            (Some(Value::Object(d)), Some(t)) => {
                validate_members(schema, Some(t), d, &opts, None).map_err(|e| e.desc)
            }
            _ => Err("data does not match the event's type".to_string()),
        };
        if let Err(why) = ok {
            failures.push(format!("{label}: event {ev}: {why} in {data:?}"));
        }
        for inv in qmpkit_machine::shape::conform_event(schema, &ev, data.clone()).inventions {
            failures.push(format!("{label}: event {ev} shaped: {inv} in {data:?}"));
        }
        names.push(ev);
    }
    names
}

/// The default machine with memory hotplug on, after [`SETUP`].
fn setup_machine(schema: &Arc<Schema>, failures: &mut Vec<String>) -> Bench {
    let mut cfg = MachineConfig::default_machine();
    // A back end no front end uses (for chardev-remove).
    cfg.apply_option("chardev", Some("null,id=spare"))
        .expect("-chardev");
    cfg.apply_option("m", Some("1G,slots=4,maxmem=4G"))
        .expect("-m");
    let mut b = Bench {
        m: Machine::new(Arc::new(cfg), schema.clone()),
        setup_events: Vec::new(),
        gaps: Vec::new(),
        session_fds: Default::default(),
    };
    for (cmd, args) in SETUP {
        let a: Value = serde_json::from_str(args).expect("setup arguments");
        match call_raw(&mut b, cmd, &a, 0) {
            Some(Ok(v)) => check_reply(schema, cmd, &v, failures),
            other => failures.push(format!("setup {cmd}: {other:?}")),
        }
    }
    b.m.advance(1_000_000_000);
    let ev = b.m.take_raw_events();
    b.setup_events = check_events(schema, "setup", ev, failures);
    b
}

/// Run every query without mandatory arguments on `b` in its current
/// state (a drive with a medium, a panicked guest, a finished dump, …) and
/// check the replies; errors are fine here (e.g. after `quit`).
fn queries_after(schema: &Schema, b: &mut Bench, label: &str, failures: &mut Vec<String>) {
    for q in qmpkit_machine::handled() {
        let Some(id) = schema.lookup(q) else {
            continue;
        };
        if !q.starts_with("query-") || mandatory_args(schema, id) {
            continue;
        }
        if let Some(Ok(v)) = call_raw(b, q, &json!({}), 100) {
            let before = failures.len();
            check_reply(schema, q, &v, failures);
            for f in &mut failures[before..] {
                *f = format!("{label}: {f}");
            }
        }
    }
}

/// Every command and event the machine makes, checked against the
/// machine's own schema as the handler made it: the reply validates, and
/// the shaping that fits values to the served schema has nothing to invent
/// (no mandatory member filled in, no enum value replaced, no member
/// dropped). Commands with mandatory arguments get the arguments of
/// [`call_args`]; every command must succeed but those listed in
/// [`ERRORS`].
#[test]
fn own_schema_raw_replies_and_events_need_no_shaping() {
    let schema = Arc::new(qmpkit_machine::embedded::load_schema().expect("embedded"));
    let tmp = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("qmpkit-own-schema");
    std::fs::create_dir_all(&tmp).expect("tmp dir");
    // The CD-ROM image the medium commands put in (one that does not open is refused).
    std::fs::write(tmp.join("cd.iso"), vec![0u8; 1 << 16]).expect("cd image");
    let tmp = tmp.to_string_lossy().into_owned();
    let opts = ValidateOptions {
        qemu_version: Some((2, 12, 0)),
    };
    let mut failures = Vec::new();
    let mut checked = Vec::new();
    for cmd in qmpkit_machine::handled() {
        let Some(id) = schema.lookup(cmd) else {
            continue; // a command of older interfaces only (e.g. `cpu`)
        };
        let args = match call_args(cmd, &tmp) {
            Some(a) => a,
            None if mandatory_args(&schema, id) => {
                failures.push(format!(
                    "{cmd}: mandatory arguments and no entry in call_args"
                ));
                continue;
            }
            None => json!({}),
        };
        if let Err(e) = validate_args(&schema, id, Some(&args), &opts) {
            failures.push(format!("{cmd}: test arguments refused: {}", e.desc));
            continue;
        }
        let mut b = setup_machine(&schema, &mut failures);
        let r = call_raw(&mut b, cmd, &args, 1);
        match (r, ERRORS.iter().find(|(c, _)| *c == cmd)) {
            (None, _) => failures.push(format!("{cmd}: no handler")),
            (Some(Ok(v)), None) => check_reply(&schema, cmd, &v, &mut failures),
            (Some(Err(e)), Some((_, want))) if e.desc == *want => {}
            (Some(Err(e)), _) => failures.push(format!("{cmd}: {}: {}", e.class, e.desc)),
            (Some(Ok(v)), Some((_, want))) => failures.push(format!(
                "{cmd}: answered {v}, listed as failing with {want}"
            )),
        }
        for s in 2..=40 {
            b.m.advance(s * 1_000_000_000);
        }
        let ev = b.m.take_raw_events();
        check_events(&schema, cmd, ev, &mut failures);
        queries_after(&schema, &mut b, &format!("after {cmd}"), &mut failures);
        checked.push(cmd);
    }
    let mut seen = Vec::new();
    for (label, steps) in event_scenarios() {
        let mut b = setup_machine(&schema, &mut failures);
        seen.append(&mut b.setup_events);
        for (i, (cmd, args)) in steps.iter().enumerate() {
            match call_raw(&mut b, cmd, args, 1 + i as u64) {
                Some(Ok(v)) => check_reply(&schema, cmd, &v, &mut failures),
                other => failures.push(format!("{label}: {cmd}: {other:?}")),
            }
            b.m.advance((2 + i as u64) * 1_000_000_000);
        }
        for s in 1..=40 {
            b.m.advance((steps.len() as u64 + s) * 1_000_000_000);
        }
        let ev = b.m.take_raw_events();
        seen.extend(check_events(&schema, label, ev, &mut failures));
        queries_after(&schema, &mut b, &format!("after {label}"), &mut failures);
    }
    for want in EVENTS {
        if !seen.iter().any(|e| e == want) {
            failures.push(format!("event {want} never sent"));
        }
    }
    for (c, _) in ERRORS {
        if !checked.contains(c) {
            failures.push(format!("ERRORS lists {c}, which was not checked"));
        }
    }
    // Every test-control command is covered too.
    for t in ["__org.qmpkit_inject-failure", "__org.qmpkit_query-keyboard"] {
        assert!(checked.contains(&t), "{t} not checked");
    }
    seen.sort();
    seen.dedup();
    eprintln!(
        "own schema: {} commands and {} kinds of event checked, conversion the identity",
        checked.len(),
        seen.len()
    );
    assert!(checked.len() >= 87, "{}", checked.len());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// One call as a client of the served interface gets it: the raw reply
/// converted by the version view, the gaps it used noted.
fn call_served(
    b: &mut Bench,
    cmd: &str,
    args: &Value,
    t: u64,
) -> Option<Result<Value, qmpkit_wire::QmpError>> {
    let schema = b.m.schema.clone();
    let r = call_raw(b, cmd, args, t)?;
    Some(r.map(|raw| {
        let c = view::convert_reply(&schema, cmd, raw);
        note(&mut b.gaps, cmd, &c.inventions);
        c.value
    }))
}

/// Record the gaps a conversion used, and its faults as gaps named "FAULT".
fn note(gaps: &mut Vec<(String, String)>, item: &str, inventions: &[Invention]) {
    for i in inventions {
        match view::judge(item, i) {
            view::Judgement::Derived => {}
            view::Judgement::Gap(g) => gaps.push((g.item.to_string(), g.path.to_string())),
            view::Judgement::Fault => gaps.push(("FAULT".into(), format!("{item}: {i}"))),
        }
    }
}

/// Converted events, gaps noted.
fn served_events(b: &mut Bench) -> Vec<(String, Option<Value>)> {
    let schema = b.m.schema.clone();
    let mut out = Vec::new();
    for (name, mut data) in b.m.take_raw_events() {
        view::derive_event(&b.m, &name, &mut data);
        let c = view::convert_event(&schema, &name, data);
        note(&mut b.gaps, &name, &c.inventions);
        if let Some(d) = c.value {
            out.push((name, d));
        }
    }
    out
}

/// Check converted events against the served schema.
fn check_served_events(
    schema: &Schema,
    opts: &ValidateOptions,
    label: &str,
    events: Vec<(String, Option<Value>)>,
    failures: &mut Vec<String>,
) -> usize {
    let mut n = 0;
    for (ev, data) in events {
        n += 1;
        let Some(eid) = schema.lookup(&ev) else {
            if shape::schema_has_events(schema) {
                failures.push(format!("{label}: event {ev} sent, not in the interface"));
            }
            continue; // interfaces before 2.1 declare no events
        };
        if let EntityKind::Event(e) = &schema.entity(eid).kind {
            let ok = match (&data, e.arg_type) {
                (None, None) => true,
                (Some(Value::Object(d)), Some(t)) => {
                    validate_members(schema, Some(t), d, opts, None).is_ok()
                }
                _ => false,
            };
            if !ok {
                failures.push(format!("{label}: event {ev} {data:?} invalid"));
            }
        }
    }
    n
}

/// The seeds' interfaces (QEMU 1.0, 1.1, 1.3) and QEMU 10.0.2's: every
/// command the machine implements that the interface has (with the
/// arguments of [`call_args`] where that interface accepts them), and every
/// event scenario, through the version view. Every reply and event
/// validates against the served schema, and the view invents nothing but
/// the listed gaps (the machine counts anything else as a fault).
#[test]
fn served_interfaces_differ_only_by_listed_gaps() {
    let tmp = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("qmpkit-served");
    std::fs::create_dir_all(&tmp).expect("tmp dir");
    // The CD-ROM image the medium commands put in (one that does not open is refused).
    std::fs::write(tmp.join("cd.iso"), vec![0u8; 1 << 16]).expect("cd image");
    let tmp = tmp.to_string_lossy().into_owned();
    let mut failures = Vec::new();
    let mut all_used = Vec::new();
    for (label, schema, ver) in schemas() {
        if !(label.starts_with("seeds/") || label.contains("10.0.2")) {
            continue;
        }
        let opts = ValidateOptions {
            qemu_version: Some(ver),
        };
        let new_bench = || {
            let mut cfg = MachineConfig::default_machine();
            cfg.qemu_version = ver;
            cfg.apply_option("chardev", Some("null,id=spare"))
                .expect("-chardev");
            let mut b = Bench {
                m: Machine::new(Arc::new(cfg), schema.clone()),
                setup_events: Vec::new(),
                gaps: Vec::new(),
                session_fds: Default::default(),
            };
            for (cmd, args) in SETUP {
                let a: Value = serde_json::from_str(args).expect("setup arguments");
                if let Some(id) = schema.lookup(cmd) {
                    if validate_args(&schema, id, Some(&a), &opts).is_ok() {
                        let _ = call_served(&mut b, cmd, &a, 0);
                    }
                }
            }
            b.m.advance(1_000_000_000);
            let _ = served_events(&mut b);
            b
        };
        let mut used: Vec<(String, String)> = Vec::new();
        let (mut replies, mut events) = (0, 0);
        let check = |b: &mut Bench, cmd: &str, r, failures: &mut Vec<String>| {
            let Some(Ok(v)) = r else { return 0 };
            let id = match schema.lookup(cmd) {
                Some(id) => id,
                None => return 0,
            };
            if let EntityKind::Command(c) = &schema.entity(id).kind {
                let bad = match c.ret_type {
                    Some(rt) => validate_value(&schema, rt, Some("return"), &v, &opts, None)
                        .err()
                        .map(|e| e.desc),
                    None if v != json!({}) => Some("a value without return type".into()),
                    None => None,
                };
                if let Some(why) = bad {
                    failures.push(format!("{label}: {cmd}: {why} in {v}"));
                }
            }
            let _ = b;
            1
        };
        for cmd in qmpkit_machine::handled() {
            let Some(id) = schema.lookup(cmd) else {
                continue;
            };
            if cmd == "quit" {
                continue;
            }
            let args = match call_args(cmd, &tmp) {
                Some(a) => a,
                None if mandatory_args(&schema, id) => continue,
                None => json!({}),
            };
            if validate_args(&schema, id, Some(&args), &opts).is_err() {
                continue; // this interface's arguments differ
            }
            let mut b = new_bench();
            let r = call_served(&mut b, cmd, &args, 1);
            replies += check(&mut b, cmd, r, &mut failures);
            for s in 2..=40 {
                b.m.advance(s * 1_000_000_000);
            }
            let ev = served_events(&mut b);
            events += check_served_events(&schema, &opts, cmd, ev, &mut failures);
            for q in qmpkit_machine::handled() {
                let Some(qid) = schema.lookup(q) else {
                    continue;
                };
                if q.starts_with("query-") && !mandatory_args(&schema, qid) {
                    let r = call_served(&mut b, q, &json!({}), 100);
                    replies += check(&mut b, q, r, &mut failures);
                }
            }
            used.append(&mut b.gaps);
        }
        for (scenario, steps) in event_scenarios() {
            let mut b = new_bench();
            for (i, (cmd, args)) in steps.iter().enumerate() {
                let r = call_served(&mut b, cmd, args, 1 + i as u64);
                replies += check(&mut b, cmd, r, &mut failures);
                b.m.advance((2 + i as u64) * 1_000_000_000);
            }
            for s in 1..=40 {
                b.m.advance((steps.len() as u64 + s) * 1_000_000_000);
            }
            let ev = served_events(&mut b);
            events += check_served_events(&schema, &opts, scenario, ev, &mut failures);
            used.append(&mut b.gaps);
        }
        eprintln!("{label}: {replies} replies and {events} events checked");
        assert!(replies > 50, "{label}: only {replies} replies");
        for (item, what) in &used {
            if item == "FAULT" {
                failures.push(format!("{label}: {what}"));
            }
        }
        all_used.append(&mut used);
    }
    // Every listed gap is still needed somewhere.
    for g in view::GAPS {
        if !all_used
            .iter()
            .any(|k| (k.0.as_str(), k.1.as_str()) == (g.item, g.path))
        {
            failures.push(format!("gap ({}, {}) no longer needed", g.item, g.path));
        }
    }
    failures.dedup();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// QEMU 7.2's interface as a saved `query-qmp-schema` answer, with `blockdev-reopen` under
/// the unstable name it had before it became stable: taking a list of nodes (`list`), or one
/// node's options as its arguments, as QEMU 4.0 to 5.2 did.
fn unstable_reopen_schema(list: bool) -> Schema {
    let p = qmpkit_testkit::data::dir()
        .join("qemu-ref/introspection/qemu-system-x86_64-7.2.22-query-qmp-schema.json");
    let mut v: Value =
        serde_json::from_str(&std::fs::read_to_string(&p).expect("schema answer")).expect("JSON");
    let infos = v["return"].as_array_mut().expect("a list");
    let add_args = infos
        .iter()
        .find(|e| e["name"] == "blockdev-add")
        .map(|e| e["arg-type"].clone())
        .expect("blockdev-add");
    let reopen = infos
        .iter_mut()
        .find(|e| e["name"] == "blockdev-reopen")
        .expect("blockdev-reopen");
    reopen["name"] = json!("x-blockdev-reopen");
    if !list {
        reopen["arg-type"] = add_args;
    }
    qmpkit_schema::load_introspection(&v).expect("the changed answer loads")
}

/// A request validated against the served schema, as the server does, then executed.
fn served_call(m: &mut Machine, cmd: &str, args: Value) -> Result<Value, String> {
    let schema = m.schema.clone();
    let id = schema
        .lookup(cmd)
        .ok_or_else(|| format!("{cmd}: not in the served schema"))?;
    let opts = ValidateOptions {
        qemu_version: Some((7, 2, 22)),
    };
    let a = validate_args(&schema, id, Some(&args), &opts).map_err(|e| e.desc)?;
    let mut cx = Cx {
        now_ns: 0,
        fds: Vec::new(),
        session_fds: None,
    };
    match m.execute(cmd, &a, &mut cx) {
        Some(Ok(v)) => Ok(v),
        Some(Err(e)) => Err(e.desc),
        None => Err(format!("{cmd}: not implemented")),
    }
}

/// A served interface that has `blockdev-reopen` only as `x-blockdev-reopen` has it answered
/// by the machine's `blockdev-reopen`, in both argument forms; the reply and the node's new
/// state are the served interface's.
#[test]
fn unstable_names_reach_the_stable_command() {
    for list in [false, true] {
        let schema = Arc::new(unstable_reopen_schema(list));
        assert!(schema.lookup("blockdev-reopen").is_none());
        let mut m = Machine::new(Arc::new(MachineConfig::default_machine()), schema);
        served_call(
            &mut m,
            "blockdev-add",
            json!({"driver": "null-co", "node-name": "n0"}),
        )
        .expect("blockdev-add");
        let node = json!({"driver": "null-co", "node-name": "n0", "read-only": true});
        let args = if list {
            json!({"options": [node]})
        } else {
            node
        };
        assert_eq!(
            served_call(&mut m, "x-blockdev-reopen", args),
            Ok(json!({})),
            "list form: {list}"
        );
        let nodes = served_call(&mut m, "query-named-block-nodes", json!({})).expect("query");
        assert_eq!(nodes[0]["node-name"], "n0");
        assert_eq!(nodes[0]["ro"], true, "list form: {list}");
        // The stable command's words for a node that is not there.
        let missing = json!({"driver": "null-co", "node-name": "n9"});
        let args = if list {
            json!({"options": [missing]})
        } else {
            missing
        };
        assert_eq!(
            served_call(&mut m, "x-blockdev-reopen", args),
            Err("Failed to find node with node-name='n9'".to_string())
        );
    }
}

/// The unstable and stable names of the commands the served interfaces have in one form and
/// the machine's interface in the other: each served name reaches a command of the machine's.
#[test]
fn served_command_names_map_to_the_machines() {
    let own = qmpkit_machine::embedded::load_schema().expect("embedded");
    for (served, own_name) in [
        ("x-blockdev-reopen", "blockdev-reopen"),
        ("blockdev-reopen", "blockdev-reopen"),
        ("blockdev-insert-medium", "x-blockdev-insert-medium"),
        ("blockdev-remove-medium", "x-blockdev-remove-medium"),
        ("x-blockdev-remove-medium", "x-blockdev-remove-medium"),
        ("x-blockdev-change", "x-blockdev-change"),
    ] {
        assert_eq!(
            view::own_command(&own, served).as_deref(),
            Some(own_name),
            "{served}"
        );
    }
    assert_eq!(view::own_command(&own, "x-no-such-command"), None);
}
