//! Doc comment blocks: from the lines between `##` and `##` to a
//! structured [`Doc`] (QEMU 10.0's model), with QEMU's doc errors.
//!
//! A block whose first line is `@NAME:` documents the definition NAME:
//! after the symbol line come body paragraphs, `@member:` descriptions, a
//! `Features:` line with `@feature:` descriptions, tagged sections
//! (`Returns:`, `Errors:`, `Since:`, `TODO:`) and plain paragraphs.
//! Any other block is free-form documentation. Descriptions and tagged
//! sections continue over indented lines; a line indented less than the
//! first continuation line ends them, but only after a blank line.

use crate::ast::{Doc, DocSection, SectionKind};
use crate::error::QapiError;
use crate::source::Info;

/// Where an item starts: the byte offsets of its line's start and of
/// the item itself (the column is only worked out for errors).
pub type ItemPos = (usize, usize);

/// One token of a doc comment block, as the lexer saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DocItem<'t> {
    /// A comment line: `text` runs from `#` to the end of the line.
    Line {
        line: u32,
        at: ItemPos,
        text: &'t str,
    },
    /// The closing `##`.
    End,
    /// A closing line starting with `##` followed by more text.
    JunkAtEnd { line: u32, at: ItemPos },
    /// A token that is not a comment, before the closing `##`.
    Unterminated { line: u32, at: ItemPos },
}

/// Where the tokens of a doc comment block come from (the lexer): each
/// call moves to the next token.
pub trait DocSource<'t> {
    fn next_item(&mut self) -> Result<DocItem<'t>, Box<QapiError>>;

    /// The next item when it is a comment line that starts a line of its
    /// own right after the previous one (by far the most common item), as
    /// [`DocItem::Line`]'s fields; `None` (having moved nowhere) for
    /// anything else, which [`DocSource::next_item`] then reads.
    fn next_line(&mut self) -> Option<(u32, ItemPos, &'t str)> {
        None
    }

    /// The 1-based column of an item's position.
    fn column(&self, at: ItemPos) -> u32;
}

struct Reader<'a, 't, S: DocSource<'t>> {
    info: &'a Info,
    lenient: bool,
    items: &'a mut S,
    /// Position of the last item read (for errors); `None` before the
    /// first one (column 1).
    line: u32,
    at: Option<ItemPos>,
    done: bool,
    _t: std::marker::PhantomData<&'t str>,
}

impl<'t, S: DocSource<'t>> Reader<'_, 't, S> {
    #[cold]
    fn err(&self, msg: impl Into<String>) -> Box<QapiError> {
        let col = self.at.map_or(1, |at| self.items.column(at));
        Box::new(QapiError::at(&self.line_info(), col, msg).doc_error())
    }

    fn line_info(&self) -> Info {
        Info::new(self.info.file.clone(), self.line)
    }

    /// The next line with `# ` removed and trailing white space trimmed;
    /// `None` at the closing `##`.
    #[inline]
    fn next(&mut self) -> Result<Option<&'t str>, Box<QapiError>> {
        if self.done {
            return Ok(None);
        }
        let item = match self.items.next_line() {
            Some((line, at, text)) => DocItem::Line { line, at, text },
            None => self.items.next_item()?,
        };
        match item {
            DocItem::Line { line, at, text } => {
                self.line = line;
                self.at = Some(at);
                let b = text.as_bytes();
                if b.len() == 1 {
                    return Ok(Some(""));
                }
                if b[1] != b' ' {
                    if self.lenient {
                        return Ok(Some(trim_end(&text[1..])));
                    }
                    return Err(self.err("missing space after #"));
                }
                // SAFETY: the line starts with `#` and a space (ASCII), so
                // byte 2 is a character boundary within it.
                Ok(Some(trim_end(unsafe { text.get_unchecked(2..) })))
            }
            DocItem::End => {
                self.done = true;
                Ok(None)
            }
            DocItem::JunkAtEnd { line, at } => {
                self.line = line;
                self.at = Some(at);
                if self.lenient {
                    self.done = true;
                    return Ok(None);
                }
                Err(self.err("junk after '##' at end of documentation comment"))
            }
            DocItem::Unterminated { line, at } => {
                self.line = line;
                self.at = Some(at);
                if self.lenient {
                    self.done = true;
                    return Ok(None);
                }
                Err(self.err("documentation comment must end with '##'"))
            }
        }
    }
}

