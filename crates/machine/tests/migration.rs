//! Migration between machines: QEMU's status machine and event order on both sides, the
//! model's statistics, cancel, pause-before-switchover, and the real stream (RAM the source
//! wrote is what the destination reads back).

use std::sync::Arc;

use qmpkit_machine::{Cx, Machine, MachineConfig};
use serde_json::{json, Value};

mod common;

use common::{events, ok, run_cx, schema, tmp};

fn machine(f: impl FnOnce(&mut MachineConfig)) -> Machine {
    let mut c = MachineConfig::default_machine();
    f(&mut c);
    Machine::new(Arc::new(c), schema())
}

fn run(m: &mut Machine, cmd: &str, a: Value) -> Result<Value, String> {
    let mut cx = Cx {
        now_ns: m.now_ns,
        ..Default::default()
    };
    run_cx(m, cmd, a, &mut cx)
}

fn status(m: &mut Machine) -> String {
    ok(run(m, "query-status", json!({})))["status"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

fn mig_status(m: &mut Machine) -> String {
    ok(run(m, "query-migrate", json!({})))["status"]
        .as_str()
        .unwrap_or("none")
        .to_string()
}

fn events_on(m: &mut Machine) {
    ok(run(
        m,
        "migrate-set-capabilities",
        json!({"capabilities": [{"capability": "events", "state": true}]}),
    ));
}

/// Step both machines' clocks by `ms` at a time (real I/O gets a moment between steps)
/// until `done` or `limit_ms` of simulated time; answer the events of each, in order.
fn drive(
    src: &mut Machine,
    dst: &mut Machine,
    ms: u64,
    limit_ms: u64,
    mut done: impl FnMut(&mut Machine, &mut Machine) -> bool,
) -> (Vec<String>, Vec<String>) {
    let (mut es, mut ed) = (Vec::new(), Vec::new());
    let mut t = 0;
    while t < limit_ms {
        common::step(src, ms);
        common::step(dst, ms);
        es.extend(events(src));
        ed.extend(events(dst));
        if done(src, dst) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
        t += ms;
    }
    (es, ed)
}

/// Let the stream's thread connect (real time) while the source is in setup.
fn until_active(m: &mut Machine) {
    for _ in 0..5000 {
        if mig_status(m) != "setup" {
            return;
        }
        common::step(m, 1);
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

fn read_back(m: &mut Machine, addr: u64, len: usize, name: &str) -> Vec<u8> {
    let p = tmp(name);
    ok(run(
        m,
        "pmemsave",
        json!({"val": addr, "size": len, "filename": p.to_str().unwrap()}),
    ));
    std::fs::read(&p).unwrap_or_default()
}

#[test]
fn defer_then_migrate_over_unix_socket() {
    let sock = tmp("mig-defer.sock");
    let _ = std::fs::remove_file(&sock);
    let uri = format!("unix:{}", sock.display());
    let mut src = machine(|_| {});
    let mut dst = machine(|c| c.incoming = Some("defer".into()));
    assert_eq!(status(&mut dst), "inmigrate");
    assert_eq!(ok(run(&mut dst, "query-migrate", json!({}))), json!({}));
    assert_eq!(
        run(&mut dst, "migrate", json!({"uri": "unix:/nonexistent"})),
        Err("GenericError: Guest is waiting for an incoming migration".into())
    );
    assert_eq!(
        run(&mut src, "migrate-incoming", json!({"uri": uri})),
        Err("GenericError: '-incoming' was not specified on the command line".into())
    );
    events_on(&mut src);
    events_on(&mut dst);
    // The guest leaves something in RAM (low memory, and a page far up).
    ok(run(
        &mut src,
        "__org.qmpkit_guest-memory-write",
        json!({"addr": 0x1000, "data": "migrated page one"}),
    ));
    ok(run(
        &mut src,
        "__org.qmpkit_guest-memory-write",
        json!({"addr": 0x7f0_0010u64, "data": "and one far up"}),
    ));
    ok(run(&mut dst, "migrate-incoming", json!({"uri": uri})));
    assert_eq!(events(&mut dst), [r#"MIGRATION {"status":"setup"}"#]);
    assert_eq!(mig_status(&mut dst), "setup");
    assert_eq!(
        run(&mut dst, "migrate-incoming", json!({"uri": uri})),
        Err("GenericError: The incoming migration has already been started".into())
    );
    ok(run(&mut src, "migrate", json!({"uri": uri})));
    assert_eq!(events(&mut src), [r#"MIGRATION {"status":"setup"}"#]);
    assert_eq!(mig_status(&mut src), "setup");
    assert_eq!(
        run(&mut src, "migrate", json!({"uri": uri})),
        Err("GenericError: There's a migration process in progress".into())
    );
    let (es, ed) = drive(&mut src, &mut dst, 10, 60_000, |s, d| {
        mig_status(s) == "completed" && mig_status(d) == "completed"
    });
    // QEMU's order on the source (2.12: no `device` without a pause).
    assert_eq!(es[0], r#"MIGRATION_PASS {"pass":1}"#);
    assert_eq!(es[1], r#"MIGRATION {"status":"active"}"#);
    let stop = es.iter().position(|e| e == "STOP").expect("STOP");
    assert!(es[2..stop].iter().all(|e| e.starts_with("MIGRATION_PASS")));
    assert_eq!(&es[stop + 2..], [r#"MIGRATION {"status":"completed"}"#]);
    assert!(es[stop + 1].starts_with("MIGRATION_PASS"), "{es:?}");
    assert_eq!(
        ed,
        [
            r#"MIGRATION {"status":"active"}"#,
            "RESUME",
            r#"MIGRATION {"status":"completed"}"#
        ]
    );
    assert_eq!(status(&mut src), "postmigrate");
    assert_eq!(status(&mut dst), "running");
    let info = ok(run(&mut src, "query-migrate", json!({})));
    assert_eq!(info["status"], "completed");
    let ram = &info["ram"];
    assert_eq!(ram["total"], json!(src.config.memory_bytes));
    assert_eq!(ram["remaining"], 0);
    assert!(info["downtime"].as_i64().is_some() && info["total-time"].as_i64().is_some());
    assert_eq!(
        ok(run(&mut dst, "query-migrate", json!({}))),
        json!({"status": "completed"})
    );
    // The destination reads what the source's guest wrote, and the pages around it.
    assert_eq!(
        read_back(&mut dst, 0x1000, 17, "mig-a"),
        b"migrated page one"
    );
    assert_eq!(
        read_back(&mut dst, 0x7f0_0010, 14, "mig-b"),
        b"and one far up"
    );
    assert_eq!(
        read_back(&mut dst, 0x2000, 4096, "mig-c"),
        read_back(&mut src, 0x2000, 4096, "mig-d")
    );
    // The source can run again.
    ok(run(&mut src, "cont", json!({})));
    assert_eq!(events(&mut src), ["RESUME"]);
}

#[test]
fn cancel_midway() {
    let mut m = machine(|_| {});
    events_on(&mut m);
    ok(run(&mut m, "migrate_set_speed", json!({"value": 1 << 20})));
    ok(run(
        &mut m,
        "migrate",
        json!({"uri": "exec:cat > /dev/null"}),
    ));
    until_active(&mut m);
    common::step(&mut m, 1000);
    let ev = events(&mut m);
    assert_eq!(
        ev,
        [
            r#"MIGRATION {"status":"setup"}"#,
            r#"MIGRATION_PASS {"pass":1}"#,
            r#"MIGRATION {"status":"active"}"#
        ]
    );
    let info = ok(run(&mut m, "query-migrate", json!({})));
    assert_eq!(info["status"], "active");
    let sent = info["ram"]["transferred"].as_i64().unwrap();
    // About a second at 1 MiB/s (ticks of 100 ms).
    assert!((900_000..=1_100_000).contains(&sent), "{sent}");
    assert_eq!(info["expected-downtime"], 300);
    ok(run(&mut m, "migrate_cancel", json!({})));
    assert_eq!(
        events(&mut m),
        [
            r#"MIGRATION {"status":"cancelling"}"#,
            r#"MIGRATION {"status":"cancelled"}"#
        ]
    );
    assert_eq!(
        ok(run(&mut m, "query-migrate", json!({}))),
        json!({"status": "cancelled"})
    );
    assert_eq!(status(&mut m), "running");
    common::step(&mut m, 1000);
    assert!(events(&mut m).is_empty());
}

#[test]
fn pause_before_switchover_and_continue() {
    let mut m = machine(|c| c.memory_bytes = 64 << 20);
    ok(run(
        &mut m,
        "migrate-set-capabilities",
        json!({"capabilities": [
            {"capability": "events", "state": true},
            {"capability": "pause-before-switchover", "state": true}
        ]}),
    ));
    assert_eq!(
        run(
            &mut m,
            "migrate-continue",
            json!({"state": "pre-switchover"})
        ),
        Err("GenericError: Migration not in expected state: none".into())
    );
    ok(run(
        &mut m,
        "migrate",
        json!({"uri": "exec:cat > /dev/null"}),
    ));
    until_active(&mut m);
    common::step(&mut m, 5000);
    let ev = events(&mut m);
    assert_eq!(
        &ev[ev.len() - 2..],
        ["STOP", r#"MIGRATION {"status":"pre-switchover"}"#]
    );
    assert_eq!(status(&mut m), "finish-migrate");
    assert_eq!(
        run(
            &mut m,
            "migrate-set-capabilities",
            json!({"capabilities": [{"capability": "events", "state": false}]})
        ),
        Err("GenericError: There's a migration process in progress".into())
    );
    assert_eq!(
        run(&mut m, "migrate-continue", json!({"state": "active"})),
        Err("GenericError: Migration not in expected state: pre-switchover".into())
    );
    ok(run(
        &mut m,
        "migrate-continue",
        json!({"state": "pre-switchover"}),
    ));
    for _ in 0..200 {
        common::step(&mut m, 5);
        if mig_status(&mut m) == "completed" {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    let ev = events(&mut m);
    assert_eq!(ev[0], r#"MIGRATION {"status":"device"}"#);
    assert!(ev[1].starts_with("MIGRATION_PASS"));
    assert_eq!(ev[2], r#"MIGRATION {"status":"completed"}"#);
    assert_eq!(status(&mut m), "postmigrate");
}

#[test]
fn a_4_gib_guest_takes_the_models_time() {
    let mut m = machine(|c| c.memory_bytes = 4 << 30);
    let (populated, total) = qmpkit_machine::migration::ram_pages(&m);
    let bw = 32u64 << 20; // 2.12's default max-bandwidth
    assert_eq!(
        ok(run(&mut m, "query-migrate-parameters", json!({})))["max-bandwidth"],
        json!(bw)
    );
    let first_pass = populated * 4104 + (total - populated) * 9;
    ok(run(
        &mut m,
        "migrate",
        json!({"uri": "exec:cat > /dev/null"}),
    ));
    until_active(&mut m);
    let mut t = 0;
    while t < 60_000 && mig_status(&mut m) != "completed" {
        common::step(&mut m, 10);
        t += 10;
        // Real I/O (the command, the stream) gets its moment.
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    let info = ok(run(&mut m, "query-migrate", json!({})));
    assert_eq!(info["status"], "completed", "{info}");
    // First pass at the bandwidth, then the pages dirtied meanwhile (256/s).
    let want_ms = first_pass * 1000 / bw;
    let total_ms = info["total-time"].as_u64().unwrap();
    assert!(
        total_ms >= want_ms && total_ms <= want_ms + 400,
        "{total_ms} ms, model {want_ms} ms"
    );
    assert!(info["ram"]["normal"].as_u64().unwrap() >= populated);
    assert_eq!(info["ram"]["duplicate"], json!(total - populated));
    assert!(info["ram"]["dirty-sync-count"].as_i64().unwrap() >= 2);
}

#[test]
fn a_guest_dirtying_faster_than_the_link_never_converges_until_throttled() {
    let mut m = machine(|c| c.memory_bytes = 64 << 20);
    ok(run(
        &mut m,
        "__org.qmpkit_guest-dirty-rate",
        json!({"pages-per-second": 20000}),
    ));
    ok(run(
        &mut m,
        "migrate-set-parameters",
        json!({"max-bandwidth": 16 << 20}),
    ));
    ok(run(
        &mut m,
        "migrate",
        json!({"uri": "exec:cat > /dev/null"}),
    ));
    until_active(&mut m);
    common::step(&mut m, 20_000);
    let info = ok(run(&mut m, "query-migrate", json!({})));
    assert_eq!(info["status"], "active");
    assert!(info["expected-downtime"].as_i64().unwrap() > 300);
    assert!(info["ram"]["dirty-pages-rate"].as_i64().unwrap() > 1000);
    ok(run(&mut m, "migrate_cancel", json!({})));
    ok(run(
        &mut m,
        "migrate-set-capabilities",
        json!({"capabilities": [{"capability": "auto-converge", "state": true}]}),
    ));
    ok(run(
        &mut m,
        "migrate",
        json!({"uri": "exec:cat > /dev/null"}),
    ));
    until_active(&mut m);
    let mut t = 0;
    while t < 120_000 && mig_status(&mut m) != "completed" {
        common::step(&mut m, 100);
        t += 100;
        std::thread::sleep(std::time::Duration::from_micros(200));
    }
    assert_eq!(mig_status(&mut m), "completed");
}

#[test]
fn failures_in_qemus_words() {
    let mut m = machine(|_| {});
    events_on(&mut m);
    assert_eq!(
        run(&mut m, "migrate", json!({"uri": "bogus:x"})),
        Err("GenericError: Parameter 'uri' expects a valid migration protocol".into())
    );
    assert_eq!(
        run(&mut m, "migrate", json!({"uri": "tcp:127.0.0.1"})),
        Err("GenericError: error parsing address '127.0.0.1'".into())
    );
    assert_eq!(
        run(&mut m, "migrate", json!({"uri": "fd:nosuch"})),
        Err("GenericError: File descriptor named 'nosuch' has not been found".into())
    );
    assert_eq!(
        run(&mut m, "migrate", json!({"uri": "file:/nonexistent-dir/x"})),
        Err(
            "GenericError: Could not create '/nonexistent-dir/x': No such file or directory".into()
        )
    );
    assert_eq!(
        run(&mut m, "migrate", json!({"uri": "file:/dev/fdset/9"})),
        Err("GenericError: Failed to find fdset /dev/fdset/9".into())
    );
    // A refused connection fails the migration after it began.
    let sock = tmp("mig-nobody.sock");
    let _ = std::fs::remove_file(&sock);
    ok(run(
        &mut m,
        "migrate",
        json!({"uri": format!("unix:{}", sock.display())}),
    ));
    for _ in 0..100 {
        common::step(&mut m, 10);
        if mig_status(&mut m) == "failed" {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    let info = ok(run(&mut m, "query-migrate", json!({})));
    assert_eq!(
        info,
        json!({"status": "failed", "error-desc": format!("Failed to connect to '{}': No such file or directory", sock.display())})
    );
    let ev = events(&mut m);
    assert_eq!(
        ev.first().map(String::as_str),
        Some(r#"MIGRATION {"status":"setup"}"#)
    );
    assert_eq!(
        ev.last().map(String::as_str),
        Some(r#"MIGRATION {"status":"failed"}"#)
    );
    assert_eq!(status(&mut m), "running");
    assert_eq!(
        run(&mut m, "migrate-start-postcopy", json!({})),
        Err("GenericError: Enable postcopy with migrate_set_capability before the start of migration".into())
    );
    assert_eq!(
        run(
            &mut m,
            "client_migrate_info",
            json!({"protocol": "vnc", "hostname": "x"})
        ),
        Err("GenericError: Parameter 'protocol' expects 'spice'".into())
    );
}

#[test]
fn parameters_and_capabilities() {
    let mut m = machine(|_| {});
    let p = ok(run(&mut m, "query-migrate-parameters", json!({})));
    assert_eq!(p["downtime-limit"], 300);
    assert_eq!(p["xbzrle-cache-size"], 64 << 20);
    for (k, v, e) in [
        ("compress-level", json!(10), "Parameter 'compress_level' expects is invalid, it should be in the range of 0 to 9"),
        ("cpu-throttle-initial", json!(0), "Parameter 'cpu_throttle_initial' expects an integer in the range of 1 to 99"),
        ("cpu-throttle-increment", json!(100), "Parameter 'cpu_throttle_increment' expects an integer in the range of 1 to 99"),
        ("downtime-limit", json!(2000001), "Parameter 'downtime_limit' expects an integer in the range of 0 to (2000 * 1000) ms"),
        ("xbzrle-cache-size", json!(1000), "Parameter 'xbzrle_cache_size' expects a power of two no less than the target page size"),
    ] {
        assert_eq!(
            run(&mut m, "migrate-set-parameters", json!({k: v})),
            Err(format!("GenericError: {e}")),
            "{k}"
        );
    }
    ok(run(
        &mut m,
        "migrate-set-parameters",
        json!({"downtime-limit": 500, "tls-creds": null, "tls-hostname": "h"}),
    ));
    ok(run(&mut m, "migrate_set_downtime", json!({"value": 0.25})));
    ok(run(&mut m, "migrate_set_speed", json!({"value": 1234567})));
    ok(run(
        &mut m,
        "migrate-set-cache-size",
        json!({"value": 1 << 20}),
    ));
    assert_eq!(
        run(&mut m, "migrate-set-cache-size", json!({"value": 1000})),
        Err("GenericError: Parameter 'xbzrle_cache_size' expects a power of two no less than the target page size".into())
    );
    assert_eq!(
        ok(run(&mut m, "query-migrate-cache-size", json!({}))),
        json!(1 << 20)
    );
    let p = ok(run(&mut m, "query-migrate-parameters", json!({})));
    assert_eq!(p["downtime-limit"], 250);
    assert_eq!(p["max-bandwidth"], 1234567);
    assert_eq!(p["tls-creds"], "");
    assert_eq!(p["tls-hostname"], "h");
    ok(run(
        &mut m,
        "migrate-set-capabilities",
        json!({"capabilities": [{"capability": "xbzrle", "state": true}, {"capability": "postcopy-ram", "state": true}]}),
    ));
    assert_eq!(
        run(
            &mut m,
            "migrate-set-capabilities",
            json!({"capabilities": [{"capability": "compress", "state": true}]})
        ),
        Err("GenericError: Postcopy is not currently compatible with compression".into())
    );
    let caps = ok(run(&mut m, "query-migrate-capabilities", json!({})));
    let on: Vec<&str> = caps
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["state"] == true)
        .map(|c| c["capability"].as_str().unwrap())
        .collect();
    assert_eq!(on, ["xbzrle", "postcopy-ram"]);
    assert_eq!(caps[0], json!({"capability": "xbzrle", "state": true}));
    assert_eq!(
        run(&mut m, "migrate-start-postcopy", json!({})),
        Err("GenericError: Postcopy must be started after migration has been started".into())
    );
}

#[test]
fn postcopy_hands_over_early() {
    let sock = tmp("mig-postcopy.sock");
    let _ = std::fs::remove_file(&sock);
    let uri = format!("unix:{}", sock.display());
    let mut src = machine(|c| c.memory_bytes = 256 << 20);
    let mut dst = machine(|c| {
        c.memory_bytes = 256 << 20;
        c.incoming = Some(uri.clone());
    });
    for m in [&mut src, &mut dst] {
        ok(run(
            m,
            "migrate-set-capabilities",
            json!({"capabilities": [{"capability": "events", "state": true}, {"capability": "postcopy-ram", "state": true}]}),
        ));
    }
    ok(run(
        &mut src,
        "migrate-set-parameters",
        json!({"max-bandwidth": 1 << 20}),
    ));
    ok(run(&mut src, "migrate", json!({"uri": uri})));
    until_active(&mut src);
    common::step(&mut src, 300);
    ok(run(&mut src, "migrate-start-postcopy", json!({})));
    let (es, ed) = drive(&mut src, &mut dst, 10, 5_000, |_, d| {
        mig_status(d) == "postcopy-active"
    });
    assert!(es.contains(&"STOP".to_string()));
    assert!(es.contains(&r#"MIGRATION {"status":"postcopy-active"}"#.to_string()));
    assert_eq!(status(&mut dst), "running", "{ed:?}");
    assert_eq!(
        ed,
        [
            r#"MIGRATION {"status":"active"}"#,
            r#"MIGRATION {"status":"postcopy-active"}"#,
            "RESUME"
        ]
    );
    let (_, ed) = drive(&mut src, &mut dst, 100, 600_000, |s, d| {
        mig_status(s) == "completed" && mig_status(d) == "completed"
    });
    assert_eq!(ed, [r#"MIGRATION {"status":"completed"}"#]);
    assert_eq!(status(&mut src), "postmigrate");
    assert!(
        ok(run(&mut src, "query-migrate", json!({})))["ram"]["postcopy-requests"]
            .as_i64()
            .unwrap()
            > 0
    );
}

/// The Xen and COLO commands of a machine without Xen, as qemu-system-x86_64 10.0.2
/// answers them.
#[test]
fn xen_replication_without_xen() {
    let mut m = machine(|_| {});
    for (cmd, args, want) in [
        (
            "xen-set-global-dirty-log",
            json!({"enable": true}),
            Ok(json!({})),
        ),
        (
            "xen-set-global-dirty-log",
            json!({"enable": false}),
            Ok(json!({})),
        ),
        (
            "xen-set-replication",
            json!({"enable": true, "primary": false}),
            Ok(json!({})),
        ),
        (
            "xen-set-replication",
            json!({"enable": false, "primary": true, "failover": true}),
            Ok(json!({})),
        ),
        (
            "xen-set-replication",
            json!({"enable": true, "primary": true, "failover": false}),
            Err("GenericError: Parameter 'failover' is only for stopping replication".into()),
        ),
        (
            "query-xen-replication-status",
            json!({}),
            Ok(json!({"error": false})),
        ),
        ("xen-colo-do-checkpoint", json!({}), Ok(json!({}))),
        (
            "x-colo-lost-heartbeat",
            json!({}),
            Err("GenericError: VM is not in COLO mode".into()),
        ),
    ] {
        assert_eq!(run(&mut m, cmd, args.clone()), want, "{cmd} {args}");
    }
    assert!(events(&mut m).is_empty());
}

/// With SPICE, as `qemu-system-x86_64` 10.0.2 answers (two processes migrating over a unix
/// socket): once `client_migrate_info` named where viewers are to follow, a completed
/// migration sends SPICE_MIGRATE_COMPLETED after MIGRATION's `completed` and `query-spice`
/// says `migrated`; without it, neither.
#[test]
fn spice_viewers_told_to_follow_hear_the_migration_completed() {
    for told in [true, false] {
        let mut m = machine(|c| {
            c.memory_bytes = 64 << 20;
            c.spice = Some("port=5930,addr=127.0.0.1,disable-ticketing=on".into());
        });
        events_on(&mut m);
        if told {
            ok(run(
                &mut m,
                "client_migrate_info",
                json!({"protocol": "spice", "hostname": "127.0.0.1", "port": 5931}),
            ));
        }
        events(&mut m);
        ok(run(
            &mut m,
            "migrate",
            json!({"uri": "exec:cat > /dev/null"}),
        ));
        until_active(&mut m);
        let mut evs = events(&mut m);
        let mut t = 0;
        while t < 60_000 && mig_status(&mut m) != "completed" {
            common::step(&mut m, 10);
            evs.extend(events(&mut m));
            t += 10;
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        evs.extend(events(&mut m));
        let tail: Vec<&str> = evs.iter().rev().take(2).rev().map(String::as_str).collect();
        let spice = ok(run(&mut m, "query-spice", json!({})));
        if told {
            assert_eq!(
                tail,
                [
                    r#"MIGRATION {"status":"completed"}"#,
                    "SPICE_MIGRATE_COMPLETED"
                ],
                "{evs:?}"
            );
            assert_eq!(spice["migrated"], true, "{spice}");
        } else {
            assert_eq!(tail[1], r#"MIGRATION {"status":"completed"}"#, "{evs:?}");
            assert!(!evs.iter().any(|e| e.starts_with("SPICE_")), "{evs:?}");
            assert_eq!(spice["migrated"], false, "{spice}");
        }
    }
}
