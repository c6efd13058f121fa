//! A checked model as Rust source: [`Schema::to_static_rust`] writes it (in a build script)
//! as `static` data, and [`Schema::from_static`] makes a [`Schema`] of that data at run time
//! without building it: entities, members, names and the name index are borrowed from the
//! program ([`Name`], [`List`], [`Boxed`]), only a few small tables (pragmas, module paths) are
//! made. A program that serves a schema fixed at build time starts without reading a model.
//!
//! The data leaves out what serving never reports: doc comments and source positions. A model
//! with `if` conditions or features is not written (its definitions would need owned
//! conditions); such a schema is served from its compact form ([`Schema::from_compact`]).
//!
//! The constructors below are what the written source calls; they are public for that source
//! only.

use super::*;
use crate::error::QapiError;
use std::fmt::Write;

/// A model written by [`Schema::to_static_rust`]: the data a [`Schema`] borrows.
#[doc(hidden)]
pub struct StaticModel {
    pub dialect: Dialect,
    pub legacy_docs: bool,
    pub entities: &'static [Entity],
    pub modules: &'static [Module],
    /// The name index: each definition's name hash and id, by hash.
    pub index: &'static [(u64, EntityId)],
    /// Definitions whose name's hash another's took first.
    pub collisions: &'static [(&'static str, EntityId)],
    pub doc_required: bool,
    pub command_name_exceptions: &'static [&'static str],
    pub command_returns_exceptions: &'static [&'static str],
    pub documentation_exceptions: &'static [&'static str],
    pub member_name_exceptions: &'static [&'static str],
    pub feature_names: &'static [&'static str],
    pub schema_dir: &'static str,
    pub module_by_path: &'static [(&'static str, ModuleId)],
    pub qtype: EntityId,
    pub q_empty: EntityId,
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

impl Schema {
    /// The schema whose data [`Schema::to_static_rust`] wrote.
    pub fn from_static(m: &'static StaticModel) -> Schema {
        let mut by_name = NameIndex {
            fixed: m.index,
            ..NameIndex::default()
        };
        for &(name, id) in m.collisions {
            by_name.collisions.insert(name.to_string(), id);
        }
        let mut module_by_path = NameMap::default();
        for &(p, id) in m.module_by_path {
            module_by_path.insert(p.to_string(), id);
        }
        Schema {
            dialect: m.dialect,
            entities: List::new_static(m.entities),
            modules: List::new_static(m.modules),
            docs: Vec::new(),
            doc_links: Vec::new(),
            pragma: Pragma {
                doc_required: m.doc_required,
                command_name_exceptions: strings(m.command_name_exceptions),
                command_returns_exceptions: strings(m.command_returns_exceptions),
                documentation_exceptions: strings(m.documentation_exceptions),
                member_name_exceptions: strings(m.member_name_exceptions),
            },
            legacy_docs: m.legacy_docs,
            by_name,
            feature_names: strings(m.feature_names),
            schema_dir: std::path::PathBuf::from(m.schema_dir),
            cwd: std::env::current_dir().unwrap_or_default(),
            module_by_path,
            check_depth: 0,
            defer_checks: false,
            grown_branches: Vec::new(),
            qtype: m.qtype,
            q_empty: m.q_empty,
        }
    }

