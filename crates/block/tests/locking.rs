//! Image file locking between qmpkit and QEMU's own programs: a graph holding an image keeps
//! qemu-img and qemu-io out as QEMU would, a live qemu-storage-daemon holding one keeps the
//! graph out, and two nodes of one graph on one file conflict as two of QEMU's do.

mod common;

use std::path::Path;

use common::{qcow2_node, qemu_img_create, run, start_qsd};
use qmpkit_block::graph::{BlockdevOptions, BlockdevRef, Driver};
use qmpkit_block::lock::Locking;
use qmpkit_block::BlockGraph;
use qmpkit_testkit::program_or_skip;
use serde_json::json;

/// What `qemu-img info` (without `-U`) says: success, or its first error line.
fn info(qemu_img: &Path, path: &Path) -> Result<(), String> {
    let (ok, text) = run(qemu_img, &["info", path.to_str().unwrap()]);
    if ok {
        Ok(())
    } else {
        Err(text.trim_end().to_string())
    }
}

#[test]
fn a_graph_holding_an_image_keeps_qemu_img_and_qemu_io_out() {
    let qemu_img = program_or_skip!("qemu-img");
    let qemu_io = program_or_skip!("qemu-io");
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.qcow2");
    qemu_img_create(&qemu_img, &a, None, "1M");
    let shown = a.display();

    let mut g = BlockGraph::default();
    // A file node alone takes no permission and so no lock.
    let file = BlockdevOptions::file(&a).named("f");
    g.add(&file).unwrap();
    assert_eq!(info(&qemu_img, &a), Ok(()));

    // A writable qcow2 node writes and resizes its file and shares neither.
    let q = BlockdevOptions::format(Driver::Qcow2, BlockdevRef::Node("f".into())).named("q");
    g.add(&q).unwrap();
    assert_eq!(
        info(&qemu_img, &a),
        Err(format!(
            "qemu-img: Could not open '{shown}': Failed to get shared \"write\" lock\n\
             Is another process using the image [{shown}]?"
        ))
    );
    let (ok, _) = run(&qemu_img, &["info", "-U", a.to_str().unwrap()]);
    assert!(ok, "qemu-img info -U shares the image");
    let (ok, text) = run(&qemu_io, &["-c", "read 0 512", a.to_str().unwrap()]);
    assert!(!ok);
    assert_eq!(
        text.trim_end(),
        format!(
            "qemu-io: can't open device {shown}: Failed to get \"write\" lock\n\
             Is another process using the image [{shown}]?"
        )
    );

    // Read-only, it still keeps writers out but lets readers in.
    g.delete("q").unwrap();
    assert_eq!(info(&qemu_img, &a), Ok(()), "deleting the node unlocks");
    g.add(&q.clone().read_only(true)).unwrap();
    assert_eq!(info(&qemu_img, &a), Ok(()));
    let (ok, text) = run(&qemu_io, &["-c", "write 0 512", a.to_str().unwrap()]);
    assert!(!ok, "{text}");
    assert!(
        text.contains("Failed to get \"write\" lock"),
        "qemu-io write: {text}"
    );
    let (ok, text) = run(&qemu_io, &["-r", "-c", "read 0 512", a.to_str().unwrap()]);
    assert!(ok, "qemu-io -r reads beside a reader: {text}");
    drop(g);
    assert_eq!(info(&qemu_img, &a), Ok(()), "a closed graph holds nothing");
}

