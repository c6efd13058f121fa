//! The machine's embedded schema against the seed it implements
//! (QEMU 2.12's `qapi-schema.json` in `tests/data/seeds/qemu-2.12-dev/`).
//!
//! Same interface, entity by entity: the introspection of every entity
//! (real type names, not numbers) and the full model dump (which also
//! carries what introspection leaves out: `gen`, `boxed`,
//! `success-response`, enum prefixes, types nothing reaches). The
//! machine's own `__org.qmpkit` extensions, and seed types that only the
//! extensions make visible, are set aside. The doc comments are checked to
//! exist for every definition and to be our own text.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use qmpkit_machine::embedded;
use qmpkit_schema::dump::dump_entities;
use qmpkit_schema::introspect::{introspect, Options};
use qmpkit_schema::model::{EntityKind, Schema};
use qmpkit_schema::stats::SchemaStats;
use qmpkit_schema::Dialect;
use serde_json::Value;

/// Names of the machine's extension entities contain this.
const EXT: &str = "__org.qmpkit";

/// Extension commands the schema must offer (more may be added).
const EXT_COMMANDS: &[&str] = &[
    "__org.qmpkit_guest-shutdown",
    "__org.qmpkit_guest-panic",
    "__org.qmpkit_guest-suspend",
    "__org.qmpkit_watchdog-fire",
    "__org.qmpkit_io-error",
    "__org.qmpkit_inject-failure",
    "__org.qmpkit_set-guest",
    "__org.qmpkit_query-keyboard",
];

fn seed_path() -> PathBuf {
    qmpkit_testkit::data::seeds("qemu-2.12-dev/qapi-schema.json")
}

fn ours() -> Schema {
    match embedded::load_schema() {
        Ok(s) => s,
        Err(e) => panic!("embedded schema does not load:\n{e}"),
    }
}

/// The seed's checked model.
fn seed() -> Schema {
    qmpkit_schema::load(&seed_path(), Dialect::Legacy)
        .unwrap_or_else(|e| panic!("seed does not load:\n{e}"))
}

fn is_ext(name: &str) -> bool {
    name.contains(EXT)
}

/// Definitions the machine's interface has beyond QEMU 2.12: newer forms of QEMU's own, each
/// with QEMU's name and kind in QEMU 10.0.2's schema (checked below).
const NEWER: &[&str] = &[
    "ImageFormat",
    "JobType",
    "JobStatus",
    "JobInfo",
    "JOB_STATUS_CHANGE",
    "BLOCK_JOB_PENDING",
    "query-jobs",
    "job-pause",
    "job-resume",
    "job-cancel",
    "job-complete",
    "job-dismiss",
    "job-finalize",
    "block-job-dismiss",
    "block-job-finalize",
    "SysEmuTarget",
    "CpuInfoFast",
    "query-cpus-fast",
    "AnnounceParameters",
    "announce-self",
    "XDbgBlockGraphNodeType",
    "XDbgBlockGraphNode",
    "BlockPermission",
    "XDbgBlockGraphEdge",
    "XDbgBlockGraph",
    "x-debug-query-block-graph",
    "qom-list-properties",
    "SevCapability",
    "query-sev-capabilities",
    "SGXEPCSection",
    "SGXInfo",
    "query-sgx-capabilities",
    "BlockExportRemoveMode",
    "nbd-server-remove",
    "BlockExportType",
    "BlockExportOptionsNbdBase",
    "BlockExportOptionsNbd",
    "BlockExportOptions",
    "block-export-add",
    "block-export-del",
    "BLOCK_EXPORT_DELETED",
    "BlockExportInfo",
    "query-block-exports",
    "BlockdevCreateOptionsFile",
    "BlockdevCreateOptionsQcow2",
    "BlockdevCreateOptions",
    "blockdev-create",
    "MirrorCopyMode",
    "BlockJobChangeOptionsMirror",
    "BlockJobChangeOptions",
    "block-job-change",
    "ShutdownCause",
    "Qcow2BitmapInfoFlags",
    "Qcow2BitmapInfo",
    "Qcow2CompressionType",
    "block-dirty-bitmap-enable",
    "block-dirty-bitmap-disable",
    "BlockDirtyBitmapOrStr",
    "BlockDirtyBitmapMerge",
    "block-dirty-bitmap-merge",
    "blockdev-reopen",
    "q_obj_query-named-block-nodes-arg",
    "BitmapSyncMode",
    "ImageInfoSpecificFile",
    "BlockStatsSpecificFile",
    "BlockStatsSpecific",
];

