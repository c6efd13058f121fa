//! Emulator mode: the binary run as `qemu-system-x86_64` (its name, e.g. a
//! symlink) or as `qmpkit emulate …` takes QEMU's command line as
//! management tools write it and behaves as QEMU 10.0.2 for x86_64 does:
//! its version, its QMP interface (QEMU 10.0.2's schema with the x86_64
//! KVM build's configuration symbols), its option syntax and its error
//! words, with the simulated machine behind the monitors.

use std::process::ExitCode;
use std::sync::Arc;

use qmpkit_machine::config::{option_takes_value, MachineConfig};

use super::opts::ServeOptions;

/// The version an emulator reports.
pub const VERSION: (u64, u64, u64) = (10, 0, 2);

/// The name the program goes by when run as `qmpkit emulate`.
pub const DEFAULT_NAME: &str = "qemu-system-x86_64";

/// QEMU 10.0.2's schema (`qapi/`), by file name (the binary carries the model the build
/// script made of it; the tests check that model against these files).
#[cfg(test)]
const SCHEMA: &[(&str, &str)] = &[
    qapi_file!("acpi.json"),
    qapi_file!("audio.json"),
    qapi_file!("authz.json"),
    qapi_file!("block-core.json"),
    qapi_file!("block-export.json"),
    qapi_file!("block.json"),
    qapi_file!("char.json"),
    qapi_file!("common.json"),
    qapi_file!("compat.json"),
    qapi_file!("control.json"),
    qapi_file!("crypto.json"),
    qapi_file!("cryptodev.json"),
    qapi_file!("cxl.json"),
    qapi_file!("dump.json"),
    qapi_file!("ebpf.json"),
    qapi_file!("error.json"),
    qapi_file!("introspect.json"),
    qapi_file!("job.json"),
    qapi_file!("machine-common.json"),
    qapi_file!("machine-target.json"),
    qapi_file!("machine.json"),
    qapi_file!("migration.json"),
    qapi_file!("misc-target.json"),
    qapi_file!("misc.json"),
    qapi_file!("net.json"),
    qapi_file!("pci.json"),
    qapi_file!("pragma.json"),
    qapi_file!("qapi-schema.json"),
    qapi_file!("qdev.json"),
    qapi_file!("qom.json"),
    qapi_file!("replay.json"),
    qapi_file!("rocker.json"),
    qapi_file!("run-state.json"),
    qapi_file!("sockets.json"),
    qapi_file!("stats.json"),
    qapi_file!("tpm.json"),
    qapi_file!("trace.json"),
    qapi_file!("transaction.json"),
    qapi_file!("uefi.json"),
    qapi_file!("ui.json"),
    qapi_file!("vfio.json"),
    qapi_file!("virtio.json"),
    qapi_file!("yank.json"),
];

/// The build symbols of Debian's qemu-system-x86_64 10.0.2 (a KVM build),
/// derived from its own `query-qmp-schema` answer.
const CFG: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tests/data/qemu-ref/introspection/cfg-qemu-system-x86_64-10.0.2.txt"
));

/// Whether the program was started under an emulator's name (argv[0]).
pub fn invoked_as_emulator(argv0: &str) -> Option<String> {
    let base = std::path::Path::new(argv0).file_name()?.to_str()?;
    base.starts_with("qemu-system-x86_64")
        .then(|| base.to_string())
}

/// QEMU 10.0.2's checked model as the build script wrote it (the schema crate's compact
/// form, no doc comments): what [`load_schema`] returns, docs aside, without parsing and
/// checking at every start.
const MODEL: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/qemu-10.0.2.model"));

/// The `query-qmp-schema` answer for [`MODEL`] with the build symbols of [`CFG`], encoded
/// as the server writes it (the build script encoded it).
pub const QMP_SCHEMA_REPLY: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/qemu-10.0.2-qmp-schema.json"));

/// QEMU 10.0.2's schema, checked when the binary was built: read back, not parsed again.
pub fn load_prechecked() -> Result<qmpkit_schema::Schema, qmpkit_schema::QapiError> {
    qmpkit_schema::Schema::from_compact(MODEL)
}

