//! The catalogue: a model of the QEMU binary the machine claims to be, for the questions a
//! management tool asks before it starts a guest. Its QOM types with their parents,
//! interfaces and properties; its machine types; its CPU models and what they expand to
//! under each accelerator; its command-line options; its migration capabilities, TPM
//! models and back ends; and what it says about SEV and SGX on a host without them.
//!
//! The facts are data about the binary's interface (names, types, defaults, descriptions,
//! as error strings are), gathered from the real `qemu-system-x86_64` 10.0.2 by
//! `tools/catalog/extract.py` into `crates/machine/data/` (its README says how). Each file
//! is parsed on first use, so a machine that never asks costs nothing; answers are
//! computed from the parsed model: `qom-list-types` walks parents and interfaces,
//! property lists walk the hierarchy, CPU expansions overlay a model's features on `base`.

mod cpu;
pub mod host;
mod modules;
mod qom;

use std::sync::OnceLock;

use qmpkit_wire::QmpError;
use serde_json::Value;

use crate::api;

pub use cpu::{check_realized_set, CpuModels, CpuOptions};
pub use modules::{Loaded, Modules};
pub use qom::QomTypes;

macro_rules! data {
    ($name:literal) => {
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/data/qemu-10.0.2-x86_64/",
            $name
        ))
    };
}

/// One binary's catalogue: its data files, each parsed when first needed.
pub struct Catalog {
    qom: OnceLock<QomTypes>,
    modules: OnceLock<Modules>,
    cpus: OnceLock<CpuModels>,
    machines: OnceLock<Vec<api::MachineInfo>>,
    options: OnceLock<Vec<api::CommandLineOptionInfo>>,
    misc: OnceLock<Misc>,
}

/// Smaller facts: migration capabilities, TPM lists, the SEV and SGX answers.
#[derive(serde::Deserialize)]
struct Misc {
    #[serde(rename = "migrate-capabilities")]
    migrate_capabilities: Vec<api::MigrationCapabilityStatus>,
    #[serde(rename = "tpm-models")]
    tpm_models: Vec<String>,
    #[serde(rename = "tpm-types")]
    tpm_types: Vec<String>,
    #[serde(rename = "sev-capabilities")]
    sev: PerAccel<ErrorFact>,
    #[serde(rename = "sgx-capabilities")]
    sgx: PerAccel<ErrorFact>,
}

#[derive(serde::Deserialize)]
struct PerAccel<T> {
    kvm: T,
    tcg: T,
}

impl<T> PerAccel<T> {
    fn get(&self, kvm: bool) -> &T {
        if kvm {
            &self.kvm
        } else {
            &self.tcg
        }
    }
}

#[derive(serde::Deserialize)]
struct ErrorFact {
    class: String,
    desc: String,
}

impl ErrorFact {
    fn error(&self) -> QmpError {
        let class = qmpkit_wire::ErrorClass::from_name(&self.class)
            .unwrap_or(qmpkit_wire::ErrorClass::GenericError);
        QmpError::new(class, self.desc.clone())
    }
}

/// Each line of a JSON-lines file, decoded as `T` (a line that does not decode is a
/// broken data file: the build's own test fails on it).
fn lines<T: serde::de::DeserializeOwned>(text: &str) -> Vec<T> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .filter_map(|l| match serde_json::from_str::<Value>(l) {
            Ok(v) => qmpkit_qapi::decode(&v).ok(),
            Err(_) => None,
        })
        .collect()
}

static X86_64_10_0: Catalog = Catalog::new();

/// The catalogue of the binary `m` claims to be, if there is one: QEMU 10.0 and later
/// answer from the 10.0.2 x86_64 build's (see [`crate::compat::Compat::catalog_10_0`]);
/// older identities from the machine's 2.12-generation tables.
pub fn of(m: &crate::Machine) -> Option<&'static Catalog> {
    // (A storage daemon is another binary, with its own few types.)
    (m.compat().catalog_10_0 && !m.config.storage_daemon).then(x86_64_10_0)
}

/// The host's KVM, for a machine under KVM that answers as the host it runs on (see
/// [`crate::MachineConfig::kvm_recorded_host`]) where `/dev/kvm` answers: `host`'s and
/// `max`'s expansions and every model's unavailable features are then what it gives.
pub fn kvm_host(m: &crate::Machine) -> Option<&'static host::KvmHost> {
    (m.config.kvm && !m.config.kvm_recorded_host)
        .then(host::probe)
        .flatten()
}

/// A look-up of type `name` by name (a device, an object, a chardev back end created;
/// a type's properties listed): the module declaring it loads, as in the binary.
pub fn look_up(m: &mut crate::Machine, name: &str) {
    if let Some(c) = of(m) {
        c.modules().look_up(&mut m.modules, name);
    }
}

