//! Fitting values to the served schema.
//!
//! Handlers answer the richest shape they know (QEMU 2.12's, with newer
//! members where they exist); [`conform_return`] and [`conform_event`] cut
//! and complete it to what the loaded schema's type expects: members the
//! type does not have are dropped, mandatory members the handler did not
//! give get a neutral value, enum values outside the type's members fall
//! back to its first member. So one handler serves QEMU 1.0's interface and
//! 10.0's alike (e.g. `query-cpus`' old flat shape and 2.12's union).

use qmpkit_schema::model::{EntityId, EntityKind};
use qmpkit_schema::Schema;
use serde_json::{Map, Value};

const MAX_DEPTH: usize = 48;

/// Shape `value`, a result of `command`, after the command's return type
/// (`{}` for a command without one).
pub fn conform_return(schema: &Schema, command: &str, value: Value) -> Value {
    let Some(id) = schema.lookup(command) else {
        return value;
    };
    match &schema.entity(id).kind {
        EntityKind::Command(c) => match c.ret_type {
            Some(t) => conform(schema, t, value, 0),
            None => Value::Object(Map::new()),
        },
        _ => value,
    }
}

/// Shape an event's data after the served schema: `None` when the schema
/// has no such event (drop it), `Some(None)` for an event without data.
pub fn conform_event(schema: &Schema, name: &str, data: Option<Value>) -> Option<Option<Value>> {
    let Some(id) = schema.lookup(name) else {
        return if schema_has_events(schema) {
            None
        } else {
            Some(pre_qapi_event(name, data))
        };
    };
    match &schema.entity(id).kind {
        EntityKind::Event(e) => match e.arg_type {
            None => Some(None),
            Some(t) => {
                let v = data.unwrap_or_else(|| Value::Object(Map::new()));
                Some(Some(conform(schema, t, v, 0)))
            }
        },
        _ => None,
    }
}

/// Whether the schema declares events (QEMU 2.1 and later do; before,
/// events were documented outside the schema).
pub fn schema_has_events(schema: &Schema) -> bool {
    schema
        .entities
        .iter()
        .any(|e| matches!(e.kind, EntityKind::Event(_)))
}

/// An event's data as QEMU sent it before events were in the schema.
fn pre_qapi_event(name: &str, data: Option<Value>) -> Option<Value> {
    let keep: &[&str] = match name {
        "SHUTDOWN" | "RESET" | "POWERDOWN" | "STOP" | "RESUME" | "SUSPEND" | "SUSPEND_DISK"
        | "WAKEUP" => return None,
        "WATCHDOG" | "GUEST_PANICKED" => &["action"],
        "BLOCK_IO_ERROR" => &["device", "operation", "action"],
        "BALLOON_CHANGE" => &["actual"],
        "DEVICE_DELETED" => &["device", "path"],
        "DEVICE_TRAY_MOVED" => &["device", "tray-open"],
        _ => return data,
    };
    match data {
        Some(Value::Object(mut m)) => {
            m.retain(|k, _| keep.contains(&k.as_str()));
            Some(Value::Object(m))
        }
        other => other,
    }
}

/// Whether enum type `type_name` of the schema has member `value`.
pub fn enum_has(schema: &Schema, type_name: &str, value: &str) -> bool {
    match schema.lookup(type_name).map(|id| &schema.entity(id).kind) {
        Some(EntityKind::Enum(e)) => e.members.iter().any(|m| m.name == value),
        _ => false,
    }
}

/// Member names of an object type (base first), empty if not an object.
pub fn member_names(schema: &Schema, type_name: &str) -> Vec<String> {
    match schema.lookup(type_name) {
        Some(id) => schema.object_members(id).map(|m| m.name.clone()).collect(),
        None => Vec::new(),
    }
}

/// Whether command `command` exists and has an argument named `arg`.
pub fn command_has_arg(schema: &Schema, command: &str, arg: &str) -> bool {
    let Some(id) = schema.lookup(command) else {
        return false;
    };
    match &schema.entity(id).kind {
        EntityKind::Command(c) => match c.arg_type {
            Some(t) => schema.object_members(t).any(|m| m.name == arg),
            None => false,
        },
        _ => false,
    }
}

