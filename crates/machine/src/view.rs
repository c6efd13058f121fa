//! Versions as views: the machine speaks its own interface (`schema/`); serving another one
//! (a 1.x seed, QEMU 7.2's or 10.0's schema, a saved `query-qmp-schema` answer) converts
//! each reply and event from the machine's own types to the served schema's.
//!
//! The conversion has three sources, in this order:
//!
//! 1. **What the schema diff derives.** A member, event or command the served interface does
//!    not have is left out (a 1.0 client never hears of `DEVICE_TRAY_MOVED`); a member both
//!    have passes as it is. [`crate::shape`] walks the served type and does this.
//! 2. **Renames** the diff cannot see ([`RENAMES`]): an enumeration value spelt differently in
//!    the served interface; and **derivations** ([`DERIVED`]): a member a newer interface
//!    added that the machine's state answers although its own schema does not carry it.
//! 3. **Gaps** ([`GAPS`]): a member the served interface requires and the machine cannot
//!    supply from its own state. Each is listed here, with what it answers and why; the
//!    conversion fills it with the type's neutral value (`false`, `0`, `""`).
//!
//! Nothing else may change. Anything the conversion had to invent beyond these (a mandatory
//! member not in the list, an enum value the served type lacks, a value of the wrong type)
//! is a fault: the reply is still sent in the served shape, but the fault is counted on the
//! machine ([`Faults`]) and the tests fail on it. Serving the machine's own schema the
//! conversion is the identity, which `tests/versions.rs` checks over every command and event.

use qmpkit_schema::Schema;
use serde_json::{Map, Value};

use crate::shape::{self, Invention, InventionKind};
use crate::Machine;

/// A member of an event that a newer interface added, answered from the machine's state.
pub struct Derived {
    /// The event.
    pub item: &'static str,
    /// The member (at the top of the event's data).
    pub member: &'static str,
    /// What it is.
    pub why: &'static str,
    /// Its value, from the machine and the event's data in the machine's own shape.
    pub derive: fn(&Machine, &Map<String, Value>) -> Option<Value>,
}

/// Every derivation the view makes.
pub const DERIVED: &[Derived] = &[Derived {
    item: "BLOCK_IO_ERROR",
    member: "qom-path",
    why: "the QOM path of the device in front of the drive (QEMU 8.2 added it)",
    derive: |m, data| {
        let device = data.get("device")?.as_str()?;
        crate::block::qom_path_of(m, device).map(Value::String)
    },
}];

/// Add to `data` the members of [`DERIVED`] that the served event has and `data` lacks.
pub fn derive_event(m: &Machine, name: &str, data: &mut Option<Value>) {
    for d in DERIVED.iter().filter(|d| d.item == name) {
        if !shape::event_has_member(&m.schema, name, d.member) {
            continue;
        }
        if let Some(Value::Object(o)) = data {
            if !o.contains_key(d.member) {
                if let Some(v) = (d.derive)(m, o) {
                    o.insert(d.member.to_string(), v);
                }
            }
        }
    }
}

/// A member the served interface requires that the machine does not model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gap {
    /// The command (its return value) or event (its data).
    pub item: &'static str,
    /// JSON pointer of the member, with `*` for any list index.
    pub path: &'static str,
    /// What the filled-in neutral value means, and why it is right here.
    pub why: &'static str,
}

/// Every gap the machine has, on any interface it serves.
pub const GAPS: &[Gap] = &[
    Gap {
        item: "query-cpu-definitions",
        path: "/*/deprecated",
        why: "false: no CPU model of the machine is deprecated",
    },
    Gap {
        item: "query-machines",
        path: "/*/deprecated",
        why: "false: no machine type of the machine is deprecated",
    },
    Gap {
        item: "query-cpu-model-expansion",
        path: "/deprecated-props",
        why: "[]: no CPU property of the machine's models is deprecated",
    },
    Gap {
        item: "query-migrate",
        path: "/ram/multifd-bytes",
        why: "0: the machine's migration uses one channel (no multifd)",
    },
    Gap {
        item: "query-migrate",
        path: "/ram/dirty-sync-missed-zero-copy",
        why: "0: the machine's migration does not send with zero copy",
    },
    Gap {
        item: "query-migrate",
        path: "/ram/pages-per-second",
        why: "0: the migration model keeps no rate per page (its bandwidth is in mbps)",
    },
    Gap {
        item: "query-migrate",
        path: "/ram/precopy-bytes",
        why: "0: the migration model does not split transferred bytes by phase",
    },
    Gap {
        item: "query-migrate",
        path: "/ram/downtime-bytes",
        why: "0: the migration model does not split transferred bytes by phase",
    },
    Gap {
        item: "query-migrate",
        path: "/ram/postcopy-bytes",
        why: "0: the migration model does not split transferred bytes by phase",
    },
    Gap {
        item: "query-iothreads",
        path: "/*/aio-max-batch",
        why: "0: QEMU's default batch size (the machine does no I/O batching)",
    },
    Gap {
        item: "query-machines",
        path: "/*/numa-mem-supported",
        why: "false: pc machine types of 2.12 and later take no memory per NUMA node",
    },
    Gap {
        item: "query-memdev",
        path: "/*/share",
        why:
            "false: memory back ends are private unless share=on, which the machine does not model",
    },
    Gap {
        item: "query-pci",
        path: "/*/devices/*/irq_pin",
        why: "0 (no pin): the machine models no PCI interrupt pins; real devices use pin A (1)",
    },
];

