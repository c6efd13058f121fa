//! QEMU's monitor variants in `qmpkit serve`: `pretty=on` QMP output and the
//! readline human monitor, byte for byte as QEMU writes them.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn qmpkit() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_BIN_EXE_qmpkit"))
}

/// `qmpkit serve ARGS` with `input` on stdin; stdout.
fn serve_stdio(args: &[&str], input: &[u8]) -> String {
    let mut child = Command::new(qmpkit())
        .arg("serve")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(input).expect("write");
    drop(stdin);
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success());
    String::from_utf8(out.stdout).expect("utf-8")
}

#[test]
fn pretty_qmp_is_qemus_layout() {
    let input = b"{\"execute\":\"qmp_capabilities\"}\n{\"execute\":\"query-status\"}\n{\"execute\":\"query-block\",\"id\":[]}\n{\"execute\":\"nope\"}\n{\"execute\":\"quit\"}\n";
    // QEMU's pretty printer: four spaces a level, CR LF line ends, empty
    // containers over two lines.
    let want = "\
{\r
    \"QMP\": {\r
        \"version\": {\r
            \"qemu\": {\r
                \"micro\": 0,\r
                \"minor\": 12,\r
                \"major\": 2\r
            },\r
            \"package\": \"\"\r
        },\r
        \"capabilities\": [\r
        ]\r
    }\r
}\r
{\r
    \"return\": {\r
    }\r
}\r
{\r
    \"return\": {\r
        \"status\": \"running\",\r
        \"singlestep\": false,\r
        \"running\": true\r
    }\r
}\r
";
    for args in [
        &[
            "-chardev",
            "stdio,id=m",
            "-mon",
            "chardev=m,mode=control,pretty=on",
        ][..],
        &["-qmp-pretty", "stdio"],
    ] {
        let out = serve_stdio(args, input);
        assert!(out.starts_with(want), "{args:?}:\n{out}");
        let rest = &out[want.len()..];
        assert!(
            rest.starts_with("{\r\n    \"return\": [\r\n"),
            "{args:?}:\n{rest}"
        );
        assert!(rest.contains(
            "{\r\n    \"error\": {\r\n        \"class\": \"CommandNotFound\",\r\n        \"desc\": \"The command nope has not been found\"\r\n    }\r\n}\r\n"
        ), "{args:?}:\n{rest}");
        assert!(
            rest.contains("\r\n    \"id\": [\r\n    ]\r\n}\r\n"),
            "{rest}"
        );
        assert!(rest.ends_with("    \"event\": \"SHUTDOWN\",\r\n    \"data\": {\r\n        \"guest\": false,\r\n        \"reason\": \"host-qmp-quit\"\r\n    }\r\n}\r\n"), "{rest}");
    }
}

#[test]
fn readline_monitor_speaks_as_qemus() {
    let dir = std::env::temp_dir().join(format!("qmpkit-hmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let hmp = dir.join("hmp.sock");
    let qmp = dir.join("qmp.sock");
    let mut child = Command::new(qmpkit())
        .arg("serve")
        .args(["-S", "-chardev"])
        .arg(format!(
            "socket,id=h,path={},server=on,wait=off",
            hmp.display()
        ))
        .args(["-mon", "chardev=h,mode=readline", "-qmp"])
        .arg(format!("unix:{},server=on,wait=off", qmp.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let t = Instant::now();
    while !hmp.exists() {
        assert!(t.elapsed() < Duration::from_secs(10), "no monitor socket");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut s = qmpkit_testkit::cmd::connect_unix(&hmp);
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    // Reads until `until` ends what was read.
    let read_until = |s: &mut UnixStream, until: &[u8]| -> Vec<u8> {
        let mut got = Vec::new();
        let mut b = [0u8; 4096];
        while !got.ends_with(until) {
            match s.read(&mut b) {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&b[..n]),
            }
        }
        got
    };
    assert_eq!(
        read_until(&mut s, b"(qemu) "),
        b"QEMU 2.12.0 monitor - type 'help' for more information\r\n(qemu) "
    );
    // Real QEMU 10.0.2's bytes for the same input (its version aside).
    s.write_all(b"bogus\n").unwrap();
    assert_eq!(
        read_until(&mut s, b"(qemu) "),
        &b"b\x1b[K\x1b[Dbo\x1b[K\x1b[D\x1b[Dbog\x1b[K\x1b[D\x1b[D\x1b[Dbogu\x1b[K\x1b[D\x1b[D\x1b[D\x1b[Dbogus\x1b[K\r\nunknown command: 'bogus'\r\n(qemu) "[..]
    );
    s.write_all(b"\n").unwrap();
    assert_eq!(read_until(&mut s, b"(qemu) "), b"\r\n(qemu) ");
    s.write_all(b"c\n").unwrap();
    assert_eq!(read_until(&mut s, b"(qemu) "), b"c\x1b[K\r\n(qemu) ");
    s.write_all(b"q\n").unwrap();
    assert_eq!(read_until(&mut s, b"\r\n"), b"q\x1b[K\r\n");
    // quit ends the process.
    let t = Instant::now();
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            assert!(st.success());
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "still running after quit"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = std::fs::remove_dir_all(&dir);
}
