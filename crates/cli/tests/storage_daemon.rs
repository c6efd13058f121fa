//! `qmpkit storage-daemon` and the binary run as `qemu-storage-daemon`: the daemon's
//! identity, command line and QMP interface, an NBD client reading one of its exports, and
//! deep stacks of filter nodes described as the real daemon describes them.

#[macro_use]
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

/// `text` with the daemon's directory as `$DIR` and each generated `#blockNNN` name as
/// `#block` (the digits are random in QEMU).
fn norm_names(text: &str, dir: &std::path::Path) -> String {
    let text = text.replace(&*dir.to_string_lossy(), "$DIR");
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some(at) = rest.find("#block") {
        out.push_str(&rest[..at + 6]);
        rest = rest[at + 6..].trim_start_matches(|c: char| c.is_ascii_digit());
    }
    out.push_str(rest);
    out
}

/// Whether layer `i` of the stacks below is a raw node (else a throttle filter): every fifth,
/// up to layer 12.
fn raw_layer(i: usize) -> bool {
    i % 5 == 0 && i <= 12
}

/// Adds layers `from..=to` to the stack whose top is `n{from-1}`.
fn stack_layers(q: &mut Qmp, from: usize, to: usize) {
    for i in from..=to {
        let layer = if raw_layer(i) {
            json!({"driver": "raw", "node-name": format!("n{i}"), "file": format!("n{}", i - 1)})
        } else {
            json!({"driver": "throttle", "node-name": format!("n{i}"),
                   "throttle-group": "tg0", "file": format!("n{}", i - 1)})
        };
        let req = json!({"execute": "blockdev-add", "arguments": layer});
        q.ok(&req.to_string());
    }
}

