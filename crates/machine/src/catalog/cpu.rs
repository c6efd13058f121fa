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
//!
//! Under KVM, what depends on the host follows the host's KVM where the machine asks it
//! (see [`super::host`]): a model's unavailable features are those of its features KVM
//! cannot give, in the binary's order (by feature word, then bit: cpu-feature-bits.json);
//! `host` and `max` have every feature KVM gives, less those the recorded `max` shows it
//! leaves out (always, or unless `migratable=off`), the host CPU's identification and
//! KVM's CPUID levels. The binary's own additions to KVM's list, as observed, are
//! [`KVM_ALWAYS`] and [`KVM_FROM_HOST_CPU`].

use std::collections::HashMap;
use std::sync::OnceLock;

use serde_json::value::RawValue;

use qmpkit_wire::QmpError;
use serde_json::{Map, Value};

use super::host::{reg_index, KvmHost};
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
struct Model<'a> {
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
    /// The features turning `vmx` on brings (its VMX capabilities), for a model without it.
    #[serde(default, rename = "vmx-brings")]
    vmx_brings: Option<ByAccel<Vec<String>>>,
    /// What the accelerator cannot give such a model with `vmx` on (some of its VMX
    /// capabilities have no name: `""`).
    #[serde(default, rename = "unavailable-with-vmx")]
    unavailable_with_vmx: Option<ByAccel<Vec<String>>>,
    /// The expansions and variants as the data file has them (JSON text), read when the
    /// model is first expanded (see [`Model::detail`]): most models are only ever listed.
    #[serde(borrow)]
    expansion: &'a RawValue,
    #[serde(default, borrow)]
    variants: Option<&'a RawValue>,
    #[serde(skip)]
    detail: OnceLock<Detail>,
}

/// What a model expands to.
struct Detail {
    expansion: ByAccel<Expansion>,
    /// Per accelerator: the properties (as a JSON object's text) and what they give.
    variants: HashMap<String, HashMap<String, Expansion>>,
}

impl Model<'_> {
    fn detail(&self) -> &Detail {
        self.detail.get_or_init(|| Detail {
            expansion: serde_json::from_str(self.expansion.get()).unwrap_or(ByAccel {
                kvm: Expansion::default(),
                tcg: None,
            }),
            variants: self
                .variants
                .and_then(|v| serde_json::from_str(v.get()).ok())
                .unwrap_or_default(),
        })
    }
}

#[derive(serde::Deserialize)]
struct Properties {
    base: Map<String, Value>,
    aliases: HashMap<String, String>,
    common: HashMap<String, Map<String, Value>>,
    /// Per accelerator, the features it cannot give, in the order the binary lists
    /// unavailable features.
    #[serde(default)]
    unsupported: HashMap<String, Vec<String>>,
}

/// What `-cpu MODEL,…` asks of every CPU, as QEMU 10.0 applies it: `+f` and `-f` turn a
/// feature on or off for every CPU model, over anything else (in that order: a feature
/// both added and removed is off); `prop=value` (a bare `f` is `f=on`) sets a property of
/// the named model's type, as a global property does.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CpuOptions {
    pub plus: Vec<String>,
    pub minus: Vec<String>,
    pub props: Vec<(String, String)>,
}

/// Where each feature lives (cpu-feature-bits.json): the feature words in the order the
/// binary lists unavailable features, and each feature's word and bit (or bits).
#[derive(serde::Deserialize, Default)]
struct FeatureBits {
    /// `[kind, leaf, subleaf, register]`: kind `cpuid` or `msr` (then leaf is the MSR).
    words: Vec<(String, u32, Option<u32>, Option<String>)>,
    features: HashMap<String, (usize, Bits)>,
}

#[derive(serde::Deserialize)]
#[serde(untagged)]
enum Bits {
    One(u32),
    Many(Vec<u32>),
}

impl Bits {
    fn all(&self) -> &[u32] {
        match self {
            Bits::One(b) => std::slice::from_ref(b),
            Bits::Many(v) => v,
        }
    }
}

