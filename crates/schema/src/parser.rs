//! The schema syntax: tokens and JSON-like values with QEMU's lexical and
//! syntax errors, doc comment blocks, `include` and `pragma` directives.
//!
//! The lexer works on bytes. Values are parsed without recursion and nest
//! at most [`MAX_DEPTH`] deep. Errors carry a column (1-based, a tab
//! advances to the next multiple of 8, plus one).

use crate::ast::{Doc, Pragma};
use crate::doc::{self, DocItem, DocSource};
use crate::error::QapiError;
use crate::source::{join_include, Dialect, Info, ReadError, SourceFile, SourceProvider};
use std::borrow::Cow;
use std::sync::{Arc, Mutex};

mod parallel;

/// Keeps the text of every schema file alive while the values parsed from
/// it borrow from it (strings without escapes are not copied).
#[derive(Debug, Default)]
pub struct TextArena {
    texts: Mutex<Vec<String>>,
}

impl TextArena {
    pub fn new() -> TextArena {
        TextArena::default()
    }

    /// Store `text`; the result lives as long as the arena.
    pub fn alloc(&self, text: String) -> &str {
        let ptr: *const str = text.as_str();
        self.texts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(text);
        // SAFETY: the text's heap buffer is owned by the arena until the
        // arena is dropped; it is never reallocated (the String is never
        // mutated again; only the String header moves when the Vec grows)
        // nor freed before then, and the returned reference cannot outlive
        // `&self`.
        unsafe { &*ptr }
    }
}

/// Deepest nesting of `{` / `[` accepted.
pub const MAX_DEPTH: usize = 256;
/// Deepest chain of nested includes accepted.
pub const MAX_INCLUDE_DEPTH: usize = 128;

/// A JSON-like value of the schema language.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value<'t> {
    Str(Cow<'t, str>),
    Bool(bool),
    List(Vec<Value<'t>>),
    /// Keys in the order written (no duplicates).
    Dict(Vec<(Cow<'t, str>, Value<'t>)>),
}

/// The members of a dict value.
pub type Dict<'t> = [(Cow<'t, str>, Value<'t>)];

impl<'t> Value<'t> {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_dict(&self) -> Option<&Dict<'t>> {
        match self {
            Value::Dict(d) => Some(d),
            _ => None,
        }
    }

    /// Look a key up in a dict value.
    pub fn get(&self, key: &str) -> Option<&Value<'t>> {
        self.as_dict().and_then(|d| get(d, key))
    }
}

/// Look a key up in a dict's members.
pub fn get<'a, 't>(d: &'a Dict<'t>, key: &str) -> Option<&'a Value<'t>> {
    d.iter().find(|(k, _)| k.as_ref() == key).map(|(_, v)| v)
}

/// One raw top-level expression as the parser saw it.
#[derive(Debug, Clone)]
pub struct RawExpr<'t> {
    pub info: Info,
    pub value: Vec<(Cow<'t, str>, Value<'t>)>,
    pub doc: Option<usize>,
    /// For `include`: the joined file name and whether it was seen before.
    pub include: Option<(String, bool)>,
}

/// Everything parsing produced, before expression checks.
#[derive(Debug, Clone, Default)]
pub struct RawSchema<'t> {
    pub exprs: Vec<RawExpr<'t>>,
    pub docs: Vec<Doc>,
    pub pragma: Pragma,
    pub legacy_returns_whitelist: Vec<String>,
    pub legacy_name_case_whitelist: Vec<String>,
    /// Doc comments were read with the older doc syntax.
    pub lenient_docs: bool,
    /// Some doc comment uses `Note:` / `Example:` sections.
    pub old_style_docs: bool,
    /// How many doc comments use them.
    pub old_style_blocks: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok {
    LBrace,
    RBrace,
    LBrack,
    RBrack,
    Comma,
    Colon,
    Str,
    True,
    False,
    /// A comment that starts a doc block or lies within one (`val` holds
    /// the comment text from `#` to the end of the line).
    Comment,
    Eof,
}

/// The 1-based column of byte `pos` in the line starting at `line_pos`.
pub fn column(src: &[u8], line_pos: usize, pos: usize) -> u32 {
    let mut col: u32 = 1;
    let end = pos.min(src.len());
    let mut i = line_pos.min(end);
    while i < end {
        let b = src[i];
        if b == b'\t' {
            col = ((col - 1) / 8 + 1).saturating_mul(8).saturating_add(1);
        } else if b & 0xC0 != 0x80 {
            // count characters, not UTF-8 continuation bytes
            col = col.saturating_add(1);
        }
        i += 1;
    }
    col
}

