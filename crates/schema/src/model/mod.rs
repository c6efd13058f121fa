//! The checked schema model: QEMU 10.0's entities with resolved references.
//!
//! A [`Schema`] holds every entity in definition order (QEMU's
//! "entity list"): the built-in types first, then, per expression, the
//! implicit types it creates (array types, `q_obj_*` argument and base
//! types) followed by the entity itself. Modules (one per schema file, plus
//! `./builtin`) list their entities in the same order. References between
//! entities are [`EntityId`]s, resolved by the semantic checks.
//!
//! Construction mirrors QEMU's two phases: definition ([`build`]) turns the
//! normalised expressions into entities, detecting redefinitions; checking
//! ([`check`]) resolves names, flattens bases, adds the implicit empty union
//! branches, runs every semantic check with QEMU's messages and connects the
//! doc comments.
//!
//! Counting rule used by [`crate::stats`]: only entities written as an
//! expression count; implicit types (`q_obj_*`, `*List`, `*Kind`, legacy
//! nested anonymous structs) do not.

pub mod build;
pub mod check;
pub mod cname;
pub mod compact;
pub mod from_introspection;
pub mod statics;
pub mod storage;

pub use storage::{Boxed, List, Name};

use crate::source::{Dialect, Info};
use std::collections::HashMap;

pub use cname::c_name;

/// A small, fast hasher for name lookups (FNV-1a over the bytes); the
/// keys are schema names, not attacker-controlled at scale.
#[derive(Debug, Clone, Copy)]
pub struct NameHasher(u64);

impl Default for NameHasher {
    fn default() -> Self {
        NameHasher(0xcbf2_9ce4_8422_2325)
    }
}

impl std::hash::Hasher for NameHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// Hash maps keyed by schema names.
pub type NameMap<V> = HashMap<String, V, std::hash::BuildHasherDefault<NameHasher>>;

/// A fast hash of a name's bytes (FxHash-style, eight bytes at a time).
pub(crate) fn name_hash(name: &str) -> u64 {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let b = name.as_bytes();
    let mut h: u64 = b.len() as u64;
    let mut chunks = b.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        h = (h.rotate_left(5) ^ u64::from_le_bytes(w)).wrapping_mul(K);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut w = [0u8; 8];
        w[..rest.len()].copy_from_slice(rest);
        h = (h.rotate_left(5) ^ u64::from_le_bytes(w)).wrapping_mul(K);
    }
    h
}

/// A hasher for keys that already are hashes.
#[derive(Debug, Clone, Copy, Default)]
pub struct PrehashedHasher(u64);

impl std::hash::Hasher for PrehashedHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// Definitions by name, keyed by the name's hash (names live in the
/// entities); the rare names whose hash is taken go to `collisions`. A model
/// made of static data ([`statics`]) has its index there too, sorted by hash
/// (`fixed`); definitions added later go to the map.
#[derive(Debug, Clone, Default)]
pub(crate) struct NameIndex {
    fixed: &'static [(u64, EntityId)],
    by_hash: HashMap<u64, EntityId, std::hash::BuildHasherDefault<PrehashedHasher>>,
    collisions: NameMap<EntityId>,
}

impl NameIndex {
    fn by_hash(&self, h: u64) -> Option<EntityId> {
        if !self.fixed.is_empty() {
            if let Ok(i) = self.fixed.binary_search_by_key(&h, |&(k, _)| k) {
                return Some(self.fixed[i].1);
            }
        }
        self.by_hash.get(&h).copied()
    }

    fn get(&self, entities: &[Entity], name: &str) -> Option<EntityId> {
        match self.by_hash(name_hash(name)) {
            Some(id) if entities.get(id).is_some_and(|e| e.name == name) => Some(id),
            _ => self.collisions.get(name).copied(),
        }
    }

    fn insert(&mut self, name: &str, id: EntityId) {
        let h = name_hash(name);
        if self.by_hash(h).is_some() {
            self.collisions.insert(name.to_string(), id);
        } else {
            self.by_hash.insert(h, id);
        }
    }

    fn reserve(&mut self, n: usize) {
        self.by_hash.reserve(n);
    }
}

/// Index of an entity in [`Schema::entities`].
pub type EntityId = usize;
/// Index of a module in [`Schema::modules`].
pub type ModuleId = usize;

/// Placeholder for a reference not resolved yet.
pub(crate) const UNRESOLVED: EntityId = usize::MAX;

pub use crate::ast::{Doc, IfCond, Pragma};

/// A feature attached to a definition or a member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Feature {
    pub name: String,
    pub ifcond: IfCond,
    pub info: Option<Info>,
}

impl Feature {
    /// `deprecated` and `unstable` have a meaning to QEMU itself.
    pub fn is_special(&self) -> bool {
        self.name == "deprecated" || self.name == "unstable"
    }
}

