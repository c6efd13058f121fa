//! Counts of what a schema defines.
//!
//! Only definitions written as expressions count. Types the schema defines
//! implicitly — array types (`FooList`), argument and base types
//! (`q_obj_*-arg`, `q_obj_*-base`), legacy simple-union wrappers and tag
//! enums (`q_obj_*-wrapper`, `FooKind`), legacy nested anonymous structs —
//! and the built-in types do not. `includes` counts include directives
//! (a repeated include counts each time); `files` counts distinct schema
//! files.

use crate::model::{EntityKind, Schema};
use serde::Serialize;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SchemaStats {
    pub commands: usize,
    pub events: usize,
    pub structs: usize,
    pub unions: usize,
    pub alternates: usize,
    pub enums: usize,
    pub includes: usize,
    pub files: usize,
}

impl SchemaStats {
    pub fn of(schema: &Schema) -> SchemaStats {
        let mut s = SchemaStats::default();
        for e in &schema.entities {
            if e.implicit || e.info.is_none() {
                continue;
            }
            match &e.kind {
                EntityKind::Include(_) => s.includes += 1,
                EntityKind::Command(_) => s.commands += 1,
                EntityKind::Event(_) => s.events += 1,
                EntityKind::Enum(_) => s.enums += 1,
                EntityKind::Alternate(_) => s.alternates += 1,
                EntityKind::Object(o) => {
                    if o.branches.is_some() {
                        s.unions += 1
                    } else {
                        s.structs += 1
                    }
                }
                EntityKind::Array(_) | EntityKind::Builtin(_) => {}
            }
        }
        s.files = schema.modules.len().saturating_sub(1);
        s
    }

    /// Human-readable, one count per line.
    pub fn to_text(&self) -> String {
        format!(
            "commands   {}\nevents     {}\nstructs    {}\nunions     {}\nalternates {}\nenums      {}\nincludes   {}\nfiles      {}\n",
            self.commands,
            self.events,
            self.structs,
            self.unions,
            self.alternates,
            self.enums,
            self.includes,
            self.files
        )
    }
}
