//! QAPI spellings as Rust identifiers.
//!
//! * Types, enum values, union branches, alternatives, commands and events become
//!   UpperCamelCase: the name is split into words at `-`, `_` and `.` (a downstream
//!   `__RFQDN_` prefix loses its underscores and dots like any other separator), each word
//!   starts with a capital; a word written all in capitals is lowered after its first letter
//!   (`SHUTDOWN` → `Shutdown`), others keep their inner capitals (`X86CPURegister32` stays).
//! * Members and command methods become snake_case: the same words, split further at camel
//!   humps, lowered and joined by `_`.
//! * A name that starts with a digit gets a leading `_` (`_1`); a Rust keyword is written as a
//!   raw identifier (`r#type`), or with a trailing `_` where Rust has no raw form (`self_`).
//! * Names that still clash within one namespace get a numeric suffix (`Foo2`, `foo_2`), in
//!   schema order.

use std::collections::HashSet;

const KEYWORDS: &[&str] = &[
    "as", "break", "const", "continue", "crate", "else", "enum", "extern", "false", "fn", "for",
    "if", "impl", "in", "let", "loop", "match", "mod", "move", "mut", "pub", "ref", "return",
    "self", "Self", "static", "struct", "super", "trait", "true", "type", "unsafe", "use", "where",
    "while", "async", "await", "dyn", "abstract", "become", "box", "do", "final", "macro",
    "override", "priv", "typeof", "unsized", "virtual", "yield", "try", "gen",
];

/// Keywords that cannot be raw identifiers.
const NOT_RAW: &[&str] = &["self", "Self", "super", "crate", "_"];

fn words(name: &str) -> impl Iterator<Item = &str> {
    name.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
}

/// UpperCamelCase of a QAPI name.
pub fn camel(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for w in words(name) {
        let all_caps = w.len() > 1
            && w.chars().any(|c| c.is_ascii_alphabetic())
            && !w.chars().any(|c| c.is_ascii_lowercase());
        let mut chars = w.chars();
        if let Some(first) = chars.next() {
            out.push(first.to_ascii_uppercase());
            if all_caps {
                out.extend(chars.map(|c| c.to_ascii_lowercase()));
            } else {
                out.extend(chars);
            }
        }
    }
    if out.is_empty() {
        out.push_str("Unnamed");
    }
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    escape(out)
}

/// snake_case of a QAPI name.
pub fn snake(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    for w in words(name) {
        if !out.is_empty() {
            out.push('_');
        }
        let cs: Vec<char> = w.chars().collect();
        for (i, &c) in cs.iter().enumerate() {
            if c.is_ascii_uppercase() && i > 0 {
                let prev = cs[i - 1];
                let next_lower = cs.get(i + 1).is_some_and(|n| n.is_ascii_lowercase());
                if prev.is_ascii_lowercase()
                    || prev.is_ascii_digit() && next_lower
                    || prev.is_ascii_uppercase() && next_lower
                {
                    out.push('_');
                }
            }
            out.push(c.to_ascii_lowercase());
        }
    }
    if out.is_empty() {
        out.push_str("unnamed");
    }
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    escape(out)
}

fn escape(s: String) -> String {
    if NOT_RAW.contains(&s.as_str()) {
        format!("{s}_")
    } else if KEYWORDS.contains(&s.as_str()) {
        format!("r#{s}")
    } else {
        s
    }
}

/// A set of names taken in one namespace.
#[derive(Default, Debug, Clone)]
pub struct Namespace {
    taken: HashSet<String>,
}

impl Namespace {
    /// Reserve `name` as is (no suffix); false when it was taken.
    pub fn reserve(&mut self, name: &str) -> bool {
        self.taken.insert(name.to_string())
    }

    pub fn contains(&self, name: &str) -> bool {
        self.taken.contains(name)
    }

    /// `name`, or `name` with the first free numeric suffix (`sep` between).
    pub fn unique(&mut self, name: &str, sep: &str) -> String {
        if self.taken.insert(name.to_string()) {
            return name.to_string();
        }
        let base = name.strip_prefix("r#").unwrap_or(name);
        let mut n = 2;
        loop {
            let c = format!("{base}{sep}{n}");
            if self.taken.insert(c.clone()) {
                return c;
            }
            n += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn camel_names() {
        assert_eq!(camel("BlockdevOptions"), "BlockdevOptions");
        assert_eq!(camel("X86CPURegister32"), "X86CPURegister32");
        assert_eq!(camel("query-block"), "QueryBlock");
        assert_eq!(camel("BLOCK_JOB_COMPLETED"), "BlockJobCompleted");
        assert_eq!(camel("__org.qemu_x-foo"), "OrgQemuXFoo");
        assert_eq!(camel("null-co"), "NullCo");
        assert_eq!(camel("1"), "_1");
        assert_eq!(camel("kp_0"), "Kp0");
        assert_eq!(camel("Self"), "Self_");
        assert_eq!(camel("qcow2"), "Qcow2");
    }

    #[test]
    fn snake_names() {
        assert_eq!(snake("node-name"), "node_name");
        assert_eq!(snake("type"), "r#type");
        assert_eq!(snake("self"), "self_");
        assert_eq!(snake("CPU"), "cpu");
        assert_eq!(snake("cpuIndex"), "cpu_index");
        assert_eq!(snake("ACPIDevice"), "acpi_device");
        assert_eq!(snake("__org.qemu_x-member"), "org_qemu_x_member");
        assert_eq!(snake("0"), "_0");
        assert_eq!(snake("x509-dname"), "x509_dname");
        assert_eq!(snake("query-block"), "query_block");
    }

    #[test]
    fn namespaces_suffix() {
        let mut ns = Namespace::default();
        assert_eq!(ns.unique("Foo", ""), "Foo");
        assert_eq!(ns.unique("Foo", ""), "Foo2");
        assert_eq!(ns.unique("r#type", "_"), "r#type");
        assert_eq!(ns.unique("r#type", "_"), "type_2");
    }
}
