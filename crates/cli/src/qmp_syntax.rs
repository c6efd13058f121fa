//! qmp-shell's shorthand for QMP requests, shared by `qmpkit qmp`, `qmpkit shell` and the
//! replay checker:
//!
//! - `command key=value a.b=value …`: dotted keys nest objects;
//! - values: integers and other numbers, `true`/`false`/`null` (also Python's
//!   `True`/`False`/`None`), objects `{…}` and arrays `[…]` in JSON or Python literal notation
//!   (either quote style), anything else a string; a value wholly in quotes is that string;
//! - `transaction(` … `)`: one action per line (or all on one line), each
//!   `action-type key=value …`, sent as one `transaction` command;
//! - a line starting with `{` is a raw JSON request.
//!
//! Nothing here talks to a server or panics on input: every problem is an `Err` with a
//! one-line reason.

use serde_json::{Map, Number, Value};

/// Deepest nesting accepted in a literal value.
const MAX_DEPTH: usize = 64;

/// One request ready to send.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// The command name (`execute` or `exec-oob`).
    pub name: String,
    /// The `arguments` member, if any.
    pub arguments: Option<Map<String, Value>>,
    /// An `id` the line asked for (raw JSON only).
    pub id: Option<Value>,
    /// Sent with `exec-oob`.
    pub oob: bool,
}

impl Request {
    /// The request as QMP JSON (`{"execute": …, "arguments": …, "id": …}`).
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        let key = if self.oob { "exec-oob" } else { "execute" };
        m.insert(key.into(), Value::String(self.name.clone()));
        if let Some(a) = &self.arguments {
            m.insert("arguments".into(), Value::Object(a.clone()));
        }
        if let Some(id) = &self.id {
            m.insert("id".into(), id.clone());
        }
        Value::Object(m)
    }
}

/// What one input line amounts to.
#[derive(Debug, Clone, PartialEq)]
pub enum Parsed {
    /// Nothing to send (blank line or comment).
    Empty,
    /// A line of a transaction that is not finished yet.
    Pending,
    /// A request to send.
    Request(Request),
}

/// The parser: stateful only for transactions spread over several lines.
#[derive(Debug, Default)]
pub struct Shorthand {
    actions: Option<Vec<Value>>,
}

impl Shorthand {
    pub fn new() -> Shorthand {
        Shorthand::default()
    }

    /// True between `transaction(` and `)`.
    pub fn in_transaction(&self) -> bool {
        self.actions.is_some()
    }

    /// Forget a transaction being typed.
    pub fn cancel(&mut self) {
        self.actions = None;
    }

    /// Parse one line. On error a transaction being typed is abandoned.
    pub fn feed(&mut self, line: &str) -> Result<Parsed, String> {
        let r = self.feed_inner(line);
        if r.is_err() {
            self.actions = None;
        }
        r
    }

    fn feed_inner(&mut self, line: &str) -> Result<Parsed, String> {
        let text = line.trim();
        if self.actions.is_none() {
            if text.is_empty() || text.starts_with('#') {
                return Ok(Parsed::Empty);
            }
            if text.starts_with('{') {
                return raw_request(text).map(Parsed::Request);
            }
        }
        let mut words = split_words(text)?;
        if self.actions.is_none() {
            if words.first().map(String::as_str) == Some("transaction(") {
                words.remove(0);
                self.actions = Some(Vec::new());
            } else if let Some(rest) = words.first().and_then(|w| w.strip_prefix("transaction(")) {
                // `transaction(action …`: the action name glued to the parenthesis.
                let rest = rest.to_string();
                words[0] = rest;
                self.actions = Some(Vec::new());
            } else {
                let Some((name, args)) = words.split_first() else {
                    return Ok(Parsed::Empty);
                };
                // Always an `arguments` member, as qmp-shell sends it.
                let arguments = parse_args(args)?;
                return Ok(Parsed::Request(Request {
                    name: name.clone(),
                    arguments: Some(arguments),
                    id: None,
                    oob: false,
                }));
            }
        }
        let mut finish = false;
        if let Some(last) = words.last_mut() {
            if last == ")" {
                words.pop();
                finish = true;
            } else if last.len() > 1 && last.ends_with(')') && !last.contains('=') {
                // `action)`: the parenthesis glued to an argument-less action name.
                last.pop();
                finish = true;
            }
        }
        if let Some((name, args)) = words.split_first() {
            let data = parse_args(args)?;
            let mut action = Map::new();
            action.insert("type".into(), Value::String(name.clone()));
            action.insert("data".into(), Value::Object(data));
            if let Some(a) = self.actions.as_mut() {
                a.push(Value::Object(action));
            }
        }
        if !finish {
            return Ok(Parsed::Pending);
        }
        let actions = self.actions.take().unwrap_or_default();
        let mut arguments = Map::new();
        arguments.insert("actions".into(), Value::Array(actions));
        Ok(Parsed::Request(Request {
            name: "transaction".into(),
            arguments: Some(arguments),
            id: None,
            oob: false,
        }))
    }
}

