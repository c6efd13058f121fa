//! Reply values synthesised from a command's return type, valid against the
//! schema, for commands that have no handler.
//!
//! The value is the smallest one the type admits, chosen the way a
//! freshly started QEMU would most plausibly answer:
//!
//! * `str` → `""`, every integer type → `0`, `number` → `0.0`,
//!   `bool` → `false`, `null` → `null`, `any` (and legacy `**`) → `{}`;
//! * an enum → its first value (of those enabled);
//! * a list → `[]` (always valid, and what QEMU answers when it has
//!   nothing to list: no block jobs, no chardevs of a kind, …);
//! * a struct → its mandatory members only; optional ones are left out;
//! * a union → its tag takes the first value, with that branch's
//!   mandatory members;
//! * an alternate → its first branch (past a nesting depth, its first
//!   branch that is not an object, so recursive types end);
//! * no return type → `{}`.
//!
//! Recursive types terminate: lists are empty and optional members are
//! left out, and past [`MAX_DEPTH`] nested objects the walk stops with `{}`.

use crate::validate::Enabled;
use qmpkit_schema::model::{EntityId, EntityKind, IfCond};
use qmpkit_schema::Schema;
use serde_json::{Map, Number, Value};

/// Nesting depth past which alternates prefer non-object branches.
const PREFER_SCALAR_DEPTH: usize = 16;
/// Nesting depth at which synthesis gives up (`{}`).
pub const MAX_DEPTH: usize = 64;

/// A value of `command`'s return type (`{}` when it returns nothing).
pub fn synthesize_return(schema: &Schema, command: EntityId) -> Value {
    synthesize_return_cfg(schema, command, None)
}

/// [`synthesize_return`] with `if` conditions evaluated against `enabled`.
pub fn synthesize_return_cfg(schema: &Schema, command: EntityId, enabled: Enabled<'_>) -> Value {
    let ret = match schema.entities.get(command).map(|e| &e.kind) {
        Some(EntityKind::Command(c)) => c.ret_type,
        _ => None,
    };
    match ret {
        Some(t) if t < schema.entities.len() => synthesize_value(schema, t, enabled),
        _ => Value::Object(Map::new()),
    }
}

/// A value of type `typ`.
pub fn synthesize_value(schema: &Schema, typ: EntityId, enabled: Enabled<'_>) -> Value {
    Synth { schema, enabled }.value(typ, 0)
}

struct Synth<'a> {
    schema: &'a Schema,
    enabled: Enabled<'a>,
}

impl Synth<'_> {
    fn on(&self, c: &IfCond) -> bool {
        match self.enabled {
            None => true,
            Some(set) => c.eval(&|s| set.contains(s)),
        }
    }

    fn value(&self, typ: EntityId, depth: usize) -> Value {
        let schema = self.schema;
        let Some(e) = schema.entities.get(typ) else {
            return Value::Null;
        };
        match &e.kind {
            EntityKind::Builtin(b) => match b.json_type {
                "string" => Value::String(String::new()),
                "int" => Value::Number(0u64.into()),
                "number" => Number::from_f64(0.0).map_or(Value::Null, Value::Number),
                "boolean" => Value::Bool(false),
                "null" => Value::Null,
                _ => Value::Object(Map::new()),
            },
            EntityKind::Enum(en) => en
                .members
                .iter()
                .find(|m| self.on(&m.ifcond))
                .map_or(Value::String(String::new()), |m| {
                    Value::String(m.name.clone().into())
                }),
            EntityKind::Array(_) => Value::Array(Vec::new()),
            EntityKind::Object(_) => {
                let mut map = Map::new();
                if depth < MAX_DEPTH {
                    self.members(typ, &mut map, depth);
                }
                Value::Object(map)
            }
            EntityKind::Alternate(alt) => {
                let live = || alt.variants.iter().filter(|v| self.on(&v.ifcond));
                let scalar = |id: EntityId| {
                    !matches!(
                        schema.entities.get(id).map(|e| &e.kind),
                        Some(EntityKind::Object(_))
                    )
                };
                let pick = if depth >= PREFER_SCALAR_DEPTH {
                    live().find(|v| scalar(v.typ)).or_else(|| live().next())
                } else {
                    live().next()
                };
                match pick {
                    Some(v) => self.value(v.typ, depth + 1),
                    None => Value::Null,
                }
            }
            EntityKind::Command(_) | EntityKind::Event(_) | EntityKind::Include(_) => {
                Value::Object(Map::new())
            }
        }
    }

    /// The mandatory members of object type `typ` and of the branch its
    /// tag selects, into `map`.
    fn members(&self, typ: EntityId, map: &mut Map<String, Value>, depth: usize) {
        let schema = self.schema;
        let mut typ = typ;
        for _ in 0..MAX_DEPTH {
            let Some(EntityKind::Object(o)) = schema.entities.get(typ).map(|e| &e.kind) else {
                return;
            };
            for m in schema.object_members(typ) {
                if m.optional || !self.on(&m.ifcond) || map.contains_key(m.name.as_str()) {
                    continue;
                }
                map.insert(m.name.clone().into(), self.value(m.typ, depth + 1));
            }
            let Some(br) = &o.branches else {
                return;
            };
            let Some(Value::String(tag)) = map.get(br.tag_name.as_str()) else {
                return;
            };
            match br
                .variants
                .iter()
                .find(|v| v.name == *tag && self.on(&v.ifcond))
            {
                Some(v) => typ = v.typ,
                None => return,
            }
        }
    }
}
