//! Do-nothing forwarders, the floor any QMP proxy in a process of its own stands on: each
//! client's bytes go to a connection of its own to the upstream and back, unread. The tools
//! section measures them beside `qmpkit proxy`, so that what the proxy adds splits into what
//! two more hops through another process cost on this machine (its wake-ups and copies) and
//! what the proxy's own work costs.
//!
//! The harness runs one as a process of its own: `QMPKIT_BENCH_FORWARDER="MODE UPSTREAM
//! LISTEN"` in its environment makes it a forwarder (see [`from_env`]). Modes:
//! - `threads`: a blocking thread per direction (a hop wakes exactly the thread that reads);
//! - `tokio`: one thread, a one-thread tokio runtime (epoll), a task per direction, tokio's
//!   own sockets (registered for reading and writing: a peer draining what was written wakes
//!   the process);
//! - `tokio-readable`: the same with sockets registered for reading only and written
//!   directly, as `qmpkit proxy` does — its structure with none of its work.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

const ENV: &str = "QMPKIT_BENCH_FORWARDER";

/// The forwarder modes, by name.
pub const MODES: &[&str] = &["threads", "tokio", "tokio-readable"];

/// When the environment asks for a forwarder, run it (until killed) and exit.
pub fn from_env() {
    let Ok(spec) = std::env::var(ENV) else {
        return;
    };
    let parts: Vec<&str> = spec.split(' ').collect();
    let [mode, up, listen] = parts[..] else {
        eprintln!("{ENV}: expected MODE UPSTREAM LISTEN, got {spec}");
        std::process::exit(2);
    };
    let (up, listen) = (PathBuf::from(up), PathBuf::from(listen));
    // Bound under another name and renamed: the path appears once it accepts.
    let tmp = listen.with_extension("binding");
    let _ = std::fs::remove_file(&tmp);
    let l = match UnixListener::bind(&tmp).and_then(|l| std::fs::rename(&tmp, &listen).map(|()| l))
    {
        Ok(l) => l,
        Err(e) => {
            eprintln!("{ENV}: {}: {e}", listen.display());
            std::process::exit(2);
        }
    };
    match mode {
        "threads" => threads(l, &up),
        "tokio" => tokio_forward(l, &up),
        "tokio-readable" => tokio_readable(l, &up),
        _ => eprintln!("{ENV}: unknown mode {mode}"),
    }
    std::process::exit(2);
}

/// Copy until either side ends, then shut both down (so the upstream sees its client go).
fn pump(mut from: UnixStream, mut to: UnixStream) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Both);
    let _ = from.shutdown(std::net::Shutdown::Both);
}

fn threads(l: UnixListener, up: &Path) {
    for c in l.incoming().flatten() {
        let Ok(u) = UnixStream::connect(up) else {
            continue;
        };
        let (Ok(c2), Ok(u2)) = (c.try_clone(), u.try_clone()) else {
            continue;
        };
        std::thread::spawn(move || pump(c, u));
        std::thread::spawn(move || pump(u2, c2));
    }
}

/// On a one-thread tokio runtime, for each client accepted on `l`: a connection to `up`, and
/// `pumps` started on the two (non-blocking std streams, client first).
fn tokio_accept<F>(l: UnixListener, up: &Path, pumps: F)
where
    F: Fn(UnixStream, UnixStream),
{
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    rt.block_on(async {
        let _ = l.set_nonblocking(true);
        let Ok(l) = tokio::net::UnixListener::from_std(l) else {
            return;
        };
        while let Ok((c, _)) = l.accept().await {
            let (Ok(c), Ok(u)) = (c.into_std(), UnixStream::connect(up)) else {
                continue;
            };
            let _ = u.set_nonblocking(true);
            pumps(c, u);
        }
    });
}

/// Copy with tokio's own sockets until either side ends.
async fn pump_tokio(r: tokio::net::unix::OwnedReadHalf, mut w: tokio::net::unix::OwnedWriteHalf) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut r = r;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if w.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
        }
    }
    let _ = w.shutdown().await;
}

fn tokio_forward(l: UnixListener, up: &Path) {
    tokio_accept(l, up, |c, u| {
        let (Ok(c), Ok(u)) = (
            tokio::net::UnixStream::from_std(c),
            tokio::net::UnixStream::from_std(u),
        ) else {
            return;
        };
        let (cr, cw) = c.into_split();
        let (ur, uw) = u.into_split();
        tokio::spawn(pump_tokio(cr, uw));
        tokio::spawn(pump_tokio(ur, cw));
    });
}

/// Copy from `from` (registered for readability only: no wake-up when the peer drains what was
/// written to it) to `to` (written directly, never registered), until either ends.
async fn pump_readable(from: UnixStream, mut to: UnixStream) {
    use tokio::io::unix::AsyncFd;
    use tokio::io::Interest;
    // SAFETY: the stream owns its descriptor, open and the same while the AsyncFd holds it.
    let Ok(afd) = (unsafe { AsyncFd::register_with_interest(from, Interest::READABLE) }) else {
        return;
    };
    let mut buf = vec![0u8; 64 * 1024];
    'outer: loop {
        let Ok(mut guard) = afd.readable().await else {
            break;
        };
        let n = match guard.try_io(|s| (&*s.get_ref()).read(&mut buf)) {
            Err(_would_block) => continue,
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => n,
        };
        if n < buf.len() {
            guard.clear_ready();
        }
        let mut at = 0;
        while at < n {
            match to.write(&buf[at..n]) {
                Ok(k) => at += k,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    tokio::task::yield_now().await
                }
                Err(_) => break 'outer,
            }
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Both);
}

fn tokio_readable(l: UnixListener, up: &Path) {
    tokio_accept(l, up, |c, u| {
        let (Ok(c2), Ok(u2)) = (c.try_clone(), u.try_clone()) else {
            return;
        };
        tokio::spawn(pump_readable(c, u2));
        tokio::spawn(pump_readable(u, c2));
    });
}

/// Start a forwarder process in `mode` from `listen` to `upstream`.
pub fn spawn(mode: &str, upstream: &Path, listen: &Path) -> Result<Child, String> {
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    let _ = std::fs::remove_file(listen);
    Command::new(me)
        .env(
            ENV,
            format!("{mode} {} {}", upstream.display(), listen.display()),
        )
        .env_remove("QMPKIT_BENCH_ONLY")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| format!("forwarder: {e}"))
}
