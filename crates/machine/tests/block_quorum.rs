//! Quorum nodes on the machine's own (2.12) interface: `blockdev-add` with the quorum
//! driver, the node's `json:` name, `x-blockdev-change` by node and by drive name, and the
//! events of reads whose children disagree (the storage daemon's interface is compared with
//! qemu-storage-daemon in the cli crate's tests).

use serde_json::{json, Value};

mod common;

use common::{events, machine, ok, run};

fn raw(dir: &std::path::Path, name: &str, fill: u8) -> String {
    let p = dir.join(name);
    let mut data = vec![0u8; 1 << 20];
    data[..4096].fill(fill);
    std::fs::write(&p, data).unwrap();
    p.to_string_lossy().into_owned()
}

fn node_file(m: &mut qmpkit_machine::Machine, node: &str) -> Value {
    let nodes = ok(run(m, "query-named-block-nodes", json!({})));
    nodes
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["node-name"] == node)
        .map(|n| n["file"].clone())
        .unwrap_or(Value::Null)
}

#[test]
fn quorum_nodes_and_their_children_on_the_machines_interface() {
    let dir = common::scratch_dir("block-quorum", "nodes");
    let mut m = machine();
    let files: Vec<String> = [0x11, 0x11, 0x22]
        .iter()
        .enumerate()
        .map(|(i, fill)| raw(&dir, &format!("f{i}.raw"), *fill))
        .collect();
    for (i, f) in files.iter().enumerate() {
        ok(run(
            &mut m,
            "blockdev-add",
            json!({"driver": "raw", "node-name": format!("r{i}"),
                   "file": {"driver": "file", "filename": f}}),
        ));
    }
    // The checks, in QEMU's words.
    for (args, want) in [
        (
            json!({"vote-threshold": 0, "children": ["r0"]}),
            "GenericError: Parameter 'vote-threshold' expects a value >= 1",
        ),
        (
            json!({"vote-threshold": 4, "children": ["r0", "r1", "r2"]}),
            "GenericError: threshold may not exceed children count",
        ),
        (
            json!({"vote-threshold": 1, "children": []}),
            "GenericError: Number of provided children must be 1 or more",
        ),
    ] {
        let mut a = json!({"driver": "quorum", "node-name": "q"});
        for (k, v) in args.as_object().unwrap() {
            a[k] = v.clone();
        }
        assert_eq!(run(&mut m, "blockdev-add", a).unwrap_err(), want);
    }
    ok(run(
        &mut m,
        "blockdev-add",
        json!({"driver": "quorum", "node-name": "q", "vote-threshold": 2,
               "children": ["r0", "r1", "r2"], "read-pattern": "quorum"}),
    ));
    let child = |f: &str| {
        format!(
            "{{\"driver\": \"raw\", \"file\": {{\"driver\": \"file\", \"filename\": \"{f}\"}}}}"
        )
    };
    assert_eq!(
        node_file(&mut m, "q"),
        json!(format!(
            "json:{{\"read-pattern\": \"quorum\", \"children\": [{}, {}, {}], \"driver\": \"quorum\", \"vote-threshold\": 2}}",
            child(&files[0]),
            child(&files[1]),
            child(&files[2])
        ))
    );
    // A read through the quorum: two children agree, the third is reported.
    let backend = m.block.graph.backend("q").unwrap();
    let mut buf = vec![0u8; 4096];
    backend.read(0, &mut buf).unwrap();
    assert!(buf.iter().all(|b| *b == 0x11));
    ok(run(&mut m, "query-status", json!({})));
    let bad =
        r#"QUORUM_REPORT_BAD {"type":"read","node-name":"r2","sector-num":0,"sectors-count":8}"#;
    assert_eq!(events(&mut m), [bad]);
    // At most one a second for a child: the next waits for the second to end.
    let mut part = vec![0u8; 512];
    backend.read(0, &mut buf).unwrap();
    backend.read(512, &mut part).unwrap();
    ok(run(&mut m, "query-status", json!({})));
    assert!(events(&mut m).is_empty());
    common::step(&mut m, 999);
    assert!(events(&mut m).is_empty());
    common::step(&mut m, 1);
    assert_eq!(
        events(&mut m),
        [r#"QUORUM_REPORT_BAD {"type":"read","node-name":"r2","sector-num":1,"sectors-count":1}"#]
    );
    common::step(&mut m, 1000);
    assert!(events(&mut m).is_empty());
    // Children out and in again, with QEMU's numbers.
    ok(run(
        &mut m,
        "x-blockdev-change",
        json!({"parent": "q", "child": "children.2"}),
    ));
    assert_eq!(
        run(
            &mut m,
            "x-blockdev-change",
            json!({"parent": "q", "child": "children.1"})
        )
        .unwrap_err(),
        "GenericError: The number of children cannot be lower than the vote threshold 2"
    );
    // The read no longer sees the disagreeing child.
    backend.read(0, &mut buf).unwrap();
    ok(run(&mut m, "query-status", json!({})));
    assert!(events(&mut m).is_empty());
    ok(run(
        &mut m,
        "x-blockdev-change",
        json!({"parent": "q", "node": "r2"}),
    ));
    let graph = ok(run(&mut m, "x-debug-query-block-graph", json!({})));
    let mut names: Vec<&str> = graph["edges"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["name"].as_str())
        .filter(|n| n.starts_with("children"))
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["children.0", "children.1", "children.2"]);
    // Two children now disagree with the first: no quorum.
    ok(run(
        &mut m,
        "x-blockdev-change",
        json!({"parent": "q", "child": "children.1"}),
    ));
    assert!(backend.read(0, &mut buf).is_err());
    ok(run(&mut m, "query-status", json!({})));
    assert_eq!(
        events(&mut m),
        [r#"QUORUM_FAILURE {"reference":"q","sector-num":0,"sectors-count":8}"#]
    );
    // A drive's name stands for its node; the default machine's disks are no quorum.
    let err = run(
        &mut m,
        "x-blockdev-change",
        json!({"parent": "nothing", "node": "r1"}),
    )
    .unwrap_err();
    assert_eq!(
        err,
        "GenericError: Cannot find device='nothing' nor node-name='nothing'"
    );
    assert_eq!(
        run(&mut m, "blockdev-del", json!({"node-name": "r0"})).unwrap_err(),
        "GenericError: Block device r0 is in use"
    );
    ok(run(&mut m, "blockdev-del", json!({"node-name": "q"})));
    ok(run(&mut m, "blockdev-del", json!({"node-name": "r0"})));
}
