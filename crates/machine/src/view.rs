//! Versions as views: the machine speaks its own interface (`schema/`); serving another one
//! (a 1.x seed, QEMU 7.2's or 10.0's schema, a saved `query-qmp-schema` answer) converts
//! each request from the served schema's form to the machine's own, and each reply and event
//! from the machine's own types to the served schema's. The handlers only ever see their own
//! schema's arguments.
//!
//! **Requests** ([`request`]), after the server validated them against the served schema:
//!
//! 1. The explicit table [`REQUESTS`] first: what the schema difference cannot derive (a
//!    command whose members moved into a nested member, a command of an older interface
//!    that has no effect the machine models).
//! 2. **Derived from the schema difference.** A command the machine's interface has only
//!    under its unstable name (`x-NAME`) is called by that name, and a served unstable
//!    `x-NAME` the machine has only under its stable `NAME` by that one (a command renamed
//!    when it became stable, or lost its `x-` prefix). The arguments are then
//!    walked against the machine's own argument type ([`crate::shape`] again): members,
//!    branches and enum values both interfaces have pass as they are; anything the served
//!    request carries that the machine's form lacks (a member added later, an enum value the
//!    machine does not know) is refused in so many words, never dropped.
//!
//! **Replies and events**: the conversion has three sources, in this order:
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

use std::borrow::Cow;

use qmpkit_schema::model::EntityKind;
use qmpkit_schema::Schema;
use qmpkit_wire::QmpError;
use serde_json::{Map, Value};

use crate::shape::{self, Conformed, Invention, InventionKind};
use crate::{Args, Machine};

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
pub const RENAMES: &[shape::Rename] = &[
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

// ---------------------------------------------------------------------------
// Requests.

/// A request of the served interface as the machine's own handlers take it.
#[derive(Debug, Clone, PartialEq)]
pub enum Request<'a> {
    /// The command and arguments in the machine's own form.
    Own {
        command: Cow<'a, str>,
        args: Cow<'a, Args>,
    },
    /// Answered by the conversion (a rule of [`REQUESTS`]).
    Answered(Value),
}

/// What one rule of [`REQUESTS`] makes of a request's arguments.
pub enum Converted {
    /// These arguments, then the derived conversion.
    Args(Args),
    /// This reply; no handler runs.
    Answer(Value),
}

/// A request conversion the schema difference cannot derive.
pub struct RequestRule {
    /// The served interface's command.
    pub command: &'static str,
    /// What the rule does, and why it is right.
    pub why: &'static str,
    /// The conversion (of arguments the server validated against the served schema).
    pub convert: fn(&Args) -> Converted,
}

/// Every request conversion the schema difference cannot derive.
pub const REQUESTS: &[RequestRule] = &[
    RequestRule {
        command: "object-add",
        why: "QEMU 6.0 on take the new object's properties as members beside `qom-type` and \
              `id`; the machine's form keeps them under `props`",
        convert: object_add_props,
    },
    RequestRule {
        command: "x-blockdev-reopen",
        why: "QEMU 4.0 to 5.2's unstable command takes one node's options as its arguments; \
              the machine's `blockdev-reopen` takes a list of them under `options` (a form \
              that already has the list passes as it is)",
        convert: reopen_options,
    },
    RequestRule {
        command: "cpu",
        why: "QEMU 1.x: selects the monitor's current CPU, which no QMP command of those \
              interfaces reads; it answers `{}` without anything else to do",
        convert: |_| Converted::Answer(Value::Object(Map::new())),
    },
];

/// `x-blockdev-reopen`'s arguments of QEMU 4.0 to 5.2 (one `BlockdevOptions`) as the list
/// `blockdev-reopen` takes; arguments that already have the list pass as they are.
fn reopen_options(args: &Args) -> Converted {
    if args.contains_key("options") {
        return Converted::Args(args.clone());
    }
    let mut a = Args::new();
    a.insert(
        "options".into(),
        Value::Array(vec![Value::Object(args.clone())]),
    );
    Converted::Args(a)
}

/// `object-add`'s flat properties under `props`.
fn object_add_props(args: &Args) -> Converted {
    let mut args = args.clone();
    let flat: Vec<String> = args
        .keys()
        .filter(|k| !matches!(k.as_str(), "qom-type" | "id" | "props"))
        .cloned()
        .collect();
    if flat.is_empty() {
        return Converted::Args(args);
    }
    let mut props = match args.remove("props") {
        Some(Value::Object(o)) => o,
        Some(Value::Null) | None => Map::new(),
        // Not an object: refused by the machine's form as it is.
        Some(other) => {
            args.insert("props".into(), other);
            return Converted::Args(args);
        }
    };
    for k in flat {
        if let Some(v) = args.remove(&k) {
            props.insert(k, v);
        }
    }
    args.insert("props".into(), Value::Object(props));
    Converted::Args(args)
}

/// The command of the machine's own interface that serves the served interface's `cmd`:
/// itself, the unstable `x-` name under which the machine's interface has it, or, for an
/// unstable `x-NAME` of the served interface (QEMU 4.0 to 5.2's `x-blockdev-reopen`), the
/// stable `NAME` the machine's interface has. `None`: the machine's interface has no such
/// command.
pub fn own_command<'a>(own: &Schema, cmd: &'a str) -> Option<Cow<'a, str>> {
    let is_command = |name: &str| {
        matches!(
            own.lookup(name).map(|id| &own.entity(id).kind),
            Some(EntityKind::Command(_))
        )
    };
    if is_command(cmd) {
        return Some(Cow::Borrowed(cmd));
    }
    let unstable = format!("x-{cmd}");
    if is_command(&unstable) {
        return Some(Cow::Owned(unstable));
    }
    let stable = cmd.strip_prefix("x-")?;
    is_command(stable).then_some(Cow::Borrowed(stable))
}