/// A raw JSON request line: `{"execute"|"exec-oob": NAME, "arguments": {…}, "id": …}`.
pub fn raw_request(text: &str) -> Result<Request, String> {
    let v: Value = serde_json::from_str(text).map_err(|e| format!("invalid JSON: {e}"))?;
    request_from_json(v)
}

/// A request from its JSON object.
pub fn request_from_json(v: Value) -> Result<Request, String> {
    let Value::Object(mut m) = v else {
        return Err("QMP input must be a JSON object".into());
    };
    let (name, oob) = match (m.remove("execute"), m.remove("exec-oob")) {
        (Some(Value::String(n)), None) => (n, false),
        (None, Some(Value::String(n))) => (n, true),
        (Some(_), Some(_)) => {
            return Err("QMP input must have 'execute' or 'exec-oob', not both".into())
        }
        (None, None) => return Err("QMP input lacks member 'execute'".into()),
        (Some(_), None) => return Err("QMP input member 'execute' must be a string".into()),
        (None, Some(_)) => return Err("QMP input member 'exec-oob' must be a string".into()),
    };
    let arguments = match m.remove("arguments") {
        None => None,
        Some(Value::Object(a)) => Some(a),
        Some(_) => return Err("QMP input member 'arguments' must be an object".into()),
    };
    let id = m.remove("id");
    if let Some(k) = m.keys().next() {
        return Err(format!("QMP input member '{k}' is unexpected"));
    }
    Ok(Request {
        name,
        arguments,
        id,
        oob,
    })
}

/// `key=value` words into an arguments object (dotted keys nest).
pub fn parse_args(words: &[String]) -> Result<Map<String, Value>, String> {
    let mut m = Map::new();
    for w in words {
        let Some((key, value)) = w.split_once('=') else {
            return Err(format!("'{w}': expected KEY=VALUE"));
        };
        if key.is_empty() {
            return Err(format!("'{w}': the key is empty"));
        }
        let value = parse_value(value).map_err(|e| format!("{key}: {e}"))?;
        insert_path(&mut m, key, value)?;
    }
    Ok(m)
}

/// Put `value` at the dotted `key` (`a.b.c`), creating the objects on the way.
pub fn insert_path(m: &mut Map<String, Value>, key: &str, value: Value) -> Result<(), String> {
    let parts: Vec<&str> = key.split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(format!("'{key}': empty component in a dotted key"));
    }
    let (leaf, parents) = match parts.split_last() {
        Some(x) => x,
        None => return Err(format!("'{key}': the key is empty")),
    };
    let mut cur = m;
    let mut path = String::new();
    for p in parents {
        if !path.is_empty() {
            path.push('.');
        }
        path.push_str(p);
        let slot = cur
            .entry((*p).to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        match slot {
            Value::Object(o) => cur = o,
            _ => {
                return Err(format!(
                    "'{path}' is given a value and also used as a parent"
                ))
            }
        }
    }
    if cur.contains_key(*leaf) {
        return Err(format!("'{key}' is given more than once"));
    }
    cur.insert((*leaf).to_string(), value);
    Ok(())
}

