//! Introspection: the `SchemaInfo` list that `query-qmp-schema` returns.
//!
//! QEMU's rules, reproduced here:
//!
//! - Commands and events come first, in module order and definition order
//!   within each module. Types follow, in the order they are first used;
//!   using a type can use further types (members, branches, elements), which
//!   are appended to the work list. Types nothing reaches are omitted.
//! - Integer types all show as `int` (and arrays of them as `[int]`).
//! - Type names other than built-in and array types are masked as numbers,
//!   numbered in order of first use. Numbering (and the work list) covers
//!   the whole schema regardless of `if` conditions, exactly as QEMU's
//!   generator does at build time; conditions are only applied to the
//!   result. That leaves gaps in the numbers, and a type used only by
//!   compiled-out entities is still listed when its own condition holds.
//! - Array types are named `[ELEMENT]` and take the element's condition.

use crate::model::{EntityId, EntityKind, IfCond, Schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::HashSet;

/// One element of `query-qmp-schema`'s answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchemaInfo {
    pub name: String,
    #[serde(flatten)]
    pub meta: SchemaInfoMeta,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub features: Option<Vec<String>>,
}

/// The variant part of a [`SchemaInfo`], tagged by `meta-type`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "meta-type", rename_all = "kebab-case")]
pub enum SchemaInfoMeta {
    Builtin {
        #[serde(rename = "json-type")]
        json_type: String,
    },
    Enum {
        members: Vec<SchemaInfoEnumMember>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        values: Option<Vec<String>>,
    },
    Array {
        #[serde(rename = "element-type")]
        element_type: String,
    },
    Object {
        members: Vec<SchemaInfoObjectMember>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tag: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        variants: Option<Vec<SchemaInfoObjectVariant>>,
    },
    Alternate {
        members: Vec<SchemaInfoAlternateMember>,
    },
    Command {
        #[serde(rename = "arg-type")]
        arg_type: String,
        #[serde(rename = "ret-type")]
        ret_type: String,
        #[serde(rename = "allow-oob", default, skip_serializing_if = "Option::is_none")]
        allow_oob: Option<bool>,
    },
    Event {
        #[serde(rename = "arg-type")]
        arg_type: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchemaInfoEnumMember {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub features: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchemaInfoObjectMember {
    pub name: String,
    #[serde(rename = "type")]
    pub typ: String,
    /// True when the member is optional: shown as `"default": null`.
    #[serde(
        rename = "default",
        default,
        skip_serializing_if = "is_false",
        serialize_with = "ser_default",
        deserialize_with = "de_default"
    )]
    pub optional: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub features: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchemaInfoObjectVariant {
    pub case: String,
    #[serde(rename = "type")]
    pub typ: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchemaInfoAlternateMember {
    #[serde(rename = "type")]
    pub typ: String,
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn ser_default<S: Serializer>(_: &bool, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_unit()
}

fn de_default<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    let _ = serde_json::Value::deserialize(d)?;
    Ok(true)
}

/// What to evaluate conditions against, and whether to mask type names.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Enabled configuration symbols.
    pub enabled: HashSet<String>,
    /// Give real type names instead of numbers.
    pub unmask: bool,
}

/// Symbols from a `cfg-*.txt` file: one per line; blank lines and `#`
/// comments are ignored.
pub fn parse_cfg_file(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

struct Gen<'a> {
    schema: &'a Schema,
    opts: &'a Options,
    /// Masked number of each entity, in order of first use.
    numbers: Vec<u32>,
    next_number: u32,
    used: Vec<EntityId>,
    used_set: Vec<bool>,
    out: Vec<SchemaInfo>,
}

impl Gen<'_> {
    fn on(&self, c: &IfCond) -> bool {
        c.eval(&|s| self.opts.enabled.contains(s))
    }

    /// The name of type `id` as shown: its own, or its masked number.
    fn name(&mut self, id: EntityId) -> String {
        if self.opts.unmask {
            return self.schema.entities[id].name.clone();
        }
        let Some(slot) = self.numbers.get_mut(id) else {
            return self.schema.entities[id].name.clone();
        };
        if *slot == u32::MAX {
            *slot = self.next_number;
            self.next_number += 1;
        }
        slot.to_string()
    }

    fn json_type(&self, t: EntityId) -> &'static str {
        let Some(e) = self.schema.entities.get(t) else {
            return "value";
        };
        match &e.kind {
            EntityKind::Builtin(b) => b.json_type,
            EntityKind::Enum(_) => "string",
            EntityKind::Array(_) => "array",
            EntityKind::Object(_) => "object",
            _ => "value",
        }
    }

    fn use_type(&mut self, t: EntityId) -> String {
        let mut t = t;
        let s = self.schema;
        if t >= s.entities.len() {
            // Only an unchecked schema has unresolved references.
            return String::new();
        }
        if self.json_type(t) == "int" {
            t = s.lookup_type("int").unwrap_or(t);
        } else if let EntityKind::Array(a) = &s.entities[t].kind {
            if a.element < s.entities.len() && self.json_type(a.element) == "int" {
                t = s.lookup_type("intList").unwrap_or(t);
            }
        }
        if let EntityKind::Builtin(b) = &s.entities[t].kind {
            // Legacy pseudo-types are plain 'any' on the wire.
            if b.json_type == "value" && s.entities[t].name != "any" {
                t = s.lookup_type("any").unwrap_or(t);
            }
        }
        if let Some(u) = self.used_set.get_mut(t) {
            if !*u {
                *u = true;
                self.used.push(t);
            }
        }
        match &s.entities[t].kind {
            EntityKind::Builtin(_) => s.entities[t].name.clone(),
            EntityKind::Array(a) => {
                let el = a.element;
                if el < s.entities.len() {
                    format!("[{}]", self.use_type(el))
                } else {
                    format!("[{}]", a.element_name)
                }
            }
            _ => self.name(t),
        }
    }

