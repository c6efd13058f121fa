//! The documenting machine: what a documented example presupposes (the drives, nodes and
//! images, the devices, a migration under way, the guest's driver state), rebuilt on a new
//! machine before the example is replayed.
//!
//! A context says how the documenting machine was started (QEMU options), which images its
//! host had (created under the replay's own directory, with the name the example gives them
//! mapped there), which requests ran before the example, and which values of the reply are
//! the documenting machine's own (JSON pointers, `*` for any member or index): those must be
//! there with the documented JSON type, and every other value must equal the documented one.

use std::path::{Path, PathBuf};

use qmpkit_block::{CreateOptions, ImageFormat};
use serde_json::{json, Value};

/// An image on the documenting host.
pub struct Img {
    /// The name the example (or its context) gives it.
    pub name: &'static str,
    pub format: ImageFormat,
    pub size: u64,
    /// The image it is an overlay of (a name of another image of the context).
    pub backing: Option<&'static str>,
}

/// What an example presupposes.
#[derive(Default)]
pub struct Context {
    /// QEMU options the documenting machine was started with; host file names in them are
    /// mapped like the request's.
    pub options: Vec<(&'static str, String)>,
    /// Default drives the documenting machine did not have (their ids).
    pub drop_drives: Vec<&'static str>,
    /// Images its host had, created before the machine starts.
    pub images: Vec<Img>,
    /// Further host file names the example uses (targets it creates).
    pub paths: Vec<&'static str>,
    /// Requests made before the example.
    pub setup: Vec<(&'static str, Value)>,
    /// Request members the documenting machine chose at run time, taken from a setup
    /// request's reply: `(request pointer, setup index, reply pointer)`.
    pub from_setup: Vec<(&'static str, usize, &'static str)>,
    /// Reply members whose values are the documenting machine's own.
    pub own: Vec<&'static str>,
    /// Simulated time to let pass after the setup (a migration under way), in ns.
    pub wait_ns: u64,
    /// The migration status the documenting machine had reached: its stream is written by
    /// real threads, so after `wait_ns` the clock keeps moving, in small steps with real
    /// pauses, until the migration is there (a loaded host writes slower than the clock).
    pub settle_status: Option<&'static str>,
    /// A descriptor of a raw image passed with `add-fd` setup requests (read-only, with
    /// `O_DIRECT`).
    pub fd_image: Option<&'static str>,
    /// What the documenting machine had, in one line.
    pub why: &'static str,
}

impl Context {
    /// Whether the request or the reply carries values the documenting machine chose at run
    /// time (its descriptor numbers, its counters); its host's file names in the request are
    /// seen where the request is mapped.
    pub fn tied(&self) -> bool {
        !self.own.is_empty() || !self.from_setup.is_empty()
    }
}

/// Where a documented host file lives for this replay.
pub fn host_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(name.trim_start_matches('/'))
}

/// Every host file name of the context, documented and mapped.
pub fn names(ctx: &Context, dir: &Path) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = ctx
        .images
        .iter()
        .map(|i| i.name)
        .chain(ctx.paths.iter().copied())
        .map(|n| {
            (
                n.to_string(),
                host_path(dir, n).to_string_lossy().into_owned(),
            )
        })
        .collect();
    // Longest first, so that a name inside another is not replaced in it.
    v.sort_by_key(|(n, _)| std::cmp::Reverse(n.len()));
    v
}

/// Creates the context's images and the directories of its other names.
pub fn create_files(ctx: &Context, dir: &Path) -> Result<(), String> {
    for n in ctx.paths.iter().chain(ctx.images.iter().map(|i| &i.name)) {
        if let Some(parent) = host_path(dir, n).parent() {
            std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
        }
    }
    for img in &ctx.images {
        let mut o = CreateOptions::new(img.format, img.size);
        if let Some(b) = img.backing {
            o.backing_file = Some(host_path(dir, b).to_string_lossy().into_owned());
            o.backing_format = Some(
                ctx.images
                    .iter()
                    .find(|i| i.name == b)
                    .map_or(ImageFormat::Qcow2, |i| i.format),
            );
        }
        qmpkit_block::image::create(&host_path(dir, img.name), &o)
            .map_err(|e| format!("creating {}: {e}", img.name))?;
    }
    Ok(())
}

