//! Dirty bitmaps: counts as QEMU counts them, and persistent bitmaps stored in qcow2 files that
//! the real qemu-img finds clean and lists, and that the live qemu-storage-daemon 10.0.2 loads
//! with the same bits (and the other way round).

mod common;

use std::path::Path;

use common::{check_clean, graph_with_raw, qcow2_node, qemu_img_create, run, start_qsd, Qmp};
use proptest::prelude::*;
use qmpkit_block::bitmap::AddOptions;
use qmpkit_block::graph::{BlockGraph, BlockdevOptions, BlockdevRef, Driver};
use qmpkit_block::qcow2_bitmaps::{parse_directory, serialise_directory, DirEntry};
use qmpkit_testkit::program_or_skip;
use serde_json::{json, Value};

fn add(
    g: &mut BlockGraph,
    node: &str,
    name: &str,
    gran: Option<u64>,
    persistent: bool,
    disabled: bool,
) {
    let opts = AddOptions {
        granularity: gran,
        persistent,
        disabled,
    };
    g.bitmap_add(node, name, &opts).unwrap();
}

/// (name, count, granularity, recording, persistent) of a node's bitmaps, newest first.
fn ours(g: &BlockGraph, node: &str) -> Vec<(String, u64, u64, bool, bool)> {
    g.bitmaps(node)
        .into_iter()
        .map(|b| {
            (
                b.name.clone(),
                b.count(),
                b.granularity,
                b.enabled,
                b.persistent,
            )
        })
        .collect()
}

fn theirs(q: &mut Qmp, node: &str) -> Vec<(String, u64, u64, bool, bool)> {
    let nodes = q
        .call("query-named-block-nodes", json!({"flat": true}))
        .unwrap();
    let n = nodes
        .as_array()
        .and_then(|a| a.iter().find(|n| n["node-name"] == node))
        .unwrap_or_else(|| panic!("no node {node} in {nodes}"))
        .clone();
    n["dirty-bitmaps"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|b| {
            (
                b["name"].as_str().unwrap().to_string(),
                b["count"].as_u64().unwrap(),
                b["granularity"].as_u64().unwrap(),
                b["recording"].as_bool().unwrap(),
                b["persistent"].as_bool().unwrap(),
            )
        })
        .collect()
}

