//! `qmpkit schema check` on a terminal: each diagnostic once, then the
//! source line with a caret under the offending member (the front end
//! keeps each member's position). Run on a real pseudo-terminal.

use std::io::Read;
use std::os::fd::{FromRawFd, OwnedFd};
use std::process::{Command, Stdio};

/// Runs `qmpkit args` in `dir` with stderr on a fresh pty; stderr's text
/// (the terminal's CR LF turned back into LF).
fn stderr_on_pty(dir: &std::path::Path, args: &[&str]) -> String {
    let (mut master, mut slave) = (-1, -1);
    // SAFETY: openpty fills in two descriptors we then own.
    let r = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(r, 0, "openpty");
    // SAFETY: fresh descriptors from openpty, owned here.
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    let mut child = Command::new(env!("CARGO_BIN_EXE_qmpkit"))
        .args(args)
        .current_dir(dir)
        .env_remove("QMPKIT_COLOR")
        .stdout(Stdio::null())
        .stderr(Stdio::from(slave))
        .spawn()
        .expect("spawn");
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(1));
    let mut out = Vec::new();
    let mut f = std::fs::File::from(master);
    // The slave is closed once the child is gone: reading ends with EIO.
    let mut buf = [0u8; 4096];
    loop {
        match f.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&out).replace("\r\n", "\n")
}

#[test]
fn diagnostic_once_with_a_caret_at_the_member() {
    let dir = std::env::temp_dir().join(format!("qmpkit-pty-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("unknown.json"),
        "{ 'struct': 'Foo',\n  'data': { 'a': 'int',\n            'c': 'Nope' } }\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("clash.json"),
        "{ 'struct': 'Aa', 'data': { 'x': 'int' } }\n{ 'struct': 'Bb', 'base': 'Aa',\n  'data': { 'y': 'int',\n   'x': 'str' } }\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("upper.json"),
        "{ 'struct': 'Foo', 'data': { 'ok': 'int', 'notOk': 'str' } }\n",
    )
    .unwrap();
    assert_eq!(
        stderr_on_pty(&dir, &["schema", "check", "unknown.json"]),
        "\
unknown.json: In struct 'Foo':
unknown.json:1: member 'c' uses unknown type 'Nope'
 --> unknown.json:3:13
  |
3 |             'c': 'Nope' } }
  |             ^^^
"
    );
    assert_eq!(
        stderr_on_pty(&dir, &["schema", "check", "clash.json"]),
        "\
clash.json: In struct 'Bb':
clash.json:2: member 'x' collides with member 'x' of type 'Aa'
 --> clash.json:4:4
  |
4 |    'x': 'str' } }
  |    ^^^
"
    );
    assert_eq!(
        stderr_on_pty(&dir, &["schema", "check", "upper.json"]),
        "\
upper.json: In struct 'Foo':
upper.json:1: name of 'data' member 'notOk' must not use uppercase or '_'
note: accepted with --dialect legacy
 --> upper.json:1:43
  |
1 | { 'struct': 'Foo', 'data': { 'ok': 'int', 'notOk': 'str' } }
  |                                           ^^^^^^^
"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
