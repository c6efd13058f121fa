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

/// Waits up to `limit` for `path` to appear: whether it did.
pub fn wait_path(path: &Path, limit: std::time::Duration) -> bool {
    let t = std::time::Instant::now();
    while !path.exists() {
        if t.elapsed() > limit {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    true
}

/// Waits up to ten seconds for `path` (a socket a server is about to create) to appear;
/// panics naming it when it never does.
pub fn wait_for(path: &Path) {
    let t = std::time::Instant::now();
    while !path.exists() {
        assert!(
            t.elapsed() < std::time::Duration::from_secs(10),
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}
