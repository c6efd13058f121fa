//! Checking phase: resolve references, flatten bases, add implicit union
//! branches, run QEMU's semantic checks, connect doc comments, assign
//! modules.

use super::*;
use crate::error::QapiError;

type Result<T> = std::result::Result<T, QapiError>;

/// What a name in a clash check is: its role, its name and the definition
/// it belongs to (QEMU's `QAPISchemaMember.describe`).
#[derive(Debug, Clone)]
struct Described {
    role: &'static str,
    name: String,
    defined_in: String,
}

impl Described {
    fn describe(&self, info: &Info) -> String {
        let mut role = self.role.to_string();
        let mut meta = "type";
        let mut defined_in = self.defined_in.as_str();
        if let Some(rest) = defined_in.strip_prefix("q_obj_") {
            if let Some(x) = rest.strip_suffix("-arg") {
                role = "parameter".to_string();
                meta = "command";
                defined_in = x;
            } else if let Some(x) = rest.strip_suffix("-base") {
                role = format!("base {role}");
                defined_in = x;
            } else if let Some(x) = rest.strip_suffix("-wrapper") {
                role = "branch".to_string();
                defined_in = x;
            }
        }
        let defn_name = info.defn.as_ref().map(|d| d.1.as_str());
        if Some(defined_in) != defn_name {
            format!("{role} '{}' of {meta} '{defined_in}'", self.name)
        } else {
            format!("{role} '{}'", self.name)
        }
    }
}

/// Names seen so far, by C name.
type Seen = HashMap<String, Described>;

fn clash(seen: &mut Seen, d: Described, info: &Info) -> Result<()> {
    let cname = c_name(&d.name);
    if let Some(other) = seen.get(&cname) {
        return Err(QapiError::new(
            info,
            format!(
                "{} collides with {}",
                d.describe(info),
                other.describe(info)
            ),
        ));
    }
    seen.insert(cname, d);
    Ok(())
}

/// The QType an alternative's type is told apart by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum QType {
    Null,
    Num,
    String,
    Dict,
    List,
    Bool,
}

/// Doc comment connection state, parallel to a [`crate::ast::Doc`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DocLinks {
    /// Per documented argument (in the doc's order): connected to a member.
    pub args_connected: Vec<bool>,
    /// Per documented feature: connected to a feature.
    pub features_connected: Vec<bool>,
    /// Members without documentation that got an empty stub (allowed by
    /// the `documentation-exceptions` pragma), in connection order.
    pub stub_args: Vec<String>,
}

impl Schema {
    fn err(info: &Option<Info>, msg: String) -> QapiError {
        match info {
            Some(i) => QapiError::new(i, msg),
            None => QapiError::bare(msg),
        }
    }

    fn resolve_type(&self, name: &str, info: &Option<Info>, what: &str) -> Result<EntityId> {
        match self.lookup_type(name) {
            Some(id) => Ok(id),
            None => Err(Self::err(
                info,
                format!("{what} uses unknown type '{name}'"),
            )),
        }
    }

    fn describe_member_of(
        &self,
        role: &'static str,
        name: &str,
        defined_in: EntityId,
    ) -> Described {
        let defined_in = if defined_in == UNRESOLVED {
            String::new()
        } else {
            self.entities[defined_in].name.clone()
        };
        Described {
            role,
            name: name.to_string(),
            defined_in,
        }
    }

    fn check_features(&self, owner: &str, features: &[Feature], info: &Option<Info>) -> Result<()> {
        let Some(info) = info else { return Ok(()) };
        let mut seen = Seen::new();
        let defn = info
            .defn
            .as_ref()
            .map(|d| d.1.clone())
            .unwrap_or_else(|| owner.to_string());
        for f in features {
            clash(
                &mut seen,
                Described {
                    role: "feature",
                    name: f.name.clone(),
                    defined_in: defn.clone(),
                },
                info,
            )?;
        }
        Ok(())
    }

    /// Run every semantic check, connect doc comments and assign modules.
    pub fn check(&mut self) -> Result<()> {
        for id in 0..self.entities.len() {
            self.check_entity(id)?;
            self.connect_doc(id)?;
        }
        self.assign_modules();
        self.check_docs()
    }

