//! A model from a live server: the answer of `query-qmp-schema` read back
//! into a [`Schema`].
//!
//! What the answer tells, the model keeps: every command, event and type
//! with its members, optionality, branches, alternatives, enum values,
//! features and `allow-oob`. Names stay as the server gave them, masked
//! numbers included; integer types are all `int` (the server does not say
//! more). What the answer does not tell takes QEMU's defaults:
//! `success-response` and `gen` are on, `allow-preconfig` and `coroutine`
//! off; a command or event is `boxed` when its argument type is a union.
//! Argument and return types that are the empty object the answer uses
//! for "no arguments" / "no return value" become `None`, as in a model
//! built from source; [`Schema::q_empty`] is that object.
//!
//! The built-in types keep the model's own entities (`int`, `str`,
//! `number`, `bool`, `null`, `any`, and their `…List` arrays). Object
//! types are flat: no base, all members local, a union's tag among them.
//!
//! Introspecting the loaded model with [`crate::introspect::Options::unmask`]
//! set gives the answer back, element for element. The order of the types
//! in an answer follows their first use in the server's whole schema,
//! compiled-out parts included; when the visible part alone does not
//! reproduce it, the loader adds *hidden* helper entities whose condition
//! can never hold ([`is_hidden`]), so that introspection lists nothing of
//! them but walks the types in the server's order. Consumers that evaluate
//! conditions never see them; others can skip them with [`is_hidden`].
//!
//! An answer no server gives, which could not be given back, is refused: a
//! type used but not listed (built-in and array types included), a name
//! listed twice (elements, members, enum values, variant cases,
//! alternatives), a command or event after a type, a tag without variants,
//! a built-in type of another name than `int` (`any`) whose JSON type is
//! `int` (`value`). Spellings that say the same thing are not kept apart:
//! an empty feature list, `allow-oob: false`, an enum's `values` beside its
//! `members` (only `members` count).

use super::{
    cname, ArrayType, BuiltinType, Command, Entity, EntityId, EntityKind, EnumMember, EnumType,
    Event, Feature, IfCond, Member, MemberRef, ObjectType, Schema, Variant, UNRESOLVED,
};
use crate::error::QapiError;
use crate::introspect::{SchemaInfo, SchemaInfoMeta};
use crate::source::Dialect;
use serde_json::Value;
use std::collections::HashSet;

/// Module name given to the entities of a loaded answer.
pub const INTROSPECTION_MODULE: &str = "query-qmp-schema";

/// Deepest nesting of array types accepted in an answer.
const MAX_ARRAY_DEPTH: usize = 32;

/// Name prefix of the hidden helper entities (not a valid QAPI name).
const HIDDEN_PREFIX: &str = "#order-";

/// True for a hidden feature (see [`is_hidden`]).
pub fn is_hidden_feature(f: &Feature) -> bool {
    f.name == HIDDEN_PREFIX && f.ifcond == never()
}

/// True for the helper entities the loader adds to keep the server's
/// order of types: they have a condition that never holds.
pub fn is_hidden(e: &Entity) -> bool {
    e.implicit && e.name.starts_with(HIDDEN_PREFIX) && e.ifcond == never()
}

fn never() -> IfCond {
    IfCond::Not(Box::new(IfCond::Always))
}

fn err(msg: impl Into<String>) -> QapiError {
    QapiError::bare(msg)
}

/// The elements of an answer: the bare array, or `{"return": [...]}`.
pub fn answer_elements(v: &Value) -> Option<&Vec<Value>> {
    match v {
        Value::Array(a) => Some(a),
        Value::Object(o) => match o.get("return") {
            Some(Value::Array(a)) => Some(a),
            _ => None,
        },
        _ => None,
    }
}

