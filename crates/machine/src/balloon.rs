//! The memory balloon: `balloon` sets a target, the modelled guest driver
//! follows it in steps over simulated time (one step of at most
//! [`STEP_BYTES`] every [`STEP_NS`], each announced with `BALLOON_CHANGE`),
//! `query-balloon` reports where it is. The guest only moves while it runs.
//! The balloon device's QOM properties `guest-stats` and
//! `guest-stats-polling-interval` are answered here.

use serde_json::{json, Value};

use crate::api;
use crate::qom::{types, NodeId};
use crate::{Machine, RunState, TimerAction};
use qmpkit_wire::{ErrorClass, QmpError};

/// What the balloon does later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timer {
    /// The guest's driver moves one step toward the target.
    Step,
}

/// How far the guest moves per step.
pub const STEP_BYTES: u64 = 128 << 20;
/// Time between steps.
pub const STEP_NS: u64 = 100_000_000;

#[derive(Debug, Clone, Default)]
pub struct BalloonState {
    /// Guest memory as the guest reports it (RAM minus the balloon);
    /// 0 means "not yet initialised" (full RAM).
    pub actual: u64,
    pub target: u64,
    pub stepping: bool,
    pub poll_interval: i64,
    /// Machine resets already applied to this state.
    pub resets_seen: u64,
}

/// How long after a reset the guest's balloon driver comes back.
pub const DRIVER_LOAD_NS: u64 = 2_000_000_000;

/// Apply machine resets since the last look: the device forgets the
/// guest's size (full RAM again) and the rebooted guest's driver inflates
/// back to the target once it has loaded.
pub fn sync_reset(m: &mut Machine) {
    if m.balloon.resets_seen == m.run.reset_count {
        return;
    }
    m.balloon.resets_seen = m.run.reset_count;
    m.balloon.actual = 0;
    m.balloon.stepping = false;
    let target = m.balloon.target;
    if target != 0 && target < ram(m) && active(m) {
        m.cancel_timers(|a| !matches!(a, TimerAction::Balloon(_)));
        m.balloon.stepping = true;
        m.schedule(DRIVER_LOAD_NS, TimerAction::Balloon(Timer::Step));
    }
}

fn ram(m: &Machine) -> u64 {
    m.config.memory_bytes
}

/// The guest's view of its memory now.
pub fn actual(m: &Machine) -> u64 {
    if m.balloon.actual == 0 {
        ram(m)
    } else {
        m.balloon.actual
    }
}

/// Whether a balloon device is present.
pub fn active(m: &Machine) -> bool {
    crate::devices::has_device_of_type(m, "virtio-balloon-pci")
        || crate::devices::has_device_of_type(m, "virtio-balloon-device")
}

fn not_active() -> QmpError {
    QmpError::new(
        ErrorClass::DeviceNotActive,
        "No balloon device has been activated",
    )
}

/// `balloon`: set the target the guest moves to.
pub fn set_target(m: &mut Machine, value: i64) -> Result<(), QmpError> {
    sync_reset(m);
    if !active(m) {
        return Err(not_active());
    }
    if value <= 0 {
        return Err(QmpError::generic("Parameter 'target' expects a size"));
    }
    let target = (value as u64).min(ram(m));
    m.balloon.target = target;
    if m.balloon.actual == 0 {
        m.balloon.actual = ram(m);
    }
    if !m.balloon.stepping && m.balloon.actual != target {
        m.balloon.stepping = true;
        m.schedule(STEP_NS, TimerAction::Balloon(Timer::Step));
    }
    Ok(())
}

/// `query-balloon`: the guest's memory now.
pub fn query(m: &mut Machine) -> Result<api::BalloonInfo, QmpError> {
    sync_reset(m);
    if active(m) {
        Ok(api::BalloonInfo {
            actual: i64::try_from(actual(m)).unwrap_or(i64::MAX),
        })
    } else {
        Err(not_active())
    }
}

/// Timer callback: the guest moves one step toward the target.
pub fn on_timer(m: &mut Machine, t: Timer) {
    let Timer::Step = t;
    if m.balloon.resets_seen != m.run.reset_count {
        // The guest rebooted under this step: start over.
        sync_reset(m);
        return;
    }
    if !active(m) || !m.testctl.guest.balloon_follow {
        m.balloon.stepping = false;
        return;
    }
    if !m.is(RunState::Running) {
        // The guest is not running: look again later.
        m.schedule(STEP_NS * 10, TimerAction::Balloon(Timer::Step));
        return;
    }
    let (a, t) = (actual(m), m.balloon.target);
    let next = if a > t {
        a - (a - t).min(STEP_BYTES)
    } else {
        a + (t - a).min(STEP_BYTES)
    };
    m.balloon.actual = next;
    m.emit_event(api::BalloonChange {
        actual: i64::try_from(next).unwrap_or(i64::MAX),
    });
    if next != m.balloon.target {
        m.schedule(STEP_NS, TimerAction::Balloon(Timer::Step));
    } else {
        m.balloon.stepping = false;
    }
}

fn is_balloon(m: &Machine, id: NodeId) -> bool {
    types::is_a(m.qom.tree.node(id).ty, "virtio-balloon-pci")
        || types::is_a(m.qom.tree.node(id).ty, "virtio-balloon-device")
}

/// QOM reads of the balloon's own properties.
pub fn qom_get(m: &Machine, id: NodeId, prop: &str) -> Option<Result<Value, QmpError>> {
    if !is_balloon(m, id) {
        return None;
    }
    match prop {
        "guest-stats-polling-interval" => Some(Ok(json!(m.balloon.poll_interval))),
        "guest-stats" => {
            let polling = m.balloon.poll_interval > 0;
            let a = actual(m) as i64;
            let stat = |v: i64| if polling { v } else { -1 };
            let last = if polling {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs() as i64)
                    .unwrap_or(0)
            } else {
                0
            };
            Some(Ok(json!({
                "stats": {
                    "stat-swap-in": stat(0),
                    "stat-swap-out": stat(0),
                    "stat-major-faults": stat(312),
                    "stat-minor-faults": stat(81_722),
                    "stat-free-memory": stat(a / 5 * 3),
                    "stat-total-memory": stat(a),
                    "stat-available-memory": stat(a / 4 * 3),
                    "stat-disk-caches": stat(a / 8),
                    "stat-htlb-pgalloc": stat(0),
                    "stat-htlb-pgfail": stat(0),
                },
                "last-update": last,
            })))
        }
        _ => None,
    }
}

/// QOM writes of the balloon's own properties.
pub fn qom_set(m: &mut Machine, id: NodeId, prop: &str, v: &Value) -> Option<Result<(), QmpError>> {
    if !is_balloon(m, id) {
        return None;
    }
    match prop {
        "guest-stats-polling-interval" => Some((|| {
            let Some(n) = v.as_i64() else {
                return Err(QmpError::generic(
                    "Invalid parameter type for 'guest-stats-polling-interval', expected: integer",
                ));
            };
            if n < 0 {
                return Err(QmpError::generic("timer value must be greater than zero"));
            }
            if n > u32::MAX as i64 {
                return Err(QmpError::generic("timer value is too big"));
            }
            m.balloon.poll_interval = n;
            Ok(())
        })()),
        "guest-stats" => Some(Err(crate::qom::err_not_writable(
            m.compat().options_6_0,
            m.qom.tree.node(id).ty,
            prop,
        ))),
        _ => None,
    }
}
