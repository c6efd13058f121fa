//! Runs the schema pipeline at build time on QEMU 10.0.2's schema (`qapi/` of
//! `tests/data/qemu-ref/schema-10.0.2`), the interface the emulator mode serves, so that an
//! emulator does not parse and check it at every start:
//!
//! - `qemu-10.0.2.model`: the checked model in the schema crate's compact form (no doc
//!   comments);
//! - `qemu-10.0.2-qmp-schema.json`: its `query-qmp-schema` answer with the x86_64 KVM build's
//!   configuration symbols, encoded as the server encodes it (QEMU's member order and
//!   formatting).
//!
//! A schema that does not load fails the build with the schema's own diagnostic.
//!
//! It also says how the binary is linked: at a fixed address, and with the code of a
//! machine's start and first session side by side (see [`link_at_fixed_address`] and
//! [`order_functions`]).

use std::path::{Path, PathBuf};

fn main() {
    let manifest = PathBuf::from(env("CARGO_MANIFEST_DIR"));
    let data = manifest.join("../../tests/data/qemu-ref");
    let dir = data.join("schema-10.0.2/qapi");
    let cfg = data.join("introspection/cfg-qemu-system-x86_64-10.0.2.txt");
    let out = PathBuf::from(env("OUT_DIR"));
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed={}", dir.display());
    println!("cargo:rerun-if-changed={}", cfg.display());
    link_at_fixed_address();
    link_unwinder_statically(&out);
    order_functions(&manifest);

    let mut files = Vec::new();
    let Ok(entries) = std::fs::read_dir(&dir) else {
        fail(&format!("cannot read {}", dir.display()));
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".json") {
            files.push((format!("qapi/{name}"), read(&entry.path())));
        }
    }
    let provider = qmpkit_schema::MemoryProvider::from_files(
        files.iter().map(|(n, t)| (n.as_str(), t.as_str())),
    );
    let schema = match qmpkit_schema::load_from(
        "qapi/qapi-schema.json",
        qmpkit_schema::Dialect::Modern,
        &provider,
    ) {
        Ok(s) => s,
        Err(e) => fail(&format!("QEMU 10.0.2's schema does not load:\n{e}")),
    };
    write(&out.join("qemu-10.0.2.model"), &schema.to_compact());

    let options = qmpkit_schema::introspect::Options {
        enabled: qmpkit_schema::introspect::parse_cfg_file(&read(&cfg))
            .into_iter()
            .collect(),
        unmask: false,
    };
    let infos = qmpkit_schema::introspect::introspect(&schema, &options);
    let value = match serde_json::to_value(&infos) {
        Ok(v) => v,
        Err(e) => fail(&format!(
            "cannot encode QEMU 10.0.2's query-qmp-schema answer: {e}"
        )),
    };
    let mut reply = Vec::new();
    qmpkit_wire::json::write_qemu(&qmpkit_wire::qdict::qemu_order(value), &mut reply);
    write(&out.join("qemu-10.0.2-qmp-schema.json"), &reply);
}

/// On Linux (glibc) the binary is linked at a fixed address rather than as a position-independent
/// executable: its read-only tables hold some fourteen thousand pointers (schema and
/// command tables, strings), which the dynamic linker would otherwise rewrite at every start,
/// copying each page it touches (about 0.4 M instructions and 400 KiB of memory per
/// process, for a program that test suites start by the hundred). The code itself is built
/// as usual; only the link differs.
fn link_at_fixed_address() {
    let var = |n: &str| std::env::var(n).unwrap_or_default();
    if var("CARGO_CFG_TARGET_OS") == "linux" && var("CARGO_CFG_TARGET_ENV") == "gnu" {
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
}

/// On Linux (glibc) the binary's unwinder (GCC's, which Rust's panics use) is linked into it
/// from `libgcc_eh.a` rather than loaded from `libgcc_s.so.1` at every start: one library
/// less for the dynamic linker to find, map, relocate and search for every other symbol, and
/// one constructor less (libgcc_s asks the processor for its features, which costs a trip
/// to the hypervisor per question on a virtual machine); some 0.1 ms of a process's start.
/// Rust names the library itself (`-lgcc_s`), so the binary's link looks first in a
/// directory where that name is the static archive. Where the C compiler has no
/// `libgcc_eh.a`, nothing changes.
fn link_unwinder_statically(out: &Path) {
    let var = |n: &str| std::env::var(n).unwrap_or_default();
    if var("CARGO_CFG_TARGET_OS") != "linux" || var("CARGO_CFG_TARGET_ENV") != "gnu" {
        return;
    }
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_string());
    let Ok(o) = std::process::Command::new(&cc)
        .arg("-print-file-name=libgcc_eh.a")
        .output()
    else {
        return;
    };
    let archive = PathBuf::from(String::from_utf8_lossy(&o.stdout).trim());
    // Without it, the compiler prints the bare name back.
    if !o.status.success() || !archive.is_absolute() || !archive.is_file() {
        return;
    }
    let dir = out.join("static-unwinder");
    let lib = dir.join("libgcc_s.a");
    if std::fs::create_dir_all(&dir).is_err() || std::fs::copy(&archive, &lib).is_err() {
        return;
    }
    println!("cargo:rustc-link-arg-bins=-L{}", dir.display());
}

/// Release builds on x86_64 Linux, which Rust (1.90 on) links with its own LLD, gather the
/// functions that `qmpkit serve` runs while starting and answering a typical session ahead of
/// the rest of the code (`link-order.ld`, a linker script written by
/// `tools/link-order/generate.py`): they would otherwise be spread over most of the binary's
/// text, and every page that a process touches maps its neighbours too (the kernel's
/// fault-around), so an idle machine held some 5 MiB of the binary where the code it runs fits
/// in 0.8 MiB. The script names functions by patterns without their per-build hashes; one
/// that matches nothing is harmless, and the script moves code, never changes it.
fn order_functions(manifest: &Path) {
    let script = manifest.join("link-order.ld");
    println!("cargo:rerun-if-changed={}", script.display());
    let var = |n: &str| std::env::var(n).unwrap_or_default();
    let own_lld = var("TARGET") == "x86_64-unknown-linux-gnu"
        && rustc_minor().is_some_and(|m| m >= 90)
        && !var("CARGO_ENCODED_RUSTFLAGS").contains("link")
        && std::env::var_os("CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER").is_none();
    if var("PROFILE") == "release" && own_lld && script.exists() {
        println!("cargo:rustc-link-arg-bins=-Wl,-T,{}", script.display());
    }
}

/// The minor version of the compiler building this crate (`rustc 1.MINOR.…`).
fn rustc_minor() -> Option<u32> {
    let rustc = std::env::var_os("RUSTC")?;
    let out = std::process::Command::new(rustc).arg("-V").output().ok()?;
    let v = String::from_utf8(out.stdout).ok()?;
    v.split_whitespace().nth(1)?.split('.').nth(1)?.parse().ok()
}

fn fail(msg: &str) -> ! {
    eprintln!("{msg}");
    std::process::exit(1);
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| fail(&format!("{name} is not set")))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| fail(&format!("cannot read {}: {e}", path.display())))
}

fn write(path: &Path, bytes: &[u8]) {
    if let Err(e) = std::fs::write(path, bytes) {
        fail(&format!("cannot write {}: {e}", path.display()));
    }
}
