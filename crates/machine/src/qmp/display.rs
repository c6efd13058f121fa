//! The display: screendump, VNC queries and passwords, query-spice.

use qmpkit_qapi::Empty;
use serde_json::Value;

use super::R;
use crate::api;
use crate::display;
use crate::{Args, Cx, Machine};

pub fn screendump(m: &mut Machine, a: api::Screendump, _: &mut Cx) -> R<Empty> {
    display::screendump(m, &a.filename, None, None, false).map(|()| Empty)
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

/// `screendump` with the members a newer served schema adds (`device` and `head` from QEMU
/// 2.12's final interface, `format` from 7.1), which the machine's own schema lacks: answered
/// here, before the typed dispatch would drop them. `None`: not such a call.
pub fn screendump_newer_members(m: &mut Machine, cmd: &str, args: &Args) -> Option<R<Value>> {
    if cmd != "screendump"
        || !["device", "head", "format"]
            .iter()
            .any(|k| args.contains_key(*k))
    {
        return None;
    }
    let filename = args.get("filename").and_then(Value::as_str).unwrap_or("");
    let device = args.get("device").and_then(Value::as_str);
    let head = args.get("head").and_then(Value::as_i64);
    let png = args.get("format").and_then(Value::as_str) == Some("png");
    Some(
        display::screendump(m, filename, device, head, png)
            .map(|()| Value::Object(Default::default())),
    )
}
