//! QEMU's JSON dialect: a streaming decoder and QEMU's output form.
//!
//! The decoder has two paths that give the same results:
//!
//! * the *exact* path (`Lexer`) reproduces QEMU's lexer, its message streamer
//!   (bracket counting, limits, error recovery) and its parser, byte for byte,
//!   including every error text;
//! * the *fast* path (`crate::fast`) reads a plain JSON object or array that
//!   starts at a clean point in one pass, and refuses everything QEMU would
//!   treat differently (single quotes, duplicate keys, noncharacters, deep
//!   nesting, any error). Anything refused is read by the exact path from the
//!   message's first byte, so only correct input is ever taken from the fast
//!   path.

use crate::fast::{self, Fast};
use serde_json::{Map, Number, Value};
use std::fmt;

/// Largest size of one token, and of all tokens of one message (QEMU: 64 MiB).
pub const MAX_TOKEN_SIZE: usize = 64 << 20;
/// Largest number of tokens in one message (QEMU: 2 Mi).
pub const MAX_TOKEN_COUNT: usize = 2 << 20;
/// Deepest nesting of arrays and objects (QEMU: 1024).
pub const MAX_NESTING: i64 = 1 << 10;

/// Longest input the fast path keeps waiting for the rest of a message.
const FAST_PENDING_MAX: usize = 1 << 20;
/// Buffers larger than this are released once their message is done.
const KEEP_CAPACITY: usize = 1 << 20;
/// How often the fast path retries one incomplete message before the exact path takes it.
const FAST_RETRIES_MAX: u32 = 16;

/// A JSON error as QEMU reports it; `Display` is QEMU's `desc` text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonError {
    desc: String,
}

impl JsonError {
    /// An error with the given `desc` text.
    pub fn new(desc: impl Into<String>) -> JsonError {
        JsonError { desc: desc.into() }
    }

    /// QEMU's `desc` text, e.g. `JSON parse error, expecting value`.
    pub fn desc(&self) -> &str {
        &self.desc
    }

    fn from_bytes(bytes: &[u8]) -> JsonError {
        JsonError {
            desc: decode_lossy(bytes),
        }
    }

    fn parse(msg: &str) -> JsonError {
        // QEMU formats the parser's message into a 1024-byte buffer.
        let mut bytes = b"JSON parse error, ".to_vec();
        let m = msg.as_bytes();
        bytes.extend_from_slice(&m[..m.len().min(1023)]);
        JsonError::from_bytes(&bytes)
    }
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.desc)
    }
}

impl std::error::Error for JsonError {}

impl From<JsonError> for crate::error::QmpError {
    fn from(e: JsonError) -> crate::error::QmpError {
        crate::error::QmpError::generic(e.desc)
    }
}

// ---------------------------------------------------------------------------
// Unicode as QEMU sees it ("modified UTF-8": \xC0\x80 is U+0000).

pub(crate) fn is_valid_codepoint(cp: u32) -> bool {
    if cp > 0x10FFFF {
        return false;
    }
    if (0xFDD0..=0xFDEF).contains(&cp) || (cp & 0xFFFE) == 0xFFFE {
        return false;
    }
    !(0xD800..=0xDFFF).contains(&cp)
}

/// Decode one code point at `bytes[pos..]` (at most 6 bytes); `None` when invalid.
/// Returns the position after what was consumed.
fn mod_utf8_codepoint(bytes: &[u8], pos: usize) -> (Option<u32>, usize) {
    const MIN_CP: [u32; 5] = [0x80, 0x800, 0x10000, 0x200000, 0x4000000];
    let Some(&lead) = bytes.get(pos) else {
        return (None, pos);
    };
    let mut p = pos + 1;
    if lead < 0x80 {
        return (Some(u32::from(lead)), p);
    }
    if lead >= 0xFE || lead & 0x40 == 0 {
        return (None, p);
    }
    let len = lead.leading_ones() as usize; // 2..=6
    let mut cp = u32::from(lead) & ((1u32 << (7 - len)) - 1);
    for _ in 1..len {
        let b = bytes.get(p).copied().unwrap_or(0);
        if b & 0xC0 != 0x80 {
            return (None, p);
        }
        p += 1;
        cp = (cp << 6) | u32::from(b & 0x3F);
    }
    if !is_valid_codepoint(cp) || (cp < MIN_CP[len - 2] && !(cp == 0 && len == 2)) {
        return (None, p);
    }
    (Some(cp), p)
}

/// Text of a byte string as QEMU's output shows it: what it cannot decode becomes U+FFFD.
fn decode_lossy(bytes: &[u8]) -> String {
    if let Ok(s) = std::str::from_utf8(bytes) {
        if s.chars().all(|c| is_valid_codepoint(c as u32)) {
            return s.to_owned();
        }
    }
    let mut out = String::with_capacity(bytes.len());
    let mut pos = 0;
    while pos < bytes.len() {
        let (cp, next) = mod_utf8_codepoint(bytes, pos);
        out.push(cp.and_then(char::from_u32).unwrap_or('\u{FFFD}'));
        pos = next.max(pos + 1);
    }
    out
}

// ---------------------------------------------------------------------------
// The exact path: lexer.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LexState {
    Start,
    Recovery,
    DqString,
    DqEscape,
    SqString,
    SqEscape,
    Zero,
    Sign,
    Digits,
    Mantissa,
    MantissaDigits,
    ExpE,
    ExpSign,
    ExpDigits,
    Keyword,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TokKind {
    LCurly,
    RCurly,
    LSquare,
    RSquare,
    Colon,
    Comma,
    Integer,
    Float,
    Keyword,
    String,
    /// A token cut off at the size limit.
    Oversize,
}

#[derive(Debug, Clone, Copy)]
enum Next {
    /// Go to this state.
    State(LexState),
    /// The token is complete.
    Token(TokKind),
    /// Back to the start state, the token is dropped (whitespace, end of recovery).
    Start,
    /// A lexical error: the token so far is stray.
    Error,
    /// Still skipping after an error.
    Recovery,
}

