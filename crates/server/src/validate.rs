//! Command arguments checked against the schema as QEMU's input visitor
//! checks them, with QEMU's error texts.
//!
//! The walk follows QEMU's generated visitors: an object's members in
//! schema order (base members first), then the members of the union
//! branch its tag selects, and only then, once everything visited
//! successfully, a check for leftover members. The first error ends the
//! walk, so when several things are wrong the one QEMU reports is the one
//! reported here. Which leftover member is named when there are several
//! follows QEMU's hash tables (see [`ghash`]).
//!
//! Names in messages are full paths (`file.size`, `children[1].x`) where
//! QEMU prints full paths (missing members, wrong JSON types, leftovers,
//! `uint64`), and bare member names where QEMU prints bare names (enum
//! values, `int8`..`uint32` ranges, alternates), with `null` for list
//! elements.
//!
//! Numbers follow QEMU's JSON parser: an integer that fits `int64` is
//! signed, a larger one that fits `uint64` unsigned, anything else a
//! double. `serde_json` draws the same lines (`as_i64`, `as_u64`, `f64`).

pub mod ghash;
pub mod wording;

use qmpkit_schema::model::{EntityId, EntityKind, IfCond};
use qmpkit_schema::Schema;
use qmpkit_wire::{ErrorClass, QmpError};
use serde_json::{Map, Value};
use std::collections::HashSet;
use wording::Wording;

/// Which generation of QEMU's messages to speak.
#[derive(Debug, Clone, Default)]
pub struct ValidateOptions {
    /// The QEMU version the server claims, `(major, minor, micro)`; `None`
    /// means the newest wording.
    pub qemu_version: Option<(u64, u64, u64)>,
}

/// Enabled configuration symbols for `if` conditions (members, enum
/// values and branches whose condition fails do not exist); `None`
/// means every condition holds.
pub type Enabled<'a> = Option<&'a HashSet<String>>;

/// Deepest nesting of containers walked. QMP's JSON parser stops at 1024;
/// values built by other means that go deeper are refused.
pub const MAX_DEPTH: usize = 4096;

/// Check the `arguments` of a call to `command` (a command entity of
/// `schema`). `args` is the request's `arguments` member, `None` when absent
/// (the envelope check that it is an object has been done already). Returns
/// the arguments to hand to the handler.
///
/// A command with `gen: false` gets its arguments unchecked; a command
/// without arguments refuses any member; `boxed` commands take their
/// argument type's members at top level, like the others.
pub fn validate_args(
    schema: &Schema,
    command: EntityId,
    args: Option<&Value>,
    opts: &ValidateOptions,
) -> Result<Map<String, Value>, QmpError> {
    validate_args_cfg(schema, command, args, opts, None)
}

/// [`validate_args`] for a schema whose `if` conditions are evaluated
/// against `enabled` (a QEMU build's configuration).
pub fn validate_args_cfg(
    schema: &Schema,
    command: EntityId,
    args: Option<&Value>,
    opts: &ValidateOptions,
    enabled: Enabled<'_>,
) -> Result<Map<String, Value>, QmpError> {
    let empty = Map::new();
    let map = match args {
        None => &empty,
        Some(Value::Object(m)) => m,
        Some(_) => {
            return Err(QmpError::generic(
                "QMP input member 'arguments' must be an object",
            ))
        }
    };
    check_args(schema, command, map, opts, enabled)?;
    Ok(deep_clone_map(map))
}

/// [`validate_args_cfg`] taking the request's `arguments` over: the same checks, and the
/// arguments handed back as they came, without a copy.
pub fn validate_args_owned(
    schema: &Schema,
    command: EntityId,
    args: Option<Value>,
    opts: &ValidateOptions,
    enabled: Enabled<'_>,
) -> Result<Map<String, Value>, QmpError> {
    let map = match args {
        None => Map::new(),
        Some(Value::Object(m)) => m,
        Some(_) => {
            return Err(QmpError::generic(
                "QMP input member 'arguments' must be an object",
            ))
        }
    };
    check_args(schema, command, &map, opts, enabled)?;
    Ok(map)
}

