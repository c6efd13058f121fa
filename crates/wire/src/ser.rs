//! QEMU's output form of any [`Serialize`] value, written straight to bytes.
//!
//! [`write_qemu_serialized`] writes what `write_qemu_ordered(&serde_json::to_value(t)?)`
//! writes — every object's members in QEMU's walking order ([`crate::qdict`]), numbers,
//! strings and the largest-double marker as the value writer prints them — without building
//! the value: a typed reply (a generated struct, a list of them) goes to the wire as it is.
//!
//! Members arrive in the order QEMU would insert them (a generated type's schema order, a
//! map's own order). Each object's members are written one after another as they come, their
//! extents noted; when the object ends, they are put in QEMU's order in place (one copy of
//! the object's text through a scratch buffer). An object whose members repeat a name is not
//! something a typed value makes: it is written with every occurrence, where a JSON value
//! keeps the first position and the last value.

use serde::ser::{self, Serialize};

use crate::json::{
    format_g17, marked_double_text, write_i64, write_string, write_u64, LARGEST_DOUBLE_KEY,
};
use crate::qdict::member_bucket;

/// Why a value could not be written (a map key that is not text-like, a number beyond 64
/// bits, or what a type's own `Serialize` reports).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SerError(pub String);

impl std::fmt::Display for SerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SerError {}

impl ser::Error for SerError {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        SerError(msg.to_string())
    }
}

/// Append QEMU's output form of `t` to `out`, every object's members in QEMU's walking order:
/// the bytes of `write_qemu_ordered(&serde_json::to_value(t)?, out)`. On an error, `out` is
/// left as it was.
pub fn write_qemu_serialized<T: Serialize + ?Sized>(
    t: &T,
    out: &mut Vec<u8>,
) -> Result<(), SerError> {
    let start = out.len();
    let mut w = Writer {
        out,
        members: Vec::new(),
        scratch: Vec::new(),
        orders: Vec::new(),
        names: Names::default(),
    };
    let r = t.serialize(&mut w);
    if r.is_err() {
        w.out.truncate(start);
    }
    r
}

/// One member written so far: its sort word (bucket, then most recent first) and extent.
struct Member {
    order: u64,
    start: usize,
    end: usize,
    /// Whether the name is the marker of a largest double (see `json`).
    marker: bool,
    value: usize,
}

struct Writer<'a> {
    out: &'a mut Vec<u8>,
    /// The members of every object being written, innermost last.
    members: Vec<Member>,
    /// Where an object's text waits while its members are put in order.
    scratch: Vec<u8>,
    /// An object's sort words while they are sorted.
    orders: Vec<u64>,
    names: Names,
}

/// A member's sort word: its name's bucket ascending, then the member inserted last first
/// (`index`: its place in its object).
fn member_order(bucket: u32, index: usize) -> u64 {
    (u64::from(bucket) << 32) | u64::from(u32::MAX - index as u32)
}

/// The place in its object of the member whose sort word is `order`.
fn member_index(order: u64) -> usize {
    (u32::MAX - order as u32) as usize
}

/// Member names that come back (each element of a list of one type has the same ones): each
/// name's bucket and written form (`"name": `), found again by where its text is and checked
/// against that text, so that it is hashed and escaped once. Names are memorised only once a
/// value has had a few: small replies pay nothing for it. The table is open-addressed and
/// large beside the names a reply's types have (a few hundred at most), so that a name once
/// seen is nearly always found again.
#[derive(Default)]
struct Names {
    seen: usize,
    slots: Vec<KnownName>,
    /// Each memorised name's text, then its written form.
    arena: Vec<u8>,
}

/// A memorised name; `ptr` 0: a free slot.
#[derive(Clone, Copy, Default)]
struct KnownName {
    ptr: usize,
    len: u32,
    /// Where its text starts in the arena (its written form follows).
    at: u32,
    /// Its written form's length.
    written: u32,
    bucket: u32,
}

/// Names a value has before they are memorised.
const NAMES_BEFORE_MEMO: usize = 64;
/// Slots of the table (a power of two).
const NAME_SLOTS: usize = 1024;
/// Slots looked at for one name before it takes the first of them.
const NAME_PROBES: usize = 8;
/// The arena stops growing here (a value with ever new names gains nothing from it).
const NAME_ARENA_MAX: usize = 1 << 20;

