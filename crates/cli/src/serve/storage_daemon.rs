//! Storage daemon mode: the binary run as `qemu-storage-daemon` (its name, e.g. a symlink)
//! or as `qmpkit storage-daemon …` takes qemu-storage-daemon 10.0's command line and behaves
//! as it does: its version and help, its option syntax and error words, and its QMP
//! interface (the daemon's schema with its build's configuration symbols), served by the
//! simulated machine without a PC machine, CPUs or guest devices: block nodes, jobs, NBD
//! exports, character devices and objects.
//!
//! Options are read as the daemon reads them: a first pass over the whole command line
//! answers `--help` and `--version` and refuses unknown options (getopt_long's words, which
//! accept a unique prefix of a long option), a second pass runs the options in order.
//! `--blockdev`, `--export`, `--nbd-server` and `--object` take QEMU's keyval syntax (dotted
//! keys, `,,` for a comma) or JSON, typed after the daemon's schema; each becomes the QMP
//! command it stands for on the machine, so that a bad option fails in the command's words.

use std::collections::HashSet;
use std::process::ExitCode;
use std::sync::Arc;

use qmpkit_machine::{Machine, MachineConfig};
use qmpkit_schema::model::{EntityId, EntityKind, Variant};
use qmpkit_schema::{Dialect, MemoryProvider, Schema};
use serde_json::{Map, Value};

use super::opts::ServeOptions;

/// The version the daemon reports.
pub const VERSION: (u64, u64, u64) = (10, 0, 2);

/// The name the program goes by when run as `qmpkit storage-daemon`.
pub const DEFAULT_NAME: &str = "qemu-storage-daemon";

/// qemu-storage-daemon 10.0.2's schema: its main file and the files it includes.
const SCHEMA: &[(&str, &str)] = &[
    (
        "storage-daemon/qapi/qapi-schema.json",
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/data/qemu-ref/schema-10.0.2/storage-daemon/qapi/qapi-schema.json"
        )),
    ),
    qapi_file!("authz.json"),
    qapi_file!("block-core.json"),
    qapi_file!("block-export.json"),
    qapi_file!("char.json"),
    qapi_file!("common.json"),
    qapi_file!("control.json"),
    qapi_file!("crypto.json"),
    qapi_file!("introspect.json"),
    qapi_file!("job.json"),
    qapi_file!("pragma.json"),
    qapi_file!("qom.json"),
    qapi_file!("sockets.json"),
    qapi_file!("transaction.json"),
];

/// The build symbols of Debian's qemu-storage-daemon 10.0.2, derived from its own
/// `query-qmp-schema` answer.
const CFG: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tests/data/qemu-ref/introspection/cfg-qemu-storage-daemon-10.0.2.txt"
));

/// Whether the program was started under the daemon's name (argv[0]).
pub fn invoked_as_storage_daemon(argv0: &str) -> Option<String> {
    let base = std::path::Path::new(argv0).file_name()?.to_str()?;
    base.starts_with("qemu-storage-daemon")
        .then(|| base.to_string())
}

/// The daemon's schema, checked.
pub fn load_schema() -> Result<Schema, qmpkit_schema::QapiError> {
    let p = MemoryProvider::from_files(SCHEMA.iter().copied());
    qmpkit_schema::load_from("storage-daemon/qapi/qapi-schema.json", Dialect::Modern, &p)
}

/// The build symbols served.
pub fn cfg_symbols() -> Vec<String> {
    qmpkit_schema::introspect::parse_cfg_file(CFG)
}

