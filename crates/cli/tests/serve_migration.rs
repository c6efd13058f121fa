//! Migration between processes: two `qmpkit serve` migrate to each other over a unix
//! socket; the destination, started with `-incoming defer`, runs with the source's RAM.

#[path = "serve_support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::*;

fn wait_status(q: &mut Qmp, want: &str) -> Value {
    let start = Instant::now();
    loop {
        let info = q.ok("query-migrate", json!({}));
        if info["status"] == want {
            return info;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30) && info["status"] != "failed",
            "waiting for {want}: {info}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn two_processes_migrate_with_incoming_defer() {
    let dir = tmpdir("migrate");
    let (ssock, dsock, msock) = (dir.join("s.sock"), dir.join("d.sock"), dir.join("mig.sock"));
    let spec = |p: &std::path::Path| format!("unix:{},server=on,wait=off", p.display());
    let _src = spawn(&["-m", "256", "-qmp", &spec(&ssock)]);
    let _dst = spawn(&["-m", "256", "-incoming", "defer", "-qmp", &spec(&dsock)]);
    let mut s = Qmp::connect(&ssock);
    let mut d = Qmp::connect(&dsock);
    assert_eq!(d.ok("query-status", json!({}))["status"], "inmigrate");
    for q in [&mut s, &mut d] {
        q.ok(
            "migrate-set-capabilities",
            json!({"capabilities": [{"capability": "events", "state": true}]}),
        );
    }
    s.ok(
        "__org.qmpkit_guest-memory-write",
        json!({"addr": 0x12345, "data": "written before the migration"}),
    );
    let uri = format!("unix:{}", msock.display());
    d.ok("migrate-incoming", json!({"uri": uri}));
    s.ok("migrate", json!({"uri": uri}));
    let info = wait_status(&mut s, "completed");
    assert_eq!(info["ram"]["total"], json!(256u64 << 20));
    wait_status(&mut d, "completed");
    assert_eq!(s.ok("query-status", json!({}))["status"], "postmigrate");
    assert_eq!(d.ok("query-status", json!({}))["status"], "running");
    let out = dir.join("ram");
    d.ok(
        "pmemsave",
        json!({"val": 0x12345, "size": 28, "filename": out.to_str().unwrap()}),
    );
    assert_eq!(
        std::fs::read(&out).unwrap(),
        b"written before the migration"
    );
    // Events in QEMU's order on both sides.
    let names = |q: &mut Qmp| -> Vec<String> {
        q.events
            .iter()
            .map(|e| match e["data"].get("status") {
                Some(st) => format!(
                    "{} {}",
                    e["event"].as_str().unwrap_or(""),
                    st.as_str().unwrap_or("")
                ),
                None => e["event"].as_str().unwrap_or("").to_string(),
            })
            .filter(|e| e != "MIGRATION_PASS")
            .collect()
    };
    assert_eq!(
        names(&mut s),
        [
            "MIGRATION setup",
            "MIGRATION active",
            "STOP",
            "MIGRATION completed"
        ]
    );
    assert_eq!(
        names(&mut d),
        [
            "MIGRATION setup",
            "MIGRATION active",
            "RESUME",
            "MIGRATION completed"
        ]
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Two fleets of ten machines migrate pairwise, all at once: every source ends in
/// postmigrate and every destination runs with its source's RAM.
#[test]
fn fleets_migrate_pairwise() {
    let dir = tmpdir("fleet-migrate");
    let r = qmpkit_testkit::fleet::migrate_pairs(&qmpkit(), &dir, 10, 64).expect("fleets");
    assert_eq!(r.problems, Vec::<String>::new());
    assert_eq!((r.pairs, r.completed, r.verified), (10, 10, 10));
    let _ = std::fs::remove_dir_all(&dir);
}
