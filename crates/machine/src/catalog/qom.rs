//! The binary's QOM types: parents, interfaces, and the properties each type adds to what
//! its parent has; `qom-list-types`, `qom-list-properties` and `device-list-properties`
//! computed over that hierarchy.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::OnceLock;

use qmpkit_wire::{ErrorClass, QmpError};
use serde_json::Value;

use crate::api;

/// One property: name, QOM type, description, default value.
#[derive(Debug, Clone)]
pub struct Prop {
    pub name: String,
    pub ty: String,
    pub description: Option<String>,
    pub default: Option<Value>,
}

/// One type.
#[derive(Debug)]
pub struct TypeEntry {
    pub name: String,
    pub parent: Option<usize>,
    pub is_abstract: bool,
    /// Interfaces the type adds to its parent's.
    pub interfaces: Vec<usize>,
    /// Its properties as the data file has them (JSON text), read when first asked for
    /// (see [`TypeEntry::props`]): most types are only ever listed.
    props_text: &'static str,
    props: OnceLock<Vec<Prop>>,
    pub complete: bool,
    /// Listing its properties makes the real binary abort.
    pub aborts: bool,
}

/// The types, in the binary's listing order.
pub struct QomTypes {
    types: Vec<TypeEntry>,
    index: HashMap<String, usize>,
    interface: Option<usize>,
}

/// One line of the data file; the names borrowed from it, the properties left as text.
#[derive(serde::Deserialize)]
struct Row<'a> {
    #[serde(borrow)]
    name: Cow<'a, str>,
    #[serde(default, borrow)]
    parent: Option<Cow<'a, str>>,
    #[serde(default, rename = "abstract")]
    is_abstract: bool,
    #[serde(default, borrow)]
    interfaces: Vec<Cow<'a, str>>,
    #[serde(default, borrow)]
    props: Option<&'a serde_json::value::RawValue>,
    #[serde(default)]
    complete: bool,
    #[serde(default)]
    aborts: bool,
}

fn prop(row: &[Value]) -> Option<Prop> {
    Some(Prop {
        name: row.first()?.as_str()?.to_string(),
        ty: row.get(1)?.as_str()?.to_string(),
        description: row.get(2).and_then(Value::as_str).map(str::to_string),
        default: row.get(3).cloned(),
    })
}

/// Properties that `device-list-properties` leaves out: every object's and device's own.
const NOT_DEVICE_PROPS: &[&str] = &[
    "type",
    "realized",
    "hotpluggable",
    "hotplugged",
    "parent_bus",
];

impl TypeEntry {
    /// The properties the type adds after its parent's, or (`complete`) all of them.
    pub fn props(&self) -> &[Prop] {
        self.props.get_or_init(|| {
            if self.props_text.is_empty() {
                return Vec::new();
            }
            serde_json::from_str::<Vec<Vec<Value>>>(self.props_text)
                .map(|rows| rows.iter().filter_map(|p| prop(p)).collect())
                .unwrap_or_default()
        })
    }
}

impl QomTypes {
    /// The types of the data file `text` (one JSON object per line). Only what listing
    /// the types needs is read now; each type's properties when first asked for.
    pub fn parse(text: &'static str) -> QomTypes {
        let rows: Vec<Row<'static>> = text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        let index: HashMap<String, usize> = rows
            .iter()
            .enumerate()
            .map(|(i, r)| (r.name.to_string(), i))
            .collect();
        let types = rows
            .into_iter()
            .map(|r| TypeEntry {
                parent: r
                    .parent
                    .as_ref()
                    .and_then(|p| index.get(p.as_ref()).copied()),
                is_abstract: r.is_abstract,
                interfaces: r
                    .interfaces
                    .iter()
                    .filter_map(|i| index.get(i.as_ref()).copied())
                    .collect(),
                props_text: r.props.map_or("", |p| p.get()),
                props: OnceLock::new(),
                complete: r.complete,
                aborts: r.aborts,
                name: r.name.into_owned(),
            })
            .collect();
        let interface = index.get("interface").copied();
        QomTypes {
            types,
            index,
            interface,
        }
    }

    pub fn len(&self) -> usize {
        self.types.len()
    }

    pub fn is_empty(&self) -> bool {
        self.types.is_empty()
    }

    /// The type named `name`.
    pub fn find(&self, name: &str) -> Option<&TypeEntry> {
        self.index.get(name).map(|&i| &self.types[i])
    }

