//! Shape checks and normalisation of one top-level expression, and the
//! front end's entry point [`parse_schema`].
//!
//! Checks run in QEMU's order, after every file has been parsed: the
//! definition's meta-type and name, its doc comment, its keys, its
//! kind-specific members, then `if`, `features` and flags. Messages are
//! QEMU's. Under [`Dialect::Modern`], an error caused by a construct of the
//! legacy dialect carries a hint ([`QapiError::legacy_hint`]) that is not
//! part of the message.
//!
//! Expressions are consumed: their strings move into the normalised
//! [`ast`](crate::ast) form, and message texts are only built for errors.

use crate::ast::*;
use crate::error::QapiError;
use crate::parser::{self, get, Dict, RawExpr, TextArena, Value};
use crate::source::{Dialect, Info, SourceProvider};
use std::borrow::Cow;

type Result<T> = std::result::Result<T, QapiError>;

/// Read the schema `path` (and everything it includes) from `provider`,
/// parse it, and check and normalise every expression.
///
/// The result lists the expressions in QEMU's order with their doc
/// comments; cross-expression checks are left to [`crate::model`].
pub fn parse_schema(
    path: &str,
    dialect: Dialect,
    provider: &dyn SourceProvider,
) -> Result<ParsedSchema> {
    parse_schema_with(path, dialect, provider, true)
}

/// [`parse_schema`], keeping the text of doc comments only with
/// `keep_doc_text` (without it, doc comments get every check all the
/// same; their sections' texts are left empty).
pub fn parse_schema_with(
    path: &str,
    dialect: Dialect,
    provider: &dyn SourceProvider,
    keep_doc_text: bool,
) -> Result<ParsedSchema> {
    parse_then(path, dialect, provider, keep_doc_text, |raw, mut parsed| {
        parsed.exprs = Checker::of(&parsed).check_exprs(raw, None)?;
        Ok(parsed)
    })
}

/// Check every expression of `parsed` (whose own list of expressions is
/// empty) and hand each, in order, to `define`, on the calling thread
/// while the expressions after it are still being checked. An error of an
/// expression's checks wins over any error of `define`, as when every
/// expression is checked before any is defined.
pub(crate) fn check_each(
    raw: Vec<RawExpr<'_>>,
    parsed: &ParsedSchema,
    define: &mut dyn FnMut(TopExpr) -> Result<()>,
) -> Result<()> {
    Checker::of(parsed).check_exprs(raw, Some(define))?;
    Ok(())
}

/// Read and parse the schema `path`, then hand its raw expressions and
/// everything else it holds (as a [`ParsedSchema`] without expressions) to
/// `then`, which checks the expressions.
pub(crate) fn parse_then<T>(
    path: &str,
    dialect: Dialect,
    provider: &dyn SourceProvider,
    keep_doc_text: bool,
    then: impl for<'t> FnOnce(Vec<RawExpr<'t>>, ParsedSchema) -> Result<T>,
) -> Result<T> {
    // Doc comments: QEMU 10.0's rules, except for schemas written for
    // older QEMU. The legacy dialect always reads them the older way; a
    // modern schema whose doc comments fail QEMU 10.0's rules is read again
    // the older way, and accepted so if it uses the retired `Note:` /
    // `Example:` sections in several doc comments (as QEMU up to 9.0 did),
    // else QEMU 10.0's error stands.
    let lenient = dialect == Dialect::Legacy;
    let arena = TextArena::new();
    let keep = keep_doc_text;
    let raw = match parser::parse_files(path, dialect, provider, lenient, keep, &arena) {
        Ok(raw) => raw,
        Err(e) if lenient || e.hint.is_some() => return Err(e),
        Err(e) => {
            if e.doc_syntax {
                let arena2 = TextArena::new();
                if let Ok(raw) = parser::parse_files(path, dialect, provider, true, keep, &arena2) {
                    if raw.old_style_blocks >= OLD_STYLE_MIN_BLOCKS {
                        let (raw, parsed) = split(path, dialect, raw);
                        return then(raw, parsed);
                    }
                }
            }
            // Say so when the legacy dialect reads what QEMU 10.0 rejects
            // (e.g. QEMU 1.x's optional commas, older doc comments).
            let arena3 = TextArena::new();
            if parser::parse_files(path, Dialect::Legacy, provider, true, keep, &arena3).is_ok() {
                let hint = if e.doc_syntax {
                    crate::error::LEGACY_DOC_HINT
                } else {
                    crate::error::LEGACY_HINT
                };
                return Err(e.with_hint(hint));
            }
            return Err(e);
        }
    };
    let (raw, parsed) = split(path, dialect, raw);
    then(raw, parsed)
}

/// The raw expressions, and the rest as a [`ParsedSchema`] without
/// expressions.
fn split<'t>(
    path: &str,
    dialect: Dialect,
    raw: parser::RawSchema<'t>,
) -> (Vec<RawExpr<'t>>, ParsedSchema) {
    let parser::RawSchema {
        exprs,
        docs,
        pragma,
        legacy_returns_whitelist,
        legacy_name_case_whitelist,
        lenient_docs,
        old_style_docs: _,
        old_style_blocks: _,
    } = raw;
    let parsed = ParsedSchema {
        fname: path.to_string(),
        dialect,
        exprs: Vec::new(),
        docs,
        pragma,
        legacy_returns_whitelist,
        legacy_name_case_whitelist,
        legacy_docs: lenient_docs,
    };
    (exprs, parsed)
}

/// Parse and check a schema read from the file system.
pub fn parse_schema_file(path: &str, dialect: Dialect) -> Result<ParsedSchema> {
    parse_schema(path, dialect, &crate::source::FsProvider)
}

/// Doc comments with `Note:` / `Example:` sections that mark a schema as
/// written for QEMU before 9.1 (one such section is QEMU 10.0's error).
const OLD_STYLE_MIN_BLOCKS: usize = 3;

const METAS: [&str; 6] = ["enum", "struct", "union", "alternate", "command", "event"];

