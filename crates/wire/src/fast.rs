//! The fast path: one pass over a complete, plain JSON object or array.
//!
//! It reads standard JSON (double-quoted strings, no QEMU extension) into a
//! value and *refuses* everything else, leaving it to the exact path, which
//! then reads the same bytes from the same point. Refusal is always safe;
//! accepting must give exactly what QEMU's parser gives. Tests and the fuzz
//! target check that both paths agree.

use serde_json::{Map, Value};

/// Deepest nesting the fast path reads itself (deeper goes to the exact path).
const MAX_DEPTH: usize = 128;

pub(crate) enum Fast {
    /// A value and the number of bytes it took.
    Value(Value, usize),
    /// A valid beginning; the end is missing.
    Incomplete,
    /// Something the exact path must read.
    Refused,
}

/// Whether any byte of `x` is `"`, `\\`, below 0x20 or above 0x7F.
#[inline]
fn special_in_word(x: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let has_zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGH;
    let below_20 = x.wrapping_sub(ONES * 0x20) & !x & HIGH;
    let quote = has_zero(x ^ (ONES * u64::from(b'"')));
    let backslash = has_zero(x ^ (ONES * u64::from(b'\\')));
    (below_20 | quote | backslash | (x & HIGH)) != 0
}

enum Stop {
    Eof,
    Refused,
}

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
    tokens: usize,
}

type R<T> = Result<T, Stop>;

/// Read one object or array at the start of `data`.
pub(crate) fn parse(data: &[u8]) -> Fast {
    let mut r = Reader {
        data,
        pos: 0,
        tokens: 0,
    };
    match r.value(0) {
        Ok(v) => {
            if r.tokens > crate::json::MAX_TOKEN_COUNT || r.pos + 1 >= crate::json::MAX_TOKEN_SIZE {
                return Fast::Refused;
            }
            Fast::Value(v, r.pos)
        }
        Err(Stop::Eof) => Fast::Incomplete,
        Err(Stop::Refused) => Fast::Refused,
    }
}