/// What the catalogue sets up in a new machine: the modules its command line loaded, and
/// its vCPUs' identification as their model (with `-cpu`'s options) gives it.
pub fn start(m: &mut crate::Machine) {
    initial_modules(m);
    init_cpus(m);
}

/// The vCPUs' identification (family, model, stepping, vendor, model-id): their model's
/// (with `-cpu`'s options), as the realized vCPU holds it.
fn init_cpus(m: &mut crate::Machine) {
    let Some(c) = of(m) else { return };
    let opts = cpu_options(m);
    let model = m.config.cpu_model.clone();
    let Some(props) = realized_props(m, c, &model, &opts) else {
        return;
    };
    let tree = &mut m.qom.tree;
    for id in tree.walk(crate::qom::Tree::ROOT) {
        if !crate::qom::types::is_a(tree.node(id).ty, "x86_64-cpu") {
            continue;
        }
        for p in ["family", "model", "stepping"] {
            if let Some(n) = props.get(p).and_then(Value::as_i64) {
                tree.set_val(id, p, n);
            }
        }
        for p in ["vendor", "model-id"] {
            if let Some(s) = props.get(p).and_then(Value::as_str) {
                tree.set_val(id, p, s);
            }
        }
    }
}

/// The properties of a realized vCPU of `model` (with `-cpu`'s `opts`): its full expansion
/// under the accelerator in use, less what the accelerator cannot give it (those features,
/// in every spelling, read false). `None`: a model the catalogue lacks.
fn realized_props(
    m: &crate::Machine,
    c: &Catalog,
    model: &str,
    opts: &CpuOptions,
) -> Option<serde_json::Map<String, Value>> {
    let cpus = c.cpus();
    let chosen = m.config.cpu_model.as_str();
    let info = api::CpuModelInfo {
        name: model.to_string(),
        props: None,
    };
    let e = cpus
        .expand(
            c.qom(),
            m.config.kvm,
            kvm_host(m),
            true,
            &info,
            chosen,
            opts,
        )
        .ok()?;
    let Some(Value::Object(mut props)) = e.props else {
        return None;
    };
    let unavailable = cpus.unavailable(model, m.config.kvm, kvm_host(m), chosen, opts)?;
    for (k, v) in props.iter_mut() {
        let canonical = cpus.canonical(k).replace('_', "-");
        if v.is_boolean() && unavailable.iter().any(|f| *f == canonical || f == k) {
            *v = Value::Bool(false);
        }
    }
    Some(props)
}
/// `query-chardev-backends` of the binary: its chardev types registered so far (those of
/// modules not loaded are missing), in its order, less the one it keeps for itself.
pub fn chardev_backends(m: &crate::Machine) -> Option<Vec<String>> {
    let c = of(m)?;
    let modules = c.modules();
    let types = c.qom().list_types(Some("chardev"), false);
    Some(
        types
            .into_iter()
            .filter(|t| t.name != "chardev-gdb" && modules.registered(&m.modules, &t.name))
            .filter_map(|t| t.name.strip_prefix("chardev-").map(str::to_string))
            .collect(),
    )
}

/// The modules a machine's command line loads: those of the types it creates and of
/// the options it gives.
fn initial_modules(m: &mut crate::Machine) {
    let Some(c) = of(m) else { return };
    let modules = c.modules();
    let mut loaded = Loaded::default();
    for o in &m.config.options {
        modules.use_option(&mut loaded, &o.name);
    }
    for id in m.qom.tree.walk(crate::qom::Tree::ROOT) {
        modules.look_up(&mut loaded, m.qom.tree.node(id).ty);
    }
    m.modules = loaded;
}