    /// The model as Rust source defining `pub static MODEL: StaticModel` (with the schema
    /// crate reachable as `qmpkit_schema`), for [`Schema::from_static`]. Doc comments and
    /// source positions are left out; a model with `if` conditions or features is refused.
    pub fn to_static_rust(&self) -> Result<String, QapiError> {
        let mut w = RustWriter::default();
        w.out.push_str(
            "// The checked schema model as static data (written by `Schema::to_static_rust`).\n\
             #[allow(unused_imports)]\n\
             use qmpkit_schema::model::statics::*;\n\
             use qmpkit_schema::model::{Entity, EnumMember, Member, MemberRef, Module, Variant};\n\n",
        );
        let mut entities = String::new();
        for (id, e) in self.entities.iter().enumerate() {
            if e.ifcond.is_present() || !e.features.is_empty() {
                return Err(unsupported(&e.name));
            }
            let kind = w.kind(id, &e.kind)?;
            let _ = writeln!(
                entities,
                "    entity({:?}, {}, {}, {kind}),",
                e.name.as_str(),
                e.implicit,
                e.module
            );
        }
        static_array(
            &mut w.out,
            "ENTITIES",
            "Entity",
            self.entities.len(),
            &entities,
        );
        let mut modules = String::new();
        for (i, m) in self.modules.iter().enumerate() {
            let _ = writeln!(
                w.out,
                "static MODULE_{i}: [usize; {}] = {:?};",
                m.entities.len(),
                m.entities.as_slice()
            );
            let _ = writeln!(modules, "    module({:?}, &MODULE_{i}),", m.name.as_str());
        }
        static_array(
            &mut w.out,
            "MODULES",
            "Module",
            self.modules.len(),
            &modules,
        );
        let mut index: Vec<(u64, EntityId)> = self
            .by_name
            .by_hash
            .iter()
            .map(|(&h, &id)| (h, id))
            .collect();
        index.extend(self.by_name.fixed.iter().copied());
        index.sort_unstable();
        let mut collisions: Vec<(&String, &EntityId)> = self.by_name.collisions.iter().collect();
        collisions.sort();
        let mut paths: Vec<(&String, &ModuleId)> = self.module_by_path.iter().collect();
        paths.sort();
        let strs = |v: &[String]| format!("&{v:?}");
        let pragma = &self.pragma;
        let _ = writeln!(
            w.out,
            "pub static MODEL: StaticModel = StaticModel {{\n    \
             dialect: qmpkit_schema::Dialect::{:?},\n    \
             legacy_docs: {},\n    \
             entities: &ENTITIES,\n    \
             modules: &MODULES,\n    \
             index: &{index:?},\n    \
             collisions: &{collisions:?},\n    \
             doc_required: {},\n    \
             command_name_exceptions: {},\n    \
             command_returns_exceptions: {},\n    \
             documentation_exceptions: {},\n    \
             member_name_exceptions: {},\n    \
             feature_names: {},\n    \
             schema_dir: {:?},\n    \
             module_by_path: &{paths:?},\n    \
             qtype: {},\n    \
             q_empty: {},\n}};",
            self.dialect,
            self.legacy_docs,
            pragma.doc_required,
            strs(&pragma.command_name_exceptions),
            strs(&pragma.command_returns_exceptions),
            strs(&pragma.documentation_exceptions),
            strs(&pragma.member_name_exceptions),
            strs(&self.feature_names),
            self.schema_dir.to_string_lossy(),
            self.qtype,
            self.q_empty,
        );
        Ok(w.out)
    }
}

/// `static NAME: [TYPE; LEN] = [ITEMS];`, ITEMS each followed by a comma.
fn static_array(out: &mut String, name: &str, ty: &str, len: usize, items: &str) {
    let _ = writeln!(out, "static {name}: [{ty}; {len}] = [\n{items}];");
}

/// `CTOR("NAME", "TYPE_NAME", REST), ` for a member or a variant.
fn typed_item(out: &mut String, ctor: &str, name: &Name, type_name: &Name, rest: &str) {
    let _ = write!(
        out,
        "{ctor}({:?}, {:?}, {rest}), ",
        name.as_str(),
        type_name.as_str()
    );
}

fn unsupported(name: &str) -> QapiError {
    QapiError::bare(format!(
        "static schema model: '{name}' has an 'if' condition or features, which static data does not hold"
    ))
}

#[derive(Default)]
struct RustWriter {
    out: String,
}

impl RustWriter {
    fn variants(&mut self, label: &str, v: &[Variant]) -> Result<(), QapiError> {
        let mut items = String::new();
        for x in v {
            if x.ifcond.is_present() {
                return Err(unsupported(&x.name));
            }
            let rest = format!("{}, {}", x.typ, x.defined_in);
            typed_item(&mut items, "variant", &x.name, &x.type_name, &rest);
        }
        static_array(&mut self.out, label, "Variant", v.len(), &items);
        Ok(())
    }

