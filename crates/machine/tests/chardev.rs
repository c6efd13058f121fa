//! Character devices that really exist: `chardev-add` of ring buffers,
//! files, host pseudo-terminals and the null device; `ringbuf-write` /
//! `ringbuf-read`; `query-chardev`, `query-chardev-backends`,
//! `chardev-remove`. Every request goes through the server's validation
//! of arguments as a client's would, and every reply is checked against
//! the command's return type before its exact value is compared. The
//! expected errors and values are what qemu-storage-daemon 10.0.2
//! answered to the same requests.

mod common;

use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::sync::Arc;

use common::{schema, tmp};
use qmpkit_machine::{Cx, Machine, MachineConfig};
use qmpkit_schema::model::EntityKind;
use qmpkit_schema::Schema;
use qmpkit_server::validate::{validate_args, validate_value, ValidateOptions};
use serde_json::{json, Value};

/// A machine on its own schema, spoken to as a QMP client would.
struct Client {
    m: Machine,
    schema: Arc<Schema>,
}

impl Client {
    fn new() -> Client {
        let schema = schema();
        let m = Machine::new(Arc::new(MachineConfig::default_machine()), schema.clone());
        Client { m, schema }
    }

    /// `{"return": …}` or `{"error": {"class", "desc"}}`, as on the wire.
    fn cmd(&mut self, name: &str, args: Value) -> Value {
        let opts = ValidateOptions {
            qemu_version: Some((2, 12, 0)),
        };
        let id = self.schema.lookup(name).expect("command in the schema");
        let err = |e: qmpkit_wire::QmpError| json!({"error": {"class": e.class.as_str(), "desc": e.desc}});
        let args = match validate_args(&self.schema, id, Some(&args), &opts) {
            Ok(a) => a,
            Err(e) => return err(e),
        };
        let mut cx = Cx {
            now_ns: self.m.now_ns,
            ..Default::default()
        };
        match self.m.execute(name, &args, &mut cx) {
            Some(Ok(v)) => {
                if let EntityKind::Command(c) = &self.schema.entity(id).kind {
                    if let Some(rt) = c.ret_type {
                        if let Err(e) = validate_value(&self.schema, rt, None, &v, &opts, None) {
                            panic!("{name}: reply {v} does not validate: {}", e.desc);
                        }
                    }
                }
                json!({ "return": v })
            }
            Some(Err(e)) => err(e),
            None => panic!("{name}: no handler"),
        }
    }

    fn ok(&mut self, name: &str, args: Value) -> Value {
        let r = self.cmd(name, args.clone());
        match r.get("return") {
            Some(v) => v.clone(),
            None => panic!("{name} {args}: {r}"),
        }
    }

    fn error(&mut self, name: &str, args: Value) -> String {
        let r = self.cmd(name, args.clone());
        assert_eq!(r["error"]["class"], "GenericError", "{name} {args}: {r}");
        r["error"]["desc"].as_str().unwrap_or_default().to_string()
    }

    fn write(&mut self, dev: &str, data: &str, format: &str) -> Value {
        self.cmd(
            "ringbuf-write",
            json!({"device": dev, "data": data, "format": format}),
        )
    }

    fn read(&mut self, dev: &str, size: i64, format: &str) -> Value {
        self.ok(
            "ringbuf-read",
            json!({"device": dev, "size": size, "format": format}),
        )
    }

    /// `(label, filename, frontend-open)` of every chardev.
    fn chardevs(&mut self) -> Vec<(String, String, bool)> {
        let v = self.ok("query-chardev", json!({}));
        v.as_array()
            .into_iter()
            .flatten()
            .map(|c| {
                (
                    c["label"].as_str().unwrap_or_default().to_string(),
                    c["filename"].as_str().unwrap_or_default().to_string(),
                    c["frontend-open"].as_bool().unwrap_or(true),
                )
            })
            .collect()
    }

