//! QOM commands: qom-list, qom-get, qom-set, qom-list-types, device-list-properties, and
//! qom-list-properties (served only under newer schemas than the machine's own).

use super::R;
use crate::qom;
use crate::{api, Cx, Machine};
use qmpkit_qapi::Empty;

pub fn qom_list(m: &mut Machine, a: api::QomList, _: &mut Cx) -> R<Vec<api::ObjectPropertyInfo>> {
    let id = qom::resolve_listed(&m.qom.tree, &a.path)?;
    Ok(qom::list_props(&m.qom.tree, id)
        .into_iter()
        .map(|(name, ty)| api::ObjectPropertyInfo { name, r#type: ty })
        .collect())
}

pub fn qom_get(m: &mut Machine, a: api::QomGet, _: &mut Cx) -> R<serde_json::Value> {
    let id = qom::resolve_plain(&m.qom.tree, &a.path)?;
    // Properties another subsystem keeps the value of.
    if let Some(r) = crate::balloon::qom_get(m, id, &a.property) {
        return r;
    }
    qom::get_prop(&m.qom.tree, m.compat().options_6_0, id, &a.property).map(|v| v.to_json())
}

pub fn qom_set(m: &mut Machine, a: api::QomSet, _: &mut Cx) -> R<Empty> {
    let id = qom::resolve_plain(&m.qom.tree, &a.path)?;
    if let Some(r) = crate::balloon::qom_set(m, id, &a.property, &a.value) {
        return r.map(|()| Empty);
    }
    let modern = m.compat().options_6_0;
    qom::set_prop(&mut m.qom.tree, modern, id, &a.property, &a.value)?;
    Ok(Empty)
}

pub fn qom_list_types(
    m: &mut Machine,
    a: api::QomListTypes,
    _: &mut Cx,
) -> R<Vec<api::ObjectTypeInfo>> {
    let list = if m.config.storage_daemon {
        qom::list_daemon_types
    } else {
        qom::list_types
    };
    Ok(list(a.implements.as_deref(), a.r#abstract.unwrap_or(false)))
}

pub fn device_list_properties(
    _: &mut Machine,
    a: api::DeviceListProperties,
    _: &mut Cx,
) -> R<Vec<api::DevicePropertyInfo>> {
    qom::device_properties(&a.typename)
}

/// `qom-list-properties`, which the machine's own schema (QEMU 2.12's interface before the
/// command came) lacks: answered only when a newer served schema has it.
pub fn qom_list_properties(_: &mut Machine, typename: &str) -> R<serde_json::Value> {
    let list = qom::type_properties(typename)?;
    qmpkit_qapi::encode(&list).map_err(|e| crate::generic(e.to_string()))
}
