//! What changed between two versions of a schema, and what each change does
//! to existing clients and to existing server implementations.
//!
//! Either side may be a model built from source or loaded from a
//! `query-qmp-schema` answer, where type names are masked numbers. Types
//! are therefore compared structurally, matched by where they are used:
//! command `X`'s arguments, its return value, event `Y`'s data, a member,
//! an array's elements, a union branch, an alternative. When both sides
//! give a type the same real name (neither masked nor implicit), its
//! changes are reported once under `type NAME`; otherwise under the first
//! place that reaches it, with commands and events visited in name order
//! (a type shared by several places is reported once). Every definition
//! counts whatever its `if` condition; between two sources, changed
//! conditions are reported as such. Type names themselves are not on
//! the wire; types are only listed as added or removed when both sides
//! have real names, and only types reached from a command or event are
//! compared.
//!
//! Each [`Change`] carries two verdicts ([`Impact`]): for an existing
//! *client* (written against the old schema, talking to a new server) and
//! for an existing *server* implementation (written against the old
//! schema, now expected to implement the new one). Where a type is used
//! decides: in *input* (command arguments), a new optional member is
//! compatible for clients but a server must accept it; in *output* (return
//! values, event data) a new mandatory member is compatible for clients
//! (QMP clients ignore members they do not know) but a server must
//! produce it. A type used both ways gets the worse verdict of the two.
//!
//! Probable renames ([`Rename`]) are detected where obvious: a command,
//! event or named type removed while one with the same name modulo case,
//! `_`/`-` spelling and an `x-` prefix is added, and members likewise;
//! within a renamed command or event, a single removed member and a single
//! added member of the same type are taken as a rename too. The
//! underlying removal and addition stay listed and classified.
//!
//! The JSON form ([`SchemaDiff::to_json`]) is documented there.

use crate::model::from_introspection::{is_hidden, is_hidden_feature, INTROSPECTION_MODULE};
use crate::model::{EntityId, EntityKind, Feature, IfCond, Schema};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// What a change does to one party.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Impact {
    Compatible,
    Breaking,
}

use Impact::{Breaking as B, Compatible as C};

/// The kind of definition a change is under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RootKind {
    Command,
    Event,
    Type,
}

impl RootKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RootKind::Command => "command",
            RootKind::Event => "event",
            RootKind::Type => "type",
        }
    }
}

/// What changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChangeKind {
    /// The command, event or type itself was added.
    Added,
    /// The command, event or type itself was removed.
    Removed,
    MemberAdded,
    MemberRemoved,
    MadeOptional,
    MadeMandatory,
    /// A type changed at a place (member, return value, element…).
    Retyped,
    ValueAdded,
    ValueRemoved,
    BecameUnion,
    NoLongerUnion,
    TagChanged,
    BranchAdded,
    BranchRemoved,
    AlternativeAdded,
    AlternativeRemoved,
    FeatureAdded,
    FeatureRemoved,
    /// A command or event flag (`allow-oob`, `success-response`,
    /// `allow-preconfig`, `boxed`).
    FlagChanged,
    /// The `if` condition of a definition, member, enum value or branch
    /// (sources only; `always` when there is none).
    ConditionChanged,
}

/// Where a type is used: bit 1 input (command arguments), bit 2 output.
const IN: u8 = 1;
const OUT: u8 = 2;

/// One change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    pub kind: ChangeKind,
    /// `command`, `event` or `type`.
    #[serde(rename = "where")]
    pub root_kind: RootKind,
    /// Name of the command, event or type (the new name where both exist).
    pub name: String,
    /// Place within it: `arguments`, `returns`, `data`, then members
    /// (`.name`), array elements (`[]`), union branches (`.{tag=case}`),
    /// alternatives (`.<category>`); empty for the definition itself.
    pub path: String,
    /// The member, enum value, branch, feature or flag concerned.
    pub item: Option<String>,
    /// Old type, flag value or tag, where that applies.
    pub old: Option<String>,
    /// New type, flag value or tag, where that applies; for
    /// `member-removed`, the union branches now having a member of that
    /// name (`'x86', 'ppc'`), if any.
    pub new: Option<String>,
    /// `input`, `output`, `input+output`, or `none` for definitions.
    pub position: &'static str,
    pub client: Impact,
    pub server: Impact,
}

impl Change {
    /// One line of human-readable text (without the verdicts).
    pub fn describe(&self) -> String {
        let item = self.item.as_deref().unwrap_or("");
        let old = self.old.as_deref().unwrap_or("");
        let new = self.new.as_deref().unwrap_or("");
        let what = match self.kind {
            ChangeKind::Added => "added".to_string(),
            ChangeKind::Removed => "removed".to_string(),
            ChangeKind::MemberAdded => format!("member '{item}' added ({new})"),
            ChangeKind::MemberRemoved if new.is_empty() => {
                format!("member '{item}' removed ({old})")
            }
            ChangeKind::MemberRemoved => {
                format!("member '{item}' removed ({old}); now in branch {new}")
            }
            ChangeKind::MadeOptional => format!("member '{item}' made optional"),
            ChangeKind::MadeMandatory => format!("member '{item}' made mandatory"),
            ChangeKind::Retyped if item.is_empty() => format!("retyped: {old} → {new}"),
            ChangeKind::Retyped => format!("member '{item}' retyped: {old} → {new}"),
            ChangeKind::ValueAdded => format!("value '{item}' added"),
            ChangeKind::ValueRemoved => format!("value '{item}' removed"),
            ChangeKind::BecameUnion => format!("became a union (tag '{new}')"),
            ChangeKind::NoLongerUnion => format!("no longer a union (tag was '{old}')"),
            ChangeKind::TagChanged => format!("union tag changed: '{old}' → '{new}'"),
            ChangeKind::BranchAdded => format!("branch '{item}' added ({new})"),
            ChangeKind::BranchRemoved => format!("branch '{item}' removed ({old})"),
            ChangeKind::AlternativeAdded => format!("alternative {new} added"),
            ChangeKind::AlternativeRemoved => format!("alternative {old} removed"),
            ChangeKind::FeatureAdded => format!("feature '{item}' added"),
            ChangeKind::FeatureRemoved => format!("feature '{item}' removed"),
            ChangeKind::FlagChanged => format!("{item}: {old} → {new}"),
            ChangeKind::ConditionChanged if item.is_empty() => {
                format!("condition: {old} → {new}")
            }
            ChangeKind::ConditionChanged => format!("'{item}' condition: {old} → {new}"),
        };
        if self.path.is_empty() {
            format!("{}: {what}", self.name)
        } else {
            format!("{} {}: {what}", self.name, self.path)
        }
    }
}

