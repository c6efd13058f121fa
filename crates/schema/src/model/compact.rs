//! The checked model in a compact binary form, so that a program can keep a
//! schema it checked at build time and load it at start-up without parsing
//! and checking it again ([`Schema::to_compact`], [`Schema::from_compact`]).
//!
//! The form keeps everything the model holds except the doc comments (an
//! entity's `doc` comes back `None`, `docs` and `doc_links` empty): source
//! positions (files, include chains, definitions, shared as in the model),
//! conditions, features, resolved references, the name index, pragmas.
//! It is private to one build of this crate (a magic word with a format
//! number guards against reading anything else); integers are LEB128
//! varints; every distinct string is stored once, in a table read (and
//! checked as UTF-8) in one go, and referred to by its index.

use super::*;
use crate::error::QapiError;
use crate::source::SourceFile;
use std::sync::Arc;

const MAGIC: &[u8; 8] = b"QAPIMDL\x02";

/// Deepest nesting of `if` conditions read back (the checker allows far
/// less; a bound keeps a damaged input from recursing without end).
const MAX_IFCOND_DEPTH: usize = 64;

/// The JSON types built-in types may have (the model keeps them as
/// `&'static str`).
const JSON_TYPES: &[&str] = &["string", "number", "int", "boolean", "null", "value"];

impl Schema {
    /// The model in the compact form (doc comments left out).
    pub fn to_compact(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.schema(self);
        let body = std::mem::take(&mut w.buf);
        // The definitions and files the body's positions refer to. Files
        // refer to earlier files (the including one) and to definitions,
        // all interned before them: writing them interns nothing new.
        let defns = w.defns.clone();
        w.usize(defns.len());
        for d in &defns {
            w.str(&d.0);
            w.str(&d.1);
        }
        let files = w.files.clone();
        w.usize(files.len());
        for f in &files {
            w.str(&f.name);
            let inc = f.included_from().map(|i| w.info_ref(i));
            w.opt_info_ref(inc);
        }
        let tables = std::mem::take(&mut w.buf);
        // The strings: all their bytes, then each one's length.
        let strings = std::mem::take(&mut w.strings);
        w.buf.extend_from_slice(MAGIC);
        w.usize(strings.iter().map(String::len).sum());
        for s in &strings {
            w.buf.extend_from_slice(s.as_bytes());
        }
        w.usize(strings.len());
        for s in &strings {
            w.usize(s.len());
        }
        w.buf.extend_from_slice(&tables);
        w.buf.extend_from_slice(&body);
        w.buf
    }

    /// Read a model written by [`Schema::to_compact`].
    pub fn from_compact(bytes: &[u8]) -> Result<Schema, QapiError> {
        let mut r = Reader {
            b: bytes,
            at: 0,
            strings: Vec::new(),
        };
        if r.take(MAGIC.len())? != MAGIC {
            return Err(bad("not a compact schema model of this version"));
        }
        let total = r.len()?;
        let all = std::str::from_utf8(r.take(total)?).map_err(|_| bad("bad UTF-8"))?;
        let n = r.len()?;
        r.strings.reserve_exact(n);
        let mut at = 0usize;
        for _ in 0..n {
            let end = at.checked_add(r.usize()?);
            // Each string was whole UTF-8 when written: its ends are
            // character boundaries unless the input is damaged.
            let Some(s) = end.and_then(|e| all.get(at..e)) else {
                return Err(bad("bad string"));
            };
            r.strings.push(s);
            at += s.len();
        }
        let n = r.len()?;
        let mut defns = Vec::with_capacity(n);
        for _ in 0..n {
            let meta = r.string()?;
            let name = r.string()?;
            defns.push(Arc::new((meta, name)));
        }
        let n = r.len()?;
        let mut tables = Tables {
            defns,
            files: Vec::with_capacity(n),
        };
        for _ in 0..n {
            let name = r.string()?;
            let included_from = r.opt_info(&tables)?;
            tables
                .files
                .push(Arc::new(SourceFile::new(name, included_from, "")));
        }
        let s = r.schema(&tables)?;
        if r.at != bytes.len() {
            return Err(bad("trailing bytes"));
        }
        s.check_references()?;
        Ok(s)
    }
}

