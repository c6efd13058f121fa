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
use std::io::Write;
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::Duration;

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
        self.cmd_fds(name, args, Vec::new())
    }

    /// [`Client::cmd`] with descriptors passed along (SCM_RIGHTS).
    fn cmd_fds(&mut self, name: &str, args: Value, fds: Vec<std::os::fd::OwnedFd>) -> Value {
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
            fds,
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

impl Client {
    fn with(f: impl FnOnce(&mut MachineConfig)) -> Client {
        let schema = schema();
        let mut cfg = MachineConfig::default_machine();
        f(&mut cfg);
        let m = Machine::new(Arc::new(cfg), schema.clone());
        Client { m, schema }
    }

    fn filename(&mut self, label: &str) -> String {
        self.chardev(label).map(|c| c.0).unwrap_or_default()
    }

    /// What the guest's front end reads from chardev `id`.
    fn guest_read(&mut self, id: &str) -> String {
        let r = self.ok("__org.qmpkit_chardev-read", json!({ "id": id }));
        r["data"].as_str().unwrap_or_default().to_string()
    }

    fn events(&mut self) -> Vec<(String, Value)> {
        self.m
            .take_raw_events()
            .into_iter()
            .map(|(n, d)| (n, d.unwrap_or(Value::Null)))
            .collect()
    }
}

fn sock_path(name: &str) -> String {
    let p = tmp(name);
    let _ = std::fs::remove_file(&p);
    p.to_string_lossy().into_owned()
}

/// Read until `want` bytes came (or a second passed).
fn read_n(r: &mut impl Read, want: usize) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    while got.len() < want {
        match r.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    got
}

/// Poll `f` until it holds (the other end of a socket is another thread's
/// kernel work: a moment may pass).
fn eventually(mut f: impl FnMut() -> bool) -> bool {
    for _ in 0..100 {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

#[test]
fn socket_chardev_listens_and_a_test_connects() {
    let mut c = Client::new();
    let path = sock_path("chardev-listen.sock");
    let r = c.add(
        "s1",
        "socket",
        json!({"addr": {"type": "unix", "data": {"path": path}}, "server": true, "wait": false}),
    );
    assert_eq!(r, json!({"return": {}}));
    // 2.12 spells the flag `,server`; nobody is connected yet.
    assert_eq!(c.filename("s1"), format!("disconnected:unix:{path},server"));
    let mut client = UnixStream::connect(&path).expect("the chardev listens");
    client
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    // Taken when the chardev is next used.
    assert_eq!(c.filename("s1"), format!("unix:{path},server"));
    c.ok(
        "__org.qmpkit_chardev-write",
        json!({"id": "s1", "data": "hello\n"}),
    );
    assert_eq!(read_n(&mut client, 6), b"hello\n");
    // What the client sends, the guest reads.
    client.write_all("typed é".as_bytes()).unwrap();
    let mut got = String::new();
    assert!(
        eventually(|| {
            got.push_str(&c.guest_read("s1"));
            got == "typed é"
        }),
        "{got:?}"
    );
    let r = c.ok(
        "__org.qmpkit_chardev-read",
        json!({"id": "s1", "format": "base64"}),
    );
    assert_eq!(r["data"], "");
    // The client hangs up: the socket listens again, and takes the next one.
    drop(client);
    assert!(eventually(|| c.filename("s1").starts_with("disconnected:")));
    let mut again = UnixStream::connect(&path).expect("listening again");
    again
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    c.ok(
        "__org.qmpkit_chardev-write",
        json!({"id": "s1", "data": "2nd"}),
    );
    assert_eq!(read_n(&mut again, 3), b"2nd");
    // Removed, the socket and its path are gone.
    assert_eq!(c.ok("chardev-remove", json!({"id": "s1"})), json!({}));
    assert!(!std::path::Path::new(&path).exists());
    assert!(UnixStream::connect(&path).is_err());
}

/// Adds a listening socket chardev `t` on a loopback port the system chooses, connects to it,
/// and checks its name before and after (`SCHEME:127.0.0.1:PORT,server=on`, as 6.0 and later
/// spell it): the port and the connected peer.
/// `extra`: more members of the socket's options.
fn listening_on_loopback(c: &mut Client, scheme: &str, extra: Value) -> (u16, std::net::TcpStream) {
    let port = listen_on_loopback(c, scheme, extra);
    let client = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    client
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let local = client.local_addr().unwrap().port();
    assert_eq!(
        c.filename("t"),
        format!("{scheme}:127.0.0.1:{port},server=on <-> 127.0.0.1:{local}")
    );
    (port, client)
}

/// Adds the listening socket chardev `t` of [`listening_on_loopback`]; its port.
fn listen_on_loopback(c: &mut Client, scheme: &str, extra: Value) -> u16 {
    let mut data = json!({"addr": {"type": "inet", "data": {"host": "127.0.0.1", "port": "0"}},
                          "server": true, "wait": false});
    data.as_object_mut()
        .unwrap()
        .extend(extra.as_object().cloned().unwrap_or_default());
    let r = c.add("t", "socket", data);
    assert_eq!(r, json!({"return": {}}));
    let name = c.filename("t");
    let port: u16 = name
        .strip_prefix(&format!("disconnected:{scheme}:127.0.0.1:"))
        .and_then(|p| p.strip_suffix(",server=on"))
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("{name}"));
    port
}

#[test]
fn tcp_socket_chardev_on_loopback() {
    let mut c = Client::with(|cfg| cfg.qemu_version = (10, 0, 2));
    let (port, mut client) = listening_on_loopback(&mut c, "tcp", json!({}));
    c.ok(
        "__org.qmpkit_chardev-write",
        json!({"id": "t", "data": "tcp!"}),
    );
    assert_eq!(read_n(&mut client, 4), b"tcp!");
    // The same port cannot be taken twice.
    let r = c.add(
        "t2",
        "socket",
        json!({"addr": {"type": "inet", "data": {"host": "127.0.0.1", "port": port.to_string()}},
               "server": true, "wait": false}),
    );
    assert_eq!(
        r["error"]["desc"],
        "Failed to add chardev 't2': Failed to find an available port: Address already in use"
    );
}

/// `telnet=on` (checked against qemu-system-x86_64 10.0.2): the name says `telnet:`, a new
/// peer is first sent QEMU's options (WILL ECHO, WILL SUPPRESS-GO-AHEAD, WILL BINARY,
/// DO BINARY), and the telnet commands it sends do not reach the guest (IAC IAC is 0xff).
#[test]
fn telnet_socket_chardev() {
    let mut c = Client::with(|cfg| cfg.qemu_version = (10, 0, 2));
    let (_, mut client) = listening_on_loopback(&mut c, "telnet", json!({"telnet": true}));
    assert_eq!(
        read_n(&mut client, 12),
        [0xff, 0xfb, 0x01, 0xff, 0xfb, 0x03, 0xff, 0xfb, 0x00, 0xff, 0xfd, 0x00]
    );
    // IAC DO ECHO, text, IAC NOP, IAC WONT BINARY, more text.
    client
        .write_all(b"\xff\xfd\x01hi \xff\xf1\xff\xfc\x00there")
        .unwrap();
    let mut got = String::new();
    assert!(eventually(|| {
        got.push_str(&c.guest_read("t"));
        got == "hi there"
    }));
    c.ok(
        "__org.qmpkit_chardev-write",
        json!({"id": "t", "data": "to the peer"}),
    );
    assert_eq!(read_n(&mut client, 11), b"to the peer");
}

#[test]
fn socket_chardev_connects_to_a_test_server() {
    let mut c = Client::new();
    let path = sock_path("chardev-connect.sock");
    let server = UnixListener::bind(&path).expect("bind");
    let r = c.add(
        "c1",
        "socket",
        json!({"addr": {"type": "unix", "data": {"path": path}}, "server": false}),
    );
    assert_eq!(r, json!({"return": {}}));
    let (mut conn, _) = server.accept().expect("the chardev connected");
    conn.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    assert_eq!(c.filename("c1"), format!("unix:{path}"));
    c.ok(
        "__org.qmpkit_chardev-write",
        json!({"id": "c1", "data": "up"}),
    );
    assert_eq!(read_n(&mut conn, 2), b"up");
    // QEMU's words for what cannot connect, and for options that clash.
    let missing = sock_path("chardev-nobody.sock");
    let r = c.add(
        "c2",
        "socket",
        json!({"addr": {"type": "unix", "data": {"path": missing}}, "server": false}),
    );
    assert_eq!(
        r["error"]["desc"],
        format!("Failed to add chardev 'c2': Failed to connect to '{missing}': No such file or directory")
    );
    let r = c.add(
        "c2",
        "socket",
        json!({"addr": {"type": "inet", "data": {"host": "127.0.0.1", "port": "1"}}, "server": false}),
    );
    assert_eq!(
        r["error"]["desc"],
        "Failed to add chardev 'c2': Failed to connect to '127.0.0.1:1': Connection refused"
    );
    let r = c.add(
        "c2",
        "socket",
        json!({"addr": {"type": "unix", "data": {"path": missing}}, "server": true, "reconnect": 5}),
    );
    assert_eq!(
        r["error"]["desc"],
        "Failed to add chardev 'c2': 'reconnect' option is incompatible with socket in server listen mode"
    );
    let r = c.add(
        "c2",
        "socket",
        json!({"addr": {"type": "unix", "data": {"path": path}}, "server": false, "wait": false}),
    );
    assert_eq!(
        r["error"]["desc"],
        "Failed to add chardev 'c2': 'wait' option is incompatible with socket in client connect mode"
    );
    let r = c.add(
        "c2",
        "socket",
        json!({"addr": {"type": "fd", "data": {"str": "nofd"}}, "server": false}),
    );
    assert_eq!(
        r["error"]["desc"],
        "Failed to add chardev 'c2': File descriptor named 'nofd' has not been found"
    );
    let bad_dir = "/nonexistent-qmpkit-dir/x.sock";
    let r = c.add(
        "c2",
        "socket",
        json!({"addr": {"type": "unix", "data": {"path": bad_dir}}, "server": true, "wait": false}),
    );
    assert_eq!(
        r["error"]["desc"],
        format!("Failed to add chardev 'c2': Failed to bind socket to {bad_dir}: No such file or directory")
    );
    assert_eq!(c.chardev("c2"), None);
    // A client with `reconnect` is made while nobody listens, and connects
    // once somebody does.
    let later = sock_path("chardev-later.sock");
    let r = c.add(
        "c3",
        "socket",
        json!({"addr": {"type": "unix", "data": {"path": later}}, "server": false, "reconnect": 1}),
    );
    assert_eq!(r, json!({"return": {}}));
    assert_eq!(c.filename("c3"), format!("disconnected:unix:{later}"));
    let l2 = UnixListener::bind(&later).expect("bind");
    assert_eq!(c.filename("c3"), format!("unix:{later}"));
    drop(l2);
}

#[test]
fn pty_chardev_carries_both_ways() {
    let mut c = Client::new();
    let r = c.add("p", "pty", json!({}));
    let path = r["return"]["pty"].as_str().expect("pty path").to_string();
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc_o_noctty())
        .open(&path)
        .unwrap_or_else(|e| panic!("open {path}: {e}"));
    c.ok(
        "__org.qmpkit_chardev-write",
        json!({"id": "p", "data": "$ "}),
    );
    assert_eq!(read_n(&mut f, 2), b"$ ");
    // What the user types on the terminal, the guest reads.
    f.write_all(b"ls\n").unwrap();
    let mut got = String::new();
    assert!(
        eventually(|| {
            got.push_str(&c.guest_read("p"));
            got == "ls\n"
        }),
        "{got:?}"
    );
    assert_eq!(
        c.error("__org.qmpkit_chardev-read", json!({"id": "nope"})),
        "Chardev 'nope' not found"
    );
}

#[test]
fn chardev_change_swaps_the_back_end() {
    let mut c = Client::with(|cfg| {
        cfg.apply_option("chardev", Some("ringbuf,id=cs0"))
            .expect("-chardev");
        cfg.apply_option("device", Some("virtio-serial-pci,id=vs0"))
            .expect("-device");
        cfg.apply_option(
            "device",
            Some("virtserialport,chardev=cs0,id=port0,name=org.test.0"),
        )
        .expect("-device");
    });
    c.add("r", "ringbuf", json!({"size": 4}));
    let r = c.cmd(
        "chardev-change",
        json!({"id": "r", "backend": {"type": "null", "data": {}}}),
    );
    assert_eq!(r, json!({"return": {}}));
    assert_eq!(c.chardev("r"), Some(("null".into(), false)));
    assert_eq!(
        c.error("ringbuf-read", json!({"device": "r", "size": 1})),
        "r is not a ringbuf device"
    );
    let r = c.cmd(
        "chardev-change",
        json!({"id": "r", "backend": {"type": "pty", "data": {}}}),
    );
    let pty = r["return"]["pty"].as_str().unwrap_or_default().to_string();
    assert!(pty.starts_with("/dev/pts/"), "{r}");
    assert_eq!(c.chardev("r"), Some((format!("pty:{pty}"), false)));
    assert_eq!(
        c.error(
            "chardev-change",
            json!({"id": "nope", "backend": {"type": "null", "data": {}}})
        ),
        "Chardev 'nope' does not exist"
    );
    assert_eq!(
        c.error(
            "chardev-change",
            json!({"id": "cs0", "backend": {"type": "ringbuf", "data": {"size": 3}}})
        ),
        "Chardev user does not support chardev hotswap"
    );
    // A refused back end leaves the old one in place.
    assert_eq!(
        c.error(
            "chardev-change",
            json!({"id": "r", "backend": {"type": "ringbuf", "data": {"size": 3}}})
        ),
        "size of ringbuf chardev must be power of two"
    );
    assert_eq!(c.chardev("r"), Some((format!("pty:{pty}"), false)));
}

#[test]
fn guest_opens_a_virtio_serial_port() {
    let mut c = Client::with(|cfg| {
        cfg.apply_option("chardev", Some("ringbuf,id=cs0"))
            .expect("-chardev");
        cfg.apply_option("device", Some("virtio-serial-pci,id=vs0"))
            .expect("-device");
        cfg.apply_option(
            "device",
            Some("virtserialport,chardev=cs0,id=port0,name=org.test.0"),
        )
        .expect("-device");
    });
    c.events();
    // Nobody has the port open yet; its chardev is in use all the same.
    assert_eq!(c.chardev("cs0"), Some(("ringbuf".into(), false)));
    assert_eq!(
        c.error("chardev-remove", json!({"id": "cs0"})),
        "Chardev 'cs0' is busy"
    );
    let port = |open: bool| json!({"id": "port0", "open": open});
    assert_eq!(
        c.ok("__org.qmpkit_guest-serial-port", port(true)),
        json!({})
    );
    assert_eq!(
        c.events(),
        vec![(
            "VSERPORT_CHANGE".to_string(),
            json!({"id": "port0", "open": true})
        )]
    );
    assert_eq!(c.chardev("cs0"), Some(("ringbuf".into(), true)));
    c.ok("__org.qmpkit_guest-serial-port", port(false));
    assert_eq!(
        c.events(),
        vec![(
            "VSERPORT_CHANGE".to_string(),
            json!({"id": "port0", "open": false})
        )]
    );
    assert_eq!(c.chardev("cs0"), Some(("ringbuf".into(), false)));
    let r = c.cmd(
        "__org.qmpkit_guest-serial-port",
        json!({"id": "nope", "open": true}),
    );
    assert_eq!(r["error"]["class"], "DeviceNotFound");
    assert_eq!(
        c.error(
            "__org.qmpkit_guest-serial-port",
            json!({"id": "vs0", "open": true})
        ),
        "Device 'vs0' is not a virtio serial port"
    );
    assert!(c.events().is_empty());
}

#[test]
fn file_chardev_through_an_fd_set() {
    let mut c = Client::new();
    let path = tmp("chardev-fdset.log");
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .unwrap();
    let r = c.cmd_fds("add-fd", json!({"fdset-id": 3}), vec![f.into()]);
    assert_eq!(r["return"]["fdset-id"], 3, "{r}");
    assert_eq!(
        c.add("f", "file", json!({"out": "/dev/fdset/3"})),
        json!({"return": {}})
    );
    c.ok(
        "__org.qmpkit_chardev-write",
        json!({"id": "f", "data": "via fdset"}),
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "via fdset");
    assert_eq!(
        c.add("g", "file", json!({"out": "/dev/fdset/7"}))["error"]["desc"],
        "Failed to add chardev 'g': Could not open '/dev/fdset/7': No such file or directory"
    );
    // A set with no descriptor open for writing.
    let ro = std::fs::File::open(&path).unwrap();
    c.cmd_fds("add-fd", json!({"fdset-id": 4}), vec![ro.into()]);
    assert_eq!(
        c.add("g", "file", json!({"out": "/dev/fdset/4"}))["error"]["desc"],
        "Failed to add chardev 'g': Could not open '/dev/fdset/4': Permission denied"
    );
}

/// `tn3270=on` (checked against qemu-system-x86_64 10.0.2): the name says `tcp:`, and a new
/// peer is first sent QEMU's TN3270 negotiation, byte for byte: DO and WILL END-OF-RECORD,
/// DO and WILL BINARY, DO TERMINAL-TYPE, then SB TERMINAL-TYPE SEND SE.
#[test]
fn tn3270_socket_chardev() {
    let mut c = Client::with(|cfg| cfg.qemu_version = (10, 0, 2));
    let (_, mut client) = listening_on_loopback(&mut c, "tcp", json!({"tn3270": true}));
    assert_eq!(
        read_n(&mut client, 21),
        b"\xff\xfd\x19\xff\xfb\x19\xff\xfd\x00\xff\xfb\x00\xff\xfd\x18\xff\xfa\x18\x01\xff\xf0"
    );
    // The peer's answers (IAC WILL TERMINAL-TYPE) do not reach the guest; its data does.
    client.write_all(b"\xff\xfb\x18data").unwrap();
    let mut got = String::new();
    assert!(eventually(|| {
        got.push_str(&c.guest_read("t"));
        got == "data"
    }));
}

/// A certificate authority, a server certificate for 127.0.0.1 and a client certificate,
/// in the directory layout of a `tls-creds-x509` object (server side and client side).
fn pki(name: &str) -> (String, String) {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
        SanType,
    };
    let dir = tmp(name);
    let _ = std::fs::remove_dir_all(&dir);
    let (server_dir, client_dir) = (dir.join("server"), dir.join("client"));
    std::fs::create_dir_all(&server_dir).unwrap();
    std::fs::create_dir_all(&client_dir).unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "qmpkit test CA");
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let leaf = |purpose: ExtendedKeyUsagePurpose, cn: &str| {
        let mut p = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        p.subject_alt_names
            .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
        p.distinguished_name.push(DnType::CommonName, cn);
        p.extended_key_usages = vec![purpose];
        let key = KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &ca_cert, &ca_key).unwrap();
        (cert.pem(), key.serialize_pem())
    };
    let (server_cert, server_key) = leaf(ExtendedKeyUsagePurpose::ServerAuth, "server");
    let (client_cert, client_key) = leaf(ExtendedKeyUsagePurpose::ClientAuth, "client");
    for d in [&server_dir, &client_dir] {
        std::fs::write(d.join("ca-cert.pem"), ca_cert.pem()).unwrap();
    }
    std::fs::write(server_dir.join("server-cert.pem"), server_cert).unwrap();
    std::fs::write(server_dir.join("server-key.pem"), server_key).unwrap();
    std::fs::write(client_dir.join("client-cert.pem"), client_cert).unwrap();
    std::fs::write(client_dir.join("client-key.pem"), client_key).unwrap();
    let text = |p: std::path::PathBuf| p.to_string_lossy().into_owned();
    (text(server_dir), text(client_dir))
}

