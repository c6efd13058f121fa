//! `qmpkit schema check` on QEMU 10.0.2's system schema as a whole process (start-up,
//! loading, checking, exit), beside `qmpkit --version` (the binary's start-up alone) and, as
//! peers, QEMU's own Python front end doing the same check as a process and Python's own
//! start-up (`python3 -c pass`, a floor for any Python tool).
//!
//! QEMU's front end is not on this machine: it runs only when `QMPKIT_QEMU_QAPI` (or
//! `QMPKIT_QEMU_SCRIPTS`) names QEMU's `scripts/` directory (the one holding the `qapi`
//! package); otherwise the table says the peer is absent. The commands are run in turns
//! (one of each per round), so that what else the machine does falls on all of them alike;
//! each figure is the minimum and the median of its runs, in ms of wall-clock time.
//!
//! With valgrind on the machine, the instructions both qmpkit processes execute are counted
//! too (callgrind): a figure that does not depend on the machine's load.
//!
//! Goal: `qmpkit schema check` under 5 ms (median).

use serde_json::{json, Map, Value};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Instant;

const ROUNDS: usize = 60;
const GOAL_MS: f64 = 5.0;

/// The `qmpkit` binary next to this harness (`cargo build --release` builds both).
fn qmpkit_bin() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let p = exe.parent()?.join("qmpkit");
    p.exists().then_some(p)
}

struct Case {
    label: String,
    cmd: Command,
    samples: Vec<f64>,
    failed: Option<String>,
}

impl Case {
    fn new(label: impl Into<String>, program: impl Into<PathBuf>, args: &[String]) -> Case {
        let mut cmd = Command::new(program.into());
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        Case {
            label: label.into(),
            cmd,
            samples: Vec::new(),
            failed: None,
        }
    }

    fn run_once(&mut self) {
        if self.failed.is_some() {
            return;
        }
        let t = Instant::now();
        match self.cmd.output() {
            Ok(o) if o.status.success() => {
                self.samples.push(t.elapsed().as_secs_f64() * 1e3);
            }
            Ok(o) => {
                self.failed = Some(format!(
                    "{}: {}",
                    o.status,
                    String::from_utf8_lossy(&o.stderr).trim()
                ))
            }
            Err(e) => self.failed = Some(e.to_string()),
        }
    }

    /// (min, median) in ms.
    fn figures(&self) -> Option<(f64, f64)> {
        let mut s = self.samples.clone();
        s.sort_by(f64::total_cmp);
        Some((*s.first()?, s[s.len() / 2]))
    }
}

/// The Python interpreter itself (`python3` may be a wrapper script, e.g. pyenv's shim,
/// whose own start-up is no part of Python's).
fn python() -> PathBuf {
    Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|p| !p.is_empty())
        .map_or_else(|| PathBuf::from("python3"), PathBuf::from)
}

pub fn run(results: &mut Map<String, Value>) {
    println!();
    println!("== schema check as a process (QEMU 10.0.2 system schema) ==");
    let Some(bin) = qmpkit_bin() else {
        println!("skipped: no qmpkit binary next to the harness (cargo build --release -p qmpkit)");
        return;
    };
    let schema = qmpkit_testkit::data::dir().join("qemu-ref/schema-10.0.2/qapi/qapi-schema.json");
    let file = schema.to_string_lossy().into_owned();
    let py = python();
    let mut cases = vec![
        Case::new(
            "qmpkit schema check",
            &bin,
            &["schema".into(), "check".into(), file.clone()],
        ),
        Case::new("qmpkit --version (start-up)", &bin, &["--version".into()]),
        Case::new(
            "python3 -c pass (Python start-up)",
            "python3",
            &["-c".into(), "pass".into()],
        ),
    ];
    let scripts = std::env::var("QMPKIT_QEMU_QAPI")
        .or_else(|_| std::env::var("QMPKIT_QEMU_SCRIPTS"))
        .ok();
    match &scripts {
        Some(dir) => {
            let code = format!(
                "import sys\nsys.path.insert(0, {dir:?})\nfrom qapi.schema import QAPISchema\nQAPISchema({file:?})\n"
            );
            cases.push(Case::new(
                "QEMU's Python front end (QAPISchema)",
                &py,
                &["-c".into(), code],
            ));
        }
        None => println!(
            "QEMU's Python front end: absent (set QMPKIT_QEMU_QAPI to QEMU's scripts/ directory)"
        ),
    }
    // Warm the page cache and the binaries, then measure in turns.
    for c in &mut cases {
        c.run_once();
        c.samples.clear();
    }
    for _ in 0..ROUNDS {
        for c in &mut cases {
            c.run_once();
        }
    }
    println!(
        "{:<40} {:>9} {:>10}",
        format!("process ({ROUNDS} runs each, in turns)"),
        "min ms",
        "median ms"
    );
    let mut out = Map::new();
    for c in &cases {
        if let Some(e) = &c.failed {
            println!("{:<40} failed: {e}", c.label);
            continue;
        }
        if let Some((min, median)) = c.figures() {
            println!("{:<40} {min:>9.2} {median:>10.2}", c.label);
            out.insert(
                c.label.clone(),
                json!({"min_ms": (min * 100.0).round() / 100.0, "median_ms": (median * 100.0).round() / 100.0}),
            );
        }
    }
    let ours = cases[0].figures().filter(|_| cases[0].failed.is_none());
    if let Some((_, median)) = ours {
        let verdict = if median < GOAL_MS { "met" } else { "NOT met" };
        println!("goal: qmpkit schema check < {GOAL_MS} ms (median): {median:.2} ms {verdict}");
        out.insert(
            "goal_check_ms".into(),
            json!({"goal": format!("< {GOAL_MS}"), "value": (median * 100.0).round() / 100.0, "met": median < GOAL_MS}),
        );
        if let Some(qemu) = cases.get(3).and_then(Case::figures) {
            println!(
                "QEMU's Python front end / qmpkit (median): {:.0}x",
                qemu.1 / median
            );
            out.insert(
                "ratio_qemu_python_over_ours".into(),
                json!((qemu.1 / median * 10.0).round() / 10.0),
            );
        } else {
            out.insert("qemu_python".into(), json!("absent"));
        }
    }
    // Instructions executed, whole process (start-up included): a figure that does not
    // depend on what else the machine is doing, when valgrind is there to count them.
    let count = |args: &[&str]| -> Option<u64> {
        let o = Command::new("valgrind")
            .args(["--tool=callgrind", "--callgrind-out-file=/dev/null"])
            .arg(&bin)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .output()
            .ok()?;
        let err = String::from_utf8_lossy(&o.stderr);
        let line = err.lines().find(|l| l.contains("Collected :"))?;
        line.rsplit(':')
            .next()?
            .trim()
            .replace(',', "")
            .parse()
            .ok()
    };
    match (count(&["schema", "check", &file]), count(&["--version"])) {
        (Some(check), Some(start)) => {
            println!(
                "instructions (callgrind): qmpkit schema check {:.2} M, of which start-up (qmpkit --version) {:.2} M",
                check as f64 / 1e6,
                start as f64 / 1e6
            );
            out.insert(
                "instructions".into(),
                json!({"schema_check": check, "start_up": start}),
            );
        }
        _ => println!("instructions: not counted (no valgrind)"),
    }
    results.insert("schema_process".into(), Value::Object(out));
}