/// Parse the elements of an answer. Enum types of servers older than
/// QEMU 6.0 list only `values`; their `members` are made from them.
pub fn parse_answer(v: &Value) -> Result<Vec<SchemaInfo>, QapiError> {
    let elems = answer_elements(v).ok_or_else(|| {
        err("not an answer of query-qmp-schema: expected an array or {\"return\": [...]}")
    })?;
    let mut out = Vec::with_capacity(elems.len());
    for (i, e) in elems.iter().enumerate() {
        let mut e = e.clone();
        if let Value::Object(o) = &mut e {
            if o.get("meta-type").and_then(Value::as_str) == Some("enum")
                && !o.contains_key("members")
            {
                if let Some(Value::Array(vals)) = o.get("values") {
                    let members: Vec<Value> = vals
                        .iter()
                        .map(|v| serde_json::json!({ "name": v }))
                        .collect();
                    o.insert("members".to_string(), Value::Array(members));
                }
            }
        }
        let info: SchemaInfo = serde_json::from_value(e).map_err(|x| {
            let name = elems[i]
                .get("name")
                .and_then(Value::as_str)
                .map(|n| format!(" ('{n}')"))
                .unwrap_or_default();
            err(format!("query-qmp-schema element {i}{name}: {x}"))
        })?;
        out.push(info);
    }
    Ok(out)
}

fn json_type_static(t: &str) -> Option<&'static str> {
    Some(match t {
        "string" => "string",
        "number" => "number",
        "int" => "int",
        "boolean" => "boolean",
        "null" => "null",
        "value" => "value",
        _ => return None,
    })
}

/// Element type name of an array reference `[T]`.
fn array_element(name: &str) -> Option<&str> {
    name.strip_prefix('[').and_then(|r| r.strip_suffix(']'))
}

/// Features as the answer lists them. An empty list (all of the
/// definition's features compiled out) is kept as one hidden feature, so
/// that introspection shows the empty list again.
fn features(f: &Option<Vec<String>>) -> Vec<Feature> {
    match f {
        None => Vec::new(),
        Some(v) if v.is_empty() => vec![Feature {
            name: HIDDEN_PREFIX.to_string(),
            ifcond: never(),
            info: None,
        }],
        Some(v) => v
            .iter()
            .map(|n| Feature {
                name: n.clone(),
                ifcond: IfCond::Always,
                info: None,
            })
            .collect(),
    }
}

struct Loader {
    s: Schema,
    module: usize,
    /// Names of the answer's elements: a type it uses must be among them
    /// (the model's own built-in types and arrays included), or
    /// introspection would list what the answer does not.
    listed: HashSet<String>,
}

impl Loader {
    fn define(&mut self, e: Entity) -> Result<EntityId, QapiError> {
        if let Some(other) = self.s.lookup(&e.name) {
            let o = &self.s.entities[other];
            // The predefined implicit types (`QType`, `q_empty`) may be
            // listed by an unmasked answer: the answer's definition wins.
            if o.implicit && o.info.is_none() && !matches!(o.kind, EntityKind::Builtin(_)) {
                let mut e = e;
                e.implicit = true;
                self.s.entities[other] = e;
                return Ok(other);
            }
            return Err(err(format!("'{}' is defined twice", e.name)));
        }
        self.s.entities.push(e);
        let id = self.s.entities.len() - 1;
        self.s.by_name.insert(&self.s.entities[id].name, id);
        Ok(id)
    }

    fn entity(&self, name: String, implicit: bool, kind: EntityKind) -> Entity {
        Entity {
            name: name.into(),
            info: None,
            doc: None,
            ifcond: IfCond::Always,
            features: Vec::new(),
            implicit,
            module: self.module,
            kind,
        }
    }

    /// The entity of a type reference as the answer writes it.
    fn resolve(&mut self, name: &str, user: &str) -> Result<EntityId, QapiError> {
        if !self.listed.contains(name) {
            return Err(err(format!(
                "'{user}' uses type '{name}', which is not defined"
            )));
        }
        let mut base = name;
        let mut depth = 0usize;
        while let Some(el) = array_element(base) {
            base = el;
            depth += 1;
            if depth > MAX_ARRAY_DEPTH {
                return Err(err(format!(
                    "'{user}' uses type '{name}', nested more than {MAX_ARRAY_DEPTH} arrays deep"
                )));
            }
        }
        let mut id = match self.s.lookup_type(base) {
            Some(id) if !matches!(self.s.entities[id].kind, EntityKind::Array(_)) => id,
            _ => {
                return Err(err(format!(
                    "'{user}' uses type '{name}', which is not defined"
                )))
            }
        };
        for _ in 0..depth {
            id = self.array_of(id)?;
        }
        Ok(id)
    }

