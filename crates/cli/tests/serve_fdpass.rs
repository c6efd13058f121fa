//! Python's `qemu.qmp` passes descriptors to `qmpkit serve` with `send_fd_scm`
//! (one byte with the descriptor, then the command in a write of its own):
//! getfd / closefd / add-fd / query-fdsets / remove-fd, and a migration
//! written into a passed pipe. The same script runs against
//! qemu-system-x86_64 10.0.2, the referee: the transcripts must be equal,
//! descriptor numbers aside.
//!
//! Needs a Python with qemu.qmp (see `qmpkit_testkit::python`); the referee
//! part needs qemu-system-x86_64.

#[path = "serve_support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use qmpkit_testkit::python_or_skip;
use serde_json::{json, Value};
use support::*;

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/fdpass.py")
}

/// The script's JSON lines, against the monitor at `sock`.
fn run_script(py: &Path, sock: &Path) -> Vec<Value> {
    let out = Command::new(py)
        .arg(script())
        .arg(sock)
        .output()
        .expect("python");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "python failed after:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text.lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect()
}

/// Descriptor numbers differ between processes: each becomes `fd#N`, N
/// counting distinct numbers in order of appearance.
fn normalise(steps: &mut [Value]) {
    fn walk(v: &mut Value, seen: &mut HashMap<i64, usize>) {
        match v {
            Value::Object(m) => {
                for (k, x) in m.iter_mut() {
                    match (k.as_str(), x.as_i64()) {
                        ("fd", Some(n)) => {
                            let k = seen.len();
                            *x = json!(format!("fd#{}", seen.entry(n).or_insert(k)));
                        }
                        _ => walk(x, seen),
                    }
                }
            }
            Value::Array(a) => a.iter_mut().for_each(|x| walk(x, seen)),
            _ => {}
        }
    }
    let mut seen = HashMap::new();
    for s in steps {
        walk(s, &mut seen);
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn no_fd(cmd: &str) -> Value {
    json!({"cmd": cmd, "error": {"class": "GenericError", "desc": "No file descriptor supplied via SCM_RIGHTS"}})
}

fn ok(cmd: &str) -> Value {
    json!({"cmd": cmd, "ret": {}})
}

const ARGS: &[&str] = &[
    "-S",
    "-display",
    "none",
    "-nodefaults",
    "-machine",
    "none",
    "-smp",
    "1",
];

#[test]
fn qemu_qmp_passes_descriptors() {
    let py = python_or_skip!();
    let dir = tmpdir("fdpass");
    let sock = dir.join("m.sock");
    let spec = format!("unix:{},server=on,wait=off", sock.display());
    let mut args = ARGS.to_vec();
    args.extend(["-qmp", &spec]);
    let _s = spawn(&args);
    wait_for(&sock);
    let mut ours = run_script(&py, &sock);
    normalise(&mut ours);
    let expected = vec![
        no_fd("getfd"),
        json!({"cmd": "query-fdsets", "ret": []}),
        ok("getfd"),
        no_fd("getfd"),
        ok("getfd"),
        no_fd("getfd"),
        ok("closefd"),
        json!({"cmd": "closefd", "error": {"class": "GenericError", "desc": "File descriptor named 'f1' not found"}}),
        json!({"cmd": "getfd", "error": {"class": "GenericError", "desc": "Parameter 'fdname' expects a name not starting with a digit"}}),
        no_fd("getfd"),
        no_fd("add-fd"),
        json!({"cmd": "add-fd", "ret": {"fd": "fd#0", "fdset-id": 3}}),
        json!({"cmd": "add-fd", "ret": {"fd": "fd#1", "fdset-id": 3}}),
        json!({"cmd": "add-fd", "ret": {"fd": "fd#2", "fdset-id": 0}}),
        // Both sets, in the order QEMU lists them.
        json!({"cmd": "query-fdsets", "ret": [
            {"fdset-id": 3, "fds": [{"fd": "fd#0", "opaque": "x"}, {"fd": "fd#1"}]},
            {"fdset-id": 0, "fds": [{"fd": "fd#2"}]},
        ]}),
        json!({"cmd": "remove-fd", "error": {"class": "GenericError", "desc": "File descriptor named 'fdset-id:3, fd:9999' not found"}}),
        ok("remove-fd"),
        json!({"cmd": "query-fdsets", "ret": [{"fdset-id": 3, "fds": [{"fd": "fd#0", "opaque": "x"}, {"fd": "fd#1"}]}]}),
        ok("getfd"),
        ok("migrate"),
        json!({"migration": "completed", "head": hex(b"QMPKIT-M")}),
    ];
    assert_eq!(ours, expected);

    // The referee.
    let Some(qemu) = qmpkit_testkit::skip::program("qemu-system-x86_64") else {
        return;
    };
    let qsock = dir.join("q.sock");
    let qspec = format!("unix:{},server=on,wait=off", qsock.display());
    let mut q = Serve {
        child: Command::new(qemu)
            .args(ARGS)
            .args(["-qmp", &qspec])
            .spawn()
            .expect("qemu-system-x86_64"),
    };
    wait_for(&qsock);
    let mut theirs = run_script(&py, &qsock);
    normalise(&mut theirs);
    let _ = q.child.kill();
    // Each writes its own stream format: QEMU's magic "QEVM" and version 3.
    let last = theirs.len() - 1;
    assert_eq!(
        theirs[last],
        json!({"migration": "completed", "head": hex(b"QEVM\0\0\0\x03")})
    );
    theirs[last] = ours[last].clone();
    assert_eq!(ours, theirs);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `-add-fd` hands an inherited descriptor to its set before the first command, and one the
/// process does not have is refused at start in QEMU's words.
#[test]
fn add_fd_on_the_command_line() {
    use std::io::Write;
    use std::os::unix::process::CommandExt;
    use std::process::Stdio;
    let dir = tmpdir("addfd");
    let img = dir.join("disk.img");
    std::fs::write(&img, vec![0u8; 1 << 20]).expect("image");
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&img)
        .expect("image opens");
    let given = std::os::fd::AsRawFd::as_raw_fd(&file);
    let mut cmd = Command::new(qmpkit());
    cmd.args([
        "serve",
        "-S",
        "-add-fd",
        "fd=7,set=3,opaque=disk",
        "-qmp",
        "stdio",
    ])
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::null());
    // SAFETY: dup2 is async-signal-safe; it only places the image's descriptor at 7.
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(given, 7) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().expect("qmpkit serve");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin
        .write_all(
            concat!(
                "{\"execute\": \"qmp_capabilities\"}\n",
                "{\"execute\": \"query-fdsets\"}\n",
                "{\"execute\": \"blockdev-add\", \"arguments\": {\"driver\": \"raw\", ",
                "\"node-name\": \"d0\", \"file\": {\"driver\": \"file\", ",
                "\"filename\": \"/dev/fdset/3\"}}}\n",
                "{\"execute\": \"quit\"}\n"
            )
            .as_bytes(),
        )
        .expect("requests");
    drop(stdin);
    let out = child.wait_with_output().expect("output");
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    let sets = &lines[2]["return"];
    assert_eq!(sets[0]["fdset-id"], json!(3), "{lines:?}");
    assert_eq!(sets[0]["fds"][0]["opaque"], json!("disk"));
    assert!(sets[0]["fds"][0]["fd"].as_i64().is_some_and(|fd| fd > 2));
    assert_eq!(lines[3], json!({"return": {}}), "{lines:?}");

    let refused = Command::new(qmpkit())
        .args(["serve", "-add-fd", "fd=97,set=3", "-qmp", "stdio"])
        .stdin(Stdio::null())
        .output()
        .expect("qmpkit serve");
    assert_eq!(refused.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&refused.stderr),
        "qmpkit serve: -add-fd fd=97,set=3: fd is not valid or already in use\n"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
