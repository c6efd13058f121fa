//! QEMU's argument error texts, by generation.
//!
//! The newest wording (QEMU 2.10 and later for most texts, confirmed
//! against qemu-storage-daemon 10.0.2) is the default. Older generations
//! are selected by [`super::ValidateOptions::qemu_version`]:
//!
//! * before 2.9 the input visitor named members without their path
//!   (`size`, not `file.size`; `null` for list elements) and reported
//!   leftovers as `QMP input object member 'x' is unexpected`;
//! * before 2.10 `uint64`/`size` refused non-integers with the integer
//!   type error, and integers above `INT64_MAX` were floating point;
//! * before 5.0 a refused enum value read `Invalid parameter 'value'`;
//! * before 2.8 the monitor checked top-level arguments itself, before
//!   the generated code ran: unknown ones were `Invalid parameter 'x'`
//!   and the expected type words were `int`, `string`, `bool`, `number`.
//!
//! These older texts follow QEMU's history; no binary of those versions
//! was available to confirm them.

/// Flags derived from a QEMU version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wording {
    /// Members named with their full path (`a.b[0].c`).
    pub full_paths: bool,
    /// `Parameter 'x' is unexpected` (else the QMP input object text).
    pub parameter_unexpected: bool,
    /// `Parameter 'x' expects uint64` for bad unsigned values (else the
    /// integer type error), and unsigned values above `INT64_MAX` exist.
    pub uint64_expects: bool,
    /// `Parameter 'x' does not accept value 'y'` (else `Invalid parameter 'y'`).
    pub enum_does_not_accept: bool,
    /// The monitor checks top-level arguments before the visitor.
    pub monitor_arg_check: bool,
}

impl Wording {
    pub fn for_version(v: Option<(u64, u64, u64)>) -> Wording {
        let at_least = |maj: u64, min: u64| match v {
            None => true,
            Some((a, b, _)) => (a, b) >= (maj, min),
        };
        Wording {
            full_paths: at_least(2, 9),
            parameter_unexpected: at_least(2, 9),
            uint64_expects: at_least(2, 10),
            enum_does_not_accept: at_least(5, 0),
            monitor_arg_check: !at_least(2, 8),
        }
    }
}

pub fn missing(name: &str) -> String {
    format!("Parameter '{name}' is missing")
}

pub fn invalid_type(name: &str, expected: &str) -> String {
    format!("Invalid parameter type for '{name}', expected: {expected}")
}

pub fn expects(name: &str, what: &str) -> String {
    format!("Parameter '{name}' expects {what}")
}

pub fn unexpected(w: &Wording, name: &str) -> String {
    if w.parameter_unexpected {
        format!("Parameter '{name}' is unexpected")
    } else {
        format!("QMP input object member '{name}' is unexpected")
    }
}

pub fn bad_enum(w: &Wording, name: &str, value: &str) -> String {
    if w.enum_does_not_accept {
        format!("Parameter '{name}' does not accept value '{value}'")
    } else {
        invalid_parameter(value)
    }
}

pub fn invalid_parameter(name: &str) -> String {
    format!("Invalid parameter '{name}'")
}
