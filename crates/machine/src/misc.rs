//! Odds and ends of the monitor: trace events (`trace-event-get-state`,
//! `trace-event-set-state`, with `*` patterns and per-vCPU events),
//! `rtc-reset-reinjection`. (File descriptors are [`crate::fdsets`].)

use crate::api;
use crate::Machine;
use qmpkit_wire::QmpError;

/// One trace event: name, per-vCPU, compiled in.
pub struct TraceEvent {
    pub name: &'static str,
    pub vcpu: bool,
    pub available: bool,
}

macro_rules! ev {
    ($n:expr) => {
        TraceEvent {
            name: $n,
            vcpu: false,
            available: true,
        }
    };
    ($n:expr, vcpu) => {
        TraceEvent {
            name: $n,
            vcpu: true,
            available: true,
        }
    };
    ($n:expr, off) => {
        TraceEvent {
            name: $n,
            vcpu: false,
            available: false,
        }
    };
}

/// The machine's trace events (a realistic subset of QEMU's).
pub static TRACE_EVENTS: &[TraceEvent] = &[
    ev!("guest_cpu_enter", vcpu),
    ev!("guest_cpu_exit", vcpu),
    ev!("guest_cpu_reset", vcpu),
    ev!("exec_tb", off),
    ev!("exec_tb_nocache", off),
    ev!("exec_tb_exit", off),
    ev!("translate_block", off),
    ev!("qemu_memalign"),
    ev!("qemu_anon_ram_alloc"),
    ev!("qemu_vfree"),
    ev!("qemu_anon_ram_free"),
    ev!("object_dynamic_cast_assert"),
    ev!("object_class_dynamic_cast_assert"),
    ev!("vm_state_notify"),
    ev!("load_file"),
    ev!("runstate_set"),
    ev!("system_wakeup_request"),
    ev!("qemu_system_shutdown_request"),
    ev!("qemu_system_powerdown_request"),
    ev!("monitor_protocol_event_handler"),
    ev!("monitor_protocol_event_emit"),
    ev!("monitor_protocol_event_queue"),
    ev!("handle_hmp_command"),
    ev!("handle_qmp_command"),
    ev!("monitor_suspend"),
    ev!("monitor_qmp_cmd_in_band"),
    ev!("monitor_qmp_cmd_out_of_band"),
    ev!("cpu_in"),
    ev!("cpu_out"),
    ev!("balloon_event"),
    ev!("virtio_balloon_bad_addr"),
    ev!("virtio_balloon_handle_output"),
    ev!("virtio_balloon_get_config"),
    ev!("virtio_balloon_set_config"),
    ev!("virtio_balloon_to_target"),
    ev!("virtqueue_alloc_element"),
    ev!("virtqueue_fill"),
    ev!("virtqueue_flush"),
    ev!("virtqueue_pop"),
    ev!("virtio_queue_notify"),
    ev!("virtio_notify"),
    ev!("virtio_set_status"),
    ev!("virtio_blk_req_complete"),
    ev!("virtio_blk_rw_complete"),
    ev!("virtio_blk_handle_write"),
    ev!("virtio_blk_handle_read"),
    ev!("virtio_blk_submit_multireq"),
    ev!("virtio_net_announce_timer"),
    ev!("bdrv_open_common"),
    ev!("bdrv_lock_medium"),
    ev!("bdrv_co_preadv"),
    ev!("bdrv_co_pwritev"),
    ev!("bdrv_co_pwrite_zeroes"),
    ev!("blk_co_preadv"),
    ev!("blk_co_pwritev"),
    ev!("qmp_block_job_cancel"),
    ev!("qmp_block_job_pause"),
    ev!("qmp_block_job_resume"),
    ev!("qmp_block_job_complete"),
    ev!("qmp_block_stream"),
    ev!("qcow2_writev_start_req"),
    ev!("qcow2_writev_done_req"),
    ev!("qcow2_cache_get"),
    ev!("qcow2_cache_flush"),
    ev!("dma_blk_io"),
    ev!("pci_update_mappings_add"),
    ev!("pci_update_mappings_del"),
    ev!("pci_cfg_read"),
    ev!("pci_cfg_write"),
    ev!("e1000_receiver_overrun"),
    ev!("e1000_set_link_status"),
    ev!("kvm_ioctl"),
    ev!("kvm_vm_ioctl"),
    ev!("kvm_vcpu_ioctl"),
    ev!("kvm_run_exit"),
    ev!("kvm_irqchip_commit_routes"),
    ev!("migrate_set_state"),
    ev!("savevm_state_setup"),
    ev!("savevm_state_complete_precopy"),
    ev!("ram_save_iterate"),
    ev!("vnc_key_event_map"),
    ev!("vnc_client_connect"),
    ev!("vnc_client_disconnect"),
    ev!("input_event_key_number"),
    ev!("input_event_key_qcode"),
    ev!("input_event_btn"),
    ev!("input_event_rel"),
    ev!("input_event_abs"),
    ev!("input_event_sync"),
    ev!("input_mouse_mode"),
    ev!("console_gfx_new"),
    ev!("console_txt_new"),
    ev!("ppm_save"),
    ev!("usb_packet_state_change"),
    ev!("usb_uhci_frame_start"),
    ev!("dump_guest_memory_start"),
    ev!("memory_region_ops_read"),
    ev!("memory_region_ops_write"),
    ev!("mc146818rtc_set_alarm"),
    ev!("i8042_kbd_event"),
];