    fn check_entity(&mut self, id: EntityId) -> Result<()> {
        let info = self.entities[id].info.clone();
        let name = self.entities[id].name.clone();
        match &self.entities[id].kind {
            EntityKind::Include(_) | EntityKind::Builtin(_) => Ok(()),
            EntityKind::Enum(e) => {
                self.check_features(&name, &self.entities[id].features, &info)?;
                if let Some(i) = &info {
                    let mut seen = Seen::new();
                    for m in &e.members {
                        clash(
                            &mut seen,
                            Described {
                                role: "value",
                                name: m.name.clone(),
                                defined_in: name.clone(),
                            },
                            i,
                        )?;
                        self.check_features(&name, &m.features, &info)?;
                    }
                }
                Ok(())
            }
            EntityKind::Array(a) => {
                let what = info
                    .as_ref()
                    .and_then(|i| i.defn.as_ref())
                    .map(|d| d.0.clone())
                    .unwrap_or_default();
                let el = self.resolve_type(&a.element_name.clone(), &info, &what)?;
                if let EntityKind::Array(a) = &mut self.entities[id].kind {
                    a.element = el;
                }
                Ok(())
            }
            EntityKind::Object(_) => self.check_object(id),
            EntityKind::Alternate(_) => self.check_alternate(id),
            EntityKind::Command(_) => self.check_command(id),
            EntityKind::Event(_) => self.check_event(id),
        }
    }

    fn object(&self, id: EntityId) -> Option<&ObjectType> {
        match &self.entities[id].kind {
            EntityKind::Object(o) => Some(o),
            _ => None,
        }
    }

    fn object_mut(&mut self, id: EntityId) -> Option<&mut ObjectType> {
        match &mut self.entities[id].kind {
            EntityKind::Object(o) => Some(o),
            _ => None,
        }
    }

    /// Check an object type; recursion follows exactly the types whose C
    /// struct contains this one's (base and branches), so a cycle there is
    /// "contains itself".
    fn check_object(&mut self, id: EntityId) -> Result<()> {
        let info = self.entities[id].info.clone();
        let name = self.entities[id].name.clone();
        let Some(o) = self.object(id) else {
            return Ok(());
        };
        match o.state {
            CheckState::Done => return Ok(()),
            CheckState::InProgress => {
                return Err(Self::err(&info, format!("object {name} contains itself")));
            }
            CheckState::Unchecked => {}
        }
        let base_name = o.base_name.clone();
        let nlocal = o.local_members.len();
        if let Some(o) = self.object_mut(id) {
            o.state = CheckState::InProgress;
        }
        self.check_features(&name, &self.entities[id].features, &info)?;

        let mut seen = Seen::new();
        let mut members: Vec<MemberRef> = Vec::new();
        if let Some(bn) = &base_name {
            let base = self.resolve_type(bn, &info, "'base'")?;
            let ok = matches!(self.object(base), Some(b) if b.branches.is_none());
            if !ok {
                return Err(Self::err(
                    &info,
                    format!(
                        "'base' requires a struct type, {} isn't",
                        self.describe(base)
                    ),
                ));
            }
            self.check_object(base)?;
            if let Some(i) = &info {
                self.object_check_clash(base, i, &mut seen)?;
            }
            if let Some(b) = self.object(base) {
                members.extend(b.members.iter().copied());
            }
            if let Some(o) = self.object_mut(id) {
                o.base = Some(base);
            }
        }
        for k in 0..nlocal {
            let (mname, tname, defined_in) = match self.object(id) {
                Some(o) => {
                    let m = &o.local_members[k];
                    (m.name.clone(), m.type_name.clone(), m.defined_in)
                }
                None => return Ok(()),
            };
            let d = self.describe_member_of("member", &mname, defined_in);
            let what = match &info {
                Some(i) => d.describe(i),
                None => format!("member '{mname}'"),
            };
            let t = self.resolve_type(&tname, &info, &what)?;
            if let Some(o) = self.object_mut(id) {
                o.local_members[k].typ = t;
            }
            if let Some(o) = self.object(id) {
                self.check_features(&name, &o.local_members[k].features, &info)?;
            }
            if let Some(i) = &info {
                clash(&mut seen, d, i)?;
            }
            members.push(MemberRef {
                owner: id,
                index: k,
            });
        }
        if let Some(o) = self.object_mut(id) {
            // Provisional, for the tag lookup below.
            o.members = members.clone();
        }
        if self.object(id).is_some_and(|o| o.branches.is_some()) {
            self.check_branches(id, &members)?;
            if let Some(i) = &info {
                self.branches_check_clash(id, i, &seen)?;
            }
        }
        if let Some(o) = self.object_mut(id) {
            o.state = CheckState::Done;
        }
        Ok(())
    }

