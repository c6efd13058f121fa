//! QOM property values as `-device`, `device_add` and `-object` give them: parsing each
//! value for the property's type, in QEMU's words, and the checks a device's options need
//! before any machine exists (the configuration uses them too).

use serde_json::Value;

use super::{err_prop_not_found, types, PropDef, QomValue};
use qmpkit_wire::QmpError;

/// Options of `-device`/`device_add` that are not properties.
pub const RESERVED: &[&str] = &["driver", "bus", "id"];
/// Parse a PCI address `SS[.F]` (hex, as QEMU reads it).
pub fn parse_devfn(s: &str) -> Option<i64> {
    let s = s.trim();
    let (slot, func) = match s.split_once('.') {
        Some((a, b)) => (a, Some(b)),
        None => (s, None),
    };
    let slot = i64::from_str_radix(slot.trim_start_matches("0x"), 16).ok()?;
    let func = match func {
        Some(f) => i64::from_str_radix(f.trim_start_matches("0x"), 16).ok()?,
        None => 0,
    };
    if !(0..32).contains(&slot) || !(0..8).contains(&func) {
        return None;
    }
    Some(slot << 3 | func)
}

pub fn parse_int(s: &str) -> Option<i64> {
    let s = s.trim();
    if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        return i64::from_str_radix(h, 16).ok();
    }
    if let Ok(v) = s.parse::<i64>() {
        return Some(v);
    }
    s.parse::<u64>().ok().map(|v| v as i64)
}

fn is_mac(s: &str) -> bool {
    let parts: Vec<&str> = s.split(':').collect();
    parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_hexdigit()))
}

/// Whether `id` is a well-formed QEMU identifier.
pub fn id_wellformed(id: &str) -> bool {
    let mut c = id.chars();
    matches!(c.next(), Some(ch) if ch.is_ascii_alphabetic())
        && c.all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '-' | '.' | '_'))
}

/// Convert a `-device`/`device_add` property value to the property's type.
pub fn device_prop_value(ty_name: &str, def: &PropDef, raw: &Value) -> Result<QomValue, QmpError> {
    let text = match raw {
        Value::String(s) => s.clone(),
        Value::Bool(b) => (if *b { "on" } else { "off" }).to_string(),
        Value::Number(n) => n.to_string(),
        other => other.to_string(),
    };
    let name = def.name;
    let bad = || {
        QmpError::generic(format!(
            "Property '{ty_name}.{name}' doesn't take value '{text}'"
        ))
    };
    match def.ty {
        "bool" => match text.as_str() {
            "on" | "yes" | "true" | "y" => Ok(QomValue::Bool(true)),
            "off" | "no" | "false" | "n" => Ok(QomValue::Bool(false)),
            _ => Err(QmpError::generic(format!(
                "Parameter '{name}' expects 'on' or 'off'"
            ))),
        },
        "int32" if name == "addr" => parse_devfn(&text).map(QomValue::Int).ok_or_else(bad),
        "int8" | "int16" | "int32" | "int64" | "int" | "size" | "uint8" | "uint16" | "uint32"
        | "uint64" => {
            let v = parse_int(&text)
                .ok_or_else(|| QmpError::generic(format!("Parameter '{name}' expects int64")))?;
            let (lo, hi): (i64, i64) = match def.ty {
                "uint8" => (0, u8::MAX as i64),
                "uint16" => (0, u16::MAX as i64),
                "uint32" => (0, u32::MAX as i64),
                "int8" => (i8::MIN as i64, i8::MAX as i64),
                "int16" => (i16::MIN as i64, i16::MAX as i64),
                "int32" => (i32::MIN as i64, i32::MAX as i64),
                _ => (i64::MIN, i64::MAX),
            };
            if v < lo || v > hi {
                return Err(QmpError::generic(format!(
                    "Property {ty_name}.{name} doesn't take value {v} (minimum: {lo}, maximum: {hi})"
                )));
            }
            Ok(QomValue::Int(v))
        }
        "list" => list_value(name, raw),
        "str" if name == "mac" || name == "fp_start_macaddr" => {
            if is_mac(&text) {
                Ok(QomValue::Str(text.to_ascii_lowercase()))
            } else {
                Err(bad())
            }
        }
        _ => Ok(QomValue::Str(text)),
    }
}

/// A `list` property's value: a JSON array of strings (as `device_add` and a JSON `-device`
/// give it; the command line's `key=value` form cannot), in QEMU's words otherwise.
fn list_value(name: &str, raw: &Value) -> Result<QomValue, QmpError> {
    let parsed;
    let items = match raw {
        Value::Array(a) => a,
        Value::String(s) if s.trim_start().starts_with('[') => {
            parsed = serde_json::from_str::<Value>(s).unwrap_or(Value::Null);
            match &parsed {
                Value::Array(a) => a,
                _ => return Err(expected(name, "array")),
            }
        }
        _ => return Err(expected(name, "array")),
    };
    items
        .iter()
        .enumerate()
        .map(|(i, v)| match v {
            Value::String(s) => Ok(QomValue::Str(s.clone())),
            _ => Err(expected(&format!("{name}[{i}]"), "string")),
        })
        .collect::<Result<_, _>>()
        .map(QomValue::List)
}

fn expected(name: &str, ty: &str) -> QmpError {
    QmpError::generic(format!(
        "Invalid parameter type for '{name}', expected: {ty}"
    ))
}

/// The checks `-device` shares with `device_add` that need no running
/// machine: the driver names a creatable device type, its properties exist
/// and parse, mandatory back ends are named. Answers the type's name.
pub fn check_device_option(
    driver: &str,
    props: &std::collections::BTreeMap<String, String>,
    modern: bool,
) -> Result<&'static str, QmpError> {
    let td = types::find(driver)
        .filter(|t| types::is_a(t.name, "device"))
        .or_else(|| types::resolve_alias(driver).and_then(types::find))
        .ok_or_else(|| QmpError::generic(format!("'{driver}' is not a valid device model name")))?;
    if td.is_abstract {
        return Err(QmpError::generic(
            "Parameter 'driver' expects non-abstract device type",
        ));
    }
    if !td.user_creatable {
        return Err(QmpError::generic(
            "Parameter 'driver' expects pluggable device type",
        ));
    }
    for (k, v) in props {
        if RESERVED.contains(&k.as_str()) {
            continue;
        }
        let def =
            types::find_prop(td.name, k).ok_or_else(|| err_prop_not_found(modern, td.name, k))?;
        device_prop_value(td.name, def, &Value::String(v.clone()))?;
    }
    check_backend_set(td.name, props.get("drive").map(String::as_str))?;
    Ok(td.name)
}

/// Block devices that cannot exist without a drive.
pub fn check_backend_set(ty: &str, drive: Option<&str>) -> Result<(), QmpError> {
    if drive.is_some_and(|d| !d.is_empty()) {
        return Ok(());
    }
    if types::is_a(ty, "virtio-blk-pci") || ty == "virtio-blk-device" || ty == "scsi-hd" {
        return Err(QmpError::generic("drive property not set"));
    }
    if ty == "ide-hd" {
        return Err(QmpError::generic("No drive specified"));
    }
    Ok(())
}

/// The property of a device type that names a back end of `kind`
/// (`netdev`, `drive`, `chardev`), as QEMU spells it in errors
/// (`e1000.netdev`, `virtio-blk-device.drive`).
pub fn backend_prop_owner(ty: &str) -> String {
    if types::is_a(ty, "virtio-pci") {
        if let Some(base) = ty.strip_suffix("-pci") {
            return format!("{base}-device");
        }
    }
    ty.to_string()
}
