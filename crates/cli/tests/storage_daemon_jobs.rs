//! Block jobs side by side: the live qemu-storage-daemon 10.0.2 and `qmpkit storage-daemon`
//! over the same image files get the same scripted requests (stream, commit, mirror and
//! backup jobs, their filter nodes in the graph while they run and after, backups by a dirty
//! bitmap and the bitmap's state); every reply and event must be the same, in order.
//!
//! Normalised: the two directories' paths, event timestamps, files' `actual-size`, and the
//! random digits of generated `#blockNNN` names (each daemon's names are numbered in the
//! order they first appear). Skipped without qemu-storage-daemon 10.0.2, qemu-img or qemu-io.

#[macro_use]
#[path = "storage_daemon_support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::Qmp;

/// One daemon under test, with the `#blockNNN` names it used, in order.
struct Side {
    q: Qmp,
    dir: PathBuf,
    names: HashMap<String, usize>,
    /// Events since the last comparison.
    events: Vec<Value>,
}

impl Side {
    fn norm(&mut self, text: &str) -> Value {
        let text = text.replace(&*self.dir.to_string_lossy(), "$DIR");
        let mut v: Value = serde_json::from_str(&text).expect("JSON");
        fn walk(v: &mut Value, names: &mut HashMap<String, usize>) {
            match v {
                Value::Object(m) => {
                    m.remove("actual-size");
                    m.remove("timestamp");
                    m.values_mut().for_each(|x| walk(x, names));
                }
                Value::Array(a) => a.iter_mut().for_each(|x| walk(x, names)),
                Value::String(s) if s.contains("#block") => {
                    // Every `#blockNNN` in the text, whole or within words.
                    let mut out = String::new();
                    let mut rest = s.as_str();
                    while let Some(at) = rest.find("#block") {
                        out.push_str(&rest[..at]);
                        let tail = &rest[at + 6..];
                        let digits = tail.len()
                            - tail.trim_start_matches(|c: char| c.is_ascii_digit()).len();
                        let name = &rest[at..at + 6 + digits];
                        let n = names.len();
                        let k = *names.entry(name.to_string()).or_insert(n);
                        out.push_str(&format!("#node{k}"));
                        rest = &tail[digits..];
                    }
                    out.push_str(rest);
                    *s = out;
                }
                _ => {}
            }
        }
        walk(&mut v, &mut self.names);
        v
    }