    /// Add the members of checked object `id` (and of its branches) to
    /// `seen`, reporting clashes at `info`.
    fn object_check_clash(&self, id: EntityId, info: &Info, seen: &mut Seen) -> Result<()> {
        let Some(o) = self.object(id) else {
            return Ok(());
        };
        for r in &o.members {
            let m = self.member(*r);
            clash(
                seen,
                self.describe_member_of("member", &m.name, m.defined_in),
                info,
            )?;
        }
        if o.branches.is_some() {
            self.branches_check_clash(id, info, seen)?;
        }
        Ok(())
    }

    fn branches_check_clash(&self, id: EntityId, info: &Info, seen: &Seen) -> Result<()> {
        let Some(b) = self.object(id).and_then(|o| o.branches.as_ref()) else {
            return Ok(());
        };
        for v in &b.variants {
            // Each branch starts from the common members only.
            let mut s = seen.clone();
            self.object_check_clash(v.typ, info, &mut s)?;
        }
        Ok(())
    }

    fn check_branches(&mut self, id: EntityId, members: &[MemberRef]) -> Result<()> {
        let info = self.entities[id].info.clone();
        let Some(tag_name) = self
            .object(id)
            .and_then(|o| o.branches.as_ref())
            .map(|b| b.tag_name.clone())
        else {
            return Ok(());
        };
        let tag_c = c_name(&tag_name);
        let tag = members
            .iter()
            .copied()
            .find(|r| c_name(&self.member(*r).name) == tag_c);
        let tag = match tag {
            Some(r) if self.member(r).name == tag_name => r,
            _ => {
                return Err(Self::err(
                    &info,
                    format!("discriminator '{tag_name}' is not a member of 'base'"),
                ));
            }
        };
        let tm = self.member(tag).clone();
        let base = if self.entities[tm.defined_in].implicit {
            "'base'".to_string()
        } else {
            format!("base type '{}'", self.entities[tm.defined_in].name)
        };
        let enum_values: Vec<(String, IfCond)> = match &self.entities[tm.typ].kind {
            EntityKind::Enum(e) => e
                .members
                .iter()
                .map(|m| (m.name.clone(), m.ifcond.clone()))
                .collect(),
            _ => {
                return Err(Self::err(
                    &info,
                    format!("discriminator member '{tag_name}' of {base} must be of enum type"),
                ));
            }
        };
        if tm.optional {
            return Err(Self::err(
                &info,
                format!("discriminator member '{tag_name}' of {base} must not be optional"),
            ));
        }
        if tm.ifcond.is_present() {
            return Err(Self::err(
                &info,
                format!("discriminator member '{tag_name}' of {base} must not be conditional"),
            ));
        }
        let q_empty = self.q_empty;
        let tag_enum = tm.typ;
        if let Some(b) = self.object_mut(id).and_then(|o| o.branches.as_mut()) {
            b.tag_member = Some(tag);
            // Values without a branch get the empty type.
            for (v, ifc) in &enum_values {
                if !b.variants.iter().any(|x| &x.name == v) {
                    b.variants.push(Variant {
                        name: v.clone(),
                        type_name: "q_empty".to_string(),
                        typ: q_empty,
                        ifcond: ifc.clone(),
                        info: info.clone(),
                        defined_in: tm.defined_in,
                    });
                }
            }
        }
        let nvar = self
            .object(id)
            .and_then(|o| o.branches.as_ref())
            .map_or(0, |b| b.variants.len());
        if nvar == 0 {
            return Err(Self::err(&info, "union has no branches".to_string()));
        }
        for k in 0..nvar {
            let Some(v) = self
                .object(id)
                .and_then(|o| o.branches.as_ref())
                .map(|b| b.variants[k].clone())
            else {
                break;
            };
            let d = self.describe_member_of("branch", &v.name, v.defined_in);
            let what = match &info {
                Some(i) => d.describe(i),
                None => format!("branch '{}'", v.name),
            };
            let t = self.resolve_type(&v.type_name, &info, &what)?;
            if let Some(b) = self.object_mut(id).and_then(|o| o.branches.as_mut()) {
                b.variants[k].typ = t;
            }
            if !enum_values.iter().any(|(n, _)| n == &v.name) {
                return Err(Self::err(
                    &info,
                    format!(
                        "branch '{}' is not a value of {}",
                        v.name,
                        self.describe(tag_enum)
                    ),
                ));
            }
            if self.object(t).is_none() {
                return Err(Self::err(
                    &info,
                    format!("{what} cannot use {}", self.describe(t)),
                ));
            }
            self.check_object(t)?;
        }
        Ok(())
    }