    fn chardev(&mut self, label: &str) -> Option<(String, bool)> {
        self.chardevs()
            .into_iter()
            .find(|c| c.0 == label)
            .map(|c| (c.1, c.2))
    }

    fn add(&mut self, id: &str, ty: &str, data: Value) -> Value {
        self.cmd(
            "chardev-add",
            json!({"id": id, "backend": {"type": ty, "data": data}}),
        )
    }
}

#[test]
fn ringbuf_round_trip_in_both_formats_with_wrap_around() {
    let mut c = Client::new();
    assert_eq!(
        c.add("r", "ringbuf", json!({"size": 8})),
        json!({"return": {}})
    );
    assert_eq!(c.chardev("r"), Some(("ringbuf".into(), false)));
    // Eleven bytes into eight: the three oldest are overwritten.
    assert_eq!(c.write("r", "abcdefghijk", "utf8"), json!({"return": {}}));
    assert_eq!(c.read("r", 100, "utf8"), "defghijk");
    assert_eq!(c.read("r", 100, "utf8"), "");
    // Partial reads take the oldest bytes; the rest stay.
    c.write("r", "abcdef", "utf8");
    assert_eq!(c.read("r", 2, "utf8"), "ab");
    assert_eq!(c.read("r", 2, "base64"), "Y2Q=");
    // Wrapping while not empty: "ef" + "1234567" keeps the last eight.
    c.write("r", "1234567", "utf8");
    assert_eq!(c.read("r", 100, "utf8"), "f1234567");
    // base64 in and out, binary bytes included.
    assert_eq!(c.write("r", "AP+A", "base64"), json!({"return": {}}));
    assert_eq!(c.read("r", 100, "base64"), "AP+A");
    // A group cut short is dropped, as GLib's decoder does.
    c.write("r", "aGVsbG8", "base64");
    assert_eq!(c.read("r", 100, "utf8"), "hel");
    // Newlines are skipped; padding ends a group early.
    c.write("r", "aGVs\nbG8=", "base64");
    assert_eq!(c.read("r", 100, "utf8"), "hello");
    // Wrap-around in base64: 10 bytes into 8.
    c.write("r", "MDEyMzQ1Njc4OQ==", "base64");
    assert_eq!(c.read("r", 100, "utf8"), "23456789");
    // Format defaults to utf8.
    c.write("r", "héllo", "utf8");
    assert_eq!(
        c.ok("ringbuf-read", json!({"device": "r", "size": 100})),
        "héllo"
    );
    // The alias `memory` is a ring buffer too, with its own file name.
    assert_eq!(
        c.add("m", "memory", json!({"size": 4})),
        json!({"return": {}})
    );
    assert_eq!(c.chardev("m"), Some(("memory".into(), false)));
    c.write("m", "wxyz!", "utf8");
    assert_eq!(c.read("m", 100, "utf8"), "xyz!");
    // The default capacity is 64 KiB.
    assert_eq!(c.add("d", "ringbuf", json!({})), json!({"return": {}}));
    c.write("d", &"x".repeat(70_000), "utf8");
    assert_eq!(
        c.read("d", 100_000, "utf8").as_str().map(str::len),
        Some(65_536)
    );
}

#[test]
fn ringbuf_text_as_qemu_writes_it() {
    let mut c = Client::new();
    c.add("r", "ringbuf", json!({"size": 64}));
    // Invalid UTF-8 reads back as U+FFFD per ill-formed sequence.
    c.write("r", "/4E=", "base64");
    assert_eq!(c.read("r", 100, "utf8"), "\u{FFFD}\u{FFFD}");
    c.write("r", "QYBC", "base64");
    assert_eq!(c.read("r", 100, "utf8"), "A\u{FFFD}B");
    // A NUL byte ends the text; the bytes after it are consumed anyway.
    c.write("r", "AAEC", "base64");
    assert_eq!(c.read("r", 100, "utf8"), "");
    assert_eq!(c.read("r", 100, "base64"), "");
    // U+0000 written as text is stored as C0 80 and read back as U+0000.
    c.write("r", "a\u{0}b", "utf8");
    assert_eq!(c.read("r", 100, "base64"), "YcCAYg==");
    c.write("r", "a\u{0}b", "utf8");
    assert_eq!(c.read("r", 100, "utf8"), "a\u{0}b");
    // A multi-byte character split by the size of a read.
    c.write("r", "é", "utf8");
    assert_eq!(c.read("r", 1, "utf8"), "\u{FFFD}");
    assert_eq!(c.read("r", 1, "utf8"), "\u{FFFD}");
}