struct Lexer<'a> {
    /// The parser's stacks, kept for their capacity.
    stacks: Stacks<'a>,
    src: &'a [u8],
    text: &'a str,
    cursor: usize,
    pos: usize,
    line: u32,
    line_pos: usize,
    tok: Tok,
    /// String value (for `Str`).
    val: Cow<'a, str>,
    /// Byte range of the comment (for `Comment`).
    com: (usize, usize),
    file: Arc<SourceFile>,
    /// Legacy: commas between members and elements may be left out (QEMU
    /// 1.x's parser did not require them).
    optional_commas: bool,
}

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// The bytes of `w` that end the fast scan of a string, as a mask with
/// the high bit of each such byte set; its lowest bit marks the first one
/// exactly (a quote, a backslash, or a byte outside 32..127).
#[inline]
fn special_in_string(w: u64) -> u64 {
    let zero = |x: u64| x.wrapping_sub(LO) & !x & HI;
    let quote = zero(w ^ (LO * u64::from(b'\'')));
    let backslash = zero(w ^ (LO * u64::from(b'\\')));
    // Below 32, or 127 and up (high bit set, or 0x7f: + 1 sets it).
    let control = w.wrapping_sub(LO * 32) & !w & HI;
    let high = (w | w.wrapping_add(LO)) & HI;
    quote | backslash | control | high
}

