//! Identity and capability queries: version, name, UUID, KVM, target, machine types, CPU
//! models, vCPUs, iothreads, PCI, memory, the VM generation ID, the TPM, ACPI OSPM status.

use qmpkit_qapi::Enum;
use serde_json::Value;

use super::R;
use crate::api;
use crate::catalog;
use crate::identity;
use crate::{generic, Cx, Machine};

pub fn query_version(m: &mut Machine, _: api::QueryVersion, _: &mut Cx) -> R<api::VersionInfo> {
    let (major, minor, micro) = m.config.qemu_version;
    let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    Ok(api::VersionInfo {
        qemu: api::VersionTriple {
            major: n(major),
            minor: n(minor),
            micro: n(micro),
        },
        package: m.config.package.clone(),
    })
}

pub fn query_name(m: &mut Machine, _: api::QueryName, _: &mut Cx) -> R<api::NameInfo> {
    Ok(api::NameInfo {
        name: m.ident.name.clone(),
    })
}

pub fn query_uuid(m: &mut Machine, _: api::QueryUuid, _: &mut Cx) -> R<api::UuidInfo> {
    Ok(api::UuidInfo {
        uuid: m.ident.uuid.clone(),
    })
}

pub fn query_kvm(m: &mut Machine, _: api::QueryKvm, _: &mut Cx) -> R<api::KvmInfo> {
    Ok(api::KvmInfo {
        enabled: m.config.kvm,
        present: true,
    })
}

pub fn query_target(_: &mut Machine, _: api::QueryTarget, _: &mut Cx) -> R<api::TargetInfo> {
    Ok(api::TargetInfo {
        arch: "x86_64".into(),
    })
}

pub fn query_machines(
    m: &mut Machine,
    _: api::QueryMachines,
    _: &mut Cx,
) -> R<Vec<api::MachineInfo>> {
    Ok(match catalog::of(m) {
        Some(c) => c.machines(),
        None => {
            let newer = m.compat().machine_info_4_1.then_some(false);
            let mut list = identity::machines();
            for t in &mut list {
                t.deprecated = newer;
                t.numa_mem_supported = newer;
            }
            list
        }
    })
}

pub fn query_cpu_definitions(
    m: &mut Machine,
    _: api::QueryCpuDefinitions,
    _: &mut Cx,
) -> R<Vec<api::CpuDefinitionInfo>> {
    Ok(match catalog::of(m) {
        Some(c) => {
            let opts = catalog::cpu_options(m);
            c.cpus().definitions(
                m.config.kvm,
                catalog::kvm_host(m),
                &m.config.cpu_model,
                &opts,
            )
        }
        None => {
            let newer = m.compat().cpu_deprecated_7_1.then_some(false);
            let mut list = identity::cpu_definitions();
            for d in &mut list {
                d.deprecated = newer;
            }
            list
        }
    })
}