#[test]
fn ringbuf_errors_in_qemus_words() {
    let mut c = Client::new();
    c.add("r", "ringbuf", json!({"size": 8}));
    c.write("r", "ab", "utf8");
    assert_eq!(
        c.error(
            "ringbuf-write",
            json!({"device": "r", "data": "not base64!!", "format": "base64"})
        ),
        "Base64 data contains invalid characters"
    );
    assert_eq!(
        c.error(
            "ringbuf-write",
            json!({"device": "r", "data": "aGVs bG8=", "format": "base64"})
        ),
        "Base64 data contains invalid characters"
    );
    // Nothing of a refused write went in.
    assert_eq!(c.read("r", 100, "utf8"), "ab");
    for size in [0, -1] {
        assert_eq!(
            c.error("ringbuf-read", json!({"device": "r", "size": size})),
            "size must be greater than zero"
        );
    }
    assert_eq!(
        c.error("ringbuf-write", json!({"device": "nope", "data": "x"})),
        "Device 'nope' not found"
    );
    assert_eq!(
        c.error("ringbuf-read", json!({"device": "nope", "size": 1})),
        "Device 'nope' not found"
    );
    c.add("n", "null", json!({}));
    assert_eq!(
        c.error("ringbuf-write", json!({"device": "n", "data": "x"})),
        "n is not a ringbuf device"
    );
    // A configured chardev that is not a ring buffer.
    assert_eq!(
        c.error("ringbuf-read", json!({"device": "serial0", "size": 1})),
        "serial0 is not a ringbuf device"
    );
    // The format must be one of DataFormat's values (the server refuses).
    let r = c.cmd(
        "ringbuf-write",
        json!({"device": "r", "data": "x", "format": "hex"}),
    );
    assert_eq!(r["error"]["class"], "GenericError");
    assert!(r.get("return").is_none());
}

#[test]
fn chardev_add_errors_in_qemus_words() {
    let mut c = Client::new();
    assert_eq!(
        c.add("r1", "ringbuf", json!({"size": 8})),
        json!({"return": {}})
    );
    assert_eq!(
        c.add("r1", "null", json!({}))["error"]["desc"],
        "Chardev with id 'r1' already exists"
    );
    // A configured chardev's id is taken too.
    assert_eq!(
        c.add("serial0", "null", json!({}))["error"]["desc"],
        "Chardev with id 'serial0' already exists"
    );
    for size in [7, -4, 3, 65535] {
        assert_eq!(
            c.add("r2", "ringbuf", json!({ "size": size }))["error"]["desc"],
            "Failed to add chardev 'r2': size of ringbuf chardev must be power of two",
            "size {size}"
        );
    }
    assert_eq!(c.chardev("r2"), None);
    // Zero passes the check: a ring that keeps nothing.
    assert_eq!(
        c.add("z", "ringbuf", json!({"size": 0})),
        json!({"return": {}})
    );
    c.write("z", "abc", "utf8");
    assert_eq!(c.read("z", 10, "utf8"), "");
    let missing = tmp("chardev-no-such-dir/out.log");
    let _ = std::fs::remove_dir_all(missing.parent().unwrap());
    let missing = missing.to_string_lossy().into_owned();
    assert_eq!(
        c.add("f", "file", json!({"out": missing}))["error"]["desc"],
        format!("Failed to add chardev 'f': Could not open '{missing}': No such file or directory")
    );
    // `out` is opened (and created) before `in`.
    let out = tmp("chardev-out-before-in.log");
    let _ = std::fs::remove_file(&out);
    let no_in = tmp("chardev-no-such-input").to_string_lossy().into_owned();
    assert_eq!(
        c.add("f", "file", json!({"out": out, "in": no_in}))["error"]["desc"],
        format!("Failed to add chardev 'f': Could not open '{no_in}': No such file or directory")
    );
    assert!(out.exists());
    assert_eq!(c.chardev("f"), None);
    // Back ends the machine cannot make say so.
    let r = c.add("v", "vc", json!({}));
    assert_eq!(
        r["error"]["desc"],
        "Chardev backend 'vc' is not implemented by this simulated machine"
    );
    assert_eq!(c.chardev("v"), None);
}