impl Schema {
    /// Drop every source position (of entities, members, enum values, features, branches):
    /// the model of a program that only serves the schema, which never reports where a
    /// definition was written, as a model loaded from an introspection answer has none. Its
    /// compact form is smaller and reads back faster.
    pub fn forget_positions(&mut self) {
        fn features(v: &mut [Feature]) {
            for f in v {
                f.info = None;
            }
        }
        fn variants(v: &mut [Variant]) {
            for x in v {
                x.info = None;
            }
        }
        for e in &mut self.entities {
            e.info = None;
            features(&mut e.features);
            match &mut e.kind {
                EntityKind::Enum(t) => {
                    for m in &mut t.members {
                        m.info = None;
                        features(&mut m.features);
                    }
                }
                EntityKind::Object(o) => {
                    for m in &mut o.local_members {
                        m.info = None;
                        features(&mut m.features);
                    }
                    if let Some(b) = &mut o.branches {
                        variants(&mut b.variants);
                    }
                }
                EntityKind::Alternate(a) => variants(&mut a.variants),
                EntityKind::Include(_)
                | EntityKind::Builtin(_)
                | EntityKind::Array(_)
                | EntityKind::Command(_)
                | EntityKind::Event(_) => {}
            }
        }
    }
}

fn bad(what: &str) -> QapiError {
    QapiError::bare(format!("compact schema model: {what}"))
}