/// Box a doc comment error (errors travel boxed inside the parser, so
/// that results stay small).
#[cold]
fn doc_err(e: QapiError) -> Box<QapiError> {
    Box::new(e.doc_error())
}

impl From<Box<QapiError>> for QapiError {
    fn from(e: Box<QapiError>) -> QapiError {
        *e
    }
}

/// `str::trim_end`, with a fast answer for lines that end in a visible
/// ASCII character.
#[inline]
fn trim_end(s: &str) -> &str {
    match s.as_bytes().last() {
        Some(&b) if b > b' ' && b < 0x80 => s,
        None => s,
        _ => s.trim_end(),
    }
}

/// `@NAME:` at the start of a line: the name and the text after the colon
/// (and any spaces).
fn at_name_colon(line: &str) -> Option<(&str, &str)> {
    let rest = line.strip_prefix('@')?;
    // Names are short: a byte loop finds the colon sooner than memchr.
    let colon = rest.bytes().position(|b| b == b':')?;
    let text = &rest[colon + 1..];
    let spaces = text.bytes().take_while(|&b| b == b' ').count();
    Some((&rest[..colon], &text[spaces..]))
}

/// A tagged section line: the tag as written and the text after it. A tag
/// followed by `::` is rST markup, not a section.
fn tagged(line: &str) -> Option<(&'static str, &str)> {
    const TAGS: [&str; 8] = [
        "Returns", "Errors", "Since", "Notes", "Note", "Examples", "Example", "TODO",
    ];
    for tag in TAGS {
        if let Some(rest) = line.strip_prefix(tag) {
            if rest.starts_with("::") {
                continue;
            }
            if let Some(text) = rest.strip_prefix(':') {
                return Some((tag, text.trim_start_matches(' ')));
            }
        }
    }
    None
}

fn indent_of(line: &str) -> usize {
    line.bytes().take_while(|b| b.is_ascii_whitespace()).count()
}

/// The text of the current section so far. Sections only receive text
/// while current; the text is stored when the next one starts. When the
/// caller does not keep doc text, only whether there is any is tracked.
struct Scratch {
    buf: String,
    keep: bool,
    /// Something (a line, or a paragraph break) was appended.
    any: bool,
    /// A line that is not empty was appended.
    text: bool,
}

impl Scratch {
    fn line(&mut self, line: &str) {
        self.any = true;
        self.text |= !line.is_empty();
        if self.keep {
            self.buf.push_str(line);
            self.buf.push('\n');
        }
    }

    /// A blank line between paragraphs (unless there is one already).
    fn paragraph_break(&mut self) {
        self.any = true;
        if self.keep && !self.buf.ends_with("\n\n") {
            self.buf.push('\n');
        }
    }

    /// The text so far, without leading and trailing newlines (`None`
    /// when there is none, or when it is not kept); starts afresh.
    fn take(&mut self) -> Option<String> {
        let kept = if self.keep && self.text {
            let b = self.buf.as_bytes();
            let start = b.iter().position(|&c| c != b'\n').unwrap_or(b.len());
            let end = b.iter().rposition(|&c| c != b'\n').map_or(start, |e| e + 1);
            // Cutting at newlines (ASCII) keeps character boundaries.
            Some(self.buf[start..end].to_string())
        } else {
            None
        };
        self.buf.clear();
        self.any = false;
        self.text = false;
        kept
    }
}

/// Which section receives appended lines.
#[derive(Clone, Copy)]
enum Cur {
    Body,
    Arg(usize),
    Feature(usize),
    Section(usize),
}

struct Builder<'a, 't, S: DocSource<'t>> {
    r: Reader<'a, 't, S>,
    doc: Doc,
    cur: Cur,
    /// Accept the doc syntax of QEMU before 9.1 (and the unchecked text
    /// of QEMU before 2.9).
    lenient: bool,
    /// Saw a `Note:` / `Example:` section (syntax QEMU 10.0 retired).
    old_style: bool,
    scratch: Scratch,
    /// The first description or tagged section without text (QEMU 10.0
    /// requires text; the error names the one written first).
    untexted: Option<(SectionKind, Info)>,
    /// The last `@NAME:` line split (by the address of its text: a line
    /// is looked at several times on its way through the builder).
    at_memo: Option<(usize, (&'t str, &'t str))>,
}

impl<'t, S: DocSource<'t>> Builder<'_, 't, S> {
    /// [`at_name_colon`], remembering the last answer.
    #[inline]
    fn at(&mut self, line: &'t str) -> Option<(&'t str, &'t str)> {
        if line.as_bytes().first() != Some(&b'@') {
            return None;
        }
        let key = line.as_ptr() as usize;
        if let Some((k, v)) = self.at_memo {
            if k == key {
                return Some(v);
            }
        }
        let v = at_name_colon(line)?;
        self.at_memo = Some((key, v));
        Some(v)
    }

