//! `qmpkit storage-daemon` and the binary run as `qemu-storage-daemon`: the daemon's
//! identity, command line and QMP interface, and an NBD client reading one of its exports.

#[path = "storage_daemon_support/mod.rs"]
mod support;

use serde_json::{json, Value};
use support::Qmp;

fn data(rel: &str) -> Value {
    let p = qmpkit_testkit::data::qemu_ref(rel);
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).expect("recorded JSON")
}

#[test]
fn serves_the_daemons_interface_without_a_machine() {
    let dir = support::tmpdir("interface");
    let prog = support::ours(&dir);
    let d = support::start(&prog, &dir, &[]);
    let mut q = Qmp::connect(&d.socket);
    let greeting: Value = serde_json::from_str(&q.greeting).unwrap();
    assert_eq!(
        greeting,
        json!({"QMP": {"version": {"qemu": {"micro": 2, "minor": 0, "major": 10}, "package": ""}, "capabilities": ["oob"]}})
    );
    // The schema is the one qemu-storage-daemon 10.0.2 answered, exactly.
    let schema = q.ok(r#"{"execute": "query-qmp-schema"}"#);
    let recorded = data("introspection/qemu-storage-daemon-10.0.2-query-qmp-schema.json");
    // Compared as text, so that a failure shows where they part.
    let (ours, theirs) = (schema.to_string(), recorded["return"].to_string());
    if ours != theirs {
        let at = ours
            .bytes()
            .zip(theirs.bytes())
            .take_while(|(a, b)| a == b)
            .count();
        let from = at.saturating_sub(200);
        panic!(
            "query-qmp-schema differs from the daemon's at byte {at}:\nours:   {}\ntheirs: {}",
            &ours[from..(at + 200).min(ours.len())],
            &theirs[from..(at + 200).min(theirs.len())]
        );
    }
    let names = |v: &Value| {
        let mut n: Vec<String> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap().to_string())
            .collect();
        n.sort();
        n
    };
    let commands = q.ok(r#"{"execute": "query-commands"}"#);
    let recorded = data("introspection/qemu-storage-daemon-10.0.2-query-commands.json");
    assert_eq!(names(&commands), names(&recorded["return"]));
    assert_eq!(
        q.ok(r#"{"execute": "query-version"}"#),
        json!({"qemu": {"micro": 2, "minor": 0, "major": 10}, "package": ""})
    );
    // No machine, no CPUs, no devices: the root holds the daemon's containers, and the
    // types are the daemon's.
    assert_eq!(
        q.ok(r#"{"execute": "qom-list", "arguments": {"path": "/"}}"#),
        json!([
            {"name": "type", "type": "string"},
            {"name": "backend", "type": "child<container>"},
            {"name": "objects", "type": "child<container>"},
            {"name": "chardevs", "type": "child<container>"}
        ])
    );
    let types = q.ok(r#"{"execute": "qom-list-types"}"#);
    let types = names(&types);
    assert_eq!(types.len(), 36);
    assert!(types.contains(&"throttle-group".to_string()));
    assert!(!types
        .iter()
        .any(|t| t.contains("i440FX") || t.ends_with("-cpu")));
    assert_eq!(
        q.ok(r#"{"execute": "qom-list-types", "arguments": {"implements": "event-loop-base"}}"#),
        json!([
            {"name": "iothread", "parent": "event-loop-base"},
            {"name": "main-loop", "parent": "event-loop-base"}
        ])
    );
    assert_eq!(q.ok(r#"{"execute": "query-block"}"#), json!([]));
    // What the daemon has and the simulation does not: an honest error.
    let (r, _) = q.send(
        r#"{"execute": "x-blockdev-amend", "arguments": {"job-id": "j", "node-name": "n", "options": {"driver": "qcow2"}}}"#,
    );
    let r: Value = serde_json::from_str(&r).unwrap();
    assert_eq!(r["error"]["class"], "GenericError", "{r}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Command lines whose outcome (output, error, exit status) must be the real daemon's.
const COMMAND_LINES: &[&[&str]] = &[
    &["--help"],
    &["-h"],
    &["-hV"],
    &["--he"],
    &["--bogus"],
    &["bogus"],
    &["--pidfile=/nonexistent/p", "bogus"],
    &["--blockdev"],
    &["--version=1"],
    &["-x"],
    &["-T"],
    &["--blockdev", "driver=null-co"],
    &["--blockdev", "null-co,node-name=x,size=abc"],
    &["--blockdev", "null-co,node-name=x,size=1k"],
    &["--blockdev", "null-co,node-name=x,read-only=xx"],
    &["--blockdev", "null-co,node-name=x,bogus=1"],
    &["--blockdev", "driver=nope,node-name=a"],
    &["--blockdev", "node-name=a"],
    &["--blockdev", "help"],
    &[
        "--blockdev",
        "{\"driver\":\"null-co\",\"node-name\":\"x\",\"size\":\"abc\"}",
    ],
    &[
        "--blockdev",
        "driver=file,filename=/nonexistent/x,node-name=a",
    ],
    &[
        "--blockdev",
        "null-co,node-name=a",
        "--blockdev",
        "null-co,node-name=a",
    ],
    &["--export", "type=nbd,id=e,node-name=x"],
    &["--export", "type=nbd,id=e"],
    &["--export", "help"],
    &[
        "--blockdev",
        "null-co,node-name=x",
        "--export",
        "type=nbd,id=e,node-name=x",
    ],
    &["--nbd-server", "addr.type=unix"],
    &["--monitor", "chardev=zz"],
    &["--monitor", "mode=readline"],
    &["--chardev", "null,id=c", "--monitor", "c,pretty=xx"],
    &["--chardev", "null,id=c", "--monitor", "c,mode=xx"],
    &["--chardev", "null,id=c", "--monitor", "c,bogus=1"],
    &["--chardev", "null"],
    &["--c", "null"],
    &["--chardev", "bogus,id=c"],
    &["--chardev", "null,id=c", "--chardev", "null,id=c"],
    &["--object", "help"],
    &["--object", "iothread"],
    &["--object", "nothing,id=a"],
    &["--object", "iothread,id=a,bogus=1"],
    &["--object", "iothread,id=a", "--object", "iothread,id=a"],
    &["--blockdev", "bad", "--help", "-V"],
];

#[test]
fn command_line_as_the_daemon_reads_it() {
    let real = qmpkit_testkit::program_or_skip!("qemu-storage-daemon");
    let dir = support::tmpdir("cmdline");
    let prog = support::ours(&dir);
    // getopt names the program as it was invoked: each by its own path, shown as ARGV0.
    let show = |p: &std::path::Path, o: &std::process::Output| {
        format!(
            "status {:?}\nstdout:\n{}\nstderr:\n{}",
            o.status.code(),
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
        .replace(&*p.to_string_lossy(), "ARGV0")
    };
    for args in COMMAND_LINES {
        let a = support::run(&real, args);
        let b = support::run(&prog, args);
        assert_eq!(show(&prog, &b), show(&real, &a), "{args:?}");
    }
    // The version: 10.0.2's words, without the distribution's package suffix.
    let a = support::run(&real, &["-V"]);
    let b = support::run(&prog, &["--version"]);
    let (a, b) = (
        String::from_utf8_lossy(&a.stdout).into_owned(),
        String::from_utf8_lossy(&b.stdout).into_owned(),
    );
    assert_eq!(
        b,
        "qemu-storage-daemon version 10.0.2\nCopyright (c) 2003-2025 Fabrice Bellard and the QEMU Project developers\n"
    );
    assert!(a.starts_with("qemu-storage-daemon version 10.0.2"), "{a}");
    assert_eq!(a.lines().nth(1), b.lines().nth(1));
    let _ = std::fs::remove_dir_all(&dir);
}

/// An image another process holds: the daemon's start-up fails as QEMU's does, the lock error
/// then the hint on a line of its own, and the same exit status.
#[test]
fn a_locked_image_fails_start_up_as_the_daemon_does() {
    use std::io::{BufRead, BufReader, Write};
    let real = qmpkit_testkit::program_or_skip!("qemu-storage-daemon");
    let qemu_img = qmpkit_testkit::program_or_skip!("qemu-img");
    let qemu_io = qmpkit_testkit::program_or_skip!("qemu-io");
    let dir = support::tmpdir("locked");
    let img = dir.join("disk.qcow2");
    let img_s = img.to_string_lossy().into_owned();
    let (code, _, err) =
        qmpkit_testkit::cmd::run_in(&qemu_img, &dir, &["create", "-f", "qcow2", &img_s, "1M"]);
    assert_eq!(code, 0, "{err}");
    // qemu-io holds the image writable until its input ends; it has it once it answers.
    let mut holder = std::process::Command::new(&qemu_io)
        .args(["-f", "qcow2", &img_s])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("qemu-io");
    let mut input = holder.stdin.take().expect("stdin");
    let mut out = BufReader::new(holder.stdout.take().expect("stdout"));
    writeln!(input, "read 0 512").expect("qemu-io input");
    let mut line = String::new();
    while !line.contains("bytes at offset") {
        line.clear();
        assert_ne!(
            out.read_line(&mut line).expect("qemu-io"),
            0,
            "qemu-io ended"
        );
    }
    let prog = support::ours(&dir);
    let show = |o: &std::process::Output| {
        format!(
            "status {:?}\nstderr:\n{}",
            o.status.code(),
            String::from_utf8_lossy(&o.stderr)
        )
    };
    let args = [
        "--blockdev".to_string(),
        format!("driver=qcow2,node-name=disk0,file.driver=file,file.filename={img_s}"),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let a = show(&support::run(&real, &args));
    let b = show(&support::run(&prog, &args));
    drop(input);
    let _ = holder.wait();
    assert_eq!(
        a,
        format!(
            "status Some(1)\nstderr:\nqemu-storage-daemon: --blockdev {}: Failed to get \"write\" \
             lock\nIs another process using the image [{img_s}]?\n",
            args[1]
        )
    );
    assert_eq!(b, a);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_nbd_client_reads_an_export() {
    let qemu_img = qmpkit_testkit::program_or_skip!("qemu-img");
    let qemu_io = qmpkit_testkit::program_or_skip!("qemu-io");
    let dir = support::tmpdir("nbd");
    let img = dir.join("disk.qcow2");
    let img_s = img.to_string_lossy().into_owned();
    let (code, _, err) =
        qmpkit_testkit::cmd::run_in(&qemu_img, &dir, &["create", "-f", "qcow2", &img_s, "4M"]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = qmpkit_testkit::cmd::run_in(
        &qemu_io,
        &dir,
        &["-f", "qcow2", "-c", "write -P 0xa5 64k 128k", &img_s],
    );
    assert_eq!(code, 0, "{err}");
    let nbd = dir.join("nbd.sock");
    let prog = support::ours(&dir);
    let d = support::start(
        &prog,
        &dir,
        &[
            "--blockdev".into(),
            format!("driver=file,node-name=file0,filename={img_s}"),
            "--blockdev".into(),
            "qcow2,node-name=disk0,file=file0".into(),
            "--nbd-server".into(),
            format!("addr.type=unix,addr.path={}", nbd.display()),
            "--export".into(),
            "nbd,id=exp0,node-name=disk0,name=disk".into(),
        ],
    );
    let mut q = Qmp::connect(&d.socket);
    assert_eq!(
        q.ok(r#"{"execute": "query-block-exports"}"#),
        json!([{"type": "nbd", "id": "exp0", "node-name": "disk0", "shutting-down": false}])
    );
    let uri = format!("nbd+unix:///disk?socket={}", nbd.display());
    let (code, out, err) = qmpkit_testkit::cmd::run_in(
        &qemu_img,
        &dir,
        &[
            "info",
            "--output=json",
            "--image-opts",
            &format!(
                "driver=nbd,server.type=unix,server.path={},export=disk",
                nbd.display()
            ),
        ],
    );
    assert_eq!(code, 0, "{err}");
    let info: Value = serde_json::from_str(&out).expect("qemu-img info JSON");
    assert_eq!(info["virtual-size"], 4 << 20, "{out}");
    // The guest-visible data: the pattern where it was written, zeroes elsewhere.
    let (code, out, err) = qmpkit_testkit::cmd::run_in(
        &qemu_io,
        &dir,
        &[
            "-r",
            "-f",
            "raw",
            "-c",
            "read -P 0xa5 64k 128k",
            "-c",
            "read -P 0 0 64k",
            &uri,
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(!out.contains("Pattern verification failed"), "{out}");
    assert_eq!(out.matches("read ").count(), 2, "{out}");
    drop(q);
    drop(d);
    let _ = std::fs::remove_dir_all(&dir);
}
