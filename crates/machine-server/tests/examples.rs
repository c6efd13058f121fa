//! QEMU's documented examples, replayed on a fresh default machine.
//!
//! Every example of `tests/data/seeds/examples-qmp-commands-2.1-dev.jsonl`
//! and `examples-schema-2.12-dev.jsonl` whose command belongs to the
//! machine's first part (run state, identity, QOM and devices, memory,
//! dumps, display and input, balloon, trace events, RTC, HMP) is sent to a
//! new machine serving the built-in (2.12) interface: the arguments go
//! through the server's validator, the reply must validate against the
//! command's return type and equal the documented one wherever the value
//! is not specific to the documented machine. The few documented requests
//! that are themselves invalid against their schema are listed in
//! [`INVALID_REQUESTS`] with the error QEMU gives them.
//!
//! Commands the machine answers beyond its first part ([`ALSO_ANSWERED`])
//! are replayed the same way. Documentation with broken JSON (trailing or
//! missing commas, unclosed brackets, stray text) is read leniently; what
//! stays unreadable is listed in [`UNREADABLE`].
//!
//! The test prints one line per example (`ok`/`FAIL` and why), then fails
//! if any replayed example failed.

use std::collections::HashMap;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::{Arc, Mutex};

use qmpkit_machine::{Cx, Machine, MachineConfig};
use qmpkit_machine_server::answer_unhandled;
use qmpkit_schema::model::EntityKind;
use qmpkit_schema::Schema;
use qmpkit_server::validate::{validate_args, validate_value, ValidateOptions};
use qmpkit_server::Unhandled;
use serde_json::{json, Value};

mod documenting;

/// Commands of the machine's first part that the example files document.
const FIRST_PART: &[&str] = &[
    // run state
    "quit",
    "stop",
    "cont",
    "system_reset",
    "system_powerdown",
    "system_wakeup",
    "inject-nmi",
    "query-status",
    // identity and capabilities
    "qmp_capabilities",
    "query-version",
    "query-commands",
    "query-events",
    "query-name",
    "query-uuid",
    "query-kvm",
    "query-cpus",
    "query-iothreads",
    "query-pci",
    "query-mice",
    "query-command-line-options",
    "query-memory-size-summary",
    "query-memdev",
    "query-memory-devices",
    "query-acpi-ospm-status",
    "query-hotpluggable-cpus",
    "query-tpm",
    "query-tpm-models",
    "query-tpm-types",
    "cpu",
    // QOM and devices
    "device_add",
    "device_del",
    "object-add",
    "object-del",
    "cpu-add",
    // memory, dumps, display, input
    "memsave",
    "pmemsave",
    "dump-guest-memory",
    "query-dump",
    "screendump",
    "send-key",
    "input-send-event",
    // balloon, trace, RTC, HMP
    "balloon",
    "query-balloon",
    "query-dump-guest-memory-capability",
    "trace-event-get-state",
    "trace-event-set-state",
    "rtc-reset-reinjection",
    "human-monitor-command",
];

/// Commands beyond the first part that the machine answers itself (VNC
/// passwords, fd passing, the CD-ROM and block queries, chardevs and ring
/// buffers): their examples are replayed too and must pass.
const ALSO_ANSWERED: &[&str] = &[
    "chardev-add",
    "chardev-remove",
    "chardev-send-break",
    "query-chardev-backends",
    "ringbuf-write",
    "ringbuf-read",
    "change",
    "eject",
    "blockdev-open-tray",
    "blockdev-close-tray",
    "x-blockdev-remove-medium",
    "query-block",
    "query-chardev",
    "query-vnc",
    "set_password",
    "expire_password",
    "query-fdsets",
];

/// Examples whose documented JSON is broken beyond a lenient reading:
/// `(file, line, why)`. Each is skipped and must still be broken.
const UNREADABLE: &[(&str, u64, &str)] = &[(
    "examples-qmp-commands-2.1-dev.jsonl",
    2086,
    // `"backing-filename-format:"qcow2"`: a key whose closing quote moved.
    "query-block: a key with its quote misplaced",
)];

/// Documented requests that are invalid against their own schema, with
/// the error QEMU answers: `(file, line, class, desc)`.
const INVALID_REQUESTS: &[(&str, &str, &str, &str)] = &[
    (
        // "enable": "true" for a boolean.
        "examples-schema-2.12-dev.jsonl",
        "trace-event-set-state",
        "GenericError",
        "Invalid parameter type for 'enable', expected: boolean",
    ),
    (
        // `paging` is mandatory and the example leaves it out.
        "examples-qmp-commands-2.1-dev.jsonl",
        "dump-guest-memory",
        "GenericError",
        "Parameter 'paging' is missing",
    ),
    (
        "examples-schema-2.12-dev.jsonl",
        "dump-guest-memory",
        "GenericError",
        "Parameter 'paging' is missing",
    ),
];

/// Commands whose documented value describes the documenting machine
/// (its version, name, CPUs, devices, memory): only validity is checked,
/// plus the parts listed in [`partial`].
const MACHINE_SPECIFIC: &[&str] = &[
    "query-version",
    "query-name",
    "query-uuid",
    "query-cpus",
    "query-iothreads",
    "query-pci",
    "query-mice",
    "query-memory-size-summary",
    "query-memdev",
    "query-memory-devices",
    "query-acpi-ospm-status",
    "query-hotpluggable-cpus",
    "query-dump",
    // The documented build lists the kdump-compressed formats (zlib, lzo,
    // snappy); this machine writes ELF cores only and lists only what it
    // can write, so the reply is a subset of the documented one.
    "query-dump-guest-memory-capability",
    // The documented machine's disks, chardevs, VNC clients and fds.
    "query-block",
    // A pty's path is the one the host allocated.
    "chardev-add",
    // The documented list is an old build's (with `tcp` and `unix`).
    "query-chardev-backends",
    "query-chardev",
    "query-vnc",
    "query-fdsets",
    // The descriptor's number in the documenting process.
    "add-fd",
    // The documenting machine's card (its MAC address and VLAN table).
    "query-rx-filter",
    // A pty's path is the one the host allocated.
    "chardev-change",
];

/// Commands whose documented list is an excerpt: each documented element
/// must be in the reply.
const EXCERPTS: &[&str] = &[
    "query-migrate-capabilities",
    "query-commands",
    "query-events",
    "query-tpm-models",
    "query-tpm-types",
];