/// Seed definitions that grew members of later QEMU releases: each keeps every member the
/// seed gives it, in the seed's order.
const GROWN: &[&str] = &[
    "BlockDeviceInfo",
    "BlockDeviceStats",
    "q_obj_screendump-arg",
    "CpuDefinitionInfo",
    "DevicePropertyInfo",
    "MachineInfo",
    "MigrationCapability",
    "ObjectPropertyInfo",
    "q_obj_nbd-server-add-arg",
    "BlockdevOptions",
    "q_obj_BlockdevOptions-base",
    "q_obj_SHUTDOWN-arg",
    "q_obj_RESET-arg",
    "ImageInfoSpecificQCow2",
    "BlockDirtyInfo",
    "BlockDirtyBitmapAdd",
    "query-named-block-nodes",
    "BlockdevOptionsNull",
    "BlockJobInfo",
    "BlockdevBackup",
    "DriveBackup",
    "DriveMirror",
    "MirrorSyncMode",
    "q_obj_block-commit-arg",
    "q_obj_block-stream-arg",
    "q_obj_blockdev-mirror-arg",
    "ImageInfoSpecific",
    "ImageInfoSpecificKind",
    "BlockStats",
];

/// Whether `name` (an entity, its implicit argument type or its array) is an extension or
/// one of [`NEWER`], set aside from the comparison with the seed.
fn set_aside(name: &str) -> bool {
    let base = name.trim_start_matches('[').trim_end_matches(']');
    let base = base.strip_prefix("q_obj_").unwrap_or(base);
    let base = base.strip_suffix("-arg").unwrap_or(base);
    let base = base.strip_suffix("-base").unwrap_or(base);
    let base = base.strip_suffix("-wrapper").unwrap_or(base);
    is_ext(name)
        || NEWER.contains(&name)
        || NEWER
            .iter()
            .any(|n| *n == base || format!("{n}List") == base)
}

/// The members of an introspected object: `(name, type, optional)`.
fn members_of(v: &Value) -> Vec<(String, String, bool)> {
    v.get("members")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|m| {
            (
                m["name"].as_str().unwrap_or("").to_string(),
                m["type"].as_str().unwrap_or("").to_string(),
                m.get("default").is_some(),
            )
        })
        .collect()
}

/// Introspection with real type names, by entity name.
fn introspection(schema: &Schema) -> BTreeMap<String, Value> {
    introspection_with(schema, Default::default())
}

/// [`introspection`] with the configuration symbols `enabled`.
fn introspection_with(
    schema: &Schema,
    enabled: std::collections::HashSet<String>,
) -> BTreeMap<String, Value> {
    let opts = Options {
        unmask: true,
        enabled,
    };
    let mut out = BTreeMap::new();
    for info in introspect(schema, &opts) {
        let json = match serde_json::to_value(&info) {
            Ok(v) => v,
            Err(e) => panic!("introspection of {} is not JSON: {e}", info.name),
        };
        assert!(
            out.insert(info.name.clone(), json).is_none(),
            "{} introspected twice",
            info.name
        );
    }
    out
}

/// The model dump cut into one block per entity, keyed by "kind name"
/// (module and include lines left out: the module layout is ours).
fn dump_blocks(schema: &Schema) -> BTreeMap<String, String> {
    let mut text = String::new();
    dump_entities(schema, &mut text);
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        if line.starts_with(' ') {
            if let Some(k) = &current {
                if let Some(block) = out.get_mut(k) {
                    block.push_str(line);
                    block.push('\n');
                }
            }
            continue;
        }
        if line.starts_with("module ") || line.starts_with("include ") {
            current = None;
            continue;
        }
        let mut words = line.split(' ');
        let key = format!(
            "{} {}",
            words.next().unwrap_or(""),
            words.next().unwrap_or("")
        );
        assert!(!out.contains_key(&key), "{key} dumped twice");
        out.insert(key.clone(), format!("{line}\n"));
        current = Some(key);
    }
    out
}

