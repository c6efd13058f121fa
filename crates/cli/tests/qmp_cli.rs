//! `qmpkit qmp` against a live qemu-storage-daemon and against `qmpkit serve`; completion
//! scripts and man pages.

#[path = "tools_support/mod.rs"]
mod support;

use serde_json::{json, Value};
use support::*;

#[test]
fn one_command_errors_events_and_stdin_against_qemu_storage_daemon() {
    let program = qmpkit_testkit::program_or_skip!("qemu-storage-daemon");
    let dir = TempDir::new("qmp-qsd");
    let sock = dir.join("qsd.sock");
    let _qsd = qsd(&program, &sock);
    let s = sock.to_str().expect("path");

    let o = run(&["qmp", s, "query-version"], "");
    assert_eq!(o.code, 0, "{o:?}");
    let v: Value = serde_json::from_str(o.stdout.trim()).expect("JSON");
    assert_eq!(v["qemu"]["major"], 10, "{v}");
    assert_eq!(o.stdout.lines().count(), 1);

    // A command error: QEMU's class and text on stderr, status 1, nothing on stdout.
    let o = run(&["qmp", s, "blockdev-del", "node-name=nope"], "");
    assert_eq!(o.code, 1, "{o:?}");
    assert_eq!(o.stdout, "");
    assert_eq!(
        o.stderr.trim(),
        "GenericError: Failed to find node with node-name='nope'"
    );
    let o = run(&["qmp", s, "no-such-command"], "");
    assert_eq!(o.code, 1);
    assert_eq!(
        o.stderr.trim(),
        "CommandNotFound: The command no-such-command has not been found"
    );
    // An argument of the wrong type, in QEMU's words.
    let o = run(&["qmp", s, "query-named-block-nodes", "flat=[1]"], "");
    assert_eq!(o.code, 1);
    assert_eq!(
        o.stderr.trim(),
        "GenericError: Invalid parameter type for 'flat', expected: boolean"
    );

    // Nested arguments (a.b=value) and numbers.
    for node in ["src", "dst"] {
        let o = run(
            &[
                "qmp",
                s,
                "blockdev-add",
                "driver=null-co",
                &format!("node-name={node}"),
                "size=1048576",
            ],
            "",
        );
        assert_eq!((o.code, o.stdout.as_str()), (0, "{}\n"), "{o:?}");
    }
    let o = run(
        &["qmp", s, "--pretty", "query-named-block-nodes", "flat=true"],
        "",
    );
    let nodes: Value = serde_json::from_str(&o.stdout).expect("JSON");
    assert!(o.stdout.contains("\n  {\n"), "pretty output: {}", o.stdout);
    let mut names: Vec<&str> = nodes
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|n| n["node-name"].as_str())
        .collect();
    names.sort();
    assert_eq!(names, ["dst", "src"]);
    assert_eq!(nodes[0]["image"]["virtual-size"], 1048576);

    // --wait-event with --match: the job's last status change, printed as QEMU sent it.
    let o = run(
        &[
            "qmp",
            s,
            "--wait-event",
            "JOB_STATUS_CHANGE",
            "--match",
            "status=concluded",
            "--timeout",
            "20",
            "blockdev-backup",
            "job-id=j0",
            "device=src",
            "target=dst",
            "sync=full",
        ],
        "",
    );
    assert_eq!(o.code, 0, "{o:?}");
    let lines = json_lines(&o.stdout);
    assert_eq!(lines.len(), 2, "{o:?}");
    assert_eq!(lines[0], json!({}));
    assert_eq!(lines[1]["event"], "JOB_STATUS_CHANGE");
    assert_eq!(lines[1]["data"], json!({"status": "concluded", "id": "j0"}));
    assert!(lines[1]["timestamp"]["seconds"].as_i64().unwrap_or(0) > 0);
    let keys: Vec<&String> = lines[1].as_object().expect("object").keys().collect();
    assert_eq!(keys, ["timestamp", "event", "data"]);

    // No such event in time: status 3.
    let o = run(&["qmp", s, "--wait-event", "NEVER", "--timeout", "0.3"], "");
    assert_eq!(o.code, 3, "{o:?}");
    assert_eq!(o.stderr.trim(), "qmpkit qmp: no NEVER event within 300ms");

    // Several commands from stdin: shorthand, raw JSON with its own id, a transaction;
    // the first error stops, with status 1.
    let input = "\
# nodes
query-named-block-nodes flat=true
{\"execute\": \"query-jobs\", \"id\": {\"mine\": [1]}}
transaction(
block-dirty-bitmap-add node=src name=b0
block-dirty-bitmap-add node=dst name=b1 persistent=false
)
blockdev-del node-name=nope
query-status
";
    let o = run(&["qmp", s], input);
    assert_eq!(o.code, 1, "{o:?}");
    let lines = json_lines(&o.stdout);
    assert_eq!(lines.len(), 3, "{o:?}");
    assert_eq!(lines[1], json!([]));
    assert_eq!(lines[2], json!({}));
    assert_eq!(
        o.stderr.trim(),
        "GenericError: Failed to find node with node-name='nope'"
    );
    let o = run(
        &["qmp", s, "--keep-going"],
        "blockdev-del node-name=nope\nquery-jobs\n",
    );
    assert_eq!((o.code, o.stdout.as_str()), (1, "[]\n"), "{o:?}");
    let o = run(&["qmp", s], "query-jobs x\n");
    assert_eq!(o.code, 2, "{o:?}");
    assert_eq!(
        o.stderr.trim(),
        "qmpkit qmp: stdin line 1: 'x': expected KEY=VALUE"
    );

    let o = run(&["qmp", s, "query-block-exports"], "");
    assert_eq!((o.code, o.stdout.as_str()), (0, "[]\n"));
}

