//! QAPI names as C identifiers: the mapping QEMU uses to detect clashes
//! between member names that differ only in `-` / `.` / `_`.

/// Words that `c_name` protects with a `q_` prefix (C89, C99, C11, GCC,
/// C++ keywords and a few namespace polluters).
const PROTECTED: &[&str] = &[
    // C89
    "auto",
    "break",
    "case",
    "char",
    "const",
    "continue",
    "default",
    "do",
    "double",
    "else",
    "enum",
    "extern",
    "float",
    "for",
    "goto",
    "if",
    "int",
    "long",
    "register",
    "return",
    "short",
    "signed",
    "sizeof",
    "static",
    "struct",
    "switch",
    "typedef",
    "union",
    "unsigned",
    "void",
    "volatile",
    "while", // C99
    "inline",
    "restrict",
    "_Bool",
    "_Complex",
    "_Imaginary", // C11
    "_Alignas",
    "_Alignof",
    "_Atomic",
    "_Generic",
    "_Noreturn",
    "_Static_assert",
    "_Thread_local", // GCC
    "asm",
    "typeof", // C++
    "bool",
    "catch",
    "class",
    "const_cast",
    "delete",
    "dynamic_cast",
    "explicit",
    "false",
    "friend",
    "mutable",
    "namespace",
    "new",
    "operator",
    "private",
    "protected",
    "public",
    "reinterpret_cast",
    "static_cast",
    "template",
    "this",
    "throw",
    "true",
    "try",
    "typeid",
    "typename",
    "using",
    "virtual",
    "wchar_t",
    "and",
    "and_eq",
    "bitand",
    "bitor",
    "compl",
    "not",
    "not_eq",
    "or",
    "or_eq",
    "xor",
    "xor_eq", // pollution
    "unix",
    "errno",
    "mips",
    "sparc",
    "i386",
    "linux",
];

/// The C identifier QEMU's generator derives from a QAPI name: every
/// character outside `[A-Za-z0-9_]` becomes `_`, and reserved words or
/// names starting with a digit get a `q_` prefix.
pub fn c_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 2);
    for ch in name.chars() {
        if ch.is_ascii_alphanumeric() || ch == '_' {
            out.push(ch);
        } else {
            out.push('_');
        }
    }
    let digit = out.chars().next().is_some_and(|c| c.is_ascii_digit());
    if digit || PROTECTED.contains(&out.as_str()) {
        out.insert_str(0, "q_");
    }
    out
}

fn map_char(ch: char) -> char {
    if ch.is_ascii_alphanumeric() || ch == '_' {
        ch
    } else {
        '_'
    }
}

fn protected(name: &str) -> bool {
    let b = name.as_bytes();
    if b.first().is_some_and(u8::is_ascii_digit) {
        return true;
    }
    // Every protected word is 2 to 16 ASCII characters long.
    if b.len() < 2 || b.len() > 16 {
        return false;
    }
    let mut buf = [0u8; 16];
    for (d, c) in buf.iter_mut().zip(b) {
        *d = if c.is_ascii_alphanumeric() || *c == b'_' {
            *c
        } else {
            b'_'
        };
    }
    is_protected_word(&buf[..b.len()])
}

/// `PROTECTED`, as a match the compiler turns into a length switch.
fn is_protected_word(w: &[u8]) -> bool {
    matches!(
        w,
        b"auto"
            | b"break"
            | b"case"
            | b"char"
            | b"const"
            | b"continue"
            | b"default"
            | b"do"
            | b"double"
            | b"else"
            | b"enum"
            | b"extern"
            | b"float"
            | b"for"
            | b"goto"
            | b"if"
            | b"int"
            | b"long"
            | b"register"
            | b"return"
            | b"short"
            | b"signed"
            | b"sizeof"
            | b"static"
            | b"struct"
            | b"switch"
            | b"typedef"
            | b"union"
            | b"unsigned"
            | b"void"
            | b"volatile"
            | b"while"
            | b"inline"
            | b"restrict"
            | b"_Bool"
            | b"_Complex"
            | b"_Imaginary"
            | b"_Alignas"
            | b"_Alignof"
            | b"_Atomic"
            | b"_Generic"
            | b"_Noreturn"
            | b"_Static_assert"
            | b"_Thread_local"
            | b"asm"
            | b"typeof"
            | b"bool"
            | b"catch"
            | b"class"
            | b"const_cast"
            | b"delete"
            | b"dynamic_cast"
            | b"explicit"
            | b"false"
            | b"friend"
            | b"mutable"
            | b"namespace"
            | b"new"
            | b"operator"
            | b"private"
            | b"protected"
            | b"public"
            | b"reinterpret_cast"
            | b"static_cast"
            | b"template"
            | b"this"
            | b"throw"
            | b"true"
            | b"try"
            | b"typeid"
            | b"typename"
            | b"using"
            | b"virtual"
            | b"wchar_t"
            | b"and"
            | b"and_eq"
            | b"bitand"
            | b"bitor"
            | b"compl"
            | b"not"
            | b"not_eq"
            | b"or"
            | b"or_eq"
            | b"xor"
            | b"xor_eq"
            | b"unix"
            | b"errno"
            | b"mips"
            | b"sparc"
            | b"i386"
            | b"linux"
    )
}

