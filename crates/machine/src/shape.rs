//! Fitting values to the served schema.
//!
//! Handlers answer the machine's own interface (QEMU 2.12's, `schema/`,
//! with the later members and commands it grew, such as SHUTDOWN's
//! `reason`); [`conform_return`] and
//! [`conform_event`] cut and complete that to what the served schema's type
//! expects: members the type does not have are dropped, mandatory members
//! the handler did not give get a neutral value, enum values outside the
//! type's members fall back to its first member. So one handler serves QEMU
//! 1.0's interface and 10.0's alike (e.g. `query-cpus`' old flat shape and
//! 2.12's union).
//!
//! Every such change is an [`Invention`], reported with the JSON pointer of
//! the value it touched. Serving an older or newer interface, dropping and
//! filling in members is the point; serving the machine's own schema,
//! nothing may be invented: a handler that needs an invention there answers
//! a wrong value, and `tests/versions.rs` fails on it (it checks every
//! reply and event as the handler made it, with [`Machine::execute_raw`]
//! and [`Machine::take_raw_events`]).
//!
//! [`Machine::execute_raw`]: crate::Machine::execute_raw
//! [`Machine::take_raw_events`]: crate::Machine::take_raw_events

use qmpkit_schema::model::{EntityId, EntityKind};
use qmpkit_schema::Schema;
use serde_json::{Map, Value};

const MAX_DEPTH: usize = 48;

/// What the conversion had to change in a value to fit the served schema.
#[derive(Debug, Clone, PartialEq)]
pub enum InventionKind {
    /// A mandatory member was missing: a neutral value was filled in.
    MissingMember,
    /// A member the type does not have was dropped (its value).
    DroppedMember(Value),
    /// A value outside the enum was replaced by the enum's first member.
    EnumReplaced(Value),
    /// A value of the wrong JSON type was replaced by a neutral value.
    WrongType { expected: String, was: Value },
    /// A value where the schema has none (a command without return type,
    /// an event without data) was dropped.
    DroppedValue(Value),
    /// An event the served schema does not declare was dropped.
    UnknownEvent,
}

/// One change the conversion made, at `path` (a JSON pointer into the
/// return value or the event's data; `""` is the whole value).
#[derive(Debug, Clone, PartialEq)]
pub struct Invention {
    pub path: String,
    pub kind: InventionKind,
}

impl std::fmt::Display for Invention {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let at = if self.path.is_empty() {
            "/"
        } else {
            &self.path
        };
        match &self.kind {
            InventionKind::MissingMember => write!(f, "{at}: mandatory member missing (filled in)"),
            InventionKind::DroppedMember(v) => {
                write!(f, "{at}: member not in the type (dropped {v})")
            }
            InventionKind::EnumReplaced(v) => {
                write!(f, "{at}: {v} is not a value of the enum (replaced)")
            }
            InventionKind::WrongType { expected, was } => {
                write!(f, "{at}: {was} is not of type {expected} (replaced)")
            }
            InventionKind::DroppedValue(v) => {
                write!(f, "{at}: the schema has no value here (dropped {v})")
            }
            InventionKind::UnknownEvent => write!(f, "the schema has no such event (dropped)"),
        }
    }
}

/// A value fitted to the served schema, and what fitting it changed.
#[derive(Debug, Clone, PartialEq)]
pub struct Conformed<T> {
    pub value: T,
    pub inventions: Vec<Invention>,
}