/// A probable rename.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rename {
    /// `command`, `event`, `type` or `member`.
    pub kind: &'static str,
    /// For a member: the definition and place holding it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub within: Option<String>,
    pub old: String,
    pub new: String,
    /// For a command or event: how the renamed one differs (lines as in
    /// the text form), e.g. a member renamed too.
    pub details: Vec<String>,
}

/// Counts for the summary line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Summary {
    pub changes: usize,
    pub client_breaking: usize,
    pub server_breaking: usize,
    pub renames: usize,
}

/// The differences between two schemas.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SchemaDiff {
    /// Sorted: commands, events, types; by name, path, kind, item.
    pub changes: Vec<Change>,
    /// Sorted by kind, then old name.
    pub renames: Vec<Rename>,
}

impl SchemaDiff {
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    pub fn summary(&self) -> Summary {
        Summary {
            changes: self.changes.len(),
            client_breaking: self.changes.iter().filter(|c| c.client == B).count(),
            server_breaking: self.changes.iter().filter(|c| c.server == B).count(),
            renames: self.renames.len(),
        }
    }

    /// The summary line of the text form.
    pub fn summary_line(&self) -> String {
        let s = self.summary();
        if s.changes == 0 {
            return "no changes".to_string();
        }
        format!(
            "{} change{}: {} breaking for clients, {} breaking for servers; {} probable rename{}",
            s.changes,
            if s.changes == 1 { "" } else { "s" },
            s.client_breaking,
            s.server_breaking,
            s.renames,
            if s.renames == 1 { "" } else { "s" },
        )
    }

    /// The text form: a legend, the changes grouped under `Commands`,
    /// `Events`, `Types`, one per line prefixed by two verdict columns
    /// (client, server: `B` breaking, `.` compatible), then `Probable
    /// renames`, then the summary line.
    pub fn to_text(&self, old_label: &str, new_label: &str) -> String {
        let mut out = String::new();
        out.push_str(&format!("--- {old_label}\n+++ {new_label}\n"));
        if !self.changes.is_empty() {
            out.push_str("(columns: effect on existing clients, on existing servers; B breaking, . compatible)\n");
        }
        for (kind, title) in [
            (RootKind::Command, "Commands"),
            (RootKind::Event, "Events"),
            (RootKind::Type, "Types"),
        ] {
            let mut first = true;
            for c in self.changes.iter().filter(|c| c.root_kind == kind) {
                if first {
                    out.push_str(&format!("\n{title}\n"));
                    first = false;
                }
                let mark = |i: Impact| if i == B { 'B' } else { '.' };
                out.push_str(&format!(
                    "  {}{} {}\n",
                    mark(c.client),
                    mark(c.server),
                    c.describe()
                ));
            }
        }
        if !self.renames.is_empty() {
            out.push_str("\nProbable renames\n");
            for r in &self.renames {
                match &r.within {
                    Some(w) => out.push_str(&format!(
                        "  member '{}' → '{}' in {w} (probably)\n",
                        r.old, r.new
                    )),
                    None => {
                        out.push_str(&format!("  {} {} → {} (probably)\n", r.kind, r.old, r.new))
                    }
                }
                for d in &r.details {
                    out.push_str(&format!("      {d}\n"));
                }
            }
        }
        out.push_str(&format!("\n{}\n", self.summary_line()));
        out
    }

    /// The JSON form:
    ///
    /// ```text
    /// { "old": LABEL, "new": LABEL,
    ///   "summary": { "changes": N, "client-breaking": N,
    ///                "server-breaking": N, "renames": N },
    ///   "changes": [ { "kind": KIND, "where": "command"|"event"|"type",
    ///                  "name": NAME, "path": PATH, "item": STR|null,
    ///                  "old": STR|null, "new": STR|null,
    ///                  "position": "input"|"output"|"input+output"|"none",
    ///                  "client": "compatible"|"breaking",
    ///                  "server": "compatible"|"breaking" } ... ],
    ///   "renames": [ { "kind": "command"|"event"|"type"|"member",
    ///                  "within": STR (members only), "old": NAME,
    ///                  "new": NAME, "details": [STR ...] } ... ] }
    /// ```
    ///
    /// `KIND` is one of [`ChangeKind`]'s names in kebab case (`added`,
    /// `removed`, `member-added`, `member-removed`, `made-optional`,
    /// `made-mandatory`, `retyped`, `value-added`, `value-removed`,
    /// `became-union`, `no-longer-union`, `tag-changed`, `branch-added`,
    /// `branch-removed`, `alternative-added`, `alternative-removed`,
    /// `feature-added`, `feature-removed`, `flag-changed`,
    /// `condition-changed`).
    pub fn to_json(&self, old_label: &str, new_label: &str) -> serde_json::Value {
        serde_json::json!({
            "old": old_label,
            "new": new_label,
            "summary": self.summary(),
            "changes": self.changes,
            "renames": self.renames,
        })
    }
}

/// Compare two schemas.
pub fn diff(old: &Schema, new: &Schema) -> SchemaDiff {
    let mut d = Differ::new(old, new, false);
    d.run();
    let mut out = SchemaDiff {
        changes: d.changes,
        renames: d.renames,
    };
    sort_changes(&mut out.changes);
    out.renames.sort_by(|a, b| {
        (rename_rank(a.kind), &a.within, &a.old, &a.new).cmp(&(
            rename_rank(b.kind),
            &b.within,
            &b.old,
            &b.new,
        ))
    });
    out.changes.dedup();
    out
}