impl Names {
    /// Write `key` as a member name (`"key": `) and give its bucket.
    fn write(&mut self, key: &str, out: &mut Vec<u8>) -> u32 {
        self.seen += 1;
        if self.seen <= NAMES_BEFORE_MEMO {
            write_string(key, out);
            out.extend_from_slice(b": ");
            return member_bucket(key);
        }
        if self.slots.is_empty() {
            self.slots.resize(NAME_SLOTS, KnownName::default());
        }
        let ptr = key.as_ptr() as usize;
        let home = ((ptr as u64 ^ key.len() as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 54)
            as usize
            & (NAME_SLOTS - 1);
        let mut free = None;
        for i in 0..NAME_PROBES {
            let slot = (home + i) & (NAME_SLOTS - 1);
            let k = self.slots[slot];
            if k.ptr == 0 {
                free = Some(slot);
                break;
            }
            let at = k.at as usize;
            if k.ptr == ptr
                && k.len as usize == key.len()
                && self.arena[at..at + key.len()] == *key.as_bytes()
            {
                let w = at + key.len();
                out.extend_from_slice(&self.arena[w..w + k.written as usize]);
                return k.bucket;
            }
        }
        let start = out.len();
        write_string(key, out);
        out.extend_from_slice(b": ");
        let bucket = member_bucket(key);
        let written = out.len() - start;
        if self.arena.len() + key.len() + written <= NAME_ARENA_MAX {
            let at = self.arena.len();
            self.arena.extend_from_slice(key.as_bytes());
            self.arena.extend_from_slice(&out[start..]);
            self.slots[free.unwrap_or(home)] = KnownName {
                ptr,
                len: key.len() as u32,
                at: at as u32,
                written: written as u32,
                bucket,
            };
        }
        bucket
    }
}

impl Writer<'_> {
    /// Put the members of the object whose body starts at `body` (its members from
    /// `self.members[base..]`) in QEMU's order, with their separators.
    fn order_members(&mut self, base: usize, body: usize) {
        let n = self.members.len() - base;
        if n >= 2 {
            // The sort words alone are sorted (each holds its member's index).
            let members = &self.members[base..];
            self.orders.clear();
            self.orders.extend(members.iter().map(|m| m.order));
            self.orders.sort_unstable();
            self.scratch.clear();
            self.scratch.extend_from_slice(&self.out[body..]);
            let (out, scratch) = (&mut *self.out, &self.scratch[..]);
            out.truncate(body);
            out.reserve(scratch.len() + 2 * n);
            let text = |order: u64| {
                members.get(member_index(order)).map_or(&[][..], |m| {
                    scratch
                        .get(m.start - body..m.end - body)
                        .unwrap_or_default()
                })
            };
            if let Some((&first, rest)) = self.orders.split_first() {
                out.extend_from_slice(text(first));
                for &order in rest {
                    out.extend_from_slice(b", ");
                    out.extend_from_slice(text(order));
                }
            }
        } else if n == 1 {
            // The marker of a largest double (see `json`): one member under its key whose
            // value was written as the overflow it would otherwise stand for.
            let m = &self.members[base];
            if let Some(number) = m
                .marker
                .then(|| marked_double_text(&self.out[m.value..m.end]))
                .flatten()
            {
                self.out.truncate(body - 1);
                format_g17(number, self.out);
                self.members.truncate(base);
                return;
            }
        }
        self.members.truncate(base);
        self.out.push(b'}');
    }
}

/// An array or object being written.
pub struct Compound<'w, 'a> {
    w: &'w mut Writer<'a>,
    /// Objects: where the object's members start in the writer's list.
    base: usize,
    /// Objects: where the body starts (after `{`).
    body: usize,
    /// Arrays: whether no element was written yet.
    first: bool,
}

impl<'w, 'a> Compound<'w, 'a> {
    fn array(w: &'w mut Writer<'a>) -> Self {
        w.out.push(b'[');
        Compound {
            w,
            base: 0,
            body: 0,
            first: true,
        }
    }

    fn object(w: &'w mut Writer<'a>) -> Self {
        w.out.push(b'{');
        let body = w.out.len();
        let base = w.members.len();
        Compound {
            w,
            base,
            body,
            first: true,
        }
    }

