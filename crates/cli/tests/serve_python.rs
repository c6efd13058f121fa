//! Python's `qemu.qmp` and `qmp-shell` drive `qmpkit serve` through a
//! machine's life cycle: start with -S, cont, stop, cont, system_powerdown,
//! the guest shuts down; events in QEMU's order.
//!
//! Needs a Python with qemu.qmp: `$QMPKIT_PYTHON`, else `.ci/venv` (made by
//! `.ci/run`), else `python3` if it can import it; otherwise skipped.

#[path = "serve_support/mod.rs"]
mod support;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use qmpkit_testkit::python::qmp_shell;
use qmpkit_testkit::python_or_skip;
use serde_json::{json, Value};
use support::*;

/// Drives the life cycle with qemu.qmp; prints one JSON line per step:
/// `{"cmd": …, "ret": …}` / `{"event": …, "data": …}`.
const LIFECYCLE: &str = r#"
import asyncio, json, sys
from qemu.qmp import QMPClient, EventListener

def out(o):
    print(json.dumps(o), flush=True)

async def main(path, no_shutdown):
    qmp = QMPClient("lifecycle")
    await qmp.connect(path)
    listener = EventListener()
    async def ev():
        e = await asyncio.wait_for(listener.get(), 10)
        out({"event": e["event"], "data": e.get("data")})
    async def cmd(name, args=None):
        r = await qmp.execute(name, args)
        out({"cmd": name, "ret": r})
    with qmp.listen(listener):
        await cmd("query-status")
        await cmd("cont"); await ev()
        await cmd("stop"); await ev()
        await cmd("query-status")
        await cmd("cont"); await ev()
        await cmd("__org.qmpkit_set-guest", {"powerdown-delay-ms": 100})
        await cmd("system_powerdown"); await ev(); await ev()
        if no_shutdown:
            await ev()
            await cmd("query-status")
            await cmd("system_reset"); await ev()
            await cmd("query-status")
            await cmd("quit"); await ev()
    try:
        await qmp.disconnect()
    except Exception:
        pass

asyncio.run(main(sys.argv[1], sys.argv[2] == "1"))
"#;

fn run_lifecycle(py: &Path, sock: &Path, no_shutdown: bool) -> Vec<Value> {
    let out = Command::new(py)
        .arg("-c")
        .arg(LIFECYCLE)
        .arg(sock)
        .arg(if no_shutdown { "1" } else { "0" })
        .output()
        .expect("python");
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect()
}