/// One transition: the next step and whether `ch` belongs to the token.
fn step(state: LexState, ch: u8) -> (Next, bool) {
    use LexState as S;
    use Next as N;
    match state {
        S::Start => match ch {
            b'"' => (N::State(S::DqString), true),
            b'\'' => (N::State(S::SqString), true),
            b'0' => (N::State(S::Zero), true),
            b'1'..=b'9' => (N::State(S::Digits), true),
            b'-' => (N::State(S::Sign), true),
            b'{' => (N::Token(TokKind::LCurly), true),
            b'}' => (N::Token(TokKind::RCurly), true),
            b'[' => (N::Token(TokKind::LSquare), true),
            b']' => (N::Token(TokKind::RSquare), true),
            b',' => (N::Token(TokKind::Comma), true),
            b':' => (N::Token(TokKind::Colon), true),
            b'a'..=b'z' => (N::State(S::Keyword), true),
            b' ' | b'\t' | b'\r' | b'\n' => (N::Start, true),
            _ => (N::Error, true),
        },
        S::Recovery => match ch {
            b'\t' => (N::Recovery, true),
            // Recovery ends at a control character (but a tab), 0xFE, 0xFF, or a structural
            // character (brackets, braces, comma, colon), which is then read afresh.
            0..=0x1F | 0xFE | 0xFF | b'[' | b']' | b'{' | b'}' | b',' | b':' => (N::Start, false),
            _ => (N::Recovery, true),
        },
        S::DqString => match ch {
            b'"' => (N::Token(TokKind::String), true),
            b'\\' => (N::State(S::DqEscape), true),
            0x20..=0xFD => (N::State(S::DqString), true),
            _ => (N::Error, true),
        },
        S::SqString => match ch {
            b'\'' => (N::Token(TokKind::String), true),
            b'\\' => (N::State(S::SqEscape), true),
            0x20..=0xFD => (N::State(S::SqString), true),
            _ => (N::Error, true),
        },
        S::DqEscape => match ch {
            0x20..=0xFD => (N::State(S::DqString), true),
            _ => (N::Error, true),
        },
        S::SqEscape => match ch {
            0x20..=0xFD => (N::State(S::SqString), true),
            _ => (N::Error, true),
        },
        // A leading zero takes a fraction but no exponent: `0e1` reads as the integer 0, the
        // keyword `e` and the integer 1.
        S::Zero => match ch {
            b'0'..=b'9' => (N::Error, true),
            b'.' => (N::State(S::Mantissa), true),
            _ => (N::Token(TokKind::Integer), false),
        },
        S::Digits => match ch {
            b'0'..=b'9' => (N::State(S::Digits), true),
            b'.' => (N::State(S::Mantissa), true),
            b'e' | b'E' => (N::State(S::ExpE), true),
            _ => (N::Token(TokKind::Integer), false),
        },
        S::Sign => match ch {
            b'0' => (N::State(S::Zero), true),
            b'1'..=b'9' => (N::State(S::Digits), true),
            _ => (N::Error, true),
        },
        S::Mantissa => match ch {
            b'0'..=b'9' => (N::State(S::MantissaDigits), true),
            _ => (N::Error, true),
        },
        S::MantissaDigits => match ch {
            b'0'..=b'9' => (N::State(S::MantissaDigits), true),
            b'e' | b'E' => (N::State(S::ExpE), true),
            _ => (N::Token(TokKind::Float), false),
        },
        S::ExpE => match ch {
            b'+' | b'-' => (N::State(S::ExpSign), true),
            b'0'..=b'9' => (N::State(S::ExpDigits), true),
            _ => (N::Error, true),
        },
        S::ExpSign => match ch {
            b'0'..=b'9' => (N::State(S::ExpDigits), true),
            _ => (N::Error, true),
        },
        S::ExpDigits => match ch {
            b'0'..=b'9' => (N::State(S::ExpDigits), true),
            _ => (N::Token(TokKind::Float), false),
        },
        S::Keyword => match ch {
            b'a'..=b'z' => (N::State(S::Keyword), true),
            _ => (N::Token(TokKind::Keyword), false),
        },
    }
}

#[derive(Debug, Clone, Copy)]
struct Token {
    kind: TokKind,
    start: usize,
    end: usize,
}

/// QEMU's lexer and message streamer, exactly.
#[derive(Debug)]
struct Lexer {
    state: LexState,
    /// The token being lexed.
    tok: Vec<u8>,
    /// Tokens of the message being gathered; their text is in `arena`.
    tokens: Vec<Token>,
    arena: Vec<u8>,
    brace: i64,
    bracket: i64,
    token_size: usize,
}

impl Lexer {
    fn new() -> Lexer {
        Lexer {
            state: LexState::Start,
            tok: Vec::new(),
            tokens: Vec::new(),
            arena: Vec::new(),
            brace: 0,
            bracket: 0,
            token_size: 0,
        }
    }

    /// Nothing pending: the next byte starts a new message.
    fn is_clean(&self) -> bool {
        self.state == LexState::Start && self.tokens.is_empty() && self.tok.is_empty()
    }