#[test]
fn file_chardev_creates_truncates_and_appends() {
    let mut c = Client::new();
    let path = tmp("chardev-file.log");
    std::fs::write(&path, "old contents").unwrap();
    let p = path.to_string_lossy().into_owned();
    assert_eq!(c.add("f", "file", json!({"out": p})), json!({"return": {}}));
    // Truncated at open, as QEMU opens it.
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "");
    assert_eq!(c.chardev("f"), Some(("file".into(), false)));
    assert_eq!(
        c.ok("qom-list", json!({"path": "/chardevs"}))
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "f" && p["type"] == "child<chardev-file>"),
        true
    );
    // The guest's output lands in the file.
    c.ok(
        "__org.qmpkit_chardev-write",
        json!({"id": "f", "data": "boot\n"}),
    );
    c.ok(
        "__org.qmpkit_chardev-write",
        json!({"id": "f", "data": "ok\n"}),
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "boot\nok\n");
    assert_eq!(c.ok("chardev-remove", json!({"id": "f"})), json!({}));
    assert_eq!(c.chardev("f"), None);
    // With append, what is there stays; a new file is created.
    std::fs::write(&path, "kept").unwrap();
    assert_eq!(
        c.add("g", "file", json!({"out": p, "append": true})),
        json!({"return": {}})
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "kept");
    c.ok(
        "__org.qmpkit_chardev-write",
        json!({"id": "g", "data": "+more"}),
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "kept+more");
    let fresh = tmp("chardev-created.log");
    let _ = std::fs::remove_file(&fresh);
    assert_eq!(
        c.add("h", "file", json!({"out": fresh, "in": p})),
        json!({"return": {}})
    );
    assert!(fresh.is_file());
}

#[test]
fn pty_chardev_is_a_real_terminal() {
    let mut c = Client::new();
    let r = c.add("p", "pty", json!({}));
    let path = r["return"]["pty"].as_str().expect("pty path").to_string();
    assert!(path.starts_with("/dev/pts/"), "{path}");
    assert_eq!(c.chardev("p"), Some((format!("pty:{path}"), false)));
    // The path is a terminal anyone can open while the chardev exists.
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc_o_noctty())
        .open(&path)
        .unwrap_or_else(|e| panic!("open {path}: {e}"));
    assert!(is_tty(&f), "{path} is not a terminal");
    // What the guest prints reaches whoever reads the terminal, unchanged
    // (raw mode: no CR added before the newline).
    assert_eq!(
        c.ok(
            "__org.qmpkit_chardev-write",
            json!({"id": "p", "data": "login: \u{e9}\n"})
        ),
        json!({})
    );
    let mut f = f;
    let mut got = [0u8; 64];
    let n = f.read(&mut got).expect("read the terminal");
    assert_eq!(&got[..n], "login: \u{e9}\n".as_bytes());
    drop(f);
    // Two ptys are two terminals.
    let r2 = c.add("p2", "pty", json!({}));
    assert_ne!(r2["return"]["pty"].as_str(), Some(path.as_str()));
    // Removed, the terminal is gone: the path no longer opens.
    assert_eq!(c.ok("chardev-remove", json!({"id": "p"})), json!({}));
    assert_eq!(c.chardev("p"), None);
    let mut buf = [0u8; 1];
    let gone = match std::fs::File::open(&path) {
        Err(_) => true,
        Ok(mut f) => f.read(&mut buf).is_err(),
    };
    assert!(gone, "{path} still usable after chardev-remove");
}