impl Reader<'_> {
    #[inline]
    fn skip_ws(&mut self) -> R<u8> {
        while let Some(&b) = self.data.get(self.pos) {
            match b {
                b' ' | b'\n' | b'\r' | b'\t' => self.pos += 1,
                _ => return Ok(b),
            }
        }
        Err(Stop::Eof)
    }

    fn value(&mut self, depth: usize) -> R<Value> {
        let b = self.skip_ws()?;
        self.tokens += 1;
        match b {
            b'{' => self.object(depth + 1),
            b'[' => self.array(depth + 1),
            b'"' => Ok(Value::String(self.string()?)),
            b'-' | b'0'..=b'9' => self.number(),
            b't' => self.keyword(b"true", Value::Bool(true)),
            b'f' => self.keyword(b"false", Value::Bool(false)),
            b'n' => self.keyword(b"null", Value::Null),
            _ => Err(Stop::Refused),
        }
    }

    /// Step into the object or array at `pos`; true when it is empty (and stepped over).
    fn open(&mut self, depth: usize, close: u8) -> R<bool> {
        if depth > MAX_DEPTH {
            return Err(Stop::Refused);
        }
        self.pos += 1;
        if self.skip_ws()? == close {
            self.pos += 1;
            self.tokens += 1;
            return Ok(true);
        }
        Ok(false)
    }

    fn object(&mut self, depth: usize) -> R<Value> {
        let mut map = Map::new();
        if self.open(depth, b'}')? {
            return Ok(Value::Object(map));
        }
        loop {
            if self.skip_ws()? != b'"' {
                return Err(Stop::Refused);
            }
            let key = self.string()?;
            if self.skip_ws()? != b':' {
                return Err(Stop::Refused);
            }
            self.pos += 1;
            let value = self.value(depth)?;
            if map.insert(key, value).is_some() {
                return Err(Stop::Refused); // duplicate key: QEMU's error
            }
            self.tokens += 3; // key, colon, comma or brace
            match self.skip_ws()? {
                b',' => self.pos += 1,
                b'}' => {
                    self.pos += 1;
                    return Ok(Value::Object(map));
                }
                _ => return Err(Stop::Refused),
            }
        }
    }

    fn array(&mut self, depth: usize) -> R<Value> {
        let mut list = Vec::new();
        if self.open(depth, b']')? {
            return Ok(Value::Array(list));
        }
        loop {
            list.push(self.value(depth)?);
            self.tokens += 1;
            match self.skip_ws()? {
                b',' => self.pos += 1,
                b']' => {
                    self.pos += 1;
                    return Ok(Value::Array(list));
                }
                _ => return Err(Stop::Refused),
            }
        }
    }

    /// The end of the plain ASCII run at `i` in a string, read eight bytes at a time (it stops
    /// at the word holding a special byte).
    #[inline]
    fn plain_run(&self, mut i: usize) -> usize {
        while let Some(chunk) = self.data.get(i..i + 8) {
            let mut w = [0u8; 8];
            w.copy_from_slice(chunk);
            if special_in_word(u64::from_le_bytes(w)) {
                break;
            }
            i += 8;
        }
        i
    }

    /// A double-quoted string at `pos`.
    fn string(&mut self) -> R<String> {
        let start = self.pos + 1;
        let mut i = self.plain_run(start);
        loop {
            let Some(&b) = self.data.get(i) else {
                return self.string_tail_eof(i);
            };
            match b {
                b'"' => {
                    let s = std::str::from_utf8(&self.data[start..i]).map_err(|_| Stop::Refused)?;
                    self.pos = i + 1;
                    return Ok(s.to_owned());
                }
                0x20..=0x7F if b != b'\\' => i += 1,
                _ => break,
            }
        }
        // Escapes or non-ASCII: the slower loop.
        let mut out = String::from_utf8(self.data[start..i].to_vec()).map_err(|_| Stop::Refused)?;
        loop {
            let Some(&b) = self.data.get(i) else {
                return self.string_tail_eof(i);
            };
            match b {
                b'"' => {
                    self.pos = i + 1;
                    return Ok(out);
                }
                b'\\' => {
                    let Some(&e) = self.data.get(i + 1) else {
                        return Err(Stop::Eof);
                    };
                    i += 2;
                    match e {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'u' => {
                            let cp = self.hex4(i)?;
                            i += 4;
                            let cp = if (0xD800..0xDC00).contains(&cp) {
                                match (self.data.get(i), self.data.get(i + 1)) {
                                    (Some(b'\\'), Some(b'u')) => {}
                                    (None, _) | (Some(b'\\'), None) => return Err(Stop::Eof),
                                    _ => return Err(Stop::Refused),
                                }
                                let lo = self.hex4(i + 2)?;
                                if !(0xDC00..0xE000).contains(&lo) {
                                    return Err(Stop::Refused);
                                }
                                i += 6;
                                0x10000 + ((cp & 0x3FF) << 10) + (lo & 0x3FF)
                            } else {
                                cp
                            };
                            match char::from_u32(cp) {
                                Some(c) if crate::json::is_valid_codepoint(cp) => out.push(c),
                                _ => return Err(Stop::Refused),
                            }
                        }
                        _ => return Err(Stop::Refused),
                    }
                }
                0x20..=0x7F => {
                    out.push(b as char);
                    i += 1;
                }
                0x80..=0xFD => {
                    // One UTF-8 sequence, standard and not a noncharacter.
                    let len = match b {
                        0xC2..=0xDF => 2,
                        0xE0..=0xEF => 3,
                        0xF0..=0xF4 => 4,
                        _ => return Err(Stop::Refused),
                    };
                    let Some(seq) = self.data.get(i..i + len) else {
                        // Cut short: wait only if what is there may continue.
                        if self.data[i + 1..]
                            .iter()
                            .all(|&c| (0x80..0xC0).contains(&c))
                        {
                            return self.string_tail_eof(i);
                        }
                        return Err(Stop::Refused);
                    };
                    let s = std::str::from_utf8(seq).map_err(|_| Stop::Refused)?;
                    let c = s.chars().next().ok_or(Stop::Refused)?;
                    if !crate::json::is_valid_codepoint(c as u32) {
                        return Err(Stop::Refused);
                    }
                    out.push(c);
                    i += len;
                }
                _ => return Err(Stop::Refused),
            }
        }
    }

    /// The input ends inside a string: incomplete, unless QEMU's lexer would
    /// already have complained about a byte in it (the exact path says what).
    fn string_tail_eof<T>(&self, _i: usize) -> R<T> {
        let rest = &self.data[self.pos..];
        if rest.iter().any(|&b| !(0x20..0xFE).contains(&b)) {
            Err(Stop::Refused)
        } else {
            Err(Stop::Eof)
        }
    }

    fn refuse_or_eof<T>(&self, need: usize) -> R<T> {
        if need > self.data.len() {
            Err(Stop::Eof)
        } else {
            Err(Stop::Refused)
        }
    }

    /// Four hex digits at `at`; the input may only end early if all that is there is hex.
    fn hex4(&self, at: usize) -> R<u32> {
        let mut cp = 0;
        for k in 0..4 {
            let Some(&d) = self.data.get(at + k) else {
                return Err(Stop::Eof);
            };
            cp = cp * 16 + (d as char).to_digit(16).ok_or(Stop::Refused)?;
        }
        Ok(cp)
    }

    /// The extent of a number at `pos` in QEMU's grammar: its end, where its integer digits
    /// start and end, and whether it has a fraction or an exponent.
    fn number_span(&self) -> R<(usize, usize, usize, bool)> {
        let start = self.pos;
        let d = self.data;
        let mut i = start;
        if d[i] == b'-' {
            i += 1;
        }
        let int_start = i;
        match d.get(i) {
            None => return Err(Stop::Eof),
            Some(b'0') => i += 1,
            Some(b'1'..=b'9') => {
                while d.get(i).is_some_and(u8::is_ascii_digit) {
                    i += 1;
                }
            }
            Some(_) => return Err(Stop::Refused),
        }
        let int_end = i;
        if d[int_start] == b'0' && matches!(d.get(i), Some(b'e' | b'E')) {
            // QEMU's lexer ends the number at a leading zero's exponent.
            return Err(Stop::Refused);
        }
        let mut float = false;
        if d.get(i) == Some(&b'.') {
            float = true;
            i += 1;
            let s = i;
            while d.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            if i == s {
                return self.refuse_or_eof(i + 1);
            }
        }
        if matches!(d.get(i), Some(b'e' | b'E')) {
            float = true;
            i += 1;
            if matches!(d.get(i), Some(b'+' | b'-')) {
                i += 1;
            }
            let s = i;
            while d.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            if i == s {
                return self.refuse_or_eof(i + 1);
            }
        }
        // The number must be followed by something, and QEMU's lexer refuses
        // a digit right after a leading zero.
        match d.get(i) {
            None => Err(Stop::Eof),
            Some(b'0'..=b'9') => Err(Stop::Refused),
            Some(_) => Ok((i, int_start, int_end, float)),
        }
    }

    fn number(&mut self) -> R<Value> {
        let start = self.pos;
        let d = self.data;
        let (i, int_start, int_end, float) = self.number_span()?;
        self.pos = i;
        let text = std::str::from_utf8(&d[start..i]).map_err(|_| Stop::Refused)?;
        if !float && int_end - int_start <= 18 {
            // Fits in i64 whatever the digits.
            let mut n: i64 = 0;
            for &c in &d[int_start..int_end] {
                n = n * 10 + i64::from(c - b'0');
            }
            return Ok(Value::from(if start == int_start { n } else { -n }));
        }
        let v = crate::json::parse_number(text.as_bytes(), !float);
        if v.as_f64().is_some_and(|f| f.abs() == f64::MAX) {
            // Beyond a double's range, or the largest double: the exact path tells which.
            return Err(Stop::Refused);
        }
        Ok(v)
    }

    fn keyword(&mut self, word: &[u8], v: Value) -> R<Value> {
        self.keyword_end(word)?;
        Ok(v)
    }

    /// Step over `word` at `pos`.
    fn keyword_end(&mut self, word: &[u8]) -> R<()> {
        let end = self.pos + word.len();
        match self.data.get(self.pos..end) {
            Some(w) if w == word => {}
            Some(_) => return Err(Stop::Refused),
            None => {
                return if word.starts_with(&self.data[self.pos..]) {
                    Err(Stop::Eof)
                } else {
                    Err(Stop::Refused)
                };
            }
        }
        // QEMU reads a whole run of lowercase letters as one keyword.
        match self.data.get(end) {
            None => Err(Stop::Eof),
            Some(b'a'..=b'z') => Err(Stop::Refused),
            Some(_) => {
                self.pos = end;
                Ok(())
            }
        }
    }
}