    fn element<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), SerError> {
        if !self.first {
            self.w.out.extend_from_slice(b", ");
        }
        self.first = false;
        v.serialize(&mut *self.w)
    }

    fn end_array(self) -> &'w mut Writer<'a> {
        self.w.out.push(b']');
        self.w
    }

    /// Start member `key`; its value comes next ([`Compound::value`]).
    fn key_str(&mut self, key: &str) {
        let index = self.w.members.len() - self.base;
        let start = self.w.out.len();
        let bucket = self.w.names.write(key, self.w.out);
        let value = self.w.out.len();
        self.w.members.push(Member {
            order: member_order(bucket, index),
            start,
            end: value,
            marker: key == LARGEST_DOUBLE_KEY,
            value,
        });
    }

    fn value<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), SerError> {
        v.serialize(&mut *self.w)?;
        let end = self.w.out.len();
        if let Some(m) = self.w.members.last_mut() {
            m.end = end;
        }
        Ok(())
    }

    fn end_object(self) -> &'w mut Writer<'a> {
        self.w.order_members(self.base, self.body);
        self.w
    }
}

/// A member name: text, or what a JSON value's map keys take as text.
struct KeyText<'c, 'w, 'a>(&'c mut Compound<'w, 'a>);

fn key_error() -> SerError {
    SerError("key must be a string".into())
}

