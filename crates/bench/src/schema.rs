//! Schema front end: parse + check of QEMU 10.0.2's whole system schema
//! (about 1 060 expressions in ~40 files), and parse + check + introspect +
//! serialise. Like QEMU's own front end, every iteration reads the files
//! from disk in-process (the disk cache is warm after the warm-up runs);
//! process startup is not measured, nor is freeing the result. Each figure
//! is the minimum (best) of the iterations, with the median beside it.
//!
//! The peer is QEMU's own Python front end (`qapi.schema.QAPISchema`); it
//! is measured when `python3` can import QEMU's `qapi` package (set
//! `QMPKIT_QEMU_SCRIPTS` to QEMU's `scripts/` directory), otherwise the
//! reference figure from the issue (230 ms) is printed and labelled as such.

use qmpkit_schema::{introspect, Dialect, DirProvider, MemoryProvider};
use serde_json::{json, Map, Value};
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::Instant;

const REFERENCE_PYTHON_MS: f64 = 230.0;

fn schema_root() -> PathBuf {
    qmpkit_testkit::data::dir().join("qemu-ref/schema-10.0.2")
}

/// Every `.json` file under `dir`, keyed by its path relative to `root`.
fn collect(root: &Path, dir: &Path, out: &mut MemoryProvider, bytes: &mut usize) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            collect(root, &p, out, bytes);
        } else if p.extension().is_some_and(|x| x == "json") {
            if let (Ok(text), Ok(rel)) = (std::fs::read_to_string(&p), p.strip_prefix(root)) {
                *bytes += text.len();
                out.add(&rel.to_string_lossy(), text);
            }
        }
    }
}

/// Best and median of a run's samples, in ms.
#[derive(Debug, Clone, Copy)]
struct Timing {
    min: f64,
    median: f64,
}

fn summarise(mut samples: Vec<f64>) -> Timing {
    samples.sort_by(|a, b| a.total_cmp(b));
    Timing {
        min: samples.first().copied().unwrap_or(f64::NAN),
        median: samples.get(samples.len() / 2).copied().unwrap_or(f64::NAN),
    }
}

/// Time of `f` (best and median); what it returns is freed after the
/// clock stops (freeing is not the work measured), `None` means it failed.
fn time<T>(iters: usize, mut f: impl FnMut() -> Option<T>) -> Option<Timing> {
    // Warm up, and make sure it works at all.
    for _ in 0..3 {
        f()?;
    }
    let mut samples = Vec::with_capacity(iters);
    for _ in 0..iters {
        let t = Instant::now();
        let r = black_box(f());
        samples.push(t.elapsed().as_secs_f64() * 1e3);
        drop(r);
    }
    Some(summarise(samples))
}

/// Time QEMU's Python front end, if its `qapi` package is importable.
fn python_ms() -> Option<f64> {
    let scripts = std::env::var("QMPKIT_QEMU_SCRIPTS").ok()?;
    let main = schema_root().join("qapi/qapi-schema.json");
    let code = format!(
        "import sys, time\nsys.path.insert(0, {scripts:?})\nfrom qapi.schema import QAPISchema\n\
         ts=[]\nfor i in range(7):\n    t=time.perf_counter(); QAPISchema({main:?}); ts.append(time.perf_counter()-t)\n\
         ts.sort(); print(ts[len(ts)//2]*1000)\n",
        main = main.to_string_lossy()
    );
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(code)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

/// Goals for the two end-to-end figures (ms, best of the iterations).
const GOAL_PARSE_CHECK_MS: f64 = 3.0;
const GOAL_INTROSPECT_MS: f64 = 5.0;

pub fn run(results: &mut Map<String, Value>) {
    println!("== schema front end (QEMU 10.0.2 system schema) ==");
    let root = schema_root();
    let mut files = MemoryProvider::new();
    let mut bytes = 0usize;
    collect(&root, &root, &mut files, &mut bytes);
    let main = "qapi/qapi-schema.json";
    let exprs = match qmpkit_schema::parse_schema(main, Dialect::Modern, &files) {
        Ok(p) => p.exprs.len(),
        Err(e) => {
            println!("skipped: cannot load {}: {e}", root.join(main).display());
            return;
        }
    };
    println!("input: {exprs} expressions, {} KB", bytes / 1024);
    // What is timed reads the files from disk, as QEMU does.
    let disk = DirProvider::new(&root);

    let iters = 200;
    let parse = time(iters, || {
        qmpkit_schema::parse_schema(main, Dialect::Modern, &disk).ok()
    });
    let check = time(iters, || {
        qmpkit_schema::load_from(main, Dialect::Modern, &disk).ok()
    });
    let opts = introspect::Options::default();
    let intro = time(iters, || {
        let s = qmpkit_schema::load_from(main, Dialect::Modern, &disk).ok()?;
        // The same text as `to_json_text(&introspect(..))`, written directly.
        let text = introspect::introspect_json_text(&s, &opts);
        Some((s, text))
    });
    let (Some(parse), Some(check), Some(intro)) = (parse, check, intro) else {
        println!("skipped: the schema does not load");
        return;
    };
    let (py, py_label) = match python_ms() {
        Some(ms) => (ms, "QEMU python (measured)"),
        None => (REFERENCE_PYTHON_MS, "QEMU python (reference)"),
    };
    let goal = |t: Timing, g: f64| {
        let verdict = if t.min < g { "met" } else { "NOT met" };
        format!("< {g} ms ({verdict})")
    };
    println!(
        "{:<44} {:>9} {:>9}  goal (on min)",
        format!("case (files read from disk, {iters} runs)"),
        "min ms",
        "median ms"
    );
    println!(
        "{:<44} {:>9.3} {:>9.3}  {}",
        "parse + check (qmpkit)",
        check.min,
        check.median,
        goal(check, GOAL_PARSE_CHECK_MS)
    );
    println!(
        "{:<44} {:>9.3} {:>9.3}",
        "  of which parse (front end)", parse.min, parse.median
    );
    // Differences of separate runs: under load the medians can cross.
    let diff = |a: f64, b: f64| {
        if a >= b {
            format!("{:.3}", a - b)
        } else {
            "n/a".to_string()
        }
    };
    println!(
        "{:<44} {:>9} {:>9}",
        "  of which model and checks",
        diff(check.min, parse.min),
        diff(check.median, parse.median)
    );
    println!(
        "{:<44} {:>9.3} {:>9.3}  {}",
        "parse + check + introspect + JSON (qmpkit)",
        intro.min,
        intro.median,
        goal(intro, GOAL_INTROSPECT_MS)
    );
    println!(
        "{:<44} {:>9} {:>9.3}",
        format!("parse + check, {py_label}"),
        "",
        py
    );
    println!(
        "speed-up vs QEMU python (median against median): {:.0}x",
        py / check.median
    );
    results.insert(
        "schema".to_string(),
        json!({
            "statistic": "min",
            "parse_ms": parse.min,
            "parse_check_ms": check.min,
            "introspect_ms": intro.min,
            "parse_median_ms": parse.median,
            "parse_check_median_ms": check.median,
            "introspect_median_ms": intro.median,
            "goal_parse_check_ms": GOAL_PARSE_CHECK_MS,
            "goal_introspect_ms": GOAL_INTROSPECT_MS,
            "python_ms": py,
            "python_measured": py_label.contains("measured"),
            "ratio_vs_python": check.median / py,
        }),
    );
}