/// The checks of [`validate_args_cfg`] on an `arguments` object.
fn check_args(
    schema: &Schema,
    command: EntityId,
    map: &Map<String, Value>,
    opts: &ValidateOptions,
    enabled: Enabled<'_>,
) -> Result<(), QmpError> {
    let Some(entity) = schema.entities.get(command) else {
        return Err(QmpError::new(
            ErrorClass::CommandNotFound,
            "The command has not been found",
        ));
    };
    let EntityKind::Command(cmd) = &entity.kind else {
        return Err(QmpError::new(
            ErrorClass::CommandNotFound,
            format!("The command {} has not been found", entity.name),
        ));
    };
    if !cmd.gen {
        return Ok(());
    }
    let mut w = Walker::new(schema, opts, enabled);
    let arg_type = cmd.arg_type.filter(|t| *t < schema.entities.len());
    if w.wording.monitor_arg_check {
        w.monitor_check(arg_type, map).map_err(QmpError::generic)?;
    }
    w.root(arg_type, map).map_err(QmpError::generic)
}

/// A copy of `v` made without recursion (`Value::clone` recurses once
/// per nesting level, and arguments may nest 1024 deep).
pub fn deep_clone(v: &Value) -> Value {
    enum Build<'v> {
        Array(std::slice::Iter<'v, Value>, Vec<Value>),
        Object(
            serde_json::map::Iter<'v>,
            Map<String, Value>,
            Option<String>,
        ),
    }
    fn open(v: &Value) -> Result<Build<'_>, Value> {
        match v {
            Value::Array(a) => Ok(Build::Array(a.iter(), Vec::with_capacity(a.len()))),
            Value::Object(m) => Ok(Build::Object(m.iter(), Map::new(), None)),
            other => Err(other.clone()),
        }
    }
    let mut stack = match open(v) {
        Ok(b) => vec![b],
        Err(scalar) => return scalar,
    };
    loop {
        let Some(top) = stack.last_mut() else {
            return Value::Null;
        };
        let next = match top {
            Build::Array(it, _) => it.next(),
            Build::Object(it, _, key) => it.next().map(|(k, v)| {
                *key = Some(k.clone());
                v
            }),
        };
        let done = match next {
            Some(child) => match open(child) {
                Ok(b) => {
                    stack.push(b);
                    continue;
                }
                Err(scalar) => scalar,
            },
            None => match stack.pop() {
                Some(Build::Array(_, out)) => Value::Array(out),
                Some(Build::Object(_, out, _)) => Value::Object(out),
                None => Value::Null,
            },
        };
        // `done` is finished: hand it to its parent; with no parent left
        // it is the whole copy.
        match stack.last_mut() {
            Some(Build::Array(_, out)) => out.push(done),
            Some(Build::Object(_, out, key)) => {
                if let Some(k) = key.take() {
                    out.insert(k, done);
                }
            }
            None => return done,
        }
    }
}

fn deep_clone_map(m: &Map<String, Value>) -> Map<String, Value> {
    m.iter().map(|(k, v)| (k.clone(), deep_clone(v))).collect()
}

/// Check that `value` is a valid value of type `typ` (any type entity),
/// as if it were the argument `name` (`None`: an anonymous value, named
/// `null` where QEMU names it so). Used for return values and events.
pub fn validate_value(
    schema: &Schema,
    typ: EntityId,
    name: Option<&str>,
    value: &Value,
    opts: &ValidateOptions,
    enabled: Enabled<'_>,
) -> Result<(), QmpError> {
    if typ >= schema.entities.len() {
        return Ok(());
    }
    let mut w = Walker::new(schema, opts, enabled);
    w.visit(typ, name, Some(value)).map_err(QmpError::generic)
}

/// Check a whole object against an object type's members, leftovers
/// included (what a command's arguments or an event's data go through).
pub fn validate_members(
    schema: &Schema,
    typ: Option<EntityId>,
    map: &Map<String, Value>,
    opts: &ValidateOptions,
    enabled: Enabled<'_>,
) -> Result<(), QmpError> {
    let mut w = Walker::new(schema, opts, enabled);
    w.root(typ.filter(|t| *t < schema.entities.len()), map)
        .map_err(QmpError::generic)
}

/// A container being visited, as QEMU's input visitor stacks them: the
/// name it was visited under, and for a list the index of the element
/// being visited.
#[derive(Debug, Clone, Copy)]
struct Seg<'a> {
    name: Option<&'a str>,
    index: Option<usize>,
}

/// A JSON object being visited: the keys its visit took, in order.
struct Frame<'a> {
    consumed: Vec<&'a str>,
}