fn rename_rank(k: &str) -> u8 {
    match k {
        "command" => 0,
        "event" => 1,
        "type" => 2,
        _ => 3,
    }
}

fn sort_changes(v: &mut [Change]) {
    v.sort_by(|a, b| {
        (
            a.root_kind,
            &a.name,
            &a.path,
            a.kind,
            &a.item,
            &a.old,
            &a.new,
        )
            .cmp(&(
                b.root_kind,
                &b.name,
                &b.path,
                b.kind,
                &b.item,
                &b.old,
                &b.new,
            ))
    });
}

/// Where a pair of types is reported.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Loc {
    kind: RootKind,
    name: String,
    path: String,
}

impl Loc {
    fn join(&self, seg: &str) -> Loc {
        let path = if self.path.len() > MAX_PATH {
            // Degenerate nesting: the path stops growing.
            if self.path.ends_with(".…") {
                self.path.clone()
            } else {
                format!("{}.…", self.path)
            }
        } else if self.path.is_empty() {
            seg.to_string()
        } else if seg.starts_with('[') {
            format!("{}{seg}", self.path)
        } else {
            format!("{}.{seg}", self.path)
        };
        Loc {
            kind: self.kind,
            name: self.name.clone(),
            path,
        }
    }
}

/// Two types matched by their place.
struct Pair {
    old: EntityId,
    new: EntityId,
    loc: Loc,
    pos: u8,
    children: Vec<usize>,
}

/// Longest path shown; deeper places end in `.…`.
const MAX_PATH: usize = 1024;

/// Most removed × added pairs compared for renames by shape.
const MAX_SHAPE_MATCHES: usize = 1024;

/// Normalised name for rename detection.
fn norm(n: &str) -> String {
    let n = n.to_ascii_lowercase().replace('_', "-");
    match n.strip_prefix("x-") {
        Some(r) => r.to_string(),
        None => n,
    }
}

fn is_masked(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_digit())
}

struct Side<'a> {
    s: &'a Schema,
    /// Loaded from an introspection answer (integer types all `int`).
    introspected: bool,
    /// Some type names are masked numbers.
    masked: bool,
}

impl<'a> Side<'a> {
    fn new(s: &'a Schema) -> Side<'a> {
        let introspected = s.modules.iter().any(|m| m.name == INTROSPECTION_MODULE);
        let masked = s.iter().any(|(_, e)| {
            matches!(
                e.kind,
                EntityKind::Object(_) | EntityKind::Enum(_) | EntityKind::Alternate(_)
            ) && is_masked(&e.name)
        });
        Side {
            s,
            introspected,
            masked,
        }
    }

    /// A type with a real name: neither masked nor implicit.
    fn named(&self, t: EntityId) -> bool {
        let e = &self.s.entities[t];
        !e.implicit && !is_masked(&e.name) && !e.name.starts_with("q_obj_") && !is_hidden(e)
    }

    fn describe(&self, t: EntityId) -> String {
        let s = self.s;
        let Some(e) = s.entities.get(t) else {
            return "?".to_string();
        };
        let word = match &e.kind {
            EntityKind::Builtin(_) => return e.name.clone().into(),
            EntityKind::Array(a) => return format!("[{}]", self.describe_depth(a.element, 1)),
            EntityKind::Enum(_) => "enum",
            EntityKind::Object(o) if o.branches.is_some() => "union",
            EntityKind::Object(_) => "struct",
            EntityKind::Alternate(_) => "alternate",
            _ => return e.name.clone().into(),
        };
        if self.named(t) {
            format!("{word} {}", e.name)
        } else {
            word.to_string()
        }
    }

    fn describe_depth(&self, t: EntityId, depth: usize) -> String {
        if depth > 16 {
            return "…".to_string();
        }
        match self.s.entities.get(t).map(|e| &e.kind) {
            Some(EntityKind::Array(a)) => {
                format!("[{}]", self.describe_depth(a.element, depth + 1))
            }
            _ => self.describe(t),
        }
    }

    /// How values of the type look on the wire.
    fn category(&self, t: EntityId) -> &'static str {
        match self.s.entities.get(t).map(|e| &e.kind) {
            Some(EntityKind::Builtin(b)) => b.json_type,
            Some(EntityKind::Enum(_)) => "string",
            Some(EntityKind::Array(_)) => "array",
            Some(EntityKind::Object(_)) => "object",
            Some(EntityKind::Alternate(_)) => "alternate",
            _ => "value",
        }
    }

    fn features(&self, fs: &[Feature]) -> BTreeSet<String> {
        fs.iter()
            .filter(|f| !is_hidden_feature(f))
            .map(|f| f.name.clone())
            .collect()
    }

    /// Commands and events by name (hidden helpers left out).
    fn roots(&self, kind: RootKind) -> BTreeMap<String, EntityId> {
        self.s
            .iter()
            .filter(|(_, e)| !is_hidden(e))
            .filter(|(_, e)| match kind {
                RootKind::Command => matches!(e.kind, EntityKind::Command(_)),
                RootKind::Event => matches!(e.kind, EntityKind::Event(_)),
                RootKind::Type => false,
            })
            .map(|(id, e)| (e.name.to_string(), id))
            .collect()
    }

    /// Named types (not built-in, not arrays, not implicit) by name.
    fn named_types(&self) -> BTreeMap<String, EntityId> {
        self.s
            .iter()
            .filter(|(id, e)| {
                matches!(
                    e.kind,
                    EntityKind::Object(_) | EntityKind::Enum(_) | EntityKind::Alternate(_)
                ) && self.named(*id)
            })
            .map(|(id, e)| (e.name.to_string(), id))
            .collect()
    }
}

/// Integer range of a built-in integer type.
fn int_range(name: &str) -> (i128, i128) {
    match name {
        "int8" => (i8::MIN.into(), i8::MAX.into()),
        "int16" => (i16::MIN.into(), i16::MAX.into()),
        "int32" => (i32::MIN.into(), i32::MAX.into()),
        "uint8" => (0, u8::MAX.into()),
        "uint16" => (0, u16::MAX.into()),
        "uint32" => (0, u32::MAX.into()),
        "uint64" | "size" => (0, u64::MAX.into()),
        _ => (i64::MIN.into(), i64::MAX.into()),
    }
}