    fn cur_section(&mut self) -> &mut DocSection {
        let d = &mut self.doc;
        match self.cur {
            Cur::Body => &mut d.body,
            Cur::Arg(i) => &mut d.args[i],
            Cur::Feature(i) => &mut d.features[i],
            Cur::Section(i) => &mut d.sections[i],
        }
    }

    fn append(&mut self, line: &str) {
        self.scratch.line(line);
    }

    /// Store the current section's text (without leading and trailing
    /// newlines) and make `next` current.
    fn switch(&mut self, next: Cur) {
        let has_text = self.scratch.text;
        let text = self.scratch.take();
        let first = self.untexted.is_none();
        let s = self.cur_section();
        if let Some(text) = text {
            s.text = text;
        }
        if !has_text && s.kind != SectionKind::Plain && first {
            self.untexted = Some((s.kind, s.info.clone()));
        }
        self.cur = next;
    }

    fn section(&self, kind: SectionKind, name: Option<String>) -> DocSection {
        DocSection {
            kind,
            name,
            info: self.r.line_info(),
            text: String::new(),
        }
    }

    /// Continue the current plain section with a new paragraph, or start
    /// a plain section.
    fn ensure_untagged(&mut self) {
        let info = self.r.line_info();
        let empty = !self.scratch.any;
        let s = self.cur_section();
        if s.kind == SectionKind::Plain {
            if empty {
                s.info = info;
            }
            self.scratch.paragraph_break();
            return;
        }
        let s = self.section(SectionKind::Plain, None);
        self.doc.sections.push(s);
        self.switch(Cur::Section(self.doc.sections.len() - 1));
    }

    fn new_argument(&mut self, name: &str) -> Result<(), Box<QapiError>> {
        if name.is_empty() {
            return Err(doc_err(QapiError::new(
                &self.r.line_info(),
                "invalid parameter name",
            )));
        }
        if self.doc.arg(name).is_some() && !self.lenient {
            return Err(doc_err(QapiError::new(
                &self.r.line_info(),
                format!("'{name}' parameter name duplicated"),
            )));
        }
        let s = self.section(SectionKind::Member, Some(name.to_string()));
        self.doc.args.push(s);
        self.switch(Cur::Arg(self.doc.args.len() - 1));
        Ok(())
    }

    fn new_feature(&mut self, name: &str) -> Result<(), Box<QapiError>> {
        if name.is_empty() {
            return Err(doc_err(QapiError::new(
                &self.r.line_info(),
                "invalid feature name",
            )));
        }
        if self.doc.feature(name).is_some() && !self.lenient {
            return Err(doc_err(QapiError::new(
                &self.r.line_info(),
                format!("'{name}' feature name duplicated"),
            )));
        }
        let s = self.section(SectionKind::Feature, Some(name.to_string()));
        self.doc.features.push(s);
        self.switch(Cur::Feature(self.doc.features.len() - 1));
        Ok(())
    }

    fn new_tagged(&mut self, kind: SectionKind) -> Result<(), Box<QapiError>> {
        if matches!(kind, SectionKind::Returns | SectionKind::Since)
            && self.doc.section(kind).is_some()
            && !self.lenient
        {
            return Err(doc_err(QapiError::new(
                &self.r.line_info(),
                format!("duplicated '{kind}' section"),
            )));
        }
        let s = self.section(kind, None);
        self.doc.sections.push(s);
        self.switch(Cur::Section(self.doc.sections.len() - 1));
        Ok(())
    }