/// Offset of the first `\n` at or after `from` in `src` (or its length).
#[inline]
fn find_nl(src: &[u8], from: usize) -> usize {
    let mut i = from;
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{
            __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_set1_epi8,
        };
        // Sixteen bytes at a time (SSE2 is part of x86-64).
        while i + 16 <= src.len() {
            // SAFETY: `i + 16 <= src.len()`, so the 16 bytes read lie
            // within `src`; the load has no alignment requirement and SSE2
            // is always available on x86-64.
            let mask = unsafe {
                let v = _mm_loadu_si128(src.as_ptr().add(i).cast::<__m128i>());
                _mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_set1_epi8(b'\n' as i8)))
            };
            if mask != 0 {
                return i + mask.trailing_zeros() as usize;
            }
            i += 16;
        }
    }
    while let Some(w) = src.get(i..i + 8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(w);
        let w = u64::from_le_bytes(word) ^ (LO * u64::from(b'\n'));
        let z = w.wrapping_sub(LO) & !w & HI;
        if z != 0 {
            return i + (z.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while i < src.len() && src[i] != b'\n' {
        i += 1;
    }
    i
}

fn is_word_end(b: u8) -> bool {
    matches!(
        b,
        b'[' | b']'
            | b'{'
            | b'}'
            | b':'
            | b','
            | b'\''
            | b' '
            | b'\t'
            | b'\n'
            | b'\r'
            | 0x0b
            | 0x0c
    )
}

impl<'a> Lexer<'a> {
    /// The text of the current `Comment` token.
    #[inline]
    fn comment(&self) -> &'a str {
        let (start, end) = self.com;
        debug_assert!(self.text.is_char_boundary(start) && self.text.is_char_boundary(end));
        // SAFETY: a comment runs from a `#` to the next `\n` or to the end
        // of the text: both ends are character boundaries (ASCII bytes, or
        // the end), and `start <= end <= text.len()`.
        unsafe { self.text.get_unchecked(start..end) }
    }

    fn info(&self) -> Info {
        Info::new(self.file.clone(), self.line)
    }

    #[cold]
    fn err(&self, msg: impl Into<String>) -> Box<QapiError> {
        Box::new(QapiError::at(
            &self.info(),
            column(self.src, self.line_pos, self.pos),
            msg,
        ))
    }

    /// Read the next token. Plain comments are skipped when `skip_comment`;
    /// a comment starting with `##` is always a token.
    ///
    /// Fast path, inlined: a punctuation mark or a string, after spaces on
    /// the same line; anything else goes to [`Lexer::accept_slow`].
    #[inline]
    fn accept(&mut self, skip_comment: bool) -> Result<(), Box<QapiError>> {
        let mut c = self.cursor;
        while self.src.get(c) == Some(&b' ') {
            c += 1;
        }
        let tok = match self.src.get(c) {
            Some(b'{') => Tok::LBrace,
            Some(b'}') => Tok::RBrace,
            Some(b'[') => Tok::LBrack,
            Some(b']') => Tok::RBrack,
            Some(b',') => Tok::Comma,
            Some(b':') => Tok::Colon,
            Some(b'\'') => {
                self.pos = c;
                self.cursor = c + 1;
                return self.string();
            }
            _ => {
                self.cursor = c;
                return self.accept_slow(skip_comment);
            }
        };
        self.pos = c;
        self.cursor = c + 1;
        self.tok = tok;
        Ok(())
    }

    #[inline(never)]
    fn accept_slow(&mut self, skip_comment: bool) -> Result<(), Box<QapiError>> {
        loop {
            // Runs of blanks (indentation) in one tight loop.
            let mut c = self.cursor;
            while let Some(b' ' | b'\t' | b'\r') = self.src.get(c) {
                c += 1;
            }
            self.cursor = c;
            let Some(&b) = self.src.get(self.cursor) else {
                self.pos = self.src.len().saturating_sub(1);
                self.tok = Tok::Eof;
                return Ok(());
            };
            self.pos = self.cursor;
            self.cursor += 1;
            match b {
                b'#' => {
                    let doc_start = self.src.get(self.cursor) == Some(&b'#');
                    let end = find_nl(self.src, self.cursor);
                    self.cursor = end;
                    if !skip_comment || doc_start {
                        self.com = (self.pos, end);
                        self.tok = Tok::Comment;
                        return Ok(());
                    }
                }
                b'{' => return self.set(Tok::LBrace),
                b'}' => return self.set(Tok::RBrace),
                b'[' => return self.set(Tok::LBrack),
                b']' => return self.set(Tok::RBrack),
                b',' => return self.set(Tok::Comma),
                b':' => return self.set(Tok::Colon),
                b'\'' => return self.string(),
                b'\n' => {
                    if self.cursor == self.src.len() {
                        self.pos = self.cursor - 1;
                        self.tok = Tok::Eof;
                        return Ok(());
                    }
                    self.line = self.line.saturating_add(1);
                    self.line_pos = self.cursor;
                }
                b' ' | b'\t' | b'\r' | 0x0b | 0x0c => {}
                _ => return self.word(),
            }
        }
    }

    /// A word: everything up to a structural character, white space or a
    /// quote (only `true` and `false` are words of the language).
    #[cold]
    fn word(&mut self) -> Result<(), Box<QapiError>> {
        let mut end = self.pos;
        while end < self.src.len() && !is_word_end(self.src[end]) {
            end += 1;
        }
        self.cursor = end;
        match &self.src[self.pos..end] {
            b"true" => self.set(Tok::True),
            b"false" => self.set(Tok::False),
            word => {
                let shown = String::from_utf8_lossy(word);
                let mut shown: String = shown.chars().take(80).collect();
                if word.len() > shown.len() {
                    shown.push_str("...");
                }
                Err(self.err(format!("stray '{shown}'")))
            }
        }
    }

    fn set(&mut self, t: Tok) -> Result<(), Box<QapiError>> {
        self.tok = t;
        Ok(())
    }

    #[inline(never)]
    fn string(&mut self) -> Result<(), Box<QapiError>> {
        let start = self.cursor;
        // Fast path: the closing quote with no escape or funny byte before;
        // eight bytes at a time while none of them is special.
        let mut i = start;
        while let Some(w) = self.src.get(i..i + 8) {
            let mut word = [0u8; 8];
            word.copy_from_slice(w);
            let m = special_in_string(u64::from_le_bytes(word));
            if m != 0 {
                i += (m.trailing_zeros() / 8) as usize;
                if self.src[i] == b'\'' {
                    self.val = Cow::Borrowed(&self.text[start..i]);
                    self.cursor = i + 1;
                    self.tok = Tok::Str;
                    return Ok(());
                }
                break;
            }
            i += 8;
        }
        self.string_slow(start, i)
    }

    /// The rest of a string from byte `i` (after the opening quote at
    /// `start` - 1), with escapes and errors.
    #[cold]
    fn string_slow(&mut self, start: usize, mut i: usize) -> Result<(), Box<QapiError>> {
        while i < self.src.len() {
            let b = self.src[i];
            if b == b'\'' {
                self.val = Cow::Borrowed(&self.text[start..i]);
                self.cursor = i + 1;
                self.tok = Tok::Str;
                return Ok(());
            }
            if b == b'\\' || !(32..127).contains(&b) {
                break;
            }
            i += 1;
        }
        let mut val = String::with_capacity(i - start + 16);
        val.push_str(&self.text[start..i]);
        self.cursor = i;
        loop {
            let Some(&b) = self.src.get(self.cursor) else {
                return Err(self.err("missing terminating \"'\""));
            };
            self.cursor += 1;
            match b {
                b'\n' => return Err(self.err("missing terminating \"'\"")),
                b'\'' => {
                    self.val = Cow::Owned(val);
                    self.tok = Tok::Str;
                    return Ok(());
                }
                b'\\' => {
                    let Some(&e) = self.src.get(self.cursor) else {
                        return Err(self.err("missing terminating \"'\""));
                    };
                    if e == b'\\' {
                        self.cursor += 1;
                        val.push('\\');
                    } else {
                        let ch = self
                            .text
                            .get(self.cursor..)
                            .and_then(|t| t.chars().next())
                            .unwrap_or('?');
                        return Err(self.err(format!("unknown escape \\{ch}")));
                    }
                }
                32..=126 => val.push(b as char),
                _ => return Err(self.err("funny character in string")),
            }
        }
    }
}

/// An open container: where its elements start on the parser's element
/// stack (and, for a dict, the key whose value is being parsed).
enum Frame<'t> {
    List(usize),
    Dict(usize, Cow<'t, str>),
}

/// The parser's stacks, kept between expressions for their capacity.
#[derive(Default)]
struct Stacks<'t> {
    frames: Vec<Frame<'t>>,
    /// Elements of the open lists, innermost last.
    items: Vec<Value<'t>>,
    /// Members of the open dicts, innermost last.
    members: Vec<(Cow<'t, str>, Value<'t>)>,
}