const HELP: &str = "\
Usage: qemu-storage-daemon [options]
QEMU storage daemon

  -h, --help             display this help and exit
  -T, --trace [[enable=]<pattern>][,events=<file>][,file=<file>]
                         specify tracing options
  -V, --version          output version information and exit

  --blockdev [driver=]<driver>[,node-name=<N>][,discard=ignore|unmap]
             [,cache.direct=on|off][,cache.no-flush=on|off]
             [,read-only=on|off][,auto-read-only=on|off]
             [,force-share=on|off][,detect-zeroes=on|off|unmap]
             [,driver specific parameters...]
                         configure a block backend

  --chardev <options>    configure a character device backend
                         (see the qemu(1) man page for possible options)

  --daemonize            daemonize the process, and have the parent exit
                         once startup is complete

  --export [type=]nbd,id=<id>,node-name=<node-name>[,name=<export-name>]
           [,writable=on|off][,bitmap=<name>]
                         export the specified block node over NBD
                         (requires --nbd-server)

  --export [type=]fuse,id=<id>,node-name=<node-name>,mountpoint=<file>
           [,growable=on|off][,writable=on|off][,allow-other=on|off|auto]
                         export the specified block node over FUSE

  --export [type=]vhost-user-blk,id=<id>,node-name=<node-name>,
           addr.type=unix,addr.path=<socket-path>[,writable=on|off]
           [,logical-block-size=<block-size>][,num-queues=<num-queues>]
                         export the specified block node as a
                         vhost-user-blk device over UNIX domain socket
  --export [type=]vhost-user-blk,id=<id>,node-name=<node-name>,
           addr.type=fd,addr.str=<fd>[,writable=on|off]
           [,logical-block-size=<block-size>][,num-queues=<num-queues>]
                         export the specified block node as a
                         vhost-user-blk device over file descriptor

  --export [type=]vduse-blk,id=<id>,node-name=<node-name>
           ,name=<vduse-name>[,writable=on|off]
           [,num-queues=<num-queues>][,queue-size=<queue-size>]
           [,logical-block-size=<logical-block-size>]
           [,serial=<serial-number>]
                         export the specified block node as a
                         vduse-blk device

  --monitor [chardev=]name[,mode=control][,pretty[=on|off]]
                         configure a QMP monitor

  --nbd-server addr.type=inet,addr.host=<host>,addr.port=<port>
               [,tls-creds=<id>][,tls-authz=<id>][,max-connections=<n>]
  --nbd-server addr.type=unix,addr.path=<path>
               [,tls-creds=<id>][,tls-authz=<id>][,max-connections=<n>]
                         start an NBD server for exporting block nodes

  --object help          list object types that can be added
  --object <type>,help   list properties for the given object type
  --object <type>[,<property>=<value>...]
                         create a new object of type <type>, setting
                         properties in the order they are specified. Note
                         that the 'id' property must be set.
                         See the qemu(1) man page for documentation of the
                         objects that can be added.

  --pidfile <path>       write process ID to a file after startup

See <https://qemu.org/contribute/report-a-bug> for how to report bugs.
More information on the QEMU project at <https://qemu.org>.";

/// The long options and whether each takes an argument.
const LONG: &[(&str, bool)] = &[
    ("blockdev", true),
    ("chardev", true),
    ("daemonize", false),
    ("export", true),
    ("help", false),
    ("monitor", true),
    ("nbd-server", true),
    ("object", true),
    ("pidfile", true),
    ("trace", true),
    ("version", false),
];

/// One word of the command line, read as getopt_long reads it.
#[derive(Debug, Clone, PartialEq)]
enum Word {
    /// An option (its long name) with its argument; `label` is how the daemon names the
    /// option in messages (the words as given).
    Opt {
        name: &'static str,
        value: Option<String>,
        label: String,
    },
    /// A word that is no option.
    Arg(String),
}