/// A request of the served interface (`cmd` with `args`, validated against it) in the
/// machine's own form. Identity on the machine's own interface. An error: the request
/// carries something the machine's form has no place for.
pub fn request<'a>(cmd: &'a str, args: &'a Args) -> Result<Request<'a>, QmpError> {
    let mut args = Cow::Borrowed(args);
    if let Some(rule) = REQUESTS.iter().find(|r| r.command == cmd) {
        match (rule.convert)(&args) {
            Converted::Args(a) => args = Cow::Owned(a),
            Converted::Answer(v) => return Ok(Request::Answered(v)),
        }
    }
    let own = crate::embedded::own();
    let command = match own_command(own, cmd) {
        Some(c) if crate::qmp::implemented().contains(&c.as_ref()) => c,
        // Not the machine's interface, or a command of it that the machine does not
        // implement: no handler answers it (the glue says it is not implemented).
        _ => {
            return Ok(Request::Own {
                command: Cow::Borrowed(cmd),
                args,
            })
        }
    };
    let Some(EntityKind::Command(c)) = own.lookup(&command).map(|id| &own.entity(id).kind) else {
        return Ok(Request::Own { command, args });
    };
    // A command without generated arguments takes any members (`device_add`'s properties):
    // they pass as they are.
    if !c.gen {
        return Ok(Request::Own { command, args });
    }
    let Some(t) = c.arg_type else {
        if let Some(k) = args.keys().next() {
            return Err(refused(cmd, &format!("/{k}"), None));
        }
        return Ok(Request::Own { command, args });
    };
    // Most requests have the machine's form already (always, on its own interface): checked
    // without copying.
    if shape::object_fits(own, t, &args, 0) {
        return Ok(Request::Own { command, args });
    }
    let fitted = shape::conform(own, t, Value::Object(args.into_owned()));
    if let Some(inv) = fitted.inventions.first() {
        let value = match &inv.kind {
            InventionKind::EnumReplaced(v) | InventionKind::WrongType { was: v, .. } => Some(v),
            _ => None,
        };
        return Err(refused(cmd, &inv.path, value));
    }
    let Value::Object(args) = fitted.value else {
        return Err(refused(cmd, "", None));
    };
    Ok(Request::Own {
        command,
        args: Cow::Owned(args),
    })
}

/// The error for a request the machine's form cannot carry: what it names, in the served
/// interface's words (`a.b` for a nested member).
fn refused(cmd: &str, path: &str, value: Option<&Value>) -> QmpError {
    let member = path.trim_start_matches('/').replace('/', ".");
    let what = match value {
        Some(v) => format!("'{member}' = {v}"),
        None => format!("'{member}'"),
    };
    crate::generic(format!(
        "Command '{cmd}' with {what} is not implemented by this simulated machine"
    ))
}

// ---------------------------------------------------------------------------
// Replies and events.

/// A reply the served interface answers from itself, whatever the machine's own reply:
/// `(command, why, the reply from the served schema)`.
pub const SERVED_REPLIES: &[(&str, &str, fn(&Schema) -> Value)] = &[(
    "query-events",
    "QEMU lists every event its interface declares: the served interface's, not the \
     machine's own",
    events_of,
)];

/// Whether the served interface's reply to `cmd` is the handler's (converted to the served
/// interface's types), not one of [`SERVED_REPLIES`].
pub fn reply_is_the_handlers(cmd: &str) -> bool {
    !SERVED_REPLIES.iter().any(|(c, _, _)| *c == cmd)
}

/// `query-events` of `schema`: its events, in its order.
fn events_of(schema: &Schema) -> Value {
    Value::Array(
        schema
            .iter()
            .filter(|(_, e)| matches!(e.kind, EntityKind::Event(_)))
            .map(|(_, e)| serde_json::json!({ "name": e.name.as_str() }))
            .collect(),
    )
}

/// A reply of `cmd` from the machine's own types to the served interface, and what the
/// conversion changed (to be judged with [`judge`]).
pub fn convert_reply(schema: &Schema, cmd: &str, raw: Value) -> Conformed<Value> {
    if let Some((_, _, answer)) = SERVED_REPLIES.iter().find(|(c, _, _)| *c == cmd) {
        return Conformed {
            value: answer(schema),
            inventions: Vec::new(),
        };
    }
    shape::conform_return_renaming(schema, cmd, raw, RENAMES)
}

/// An event from the machine's own types to the served interface (`None`: the served
/// interface has no such event; `Some(None)`: an event without data), and what the
/// conversion changed.
pub fn convert_event(
    schema: &Schema,
    name: &str,
    data: Option<Value>,
) -> Conformed<Option<Option<Value>>> {
    shape::conform_event_renaming(schema, name, data, RENAMES)
}

/// A reply of `cmd` from the machine's own types to the served interface.
pub fn reply(schema: &Schema, cmd: &str, raw: Value, faults: &mut Faults) -> Value {
    let c = convert_reply(schema, cmd, raw);
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
    let c = convert_event(schema, name, data);
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
