//! Helpers shared by the validation and synthesis tests.
#![allow(dead_code)]

use qmpkit_schema::{Dialect, Schema};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

pub fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/validate")
}

/// Load a schema from the repository's test data (`tests/data/<rel>`).
pub fn load_data(rel: &str, dialect: Dialect) -> Schema {
    let p = qmpkit_testkit::data::path(rel);
    qmpkit_schema::load(&p, dialect).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The configuration symbols of a `cfg-*.txt` file.
pub fn cfg(rel: &str) -> HashSet<String> {
    let p = qmpkit_testkit::data::path(rel);
    std::fs::read_to_string(&p)
        .map(|t| qmpkit_schema::introspect::parse_cfg_file(&t))
        .unwrap_or_default()
        .into_iter()
        .collect()
}

/// Load a schema from text (modern dialect unless `legacy`).
pub fn schema_from(text: &str, legacy: bool) -> Schema {
    let mut m = qmpkit_schema::MemoryProvider::new();
    m.add("t.json", text);
    let d = if legacy {
        Dialect::Legacy
    } else {
        Dialect::Modern
    };
    match qmpkit_schema::load_from("t.json", d, &m) {
        Ok(s) => s,
        Err(e) => panic!("schema: {e}\n{text}"),
    }
}

/// True for the argument errors the input visitor raises (as opposed
/// to errors a command's implementation raises once its arguments are
/// accepted).
pub fn is_argument_error(desc: &str) -> bool {
    desc.starts_with("Parameter '")
        || desc.starts_with("Invalid parameter type for '")
        || desc.starts_with("QMP input object member '")
}

/// `>>> request` / `<<< response` pairs of a transcript or golden file.
pub fn exchanges(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut req: Option<String> = None;
    for line in text.lines() {
        if let Some(r) = line.strip_prefix(">>> ") {
            req = Some(r.to_string());
        } else if let Some(a) = line.strip_prefix("<<< ") {
            if let Some(r) = req.take() {
                out.push((r, a.to_string()));
            }
        }
    }
    out
}

/// Undo Python's `b'...'` repr of a transcript line.
pub fn unrepr(s: &str) -> Option<String> {
    let s = s.trim();
    let inner = s.strip_prefix("b'")?.strip_suffix('\'')?;
    let mut out = Vec::new();
    let b = inner.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 1 < b.len() {
            match b[i + 1] {
                b'n' => out.push(b'\n'),
                b'r' => out.push(b'\r'),
                b't' => out.push(b'\t'),
                b'\\' => out.push(b'\\'),
                b'\'' => out.push(b'\''),
                b'"' => out.push(b'"'),
                b'x' if i + 3 < b.len() => {
                    let h = std::str::from_utf8(&b[i + 2..i + 4]).ok()?;
                    out.push(u8::from_str_radix(h, 16).ok()?);
                    i += 2;
                }
                other => {
                    out.push(b'\\');
                    out.push(other);
                }
            }
            i += 2;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}
