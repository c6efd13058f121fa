//! A fleet: many independent machines in one process, sharing only what is
//! read-only (the schema and the configuration), each with its own state,
//! name and UUID.

use std::sync::Arc;

use qmpkit_schema::Schema;

use qmpkit_machine::{Machine, MachineConfig};

/// Replace `%d` in `pattern` with `index` (`%%` is a literal `%`).
pub fn expand_pattern(pattern: &str, index: usize) -> String {
    let mut out = String::with_capacity(pattern.len() + 8);
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '%' {
            match chars.peek() {
                Some('d') => {
                    chars.next();
                    out.push_str(&index.to_string());
                }
                Some('%') => {
                    chars.next();
                    out.push('%');
                }
                _ => out.push('%'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Whether `pattern` has a `%d` to expand.
pub fn has_index(pattern: &str) -> bool {
    expand_pattern(pattern, 0) != expand_pattern(pattern, 1)
}

/// Machine `index` of a fleet built from `config`: named after the
/// configured name (`%d` expanded, or `-N` appended; `vm-N` without one),
/// with a UUID of its own.
pub fn fleet_machine(config: &Arc<MachineConfig>, schema: &Arc<Schema>, index: usize) -> Machine {
    named(
        Machine::with_index(config.clone(), schema.clone(), index),
        config,
        index,
    )
}

/// Machine `index` of a fleet, or its start-up error (see [`Machine::try_new`]).
pub fn try_fleet_machine(
    config: &Arc<MachineConfig>,
    schema: &Arc<Schema>,
    index: usize,
) -> Result<Machine, String> {
    Machine::try_with_index(config.clone(), schema.clone(), index).map(|m| named(m, config, index))
}

/// Fleet member `m`'s name and UUID.
fn named(mut m: Machine, config: &MachineConfig, index: usize) -> Machine {
    m.ident.name = Some(match &config.name {
        Some(n) if has_index(n) => expand_pattern(n, index),
        Some(n) => format!("{n}-{index}"),
        None => format!("vm-{index}"),
    });
    if config.uuid.is_none() {
        m.ident.uuid = format!("00000000-0000-4000-8000-{:012x}", index);
    }
    m
}

/// Build `n` machines.
pub fn build_fleet(config: Arc<MachineConfig>, schema: Arc<Schema>, n: usize) -> Vec<Machine> {
    (0..n).map(|i| fleet_machine(&config, &schema, i)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        assert_eq!(
            expand_pattern("unix:/run/vm-%d.sock", 7),
            "unix:/run/vm-7.sock"
        );
        assert_eq!(expand_pattern("a%%b%d", 1), "a%b1");
        assert!(has_index("x%d"));
        assert!(!has_index("x%%d"));
    }
}
