//! Descriptors passed by clients: getfd/closefd per client, fd sets with QEMU's ids, order,
//! words and lifetime (checked against qemu-system-x86_64 10.0.2).

use std::collections::HashMap;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::{Arc, Mutex};

use qmpkit_machine::{fdsets, Cx};
use serde_json::json;

mod common;

use common::{machine, ok, run_cx, tmp};

fn file_fd(name: &str, write: bool) -> OwnedFd {
    let p = tmp(name);
    let f = std::fs::OpenOptions::new()
        .read(!write)
        .write(write)
        .create(write)
        .truncate(write)
        .open(&p)
        .expect("test file");
    OwnedFd::from(f)
}

/// What descriptor number `raw` is now (`None`: no open descriptor). Other tests of this
/// binary open descriptors at the same time, so a closed number may be taken again at once:
/// whether a descriptor is still the one given shows as the same identity.
fn identity(raw: i32) -> Option<std::path::PathBuf> {
    std::fs::read_link(format!("/proc/self/fd/{raw}")).ok()
}

/// Whether `raw` is still the descriptor whose identity was `was`.
fn is_open(raw: i32, was: &Option<std::path::PathBuf>) -> bool {
    was.is_some() && identity(raw) == *was
}

#[test]
fn getfd_belongs_to_its_client() {
    let mut m = machine();
    let session: Arc<Mutex<HashMap<String, OwnedFd>>> = Arc::default();
    let mut cx = Cx {
        session_fds: Some(session.clone()),
        ..Default::default()
    };
    assert_eq!(
        run_cx(&mut m, "getfd", json!({"fdname": "x"}), &mut cx),
        Err("GenericError: No file descriptor supplied via SCM_RIGHTS".into())
    );
    cx.fds.push(file_fd("fds-a", true));
    assert_eq!(
        run_cx(&mut m, "getfd", json!({"fdname": "1x"}), &mut cx),
        Err("GenericError: Parameter 'fdname' expects a name not starting with a digit".into())
    );
    // As in QEMU, the refused call used up (and closed) the descriptor.
    assert!(cx.fds.is_empty());
    cx.fds.push(file_fd("fds-a", true));
    ok(run_cx(&mut m, "getfd", json!({"fdname": "x"}), &mut cx));
    let raw = session.lock().unwrap()["x"].as_raw_fd();
    let was = identity(raw);
    assert!(is_open(raw, &was));
    ok(run_cx(&mut m, "closefd", json!({"fdname": "x"}), &mut cx));
    assert!(!is_open(raw, &was));
    assert_eq!(
        run_cx(&mut m, "closefd", json!({"fdname": "x"}), &mut cx),
        Err("GenericError: File descriptor named 'x' not found".into())
    );
    // A named descriptor goes when its client goes.
    cx.fds.push(file_fd("fds-b", true));
    ok(run_cx(&mut m, "getfd", json!({"fdname": "y"}), &mut cx));
    let raw = session.lock().unwrap()["y"].as_raw_fd();
    let was = identity(raw);
    drop(cx);
    drop(session);
    assert!(!is_open(raw, &was));
}