/// VMX capability MSRs whose upper half says which controls may be 1 (a feature's bit N
/// is bit N + 32 of the MSR; Intel SDM, appendix A): pin-based, processor-based, exit and
/// entry controls (and their `TRUE_` forms), secondary processor-based controls.
const VMX_CONTROL_MSRS: &[u32] = &[
    0x481, 0x482, 0x483, 0x484, 0x48b, 0x48d, 0x48e, 0x48f, 0x490,
];

/// Features the binary gives under KVM although the kernel's supported CPUID lacks them
/// (observed: `max` has them, no model lists them unavailable, on a host whose KVM leaves
/// leaf 0x80000007 EBX empty). The binary emulates machine checks itself.
const KVM_ALWAYS: &[&str] = &["overflow-recov", "succor"];

/// Features the binary gives under KVM when the host CPU's own CPUID has them, whatever
/// the kernel's supported CPUID says (observed on a host whose KVM list lacks them and
/// whose CPU has them; what the binary does on a host CPU without them and a KVM that
/// lists them is not known here: the kernel's list is taken then).
const KVM_FROM_HOST_CPU: &[&str] = &["erms", "fsrm"];

/// What the host's KVM can give, read against the catalogue's feature words.
struct Live<'a> {
    host: &'a KvmHost,
    bits: &'a FeatureBits,
}

impl Live<'_> {
    /// Whether KVM can give feature `f`; `None`: a feature the catalogue cannot place (its
    /// recorded answers stand).
    fn available(&self, f: &str) -> Option<bool> {
        let (word, bits) = self.bits.features.get(f)?;
        let (kind, leaf, subleaf, reg) = self.bits.words.get(*word)?;
        if KVM_ALWAYS.contains(&f) {
            return Some(true);
        }
        let has = |regs: Option<[u32; 4]>| {
            let r = reg.as_deref().and_then(reg_index);
            match (regs, r) {
                (Some(regs), Some(r)) => bits.all().iter().all(|b| regs[r] >> b & 1 == 1),
                _ => false,
            }
        };
        Some(match kind.as_str() {
            "msr" => {
                let shift = if VMX_CONTROL_MSRS.contains(leaf) {
                    32
                } else {
                    0
                };
                self.host
                    .msrs
                    .get(leaf)
                    .is_some_and(|v| bits.all().iter().all(|b| v >> (b + shift) & 1 == 1))
            }
            _ => {
                let sub = subleaf.unwrap_or(0);
                has(self.host.leaf(*leaf, sub))
                    || (KVM_FROM_HOST_CPU.contains(&f) && has(self.host.own_leaf(*leaf, sub)))
            }
        })
    }

    /// Where feature `f` comes in the binary's lists: its word's place, then its bit.
    fn rank(&self, f: &str) -> Option<u64> {
        let (word, bits) = self.bits.features.get(f)?;
        Some(*word as u64 * 64 + u64::from(*bits.all().first()?))
    }
}

/// The models, in the binary's order, and the properties they share.
pub struct CpuModels {
    models: Vec<Model<'static>>,
    props: Properties,
    bits: FeatureBits,
    /// See [`CpuModels::host_model_rules`].
    host_rules: OnceLock<(Vec<String>, Vec<String>)>,
}