/// A TLS client of the chardev on `port`, in a thread: it sends `send`, then reads `want`
/// bytes. With `cert`, it presents the client certificate of `dir`.
fn tls_peer(
    port: u16,
    dir: &str,
    cert: bool,
    send: &'static [u8],
    want: usize,
) -> std::thread::JoinHandle<std::io::Result<Vec<u8>>> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let dir = dir.to_string();
    std::thread::spawn(move || {
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_file_iter(format!("{dir}/ca-cert.pem")).unwrap() {
            roots.add(c.unwrap()).unwrap();
        }
        let b =
            rustls::ClientConfig::builder_with_provider(qmpkit_machine::chardev::tls::provider())
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots);
        let config = if cert {
            let certs = CertificateDer::pem_file_iter(format!("{dir}/client-cert.pem"))
                .unwrap()
                .collect::<Result<Vec<_>, _>>()
                .unwrap();
            let key = PrivateKeyDer::from_pem_file(format!("{dir}/client-key.pem")).unwrap();
            b.with_client_auth_cert(certs, key).unwrap()
        } else {
            b.with_no_client_auth()
        };
        let name = "127.0.0.1".try_into().unwrap();
        let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
        let sock = std::net::TcpStream::connect(("127.0.0.1", port))?;
        sock.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut tls = rustls::StreamOwned::new(conn, sock);
        tls.write_all(send)?;
        tls.flush()?;
        let mut got = vec![0u8; want];
        tls.read_exact(&mut got)?;
        Ok(got)
    })
}