#[test]
fn qemu_qmp_drives_the_life_cycle() {
    let py = python_or_skip!();
    let dir = tmpdir("py-life");
    let sock = dir.join("m.sock");
    let spec = format!("unix:{},server=on,wait=off", sock.display());
    let mut s = spawn(&["-S", "-qmp", &spec]);
    wait_for(&sock);
    let steps = run_lifecycle(&py, &sock, false);
    let status = |st: &str, running: bool| json!({"cmd": "query-status", "ret": {"running": running, "singlestep": false, "status": st}});
    let ev = |name: &str, data: Value| json!({"event": name, "data": data});
    let ok = |name: &str| json!({"cmd": name, "ret": {}});
    assert_eq!(
        steps,
        vec![
            status("prelaunch", false),
            ok("cont"),
            ev("RESUME", Value::Null),
            ok("stop"),
            ev("STOP", Value::Null),
            status("paused", false),
            ok("cont"),
            ev("RESUME", Value::Null),
            ok("__org.qmpkit_set-guest"),
            ok("system_powerdown"),
            ev("POWERDOWN", Value::Null),
            ev(
                "SHUTDOWN",
                json!({"guest": true, "reason": "guest-shutdown"})
            ),
        ]
    );
    // Without -no-shutdown the machine exits after the guest's shutdown.
    let st = s.child.wait().expect("wait");
    assert!(st.success());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn qemu_qmp_with_no_shutdown() {
    let py = python_or_skip!();
    let dir = tmpdir("py-noshut");
    let sock = dir.join("m.sock");
    let spec = format!("unix:{},server=on,wait=off", sock.display());
    let mut s = spawn(&["-S", "-no-shutdown", "-qmp", &spec]);
    wait_for(&sock);
    let steps = run_lifecycle(&py, &sock, true);
    let tail: Vec<Value> = steps[10..].to_vec();
    assert_eq!(
        tail,
        vec![
            json!({"event": "POWERDOWN", "data": null}),
            json!({"event": "SHUTDOWN", "data": {"guest": true, "reason": "guest-shutdown"}}),
            json!({"event": "STOP", "data": null}),
            json!({"cmd": "query-status", "ret": {"running": false, "singlestep": false, "status": "shutdown"}}),
            json!({"cmd": "system_reset", "ret": {}}),
            json!({"event": "RESET", "data": {"guest": false, "reason": "host-qmp-system-reset"}}),
            json!({"cmd": "query-status", "ret": {"running": false, "singlestep": false, "status": "prelaunch"}}),
            json!({"cmd": "quit", "ret": {}}),
            json!({"event": "SHUTDOWN", "data": {"guest": false, "reason": "host-qmp-quit"}}),
        ]
    );
    assert!(s.child.wait().expect("wait").success());
    let _ = std::fs::remove_dir_all(&dir);
}

/// qmp-shell run as a script drives the life cycle: start with -S and
/// -no-shutdown, cont, stop, cont, system_powerdown, the guest shuts down.
/// qmp-shell prints the events received so far when it reads an empty line
/// (as Python dicts); the test feeds its input in steps, with empty lines
/// after the commands that cause events, and a pause for the guest.
#[test]
fn qmp_shell_drives_the_machine() {
    let py = python_or_skip!();
    let dir = tmpdir("py-shell");
    let sock = dir.join("m.sock");
    let spec = format!("unix:{},server=on,wait=off", sock.display());
    let _s = spawn(&["-S", "-no-shutdown", "-qmp", &spec]);
    wait_for(&sock);
    let mut child = Command::new(qmp_shell(&py))
        .arg(&sock)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("qmp-shell");
    let mut stdin = child.stdin.take().expect("stdin");
    // The shell's output as it comes, read on a thread, so that a step can wait for it.
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
    let reader = {
        let seen = seen.clone();
        let mut stdout = child.stdout.take().expect("stdout");
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = std::io::Read::read(&mut stdout, &mut buf) {
                seen.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        })
    };
    let pause = |ms| std::thread::sleep(std::time::Duration::from_millis(ms));
    // Empty lines (the shell prints pending events at each) until `text` has been printed.
    let wait_for_output = |stdin: &mut std::process::ChildStdin, text: &str| {
        let t = std::time::Instant::now();
        while !String::from_utf8_lossy(&seen.lock().unwrap()).contains(text) {
            assert!(
                t.elapsed() < std::time::Duration::from_secs(20),
                "no {text} from qmp-shell: {}",
                String::from_utf8_lossy(&seen.lock().unwrap())
            );
            stdin.write_all(b"\n").expect("write");
            stdin.flush().expect("flush");
            pause(50);
        }
    };
    let steps: &[(&str, Option<&str>)] = &[
        ("query-status\ncont\n", None),
        ("\nstop\n", None),
        ("\nquery-status\ncont\n", None),
        (
            "\n__org.qmpkit_set-guest powerdown-delay-ms=100\nsystem_powerdown\n",
            // The modelled guest shuts down 100 ms after the request.
            Some("'event': 'SHUTDOWN'"),
        ),
        ("\nquery-status\n", None),
        ("query-name\n\n", None),
    ];
    for (text, wait) in steps {
        stdin.write_all(text.as_bytes()).expect("write");
        stdin.flush().expect("flush");
        match wait {
            Some(w) => wait_for_output(&mut stdin, w),
            None => pause(100),
        }
    }
    drop(stdin);
    let status = child.wait().expect("qmp-shell");
    reader.join().expect("reader");
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut e, &mut stderr);
    }
    let text = String::from_utf8_lossy(&seen.lock().unwrap()).into_owned();
    assert!(status.success(), "{text}{stderr}");
    let replies: Vec<Value> = text
        .lines()
        // Each reply follows the prompt: `(QEMU) {"return": …}`.
        .filter_map(|l| l.find('{').map(|i| &l[i..]))
        .filter_map(|l| serde_json::from_str::<Value>(l.trim()).ok())
        .filter(|v| v.get("return").is_some() || v.get("error").is_some())
        .collect();
    let statuses: Vec<&str> = replies
        .iter()
        .filter_map(|r| r["return"]["status"].as_str())
        .collect();
    assert_eq!(statuses, ["prelaunch", "paused", "shutdown"], "{text}");
    assert_eq!(replies.len(), 9, "{text}");
    assert!(replies.iter().all(|r| r.get("error").is_none()), "{text}");
    assert!(text.contains("Connected to QEMU 2.12.0"), "{text}");
    // Events as qmp-shell prints them: `{'timestamp': {…}, 'event': 'STOP'}`.
    let events: Vec<&str> = text
        .lines()
        .filter_map(|l| l.split("'event': '").nth(1))
        .filter_map(|rest| rest.split('\'').next())
        .collect();
    assert_eq!(
        events,
        ["RESUME", "STOP", "RESUME", "POWERDOWN", "SHUTDOWN", "STOP"],
        "{text}"
    );
    let shutdown = text
        .lines()
        .find(|l| l.contains("'event': 'SHUTDOWN'"))
        .unwrap_or("");
    assert!(shutdown.contains("'guest': True"), "{shutdown}");
    let _ = std::fs::remove_dir_all(&dir);
}