    /// Feed bytes until everything is consumed or the lexer is clean again
    /// after at least one byte; returns how many bytes were consumed.
    fn feed_until_clean(&mut self, bytes: &[u8], out: &mut Vec<Result<Value, JsonError>>) -> usize {
        let mut i = 0;
        while i < bytes.len() {
            // Runs of string content go in bulk.
            if matches!(self.state, LexState::DqString | LexState::SqString) {
                let quote = if self.state == LexState::DqString {
                    b'"'
                } else {
                    b'\''
                };
                let room = (MAX_TOKEN_SIZE + 1).saturating_sub(self.tok.len());
                let run = bytes[i..]
                    .iter()
                    .take(room)
                    .position(|&b| b == quote || b == b'\\' || !(0x20..=0xFD).contains(&b))
                    .unwrap_or(room.min(bytes.len() - i));
                if run > 0 {
                    self.tok.extend_from_slice(&bytes[i..i + run]);
                    i += run;
                    self.check_token_size(out);
                    continue;
                }
            } else if self.state == LexState::Recovery {
                let run = bytes[i..]
                    .iter()
                    .position(|&b| {
                        (b < 0x20 && b != b'\t')
                            || matches!(b, 0xFE | 0xFF | b'[' | b']' | b'{' | b'}' | b',' | b':')
                    })
                    .unwrap_or(bytes.len() - i);
                i += run;
                if i == bytes.len() {
                    break;
                }
            }
            self.feed_byte(bytes[i], out);
            i += 1;
            if self.is_clean() {
                break;
            }
        }
        i
    }

    fn feed_byte(&mut self, ch: u8, out: &mut Vec<Result<Value, JsonError>>) {
        loop {
            let (next, consumed) = step(self.state, ch);
            if consumed {
                self.tok.push(ch);
            }
            self.apply(next, out);
            if consumed {
                break;
            }
        }
        self.check_token_size(out);
    }

    fn apply(&mut self, next: Next, out: &mut Vec<Result<Value, JsonError>>) {
        match next {
            Next::State(s) => self.state = s,
            Next::Token(kind) => {
                self.process_token(Some(kind), out);
                self.clear_tok();
                self.state = LexState::Start;
            }
            Next::Start => {
                self.clear_tok();
                self.state = LexState::Start;
            }
            Next::Error => {
                let mut desc = b"JSON parse error, stray '".to_vec();
                let end = self
                    .tok
                    .iter()
                    .position(|&b| b == 0)
                    .unwrap_or(self.tok.len());
                desc.extend_from_slice(&self.tok[..end]);
                desc.push(b'\'');
                out.push(Err(JsonError::from_bytes(&desc)));
                self.reset_message();
                self.clear_tok();
                self.state = LexState::Recovery;
            }
            Next::Recovery => self.clear_tok(),
        }
    }

    fn check_token_size(&mut self, out: &mut Vec<Result<Value, JsonError>>) {
        if self.tok.len() > MAX_TOKEN_SIZE {
            self.process_token(Some(TokKind::Oversize), out);
            self.tok = Vec::new();
            self.state = LexState::Start;
        }
    }

    /// End of input: QEMU's flush.
    fn flush(&mut self, out: &mut Vec<Result<Value, JsonError>>) {
        if self.state != LexState::Start {
            let (next, _) = step(self.state, 0);
            self.apply(next, out);
        }
        // End of input token.
        if !self.tokens.is_empty() {
            let result = parse_tokens(&self.tokens, &self.arena);
            out.push(result);
        }
        self.reset_message();
        self.clear_tok();
        self.state = LexState::Start;
    }

    fn reset_message(&mut self) {
        self.brace = 0;
        self.bracket = 0;
        self.tokens.clear();
        self.arena.clear();
        self.token_size = 0;
        // Do not keep a huge message's memory for the rest of the session.
        if self.arena.capacity() > KEEP_CAPACITY {
            self.arena = Vec::new();
        }
        if self.tokens.capacity() > KEEP_CAPACITY / 16 {
            self.tokens = Vec::new();
        }
    }

    fn clear_tok(&mut self) {
        if self.tok.capacity() > KEEP_CAPACITY {
            self.tok = Vec::new();
        } else {
            self.tok.clear();
        }
    }

    /// The streamer: gathers tokens until brackets balance, then parses.
    fn process_token(&mut self, kind: Option<TokKind>, out: &mut Vec<Result<Value, JsonError>>) {
        let Some(kind) = kind else { return };
        match kind {
            TokKind::LCurly => self.brace += 1,
            TokKind::RCurly => self.brace -= 1,
            TokKind::LSquare => self.bracket += 1,
            TokKind::RSquare => self.bracket -= 1,
            _ => {}
        }
        let len = self.tok.len();
        let err = if self.token_size + len + 1 > MAX_TOKEN_SIZE {
            Some("JSON token size limit exceeded")
        } else if self.tokens.len() + 1 > MAX_TOKEN_COUNT {
            Some("JSON token count limit exceeded")
        } else if self.brace + self.bracket > MAX_NESTING {
            Some("JSON nesting depth limit exceeded")
        } else {
            None
        };
        if let Some(err) = err {
            out.push(Err(JsonError::new(err)));
            self.reset_message();
            return;
        }
        let start = self.arena.len();
        self.arena.extend_from_slice(&self.tok);
        self.tokens.push(Token {
            kind,
            start,
            end: self.arena.len(),
        });
        self.token_size += len;
        if (self.brace > 0 || self.bracket > 0) && self.brace >= 0 && self.bracket >= 0 {
            return;
        }
        out.push(parse_tokens(&self.tokens, &self.arena));
        self.reset_message();
    }
}

// ---------------------------------------------------------------------------
// The exact path: parser (iterative, QEMU's recursive descent and its first error).

enum Frame {
    Array(Vec<Value>),
    /// An object; `key` is set while its value is parsed.
    Object(Map<String, Value>, Option<String>),
    /// A key is being parsed (it may itself be any value).
    Key(Map<String, Value>),
}

struct TokenStream<'a> {
    tokens: &'a [Token],
    arena: &'a [u8],
    pos: usize,
}

impl<'a> TokenStream<'a> {
    fn peek(&self) -> Option<Token> {
        self.tokens.get(self.pos).copied()
    }
    fn pop(&mut self) -> Option<Token> {
        let t = self.peek();
        if t.is_some() {
            self.pos += 1;
        }
        t
    }
    fn text(&self, t: Token) -> &'a [u8] {
        &self.arena[t.start..t.end]
    }
}

