//! Checking phase: resolve references, flatten bases, add implicit union
//! branches, run QEMU's semantic checks, connect doc comments, assign
//! modules.

use super::*;
use crate::error::QapiError;
use cname::{c_name_eq, c_name_hash};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

type Result<T> = std::result::Result<T, QapiError>;

/// What a name in a clash check is: its role, its name and the definition
/// it belongs to (QEMU's `QAPISchemaMember.describe`).
#[derive(Debug, Clone)]
struct Described<'a> {
    role: &'static str,
    name: &'a str,
    defined_in: &'a str,
}

impl Described<'_> {
    fn describe(&self, info: &Info) -> String {
        let mut role = self.role.to_string();
        let mut meta = "type";
        let mut defined_in = self.defined_in;
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

/// A name taking part in a clash check, by position in the model.
#[derive(Debug, Clone, Copy)]
enum SeenItem {
    /// An object type's member.
    Member(MemberRef),
    /// Value `.1` of enum `.0`.
    Value(EntityId, usize),
    /// Alternative `.1` of alternate `.0`.
    Branch(EntityId, usize),
}

/// How deep bases and union branches may nest (QEMU's own limit is
/// Python's recursion limit); deeper input is an error, not a stack
/// overflow.
const MAX_NESTING: usize = 200;

/// Schemas with at least this many entities (QEMU's have over a thousand) are checked on two
/// cores (see [`Schema::check`]); smaller ones are checked in order on one.
static PARALLEL_MIN: AtomicUsize = AtomicUsize::new(512);

/// Check schemas with at least `n` entities on two cores (0: every schema). For tests, which
/// compare both ways of checking on small schemas.
#[doc(hidden)]
pub fn set_parallel_check_min(n: usize) {
    PARALLEL_MIN.store(n, Ordering::Relaxed);
}

/// Names seen so far, with the hash of their C name.
type Seen = Vec<(u64, SeenItem)>;

/// How many emptied [`Seen`] lists a thread keeps for their capacity.
const SPARE_SEEN: usize = 8;

std::thread_local! {
    /// Emptied [`Seen`] lists: checking a schema's objects and enums takes one for each and
    /// gives it back, rather than allocating a list per type.
    static SPARE: std::cell::RefCell<Vec<Seen>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// An empty [`Seen`] list with room for `n` names.
fn seen_list(n: usize) -> Seen {
    let spare = SPARE
        .try_with(|s| s.try_borrow_mut().ok().and_then(|mut s| s.pop()))
        .ok()
        .flatten();
    match spare {
        Some(mut l) => {
            l.reserve(n);
            l
        }
        None => Seen::with_capacity(n),
    }
}

/// Give a list taken with [`seen_list`] back.
fn spare_seen(mut l: Seen) {
    l.clear();
    let _ = SPARE.try_with(|s| {
        if let Ok(mut s) = s.try_borrow_mut() {
            if s.len() < SPARE_SEEN {
                s.push(l);
            }
        }
    });
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

fn entity_name(entities: &[Entity], id: EntityId) -> &str {
    entities.get(id).map_or("", |e| e.name.as_str())
}

impl Schema {
    fn err(info: &Option<Info>, msg: String) -> QapiError {
        match info {
            Some(i) => QapiError::new(i, msg),
            None => QapiError::bare(msg),
        }
    }

    /// Resolve a type name; `what` (only called on error) says who uses it.
    fn resolve_type(
        &self,
        name: &str,
        info: &Option<Info>,
        what: impl FnOnce() -> String,
    ) -> Result<EntityId> {
        match self.lookup_type(name) {
            Some(id) => Ok(id),
            None => {
                let e = Self::err(info, format!("{} uses unknown type '{name}'", what()));
                // QEMU 1.x's pseudo-types.
                if name == "**" || name == "visitor" {
                    Err(e.legacy_hint())
                } else {
                    Err(e)
                }
            }
        }
    }

    fn described(&self, item: SeenItem) -> Described<'_> {
        match item {
            SeenItem::Member(r) => {
                let m = self.member(r);
                Described {
                    role: "member",
                    name: &m.name,
                    defined_in: entity_name(&self.entities, m.defined_in),
                }
            }
            SeenItem::Value(e, k) => Described {
                role: "value",
                name: match &self.entities[e].kind {
                    EntityKind::Enum(en) => en.members.get(k).map_or("", |m| m.name.as_str()),
                    _ => "",
                },
                defined_in: &self.entities[e].name,
            },
            SeenItem::Branch(e, k) => Described {
                role: "branch",
                name: match &self.entities[e].kind {
                    EntityKind::Alternate(a) => a.variants.get(k).map_or("", |v| v.name.as_str()),
                    _ => "",
                },
                defined_in: &self.entities[e].name,
            },
        }
    }

    /// Add `item` to `seen`, or report that its C name collides.
    fn clash(&self, seen: &mut Seen, item: SeenItem, info: &Info) -> Result<()> {
        let h = match item {
            SeenItem::Member(r) => self.member(r).cname_hash,
            _ => c_name_hash(self.described(item).name),
        };
        for (h2, other) in seen.iter() {
            if *h2 == h {
                let d = self.described(item);
                let o = self.described(*other);
                if c_name_eq(d.name, o.name) {
                    let mut info = info.clone();
                    if let SeenItem::Member(r) = item {
                        if let Some(spot) = self.member(r).info.as_ref().and_then(|i| i.spot) {
                            info.spot = Some(spot);
                        }
                    }
                    let info = &info;
                    return Err(QapiError::new(
                        info,
                        format!("{} collides with {}", d.describe(info), o.describe(info)),
                    ));
                }
            }
        }
        seen.push((h, item));
        Ok(())
    }

    /// Features of one definition or member must not clash.
    fn check_features(features: &[Feature], info: &Option<Info>) -> Result<()> {
        let Some(info) = info else { return Ok(()) };
        for (i, f) in features.iter().enumerate() {
            if let Some(o) = features[..i].iter().find(|o| c_name_eq(&o.name, &f.name)) {
                let defn = info.defn.as_ref().map_or("", |d| d.1.as_str());
                let d = |name| Described {
                    role: "feature",
                    name,
                    defined_in: defn,
                };
                return Err(QapiError::new(
                    info,
                    format!(
                        "{} collides with {}",
                        d(&f.name).describe(info),
                        d(&o.name).describe(info)
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Features of a type: no clashes, and none of the special ones
    /// (`deprecated`, `unstable`), which only commands, events and members
    /// may have.
    fn check_type_features(features: &[Feature], info: &Option<Info>) -> Result<()> {
        Self::check_features(features, info)?;
        if let Some(f) = features.iter().find(|f| f.is_special()) {
            return Err(Self::err(
                info,
                format!("feature '{}' is not supported for types", f.name),
            ));
        }
        Ok(())
    }

    /// Run every semantic check, connect doc comments and assign modules.
    ///
    /// A large schema is checked on two cores: one pass in order does what changes the
    /// model (resolving names, flattening bases, adding implicit branches) with the checks
    /// entangled with it, then the checks that only read the model (name clashes, enum
    /// values, alternates' branches, doc comments) run over the entities on both cores.
    /// Whenever either finds anything wrong, the model is put back as it was and checked
    /// again in order, the one way that reports the error QEMU reports first.
    pub fn check(&mut self) -> Result<()> {
        if self.entities.len() >= PARALLEL_MIN.load(Ordering::Relaxed) {
            if self.check_split() {
                return Ok(());
            }
            self.reset_checked();
        }
        self.check_in_order()
    }

    /// Every check in QEMU's order, on this thread.
    fn check_in_order(&mut self) -> Result<()> {
        self.doc_links = self
            .docs
            .iter()
            .map(|doc| DocLinks {
                args_connected: vec![false; doc.args.len()],
                features_connected: vec![false; doc.features.len()],
                stub_args: Vec::new(),
            })
            .collect();
        for id in 0..self.entities.len() {
            self.check_entity(id)?;
            self.connect_doc(id)?;
        }
        self.assign_modules();
        self.check_docs()
    }

    /// [`Schema::check`] in two passes, the second on two cores; false when either found
    /// something wrong (the model is then left half checked).
    fn check_split(&mut self) -> bool {
        self.defer_checks = true;
        let ok = (0..self.entities.len()).all(|id| self.check_entity(id).is_ok());
        self.defer_checks = false;
        if !ok {
            return false;
        }
        match self.verify_in_parallel() {
            Some(links) => {
                self.grown_branches = Vec::new();
                self.doc_links = links;
                self.assign_modules();
                true
            }
            None => false,
        }
    }

    /// Undo what [`Schema::check_split`] did to the model, so that the checks in order find
    /// it as the definitions left it.
    fn reset_checked(&mut self) {
        let grown = std::mem::take(&mut self.grown_branches);
        for e in self.entities.to_mut() {
            match &mut e.kind {
                EntityKind::Array(a) => a.element = UNRESOLVED,
                EntityKind::Object(o) => {
                    o.state = CheckState::Unchecked;
                    o.base = None;
                    o.members = Vec::new().into();
                    if let Some(b) = o.branches.as_mut() {
                        b.tag_member = None;
                    }
                }
                EntityKind::Command(c) => {
                    c.arg_type = None;
                    c.ret_type = None;
                }
                EntityKind::Event(ev) => ev.arg_type = None,
                _ => {}
            }
        }
        for (id, n) in grown {
            if let Some(b) = self.object_mut(id).and_then(|o| o.branches.as_mut()) {
                b.variants.to_mut().truncate(n);
            }
        }
        self.check_depth = 0;
        self.doc_links = Vec::new();
    }

    /// The checks [`Schema::check_split`] leaves to its second pass, on this thread and the
    /// helper, each taking the next few entities until none are left. The doc comments'
    /// connections when nothing is wrong (and each doc comment was connected to one entity
    /// at most, as the checks in order would connect it).
    fn verify_in_parallel(&self) -> Option<Vec<DocLinks>> {
        const STEP: usize = 32;
        let n = self.entities.len();
        let next = AtomicUsize::new(0);
        let failed = AtomicBool::new(false);
        let work = || {
            let mut out: Vec<(usize, DocLinks)> = Vec::new();
            while !failed.load(Ordering::Relaxed) {
                let start = next.fetch_add(STEP, Ordering::Relaxed);
                if start >= n {
                    break;
                }
                for id in start..(start + STEP).min(n) {
                    if self.verify_entity(id, &mut out).is_err() {
                        failed.store(true, Ordering::Relaxed);
                        break;
                    }
                }
            }
            out
        };
        let mut theirs = None;
        let mine = crate::helper::scope(|s| {
            // Without a second thread this one takes every entity.
            s.spawn(|| theirs = Some(work()));
            // The last work a check shares: a one-shot program's helper ends right after it,
            // without waiting to be woken again.
            crate::helper::shared_work_done();
            work()
        });
        if failed.load(Ordering::Relaxed) {
            return None;
        }
        let mut links: Vec<Option<DocLinks>> = Vec::with_capacity(self.docs.len());
        links.resize_with(self.docs.len(), || None);
        for (d, l) in mine.into_iter().chain(theirs.into_iter().flatten()) {
            match links.get_mut(d) {
                Some(slot @ None) => *slot = Some(l),
                _ => return None,
            }
        }
        let lax = self.lax_docs();
        let mut out = Vec::with_capacity(links.len());
        for (doc, l) in self.docs.iter().zip(links) {
            match l {
                Some(l) => out.push(l),
                // A doc comment connected to nothing documents none of its members.
                None if !lax && !(doc.args.is_empty() && doc.features.is_empty()) => return None,
                None => out.push(DocLinks {
                    args_connected: vec![false; doc.args.len()],
                    features_connected: vec![false; doc.features.len()],
                    stub_args: Vec::new(),
                }),
            }
        }
        Some(out)
    }

    /// The checks of entity `id` that only read the model (after [`Schema::check_split`]'s
    /// first pass), and its doc comment's connections, added to `out`. An error's text
    /// may differ from the one checking in order gives (only whether there is one counts).
    fn verify_entity(&self, id: EntityId, out: &mut Vec<(usize, DocLinks)>) -> Result<()> {
        let e = &self.entities[id];
        match &e.kind {
            EntityKind::Enum(_) => self.check_enum(id)?,
            EntityKind::Object(_) => {
                if e.info.is_some() && !self.members_distinct(id, &[]) {
                    return Err(QapiError::bare(String::new()));
                }
            }
            EntityKind::Alternate(_) => {
                if let Some(i) = &e.info {
                    self.alternate_branches(id, i)?;
                }
            }
            _ => {}
        }
        let Some(d) = e.doc else { return Ok(()) };
        let Some(doc) = self.docs.get(d) else {
            return Ok(());
        };
        let mut links = DocLinks {
            args_connected: vec![false; doc.args.len()],
            features_connected: vec![false; doc.features.len()],
            stub_args: Vec::new(),
        };
        self.connect_doc_to(&mut links, id, d)?;
        if !self.lax_docs() {
            bogus_sections(&doc.args, &links.args_connected, "member")?;
            bogus_sections(&doc.features, &links.features_connected, "feature")?;
        }
        out.push((d, links));
        Ok(())
    }

    /// Whether the C names of checked object `id`'s members, and of each of its branches'
    /// (with theirs, recursively), differ from each other and from `common` (sorted hashes
    /// of C names), as the clash checks require; false also when two different names merely
    /// hash alike. Sorting makes it `n log n` where comparing each name with those before
    /// it is quadratic.
    fn members_distinct(&self, id: EntityId, common: &[u64]) -> bool {
        let Some(o) = self.object(id) else {
            return true;
        };
        let mut all = Vec::with_capacity(common.len() + o.members.len());
        all.extend_from_slice(common);
        all.extend(o.members.iter().map(|r| self.member(*r).cname_hash));
        all.sort_unstable();
        if all.windows(2).any(|w| w[0] == w[1]) {
            return false;
        }
        match o.branches.as_ref() {
            Some(b) => b
                .variants
                .iter()
                .all(|v| self.members_distinct(v.typ, &all)),
            None => true,
        }
    }

    /// An enum's checks: its features, and its values' C names and features.
    fn check_enum(&self, id: EntityId) -> Result<()> {
        let e = &self.entities[id];
        let EntityKind::Enum(en) = &e.kind else {
            return Ok(());
        };
        Self::check_type_features(&e.features, &e.info)?;
        let Some(i) = &e.info else { return Ok(()) };
        for m in en.members.iter() {
            Self::check_features(&m.features, &e.info)?;
        }
        // The C names: sorted hashes show that they differ (nearly always); names whose
        // hashes match are compared as they come, which finds the clash QEMU reports.
        let mut hashes: Vec<u64> = en.members.iter().map(|m| c_name_hash(&m.name)).collect();
        hashes.sort_unstable();
        if hashes.windows(2).all(|w| w[0] != w[1]) {
            return Ok(());
        }
        let mut seen = seen_list(en.members.len());
        for k in 0..en.members.len() {
            self.clash(&mut seen, SeenItem::Value(id, k), i)?;
        }
        spare_seen(seen);
        Ok(())
    }

    fn check_entity(&mut self, id: EntityId) -> Result<()> {
        let e = &self.entities[id];
        match &e.kind {
            EntityKind::Include(_) | EntityKind::Builtin(_) => Ok(()),
            EntityKind::Enum(en) => {
                if self.defer_checks {
                    return Ok(());
                }
                Self::check_type_features(&e.features, &e.info)?;
                if let Some(i) = &e.info {
                    let mut seen = seen_list(en.members.len());
                    for (k, m) in en.members.iter().enumerate() {
                        self.clash(&mut seen, SeenItem::Value(id, k), i)?;
                        Self::check_features(&m.features, &e.info)?;
                    }
                    spare_seen(seen);
                }
                Ok(())
            }
            EntityKind::Array(a) => {
                let el = self.resolve_type(&a.element_name, &e.info, || {
                    e.info
                        .as_ref()
                        .and_then(|i| i.defn.as_ref())
                        .map(|d| d.0.clone())
                        .unwrap_or_default()
                })?;
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
        match &self.entities.get(id)?.kind {
            EntityKind::Object(o) => Some(o),
            _ => None,
        }
    }

    fn object_mut(&mut self, id: EntityId) -> Option<&mut ObjectType> {
        match &mut self.entities.get_mut(id)?.kind {
            EntityKind::Object(o) => Some(o),
            _ => None,
        }
    }

    /// Check an object type; recursion follows exactly the types whose C
    /// struct contains this one's (base and branches), so a cycle there is
    /// "contains itself".
    fn check_object(&mut self, id: EntityId) -> Result<()> {
        // The object's position, read where needed (no copy of it: this
        // runs for every object and every reference to one).
        let Some(o) = self.object(id) else {
            return Ok(());
        };
        match o.state {
            CheckState::Done => return Ok(()),
            CheckState::InProgress => {
                let name = &self.entities[id].name;
                let info = &self.entities[id].info;
                return Err(Self::err(info, format!("object {name} contains itself")));
            }
            CheckState::Unchecked => {}
        }
        let nlocal = o.local_members.len();
        let has_base = o.base_name.is_some();
        if self.check_depth >= MAX_NESTING {
            let name = &self.entities[id].name;
            return Err(Self::err(
                &self.entities[id].info,
                format!(
                    "object {name} nests bases and branches more than {MAX_NESTING} levels deep"
                ),
            ));
        }
        Self::check_type_features(&self.entities[id].features, &self.entities[id].info)?;
        if let Some(o) = self.object_mut(id) {
            o.state = CheckState::InProgress;
        }

        // Name clashes are checked here unless left to a later pass.
        let clashes = !self.defer_checks && self.entities[id].info.is_some();
        let mut seen = if clashes {
            seen_list(nlocal + 16)
        } else {
            Seen::new()
        };
        let mut members: Vec<MemberRef> = Vec::new();
        if has_base {
            let base = {
                let bn = self
                    .object(id)
                    .and_then(|o| o.base_name.as_deref())
                    .unwrap_or("");
                self.resolve_type(bn, &self.entities[id].info, || "'base'".to_string())?
            };
            if !matches!(self.object(base), Some(b) if b.branches.is_none()) {
                return Err(Self::err(
                    &self.entities[id].info,
                    format!(
                        "'base' requires a struct type, {} isn't",
                        self.describe(base)
                    ),
                ));
            }
            self.check_depth += 1;
            let r = self.check_object(base);
            self.check_depth -= 1;
            r?;
            if let Some(i) = self.entities[id].info.as_ref().filter(|_| clashes) {
                self.object_check_clash(base, i, &mut seen)?;
            }
            if let Some(b) = self.object(base) {
                members.extend(b.members.iter().copied());
            }
            if let Some(o) = self.object_mut(id) {
                o.base = Some(base);
            }
        }
        members.reserve(nlocal);
        for k in 0..nlocal {
            let t = {
                let Some(o) = self.object(id) else { break };
                let m = &o.local_members[k];
                // The definition's position, pointing at the member.
                let spot = m.info.as_ref().and_then(|i| i.spot);
                let info = &self.entities[id].info.clone().map(|mut i| {
                    i.spot = spot.or(i.spot);
                    i
                });
                Self::check_features(&m.features, info)?;
                self.resolve_type(&m.type_name, info, || match info {
                    Some(i) => self
                        .described(SeenItem::Member(MemberRef {
                            owner: id,
                            index: k,
                        }))
                        .describe(i),
                    None => format!("member '{}'", m.name),
                })?
            };
            if let Some(o) = self.object_mut(id) {
                o.local_members[k].typ = t;
            }
            let r = MemberRef {
                owner: id,
                index: k,
            };
            if let Some(i) = self.entities[id].info.as_ref().filter(|_| clashes) {
                self.clash(&mut seen, SeenItem::Member(r), i)?;
            }
            members.push(r);
        }
        let has_branches = match self.object_mut(id) {
            Some(o) => {
                o.members = members.into();
                o.branches.is_some()
            }
            None => false,
        };
        if has_branches {
            self.check_branches(id)?;
            if let Some(i) = self.entities[id].info.as_ref().filter(|_| clashes) {
                self.branches_check_clash(id, i, &seen)?;
            }
        }
        if let Some(o) = self.object_mut(id) {
            o.state = CheckState::Done;
        }
        spare_seen(seen);
        Ok(())
    }

    /// Add the members of checked object `id` (and of its branches) to
    /// `seen`, reporting clashes at `info`.
    fn object_check_clash(&self, id: EntityId, info: &Info, seen: &mut Seen) -> Result<()> {
        let Some(o) = self.object(id) else {
            return Ok(());
        };
        for r in &o.members {
            self.clash(seen, SeenItem::Member(*r), info)?;
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
        let mut s = seen_list(seen.len() + 16);
        for v in &b.variants {
            // Each branch starts from the common members only.
            s.clear();
            s.extend_from_slice(seen);
            self.object_check_clash(v.typ, info, &mut s)?;
        }
        spare_seen(s);
        Ok(())
    }

    fn check_branches(&mut self, id: EntityId) -> Result<()> {
        let info = self.entities[id].info.clone();
        let (tag, tag_enum, base) = {
            let Some(o) = self.object(id) else {
                return Ok(());
            };
            let Some(b) = o.branches.as_ref() else {
                return Ok(());
            };
            let tag_name = b.tag_name.as_str();
            let h = c_name_hash(tag_name);
            let tag = o.members.iter().copied().find(|r| {
                let m = self.member(*r);
                m.cname_hash == h && c_name_eq(&m.name, tag_name)
            });
            let tag = match tag {
                Some(r) if self.member(r).name == tag_name => r,
                _ => {
                    return Err(Self::err(
                        &info,
                        format!("discriminator '{tag_name}' is not a member of 'base'"),
                    ));
                }
            };
            let tm = self.member(tag);
            let base = match self.entities.get(tm.defined_in) {
                Some(e) if !e.implicit => format!("base type '{}'", e.name),
                _ => "'base'".to_string(),
            };
            if !matches!(self.entities[tm.typ].kind, EntityKind::Enum(_)) {
                return Err(Self::err(
                    &info,
                    format!("discriminator member '{tag_name}' of {base} must be of enum type"),
                ));
            }
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
            (tag, tm.typ, base)
        };
        let _ = base;
        let defined_in = self.member(tag).defined_in;
        // Values without a branch get the empty type.
        let mut extra = Vec::new();
        if let (EntityKind::Enum(en), Some(b)) = (
            &self.entities[tag_enum].kind,
            self.object(id).and_then(|o| o.branches.as_ref()),
        ) {
            // Branches are usually written in the enum's order: look where
            // the previous value's branch was first.
            let mut next = 0;
            for m in &en.members {
                let found = match b.variants.get(next) {
                    Some(x) if x.name == m.name => Some(next),
                    _ => b.variants.iter().position(|x| x.name == m.name),
                };
                if let Some(k) = found {
                    next = k + 1;
                } else {
                    extra.push(Variant {
                        name: m.name.clone(),
                        type_name: "q_empty".to_string().into(),
                        typ: self.q_empty,
                        ifcond: m.ifcond.clone(),
                        info: info.clone(),
                        defined_in,
                    });
                }
            }
        }
        let (nvar, declared) = match self.object_mut(id).and_then(|o| o.branches.as_mut()) {
            Some(b) => {
                b.tag_member = Some(tag);
                let declared = b.variants.len();
                b.variants.extend(extra);
                (b.variants.len(), declared)
            }
            None => (0, 0),
        };
        if nvar > declared && self.defer_checks {
            self.grown_branches.push((id, declared));
        }
        if nvar == 0 {
            return Err(Self::err(&info, "union has no branches".to_string()));
        }
        let mut next_value = 0;
        for k in 0..nvar {
            let t = {
                let Some(v) = self
                    .object(id)
                    .and_then(|o| o.branches.as_ref())
                    .and_then(|b| b.variants.get(k))
                else {
                    break;
                };
                let what = || match &info {
                    Some(i) => Described {
                        role: "branch",
                        name: &v.name,
                        defined_in: entity_name(&self.entities, v.defined_in),
                    }
                    .describe(i),
                    None => format!("branch '{}'", v.name),
                };
                let t = self.resolve_type(&v.type_name, &info, what)?;
                let is_value = match &self.entities[tag_enum].kind {
                    EntityKind::Enum(en) => {
                        let found = match en.members.get(next_value) {
                            Some(m) if m.name == v.name => Some(next_value),
                            _ => en.members.iter().position(|m| m.name == v.name),
                        };
                        if let Some(i) = found {
                            next_value = i + 1;
                        }
                        found.is_some()
                    }
                    _ => false,
                };
                if !is_value {
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
                        format!("{} cannot use {}", what(), self.describe(t)),
                    ));
                }
                t
            };
            if let Some(b) = self.object_mut(id).and_then(|o| o.branches.as_mut()) {
                b.variants[k].typ = t;
            }
            self.check_depth += 1;
            let r = self.check_object(t);
            self.check_depth -= 1;
            r?;
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
        Self::check_type_features(&self.entities[id].features, &info)?;
        let n = match &self.entities[id].kind {
            EntityKind::Alternate(a) => a.variants.len(),
            _ => return Ok(()),
        };
        for k in 0..n {
            let t = {
                let EntityKind::Alternate(a) = &self.entities[id].kind else {
                    break;
                };
                let v = &a.variants[k];
                self.resolve_type(&v.type_name, &info, || match &info {
                    Some(i) => self.described(SeenItem::Branch(id, k)).describe(i),
                    None => format!("branch '{}'", v.name),
                })?
            };
            if let EntityKind::Alternate(a) = &mut self.entities[id].kind {
                a.variants[k].typ = t;
            }
        }
        match &info {
            Some(i) if !self.defer_checks => self.alternate_branches(id, i),
            _ => Ok(()),
        }
    }

    /// An alternate's branches (their types resolved): distinct C names, types that can be
    /// told apart.
    fn alternate_branches(&self, id: EntityId, i: &Info) -> Result<()> {
        let EntityKind::Alternate(a) = &self.entities[id].kind else {
            return Ok(());
        };
        let mut seen = Seen::with_capacity(a.variants.len());
        let mut types_seen: Vec<(QType, &str)> = Vec::new();
        for (k, v) in a.variants.iter().enumerate() {
            self.clash(&mut seen, SeenItem::Branch(id, k), i)?;
            let t = v.typ;
            let Some(qt) = self.alternate_qtype(t) else {
                return Err(QapiError::new(
                    i,
                    format!(
                        "{} cannot use {}",
                        self.described(SeenItem::Branch(id, k)).describe(i),
                        self.describe(t)
                    ),
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
                        format!(
                            "{} can't be distinguished from '{}'",
                            self.described(SeenItem::Branch(id, k)).describe(i),
                            other
                        ),
                    ));
                }
            }
            for qt in conflicting {
                if !types_seen.iter().any(|(q, _)| *q == qt) {
                    types_seen.push((qt, &v.name));
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
        let t = self.resolve_type(arg, &info, || format!("{what}'s 'data'"))?;
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
        Self::check_features(&self.entities[id].features, &info)?;
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
            let t = self.resolve_type(&ret, &info, || "command's 'returns'".to_string())?;
            if let EntityKind::Command(c) = &mut self.entities[id].kind {
                c.ret_type = Some(t);
            }
            let name = &self.entities[id].name;
            let legacy_unchecked = self.dialect == Dialect::Legacy
                && self.pragma.command_returns_exceptions.is_empty();
            if !legacy_unchecked
                && !self
                    .pragma
                    .command_returns_exceptions
                    .iter()
                    .any(|n| n == name)
            {
                let el = match &self.entities[t].kind {
                    EntityKind::Array(a) => a.element,
                    _ => t,
                };
                if self.object(el).is_none() {
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
        Self::check_features(&self.entities[id].features, &info)?;
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

    /// Connect member `name` to its description in doc `d`. `next` is
    /// where the previous member's description was found plus one:
    /// members are usually described in order, so that is looked at first
    /// (under QEMU 10.0's doc rules descriptions have distinct names, so
    /// the one found there is the only one).
    #[allow(clippy::too_many_arguments)]
    fn connect_member(
        &self,
        links: &mut DocLinks,
        d: usize,
        role: &str,
        name: &str,
        info: &Option<Info>,
        next: &mut usize,
    ) -> Result<()> {
        let Some(doc) = self.docs.get(d) else {
            return Ok(());
        };
        let named = |a: &crate::ast::DocSection| a.name.as_deref() == Some(name);
        let found = match doc.args.get(*next) {
            Some(a) if !self.lax_docs() && named(a) => Some(*next),
            _ => doc.args.iter().position(named),
        };
        if let Some(k) = found {
            *next = k + 1;
            if let Some(c) = links.args_connected.get_mut(k) {
                *c = true;
            }
            return Ok(());
        }
        if self.lax_docs() || links.stub_args.iter().any(|s| s == name) {
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
        links.stub_args.push(name.to_string());
        Ok(())
    }

    fn connect_features(&self, links: &mut DocLinks, d: usize, features: &[Feature]) -> Result<()> {
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
                    if let Some(c) = links.features_connected.get_mut(k) {
                        *c = true;
                    }
                }
                None if self.lax_docs() => {}
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
    fn connect_object_doc(
        &self,
        links: &mut DocLinks,
        id: EntityId,
        d: usize,
        next: &mut usize,
    ) -> Result<()> {
        self.connect_features(links, d, &self.entities[id].features)?;
        let Some(o) = self.object(id) else {
            return Ok(());
        };
        if let Some(b) = o.base {
            if self.entities[b].implicit {
                self.connect_object_doc(links, b, d, next)?;
            }
        }
        for m in &o.local_members {
            self.connect_member(links, d, "member", &m.name, &m.info, next)?;
            self.connect_features(links, d, &m.features)?;
        }
        Ok(())
    }

    /// Connect entity `id`'s members and features to its doc comment
    /// (QEMU's `connect_doc`).
    fn connect_doc(&mut self, id: EntityId) -> Result<()> {
        let Some(d) = self.entities[id].doc else {
            return Ok(());
        };
        if d >= self.docs.len() || d >= self.doc_links.len() {
            return Ok(());
        }
        let mut links = std::mem::take(&mut self.doc_links[d]);
        let r = self.connect_doc_to(&mut links, id, d);
        self.doc_links[d] = links;
        r
    }

    fn connect_doc_to(&self, links: &mut DocLinks, id: EntityId, d: usize) -> Result<()> {
        let e = &self.entities[id];
        let next = &mut 0;
        match &e.kind {
            EntityKind::Enum(en) => {
                self.connect_features(links, d, &e.features)?;
                for m in &en.members {
                    self.connect_member(links, d, "value", &m.name, &m.info, next)?;
                    self.connect_features(links, d, &m.features)?;
                }
            }
            EntityKind::Object(_) => self.connect_object_doc(links, id, d, next)?,
            EntityKind::Alternate(a) => {
                self.connect_features(links, d, &e.features)?;
                for v in &a.variants {
                    self.connect_member(links, d, "branch", &v.name, &v.info, next)?;
                }
            }
            EntityKind::Command(Command { arg_type, .. })
            | EntityKind::Event(Event { arg_type, .. }) => {
                self.connect_features(links, d, &e.features)?;
                if let Some(t) = *arg_type {
                    if self.entities[t].implicit {
                        self.connect_object_doc(links, t, d, next)?;
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Every documented member and feature must exist.
    fn check_docs(&mut self) -> Result<()> {
        if self.lax_docs() {
            return Ok(());
        }
        if self.doc_links.len() < self.docs.len() {
            self.doc_links.resize(self.docs.len(), DocLinks::default());
        }
        for (doc, links) in self.docs.iter().zip(&self.doc_links) {
            bogus_sections(&doc.args, &links.args_connected, "member")?;
            bogus_sections(&doc.features, &links.features_connected, "feature")?;
        }
        Ok(())
    }

    fn assign_modules(&mut self) {
        for m in &mut self.modules {
            m.entities.clear();
        }
        // Consecutive entities mostly come from the same file: remember the
        // last file's module.
        let mut last: Option<(*const crate::source::SourceFile, ModuleId)> = None;
        for id in 0..self.entities.len() {
            let file = match &self.entities[id].kind {
                EntityKind::Array(a) if a.element != UNRESOLVED => self.entities[a.element]
                    .info
                    .as_ref()
                    .map(|i| i.file.clone()),
                _ => self.entities[id].info.as_ref().map(|i| i.file.clone()),
            };
            let module = match file {
                None => 0,
                Some(f) => match last {
                    Some((p, m)) if std::ptr::eq(p, std::sync::Arc::as_ptr(&f)) => m,
                    _ => {
                        let m = self.module_for_file(&f.name);
                        last = Some((std::sync::Arc::as_ptr(&f), m));
                        m
                    }
                },
            };
            self.entities[id].module = module;
            self.modules[module].entities.push(id);
        }
    }
}

/// QEMU names every documented member (or feature) of one comment that does not exist, in
/// the comment's order, at the first one's line: `documented member 'a' does not exist`,
/// `documented members 'a', 'b' do not exist`.
fn bogus_sections(
    sections: &[crate::ast::DocSection],
    connected: &[bool],
    what: &str,
) -> Result<()> {
    let mut bogus = sections
        .iter()
        .enumerate()
        .filter(|(k, _)| !connected.get(*k).copied().unwrap_or(false))
        .map(|(_, a)| a);
    let Some(first) = bogus.next() else {
        return Ok(());
    };
    let mut names = vec![first.name.clone().unwrap_or_default()];
    names.extend(bogus.map(|a| a.name.clone().unwrap_or_default()));
    let msg = if names.len() == 1 {
        format!("documented {what} '{}' does not exist", names[0])
    } else {
        format!("documented {what}s '{}' do not exist", names.join("', '"))
    };
    Err(QapiError::new(&first.info, msg))
}
