//! Internal snapshots taken and deleted here, judged by the real qemu-img (check, snapshot -l,
//! the data each snapshot holds) and mixed with snapshots qemu-img takes itself.

mod common;

use std::path::Path;

use common::{check_clean, graph_with_raw, qcow2_node, qemu_img_create, run};
use qmpkit_block::graph::BlockGraph;
use qmpkit_block::qcow2_snapshots::Stamp;
use qmpkit_testkit::program_or_skip;

const STAMP: Stamp = Stamp {
    date_sec: 1_796_565_508,
    date_nsec: 917_017_000,
    vm_clock_nsec: 3_500_000_000,
};

fn listing(qemu_img: &Path, path: &Path) -> Vec<(String, String)> {
    let (ok, text) = run(
        qemu_img,
        &["info", "-U", "--output=json", path.to_str().unwrap()],
    );
    assert!(ok, "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["snapshots"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|s| {
            (
                s["id"].as_str().unwrap().to_string(),
                s["name"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// The byte the image reads at `offset` in snapshot `snap` (applied to a copy).
fn byte_in_snapshot(qemu_img: &Path, path: &Path, snap: &str, offset: u64) -> u8 {
    let dir = path.parent().unwrap();
    let out = dir.join(format!("{snap}.raw"));
    let (ok, text) = run(
        qemu_img,
        &[
            "convert",
            "-U",
            "-l",
            &format!("snapshot.name={snap}"),
            "-O",
            "raw",
            path.to_str().unwrap(),
            out.to_str().unwrap(),
        ],
    );
    assert!(ok, "{text}");
    std::fs::read(&out).unwrap()[offset as usize]
}

fn snapshots_in(cluster_size: u32, refcount_bits: u32) {
    let qemu_img = program_or_skip!("qemu-img");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("snap.qcow2");
    qemu_img_create(
        &qemu_img,
        &path,
        Some(&format!(
            "cluster_size={cluster_size},refcount_bits={refcount_bits}"
        )),
        "4M",
    );
    let mut g = BlockGraph::default();
    g.add(&qcow2_node(&path, "d0")).unwrap();
    let b = g.backend("d0").unwrap();
    b.write(0, &[0x11; 70_000]).unwrap();
    b.write(3 << 20, &[0x12; 4096]).unwrap();
    let s1 = g.snapshot_internal("d0", "d0", "s1", STAMP).unwrap();
    check_clean(&qemu_img, &path);
    assert_eq!((s1.id.as_str(), s1.name.as_str()), ("1", "s1"));
    // Writes after the snapshot copy the shared clusters.
    let b = g.backend("d0").unwrap();
    b.write(0, &[0x21; 100]).unwrap();
    b.write(2 << 20, &[0x22; 100]).unwrap();
    b.flush().unwrap();
    check_clean(&qemu_img, &path);
    assert_eq!(
        g.snapshot_internal("d0", "d0", "s1", STAMP)
            .unwrap_err()
            .desc,
        "Snapshot with name 's1' already exists on device 'd0'"
    );
    g.snapshot_internal("d0", "d0", "s2", STAMP).unwrap();
    g.backend("d0").unwrap().write(0, &[0x31; 10]).unwrap();
    g.backend("d0").unwrap().flush().unwrap();
    check_clean(&qemu_img, &path);
    assert_eq!(
        listing(&qemu_img, &path),
        [("1".into(), "s1".into()), ("2".into(), "s2".into())]
    );
    assert_eq!(byte_in_snapshot(&qemu_img, &path, "s1", 0), 0x11);
    assert_eq!(byte_in_snapshot(&qemu_img, &path, "s1", 2 << 20), 0);
    assert_eq!(byte_in_snapshot(&qemu_img, &path, "s2", 0), 0x21);
    assert_eq!(byte_in_snapshot(&qemu_img, &path, "s2", 2 << 20), 0x22);
    let mut now = [0u8; 1];
    g.backend("d0").unwrap().read(0, &mut now).unwrap();
    assert_eq!(now[0], 0x31);

    // Deleting gives clusters back; the file stays clean and the other snapshot intact.
    assert_eq!(
        g.snapshot_delete_internal("d0", "d0", Some("1"), Some("s2"))
            .unwrap_err()
            .desc,
        "Snapshot with id '1' and name 's2' does not exist on device 'd0'"
    );
    let gone = g
        .snapshot_delete_internal("d0", "d0", None, Some("s1"))
        .unwrap();
    assert_eq!(gone.id, "1");
    check_clean(&qemu_img, &path);
    assert_eq!(byte_in_snapshot(&qemu_img, &path, "s2", 0), 0x21);
    g.backend("d0").unwrap().write(4096, &[0x41; 10]).unwrap();
    // Ids go on from the highest.
    assert_eq!(
        g.snapshot_internal("d0", "d0", "s3", STAMP).unwrap().id,
        "3"
    );
    g.delete("d0").unwrap();
    check_clean(&qemu_img, &path);

    // A snapshot qemu-img takes, deleted here; one taken here, deleted by qemu-img.
    let (ok, text) = run(
        &qemu_img,
        &["snapshot", "-c", "theirs", path.to_str().unwrap()],
    );
    assert!(ok, "{text}");
    g.add(&qcow2_node(&path, "d1")).unwrap();
    g.backend("d1").unwrap().write(8192, &[0x51; 10]).unwrap();
    g.snapshot_delete_internal("d1", "d1", None, Some("theirs"))
        .unwrap();
    g.snapshot_delete_internal("d1", "d1", Some("2"), None)
        .unwrap();
    g.snapshot_internal("d1", "d1", "mine", STAMP).unwrap();
    g.delete("d1").unwrap();
    check_clean(&qemu_img, &path);
    let (ok, text) = run(
        &qemu_img,
        &["snapshot", "-d", "mine", path.to_str().unwrap()],
    );
    assert!(ok, "{text}");
    check_clean(&qemu_img, &path);
    assert_eq!(listing(&qemu_img, &path), [("3".into(), "s3".into())]);
    let (ok, text) = run(&qemu_img, &["snapshot", "-l", path.to_str().unwrap()]);
    assert!(ok && text.contains("s3"), "{text}");
}

#[test]
fn internal_snapshots_with_64k_clusters() {
    snapshots_in(65536, 16);
}

#[test]
fn internal_snapshots_with_small_clusters() {
    snapshots_in(512, 8);
}

#[test]
fn internal_snapshot_errors_in_qemus_words() {
    let dir = tempfile::tempdir().unwrap();
    let mut g = graph_with_raw(dir.path());
    assert_eq!(
        g.snapshot_internal("r0", "r0", "s", STAMP)
            .unwrap_err()
            .desc,
        "Block format 'raw' used by device 'r0' does not support internal snapshots"
    );
    assert_eq!(
        g.snapshot_delete_internal("r0", "r0", None, None)
            .unwrap_err()
            .desc,
        "Name or id must be provided"
    );
    assert_eq!(
        g.snapshot_delete_internal("r0", "r0", None, Some("s"))
            .unwrap_err()
            .desc,
        "Failed to get a snapshot list: Operation not supported"
    );
    let q = dir.path().join("q.qcow2");
    qmpkit_block::image::create(
        &q,
        &qmpkit_block::CreateOptions::new(qmpkit_block::ImageFormat::Qcow2, 1 << 20),
    )
    .unwrap();
    g.add(&qcow2_node(&q, "q0")).unwrap();
    assert_eq!(
        g.snapshot_internal("q0", "q0", "", STAMP).unwrap_err().desc,
        "Name is empty"
    );
    assert_eq!(
        g.snapshot_delete_internal("q0", "q0", Some("7"), None)
            .unwrap_err()
            .desc,
        "Snapshot with id '7' and name 'null' does not exist on device 'q0'"
    );
}

#[test]
fn reverting_to_a_snapshot_brings_its_data_back() {
    let qemu_img = program_or_skip!("qemu-img");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("goto.qcow2");
    qemu_img_create(&qemu_img, &path, None, "4M");
    let mut g = BlockGraph::default();
    g.add(&qcow2_node(&path, "d0")).unwrap();
    g.backend("d0").unwrap().write(0, &[0x11; 4096]).unwrap();
    g.snapshot_internal("d0", "d0", "s1", STAMP).unwrap();
    let b = g.backend("d0").unwrap();
    b.write(0, &[0x22; 4096]).unwrap();
    b.write(3 << 20, &[0x23; 4096]).unwrap();
    g.snapshot_internal("d0", "d0", "s2", STAMP).unwrap();
    g.backend("d0").unwrap().write(0, &[0x33; 4096]).unwrap();
    let read = |g: &BlockGraph, off: u64| {
        let mut x = [0u8; 1];
        g.backend("d0").unwrap().read(off, &mut x).unwrap();
        x[0]
    };
    assert_eq!(g.snapshot_goto("d0", "s1").unwrap().name, "s1");
    assert_eq!((read(&g, 0), read(&g, 3 << 20)), (0x11, 0));
    g.backend("d0").unwrap().write(4096, &[0x44; 10]).unwrap();
    g.backend("d0").unwrap().flush().unwrap();
    check_clean(&qemu_img, &path);
    g.snapshot_goto("d0", "s2").unwrap();
    assert_eq!(
        (read(&g, 0), read(&g, 3 << 20), read(&g, 4096)),
        (0x22, 0x23, 0)
    );
    assert_eq!(
        g.snapshot_goto("d0", "nope").unwrap_err().desc,
        "Snapshot 'nope' does not exist in one or more devices"
    );
    g.delete("d0").unwrap();
    check_clean(&qemu_img, &path);
    // qemu-img reverts to what was taken here.
    let (ok, text) = run(&qemu_img, &["snapshot", "-a", "s1", path.to_str().unwrap()]);
    assert!(ok, "{text}");
    check_clean(&qemu_img, &path);
    g.add(&qcow2_node(&path, "d0")).unwrap();
    assert_eq!((read(&g, 0), read(&g, 3 << 20)), (0x11, 0));
}
