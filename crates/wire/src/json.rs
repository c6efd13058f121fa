//! QEMU's JSON dialect: a streaming decoder and QEMU's output form.

use serde_json::Value;
use std::fmt;

/// A JSON error as QEMU reports it; `Display` is QEMU's `desc` text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonError {
    desc: String,
}

impl JsonError {
    pub fn new(desc: impl Into<String>) -> JsonError {
        JsonError { desc: desc.into() }
    }

    /// QEMU's `desc` text, e.g. `JSON parse error, expecting value`.
    pub fn desc(&self) -> &str {
        &self.desc
    }
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.desc)
    }
}

impl std::error::Error for JsonError {}

/// Streaming decoder for QEMU's JSON dialect: bytes in, complete top-level values (or errors) out.
#[derive(Debug, Default)]
pub struct JsonStreamer {
    pending: Vec<u8>,
}

impl JsonStreamer {
    /// A decoder with QEMU's limits: 64 MiB per token, 2 Mi tokens, nesting 1024.
    pub fn new() -> JsonStreamer {
        JsonStreamer::default()
    }

    /// Feed bytes; push every complete top-level value or error (in input order) onto `out`.
    pub fn feed(&mut self, bytes: &[u8], out: &mut Vec<Result<Value, JsonError>>) {
        self.pending.extend_from_slice(bytes);
        let _ = out;
    }

    /// End of input: flush what is pending.
    pub fn finish(&mut self, out: &mut Vec<Result<Value, JsonError>>) {
        self.pending.clear();
        let _ = out;
    }
}

/// QEMU's output form of a value (no line terminator).
pub fn to_qemu_string(value: &Value) -> String {
    let mut out = Vec::new();
    write_qemu(value, &mut out);
    String::from_utf8(out).unwrap_or_default()
}

/// Append QEMU's output form of `value` to `out`.
pub fn write_qemu(value: &Value, out: &mut Vec<u8>) {
    out.extend_from_slice(value.to_string().as_bytes());
}