    /// The continuation lines of a description or tagged section; returns
    /// the first line that is not part of it.
    fn indented(&mut self) -> Result<Option<&'t str>, Box<QapiError>> {
        let mut line = self.r.next()?;
        while line == Some("") {
            self.append("");
            line = self.r.next()?;
        }
        let Some(first) = line else { return Ok(None) };
        let indent = indent_of(first);
        if indent == 0 {
            return Ok(Some(first));
        }
        self.append(first);
        let mut prev_blank = false;
        loop {
            let Some(l) = self.r.next()? else {
                return Ok(None);
            };
            if self.at(l).is_some() {
                return Ok(Some(l));
            }
            if !l.is_empty() && indent_of(l) < indent {
                if prev_blank || self.lenient {
                    return Ok(Some(l));
                }
                return Err(self.r.err(format!(
                    "unexpected de-indent (expected at least {indent} spaces)"
                )));
            }
            self.append(l);
            prev_blank = l.is_empty();
        }
    }

    /// The rest of a plain paragraph; returns the blank line ending it
    /// (`Some("")`) or `None` at the end of the block.
    fn paragraph(&mut self) -> Result<Option<&'t str>, Box<QapiError>> {
        loop {
            match self.r.next()? {
                None => return Ok(None),
                Some(l) if l.is_empty() => return Ok(Some(l)),
                Some(l) => self.append(l),
            }
        }
    }

    /// `@NAME: text` lines with their continuations, as arguments or
    /// features; returns the first line that is not part of them.
    fn descriptions(
        &mut self,
        mut line: Option<&'t str>,
        feature: bool,
    ) -> Result<Option<&'t str>, Box<QapiError>> {
        while let Some((name, text)) = line.and_then(|l| self.at(l)) {
            if feature {
                self.new_feature(name)?;
            } else {
                self.new_argument(name)?;
            }
            if !text.is_empty() {
                self.append(text);
            }
            line = self.indented()?;
        }
        Ok(line)
    }

    fn definition(&mut self) -> Result<(), Box<QapiError>> {
        let mut line = self.r.next()?;
        let mut no_more_args = false;
        loop {
            while line == Some("") {
                line = self.r.next()?;
            }
            let Some(l) = line.take() else { break };
            if l == "Features:" {
                if !self.doc.features.is_empty() && !self.lenient {
                    return Err(self.r.err("duplicated 'Features:' line"));
                }
                line = self.r.next()?;
                while line == Some("") {
                    line = self.r.next()?;
                }
                line = self.descriptions(line, true)?;
                if self.doc.features.is_empty() && !self.lenient {
                    return Err(self.r.err("feature descriptions expected"));
                }
                no_more_args = true;
            } else if let Some((name, _)) = self.at(l) {
                if no_more_args && !self.lenient {
                    return Err(self
                        .r
                        .err(format!("description of '@{name}:' follows a section")));
                }
                line = self.descriptions(Some(l), false)?;
                no_more_args = true;
            } else if let Some((tag, text)) = tagged(l) {
                if tag.starts_with("Note") || tag.starts_with("Example") {
                    self.old_style = true;
                    if self.lenient {
                        // Before 9.1: a section of free text.
                        let s = self.section(SectionKind::Plain, None);
                        self.doc.sections.push(s);
                        self.switch(Cur::Section(self.doc.sections.len() - 1));
                        self.append(l);
                        line = self.indented()?;
                        no_more_args = true;
                        continue;
                    }
                }
                if tag.starts_with("Note") {
                    return Err(self.r.err(format!(
                        "The '{tag}' section is no longer supported. Please use rST's '.. note::' or \
                         '.. admonition:: notes' directives, or another suitable admonition instead."
                    )));
                }
                if tag.starts_with("Example") {
                    return Err(self.r.err(format!(
                        "The '{tag}' section is no longer supported. Please use the '.. qmp-example::' \
                         directive, or other suitable markup instead."
                    )));
                }
                let kind = match tag {
                    "Returns" => SectionKind::Returns,
                    "Errors" => SectionKind::Errors,
                    "Since" => SectionKind::Since,
                    _ => SectionKind::Todo,
                };
                self.new_tagged(kind)?;
                if !text.is_empty() {
                    self.append(text);
                }
                line = self.indented()?;
                no_more_args = true;
            } else if l.starts_with('=') && !self.lenient {
                return Err(self
                    .r
                    .err("unexpected '=' markup in definition documentation"));
            } else {
                self.ensure_untagged();
                self.append(l);
                line = self.paragraph()?;
            }
        }
        Ok(())
    }

    fn freeform(&mut self, first_line: Option<&'t str>) -> Result<(), Box<QapiError>> {
        self.ensure_untagged();
        let mut line = first_line;
        let mut first = true;
        while let Some(l) = line {
            if let Some((name, _)) = self.at(l).filter(|_| !self.lenient) {
                return Err(self
                    .r
                    .err(format!("'@{name}:' not allowed in free-form documentation")));
            }
            if l.starts_with('=') && !first && !self.lenient {
                return Err(self.r.err("'=' heading must come first in a comment block"));
            }
            self.append(l);
            line = self.r.next()?;
            first = false;
        }
        Ok(())
    }
}