/// `v` with every string equal to a documented name replaced by its mapped name
/// (`forward`), or the other way round, also inside longer strings (error messages).
pub fn map_names(v: &Value, names: &[(String, String)], forward: bool) -> Value {
    match v {
        Value::String(s) => {
            let mut s = s.clone();
            for (doc, here) in names {
                let (from, to) = if forward { (doc, here) } else { (here, doc) };
                if forward {
                    if s == *from {
                        s = to.clone();
                    }
                } else {
                    s = s.replace(from.as_str(), to);
                }
            }
            Value::String(s)
        }
        Value::Array(a) => Value::Array(a.iter().map(|x| map_names(x, names, forward)).collect()),
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, x)| (k.clone(), map_names(x, names, forward)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Whether pointer `at` is one of the `own` patterns (`*`: any member or index).
fn is_own(own: &[&str], at: &str) -> bool {
    own.iter().any(|p| {
        let (a, b): (Vec<&str>, Vec<&str>) = (p.split('/').collect(), at.split('/').collect());
        a.len() == b.len() && a.iter().zip(&b).all(|(x, y)| *x == "*" || x == y)
    })
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Compares a reply with the documented one: the same shape (every documented member, each
/// array as long), the documented type at the `own` pointers, the documented value
/// everywhere else. Members the reply has beyond the documented ones are returned.
pub fn compare(got: &Value, want: &Value, own: &[&str]) -> Result<Vec<String>, String> {
    let mut extra = Vec::new();
    walk(got, want, own, "", &mut extra)?;
    Ok(extra)
}

fn walk(
    got: &Value,
    want: &Value,
    own: &[&str],
    at: &str,
    extra: &mut Vec<String>,
) -> Result<(), String> {
    if kind(got) != kind(want) {
        return Err(format!(
            "{at}: {} {got}, documented {} {want}",
            kind(got),
            kind(want)
        ));
    }
    if is_own(own, at) && !matches!(want, Value::Object(_) | Value::Array(_)) {
        return Ok(());
    }
    match (got, want) {
        (Value::Object(g), Value::Object(w)) => {
            for (k, wv) in w {
                let p = format!("{at}/{k}");
                match g.get(k) {
                    Some(gv) => walk(gv, wv, own, &p, extra)?,
                    None => return Err(format!("{p}: missing (documented {wv})")),
                }
            }
            extra.extend(
                g.keys()
                    .filter(|k| !w.contains_key(*k))
                    .map(|k| format!("{at}/{k}")),
            );
            Ok(())
        }
        (Value::Array(g), Value::Array(w)) => {
            if g.len() != w.len() {
                return Err(format!(
                    "{at}: {} elements, documented {}",
                    g.len(),
                    w.len()
                ));
            }
            for (i, (gv, wv)) in g.iter().zip(w).enumerate() {
                walk(gv, wv, own, &format!("{at}/{i}"), extra)?;
            }
            Ok(())
        }
        _ if got == want => Ok(()),
        _ => Err(format!("{at}: {got}, documented {want}")),
    }
}

fn qcow2(name: &'static str, size: u64) -> Img {
    Img {
        name,
        format: ImageFormat::Qcow2,
        size,
        backing: None,
    }
}

fn raw(name: &'static str, size: u64) -> Img {
    Img {
        name,
        format: ImageFormat::Raw,
        size,
        backing: None,
    }
}

fn overlay(name: &'static str, backing: &'static str, size: u64) -> Img {
    Img {
        backing: Some(backing),
        ..qcow2(name, size)
    }
}

/// The size of the documenting host's disks: small, so that jobs copying them finish soon.
const G: u64 = 64 << 20;

/// A qcow2 node of the documenting machine over an image of the context.
fn node(name: &str, file: &str) -> (&'static str, Value) {
    (
        "blockdev-add",
        json!({"driver": "qcow2", "node-name": name,
               "file": {"driver": "file", "filename": file}}),
    )
}

/// A quorum node of the documenting machine over `children` null nodes, one vote enough.
fn quorum(name: &str, children: usize) -> (&'static str, Value) {
    let children: Vec<Value> = (0..children)
        .map(|_| json!({"driver": "null-co"}))
        .collect();
    (
        "blockdev-add",
        json!({"driver": "quorum", "node-name": name, "vote-threshold": 1,
               "children": children}),
    )
}

/// A drive of the documenting machine: `-drive file=FILE,if=none,id=ID` (a file name of the
/// context, mapped).
fn drive(id: &str, file: &str, extra: &str) -> (&'static str, String) {
    ("drive", format!("file={file},if=none,id={id}{extra}"))
}

/// The documenting machine of the example of `cmd` with `args` whose documented reply is
/// `want`; `None` when the example presupposes nothing beyond the default machine.
pub fn context(cmd: &str, args: &Value, want: &Value) -> Option<Context> {
    let s = |p: &str| args.pointer(p).and_then(Value::as_str).unwrap_or("");
    let ret = want.get("return");
    let c = match cmd {
        "block_resize" if s("/device") == "scratch" => Context {
            images: vec![qcow2("scratch.qcow2", G / 2)],
            options: vec![drive("scratch", "scratch.qcow2", "")],
            why: "its drive 'scratch'",
            ..Default::default()
        },
        "block-commit" if s("/device") == "virtio0" => virtio0_chain(
            "/tmp/base.qcow2",
            "its drive 'virtio0' over /tmp/snap1.qcow2",
        ),
        "block-stream" if s("/device") == "virtio0" => virtio0_chain(
            "/tmp/master.qcow2",
            "its drive 'virtio0' over /tmp/master.qcow2",
        ),
        "drive-backup" if s("/device") == "drive0" => Context {
            images: vec![qcow2("drive0.qcow2", G)],
            options: vec![drive("drive0", "drive0.qcow2", "")],
            paths: vec!["backup.img"],
            why: "its drive 'drive0'",
            ..Default::default()
        },
        "blockdev-snapshot-sync" | "drive-mirror" if s("/device") == "ide-hd0" => Context {
            images: vec![qcow2("ide-hd0.qcow2", G)],
            options: vec![drive("ide-hd0", "ide-hd0.qcow2", "")],
            paths: vec!["/some/place/my-image"],
            why: "its drive 'ide-hd0'",
            ..Default::default()
        },
        "transaction" if s("/actions/0/data/device") == "ide-hd0" => Context {
            images: vec![
                qcow2("ide-hd0.qcow2", G),
                qcow2("ide-hd1.qcow2", G),
                qcow2("ide-hd2.qcow2", G),
                qcow2("myfile.qcow2", G),
                qcow2("/some/place/my-image2", G),
            ],
            options: vec![
                drive("ide-hd0", "ide-hd0.qcow2", ""),
                drive("ide-hd1", "ide-hd1.qcow2", ""),
                drive("ide-hd2", "ide-hd2.qcow2", ""),
            ],
            paths: vec!["/some/place/my-image"],
            setup: vec![node("myfile", "myfile.qcow2")],
            why: "its drives 'ide-hd0', 'ide-hd1', 'ide-hd2', its node 'myfile' and the existing \
                  image /some/place/my-image2",
            ..Default::default()
        },
        "blockdev-snapshot-internal-sync" => Context {
            images: vec![qcow2("ide-hd0.qcow2", G)],
            options: vec![drive("ide-hd0", "ide-hd0.qcow2", "")],
            why: "its drive 'ide-hd0' on a qcow2 image",
            ..Default::default()
        },
        "blockdev-snapshot-delete-internal-sync" => Context {
            images: vec![qcow2("ide-hd0.qcow2", G)],
            options: vec![drive("ide-hd0", "ide-hd0.qcow2", "")],
            setup: vec![(
                "blockdev-snapshot-internal-sync",
                json!({"device": "ide-hd0", "name": "snapshot0"}),
            )],
            // When the snapshot was taken, by the host's and the guest's clocks.
            own: vec!["/date-sec", "/date-nsec", "/vm-clock-sec", "/vm-clock-nsec"],
            why: "its drive 'ide-hd0' with the internal snapshot 'snapshot0'",
            ..Default::default()
        },
        "blockdev-add" if ret.is_some() && args.get("driver").is_some() => {
            let file = s("/file/filename");
            let fmt = s("/driver");
            let mut c = Context {
                images: vec![if fmt == "raw" {
                    raw(leak(file), G)
                } else {
                    qcow2(leak(file), G)
                }],
                why: "its host's image",
                ..Default::default()
            };
            if s("/backing/file/filename") == "/dev/fdset/4" {
                c.images.push(raw("backing.raw", G));
                c.fd_image = Some("backing.raw");
                c.setup.push(("add-fd", json!({"fdset-id": 4})));
                // The backing opens read-only with its parent's cache.direct: the set's
                // descriptor must be one with O_RDONLY | O_DIRECT.
                c.why = "its host's image and a raw image passed in fdset 4, opened read-only \
                         with O_DIRECT";
            }
            c
        }
        "blockdev-snapshot" if s("/overlay") == "node1534" => Context {
            images: vec![qcow2("ide-hd0.qcow2", G), qcow2("hd1.qcow2", G)],
            options: vec![drive("ide-hd0", "ide-hd0.qcow2", "")],
            setup: vec![(
                "blockdev-add",
                json!({"driver": "qcow2", "node-name": "node1534",
                       "file": {"driver": "file", "filename": "hd1.qcow2"}, "backing": null}),
            )],
            why: "its drive 'ide-hd0' and the node 'node1534' added for it",
            ..Default::default()
        },
        "blockdev-backup" => Context {
            images: vec![qcow2("src.qcow2", G), qcow2("tgt.qcow2", G)],
            // The job takes its id from the drive: a node no drive has would need an explicit one.
            options: vec![drive("src-id", "src.qcow2", "")],
            setup: vec![node("tgt-id", "tgt.qcow2")],
            why: "its drive 'src-id' and the node 'tgt-id'",
            ..Default::default()
        },
        "block-dirty-bitmap-add" | "block-dirty-bitmap-remove" | "block-dirty-bitmap-clear"
            if s("/node") == "drive0" =>
        {
            Context {
                images: vec![qcow2("drive0.qcow2", G)],
                options: vec![drive("drive0", "drive0.qcow2", "")],
                setup: if cmd == "block-dirty-bitmap-add" {
                    vec![]
                } else {
                    vec![(
                        "block-dirty-bitmap-add",
                        json!({"node": "drive0", "name": "bitmap0"}),
                    )]
                },
                why: "its drive 'drive0' (with its bitmap 'bitmap0')",
                ..Default::default()
            }
        }
        "blockdev-mirror" => Context {
            images: vec![qcow2("ide-hd0.qcow2", G), qcow2("target0.qcow2", G)],
            options: vec![drive("ide-hd0", "ide-hd0.qcow2", "")],
            setup: vec![node("target0", "target0.qcow2")],
            why: "its drive 'ide-hd0' and node 'target0'",
            ..Default::default()
        },
        "block_set_io_throttle"
        | "blockdev-open-tray"
        | "blockdev-close-tray"
        | "x-blockdev-remove-medium"
        | "eject"
            if matches!(s("/id"), "ide0-1-0" | "ide1-0-1") =>
        {
            let id = s("/id");
            let mut c = Context {
                images: vec![raw("cd.iso", 64 << 20)],
                options: vec![
                    drive("cd0", "cd.iso", ",media=cdrom,readonly=on"),
                    ("device", format!("ide-cd,drive=cd0,id={id}")),
                ],
                why: "its CD-ROM drive",
                ..Default::default()
            };
            if cmd == "x-blockdev-remove-medium" && ret.is_some() {
                c.setup.push(("blockdev-open-tray", json!({"id": id})));
            }
            c
        }
        "x-blockdev-insert-medium" if s("/id") == "ide0-1-0" => Context {
            images: vec![raw("cd.iso", 64 << 20), raw("fedora.iso", 64 << 20)],
            options: vec![
                drive("cd0", "cd.iso", ",media=cdrom,readonly=on"),
                ("device", "ide-cd,drive=cd0,id=ide0-1-0".into()),
            ],
            setup: vec![
                (
                    "blockdev-add",
                    json!({"node-name": s("/node-name"), "driver": "raw",
                           "file": {"driver": "file", "filename": "fedora.iso"}}),
                ),
                ("blockdev-open-tray", json!({"id": "ide0-1-0"})),
                ("x-blockdev-remove-medium", json!({"id": "ide0-1-0"})),
            ],
            why: "its CD-ROM drive, its tray opened and emptied, and the node added for it",
            ..Default::default()
        },
        "change" if s("/device") == "ide1-cd0" => Context {
            images: vec![raw("/srv/images/Fedora-12-x86_64-DVD.iso", 64 << 20)],
            why: "its host's DVD image (a medium that does not open is refused)",
            ..Default::default()
        },
        "blockdev-change-medium" if s("/id") == "ide0-1-0" => Context {
            images: vec![raw("/srv/images/Fedora-12-x86_64-DVD.iso", 64 << 20)],
            options: vec![
                ("drive", "if=none,id=cd0,media=cdrom".into()),
                ("device", "ide-cd,drive=cd0,id=ide0-1-0".into()),
            ],
            why: "its CD-ROM drive and its host's DVD image",
            ..Default::default()
        },
        "blockdev-change-medium" if s("/id") == "floppyA" => Context {
            images: vec![
                raw("/srv/images/ro.img", 1474560),
                raw("floppy.img", 1474560),
            ],
            options: vec![
                drive("fd0", "floppy.img", ""),
                ("device", "floppy,drive=fd0,id=floppyA".into()),
            ],
            why: "its floppy drive and its host's image",
            ..Default::default()
        },
        "block-set-write-threshold" if s("/node-name") == "mydev" => Context {
            images: vec![qcow2("mydev.qcow2", 32 * G)],
            setup: vec![node("mydev", "mydev.qcow2")],
            why: "its node 'mydev'",
            ..Default::default()
        },
        "x-blockdev-set-iothread" => Context {
            images: vec![qcow2("disk1.qcow2", G)],
            // The default machine has the I/O thread 'iothread0'.
            setup: vec![node("disk1", "disk1.qcow2")],
            why: "its node 'disk1' and I/O thread 'iothread0'",
            ..Default::default()
        },
        "x-blockdev-change" if s("/parent") == "disk1" && s("/node") == "new_node" => Context {
            images: vec![raw("test.raw", G)],
            setup: vec![
                quorum("disk1", 1),
                (
                    "blockdev-add",
                    json!({"driver": "raw", "node-name": "new_node",
                           "file": {"driver": "file", "filename": "test.raw"}}),
                ),
            ],
            why: "its quorum node 'disk1' and the node 'new_node' added for it",
            ..Default::default()
        },
        "x-blockdev-change" if s("/parent") == "disk1" && s("/child") == "children.1" => Context {
            setup: vec![quorum("disk1", 2)],
            why: "its quorum node 'disk1' with two children",
            ..Default::default()
        },
        "blockdev-del" if s("/node-name") == "node0" => Context {
            images: vec![qcow2("/tmp/test.qcow2", G)],
            setup: vec![(
                "blockdev-add",
                json!({"driver": "qcow2", "node-name": "node0",
                       "file": {"driver": "file", "filename": "/tmp/test.qcow2"}}),
            )],
            why: "the node 'node0' added from its host's /tmp/test.qcow2",
            ..Default::default()
        },
        "remove-fd" => Context {
            setup: vec![("add-fd", json!({"fdset-id": args["fdset-id"]}))],
            from_setup: vec![("/fd", 0, "/fd")],
            why: "the descriptor number add-fd gave",
            ..Default::default()
        },
        "query-rx-filter" if s("/name") == "vnet0" => {
            let r = &ret?[0];
            Context {
                // (The card itself is added by the replay's own set-up.)
                setup: vec![(
                    "__org.qmpkit_guest-rx-filter",
                    json!({"name": "vnet0", "promiscuous": r["promiscuous"],
                           "main-mac": r["main-mac"],
                           "multicast-table": r["multicast-table"],
                           "vlan-table": r["vlan-table"]}),
                )],
                why: "its card 'vnet0' as its guest's driver programmed it",
                ..Default::default()
            }
        }
        "query-rocker" | "query-rocker-ports" | "query-rocker-of-dpa-groups" => Context {
            setup: vec![
                ("netdev_add", json!({"type": "user", "id": "sw1n1"})),
                ("netdev_add", json!({"type": "user", "id": "sw1n2"})),
                (
                    "device_add",
                    match ret?.get("id") {
                        Some(id) => json!({"driver": "rocker", "name": "sw1",
                                           "ports": ["sw1n1", "sw1n2"], "switch_id": id}),
                        None => json!({"driver": "rocker", "name": "sw1",
                                       "ports": ["sw1n1", "sw1n2"]}),
                    },
                ),
            ],
            why: "its rocker switch 'sw1' with two ports and its switch id",
            ..Default::default()
        },
        // Its drives' statistics (sd0 is a drive this machine does not have).
        "query-blockstats" => Context {
            why: "its drives and their I/O counters",
            ..Default::default()
        },
        "client_migrate_info" => Context {
            options: vec![("spice", "port=5900,disable-ticketing=on".into())],
            why: "its SPICE server",
            ..Default::default()
        },
        "migrate-incoming" => Context {
            options: vec![("incoming", "defer".into())],
            why: "started with -incoming defer",
            ..Default::default()
        },
        "query-migrate-capabilities" => Context {
            setup: vec![(
                "migrate-set-capabilities",
                json!({"capabilities": [{"capability": "events", "state": true}]}),
            )],
            why: "the capability 'events' enabled",
            ..Default::default()
        },
        // Their replies carry nothing of the migration's.
        "migrate-start-postcopy" => Context {
            own: vec![],
            ..migrating(
                &["postcopy-ram"],
                1_000_000_000,
                "migrating with postcopy-ram enabled",
            )
        },
        "migrate-continue" => Context {
            own: vec![],
            ..migrating(
                &["pause-before-switchover"],
                20_000_000_000,
                "its migration waiting in pre-switchover",
            )
        },
        "query-migrate" => match ret?["status"].as_str()? {
            "failed" => Context {
                setup: vec![(
                    "migrate",
                    json!({"uri": "unix:/nonexistent/qmpkit-no-such-socket"}),
                )],
                wait_ns: 1_000_000_000,
                // Why this machine's migration failed.
                own: vec!["/error-desc"],
                why: "a migration that failed",
                ..Default::default()
            },
            "completed" => Context {
                settle_status: Some("completed"),
                ..migrating(&[], 60_000_000_000, "a completed migration")
            },
            _ if ret?.get("xbzrle-cache").is_some() => {
                migrating(&["xbzrle"], 1_000_000_000, "migrating with xbzrle")
            }
            _ => migrating(&[], 1_000_000_000, "migrating"),
        },
        _ => return None,
    };
    Some(c)
}

/// The drive `virtio0` on an overlay of `/tmp/snap1.qcow2`, itself an overlay of `base`.
fn virtio0_chain(base: &'static str, why: &'static str) -> Context {
    Context {
        images: vec![
            qcow2(base, G),
            overlay("/tmp/snap1.qcow2", base, G),
            overlay("/tmp/active.qcow2", "/tmp/snap1.qcow2", G),
        ],
        drop_drives: vec!["virtio0"],
        options: vec![(
            "drive",
            "file=/tmp/active.qcow2,if=virtio,id=virtio0".into(),
        )],
        why,
        ..Default::default()
    }
}

/// Migrating to a process that reads the stream, with the capabilities `caps` on, at a
/// bandwidth that keeps it active for a while, `wait_ns` into it.
fn migrating(caps: &[&str], wait_ns: u64, why: &'static str) -> Context {
    let caps: Vec<Value> = caps
        .iter()
        .map(|c| json!({"capability": c, "state": true}))
        .collect();
    Context {
        setup: vec![
            ("migrate-set-capabilities", json!({"capabilities": caps})),
            ("migrate_set_speed", json!({"value": 4 << 20})),
            ("migrate", json!({"uri": "exec:cat > /dev/null"})),
        ],
        wait_ns,
        // The migration's counters and times.
        own: vec![
            "/ram/*",
            "/total-time",
            "/setup-time",
            "/expected-downtime",
            "/downtime",
            "/xbzrle-cache/*",
        ],
        why,
        ..Default::default()
    }
}

/// A name of the documented request, kept for the test's duration.
fn leak(s: &str) -> &'static str {
    Box::leak(s.to_string().into_boxed_str())
}
