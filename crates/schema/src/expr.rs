//! Shape checks and normalisation of one top-level expression, and the
//! front end's entry point [`parse_schema`].
//!
//! Checks run in QEMU's order, after every file has been parsed: the
//! definition's meta-type and name, its doc comment, its keys, its
//! kind-specific members, then `if`, `features` and flags. Messages are
//! QEMU's. Under [`Dialect::Modern`], an error caused by a construct of the
//! legacy dialect carries a hint ([`QapiError::legacy_hint`]) that is not
//! part of the message.

use crate::ast::*;
use crate::error::QapiError;
use crate::parser::{self, get, RawExpr, Value};
use crate::source::{Dialect, Info, SourceProvider};

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
    // Doc comments: QEMU 10.0's rules, except for schemas written for
    // older QEMU. The legacy dialect always reads them the older way; a
    // modern schema whose doc comments fail QEMU 10.0's rules is read again
    // the older way, and accepted so if it uses the retired `Note:` /
    // `Example:` sections (as QEMU up to 9.0 did), else QEMU 10.0's error
    // stands.
    let lenient = dialect == Dialect::Legacy;
    let raw = match parser::parse_files(path, dialect, provider, lenient) {
        Ok(raw) => raw,
        Err(e) if e.doc_syntax && !lenient => {
            match parser::parse_files(path, dialect, provider, true) {
                Ok(raw) if raw.old_style_docs => raw,
                _ => return Err(e),
            }
        }
        Err(e) => return Err(e),
    };
    let mut ck = Checker {
        dialect,
        lenient_docs: raw.lenient_docs,
        pragma: &raw.pragma,
        docs: &raw.docs,
    };
    let mut exprs = Vec::with_capacity(raw.exprs.len());
    for e in &raw.exprs {
        exprs.push(ck.check_expr(e)?);
    }
    Ok(ParsedSchema {
        fname: path.to_string(),
        dialect,
        exprs,
        docs: raw.docs,
        pragma: raw.pragma,
        legacy_returns_whitelist: raw.legacy_returns_whitelist,
        legacy_name_case_whitelist: raw.legacy_name_case_whitelist,
        legacy_docs: raw.lenient_docs,
    })
}

/// Parse and check a schema read from the file system.
pub fn parse_schema_file(path: &str, dialect: Dialect) -> Result<ParsedSchema> {
    parse_schema(path, dialect, &crate::source::FsProvider)
}

const METAS: [&str; 6] = ["enum", "struct", "union", "alternate", "command", "event"];

struct Checker<'a> {
    dialect: Dialect,
    lenient_docs: bool,
    pragma: &'a Pragma,
    docs: &'a [Doc],
}

type Dict = [(String, Value)];

fn truthy(v: &Value) -> bool {
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
    d: &Dict,
    info: &Info,
    source: &str,
    required: &[&str],
    optional: &[&str],
) -> Result<()> {
    let missing: Vec<&str> = required
        .iter()
        .copied()
        .filter(|r| get(d, r).is_none())
        .collect();
    if !missing.is_empty() {
        let s = if missing.len() > 1 { "s" } else { "" };
        return Err(QapiError::new(
            info,
            format!("{source} misses key{s} {}", pprint(missing)),
        ));
    }
    let unknown: Vec<&str> = d
        .iter()
        .map(|(k, _)| k.as_str())
        .filter(|k| !required.contains(k) && !optional.contains(k))
        .collect();
    if !unknown.is_empty() {
        let s = if unknown.len() > 1 { "s" } else { "" };
        return Err(QapiError::new(
            info,
            format!(
                "{source} has unknown key{s} {}\nValid keys are {}.",
                pprint(unknown),
                pprint(required.iter().chain(optional.iter()).copied())
            ),
        ));
    }
    Ok(())
}

/// The stem of a valid name (QEMU's `valid_name` pattern: optional
/// `__RFQDN_` prefix, optional `x-`, a letter, then letters, digits, `_`
/// and `-`).
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
        let b = s.as_bytes();
        !b.is_empty()
            && b[0].is_ascii_alphabetic()
            && b[1..]
                .iter()
                .all(|c| c.is_ascii_alphanumeric() || *c == b'_' || *c == b'-')
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