impl<'a> Lexer<'a> {
    fn too_deep(&self) -> Box<QapiError> {
        self.err(format!("nesting too deep (more than {MAX_DEPTH} levels)"))
    }

    /// Parse one value; the current token is its first token. Iterative,
    /// with an explicit stack bounded by [`MAX_DEPTH`]; each container's
    /// elements collect on a shared stack and move into a vector of the
    /// right size when it closes.
    fn get_expr(&mut self) -> Result<Value<'a>, Box<QapiError>> {
        let mut st = std::mem::take(&mut self.stacks);
        st.frames.clear();
        st.items.clear();
        st.members.clear();
        let r = self.get_expr_with(&mut st);
        self.stacks = st;
        r
    }

    fn get_expr_with(&mut self, st: &mut Stacks<'a>) -> Result<Value<'a>, Box<QapiError>> {
        loop {
            let mut value = match self.tok {
                Tok::LBrace => {
                    self.accept(true)?;
                    if self.tok == Tok::RBrace {
                        self.accept(true)?;
                        Some(Value::Dict(Vec::new()))
                    } else if self.tok != Tok::Str {
                        return Err(self.err("expected string or '}'"));
                    } else {
                        let start = st.members.len();
                        let key = self.dict_key(&st.members[start..])?;
                        if st.frames.len() >= MAX_DEPTH {
                            return Err(self.too_deep());
                        }
                        st.frames.push(Frame::Dict(start, key));
                        None
                    }
                }
                Tok::LBrack => {
                    self.accept(true)?;
                    if self.tok == Tok::RBrack {
                        self.accept(true)?;
                        Some(Value::List(Vec::new()))
                    } else if !matches!(
                        self.tok,
                        Tok::LBrace | Tok::LBrack | Tok::Str | Tok::True | Tok::False
                    ) {
                        return Err(self.err("expected '{', '[', ']', string, or boolean"));
                    } else {
                        if st.frames.len() >= MAX_DEPTH {
                            return Err(self.too_deep());
                        }
                        st.frames.push(Frame::List(st.items.len()));
                        None
                    }
                }
                Tok::Str => {
                    let s = std::mem::take(&mut self.val);
                    self.accept(true)?;
                    Some(Value::Str(s))
                }
                Tok::True => {
                    self.accept(true)?;
                    Some(Value::Bool(true))
                }
                Tok::False => {
                    self.accept(true)?;
                    Some(Value::Bool(false))
                }
                _ => return Err(self.err("expected '{', '[', string, or boolean")),
            };
            // Attach completed values to their containers.
            while let Some(v) = value.take() {
                match st.frames.last_mut() {
                    None => return Ok(v),
                    Some(Frame::List(start)) => {
                        let start = *start;
                        st.items.push(v);
                        let close = match self.tok {
                            Tok::RBrack => {
                                self.accept(true)?;
                                true
                            }
                            Tok::Comma => {
                                self.accept(true)?;
                                // Legacy: a trailing comma.
                                if self.tok == Tok::RBrack && self.optional_commas {
                                    self.accept(true)?;
                                    true
                                } else {
                                    false
                                }
                            }
                            Tok::LBrace | Tok::LBrack | Tok::Str | Tok::True | Tok::False
                                if self.optional_commas =>
                            {
                                false
                            }
                            _ => return Err(self.err("expected ',' or ']'")),
                        };
                        if close {
                            st.frames.pop();
                            value = Some(Value::List(st.items.drain(start..).collect()));
                        }
                    }
                    Some(Frame::Dict(start, key)) => {
                        let start = *start;
                        st.members.push((std::mem::take(key), v));
                        let close = match self.tok {
                            Tok::RBrace => {
                                self.accept(true)?;
                                true
                            }
                            Tok::Comma => {
                                self.accept(true)?;
                                // Legacy: a trailing comma.
                                if self.tok == Tok::RBrace && self.optional_commas {
                                    self.accept(true)?;
                                    true
                                } else if self.tok != Tok::Str {
                                    return Err(self.err("expected string"));
                                } else {
                                    *key = self.dict_key(&st.members[start..])?;
                                    false
                                }
                            }
                            Tok::Str if self.optional_commas => {
                                *key = self.dict_key(&st.members[start..])?;
                                false
                            }
                            _ => return Err(self.err("expected ',' or '}'")),
                        };
                        if close {
                            st.frames.pop();
                            value = Some(Value::Dict(st.members.drain(start..).collect()));
                        }
                    }
                }
            }
        }
    }

    /// The current token is a string key: check the colon and duplicates,
    /// and move to the value's first token.
    fn dict_key(&mut self, members: &Dict<'a>) -> Result<Cow<'a, str>, Box<QapiError>> {
        let key = std::mem::take(&mut self.val);
        self.accept(true)?;
        if self.tok != Tok::Colon {
            return Err(self.err("expected ':'"));
        }
        self.accept(true)?;
        // Lengths and last bytes first: most keys differ in those.
        let kb = key.as_bytes();
        let last = kb.last().copied();
        if members.iter().any(|(k, _)| {
            k.len() == kb.len() && k.as_bytes().last().copied() == last && k.as_bytes() == kb
        }) {
            return Err(self.err(format!("duplicate key '{key}'")));
        }
        Ok(key)
    }
}

impl<'a> DocSource<'a> for Lexer<'a> {
    #[inline]
    fn next_item(&mut self) -> Result<DocItem<'a>, Box<QapiError>> {
        // Fast path: blank space and line ends, then a comment line (the
        // general lexer below gives the same result, only slower).
        let src = self.src;
        let mut c = self.cursor;
        loop {
            match src.get(c) {
                Some(b' ' | b'\t' | b'\r' | 0x0b | 0x0c) => c += 1,
                Some(b'\n') if c + 1 < src.len() => {
                    c += 1;
                    self.line = self.line.saturating_add(1);
                    self.line_pos = c;
                }
                Some(b'#') => {
                    let end = find_nl(src, c + 1);
                    self.pos = c;
                    self.cursor = end;
                    self.com = (c, end);
                    self.tok = Tok::Comment;
                    break;
                }
                _ => {
                    self.cursor = c;
                    self.accept(false)?;
                    break;
                }
            }
        }
        let line = self.line;
        let at = (self.line_pos, self.pos);
        if self.tok != Tok::Comment {
            return Ok(DocItem::Unterminated { line, at });
        }
        let text = self.comment();
        if text.as_bytes().get(1) == Some(&b'#') {
            if text.len() != 2 {
                return Ok(DocItem::JunkAtEnd { line, at });
            }
            return Ok(DocItem::End);
        }
        Ok(DocItem::Line { line, at, text })
    }

    #[inline]
    fn next_line(&mut self) -> Option<(u32, doc::ItemPos, &'a str)> {
        // The previous comment's line end, then `#` (but not `##`) at the
        // start of the next line: what `next_item` would find, without
        // going through its cases.
        let src = self.src;
        let c = self.cursor;
        if src.get(c) != Some(&b'\n')
            || src.get(c + 1) != Some(&b'#')
            || src.get(c + 2) == Some(&b'#')
        {
            return None;
        }
        let start = c + 1;
        let end = find_nl(src, start + 1);
        self.line = self.line.saturating_add(1);
        self.line_pos = start;
        self.pos = start;
        self.cursor = end;
        self.com = (start, end);
        self.tok = Tok::Comment;
        Some((self.line, (start, start), self.comment()))
    }

    fn column(&self, at: doc::ItemPos) -> u32 {
        column(self.src, at.0, at.1)
    }
}