    /// The array type of `el`, created on first use (`ElemList` when that
    /// name is free, else `[Elem]`).
    fn array_of(&mut self, el: EntityId) -> Result<EntityId, QapiError> {
        let el_name = self.s.entities[el].name.clone();
        let list = format!("{el_name}List");
        if let Some(id) = self.s.lookup_type(&list) {
            if let EntityKind::Array(a) = &mut self.s.entities[id].kind {
                if a.element == UNRESOLVED || a.element == el {
                    a.element = el;
                    return Ok(id);
                }
            }
        }
        let bracket = format!("[{el_name}]");
        if let Some(id) = self.s.lookup_type(&bracket) {
            return Ok(id);
        }
        let name = if self.s.lookup(&list).is_none() {
            list
        } else {
            bracket
        };
        let e = self.entity(
            name,
            true,
            EntityKind::Array(ArrayType {
                element_name: el_name,
                element: el,
            }),
        );
        self.define(e)
    }
}

/// Load the answer of `query-qmp-schema` (the bare array or the whole
/// `{"return": [...]}` reply) into a model.
pub fn load_introspection(v: &Value) -> Result<Schema, QapiError> {
    let infos = parse_answer(v)?;
    load_schema_infos(&infos)
}

/// [`load_introspection`] from parsed elements.
pub fn load_schema_infos(infos: &[SchemaInfo]) -> Result<Schema, QapiError> {
    let mut s = Schema::new(INTROSPECTION_MODULE, Dialect::Modern);
    let module = s.module_for_file(INTROSPECTION_MODULE);
    // Built-in arrays know their elements from the start.
    for id in 0..s.entities.len() {
        if let EntityKind::Array(a) = &s.entities[id].kind {
            if let Some(el) = s.lookup_type(&a.element_name) {
                if let EntityKind::Array(a) = &mut s.entities[id].kind {
                    a.element = el;
                }
            }
        }
    }
    let mut listed = HashSet::with_capacity(infos.len());
    let mut first_type: Option<&str> = None;
    for i in infos {
        if !listed.insert(i.name.clone()) {
            return Err(err(format!("'{}' is defined twice", i.name)));
        }
        // Introspection lists every command and event before the types.
        match (&i.meta, first_type) {
            (SchemaInfoMeta::Command { .. } | SchemaInfoMeta::Event { .. }, Some(t)) => {
                return Err(err(format!(
                    "'{}' is listed after type '{t}' (commands and events come first)",
                    i.name
                )))
            }
            (SchemaInfoMeta::Command { .. } | SchemaInfoMeta::Event { .. }, None) => {}
            (_, None) => first_type = Some(&i.name),
            _ => {}
        }
    }
    let mut l = Loader { s, module, listed };

    // Pass 1: one entity per element, references unresolved.
    let mut ids: Vec<Option<EntityId>> = Vec::with_capacity(infos.len());
    for info in infos {
        let kind = match &info.meta {
            SchemaInfoMeta::Builtin { json_type } => {
                let jt = json_type_static(json_type).ok_or_else(|| {
                    err(format!(
                        "built-in type '{}' has unknown json-type '{json_type}'",
                        info.name
                    ))
                })?;
                match l.s.lookup_type(&info.name) {
                    Some(id) => match &l.s.entities[id].kind {
                        EntityKind::Builtin(b) if b.json_type == jt => {
                            ids.push(Some(id));
                            continue;
                        }
                        _ => {
                            return Err(err(format!(
                                "built-in type '{}' does not match the model's",
                                info.name
                            )))
                        }
                    },
                    // Introspection shows every integer type as `int` and
                    // every other `value` type as `any`: no answer lists one
                    // under another name.
                    None if jt == "int" || jt == "value" => {
                        return Err(err(format!(
                            "built-in type '{}' has json-type '{jt}', shown as '{}'",
                            info.name,
                            if jt == "int" { "int" } else { "any" }
                        )))
                    }
                    None => EntityKind::Builtin(BuiltinType { json_type: jt }),
                }
            }
            // Arrays are made from their element when referenced.
            SchemaInfoMeta::Array { .. } => {
                ids.push(None);
                continue;
            }
            SchemaInfoMeta::Enum { members, .. } => {
                once_each(
                    "enum type",
                    &info.name,
                    "value",
                    members.iter().map(|m| m.name.as_str()),
                )?;
                EntityKind::Enum(EnumType {
                    members: members
                        .iter()
                        .map(|m| EnumMember {
                            name: m.name.clone().into(),
                            ifcond: IfCond::Always,
                            features: features(&m.features),
                            info: None,
                        })
                        .collect(),
                    prefix: None,
                })
            }
            SchemaInfoMeta::Object { .. } => EntityKind::Object(ObjectType {
                base_name: None,
                base: None,
                local_members: Vec::new().into(),
                branches: None,
                members: Vec::new().into(),
                state: super::CheckState::Done,
            }),
            SchemaInfoMeta::Alternate { .. } => EntityKind::Alternate(super::AlternateType {
                variants: Vec::new().into(),
            }),
            SchemaInfoMeta::Command { allow_oob, .. } => EntityKind::Command(Command {
                arg_type_name: None,
                arg_type: None,
                ret_type_name: None,
                ret_type: None,
                gen: true,
                success_response: true,
                boxed: false,
                allow_oob: allow_oob.unwrap_or(false),
                allow_preconfig: false,
                coroutine: false,
            }),
            SchemaInfoMeta::Event { .. } => EntityKind::Event(Event {
                arg_type_name: None,
                arg_type: None,
                boxed: false,
            }),
        };
        let mut e = l.entity(info.name.clone(), false, kind);
        e.features = features(&info.features);
        let id = l.define(e)?;
        ids.push(Some(id));
    }

    // Pass 2: resolve references.
    for (info, id) in infos.iter().zip(&ids) {
        match &info.meta {
            SchemaInfoMeta::Array { element_type } => {
                let want = array_element(&info.name);
                if want != Some(element_type.as_str()) {
                    return Err(err(format!(
                        "array type '{}' has element-type '{element_type}'",
                        info.name
                    )));
                }
                l.resolve(&info.name, &info.name)?;
            }
            SchemaInfoMeta::Object {
                members,
                tag,
                variants,
            } => {
                let Some(id) = *id else { continue };
                once_each(
                    "object type",
                    &info.name,
                    "member",
                    members.iter().map(|m| m.name.as_str()),
                )?;
                once_each(
                    "object type",
                    &info.name,
                    "variant",
                    variants.iter().flatten().map(|v| v.case.as_str()),
                )?;
                let mut local = Vec::with_capacity(members.len());
                for m in members {
                    let t = l.resolve(&m.typ, &info.name)?;
                    local.push(Member {
                        name: m.name.clone().into(),
                        type_name: l.s.entities[t].name.clone(),
                        typ: t,
                        optional: m.optional,
                        ifcond: IfCond::Always,
                        features: features(&m.features),
                        info: None,
                        defined_in: id,
                        cname_hash: cname::c_name_hash(&m.name),
                    });
                }
                let branches = match (tag, variants) {
                    (Some(_), None) => {
                        return Err(err(format!(
                            "object type '{}' has a tag but no variants",
                            info.name
                        )))
                    }
                    (Some(tag), vs) => {
                        let index = local.iter().position(|m| &m.name == tag).ok_or_else(|| {
                            err(format!(
                                "union '{}' has tag '{tag}', which is not a member",
                                info.name
                            ))
                        })?;
                        let mut out = Vec::new();
                        for v in vs.iter().flatten() {
                            let t = l.resolve(&v.typ, &info.name)?;
                            out.push(Variant {
                                name: v.case.clone().into(),
                                type_name: l.s.entities[t].name.clone(),
                                typ: t,
                                ifcond: IfCond::Always,
                                info: None,
                                defined_in: id,
                            });
                        }
                        Some(Box::new(super::Branches {
                            tag_name: tag.clone().into(),
                            tag_member: Some(MemberRef { owner: id, index }),
                            variants: out.into(),
                        }))
                    }
                    (None, Some(_)) => {
                        return Err(err(format!(
                            "object type '{}' has variants but no tag",
                            info.name
                        )))
                    }
                    (None, None) => None,
                };
                let refs = (0..local.len())
                    .map(|index| MemberRef { owner: id, index })
                    .collect();
                if let EntityKind::Object(o) = &mut l.s.entities[id].kind {
                    o.local_members = local.into();
                    o.members = refs;
                    o.branches = branches.map(Into::into);
                }
            }
            SchemaInfoMeta::Alternate { members } => {
                let Some(id) = *id else { continue };
                let mut vs = Vec::with_capacity(members.len());
                for m in members {
                    let t = l.resolve(&m.typ, &info.name)?;
                    let name = alternative_name(&l.s, t);
                    vs.push(Variant {
                        name: name.into(),
                        type_name: l.s.entities[t].name.clone(),
                        typ: t,
                        ifcond: IfCond::Always,
                        info: None,
                        defined_in: id,
                    });
                }
                once_each(
                    "alternate type",
                    &info.name,
                    "alternative",
                    vs.iter().map(|v| v.name.as_str()),
                )?;
                if let EntityKind::Alternate(a) = &mut l.s.entities[id].kind {
                    a.variants = vs.into();
                }
            }
            _ => {}
        }
    }

    // The empty object standing for "no arguments": the one most
    // commands without arguments use.
    let q_empty = pick_q_empty(&mut l, infos)?;
    if let Some(q) = q_empty {
        l.s.q_empty = q;
    }

    // Pass 3: commands and events.
    for (info, id) in infos.iter().zip(&ids) {
        let Some(id) = *id else { continue };
        match &info.meta {
            SchemaInfoMeta::Command {
                arg_type, ret_type, ..
            } => {
                let a = l.resolve(arg_type, &info.name)?;
                let r = l.resolve(ret_type, &info.name)?;
                let boxed = is_union(&l.s, a);
                let (an, a) = opt_type(&l.s, a, q_empty);
                let (rn, r) = opt_type(&l.s, r, q_empty);
                if let EntityKind::Command(c) = &mut l.s.entities[id].kind {
                    c.arg_type_name = an.map(Into::into);
                    c.arg_type = a;
                    c.ret_type_name = rn.map(Into::into);
                    c.ret_type = r;
                    c.boxed = boxed;
                }
            }
            SchemaInfoMeta::Event { arg_type } => {
                let a = l.resolve(arg_type, &info.name)?;
                let boxed = is_union(&l.s, a);
                let (an, a) = opt_type(&l.s, a, q_empty);
                if let EntityKind::Event(ev) = &mut l.s.entities[id].kind {
                    ev.arg_type_name = an.map(Into::into);
                    ev.arg_type = a;
                    ev.boxed = boxed;
                }
            }
            _ => {}
        }
        l.s.modules[l.module].entities.push(id);
    }

    keep_order(&mut l, infos)?;
    Ok(l.s)
}

