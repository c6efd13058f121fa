//! The proxy's recording: one JSON object per line for every message a client sent or was sent.
//!
//! `{"t": SECONDS, "client": N, "dir": "in"|"out", "msg": MESSAGE}`: `t` is host time (seconds
//! since the Unix epoch, microsecond precision), `client` numbers the proxy's clients from 1 in
//! connection order (`null` for an event sent to every negotiated client), `in` is what the
//! client sent and `out` what it was sent. Input that was not JSON is recorded as
//! `{"t", "client", "dir": "in", "invalid": DESCRIPTION}`, and a client's hang-up as
//! `{"t", "client", "dir": "in", "eof": true}`. `qmpkit replay` reads this format.

use serde_json::{Map, Value};
use std::io::Write;
use std::sync::Mutex;

pub struct Recorder {
    out: Mutex<std::io::BufWriter<std::fs::File>>,
}

/// Seconds since the Unix epoch (microsecond precision), as a JSON number.
fn now() -> Value {
    match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => {
            let us = d.as_micros() as f64;
            serde_json::Number::from_f64(us / 1e6)
                .map(Value::Number)
                .unwrap_or(Value::Null)
        }
        Err(_) => Value::Null,
    }
}

impl Recorder {
    pub fn create(path: &std::path::Path) -> std::io::Result<Recorder> {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(Recorder {
            out: Mutex::new(std::io::BufWriter::new(f)),
        })
    }

    fn write(&self, client: Option<u64>, dir: &str, key: &str, value: Value) {
        let mut m = Map::new();
        m.insert("t".into(), now());
        m.insert(
            "client".into(),
            client.map(Value::from).unwrap_or(Value::Null),
        );
        m.insert("dir".into(), Value::String(dir.into()));
        m.insert(key.into(), value);
        let Ok(mut line) = serde_json::to_vec(&Value::Object(m)) else {
            return;
        };
        line.push(b'\n');
        let mut out = match self.out.lock() {
            Ok(g) => g,
            Err(e) => e.into_inner(),
        };
        // A recording that cannot be written must not stop the proxy.
        let _ = out.write_all(&line);
        let _ = out.flush();
    }

    /// A message, given as its text (a line from either side).
    pub fn text(&self, client: Option<u64>, dir: &str, text: &[u8]) {
        let v = serde_json::from_slice::<Value>(text)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(text).trim_end().into()));
        self.write(client, dir, "msg", v);
    }

    pub fn value(&self, client: Option<u64>, dir: &str, v: &Value) {
        self.write(client, dir, "msg", v.clone());
    }

    /// The client hung up.
    pub fn eof(&self, client: u64) {
        self.write(Some(client), "in", "eof", Value::Bool(true));
    }

    pub fn invalid(&self, client: u64, desc: &str) {
        self.write(Some(client), "in", "invalid", Value::String(desc.into()));
    }
}