pub fn query_cpu_model_expansion(
    m: &mut Machine,
    a: api::QueryCpuModelExpansion,
    _: &mut Cx,
) -> R<api::CpuModelExpansionInfo> {
    let model = match catalog::of(m) {
        Some(c) => {
            let full = a.r#type == api::CpuModelExpansionType::Full;
            let opts = catalog::cpu_options(m);
            let chosen = m.config.cpu_model.as_str();
            c.cpus().expand(
                c.qom(),
                m.config.kvm,
                catalog::kvm_host(m),
                full,
                &a.model,
                chosen,
                &opts,
            )?
        }
        None => identity::cpu_model_expansion(&a.r#type, &a.model)?,
    };
    Ok(api::CpuModelExpansionInfo { model })
}

fn not_supported() -> qmpkit_wire::QmpError {
    generic("this feature or command is not currently supported")
}

pub fn query_cpu_model_comparison(
    _: &mut Machine,
    _: api::QueryCpuModelComparison,
    _: &mut Cx,
) -> R<api::CpuModelCompareInfo> {
    Err(not_supported())
}

pub fn query_cpu_model_baseline(
    _: &mut Machine,
    _: api::QueryCpuModelBaseline,
    _: &mut Cx,
) -> R<api::CpuModelBaselineInfo> {
    Err(not_supported())
}

/// `query-sev-capabilities`: the host has no SEV (QEMU 10.0.2's words, with and without KVM).
pub fn query_sev_capabilities(
    m: &mut Machine,
    _: api::QuerySevCapabilities,
    _: &mut Cx,
) -> R<api::SevCapability> {
    Err(catalog::x86_64_10_0().sev_capabilities(m.config.kvm))
}

/// `query-sgx-capabilities`: the host has no SGX.
pub fn query_sgx_capabilities(
    m: &mut Machine,
    _: api::QuerySgxCapabilities,
    _: &mut Cx,
) -> R<api::SGXInfo> {
    Err(catalog::x86_64_10_0().sgx_capabilities(m.config.kvm))
}

pub fn query_events(_: &mut Machine, _: api::QueryEvents, _: &mut Cx) -> R<Vec<api::EventInfo>> {
    Ok(own_events())
}

pub fn query_command_line_options(
    m: &mut Machine,
    a: api::QueryCommandLineOptions,
    _: &mut Cx,
) -> R<Vec<api::CommandLineOptionInfo>> {
    match catalog::of(m) {
        Some(c) => c.command_line_options(&m.modules, a.option.as_deref()),
        None => identity::command_line_options(a.option.as_deref()),
    }
}

pub fn query_cpus(m: &mut Machine, _: api::QueryCpus, _: &mut Cx) -> R<Vec<api::CpuInfo>> {
    Ok(identity::cpus(m))
}

pub fn query_cpus_fast(
    m: &mut Machine,
    _: api::QueryCpusFast,
    _: &mut Cx,
) -> R<Vec<api::CpuInfoFast>> {
    Ok(identity::query_cpus_fast(m))
}

pub fn query_hotpluggable_cpus(
    m: &mut Machine,
    _: api::QueryHotpluggableCpus,
    _: &mut Cx,
) -> R<Vec<api::HotpluggableCPU>> {
    Ok(identity::hotpluggable_cpus(m))
}

pub fn query_iothreads(
    m: &mut Machine,
    _: api::QueryIothreads,
    _: &mut Cx,
) -> R<Vec<api::IOThreadInfo>> {
    Ok(identity::iothreads(m))
}

pub fn query_pci(m: &mut Machine, _: api::QueryPci, _: &mut Cx) -> R<Vec<api::PciInfo>> {
    Ok(identity::pci(m))
}

pub fn query_memory_size_summary(
    m: &mut Machine,
    _: api::QueryMemorySizeSummary,
    _: &mut Cx,
) -> R<api::MemoryInfo> {
    Ok(identity::memory_size_summary(m))
}

pub fn query_memdev(m: &mut Machine, _: api::QueryMemdev, _: &mut Cx) -> R<Vec<api::Memdev>> {
    Ok(identity::memdevs(m))
}

pub fn query_memory_devices(
    m: &mut Machine,
    _: api::QueryMemoryDevices,
    _: &mut Cx,
) -> R<Vec<api::MemoryDeviceInfo>> {
    Ok(identity::memory_devices(m))
}

pub fn query_vm_generation_id(
    m: &mut Machine,
    _: api::QueryVmGenerationId,
    _: &mut Cx,
) -> R<api::GuidInfo> {
    match &m.ident.vm_gen_id {
        Some(g) => Ok(api::GuidInfo { guid: g.clone() }),
        None => Err(generic("VM Generation ID device not found")),
    }
}

pub fn query_tpm(m: &mut Machine, _: api::QueryTpm, _: &mut Cx) -> R<Vec<api::TPMInfo>> {
    Ok(identity::tpm(m))
}

pub fn query_tpm_models(
    m: &mut Machine,
    _: api::QueryTpmModels,
    _: &mut Cx,
) -> R<Vec<api::TpmModel>> {
    Ok(match catalog::of(m) {
        Some(c) => c.tpm_models(),
        None => served_enum_values(m, "TpmModel", identity::TPM_MODELS),
    })
}

pub fn query_tpm_types(m: &mut Machine, _: api::QueryTpmTypes, _: &mut Cx) -> R<Vec<api::TpmType>> {
    Ok(match catalog::of(m) {
        Some(c) => c.tpm_types(),
        None => served_enum_values(m, "TpmType", identity::TPM_TYPES),
    })
}

pub fn query_acpi_ospm_status(
    m: &mut Machine,
    _: api::QueryAcpiOspmStatus,
    _: &mut Cx,
) -> R<Vec<api::ACPIOSTInfo>> {
    Ok(identity::acpi_ospm_status(m))
}

// Behaviour that still follows the served schema (it moves to the version view).

/// `query-tpm-models`, `query-tpm-types`: the values of `wanted` that the served schema's
/// enum `type_name` has.
fn served_enum_values<E: Enum>(m: &Machine, type_name: &str, wanted: &[&str]) -> Vec<E> {
    wanted
        .iter()
        .filter(|w| crate::shape::enum_has(&m.schema, type_name, w))
        .map(|w| E::from_name(w))
        .collect()
}

/// `query-events`: the events of the machine's own interface (the version view lists a
/// served interface's own).
fn own_events() -> Vec<api::EventInfo> {
    use qmpkit_schema::model::EntityKind;
    crate::embedded::own()
        .iter()
        .filter(|(_, e)| matches!(e.kind, EntityKind::Event(_)))
        .map(|(_, e)| api::EventInfo {
            name: e.name.to_string(),
        })
        .collect()
}

/// The commands whose replies [`served_reply_members`] completes.
pub const SERVED_REPLY_MEMBERS: &[&str] = &["query-machines"];

/// Members of identity replies that only a newer served schema has: `query-machines`'
/// `acpi` (QEMU 8.0), added to the encoded reply when the served `MachineInfo` has it.
pub fn served_reply_members(m: &Machine, cmd: &str, v: &mut Value) {
    if !SERVED_REPLY_MEMBERS.contains(&cmd) {
        return;
    }
    let has_acpi = crate::shape::member_names(&m.schema, "MachineInfo")
        .iter()
        .any(|n| n == "acpi");
    if !has_acpi {
        return;
    }
    if let Value::Array(list) = v {
        for info in list {
            let acpi = info
                .get("name")
                .and_then(Value::as_str)
                .map(identity::machine_type_has_acpi);
            if let (Some(acpi), Value::Object(o)) = (acpi, info) {
                // (A catalogue's machine types say it themselves.)
                o.entry("acpi").or_insert(Value::Bool(acpi));
            }
        }
    }
}