/// A pending step of the walk.
enum Task<'a> {
    /// Check one value (absent: `None`) against a type.
    Visit {
        typ: EntityId,
        name: Option<&'a str>,
        v: Option<&'a Value>,
    },
    /// Visit member `name` of the object of frame `frame`.
    Member {
        typ: EntityId,
        name: &'a str,
        optional: bool,
        map: &'a Map<String, Value>,
        frame: usize,
    },
    /// Queue the members of the branch union `typ`'s tag selects.
    Branch {
        typ: EntityId,
        map: &'a Map<String, Value>,
        frame: usize,
    },
    /// Report the first leftover member of the innermost frame, drop it.
    Check { map: &'a Map<String, Value> },
    /// The list being visited is at element `i`.
    Index(usize),
    /// Leave the innermost container.
    Leave,
}

type VResult = Result<(), String>;

struct Walker<'a> {
    schema: &'a Schema,
    enabled: Enabled<'a>,
    wording: Wording,
    path: Vec<Seg<'a>>,
    frames: Vec<Frame<'a>>,
}

/// QEMU's `QType` of a JSON value, for alternates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum QType {
    Null,
    Num,
    Str,
    Dict,
    List,
    Bool,
}

fn qtype_of(v: &Value) -> QType {
    match v {
        Value::Null => QType::Null,
        Value::Bool(_) => QType::Bool,
        Value::Number(_) => QType::Num,
        Value::String(_) => QType::Str,
        Value::Array(_) => QType::List,
        Value::Object(_) => QType::Dict,
    }
}

impl<'a> Walker<'a> {
    fn new(schema: &'a Schema, opts: &ValidateOptions, enabled: Enabled<'a>) -> Self {
        Walker {
            schema,
            enabled,
            wording: Wording::for_version(opts.qemu_version),
            path: Vec::new(),
            frames: Vec::new(),
        }
    }

    fn on(&self, c: &IfCond) -> bool {
        match self.enabled {
            None => true,
            Some(set) => c.eval(&|s| set.contains(s)),
        }
    }

    /// QEMU's `full_name()`: `name` prefixed by the names of the
    /// containers being visited (`a.b[0].c`).
    fn full_name(&self, name: Option<&str>) -> String {
        if !self.wording.full_paths {
            return name.unwrap_or("null").to_string();
        }
        // Built back to front, as QEMU builds it.
        let mut parts: Vec<String> = Vec::with_capacity(self.path.len() * 2);
        let mut name = name;
        for seg in self.path.iter().rev() {
            match seg.index {
                None => {
                    parts.push(name.unwrap_or("<anonymous>").to_string());
                    parts.push(".".to_string());
                }
                Some(i) => parts.push(format!("[{i}]")),
            }
            name = seg.name;
        }
        let mut out: String = parts.iter().rev().map(String::as_str).collect();
        if let Some(n) = name {
            out.insert_str(0, n);
        } else if out.starts_with('.') {
            out.remove(0);
        } else if out.is_empty() {
            out.push_str("<anonymous>");
        }
        out
    }

    /// The bare name QEMU prints in some messages.
    fn bare(name: Option<&str>) -> &str {
        name.unwrap_or("null")
    }

    /// The top-level object: `typ`'s members (none when `None`), then
    /// the leftover check.
    fn root(&mut self, typ: Option<EntityId>, map: &'a Map<String, Value>) -> VResult {
        let mut tasks = Vec::new();
        self.open_object(typ, None, map, &mut tasks)?;
        self.run(tasks)
    }

    /// Visit one value (`None`: absent) of type `typ` named `name`
    /// (`None` for list elements).
    fn visit(&mut self, typ: EntityId, name: Option<&'a str>, v: Option<&'a Value>) -> VResult {
        self.run(vec![Task::Visit { typ, name, v }])
    }