/// Split the command line into options and other words; `Err` is getopt's message.
fn words(args: &[String]) -> Result<Vec<Word>, String> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        i += 1;
        if !a.starts_with('-') || a == "-" {
            out.push(Word::Arg(a.clone()));
            continue;
        }
        // `--` ends the options; the daemon reads nothing after it.
        if a == "--" {
            break;
        }
        if let Some(body) = a.strip_prefix("--") {
            let (key, inline) = match body.split_once('=') {
                Some((k, v)) => (k, Some(v.to_string())),
                None => (body, None),
            };
            // A unique prefix names the option (every prefix is unique here).
            let found = LONG
                .iter()
                .find(|(n, _)| *n == key)
                .or_else(|| {
                    let m: Vec<_> = LONG.iter().filter(|(n, _)| n.starts_with(key)).collect();
                    (m.len() == 1).then(|| m[0])
                })
                .filter(|_| !key.is_empty());
            let Some(&(name, takes)) = found else {
                return Err(format!("unrecognized option '{a}'"));
            };
            let value = match (takes, inline) {
                (false, Some(_)) => {
                    return Err(format!("option '--{name}' doesn't allow an argument"))
                }
                (false, None) => None,
                (true, Some(v)) => Some(v),
                (true, None) => {
                    let v = args
                        .get(i)
                        .ok_or_else(|| format!("option '--{name}' requires an argument"))?;
                    i += 1;
                    Some(v.clone())
                }
            };
            let label = match (&value, a.contains('=')) {
                (Some(v), false) => format!("{a} {v}"),
                _ => a.clone(),
            };
            out.push(Word::Opt { name, value, label });
            continue;
        }
        // Short options, possibly grouped (`-hV`), `-T` with its argument attached or next.
        let chars: Vec<char> = a[1..].chars().collect();
        let mut k = 0;
        while k < chars.len() {
            let c = chars[k];
            k += 1;
            match c {
                'h' | 'V' => out.push(Word::Opt {
                    name: if c == 'h' { "help" } else { "version" },
                    value: None,
                    label: format!("-{c}"),
                }),
                'T' => {
                    let rest: String = chars[k..].iter().collect();
                    let v = if !rest.is_empty() {
                        rest
                    } else {
                        let v = args
                            .get(i)
                            .ok_or_else(|| "option requires an argument -- 'T'".to_string())?;
                        i += 1;
                        v.clone()
                    };
                    out.push(Word::Opt {
                        name: "trace",
                        label: format!("-T {v}"),
                        value: Some(v),
                    });
                    break;
                }
                _ => return Err(format!("invalid option -- '{c}'")),
            }
        }
    }
    Ok(out)
}

/// What the command line asks for.
#[derive(Debug)]
pub enum Plan {
    /// Print this on standard output and exit successfully.
    Print(String),
    /// Run the daemon.
    Run(Setup),
}