    /// `id` and its ancestors, nearest first.
    fn ancestors(&self, id: usize) -> impl Iterator<Item = usize> + '_ {
        std::iter::successors(Some(id), move |&i| self.types[i].parent)
    }

    fn is_interface(&self, id: usize) -> bool {
        self.interface
            .is_some_and(|itf| self.ancestors(id).any(|a| a == itf))
    }

    /// Whether a type of `id` is a `target`: an ancestor, or an interface it has. A cast to
    /// an interface that more than one of the type's interfaces derive from is ambiguous,
    /// and answers no (so only types with one interface are an `interface`).
    pub fn is_a(&self, id: usize, target: usize) -> bool {
        let interfaces: Vec<usize> = self
            .ancestors(id)
            .flat_map(|a| self.types[a].interfaces.iter().copied())
            .collect();
        if !interfaces.is_empty() && self.is_interface(target) {
            let mut matching: Vec<usize> = interfaces
                .into_iter()
                .filter(|&i| self.ancestors(i).any(|a| a == target))
                .collect();
            matching.dedup();
            return matching.len() == 1;
        }
        self.ancestors(id).any(|a| a == target)
    }

    /// `qom-list-types`.
    pub fn list_types(
        &self,
        implements: Option<&str>,
        abstract_too: bool,
    ) -> Vec<api::ObjectTypeInfo> {
        let target = match implements {
            Some(name) => match self.index.get(name) {
                Some(&t) => Some(t),
                None => return Vec::new(),
            },
            None => None,
        };
        self.types
            .iter()
            .enumerate()
            .filter(|(_, t)| abstract_too || !t.is_abstract)
            .filter(|(i, _)| target.is_none_or(|t| self.is_a(*i, t)))
            .map(|(_, t)| api::ObjectTypeInfo {
                name: t.name.clone(),
                r#abstract: t.is_abstract.then_some(true),
                parent: t.parent.map(|p| self.types[p].name.clone()),
            })
            .collect()
    }

    /// The properties `qom-list-properties` lists for `id` (its class's, for an abstract
    /// type): its parent's, then its own.
    fn props(&self, id: usize) -> Vec<&Prop> {
        let t = &self.types[id];
        let mut out = match t.parent {
            Some(p) if !t.complete && self.answers(p) => self.props(p),
            _ => Vec::new(),
        };
        out.extend(t.props().iter());
        out
    }

    /// Whether the binary lists `id`'s properties (what a child's list starts from).
    fn answers(&self, id: usize) -> bool {
        !self.types[id].aborts && !self.is_interface(id)
    }

    /// `qom-list-properties` (`registered`: whether the type's module is loaded).
    pub fn type_properties(
        &self,
        name: &str,
        registered: bool,
    ) -> Result<Vec<api::ObjectPropertyInfo>, QmpError> {
        let id = self.loaded(name, registered, "Class")?;
        if self.is_interface(id) {
            return Err(crate::generic("Parameter 'typename' expects a QOM type"));
        }
        Ok(self
            .props(id)
            .into_iter()
            .map(|p| api::ObjectPropertyInfo {
                name: p.name.clone(),
                r#type: p.ty.clone(),
                description: p.description.clone(),
                default_value: p.default.clone(),
            })
            .collect())
    }

    /// `device-list-properties`: a concrete device type's properties, less those every
    /// device has.
    pub fn device_properties(
        &self,
        name: &str,
        registered: bool,
    ) -> Result<Vec<api::DevicePropertyInfo>, QmpError> {
        let id = self.loaded(name, registered, "Device")?;
        let device = self.index.get("device").copied();
        if self.types[id].is_abstract || !device.is_some_and(|d| self.is_a(id, d)) {
            return Err(crate::generic(
                "Parameter 'typename' expects a non-abstract device type",
            ));
        }
        Ok(self
            .props(id)
            .into_iter()
            .filter(|p| {
                !NOT_DEVICE_PROPS.contains(&p.name.as_str()) && !p.name.starts_with("legacy-")
            })
            .map(|p| api::DevicePropertyInfo {
                name: p.name.clone(),
                r#type: p.ty.clone(),
                description: p.description.clone(),
                default_value: p.default.clone(),
            })
            .collect())
    }

    /// The type `name` when its class is there (known and `registered`); else "`what`
    /// 'name' not found".
    fn loaded(&self, name: &str, registered: bool, what: &str) -> Result<usize, QmpError> {
        match self.index.get(name) {
            Some(&id) if registered => Ok(id),
            _ => Err(QmpError::new(
                ErrorClass::DeviceNotFound,
                format!("{what} '{name}' not found"),
            )),
        }
    }

    /// The type of a property of objects of type `name` (for CPU model properties).
    pub fn prop_type(&self, name: &str, prop: &str) -> Option<String> {
        let id = *self.index.get(name)?;
        self.props(id)
            .into_iter()
            .find(|p| p.name == prop)
            .map(|p| p.ty.clone())
    }
}