/// Parts of machine-specific replies that must still match.
fn partial(cmd: &str, got: &Value, want: &Value) -> Result<(), String> {
    let eq = |a: Option<&Value>, b: Option<&Value>, what: &str| {
        if a == b {
            Ok(())
        } else {
            Err(format!("{what}: got {a:?}, documented {b:?}"))
        }
    };
    // The members `keys` of the object at `at`.
    let eq_under = |at: &str, keys: &[&str]| -> Result<(), String> {
        for k in keys {
            let p = format!("{at}/{k}");
            eq(got.pointer(&p), want.pointer(&p), k)?;
        }
        Ok(())
    };
    match cmd {
        "query-iothreads" => {
            let ids = |v: &Value| -> Vec<Value> {
                v.as_array()
                    .map(|a| a.iter().map(|t| t["id"].clone()).collect())
                    .unwrap_or_default()
            };
            if ids(got) == ids(want) {
                Ok(())
            } else {
                Err(format!("ids {:?} vs {:?}", ids(got), ids(want)))
            }
        }
        "query-pci" => {
            eq(got.pointer("/0/bus"), want.pointer("/0/bus"), "bus")?;
            // The host bridge (the documentation swaps its vendor and
            // device ids: QEMU answers vendor 0x8086, device 0x1237).
            eq_under(
                "/0/devices/0",
                &[
                    "bus",
                    "slot",
                    "function",
                    "class_info",
                    "qdev_id",
                    "regions",
                ],
            )?;
            eq(
                got.pointer("/0/devices/0/id/vendor"),
                want.pointer("/0/devices/0/id/device"),
                "host bridge vendor",
            )
        }
        "query-memory-size-summary" => eq(
            got.get("plugged-memory"),
            want.get("plugged-memory"),
            "plugged-memory",
        ),
        "query-cpus" => {
            // Same CPUs in the same roles; pc, thread ids and QOM paths
            // belong to the documenting machine.
            // (QEMU 2.1's documentation predates `arch`.)
            for (i, w) in want.as_array().into_iter().flatten().enumerate() {
                for k in ["CPU", "current", "halted", "arch"] {
                    if w.get(k).is_some() {
                        eq(got.pointer(&format!("/{i}/{k}")), w.get(k), k)?;
                    }
                }
            }
            Ok(())
        }
        "query-dump-guest-memory-capability" => {
            // ELF, and nothing the documented build does not list.
            let formats =
                |v: &Value| -> Vec<Value> { v["formats"].as_array().cloned().unwrap_or_default() };
            let (g, w) = (formats(got), formats(want));
            if g.contains(&json!("elf")) && g.iter().all(|f| w.contains(f)) {
                Ok(())
            } else {
                Err(format!("formats {g:?} vs documented {w:?}"))
            }
        }
        "query-block" => {
            // Documented drives this machine also has, in the same roles.
            for w in want.as_array().into_iter().flatten() {
                let Some(g) = got
                    .as_array()
                    .and_then(|a| a.iter().find(|b| b["device"] == w["device"]))
                else {
                    continue;
                };
                for k in ["removable", "locked", "io-status", "tray_open", "type"] {
                    if w.get(k).is_some() {
                        eq(g.get(k), w.get(k), k)?;
                    }
                }
            }
            Ok(())
        }
        "add-fd" => eq(got.get("fdset-id"), want.get("fdset-id"), "fdset-id"),
        "query-rx-filter" => eq_under(
            "/0",
            &[
                "name",
                "promiscuous",
                "unicast",
                "multicast",
                "broadcast-allowed",
            ],
        ),
        "chardev-add" | "chardev-change" => {
            // A pty, and only a pty, comes back with its path.
            let has_pty = |v: &Value| v.get("pty").and_then(Value::as_str).is_some();
            if has_pty(got) == has_pty(want) {
                Ok(())
            } else {
                Err(format!("pty in {got} vs documented {want}"))
            }
        }
        "query-chardev-backends" => {
            // The documented back ends that still exist are listed.
            let names = |v: &Value| -> Vec<Value> {
                v.as_array()
                    .map(|a| a.iter().map(|b| b["name"].clone()).collect())
                    .unwrap_or_default()
            };
            let g = names(got);
            for n in ["udp", "spiceport"] {
                if !g.contains(&json!(n)) {
                    return Err(format!("{n} missing from {g:?}"));
                }
            }
            Ok(())
        }
        "query-hotpluggable-cpus" => {
            // The x86 example: our CPU type.
            let x86 = want
                .as_array()
                .is_some_and(|a| a.iter().all(|c| c["type"] == "qemu64-x86_64-cpu"));
            if x86 {
                for c in got.as_array().into_iter().flatten() {
                    eq(c.get("type"), Some(&json!("qemu64-x86_64-cpu")), "type")?;
                }
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Requests an example relies on having been made before it.
fn setup(cmd: &str, args: &Value) -> Vec<(&'static str, Value)> {
    let ring = |id: &str| {
        (
            "chardev-add",
            json!({"id": id, "backend": {"type": "ringbuf", "data": {}}}),
        )
    };
    let device = args.get("device").and_then(Value::as_str);
    match (cmd, args.get("id").and_then(Value::as_str)) {
        ("chardev-remove" | "chardev-send-break", Some(id)) => vec![(
            "chardev-add",
            json!({"id": id, "backend": {"type": "null", "data": {}}}),
        )],
        ("ringbuf-write", _) => vec![ring(device.unwrap_or(""))],
        ("ringbuf-read", _) => vec![
            ring(device.unwrap_or("")),
            (
                "ringbuf-write",
                json!({"device": device, "data": "abcdefgh", "format": "utf8"}),
            ),
        ],
        ("device_del", Some("net1")) => {
            vec![("device_add", json!({"driver": "e1000", "id": "net1"}))]
        }
        ("device_del", Some(_)) => vec![("device_add", json!({"driver": "e1000"}))],
        ("object-del", Some(id)) => vec![(
            "object-add",
            json!({"qom-type": "rng-random", "id": id, "props": {"filename": "/dev/hwrng"}}),
        )],
        ("system_wakeup", _) => vec![("__org.qmpkit_guest-suspend", json!({}))],
        ("netdev_del", Some(id)) => vec![("netdev_add", json!({"type": "user", "id": id}))],
        // A card without an id is known by its model and number.
        ("set_link", _) if args["name"] == "e1000.0" => {
            vec![("device_add", json!({"driver": "e1000"}))]
        }
        ("query-rx-filter", _) => match args["name"].as_str() {
            Some(name) => vec![(
                "device_add",
                json!({"driver": "virtio-net-pci", "id": name}),
            )],
            None => vec![],
        },
        ("chardev-change", Some(id)) => vec![(
            "chardev-add",
            json!({"id": id, "backend": {"type": "null", "data": {}}}),
        )],
        // A descriptor passed with the request before (see `cx`).
        ("closefd" | "add_client", _) => vec![("getfd", json!({"fdname": args["fdname"]}))],
        _ => vec![],
    }
}

struct Example {
    file: &'static str,
    line: u64,
    command: String,
    request: Value,
    responses: Vec<Value>,
    /// Whether a response was read leniently from broken documentation.
    recovered: bool,
}

/// Read documentation JSON leniently: trailing commas dropped, missing
/// commas between values supplied, unclosed brackets closed, text after
/// the outermost value ignored. `None` when still not JSON.
fn lenient(text: &str) -> Option<Value> {
    #[derive(PartialEq, Clone, Copy)]
    enum K {
        Open(char),
        Close(char),
        Colon,
        Comma,
        Value,
    }
    let mut toks: Vec<(K, String)> = Vec::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    let mut depth = 0usize;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '{' | '[' => {
                depth += 1;
                toks.push((K::Open(c), c.to_string()));
                i += 1;
            }
            '}' | ']' => {
                toks.push((K::Close(c), c.to_string()));
                i += 1;
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    break;
                }
            }
            ':' => {
                toks.push((K::Colon, ":".into()));
                i += 1;
            }
            ',' => {
                toks.push((K::Comma, ",".into()));
                i += 1;
            }
            '"' => {
                let start = i;
                i += 1;
                while i < chars.len() && chars[i] != '"' {
                    if chars[i] == '\\' {
                        i += 1;
                    }
                    i += 1;
                }
                i += 1;
                toks.push((K::Value, chars[start..i.min(chars.len())].iter().collect()));
            }
            c if c.is_ascii_alphanumeric() || c == '-' || c == '+' || c == '.' => {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric() || matches!(chars[i], '-' | '+' | '.'))
                {
                    i += 1;
                }
                toks.push((K::Value, chars[start..i].iter().collect()));
            }
            _ => i += 1,
        }
    }
    let mut out = String::new();
    let mut stack = Vec::new();
    let mut prev: Option<K> = None;
    for (n, (k, t)) in toks.iter().enumerate() {
        let next = toks.get(n + 1).map(|x| x.0);
        match k {
            K::Comma if matches!(next, Some(K::Close(_)) | None) => continue,
            K::Open(_) | K::Value if matches!(prev, Some(K::Value) | Some(K::Close(_))) => {
                out.push(',')
            }
            _ => {}
        }
        match k {
            K::Open(c) => stack.push(if *c == '{' { '}' } else { ']' }),
            K::Close(_) => {
                stack.pop();
            }
            _ => {}
        }
        out.push_str(t);
        prev = Some(*k);
    }
    while let Some(c) = stack.pop() {
        out.push(c);
    }
    serde_json::from_str(&out).ok()
}

