//! Finding the Python interpreter that has qemu.qmp, and qmp-shell next to it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

/// The Python interpreter that has qemu.qmp: `$QMPKIT_PYTHON`, else the venv `.ci/run` creates
/// (`.ci/venv` at the workspace root), else `python3` if it can import it. The error is the
/// reason to print after `skipped: `.
pub fn python() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("QMPKIT_PYTHON") {
        return Ok(PathBuf::from(p));
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.ci/venv/bin/python");
    if venv.exists() {
        return Ok(venv);
    }
    let ok = Command::new("python3")
        .args(["-c", "import qemu.qmp"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        Ok(PathBuf::from("python3"))
    } else {
        Err("QMPKIT_PYTHON is unset and python3 cannot import qemu.qmp".into())
    }
}

/// The qmp-shell entry point next to the interpreter (venv), or `qmp-shell` on PATH.
pub fn qmp_shell(python: &Path) -> PathBuf {
    if let Some(dir) = python.parent() {
        let p = dir.join("qmp-shell");
        if p.exists() {
            return p;
        }
    }
    PathBuf::from("qmp-shell")
}

/// Runs `cmd` with `stdin` as its input; asserts that it exits successfully (showing its
/// stderr otherwise) and returns its stdout.
pub fn output_of(mut cmd: Command, stdin: &[u8]) -> String {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e}", cmd.get_program().to_string_lossy()));
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin)
        .expect("write");
    let out = child.wait_with_output().expect("wait");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// qmp-shell (next to `python`) on `socket`, fed `input`: its stdout, once it has exited
/// successfully.
pub fn run_qmp_shell(python: &Path, socket: &Path, input: &[u8]) -> String {
    let mut cmd = Command::new(qmp_shell(python));
    cmd.arg(socket);
    output_of(cmd, input)
}

/// The replies qmp-shell printed: the JSON text after each `(QEMU) ` prompt.
pub fn qmp_shell_replies(stdout: &str) -> Vec<Value> {
    stdout
        .split("(QEMU) ")
        .skip(1)
        .filter_map(|s| serde_json::from_str(s.trim()).ok())
        .collect()
}

/// The interpreter from [`python`], or else print `skipped: <reason>` on stderr and return
/// from the calling test.
#[macro_export]
macro_rules! python_or_skip {
    () => {
        match $crate::python::python() {
            Ok(p) => p,
            Err(reason) => {
                $crate::skip::skip(&reason);
                return;
            }
        }
    };
}
