//! Running a program to completion.

use std::path::Path;
use std::process::Command;

/// Runs `program` with `args` in `dir`; returns its exit code (-1 when killed by a signal),
/// stdout and stderr.
pub fn run_in(program: &Path, dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(program)
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", program.display()));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