fn load(dir: &Path, file: &'static str) -> Vec<Example> {
    let text = match std::fs::read_to_string(dir.join(file)) {
        Ok(t) => t,
        Err(_) => return Vec::new(),
    };
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| {
            let mut recovered = false;
            let responses = v["responses"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(|r| match r.as_str() {
                    Some(text) => match lenient(text) {
                        Some(parsed) => {
                            recovered = true;
                            parsed
                        }
                        None => r,
                    },
                    None => r,
                })
                .collect();
            Some(Example {
                file,
                line: v["line"].as_u64().unwrap_or(0),
                command: v["command"].as_str()?.to_string(),
                request: v["request"].clone(),
                responses,
                recovered,
            })
        })
        .collect()
}

fn fresh(schema: &Arc<Schema>) -> Machine {
    Machine::new(Arc::new(MachineConfig::default_machine()), schema.clone())
}

/// The default machine as the documenting machine was started: without the default drives
/// it did not have, with its options (host file names mapped to the replay's directory).
fn machine_for(
    schema: &Arc<Schema>,
    ctx: &documenting::Context,
    names: &[(String, String)],
) -> Result<Machine, String> {
    let mut cfg = MachineConfig::default_machine();
    cfg.drives
        .retain(|d| !ctx.drop_drives.contains(&d.id.as_str()));
    cfg.default_drives
        .retain(|d| !ctx.drop_drives.contains(&d.as_str()));
    for (name, value) in &ctx.options {
        let mut v = value.clone();
        for (doc, here) in names {
            v = v.replace(&format!("={doc}"), &format!("={here}"));
        }
        cfg.apply_option(name, Some(&v))
            .map_err(|e| format!("-{name} {v}: {e:?}"))?;
    }
    cfg.validate().map_err(|e| format!("{e:?}"))?;
    Ok(Machine::new(Arc::new(cfg), schema.clone()))
}

/// [`cx`] for `cmd`: the commands that take a descriptor passed with their request
/// (SCM_RIGHTS) get one (`/dev/null`).
fn cx_for(cmd: &str, t_ns: u64, session: &Session) -> Cx {
    let mut c = cx(t_ns);
    c.session_fds = Some(session.clone());
    if matches!(cmd, "getfd" | "add-fd") {
        if let Ok(f) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
            c.fds.push(std::os::fd::OwnedFd::from(f));
        }
    }
    c
}

/// The descriptors a client session has named with `getfd`.
type Session = Arc<Mutex<HashMap<String, std::os::fd::OwnedFd>>>;

fn cx(t_ns: u64) -> Cx {
    let mut fds = HashMap::new();
    // dump-guest-memory's "fd:dump" names an fd passed with getfd before.
    if let Ok(f) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
        fds.insert("dump".to_string(), std::os::fd::OwnedFd::from(f));
    }
    Cx {
        now_ns: t_ns,
        fds: Vec::new(),
        session_fds: Some(Arc::new(Mutex::new(fds))),
    }
}

/// What the server itself answers (the machine never sees these).
fn builtin(schema: &Schema, cmd: &str) -> Option<Value> {
    match cmd {
        "qmp_capabilities" => Some(json!({})),
        "query-commands" => Some(Value::Array(
            schema
                .iter()
                .filter(|(_, e)| matches!(e.kind, EntityKind::Command(_)))
                .map(|(_, e)| json!({"name": e.name}))
                .collect(),
        )),
        _ => None,
    }
}

/// How a replayed example fares: the one classification every count of the documented
/// examples uses (a failure is the `Err` beside it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// The reply (or error) equals the documented one.
    Identical,
    /// The reply is valid against the command's return type and equals the documentation
    /// wherever the value is not the documenting machine's own (its version, ids, devices,
    /// sizes); or the documented list is an excerpt and every entry is there; or the
    /// documentation leaves out members the schema requires.
    MachineSpecific,
    /// The documented request is invalid against its own schema, and QEMU's error for it is
    /// answered; or the documented reply is invalid against its schema, and this machine's
    /// reply is valid and has the documented reply's plain values.
    InvalidAsDocumented,
    /// The example names what the documenting machine chose (its host's file names, the
    /// descriptor numbers it gave, the counters and times of its migration): rebuilt here
    /// with this machine's own, the reply has the documented shape, the documented type
    /// at those values and the documented value everywhere else.
    Tied,
    /// QEMU refuses the documented request where this machine stands (on the rebuilt
    /// documenting machine, or on x86 for another target's command), as `qemu-system-x86_64`
    /// 10.0.2 was seen to: this machine answers its class and words ([`REFUSED_BY_QEMU`]).
    RefusedByQemu,
}

/// What a replay answers: the outcome and a note, or why it failed.
type Replayed = Result<(Outcome, String), String>;

/// Replay one example.
fn replay(schema: &Arc<Schema>, old: Option<&Arc<Schema>>, ex: &Example) -> Replayed {
    replay_as(schema, old, ex, None)
}