struct Checker<'a> {
    dialect: Dialect,
    lenient_docs: bool,
    pragma: &'a Pragma,
    docs: &'a [Doc],
}

impl<'a> Checker<'a> {
    fn of(parsed: &'a ParsedSchema) -> Checker<'a> {
        Checker {
            dialect: parsed.dialect,
            lenient_docs: parsed.legacy_docs,
            pragma: &parsed.pragma,
            docs: &parsed.docs,
        }
    }
}

/// Builds the "source" part of a message (e.g. `'data' member 'a'`) only
/// when an error needs it.
type Src<'s> = &'s dyn Fn() -> String;

/// The first name written in a value (a string, a dict's first key or
/// its `name`): what a caret points at for an error about the value.
fn first_text<'v>(v: &'v Value<'_>) -> Option<&'v str> {
    match v {
        Value::Str(s) => Some(s),
        Value::Dict(d) => get(d, "name")
            .and_then(Value::as_str)
            .or_else(|| d.first().map(|(k, _)| k.as_ref())),
        _ => None,
    }
}

/// Python's truth value of a JSON value.
fn truthy(v: &Value<'_>) -> bool {
    match v {
        Value::Bool(b) => *b,
        Value::Str(s) => !s.is_empty(),
        Value::List(l) => !l.is_empty(),
        Value::Dict(d) => !d.is_empty(),
    }
}

fn pprint<'k>(keys: impl IntoIterator<Item = &'k str>) -> String {
    let mut v: Vec<&str> = keys.into_iter().collect();
    v.sort_unstable();
    v.dedup();
    v.iter()
        .map(|k| format!("'{k}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// QEMU's `check_keys`.
fn check_keys(
    d: &Dict<'_>,
    info: &Info,
    source: Src<'_>,
    required: &[&str],
    optional: &[&str],
) -> Result<()> {
    if required.iter().any(|r| get(d, r).is_none()) {
        let missing: Vec<&str> = required
            .iter()
            .copied()
            .filter(|r| get(d, r).is_none())
            .collect();
        let s = if missing.len() > 1 { "s" } else { "" };
        return Err(QapiError::new(
            info,
            format!("{} misses key{s} {}", source(), pprint(missing)),
        ));
    }
    let known = |k: &str| required.contains(&k) || optional.contains(&k);
    if d.iter().any(|(k, _)| !known(k)) {
        let unknown: Vec<&str> = d
            .iter()
            .map(|(k, _)| k.as_ref())
            .filter(|k| !known(k))
            .collect();
        let s = if unknown.len() > 1 { "s" } else { "" };
        return Err(QapiError::new(
            info,
            format!(
                "{} has unknown key{s} {}\nValid keys are {}.",
                source(),
                pprint(unknown),
                pprint(required.iter().chain(optional.iter()).copied())
            ),
        ));
    }
    Ok(())
}

/// The stem of a valid name (QEMU's naming rule: optional `__RFQDN_`
/// prefix, optional `x-`, a letter, then letters, digits, `_` and `-`).
fn name_stem(name: &str) -> Option<&str> {
    let mut s = name;
    if let Some(rest) = s.strip_prefix("__") {
        let n = rest
            .bytes()
            .take_while(|b| b.is_ascii_alphanumeric() || *b == b'.' || *b == b'-')
            .count();
        if n == 0 || rest.as_bytes().get(n) != Some(&b'_') {
            return None;
        }
        s = &rest[n + 1..];
    }
    fn stem_ok(s: &str) -> bool {
        /// Letters, digits, `_` and `-`.
        const OK: [bool; 256] = {
            let mut t = [false; 256];
            let mut c = 0;
            while c < 256 {
                let b = c as u8;
                t[c] = b.is_ascii_alphanumeric() || b == b'_' || b == b'-';
                c += 1;
            }
            t
        };
        let b = s.as_bytes();
        !b.is_empty() && b[0].is_ascii_alphabetic() && b[1..].iter().all(|&c| OK[usize::from(c)])
    }
    if s.len() > 2 && s.as_bytes()[..2].eq_ignore_ascii_case(b"x-") && stem_ok(&s[2..]) {
        return Some(&s[2..]);
    }
    if stem_ok(s) {
        Some(s)
    } else {
        None
    }
}

/// Names whose C form starts with `q_` are reserved for the generator.
fn q_prefixed(name: &str) -> bool {
    let b = name.as_bytes();
    b.len() >= 2 && b[0] == b'q' && matches!(b[1], b'_' | b'-' | b'.')
}

fn into_string(c: Cow<'_, str>) -> String {
    c.into_owned()
}

/// An `if` value already checked by `check_cond`.
fn to_ifcond(v: Value<'_>) -> IfCond {
    match v {
        Value::Str(s) => IfCond::Name(into_string(s)),
        Value::Dict(d) => match d.into_iter().next() {
            Some((k, Value::List(items))) if k == "all" => {
                IfCond::All(items.into_iter().map(to_ifcond).collect())
            }
            Some((k, Value::List(items))) if k == "any" => {
                IfCond::Any(items.into_iter().map(to_ifcond).collect())
            }
            Some((k, c)) if k == "not" => IfCond::Not(Box::new(to_ifcond(c))),
            _ => IfCond::Always,
        },
        _ => IfCond::Always,
    }
}

/// A type value already checked to be a name or a one-name array.
fn type_ref(v: Value<'_>) -> TypeRef {
    match v {
        Value::List(l) => match l.into_iter().next() {
            Some(Value::Str(s)) => TypeRef::Array(into_string(s)),
            _ => TypeRef::Array(String::new()),
        },
        Value::Str(s) => TypeRef::Named(into_string(s)),
        _ => TypeRef::Named(String::new()),
    }
}

/// Remove the value of `key` from `d` (leaving the key, for messages that
/// list keys).
fn take<'t>(d: &mut [(Cow<'t, str>, Value<'t>)], key: &str) -> Option<Value<'t>> {
    d.iter_mut()
        .find(|(k, _)| k == key)
        .map(|(_, v)| std::mem::replace(v, Value::Bool(false)))
}

/// Expressions checked together by one thread.
const CHUNK: usize = 64;

/// Where a chunk's checked expressions go: how many were written and how
/// many read out again, whether the chunk is checked, and its error.
struct Chunk<'o> {
    place: &'o mut [std::mem::MaybeUninit<TopExpr>],
    written: usize,
    taken: usize,
    done: bool,
    error: Option<QapiError>,
}

impl Checker<'_> {
    /// Check every expression, in chunks shared by two threads (each
    /// expression's checks depend on nothing else); the first error in the
    /// expressions' order is the error, as when checking one after the
    /// other. Without `define`, the checked expressions are the result;
    /// with it, each is handed to `define` in order, on the calling thread,
    /// as soon as the chunk holding it is checked (the other thread checks
    /// later chunks meanwhile), and the result is empty. An error of the
    /// checks wins over one of `define`.
    fn check_exprs<'t>(
        &self,
        raw: Vec<RawExpr<'t>>,
        mut define: Option<&mut dyn FnMut(TopExpr) -> Result<()>>,
    ) -> Result<Vec<TopExpr>> {
        use std::sync::{Mutex, MutexGuard, PoisonError, TryLockError};
        let n = raw.len();
        if n <= CHUNK {
            let exprs = raw
                .into_iter()
                .map(|e| self.check_expr(e))
                .collect::<Result<Vec<_>>>()?;
            let Some(define) = define else {
                return Ok(exprs);
            };
            for e in exprs {
                define(e)?;
            }
            return Ok(Vec::new());
        }
        fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
            m.lock().unwrap_or_else(PoisonError::into_inner)
        }
        // Each expression's result goes straight to its place in `out`: no
        // list per chunk, nothing copied afterwards.
        let mut out: Vec<TopExpr> = Vec::with_capacity(n);
        let slots: Vec<Mutex<Chunk<'_>>> = out.spare_capacity_mut()[..n]
            .chunks_mut(CHUNK)
            .map(|place| {
                Mutex::new(Chunk {
                    place,
                    written: 0,
                    taken: 0,
                    done: false,
                    error: None,
                })
            })
            .collect();
        // The next chunk's index, and the expressions not handed out yet.
        let input = Mutex::new((0usize, raw.into_iter()));
        // The next chunk: its expressions go to `buf`, and its slot comes
        // locked (taken before the input is let go), so that waiting for
        // the slot waits until the chunk is checked.
        let claim = |buf: &mut Vec<RawExpr<'t>>| {
            let mut input = lock(&input);
            let (next, rest) = &mut *input;
            let slot = slots.get(*next)?;
            buf.extend(rest.by_ref().take(CHUNK));
            *next += 1;
            Some(lock(slot))
        };
        let check = |mut slot: MutexGuard<'_, Chunk<'_>>, buf: &mut Vec<RawExpr<'t>>| {
            let c = &mut *slot;
            for e in buf.drain(..) {
                if c.error.is_some() {
                    continue;
                }
                match self.check_expr(e) {
                    Ok(t) => {
                        c.place[c.written].write(t);
                        c.written += 1;
                    }
                    Err(e) => c.error = Some(e),
                }
            }
            c.done = true;
        };
        let work = || {
            let mut buf = Vec::with_capacity(CHUNK);
            while let Some(slot) = claim(&mut buf) {
                check(slot, &mut buf);
            }
        };
        let mut define_error = None;
        crate::helper::scope(|s| {
            // Without a second thread the first one checks every chunk.
            s.spawn(work);
            let Some(define) = define.as_mut() else {
                work();
                return;
            };
            let mut buf = Vec::with_capacity(CHUNK);
            // The next chunk to define (none once `define` failed).
            let mut d = Some(0);
            loop {
                if let Some(i) = d.filter(|&i| i < slots.len()) {
                    let slot = match slots[i].try_lock() {
                        Ok(g) => Some(g),
                        Err(TryLockError::Poisoned(p)) => Some(p.into_inner()),
                        Err(TryLockError::WouldBlock) => None,
                    };
                    if let Some(mut slot) = slot.filter(|c| c.done) {
                        let c = &mut *slot;
                        d = Some(i + 1);
                        if c.error.is_some() {
                            d = None;
                        }
                        while c.taken < c.written && d.is_some() {
                            // SAFETY: the places before `written` were written;
                            // each is read out once (`taken` moves past it).
                            let t = unsafe { c.place[c.taken].assume_init_read() };
                            c.taken += 1;
                            if let Err(e) = define(t) {
                                define_error = Some(e);
                                d = None;
                            }
                        }
                        continue;
                    }
                }
                if let Some(slot) = claim(&mut buf) {
                    check(slot, &mut buf);
                    continue;
                }
                match d {
                    // Wait until chunk `i` is checked (whoever checks it holds
                    // its slot until then).
                    Some(i) if i < slots.len() => drop(lock(&slots[i])),
                    _ => break,
                }
            }
        });
        let collect = define.is_none();
        let mut first_error = None;
        let mut complete = true;
        let mut left = Vec::with_capacity(slots.len());
        for slot in slots {
            let c = slot.into_inner().unwrap_or_else(PoisonError::into_inner);
            complete &= c.written == c.place.len() && (collect || c.taken == c.written);
            if first_error.is_none() {
                first_error = c.error;
            }
            left.push((c.place, c.taken, c.written));
        }
        if complete && first_error.is_none() && define_error.is_none() {
            drop(left);
            if collect {
                // SAFETY: every chunk wrote a result to each of its places,
                // and the chunks cover the first `n` places of `out`.
                unsafe { out.set_len(n) };
                return Ok(out);
            }
            return Ok(Vec::new());
        }
        for (place, taken, written) in left {
            for t in &mut place[taken..written] {
                // SAFETY: these places were written and not read out; each
                // is dropped once, here.
                unsafe { t.assume_init_drop() };
            }
        }
        // Incomplete without an error cannot happen: the calling thread
        // checks every chunk left, and defines every chunk checked.
        Err(first_error
            .or(define_error)
            .unwrap_or_else(|| QapiError::bare("expressions left unchecked")))
    }

    fn legacy(&self) -> bool {
        self.dialect == Dialect::Legacy
    }

    /// Hint for errors the legacy dialect would not raise.
    fn hint(&self, e: QapiError) -> QapiError {
        if self.legacy() {
            e
        } else {
            e.legacy_hint()
        }
    }

    fn check_name_str<'n>(&self, name: &'n str, info: &Info, source: Src<'_>) -> Result<&'n str> {
        match name_stem(name) {
            Some(stem) if !q_prefixed(name) => Ok(stem),
            _ => Err(QapiError::new(
                info,
                format!("{} has an invalid name", source()),
            )),
        }
    }

    fn check_name_upper(&self, name: &str, info: &Info, source: Src<'_>) -> Result<()> {
        let stem = self.check_name_str(name, info, source)?;
        if !self.legacy() && stem.bytes().any(|b| b.is_ascii_lowercase() || b == b'-') {
            return Err(self.hint(QapiError::new(
                info,
                format!("name of {} must not use lowercase or '-'", source()),
            )));
        }
        Ok(())
    }

    fn check_name_lower(
        &self,
        name: &str,
        info: &Info,
        source: Src<'_>,
        permit_upper: bool,
        permit_underscore: bool,
    ) -> Result<()> {
        let stem = self.check_name_str(name, info, source)?;
        if self.legacy() {
            return Ok(());
        }
        if (!permit_upper || !permit_underscore)
            && stem.bytes().any(|b| {
                (!permit_upper && b.is_ascii_uppercase()) || (!permit_underscore && b == b'_')
            })
        {
            return Err(self.hint(QapiError::new(
                info,
                format!("name of {} must not use uppercase or '_'", source()),
            )));
        }
        Ok(())
    }

    fn check_name_camel(&self, name: &str, info: &Info, source: Src<'_>) -> Result<()> {
        let stem = self.check_name_str(name, info, source)?;
        let b = stem.as_bytes();
        let ok = !b.is_empty()
            && b[0].is_ascii_uppercase()
            && b.iter().all(|c| c.is_ascii_alphanumeric())
            && b[1..].iter().any(|c| c.is_ascii_lowercase());
        if !ok && !self.legacy() {
            return Err(self.hint(QapiError::new(
                info,
                format!("name of {} must use CamelCase", source()),
            )));
        }
        Ok(())
    }

    fn check_defn_name(&self, name: &str, info: &Info, meta: &str) -> Result<()> {
        let src = || meta.to_string();
        match meta {
            "event" => self.check_name_upper(name, info, &src)?,
            "command" => {
                let permit = self
                    .pragma
                    .command_name_exceptions
                    .iter()
                    .any(|n| n == name);
                self.check_name_lower(name, info, &src, false, permit)?
            }
            _ => self.check_name_camel(name, info, &src)?,
        }
        if name.ends_with("List") && !self.legacy() {
            return Err(self.hint(QapiError::new(
                info,
                format!("{meta} name should not end in 'List'"),
            )));
        }
        Ok(())
    }

    /// QEMU's `check_if` on the `if` member of `d`.
    fn check_if(&self, d: &Dict<'_>, info: &Info, source: Src<'_>) -> Result<()> {
        match get(d, "if") {
            None => Ok(()),
            Some(c) => self.check_cond(c, info, source),
        }
    }

    fn check_cond(&self, c: &Value<'_>, info: &Info, source: Src<'_>) -> Result<()> {
        match c {
            Value::Str(s) => {
                let b = s.as_bytes();
                let ok = !b.is_empty()
                    && b[0].is_ascii_uppercase()
                    && b.iter()
                        .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == b'_');
                if !ok {
                    return Err(QapiError::new(
                        info,
                        format!(
                            "'if' condition '{s}' of {} is not a valid identifier",
                            source()
                        ),
                    ));
                }
                Ok(())
            }
            Value::Dict(d) => {
                check_keys(
                    d,
                    info,
                    &|| format!("'if' condition of {}", source()),
                    &[],
                    &["all", "any", "not"],
                )?;
                if d.len() != 1 {
                    return Err(QapiError::new(
                        info,
                        format!("'if' condition of {} has conflicting keys", source()),
                    ));
                }
                let (op, operand) = &d[0];
                if op == "not" {
                    return self.check_cond(operand, info, source);
                }
                let Value::List(items) = operand else {
                    return Err(QapiError::new(
                        info,
                        format!("'{op}' condition of {} must be an array", source()),
                    ));
                };
                if items.is_empty() {
                    return Err(QapiError::new(
                        info,
                        format!("'if' condition [] of {} is useless", source()),
                    ));
                }
                for i in items {
                    self.check_cond(i, info, source)?;
                }
                Ok(())
            }
            _ => Err(QapiError::new(
                info,
                format!(
                    "'if' condition of {} must be a string or an object",
                    source()
                ),
            )),
        }
    }

    /// Check and take the `if` member of `d`.
    fn take_if<'t>(
        &self,
        d: &mut [(Cow<'t, str>, Value<'t>)],
        info: &Info,
        source: Src<'_>,
    ) -> Result<IfCond> {
        self.check_if(d, info, source)?;
        Ok(take(d, "if").map(to_ifcond).unwrap_or_default())
    }

    /// QEMU's `check_features`, consuming the value.
    fn features(&self, v: Option<Value<'_>>, info: &Info) -> Result<Vec<FeatureDef>> {
        let Some(v) = v else { return Ok(Vec::new()) };
        let Value::List(items) = v else {
            return Err(QapiError::new(info, "'features' must be an array"));
        };
        let mut out = Vec::with_capacity(items.len());
        for f in items {
            let finfo = first_text(&f).map_or_else(|| info.clone(), |t| info.at_text(t));
            let info = &finfo;
            let (name, ifcond) = match f {
                Value::Dict(mut d) => {
                    check_keys(
                        &d,
                        info,
                        &|| "'features' member".to_string(),
                        &["name"],
                        &["if"],
                    )?;
                    let Some(Value::Str(name)) = take(&mut d, "name") else {
                        return Err(QapiError::new(
                            info,
                            "'features' member requires a string name",
                        ));
                    };
                    let src = || format!("'features' member '{name}'");
                    self.check_name_lower(&name, info, &src, false, false)?;
                    let ifcond = self.take_if(&mut d, info, &src)?;
                    (into_string(name), ifcond)
                }
                Value::Str(name) => {
                    self.check_name_lower(
                        &name,
                        info,
                        &|| format!("'features' member '{name}'"),
                        false,
                        false,
                    )?;
                    (into_string(name), IfCond::Always)
                }
                _ => {
                    return Err(QapiError::new(
                        info,
                        "'features' member requires a string name",
                    ))
                }
            };
            out.push(FeatureDef {
                name,
                ifcond,
                info: finfo,
            });
        }
        Ok(out)
    }

    fn check_type_name(&self, v: Option<&Value<'_>>, info: &Info, source: Src<'_>) -> Result<()> {
        match v {
            None | Some(Value::Str(_)) => Ok(()),
            _ => Err(QapiError::new(
                info,
                format!("{} should be a type name", source()),
            )),
        }
    }

    fn check_type_name_or_array(
        &self,
        v: Option<&Value<'_>>,
        info: &Info,
        source: Src<'_>,
    ) -> Result<()> {
        match v {
            None | Some(Value::Str(_)) => Ok(()),
            Some(Value::List(l)) => {
                if l.len() != 1 || l[0].as_str().is_none() {
                    return Err(QapiError::new(
                        info,
                        format!("{}: array type must contain single type name", source()),
                    ));
                }
                Ok(())
            }
            Some(Value::Dict(_)) if self.legacy() => Ok(()),
            Some(Value::Dict(_)) => Err(self.hint(QapiError::new(
                info,
                format!("{} should be a type name or array", source()),
            ))),
            Some(_) => Err(QapiError::new(
                info,
                format!("{} should be a type name or array", source()),
            )),
        }
    }

    /// A legacy nested anonymous struct: a member value that is a dict but
    /// not the `{ 'type': …, 'if': …, 'features': … }` form.
    fn is_nested(&self, v: &Value<'_>) -> bool {
        let Value::Dict(d) = v else { return false };
        let member_form = matches!(get(d, "type"), Some(Value::Str(_) | Value::List(_)))
            && d.iter()
                .all(|(k, _)| matches!(k.as_ref(), "type" | "if" | "features"));
        !member_form
    }

    /// QEMU's `check_type_implicit` plus normalisation: an inline member
    /// list, consumed.
    fn members(
        &self,
        v: Value<'_>,
        info: &Info,
        source: &str,
        parent: &str,
        depth: usize,
    ) -> Result<Vec<MemberDef>> {
        let Value::Dict(d) = v else {
            return Err(QapiError::new(
                info,
                format!("{source} should be an object or type name"),
            ));
        };
        let permissive = self
            .pragma
            .member_name_exceptions
            .iter()
            .any(|n| n == parent);
        let mut out = Vec::with_capacity(d.len());
        for (key, arg) in d {
            let minfo = info.at_text(&key);
            let info = &minfo;
            let key_source = || format!("{source} member '{key}'");
            let (name, optional) = match key.strip_prefix('*') {
                Some(k) => (k, true),
                None => (key.as_ref(), false),
            };
            self.check_name_lower(name, info, &key_source, permissive, permissive)?;
            if name == "u"
                || name.starts_with("has-")
                || name.starts_with("has_")
                || name.starts_with("has.")
            {
                return Err(QapiError::new(
                    info,
                    format!("{} uses reserved name", key_source()),
                ));
            }
            if self.legacy() && self.is_nested(&arg) {
                if depth >= parser::MAX_DEPTH {
                    return Err(QapiError::new(info, "nesting too deep"));
                }
                let nested = self.members(arg, info, &key_source(), parent, depth + 1)?;
                out.push(MemberDef {
                    cname_hash: crate::model::cname::c_name_hash(name),
                    name: name.to_string(),
                    optional,
                    typ: TypeRef::Nested(nested),
                    ifcond: IfCond::Always,
                    features: Vec::new(),
                    info: info.clone(),
                });
                continue;
            }
            let (typ, ifcond, features) = match arg {
                Value::Dict(mut a) => {
                    if let Err(e) =
                        check_keys(&a, info, &key_source, &["type"], &["if", "features"])
                    {
                        return Err(if get(&a, "type").is_none() {
                            self.hint(e)
                        } else {
                            e
                        });
                    }
                    self.check_if(&a, info, &key_source)?;
                    let features = self.features(take(&mut a, "features"), info)?;
                    self.check_type_name_or_array(get(&a, "type"), info, &key_source)?;
                    let ifcond = take(&mut a, "if").map(to_ifcond).unwrap_or_default();
                    let typ = take(&mut a, "type")
                        .map(type_ref)
                        .unwrap_or(TypeRef::Named(String::new()));
                    (typ, ifcond, features)
                }
                other => {
                    self.check_type_name_or_array(Some(&other), info, &key_source)?;
                    (type_ref(other), IfCond::Always, Vec::new())
                }
            };
            let name = match key {
                Cow::Owned(mut k) if optional => {
                    k.remove(0);
                    k
                }
                Cow::Owned(k) => k,
                Cow::Borrowed(k) => k[usize::from(optional)..].to_string(),
            };
            out.push(MemberDef {
                cname_hash: crate::model::cname::c_name_hash(&name),
                name,
                optional,
                typ,
                ifcond,
                features,
                info: minfo,
            });
        }
        Ok(out)
    }

    fn args(&self, v: Option<Value<'_>>, info: &Info, parent: &str) -> Result<ArgsDef> {
        match v {
            None => Ok(ArgsDef::None),
            Some(Value::Str(s)) => Ok(ArgsDef::Type(into_string(s))),
            Some(v) => Ok(ArgsDef::Members(
                self.members(v, info, "'data'", parent, 0)?,
            )),
        }
    }

    fn check_flags(&self, d: &Dict<'_>, info: &Info) -> Result<CommandFlags> {
        let mut f = CommandFlags::default();
        for key in ["gen", "success-response"] {
            if let Some(v) = get(d, key) {
                let ok = match v {
                    Value::Bool(false) => true,
                    // QEMU 1.x spelled false 'no'.
                    Value::Str(s) if s == "no" => self.legacy(),
                    _ => false,
                };
                if !ok {
                    let e = QapiError::new(info, format!("flag '{key}' may only use false value"));
                    let legacy_form = matches!(v, Value::Str(s) if s == "no");
                    return Err(if legacy_form { self.hint(e) } else { e });
                }
                if key == "gen" {
                    f.gen = false;
                } else {
                    f.success_response = false;
                }
            }
        }
        for key in ["boxed", "allow-oob", "allow-preconfig", "coroutine"] {
            if let Some(v) = get(d, key) {
                if !matches!(v, Value::Bool(true)) {
                    return Err(QapiError::new(
                        info,
                        format!("flag '{key}' may only use true value"),
                    ));
                }
                match key {
                    "boxed" => f.boxed = true,
                    "allow-oob" => f.allow_oob = true,
                    "allow-preconfig" => f.allow_preconfig = true,
                    _ => f.coroutine = true,
                }
            }
        }
        if f.allow_oob && f.coroutine {
            return Err(QapiError::new(
                info,
                "flags 'allow-oob' and 'coroutine' are incompatible",
            ));
        }
        Ok(f)
    }

    fn check_expr(&self, e: RawExpr<'_>) -> Result<TopExpr> {
        let RawExpr {
            info: einfo,
            value: mut d,
            doc,
            include,
        } = e;
        if let Some((path, repeated)) = include {
            let name = match take(&mut d, "include") {
                Some(Value::Str(s)) => into_string(s),
                _ => String::new(),
            };
            return Ok(TopExpr {
                info: einfo,
                doc: None,
                kind: ExprKind::Include(IncludeDef {
                    name,
                    path,
                    repeated,
                }),
            });
        }
        if let Some(Value::Dict(p)) = take(&mut d, "pragma") {
            let settings = p
                .into_iter()
                .map(|(k, v)| {
                    let v = match v {
                        Value::Bool(b) => PragmaValue::Bool(b),
                        Value::List(l) => PragmaValue::List(
                            l.into_iter()
                                .filter_map(|i| match i {
                                    Value::Str(s) => Some(into_string(s)),
                                    _ => None,
                                })
                                .collect(),
                        ),
                        _ => PragmaValue::List(Vec::new()),
                    };
                    (into_string(k), v)
                })
                .collect();
            return Ok(TopExpr {
                info: einfo,
                doc: None,
                kind: ExprKind::Pragma(PragmaDef { settings }),
            });
        }
        // Which meta keys are present, in one pass over the keys.
        let mut present = 0u32;
        let mut has_type = false;
        for (k, _) in d.iter() {
            match METAS.iter().position(|m| *m == k.as_ref()) {
                Some(i) => present |= 1 << i,
                None => has_type |= k == "type",
            }
        }
        let mut metas = METAS
            .iter()
            .enumerate()
            .filter(|(i, _)| present & (1 << i) != 0)
            .map(|(_, m)| *m);
        let (first, second) = (metas.next(), metas.next());
        let legacy_type = self.legacy() && has_type && first.is_none();
        let meta = match (first, second) {
            (Some(m), None) => m,
            (None, _) if legacy_type => "struct",
            _ => {
                let e = QapiError::new(
                    &einfo,
                    "expression must have exactly one key 'enum', 'struct', 'union', 'alternate', 'command', 'event'",
                );
                return Err(if first.is_none() && has_type {
                    self.hint(e)
                } else {
                    e
                });
            }
        };
        let key = if legacy_type { "type" } else { meta };
        let name = match get(&d, key) {
            Some(Value::Str(name)) => name.to_string(),
            _ => {
                return Err(QapiError::new(
                    &einfo,
                    format!("'{key}' requires a string name"),
                ))
            }
        };
        let dinfo = einfo.with_defn(meta, &name);
        let info = &dinfo;
        self.check_defn_name(&name, info, meta)?;
        let mut doc_idx = doc;
        if let Some(docv) = doc.and_then(|i| self.docs.get(i)) {
            if docv.symbol.as_deref() != Some(name.as_str()) {
                if self.lenient_docs {
                    // Older QEMU did not check; the doc stays unattached.
                    doc_idx = None;
                } else {
                    return Err(QapiError::new(
                        info,
                        format!(
                            "documentation comment is for '{}'",
                            docv.symbol.as_deref().unwrap_or_default()
                        ),
                    ));
                }
            } else if !self.lenient_docs {
                self.check_doc_expr(docv, meta, &d)?;
            }
        } else if self.pragma.doc_required && !self.lenient_docs {
            return Err(QapiError::new(info, "documentation comment required"));
        }
        let meta_src = || meta.to_string();
        let common = |name: String| DefnCommon {
            name,
            info: info.clone(),
            doc: doc_idx,
            ifcond: IfCond::Always,
            features: Vec::new(),
        };
        let mut kind = match meta {
            "enum" => {
                check_keys(
                    &d,
                    info,
                    &meta_src,
                    &["enum", "data"],
                    &["if", "features", "prefix"],
                )?;
                self.enum_def(&mut d, info, common(name))?
            }
            "struct" => {
                if legacy_type {
                    check_keys(
                        &d,
                        info,
                        &meta_src,
                        &["type", "data"],
                        &["base", "if", "features", "gen"],
                    )?;
                } else {
                    check_keys(
                        &d,
                        info,
                        &meta_src,
                        &["struct", "data"],
                        &["base", "if", "features"],
                    )?;
                }
                let data = take(&mut d, "data").unwrap_or(Value::Bool(false));
                let members = self.members(data, info, "'data'", &name, 0)?;
                self.check_type_name(get(&d, "base"), info, &|| "'base'".to_string())?;
                let base = match take(&mut d, "base") {
                    Some(Value::Str(s)) => Some(into_string(s)),
                    _ => None,
                };
                ExprKind::Struct(StructDef {
                    common: common(name),
                    base,
                    members,
                    legacy_type_keyword: legacy_type,
                })
            }
            "union" => {
                if self.legacy() {
                    check_keys(
                        &d,
                        info,
                        &meta_src,
                        &["union", "data"],
                        &["base", "discriminator", "if", "features"],
                    )?;
                } else if let Err(e) = check_keys(
                    &d,
                    info,
                    &meta_src,
                    &["union", "base", "discriminator", "data"],
                    &["if", "features"],
                ) {
                    return Err(if get(&d, "discriminator").is_none() {
                        self.hint(e)
                    } else {
                        e
                    });
                }
                self.union_def(&mut d, info, common(name.clone()), &name)?
            }
            "alternate" => {
                check_keys(
                    &d,
                    info,
                    &meta_src,
                    &["alternate", "data"],
                    &["if", "features"],
                )?;
                self.alternate_def(&mut d, info, common(name))?
            }
            "command" => {
                check_keys(
                    &d,
                    info,
                    &meta_src,
                    &["command"],
                    &[
                        "data",
                        "returns",
                        "boxed",
                        "if",
                        "features",
                        "gen",
                        "success-response",
                        "allow-oob",
                        "allow-preconfig",
                        "coroutine",
                    ],
                )?;
                let args = self.data(&mut d, info, &name)?;
                let rets = take(&mut d, "returns");
                self.check_type_name_or_array(rets.as_ref(), info, &|| "'returns'".to_string())?;
                let returns = match rets {
                    None => None,
                    Some(v @ Value::Dict(_)) => Some(TypeRef::Nested(self.members(
                        v,
                        info,
                        "'returns'",
                        &name,
                        0,
                    )?)),
                    Some(v) => Some(type_ref(v)),
                };
                ExprKind::Command(CommandDef {
                    common: common(name),
                    data: args,
                    returns,
                    flags: CommandFlags::default(),
                })
            }
            _ => {
                check_keys(
                    &d,
                    info,
                    &meta_src,
                    &["event"],
                    &["data", "boxed", "if", "features"],
                )?;
                let args = self.data(&mut d, info, &name)?;
                ExprKind::Event(EventDef {
                    common: common(name),
                    data: args,
                    boxed: false,
                })
            }
        };
        let ifcond = self.take_if(&mut d, info, &meta_src)?;
        let features = self.features(take(&mut d, "features"), info)?;
        let flags = self.check_flags(&d, info)?;
        match &mut kind {
            ExprKind::Command(c) => c.flags = flags,
            ExprKind::Event(ev) => ev.boxed = flags.boxed,
            _ => {}
        }
        if let Some(c) = common_mut(&mut kind) {
            c.ifcond = ifcond;
            c.features = features;
        }
        Ok(TopExpr {
            info: einfo,
            doc: doc_idx,
            kind,
        })
    }

    /// `data` of a command or event.
    fn data<'t>(
        &self,
        d: &mut [(Cow<'t, str>, Value<'t>)],
        info: &Info,
        name: &str,
    ) -> Result<ArgsDef> {
        let boxed = get(d, "boxed").is_some_and(truthy);
        let data = take(d, "data");
        if boxed {
            if data.is_none() {
                return Err(QapiError::new(info, "'boxed': true requires 'data'"));
            }
            self.check_type_name(data.as_ref(), info, &|| "'data'".to_string())?;
        }
        self.args(data, info, name)
    }

    fn check_doc_expr(&self, doc: &Doc, meta: &str, d: &Dict<'_>) -> Result<()> {
        let returns = doc.section(SectionKind::Returns);
        if meta == "command" {
            if let Some(r) = returns {
                if get(d, "returns").is_none() {
                    return Err(QapiError::new(
                        &r.info,
                        "'Returns' section, but command doesn't return anything",
                    ));
                }
            }
        } else {
            if let Some(r) = returns {
                return Err(QapiError::new(
                    &r.info,
                    "'Returns' section is only valid for commands",
                ));
            }
            if let Some(r) = doc.section(SectionKind::Errors) {
                return Err(QapiError::new(
                    &r.info,
                    "'Errors' section is only valid for commands",
                ));
            }
        }
        Ok(())
    }

    fn enum_def<'t>(
        &self,
        d: &mut [(Cow<'t, str>, Value<'t>)],
        info: &Info,
        common: DefnCommon,
    ) -> Result<ExprKind> {
        let Some(Value::List(items)) = take(d, "data") else {
            return Err(QapiError::new(info, "'data' must be an array"));
        };
        let prefix = match take(d, "prefix") {
            None => None,
            Some(Value::Str(s)) => Some(into_string(s)),
            Some(_) => return Err(QapiError::new(info, "'prefix' must be a string")),
        };
        let permissive = self.pragma.member_name_exceptions.contains(&common.name);
        let mut members = Vec::with_capacity(items.len());
        for m in items {
            let minfo = first_text(&m).map_or_else(|| info.clone(), |t| info.at_text(t));
            let info = &minfo;
            let (mname, ifcond, features) = match m {
                Value::Dict(mut md) => {
                    check_keys(
                        &md,
                        info,
                        &|| "'data' member".to_string(),
                        &["name"],
                        &["if", "features"],
                    )?;
                    let Some(Value::Str(mname)) = take(&mut md, "name") else {
                        return Err(QapiError::new(info, "'data' member requires a string name"));
                    };
                    let src = || format!("'data' member '{mname}'");
                    self.check_enum_value(&mname, info, &src, permissive)?;
                    self.check_if(&md, info, &src)?;
                    let features = self.features(take(&mut md, "features"), info)?;
                    let ifcond = take(&mut md, "if").map(to_ifcond).unwrap_or_default();
                    (into_string(mname), ifcond, features)
                }
                Value::Str(mname) => {
                    self.check_enum_value(
                        &mname,
                        info,
                        &|| format!("'data' member '{mname}'"),
                        permissive,
                    )?;
                    (into_string(mname), IfCond::Always, Vec::new())
                }
                _ => return Err(QapiError::new(info, "'data' member requires a string name")),
            };
            members.push(EnumMemberDef {
                name: mname,
                ifcond,
                features,
                info: minfo,
            });
        }
        Ok(ExprKind::Enum(EnumDef {
            common,
            members,
            prefix,
        }))
    }

    fn check_enum_value(
        &self,
        name: &str,
        info: &Info,
        source: Src<'_>,
        permissive: bool,
    ) -> Result<()> {
        // Enum values may start with a digit.
        if name.as_bytes().first().is_some_and(u8::is_ascii_digit) {
            let hidden = format!("d{name}");
            return self.check_name_lower(&hidden, info, source, permissive, permissive);
        }
        self.check_name_lower(name, info, source, permissive, permissive)
    }

    fn union_def<'t>(
        &self,
        d: &mut [(Cow<'t, str>, Value<'t>)],
        info: &Info,
        common: DefnCommon,
        name: &str,
    ) -> Result<ExprKind> {
        let base = match take(d, "base") {
            None => BaseDef::None,
            Some(Value::Str(s)) => BaseDef::Type(into_string(s)),
            Some(v) => BaseDef::Members(self.members(v, info, "'base'", name, 0)?),
        };
        let discriminator = match take(d, "discriminator") {
            None => None,
            Some(Value::Str(s)) => Some(into_string(s)),
            Some(_) => {
                return Err(QapiError::new(
                    info,
                    "'discriminator' requires a string name",
                ))
            }
        };
        let Some(Value::Dict(data)) = take(d, "data") else {
            return Err(QapiError::new(info, "'data' must be an object"));
        };
        let simple = discriminator.is_none();
        let mut branches = Vec::with_capacity(data.len());
        for (key, value) in data {
            let minfo = info.at_text(&key);
            let info = &minfo;
            let source = || format!("'data' member '{key}'");
            let (typ, ifcond) = match value {
                Value::Dict(mut v) => {
                    check_keys(&v, info, &source, &["type"], &["if"])?;
                    self.check_if(&v, info, &source)?;
                    self.branch_type(get(&v, "type"), info, &source, simple)?;
                    let ifcond = take(&mut v, "if").map(to_ifcond).unwrap_or_default();
                    (
                        take(&mut v, "type")
                            .map(type_ref)
                            .unwrap_or(TypeRef::Named(String::new())),
                        ifcond,
                    )
                }
                other => {
                    self.branch_type(Some(&other), info, &source, simple)?;
                    (type_ref(other), IfCond::Always)
                }
            };
            branches.push(BranchDef {
                name: into_string(key),
                typ,
                ifcond,
                info: minfo,
            });
        }
        Ok(ExprKind::Union(UnionDef {
            common,
            base,
            discriminator,
            branches,
        }))
    }

    fn branch_type(
        &self,
        t: Option<&Value<'_>>,
        info: &Info,
        source: Src<'_>,
        simple: bool,
    ) -> Result<()> {
        // Legacy simple unions allowed arrays as branch types.
        if simple && self.legacy() && matches!(t, Some(Value::List(_))) {
            return self.check_type_name_or_array(t, info, source);
        }
        self.check_type_name(t, info, source)
    }

    fn alternate_def<'t>(
        &self,
        d: &mut [(Cow<'t, str>, Value<'t>)],
        info: &Info,
        common: DefnCommon,
    ) -> Result<ExprKind> {
        if !get(d, "data").is_some_and(truthy) {
            return Err(QapiError::new(info, "'data' must not be empty"));
        }
        let Some(Value::Dict(data)) = take(d, "data") else {
            return Err(QapiError::new(info, "'data' must be an object"));
        };
        let mut branches = Vec::with_capacity(data.len());
        for (key, value) in data {
            let minfo = info.at_text(&key);
            let info = &minfo;
            let source = || format!("'data' member '{key}'");
            self.check_name_lower(&key, info, &source, false, false)?;
            let (typ, ifcond) = match value {
                Value::Dict(mut v) => {
                    check_keys(&v, info, &source, &["type"], &["if"])?;
                    self.check_if(&v, info, &source)?;
                    self.check_type_name_or_array(get(&v, "type"), info, &source)?;
                    let ifcond = take(&mut v, "if").map(to_ifcond).unwrap_or_default();
                    (
                        take(&mut v, "type")
                            .map(type_ref)
                            .unwrap_or(TypeRef::Named(String::new())),
                        ifcond,
                    )
                }
                other => {
                    self.check_type_name_or_array(Some(&other), info, &source)?;
                    (type_ref(other), IfCond::Always)
                }
            };
            branches.push(BranchDef {
                name: into_string(key),
                typ,
                ifcond,
                info: minfo,
            });
        }
        Ok(ExprKind::Alternate(AlternateDef { common, branches }))
    }
}

fn common_mut(k: &mut ExprKind) -> Option<&mut DefnCommon> {
    match k {
        ExprKind::Include(_) | ExprKind::Pragma(_) => None,
        ExprKind::Enum(d) => Some(&mut d.common),
        ExprKind::Struct(d) => Some(&mut d.common),
        ExprKind::Union(d) => Some(&mut d.common),
        ExprKind::Alternate(d) => Some(&mut d.common),
        ExprKind::Command(d) => Some(&mut d.common),
        ExprKind::Event(d) => Some(&mut d.common),
    }
}
