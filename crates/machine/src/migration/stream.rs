//! The migration stream and the threads that move it.
//!
//! # Format
//!
//! ```text
//! "QMPKIT-MIGRATION 1\n"                      sent as soon as the channel is up
//! <one line of JSON: the state>"\n"           sent at switchover (or when postcopy starts)
//! { <u64 BE page number> <4096 bytes> }*      the RAM pages the guest wrote
//! <u64 BE 0xFFFF_FFFF_FFFF_FFFE>              postcopy only: the destination may run now
//! <u64 BE 0xFFFF_FFFF_FFFF_FFFF>              end of stream
//! ```
//!
//! The state line is a JSON object: `ram-size` (bytes; must equal the destination's),
//! `run-state` (`running` or another state: whether the destination starts running),
//! `devices` (`[[path name, type], …]` of every device: the destination must have the same
//! set), `drives` (`[{"id", "tray-open", "locked", "medium": {"file", "format",
//! "read-only", "size", "node-name"} | null}, …]`). RAM pages that are not in the stream
//! hold the deterministic content every machine of that RAM size has (see
//! [`crate::memory`]), so only written pages travel.
//!
//! # Threads
//!
//! The machine never blocks on I/O: an outgoing migration owns a [`Sender`], a std thread
//! that connects (or starts the command, or takes the descriptor), writes what it is handed
//! and reports what happened in shared state that the machine's timers poll; an incoming
//! one owns a [`Receiver`], a thread that accepts one connection and reads the stream into
//! a [`Loaded`] value. Dropping either stops its thread (sockets are shut down; a listener
//! waits in `poll(2)` beside one end of a socket pair that the drop closes), so a machine
//! that goes away leaves no thread behind that holds a resource, and a fleet of listening
//! machines costs no CPU while it waits.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream, ToSocketAddrs};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::devices::strerror;
use crate::fdsets::HostFile;
use crate::memory::PAGE;

pub const MAGIC: &[u8] = b"QMPKIT-MIGRATION 1\n";
pub const END: u64 = u64::MAX;
pub const RUN: u64 = u64::MAX - 1;

/// The state line.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "kebab-case")]
pub struct StateLine {
    pub ram_size: u64,
    pub run_state: String,
    pub devices: Vec<(String, String)>,
    pub drives: Vec<DriveState>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "kebab-case")]
pub struct DriveState {
    pub id: String,
    pub tray_open: bool,
    pub locked: bool,
    pub medium: Option<MediumState>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "kebab-case")]
pub struct MediumState {
    pub file: String,
    pub format: String,
    pub read_only: bool,
    pub size: u64,
    pub node_name: String,
}

/// The state and the pages, encoded (everything after the magic line, up to the marker).
pub fn encode(state: &StateLine, pages: &[(u64, &[u8; PAGE as usize])]) -> Vec<u8> {
    let mut out = serde_json::to_vec(state).unwrap_or_default();
    out.push(b'\n');
    out.reserve(pages.len() * (8 + PAGE as usize) + 8);
    for (n, data) in pages {
        out.extend_from_slice(&n.to_be_bytes());
        out.extend_from_slice(&data[..]);
    }
    out
}

/// Where an outgoing migration goes.
#[derive(Debug)]
pub enum Target {
    Tcp(String),
    Unix(String),
    Exec(String),
    /// A descriptor the client passed (`fd:NAME`).
    Fd(OwnedFd),
    /// A file opened for `file:` (perhaps through an fd set).
    File(HostFile),
}

/// What the sending thread reports.
#[derive(Debug, Default)]
pub struct SendState {
    /// The channel is up (magic sent).
    pub connected: bool,
    /// Every message handed so far is written.
    pub flushed: bool,
    /// Messages handed so far.
    pub handed: u64,
    /// Messages written so far.
    pub written: u64,
    pub error: Option<String>,
}

enum Conn {
    Tcp(TcpStream),
    Unix(UnixStream),
    Child(Child),
    File(HostFile),
}

impl Conn {
    fn writer(&mut self) -> Option<&mut dyn Write> {
        match self {
            Conn::Tcp(s) => Some(s),
            Conn::Unix(s) => Some(s),
            Conn::Child(c) => c.stdin.as_mut().map(|w| w as &mut dyn Write),
            Conn::File(f) => Some(f),
        }
    }
}

