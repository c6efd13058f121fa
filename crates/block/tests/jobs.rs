//! Jobs: the state machine's words, progress on a stepped clock, and each job kind run beside a
//! live qemu-storage-daemon on identical files: the same events in the same order, and files
//! that qemu-img finds clean and qemu-io reads as expected.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{check_clean, run, start_qsd, Qmp};
use qmpkit_block::graph::{BlockGraph, BlockdevOptions, BlockdevRef, Driver, PermSet, UserKind};
use qmpkit_block::image::{CreateOptions, ImageFormat};
use qmpkit_block::job::{JobEvent, JobOptions, JobStatus, Jobs, SyncMode};
use qmpkit_block::ErrorClass;
use qmpkit_testkit::program_or_skip;
use serde_json::{json, Value};

const SEC: u64 = 1_000_000_000;

/// Our notifications as QMP would carry them: (event, data).
fn qmp_events(events: Vec<JobEvent>) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for e in events {
        let (name, info) = match e {
            JobEvent::StatusChange { id, status } => {
                out.push((
                    "JOB_STATUS_CHANGE".to_string(),
                    json!({"id": id, "status": status.name()}),
                ));
                continue;
            }
            JobEvent::Pending { kind, id } => {
                out.push((
                    "BLOCK_JOB_PENDING".to_string(),
                    json!({"id": id, "type": kind.name()}),
                ));
                continue;
            }
            JobEvent::Ready(i) => ("BLOCK_JOB_READY", i),
            JobEvent::Completed(i) => ("BLOCK_JOB_COMPLETED", i),
            JobEvent::Cancelled(i) => ("BLOCK_JOB_CANCELLED", i),
        };
        let mut data = json!({
            "device": info.device, "len": info.len, "offset": info.offset,
            "speed": info.speed, "type": info.kind.name(),
        });
        if let Some(err) = info.error {
            data["error"] = json!(err);
        }
        out.push((name.to_string(), data));
    }
    out
}