    fn features(&self, fs: &[crate::model::Feature]) -> Option<Vec<String>> {
        let v: Vec<String> = fs
            .iter()
            .filter(|f| self.on(&f.ifcond))
            .map(|f| f.name.clone())
            .collect();
        if fs.is_empty() {
            None
        } else {
            Some(v)
        }
    }

    fn push(
        &mut self,
        name: String,
        meta: SchemaInfoMeta,
        ifcond: &IfCond,
        features: &[crate::model::Feature],
    ) {
        if !self.on(ifcond) {
            return;
        }
        let features = self.features(features);
        self.out.push(SchemaInfo {
            name,
            meta,
            features,
        });
    }

    fn visit_command_or_event(&mut self, id: EntityId) {
        let s = self.schema;
        let e = &s.entities[id];
        match &e.kind {
            EntityKind::Command(c) => {
                let arg = c.arg_type.unwrap_or(s.q_empty());
                let ret = c.ret_type.unwrap_or(s.q_empty());
                let arg_type = self.use_type(arg);
                let ret_type = self.use_type(ret);
                let meta = SchemaInfoMeta::Command {
                    arg_type,
                    ret_type,
                    allow_oob: c.allow_oob.then_some(true),
                };
                self.push(e.name.clone(), meta, &e.ifcond, &e.features);
            }
            EntityKind::Event(ev) => {
                let arg = ev.arg_type.unwrap_or(s.q_empty());
                let arg_type = self.use_type(arg);
                self.push(
                    e.name.clone(),
                    SchemaInfoMeta::Event { arg_type },
                    &e.ifcond,
                    &e.features,
                );
            }
            _ => {}
        }
    }

    fn visit_type(&mut self, id: EntityId) {
        let s = self.schema;
        let e = &s.entities[id];
        match &e.kind {
            EntityKind::Builtin(b) => {
                let meta = SchemaInfoMeta::Builtin {
                    json_type: b.json_type.to_string(),
                };
                self.push(e.name.clone(), meta, &IfCond::Always, &[]);
            }
            EntityKind::Enum(en) => {
                let mut members = Vec::new();
                let mut values = Vec::new();
                for m in &en.members {
                    if self.on(&m.ifcond) {
                        let features = self.features(&m.features);
                        members.push(SchemaInfoEnumMember {
                            name: m.name.clone(),
                            features,
                        });
                        values.push(m.name.clone());
                    }
                }
                let name = self.name(id);
                self.push(
                    name,
                    SchemaInfoMeta::Enum {
                        members,
                        values: Some(values),
                    },
                    &e.ifcond,
                    &e.features,
                );
            }
            EntityKind::Array(a) => {
                if a.element >= s.entities.len() {
                    return;
                }
                let element_type = self.use_type(a.element);
                let name = format!("[{element_type}]");
                self.push(
                    name,
                    SchemaInfoMeta::Array { element_type },
                    s.ifcond(id),
                    &[],
                );
            }
            EntityKind::Object(o) => {
                let mut members = Vec::new();
                for r in &o.members {
                    let m = s.member(*r);
                    let typ = self.use_type(m.typ);
                    if self.on(&m.ifcond) {
                        let features = self.features(&m.features);
                        members.push(SchemaInfoObjectMember {
                            name: m.name.clone(),
                            typ,
                            optional: m.optional,
                            features,
                        });
                    }
                }
                let (tag, variants) = match &o.branches {
                    Some(b) => {
                        let tag = b
                            .tag_member
                            .map(|r| s.member(r).name.clone())
                            .unwrap_or_else(|| b.tag_name.clone());
                        let mut vs = Vec::new();
                        for v in &b.variants {
                            let typ = self.use_type(v.typ);
                            if self.on(&v.ifcond) {
                                vs.push(SchemaInfoObjectVariant {
                                    case: v.name.clone(),
                                    typ,
                                });
                            }
                        }
                        (Some(tag), Some(vs))
                    }
                    None => (None, None),
                };
                let name = self.name(id);
                self.push(
                    name,
                    SchemaInfoMeta::Object {
                        members,
                        tag,
                        variants,
                    },
                    &e.ifcond,
                    &e.features,
                );
            }
            EntityKind::Alternate(a) => {
                let mut members = Vec::new();
                for v in &a.variants {
                    let typ = self.use_type(v.typ);
                    if self.on(&v.ifcond) {
                        members.push(SchemaInfoAlternateMember { typ });
                    }
                }
                let name = self.name(id);
                self.push(
                    name,
                    SchemaInfoMeta::Alternate { members },
                    &e.ifcond,
                    &e.features,
                );
            }
            _ => {}
        }
    }
}

/// The introspection of a checked schema.
pub fn introspect(schema: &Schema, opts: &Options) -> Vec<SchemaInfo> {
    let mut g = Gen {
        schema,
        opts,
        numbers: vec![u32::MAX; schema.entities.len()],
        next_number: 0,
        used: Vec::new(),
        used_set: vec![false; schema.entities.len()],
        out: Vec::new(),
    };
    for m in &schema.modules {
        for &id in &m.entities {
            g.visit_command_or_event(id);
        }
    }
    let mut i = 0;
    while i < g.used.len() {
        let t = g.used[i];
        g.visit_type(t);
        i += 1;
    }
    g.out
}

/// The JSON text of an introspection (one line).
pub fn to_json_text(infos: &[SchemaInfo]) -> Result<String, serde_json::Error> {
    serde_json::to_string(infos)
}
