//! Odds and ends: trace events, rtc-reset-reinjection, `change`, the human monitor.

use qmpkit_qapi::Empty;

use super::R;
use crate::api;
use crate::{block, display, misc};
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

/// `human-monitor-command`: the one QMP command that runs the human monitor above it, which
/// [`Machine::human_monitor`] reaches (the handlers never name the layer above them).
pub fn human_monitor_command(
    m: &mut Machine,
    a: api::HumanMonitorCommand,
    cx: &mut Cx,
) -> R<String> {
    m.human_monitor(&a.command_line, a.cpu_index, cx)
}

/// `change`: the VNC server's password or address when `device` is `vnc`, otherwise the
/// medium of the drive `device` names (with `arg` as its format).
pub fn change(m: &mut Machine, a: api::Change, _: &mut Cx) -> R<Empty> {
    match a.device.as_str() {
        "vnc" => display::change_vnc(m, &a.target, a.arg.as_deref()),
        device => {
            let i = block::lookup(m, Some(device), None)?;
            let name = block::display_name(Some(device), None);
            block::change_medium(m, i, &name, &a.target, a.arg.as_deref(), None)
        }
    }
    .map(|()| Empty)
}
