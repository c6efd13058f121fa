//! Run-state commands: query-status, stop, cont, resets and power, quit, NMI, watchdog.

use super::R;
use crate::api;
use crate::runstate::{self, RunState};
use crate::{generic, Cx, Machine};
use qmpkit_qapi::Empty;

pub fn query_status(m: &mut Machine, _: api::QueryStatus, _: &mut Cx) -> R<api::StatusInfo> {
    Ok(api::StatusInfo {
        running: m.run.state == RunState::Running,
        singlestep: false,
        status: m.run.state.into(),
    })
}

pub fn stop(m: &mut Machine, _: api::Stop, _: &mut Cx) -> R<Empty> {
    if m.run.state == RunState::InMigrate {
        m.run.autostart = false;
    } else {
        runstate::vm_stop(m, RunState::Paused);
    }
    Ok(Empty)
}

pub fn cont(m: &mut Machine, _: api::Cont, _: &mut Cx) -> R<Empty> {
    runstate::cont(m).map(|()| Empty)
}

pub fn system_reset(m: &mut Machine, _: api::SystemReset, _: &mut Cx) -> R<Empty> {
    runstate::system_reset(m);
    Ok(Empty)
}

pub fn system_powerdown(m: &mut Machine, _: api::SystemPowerdown, _: &mut Cx) -> R<Empty> {
    runstate::system_powerdown(m);
    Ok(Empty)
}

pub fn system_wakeup(m: &mut Machine, _: api::SystemWakeup, _: &mut Cx) -> R<Empty> {
    if m.run.state != RunState::Suspended {
        if m.compat().wakeup_requires_suspended {
            return Err(generic(
                "Unable to wake up: guest is not in suspended state",
            ));
        }
        return Ok(Empty);
    }
    runstate::wakeup(m);
    Ok(Empty)
}

pub fn quit(m: &mut Machine, _: api::Quit, _: &mut Cx) -> R<Empty> {
    runstate::quit(m);
    Ok(Empty)
}

pub fn inject_nmi(m: &mut Machine, _: api::InjectNmi, _: &mut Cx) -> R<Empty> {
    m.run.nmi_count += 1;
    Ok(Empty)
}

pub fn watchdog_set_action(m: &mut Machine, a: api::WatchdogSetAction, _: &mut Cx) -> R<Empty> {
    m.run.watchdog_action = a.action;
    Ok(Empty)
}