/// What [`ObjectScanner::scan`] found at the start of its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scanned {
    /// A complete object QEMU reads exactly as standard JSON, this many bytes long.
    Object(usize),
    /// A valid beginning; the end is missing.
    Incomplete,
    /// Something to leave to [`crate::JsonStreamer`].
    Refused,
}

/// Reads a message's outline without building it: the extent of a complete top-level object
/// and the byte ranges of its members, for code that passes messages on as they are (a proxy
/// rewriting one member). It accepts a conservative subset of what QEMU accepts (no `\u`
/// escape, no byte above 0x7F, no duplicate or escaped key at any depth) and refuses the rest,
/// which [`crate::JsonStreamer`] then reads exactly; it keeps its buffers between calls.
#[derive(Debug, Default)]
pub struct ObjectScanner {
    /// The top-level members of the last object scanned: key (without quotes) and value.
    pub members: Vec<(std::ops::Range<usize>, std::ops::Range<usize>)>,
    keys: Vec<(usize, usize)>,
}

impl ObjectScanner {
    pub fn new() -> ObjectScanner {
        ObjectScanner::default()
    }

    /// Scan the object at the start of `data` (which must begin with `{`).
    pub fn scan(&mut self, data: &[u8]) -> Scanned {
        self.members.clear();
        self.keys.clear();
        if data.first() != Some(&b'{') {
            return Scanned::Refused;
        }
        let mut r = Reader {
            data,
            pos: 0,
            tokens: 0,
        };
        match r.skip_object(1, &mut self.keys, Some(&mut self.members)) {
            Ok(()) => {
                if r.tokens > crate::json::MAX_TOKEN_COUNT
                    || r.pos + 1 >= crate::json::MAX_TOKEN_SIZE
                {
                    return Scanned::Refused;
                }
                Scanned::Object(r.pos)
            }
            Err(Stop::Eof) => Scanned::Incomplete,
            Err(Stop::Refused) => Scanned::Refused,
        }
    }
}

