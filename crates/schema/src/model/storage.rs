//! How the model holds its names and lists: owned, as a schema read at run time builds them,
//! or borrowed from data compiled into the program, as a model generated at build time
//! ([`super::emit_rust`]) is: such a model costs nothing to make at start-up, and a clone of it
//! copies references, not names.
//!
//! [`Name`], [`List`] and [`Boxed`] read like `String`, `Vec` and `Box` (they dereference to
//! `str`, slices and the boxed value); changing a borrowed one makes it owned first.

use std::borrow::Borrow;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::{Deref, DerefMut};

/// A name: a `String`, or a `&'static str` compiled into the program.
#[derive(Clone)]
pub enum Name {
    Static(&'static str),
    Owned(String),
}

impl Name {
    /// A name compiled into the program.
    pub const fn new_static(s: &'static str) -> Name {
        Name::Static(s)
    }

    pub fn as_str(&self) -> &str {
        match self {
            Name::Static(s) => s,
            Name::Owned(s) => s,
        }
    }

    pub fn into_string(self) -> String {
        match self {
            Name::Static(s) => s.to_string(),
            Name::Owned(s) => s,
        }
    }
}

impl Default for Name {
    fn default() -> Name {
        Name::Static("")
    }
}

impl Deref for Name {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Name {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl Borrow<str> for Name {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self.as_str(), f)
    }
}

impl PartialEq for Name {
    fn eq(&self, other: &Name) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Name {}

impl Hash for Name {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state)
    }
}

impl PartialOrd for Name {
    fn partial_cmp(&self, other: &Name) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Name {
    fn cmp(&self, other: &Name) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

macro_rules! name_eq {
    ($($t:ty),*) => {$(
        impl PartialEq<$t> for Name {
            fn eq(&self, other: &$t) -> bool {
                self.as_str() == AsRef::<str>::as_ref(other)
            }
        }
        impl PartialEq<Name> for $t {
            fn eq(&self, other: &Name) -> bool {
                AsRef::<str>::as_ref(self) == other.as_str()
            }
        }
    )*};
}

name_eq!(str, &str, String);

impl serde::Serialize for Name {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl From<String> for Name {
    fn from(s: String) -> Name {
        Name::Owned(s)
    }
}

impl From<&str> for Name {
    fn from(s: &str) -> Name {
        Name::Owned(s.to_string())
    }
}

impl From<&String> for Name {
    fn from(s: &String) -> Name {
        Name::Owned(s.clone())
    }
}

impl From<Name> for String {
    fn from(n: Name) -> String {
        n.into_string()
    }
}

impl From<&Name> for String {
    fn from(n: &Name) -> String {
        n.as_str().to_string()
    }
}

/// A list: a `Vec`, or a slice compiled into the program.
pub enum List<T: 'static> {
    Static(&'static [T]),
    Owned(Vec<T>),
}

impl<T: Clone> List<T> {
    /// The list as a `Vec` to change (a borrowed one is copied first).
    pub fn to_mut(&mut self) -> &mut Vec<T> {
        if let List::Static(s) = *self {
            *self = List::Owned(s.to_vec());
        }
        match self {
            List::Owned(v) => v,
            List::Static(_) => unreachable!("made owned above"),
        }
    }

    pub fn push(&mut self, v: T) {
        self.to_mut().push(v)
    }

    pub fn insert(&mut self, at: usize, v: T) {
        self.to_mut().insert(at, v)
    }

    pub fn reserve(&mut self, n: usize) {
        self.to_mut().reserve(n)
    }

    pub fn clear(&mut self) {
        *self = List::Owned(Vec::new());
    }

    pub fn into_vec(self) -> Vec<T> {
        match self {
            List::Static(s) => s.to_vec(),
            List::Owned(v) => v,
        }
    }
}

impl<T> List<T> {
    pub const fn new_static(s: &'static [T]) -> List<T> {
        List::Static(s)
    }

    pub const fn new() -> List<T> {
        List::Owned(Vec::new())
    }

    pub fn as_slice(&self) -> &[T] {
        match self {
            List::Static(s) => s,
            List::Owned(v) => v,
        }
    }
}

impl<T> Default for List<T> {
    fn default() -> List<T> {
        List::Owned(Vec::new())
    }
}

impl<T: Clone> Clone for List<T> {
    fn clone(&self) -> List<T> {
        match self {
            List::Static(s) => List::Static(s),
            List::Owned(v) => List::Owned(v.clone()),
        }
    }
}

impl<T> Deref for List<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        self.as_slice()
    }
}

impl<T: Clone> DerefMut for List<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        self.to_mut()
    }
}

