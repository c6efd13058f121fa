//! `qmpkit help COMMAND` prints that command's help, and `serve --schema`
//! reports a schema it cannot load on one line, as the binary's other
//! errors.

use std::path::Path;

fn qmpkit(args: &[&str]) -> (i32, String, String) {
    qmpkit_testkit::cmd::run_in(
        Path::new(env!("CARGO_BIN_EXE_qmpkit")),
        &std::env::temp_dir(),
        args,
    )
}

#[test]
fn help_command_is_command_help() {
    let (_, top, _) = qmpkit(&["help"]);
    for cmd in [
        &["serve"][..],
        &["schema"],
        &["schema", "check"],
        &["schema", "diff"],
        &["qmp"],
        &["proxy"],
        &["replay"],
        &["shell"],
        &["completions"],
        &["man"],
    ] {
        let help = qmpkit(&[&["help"], cmd].concat());
        let direct = qmpkit(&[cmd, &["--help"]].concat());
        assert_eq!(help, direct, "help {cmd:?}");
        assert_eq!(help.0, 0, "help {cmd:?}");
        assert_ne!(help.1, top, "help {cmd:?} printed the top-level help");
    }
    let (code, _, err) = qmpkit(&["help", "bogus"]);
    assert_eq!(code, 2);
    assert_eq!(err, "qmpkit: unknown command 'bogus' (try 'qmpkit help')\n");
}

#[test]
fn serve_schema_errors_are_one_line() {
    let (code, out, err) = qmpkit(&["serve", "--schema", "/nonexistent.json"]);
    assert_eq!((code, out.as_str()), (1, ""));
    assert_eq!(
        err,
        "qmpkit serve: can't read '/nonexistent.json': No such file or directory (os error 2)\n"
    );
    let dir = std::env::temp_dir().join(format!("qmpkit-help-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("bad.json");
    std::fs::write(
        &f,
        "{ 'struct': 'Foo',\n  'data': { 'a': 'int',\n            'c': 'Nope' } }\n",
    )
    .unwrap();
    let fs = f.to_str().unwrap();
    let (code, _, err) = qmpkit(&["serve", "--schema", fs]);
    assert_eq!(code, 1);
    assert_eq!(
        err,
        format!("qmpkit serve: {fs}:1: member 'c' uses unknown type 'Nope'\n")
    );
    std::fs::write(&f, "{ 'struct': 'Foo', 'data': { 'notOk': 'str' } }\n").unwrap();
    let (code, _, err) = qmpkit(&["serve", "--dialect", "modern", "--schema", fs]);
    assert_eq!(code, 1);
    assert_eq!(
        err,
        format!("qmpkit serve: {fs}:1: name of 'data' member 'notOk' must not use uppercase or '_' (accepted with --dialect legacy)\n")
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Output cut short by its reader (`qmpkit serve --list-handlers | head -1`)
/// ends the command with success and nothing on stderr.
#[test]
fn a_closed_pipe_ends_output_quietly() {
    use std::process::{Command, Stdio};
    for args in [
        &["help"][..],
        &["serve", "--help"],
        &["serve", "--list-handlers"],
        &["serve", "--print-config"],
    ] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_qmpkit"))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn qmpkit");
        // The reader goes away before reading anything.
        drop(child.stdout.take());
        let out = child.wait_with_output().expect("wait");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
        if args != ["serve", "--list-handlers"] {
            assert_eq!(stderr, "", "{args:?}");
        }
    }
}
