//! qmpkit-qapi: what Rust bindings generated from a QAPI schema stand on.
//!
//! `qmpkit schema codegen --lang rust` (or [`qmpkit-codegen`] from a `build.rs`) turns a schema
//! into plain data types. This crate holds the vocabulary they share, so generated code is only
//! types and trait implementations:
//!
//! * [`Command`] — a command's argument struct names the command and its return type;
//!   [`Event`] — an event's data struct names the event; [`EventEnum`] — the generated enum of
//!   every event of a schema, for decoding a stream (unknown events land in its `Unknown`
//!   variant).
//! * [`Enum`] — QAPI enumerations; each has an `Unknown(String)` variant that keeps a value the
//!   schema does not know (from a newer QEMU).
//! * Tolerant decoding ([`decode`], [`decode_str`]): unknown struct members are ignored, unknown
//!   enum values and union branches are kept raw. Strict decoding ([`decode_strict`]) decodes,
//!   encodes back and compares with the input: anything the types did not capture is reported
//!   with the JSON path of the first difference. Every [`DecodeError`] names the path that
//!   failed.
//! * [`server`] — the contract between a generated server trait and a QMP server
//!   ([`server::Registrar`]), so generated code does not depend on any server.
//! * [`Null`] (the QAPI type `null`) and [`Empty`] (what a command without `returns` answers).
//!
//! [`qmpkit-codegen`]: https://docs.rs/qmpkit-codegen

use serde::de::{self, DeserializeOwned, MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};
use std::fmt;

pub mod server;

/// A QMP command. The implementing struct is the command's arguments; serializing it gives the
/// `arguments` object.
pub trait Command: Serialize + DeserializeOwned + Send + 'static {
    /// The command's name on the wire (`query-block`).
    const NAME: &'static str;
    /// Whether the command may be sent with `exec-oob`.
    const ALLOW_OOB: bool = false;
    /// False for the rare commands that send no reply at all.
    const SUCCESS_RESPONSE: bool = true;
    /// What the command returns: a generated type, `Vec<…>`, `serde_json::Value` for `any`,
    /// or [`Empty`] when the schema declares no return type.
    type Returns: Serialize + DeserializeOwned + Send + 'static;
}

/// A QMP event. The implementing struct is the event's `data`.
pub trait Event: Serialize + DeserializeOwned + Send + 'static {
    /// The event's name on the wire (`BLOCK_JOB_COMPLETED`).
    const NAME: &'static str;
    /// False when the event carries no `data` member.
    const HAS_DATA: bool = true;
}

/// The generated enum of all events of one schema.
pub trait EventEnum: Sized + Send + 'static {
    /// Decode an event from its name and `data` (`None` or `Null` when it has none). An event
    /// the schema does not know decodes into the enum's `Unknown` variant; a known event whose
    /// data does not decode is an error.
    fn from_parts(name: &str, data: Option<&Value>) -> Result<Self, DecodeError>;
    /// The event's name on the wire.
    fn name(&self) -> &str;
    /// The event's `data`, encoded (`None` for events without data).
    fn data(&self) -> Option<Value>;
    /// Every event name the schema defines.
    const NAMES: &'static [&'static str];
}

/// A QAPI enumeration.
pub trait Enum: Sized + Clone + 'static {
    /// The values the schema defines, in schema order.
    const NAMES: &'static [&'static str];
    /// The value named `name`; a name the schema does not define gives the `Unknown` variant.
    fn from_name(name: &str) -> Self;
    /// The value's name on the wire.
    fn as_str(&self) -> &str;
    /// True for the `Unknown` variant.
    fn is_unknown(&self) -> bool;
}

/// The QAPI built-in type `null`: JSON `null`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Null;

impl Serialize for Null {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_unit()
    }
}

impl<'de> Deserialize<'de> for Null {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Null, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Null;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("null")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Null, E> {
                Ok(Null)
            }
        }
        d.deserialize_unit(V)
    }
}

/// The empty object: what a command without a declared return type answers (`{}`). Decoding
/// accepts any object (and `null`), ignoring its members.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Empty;

impl Serialize for Empty {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_map(Some(0))?.end()
    }
}