/// [`replay`]; with `served`, a command no subsystem takes answers as the
/// server glue answers it in that mode (otherwise: a failure).
fn replay_as(
    schema: &Arc<Schema>,
    old: Option<&Arc<Schema>>,
    ex: &Example,
    served: Option<Unhandled>,
) -> Replayed {
    let cmd = ex.command.as_str();
    // Commands 2.12 no longer has (`cpu`) are replayed on a machine
    // serving QEMU 1.3's interface, the newest seed that has them.
    let schema = match (schema.lookup(cmd), old) {
        (Some(_), _) => schema,
        (None, Some(o)) if o.lookup(cmd).is_some() => o,
        _ => return Err("not in the 2.12 or 1.3 interface".into()),
    };
    let Some(id) = schema.lookup(cmd) else {
        return Err("not in the interface".into());
    };
    let EntityKind::Command(c) = &schema.entity(id).kind else {
        return Err("not a command".into());
    };
    let opts = ValidateOptions {
        qemu_version: Some((2, 12, 0)),
    };
    let want = ex
        .responses
        .first()
        .cloned()
        .unwrap_or(json!({"return": {}}));
    let args = match validate_args(schema, id, ex.request.get("arguments"), &opts) {
        Ok(a) => a,
        Err(e) => {
            let listed = INVALID_REQUESTS
                .iter()
                .find(|(f, c, _, _)| *f == ex.file && *c == cmd);
            return match listed {
                Some((_, _, class, desc)) if e.class.as_str() == *class && e.desc == *desc => Ok((
                    Outcome::InvalidAsDocumented,
                    format!("invalid as documented: {desc}"),
                )),
                _ => Err(format!("request refused: {}: {}", e.class, e.desc)),
            };
        }
    };
    // What the example presupposes of the documenting machine.
    let ctx = documenting::context(cmd, &ex.request["arguments"], &want);
    let dir = match &ctx {
        Some(_) => Some(tempfile::tempdir().map_err(|e| e.to_string())?),
        None => None,
    };
    let names = match (&ctx, &dir) {
        (Some(c), Some(d)) => {
            documenting::create_files(c, d.path())?;
            documenting::names(c, d.path())
        }
        _ => Vec::new(),
    };
    let documented_args = Value::Object(args.clone());
    let mut args = match documenting::map_names(&documented_args, &names, true) {
        Value::Object(o) => o,
        _ => args,
    };
    // Whether the request names the documenting host's files.
    let renamed = Value::Object(args.clone()) != documented_args;
    let got = match builtin(schema, cmd) {
        Some(v) => Ok(v),
        None => {
            let mut m = match &ctx {
                Some(c) => machine_for(schema, c, &names)?,
                None => fresh(schema),
            };
            let mut t = 0u64;
            // One client session for the setup and the example.
            let session: Session = cx(0).session_fds.unwrap_or_default();
            let mut steps = setup(cmd, &ex.request["arguments"]);
            if let Some(c) = &ctx {
                steps.extend(c.setup.iter().cloned());
            }
            let mut replies = Vec::new();
            for (scmd, sargs) in steps {
                let sargs = documenting::map_names(&sargs, &names, true);
                let a = sargs.as_object().cloned().unwrap_or_default();
                let mut scx = cx_for(scmd, t, &session);
                if cmd == "add_client" && scmd == "getfd" {
                    // The documenting machine handed over a viewer's connection: a socket.
                    if let Ok((_, theirs)) = std::os::unix::net::UnixStream::pair() {
                        scx.fds = vec![theirs.into()];
                    }
                }
                if let (Some(img), Some(d), "add-fd") =
                    (ctx.as_ref().and_then(|c| c.fd_image), &dir, scmd)
                {
                    // As the node that opens it asks: read-only, with O_DIRECT.
                    let f = std::fs::OpenOptions::new()
                        .read(true)
                        .custom_flags(libc::O_DIRECT)
                        .open(documenting::host_path(d.path(), img))
                        .map_err(|e| e.to_string())?;
                    scx.fds = vec![f.into()];
                }
                match m.execute(scmd, &a, &mut scx) {
                    Some(Ok(v)) => replies.push(v),
                    other => return Err(format!("setup {scmd} failed: {other:?}")),
                }
                t += 1_000_000_000;
                m.advance(t);
            }
            if let Some(c) = &ctx {
                for &(at, i, from) in &c.from_setup {
                    let v = replies
                        .get(i)
                        .and_then(|r| r.pointer(from))
                        .cloned()
                        .ok_or_else(|| format!("setup reply {i} has no {from}"))?;
                    let key = at.trim_start_matches('/');
                    args.insert(key.to_string(), v);
                }
                // Let the documenting machine's migration get under way: its channel comes
                // up in real time (a process starts, a connection fails).
                // The clock moves on while the machine polls the channel.
                let mut polls = 0;
                while polls < 1000 && c.wait_ns > 0 && migration_in_setup(&mut m, t) {
                    polls += 1;
                    std::thread::sleep(std::time::Duration::from_millis(2));
                    t += 5_000_000;
                    m.advance(t);
                }
                let mut s = 0;
                while s < c.wait_ns {
                    s += 100_000_000;
                    m.advance(t + s);
                }
                t += c.wait_ns;
                if let Some(want) = c.settle_status {
                    let began = std::time::Instant::now();
                    while migration_status(&mut m, t).as_deref() != Some(want)
                        && began.elapsed() < std::time::Duration::from_secs(60)
                    {
                        std::thread::sleep(std::time::Duration::from_millis(10));
                        t += 100_000_000;
                        m.advance(t);
                    }
                }
            }
            let own = !old.is_some_and(|o| Arc::ptr_eq(o, schema));
            let r = match m.execute_raw(cmd, &args, &mut cx_for(cmd, t, &session)) {
                // The reply as the handler made it, shaped as the server
                // glue does; on the machine's own schema nothing may be
                // invented.
                Some(Ok(v)) => {
                    let shaped = qmpkit_machine::shape::conform_return(schema, cmd, v);
                    if let (true, Some(i)) = (own, shaped.inventions.first()) {
                        return Err(format!("reply shaped: {i}"));
                    }
                    Ok(shaped.value)
                }
                Some(Err(e)) => Err(e),
                None => match served {
                    Some(mode) => answer_unhandled(schema, cmd, Some(id), mode),
                    None => return Err("no handler".into()),
                },
            };
            // Whatever the machine does next must not fail either.
            for s in 1..=10 {
                m.advance(t + s * 1_000_000_000);
            }
            r
        }
    };
    // The documenting host's file names back in the reply.
    let got = got.map(|v| documenting::map_names(&v, &names, false));
    let tied = renamed || ctx.as_ref().is_some_and(documenting::Context::tied);
    let why = ctx.as_ref().map_or("", |c| c.why);
    let got = match got {
        Ok(v) => v,
        Err(e) => {
            let desc = match documenting::map_names(&json!(e.desc), &names, false) {
                Value::String(d) => d,
                _ => e.desc.clone(),
            };
            let as_doc = json!({"error": {"class": e.class.as_str(), "desc": desc}});
            let refused = REFUSED_BY_QEMU.iter().find(|(f, l, c, class, d, _)| {
                (*f, *l, *c) == (&*ex.file, ex.line, cmd)
                    && *class == e.class.as_str()
                    && *d == desc
            });
            return match (as_doc == want, tied, refused) {
                (true, false, _) => Ok((Outcome::Identical, "error as documented".into())),
                (true, true, _) => Ok((
                    Outcome::Tied,
                    format!("error as documented; tied to the documenting machine: {why}"),
                )),
                (false, _, Some((.., why))) => Ok((
                    Outcome::RefusedByQemu,
                    format!("{} {desc}, as QEMU answers: {why}", e.class),
                )),
                _ => Err(format!("error {}: {desc}", e.class)),
            };
        }
    };
    if let Some(rt) = c.ret_type {
        validate_value(schema, rt, None, &got, &opts, None)
            .map_err(|e| format!("reply does not validate: {} in {got}", e.desc))?;
    } else if got != json!({}) {
        return Err(format!("reply {got} for a command without return type"));
    }
    let Some(want) = want.get("return") else {
        return Err(format!("documented answer is not a return: {want}"));
    };
    if let (Some(c), false) = (&ctx, EXCERPTS.contains(&cmd)) {
        // Documented replies that their own schema refuses: a member it does not have, or a
        // value of the wrong type (what the documentation leaves out, this valid reply
        // supplies).
        if let Some(rt) = c_ret(schema, cmd) {
            let merged = overlay(&got, want);
            if let Err(e) = validate_value(schema, rt, None, &merged, &opts, None) {
                return documented_invalid(schema, rt, &opts, &got, want, &e.desc, why);
            }
        }
        let extra = documenting::compare(&got, want, &c.own)
            .map_err(|e| format!("{e} (reply {got}; {why})"))?;
        let omitted = if extra.is_empty() {
            String::new()
        } else {
            format!("; members the example omits: {}", extra.join(", "))
        };
        return Ok(match (tied, extra.is_empty()) {
            (false, true) => (Outcome::Identical, format!("same reply ({why})")),
            (false, false) => (
                Outcome::MachineSpecific,
                format!("documented members equal ({why}){omitted}"),
            ),
            (true, _) => (
                Outcome::Tied,
                format!("tied to the documenting machine: {why}{omitted}"),
            ),
        });
    }
    if MACHINE_SPECIFIC.contains(&cmd) {
        partial(cmd, &got, want).map_err(|e| format!("{e} (reply {got})"))?;
        return Ok((
            Outcome::MachineSpecific,
            "valid; machine-specific values differ".into(),
        ));
    }
    if EXCERPTS.contains(&cmd) {
        let have = got.as_array().cloned().unwrap_or_default();
        for w in want.as_array().into_iter().flatten() {
            if !have.contains(w) {
                return Err(format!("documented {w} missing from {got}"));
            }
        }
        return Ok((
            Outcome::MachineSpecific,
            "documented entries present".into(),
        ));
    }
    if &got == want {
        Ok((Outcome::Identical, "same reply".into()))
    } else if covers(&got, want) {
        // Members the schema requires that the documentation leaves out
        // (e.g. TraceEventInfo's `vcpu`).
        Ok((
            Outcome::MachineSpecific,
            "documented members equal; schema members the example omits".into(),
        ))
    } else {
        Err(format!("reply {got}, documented {want}"))
    }
}