    fn alternate_qtype(&self, t: EntityId) -> Option<QType> {
        match &self.entities[t].kind {
            EntityKind::Builtin(b) => match b.json_type {
                "string" => Some(QType::String),
                "number" | "int" => Some(QType::Num),
                "boolean" => Some(QType::Bool),
                "null" => Some(QType::Null),
                _ => None,
            },
            EntityKind::Enum(_) => Some(QType::String),
            EntityKind::Array(_) => Some(QType::List),
            EntityKind::Object(_) => Some(QType::Dict),
            _ => None,
        }
    }

    fn check_alternate(&mut self, id: EntityId) -> Result<()> {
        let info = self.entities[id].info.clone();
        let name = self.entities[id].name.clone();
        self.check_features(&name, &self.entities[id].features, &info)?;
        let variants = match &self.entities[id].kind {
            EntityKind::Alternate(a) => a.variants.clone(),
            _ => return Ok(()),
        };
        let mut types = Vec::with_capacity(variants.len());
        for v in &variants {
            let d = self.describe_member_of("branch", &v.name, v.defined_in);
            let what = match &info {
                Some(i) => d.describe(i),
                None => format!("branch '{}'", v.name),
            };
            types.push(self.resolve_type(&v.type_name, &info, &what)?);
        }
        if let EntityKind::Alternate(a) = &mut self.entities[id].kind {
            for (v, t) in a.variants.iter_mut().zip(&types) {
                v.typ = *t;
            }
        }
        let Some(i) = &info else { return Ok(()) };
        let mut seen = Seen::new();
        let mut types_seen: Vec<(QType, String)> = Vec::new();
        for (v, &t) in variants.iter().zip(&types) {
            let d = self.describe_member_of("branch", &v.name, v.defined_in);
            clash(&mut seen, d.clone(), i)?;
            let Some(qt) = self.alternate_qtype(t) else {
                return Err(QapiError::new(
                    i,
                    format!("{} cannot use {}", d.describe(i), self.describe(t)),
                ));
            };
            let mut conflicting = vec![qt];
            if qt == QType::String {
                if let EntityKind::Enum(e) = &self.entities[t].kind {
                    for m in &e.members {
                        if m.name == "on" || m.name == "off" {
                            conflicting.push(QType::Bool);
                        }
                        if m.name.starts_with(|c: char| {
                            c == '-' || c == '+' || c == '.' || c.is_ascii_digit()
                        }) {
                            conflicting.push(QType::Num);
                        }
                    }
                } else {
                    conflicting.push(QType::Num);
                    conflicting.push(QType::Bool);
                }
            }
            for qt in &conflicting {
                if let Some((_, other)) = types_seen.iter().find(|(q, _)| q == qt) {
                    return Err(QapiError::new(
                        i,
                        format!("{} can't be distinguished from '{}'", d.describe(i), other),
                    ));
                }
            }
            for qt in conflicting {
                if !types_seen.iter().any(|(q, _)| *q == qt) {
                    types_seen.push((qt, v.name.clone()));
                } else if let Some(e) = types_seen.iter_mut().find(|(q, _)| *q == qt) {
                    e.1 = v.name.clone();
                }
            }
        }
        Ok(())
    }

    fn has_conditional_members(&self, id: EntityId) -> bool {
        self.object_members(id).any(|m| m.ifcond.is_present())
    }