/// Refuse a name given twice among an element's members, values,
/// variants or alternatives (QEMU never lists one twice; the model and its
/// comparison go by name).
fn once_each<'a>(
    kind: &str,
    owner: &str,
    what: &str,
    names: impl Iterator<Item = &'a str>,
) -> Result<(), QapiError> {
    let mut seen = HashSet::new();
    for n in names {
        if !seen.insert(n) {
            return Err(err(format!("{kind} '{owner}' has {what} '{n}' twice")));
        }
    }
    Ok(())
}

/// The name QEMU gives an alternative: its type's name (arrays by their
/// `…List` name).
fn alternative_name(s: &Schema, t: EntityId) -> String {
    s.entities[t].name.clone().into()
}

fn is_union(s: &Schema, t: EntityId) -> bool {
    matches!(&s.entities[t].kind, EntityKind::Object(o) if o.branches.is_some())
}

fn opt_type(
    s: &Schema,
    t: EntityId,
    q_empty: Option<EntityId>,
) -> (Option<String>, Option<EntityId>) {
    if Some(t) == q_empty {
        (None, None)
    } else {
        (Some(s.entities[t].name.clone().into()), Some(t))
    }
}

fn is_empty_object(s: &Schema, t: EntityId) -> bool {
    matches!(&s.entities[t].kind,
        EntityKind::Object(o) if o.local_members.is_empty() && o.branches.is_none())
}