/// A stack of filters (throttle nodes, with raw nodes among them) over a qcow2 image, an
/// NBD export writing on top: `query-named-block-nodes` (nested and flat),
/// `x-debug-query-block-graph` (the export's permissions passed down every layer) and
/// `query-block` answer byte for byte as qemu-storage-daemon's, with names deeper than any
/// fixed bound (each layer's `json:` name nests all those below it, cut where QEMU cuts it).
/// A deeper stack is described in time that follows the answer's size: each layer's name and
/// image are worked out once per query, not again for every layer above it.
#[test]
fn deep_filter_stacks_are_described_as_the_daemon_does() {
    let (real, img, _) = qemu_tools!();
    let root = support::tmpdir("deep");
    let prog = support::ours(&root);
    let mut sides = Vec::new();
    for (name, p) in [("real", real.as_path()), ("ours", prog.as_path())] {
        let d = root.join(name);
        std::fs::create_dir_all(&d).unwrap();
        let args = ["create", "-q", "-f", "qcow2", "base.qcow2", "1M"];
        let (code, _, err) = qmpkit_testkit::cmd::run_in(&img, &d, &args);
        assert_eq!(code, 0, "{err}");
        let daemon = support::start(p, &d, &[]);
        let mut q = Qmp::connect(&daemon.socket);
        q.ok(r#"{"execute": "object-add", "arguments": {"qom-type": "throttle-group", "id": "tg0"}}"#);
        let base = json!({"execute": "blockdev-add", "arguments": {"driver": "qcow2",
            "node-name": "n0", "file": {"driver": "file", "filename": d.join("base.qcow2")}}});
        q.ok(&base.to_string());
        let nbd = json!({"execute": "nbd-server-start",
            "arguments": {"addr": {"type": "unix", "data": {"path": d.join("nbd.sock")}}}});
        q.ok(&nbd.to_string());
        sides.push((q, d, daemon));
    }
    let export = |top: usize| {
        json!({"execute": "block-export-add", "arguments": {"type": "nbd", "id": format!("e{top}"),
            "node-name": format!("n{top}"), "writable": true}})
        .to_string()
    };
    let compare = |sides: &mut Vec<(Qmp, std::path::PathBuf, support::Daemon)>, reqs: &[&str]| {
        for req in reqs {
            let answers: Vec<String> = sides
                .iter_mut()
                .map(|(q, d, _)| norm_names(&q.send(req).0, d))
                .collect();
            assert!(
                answers[0] == answers[1],
                "{req}: qmpkit and qemu-storage-daemon differ:\n{}\n{}",
                answers[1],
                answers[0]
            );
        }
    };
    // A shallow stack, every answer whole.
    for (q, _, _) in sides.iter_mut() {
        stack_layers(q, 1, 12);
        q.ok(&export(12));
    }
    compare(
        &mut sides,
        &[
            r#"{"execute": "query-named-block-nodes"}"#,
            r#"{"execute": "query-named-block-nodes", "arguments": {"flat": true}}"#,
            r#"{"execute": "x-debug-query-block-graph"}"#,
            r#"{"execute": "query-block"}"#,
        ],
    );
    // Deeper than 64 layers (the real daemon takes seconds to nest this deep, so the nested
    // answer is compared on the shallow stack only).
    for (q, _, _) in sides.iter_mut() {
        stack_layers(q, 13, 70);
        q.ok(&export(70));
    }
    compare(
        &mut sides,
        &[
            r#"{"execute": "query-named-block-nodes", "arguments": {"flat": true}}"#,
            r#"{"execute": "x-debug-query-block-graph"}"#,
        ],
    );
    let (mut q, dir, daemon) = sides.pop().unwrap();
    drop(sides);
    // Ours alone, deeper: each answer in bounded time (each layer worked out again for every
    // layer above it took minutes here), and each nested entry made of the flat ones.
    const TOP: usize = 120;
    stack_layers(&mut q, 71, TOP);
    let start = std::time::Instant::now();
    let flat = q.ok(r#"{"execute": "query-named-block-nodes", "arguments": {"flat": true}}"#);
    let nested = q.ok(r#"{"execute": "query-named-block-nodes"}"#);
    let graph = q.ok(r#"{"execute": "x-debug-query-block-graph"}"#);
    let took = start.elapsed();
    eprintln!("{TOP} layers described in {took:?}");
    assert!(
        took < std::time::Duration::from_secs(20),
        "describing {TOP} layers took {took:?}"
    );
    let flat = flat.as_array().unwrap();
    let nested = nested.as_array().unwrap();
    assert_eq!(flat.len(), TOP + 2);
    assert_eq!(nested.len(), TOP + 2);
    assert_eq!(graph["nodes"].as_array().unwrap().len(), TOP + 2 + 2);
    let file_of: std::collections::HashMap<&str, &Value> = flat
        .iter()
        .map(|n| (n["node-name"].as_str().unwrap(), &n["file"]))
        .collect();
    for n in nested {
        let name = n["node-name"].as_str().unwrap();
        assert_eq!(n["file"], *file_of[name], "{name}");
        // A filter nests the layers below it, down to the first that is not a filter (a
        // raw node over a node is a format node: it nests what its backing would be).
        let mut layers = vec![name.to_string()];
        if let Some(mut k) = name.strip_prefix('n').and_then(|k| k.parse::<usize>().ok()) {
            while k > 0 && !raw_layer(k) {
                k -= 1;
                layers.push(format!("n{k}"));
            }
        }
        assert_eq!(n["backing_file_depth"], layers.len() - 1, "{name}");
        let mut image = &n["image"];
        for layer in &layers {
            assert_eq!(
                image["filename"],
                *file_of[layer.as_str()],
                "{name} at {layer}"
            );
            image = &image["backing-image"];
        }
        assert_eq!(*image, Value::Null, "{name}");
    }
    // The top layers' names are cut as QEMU cuts them; those of the layers low enough whole.
    let top = flat[0]["file"].as_str().unwrap();
    assert!(top.len() == 4095 && top.ends_with("..."), "{top}");
    let low = file_of["n10"].as_str().unwrap();
    assert!(low.starts_with("json:") && low.ends_with("}"), "{low}");
    drop(q);
    drop(daemon);
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&root);
}
