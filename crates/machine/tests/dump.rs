mod common;

use common::*;
use qmpkit_machine::{Cx, Machine};
use serde_json::{json, Value};

/// Deletes the file when dropped (cores are large, if sparse).
struct Rm(std::path::PathBuf);

impl Drop for Rm {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn readelf(args: &[&str], f: &std::path::Path) -> Option<String> {
    let out = std::process::Command::new("readelf")
        .args(args)
        .arg(f)
        .output()
        .ok()?;
    assert!(
        out.status.success(),
        "readelf failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn elf_core_is_readable() {
    let mut m = machine();
    let f = tmp("core.elf");
    let _rm = Rm(f.clone());
    ok(run(
        &mut m,
        "dump-guest-memory",
        json!({"paging": false, "protocol": format!("file:{}", f.display())}),
    ));
    let ev = events(&mut m);
    assert_eq!(
        ev,
        vec![
            "STOP",
            r#"DUMP_COMPLETED {"result":{"status":"completed","completed":1073741824,"total":1073741824}}"#,
            "RESUME",
        ]
    );
    assert_eq!(
        ok(run(&mut m, "query-dump", json!({}))),
        json!({"status": "completed", "completed": 1073741824u64, "total": 1073741824u64})
    );
    assert!(std::fs::metadata(&f).unwrap().len() > 1 << 30);
    let mut data = vec![0u8; 64 * 1024];
    {
        use std::io::Read;
        std::fs::File::open(&f)
            .unwrap()
            .read_exact(&mut data)
            .unwrap();
    }
    assert_eq!(&data[..4], b"\x7fELF");
    assert_eq!(data[4], 2, "ELFCLASS64");
    assert_eq!(u16::from_le_bytes([data[16], data[17]]), 4, "ET_CORE");
    assert_eq!(u16::from_le_bytes([data[18], data[19]]), 62, "EM_X86_64");
    // Guest page 0 is in the file right after the headers.
    let needle = b"qmpkit page 0000000000000000\n";
    assert!(data.windows(needle.len()).any(|w| w == needle));
    let Some(h) = readelf(&["-h", "-l", "-n", "-W"], &f) else {
        qmpkit_testkit::skip::skip("readelf not found");
        return;
    };
    assert!(h.contains("CORE (Core file)"), "{h}");
    assert!(h.contains("Advanced Micro Devices X86-64"), "{h}");
    assert!(h.contains("NOTE"), "{h}");
    let loads: Vec<&str> = h
        .lines()
        .filter(|l| l.trim_start().starts_with("LOAD"))
        .collect();
    assert_eq!(loads.len(), 1, "{h}");
    assert!(loads[0].contains("0x40000000 0x40000000"), "{}", loads[0]);
    assert_eq!(h.matches("NT_PRSTATUS").count(), 2, "one per vCPU: {h}");
}

#[test]
fn filtered_and_paged_dump() {
    let mut m = machine_with(|c| c.memory_bytes = 4 << 30);
    let f = tmp("core2.elf");
    let _rm = Rm(f.clone());
    ok(run(
        &mut m,
        "dump-guest-memory",
        json!({"paging": true, "protocol": format!("file:{}", f.display()), "begin": 0xbfff_0000u64, "length": 0x4002_0000u64}),
    ));
    let q = ok(run(&mut m, "query-dump", json!({})));
    // 64 KiB below the PCI hole, 64 KiB above 4 GiB.
    assert_eq!(q["total"], json!(0x20000));
    let Some(h) = readelf(&["-l", "-W"], &f) else {
        qmpkit_testkit::skip::skip("readelf not found");
        return;
    };
    let loads: Vec<&str> = h
        .lines()
        .filter(|l| l.trim_start().starts_with("LOAD"))
        .collect();
    assert_eq!(loads.len(), 2, "{h}");
    assert!(loads[1].contains("0x0000000100000000"), "{h}");
}

#[test]
fn detached_dump_progresses_over_time() {
    let mut m = machine();
    let f = tmp("core3.elf");
    let _rm = Rm(f.clone());
    ok(run(
        &mut m,
        "dump-guest-memory",
        json!({"paging": false, "protocol": format!("file:{}", f.display()), "detach": true}),
    ));
    assert_eq!(events(&mut m), vec!["STOP"]);
    assert_eq!(
        ok(run(&mut m, "query-status", json!({})))["status"],
        "save-vm"
    );
    let q = ok(run(&mut m, "query-dump", json!({})));
    assert_eq!(q["status"], "active");
    assert_eq!(
        run(
            &mut m,
            "dump-guest-memory",
            json!({"paging": false, "protocol": "file:/dev/null"})
        )
        .unwrap_err(),
        "GenericError: There is a dump in progress already"
    );
    step(&mut m, 500);
    let q = ok(run(&mut m, "query-dump", json!({})));
    assert_eq!(q["status"], "active");
    let c = q["completed"].as_u64().unwrap();
    assert!(c > 0 && c < 1 << 30, "{q}");
    step(&mut m, 600);
    let ev = events(&mut m);
    assert_eq!(ev.len(), 2);
    assert!(
        ev[0].starts_with(r#"DUMP_COMPLETED {"result":{"status":"completed""#),
        "{ev:?}"
    );
    assert_eq!(ev[1], "RESUME");
    assert_eq!(
        ok(run(&mut m, "query-status", json!({})))["status"],
        "running"
    );
}

#[test]
fn dump_errors() {
    let mut m = machine();
    let e = |m: &mut Machine, a: Value| run(m, "dump-guest-memory", a).unwrap_err();
    assert_eq!(
        e(
            &mut m,
            json!({"paging": false, "protocol": "file:/tmp/x", "begin": 0})
        ),
        "GenericError: Parameter 'length' is missing"
    );
    assert_eq!(
        e(
            &mut m,
            json!({"paging": false, "protocol": "file:/tmp/x", "length": 0})
        ),
        "GenericError: Parameter 'begin' is missing"
    );
    assert_eq!(
        e(&mut m, json!({"paging": false, "protocol": "tcp:x"})),
        "GenericError: Invalid parameter 'protocol'"
    );
    assert_eq!(
        e(&mut m, json!({"paging": false, "protocol": "fd:dump"})),
        "GenericError: File descriptor named 'dump' has not been found"
    );
    assert_eq!(
        e(
            &mut m,
            json!({"paging": false, "protocol": "file:/tmp/x", "format": "kdump-zlib"})
        ),
        "GenericError: kdump-zlib is not available now"
    );
    let f = tmp("core4.elf");
    let _rm = Rm(f.clone());
    assert_eq!(
        e(
            &mut m,
            json!({"paging": false, "protocol": format!("file:{}", f.display()), "begin": 0x8000_0000u64, "length": 4096})
        ),
        "GenericError: Invalid parameter 'begin'"
    );
    assert_eq!(
        ok(run(&mut m, "query-dump-guest-memory-capability", json!({}))),
        json!({"formats": ["elf"]})
    );
}

#[test]
fn dump_to_a_named_fd() {
    use std::os::fd::OwnedFd;
    let mut m = machine();
    let f = tmp("core5.elf");
    let _rm = Rm(f.clone());
    let file = std::fs::File::create(&f).unwrap();
    let mut cx = Cx {
        fds: vec![OwnedFd::from(file)],
        ..Default::default()
    };
    ok(run_cx(&mut m, "getfd", json!({"fdname": "dump"}), &mut cx));
    let mut cx = Cx::default();
    ok(run_cx(
        &mut m,
        "dump-guest-memory",
        json!({"paging": false, "protocol": "fd:dump"}),
        &mut cx,
    ));
    assert!(std::fs::metadata(&f).unwrap().len() > (1 << 30));
    // The fd was consumed.
    assert_eq!(
        run(&mut m, "closefd", json!({"fdname": "dump"})).unwrap_err(),
        "GenericError: File descriptor named 'dump' not found"
    );
}

#[test]
fn old_qemu_has_no_dump_event() {
    let mut m = machine_with(|c| c.qemu_version = (1, 3, 0));
    let f = tmp("core-old.elf");
    let _rm = Rm(f.clone());
    ok(run(
        &mut m,
        "dump-guest-memory",
        json!({"paging": false, "protocol": format!("file:{}", f.display()), "begin": 0, "length": 4096}),
    ));
    assert_eq!(events(&mut m), vec!["STOP", "RESUME"]);
}
