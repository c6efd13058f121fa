//! The catalogue of QEMU 10.0.2's x86_64 build, as a machine claiming that version
//! answers from it:
//!
//! * every request of libvirt's recorded capability probe (both passes, KVM and TCG) gets
//!   the recorded answer, or a difference listed in [`DIFFERENCES`] with its reason;
//! * requests the recording never had (other `implements` values, abstract types, device
//!   types libvirt did not ask about, unknown and non-device types, bad CPU models) get the
//!   values written here, and, where `qemu-system-x86_64` 10.0.2 is installed, exactly what
//!   it answers (a sweep over a sample of the types and CPU models, both accelerators);
//! * the binary's modules load when the real binary loads them (type look-ups,
//!   `qom-list-types`, options on the command line), and what they bring appears then.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use qmpkit_machine::{Machine, MachineConfig};
use serde_json::{json, Value};

/// Differences from the recording that remain, each with why. Entries are
/// `(command, JSON pointer into the reply, why)`.
const DIFFERENCES: &[(&str, &str, &str)] = &[(
    "query-cpu-model-expansion",
    "/return/deprecated-props",
    "the served schema's member exists only in s390x builds (`if: TARGET_S390X`); the \
         machine's view fits replies to the schema without applying build symbols, so the \
         emulator adds `[]` where the x86_64 binary leaves the member out",
)];

fn schema_10() -> Arc<qmpkit_schema::Schema> {
    let p = qmpkit_testkit::data::path("qemu-ref/schema-10.0.2/qapi/qapi-schema.json");
    Arc::new(qmpkit_schema::load(&p, qmpkit_schema::Dialect::Modern).expect("10.0.2 schema"))
}

/// A machine as `qmpkit emulate` makes it: QEMU 10.0.2, `-machine none`-free defaults,
/// KVM or TCG; under KVM, answering as the host the catalogue was recorded on (as the
/// recorded probe ran there).
fn emulator(schema: &Arc<qmpkit_schema::Schema>, kvm: bool) -> Machine {
    emulator_on(schema, kvm, true)
}