fn premature() -> JsonError {
    JsonError::parse("premature EOI")
}

fn parse_tokens(tokens: &[Token], arena: &[u8]) -> Result<Value, JsonError> {
    let mut ts = TokenStream {
        tokens,
        arena,
        pos: 0,
    };
    let mut stack: Vec<Frame> = Vec::new();
    // `None`: a value must be parsed next; `Some(v)`: a value was completed.
    let mut done: Option<Value> = None;
    loop {
        let value = match done.take() {
            Some(v) => v,
            None => {
                let t = ts.peek().ok_or_else(premature)?;
                match t.kind {
                    TokKind::LCurly => {
                        ts.pop();
                        let t = ts.peek().ok_or_else(premature)?;
                        if t.kind == TokKind::RCurly {
                            ts.pop();
                            Value::Object(Map::new())
                        } else {
                            stack.push(Frame::Key(Map::new()));
                            continue;
                        }
                    }
                    TokKind::LSquare => {
                        ts.pop();
                        let t = ts.peek().ok_or_else(premature)?;
                        if t.kind == TokKind::RSquare {
                            ts.pop();
                            Value::Array(Vec::new())
                        } else {
                            stack.push(Frame::Array(Vec::new()));
                            continue;
                        }
                    }
                    TokKind::String => {
                        ts.pop();
                        Value::String(parse_string(ts.text(t))?)
                    }
                    TokKind::Integer | TokKind::Float => {
                        ts.pop();
                        let v = parse_number(ts.text(t), t.kind == TokKind::Integer);
                        let in_id =
                            matches!(stack.first(), Some(Frame::Object(_, Some(k))) if k == "id");
                        if in_id && is_largest_double(&v, ts.text(t)) {
                            mark_largest_double(v)
                        } else {
                            v
                        }
                    }
                    TokKind::Keyword => {
                        ts.pop();
                        match ts.text(t) {
                            b"true" => Value::Bool(true),
                            b"false" => Value::Bool(false),
                            b"null" => Value::Null,
                            other => {
                                let mut msg = b"invalid keyword '".to_vec();
                                msg.extend_from_slice(other);
                                msg.push(b'\'');
                                return Err(JsonError::parse(&String::from_utf8_lossy(&msg)));
                            }
                        }
                    }
                    _ => return Err(JsonError::parse("expecting value")),
                }
            }
        };
        // Hand the completed value to the innermost frame.
        match stack.pop() {
            None => return Ok(value),
            Some(Frame::Key(map)) => {
                let Value::String(key) = value else {
                    return Err(JsonError::parse("key is not a string in object"));
                };
                let t = ts.pop().ok_or_else(premature)?;
                if t.kind != TokKind::Colon {
                    return Err(JsonError::parse("missing : in object pair"));
                }
                stack.push(Frame::Object(map, Some(key)));
            }
            Some(Frame::Object(mut map, key)) => {
                let key = key.unwrap_or_default();
                if map.contains_key(&key) {
                    return Err(JsonError::parse("duplicate key"));
                }
                map.insert(key, value);
                let t = ts.pop().ok_or_else(premature)?;
                match t.kind {
                    TokKind::RCurly => done = Some(Value::Object(map)),
                    TokKind::Comma => stack.push(Frame::Key(map)),
                    _ => return Err(JsonError::parse("expected separator in dict")),
                }
            }
            Some(Frame::Array(mut list)) => {
                list.push(value);
                let t = ts.pop().ok_or_else(premature)?;
                match t.kind {
                    TokKind::RSquare => done = Some(Value::Array(list)),
                    TokKind::Comma => stack.push(Frame::Array(list)),
                    _ => return Err(JsonError::parse("expected separator in list")),
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// The largest double in an `id`.
//
// QEMU keeps a number beyond a double's range as an infinity and echoes it as `inf`; a JSON
// value cannot hold one, so it decodes to the largest double of its sign, which the writer
// prints as `inf` (see `parse_number`). A number that *is* the largest double must be echoed
// as such (`1.7976931348623157e+308`): in the `id` of a top-level object, the only value QEMU
// echoes (whatever else the object holds), the decoder wraps it in a one-member object under a
// key QEMU's parser never produces (U+FFFE is not a character it accepts), which every writer
// prints as that number. Nothing reads an `id` but the writers.

/// The key of the object that stands for a largest double in an `id`.
pub(crate) const LARGEST_DOUBLE_KEY: &str = "\u{FFFE}largest double";

/// Whether `v`, decoded from `text`, is ±`f64::MAX` read as such (not beyond a double's range).
fn is_largest_double(v: &Value, text: &[u8]) -> bool {
    v.as_f64().is_some_and(|f| f.abs() == f64::MAX)
        && !v.is_i64()
        && !v.is_u64()
        && std::str::from_utf8(text)
            .ok()
            .and_then(|s| s.parse::<f64>().ok())
            .is_some_and(f64::is_finite)
}

fn mark_largest_double(v: Value) -> Value {
    let mut m = Map::new();
    m.insert(LARGEST_DOUBLE_KEY.to_string(), v);
    Value::Object(m)
}

/// The largest double that the written value of a marked object's one member stands for: the
/// overflow (`inf`, `-inf`) that the largest double is written as elsewhere.
pub(crate) fn marked_double_text(value: &[u8]) -> Option<f64> {
    match value {
        b"inf" => Some(f64::MAX),
        b"-inf" => Some(-f64::MAX),
        _ => None,
    }
}

/// The largest double a marked object stands for.
fn marked_largest_double(map: &Map<String, Value>) -> Option<f64> {
    if map.len() != 1 {
        return None;
    }
    let (k, v) = map.iter().next()?;
    if k != LARGEST_DOUBLE_KEY {
        return None;
    }
    v.as_f64().filter(|f| f.abs() == f64::MAX)
}

pub(crate) fn parse_number(text: &[u8], integer: bool) -> Value {
    let s = std::str::from_utf8(text).unwrap_or("0");
    if integer {
        if let Ok(i) = s.parse::<i64>() {
            return Value::from(i);
        }
        if !s.starts_with('-') {
            if let Ok(u) = s.parse::<u64>() {
                return Value::from(u);
            }
        }
    }
    let mut f = s.parse::<f64>().unwrap_or(0.0);
    if f.is_infinite() {
        // QEMU keeps the infinity a number beyond the range of a double reads as, and prints
        // it as `inf`; a JSON value cannot hold one: it stands as the largest double of that
        // sign, which the writer prints as QEMU prints the infinity (see `write_number`).
        f = f64::MAX.copysign(f);
    }
    Number::from_f64(f)
        .map(Value::Number)
        .unwrap_or(Value::Null)
}

fn hex4(text: &[u8], pos: usize) -> Option<u32> {
    let mut cp = 0u32;
    for i in 0..4 {
        let d = (*text.get(pos + i)? as char).to_digit(16)?;
        cp = cp * 16 + d;
    }
    Some(cp)
}

/// A string token (with its quotes) to its value, with QEMU's errors.
fn parse_string(text: &[u8]) -> Result<String, JsonError> {
    let quote = text.first().copied().unwrap_or(b'"');
    let mut out = String::with_capacity(text.len());
    let mut p = 1;
    while p < text.len() && text[p] != quote {
        if text[p] == b'\\' {
            let beg = p;
            p += 1;
            let c = text.get(p).copied().unwrap_or(0);
            p += 1;
            match c {
                b'"' => out.push('"'),
                b'\'' => out.push('\''),
                b'\\' => out.push('\\'),
                b'/' => out.push('/'),
                b'b' => out.push('\u{8}'),
                b'f' => out.push('\u{c}'),
                b'n' => out.push('\n'),
                b'r' => out.push('\r'),
                b't' => out.push('\t'),
                b'u' => {
                    let Some(mut cp) = hex4(text, p) else {
                        // QEMU shows `\u` and the four bytes it tried to read (fewer at the
                        // end of the token, whose closing quote counts as one of them).
                        let end = (p + 4).min(text.len());
                        let shown = decode_lossy(&text[beg..end]);
                        return Err(JsonError::parse(&format!(
                            "{shown} is not a valid Unicode character"
                        )));
                    };
                    p += 4;
                    let mut valid = true;
                    if (0xD800..=0xDBFF).contains(&cp)
                        && text.get(p) == Some(&b'\\')
                        && text.get(p + 1) == Some(&b'u')
                    {
                        match hex4(text, p + 2) {
                            Some(trail @ 0xDC00..=0xDFFF) => {
                                cp = 0x10000 + ((cp & 0x3FF) << 10) + (trail & 0x3FF);
                                p += 6;
                            }
                            _ => valid = false,
                        }
                    }
                    match char::from_u32(cp) {
                        Some(ch) if valid && is_valid_codepoint(cp) => out.push(ch),
                        _ => {
                            let shown = String::from_utf8_lossy(&text[beg..p.min(text.len())]);
                            return Err(JsonError::parse(&format!(
                                "{shown} is not a valid Unicode character"
                            )));
                        }
                    }
                }
                _ => return Err(JsonError::parse("invalid escape sequence in string")),
            }
        } else {
            let (cp, next) = mod_utf8_codepoint(text, p);
            match cp.and_then(char::from_u32) {
                Some(ch) => out.push(ch),
                None => return Err(JsonError::parse("invalid UTF-8 sequence in string")),
            }
            p = next;
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------
// The streamer.

/// Streaming decoder for QEMU's JSON dialect: bytes in, complete top-level values (or errors) out.
#[derive(Debug)]
pub struct JsonStreamer {
    lexer: Lexer,
    /// A valid beginning of an object or array that waits for its end (fast path).
    pending: Vec<u8>,
    retries: u32,
    fast: bool,
}

impl Default for JsonStreamer {
    fn default() -> Self {
        JsonStreamer::new()
    }
}

impl JsonStreamer {
    /// A decoder with QEMU's limits: 64 MiB per token, 2 Mi tokens, nesting 1024.
    pub fn new() -> JsonStreamer {
        JsonStreamer {
            lexer: Lexer::new(),
            pending: Vec::new(),
            retries: 0,
            fast: true,
        }
    }

    /// A decoder that never takes the fast path (for tests comparing both paths).
    #[doc(hidden)]
    pub fn exact_only() -> JsonStreamer {
        JsonStreamer {
            fast: false,
            ..JsonStreamer::new()
        }
    }

    /// Feed bytes; push every complete top-level value or error (in input order) onto `out`.
    pub fn feed(&mut self, bytes: &[u8], out: &mut Vec<Result<Value, JsonError>>) {
        if !self.pending.is_empty() {
            let mut data = std::mem::take(&mut self.pending);
            data.extend_from_slice(bytes);
            self.run(&data, out);
            return;
        }
        let mut pos = 0;
        if !self.lexer.is_clean() {
            pos = self.lexer.feed_until_clean(bytes, out);
        }
        self.run(&bytes[pos..], out);
    }

    /// End of input: flush what is pending (QEMU reports an incomplete value at EOF as it does).
    pub fn finish(&mut self, out: &mut Vec<Result<Value, JsonError>>) {
        if !self.pending.is_empty() {
            let data = std::mem::take(&mut self.pending);
            let mut pos = 0;
            while pos < data.len() {
                pos += self.lexer.feed_until_clean(&data[pos..], out);
            }
        }
        self.retries = 0;
        self.lexer.flush(out);
    }

    /// Whether the decoder holds nothing: the next byte starts a new message.
    pub fn is_idle(&self) -> bool {
        self.pending.is_empty() && self.lexer.is_clean()
    }

    /// Bytes held while waiting for the rest of a message.
    pub fn buffered(&self) -> usize {
        self.pending.len() + self.lexer.arena.len() + self.lexer.tok.len()
    }

    /// Decode `data`; the lexer is clean on entry.
    fn run(&mut self, data: &[u8], out: &mut Vec<Result<Value, JsonError>>) {
        let mut pos = 0;
        while pos < data.len() {
            if !self.lexer.is_clean() {
                pos += self.lexer.feed_until_clean(&data[pos..], out);
                continue;
            }
            match data[pos] {
                b' ' | b'\t' | b'\r' | b'\n' => {
                    pos += 1;
                    continue;
                }
                b'{' | b'[' if self.fast => {}
                _ => {
                    pos += self.lexer.feed_until_clean(&data[pos..], out);
                    continue;
                }
            }
            let rest = &data[pos..];
            match fast::parse(rest) {
                Fast::Value(v, used) => {
                    out.push(Ok(v));
                    pos += used;
                    self.retries = 0;
                }
                Fast::Incomplete
                    if rest.len() <= FAST_PENDING_MAX
                        && self.retries < FAST_RETRIES_MAX
                        && !rest.iter().any(|&b| b >= 0xFE) =>
                {
                    // A valid beginning: QEMU would answer nothing yet.
                    self.retries += 1;
                    self.pending = rest.to_vec();
                    return;
                }
                Fast::Incomplete | Fast::Refused => {
                    self.retries = 0;
                    pos += self.lexer.feed_until_clean(rest, out);
                }
            }
        }
    }
}

/// Decode a complete input as QEMU would, including what the end of input flushes.
pub fn decode_all(bytes: &[u8]) -> Vec<Result<Value, JsonError>> {
    let mut out = Vec::new();
    let mut s = JsonStreamer::new();
    s.feed(bytes, &mut out);
    s.finish(&mut out);
    out
}

// ---------------------------------------------------------------------------
// Output.

/// QEMU's output form of a value (no line terminator).
pub fn to_qemu_string(value: &Value) -> String {
    let mut out = Vec::new();
    write_qemu(value, &mut out);
    // The writer only ever produces ASCII.
    String::from_utf8(out).unwrap_or_default()
}

/// Append QEMU's output form of `value` to `out`, at any depth (nesting
/// beyond a few levels is written without recursion).
pub fn write_qemu(value: &Value, out: &mut Vec<u8>) {
    write_shallow(value, out, 0);
}

const WRITE_RECURSION: usize = 32;

/// Append QEMU's pretty form of `value` (what `-mon …,pretty=on` and `-qmp-pretty` send):
/// each member and element on its own line, indented by four spaces per level, `"key": value`,
/// an empty object or array as its brackets on two lines, lines ended by `\n` (the monitor
/// sends `\r\n`). Scalars are written as [`write_qemu`] writes them. Values nested deeper
/// than QEMU's output ever is are written compactly below that depth.
pub fn write_qemu_pretty(value: &Value, out: &mut Vec<u8>) {
    write_pretty(value, out, 0);
}

fn write_pretty(value: &Value, out: &mut Vec<u8>, level: usize) {
    fn newline(out: &mut Vec<u8>, level: usize) {
        out.push(b'\n');
        out.resize(out.len() + 4 * level, b' ');
    }
    match value {
        Value::Array(_) | Value::Object(_) if level >= 4 * WRITE_RECURSION => {
            write_qemu(value, out)
        }
        Value::Array(list) => {
            out.push(b'[');
            for (i, v) in list.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                newline(out, level + 1);
                write_pretty(v, out, level + 1);
            }
            newline(out, level);
            out.push(b']');
        }
        Value::Object(map) => {
            out.push(b'{');
            for (i, (k, v)) in map.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                newline(out, level + 1);
                write_string(k, out);
                out.extend_from_slice(b": ");
                write_pretty(v, out, level + 1);
            }
            newline(out, level);
            out.push(b'}');
        }
        _ => write_shallow(value, out, 0),
    }
}

/// Append QEMU's output form of `value` with every object's members in QEMU's walking
/// order: the bytes of `write_qemu(&qemu_order(value.clone()), out)`, for a value whose
/// members are in the order QEMU would have inserted them (a command's result), without
/// building the reordered value.
pub fn write_qemu_ordered(value: &Value, out: &mut Vec<u8>) {
    write_ordered(value, out, 0);
}

fn write_ordered(value: &Value, out: &mut Vec<u8>, depth: usize) {
    match value {
        Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_) => {
            write_shallow(value, out, depth)
        }
        // Deep values (rare) go through the general reordering and the iterative writer.
        _ if depth >= WRITE_RECURSION => write_qemu(&crate::qdict::qemu_order(value.clone()), out),
        Value::Array(list) => {
            out.push(b'[');
            let mut first = true;
            for v in list {
                if !first {
                    out.extend_from_slice(b", ");
                }
                first = false;
                write_ordered(v, out, depth + 1);
            }
            out.push(b']');
        }
        Value::Object(map) if marked_largest_double(map).is_some() => {
            write_shallow(value, out, depth)
        }
        Value::Object(map) => {
            out.push(b'{');
            let mut first = true;
            let _ = crate::qdict::walk(map, |k, v| {
                if !first {
                    out.extend_from_slice(b", ");
                }
                first = false;
                write_string(k, out);
                out.extend_from_slice(b": ");
                write_ordered(v, out, depth + 1);
                Ok::<(), std::convert::Infallible>(())
            });
            out.push(b'}');
        }
    }
}

fn write_shallow(value: &Value, out: &mut Vec<u8>, depth: usize) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => write_number(n, out),
        Value::String(s) => write_string(s, out),
        Value::Object(map) if marked_largest_double(map).is_some() => {
            format_g17(marked_largest_double(map).unwrap_or(f64::MAX), out)
        }
        _ if depth >= WRITE_RECURSION => write_deep(value, out),
        Value::Array(list) => {
            out.push(b'[');
            let mut first = true;
            for v in list {
                if !first {
                    out.extend_from_slice(b", ");
                }
                first = false;
                write_shallow(v, out, depth + 1);
            }
            out.push(b']');
        }
        Value::Object(map) => {
            out.push(b'{');
            let mut first = true;
            for (k, v) in map {
                if !first {
                    out.extend_from_slice(b", ");
                }
                first = false;
                write_string(k, out);
                out.extend_from_slice(b": ");
                write_shallow(v, out, depth + 1);
            }
            out.push(b'}');
        }
    }
}

fn write_deep(value: &Value, out: &mut Vec<u8>) {
    enum Open<'a> {
        Array(std::slice::Iter<'a, Value>),
        Object(serde_json::map::Iter<'a>),
    }
    let mut stack: Vec<Open<'_>> = Vec::new();
    let mut next = Some(value);
    loop {
        if let Some(v) = next.take() {
            match v {
                Value::Null => out.extend_from_slice(b"null"),
                Value::Bool(true) => out.extend_from_slice(b"true"),
                Value::Bool(false) => out.extend_from_slice(b"false"),
                Value::Number(n) => write_number(n, out),
                Value::String(s) => write_string(s, out),
                Value::Array(list) => {
                    out.push(b'[');
                    let mut it = list.iter();
                    next = it.next();
                    stack.push(Open::Array(it));
                    if next.is_some() {
                        continue;
                    }
                }
                Value::Object(map) if marked_largest_double(map).is_some() => {
                    format_g17(marked_largest_double(map).unwrap_or(f64::MAX), out)
                }
                Value::Object(map) => {
                    out.push(b'{');
                    let mut it = map.iter();
                    if let Some((k, v)) = it.next() {
                        write_string(k, out);
                        out.extend_from_slice(b": ");
                        next = Some(v);
                    }
                    stack.push(Open::Object(it));
                    if next.is_some() {
                        continue;
                    }
                }
            }
        }
        // Continue the innermost open array or object.
        match stack.last_mut() {
            None => return,
            Some(Open::Array(it)) => match it.next() {
                Some(v) => {
                    out.extend_from_slice(b", ");
                    next = Some(v);
                }
                None => {
                    out.push(b']');
                    stack.pop();
                }
            },
            Some(Open::Object(it)) => match it.next() {
                Some((k, v)) => {
                    out.extend_from_slice(b", ");
                    write_string(k, out);
                    out.extend_from_slice(b": ");
                    next = Some(v);
                }
                None => {
                    out.push(b'}');
                    stack.pop();
                }
            },
        }
    }
}

/// The value a number beyond the range of a double (`1e400`, `-1e400`) decodes to: the largest
/// double of its sign, printed back as `inf` / `-inf` as QEMU prints the infinity it keeps. A
/// number that is exactly ±`f64::MAX` prints the same way, except in a request's `id`, where
/// the decoder marks it so that it is echoed as the number it is.
pub fn is_overflowed(n: &Number) -> bool {
    n.as_u64().is_none() && n.as_i64().is_none() && n.as_f64().is_some_and(|f| f.abs() == f64::MAX)
}

pub(crate) fn write_i64(i: i64, out: &mut Vec<u8>) {
    if i < 0 {
        out.push(b'-');
    }
    write_u64(i.unsigned_abs(), out);
}

fn write_number(n: &Number, out: &mut Vec<u8>) {
    if let Some(u) = n.as_u64() {
        write_u64(u, out);
    } else if let Some(i) = n.as_i64() {
        write_i64(i, out);
    } else if let Some(f) = n.as_f64() {
        if f.abs() == f64::MAX {
            // An overflowed number (see `parse_number`): QEMU holds an infinity.
            format_g17(f64::INFINITY.copysign(f), out);
        } else {
            format_g17(f, out);
        }
    }
}

pub(crate) fn write_u64(mut u: u64, out: &mut Vec<u8>) {
    const PAIRS: &[u8; 200] = b"0001020304050607080910111213141516171819\
        2021222324252627282930313233343536373839\
        4041424344454647484950515253545556575859\
        6061626364656667686970717273747576777879\
        8081828384858687888990919293949596979899";
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    while u >= 100 {
        let pair = (u % 100) as usize * 2;
        u /= 100;
        i -= 2;
        buf[i..i + 2].copy_from_slice(&PAIRS[pair..pair + 2]);
    }
    if u >= 10 {
        let pair = u as usize * 2;
        i -= 2;
        buf[i..i + 2].copy_from_slice(&PAIRS[pair..pair + 2]);
    } else {
        i -= 1;
        buf[i] = b'0' + u as u8;
    }
    out.extend_from_slice(&buf[i..]);
}

/// C's `printf("%.17g", x)`.
pub fn format_g17(x: f64, out: &mut Vec<u8>) {
    if x.is_nan() {
        out.extend_from_slice(if x.is_sign_negative() {
            b"-nan"
        } else {
            b"nan"
        });
        return;
    }
    if x.is_infinite() {
        out.extend_from_slice(if x < 0.0 { b"-inf" } else { b"inf" });
        return;
    }
    if x == 0.0 {
        out.extend_from_slice(if x.is_sign_negative() { b"-0" } else { b"0" });
        return;
    }
    let s = format!("{:.16e}", x);
    let (mant, exp) = s.split_once('e').unwrap_or((&s, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let neg = mant.starts_with('-');
    let digits: Vec<u8> = mant.bytes().filter(u8::is_ascii_digit).collect();
    let mut sig = digits.len();
    while sig > 1 && digits[sig - 1] == b'0' {
        sig -= 1;
    }
    let digits = &digits[..sig];
    if neg {
        out.push(b'-');
    }
    if !(-4..17).contains(&exp) {
        out.push(digits[0]);
        if digits.len() > 1 {
            out.push(b'.');
            out.extend_from_slice(&digits[1..]);
        }
        out.push(b'e');
        out.push(if exp < 0 { b'-' } else { b'+' });
        let e = exp.unsigned_abs();
        if e < 10 {
            out.push(b'0');
        }
        out.extend_from_slice(e.to_string().as_bytes());
    } else if exp >= 0 {
        let int_len = exp as usize + 1;
        for i in 0..int_len {
            out.push(digits.get(i).copied().unwrap_or(b'0'));
        }
        if digits.len() > int_len {
            out.push(b'.');
            out.extend_from_slice(&digits[int_len..]);
        }
    } else {
        out.extend_from_slice(b"0.");
        for _ in 0..(-exp - 1) {
            out.push(b'0');
        }
        out.extend_from_slice(digits);
    }
}

/// Bytes a JSON string of QEMU's carries as they are (printable ASCII but `"` and `\\`).
const PLAIN: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0x20;
    while b < 0x7F {
        t[b] = b != b'"' as usize && b != b'\\' as usize;
        b += 1;
    }
    t
};

pub(crate) fn write_string(s: &str, out: &mut Vec<u8>) {
    let bytes = s.as_bytes();
    // Short strings (member names, most values) without anything to escape: one copy.
    if bytes.len() < 16 && bytes.iter().all(|&b| PLAIN[b as usize]) {
        out.reserve(bytes.len() + 2);
        out.push(b'"');
        out.extend_from_slice(bytes);
        out.push(b'"');
        return;
    }
    out.push(b'"');
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        if let Some(chunk) = bytes.get(i..i + 8) {
            let mut w = [0u8; 8];
            w.copy_from_slice(chunk);
            if !needs_escape_in_word(u64::from_le_bytes(w)) {
                i += 8;
                continue;
            }
        }
        let b = bytes[i];
        if (0x20..0x7F).contains(&b) && b != b'"' && b != b'\\' {
            i += 1;
            continue;
        }
        out.extend_from_slice(&bytes[start..i]);
        let c = s[i..].chars().next().unwrap_or('\u{FFFD}');
        i += c.len_utf8();
        start = i;
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\u{8}' => out.extend_from_slice(b"\\b"),
            '\u{c}' => out.extend_from_slice(b"\\f"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            _ => {
                let cp = if is_valid_codepoint(c as u32) {
                    c as u32
                } else {
                    0xFFFD
                };
                if cp > 0xFFFF {
                    let v = cp - 0x10000;
                    push_u_escape(0xD800 + (v >> 10), out);
                    push_u_escape(0xDC00 + (v & 0x3FF), out);
                } else {
                    push_u_escape(cp, out);
                }
            }
        }
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// Whether any byte of `x` is `"`, `\\`, below 0x20 or above 0x7E.
#[inline]
fn needs_escape_in_word(x: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let has_zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGH;
    let below_20 = x.wrapping_sub(ONES * 0x20) & !x & HIGH;
    let quote = has_zero(x ^ (ONES * u64::from(b'"')));
    let backslash = has_zero(x ^ (ONES * u64::from(b'\\')));
    let del = has_zero(x ^ (ONES * 0x7F));
    (below_20 | quote | backslash | del | (x & HIGH)) != 0
}

fn push_u_escape(cp: u32, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.extend_from_slice(b"\\u");
    for shift in [12, 8, 4, 0] {
        out.push(HEX[((cp >> shift) & 0xF) as usize]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn descs(input: &[u8]) -> Vec<String> {
        let mut out = Vec::new();
        JsonStreamer::new().feed(input, &mut out);
        out.into_iter()
            .map(|r| match r {
                Ok(v) => to_qemu_string(&v),
                Err(e) => format!("ERR {e}"),
            })
            .collect()
    }

    #[test]
    fn transcript_errors() {
        assert_eq!(
            descs(b"{\"execute\": query-status}\n"),
            [
                "ERR JSON parse error, stray '-s'",
                "ERR JSON parse error, expecting value"
            ]
        );
        assert_eq!(
            descs(b"{\"execute\": \"query-version\", \"id\": \"\xff\xfe\"}\n"),
            [
                "ERR JSON parse error, stray '\"\u{FFFD}'",
                "ERR JSON parse error, stray '\u{FFFD}'",
                "ERR JSON parse error, expecting value"
            ]
        );
        assert_eq!(
            descs(b"{\"execute\": \"query-version\", \"id\": \"\\ud800\"}\n"),
            ["ERR JSON parse error, \\ud800 is not a valid Unicode character"]
        );
        assert_eq!(descs(b"{'execute': 'x'}"), ["{\"execute\": \"x\"}"]);
        assert_eq!(
            descs(b"{\"a\": 1e3, \"b\": 1.5}"),
            ["{\"a\": 1000, \"b\": 1.5}"]
        );
        assert_eq!(
            descs(b"[12345678901234567890, 99999999999999999999, -0]"),
            ["[12345678901234567890, 1e+20, 0]"]
        );
    }

    #[test]
    #[allow(clippy::excessive_precision)] // exact ties matter here
    fn g17() {
        let f = |x: f64| {
            let mut o = Vec::new();
            format_g17(x, &mut o);
            String::from_utf8(o).unwrap_or_default()
        };
        assert_eq!(f(0.1), "0.10000000000000001");
        assert_eq!(f(1e21), "1e+21");
        assert_eq!(f(1234567890123456.25), "1234567890123456.2");
        assert_eq!(f(1e-5), "1.0000000000000001e-05");
        assert_eq!(f(0.0001), "0.0001");
        assert_eq!(f(-2.5), "-2.5");
        assert_eq!(f(1e16), "10000000000000000");
        assert_eq!(f(1e17), "1e+17");
    }
}
