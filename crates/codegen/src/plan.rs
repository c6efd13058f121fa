//! What to generate: which entities, under which Rust names, what is boxed, what derives
//! `Default`. Everything here is decided before a line is written.

use std::collections::VecDeque;

use qmpkit_schema::model::from_introspection::is_hidden;
use qmpkit_schema::model::{EntityId, EntityKind, IfCond, Member, ObjectType, Variant};
use qmpkit_schema::Schema;

use crate::names::{camel, snake, Namespace};
use crate::Options;

/// How a command's (or event's) struct holds its arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shape {
    /// No arguments: an empty struct.
    Empty,
    /// The members of this object type, as the struct's own fields.
    Inline(EntityId),
    /// A newtype around this type (boxed commands, union arguments).
    Wrap(EntityId),
    /// `gen: false`: a JSON object.
    Map,
    /// The command is implemented on this (already generated) type itself.
    OnType(EntityId),
}

#[derive(Debug, Clone)]
pub struct CallPlan {
    pub id: EntityId,
    pub rust: String,
    pub shape: Shape,
    /// Method name in the server trait (commands only).
    pub method: String,
}

/// A union branch as generated.
#[derive(Debug, Clone)]
pub enum Payload {
    /// An empty branch: a unit variant.
    Unit,
    /// A legacy simple union's branch: the `data` member's type.
    Data(EntityId),
    /// A branch of this object type.
    Object(EntityId),
}

pub struct Plan<'a> {
    pub s: &'a Schema,
    pub opts: &'a Options,
    /// Per entity: its condition holds (and it is not a hidden helper).
    pub on: Vec<bool>,
    /// Per type entity: generated under this name.
    pub name: Vec<Option<String>>,
    /// Per union: name of its branch enum (the union's own name when its base is only the tag).
    pub branch_enum: Vec<Option<String>>,
    /// Strongly connected component of each entity in the by-value containment graph.
    scc: Vec<usize>,
    /// Per struct type: `Default` can be derived.
    pub defaultable: Vec<bool>,
    pub commands: Vec<CallPlan>,
    pub events: Vec<CallPlan>,
    pub any_event: String,
    pub commands_trait: String,
    /// The synchronous handler trait's name (`Handlers`).
    pub handlers_trait: String,
    /// Types in the order they are generated.
    pub types: Vec<EntityId>,
}

pub fn is_masked(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_digit())
}

