//! Character devices: query-chardev, query-chardev-backends, chardev-add / -change /
//! -remove / -send-break, ringbuf-write / -read, and the guest's side through test control
//! (__org.qmpkit_chardev-write / -read, __org.qmpkit_guest-serial-port).

use super::R;
use crate::api;
use crate::chardev::{self, text};
use crate::{Cx, Machine};
use qmpkit_qapi::Empty;

fn base64(f: &Option<api::DataFormat>) -> bool {
    matches!(f, Some(api::DataFormat::Base64))
}

pub fn query_chardev(
    m: &mut Machine,
    _: api::QueryChardev,
    _: &mut Cx,
) -> R<Vec<api::ChardevInfo>> {
    Ok(chardev::query_chardev(m))
}

pub fn query_chardev_backends(
    m: &mut Machine,
    _: api::QueryChardevBackends,
    _: &mut Cx,
) -> R<Vec<api::ChardevBackendInfo>> {
    Ok(chardev::backends(m))
}

pub fn chardev_add(m: &mut Machine, a: api::ChardevAdd, cx: &mut Cx) -> R<api::ChardevReturn> {
    chardev::add(m, &a.id, &a.backend, cx)
}

pub fn chardev_change(
    m: &mut Machine,
    a: api::ChardevChange,
    cx: &mut Cx,
) -> R<api::ChardevReturn> {
    chardev::change(m, &a.id, &a.backend, cx)
}

pub fn chardev_remove(m: &mut Machine, a: api::ChardevRemove, _: &mut Cx) -> R<Empty> {
    chardev::remove(m, &a.id).map(|()| Empty)
}

pub fn chardev_send_break(m: &mut Machine, a: api::ChardevSendBreak, _: &mut Cx) -> R<Empty> {
    chardev::send_break(m, &a.id).map(|()| Empty)
}

pub fn ringbuf_write(m: &mut Machine, a: api::RingbufWrite, _: &mut Cx) -> R<Empty> {
    chardev::ringbuf_write(m, &a.device, &a.data, base64(&a.format)).map(|()| Empty)
}

pub fn ringbuf_read(m: &mut Machine, a: api::RingbufRead, _: &mut Cx) -> R<String> {
    chardev::ringbuf_read(m, &a.device, a.size, base64(&a.format))
}

pub fn guest_write(m: &mut Machine, a: api::OrgQmpkitChardevWrite, _: &mut Cx) -> R<Empty> {
    chardev::guest_write(m, &a.id, a.data.as_bytes()).map(|()| Empty)
}

pub fn guest_read(
    m: &mut Machine,
    a: api::OrgQmpkitChardevRead,
    _: &mut Cx,
) -> R<api::OrgQmpkitChardevInput> {
    let size = a.size.unwrap_or(65536);
    if size <= 0 {
        return Err(crate::generic("size must be greater than zero"));
    }
    let bytes = chardev::guest_read(m, &a.id, usize::try_from(size).unwrap_or(usize::MAX))?;
    Ok(api::OrgQmpkitChardevInput {
        data: if base64(&a.format) {
            text::base64_encode(&bytes)
        } else {
            text::bytes_to_text(&bytes)
        },
    })
}

pub fn guest_serial_port(
    m: &mut Machine,
    a: api::OrgQmpkitGuestSerialPort,
    _: &mut Cx,
) -> R<Empty> {
    chardev::guest_port(m, &a.id, a.open).map(|()| Empty)
}