/// What is wrong with a damaged input, as the reader reports it: small, so that the
/// reader's many small results stay in registers.
struct Bad(&'static str);

impl From<Bad> for QapiError {
    fn from(b: Bad) -> QapiError {
        bad(b.0)
    }
}

#[derive(Default)]
struct Writer {
    buf: Vec<u8>,
    strings: Vec<String>,
    string_ix: HashMap<String, usize>,
    files: Vec<Arc<SourceFile>>,
    defns: Vec<Arc<(String, String)>>,
    file_ix: HashMap<*const SourceFile, usize>,
    defn_ix: HashMap<*const (String, String), usize>,
}

/// A position with its file and definition as table indices.
struct InfoRef {
    file: usize,
    line: u32,
    defn: Option<usize>,
    spot: Option<u32>,
}

impl Writer {
    fn u64(&mut self, mut v: u64) {
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                self.buf.push(b);
                return;
            }
            self.buf.push(b | 0x80);
        }
    }

    fn usize(&mut self, v: usize) {
        self.u64(v as u64);
    }

    fn bool(&mut self, v: bool) {
        self.buf.push(u8::from(v));
    }

    fn str(&mut self, s: &str) {
        let i = match self.string_ix.get(s) {
            Some(&i) => i,
            None => {
                let i = self.strings.len();
                self.strings.push(s.to_string());
                self.string_ix.insert(s.to_string(), i);
                i
            }
        };
        self.usize(i);
    }

    fn opt_str(&mut self, s: &Option<Name>) {
        match s {
            None => self.buf.push(0),
            Some(s) => {
                self.buf.push(1);
                self.str(s);
            }
        }
    }

    /// An optional id: 0 for none, else the id plus one.
    fn opt_id(&mut self, v: Option<EntityId>) {
        match v {
            None => self.u64(0),
            Some(v) => self.u64((v as u64).wrapping_add(1)),
        }
    }

    fn strs(&mut self, v: &[String]) {
        self.usize(v.len());
        for s in v {
            self.str(s);
        }
    }

    fn ids(&mut self, v: &[EntityId]) {
        self.usize(v.len());
        for &i in v {
            self.usize(i);
        }
    }

    fn file(&mut self, f: &Arc<SourceFile>) -> usize {
        if let Some(&i) = self.file_ix.get(&Arc::as_ptr(f)) {
            return i;
        }
        // The including file first: a file's table entry only refers back.
        if let Some(inc) = f.included_from() {
            self.info_ref(inc);
        }
        let i = self.files.len();
        self.files.push(f.clone());
        self.file_ix.insert(Arc::as_ptr(f), i);
        i
    }

    fn defn(&mut self, d: &Arc<(String, String)>) -> usize {
        if let Some(&i) = self.defn_ix.get(&Arc::as_ptr(d)) {
            return i;
        }
        let i = self.defns.len();
        self.defns.push(d.clone());
        self.defn_ix.insert(Arc::as_ptr(d), i);
        i
    }

    fn info_ref(&mut self, i: &Info) -> InfoRef {
        InfoRef {
            file: self.file(&i.file),
            line: i.line,
            defn: i.defn.as_ref().map(|d| self.defn(d)),
            spot: i.spot,
        }
    }

    fn opt_info_ref(&mut self, i: Option<InfoRef>) {
        let Some(i) = i else {
            self.buf.push(0);
            return;
        };
        self.buf.push(1);
        self.usize(i.file);
        self.u64(u64::from(i.line));
        self.opt_id(i.defn);
        self.opt_id(i.spot.map(|s| s as usize));
    }

    fn info(&mut self, i: &Option<Info>) {
        let r = i.as_ref().map(|i| self.info_ref(i));
        self.opt_info_ref(r);
    }

    fn ifcond(&mut self, c: &IfCond) {
        match c {
            IfCond::Always => self.buf.push(0),
            IfCond::Name(n) => {
                self.buf.push(1);
                self.str(n);
            }
            IfCond::All(v) => {
                self.buf.push(2);
                self.usize(v.len());
                for c in v {
                    self.ifcond(c);
                }
            }
            IfCond::Any(v) => {
                self.buf.push(3);
                self.usize(v.len());
                for c in v {
                    self.ifcond(c);
                }
            }
            IfCond::Not(c) => {
                self.buf.push(4);
                self.ifcond(c);
            }
        }
    }

    fn features(&mut self, v: &[Feature]) {
        self.usize(v.len());
        for f in v {
            let Feature { name, ifcond, info } = f;
            self.str(name);
            self.ifcond(ifcond);
            self.info(info);
        }
    }

    fn variants(&mut self, v: &[Variant]) {
        self.usize(v.len());
        for x in v {
            let Variant {
                name,
                type_name,
                typ,
                ifcond,
                info,
                defined_in,
            } = x;
            self.str(name);
            self.str(type_name);
            self.usize(*typ);
            self.ifcond(ifcond);
            self.info(info);
            self.usize(*defined_in);
        }
    }

    fn member_ref(&mut self, r: &MemberRef) {
        self.usize(r.owner);
        self.usize(r.index);
    }

    fn kind(&mut self, k: &EntityKind) {
        match k {
            EntityKind::Include(Include { module }) => {
                self.buf.push(0);
                self.usize(*module);
            }
            EntityKind::Builtin(BuiltinType { json_type }) => {
                self.buf.push(1);
                self.str(json_type);
            }
            EntityKind::Enum(EnumType { members, prefix }) => {
                self.buf.push(2);
                self.usize(members.len());
                for m in members {
                    let EnumMember {
                        name,
                        ifcond,
                        features,
                        info,
                    } = m;
                    self.str(name);
                    self.ifcond(ifcond);
                    self.features(features);
                    self.info(info);
                }
                self.opt_str(prefix);
            }
            EntityKind::Array(ArrayType {
                element_name,
                element,
            }) => {
                self.buf.push(3);
                self.str(element_name);
                self.usize(*element);
            }
            EntityKind::Object(ObjectType {
                base_name,
                base,
                local_members,
                branches,
                members,
                state,
            }) => {
                self.buf.push(4);
                self.opt_str(base_name);
                self.opt_id(*base);
                self.usize(local_members.len());
                for m in local_members {
                    let Member {
                        name,
                        type_name,
                        typ,
                        optional,
                        ifcond,
                        features,
                        info,
                        defined_in,
                        cname_hash,
                    } = m;
                    self.str(name);
                    self.str(type_name);
                    self.usize(*typ);
                    self.bool(*optional);
                    self.ifcond(ifcond);
                    self.features(features);
                    self.info(info);
                    self.usize(*defined_in);
                    self.buf.extend_from_slice(&cname_hash.to_le_bytes());
                }
                match branches.as_deref() {
                    None => self.buf.push(0),
                    Some(Branches {
                        tag_name,
                        tag_member,
                        variants,
                    }) => {
                        self.buf.push(1);
                        self.str(tag_name);
                        match tag_member {
                            None => self.buf.push(0),
                            Some(r) => {
                                self.buf.push(1);
                                self.member_ref(r);
                            }
                        }
                        self.variants(variants);
                    }
                }
                self.usize(members.len());
                for r in members {
                    self.member_ref(r);
                }
                self.buf.push(match state {
                    CheckState::Unchecked => 0,
                    CheckState::InProgress => 1,
                    CheckState::Done => 2,
                });
            }
            EntityKind::Alternate(AlternateType { variants }) => {
                self.buf.push(5);
                self.variants(variants);
            }
            EntityKind::Command(Command {
                arg_type_name,
                arg_type,
                ret_type_name,
                ret_type,
                gen,
                success_response,
                boxed,
                allow_oob,
                allow_preconfig,
                coroutine,
            }) => {
                self.buf.push(6);
                self.opt_str(arg_type_name);
                self.opt_id(*arg_type);
                self.opt_str(ret_type_name);
                self.opt_id(*ret_type);
                for b in [
                    gen,
                    success_response,
                    boxed,
                    allow_oob,
                    allow_preconfig,
                    coroutine,
                ] {
                    self.bool(*b);
                }
            }
            EntityKind::Event(Event {
                arg_type_name,
                arg_type,
                boxed,
            }) => {
                self.buf.push(7);
                self.opt_str(arg_type_name);
                self.opt_id(*arg_type);
                self.bool(*boxed);
            }
        }
    }

    fn schema(&mut self, s: &Schema) {
        let Schema {
            dialect,
            entities,
            modules,
            docs: _,
            doc_links: _,
            pragma,
            legacy_docs,
            by_name,
            feature_names,
            schema_dir,
            cwd: _,
            module_by_path,
            check_depth: _,
            defer_checks: _,
            grown_branches: _,
            qtype,
            q_empty,
        } = s;
        self.buf.push(match dialect {
            Dialect::Modern => 0,
            Dialect::Legacy => 1,
        });
        self.bool(*legacy_docs);
        let Pragma {
            doc_required,
            command_name_exceptions,
            command_returns_exceptions,
            documentation_exceptions,
            member_name_exceptions,
        } = pragma;
        self.bool(*doc_required);
        self.strs(command_name_exceptions);
        self.strs(command_returns_exceptions);
        self.strs(documentation_exceptions);
        self.strs(member_name_exceptions);
        self.strs(feature_names);
        self.str(&schema_dir.to_string_lossy());
        let mut paths: Vec<(&String, &ModuleId)> = module_by_path.iter().collect();
        paths.sort();
        self.usize(paths.len());
        for (p, m) in paths {
            self.str(p);
            self.usize(*m);
        }
        self.usize(*qtype);
        self.usize(*q_empty);
        self.usize(modules.len());
        for Module { name, entities } in modules {
            self.str(name);
            self.ids(entities);
        }
        self.usize(entities.len());
        for (id, e) in entities.iter().enumerate() {
            let Entity {
                name,
                info,
                doc: _,
                ifcond,
                features,
                implicit,
                module,
                kind,
            } = e;
            self.str(name);
            // Whether the name index leads to this entity (a definition,
            // not an include or a name defined twice).
            self.bool(by_name.get(entities, name) == Some(id));
            self.info(info);
            self.ifcond(ifcond);
            self.features(features);
            self.bool(*implicit);
            self.usize(*module);
            self.kind(kind);
        }
    }
}