/// QEMU 10.0.2's schema, parsed and checked.
#[cfg(test)]
pub fn load_schema() -> Result<qmpkit_schema::Schema, qmpkit_schema::QapiError> {
    let p = qmpkit_schema::MemoryProvider::from_files(SCHEMA.iter().copied());
    qmpkit_schema::load_from("qapi/qapi-schema.json", qmpkit_schema::Dialect::Modern, &p)
}

/// The build symbols served.
pub fn cfg_symbols() -> Vec<String> {
    qmpkit_schema::introspect::parse_cfg_file(CFG)
}

const HELP: &str = "\
usage: qemu-system-x86_64 [options] [disk_image]

'disk_image' is a raw hard disk image for IDE hard disk 0

This is qmpkit's simulated machine answering as QEMU 10.0.2 (x86_64): it takes
QEMU's command line (-machine, -cpu, -smp, -m, -object, -device, -blockdev,
-netdev, -chardev, -mon, -qmp, -add-fd, -daemonize, -pidfile, …) and serves
QEMU 10.0.2's QMP interface on the monitors it is given.";

/// `-machine help`: the machine types, as QEMU lists them.
const MACHINES: &str = "\
Supported machines are:
pc                   Standard PC (i440FX + PIIX, 1996) (alias of pc-i440fx-10.0)
pc-i440fx-10.0       Standard PC (i440FX + PIIX, 1996) (default)
pc-i440fx-9.2        Standard PC (i440FX + PIIX, 1996)
pc-i440fx-9.1        Standard PC (i440FX + PIIX, 1996)
pc-i440fx-9.0        Standard PC (i440FX + PIIX, 1996)
q35                  Standard PC (Q35 + ICH9, 2009) (alias of pc-q35-10.0)
pc-q35-10.0          Standard PC (Q35 + ICH9, 2009)
pc-q35-9.2           Standard PC (Q35 + ICH9, 2009)
pc-q35-9.1           Standard PC (Q35 + ICH9, 2009)
pc-q35-9.0           Standard PC (Q35 + ICH9, 2009)
isapc                ISA-only PC
none                 empty machine";

const CPUS: &str = "\
Available CPUs:
x86 486                   (alias configured by machine type)
x86 Broadwell             (alias configured by machine type)
x86 Cascadelake-Server    (alias configured by machine type)
x86 EPYC                  (alias configured by machine type)
x86 Haswell               (alias configured by machine type)
x86 IvyBridge             (alias configured by machine type)
x86 Nehalem               (alias configured by machine type)
x86 SandyBridge           (alias configured by machine type)
x86 Skylake-Client        (alias configured by machine type)
x86 Skylake-Server        (alias configured by machine type)
x86 Westmere              (alias configured by machine type)
x86 base                  base CPU model type with no features enabled
x86 host                  processor with all supported host features
x86 kvm64                 Common KVM processor
x86 max                   Enables all features supported by the accelerator in the current host
x86 qemu64                QEMU Virtual CPU version 2.5+";

/// A probe option (`-version`, `-help`, `-machine help`, …) answered on
/// standard output; `None` when `name`/`value` is not one.
fn probe(name: &str, value: Option<&str>) -> Option<String> {
    let help = matches!(value, Some("help" | "?"));
    Some(match name {
        "version" => format!(
            "QEMU emulator version {}.{}.{}\nCopyright (c) 2003-2025 Fabrice Bellard and the QEMU Project developers",
            VERSION.0, VERSION.1, VERSION.2
        ),
        "help" | "h" => HELP.to_string(),
        "machine" | "M" if help => MACHINES.to_string(),
        "cpu" if help => CPUS.to_string(),
        "accel" if help => "Accelerators supported in QEMU binary:\ntcg\nkvm".to_string(),
        _ => return None,
    })
}