/// The same, under KVM answering as the host the catalogue was recorded on
/// (`recorded_host`) or as this host's `/dev/kvm` says (as the real binary here does).
fn emulator_on(schema: &Arc<qmpkit_schema::Schema>, kvm: bool, recorded_host: bool) -> Machine {
    let mut c = MachineConfig::default_machine();
    c.qemu_version = (10, 0, 2);
    c.machine_type = "pc-i440fx-10.0".into();
    c.cpu_model = "qemu64".into();
    c.kvm = kvm;
    c.kvm_recorded_host = recorded_host;
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

/// Member `key` of each element of a reply's list.
fn members(reply: &Value, key: &str) -> Vec<String> {
    reply["return"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|t| t[key].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
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
    // One process per pass, as libvirt runs them: what a request loads (modules) stays
    // loaded for the next.
    let mut machines = [emulator(&schema, false), emulator(&schema, true)];
    for e in &rec {
        let kvm = e["accel"] == "kvm";
        let cmd = e["execute"].as_str().expect("execute");
        let args = match &e["arguments"] {
            Value::Null => json!({}),
            a => a.clone(),
        };
        let m = &mut machines[usize::from(kvm)];
        let mine = ask(m, cmd, &args);
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
    let names = |v: &Value| members(v, "name");
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

/// Requests whose answers depend on which modules the binary has loaded, in an order that
/// loads them step by step: a look-up of a module's type by name loads it (and what it
/// needs), `qom-list-types` loads every module. Each sequence starts from a fresh process
/// with the given extra options (compared with the real binary by
/// `agrees_with_the_real_binary`).
fn module_sequences() -> Vec<(Vec<&'static str>, Vec<(&'static str, Value)>)> {
    let options = || ("query-command-line-options", json!({}));
    let spice = || ("query-command-line-options", json!({"option": "spice"}));
    let qlp = |t: &str| ("qom-list-properties", json!({ "typename": t }));
    let dlp = |t: &str| ("device-list-properties", json!({ "typename": t }));
    vec![
        (
            vec![],
            vec![
                options(),
                spice(),
                qlp("pci-qxl"),
                dlp("qxl"),
                options(),
                qlp("pci-qxl"),
                qlp("virtio-gpu-pci-base-type"),
                qlp("virtio-gpu-gl-pci-base-type"),
                dlp("virtio-gpu-gl-pci"),
                qlp("virtio-gpu-pci-base-type"),
                qlp("virtio-gpu-gl-pci-base-type"),
                qlp("dbus-display"),
                ("query-chardev-backends", json!({})),
                ("qom-list-types", json!({"implements": "chardev-spice"})),
                qlp("dbus-display"),
                ("query-chardev-backends", json!({})),
            ],
        ),
        (
            vec!["-spice", "port=0,disable-ticketing=on"],
            vec![
                spice(),
                qlp("pci-qxl"),
                ("query-chardev-backends", json!({})),
                qlp("chardev-spicevmc"),
                ("query-chardev-backends", json!({})),
            ],
        ),
    ]
}

#[test]
fn modules_load_as_the_binary_loads_them() {
    let schema = schema_10();
    let option_names = |v: &Value| members(v, "option");
    let not_found = |t: &str| json!({"error": {"class": "DeviceNotFound", "desc": format!("Class '{t}' not found")}});
    let seqs = module_sequences();
    let mut m = emulator(&schema, true);
    let answers: Vec<Value> = seqs[0]
        .1
        .iter()
        .map(|(cmd, args)| ask(&mut m, cmd, args))
        .collect();
    let fresh = option_names(&answers[0]);
    assert_eq!(fresh.len(), 36);
    assert!(!fresh.contains(&"spice".to_string()));
    assert_eq!(
        answers[1],
        json!({"error": {"class": "GenericError", "desc": "invalid option name: spice"}})
    );
    assert_eq!(answers[2], not_found("pci-qxl"));
    // qxl's module brings the spice core (option `spice`) and pci-qxl.
    assert!(answers[3]["return"].is_array(), "{}", answers[3]);
    let loaded = option_names(&answers[4]);
    assert_eq!(loaded.len(), 37);
    assert_eq!(loaded[..2], ["machine", "spice"]);
    assert!(answers[5]["return"].is_array(), "{}", answers[5]);
    assert_eq!(answers[6], not_found("virtio-gpu-pci-base-type"));
    assert_eq!(answers[7], not_found("virtio-gpu-gl-pci-base-type"));
    assert!(answers[9]["return"].is_array(), "{}", answers[9]);
    assert!(answers[10]["return"].is_array(), "{}", answers[10]);
    assert_eq!(answers[11], not_found("dbus-display"));
    // Chardev back ends: those of the modules loaded so far (qxl's module and the spice
    // core bring none; spice's chardev module, braille's and dbus's are not loaded).
    assert_eq!(members(&answers[12], "name").len(), 18);
    assert!(answers[14]["return"].is_array(), "{}", answers[14]);
    assert_eq!(members(&answers[15], "name").len(), 22);

    // `-spice` on the command line loads the spice core, not qxl's module.
    let mut c = MachineConfig::default_machine();
    c.qemu_version = (10, 0, 2);
    c.options.push(qmpkit_machine::config::OptionConfig {
        name: "spice".into(),
        value: Some("port=0,disable-ticketing=on".into()),
    });
    let mut m = Machine::new(Arc::new(c), schema.clone());
    let spice = ask(
        &mut m,
        "query-command-line-options",
        &json!({"option": "spice"}),
    );
    assert_eq!(spice["return"][0]["option"], "spice");
    assert_eq!(
        ask(
            &mut m,
            "qom-list-properties",
            &json!({"typename": "pci-qxl"})
        ),
        not_found("pci-qxl")
    );
}

/// `migrate-set-capabilities` requests, each followed by one that turns everything off
/// again: each single capability, and `n` combinations of two to six drawn with `seed`
/// (compared with the real binary by `agrees_with_the_real_binary`).
fn capability_requests(n: usize, seed: u64) -> Vec<Value> {
    let names = [
        "xbzrle",
        "rdma-pin-all",
        "auto-converge",
        "zero-blocks",
        "events",
        "postcopy-ram",
        "x-colo",
        "release-ram",
        "return-path",
        "pause-before-switchover",
        "multifd",
        "dirty-bitmaps",
        "postcopy-blocktime",
        "late-block-activate",
        "x-ignore-shared",
        "validate-uuid",
        "background-snapshot",
        "zero-copy-send",
        "postcopy-preempt",
        "switchover-ack",
        "dirty-limit",
        "mapped-ram",
    ];
    let set = |on: &[&str], state: bool| {
        let caps: Vec<Value> = on
            .iter()
            .map(|c| json!({"capability": c, "state": state}))
            .collect();
        json!({ "capabilities": caps })
    };
    let mut rng = qmpkit_testkit::differential::Rng(seed | 1);
    let mut out = Vec::new();
    let mut push = |on: Vec<&str>| {
        out.push(set(&on, true));
        out.push(set(&names, false));
    };
    for c in names {
        push(vec![c]);
    }
    for _ in 0..n {
        let k = 2 + rng.below(5);
        let mut on: Vec<&str> = Vec::new();
        while on.len() < k {
            let c = *rng.pick(&names);
            if !on.contains(&c) {
                on.push(c);
            }
        }
        push(on);
    }
    out
}

#[test]
fn migration_capabilities_combine_as_in_qemu_10() {
    let schema = schema_10();
    let mut m = emulator(&schema, true);
    let set = |m: &mut Machine, on: &[&str]| {
        let caps: Vec<Value> = on
            .iter()
            .map(|c| json!({"capability": c, "state": true}))
            .collect();
        let r = ask(
            m,
            "migrate-set-capabilities",
            &json!({ "capabilities": caps }),
        );
        r["error"]["desc"].as_str().map(String::from)
    };
    let cases: &[(&[&str], Option<&str>)] = &[
        (&["multifd", "mapped-ram"], None),
        (
            &["zero-copy-send"],
            Some("Zero copy only available for non-compressed non-TLS multifd migration"),
        ),
        (
            &["postcopy-preempt"],
            Some("Postcopy preempt requires postcopy-ram"),
        ),
        (
            &["postcopy-ram", "x-ignore-shared", "multifd"],
            Some("Postcopy is not compatible with ignore-shared"),
        ),
        (
            &["background-snapshot", "xbzrle", "dirty-bitmaps"],
            Some("Background-snapshot is not compatible with dirty-bitmaps"),
        ),
        (
            &["dirty-limit", "auto-converge"],
            Some("dirty-limit conflicts with auto-converge either of then available currently"),
        ),
        (
            &["switchover-ack"],
            Some("Capability 'switchover-ack' requires capability 'return-path'"),
        ),
    ];
    for (on, want) in cases {
        // Starting from the state the previous request left: all off (the last failed,
        // or mapped-ram and multifd are turned off here).
        assert_eq!(set(&mut m, on).as_deref(), *want, "{on:?}");
        if want.is_none() {
            let off: Vec<Value> = on
                .iter()
                .map(|c| json!({"capability": c, "state": false}))
                .collect();
            ask(
                &mut m,
                "migrate-set-capabilities",
                &json!({ "capabilities": off }),
            );
        }
    }
    // The rules see what is already set.
    assert_eq!(set(&mut m, &["xbzrle"]), None);
    assert_eq!(
        set(&mut m, &["multifd"]).as_deref(),
        Some("Multifd is not compatible with xbzrle")
    );
    let caps = ask(&mut m, "query-migrate-capabilities", &json!({}));
    assert_eq!(
        caps["return"][10],
        json!({"capability": "multifd", "state": false})
    );
}

/// `-cpu` options and what to ask a PC machine given each (compared with the real binary
/// by `agrees_with_the_real_binary`; `Err`: the binary refuses the option, in these words).
fn cpu_cases() -> Vec<(&'static str, Result<(), &'static str>)> {
    vec![
        ("Haswell,+avx512f,-avx2", Ok(())),
        // (Not `+svm`: turning a feature on raises `level`/`xlevel` to its CPUID leaf, which
        // the catalogue does not model.)
        ("qemu64,+vmx,+smx", Ok(())),
        ("Haswell,-hle,-rtm", Ok(())),
        ("Haswell,hle=off", Ok(())),
        ("qemu64,vmx=on", Ok(())),
        ("qemu64,sse4_1=on,-sse2,model-id=hello,family=15", Ok(())),
        ("qemu64,vmx=on,-vmx", Ok(())),
        ("EPYC,+la57,+pku,pmu=on,level=13", Ok(())),
        (
            "qemu64,family=1000",
            Err("can't apply global qemu64-x86_64-cpu.family=1000: parameter 'family' can be at most 270"),
        ),
        (
            "qemu64,stepping=16",
            Err("can't apply global qemu64-x86_64-cpu.stepping=16: parameter 'stepping' can be at most 15"),
        ),
        (
            "qemu64,model=-1",
            Err("can't apply global qemu64-x86_64-cpu.model=-1: parameter 'model' can be at most 255"),
        ),
        (
            "qemu64,level=100000000000",
            Err("can't apply global qemu64-x86_64-cpu.level=100000000000: Parameter 'level' expects uint32_t"),
        ),
        (
            "qemu64,tsc-frequency=-1",
            Err("can't apply global qemu64-x86_64-cpu.tsc-frequency=-1: parameter 'tsc-frequency' can be at most 9223372036854775807"),
        ),
        (
            "qemu64,avx10-version=256",
            Err("can't apply global qemu64-x86_64-cpu.avx10-version=256: Parameter 'avx10-version' expects uint8_t"),
        ),
        (
            "qemu64,node-id=3000000000",
            Err("can't apply global qemu64-x86_64-cpu.node-id=3000000000: Parameter 'node-id' expects int32_t"),
        ),
        (
            "qemu64,family=x",
            Err("can't apply global qemu64-x86_64-cpu.family=x: Parameter 'family' expects uint64"),
        ),
        (
            "qemu64,sse4.1=maybe",
            Err("can't apply global qemu64-x86_64-cpu.sse4.1=maybe: Parameter 'sse4.1' expects 'on' or 'off'"),
        ),
        (
            "qemu64,vendor=abc",
            Err("can't apply global qemu64-x86_64-cpu.vendor=abc: value of property 'vendor' must consist of exactly 12 characters"),
        ),
        (
            "qemu64,nosuch",
            Err("can't apply global qemu64-x86_64-cpu.nosuch=on: Property 'qemu64-x86_64-cpu.nosuch' not found"),
        ),
        ("qemu64,+nosuch", Err("Property 'qemu64-x86_64-cpu.nosuch' not found")),
        (
            "qemu64,phys-bits=100",
            Err("phys-bits should be between 32 and 52  (but is 100)"),
        ),
    ]
}

/// A PC machine of QEMU 10.0.2 under TCG with `-cpu CPU`, as the command line makes it.
fn pc_with_cpu(schema: &Arc<qmpkit_schema::Schema>, cpu: &str) -> Result<Machine, String> {
    pc_with_cpu_on(schema, cpu, false)
}

/// The same under KVM (`kvm`, answering as the host the catalogue was recorded on) or TCG.
fn pc_with_cpu_on(
    schema: &Arc<qmpkit_schema::Schema>,
    cpu: &str,
    kvm: bool,
) -> Result<Machine, String> {
    pc_with_cpu_here(schema, cpu, kvm, true)
}

/// The same, under KVM answering as the recorded host (`recorded_host`) or as this host's
/// `/dev/kvm` says.
fn pc_with_cpu_here(
    schema: &Arc<qmpkit_schema::Schema>,
    cpu: &str,
    kvm: bool,
    recorded_host: bool,
) -> Result<Machine, String> {
    let mut c = MachineConfig::default_machine();
    c.qemu_version = (10, 0, 2);
    c.machine_type = "pc-i440fx-10.0".into();
    c.kvm = kvm;
    c.kvm_recorded_host = recorded_host;
    c.apply_option("cpu", Some(cpu)).map_err(|e| e.0)?;
    c.validate().map_err(|e| e.0)?;
    Ok(Machine::new(Arc::new(c), schema.clone()))
}

/// The requests asked of a machine with each of [`cpu_cases`].
fn cpu_requests(model: &str) -> Vec<(&'static str, Value)> {
    let cpu = "/machine/unattached/device[0]";
    let mut out = vec![
        (
            "qom-get",
            json!({"path": cpu, "property": "unavailable-features"}),
        ),
        ("query-cpu-definitions", json!({})),
    ];
    for name in [model, "Haswell"] {
        for ty in ["static", "full"] {
            out.push((
                "query-cpu-model-expansion",
                json!({"type": ty, "model": {"name": name}}),
            ));
        }
    }
    out.push((
        "query-cpu-model-expansion",
        json!({"type": "full", "model": {"name": model, "props": {"sse2": true, "family": 6}}}),
    ));
    for (prop, value) in [
        ("family", json!(1000)),
        ("family", json!(270)),
        ("family", json!(-1)),
        ("model", json!(256)),
        ("stepping", json!(16)),
        ("stepping", json!(3)),
        ("tsc-frequency", json!(-1)),
        ("family", json!("x")),
    ] {
        out.push((
            "qom-set",
            json!({"path": cpu, "property": prop, "value": value}),
        ));
    }
    for prop in ["family", "model", "stepping"] {
        out.push(("qom-get", json!({"path": cpu, "property": prop})));
    }
    for (prop, value) in [
        ("level", json!(7)),
        ("sse4_1", json!(true)),
        ("xd", json!(false)),
        ("pmu", json!(true)),
        ("model-id", json!("x")),
    ] {
        out.push((
            "qom-set",
            json!({"path": cpu, "property": prop, "value": value}),
        ));
    }
    out
}

#[test]
fn cpu_options_apply_as_in_qemu_10() {
    let schema = schema_10();
    for (cpu, want) in cpu_cases() {
        match (pc_with_cpu(&schema, cpu), want) {
            (Ok(_), Ok(())) => {}
            (Err(e), Err(w)) => assert_eq!(e, w, "{cpu}"),
            (got, want) => panic!("-cpu {cpu}: {:?}, want {want:?}", got.err()),
        }
    }
    let unavailable = |cpu: &str| {
        let mut m = pc_with_cpu(&schema, cpu).expect("starts");
        ask(
            &mut m,
            "qom-get",
            &json!({"path": "/machine/unattached/device[0]", "property": "unavailable-features"}),
        )["return"]
            .clone()
    };
    assert_eq!(
        unavailable("Haswell,+avx512f,-avx2"),
        json!(["pcid", "tsc-deadline", "hle", "invpcid", "rtm", "avx512f"])
    );
    assert_eq!(unavailable("qemu64,+vmx,+svm"), json!(["vmx"]));
    assert_eq!(unavailable("qemu64,+vmx,+smx"), json!(["vmx", "smx"]));
    assert_eq!(
        unavailable("Haswell,-hle,-rtm"),
        json!(["pcid", "tsc-deadline", "invpcid"])
    );
    assert_eq!(unavailable("qemu64,vmx=on,-vmx"), json!([]));
    // A model's property applies to that model; +/- to every one.
    let mut m = pc_with_cpu(&schema, "qemu64,vmx=on,-sse2,model-id=hello").expect("starts");
    let defs = ask(&mut m, "query-cpu-definitions", &json!({}));
    let of = |name: &str| {
        defs["return"]
            .as_array()
            .and_then(|a| a.iter().find(|d| d["name"] == name))
            .map(|d| d["unavailable-features"].clone())
    };
    assert_eq!(of("qemu64"), Some(json!(["vmx"])));
    assert_eq!(
        of("Haswell"),
        Some(json!(["pcid", "tsc-deadline", "hle", "invpcid", "rtm"]))
    );
    let exp = |m: &mut Machine, name: &str, props: Value| {
        ask(
            m,
            "query-cpu-model-expansion",
            &json!({"type": "full", "model": {"name": name, "props": props}}),
        )["return"]["model"]["props"]
            .clone()
    };
    let q = exp(&mut m, "qemu64", json!({"sse2": true}));
    assert_eq!(
        (&q["sse2"], &q["vmx"], &q["model-id"]),
        (&json!(false), &json!(true), &json!("hello"))
    );
    let h = exp(&mut m, "Haswell", json!({}));
    assert_eq!((&h["sse2"], &h["vmx"]), (&json!(false), &json!(false)));
    // A vCPU's family, model, stepping and TSC frequency have ranges.
    let set = |m: &mut Machine, prop: &str, v: Value| {
        ask(
            m,
            "qom-set",
            &json!({"path": "/machine/unattached/device[0]", "property": prop, "value": v}),
        )
    };
    let err = |desc: &str| json!({"error": {"class": "GenericError", "desc": desc}});
    assert_eq!(
        set(&mut m, "family", json!(1000)),
        err("parameter 'family' can be at most 270")
    );
    assert_eq!(set(&mut m, "family", json!(270)), json!({"return": {}}));
    assert_eq!(
        set(&mut m, "family", json!("x")),
        err("Parameter 'family' expects uint64")
    );
    assert_eq!(
        set(&mut m, "tsc-frequency", json!(-1)),
        err("parameter 'tsc-frequency' can be at most 9223372036854775807")
    );
    // The others no longer change once the vCPU is realized (named canonically).
    assert_eq!(
        set(&mut m, "sse4_1", json!(true)),
        err("Attempt to set property 'sse4.1' on anonymous device (type 'qemu64-x86_64-cpu') after it was realized")
    );
    assert_eq!(set(&mut m, "model-id", json!("x")), json!({"return": {}}));
}

/// `qemu-system-x86_64 -machine none` on standard input and output. Every read waits at
/// most [`Qemu::WAIT`]; the child is killed when the session ends, however it ends.
struct Qemu {
    child: Child,
    input: ChildStdin,
    lines: mpsc::Receiver<String>,
}

impl Qemu {
    const WAIT: Duration = Duration::from_secs(20);

    fn start(accel: &str, extra: &[&str]) -> Qemu {
        Qemu::try_start(accel, extra).unwrap_or_else(|e| panic!("{e}"))
    }

    /// The binary started, or what it said on standard error when it would not start.
    fn try_start(accel: &str, extra: &[&str]) -> Result<Qemu, String> {
        let errors = std::env::temp_dir().join(format!(
            "qmpkit-catalog-{}-{:?}.err",
            std::process::id(),
            std::thread::current().id()
        ));
        let stderr = std::fs::File::create(&errors).map_err(|e| e.to_string())?;
        let mut child = Command::new("qemu-system-x86_64")
            .args(["-S", "-display", "none", "-nodefaults", "-machine", "none"])
            .args(["-accel", accel, "-qmp", "stdio"])
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("qemu-system-x86_64 starts");
        let input = child.stdin.take().expect("stdin");
        let output = BufReader::new(child.stdout.take().expect("stdout"));
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in output.lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut q = Qemu {
            child,
            input,
            lines,
        };
        // (The greeting comes when the monitor opens, before the machine is made; the
        // first reply once it is.)
        let started = !q.read().is_null() && !q.ask("qmp_capabilities", &json!({})).is_null();
        let said = std::fs::read_to_string(&errors).unwrap_or_default();
        let _ = std::fs::remove_file(&errors);
        if !started {
            let error = said.lines().filter(|l| !l.contains(": warning: ")).last();
            return Err(error.unwrap_or_default().to_string());
        }
        Ok(q)
    }

    /// The next message that is not an event (`null` once the binary is gone); a binary
    /// silent for [`Qemu::WAIT`] fails the test (and is killed on the way out).
    fn read(&mut self) -> Value {
        loop {
            match self.lines.recv_timeout(Self::WAIT) {
                Ok(line) => {
                    if let Ok(v) = serde_json::from_str::<Value>(&line) {
                        if v.get("event").is_none() {
                            return v;
                        }
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => return Value::Null,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    panic!("qemu-system-x86_64 did not answer within {:?}", Self::WAIT)
                }
            }
        }
    }

    fn ask(&mut self, cmd: &str, args: &Value) -> Value {
        let req = json!({"execute": cmd, "arguments": args});
        if writeln!(self.input, "{req}").is_err() {
            return Value::Null;
        }
        self.read()
    }
}

impl Drop for Qemu {
    fn drop(&mut self) {
        let _ = writeln!(self.input, "{}", json!({"execute": "quit"}));
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(5) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn version_ok() -> bool {
    let out = Command::new("qemu-system-x86_64").arg("--version").output();
    out.map(|o| String::from_utf8_lossy(&o.stdout).contains("version 10.0.2"))
        .unwrap_or(false)
}

/// Which of `n` items a sweep asks about: every `stride`-th from `offset`, or all under
/// `QMPKIT_CATALOG_SWEEP=full`. `QMPKIT_CATALOG_SWEEP=N` moves the sample by N (so that
/// runs with different N cover everything).
fn sample(n: usize, offset: usize) -> Vec<usize> {
    const STRIDE: usize = 4;
    let setting = std::env::var("QMPKIT_CATALOG_SWEEP").unwrap_or_default();
    if setting == "full" {
        return (0..n).collect();
    }
    let shift: usize = setting.parse().unwrap_or(0);
    (0..n)
        .filter(|i| i % STRIDE == (offset + shift) % STRIDE)
        .collect()
}

/// QOM types' property lists and `implements` values, and CPU models' expansions, asked
/// of the real binary and of the machine, under KVM and TCG: the module sequences, every
/// top-level query, and a sample of the types and models (see [`sample`]; some ten
/// seconds; the whole sweep, with `QMPKIT_CATALOG_SWEEP=full`, about two minutes).
#[test]
fn agrees_with_the_real_binary() {
    let _ = qmpkit_testkit::program_or_skip!("qemu-system-x86_64");
    if !version_ok() {
        qmpkit_testkit::skip!("qemu-system-x86_64 is not version 10.0.2");
    }
    let kvm_usable = qmpkit_machine::config::kvm_usable();
    let started = Instant::now();
    let schema = schema_10();
    let cat = qmpkit_machine::catalog::x86_64_10_0();
    let mut differ = Vec::new();
    let mut asked = 0usize;
    let mut restarts = Vec::new();
    // The binary's answer and the machine's, compared; `false` when the binary died on the
    // request (some types abort it after others were listed; it starts over).
    let mut compare = |q: &mut Qemu, m: &mut Machine, cmd: &str, args: Value| -> bool {
        let theirs = q.ask(cmd, &args);
        if theirs.is_null() {
            restarts.push(format!("{cmd} {args}"));
            return false;
        }
        asked += 1;
        let mut mine = ask(m, cmd, &args);
        // (See DIFFERENCES.)
        if let Some(o) = mine.get_mut("return").and_then(Value::as_object_mut) {
            o.remove("deprecated-props");
        }
        if theirs != mine {
            let mut d = Vec::new();
            diff(&theirs, &mine, String::new(), &mut d);
            let first: Vec<String> = d
                .iter()
                .take(2)
                .map(|p| {
                    format!(
                        "{p}: {} / {}",
                        theirs.pointer(p).unwrap_or(&Value::Null),
                        mine.pointer(p).unwrap_or(&Value::Null)
                    )
                })
                .collect();
            differ.push(format!(
                "{cmd} {args}: {} ({})",
                d.join(" "),
                first.join("; ")
            ));
        }
        true
    };
    // What loading modules changes, step by step from a fresh process.
    for (extra, seq) in module_sequences() {
        let mut q = Qemu::start("tcg", &extra);
        let mut c = MachineConfig::default_machine();
        c.qemu_version = (10, 0, 2);
        c.machine_type = "pc-i440fx-10.0".into();
        for pair in extra.chunks(2) {
            c.options.push(qmpkit_machine::config::OptionConfig {
                name: pair[0].trim_start_matches('-').into(),
                value: pair.get(1).map(|v| v.to_string()),
            });
        }
        let mut m = Machine::new(Arc::new(c), schema.clone());
        for (cmd, args) in seq {
            assert!(compare(&mut q, &mut m, cmd, args.clone()), "{cmd} {args}");
        }
    }
    // Migration capabilities combined (a new seed each run, or QMPKIT_CATALOG_SEED's).
    let seed = std::env::var("QMPKIT_CATALOG_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0)
        });
    eprintln!("migration capabilities: seed {seed}");
    let mut q = Qemu::start("tcg", &[]);
    let mut m = emulator(&schema, false);
    for args in capability_requests(150, seed) {
        assert!(compare(&mut q, &mut m, "migrate-set-capabilities", args));
    }
    drop(q);
    // `-cpu` options on a PC machine (under KVM, those the machine takes under TCG).
    let mut refused = Vec::new();
    let accels: &[(&str, bool)] = if kvm_usable {
        &[("tcg", false), ("kvm", true)]
    } else {
        &[("tcg", false)]
    };
    let cases = accels.iter().flat_map(|&(accel, kvm)| {
        cpu_cases()
            .into_iter()
            .filter(move |(_, r)| !kvm || r.is_ok())
            .map(move |(cpu, _)| (accel, kvm, cpu))
    });
    for (accel, kvm, cpu) in cases {
        let theirs = Qemu::try_start(accel, &["-machine", "pc", "-cpu", cpu]);
        let mine = pc_with_cpu_here(&schema, cpu, kvm, false);
        match (theirs, mine) {
            (Ok(mut q), Ok(mut m)) => {
                let model = cpu.split(',').next().unwrap_or_default();
                for (cmd, args) in cpu_requests(model) {
                    assert!(compare(&mut q, &mut m, cmd, args.clone()), "{cmd} {args}");
                }
            }
            (Err(e), Err(f)) if e == format!("qemu-system-x86_64: {f}") => {}
            (theirs, mine) => refused.push(format!(
                "{accel} -cpu {cpu}: the binary {:?}, the machine {:?}",
                theirs.err(),
                mine.err()
            )),
        }
    }
    for (pass, accel) in ["kvm", "tcg"].into_iter().enumerate() {
        if accel == "kvm" && !kvm_usable {
            qmpkit_testkit::skip::skip("no usable /dev/kvm: the KVM pass is not compared");
            continue;
        }
        let mut m = emulator_on(&schema, accel == "kvm", false);
        let mut q = Qemu::start(accel, &[]);
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
            assert!(compare(&mut q, &mut m, cmd, json!({})), "{cmd}");
        }
        // (This loads every module, in both.)
        let types = ask(&mut m, "qom-list-types", &json!({"abstract": true}));
        assert!(compare(
            &mut q,
            &mut m,
            "qom-list-types",
            json!({"abstract": true})
        ));
        let names = members(&types, "name");
        assert_eq!(names.len(), 849);
        // The two passes ask about different types.
        for i in sample(names.len(), pass * 2) {
            let n = &names[i];
            let mut requests = vec![
                (
                    "qom-list-types",
                    json!({"implements": n, "abstract": false}),
                ),
                ("qom-list-types", json!({"implements": n, "abstract": true})),
            ];
            // Listing these makes the real binary abort (the catalogue marks them).
            if !cat.qom().find(n).is_some_and(|t| t.aborts) {
                requests.push(("qom-list-properties", json!({ "typename": n })));
                requests.push(("device-list-properties", json!({ "typename": n })));
            }
            for (cmd, args) in requests {
                if !compare(&mut q, &mut m, cmd, args) {
                    q = Qemu::start(accel, &[]);
                    q.ask("qom-list-types", &json!({}));
                }
            }
        }
        let defs = q.ask("query-cpu-definitions", &json!({}));
        let defs = defs["return"].as_array().cloned().unwrap_or_default();
        for i in sample(defs.len(), pass * 2) {
            for ty in ["static", "full"] {
                compare(
                    &mut q,
                    &mut m,
                    "query-cpu-model-expansion",
                    json!({"type": ty, "model": {"name": defs[i]["name"]}}),
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
    eprintln!(
        "compared {asked} answers with the real binary in {:?}; it started over after: {restarts:?}",
        started.elapsed()
    );
    differ.extend(refused);
    assert!(
        differ.is_empty(),
        "{} of {asked} differ:\n{}",
        differ.len(),
        differ.join("\n")
    );
}

/// Properties of a realized vCPU read with `qom-get`: its model's values under the
/// accelerator in use, with what the accelerator cannot give read false.
const VCPU_PROPERTIES: &[&str] = &[
    "sse4.1",
    "sse4_1",
    "sse4-1",
    "pcid",
    "tsc-deadline",
    "hle",
    "rtm",
    "avx2",
    "xsave",
    "lm",
    "vmx",
    "svm",
    "x2apic",
    "hypervisor",
    "kvmclock",
    "kvm_pv_eoi",
    "level",
    "xlevel",
    "xlevel2",
    "level-func7",
    "min-level",
    "min-xlevel",
    "full-cpuid-auto-level",
    "model-id",
    "family",
    "model",
    "stepping",
    "vendor",
    "kvm",
    "pmu",
    "check",
    "enforce",
    "host-phys-bits",
    "hv-spinlocks",
    "nosuch",
];

/// A realized vCPU's properties whose values the catalogue does not hold (it records CPU
/// models' expansions, made before a vCPU is realized), with what the binary gives.
const VCPU_GAPS: &[(&str, &str)] = &[
    (
        "phys-bits",
        "realizing sets the default 0 to the physical address width (40 here)",
    ),
    ("guest-phys-bits", "realizing sets the unset value to 0"),
    (
        "ucode-rev",
        "realizing sets the vendor's microcode revision (0x100000000, 0x1000065)",
    ),
    ("die-id", "realizing places the vCPU in the topology (0)"),
    ("module-id", "realizing places the vCPU in the topology (0)"),
    (
        "hv-vendor-id",
        "realizing sets the unset value to \"Microsoft Hv\"",
    ),
    ("tsc-frequency", "under KVM, the host's TSC frequency"),
    // (The QOM tree's, not the model's.)
    (
        "type",
        "the tree stands in qemu64-x86_64-cpu for a model its registry lacks (EPYC)",
    ),
    (
        "legacy-memory",
        "a link that cannot be read (\"is not readable\"), missing from the tree",
    ),
];

/// A vCPU's properties on a PC machine with `-cpu model` under KVM or TCG.
fn vcpu_properties(schema: &Arc<qmpkit_schema::Schema>, model: &str, kvm: bool) -> Vec<Value> {
    let mut m = pc_with_cpu_on(schema, model, kvm).expect("starts");
    VCPU_PROPERTIES
        .iter()
        .map(|p| {
            let args = json!({"path": "/machine/unattached/device[0]", "property": p});
            ask(&mut m, "qom-get", &args)
        })
        .collect()
}

#[test]
fn vcpu_properties_are_the_models_as_the_accelerator_gives_them() {
    let schema = schema_10();
    let read = |model: &str, kvm: bool, prop: &str| {
        let i = VCPU_PROPERTIES.iter().position(|p| *p == prop).unwrap();
        vcpu_properties(&schema, model, kvm)[i]["return"].clone()
    };
    // TCG gives Haswell SSE 4.1 but not PCID; the recorded KVM host gives neither.
    assert_eq!(read("Haswell", false, "sse4.1"), json!(true));
    assert_eq!(read("Haswell", false, "sse4_1"), json!(true));
    assert_eq!(read("Haswell", false, "pcid"), json!(false));
    assert_eq!(read("Haswell", true, "sse4.1"), json!(false));
    assert_eq!(read("Haswell", true, "sse4_1"), json!(false));
    assert_eq!(read("Haswell", true, "tsc-deadline"), json!(true));
    assert_eq!(read("Haswell", false, "tsc-deadline"), json!(false));
    assert_eq!(read("Haswell", false, "level"), json!(13));
    assert_eq!(read("Haswell", false, "xlevel"), json!(0x8000_0008u32));
    assert_eq!(
        read("Haswell", false, "model-id"),
        json!("Intel Core Processor (Haswell)")
    );
    assert_eq!(read("Haswell", false, "vendor"), json!("GenuineIntel"));
    assert_eq!(read("Haswell", false, "model"), json!(60));

    let _ = qmpkit_testkit::program_or_skip!("qemu-system-x86_64");
    if !version_ok() {
        qmpkit_testkit::skip!("qemu-system-x86_64 is not version 10.0.2");
    }
    let kvm_usable = qmpkit_machine::config::kvm_usable();
    let mut differ = Vec::new();
    for (accel, kvm) in [("tcg", false), ("kvm", true)] {
        if kvm && !kvm_usable {
            qmpkit_testkit::skip::skip("no usable /dev/kvm: the KVM pass is not compared");
            continue;
        }
        for model in ["Haswell", "EPYC"] {
            let mut q = Qemu::start(accel, &["-machine", "pc", "-cpu", model]);
            let mut m = pc_with_cpu_here(&schema, model, kvm, false).expect("starts");
            let cpu = "/machine/unattached/device[0]";
            // Every property the binary's vCPU has that holds a plain value, and a few more.
            let listed = q.ask("qom-list", &json!({ "path": cpu }));
            let plain = listed["return"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| {
                    matches!(
                        p["type"].as_str(),
                        Some("bool" | "str" | "string" | "int" | "int32" | "int64")
                            | Some("uint8" | "uint16" | "uint32" | "uint64" | "OnOffAuto")
                    )
                });
            let mut props: Vec<String> = plain
                .filter_map(|p| p["name"].as_str().map(str::to_string))
                .collect();
            props.extend(VCPU_PROPERTIES.iter().map(|p| p.to_string()));
            assert!(props.len() > 500, "{listed}");
            for p in props {
                if VCPU_GAPS.iter().any(|(g, _)| *g == p) {
                    continue;
                }
                let args = json!({ "path": cpu, "property": p });
                let theirs = q.ask("qom-get", &args);
                let mine = ask(&mut m, "qom-get", &args);
                if theirs != mine {
                    differ.push(format!("{accel} {model} {p}: {theirs} / {mine}"));
                }
            }
        }
    }
    assert!(differ.is_empty(), "differ:\n{}", differ.join("\n"));
}

/// Under KVM, what depends on the host's CPU follows the host's KVM (here a made-up one,
/// unlike the host the catalogue was recorded on): each model's unavailable features,
/// `max`'s features, identification and CPUID levels.
#[test]
fn kvm_answers_follow_the_hosts_kvm() {
    use qmpkit_machine::catalog::host::{KvmHost, Leaf};
    use qmpkit_machine::catalog::CpuOptions;
    let cat = qmpkit_machine::catalog::x86_64_10_0();
    let cpus = cat.cpus();
    let leaf = |function: u32, regs: [u32; 4]| Leaf {
        function,
        index: 0,
        indexed: false,
        regs,
    };
    // KVM gives fpu and sse2 (leaf 1 EDX bits 0 and 26), pni and x2apic (ECX bits 0 and
    // 21), lm (0x80000001 EDX bit 29), invtsc (0x80000007 EDX bit 8), rdctl-no (bit 0 of
    // MSR 0x10a); leaf 1 ECX bit 5 (vmx) and no VMX capability MSRs.
    let host = KvmHost {
        leaves: vec![
            leaf(0, [0x10, 0, 0, 0]),
            leaf(1, [0x50657, 0, 1 | 1 << 21, 1 | 1 << 26]),
            leaf(0x8000_0000, [0x8000_0008, 0, 0, 0]),
            leaf(0x8000_0001, [0, 0, 0, 1 << 29]),
            leaf(0x8000_0007, [0, 0, 0, 1 << 8]),
        ],
        msrs: [(0x10a, 1)].into_iter().collect(),
        vendor: "GenuineIntel".into(),
        family: 6,
        model: 85,
        stepping: 7,
        model_id: "Made-up CPU @ 1.00GHz".into(),
        own: Default::default(),
    };
    let none = CpuOptions::default();
    let u = cpus
        .unavailable("qemu64", true, Some(&host), "qemu64", &none)
        .expect("qemu64");
    // (The recorded host's KVM lacks pni; this one has it, and lacks sse.)
    let recorded = cpus
        .unavailable("qemu64", true, None, "qemu64", &none)
        .expect("qemu64");
    assert_eq!(recorded, ["pni"]);
    for f in ["pni", "sse2", "fpu", "lm"] {
        assert!(!u.contains(&f.to_string()), "{f}: {u:?}");
    }
    let at = |f: &str| u.iter().position(|x| x == f);
    // In the binary's order: leaf 1 EDX, then ECX, then 0x80000001 EDX, ECX.
    assert!(at("de") < at("sse"), "{u:?}");
    assert!(at("sse") < at("cx16"), "{u:?}");
    assert!(at("cx16") < at("syscall"), "{u:?}");
    assert!(at("syscall") < at("lahf-lm"), "{u:?}");
    // `+f` of a feature KVM cannot give lists it, in its place; one it gives, not.
    let plus = CpuOptions {
        plus: vec!["avx".into(), "x2apic".into()],
        ..CpuOptions::default()
    };
    let u2 = cpus
        .unavailable("qemu64", true, Some(&host), "qemu64", &plus)
        .expect("qemu64");
    let at2 = |f: &str| u2.iter().position(|x| x == f);
    assert!(
        at2("cx16") < at2("avx") && at2("avx") < at2("syscall"),
        "{u2:?}"
    );
    assert_eq!(at2("x2apic"), None);
    // TCG does not depend on the host.
    assert_eq!(
        cpus.unavailable("qemu64", false, Some(&host), "qemu64", &none),
        cpus.unavailable("qemu64", false, None, "qemu64", &none)
    );

    let expand = |full: bool, props: Value| {
        let model = qmpkit_machine::api::CpuModelInfo {
            name: "max".into(),
            props: Some(props),
        };
        let e = cpus
            .expand(cat.qom(), true, Some(&host), full, &model, "qemu64", &none)
            .expect("expands");
        e.props.expect("props")
    };
    let s = expand(false, json!({}));
    for (p, v) in [
        ("pni", json!(true)),
        ("sse2", json!(true)),
        ("x2apic", json!(true)),
        ("lm", json!(true)),
        ("rdctl-no", json!(true)),
        ("sse", json!(false)),
        ("gfni", json!(false)),
        ("mds-no", json!(false)),
        // (Not migratable.)
        ("invtsc", json!(false)),
        ("vendor", json!("GenuineIntel")),
        ("family", json!(6)),
        ("model", json!(85)),
        ("stepping", json!(7)),
        ("model-id", json!("Made-up CPU @ 1.00GHz")),
        ("min-level", json!(16)),
        ("min-xlevel", json!(0x8000_0008u32)),
    ] {
        assert_eq!(s[p], v, "{p}");
    }
    let f = expand(true, json!({"migratable": false}));
    assert_eq!(f["invtsc"], json!(true));
    assert_eq!(f["migratable"], json!(false));
    assert_eq!(
        (&f["level"], &f["xlevel"]),
        (&json!(16), &json!(0x8000_0008u32))
    );
    // Given properties still apply over what the host gives.
    let f = expand(true, json!({"pni": false, "level": 7}));
    assert_eq!((&f["pni"], &f["level"]), (&json!(false), &json!(7)));
    assert_eq!(
        cpus.unavailable("max", true, Some(&host), "qemu64", &none),
        Some(vec![])
    );
}