    /// Shared by commands and events: resolve and check `data`.
    fn check_arg_type(
        &mut self,
        id: EntityId,
        what: &str,
        arg: &str,
        boxed: bool,
    ) -> Result<EntityId> {
        let info = self.entities[id].info.clone();
        let t = self.resolve_type(arg, &info, &format!("{what}'s 'data'"))?;
        let Some(o) = self.object(t) else {
            return Err(Self::err(
                &info,
                format!("{what}'s 'data' cannot take {}", self.describe(t)),
            ));
        };
        if o.branches.is_some() && !boxed {
            return Err(Self::err(
                &info,
                format!(
                    "{what}'s 'data' can take {} only with 'boxed': true",
                    self.describe(t)
                ),
            ));
        }
        self.check_object(t)?;
        if self.has_conditional_members(t) && !boxed {
            return Err(Self::err(
                &info,
                format!("conditional {what} arguments require 'boxed': true"),
            ));
        }
        Ok(t)
    }

    fn check_command(&mut self, id: EntityId) -> Result<()> {
        let info = self.entities[id].info.clone();
        let name = self.entities[id].name.clone();
        self.check_features(&name, &self.entities[id].features, &info)?;
        let (arg, ret, boxed) = match &self.entities[id].kind {
            EntityKind::Command(c) => (c.arg_type_name.clone(), c.ret_type_name.clone(), c.boxed),
            _ => return Ok(()),
        };
        if let Some(arg) = arg {
            let t = self.check_arg_type(id, "command", &arg, boxed)?;
            if let EntityKind::Command(c) = &mut self.entities[id].kind {
                c.arg_type = Some(t);
            }
        }
        if let Some(ret) = ret {
            let t = self.resolve_type(&ret, &info, "command's 'returns'")?;
            if let EntityKind::Command(c) = &mut self.entities[id].kind {
                c.ret_type = Some(t);
            }
            let legacy_unchecked = self.dialect == Dialect::Legacy
                && self.pragma.command_returns_exceptions.is_empty();
            if !legacy_unchecked
                && !self
                    .pragma
                    .command_returns_exceptions
                    .iter()
                    .any(|n| n == &name)
            {
                let el = match &self.entities[t].kind {
                    EntityKind::Array(a) => a.element,
                    _ => t,
                };
                if el == UNRESOLVED || self.object(el).is_none() {
                    return Err(Self::err(
                        &info,
                        format!("command's 'returns' cannot take {}", self.describe(t)),
                    ));
                }
            }
        }
        Ok(())
    }

    fn check_event(&mut self, id: EntityId) -> Result<()> {
        let info = self.entities[id].info.clone();
        let name = self.entities[id].name.clone();
        self.check_features(&name, &self.entities[id].features, &info)?;
        let (arg, boxed) = match &self.entities[id].kind {
            EntityKind::Event(e) => (e.arg_type_name.clone(), e.boxed),
            _ => return Ok(()),
        };
        if let Some(arg) = arg {
            let t = self.check_arg_type(id, "event", &arg, boxed)?;
            if let EntityKind::Event(e) = &mut self.entities[id].kind {
                e.arg_type = Some(t);
            }
        }
        Ok(())
    }

    fn connect_member(
        &mut self,
        d: usize,
        role: &str,
        name: &str,
        info: &Option<Info>,
    ) -> Result<()> {
        let Some(doc) = self.docs.get(d) else {
            return Ok(());
        };
        if let Some(k) = doc
            .args
            .iter()
            .position(|a| a.name.as_deref() == Some(name))
        {
            if let Some(c) = self.doc_links[d].args_connected.get_mut(k) {
                *c = true;
            }
            return Ok(());
        }
        if self.doc_links[d].stub_args.iter().any(|s| s == name) || self.dialect == Dialect::Legacy
        {
            return Ok(());
        }
        let excepted = doc
            .symbol
            .as_ref()
            .is_some_and(|s| self.pragma.documentation_exceptions.iter().any(|e| e == s));
        if !excepted {
            return Err(Self::err(
                info,
                format!("{role} '{name}' lacks documentation"),
            ));
        }
        self.doc_links[d].stub_args.push(name.to_string());
        Ok(())
    }