/// `tls-creds` on a listening TCP chardev: the peer speaks TLS with the certificates of a
/// `tls-creds-x509` object (the client's certificate checked, as `verify-peer` defaults
/// to); text passes both ways inside the session, and a peer without a certificate is
/// refused.
#[test]
fn tls_socket_chardev_with_real_certificates() {
    let (server_dir, client_dir) = pki("chardev-pki");
    let mut c = Client::with(|cfg| cfg.qemu_version = (10, 0, 2));
    c.ok(
        "object-add",
        json!({"qom-type": "tls-creds-x509", "id": "tls0",
               "props": {"dir": server_dir, "endpoint": "server"}}),
    );
    let port = listen_on_loopback(&mut c, "tcp", json!({"tls-creds": "tls0"}));
    let peer = tls_peer(port, &client_dir, true, b"inside TLS", 5);
    let mut got = String::new();
    assert!(
        eventually(|| {
            got.push_str(&c.guest_read("t"));
            got == "inside TLS"
        }),
        "{got:?}"
    );
    c.ok(
        "__org.qmpkit_chardev-write",
        json!({"id": "t", "data": "reply"}),
    );
    assert_eq!(peer.join().unwrap().unwrap(), b"reply");
    // The peer went away; one without a client certificate is refused in the handshake.
    assert!(eventually(|| c.filename("t").starts_with("disconnected:")));
    let refused = tls_peer(port, &client_dir, false, b"x", 1);
    let mut tries = 0;
    while !refused.is_finished() && tries < 300 {
        c.guest_read("t");
        std::thread::sleep(Duration::from_millis(10));
        tries += 1;
    }
    assert!(refused.join().unwrap().is_err());
    assert_eq!(c.guest_read("t"), "");
}

