//! `qmpkit shell`: on a terminal (tmux: completion of an argument name, a union branch's member,
//! an enum value and live values (drives, device and object ids); an event arriving while a line is half typed; `help`; history; the progress bars of a block job
//! and of a migration),
//! piped like qmp-shell, and qmp-shell's documented inputs sending the same requests as qmp-shell.

#[path = "tools_support/mod.rs"]
mod support;

use serde_json::Value;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::*;

/// A tmux server of the test's own, killed on drop.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn start(tag: &str, command: &str) -> Tmux {
        let t = Tmux {
            socket: format!("qmpkit-test-{tag}-{}", std::process::id()),
        };
        let ok = Command::new("tmux")
            .args([
                "-L",
                &t.socket,
                "new-session",
                "-d",
                "-s",
                "s",
                "-x",
                "160",
                "-y",
                "45",
                command,
            ])
            .status()
            .expect("tmux");
        assert!(ok.success());
        t
    }

    fn keys(&self, keys: &[&str]) {
        let ok = Command::new("tmux")
            .args(["-L", &self.socket, "send-keys", "-t", "s"])
            .args(keys)
            .status()
            .expect("tmux send-keys");
        assert!(ok.success());
    }

    fn screen(&self) -> String {
        let out = Command::new("tmux")
            .args(["-L", &self.socket, "capture-pane", "-p", "-t", "s"])
            .output()
            .expect("tmux capture-pane");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The screen once `pred` holds for it.
    fn wait(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let t = Instant::now();
        loop {
            let s = self.screen();
            if pred(&s) {
                return s;
            }
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "waiting for {what}; screen:\n{s}"
            );
            std::thread::sleep(Duration::from_millis(30));
        }
    }

    /// The screen once its last non-empty line is `line`.
    fn wait_line(&self, line: &str) -> String {
        self.wait(line, |s| last_line(s) == line)
    }
}

fn last_line(s: &str) -> &str {
    s.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim_end()
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .status();
    }
}

#[test]
fn on_a_terminal_completion_events_and_help() {
    let _tmux = qmpkit_testkit::program_or_skip!("tmux");
    let dir = TempDir::new("shell-tmux");
    let sock = dir.join("m.sock");
    let _m = serve(&sock);
    let state = dir.join("state");
    let t = Tmux::start(
        "term",
        &format!(
            "env XDG_STATE_HOME={} {} shell {}",
            state.display(),
            qmpkit().display(),
            sock.display()
        ),
    );
    t.wait_line("(QEMU)");
    assert!(t.screen().contains("connected to QEMU 2.12.0"));

    // An argument name, a live value (the machine's drives), an enum value.
    t.keys(&["blockdev-backup dev", "Tab"]);
    t.wait_line("(QEMU) blockdev-backup device=");
    t.keys(&["ide0", "Tab"]);
    t.wait_line("(QEMU) blockdev-backup device=ide0-hd0");
    t.keys(&[" sync=f", "Tab"]);
    t.wait_line("(QEMU) blockdev-backup device=ide0-hd0 sync=full");
    // Two tabs list the values when there are several.
    t.keys(&["C-u", "blockdev-backup sync=", "Tab", "Tab"]);
    t.wait("the sync values", |s| {
        s.lines().any(|l| {
            let mut w: Vec<&str> = l.split_whitespace().collect();
            w.sort();
            w == ["bitmap", "full", "incremental", "none", "top"]
        })
    });
    // A union's members once its discriminator is typed.
    t.keys(&["C-u", "blockdev-add driver=null-co lat", "Tab"]);
    t.wait_line("(QEMU) blockdev-add driver=null-co latency-ns=");
    // The machine's own device and object ids.
    t.keys(&["C-u", "device_del id=bal", "Tab"]);
    t.wait_line("(QEMU) device_del id=balloon0");
    t.keys(&["C-u", "object-del id=me", "Tab"]);
    t.wait_line("(QEMU) object-del id=mem1");

    // An event arrives while a line is half typed: shown above it, the line kept.
    t.keys(&["C-u", "query-sta"]);
    t.wait_line("(QEMU) query-sta");
    let o = run(&["qmp", sock.to_str().expect("path"), "stop"], "");
    assert_eq!(o.code, 0, "{o:?}");
    let s = t.wait("the STOP event", |s| s.contains("\"event\": \"STOP\""));
    let s = if last_line(&s) == "(QEMU) query-sta" {
        s
    } else {
        t.wait_line("(QEMU) query-sta")
    };
    let lines: Vec<&str> = s.lines().filter(|l| !l.trim().is_empty()).collect();
    let n = lines.len();
    assert!(lines[n - 2].contains("\"event\": \"STOP\""), "{s}");
    t.keys(&["Tab", "Enter"]);
    t.wait("query-status's reply", |s| {
        s.contains("\"status\": \"paused\"")
    });

    // help: a one-line signature.
    t.keys(&["help blockdev-backup", "Enter"]);
    let s = t.wait("help", |s| {
        s.contains("blockdev-backup job-id?: str, device: str")
    });
    assert!(s.contains("sync: top|full|none|incremental|bitmap"), "{s}");
    t.keys(&["C-d"]);
    // History is kept per server.
    let hist = state.join("qmpkit/history");
    let t0 = Instant::now();
    loop {
        let files: Vec<_> = std::fs::read_dir(&hist)
            .map(|d| d.flatten().collect())
            .unwrap_or_default();
        if let Some(f) = files.first() {
            let text = std::fs::read_to_string(f.path()).unwrap_or_default();
            if text.contains("help blockdev-backup") {
                assert!(f.file_name().to_string_lossy().contains("m.sock"));
                break;
            }
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "no history file in {}",
            hist.display()
        );
        std::thread::sleep(Duration::from_millis(30));
    }
}

