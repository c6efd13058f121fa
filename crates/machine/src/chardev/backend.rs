//! The back ends `chardev-add` creates, for real: ring buffers in memory,
//! files opened on the host, pseudo-terminals allocated from the host's
//! pty multiplexer, sockets that listen or connect (unix or TCP), and the
//! null device. This is the one place where the chardev subsystem holds
//! host resources; it never starts a task or a thread: every accept, read
//! and write happens inside the command that uses the chardev, without
//! blocking (a pty's master and every socket are non-blocking), so a
//! listening socket takes its client when the chardev is next used
//! ([`Backend::poll`]). Dropping a back end releases what it holds (a
//! listening unix socket's path is removed).

use std::collections::VecDeque;
use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;

/// How much of what a back end received waits for the guest to read it;
/// older bytes are dropped beyond that.
const INPUT_LIMIT: usize = 65536;

/// A ring buffer's capacity when `size` is not given.
pub const DEFAULT_RINGBUF_SIZE: i64 = 65536;

/// A ring buffer (`ringbuf` and its alias `memory`).
#[derive(Debug)]
pub struct Ringbuf {
    /// Capacity in bytes: zero or a power of two.
    pub size: u64,
    /// The bytes held, oldest first; never more than `size`. Storage grows
    /// with what is written, not with the capacity.
    data: VecDeque<u8>,
}

impl Ringbuf {
    pub fn new(size: u64) -> Ringbuf {
        Ringbuf {
            size,
            data: VecDeque::new(),
        }
    }

    /// Append `bytes`; when full, the oldest bytes are overwritten.
    pub fn write(&mut self, bytes: &[u8]) {
        let cap = usize::try_from(self.size).unwrap_or(usize::MAX);
        if cap == 0 {
            return;
        }
        let keep = &bytes[bytes.len().saturating_sub(cap)..];
        let over = (self.data.len() + keep.len()).saturating_sub(cap);
        self.data.drain(..over.min(self.data.len()));
        self.data.extend(keep);
    }

    /// Take up to `max` of the oldest bytes out.
    pub fn read(&mut self, max: u64) -> Vec<u8> {
        let n = usize::try_from(max)
            .unwrap_or(usize::MAX)
            .min(self.data.len());
        self.data.drain(..n).collect()
    }

    /// How many bytes are held.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
}

/// A host pseudo-terminal: the machine holds the master; the slave at
/// `path` is what a user opens. The machine keeps a slave descriptor open
/// too, so that what it writes waits in the terminal until someone reads.
#[derive(Debug)]
pub struct Pty {
    pub path: String,
    master: File,
    _slave: OwnedFd,
}

/// Where a socket back end listens or connects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SockAddr {
    Unix(String),
    /// Host and port as given (a listening socket keeps the address it
    /// got: a port of 0 becomes the one the system chose).
    Inet(String, String),
}

/// A listening socket.
#[derive(Debug)]
enum Listener {
    Unix(UnixListener),
    Tcp(TcpListener),
}

/// A connection.
#[derive(Debug)]
enum Stream {
    Unix(UnixStream),
    Tcp(TcpStream),
    Tls(Box<super::tls::TlsStream>),
}

impl Stream {
    fn read(&mut self, b: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Unix(s) => s.read(b),
            Stream::Tcp(s) => s.read(b),
            Stream::Tls(s) => s.read(b),
        }
    }

    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        match self {
            Stream::Unix(s) => s.write(b),
            Stream::Tcp(s) => s.write(b),
            Stream::Tls(s) => s.write(b),
        }
    }
}

/// A socket back end: a server that takes one client at a time, or a
/// client (which reconnects when used, if `reconnect` was given).
#[derive(Debug)]
pub struct Socket {
    pub addr: SockAddr,
    pub server: bool,
    pub reconnect: bool,
    listener: Option<Listener>,
    conn: Option<Stream>,
    /// `HOST:PORT` of both ends of a TCP connection: (local, peer).
    tcp_ends: Option<(SocketAddr, SocketAddr)>,
    /// The local path of a unix connection a client handed over (`add_client`), which
    /// QEMU's file name shows instead of the listening path.
    handed_path: Option<String>,
    /// What the other end sent, for the guest to read.
    input: VecDeque<u8>,
    /// A listening unix socket's path, removed when the back end goes.
    unlink: Option<PathBuf>,
    /// `telnet=on`: each new connection is greeted with QEMU's telnet options, and the
    /// telnet commands the peer sends are taken out of its input.
    pub telnet: bool,
    /// `tn3270=on`: as telnet, with QEMU's TN3270 negotiation as the greeting.
    pub tn3270: bool,
    /// `tls-creds`: every TCP connection is a TLS session with these credentials.
    pub tls: Option<super::tls::Creds>,
    /// Where the input is in a telnet command: 0 outside, 1 after IAC, 2 after IAC and an
    /// option verb (WILL, WONT, DO, DONT: one more byte follows).
    iac: u8,
}

