//! The display: screendump, VNC queries and passwords, query-spice.

use qmpkit_qapi::Empty;

use super::R;
use crate::api;
use crate::display;
use crate::{Cx, Machine};

pub fn screendump(m: &mut Machine, a: api::Screendump, _: &mut Cx) -> R<Empty> {
    let png = a.format == Some(api::ImageFormat::Png);
    display::screendump(m, &a.filename, a.device.as_deref(), a.head, png).map(|()| Empty)
}

pub fn query_vnc(m: &mut Machine, _: api::QueryVnc, _: &mut Cx) -> R<api::VncInfo> {
    Ok(display::query_vnc(m))
}

pub fn query_vnc_servers(
    m: &mut Machine,
    _: api::QueryVncServers,
    _: &mut Cx,
) -> R<Vec<api::VncInfo2>> {
    Ok(display::query_vnc_servers(m))
}

pub fn query_spice(_: &mut Machine, _: api::QuerySpice, _: &mut Cx) -> R<api::SpiceInfo> {
    Ok(display::query_spice())
}

pub fn set_password(m: &mut Machine, a: api::SetPassword, _: &mut Cx) -> R<Empty> {
    display::set_password(m, &a.protocol, &a.password, a.connected.as_deref()).map(|()| Empty)
}

pub fn expire_password(m: &mut Machine, a: api::ExpirePassword, _: &mut Cx) -> R<Empty> {
    display::expire_password(m, &a.protocol, &a.time).map(|()| Empty)
}

pub fn change_vnc_password(m: &mut Machine, a: api::ChangeVncPassword, _: &mut Cx) -> R<Empty> {
    display::set_vnc_password(m, &a.password).map(|()| Empty)
}