    /// The walk, with an explicit stack of pending steps instead of
    /// recursion: nesting depth costs heap, not stack.
    fn run(&mut self, mut tasks: Vec<Task<'a>>) -> VResult {
        while let Some(task) = tasks.pop() {
            match task {
                Task::Visit { typ, name, v } => self.step_visit(typ, name, v, &mut tasks)?,
                Task::Member {
                    typ,
                    name,
                    optional,
                    map,
                    frame,
                } => {
                    let got = map.get_key_value(name);
                    if optional && got.is_none() {
                        continue;
                    }
                    if let (Some((k, _)), Some(f)) = (got, self.frames.get_mut(frame)) {
                        f.consumed.push(k.as_str());
                    }
                    tasks.push(Task::Visit {
                        typ,
                        name: Some(name),
                        v: got.map(|(_, v)| v),
                    });
                }
                Task::Branch { typ, map, frame } => {
                    let schema = self.schema;
                    let Some(EntityKind::Object(o)) = schema.entities.get(typ).map(|e| &e.kind)
                    else {
                        continue;
                    };
                    let Some(br) = &o.branches else { continue };
                    let Some(Value::String(tag)) = map.get(br.tag_name.as_str()) else {
                        continue;
                    };
                    if let Some(v) = br
                        .variants
                        .iter()
                        .find(|v| v.name == *tag && self.on(&v.ifcond))
                    {
                        self.push_members(v.typ, map, frame, &mut tasks);
                    }
                }
                Task::Check { map } => {
                    let frame = self.frames.pop().unwrap_or(Frame {
                        consumed: Vec::new(),
                    });
                    self.check_struct(map, &frame)?;
                }
                Task::Index(i) => {
                    if let Some(top) = self.path.last_mut() {
                        top.index = Some(i);
                    }
                }
                Task::Leave => {
                    self.path.pop();
                }
            }
        }
        Ok(())
    }

    /// Start visiting object `map` as type `typ`: its members, then the
    /// leftover check, then leaving it.
    fn open_object(
        &mut self,
        typ: Option<EntityId>,
        name: Option<&'a str>,
        map: &'a Map<String, Value>,
        tasks: &mut Vec<Task<'a>>,
    ) -> VResult {
        self.enter(name, None)?;
        self.frames.push(Frame {
            consumed: Vec::new(),
        });
        let frame = self.frames.len() - 1;
        tasks.push(Task::Leave);
        tasks.push(Task::Check { map });
        if let Some(t) = typ {
            self.push_members(t, map, frame, tasks);
        }
        Ok(())
    }

    /// Queue the members of object type `typ` (base members first), then
    /// the branch its tag selects.
    fn push_members(
        &self,
        typ: EntityId,
        map: &'a Map<String, Value>,
        frame: usize,
        tasks: &mut Vec<Task<'a>>,
    ) {
        let schema = self.schema;
        let Some(EntityKind::Object(o)) = schema.entities.get(typ).map(|e| &e.kind) else {
            return;
        };
        if o.branches.is_some() {
            tasks.push(Task::Branch { typ, map, frame });
        }
        let members: Vec<_> = schema.object_members(typ).collect();
        for m in members.into_iter().rev() {
            if !self.on(&m.ifcond) {
                continue;
            }
            tasks.push(Task::Member {
                typ: m.typ,
                name: m.name.as_str(),
                optional: m.optional,
                map,
                frame,
            });
        }
    }

    fn check_struct(&self, map: &'a Map<String, Value>, frame: &Frame<'a>) -> VResult {
        if map.len() == frame.consumed.len() {
            return Ok(());
        }
        let keys: Vec<&str> = map.keys().map(String::as_str).collect();
        match ghash::first_leftover(&keys, &frame.consumed) {
            None => Ok(()),
            Some(i) => Err(wording::unexpected(
                &self.wording,
                &self.full_name(keys.get(i).copied()),
            )),
        }
    }