fn q_prefixed(name: &str) -> bool {
    let b = name.as_bytes();
    b.len() >= 2 && b[0] == b'q' && matches!(b[1], b'_' | b'-' | b'.')
}

fn to_ifcond(v: &Value) -> IfCond {
    match v {
        Value::Str(s) => IfCond::Name(s.clone()),
        Value::Dict(d) => match d.first() {
            Some((k, Value::List(items))) if k == "all" => {
                IfCond::All(items.iter().map(to_ifcond).collect())
            }
            Some((k, Value::List(items))) if k == "any" => {
                IfCond::Any(items.iter().map(to_ifcond).collect())
            }
            Some((k, c)) if k == "not" => IfCond::Not(Box::new(to_ifcond(c))),
            _ => IfCond::Always,
        },
        _ => IfCond::Always,
    }
}

fn type_ref(v: &Value) -> TypeRef {
    match v {
        Value::List(l) => TypeRef::Array(
            l.first()
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
        ),
        Value::Str(s) => TypeRef::Named(s.clone()),
        _ => TypeRef::Named(String::new()),
    }
}

impl Checker<'_> {
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

    fn check_name_str<'n>(&self, name: &'n str, info: &Info, source: &str) -> Result<&'n str> {
        match name_stem(name) {
            Some(stem) if !q_prefixed(name) => Ok(stem),
            _ => Err(QapiError::new(
                info,
                format!("{source} has an invalid name"),
            )),
        }
    }

    fn check_name_upper(&self, name: &str, info: &Info, source: &str) -> Result<()> {
        let stem = self.check_name_str(name, info, source)?;
        if !self.legacy() && stem.bytes().any(|b| b.is_ascii_lowercase() || b == b'-') {
            return Err(self.hint(QapiError::new(
                info,
                format!("name of {source} must not use lowercase or '-'"),
            )));
        }
        Ok(())
    }

    fn check_name_lower(
        &self,
        name: &str,
        info: &Info,
        source: &str,
        permit_upper: bool,
        permit_us: bool,
    ) -> Result<()> {
        let stem = self.check_name_str(name, info, source)?;
        if self.legacy() {
            return Ok(());
        }
        if (!permit_upper && stem.bytes().any(|b| b.is_ascii_uppercase()))
            || (!permit_us && stem.contains('_'))
        {
            return Err(self.hint(QapiError::new(
                info,
                format!("name of {source} must not use uppercase or '_'"),
            )));
        }
        Ok(())
    }

    fn check_name_camel(&self, name: &str, info: &Info, source: &str) -> Result<()> {
        let stem = self.check_name_str(name, info, source)?;
        let b = stem.as_bytes();
        let ok = !b.is_empty()
            && b[0].is_ascii_uppercase()
            && b.iter().all(|c| c.is_ascii_alphanumeric())
            && b[1..].iter().any(|c| c.is_ascii_lowercase());
        if !ok && !self.legacy() {
            return Err(self.hint(QapiError::new(
                info,
                format!("name of {source} must use CamelCase"),
            )));
        }
        Ok(())
    }

    fn check_defn_name(&self, name: &str, info: &Info, meta: &str) -> Result<()> {
        match meta {
            "event" => self.check_name_upper(name, info, meta)?,
            "command" => {
                let permit = self
                    .pragma
                    .command_name_exceptions
                    .iter()
                    .any(|n| n == name);
                self.check_name_lower(name, info, meta, false, permit)?
            }
            _ => self.check_name_camel(name, info, meta)?,
        }
        if name.ends_with("List") && !self.legacy() {
            return Err(self.hint(QapiError::new(
                info,
                format!("{meta} name should not end in 'List'"),
            )));
        }
        Ok(())
    }

    fn check_if(&self, d: &Dict, info: &Info, source: &str) -> Result<IfCond> {
        let Some(c) = get(d, "if") else {
            return Ok(IfCond::Always);
        };
        self.check_cond(c, info, source)?;
        Ok(to_ifcond(c))
    }

    fn check_cond(&self, c: &Value, info: &Info, source: &str) -> Result<()> {
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
                        format!("'if' condition '{s}' of {source} is not a valid identifier"),
                    ));
                }
                Ok(())
            }
            Value::Dict(d) => {
                check_keys(
                    d,
                    info,
                    &format!("'if' condition of {source}"),
                    &[],
                    &["all", "any", "not"],
                )?;
                if d.len() != 1 {
                    return Err(QapiError::new(
                        info,
                        format!("'if' condition of {source} has conflicting keys"),
                    ));
                }
                let (op, operand) = &d[0];
                if op == "not" {
                    return self.check_cond(operand, info, source);
                }
                let Value::List(items) = operand else {
                    return Err(QapiError::new(
                        info,
                        format!("'{op}' condition of {source} must be an array"),
                    ));
                };
                if items.is_empty() {
                    return Err(QapiError::new(
                        info,
                        format!("'if' condition [] of {source} is useless"),
                    ));
                }
                for i in items {
                    self.check_cond(i, info, source)?;
                }
                Ok(())
            }
            _ => Err(QapiError::new(
                info,
                format!("'if' condition of {source} must be a string or an object"),
            )),
        }
    }

    fn check_features(&self, v: Option<&Value>, info: &Info) -> Result<Vec<FeatureDef>> {
        let Some(v) = v else { return Ok(Vec::new()) };
        let Value::List(items) = v else {
            return Err(QapiError::new(info, "'features' must be an array"));
        };
        let mut out = Vec::with_capacity(items.len());
        for f in items {
            let (name, ifcond) = match f {
                Value::Dict(d) => {
                    check_keys(d, info, "'features' member", &["name"], &["if"])?;
                    let Some(Value::Str(name)) = get(d, "name") else {
                        return Err(QapiError::new(
                            info,
                            "'features' member requires a string name",
                        ));
                    };
                    let source = format!("'features' member '{name}'");
                    self.check_name_lower(name, info, &source, false, false)?;
                    (name.clone(), self.check_if(d, info, &source)?)
                }
                Value::Str(name) => {
                    self.check_name_lower(
                        name,
                        info,
                        &format!("'features' member '{name}'"),
                        false,
                        false,
                    )?;
                    (name.clone(), IfCond::Always)
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
                info: info.clone(),
            });
        }
        Ok(out)
    }

    fn check_type_name(&self, v: Option<&Value>, info: &Info, source: &str) -> Result<()> {
        match v {
            None | Some(Value::Str(_)) => Ok(()),
            _ => Err(QapiError::new(
                info,
                format!("{source} should be a type name"),
            )),
        }
    }

    fn check_type_name_or_array(&self, v: Option<&Value>, info: &Info, source: &str) -> Result<()> {
        match v {
            None | Some(Value::Str(_)) => Ok(()),
            Some(Value::List(l)) => {
                if l.len() != 1 || l[0].as_str().is_none() {
                    return Err(QapiError::new(
                        info,
                        format!("{source}: array type must contain single type name"),
                    ));
                }
                Ok(())
            }
            Some(Value::Dict(_)) if self.legacy() => Ok(()),
            Some(Value::Dict(_)) => Err(self.hint(QapiError::new(
                info,
                format!("{source} should be a type name or array"),
            ))),
            Some(_) => Err(QapiError::new(
                info,
                format!("{source} should be a type name or array"),
            )),
        }
    }

    /// A legacy nested anonymous struct: a member value that is a dict but
    /// not the `{ 'type': …, 'if': …, 'features': … }` form.
    fn is_nested(&self, v: &Value) -> bool {
        let Value::Dict(d) = v else { return false };
        let member_form = matches!(get(d, "type"), Some(Value::Str(_) | Value::List(_)))
            && d.iter()
                .all(|(k, _)| matches!(k.as_str(), "type" | "if" | "features"));
        !member_form
    }

    /// QEMU's `check_type_implicit` plus normalisation: an inline member
    /// list.
    fn members(
        &self,
        v: &Value,
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
            let key_source = format!("{source} member '{key}'");
            let (name, optional) = match key.strip_prefix('*') {
                Some(k) => (k, true),
                None => (key.as_str(), false),
            };
            self.check_name_lower(name, info, &key_source, permissive, permissive)?;
            if name == "u"
                || name.starts_with("has-")
                || name.starts_with("has_")
                || name.starts_with("has.")
            {
                return Err(QapiError::new(
                    info,
                    format!("{key_source} uses reserved name"),
                ));
            }
            if self.legacy() && self.is_nested(arg) {
                if depth >= parser::MAX_DEPTH {
                    return Err(QapiError::new(info, "nesting too deep"));
                }
                let nested = self.members(arg, info, &key_source, parent, depth + 1)?;
                out.push(MemberDef {
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
                Value::Dict(a) => {
                    if let Err(e) = check_keys(a, info, &key_source, &["type"], &["if", "features"])
                    {
                        return Err(if get(a, "type").is_none() {
                            self.hint(e)
                        } else {
                            e
                        });
                    }
                    let ifcond = self.check_if(a, info, &key_source)?;
                    let features = self.check_features(get(a, "features"), info)?;
                    let t = get(a, "type");
                    self.check_type_name_or_array(t, info, &key_source)?;
                    (
                        t.map(type_ref).unwrap_or(TypeRef::Named(String::new())),
                        ifcond,
                        features,
                    )
                }
                other => {
                    self.check_type_name_or_array(Some(other), info, &key_source)?;
                    (type_ref(other), IfCond::Always, Vec::new())
                }
            };
            out.push(MemberDef {
                name: name.to_string(),
                optional,
                typ,
                ifcond,
                features,
                info: info.clone(),
            });
        }
        Ok(out)
    }

    fn args(&self, v: Option<&Value>, info: &Info, source: &str, parent: &str) -> Result<ArgsDef> {
        match v {
            None => Ok(ArgsDef::None),
            Some(Value::Str(s)) => Ok(ArgsDef::Type(s.clone())),
            Some(v) => Ok(ArgsDef::Members(self.members(v, info, source, parent, 0)?)),
        }
    }

    fn check_flags(&self, d: &Dict, info: &Info) -> Result<CommandFlags> {
        let mut f = CommandFlags::default();
        for key in ["gen", "success-response"] {
            if let Some(v) = get(d, key) {
                let ok = match v {
                    Value::Bool(false) => true,
                    Value::Str(s) if s == "no" => {
                        self.legacy() || return Err(self.flag_err(info, key, "false"))
                    }
                    _ => false,
                };
                if !ok {
                    return Err(self.flag_err(info, key, "false"));
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
                if *v != Value::Bool(true) {
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

    fn flag_err(&self, info: &Info, key: &str, val: &str) -> QapiError {
        let e = QapiError::new(info, format!("flag '{key}' may only use {val} value"));
        if key == "gen" {
            self.hint(e)
        } else {
            e
        }
    }

    fn check_expr(&mut self, e: &RawExpr) -> Result<TopExpr> {
        let info = &e.info;
        let d: &Dict = &e.value;
        if let Some((path, repeated)) = &e.include {
            let name = get(d, "include")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            return Ok(TopExpr {
                info: info.clone(),
                doc: None,
                kind: ExprKind::Include(IncludeDef {
                    name,
                    path: path.clone(),
                    repeated: *repeated,
                }),
            });
        }
        if let Some(Value::Dict(p)) = get(d, "pragma") {
            let settings = p
                .iter()
                .map(|(k, v)| {
                    let v = match v {
                        Value::Bool(b) => PragmaValue::Bool(*b),
                        Value::List(l) => PragmaValue::List(
                            l.iter()
                                .filter_map(Value::as_str)
                                .map(str::to_string)
                                .collect(),
                        ),
                        _ => PragmaValue::List(Vec::new()),
                    };
                    (k.clone(), v)
                })
                .collect();
            return Ok(TopExpr {
                info: info.clone(),
                doc: None,
                kind: ExprKind::Pragma(PragmaDef { settings }),
            });
        }
        let mut metas: Vec<&str> = METAS
            .iter()
            .copied()
            .filter(|m| get(d, m).is_some())
            .collect();
        let legacy_type = self.legacy() && get(d, "type").is_some() && metas.is_empty();
        if legacy_type {
            metas.push("struct");
        }
        if metas.len() != 1 {
            let e = QapiError::new(
                info,
                "expression must have exactly one key 'enum', 'struct', 'union', 'alternate', 'command', 'event'",
            );
            return Err(if metas.is_empty() && get(d, "type").is_some() {
                self.hint(e)
            } else {
                e
            });
        }
        let meta = metas[0];
        let key = if legacy_type { "type" } else { meta };
        let Some(Value::Str(name)) = get(d, key) else {
            return Err(QapiError::new(
                info,
                format!("'{key}' requires a string name"),
            ));
        };
        let dinfo = info.with_defn(meta, name);
        let info = &dinfo;
        self.check_defn_name(name, info, meta)?;
        let mut doc_idx = e.doc;
        if let Some(doc) = e.doc.and_then(|i| self.docs.get(i)) {
            if doc.symbol.as_deref() != Some(name.as_str()) {
                if self.lenient_docs {
                    // Older QEMU did not check; the doc stays unattached.
                    doc_idx = None;
                } else {
                    return Err(QapiError::new(
                        info,
                        format!(
                            "documentation comment is for '{}'",
                            doc.symbol.as_deref().unwrap_or_default()
                        ),
                    ));
                }
            } else if !self.lenient_docs {
                self.check_doc_expr(doc, meta, d)?;
            }
        } else if self.pragma.doc_required && !self.lenient_docs {
            return Err(QapiError::new(info, "documentation comment required"));
        }
        let kind = match meta {
            "enum" => {
                check_keys(
                    d,
                    info,
                    meta,
                    &["enum", "data"],
                    &["if", "features", "prefix"],
                )?;
                self.enum_def(d, info, name, doc_idx)?
            }
            "struct" => {
                if legacy_type {
                    check_keys(
                        d,
                        info,
                        meta,
                        &["type", "data"],
                        &["base", "if", "features", "gen"],
                    )?;
                } else {
                    check_keys(
                        d,
                        info,
                        meta,
                        &["struct", "data"],
                        &["base", "if", "features"],
                    )?;
                }
                let members = self.members(
                    get(d, "data").unwrap_or(&Value::Bool(false)),
                    info,
                    "'data'",
                    name,
                    0,
                )?;
                let base = get(d, "base");
                self.check_type_name(base, info, "'base'")?;
                ExprKind::Struct(StructDef {
                    common: self.placeholder(name, info, doc_idx),
                    base: base.and_then(Value::as_str).map(str::to_string),
                    members,
                    legacy_type_keyword: legacy_type,
                })
            }
            "union" => {
                if self.legacy() {
                    check_keys(
                        d,
                        info,
                        meta,
                        &["union", "data"],
                        &["base", "discriminator", "if", "features"],
                    )?;
                } else if let Err(e) = check_keys(
                    d,
                    info,
                    meta,
                    &["union", "base", "discriminator", "data"],
                    &["if", "features"],
                ) {
                    return Err(if get(d, "discriminator").is_none() {
                        self.hint(e)
                    } else {
                        e
                    });
                }
                self.union_def(d, info, name, doc_idx)?
            }
            "alternate" => {
                check_keys(d, info, meta, &["alternate", "data"], &["if", "features"])?;
                self.alternate_def(d, info, name, doc_idx)?
            }
            "command" => {
                check_keys(
                    d,
                    info,
                    meta,
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
                let data = get(d, "data");
                let args = if get(d, "boxed").is_some_and(truthy) {
                    if data.is_none() {
                        return Err(QapiError::new(info, "'boxed': true requires 'data'"));
                    }
                    self.check_type_name(data, info, "'data'")?;
                    self.args(data, info, "'data'", name)?
                } else {
                    self.args(data, info, "'data'", name)?
                };
                let rets = get(d, "returns");
                self.check_type_name_or_array(rets, info, "'returns'")?;
                let returns = match rets {
                    None => None,
                    Some(v @ Value::Dict(_)) => Some(TypeRef::Nested(self.members(
                        v,
                        info,
                        "'returns'",
                        name,
                        0,
                    )?)),
                    Some(v) => Some(type_ref(v)),
                };
                ExprKind::Command(CommandDef {
                    common: self.placeholder(name, info, doc_idx),
                    data: args,
                    returns,
                    flags: CommandFlags::default(),
                })
            }
            _ => {
                check_keys(
                    d,
                    info,
                    meta,
                    &["event"],
                    &["data", "boxed", "if", "features"],
                )?;
                let data = get(d, "data");
                let args = if get(d, "boxed").is_some_and(truthy) {
                    if data.is_none() {
                        return Err(QapiError::new(info, "'boxed': true requires 'data'"));
                    }
                    self.check_type_name(data, info, "'data'")?;
                    self.args(data, info, "'data'", name)?
                } else {
                    self.args(data, info, "'data'", name)?
                };
                ExprKind::Event(EventDef {
                    common: self.placeholder(name, info, doc_idx),
                    data: args,
                    boxed: false,
                })
            }
        };
        let ifcond = self.check_if(d, info, meta)?;
        let features = self.check_features(get(d, "features"), info)?;
        let flags = self.check_flags(d, info)?;
        let mut kind = kind;
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
            info: e.info.clone(),
            doc: doc_idx,
            kind,
        })
    }

    fn placeholder(&self, name: &str, info: &Info, doc: Option<usize>) -> DefnCommon {
        DefnCommon {
            name: name.to_string(),
            info: info.clone(),
            doc,
            ifcond: IfCond::Always,
            features: Vec::new(),
        }
    }

    fn check_doc_expr(&self, doc: &Doc, meta: &str, d: &Dict) -> Result<()> {
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

    fn enum_def(&self, d: &Dict, info: &Info, name: &str, doc: Option<usize>) -> Result<ExprKind> {
        let Some(Value::List(items)) = get(d, "data") else {
            return Err(QapiError::new(info, "'data' must be an array"));
        };
        let prefix = match get(d, "prefix") {
            None => None,
            Some(Value::Str(s)) => Some(s.clone()),
            Some(_) => return Err(QapiError::new(info, "'prefix' must be a string")),
        };
        let permissive = self.pragma.member_name_exceptions.iter().any(|n| n == name);
        let mut members = Vec::with_capacity(items.len());
        for m in items {
            let (mname, ifcond, features) = match m {
                Value::Dict(md) => {
                    check_keys(md, info, "'data' member", &["name"], &["if", "features"])?;
                    let Some(Value::Str(mname)) = get(md, "name") else {
                        return Err(QapiError::new(info, "'data' member requires a string name"));
                    };
                    let source = format!("'data' member '{mname}'");
                    self.check_enum_value(mname, info, &source, permissive)?;
                    let ifcond = self.check_if(md, info, &source)?;
                    let features = self.check_features(get(md, "features"), info)?;
                    (mname.clone(), ifcond, features)
                }
                Value::Str(mname) => {
                    self.check_enum_value(
                        mname,
                        info,
                        &format!("'data' member '{mname}'"),
                        permissive,
                    )?;
                    (mname.clone(), IfCond::Always, Vec::new())
                }
                _ => return Err(QapiError::new(info, "'data' member requires a string name")),
            };
            members.push(EnumMemberDef {
                name: mname,
                ifcond,
                features,
                info: info.clone(),
            });
        }
        Ok(ExprKind::Enum(EnumDef {
            common: self.placeholder(name, info, doc),
            members,
            prefix,
        }))
    }

    fn check_enum_value(
        &self,
        name: &str,
        info: &Info,
        source: &str,
        permissive: bool,
    ) -> Result<()> {
        // Enum values may start with a digit.
        if name.as_bytes().first().is_some_and(u8::is_ascii_digit) {
            let hidden = format!("d{name}");
            return self.check_name_lower(&hidden, info, source, permissive, permissive);
        }
        self.check_name_lower(name, info, source, permissive, permissive)
    }

    fn union_def(&self, d: &Dict, info: &Info, name: &str, doc: Option<usize>) -> Result<ExprKind> {
        let base = match get(d, "base") {
            None => BaseDef::None,
            Some(Value::Str(s)) => BaseDef::Type(s.clone()),
            Some(v) => BaseDef::Members(self.members(v, info, "'base'", name, 0)?),
        };
        let discriminator = match get(d, "discriminator") {
            None => None,
            Some(Value::Str(s)) => Some(s.clone()),
            Some(_) => {
                return Err(QapiError::new(
                    info,
                    "'discriminator' requires a string name",
                ))
            }
        };
        let Some(Value::Dict(data)) = get(d, "data") else {
            return Err(QapiError::new(info, "'data' must be an object"));
        };
        let mut branches = Vec::with_capacity(data.len());
        for (key, value) in data {
            let source = format!("'data' member '{key}'");
            let (typ, ifcond) = match value {
                Value::Dict(v) => {
                    check_keys(v, info, &source, &["type"], &["if"])?;
                    let ifcond = self.check_if(v, info, &source)?;
                    let t = get(v, "type");
                    self.branch_type(t, info, &source, discriminator.is_none())?;
                    (
                        t.map(type_ref).unwrap_or(TypeRef::Named(String::new())),
                        ifcond,
                    )
                }
                other => {
                    self.branch_type(Some(other), info, &source, discriminator.is_none())?;
                    (type_ref(other), IfCond::Always)
                }
            };
            branches.push(BranchDef {
                name: key.clone(),
                typ,
                ifcond,
                info: info.clone(),
            });
        }
        Ok(ExprKind::Union(UnionDef {
            common: self.placeholder(name, info, doc),
            base,
            discriminator,
            branches,
        }))
    }

    fn branch_type(
        &self,
        t: Option<&Value>,
        info: &Info,
        source: &str,
        simple: bool,
    ) -> Result<()> {
        if simple && self.legacy() {
            // Simple unions allowed arrays as branch types.
            if let Some(Value::List(_)) = t {
                return self.check_type_name_or_array(t, info, source);
            }
        }
        self.check_type_name(t, info, source)
    }

    fn alternate_def(
        &self,
        d: &Dict,
        info: &Info,
        name: &str,
        doc: Option<usize>,
    ) -> Result<ExprKind> {
        let data = get(d, "data");
        if !data.is_some_and(truthy) {
            return Err(QapiError::new(info, "'data' must not be empty"));
        }
        let Some(Value::Dict(data)) = data else {
            return Err(QapiError::new(info, "'data' must be an object"));
        };
        let mut branches = Vec::with_capacity(data.len());
        for (key, value) in data {
            let source = format!("'data' member '{key}'");
            self.check_name_lower(key, info, &source, false, false)?;
            let (typ, ifcond) = match value {
                Value::Dict(v) => {
                    check_keys(v, info, &source, &["type"], &["if"])?;
                    let ifcond = self.check_if(v, info, &source)?;
                    let t = get(v, "type");
                    self.check_type_name_or_array(t, info, &source)?;
                    (
                        t.map(type_ref).unwrap_or(TypeRef::Named(String::new())),
                        ifcond,
                    )
                }
                other => {
                    self.check_type_name_or_array(Some(other), info, &source)?;
                    (type_ref(other), IfCond::Always)
                }
            };
            branches.push(BranchDef {
                name: key.clone(),
                typ,
                ifcond,
                info: info.clone(),
            });
        }
        Ok(ExprKind::Alternate(AlternateDef {
            common: self.placeholder(name, info, doc),
            branches,
        }))
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