/// Buffers [`parse_doc`] reuses from one block to the next: the text of
/// the current section, and the block's descriptions and sections while
/// they are collected (each block keeps lists of exactly its size, and
/// the memory of lists that grow is not taken again for every block).
#[derive(Debug, Default)]
pub struct DocScratch {
    text: String,
    args: Vec<DocSection>,
    features: Vec<DocSection>,
    sections: Vec<DocSection>,
}

impl DocScratch {
    pub fn new() -> DocScratch {
        DocScratch {
            text: String::with_capacity(4096),
            ..DocScratch::default()
        }
    }
}

/// A parsed doc comment block.
#[derive(Debug, Clone)]
pub struct ParsedDoc {
    pub doc: Doc,
    /// The block uses `Note:` / `Example:` sections (QEMU before 9.1).
    pub old_style: bool,
}

/// Build a [`Doc`] from the tokens of one block, read from `items` up to
/// and including its closing `##`; `info` is the position of its opening
/// `##`. `lenient` accepts the doc syntax of older QEMU
/// (sections QEMU 10.0 retired, loose indentation, `@Symbol` without a
/// colon) instead of raising QEMU 10.0's errors. Without `keep_text`,
/// every section's text is left empty (the checks that need to know
/// whether there is text are made all the same). `scratch` holds buffers
/// reused between calls.
pub fn parse_doc<'t, S: DocSource<'t>>(
    info: &Info,
    items: &mut S,
    lenient: bool,
    keep_text: bool,
    scratch: &mut DocScratch,
) -> Result<ParsedDoc, QapiError> {
    let mut r = Reader {
        info,
        lenient,
        items,
        line: info.line,
        at: None,
        done: false,
        _t: std::marker::PhantomData,
    };
    let first = r.next()?;
    let body = DocSection {
        kind: SectionKind::Plain,
        name: None,
        info: info.clone(),
        text: String::new(),
    };
    let doc = Doc {
        info: info.clone(),
        symbol: None,
        body,
        args: take_cleared(&mut scratch.args),
        features: take_cleared(&mut scratch.features),
        sections: take_cleared(&mut scratch.sections),
    };
    let mut b = Builder {
        r,
        doc,
        cur: Cur::Body,
        lenient,
        old_style: false,
        at_memo: None,
        scratch: Scratch {
            buf: {
                scratch.text.clear();
                std::mem::take(&mut scratch.text)
            },
            keep: keep_text,
            any: false,
            text: false,
        },
        untexted: None,
    };
    match first {
        Some(l) if l.starts_with('@') && lenient => {
            let sym: String = l[1..]
                .chars()
                .take_while(|c| !c.is_whitespace() && *c != ':')
                .collect();
            if sym.is_empty() {
                b.freeform(Some(l))?;
            } else {
                b.doc.symbol = Some(sym);
                b.definition()?;
            }
        }
        Some(l) if l.starts_with('@') => {
            if !l.ends_with(':') {
                return Err(*b.r.err("line should end with ':'"));
            }
            let sym = &l[1..l.len() - 1];
            if sym.is_empty() {
                return Err(*b.r.err("name required after '@'"));
            }
            b.doc.symbol = Some(sym.to_string());
            b.definition()?;
        }
        first => b.freeform(first)?,
    }
    b.switch(Cur::Body);
    scratch.text = std::mem::take(&mut b.scratch.buf);
    let mut doc = b.doc;
    scratch.args = std::mem::take(&mut doc.args);
    scratch.features = std::mem::take(&mut doc.features);
    scratch.sections = std::mem::take(&mut doc.sections);
    // Lists of exactly the block's size (none for an empty list).
    doc.args = exact(&mut scratch.args);
    doc.features = exact(&mut scratch.features);
    doc.sections = exact(&mut scratch.sections);
    if !lenient {
        // Descriptions and tagged sections need text.
        if let Some((kind, info)) = &b.untexted {
            return Err(QapiError::new(info, format!("text required after '{kind}:'")).doc_error());
        }
    }
    Ok(ParsedDoc {
        doc,
        old_style: b.old_style,
    })
}

/// The sections of a scratch list, moved to a list of their size.
fn exact(v: &mut Vec<DocSection>) -> Vec<DocSection> {
    let mut out = Vec::with_capacity(v.len());
    out.append(v);
    out
}

/// A scratch list, emptied (what an earlier block failed with is dropped).
fn take_cleared(v: &mut Vec<DocSection>) -> Vec<DocSection> {
    v.clear();
    std::mem::take(v)
}