struct Tables {
    defns: Vec<Arc<(String, String)>>,
    files: Vec<Arc<SourceFile>>,
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
    /// The string table.
    strings: Vec<&'a str>,
}

impl<'a> Reader<'a> {
    #[inline]
    fn take(&mut self, n: usize) -> Result<&'a [u8], Bad> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.b.len());
        let Some(end) = end else {
            return Err(Bad("truncated"));
        };
        let s = &self.b[self.at..end];
        self.at = end;
        Ok(s)
    }

    #[inline(always)]
    fn byte(&mut self) -> Result<u8, Bad> {
        match self.b.get(self.at) {
            Some(&b) => {
                self.at += 1;
                Ok(b)
            }
            None => Err(Bad("truncated")),
        }
    }

    #[inline(always)]
    fn u64(&mut self) -> Result<u64, Bad> {
        // Most numbers are small: one byte, else two (string and entity indices).
        match self.b.get(self.at) {
            Some(&b) if b & 0x80 == 0 => {
                self.at += 1;
                Ok(u64::from(b))
            }
            Some(&b) => match self.b.get(self.at + 1) {
                Some(&c) if c & 0x80 == 0 => {
                    self.at += 2;
                    Ok(u64::from(b & 0x7f) | u64::from(c) << 7)
                }
                _ => self.u64_long(),
            },
            None => self.u64_long(),
        }
    }

    #[cold]
    #[inline(never)]
    fn u64_long(&mut self) -> Result<u64, Bad> {
        let b = self.byte()?;
        let mut v: u64 = u64::from(b & 0x7f);
        if b & 0x80 == 0 {
            return Ok(v);
        }
        let mut shift = 7u32;
        loop {
            let b = self.byte()?;
            if shift >= 64 {
                return Err(Bad("integer too long"));
            }
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
            shift += 7;
        }
    }

    #[inline(always)]
    fn usize(&mut self) -> Result<usize, Bad> {
        usize::try_from(self.u64()?).map_err(|_| Bad("integer out of range"))
    }

    /// A count of items that each take at least one byte.
    #[inline(always)]
    fn len(&mut self) -> Result<usize, Bad> {
        let n = self.usize()?;
        if n > self.b.len() - self.at {
            return Err(Bad("count beyond the input"));
        }
        Ok(n)
    }

    #[inline(always)]
    fn bool(&mut self) -> Result<bool, Bad> {
        match self.byte()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(Bad("bad boolean")),
        }
    }

    #[inline(always)]
    fn str(&mut self) -> Result<&'a str, Bad> {
        let i = self.usize()?;
        match self.strings.get(i) {
            Some(&s) => Ok(s),
            None => Err(Bad("bad string reference")),
        }
    }

    #[inline]
    fn string(&mut self) -> Result<String, Bad> {
        Ok(self.str()?.to_string())
    }

    #[inline]
    fn opt_string(&mut self) -> Result<Option<String>, Bad> {
        Ok(if self.bool()? {
            Some(self.string()?)
        } else {
            None
        })
    }

    #[inline(always)]
    fn opt_id(&mut self) -> Result<Option<EntityId>, Bad> {
        let v = self.u64()?;
        if v == 0 {
            return Ok(None);
        }
        usize::try_from(v - 1)
            .map(Some)
            .map_err(|_| Bad("integer out of range"))
    }

    fn strings(&mut self) -> Result<Vec<String>, Bad> {
        let n = self.len()?;
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            v.push(self.string()?);
        }
        Ok(v)
    }

    fn ids(&mut self) -> Result<Vec<EntityId>, Bad> {
        let n = self.len()?;
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            v.push(self.usize()?);
        }
        Ok(v)
    }

    #[inline]
    fn opt_info(&mut self, t: &Tables) -> Result<Option<Info>, Bad> {
        if !self.bool()? {
            return Ok(None);
        }
        let file = self.usize()?;
        let Some(file) = t.files.get(file) else {
            return Err(Bad("bad file reference"));
        };
        let line = u32::try_from(self.u64()?).map_err(|_| Bad("line out of range"))?;
        let defn = match self.opt_id()? {
            None => None,
            Some(d) => Some(t.defns.get(d).ok_or_else(|| Bad("bad definition"))?.clone()),
        };
        let spot = match self.opt_id()? {
            None => None,
            Some(s) => Some(u32::try_from(s).map_err(|_| Bad("offset out of range"))?),
        };
        Ok(Some(Info {
            file: file.clone(),
            line,
            defn,
            spot,
        }))
    }

    fn ifcond(&mut self, depth: usize) -> Result<IfCond, Bad> {
        if depth > MAX_IFCOND_DEPTH {
            return Err(Bad("conditions nested too deeply"));
        }
        Ok(match self.byte()? {
            0 => IfCond::Always,
            1 => IfCond::Name(self.string()?),
            t @ (2 | 3) => {
                let n = self.len()?;
                let mut v = Vec::with_capacity(n);
                for _ in 0..n {
                    v.push(self.ifcond(depth + 1)?);
                }
                if t == 2 {
                    IfCond::All(v)
                } else {
                    IfCond::Any(v)
                }
            }
            4 => IfCond::Not(Box::new(self.ifcond(depth + 1)?)),
            _ => return Err(Bad("bad condition")),
        })
    }

    fn features(&mut self, t: &Tables) -> Result<Vec<Feature>, Bad> {
        let n = self.len()?;
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            v.push(Feature {
                name: self.string()?,
                ifcond: self.ifcond(0)?,
                info: self.opt_info(t)?,
            });
        }
        Ok(v)
    }

    fn variants(&mut self, t: &Tables) -> Result<Vec<Variant>, Bad> {
        let n = self.len()?;
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            v.push(Variant {
                name: (self.string()?).into(),
                type_name: (self.string()?).into(),
                typ: self.usize()?,
                ifcond: self.ifcond(0)?,
                info: self.opt_info(t)?,
                defined_in: self.usize()?,
            });
        }
        Ok(v)
    }

    #[inline]
    fn member_ref(&mut self) -> Result<MemberRef, Bad> {
        Ok(MemberRef {
            owner: self.usize()?,
            index: self.usize()?,
        })
    }

    fn kind(&mut self, t: &Tables) -> Result<EntityKind, Bad> {
        Ok(match self.byte()? {
            0 => EntityKind::Include(Include {
                module: self.usize()?,
            }),
            1 => {
                let j = self.str()?;
                let Some(json_type) = JSON_TYPES.iter().find(|&&x| x == j) else {
                    return Err(Bad("bad JSON type"));
                };
                EntityKind::Builtin(BuiltinType { json_type })
            }
            2 => {
                let n = self.len()?;
                let mut members = Vec::with_capacity(n);
                for _ in 0..n {
                    members.push(EnumMember {
                        name: (self.string()?).into(),
                        ifcond: self.ifcond(0)?,
                        features: self.features(t)?,
                        info: self.opt_info(t)?,
                    });
                }
                EntityKind::Enum(EnumType {
                    members: members.into(),
                    prefix: (self.opt_string()?).map(Into::into),
                })
            }
            3 => EntityKind::Array(ArrayType {
                element_name: (self.string()?).into(),
                element: self.usize()?,
            }),
            4 => {
                let base_name = self.opt_string()?;
                let base = self.opt_id()?;
                let n = self.len()?;
                let mut local_members = Vec::with_capacity(n);
                for _ in 0..n {
                    local_members.push(Member {
                        name: (self.string()?).into(),
                        type_name: (self.string()?).into(),
                        typ: self.usize()?,
                        optional: self.bool()?,
                        ifcond: self.ifcond(0)?,
                        features: self.features(t)?,
                        info: self.opt_info(t)?,
                        defined_in: self.usize()?,
                        cname_hash: {
                            let mut w = [0u8; 8];
                            w.copy_from_slice(self.take(8)?);
                            u64::from_le_bytes(w)
                        },
                    });
                }
                let branches = if self.bool()? {
                    let tag_name = self.string()?;
                    let tag_member = if self.bool()? {
                        Some(self.member_ref()?)
                    } else {
                        None
                    };
                    Some(Box::new(Branches {
                        tag_name: tag_name.into(),
                        tag_member,
                        variants: (self.variants(t)?).into(),
                    }))
                } else {
                    None
                };
                let n = self.len()?;
                let mut members = Vec::with_capacity(n);
                for _ in 0..n {
                    members.push(self.member_ref()?);
                }
                let state = match self.byte()? {
                    0 => CheckState::Unchecked,
                    1 => CheckState::InProgress,
                    2 => CheckState::Done,
                    _ => return Err(Bad("bad check state")),
                };
                EntityKind::Object(ObjectType {
                    base_name: base_name.map(Into::into),
                    base,
                    local_members: local_members.into(),
                    branches: branches.map(Into::into),
                    members: members.into(),
                    state,
                })
            }
            5 => EntityKind::Alternate(AlternateType {
                variants: (self.variants(t)?).into(),
            }),
            6 => EntityKind::Command(Command {
                arg_type_name: (self.opt_string()?).map(Into::into),
                arg_type: self.opt_id()?,
                ret_type_name: (self.opt_string()?).map(Into::into),
                ret_type: self.opt_id()?,
                gen: self.bool()?,
                success_response: self.bool()?,
                boxed: self.bool()?,
                allow_oob: self.bool()?,
                allow_preconfig: self.bool()?,
                coroutine: self.bool()?,
            }),
            7 => EntityKind::Event(Event {
                arg_type_name: (self.opt_string()?).map(Into::into),
                arg_type: self.opt_id()?,
                boxed: self.bool()?,
            }),
            _ => return Err(Bad("bad entity kind")),
        })
    }

    fn schema(&mut self, t: &Tables) -> Result<Schema, Bad> {
        let dialect = match self.byte()? {
            0 => Dialect::Modern,
            1 => Dialect::Legacy,
            _ => return Err(Bad("bad dialect")),
        };
        let legacy_docs = self.bool()?;
        let pragma = Pragma {
            doc_required: self.bool()?,
            command_name_exceptions: self.strings()?,
            command_returns_exceptions: self.strings()?,
            documentation_exceptions: self.strings()?,
            member_name_exceptions: self.strings()?,
        };
        let feature_names = self.strings()?;
        let schema_dir = std::path::PathBuf::from(self.str()?);
        let n = self.len()?;
        let mut module_by_path = NameMap::default();
        module_by_path.reserve(n);
        for _ in 0..n {
            let p = self.string()?;
            module_by_path.insert(p, self.usize()?);
        }
        let qtype = self.usize()?;
        let q_empty = self.usize()?;
        let n = self.len()?;
        let mut modules = Vec::with_capacity(n);
        for _ in 0..n {
            modules.push(Module {
                name: (self.string()?).into(),
                entities: (self.ids()?).into(),
            });
        }
        let n = self.len()?;
        let mut entities = Vec::with_capacity(n);
        let mut by_name = NameIndex::default();
        by_name.reserve(n);
        for id in 0..n {
            let name = self.string()?;
            if self.bool()? {
                by_name.insert(&name, id);
            }
            entities.push(Entity {
                name: name.into(),
                info: self.opt_info(t)?,
                doc: None,
                ifcond: self.ifcond(0)?,
                features: self.features(t)?,
                implicit: self.bool()?,
                module: self.usize()?,
                kind: self.kind(t)?,
            });
        }
        let s = Schema {
            dialect,
            entities: entities.into(),
            modules: modules.into(),
            docs: Vec::new(),
            doc_links: Vec::new(),
            pragma,
            legacy_docs,
            by_name,
            feature_names,
            schema_dir,
            cwd: std::env::current_dir().unwrap_or_default(),
            module_by_path,
            check_depth: 0,
            defer_checks: false,
            grown_branches: Vec::new(),
            qtype,
            q_empty,
        };
        Ok(s)
    }
}