/// The daemon's configuration: the machine's, and the QMP commands its options stand for,
/// run in order before serving.
#[derive(Debug)]
pub struct Setup {
    pub config: MachineConfig,
    /// `(label, command, arguments)`: an error is reported as `label: message`.
    pub startup: Vec<(String, &'static str, Value)>,
}

/// The version text.
fn version_text() -> String {
    format!(
        "qemu-storage-daemon version {}.{}.{}\nCopyright (c) 2003-2025 Fabrice Bellard and the QEMU Project developers",
        VERSION.0, VERSION.1, VERSION.2
    )
}

/// The object types `--object help` lists (the daemon's user-creatable types).
fn object_help() -> String {
    let mut names: Vec<&str> = qmpkit_machine::qom::daemon::TYPES
        .iter()
        .filter(|t| !t.is_abstract && qmpkit_machine::qom::daemon::is_a(t.name, "user-creatable"))
        .map(|t| t.name)
        .collect();
    names.sort_unstable();
    let mut s = "List of user creatable objects:".to_string();
    for n in names {
        s.push_str("\n  ");
        s.push_str(n);
    }
    s
}

/// Why the command line is refused.
#[derive(Debug, PartialEq)]
pub enum Refusal {
    /// getopt's message, printed after the program's name as it was invoked (argv[0]).
    Getopt(String),
    /// The daemon's message, printed after its name.
    Option(String),
}

/// Read the daemon's command line.
pub fn parse(args: &[String], schema: &Schema, enabled: &HashSet<String>) -> Result<Plan, Refusal> {
    let words = words(args).map_err(Refusal::Getopt)?;
    read_options(words, schema, enabled).map_err(Refusal::Option)
}

/// The second pass: the options in order (`Err` is the daemon's message).
fn read_options(
    words: Vec<Word>,
    schema: &Schema,
    enabled: &HashSet<String>,
) -> Result<Plan, String> {
    // First pass: help and version act at once.
    for w in &words {
        if let Word::Opt { name, .. } = w {
            match *name {
                "help" => return Ok(Plan::Print(HELP.to_string())),
                "version" => return Ok(Plan::Print(version_text())),
                _ => {}
            }
        }
    }
    let mut c = MachineConfig::empty();
    c.storage_daemon = true;
    c.qemu_version = VERSION;
    c.drives.clear();
    c.devices.clear();
    c.cpus = 0;
    c.max_cpus = 0;
    c.tpm = None;
    c.vnc = None;
    c.serials.clear();
    let mut startup = Vec::new();
    for w in words {
        let (name, value, label) = match w {
            Word::Arg(a) => return Err(format!("{a}: Unexpected argument")),
            Word::Opt { name, value, label } => (name, value.unwrap_or_default(), label),
        };
        let at = |e: String| format!("{label}: {e}");
        match name {
            "daemonize" => c.daemonize = true,
            "pidfile" => c.pidfile = Some(value),
            // Tracing is not modelled: the option is accepted.
            "trace" => {}
            "chardev" => {
                let kv = qmpkit_machine::config::parse_keyval(&value, Some("backend"));
                if !kv.contains_key("id") {
                    return Err(at("chardev: no id specified".into()));
                }
                let id = &kv["id"];
                if c.chardevs.iter().any(|s| {
                    qmpkit_machine::config::parse_keyval(s, Some("backend")).get("id") == Some(id)
                }) {
                    return Err(at(format!(
                        "attempt to add duplicate property '{id}' to object (type 'container')"
                    )));
                }
                let backend = kv.get("backend").map(String::as_str).unwrap_or("");
                if !CHARDEV_BACKENDS.contains(&backend) {
                    return Err(at(format!("'{backend}' is not a valid char driver name")));
                }
                c.chardevs.push(value);
            }
            "monitor" => {
                let v = options_value(&value, Some("chardev")).map_err(at)?;
                let v = typed(schema, "MonitorOptions", &value, v).map_err(at)?;
                check(schema, enabled, "MonitorOptions", &v).map_err(at)?;
                let chardev = v["chardev"].as_str().unwrap_or_default().to_string();
                let known = c.chardevs.iter().any(|s| {
                    qmpkit_machine::config::parse_keyval(s, Some("backend"))
                        .get("id")
                        .map(String::as_str)
                        == Some(chardev.as_str())
                });
                if !known {
                    return Err(at(format!("chardev \"{chardev}\" not found")));
                }
                if v.get("mode").and_then(Value::as_str) == Some("readline") {
                    return Err(at("Only QMP monitors are supported".into()));
                }
                let mut spec = format!("chardev={chardev},mode=control");
                if v.get("pretty").and_then(Value::as_bool) == Some(true) {
                    spec.push_str(",pretty=on");
                }
                c.mon.push(spec);
            }
            "object" if value == "help" => return Ok(Plan::Print(object_help())),
            "blockdev" | "export" | "object" => {
                let (implied, ty, command) = match name {
                    "blockdev" => ("driver", "BlockdevOptions", "blockdev-add"),
                    "export" => ("type", "BlockExportOptions", "block-export-add"),
                    _ => ("qom-type", "ObjectOptions", "object-add"),
                };
                let v = options_value(&value, Some(implied)).map_err(at)?;
                let v = typed(schema, ty, &value, v).map_err(at)?;
                startup.push((label, command, v));
            }
            "nbd-server" => {
                let v = options_value(&value, None).map_err(at)?;
                let v = typed(schema, "NbdServerOptions", &value, v).map_err(at)?;
                check(schema, enabled, "NbdServerOptions", &v).map_err(at)?;
                startup.push((label, "nbd-server-start", legacy_nbd_args(v)));
            }
            _ => {}
        }
    }
    Ok(Plan::Run(Setup { config: c, startup }))
}

/// The chardev back ends the daemon's build knows.
const CHARDEV_BACKENDS: &[&str] = &[
    "file",
    "serial",
    "parallel",
    "pipe",
    "socket",
    "udp",
    "pty",
    "null",
    "mux",
    "msmouse",
    "wctablet",
    "braille",
    "testdev",
    "stdio",
    "hub",
    "ringbuf",
    "memory",
    "spicevmc",
    "spiceport",
    "qemu-vdagent",
    "dbus",
];

/// `--nbd-server`'s options (a flat socket address) as `nbd-server-start`'s arguments (the
/// address in its legacy form, the rest beside it).
fn legacy_nbd_args(v: Value) -> Value {
    let Value::Object(mut m) = v else {
        return v;
    };
    if let Some(Value::Object(mut addr)) = m.remove("addr") {
        let ty = addr.remove("type").unwrap_or(Value::Null);
        let mut legacy = Map::new();
        legacy.insert("type".into(), ty);
        legacy.insert("data".into(), Value::Object(addr));
        let mut out = Map::new();
        out.insert("addr".into(), Value::Object(legacy));
        out.extend(m);
        return Value::Object(out);
    }
    Value::Object(m)
}

/// Check `v` against the schema type `ty`, in the daemon's words.
fn check(schema: &Schema, enabled: &HashSet<String>, ty: &str, v: &Value) -> Result<(), String> {
    let Some(id) = schema.lookup_type(ty) else {
        return Ok(());
    };
    let opts = qmpkit_server::validate::ValidateOptions {
        qemu_version: Some(VERSION),
    };
    qmpkit_server::validate::validate_value(schema, id, None, v, &opts, Some(enabled))
        .map_err(|e| e.desc)
}

/// An option's value: JSON when it starts with `{`, else keyval text.
fn options_value(text: &str, implied: Option<&str>) -> Result<Value, String> {
    if is_json(text) {
        return match serde_json::from_str::<Value>(text) {
            Ok(v @ Value::Object(_)) => Ok(v),
            Ok(_) => Err("JSON object expected".into()),
            Err(_) => Err("JSON parse error, premature EOI".into()),
        };
    }
    keyval(text, implied)
}

/// Whether an option's value is JSON.
fn is_json(text: &str) -> bool {
    text.trim_start().starts_with('{')
}

/// QEMU's keyval syntax: `key=value` fields split at commas (`,,` is a comma), dotted keys
/// for nested objects, numeric key fragments for lists; the first field may leave out its
/// key (`implied`). Every value is a string.
pub fn keyval(text: &str, implied: Option<&str>) -> Result<Value, String> {
    let mut root = Map::new();
    if text.is_empty() {
        return Ok(Value::Object(root));
    }
    for (i, field) in qmpkit_wire::opts::split_options(text)
        .into_iter()
        .enumerate()
    {
        let (key, value) = match field.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None if field == "help" => return Err("Help is not available for this option".into()),
            None => match implied {
                Some(k) if i == 0 => (k.to_string(), field.clone()),
                _ => return Err(format!("Expected '=' after parameter '{field}'")),
            },
        };
        if key.is_empty() || key.split('.').any(str::is_empty) {
            return Err(format!("Invalid parameter '{key}'"));
        }
        let parts: Vec<&str> = key.split('.').collect();
        let mut cur = &mut root;
        for (k, part) in parts.iter().enumerate() {
            if k + 1 == parts.len() {
                if matches!(cur.get(*part), Some(Value::Object(_))) {
                    return Err(format!("Parameters '{key}.*' used inconsistently"));
                }
                cur.insert(part.to_string(), Value::String(value.clone()));
                break;
            }
            let e = cur
                .entry(part.to_string())
                .or_insert_with(|| Value::Object(Map::new()));
            match e {
                Value::Object(m) => cur = m,
                _ => {
                    let prefix = parts[..=k].join(".");
                    return Err(format!("Parameters '{prefix}.*' used inconsistently"));
                }
            }
        }
    }
    Ok(listify(Value::Object(root)))
}