    fn kind(&mut self, id: EntityId, k: &EntityKind) -> Result<String, QapiError> {
        let opt = |s: &Option<Name>| match s {
            Some(s) => format!("Some({:?})", s.as_str()),
            None => "None".to_string(),
        };
        Ok(match k {
            EntityKind::Include(i) => format!("include({})", i.module),
            EntityKind::Builtin(b) => format!("builtin({:?})", b.json_type),
            EntityKind::Enum(t) => {
                let mut items = String::new();
                for m in t.members.iter() {
                    if m.ifcond.is_present() || !m.features.is_empty() {
                        return Err(unsupported(&m.name));
                    }
                    let _ = write!(items, "value({:?}), ", m.name.as_str());
                }
                let label = format!("VALUES_{id}");
                static_array(&mut self.out, &label, "EnumMember", t.members.len(), &items);
                format!("enumeration(&VALUES_{id}, {})", opt(&t.prefix))
            }
            EntityKind::Array(a) => format!("array({:?}, {})", a.element_name.as_str(), a.element),
            EntityKind::Object(o) => {
                let mut items = String::new();
                for m in o.local_members.iter() {
                    if m.ifcond.is_present() || !m.features.is_empty() {
                        return Err(unsupported(&m.name));
                    }
                    let rest = format!(
                        "{}, {}, {}, {}",
                        m.typ, m.optional, m.defined_in, m.cname_hash
                    );
                    typed_item(&mut items, "member", &m.name, &m.type_name, &rest);
                }
                let label = format!("MEMBERS_{id}");
                static_array(
                    &mut self.out,
                    &label,
                    "Member",
                    o.local_members.len(),
                    &items,
                );
                let refs: String = o
                    .members
                    .iter()
                    .map(|r| format!("mref({}, {}), ", r.owner, r.index))
                    .collect();
                let label = format!("REFS_{id}");
                static_array(&mut self.out, &label, "MemberRef", o.members.len(), &refs);
                let branches = match &o.branches {
                    None => "None".to_string(),
                    Some(b) => {
                        self.variants(&format!("BRANCHES_{id}"), &b.variants)?;
                        let tag = match b.tag_member {
                            Some(r) => format!("Some(mref({}, {}))", r.owner, r.index),
                            None => "None".to_string(),
                        };
                        let _ = writeln!(
                            self.out,
                            "static UNION_{id}: qmpkit_schema::model::Branches = branches({:?}, {tag}, &BRANCHES_{id});",
                            b.tag_name.as_str()
                        );
                        format!("Some(&UNION_{id})")
                    }
                };
                let base = match o.base {
                    Some(b) => format!("Some({b})"),
                    None => "None".to_string(),
                };
                format!(
                    "object({}, {base}, &MEMBERS_{id}, {branches}, &REFS_{id}, {})",
                    opt(&o.base_name),
                    o.state == CheckState::Done
                )
            }
            EntityKind::Alternate(a) => {
                self.variants(&format!("ALTERNATIVES_{id}"), &a.variants)?;
                format!("alternate(&ALTERNATIVES_{id})")
            }
            EntityKind::Command(c) => {
                let id_opt = |v: Option<EntityId>| match v {
                    Some(v) => format!("Some({v})"),
                    None => "None".to_string(),
                };
                format!(
                    "command({}, {}, {}, {}, [{}, {}, {}, {}, {}, {}])",
                    opt(&c.arg_type_name),
                    id_opt(c.arg_type),
                    opt(&c.ret_type_name),
                    id_opt(c.ret_type),
                    c.gen,
                    c.success_response,
                    c.boxed,
                    c.allow_oob,
                    c.allow_preconfig,
                    c.coroutine
                )
            }
            EntityKind::Event(e) => {
                let arg = match e.arg_type {
                    Some(v) => format!("Some({v})"),
                    None => "None".to_string(),
                };
                format!("event({}, {arg}, {})", opt(&e.arg_type_name), e.boxed)
            }
        })
    }
}

const fn opt_name(s: Option<&'static str>) -> Option<Name> {
    match s {
        Some(s) => Some(Name::Static(s)),
        None => None,
    }
}

