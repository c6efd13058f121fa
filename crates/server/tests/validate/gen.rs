//! Random JSON values: noise, and values valid for a schema type.
#![allow(dead_code)]

use qmpkit_schema::model::EntityKind;
use qmpkit_schema::Schema;
use serde_json::{json, Map, Value};

/// A small deterministic generator (xorshift) driven by proptest's seed.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
    pub fn chance(&mut self, pct: u64) -> bool {
        self.below(100) < pct
    }
}

pub fn any_json(r: &mut Rng, depth: usize) -> Value {
    match r.below(if depth > 3 { 5 } else { 7 }) {
        0 => Value::Null,
        1 => Value::Bool(r.chance(50)),
        2 => json!(r.next() as i64),
        3 => json!(r.below(1000) as f64 / 7.0),
        4 => json!(format!("s{}", r.below(100))),
        5 => Value::Array((0..r.below(3)).map(|_| any_json(r, depth + 1)).collect()),
        _ => {
            let mut m = Map::new();
            for i in 0..r.below(3) {
                m.insert(format!("k{i}"), any_json(r, depth + 1));
            }
            Value::Object(m)
        }
    }
}

/// A random value valid for type `t`.
pub fn valid(s: &Schema, t: usize, r: &mut Rng, depth: usize) -> Value {
    let e = s.entity(t);
    match &e.kind {
        EntityKind::Builtin(b) => match (b.json_type, e.name.as_str()) {
            ("string", _) => json!(format!("v{}", r.below(50))),
            ("boolean", _) => json!(r.chance(50)),
            ("null", _) => Value::Null,
            ("number", _) => match r.below(3) {
                0 => json!(r.next() as i64),
                1 => json!(r.next()),
                _ => json!((r.below(2000) as f64 - 1000.0) / 3.0),
            },
            ("int", "int8") => json!(r.below(256) as i64 - 128),
            ("int", "int16") => json!(r.below(65536) as i64 - 32768),
            ("int", "int32") => json!(r.below(1 << 32) as i64 - (1 << 31)),
            ("int", "uint8") => json!(r.below(256)),
            ("int", "uint16") => json!(r.below(65536)),
            ("int", "uint32") => json!(r.below(1 << 32)),
            ("int", "uint64" | "size") => match r.below(3) {
                0 => json!(r.next()),
                1 => json!(r.next() as i64),
                _ => json!(0),
            },
            ("int", _) => json!(r.next() as i64),
            _ => any_json(r, 0),
        },
        EntityKind::Enum(en) => match en.members.len() as u64 {
            0 => json!(""),
            n => json!(en.members[r.below(n) as usize].name),
        },
        EntityKind::Array(a) => {
            let n = if depth > 6 { 0 } else { r.below(3) };
            Value::Array((0..n).map(|_| valid(s, a.element, r, depth + 1)).collect())
        }
        EntityKind::Object(_) => {
            let mut m = Map::new();
            fill(s, t, &mut m, r, depth);
            Value::Object(m)
        }
        EntityKind::Alternate(alt) => {
            let objectless: Vec<_> = alt
                .variants
                .iter()
                .filter(|v| !matches!(s.entity(v.typ).kind, EntityKind::Object(_)))
                .collect();
            let v = if depth > 6 && !objectless.is_empty() {
                objectless[r.below(objectless.len() as u64) as usize]
            } else {
                &alt.variants[r.below(alt.variants.len() as u64) as usize]
            };
            valid(s, v.typ, r, depth + 1)
        }
        _ => json!({}),
    }
}

pub fn fill(s: &Schema, t: usize, m: &mut Map<String, Value>, r: &mut Rng, depth: usize) {
    let EntityKind::Object(o) = &s.entity(t).kind else {
        return;
    };
    for mem in s.object_members(t) {
        if mem.optional && (depth > 6 || r.chance(60)) {
            continue;
        }
        let v = valid(s, mem.typ, r, depth + 1);
        m.insert(mem.name.to_string(), v);
    }
    if let Some(br) = &o.branches {
        if let Some(Value::String(tag)) = m.get(br.tag_name.as_str()).cloned() {
            if let Some(v) = br.variants.iter().find(|v| v.name == tag) {
                fill(s, v.typ, m, r, depth);
            }
        }
    }
}

/// Damage a valid value in place: change a member's value, add a member,
/// drop one, at any depth (walking down a random path).
pub fn damage(v: &mut Value, r: &mut Rng) {
    damage_at(v, r, 0)
}

fn damage_at(v: &mut Value, r: &mut Rng, depth: usize) {
    let descend = depth < 8 && r.chance(50);
    match v {
        Value::Object(m) if !m.is_empty() && descend => {
            let i = r.below(m.len() as u64) as usize;
            if let Some((_, next)) = m.iter_mut().nth(i) {
                damage_at(next, r, depth + 1);
            }
        }
        Value::Array(a) if !a.is_empty() && descend => {
            let i = r.below(a.len() as u64) as usize;
            damage_at(&mut a[i], r, depth + 1);
        }
        Value::Object(m) => match r.below(3) {
            0 => {
                m.insert(format!("x{}", r.below(20)), any_json(r, 2));
            }
            1 if !m.is_empty() => {
                let i = r.below(m.len() as u64) as usize;
                let k = m.keys().nth(i).cloned().unwrap_or_default();
                m.shift_remove(&k);
            }
            _ => {
                if let Some((_, x)) = m.iter_mut().next() {
                    *x = any_json(r, 2);
                }
            }
        },
        other => *other = any_json(r, 2),
    }
}