    /// One value: scalars are checked at once, containers queue their
    /// contents.
    fn step_visit(
        &mut self,
        typ: EntityId,
        name: Option<&'a str>,
        v: Option<&'a Value>,
        tasks: &mut Vec<Task<'a>>,
    ) -> VResult {
        let schema = self.schema;
        let Some(entity) = schema.entities.get(typ) else {
            return Ok(());
        };
        let Some(v) = v else {
            return Err(wording::missing(&self.full_name(name)));
        };
        match &entity.kind {
            EntityKind::Builtin(b) => self.builtin(&entity.name, b.json_type, name, v),
            EntityKind::Enum(e) => {
                let Value::String(s) = v else {
                    return Err(wording::invalid_type(&self.full_name(name), "string"));
                };
                if e.members.iter().any(|m| m.name == *s && self.on(&m.ifcond)) {
                    Ok(())
                } else {
                    Err(wording::bad_enum(&self.wording, Self::bare(name), s))
                }
            }
            EntityKind::Array(a) => {
                let Value::Array(items) = v else {
                    return Err(wording::invalid_type(&self.full_name(name), "array"));
                };
                self.enter(name, Some(0))?;
                tasks.push(Task::Leave);
                for (i, item) in items.iter().enumerate().rev() {
                    tasks.push(Task::Visit {
                        typ: a.element,
                        name: None,
                        v: Some(item),
                    });
                    tasks.push(Task::Index(i));
                }
                Ok(())
            }
            EntityKind::Object(_) => {
                let Value::Object(map) = v else {
                    return Err(wording::invalid_type(&self.full_name(name), "object"));
                };
                self.open_object(Some(typ), name, map, tasks)
            }
            EntityKind::Alternate(alt) => {
                let q = qtype_of(v);
                let branch = alt
                    .variants
                    .iter()
                    .filter(|b| self.on(&b.ifcond))
                    .find(|b| self.qtypes_of(b.typ).contains(&q));
                match branch {
                    Some(b) => {
                        tasks.push(Task::Visit {
                            typ: b.typ,
                            name,
                            v: Some(v),
                        });
                        Ok(())
                    }
                    None => Err(wording::invalid_type(Self::bare(name), &entity.name)),
                }
            }
            EntityKind::Command(_) | EntityKind::Event(_) | EntityKind::Include(_) => Ok(()),
        }
    }

    fn enter(&mut self, name: Option<&'a str>, index: Option<usize>) -> VResult {
        if self.path.len() >= MAX_DEPTH {
            return Err(depth_error());
        }
        self.path.push(Seg { name, index });
        Ok(())
    }

    /// The JSON types that select a branch of type `typ` in an alternate.
    fn qtypes_of(&self, typ: EntityId) -> &'static [QType] {
        match self.schema.entities.get(typ).map(|e| &e.kind) {
            Some(EntityKind::Builtin(b)) => match b.json_type {
                "string" => &[QType::Str],
                "int" | "number" => &[QType::Num],
                "boolean" => &[QType::Bool],
                "null" => &[QType::Null],
                _ => &[
                    QType::Null,
                    QType::Num,
                    QType::Str,
                    QType::Dict,
                    QType::List,
                    QType::Bool,
                ],
            },
            Some(EntityKind::Enum(_)) => &[QType::Str],
            Some(EntityKind::Array(_)) => &[QType::List],
            Some(EntityKind::Object(_)) => &[QType::Dict],
            _ => &[],
        }
    }

    fn builtin(&self, tname: &str, json_type: &str, name: Option<&str>, v: &Value) -> VResult {
        match json_type {
            "string" => match v {
                Value::String(_) => Ok(()),
                _ => Err(wording::invalid_type(&self.full_name(name), "string")),
            },
            "boolean" => match v {
                Value::Bool(_) => Ok(()),
                _ => Err(wording::invalid_type(&self.full_name(name), "boolean")),
            },
            "number" => match v {
                Value::Number(_) => Ok(()),
                _ => Err(wording::invalid_type(&self.full_name(name), "number")),
            },
            "null" => match v {
                Value::Null => Ok(()),
                _ => Err(wording::invalid_type(&self.full_name(name), "null")),
            },
            "int" => self.integer(tname, name, v),
            _ => Ok(()),
        }
    }

    /// QEMU's integer visitors: `int64` and `uint64` (also `size`)
    /// directly, the narrower types through a range check that names the
    /// C type (`uint32_t`) and the bare member name.
    fn integer(&self, tname: &str, name: Option<&str>, v: &Value) -> VResult {
        let signed = |min: i64, max: i64, ctype: &str| -> VResult {
            let Some(i) = v.as_i64() else {
                return Err(wording::invalid_type(&self.full_name(name), "integer"));
            };
            if i < min || i > max {
                return Err(wording::expects(Self::bare(name), ctype));
            }
            Ok(())
        };
        let unsigned = |max: u64, ctype: &str| -> VResult {
            let u = match (v.as_u64(), v.as_i64()) {
                (Some(u), _) if self.wording.uint64_expects => u,
                (_, Some(i)) => i as u64,
                _ => {
                    return Err(if self.wording.uint64_expects {
                        wording::expects(&self.full_name(name), "uint64")
                    } else {
                        wording::invalid_type(&self.full_name(name), "integer")
                    })
                }
            };
            if u > max {
                return Err(wording::expects(Self::bare(name), ctype));
            }
            Ok(())
        };
        match tname {
            "int8" => signed(i8::MIN.into(), i8::MAX.into(), "int8_t"),
            "int16" => signed(i16::MIN.into(), i16::MAX.into(), "int16_t"),
            "int32" => signed(i32::MIN.into(), i32::MAX.into(), "int32_t"),
            "uint8" => unsigned(u8::MAX.into(), "uint8_t"),
            "uint16" => unsigned(u16::MAX.into(), "uint16_t"),
            "uint32" => unsigned(u32::MAX.into(), "uint32_t"),
            "uint64" | "size" => unsigned(u64::MAX, "uint64"),
            _ => signed(i64::MIN, i64::MAX, "int64"),
        }
    }

    /// QEMU before 2.8: the monitor's own check of top-level arguments
    /// (unknown names and scalar types, in the request's hash order, then
    /// missing mandatory ones), before the generated code sees them.
    fn monitor_check(&self, typ: Option<EntityId>, map: &'a Map<String, Value>) -> VResult {
        let schema = self.schema;
        let members: Vec<_> = match typ {
            Some(t) => schema
                .object_members(t)
                .filter(|m| self.on(&m.ifcond))
                .collect(),
            None => Vec::new(),
        };
        let mut keys: Vec<(u32, usize, &str)> = map
            .keys()
            .enumerate()
            .map(|(i, k)| (ghash::qdict_bucket(k), i, k.as_str()))
            .collect();
        keys.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
        let has_branches = matches!(
            typ.and_then(|t| schema.entities.get(t)).map(|e| &e.kind),
            Some(EntityKind::Object(o)) if o.branches.is_some()
        );
        for (_, _, k) in keys {
            let Some(m) = members.iter().find(|m| m.name == k) else {
                if has_branches {
                    continue;
                }
                return Err(wording::invalid_parameter(k));
            };
            let Some(v) = map.get(k) else { continue };
            let word = match schema.entities.get(m.typ).map(|e| &e.kind) {
                Some(EntityKind::Builtin(b)) => match b.json_type {
                    "string" if !v.is_string() => Some("string"),
                    "int" if !(v.is_i64() || v.is_u64()) => Some("int"),
                    "boolean" if !v.is_boolean() => Some("bool"),
                    "number" if !v.is_number() => Some("number"),
                    _ => None,
                },
                Some(EntityKind::Enum(_)) if !v.is_string() => Some("string"),
                _ => None,
            };
            if let Some(word) = word {
                return Err(wording::invalid_type(k, word));
            }
        }
        for m in &members {
            if !m.optional && !map.contains_key(m.name.as_str()) {
                return Err(wording::missing(&m.name));
            }
        }
        Ok(())
    }
}