#[test]
fn connection_and_usage_errors_exit_2() {
    let dir = TempDir::new("qmp-errors");
    let missing = dir.join("none.sock");
    let o = run(
        &["qmp", missing.to_str().expect("path"), "query-status"],
        "",
    );
    assert_eq!(o.code, 2, "{o:?}");
    assert!(o.stderr.starts_with("qmpkit qmp: "), "{o:?}");
    assert!(o.stderr.contains("No such file or directory"), "{o:?}");
    let o = run(&["qmp"], "");
    assert_eq!(o.code, 2);
    assert!(o.stderr.contains("<SERVER>"), "{o:?}");
}

#[test]
fn against_qmpkit_serve_with_hmp() {
    let dir = TempDir::new("qmp-serve");
    let sock = dir.join("m.sock");
    let _m = serve(&sock);
    let s = sock.to_str().expect("path");
    let o = run(&["qmp", s, "query-status"], "");
    assert_eq!(o.code, 0, "{o:?}");
    let v: Value = serde_json::from_str(o.stdout.trim()).expect("JSON");
    assert_eq!(v["status"], "running");
    let o = run(
        &["qmp", s, "--wait-event", "STOP", "--timeout", "10", "stop"],
        "",
    );
    assert_eq!(o.code, 0, "{o:?}");
    let lines = json_lines(&o.stdout);
    assert_eq!(lines[1]["event"], "STOP");
    let o = run(&["qmp", s, "-H", "info", "status"], "");
    assert_eq!(o.code, 0, "{o:?}");
    assert!(o.stdout.contains("paused"), "{o:?}");
    let o = run(&["qmp", &format!("unix:{s}"), "cont"], "");
    assert_eq!((o.code, o.stdout.as_str()), (0, "{}\n"));
    let o = run(&["qmp", s, "query-status"], "");
    assert!(o.stdout.contains("\"running\""), "{o:?}");
}

#[test]
fn completion_scripts_and_man_pages() {
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef qmpkit"),
        ("fish", "complete -c qmpkit"),
    ] {
        let o = run(&["completions", shell], "");
        assert_eq!(o.code, 0, "{shell}: {o:?}");
        assert!(
            o.stdout.contains(marker),
            "{shell}: {}",
            &o.stdout[..200.min(o.stdout.len())]
        );
        for word in ["qmp", "serve", "schema", "wait-event", "introspect"] {
            assert!(o.stdout.contains(word), "{shell} completion lacks {word}");
        }
    }
    let o = run(&["completions", "tcsh"], "");
    assert_eq!(o.code, 2);
    let o = run(&["man"], "");
    assert_eq!(o.code, 0);
    assert!(o.stdout.contains(".TH qmpkit 1"), "{}", o.stdout);
    assert!(
        o.stdout.contains("qmpkit\\-qmp(1)") || o.stdout.contains("qmp"),
        "{}",
        o.stdout
    );
    let o = run(&["man", "qmp"], "");
    assert_eq!(o.code, 0);
    assert!(o.stdout.contains(".TH qmpkit-qmp 1"), "{}", o.stdout);
    assert!(o.stdout.contains("wait\\-event"), "{}", o.stdout);
    let o = run(&["man", "nope"], "");
    assert_eq!(o.code, 2);
}

#[test]
fn host_port_over_tcp() {
    // A free loopback port, then `qmpkit serve` on it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let _m = Proc(
        std::process::Command::new(qmpkit())
            .args([
                "serve",
                "--qmp",
                &format!("tcp:127.0.0.1:{port},server=on,wait=off"),
            ])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("serve"),
    );
    let addr = format!("127.0.0.1:{port}");
    let t = std::time::Instant::now();
    let o = loop {
        let o = run(&["qmp", &addr, "query-status"], "");
        if o.code == 0 || t.elapsed() > std::time::Duration::from_secs(10) {
            break o;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert_eq!(o.code, 0, "{o:?}");
    assert!(o.stdout.contains("\"status\":\"running\""), "{o:?}");
    let o = run(&["qmp", &format!("tcp:{addr}"), "query-name"], "");
    assert_eq!((o.code, o.stdout.as_str()), (0, "{}\n"), "{o:?}");
}