/// Definitions written in the schema, by kind, leaving out extensions:
/// `[commands, events, structs, unions, alternates, enums]`.
fn counts(schema: &Schema, with_ext: bool) -> [usize; 6] {
    let mut c = [0; 6];
    for e in &schema.entities {
        if e.implicit || e.info.is_none() || (!with_ext && set_aside(&e.name)) {
            continue;
        }
        let i = match &e.kind {
            EntityKind::Command(_) => 0,
            EntityKind::Event(_) => 1,
            EntityKind::Object(o) if o.branches.is_none() => 2,
            EntityKind::Object(_) => 3,
            EntityKind::Alternate(_) => 4,
            EntityKind::Enum(_) => 5,
            _ => continue,
        };
        c[i] += 1;
    }
    c
}

/// The seed's entries that ours renders otherwise (each as `show` words
/// it) and those ours lacks.
fn compare<'a, V: PartialEq>(
    seed: &'a BTreeMap<String, V>,
    ours: &BTreeMap<String, V>,
    show: impl Fn(&str, &V, &V) -> String,
) -> (Vec<String>, Vec<&'a str>) {
    let mut differ = Vec::new();
    let mut missing = Vec::new();
    for (key, want) in seed {
        match ours.get(key) {
            Some(got) if got == want => {}
            Some(got) => differ.push(show(key, want, got)),
            None => missing.push(key.as_str()),
        }
    }
    (differ, missing)
}

#[test]
fn introspection_matches_the_seed_entity_by_entity() {
    let ours_schema = ours();
    let seed_schema = seed();
    let ours = introspection(&ours_schema);
    let seed = introspection(&seed_schema);

    let (differ, missing) = compare(&seed, &ours, |name, want, got| {
        // A grown definition keeps the seed's members in order.
        let mut grown = members_of(got).into_iter();
        if GROWN.contains(&name) && members_of(want).iter().all(|m| grown.any(|g| g == *m)) {
            return String::new();
        }
        format!("{name}:\n  seed: {want}\n  ours: {got}")
    });
    let differ: Vec<String> = differ.into_iter().filter(|d| !d.is_empty()).collect();
    // Entries only we have: extensions, and seed types that nothing in
    // the seed reaches but an extension does (e.g. QapiErrorClass).
    let mut extra = Vec::new();
    for name in ours.keys() {
        if seed.contains_key(name) || set_aside(name) {
            continue;
        }
        let base = name.trim_start_matches('[').trim_end_matches(']');
        if seed_schema.lookup_type(base).is_some() || set_aside(base) {
            continue;
        }
        extra.push(name.as_str());
    }
    assert!(
        differ.is_empty() && missing.is_empty() && extra.is_empty(),
        "introspection differs from the seed\n\
         differing ({}): {}\nmissing ({}): {:?}\nextra ({}): {:?}",
        differ.len(),
        differ.join("\n"),
        missing.len(),
        missing,
        extra.len(),
        extra
    );
    // Sanity: the comparison covered the whole seed.
    assert!(
        seed.len() > 500,
        "seed introspection has {} entries",
        seed.len()
    );
    for cmd in EXT_COMMANDS {
        let got = ours.get(*cmd).and_then(|v| v.get("meta-type"));
        assert_eq!(got, Some(&Value::from("command")), "{cmd} not introspected");
    }
}

