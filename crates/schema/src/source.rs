//! Source locations as QEMU reports them.
//!
//! An [`Info`] names a position in a schema file: the file (with the chain
//! of files that included it), a line, and, once expression checking has
//! started, the definition the position belongs to. Its `Display` is the
//! prefix QEMU prints before a message:
//!
//! ```text
//! In file included from a.json:1:
//! b.json: In struct 'Foo':
//! b.json:7
//! ```

use std::fmt;
use std::sync::Arc;

/// Which generation of the QAPI language a schema is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Dialect {
    /// QEMU 10.0's language (docs/devel/qapi-code-gen.rst).
    #[default]
    Modern,
    /// What QEMU's generator accepted from 1.0 to 2.12.
    Legacy,
}

/// One opened schema file and where it was included from.
#[derive(Debug, PartialEq, Eq)]
pub struct SourceFile {
    /// The file name as QEMU prints it (the path as given / as joined with
    /// the including file's directory).
    pub name: String,
    /// The include directive that opened this file, if any.
    pub included_from: Option<Info>,
}

/// A position in a schema, plus the definition it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    pub file: Arc<SourceFile>,
    /// 1-based line; 0 means "the whole file" (printed without a line).
    pub line: u32,
    /// `(meta, name)`, e.g. `("struct", "Foo")`, printed as the
    /// "F: In struct 'Foo':" context line.
    pub defn: Option<Arc<(String, String)>>,
}

impl Info {
    pub fn new(file: Arc<SourceFile>, line: u32) -> Info {
        Info { file, line, defn: None }
    }

    /// The same position, now known to belong to definition `meta` `name`.
    pub fn with_defn(&self, meta: &str, name: &str) -> Info {
        Info {
            file: self.file.clone(),
            line: self.line,
            defn: Some(Arc::new((meta.to_string(), name.to_string()))),
        }
    }

    /// "F:L" (or "F" when the line is 0), without include path or context.
    pub fn loc(&self) -> String {
        if self.line > 0 {
            format!("{}:{}", self.file.name, self.line)
        } else {
            self.file.name.clone()
        }
    }

    /// The "In file included from F:L:" lines, outermost last as QEMU
    /// prints them (innermost include first).
    pub fn include_path(&self) -> String {
        let mut out = String::new();
        let mut parent = self.file.included_from.clone();
        while let Some(p) = parent {
            out.push_str(&format!("In file included from {}:\n", p.loc()));
            parent = p.file.included_from.clone();
        }
        out
    }

    /// The "F: In meta 'name':" line, if a definition is known.
    pub fn in_defn(&self) -> String {
        match &self.defn {
            Some(d) => format!("{}: In {} '{}':\n", self.file.name, d.0, d.1),
            None => String::new(),
        }
    }
}

impl fmt::Display for Info {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}{}", self.include_path(), self.in_defn(), self.loc())
    }
}