/// One value of a `key=value` pair.
pub fn parse_value(s: &str) -> Result<Value, String> {
    if let Ok(i) = s.parse::<i64>() {
        return Ok(Value::from(i));
    }
    if let Ok(u) = s.parse::<u64>() {
        return Ok(Value::from(u));
    }
    match s {
        "true" | "True" => return Ok(Value::Bool(true)),
        "false" | "False" => return Ok(Value::Bool(false)),
        "null" | "None" => return Ok(Value::Null),
        _ => {}
    }
    if s.starts_with('{') || s.starts_with('[') {
        return parse_literal(s);
    }
    if looks_numeric(s) {
        if let Some(n) = s.parse::<f64>().ok().and_then(Number::from_f64) {
            return Ok(Value::Number(n));
        }
    }
    if s.len() >= 2
        && ((s.starts_with('"') && s.ends_with('"')) || (s.starts_with('\'') && s.ends_with('\'')))
    {
        if let Ok(v @ Value::String(_)) = parse_literal(s) {
            return Ok(v);
        }
    }
    Ok(Value::String(s.to_string()))
}

/// A decimal number with a fraction or an exponent (not `inf`, `nan`, `0x…`).
fn looks_numeric(s: &str) -> bool {
    let body = s.strip_prefix('-').unwrap_or(s);
    body.starts_with(|c: char| c.is_ascii_digit())
        && body
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-'))
}

