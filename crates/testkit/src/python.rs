//! Finding the Python interpreter that has qemu.qmp, and qmp-shell next to it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

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