/// A schema module: one source file (or `./builtin`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Module {
    /// Path relative to the main schema's directory, as QEMU names it.
    pub name: Name,
    /// Entities belonging to the module, in definition order.
    pub entities: List<EntityId>,
}

/// Name of the module holding the built-in types.
pub const BUILTIN_MODULE: &str = "./builtin";

/// One entity of the schema.
#[derive(Debug, Clone, PartialEq)]
pub struct Entity {
    pub name: Name,
    /// Where it was defined; `None` for built-in entities.
    pub info: Option<Info>,
    /// The doc comment (index into [`Schema::docs`]).
    pub doc: Option<usize>,
    pub ifcond: IfCond,
    pub features: Vec<Feature>,
    /// True for types the schema defines implicitly (`q_obj_*`, `q_empty`,
    /// `QType`, legacy `*Kind` enums and nested anonymous structs).
    pub implicit: bool,
    pub module: ModuleId,
    pub kind: EntityKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum EntityKind {
    Include(Include),
    Builtin(BuiltinType),
    Enum(EnumType),
    Array(ArrayType),
    Object(ObjectType),
    Alternate(AlternateType),
    Command(Command),
    Event(Event),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Include {
    /// The module the directive includes.
    pub module: ModuleId,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltinType {
    /// How values are encoded on the wire: `string`, `number`, `int`,
    /// `boolean`, `null` or `value`.
    pub json_type: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnumMember {
    pub name: Name,
    pub ifcond: IfCond,
    pub features: Vec<Feature>,
    pub info: Option<Info>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnumType {
    pub members: List<EnumMember>,
    pub prefix: Option<Name>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArrayType {
    pub element_name: Name,
    pub element: EntityId,
}

/// A member of an object type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub name: Name,
    pub type_name: Name,
    pub typ: EntityId,
    pub optional: bool,
    pub ifcond: IfCond,
    pub features: Vec<Feature>,
    pub info: Option<Info>,
    /// The object type that declares the member.
    pub defined_in: EntityId,
    /// Hash of the member's C name (for clash checks).
    pub cname_hash: u64,
}

/// A union branch or an alternate's alternative.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variant {
    pub name: Name,
    pub type_name: Name,
    pub typ: EntityId,
    pub ifcond: IfCond,
    pub info: Option<Info>,
    pub defined_in: EntityId,
}

/// Reference to a member: the object type declaring it and its position
/// among that type's local members.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemberRef {
    pub owner: EntityId,
    pub index: usize,
}

/// A union's branches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Branches {
    pub tag_name: Name,
    /// The tag member (resolved during checking).
    pub tag_member: Option<MemberRef>,
    pub variants: List<Variant>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum CheckState {
    #[default]
    Unchecked,
    InProgress,
    Done,
}

/// A struct or union type (QEMU calls both "object").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectType {
    pub base_name: Option<Name>,
    pub base: Option<EntityId>,
    pub local_members: List<Member>,
    pub branches: Option<Boxed<Branches>>,
    /// All members, the base's first (valid once checked).
    pub members: List<MemberRef>,
    pub(crate) state: CheckState,
}

/// An alternate type; its implicit tag member `type` is of type `QType`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlternateType {
    pub variants: List<Variant>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub arg_type_name: Option<Name>,
    pub arg_type: Option<EntityId>,
    pub ret_type_name: Option<Name>,
    pub ret_type: Option<EntityId>,
    pub gen: bool,
    pub success_response: bool,
    pub boxed: bool,
    pub allow_oob: bool,
    pub allow_preconfig: bool,
    pub coroutine: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub arg_type_name: Option<Name>,
    pub arg_type: Option<EntityId>,
    pub boxed: bool,
}

/// The checked model of a whole schema.
#[derive(Debug, Clone)]
pub struct Schema {
    pub dialect: Dialect,
    pub entities: List<Entity>,
    pub modules: List<Module>,
    pub docs: Vec<Doc>,
    /// How each doc comment was connected to the entities it documents.
    pub doc_links: Vec<check::DocLinks>,
    pub pragma: Pragma,
    /// Doc comments were read with older QEMU's syntax: QEMU 10.0's doc
    /// checks do not apply.
    pub legacy_docs: bool,
    by_name: NameIndex,
    /// Feature names seen so far (QEMU allows at most 64, the two special
    /// ones included).
    feature_names: Vec<String>,
    /// Directory of the main schema file, for module names.
    schema_dir: std::path::PathBuf,
    /// The current directory when the schema was read (relative file
    /// names are relative to it).
    cwd: std::path::PathBuf,
    module_by_path: NameMap<ModuleId>,
    /// Current nesting of object checks (bases, branches).
    pub(crate) check_depth: usize,
    /// The checks that only read the model are left to a later pass (see `check`).
    pub(crate) defer_checks: bool,
    /// Union types whose branches the check added to (implicit ones, for enum values without
    /// a branch): the type and how many branches it had before.
    pub(crate) grown_branches: Vec<(EntityId, usize)>,
    /// Names of the `QType` enum and `q_empty` object.
    pub(crate) qtype: EntityId,
    pub(crate) q_empty: EntityId,
}

impl Schema {
    pub fn entity(&self, id: EntityId) -> &Entity {
        &self.entities[id]
    }

