//! The parsed, shape-checked and normalised schema: what the front end
//! (`source` → `parser` → `doc` → `expr`) hands to the model.
//!
//! This is the interface between the front end and [`crate::model`]. It is
//! faithful to the source: expressions appear in the order QEMU's parser
//! produces them (an `include` directive first, then the expressions of the
//! file it includes, unless that file was included before), members and
//! branches in the order written, and every definition keeps its doc
//! comment (an index into [`ParsedSchema::docs`]).
//!
//! Everything here has already passed the per-expression checks of
//! `expr`: key sets, value shapes, naming rules, flag values, `if`
//! conditions and feature lists. Semantic checks that need more than one
//! expression (unknown types, clashes, base/discriminator rules, doc
//! connection) are the model's job.

use crate::source::{Dialect, Info};
use std::fmt;

/// An `if` condition: a configuration symbol, or all/any/not of
/// conditions.
#[derive(Debug, Clone, PartialEq, Eq, Default, Hash)]
pub enum IfCond {
    /// No condition.
    #[default]
    Always,
    Name(String),
    All(Vec<IfCond>),
    Any(Vec<IfCond>),
    Not(Box<IfCond>),
}

impl IfCond {
    pub fn is_present(&self) -> bool {
        !matches!(self, IfCond::Always)
    }

    /// The condition as QEMU's test harness prints it: a bare symbol, or
    /// the Python repr of the condition's dict, e.g.
    /// `{'all': ['IFALL1', 'IFALL2']}`.
    pub fn to_qemu_repr(&self) -> String {
        match self {
            IfCond::Always => "None".to_string(),
            IfCond::Name(n) => n.clone(),
            _ => {
                let mut s = String::new();
                self.repr_into(&mut s);
                s
            }
        }
    }

    fn repr_into(&self, out: &mut String) {
        // Nesting depth is bounded by the parser's depth limit.
        fn list(out: &mut String, key: &str, items: &[IfCond]) {
            out.push_str("{'");
            out.push_str(key);
            out.push_str("': [");
            for (i, c) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                c.repr_into(out);
            }
            out.push_str("]}");
        }
        match self {
            IfCond::Always => out.push_str("None"),
            IfCond::Name(n) => {
                out.push('\'');
                out.push_str(n);
                out.push('\'');
            }
            IfCond::All(v) => list(out, "all", v),
            IfCond::Any(v) => list(out, "any", v),
            IfCond::Not(c) => {
                out.push_str("{'not': ");
                c.repr_into(out);
                out.push('}');
            }
        }
    }

    /// Evaluate against a set of enabled symbols.
    pub fn eval(&self, enabled: &dyn Fn(&str) -> bool) -> bool {
        match self {
            IfCond::Always => true,
            IfCond::Name(n) => enabled(n),
            IfCond::All(v) => v.iter().all(|c| c.eval(enabled)),
            IfCond::Any(v) => v.iter().any(|c| c.eval(enabled)),
            IfCond::Not(c) => !c.eval(enabled),
        }
    }
}

/// A feature as written (`'features': [ 'f', { 'name': 'g', 'if': … } ]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeatureDef {
    pub name: String,
    pub ifcond: IfCond,
    /// The enclosing definition's position (QEMU reports feature errors
    /// there).
    pub info: Info,
}

impl FeatureDef {
    /// `deprecated` and `unstable` have a meaning to QEMU itself.
    pub fn is_special(&self) -> bool {
        self.name == "deprecated" || self.name == "unstable"
    }
}

/// How a member's, branch's or return value's type is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TypeRef {
    /// A type name (built-in or defined), e.g. `'str'`, `'Foo'`; in the
    /// legacy dialect also `'**'` and `'visitor'`.
    Named(String),
    /// `['T']`: an array of the named type.
    Array(String),
    /// Legacy only: a nested anonymous struct, e.g. the `'qemu'` member of
    /// `{ 'data': { 'qemu': { 'major': 'int' } } }`.
    Nested(Vec<MemberDef>),
}

impl TypeRef {
    /// The type name, or the element type name of an array; `None` for a
    /// nested anonymous struct.
    pub fn name(&self) -> Option<&str> {
        match self {
            TypeRef::Named(n) | TypeRef::Array(n) => Some(n),
            TypeRef::Nested(_) => None,
        }
    }
}

/// A member as written in `data` / `base` (the leading `*` of an optional
/// member is already removed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberDef {
    pub name: String,
    pub optional: bool,
    pub typ: TypeRef,
    pub ifcond: IfCond,
    pub features: Vec<FeatureDef>,
    /// The enclosing definition's position.
    pub info: Info,
    /// The hash of the member's C name (`model::cname`), computed where the expression is
    /// checked (on either core) rather than where it is defined (in order, on one).
    pub cname_hash: u64,
}

