//! `qmpkit serve` end to end: options and their errors, the default
//! machine over a socket, `--schema` with QEMU 1.3's interface, fleets.

#[path = "serve_support/mod.rs"]
mod support;

use std::process::Command;
use std::time::Duration;

use serde_json::json;
use support::*;

fn serve_err(args: &[&str]) -> (i32, String) {
    let out = Command::new(qmpkit())
        .arg("serve")
        .args(args)
        .output()
        .expect("run");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn option_errors_name_the_option() {
    let (code, err) = serve_err(&["-frobnicate"]);
    assert_eq!(code, 1);
    assert_eq!(err.trim(), "qmpkit serve: -frobnicate: invalid option");
    let (code, err) = serve_err(&["--bogus=1"]);
    assert_eq!(code, 1);
    assert!(err.contains("--bogus=1: invalid option"), "{err}");
    let (_, err) = serve_err(&["-m"]);
    assert_eq!(err.trim(), "qmpkit serve: -m: requires an argument");
    let (_, err) = serve_err(&["-m", "lots"]);
    assert_eq!(err.trim(), "qmpkit serve: -m lots: invalid RAM size");
    let (_, err) = serve_err(&["-uuid", "xyz"]);
    assert_eq!(
        err.trim(),
        "qmpkit serve: -uuid xyz: Fail to parse UUID string"
    );
    let (_, err) = serve_err(&["--dialect", "ancient"]);
    assert!(err.contains("--dialect ancient"), "{err}");
    let (_, err) = serve_err(&["--machines", "0"]);
    assert!(err.contains("--machines 0"), "{err}");
    let (_, err) = serve_err(&[
        "--machines",
        "2",
        "-qmp",
        "unix:/tmp/x.sock,server=on,wait=off",
    ]);
    assert!(err.contains("%d"), "{err}");
    let (_, err) = serve_err(&["-qmp", "unix:/nonexistent/x.sock"]);
    assert!(err.contains("server=on"), "{err}");
    let (_, err) = serve_err(&["-qmp", "bogus:thing"]);
    assert!(
        err.contains("bogus:thing") || err.contains("'bogus"),
        "{err}"
    );
}

/// What `qmpkit serve EXTRA --list-handlers` lists: `(command, how it is answered)`.
fn handler_list(extra: &[&str]) -> Vec<(String, String)> {
    let mut args = vec!["serve"];
    args.extend_from_slice(extra);
    args.push("--list-handlers");
    let out = Command::new(qmpkit()).args(&args).output().expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

/// How many commands of `list` are answered `how`.
fn count(list: &[(String, String)], how: &str) -> usize {
    list.iter().filter(|(_, h)| h == how).count()
}

/// The first command of `list` answered `how` whose name passes `pick`.
fn first_answered(list: &[(String, String)], how: &str, pick: impl Fn(&str) -> bool) -> String {
    match list.iter().find(|(n, h)| h == how && pick(n)) {
        Some((n, _)) => n.clone(),
        None => panic!("no command answered {how}: {list:?}"),
    }
}

/// The start-up line `qmpkit serve` prints for the commands of `list`.
fn summary_of(list: &[(String, String)]) -> String {
    let (total, implemented, builtin, unimplemented) = (
        list.len(),
        count(list, "handler"),
        count(list, "builtin"),
        count(list, "unimplemented"),
    );
    format!("{total} commands: {implemented} implemented by the machine, {builtin} built into the protocol, {unimplemented} not implemented (they answer GenericError; --list-handlers lists them)\n")
}

#[test]
fn list_handlers_and_print_config() {
    let out = Command::new(qmpkit())
        .args(["serve", "--list-handlers"])
        .output()
        .expect("run");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.lines().any(|l| l == "query-status\thandler"), "{text}");
    assert!(
        text.lines().any(|l| l == "query-qmp-schema\tbuiltin"),
        "{text}"
    );
    assert!(text
        .lines()
        .any(|l| l == "__org.qmpkit_guest-panic\thandler"));
    // The 156 commands of QEMU 2.12, the newer forms the machine's interface grew, and the
    // test-control extensions.
    let list = handler_list(&[]);
    assert_eq!(list.len(), text.lines().count());
    let ext = list
        .iter()
        .filter(|(n, _)| n.starts_with("__org.qmpkit_"))
        .count();
    assert!(list.len() - ext >= 156 + 9, "{text}");
    assert!(ext >= 10, "{ext} test-control commands");
    assert!(
        text.lines().any(|l| l == "query-block-jobs\thandler"),
        "{text}"
    );
    // What the machine does not implement says so, and how many.
    let unimplemented = count(&list, "unimplemented");
    assert!(unimplemented > 0, "{text}");
    assert_eq!(
        list.len(),
        count(&list, "handler") + count(&list, "builtin") + unimplemented
    );
    assert_eq!(String::from_utf8_lossy(&out.stderr), summary_of(&list));
    let missing = first_answered(&list, "unimplemented", |_| true);
    let mock = handler_list(&["--synthesize"]);
    assert!(
        mock.contains(&(missing.clone(), "synthesized".to_string())),
        "{mock:?}"
    );
    assert_eq!(count(&mock, "synthesized"), unimplemented);
    let out = Command::new(qmpkit())
        .args(["serve", "--print-config", "-m", "2G", "-name", "web"])
        .output()
        .expect("run");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("name = \"web\""), "{text}");
    assert!(text.contains("memory = 2147483648"), "{text}");
}