pub const fn entity(
    name: &'static str,
    implicit: bool,
    module: ModuleId,
    kind: EntityKind,
) -> Entity {
    Entity {
        name: Name::Static(name),
        info: None,
        doc: None,
        ifcond: IfCond::Always,
        features: Vec::new(),
        implicit,
        module,
        kind,
    }
}

pub const fn module(name: &'static str, entities: &'static [EntityId]) -> Module {
    Module {
        name: Name::Static(name),
        entities: List::Static(entities),
    }
}

pub const fn include(module: ModuleId) -> EntityKind {
    EntityKind::Include(Include { module })
}

pub const fn builtin(json_type: &'static str) -> EntityKind {
    EntityKind::Builtin(BuiltinType { json_type })
}

pub const fn value(name: &'static str) -> EnumMember {
    EnumMember {
        name: Name::Static(name),
        ifcond: IfCond::Always,
        features: Vec::new(),
        info: None,
    }
}

pub const fn enumeration(
    members: &'static [EnumMember],
    prefix: Option<&'static str>,
) -> EntityKind {
    EntityKind::Enum(EnumType {
        members: List::Static(members),
        prefix: opt_name(prefix),
    })
}

pub const fn array(element_name: &'static str, element: EntityId) -> EntityKind {
    EntityKind::Array(ArrayType {
        element_name: Name::Static(element_name),
        element,
    })
}

pub const fn member(
    name: &'static str,
    type_name: &'static str,
    typ: EntityId,
    optional: bool,
    defined_in: EntityId,
    cname_hash: u64,
) -> Member {
    Member {
        name: Name::Static(name),
        type_name: Name::Static(type_name),
        typ,
        optional,
        ifcond: IfCond::Always,
        features: Vec::new(),
        info: None,
        defined_in,
        cname_hash,
    }
}

pub const fn mref(owner: EntityId, index: usize) -> MemberRef {
    MemberRef { owner, index }
}

pub const fn variant(
    name: &'static str,
    type_name: &'static str,
    typ: EntityId,
    defined_in: EntityId,
) -> Variant {
    Variant {
        name: Name::Static(name),
        type_name: Name::Static(type_name),
        typ,
        ifcond: IfCond::Always,
        info: None,
        defined_in,
    }
}

pub const fn branches(
    tag_name: &'static str,
    tag_member: Option<MemberRef>,
    variants: &'static [Variant],
) -> Branches {
    Branches {
        tag_name: Name::Static(tag_name),
        tag_member,
        variants: List::Static(variants),
    }
}

pub const fn object(
    base_name: Option<&'static str>,
    base: Option<EntityId>,
    local_members: &'static [Member],
    branches: Option<&'static Branches>,
    members: &'static [MemberRef],
    checked: bool,
) -> EntityKind {
    EntityKind::Object(ObjectType {
        base_name: opt_name(base_name),
        base,
        local_members: List::Static(local_members),
        branches: match branches {
            Some(b) => Some(Boxed::Static(b)),
            None => None,
        },
        members: List::Static(members),
        state: if checked {
            CheckState::Done
        } else {
            CheckState::Unchecked
        },
    })
}

pub const fn alternate(variants: &'static [Variant]) -> EntityKind {
    EntityKind::Alternate(AlternateType {
        variants: List::Static(variants),
    })
}

/// `flags`: gen, success-response, boxed, allow-oob, allow-preconfig, coroutine.
pub const fn command(
    arg_type_name: Option<&'static str>,
    arg_type: Option<EntityId>,
    ret_type_name: Option<&'static str>,
    ret_type: Option<EntityId>,
    flags: [bool; 6],
) -> EntityKind {
    EntityKind::Command(Command {
        arg_type_name: opt_name(arg_type_name),
        arg_type,
        ret_type_name: opt_name(ret_type_name),
        ret_type,
        gen: flags[0],
        success_response: flags[1],
        boxed: flags[2],
        allow_oob: flags[3],
        allow_preconfig: flags[4],
        coroutine: flags[5],
    })
}

pub const fn event(
    arg_type_name: Option<&'static str>,
    arg_type: Option<EntityId>,
    boxed: bool,
) -> EntityKind {
    EntityKind::Event(Event {
        arg_type_name: opt_name(arg_type_name),
        arg_type,
        boxed,
    })
}