/// Polls query-jobs until job `id` is in `status` (or gone, for "null").
fn wait_status(q: &mut Qmp, id: &str, status: &str) {
    let t = Instant::now();
    loop {
        let jobs = q.call("query-jobs", json!({})).unwrap();
        let now = jobs
            .as_array()
            .unwrap()
            .iter()
            .find(|j| j["id"] == id)
            .map(|j| j["status"].as_str().unwrap().to_string())
            .unwrap_or_else(|| "null".to_string());
        if now == status {
            return;
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "job {id} stuck in {now}, waiting for {status}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// base.img (raw, 4 MiB, 0x41 in the first MiB) under top.qcow2 (0x42 in the second MiB),
/// tgt.img a blank raw target; mid.qcow2 between them when `three`.
fn make_files(qemu_img: &Path, qemu_io: &Path, dir: &Path, three: bool) {
    let s = |n: &str| dir.join(n).to_str().unwrap().to_string();
    run(qemu_img, &["create", "-f", "raw", &s("base.img"), "4M"]);
    run(
        qemu_io,
        &["-f", "raw", "-c", "write -P 0x41 0 1M", &s("base.img")],
    );
    let layers: &[&str] = if three {
        &["mid.qcow2", "top.qcow2"]
    } else {
        &["top.qcow2"]
    };
    qmpkit_testkit::cmd::qcow2_chain(qemu_img, dir, "base.img", "raw", layers, None);
    if three {
        run(qemu_io, &["-c", "write -P 0x43 2M 512k", &s("mid.qcow2")]);
    }
    run(qemu_io, &["-c", "write -P 0x42 1M 1M", &s("top.qcow2")]);
    run(qemu_img, &["create", "-f", "raw", &s("tgt.img"), "4M"]);
}

fn add_top(g: &mut BlockGraph, dir: &Path) {
    g.add(
        &BlockdevOptions::format(
            Driver::Qcow2,
            BlockdevRef::Inline(Box::new(BlockdevOptions::file(dir.join("top.qcow2")))),
        )
        .named("top"),
    )
    .unwrap();
}

fn add_tgt(g: &mut BlockGraph, dir: &Path) {
    g.add(
        &BlockdevOptions::format(
            Driver::Raw,
            BlockdevRef::Inline(Box::new(BlockdevOptions::file(dir.join("tgt.img")))),
        )
        .named("tgt"),
    )
    .unwrap();
}

fn qsd_add_top_tgt(q: &mut Qmp, dir: &Path) {
    q.call(
        "blockdev-add",
        json!({"driver": "qcow2", "node-name": "top",
        "file": {"driver": "file", "filename": dir.join("top.qcow2")}}),
    )
    .unwrap();
    q.call(
        "blockdev-add",
        json!({"driver": "raw", "node-name": "tgt",
        "file": {"driver": "file", "filename": dir.join("tgt.img")}}),
    )
    .unwrap();
}

fn pattern(qemu_io: &Path, fmt: &str, file: &Path, cmd: &str) {
    let (ok, text) = run(
        qemu_io,
        &["-f", fmt, "-r", "-U", "-c", cmd, file.to_str().unwrap()],
    );
    assert!(
        ok && !text.contains("failed") && !text.contains("error"),
        "{cmd} on {}: {text}",
        file.display()
    );
}

fn qemu_info(qemu_img: &Path, file: &Path) -> Value {
    let (ok, text) = run(
        qemu_img,
        &["info", "-U", "--output=json", file.to_str().unwrap()],
    );
    assert!(ok, "{text}");
    serde_json::from_str(&text).unwrap()
}

#[test]
fn state_machine_words() {
    let mut jobs = Jobs::default();
    let mut g = BlockGraph::default();
    assert_eq!(
        jobs.cancel(&mut g, "nojob", true).unwrap_err().desc,
        "Job not found"
    );
    let e = jobs.require_block_job("nojob").unwrap_err();
    assert_eq!(
        (e.class, e.desc.as_str()),
        (ErrorClass::DeviceNotActive, "Block job 'nojob' not found")
    );
    jobs.start_create(
        "c",
        PathBuf::from("/nonexistent/dir/x.img"),
        CreateOptions::new(ImageFormat::Raw, 1 << 20),
    )
    .unwrap();
    assert_eq!(
        jobs.start_create(
            "c",
            PathBuf::from("/x"),
            CreateOptions::new(ImageFormat::Raw, 1)
        )
        .unwrap_err()
        .desc,
        "Job ID 'c' already in use"
    );
    assert_eq!(
        jobs.start_create(
            "#c",
            PathBuf::from("/x"),
            CreateOptions::new(ImageFormat::Raw, 1)
        )
        .unwrap_err()
        .desc,
        "Invalid job ID '#c'"
    );
    assert_eq!(
        jobs.complete(&mut g, "c").unwrap_err().desc,
        "Job 'c' in state 'running' cannot accept command verb 'complete'"
    );
    assert_eq!(
        jobs.finalize(&mut g, "c").unwrap_err().desc,
        "Job 'c' in state 'running' cannot accept command verb 'finalize'"
    );
    assert_eq!(
        jobs.dismiss("c").unwrap_err().desc,
        "Job 'c' in state 'running' cannot accept command verb 'dismiss'"
    );
    jobs.pause("c").unwrap();
    assert_eq!(jobs.pause("c").unwrap_err().desc, "Job is already paused");
    jobs.resume(&mut g, "c").unwrap();
    assert_eq!(
        jobs.resume(&mut g, "c").unwrap_err().desc,
        "Can't resume a job that was not paused"
    );
    jobs.advance(&mut g, 0);
    jobs.advance(&mut g, SEC);
    let info = &jobs.query_jobs()[0];
    assert_eq!(info.status, JobStatus::Concluded);
    assert_eq!(
        info.error.as_deref(),
        Some("Could not create '/nonexistent/dir/x.img': No such file or directory")
    );
    assert_eq!(
        jobs.pause("c").unwrap_err().desc,
        "Job 'c' in state 'concluded' cannot accept command verb 'pause'"
    );
    assert_eq!(
        jobs.cancel(&mut g, "c", true).unwrap_err().desc,
        "Job 'c' in state 'concluded' cannot accept command verb 'cancel'"
    );
    jobs.dismiss("c").unwrap();
    let statuses: Vec<String> = qmp_events(jobs.take_events())
        .into_iter()
        .map(|(_, d)| d["status"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        statuses,
        [
            "created",
            "running",
            "paused",
            "running",
            "aborting",
            "concluded",
            "null"
        ]
    );
    // The tables themselves.
    use qmpkit_block::job::JobVerb;
    assert!(JobStatus::Running.can_become(JobStatus::Ready));
    assert!(!JobStatus::Concluded.can_become(JobStatus::Running));
    assert!(JobVerb::Complete.allowed_in(JobStatus::Ready));
    // qemu-storage-daemon 10.0.2 takes `complete` of a ready job its user paused, and
    // refuses everything but cancel and finalize once a job is pending.
    assert!(JobVerb::Complete.allowed_in(JobStatus::Standby));
    assert!(!JobVerb::Complete.allowed_in(JobStatus::Paused));
    for verb in [
        JobVerb::Pause,
        JobVerb::Resume,
        JobVerb::SetSpeed,
        JobVerb::Change,
        JobVerb::Complete,
        JobVerb::Dismiss,
    ] {
        assert!(!verb.allowed_in(JobStatus::Pending), "{verb:?}");
    }
    assert!(JobVerb::Cancel.allowed_in(JobStatus::Pending));
    assert!(JobVerb::Finalize.allowed_in(JobStatus::Pending));
}

#[test]
fn progress_follows_the_clock_and_the_speed_limit() {
    let qemu_img = program_or_skip!("qemu-img");
    let qemu_io = program_or_skip!("qemu-io");
    let dir = tempfile::tempdir().unwrap();
    make_files(&qemu_img, &qemu_io, dir.path(), false);
    let mut g = BlockGraph::default();
    add_top(&mut g, dir.path());
    add_tgt(&mut g, dir.path());
    let progress = |jobs: &Jobs| jobs.query_jobs()[0].current_progress;
    // A full backup of `top` to `tgt`.
    let backup = |jobs: &mut Jobs, g: &mut BlockGraph, o: &JobOptions| {
        let none = Default::default();
        jobs.start_backup(g, o, "top", "tgt", SyncMode::Full, &none)
            .unwrap();
    };
    // Under a speed limit a job does a chunk of work at once, then waits until the chunk is
    // paid for at its speed (QEMU's rate limiter: the bytes over the quota of a 100 ms
    // slice). A backup moves 1 MiB at a time, and it
    // ends with its last chunk. At 4 000 000 bytes/s the quota is 400 000 bytes a slice:
    // 1 MiB waits 2.62144 slices.
    let wait = 262_144_000;
    let mut jobs = Jobs::new(1 << 30);
    let mut o = JobOptions::new("b");
    o.speed = 4_000_000;
    backup(&mut jobs, &mut g, &o);
    jobs.advance(&mut g, 0);
    assert_eq!(progress(&jobs), 1 << 20);
    jobs.advance(&mut g, wait - 1);
    assert_eq!(progress(&jobs), 1 << 20);
    jobs.advance(&mut g, wait);
    assert_eq!(progress(&jobs), 2 << 20);
    assert_eq!(jobs.next_deadline(), Some(3 * wait));
    jobs.advance(&mut g, 3 * wait);
    assert_eq!(
        jobs.status("b"),
        None,
        "concluded and dismissed with its last chunk"
    );
    // At speed 1 the first chunk, then a wait of 2^20 seconds for it.
    let mut jobs = Jobs::new(1 << 30);
    o.speed = 1;
    let t0 = 10 * SEC;
    jobs.advance(&mut g, t0);
    backup(&mut jobs, &mut g, &o);
    jobs.advance(&mut g, t0);
    assert_eq!(progress(&jobs), 1 << 20);
    jobs.advance(&mut g, t0 + 1000 * SEC);
    assert_eq!(progress(&jobs), 1 << 20);
    assert_eq!(jobs.next_deadline(), Some(t0 + 3 * (1 << 20) * SEC));
    jobs.set_speed("b", 0).unwrap();
    jobs.advance(&mut g, t0 + 1001 * SEC);
    assert_eq!(jobs.status("b"), None);
    // The clock looked at only well after the start: the chunks due since the start are
    // done (the first went when the job started, not when the clock was next read).
    let mut jobs = Jobs::new(1 << 30);
    let mut o = JobOptions::new("b");
    o.speed = 4_000_000;
    let t1 = 20 * SEC;
    jobs.advance(&mut g, t1);
    backup(&mut jobs, &mut g, &o);
    assert_eq!(jobs.next_deadline(), Some(t1 + 3 * wait));
    jobs.advance(&mut g, t1 + wait);
    assert_eq!(progress(&jobs), 2 << 20);
    jobs.cancel(&mut g, "b", true).unwrap();
    // A mirror copies its whole buffer (16 MiB) at once, and is ready once that is paid
    // for: 4 MiB at 1 MiB/s, four seconds; a pause holds it.
    let mut jobs = Jobs::new(1 << 30);
    let mut o = JobOptions::new("m");
    o.speed = 1 << 20;
    jobs.start_mirror(&mut g, &o, "top", "tgt", SyncMode::Full)
        .unwrap();
    jobs.advance(&mut g, 0);
    assert_eq!(progress(&jobs), 4 << 20);
    jobs.advance(&mut g, SEC);
    jobs.pause("m").unwrap();
    jobs.advance(&mut g, 5 * SEC);
    assert_eq!(jobs.status("m"), Some(JobStatus::Paused));
    jobs.resume(&mut g, "m").unwrap();
    jobs.advance(&mut g, 5 * SEC);
    assert_eq!(jobs.status("m"), Some(JobStatus::Ready));
    let bj = &jobs.query_block_jobs()[0];
    assert!(bj.ready && bj.len == 4 << 20 && bj.offset == 4 << 20 && bj.speed == 1 << 20);
    // A second job on a busy node, and deleting a node a job uses.
    let e = jobs
        .start_stream(&mut g, &JobOptions::new("s"), "top", None)
        .unwrap_err();
    assert_eq!(
        e.desc,
        "Node 'top' is busy: block device is in use by block job: mirror"
    );
    assert_eq!(
        g.delete("top").unwrap_err().desc,
        "Node 'top' is busy: block device is in use by block job: mirror"
    );
    assert_eq!(g.delete("tgt").unwrap_err().desc, "Node tgt is in use");
}

#[test]
fn mirror_and_its_cancels_match_qemu_storage_daemon() {
    let qemu_img = program_or_skip!("qemu-img");
    let qemu_io = program_or_skip!("qemu-io");
    let Some((_qsd, mut q)) = start_qsd() else {
        return;
    };
    let (dq, do_) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    make_files(&qemu_img, &qemu_io, dq.path(), false);
    make_files(&qemu_img, &qemu_io, do_.path(), false);
    qsd_add_top_tgt(&mut q, dq.path());
    let mut g = BlockGraph::default();
    add_top(&mut g, do_.path());
    add_tgt(&mut g, do_.path());
    let dev = g
        .attach_user(
            "top",
            UserKind::Device("disk0".into()),
            PermSet::NONE,
            PermSet::ALL,
        )
        .unwrap();
    let _ = dev;
    let mut jobs = Jobs::default();
    let mut clock = 0;
    let mut step = |jobs: &mut Jobs, g: &mut BlockGraph| {
        clock += SEC;
        jobs.advance(g, clock);
    };

    // 1. Mirror, ready, soft cancel: completes without a pivot.
    q.call(
        "blockdev-mirror",
        json!({"job-id": "m1", "device": "top", "target": "tgt", "sync": "full"}),
    )
    .unwrap();
    wait_status(&mut q, "m1", "ready");
    q.call("block-job-cancel", json!({"device": "m1"})).unwrap();
    wait_status(&mut q, "m1", "null");
    jobs.start_mirror(&mut g, &JobOptions::new("m1"), "top", "tgt", SyncMode::Full)
        .unwrap();
    step(&mut jobs, &mut g);
    step(&mut jobs, &mut g);
    jobs.cancel(&mut g, "m1", false).unwrap();
    assert_eq!(qmp_events(jobs.take_events()), q.take_events());
    assert_eq!(g.users_of("top"), vec![UserKind::Device("disk0".into())]);

    // 2. Forced cancel of a ready mirror kept after it ends.
    let mut o = JobOptions::new("m2");
    o.auto_dismiss = false;
    q.call("blockdev-mirror", json!({"job-id": "m2", "device": "top", "target": "tgt", "sync": "full", "auto-dismiss": false})).unwrap();
    wait_status(&mut q, "m2", "ready");
    q.call("job-cancel", json!({"id": "m2"})).unwrap();
    wait_status(&mut q, "m2", "concluded");
    jobs.start_mirror(&mut g, &o, "top", "tgt", SyncMode::Full)
        .unwrap();
    step(&mut jobs, &mut g);
    jobs.cancel(&mut g, "m2", true).unwrap();
    assert_eq!(qmp_events(jobs.take_events()), q.take_events());
    let theirs = q.call("query-jobs", json!({})).unwrap();
    let ours = &jobs.query_jobs()[0];
    assert_eq!(theirs[0]["error"], ours.error.clone().unwrap());
    assert_eq!(theirs[0]["status"], ours.status.name());
    q.call("job-dismiss", json!({"id": "m2"})).unwrap();
    jobs.dismiss("m2").unwrap();
    assert_eq!(qmp_events(jobs.take_events()), q.take_events());

    // 3. Mirror, ready, pause (standby), resume, complete: pivots to the target.
    q.call(
        "blockdev-mirror",
        json!({"job-id": "m3", "device": "top", "target": "tgt", "sync": "full"}),
    )
    .unwrap();
    wait_status(&mut q, "m3", "ready");
    q.call("job-pause", json!({"id": "m3"})).unwrap();
    q.call("job-resume", json!({"id": "m3"})).unwrap();
    q.call("job-complete", json!({"id": "m3"})).unwrap();
    wait_status(&mut q, "m3", "null");
    jobs.start_mirror(&mut g, &JobOptions::new("m3"), "top", "tgt", SyncMode::Full)
        .unwrap();
    step(&mut jobs, &mut g);
    jobs.pause("m3").unwrap();
    jobs.resume(&mut g, "m3").unwrap();
    jobs.complete(&mut g, "m3").unwrap();
    assert_eq!(qmp_events(jobs.take_events()), q.take_events());
    assert_eq!(g.users_of("tgt"), vec![UserKind::Device("disk0".into())]);
    assert!(g.users_of("top").is_empty());

    // 4. Back the other way, finalized by hand: complete, pending, finalize pivots.
    // (The device is now the node the users moved to.)
    let mut o = JobOptions::new("m4");
    o.auto_finalize = false;
    q.call(
        "blockdev-add",
        json!({"driver": "raw", "node-name": "tgt2",
        "file": {"driver": "file", "filename": dq.path().join("base.img")}}),
    )
    .unwrap();
    q.call("blockdev-mirror", json!({"job-id": "m4", "device": "tgt", "target": "tgt2", "sync": "full", "auto-finalize": false})).unwrap();
    wait_status(&mut q, "m4", "ready");
    q.call("job-complete", json!({"id": "m4"})).unwrap();
    wait_status(&mut q, "m4", "pending");
    q.call("job-finalize", json!({"id": "m4"})).unwrap();
    wait_status(&mut q, "m4", "null");
    g.add(
        &BlockdevOptions::format(
            Driver::Raw,
            BlockdevRef::Inline(Box::new(BlockdevOptions::file(do_.path().join("base.img")))),
        )
        .named("tgt2"),
    )
    .unwrap();
    jobs.start_mirror(&mut g, &o, "tgt", "tgt2", SyncMode::Full)
        .unwrap();
    step(&mut jobs, &mut g);
    jobs.complete(&mut g, "m4").unwrap();
    assert_eq!(jobs.status("m4"), Some(JobStatus::Pending));
    // Until it finalizes, the device uses the mirror's filter above the source.
    let on = g
        .node_names()
        .into_iter()
        .find(|n| g.users_of(n).contains(&UserKind::Device("disk0".into())))
        .unwrap();
    assert_eq!(g.driver(&on).unwrap(), Driver::MirrorTop);
    assert_eq!(g.below_job_filters(&on), "tgt", "no pivot before finalize");
    jobs.finalize(&mut g, "m4").unwrap();
    assert_eq!(qmp_events(jobs.take_events()), q.take_events());
    assert_eq!(g.users_of("tgt2"), vec![UserKind::Device("disk0".into())]);

    // 5. Cancelled while running (QEMU's offset then depends on timing: statuses only).
    let statuses = |ev: Vec<(String, Value)>| -> Vec<String> {
        ev.into_iter()
            .map(|(n, d)| format!("{n} {}", d["status"].as_str().unwrap_or_default()))
            .collect()
    };
    q.call(
        "blockdev-mirror",
        json!({"job-id": "m5", "device": "top", "target": "tgt", "sync": "full", "speed": 1024}),
    )
    .unwrap();
    q.call("job-cancel", json!({"id": "m5"})).unwrap();
    wait_status(&mut q, "m5", "null");
    let mut o = JobOptions::new("m5");
    o.speed = 1024;
    jobs.start_mirror(&mut g, &o, "top", "tgt", SyncMode::Full)
        .unwrap();
    step(&mut jobs, &mut g);
    jobs.cancel(&mut g, "m5", true).unwrap();
    assert_eq!(
        statuses(qmp_events(jobs.take_events())),
        statuses(q.take_events())
    );

    // The target holds what the chain held, in both runs.
    for d in [dq.path(), do_.path()] {
        let tgt = d.join("tgt.img");
        pattern(&qemu_io, "raw", &tgt, "read -P 0x41 0 1M");
        pattern(&qemu_io, "raw", &tgt, "read -P 0x42 1M 1M");
        pattern(&qemu_io, "raw", &tgt, "read -P 0 2M 2M");
    }
}

#[test]
fn stream_and_commits_match_qemu_storage_daemon() {
    let qemu_img = program_or_skip!("qemu-img");
    let qemu_io = program_or_skip!("qemu-io");
    let Some((_qsd, mut q)) = start_qsd() else {
        return;
    };

    // Stream, finalized and dismissed by hand.
    let (dq, do_) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    make_files(&qemu_img, &qemu_io, dq.path(), false);
    make_files(&qemu_img, &qemu_io, do_.path(), false);
    qsd_add_top_tgt(&mut q, dq.path());
    let mut g = BlockGraph::default();
    add_top(&mut g, do_.path());
    let mut jobs = Jobs::default();
    q.call(
        "block-stream",
        json!({"job-id": "s1", "device": "top", "auto-finalize": false, "auto-dismiss": false}),
    )
    .unwrap();
    wait_status(&mut q, "s1", "pending");
    q.call("job-finalize", json!({"id": "s1"})).unwrap();
    wait_status(&mut q, "s1", "concluded");
    q.call("job-dismiss", json!({"id": "s1"})).unwrap();
    let mut o = JobOptions::new("s1");
    o.auto_finalize = false;
    o.auto_dismiss = false;
    jobs.start_stream(&mut g, &o, "top", None).unwrap();
    jobs.advance(&mut g, 0);
    jobs.advance(&mut g, SEC);
    assert_eq!(jobs.status("s1"), Some(JobStatus::Pending));
    jobs.finalize(&mut g, "s1").unwrap();
    jobs.dismiss("s1").unwrap();
    assert_eq!(qmp_events(jobs.take_events()), q.take_events());
    assert_eq!(
        g.node_names().len(),
        2,
        "the backing nodes went with the stream"
    );
    let theirs = q
        .call("query-named-block-nodes", json!({"flat": true}))
        .unwrap();
    let ours = g.node_info("top", false).unwrap();
    let t = theirs
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["node-name"] == "top")
        .unwrap();
    assert_eq!(t["backing_file"].as_str(), ours.backing_file.as_deref());
    assert_eq!(
        t["image"]["backing-filename"].as_str(),
        ours.image.backing_filename.as_deref()
    );
    q.call("blockdev-del", json!({"node-name": "top"})).unwrap();
    q.call("blockdev-del", json!({"node-name": "tgt"})).unwrap();
    drop(g);
    for d in [dq.path(), do_.path()] {
        let top = d.join("top.qcow2");
        check_clean(&qemu_img, &top);
        assert!(qemu_info(&qemu_img, &top).get("backing-filename").is_none());
        pattern(&qemu_io, "qcow2", &top, "read -P 0x41 0 1M");
        pattern(&qemu_io, "qcow2", &top, "read -P 0x42 1M 1M");
    }

    // Active commit: ready, complete, the base holds the top's data.
    let (dq, do_) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    make_files(&qemu_img, &qemu_io, dq.path(), false);
    make_files(&qemu_img, &qemu_io, do_.path(), false);
    qsd_add_top_tgt(&mut q, dq.path());
    let mut g = BlockGraph::default();
    add_top(&mut g, do_.path());
    q.call("block-commit", json!({"job-id": "c1", "device": "top"}))
        .unwrap();
    wait_status(&mut q, "c1", "ready");
    q.call("job-complete", json!({"id": "c1"})).unwrap();
    wait_status(&mut q, "c1", "null");
    jobs.start_commit(&mut g, &JobOptions::new("c1"), "top", None, None)
        .unwrap();
    jobs.advance(&mut g, 2 * SEC);
    jobs.advance(&mut g, 3 * SEC);
    jobs.complete(&mut g, "c1").unwrap();
    assert_eq!(qmp_events(jobs.take_events()), q.take_events());
    for d in [dq.path(), do_.path()] {
        let base = d.join("base.img");
        pattern(&qemu_io, "raw", &base, "read -P 0x41 0 1M");
        pattern(&qemu_io, "raw", &base, "read -P 0x42 1M 1M");
    }
    q.call("blockdev-del", json!({"node-name": "top"})).unwrap();
    q.call("blockdev-del", json!({"node-name": "tgt"})).unwrap();

    // Commit of the middle of three: the top's header then names the base.
    let (dq, do_) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    make_files(&qemu_img, &qemu_io, dq.path(), true);
    make_files(&qemu_img, &qemu_io, do_.path(), true);
    qsd_add_top_tgt(&mut q, dq.path());
    let mut g = BlockGraph::default();
    add_top(&mut g, do_.path());
    let mid_q = theirs_node_named(&mut q, dq.path().join("mid.qcow2"));
    let base_q = theirs_node_named(&mut q, dq.path().join("base.img"));
    q.call(
        "block-commit",
        json!({"job-id": "c2", "device": "top", "top-node": mid_q, "base-node": base_q}),
    )
    .unwrap();
    wait_status(&mut q, "c2", "null");
    let chain = g.backing_chain("top");
    jobs.start_commit(
        &mut g,
        &JobOptions::new("c2"),
        "top",
        Some(&chain[1]),
        Some(&chain[2]),
    )
    .unwrap();
    jobs.advance(&mut g, 4 * SEC);
    jobs.advance(&mut g, 5 * SEC);
    assert_eq!(qmp_events(jobs.take_events()), q.take_events());
    assert_eq!(g.backing_chain("top").len(), 2);
    q.call("blockdev-del", json!({"node-name": "top"})).unwrap();
    drop(g);
    for d in [dq.path(), do_.path()] {
        let top = d.join("top.qcow2");
        check_clean(&qemu_img, &top);
        let info = qemu_info(&qemu_img, &top);
        assert_eq!(info["backing-filename-format"], "raw", "{info}");
        assert!(
            info["backing-filename"]
                .as_str()
                .unwrap()
                .ends_with("base.img"),
            "{info}"
        );
        pattern(&qemu_io, "qcow2", &top, "read -P 0x41 0 1M");
        pattern(&qemu_io, "qcow2", &top, "read -P 0x42 1M 1M");
        pattern(&qemu_io, "qcow2", &top, "read -P 0x43 2M 512k");
        pattern(&qemu_io, "raw", &d.join("base.img"), "read -P 0x43 2M 512k");
    }
}

fn theirs_node_named(q: &mut Qmp, file: PathBuf) -> String {
    let nodes = q
        .call("query-named-block-nodes", json!({"flat": true}))
        .unwrap();
    nodes
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["file"] == json!(file) && n["drv"] != "file")
        .map(|n| n["node-name"].as_str().unwrap().to_string())
        .unwrap()
}

#[test]
fn backup_and_create_write_real_files() {
    let qemu_img = program_or_skip!("qemu-img");
    let qemu_io = program_or_skip!("qemu-io");
    let Some((_qsd, mut q)) = start_qsd() else {
        return;
    };
    let (dq, do_) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    make_files(&qemu_img, &qemu_io, dq.path(), false);
    make_files(&qemu_img, &qemu_io, do_.path(), false);
    qsd_add_top_tgt(&mut q, dq.path());
    let mut g = BlockGraph::default();
    add_top(&mut g, do_.path());
    add_tgt(&mut g, do_.path());
    let mut jobs = Jobs::default();
    q.call(
        "blockdev-backup",
        json!({"job-id": "b1", "device": "top", "target": "tgt", "sync": "full"}),
    )
    .unwrap();
    wait_status(&mut q, "b1", "null");
    jobs.start_backup(
        &mut g,
        &JobOptions::new("b1"),
        "top",
        "tgt",
        SyncMode::Full,
        &Default::default(),
    )
    .unwrap();
    jobs.advance(&mut g, 0);
    jobs.advance(&mut g, SEC);
    assert_eq!(qmp_events(jobs.take_events()), q.take_events());
    for d in [dq.path(), do_.path()] {
        let tgt = d.join("tgt.img");
        pattern(&qemu_io, "raw", &tgt, "read -P 0x41 0 1M");
        pattern(&qemu_io, "raw", &tgt, "read -P 0x42 1M 1M");
    }

    // blockdev-create of a file, then of qcow2 over it.
    let newq = dq.path().join("new.img");
    let newo = do_.path().join("new.img");
    q.call(
        "blockdev-create",
        json!({"job-id": "cr", "options": {"driver": "file", "filename": newq, "size": 0}}),
    )
    .unwrap();
    wait_status(&mut q, "cr", "concluded");
    q.call("job-dismiss", json!({"id": "cr"})).unwrap();
    q.call(
        "blockdev-add",
        json!({"driver": "file", "filename": newq, "node-name": "nf"}),
    )
    .unwrap();
    q.call("blockdev-create", json!({"job-id": "cr2", "options": {"driver": "qcow2", "file": "nf", "size": 8 << 20, "cluster-size": 4096}})).unwrap();
    wait_status(&mut q, "cr2", "concluded");
    q.call("job-dismiss", json!({"id": "cr2"})).unwrap();
    let mut opts = CreateOptions::new(ImageFormat::Qcow2, 8 << 20);
    opts.cluster_size = Some(4096);
    jobs.start_create("cr", newo.clone(), CreateOptions::new(ImageFormat::Raw, 0))
        .unwrap();
    jobs.advance(&mut g, 2 * SEC);
    jobs.dismiss("cr").unwrap();
    jobs.start_create("cr2", newo.clone(), opts).unwrap();
    jobs.advance(&mut g, 3 * SEC);
    jobs.dismiss("cr2").unwrap();
    assert_eq!(qmp_events(jobs.take_events()), q.take_events());
    check_clean(&qemu_img, &newo);
    let (a, b) = (qemu_info(&qemu_img, &newq), qemu_info(&qemu_img, &newo));
    for k in ["virtual-size", "cluster-size", "format"] {
        assert_eq!(a[k], b[k], "{k}");
    }
    assert_eq!(a["format-specific"]["data"], b["format-specific"]["data"]);
}

#[test]
fn stream_down_to_a_base_keeps_the_base_below() {
    let qemu_img = program_or_skip!("qemu-img");
    let qemu_io = program_or_skip!("qemu-io");
    let dir = tempfile::tempdir().unwrap();
    make_files(&qemu_img, &qemu_io, dir.path(), true);
    // Zeroes in the middle layer over the base's data.
    run(
        &qemu_io,
        &["-c", "write -z 0 64k", dir.join_str("mid.qcow2").as_str()],
    );
    let mut g = BlockGraph::default();
    add_top(&mut g, dir.path());
    let chain = g.backing_chain("top");
    let mut jobs = Jobs::default();
    jobs.start_stream(&mut g, &JobOptions::new("s"), "top", Some(&chain[2]))
        .unwrap();
    jobs.advance(&mut g, SEC);
    assert_eq!(jobs.query_jobs().len(), 0);
    assert_eq!(g.backing_chain("top").len(), 2);
    drop(g);
    let top = dir.path().join("top.qcow2");
    check_clean(&qemu_img, &top);
    let info = qemu_info(&qemu_img, &top);
    assert!(
        info["backing-filename"]
            .as_str()
            .unwrap()
            .ends_with("base.img"),
        "{info}"
    );
    assert_eq!(info["backing-filename-format"], "raw");
    pattern(&qemu_io, "qcow2", &top, "read -P 0 0 64k");
    pattern(&qemu_io, "qcow2", &top, "read -P 0x41 64k 960k");
    pattern(&qemu_io, "qcow2", &top, "read -P 0x42 1M 1M");
    pattern(&qemu_io, "qcow2", &top, "read -P 0x43 2M 512k");
    // The base's data was not copied up: the top holds only its own and the middle's.
    let (_, map) = run(
        &qemu_img,
        &["map", "--output=json", "-U", top.to_str().unwrap()],
    );
    let map: Value = serde_json::from_str(&map).unwrap();
    let in_top: u64 = map
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["depth"] == 0 && e["data"] == true)
        .map(|e| e["length"].as_u64().unwrap())
        .sum();
    assert_eq!(in_top, (1 << 20) + (512 << 10), "{map}");
}

trait JoinStr {
    fn join_str(&self, name: &str) -> String;
}

impl JoinStr for tempfile::TempDir {
    fn join_str(&self, name: &str) -> String {
        self.path().join(name).to_str().unwrap().to_string()
    }
}

/// Each drain of the graph pauses every job that runs or is ready and that its user did not
/// pause, oldest first (a ready mirror to standby), then resumes them in the same order, as
/// qemu-storage-daemon 10.0.2 does on every change of its graph; a new job's start drains
/// around its announcement. Graph changes count their drains (a node closed: one; a format
/// node over a file: three; a resize: two).
#[test]
fn drains_pause_and_resume_running_and_ready_jobs() {
    let mut g = BlockGraph::default();
    for n in ["s1", "t1", "s2", "t2", "x"] {
        g.add(&BlockdevOptions::null(Some(1 << 20)).named(n))
            .unwrap();
    }
    assert_eq!(g.take_drains(), 0, "null nodes open without a drain");
    let mut jobs = Jobs::new(1 << 30);
    jobs.start_mirror(&mut g, &JobOptions::new("m1"), "s1", "t1", SyncMode::Full)
        .unwrap();
    jobs.advance(&mut g, SEC);
    assert_eq!(jobs.status("m1"), Some(JobStatus::Ready));
    jobs.take_events();
    let mut o = JobOptions::new("m2");
    o.speed = 1;
    jobs.start_mirror(&mut g, &o, "s2", "t2", SyncMode::Full)
        .unwrap();
    let names = |ev: Vec<JobEvent>| -> Vec<String> {
        ev.into_iter()
            .filter_map(|e| match e {
                JobEvent::StatusChange { id, status } => Some(format!("{id}:{}", status.name())),
                _ => None,
            })
            .collect()
    };
    assert_eq!(
        names(jobs.take_events()),
        [
            "m1:standby",
            "m1:ready",
            "m1:standby",
            "m1:ready",
            "m2:created",
            "m1:standby",
            "m1:ready",
            "m1:standby",
            "m1:ready",
            "m2:running"
        ]
    );
    jobs.advance(&mut g, 2 * SEC);
    jobs.take_events();
    g.delete("x").unwrap();
    jobs.drain(g.take_drains());
    assert_eq!(
        names(jobs.take_events()),
        ["m1:standby", "m2:paused", "m1:ready", "m2:running"]
    );
    // A job its user paused stays as it is.
    jobs.pause("m1").unwrap();
    jobs.take_events();
    jobs.drain(2);
    assert_eq!(
        names(jobs.take_events()),
        ["m2:paused", "m2:running", "m2:paused", "m2:running"]
    );
    assert_eq!(jobs.status("m1"), Some(JobStatus::Standby));
}

/// `qemu-img map` of a file as JSON, without host offsets (which each writer places as it
/// likes).
fn map_of(qemu_img: &Path, file: &Path) -> Value {
    let (ok, text) = run(
        qemu_img,
        &["map", "-U", "--output=json", file.to_str().unwrap()],
    );
    assert!(ok, "{text}");
    let mut v: Value = serde_json::from_str(&text).unwrap();
    for e in v.as_array_mut().unwrap() {
        e.as_object_mut().unwrap().remove("offset");
    }
    v
}

/// The block job `id` as query-block-jobs shows it: (offset, busy, paused, status).
fn their_job(q: &mut Qmp, id: &str) -> (u64, bool, bool, String) {
    let list = q.call("query-block-jobs", json!({})).unwrap();
    let j = list
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["device"] == id)
        .unwrap_or_else(|| panic!("no job {id} in {list}"))
        .clone();
    (
        j["offset"].as_u64().unwrap(),
        j["busy"].as_bool().unwrap(),
        j["paused"].as_bool().unwrap(),
        j["status"].as_str().unwrap().to_string(),
    )
}

