//! Every reply and event of the recorded transcripts, every saved `query-qmp-schema` and
//! `query-commands` answer, and every example of the seeds' example files decodes (strictly)
//! into the generated types of its schema and encodes back to the same JSON.
//!
//! The bindings are generated at build time (`build.rs`); `COMMANDS` maps a command name to
//! the round trip of its arguments and of its reply. Strict decoding fails on anything the
//! types did not keep, with the JSON path of the first difference.

use qmpkit_codegen_tests as b;
use qmpkit_qapi::{first_difference, EventEnum};
use qmpkit_testkit::data;
use qmpkit_testkit::transcript::unrepr;
use serde_json::Value;

type Table = &'static [(&'static str, b::RoundTrip, b::RoundTrip)];
type Events = fn(&str, Option<&Value>) -> Result<(), String>;

fn events<E: EventEnum>(name: &str, data: Option<&Value>) -> Result<(), String> {
    let e = E::from_parts(name, data).map_err(|e| e.to_string())?;
    if E::NAMES.iter().all(|n| *n != name) {
        return Err(format!("event {name} is not in the schema"));
    }
    let back = e.data();
    match (data, back) {
        (None, None) => Ok(()),
        (Some(d), Some(b)) => match first_difference(d, &b) {
            None => Ok(()),
            Some((p, m)) => Err(format!("at {p}: {m}")),
        },
        (Some(d), None) if d.as_object().is_some_and(|o| o.is_empty()) => Ok(()),
        (d, b) => Err(format!("data {d:?} came back as {b:?}")),
    }
}

/// Round trip of a reply or arguments: decoded strictly, encoded to the same JSON.
fn check(f: b::RoundTrip, v: &Value) -> Result<(), String> {
    let back = f(v).map_err(|e| e.to_string())?;
    match first_difference(v, &back) {
        None => Ok(()),
        Some((p, m)) => Err(format!("at {p}: {m}")),
    }
}

fn reply(table: Table, command: &str, v: &Value) -> Result<(), String> {
    match b::find(table, command) {
        Some((_, r)) => check(r, v),
        None => Err(format!("command {command} is not in the schema")),
    }
}

/// What a transcript's round trips came to.
#[derive(Default, Debug)]
struct Tally {
    replies: usize,
    events: usize,
    failures: Vec<String>,
}

fn transcript(file: &str, table: Table, ev: Events) -> Tally {
    let text = data::read(&format!("qemu-ref/transcripts/{file}"));
    let mut t = Tally::default();
    // Requests in flight: (id, command).
    let mut pending: Vec<(Option<Value>, String)> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let n = n + 1;
        if let Some(rest) = line.strip_prefix(">>> ") {
            let Some((bytes, _)) = unrepr(rest) else {
                continue;
            };
            for l in String::from_utf8_lossy(&bytes).lines() {
                let Ok(Value::Object(m)) = serde_json::from_str::<Value>(l) else {
                    continue;
                };
                let name = m.get("execute").or_else(|| m.get("exec-oob"));
                if let Some(Value::String(name)) = name {
                    pending.push((m.get("id").cloned(), name.clone()));
                }
            }
        } else if let Some(rest) = line.strip_prefix("<<< ") {
            // Long replies are saved to files (checked below), not in the transcript: that
            // reply answers the oldest request.
            let Some((bytes, _)) = unrepr(rest) else {
                if rest.starts_with('[') && !pending.is_empty() {
                    pending.remove(0);
                }
                continue;
            };
            for l in String::from_utf8_lossy(&bytes).lines() {
                let Ok(Value::Object(m)) = serde_json::from_str::<Value>(l) else {
                    continue;
                };
                if let Some(Value::String(name)) = m.get("event") {
                    t.events += 1;
                    if let Err(e) = ev(name, m.get("data")) {
                        t.failures.push(format!("{file}:{n}: event {name}: {e}"));
                    }
                    continue;
                }
                if m.contains_key("QMP") {
                    continue;
                }
                let id = m.get("id").cloned();
                let pos = pending.iter().position(|(i, _)| *i == id);
                let Some(pos) = pos else { continue };
                let (_, command) = pending.remove(pos);
                if let Some(ret) = m.get("return") {
                    t.replies += 1;
                    if let Err(e) = reply(table, &command, ret) {
                        t.failures.push(format!("{file}:{n}: {command}: {e}"));
                    }
                }
            }
        }
    }
    t
}

