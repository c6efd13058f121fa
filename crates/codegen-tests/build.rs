//! Generates the bindings the tests use, from the schemas in `tests/data` and `schema/`, and
//! from a live qemu-storage-daemon's `query-qmp-schema` answer when one runs here (the saved
//! answer of qemu-storage-daemon 10.0.2 otherwise; `QSD_SCHEMA_SOURCE` tells which).
//!
//! For each schema, beside the bindings, a table of its commands (`COMMANDS`: name, and
//! functions that round-trip arguments and replies through the generated types) lets the
//! tests check recorded traffic against the types.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest.join("../..");
    let data = root.join("tests/data");
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=../codegen/src");
    println!("cargo:rerun-if-changed=../../schema");
    println!("cargo:rerun-if-env-changed=PATH");
    let x86 = cfg(&data.join("qemu-ref/introspection/cfg-qemu-system-x86_64-7.2.22.txt"));
    let intro = data.join("qemu-ref/introspection");
    if std::env::var_os("CARGO_FEATURE_ALL").is_some() {
        all(&out, &root, &data, &intro, x86);
    }
    // The storage daemon that runs here, if any.
    let saved = intro.join("qemu-storage-daemon-10.0.2-query-qmp-schema.json");
    let (path, source) = match live_qsd_schema(&out) {
        Some(p) => (p, "live"),
        None => (saved, "saved"),
    };
    gen(&out, "qsd_10_0_2", &path, HashSet::new());
    println!("cargo:rustc-env=QSD_SCHEMA_SOURCE={source}");
}

fn all(out: &Path, root: &Path, data: &Path, intro: &Path, x86: HashSet<String>) {
    let out = out.to_path_buf();
    gen(
        &out,
        "seed_2_12",
        &data.join("seeds/qemu-2.12-dev/qapi-schema.json"),
        HashSet::new(),
    );
    gen(
        &out,
        "qsd_7_2_22",
        &intro.join("qemu-storage-daemon-7.2.22-query-qmp-schema.json"),
        HashSet::new(),
    );
    gen(
        &out,
        "system_7_2_22",
        &intro.join("qemu-system-x86_64-7.2.22-query-qmp-schema.json"),
        HashSet::new(),
    );
    gen(
        &out,
        "system_10_0_2",
        &data.join("qemu-ref/schema-10.0.2/qapi/qapi-schema.json"),
        x86,
    );
    gen(
        &out,
        "machine",
        &root.join("schema/qapi-schema.json"),
        HashSet::new(),
    );
    // The storage daemon that runs here, if any.
    let saved = intro.join("qemu-storage-daemon-10.0.2-query-qmp-schema.json");
    let (path, source) = match live_qsd_schema(&out) {
        Some(p) => (p, "live"),
        None => (saved, "saved"),
    };
    gen(&out, "qsd_10_0_2", &path, HashSet::new());
    println!("cargo:rustc-env=QSD_SCHEMA_SOURCE={source}");
}

fn cfg(p: &Path) -> HashSet<String> {
    let text = std::fs::read_to_string(p).unwrap_or_default();
    qmpkit_schema::introspect::parse_cfg_file(&text)
        .into_iter()
        .collect()
}

fn gen(out: &Path, module: &str, schema: &Path, cfg: HashSet<String>) {
    println!("cargo:rerun-if-changed={}", schema.display());
    let s = match qmpkit_schema::load_any(schema, None) {
        Ok((s, _)) => s,
        Err(e) => panic!("{}: {e}", schema.display()),
    };
    let opts = qmpkit_codegen::Options {
        cfg,
        docs: false,
        source_name: schema.file_name().map(|n| n.to_string_lossy().into_owned()),
        ..Default::default()
    };
    let code = qmpkit_codegen::generate(&s, &opts);
    let table = command_table(&code);
    std::fs::write(out.join(format!("{module}.rs")), code + &table).unwrap();
}

/// `COMMANDS`: every command's name with its struct's round-trip functions, found in the
/// generated code (`impl ::qmpkit_qapi::Command for T {` then `const NAME … = "n";`).
fn command_table(code: &str) -> String {
    let mut t = String::from(
        "\n/// Every command: name, round trip of its arguments, round trip of its reply.\n#[allow(deprecated)]\npub const COMMANDS: &[(&str, crate::RoundTrip, crate::RoundTrip)] = &[\n",
    );
    let mut lines = code.lines();
    while let Some(l) = lines.next() {
        if let Some(rest) = l.strip_prefix("impl ::qmpkit_qapi::Command for ") {
            let ty = rest.trim_end_matches(" {");
            let name = lines
                .next()
                .and_then(|n| n.split('"').nth(1))
                .unwrap_or_default();
            t.push_str(&format!(
                "    ({name:?}, crate::args::<{ty}>, crate::reply::<{ty}>),\n"
            ));
        }
    }
    t.push_str("];\n");
    t
}

/// Ask `qemu-storage-daemon` (QMP on its standard input and output) for its schema.
fn live_qsd_schema(out: &Path) -> Option<PathBuf> {
    let mut child = Command::new("qemu-storage-daemon")
        .args(["--chardev", "stdio,id=m0", "--monitor", "chardev=m0"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let mut stdin = child.stdin.take()?;
    let stdout = child.stdout.take()?;
    // A daemon that does not answer in time is killed (its output then ends).
    let pid = child.id();
    std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_secs(20));
        let _ = Command::new("kill")
            .args(["-9", &pid.to_string()])
            .stderr(Stdio::null())
            .status();
    });
    let _ = stdin
        .write_all(b"{\"execute\": \"qmp_capabilities\"}\n{\"execute\": \"query-qmp-schema\"}\n");
    let _ = stdin.flush();
    let mut answer = None;
    for line in BufReader::new(stdout).lines().take(4) {
        let Ok(line) = line else { break };
        if line.contains("\"meta-type\"") {
            answer = Some(line);
            break;
        }
    }
    let _ = stdin.write_all(b"{\"execute\": \"quit\"}\n");
    drop(stdin);
    let _ = child.kill();
    let _ = child.wait();
    let p = out.join("qsd-live-query-qmp-schema.json");
    std::fs::write(&p, answer?).ok()?;
    Some(p)
}