fn our_job(jobs: &Jobs, id: &str) -> (u64, bool, bool, String) {
    let j = jobs
        .query_block_jobs()
        .into_iter()
        .find(|j| j.device == id)
        .unwrap();
    (j.offset, j.busy, j.paused, j.status.name().to_string())
}

/// Pauses their job `id` once its offset reached `offset` (polling), and waits until it is
/// paused.
fn pause_at(q: &mut Qmp, id: &str, offset: u64) {
    let t = Instant::now();
    while their_job(q, id).0 < offset {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "{id} never reached {offset}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    q.call("block-job-pause", json!({"device": id})).unwrap();
    wait_status(q, id, "paused");
}

/// A job under a speed limit moves its data chunk by chunk as its progress goes (what a
/// paused job leaves in the files is what its offset says it did), and is not busy while it
/// waits for its next chunk; a job between null nodes is not busy even without a limit.
#[test]
fn speed_limited_jobs_move_data_chunk_by_chunk() {
    let qemu_img = program_or_skip!("qemu-img");
    let qemu_io = program_or_skip!("qemu-io");
    let Some((_qsd, mut q)) = start_qsd() else {
        return;
    };
    let theirs = tempfile::tempdir().unwrap();
    let ours = tempfile::tempdir().unwrap();
    for d in [theirs.path(), ours.path()] {
        make_files(&qemu_img, &qemu_io, d, false);
    }
    let tgt = |d: &Path| d.join("tgt.img");

    // A backup at 1 MiB/s: its first MiB at once, the next a second later.
    qsd_add_top_tgt(&mut q, theirs.path());
    q.call(
        "blockdev-backup",
        json!({"job-id": "b", "device": "top", "target": "tgt", "sync": "full",
               "speed": 1 << 20}),
    )
    .unwrap();
    pause_at(&mut q, "b", 1 << 20);
    let theirs_1 = their_job(&mut q, "b");
    let mut g = BlockGraph::default();
    add_top(&mut g, ours.path());
    add_tgt(&mut g, ours.path());
    let mut jobs = Jobs::new(1 << 30);
    let mut o = JobOptions::new("b");
    o.speed = 1 << 20;
    let none = Default::default();
    jobs.start_backup(&mut g, &o, "top", "tgt", SyncMode::Full, &none)
        .unwrap();
    jobs.advance(&mut g, 0);
    assert_eq!(
        our_job(&jobs, "b"),
        (1 << 20, false, false, "running".into()),
        "waiting for its next chunk"
    );
    jobs.pause("b").unwrap();
    jobs.advance(&mut g, SEC / 2);
    assert_eq!(our_job(&jobs, "b"), theirs_1);
    for d in [theirs.path(), ours.path()] {
        pattern(&qemu_io, "raw", &tgt(d), "read -P 0x41 0 1M");
        pattern(&qemu_io, "raw", &tgt(d), "read -P 0 1M 3M");
    }
    q.call("block-job-resume", json!({"device": "b"})).unwrap();
    pause_at(&mut q, "b", 2 << 20);
    let theirs_2 = their_job(&mut q, "b");
    jobs.resume(&mut g, "b").unwrap();
    jobs.advance(&mut g, 3 * SEC / 2);
    jobs.pause("b").unwrap();
    jobs.advance(&mut g, 2 * SEC);
    assert_eq!(our_job(&jobs, "b"), theirs_2);
    for d in [theirs.path(), ours.path()] {
        pattern(&qemu_io, "raw", &tgt(d), "read -P 0x41 0 1M");
        pattern(&qemu_io, "raw", &tgt(d), "read -P 0x42 1M 1M");
        pattern(&qemu_io, "raw", &tgt(d), "read -P 0 2M 2M");
    }
    q.call("block-job-cancel", json!({"device": "b", "force": true}))
        .unwrap();
    wait_status(&mut q, "b", "null");
    jobs.cancel(&mut g, "b", true).unwrap();
    jobs.advance(&mut g, 3 * SEC);

    // A stream at 512 KiB/s: each 512 KiB chunk copied into the top as it goes.
    q.call(
        "block-stream",
        json!({"job-id": "s", "device": "top", "speed": 512 << 10}),
    )
    .unwrap();
    pause_at(&mut q, "s", 512 << 10);
    let theirs_s = their_job(&mut q, "s");
    let mut o = JobOptions::new("s");
    o.speed = 512 << 10;
    jobs.start_stream(&mut g, &o, "top", None).unwrap();
    jobs.advance(&mut g, 3 * SEC);
    assert!(!our_job(&jobs, "s").1);
    jobs.pause("s").unwrap();
    jobs.advance(&mut g, 3 * SEC + SEC / 2);
    assert_eq!(our_job(&jobs, "s"), theirs_s);
    let top = |d: &Path| d.join("top.qcow2");
    assert_eq!(
        map_of(&qemu_img, &top(ours.path())),
        map_of(&qemu_img, &top(theirs.path())),
        "what the paused stream copied into the top"
    );
    q.call("block-job-cancel", json!({"device": "s", "force": true}))
        .unwrap();
    wait_status(&mut q, "s", "null");
    jobs.cancel(&mut g, "s", true).unwrap();
    jobs.advance(&mut g, 4 * SEC);

    // Without a limit: a mirror between null nodes never waits for I/O, one between files
    // does.
    for n in ["n1", "n2"] {
        q.call(
            "blockdev-add",
            json!({"driver": "null-co", "node-name": n, "size": 64u64 << 30}),
        )
        .unwrap();
        g.add(&BlockdevOptions::null(Some(64 << 30)).named(n))
            .unwrap();
    }
    q.call(
        "blockdev-mirror",
        json!({"job-id": "m", "device": "n1", "target": "n2", "sync": "full"}),
    )
    .unwrap();
    let (_, busy, _, status) = their_job(&mut q, "m");
    jobs.start_mirror(&mut g, &JobOptions::new("m"), "n1", "n2", SyncMode::Full)
        .unwrap();
    jobs.advance(&mut g, 4 * SEC + 1);
    let ours_m = our_job(&jobs, "m");
    assert_eq!((ours_m.1, ours_m.3.as_str()), (busy, status.as_str()));
    assert_eq!((busy, status.as_str()), (false, "running"));
    jobs.cancel(&mut g, "m", true).unwrap();
    jobs.advance(&mut g, 5 * SEC);
    jobs.start_mirror(&mut g, &JobOptions::new("m2"), "top", "tgt", SyncMode::Full)
        .unwrap();
    jobs.advance(&mut g, 5 * SEC + 1);
    assert_eq!(
        our_job(&jobs, "m2").1,
        true,
        "a running mirror between files"
    );
    jobs.advance(&mut g, 6 * SEC);
    assert_eq!(
        our_job(&jobs, "m2"),
        (4 << 20, false, false, "ready".into()),
        "a ready mirror waits"
    );
}

/// Block status runs (QEMU's, as `qemu-img map` shows them) and the backup chunks that follow
/// them: a backing file's data, clusters no layer holds, the top's own data; a host file's
/// first 4 KiB count as data even in a hole. At speed 1 a backup's first chunk is its
/// offset, and its length is the whole disk (`full`) or the top's own clusters (`top`).
#[test]
fn backups_go_by_the_sources_block_status() {
    use qmpkit_block::graph::status::RunKind::{Data, Zero};
    let qemu_img = program_or_skip!("qemu-img");
    let qemu_io = program_or_skip!("qemu-io");
    let dir = tempfile::tempdir().unwrap();
    let s = |n: &str| dir.path().join(n).to_str().unwrap().to_string();
    run(
        &qemu_img,
        &["create", "-f", "qcow2", &s("base.qcow2"), "1M"],
    );
    run(&qemu_io, &["-c", "write -P 0x11 0 256k", &s("base.qcow2")]);
    qmpkit_testkit::cmd::qcow2_chain(
        &qemu_img,
        dir.path(),
        "base.qcow2",
        "qcow2",
        &["top.qcow2"],
        None,
    );
    run(&qemu_io, &["-c", "write -P 0x33 512k 64k", &s("top.qcow2")]);
    run(
        &qemu_img,
        &["create", "-f", "raw", &s("hole.raw"), "197120"],
    );
    run(&qemu_img, &["create", "-f", "raw", &s("tgt.img"), "1M"]);
    let mut g = BlockGraph::default();
    add_top(&mut g, dir.path());
    add_tgt(&mut g, dir.path());
    g.add(
        &BlockdevOptions::format(
            Driver::Raw,
            BlockdevRef::Inline(Box::new(BlockdevOptions::file(dir.path().join("hole.raw")))),
        )
        .named("hole"),
    )
    .unwrap();
    let m = 1 << 20;
    assert_eq!(g.block_status("top", 0, m).unwrap(), (Data, 256 << 10));
    assert_eq!(
        g.block_status("top", 256 << 10, m).unwrap(),
        (Zero, 256 << 10)
    );
    assert_eq!(
        g.block_status("top", 512 << 10, m).unwrap(),
        (Data, 64 << 10)
    );
    assert_eq!(
        g.block_status("top", 576 << 10, m).unwrap(),
        (Zero, 448 << 10)
    );
    assert_eq!(g.block_status("hole", 0, m).unwrap(), (Data, 4096));
    assert_eq!(
        g.block_status("hole", 4096, m).unwrap(),
        (Zero, 197120 - 4096)
    );
    let job = |jobs: &Jobs| {
        let j = &jobs.query_jobs()[0];
        (j.current_progress, j.total_progress)
    };
    let none = Default::default();
    let mut o = JobOptions::new("b");
    o.speed = 1;
    for (sync, first, len) in [
        (SyncMode::Full, 256 << 10, m),
        (SyncMode::Top, 64 << 10, 64 << 10),
        (SyncMode::None, 0, m),
    ] {
        let mut jobs = Jobs::new(1 << 30);
        jobs.start_backup(&mut g, &o, "top", "tgt", sync, &none)
            .unwrap();
        jobs.advance(&mut g, 0);
        if sync == SyncMode::Top {
            // Its one chunk was its last.
            assert_eq!(jobs.status("b"), None);
            continue;
        }
        assert_eq!(job(&jobs), (first, len), "{sync:?}");
        jobs.advance(&mut g, 1000 * SEC);
        assert_eq!(job(&jobs), (first, len), "{sync:?}");
        jobs.cancel(&mut g, "b", true).unwrap();
    }
    // Chunks go at once until the bytes since the last wait reach the quota of a 100 ms
    // slice, then wait until those bytes are paid for (measured on qemu-storage-daemon
    // 10.0.2). At 4 MiB/s the quota is 409.6 KiB: the first two runs (512 KiB) go at once
    // and wait 125 ms; then the last two.
    let mut jobs = Jobs::new(1 << 30);
    o.speed = 4 << 20;
    jobs.start_backup(&mut g, &o, "top", "tgt", SyncMode::Full, &none)
        .unwrap();
    jobs.advance(&mut g, 0);
    assert_eq!(job(&jobs), (512 << 10, m));
    assert_eq!(jobs.next_deadline(), Some(SEC / 8));
    jobs.advance(&mut g, SEC / 8 - 1);
    assert_eq!(job(&jobs), (512 << 10, m));
    jobs.advance(&mut g, SEC / 8);
    assert_eq!(jobs.status("b"), None, "done with its last chunk");
    // At 10 MiB/s the whole disk is one slice's quota: all four at once.
    let mut jobs = Jobs::new(1 << 30);
    o.speed = 10 << 20;
    jobs.start_backup(&mut g, &o, "top", "tgt", SyncMode::Full, &none)
        .unwrap();
    jobs.advance(&mut g, 0);
    assert_eq!(jobs.status("b"), None);
}
