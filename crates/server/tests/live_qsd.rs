//! Differential test against the real qemu-storage-daemon 10.0.2: the same protocol-level
//! probes (negotiation, envelope, ids, JSON dialect, argument errors) sent to it and to an
//! in-process server over the same schema must get the same bytes back. Skipped when
//! qemu-storage-daemon (10.0.2) is absent.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

/// Each probe is followed by a `query-version` with a unique id, so that every probe's
/// replies are known to be complete when that one arrives.
const SESSION_1: &[&[u8]] = &[
    b"{\"execute\": \"query-version\"}",
    b"{\"exec-oob\": \"qmp_capabilities\"}",
    b"{\"execute\": \"qmp_capabilities\", \"arguments\": []}",
    b"{\"execute\": \"qmp_capabilities\", \"arguments\": {\"enable\": \"oob\"}}",
    b"{\"execute\": \"qmp_capabilities\", \"arguments\": {\"enable\": [1]}}",
    b"{\"execute\": \"qmp_capabilities\", \"arguments\": {\"enable\": [\"oob\"], \"x\": 1}}",
    b"{\"execute\": \"qmp_capabilities\", \"arguments\": {\"enable\": null}}",
    b"{\"execute\": \"qmp_capabilities\", \"arguments\": {\"enable\": [\"bogus\"]}}",
    b"{\"execute\": \"qmp_capabilities\", \"arguments\": {\"x\": 1}}",
    b"{\"execute\": \"qmp_capabilities\", \"arguments\": {\"enable\": [\"oob\", \"oob\"]}, \"id\": [1, {\"b\": 2, \"a\": 1}]}",
    b"{\"exec-oob\": \"qmp_capabilities\", \"id\": 9}",
    b"{\"execute\": \"qmp_capabilities\", \"arguments\": {\"enable\": [\"bogus\"]}, \"id\": 4}",
    b"{\"execute\": \"qmp_capabilities\", \"arguments\": {\"x\": 1}, \"id\": 4}",
    b"{\"execute\": \"qmp_capabilities\"}",
    b"{\"exec-oob\": \"query-version\", \"id\": 2}",
    b"{\"exec-oob\": \"job-pause\", \"id\": 5}",
    b"{\"exec-oob\": \"job-pause\", \"arguments\": 1, \"id\": 5}",
    b"{\"exec-oob\": \"no-such\", \"id\": 5}",
    b"{\"execute\": \"query-version\", \"id\": 1, \"arguments\": {}, \"extra\": 1}",
    b"{\"execute\": \"\"}",
    b"{\"execute\": \"QUERY-VERSION\"}",
    b"{\"execute\": \"query\\u002dversion\", \"id\": \"\\u0041\"}",
    b"{\"execute\": \"query-version\"} garbage",
    b"\xff",
    b"{\"execute\": \"query-version\", \"id\": \"\\u0000\"}",
    b"{\"execute\": \"query-version\", \"id\": [1.0, -0, 1E+2, 0.1e-5, 123456789012345678901234567890, -9223372036854775808, 18446744073709551615, 18446744073709551616]}",
    b"{\"execute\": \"query-version\", \"id\": \"a\\\"b\\\\c\\/\\b\\f\\n\\r\\t\\u007f\\u0080\"}",
    b"{'execute': 'query-version', 'id': 'it\\'s'}",
    b"{\"execute\": \"query-version\", \"id\": {\"z\": 1, \"a\": 2, \"m\": {\"y\": 1, \"b\": 2}}}",
    b"{\"execute\": \"query-version\", \"arguments\": {\"a\": 1, \"b\": 2}}",
    b"{\"execute\": \"query-commands\", \"arguments\": {\"x\": 1}}",
    b"{\"execute\": \"qom-list\", \"arguments\": {\"path\": \"/\", \"b\": 1, \"a\": 2, \"c\": 3}}",
    b"{\"execute\": \"blockdev-add\", \"arguments\": {\"driver\": \"file\"}}",
    b"{\"execute\": \"block-job-set-speed\", \"arguments\": {\"device\": \"x\", \"speed\": 1.5}}",
    b"{\"execute\": \"job-pause\", \"arguments\": {\"id\": true}}",
    b"{\"execute\": \"nbd-server-start\", \"arguments\": {\"addr\": {\"type\": \"inet\", \"data\": {\"host\": \"x\"}}}}",
    b"{\"execute\": \"object-add\", \"arguments\": {\"qom-type\": \"nope\", \"id\": \"o\"}}",
    b"{\"execute\": \"query-commands\"}",
];

/// Greeting, then for each probe the lines up to (not including) its sync reply.
fn run(path: &Path, probes: &[&[u8]]) -> Vec<Vec<Vec<u8>>> {
    let t = Instant::now();
    let s = loop {
        match UnixStream::connect(path) {
            Ok(s) => break s,
            Err(e) if t.elapsed() > Duration::from_secs(10) => panic!("{}: {e}", path.display()),
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    };
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut w = s.try_clone().unwrap();
    let mut r = BufReader::new(s);
    let mut line = Vec::new();
    r.read_until(b'\n', &mut line).unwrap();
    let mut all = vec![vec![line]];
    for (i, p) in probes.iter().enumerate() {
        let sync = format!("{{\"execute\": \"query-version\", \"id\": \"sync-{i}\"}}\n");
        let mut msg = p.to_vec();
        msg.push(b'\n');
        msg.extend_from_slice(sync.as_bytes());
        w.write_all(&msg).unwrap();
        let tag = format!("\"id\": \"sync-{i}\"");
        let mut lines = Vec::new();
        loop {
            let mut l = Vec::new();
            let n = r.read_until(b'\n', &mut l).unwrap_or(0);
            assert!(n > 0, "{}: no sync reply after probe {i}", path.display());
            if String::from_utf8_lossy(&l).contains(&tag) {
                break;
            }
            lines.push(l);
        }
        all.push(lines);
    }
    all
}

#[test]
fn same_bytes_as_qemu_storage_daemon() {
    let qsd = match qmpkit_testkit::qsd::start() {
        Ok(q) => q,
        Err(reason) => qmpkit_testkit::skip!("{reason}"),
    };
    let theirs = run(&qsd.socket, SESSION_1);
    let ours = common::qsd::twin(&theirs[0][0]);
    let mine = run(&ours.socket, SESSION_1);
    let mut diffs = Vec::new();
    for (i, (a, b)) in theirs.iter().zip(&mine).enumerate() {
        if a != b {
            let show = |v: &Vec<Vec<u8>>| {
                v.iter()
                    .map(|l| String::from_utf8_lossy(l).trim_end().to_string())
                    .collect::<Vec<_>>()
                    .join(" | ")
            };
            let probe = if i == 0 {
                "greeting".to_string()
            } else {
                String::from_utf8_lossy(SESSION_1[i - 1]).into_owned()
            };
            diffs.push(format!("{probe}\n   qsd  {}\n   ours {}", show(a), show(b)));
        }
    }
    for d in &diffs {
        eprintln!("{d}");
    }
    assert!(diffs.is_empty(), "{} probes differ", diffs.len());
}
