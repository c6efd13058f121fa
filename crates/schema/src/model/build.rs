//! Definition phase: predefined entities, then one call per expression,
//! creating implicit types on the way (QEMU's `_def_*` functions).

use super::*;
use crate::ast::{ExprKind, ParsedSchema, SectionKind, TopExpr};
use crate::error::QapiError;
use std::path::{Component, Path, PathBuf};

type Result<T> = std::result::Result<T, QapiError>;

pub use crate::ast::{
    ArgsDef, BaseDef, BranchDef, CommandFlags, DefnCommon, EnumMemberDef, FeatureDef, MemberDef,
    TypeRef,
};

const BUILTINS: &[(&str, &str)] = &[
    ("str", "string"),
    ("number", "number"),
    ("int", "int"),
    ("int8", "int"),
    ("int16", "int"),
    ("int32", "int"),
    ("int64", "int"),
    ("uint8", "int"),
    ("uint16", "int"),
    ("uint32", "int"),
    ("uint64", "int"),
    ("size", "int"),
    ("bool", "boolean"),
    ("any", "value"),
    ("null", "null"),
];

/// Pseudo-types the legacy generator accepted (QEMU 1.x): both mean
/// "any JSON value".
const LEGACY_BUILTINS: &[(&str, &str)] = &[("**", "value"), ("visitor", "value")];

const QTYPES: &[&str] = &[
    "none", "qnull", "qnum", "qstring", "qdict", "qlist", "qbool",
];

/// The strings one after the other (`format!` without the formatting
/// machinery).
fn concat(parts: &[&str]) -> String {
    let mut s = String::with_capacity(parts.iter().map(|p| p.len()).sum());
    for p in parts {
        s.push_str(p);
    }
    s
}

