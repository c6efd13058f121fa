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
    /// Ids of `int`, `intList` and `any` (looked up once).
    int: Option<EntityId>,
    int_list: Option<EntityId>,
    any: Option<EntityId>,
}

/// Append the decimal digits of `n`.
fn push_u32(out: &mut String, mut n: u32) {
    let mut buf = [0u8; 10];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for &d in &buf[i..] {
        out.push(char::from(d));
    }
}

impl Gen<'_> {
    fn on(&self, c: &IfCond) -> bool {
        c.eval(&|s| self.opts.enabled.contains(s))
    }

    /// The name of type `id` as shown: its own, or its masked number.
    fn name(&mut self, id: EntityId) -> String {
        let mut n = String::with_capacity(4);
        self.name_into(id, &mut n);
        n
    }

    /// [`Gen::name`], appended to `out`.
    fn name_into(&mut self, id: EntityId, out: &mut String) {
        if self.opts.unmask {
            out.push_str(&self.schema.entities[id].name);
            return;
        }
        let Some(slot) = self.numbers.get_mut(id) else {
            out.push_str(&self.schema.entities[id].name);
            return;
        };
        if *slot == u32::MAX {
            *slot = self.next_number;
            self.next_number += 1;
        }
        push_u32(out, *slot);
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
        let mut out = String::new();
        self.use_type_into(t, &mut out);
        out
    }

    /// Record that type `t` is used, and append its name as shown.
    fn use_type_into(&mut self, t: EntityId, out: &mut String) {
        let mut t = t;
        let s = self.schema;
        if t >= s.entities.len() {
            // Only an unchecked schema has unresolved references.
            return;
        }
        if self.json_type(t) == "int" {
            t = self.int.unwrap_or(t);
        } else if let EntityKind::Array(a) = &s.entities[t].kind {
            if a.element < s.entities.len() && self.json_type(a.element) == "int" {
                t = self.int_list.unwrap_or(t);
            }
        }
        if let EntityKind::Builtin(b) = &s.entities[t].kind {
            // Legacy pseudo-types are plain 'any' on the wire.
            if b.json_type == "value" && s.entities[t].name != "any" {
                t = self.any.unwrap_or(t);
            }
        }
        if let Some(u) = self.used_set.get_mut(t) {
            if !*u {
                *u = true;
                self.used.push(t);
            }
        }
        match &s.entities[t].kind {
            EntityKind::Builtin(_) => out.push_str(&s.entities[t].name),
            EntityKind::Array(a) => {
                let el = a.element;
                out.push('[');
                if el < s.entities.len() {
                    self.use_type_into(el, out);
                } else {
                    out.push_str(&a.element_name);
                }
                out.push(']');
            }
            _ => self.name_into(t, out),
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
                self.push(e.name.clone().into(), meta, &e.ifcond, &e.features);
            }
            EntityKind::Event(ev) => {
                let arg = ev.arg_type.unwrap_or(s.q_empty());
                let arg_type = self.use_type(arg);
                self.push(
                    e.name.clone().into(),
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
                self.push(e.name.clone().into(), meta, &IfCond::Always, &[]);
            }
            EntityKind::Enum(en) => {
                let mut members = Vec::new();
                let mut values = Vec::new();
                for m in &en.members {
                    if self.on(&m.ifcond) {
                        let features = self.features(&m.features);
                        members.push(SchemaInfoEnumMember {
                            name: m.name.clone().into(),
                            features,
                        });
                        values.push(m.name.to_string());
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
                            name: m.name.clone().into(),
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
                                    case: v.name.clone().into(),
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
                        tag: tag.map(Into::into),
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

impl<'a> Gen<'a> {
    fn new(schema: &'a Schema, opts: &'a Options) -> Gen<'a> {
        Gen {
            schema,
            opts,
            numbers: vec![u32::MAX; schema.entities.len()],
            next_number: 0,
            used: Vec::new(),
            used_set: vec![false; schema.entities.len()],
            out: Vec::new(),
            int: schema.lookup_type("int"),
            int_list: schema.lookup_type("intList"),
            any: schema.lookup_type("any"),
        }
    }
}

/// The introspection of a checked schema.
pub fn introspect(schema: &Schema, opts: &Options) -> Vec<SchemaInfo> {
    let mut g = Gen::new(schema, opts);
    g.out.reserve(schema.entities.len());
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

/// The JSON text of the introspection of a checked schema: the same text
/// as `to_json_text(&introspect(schema, opts))`, written as the schema is
/// walked, without building the [`SchemaInfo`] list.
pub fn introspect_json_text(schema: &Schema, opts: &Options) -> String {
    let mut j = JsonGen {
        g: Gen::new(schema, opts),
        w: JsonWriter {
            out: String::with_capacity(schema.entities.len() * 160 + 2),
        },
        names: String::new(),
        spans: Vec::new(),
        first: true,
    };
    j.w.out.push('[');
    for m in &schema.modules {
        for &id in &m.entities {
            j.visit_command_or_event(id);
        }
    }
    let mut i = 0;
    while i < j.g.used.len() {
        let t = j.g.used[i];
        j.visit_type(t);
        i += 1;
    }
    j.w.out.push(']');
    j.w.out
}

/// [`Gen`]'s walk, writing JSON text instead of [`SchemaInfo`] values.
/// Type names as shown are collected first (in the order [`Gen`] asks for
/// them: numbering depends on it), then the element is written.
struct JsonGen<'a> {
    g: Gen<'a>,
    w: JsonWriter,
    /// Names as shown for the current element, one after the other.
    names: String,
    spans: Vec<(usize, usize)>,
    /// No element written yet.
    first: bool,
}

impl JsonGen<'_> {
    /// Note type `t` as used; its name as shown becomes the next span.
    fn use_type(&mut self, t: EntityId) {
        let start = self.names.len();
        self.g.use_type_into(t, &mut self.names);
        self.spans.push((start, self.names.len()));
    }

    /// Start an element: `{"name":N,"meta-type":M`.
    fn open(&mut self, name: &str, meta: &str) {
        self.w.sep(&mut self.first);
        self.w.out.push('{');
        self.w.str_field(true, "name", name);
        self.w.str_field(false, "meta-type", meta);
    }

    /// Note `id`'s name as shown after the names already noted; unless its condition is off,
    /// start its element (meta-type `meta`) up to `,"members":[` and return the names, taken
    /// out of `self.names` for the caller to put back.
    #[inline]
    fn open_with_members(&mut self, id: EntityId, ifcond: &IfCond, meta: &str) -> Option<String> {
        let start = self.names.len();
        self.g.name_into(id, &mut self.names);
        if !self.g.on(ifcond) {
            return None;
        }
        let names = std::mem::take(&mut self.names);
        self.open(&names[start..], meta);
        self.w.key(false, "members");
        self.w.out.push('[');
        Some(names)
    }

    /// `,"features":[...]` (if there are any, enabled or not) and `}`.
    fn close(&mut self, fs: &[crate::model::Feature]) {
        self.features(fs);
        self.w.out.push('}');
    }

    fn features(&mut self, fs: &[crate::model::Feature]) {
        if fs.is_empty() {
            return;
        }
        self.w.key(false, "features");
        self.w.out.push('[');
        let mut first = true;
        for f in fs {
            if self.g.on(&f.ifcond) {
                self.w.sep(&mut first);
                self.w.string(&f.name);
            }
        }
        self.w.out.push(']');
    }

    fn visit_command_or_event(&mut self, id: EntityId) {
        let s = self.g.schema;
        let e = &s.entities[id];
        self.names.clear();
        self.spans.clear();
        match &e.kind {
            EntityKind::Command(c) => {
                self.use_type(c.arg_type.unwrap_or(s.q_empty()));
                self.use_type(c.ret_type.unwrap_or(s.q_empty()));
                if !self.g.on(&e.ifcond) {
                    return;
                }
                self.open(&e.name, "command");
                let (a, r) = (self.spans[0], self.spans[1]);
                self.w.str_field(false, "arg-type", &self.names[a.0..a.1]);
                self.w.str_field(false, "ret-type", &self.names[r.0..r.1]);
                if c.allow_oob {
                    self.w.key(false, "allow-oob");
                    self.w.out.push_str("true");
                }
                self.close(&e.features);
            }
            EntityKind::Event(ev) => {
                self.use_type(ev.arg_type.unwrap_or(s.q_empty()));
                if !self.g.on(&e.ifcond) {
                    return;
                }
                self.open(&e.name, "event");
                let a = self.spans[0];
                self.w.str_field(false, "arg-type", &self.names[a.0..a.1]);
                self.close(&e.features);
            }
            _ => {}
        }
    }

    fn visit_type(&mut self, id: EntityId) {
        let s = self.g.schema;
        let e = &s.entities[id];
        self.names.clear();
        self.spans.clear();
        match &e.kind {
            EntityKind::Builtin(b) => {
                self.open(&e.name, "builtin");
                self.w.str_field(false, "json-type", b.json_type);
                self.w.out.push('}');
            }
            EntityKind::Enum(en) => {
                let Some(names) = self.open_with_members(id, &e.ifcond, "enum") else {
                    return;
                };
                self.names = names;
                let mut first = true;
                for m in &en.members {
                    if !self.g.on(&m.ifcond) {
                        continue;
                    }
                    self.w.sep(&mut first);
                    self.w.out.push('{');
                    self.w.str_field(true, "name", &m.name);
                    self.features(&m.features);
                    self.w.out.push('}');
                }
                self.w.out.push(']');
                self.w.key(false, "values");
                self.w.out.push('[');
                let mut first = true;
                for m in &en.members {
                    if !self.g.on(&m.ifcond) {
                        continue;
                    }
                    self.w.sep(&mut first);
                    self.w.string(&m.name);
                }
                self.w.out.push(']');
                self.close(&e.features);
            }
            EntityKind::Array(a) => {
                if a.element >= s.entities.len() {
                    return;
                }
                self.names.push('[');
                self.use_type(a.element);
                self.names.push(']');
                if !self.g.on(s.ifcond(id)) {
                    return;
                }
                let names = std::mem::take(&mut self.names);
                self.open(&names, "array");
                let el = self.spans[0];
                self.w.str_field(false, "element-type", &names[el.0..el.1]);
                self.w.out.push('}');
                self.names = names;
            }
            EntityKind::Object(o) => {
                for r in &o.members {
                    self.use_type(s.member(*r).typ);
                }
                if let Some(b) = &o.branches {
                    for v in &b.variants {
                        self.use_type(v.typ);
                    }
                }
                let Some(names) = self.open_with_members(id, &e.ifcond, "object") else {
                    return;
                };
                let mut first = true;
                for (k, r) in o.members.iter().enumerate() {
                    let m = s.member(*r);
                    if !self.g.on(&m.ifcond) {
                        continue;
                    }
                    self.w.sep(&mut first);
                    let (a, b) = self.spans[k];
                    self.w.member_head(&m.name, &names[a..b], m.optional);
                    self.features(&m.features);
                    self.w.out.push('}');
                }
                self.w.out.push(']');
                if let Some(b) = &o.branches {
                    let tag = match b.tag_member {
                        Some(r) => s.member(r).name.as_str(),
                        None => b.tag_name.as_str(),
                    };
                    self.w.str_field(false, "tag", tag);
                    self.w.key(false, "variants");
                    self.w.out.push('[');
                    let mut first = true;
                    for (k, v) in b.variants.iter().enumerate() {
                        if !self.g.on(&v.ifcond) {
                            continue;
                        }
                        self.w.sep(&mut first);
                        let (a, b) = self.spans[o.members.len() + k];
                        self.w.variant(&v.name, &names[a..b]);
                    }
                    self.w.out.push(']');
                }
                self.names = names;
                self.close(&e.features);
            }
            EntityKind::Alternate(a) => {
                for v in &a.variants {
                    self.use_type(v.typ);
                }
                let Some(names) = self.open_with_members(id, &e.ifcond, "alternate") else {
                    return;
                };
                let mut first = true;
                for (k, v) in a.variants.iter().enumerate() {
                    if !self.g.on(&v.ifcond) {
                        continue;
                    }
                    self.w.sep(&mut first);
                    let (x, y) = self.spans[k];
                    self.w.alternative(&names[x..y]);
                }
                self.w.out.push(']');
                self.names = names;
                self.close(&e.features);
            }
            _ => {}
        }
    }
}

/// The JSON text of an introspection (one line): exactly what
/// `serde_json::to_string` makes of it, written directly.
pub fn to_json_text(infos: &[SchemaInfo]) -> Result<String, serde_json::Error> {
    let mut w = JsonWriter {
        out: String::with_capacity(infos.len() * 96 + 2),
    };
    w.out.push('[');
    for (i, info) in infos.iter().enumerate() {
        if i > 0 {
            w.out.push(',');
        }
        w.info(info);
    }
    w.out.push(']');
    Ok(w.out)
}

/// Writes [`SchemaInfo`] values as JSON text, in serde's field order.
struct JsonWriter {
    out: String,
}

impl JsonWriter {
    /// A JSON string, escaped as serde_json escapes it.
    fn string(&mut self, s: &str) {
        let out = &mut self.out;
        let b = s.as_bytes();
        /// Bytes JSON strings escape.
        const ESC: [bool; 256] = {
            let mut t = [false; 256];
            let mut c = 0;
            while c < 0x20 {
                t[c] = true;
                c += 1;
            }
            t[b'"' as usize] = true;
            t[b'\\' as usize] = true;
            t
        };
        if !b.iter().any(|&c| ESC[usize::from(c)]) {
            out.reserve(b.len() + 2);
            out.push('"');
            out.push_str(s);
            out.push('"');
            return;
        }
        out.push('"');
        let mut start = 0;
        for (i, &c) in b.iter().enumerate() {
            let esc: &str = match c {
                b'"' => "\\\"",
                b'\\' => "\\\\",
                b'\n' => "\\n",
                b'\r' => "\\r",
                b'\t' => "\\t",
                0x08 => "\\b",
                0x0c => "\\f",
                0..=0x1f => "",
                _ => continue,
            };
            out.push_str(&s[start..i]);
            if esc.is_empty() {
                out.push_str("\\u00");
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.push(char::from(HEX[usize::from(c >> 4)]));
                out.push(char::from(HEX[usize::from(c & 0xf)]));
            } else {
                out.push_str(esc);
            }
            start = i + 1;
        }
        out.push_str(&s[start..]);
        out.push('"');
    }

    /// `,"key":` (or without the comma for the first key).
    fn key(&mut self, first: bool, k: &str) {
        self.out.reserve(k.len() + 4);
        if !first {
            self.out.push(',');
        }
        self.out.push('"');
        self.out.push_str(k);
        self.out.push_str("\":");
    }

    /// `,` before every item of a list but the first.
    #[inline]
    fn sep(&mut self, first: &mut bool) {
        if !*first {
            self.out.push(',');
        }
        *first = false;
    }

    /// An object member up to its features: `{"name":N,"type":T` and, if
    /// optional, `,"default":null`.
    #[inline]
    fn member_head(&mut self, name: &str, typ: &str, optional: bool) {
        self.out.push('{');
        self.str_field(true, "name", name);
        self.str_field(false, "type", typ);
        if optional {
            self.key(false, "default");
            self.out.push_str("null");
        }
    }

    /// A variant of an object: `{"case":C,"type":T}`.
    #[inline]
    fn variant(&mut self, case: &str, typ: &str) {
        self.out.push('{');
        self.str_field(true, "case", case);
        self.str_field(false, "type", typ);
        self.out.push('}');
    }

    /// A member of an alternate: `{"type":T}`.
    #[inline]
    fn alternative(&mut self, typ: &str) {
        self.out.push('{');
        self.str_field(true, "type", typ);
        self.out.push('}');
    }

    fn str_field(&mut self, first: bool, k: &str, v: &str) {
        self.key(first, k);
        self.string(v);
    }

    fn strings(&mut self, v: &[String]) {
        self.out.push('[');
        for (i, s) in v.iter().enumerate() {
            if i > 0 {
                self.out.push(',');
            }
            self.string(s);
        }
        self.out.push(']');
    }

    fn features(&mut self, f: &Option<Vec<String>>) {
        if let Some(f) = f {
            self.key(false, "features");
            self.strings(f);
        }
    }

    fn list<T>(&mut self, items: &[T], mut each: impl FnMut(&mut Self, &T)) {
        self.out.push('[');
        for (i, x) in items.iter().enumerate() {
            if i > 0 {
                self.out.push(',');
            }
            each(self, x);
        }
        self.out.push(']');
    }

    fn info(&mut self, info: &SchemaInfo) {
        self.out.push('{');
        self.str_field(true, "name", &info.name);
        match &info.meta {
            SchemaInfoMeta::Builtin { json_type } => {
                self.str_field(false, "meta-type", "builtin");
                self.str_field(false, "json-type", json_type);
            }
            SchemaInfoMeta::Enum { members, values } => {
                self.str_field(false, "meta-type", "enum");
                self.key(false, "members");
                self.list(members, |w, m| {
                    w.out.push('{');
                    w.str_field(true, "name", &m.name);
                    w.features(&m.features);
                    w.out.push('}');
                });
                if let Some(v) = values {
                    self.key(false, "values");
                    self.strings(v);
                }
            }
            SchemaInfoMeta::Array { element_type } => {
                self.str_field(false, "meta-type", "array");
                self.str_field(false, "element-type", element_type);
            }
            SchemaInfoMeta::Object {
                members,
                tag,
                variants,
            } => {
                self.str_field(false, "meta-type", "object");
                self.key(false, "members");
                self.list(members, |w, m| {
                    w.member_head(&m.name, &m.typ, m.optional);
                    w.features(&m.features);
                    w.out.push('}');
                });
                if let Some(t) = tag {
                    self.str_field(false, "tag", t);
                }
                if let Some(v) = variants {
                    self.key(false, "variants");
                    self.list(v, |w, v| w.variant(&v.case, &v.typ));
                }
            }
            SchemaInfoMeta::Alternate { members } => {
                self.str_field(false, "meta-type", "alternate");
                self.key(false, "members");
                self.list(members, |w, m| w.alternative(&m.typ));
            }
            SchemaInfoMeta::Command {
                arg_type,
                ret_type,
                allow_oob,
            } => {
                self.str_field(false, "meta-type", "command");
                self.str_field(false, "arg-type", arg_type);
                self.str_field(false, "ret-type", ret_type);
                if let Some(b) = allow_oob {
                    self.key(false, "allow-oob");
                    self.out.push_str(if *b { "true" } else { "false" });
                }
            }
            SchemaInfoMeta::Event { arg_type } => {
                self.str_field(false, "meta-type", "event");
                self.str_field(false, "arg-type", arg_type);
            }
        }
        self.features(&info.features);
        self.out.push('}');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(name: &str, optional: bool, features: Option<Vec<String>>) -> SchemaInfoObjectMember {
        SchemaInfoObjectMember {
            name: name.to_string(),
            typ: "int".to_string(),
            optional,
            features,
        }
    }

    /// `introspect_json_text` writes what `to_json_text(&introspect(..))`
    /// writes: QEMU's schemas (with the symbols of real builds, with none,
    /// masked and unmasked) and every schema of QEMU's test cases that
    /// loads.
    #[test]
    fn direct_json_text_equals_list_json_text() {
        let base = qmpkit_testkit::data::path("qemu-ref");
        let mut schemas: Vec<std::path::PathBuf> = [
            "schema-10.0.2/qapi/qapi-schema.json",
            "schema-10.0.2/storage-daemon/qapi/qapi-schema.json",
            "schema-7.2.22/qapi/qapi-schema.json",
            "schema-7.2.22/storage-daemon/qapi/qapi-schema.json",
        ]
        .iter()
        .map(|p| base.join(p))
        .filter(|p| p.is_file())
        .collect();
        if let Ok(rd) = std::fs::read_dir(base.join("qapi-schema-tests-10.0.2")) {
            let mut cases: Vec<_> = rd
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "json"))
                .collect();
            cases.sort();
            schemas.extend(cases);
        }
        let mut symbols: Vec<String> = Vec::new();
        if let Ok(rd) = std::fs::read_dir(base.join("introspection")) {
            for e in rd.flatten() {
                if e.file_name().to_string_lossy().starts_with("cfg-") {
                    if let Ok(t) = std::fs::read_to_string(e.path()) {
                        symbols.extend(parse_cfg_file(&t));
                    }
                }
            }
        }
        let mut compared = 0;
        for path in &schemas {
            for dialect in [crate::Dialect::Modern, crate::Dialect::Legacy] {
                let Ok(schema) = crate::load(path, dialect) else {
                    continue;
                };
                // Every symbol the schema's conditions name.
                let mut own = Vec::new();
                fn names(c: &IfCond, out: &mut Vec<String>) {
                    match c {
                        IfCond::Always => {}
                        IfCond::Name(n) => out.push(n.clone()),
                        IfCond::All(v) | IfCond::Any(v) => v.iter().for_each(|c| names(c, out)),
                        IfCond::Not(c) => names(c, out),
                    }
                }
                for e in &schema.entities {
                    names(&e.ifcond, &mut own);
                    e.features.iter().for_each(|f| names(&f.ifcond, &mut own));
                    match &e.kind {
                        EntityKind::Enum(en) => en.members.iter().for_each(|m| {
                            names(&m.ifcond, &mut own);
                            m.features.iter().for_each(|f| names(&f.ifcond, &mut own));
                        }),
                        EntityKind::Object(o) => {
                            o.local_members.iter().for_each(|m| {
                                names(&m.ifcond, &mut own);
                                m.features.iter().for_each(|f| names(&f.ifcond, &mut own));
                            });
                            if let Some(b) = &o.branches {
                                b.variants.iter().for_each(|v| names(&v.ifcond, &mut own));
                            }
                        }
                        EntityKind::Alternate(a) => {
                            a.variants.iter().for_each(|v| names(&v.ifcond, &mut own))
                        }
                        _ => {}
                    }
                }
                let half: Vec<String> = own.iter().step_by(2).cloned().collect();
                for unmask in [false, true] {
                    for enabled in [Vec::new(), symbols.clone(), own.clone(), half.clone()] {
                        let opts = Options {
                            enabled: enabled.into_iter().collect(),
                            unmask,
                        };
                        let list = to_json_text(&introspect(&schema, &opts)).unwrap();
                        let direct = introspect_json_text(&schema, &opts);
                        assert_eq!(direct, list, "{}", path.display());
                        compared += 1;
                    }
                }
            }
        }
        assert!(compared > 100, "only {compared} schemas compared");
    }

    #[test]
    fn json_text_is_serde_json_text() {
        let odd = "q\"uo\\te\n\r\t\u{8}\u{c}\u{1}\u{1f}\u{7f}/é€😀".to_string();
        let infos = vec![
            SchemaInfo {
                name: "int".to_string(),
                meta: SchemaInfoMeta::Builtin {
                    json_type: "int".to_string(),
                },
                features: None,
            },
            SchemaInfo {
                name: odd.clone(),
                meta: SchemaInfoMeta::Enum {
                    members: vec![
                        SchemaInfoEnumMember {
                            name: "a".to_string(),
                            features: None,
                        },
                        SchemaInfoEnumMember {
                            name: odd.clone(),
                            features: Some(vec!["f".to_string(), odd.clone()]),
                        },
                    ],
                    values: Some(vec!["a".to_string(), odd.clone()]),
                },
                features: Some(vec![]),
            },
            SchemaInfo {
                name: "[int]".to_string(),
                meta: SchemaInfoMeta::Array {
                    element_type: "int".to_string(),
                },
                features: None,
            },
            SchemaInfo {
                name: "1".to_string(),
                meta: SchemaInfoMeta::Object {
                    members: vec![
                        member("m", false, None),
                        member("n", true, Some(vec!["deprecated".to_string()])),
                    ],
                    tag: Some("m".to_string()),
                    variants: Some(vec![SchemaInfoObjectVariant {
                        case: "c".to_string(),
                        typ: "2".to_string(),
                    }]),
                },
                features: Some(vec!["unstable".to_string()]),
            },
            SchemaInfo {
                name: "2".to_string(),
                meta: SchemaInfoMeta::Object {
                    members: vec![],
                    tag: None,
                    variants: None,
                },
                features: None,
            },
            SchemaInfo {
                name: "3".to_string(),
                meta: SchemaInfoMeta::Alternate {
                    members: vec![SchemaInfoAlternateMember {
                        typ: "int".to_string(),
                    }],
                },
                features: None,
            },
            SchemaInfo {
                name: "cmd".to_string(),
                meta: SchemaInfoMeta::Command {
                    arg_type: "0".to_string(),
                    ret_type: "1".to_string(),
                    allow_oob: Some(true),
                },
                features: None,
            },
            SchemaInfo {
                name: "cmd2".to_string(),
                meta: SchemaInfoMeta::Command {
                    arg_type: "0".to_string(),
                    ret_type: "1".to_string(),
                    allow_oob: Some(false),
                },
                features: None,
            },
            SchemaInfo {
                name: "EV".to_string(),
                meta: SchemaInfoMeta::Event {
                    arg_type: "0".to_string(),
                },
                features: Some(vec!["deprecated".to_string()]),
            },
        ];
        let expected = serde_json::to_string(&infos).unwrap();
        assert_eq!(to_json_text(&infos).unwrap(), expected);
        assert_eq!(to_json_text(&[]).unwrap(), "[]");
    }
}
