//! Rocker switches as the configuration and `device_add` check them: QEMU's checks of a new
//! switch, over closures that say which back ends exist and are taken (the configuration's
//! options before start-up, the running machine's devices after).

use qmpkit_wire::QmpError;
use serde_json::Value;

use crate::generic;
use crate::qom::value::QomValue;

/// The type name, and a switch's name when it is given none.
pub const TYPE: &str = "rocker";
/// The one world a switch can run.
const WORLD: &str = "ofdpa";

/// The checks QEMU makes when a switch is created, in its order: each port's back end exists
/// and is free (also of the ports before it), then the world exists, then the name is new.
/// `props`: the device's options; `exists` / `in_use`: whether a back end exists / is taken.
pub fn check_new(
    props: &[(String, Value)],
    exists: impl Fn(&str) -> bool,
    in_use: impl Fn(&str) -> bool,
    name_taken: impl Fn(&str) -> bool,
) -> Result<(), QmpError> {
    let get = |k: &str| props.iter().find(|(p, _)| p == k).map(|(_, v)| v);
    if let Some(v) = get("ports") {
        let def = crate::qom::types::find_prop(TYPE, "ports")
            .ok_or_else(|| generic("rocker has no ports property"))?;
        let ports = match crate::qom::props::device_prop_value(TYPE, def, v)? {
            QomValue::List(l) => l,
            _ => Vec::new(),
        };
        let mut taken: Vec<&str> = Vec::new();
        for p in ports.iter().filter_map(QomValue::as_str) {
            if !exists(p) {
                return Err(generic(format!(
                    "Property '{TYPE}.ports' can't find value '{p}'"
                )));
            }
            if in_use(p) || taken.contains(&p) {
                return Err(generic(format!(
                    "Property '{TYPE}.ports' can't take value '{p}', it's in use"
                )));
            }
            taken.push(p);
        }
    }
    if let Some(w) = get("world").and_then(Value::as_str) {
        if w != WORLD {
            return Err(generic(format!(
                "invalid argument requested world {w} does not exist"
            )));
        }
    }
    let name = get("name").and_then(Value::as_str).unwrap_or(TYPE);
    if name_taken(name) {
        return Err(generic(format!("{name} already exists")));
    }
    Ok(())
}
