//! Python's qemu.qmp and qmp-shell drive our server: negotiation, commands, an error, an event.
//! Skipped (with `skipped: …`) when no Python with qemu.qmp is found: `$QMPKIT_PYTHON`, the
//! repository's `.ci/venv`, or a `python3` that imports qemu.qmp.

mod common;

use std::path::Path;
use std::process::Command;

use qmpkit_server::ServerOptions;
use qmpkit_testkit::python::{output_of, qmp_shell_replies, run_qmp_shell};
use qmpkit_testkit::python_or_skip;
use serde_json::{json, Value};

fn server() -> common::Running {
    common::start(
        common::mini_schema(),
        common::mini_registry(),
        ServerOptions {
            qemu_version: (10, 0, 2),
            package: "qmpkit".into(),
            ..ServerOptions::default()
        },
    )
}

#[test]
fn qemu_qmp_drives_our_server() {
    let py = python_or_skip!();
    let r = server();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../client/tests/py/qmp_run.py");
    let requests = [
        json!({"execute": "query-version"}),
        json!({"execute": "stop"}),
        json!({"execute": "getfd", "arguments": {"fdname": "x"}}),
        json!({"execute": "echo", "arguments": {"value": {"b": [1, 2], "a": "x"}}}),
        json!({"execute": "no-such-command"}),
    ];
    let stdin: String = requests.iter().map(|r| format!("{r}\n")).collect();
    let mut cmd = Command::new(&py);
    cmd.arg(&script).arg(&r.socket);
    let lines: Vec<Value> = output_of(cmd, stdin.as_bytes())
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert_eq!(lines.len(), 7, "{lines:?}");
    assert_eq!(lines[0]["greeting"]["QMP"]["capabilities"], json!(["oob"]));
    assert_eq!(
        lines[1],
        json!({"return": {"qemu": {"major": 10, "minor": 0, "micro": 2}, "package": "qmpkit"}})
    );
    assert_eq!(lines[2], json!({"return": {}}));
    assert_eq!(
        lines[3],
        json!({"error": {"class": "GenericError", "desc": "No file descriptor supplied via SCM_RIGHTS"}})
    );
    assert_eq!(lines[4], json!({"return": {"b": [1, 2], "a": "x"}}));
    assert_eq!(
        lines[5],
        json!({"error": {"class": "CommandNotFound", "desc": "The command no-such-command has not been found"}})
    );
    assert_eq!(lines[6], json!({"events": ["STOP"]}));
}

#[test]
fn qmp_shell_runs_non_interactively() {
    let py = python_or_skip!();
    let r = server();
    let stdout = run_qmp_shell(
        &py,
        &r.socket,
        b"query-version\necho value=7\nslow ms=x\nnope\n",
    );
    assert!(stdout.contains("Connected to QEMU 10.0.2"), "{stdout}");
    let replies = qmp_shell_replies(&stdout);
    assert_eq!(replies.len(), 4, "{stdout}");
    assert_eq!(replies[0]["return"]["qemu"]["major"], json!(10));
    assert_eq!(replies[1], json!({"return": 7}));
    assert_eq!(
        replies[2],
        json!({"error": {"class": "GenericError", "desc": "Invalid parameter type for 'ms', expected: integer"}})
    );
    assert_eq!(
        replies[3],
        json!({"error": {"class": "CommandNotFound", "desc": "The command nope has not been found"}})
    );
}