/// Misc state of one machine.
#[derive(Debug, Default, Clone)]
pub struct MiscState {
    /// Enabled (non-vCPU) trace events, by index into [`TRACE_EVENTS`].
    pub trace_enabled: Vec<u16>,
    /// vCPU events: enabled mask per event index.
    pub trace_vcpu: Vec<(u16, u64)>,
    /// The human monitor's current vCPU for the command being run.
    pub hmp_cpu: u32,
}

/// Glob match with `*` (and nothing else), as QEMU's trace patterns.
pub fn pattern_match(pat: &str, s: &str) -> bool {
    let p = pat.as_bytes();
    let t = s.as_bytes();
    let (mut pi, mut ti) = (0usize, 0usize);
    let (mut star, mut mark) = (None, 0usize);
    while ti < t.len() {
        if pi < p.len() && p[pi] != b'*' && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(sp) = star {
            pi = sp + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == b'*' {
        pi += 1;
    }
    pi == p.len()
}

fn vcpu_count(m: &Machine) -> usize {
    m.ident.cpus.len()
}

fn check_vcpu(m: &Machine, vcpu: Option<i64>) -> Result<(), QmpError> {
    if let Some(v) = vcpu {
        if !m.ident.cpus.iter().any(|c| c.index as i64 == v) {
            return Err(QmpError::generic(format!("invalid vCPU index {v}")));
        }
    }
    Ok(())
}

fn check_events(name: &str, has_vcpu: bool, ignore_unavailable: bool) -> Result<(), QmpError> {
    if !name.contains('*') {
        let Some(ev) = TRACE_EVENTS.iter().find(|e| e.name == name) else {
            return Err(QmpError::generic(format!("unknown event \"{name}\"")));
        };
        if has_vcpu && !ev.vcpu {
            return Err(QmpError::generic(format!(
                "event \"{name}\" is not vCPU-specific"
            )));
        }
        if !ignore_unavailable && !ev.available {
            return Err(QmpError::generic(format!("event \"{name}\" is disabled")));
        }
        return Ok(());
    }
    if !ignore_unavailable {
        if let Some(ev) = TRACE_EVENTS
            .iter()
            .find(|e| pattern_match(name, e.name) && !e.available)
        {
            return Err(QmpError::generic(format!(
                "event \"{}\" is disabled",
                ev.name
            )));
        }
    }
    Ok(())
}

fn vcpu_mask(m: &Machine, i: u16) -> u64 {
    m.misc
        .trace_vcpu
        .iter()
        .find(|(e, _)| *e == i)
        .map(|(_, mk)| *mk)
        .unwrap_or(0)
}

/// `trace-event-get-state`: the events matching `name` (of vCPU `vcpu` when given).
pub fn trace_get(
    m: &Machine,
    name: &str,
    vcpu: Option<i64>,
) -> Result<Vec<api::TraceEventInfo>, QmpError> {
    check_vcpu(m, vcpu)?;
    check_events(name, vcpu.is_some(), true)?;
    let mut out = Vec::new();
    for (i, ev) in TRACE_EVENTS.iter().enumerate() {
        if !pattern_match(name, ev.name) || (vcpu.is_some() && !ev.vcpu) {
            continue;
        }
        let i = i as u16;
        let state = if !ev.available {
            api::TraceEventState::Unavailable
        } else {
            let on = match (ev.vcpu, vcpu) {
                (true, Some(v)) => vcpu_mask(m, i) & (1u64 << (v as u64 % 64)) != 0,
                (true, None) => vcpu_mask(m, i) != 0,
                (false, _) => m.misc.trace_enabled.contains(&i),
            };
            if on {
                api::TraceEventState::Enabled
            } else {
                api::TraceEventState::Disabled
            }
        };
        out.push(api::TraceEventInfo {
            name: ev.name.to_string(),
            state,
            vcpu: ev.vcpu,
        });
    }
    Ok(out)
}

/// `trace-event-set-state`: enable or disable the events matching `name` (of vCPU `vcpu`
/// when given, of every vCPU otherwise).
pub fn trace_set(
    m: &mut Machine,
    name: &str,
    enable: bool,
    ignore: bool,
    vcpu: Option<i64>,
) -> Result<(), QmpError> {
    check_vcpu(m, vcpu)?;
    check_events(name, vcpu.is_some(), ignore)?;
    let all_cpus: u64 = match vcpu_count(m) {
        n if n >= 64 => u64::MAX,
        n => (1u64 << n) - 1,
    };
    for (i, ev) in TRACE_EVENTS.iter().enumerate() {
        if !ev.available || !pattern_match(name, ev.name) || (vcpu.is_some() && !ev.vcpu) {
            continue;
        }
        let i = i as u16;
        if ev.vcpu {
            let bits = match vcpu {
                Some(v) => 1u64 << (v as u64 % 64),
                None => all_cpus,
            };
            let cur = vcpu_mask(m, i);
            let new = if enable { cur | bits } else { cur & !bits };
            m.misc.trace_vcpu.retain(|(e, _)| *e != i);
            if new != 0 {
                m.misc.trace_vcpu.push((i, new));
            }
        } else if enable {
            if !m.misc.trace_enabled.contains(&i) {
                m.misc.trace_enabled.push(i);
            }
        } else {
            m.misc.trace_enabled.retain(|&e| e != i);
        }
    }
    Ok(())
}
