//! Image locks between `qmpkit storage-daemon` and QEMU's own programs: each side holds an
//! image the other then tries to open, and the refusals are QEMU's words on both sides. A
//! stream refused at its links keeps its block backend (and the lock it reads under) on the
//! device, as qemu-storage-daemon 10.0.2 does. Skipped without qemu-storage-daemon 10.0.2,
//! qemu-img or qemu-io.

#[macro_use]
#[path = "storage_daemon_support/mod.rs"]
mod support;

use std::path::Path;

use support::Qmp;

fn make_qcow2(img: &Path, dir: &Path, name: &str) -> String {
    let (code, _, err) =
        qmpkit_testkit::cmd::run_in(img, dir, &["create", "-q", "-f", "qcow2", name, "1M"]);
    assert_eq!(code, 0, "qemu-img create: {err}");
    dir.join(name).to_string_lossy().into_owned()
}

/// A daemon holding `path` as a writable qcow2 node `q`, once its monitor answers (the
/// command line's nodes are open by then).
fn holding(program: &Path, dir: &Path, path: &str) -> (support::Daemon, Qmp) {
    let d = support::start(
        program,
        dir,
        &[
            "--blockdev".into(),
            format!("driver=file,node-name=f,filename={path}"),
            "--blockdev".into(),
            "qcow2,node-name=q,file=f".into(),
        ],
    );
    let mut q = Qmp::connect(&d.socket);
    q.send(r#"{"execute":"query-named-block-nodes"}"#);
    (d, q)
}

/// What QEMU's tools say when the image is locked: `(exit code, stderr)`.
fn tool(program: &Path, dir: &Path, args: &[&str]) -> (i32, String) {
    let (code, _, err) = qmpkit_testkit::cmd::run_in(program, dir, args);
    (code, err)
}

#[test]
fn qemu_tools_meet_the_locks_qmpkit_holds() {
    let (_, img, io) = qemu_tools!();
    let dir = support::tmpdir("locks-ours");
    let path = make_qcow2(&img, &dir, "held.qcow2");
    let ours = support::ours(&dir);
    let _d = holding(&ours, &dir, &path);
    let hint = format!("Is another process using the image [{path}]?\n");
    assert_eq!(
        tool(&io, &dir, &["-c", "read 0 512", &path]),
        (
            1,
            format!("qemu-io: can't open device {path}: Failed to get \"write\" lock\n{hint}")
        )
    );
    assert_eq!(
        tool(&io, &dir, &["-r", "-c", "read 0 512", &path]),
        (
            1,
            format!(
                "qemu-io: can't open device {path}: Failed to get shared \"write\" lock\n{hint}"
            )
        )
    );
    assert_eq!(
        tool(&img, &dir, &["info", &path]),
        (
            1,
            format!(
                "qemu-img: Could not open '{path}': Failed to get shared \"write\" lock\n{hint}"
            )
        )
    );
    // Sharing everything, a reader gets in.
    let (code, err) = tool(&io, &dir, &["-r", "-U", "-c", "read 0 512", &path]);
    assert_eq!((code, err.as_str()), (0, ""));
    let (code, err) = tool(&img, &dir, &["info", "-U", &path]);
    assert_eq!((code, err.as_str()), (0, ""));
}

#[test]
fn qmpkit_meets_the_locks_qemu_holds() {
    let (real, img, _) = qemu_tools!();
    let dir = support::tmpdir("locks-qemu");
    let path = make_qcow2(&img, &dir, "held.qcow2");
    let theirs = dir.join("qemu");
    std::fs::create_dir_all(&theirs).unwrap();
    let _real = holding(&real, &theirs, &path);
    let mine = dir.join("ours");
    std::fs::create_dir_all(&mine).unwrap();
    let ours = support::ours(&mine);
    let d = support::start(&ours, &mine, &[]);
    let mut q = Qmp::connect(&d.socket);
    let add = |ro: bool| {
        format!(
            r#"{{"execute":"blockdev-add","arguments":{{"driver":"qcow2","node-name":"n","read-only":{ro},"file":{{"driver":"file","filename":"{path}"}}}}}}"#
        )
    };
    let refused = |what: &str| {
        format!(r#"{{"error": {{"class": "GenericError", "desc": "Failed to get {what} lock"}}}}"#)
    };
    let norm = |s: String| serde_json::from_str::<serde_json::Value>(&s).unwrap();
    assert_eq!(norm(q.send(&add(false)).0), norm(refused("\\\"write\\\"")));
    assert_eq!(
        norm(q.send(&add(true)).0),
        norm(refused("shared \\\"write\\\""))
    );
}

/// The same requests to both daemons over images of their own: the same replies.
fn both(real: &Path, img: &Path, steps: &[&str]) -> Vec<(String, String)> {
    let root = support::tmpdir("locks-stream");
    let ours = support::ours(&root);
    let real = real.to_path_buf();
    let mut out: Vec<Vec<String>> = Vec::new();
    for (prog, sub) in [(&real, "a"), (&ours, "b")] {
        let dir = root.join(sub);
        std::fs::create_dir_all(&dir).unwrap();
        make_qcow2(img, &dir, "tgt.qcow2");
        make_qcow2(img, &dir, "ovl.qcow2");
        let d = support::start(prog, &dir, &[]);
        let mut q = Qmp::connect(&d.socket);
        let dirs = dir.to_string_lossy();
        out.push(
            steps
                .iter()
                .map(|s| q.send(&s.replace("$DIR", &dirs)).0.replace(&*dirs, "$DIR"))
                .collect(),
        );
    }
    out[0].iter().cloned().zip(out[1].iter().cloned()).collect()
}

#[test]
fn a_refused_stream_keeps_its_backend_on_the_device() {
    let steps = [
        // tgt.qcow2 written through one file node, read as a backing file through another.
        r#"{"execute":"blockdev-add","arguments":{"driver":"qcow2","node-name":"qa","file":{"driver":"file","filename":"$DIR/tgt.qcow2"}}}"#,
        r#"{"execute":"blockdev-add","arguments":{"driver":"file","node-name":"fb","filename":"$DIR/tgt.qcow2"}}"#,
        r#"{"execute":"blockdev-add","arguments":{"driver":"qcow2","node-name":"top","file":{"driver":"file","filename":"$DIR/ovl.qcow2"},"backing":"fb"}}"#,
        r#"{"execute":"block-stream","arguments":{"job-id":"s","device":"top"}}"#,
        r#"{"execute":"blockdev-del","arguments":{"node-name":"top"}}"#,
        r#"{"execute":"blockdev-del","arguments":{"node-name":"qa"}}"#,
        // The backend still reads fb's image, under its lock.
        r#"{"execute":"blockdev-add","arguments":{"driver":"raw","node-name":"r","file":{"driver":"file","filename":"$DIR/tgt.qcow2"}}}"#,
        r#"{"execute":"blockdev-mirror","arguments":{"job-id":"m","device":"top","target":"r","sync":"full"}}"#,
    ];
    let (real, img, _) = qemu_tools!();
    let replies = both(&real, &img, &steps);
    for (i, (real, ours)) in replies.iter().enumerate() {
        assert_eq!(ours, real, "step {i}: {}", steps[i]);
    }
    assert!(replies[3]
        .0
        .contains(r#"Failed to get shared \"write\" lock"#));
    assert!(replies[4].0.contains("Node top is in use"));
}