/// An enumeration value that an interface spells differently: `(enum type, value in the
/// value's own interface, value in the served interface)`. The walk uses one only where the
/// served enum lacks the first value and has the second.
pub type Rename = (&'static str, &'static str, &'static str);

/// Shape `value`, a result of `command`, after the command's return type
/// (`{}` for a command without one).
pub fn conform_return(schema: &Schema, command: &str, value: Value) -> Conformed<Value> {
    conform_return_renaming(schema, command, value, &[])
}

/// [`conform_return`], spelling enum values as `renames` say.
pub fn conform_return_renaming(
    schema: &Schema,
    command: &str,
    value: Value,
    renames: &[Rename],
) -> Conformed<Value> {
    let mut s = Shaper::new(schema);
    s.renames = renames;
    let value = match schema.lookup(command).map(|id| &schema.entity(id).kind) {
        Some(EntityKind::Command(c)) => match c.ret_type {
            // Most replies have the served shape already: checked without copying.
            Some(t) if fits(schema, t, &value, 0) => value,
            Some(t) => s.conform(t, value, 0),
            None => {
                if value != Value::Object(Map::new()) {
                    s.invent(InventionKind::DroppedValue(value));
                }
                Value::Object(Map::new())
            }
        },
        _ => value,
    };
    s.done(value)
}

/// Shape an event's data after the served schema: `None` when the schema
/// has no such event (drop it; reported as [`InventionKind::UnknownEvent`]),
/// `Some(None)` for an event without data.
pub fn conform_event(
    schema: &Schema,
    name: &str,
    data: Option<Value>,
) -> Conformed<Option<Option<Value>>> {
    conform_event_renaming(schema, name, data, &[])
}

/// [`conform_event`], spelling enum values as `renames` say.
pub fn conform_event_renaming(
    schema: &Schema,
    name: &str,
    data: Option<Value>,
    renames: &[Rename],
) -> Conformed<Option<Option<Value>>> {
    let mut s = Shaper::new(schema);
    s.renames = renames;
    let value = match schema.lookup(name).map(|id| &schema.entity(id).kind) {
        None if !schema_has_events(schema) => Some(pre_qapi_event(name, data)),
        Some(EntityKind::Event(e)) => match e.arg_type {
            None => {
                if let Some(d) = data {
                    s.invent(InventionKind::DroppedValue(d));
                }
                Some(None)
            }
            Some(t) => {
                let v = data.unwrap_or_else(|| Value::Object(Map::new()));
                if fits(schema, t, &v, 0) {
                    Some(Some(v))
                } else {
                    Some(Some(s.conform(t, v, 0)))
                }
            }
        },
        _ => {
            s.invent(InventionKind::UnknownEvent);
            None
        }
    };
    s.done(value)
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
        Some(id) => schema
            .object_members(id)
            .map(|m| m.name.to_string())
            .collect(),
        None => Vec::new(),
    }
}

/// Whether object type `type_name` exists and has a member named `member`.
pub fn type_has_member(schema: &Schema, type_name: &str, member: &str) -> bool {
    schema
        .lookup(type_name)
        .is_some_and(|id| schema.object_members(id).any(|m| m.name == member))
}

