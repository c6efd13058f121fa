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

/// QEMU's hash of an object member name (over its modified UTF-8 bytes: the
/// string's own bytes, with NUL as the two bytes `C0 80`).
pub fn member_hash(key: &str) -> u32 {
    // value = 0x238F13AF * len + sum(byte << ((i * 5) % 24)), summed in one pass (the
    // additions wrap, so their order does not matter).
    let mut sum = 0u32;
    let mut len = 0u32;
    let mut shift = 0u32;
    let mut add = |b: u8| {
        sum = sum.wrapping_add(u32::from(b) << shift);
        len = len.wrapping_add(1);
        shift = if shift >= 19 { shift - 19 } else { shift + 5 };
    };
    for &b in key.as_bytes() {
        if b == 0 {
            add(0xC0);
            add(0x80);
        } else {
            add(b);
        }
    }
    let value = 0x238F_13AFu32.wrapping_mul(len).wrapping_add(sum);
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

/// Members a [`walk`] orders on the stack; larger objects take one allocation.
const SMALL: usize = 16;

/// Call `f` with each of `map`'s members (taken in insertion order) in QEMU's walking
/// order, as [`walk_order`] gives it, without allocating for small objects. Stops at the
/// first error `f` returns.
pub fn walk<'a, E>(
    map: &'a Map<String, Value>,
    mut f: impl FnMut(&'a String, &'a Value) -> Result<(), E>,
) -> Result<(), E> {
    let n = map.len();
    if n <= 1 {
        for (k, v) in map {
            f(k, v)?;
        }
        return Ok(());
    }
    if n > SMALL {
        let members: Vec<(&String, &Value)> = map.iter().collect();
        for i in walk_order(map) {
            if let Some(&(k, v)) = members.get(i) {
                f(k, v)?;
            }
        }
        return Ok(());
    }
    // One word per member: bucket (9 bits) above the complement of its index, so that
    // sorting the words orders by bucket, then most recent first.
    let mut order = [0u32; SMALL];
    let mut members: [Option<(&'a String, &'a Value)>; SMALL] = [None; SMALL];
    for (i, (k, v)) in map.iter().enumerate() {
        order[i] = (member_bucket(k) << 8) | (0xFF - i as u32);
        members[i] = Some((k, v));
    }
    order[..n].sort_unstable();
    for &w in &order[..n] {
        let i = (0xFF - (w & 0xFF)) as usize;
        if let Some(Some((k, v))) = members.get(i) {
            f(k, v)?;
        }
    }
    Ok(())
}

/// Reorder every object in `value`, whose members are in the order QEMU would
/// have inserted them (input order for parsed JSON, schema order for command
/// results), into the order QEMU prints them. Apply once: the result's order
/// is no longer an insertion order. Works without recursion, at any depth.
pub fn qemu_order(value: Value) -> Value {
    if !matches!(value, Value::Array(_) | Value::Object(_)) {
        return value;
    }
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

    /// The hash as QEMU computes it, over an explicitly built modified UTF-8 buffer.
    fn reference_hash(key: &str) -> u32 {
        let mut bytes = Vec::new();
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

    #[test]
    fn hash_matches_the_reference() {
        let long = "x".repeat(100);
        for k in [
            "",
            "a",
            "id",
            "execute",
            "arguments",
            "a\0b",
            "\0",
            "é\0ü€𝄞",
            &long,
        ] {
            assert_eq!(member_hash(k), reference_hash(k), "{k:?}");
        }
    }

    #[test]
    fn walk_agrees_with_walk_order() {
        for n in [0usize, 1, 2, 3, 7, 16, 17, 40] {
            let mut m = Map::new();
            for i in 0..n {
                // Some names share a bucket, so that the tie rule is exercised.
                m.insert(format!("k{}", i % 5 * 97 + i), Value::from(i));
            }
            let mut seen = Vec::new();
            walk(&m, |k, _| {
                seen.push(m.keys().position(|x| x == k).unwrap_or(usize::MAX));
                Ok::<(), ()>(())
            })
            .unwrap();
            assert_eq!(seen, walk_order(&m), "{n} members");
        }
    }

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