impl<'de> Deserialize<'de> for Empty {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Empty, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Empty;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an empty object")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Empty, E> {
                Ok(Empty)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Empty, A::Error> {
                while m.next_key::<de::IgnoredAny>()?.is_some() {
                    m.next_value::<de::IgnoredAny>()?;
                }
                Ok(Empty)
            }
        }
        d.deserialize_any(V)
    }
}

impl Object for Empty {
    type Builder = EmptyBuilder;
    fn serialize_members<M: SerializeMap>(&self, _: &mut M) -> Result<(), M::Error> {
        Ok(())
    }
}

/// Builder of [`Empty`]: takes no member.
#[doc(hidden)]
#[derive(Default)]
pub struct EmptyBuilder;

impl Builder for EmptyBuilder {
    type Out = Empty;
    fn member<'de, A: MapAccess<'de>>(&mut self, _: &str, _: &mut A) -> Result<bool, A::Error> {
        Ok(false)
    }
    fn finish<E: de::Error>(self) -> Result<Empty, E> {
        Ok(Empty)
    }
}

/// A generated object type (struct or union): its members can be written into an enclosing
/// map and read member by member, which is how a union's branch shares the union's object.
pub trait Object: Sized {
    /// Collects members one at a time.
    type Builder: Builder<Out = Self>;
    /// How many members it writes at most (0: not said), so that a map can be made at its
    /// size at once.
    const MEMBERS: usize = 0;
    /// Write the members (schema order) into `m`.
    fn serialize_members<M: SerializeMap>(&self, m: &mut M) -> Result<(), M::Error>;
}

/// Reads an object's members one at a time.
pub trait Builder: Default {
    type Out;
    /// Take member `key`, whose value is next in `map`; `false` when the member is not one of
    /// this object's (its value is then still to be consumed).
    fn member<'de, A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<bool, A::Error>;
    /// The object, once every member was offered.
    fn finish<E: de::Error>(self) -> Result<Self::Out, E>;
}

/// Why a value did not decode: where (a path like `.options.file[0]`, `.` for the value itself)
/// and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    pub path: String,
    pub message: String,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at {}: {}", self.path, self.message)
    }
}

impl std::error::Error for DecodeError {}

fn path_string(p: &serde_path_to_error::Path) -> String {
    let mut s = String::new();
    for seg in p.iter() {
        match seg {
            serde_path_to_error::Segment::Seq { index } => {
                s.push('[');
                s.push_str(&index.to_string());
                s.push(']');
            }
            serde_path_to_error::Segment::Map { key } => {
                s.push('.');
                s.push_str(key);
            }
            serde_path_to_error::Segment::Enum { variant } => {
                s.push('.');
                s.push_str(variant);
            }
            serde_path_to_error::Segment::Unknown => s.push_str(".?"),
        }
    }
    if s.is_empty() {
        s.push('.');
    }
    s
}

/// Marks an error message that carries the path inside a union branch decoded late (see
/// `__rt::replay`): `MARK path MARK message`.
const INNER_PATH_MARK: char = '\u{1}';

fn to_decode_error(e: serde_path_to_error::Error<serde_json::Error>) -> DecodeError {
    let mut path = path_string(e.path());
    let mut message = e.inner().to_string();
    // serde_json adds " at line L column C" to errors from text; keep it, it helps.
    if let Some(rest) = message.strip_prefix(INNER_PATH_MARK) {
        if let Some((inner, msg)) = rest.split_once(INNER_PATH_MARK) {
            if path == "." {
                path.clear();
            }
            path.push_str(inner);
            message = msg.to_string();
        }
    }
    DecodeError { path, message }
}

/// Decode `T` from a JSON value, tolerantly (see the crate docs).
pub fn decode<T: DeserializeOwned>(v: &Value) -> Result<T, DecodeError> {
    // The path is tracked only to explain a failure: decoding again is cheaper than tracking
    // every member of every value that decodes.
    match T::deserialize(v) {
        Ok(t) => Ok(t),
        Err(_) => serde_path_to_error::deserialize(v).map_err(to_decode_error),
    }
}