impl<T: fmt::Debug> fmt::Debug for List<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_slice(), f)
    }
}

impl<T: PartialEq> PartialEq for List<T> {
    fn eq(&self, other: &List<T>) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl<T: Eq> Eq for List<T> {}

impl<T: PartialEq> PartialEq<Vec<T>> for List<T> {
    fn eq(&self, other: &Vec<T>) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl<T> From<Vec<T>> for List<T> {
    fn from(v: Vec<T>) -> List<T> {
        List::Owned(v)
    }
}

impl<T: Clone> From<List<T>> for Vec<T> {
    fn from(l: List<T>) -> Vec<T> {
        l.into_vec()
    }
}

impl<T> FromIterator<T> for List<T> {
    fn from_iter<I: IntoIterator<Item = T>>(iter: I) -> List<T> {
        List::Owned(iter.into_iter().collect())
    }
}

impl<'a, T> IntoIterator for &'a List<T> {
    type Item = &'a T;
    type IntoIter = std::slice::Iter<'a, T>;
    fn into_iter(self) -> Self::IntoIter {
        self.as_slice().iter()
    }
}

impl<'a, T: Clone> IntoIterator for &'a mut List<T> {
    type Item = &'a mut T;
    type IntoIter = std::slice::IterMut<'a, T>;
    fn into_iter(self) -> Self::IntoIter {
        self.to_mut().iter_mut()
    }
}

impl<T: Clone> IntoIterator for List<T> {
    type Item = T;
    type IntoIter = std::vec::IntoIter<T>;
    fn into_iter(self) -> Self::IntoIter {
        self.into_vec().into_iter()
    }
}

impl<T: Clone> Extend<T> for List<T> {
    fn extend<I: IntoIterator<Item = T>>(&mut self, iter: I) {
        self.to_mut().extend(iter)
    }
}

/// A boxed value: a `Box`, or a reference to a value compiled into the program.
pub enum Boxed<T: 'static> {
    Static(&'static T),
    Owned(Box<T>),
}

impl<T> Boxed<T> {
    pub fn new(v: T) -> Boxed<T> {
        Boxed::Owned(Box::new(v))
    }

    pub const fn new_static(v: &'static T) -> Boxed<T> {
        Boxed::Static(v)
    }
}

impl<T> Deref for Boxed<T> {
    type Target = T;
    fn deref(&self) -> &T {
        match self {
            Boxed::Static(v) => v,
            Boxed::Owned(v) => v,
        }
    }
}

impl<T> From<Box<T>> for Boxed<T> {
    fn from(b: Box<T>) -> Boxed<T> {
        Boxed::Owned(b)
    }
}

impl<T: Clone> DerefMut for Boxed<T> {
    fn deref_mut(&mut self) -> &mut T {
        if let Boxed::Static(v) = *self {
            *self = Boxed::Owned(Box::new(v.clone()));
        }
        match self {
            Boxed::Owned(v) => v,
            Boxed::Static(_) => unreachable!("made owned above"),
        }
    }
}

impl<T: Clone> Clone for Boxed<T> {
    fn clone(&self) -> Boxed<T> {
        match self {
            Boxed::Static(v) => Boxed::Static(v),
            Boxed::Owned(v) => Boxed::Owned(v.clone()),
        }
    }
}

impl<T: fmt::Debug> fmt::Debug for Boxed<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl<T: PartialEq> PartialEq for Boxed<T> {
    fn eq(&self, other: &Boxed<T>) -> bool {
        **self == **other
    }
}

impl<T: Eq> Eq for Boxed<T> {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_compare_as_their_text() {
        let a = Name::new_static("query-status");
        let b = Name::from("query-status".to_string());
        assert_eq!(a, b);
        assert!(a == "query-status");
        assert!("query-status" == b);
        assert_eq!(format!("{a:?} {b}"), "\"query-status\" query-status");
        let mut m = std::collections::HashMap::new();
        m.insert(a.clone(), 1);
        assert_eq!(m.get("query-status"), Some(&1));
        assert_eq!(b.into_string(), "query-status");
    }

    #[test]
    fn a_borrowed_list_is_copied_before_it_changes() {
        static ITEMS: [u32; 3] = [1, 2, 3];
        let mut l = List::new_static(&ITEMS);
        let c = l.clone();
        l.push(4);
        l[0] = 0;
        assert_eq!(l, vec![0, 2, 3, 4]);
        assert_eq!(c, vec![1, 2, 3]);
        assert_eq!(ITEMS, [1, 2, 3]);
        let mut b = Boxed::new_static(&ITEMS[1]);
        *b += 5;
        assert_eq!((*b, ITEMS[1]), (7, 2));
    }
}