#[test]
fn model_matches_the_seed_entity_by_entity() {
    let ours_schema = ours();
    let seed_schema = seed();
    let ours = dump_blocks(&ours_schema);
    let seed = dump_blocks(&seed_schema);

    let (differ, missing) = compare(&seed, &ours, |key, want, got| {
        // Grown definitions are compared member by member through introspection.
        if GROWN.iter().any(|g| key.split(' ').nth(1) == Some(*g)) {
            return String::new();
        }
        format!("{key}:\n--- seed\n{want}--- ours\n{got}")
    });
    let differ: Vec<String> = differ.into_iter().filter(|d| !d.is_empty()).collect();
    // An array of a seed type that only a newer definition uses (`[BlockdevOptions]` of
    // blockdev-reopen) is no definition of its own.
    let newer_array = |k: &str| {
        k.strip_prefix("array ")
            .and_then(|a| a.strip_suffix("List"))
            .is_some_and(|e| seed_schema.lookup_type(e).is_some())
    };
    let extra: Vec<&str> = ours
        .keys()
        .filter(|k| {
            !seed.contains_key(*k)
                && !set_aside(k.split(' ').nth(1).unwrap_or(k))
                && !newer_array(k)
        })
        .map(String::as_str)
        .collect();
    assert!(
        differ.is_empty() && missing.is_empty() && extra.is_empty(),
        "model differs from the seed\ndiffering ({}):\n{}\nmissing ({}): {:?}\nextra ({}): {:?}",
        differ.len(),
        differ.join("\n"),
        missing.len(),
        missing,
        extra.len(),
        extra
    );
}

#[test]
fn counts_match_the_seed() {
    let ours_schema = ours();
    let ext_commands = ours_schema
        .entities
        .iter()
        .filter(|e| set_aside(&e.name) && matches!(e.kind, EntityKind::Command(_)))
        .count();
    assert!(ext_commands >= EXT_COMMANDS.len() + 1);
    // Without the extensions: QEMU 2.12's figures.
    assert_eq!(counts(&ours_schema, false), [156, 37, 201, 22, 4, 79]);
    let all = SchemaStats::of(&ours_schema);
    assert_eq!(all.commands, 156 + ext_commands);
    assert_eq!(
        [
            all.commands,
            all.events,
            all.structs,
            all.unions,
            all.alternates,
            all.enums
        ],
        counts(&ours_schema, true)
    );
    let seed_schema = seed();
    let s = SchemaStats::of(&seed_schema);
    assert_eq!(
        [
            s.commands,
            s.events,
            s.structs,
            s.unions,
            s.alternates,
            s.enums
        ],
        counts(&ours_schema, false)
    );
}

/// QEMU 10.0.2's schema, the one the newer definitions come from.
fn qemu_10() -> Schema {
    let path = qmpkit_testkit::data::dir().join("qemu-ref/schema-10.0.2/qapi/qapi-schema.json");
    qmpkit_schema::load(&path, Dialect::Modern)
        .unwrap_or_else(|e| panic!("QEMU 10.0.2's schema does not load:\n{e}"))
}

/// Whether member `m` `(name, type, optional)` is one of `theirs`: the same name and type,
/// and optional wherever QEMU's is (ours may be optional where QEMU's is mandatory: the
/// machine answers it only where the version it claims has it).
fn member_of(m: &(String, String, bool), theirs: &[(String, String, bool)]) -> bool {
    theirs
        .iter()
        .any(|t| t.0 == m.0 && t.1 == m.1 && (m.2 || !t.2))
}

/// Definitions of [`NEWER`] in an earlier release's form than QEMU 10.0.2's, and why.
const EARLIER_FORMS: &[(&str, &str)] = &[(
    "CpuInfoFast",
    "QEMU 2.12's form: the `arch` member (removed in 6.0) where 10.0 has a union on `target`",
)];

/// Definitions of [`GROWN`] that QEMU 10.0.2 has under another name: `(ours, QEMU's)`.
const RENAMED: &[(&str, &str)] = &[("DevicePropertyInfo", "ObjectPropertyInfo")];