/// Whether event `event` exists and its data has a member named `member`.
pub fn event_has_member(schema: &Schema, event: &str, member: &str) -> bool {
    match schema.lookup(event).map(|id| &schema.entity(id).kind) {
        Some(EntityKind::Event(e)) => e
            .arg_type
            .is_some_and(|t| schema.object_members(t).any(|m| m.name == member)),
        _ => false,
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

/// Whether [`conform`] would give `value` back unchanged, members in the same order, with
/// nothing invented (so that it can be kept as it is): every member the type has, in the
/// type's order, every mandatory one present, nothing else, each value fitting in turn.
/// Reads only; `false` whenever in doubt.
pub fn fits(schema: &Schema, id: EntityId, value: &Value, depth: usize) -> bool {
    if depth > MAX_DEPTH || id >= schema.entities.len() {
        return true;
    }
    match &schema.entity(id).kind {
        EntityKind::Builtin(b) => json_fits(b.json_type, value),
        EntityKind::Enum(e) => match value.as_str() {
            Some(s) => e.members.iter().any(|m| m.name == s),
            None => false,
        },
        EntityKind::Array(a) => match value {
            Value::Array(items) => items.iter().all(|v| fits(schema, a.element, v, depth + 1)),
            _ => false,
        },
        EntityKind::Object(_) => match value {
            Value::Object(map) => object_fits(schema, id, map, depth),
            _ => false,
        },
        EntityKind::Alternate(a) => {
            for v in &a.variants {
                let kind_fits = match &schema.entity(v.typ).kind {
                    EntityKind::Builtin(b) => json_fits(b.json_type, value),
                    EntityKind::Enum(_) => value.is_string(),
                    EntityKind::Object(_) => value.is_object(),
                    EntityKind::Array(_) => value.is_array(),
                    _ => false,
                };
                if kind_fits {
                    return fits(schema, v.typ, value, depth + 1);
                }
            }
            false
        }
        _ => true,
    }
}

/// [`fits`] for an object `map` of object type `id`.
pub fn object_fits(schema: &Schema, id: EntityId, map: &Map<String, Value>, depth: usize) -> bool {
    let Some(EntityKind::Object(o)) = schema.entities.get(id).map(|e| &e.kind) else {
        return false;
    };
    let mut it = map.iter().peekable();
    let mut taken = 0usize;
    if !members_fit(schema, id, &mut it, &mut taken, None, depth) {
        return false;
    }
    if let Some(br) = &o.branches {
        let tag = map.get(br.tag_name.as_str()).and_then(Value::as_str);
        if let Some(v) = tag.and_then(|t| br.variants.iter().find(|v| v.name == t)) {
            let base: Vec<&str> = map.keys().take(taken).map(String::as_str).collect();
            if !members_fit(schema, v.typ, &mut it, &mut taken, Some(&base), depth) {
                return false;
            }
        }
    }
    it.next().is_none()
}

/// The members of object type `id`, in order, against the next entries of `it` (what
/// `fill_members` would put out): `skip` names already given (by the base of a union).
fn members_fit(
    schema: &Schema,
    id: EntityId,
    it: &mut std::iter::Peekable<serde_json::map::Iter<'_>>,
    taken: &mut usize,
    skip: Option<&[&str]>,
    depth: usize,
) -> bool {
    for m in schema.object_members(id) {
        if skip.is_some_and(|s| s.contains(&m.name.as_str())) {
            continue;
        }
        match it.peek() {
            Some((k, v)) if **k == m.name => {
                if !fits(schema, m.typ, v, depth + 1) {
                    return false;
                }
                it.next();
                *taken += 1;
            }
            // Absent (or out of order, which the end of the walk catches).
            _ if m.optional => {}
            _ => return false,
        }
    }
    true
}

/// Shape `value` after type `id`.
pub fn conform(schema: &Schema, id: EntityId, value: Value) -> Conformed<Value> {
    let mut s = Shaper::new(schema);
    let v = s.conform(id, value, 0);
    s.done(v)
}

/// The walk: the schema, the JSON pointer of the value being shaped, the
/// enum spellings to apply, and what was invented so far.
struct Shaper<'a> {
    schema: &'a Schema,
    path: String,
    renames: &'a [Rename],
    inventions: Vec<Invention>,
}

impl<'a> Shaper<'a> {
    fn new(schema: &'a Schema) -> Shaper<'a> {
        Shaper {
            schema,
            path: String::new(),
            renames: &[],
            inventions: Vec::new(),
        }
    }

    fn done<T>(self, value: T) -> Conformed<T> {
        Conformed {
            value,
            inventions: self.inventions,
        }
    }

    /// The served spelling of value `value` of enum type `ty`, if a rename gives one the
    /// served enum has.
    fn rename(&self, ty: &str, value: &str) -> Option<&'static str> {
        self.renames
            .iter()
            .find(|(t, own, served)| *t == ty && *own == value && enum_has(self.schema, ty, served))
            .map(|(_, _, served)| *served)
    }

    fn invent(&mut self, kind: InventionKind) {
        self.inventions.push(Invention {
            path: self.path.clone(),
            kind,
        });
    }

    /// Run `f` with `key` appended to the path (escaped as JSON pointers
    /// escape `~` and `/`).
    fn at<T>(&mut self, key: &str, f: impl FnOnce(&mut Self) -> T) -> T {
        let len = self.path.len();
        self.path.push('/');
        self.path
            .push_str(&key.replace('~', "~0").replace('/', "~1"));
        let r = f(self);
        self.path.truncate(len);
        r
    }

    /// A neutral value of `id` in place of `was`.
    fn replace(&mut self, id: EntityId, was: Value, depth: usize) -> Value {
        let expected = self.schema.entity(id).name.clone();
        self.invent(InventionKind::WrongType {
            expected: expected.into(),
            was,
        });
        synth(self.schema, id, depth)
    }

    fn conform(&mut self, id: EntityId, value: Value, depth: usize) -> Value {
        let schema = self.schema;
        if depth > MAX_DEPTH || id >= schema.entities.len() {
            return value;
        }
        match &schema.entity(id).kind {
            EntityKind::Builtin(b) => {
                if json_fits(b.json_type, &value) {
                    value
                } else {
                    self.replace(id, value, depth)
                }
            }
            EntityKind::Enum(e) => match value.as_str() {
                Some(s) if e.members.iter().any(|m| m.name == s) => value,
                Some(s) if self.rename(&schema.entity(id).name, s).is_some() => Value::String(
                    self.rename(&schema.entity(id).name, s)
                        .unwrap_or_default()
                        .into(),
                ),
                _ => {
                    self.invent(InventionKind::EnumReplaced(value));
                    synth(schema, id, depth)
                }
            },
            EntityKind::Array(a) => match value {
                Value::Array(items) => Value::Array(
                    items
                        .into_iter()
                        .enumerate()
                        .map(|(i, v)| {
                            self.at(&i.to_string(), |s| s.conform(a.element, v, depth + 1))
                        })
                        .collect(),
                ),
                other => self.replace(id, other, depth),
            },
            EntityKind::Object(o) => {
                let Value::Object(mut src) = value else {
                    return self.replace(id, value, depth);
                };
                let mut out = Map::new();
                self.fill_members(id, &mut src, &mut out, depth);
                if let Some(br) = &o.branches {
                    let tag = out
                        .get(br.tag_name.as_str())
                        .and_then(Value::as_str)
                        .map(str::to_string);
                    if let Some(v) = tag.and_then(|t| br.variants.iter().find(|v| v.name == t)) {
                        self.fill_members(v.typ, &mut src, &mut out, depth);
                    }
                }
                for (k, v) in src {
                    self.at(&k, |s| s.invent(InventionKind::DroppedMember(v)));
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
                        return self.conform(v.typ, value, depth + 1);
                    }
                }
                self.replace(id, value, depth)
            }
            _ => value,
        }
    }

    /// Whether `value` is a union's object whose tag names a branch type `id` lacks.
    fn branch_unknown(&self, id: EntityId, value: &Value) -> bool {
        let schema = self.schema;
        let EntityKind::Object(o) = &schema.entity(id).kind else {
            return false;
        };
        let Some(br) = &o.branches else {
            return false;
        };
        let Some(tag) = value.get(br.tag_name.as_str()).and_then(Value::as_str) else {
            return false;
        };
        let tag_type = schema
            .object_members(id)
            .into_iter()
            .find(|m| m.name == br.tag_name)
            .map(|m| m.typ);
        let known = match tag_type.map(|t| &schema.entity(t).kind) {
            Some(EntityKind::Enum(e)) => e.members.iter().any(|m| m.name == tag),
            _ => true,
        };
        !known && tag_type.is_some_and(|t| self.rename(&schema.entity(t).name, tag).is_none())
    }

    fn fill_members(
        &mut self,
        id: EntityId,
        src: &mut Map<String, Value>,
        out: &mut Map<String, Value>,
        depth: usize,
    ) {
        let schema = self.schema;
        for m in schema.object_members(id) {
            if out.contains_key(m.name.as_str()) {
                continue;
            }
            match src.remove(m.name.as_str()) {
                // An optional member whose value is a union branch the served interface does
                // not have is left out, as a member it does not have (the interface that
                // lacks the branch never reported such a value).
                Some(v) if m.optional && self.branch_unknown(m.typ, &v) => {}
                Some(v) => {
                    let v = self.at(&m.name, |s| s.conform(m.typ, v, depth + 1));
                    out.insert(m.name.clone().into(), v);
                }
                None if !m.optional => {
                    self.at(&m.name, |s| s.invent(InventionKind::MissingMember));
                    out.insert(m.name.clone().into(), synth(schema, m.typ, depth + 1));
                }
                None => {}
            }
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
            .map(|m| Value::String(m.name.clone().into()))
            .unwrap_or(Value::Null),
        EntityKind::Array(_) => Value::Array(Vec::new()),
        EntityKind::Object(_) => {
            // Filling in a neutral object is one invention, reported by
            // the caller; its members are not reported again.
            Shaper::new(schema).conform(id, Value::Object(Map::new()), depth + 1)
        }
        EntityKind::Alternate(a) => match a.variants.first() {
            Some(v) => synth(schema, v.typ, depth + 1),
            None => Value::Null,
        },
        _ => Value::Null,
    }
}
