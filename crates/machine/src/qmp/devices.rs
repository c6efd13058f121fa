//! Device and object commands: device_add, device_del, object-add, object-del, cpu-add.

use super::R;
use crate::devices;
use crate::{api, Cx, Machine};
use qmpkit_qapi::Empty;

/// Options beyond `driver`, `bus` and `id` are the device's properties, whose values stay
/// dynamic (as QEMU's QOM takes them).
pub fn device_add(m: &mut Machine, a: api::DeviceAdd, _: &mut Cx) -> R<Empty> {
    devices::device_add(m, &a.0).map(|()| Empty)
}

pub fn device_del(m: &mut Machine, a: api::DeviceDel, _: &mut Cx) -> R<Empty> {
    devices::device_del(m, &a.id).map(|()| Empty)
}

pub fn object_add(m: &mut Machine, a: api::ObjectAdd, _: &mut Cx) -> R<Empty> {
    devices::object_add(m, &a.qom_type, &a.id, a.props.as_ref()).map(|()| Empty)
}

pub fn object_del(m: &mut Machine, a: api::ObjectDel, _: &mut Cx) -> R<Empty> {
    devices::object_del(m, &a.id).map(|()| Empty)
}

pub fn cpu_add(m: &mut Machine, a: api::CpuAdd, _: &mut Cx) -> R<Empty> {
    devices::cpu_add(m, a.id).map(|()| Empty)
}