fn json_fits(json_type: &str, v: &Value) -> bool {
    match json_type {
        "int" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        "string" => v.is_string(),
        "boolean" => v.is_boolean(),
        "null" => v.is_null(),
        _ => true,
    }
}

/// Shape `value` after type `id`.
pub fn conform(schema: &Schema, id: EntityId, value: Value, depth: usize) -> Value {
    if depth > MAX_DEPTH || id >= schema.entities.len() {
        return value;
    }
    match &schema.entity(id).kind {
        EntityKind::Builtin(b) => {
            if json_fits(b.json_type, &value) {
                value
            } else {
                synth(schema, id, depth)
            }
        }
        EntityKind::Enum(e) => match value.as_str() {
            Some(s) if e.members.iter().any(|m| m.name == s) => value,
            _ => synth(schema, id, depth),
        },
        EntityKind::Array(a) => match value {
            Value::Array(items) => Value::Array(
                items
                    .into_iter()
                    .map(|v| conform(schema, a.element, v, depth + 1))
                    .collect(),
            ),
            _ => Value::Array(Vec::new()),
        },
        EntityKind::Object(o) => {
            let Value::Object(mut src) = value else {
                return synth(schema, id, depth);
            };
            let mut out = Map::new();
            fill_members(schema, id, &mut src, &mut out, depth);
            if let Some(br) = &o.branches {
                let tag = out
                    .get(&br.tag_name)
                    .and_then(Value::as_str)
                    .map(str::to_string);
                if let Some(v) = tag.and_then(|t| br.variants.iter().find(|v| v.name == t)) {
                    fill_members(schema, v.typ, &mut src, &mut out, depth);
                }
            }
            Value::Object(out)
        }
        EntityKind::Alternate(a) => {
            for v in &a.variants {
                let fits = match &schema.entity(v.typ).kind {
                    EntityKind::Builtin(b) => json_fits(b.json_type, &value),
                    EntityKind::Enum(_) => value.is_string(),
                    EntityKind::Object(_) => value.is_object(),
                    EntityKind::Array(_) => value.is_array(),
                    _ => false,
                };
                if fits {
                    return conform(schema, v.typ, value, depth + 1);
                }
            }
            synth(schema, id, depth)
        }
        _ => value,
    }
}

fn fill_members(
    schema: &Schema,
    id: EntityId,
    src: &mut Map<String, Value>,
    out: &mut Map<String, Value>,
    depth: usize,
) {
    for m in schema.object_members(id) {
        if out.contains_key(&m.name) {
            continue;
        }
        match src.remove(&m.name) {
            Some(v) => {
                out.insert(m.name.clone(), conform(schema, m.typ, v, depth + 1));
            }
            None if !m.optional => {
                out.insert(m.name.clone(), synth(schema, m.typ, depth + 1));
            }
            None => {}
        }
    }
}

/// A neutral value of type `id`: 0, "", false, the first enum member, `[]`,
/// objects with their mandatory members.
pub fn synth(schema: &Schema, id: EntityId, depth: usize) -> Value {
    if depth > MAX_DEPTH || id >= schema.entities.len() {
        return Value::Null;
    }
    match &schema.entity(id).kind {
        EntityKind::Builtin(b) => match b.json_type {
            "int" | "number" => Value::from(0),
            "string" => Value::String(String::new()),
            "boolean" => Value::Bool(false),
            "null" => Value::Null,
            _ => Value::Object(Map::new()),
        },
        EntityKind::Enum(e) => e
            .members
            .first()
            .map(|m| Value::String(m.name.clone()))
            .unwrap_or(Value::Null),
        EntityKind::Array(_) => Value::Array(Vec::new()),
        EntityKind::Object(_) => conform(schema, id, Value::Object(Map::new()), depth + 1),
        EntityKind::Alternate(a) => match a.variants.first() {
            Some(v) => synth(schema, v.typ, depth + 1),
            None => Value::Null,
        },
        _ => Value::Null,
    }
}