/// State shared by all files of one schema.
struct Ctx<'p, 't> {
    provider: &'p dyn SourceProvider,
    arena: &'t TextArena,
    dialect: Dialect,
    /// Canonical names of every file read so far.
    included: Vec<String>,
    /// Canonical names of the files being read: the main file, the file
    /// it includes, and so on down to the current one.
    chain: Vec<String>,
    /// The parser's stacks, reused from file to file.
    stacks: Stacks<'t>,
    /// Buffer for doc comment text, reused.
    doc_scratch: doc::DocScratch,
    lenient_docs: bool,
    keep_doc_text: bool,
    out: RawSchema<'t>,
}

/// Parse `fname` and everything it includes (expressions are not checked
/// yet).
///
/// File texts are kept in `arena`; the values borrow from them. Doc
/// comments are checked as QEMU checks them; their text is kept only with
/// `keep_doc_text`. With a
/// provider that can be shared between threads, the files are parsed on
/// two cores and put in order afterwards; whatever goes wrong there (an
/// error in an included file, an inclusion loop) is found again by reading
/// the files one after the other, which reports the error QEMU reports.
pub fn parse_files<'t>(
    fname: &str,
    dialect: Dialect,
    provider: &dyn SourceProvider,
    lenient_docs: bool,
    keep_doc_text: bool,
    arena: &'t TextArena,
) -> Result<RawSchema<'t>, QapiError> {
    if let Some(shared) = provider.shared() {
        let docs = parallel::Docs {
            lenient: lenient_docs,
            keep_text: keep_doc_text,
        };
        match parallel::parse_files(fname, dialect, shared, docs, arena) {
            parallel::Outcome::Parsed(raw) => return Ok(raw),
            parallel::Outcome::Error(e) => return Err(e),
            parallel::Outcome::Retry => {}
        }
    }
    let mut ctx = Ctx {
        provider,
        arena,
        dialect,
        included: Vec::new(),
        chain: Vec::new(),
        doc_scratch: doc::DocScratch::new(),
        stacks: Stacks::default(),
        lenient_docs,
        keep_doc_text,
        out: RawSchema::default(),
    };
    ctx.out.lenient_docs = lenient_docs;
    let text = provider
        .read(fname)
        .map_err(|e| QapiError::bare(format!("can't read schema file '{fname}': {e}")))?;
    ctx.included.push(provider.canonical(fname));
    let text = arena.alloc(with_final_newline(text));
    let file = Arc::new(SourceFile::new(fname.to_string(), None, text));
    ctx.chain.push(provider.canonical(fname));
    parse_file(&mut ctx, file, text, 0)?;
    Ok(ctx.out)
}

