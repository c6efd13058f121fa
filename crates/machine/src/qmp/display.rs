//! The display: screendump, VNC queries and passwords, query-spice.

use qmpkit_qapi::Empty;
use qmpkit_wire::{ErrorClass, QmpError};

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

pub fn query_spice(m: &mut Machine, _: api::QuerySpice, _: &mut Cx) -> R<api::SpiceInfo> {
    Ok(display::query_spice(m))
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

/// `add_client`: the descriptor passed under `fdname` goes to the display server or the
/// socket character device `protocol` names. It is taken whatever the answer, as QEMU
/// takes it.
pub fn add_client(m: &mut Machine, a: api::AddClient, cx: &mut Cx) -> R<Empty> {
    let Some(fd) = crate::fdsets::take_named_fd(m, cx, &a.fdname) else {
        return Err(crate::generic(format!(
            "File descriptor named '{}' has not been found",
            a.fdname
        )));
    };
    if !display::is_socket(&fd) {
        return Err(crate::generic("parameter @fdname must name a socket"));
    }
    let inactive = |what: &str| Err(QmpError::new(ErrorClass::DeviceNotActive, what));
    match a.protocol.as_str() {
        "spice" if display::spice::config(m).is_some() => {
            display::spice::add_client(m, fd, a.tls.unwrap_or(false)).map(|()| Empty)
        }
        "spice" => inactive("SPICE is not in use"),
        "@dbus-display" => inactive("D-Bus display is not in use"),
        "vnc" => display::add_client(m, fd, a.skipauth.unwrap_or(false)).map(|()| Empty),
        id if crate::chardev::exists(m, id) => {
            crate::chardev::add_client(m, id, fd).map(|()| Empty)
        }
        other => Err(crate::generic(format!("protocol '{other}' is invalid"))),
    }
}

/// `__org.qmpkit_viewer-connect`.
pub fn viewer_connect(
    m: &mut Machine,
    a: api::OrgQmpkitViewerConnect,
    _: &mut Cx,
) -> R<api::OrgQmpkitViewer> {
    let r = display::ViewerRequest {
        host: a.host,
        service: a.service,
        websocket: a.websocket.unwrap_or(false),
        password: a.password,
        x509_dname: a.x509_dname,
        sasl_username: a.sasl_username,
    };
    let (service, refused) = match a.protocol.as_str() {
        "vnc" => display::connect_viewer(m, r)?,
        "spice" => display::connect_spice_viewer(m, r)?,
        other => return Err(bad_protocol(other)),
    };
    Ok(api::OrgQmpkitViewer {
        service,
        accepted: refused.is_none(),
        reason: refused.map(str::to_string),
    })
}

/// `__org.qmpkit_viewer-disconnect`.
pub fn viewer_disconnect(
    m: &mut Machine,
    a: api::OrgQmpkitViewerDisconnect,
    _: &mut Cx,
) -> R<Empty> {
    match a.protocol.as_str() {
        "vnc" => display::disconnect_viewer(m, &a.service),
        "spice" => display::spice::disconnect(m, &a.service),
        other => Err(bad_protocol(other)),
    }
    .map(|()| Empty)
}

fn bad_protocol(p: &str) -> QmpError {
    crate::generic(format!(
        "Parameter 'protocol' expects 'vnc' or 'spice', not '{p}'"
    ))
}
