//! The Python interop harness (Python's qemu.qmp and qmp-shell) proven against the real
//! qemu-storage-daemon. The same helpers drive any QMP socket (e.g. the project's server).

mod common;

use qmpkit_testkit::python::{qmp_shell_replies, run_qmp_shell};
use serde_json::{json, Value};

macro_rules! python_or_skip {
    () => {
        match common::python() {
            Ok(p) => p,
            Err(reason) => {
                qmpkit_testkit::skip::skip(&format!("{reason}"));
                return;
            }
        }
    };
}

#[test]
fn qemu_qmp_drives_qsd() {
    let py = python_or_skip!();
    let q = qsd_or_skip!();
    let requests = [
        json!({"execute": "query-version"}),
        json!({"execute": "blockdev-del", "arguments": {"node-name": "nope"}}),
        json!({"execute": "blockdev-add", "arguments": {"driver": "null-co", "node-name": "s", "size": 65536}}),
        json!({"execute": "blockdev-add", "arguments": {"driver": "null-co", "node-name": "d", "size": 65536}}),
        json!({"execute": "blockdev-backup", "arguments": {"job-id": "j", "device": "s", "target": "d", "sync": "full"}}),
        json!({"execute": "query-version"}),
    ];
    let stdin: String = requests.iter().map(|r| format!("{r}\n")).collect();
    let out = common::run_python(&py, &q.socket, &[], &stdin).expect("qmp_run.py");
    assert_eq!(out.len(), 8, "{out:?}");
    let caps = &out[0]["greeting"]["QMP"]["capabilities"];
    assert_eq!(caps, &json!(["oob"]));
    let version = &out[1]["return"];
    assert_eq!(version["qemu"]["major"], json!(10));
    assert_eq!(
        out[2],
        json!({"error": {"class": "GenericError", "desc": "Failed to find node with node-name='nope'"}})
    );
    for o in &out[3..6] {
        assert_eq!(o, &json!({"return": {}}));
    }
    assert_eq!(&out[6]["return"], version);
    let events: Vec<&str> = out[7]["events"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    assert!(events.contains(&"JOB_STATUS_CHANGE"), "{events:?}");
    assert!(events.contains(&"BLOCK_JOB_COMPLETED"), "{events:?}");
}

#[test]
fn qemu_qmp_sequential_rate_against_qsd() {
    let py = python_or_skip!();
    let q = qsd_or_skip!();
    let out = common::run_python(&py, &q.socket, &["--bench-seq", "0.2"], "").expect("qmp_run.py");
    let rate = out[1]["seq_per_sec"].as_f64().unwrap_or(0.0);
    assert!(rate > 10.0, "{out:?}");
    println!("qemu.qmp sequential query-version against qsd: {rate:.0}/s");
}

#[test]
fn qmp_shell_runs_non_interactively() {
    let py = python_or_skip!();
    let q = qsd_or_skip!();
    let stdout = run_qmp_shell(
        &py,
        &q.socket,
        b"query-version\nblockdev-add driver=null-co node-name=n0 size=1024\nblockdev-del node-name=nope\n",
    );
    assert!(stdout.contains("Connected to QEMU 10.0.2"), "{stdout}");
    // Each reply follows a `(QEMU) ` prompt, as JSON.
    let replies = qmp_shell_replies(&stdout);
    assert_eq!(replies.len(), 3, "{stdout}");
    assert_eq!(replies[0]["return"]["qemu"]["major"], json!(10));
    assert_eq!(replies[1], json!({"return": {}}));
    assert_eq!(
        replies[2],
        json!({"error": {"class": "GenericError", "desc": "Failed to find node with node-name='nope'"}})
    );
}