/// A way to break a blocked write from outside.
enum Breaker {
    Tcp(TcpStream),
    Unix(UnixStream),
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// The sending side: a thread that writes what it is handed.
pub struct Sender {
    tx: Option<mpsc::Sender<Vec<u8>>>,
    pub state: Arc<Mutex<SendState>>,
    breaker: Arc<Mutex<Option<Breaker>>>,
    stop: Arc<AtomicBool>,
}

impl Sender {
    /// Start the thread: it connects to `target`, then sends the magic line.
    pub fn start(target: Target) -> Sender {
        let (tx, rx) = mpsc::channel::<Vec<u8>>();
        let state = Arc::new(Mutex::new(SendState::default()));
        let breaker = Arc::new(Mutex::new(None));
        let stop = Arc::new(AtomicBool::new(false));
        let (st, br, sp) = (state.clone(), breaker.clone(), stop.clone());
        let spawned = std::thread::Builder::new()
            .name("qmpkit-migrate-out".into())
            .spawn(move || send_thread(target, rx, st, br, sp));
        if let Err(e) = spawned {
            lock(&state).error = Some(format!("Unable to start the migration thread: {e}"));
        }
        Sender {
            tx: Some(tx),
            state,
            breaker,
            stop,
        }
    }

    /// Hand `data` to the thread.
    pub fn send(&mut self, data: Vec<u8>) {
        if let Some(tx) = &self.tx {
            lock(&self.state).handed += 1;
            if tx.send(data).is_err() {
                let mut s = lock(&self.state);
                if s.error.is_none() {
                    s.error = Some("Channel error: Input/output error".into());
                }
            }
        }
    }

    /// Whether everything handed has been written.
    pub fn all_written(&self) -> bool {
        let s = lock(&self.state);
        s.written == s.handed
    }

    /// The channel is up.
    pub fn connected(&self) -> bool {
        lock(&self.state).connected
    }

    pub fn error(&self) -> Option<String> {
        lock(&self.state).error.clone()
    }

    /// Stop now: break a blocked write, end the thread.
    pub fn abort(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.tx = None;
        match lock(&self.breaker).take() {
            Some(Breaker::Tcp(s)) => {
                let _ = s.shutdown(Shutdown::Both);
            }
            Some(Breaker::Unix(s)) => {
                let _ = s.shutdown(Shutdown::Both);
            }
            None => {}
        }
    }

    /// No more data: the thread closes the channel once it has written everything.
    pub fn finish(&mut self) {
        self.tx = None;
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        if !self.all_written() {
            self.abort();
        }
        self.tx = None;
    }
}

fn connect(target: Target, breaker: &Mutex<Option<Breaker>>) -> Result<Conn, String> {
    match target {
        Target::Tcp(addr) => {
            let fail = |e: &io::Error| format!("Failed to connect to '{addr}': {}", strerror(e));
            let addrs = addr
                .to_socket_addrs()
                .map_err(|e| format!("address resolution failed for {addr}: {}", strerror(&e)))?;
            let mut last = io::Error::from_raw_os_error(libc::ECONNREFUSED);
            for a in addrs {
                match TcpStream::connect(a) {
                    Ok(s) => {
                        if let Ok(c) = s.try_clone() {
                            *lock(breaker) = Some(Breaker::Tcp(c));
                        }
                        return Ok(Conn::Tcp(s));
                    }
                    Err(e) => last = e,
                }
            }
            Err(fail(&last))
        }
        Target::Unix(path) => match UnixStream::connect(&path) {
            Ok(s) => {
                if let Ok(c) = s.try_clone() {
                    *lock(breaker) = Some(Breaker::Unix(c));
                }
                Ok(Conn::Unix(s))
            }
            Err(e) => Err(format!("Failed to connect to '{path}': {}", strerror(&e))),
        },
        Target::Exec(cmd) => Command::new("/bin/sh")
            .arg("-c")
            .arg(&cmd)
            .stdin(Stdio::piped())
            .spawn()
            .map(Conn::Child)
            .map_err(|e| format!("Unable to start the command: {}", strerror(&e))),
        Target::Fd(fd) => Ok(Conn::File(HostFile::plain(std::fs::File::from(fd)))),
        Target::File(f) => Ok(Conn::File(f)),
    }
}

fn write_words(conn: &Conn, e: &io::Error) -> String {
    match conn {
        Conn::Child(_) => format!("Unable to write to command: {}", strerror(e)),
        Conn::File(_) => format!("Unable to write to file: {}", strerror(e)),
        _ => format!("Unable to write to socket: {}", strerror(e)),
    }
}

fn send_thread(
    target: Target,
    rx: mpsc::Receiver<Vec<u8>>,
    state: Arc<Mutex<SendState>>,
    breaker: Arc<Mutex<Option<Breaker>>>,
    stop: Arc<AtomicBool>,
) {
    let mut conn = match connect(target, &breaker) {
        Ok(c) => c,
        Err(e) => {
            lock(&state).error = Some(e);
            return;
        }
    };
    let put = |conn: &mut Conn, data: &[u8]| -> Result<(), String> {
        let r = match conn.writer() {
            Some(w) => w.write_all(data).and_then(|()| w.flush()),
            None => Err(io::Error::from_raw_os_error(libc::EPIPE)),
        };
        r.map_err(|e| write_words(conn, &e))
    };
    if let Err(e) = put(&mut conn, MAGIC) {
        lock(&state).error = Some(e);
        return;
    }
    lock(&state).connected = true;
    while let Ok(data) = rx.recv() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        if let Err(e) = put(&mut conn, &data) {
            lock(&state).error = Some(e);
            return;
        }
        let mut s = lock(&state);
        s.written += 1;
        s.flushed = s.written == s.handed;
    }
    // Close the channel; a command gets end of input and is waited for.
    if let Conn::Child(c) = &mut conn {
        drop(c.stdin.take());
        let _ = c.wait();
    }
}

