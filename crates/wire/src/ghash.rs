//! GLib's hash table as QEMU's objects use it (a QOM object's properties, the keys a visit
//! has not taken yet): its string hash and the constants of its open addressing, shared by
//! the models that reproduce the order in which such a table holds its keys.

/// GLib's `g_str_hash` (djb2 over *signed* chars).
pub fn g_str_hash(name: &str) -> u32 {
    let mut h: u32 = 5381;
    for b in name.as_bytes() {
        let c = *b as i8 as i32 as u32;
        h = (h << 5).wrapping_add(h).wrapping_add(c);
    }
    h
}

/// The modulus GLib uses for a table of `1 << shift` buckets.
pub const PRIME_MOD: [u32; 32] = [
    1, 2, 3, 7, 13, 31, 61, 127, 251, 509, 1021, 2039, 4093, 8191, 16381, 32749, 65521, 131071,
    262139, 524287, 1048573, 2097143, 4194301, 8388593, 16777213, 33554393, 67108859, 134217689,
    268435399, 536870909, 1073741789, 2147483647,
];
/// The smallest table's shift (8 buckets).
pub const MIN_SHIFT: u32 = 3;
/// A bucket's hash when it never held an entry, and when its entry was removed.
pub const UNUSED: u32 = 0;
pub const TOMBSTONE: u32 = 1;

/// Whether a bucket's hash is an entry's.
pub fn is_real(h: u32) -> bool {
    h >= 2
}
