//! The transcripts' byte lines, written as Python's `repr` of a bytes object.

/// Bytes from Python's `repr` of a bytes object (`b'…'` or `b"…"`), and what follows the
/// closing quote. `None` when the text is not such a repr.
pub fn unrepr(s: &str) -> Option<(Vec<u8>, &str)> {
    let s = s.strip_prefix('b')?;
    let q = s.chars().next()?;
    if q != '\'' && q != '"' {
        return None;
    }
    let body = &s[1..];
    let bytes = body.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c == q as u8 {
            return Some((out, &body[i + 1..]));
        }
        if c == b'\\' {
            let e = *bytes.get(i + 1)?;
            i += 2;
            match e {
                b'n' => out.push(b'\n'),
                b'r' => out.push(b'\r'),
                b't' => out.push(b'\t'),
                b'\\' => out.push(b'\\'),
                b'\'' => out.push(b'\''),
                b'"' => out.push(b'"'),
                b'x' => {
                    let h = std::str::from_utf8(bytes.get(i..i + 2)?).ok()?;
                    out.push(u8::from_str_radix(h, 16).ok()?);
                    i += 2;
                }
                _ => return None,
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::unrepr;

    #[test]
    fn what_follows_and_what_is_refused() {
        assert_eq!(unrepr(r"b'\t\''"), Some((b"\t'".to_vec(), "")));
        assert_eq!(unrepr("b'a' ... b'b'").map(|x| x.1), Some(" ... b'b'"));
        assert_eq!(unrepr("'a'"), None);
        assert_eq!(unrepr("bxax"), None);
        assert_eq!(unrepr("b'unterminated"), None);
    }
}