impl<'a> Plan<'a> {
    pub fn new(s: &'a Schema, opts: &'a Options) -> Plan<'a> {
        let n = s.entities.len();
        let mut p = Plan {
            s,
            opts,
            on: vec![false; n],
            name: vec![None; n],
            branch_enum: vec![None; n],
            scc: vec![usize::MAX; n],
            defaultable: vec![false; n],
            commands: Vec::new(),
            events: Vec::new(),
            any_event: String::new(),
            commands_trait: String::new(),
            handlers_trait: String::new(),
            types: Vec::new(),
        };
        for (id, e) in s.iter() {
            p.on[id] = !is_hidden(e) && p.cond(s.ifcond(id));
        }
        p.assign_names();
        p.compute_scc();
        p.compute_defaultable();
        p
    }

    pub fn cond(&self, c: &IfCond) -> bool {
        c.eval(&|sym| self.opts.cfg.contains(sym))
    }

    pub fn object(&self, id: EntityId) -> Option<&'a ObjectType> {
        match &self.s.entities.get(id)?.kind {
            EntityKind::Object(o) => Some(o),
            _ => None,
        }
    }

    /// The enabled members of an object type, base members first.
    pub fn members(&self, id: EntityId) -> Vec<&'a Member> {
        let s: &'a Schema = self.s;
        s.object_members(id)
            .filter(|m| self.cond(&m.ifcond))
            .collect()
    }

    /// The enabled branches of a union.
    pub fn variants(&self, id: EntityId) -> Vec<&'a Variant> {
        match self.object(id).and_then(|o| o.branches.as_deref()) {
            Some(b) => b.variants.iter().filter(|v| self.cond(&v.ifcond)).collect(),
            None => Vec::new(),
        }
    }

    /// The tag member's name of a union.
    pub fn tag_name(&self, id: EntityId) -> Option<&'a str> {
        let b = self.object(id)?.branches.as_deref()?;
        Some(match b.tag_member {
            Some(r) => self.s.member(r).name.as_str(),
            None => b.tag_name.as_str(),
        })
    }

    pub fn is_union(&self, id: EntityId) -> bool {
        self.object(id).is_some_and(|o| o.branches.is_some())
    }

    /// An implicit `q_obj_…-wrapper` of a legacy simple union: its one member `data`.
    pub fn wrapped(&self, id: EntityId) -> Option<EntityId> {
        let e = self.s.entities.get(id)?;
        let o = self.object(id)?;
        if e.implicit
            && e.name.starts_with("q_obj_")
            && e.name.ends_with("-wrapper")
            && o.local_members.len() == 1
            && o.local_members[0].name == "data"
        {
            Some(o.local_members[0].typ)
        } else {
            None
        }
    }

    /// Implicit argument and base types: their members are inlined where they are used.
    fn is_inlined_implicit(&self, id: EntityId) -> bool {
        let e = &self.s.entities[id];
        e.implicit
            && e.name.starts_with("q_obj_")
            && (e.name.ends_with("-arg") || e.name.ends_with("-base"))
    }

    fn needs_derived_name(&self, id: EntityId) -> bool {
        let e = &self.s.entities[id];
        is_masked(&e.name)
            || (e.implicit && e.name.starts_with("q_obj_") && e.name.ends_with("-nested"))
    }

    /// The payload of a union branch.
    pub fn payload(&self, v: &Variant) -> Payload {
        if v.typ == self.s.q_empty() {
            return Payload::Unit;
        }
        if let Some(t) = self.wrapped(v.typ) {
            return Payload::Data(t);
        }
        Payload::Object(v.typ)
    }

    /// Whether a by-value reference from `from` to `to` must be boxed (they are part of one
    /// cycle).
    pub fn boxed(&self, from: EntityId, to: EntityId) -> bool {
        let to = self.strip_arrays_none(to);
        match to {
            Some(to) => {
                self.scc.get(from).is_some_and(|c| *c != usize::MAX)
                    && self.scc.get(from) == self.scc.get(to)
            }
            None => false,
        }
    }

    /// `Some(id)` unless `id` is an array type (arrays break cycles).
    fn strip_arrays_none(&self, id: EntityId) -> Option<EntityId> {
        match self.s.entities.get(id).map(|e| &e.kind) {
            Some(EntityKind::Array(_)) | None => None,
            _ => Some(id),
        }
    }

    fn element(&self, mut id: EntityId) -> EntityId {
        while let Some(EntityKind::Array(a)) = self.s.entities.get(id).map(|e| &e.kind) {
            id = a.element;
        }
        id
    }

    /// Types a type uses, with the name suffix a derived name takes from the use.
    fn uses(&self, id: EntityId) -> Vec<(EntityId, String)> {
        let mut out = Vec::new();
        match &self.s.entities[id].kind {
            EntityKind::Object(o) => {
                let tag = self.tag_name(id);
                for m in self.members(id) {
                    if Some(m.name.as_str()) == tag && o.branches.is_some() {
                        out.push((m.typ, camel(&m.name)));
                        continue;
                    }
                    out.push((m.typ, camel(&m.name)));
                }
                for v in self.variants(id) {
                    match self.payload(v) {
                        Payload::Unit => {}
                        Payload::Data(t) => out.push((t, camel(&v.name))),
                        Payload::Object(t) => out.push((t, camel(&v.name))),
                    }
                }
            }
            EntityKind::Alternate(a) => {
                for v in &a.variants {
                    if !self.cond(&v.ifcond) {
                        continue;
                    }
                    let t = self.element(v.typ);
                    let suffix = if is_masked(&v.name) || v.name.starts_with('[') {
                        match &self.s.entities[v.typ].kind {
                            EntityKind::Array(_) => "Array".to_string(),
                            EntityKind::Enum(_) => "Enum".to_string(),
                            _ => "Object".to_string(),
                        }
                    } else {
                        camel(&v.name)
                    };
                    out.push((t, suffix));
                }
            }
            _ => {}
        }
        out
    }

    fn is_type_kind(&self, id: EntityId) -> bool {
        matches!(
            self.s.entities[id].kind,
            EntityKind::Enum(_) | EntityKind::Object(_) | EntityKind::Alternate(_)
        )
    }

    fn assign_names(&mut self) {
        let s = self.s;
        let mut ns = Namespace::default();
        // How often each type is used as a command's or event's arguments, and overall.
        let mut arg_uses = vec![0usize; s.entities.len()];
        let mut uses = vec![0usize; s.entities.len()];
        for (id, e) in s.iter() {
            if !self.on[id] {
                continue;
            }
            match &e.kind {
                EntityKind::Command(c) => {
                    for t in [c.arg_type, c.ret_type].into_iter().flatten() {
                        uses[self.element(t)] += 1;
                    }
                    if let Some(t) = c.arg_type {
                        arg_uses[t] += 1;
                    }
                }
                EntityKind::Event(ev) => {
                    if let Some(t) = ev.arg_type {
                        uses[t] += 1;
                        arg_uses[t] += 1;
                    }
                }
                EntityKind::Object(_) | EntityKind::Alternate(_) => {
                    for (t, _) in self.uses(id) {
                        uses[self.element(t)] += 1;
                    }
                }
                _ => {}
            }
        }
        // Masked argument types used once are the command's (event's) struct.
        let inline_masked = |p: &Plan, t: EntityId| -> bool {
            p.needs_derived_name(t) && uses[t] == 1 && !p.is_union(t)
        };
        // Types with a name of their own come first.
        let mut emit = vec![false; s.entities.len()];
        for (id, e) in s.iter() {
            if !self.on[id] || !self.is_type_kind(id) || id == s.q_empty() {
                continue;
            }
            if self.is_inlined_implicit(id) || self.wrapped(id).is_some() {
                continue;
            }
            if e.implicit && uses[id] == 0 && !self.needs_derived_name(id) {
                // QType and other implicit types nothing refers to.
                continue;
            }
            emit[id] = true;
            if !self.needs_derived_name(id) {
                self.name[id] = Some(ns.unique(&camel(&e.name), ""));
            }
        }
        // Commands, then events (a command keeps its name when an event has the same).
        let calls: Vec<EntityId> = s
            .iter()
            .filter(|(_, e)| matches!(e.kind, EntityKind::Command(_)))
            .chain(
                s.iter()
                    .filter(|(_, e)| matches!(e.kind, EntityKind::Event(_))),
            )
            .map(|(id, _)| id)
            .collect();
        for id in calls {
            let e = &s.entities[id];
            if !self.on[id] {
                continue;
            }
            let (arg, gen, boxed, suffix) = match &e.kind {
                EntityKind::Command(c) => (c.arg_type, c.gen, c.boxed, "Command"),
                EntityKind::Event(ev) => (ev.arg_type, true, ev.boxed, "Event"),
                _ => continue,
            };
            let mut shape = match arg {
                _ if !gen => Shape::Map,
                None => Shape::Empty,
                Some(t) if t == s.q_empty() => Shape::Empty,
                Some(t) if boxed || self.is_union(t) || self.object(t).is_none() => Shape::Wrap(t),
                Some(t) => Shape::Inline(t),
            };
            if let Shape::Inline(t) = shape {
                if inline_masked(self, t) {
                    emit[t] = false;
                }
            }
            let want = camel(&e.name);
            let rust = if ns.contains(&want) {
                match shape {
                    Shape::Inline(t)
                        if self.name[t].as_deref() == Some(want.as_str()) && arg_uses[t] == 1 =>
                    {
                        shape = Shape::OnType(t);
                        want
                    }
                    _ => ns.unique(&format!("{want}{suffix}"), ""),
                }
            } else {
                ns.unique(&want, "")
            };
            let plan = CallPlan {
                id,
                rust,
                shape,
                method: String::new(),
            };
            if matches!(e.kind, EntityKind::Command(_)) {
                self.commands.push(plan);
            } else {
                self.events.push(plan);
            }
        }
        let mut methods = Namespace::default();
        for c in &mut self.commands {
            c.method = methods.unique(&snake(&s.entities[c.id].name), "_");
        }
        self.any_event = ns.unique("AnyEvent", "");
        self.commands_trait = ns.unique("Commands", "");
        self.handlers_trait = ns.unique("Handlers", "");
        // Derived names: first use, users before what they use.
        let mut queue: VecDeque<(EntityId, String)> = VecDeque::new();
        for c in self.commands.iter().chain(&self.events) {
            let e = &s.entities[c.id];
            let (arg, ret) = match &e.kind {
                EntityKind::Command(k) => (k.arg_type, k.ret_type),
                EntityKind::Event(k) => (k.arg_type, None),
                _ => (None, None),
            };
            let is_cmd = matches!(e.kind, EntityKind::Command(_));
            match &c.shape {
                Shape::Inline(t) if !emit[*t] || self.is_inlined_implicit(*t) => {
                    for (u, suffix) in self.uses(*t) {
                        queue.push_back((u, format!("{}{suffix}", c.rust)));
                    }
                }
                _ => {
                    if let Some(t) = arg {
                        let sfx = if is_cmd { "Arg" } else { "Data" };
                        queue.push_back((t, format!("{}{sfx}", c.rust)));
                    }
                }
            }
            if let Some(t) = ret {
                queue.push_back((t, format!("{}Ret", c.rust)));
            }
        }
        for (id, _) in s.iter() {
            if let Some(n) = &self.name[id] {
                for (u, suffix) in self.uses(id) {
                    queue.push_back((u, format!("{n}{suffix}")));
                }
            } else if self.on[id] && self.is_inlined_implicit(id) {
                // Implicit bases: their members' types are named after the union.
                continue;
            }
        }
        while let Some((t, cand)) = queue.pop_front() {
            let t = self.element(t);
            if t >= s.entities.len() || !emit[t] || self.name[t].is_some() {
                continue;
            }
            if !self.needs_derived_name(t) {
                continue;
            }
            let n = ns.unique(&cand, "");
            for (u, suffix) in self.uses(t) {
                queue.push_back((u, format!("{n}{suffix}")));
            }
            self.name[t] = Some(n);
        }
        for (id, _) in s.iter() {
            if emit[id] && self.name[id].is_some() {
                self.types.push(id);
            }
        }
        // Union branch enums.
        for &id in &self.types {
            if !self.is_union(id) {
                continue;
            }
            let tag = self.tag_name(id);
            let has_base = self
                .members(id)
                .iter()
                .any(|m| Some(m.name.as_str()) != tag);
            let own = self.name[id].clone().unwrap_or_default();
            self.branch_enum[id] = Some(if has_base {
                ns.unique(&format!("{own}Branch"), "")
            } else {
                own
            });
        }
    }

    /// Tarjan's algorithm (iterative) over by-value containment between generated types.
    fn compute_scc(&mut self) {
        let n = self.s.entities.len();
        let mut edges: Vec<Vec<EntityId>> = vec![Vec::new(); n];
        for &id in &self.types {
            for (u, _) in self.uses(id) {
                if let Some(u) = self.strip_arrays_none(u) {
                    if u < n {
                        edges[id].push(u);
                    }
                }
            }
        }
        let mut index = vec![usize::MAX; n];
        let mut low = vec![0usize; n];
        let mut on_stack = vec![false; n];
        let mut stack: Vec<EntityId> = Vec::new();
        let mut next = 0usize;
        let mut comp = 0usize;
        for &root in &self.types {
            if index[root] != usize::MAX {
                continue;
            }
            let mut work: Vec<(EntityId, usize)> = vec![(root, 0)];
            index[root] = next;
            low[root] = next;
            next += 1;
            stack.push(root);
            on_stack[root] = true;
            while let Some(&mut (v, ref mut i)) = work.last_mut() {
                if *i < edges[v].len() {
                    let w = edges[v][*i];
                    *i += 1;
                    if index[w] == usize::MAX {
                        index[w] = next;
                        low[w] = next;
                        next += 1;
                        stack.push(w);
                        on_stack[w] = true;
                        work.push((w, 0));
                    } else if on_stack[w] {
                        low[v] = low[v].min(index[w]);
                    }
                } else {
                    work.pop();
                    if let Some(&(parent, _)) = work.last() {
                        low[parent] = low[parent].min(low[v]);
                    }
                    if low[v] == index[v] {
                        // Singleton components without a self edge are not cycles.
                        let mut members = Vec::new();
                        while let Some(w) = stack.pop() {
                            on_stack[w] = false;
                            members.push(w);
                            if w == v {
                                break;
                            }
                        }
                        if members.len() > 1 || edges[v].contains(&v) {
                            for w in members {
                                self.scc[w] = comp;
                            }
                            comp += 1;
                        }
                    }
                }
            }
        }
    }

    /// Whether a value of type `t` has an obvious default (for `#[derive(Default)]`).
    fn type_defaultable(&self, t: EntityId, known: &[bool]) -> bool {
        match self.s.entities.get(t).map(|e| &e.kind) {
            Some(EntityKind::Builtin(_)) | Some(EntityKind::Array(_)) => true,
            Some(EntityKind::Object(o)) if o.branches.is_none() => {
                t == self.s.q_empty() || known[t] || self.name[t].is_none()
            }
            _ => false,
        }
    }

    pub fn members_defaultable(&self, id: EntityId) -> bool {
        self.members(id)
            .iter()
            .all(|m| m.optional || self.type_defaultable(m.typ, &self.defaultable))
    }

    fn compute_defaultable(&mut self) {
        let structs: Vec<EntityId> = self
            .types
            .iter()
            .copied()
            .filter(|&id| self.object(id).is_some_and(|o| o.branches.is_none()))
            .collect();
        let mut known = vec![false; self.s.entities.len()];
        for &id in &structs {
            known[id] = true;
        }
        loop {
            let mut changed = false;
            for &id in &structs {
                if known[id]
                    && !self
                        .members(id)
                        .iter()
                        .all(|m| m.optional || self.type_defaultable(m.typ, &known))
                {
                    known[id] = false;
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
        self.defaultable = known;
    }
}