/// An enum value as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnumMemberDef {
    pub name: String,
    pub ifcond: IfCond,
    pub features: Vec<FeatureDef>,
    pub info: Info,
}

/// A union branch or an alternative as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BranchDef {
    pub name: String,
    pub typ: TypeRef,
    pub ifcond: IfCond,
    pub info: Info,
}

/// `data` of a command or event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArgsDef {
    /// No `data`.
    None,
    /// An inline argument list (becomes the implicit `q_obj_NAME-arg`).
    Members(Vec<MemberDef>),
    /// A type name (a struct, or with `'boxed': true` also a union).
    Type(String),
}

/// `base` of a union.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BaseDef {
    /// No `base` (legacy simple unions only).
    None,
    /// An inline base (becomes the implicit `q_obj_NAME-base`).
    Members(Vec<MemberDef>),
    /// A struct type name.
    Type(String),
}

/// Everything common to definitions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefnCommon {
    pub name: String,
    /// The expression's position, with the definition context set
    /// (`Info::with_defn`), so errors print "F: In struct 'X':".
    pub info: Info,
    /// The doc comment, an index into [`ParsedSchema::docs`].
    pub doc: Option<usize>,
    pub ifcond: IfCond,
    pub features: Vec<FeatureDef>,
}

/// Command flags, with QEMU's defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommandFlags {
    pub gen: bool,
    pub success_response: bool,
    pub boxed: bool,
    pub allow_oob: bool,
    pub allow_preconfig: bool,
    pub coroutine: bool,
}

impl Default for CommandFlags {
    fn default() -> Self {
        CommandFlags {
            gen: true,
            success_response: true,
            boxed: false,
            allow_oob: false,
            allow_preconfig: false,
            coroutine: false,
        }
    }
}

/// `{ 'include': 'FILE' }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncludeDef {
    /// The file name as written in the directive.
    pub name: String,
    /// The file name as QEMU names it: joined with the including file's
    /// directory (`os.path.join(dirname(including), name)`).
    pub path: String,
    /// True when the file was included before: the directive is kept (it
    /// still shows in the dump) but no expressions follow it.
    pub repeated: bool,
}

/// The pragmas in force, accumulated over the whole schema (QEMU shares
/// one pragma state between all files).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Pragma {
    pub doc_required: bool,
    pub command_name_exceptions: Vec<String>,
    pub command_returns_exceptions: Vec<String>,
    pub documentation_exceptions: Vec<String>,
    pub member_name_exceptions: Vec<String>,
}

