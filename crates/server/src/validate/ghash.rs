//! Which leftover member QEMU names when several are unexpected.
//!
//! QEMU keeps the not-yet-visited keys of each JSON object in a GLib hash
//! table: filled from the `QDict` (whose iteration order is its 512 hash
//! buckets, newest entry first in each), emptied as members are visited,
//! and finally asked for its first remaining key. The answer therefore
//! depends on both hash functions and on GLib's open addressing, table
//! sizes and resizes, which this module reproduces (GLib 2.6x–2.8x).

/// `QDict`'s bucket count.
const QDICT_BUCKETS: u32 = 512;

/// `QDict`'s hash of a key.
fn tdb_hash(name: &str) -> u32 {
    let bytes = name.as_bytes();
    let mut value: u32 = 0x238F_13AFu32.wrapping_mul(bytes.len() as u32);
    for (i, b) in bytes.iter().enumerate() {
        let shift = (i as u32).wrapping_mul(5) % 24;
        value = value.wrapping_add(u32::from(*b) << shift);
    }
    1_103_515_243u32.wrapping_mul(value).wrapping_add(12345)
}

/// The `QDict` bucket of a key.
pub fn qdict_bucket(name: &str) -> u32 {
    tdb_hash(name) % QDICT_BUCKETS
}

use qmpkit_wire::ghash::{g_str_hash, is_real, MIN_SHIFT, PRIME_MOD, TOMBSTONE, UNUSED};

/// A model of a `GHashTable` holding string keys (indices into `keys`).
struct GHash<'a> {
    keys: &'a [&'a str],
    hashes: Vec<u32>,
    slots: Vec<usize>,
    size: u32,
    modulus: u32,
    mask: u32,
    nnodes: u32,
    noccupied: u32,
}