/// Split a line into words at whitespace outside quotes and brackets. Quotes stay in the word
/// (values are parsed afterwards).
pub fn split_words(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut depth = 0usize;
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for c in line.chars() {
        if let Some(q) = quote {
            cur.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == q {
                quote = None;
            }
            continue;
        }
        match c {
            '"' | '\'' => {
                quote = Some(c);
                cur.push(c);
            }
            '{' | '[' => {
                depth += 1;
                cur.push(c);
            }
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                cur.push(c);
            }
            c if c.is_whitespace() && depth == 0 => {
                if !cur.is_empty() {
                    words.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if let Some(q) = quote {
        return Err(format!("unterminated {q}-quoted string"));
    }
    if !cur.is_empty() {
        words.push(cur);
    }
    Ok(words)
}

/// A JSON or Python literal: objects, arrays, strings in either quote style, numbers,
/// `true`/`false`/`null`/`True`/`False`/`None`; a trailing comma is allowed.
pub fn parse_literal(s: &str) -> Result<Value, String> {
    let mut p = Lit {
        s: s.as_bytes(),
        text: s,
        pos: 0,
    };
    let v = p.value(0)?;
    p.ws();
    if p.pos != p.s.len() {
        return Err(format!("unexpected '{}' after the value", p.rest()));
    }
    Ok(v)
}

struct Lit<'a> {
    s: &'a [u8],
    text: &'a str,
    pos: usize,
}

impl Lit<'_> {
    fn rest(&self) -> String {
        self.text
            .get(self.pos..)
            .unwrap_or("")
            .chars()
            .take(20)
            .collect()
    }

    fn ws(&mut self) {
        while self
            .s
            .get(self.pos)
            .is_some_and(|b| b.is_ascii_whitespace())
        {
            self.pos += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn value(&mut self, depth: usize) -> Result<Value, String> {
        if depth > MAX_DEPTH {
            return Err(format!("nested deeper than {MAX_DEPTH}"));
        }
        self.ws();
        match self.peek() {
            None => Err("a value is missing".into()),
            Some(b'{') => {
                self.pos += 1;
                let mut m = Map::new();
                loop {
                    self.ws();
                    if self.peek() == Some(b'}') {
                        self.pos += 1;
                        return Ok(Value::Object(m));
                    }
                    let key = match self.peek() {
                        Some(q @ (b'"' | b'\'')) => self.string(q)?,
                        _ => return Err(format!("expected a quoted key at '{}'", self.rest())),
                    };
                    self.ws();
                    if !matches!(self.peek(), Some(b':' | b'=')) {
                        return Err(format!("expected ':' after key '{key}'"));
                    }
                    self.pos += 1;
                    let v = self.value(depth + 1)?;
                    m.insert(key, v);
                    self.ws();
                    match self.peek() {
                        Some(b',') => self.pos += 1,
                        Some(b'}') => {}
                        _ => return Err(format!("expected ',' or '}}' at '{}'", self.rest())),
                    }
                }
            }
            Some(b'[') => {
                self.pos += 1;
                let mut a = Vec::new();
                loop {
                    self.ws();
                    if self.peek() == Some(b']') {
                        self.pos += 1;
                        return Ok(Value::Array(a));
                    }
                    a.push(self.value(depth + 1)?);
                    self.ws();
                    match self.peek() {
                        Some(b',') => self.pos += 1,
                        Some(b']') => {}
                        _ => return Err(format!("expected ',' or ']' at '{}'", self.rest())),
                    }
                }
            }
            Some(q @ (b'"' | b'\'')) => self.string(q).map(Value::String),
            Some(_) => {
                let start = self.pos;
                while self.peek().is_some_and(|b| {
                    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'+' | b'.' | b'_')
                }) {
                    self.pos += 1;
                }
                let word = self.text.get(start..self.pos).unwrap_or("");
                match word {
                    "" => Err(format!("unexpected '{}'", self.rest())),
                    "true" | "True" => Ok(Value::Bool(true)),
                    "false" | "False" => Ok(Value::Bool(false)),
                    "null" | "None" => Ok(Value::Null),
                    w => {
                        if let Ok(i) = w.parse::<i64>() {
                            Ok(Value::from(i))
                        } else if let Ok(u) = w.parse::<u64>() {
                            Ok(Value::from(u))
                        } else if let Some(n) = looks_numeric(w)
                            .then(|| w.parse::<f64>().ok())
                            .flatten()
                            .and_then(Number::from_f64)
                        {
                            Ok(Value::Number(n))
                        } else {
                            Err(format!("'{w}' is not a value (strings need quotes)"))
                        }
                    }
                }
            }
        }
    }

    fn string(&mut self, q: u8) -> Result<String, String> {
        self.pos += 1;
        let mut out = String::new();
        loop {
            let rest = self.text.get(self.pos..).unwrap_or("");
            let Some(c) = rest.chars().next() else {
                return Err("unterminated string".into());
            };
            self.pos += c.len_utf8();
            if c as u32 == q as u32 {
                return Ok(out);
            }
            if c != '\\' {
                out.push(c);
                continue;
            }
            let Some(e) = self.text.get(self.pos..).and_then(|r| r.chars().next()) else {
                return Err("unterminated string".into());
            };
            self.pos += e.len_utf8();
            match e {
                'n' => out.push('\n'),
                't' => out.push('\t'),
                'r' => out.push('\r'),
                'b' => out.push('\u{8}'),
                'f' => out.push('\u{c}'),
                '0' => out.push('\0'),
                'u' => {
                    let hex = self.text.get(self.pos..self.pos + 4).unwrap_or("");
                    let code = u32::from_str_radix(hex, 16)
                        .map_err(|_| format!("invalid escape '\\u{hex}'"))?;
                    self.pos += 4;
                    out.push(char::from_u32(code).unwrap_or('\u{fffd}'));
                }
                other => out.push(other),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn one(line: &str) -> Value {
        match Shorthand::new().feed(line) {
            Ok(Parsed::Request(r)) => r.to_json(),
            other => panic!("{line}: {other:?}"),
        }
    }

    #[test]
    fn key_value_pairs() {
        assert_eq!(
            one("device_add driver=e1000 id=net1"),
            json!({"execute": "device_add", "arguments": {"driver": "e1000", "id": "net1"}})
        );
        assert_eq!(
            one("query-status"),
            json!({"execute": "query-status", "arguments": {}})
        );
        assert_eq!(
            one("x n=-12 f=1.5 t=true F=False z=None s=1.2.3 q='a b' big=18446744073709551615"),
            json!({"execute": "x", "arguments": {"n": -12, "f": 1.5, "t": true, "F": false,
                "z": null, "s": "1.2.3", "q": "a b", "big": 18446744073709551615u64}})
        );
        assert_eq!(
            one("blockdev-add driver=null-co node-name=n0 a.b.c=1 a.b.d=x"),
            json!({"execute": "blockdev-add", "arguments": {"driver": "null-co",
                "node-name": "n0", "a": {"b": {"c": 1, "d": "x"}}}})
        );
    }

    #[test]
    fn literals_python_and_json() {
        assert_eq!(
            one(r#"cmd arg={'key':'value','obj':{"prop":"value"}} l=[1,'two',None,True,]"#),
            json!({"execute": "cmd", "arguments": {"arg": {"key": "value", "obj": {"prop": "value"}},
                "l": [1, "two", null, true]}})
        );
        assert_eq!(
            one(r#"cmd a={ "x": [ 1, 2 ] }"#),
            json!({"execute": "cmd", "arguments": {"a": {"x": [1, 2]}}})
        );
    }

    #[test]
    fn errors_are_reported_not_panicked() {
        let mut p = Shorthand::new();
        assert_eq!(p.feed("cmd foo").unwrap_err(), "'foo': expected KEY=VALUE");
        assert_eq!(p.feed("cmd =1").unwrap_err(), "'=1': the key is empty");
        assert_eq!(
            p.feed("cmd a=1 a.b=2").unwrap_err(),
            "'a' is given a value and also used as a parent"
        );
        assert_eq!(
            p.feed("cmd a=1 a=2").unwrap_err(),
            "'a' is given more than once"
        );
        assert!(p.feed("cmd a={'x':}").unwrap_err().starts_with("a: "));
        assert!(p.feed("cmd a='x").unwrap_err().contains("unterminated"));
        let deep = format!("cmd a={}", "[".repeat(10_000));
        assert!(p.feed(&deep).unwrap_err().contains("nested deeper"));
        assert_eq!(
            p.feed(r#"{"execute": 1}"#).unwrap_err(),
            "QMP input member 'execute' must be a string"
        );
    }

    #[test]
    fn odd_input_does_not_panic() {
        let mut p = Shorthand::new();
        for line in [
            "",
            "\u{3000}",
            "transaction(",
            ")",
            "transaction()",
            "transaction( )",
            "a b=\\",
            "a b='\\u12'",
            "a b=\"\\u{zz}\"",
            "a b=[\"\\",
            "a b={'a'",
            "a b={1:2}",
            "a b=[,]",
            "a .=1",
            "a a.=1",
            "a b=--1",
            "a b=1e999",
            "a b=-",
            "{",
            "{}",
            "[1]",
            "a b=\u{e9}\u{3000}c",
        ] {
            let _ = p.feed(line);
        }
    }

    #[test]
    fn transactions() {
        let mut p = Shorthand::new();
        assert_eq!(p.feed("transaction(").unwrap(), Parsed::Pending);
        assert!(p.in_transaction());
        assert_eq!(
            p.feed("block-dirty-bitmap-add node=drive0 name=bitmap1")
                .unwrap(),
            Parsed::Pending
        );
        assert_eq!(
            p.feed("block-dirty-bitmap-clear node=drive0 name=bitmap0")
                .unwrap(),
            Parsed::Pending
        );
        let Parsed::Request(r) = p.feed(")").unwrap() else {
            panic!()
        };
        assert_eq!(
            r.to_json(),
            json!({"execute": "transaction", "arguments": {"actions": [
                {"type": "block-dirty-bitmap-add", "data": {"node": "drive0", "name": "bitmap1"}},
                {"type": "block-dirty-bitmap-clear", "data": {"node": "drive0", "name": "bitmap0"}}
            ]}})
        );
        assert!(!p.in_transaction());
        assert_eq!(
            one("transaction( abort )"),
            json!({"execute": "transaction", "arguments": {"actions": [
                {"type": "abort", "data": {}}]}})
        );
    }

    #[test]
    fn raw_json() {
        assert_eq!(
            one(r#"{"execute": "query-status", "id": {"a": [1]}}"#),
            json!({"execute": "query-status", "id": {"a": [1]}})
        );
        assert_eq!(
            one(r#"{"exec-oob": "migrate-pause"}"#),
            json!({"exec-oob": "migrate-pause"})
        );
    }
}