fn reject_expr_doc(docs: &[Doc], cur: Option<usize>, lenient: bool) -> Result<(), QapiError> {
    if lenient {
        return Ok(());
    }
    if let Some(d) = cur.and_then(|i| docs.get(i)) {
        if let Some(sym) = &d.symbol {
            return Err(QapiError::new(
                &d.info,
                format!("documentation for '{sym}' is not followed by the definition"),
            )
            .doc_error());
        }
    }
    Ok(())
}

/// QEMU reads a file as if it ended with a newline.
fn with_final_newline(mut text: String) -> String {
    if !text.ends_with('\n') {
        text.push('\n');
    }
    text
}

/// The file name an `include` expression names (checked by
/// [`FileParser::step`] to be a string).
fn include_name<'e>(e: &'e RawExpr<'_>) -> &'e str {
    e.value.first().and_then(|(_, v)| v.as_str()).unwrap_or("")
}

/// Reads one file's expressions and doc comments, stopping at each
/// `include` directive so that the caller decides what to do with it.
struct FileParser<'t> {
    lx: Lexer<'t>,
    started: bool,
    cur_doc: Option<usize>,
    lenient_docs: bool,
    keep_doc_text: bool,
    dialect: Dialect,
}

impl<'t> FileParser<'t> {
    fn new(
        file: Arc<SourceFile>,
        text: &'t str,
        dialect: Dialect,
        (lenient_docs, keep_doc_text): (bool, bool),
        stacks: Stacks<'t>,
    ) -> FileParser<'t> {
        FileParser {
            lx: Lexer {
                src: text.as_bytes(),
                text,
                cursor: 0,
                pos: 0,
                line: 1,
                line_pos: 0,
                tok: Tok::Eof,
                stacks,
                val: Cow::Borrowed(""),
                com: (0, 0),
                file,
                optional_commas: dialect == Dialect::Legacy,
            },
            started: false,
            cur_doc: None,
            lenient_docs,
            keep_doc_text,
            dialect,
        }
    }

    /// Read up to and including the next `include` directive, whose index
    /// in `out.exprs` is returned (its `include` is left for the caller to
    /// fill in), or to the end of the file (`None`).
    fn step(
        &mut self,
        out: &mut RawSchema<'t>,
        doc_scratch: &mut doc::DocScratch,
    ) -> Result<Option<usize>, QapiError> {
        let lx = &mut self.lx;
        if !self.started {
            self.started = true;
            // Room for the file's expressions and doc comments (QEMU's
            // schemas have one of each per 700 bytes or so), so that the
            // lists do not grow one doubling at a time.
            let room = lx.text.len() / 512;
            out.exprs.reserve(room);
            out.docs.reserve(room);
            lx.accept(true)?;
        }
        let lenient = self.lenient_docs;
        while lx.tok != Tok::Eof {
            let info = lx.info();
            if lx.tok == Tok::Comment {
                reject_expr_doc(&out.docs, self.cur_doc, lenient)?;
                if lx.comment() != "##" && !lenient {
                    return Err(lx
                        .err("junk after '##' at start of documentation comment")
                        .doc_error());
                }
                let d = doc::parse_doc(&info, lx, lenient, self.keep_doc_text, doc_scratch)?;
                // Lenient docs may end at a token that is not a comment.
                let unterminated = lx.tok != Tok::Comment;
                out.old_style_docs |= d.old_style;
                out.old_style_blocks += usize::from(d.old_style);
                out.docs.push(d.doc);
                self.cur_doc = Some(out.docs.len() - 1);
                if !unterminated {
                    lx.accept(true)?;
                }
                continue;
            }
            let expr = lx.get_expr()?;
            let Value::Dict(expr) = expr else {
                return Err(QapiError::new(
                    &info,
                    "top-level expression must be an object",
                ));
            };
            if let Some(inc) = get(&expr, "include") {
                reject_expr_doc(&out.docs, self.cur_doc, lenient)?;
                if expr.len() != 1 {
                    return Err(QapiError::new(&info, "invalid 'include' directive"));
                }
                if !matches!(inc, Value::Str(_)) {
                    return Err(QapiError::new(&info, "value of 'include' must be a string"));
                }
                out.exprs.push(RawExpr {
                    info,
                    value: expr,
                    doc: None,
                    include: None,
                });
                self.cur_doc = None;
                return Ok(Some(out.exprs.len() - 1));
            } else if let Some(pragma) = get(&expr, "pragma") {
                reject_expr_doc(&out.docs, self.cur_doc, lenient)?;
                if expr.len() != 1 {
                    return Err(QapiError::new(&info, "invalid 'pragma' directive"));
                }
                let Value::Dict(pairs) = pragma else {
                    return Err(QapiError::new(&info, "value of 'pragma' must be an object"));
                };
                for (name, value) in pairs {
                    apply_pragma(out, self.dialect, name, value, &info)?;
                }
                out.exprs.push(RawExpr {
                    info,
                    value: expr,
                    doc: None,
                    include: None,
                });
            } else {
                if let Some(d) = self.cur_doc.and_then(|i| out.docs.get(i)) {
                    if d.symbol.is_none() && lenient {
                        self.cur_doc = None;
                    } else if d.symbol.is_none() {
                        return Err(QapiError::new(&d.info, "definition documentation required")
                            .doc_error());
                    }
                }
                out.exprs.push(RawExpr {
                    info,
                    value: expr,
                    doc: self.cur_doc,
                    include: None,
                });
            }
            self.cur_doc = None;
        }
        Ok(None)
    }

    /// The end of the file: a doc comment left over is an error. Gives
    /// the parser's stacks back for the next file.
    fn finish(self, out: &RawSchema<'t>) -> Result<Stacks<'t>, QapiError> {
        reject_expr_doc(&out.docs, self.cur_doc, self.lenient_docs)?;
        Ok(self.lx.stacks)
    }
}