fn pick_q_empty(l: &mut Loader, infos: &[SchemaInfo]) -> Result<Option<EntityId>, QapiError> {
    let mut counts: Vec<(EntityId, usize)> = Vec::new();
    for info in infos {
        if let SchemaInfoMeta::Command { arg_type, .. } = &info.meta {
            let t = l.resolve(arg_type, &info.name)?;
            if is_empty_object(&l.s, t) {
                match counts.iter_mut().find(|(id, _)| *id == t) {
                    Some(c) => c.1 += 1,
                    None => counts.push((t, 1)),
                }
            }
        }
    }
    // The most used; the first seen among equals.
    let mut best: Option<(EntityId, usize)> = None;
    for &(id, n) in &counts {
        if best.is_none_or(|(_, bn)| n > bn) {
            best = Some((id, n));
        }
    }
    Ok(best.map(|(id, _)| id))
}

/// Names of the elements introspection lists, in order.
fn listed_names(s: &Schema) -> Vec<String> {
    let opts = crate::introspect::Options {
        unmask: true,
        ..Default::default()
    };
    crate::introspect::introspect(s, &opts)
        .into_iter()
        .map(|i| i.name)
        .collect()
}

/// Add the hidden helpers that make introspection list the types in the
/// answer's order (see the module documentation).
fn keep_order(l: &mut Loader, infos: &[SchemaInfo]) -> Result<(), QapiError> {
    let want: Vec<String> = infos.iter().map(|i| i.name.clone()).collect();
    if listed_names(&l.s) == want {
        return Ok(());
    }
    // The types in the answer's order, as model entities.
    let mut order: Vec<EntityId> = Vec::new();
    for info in infos {
        if matches!(
            info.meta,
            SchemaInfoMeta::Command { .. } | SchemaInfoMeta::Event { .. }
        ) {
            continue;
        }
        order.push(l.resolve(&info.name, &info.name)?);
    }
    // First phase of introspection: the argument and return types of the
    // commands and events, in order. A type listed before the next one
    // these would use was used by a command the server compiled out:
    // a hidden event uses it at that spot.
    let visible: Vec<EntityId> = l.s.modules[l.module].entities.clone().into();
    let mut used: HashSet<EntityId> = HashSet::new();
    let mut p = 0usize;
    let mut module_list: Vec<EntityId> = Vec::with_capacity(visible.len());
    let mut hidden = 0usize;
    // A type listed between a command's argument type and its return type
    // was the return type of a compiled-out command taking the same
    // arguments: a hidden command uses both at that spot.
    for &c in &visible {
        let uses = root_uses(&l.s, c);
        for (j, &root) in uses.iter().enumerate() {
            let mut next = Vec::new();
            {
                let mut tmp = used.clone();
                use_seq(&l.s, root, &mut tmp, &mut next);
            }
            let Some(&first) = next.first() else {
                continue;
            };
            let mut gap = 0usize;
            while p < order.len() && order[p] != first {
                if used.contains(&order[p]) {
                    p += 1;
                    continue;
                }
                let t = order[p];
                let helper = if j > 0 && gap == 0 {
                    hidden_command(l, &mut hidden, c, t)?
                } else {
                    hidden_event(l, &mut hidden, t)?
                };
                gap += 1;
                module_list.push(helper);
                let mut pushed = Vec::new();
                use_seq(&l.s, t, &mut used, &mut pushed);
                while p < order.len() && used.contains(&order[p]) {
                    p += 1;
                }
            }
            for t in next {
                used.insert(t);
            }
            while p < order.len() && used.contains(&order[p]) {
                p += 1;
            }
        }
        module_list.push(c);
    }
    l.s.modules[l.module].entities = module_list.into();
    if listed_names(&l.s) == want {
        return Ok(());
    }
    // Second phase: the remaining types in order, as members of a hidden
    // object that a hidden event at the very start uses, so that it is
    // the first type whose members introspection walks.
    let rest: Vec<EntityId> = order[p..].to_vec();
    let obj_name = format!("{HIDDEN_PREFIX}{hidden}");
    hidden += 1;
    let mut obj = l.entity(
        obj_name,
        true,
        EntityKind::Object(ObjectType {
            base_name: None,
            base: None,
            local_members: Vec::new().into(),
            branches: None,
            members: Vec::new().into(),
            state: super::CheckState::Done,
        }),
    );
    obj.ifcond = never();
    let obj_id = l.define(obj)?;
    let local: Vec<Member> = rest
        .iter()
        .enumerate()
        .map(|(i, &t)| Member {
            name: format!("m{i}").into(),
            type_name: l.s.entities[t].name.clone(),
            typ: t,
            optional: true,
            ifcond: IfCond::Always,
            features: Vec::new(),
            info: None,
            defined_in: obj_id,
            cname_hash: 0,
        })
        .collect();
    let refs = (0..local.len())
        .map(|index| MemberRef {
            owner: obj_id,
            index,
        })
        .collect();
    if let EntityKind::Object(o) = &mut l.s.entities[obj_id].kind {
        o.local_members = local.into();
        o.members = refs;
    }
    let ev = hidden_event(l, &mut hidden, obj_id)?;
    l.s.modules[l.module].entities.insert(0, ev);
    Ok(())
}