impl Schema {
    /// Every reference between entities points at one that exists (a model
    /// read back must not index out of bounds later).
    fn check_references(&self) -> Result<(), QapiError> {
        let n = self.entities.len();
        let ok = |id: EntityId| id < n;
        let ok_opt = |id: Option<EntityId>| id.map_or(true, ok);
        let ok_ref = |r: &MemberRef| match self.entities.get(r.owner).map(|e| &e.kind) {
            Some(EntityKind::Object(o)) => r.index < o.local_members.len(),
            _ => false,
        };
        let fine = ok(self.qtype)
            && ok(self.q_empty)
            && self
                .module_by_path
                .values()
                .all(|&m| m < self.modules.len())
            && self
                .modules
                .iter()
                .all(|m| m.entities.iter().all(|&e| ok(e)))
            && self.entities.iter().all(|e| {
                e.module < self.modules.len()
                    && match &e.kind {
                        EntityKind::Include(i) => i.module < self.modules.len(),
                        EntityKind::Builtin(_) => true,
                        EntityKind::Enum(_) => true,
                        EntityKind::Array(a) => ok(a.element),
                        EntityKind::Object(o) => {
                            ok_opt(o.base)
                                && o.local_members
                                    .iter()
                                    .all(|m| ok(m.typ) && ok(m.defined_in))
                                && o.branches.as_ref().map_or(true, |b| {
                                    b.tag_member.as_ref().map_or(true, ok_ref)
                                        && b.variants.iter().all(|v| ok(v.typ) && ok(v.defined_in))
                                })
                                && o.members.iter().all(ok_ref)
                        }
                        EntityKind::Alternate(a) => {
                            a.variants.iter().all(|v| ok(v.typ) && ok(v.defined_in))
                        }
                        EntityKind::Command(c) => ok_opt(c.arg_type) && ok_opt(c.ret_type),
                        EntityKind::Event(e) => ok_opt(e.arg_type),
                    }
            });
        if fine {
            Ok(())
        } else {
            Err(bad("a reference points nowhere"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryProvider;

    const SCHEMA: &str = r#"
{ 'pragma': { 'doc-required': false } }
{ 'enum': 'Colour', 'data': [ 'red', { 'name': 'green', 'if': 'HAVE_GREEN' } ],
  'prefix': 'COL' }
{ 'struct': 'Base', 'data': { 'kind': 'Colour', '*note': 'str' },
  'features': [ 'fancy' ] }
{ 'struct': 'Red', 'data': { 'shade': 'int' } }
{ 'union': 'Paint', 'base': 'Base', 'discriminator': 'kind',
  'data': { 'red': 'Red' } }
{ 'alternate': 'Either', 'data': { 'n': 'int', 'r': 'Red' } }
{ 'command': 'mix', 'data': { 'a': ['Paint'], '*b': 'Either' },
  'returns': 'Paint', 'if': { 'all': [ 'A', { 'not': 'B' } ] } }
{ 'event': 'MIXED', 'data': { 'how': 'Colour' } }
{ 'include': 'sub.json' }
"#;
    const SUB: &str = "{ 'command': 'stir', 'allow-oob': true }\n";

    fn load() -> Schema {
        let p = MemoryProvider::from_files([("main.json", SCHEMA), ("sub.json", SUB)]);
        match crate::load_from("main.json", Dialect::Modern, &p) {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        }
    }

    /// The parts of two models that must agree (docs aside).
    fn assert_same(a: &Schema, b: &Schema) {
        let undoc = |s: &Schema| -> Vec<Entity> {
            s.entities
                .iter()
                .cloned()
                .map(|mut e| {
                    e.doc = None;
                    e
                })
                .collect()
        };
        assert_eq!(undoc(a), undoc(b));
        assert_eq!(a.modules, b.modules);
        assert_eq!(a.pragma, b.pragma);
        assert_eq!(a.dialect, b.dialect);
        assert_eq!(a.legacy_docs, b.legacy_docs);
        assert_eq!(a.feature_names, b.feature_names);
        assert_eq!(a.schema_dir, b.schema_dir);
        assert_eq!(a.module_by_path, b.module_by_path);
        assert_eq!((a.qtype, a.q_empty), (b.qtype, b.q_empty));
        for (id, e) in a.iter() {
            assert_eq!(a.lookup(&e.name), b.lookup(&e.name), "{}", e.name);
            if let Some(i) = &e.info {
                let j = b.entities[id].info.as_ref().map(|j| j.to_string());
                assert_eq!(Some(i.to_string()), j);
            }
        }
        let dump = |s: &Schema| {
            let mut out = String::new();
            crate::dump::dump_entities(s, &mut out);
            out
        };
        assert_eq!(dump(a), dump(b));
    }

    #[test]
    fn round_trip_keeps_the_model() {
        let s = load();
        let bytes = s.to_compact();
        let t = match Schema::from_compact(&bytes) {
            Ok(t) => t,
            Err(e) => panic!("{e}"),
        };
        assert_same(&s, &t);
        assert!(t.docs.is_empty() && t.entities.iter().all(|e| e.doc.is_none()));
        // Shared positions stay shared.
        let files: std::collections::HashSet<*const SourceFile> = t
            .entities
            .iter()
            .filter_map(|e| e.info.as_ref().map(|i| Arc::as_ptr(&i.file)))
            .collect();
        assert_eq!(files.len(), 2);
        // And the form is stable.
        assert_eq!(t.to_compact(), bytes);
    }

    /// How many source positions the model holds.
    fn positions(s: &Schema) -> usize {
        let feats = |v: &[Feature]| v.iter().filter(|f| f.info.is_some()).count();
        let vars = |v: &[Variant]| v.iter().filter(|x| x.info.is_some()).count();
        s.entities
            .iter()
            .map(|e| {
                usize::from(e.info.is_some())
                    + feats(&e.features)
                    + match &e.kind {
                        EntityKind::Enum(t) => t
                            .members
                            .iter()
                            .map(|m| usize::from(m.info.is_some()) + feats(&m.features))
                            .sum(),
                        EntityKind::Object(o) => {
                            o.local_members
                                .iter()
                                .map(|m| usize::from(m.info.is_some()) + feats(&m.features))
                                .sum::<usize>()
                                + o.branches.as_ref().map_or(0, |b| vars(&b.variants))
                        }
                        EntityKind::Alternate(a) => vars(&a.variants),
                        _ => 0,
                    }
            })
            .sum()
    }

    #[test]
    fn a_model_without_positions_reads_back_without_them() {
        let mut s = load();
        let with = s.to_compact();
        // Entities, members, enum values, features and branches all have one.
        assert_eq!(positions(&s), 25);
        s.forget_positions();
        assert_eq!(positions(&s), 0);
        let bytes = s.to_compact();
        assert!(
            bytes.len() < with.len(),
            "{} >= {}",
            bytes.len(),
            with.len()
        );
        let t = match Schema::from_compact(&bytes) {
            Ok(t) => t,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(positions(&t), 0);
        assert_same(&s, &t);
        assert_eq!(t.to_compact(), bytes);
    }

    #[test]
    fn damaged_input_is_an_error_not_a_panic() {
        let bytes = load().to_compact();
        assert!(Schema::from_compact(&[]).is_err());
        assert!(Schema::from_compact(b"QAPIMDL\x00").is_err());
        for cut in [8, 9, bytes.len() / 3, bytes.len() / 2, bytes.len() - 1] {
            assert!(Schema::from_compact(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(Schema::from_compact(&longer).is_err());
        // Flipping any single byte never panics (it may still decode).
        for i in (8..bytes.len()).step_by(7) {
            let mut b = bytes.clone();
            b[i] ^= 0x5a;
            let _ = Schema::from_compact(&b);
        }
    }
}
