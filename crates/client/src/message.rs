//! What the server sends: the greeting, events; and how reply ids are matched.

use crate::error::Error;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// `{"qemu": {"micro", "minor", "major"}, "package"}` from the greeting (and `query-version`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionInfo {
    pub qemu: VersionTriple,
    pub package: String,
}

/// QEMU's version numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionTriple {
    pub major: u64,
    pub minor: u64,
    pub micro: u64,
}

/// The server's greeting: `{"QMP": {"version": …, "capabilities": […]}}`.
#[derive(Debug, Clone, PartialEq)]
pub struct Greeting {
    pub version: VersionInfo,
    /// The capabilities the server offers (`oob`, …).
    pub capabilities: Vec<String>,
    /// The greeting as received.
    pub raw: Value,
}

impl Greeting {
    /// Read a greeting from its decoded JSON.
    pub fn from_value(raw: Value) -> Result<Greeting, Error> {
        #[derive(Deserialize)]
        struct Qmp {
            version: VersionInfo,
            capabilities: Vec<String>,
        }
        let qmp = raw
            .get("QMP")
            .ok_or_else(|| Error::Greeting(format!("no \"QMP\" member in {raw}")))?;
        let qmp: Qmp =
            Qmp::deserialize(qmp).map_err(|e| Error::Greeting(format!("{e} in {raw}")))?;
        Ok(Greeting {
            version: qmp.version,
            capabilities: qmp.capabilities,
            raw,
        })
    }

    /// True when the server offers the capability.
    pub fn offers(&self, capability: &str) -> bool {
        self.capabilities.iter().any(|c| c == capability)
    }
}

/// When the server emitted an event (host time; QEMU sends -1/-1 when it could not read the clock).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timestamp {
    pub seconds: i64,
    pub microseconds: i64,
}

/// An asynchronous event: `{"timestamp": …, "event": NAME, "data": …}`.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub event: String,
    /// `Value::Null` when the event has no `data` member.
    pub data: Value,
    pub timestamp: Timestamp,
}

impl Event {
    /// Read an event from a decoded message that has an `event` member; gives the message
    /// back when `event` is not a string.
    pub(crate) fn from_map(mut m: Map<String, Value>) -> Result<Event, Map<String, Value>> {
        let event = match m.get("event") {
            Some(Value::String(s)) => s.clone(),
            _ => return Err(m),
        };
        let timestamp = m
            .remove("timestamp")
            .and_then(|t| Timestamp::deserialize(t).ok())
            .unwrap_or(Timestamp {
                seconds: -1,
                microseconds: -1,
            });
        Ok(Event {
            event,
            data: m.remove("data").unwrap_or(Value::Null),
            timestamp,
        })
    }
}

/// What a subscription yields.
#[derive(Debug, Clone, PartialEq)]
pub enum EventItem {
    /// An event matching the subscription's filter.
    Event(Event),
    /// The subscriber fell behind: this many matching events were dropped here, in this place
    /// of the sequence (the events before and after it are intact).
    Lagged { missed: u64 },
    /// A reply no request is waiting for (no `id`, or an `id` this client never sent); only
    /// subscriptions to all events receive these.
    Unmatched(Value),
}

/// Which events a subscription receives.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum EventFilter {
    /// Every event (and unmatched replies).
    #[default]
    All,
    /// Only events with one of these names.
    Names(Vec<String>),
}

impl EventFilter {
    /// Events named `name` only.
    pub fn name(name: impl Into<String>) -> EventFilter {
        EventFilter::Names(vec![name.into()])
    }

    pub(crate) fn matches(&self, event: &str) -> bool {
        match self {
            EventFilter::All => true,
            EventFilter::Names(names) => names.iter().any(|n| n == event),
        }
    }
}

/// A reply `id` normalised so that equal JSON values match whatever their spelling
/// (`1000` and `1e3`, members in another order, `\u00e9` and `é`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum IdKey {
    Int(u64),
    Other(String),
}

impl IdKey {
    pub(crate) fn of(id: &Value) -> IdKey {
        if let Some(n) = id.as_u64() {
            return IdKey::Int(n);
        }
        let mut s = String::new();
        canonical(id, &mut s);
        IdKey::Other(s)
    }
}

