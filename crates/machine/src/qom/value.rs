//! The value of a QOM property: the kinds of value QEMU's QOM visitors carry (a QObject:
//! null, a boolean, a number, a string, a list or a dictionary), kept typed in the tree.
//! JSON appears only at the edge: a value a command gives (`qom-set`, `object-add`) is
//! checked against the property's type into a [`QomValue`], and `qom-get` answers one back as
//! JSON.

use serde_json::{Map, Number, Value};

/// One property value.
#[derive(Debug, Clone, PartialEq)]
pub enum QomValue {
    /// No value (an unset string property reads as `""`).
    Null,
    Bool(bool),
    /// An integer that fits `i64` (every integer property but the largest `uint64`s).
    Int(i64),
    /// An integer beyond `i64::MAX`.
    Uint(u64),
    /// A number with a fraction or exponent (only structured properties take one).
    Double(f64),
    /// Strings, enumeration values, link targets.
    Str(String),
    List(Vec<QomValue>),
    /// Members in order.
    Dict(Vec<(String, QomValue)>),
}

impl QomValue {
    /// The string, for strings.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            QomValue::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The integer, when it fits `i64`.
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            QomValue::Int(i) => Some(i),
            QomValue::Uint(u) => i64::try_from(u).ok(),
            _ => None,
        }
    }

    /// The integer, when it is not negative.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            QomValue::Int(i) => u64::try_from(i).ok(),
            QomValue::Uint(u) => Some(u),
            _ => None,
        }
    }

    /// The boolean, for booleans.
    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            QomValue::Bool(b) => Some(b),
            _ => None,
        }
    }

    /// A value given as JSON.
    pub fn from_json(v: &Value) -> QomValue {
        match v {
            Value::Null => QomValue::Null,
            Value::Bool(b) => QomValue::Bool(*b),
            Value::Number(n) => match (n.as_i64(), n.as_u64()) {
                (Some(i), _) => QomValue::Int(i),
                (None, Some(u)) => QomValue::Uint(u),
                (None, None) => QomValue::Double(n.as_f64().unwrap_or(0.0)),
            },
            Value::String(s) => QomValue::Str(s.clone()),
            Value::Array(a) => QomValue::List(a.iter().map(QomValue::from_json).collect()),
            Value::Object(o) => QomValue::Dict(
                o.iter()
                    .map(|(k, v)| (k.clone(), QomValue::from_json(v)))
                    .collect(),
            ),
        }
    }

    /// The value as `qom-get` answers it.
    pub fn to_json(&self) -> Value {
        match self {
            QomValue::Null => Value::Null,
            QomValue::Bool(b) => Value::Bool(*b),
            QomValue::Int(i) => Value::from(*i),
            QomValue::Uint(u) => Value::from(*u),
            QomValue::Double(d) => Number::from_f64(*d).map_or(Value::Null, Value::Number),
            QomValue::Str(s) => Value::String(s.clone()),
            QomValue::List(l) => Value::Array(l.iter().map(QomValue::to_json).collect()),
            QomValue::Dict(d) => Value::Object(
                d.iter()
                    .map(|(k, v)| (k.clone(), v.to_json()))
                    .collect::<Map<String, Value>>(),
            ),
        }
    }

    /// A default as the type registry writes it (`null`, `true`, `-1`, `"auto"`, `[]`, `{}`).
    pub fn parse_default(text: &str) -> QomValue {
        match text {
            "null" => QomValue::Null,
            "true" => QomValue::Bool(true),
            "false" => QomValue::Bool(false),
            "[]" => QomValue::List(Vec::new()),
            "{}" => QomValue::Dict(Vec::new()),
            t => {
                if let Some(s) = t.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
                    return QomValue::Str(s.to_string());
                }
                if let Ok(i) = t.parse::<i64>() {
                    return QomValue::Int(i);
                }
                if let Ok(u) = t.parse::<u64>() {
                    return QomValue::Uint(u);
                }
                QomValue::Null
            }
        }
    }
}

impl From<bool> for QomValue {
    fn from(b: bool) -> QomValue {
        QomValue::Bool(b)
    }
}

impl From<i64> for QomValue {
    fn from(i: i64) -> QomValue {
        QomValue::Int(i)
    }
}

impl From<u64> for QomValue {
    fn from(u: u64) -> QomValue {
        match i64::try_from(u) {
            Ok(i) => QomValue::Int(i),
            Err(_) => QomValue::Uint(u),
        }
    }
}

impl From<u32> for QomValue {
    fn from(u: u32) -> QomValue {
        QomValue::Int(i64::from(u))
    }
}

impl From<usize> for QomValue {
    fn from(u: usize) -> QomValue {
        QomValue::from(u as u64)
    }
}

impl From<String> for QomValue {
    fn from(s: String) -> QomValue {
        QomValue::Str(s)
    }
}

impl From<&str> for QomValue {
    fn from(s: &str) -> QomValue {
        QomValue::Str(s.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_round_trips() {
        for v in [
            json!(null),
            json!(true),
            json!(-1),
            json!(5),
            json!(u64::MAX),
            json!(1.5),
            json!("auto"),
            json!([1, "a", [true]]),
            json!({"b": 1, "a": {"c": []}}),
        ] {
            assert_eq!(QomValue::from_json(&v).to_json(), v);
        }
    }

    #[test]
    fn registry_defaults() {
        assert_eq!(QomValue::parse_default("-1"), QomValue::Int(-1));
        assert_eq!(
            QomValue::parse_default("9223372036854775807"),
            QomValue::Int(i64::MAX)
        );
        assert_eq!(
            QomValue::parse_default("\"GenuineIntel\""),
            QomValue::Str("GenuineIntel".into())
        );
        assert_eq!(QomValue::parse_default("[]"), QomValue::List(vec![]));
        assert_eq!(QomValue::parse_default("{}").to_json(), json!({}));
        assert_eq!(QomValue::parse_default("null"), QomValue::Null);
    }
}