/// Where an incoming migration comes from.
#[derive(Debug)]
pub enum Source {
    Tcp(TcpListener),
    Unix(UnixListener, String),
    Exec(String),
    Fd(OwnedFd),
    File(HostFile),
}

/// What the destination read.
#[derive(Debug)]
pub struct Loaded {
    pub state: StateLine,
    pub pages: Vec<(u64, Box<[u8; PAGE as usize]>)>,
    /// The source said the destination may run (postcopy); the end has not come yet.
    pub postcopy: bool,
}

/// What the receiving thread reports.
#[derive(Debug, Default)]
pub struct RecvState {
    /// The magic line arrived.
    pub connected: bool,
    /// State and pages, once read (taken by the machine).
    pub loaded: Option<Loaded>,
    /// The end of the stream arrived.
    pub ended: bool,
    pub error: Option<String>,
}

/// The receiving side.
pub struct Receiver {
    pub state: Arc<Mutex<RecvState>>,
    stop: Arc<AtomicBool>,
    breaker: Arc<Mutex<Option<Breaker>>>,
    unix_path: Option<String>,
    /// Closed on drop: wakes a thread waiting for a connection.
    wake: Option<UnixStream>,
}

impl Receiver {
    pub fn start(source: Source) -> Receiver {
        let state = Arc::new(Mutex::new(RecvState::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let breaker = Arc::new(Mutex::new(None));
        let unix_path = match &source {
            Source::Unix(_, p) => Some(p.clone()),
            _ => None,
        };
        let (wake, woken) = match UnixStream::pair() {
            Ok((a, b)) => (Some(a), Some(b)),
            Err(_) => (None, None),
        };
        let (st, sp, br) = (state.clone(), stop.clone(), breaker.clone());
        let spawned = std::thread::Builder::new()
            .name("qmpkit-migrate-in".into())
            .spawn(move || {
                let r = recv_thread(source, &st, &sp, &br, woken.as_ref());
                if let Err(e) = r {
                    let mut s = lock(&st);
                    if s.error.is_none() && !s.ended {
                        s.error = Some(e);
                    }
                }
            });
        if let Err(e) = spawned {
            lock(&state).error = Some(format!("Unable to start the migration thread: {e}"));
        }
        Receiver {
            state,
            stop,
            breaker,
            unix_path,
            wake,
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // A thread still waiting for its connection wakes up and sees `stop`.
        drop(self.wake.take());
        match lock(&self.breaker).take() {
            Some(Breaker::Tcp(s)) => {
                let _ = s.shutdown(Shutdown::Both);
            }
            Some(Breaker::Unix(s)) => {
                let _ = s.shutdown(Shutdown::Both);
            }
            None => {}
        }
        if let Some(p) = &self.unix_path {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Accept one connection on the non-blocking `listener` (`accept`), waiting in `poll(2)`
/// until it is ready or `woken` is closed (the receiver was dropped); without `woken`,
/// waiting in short sleeps.
fn accept_loop<T>(
    stop: &AtomicBool,
    listener: RawFd,
    woken: Option<&UnixStream>,
    mut accept: impl FnMut() -> io::Result<T>,
) -> Result<Option<T>, String> {
    loop {
        if stop.load(Ordering::SeqCst) {
            return Ok(None);
        }
        match accept() {
            Ok(s) => return Ok(Some(s)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => match woken {
                Some(w) => wait_readable(listener, w.as_raw_fd()),
                None => std::thread::sleep(Duration::from_millis(2)),
            },
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("Failed to accept: {}", strerror(&e))),
        }
    }
}

/// Wait until `a` or `b` is readable (or hung up), or a signal interrupts.
fn wait_readable(a: RawFd, b: RawFd) {
    let mut fds = [
        libc::pollfd {
            fd: a,
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: b,
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    // SAFETY: `fds` is a valid array of two pollfd for the duration of the call.
    unsafe {
        libc::poll(fds.as_mut_ptr(), 2, -1);
    }
}

fn recv_thread(
    source: Source,
    state: &Mutex<RecvState>,
    stop: &AtomicBool,
    breaker: &Mutex<Option<Breaker>>,
    woken: Option<&UnixStream>,
) -> Result<(), String> {
    let mut _child: Option<Child> = None;
    let input: Box<dyn Read + Send> = match source {
        Source::Tcp(l) => {
            let _ = l.set_nonblocking(true);
            let Some((s, _)) = accept_loop(stop, l.as_raw_fd(), woken, || l.accept())? else {
                return Ok(());
            };
            let _ = s.set_nonblocking(false);
            if let Ok(c) = s.try_clone() {
                *lock(breaker) = Some(Breaker::Tcp(c));
            }
            Box::new(s)
        }
        Source::Unix(l, _) => {
            let _ = l.set_nonblocking(true);
            let Some((s, _)) = accept_loop(stop, l.as_raw_fd(), woken, || l.accept())? else {
                return Ok(());
            };
            let _ = s.set_nonblocking(false);
            if let Ok(c) = s.try_clone() {
                *lock(breaker) = Some(Breaker::Unix(c));
            }
            Box::new(s)
        }
        Source::Exec(cmd) => {
            let mut child = Command::new("/bin/sh")
                .arg("-c")
                .arg(&cmd)
                .stdout(Stdio::piped())
                .spawn()
                .map_err(|e| format!("Unable to start the command: {}", strerror(&e)))?;
            let out = child
                .stdout
                .take()
                .ok_or_else(|| "Unable to read from command".to_string())?;
            _child = Some(child);
            Box::new(out)
        }
        Source::Fd(fd) => Box::new(std::fs::File::from(fd)),
        Source::File(f) => Box::new(f),
    };
    let mut r = BufReader::new(input);
    let eof = || "load of migration failed: Input/output error".to_string();
    let mut magic = vec![0u8; MAGIC.len()];
    r.read_exact(&mut magic).map_err(|_| eof())?;
    if magic != MAGIC {
        return Err("load of migration failed: Invalid argument".into());
    }
    lock(state).connected = true;
    let mut line = Vec::new();
    r.read_until(b'\n', &mut line).map_err(|_| eof())?;
    if line.last() != Some(&b'\n') {
        return Err(eof());
    }
    let st: StateLine = serde_json::from_slice(&line[..line.len() - 1])
        .map_err(|_| "load of migration failed: Invalid argument".to_string())?;
    let mut pages = Vec::new();
    loop {
        if stop.load(Ordering::SeqCst) {
            return Ok(());
        }
        let mut n = [0u8; 8];
        r.read_exact(&mut n).map_err(|_| eof())?;
        let n = u64::from_be_bytes(n);
        if n == RUN || n == END {
            let mut s = lock(state);
            s.loaded = Some(Loaded {
                state: st,
                pages: std::mem::take(&mut pages),
                postcopy: n == RUN,
            });
            if n == END {
                s.ended = true;
                return Ok(());
            }
            break;
        }
        let mut page = Box::new([0u8; PAGE as usize]);
        r.read_exact(&mut page[..]).map_err(|_| eof())?;
        pages.push((n, page));
    }
    // Postcopy: wait for the end.
    let mut n = [0u8; 8];
    r.read_exact(&mut n).map_err(|_| eof())?;
    if u64::from_be_bytes(n) != END {
        return Err("load of migration failed: Invalid argument".into());
    }
    lock(state).ended = true;
    Ok(())
}
