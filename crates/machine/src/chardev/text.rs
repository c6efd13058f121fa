//! The two encodings of `DataFormat` as QEMU's ring buffer commands apply
//! them: base64 decoded the way GLib decodes it (after QEMU's check of the
//! characters), base64 encoded with padding, and bytes read back as text
//! the way QEMU's JSON writer turns a C string into JSON text.

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// The error QEMU gives for base64 text with a character outside the
/// alphabet, `=` and newline.
pub const INVALID_BASE64: &str = "Base64 data contains invalid characters";

fn rank(c: u8) -> Option<u32> {
    match c {
        b'A'..=b'Z' => Some((c - b'A') as u32),
        b'a'..=b'z' => Some((c - b'a') as u32 + 26),
        b'0'..=b'9' => Some((c - b'0') as u32 + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        // Padding counts as a digit of value zero; whether its bytes are
        // kept depends on where it stands in the group.
        b'=' => Some(0),
        _ => None,
    }
}

/// Decode `text`. Only the alphabet, `=` and `\n` are accepted; newlines
/// are skipped. Digits are taken four at a time: a group gives three
/// bytes, less one for each of its last two digits that is `=`; a trailing
/// incomplete group gives nothing (what the live daemon does with `aGVsbG8`
/// is write `hel`).
pub fn base64_decode(text: &str) -> Result<Vec<u8>, &'static str> {
    let bytes = text.as_bytes();
    if bytes.iter().any(|&c| c != b'\n' && rank(c).is_none()) {
        return Err(INVALID_BASE64);
    }
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    let (mut v, mut n) = (0u32, 0u8);
    let mut last = 0u8;
    for &c in bytes {
        let Some(r) = rank(c) else { continue };
        let prev = last;
        last = c;
        v = (v << 6) | r;
        n += 1;
        if n == 4 {
            out.push((v >> 16) as u8);
            if prev != b'=' {
                out.push((v >> 8) as u8);
            }
            if last != b'=' {
                out.push(v as u8);
            }
            v = 0;
            n = 0;
        }
    }
    Ok(out)
}