fn saved_answers(prefix: &str, table: Table) -> Vec<String> {
    let mut failures = Vec::new();
    for (command, suffix) in [
        ("query-qmp-schema", "query-qmp-schema.json"),
        ("query-commands", "query-commands.json"),
    ] {
        let rel = format!("qemu-ref/introspection/{prefix}-{suffix}");
        let v: Value = serde_json::from_str(&data::read(&rel)).expect("saved answer is JSON");
        let v = v.get("return").cloned().unwrap_or(v);
        assert!(v.as_array().is_some_and(|a| a.len() > 10), "{rel}");
        if let Err(e) = reply(table, command, &v) {
            failures.push(format!("{rel}: {e}"));
        }
    }
    failures
}

#[test]
fn transcripts_and_saved_answers_round_trip() {
    let cases: [(&str, &str, Table, Events); 4] = [
        (
            "qemu-storage-daemon-7.2.22.txt",
            "qemu-storage-daemon-7.2.22",
            b::qsd_7_2_22::COMMANDS,
            events::<b::qsd_7_2_22::AnyEvent>,
        ),
        (
            "qemu-storage-daemon-10.0.2.txt",
            "qemu-storage-daemon-10.0.2",
            b::qsd_10_0_2::COMMANDS,
            events::<b::qsd_10_0_2::AnyEvent>,
        ),
        (
            "qemu-system-x86_64-7.2.22.txt",
            "qemu-system-x86_64-7.2.22",
            b::system_7_2_22::COMMANDS,
            events::<b::system_7_2_22::AnyEvent>,
        ),
        (
            "qemu-system-x86_64-10.0.2.txt",
            "",
            b::system_10_0_2::COMMANDS,
            events::<b::system_10_0_2::AnyEvent>,
        ),
    ];
    let mut failures = Vec::new();
    for (file, answers, table, ev) in cases {
        let t = transcript(file, table, ev);
        eprintln!("{file}: {} replies, {} events", t.replies, t.events);
        assert!(t.replies >= 5, "{file}: only {} replies checked", t.replies);
        failures.extend(t.failures);
        if !answers.is_empty() {
            failures.extend(saved_answers(answers, table));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Examples of the seeds that are not valid against their own schema, and why. Anything else
/// must round-trip.
const INVALID_EXAMPLES: &[(&str, &str)] = &[
    (
        "examples-schema-2.12-dev.jsonl:qapi-schema.json:603",
        "leaves out `poll-max-ns` (at [0]), which the schema requires",
    ),
    (
        "examples-schema-2.12-dev.jsonl:qapi-schema.json:647",
        "the example is not JSON (elisions, comments or a missing comma)",
    ),
    (
        "examples-schema-2.12-dev.jsonl:qapi-schema.json:1644",
        "leaves out `paging` (at .), which the schema requires",
    ),
    (
        "examples-schema-2.12-dev.jsonl:qapi-schema.json:1754",
        "the example is not JSON (elisions, comments or a missing comma)",
    ),
    (
        "examples-schema-2.12-dev.jsonl:qapi-schema.json:2859",
        "the example is not JSON (elisions, comments or a missing comma)",
    ),
    (
        "examples-schema-2.12-dev.jsonl:qapi-schema.json:2934",
        "leaves out `info` (at .), which the schema requires",
    ),
    (
        "examples-schema-2.12-dev.jsonl:qapi-schema.json:3122",
        "the example is not JSON (elisions, comments or a missing comma)",
    ),
    (
        "examples-schema-2.12-dev.jsonl:qapi/block-core.json:531",
        "leaves out `encryption_key_missing` (at [0].inserted), which the schema requires",
    ),
    (
        "examples-schema-2.12-dev.jsonl:qapi/block-core.json:794",
        "the example is not JSON (elisions, comments or a missing comma)",
    ),
    (
        "examples-schema-2.12-dev.jsonl:qapi/block-core.json:1426",
        "leaves out `encryption_key_missing` (at [0]), which the schema requires",
    ),
    (
        "examples-schema-2.12-dev.jsonl:qapi/block-core.json:3625",
        "leaves out `fatal` (at .), which the schema requires",
    ),
    (
        "examples-schema-2.12-dev.jsonl:qapi/block-core.json:3674",
        "leaves out `reason` (at .), which the schema requires",
    ),
    (
        "examples-schema-2.12-dev.jsonl:qapi/block-core.json:3815",
        "the example is not JSON (elisions, comments or a missing comma)",
    ),
    (
        "examples-schema-2.12-dev.jsonl:qapi/rocker.json:246",
        "the example is not JSON (elisions, comments or a missing comma)",
    ),
    (
        "examples-schema-2.12-dev.jsonl:qapi/ui.json:220",
        "the example is not JSON (elisions, comments or a missing comma)",
    ),
    (
        "examples-schema-2.12-dev.jsonl:qapi/ui.json:533",
        "leaves out `websocket` (at .clients[0]), which the schema requires",
    ),
    (
        "examples-schema-2.12-dev.jsonl:qapi/ui.json:594",
        "leaves out `websocket` (at .server), which the schema requires",
    ),
    (
        "examples-schema-2.12-dev.jsonl:qapi/ui.json:621",
        "leaves out `websocket` (at .server), which the schema requires",
    ),
    (
        "examples-schema-2.12-dev.jsonl:qapi/ui.json:647",
        "leaves out `websocket` (at .server), which the schema requires",
    ),
    (
        "examples-schema-2.12-dev.jsonl:qapi/migration.json:193",
        "leaves out `skipped` (at .ram), which the schema requires",
    ),
    (
        "examples-schema-2.12-dev.jsonl:qapi/migration.json:218",
        "leaves out `skipped` (at .ram), which the schema requires",
    ),
    (
        "examples-schema-2.12-dev.jsonl:qapi/migration.json:239",
        "leaves out `skipped` (at .ram), which the schema requires",
    ),
    (
        "examples-schema-2.12-dev.jsonl:qapi/migration.json:265",
        "leaves out `skipped` (at .ram), which the schema requires",
    ),
    (
        "examples-schema-2.12-dev.jsonl:qapi/trace.json:68",
        "leaves out `vcpu` (at [0]), which the schema requires",
    ),
    (
        "examples-schema-2.12-dev.jsonl:qapi/trace.json:100",
        "`enable` written as the string \"true\" where the schema says bool",
    ),
    (
        "examples-qmp-commands-2.1-dev.jsonl:383",
        "written for QEMU 2.1: the `cpu` command is gone from the 2.12 schema",
    ),
    (
        "examples-qmp-commands-2.1-dev.jsonl:822",
        "written for QEMU 2.1: leaves out `paging` (at .), which the 2.12 schema requires",
    ),
    (
        "examples-qmp-commands-2.1-dev.jsonl:845",
        "the example is not JSON (elisions, comments or a missing comma)",
    ),
    (
        "examples-qmp-commands-2.1-dev.jsonl:1927",
        "written for QEMU 2.1: leaves out `frontend-open` (at [0]), which the 2.12 schema requires",
    ),
    (
        "examples-qmp-commands-2.1-dev.jsonl:2086",
        "the example is not JSON (elisions, comments or a missing comma)",
    ),
    (
        "examples-qmp-commands-2.1-dev.jsonl:2201",
        "the example is not JSON (elisions, comments or a missing comma)",
    ),
    (
        "examples-qmp-commands-2.1-dev.jsonl:2304",
        "the example is not JSON (elisions, comments or a missing comma)",
    ),
    (
        "examples-qmp-commands-2.1-dev.jsonl:2349",
        "written for QEMU 2.1: leaves out `poll-max-ns` (at [0]), which the 2.12 schema requires",
    ),
    (
        "examples-qmp-commands-2.1-dev.jsonl:2733",
        "written for QEMU 2.1: leaves out `websocket` (at .clients[0]), which the 2.12 schema requires",
    ),
    (
        "examples-qmp-commands-2.1-dev.jsonl:2795",
        "the example is not JSON (elisions, comments or a missing comma)",
    ),
    (
        "examples-qmp-commands-2.1-dev.jsonl:3002",
        "written for QEMU 2.1: leaves out `skipped` (at .ram), which the 2.12 schema requires",
    ),
    (
        "examples-qmp-commands-2.1-dev.jsonl:3027",
        "written for QEMU 2.1: leaves out `skipped` (at .ram), which the 2.12 schema requires",
    ),
    (
        "examples-qmp-commands-2.1-dev.jsonl:3048",
        "written for QEMU 2.1: leaves out `skipped` (at .ram), which the 2.12 schema requires",
    ),
    (
        "examples-qmp-commands-2.1-dev.jsonl:3074",
        "written for QEMU 2.1: leaves out `skipped` (at .ram), which the 2.12 schema requires",
    ),
    (
        "examples-qmp-commands-2.1-dev.jsonl:3170",
        "the example is not JSON (elisions, comments or a missing comma)",
    ),
    (
        "examples-qmp-commands-2.1-dev.jsonl:3480",
        "written for QEMU 2.1: blockdev-add's arguments under `options`, flattened by 2.12",
    ),
    (
        "examples-qmp-commands-2.1-dev.jsonl:3488",
        "written for QEMU 2.1: blockdev-add's arguments under `options`, flattened by 2.12",
    ),
    (
        "examples-qmp-commands-2.1-dev.jsonl:3531",
        "the example is not JSON (elisions, comments or a missing comma)",
    ),
];

#[test]
fn seed_examples_round_trip() {
    let table = b::seed_2_12::COMMANDS;
    let ev: Events = events::<b::seed_2_12::AnyEvent>;
    let mut failures: Vec<String> = Vec::new();
    let mut checked = 0;
    for file in [
        "examples-schema-2.12-dev.jsonl",
        "examples-qmp-commands-2.1-dev.jsonl",
    ] {
        let text = data::read(&format!("seeds/{file}"));
        for line in text.lines() {
            let x: Value = serde_json::from_str(line).expect("example line is JSON");
            // Where the example is written: the document (and its schema file) and line.
            let at = format!(
                "{file}:{}{}",
                x.get("file")
                    .and_then(Value::as_str)
                    .map(|f| format!("{f}:"))
                    .unwrap_or_default(),
                x.get("line").and_then(Value::as_u64).unwrap_or(0)
            );
            let command = x.get("command").and_then(Value::as_str);
            let mut fail = |what: &str, e: String| failures.push(format!("{at} {what}: {e}"));
            if let (Some(c), Some(req)) = (command, x.get("request").filter(|r| r.is_object())) {
                checked += 1;
                match b::find(table, c) {
                    None => fail(c, "command is not in the schema".into()),
                    Some((args, ret)) => {
                        // No arguments and `{}` are the same request.
                        let a = req
                            .get("arguments")
                            .cloned()
                            .unwrap_or_else(|| Value::Object(Default::default()));
                        if let Err(e) = check(args, &a) {
                            fail(&format!("{c} arguments"), e);
                        }
                        for r in x["responses"].as_array().into_iter().flatten() {
                            match r {
                                Value::Object(m) => {
                                    if let Some(v) = m.get("return") {
                                        if let Err(e) = check(ret, v) {
                                            fail(&format!("{c} reply"), e);
                                        }
                                    }
                                }
                                _ => fail(&format!("{c} reply"), "not valid JSON".into()),
                            }
                        }
                    }
                }
            }
            for e in x["events"].as_array().into_iter().flatten() {
                checked += 1;
                match e {
                    Value::Object(m) => {
                        let name = m.get("event").and_then(Value::as_str).unwrap_or("");
                        if let Err(err) = ev(name, m.get("data")) {
                            fail(&format!("event {name}"), err);
                        }
                    }
                    _ => fail("event", "not valid JSON".into()),
                }
            }
        }
    }
    assert!(checked > 200, "only {checked} examples checked");
    let mut unexpected = Vec::new();
    for f in &failures {
        if !INVALID_EXAMPLES
            .iter()
            .any(|(at, _)| f.starts_with(&format!("{at} ")))
        {
            unexpected.push(f.clone());
        }
    }
    let stale: Vec<&str> = INVALID_EXAMPLES
        .iter()
        .filter(|(at, _)| !failures.iter().any(|f| f.starts_with(&format!("{at} "))))
        .map(|(at, _)| *at)
        .collect();
    assert!(
        unexpected.is_empty() && stale.is_empty(),
        "unexpected failures:\n{}\nlisted as invalid but fine: {stale:?}",
        unexpected.join("\n")
    );
}
