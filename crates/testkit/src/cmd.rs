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

/// Creates with `qemu_img`, in `dir`, the qcow2 layers `files`, each over the one before it
/// (the first over `base`, an image of format `base_fmt`), named relative to `dir` in their
/// headers; each of size `size`, or its backing file's size without one. Panics with
/// qemu-img's words when it fails.
pub fn qcow2_chain(
    qemu_img: &Path,
    dir: &Path,
    base: &str,
    base_fmt: &str,
    files: &[&str],
    size: Option<&str>,
) {
    let (mut below, mut fmt) = (base, base_fmt);
    for &file in files {
        let mut args = vec!["create", "-q", "-f", "qcow2", "-b", below, "-F", fmt, file];
        args.extend(size);
        let (code, _, err) = run_in(qemu_img, dir, &args);
        assert_eq!(code, 0, "qemu-img {args:?}: {err}");
        (below, fmt) = (file, "qcow2");
    }
}

/// Connects to the unix socket at `path`, retrying for up to ten seconds: a server's socket
/// file appears when it binds, a moment before it listens (a connection then is refused).
/// Panics naming the socket when it never accepts.
pub fn connect_unix(path: &Path) -> std::os::unix::net::UnixStream {
    let t = std::time::Instant::now();
    loop {
        match std::os::unix::net::UnixStream::connect(path) {
            Ok(s) => return s,
            Err(e) if t.elapsed() > std::time::Duration::from_secs(10) => {
                panic!("connect to {}: {e}", path.display())
            }
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(10)),
        }
    }
}
