//! The error object QMP carries in `{"error": {"class": …, "desc": …}}`.

use serde::{Deserialize, Serialize};
use std::fmt;

/// QEMU's error classes (QAPI enum `QapiErrorClass`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ErrorClass {
    GenericError,
    CommandNotFound,
    DeviceNotActive,
    DeviceNotFound,
    KVMMissingCap,
    /// Classes that QEMU 1.x/2.x still used and later folded into
    /// GenericError; kept so that old-interface machines can answer in
    /// their generation's words.
    DeviceEncrypted,
    MigrationExpected,
}

impl ErrorClass {
    /// Every class, in the order QEMU's schema lists them (the old ones last).
    pub const ALL: [ErrorClass; 7] = [
        ErrorClass::GenericError,
        ErrorClass::CommandNotFound,
        ErrorClass::DeviceNotActive,
        ErrorClass::DeviceNotFound,
        ErrorClass::KVMMissingCap,
        ErrorClass::DeviceEncrypted,
        ErrorClass::MigrationExpected,
    ];

    /// The class named `name` on the wire, if there is one.
    pub fn from_name(name: &str) -> Option<ErrorClass> {
        ErrorClass::ALL.into_iter().find(|c| c.as_str() == name)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::GenericError => "GenericError",
            ErrorClass::CommandNotFound => "CommandNotFound",
            ErrorClass::DeviceNotActive => "DeviceNotActive",
            ErrorClass::DeviceNotFound => "DeviceNotFound",
            ErrorClass::KVMMissingCap => "KVMMissingCap",
            ErrorClass::DeviceEncrypted => "DeviceEncrypted",
            ErrorClass::MigrationExpected => "MigrationExpected",
        }
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error a command answers with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{class}: {desc}")]
pub struct QmpError {
    pub class: ErrorClass,
    pub desc: String,
}

impl QmpError {
    pub fn new(class: ErrorClass, desc: impl Into<String>) -> QmpError {
        QmpError {
            class,
            desc: desc.into(),
        }
    }

    /// A `GenericError` with the given text (most QEMU errors).
    pub fn generic(desc: impl Into<String>) -> QmpError {
        QmpError::new(ErrorClass::GenericError, desc)
    }

    /// The error of a command that `by` (a server, the program behind it) does not
    /// implement: a `GenericError` that says so.
    pub fn not_implemented(command: &str, by: &str) -> QmpError {
        QmpError::generic(format!("Command '{command}' is not implemented by {by}"))
    }
}
