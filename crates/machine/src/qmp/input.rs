//! Keyboard and mice: send-key, input-send-event, query-mice, and the test query
//! __org.qmpkit_query-keyboard.

use qmpkit_qapi::Empty;

use super::R;
use crate::api;
use crate::input;
use crate::{Cx, Machine};

pub fn send_key(m: &mut Machine, a: api::SendKey, _: &mut Cx) -> R<Empty> {
    input::send_key(m, &a.keys, a.hold_time).map(|()| Empty)
}

pub fn input_send_event(m: &mut Machine, a: api::InputSendEvent, _: &mut Cx) -> R<Empty> {
    input::input_send_event(m, a.device.as_deref(), a.head, &a.events).map(|()| Empty)
}

pub fn query_mice(m: &mut Machine, _: api::QueryMice, _: &mut Cx) -> R<Vec<api::MouseInfo>> {
    Ok(input::query_mice(m))
}

pub fn query_keyboard(
    m: &mut Machine,
    _: api::OrgQmpkitQueryKeyboard,
    _: &mut Cx,
) -> R<api::OrgQmpkitKeyboardState> {
    Ok(input::query_keyboard(m))
}
