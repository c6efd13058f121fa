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

/// What QEMU 10.0.2's x86_64 build answers a command it lacks (one of another target, or
/// one removed since).
fn other_target(name: &str) -> qmpkit_wire::QmpError {
    qmpkit_wire::QmpError::new(
        qmpkit_wire::ErrorClass::CommandNotFound,
        format!("The command {name} has not been found"),
    )
}

/// `block_passwd`: gone from QEMU since 4.0 (encrypted images take their secrets as
/// objects); QEMU 10.0.2 answers that it has no such command.
pub fn block_passwd(_: &mut Machine, _: api::BlockPasswd, _: &mut Cx) -> R<Empty> {
    Err(other_target("block_passwd"))
}

/// `dump-skeys`: s390x storage keys; the x86 machine has none, and QEMU's x86 build has no
/// such command.
pub fn dump_skeys(_: &mut Machine, _: api::DumpSkeys, _: &mut Cx) -> R<Empty> {
    Err(other_target("dump-skeys"))
}

/// `query-gic-capabilities`: ARM's interrupt controller; absent from QEMU's x86 build.
pub fn query_gic_capabilities(
    _: &mut Machine,
    _: api::QueryGicCapabilities,
    _: &mut Cx,
) -> R<Vec<api::GICCapability>> {
    Err(other_target("query-gic-capabilities"))
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