type Members<'m> = Option<&'m mut Vec<(std::ops::Range<usize>, std::ops::Range<usize>)>>;

impl Reader<'_> {
    /// Step over a value; `keys` holds the keys of the objects being read, for duplicates.
    fn skip_value(&mut self, depth: usize, keys: &mut Vec<(usize, usize)>) -> R<()> {
        let b = self.skip_ws()?;
        self.tokens += 1;
        match b {
            b'{' => self.skip_object(depth + 1, keys, None),
            b'[' => self.skip_array(depth + 1, keys),
            b'"' => self.skip_string().map(|_| ()),
            b'-' | b'0'..=b'9' => {
                self.pos = self.number_span()?.0;
                Ok(())
            }
            b't' => self.keyword_end(b"true"),
            b'f' => self.keyword_end(b"false"),
            b'n' => self.keyword_end(b"null"),
            _ => Err(Stop::Refused),
        }
    }

    fn skip_object(
        &mut self,
        depth: usize,
        keys: &mut Vec<(usize, usize)>,
        mut members: Members<'_>,
    ) -> R<()> {
        if self.open(depth, b'}')? {
            return Ok(());
        }
        let mark = keys.len();
        loop {
            if self.skip_ws()? != b'"' {
                return Err(Stop::Refused);
            }
            let (ks, ke, escaped) = self.skip_string()?;
            let key = &self.data[ks..ke];
            if escaped || keys[mark..].iter().any(|&(s, e)| &self.data[s..e] == key) {
                return Err(Stop::Refused); // a duplicate is QEMU's error
            }
            keys.push((ks, ke));
            if self.skip_ws()? != b':' {
                return Err(Stop::Refused);
            }
            self.pos += 1;
            self.skip_ws()?;
            let vstart = self.pos;
            self.skip_value(depth, keys)?;
            if let Some(m) = members.as_deref_mut() {
                m.push((ks..ke, vstart..self.pos));
            }
            self.tokens += 3;
            match self.skip_ws()? {
                b',' => self.pos += 1,
                b'}' => {
                    self.pos += 1;
                    keys.truncate(mark);
                    return Ok(());
                }
                _ => return Err(Stop::Refused),
            }
        }
    }

    fn skip_array(&mut self, depth: usize, keys: &mut Vec<(usize, usize)>) -> R<()> {
        if self.open(depth, b']')? {
            return Ok(());
        }
        loop {
            self.skip_value(depth, keys)?;
            self.tokens += 1;
            match self.skip_ws()? {
                b',' => self.pos += 1,
                b']' => {
                    self.pos += 1;
                    return Ok(());
                }
                _ => return Err(Stop::Refused),
            }
        }
    }

    /// Step over a string of printable ASCII with single-character escapes; its contents'
    /// range and whether it had an escape.
    fn skip_string(&mut self) -> R<(usize, usize, bool)> {
        let start = self.pos + 1;
        let mut i = start;
        let mut escaped = false;
        loop {
            i = self.plain_run(i);
            // Byte by byte up to the special byte the word held.
            loop {
                let Some(&b) = self.data.get(i) else {
                    return self.string_tail_eof(i);
                };
                match b {
                    b'"' => {
                        self.pos = i + 1;
                        return Ok((start, i, escaped));
                    }
                    b'\\' => {
                        escaped = true;
                        match self.data.get(i + 1) {
                            None => return Err(Stop::Eof),
                            Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => i += 2,
                            Some(_) => return Err(Stop::Refused),
                        }
                        break;
                    }
                    0x20..=0x7F => i += 1,
                    _ => return Err(Stop::Refused),
                }
            }
        }
    }
}
