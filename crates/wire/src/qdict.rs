//! The order in which QEMU walks a JSON object.
//!
//! QEMU keeps objects in a hash table of 512 buckets (hash: TDB's string hash);
//! it walks the buckets in ascending order and each bucket from its most recent
//! member. Everything QEMU prints as JSON, and every check it makes member by
//! member, follows this order. It explains, for instance, why QEMU prints
//! `{"micro": …, "minor": …, "major": …}` for a version built as major, minor,
//! micro, and `{"id": …, "error": …}` but `{"return": …, "id": …}`.

use serde_json::{Map, Value};

const BUCKETS: u32 = 512;

/// QEMU's hash of an object member name (over its modified UTF-8 bytes).
pub fn member_hash(key: &str) -> u32 {
    let mut bytes = Vec::with_capacity(key.len());
    for c in key.chars() {
        if c == '\0' {
            bytes.extend_from_slice(&[0xC0, 0x80]);
        } else {
            let mut buf = [0u8; 4];
            bytes.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
        }
    }
    let mut value = 0x238F_13AFu32.wrapping_mul(bytes.len() as u32);
    for (i, &b) in bytes.iter().enumerate() {
        value = value.wrapping_add(u32::from(b) << ((i * 5) % 24));
    }
    1_103_515_243u32.wrapping_mul(value).wrapping_add(12345)
}

/// The bucket a member name falls in.
pub fn member_bucket(key: &str) -> u32 {
    member_hash(key) % BUCKETS
}

/// Indices of `map`'s members (taken in insertion order) in QEMU's walking order.
pub fn walk_order(map: &Map<String, Value>) -> Vec<usize> {
    let mut idx: Vec<(u32, usize)> = map
        .keys()
        .enumerate()
        .map(|(i, k)| (member_bucket(k), i))
        .collect();
    idx.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
    idx.into_iter().map(|(_, i)| i).collect()
}

/// Reorder every object in `value`, whose members are in the order QEMU would
/// have inserted them (input order for parsed JSON, schema order for command
/// results), into the order QEMU prints them. Apply once: the result's order
/// is no longer an insertion order. Works without recursion, at any depth.
pub fn qemu_order(value: Value) -> Value {
    enum Task {
        Visit(Value),
        Array(usize),
        Object(Vec<String>),
    }
    let mut tasks = vec![Task::Visit(value)];
    let mut done: Vec<Value> = Vec::new();
    while let Some(task) = tasks.pop() {
        match task {
            Task::Visit(Value::Array(list)) => {
                tasks.push(Task::Array(list.len()));
                tasks.extend(list.into_iter().rev().map(Task::Visit));
            }
            Task::Visit(Value::Object(map)) => {
                let order = walk_order(&map);
                let mut slots: Vec<Option<(String, Value)>> = map.into_iter().map(Some).collect();
                let mut keys = Vec::with_capacity(slots.len());
                let mut values = Vec::with_capacity(slots.len());
                for i in order {
                    if let Some((k, v)) = slots.get_mut(i).and_then(Option::take) {
                        keys.push(k);
                        values.push(v);
                    }
                }
                tasks.push(Task::Object(keys));
                tasks.extend(values.into_iter().rev().map(Task::Visit));
            }
            Task::Visit(scalar) => done.push(scalar),
            Task::Array(n) => {
                let items = done.split_off(done.len().saturating_sub(n));
                done.push(Value::Array(items));
            }
            Task::Object(keys) => {
                let values = done.split_off(done.len().saturating_sub(keys.len()));
                done.push(Value::Object(keys.into_iter().zip(values).collect()));
            }
        }
    }
    done.pop().unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn orders_seen_in_transcripts() {
        let v = qemu_order(json!({"major": 10, "minor": 0, "micro": 2}));
        assert_eq!(
            crate::to_qemu_string(&v),
            r#"{"micro": 2, "minor": 0, "major": 10}"#
        );
        let v = qemu_order(json!({"running": false, "singlestep": false, "status": "prelaunch"}));
        assert_eq!(
            crate::to_qemu_string(&v),
            r#"{"status": "prelaunch", "singlestep": false, "running": false}"#
        );
        let v = qemu_order(json!({"error": {"class": "GenericError", "desc": "x"}, "id": 1}));
        assert_eq!(
            crate::to_qemu_string(&v),
            r#"{"id": 1, "error": {"class": "GenericError", "desc": "x"}}"#
        );
        let v = qemu_order(
            json!({"event": "STOP", "data": {}, "timestamp": {"microseconds": 1, "seconds": 2}}),
        );
        assert_eq!(
            crate::to_qemu_string(&v),
            r#"{"timestamp": {"seconds": 2, "microseconds": 1}, "event": "STOP", "data": {}}"#
        );
    }
}
