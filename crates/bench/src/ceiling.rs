//! The ceiling of the protocol benchmark: a QMP responder that parses nothing. It greets,
//! then answers every line with one fixed reply (the `query-version` answer), copying the
//! request's `id` bytes; blocking I/O, one write per batch of lines read together.
//!
//! When `gcc` (or `$CC`) is on the machine, the responder is the C program in
//! `ceiling/responder.c`, compiled here at `-O2` and run as its own process, like
//! qemu-storage-daemon. Otherwise the same loop in Rust, on its own thread with blocking std
//! I/O, stands in; the target's name says which one ran.
//!
//! [`floor`] is the same responder answering with given bytes (a large reply captured from a
//! real server): what serving that answer costs when nothing is done to make it.

use crate::proto::{wait_listening, Target};
use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

const SOURCE: &str = include_str!("ceiling/responder.c");
/// The `package` string both the ceiling and the in-process server report, so that replies
/// have the same length.
pub const PACKAGE: &str = "qmpkit";

struct ProcGuard(Child, PathBuf);

impl Drop for ProcGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        let _ = std::fs::remove_dir_all(&self.1);
    }
}

fn tmpdir(tag: &str) -> Result<PathBuf, String> {
    let dir = std::env::temp_dir().join(format!("qmpkit-bench-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(dir)
}

/// Compile and start the C responder (answering with the contents of `reply`, when given);
/// `Err` when there is no C compiler or it fails.
fn c_responder(dir: &Path, name: &str, reply: Option<&Path>) -> Result<Target, String> {
    let cc = std::env::var("CC").unwrap_or_else(|_| "gcc".into());
    let src = dir.join("responder.c");
    let exe = dir.join("responder");
    std::fs::write(&src, SOURCE).map_err(|e| e.to_string())?;
    let out = Command::new(&cc)
        .args(["-O2", "-o"])
        .arg(&exe)
        .arg(&src)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{cc}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{cc}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let socket = dir.join("ceiling.sock");
    let child = Command::new(&exe)
        .arg(&socket)
        .arg(PACKAGE)
        .args(reply)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("{}: {e}", exe.display()))?;
    let pid = child.id();
    let guard = ProcGuard(child, dir.to_path_buf());
    wait_listening(&socket)?;
    Ok(Target::unix(format!("{name} (C responder)"), socket, guard)
        .with_cpu(PathBuf::from(format!("/proc/{pid}"))))
}

/// The same responder in Rust, on its own thread (answering with `reply`, when given).
fn rust_responder(dir: &Path, name: &str, reply: Option<Vec<u8>>) -> Result<Target, String> {
    let socket = dir.join("ceiling.sock");
    let listener = UnixListener::bind(&socket).map_err(|e| e.to_string())?;
    std::thread::Builder::new()
        .name("ceiling".into())
        .spawn(move || {
            for s in listener.incoming().flatten() {
                respond(s, reply.as_deref());
            }
        })
        .map_err(|e| e.to_string())?;
    wait_listening(&socket)?;
    Ok(Target::unix(
        format!("{name} (Rust responder)"),
        socket,
        DirGuard(dir.to_path_buf()),
    ))
}

struct DirGuard(PathBuf);

impl Drop for DirGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn respond(mut s: UnixStream, reply: Option<&[u8]>) {
    let greeting = format!(
        "{{\"QMP\": {{\"version\": {{\"qemu\": {{\"micro\": 2, \"minor\": 0, \"major\": 10}}, \"package\": \"{PACKAGE}\"}}, \"capabilities\": [\"oob\"]}}}}\r\n"
    );
    let version = format!(
        "{{\"return\": {{\"qemu\": {{\"micro\": 2, \"minor\": 0, \"major\": 10}}, \"package\": \"{PACKAGE}\"}}"
    );
    let ret = reply.unwrap_or(version.as_bytes());
    if s.write_all(greeting.as_bytes()).is_err() {
        return;
    }
    let mut inb = vec![0u8; 1 << 16];
    let mut have = 0usize;
    let mut out = Vec::with_capacity(1 << 16);
    loop {
        let n = match s.read(&mut inb[have..]) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        have += n;
        let mut p = 0;
        out.clear();
        while let Some(nl) = inb[p..have].iter().position(|&b| b == b'\n') {
            let line = &inb[p..p + nl];
            if find(line, b"qmp_capabilities").is_some() {
                out.extend_from_slice(b"{\"return\": {}");
            } else {
                out.extend_from_slice(ret);
            }
            if let (Some(i), Some(c)) = (
                find(line, b"\"id\": "),
                line.iter().rposition(|&b| b == b'}'),
            ) {
                if c > i + 6 {
                    out.extend_from_slice(b", \"id\": ");
                    out.extend_from_slice(&line[i + 6..c]);
                }
            }
            out.extend_from_slice(b"}\r\n");
            p += nl + 1;
        }
        if !out.is_empty() && s.write_all(&out).is_err() {
            return;
        }
        inb.copy_within(p..have, 0);
        have -= p;
        if have == inb.len() {
            have = 0;
        }
    }
}

/// The ceiling target: the C responder if it compiles, else the Rust one.
pub fn target() -> Result<Target, String> {
    let dir = tmpdir("ceiling")?;
    match c_responder(&dir, "ceiling", None) {
        Ok(t) => Ok(t),
        Err(e) => {
            println!("proto: no C responder ({e}); the Rust responder is the ceiling");
            let dir = tmpdir("ceiling")?;
            rust_responder(&dir, "ceiling", None)
        }
    }
}

/// The responder answering every command with `reply` (a whole reply line, `\r\n` and
/// all, without an `id`), named `name`: the C one if it compiles, else the Rust one.
pub fn floor(name: &str, reply: &[u8]) -> Result<Target, String> {
    let body = reply
        .strip_suffix(b"}\r\n")
        .ok_or("the reply does not end a QMP line")?;
    let dir = tmpdir(name)?;
    let file = dir.join("reply");
    std::fs::write(&file, body).map_err(|e| format!("{}: {e}", file.display()))?;
    match c_responder(&dir, name, Some(&file)) {
        Ok(t) => Ok(t),
        Err(e) => {
            println!("{name}: no C responder ({e}); the Rust responder stands in");
            let dir = tmpdir(name)?;
            rust_responder(&dir, name, Some(body.to_vec()))
        }
    }
}