fn qemu_img_bitmaps(qemu_img: &Path, path: &Path) -> Value {
    let (ok, text) = run(
        qemu_img,
        &["info", "-U", "--output=json", path.to_str().unwrap()],
    );
    assert!(ok, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    v["format-specific"]["data"]["bitmaps"].clone()
}

/// Bitmaps written here, judged by qemu-img and loaded by QEMU; QEMU's rewrite loaded here.
fn round_trip(cluster_size: u32, refcount_bits: u32, size: &str) {
    let qemu_img = program_or_skip!("qemu-img");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bm.qcow2");
    qemu_img_create(
        &qemu_img,
        &path,
        Some(&format!(
            "cluster_size={cluster_size},refcount_bits={refcount_bits}"
        )),
        size,
    );
    let disk = qmpkit_block::image::image_info(&path, None)
        .unwrap()
        .virtual_size;
    // QEMU's default: the cluster size, within 4 KiB and 64 KiB.
    let default_granularity = u64::from(cluster_size).clamp(4096, 65536);

    let mut g = BlockGraph::default();
    g.add(&qcow2_node(&path, "d0")).unwrap();
    add(&mut g, "d0", "p0", None, true, false);
    add(&mut g, "d0", "p1", Some(131072), true, true);
    add(&mut g, "d0", "fine", Some(512), true, false);
    add(&mut g, "d0", "temp", None, false, false);
    let backend = g.backend("d0").unwrap();
    backend.write(0, &[1]).unwrap();
    backend.write(200_000, &vec![2; 70_000]).unwrap();
    backend.write(disk - 1, &[3]).unwrap();
    // A 512-byte granularity over a larger disk fills several bitmap clusters.
    for i in 0..64u64 {
        backend.write(i * disk / 64 + 4096, &[9; 600]).unwrap();
    }
    g.bitmap_set_enabled("d0", "p1", true).unwrap();
    backend.write(disk / 2, &[4]).unwrap();
    g.bitmap_set_enabled("d0", "p1", false).unwrap();
    let before = ours(&g, "d0");
    let hashes: Vec<String> = ["p0", "p1", "fine"]
        .iter()
        .map(|n| g.bitmap("d0", n).unwrap().sha256())
        .collect();
    g.delete("d0").unwrap();
    drop(backend);

    check_clean(&qemu_img, &path);
    assert_eq!(
        qemu_img_bitmaps(&qemu_img, &path),
        json!([
            {"flags": ["auto"], "name": "fine", "granularity": 512},
            {"flags": [], "name": "p1", "granularity": 131072},
            {"flags": ["auto"], "name": "p0", "granularity": default_granularity},
        ])
    );

    // Opened again here: the same bitmaps with the same bits; QEMU lists the last one in
    // the file first.
    g.add(&qcow2_node(&path, "d1")).unwrap();
    // While open for writing, the file shows them in use (as QEMU leaves them).
    assert_eq!(
        qemu_img_bitmaps(&qemu_img, &path),
        json!([
            {"flags": ["in-use", "auto"], "name": "fine", "granularity": 512},
            {"flags": ["in-use"], "name": "p1", "granularity": 131072},
            {"flags": ["in-use", "auto"], "name": "p0", "granularity": default_granularity},
        ])
    );
    let again = ours(&g, "d1");
    let mut persistent: Vec<_> = before.iter().filter(|b| b.4).cloned().collect();
    persistent.reverse();
    assert_eq!(again, persistent);
    g.delete("d1").unwrap();
    check_clean(&qemu_img, &path);

    let Some((_qsd, mut q)) = start_qsd() else {
        return;
    };
    q.call(
        "blockdev-add",
        json!({"driver": "qcow2", "node-name": "d0",
               "file": {"driver": "file", "filename": path.to_str().unwrap()}}),
    )
    .unwrap();
    assert_eq!(theirs(&mut q, "d0"), persistent);
    for (n, h) in ["p0", "p1", "fine"].iter().zip(&hashes) {
        let r = q
            .call(
                "x-debug-block-dirty-bitmap-sha256",
                json!({"node": "d0", "name": n}),
            )
            .unwrap();
        assert_eq!(&r["sha256"], h, "{n}");
    }
    // QEMU changes them and stores them itself; this side loads what it wrote.
    q.call(
        "block-dirty-bitmap-clear",
        json!({"node": "d0", "name": "p0"}),
    )
    .unwrap();
    q.call(
        "block-dirty-bitmap-add",
        json!({"node": "d0", "name": "q0", "persistent": true, "granularity": 4096}),
    )
    .unwrap();
    q.call(
        "block-dirty-bitmap-merge",
        json!({"node": "d0", "target": "q0", "bitmaps": ["fine"]}),
    )
    .unwrap();
    q.call(
        "block-dirty-bitmap-remove",
        json!({"node": "d0", "name": "p1"}),
    )
    .unwrap();
    let qemu_view = theirs(&mut q, "d0");
    let qemu_hash = q
        .call(
            "x-debug-block-dirty-bitmap-sha256",
            json!({"node": "d0", "name": "q0"}),
        )
        .unwrap()["sha256"]
        .clone();
    q.call("blockdev-del", json!({"node-name": "d0"})).unwrap();
    check_clean(&qemu_img, &path);
    g.add(&qcow2_node(&path, "d2")).unwrap();
    assert_eq!(ours(&g, "d2"), qemu_view);
    assert_eq!(json!(g.bitmap("d2", "q0").unwrap().sha256()), qemu_hash);
    // And stored once more from here, still clean.
    g.bitmap_remove("d2", "fine").unwrap();
    g.delete("d2").unwrap();
    check_clean(&qemu_img, &path);
    assert_eq!(
        qemu_img_bitmaps(&qemu_img, &path),
        json!([
            {"flags": ["auto"], "name": "p0", "granularity": default_granularity},
            {"flags": ["auto"], "name": "q0", "granularity": 4096},
        ])
    );
}

#[test]
fn persistent_bitmaps_with_64k_clusters() {
    round_trip(65536, 16, "1M");
}

#[test]
fn persistent_bitmaps_with_small_clusters_and_narrow_refcounts() {
    // 512-byte clusters and 1-bit refcounts: new refcount blocks are placed as data grows.
    round_trip(512, 1, "8M");
}

#[test]
fn persistent_bitmaps_with_wide_refcounts() {
    round_trip(4096, 64, "3M");
}

#[test]
fn removing_the_last_persistent_bitmap_removes_the_directory() {
    let qemu_img = program_or_skip!("qemu-img");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("one.qcow2");
    qemu_img_create(&qemu_img, &path, None, "1M");
    let mut g = BlockGraph::default();
    g.add(&qcow2_node(&path, "d0")).unwrap();
    add(&mut g, "d0", "p", None, true, false);
    g.backend("d0").unwrap().write(0, &[1; 4096]).unwrap();
    g.delete("d0").unwrap();
    assert_eq!(
        qemu_img_bitmaps(&qemu_img, &path).as_array().unwrap().len(),
        1
    );
    g.add(&qcow2_node(&path, "d0")).unwrap();
    assert_eq!(g.bitmap("d0", "p").unwrap().count(), 65536);
    g.bitmap_remove("d0", "p").unwrap();
    g.delete("d0").unwrap();
    assert_eq!(qemu_img_bitmaps(&qemu_img, &path), Value::Null);
    check_clean(&qemu_img, &path);
}

#[test]
fn bitmap_errors_in_qemus_words() {
    let dir = tempfile::tempdir().unwrap();
    let mut g = graph_with_raw(dir.path());
    let err = |r: qmpkit_block::Result<()>| r.unwrap_err().desc;
    let opts = |g: Option<u64>, p: bool| AddOptions {
        granularity: g,
        persistent: p,
        disabled: false,
    };
    assert_eq!(
        err(g.bitmap_add("r0", "", &opts(None, false))),
        "Bitmap name cannot be empty"
    );
    assert_eq!(
        err(g.bitmap_add("nope", "b", &opts(None, false))),
        "Cannot find device='nope' nor node-name='nope'"
    );
    assert_eq!(
        err(g.bitmap_add("r0", "b", &opts(Some(1000), false))),
        "Granularity must be power of 2 and at least 512"
    );
    assert_eq!(
        err(g.bitmap_add("r0", "b", &opts(Some(256), false))),
        "Granularity must be power of 2 and at least 512"
    );
    assert_eq!(
        err(g.bitmap_add("r0", "p", &opts(None, true))),
        "Can't store persistent bitmaps to r0: Operation not supported"
    );
    g.bitmap_add("r0", "b", &opts(None, false)).unwrap();
    assert_eq!(
        err(g.bitmap_add("r0", "b", &opts(None, false))),
        "Bitmap already exists: b"
    );
    let long = "y".repeat(1024);
    assert_eq!(
        err(g.bitmap_add("r0", &long, &opts(None, false))),
        format!("Bitmap name too long: {long}")
    );
    assert_eq!(
        g.bitmap_clear("r0", "zz").unwrap_err().desc,
        "Dirty bitmap 'zz' not found"
    );
    assert_eq!(
        g.bitmap_remove("nn", "b").unwrap_err().desc,
        "Node 'nn' not found"
    );
    assert_eq!(
        err(g.bitmap_merge("r0", "b", &[(Some("nn".into()), "b".into())])),
        "Node 'nn' not found"
    );
    assert_eq!(
        err(g.bitmap_merge("r0", "zz", &[(None, "b".into())])),
        "Dirty bitmap 'zz' not found"
    );
}

fn entry() -> impl Strategy<Value = DirEntry> {
    (
        any::<u64>(),
        any::<u32>(),
        any::<u32>(),
        any::<u8>(),
        9u8..=31,
        "[a-z0-9-]{1,40}",
    )
        .prop_map(|(o, s, f, k, g, n)| DirEntry {
            table_offset: o,
            table_size: s % 0x0800_0000,
            flags: f,
            kind: k,
            granularity_bits: g,
            name: n,
        })
}

proptest! {
    #[test]
    fn directory_parser_takes_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512), count in 0u32..70000) {
        let _ = parse_directory(&bytes, count);
    }

    #[test]
    fn directory_round_trips(entries in proptest::collection::vec(entry(), 0..20)) {
        let raw = serialise_directory(&entries);
        prop_assert_eq!(parse_directory(&raw, entries.len() as u32).unwrap(), entries);
    }
}