#[test]
fn two_nodes_of_one_graph_on_one_file_conflict_in_qemus_words() {
    let qemu_img = program_or_skip!("qemu-img");
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.qcow2");
    let top = dir.path().join("top.qcow2");
    qemu_img_create(&qemu_img, &a, None, "1M");
    run(
        &qemu_img,
        &[
            "create",
            "-q",
            "-f",
            "qcow2",
            "-b",
            a.to_str().unwrap(),
            "-F",
            "qcow2",
            top.to_str().unwrap(),
        ],
    );
    let mut g = BlockGraph::default();
    g.add(&qcow2_node(&a, "q1")).unwrap();
    let e = g.add(&qcow2_node(&a, "q2")).unwrap_err();
    assert_eq!(e.desc, "Failed to get \"write\" lock");
    assert_eq!(
        e.hint.as_deref(),
        Some(format!("Is another process using the image [{}]?", a.display()).as_str())
    );
    let e = g.add(&qcow2_node(&a, "q2").read_only(true)).unwrap_err();
    assert_eq!(e.desc, "Failed to get shared \"write\" lock");
    // The backing chain opens read-only below the new node: its file's lock fails there.
    let e = g.add(&qcow2_node(&top, "t")).unwrap_err();
    assert_eq!(
        e.desc,
        "Could not open backing file: Failed to get shared \"write\" lock"
    );
    assert!(
        !g.contains("q2") && !g.contains("t"),
        "failed nodes are gone"
    );
    // Without locking, the file node takes no lock and nothing stops it.
    let mut unlocked = BlockdevOptions::file(&a);
    unlocked.locking = Locking::Off;
    let o = BlockdevOptions::format(Driver::Qcow2, BlockdevRef::Inline(Box::new(unlocked)));
    g.add(&o.named("q3")).unwrap();
    // A read-only file node cannot have a writer above it.
    let ro = BlockdevOptions::file(&top).named("fro").read_only(true);
    g.add(&ro).unwrap();
    let e = g
        .add(&BlockdevOptions::format(Driver::Qcow2, BlockdevRef::Node("fro".into())).named("w"))
        .unwrap_err();
    assert_eq!(e.desc, "Block node is read-only");
}

/// The kernel's list of the locks held on `path` (`/proc/locks` lines of its inode).
fn locks_on(path: &Path) -> String {
    use std::os::unix::fs::MetadataExt;
    let ino = std::fs::metadata(path).map(|m| m.ino()).unwrap_or(0);
    let all = std::fs::read_to_string("/proc/locks").unwrap_or_default();
    all.lines()
        .filter(|l| {
            l.split_whitespace()
                .nth(5)
                .and_then(|dev_ino| dev_ino.rsplit(':').next())
                .is_some_and(|i| i == ino.to_string())
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn an_image_a_live_daemon_holds_keeps_the_graph_out() {
    let qemu_img = program_or_skip!("qemu-img");
    let Some((_qsd, mut q)) = start_qsd() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.qcow2");
    qemu_img_create(&qemu_img, &a, None, "1M");
    q.call(
        "blockdev-add",
        json!({"driver": "qcow2", "node-name": "q", "file": {"driver": "file", "filename": a}}),
    )
    .unwrap();
    let mut g = BlockGraph::default();
    let refused = |g: &mut BlockGraph, o: &qmpkit_block::BlockdevOptions| match g.add(o) {
        Err(e) => e.desc,
        Ok(_) => panic!(
            "{} let in while the daemon holds the image; the locks on it:\n{}",
            o.node_name.as_deref().unwrap_or_default(),
            locks_on(&a)
        ),
    };
    let e = refused(&mut g, &qcow2_node(&a, "mine"));
    assert_eq!(e, "Failed to get \"write\" lock");
    let e = refused(&mut g, &qcow2_node(&a, "mine").read_only(true));
    assert_eq!(e, "Failed to get shared \"write\" lock");
    q.call("blockdev-del", json!({"node-name": "q"})).unwrap();
    g.add(&qcow2_node(&a, "mine")).unwrap();
    // And the other way round: the daemon meets the graph's lock.
    let r = q.call(
        "blockdev-add",
        json!({"driver": "qcow2", "node-name": "q", "file": {"driver": "file", "filename": a}}),
    );
    assert_eq!(r, Err("Failed to get \"write\" lock".to_string()));
}
