//! The catalogue of QEMU 10.0.2's x86_64 build, as a machine claiming that version
//! answers from it:
//!
//! * every request of libvirt's recorded capability probe (both passes, KVM and TCG) gets
//!   the recorded answer, or a difference listed in [`DIFFERENCES`] with its reason;
//! * requests the recording never had (other `implements` values, abstract types, device
//!   types libvirt did not ask about, unknown and non-device types, bad CPU models) get the
//!   values written here, and, where `qemu-system-x86_64` 10.0.2 is installed, exactly what
//!   it answers (a sweep over every type and CPU model, both accelerators).

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Arc;

use qmpkit_machine::{Machine, MachineConfig};
use serde_json::{json, Value};

/// Differences from the recording that remain, each with why. Entries are
/// `(command, JSON pointer into the reply, why)`.
const DIFFERENCES: &[(&str, &str, &str)] = &[
    (
        "query-cpu-model-expansion",
        "/return/deprecated-props",
        "the served schema's member exists only in s390x builds (`if: TARGET_S390X`); the \
         machine's view fits replies to the schema without applying build symbols, so the \
         emulator adds `[]` where the x86_64 binary leaves the member out",
    ),
    (
        "query-command-line-options",
        "/return",
        "the binary lists option `spice` only once its spice module is loaded, which listing \
         the properties of `qxl` does (libvirt asks that first); the catalogue answers as a \
         fresh process, without `spice`",
    ),
];

fn schema_10() -> Arc<qmpkit_schema::Schema> {
    let p = qmpkit_testkit::data::path("qemu-ref/schema-10.0.2/qapi/qapi-schema.json");
    Arc::new(qmpkit_schema::load(&p, qmpkit_schema::Dialect::Modern).expect("10.0.2 schema"))
}

/// A machine as `qmpkit emulate` makes it: QEMU 10.0.2, `-machine none`-free defaults,
/// KVM or TCG.
fn emulator(schema: &Arc<qmpkit_schema::Schema>, kvm: bool) -> Machine {
    let mut c = MachineConfig::default_machine();
    c.qemu_version = (10, 0, 2);
    c.machine_type = "pc-i440fx-10.0".into();
    c.cpu_model = "qemu64".into();
    c.kvm = kvm;
    Machine::new(Arc::new(c), schema.clone())
}

/// The machine's answer as a reply object.
fn ask(m: &mut Machine, cmd: &str, args: &Value) -> Value {
    let a = common::served_args(m, cmd, args.clone());
    let mut cx = qmpkit_machine::Cx::default();
    match m.execute(cmd, &a, &mut cx) {
        Some(Ok(v)) => json!({ "return": v }),
        Some(Err(e)) => json!({"error": {"class": e.class.as_str(), "desc": e.desc}}),
        None => json!({"error": {"class": "GenericError", "desc": "unhandled"}}),
    }
}

/// Where `a` and `b` differ: JSON pointers (objects by key, arrays by position).
fn diff(a: &Value, b: &Value, at: String, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for (k, v) in x {
                match y.get(k) {
                    Some(w) => diff(v, w, format!("{at}/{k}"), out),
                    None => out.push(format!("{at}/{k}")),
                }
            }
            out.extend(
                y.keys()
                    .filter(|k| !x.contains_key(*k))
                    .map(|k| format!("{at}/{k}")),
            );
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (v, w)) in x.iter().zip(y).enumerate() {
                diff(v, w, format!("{at}/{i}"), out);
            }
        }
        _ if a == b => {}
        _ => out.push(at),
    }
}

fn recording() -> Vec<Value> {
    let p =
        qmpkit_testkit::data::path("qemu-ref/probe/qemu-system-x86_64-10.0.2-libvirt-probe.json");
    let text = std::fs::read_to_string(p).expect("recording");
    serde_json::from_str(&text).expect("recording parses")
}

/// Strip list indexes from a pointer, for matching against [`DIFFERENCES`].
fn generic(pointer: &str) -> String {
    pointer
        .split('/')
        .filter(|s| s.parse::<usize>().is_err())
        .collect::<Vec<_>>()
        .join("/")
}