#[test]
fn writes_through_a_throttle_filter_mark_the_nodes_bitmaps() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.qcow2");
    qmpkit_block::image::create(
        &path,
        &qmpkit_block::CreateOptions::new(qmpkit_block::ImageFormat::Qcow2, 1 << 20),
    )
    .unwrap();
    let mut g = BlockGraph::default();
    g.add(&qcow2_node(&path, "d0")).unwrap();
    let mut t =
        BlockdevOptions::format(Driver::Throttle, BlockdevRef::Node("d0".into())).named("t0");
    t.throttle_group = Some("tg0".into());
    g.add(&t).unwrap();
    add(&mut g, "d0", "b", None, false, false);
    g.backend("t0").unwrap().write(70_000, &[9; 10]).unwrap();
    let mut buf = [0u8; 10];
    g.backend("d0").unwrap().read(70_000, &mut buf).unwrap();
    assert_eq!(buf, [9; 10]);
    assert_eq!(g.bitmap("d0", "b").unwrap().count(), 65536);
    assert_eq!(g.size("t0").unwrap(), 1 << 20);
    assert_eq!(
        g.delete("d0").unwrap_err().desc,
        "Block device d0 is in use"
    );
    g.delete("t0").unwrap();
    g.delete("d0").unwrap();
}