/// Objects whose keys are all `0`, `1`, … become lists.
fn listify(v: Value) -> Value {
    match v {
        Value::Object(m) => {
            let m: Map<String, Value> = m.into_iter().map(|(k, v)| (k, listify(v))).collect();
            let n = m.len();
            if n > 0 && (0..n).all(|i| m.contains_key(&i.to_string())) {
                let mut m = m;
                Value::Array((0..n).filter_map(|i| m.remove(&i.to_string())).collect())
            } else {
                Value::Object(m)
            }
        }
        v => v,
    }
}

/// Give keyval's strings the types the schema's type `ty` wants (QEMU's keyval input
/// visitor): integers, sizes, booleans and numbers are parsed, in its words when they do not
/// parse; JSON input is left as it is.
fn typed(schema: &Schema, ty: &str, text: &str, mut v: Value) -> Result<Value, String> {
    if is_json(text) {
        return Ok(v);
    }
    if let Some(id) = schema.lookup_type(ty) {
        retype(schema, id, &mut v, "")?;
    }
    Ok(v)
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_string()
    } else {
        format!("{path}.{name}")
    }
}

fn retype(schema: &Schema, id: EntityId, v: &mut Value, path: &str) -> Result<(), String> {
    let e = schema.entity(id);
    match &e.kind {
        EntityKind::Builtin(_) => {
            let Value::String(s) = v else {
                return Ok(());
            };
            let expects = |what: &str| format!("Parameter '{path}' expects {what}");
            *v = match e.name.as_str() {
                "int" | "int8" | "int16" | "int32" | "int64" => {
                    Value::from(parse_int(s).ok_or_else(|| expects("integer"))?)
                }
                "uint8" | "uint16" | "uint32" | "uint64" => {
                    Value::from(parse_uint(s).ok_or_else(|| expects("integer"))?)
                }
                "size" => Value::from(
                    qmpkit_machine::config::parse_size(s, 1).ok_or_else(|| expects("size"))?,
                ),
                "bool" => Value::Bool(match s.as_str() {
                    "on" | "yes" | "true" | "y" => true,
                    "off" | "no" | "false" | "n" => false,
                    _ => return Err(expects("'on' or 'off'")),
                }),
                "number" => {
                    serde_json::Number::from_f64(s.parse::<f64>().map_err(|_| expects("number"))?)
                        .map(Value::Number)
                        .ok_or_else(|| expects("number"))?
                }
                _ => return Ok(()),
            };
        }
        EntityKind::Array(a) => {
            let elem = a.element;
            if let Value::Array(items) = v {
                for (i, item) in items.iter_mut().enumerate() {
                    retype(schema, elem, item, &join(path, &i.to_string()))?;
                }
            }
        }
        EntityKind::Object(o) => {
            let Value::Object(m) = v else {
                return Ok(());
            };
            for member in schema.object_members(id) {
                if let Some(x) = m.get_mut(member.name.as_str()) {
                    retype(schema, member.typ, x, &join(path, &member.name))?;
                }
            }
            if let Some(b) = &o.branches {
                let tag = m
                    .get(b.tag_name.as_str())
                    .and_then(Value::as_str)
                    .map(str::to_string);
                if let Some(var) = tag.and_then(|t| b.variants.iter().find(|x| x.name == t)) {
                    retype(schema, var.typ, v, path)?;
                }
            }
        }
        EntityKind::Alternate(a) => {
            let is = |x: &Variant, names: &[&str]| {
                names.contains(&schema.entity(x.typ).name.as_str())
                    || matches!(schema.entity(x.typ).kind, EntityKind::Enum(_))
                        && names.contains(&"str")
            };
            match v {
                Value::Object(_) => {
                    if let Some(x) = a
                        .variants
                        .iter()
                        .find(|x| matches!(schema.entity(x.typ).kind, EntityKind::Object(_)))
                    {
                        retype(schema, x.typ, v, path)?;
                    }
                }
                Value::String(_) if a.variants.iter().any(|x| is(x, &["str"])) => {}
                Value::String(_) => {
                    if let Some(x) = a
                        .variants
                        .iter()
                        .find(|x| matches!(schema.entity(x.typ).kind, EntityKind::Builtin(_)))
                    {
                        retype(schema, x.typ, v, path)?;
                    }
                }
                _ => {}
            }
        }
        _ => {}
    }
    Ok(())
}