/// Encode `data` as padded base64 on one line.
pub fn base64_encode(data: &[u8]) -> String {
    let mut s = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let v = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                s.push(ALPHABET[(v >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}

/// The bytes a utf8 `ringbuf-write` puts into the buffer: the string's
/// UTF-8, with U+0000 as the two bytes C0 80 (QEMU's JSON parser keeps
/// strings NUL-free that way).
pub fn utf8_bytes(s: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    for &b in s.as_bytes() {
        if b == 0 {
            out.extend_from_slice(&[0xC0, 0x80]);
        } else {
            out.push(b);
        }
    }
    out
}

/// Bytes read with the utf8 format, as text: they end at the first NUL
/// byte; C0 80 is U+0000; every ill-formed sequence (a stray continuation
/// byte, a bad lead byte, a sequence cut short, an overlong form, a
/// surrogate, a code point beyond U+10FFFF or a noncharacter) becomes one
/// U+FFFD. Sequences of five and six bytes are read as units.
pub fn bytes_to_text(data: &[u8]) -> String {
    let end = data.iter().position(|&b| b == 0).unwrap_or(data.len());
    let data = &data[..end];
    let mut out = String::with_capacity(data.len());
    let mut i = 0;
    while i < data.len() {
        let b = data[i];
        i += 1;
        let (len, init) = match b {
            0x00..=0x7F => {
                out.push(b as char);
                continue;
            }
            0xC0..=0xDF => (2, (b & 0x1F) as u32),
            0xE0..=0xEF => (3, (b & 0x0F) as u32),
            0xF0..=0xF7 => (4, (b & 0x07) as u32),
            0xF8..=0xFB => (5, (b & 0x03) as u32),
            0xFC..=0xFD => (6, (b & 0x01) as u32),
            _ => {
                // A continuation byte without a lead, or FE/FF.
                out.push('\u{FFFD}');
                continue;
            }
        };
        let mut cp = init;
        let mut complete = true;
        for _ in 1..len {
            match data.get(i) {
                Some(&c) if c & 0xC0 == 0x80 => {
                    cp = (cp << 6) | (c & 0x3F) as u32;
                    i += 1;
                }
                _ => {
                    complete = false;
                    break;
                }
            }
        }
        let min = match len {
            2 => 0x80,
            3 => 0x800,
            4 => 0x1_0000,
            5 => 0x20_0000,
            _ => 0x400_0000,
        };
        let ch = if !complete {
            None
        } else if len == 2 && cp == 0 {
            Some('\0')
        } else if cp < min || (0xFDD0..=0xFDEF).contains(&cp) || cp & 0xFFFE == 0xFFFE {
            None
        } else {
            char::from_u32(cp)
        };
        out.push(ch.unwrap_or('\u{FFFD}'));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(s: &str) -> Vec<u8> {
        base64_decode(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn base64_as_the_daemon_decodes_it() {
        // Each pair: what was written, what reading it back in base64 gave.
        for (input, want) in [
            ("aGVsbG8=", "aGVsbG8="),
            ("aGVsbG8", "aGVs"),
            ("aA==aGVs", "aGhlbA=="),
            ("a", ""),
            ("aGV", ""),
            ("aGVs\nbG8=", "aGVsbG8="),
            ("=", ""),
            ("====", "AA=="),
            ("aGVsbG8==", "aGVsbG8="),
            ("aGVsbG8=x", "aGVsbG8="),
            ("aGVsb===", "aGVsbA=="),
            ("YQ=Y", "YRg="),
            ("", ""),
        ] {
            assert_eq!(base64_encode(&dec(input)), want, "{input:?}");
        }
        for bad in [
            "not base64!!",
            "aGVs bG8=",
            "aGVs\rbG8=",
            "aGVs\tbG8=",
            "-_8=",
            "a\0",
        ] {
            assert_eq!(base64_decode(bad), Err(INVALID_BASE64), "{bad:?}");
        }
    }

    #[test]
    fn text_as_the_daemon_writes_it() {
        for (bytes, want) in [
            (&b"\xff"[..], "\u{FFFD}"),
            (b"\xff\x81", "\u{FFFD}\u{FFFD}"),
            (b"\xe2\x82", "\u{FFFD}"),
            (b"\xe2\x82A", "\u{FFFD}A"),
            (b"\xed\xa0\x80", "\u{FFFD}"),
            (b"\xf4\x90\x80\x80", "\u{FFFD}"),
            (b"\xc1\xbf", "\u{FFFD}"),
            (b"\xe0\x80\x80", "\u{FFFD}"),
            (b"\xf0\x9f\x98\x80", "\u{1F600}"),
            (b"\xc0\x80x", "\0x"),
            (b"A\x80B", "A\u{FFFD}B"),
            (b"\xf8\x88\x80\x80\x80", "\u{FFFD}"),
            (b"\xfc\x80\x80\x80\x80\x80", "\u{FFFD}"),
            (b"\xfe", "\u{FFFD}"),
            (b"\xc2", "\u{FFFD}"),
            (b"\x7f\x01\x1f", "\x7f\x01\x1f"),
            (b"\xef\xbf\xbf", "\u{FFFD}"),
            (b"\xef\xbf\xbe", "\u{FFFD}"),
            (b"\xef\xb7\x90", "\u{FFFD}"),
            (b"\xf0\x9f\xbf\xbe", "\u{FFFD}"),
            (b"\x00\x01\x02", ""),
            (b"h\xc3\xa9l", "h\u{e9}l"),
        ] {
            assert_eq!(bytes_to_text(bytes), want, "{bytes:x?}");
        }
        assert_eq!(utf8_bytes("a\0b"), b"a\xc0\x80b");
    }
}