impl<'a> GHash<'a> {
    fn new(keys: &'a [&'a str]) -> Self {
        let mut g = GHash {
            keys,
            hashes: Vec::new(),
            slots: Vec::new(),
            size: 0,
            modulus: 0,
            mask: 0,
            nnodes: 0,
            noccupied: 0,
        };
        g.set_shift(MIN_SHIFT);
        g.hashes = vec![UNUSED; g.size as usize];
        g.slots = vec![usize::MAX; g.size as usize];
        g
    }

    fn set_shift(&mut self, shift: u32) {
        let shift = shift.min(31);
        self.size = 1 << shift;
        self.modulus = PRIME_MOD[shift as usize];
        self.mask = self.size - 1;
    }

    fn set_shift_from_size(&mut self, n: u32) {
        let mut shift = 0;
        let mut n = n;
        while n != 0 {
            n >>= 1;
            shift += 1;
        }
        self.set_shift(shift.max(MIN_SHIFT));
    }

    fn hash_to_index(&self, hash: u32) -> u32 {
        hash.wrapping_mul(11) % self.modulus
    }

    /// Index of `key`'s node, or where it would go.
    fn lookup_node(&self, key: usize) -> (u32, u32) {
        let mut hash = g_str_hash(self.keys[key]);
        if !is_real(hash) {
            hash = 2;
        }
        let mut index = self.hash_to_index(hash);
        let mut node_hash = self.hashes[index as usize];
        let mut first_tombstone = None;
        let mut step = 0u32;
        while node_hash != UNUSED {
            if node_hash == hash {
                let k = self.slots[index as usize];
                if k != usize::MAX && self.keys[k] == self.keys[key] {
                    return (index, hash);
                }
            } else if node_hash == TOMBSTONE && first_tombstone.is_none() {
                first_tombstone = Some(index);
            }
            step += 1;
            index = index.wrapping_add(step) & self.mask;
            node_hash = self.hashes[index as usize];
            if step > self.size {
                break;
            }
        }
        (first_tombstone.unwrap_or(index), hash)
    }

    fn insert(&mut self, key: usize) {
        let (index, hash) = self.lookup_node(key);
        let old = self.hashes[index as usize];
        if is_real(old) {
            return;
        }
        self.hashes[index as usize] = hash;
        self.slots[index as usize] = key;
        self.nnodes += 1;
        if old == UNUSED {
            self.noccupied += 1;
            self.maybe_resize();
        }
    }

    fn remove(&mut self, key: usize) {
        let (index, _) = self.lookup_node(key);
        if !is_real(self.hashes[index as usize]) {
            return;
        }
        self.hashes[index as usize] = TOMBSTONE;
        self.slots[index as usize] = usize::MAX;
        self.nnodes -= 1;
        self.maybe_resize();
    }

    fn maybe_resize(&mut self) {
        let noccupied = self.noccupied;
        let size = self.size;
        if (size > self.nnodes * 4 && size > 1 << MIN_SHIFT) || (size <= noccupied + noccupied / 16)
        {
            self.resize();
        }
    }

    fn resize(&mut self) {
        let old_size = self.size;
        self.set_shift_from_size((f64::from(self.nnodes) * 1.333) as u32);
        let new_size = self.size;
        let bitmap_len = new_size.max(old_size) as usize;
        if new_size > old_size {
            self.hashes.resize(new_size as usize, UNUSED);
            self.slots.resize(new_size as usize, usize::MAX);
        }
        let mut moved = vec![false; bitmap_len];
        for i in 0..old_size as usize {
            let node_hash = self.hashes[i];
            if !is_real(node_hash) {
                self.hashes[i] = UNUSED;
                self.slots[i] = usize::MAX;
                continue;
            }
            if moved[i] {
                continue;
            }
            self.hashes[i] = UNUSED;
            let mut key = self.slots[i];
            self.slots[i] = usize::MAX;
            let mut node_hash = node_hash;
            loop {
                let mut step = 0u32;
                let mut hv = self.hash_to_index(node_hash);
                while moved[hv as usize] {
                    step += 1;
                    hv = hv.wrapping_add(step) & self.mask;
                }
                moved[hv as usize] = true;
                let replaced = self.hashes[hv as usize];
                let replaced_key = self.slots[hv as usize];
                self.hashes[hv as usize] = node_hash;
                self.slots[hv as usize] = key;
                if !is_real(replaced) {
                    break;
                }
                node_hash = replaced;
                key = replaced_key;
            }
        }
        if new_size < old_size {
            self.hashes.truncate(new_size as usize);
            self.slots.truncate(new_size as usize);
        }
        self.noccupied = self.nnodes;
    }

    fn first(&self) -> Option<usize> {
        self.hashes
            .iter()
            .zip(&self.slots)
            .find(|(h, _)| is_real(**h))
            .map(|(_, k)| *k)
    }
}

/// The key QEMU reports as unexpected. `keys` are the object's keys in
/// the order they appeared in the request; `consumed` the keys the visit
/// took, in the order it took them. Returns an index into `keys`, `None`
/// when nothing is left.
pub fn first_leftover(keys: &[&str], consumed: &[&str]) -> Option<usize> {
    let left: Vec<usize> = (0..keys.len())
        .filter(|i| !consumed.contains(&keys[*i]))
        .collect();
    match left.len() {
        0 => return None,
        1 => return Some(left[0]),
        _ => {}
    }
    // QDict iteration order: by bucket, newest first within a bucket.
    let mut order: Vec<(u32, usize)> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| (tdb_hash(k) % QDICT_BUCKETS, i))
        .collect();
    order.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
    let mut table = GHash::new(keys);
    for (_, i) in &order {
        table.insert(*i);
    }
    for c in consumed {
        if let Some(i) = keys.iter().position(|k| k == c) {
            table.remove(i);
        }
    }
    table.first().or(Some(left[0]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_leftover() {
        assert_eq!(first_leftover(&["a", "b"], &["a"]), Some(1));
        assert_eq!(first_leftover(&["a"], &["a"]), None);
    }

    #[test]
    fn order_independent_of_request_order_when_buckets_differ() {
        let a = first_leftover(&["a", "b", "c"], &[]).map(|i| ["a", "b", "c"][i]);
        let b = first_leftover(&["c", "b", "a"], &[]).map(|i| ["c", "b", "a"][i]);
        assert_eq!(a, Some("b"));
        assert_eq!(b, Some("b"));
    }
}