/// Decode `T` from JSON text, tolerantly.
pub fn decode_str<T: DeserializeOwned>(text: &str) -> Result<T, DecodeError> {
    if let Ok(t) = serde_json::from_str(text) {
        return Ok(t);
    }
    let mut d = serde_json::Deserializer::from_str(text);
    let t = serde_path_to_error::deserialize(&mut d).map_err(to_decode_error)?;
    d.end().map_err(|e| DecodeError {
        path: ".".into(),
        message: e.to_string(),
    })?;
    Ok(t)
}

/// Decode `T` from a JSON value and require that encoding it back gives the same JSON (numbers
/// compare by value, members in any order). A member, enum value or union branch the types do
/// not know fails here, with the path of the first difference.
pub fn decode_strict<T: DeserializeOwned + Serialize>(v: &Value) -> Result<T, DecodeError> {
    let t: T = decode(v)?;
    let back = serde_json::to_value(&t).map_err(|e| DecodeError {
        path: ".".into(),
        message: format!("cannot encode the decoded value: {e}"),
    })?;
    if let Some((path, message)) = first_difference(v, &back) {
        return Err(DecodeError { path, message });
    }
    Ok(t)
}

/// Encode `t` as a JSON value.
pub fn encode<T: Serialize>(t: &T) -> Result<Value, serde_json::Error> {
    serde_json::to_value(t)
}