    /// Look up any definition by name.
    pub fn lookup(&self, name: &str) -> Option<EntityId> {
        self.by_name.get(&self.entities, name)
    }

    /// Look up a type (not a command or event) by name.
    pub fn lookup_type(&self, name: &str) -> Option<EntityId> {
        let id = self.lookup(name)?;
        if self.is_type(id) {
            Some(id)
        } else {
            None
        }
    }

    pub fn is_type(&self, id: EntityId) -> bool {
        matches!(
            self.entities[id].kind,
            EntityKind::Builtin(_)
                | EntityKind::Enum(_)
                | EntityKind::Array(_)
                | EntityKind::Object(_)
                | EntityKind::Alternate(_)
        )
    }

    /// The member a reference points to. References are only ever made
    /// to object types' members; anything else yields an empty member.
    pub fn member(&self, r: MemberRef) -> &Member {
        match self.entities.get(r.owner).map(|e| &e.kind) {
            Some(EntityKind::Object(o)) => o.local_members.get(r.index).unwrap_or(&NO_MEMBER),
            _ => &NO_MEMBER,
        }
    }

    /// All members of an object type (base members first), once checked.
    pub fn object_members(&self, id: EntityId) -> impl Iterator<Item = &Member> {
        let refs: &[MemberRef] = match &self.entities[id].kind {
            EntityKind::Object(o) => &o.members,
            _ => &[],
        };
        refs.iter().map(move |r| self.member(*r))
    }

    /// QEMU's "meta" word for a definition: `built-in`, `enum`, `array`,
    /// `struct`, `union`, `alternate`, `command`, `event`, `include`.
    pub fn meta(&self, id: EntityId) -> &'static str {
        match &self.entities[id].kind {
            EntityKind::Include(_) => "include",
            EntityKind::Builtin(_) => "built-in",
            EntityKind::Enum(_) => "enum",
            EntityKind::Array(_) => "array",
            EntityKind::Object(o) => {
                if o.branches.is_some() {
                    "union"
                } else {
                    "struct"
                }
            }
            EntityKind::Alternate(_) => "alternate",
            EntityKind::Command(_) => "command",
            EntityKind::Event(_) => "event",
        }
    }

    /// How QEMU describes a type in messages, e.g. `union type 'Uni'`,
    /// `array type ['int']`.
    pub fn describe(&self, id: EntityId) -> String {
        let e = &self.entities[id];
        match &e.kind {
            EntityKind::Array(a) => format!("array type ['{}']", a.element_name),
            EntityKind::Command(_) | EntityKind::Event(_) | EntityKind::Include(_) => {
                format!("{} '{}'", self.meta(id), e.name)
            }
            _ => format!("{} type '{}'", self.meta(id), e.name),
        }
    }

    /// The `if` condition QEMU associates with an entity; an array type
    /// takes its element type's.
    pub fn ifcond(&self, id: EntityId) -> &IfCond {
        match &self.entities[id].kind {
            EntityKind::Array(a) if a.element != UNRESOLVED => self.ifcond(a.element),
            _ => &self.entities[id].ifcond,
        }
    }

    /// Entities in definition order, with their ids.
    pub fn iter(&self) -> impl Iterator<Item = (EntityId, &Entity)> {
        self.entities.iter().enumerate()
    }

    /// True when QEMU 10.0's doc comment checks are off (legacy dialect,
    /// or docs in older QEMU's syntax).
    pub fn lax_docs(&self) -> bool {
        self.dialect == Dialect::Legacy || self.legacy_docs
    }

    /// Id of the `q_empty` object type.
    pub fn q_empty(&self) -> EntityId {
        self.q_empty
    }

    /// Id of the `QType` enum.
    pub fn qtype(&self) -> EntityId {
        self.qtype
    }
}

static NO_MEMBER: Member = Member {
    name: Name::new_static(""),
    type_name: Name::new_static(""),
    typ: UNRESOLVED,
    optional: false,
    ifcond: IfCond::Always,
    features: Vec::new(),
    info: None,
    defined_in: UNRESOLVED,
    cname_hash: 0,
};