/// Whether the machine's outgoing migration is still in `setup`.
fn migration_in_setup(m: &mut Machine, t: u64) -> bool {
    migration_status(m, t).as_deref() == Some("setup")
}

/// The machine's migration status now.
fn migration_status(m: &mut Machine, t: u64) -> Option<String> {
    match m.execute("query-migrate", &Default::default(), &mut cx(t)) {
        Some(Ok(v)) => v["status"].as_str().map(str::to_string),
        _ => None,
    }
}

/// The return type of `cmd`.
fn c_ret(schema: &Schema, cmd: &str) -> Option<qmpkit_schema::model::EntityId> {
    match &schema.entity(schema.lookup(cmd)?).kind {
        EntityKind::Command(c) => c.ret_type,
        _ => None,
    }
}

/// A documented reply its schema refuses: this machine's reply is valid (checked before),
/// and each documented top-level member that is not an object or array has its value.
fn documented_invalid(
    schema: &Schema,
    rt: qmpkit_schema::model::EntityId,
    opts: &ValidateOptions,
    got: &Value,
    want: &Value,
    desc: &str,
    why: &str,
) -> Replayed {
    for (k, w) in want.as_object().into_iter().flatten() {
        if got.get(k).is_none() {
            // A documented member this reply lacks must be one the schema does not have.
            let with = overlay(got, &json!({ k.as_str(): w }));
            if validate_value(schema, rt, None, &with, opts, None).is_ok() {
                return Err(format!(
                    "{k}: missing (documented {w}; the documented reply is invalid: {desc}; {why})"
                ));
            }
            continue;
        }
        if w.is_object() || w.is_array() {
            continue;
        }
        if got.get(k) != Some(w) {
            return Err(format!(
                "{k}: got {:?}, documented {w} (the documented reply is invalid: {desc}; {why})",
                got.get(k)
            ));
        }
    }
    let lacking: Vec<&String> = want
        .as_object()
        .into_iter()
        .flat_map(|o| o.keys())
        .filter(|k| got.get(k.as_str()).is_none())
        .collect();
    let lacking = if lacking.is_empty() {
        String::new()
    } else {
        format!("; documented members the reply lacks: {lacking:?}")
    };
    Ok((
        Outcome::InvalidAsDocumented,
        format!("documented reply invalid: {desc} ({why}){lacking}"),
    ))
}

/// `base` with `top`'s members put over it, member by member.
fn overlay(base: &Value, top: &Value) -> Value {
    match (base, top) {
        (Value::Object(b), Value::Object(t)) => {
            let mut o = b.clone();
            for (k, v) in t {
                let merged = match o.get(k) {
                    Some(bv) => overlay(bv, v),
                    None => v.clone(),
                };
                o.insert(k.clone(), merged);
            }
            Value::Object(o)
        }
        // Element by element; a documented element beyond the reply's over the first.
        (Value::Array(b), Value::Array(t)) if !b.is_empty() => Value::Array(
            t.iter()
                .enumerate()
                .map(|(i, y)| overlay(b.get(i).unwrap_or(&b[0]), y))
                .collect(),
        ),
        _ => top.clone(),
    }
}

/// `got` has every documented member with the documented value.
fn covers(got: &Value, want: &Value) -> bool {
    match (got, want) {
        (Value::Object(g), Value::Object(w)) => w
            .iter()
            .all(|(k, wv)| g.get(k).is_some_and(|gv| covers(gv, wv))),
        (Value::Array(g), Value::Array(w)) => {
            g.len() == w.len() && g.iter().zip(w).all(|(a, b)| covers(a, b))
        }
        _ => got == want,
    }
}