#[test]
fn bitmaps_of_a_read_only_image_are_read_only() {
    let qemu_img = program_or_skip!("qemu-img");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ro.qcow2");
    qemu_img_create(&qemu_img, &path, None, "1M");
    let mut g = BlockGraph::default();
    g.add(&qcow2_node(&path, "d0")).unwrap();
    add(&mut g, "d0", "p0", None, true, false);
    g.backend("d0").unwrap().write(0, &[1; 512]).unwrap();
    g.delete("d0").unwrap();
    g.add(&qcow2_node(&path, "ro").read_only(true)).unwrap();
    let words = "Bitmap 'p0' is readonly and cannot be modified";
    assert_eq!(g.bitmap_clear("ro", "p0").unwrap_err().desc, words);
    assert_eq!(g.bitmap_remove("ro", "p0").unwrap_err().desc, words);
    add(&mut g, "ro", "n1", None, false, false);
    assert_eq!(
        g.bitmap_merge("ro", "p0", &[(None, "n1".into())])
            .unwrap_err()
            .desc,
        words
    );
    g.bitmap_merge("ro", "n1", &[(None, "p0".into())]).unwrap();
    assert_eq!(g.bitmap("ro", "n1").unwrap().count(), 65536);
    g.bitmap_set_enabled("ro", "p0", false).unwrap();
    g.bitmap_set_enabled("ro", "p0", true).unwrap();
    // Writable again: the bitmap may change, and is stored when the node goes.
    g.set_read_only("ro", false).unwrap();
    g.bitmap_clear("ro", "p0").unwrap();
    g.delete("ro").unwrap();
    check_clean(&qemu_img, &path);
    g.add(&qcow2_node(&path, "d0")).unwrap();
    assert_eq!(g.bitmap("d0", "p0").unwrap().count(), 0);
}