#[test]
fn piped_input_behaves_like_qmp_shell() {
    let program = qmpkit_testkit::program_or_skip!("qemu-storage-daemon");
    let dir = TempDir::new("shell-piped");
    let sock = dir.join("qsd.sock");
    let _q = qsd(&program, &sock);
    let log = dir.join("log.jsonl");
    let input = "\
blockdev-add driver=null-co node-name=src size=1048576
blockdev-add driver=null-co node-name=dst size=1048576
blockdev-backup job-id=j0 device=src target=dst sync=full
blockdev-del node-name=nope
bogus x
";
    let o = run(
        &[
            "shell",
            sock.to_str().expect("path"),
            "--logfile",
            log.to_str().expect("path"),
        ],
        input,
    );
    assert_eq!(o.code, 0, "{o:?}");
    assert!(
        o.stdout
            .starts_with("qmpkit shell: connected to QEMU 10.0.2"),
        "{o:?}"
    );
    let replies: Vec<&str> = o.stdout.split("(QEMU) ").skip(1).map(str::trim).collect();
    assert_eq!(replies.len(), 6, "{o:?}");
    assert_eq!(replies[..3], ["{\"return\": {}}"; 3]);
    assert_eq!(
        replies[3],
        "{\"error\": {\"class\": \"GenericError\", \"desc\": \"Failed to find node with node-name='nope'\"}}"
    );
    assert_eq!(
        replies[4],
        "Error while parsing command line: 'x': expected KEY=VALUE"
    );
    assert_eq!(replies[5], "");

    // An empty line shows the events received so far; the session log replays.
    std::thread::sleep(Duration::from_millis(100));
    let o = run(
        &["shell", sock.to_str().expect("path"), "--events", "JOB_*"],
        "query-jobs\n\n",
    );
    assert_eq!(o.code, 0, "{o:?}");
    let recs = json_lines(&std::fs::read_to_string(&log).expect("log"));
    assert!(recs
        .iter()
        .any(|r| r["dir"] == "in" && r["msg"]["execute"] == "blockdev-backup"));
    assert!(recs
        .iter()
        .any(|r| r["dir"] == "out" && r["msg"]["QMP"].is_object()));

    let o = run(&["shell", "--sim", "--pretty"], "stop\n\nquery-status\n");
    assert_eq!(o.code, 0, "{o:?}");
    assert!(
        o.stdout
            .contains("(QEMU) {\n    \"return\": {}\n}\n(QEMU) {\n    \"timestamp\""),
        "{}",
        o.stdout
    );
    assert!(o.stdout.contains("\"status\": \"paused\""), "{}", o.stdout);
    let o = run(&["shell", "--sim", "-H"], "info status\n");
    assert!(o.stdout.contains("(QEMU) VM status: running"), "{o:?}");
}

/// The requests a client sent through a recording proxy (ids, negotiation and the shells'
/// own start-up queries left out).
fn requests(record: &Path, client: u64) -> Vec<Value> {
    json_lines(&std::fs::read_to_string(record).expect("record"))
        .into_iter()
        .filter(|r| r["client"] == client && r["dir"] == "in" && r.get("msg").is_some())
        .map(|r| {
            let mut m = r["msg"].clone();
            if let Some(o) = m.as_object_mut() {
                o.remove("id");
            }
            m
        })
        .filter(|m| {
            !matches!(
                m["execute"].as_str(),
                Some("qmp_capabilities" | "query-commands" | "query-qmp-schema")
            )
        })
        .collect()
}

