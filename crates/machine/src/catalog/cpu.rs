//! The binary's CPU models: `query-cpu-definitions` per accelerator, and
//! `query-cpu-model-expansion` computed from each model's features.
//!
//! A static expansion is the model `base` with every static property (the CPUID features
//! and family, model, stepping, vendor, model-id, min-level, min-xlevel); a model is
//! stored as its differences from `base`. A full expansion is every property of the CPU
//! object: the static ones, their alternative spellings (`sse4_1` for `sse4.1`), the
//! values common to all models under the accelerator, and the model's own (`level`,
//! `xlevel`, …). `host` and `max` also have variants for the properties that change what
//! they take from the host (`migratable`, `hv-passthrough`).

use std::collections::HashMap;

use qmpkit_wire::QmpError;
use serde_json::{Map, Value};

use super::QomTypes;
use crate::api;

#[derive(serde::Deserialize, Default, Clone)]
struct Expansion {
    #[serde(default, rename = "static")]
    static_props: Map<String, Value>,
    #[serde(default)]
    full: Map<String, Value>,
    #[serde(default, rename = "full-absent")]
    full_absent: Vec<String>,
}

#[derive(serde::Deserialize)]
struct ByAccel<T> {
    kvm: T,
    #[serde(default)]
    tcg: Option<T>,
}

impl<T> ByAccel<T> {
    fn get(&self, kvm: bool) -> &T {
        match (&self.tcg, kvm) {
            (Some(t), false) => t,
            _ => &self.kvm,
        }
    }
}

#[derive(serde::Deserialize)]
struct Model {
    name: String,
    typename: String,
    #[serde(rename = "static")]
    is_static: bool,
    #[serde(rename = "migration-safe")]
    migration_safe: bool,
    deprecated: bool,
    #[serde(default, rename = "alias-of")]
    alias_of: Option<String>,
    #[serde(rename = "unavailable-features")]
    unavailable: ByAccel<Vec<String>>,
    expansion: ByAccel<Expansion>,
    /// Per accelerator: the properties (as a JSON object's text) and what they give.
    #[serde(default)]
    variants: HashMap<String, HashMap<String, Expansion>>,
}

#[derive(serde::Deserialize)]
struct Properties {
    base: Map<String, Value>,
    aliases: HashMap<String, String>,
    common: HashMap<String, Map<String, Value>>,
}

/// The models, in the binary's order, and the properties they share.
pub struct CpuModels {
    models: Vec<Model>,
    props: Properties,
}

/// Properties that select a variant of `host` or `max`.
const VARIANT_PROPS: &[&str] = &["migratable", "hv-passthrough"];

fn accel(kvm: bool) -> &'static str {
    if kvm {
        "kvm"
    } else {
        "tcg"
    }
}

impl CpuModels {
    pub fn parse(models: &str, props: &str) -> CpuModels {
        CpuModels {
            models: models
                .lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect(),
            props: serde_json::from_str(props).unwrap_or(Properties {
                base: Map::new(),
                aliases: HashMap::new(),
                common: HashMap::new(),
            }),
        }
    }

    pub fn len(&self) -> usize {
        self.models.len()
    }

    pub fn is_empty(&self) -> bool {
        self.models.is_empty()
    }

    /// The QOM type of model `name`.
    pub fn typename(&self, name: &str) -> Option<&str> {
        self.models
            .iter()
            .find(|m| m.name == name)
            .map(|m| m.typename.as_str())
    }

    /// What KVM or TCG cannot give model `name`.
    pub fn unavailable(&self, name: &str, kvm: bool) -> Option<&[String]> {
        self.models
            .iter()
            .find(|m| m.name == name)
            .map(|m| m.unavailable.get(kvm).as_slice())
    }

