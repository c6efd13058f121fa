//! The static descriptions libvirt's capability probe asks an x86_64 QEMU
//! 10.0.2 for: machine types with their defaults, QOM types, device and
//! object properties with their defaults, CPU models and their expansion,
//! TPM models, command-line options, migration capabilities, and the SEV /
//! SGX queries' answers on a host without them.
//!
//! They are the answers Debian's qemu-system-x86_64 10.0.2 gave libvirt 9.0
//! on a KVM host (`tests/data/qemu-ref/probe/`, one entry per request, for
//! the KVM and the TCG accelerator): descriptions of the binary, not state
//! of a machine. A request whose arguments were never recorded goes to the
//! machine's own handler.

use serde_json::{Map, Value};

use qmpkit_wire::{ErrorClass, QmpError};

const RECORDED: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tests/data/qemu-ref/probe/qemu-system-x86_64-10.0.2-libvirt-probe.json"
));

/// One recorded request and its reply.
#[derive(Debug, Clone)]
pub struct Entry {
    /// `kvm` or `tcg`.
    pub accel: String,
    pub execute: String,
    pub arguments: Map<String, Value>,
    /// `{"return": …}` or `{"error": {"class": …, "desc": …}}`.
    pub reply: Value,
}

/// The recorded answers (parsed on each call; a server parses them once).
pub fn entries() -> Vec<Entry> {
    let Ok(Value::Array(items)) = serde_json::from_str::<Value>(RECORDED) else {
        return Vec::new();
    };
    items
        .into_iter()
        .filter_map(|v| {
            Some(Entry {
                accel: v.get("accel")?.as_str()?.to_string(),
                execute: v.get("execute")?.as_str()?.to_string(),
                arguments: match v.get("arguments") {
                    Some(Value::Object(m)) => m.clone(),
                    _ => Map::new(),
                },
                reply: v.get("reply")?.clone(),
            })
        })
        .collect()
}

/// The commands with recorded answers.
pub fn commands(entries: &[Entry]) -> Vec<String> {
    let mut v: Vec<String> = entries.iter().map(|e| e.execute.clone()).collect();
    v.sort();
    v.dedup();
    v
}

/// The recorded answer to `command` with `args` under the accelerator in
/// use; the KVM pass's when the TCG pass did not ask. `None`: not recorded.
pub fn answer(
    entries: &[Entry],
    kvm: bool,
    command: &str,
    args: &Map<String, Value>,
) -> Option<Result<Value, QmpError>> {
    let accel = if kvm { "kvm" } else { "tcg" };
    let matching = |e: &&Entry| e.execute == command && &e.arguments == args;
    let e = entries
        .iter()
        .filter(matching)
        .find(|e| e.accel == accel)
        .or_else(|| entries.iter().find(matching))?;
    Some(reply(&e.reply))
}

fn reply(v: &Value) -> Result<Value, QmpError> {
    if let Some(r) = v.get("return") {
        return Ok(r.clone());
    }
    let e = v.get("error").cloned().unwrap_or(Value::Null);
    let class = e
        .get("class")
        .and_then(Value::as_str)
        .and_then(ErrorClass::from_name)
        .unwrap_or(ErrorClass::GenericError);
    let desc = e.get("desc").and_then(Value::as_str).unwrap_or("");
    Err(QmpError::new(class, desc))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_answers() {
        let e = entries();
        assert!(e.len() > 40);
        let machines = answer(&e, false, "query-machines", &Map::new())
            .and_then(Result::ok)
            .unwrap_or_default();
        let default = machines
            .as_array()
            .and_then(|a| a.iter().find(|m| m["is-default"] == true))
            .cloned()
            .unwrap_or_default();
        assert_eq!(default["name"], "pc-i440fx-10.0");
        assert_eq!(default["default-ram-id"], "pc.ram");
        let types = answer(&e, true, "qom-list-types", &Map::new());
        let types = types.and_then(Result::ok).unwrap_or_default().to_string();
        assert!(types.contains("\"kvm-accel\"") && types.contains("\"tcg-accel\""));
        let mut args = Map::new();
        args.insert("typename".into(), "virtio-net-ccw".into());
        let err = answer(&e, true, "device-list-properties", &args);
        assert_eq!(
            err.and_then(Result::err).map(|e| e.class),
            Some(ErrorClass::DeviceNotFound)
        );
        args.insert("typename".into(), "no-such-thing".into());
        assert!(answer(&e, true, "device-list-properties", &args).is_none());
    }
}