#[test]
fn qmp_shell_documented_inputs_make_the_same_requests() {
    let py = qmpkit_testkit::python_or_skip!();
    let dir = TempDir::new("shell-same");
    let sock = dir.join("m.sock");
    let _m = serve(&sock);
    let psock = dir.join("p.sock");
    let rec = dir.join("rec.jsonl");
    let _p = Proc(
        Command::new(qmpkit())
            .args(["proxy", "--upstream"])
            .arg(&sock)
            .arg("--listen")
            .arg(&psock)
            .arg("--record")
            .arg(&rec)
            .stderr(Stdio::null())
            .spawn()
            .expect("proxy"),
    );
    wait_for(&psock);
    // The examples of qmp-shell's documentation (the literal one with ':' for its '=' typo).
    let input = "\
device_add driver=e1000 id=net1
example-command arg-name1={'key':'value','obj':{'prop':\"value\"}}
transaction(
block-dirty-bitmap-add node=drive0 name=bitmap1
block-dirty-bitmap-clear node=drive0 name=bitmap0
)
transaction( block-dirty-bitmap-add node=drive0 name=bitmap2 )
query-status
qom-get path=/machine property=type
x-cmd n=42 neg=-1 t=true f=False l=[1,'a',None,true] o={\"a\":{\"b\":[]}}
";
    let out = qmpkit_testkit::python::run_qmp_shell(&py, &psock, input.as_bytes());
    assert!(out.contains("(QEMU) "), "{out}");
    let o = run(&["shell", psock.to_str().expect("path")], input);
    assert_eq!(o.code, 0, "{o:?}");
    let theirs = requests(&rec, 1);
    let ours = requests(&rec, 2);
    assert_eq!(theirs.len(), 7, "{theirs:?}");
    assert_eq!(ours, theirs);
    assert_eq!(
        theirs[2]["arguments"]["actions"][1],
        serde_json::json!({"type": "block-dirty-bitmap-clear", "data": {"node": "drive0", "name": "bitmap0"}})
    );
}

/// The screen of a shell on `sock` (no events shown) once `line` has run with a bar called
/// `name` to its end: the bar was drawn at least once before 100 %, its text `msg`.
fn progress_of(tag: &str, sock: &str, line: &str, name: &str, msg: &str) -> String {
    let t = Tmux::start(
        tag,
        &format!(
            "{} shell --no-history --events none {sock}",
            qmpkit().display()
        ),
    );
    t.wait_line("(QEMU)");
    t.keys(&[line, "Enter"]);
    let done = format!("{name} [##############################] 100% {msg}");
    let screen = t.wait("the finished bar", |s| s.contains(&done));
    let bars: Vec<&str> = screen
        .lines()
        .filter(|l| l.starts_with(&format!("{name} [")))
        .collect();
    assert!(bars.len() >= 2, "{screen}");
    assert!(
        bars.iter()
            .any(|l| !l.contains("100%") && l.ends_with(&format!("% {msg}"))),
        "{screen}"
    );
    screen
}

#[test]
fn on_a_terminal_a_block_job_shows_a_progress_bar() {
    let _tmux = qmpkit_testkit::program_or_skip!("tmux");
    let program = qmpkit_testkit::program_or_skip!("qemu-storage-daemon");
    let dir = TempDir::new("shell-bars");
    let sock = dir.join("qsd.sock");
    let _q = qsd(&program, &sock);
    let s = sock.to_str().expect("path");
    for node in ["src", "dst"] {
        let o = run(
            &[
                "qmp",
                s,
                "blockdev-add",
                "driver=null-co",
                &format!("node-name={node}"),
                "size=268435456",
            ],
            "",
        );
        assert_eq!(o.code, 0, "{o:?}");
    }
    // 256 MiB at 128 MiB/s: about two seconds of progress.
    let screen = progress_of(
        "bars",
        s,
        "blockdev-backup job-id=j0 device=src target=dst sync=full speed=134217728",
        "job j0",
        "backup",
    );
    assert!(
        !screen.contains("JOB_STATUS_CHANGE"),
        "--events none: {screen}"
    );
}

#[test]
fn on_a_terminal_a_migration_shows_a_progress_bar() {
    let _tmux = qmpkit_testkit::program_or_skip!("tmux");
    let dir = TempDir::new("shell-migration-bar");
    let sock = dir.join("m.sock");
    let mut c = Command::new(qmpkit());
    c.args(["serve", "-m", "16", "--qmp"])
        .arg(format!("unix:{},server=on,wait=off", sock.display()));
    let _m = monitor(c, &sock);
    let s = sock.to_str().expect("path");
    // The bar follows the MIGRATION events (capability `events`). The guest's 16 MiB hold
    // about 8 MiB of content to send at 4 MB/s: some two seconds of progress.
    for (cmd, arg) in [
        (
            "migrate-set-capabilities",
            r#"capabilities=[{"capability": "events", "state": true}]"#,
        ),
        ("migrate-set-parameters", "max-bandwidth=4000000"),
    ] {
        let o = run(&["qmp", s, cmd, arg], "");
        assert_eq!(o.code, 0, "{o:?}");
    }
    let screen = progress_of(
        "migration-bar",
        s,
        "migrate uri=exec:cat>/dev/null",
        "migration",
        "active",
    );
    assert!(!screen.contains("\"MIGRATION\""), "--events none: {screen}");
    let o = run(&["qmp", s, "query-migrate"], "");
    let info: Value = serde_json::from_str(&o.stdout).expect("query-migrate");
    assert_eq!(info["status"], "completed", "{o:?}");
}