/// The characters of `c_name(name)`, without allocating.
fn c_name_chars(name: &str) -> impl Iterator<Item = char> + '_ {
    let prefix = if protected(name) { "q_" } else { "" };
    prefix.chars().chain(name.chars().map(map_char))
}

/// `c_name(a) == c_name(b)`, without allocating.
pub fn c_name_eq(a: &str, b: &str) -> bool {
    c_name_chars(a).eq(c_name_chars(b))
}

/// `map_char` on bytes.
const C_MAP: [u8; 256] = {
    let mut t = [b'_'; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        if b.is_ascii_alphanumeric() || b == b'_' {
            t[c] = b;
        }
        c += 1;
    }
    t
};

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

#[inline]
fn fnv_step(h: u64, c: u64) -> u64 {
    (h ^ c).wrapping_mul(0x0100_0000_01b3)
}

/// The FNV hashes of the protected words, sorted: a quick "certainly
/// not protected" before the exact comparison.
const PROTECTED_HASHES: [u64; PROTECTED.len()] = {
    let mut t = [0u64; PROTECTED.len()];
    let mut i = 0;
    while i < PROTECTED.len() {
        let w = PROTECTED[i].as_bytes();
        let mut h = FNV_OFFSET;
        let mut j = 0;
        while j < w.len() {
            h = (h ^ w[j] as u64).wrapping_mul(0x0100_0000_01b3);
            j += 1;
        }
        t[i] = h;
        i += 1;
    }
    // Insertion sort.
    let mut i = 1;
    while i < t.len() {
        let mut j = i;
        while j > 0 && t[j - 1] > t[j] {
            let x = t[j];
            t[j] = t[j - 1];
            t[j - 1] = x;
            j -= 1;
        }
        i += 1;
    }
    t
};

/// A hash of `c_name(name)` (equal C names hash equally).
pub fn c_name_hash(name: &str) -> u64 {
    let b = name.as_bytes();
    if !b.is_ascii() {
        return c_name_chars(name).fold(FNV_OFFSET, |h, ch| fnv_step(h, ch as u64));
    }
    // The same hash, byte by byte (an ASCII byte is its char); the
    // mapped bytes are kept to look for a protected word.
    let mut buf = [0u8; 16];
    let mut h = FNV_OFFSET;
    for (i, &c) in b.iter().enumerate() {
        let m = C_MAP[usize::from(c)];
        if let Some(slot) = buf.get_mut(i) {
            *slot = m;
        }
        h = fnv_step(h, u64::from(m));
    }
    let prefixed = b.first().is_some_and(u8::is_ascii_digit)
        || (b.len() >= 2
            && b.len() <= 16
            && PROTECTED_HASHES.binary_search(&h).is_ok()
            && is_protected_word(&buf[..b.len()]));
    if prefixed {
        h = fnv_step(fnv_step(FNV_OFFSET, u64::from(b'q')), u64::from(b'_'));
        for &c in b {
            h = fnv_step(h, u64::from(C_MAP[usize::from(c)]));
        }
    }
    h
}

#[cfg(test)]
mod tests {
    #[test]
    fn protected_words_hash_with_prefix() {
        for w in super::PROTECTED {
            assert_eq!(c_name_hash(w), c_name_hash(&format!("q_{w}")), "{w}");
            assert_ne!(c_name_hash(w), c_name_hash(&format!("{w}x")), "{w}");
        }
        assert_eq!(c_name_hash("1x"), c_name_hash("q_1x"));
        assert_ne!(c_name_hash("unixx"), c_name_hash("q_unixx"));
    }

    #[test]
    fn protected_match_agrees_with_list() {
        for w in super::PROTECTED {
            assert!(super::is_protected_word(w.as_bytes()), "{w}");
        }
        assert!(!super::is_protected_word(b"unixx"));
    }

    use super::{c_name, c_name_eq, c_name_hash};

    #[test]
    fn eq_and_hash_agree_with_c_name() {
        let names = [
            "a-b", "a_b", "a.b", "unix", "q_unix", "q-unix", "wchar-t", "wchar_t", "1x", "q_1x",
            "é", "_",
        ];
        for a in names {
            for b in names {
                assert_eq!(c_name_eq(a, b), c_name(a) == c_name(b), "{a} {b}");
                if c_name(a) == c_name(b) {
                    assert_eq!(c_name_hash(a), c_name_hash(b));
                }
            }
        }
    }

    #[test]
    fn mapping() {
        assert_eq!(c_name("a-b.c"), "a_b_c");
        assert_eq!(c_name("wchar-t"), "q_wchar_t");
        assert_eq!(c_name("unix"), "q_unix");
        assert_eq!(c_name("1x"), "q_1x");
        assert_eq!(c_name("__org.qemu_x-Enum"), "__org_qemu_x_Enum");
        assert_eq!(c_name(""), "");
    }
}