/// `qom-get` of a vCPU's property that its model decides: `unavailable-features` (what the
/// accelerator in use cannot give the model) and the model's properties as realized (see
/// [`realized_props`]). `None`: not such a property of a vCPU (those the vCPU keeps itself:
/// its identification, topology and links), or no catalogue. A property the model's type
/// lacks is not found, in QEMU's words.
pub fn cpu_qom_get(
    m: &crate::Machine,
    id: crate::qom::NodeId,
    prop: &str,
) -> Option<Result<Value, QmpError>> {
    let c = of(m)?;
    let ty = m.qom.tree.node(id).ty;
    if !crate::qom::types::is_a(ty, "x86_64-cpu") {
        return None;
    }
    let cpus = c.cpus();
    // The configured model (the tree may stand in another type for a model its registry
    // lacks), else the node's type.
    let model = match cpus.typename(&m.config.cpu_model) {
        Some(_) => m.config.cpu_model.as_str(),
        None => ty.strip_suffix("-x86_64-cpu").unwrap_or(ty),
    };
    let opts = cpu_options(m);
    if prop == "unavailable-features" {
        let list =
            cpus.unavailable(model, m.config.kvm, kvm_host(m), &m.config.cpu_model, &opts)?;
        return Some(Ok(Value::Array(
            list.into_iter().map(Value::String).collect(),
        )));
    }
    let own = CPU_SETTABLE.contains(&prop)
        || CPU_NOT_VALUES.contains(&prop)
        || crate::qom::types::find_prop(ty, prop).is_some_and(|_| prop.ends_with("-id"));
    if own {
        return None;
    }
    if let Some(v) = realized_props(m, c, model, &opts)?.remove(prop) {
        return Some(Ok(v));
    }
    let typename = cpus.typename(model)?;
    c.qom().prop_type(typename, prop).is_none().then(|| {
        Err(crate::generic(format!(
            "Property '{typename}.{prop}' not found"
        )))
    })
}

/// Properties a realized vCPU still takes (the others refuse a change).
const CPU_SETTABLE: &[&str] = &[
    "realized",
    "start-powered-off",
    "stepping",
    "family",
    "model",
    "model-id",
    "tsc-frequency",
    "vendor",
];

/// Properties of a vCPU that are not simple values (read-only, links, what a crash left).
const CPU_NOT_VALUES: &[&str] = &[
    "type",
    "parent_bus",
    "hotplugged",
    "hotpluggable",
    "unavailable-features",
    "filtered-features",
    "feature-words",
    "lapic",
    "memory",
    "legacy-memory",
    "crash-information",
];

/// `qom-set` of a vCPU's property on a machine with a catalogue: QEMU 10.0's refusal, if it
/// refuses (a value out of the range of family, model, stepping or tsc-frequency; any
/// property of the CPU's model that a realized CPU no longer takes). `None`: the QOM tree
/// decides.
pub fn cpu_qom_set(
    m: &crate::Machine,
    id: crate::qom::NodeId,
    prop: &str,
    value: &Value,
) -> Option<QmpError> {
    let c = of(m)?;
    if !crate::qom::types::is_a(m.qom.tree.node(id).ty, "x86_64-cpu") {
        return None;
    }
    if let Some(Err(e)) = check_realized_set(prop, value) {
        return Some(e);
    }
    let typename = c.cpus().typename(&m.config.cpu_model)?;
    if CPU_SETTABLE.contains(&prop)
        || CPU_NOT_VALUES.contains(&prop)
        || prop.contains('[')
        || c.qom().prop_type(typename, prop).is_none()
    {
        return None;
    }
    let name = c.cpus().canonical(prop).replace('_', "-");
    Some(crate::generic(format!(
        "Attempt to set property '{name}' on anonymous device (type '{typename}') after it was realized"
    )))
}

/// The features `-cpu` gave after the model, as they apply (nothing without a catalogue, or
/// for a model it lacks; the configuration was checked with [`check_cpu_option`]).
pub fn cpu_options(m: &crate::Machine) -> CpuOptions {
    let Some(c) = of(m) else {
        return CpuOptions::default();
    };
    let cpus = c.cpus();
    match cpus.typename(&m.config.cpu_model) {
        Some(ty) => {
            CpuOptions::parse(c.qom(), ty, &m.config.cpu_props, m.config.kvm).unwrap_or_default()
        }
        None => CpuOptions::default(),
    }
}

/// `-cpu MODEL,…` of a configuration claiming QEMU 10.0 or later, checked as the binary
/// checks it when it makes the first CPU: the error, in its words.
pub fn check_cpu_option(config: &crate::MachineConfig) -> Result<(), String> {
    let (major, minor, _) = config.qemu_version;
    if !crate::compat::Compat::of(major, minor).catalog_10_0
        || config.storage_daemon
        || config.machine_type == "none"
    {
        return Ok(());
    }
    let c = x86_64_10_0();
    match c.cpus().typename(&config.cpu_model) {
        Some(ty) => CpuOptions::parse(c.qom(), ty, &config.cpu_props, config.kvm).map(|_| ()),
        None => Ok(()),
    }
}

/// The catalogue of Debian's `qemu-system-x86_64` 10.0.2 (a KVM build).
pub fn x86_64_10_0() -> &'static Catalog {
    &X86_64_10_0
}

impl Catalog {
    const fn new() -> Catalog {
        Catalog {
            qom: OnceLock::new(),
            modules: OnceLock::new(),
            cpus: OnceLock::new(),
            machines: OnceLock::new(),
            options: OnceLock::new(),
            misc: OnceLock::new(),
        }
    }