#[test]
fn recorded_probe_is_answered_natively() {
    let schema = schema_10();
    let mut found = Vec::new();
    let mut used = std::collections::BTreeSet::new();
    let rec = recording();
    assert!(rec.len() >= 49, "{}", rec.len());
    for e in &rec {
        let kvm = e["accel"] == "kvm";
        let cmd = e["execute"].as_str().expect("execute");
        let args = match &e["arguments"] {
            Value::Null => json!({}),
            a => a.clone(),
        };
        let mut m = emulator(&schema, kvm);
        let mine = ask(&mut m, cmd, &args);
        let mut d = Vec::new();
        diff(&e["reply"], &mine, String::new(), &mut d);
        for p in d {
            let g = generic(&p);
            match DIFFERENCES
                .iter()
                .position(|(c, at, _)| *c == cmd && *at == g)
            {
                Some(i) => {
                    used.insert(i);
                }
                None => found.push(format!("{} {cmd} {args}: {p}", e["accel"])),
            }
        }
        assert_eq!(
            m.view_faults.count, 0,
            "{cmd} {args}: {:?}",
            m.view_faults.first
        );
    }
    assert!(
        found.is_empty(),
        "{} differences:\n{}",
        found.len(),
        found.join("\n")
    );
    for (i, d) in DIFFERENCES.iter().enumerate() {
        assert!(used.contains(&i), "listed difference no longer seen: {d:?}");
    }
}

