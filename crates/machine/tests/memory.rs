mod common;

use common::*;
use serde_json::json;

#[test]
fn pmemsave_writes_guest_bytes() {
    let mut m = machine();
    let f = tmp("pmem");
    ok(run(
        &mut m,
        "pmemsave",
        json!({"val": 10, "size": 100, "filename": f.to_str().unwrap()}),
    ));
    let a = std::fs::read(&f).unwrap();
    assert_eq!(a.len(), 100);
    // Page 0 starts with its tag; offset 10 is inside it.
    assert_eq!(&a[..19], &b"qmpkit page 0000000000000000\n"[10..]);
    // Deterministic: a second machine reads the same.
    let mut m2 = machine();
    let f2 = tmp("pmem2");
    ok(run(
        &mut m2,
        "pmemsave",
        json!({"val": 10, "size": 100, "filename": f2.to_str().unwrap()}),
    ));
    assert_eq!(std::fs::read(&f2).unwrap(), a);
    // A sparse page far up reads as zeros, beyond RAM too.
    let f3 = tmp("pmem3");
    ok(run(
        &mut m,
        "pmemsave",
        json!({"val": (1u64 << 30) + 4096 * 3, "size": 64, "filename": f3.to_str().unwrap()}),
    ));
    assert_eq!(std::fs::read(&f3).unwrap(), vec![0u8; 64]);
    let f4 = tmp("pmem4");
    ok(run(
        &mut m,
        "pmemsave",
        json!({"val": 4096 * 251 * 3, "size": 20, "filename": f4.to_str().unwrap()}),
    ));
    assert_eq!(&std::fs::read(&f4).unwrap()[..], b"qmpkit page 00000000");
}

#[test]
fn memsave_reads_through_the_kernel_mapping() {
    let mut m = machine();
    let phys = tmp("ms-phys");
    let virt = tmp("ms-virt");
    ok(run(
        &mut m,
        "pmemsave",
        json!({"val": 0x100000, "size": 8192, "filename": phys.to_str().unwrap()}),
    ));
    ok(run(
        &mut m,
        "memsave",
        json!({"val": 0xffff_ffff_8010_0000u64 as i64, "size": 8192, "filename": virt.to_str().unwrap(), "cpu-index": 1}),
    ));
    assert_eq!(std::fs::read(&phys).unwrap(), std::fs::read(&virt).unwrap());
    // Identity below the end of RAM, as the documented example does.
    let ex = tmp("ms-ex");
    ok(run(
        &mut m,
        "memsave",
        json!({"val": 10, "size": 100, "filename": ex.to_str().unwrap()}),
    ));
    assert_eq!(std::fs::read(&ex).unwrap().len(), 100);
}

#[test]
fn memsave_errors() {
    let mut m = machine();
    let f = tmp("ms-err");
    let fs = f.to_str().unwrap();
    assert_eq!(
        run(
            &mut m,
            "memsave",
            json!({"val": 0, "size": 1, "filename": fs, "cpu-index": 7})
        )
        .unwrap_err(),
        "GenericError: Parameter 'cpu-index' expects a CPU number"
    );
    assert_eq!(
        run(
            &mut m,
            "memsave",
            json!({"val": 0x7000_0000_0000i64, "size": 16, "filename": fs})
        )
        .unwrap_err(),
        "GenericError: Invalid addr 0x0000700000000000/size 16 specified"
    );
    assert_eq!(
        run(
            &mut m,
            "pmemsave",
            json!({"val": 0, "size": 1, "filename": "/nonexistent/dir/x"})
        )
        .unwrap_err(),
        "GenericError: Could not open '/nonexistent/dir/x': No such file or directory"
    );
}

#[test]
fn idle_machine_state_is_small() {
    // The memory model allocates nothing until something writes.
    let m = machine();
    assert!(m.memory.written.is_empty());
    assert!(m.qom.tree.nodes.len() < 64, "{}", m.qom.tree.nodes.len());
}