/// Where an introspected definition of ours is not a part of QEMU's of the same name: each
/// enum value, object member (name, type, optional), branch and alternative of ours is
/// QEMU's, and a command's or event's types are QEMU's (compared in turn, `todo`).
fn not_a_part(name: &str, mine: &Value, qemu: &Value, todo: &mut Vec<String>) -> Vec<String> {
    let mut out = Vec::new();
    let field = |v: &Value, k: &str| v.get(k).cloned().unwrap_or(Value::Null);
    if field(mine, "meta-type") != field(qemu, "meta-type") {
        return vec![format!(
            "{name}: {mine} is not of the kind of QEMU's {qemu}"
        )];
    }
    let list = |v: &Value, k: &str| -> Vec<Value> {
        v.get(k)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    match mine["meta-type"].as_str() {
        Some("enum") => {
            for v in list(mine, "values") {
                if !list(qemu, "values").contains(&v) {
                    out.push(format!("{name}: value {v} is not QEMU's"));
                }
            }
        }
        Some("object") => {
            let qemu_members = members_of(qemu);
            for m in members_of(mine) {
                if !member_of(&m, &qemu_members) {
                    out.push(format!("{name}: member {m:?} is not QEMU's"));
                }
            }
            if field(mine, "tag") != field(qemu, "tag") {
                out.push(format!("{name}: tag {} is not QEMU's", field(mine, "tag")));
            }
            for v in list(mine, "variants") {
                // A branch without members is no branch (introspection lists every value).
                if v["type"] != "q_empty" && !list(qemu, "variants").contains(&v) {
                    out.push(format!("{name}: branch {v} is not QEMU's"));
                }
            }
        }
        Some("alternate") => {
            for v in list(mine, "members") {
                if !list(qemu, "members").contains(&v) {
                    out.push(format!("{name}: alternative {v} is not QEMU's"));
                }
            }
        }
        Some("command") | Some("event") => {
            for k in ["arg-type", "ret-type"] {
                if field(mine, k) != field(qemu, k) {
                    out.push(format!("{name}: {k} {} is not QEMU's", field(mine, k)));
                } else if let Some(t) = mine[k].as_str() {
                    todo.push(t.to_string());
                }
            }
        }
        _ => {}
    }
    out
}

/// Every definition of [`NEWER`] is QEMU's: QEMU 10.0.2's schema has it, of the same kind and
/// the same shape, or a part of it (enum values, members and branches the machine does not
/// model left out, so that requests with them are refused). Every member a definition of
/// [`GROWN`] has beyond the seed is QEMU 10.0.2's member of the same definition (of the
/// command's argument type for a command's implicit arguments), or, optional in ours, a member
/// of one of its branches where QEMU made the definition a union.
#[test]
fn newer_definitions_are_qemus() {
    let ours_schema = ours();
    let qemu = qemu_10();
    let kind = |s: &Schema, name: &str| {
        s.lookup(name)
            .map(|id| std::mem::discriminant(&s.entity(id).kind))
    };
    for (name, _) in EARLIER_FORMS {
        assert!(NEWER.contains(name), "{name} is not one of NEWER");
    }
    for name in NEWER {
        let mine = kind(&ours_schema, name);
        assert!(mine.is_some(), "{name} is not in the machine's schema");
        assert_eq!(mine, kind(&qemu, name), "{name}: not of QEMU 10.0.2's kind");
    }
    let mine = introspection(&ours_schema);
    // QEMU's x86_64 build: the target's definitions (SEV, SGX, CPU models) are in it.
    let cfg = std::fs::read_to_string(
        qmpkit_testkit::data::dir()
            .join("qemu-ref/introspection/cfg-qemu-system-x86_64-10.0.2.txt"),
    )
    .expect("QEMU 10.0.2's x86_64 configuration symbols");
    let theirs = introspection_with(
        &qemu,
        qmpkit_schema::introspect::parse_cfg_file(&cfg)
            .into_iter()
            .collect(),
    );
    let mut failures = Vec::new();
    let mut todo: Vec<String> = NEWER
        .iter()
        .filter(|n| !EARLIER_FORMS.iter().any(|(e, _)| e == *n))
        .map(|n| n.to_string())
        .collect();
    let mut done: BTreeSet<String> = EARLIER_FORMS.iter().map(|(n, _)| n.to_string()).collect();
    while let Some(name) = todo.pop() {
        let name = name
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        if !done.insert(name.clone()) {
            continue;
        }
        match (mine.get(&name), theirs.get(&name)) {
            (Some(m), Some(q)) => failures.extend(not_a_part(&name, m, q, &mut todo)),
            // Not introspected: a type nothing of ours reaches.
            (None, _) => {}
            (Some(m), None) => failures.push(format!("{name}: not in QEMU 10.0.2: {m}")),
        }
    }
    assert!(done.len() >= NEWER.len(), "{} compared", done.len());
    let seed = introspection(&seed());
    for name in GROWN {
        let (Some(m), Some(s)) = (mine.get(*name), seed.get(*name)) else {
            continue; // an implicit base: its members are its union's
        };
        // A command's implicit arguments: QEMU's command's argument type, whatever its name.
        let renamed = RENAMED.iter().find(|(o, _)| o == name).map(|(_, q)| *q);
        let qemu_name = name
            .strip_prefix("q_obj_")
            .and_then(|n| n.strip_suffix("-arg"))
            .and_then(|cmd| theirs.get(cmd))
            .and_then(|c| c["arg-type"].as_str())
            .or(renamed)
            .unwrap_or(name);
        let Some(q) = theirs.get(qemu_name) else {
            failures.push(format!("{name}: not in QEMU 10.0.2"));
            continue;
        };
        let seed_members = members_of(s);
        let qemu_members = members_of(q);
        // Where QEMU made the definition a union, a member of one of its branches may be an
        // optional member of ours (present when the discriminator names that branch).
        let branch_members: Vec<_> = q
            .get("variants")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|v| v["type"].as_str().and_then(|t| theirs.get(t)))
            .flat_map(members_of)
            .map(|(n, t, _)| (n, t, true))
            .collect();
        for mem in members_of(m) {
            if !seed_members.contains(&mem)
                && !member_of(&mem, &qemu_members)
                && !(mem.2 && branch_members.contains(&mem))
            {
                failures.push(format!("{name}: grown member {mem:?} is not QEMU 10.0.2's"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Definitions (not implicit types) of a schema with their doc body.
fn doc_bodies(schema: &Schema) -> Vec<(String, Option<String>)> {
    schema
        .entities
        .iter()
        .filter(|e| {
            !e.implicit
                && e.info.is_some()
                && !matches!(
                    e.kind,
                    EntityKind::Include(_) | EntityKind::Builtin(_) | EntityKind::Array(_)
                )
        })
        .map(|e| {
            let body = e
                .doc
                .and_then(|i| schema.docs.get(i))
                .map(|d| d.body.text.split_whitespace().collect::<Vec<_>>().join(" "));
            (e.name.to_string(), body)
        })
        .collect()
}

#[test]
fn every_definition_has_a_doc_comment() {
    let schema = ours();
    let bodies = doc_bodies(&schema);
    assert!(bodies.len() >= 499 + EXT_COMMANDS.len());
    let undocumented: Vec<&str> = bodies
        .iter()
        .filter(|(_, b)| b.as_deref().is_none_or(str::is_empty))
        .map(|(n, _)| n.as_str())
        .collect();
    assert!(
        undocumented.is_empty(),
        "definitions without a doc comment: {undocumented:?}"
    );
    for (name, body) in &bodies {
        let body = body.as_deref().unwrap_or("");
        assert!(
            body.len() <= 400,
            "{name}: doc comment longer than a short description ({} bytes)",
            body.len()
        );
    }
}

#[test]
fn doc_comments_are_our_own() {
    let ours_schema = ours();
    let seed_schema = seed();
    let seed: BTreeMap<String, Option<String>> = doc_bodies(&seed_schema).into_iter().collect();
    let ours_bodies = doc_bodies(&ours_schema);
    let same: BTreeSet<&str> = ours_bodies
        .iter()
        .filter(|(n, b)| {
            let b = b.as_deref().unwrap_or("").to_lowercase();
            !b.is_empty()
                && seed
                    .get(n)
                    .and_then(|s| s.as_deref())
                    .is_some_and(|s| s.to_lowercase() == b)
        })
        .map(|(n, _)| n.as_str())
        .collect();
    assert!(
        same.is_empty(),
        "doc comments identical to the seed's: {same:?}"
    );
}