impl ser::Serializer for KeyText<'_, '_, '_> {
    type Ok = ();
    type Error = SerError;
    type SerializeSeq = ser::Impossible<(), SerError>;
    type SerializeTuple = ser::Impossible<(), SerError>;
    type SerializeTupleStruct = ser::Impossible<(), SerError>;
    type SerializeTupleVariant = ser::Impossible<(), SerError>;
    type SerializeMap = ser::Impossible<(), SerError>;
    type SerializeStruct = ser::Impossible<(), SerError>;
    type SerializeStructVariant = ser::Impossible<(), SerError>;

    fn serialize_str(self, v: &str) -> Result<(), SerError> {
        self.0.key_str(v);
        Ok(())
    }
    fn serialize_bool(self, v: bool) -> Result<(), SerError> {
        self.serialize_str(if v { "true" } else { "false" })
    }
    fn serialize_i8(self, v: i8) -> Result<(), SerError> {
        self.serialize_i64(i64::from(v))
    }
    fn serialize_i16(self, v: i16) -> Result<(), SerError> {
        self.serialize_i64(i64::from(v))
    }
    fn serialize_i32(self, v: i32) -> Result<(), SerError> {
        self.serialize_i64(i64::from(v))
    }
    fn serialize_i64(self, v: i64) -> Result<(), SerError> {
        self.serialize_str(&v.to_string())
    }
    fn serialize_u8(self, v: u8) -> Result<(), SerError> {
        self.serialize_u64(u64::from(v))
    }
    fn serialize_u16(self, v: u16) -> Result<(), SerError> {
        self.serialize_u64(u64::from(v))
    }
    fn serialize_u32(self, v: u32) -> Result<(), SerError> {
        self.serialize_u64(u64::from(v))
    }
    fn serialize_u64(self, v: u64) -> Result<(), SerError> {
        self.serialize_str(&v.to_string())
    }
    fn serialize_f32(self, _: f32) -> Result<(), SerError> {
        Err(key_error())
    }
    fn serialize_f64(self, _: f64) -> Result<(), SerError> {
        Err(key_error())
    }
    fn serialize_char(self, v: char) -> Result<(), SerError> {
        self.serialize_str(v.encode_utf8(&mut [0u8; 4]))
    }
    fn serialize_bytes(self, _: &[u8]) -> Result<(), SerError> {
        Err(key_error())
    }
    fn serialize_none(self) -> Result<(), SerError> {
        Err(key_error())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, _: &T) -> Result<(), SerError> {
        Err(key_error())
    }
    fn serialize_unit(self) -> Result<(), SerError> {
        Err(key_error())
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<(), SerError> {
        Err(key_error())
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<(), SerError> {
        self.serialize_str(variant)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        v: &T,
    ) -> Result<(), SerError> {
        v.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<(), SerError> {
        Err(key_error())
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, SerError> {
        Err(key_error())
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, SerError> {
        Err(key_error())
    }
    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct, SerError> {
        Err(key_error())
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, SerError> {
        Err(key_error())
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, SerError> {
        Err(key_error())
    }
    fn serialize_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStruct, SerError> {
        Err(key_error())
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, SerError> {
        Err(key_error())
    }
}

/// An enum variant with data, `{"variant": [...]}` or `{"variant": {...}}`: the inner array
/// or object, and where the outer object's member list and body start.
pub struct VariantOf<'w, 'a> {
    inner: Compound<'w, 'a>,
    outer_base: usize,
    outer_body: usize,
}

impl<'w, 'a> VariantOf<'w, 'a> {
    fn open(w: &'w mut Writer<'a>, variant: &'static str, object: bool) -> Self {
        let mut outer = Compound::object(w);
        outer.key_str(variant);
        let (outer_base, outer_body, w) = (outer.base, outer.body, outer.w);
        let inner = if object {
            Compound::object(w)
        } else {
            Compound::array(w)
        };
        VariantOf {
            inner,
            outer_base,
            outer_body,
        }
    }

    fn close(self, object: bool) {
        let w = if object {
            self.inner.end_object()
        } else {
            self.inner.end_array()
        };
        let end = w.out.len();
        if let Some(m) = w.members.last_mut() {
            m.end = end;
        }
        w.order_members(self.outer_base, self.outer_body);
    }
}

impl ser::SerializeTupleVariant for VariantOf<'_, '_> {
    type Ok = ();
    type Error = SerError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), SerError> {
        self.inner.element(v)
    }
    fn end(self) -> Result<(), SerError> {
        self.close(false);
        Ok(())
    }
}

impl ser::SerializeStructVariant for VariantOf<'_, '_> {
    type Ok = ();
    type Error = SerError;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        v: &T,
    ) -> Result<(), SerError> {
        self.inner.key_str(key);
        self.inner.value(v)
    }
    fn end(self) -> Result<(), SerError> {
        self.close(true);
        Ok(())
    }
}

impl<'w, 'a> ser::Serializer for &'w mut Writer<'a> {
    type Ok = ();
    type Error = SerError;
    type SerializeSeq = SeqOf<'w, 'a>;
    type SerializeTuple = SeqOf<'w, 'a>;
    type SerializeTupleStruct = SeqOf<'w, 'a>;
    type SerializeTupleVariant = VariantOf<'w, 'a>;
    type SerializeMap = MapOf<'w, 'a>;
    type SerializeStruct = MapOf<'w, 'a>;
    type SerializeStructVariant = VariantOf<'w, 'a>;

    fn serialize_bool(self, v: bool) -> Result<(), SerError> {
        self.out
            .extend_from_slice(if v { b"true" } else { b"false" });
        Ok(())
    }
    fn serialize_i8(self, v: i8) -> Result<(), SerError> {
        self.serialize_i64(i64::from(v))
    }
    fn serialize_i16(self, v: i16) -> Result<(), SerError> {
        self.serialize_i64(i64::from(v))
    }
    fn serialize_i32(self, v: i32) -> Result<(), SerError> {
        self.serialize_i64(i64::from(v))
    }
    fn serialize_i64(self, v: i64) -> Result<(), SerError> {
        write_i64(v, self.out);
        Ok(())
    }
    fn serialize_u8(self, v: u8) -> Result<(), SerError> {
        self.serialize_u64(u64::from(v))
    }
    fn serialize_u16(self, v: u16) -> Result<(), SerError> {
        self.serialize_u64(u64::from(v))
    }
    fn serialize_u32(self, v: u32) -> Result<(), SerError> {
        self.serialize_u64(u64::from(v))
    }
    fn serialize_u64(self, v: u64) -> Result<(), SerError> {
        write_u64(v, self.out);
        Ok(())
    }
    fn serialize_i128(self, v: i128) -> Result<(), SerError> {
        match i64::try_from(v) {
            Ok(i) => self.serialize_i64(i),
            Err(_) => match u64::try_from(v) {
                Ok(u) => self.serialize_u64(u),
                Err(_) => Err(SerError("number out of range".into())),
            },
        }
    }
    fn serialize_u128(self, v: u128) -> Result<(), SerError> {
        match u64::try_from(v) {
            Ok(u) => self.serialize_u64(u),
            Err(_) => Err(SerError("number out of range".into())),
        }
    }
    fn serialize_f32(self, v: f32) -> Result<(), SerError> {
        self.serialize_f64(f64::from(v))
    }
    fn serialize_f64(self, v: f64) -> Result<(), SerError> {
        if !v.is_finite() {
            // A JSON value has no place for it.
            self.out.extend_from_slice(b"null");
        } else if v.abs() == f64::MAX {
            // What the largest double stands for when it is not marked (see `json`).
            format_g17(f64::INFINITY.copysign(v), self.out);
        } else {
            format_g17(v, self.out);
        }
        Ok(())
    }
    fn serialize_char(self, v: char) -> Result<(), SerError> {
        write_string(v.encode_utf8(&mut [0u8; 4]), self.out);
        Ok(())
    }
    fn serialize_str(self, v: &str) -> Result<(), SerError> {
        write_string(v, self.out);
        Ok(())
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<(), SerError> {
        let mut s = Compound::array(self);
        for b in v {
            s.element(b)?;
        }
        s.end_array();
        Ok(())
    }
    fn serialize_none(self) -> Result<(), SerError> {
        self.serialize_unit()
    }
    fn serialize_some<T: Serialize + ?Sized>(self, v: &T) -> Result<(), SerError> {
        v.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), SerError> {
        self.out.extend_from_slice(b"null");
        Ok(())
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<(), SerError> {
        self.serialize_unit()
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<(), SerError> {
        self.serialize_str(variant)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        v: &T,
    ) -> Result<(), SerError> {
        v.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        v: &T,
    ) -> Result<(), SerError> {
        let mut o = Compound::object(self);
        o.key_str(variant);
        o.value(v)?;
        o.end_object();
        Ok(())
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, SerError> {
        Ok(SeqOf(Compound::array(self)))
    }
    fn serialize_tuple(self, len: usize) -> Result<Self::SerializeTuple, SerError> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_struct(
        self,
        _: &'static str,
        len: usize,
    ) -> Result<Self::SerializeTupleStruct, SerError> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, SerError> {
        Ok(VariantOf::open(self, variant, false))
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, SerError> {
        Ok(MapOf(Compound::object(self)))
    }
    fn serialize_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStruct, SerError> {
        self.serialize_map(None)
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, SerError> {
        Ok(VariantOf::open(self, variant, true))
    }
}

/// An array being written.
pub struct SeqOf<'w, 'a>(Compound<'w, 'a>);

impl ser::SerializeSeq for SeqOf<'_, '_> {
    type Ok = ();
    type Error = SerError;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), SerError> {
        self.0.element(v)
    }
    fn end(self) -> Result<(), SerError> {
        self.0.end_array();
        Ok(())
    }
}

impl ser::SerializeTuple for SeqOf<'_, '_> {
    type Ok = ();
    type Error = SerError;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), SerError> {
        self.0.element(v)
    }
    fn end(self) -> Result<(), SerError> {
        self.0.end_array();
        Ok(())
    }
}

impl ser::SerializeTupleStruct for SeqOf<'_, '_> {
    type Ok = ();
    type Error = SerError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), SerError> {
        self.0.element(v)
    }
    fn end(self) -> Result<(), SerError> {
        self.0.end_array();
        Ok(())
    }
}

/// An object being written.
pub struct MapOf<'w, 'a>(Compound<'w, 'a>);

impl ser::SerializeMap for MapOf<'_, '_> {
    type Ok = ();
    type Error = SerError;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), SerError> {
        key.serialize(KeyText(&mut self.0))
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), SerError> {
        self.0.value(v)
    }
    fn end(self) -> Result<(), SerError> {
        self.0.end_object();
        Ok(())
    }
}

impl ser::SerializeStruct for MapOf<'_, '_> {
    type Ok = ();
    type Error = SerError;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        v: &T,
    ) -> Result<(), SerError> {
        self.0.key_str(key);
        self.0.value(v)
    }
    fn end(self) -> Result<(), SerError> {
        self.0.end_object();
        Ok(())
    }
}