fn numbers_equal(a: &serde_json::Number, b: &serde_json::Number) -> bool {
    if let (Some(x), Some(y)) = (a.as_i64(), b.as_i64()) {
        return x == y;
    }
    if let (Some(x), Some(y)) = (a.as_u64(), b.as_u64()) {
        return x == y;
    }
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x == y,
        _ => false,
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Where `input` and `output` first differ, and how: `None` when they are the same JSON
/// (numbers by value, object members in any order). The path is written as in
/// [`DecodeError`].
pub fn first_difference(input: &Value, output: &Value) -> Option<(String, String)> {
    // An explicit stack: no recursion on input depth.
    let mut stack: Vec<(String, &Value, &Value)> = vec![(String::new(), input, output)];
    while let Some((path, a, b)) = stack.pop() {
        let here = || {
            if path.is_empty() {
                ".".to_string()
            } else {
                path.clone()
            }
        };
        match (a, b) {
            (Value::Object(x), Value::Object(y)) => {
                for k in x.keys() {
                    if !y.contains_key(k) {
                        return Some((
                            format!("{path}.{k}"),
                            "member not kept by the generated type (unknown to the schema?)"
                                .to_string(),
                        ));
                    }
                }
                for k in y.keys() {
                    if !x.contains_key(k) {
                        return Some((
                            format!("{path}.{k}"),
                            "member added by encoding (not in the input)".to_string(),
                        ));
                    }
                }
                let mut items: Vec<_> = x.iter().collect();
                items.reverse();
                for (k, va) in items {
                    if let Some(vb) = y.get(k) {
                        stack.push((format!("{path}.{k}"), va, vb));
                    }
                }
            }
            (Value::Array(x), Value::Array(y)) => {
                if x.len() != y.len() {
                    return Some((here(), format!("{} elements in, {} out", x.len(), y.len())));
                }
                for (i, (va, vb)) in x.iter().zip(y).enumerate().rev() {
                    stack.push((format!("{path}[{i}]"), va, vb));
                }
            }
            (Value::Number(x), Value::Number(y)) => {
                if !numbers_equal(x, y) {
                    return Some((here(), format!("{x} in, {y} out")));
                }
            }
            _ => {
                if a != b {
                    let msg = match (a, b) {
                        (Value::String(x), Value::String(y)) => format!("{x:?} in, {y:?} out"),
                        _ => format!("{} in, {} out", kind(a), kind(b)),
                    };
                    return Some((here(), msg));
                }
            }
        }
    }
    None
}

/// Support for generated code; not a stable interface.
#[doc(hidden)]
pub mod __rt {
    use super::*;
    use std::borrow::Cow;

    pub type BuilderOf<T> = <T as Object>::Builder;

    /// A member name, borrowed from the input when possible.
    pub struct Key<'de>(pub Cow<'de, str>);

    impl<'de> Deserialize<'de> for Key<'de> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Key<'de>, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = Key<'de>;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("a member name")
                }
                fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Key<'de>, E> {
                    Ok(Key(Cow::Borrowed(s)))
                }
                fn visit_str<E: de::Error>(self, s: &str) -> Result<Key<'de>, E> {
                    Ok(Key(Cow::Owned(s.to_owned())))
                }
                fn visit_string<E: de::Error>(self, s: String) -> Result<Key<'de>, E> {
                    Ok(Key(Cow::Owned(s)))
                }
            }
            d.deserialize_str(V)
        }
    }

    /// Deserialize an object type through its builder.
    pub fn deserialize_object<'de, D: Deserializer<'de>, T: Object>(
        d: D,
        what: &'static str,
    ) -> Result<T, D::Error> {
        struct V<T>(&'static str, std::marker::PhantomData<T>);
        impl<'de, T: Object> Visitor<'de> for V<T> {
            type Value = T;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "an object ({})", self.0)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<T, A::Error> {
                let mut b = T::Builder::default();
                while let Some(Key(k)) = map.next_key::<Key<'de>>()? {
                    if !b.member(&k, &mut map)? {
                        map.next_value::<de::IgnoredAny>()?;
                    }
                }
                b.finish()
            }
        }
        d.deserialize_map(V::<T>(what, std::marker::PhantomData))
    }

    /// Serialize an object type as a map of its members.
    pub fn serialize_object<S: Serializer, T: Object>(t: &T, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map((T::MEMBERS > 0).then_some(T::MEMBERS))?;
        t.serialize_members(&mut m)?;
        m.end()
    }

    pub fn missing<T, E: de::Error>(v: Option<T>, name: &'static str) -> Result<T, E> {
        match v {
            Some(v) => Ok(v),
            None => Err(E::missing_field(name)),
        }
    }

    /// Deserialize an enum through [`Enum::from_name`].
    pub fn deserialize_enum<'de, D: Deserializer<'de>, T: Enum>(d: D) -> Result<T, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: Enum> Visitor<'de> for V<T> {
            type Value = T;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string (an enumeration value)")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<T, E> {
                Ok(T::from_name(s))
            }
        }
        d.deserialize_str(V::<T>(std::marker::PhantomData))
    }

    /// One value, as a map access that yields it to `next_value`.
    pub struct OneValue(pub Option<Value>);

    impl<'de> MapAccess<'de> for OneValue {
        type Error = serde_json::Error;
        fn next_key_seed<K: de::DeserializeSeed<'de>>(
            &mut self,
            _: K,
        ) -> Result<Option<K::Value>, serde_json::Error> {
            Ok(None)
        }
        fn next_value_seed<V: de::DeserializeSeed<'de>>(
            &mut self,
            seed: V,
        ) -> Result<V::Value, serde_json::Error> {
            match self.0.take() {
                Some(v) => seed.deserialize(v),
                None => Err(de::Error::custom("value already taken")),
            }
        }
    }

    /// Offer members that arrived before a union's tag to the branch's builder, once the tag
    /// is known. Members the branch does not take are dropped (as unknown members are).
    pub fn replay<B: Builder, E: de::Error>(
        b: &mut B,
        pending: Vec<(String, Value)>,
    ) -> Result<(), E> {
        for (k, v) in pending {
            if let Err(e) = b.member(&k, &mut OneValue(Some(v))) {
                return Err(E::custom(format_args!(
                    "{m}.{k}{m}{e}",
                    m = super::INNER_PATH_MARK
                )));
            }
        }
        Ok(())
    }

    /// A union branch the schema does not know: its members, the tag first.
    pub fn unknown_branch(tag_name: &str, tag: String, rest: Map<String, Value>) -> Value {
        let mut m = Map::with_capacity(rest.len() + 1);
        m.insert(tag_name.to_owned(), Value::String(tag));
        for (k, v) in rest {
            if k != tag_name {
                m.insert(k, v);
            }
        }
        Value::Object(m)
    }

    /// The tag of an unknown branch (see [`unknown_branch`]).
    pub fn unknown_tag<'a>(v: &'a Value, tag_name: &str) -> &'a str {
        v.get(tag_name).and_then(Value::as_str).unwrap_or("")
    }

    /// Write the members of an unknown branch, but its tag (written with the base).
    pub fn serialize_unknown<M: SerializeMap>(
        v: &Value,
        tag_name: &str,
        m: &mut M,
    ) -> Result<(), M::Error> {
        match v {
            Value::Object(o) => {
                for (k, v) in o {
                    if k != tag_name {
                        m.serialize_entry(k, v)?;
                    }
                }
                Ok(())
            }
            _ => Err(serde::ser::Error::custom(
                "the data of an unknown union branch must be an object",
            )),
        }
    }

    /// Builder of a legacy simple union's branch: the one member `data`.
    pub struct DataBuilder<T>(pub Option<T>);

    impl<T> Default for DataBuilder<T> {
        fn default() -> Self {
            DataBuilder(None)
        }
    }

    impl<T: DeserializeOwned> Builder for DataBuilder<T> {
        type Out = T;
        fn member<'de, A: MapAccess<'de>>(
            &mut self,
            key: &str,
            map: &mut A,
        ) -> Result<bool, A::Error> {
            if key == "data" {
                self.0 = Some(map.next_value()?);
                Ok(true)
            } else {
                Ok(false)
            }
        }
        fn finish<E: de::Error>(self) -> Result<T, E> {
            missing(self.0, "data")
        }
    }

    /// An integer of an alternate's integer branch, in the branch type's range.
    pub fn int<T: TryFrom<i64>, E: de::Error>(v: i64, what: &'static str) -> Result<T, E> {
        T::try_from(v).map_err(|_| E::invalid_value(de::Unexpected::Signed(v), &what))
    }

    /// [`int`] from an unsigned value.
    pub fn uint<T: TryFrom<u64>, E: de::Error>(v: u64, what: &'static str) -> Result<T, E> {
        T::try_from(v).map_err(|_| E::invalid_value(de::Unexpected::Unsigned(v), &what))
    }

    /// Deserialize an object alternative from the visitor's map.
    pub fn from_map<'de, T: Deserialize<'de>, A: MapAccess<'de>>(map: A) -> Result<T, A::Error> {
        T::deserialize(de::value::MapAccessDeserializer::new(map))
    }

    /// Deserialize an array alternative from the visitor's sequence.
    pub fn from_seq<'de, T: Deserialize<'de>, A: de::SeqAccess<'de>>(
        seq: A,
    ) -> Result<T, A::Error> {
        T::deserialize(de::value::SeqAccessDeserializer::new(seq))
    }

    /// Decode a known event's data (`None` and `null` mean none).
    pub fn event_data<T: DeserializeOwned>(data: Option<&Value>) -> Result<T, DecodeError> {
        match data {
            Some(v) if !v.is_null() => decode(v),
            _ => decode(&Value::Object(Map::new())),
        }
    }

    /// Encode an event's data.
    pub fn event_value<T: Serialize>(t: &T) -> Option<Value> {
        serde_json::to_value(t).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn differences_name_their_path() {
        let a = json!({"a": [1, {"b": 2}], "c": "x"});
        assert_eq!(first_difference(&a, &a), None);
        let b = json!({"a": [1, {"b": 3}], "c": "x"});
        assert_eq!(
            first_difference(&a, &b),
            Some((".a[1].b".to_string(), "2 in, 3 out".to_string()))
        );
        let c = json!({"a": [1, {}], "c": "x"});
        assert_eq!(
            first_difference(&a, &c).map(|d| d.0),
            Some(".a[1].b".into())
        );
        assert_eq!(first_difference(&json!(1), &json!(1.0)), None);
        assert_eq!(
            first_difference(&json!([1]), &json!([1, 2])).map(|d| d.0),
            Some(".".into())
        );
    }

    #[test]
    fn empty_and_null() {
        assert_eq!(decode::<Empty>(&json!({"x": 1})), Ok(Empty));
        assert_eq!(encode(&Empty).unwrap(), json!({}));
        assert!(decode_strict::<Empty>(&json!({"x": 1})).is_err());
        assert_eq!(decode::<Null>(&json!(null)), Ok(Null));
        let e = decode::<Null>(&json!(1)).unwrap_err();
        assert_eq!(e.path, ".");
    }
}