#[test]
fn fdsets_ids_order_words_and_use() {
    let mut m = machine();
    let mut cx = Cx::default();
    assert_eq!(
        run_cx(&mut m, "add-fd", json!({}), &mut cx),
        Err("GenericError: No file descriptor supplied via SCM_RIGHTS".into())
    );
    cx.fds.push(file_fd("fds-c", true));
    assert_eq!(
        run_cx(&mut m, "add-fd", json!({"fdset-id": -1}), &mut cx),
        Err("GenericError: Parameter 'fdset-id' expects a non-negative value".into())
    );
    assert!(cx.fds.is_empty());
    cx.fds.push(file_fd("fds-c", true));
    let a = ok(run_cx(
        &mut m,
        "add-fd",
        json!({"opaque": "hello"}),
        &mut cx,
    ));
    assert_eq!(a["fdset-id"], 0);
    cx.fds.push(file_fd("fds-c", false));
    assert_eq!(
        ok(run_cx(&mut m, "add-fd", json!({"fdset-id": 3}), &mut cx))["fdset-id"],
        3
    );
    cx.fds.push(file_fd("fds-c", true));
    let b = ok(run_cx(&mut m, "add-fd", json!({"fdset-id": 0}), &mut cx));
    cx.fds.push(file_fd("fds-c", false));
    assert_eq!(
        ok(run_cx(&mut m, "add-fd", json!({}), &mut cx))["fdset-id"],
        1
    );
    let q = ok(run_cx(&mut m, "query-fdsets", json!({}), &mut cx));
    let ids: Vec<i64> = q
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["fdset-id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, [3, 1, 0]);
    assert_eq!(
        q[2]["fds"],
        json!([{"fd": a["fd"], "opaque": "hello"}, {"fd": b["fd"]}])
    );
    assert_eq!(
        run_cx(&mut m, "remove-fd", json!({"fdset-id": 9}), &mut cx),
        Err("GenericError: File descriptor named 'fdset-id:9' not found".into())
    );
    assert_eq!(
        run_cx(
            &mut m,
            "remove-fd",
            json!({"fdset-id": 0, "fd": 999}),
            &mut cx
        ),
        Err("GenericError: File descriptor named 'fdset-id:0, fd:999' not found".into())
    );
    // A subsystem writes through /dev/fdset/0 (write-only descriptors there).
    let mut f = fdsets::open(&mut m, "/dev/fdset/0", fdsets::OpenOptions::write_create())
        .expect("dup of a write-only descriptor");
    use std::io::Write;
    f.write_all(b"through the set\n").expect("write");
    let e = fdsets::open(&mut m, "/dev/fdset/3", fdsets::OpenOptions::write_create()).unwrap_err();
    assert_eq!(qmpkit_machine::memory::strerror(&e), "Permission denied");
    let raw = a["fd"].as_i64().unwrap() as i32;
    let was = identity(raw);
    ok(run_cx(
        &mut m,
        "remove-fd",
        json!({"fdset-id": 0, "fd": raw}),
        &mut cx,
    ));
    assert!(!is_open(raw, &was));
    ok(run_cx(&mut m, "remove-fd", json!({"fdset-id": 0}), &mut cx));
    // Still in use: listed with no descriptors until its user lets go.
    let q = ok(run_cx(&mut m, "query-fdsets", json!({}), &mut cx));
    assert_eq!(q[2], json!({"fdset-id": 0, "fds": []}));
    drop(f);
    let q = ok(run_cx(&mut m, "query-fdsets", json!({}), &mut cx));
    assert_eq!(q.as_array().unwrap().len(), 2);
    assert_eq!(
        std::fs::read_to_string(tmp("fds-c")).unwrap(),
        "through the set\n"
    );
}

/// `add_client` as qemu-system-x86_64 10.0.2 answers it (`-display none`, no SPICE): the
/// named descriptor is taken whatever the answer; a listening socket character device
/// takes it as its peer.
#[test]
fn add_client_takes_the_descriptor() {
    use std::io::Read;
    use std::os::unix::net::UnixStream;
    let mut m = machine();
    let session: Arc<Mutex<HashMap<String, OwnedFd>>> = Arc::default();
    let mut cx = Cx {
        session_fds: Some(session.clone()),
        ..Default::default()
    };
    assert_eq!(
        run_cx(
            &mut m,
            "add_client",
            json!({"protocol": "vnc", "fdname": "c"}),
            &mut cx
        ),
        Err("GenericError: File descriptor named 'c' has not been found".into())
    );
    let give = |m: &mut qmpkit_machine::Machine, cx: &mut Cx, fd: OwnedFd| {
        cx.fds.push(fd);
        ok(run_cx(m, "getfd", json!({"fdname": "c"}), cx));
    };
    let cases = [
        (
            "spice",
            Err("DeviceNotActive: SPICE is not in use".to_string()),
        ),
        (
            "@dbus-display",
            Err("DeviceNotActive: D-Bus display is not in use".to_string()),
        ),
        (
            "foo",
            Err("GenericError: protocol 'foo' is invalid".to_string()),
        ),
    ];
    for (protocol, want) in cases {
        // A descriptor that is no socket is refused first, whatever the protocol.
        for (fd, want) in [
            (
                file_fd("fds-client", true),
                Err("GenericError: parameter @fdname must name a socket".to_string()),
            ),
            (UnixStream::pair().unwrap().1.into(), want),
        ] {
            give(&mut m, &mut cx, fd);
            let raw = session.lock().unwrap()["c"].as_raw_fd();
            let was = identity(raw);
            let got = run_cx(
                &mut m,
                "add_client",
                json!({"protocol": protocol, "fdname": "c"}),
                &mut cx,
            );
            assert_eq!(got, want, "{protocol}");
            assert!(!session.lock().unwrap().contains_key("c"), "{protocol}");
            assert!(!is_open(raw, &was), "{protocol}");
        }
    }
    // Without a VNC server, QEMU answers a VNC viewer with success (and closes it); a
    // descriptor that is no socket is refused all the same.
    let mut c = qmpkit_machine::MachineConfig::default_machine();
    c.vnc = None;
    let mut plain = qmpkit_machine::Machine::new(Arc::new(c), common::schema());
    give(&mut plain, &mut cx, file_fd("fds-client", true));
    assert_eq!(
        run_cx(
            &mut plain,
            "add_client",
            json!({"protocol": "vnc", "fdname": "c"}),
            &mut cx
        ),
        Err("GenericError: parameter @fdname must name a socket".to_string())
    );
    let (_mine, theirs) = UnixStream::pair().unwrap();
    give(&mut plain, &mut cx, theirs.into());
    let raw = session.lock().unwrap()["c"].as_raw_fd();
    let was = identity(raw);
    ok(run_cx(
        &mut plain,
        "add_client",
        json!({"protocol": "vnc", "fdname": "c"}),
        &mut cx,
    ));
    assert!(!is_open(raw, &was));
    // A character device that is not a socket refuses the client.
    let ring = json!({"id": "r", "backend": {"type": "ringbuf", "data": {}}});
    ok(run_cx(&mut m, "chardev-add", ring, &mut cx));
    let (_mine, theirs) = UnixStream::pair().unwrap();
    give(&mut m, &mut cx, theirs.into());
    assert_eq!(
        run_cx(
            &mut m,
            "add_client",
            json!({"protocol": "r", "fdname": "c"}),
            &mut cx
        ),
        Err("GenericError: failed to add client".into())
    );
    // A listening socket takes it as its peer (named as QEMU names a socket pair's end).
    let path = tmp("fds-add-client.sock");
    let _ = std::fs::remove_file(&path);
    let sock = json!({"id": "s", "backend": {"type": "socket", "data": {
        "addr": {"type": "unix", "data": {"path": path.to_string_lossy()}},
        "server": true, "wait": false}}});
    ok(run_cx(&mut m, "chardev-add", sock, &mut cx));
    let (ours, mut theirs) = UnixStream::pair().expect("socket pair");
    give(&mut m, &mut cx, OwnedFd::from(ours));
    ok(run_cx(
        &mut m,
        "add_client",
        json!({"protocol": "s", "fdname": "c"}),
        &mut cx,
    ));
    let chardevs = ok(run_cx(&mut m, "query-chardev", json!({}), &mut cx));
    let s = chardevs
        .as_array()
        .and_then(|l| l.iter().find(|c| c["label"] == "s"))
        .expect("chardev s");
    // QEMU 10.0.2 says `unix:,server=on`; the 2.12 interface spells the flag `,server`.
    assert_eq!(s["filename"], "unix:,server");
    // The guest's output reaches the peer.
    ok(run_cx(
        &mut m,
        "__org.qmpkit_chardev-write",
        json!({"id": "s", "data": "hi"}),
        &mut cx,
    ));
    let mut buf = [0u8; 2];
    theirs.read_exact(&mut buf).expect("read");
    assert_eq!(&buf, b"hi");
    // A second client finds the place taken.
    let (_second, theirs2) = UnixStream::pair().unwrap();
    give(&mut m, &mut cx, theirs2.into());
    assert_eq!(
        run_cx(
            &mut m,
            "add_client",
            json!({"protocol": "s", "fdname": "c"}),
            &mut cx
        ),
        Err("GenericError: failed to add client".into())
    );
}

/// A raw image of 1 MiB opened with `flags` (`O_RDONLY`, `O_RDWR`, with `O_DIRECT` or not).
fn image_fd(name: &str, flags: i32) -> OwnedFd {
    use std::os::unix::fs::OpenOptionsExt;
    let p = tmp(name);
    let o = qmpkit_block::CreateOptions::new(qmpkit_block::ImageFormat::Raw, 1 << 20);
    qmpkit_block::image::create(&p, &o).expect("test image");
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(flags & libc::O_ACCMODE == libc::O_RDWR)
        .custom_flags(flags & !libc::O_ACCMODE)
        .open(&p)
        .expect("test image opens");
    OwnedFd::from(f)
}

/// The node `name` as `query-named-block-nodes` lists it.
fn named(m: &mut qmpkit_machine::Machine, cx: &mut Cx, name: &str) -> serde_json::Value {
    let nodes = ok(run_cx(m, "query-named-block-nodes", json!({}), cx));
    nodes
        .as_array()
        .and_then(|a| a.iter().find(|n| n["node-name"] == name))
        .cloned()
        .unwrap_or_else(|| panic!("{name} not listed in {nodes}"))
}

/// Image files named `/dev/fdset/N`, as `qemu-system-x86_64` 10.0.2 opens them: a duplicate
/// of the set's descriptor whose access mode and `O_DIRECT` are the node's (a backing is
/// read-only and takes its parent's cache mode), in QEMU's words when there is none; the
/// node keeps the set while it lives, and shows the name it was given.
#[test]
fn image_files_open_through_fd_sets() {
    let mut m = common::machine_10();
    let mut cx = Cx::default();
    let raw = |node: &str, read_only: bool, file: &str| {
        json!({"driver": "raw", "node-name": node, "read-only": read_only,
               "file": {"driver": "file", "filename": file}})
    };
    assert_eq!(
        run_cx(
            &mut m,
            "blockdev-add",
            raw("a0", false, "/dev/fdset/4"),
            &mut cx
        ),
        Err("GenericError: Failed to find fdset /dev/fdset/4".into())
    );
    assert_eq!(
        run_cx(
            &mut m,
            "blockdev-add",
            raw("a0", false, "/dev/fdset/x"),
            &mut cx
        ),
        Err("GenericError: Could not parse fdset /dev/fdset/x".into())
    );
    cx.fds.push(image_fd("fdset-ro.img", libc::O_RDONLY));
    let added = ok(run_cx(
        &mut m,
        "add-fd",
        json!({"fdset-id": 4, "opaque": "ro"}),
        &mut cx,
    ));
    let fd = added["fd"].clone();
    assert_eq!(
        run_cx(
            &mut m,
            "blockdev-add",
            raw("a1", false, "/dev/fdset/4"),
            &mut cx
        ),
        Err("GenericError: Failed to find file descriptor with matching flags=0x2".into())
    );
    ok(run_cx(
        &mut m,
        "blockdev-add",
        raw("a2", true, "/dev/fdset/4"),
        &mut cx,
    ));
    let a2 = named(&mut m, &mut cx, "a2");
    assert_eq!(a2["file"], "/dev/fdset/4");
    assert_eq!(a2["ro"], true);
    assert_eq!(a2["image"]["filename"], "/dev/fdset/4");
    assert_eq!(a2["image"]["virtual-size"], 1 << 20);
    // A backing under cache.direct asks for O_RDONLY | O_DIRECT.
    let overlay = tmp("fdset-overlay.qcow2");
    let o = qmpkit_block::CreateOptions::new(qmpkit_block::ImageFormat::Qcow2, 1 << 20);
    qmpkit_block::image::create(&overlay, &o).unwrap();
    let over = |backing: &str| {
        json!({"driver": "qcow2", "node-name": "node0", "cache": {"direct": true},
               "file": {"driver": "file", "filename": overlay},
               "backing": {"driver": "raw",
                           "file": {"driver": "file", "filename": backing}}})
    };
    assert_eq!(
        run_cx(&mut m, "blockdev-add", over("/dev/fdset/4"), &mut cx),
        Err("GenericError: Could not open backing file: Failed to find file descriptor with matching flags=0x4000".into())
    );
    cx.fds.push(image_fd(
        "fdset-direct.img",
        libc::O_RDONLY | libc::O_DIRECT,
    ));
    ok(run_cx(&mut m, "add-fd", json!({"fdset-id": 5}), &mut cx));
    ok(run_cx(
        &mut m,
        "blockdev-add",
        over("/dev/fdset/5"),
        &mut cx,
    ));
    let node0 = named(&mut m, &mut cx, "node0");
    assert_eq!(node0["backing_file"], "/dev/fdset/5");
    assert_eq!(node0["cache"]["direct"], true);
    // Each node of node0 (its file, its backing and the backing's file) takes its cache mode.
    let nodes = ok(run_cx(
        &mut m,
        "query-named-block-nodes",
        json!({}),
        &mut cx,
    ));
    for n in nodes.as_array().unwrap() {
        let of_a2 = n["file"] == "/dev/fdset/4";
        assert_eq!(n["cache"]["direct"], !of_a2, "{n}");
    }
    // The set stays, emptied, while a node holds its duplicate, and goes with the node.
    ok(run_cx(&mut m, "remove-fd", json!({"fdset-id": 4}), &mut cx));
    let sets = ok(run_cx(&mut m, "query-fdsets", json!({}), &mut cx));
    assert_eq!(sets[1], json!({"fdset-id": 4, "fds": []}), "{sets} ({fd})");
    ok(run_cx(
        &mut m,
        "blockdev-del",
        json!({"node-name": "a2"}),
        &mut cx,
    ));
    let sets = ok(run_cx(&mut m, "query-fdsets", json!({}), &mut cx));
    assert_eq!(sets.as_array().unwrap().len(), 1, "{sets}");
    assert_eq!(sets[0]["fdset-id"], 5);
}

/// `-add-fd` descriptors are in their sets from the start, as duplicates with their opaque
/// strings, and an image file opens through them; the process keeps its own descriptor.
#[test]
fn command_line_descriptors_fill_their_sets() {
    let given = image_fd("fdset-cmdline.img", libc::O_RDWR);
    let raw_given = given.as_raw_fd();
    let mut m = common::machine_with(|c| {
        c.apply_option("add-fd", Some(&format!("fd={raw_given},set=2,opaque=disk")))
            .expect("-add-fd");
        c.apply_option("add-fd", Some(&format!("fd={raw_given},set=2")))
            .expect("-add-fd");
    });
    let mut cx = Cx::default();
    let sets = ok(run_cx(&mut m, "query-fdsets", json!({}), &mut cx));
    let fds = sets[0]["fds"].as_array().expect("fds").clone();
    assert_eq!(sets[0]["fdset-id"], json!(2));
    assert_eq!(fds.len(), 2);
    assert_eq!(fds[0]["opaque"], json!("disk"));
    assert!(fds[1].get("opaque").is_none());
    let (a, b) = (
        fds[0]["fd"].as_i64().unwrap(),
        fds[1]["fd"].as_i64().unwrap(),
    );
    assert!(a != raw_given as i64 && b != raw_given as i64 && a != b);
    let added = run_cx(
        &mut m,
        "blockdev-add",
        json!({"driver": "raw", "node-name": "d0",
               "file": {"driver": "file", "filename": "/dev/fdset/2"}}),
        &mut cx,
    );
    assert_eq!(added, Ok(json!({})));
    // The process's own descriptor stays open.
    assert!(unsafe { libc::fcntl(raw_given, libc::F_GETFD) } >= 0);
    drop(m);
    assert!(unsafe { libc::fcntl(raw_given, libc::F_GETFD) } >= 0);
    drop(given);
}

/// A `-drive` over `/dev/fdset/N` opens the image through the set the command line filled.
#[test]
fn drives_open_through_command_line_sets() {
    let given = image_fd("fdset-drive.img", libc::O_RDWR);
    let raw_given = given.as_raw_fd();
    let mut m = common::machine_with(|c| {
        c.apply_option("add-fd", Some(&format!("fd={raw_given},set=5")))
            .expect("-add-fd");
        c.apply_option("drive", Some("file=/dev/fdset/5,format=raw,if=none,id=fd5"))
            .expect("-drive");
    });
    let mut cx = Cx::default();
    let blocks = ok(run_cx(&mut m, "query-block", json!({}), &mut cx));
    let drive = blocks
        .as_array()
        .expect("drives")
        .iter()
        .find(|b| b["device"] == json!("fd5"))
        .expect("drive fd5")
        .clone();
    // The image's own size (1 MiB), read through the set.
    assert_eq!(drive["inserted"]["image"]["virtual-size"], json!(1 << 20));
    assert_eq!(drive["inserted"]["file"], json!("/dev/fdset/5"));
    drop(m);
    drop(given);
}

/// A `-drive` whose fd set cannot give the image stops the machine from starting with
/// QEMU's words (qemu-system-x86_64 10.0.2's for each), rather than simulating a medium.
#[test]
fn drives_whose_sets_cannot_open_the_image_stop_start_up() {
    let given = image_fd("fdset-drive-ro.img", libc::O_RDWR);
    let raw_given = given.as_raw_fd();
    let start = |opt: &str| {
        let mut c = qmpkit_machine::MachineConfig::default_machine();
        c.fds.push(qmpkit_machine::config::FdConfig {
            fd: raw_given,
            set: 5,
            opaque: None,
        });
        c.apply_option("drive", Some(opt)).expect("-drive");
        qmpkit_machine::Machine::try_new(Arc::new(c), common::schema()).map(|_| ())
    };
    // Only a read-write descriptor in the set: a read-only drive finds none that fits.
    assert_eq!(
        start("file=/dev/fdset/5,format=raw,if=none,id=d0,readonly=on"),
        Err("-drive file=/dev/fdset/5,format=raw,if=none,id=d0,readonly=on: Failed to find file descriptor with matching flags=0x0".into())
    );
    assert_eq!(
        start("file=/dev/fdset/6,format=raw,if=none,id=d0"),
        Err(
            "-drive file=/dev/fdset/6,format=raw,if=none,id=d0: Failed to find fdset /dev/fdset/6"
                .into()
        )
    );
    // The same set opens for a drive that writes.
    assert_eq!(start("file=/dev/fdset/5,format=raw,if=none,id=d0"), Ok(()));
    drop(given);
}