/// An integer as QEMU's strtoll with base 0 reads it (`0x` hex, leading-zero octal).
fn parse_int(s: &str) -> Option<i64> {
    let (neg, body) = match s.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let u = parse_uint(body)? as i128;
    let n = if neg { -u } else { u };
    i64::try_from(n).ok()
}

fn parse_uint(s: &str) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        return u64::from_str_radix(h, 16).ok();
    }
    if s.len() > 1 && s.starts_with('0') {
        return u64::from_str_radix(&s[1..], 8).ok();
    }
    s.parse().ok()
}

/// Run the options' commands on the machine, in order; `Err` is the first failure as the
/// daemon reports it (with the hint QEMU prints below it on a line of its own).
pub fn start(
    m: &mut Machine,
    schema: &Schema,
    enabled: &HashSet<String>,
    startup: &[(String, &'static str, Value)],
) -> Result<(), String> {
    let opts = qmpkit_server::validate::ValidateOptions {
        qemu_version: Some(VERSION),
    };
    for (label, command, args) in startup {
        let Some(id) = schema.lookup(command) else {
            continue;
        };
        let args = qmpkit_server::validate::validate_args_cfg(
            schema,
            id,
            Some(args),
            &opts,
            Some(enabled),
        )
        .map_err(|e| format!("{label}: {}", e.desc))?;
        let mut cx = qmpkit_machine::Cx::default();
        qmpkit_machine::block::take_error_hint();
        match m.execute(command, &args, &mut cx) {
            Some(Ok(_)) => {}
            // The hint goes on a line of its own, as QEMU prints it.
            Some(Err(e)) => {
                let hint = qmpkit_machine::block::take_error_hint()
                    .map(|h| format!("\n{h}"))
                    .unwrap_or_default();
                return Err(format!("{label}: {}{hint}", e.desc));
            }
            None => {
                return Err(format!(
                    "{label}: {}",
                    qmpkit_machine::not_implemented(command).desc
                ))
            }
        }
    }
    // Nobody listens yet: what the start-up said is not sent.
    m.take_events();
    Ok(())
}

/// Run as the daemon `prog` (invoked as `argv0`) with its command line `args`.
pub fn run(prog: &str, argv0: &str, args: &[String]) -> ExitCode {
    let fail_as = |name: &str, msg: &str| {
        for line in msg.lines() {
            eprintln!("{name}: {line}");
        }
        ExitCode::FAILURE
    };
    let fail = |msg: &str| fail_as(prog, msg);
    let mut schema = match load_schema() {
        Ok(s) => s,
        Err(e) => return fail(&e.msg),
    };
    schema.docs = Vec::new();
    schema.doc_links = Vec::new();
    let cfg = cfg_symbols();
    let enabled: HashSet<String> = cfg.iter().cloned().collect();
    let setup = match parse(args, &schema, &enabled) {
        Ok(Plan::Print(text)) => {
            println!("{text}");
            return ExitCode::SUCCESS;
        }
        Ok(Plan::Run(s)) => s,
        Err(Refusal::Getopt(e)) => return fail_as(argv0, &e),
        Err(Refusal::Option(e)) => return fail(&e),
    };
    let mut o = ServeOptions::emulator(setup.config, prog);
    o.storage_daemon = Some(setup.startup);
    super::run::serve(o, Arc::new(schema), cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(v: &[&str]) -> Result<Vec<Word>, String> {
        words(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn getopt_words() {
        assert_eq!(
            w(&["--bogus"]).unwrap_err(),
            "unrecognized option '--bogus'"
        );
        assert_eq!(
            w(&["--version=1"]).unwrap_err(),
            "option '--version' doesn't allow an argument"
        );
        assert_eq!(
            w(&["--blockdev"]).unwrap_err(),
            "option '--blockdev' requires an argument"
        );
        assert_eq!(w(&["-x"]).unwrap_err(), "invalid option -- 'x'");
        assert_eq!(
            w(&["-T"]).unwrap_err(),
            "option requires an argument -- 'T'"
        );
        let v = w(&["--c", "null,id=a", "--pidfile=/p", "x"]).unwrap();
        assert_eq!(
            v[0],
            Word::Opt {
                name: "chardev",
                value: Some("null,id=a".into()),
                label: "--c null,id=a".into()
            }
        );
        assert_eq!(
            v[1],
            Word::Opt {
                name: "pidfile",
                value: Some("/p".into()),
                label: "--pidfile=/p".into()
            }
        );
        assert_eq!(v[2], Word::Arg("x".into()));
    }

    #[test]
    fn keyval_nests_and_lists() {
        assert_eq!(
            keyval("null-co,node-name=a,,b,x.y=1,l.0=p,l.1=q", Some("driver")).unwrap(),
            serde_json::json!({"driver": "null-co", "node-name": "a,b", "x": {"y": "1"}, "l": ["p", "q"]})
        );
        assert_eq!(
            keyval("a=1,a.b=2", None).unwrap_err(),
            "Parameters 'a.*' used inconsistently"
        );
        assert_eq!(parse_int("0x10"), Some(16));
        assert_eq!(parse_int("010"), Some(8));
        assert_eq!(parse_int("-5"), Some(-5));
        assert_eq!(parse_int("1k"), None);
    }
}