/// Requests the recording never had, with the answers the real binary gives (checked
/// against it by `agrees_with_the_real_binary`).
#[test]
fn answers_beyond_the_recording() {
    let schema = schema_10();
    let mut m = emulator(&schema, true);
    let names = |v: &Value| -> Vec<String> {
        v["return"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|t| t["name"].as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    let accels = ask(&mut m, "qom-list-types", &json!({"implements": "accel"}));
    assert_eq!(names(&accels), ["tcg-accel", "kvm-accel"]);
    let all_accels = ask(
        &mut m,
        "qom-list-types",
        &json!({"implements": "accel", "abstract": true}),
    );
    assert_eq!(names(&all_accels), ["tcg-accel", "kvm-accel", "accel"]);
    assert_eq!(
        ask(
            &mut m,
            "qom-list-types",
            &json!({"implements": "no-such-type"})
        ),
        json!({"return": []})
    );
    // A cast to "interface" is ambiguous for a type with two interfaces or more.
    let itf = ask(
        &mut m,
        "qom-list-types",
        &json!({"implements": "interface", "abstract": true}),
    );
    assert_eq!(names(&itf).len(), 92);
    assert!(names(&itf).contains(&"floppy-bus".to_string()));
    assert!(!names(&itf).contains(&"pci-device".to_string()));
    let all = ask(&mut m, "qom-list-types", &json!({"abstract": true}));
    assert_eq!(names(&all).len(), 849);
    assert_eq!(names(&ask(&mut m, "qom-list-types", &json!({}))).len(), 693);

    let err = |class: &str, desc: &str| json!({"error": {"class": class, "desc": desc}});
    assert_eq!(
        ask(
            &mut m,
            "device-list-properties",
            &json!({"typename": "no-such-type"})
        ),
        err("DeviceNotFound", "Device 'no-such-type' not found")
    );
    for t in [
        "memory-backend-file",
        "pci-device",
        "kvm-accel",
        "interface",
    ] {
        assert_eq!(
            ask(&mut m, "device-list-properties", &json!({"typename": t})),
            err(
                "GenericError",
                "Parameter 'typename' expects a non-abstract device type"
            ),
            "{t}"
        );
    }
    assert_eq!(
        ask(
            &mut m,
            "qom-list-properties",
            &json!({"typename": "no-such-type"})
        ),
        err("DeviceNotFound", "Class 'no-such-type' not found")
    );
    assert_eq!(
        ask(
            &mut m,
            "qom-list-properties",
            &json!({"typename": "user-creatable"})
        ),
        err("GenericError", "Parameter 'typename' expects a QOM type")
    );
    // An abstract type: its class's properties.
    assert_eq!(
        ask(
            &mut m,
            "qom-list-properties",
            &json!({"typename": "device"})
        ),
        json!({"return": [
            {"name": "type", "type": "string"},
            {"name": "parent_bus", "type": "link<bus>"},
            {"name": "realized", "type": "bool"},
            {"name": "hotplugged", "type": "bool"},
            {"name": "hotpluggable", "type": "bool"}]})
    );
    // A device libvirt never asks about.
    let e1000 = ask(
        &mut m,
        "device-list-properties",
        &json!({"typename": "e1000"}),
    );
    let mac = e1000["return"]
        .as_array()
        .and_then(|a| a.iter().find(|p| p["name"] == "mac"))
        .cloned();
    assert_eq!(
        mac,
        Some(
            json!({"name": "mac", "type": "str", "description": "Ethernet 6-byte MAC Address, example: 52:54:00:12:34:56"})
        )
    );

    assert_eq!(
        ask(
            &mut m,
            "query-cpu-model-expansion",
            &json!({"type": "static", "model": {"name": "nope"}})
        ),
        err("GenericError", "CPU model 'nope' not found")
    );
    assert_eq!(
        ask(
            &mut m,
            "query-cpu-model-expansion",
            &json!({"type": "full", "model": {"name": "qemu64", "props": {"nope": true}}})
        ),
        err(
            "GenericError",
            "Property 'qemu64-x86_64-cpu.nope' not found"
        )
    );
    assert_eq!(
        ask(
            &mut m,
            "query-cpu-model-expansion",
            &json!({"type": "full", "model": {"name": "qemu64", "props": {"sse4.1": "x"}}})
        ),
        err(
            "GenericError",
            "Invalid parameter type for 'model.props.sse4.1', expected: boolean"
        )
    );
    let exp = ask(
        &mut m,
        "query-cpu-model-expansion",
        &json!({"type": "static", "model": {"name": "qemu64", "props": {"sse4_1": true}}}),
    );
    assert_eq!(exp["return"]["model"]["props"]["sse4.1"], true);
    assert_eq!(exp["return"]["model"]["name"], "base");
    assert_eq!(
        ask(
            &mut m,
            "query-command-line-options",
            &json!({"option": "nope"})
        ),
        err("GenericError", "invalid option name: nope")
    );
    let smp = ask(
        &mut m,
        "query-command-line-options",
        &json!({"option": "smp-opts"}),
    );
    assert_eq!(smp["return"][0]["option"], "smp-opts");

    // Migration capabilities: the served version's, and settable.
    let caps = ask(&mut m, "query-migrate-capabilities", &json!({}));
    assert_eq!(caps["return"].as_array().map(Vec::len), Some(22));
    assert_eq!(
        caps["return"][10],
        json!({"capability": "multifd", "state": false})
    );
    let set = json!({"capabilities": [{"capability": "multifd", "state": true}]});
    assert_eq!(
        ask(&mut m, "migrate-set-capabilities", &set),
        json!({"return": {}})
    );
    let caps = ask(&mut m, "query-migrate-capabilities", &json!({}));
    assert_eq!(
        caps["return"][10],
        json!({"capability": "multifd", "state": true})
    );

    // A vCPU's unavailable features: the model's under the accelerator in use.
    let cpu = ask(
        &mut m,
        "qom-get",
        &json!({"path": "/machine/unattached/device[0]", "property": "unavailable-features"}),
    );
    assert_eq!(cpu, json!({"return": ["pni"]}));
    let mut t = emulator(&schema, false);
    let cpu = ask(
        &mut t,
        "qom-get",
        &json!({"path": "/machine/unattached/device[0]", "property": "unavailable-features"}),
    );
    assert_eq!(cpu, json!({"return": []}));
    assert_eq!(
        ask(&mut t, "query-named-block-nodes", &json!({})),
        json!({"return": []})
    );
}

/// `qemu-system-x86_64 -machine none` on standard input and output.
struct Qemu {
    child: Child,
    input: ChildStdin,
    output: BufReader<ChildStdout>,
}

impl Qemu {
    fn start(accel: &str) -> Qemu {
        let mut child = Command::new("qemu-system-x86_64")
            .args(["-S", "-display", "none", "-nodefaults", "-machine", "none"])
            .args(["-accel", accel, "-qmp", "stdio"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("qemu-system-x86_64 starts");
        let input = child.stdin.take().expect("stdin");
        let output = BufReader::new(child.stdout.take().expect("stdout"));
        let mut q = Qemu {
            child,
            input,
            output,
        };
        q.read();
        q.ask("qmp_capabilities", &json!({}));
        q
    }

    fn read(&mut self) -> Value {
        loop {
            let mut line = String::new();
            if self.output.read_line(&mut line).unwrap_or(0) == 0 {
                return Value::Null;
            }
            if let Ok(v) = serde_json::from_str::<Value>(&line) {
                if v.get("event").is_none() {
                    return v;
                }
            }
        }
    }

    fn ask(&mut self, cmd: &str, args: &Value) -> Value {
        let req = json!({"execute": cmd, "arguments": args});
        writeln!(self.input, "{req}").expect("write");
        self.read()
    }
}

impl Drop for Qemu {
    fn drop(&mut self) {
        let _ = writeln!(self.input, "{}", json!({"execute": "quit"}));
        let _ = self.child.wait();
    }
}

fn version_ok() -> bool {
    let out = Command::new("qemu-system-x86_64").arg("--version").output();
    out.map(|o| String::from_utf8_lossy(&o.stdout).contains("version 10.0.2"))
        .unwrap_or(false)
}

/// Every QOM type's property lists, every `implements` value, and every CPU model's
/// expansions, asked of the real binary and of the machine, under KVM and TCG. Slow (a few
/// thousand requests to the real binary): `cargo test -p qmpkit-machine --test catalog --
/// --ignored`.
#[test]
#[ignore]
fn agrees_with_the_real_binary() {
    let _ = qmpkit_testkit::program_or_skip!("qemu-system-x86_64");
    if !version_ok() {
        qmpkit_testkit::skip!("qemu-system-x86_64 is not version 10.0.2");
    }
    let kvm_usable = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok();
    let schema = schema_10();
    let cat = qmpkit_machine::catalog::x86_64_10_0();
    let mut differ = Vec::new();
    let mut asked = 0usize;
    let mut compare = |q: &mut Qemu, m: &mut Machine, cmd: &str, args: Value| {
        asked += 1;
        let theirs = q.ask(cmd, &args);
        let mut mine = ask(m, cmd, &args);
        // (See DIFFERENCES.)
        if let Some(o) = mine.get_mut("return").and_then(Value::as_object_mut) {
            o.remove("deprecated-props");
        }
        if theirs != mine {
            let mut d = Vec::new();
            diff(&theirs, &mine, String::new(), &mut d);
            differ.push(format!("{cmd} {args}: {}", d.join(" ")));
        }
    };
    for accel in ["kvm", "tcg"] {
        if accel == "kvm" && !kvm_usable {
            qmpkit_testkit::skip::skip("no usable /dev/kvm: the KVM pass is not compared");
            continue;
        }
        let mut m = emulator(&schema, accel == "kvm");
        // A fresh process per area: loading a module (a device's properties) changes what
        // the binary lists afterwards.
        let mut q = Qemu::start(accel);
        for cmd in [
            "query-machines",
            "query-cpu-definitions",
            "query-command-line-options",
            "query-migrate-capabilities",
            "query-tpm-models",
            "query-tpm-types",
            "query-sev-capabilities",
            "query-sgx-capabilities",
        ] {
            compare(&mut q, &mut m, cmd, json!({}));
        }
        let types = q.ask("qom-list-types", &json!({"abstract": true}));
        let names: Vec<String> = types["return"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|t| t["name"].as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        assert_eq!(names.len(), 849);
        for n in &names {
            for abs in [false, true] {
                compare(
                    &mut q,
                    &mut m,
                    "qom-list-types",
                    json!({"implements": n, "abstract": abs}),
                );
            }
        }
        for n in &names {
            // Listing these makes the real binary abort (the catalogue marks them).
            if cat.qom().find(n).is_some_and(|t| t.aborts) {
                continue;
            }
            compare(
                &mut q,
                &mut m,
                "qom-list-properties",
                json!({"typename": n}),
            );
            compare(
                &mut q,
                &mut m,
                "device-list-properties",
                json!({"typename": n}),
            );
        }
        drop(q);
        let mut q = Qemu::start(accel);
        let defs = q.ask("query-cpu-definitions", &json!({}));
        for d in defs["return"].as_array().cloned().unwrap_or_default() {
            for ty in ["static", "full"] {
                compare(
                    &mut q,
                    &mut m,
                    "query-cpu-model-expansion",
                    json!({"type": ty, "model": {"name": d["name"]}}),
                );
            }
        }
        for (name, props) in [
            ("qemu64", json!({"sse4_1": true, "xd": false})),
            ("Haswell", json!({"avx2": false, "model-id": "x"})),
            ("qemu64", json!({"level": "x"})),
            ("qemu64", json!({"vendor": true})),
            ("EPYC", json!({"pmu": true})),
        ] {
            for ty in ["static", "full"] {
                compare(
                    &mut q,
                    &mut m,
                    "query-cpu-model-expansion",
                    json!({"type": ty, "model": {"name": name, "props": props}}),
                );
            }
        }
    }
    eprintln!("compared {asked} answers with the real binary");
    assert!(
        differ.is_empty(),
        "{} of {asked} differ:\n{}",
        differ.len(),
        differ.join("\n")
    );
}