#[test]
fn default_machine_on_a_printed_socket() {
    let dir = tmpdir("default");
    let mut s = Command::new(qmpkit())
        .arg("serve")
        .env("XDG_RUNTIME_DIR", &dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut out = std::io::BufReader::new(s.stdout.take().expect("stdout"));
    let mut first = String::new();
    let mut hint = String::new();
    use std::io::BufRead;
    out.read_line(&mut first).unwrap();
    out.read_line(&mut hint).unwrap();
    let path = std::path::PathBuf::from(first.trim());
    assert!(path.starts_with(&dir), "{first}");
    assert!(
        hint.contains("qmp-shell") && hint.contains(first.trim()),
        "{hint}"
    );
    let mut q = Qmp::connect(&path);
    assert_eq!(
        q.greeting["QMP"]["version"]["qemu"],
        json!({"major": 2, "minor": 12, "micro": 0})
    );
    assert_eq!(q.ok("query-status", json!({}))["status"], "running");
    // Ctrl-C: SHUTDOWN (host signal), socket removed, exit 0.
    unsafe_kill(s.id(), 2);
    let ev = q.event("SHUTDOWN");
    assert_eq!(ev["data"], json!({"guest": false, "reason": "host-signal"}));
    let st = s.wait().expect("wait");
    assert!(st.success(), "{st:?}");
    assert!(!path.exists());
    let _ = std::fs::remove_dir_all(&dir);
}

fn unsafe_kill(pid: u32, sig: i32) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status();
}

