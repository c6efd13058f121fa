//! Test control (`__org.qmpkit_…`): the modelled guest shuts down, panics, suspends,
//! hibernates, trips its watchdog or hits an I/O error; injected failures; guest knobs.

use qmpkit_qapi::Empty;

use super::R;
use crate::api;
use crate::runstate::Timer;
use crate::testctl;
use crate::{Cx, Machine};

pub fn guest_shutdown(m: &mut Machine, a: api::OrgQmpkitGuestShutdown, _: &mut Cx) -> R<Empty> {
    testctl::guest_shutdown(m, a.reboot.unwrap_or(false)).map(|()| Empty)
}

pub fn guest_panic(m: &mut Machine, _: api::OrgQmpkitGuestPanic, _: &mut Cx) -> R<Empty> {
    testctl::guest_request(m, Timer::Panic).map(|()| Empty)
}

pub fn guest_suspend(m: &mut Machine, _: api::OrgQmpkitGuestSuspend, _: &mut Cx) -> R<Empty> {
    testctl::guest_request(m, Timer::Suspend).map(|()| Empty)
}

pub fn guest_hibernate(m: &mut Machine, _: api::OrgQmpkitGuestHibernate, _: &mut Cx) -> R<Empty> {
    testctl::guest_request(m, Timer::Hibernate).map(|()| Empty)
}

pub fn watchdog_fire(m: &mut Machine, _: api::OrgQmpkitWatchdogFire, _: &mut Cx) -> R<Empty> {
    testctl::guest_request(m, Timer::Watchdog).map(|()| Empty)
}

pub fn io_error(m: &mut Machine, a: api::OrgQmpkitIoError, _: &mut Cx) -> R<Empty> {
    let nospace = a.nospace.unwrap_or(false);
    testctl::io_error(m, &a.device, a.operation.as_ref(), nospace).map(|()| Empty)
}

pub fn inject_failure(m: &mut Machine, a: api::OrgQmpkitInjectFailure, _: &mut Cx) -> R<Empty> {
    testctl::inject_failure(m, &a).map(|()| Empty)
}

pub fn set_guest(m: &mut Machine, a: api::OrgQmpkitSetGuest, _: &mut Cx) -> R<Empty> {
    testctl::set_guest(m, &a);
    Ok(Empty)
}