/// Lexically normalised absolute path (like Python's `os.path.abspath`).
fn abspath(p: &Path, cwd: &Path) -> PathBuf {
    let joined = if p.is_absolute() {
        p.to_path_buf()
    } else {
        cwd.join(p)
    };
    let mut out = PathBuf::new();
    for c in joined.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// A relative path of plain components (no `.`, `..` or empty ones).
fn plain_relative(p: &str) -> bool {
    !p.starts_with('/') && plain_components(p)
}

/// An absolute path of plain components after its leading `/`.
fn plain_absolute(p: &str) -> bool {
    p.strip_prefix('/').is_some_and(plain_components)
}

fn plain_components(p: &str) -> bool {
    p.split('/').all(|c| !c.is_empty() && c != "." && c != "..")
}

/// `os.path.relpath(path, start)`.
fn relpath(path: &Path, start: &Path, cwd: &Path) -> String {
    // The common case without building absolute paths: `path` lies under
    // `start` (or `start` is the current directory), both plain and both
    // relative or both absolute.
    if let (Some(p), Some(s)) = (path.to_str(), start.to_str()) {
        if plain_relative(p) && s.is_empty() {
            return p.to_string();
        }
        let both =
            (plain_relative(p) && plain_relative(s)) || (plain_absolute(p) && plain_absolute(s));
        if both {
            if let Some(rest) = p.strip_prefix(s).and_then(|r| r.strip_prefix('/')) {
                return rest.to_string();
            }
        }
    }
    let p = abspath(path, cwd);
    let s = abspath(start, cwd);
    let pc: Vec<_> = p.components().collect();
    let sc: Vec<_> = s.components().collect();
    let common = pc.iter().zip(sc.iter()).take_while(|(a, b)| a == b).count();
    let mut parts: Vec<String> = Vec::new();
    for _ in common..sc.len() {
        parts.push("..".to_string());
    }
    for c in &pc[common..] {
        parts.push(c.as_os_str().to_string_lossy().into_owned());
    }
    if parts.is_empty() {
        ".".to_string()
    } else {
        parts.join("/")
    }
}

impl Schema {
    /// An empty schema for the main file `fname`, with the predefined
    /// entities defined.
    pub fn new(fname: &str, dialect: Dialect) -> Schema {
        let schema_dir = Path::new(fname)
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let mut s = Schema {
            dialect,
            // The predefined types; `from_parsed` reserves for the rest
            // (growing a large list later would copy it).
            entities: Vec::with_capacity(64).into(),
            modules: Vec::new().into(),
            docs: Vec::new(),
            doc_links: Vec::new(),
            legacy_docs: false,
            pragma: Pragma::default(),
            by_name: NameIndex::default(),
            feature_names: vec!["deprecated".to_string(), "unstable".to_string()],
            schema_dir,
            cwd: std::env::current_dir().unwrap_or_default(),
            module_by_path: NameMap::default(),
            check_depth: 0,
            defer_checks: false,
            grown_branches: Vec::new(),
            qtype: UNRESOLVED,
            q_empty: UNRESOLVED,
        };
        s.modules.push(Module {
            name: BUILTIN_MODULE.to_string().into(),
            entities: Vec::new().into(),
        });
        s.module_for_file(fname);
        s.def_predefineds();
        s
    }

    /// Build and check the model of a parsed schema.
    pub fn from_parsed(parsed: ParsedSchema) -> Result<Schema> {
        let ParsedSchema {
            fname,
            dialect,
            exprs,
            docs,
            pragma,
            legacy_docs,
            ..
        } = parsed;
        let mut s = Schema::begin(&fname, dialect, legacy_docs, exprs.len());
        for e in exprs {
            s.define(e, &docs, pragma.doc_required)?;
        }
        s.finish(pragma, docs)
    }

    /// A model to define the `exprs` expressions of the schema `fname` in,
    /// one after the other ([`Schema::define`]), then check
    /// ([`Schema::finish`]).
    pub(crate) fn begin(fname: &str, dialect: Dialect, legacy_docs: bool, exprs: usize) -> Schema {
        let mut s = Schema::new(fname, dialect);
        // Implicit types add about a third to the definitions (QEMU
        // 10.0: 1 061 expressions, 1 406 entities).
        s.entities.reserve(exprs * 3 / 2);
        s.by_name.reserve(exprs * 3 / 2);
        s.legacy_docs = legacy_docs;
        s
    }

    /// Define the next expression; `docs` are the schema's doc comments,
    /// `doc_required` the pragma's.
    pub(crate) fn define(&mut self, e: TopExpr, docs: &[Doc], doc_required: bool) -> Result<()> {
        if let Some(c) = e.kind.common() {
            self.check_doc_expr(c, &e.kind, docs, doc_required)?;
        }
        match e.kind {
            ExprKind::Include(i) => self.def_include(&i.path, &e.info),
            ExprKind::Pragma(_) => {}
            ExprKind::Enum(d) => {
                self.def_enum(d.common, d.members, d.prefix)?;
            }
            ExprKind::Struct(d) => {
                self.def_struct(d.common, d.base, d.members)?;
            }
            ExprKind::Union(d) => {
                self.def_union(d.common, d.base, d.discriminator, d.branches)?;
            }
            ExprKind::Alternate(d) => {
                self.def_alternate(d.common, d.branches)?;
            }
            ExprKind::Command(d) => {
                self.def_command(d.common, d.data, d.returns, d.flags)?;
            }
            ExprKind::Event(d) => {
                self.def_event(d.common, d.data, d.boxed)?;
            }
        }
        Ok(())
    }

    /// Every expression defined: the schema's pragma and doc comments join
    /// the model, and the semantic checks run.
    pub(crate) fn finish(mut self, pragma: Pragma, docs: Vec<Doc>) -> Result<Schema> {
        self.pragma = pragma;
        self.docs = docs;
        self.check()?;
        Ok(self)
    }

    /// The doc comment rules QEMU applies per expression: a definition
    /// needs one under `doc-required`, and `Returns` / `Errors` sections
    /// belong to commands (returning something, for `Returns`).
    fn check_doc_expr(
        &self,
        c: &DefnCommon,
        kind: &ExprKind,
        docs: &[Doc],
        doc_required: bool,
    ) -> Result<()> {
        if self.lax_docs() {
            return Ok(());
        }
        let Some(d) = c.doc.and_then(|d| docs.get(d)) else {
            if doc_required {
                return Err(QapiError::new(&c.info, "documentation comment required"));
            }
            return Ok(());
        };
        if let Some(sym) = &d.symbol {
            if sym != &c.name {
                return Err(QapiError::new(
                    &c.info,
                    format!("documentation comment is for '{sym}'"),
                ));
            }
        }
        let returns = d.section(SectionKind::Returns);
        let errors = d.section(SectionKind::Errors);
        match kind {
            ExprKind::Command(cmd) => {
                if let (Some(r), None) = (returns, &cmd.returns) {
                    return Err(QapiError::new(
                        &r.info,
                        "'Returns' section, but command doesn't return anything",
                    ));
                }
            }
            _ => {
                if let Some(r) = returns {
                    return Err(QapiError::new(
                        &r.info,
                        "'Returns' section is only valid for commands",
                    ));
                }
                if let Some(r) = errors {
                    return Err(QapiError::new(
                        &r.info,
                        "'Errors' section is only valid for commands",
                    ));
                }
            }
        }
        Ok(())
    }

    /// The module of a schema file, created on first use.
    pub(crate) fn module_for_file(&mut self, fname: &str) -> ModuleId {
        if let Some(&m) = self.module_by_path.get(fname) {
            return m;
        }
        let name = relpath(Path::new(fname), &self.schema_dir, &self.cwd);
        let id = match self.modules.iter().position(|m| m.name == name) {
            Some(i) => i,
            None => {
                self.modules.push(Module {
                    name: name.into(),
                    entities: Vec::new().into(),
                });
                self.modules.len() - 1
            }
        };
        self.module_by_path.insert(fname.to_string(), id);
        id
    }

    fn push_entity(&mut self, e: Entity) -> EntityId {
        self.entities.push(e);
        self.entities.len() - 1
    }

    /// Define a named entity, reporting a redefinition as QEMU does.
    fn def_definition(&mut self, e: Entity) -> Result<EntityId> {
        if let Some(other) = self.lookup(&e.name) {
            let o = &self.entities[other];
            let msg = match &o.info {
                Some(oi) => format!(
                    "'{}' is already defined\n{}: previous definition",
                    e.name, oi
                ),
                None => format!("{} is already defined", self.describe(other)),
            };
            return Err(match &e.info {
                Some(i) => QapiError::new(i, msg),
                None => QapiError::bare(msg),
            });
        }
        let id = self.push_entity(e);
        self.by_name.insert(&self.entities[id].name, id);
        Ok(id)
    }

    fn def_predefineds(&mut self) {
        let builtins: Vec<(&str, &str)> = match self.dialect {
            Dialect::Modern => BUILTINS.to_vec(),
            Dialect::Legacy => BUILTINS
                .iter()
                .chain(LEGACY_BUILTINS.iter())
                .copied()
                .collect(),
        };
        for (name, json_type) in builtins {
            let e = Entity {
                name: name.to_string().into(),
                info: None,
                doc: None,
                ifcond: IfCond::Always,
                features: Vec::new(),
                implicit: false,
                module: 0,
                kind: EntityKind::Builtin(BuiltinType { json_type }),
            };
            // Predefined names are distinct: this cannot fail.
            let _ = self.def_definition(e);
            let _ = self.make_array_type(name, None);
        }
        let e = Entity {
            name: "q_empty".to_string().into(),
            info: None,
            doc: None,
            ifcond: IfCond::Always,
            features: Vec::new(),
            implicit: true,
            module: 0,
            kind: EntityKind::Object(ObjectType {
                base_name: None,
                base: None,
                local_members: Vec::new().into(),
                branches: None,
                members: Vec::new().into(),
                state: CheckState::Unchecked,
            }),
        };
        self.q_empty = self.def_definition(e).unwrap_or(UNRESOLVED);
        let members = QTYPES
            .iter()
            .map(|n| EnumMember {
                name: n.to_string().into(),
                ifcond: IfCond::Always,
                features: Vec::new(),
                info: None,
            })
            .collect();
        let e = Entity {
            name: "QType".to_string().into(),
            info: None,
            doc: None,
            ifcond: IfCond::Always,
            features: Vec::new(),
            implicit: true,
            module: 0,
            kind: EntityKind::Enum(EnumType {
                members,
                prefix: None,
            }),
        };
        self.qtype = self.def_definition(e).unwrap_or(UNRESOLVED);
    }

    /// The array type of `element`, created on first use.
    fn make_array_type(&mut self, element: &str, info: Option<&Info>) -> Result<String> {
        let mut name = String::with_capacity(element.len() + 4);
        name.push_str(element);
        name.push_str("List");
        if self.lookup_type(&name).is_none() {
            let e = Entity {
                name: name.clone().into(),
                info: info.cloned(),
                doc: None,
                ifcond: IfCond::Always,
                features: Vec::new(),
                implicit: true,
                module: 0,
                kind: EntityKind::Array(ArrayType {
                    element_name: element.to_string().into(),
                    element: UNRESOLVED,
                }),
            };
            self.def_definition(e)?;
        }
        Ok(name)
    }

    fn make_features(&mut self, features: Vec<FeatureDef>, info: &Info) -> Result<Vec<Feature>> {
        if features.is_empty() {
            return Ok(Vec::new());
        }
        for f in &features {
            if !self.feature_names.iter().any(|n| n == &f.name) {
                if self.feature_names.len() == 64 {
                    return Err(QapiError::new(
                        info,
                        "Maximum of 64 schema features is permitted",
                    ));
                }
                self.feature_names.push(f.name.clone());
            }
        }
        Ok(features
            .into_iter()
            .map(|f| Feature {
                name: f.name,
                ifcond: f.ifcond,
                info: Some(f.info),
            })
            .collect())
    }

    fn make_type_name(
        &mut self,
        owner: &str,
        member: &str,
        typ: TypeRef,
        info: &Info,
    ) -> Result<String> {
        match typ {
            TypeRef::Named(n) => Ok(n),
            TypeRef::Array(n) => self.make_array_type(&n, Some(info)),
            TypeRef::Nested(members) => {
                // Legacy nested anonymous struct: an implicit object type.
                let name = concat(&["q_obj_", owner, "-", member, "-nested"]);
                let ms = self.make_members(&name, members, info)?;
                if self.lookup(&name).is_none() {
                    let e = self.implicit_object(&name, info, IfCond::Always, None, ms);
                    self.def_object(e)?;
                }
                Ok(name)
            }
        }
    }

    fn make_members(
        &mut self,
        owner: &str,
        members: Vec<MemberDef>,
        info: &Info,
    ) -> Result<Vec<Member>> {
        let mut out = Vec::with_capacity(members.len());
        for m in members {
            let type_name = self.make_type_name(owner, &m.name, m.typ, info)?;
            let features = self.make_features(m.features, info)?;
            let cname_hash = m.cname_hash;
            out.push(Member {
                name: m.name.into(),
                type_name: type_name.into(),
                typ: UNRESOLVED,
                optional: m.optional,
                ifcond: m.ifcond,
                features,
                info: Some(m.info),
                defined_in: UNRESOLVED,
                cname_hash,
            });
        }
        Ok(out)
    }

    fn implicit_object(
        &self,
        name: &str,
        info: &Info,
        ifcond: IfCond,
        base: Option<String>,
        members: Vec<Member>,
    ) -> Entity {
        Entity {
            name: name.to_string().into(),
            info: Some(info.clone()),
            doc: None,
            ifcond,
            features: Vec::new(),
            implicit: true,
            module: 0,
            kind: EntityKind::Object(ObjectType {
                base_name: base.map(Into::into),
                base: None,
                local_members: members.into(),
                branches: None,
                members: Vec::new().into(),
                state: CheckState::Unchecked,
            }),
        }
    }

    /// `q_obj_NAME-ROLE` holding `members`, unless there are none.
    fn make_implicit_object_type(
        &mut self,
        name: &str,
        info: &Info,
        ifcond: &IfCond,
        role: &str,
        members: Vec<Member>,
    ) -> Result<Option<String>> {
        if members.is_empty() {
            return Ok(None);
        }
        let name = concat(&["q_obj_", name, "-", role]);
        if self.lookup(&name).is_none() {
            let e = self.implicit_object(&name, info, ifcond.clone(), None, members);
            self.def_definition(e)?;
        }
        // Else: several users of one implicit type, which can only be a
        // duplicate definition, reported when the user is defined.
        Ok(Some(name))
    }

    /// Register the definition and stamp `defined_in` on its members.
    fn def_object(&mut self, e: Entity) -> Result<EntityId> {
        let id = self.def_definition(e)?;
        self.stamp_defined_in(id);
        Ok(id)
    }

    fn stamp_defined_in(&mut self, id: EntityId) {
        match &mut self.entities[id].kind {
            EntityKind::Object(o) => {
                for m in &mut o.local_members {
                    m.defined_in = id;
                }
                if let Some(b) = &mut o.branches {
                    for v in &mut b.variants {
                        v.defined_in = id;
                    }
                }
            }
            EntityKind::Alternate(a) => {
                for v in &mut a.variants {
                    v.defined_in = id;
                }
            }
            _ => {}
        }
    }

    /// Fix up `defined_in` for implicit object types created before their
    /// id was known.
    fn stamp_by_name(&mut self, name: &Option<String>) {
        if let Some(n) = name {
            if let Some(id) = self.lookup(n) {
                if self.entities[id].implicit {
                    self.stamp_defined_in(id);
                }
            }
        }
    }

    /// `{ 'include': F }`.
    pub fn def_include(&mut self, fname: &str, info: &Info) {
        let module = self.module_for_file(fname);
        let e = Entity {
            name: String::new().into(),
            info: Some(info.clone()),
            doc: None,
            ifcond: IfCond::Always,
            features: Vec::new(),
            implicit: false,
            module: 0,
            kind: EntityKind::Include(Include { module }),
        };
        self.push_entity(e);
    }

    fn definition(c: DefnCommon, features: Vec<Feature>, kind: EntityKind) -> Entity {
        Entity {
            name: c.name.into(),
            info: Some(c.info),
            doc: c.doc,
            ifcond: c.ifcond,
            features,
            implicit: false,
            module: 0,
            kind,
        }
    }

    pub fn def_enum(
        &mut self,
        mut c: DefnCommon,
        members: Vec<EnumMemberDef>,
        prefix: Option<String>,
    ) -> Result<EntityId> {
        let features = self.make_features(std::mem::take(&mut c.features), &c.info)?;
        let mut ms = Vec::with_capacity(members.len());
        for m in members {
            let mf = self.make_features(m.features, &c.info)?;
            ms.push(EnumMember {
                name: m.name.into(),
                ifcond: m.ifcond,
                features: mf,
                info: Some(m.info),
            });
        }
        let e = Self::definition(
            c,
            features,
            EntityKind::Enum(EnumType {
                members: ms.into(),
                prefix: prefix.map(Into::into),
            }),
        );
        self.def_definition(e)
    }

    pub fn def_struct(
        &mut self,
        mut c: DefnCommon,
        base: Option<String>,
        members: Vec<MemberDef>,
    ) -> Result<EntityId> {
        let features = self.make_features(std::mem::take(&mut c.features), &c.info)?;
        let ms = self.make_members(&c.name, members, &c.info)?;
        let kind = EntityKind::Object(ObjectType {
            base_name: base.map(Into::into),
            base: None,
            local_members: ms.into(),
            branches: None,
            members: Vec::new().into(),
            state: CheckState::Unchecked,
        });
        let e = Self::definition(c, features, kind);
        self.def_object(e)
    }

    /// A union; `discriminator: None` is a legacy simple union.
    pub fn def_union(
        &mut self,
        mut c: DefnCommon,
        base: BaseDef,
        discriminator: Option<String>,
        branches: Vec<BranchDef>,
    ) -> Result<EntityId> {
        let features = self.make_features(std::mem::take(&mut c.features), &c.info)?;
        let base_name = match base {
            BaseDef::None => None,
            BaseDef::Type(t) => Some(t),
            BaseDef::Members(ms) => {
                let implicit_name = concat(&["q_obj_", &c.name, "-base"]);
                let ms = self.make_members(&implicit_name, ms, &c.info)?;
                let n = self.make_implicit_object_type(&c.name, &c.info, &c.ifcond, "base", ms)?;
                self.stamp_by_name(&n);
                n
            }
        };
        let mut variants = Vec::with_capacity(branches.len());
        let mut local_members = Vec::new();
        let tag_name;
        match discriminator {
            Some(d) => {
                tag_name = d;
                for b in branches {
                    let type_name = self.make_type_name(&c.name, &b.name, b.typ, &c.info)?;
                    variants.push(Variant {
                        name: b.name.into(),
                        type_name: type_name.into(),
                        typ: UNRESOLVED,
                        ifcond: b.ifcond,
                        info: Some(b.info),
                        defined_in: UNRESOLVED,
                    });
                }
            }
            None => {
                // Legacy simple union: wrapper types, implicit enum, tag 'type'.
                tag_name = "type".to_string();
                for b in branches {
                    let typ = self.make_type_name(&c.name, &b.name, b.typ, &c.info)?;
                    let data = Member {
                        name: "data".to_string().into(),
                        type_name: typ.clone().into(),
                        typ: UNRESOLVED,
                        optional: false,
                        ifcond: IfCond::Always,
                        features: Vec::new(),
                        info: Some(c.info.clone()),
                        defined_in: UNRESOLVED,
                        cname_hash: cname::c_name_hash("data"),
                    };
                    let w = self.make_implicit_object_type(
                        &typ,
                        &c.info,
                        &IfCond::Always,
                        "wrapper",
                        vec![data],
                    )?;
                    self.stamp_by_name(&w);
                    variants.push(Variant {
                        name: b.name.into(),
                        type_name: w.unwrap_or_default().into(),
                        typ: UNRESOLVED,
                        ifcond: b.ifcond,
                        info: Some(b.info),
                        defined_in: UNRESOLVED,
                    });
                }
                let kind_name = concat(&[&c.name, "Kind"]);
                let values = variants
                    .iter()
                    .map(|v| EnumMember {
                        name: v.name.clone(),
                        ifcond: v.ifcond.clone(),
                        features: Vec::new(),
                        info: Some(c.info.clone()),
                    })
                    .collect();
                let e = Entity {
                    name: kind_name.clone().into(),
                    info: Some(c.info.clone()),
                    doc: None,
                    ifcond: c.ifcond.clone(),
                    features: Vec::new(),
                    implicit: true,
                    module: 0,
                    kind: EntityKind::Enum(EnumType {
                        members: values,
                        prefix: None,
                    }),
                };
                self.def_definition(e)?;
                local_members.push(Member {
                    name: "type".to_string().into(),
                    type_name: kind_name.into(),
                    typ: UNRESOLVED,
                    optional: false,
                    ifcond: IfCond::Always,
                    features: Vec::new(),
                    info: Some(c.info.clone()),
                    defined_in: UNRESOLVED,
                    cname_hash: cname::c_name_hash("type"),
                });
            }
        }
        let kind = EntityKind::Object(ObjectType {
            base_name: base_name.map(Into::into),
            base: None,
            local_members: local_members.into(),
            branches: Some(Boxed::new(Branches {
                tag_name: tag_name.into(),
                tag_member: None,
                variants: variants.into(),
            })),
            members: Vec::new().into(),
            state: CheckState::Unchecked,
        });
        let e = Self::definition(c, features, kind);
        self.def_object(e)
    }

    pub fn def_alternate(
        &mut self,
        mut c: DefnCommon,
        branches: Vec<BranchDef>,
    ) -> Result<EntityId> {
        let features = self.make_features(std::mem::take(&mut c.features), &c.info)?;
        let mut variants = Vec::with_capacity(branches.len());
        for b in branches {
            let type_name = self.make_type_name(&c.name, &b.name, b.typ, &c.info)?;
            variants.push(Variant {
                name: b.name.into(),
                type_name: type_name.into(),
                typ: UNRESOLVED,
                ifcond: b.ifcond,
                info: Some(b.info),
                defined_in: UNRESOLVED,
            });
        }
        let e = Self::definition(
            c,
            features,
            EntityKind::Alternate(AlternateType {
                variants: variants.into(),
            }),
        );
        self.def_object(e)
    }

    fn make_args(&mut self, c: &DefnCommon, data: ArgsDef) -> Result<Option<String>> {
        Ok(match data {
            ArgsDef::None => None,
            ArgsDef::Type(t) => Some(t),
            ArgsDef::Members(ms) => {
                let implicit_name = concat(&["q_obj_", &c.name, "-arg"]);
                let ms = self.make_members(&implicit_name, ms, &c.info)?;
                let n = self.make_implicit_object_type(&c.name, &c.info, &c.ifcond, "arg", ms)?;
                self.stamp_by_name(&n);
                n
            }
        })
    }

    pub fn def_command(
        &mut self,
        mut c: DefnCommon,
        data: ArgsDef,
        returns: Option<TypeRef>,
        flags: CommandFlags,
    ) -> Result<EntityId> {
        let features = self.make_features(std::mem::take(&mut c.features), &c.info)?;
        let arg_type_name = self.make_args(&c, data)?;
        let ret_type_name = match returns {
            None => None,
            Some(t) => Some(self.make_type_name(&c.name, "returns", t, &c.info)?),
        };
        let kind = EntityKind::Command(Command {
            arg_type_name: arg_type_name.map(Into::into),
            arg_type: None,
            ret_type_name: ret_type_name.map(Into::into),
            ret_type: None,
            gen: flags.gen,
            success_response: flags.success_response,
            boxed: flags.boxed,
            allow_oob: flags.allow_oob,
            allow_preconfig: flags.allow_preconfig,
            coroutine: flags.coroutine,
        });
        let e = Self::definition(c, features, kind);
        self.def_definition(e)
    }

    pub fn def_event(&mut self, mut c: DefnCommon, data: ArgsDef, boxed: bool) -> Result<EntityId> {
        let features = self.make_features(std::mem::take(&mut c.features), &c.info)?;
        let arg_type_name = self.make_args(&c, data)?;
        let kind = EntityKind::Event(Event {
            arg_type_name: arg_type_name.map(Into::into),
            arg_type: None,
            boxed,
        });
        let e = Self::definition(c, features, kind);
        self.def_definition(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relpaths() {
        let cwd = Path::new("/w");
        assert_eq!(relpath(Path::new("a.json"), Path::new(""), cwd), "a.json");
        assert_eq!(
            relpath(Path::new("include/../sub.json"), Path::new(""), cwd),
            "sub.json"
        );
        assert_eq!(
            relpath(Path::new("d/qapi/x.json"), Path::new("d"), cwd),
            "qapi/x.json"
        );
        assert_eq!(
            relpath(Path::new("/abs/x.json"), Path::new("/abs"), cwd),
            "x.json"
        );
        assert_eq!(
            relpath(Path::new("/abs/bb/x.json"), Path::new("/abs/b"), cwd),
            "../bb/x.json"
        );
        assert_eq!(
            relpath(Path::new("/abs/./x.json"), Path::new("/abs"), cwd),
            "x.json"
        );
        assert_eq!(
            relpath(Path::new("/abs/x.json"), Path::new("rel"), cwd),
            "../../abs/x.json"
        );
        assert_eq!(
            relpath(Path::new("d/x.json"), Path::new(""), cwd),
            "d/x.json"
        );
        assert_eq!(
            relpath(Path::new("d/x.json"), Path::new("e"), cwd),
            "../d/x.json"
        );
        assert_eq!(
            relpath(Path::new("d/x.json"), Path::new("d/e"), cwd),
            "../x.json"
        );
        assert_eq!(
            relpath(Path::new("dd/x.json"), Path::new("d"), cwd),
            "../dd/x.json"
        );
        assert_eq!(
            relpath(Path::new("d/./x.json"), Path::new("d"), cwd),
            "x.json"
        );
        assert_eq!(
            relpath(Path::new("d//x.json"), Path::new("d"), cwd),
            "x.json"
        );
    }
}