/// The types a command or event uses in introspection's first phase.
fn root_uses(s: &Schema, id: EntityId) -> Vec<EntityId> {
    match &s.entities[id].kind {
        EntityKind::Command(c) => vec![
            c.arg_type.unwrap_or(s.q_empty),
            c.ret_type.unwrap_or(s.q_empty),
        ],
        EntityKind::Event(e) => vec![e.arg_type.unwrap_or(s.q_empty)],
        _ => Vec::new(),
    }
}

/// The types that using `t` adds to introspection's work list.
fn use_seq(s: &Schema, t: EntityId, used: &mut HashSet<EntityId>, out: &mut Vec<EntityId>) {
    if t >= s.entities.len() || !used.insert(t) {
        return;
    }
    out.push(t);
    if let EntityKind::Array(a) = &s.entities[t].kind {
        use_seq(s, a.element, used, out);
    }
}

/// A hidden command taking the arguments of command `like` and returning
/// `ret`.
fn hidden_command(
    l: &mut Loader,
    n: &mut usize,
    like: EntityId,
    ret: EntityId,
) -> Result<EntityId, QapiError> {
    let EntityKind::Command(c) = &l.s.entities[like].kind else {
        return hidden_event(l, n, ret);
    };
    let name = format!("{HIDDEN_PREFIX}{n}");
    *n += 1;
    let kind = EntityKind::Command(Command {
        arg_type_name: c.arg_type_name.clone(),
        arg_type: c.arg_type,
        ret_type_name: Some(l.s.entities[ret].name.clone()),
        ret_type: Some(ret),
        gen: true,
        success_response: true,
        boxed: c.boxed,
        allow_oob: false,
        allow_preconfig: false,
        coroutine: false,
    });
    let mut e = l.entity(name, true, kind);
    e.ifcond = never();
    l.define(e)
}