/// One `{ 'pragma': {…} }` directive, as applied (see
/// [`ParsedSchema::pragma`] for the accumulated state).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PragmaDef {
    /// `(name, value)` in the order written; list values are joined into
    /// [`PragmaValue::List`]. Legacy names (`returns-whitelist`,
    /// `name-case-whitelist`) are kept as written.
    pub settings: Vec<(String, PragmaValue)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PragmaValue {
    Bool(bool),
    List(Vec<String>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnumDef {
    pub common: DefnCommon,
    pub members: Vec<EnumMemberDef>,
    pub prefix: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StructDef {
    pub common: DefnCommon,
    pub base: Option<String>,
    pub members: Vec<MemberDef>,
    /// Legacy: written with the `type` keyword instead of `struct`.
    pub legacy_type_keyword: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnionDef {
    pub common: DefnCommon,
    pub base: BaseDef,
    /// `None` only for legacy simple unions (each branch then becomes a
    /// `q_obj_T-wrapper` with a single member `data`, and the tag is the
    /// implicit enum `NAMEKind`).
    pub discriminator: Option<String>,
    pub branches: Vec<BranchDef>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlternateDef {
    pub common: DefnCommon,
    pub branches: Vec<BranchDef>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandDef {
    pub common: DefnCommon,
    pub data: ArgsDef,
    /// `'returns'`: a type name or a one-element array (legacy: also a
    /// nested anonymous struct).
    pub returns: Option<TypeRef>,
    pub flags: CommandFlags,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventDef {
    pub common: DefnCommon,
    pub data: ArgsDef,
    pub boxed: bool,
}

/// The normalised content of one top-level expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExprKind {
    Include(IncludeDef),
    Pragma(PragmaDef),
    Enum(EnumDef),
    Struct(StructDef),
    Union(UnionDef),
    Alternate(AlternateDef),
    Command(CommandDef),
    Event(EventDef),
}

impl ExprKind {
    /// The meta-type as QEMU names it in messages ("struct", "command", …;
    /// "include" and "pragma" for directives).
    pub fn meta(&self) -> &'static str {
        match self {
            ExprKind::Include(_) => "include",
            ExprKind::Pragma(_) => "pragma",
            ExprKind::Enum(_) => "enum",
            ExprKind::Struct(_) => "struct",
            ExprKind::Union(_) => "union",
            ExprKind::Alternate(_) => "alternate",
            ExprKind::Command(_) => "command",
            ExprKind::Event(_) => "event",
        }
    }

    /// The common part of a definition; `None` for directives.
    pub fn common(&self) -> Option<&DefnCommon> {
        match self {
            ExprKind::Include(_) | ExprKind::Pragma(_) => None,
            ExprKind::Enum(d) => Some(&d.common),
            ExprKind::Struct(d) => Some(&d.common),
            ExprKind::Union(d) => Some(&d.common),
            ExprKind::Alternate(d) => Some(&d.common),
            ExprKind::Command(d) => Some(&d.common),
            ExprKind::Event(d) => Some(&d.common),
        }
    }
}

/// One top-level expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopExpr {
    /// Where the expression starts (for definitions, without the
    /// definition context; `common.info` has it).
    pub info: Info,
    /// The doc comment preceding it, an index into [`ParsedSchema::docs`].
    pub doc: Option<usize>,
    pub kind: ExprKind,
}

/// What kind of doc comment section (QEMU 10.0's `QAPIDoc.Kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SectionKind {
    /// Untagged text (the body, or text after the tagged sections).
    Plain,
    /// `@name:` describing a member / argument / enum value / branch.
    Member,
    /// `@name:` after `Features:`.
    Feature,
    Returns,
    Errors,
    Since,
    Todo,
}

impl SectionKind {
    /// The name QEMU's test harness prints (`section=Returns`).
    pub fn as_str(self) -> &'static str {
        match self {
            SectionKind::Plain => "Plain",
            SectionKind::Member => "Member",
            SectionKind::Feature => "Feature",
            SectionKind::Returns => "Returns",
            SectionKind::Errors => "Errors",
            SectionKind::Since => "Since",
            SectionKind::Todo => "Todo",
        }
    }
}

impl fmt::Display for SectionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One section of a doc comment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocSection {
    pub kind: SectionKind,
    /// The documented name for `Member` and `Feature` sections.
    pub name: Option<String>,
    /// Where the section starts (line of its tag / first line).
    pub info: Info,
    /// The text as the test harness prints it (no trailing newline).
    pub text: String,
}

/// A doc comment block (`##` … `##`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Doc {
    /// Where the block starts (the opening `##` line).
    pub info: Info,
    /// `Some(name)` for definition documentation (`# @name:` first line),
    /// `None` for free-form documentation.
    pub symbol: Option<String>,
    /// The untagged text before any member/feature/tagged section.
    pub body: DocSection,
    /// Member / argument descriptions, in the order written.
    pub args: Vec<DocSection>,
    /// Feature descriptions, in the order written.
    pub features: Vec<DocSection>,
    /// Tagged and plain sections after the descriptions, in order.
    pub sections: Vec<DocSection>,
}

/// QEMU's name for a doc comment block.
pub type QapiDoc = Doc;

impl Doc {
    /// The description of member `name`, if documented.
    pub fn arg(&self, name: &str) -> Option<&DocSection> {
        self.args.iter().find(|s| s.name.as_deref() == Some(name))
    }

    /// The description of feature `name`, if documented.
    pub fn feature(&self, name: &str) -> Option<&DocSection> {
        self.features
            .iter()
            .find(|s| s.name.as_deref() == Some(name))
    }

    /// The first tagged section of this kind, if any.
    pub fn section(&self, kind: SectionKind) -> Option<&DocSection> {
        self.sections.iter().find(|s| s.kind == kind)
    }
}

/// A whole schema after parsing and per-expression checks.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ParsedSchema {
    /// The main file's name, as given.
    pub fname: String,
    pub dialect: Dialect,
    /// Every expression, in QEMU's order (an `include` directive precedes
    /// the expressions of the file it includes).
    pub exprs: Vec<TopExpr>,
    /// Every doc comment, in source order across files (free-form ones
    /// included).
    pub docs: Vec<Doc>,
    /// The pragma state after all files were read.
    pub pragma: Pragma,
    /// Legacy pragma `returns-whitelist` (same meaning as
    /// `command-returns-exceptions`; both lists are merged into
    /// [`Pragma::command_returns_exceptions`] too).
    pub legacy_returns_whitelist: Vec<String>,
    /// Legacy pragma `name-case-whitelist` (names exempt from the
    /// lower-case rule; merged into [`Pragma::member_name_exceptions`]
    /// too).
    pub legacy_name_case_whitelist: Vec<String>,
    /// Doc comments were read with the syntax of older QEMU (always under
    /// the legacy dialect; under the modern one for schemas written for
    /// QEMU up to 9.0, recognised by their `Note:` / `Example:` sections).
    /// QEMU 10.0's doc checks (sections valid for the definition,
    /// documented members that exist, missing documentation) do not apply
    /// then; docs are attached best-effort.
    pub legacy_docs: bool,
}
