//! Odds and ends: trace events, rtc-reset-reinjection.

use qmpkit_qapi::Empty;

use super::R;
use crate::api;
use crate::misc;
use crate::{Cx, Machine};

pub fn trace_event_get_state(
    m: &mut Machine,
    a: api::TraceEventGetState,
    _: &mut Cx,
) -> R<Vec<api::TraceEventInfo>> {
    misc::trace_get(m, &a.name, a.vcpu)
}

pub fn trace_event_set_state(m: &mut Machine, a: api::TraceEventSetState, _: &mut Cx) -> R<Empty> {
    let ignore = a.ignore_unavailable.unwrap_or(false);
    misc::trace_set(m, &a.name, a.enable, ignore, a.vcpu).map(|()| Empty)
}

/// The modelled RTC reinjects no lost ticks: nothing to reset.
pub fn rtc_reset_reinjection(_: &mut Machine, _: api::RtcResetReinjection, _: &mut Cx) -> R<Empty> {
    Ok(Empty)
}

/// `human-monitor-command`: the one QMP command that runs the human monitor above it.
pub fn human_monitor_command(
    m: &mut Machine,
    a: api::HumanMonitorCommand,
    cx: &mut Cx,
) -> R<String> {
    crate::hmp::human_monitor_command(m, &a.command_line, a.cpu_index, cx)
}
