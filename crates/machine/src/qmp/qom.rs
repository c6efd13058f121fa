//! QOM commands: qom-list, qom-get, qom-set, qom-list-types, device-list-properties,
//! qom-list-properties. The type listings come from the catalogue of the binary the machine
//! claims to be, where there is one (see [`crate::catalog`]), else from the QOM registry.

use super::R;
use crate::qom;
use crate::{api, Cx, Machine};
use qmpkit_qapi::Empty;

pub fn qom_list(m: &mut Machine, a: api::QomList, _: &mut Cx) -> R<Vec<api::ObjectPropertyInfo>> {
    let id = qom::resolve_listed(&m.qom.tree, &a.path)?;
    Ok(qom::list_props(&m.qom.tree, id)
        .into_iter()
        .map(|(name, ty)| api::ObjectPropertyInfo {
            name,
            r#type: ty,
            description: None,
            default_value: None,
        })
        .collect())
}

pub fn qom_get(m: &mut Machine, a: api::QomGet, _: &mut Cx) -> R<serde_json::Value> {
    let id = qom::resolve_plain(&m.qom.tree, &a.path)?;
    // Properties another subsystem keeps the value of.
    if let Some(r) = crate::balloon::qom_get(m, id, &a.property) {
        return r;
    }
    if let Some(r) = crate::catalog::cpu_qom_get(m, id, &a.property) {
        return r;
    }
    qom::get_prop(&m.qom.tree, m.compat().options_6_0, id, &a.property).map(|v| v.to_json())
}

pub fn qom_set(m: &mut Machine, a: api::QomSet, _: &mut Cx) -> R<Empty> {
    let id = qom::resolve_plain(&m.qom.tree, &a.path)?;
    if let Some(r) = crate::balloon::qom_set(m, id, &a.property, &a.value) {
        return r.map(|()| Empty);
    }
    // A vCPU of the catalogue's: the ranges and refusals of QEMU 10.0.
    if let Some(e) = crate::catalog::cpu_qom_set(m, id, &a.property, &a.value) {
        return Err(e);
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
    if let Some(c) = crate::catalog::of(m) {
        // The binary loads every module first.
        c.modules().load_all(&mut m.modules);
        return Ok(c
            .qom()
            .list_types(a.implements.as_deref(), a.r#abstract.unwrap_or(false)));
    }
    let list = if m.config.storage_daemon {
        qom::list_daemon_types
    } else {
        qom::list_types
    };
    Ok(list(a.implements.as_deref(), a.r#abstract.unwrap_or(false)))
}

pub fn device_list_properties(
    m: &mut Machine,
    a: api::DeviceListProperties,
    _: &mut Cx,
) -> R<Vec<api::DevicePropertyInfo>> {
    match crate::catalog::of(m) {
        Some(c) => {
            let registered = registered(m, c, &a.typename);
            c.qom().device_properties(&a.typename, registered)
        }
        None => qom::device_properties(&a.typename),
    }
}

pub fn qom_list_properties(
    m: &mut Machine,
    a: api::QomListProperties,
    _: &mut Cx,
) -> R<Vec<api::ObjectPropertyInfo>> {
    match crate::catalog::of(m) {
        Some(c) => {
            let registered = registered(m, c, &a.typename);
            c.qom().type_properties(&a.typename, registered)
        }
        None => qom::type_properties(&a.typename),
    }
}

/// Whether type `name` is registered once looked up by name (which loads its module). Its
/// properties are those of an instance, for a concrete type: what its parts need loads.
fn registered(m: &mut Machine, c: &crate::catalog::Catalog, name: &str) -> bool {
    let modules = c.modules();
    modules.look_up(&mut m.modules, name);
    let registered = modules.registered(&m.modules, name);
    if registered && c.qom().find(name).is_some_and(|t| !t.is_abstract) {
        modules.instantiate(&mut m.modules, name);
    }
    registered
}