#[test]
fn quit_ends_the_process() {
    let dir = tmpdir("quit");
    let sock = dir.join("m.sock");
    let spec = format!("unix:{},server=on,wait=off", sock.display());
    let pidfile = dir.join("pid");
    let mut s = spawn(&["-qmp", &spec, "-pidfile", pidfile.to_str().unwrap()]);
    let mut q = Qmp::connect(&sock);
    let pid: u32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(pid, s.child.id());
    assert_eq!(q.cmd("quit", json!({})), json!({"return": {}}));
    assert_eq!(
        q.event("SHUTDOWN")["data"],
        json!({"guest": false, "reason": "host-qmp-quit"})
    );
    assert!(q.read().is_none());
    let st = s.child.wait().unwrap();
    assert!(st.success());
    std::thread::sleep(Duration::from_millis(50));
    assert!(!sock.exists());
    assert!(!pidfile.exists());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn options_reach_the_machine() {
    let dir = tmpdir("opts");
    let sock = dir.join("m.sock");
    let chardev = format!("socket,id=mon0,path={},server=on,wait=off", sock.display());
    let _s = spawn(&[
        "-S",
        "-name",
        "guest=db1",
        "-uuid",
        "550e8400-e29b-41d4-a716-446655440000",
        "-m",
        "2G",
        "-smp",
        "4,maxcpus=8",
        "-chardev",
        &chardev,
        "-mon",
        "chardev=mon0,mode=control",
        "--qemu-version",
        "2.11.1",
        "--package",
        "qmpkit-test",
    ]);
    let mut q = Qmp::connect(&sock);
    assert_eq!(q.ok("query-status", json!({}))["status"], "prelaunch");
    assert_eq!(q.ok("query-name", json!({})), json!({"name": "db1"}));
    assert_eq!(
        q.ok("query-uuid", json!({})),
        json!({"UUID": "550e8400-e29b-41d4-a716-446655440000"})
    );
    assert_eq!(
        q.ok("query-memory-size-summary", json!({}))["base-memory"],
        json!(2u64 << 30)
    );
    assert_eq!(q.ok("query-cpus", json!({})).as_array().unwrap().len(), 4);
    assert_eq!(
        q.ok("query-version", json!({})),
        json!({"qemu": {"major": 2, "minor": 11, "micro": 1}, "package": "qmpkit-test"})
    );
    // QEMU's order on the wire: RESUME (and STOP) come before the reply of
    // cont (stop); RESET comes after the reply of system_reset.
    q.ok("cont", json!({}));
    assert_eq!(q.event_names(), ["RESUME"]);
    q.events.clear();
    q.ok("system_reset", json!({}));
    assert!(q.events.is_empty(), "{:?}", q.events);
    assert_eq!(
        q.event("RESET")["data"],
        json!({"guest": false, "reason": "host-qmp-system-reset"})
    );
    q.ok("stop", json!({}));
    assert_eq!(q.event_names(), ["STOP"]);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `qmpkit serve` on QEMU 1.3's schema (legacy dialect) with `extra` options, listening on
/// a socket in a fresh directory named after `tag`, and a client connected to it; `None`
/// (skipped) without the seed.
fn serve_qemu_1_3(tag: &str, extra: &[&str]) -> Option<(std::path::PathBuf, Serve, Qmp)> {
    let schema = qmpkit_testkit::data::path("seeds/qemu-1.3-dev.json");
    let dir = tmpdir(tag);
    let sock = dir.join("m.sock");
    let spec = format!("unix:{},server=on,wait=off", sock.display());
    let mut args = vec!["--schema", schema.to_str().unwrap(), "--dialect", "legacy"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["-qmp", &spec]);
    let s = spawn(&args);
    let q = Qmp::connect(&sock);
    Some((dir, s, q))
}

#[test]
fn serves_qemu_1_3() {
    let Some((dir, _s, mut q)) = serve_qemu_1_3("v13", &[]) else {
        return;
    };
    // QEMU 1.3 offered no capabilities (oob came with 2.12).
    assert_eq!(
        q.greeting_line,
        "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, \"minor\": 3, \"major\": 1}, \"package\": \"\"}, \"capabilities\": []}}\r\n"
    );
    let cmds = q.ok("query-commands", json!({}));
    let names: Vec<&str> = cmds
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    // The schema's 82 commands, and the protocol's own qmp_capabilities
    // (QEMU 1.3 defined it outside the schema and listed it too).
    assert_eq!(names.len(), 83, "{names:?}");
    assert!(names.contains(&"qmp_capabilities"));
    assert!(names.contains(&"cpu") && names.contains(&"change"));
    assert_eq!(q.ok("cpu", json!({"index": 0})), json!({}));
    let cpus = q.ok("query-cpus", json!({}));
    let keys: Vec<&String> = cpus[0].as_object().unwrap().keys().collect();
    let mut keys: Vec<&str> = keys.iter().map(|k| k.as_str()).collect();
    keys.sort();
    assert_eq!(keys, ["CPU", "current", "halted", "pc", "thread_id"]);
    assert_eq!(q.ok("stop", json!({})), json!({}));
    let ev = q.event("STOP");
    assert!(ev.get("data").is_none());
    assert_eq!(q.ok("query-status", json!({}))["status"], "paused");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Every 1.x seed greets as its QEMU did: its version, no capabilities.
#[test]
fn old_seeds_greet_without_capabilities() {
    for (file, minor) in [("qemu-1.0-dev.json", 0), ("qemu-1.1-dev.json", 1)] {
        let schema = qmpkit_testkit::data::path("seeds").join(file);
        let dir = tmpdir(&format!("v1{minor}"));
        let sock = dir.join("m.sock");
        let spec = format!("unix:{},server=on,wait=off", sock.display());
        let _s = spawn(&[
            "--schema",
            schema.to_str().unwrap(),
            "--dialect",
            "legacy",
            "-qmp",
            &spec,
        ]);
        let mut q = Qmp::connect(&sock);
        assert_eq!(
            q.greeting_line,
            format!(
                "{{\"QMP\": {{\"version\": {{\"qemu\": {{\"micro\": 0, \"minor\": {minor}, \"major\": 1}}, \"package\": \"\"}}, \"capabilities\": []}}}}\r\n"
            ),
            "{file}"
        );
        assert_eq!(q.ok("query-status", json!({}))["status"], "running");
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn fleet_machines_have_their_own_state() {
    let dir = tmpdir("fleet");
    // A fleet's monitors listen without being told `server=on`.
    let spec = format!("unix:{}/vm-%d.sock", dir.display());
    let _s = spawn(&["--machines", "3", "--qmp", &spec]);
    let mut qs: Vec<Qmp> = (0..3)
        .map(|i| Qmp::connect(&dir.join(format!("vm-{i}.sock"))))
        .collect();
    qs[1].ok("stop", json!({}));
    qs[1].event("STOP");
    for (i, q) in qs.iter_mut().enumerate() {
        assert_eq!(
            q.ok("query-name", json!({})),
            json!({"name": format!("vm-{i}")})
        );
        let st = q.ok("query-status", json!({}));
        assert_eq!(st["status"], if i == 1 { "paused" } else { "running" });
    }
    let u0 = qs[0].ok("query-uuid", json!({}));
    let u2 = qs[2].ok("query-uuid", json!({}));
    assert_ne!(u0, u2);
    // The members' servers are siblings: the same schema and command list,
    // each machine's own answers.
    let schema0 = qs[0].ok("query-qmp-schema", json!({}));
    assert!(schema0.as_array().is_some_and(|a| a.len() > 500));
    assert_eq!(qs[2].ok("query-qmp-schema", json!({})), schema0);
    assert_eq!(
        qs[1].ok("query-commands", json!({})),
        qs[2].ok("query-commands", json!({}))
    );
    // One machine quitting leaves the others serving.
    qs[0].ok("quit", json!({}));
    qs[0].event("SHUTDOWN");
    assert!(qs[0].events.iter().all(|e| e["event"] != "STOP"));
    assert_eq!(qs[2].ok("query-status", json!({}))["status"], "running");
    assert!(qs[2].events.is_empty(), "{:?}", qs[2].events);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn toml_machine_file() {
    let dir = tmpdir("toml");
    let sock = dir.join("m.sock");
    let file = dir.join("vm.toml");
    std::fs::write(
        &file,
        format!(
            "name = \"from-file\"\nstart-paused = true\nqmp = [\"unix:{},server=on,wait=off\"]\n[guest]\npowerdown-delay-ms = 10\n",
            sock.display()
        ),
    )
    .unwrap();
    let _s = spawn(&["--config", file.to_str().unwrap()]);
    let mut q = Qmp::connect(&sock);
    assert_eq!(q.ok("query-name", json!({})), json!({"name": "from-file"}));
    assert_eq!(q.ok("query-status", json!({}))["status"], "prelaunch");
    let _ = std::fs::remove_dir_all(&dir);
    let (_, err) = serve_err(&["--config", "/nonexistent/vm.toml"]);
    assert!(err.contains("--config /nonexistent/vm.toml"), "{err}");
}

#[test]
fn daemonize_returns_once_serving() {
    let dir = tmpdir("daemon");
    let sock = dir.join("m.sock");
    let pidfile = dir.join("pid");
    let spec = format!("unix:{},server=on,wait=off", sock.display());
    let st = Command::new(qmpkit())
        .args(["serve", "-daemonize", "-pidfile"])
        .arg(&pidfile)
        .args(["-qmp", &spec, "-watchdog-action", "pause", "-no-acpi"])
        .status()
        .expect("run");
    assert!(st.success());
    // The parent returned after the socket and the pid file were made.
    assert!(sock.exists());
    let pid = std::fs::read_to_string(&pidfile).expect("pid file");
    assert!(pid.trim().parse::<u32>().is_ok(), "{pid}");
    let mut q = Qmp::connect(&sock);
    q.ok("__org.qmpkit_watchdog-fire", json!({}));
    assert_eq!(q.event("WATCHDOG")["data"], json!({"action": "pause"}));
    q.event("STOP");
    assert_eq!(q.ok("query-status", json!({}))["status"], "watchdog");
    // -no-acpi: the power button does nothing.
    q.ok("cont", json!({}));
    q.ok("system_powerdown", json!({}));
    q.event("POWERDOWN");
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(q.ok("query-status", json!({}))["status"], "running");
    q.ok("quit", json!({}));
    q.event("SHUTDOWN");
    assert!(q.read().is_none());
    std::thread::sleep(Duration::from_millis(100));
    assert!(!pidfile.exists());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn test_control_on_an_old_interface() {
    let Some((dir, _s, mut q)) = serve_qemu_1_3("v13tc", &["--test-control", "-no-shutdown"])
    else {
        return;
    };
    q.ok("__org.qmpkit_guest-panic", json!({}));
    // QEMU 1.3 had neither GUEST_PANICKED nor the guest-panicked state:
    // the machine stops in internal-error.
    assert!(q.event("STOP").get("data").is_none());
    assert_eq!(q.event_names(), Vec::<String>::new());
    assert_eq!(q.ok("query-status", json!({}))["status"], "internal-error");
    let r = q.cmd("cont", json!({}));
    assert_eq!(
        r,
        json!({"error": {"class": "GenericError", "desc": "Resetting the Virtual Machine is required"}})
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn fleet_member_keeps_its_state_across_server_release() {
    let dir = tmpdir("release");
    let spec = format!("unix:{}/vm-%d.sock,server=on,wait=off", dir.display());
    let child = Command::new(qmpkit())
        .args(["serve", "--machines", "2", "--qmp", &spec])
        .env("QMPKIT_IDLE_RELEASE_MS", "100")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let _s = Serve { child };
    let sock = dir.join("vm-1.sock");
    let mut q = Qmp::connect(&sock);
    q.ok("stop", json!({}));
    q.event("STOP");
    drop(q);
    // The idle server is released; the machine stays as it was.
    std::thread::sleep(Duration::from_millis(400));
    let mut q = Qmp::connect(&sock);
    assert_eq!(q.ok("query-status", json!({}))["status"], "paused");
    q.ok("cont", json!({}));
    q.event("RESUME");
    // Events from the machine's timers reach the new server's clients.
    q.ok("__org.qmpkit_set-guest", json!({"powerdown-delay-ms": 50}));
    q.ok("system_powerdown", json!({}));
    q.event("POWERDOWN");
    assert_eq!(
        q.event("SHUTDOWN")["data"],
        json!({"guest": true, "reason": "guest-shutdown"})
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The stderr of a `qmpkit serve` after stopping it.
fn stop_and_stderr(mut s: Serve) -> String {
    use std::io::Read;
    let _ = s.child.kill();
    let _ = s.child.wait();
    let mut err = String::new();
    if let Some(mut e) = s.child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    err
}

fn serve_schema_at(tag: &str, schema: &std::path::Path, extra: &[&str]) -> (Serve, Qmp) {
    let dir = tmpdir(tag);
    let sock = dir.join("m.sock");
    let spec = format!("unix:{},server=on,wait=off", sock.display());
    let mut args = vec!["--schema", schema.to_str().unwrap(), "-qmp", &spec];
    args.extend_from_slice(extra);
    let s = spawn(&args);
    let q = Qmp::connect(&sock);
    (s, q)
}

/// QEMU 10.0.2's schema: the version comes from the path (`schema-10.0.2/…`), else
/// from the content (with a note on stderr); `--qemu-version` always wins. Behaviour
/// follows it: system_wakeup on a running guest is an error from QEMU 4.0 on.
#[test]
fn serves_qemu_10_with_its_version() {
    let src = qmpkit_testkit::data::path("qemu-ref/schema-10.0.2/qapi");
    let (s, mut q) = serve_schema_at("v10", &src.join("qapi-schema.json"), &[]);
    assert_eq!(
        q.greeting_line,
        "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 2, \"minor\": 0, \"major\": 10}, \"package\": \"\"}, \"capabilities\": [\"oob\"]}}\r\n"
    );
    assert_eq!(
        q.ok("query-version", json!({}))["qemu"],
        json!({"major": 10, "minor": 0, "micro": 2})
    );
    assert_eq!(
        q.cmd("system_wakeup", json!({})),
        json!({"error": {"class": "GenericError", "desc": "Unable to wake up: guest is not in suspended state"}})
    );
    // No success without behaviour: a command of the schema the machine does not
    // implement says so.
    let schema_arg = src.join("qapi-schema.json");
    let list = handler_list(&["--schema", schema_arg.to_str().unwrap()]);
    let missing = first_answered(&list, "unimplemented", |n| n.starts_with("query-"));
    assert_eq!(
        q.cmd(&missing, json!({})),
        json!({"error": {"class": "GenericError", "desc": format!("Command '{missing}' is not implemented by this simulated machine")}})
    );
    // Block jobs: the machine runs none.
    assert_eq!(
        q.cmd("block-job-cancel", json!({"device": "j0"})),
        json!({"error": {"class": "DeviceNotActive", "desc": "Block job 'j0' not found"}})
    );
    let summary = format!("qmpkit serve: {}", summary_of(&list));
    assert_eq!(stop_and_stderr(s), summary);

    // The same files where the path names no version: inferred from the content.
    let copy = tmpdir("v10copy").join("qapi");
    std::fs::create_dir_all(&copy).unwrap();
    for f in std::fs::read_dir(&src).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, copy.join(f.file_name().unwrap())).unwrap();
    }
    let (s, mut q) = serve_schema_at("v10b", &copy.join("qapi-schema.json"), &[]);
    assert_eq!(
        q.greeting["QMP"]["version"]["qemu"],
        json!({"major": 10, "minor": 0, "micro": 0})
    );
    assert_eq!(
        q.cmd("system_wakeup", json!({}))["error"]["class"],
        "GenericError"
    );
    let err = stop_and_stderr(s);
    assert_eq!(
        err,
        format!("qmpkit serve: note: reporting QEMU 10.0.0, inferred from the schema's content (set it with --qemu-version)\n{summary}")
    );

    // --qemu-version wins over path and content.
    let (s, mut q) = serve_schema_at(
        "v10c",
        &src.join("qapi-schema.json"),
        &["--qemu-version", "3.1.0"],
    );
    assert_eq!(
        q.greeting["QMP"]["version"]["qemu"],
        json!({"major": 3, "minor": 1, "micro": 0})
    );
    // Before 4.0, waking a running guest did nothing and succeeded.
    assert_eq!(q.ok("system_wakeup", json!({})), json!({}));
    assert_eq!(stop_and_stderr(s), summary);
    let _ = std::fs::remove_dir_all(copy.parent().unwrap());
}

/// `--schema` takes a server's `query-qmp-schema` answer: it is served, and
/// query-qmp-schema answers exactly the file's array.
#[test]
fn serves_an_introspection_answer() {
    let answer = qmpkit_testkit::data::path(
        "qemu-ref/introspection/qemu-storage-daemon-10.0.2-query-qmp-schema.json",
    );
    let (s, mut q) = serve_schema_at("answer", &answer, &[]);
    // The file name says 10.0.2.
    assert_eq!(
        q.greeting["QMP"]["version"]["qemu"],
        json!({"major": 10, "minor": 0, "micro": 2})
    );
    let file: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&answer).unwrap()).unwrap();
    assert_eq!(q.ok("query-qmp-schema", json!({})), file["return"]);
    let cmds = q.ok("query-commands", json!({}));
    assert_eq!(cmds.as_array().unwrap().len(), 76);
    // Arguments are validated against the answer's types.
    assert_eq!(
        q.cmd("blockdev-del", json!({"node-name": 1}))["error"]["desc"],
        "Invalid parameter type for 'node-name', expected: string"
    );
    // A command the machine does not implement says so.
    let list = handler_list(&["--schema", answer.to_str().unwrap()]);
    assert_eq!(list.len(), 76);
    let (implemented, builtin) = (count(&list, "handler"), count(&list, "builtin"));
    let unimplemented = count(&list, "unimplemented");
    let missing = list
        .iter()
        .find(|(n, h)| h == "unimplemented" && n.starts_with("query-"))
        .map(|(n, _)| n.clone());
    if let Some(missing) = &missing {
        assert_eq!(
            q.cmd(missing, json!({})),
            json!({"error": {"class": "GenericError", "desc": format!("Command '{missing}' is not implemented by this simulated machine")}})
        );
    }
    assert_eq!(
        stop_and_stderr(s),
        format!("qmpkit serve: {}", summary_of(&list))
    );
    // A mock of the answer: values made up from the return types.
    let (s, mut q) = serve_schema_at("answer-mock", &answer, &["--synthesize"]);
    if let Some(missing) = &missing {
        assert!(q.cmd(missing, json!({})).get("return").is_some());
    }
    assert_eq!(
        stop_and_stderr(s),
        format!("qmpkit serve: 76 commands: {implemented} implemented by the machine, {builtin} built into the protocol, {unimplemented} not implemented and synthesized (--synthesize: they answer a value made up from their return type, without doing anything)\n")
    );
    // Left out: QEMU's answer for a command it lacks.
    let (s, mut q) = serve_schema_at("answer-strict", &answer, &["--strict"]);
    if let Some(missing) = &missing {
        assert_eq!(
            q.cmd(missing, json!({}))["error"]["class"],
            "CommandNotFound"
        );
    }
    assert_eq!(
        stop_and_stderr(s),
        format!("qmpkit serve: {} commands: {implemented} implemented by the machine, {builtin} built into the protocol; {unimplemented} more of the schema not implemented and left out (--strict: they answer CommandNotFound)\n", implemented + builtin)
    );
}

/// Small usage matters: no command is a usage error; machine-file errors,
/// refused addresses and refused device models are one line naming what to change.
#[test]
fn usage_and_one_line_errors() {
    let out = Command::new(qmpkit()).output().expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("usage: qmpkit <command>"), "{err}");

    let dir = tmpdir("usage");
    let vm = dir.join("vm.toml");
    std::fs::write(&vm, "name = \"x\"\ncpus = 2\nmemory = \n").unwrap();
    let (code, err) = serve_err(&["--config", vm.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert_eq!(
        err,
        format!(
            "qmpkit serve: {}:3:10: string values must be quoted, expected literal string\n",
            vm.display()
        )
    );
    std::fs::write(&vm, "cpus = \"two\"\n").unwrap();
    let (code, err) = serve_err(&["--config", vm.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert_eq!(
        err,
        format!(
            "qmpkit serve: {}:1:8: invalid type: string \"two\", expected u32\n",
            vm.display()
        )
    );

    let (code, err) = serve_err(&["-qmp", "tcp:0.0.0.0:0,server=on,wait=off"]);
    assert_eq!(code, 1);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("qmpkit serve: refusing to serve QMP on non-loopback address")
            && err.contains("--allow-remote-tcp"),
        "{err}"
    );

    let (code, err) = serve_err(&["-device", "nosuch,id=zz"]);
    assert_eq!(code, 1);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("qmpkit serve: -device nosuch,id=zz: ") && err.contains("'nosuch'"),
        "{err}"
    );
    // Back ends named by devices are checked once the whole command line is
    // known, whatever the order of the options.
    let (code, err) = serve_err(&["-device", "virtio-blk-pci,drive=d9"]);
    assert_eq!(code, 1);
    assert_eq!(
        err,
        "qmpkit serve: -device virtio-blk-pci,drive=d9: Property 'virtio-blk-device.drive' can't find value 'd9'\n"
    );
    let (code, err) = serve_err(&[
        "-device",
        "e1000,netdev=later",
        "-netdev",
        "user,id=later",
        "--list-handlers",
    ]);
    assert_eq!(code, 0, "{err}");
    // A machine file goes through the same checks.
    std::fs::write(&vm, "[[devices]]\ndriver = \"nosuch\"\n").unwrap();
    let (code, err) = serve_err(&["--config", vm.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("qmpkit serve: ") && err.contains("'nosuch'"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
