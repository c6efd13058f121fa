//! qmpkit-codegen: Rust bindings for a QAPI schema.
//!
//! [`generate`] walks the checked model that `qmpkit-schema` builds (from schema source in
//! either dialect, or from a server's `query-qmp-schema` answer) and returns Rust source: data
//! types, one struct per command and per event, an enum of all events, and a server trait.
//! The code depends on `serde`, `serde_json` and [`qmpkit-qapi`] only, and compiles without
//! warnings. Use it from a `build.rs`:
//!
//! ```no_run
//! let (schema, _) = qmpkit_schema::load_any("qapi/qapi-schema.json".as_ref(), None).unwrap();
//! let code = qmpkit_codegen::generate(&schema, &qmpkit_codegen::Options::default());
//! std::fs::write(std::env::var("OUT_DIR").unwrap() + "/qapi.rs", code).unwrap();
//! ```
//!
//! or from the command line: `qmpkit schema codegen --lang rust FILE -o qapi.rs`.
//!
//! # The mapping
//!
//! | QAPI | Rust |
//! | --- | --- |
//! | `str`, `bool`, `number` | `String`, `bool`, `f64` |
//! | `int`, `int8`…`int64`, `uint8`…`uint64`, `size` | `i64`, `i8`…`i64`, `u8`…`u64`, `u64` (serde checks the range) |
//! | `any` (and legacy `**`, `visitor`) | `serde_json::Value` |
//! | `null` | [`qmpkit_qapi::Null`] |
//! | `['T']` | `Vec<T>` |
//! | struct | a struct; optional members are `Option<T>` (left out when `None`); members of the base are members of the struct; a member whose type contains the struct again is boxed |
//! | enum | an enum with one variant per value and `Unknown(String)` for values the schema does not know |
//! | union | base members (all but the tag) as a struct whose tag member is an enum of branches (`<Union>Branch`); a union whose base is only its tag is that enum itself. Each branch variant holds the branch's struct (a unit variant for an empty branch), `Unknown(Value)` holds an unknown branch: an object with the tag and the branch's members. A legacy simple union (`{'type': …, 'data': …}` on the wire) is an enum whose variants hold the `data` directly |
//! | alternate | an enum with one variant per alternative, decoded by JSON type as QEMU decides (a string for `str` or an enum, a number for the numeric alternative, an object, an array, `true`/`false`, `null`) |
//! | command | a struct of its arguments implementing [`qmpkit_qapi::Command`] (`NAME`, `Returns`, `ALLOW_OOB`); `boxed` commands and commands whose arguments are a union wrap the argument type (`BlockdevAdd(pub BlockdevOptions)`); `gen: false` commands take a JSON object (`serde_json::Map`) |
//! | event | a struct of its data implementing [`qmpkit_qapi::Event`], and one variant of the enum `AnyEvent` ([`qmpkit_qapi::EventEnum`]; `Unknown { name, data }` for the others) |
//! | commands, for servers | the trait `Commands<C>`: one async method per command, each answering "not implemented" unless overridden, and `register_commands` handing them to a [`qmpkit_qapi::server::Registrar`] |
//! | commands, for a state machine ([`Options::handlers`]) | the trait `Handlers`: one `&mut self` method per command taking its arguments' struct and a context (`Handlers::Cx`), answering "not implemented" unless overridden; `Handlers::IMPLEMENTED` lists what an implementation provides; `dispatch` decodes a validated `arguments` object, calls the method and encodes its return value as a JSON value, `dispatch_with` in the form an `Encode` gives (a server's wire bytes, written straight from the typed value) |
//!
//! Decoding is tolerant (unknown members ignored, unknown enum values and branches kept);
//! [`qmpkit_qapi::decode_strict`] rejects what the types did not capture.
//!
//! Doc comments become rustdoc (with their Returns, Errors and Since sections and examples);
//! the `deprecated` feature becomes `#[deprecated]`, `unstable` a line in the docs.
//!
//! # `if` conditions
//!
//! Conditions are evaluated when generating, against the build symbols of
//! [`Options::cfg`] (`--cfg SYM` on the command line), exactly as `qmpkit schema introspect`
//! evaluates them: a definition, member, value or branch whose condition does not hold is
//! left out. They are not turned into `#[cfg]` attributes, because QEMU's symbols are not
//! Rust's.
//!
//! # Names
//!
//! Identifiers follow the rules of the `names` module (UpperCamelCase for types, values,
//! branches, commands and events; snake_case for members; `_` before a leading digit; raw
//! identifiers for keywords; downstream `__RFQDN_` prefixes spelt as words;
//! `__org.qemu_x-foo` → `OrgQemuXFoo`). Types keep their schema name. A command's struct is
//! named after the command (`query-block` → `QueryBlock`), an event's after the event
//! (`BLOCK_JOB_COMPLETED` → `BlockJobCompleted`); when a type has that name already, the
//! command's struct is that type itself if it is the command's (plain struct) argument type,
//! else it takes the suffix `Command`. Events come after commands and take the suffix
//! `Event` on a clash (`stop` → `Stop`, `STOP` → `StopEvent`).
//!
//! Types with no name of their own — the masked names (`"1"`, `"2"`, …) of an introspection
//! answer and the nested anonymous structs of the legacy dialect — are named after their first
//! use, walking the commands and events in schema order, then the types, each user before
//! what it uses:
//!
//! * a command's argument type: `<Command>Arg` (when it is not simply the command's struct);
//!   its return type: `<Command>Ret` (for an array, its element type);
//! * an event's data type: `<Event>Data` (when it is not simply the event's struct);
//! * a member's type: `<Parent><Member>` (`BlockInfo` + `inserted` → `BlockInfoInserted`);
//! * a union branch's type: `<Union><Branch>`; an alternative: `<Alternate><Kind>` with kind
//!   `Object`, `Enum` or `Array`;
//!
//! where `<Parent>` is the user's Rust name. The names are stable: they depend only on the
//! schema. A clash takes the first free numeric suffix.
//!
//! [`qmpkit-qapi`]: qmpkit_qapi

mod doc;
mod emit;
pub mod names;
mod plan;

use std::collections::HashSet;

use qmpkit_schema::Schema;

/// What to generate.
#[derive(Debug, Clone)]
pub struct Options {
    /// Build symbols that `if` conditions are evaluated against.
    pub cfg: HashSet<String>,
    /// Generate the server trait `Commands` and `register_commands`.
    pub server: bool,
    /// Generate the synchronous handler trait `Handlers` and `dispatch`: for an
    /// implementation that owns its state (`&mut self`) and runs each command to completion,
    /// as QEMU's monitor runs its `qmp_*` functions.
    pub handlers: bool,
    /// Doc comments from the schema (off: only the one-line summaries the generator writes).
    pub docs: bool,
    /// Named in the header comment (e.g. the schema's file name).
    pub source_name: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            cfg: HashSet::new(),
            server: true,
            handlers: false,
            docs: true,
            source_name: None,
        }
    }
}

/// The Rust bindings of `schema`, as source text (one file: put it in a module of its own, or
/// `include!` it).
pub fn generate(schema: &Schema, opts: &Options) -> String {
    let plan = plan::Plan::new(schema, opts);
    emit::emit(&plan)
}