    /// The QOM types.
    pub fn qom(&self) -> &QomTypes {
        self.qom
            .get_or_init(|| QomTypes::parse(data!("qom-types.jsonl")))
    }

    /// The modules, and which types and options each registers.
    pub fn modules(&self) -> &Modules {
        self.modules
            .get_or_init(|| Modules::parse(data!("modules.json")))
    }

    /// The CPU models.
    pub fn cpus(&self) -> &CpuModels {
        self.cpus.get_or_init(|| {
            CpuModels::parse(
                data!("cpu-models.jsonl"),
                data!("cpu-properties.json"),
                data!("cpu-feature-bits.json"),
            )
        })
    }

    fn misc(&self) -> &Misc {
        self.misc.get_or_init(|| {
            serde_json::from_str(data!("misc.json")).unwrap_or(Misc {
                migrate_capabilities: Vec::new(),
                tpm_models: Vec::new(),
                tpm_types: Vec::new(),
                sev: PerAccel {
                    kvm: ErrorFact {
                        class: String::new(),
                        desc: String::new(),
                    },
                    tcg: ErrorFact {
                        class: String::new(),
                        desc: String::new(),
                    },
                },
                sgx: PerAccel {
                    kvm: ErrorFact {
                        class: String::new(),
                        desc: String::new(),
                    },
                    tcg: ErrorFact {
                        class: String::new(),
                        desc: String::new(),
                    },
                },
            })
        })
    }

    /// `query-machines`: the binary's machine types, in its order.
    pub fn machines(&self) -> Vec<api::MachineInfo> {
        self.machines
            .get_or_init(|| lines(data!("machines.jsonl")))
            .clone()
    }

    /// `query-command-line-options`: every option, or the one named `option`, of those
    /// registered with the modules `loaded`.
    pub fn command_line_options(
        &self,
        loaded: &Loaded,
        option: Option<&str>,
    ) -> Result<Vec<api::CommandLineOptionInfo>, QmpError> {
        let all = self
            .options
            .get_or_init(|| lines(data!("command-line-options.jsonl")));
        let modules = self.modules();
        let mut listed = all
            .iter()
            .filter(|i| modules.option_listed(loaded, &i.option));
        match option {
            None => Ok(listed.cloned().collect()),
            Some(o) => match listed.find(|i| i.option == o) {
                Some(i) => Ok(vec![i.clone()]),
                None => Err(crate::generic(format!("invalid option name: {o}"))),
            },
        }
    }

    /// The migration capabilities of the interface and their initial states.
    pub fn migrate_capabilities(&self) -> Vec<api::MigrationCapabilityStatus> {
        self.misc().migrate_capabilities.clone()
    }

    /// `query-tpm-models`.
    pub fn tpm_models(&self) -> Vec<api::TpmModel> {
        use qmpkit_qapi::Enum;
        self.misc()
            .tpm_models
            .iter()
            .map(|n| api::TpmModel::from_name(n))
            .collect()
    }

    /// `query-tpm-types`.
    pub fn tpm_types(&self) -> Vec<api::TpmType> {
        use qmpkit_qapi::Enum;
        self.misc()
            .tpm_types
            .iter()
            .map(|n| api::TpmType::from_name(n))
            .collect()
    }

    /// `query-sev-capabilities` on a host without SEV, under KVM or TCG.
    pub fn sev_capabilities(&self, kvm: bool) -> QmpError {
        self.misc().sev.get(kvm).error()
    }

    /// `query-sgx-capabilities` on a host without SGX.
    pub fn sgx_capabilities(&self, kvm: bool) -> QmpError {
        self.misc().sgx.get(kvm).error()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_data_line_decodes() {
        let c = x86_64_10_0();
        let count = |t: &str| t.lines().filter(|l| !l.trim().is_empty()).count();
        let mut all = Loaded::default();
        c.modules().load_all(&mut all);
        assert_eq!(c.machines().len(), count(data!("machines.jsonl")));
        assert_eq!(
            c.command_line_options(&all, None).map(|o| o.len()).ok(),
            Some(count(data!("command-line-options.jsonl")))
        );
        assert_eq!(c.qom().len(), count(data!("qom-types.jsonl")));
        assert_eq!(c.modules().len(), 16);
        assert_eq!(c.cpus().len(), count(data!("cpu-models.jsonl")));
        assert_eq!(c.migrate_capabilities().len(), 22);
        assert_eq!(c.sev_capabilities(true).desc, "SEV is not enabled in KVM");
    }
}