fn parse_file<'t>(
    ctx: &mut Ctx<'_, 't>,
    file: Arc<SourceFile>,
    text: &'t str,
    depth: usize,
) -> Result<(), QapiError> {
    let mut fp = FileParser::new(
        file.clone(),
        text,
        ctx.dialect,
        (ctx.lenient_docs, ctx.keep_doc_text),
        std::mem::take(&mut ctx.stacks),
    );
    while let Some(i) = fp.step(&mut ctx.out, &mut ctx.doc_scratch)? {
        let info = ctx.out.exprs[i].info.clone();
        let incl_fname = join_include(&file.name, include_name(&ctx.out.exprs[i]));
        let canon = ctx.provider.canonical(&incl_fname);
        // An inclusion loop: the file is one of those including us.
        if ctx.chain.contains(&canon) {
            let name = include_name(&ctx.out.exprs[i]);
            return Err(QapiError::new(&info, format!("inclusion loop for {name}")));
        }
        let repeated = ctx.included.contains(&canon);
        ctx.out.exprs[i].include = Some((incl_fname.clone(), repeated));
        if !repeated {
            check_include_depth(depth, &info)?;
            ctx.included.push(canon.clone());
            let sub = ctx
                .provider
                .read(&incl_fname)
                .map_err(|e| include_read_error(&info, &incl_fname, &e))?;
            let sub = ctx.arena.alloc(with_final_newline(sub));
            let subfile = Arc::new(SourceFile::new(incl_fname, Some(info), sub));
            ctx.chain.push(canon);
            parse_file(ctx, subfile, sub, depth + 1)?;
            ctx.chain.pop();
        }
    }
    ctx.stacks = fp.finish(&ctx.out)?;
    Ok(())
}