#[test]
fn documented_examples() {
    let dir = qmpkit_testkit::data::path("seeds");
    let mut examples = load(&dir, "examples-qmp-commands-2.1-dev.jsonl");
    examples.extend(load(&dir, "examples-schema-2.12-dev.jsonl"));
    assert!(!examples.is_empty(), "no examples under {}", dir.display());
    let schema = Arc::new(qmpkit_machine::embedded::load_schema().expect("embedded schema"));
    let old = qmpkit_schema::load(
        &dir.join("qemu-1.3-dev.json"),
        qmpkit_schema::Dialect::Legacy,
    )
    .ok()
    .map(Arc::new);
    let mut failures = Vec::new();
    let mut per_command: HashMap<String, (usize, usize)> = HashMap::new();
    let mut count = 0;
    let mut recovered = Vec::new();
    let mut outcomes = Vec::new();
    for ex in examples.iter().filter(|e| {
        FIRST_PART.contains(&e.command.as_str()) || ALSO_ANSWERED.contains(&e.command.as_str())
    }) {
        if ex.request.is_null() || ex.responses.iter().any(|r| !r.is_object()) {
            // Documentation whose JSON is broken even for a lenient reader.
            let listed = UNREADABLE
                .iter()
                .find(|(f, l, _)| *f == ex.file && *l == ex.line);
            match listed {
                Some((_, _, why)) => println!("skip {}:{} {why}", ex.file, ex.line),
                None => failures.push(format!(
                    "{}:{} {}: documented JSON unreadable and not listed",
                    ex.file, ex.line, ex.command
                )),
            }
            continue;
        }
        if ex.recovered {
            recovered.push(format!("{}:{} {}", ex.file, ex.line, ex.command));
        }
        count += 1;
        let r = replay(&schema, old.as_ref(), ex);
        let e = per_command.entry(ex.command.clone()).or_default();
        match &r {
            Ok((o, note)) => {
                outcomes.push(*o);
                e.0 += 1;
                println!("ok   {}:{} {}: {note}", ex.file, ex.line, ex.command);
            }
            Err(why) => {
                e.1 += 1;
                println!("FAIL {}:{} {}: {why}", ex.file, ex.line, ex.command);
                failures.push(format!("{}:{} {}: {why}", ex.file, ex.line, ex.command));
            }
        }
    }
    let mut cmds: Vec<_> = per_command.into_iter().collect();
    cmds.sort();
    println!("\nper command (passed/failed):");
    for (c, (ok, bad)) in &cmds {
        println!("  {c:32} {ok}/{bad}");
    }
    println!("the examples of the commands the machine answers itself:");
    print_counts(&outcomes, 0, failures.len());
    println!("read leniently: {recovered:?}");
    assert!(count >= 60, "only {count} examples found");
    // The documentation's broken examples of the first part are replayed,
    // not skipped.
    for want in [
        "examples-qmp-commands-2.1-dev.jsonl:2304 query-cpus",
        "examples-schema-2.12-dev.jsonl:3122 query-hotpluggable-cpus",
        "examples-qmp-commands-2.1-dev.jsonl:3170 query-balloon",
        "examples-schema-2.12-dev.jsonl:647 query-balloon",
        "examples-qmp-commands-2.1-dev.jsonl:845 query-dump-guest-memory-capability",
        "examples-schema-2.12-dev.jsonl:1754 query-dump-guest-memory-capability",
    ] {
        assert!(recovered.iter().any(|r| r == want), "{want} not replayed");
    }
    assert!(
        failures.is_empty(),
        "failed examples:\n{}",
        failures.join("\n")
    );
}

