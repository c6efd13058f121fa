//! The order in which QEMU lists an object's children: its properties live in a GLib hash
//! table keyed by name, and `qom-list` and `query-chardev` walk that table's buckets (and
//! prepend each entry to the list they return, so the listing is the walk reversed).
//!
//! The walk's order depends on the names' hashes, the table's size and the history of
//! insertions and removals (a removed entry leaves a tombstone that a later insertion may
//! reuse; the table grows when its occupied buckets, tombstones included, pass 15/16 of its
//! size and is rebuilt in place then). Found against qemu-storage-daemon 10.0.2 (GLib 2.74):
//! removing a child never shrinks or rebuilds the table; only an insertion into a never-used
//! bucket may resize it (grow, or shrink when fewer than a quarter of its buckets hold entries).
//! This is particular to children: a plain key removal from a GLib table does shrink it, as the
//! input visitor's table of leftover members shows (`qmpkit_server`'s `validate::ghash`, checked
//! against the same daemon with rounds that remove most keys).

use qmpkit_wire::ghash::{g_str_hash, is_real, MIN_SHIFT, PRIME_MOD, TOMBSTONE, UNUSED};

/// A model of one object's property table holding child names, each with a value `V`.
#[derive(Debug, Clone)]
pub struct HashOrder<V> {
    shift: u32,
    hashes: Vec<u32>,
    entries: Vec<Option<(Box<str>, V)>>,
    nnodes: usize,
    noccupied: usize,
}

impl<V: Copy> Default for HashOrder<V> {
    fn default() -> Self {
        HashOrder {
            shift: MIN_SHIFT,
            hashes: vec![UNUSED; 1 << MIN_SHIFT],
            entries: vec![None; 1 << MIN_SHIFT],
            nnodes: 0,
            noccupied: 0,
        }
    }
}

impl<V: Copy> HashOrder<V> {
    fn size(&self) -> usize {
        1 << self.shift
    }

    fn mask(&self) -> usize {
        self.size() - 1
    }

    fn index(&self, hash: u32) -> usize {
        (hash.wrapping_mul(11) % PRIME_MOD[self.shift as usize]) as usize
    }

    fn key_hash(key: &str) -> u32 {
        match g_str_hash(key) {
            h if is_real(h) => h,
            _ => 2,
        }
    }

    /// The bucket holding `key`, or where it would go (the first tombstone on its probe
    /// sequence, else the unused bucket ending it).
    fn lookup(&self, key: &str, hash: u32) -> usize {
        let mut i = self.index(hash);
        let mut step = 0;
        let mut tombstone = None;
        while self.hashes[i] != UNUSED {
            if self.hashes[i] == hash && self.entries[i].as_ref().is_some_and(|(k, _)| &**k == key)
            {
                return i;
            }
            if self.hashes[i] == TOMBSTONE && tombstone.is_none() {
                tombstone = Some(i);
            }
            step += 1;
            i = (i + step) & self.mask();
        }
        tombstone.unwrap_or(i)
    }

    pub fn insert(&mut self, key: &str, value: V) {
        let hash = Self::key_hash(key);
        let i = self.lookup(key, hash);
        let old = self.hashes[i];
        self.entries[i] = Some((key.into(), value));
        if is_real(old) {
            return;
        }
        self.hashes[i] = hash;
        self.nnodes += 1;
        if old == UNUSED {
            self.noccupied += 1;
            self.maybe_resize();
        }
    }

    pub fn remove(&mut self, key: &str) {
        let hash = Self::key_hash(key);
        let i = self.lookup(key, hash);
        if is_real(self.hashes[i]) {
            self.hashes[i] = TOMBSTONE;
            self.entries[i] = None;
            self.nnodes -= 1;
        }
    }

    fn maybe_resize(&mut self) {
        let size = self.size();
        let occ = self.noccupied;
        if (size > self.nnodes * 4 && size > 1 << MIN_SHIFT) || size <= occ + occ / 16 {
            self.resize();
        }
    }

    /// Rebuild in place at a size fitting the entries, relocating them in bucket order as
    /// GLib does (an entry evicted from its bucket is placed at once).
    fn resize(&mut self) {
        let old_size = self.size();
        let mut want = (self.nnodes as f64 * 1.333) as usize;
        let mut shift = 0;
        while want != 0 {
            want >>= 1;
            shift += 1;
        }
        self.shift = shift.max(MIN_SHIFT);
        let size = self.size();
        if size > old_size {
            self.hashes.resize(size, UNUSED);
            self.entries.resize(size, None);
        }
        let mut placed = vec![false; size.max(old_size)];
        for i in 0..old_size {
            let mut hash = self.hashes[i];
            if !is_real(hash) {
                self.hashes[i] = UNUSED;
                continue;
            }
            if placed[i] {
                continue;
            }
            self.hashes[i] = UNUSED;
            let mut entry = self.entries[i].take();
            loop {
                let mut j = self.index(hash);
                let mut step = 0;
                while placed[j] {
                    step += 1;
                    j = (j + step) & self.mask();
                }
                placed[j] = true;
                let replaced = std::mem::replace(&mut self.hashes[j], hash);
                let evicted = std::mem::replace(&mut self.entries[j], entry);
                if !is_real(replaced) {
                    break;
                }
                hash = replaced;
                entry = evicted;
            }
        }
        if size < old_size {
            self.hashes.truncate(size);
            self.entries.truncate(size);
        }
        self.noccupied = self.nnodes;
    }

    /// The values as QEMU lists them: the buckets walked, the result reversed.
    pub fn listed(&self) -> Vec<V> {
        self.entries
            .iter()
            .rev()
            .flatten()
            .map(|(_, v)| *v)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(h: &HashOrder<u32>, names: &[&str]) -> Vec<String> {
        h.listed()
            .iter()
            .map(|&i| names[i as usize].to_string())
            .collect()
    }

    // Orders qemu-storage-daemon 10.0.2 listed for `qom-list /chardevs` after the same
    // insertions (its monitor's `mon0` first).
    #[test]
    fn insertion_orders_as_the_daemon_lists_them() {
        let names = ["mon0", "c0", "char48", "char72", "char80"];
        let mut h = HashOrder::default();
        let want: [&[&str]; 5] = [
            &["mon0"],
            &["c0", "mon0"],
            &["c0", "mon0", "char48"],
            &["c0", "mon0", "char72", "char48"],
            &["c0", "mon0", "char72", "char48", "char80"],
        ];
        for (i, n) in names.iter().enumerate() {
            h.insert(n, i as u32);
            assert_eq!(listed(&h, &names), want[i]);
        }
    }

    // A table grown to 16 buckets keeps them when entries are removed: the daemon listed
    // `serial14 mon0 char392` (the 16-bucket order), not the 8-bucket one.
    #[test]
    fn removal_keeps_the_size() {
        let names = ["mon0", "char392", "serial14", "a1", "a2", "a3", "a4", "a5"];
        let mut h = HashOrder::default();
        for (i, n) in names.iter().enumerate() {
            h.insert(n, i as u32);
        }
        assert_eq!(h.size(), 16);
        for n in &names[3..] {
            h.remove(n);
        }
        assert_eq!(h.size(), 16);
        assert_eq!(listed(&h, &names), ["serial14", "mon0", "char392"]);
    }

    #[test]
    fn string_hash_is_glibs() {
        assert_eq!(g_str_hash(""), 5381);
        assert_eq!(g_str_hash("mon0"), 2090515295);
        assert_eq!(g_str_hash("c0"), 5863224);
    }
}