/// How the values a new type accepts relate to the old one's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rel {
    Wider,
    Narrower,
    Other,
}

struct Differ<'a> {
    old: Side<'a>,
    new: Side<'a>,
    pairs: Vec<Pair>,
    index: HashMap<(EntityId, EntityId), usize>,
    emitting: bool,
    /// The pair being compared (children are recorded on it).
    current: Option<usize>,
    changes: Vec<Change>,
    renames: Vec<Rename>,
    /// Inside a renamed command or event: a lone removed and added member
    /// of the same type count as a rename.
    rename_scope: bool,
    /// Pairs found but not compared yet (discovery is breadth first, so
    /// deep type graphs need no deep recursion).
    queue: std::collections::VecDeque<usize>,
}

impl<'a> Differ<'a> {
    fn new(old: &'a Schema, new: &'a Schema, rename_scope: bool) -> Differ<'a> {
        Differ {
            old: Side::new(old),
            new: Side::new(new),
            pairs: Vec::new(),
            index: HashMap::new(),
            emitting: false,
            current: None,
            changes: Vec::new(),
            renames: Vec::new(),
            rename_scope,
            queue: std::collections::VecDeque::new(),
        }
    }

    /// Compare one command or event: during discovery, also every pair it
    /// leads to, before the next root.
    fn root(&mut self, kind: RootKind, name: &str, o: EntityId, n: EntityId) {
        self.compare_root(kind, name, o, n);
        while let Some(i) = self.queue.pop_front() {
            self.current = Some(i);
            self.compare_pair(i);
            self.current = None;
        }
    }

    fn run(&mut self) {
        let old_c = self.old.roots(RootKind::Command);
        let new_c = self.new.roots(RootKind::Command);
        let old_e = self.old.roots(RootKind::Event);
        let new_e = self.new.roots(RootKind::Event);
        let both_named = !self.old.masked && !self.new.masked;
        let (old_t, new_t) = if both_named {
            (self.old.named_types(), self.new.named_types())
        } else {
            (BTreeMap::new(), BTreeMap::new())
        };
        // Discovery, then positions, then emission.
        for emitting in [false, true] {
            self.emitting = emitting;
            if emitting {
                self.propagate();
                for i in 0..self.pairs.len() {
                    self.current = Some(i);
                    self.compare_pair(i);
                }
                self.current = None;
            }
            for (kind, o, n) in [
                (RootKind::Command, &old_c, &new_c),
                (RootKind::Event, &old_e, &new_e),
            ] {
                for (name, &oid) in o {
                    if let Some(&nid) = n.get(name) {
                        self.root(kind, name, oid, nid);
                    }
                }
            }
        }
        for (kind, o, n) in [
            (RootKind::Command, &old_c, &new_c),
            (RootKind::Event, &old_e, &new_e),
            (RootKind::Type, &old_t, &new_t),
        ] {
            self.added_removed(kind, o, n);
        }
    }

    /// Positions flow from a pair to the pairs it contains (a work list:
    /// each pair is revisited only when it gains a position, at most twice).
    fn propagate(&mut self) {
        let mut work: Vec<usize> = (0..self.pairs.len()).rev().collect();
        while let Some(i) = work.pop() {
            let pos = self.pairs[i].pos;
            for k in 0..self.pairs[i].children.len() {
                let c = self.pairs[i].children[k];
                if self.pairs[c].pos | pos != self.pairs[c].pos {
                    self.pairs[c].pos |= pos;
                    work.push(c);
                }
            }
        }
    }

    fn emit(&mut self, c: Change) {
        if self.emitting {
            self.changes.push(c);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn change(
        &mut self,
        kind: ChangeKind,
        loc: &Loc,
        item: Option<&str>,
        old: Option<String>,
        new: Option<String>,
        pos: u8,
        verdict: (Impact, Impact),
    ) {
        if !self.emitting {
            return;
        }
        let position = match pos & (IN | OUT) {
            IN => "input",
            OUT => "output",
            3 => "input+output",
            _ => "none",
        };
        self.emit(Change {
            kind,
            root_kind: loc.kind,
            name: loc.name.clone(),
            path: loc.path.clone(),
            item: item.map(str::to_string),
            old,
            new,
            position,
            client: verdict.0,
            server: verdict.1,
        });
    }

    /// Verdict by position: `input` applies in input, `output` in output;
    /// both positions take the worse.
    fn by_pos(pos: u8, input: (Impact, Impact), output: (Impact, Impact)) -> (Impact, Impact) {
        let mut v = (C, C);
        if pos & IN != 0 || pos == 0 {
            v = (v.0.max(input.0), v.1.max(input.1));
        }
        if pos & OUT != 0 || pos == 0 {
            v = (v.0.max(output.0), v.1.max(output.1));
        }
        v
    }

    /// Something a receiver must now accept appears (an optional input
    /// member, an enum value, a branch…).
    fn widened(pos: u8) -> (Impact, Impact) {
        Self::by_pos(pos, (C, B), (B, C))
    }

    fn narrowed(pos: u8) -> (Impact, Impact) {
        Self::by_pos(pos, (B, C), (C, B))
    }

    fn added_removed(
        &mut self,
        kind: RootKind,
        o: &BTreeMap<String, EntityId>,
        n: &BTreeMap<String, EntityId>,
    ) {
        let removed: Vec<&String> = o.keys().filter(|k| !n.contains_key(*k)).collect();
        let added: Vec<&String> = n.keys().filter(|k| !o.contains_key(*k)).collect();
        let verdict = |added: bool| match (kind, added) {
            (RootKind::Type, _) => (C, C),
            (_, true) => (C, B),
            (_, false) => (B, C),
        };
        for name in &removed {
            let loc = Loc {
                kind,
                name: (*name).clone(),
                path: String::new(),
            };
            self.emitting = true;
            self.change(
                ChangeKind::Removed,
                &loc,
                None,
                None,
                None,
                0,
                verdict(false),
            );
        }
        for name in &added {
            let loc = Loc {
                kind,
                name: (*name).clone(),
                path: String::new(),
            };
            self.emitting = true;
            self.change(ChangeKind::Added, &loc, None, None, None, 0, verdict(true));
        }
        // Probable renames: one removed and one added with the same
        // normalised name.
        let mut by_norm: BTreeMap<String, Vec<&String>> = BTreeMap::new();
        for a in &added {
            by_norm.entry(norm(a)).or_default().push(a);
        }
        let mut found: Vec<(&String, &String)> = Vec::new();
        for r in &removed {
            if let Some(cands) = by_norm.get(&norm(r)) {
                if cands.len() == 1 {
                    found.push((r, cands[0]));
                }
            }
        }
        // Commands and events with other names but exactly the same
        // (non-empty) arguments, return value and features, when the
        // match is unique both ways.
        if kind != RootKind::Type && removed.len() * added.len() <= MAX_SHAPE_MATCHES {
            let free_r: Vec<&String> = removed
                .iter()
                .copied()
                .filter(|r| !found.iter().any(|(x, _)| x == r))
                .collect();
            let free_a: Vec<&String> = added
                .iter()
                .copied()
                .filter(|a| !found.iter().any(|(_, y)| y == a))
                .collect();
            let mut same: Vec<(&String, &String)> = Vec::new();
            for r in &free_r {
                if !self.has_arguments(self.old.s, o[*r]) {
                    continue;
                }
                for a in &free_a {
                    if self.has_arguments(self.new.s, n[*a])
                        && self.rename_details(kind, o[*r], n[*a], a).is_empty()
                    {
                        same.push((r, a));
                    }
                }
            }
            for &(r, a) in &same {
                let unique_r = same.iter().filter(|(x, _)| *x == r).count() == 1;
                let unique_a = same.iter().filter(|(_, y)| *y == a).count() == 1;
                if unique_r && unique_a {
                    found.push((r, a));
                }
            }
        }
        for (r, a) in found {
            let details = match kind {
                RootKind::Type => Vec::new(),
                _ => self.rename_details(kind, o[r], n[a], a),
            };
            self.renames.push(Rename {
                kind: kind.as_str(),
                within: None,
                old: r.clone(),
                new: a.clone(),
                details,
            });
        }
    }

    /// A command or event with at least one argument member.
    fn has_arguments(&self, s: &Schema, id: EntityId) -> bool {
        let arg = match &s.entities[id].kind {
            EntityKind::Command(c) => c.arg_type,
            EntityKind::Event(e) => e.arg_type,
            _ => None,
        };
        arg.is_some_and(|t| s.object_members(t).next().is_some())
    }

    /// How a renamed command or event differs from the old one.
    fn rename_details(&self, kind: RootKind, o: EntityId, n: EntityId, name: &str) -> Vec<String> {
        let mut d = Differ::new(self.old.s, self.new.s, true);
        for emitting in [false, true] {
            d.emitting = emitting;
            if emitting {
                d.propagate();
                for i in 0..d.pairs.len() {
                    d.current = Some(i);
                    d.compare_pair(i);
                }
                d.current = None;
            }
            d.root(kind, name, o, n);
        }
        let mut lines: Vec<String> = d
            .renames
            .iter()
            .map(|r| {
                format!(
                    "member '{}' → '{}' in {} (probably)",
                    r.old,
                    r.new,
                    r.within.as_deref().unwrap_or("")
                )
            })
            .collect();
        sort_changes(&mut d.changes);
        d.changes.dedup();
        lines.extend(
            d.changes
                .iter()
                .filter(|c| c.root_kind == kind && c.name == name)
                .map(Change::describe),
        );
        lines
    }

    fn compare_root(&mut self, kind: RootKind, name: &str, o: EntityId, n: EntityId) {
        let root = Loc {
            kind,
            name: name.to_string(),
            path: String::new(),
        };
        let (os, ns) = (self.old.s, self.new.s);
        let (oe, ne) = (&os.entities[o], &ns.entities[n]);
        if self.emitting {
            let pos = if kind == RootKind::Command { IN } else { OUT };
            self.features(&root, &oe.features, &ne.features, pos);
            self.condition(&root, None, &oe.ifcond, &ne.ifcond, pos);
        }
        match (&oe.kind, &ne.kind) {
            (EntityKind::Command(oc), EntityKind::Command(nc)) => {
                let oa = oc.arg_type.unwrap_or(os.q_empty());
                let na = nc.arg_type.unwrap_or(ns.q_empty());
                self.types_at(oa, na, &root.join("arguments"), None, IN);
                let or = oc.ret_type.unwrap_or(os.q_empty());
                let nr = nc.ret_type.unwrap_or(ns.q_empty());
                self.types_at(or, nr, &root.join("returns"), None, OUT);
                let flags = [
                    ("allow-oob", oc.allow_oob, nc.allow_oob, false),
                    (
                        "success-response",
                        oc.success_response,
                        nc.success_response,
                        true,
                    ),
                    (
                        "allow-preconfig",
                        oc.allow_preconfig,
                        nc.allow_preconfig,
                        false,
                    ),
                ];
                let known = !self.old.introspected && !self.new.introspected;
                for (flag, a, b, both_break) in flags {
                    // Introspection shows allow-oob only.
                    if a == b || (flag != "allow-oob" && !known) {
                        continue;
                    }
                    let verdict = if both_break {
                        (B, B)
                    } else if b {
                        (C, B)
                    } else {
                        (B, C)
                    };
                    self.change(
                        ChangeKind::FlagChanged,
                        &root,
                        Some(flag),
                        Some(a.to_string()),
                        Some(b.to_string()),
                        IN,
                        verdict,
                    );
                }
                if known && oc.boxed != nc.boxed {
                    self.change(
                        ChangeKind::FlagChanged,
                        &root,
                        Some("boxed"),
                        Some(oc.boxed.to_string()),
                        Some(nc.boxed.to_string()),
                        0,
                        (C, C),
                    );
                }
            }
            (EntityKind::Event(oev), EntityKind::Event(nev)) => {
                let oa = oev.arg_type.unwrap_or(os.q_empty());
                let na = nev.arg_type.unwrap_or(ns.q_empty());
                self.types_at(oa, na, &root.join("data"), None, OUT);
                let known = !self.old.introspected && !self.new.introspected;
                if known && oev.boxed != nev.boxed {
                    self.change(
                        ChangeKind::FlagChanged,
                        &root,
                        Some("boxed"),
                        Some(oev.boxed.to_string()),
                        Some(nev.boxed.to_string()),
                        0,
                        (C, C),
                    );
                }
            }
            _ => {}
        }
    }

    /// A changed `if` condition: a new condition may leave the thing out
    /// of builds clients use; a dropped one makes every build provide it.
    fn condition(&mut self, loc: &Loc, item: Option<&str>, o: &IfCond, n: &IfCond, pos: u8) {
        if !self.emitting || o == n || self.old.introspected || self.new.introspected {
            return;
        }
        let show = |c: &IfCond| {
            if c.is_present() {
                c.to_qemu_repr()
            } else {
                "always".to_string()
            }
        };
        let verdict = match (o.is_present(), n.is_present()) {
            (false, true) => (B, C),
            (true, false) => (C, B),
            _ => (B, B),
        };
        self.change(
            ChangeKind::ConditionChanged,
            loc,
            item,
            Some(show(o)),
            Some(show(n)),
            pos,
            verdict,
        );
    }

    fn features(&mut self, loc: &Loc, o: &[Feature], n: &[Feature], pos: u8) {
        if !self.emitting {
            return;
        }
        let (of, nf) = (self.old.features(o), self.new.features(n));
        for f in of.difference(&nf) {
            let special = f == "deprecated" || f == "unstable";
            let v = if special { (C, C) } else { (B, C) };
            self.change(ChangeKind::FeatureRemoved, loc, Some(f), None, None, pos, v);
        }
        for f in nf.difference(&of) {
            let special = f == "deprecated" || f == "unstable";
            let v = if special { (C, C) } else { (C, B) };
            self.change(ChangeKind::FeatureAdded, loc, Some(f), None, None, pos, v);
        }
    }

    /// Compare the types used at one place; `item` names the member (or
    /// is `None` for return values, elements, branches…).
    fn types_at(&mut self, o: EntityId, n: EntityId, loc: &Loc, item: Option<&str>, pos: u8) {
        let (os, ns) = (self.old.s, self.new.s);
        let (Some(oe), Some(ne)) = (os.entities.get(o), ns.entities.get(n)) else {
            return;
        };
        let rel = match (&oe.kind, &ne.kind) {
            (EntityKind::Builtin(ob), EntityKind::Builtin(nb)) => {
                if oe.name == ne.name || (ob.json_type == "value" && nb.json_type == "value") {
                    return;
                }
                if ob.json_type == "int" && nb.json_type == "int" {
                    if self.old.introspected || self.new.introspected {
                        return;
                    }
                    let (a, b) = (int_range(&oe.name), int_range(&ne.name));
                    if a == b {
                        return;
                    }
                    if b.0 <= a.0 && a.1 <= b.1 {
                        Rel::Wider
                    } else if a.0 <= b.0 && b.1 <= a.1 {
                        Rel::Narrower
                    } else {
                        Rel::Other
                    }
                } else {
                    self.relation(o, n)
                }
            }
            (EntityKind::Array(oa), EntityKind::Array(na)) => {
                let (oel, nel) = (oa.element, na.element);
                let l = match item {
                    Some(m) => loc.join(m).join("[]"),
                    None => loc.join("[]"),
                };
                self.types_at(oel, nel, &l, None, pos);
                return;
            }
            (EntityKind::Enum(_), EntityKind::Enum(_))
            | (EntityKind::Object(_), EntityKind::Object(_))
            | (EntityKind::Alternate(_), EntityKind::Alternate(_)) => {
                let l = match item {
                    Some(m) => loc.join(m),
                    None => loc.clone(),
                };
                self.pair(o, n, l, pos);
                return;
            }
            _ => self.relation(o, n),
        };
        let verdict = match rel {
            Rel::Wider => Self::widened(pos),
            Rel::Narrower => Self::narrowed(pos),
            Rel::Other => (B, B),
        };
        let (od, nd) = (self.old.describe(o), self.new.describe(n));
        self.change(
            ChangeKind::Retyped,
            loc,
            item,
            Some(od),
            Some(nd),
            pos,
            verdict,
        );
    }

    /// Relation of the values of two types of different kinds.
    fn relation(&self, o: EntityId, n: EntityId) -> Rel {
        let (oc, nc) = (self.old.category(o), self.new.category(n));
        if nc == "value" {
            return Rel::Wider;
        }
        if oc == "value" {
            return Rel::Narrower;
        }
        let is_enum = |s: &Side, t: EntityId| {
            matches!(
                s.s.entities.get(t).map(|e| &e.kind),
                Some(EntityKind::Enum(_))
            )
        };
        match (oc, nc) {
            ("int", "number") => return Rel::Wider,
            ("number", "int") => return Rel::Narrower,
            ("string", "string") => {
                return match (is_enum(&self.old, o), is_enum(&self.new, n)) {
                    (true, false) => Rel::Wider,
                    (false, true) => Rel::Narrower,
                    _ => Rel::Other,
                }
            }
            _ => {}
        }
        let alts = |s: &Side, t: EntityId| -> Vec<&'static str> {
            match s.s.entities.get(t).map(|e| &e.kind) {
                Some(EntityKind::Alternate(a)) => {
                    a.variants.iter().map(|v| s.category(v.typ)).collect()
                }
                _ => Vec::new(),
            }
        };
        if nc == "alternate" && alts(&self.new, n).contains(&oc) {
            return Rel::Wider;
        }
        if oc == "alternate" && alts(&self.old, o).contains(&nc) {
            return Rel::Narrower;
        }
        Rel::Other
    }

    /// Record (discovery) or look up (emission) the pair of two types of
    /// the same kind used at `loc`.
    fn pair(&mut self, o: EntityId, n: EntityId, loc: Loc, pos: u8) {
        let idx = match self.index.get(&(o, n)) {
            Some(&i) => {
                if !self.emitting {
                    self.pairs[i].pos |= pos;
                }
                i
            }
            None => {
                if self.emitting {
                    // Every pair is found during discovery.
                    return;
                }
                let (on, nn) = (
                    self.old.s.entities[o].name.clone(),
                    self.new.s.entities[n].name.clone(),
                );
                let loc = if self.old.named(o) && self.new.named(n) && on == nn {
                    Loc {
                        kind: RootKind::Type,
                        name: nn.into(),
                        path: String::new(),
                    }
                } else {
                    loc
                };
                self.pairs.push(Pair {
                    old: o,
                    new: n,
                    loc,
                    pos,
                    children: Vec::new(),
                });
                let i = self.pairs.len() - 1;
                self.index.insert((o, n), i);
                self.queue.push_back(i);
                i
            }
        };
        if !self.emitting {
            if let Some(cur) = self.current {
                if !self.pairs[cur].children.contains(&idx) {
                    self.pairs[cur].children.push(idx);
                }
            }
        }
    }

    fn compare_pair(&mut self, i: usize) {
        let (o, n, pos) = (self.pairs[i].old, self.pairs[i].new, self.pairs[i].pos);
        let loc = self.pairs[i].loc.clone();
        let (os, ns) = (self.old.s, self.new.s);
        let (oe, ne) = (&os.entities[o], &ns.entities[n]);
        self.features(&loc, &oe.features, &ne.features, pos);
        if loc.kind == RootKind::Type && loc.path.is_empty() {
            self.condition(&loc, None, &oe.ifcond, &ne.ifcond, pos);
        }
        match (&oe.kind, &ne.kind) {
            (EntityKind::Enum(oen), EntityKind::Enum(nen)) => {
                let nv: HashMap<&str, usize> = nen
                    .members
                    .iter()
                    .enumerate()
                    .map(|(k, m)| (m.name.as_str(), k))
                    .collect();
                let ov: HashMap<&str, usize> = oen
                    .members
                    .iter()
                    .enumerate()
                    .map(|(k, m)| (m.name.as_str(), k))
                    .collect();
                for m in &oen.members {
                    match nv.get(m.name.as_str()) {
                        None => self.change(
                            ChangeKind::ValueRemoved,
                            &loc,
                            Some(&m.name),
                            None,
                            None,
                            pos,
                            Self::narrowed(pos),
                        ),
                        Some(&k) => {
                            let l = loc.join(&m.name);
                            self.features(&l, &m.features, &nen.members[k].features, pos);
                            let nc = &nen.members[k].ifcond;
                            self.condition(&loc, Some(&m.name), &m.ifcond, nc, pos);
                        }
                    }
                }
                for m in &nen.members {
                    if !ov.contains_key(m.name.as_str()) {
                        self.change(
                            ChangeKind::ValueAdded,
                            &loc,
                            Some(&m.name),
                            None,
                            None,
                            pos,
                            Self::widened(pos),
                        );
                    }
                }
            }
            (EntityKind::Object(_), EntityKind::Object(_)) => {
                self.compare_object(o, n, &loc, pos);
            }
            (EntityKind::Alternate(oa), EntityKind::Alternate(na)) => {
                let mut matched_new = vec![false; na.variants.len()];
                for ov in &oa.variants {
                    let cat = self.old.category(ov.typ);
                    let found = na
                        .variants
                        .iter()
                        .enumerate()
                        .find(|(k, nv)| !matched_new[*k] && self.new.category(nv.typ) == cat);
                    match found {
                        Some((k, nv)) => {
                            matched_new[k] = true;
                            let l = loc.join(&format!("<{cat}>"));
                            self.types_at(ov.typ, nv.typ, &l, None, pos);
                        }
                        None => {
                            let d = self.old.describe(ov.typ);
                            self.change(
                                ChangeKind::AlternativeRemoved,
                                &loc,
                                None,
                                Some(d),
                                None,
                                pos,
                                Self::narrowed(pos),
                            );
                        }
                    }
                }
                for (k, nv) in na.variants.iter().enumerate() {
                    if !matched_new[k] {
                        let d = self.new.describe(nv.typ);
                        self.change(
                            ChangeKind::AlternativeAdded,
                            &loc,
                            None,
                            None,
                            Some(d),
                            pos,
                            Self::widened(pos),
                        );
                    }
                }
            }
            _ => {}
        }
    }

    /// The branches of union `t` having a member called `name`, as
    /// `'a', 'b'`; `None` when there are none.
    fn branches_with_member(s: &Schema, t: EntityId, name: &str) -> Option<String> {
        let EntityKind::Object(o) = &s.entities[t].kind else {
            return None;
        };
        let b = o.branches.as_ref()?;
        let cases: Vec<String> = b
            .variants
            .iter()
            .filter(|v| v.typ < s.entities.len() && s.object_members(v.typ).any(|m| m.name == name))
            .map(|v| format!("'{}'", v.name))
            .collect();
        if cases.is_empty() {
            None
        } else {
            Some(cases.join(", "))
        }
    }

    fn member_desc(side: &Side, t: EntityId, optional: bool) -> String {
        if optional {
            format!("{}, optional", side.describe(t))
        } else {
            side.describe(t)
        }
    }

    fn compare_object(&mut self, o: EntityId, n: EntityId, loc: &Loc, pos: u8) {
        let (os, ns) = (self.old.s, self.new.s);
        let om: Vec<&crate::model::Member> = os.object_members(o).collect();
        let nm: Vec<&crate::model::Member> = ns.object_members(n).collect();
        let nidx: HashMap<&str, usize> = nm
            .iter()
            .enumerate()
            .map(|(k, m)| (m.name.as_str(), k))
            .collect();
        let oidx: HashMap<&str, usize> = om
            .iter()
            .enumerate()
            .map(|(k, m)| (m.name.as_str(), k))
            .collect();
        let mut removed = Vec::new();
        for m in &om {
            match nidx.get(m.name.as_str()) {
                Some(&k) => {
                    let m2 = nm[k];
                    if m.optional && !m2.optional {
                        self.change(
                            ChangeKind::MadeMandatory,
                            loc,
                            Some(&m.name),
                            None,
                            None,
                            pos,
                            Self::by_pos(pos, (B, C), (C, B)),
                        );
                    } else if !m.optional && m2.optional {
                        self.change(
                            ChangeKind::MadeOptional,
                            loc,
                            Some(&m.name),
                            None,
                            None,
                            pos,
                            Self::by_pos(pos, (C, B), (B, C)),
                        );
                    }
                    let l = loc.join(&m.name);
                    self.features(&l, &m.features, &m2.features, pos);
                    self.condition(loc, Some(&m.name), &m.ifcond, &m2.ifcond, pos);
                    self.types_at(m.typ, m2.typ, loc, Some(&m.name), pos);
                }
                None => {
                    removed.push(*m);
                    let v = if m.optional {
                        Self::by_pos(pos, (B, C), (C, C))
                    } else {
                        (B, C)
                    };
                    let d = Self::member_desc(&self.old, m.typ, m.optional);
                    let moved = if self.emitting {
                        Self::branches_with_member(ns, n, &m.name)
                    } else {
                        None
                    };
                    self.change(
                        ChangeKind::MemberRemoved,
                        loc,
                        Some(&m.name),
                        Some(d),
                        moved,
                        pos,
                        v,
                    );
                }
            }
        }
        let mut added = Vec::new();
        for m in &nm {
            if oidx.contains_key(m.name.as_str()) {
                continue;
            }
            added.push(*m);
            let v = if m.optional {
                Self::by_pos(pos, (C, B), (C, C))
            } else {
                Self::by_pos(pos, (B, B), (C, B))
            };
            let d = Self::member_desc(&self.new, m.typ, m.optional);
            self.change(
                ChangeKind::MemberAdded,
                loc,
                Some(&m.name),
                None,
                Some(d),
                pos,
                v,
            );
        }
        // Probable member renames.
        if self.emitting && !removed.is_empty() && !added.is_empty() {
            let within = if loc.path.is_empty() {
                format!("{} {}", loc.kind.as_str(), loc.name)
            } else {
                format!("{} {} {}", loc.kind.as_str(), loc.name, loc.path)
            };
            let mut pairs: Vec<(String, String)> = Vec::new();
            for r in &removed {
                let c: Vec<_> = added
                    .iter()
                    .filter(|a| norm(&a.name) == norm(&r.name))
                    .collect();
                if c.len() == 1 {
                    pairs.push((r.name.clone().into(), c[0].name.clone().into()));
                }
            }
            if pairs.is_empty()
                && self.rename_scope
                && removed.len() == 1
                && added.len() == 1
                && self.old.describe(removed[0].typ) == self.new.describe(added[0].typ)
            {
                pairs.push((removed[0].name.clone().into(), added[0].name.clone().into()));
            }
            for (a, b) in pairs {
                self.renames.push(Rename {
                    kind: "member",
                    within: Some(within.clone()),
                    old: a,
                    new: b,
                    details: Vec::new(),
                });
            }
        }
        // Branches.
        let (EntityKind::Object(ob), EntityKind::Object(nb)) =
            (&os.entities[o].kind, &ns.entities[n].kind)
        else {
            return;
        };
        let tag_of = |s: &Schema, b: &crate::model::Branches| {
            b.tag_member
                .map(|r| s.member(r).name.clone())
                .unwrap_or_else(|| b.tag_name.clone())
        };
        match (&ob.branches, &nb.branches) {
            (None, None) => {}
            (None, Some(b)) => {
                let t = tag_of(ns, b);
                self.change(
                    ChangeKind::BecameUnion,
                    loc,
                    None,
                    None,
                    Some(t.clone().into()),
                    pos,
                    (C, C),
                );
                for v in &b.variants {
                    let d = self.new.describe(v.typ);
                    self.change(
                        ChangeKind::BranchAdded,
                        loc,
                        Some(&v.name),
                        None,
                        Some(d),
                        pos,
                        Self::widened(pos),
                    );
                }
            }
            (Some(b), None) => {
                let t = tag_of(os, b);
                self.change(
                    ChangeKind::NoLongerUnion,
                    loc,
                    None,
                    Some(t.into()),
                    None,
                    pos,
                    (B, B),
                );
            }
            (Some(a), Some(b)) => {
                let (ta, tb) = (tag_of(os, a), tag_of(ns, b));
                if ta != tb {
                    self.change(
                        ChangeKind::TagChanged,
                        loc,
                        None,
                        Some(ta.clone().into()),
                        Some(tb.clone().into()),
                        pos,
                        (B, B),
                    );
                }
                for v in &a.variants {
                    match b.variants.iter().find(|w| w.name == v.name) {
                        Some(w) => {
                            self.condition(loc, Some(&v.name), &v.ifcond, &w.ifcond, pos);
                            let l = loc.join(&format!("{{{tb}={}}}", v.name));
                            self.types_at(v.typ, w.typ, &l, None, pos);
                        }
                        None => {
                            let d = self.old.describe(v.typ);
                            self.change(
                                ChangeKind::BranchRemoved,
                                loc,
                                Some(&v.name),
                                Some(d),
                                None,
                                pos,
                                Self::narrowed(pos),
                            );
                        }
                    }
                }
                for w in &b.variants {
                    if !a.variants.iter().any(|v| v.name == w.name) {
                        let d = self.new.describe(w.typ);
                        self.change(
                            ChangeKind::BranchAdded,
                            loc,
                            Some(&w.name),
                            None,
                            Some(d),
                            pos,
                            Self::widened(pos),
                        );
                    }
                }
            }
        }
    }
}
