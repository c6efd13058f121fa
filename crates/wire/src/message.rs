//! QMP messages: greeting, requests, responses and events, in QEMU's member order.

use crate::error::QmpError;
use crate::json::write_qemu;
use serde_json::{Map, Value};

/// The server's greeting:
/// `{"QMP": {"version": {"qemu": {"micro", "minor", "major"}, "package"}, "capabilities": [...]}}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Greeting {
    pub major: u64,
    pub minor: u64,
    pub micro: u64,
    pub package: String,
    pub capabilities: Vec<String>,
}

impl Greeting {
    /// A greeting offering the `oob` capability, as QEMU 2.12 and later do.
    pub fn new(major: u64, minor: u64, micro: u64, package: impl Into<String>) -> Greeting {
        Greeting {
            major,
            minor,
            micro,
            package: package.into(),
            capabilities: vec!["oob".into()],
        }
    }

    /// The greeting as QEMU orders its members.
    pub fn to_value(&self) -> Value {
        let mut qemu = Map::new();
        qemu.insert("micro".into(), Value::from(self.micro));
        qemu.insert("minor".into(), Value::from(self.minor));
        qemu.insert("major".into(), Value::from(self.major));
        let mut version = Map::new();
        version.insert("qemu".into(), Value::Object(qemu));
        version.insert("package".into(), Value::String(self.package.clone()));
        let mut qmp = Map::new();
        qmp.insert("version".into(), Value::Object(version));
        qmp.insert(
            "capabilities".into(),
            Value::Array(
                self.capabilities
                    .iter()
                    .cloned()
                    .map(Value::String)
                    .collect(),
            ),
        );
        let mut top = Map::new();
        top.insert("QMP".into(), Value::Object(qmp));
        Value::Object(top)
    }
}

/// `{"return": value, "id": id}` (the `id` member only when the request had one).
pub fn response_return(ret: Value, id: Option<Value>) -> Value {
    let mut m = Map::new();
    m.insert("return".into(), ret);
    if let Some(id) = id {
        m.insert("id".into(), id);
    }
    Value::Object(m)
}

/// `{"id": id, "error": {"class": …, "desc": …}}` (the `id` member only when the request had one).
pub fn response_error(error: &QmpError, id: Option<Value>) -> Value {
    let mut m = Map::new();
    if let Some(id) = id {
        m.insert("id".into(), id);
    }
    let mut e = Map::new();
    e.insert("class".into(), Value::String(error.class.as_str().into()));
    e.insert("desc".into(), Value::String(error.desc.clone()));
    m.insert("error".into(), Value::Object(e));
    Value::Object(m)
}

/// An asynchronous event:
/// `{"timestamp": {"seconds", "microseconds"}, "event": …, "data": …}`.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub seconds: i64,
    pub microseconds: i64,
    pub event: String,
    /// Omitted from the wire when `None`.
    pub data: Option<Value>,
}

impl Event {
    /// An event stamped with the current host time.
    pub fn now(event: impl Into<String>, data: Option<Value>) -> Event {
        let (seconds, microseconds) =
            match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
                Ok(d) => (d.as_secs() as i64, i64::from(d.subsec_micros())),
                Err(_) => (-1, -1),
            };
        Event {
            seconds,
            microseconds,
            event: event.into(),
            data,
        }
    }

    /// The event as QEMU orders its members.
    pub fn to_value(&self) -> Value {
        let mut ts = Map::new();
        ts.insert("seconds".into(), Value::from(self.seconds));
        ts.insert("microseconds".into(), Value::from(self.microseconds));
        let mut m = Map::new();
        m.insert("timestamp".into(), Value::Object(ts));
        m.insert("event".into(), Value::String(self.event.clone()));
        if let Some(data) = &self.data {
            m.insert("data".into(), data.clone());
        }
        Value::Object(m)
    }
}

/// A request that passed QEMU's envelope checks.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// The command name (`execute` or `exec-oob` member).
    pub command: String,
    /// True for `exec-oob`.
    pub oob: bool,
    /// The `arguments` member, if present.
    pub arguments: Option<Map<String, Value>>,
    /// The `id` member, in the order QEMU prints it: echo it as is.
    pub id: Option<Value>,
}

/// A request refused by the envelope checks: the error to answer and the `id` to answer it with.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{error}")]
pub struct RequestError {
    pub id: Option<Value>,
    pub error: QmpError,
}

impl From<crate::json::JsonError> for RequestError {
    /// A JSON error answers without an id.
    fn from(e: crate::json::JsonError) -> RequestError {
        RequestError {
            id: None,
            error: e.into(),
        }
    }
}

/// One item from [`crate::JsonStreamer`] through QEMU's envelope checks: the
/// request, or the error to answer (as [`RequestError::to_response`] builds it).
pub fn request_from(
    item: Result<Value, crate::json::JsonError>,
    allow_oob: bool,
) -> Result<Request, RequestError> {
    Request::parse(item?, allow_oob)
}

impl RequestError {
    /// The reply QEMU sends for this error.
    pub fn to_response(&self) -> Value {
        response_error(&self.error, self.id.clone())
    }
}

impl Request {
    /// Check a decoded top-level value as QEMU's dispatcher does.
    /// `allow_oob` is true once the session negotiated the `oob` capability.
    pub fn parse(value: Value, allow_oob: bool) -> Result<Request, RequestError> {
        let Value::Object(mut obj) = value else {
            return Err(RequestError {
                id: None,
                error: QmpError::generic("QMP input must be a JSON object"),
            });
        };
        let checked = check_members(&obj, allow_oob);
        // Moved out, not copied: it can be as deep as the input allows.
        let id = obj.shift_remove("id").map(crate::qdict::qemu_order);
        let (command, oob) = match checked {
            Ok(c) => c,
            Err(desc) => {
                return Err(RequestError {
                    id,
                    error: QmpError::generic(desc),
                })
            }
        };
        let arguments = match obj.shift_remove("arguments") {
            Some(Value::Object(m)) => Some(m),
            _ => None,
        };
        Ok(Request {
            command,
            oob,
            arguments,
            id,
        })
    }
}

/// QEMU checks the members in its own walking order; the first `execute` /
/// `exec-oob` member it meets names the command.
fn check_members(obj: &Map<String, Value>, allow_oob: bool) -> Result<(String, bool), String> {
    let mut command: Option<(&str, bool)> = None;
    crate::qdict::walk(obj, |key, val| {
        let key = key.as_str();
        match key {
            "execute" | "exec-oob" if key == "execute" || allow_oob => {
                let Value::String(name) = val else {
                    return Err(format!("QMP input member '{key}' must be a string"));
                };
                if command.is_some() {
                    // Only with `oob` negotiated can both be met; QEMU names them in this
                    // order whichever it meets first.
                    return Err("QMP input member 'execute' clashes with 'exec-oob'".into());
                }
                command = Some((name.as_str(), key == "exec-oob"));
            }
            "arguments" => {
                if !val.is_object() {
                    return Err("QMP input member 'arguments' must be an object".into());
                }
            }
            "id" => {}
            other => return Err(format!("QMP input member '{other}' is unexpected")),
        }
        Ok(())
    })?;
    match command {
        Some((name, oob)) => Ok((name.to_owned(), oob)),
        None => Err("QMP input lacks member 'execute'".into()),
    }
}

/// A whole reply on the wire: QEMU's output form followed by CRLF.
pub fn encode_line(value: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    write_qemu(value, &mut out);
    out.extend_from_slice(b"\r\n");
    out
}