fn hidden_event(l: &mut Loader, n: &mut usize, arg: EntityId) -> Result<EntityId, QapiError> {
    let name = format!("{HIDDEN_PREFIX}{n}");
    *n += 1;
    let mut e = l.entity(
        name,
        true,
        EntityKind::Event(Event {
            arg_type_name: Some(l.s.entities[arg].name.clone()),
            arg_type: Some(arg),
            boxed: false,
        }),
    );
    e.ifcond = never();
    l.define(e)
}

/// Where a model loaded by [`load_any`] came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemaSource {
    /// Schema source text, read with this dialect.
    Source(Dialect),
    /// A `query-qmp-schema` answer.
    Introspection,
}

/// True when `text` is JSON holding a `query-qmp-schema` answer (a schema
/// source file is never a JSON array, nor an object with `return`).
pub fn looks_like_introspection(text: &str) -> Option<Value> {
    let t = text.trim_start();
    if !(t.starts_with('[') || t.starts_with('{')) {
        return None;
    }
    let v: Value = serde_json::from_str(t).ok()?;
    answer_elements(&v)?;
    Some(v)
}

/// Load any schema file: a `query-qmp-schema` answer (recognised by its
/// content) or schema source. Source is read with `dialect` when given;
/// otherwise with the dialect the text declares ([`Dialect::declared_by`]),
/// and source that declares none with the modern dialect, then, if that
/// fails, with the legacy one (the modern error is reported when both
/// fail).
pub fn load_any(
    path: &std::path::Path,
    dialect: Option<Dialect>,
) -> Result<(Schema, SchemaSource), QapiError> {
    load_any_with(path, dialect, crate::load_text)
}