/// Telnet's "interpret as command" byte.
const IAC: u8 = 0xff;
/// What QEMU sends a new telnet peer: IAC WILL ECHO, IAC WILL SUPPRESS-GO-AHEAD, IAC WILL
/// BINARY, IAC DO BINARY.
const TELNET_GREETING: &[u8] = &[
    IAC, 0xfb, 0x01, IAC, 0xfb, 0x03, IAC, 0xfb, 0x00, IAC, 0xfd, 0x00,
];
/// What QEMU 10.0.2 sends a new TN3270 peer: IAC DO END-OF-RECORD, IAC WILL END-OF-RECORD,
/// IAC DO BINARY, IAC WILL BINARY, IAC DO TERMINAL-TYPE, IAC SB TERMINAL-TYPE SEND IAC SE.
pub const TN3270_GREETING: &[u8] = &[
    IAC, 0xfd, 0x19, IAC, 0xfb, 0x19, IAC, 0xfd, 0x00, IAC, 0xfb, 0x00, IAC, 0xfd, 0x18, IAC, 0xfa,
    0x18, 0x01, IAC, 0xf0,
];

impl Drop for Socket {
    fn drop(&mut self) {
        if let Some(p) = &self.unlink {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// `[host]` for an IPv6 address, as QEMU prints addresses with ports.
fn host_text(a: &SocketAddr) -> String {
    match a {
        SocketAddr::V4(v) => v.ip().to_string(),
        SocketAddr::V6(v) => format!("[{}]", v.ip()),
    }
}

impl Socket {
    /// A back end at `addr` with nothing open yet.
    fn new(addr: SockAddr, server: bool, reconnect: bool, telnet: bool) -> Socket {
        Socket {
            addr,
            server,
            reconnect,
            listener: None,
            conn: None,
            tcp_ends: None,
            handed_path: None,
            input: VecDeque::new(),
            unlink: None,
            telnet,
            tn3270: false,
            tls: None,
            iac: 0,
        }
    }

    /// Accept a waiting client, notice a client that went away, take what
    /// was sent, and (for a client with `reconnect`) connect again.
    pub fn poll(&mut self) {
        if let Some(c) = &mut self.conn {
            let mut buf = [0u8; 4096];
            loop {
                let r = c.read(&mut buf);
                match r {
                    Ok(0) => {
                        self.conn = None;
                        self.tcp_ends = None;
                        self.handed_path = None;
                        break;
                    }
                    Ok(n) if self.telnet || self.tn3270 => {
                        for &b in &buf[..n] {
                            self.iac = match (self.iac, b) {
                                (0, IAC) => 1,
                                (0, b) => {
                                    self.input.push_back(b);
                                    0
                                }
                                // IAC IAC is a data byte 0xff.
                                (1, IAC) => {
                                    self.input.push_back(IAC);
                                    0
                                }
                                (1, 0xfb..=0xfe) => 2,
                                _ => 0,
                            };
                        }
                        let over = self.input.len().saturating_sub(INPUT_LIMIT);
                        self.input.drain(..over);
                    }
                    Ok(n) => {
                        self.input.extend(&buf[..n]);
                        let over = self.input.len().saturating_sub(INPUT_LIMIT);
                        self.input.drain(..over);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(_) => {
                        self.conn = None;
                        self.tcp_ends = None;
                        self.handed_path = None;
                        break;
                    }
                }
            }
        }
        if self.conn.is_some() {
            return;
        }
        match &self.listener {
            Some(Listener::Unix(l)) => {
                if let Ok((s, _)) = l.accept() {
                    if s.set_nonblocking(true).is_ok() {
                        self.conn = Some(Stream::Unix(s));
                        self.greet();
                    }
                }
            }
            Some(Listener::Tcp(l)) => {
                if let Ok((s, peer)) = l.accept() {
                    if s.set_nonblocking(true).is_ok() {
                        let local = s.local_addr().unwrap_or(peer);
                        if let Some(c) = self.tcp_stream(s) {
                            self.tcp_ends = Some((local, peer));
                            self.conn = Some(c);
                            self.greet();
                        }
                    }
                }
            }
            None if self.reconnect => {
                if let Ok((c, ends)) = connect(&self.addr) {
                    self.conn = self.secure(c);
                    self.tcp_ends = ends;
                    self.greet();
                }
            }
            None => {}
        }
    }

    /// A TCP connection as this back end speaks on it: in TLS with `tls-creds`.
    fn tcp_stream(&self, s: TcpStream) -> Option<Stream> {
        match &self.tls {
            None => Some(Stream::Tcp(s)),
            Some(creds) => {
                let host = match &self.addr {
                    SockAddr::Inet(h, _) => h.as_str(),
                    SockAddr::Unix(_) => "",
                };
                super::tls::TlsStream::new(creds, s, host)
                    .ok()
                    .map(|t| Stream::Tls(Box::new(t)))
            }
        }
    }

    /// `c` (just connected) as this back end speaks on it.
    fn secure(&self, c: Stream) -> Option<Stream> {
        match c {
            Stream::Tcp(s) => self.tcp_stream(s),
            other => Some(other),
        }
    }

    /// A new connection: a telnet or TN3270 peer gets QEMU's options first.
    fn greet(&mut self) {
        self.iac = 0;
        let greeting = if self.tn3270 {
            TN3270_GREETING
        } else if self.telnet {
            TELNET_GREETING
        } else {
            return;
        };
        if let Some(c) = &mut self.conn {
            let _ = c.write(greeting);
        }
    }

    /// Take `fd`, a connected socket a client passed, as the peer (`add_client`); `false`
    /// when a peer is connected already.
    pub fn add_client(&mut self, fd: OwnedFd) -> bool {
        self.poll();
        if self.conn.is_some() {
            return false;
        }
        let unix = UnixStream::from(fd);
        let conn = match unix.local_addr() {
            Ok(a) => {
                self.handed_path = Some(
                    a.as_pathname()
                        .map(|p| p.display().to_string())
                        .unwrap_or_default(),
                );
                Stream::Unix(unix)
            }
            Err(_) => {
                let tcp = TcpStream::from(OwnedFd::from(unix));
                if let (Ok(l), Ok(p)) = (tcp.local_addr(), tcp.peer_addr()) {
                    self.tcp_ends = Some((l, p));
                }
                Stream::Tcp(tcp)
            }
        };
        let nonblocking = match &conn {
            Stream::Unix(s) => s.set_nonblocking(true),
            Stream::Tcp(s) => s.set_nonblocking(true),
            Stream::Tls(t) => t.sock.set_nonblocking(true),
        };
        if nonblocking.is_err() {
            return false;
        }
        self.conn = Some(conn);
        self.greet();
        true
    }

    /// Whether a peer is connected now.
    pub fn connected(&self) -> bool {
        self.conn.is_some()
    }

    /// QEMU's file name: `disconnected:` while no peer is there; a TCP
    /// connection names both ends. `server` is the listening flag's
    /// spelling (`,server=on`, or `,server` before 6.0).
    pub fn filename(&self, server: &str) -> String {
        let flag = if self.server { server } else { "" };
        if let (Some(_), Some((local, peer))) = (&self.conn, &self.tcp_ends) {
            return format!(
                "{}:{}:{}{flag} <-> {}:{}",
                if self.telnet { "telnet" } else { "tcp" },
                host_text(local),
                local.port(),
                host_text(peer),
                peer.port()
            );
        }
        let tcp = if self.telnet { "telnet" } else { "tcp" };
        let base = match (&self.addr, &self.handed_path) {
            (SockAddr::Unix(_), Some(p)) if self.conn.is_some() => format!("unix:{p}{flag}"),
            (SockAddr::Unix(p), _) => format!("unix:{p}{flag}"),
            (SockAddr::Inet(h, p), _) => format!("{tcp}:{h}:{p}{flag}"),
        };
        if self.conn.is_some() {
            base
        } else {
            format!("disconnected:{base}")
        }
    }

    /// Send to the peer; without one (or when its buffer is full) the
    /// bytes are dropped, as QEMU drops them.
    fn write(&mut self, bytes: &[u8]) {
        self.poll();
        let Some(c) = &mut self.conn else { return };
        let mut rest = bytes;
        while !rest.is_empty() {
            match c.write(rest) {
                Ok(0) => break,
                Ok(n) => rest = &rest[n..],
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(_) => {
                    self.conn = None;
                    self.tcp_ends = None;
                    self.handed_path = None;
                    break;
                }
            }
        }
    }
}

/// Connect to `addr` (non-blocking afterwards), in QEMU's words on failure.
fn connect(addr: &SockAddr) -> Result<(Stream, Option<(SocketAddr, SocketAddr)>), String> {
    match addr {
        SockAddr::Unix(p) => {
            let s = UnixStream::connect(p)
                .map_err(|e| format!("Failed to connect to '{p}': {}", os_text(&e)))?;
            let _ = s.set_nonblocking(true);
            Ok((Stream::Unix(s), None))
        }
        SockAddr::Inet(h, p) => {
            let addrs = resolve(h, p)?;
            let mut last = None;
            for a in addrs {
                match TcpStream::connect_timeout(&a, std::time::Duration::from_secs(5)) {
                    Ok(s) => {
                        let _ = s.set_nonblocking(true);
                        let _ = s.set_nodelay(true);
                        let local = s.local_addr().unwrap_or(a);
                        return Ok((Stream::Tcp(s), Some((local, a))));
                    }
                    Err(e) => last = Some(e),
                }
            }
            let why = last
                .map(|e| os_text(&e))
                .unwrap_or_else(|| "Connection refused".into());
            Err(format!("Failed to connect to '{h}:{p}': {why}"))
        }
    }
}

/// Resolve `host:port`, in QEMU's words on failure.
fn resolve(host: &str, port: &str) -> Result<Vec<SocketAddr>, String> {
    let fail = |why: &str| format!("address resolution failed for {host}:{port}: {why}");
    let Ok(p) = port.parse::<u16>() else {
        return Err(fail("Servname not supported for ai_socktype"));
    };
    let h = host.trim_start_matches('[').trim_end_matches(']');
    let h = if h.is_empty() { "0.0.0.0" } else { h };
    match (h, p).to_socket_addrs() {
        Ok(it) => {
            let v: Vec<SocketAddr> = it.collect();
            if v.is_empty() {
                Err(fail("Name or service not known"))
            } else {
                Ok(v)
            }
        }
        Err(e) => {
            let s = os_text(&e);
            let s = s
                .strip_prefix("failed to lookup address information: ")
                .unwrap_or(&s)
                .to_string();
            Err(fail(&s))
        }
    }
}

/// Make a socket back end: listen (removing a stale unix socket first, as
/// QEMU does) or connect. A client with `reconnect` that cannot connect
/// yet is made anyway and tries again when used.
pub fn open_socket(
    addr: SockAddr,
    server: bool,
    reconnect: bool,
    telnet: bool,
    tn3270: bool,
    tls: Option<super::tls::Creds>,
) -> Result<Backend, String> {
    let mut sock = Socket::new(addr.clone(), server, reconnect, telnet);
    sock.tn3270 = tn3270;
    sock.tls = tls;
    if server {
        match &addr {
            SockAddr::Unix(p) => {
                let _ = std::fs::remove_file(p);
                let l = UnixListener::bind(p)
                    .map_err(|e| format!("Failed to bind socket to {p}: {}", os_text(&e)))?;
                l.set_nonblocking(true).map_err(|e| os_text(&e))?;
                sock.listener = Some(Listener::Unix(l));
                sock.unlink = Some(PathBuf::from(p));
            }
            SockAddr::Inet(h, p) => {
                let addrs = resolve(h, p)?;
                let mut last = None;
                let mut bound = None;
                for a in addrs {
                    match TcpListener::bind(a) {
                        Ok(l) => {
                            bound = Some(l);
                            break;
                        }
                        Err(e) => last = Some(e),
                    }
                }
                let Some(l) = bound else {
                    let why = last
                        .map(|e| os_text(&e))
                        .unwrap_or_else(|| "Address already in use".into());
                    return Err(format!("Failed to find an available port: {why}"));
                };
                l.set_nonblocking(true).map_err(|e| os_text(&e))?;
                if let Ok(local) = l.local_addr() {
                    sock.addr = SockAddr::Inet(host_text(&local), local.port().to_string());
                }
                sock.listener = Some(Listener::Tcp(l));
            }
        }
    } else {
        match connect(&addr) {
            Ok((c, ends)) => {
                sock.conn = sock.secure(c);
                sock.tcp_ends = ends;
                sock.greet();
            }
            Err(e) if !reconnect => return Err(e),
            Err(_) => {}
        }
    }
    Ok(Backend::Socket(sock))
}

/// A socket back end over a descriptor the client passed (`getfd`):
/// a listening socket when `server`, a connection otherwise.
pub fn socket_from_fd(fd: OwnedFd, server: bool) -> Result<Backend, String> {
    let mut sock = Socket::new(SockAddr::Unix(String::new()), server, false, false);
    // The descriptor's own address tells unix from TCP.
    let tcp = TcpStream::from(fd.try_clone().map_err(|e| os_text(&e))?);
    let is_tcp = tcp.local_addr().is_ok();
    drop(tcp);
    if server {
        if is_tcp {
            let l = TcpListener::from(fd);
            l.set_nonblocking(true).map_err(|e| os_text(&e))?;
            if let Ok(a) = l.local_addr() {
                sock.addr = SockAddr::Inet(host_text(&a), a.port().to_string());
            }
            sock.listener = Some(Listener::Tcp(l));
        } else {
            let l = UnixListener::from(fd);
            l.set_nonblocking(true).map_err(|e| os_text(&e))?;
            if let Some(p) = l
                .local_addr()
                .ok()
                .and_then(|a| a.as_pathname().map(|p| p.display().to_string()))
            {
                sock.addr = SockAddr::Unix(p);
            }
            sock.listener = Some(Listener::Unix(l));
        }
    } else if is_tcp {
        let s = TcpStream::from(fd);
        s.set_nonblocking(true).map_err(|e| os_text(&e))?;
        if let (Ok(l), Ok(p)) = (s.local_addr(), s.peer_addr()) {
            sock.addr = SockAddr::Inet(host_text(&p), p.port().to_string());
            sock.tcp_ends = Some((l, p));
        }
        sock.conn = Some(Stream::Tcp(s));
    } else {
        let s = UnixStream::from(fd);
        s.set_nonblocking(true).map_err(|e| os_text(&e))?;
        if let Some(p) = s
            .peer_addr()
            .ok()
            .and_then(|a| a.as_pathname().map(|p| p.display().to_string()))
        {
            sock.addr = SockAddr::Unix(p);
        }
        sock.conn = Some(Stream::Unix(s));
    }
    Ok(Backend::Socket(sock))
}

/// One back end made at run time.
#[derive(Debug)]
pub enum Backend {
    Null,
    /// `memory`: whether it was added under that name (its type and file
    /// name say `memory`).
    Ringbuf(Ringbuf, bool),
    File {
        /// A host file, or a duplicate of an fd set's descriptor (the set
        /// counts it as in use while the back end lives).
        out: crate::fdsets::HostFile,
        _input: Option<File>,
    },
    Pty(Pty),
    Socket(Socket),
}

impl Backend {
    /// The backend's name as `query-chardev` gives it; `server` is the
    /// spelling of a listening socket's flag.
    pub fn filename(&self, server: &str) -> String {
        match self {
            Backend::Null => "null".into(),
            Backend::Ringbuf(_, false) => "ringbuf".into(),
            Backend::Ringbuf(_, true) => "memory".into(),
            Backend::File { .. } => "file".into(),
            Backend::Pty(p) => format!("pty:{}", p.path),
            Backend::Socket(s) => s.filename(server),
        }
    }

    /// Bring a socket up to date (accept, notice a hang-up, reconnect);
    /// nothing for the other back ends.
    pub fn poll(&mut self) {
        if let Backend::Socket(s) = self {
            s.poll();
        }
    }

    /// Take up to `max` bytes of what the back end received for the guest
    /// (a socket's peer, whoever writes to a pty's terminal).
    pub fn read_input(&mut self, max: usize) -> Vec<u8> {
        match self {
            Backend::Socket(s) => {
                s.poll();
                let n = max.min(s.input.len());
                s.input.drain(..n).collect()
            }
            Backend::Pty(p) => {
                let mut out = vec![0u8; max.min(INPUT_LIMIT)];
                let mut got = 0;
                while got < out.len() {
                    match p.master.read(&mut out[got..]) {
                        Ok(0) => break,
                        Ok(n) => got += n,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(_) => break,
                    }
                }
                out.truncate(got);
                out
            }
            _ => Vec::new(),
        }
    }

    /// What the front end sends: into the ring, the file, the terminal, or
    /// nowhere. A terminal whose buffer is full drops what does not fit.
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), String> {
        match self {
            Backend::Null => Ok(()),
            Backend::Ringbuf(r, _) => {
                r.write(bytes);
                Ok(())
            }
            Backend::File { out, .. } => out.write_all(bytes).map_err(|e| os_text(&e)),
            Backend::Pty(p) => match p.master.write(bytes) {
                Ok(_) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(()),
                Err(e) => Err(os_text(&e)),
            },
            Backend::Socket(s) => {
                s.write(bytes);
                Ok(())
            }
        }
    }
}

/// An OS error's text without Rust's "(os error N)" suffix: what
/// `strerror` says, as QEMU quotes it.
pub use crate::devices::strerror as os_text;

/// The file a file back end reads from (`in`), QEMU's error on failure.
pub fn open_input(p: &str) -> Result<File, String> {
    File::open(p).map_err(|e| format!("Could not open '{p}': {}", os_text(&e)))
}

/// Allocate a pseudo-terminal in raw mode (bytes pass unchanged).
pub fn open_pty() -> Result<Backend, String> {
    let mut master: libc::c_int = -1;
    let mut slave: libc::c_int = -1;
    // SAFETY: openpty writes two descriptors into the given ints; the
    // name, termios and winsize pointers may be null.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(os_text(&std::io::Error::last_os_error()));
    }
    // SAFETY: both descriptors were just created by openpty and are owned
    // by nobody else.
    let (master, slave) = unsafe { (File::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; ttyname_r writes a
    // NUL-terminated name into it.
    let rc = unsafe {
        libc::ttyname_r(
            slave.as_raw_fd(),
            buf.as_mut_ptr() as *mut libc::c_char,
            buf.len(),
        )
    };
    if rc != 0 {
        return Err(os_text(&std::io::Error::from_raw_os_error(rc)));
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let path = String::from_utf8_lossy(&buf[..end]).into_owned();
    // SAFETY: plain fcntl/tcgetattr/tcsetattr calls on descriptors we own,
    // with a zeroed termios filled in by tcgetattr before use.
    unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        if libc::tcgetattr(slave.as_raw_fd(), &mut t) == 0 {
            libc::cfmakeraw(&mut t);
            libc::tcsetattr(slave.as_raw_fd(), libc::TCSANOW, &t);
        }
        let fl = libc::fcntl(master.as_raw_fd(), libc::F_GETFL);
        if fl >= 0 {
            libc::fcntl(master.as_raw_fd(), libc::F_SETFL, fl | libc::O_NONBLOCK);
        }
        let fd = libc::fcntl(master.as_raw_fd(), libc::F_GETFD);
        if fd >= 0 {
            libc::fcntl(master.as_raw_fd(), libc::F_SETFD, fd | libc::FD_CLOEXEC);
        }
        let fd = libc::fcntl(slave.as_raw_fd(), libc::F_GETFD);
        if fd >= 0 {
            libc::fcntl(slave.as_raw_fd(), libc::F_SETFD, fd | libc::FD_CLOEXEC);
        }
    }
    Ok(Backend::Pty(Pty {
        path,
        master,
        _slave: slave,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_overwrites_the_oldest() {
        let mut r = Ringbuf::new(8);
        r.write(b"abcdefghijk");
        assert_eq!(r.read(100), b"defghijk");
        r.write(b"abcdef");
        assert_eq!(r.read(2), b"ab");
        r.write(b"1234567");
        assert_eq!(r.read(100), b"f1234567");
        assert!(r.is_empty());
        let mut z = Ringbuf::new(0);
        z.write(b"abc");
        assert_eq!(z.len(), 0);
        // A huge capacity costs only what is written.
        let mut h = Ringbuf::new(1 << 62);
        h.write(b"xy");
        assert_eq!(h.read(u64::MAX), b"xy");
    }
}