/// How to make the machine send a documented event: the requests, then
/// whether the documented data must match (or the event only be valid).
fn event_scenario(event: &str) -> Option<(Vec<(&'static str, Value)>, bool)> {
    let r = |v: &[(&'static str, Value)]| v.to_vec();
    Some(match event {
        "SHUTDOWN" | "POWERDOWN" => (r(&[("system_powerdown", json!({}))]), true),
        "RESET" => (r(&[("system_reset", json!({}))]), true),
        "STOP" => (r(&[("stop", json!({}))]), true),
        "RESUME" => (r(&[("stop", json!({})), ("cont", json!({}))]), true),
        "SUSPEND" => (r(&[("__org.qmpkit_guest-suspend", json!({}))]), true),
        "SUSPEND_DISK" => (r(&[("__org.qmpkit_guest-hibernate", json!({}))]), true),
        "WAKEUP" => (
            r(&[
                ("__org.qmpkit_guest-suspend", json!({})),
                ("system_wakeup", json!({})),
            ]),
            true,
        ),
        "WATCHDOG" => (r(&[("__org.qmpkit_watchdog-fire", json!({}))]), true),
        "GUEST_PANICKED" => (r(&[("__org.qmpkit_guest-panic", json!({}))]), true),
        // The documenting machine's balloon size and device names.
        "BALLOON_CHANGE" => (r(&[("balloon", json!({"value": 536870912}))]), false),
        "DEVICE_DELETED" => (
            r(&[
                ("device_add", json!({"driver": "e1000", "id": "net1"})),
                ("device_del", json!({"id": "net1"})),
            ]),
            false,
        ),
        _ => return None,
    })
}

#[test]
fn documented_events() {
    let dir = qmpkit_testkit::data::path("seeds");
    let path = dir.join("examples-schema-2.12-dev.jsonl");
    let text = std::fs::read_to_string(&path).expect("test data");
    let schema = Arc::new(qmpkit_machine::embedded::load_schema().expect("embedded schema"));
    // The interface the examples document: the machine's own grew later members (SHUTDOWN's
    // `reason`), which the 2.12 interface leaves out.
    let seed = qmpkit_schema::load(
        &dir.join("qemu-2.12-dev/qapi-schema.json"),
        qmpkit_schema::Dialect::Legacy,
    )
    .expect("the 2.12 seed");
    let opts = ValidateOptions {
        qemu_version: Some((2, 12, 0)),
    };
    let mut checked = Vec::new();
    let mut failures = Vec::new();
    for v in text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
    {
        if !v["request"].is_null() {
            continue;
        }
        for doc in v["events"].as_array().into_iter().flatten() {
            let Some(name) = doc["event"].as_str() else {
                continue; // malformed documentation
            };
            let Some((steps, exact)) = event_scenario(name) else {
                continue;
            };
            let mut cfg = MachineConfig::default_machine();
            cfg.no_shutdown = true;
            let mut m = Machine::new(Arc::new(cfg), schema.clone());
            let mut t = 0;
            let mut got = Vec::new();
            for (cmd, args) in steps {
                let a = args.as_object().cloned().unwrap_or_default();
                if !matches!(m.execute(cmd, &a, &mut cx(t)), Some(Ok(_))) {
                    failures.push(format!("{name}: {cmd} failed"));
                }
                t += 1_000_000_000;
                m.advance(t);
                got.extend(m.take_raw_events());
            }
            for s in 1..=30 {
                m.advance(t + s * 1_000_000_000);
            }
            // As the machine made them: compared before any shaping, which
            // must have nothing to change on the machine's own schema.
            got.extend(m.take_raw_events());
            for (n, d) in &got {
                let shaped = qmpkit_machine::shape::conform_event(&schema, n, d.clone());
                for i in shaped.inventions {
                    failures.push(format!("{name}: event {n} shaped: {i}"));
                }
            }
            let Some((_, data)) = got.iter().find(|(n, _)| n == name) else {
                failures.push(format!("{name}: not sent ({got:?})"));
                continue;
            };
            let want = doc.get("data").cloned();
            let as_documented = qmpkit_machine::view::convert_event(&seed, name, data.clone())
                .value
                .flatten();
            if exact && as_documented != want {
                failures.push(format!("{name}: data {data:?}, documented {want:?}"));
                continue;
            }
            let Some(EntityKind::Event(e)) = schema.lookup(name).map(|id| &schema.entity(id).kind)
            else {
                failures.push(format!("{name}: not in the schema"));
                continue;
            };
            let valid = match (data, e.arg_type) {
                (None, None) => true,
                (Some(d), Some(t)) => validate_value(&schema, t, None, d, &opts, None).is_ok(),
                _ => false,
            };
            if !valid {
                failures.push(format!("{name}: data {data:?} does not validate"));
            }
            checked.push(name.to_string());
        }
    }
    println!("documented events reproduced: {checked:?}");
    assert!(checked.len() >= 12, "{checked:?}");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Every documented example, whatever its command, as `qmpkit serve` answers it in `mode`.
struct Tally {
    /// Passed, with their outcome and its note.
    ok: Vec<(String, Outcome, String)>,
    /// Answered that the command is not implemented.
    unimplemented: Vec<String>,
    /// Other failures, with the reason.
    failed: Vec<String>,
    /// Examples with a request whose documented JSON stays unreadable (not replayed).
    unreadable: Vec<String>,
    /// Replayed after reading broken documented JSON leniently.
    lenient: Vec<String>,
}

/// The replayed examples by outcome, in the words the README explains.
fn print_counts(ok: &[Outcome], unimplemented: usize, failing: usize) {
    let n = |o: Outcome| ok.iter().filter(|x| **x == o).count();
    println!("replayed: {}", ok.len() + unimplemented + failing);
    println!(
        "  identical to the documentation:              {}",
        n(Outcome::Identical)
    );
    println!(
        "  valid, the documenting machine's own values: {}",
        n(Outcome::MachineSpecific)
    );
    println!(
        "  invalid as documented, QEMU's error:         {}",
        n(Outcome::InvalidAsDocumented)
    );
    println!(
        "  tied to the documenting machine's values:    {}",
        n(Outcome::Tied)
    );
    println!(
        "  refused by QEMU, in its words:               {}",
        n(Outcome::RefusedByQemu)
    );
    println!("  not implemented:                             {unimplemented}");
    println!("  failing:                                     {failing}");
}

/// The replayed examples by the module of QEMU 2.12's schema that defines their command
/// (`block-core.json`, `migration.json`, …), so each part of the machine can be followed.
fn print_by_module(t: &Tally) {
    let dir = qmpkit_testkit::data::path("seeds");
    let schema = qmpkit_schema::load(
        &dir.join("qemu-2.12-dev/qapi-schema.json"),
        qmpkit_schema::Dialect::Legacy,
    )
    .expect("2.12 schema");
    let module = |at: &str| {
        let command = at.split(": ").next().unwrap_or(at).rsplit(' ').next();
        command
            .and_then(|c| schema.lookup(c))
            .map(|id| schema.modules[schema.entity(id).module].name.to_string())
            .unwrap_or_else(|| "(not in 2.12)".to_string())
    };
    // Per module: identical, other passing outcomes, not implemented, failing.
    let mut rows: std::collections::BTreeMap<String, [usize; 4]> = Default::default();
    for (at, o, _) in &t.ok {
        let row = rows.entry(module(at)).or_default();
        row[usize::from(*o != Outcome::Identical)] += 1;
    }
    for at in &t.unimplemented {
        rows.entry(module(at)).or_default()[2] += 1;
    }
    for at in &t.failed {
        rows.entry(module(at)).or_default()[3] += 1;
    }
    println!("by the module defining the command (identical / otherwise passing / not implemented / failing):");
    for (m, [same, other, unimpl, failing]) in &rows {
        println!("  {m}: {same} / {other} / {unimpl} / {failing}");
    }
}

impl Tally {
    fn passed(&self) -> Vec<String> {
        self.ok.iter().map(|(e, _, _)| e.clone()).collect()
    }

    fn replayed(&self) -> usize {
        self.ok.len() + self.unimplemented.len() + self.failed.len()
    }
}

fn replay_all(mode: Unhandled) -> Tally {
    let dir = qmpkit_testkit::data::path("seeds");
    let mut examples = load(&dir, "examples-qmp-commands-2.1-dev.jsonl");
    examples.extend(load(&dir, "examples-schema-2.12-dev.jsonl"));
    let schema = Arc::new(qmpkit_machine::embedded::load_schema().expect("embedded schema"));
    let old = qmpkit_schema::load(
        &dir.join("qemu-1.3-dev.json"),
        qmpkit_schema::Dialect::Legacy,
    )
    .ok()
    .map(Arc::new);
    let mut t = Tally {
        ok: Vec::new(),
        unimplemented: Vec::new(),
        failed: Vec::new(),
        unreadable: Vec::new(),
        lenient: Vec::new(),
    };
    for ex in &examples {
        let at = format!("{}:{} {}", ex.file, ex.line, ex.command);
        if ex.request.is_null() || ex.responses.iter().any(|r| !r.is_object()) {
            t.unreadable.push(at);
            continue;
        }
        if ex.recovered {
            t.lenient.push(at.clone());
        }
        match replay_as(&schema, old.as_ref(), ex, Some(mode)) {
            Ok((o, note)) => t.ok.push((at, o, note)),
            Err(e) if e.ends_with("is not implemented by this simulated machine") => {
                t.unimplemented.push(at)
            }
            Err(e) => t.failed.push(format!("{at}: {e}")),
        }
    }
    t
}

/// The documented examples in the seeds, counted from the files themselves: per file, all
/// of them, those of an event alone (no request), those with a request, and of these the
/// ones whose documented JSON is valid (the "valid documented examples").
fn census() -> Vec<(&'static str, usize, usize, usize, usize)> {
    let dir = qmpkit_testkit::data::path("seeds");
    [
        "examples-qmp-commands-2.1-dev.jsonl",
        "examples-schema-2.12-dev.jsonl",
    ]
    .into_iter()
    .map(|f| {
        let lines: Vec<Value> = std::fs::read_to_string(dir.join(f))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        let with_request = lines.iter().filter(|v| v["request"].is_object()).count();
        let valid = lines
            .iter()
            .filter(|v| v["request"].is_object() && v["valid_json"] == true)
            .count();
        (
            f,
            lines.len(),
            lines.len() - with_request,
            with_request,
            valid,
        )
    })
    .collect()
}

/// Examples that still fail, each with the reason: `(file, line, command, why)`. Each must
/// still fail. What the other examples presuppose of the documenting machine is rebuilt
/// (`documenting.rs`).
const DOCUMENTING_MACHINE: &[(&str, u64, &str, &str)] = &[
    (
        "examples-schema-2.12-dev.jsonl",
        3014,
        "xen-load-devices-state",
        "the documenting machine was stopped with a saved state to load; QEMU 10.0.2 refuses a running machine in these words, as here (and aborts on a stopped one, which the machine does not model)",
    ),
    (
        "examples-qmp-commands-2.1-dev.jsonl",
        3480,
        "blockdev-add",
        "QEMU 2.1's form (the options under 'options'): the 2.12 interface served takes them flat and QEMU 2.12 refuses this request in these words",
    ),
    (
        "examples-qmp-commands-2.1-dev.jsonl",
        3488,
        "blockdev-add",
        "QEMU 2.1's form (the options under 'options'): the 2.12 interface served takes them flat and QEMU 2.12 refuses this request in these words",
    ),
    (
        "examples-schema-2.12-dev.jsonl",
        1426,
        "query-named-block-nodes",
        "the documenting machine's node 'my-node' (disks/test.qcow2 over base.qcow2, with I/O limits and an internal snapshot) shows its drive's I/O limits and is listed alone; qemu-system-x86_64 10.0.2 with that set-up lists the chain's four nodes, each with bps 0 (limits belong to the drive), as the machine does (test drive_node_name_names_the_format_node)",
    ),
    (
        "examples-schema-2.12-dev.jsonl",
        3548,
        "blockdev-change-medium",
        "the documenting host could not open the floppy's new image for writing (Permission denied); the replay's host can, and QEMU 10.0.2 with the same floppy drive then answers {}, as the machine does (run as root, even a mode 0444 image opens for writing)",
    ),
    (
        "examples-schema-2.12-dev.jsonl",
        103,
        "query-rocker-ports",
        "the documenting guest's rocker driver enabled the ports: before a guest driver, QEMU 10.0.2 with the same switch (two ports over two netdevs, switch_id) answers \"enabled\": false and \"link-up\": false for both, as here, and the simulated guest has no rocker driver",
    ),
    (
        "examples-schema-2.12-dev.jsonl",
        322,
        "query-rocker-of-dpa-groups",
        "the flow groups the documenting guest's rocker driver installed: before a guest driver, QEMU 10.0.2 with the same switch answers [], as here, and the simulated guest has no rocker driver to install any",
    ),
    (
        "examples-schema-2.12-dev.jsonl",
        870,
        "x-colo-lost-heartbeat",
        "the documenting machine is in COLO mode, which the machine does not model; QEMU answers a machine that is not in these words",
    ),
];

/// QEMU's error for an image opened for writing twice.
const LOCKED: &str = "Failed to get \"write\" lock";
/// Why the documented transaction is refused.
const ONE_IMAGE_TWICE: &str = "two snapshots onto the one existing image \
    /some/place/my-image2 in one transaction: the second cannot take the write lock the \
    first holds";

/// Examples that QEMU refuses where this machine stands, with its class and words, as
/// `qemu-system-x86_64` 10.0.2 answered them: `(file, line, command, class, desc, why)`.
/// Each must be answered so.
const REFUSED_BY_QEMU: &[(&str, u64, &str, &str, &str, &str)] = &[
    (
        "examples-qmp-commands-2.1-dev.jsonl",
        1166,
        "transaction",
        "GenericError",
        LOCKED,
        ONE_IMAGE_TWICE,
    ),
    (
        "examples-schema-2.12-dev.jsonl",
        134,
        "transaction",
        "GenericError",
        LOCKED,
        ONE_IMAGE_TWICE,
    ),
    (
        "examples-schema-2.12-dev.jsonl",
        1775,
        "dump-skeys",
        "CommandNotFound",
        "The command dump-skeys has not been found",
        "s390x only; QEMU's x86 build has no such command",
    ),
    (
        "examples-schema-2.12-dev.jsonl",
        3057,
        "query-gic-capabilities",
        "CommandNotFound",
        "The command query-gic-capabilities has not been found",
        "ARM only; QEMU's x86 build has no such command",
    ),
];

/// Commands whose documented examples answer that the command is not
/// implemented (the machine has no behaviour for them yet). With replies
/// synthesised from the return type (`--synthesize`) most of these
/// examples "passed": a made-up `{}` equals the documented `{}` of
/// `migrate`, `drive-mirror` or `chardev-add`, whatever the request.
const NOT_IMPLEMENTED: &[&str] = &[
    // The 2.12 interface says it always returns an error since 2.10, without its words;
    // QEMU 10.0.2 no longer has the command (CommandNotFound, as served with its
    // interface), so the 2.12 words cannot be learnt here.
    "block_passwd",
];

/// All documented examples, through the glue: with `--synthesize` (what
/// `qmpkit serve` answered before unimplemented commands said so) and by
/// default. Every example that stops passing answers that its command is
/// not implemented, and those commands are exactly [`NOT_IMPLEMENTED`].
#[test]
fn all_documented_examples_as_served() {
    let synth = replay_all(Unhandled::Synthesize);
    let t = replay_all(Unhandled::NotImplemented);
    let (s_ok, ok) = (synth.passed(), t.passed());
    // How the examples are counted (README, "The documented examples").
    let files = census();
    let sum =
        |f: fn(&(&str, usize, usize, usize, usize)) -> usize| files.iter().map(f).sum::<usize>();
    println!("documented examples in the seeds: {}", sum(|f| f.1));
    for (f, all, events, req, valid) in &files {
        println!("  {f}: {all}: {events} of an event alone, {req} with a request, {valid} of these valid JSON as documented");
    }
    println!(
        "with a request: {}; valid as documented: {}; broken JSON read leniently: {}; unreadable: {}",
        sum(|f| f.3),
        sum(|f| f.4),
        t.lenient.len(),
        t.unreadable.len()
    );
    let outcomes: Vec<Outcome> = t.ok.iter().map(|(_, o, _)| *o).collect();
    print_counts(&outcomes, t.unimplemented.len(), t.failed.len());
    print_by_module(&t);
    // Each example that does not match exactly, with the reason.
    for (what, o) in [
        ("invalid as documented", Outcome::InvalidAsDocumented),
        ("tied to the documenting machine", Outcome::Tied),
        ("refused by QEMU", Outcome::RefusedByQemu),
        (
            "the documenting machine's own values",
            Outcome::MachineSpecific,
        ),
    ] {
        let these: Vec<_> = t.ok.iter().filter(|(_, x, _)| *x == o).collect();
        println!("{what} ({}):", these.len());
        for (at, _, note) in these {
            println!("  {at}: {note}");
        }
    }
    println!(
        "with --synthesize: {} pass, {} fail",
        s_ok.len(),
        synth.failed.len() + synth.unimplemented.len()
    );
    let lost: Vec<&String> = s_ok.iter().filter(|e| !ok.contains(e)).collect();
    println!("passing only with made-up replies ({}):", lost.len());
    for e in &lost {
        println!("  {e}");
    }
    println!("answering 'not implemented' ({}):", t.unimplemented.len());
    for e in &t.unimplemented {
        println!("  {e}");
    }
    println!("failing either way ({}):", t.failed.len());
    for e in &t.failed {
        println!("  {e}");
    }
    // Every failing example is one of the documenting machine's, and each listed one fails.
    let listed = |at: &str| {
        DOCUMENTING_MACHINE
            .iter()
            .find(|(f, l, c, _)| at == format!("{f}:{l} {c}"))
    };
    let unlisted: Vec<&String> = t
        .failed
        .iter()
        .filter(|e| listed(e.split(": ").next().unwrap_or("")).is_none())
        .collect();
    assert!(unlisted.is_empty(), "failing and not listed: {unlisted:#?}");
    for (f, l, c, why) in DOCUMENTING_MACHINE {
        let at = format!("{f}:{l} {c}");
        assert!(
            t.failed.iter().any(|e| e.starts_with(&format!("{at}: "))),
            "listed as the documenting machine's ({why}) but no longer failing: {at}"
        );
    }
    // The seeds' own numbers: 88 and 148 valid examples with a request.
    assert_eq!(
        files.iter().map(|f| f.4).collect::<Vec<_>>(),
        [88, 148],
        "{files:?}"
    );
    // Every example with a request is replayed or listed unreadable.
    assert_eq!(t.replayed() + t.unreadable.len(), sum(|f| f.3));
    // Examples that pass by default pass with --synthesize too, and the
    // only examples lost are the not implemented ones.
    assert!(ok.iter().all(|e| s_ok.contains(e)));
    assert!(lost.iter().all(|e| t.unimplemented.contains(e)), "{lost:?}");
    let mut cmds: Vec<&str> = t
        .unimplemented
        .iter()
        .filter_map(|e| e.rsplit(' ').next())
        .collect();
    cmds.sort_unstable();
    cmds.dedup();
    assert_eq!(
        cmds, NOT_IMPLEMENTED,
        "commands whose examples are not implemented"
    );
    // Each example QEMU refuses is answered so.
    for (f, l, c, class, desc, _) in REFUSED_BY_QEMU {
        let at = format!("{f}:{l} {c}");
        assert!(
            t.ok.iter().any(|(e, o, n)| *e == at
                && *o == Outcome::RefusedByQemu
                && n.starts_with(&format!("{class} {desc},"))),
            "{at}: not answered {class} {desc}"
        );
    }
    // What passes today keeps passing.
    assert!(ok.len() >= 235, "{} examples pass", ok.len());
}