/// Models whose features under KVM are what the host's KVM gives.
const HOST_MODELS: &[&str] = &["host", "max"];

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
    /// The models of the data file `models` (one JSON object per line; each model's
    /// expansions are read when first needed), the shared properties `props` and where
    /// each feature lives (`bits`).
    pub fn parse(models: &'static str, props: &str, bits: &str) -> CpuModels {
        CpuModels {
            bits: serde_json::from_str(bits).unwrap_or_default(),
            host_rules: OnceLock::new(),
            models: models
                .lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect(),
            props: serde_json::from_str(props).unwrap_or(Properties {
                base: Map::new(),
                aliases: HashMap::new(),
                common: HashMap::new(),
                unsupported: HashMap::new(),
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

    /// What KVM or TCG cannot give model `name`, with `-cpu`'s `opts` (those of model
    /// `chosen`) applied. Under KVM, `host` is the host's KVM, when the machine asks it
    /// (else the recorded host's answers stand).
    pub fn unavailable(
        &self,
        name: &str,
        kvm: bool,
        host: Option<&KvmHost>,
        chosen: &str,
        opts: &CpuOptions,
    ) -> Option<Vec<String>> {
        let m = self.models.iter().find(|m| m.name == name)?;
        let live = self.live(kvm, host);
        let order = self
            .props
            .unsupported
            .get(accel(kvm))
            .map(Vec::as_slice)
            .unwrap_or_default();
        // (Under the host's KVM: a feature it cannot give, by its word and bit.)
        let rank = |f: &str| match &live {
            Some(l) => match l.available(f) {
                Some(false) => l.rank(f),
                _ => None,
            },
            None => order.iter().position(|x| x == f).map(|p| p as u64),
        };
        // The features `opts` force on or off for this model, by their canonical names.
        let mut forced: Vec<(String, bool)> = Vec::new();
        if self.typename(chosen) == Some(m.typename.as_str()) {
            for (p, v) in &opts.props {
                if let Some(on) = bool_value(v) {
                    forced.push((self.canonical(p).to_string(), on));
                }
            }
        }
        forced.extend(
            opts.plus
                .iter()
                .map(|f| (self.canonical(f).to_string(), true)),
        );
        forced.extend(
            opts.minus
                .iter()
                .map(|f| (self.canonical(f).to_string(), false)),
        );
        let mut list = m.unavailable.get(kvm).clone();
        // (A model the accelerator cannot run at all says only that.)
        if list == ["kvm"] {
            return Some(list);
        }
        let vmx_on = forced
            .iter()
            .rev()
            .find(|(f, _)| f == "vmx")
            .is_some_and(|(_, on)| *on);
        let mut with_vmx = false;
        if let Some(recorded) = m.unavailable_with_vmx.as_ref().filter(|_| vmx_on) {
            list = recorded.get(kvm).clone();
            forced.retain(|(f, _)| f != "vmx");
            with_vmx = true;
        }
        if let Some(l) = &live {
            list = self.relist(l, m, &list, with_vmx);
        }
        for (f, on) in forced {
            list.retain(|x| *x != f);
            let Some(r) = rank(&f).filter(|_| on) else {
                continue;
            };
            // Before the first listed feature that comes after it.
            let at = list
                .iter()
                .position(|x| rank(x).is_some_and(|xr| xr > r))
                .unwrap_or(list.len());
            list.insert(at, f);
        }
        Some(list)
    }

    /// Under the host's KVM, when the machine asks it.
    fn live<'a>(&'a self, kvm: bool, host: Option<&'a KvmHost>) -> Option<Live<'a>> {
        let host = host.filter(|_| kvm && !self.bits.features.is_empty())?;
        Some(Live {
            host,
            bits: &self.bits,
        })
    }

    /// What the host's KVM cannot give model `m` (with `vmx` on and the VMX capabilities it
    /// brings: `with_vmx`), from the recorded list for that case: of its entries, those the
    /// host's KVM cannot give either (and those the catalogue cannot place; an unnamed VMX
    /// capability, `""`, when the host's KVM has no VMX at all, as no capability is then
    /// there: with VMX, which unnamed ones it lacks is not known here), then the model's
    /// features the recorded host gave and this one cannot, in the binary's order.
    fn relist(&self, l: &Live, m: &Model, recorded: &[String], with_vmx: bool) -> Vec<String> {
        let mut list: Vec<String> = recorded
            .iter()
            .filter(|e| match e.as_str() {
                "" => l.available("vmx") != Some(true),
                f => l.available(f) != Some(true),
            })
            .cloned()
            .collect();
        if HOST_MODELS.contains(&m.name.as_str()) {
            // (Their features are those KVM gives.)
            return list;
        }
        let mut expanded = self.props.base.clone();
        for (k, v) in &m.detail().expansion.get(true).static_props {
            expanded.insert(k.clone(), v.clone());
        }
        let mut features: Vec<String> = expanded
            .into_iter()
            .filter(|(_, v)| *v == Value::Bool(true))
            .map(|(k, _)| k)
            .collect();
        if with_vmx {
            features.push("vmx".into());
            if let Some(b) = &m.vmx_brings {
                features.extend(b.get(true).iter().cloned());
            }
        }
        for f in features {
            let Some(r) = l.rank(&f).filter(|_| l.available(&f) == Some(false)) else {
                continue;
            };
            if list.contains(&f) {
                continue;
            }
            let at = list
                .iter()
                .position(|x| l.available(x) == Some(false) && l.rank(x).is_some_and(|xr| xr > r))
                .unwrap_or(list.len());
            list.insert(at, f);
        }
        list
    }

    /// What `host` and `max` take from the host's KVM, as the recorded `max` shows it:
    /// the features they leave out unless `migratable=off` (on under its variant only), and
    /// those they leave out always (the recorded host's KVM gave them, the variant lacks
    /// them).
    fn host_model_rules(&self) -> &(Vec<String>, Vec<String>) {
        self.host_rules.get_or_init(|| {
            let Some(max) = self.models.iter().find(|m| m.name == "max") else {
                return Default::default();
            };
            let d = max.detail();
            let default = &d.expansion.get(true).static_props;
            let unmigratable_key: Map<String, Value> =
                [("migratable".to_string(), Value::Bool(false))]
                    .into_iter()
                    .collect();
            let Some(variant) = d.variants.get("kvm").and_then(|vs| {
                vs.iter().find_map(|(k, e)| {
                    let props: Map<String, Value> = serde_json::from_str(k).ok()?;
                    (props == unmigratable_key).then_some(e)
                })
            }) else {
                return Default::default();
            };
            let on = |props: &Map<String, Value>, f: &str| {
                props.get(f).or(self.props.base.get(f)) == Some(&Value::Bool(true))
            };
            let recorded_gave = |f: &str| {
                !self
                    .props
                    .unsupported
                    .get("kvm")
                    .is_some_and(|u| u.iter().any(|x| x == f))
            };
            let mut unmigratable = Vec::new();
            let mut never = Vec::new();
            for f in self.bits.features.keys() {
                let in_variant = on(&variant.static_props, f);
                if in_variant && !on(default, f) {
                    unmigratable.push(f.clone());
                }
                if !in_variant && recorded_gave(f) {
                    never.push(f.clone());
                }
            }
            (unmigratable, never)
        })
    }

    /// `host`'s and `max`'s static properties under the host's KVM: every feature KVM gives
    /// (less those the models leave out: see [`CpuModels::host_model_rules`]), the host
    /// CPU's identification, and the CPUID levels KVM supports.
    fn host_model_static(&self, l: &Live, migratable: bool, s: &mut Map<String, Value>) {
        let (unmigratable, never) = self.host_model_rules();
        for f in self.bits.features.keys() {
            if !s.get(f).is_some_and(Value::is_boolean) {
                continue;
            }
            let on = l.available(f) == Some(true)
                && !never.contains(f)
                && !(migratable && unmigratable.contains(f));
            s.insert(f.clone(), Value::Bool(on));
        }
        let h = l.host;
        s.insert("vendor".into(), Value::from(h.vendor.clone()));
        s.insert("family".into(), Value::from(h.family));
        s.insert("model".into(), Value::from(h.model));
        s.insert("stepping".into(), Value::from(h.stepping));
        s.insert("model-id".into(), Value::from(h.model_id.clone()));
        if let Some(r) = h.leaf(0, 0) {
            s.insert("min-level".into(), Value::from(r[0]));
        }
        if let Some(r) = h.leaf(0x8000_0000, 0) {
            s.insert("min-xlevel".into(), Value::from(r[0]));
        }
    }

    /// A feature's canonical name (`sse4.1` for `sse4_1`).
    pub fn canonical<'a>(&'a self, f: &'a str) -> &'a str {
        self.props.aliases.get(f).map_or(f, String::as_str)
    }

    /// `query-cpu-definitions` under KVM or TCG, with `-cpu`'s `opts` (given with model
    /// `chosen`) applied.
    pub fn definitions(
        &self,
        kvm: bool,
        host: Option<&KvmHost>,
        chosen: &str,
        opts: &CpuOptions,
    ) -> Vec<api::CpuDefinitionInfo> {
        self.models
            .iter()
            .map(|m| api::CpuDefinitionInfo {
                name: m.name.clone(),
                migration_safe: Some(m.migration_safe),
                r#static: m.is_static,
                unavailable_features: self.unavailable(&m.name, kvm, host, chosen, opts),
                typename: m.typename.clone(),
                alias_of: m.alias_of.clone(),
                deprecated: Some(m.deprecated),
            })
            .collect()
    }

    /// `query-cpu-model-expansion` of `model` (with its `props`) under KVM or TCG; `full`
    /// or static. `qom` has the CPU types' properties, which the given ones are checked
    /// against. `-cpu`'s `opts` (given with model `chosen`) apply as to any CPU made: its
    /// properties to the chosen model's type before the given ones, `+f`/`-f` after.
    /// Under KVM with the host's KVM (`host`), `host` and `max` are what it gives.
    #[allow(clippy::too_many_arguments)]
    pub fn expand(
        &self,
        qom: &QomTypes,
        kvm: bool,
        host: Option<&KvmHost>,
        full: bool,
        model: &api::CpuModelInfo,
        chosen: &str,
        opts: &CpuOptions,
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
        let migratable = given.get("migratable") != Some(&Value::Bool(false));
        // A variant of the model for the properties that select one.
        let (select, mut rest): (Map<String, Value>, Map<String, Value>) = given
            .into_iter()
            .partition(|(p, _)| VARIANT_PROPS.contains(&p.as_str()));
        let variant = (!select.is_empty())
            .then(|| m.detail().variants.get(accel(kvm)))
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
                m.detail().expansion.get(kvm)
            }
        };
        // What `-cpu` gave, around the request's own.
        let mut applied: Vec<(String, Value)> = Vec::new();
        if self.typename(chosen) == Some(m.typename.as_str()) {
            for (p, v) in &opts.props {
                let ty = qom.prop_type(&m.typename, p).unwrap_or_default();
                applied.push((p.clone(), global_value(&ty, v)));
            }
        }
        applied.extend(rest);
        applied.extend(opts.plus.iter().map(|f| (f.clone(), Value::Bool(true))));
        applied.extend(opts.minus.iter().map(|f| (f.clone(), Value::Bool(false))));
        let mut s = self.props.base.clone();
        for (k, v) in &e.static_props {
            s.insert(k.clone(), v.clone());
        }
        let live = self.live(kvm, host).filter(|_| HOST_MODELS.contains(&name));
        if let Some(l) = &live {
            self.host_model_static(l, migratable, &mut s);
        }
        for (p, v) in &applied {
            let canonical = self.canonical(p);
            if s.contains_key(canonical) {
                s.insert(canonical.to_string(), v.clone());
            }
        }
        // `vmx` turned on brings the model's VMX capabilities (those not set otherwise).
        if let Some(brings) = m.vmx_brings.as_ref() {
            if s.get("vmx") == Some(&Value::Bool(true)) {
                for f in brings.get(kvm) {
                    if !applied.iter().any(|(p, _)| self.canonical(p) == f) {
                        s.insert(f.clone(), Value::Bool(true));
                    }
                }
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
        for (k, v) in &e.full {
            f.insert(k.clone(), v.clone());
        }
        // (`host` and `max` run at the levels KVM supports.)
        if let Some(l) = &live {
            for (level, leaf) in [("level", 0), ("xlevel", 0x8000_0000u32)] {
                if let Some(r) = l.host.leaf(leaf, 0) {
                    f.insert(level.into(), Value::from(r[0]));
                }
            }
            if let Some(r) = l.host.leaf(0xc000_0000, 0) {
                f.insert("xlevel2".into(), Value::from(r[0]));
                f.insert("min-xlevel2".into(), Value::from(r[0]));
            }
        }
        // (Static properties and their spellings are set through `s`.)
        for (k, v) in &applied {
            if !s.contains_key(self.canonical(k)) {
                f.insert(k.clone(), v.clone());
            }
        }
        f.extend(s);
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

/// A `-cpu` value as QEMU reads an on/off switch.
fn bool_value(v: &str) -> Option<bool> {
    match v {
        "on" | "yes" | "true" | "y" => Some(true),
        "off" | "no" | "false" | "n" => Some(false),
        _ => None,
    }
}

/// A number as QEMU's option parser reads it: decimal, `0x` hexadecimal or `0` octal,
/// with an optional sign (a negative number wraps, as C's `strtoull` does).
fn parse_number(v: &str) -> Option<i128> {
    let (neg, digits) = match v.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, v.strip_prefix('+').unwrap_or(v)),
    };
    let n = if let Some(h) = digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        u64::from_str_radix(h, 16).ok()?
    } else if digits.len() > 1 && digits.starts_with('0') {
        u64::from_str_radix(&digits[1..], 8).ok()?
    } else {
        digits.parse::<u64>().ok()?
    };
    Some(if neg { -(n as i128) } else { n as i128 })
}

/// A `-cpu` property's value as the property holds it.
fn global_value(ty: &str, v: &str) -> Value {
    match ty {
        "bool" => bool_value(v).map_or(Value::Null, Value::Bool),
        t if t.starts_with("int") || t.starts_with("uint") => match parse_number(v) {
            Some(n) => i64::try_from(n)
                .map(Value::from)
                .unwrap_or_else(|_| Value::from(n as u64)),
            None => Value::Null,
        },
        _ => Value::String(v.to_string()),
    }
}

impl CpuOptions {
    /// `-cpu`'s features after the model, checked against the properties of CPU type
    /// `typename` (in `qom`) as QEMU 10.0 checks them, in its words: `+f`/`-f` when the
    /// option is read, properties when the CPU is made (`phys-bits` when it is realized,
    /// under TCG).
    pub fn parse(
        qom: &QomTypes,
        typename: &str,
        items: &[String],
        kvm: bool,
    ) -> Result<CpuOptions, String> {
        let not_found = |p: &str| format!("Property '{typename}.{p}' not found");
        let mut o = CpuOptions::default();
        for item in items {
            if let Some(f) = item.strip_prefix('+') {
                qom.prop_type(typename, f).ok_or_else(|| not_found(f))?;
                o.plus.push(f.to_string());
            } else if let Some(f) = item.strip_prefix('-') {
                qom.prop_type(typename, f).ok_or_else(|| not_found(f))?;
                o.minus.push(f.to_string());
            } else {
                let (k, v) = item.split_once('=').unwrap_or((item.as_str(), "on"));
                o.props.push((k.to_string(), v.to_string()));
            }
        }
        for (k, v) in &o.props {
            let ty = qom.prop_type(typename, k).ok_or_else(|| not_found(k));
            ty.and_then(|ty| check_global(&ty, k, v))
                .map_err(|e| format!("can't apply global {typename}.{k}={v}: {e}"))?;
        }
        if !kvm {
            if let Some(bits) = o
                .props
                .iter()
                .rev()
                .find(|(k, _)| k == "phys-bits")
                .and_then(|(_, v)| parse_number(v))
            {
                if bits != 0 && !(32..=52).contains(&bits) {
                    return Err(format!(
                        "phys-bits should be between 32 and 52  (but is {bits})"
                    ));
                }
            }
        }
        Ok(o)
    }
}

/// The largest value of a CPU property QEMU checks the range of itself, and the type it
/// reads the value as.
fn custom_range(prop: &str) -> Option<(i128, &'static str)> {
    Some(match prop {
        "family" => (0xff + 0xf, "uint64"),
        "model" => (0xff, "uint64"),
        "stepping" => (0xf, "uint64"),
        "tsc-frequency" => (i64::MAX as i128, "int64"),
        _ => return None,
    })
}

/// A value for CPU property `name` of QOM type `ty`, as `qom-set` gives it: the ranges QEMU
/// checks after it was realized (the other properties cannot change then). `None`: not
/// one of those.
pub fn check_realized_set(name: &str, v: &Value) -> Option<Result<(), QmpError>> {
    let (max, reads) = custom_range(name)?;
    let n = match (v.as_u64(), v.as_i64()) {
        (Some(n), _) => n as i128,
        // A negative number read as an unsigned one wraps.
        (None, Some(n)) if reads == "uint64" => n as u64 as i128,
        (None, Some(n)) => n as i128,
        _ => {
            return Some(Err(crate::generic(format!(
                "Parameter '{name}' expects {reads}"
            ))))
        }
    };
    Some(if n < 0 || n > max {
        Err(crate::generic(format!(
            "parameter '{name}' can be at most {max}"
        )))
    } else {
        Ok(())
    })
}

/// A `-cpu` property value checked against its type, in QEMU's words.
fn check_global(ty: &str, name: &str, v: &str) -> Result<(), String> {
    if let Some((max, reads)) = custom_range(name) {
        let n = parse_number(v).ok_or_else(|| format!("Parameter '{name}' expects {reads}"))?;
        let n = if reads == "uint64" && n < 0 {
            i128::from(n as u64)
        } else {
            n
        };
        if n < 0 || n > max {
            return Err(format!("parameter '{name}' can be at most {max}"));
        }
        return Ok(());
    }
    match (name, ty) {
        ("vendor", _) if v.len() != 12 => {
            return Err("value of property 'vendor' must consist of exactly 12 characters".into())
        }
        ("lbr-fmt", _) => {
            let n = parse_number(v).ok_or_else(|| format!("Parameter '{name}' expects uint64"))?;
            if n & !0x3f != 0 {
                return Err("Property value for 'lbr-fmt' has bits outside mask '0x3f'".into());
            }
            return Ok(());
        }
        _ => {}
    }
    let unsigned = |bits: u32, c: &str| -> Result<(), String> {
        let n = parse_number(v).ok_or_else(|| format!("Parameter '{name}' expects uint64"))?;
        if n < 0 || n >> bits != 0 {
            return Err(format!("Parameter '{name}' expects {c}"));
        }
        Ok(())
    };
    match ty {
        "bool" => bool_value(v)
            .map(|_| ())
            .ok_or_else(|| format!("Parameter '{name}' expects 'on' or 'off'")),
        "uint8" => unsigned(8, "uint8_t"),
        "uint16" => unsigned(16, "uint16_t"),
        "uint32" => unsigned(32, "uint32_t"),
        "uint64" => parse_number(v)
            .map(|_| ())
            .ok_or_else(|| format!("Parameter '{name}' expects uint64")),
        "int32" => {
            let n = parse_number(v).ok_or_else(|| format!("Parameter '{name}' expects int64"))?;
            if i32::try_from(n).is_err() {
                return Err(format!("Parameter '{name}' expects int32_t"));
            }
            Ok(())
        }
        "OnOffAuto" if !matches!(v, "on" | "off" | "auto") => {
            Err(format!("Parameter '{name}' does not accept value '{v}'"))
        }
        _ => Ok(()),
    }
}