fn depth_error() -> String {
    "JSON nesting depth limit exceeded".to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn deep_clone_copies_exactly() {
        for v in [
            json!(null),
            json!(1.5),
            json!([]),
            json!({}),
            json!({"a": [1, {"b": [[], {}, "x"]}], "c": {"d": null}, "e": true}),
            json!([[[1], 2], {"z": 1, "a": 2}]),
        ] {
            let c = deep_clone(&v);
            assert_eq!(c, v);
            // Member order is kept.
            assert_eq!(c.to_string(), v.to_string());
        }
    }

    #[test]
    fn full_names_as_qemu_builds_them() {
        let s = qmpkit_schema::load_from(
            "t.json",
            qmpkit_schema::Dialect::Modern,
            &qmpkit_schema::MemoryProvider::from_files([(
                "t.json",
                "{ 'struct': 'Node', 'data': { '*n': 'Node', '*l': ['Node'], '*i': 'int' } }\n",
            )]),
        )
        .expect("schema");
        let node = s.lookup("Node").expect("Node");
        let o = ValidateOptions::default();
        let err = |v: Value| {
            validate_value(&s, node, None, &v, &o, None)
                .map(|_| String::new())
                .unwrap_or_else(|e| e.desc)
        };
        assert_eq!(
            err(json!({"n": {"l": [{}, {"i": "x"}]}})),
            "Invalid parameter type for 'n.l[1].i', expected: integer"
        );
        assert_eq!(err(json!({"": {"x": 1}})), "Parameter '' is unexpected");
        assert_eq!(
            err(json!([])),
            "Invalid parameter type for '<anonymous>', expected: object"
        );
        assert_eq!(err(json!({"i": 1})), "");
    }
}