    fn connect_features(&mut self, d: usize, features: &[Feature]) -> Result<()> {
        let Some(doc) = self.docs.get(d) else {
            return Ok(());
        };
        for f in features {
            match doc
                .features
                .iter()
                .position(|a| a.name.as_deref() == Some(f.name.as_str()))
            {
                Some(k) => {
                    if let Some(c) = self.doc_links[d].features_connected.get_mut(k) {
                        *c = true;
                    }
                }
                None if self.dialect == Dialect::Legacy => {}
                None => {
                    return Err(Self::err(
                        &f.info,
                        format!("feature '{}' lacks documentation", f.name),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Connect an object type's members (and an implicit base's) to `d`.
    fn connect_object_doc(&mut self, id: EntityId, d: usize) -> Result<()> {
        let features = self.entities[id].features.clone();
        self.connect_features(d, &features)?;
        let Some(o) = self.object(id) else {
            return Ok(());
        };
        if let Some(b) = o.base {
            if self.entities[b].implicit {
                self.connect_object_doc(b, d)?;
            }
        }
        let members: Vec<(String, Option<Info>, Vec<Feature>)> = match self.object(id) {
            Some(o) => o
                .local_members
                .iter()
                .map(|m| (m.name.clone(), m.info.clone(), m.features.clone()))
                .collect(),
            None => Vec::new(),
        };
        for (name, info, features) in members {
            self.connect_member(d, "member", &name, &info)?;
            self.connect_features(d, &features)?;
        }
        Ok(())
    }

    /// Connect entity `id`'s members and features to its doc comment
    /// (QEMU's `connect_doc`).
    fn connect_doc(&mut self, id: EntityId) -> Result<()> {
        let Some(d) = self.entities[id].doc else {
            return Ok(());
        };
        if d >= self.docs.len() {
            return Ok(());
        }
        if self.doc_links.len() < self.docs.len() {
            self.doc_links = self
                .docs
                .iter()
                .map(|doc| DocLinks {
                    args_connected: vec![false; doc.args.len()],
                    features_connected: vec![false; doc.features.len()],
                    stub_args: Vec::new(),
                })
                .collect();
        }
        match &self.entities[id].kind {
            EntityKind::Enum(e) => {
                let members: Vec<EnumMember> = e.members.clone();
                let features = self.entities[id].features.clone();
                self.connect_features(d, &features)?;
                for m in members {
                    self.connect_member(d, "value", &m.name, &m.info)?;
                    self.connect_features(d, &m.features)?;
                }
            }
            EntityKind::Object(_) => self.connect_object_doc(id, d)?,
            EntityKind::Alternate(a) => {
                let variants = a.variants.clone();
                let features = self.entities[id].features.clone();
                self.connect_features(d, &features)?;
                for v in variants {
                    self.connect_member(d, "branch", &v.name, &v.info)?;
                }
            }
            EntityKind::Command(Command { arg_type, .. })
            | EntityKind::Event(Event { arg_type, .. }) => {
                let arg_type = *arg_type;
                let features = self.entities[id].features.clone();
                self.connect_features(d, &features)?;
                if let Some(t) = arg_type {
                    if self.entities[t].implicit {
                        self.connect_object_doc(t, d)?;
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Every documented member and feature must exist.
    fn check_docs(&mut self) -> Result<()> {
        if self.dialect == Dialect::Legacy {
            return Ok(());
        }
        if self.doc_links.len() < self.docs.len() {
            self.doc_links.resize(self.docs.len(), DocLinks::default());
        }
        for (doc, links) in self.docs.iter().zip(&self.doc_links) {
            for (k, a) in doc.args.iter().enumerate() {
                if !links.args_connected.get(k).copied().unwrap_or(false) {
                    let name = a.name.clone().unwrap_or_default();
                    return Err(QapiError::new(
                        &a.info,
                        format!("documented member '{name}' does not exist"),
                    ));
                }
            }
            for (k, a) in doc.features.iter().enumerate() {
                if !links.features_connected.get(k).copied().unwrap_or(false) {
                    let name = a.name.clone().unwrap_or_default();
                    return Err(QapiError::new(
                        &a.info,
                        format!("documented feature '{name}' does not exist"),
                    ));
                }
            }
        }
        Ok(())
    }

    fn assign_modules(&mut self) {
        for m in &mut self.modules {
            m.entities.clear();
        }
        for id in 0..self.entities.len() {
            let info_of = match &self.entities[id].kind {
                EntityKind::Array(a) if a.element != UNRESOLVED => {
                    self.entities[a.element].info.clone()
                }
                _ => self.entities[id].info.clone(),
            };
            let module = match info_of {
                Some(i) => self.module_for_file(&i.file.name.clone()),
                None => 0,
            };
            self.entities[id].module = module;
            self.modules[module].entities.push(id);
        }
    }
}
