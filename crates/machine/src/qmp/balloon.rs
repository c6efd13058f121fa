//! The memory balloon: balloon, query-balloon.

use qmpkit_qapi::Empty;

use super::R;
use crate::api;
use crate::balloon;
use crate::{Cx, Machine};

pub fn balloon(m: &mut Machine, a: api::Balloon, _: &mut Cx) -> R<Empty> {
    balloon::set_target(m, a.value).map(|()| Empty)
}

pub fn query_balloon(m: &mut Machine, _: api::QueryBalloon, _: &mut Cx) -> R<api::BalloonInfo> {
    balloon::query(m)
}