    /// `query-cpu-definitions` under KVM or TCG.
    pub fn definitions(&self, kvm: bool) -> Vec<api::CpuDefinitionInfo> {
        self.models
            .iter()
            .map(|m| api::CpuDefinitionInfo {
                name: m.name.clone(),
                migration_safe: Some(m.migration_safe),
                r#static: m.is_static,
                unavailable_features: Some(m.unavailable.get(kvm).clone()),
                typename: m.typename.clone(),
                alias_of: m.alias_of.clone(),
                deprecated: Some(m.deprecated),
            })
            .collect()
    }

    /// `query-cpu-model-expansion` of `model` (with its `props`) under KVM or TCG; `full`
    /// or static. `qom` has the CPU types' properties, which the given ones are checked
    /// against.
    pub fn expand(
        &self,
        qom: &QomTypes,
        kvm: bool,
        full: bool,
        model: &api::CpuModelInfo,
    ) -> Result<api::CpuModelInfo, QmpError> {
        let name = model.name.as_str();
        let Some(m) = self.models.iter().find(|m| m.name == name) else {
            return Err(crate::generic(format!("CPU model '{name}' not found")));
        };
        let given = match &model.props {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(o)) => o.clone(),
            Some(_) => {
                return Err(crate::generic(
                    "Invalid parameter type for 'model.props', expected: object",
                ))
            }
        };
        for (p, v) in &given {
            check_prop(qom, &m.typename, p, v)?;
        }
        // A variant of the model for the properties that select one.
        let (select, mut rest): (Map<String, Value>, Map<String, Value>) = given
            .into_iter()
            .partition(|(p, _)| VARIANT_PROPS.contains(&p.as_str()));
        let variant = (!select.is_empty())
            .then(|| m.variants.get(accel(kvm)))
            .flatten()
            .and_then(|vs| {
                vs.iter().find_map(|(k, e)| {
                    let props: Map<String, Value> = serde_json::from_str(k).ok()?;
                    (props == select).then_some(e)
                })
            });
        let e = match variant {
            Some(e) => e,
            None => {
                rest.extend(select);
                m.expansion.get(kvm)
            }
        };
        let mut s = self.props.base.clone();
        for (k, v) in &e.static_props {
            s.insert(k.clone(), v.clone());
        }
        for (p, v) in &rest {
            let canonical = self.props.aliases.get(p).unwrap_or(p);
            if s.contains_key(canonical) {
                s.insert(canonical.clone(), v.clone());
            }
        }
        if !full {
            return Ok(api::CpuModelInfo {
                name: "base".into(),
                props: Some(Value::Object(s)),
            });
        }
        let mut f = self
            .props
            .common
            .get(accel(kvm))
            .cloned()
            .unwrap_or_default();
        for k in &e.full_absent {
            f.remove(k);
        }
        for (alias, canonical) in &self.props.aliases {
            if let Some(v) = s.get(canonical) {
                f.insert(alias.clone(), v.clone());
            }
        }
        f.extend(s);
        for (k, v) in e.full.iter().chain(rest.iter()) {
            f.insert(k.clone(), v.clone());
        }
        Ok(api::CpuModelInfo {
            name: name.to_string(),
            props: Some(Value::Object(f)),
        })
    }
}

/// A given property of CPU type `typename`: it must exist and its value fit its type, in
/// QEMU's words.
fn check_prop(qom: &QomTypes, typename: &str, p: &str, v: &Value) -> Result<(), QmpError> {
    let Some(ty) = qom.prop_type(typename, p) else {
        return Err(crate::generic(format!(
            "Property '{typename}.{p}' not found"
        )));
    };
    let expected = |what: &str| {
        crate::generic(format!(
            "Invalid parameter type for 'model.props.{p}', expected: {what}"
        ))
    };
    match ty.as_str() {
        "bool" if !v.is_boolean() => Err(expected("boolean")),
        "string" | "str" if !v.is_string() => Err(expected("string")),
        t if (t.starts_with("int") || t.starts_with("uint"))
            && v.as_u64().is_none()
            && v.as_i64().is_none() =>
        {
            Err(crate::generic(format!(
                "Parameter 'model.props.{p}' expects uint64"
            )))
        }
        _ => Ok(()),
    }
}