fn canonical(v: &Value, out: &mut String) {
    match v {
        Value::Number(n) => {
            if let Some(i) = n.as_u64() {
                out.push_str(&i.to_string());
            } else if let Some(i) = n.as_i64() {
                out.push_str(&i.to_string());
            } else if let Some(f) = n.as_f64() {
                if f.fract() == 0.0 && (0.0..1.8e19).contains(&f) {
                    out.push_str(&(f as u64).to_string());
                } else if f.fract() == 0.0 && f < 0.0 && f > -9.2e18 {
                    out.push_str(&(f as i64).to_string());
                } else {
                    out.push_str(&format!("{f:e}"));
                }
            }
        }
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(x, out);
            }
            out.push(']');
        }
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                if let Some(x) = m.get(k) {
                    canonical(x, out);
                }
            }
            out.push('}');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// QEMU's JSON parser limits: nesting depth, tokens per message, bytes per token.
pub(crate) const MAX_NESTING: usize = 1024;
pub(crate) const MAX_TOKENS: u64 = 2 << 20;
pub(crate) const MAX_TOKEN_BYTES: usize = 64 << 20;

/// Check that a value placed at `depth` (the number of containers around it) stays within the
/// server's parser limits; returns the number of tokens it adds.
/// Iterative, so that hostile nesting cannot exhaust the stack.
pub(crate) fn check_limits(v: &Value, depth: usize) -> Result<u64, String> {
    let mut tokens: u64 = 0;
    let mut stack: Vec<(&Value, usize)> = vec![(v, depth)];
    while let Some((v, d)) = stack.pop() {
        match v {
            Value::Array(a) => {
                if d + 1 > MAX_NESTING {
                    return Err(format!("nesting deeper than {MAX_NESTING}"));
                }
                tokens += 2 + a.len().saturating_sub(1) as u64;
                stack.extend(a.iter().map(|x| (x, d + 1)));
            }
            Value::Object(m) => {
                if d + 1 > MAX_NESTING {
                    return Err(format!("nesting deeper than {MAX_NESTING}"));
                }
                tokens += 2 + m.len().saturating_sub(1) as u64 + 2 * m.len() as u64;
                for (k, x) in m {
                    check_string(k)?;
                    stack.push((x, d + 1));
                }
            }
            Value::String(s) => {
                check_string(s)?;
                tokens += 1;
            }
            _ => tokens += 1,
        }
        if tokens > MAX_TOKENS {
            return Err(format!("more than {MAX_TOKENS} JSON tokens"));
        }
    }
    Ok(tokens)
}

fn check_string(s: &str) -> Result<(), String> {
    // Escapes can grow a string up to six times (\u00XX); measure exactly only when it matters.
    if s.len() + 2 > MAX_TOKEN_BYTES / 6 {
        let encoded = Value::String(s.to_owned()).to_string().len();
        if encoded > MAX_TOKEN_BYTES {
            return Err(format!(
                "a string of {encoded} bytes (limit {MAX_TOKEN_BYTES})"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn id_keys_match_equal_values() {
        let a: Value = serde_json::from_str(r#"{"a": [1, "é"], "b": 1e3}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{"b": 1000, "a": [1, "\u00E9"]}"#).unwrap();
        assert_eq!(IdKey::of(&a), IdKey::of(&b));
        assert_eq!(IdKey::of(&json!(7)), IdKey::Int(7));
        assert_ne!(IdKey::of(&json!("7")), IdKey::of(&json!(7)));
        assert_eq!(IdKey::of(&json!(-1)), IdKey::Other("-1".into()));
        assert_eq!(IdKey::of(&json!(1.5)), IdKey::Other("1.5e0".into()));
    }

    #[test]
    fn limits() {
        let mut v = json!(1);
        for _ in 0..1023 {
            v = json!([v]);
        }
        // 1023 arrays + the request object = 1024 levels: accepted.
        assert!(check_limits(&v, 1).is_ok());
        let v = json!([v]);
        assert_eq!(
            check_limits(&v, 1),
            Err("nesting deeper than 1024".to_string())
        );
        assert_eq!(check_limits(&json!({"a": [1, 2]}), 0), Ok(9));
    }

    #[test]
    fn greeting() {
        let raw = json!({"QMP": {"version": {"qemu": {"micro": 2, "minor": 0, "major": 10},
            "package": "x"}, "capabilities": ["oob"]}});
        let g = Greeting::from_value(raw).unwrap();
        assert_eq!(g.version.qemu.major, 10);
        assert!(g.offers("oob"));
        assert!(Greeting::from_value(json!({"return": {}})).is_err());
    }
}