/// Parse QEMU's command line into the machine's configuration; `Err` is
/// the message QEMU prints after its program name, or `Ok(Err(text))` a
/// probe's answer.
pub fn parse(args: &[String]) -> Result<Result<MachineConfig, String>, String> {
    let mut c = MachineConfig::default_machine();
    c.qemu_version = VERSION;
    c.machine_type = "pc-i440fx-10.0".into();
    c.cpu_model = "qemu64".into();
    // QEMU's own defaults: one vCPU, 128 MiB, no disks (its default drives are the CD-ROM and
    // the floppy drive).
    c.drives.retain(|d| !d.simulated);
    c.default_drives
        .retain(|id| c.drives.iter().any(|d| &d.id == id));
    c.cpus = 1;
    c.max_cpus = 1;
    c.memory_bytes = 128 << 20;
    let mut opts: Vec<(String, Option<String>)> = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        i += 1;
        // A word that is no option is the first IDE disk's image.
        if !a.starts_with('-') || a == "-" {
            opts.push(("hda".into(), Some(a.clone())));
            continue;
        }
        let name = a.strip_prefix("--").unwrap_or(&a[1..]);
        let takes = match option_takes_value(name) {
            Some(t) => t,
            None if matches!(name, "version" | "help" | "h") => false,
            None => return Err(format!("{a}: invalid option")),
        };
        let value = if takes {
            let v = args
                .get(i)
                .ok_or_else(|| format!("{a}: requires an argument"))?;
            i += 1;
            Some(v.as_str())
        } else {
            None
        };
        if let Some(text) = probe(name, value) {
            return Ok(Err(text));
        }
        opts.push((name.to_string(), value.map(str::to_string)));
    }
    c.apply_options(&opts).map_err(|e| e.0)?;
    // The aliases name this version's machine types.
    match c.machine_type.as_str() {
        "pc" => c.machine_type = "pc-i440fx-10.0".into(),
        "q35" => c.machine_type = "pc-q35-10.0".into(),
        _ => {}
    }
    // Accelerators are tried in order; KVM needs /dev/kvm.
    if c.accel.is_empty() {
        c.accel = vec!["tcg".into()];
    }
    let mut chosen = None;
    for a in &c.accel {
        if a == "kvm" && !qmpkit_machine::config::kvm_usable() {
            continue;
        }
        chosen = Some(a.clone());
        break;
    }
    match chosen {
        Some(a) => c.kvm = a == "kvm",
        None => {
            return Err(
                "Could not access KVM kernel module: No such file or directory\nfailed to initialize kvm: No such file or directory"
                    .into(),
            )
        }
    }
    c.check_fds().map_err(|e| e.0)?;
    c.validate().map_err(|e| e.0)?;
    Ok(Ok(c))
}

/// Run as the emulator `prog` with QEMU's command line `args`.
pub fn run(prog: &str, args: &[String]) -> ExitCode {
    let fail = |msg: &str| {
        for line in msg.lines() {
            eprintln!("{prog}: {line}");
        }
        ExitCode::FAILURE
    };
    let config = match parse(args) {
        Ok(Ok(c)) => c,
        Ok(Err(text)) => {
            println!("{text}");
            return ExitCode::SUCCESS;
        }
        Err(e) => return fail(&e),
    };
    let schema = match load_prechecked() {
        Ok(s) => s,
        Err(e) => return fail(&e.msg),
    };
    let o = ServeOptions::emulator(config, prog);
    super::run::serve(o, Arc::new(schema), cfg_symbols())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The model and the answer the build script wrote are what parsing and checking the
    /// embedded schema gives now.
    #[test]
    fn prechecked_model_and_answer_are_the_schemas() {
        let parsed = load_schema().expect("QEMU 10.0.2's schema loads");
        let read = load_prechecked().expect("the model reads back");
        let options = qmpkit_schema::introspect::Options {
            enabled: cfg_symbols().into_iter().collect(),
            unmask: false,
        };
        let from_parsed = qmpkit_schema::introspect::introspect(&parsed, &options);
        let from_model = qmpkit_schema::introspect::introspect(&read, &options);
        let unmasked = qmpkit_schema::introspect::Options {
            unmask: true,
            ..options
        };
        assert_eq!(
            serde_json::to_value(qmpkit_schema::introspect::introspect(&parsed, &unmasked))
                .expect("JSON"),
            serde_json::to_value(qmpkit_schema::introspect::introspect(&read, &unmasked))
                .expect("JSON")
        );
        let value = serde_json::to_value(&from_parsed).expect("JSON");
        assert_eq!(value, serde_json::to_value(&from_model).expect("JSON"));
        let mut encoded = Vec::new();
        qmpkit_wire::json::write_qemu(&qmpkit_wire::qdict::qemu_order(value), &mut encoded);
        assert!(encoded == QMP_SCHEMA_REPLY, "the encoded answer is stale");
    }
}