fn libc_o_noctty() -> i32 {
    0o400 // O_NOCTTY on Linux
}

fn is_tty(f: &std::fs::File) -> bool {
    use std::io::IsTerminal;
    f.is_terminal()
}

#[test]
fn query_backends_and_remove() {
    let mut c = Client::new();
    let names: Vec<String> = c
        .ok("query-chardev-backends", json!({}))
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["name"].as_str().unwrap_or_default().to_string())
        .collect();
    for want in ["file", "null", "pty", "socket", "ringbuf", "memory", "vc"] {
        assert!(names.iter().any(|n| n == want), "{want} missing: {names:?}");
    }
    assert!(!names.iter().any(|n| n == "console"), "{names:?}");
    assert_eq!(names.len(), 19, "{names:?}");
    // Added, listed, removed.
    assert_eq!(c.add("n", "null", json!({})), json!({"return": {}}));
    assert_eq!(c.chardev("n"), Some(("null".into(), false)));
    assert_eq!(c.ok("chardev-send-break", json!({"id": "n"})), json!({}));
    assert_eq!(c.ok("chardev-remove", json!({"id": "n"})), json!({}));
    assert_eq!(
        c.error("chardev-remove", json!({"id": "n"})),
        "Chardev 'n' not found"
    );
    // The id is free again, for any back end.
    assert_eq!(
        c.add("n", "ringbuf", json!({"size": 2})),
        json!({"return": {}})
    );
    c.write("n", "abc", "utf8");
    assert_eq!(c.read("n", 10, "utf8"), "bc");
    // A chardev a front end uses is busy.
    assert_eq!(
        c.error("chardev-remove", json!({"id": "serial0"})),
        "Chardev 'serial0' is busy"
    );
}

#[test]
fn configured_ring_buffers_hold_data_too() {
    let schema = schema();
    let mut cfg = MachineConfig::default_machine();
    cfg.apply_option("chardev", Some("ringbuf,id=log0,size=4"))
        .expect("-chardev");
    cfg.apply_option("chardev", Some("memory,id=mem0"))
        .expect("-chardev");
    let mut c = Client {
        m: Machine::new(Arc::new(cfg), schema.clone()),
        schema,
    };
    assert_eq!(c.chardev("log0"), Some(("ringbuf".into(), false)));
    assert_eq!(c.chardev("mem0"), Some(("memory".into(), false)));
    c.write("log0", "123456", "utf8");
    assert_eq!(c.read("log0", 10, "utf8"), "3456");
    c.write("mem0", "x", "utf8");
    // The guest's output goes into the ring as well.
    c.ok(
        "__org.qmpkit_chardev-write",
        json!({"id": "mem0", "data": "y"}),
    );
    assert_eq!(c.read("mem0", 10, "base64"), "eHk=");
    assert_eq!(
        c.error(
            "__org.qmpkit_chardev-write",
            json!({"id": "nope", "data": "x"})
        ),
        "Chardev 'nope' not found"
    );
    assert_eq!(
        c.error(
            "__org.qmpkit_chardev-write",
            json!({"id": "serial0", "data": "x"})
        ),
        "Output to chardev 'serial0' is not implemented by this simulated machine"
    );
    assert_eq!(c.ok("chardev-remove", json!({"id": "log0"})), json!({}));
    assert_eq!(
        c.error("ringbuf-read", json!({"device": "log0", "size": 1})),
        "Device 'log0' not found"
    );
}