/// [`load_any`] for a schema that is only checked: source is read with
/// [`crate::load_checking`] (doc comment text is not kept).
pub fn check_any(
    path: &std::path::Path,
    dialect: Option<Dialect>,
) -> Result<(Schema, SchemaSource), QapiError> {
    load_any_with(path, dialect, crate::check_text)
}

/// [`check_any`] with the dialect given, else the one the text declares
/// ([`Dialect::declared_by`]), as `qmpkit schema check` judges source: no
/// second reading with another dialect. The main file is read once.
pub fn check_declared(
    path: &std::path::Path,
    dialect: Option<Dialect>,
) -> Result<(Schema, SchemaSource), QapiError> {
    let text = read(path)?;
    let dialect = dialect.unwrap_or_else(|| Dialect::declared_by(&text));
    load_any_text(path, text, Some(dialect), crate::check_text)
}

fn read(path: &std::path::Path) -> Result<String, QapiError> {
    std::fs::read_to_string(path).map_err(|e| err(format!("can't read '{}': {e}", path.display())))
}

fn load_any_with(
    path: &std::path::Path,
    dialect: Option<Dialect>,
    load: fn(&std::path::Path, Dialect, Option<String>) -> Result<Schema, QapiError>,
) -> Result<(Schema, SchemaSource), QapiError> {
    load_any_text(path, read(path)?, dialect, load)
}

/// [`load_any_with`] of a file whose text is `text`; `load` is given the
/// text the first time.
fn load_any_text(
    path: &std::path::Path,
    text: String,
    dialect: Option<Dialect>,
    load: fn(&std::path::Path, Dialect, Option<String>) -> Result<Schema, QapiError>,
) -> Result<(Schema, SchemaSource), QapiError> {
    if let Some(v) = looks_like_introspection(&text) {
        let s = load_introspection(&v).map_err(|mut e| {
            e.msg = format!("{}: {}", path.display(), e.msg);
            e
        })?;
        return Ok((s, SchemaSource::Introspection));
    }
    let dialect = dialect.or(match Dialect::declared_by(&text) {
        Dialect::Legacy => Some(Dialect::Legacy),
        Dialect::Modern => None,
    });
    let text = Some(text);
    match dialect {
        Some(d) => load(path, d, text).map(|s| (s, SchemaSource::Source(d))),
        None => match load(path, Dialect::Modern, text) {
            Ok(s) => Ok((s, SchemaSource::Source(Dialect::Modern))),
            Err(modern) => match load(path, Dialect::Legacy, None) {
                Ok(s) => Ok((s, SchemaSource::Source(Dialect::Legacy))),
                Err(_) => Err(modern),
            },
        },
    }
}