/// An enumeration value the served interface spells differently: `(enum type, the machine's
/// value, the served interface's value)`. Used only when the served enum lacks the machine's
/// value and has the other.
pub const RENAMES: &[(&str, &str, &str)] = &[
    // QEMU 2.10 to 3.1 had one cause for both host requests.
    ("ShutdownCause", "host-qmp-quit", "host-qmp"),
    ("ShutdownCause", "host-qmp-system-reset", "host-qmp"),
];

/// Conversion faults seen on one machine: anything the conversion invented that is neither
/// derived from the schema difference nor listed in [`GAPS`] or [`RENAMES`].
#[derive(Debug, Default, Clone)]
pub struct Faults {
    /// How many there were.
    pub count: u64,
    /// The first few, for a report: `"query-x: /0/y: …"`.
    pub first: Vec<String>,
}

impl Faults {
    fn record(&mut self, item: &str, inv: &Invention) {
        self.count += 1;
        if self.first.len() < 16 {
            self.first.push(format!("{item}: {inv}"));
        }
    }
}

/// `/0/devices/12/x` → `/*/devices/*/x`.
pub fn generic_path(p: &str) -> String {
    p.split('/')
        .map(|s| {
            if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
                "*"
            } else {
                s
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// What an invention is: derived from the schema difference, a listed gap or rename, or a
/// fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Judgement {
    /// The served interface lacks the member or event.
    Derived,
    /// One of [`GAPS`].
    Gap(&'static Gap),
    /// Anything else.
    Fault,
}

/// Judge one invention of converting `item`.
pub fn judge(item: &str, inv: &Invention) -> Judgement {
    match &inv.kind {
        InventionKind::DroppedMember(_) | InventionKind::UnknownEvent => Judgement::Derived,
        InventionKind::MissingMember => {
            let path = generic_path(&inv.path);
            match GAPS.iter().find(|g| g.item == item && g.path == path) {
                Some(g) => Judgement::Gap(g),
                None => Judgement::Fault,
            }
        }
        _ => Judgement::Fault,
    }
}

/// Apply [`RENAMES`] to a value of the served enum type `ty` that the served enum lacks.
pub fn rename(schema: &Schema, ty: &str, value: &str) -> Option<&'static str> {
    RENAMES
        .iter()
        .find(|(t, own, served)| *t == ty && *own == value && shape::enum_has(schema, ty, served))
        .map(|(_, _, served)| *served)
}

/// A reply of `cmd` from the machine's own types to the served interface.
pub fn reply(schema: &Schema, cmd: &str, raw: Value, faults: &mut Faults) -> Value {
    let c = shape::conform_return(schema, cmd, raw);
    for inv in &c.inventions {
        if judge(cmd, inv) == Judgement::Fault {
            faults.record(cmd, inv);
        }
    }
    c.value
}

/// An event from the machine's own types to the served interface: `None` when the served
/// interface has no such event, `Some(None)` for an event without data.
pub fn event(
    schema: &Schema,
    name: &str,
    data: Option<Value>,
    faults: &mut Faults,
) -> Option<Option<Value>> {
    let c = shape::conform_event(schema, name, data);
    for inv in &c.inventions {
        if judge(name, inv) == Judgement::Fault {
            faults.record(name, inv);
        }
    }
    c.value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_generalise_indices() {
        assert_eq!(
            generic_path("/0/devices/12/irq_pin"),
            "/*/devices/*/irq_pin"
        );
        assert_eq!(generic_path(""), "");
    }

    #[test]
    fn only_listed_members_are_gaps() {
        let inv = |path: &str, kind| Invention {
            path: path.into(),
            kind,
        };
        let gap = judge(
            "query-pci",
            &inv("/0/devices/3/irq_pin", InventionKind::MissingMember),
        );
        assert!(matches!(gap, Judgement::Gap(g) if g.path == "/*/devices/*/irq_pin"));
        let other = judge("query-pci", &inv("/0/bus", InventionKind::MissingMember));
        assert_eq!(other, Judgement::Fault);
        let dropped = inv("/x", InventionKind::DroppedMember(Value::Null));
        assert_eq!(judge("query-pci", &dropped), Judgement::Derived);
        let replaced = inv("/x", InventionKind::EnumReplaced(Value::Null));
        assert_eq!(judge("query-pci", &replaced), Judgement::Fault);
    }
}
