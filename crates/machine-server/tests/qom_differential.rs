//! QOM and object commands side by side with the real qemu-storage-daemon
//! (10.0.2): the same requests on the same objects must get the same
//! answers from the machine claiming QEMU 10.0.2 and serving its interface,
//! through a server session (its validation answers what does not fit).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use qmpkit_machine::{Machine, MachineConfig};
use serde_json::{json, Value};

mod common;

use common::Session;

struct Daemon {
    child: Child,
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start() -> Option<Daemon> {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("qmpkit-machine-devices");
    std::fs::create_dir_all(&dir).ok()?;
    let sock = dir.join(format!("qsd-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&sock);
    let child = Command::new("qemu-storage-daemon")
        .arg("--chardev")
        .arg(format!(
            "socket,id=m0,path={},server=on,wait=off",
            sock.display()
        ))
        .args([
            "--monitor",
            "chardev=m0",
            "--object",
            "iothread,id=iothread0",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let mut d = None;
    for _ in 0..100 {
        if let Ok(s) = UnixStream::connect(&sock) {
            d = Some(s);
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let writer = match d {
        Some(s) => s,
        None => {
            let mut c = child;
            let _ = c.kill();
            let _ = c.wait();
            return None;
        }
    };
    writer
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    let reader = BufReader::new(writer.try_clone().ok()?);
    let mut daemon = Daemon {
        child,
        reader,
        writer,
    };
    let mut greeting = String::new();
    daemon.reader.read_line(&mut greeting).ok()?;
    daemon.call(&json!({"execute": "qmp_capabilities"}))?;
    Some(daemon)
}

impl Daemon {
    fn call(&mut self, req: &Value) -> Option<Value> {
        let mut line = serde_json::to_string(req).ok()?;
        line.push('\n');
        self.writer.write_all(line.as_bytes()).ok()?;
        loop {
            let mut l = String::new();
            if self.reader.read_line(&mut l).ok()? == 0 {
                return None;
            }
            let v: Value = serde_json::from_str(&l).ok()?;
            if v.get("return").is_some() || v.get("error").is_some() {
                return Some(v);
            }
        }
    }
}

/// The answer as on the wire: `{"return": …}` or `{"error": {class, desc}}`.
fn ours(s: &Session, cmd: &str, args: &Value) -> Value {
    match s.run(cmd, args.clone()) {
        Ok(v) => json!({ "return": v }),
        Err(e) => match e.split_once(": ") {
            Some((class, desc)) => json!({"error": {"class": class, "desc": desc}}),
            None => json!({ "error": e }),
        },
    }
}

#[test]
fn same_answers_as_qemu_storage_daemon() {
    let Some(mut qsd) = start() else {
        qmpkit_testkit::skip::skip("qemu-storage-daemon not available");
        return;
    };
    let mut config = MachineConfig::default_machine();
    config.qemu_version = (10, 0, 2);
    config.objects.retain(|o| o.id == "iothread0");
    let p = qmpkit_testkit::data::path("qemu-ref/schema-10.0.2/qapi/qapi-schema.json");
    let schema = qmpkit_schema::load(&p, qmpkit_schema::Dialect::Modern).expect("10.0.2 schema");
    let s = Session::new(Machine::new(Arc::new(config), Arc::new(schema)));
    let probes: Vec<(&str, Value)> = vec![
        (
            "qom-get",
            json!({"path": "/objects/iothread0", "property": "poll-max-ns"}),
        ),
        (
            "qom-get",
            json!({"path": "/objects/iothread0", "property": "type"}),
        ),
        (
            "qom-get",
            json!({"path": "/objects", "property": "iothread0"}),
        ),
        (
            "qom-get",
            json!({"path": "//objects//iothread0/", "property": "poll-grow"}),
        ),
        (
            "qom-get",
            json!({"path": "iothread0", "property": "poll-shrink"}),
        ),
        (
            "qom-get",
            json!({"path": "/objects/iothread0", "property": "nope"}),
        ),
        ("qom-get", json!({"path": "", "property": "type"})),
        ("qom-get", json!({"path": "/nope", "property": "type"})),
        (
            "qom-set",
            json!({"path": "/objects/iothread0", "property": "type", "value": "x"}),
        ),
        (
            "qom-set",
            json!({"path": "/objects", "property": "iothread0", "value": "x"}),
        ),
        (
            "qom-set",
            json!({"path": "/objects/iothread0", "property": "poll-max-ns", "value": "x"}),
        ),
        (
            "qom-set",
            json!({"path": "/objects/iothread0", "property": "poll-max-ns", "value": -1}),
        ),
        (
            "qom-set",
            json!({"path": "/objects/iothread0", "property": "poll-grow", "value": 3}),
        ),
        (
            "qom-get",
            json!({"path": "/objects/iothread0", "property": "poll-grow"}),
        ),
        (
            "qom-set",
            json!({"path": "/objects/iothread0", "property": "nope", "value": 3}),
        ),
        ("qom-list", json!({"path": "/nonexistent"})),
        ("qom-list", json!({"path": ""})),
        (
            "object-add",
            json!({"qom-type": "iothread", "id": "iothread0"}),
        ),
        ("object-add", json!({"qom-type": "iothread", "id": "1bad"})),
        (
            "object-add",
            json!({"qom-type": "iothread", "id": "io9", "poll-grow": 2}),
        ),
        (
            "qom-get",
            json!({"path": "/objects/io9", "property": "poll-grow"}),
        ),
        ("object-del", json!({"id": "io9"})),
        ("object-del", json!({"id": "io9"})),
        ("object-add", json!({"qom-type": "secret", "id": "s1"})),
        (
            "object-add",
            json!({"qom-type": "secret", "id": "s1", "data": "x"}),
        ),
        (
            "qom-set",
            json!({"path": "/objects/s1", "property": "data", "value": "y"}),
        ),
        ("object-del", json!({"id": "s1"})),
        (
            "object-add",
            json!({"qom-type": "throttle-group", "id": "tg", "x-bps-total": 100}),
        ),
        (
            "qom-set",
            json!({"path": "/objects/tg", "property": "x-bps-total", "value": 5}),
        ),
        ("object-del", json!({"id": "tg"})),
        ("qom-list-properties", json!({"typename": "nope"})),
        ("qom-list-types", json!({"implements": "nope"})),
    ];
    let mut diffs = Vec::new();
    for (cmd, args) in &probes {
        let Some(theirs) = qsd.call(&json!({"execute": cmd, "arguments": args})) else {
            qmpkit_testkit::skip::skip("qemu-storage-daemon stopped answering");
            return;
        };
        let mine = ours(&s, cmd, args);
        if mine != theirs {
            diffs.push(format!(
                "{cmd} {args}\n  qemu:   {theirs}\n  qmpkit: {mine}"
            ));
        }
    }
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
}