fn check_include_depth(depth: usize, info: &Info) -> Result<(), QapiError> {
    if depth >= MAX_INCLUDE_DEPTH {
        return Err(QapiError::new(
            info,
            format!("includes nested too deeply (more than {MAX_INCLUDE_DEPTH} levels)"),
        ));
    }
    Ok(())
}

#[cold]
fn include_read_error(info: &Info, fname: &str, e: &ReadError) -> QapiError {
    QapiError::new(info, format!("can't read include file '{fname}': {e}"))
}

fn apply_pragma(
    out: &mut RawSchema<'_>,
    dialect: Dialect,
    name: &str,
    value: &Value<'_>,
    info: &Info,
) -> Result<(), QapiError> {
    let list = |v: &Value<'_>| -> Result<Vec<String>, QapiError> {
        let bad = || QapiError::new(info, format!("pragma {name} must be a list of strings"));
        let Value::List(items) = v else {
            return Err(bad());
        };
        items
            .iter()
            .map(|i| i.as_str().map(str::to_string).ok_or_else(bad))
            .collect()
    };
    let p = &mut out.pragma;
    match name {
        "doc-required" => match value {
            Value::Bool(b) => p.doc_required = *b,
            _ => {
                return Err(QapiError::new(
                    info,
                    "pragma 'doc-required' must be boolean",
                ))
            }
        },
        "command-name-exceptions" => p.command_name_exceptions = list(value)?,
        "command-returns-exceptions" => p.command_returns_exceptions = list(value)?,
        "documentation-exceptions" => p.documentation_exceptions = list(value)?,
        "member-name-exceptions" => p.member_name_exceptions = list(value)?,
        "returns-whitelist" | "name-case-whitelist" if dialect == Dialect::Legacy => {
            let l = list(value)?;
            if name == "returns-whitelist" {
                p.command_returns_exceptions.extend(l.iter().cloned());
                out.legacy_returns_whitelist = l;
            } else {
                p.member_name_exceptions.extend(l.iter().cloned());
                p.command_name_exceptions.extend(l.iter().cloned());
                out.legacy_name_case_whitelist = l;
            }
        }
        "returns-whitelist" | "name-case-whitelist" => {
            return Err(QapiError::new(info, format!("unknown pragma '{name}'")).legacy_hint());
        }
        _ => return Err(QapiError::new(info, format!("unknown pragma '{name}'"))),
    }
    Ok(())
}
