//! The machine crate's modules have a direction: each uses only the modules below it.
//!
//! [`LAYERS`] lists every module of `crates/machine/src` (a file `x.rs` with its directory
//! `x/`) from the bottom up, by layer; a module may name (`crate::x`, `use crate::{x, …}`)
//! only modules of a lower layer, or of its own layer listed before it, so no two modules can
//! use each other, through any number of others. `lib.rs` (the `Machine` that holds every
//! subsystem's state and routes hooks, timers and requests to them) sits above all of them
//! and is not checked. ARCHITECTURE.md states the same table.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The modules, bottom up: `(layer, modules in order)`.
const LAYERS: &[(&str, &[&str])] = &[
    // The generated interface, the version switches, the embedded schema, the structural walk.
    ("foundation", &["api", "compat", "embedded", "shape"]),
    // The object tree and type registry, the binary's catalogue, the configuration.
    ("model", &["qom", "catalog", "config"]),
    // The device tree: plug and unplug reach the other subsystems through `Machine`'s hooks.
    ("devices", &["devices"]),
    // The subsystems' typed state and behaviour.
    (
        "subsystems",
        &[
            "fdsets",
            "identity",
            "memory",
            "input",
            "display",
            "balloon",
            "misc",
            "readline",
            "block_throttle",
            "block",
            "runstate",
            "savevm",
            "dump",
            "chardev",
            "net",
            "migration",
            "testctl",
        ],
    ),
    // The QMP handlers and their table.
    ("handlers", &["qmp"]),
    // The human monitor, over the handlers.
    ("hmp", &["hmp"]),
    // Requests, replies and events of the served interface.
    ("view", &["view"]),
];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file below `dir`.
fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The top module a file belongs to (`net/rocker.rs` → `net`), `None` for `lib.rs`.
fn module_of(file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src()).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?;
    let m = first.strip_suffix(".rs").unwrap_or(first);
    (m != "lib").then(|| m.to_string())
}

/// Source text without comments and string literals (so that prose naming a module is not a
/// use of it).
fn code_only(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'/' && b.get(i + 1) == Some(&b'/') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
            i += 2;
            while i + 1 < b.len() && !(b[i] == b'*' && b[i + 1] == b'/') {
                i += 1;
            }
            i += 2;
        } else if b[i] == b'"' && (i == 0 || b[i - 1] != b'\'') {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.push_str("\"\"");
        } else {
            out.push(b[i] as char);
            i += 1;
        }
    }
    out
}

/// The modules of the crate that `code` names: `crate::x` and the names at the top of
/// `use crate::{x, y::…}`.
fn uses(code: &str, modules: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    let mut push = |name: &str| {
        if modules.contains(&name) && !out.iter().any(|o| o == name) {
            out.push(name.to_string());
        }
    };
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // Top-level names of the group: words at depth 0.
            let mut depth = 0;
            let mut word = String::new();
            for c in group.chars() {
                if c.is_alphanumeric() || c == '_' {
                    word.push(c);
                    continue;
                }
                if depth == 0 && !word.is_empty() {
                    push(&word);
                }
                word.clear();
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    _ => {}
                }
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            push(&name);
        }
    }
    out
}

/// Each module's rank: `(layer index, position)`.
fn ranks() -> BTreeMap<&'static str, (usize, usize)> {
    let mut out = BTreeMap::new();
    for (li, (_, mods)) in LAYERS.iter().enumerate() {
        for (pi, m) in mods.iter().enumerate() {
            assert!(out.insert(*m, (li, pi)).is_none(), "{m} listed twice");
        }
    }
    out
}

#[test]
fn every_module_uses_only_modules_below_it() {
    let ranks = ranks();
    let modules: Vec<&str> = ranks.keys().copied().collect();
    let mut all = Vec::new();
    files(&src(), &mut all);
    let mut failures = Vec::new();
    let mut edges = 0;
    for f in &all {
        let Some(m) = module_of(f) else { continue };
        let Some(&(layer, pos)) = ranks.get(m.as_str()) else {
            failures.push(format!("{}: module {m} is not in LAYERS", f.display()));
            continue;
        };
        if m == "api" {
            continue; // generated
        }
        let text = std::fs::read_to_string(f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        for used in uses(&code_only(&text), &modules) {
            if used == m {
                continue;
            }
            edges += 1;
            let (ul, up) = ranks[used.as_str()];
            if (ul, up) > (layer, pos) {
                let what = if ul > layer {
                    format!("of the higher layer {}", LAYERS[ul].0)
                } else {
                    format!("listed after it in layer {}", LAYERS[ul].0)
                };
                failures.push(format!(
                    "{}: {m} uses {used}, {what}",
                    f.strip_prefix(src()).unwrap_or(f).display()
                ));
            }
        }
    }
    // Every module of LAYERS exists.
    for m in &modules {
        let file = src().join(format!("{m}.rs"));
        let dir = src().join(m).join("mod.rs");
        assert!(
            file.is_file() || dir.is_file(),
            "LAYERS lists {m}, which has no {m}.rs"
        );
    }
    assert!(
        edges > 60,
        "only {edges} uses found: is the scan still reading the sources?"
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_scan_sees_uses_in_every_spelling() {
    let mods = ["net", "qmp", "config", "block"];
    let code = code_only(
        "use crate::net::rocker;\n\
         // crate::config is only named here\n\
         let s = \"crate::config\";\n\
         crate::qmp::block_node::report(m);\n\
         use crate::{api, block::{self, qerr}, Machine};",
    );
    assert_eq!(uses(&code, &mods), ["net", "qmp", "block"]);
}