    /// The generated name of the qcow2 node of `file` (this daemon's own random digits).
    fn node_of(&mut self, file: &str) -> String {
        let r = self
            .q
            .ok(r#"{"execute": "query-named-block-nodes", "arguments": {"flat": true}}"#);
        r.as_array()
            .unwrap()
            .iter()
            .find(|n| n["drv"] == "qcow2" && n["file"].as_str().unwrap_or("").ends_with(file))
            .and_then(|n| n["node-name"].as_str())
            .unwrap_or("none")
            .to_string()
    }

    /// The reply and the events before it, normalised. `@MID@` names the node of
    /// mid.qcow2. Of `query-named-block-nodes`, what jobs change is compared: names,
    /// drivers, files, read-only, backing depth, bitmaps and the image's format, size and
    /// backing format.
    fn call(&mut self, req: &Value) -> (Value, Vec<Value>) {
        let mut plain = req.clone();
        if let Some(m) = plain.as_object_mut() {
            m.remove("full");
        }
        let mut text = plain
            .to_string()
            .replace("@DIR@", &self.dir.to_string_lossy());
        if text.contains("@MID@") {
            let mid = self.node_of("/mid.qcow2");
            text = text.replace("@MID@", &mid);
        }
        let (r, ev) = self.q.send(&text);
        let mut r = self.norm(&r);
        // `"full": true` beside the request: the whole reply is compared.
        if req["execute"] == "query-named-block-nodes" && req["full"] != true {
            if let Some(list) = r["return"].as_array_mut() {
                for n in list {
                    let keep = |n: &Value| {
                        json!({
                            "node-name": n["node-name"], "drv": n["drv"], "file": n["file"],
                            "ro": n["ro"], "backing_file_depth": n["backing_file_depth"],
                            "dirty-bitmaps": n["dirty-bitmaps"],
                            "format": n["image"]["format"], "size": n["image"]["virtual-size"],
                            "backing-format": n["image"]["backing-filename-format"],
                        })
                    };
                    *n = keep(n);
                }
            }
        }
        let ev = ev.iter().map(|e| self.norm(e)).collect();
        (r, ev)
    }

    /// The counter of the next generated node name: a raw node over an implicit file node
    /// (on `probe.raw`) is added, its file node's name read and the node deleted again.
    fn names_used(&mut self) -> u64 {
        let file = self.dir.join("probe.raw");
        std::fs::write(&file, [0u8; 512]).unwrap();
        let add = json!({"execute": "blockdev-add", "arguments": {"driver": "raw",
            "node-name": "probe", "file": {"driver": "file", "filename": file}}});
        let (r, ev) = self.q.send(&add.to_string());
        let ev: Vec<Value> = ev.iter().map(|e| self.norm(e)).collect();
        self.events.extend(ev);
        assert_eq!(r, r#"{"return": {}}"#, "probe node");
        let list = self
            .q
            .ok(r#"{"execute": "query-named-block-nodes", "arguments": {"flat": true}}"#);
        let name = list
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["drv"] == "file" && n["file"].as_str() == file.to_str())
            .and_then(|n| n["node-name"].as_str())
            .unwrap_or_default()
            .to_string();
        let del = r#"{"execute": "blockdev-del", "arguments": {"node-name": "probe"}}"#;
        let (_, ev) = self.q.send(del);
        let ev: Vec<Value> = ev.iter().map(|e| self.norm(e)).collect();
        self.events.extend(ev);
        let digits = name.trim_start_matches("#block");
        // The last two digits are random.
        digits[..digits.len().saturating_sub(2)]
            .parse()
            .unwrap_or(0)
    }

    /// Polls `query-jobs` until job `id` made progress (a speed-limited job's first chunk);
    /// the events meanwhile.
    fn moved(&mut self, id: &str) -> Vec<Value> {
        let t = Instant::now();
        let mut events = Vec::new();
        loop {
            let (r, ev) = self.call(&json!({"execute": "query-jobs"}));
            events.extend(ev);
            let jobs = r["return"].as_array().cloned().unwrap_or_default();
            let job = jobs.iter().find(|j| j["id"] == id);
            if job.is_none_or(|j| j["current-progress"].as_u64().unwrap_or(0) > 0) {
                let (_, ev) = self.call(&json!({"execute": "query-version"}));
                events.extend(ev);
                return events;
            }
            assert!(
                t.elapsed() < Duration::from_secs(20),
                "job {id} never made progress"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Polls `query-jobs` until job `id` is in `status` (or gone, for "null"); the events
    /// meanwhile.
    fn wait(&mut self, id: &str, status: &str) -> Vec<Value> {
        let t = Instant::now();
        let mut events = Vec::new();
        loop {
            let (r, ev) = self.call(&json!({"execute": "query-jobs"}));
            events.extend(ev);
            let jobs = r["return"].as_array().cloned().unwrap_or_default();
            let now = jobs
                .iter()
                .find(|j| j["id"] == id)
                .map(|j| j["status"].as_str().unwrap_or("").to_string())
                .unwrap_or_else(|| "null".into());
            if now == status {
                let (_, ev) = self.call(&json!({"execute": "query-version"}));
                events.extend(ev);
                return events;
            }
            assert!(
                t.elapsed() < Duration::from_secs(20),
                "job {id} never became {status}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

fn make_images(img: &Path, io: &Path, dir: &Path) {
    for file in ["base.qcow2", "tgt.qcow2", "tgt2.qcow2"] {
        let args = ["create", "-q", "-f", "qcow2", file, "1M"];
        let (code, _, err) = qmpkit_testkit::cmd::run_in(img, dir, &args);
        assert_eq!(code, 0, "qemu-img {args:?}: {err}");
    }
    let layers = ["mid.qcow2", "top.qcow2"];
    qmpkit_testkit::cmd::qcow2_chain(img, dir, "base.qcow2", "qcow2", &layers, Some("1M"));
    for (file, cmd) in [
        ("base.qcow2", "write -P 0x11 0 256k"),
        ("mid.qcow2", "write -P 0x22 256k 128k"),
        ("top.qcow2", "write -P 0x33 512k 64k"),
    ] {
        let (code, _, err) =
            qmpkit_testkit::cmd::run_in(io, dir, &["-f", "qcow2", "-c", cmd, file]);
        assert_eq!(code, 0, "qemu-io {file}: {err}");
    }
}

/// Both daemons, started over their own copies of the images.
fn both(
    tag: &str,
    real: &Path,
    img: &Path,
    io: &Path,
) -> (Vec<Side>, Vec<support::Daemon>, PathBuf) {
    let root = support::tmpdir(tag);
    let prog = support::ours(&root);
    let mut sides = Vec::new();
    let mut daemons = Vec::new();
    for (name, p) in [("real", real), ("ours", prog.as_path())] {
        let d = root.join(name);
        std::fs::create_dir_all(&d).unwrap();
        make_images(img, io, &d);
        let daemon = support::start(p, &d, &[]);
        sides.push(Side {
            q: Qmp::connect(&daemon.socket),
            dir: d,
            names: HashMap::new(),
            events: Vec::new(),
        });
        daemons.push(daemon);
    }
    (sides, daemons, root)
}

/// A step of a script: a request, or waiting for a job's status.
enum Step {
    Req(Value),
    Wait(&'static str, &'static str),
    /// Waiting for a job's first progress (or its end).
    Moved(&'static str),
    /// A write through the NBD export `name` of each daemon (socket `nbd.sock`).
    Write(&'static str, u64, u64),
    /// How many `#blockNNN` names the daemon generated so far (the counter part of the next
    /// one, read from a probe node's implicit file node, which is then deleted).
    Names,
    /// The names of the files in the daemon's directory (where it runs).
    Files,
    /// What `qemu-img info` says of a file in the daemon's directory (as JSON, sharing it).
    ImageInfo(&'static str),
    /// What `qemu-img map` says of a file (as JSON, without host offsets).
    Map(&'static str),
    /// What a `qemu-io` command (a read with a pattern) says of a qcow2 file, timing left
    /// out.
    Io(&'static str, &'static str),
    /// `qemu-img` (first word "img") or `qemu-io` ("io") with these arguments in the
    /// daemon's directory, to make or change a file no node holds; its exit status.
    Tool(&'static [&'static str]),
    /// A pause of this many milliseconds (for what the real daemon does in the background,
    /// such as a ready mirror copying what was written, to be done).
    Sleep(u64),
    /// What `qemu-img map` says of a file, host offsets included (where its clusters are),
    /// and the file's length.
    HostMap(&'static str),
}

fn req(cmd: &str, args: Value) -> Step {
    Step::Req(json!({"execute": cmd, "arguments": args}))
}

/// A job `id` from node `src` to node `tgt`, with `more` arguments.
fn job_on_src(cmd: &str, id: &str, more: Value) -> Step {
    let mut args = json!({"job-id": id, "device": "src", "target": "tgt"});
    if let (Some(a), Value::Object(m)) = (args.as_object_mut(), more) {
        a.extend(m);
    }
    req(cmd, args)
}

/// One scenario at a time: the daemons' timing is what the comparisons wait on.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn run(tag: &str, script: &[Step]) {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (real, img, io) = qemu_tools!();
    let (mut sides, daemons, root) = both(tag, &real, &img, &io);
    for (i, step) in script.iter().enumerate() {
        let mut outcomes = Vec::new();
        for s in sides.iter_mut() {
            // Events are compared in order at each wait (QEMU sends some of a command's
            // after its reply).
            let outcome = match step {
                Step::Req(r) => {
                    let (r, ev) = s.call(r);
                    s.events.extend(ev);
                    json!({"reply": r})
                }
                Step::Wait(id, status) => {
                    let ev = s.wait(id, status);
                    s.events.extend(ev);
                    json!({"events": std::mem::take(&mut s.events)})
                }
                Step::Moved(id) => {
                    let ev = s.moved(id);
                    s.events.extend(ev);
                    json!({"events": std::mem::take(&mut s.events)})
                }
                Step::Names => json!({"names": s.names_used()}),
                Step::Files => {
                    let mut names: Vec<String> = std::fs::read_dir(&s.dir)
                        .expect("read_dir")
                        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                        .collect();
                    names.sort();
                    json!({"files": names})
                }
                Step::ImageInfo(file) => {
                    let args = ["info", "-U", "--output=json", file];
                    let (code, out, err) = qmpkit_testkit::cmd::run_in(&img, &s.dir, &args);
                    assert_eq!(code, 0, "qemu-img info {file}: {err}");
                    json!({"info": s.norm(&out)})
                }
                Step::Map(file) => {
                    let args = ["map", "-U", "--output=json", file];
                    let (code, out, err) = qmpkit_testkit::cmd::run_in(&img, &s.dir, &args);
                    assert_eq!(code, 0, "qemu-img map {file}: {err}");
                    let mut map = s.norm(&out);
                    for e in map.as_array_mut().into_iter().flatten() {
                        if let Some(m) = e.as_object_mut() {
                            m.remove("offset");
                        }
                    }
                    json!({"map": map})
                }
                Step::Io(file, cmd) => {
                    let args = ["-r", "-U", "-f", "qcow2", "-c", cmd, file];
                    let (code, out, err) = qmpkit_testkit::cmd::run_in(&io, &s.dir, &args);
                    let first = out.lines().next().unwrap_or_default().to_string();
                    json!({"io": [code, first, err]})
                }
                Step::Tool(args) => {
                    let prog = if args[0] == "img" { &img } else { &io };
                    let (code, _, err) = qmpkit_testkit::cmd::run_in(prog, &s.dir, &args[1..]);
                    json!({"tool": [code, s.norm(&json!(err).to_string())]})
                }
                Step::Sleep(ms) => {
                    std::thread::sleep(Duration::from_millis(*ms));
                    json!({})
                }
                Step::HostMap(file) => {
                    let args = ["map", "-U", "--output=json", file];
                    let (code, out, err) = qmpkit_testkit::cmd::run_in(&img, &s.dir, &args);
                    assert_eq!(code, 0, "qemu-img map {file}: {err}");
                    let len = std::fs::metadata(s.dir.join(file)).map(|m| m.len()).ok();
                    json!({"map": s.norm(&out), "length": len})
                }
                Step::Write(name, off, len) => {
                    let url = format!(
                        "nbd+unix:///{name}?socket={}",
                        s.dir.join("nbd.sock").display()
                    );
                    let cmd = format!("write -P 0x55 {off} {len}");
                    let (code, _, err) =
                        qmpkit_testkit::cmd::run_in(&io, &s.dir, &["-f", "raw", "-c", &cmd, &url]);
                    assert_eq!(code, 0, "qemu-io {url}: {err}");
                    json!({})
                }
            };
            outcomes.push(outcome);
        }
        let what = match step {
            Step::Req(r) => r.to_string(),
            Step::Wait(id, st) => format!("wait for {id} {st}"),
            Step::Moved(id) => format!("wait for {id} to move"),
            Step::Write(n, o, l) => format!("write {n} {o} {l}"),
            Step::Names => "names used".into(),
            Step::Files => "files".into(),
            Step::ImageInfo(f) => format!("qemu-img info {f}"),
            Step::Map(f) => format!("qemu-img map {f}"),
            Step::Sleep(ms) => format!("sleep {ms} ms"),
            Step::HostMap(f) => format!("qemu-img map {f} (host offsets)"),
            Step::Io(f, c) => format!("qemu-io {c} {f}"),
            Step::Tool(args) => format!("qemu-{}", args.join(" ")),
        };
        assert_eq!(
            outcomes[1], outcomes[0],
            "step {i} ({what}): qmpkit (left) and qemu-storage-daemon (right) differ"
        );
    }
    assert_eq!(
        sides[1].events, sides[0].events,
        "the events after the last wait differ"
    );
    drop(sides);
    drop(daemons);
    let _ = std::fs::remove_dir_all(root);
}

fn add(name: &str, file: &str) -> Step {
    req(
        "blockdev-add",
        json!({"driver": "qcow2", "node-name": name,
               "file": {"driver": "file", "filename": format!("@DIR@/{file}")}}),
    )
}

/// `CMD` on the bitmap `bm0` of `src`.
fn on_bm0(cmd: &str) -> Step {
    req(cmd, json!({"node": "src", "name": "bm0"}))
}

/// The NBD server on each daemon's `nbd.sock`.
fn nbd_start() -> Step {
    req(
        "nbd-server-start",
        json!({"addr": {"type": "unix", "data": {"path": "@DIR@/nbd.sock"}}}),
    )
}

/// An NBD export `id` of `node`.
fn export(id: &str, node: &str, writable: bool) -> Step {
    req(
        "block-export-add",
        json!({"type": "nbd", "id": id, "node-name": node, "writable": writable}),
    )
}

fn graph() -> Step {
    req("x-debug-query-block-graph", json!({}))
}

fn nodes() -> Step {
    req("query-named-block-nodes", json!({"flat": true}))
}

#[test]
fn stream_filters_sit_in_the_graph_while_the_jobs_run() {
    run(
        "filters-stream",
        &[
            add("top", "top.qcow2"),
            nodes(),
            // Stream into the middle image: a copy-on-read filter takes its place under top.
            req(
                "block-stream",
                json!({"job-id": "s1", "device": "@MID@", "auto-finalize": false}),
            ),
            nodes(),
            req("query-named-block-nodes", json!({})),
            req(
                "block-stream",
                json!({"job-id": "s1", "device": "top", "auto-finalize": false}),
            ),
            Step::Wait("s1", "pending"),
            graph(),
            nodes(),
            req("job-finalize", json!({"id": "s1"})),
            graph(),
            nodes(),
        ],
    );
}

#[test]
fn a_commit_below_the_active_layer_puts_commit_top_above_its_top() {
    run(
        "filters-commit",
        &[
            add("top", "top.qcow2"),
            req(
                "block-commit",
                json!({"job-id": "c1", "device": "top", "top": "@DIR@/mid.qcow2",
                       "auto-finalize": false, "auto-dismiss": false}),
            ),
            Step::Wait("c1", "pending"),
            graph(),
            nodes(),
            req("query-block-jobs", json!({})),
            req("job-finalize", json!({"id": "c1"})),
            Step::Wait("c1", "concluded"),
            req("job-dismiss", json!({"id": "c1"})),
            Step::Wait("c1", "null"),
            graph(),
            nodes(),
        ],
    );
}

#[test]
fn mirror_and_active_commit_filters_take_the_parents_and_give_them_back() {
    run(
        "filters-mirror",
        &[
            add("top", "top.qcow2"),
            add("tgt", "tgt.qcow2"),
            nbd_start(),
            export("e1", "top", true),
            req(
                "blockdev-mirror",
                json!({"job-id": "m1", "device": "top", "target": "tgt", "sync": "full",
                       "auto-finalize": false, "filter-node-name": "mtop"}),
            ),
            Step::Wait("m1", "ready"),
            graph(),
            nodes(),
            req("blockdev-del", json!({"node-name": "mtop"})),
            req("job-complete", json!({"id": "m1"})),
            Step::Wait("m1", "pending"),
            graph(),
            req("job-finalize", json!({"id": "m1"})),
            // The export now reads the target.
            graph(),
            nodes(),
            req("block-export-del", json!({"id": "e1"})),
            // An active commit: mirror_top with a commit's permissions above the top.
            req("block-commit", json!({"job-id": "c2", "device": "top"})),
            Step::Wait("c2", "ready"),
            graph(),
            nodes(),
            req("job-cancel", json!({"id": "c2"})),
            Step::Wait("c2", "null"),
            graph(),
        ],
    );
}

#[test]
fn a_commit_names_its_top_and_base_by_node() {
    let commit = |more: Value| {
        let mut args = json!({"job-id": "c1", "device": "top"});
        if let (Some(a), Value::Object(m)) = (args.as_object_mut(), more) {
            a.extend(m);
        }
        req("block-commit", args)
    };
    let [base, mid, top] = chain_by_nodes();
    run(
        "commit-nodes",
        &[
            base,
            mid,
            top,
            add("other", "tgt.qcow2"),
            // QEMU's checks, in its order: the device is a root; the top, then the base.
            req(
                "block-commit",
                json!({"device": "mid", "top-node": "other"}),
            ),
            commit(json!({"top-node": "mid", "top": "@DIR@/mid.qcow2"})),
            commit(json!({"top-node": "nope", "base-node": "base", "base": "x"})),
            commit(json!({"top-node": "other"})),
            commit(json!({"top-node": "mid", "base-node": "mid", "base": "x"})),
            commit(json!({"top-node": "mid", "base-node": "nope"})),
            commit(json!({"top-node": "base", "base-node": "mid"})),
            commit(json!({"top-node": "mid", "base-node": "mid", "speed": -1})),
            commit(json!({"top-node": "base"})),
            commit(json!({"top": "@DIR@/top.qcow2", "base": "@DIR@/top.qcow2"})),
            commit(json!({"top": "@DIR@/base.qcow2", "base": "@DIR@/mid.qcow2"})),
            req("block-commit", json!({"device": "other", "job-id": "c0"})),
            // The middle layer into the base, named by nodes.
            commit(json!({"top-node": "mid", "base-node": "base", "auto-finalize": false})),
            Step::Wait("c1", "pending"),
            graph(),
            req("query-block-jobs", json!({})),
            req("job-finalize", json!({"id": "c1"})),
            Step::Wait("c1", "null"),
            graph(),
            nodes(),
            // The active layer by its node: a commit that becomes ready.
            commit(json!({"top-node": "top", "base-node": "base"})),
            Step::Wait("c1", "ready"),
            graph(),
            req("job-complete", json!({"id": "c1"})),
            Step::Wait("c1", "null"),
            graph(),
            nodes(),
        ],
    );
}

/// The chain base <- mid <- top as nodes of those names, each layer added on its own.
fn chain_by_nodes() -> [Step; 3] {
    let layer = |name: &str, file: &str, backing: Value| {
        req(
            "blockdev-add",
            json!({"driver": "qcow2", "node-name": name, "backing": backing,
                   "file": {"driver": "file", "filename": format!("@DIR@/{file}")}}),
        )
    };
    [
        layer("base", "base.qcow2", Value::Null),
        layer("mid", "mid.qcow2", json!("base")),
        layer("top", "top.qcow2", json!("mid")),
    ]
}

#[test]
fn a_negative_speed_makes_the_job_and_drops_it() {
    let [base, mid, top] = chain_by_nodes();
    let job = |cmd: &str, more: Value| {
        let mut args = json!({"job-id": "j", "device": "top", "speed": -1});
        if let (Some(a), Value::Object(m)) = (args.as_object_mut(), more) {
            a.extend(m);
        }
        req(cmd, args)
    };
    run(
        "negative-speed",
        &[
            base,
            mid,
            top,
            add("tgt", "tgt.qcow2"),
            // Checks before the job is made still come first.
            job(
                "blockdev-backup",
                json!({"device": "nope", "target": "tgt", "sync": "full"}),
            ),
            // Then the job is announced, takes its links, and goes.
            job("blockdev-backup", json!({"target": "tgt", "sync": "full"})),
            job("blockdev-mirror", json!({"target": "tgt", "sync": "full"})),
            job("block-stream", json!({})),
            job("block-commit", json!({})),
            job("block-commit", json!({"top-node": "mid"})),
            req("query-jobs", json!({})),
            graph(),
            req("block-job-set-speed", json!({"device": "j", "speed": -1})),
        ],
    );
}

#[test]
fn a_commits_links_make_its_nodes_no_roots() {
    let [base, mid, top] = chain_by_nodes();
    run(
        "commit-root",
        &[
            base,
            mid,
            top,
            add("tgt", "tgt.qcow2"),
            req(
                "block-commit",
                json!({"job-id": "c", "device": "top", "top-node": "mid",
                       "auto-finalize": false}),
            ),
            Step::Wait("c", "pending"),
            // The job's link on the overlay counts as a parent, as the filter above the base
            // and the node below it do.
            req(
                "blockdev-mirror",
                json!({"job-id": "m", "device": "top", "target": "tgt", "sync": "full"}),
            ),
            req("block-commit", json!({"job-id": "c2", "device": "top"})),
            req(
                "blockdev-mirror",
                json!({"job-id": "m", "device": "base", "target": "tgt", "sync": "full"}),
            ),
            req("job-finalize", json!({"id": "c"})),
            Step::Wait("c", "null"),
            // Once it is gone, the top is a root again.
            req(
                "blockdev-mirror",
                json!({"job-id": "m", "device": "top", "target": "tgt", "sync": "full",
                       "auto-finalize": false}),
            ),
            Step::Wait("m", "ready"),
            req("job-cancel", json!({"id": "m"})),
            Step::Wait("m", "null"),
        ],
    );
}

/// A backup of `src` to `tgt` by bitmap `bm0` in `mode`.
fn by_bitmap(id: &str, mode: &str) -> Step {
    req(
        "blockdev-backup",
        json!({"job-id": id, "device": "src", "target": "tgt", "sync": "bitmap",
               "bitmap": "bm0", "bitmap-mode": mode}),
    )
}

#[test]
fn backups_by_bitmap_hold_the_bitmap_and_leave_it_per_its_mode() {
    let bitmaps = || nodes();
    run(
        "backup-bitmap",
        &[
            add("src", "base.qcow2"),
            add("tgt", "tgt.qcow2"),
            on_bm0("block-dirty-bitmap-add"),
            nbd_start(),
            export("e1", "src", true),
            Step::Write("src", 0, 131072),
            Step::Write("src", 524288, 1000),
            // QEMU's checks, in its order.
            job_on_src("blockdev-backup", "b0", json!({"sync": "incremental"})),
            job_on_src("blockdev-backup", "b0", json!({"sync": "bitmap"})),
            job_on_src(
                "blockdev-backup",
                "b0",
                json!({"sync": "full", "bitmap": "nob"}),
            ),
            job_on_src(
                "blockdev-backup",
                "b0",
                json!({"sync": "incremental", "bitmap": "bm0", "bitmap-mode": "never"}),
            ),
            job_on_src(
                "blockdev-backup",
                "b0",
                json!({"sync": "bitmap", "bitmap": "bm0"}),
            ),
            job_on_src(
                "blockdev-backup",
                "b0",
                json!({"sync": "top", "bitmap": "bm0", "bitmap-mode": "never"}),
            ),
            job_on_src(
                "blockdev-backup",
                "b0",
                json!({"sync": "full", "bitmap": "bm0", "bitmap-mode": "never"}),
            ),
            job_on_src(
                "blockdev-backup",
                "b0",
                json!({"sync": "full", "bitmap-mode": "never"}),
            ),
            job_on_src("blockdev-mirror", "m0", json!({"sync": "incremental"})),
            job_on_src("blockdev-mirror", "m0", json!({"sync": "bitmap"})),
            // Incremental, held at pending: the bitmap is busy, a successor records writes.
            req(
                "blockdev-backup",
                json!({"job-id": "b1", "device": "src", "target": "tgt", "sync": "incremental",
                       "bitmap": "bm0", "auto-finalize": false}),
            ),
            Step::Wait("b1", "pending"),
            req("query-block-jobs", json!({})),
            on_bm0("block-dirty-bitmap-remove"),
            on_bm0("block-dirty-bitmap-clear"),
            on_bm0("block-dirty-bitmap-disable"),
            on_bm0("block-dirty-bitmap-enable"),
            req(
                "blockdev-backup",
                json!({"job-id": "b2", "device": "src", "target": "tgt", "sync": "incremental", "bitmap": "bm0"}),
            ),
            Step::Write("src", 262144, 4096),
            req("job-finalize", json!({"id": "b1"})),
            // on-success and it succeeded: only the write made meanwhile is left.
            bitmaps(),
            Step::Write("src", 0, 4096),
            // Cancelled: the bitmap keeps what it marked, with the writes since.
            req(
                "blockdev-backup",
                json!({"job-id": "b3", "device": "src", "target": "tgt", "sync": "bitmap",
                       "bitmap": "bm0", "bitmap-mode": "on-success", "auto-finalize": false}),
            ),
            Step::Wait("b3", "pending"),
            Step::Write("src", 655360, 4096),
            req("job-cancel", json!({"id": "b3"})),
            Step::Wait("b3", "null"),
            bitmaps(),
            // never: the bitmap stays as it was, with the writes since.
            by_bitmap("b4", "never"),
            Step::Wait("b4", "null"),
            bitmaps(),
            // always, successful: cleared.
            by_bitmap("b5", "always"),
            Step::Wait("b5", "null"),
            bitmaps(),
        ],
    );
}

/// `blockdev-snapshot-sync` over a `blockdev-snapshot-sync` uses four generated names in
/// QEMU (making the image and opening the overlay's file), whether the node is in use, alone
/// in a transaction, or in one that fails.
#[test]
fn snapshots_use_generated_names_as_qemu_does() {
    let sync = |node: &str, file: &str, name: &str| {
        json!({"node-name": node, "snapshot-file": format!("@DIR@/{file}"),
               "snapshot-node-name": name, "format": "qcow2"})
    };
    let in_transaction = |action: Value, abort: bool| {
        let mut actions = vec![json!({"type": "blockdev-snapshot-sync", "data": action})];
        if abort {
            actions.push(json!({"type": "abort", "data": {}}));
        }
        req("transaction", json!({"actions": actions}))
    };
    run(
        "snapshot-names",
        &[
            Step::Names,
            add("src", "base.qcow2"),
            Step::Names,
            req("blockdev-snapshot-sync", sync("src", "s1.qcow2", "s1")),
            Step::Names,
            in_transaction(sync("src", "s2.qcow2", "s2"), false),
            Step::Names,
            in_transaction(sync("src", "s3.qcow2", "s3"), true),
            Step::Names,
            nbd_start(),
            export("e1", "src", false),
            req("blockdev-snapshot-sync", sync("src", "s4.qcow2", "s4")),
            Step::Names,
            in_transaction(sync("s4", "s5.qcow2", "s5"), false),
            Step::Names,
            req(
                "blockdev-add",
                json!({"driver": "null-co", "node-name": "n0"}),
            ),
            req("blockdev-snapshot-sync", sync("n0", "s6.qcow2", "s6")),
            Step::Names,
            in_transaction(sync("n0", "s7.qcow2", "s7"), false),
            Step::Names,
            nodes(),
        ],
    );
}

/// Every drain of the graph pauses a ready mirror and resumes it (`standby`, `ready`): the
/// drains of failed opens through backing files, and of snapshots whose overlay is created,
/// opened from an existing image, closed unused or undone by a failed transaction, counted
/// as QEMU counts them.
#[test]
fn drains_of_backing_failures_and_snapshots_match_qemu() {
    let null = |name: &str| {
        req(
            "blockdev-add",
            json!({"driver": "null-co", "node-name": name, "size": 1048576}),
        )
    };
    let sync = |node: &str, file: &str, name: &str, existing: bool| {
        let mut a = json!({"node-name": node, "snapshot-file": format!("@DIR@/{file}"),
                           "snapshot-node-name": name, "format": "qcow2"});
        if existing {
            a["mode"] = json!("existing");
        }
        a
    };
    let transaction = |actions: Vec<Value>, abort: bool| {
        let mut list: Vec<Value> = actions
            .into_iter()
            .map(|a| json!({"type": "blockdev-snapshot-sync", "data": a}))
            .collect();
        if abort {
            list.push(json!({"type": "abort", "data": {}}));
        }
        req("transaction", json!({"actions": list}))
    };
    let inline_file = |name: &str, file: &str| {
        req(
            "blockdev-add",
            json!({"driver": "qcow2", "node-name": name,
                   "file": {"driver": "file", "filename": format!("@DIR@/{file}")}}),
        )
    };
    run(
        "drains",
        &[
            null("m1"),
            null("m2"),
            req(
                "blockdev-mirror",
                json!({"job-id": "mj", "device": "m1", "target": "m2", "sync": "full"}),
            ),
            Step::Wait("mj", "ready"),
            // base.qcow2 held for writing: the chains over it cannot open their backing.
            add("src", "base.qcow2"),
            inline_file("x1", "mid.qcow2"),
            inline_file("x2", "top.qcow2"),
            req(
                "blockdev-add",
                json!({"driver": "file", "node-name": "xf", "filename": "@DIR@/mid.qcow2"}),
            ),
            req(
                "blockdev-add",
                json!({"driver": "qcow2", "node-name": "x3", "file": "xf"}),
            ),
            Step::Wait("mj", "ready"),
            // Unused nodes: the overlay closes again.
            req(
                "blockdev-add",
                json!({"driver": "null-co", "node-name": "n1"}),
            ),
            req(
                "blockdev-snapshot-sync",
                sync("xf", "s1.qcow2", "s1", false),
            ),
            transaction(vec![sync("n1", "s2.qcow2", "s2", false)], false),
            transaction(
                vec![
                    sync("n1", "s3.qcow2", "s3", false),
                    sync("xf", "s4.qcow2", "s4", false),
                ],
                false,
            ),
            transaction(vec![sync("n1", "s5.qcow2", "s5", false)], true),
            req(
                "blockdev-snapshot-sync",
                sync("n1", "tgt.qcow2", "e1", true),
            ),
            transaction(vec![sync("n1", "tgt.qcow2", "e2", true)], true),
            Step::Wait("mj", "ready"),
            // A node in use: the overlay takes its users.
            nbd_start(),
            export("e1", "src", false),
            req(
                "blockdev-snapshot-sync",
                sync("src", "s6.qcow2", "s6", false),
            ),
            transaction(vec![sync("s6", "s7.qcow2", "s7", false)], false),
            transaction(vec![sync("s7", "s8.qcow2", "s8", false)], true),
            req(
                "blockdev-snapshot-sync",
                sync("s7", "tgt2.qcow2", "s9", true),
            ),
            Step::Wait("mj", "ready"),
            nodes(),
        ],
    );
}

/// Any node can be an image's backing: a null node too (what the image does not hold reads
/// as the null node's zeroes).
#[test]
fn a_null_node_can_be_a_snapshots_backing() {
    run(
        "null-backing",
        &[
            req(
                "blockdev-add",
                json!({"driver": "null-co", "node-name": "n0", "size": 1048576}),
            ),
            req(
                "blockdev-add",
                json!({"driver": "qcow2", "node-name": "o1", "backing": null,
                       "file": {"driver": "file", "filename": "@DIR@/tgt2.qcow2"}}),
            ),
            req("blockdev-snapshot", json!({"node": "n0", "overlay": "o1"})),
            nodes(),
            graph(),
            nbd_start(),
            export("o1", "o1", true),
            Step::Write("o1", 4096, 4096),
            req("blockdev-snapshot", json!({"node": "n0", "overlay": "o1"})),
        ],
    );
}

/// An active commit into a null base writes into the null node (which takes and drops the
/// data) and goes ready; completing it leaves the overlay over its null backing. A base
/// smaller than the top grows to the top's size as the job starts; a null one cannot, and
/// the job fails.
#[test]
fn an_active_commit_into_a_null_base_goes_ready() {
    run(
        "null-commit",
        &[
            req(
                "blockdev-add",
                json!({"driver": "null-co", "node-name": "n0"}),
            ),
            req(
                "blockdev-add",
                json!({"driver": "qcow2", "node-name": "o1", "backing": null,
                       "file": {"driver": "file", "filename": "@DIR@/base.qcow2"}}),
            ),
            req("blockdev-snapshot", json!({"node": "n0", "overlay": "o1"})),
            req("block-commit", json!({"job-id": "c1", "device": "o1"})),
            Step::Wait("c1", "ready"),
            req("query-block-jobs", json!({})),
            req("job-complete", json!({"id": "c1"})),
            Step::Wait("c1", "null"),
            nodes(),
            graph(),
            req(
                "blockdev-add",
                json!({"driver": "null-co", "node-name": "n1", "size": 65536}),
            ),
            req(
                "blockdev-add",
                json!({"driver": "qcow2", "node-name": "o2", "backing": null,
                       "file": {"driver": "file", "filename": "@DIR@/tgt.qcow2"}}),
            ),
            req("blockdev-snapshot", json!({"node": "n1", "overlay": "o2"})),
            req("block-commit", json!({"job-id": "c2", "device": "o2"})),
            Step::Wait("c2", "null"),
            nodes(),
            // A smaller qcow2 base grows to the top's size, below the active layer too.
            add("b3", "tgt2.qcow2"),
            req("block_resize", json!({"node-name": "b3", "size": 262144})),
            req(
                "blockdev-add",
                json!({"driver": "qcow2", "node-name": "o3", "backing": null,
                       "file": {"driver": "file", "filename": "@DIR@/mid.qcow2"}}),
            ),
            req("blockdev-snapshot", json!({"node": "b3", "overlay": "o3"})),
            req(
                "blockdev-add",
                json!({"driver": "qcow2", "node-name": "o4", "backing": null,
                       "file": {"driver": "file", "filename": "@DIR@/top.qcow2"}}),
            ),
            req("blockdev-snapshot", json!({"node": "o3", "overlay": "o4"})),
            req(
                "block-commit",
                json!({"job-id": "c3", "device": "o4", "top-node": "o3"}),
            ),
            Step::Wait("c3", "null"),
            nodes(),
        ],
    );
}

/// A commit whose base is smaller than its top asks for the base's resize permission as it
/// starts, so a user of the base's file that does not share resizing refuses the job.
#[test]
fn a_commit_into_a_smaller_base_asks_to_resize_it() {
    run(
        "commit-resize",
        &[
            req(
                "blockdev-add",
                json!({"driver": "file", "node-name": "b3f", "filename": "@DIR@/tgt2.qcow2"}),
            ),
            req(
                "blockdev-add",
                json!({"driver": "qcow2", "node-name": "b3", "file": "b3f"}),
            ),
            req("block_resize", json!({"node-name": "b3", "size": 262144})),
            req(
                "blockdev-add",
                json!({"driver": "qcow2", "node-name": "o3", "backing": null,
                       "file": {"driver": "file", "filename": "@DIR@/mid.qcow2"}}),
            ),
            req("blockdev-snapshot", json!({"node": "b3", "overlay": "o3"})),
            nbd_start(),
            export("e1", "b3f", false),
            req("block-commit", json!({"job-id": "c1", "device": "o3"})),
            req("block-export-del", json!({"id": "e1"})),
            req("block-commit", json!({"job-id": "c1", "device": "o3"})),
            Step::Wait("c1", "ready"),
            graph(),
            nodes(),
            req("job-complete", json!({"id": "c1"})),
            Step::Wait("c1", "null"),
            nodes(),
            // Below the active layer.
            req(
                "blockdev-add",
                json!({"driver": "file", "node-name": "b4f", "filename": "@DIR@/tgt.qcow2"}),
            ),
            req(
                "blockdev-add",
                json!({"driver": "qcow2", "node-name": "b4", "file": "b4f"}),
            ),
            req("block_resize", json!({"node-name": "b4", "size": 262144})),
            req(
                "blockdev-add",
                json!({"driver": "qcow2", "node-name": "o4", "backing": null,
                       "file": {"driver": "file", "filename": "@DIR@/top.qcow2"}}),
            ),
            req("blockdev-snapshot", json!({"node": "b4", "overlay": "o4"})),
            req(
                "blockdev-add",
                json!({"driver": "qcow2", "node-name": "o5", "backing": null,
                       "file": {"driver": "file", "filename": "@DIR@/base.qcow2"}}),
            ),
            req("blockdev-snapshot", json!({"node": "o4", "overlay": "o5"})),
            export("e2", "b4f", false),
            req(
                "block-commit",
                json!({"job-id": "c2", "device": "o5", "top-node": "o4", "auto-finalize": false}),
            ),
            req("block-export-del", json!({"id": "e2"})),
            req(
                "block-commit",
                json!({"job-id": "c2", "device": "o5", "top-node": "o4", "auto-finalize": false}),
            ),
            Step::Wait("c2", "pending"),
            graph(),
            nodes(),
            req("job-finalize", json!({"id": "c2"})),
            Step::Wait("c2", "null"),
            nodes(),
        ],
    );
}

/// A ready job goes to standby and back with each drain that reaches it: every drain of the
/// whole graph, and a drain of a node it is linked to or that is below one (a new node that
/// takes an existing node as its child drains that child twice). A mirror that pivots drains
/// the graph five times, one that goes once more; a mirror refused at its source link
/// drains nothing between its announcement and its end.
#[test]
fn drains_reach_the_jobs_above_the_drained_node() {
    let raw = |name: &str, file: Value| {
        req(
            "blockdev-add",
            json!({"driver": "raw", "node-name": name, "file": file}),
        )
    };
    let file = |f: &str| json!({"driver": "file", "filename": format!("@DIR@/{f}")});
    run(
        "node-drains",
        &[
            req(
                "blockdev-add",
                json!({"driver": "null-co", "node-name": "n0"}),
            ),
            req(
                "blockdev-add",
                json!({"driver": "qcow2", "node-name": "o1", "backing": null,
                       "file": {"driver": "file", "filename": "@DIR@/base.qcow2"}}),
            ),
            req("blockdev-snapshot", json!({"node": "n0", "overlay": "o1"})),
            req("block-commit", json!({"job-id": "c1", "device": "o1"})),
            Step::Wait("c1", "ready"),
            raw("ra", file("tgt.qcow2")),
            raw("rb", json!("n0")),
            raw("rc", json!("ra")),
            req("blockdev-del", json!({"node-name": "rc"})),
            req("blockdev-del", json!({"node-name": "rb"})),
            req("blockdev-del", json!({"node-name": "ra"})),
            Step::Wait("c1", "ready"),
            raw("s1", file("tgt.qcow2")),
            raw("t1", file("tgt2.qcow2")),
            req(
                "blockdev-mirror",
                json!({"job-id": "m1", "device": "s1", "target": "t1", "sync": "full"}),
            ),
            Step::Wait("m1", "ready"),
            req("job-complete", json!({"id": "m1"})),
            Step::Wait("m1", "null"),
            req(
                "blockdev-add",
                json!({"driver": "file", "node-name": "mf", "filename": "@DIR@/mid.qcow2"}),
            ),
            req(
                "blockdev-add",
                json!({"driver": "qcow2", "node-name": "mq", "file": "mf", "backing": null}),
            ),
            raw("mr", json!("mf")),
            raw("mr2", json!("mf")),
            req(
                "blockdev-mirror",
                json!({"job-id": "m2", "device": "mr", "target": "mr2", "sync": "top"}),
            ),
            Step::Wait("c1", "ready"),
            // Refused at its writer on the target (after three links): one drain between.
            raw("s3", file("top.qcow2")),
            req(
                "blockdev-mirror",
                json!({"job-id": "m3", "device": "s3", "target": "mr", "sync": "none"}),
            ),
            Step::Wait("c1", "ready"),
        ],
    );
}

/// Images that cannot be created (no such directory, a directory in the file's place) fail
/// with QEMU's "Could not create" words, from snapshots, transactions, drive jobs and
/// `blockdev-create`; an overlay takes its node's size and records the node's driver, even a
/// protocol's.
#[test]
fn images_that_cannot_be_created_fail_as_in_qemu() {
    let sync = |node: &str, file: &str, name: &str| {
        json!({"node-name": node, "snapshot-file": format!("@DIR@/{file}"),
               "snapshot-node-name": name})
    };
    run(
        "create-errors",
        &[
            add("src", "base.qcow2"),
            req(
                "blockdev-snapshot-sync",
                sync("src", "nodir/s1.qcow2", "s1"),
            ),
            req("blockdev-snapshot-sync", sync("src", "", "s1")),
            req(
                "transaction",
                json!({"actions": [{"type": "blockdev-snapshot-sync",
                                    "data": sync("src", "nodir/s2.qcow2", "s2")}]}),
            ),
            req(
                "drive-backup",
                json!({"job-id": "b1", "device": "src", "sync": "full",
                       "target": "@DIR@/nodir/b.qcow2", "format": "qcow2"}),
            ),
            req(
                "drive-mirror",
                json!({"job-id": "m1", "device": "src", "sync": "full",
                       "target": "@DIR@/nodir/m.raw", "format": "raw"}),
            ),
            req(
                "drive-mirror",
                json!({"job-id": "m1", "device": "src", "sync": "full",
                       "target": "@DIR@/nodir/m.raw", "mode": "existing"}),
            ),
            req(
                "blockdev-create",
                json!({"job-id": "c1", "options": {"driver": "file",
                       "filename": "@DIR@/nodir/c.raw", "size": 1048576}}),
            ),
            Step::Wait("c1", "concluded"),
            req("query-jobs", json!({})),
            req("job-dismiss", json!({"id": "c1"})),
            Step::Names,
            // A protocol node's overlay.
            req(
                "blockdev-add",
                json!({"driver": "file", "node-name": "f1", "filename": "@DIR@/tgt2.qcow2"}),
            ),
            req("blockdev-snapshot-sync", sync("f1", "s3.qcow2", "s3")),
            Step::ImageInfo("s3.qcow2"),
            req("blockdev-snapshot-sync", sync("src", "s4.qcow2", "s4")),
            Step::ImageInfo("s4.qcow2"),
            Step::Names,
            nodes(),
        ],
    );
}

/// A job under a speed limit waits between its chunks (not busy), paused too; a paused job
/// is cancelled only by force (it runs again to abort); `block-job-cancel` without force
/// refuses in QEMU's words. What a cancelled mirror copied (all of it in one go, then waiting
/// for its speed) stays in the target.
#[test]
fn paused_and_rate_limited_jobs_wait_and_cancel_as_in_qemu() {
    let mirror = |id: &str| {
        job_on_src(
            "blockdev-mirror",
            id,
            json!({"sync": "full", "speed": 1024}),
        )
    };
    run(
        "paused-cancel",
        &[
            add("src", "top.qcow2"),
            add("tgt", "tgt.qcow2"),
            mirror("m1"),
            req("block-job-pause", json!({"device": "m1"})),
            Step::Wait("m1", "paused"),
            req("query-block-jobs", json!({})),
            req("block-job-cancel", json!({"device": "m1"})),
            req("block-job-cancel", json!({"device": "m1", "force": true})),
            Step::Wait("m1", "null"),
            Step::Map("tgt.qcow2"),
            mirror("m2"),
            req("job-pause", json!({"id": "m2"})),
            Step::Wait("m2", "paused"),
            req("job-cancel", json!({"id": "m2"})),
            Step::Wait("m2", "null"),
            nodes(),
        ],
    );
}

/// Any node can be a format node's `file`: a raw node over a qcow2 node, a raw node or a null
/// node reads and writes through it (an export's writes land in the qcow2 image), with QEMU's
/// names (`json:` descriptions), image facts and permissions; a qcow2 node over data that
/// holds no qcow2 image says so.
#[test]
fn any_node_can_be_a_format_nodes_file() {
    let raw_over = |name: &str, file: Value| {
        req(
            "blockdev-add",
            json!({"driver": "raw", "node-name": name, "file": file}),
        )
    };
    let full_nodes = || {
        Step::Req(json!({"execute": "query-named-block-nodes",
                         "arguments": {"flat": true}, "full": true}))
    };
    run(
        "any-file-child",
        &[
            add("q0", "top.qcow2"),
            raw_over("r0", json!("q0")),
            raw_over("r1", json!("r0")),
            req(
                "blockdev-add",
                json!({"driver": "raw", "node-name": "r2", "file": "q0", "read-only": true}),
            ),
            req(
                "blockdev-add",
                json!({"driver": "null-co", "node-name": "n0", "size": 1048576}),
            ),
            raw_over("rn", json!("n0")),
            req(
                "blockdev-add",
                json!({"driver": "qcow2", "node-name": "qn", "file": "n0"}),
            ),
            req(
                "blockdev-add",
                json!({"driver": "qcow2", "node-name": "qq", "file": "q0"}),
            ),
            req(
                "blockdev-add",
                json!({"driver": "qcow2", "node-name": "qr", "file": {"driver": "raw",
                       "file": {"driver": "file", "filename": "@DIR@/tgt.qcow2"}}}),
            ),
            full_nodes(),
            Step::Req(json!({"execute": "query-named-block-nodes", "full": true})),
            graph(),
            nbd_start(),
            export("e1", "r1", true),
            export("e2", "r2", true),
            // Exports are named after their nodes.
            Step::Write("r1", 65536, 65536),
            Step::Map("top.qcow2"),
            req("block-export-del", json!({"id": "e1"})),
            req("blockdev-del", json!({"node-name": "q0"})),
            req("blockdev-del", json!({"node-name": "r1"})),
            req("blockdev-del", json!({"node-name": "r0"})),
            full_nodes(),
        ],
    );
}

/// A file node counts its file's length when it opens and keeps it: another node that
/// grows the file leaves it as it was. Writes through the node (a qcow2 image created over
/// it, a stream into the image above it) make it reach their end, a truncation through it
/// (a raw node's resize, in whole sectors) counts it again, and so does a reopen (the node a
/// snapshot makes a backing file, with the file node it opened). Jobs compare these lengths.
/// A qcow2 image that shrinks truncates its file.
#[test]
fn file_nodes_keep_the_length_they_counted() {
    let file = |name: &str, f: &str| {
        req(
            "blockdev-add",
            json!({"driver": "file", "node-name": name, "filename": format!("@DIR@/{f}")}),
        )
    };
    run(
        "lengths",
        &[
            file("fa", "tgt.qcow2"),
            file("fb", "tgt.qcow2"),
            req(
                "blockdev-add",
                json!({"driver": "raw", "node-name": "ri",
                       "file": {"driver": "file", "filename": "@DIR@/tgt.qcow2"}}),
            ),
            req("block_resize", json!({"node-name": "fa", "size": 2097152})),
            nodes(),
            file("fc", "tgt.qcow2"),
            nodes(),
            // A qcow2 image written over fb: fb reaches the image's end, not the file's.
            req(
                "blockdev-create",
                json!({"job-id": "c1", "options": {"driver": "qcow2", "file": "fb", "size": 65536}}),
            ),
            Step::Wait("c1", "concluded"),
            req("job-dismiss", json!({"id": "c1"})),
            nodes(),
            // A raw node's resize truncates through its file node.
            req("block_resize", json!({"node-name": "ri", "size": 1000})),
            nodes(),
            // Jobs compare the counted lengths.
            req(
                "blockdev-add",
                json!({"driver": "null-co", "node-name": "n1024", "size": 1024}),
            ),
            req(
                "blockdev-backup",
                json!({"job-id": "b1", "device": "fa", "target": "n1024", "sync": "full"}),
            ),
            req(
                "blockdev-backup",
                json!({"job-id": "b2", "device": "ri", "target": "n1024", "sync": "full"}),
            ),
            Step::Wait("b2", "null"),
            // A stream into top writes through its file node; another one on the same file
            // keeps its length.
            file("tf", "top.qcow2"),
            file("ts", "top.qcow2"),
            req(
                "blockdev-add",
                json!({"driver": "qcow2", "node-name": "top", "file": "tf"}),
            ),
            req("block-stream", json!({"job-id": "s1", "device": "top"})),
            Step::Wait("s1", "null"),
            nodes(),
            // A snapshot reopens the node it makes a backing file, with its own file node.
            req("block_resize", json!({"node-name": "fa", "size": 3145728})),
            req(
                "blockdev-snapshot-sync",
                json!({"node-name": "ri", "snapshot-file": "@DIR@/snap.qcow2",
                       "snapshot-node-name": "snap", "format": "qcow2"}),
            ),
            nodes(),
            req(
                "blockdev-snapshot-sync",
                json!({"node-name": "fb", "snapshot-file": "@DIR@/snap2.qcow2",
                       "snapshot-node-name": "snap2", "format": "qcow2"}),
            ),
            nodes(),
            // A qcow2 image that shrinks gives its tables back and truncates its file after
            // the last cluster in use, through its file node.
            req("block_resize", json!({"node-name": "top", "size": 65536})),
            nodes(),
            req("block_resize", json!({"node-name": "top", "size": 0})),
            nodes(),
        ],
    );
}

/// `query-blockstats` of the nodes: each node counts where the writes through it ended
/// (`wr_highest_offset`) and no requests; a file node counts its image's metadata too, and
/// what creating an image or rewriting a header wrote. Compared after blockdev-create, an
/// export's write, and a commit, stream, backup and mirror; an export's writes follow its
/// node onto the stream's filter, and onto the target a mirror pivots to.
#[test]
fn node_statistics_count_the_writes_through_each_node() {
    let stats = || req("query-blockstats", json!({"query-nodes": true}));
    run(
        "node-stats",
        &[
            req(
                "blockdev-create",
                json!({"job-id": "c0", "options": {"driver": "file",
                       "filename": "@DIR@/new.qcow2", "size": 0}}),
            ),
            Step::Wait("c0", "concluded"),
            req("job-dismiss", json!({"id": "c0"})),
            req(
                "blockdev-add",
                json!({"driver": "file", "node-name": "cf", "filename": "@DIR@/new.qcow2"}),
            ),
            req(
                "blockdev-create",
                json!({"job-id": "c1", "options": {"driver": "qcow2", "file": "cf",
                       "size": 4194304}}),
            ),
            Step::Wait("c1", "concluded"),
            req("job-dismiss", json!({"id": "c1"})),
            stats(),
            add("src", "top.qcow2"),
            add("tgt", "tgt.qcow2"),
            add("tgt2", "tgt2.qcow2"),
            nbd_start(),
            export("e1", "src", true),
            Step::Write("src", 4096, 4096),
            Step::Write("src", 700 << 10, 4096),
            stats(),
            req(
                "block-commit",
                json!({"job-id": "j1", "device": "src", "top-node": "@MID@"}),
            ),
            Step::Wait("j1", "null"),
            stats(),
            req(
                "block-stream",
                json!({"job-id": "j2", "device": "src", "speed": 1024,
                       "filter-node-name": "cor"}),
            ),
            // The export's writes go through the stream's filter now.
            Step::Write("src", 800 << 10, 4096),
            stats(),
            req("block-job-set-speed", json!({"device": "j2", "speed": 0})),
            Step::Wait("j2", "null"),
            stats(),
            job_on_src("blockdev-backup", "j3", json!({"sync": "full"})),
            Step::Wait("j3", "null"),
            stats(),
            req(
                "blockdev-mirror",
                json!({"job-id": "j4", "device": "src", "target": "tgt2", "sync": "full"}),
            ),
            Step::Wait("j4", "ready"),
            stats(),
            req("job-complete", json!({"id": "j4"})),
            Step::Wait("j4", "null"),
            // And to the target once the mirror pivoted.
            Step::Write("src", 900 << 10, 4096),
            stats(),
            Step::Io("tgt2.qcow2", "read -P 0x55 900k 4k"),
            Step::Io("tgt2.qcow2", "read -P 0x55 800k 4k"),
            Step::Io("top.qcow2", "read -P 0 900k 4k"),
        ],
    );
}

/// A qcow2 image created over a node is opened twice to be finished, under two generated
/// names; a create that fails opens nothing. A node that does not exist fails the job, not
/// the command.
#[test]
fn creates_use_generated_names_and_look_their_node_up_when_they_run() {
    let create = |id: &str, file: &str, size: u64| {
        req(
            "blockdev-create",
            json!({"job-id": id, "options": {"driver": "qcow2", "file": file, "size": size}}),
        )
    };
    run(
        "create-names",
        &[
            req(
                "blockdev-add",
                json!({"driver": "file", "node-name": "f", "filename": "@DIR@/tgt.qcow2"}),
            ),
            Step::Names,
            create("c1", "f", 65536),
            Step::Wait("c1", "concluded"),
            Step::Names,
            create("c2", "f", 123),
            Step::Wait("c2", "concluded"),
            Step::Names,
            create("c3", "nosuch", 65536),
            Step::Wait("c3", "concluded"),
            req("query-jobs", json!({})),
            Step::Names,
        ],
    );
}

/// A block job stays in the debug graph until it is dismissed, without links once it
/// concluded (cancelled or done), in the order of the job list.
#[test]
fn concluded_jobs_stay_in_the_graph_until_dismissed() {
    run(
        "concluded-graph",
        &[
            add("src", "base.qcow2"),
            add("other", "tgt2.qcow2"),
            req(
                "blockdev-add",
                json!({"driver": "null-co", "node-name": "n", "size": 1048576}),
            ),
            req(
                "blockdev-backup",
                json!({"job-id": "b1", "device": "src", "target": "n", "sync": "full",
                       "auto-dismiss": false}),
            ),
            Step::Wait("b1", "concluded"),
            req(
                "blockdev-mirror",
                json!({"job-id": "m1", "device": "other", "target": "n", "sync": "full",
                       "auto-dismiss": false}),
            ),
            Step::Wait("m1", "ready"),
            graph(),
            req("job-cancel", json!({"id": "m1"})),
            Step::Wait("m1", "concluded"),
            graph(),
            req("job-dismiss", json!({"id": "b1"})),
            graph(),
        ],
    );
}

/// A snapshot's overlay takes its node's place under the node's parent nodes too (a raw or
/// qcow2 node over a file node then reads the overlay), so it stays in the graph, in a
/// transaction or not. The overlay of a file node records the driver `file` as its backing
/// format.
#[test]
fn a_snapshot_of_a_file_node_goes_under_its_parents() {
    let file = |name: &str, f: &str| {
        req(
            "blockdev-add",
            json!({"driver": "file", "node-name": name, "filename": format!("@DIR@/{f}")}),
        )
    };
    let sync = |node: &str, overlay: &str| {
        json!({"node-name": node, "snapshot-file": format!("@DIR@/{overlay}.qcow2"),
               "snapshot-node-name": overlay, "format": "qcow2"})
    };
    run(
        "snapshot-parents",
        &[
            file("f1", "tgt.qcow2"),
            req(
                "blockdev-add",
                json!({"driver": "raw", "node-name": "r1", "file": "f1"}),
            ),
            req("blockdev-snapshot-sync", sync("f1", "s1")),
            file("f2", "tgt2.qcow2"),
            req(
                "blockdev-add",
                json!({"driver": "qcow2", "node-name": "q2", "file": "f2"}),
            ),
            req(
                "transaction",
                json!({"actions": [{"type": "blockdev-snapshot-sync", "data": sync("f2", "s2")}]}),
            ),
            nodes(),
            graph(),
            req("blockdev-del", json!({"node-name": "f1"})),
        ],
    );
}

/// Checks in QEMU's order: `nbd-server-add` looks its node up before it asks for the
/// server; `object-add` checks property values (an iothread's polling) before the id.
#[test]
fn checks_come_in_qemus_order() {
    let iothread = |poll: i64| {
        req(
            "object-add",
            json!({"qom-type": "iothread", "id": "io1", "poll-max-ns": poll}),
        )
    };
    run(
        "check-order",
        &[
            add("src", "base.qcow2"),
            req(
                "nbd-server-add",
                json!({"device": "nosuchnode", "name": "e1"}),
            ),
            req("nbd-server-add", json!({"device": "src", "name": "e1"})),
            iothread(10),
            iothread(-5),
            iothread(10),
        ],
    );
}

/// An export names the node its block device is on now: a job's filter while the job runs,
/// the base an active commit moved the parents to once it completed. Exports are listed
/// newest first.
#[test]
fn an_export_names_the_node_it_is_on_now() {
    run(
        "export-node",
        &[
            add("top", "top.qcow2"),
            req(
                "blockdev-add",
                json!({"driver": "null-co", "node-name": "n", "size": 1048576}),
            ),
            nbd_start(),
            export("e1", "top", false),
            export("e2", "n", false),
            req("block-commit", json!({"job-id": "c1", "device": "top"})),
            Step::Wait("c1", "ready"),
            req("query-block-exports", json!({})),
            req("job-complete", json!({"id": "c1"})),
            Step::Wait("c1", "null"),
            req("query-block-exports", json!({})),
        ],
    );
}

/// No link may close a cycle in the graph: a snapshot onto its own node, onto a node below
/// it through a file child or a backing chain, a reopen's new backing or file child, and
/// several backing children of one reopen that close a cycle only together are refused in
/// QEMU's words, and the graph stays as it was (its deep description answers).
#[test]
fn no_link_closes_a_cycle() {
    let reopen = |opts: Value| req("blockdev-reopen", json!({ "options": opts }));
    let qcow2 = |name: &str, file: &str, backing: Value| json!({"driver": "qcow2", "node-name": name, "file": file, "backing": backing});
    let file = |name: &str, f: &str| {
        req(
            "blockdev-add",
            json!({"driver": "file", "node-name": name, "filename": format!("@DIR@/{f}")}),
        )
    };
    let deep = || req("query-named-block-nodes", json!({"flat": false}));
    run(
        "cycles",
        &[
            file("fa", "tgt.qcow2"),
            req(
                "blockdev-add",
                json!({"driver": "qcow2", "node-name": "a", "file": "fa"}),
            ),
            req("blockdev-snapshot", json!({"node": "a", "overlay": "a"})),
            deep(),
            req(
                "blockdev-add",
                json!({"driver": "raw", "node-name": "r", "file": "a"}),
            ),
            req("blockdev-snapshot", json!({"node": "r", "overlay": "a"})),
            deep(),
            file("fb", "tgt2.qcow2"),
            req(
                "blockdev-add",
                json!({"driver": "qcow2", "node-name": "b", "file": "fb"}),
            ),
            file("fc", "base.qcow2"),
            req("blockdev-add", json!(qcow2("c", "fc", json!("b")))),
            req("blockdev-snapshot", json!({"node": "c", "overlay": "b"})),
            deep(),
            reopen(json!([qcow2("a", "fa", json!("a"))])),
            reopen(json!([qcow2("a", "fa", json!("r"))])),
            reopen(json!([{"driver": "qcow2", "node-name": "a", "file": "r"}])),
            reopen(json!([
                qcow2("b", "fb", json!("a")),
                qcow2("a", "fa", json!("c"))
            ])),
            reopen(json!([
                qcow2("a", "fa", json!("b")),
                qcow2("b", "fb", json!("a"))
            ])),
            deep(),
            graph(),
        ],
    );
}

/// Jobs over null nodes: a stream into one (no backing: nothing to do) and a commit into one
/// end as QEMU's do. A stream copies what the layers below hold, piece by piece as they
/// state it: a piece that reads as zeroes is written as zeroes (no data allocated), whether
/// its layer held data or zeroes; a null backing holds nothing, or zeroes everywhere with
/// `read-zeroes`.
#[test]
fn streams_copy_zeroes_as_zeroes_and_jobs_take_null_nodes() {
    let null = |name: &str, more: Value| {
        let mut args = json!({"driver": "null-co", "node-name": name, "size": 1048576});
        if let (Some(a), Value::Object(m)) = (args.as_object_mut(), more) {
            a.extend(m);
        }
        req("blockdev-add", args)
    };
    let over = |name: &str, file: &str, backing: Value| {
        req(
            "blockdev-add",
            json!({"driver": "qcow2", "node-name": name, "backing": backing,
                   "file": {"driver": "file", "filename": format!("@DIR@/{file}")}}),
        )
    };
    run(
        "null-and-zero-streams",
        &[
            null("n0", json!({})),
            req("block-stream", json!({"job-id": "s0", "device": "n0"})),
            Step::Wait("s0", "null"),
            over("q1", "tgt2.qcow2", json!("n0")),
            req("block-commit", json!({"job-id": "c1", "device": "q1"})),
            Step::Wait("c1", "ready"),
            req("job-complete", json!({"id": "c1"})),
            Step::Wait("c1", "null"),
            nodes(),
            // Zero data, data beside zeroes, a zero cluster, a partly written cluster.
            Step::Tool(&["io", "-f", "qcow2", "-c", "write -P 0 0 64k", "tgt.qcow2"]),
            Step::Tool(&["io", "-f", "qcow2", "-c", "write -P 1 64k 64k", "tgt.qcow2"]),
            Step::Tool(&[
                "io",
                "-f",
                "qcow2",
                "-c",
                "write -P 0 128k 64k",
                "tgt.qcow2",
            ]),
            Step::Tool(&["io", "-f", "qcow2", "-c", "write -z 192k 64k", "tgt.qcow2"]),
            Step::Tool(&["io", "-f", "qcow2", "-c", "write -P 0 320k 4k", "tgt.qcow2"]),
            Step::Tool(&["io", "-f", "qcow2", "-c", "write -P 2 640k 4k", "tgt.qcow2"]),
            Step::Tool(&[
                "img",
                "create",
                "-q",
                "-f",
                "qcow2",
                "-b",
                "tgt.qcow2",
                "-F",
                "qcow2",
                "z.qcow2",
            ]),
            add("z", "z.qcow2"),
            req("block-stream", json!({"job-id": "s1", "device": "z"})),
            Step::Wait("s1", "null"),
            req("blockdev-del", json!({"node-name": "z"})),
            Step::Map("z.qcow2"),
            // Null backings, reading zeroes or not.
            null("nz", json!({"read-zeroes": true})),
            null("nd", json!({"read-zeroes": false})),
            Step::Tool(&["img", "create", "-q", "-f", "qcow2", "a.qcow2", "1M"]),
            Step::Tool(&["img", "create", "-q", "-f", "qcow2", "b.qcow2", "1M"]),
            over("a", "a.qcow2", json!("nz")),
            over("b", "b.qcow2", json!("nd")),
            req("block-stream", json!({"job-id": "s2", "device": "a"})),
            Step::Wait("s2", "null"),
            req("block-stream", json!({"job-id": "s3", "device": "b"})),
            Step::Wait("s3", "null"),
            nodes(),
            req("blockdev-del", json!({"node-name": "a"})),
            req("blockdev-del", json!({"node-name": "b"})),
            Step::Map("a.qcow2"),
            Step::Map("b.qcow2"),
        ],
    );
}

/// `blockdev-snapshot` drains the graph, then its node (and what is above it) once found,
/// then its overlay once the overlay's checks pass, until it is done: a job on either
/// pauses once for all of it, other jobs at each drain. An overlay is in use when what is
/// above it reads it (a mirror's source under its filter), not when it is only written (a
/// mirror's target); a node that would become its own backing is refused as a cycle.
#[test]
fn snapshots_drain_their_nodes_and_refuse_overlays_that_are_read() {
    let null = |name: &str| {
        req(
            "blockdev-add",
            json!({"driver": "null-co", "node-name": name}),
        )
    };
    let snap = |node: &str, overlay: &str| {
        req(
            "blockdev-snapshot",
            json!({"node": node, "overlay": overlay}),
        )
    };
    run(
        "snapshot-drains",
        &[
            add("src", "base.qcow2"),
            add("tgt", "tgt.qcow2"),
            add("o", "tgt2.qcow2"),
            null("n1"),
            null("n2"),
            req(
                "blockdev-mirror",
                json!({"job-id": "m", "device": "src", "target": "tgt", "sync": "none"}),
            ),
            Step::Wait("m", "ready"),
            snap("tgt", "tgt"),
            snap("src", "o"),
            snap("nosuch", "o"),
            snap("n1", "nosuch"),
            snap("o", "o"),
            snap("n1", "src"),
            snap("n1", "tgt"),
            Step::Wait("m", "ready"),
            nodes(),
            snap("n2", "o"),
            snap("n2", "o"),
            Step::Wait("m", "ready"),
            nodes(),
            req("block-job-cancel", json!({"device": "m"})),
            Step::Wait("m", "null"),
        ],
    );
}

/// Formatting a qcow2 image over a file node drains the whole graph fourteen times while
/// the create job runs (a ready mirror goes to standby and back each time); creating a
/// file does not drain it.
#[test]
fn a_qcow2_create_over_a_node_drains_the_graph() {
    run(
        "create-drains",
        &[
            add("src", "base.qcow2"),
            add("tgt", "tgt.qcow2"),
            req(
                "blockdev-mirror",
                json!({"job-id": "m", "device": "src", "target": "tgt", "sync": "none"}),
            ),
            Step::Wait("m", "ready"),
            req(
                "blockdev-create",
                json!({"job-id": "c0", "options": {"driver": "file",
                       "filename": "@DIR@/new.img", "size": 65536}}),
            ),
            Step::Wait("c0", "concluded"),
            req(
                "blockdev-add",
                json!({"driver": "file", "node-name": "f1", "filename": "@DIR@/new.img"}),
            ),
            req(
                "blockdev-create",
                json!({"job-id": "c1", "options": {"driver": "qcow2", "file": "f1",
                       "size": 1048576}}),
            ),
            Step::Wait("c1", "concluded"),
            req("block-job-cancel", json!({"device": "m"})),
            Step::Wait("m", "null"),
        ],
    );
}

/// A qcow2 image formatted over a node goes into the host file below it (through raw nodes
/// and filters); over a null node, whose data is zeroes whatever is written, the new image
/// does not open (after its first three clusters were written through the nodes, and a name
/// generated for it), and no file is written anywhere.
#[test]
fn a_qcow2_create_writes_the_file_below_its_node() {
    let create = |job: &str, node: &str| {
        req(
            "blockdev-create",
            json!({"job-id": job, "options": {"driver": "qcow2", "file": node,
                   "size": 1048576}}),
        )
    };
    run(
        "create-below",
        &[
            req(
                "blockdev-add",
                json!({"driver": "null-co", "node-name": "n0"}),
            ),
            req(
                "blockdev-add",
                json!({"driver": "null-co", "node-name": "n1", "read-zeroes": true,
                       "size": 1048576}),
            ),
            create("c0", "n0"),
            Step::Wait("c0", "concluded"),
            create("c1", "n1"),
            Step::Wait("c1", "concluded"),
            req("query-jobs", json!({})),
            req(
                "blockdev-add",
                json!({"driver": "null-co", "node-name": "n3"}),
            ),
            req(
                "blockdev-add",
                json!({"driver": "raw", "node-name": "r3", "file": "n3"}),
            ),
            req(
                "blockdev-create",
                json!({"job-id": "c4", "options": {"driver": "qcow2", "file": "r3",
                       "size": 1048576, "cluster-size": 4096}}),
            ),
            Step::Wait("c4", "concluded"),
            req("query-blockstats", json!({"query-nodes": true})),
            Step::Names,
            req(
                "blockdev-create",
                json!({"job-id": "c2", "options": {"driver": "file",
                       "filename": "@DIR@/new.img", "size": 0}}),
            ),
            Step::Wait("c2", "concluded"),
            req(
                "blockdev-add",
                json!({"driver": "file", "node-name": "f2", "filename": "@DIR@/new.img"}),
            ),
            req(
                "blockdev-add",
                json!({"driver": "raw", "node-name": "r2", "file": "f2"}),
            ),
            create("c3", "r2"),
            Step::Wait("c3", "concluded"),
            req("query-jobs", json!({})),
            Step::Files,
            Step::ImageInfo("new.img"),
        ],
    );
}

/// As a job ends, its graph change and its filter and links going drain the graph (a
/// mirror's or active commit's pivot five times, a mirror cancelled once ready or failing
/// four, a backup three), and once it is dismissed its block backend
/// going drains it once more: another job, ready, goes to standby and back each time.
#[test]
fn jobs_that_end_drain_the_graph_as_qemu_does() {
    let img = |f: &'static [&'static str]| Step::Tool(f);
    run(
        "ending-drains",
        &[
            img(&["img", "create", "-q", "-f", "qcow2", "a.qcow2", "1M"]),
            img(&["img", "create", "-q", "-f", "qcow2", "b.qcow2", "1M"]),
            img(&["img", "create", "-q", "-f", "qcow2", "c.qcow2", "2M"]),
            add("src", "base.qcow2"),
            add("tgt", "tgt.qcow2"),
            req(
                "blockdev-mirror",
                json!({"job-id": "m", "device": "src", "target": "tgt", "sync": "none"}),
            ),
            Step::Wait("m", "ready"),
            add("a", "a.qcow2"),
            add("b", "b.qcow2"),
            add("c", "c.qcow2"),
            job_on("blockdev-mirror", "m1", "a", "b", json!({"sync": "full"})),
            Step::Wait("m1", "ready"),
            req("job-complete", json!({"id": "m1"})),
            Step::Wait("m1", "null"),
            job_on("blockdev-mirror", "m2", "b", "a", json!({"sync": "full"})),
            Step::Wait("m2", "ready"),
            req("block-job-cancel", json!({"device": "m2"})),
            Step::Wait("m2", "null"),
            job_on("blockdev-mirror", "m3", "a", "c", json!({"sync": "full"})),
            Step::Wait("m3", "null"),
            job_on("blockdev-backup", "b1", "a", "b", json!({"sync": "full"})),
            Step::Wait("b1", "null"),
            job_on(
                "blockdev-backup",
                "b2",
                "a",
                "b",
                json!({"sync": "full", "auto-dismiss": false}),
            ),
            Step::Wait("b2", "concluded"),
            req("job-dismiss", json!({"id": "b2"})),
            Step::Wait("b2", "null"),
            req("block-job-cancel", json!({"device": "m"})),
            Step::Wait("m", "null"),
        ],
    );
}

/// Job `cmd` with id `id` from `device` to `target`, with `more` arguments.
fn job_on(cmd: &str, id: &str, device: &str, target: &str, more: Value) -> Step {
    let mut args = json!({"job-id": id, "device": device, "target": target});
    if let (Some(a), Value::Object(m)) = (args.as_object_mut(), more) {
        a.extend(m);
    }
    req(cmd, args)
}

/// A ready job its user paused (standby) takes `complete` (as often as asked) and completes
/// once resumed; cancelled instead, it is cancelled. A mirror or active commit that has done
/// its work shows as paused until finalized (it holds its source drained), and a pending job
/// takes no verb but cancel and finalize.
#[test]
fn a_paused_ready_job_completes_when_resumed_and_pending_jobs_refuse_verbs() {
    let verbs = |id: &'static str| {
        [
            req("job-pause", json!({"id": id})),
            req("job-resume", json!({"id": id})),
            req("block-job-set-speed", json!({"device": id, "speed": 5})),
            req("job-complete", json!({"id": id})),
            req(
                "block-job-change",
                json!({"id": id, "type": "mirror", "copy-mode": "write-blocking"}),
            ),
            req("job-dismiss", json!({"id": id})),
            req("query-block-jobs", json!({})),
        ]
    };
    let mut script = vec![
        add("src", "top.qcow2"),
        add("tgt", "tgt.qcow2"),
        add("tgt2", "tgt2.qcow2"),
        job_on_src("blockdev-mirror", "m1", json!({"sync": "full"})),
        Step::Wait("m1", "ready"),
        req("block-job-pause", json!({"device": "m1"})),
        Step::Wait("m1", "standby"),
        req("block-job-complete", json!({"device": "m1"})),
        req("job-complete", json!({"id": "m1"})),
        req("query-block-jobs", json!({})),
        req("job-pause", json!({"id": "m1"})),
        req("job-resume", json!({"id": "m1"})),
        Step::Wait("m1", "null"),
        nodes(),
        // Asked to complete while paused, then cancelled: the cancel wins.
        req(
            "blockdev-mirror",
            json!({"job-id": "m2", "device": "src", "target": "tgt2", "sync": "full"}),
        ),
        Step::Wait("m2", "ready"),
        req("job-pause", json!({"id": "m2"})),
        Step::Wait("m2", "standby"),
        req("job-complete", json!({"id": "m2"})),
        req("job-cancel", json!({"id": "m2"})),
        Step::Wait("m2", "null"),
        nodes(),
        // Pending, not finalized: a mirror, then an active commit.
        req(
            "blockdev-mirror",
            json!({"job-id": "m3", "device": "src", "target": "tgt2", "sync": "full",
                   "auto-finalize": false, "auto-dismiss": false}),
        ),
        Step::Wait("m3", "ready"),
        req("job-complete", json!({"id": "m3"})),
        Step::Wait("m3", "pending"),
    ];
    script.extend(verbs("m3"));
    script.extend([
        req("job-finalize", json!({"id": "m3"})),
        Step::Wait("m3", "concluded"),
    ]);
    script.extend(verbs("m3"));
    script.extend([
        Step::Wait("m3", "null"),
        req(
            "block-commit",
            json!({"job-id": "c4", "device": "tgt2", "auto-finalize": false}),
        ),
        req(
            "block-commit",
            json!({"job-id": "c5", "device": "src",
                                   "auto-finalize": false}),
        ),
        Step::Wait("c5", "ready"),
        req("job-complete", json!({"id": "c5"})),
        Step::Wait("c5", "pending"),
        req("query-block-jobs", json!({})),
        req("job-cancel", json!({"id": "c5"})),
        Step::Wait("c5", "null"),
        graph(),
    ]);
    run("complete-standby", &script);
}

/// A parent's link that moves to another node (a snapshot's overlay going in under the
/// parents of the node, or back out when its transaction fails) is attached anew: the parent
/// lists it as its newest child.
#[test]
fn a_link_that_moves_is_its_parents_newest_child() {
    let snapshot_f = |file: &str, name: &str| {
        json!({"type": "blockdev-snapshot-sync",
               "data": {"node-name": "f", "snapshot-file": format!("@DIR@/{file}"),
                        "snapshot-node-name": name, "format": "qcow2"}})
    };
    run(
        "moved-links",
        &[
            req(
                "blockdev-add",
                json!({"driver": "file", "node-name": "f", "filename": "@DIR@/tgt2.qcow2"}),
            ),
            req(
                "blockdev-add",
                json!({"driver": "qcow2", "node-name": "q", "file": "f", "backing": null}),
            ),
            req(
                "blockdev-add",
                json!({"driver": "null-co", "node-name": "n0", "size": 1048576}),
            ),
            req("blockdev-snapshot", json!({"node": "n0", "overlay": "q"})),
            graph(),
            req(
                "transaction",
                json!({"actions": [snapshot_f("s1.qcow2", "s1"),
                    {"type": "blockdev-snapshot-sync",
                     "data": {"node-name": "nosuchnode", "snapshot-file": "@DIR@/never.qcow2",
                              "format": "qcow2"}}]}),
            ),
            graph(),
            req("blockdev-snapshot", json!({"node": "n0", "overlay": "q"})),
            req(
                "transaction",
                json!({"actions": [snapshot_f("s2.qcow2", "s2")]}),
            ),
            graph(),
        ],
    );
}

/// An export's checks in QEMU's order: its ID, its node, a writable export of a read-only node
/// (`nbd-server-add` exports it read-only instead), then its block backend goes onto the node
/// taking what it needs (permission conflicts and image locks show here, before the server is
/// asked for), then the server, the export's name, and last the export stops sharing resizes.
#[test]
fn exports_check_in_qemus_order() {
    let file = |name: &str, more: Value| {
        let mut args = json!({"driver": "file", "node-name": name,
                              "filename": "@DIR@/tgt.qcow2"});
        if let (Some(a), Value::Object(m)) = (args.as_object_mut(), more) {
            a.extend(m);
        }
        req("blockdev-add", args)
    };
    let exp = |id: &str, node: &str, more: Value| {
        let mut args = json!({"type": "nbd", "id": id, "node-name": node});
        if let (Some(a), Value::Object(m)) = (args.as_object_mut(), more) {
            a.extend(m);
        }
        req("block-export-add", args)
    };
    let legacy = |node: &str, more: Value| {
        let mut args = json!({"device": node});
        if let (Some(a), Value::Object(m)) = (args.as_object_mut(), more) {
            a.extend(m);
        }
        req("nbd-server-add", args)
    };
    let w = json!({"writable": true});
    let mut script = vec![
        file("fa", json!({})),
        req(
            "blockdev-add",
            json!({"driver": "qcow2", "node-name": "qa", "file": "fa"}),
        ),
        // Opened read-only until a parent writes: the lock of the other node refuses it.
        file("fb", json!({"auto-read-only": true})),
        file("fc", json!({"read-only": true})),
    ];
    for _server in 0..2 {
        script.extend([
            exp("e1", "fb", w.clone()),
            exp("e1", "fb", json!({})),
            exp("e1", "fc", w.clone()),
            exp("e1", "fa", w.clone()),
            exp("e1", "fa", json!({"name": "x"})),
            exp("e1", "nosuchnode", w.clone()),
            legacy("fb", w.clone()),
            legacy("fc", w.clone()),
            legacy("fa", w.clone()),
            legacy("nosuchnode", w.clone()),
            exp("e2", "qa", json!({"name": "x"})),
            exp("e3", "qa", json!({"name": "x"})),
            exp("e2", "fa", json!({"name": "y"})),
            legacy("fc", json!({"name": "x"})),
            req("query-block-exports", json!({})),
            nbd_start(),
        ]);
    }
    run("export-order", &script);
}

/// A job that runs at one byte a second between two null nodes: every drain of the graph
/// pauses and resumes it, so the events count the drains.
fn drain_counter() -> [Step; 3] {
    [
        req(
            "blockdev-add",
            json!({"driver": "null-co", "node-name": "n1"}),
        ),
        req(
            "blockdev-add",
            json!({"driver": "null-co", "node-name": "n2"}),
        ),
        job_on(
            "blockdev-backup",
            "j0",
            "n1",
            "n2",
            json!({"sync": "full", "speed": 1}),
        ),
    ]
}

fn file_node(name: &str, file: &str, more: Value) -> Step {
    let mut args = json!({"driver": "file", "node-name": name,
                          "filename": format!("@DIR@/{file}")});
    if let (Some(a), Value::Object(m)) = (args.as_object_mut(), more) {
        a.extend(m);
    }
    req("blockdev-add", args)
}

fn over(driver: &str, name: &str, file: Value, more: Value) -> Step {
    let mut args = json!({"driver": driver, "node-name": name, "file": file});
    if let (Some(a), Value::Object(m)) = (args.as_object_mut(), more) {
        a.extend(m);
    }
    req("blockdev-add", args)
}

/// A backup's filter first opens over its source and target as a node no parent uses: it
/// writes the target from the start, but asks nothing of the source yet (a conflict or lock
/// there is not its opening's: "Could not create node" is about the target). The job is
/// announced, then the filter takes the source's place and asks to read it with no other
/// writer: refused there, the job goes, with the error in its own words. The job's id is
/// checked between the two (with the filter open), its speed after. Each way drains the
/// graph as often as QEMU's does.
#[test]
fn a_backups_filter_opens_over_its_children_then_takes_the_sources_place() {
    let backup = |id: &str, device: &str, more: Value| {
        job_on("blockdev-backup", id, device, "rt", {
            let mut m = json!({"sync": "none"});
            if let (Some(a), Value::Object(x)) = (m.as_object_mut(), more) {
                a.extend(x);
            }
            m
        })
    };
    let mut script = Vec::from(drain_counter());
    script.extend([
        nbd_start(),
        // The target: a raw node over tgt2.qcow2's file.
        file_node("fb", "tgt2.qcow2", json!({})),
        over("raw", "rt", json!("fb"), json!({})),
        // A source over a file another node writes (through a writable export).
        file_node("fs", "tgt.qcow2", json!({})),
        over("raw", "rs", json!("fs"), json!({})),
        over("raw", "rs2", json!("fs"), json!({})),
        export("es", "rs2", true),
        backup("j", "rs", json!({})),
        backup("j0", "rs", json!({})),
        req("block-export-del", json!({"id": "es"})),
        req("blockdev-del", json!({"node-name": "rs2"})),
        req("blockdev-del", json!({"node-name": "rs"})),
        req("blockdev-del", json!({"node-name": "fs"})),
        // A source over a file whose other node's format writes it (an image lock).
        file_node("fa", "tgt.qcow2", json!({})),
        over("qcow2", "qa", json!("fa"), json!({})),
        over(
            "raw",
            "rsrc",
            json!({"driver": "file", "filename": "@DIR@/tgt.qcow2"}),
            json!({}),
        ),
        backup("j", "rsrc", json!({})),
        backup("j", "rsrc", json!({"filter-node-name": "cbw"})),
        backup("j", "rsrc", json!({"speed": -1})),
        backup("j0", "rsrc", json!({})),
        // Once the target's file has a format node that will not share its writes, the
        // filter cannot open.
        over("qcow2", "qb", json!("fb"), json!({})),
        backup("j", "rsrc", json!({})),
        backup("j0", "rsrc", json!({})),
        graph(),
        req("block-job-cancel", json!({"device": "j0"})),
        Step::Wait("j0", "null"),
    ]);
    run("backup-filter-open", &script);
}

/// QEMU refreshes the permissions of the subgraph below a changed node walking down from it,
/// a node's children in the order they were attached, and checks each node in turn (its
/// parents' conflicts, then its file's locks): the first child's refusal is the one
/// reported, whether it is a conflict between parents or an image lock, and whatever other
/// parents outside the subgraph the nodes below have.
#[test]
fn a_permission_refresh_meets_the_first_childs_refusal_first() {
    let ro = json!({"read-only": true});
    let quorum = |name: &str, children: Value| {
        req(
            "blockdev-add",
            json!({"driver": "quorum", "node-name": name, "vote-threshold": 1,
                   "children": children}),
        )
    };
    // (No job runs: the drains of a quorum that fails to open are not what is compared.)
    let script = [
        // fl's file is held by a read-only qcow2 node of another file node (it may not be
        // written); fg's own qcow2 parent shares no writes.
        over(
            "qcow2",
            "ql0",
            json!({"driver": "file", "node-name": "fl0", "read-only": true,
                   "filename": "@DIR@/tgt.qcow2"}),
            ro.clone(),
        ),
        file_node("fl", "tgt.qcow2", json!({})),
        file_node("fg", "tgt2.qcow2", json!({})),
        over("qcow2", "qg", json!("fg"), ro),
        quorum("q1", json!(["fl", "fg"])),
        quorum("q2", json!(["fg", "fl"])),
        nbd_start(),
        export("e1", "q1", true),
        export("e2", "q2", true),
        // A new node's children: a quorum that will not share writes with two raw nodes,
        // one over a file node another parent writes, one over a file node whose file
        // another node's image writes (its lock).
        file_node("fw", "mid.qcow2", json!({})),
        over("raw", "rw", json!("fw"), json!({})),
        over("raw", "rw2", json!("fw"), json!({})),
        export("ew", "rw2", true),
        over(
            "qcow2",
            "qx",
            json!({"driver": "file", "filename": "@DIR@/base.qcow2"}),
            json!({}),
        ),
        over(
            "raw",
            "rl",
            json!({"driver": "file", "filename": "@DIR@/base.qcow2"}),
            json!({}),
        ),
        quorum("q3", json!(["rl", "rw"])),
        quorum("q4", json!(["rw", "rl"])),
        graph(),
    ];
    run("refresh-order", &script);
}

/// A mirror's filter takes the source's place asking nothing of it, then the job's link on
/// the filter reads it: what the source's file is refused then shows in the order QEMU's
/// file locks check (the permissions taken before the ones no longer shared). Whether the
/// reads or the resizes are refused depends on the locks of the other node on the same file:
/// a mirror's target writer leaves that node's consistent reads unshared, a plain image
/// does not.
#[test]
fn a_mirrors_source_is_read_once_the_job_links_its_filter() {
    let mirror = |id: &str, device: &str, target: &str| {
        job_on(
            "blockdev-mirror",
            id,
            device,
            target,
            json!({"sync": "full", "auto-finalize": false}),
        )
    };
    let mut script = Vec::from(drain_counter());
    script.extend([
        over(
            "qcow2",
            "q7",
            json!({"driver": "file", "node-name": "ftop", "filename": "@DIR@/tgt.qcow2"}),
            json!({}),
        ),
        over(
            "raw",
            "r24",
            json!({"driver": "file", "filename": "@DIR@/tgt.qcow2"}),
            json!({"read-only": true}),
        ),
        file_node("f35", "tgt2.qcow2", json!({})),
        over("raw", "r61", json!("f35"), json!({})),
        mirror("m1", "r24", "r61"),
        req(
            "blockdev-add",
            json!({"driver": "null-co", "node-name": "n3", "size": 1048576}),
        ),
        job_on(
            "blockdev-mirror",
            "m54",
            "n3",
            "q7",
            json!({"sync": "none"}),
        ),
        Step::Wait("m54", "ready"),
        mirror("m2", "r24", "r61"),
        graph(),
        req("block-job-cancel", json!({"device": "m54"})),
        Step::Wait("m54", "null"),
        req("block-job-cancel", json!({"device": "j0"})),
        Step::Wait("j0", "null"),
    ]);
    run("mirror-source-read", &script);
}

/// An export refused as its block backend goes onto the node (a permission conflict, an
/// image lock) drains the graph once; one refused after that (no server, a name in use, a
/// node others resize) twice, as its backend comes off again.
#[test]
fn an_export_refused_on_its_node_drains_once() {
    let mut script = Vec::from(drain_counter());
    script.extend([
        req(
            "blockdev-add",
            json!({"driver": "null-co", "node-name": "n3"}),
        ),
        req(
            "blockdev-add",
            json!({"driver": "null-co", "node-name": "n4"}),
        ),
        file_node("fa", "tgt.qcow2", json!({})),
        over("qcow2", "qa", json!("fa"), json!({})),
        over("raw", "ra", json!("fa"), json!({})),
        over(
            "raw",
            "ra2",
            json!({"driver": "file", "filename": "@DIR@/tgt.qcow2"}),
            json!({}),
        ),
        export("e0", "n3", true),
        nbd_start(),
        export("e1", "ra", true),
        export("e2", "ra2", true),
        req(
            "block-export-add",
            json!({"type": "nbd", "id": "e3", "node-name": "n3", "name": "nn"}),
        ),
        req(
            "block-export-add",
            json!({"type": "nbd", "id": "e4", "node-name": "n4", "name": "nn"}),
        ),
        export("e5", "ra", false),
        req("query-block-exports", json!({})),
        req("block-job-cancel", json!({"device": "j0"})),
        Step::Wait("j0", "null"),
    ]);
    run("export-refused-drains", &script);
}

/// A backup `id` of `device` into `target` with `sync`, at `speed` (0: none).
fn backup(id: &str, device: &str, target: &str, sync: &str, speed: u64) -> Step {
    let mut a = json!({"job-id": id, "device": device, "target": target, "sync": sync});
    if speed > 0 {
        a["speed"] = json!(speed);
    }
    req("blockdev-backup", a)
}

/// A backup goes in chunks that follow its source's block status: a run of data or zeroes
/// from one layer, in whole clusters of the job (64 KiB or the target's larger ones), at
/// most 1 MiB or one larger cluster. At speed 1 the first chunk goes at once and the next
/// waits: the offset shows the first chunk. Its length is what it copies: the whole disk
/// in whole clusters (`full`), the clusters the source's own layer holds (`top`).
#[test]
fn backups_go_in_chunks_that_follow_the_sources_block_status() {
    run(
        "backup-chunks",
        &[
            Step::Tool(&["img", "create", "-q", "-f", "raw", "disk.raw", "1M"]),
            Step::Tool(&["io", "-f", "raw", "-c", "write -P 0x44 0 512k", "disk.raw"]),
            Step::Tool(&["img", "create", "-q", "-f", "raw", "hole.raw", "197120"]),
            Step::Tool(&[
                "img",
                "create",
                "-q",
                "-f",
                "qcow2",
                "-o",
                "cluster_size=512k",
                "t512.qcow2",
                "1M",
            ]),
            Step::Tool(&[
                "img",
                "create",
                "-q",
                "-f",
                "qcow2",
                "-o",
                "cluster_size=2M",
                "t2m.qcow2",
                "1M",
            ]),
            // top.qcow2 reads base's data at 0-256k, mid's at 256k-384k, its own at
            // 512k-576k.
            add("src", "top.qcow2"),
            add("tgt", "tgt.qcow2"),
            add("tgt2", "tgt2.qcow2"),
            add("t512", "t512.qcow2"),
            add("t2m", "t2m.qcow2"),
            req(
                "blockdev-add",
                json!({"driver": "raw", "node-name": "disk",
                       "file": {"driver": "file", "filename": "@DIR@/disk.raw"}}),
            ),
            req(
                "blockdev-add",
                json!({"driver": "raw", "node-name": "hole",
                       "file": {"driver": "file", "filename": "@DIR@/hole.raw"}}),
            ),
            req(
                "blockdev-add",
                json!({"driver": "null-co", "node-name": "n1", "size": 1 << 20}),
            ),
            req(
                "blockdev-add",
                json!({"driver": "null-co", "node-name": "nh", "size": 197120}),
            ),
            // The backing file's run first (another backup of the same source may start).
            backup("b1", "src", "tgt", "full", 1),
            Step::Moved("b1"),
            backup("b2", "src", "tgt2", "full", 1),
            Step::Moved("b2"),
            req("query-block-jobs", json!({})),
            req("job-cancel", json!({"id": "b2"})),
            Step::Wait("b2", "null"),
            // Only the top's own cluster: one chunk, and done.
            backup("b3", "src", "tgt2", "top", 1),
            Step::Wait("b3", "null"),
            req("job-cancel", json!({"id": "b1"})),
            Step::Wait("b1", "null"),
            // A cluster of 512 KiB holds the first run; one of 2 MiB makes the length.
            backup("b4", "src", "t512", "full", 1),
            Step::Moved("b4"),
            req("query-jobs", json!({})),
            req("job-cancel", json!({"id": "b4"})),
            Step::Wait("b4", "null"),
            backup("b5", "src", "t512", "top", 1),
            Step::Wait("b5", "null"),
            backup("b6", "src", "t2m", "full", 1),
            Step::Wait("b6", "null"),
            // A raw file: its data, then its hole; a disk with no layer below is all its own.
            backup("b7", "disk", "n1", "top", 1),
            Step::Moved("b7"),
            req("query-block-jobs", json!({})),
            req("job-cancel", json!({"id": "b7"})),
            Step::Wait("b7", "null"),
            // A file that is all hole: its first 4 KiB count as data (one cluster), the
            // rest runs to the disk's end, in whole clusters.
            backup("b8", "hole", "nh", "full", 1),
            Step::Moved("b8"),
            req("query-jobs", json!({})),
            req("job-cancel", json!({"id": "b8"})),
            Step::Wait("b8", "null"),
            backup("b9", "hole", "nh", "full", 0),
            Step::Wait("b9", "null"),
        ],
    );
}

/// A null node counts where the writes into it end (`wr_highest_offset`) as any node does:
/// a mirror or backup into it writes the source's whole length (zeroes included), a rate
/// limited one its first chunk at once. A mirror from a null node that does not read as
/// zeroes copies nothing: its target is left as it was.
#[test]
fn jobs_into_null_nodes_count_their_writes_and_mirrors_copy_nothing_from_them() {
    let null = |name: &str, more: Value| {
        let mut args = json!({"driver": "null-co", "node-name": name, "size": 1048576});
        if let (Some(a), Value::Object(m)) = (args.as_object_mut(), more) {
            a.extend(m);
        }
        req("blockdev-add", args)
    };
    let stats = || req("query-blockstats", json!({"query-nodes": true}));
    run(
        "null-writes",
        &[
            Step::Tool(&["io", "-f", "qcow2", "-c", "write -P 0x11 0 1M", "tgt.qcow2"]),
            null("ns", json!({})),
            null("nz", json!({"read-zeroes": true})),
            null("t1", json!({})),
            null("t2", json!({})),
            null("t3", json!({})),
            add("src", "base.qcow2"),
            add("tq", "tgt.qcow2"),
            job_on("blockdev-mirror", "m1", "nz", "t1", json!({"sync": "full"})),
            Step::Wait("m1", "ready"),
            req("block-job-cancel", json!({"device": "m1"})),
            Step::Wait("m1", "null"),
            job_on("blockdev-mirror", "m2", "ns", "tq", json!({"sync": "full"})),
            Step::Wait("m2", "ready"),
            req("block-job-cancel", json!({"device": "m2"})),
            Step::Wait("m2", "null"),
            job_on("blockdev-backup", "b1", "ns", "t2", json!({"sync": "full"})),
            Step::Wait("b1", "null"),
            job_on(
                "blockdev-mirror",
                "m3",
                "src",
                "t3",
                json!({"sync": "full", "speed": 1}),
            ),
            stats(),
            req("block-job-cancel", json!({"device": "m3"})),
            Step::Wait("m3", "null"),
            stats(),
            req("blockdev-del", json!({"node-name": "tq"})),
            Step::Io("tgt.qcow2", "read -P 0x11 0 1M"),
        ],
    );
}

/// A backup with `sync` `none` copies only what writes are about to change, so it runs until
/// it is cancelled: running, offset 0, its length the whole disk, not ready, never complete.
#[test]
fn a_backup_without_sync_runs_until_cancelled() {
    run(
        "backup-none",
        &[
            add("src", "top.qcow2"),
            add("tgt", "tgt.qcow2"),
            add("tgt2", "tgt2.qcow2"),
            backup("n1", "src", "tgt", "none", 0),
            Step::Wait("n1", "running"),
            backup("n2", "src", "tgt2", "none", 1),
            Step::Wait("n2", "running"),
            req("query-block-jobs", json!({})),
            req("query-jobs", json!({})),
            req("job-complete", json!({"id": "n1"})),
            req("job-pause", json!({"id": "n1"})),
            Step::Wait("n1", "paused"),
            req("query-block-jobs", json!({})),
            req("job-resume", json!({"id": "n1"})),
            Step::Wait("n1", "running"),
            req("block-job-set-speed", json!({"device": "n2", "speed": 0})),
            req("query-jobs", json!({})),
            req("block-job-cancel", json!({"device": "n1"})),
            Step::Wait("n1", "null"),
            req("job-cancel", json!({"id": "n2"})),
            Step::Wait("n2", "null"),
        ],
    );
}

/// A qcow2 image created into a file longer than it leaves the file's length, and its file
/// node counts where the image's writes end (`wr_highest_offset`), not the file's end.
#[test]
fn a_qcow2_created_in_a_longer_file_counts_only_its_writes() {
    let create = |id: &str, file: &str, more: Value| {
        let mut options = json!({"driver": "qcow2", "file": file, "size": 1048576});
        if let (Some(a), Value::Object(m)) = (options.as_object_mut(), more) {
            a.extend(m);
        }
        req("blockdev-create", json!({"job-id": id, "options": options}))
    };
    run(
        "create-writes",
        &[
            Step::Tool(&["img", "create", "-q", "-f", "raw", "long.raw", "2M"]),
            Step::Tool(&["img", "create", "-q", "-f", "raw", "empty.raw", "0"]),
            file_node("fl", "long.raw", json!({})),
            file_node("fe", "empty.raw", json!({})),
            file_node("fl2", "tgt.qcow2", json!({})),
            req("block_resize", json!({"node-name": "fl2", "size": 2097152})),
            create("c1", "fl", json!({})),
            Step::Wait("c1", "concluded"),
            create("c2", "fe", json!({})),
            Step::Wait("c2", "concluded"),
            create("c3", "fl2", json!({"size": 4194304, "cluster-size": 4096})),
            Step::Wait("c3", "concluded"),
            req("query-blockstats", json!({"query-nodes": true})),
            nodes(),
        ],
    );
}

/// A backup's filter shows three bitmaps: the first marks the whole disk from the start to
/// the job's end, whatever the sync mode; the last what is left to copy.
#[test]
fn a_backups_filter_shows_the_whole_disk_then_what_is_left() {
    let backup = |id: &str, target: &str, more: Value| {
        let mut args = json!({"job-id": id, "device": "src", "target": target,
                              "auto-finalize": false, "filter-node-name": "cbw"});
        if let (Some(a), Value::Object(m)) = (args.as_object_mut(), more) {
            a.extend(m);
        }
        req("blockdev-backup", args)
    };
    run(
        "backup-filter-bitmaps",
        &[
            add("src", "base.qcow2"),
            add("t1", "tgt.qcow2"),
            add("t2", "tgt2.qcow2"),
            backup("b1", "t1", json!({"sync": "full"})),
            Step::Wait("b1", "pending"),
            nodes(),
            req("job-finalize", json!({"id": "b1"})),
            Step::Wait("b1", "null"),
            backup("b2", "t2", json!({"sync": "none"})),
            nodes(),
            req("block-job-cancel", json!({"device": "b2"})),
            Step::Wait("b2", "null"),
        ],
    );
}

/// Snapshots in transactions drain as QEMU's do, phase by phase: a snapshot holds its node
/// (and `blockdev-snapshot` its overlay) drained from when it finds it until the
/// transaction is cleaned, drains the graph as it attaches or creates its overlay and as it
/// commits; undone, it drains once, lets its section go and drains its node and overlay
/// again around one more drain; an overlay image nobody uses closes with two. Jobs show it:
/// a ready mirror on null nodes (every drain of the whole graph), mirrors above the
/// snapshotted nodes through raw nodes (their sections) and one writing an overlay. The
/// sections of a refused snapshot end in their own order, and a drain of the whole graph
/// pauses the jobs in the order of the nodes they are linked to.
#[test]
fn snapshots_in_transactions_drain_phase_by_phase() {
    let null = |name: &str| {
        req(
            "blockdev-add",
            json!({"driver": "null-co", "node-name": name, "size": 1048576}),
        )
    };
    let raw = |name: &str, file: &str| {
        req(
            "blockdev-add",
            json!({"driver": "raw", "node-name": name, "file": file}),
        )
    };
    let mirror = |id: &str, device: &str, target: &str| {
        req(
            "blockdev-mirror",
            json!({"job-id": id, "device": device, "target": target, "sync": "none"}),
        )
    };
    let snap = |node: &str, overlay: &str| json!({"type": "blockdev-snapshot", "data": {"node": node, "overlay": overlay}});
    let sync = |node: &str, file: &str, name: &str| {
        json!({"type": "blockdev-snapshot-sync", "data": {"node-name": node,
               "snapshot-file": format!("@DIR@/{file}"), "snapshot-node-name": name}})
    };
    let abort = json!({"type": "abort", "data": {}});
    let bitmap = |node: &str, name: &str| json!({"type": "block-dirty-bitmap-add", "data": {"node": node, "name": name}});
    let transaction = |actions: Vec<Value>| req("transaction", json!({"actions": actions}));
    let waits = || {
        [
            Step::Wait("mj", "ready"),
            Step::Wait("m", "ready"),
            Step::Wait("k", "ready"),
        ]
    };
    let mut script = vec![
        Step::Tool(&["img", "create", "-q", "-f", "qcow2", "o1.qcow2", "1M"]),
        Step::Tool(&["img", "create", "-q", "-f", "qcow2", "o2.qcow2", "1M"]),
        Step::Tool(&["img", "create", "-q", "-f", "qcow2", "o3.qcow2", "1M"]),
        Step::Tool(&["img", "create", "-q", "-f", "raw", "r.img", "1M"]),
        null("m1"),
        null("m2"),
        req(
            "blockdev-mirror",
            json!({"job-id": "mj", "device": "m1", "target": "m2", "sync": "full"}),
        ),
        Step::Wait("mj", "ready"),
        add("src", "base.qcow2"),
        add("tgt", "tgt.qcow2"),
        add("o1", "o1.qcow2"),
        add("o2", "o2.qcow2"),
        add("o3", "o3.qcow2"),
        null("n1"),
        null("n3"),
        null("n4"),
        null("n5"),
        // A raw node over a qcow2 node has the image's size, not its file's.
        raw("r", "src"),
        raw("r1", "n1"),
        mirror("m", "r", "tgt"),
        mirror("k", "r1", "n3"),
        Step::Wait("m", "ready"),
        Step::Wait("k", "ready"),
        // Written only: o1 may still be an overlay of a node nobody reads.
        mirror("mo", "n4", "o1"),
        Step::Wait("mo", "ready"),
    ];
    let cases = vec![
        // Refused as the users move (the mirror writing o1 shares no reads).
        vec![snap("n1", "o3"), snap("src", "o1")],
        vec![snap("n5", "o1"), abort.clone()],
        vec![snap("src", "o2"), snap("n1", "o3"), abort.clone()],
        vec![snap("n1", "o3"), snap("src", "o2"), abort.clone()],
        vec![snap("n1", "o3"), snap("src", "nosuch")],
        vec![
            bitmap("src", "b"),
            snap("src", "o2"),
            bitmap("o2", "c"),
            abort.clone(),
        ],
        vec![
            sync("src", "s1.qcow2", "s1"),
            snap("n1", "o3"),
            abort.clone(),
        ],
        vec![
            snap("src", "o2"),
            sync("n1", "s2.qcow2", "s2"),
            abort.clone(),
        ],
        vec![sync("n5", "s3.qcow2", "s3"), abort.clone()],
        vec![sync("n5", "s4.qcow2", "s4")],
    ];
    for actions in cases {
        script.push(transaction(actions));
        script.extend(waits());
        script.push(Step::Wait("mo", "ready"));
    }
    let existing = |file: &str| {
        req(
            "blockdev-snapshot-sync",
            json!({"node-name": "n1", "snapshot-file": format!("@DIR@/{file}"),
                   "snapshot-node-name": "x", "mode": "existing"}),
        )
    };
    script.extend([
        // An existing image that does not open: missing, of another format, locked.
        existing("nosuch.qcow2"),
        existing("r.img"),
        existing("o2.qcow2"),
        Step::Wait("k", "ready"),
        // Refused before anything opens.
        req(
            "blockdev-snapshot-sync",
            json!({"node-name": "n1", "snapshot-file": "@DIR@/nodir/x.qcow2",
                   "snapshot-node-name": "x"}),
        ),
        req(
            "blockdev-snapshot-sync",
            json!({"node-name": "n1", "snapshot-file": "@DIR@/x.qcow2"}),
        ),
        Step::Wait("k", "ready"),
        // Outside transactions, the same phases.
        req("blockdev-snapshot", json!({"node": "n5", "overlay": "o1"})),
        req("blockdev-snapshot", json!({"node": "src", "overlay": "o3"})),
        req(
            "blockdev-snapshot-sync",
            json!({"node-name": "n1", "snapshot-file": "@DIR@/s5.qcow2",
                   "snapshot-node-name": "s5"}),
        ),
    ]);
    script.extend(waits());
    script.extend([Step::Wait("mo", "ready"), nodes(), Step::Files]);
    run("transaction-drains", &script);
}

/// A stream over a sparse raw file goes in whole pieces as QEMU's does: the raw layer holds
/// all of its disk (its file's holes and data alike), so pieces of at most 512 KiB follow
/// only what the top holds itself; a piece that reads as zeroes becomes zeroes in the top,
/// any other piece data, whatever holes it spans.
#[test]
fn streams_over_sparse_raw_files_go_in_whole_pieces() {
    let mut script = vec![
        Step::Tool(&["img", "create", "-q", "-f", "raw", "sp.raw", "3200000"]),
        Step::Tool(&[
            "io",
            "-f",
            "raw",
            "-c",
            "write -P 0x11 1048676 1000",
            "sp.raw",
        ]),
        Step::Tool(&[
            "io",
            "-f",
            "raw",
            "-c",
            "write -P 0x22 2359296 196608",
            "sp.raw",
        ]),
        Step::Tool(&[
            "io",
            "-f",
            "raw",
            "-c",
            "write -P 0 2752512 65536",
            "sp.raw",
        ]),
        Step::Tool(&["io", "-f", "raw", "-c", "write -P 0x44 3100000 7", "sp.raw"]),
        Step::Tool(&[
            "img", "create", "-q", "-f", "qcow2", "-b", "sp.raw", "-F", "raw", "sp.qcow2",
        ]),
        Step::Tool(&[
            "io",
            "-f",
            "qcow2",
            "-c",
            "write -P 0x33 380416 99840",
            "sp.qcow2",
        ]),
        Step::Tool(&[
            "io",
            "-f",
            "qcow2",
            "-c",
            "write -P 0x55 1900544 4096",
            "sp.qcow2",
        ]),
        add("sp", "sp.qcow2"),
        req("block-stream", json!({"job-id": "s", "device": "sp"})),
        Step::Wait("s", "null"),
        req("blockdev-del", json!({"node-name": "sp"})),
        Step::Map("sp.qcow2"),
    ];
    for read in [
        "read -P 0x11 1048676 1000",
        "read -P 0x22 2359296 196608",
        "read -P 0x33 380416 99840",
        "read -P 0x44 3100000 7",
        "read -P 0 0 1048576",
    ] {
        script.push(Step::Io("sp.qcow2", read));
    }
    run("sparse-stream", &script);
}

/// A mirror counts and copies what is written through its filter while it runs or is ready
/// (measured on qemu-storage-daemon 10.0.2): in the background mode each granule written
/// (the job's granularity: its target's cluster size within 4 KiB to 64 KiB, or as asked)
/// once, the disk's last one only up to its end; in the `write-blocking` mode, once actively
/// synced, each write's own bytes, a paused job's too. An export added to the source after the
/// job started writes below the filter: the job does not see it, nor copy it. A granularity
/// that is no power of two from 512 bytes to 64 MiB is refused, after the nodes are looked up.
#[test]
fn mirrors_count_what_is_written_through_their_filter() {
    let jobs = || req("query-block-jobs", json!({}));
    let nodes_full = || {
        Step::Req(
            json!({"execute": "query-named-block-nodes", "arguments": {"flat": true},
                         "full": true}),
        )
    };
    let mirror = |granularity: u64| {
        req(
            "blockdev-mirror",
            json!({"job-id": "m0", "device": "src", "target": "tgt", "sync": "full",
                   "granularity": granularity}),
        )
    };
    run(
        "mirror-writes",
        &[
            add("src", "base.qcow2"),
            add("tgt", "tgt.qcow2"),
            nbd_start(),
            export("e0", "src", true),
            req(
                "blockdev-mirror",
                json!({"job-id": "m0", "device": "nosuch",
                "target": "tgt", "sync": "full", "granularity": 100}),
            ),
            mirror(100),
            mirror(1000),
            mirror(128 << 20),
            mirror(0),
            Step::Wait("m0", "ready"),
            nodes_full(),
            Step::Write("src", 0, 4096),
            Step::Sleep(400),
            jobs(),
            // The same granule again, and one that spans two (the first counted before).
            Step::Write("src", 100, 1000),
            Step::Sleep(400),
            Step::Write("src", 65535, 2),
            Step::Sleep(400),
            jobs(),
            // The disk's last granule, and beyond what the first copy held.
            Step::Write("src", (1 << 20) - 512, 512),
            Step::Write("src", 700 << 10, 100),
            Step::Sleep(400),
            jobs(),
            req(
                "block-export-add",
                json!({"type": "nbd", "id": "e1", "node-name": "src", "name": "late",
                       "writable": true}),
            ),
            Step::Write("late", 400 << 10, 4096),
            Step::Sleep(400),
            jobs(),
            req(
                "block-job-change",
                json!({"id": "m0", "type": "mirror", "copy-mode": "write-blocking"}),
            ),
            Step::Write("src", 200_000, 1000),
            Step::Write("src", 200_000, 1000),
            Step::Sleep(200),
            jobs(),
            req("job-pause", json!({"id": "m0"})),
            Step::Wait("m0", "standby"),
            Step::Write("src", 800 << 10, 3),
            Step::Sleep(200),
            jobs(),
            req("job-resume", json!({"id": "m0"})),
            Step::Wait("m0", "ready"),
            req("job-complete", json!({"id": "m0"})),
            Step::Wait("m0", "null"),
            Step::Io("tgt.qcow2", "read -P 0x55 0 4096"),
            Step::Io("tgt.qcow2", "read -P 0x55 65535 2"),
            Step::Io("tgt.qcow2", "read -P 0x55 1048064 512"),
            Step::Io("tgt.qcow2", "read -P 0x55 200000 1000"),
            Step::Io("tgt.qcow2", "read -P 0x55 819200 3"),
            Step::Io("tgt.qcow2", "read -P 0 409600 4096"),
        ],
    );
}

/// A mirror under a speed limit that has copied its disk once and waits for its speed
/// counts the granules written meanwhile when it is due again, copies them as one more
/// chunk, waits for that, and only then is ready; a mirror that copies nothing of its own
/// (`sync: none`, a target of 4 KiB clusters) counts each granule written.
#[test]
fn rate_limited_and_empty_mirrors_count_writes_as_qemu_does() {
    let jobs = || req("query-block-jobs", json!({}));
    run(
        "mirror-writes-limited",
        &[
            add("src", "base.qcow2"),
            add("tgt", "tgt.qcow2"),
            nbd_start(),
            export("e0", "src", true),
            job_on_src(
                "blockdev-mirror",
                "m0",
                json!({"sync": "full", "speed": 1048576}),
            ),
            Step::Sleep(200),
            jobs(),
            Step::Write("src", 0, 4096),
            Step::Write("src", 500_000, 4096),
            jobs(),
            Step::Wait("m0", "ready"),
            jobs(),
            req("block-job-cancel", json!({"device": "m0"})),
            Step::Wait("m0", "null"),
            Step::Tool(&[
                "img",
                "create",
                "-q",
                "-f",
                "qcow2",
                "-o",
                "cluster_size=4096",
                "small.qcow2",
                "1M",
            ]),
            add("small", "small.qcow2"),
            req(
                "blockdev-mirror",
                json!({"job-id": "m1", "device": "src", "target": "small", "sync": "none"}),
            ),
            Step::Wait("m1", "ready"),
            Step::Write("src", 5000, 10_000),
            Step::Sleep(400),
            jobs(),
            req("block-job-cancel", json!({"device": "m1"})),
            Step::Wait("m1", "null"),
            Step::Io("small.qcow2", "read -P 0x55 5000 10000"),
        ],
    );
}

/// A qcow2 image shrunk and grown again (`block_resize`) ends as QEMU's does, cluster for
/// cluster: shrinking gives back the clusters beyond the new end and the file ends after its
/// last cluster in use; growing changes the L1 table only when the new size needs more
/// entries than it has, to exactly that many, in the first free clusters that fit (the old
/// table's clusters given back after it moved); the clusters written next go where QEMU puts
/// them.
#[test]
fn qcow2_images_shrink_and_grow_as_qemu_places_their_clusters() {
    let resize = |size: u64| req("block_resize", json!({"node-name": "g", "size": size}));
    run(
        "qcow2-resize",
        &[
            Step::Tool(&["img", "create", "-q", "-f", "qcow2", "g.qcow2", "4M"]),
            Step::Tool(&[
                "io",
                "-f",
                "qcow2",
                "-c",
                "write -P 0x11 0 64k",
                "-c",
                "write -P 0x22 1M 64k",
                "-c",
                "write -P 0x33 3M 128k",
                "g.qcow2",
            ]),
            add("g", "g.qcow2"),
            resize(1 << 20),
            Step::HostMap("g.qcow2"),
            resize(4 << 20),
            Step::HostMap("g.qcow2"),
            nodes(),
            // More L1 entries: a new table, then the old one's place taken again.
            resize(600 << 20),
            Step::HostMap("g.qcow2"),
            resize(1025 << 20),
            Step::HostMap("g.qcow2"),
            resize(2 << 20),
            resize(100 << 30),
            Step::HostMap("g.qcow2"),
            nodes(),
            resize(4 << 20),
            nbd_start(),
            export("e0", "g", true),
            Step::Write("g", 2 << 20, 65536),
            Step::Write("g", 3 << 20, 65536),
            Step::Write("g", 1 << 20, 65536),
            Step::HostMap("g.qcow2"),
            Step::ImageInfo("g.qcow2"),
            Step::Io("g.qcow2", "read -P 0x11 0 64k"),
        ],
    );
}

/// `blockdev-snapshot-sync` refuses overlay formats as the daemon's build does: drivers it
/// lacks are unknown, drivers that create no images say so, and images without backing files
/// say that; the node-name check comes first.
#[test]
fn snapshot_overlay_formats_are_refused_in_the_daemons_words() {
    let snap = |format: &str| {
        req(
            "blockdev-snapshot-sync",
            json!({"node-name": "src", "snapshot-file": format!("ov-{format}"),
                   "snapshot-node-name": "o1", "format": format}),
        )
    };
    let mut script = vec![
        add("src", "base.qcow2"),
        req(
            "blockdev-snapshot-sync",
            json!({"node-name": "src", "snapshot-file": "ov.raw", "format": "raw"}),
        ),
    ];
    for f in [
        "raw",
        "file",
        "luks",
        "nbd",
        "vpc",
        "vhdx",
        "host_device",
        "null-co",
        "throttle",
        "quorum",
        "dmg",
        "vvfat",
        "vmdk",
        "ssh",
        "http",
        "blkreplay",
        "Raw",
        "bogus",
    ] {
        script.push(snap(f));
    }
    script.push(req("query-named-block-nodes", json!({"flat": true})));
    run("snapshot-formats", &script);
}