/// The credentials a TLS chardev names are checked first, in QEMU 10.0.2's words, then
/// whether its address can carry TLS; an x509 object needs its certificate files.
#[test]
fn tls_socket_chardev_errors_in_qemus_words() {
    let (server_dir, client_dir) = pki("chardev-pki-errors");
    let mut c = Client::with(|cfg| cfg.qemu_version = (10, 0, 2));
    assert_eq!(
        c.error(
            "object-add",
            json!({"qom-type": "tls-creds-x509", "id": "bad",
                   "props": {"dir": "/nonexistent", "endpoint": "server"}})
        ),
        "Unable to access credentials /nonexistent/ca-cert.pem: No such file or directory"
    );
    assert_eq!(
        c.error(
            "object-add",
            json!({"qom-type": "tls-creds-x509", "id": "bad",
                   "props": {"dir": client_dir, "endpoint": "server"}})
        ),
        format!(
            "Unable to access credentials {client_dir}/server-cert.pem: No such file or directory"
        )
    );
    c.ok(
        "object-add",
        json!({"qom-type": "tls-creds-x509", "id": "srv",
               "props": {"dir": server_dir, "endpoint": "server"}}),
    );
    c.ok(
        "object-add",
        json!({"qom-type": "tls-creds-x509", "id": "cli",
               "props": {"dir": client_dir, "endpoint": "client"}}),
    );
    let inet = json!({"type": "inet", "data": {"host": "127.0.0.1", "port": "0"}});
    let unix = json!({"type": "unix", "data": {"path": sock_path("chardev-tls.sock")}});
    let cases = [
        (&inet, true, "nope", "No TLS credentials with id 'nope'"),
        (&unix, true, "nope", "No TLS credentials with id 'nope'"),
        (
            &inet,
            true,
            "iothread0",
            "Object with id 'iothread0' is not TLS credentials",
        ),
        (
            &inet,
            true,
            "cli",
            "Expected TLS credentials for a server endpoint",
        ),
        (
            &inet,
            false,
            "srv",
            "Expected TLS credentials for a client endpoint",
        ),
        (
            &unix,
            true,
            "srv",
            "'tls_creds' option is incompatible with 'unix' address type",
        ),
    ];
    for (addr, server, creds, want) in cases {
        let mut data = json!({"addr": addr, "server": server, "tls-creds": creds});
        if server {
            data["wait"] = json!(false);
        }
        assert_eq!(
            c.add("x", "socket", data)["error"]["desc"],
            format!("Failed to add chardev 'x': {want}"),
            "{creds}"
        );
    }
}
