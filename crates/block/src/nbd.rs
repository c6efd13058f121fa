//! An NBD export server: fixed-newstyle handshake, `NBD_OPT_GO`/`INFO`/`LIST`/`ABORT`/
//! `EXPORT_NAME`, simple replies to `READ`/`WRITE`/`FLUSH`/`TRIM`/`WRITE_ZEROES`/`DISC`, serving
//! a node's real data. It listens on a unix socket or a TCP address and runs on std threads
//! owned by an [`NbdServer`] handle, which stops everything when dropped.
//!
//! Everything a client sends is untrusted: [`Request::parse`] and the option parser check every
//! length before using it, and a session ends (never panics) on anything malformed.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::image::Image;
use crate::{Error, Result};

pub const NBDMAGIC: u64 = 0x4e42_444d_4147_4943;
pub const IHAVEOPT: u64 = 0x4948_4156_454f_5054;
pub const REPLY_MAGIC_OPT: u64 = 0x0003_e889_0455_65a9;
pub const REQUEST_MAGIC: u32 = 0x2560_9513;
pub const SIMPLE_REPLY_MAGIC: u32 = 0x6744_6698;

pub const FLAG_FIXED_NEWSTYLE: u16 = 1;
pub const FLAG_NO_ZEROES: u16 = 2;

pub const OPT_EXPORT_NAME: u32 = 1;
pub const OPT_ABORT: u32 = 2;
pub const OPT_LIST: u32 = 3;
pub const OPT_STARTTLS: u32 = 5;
pub const OPT_INFO: u32 = 6;
pub const OPT_GO: u32 = 7;

pub const REP_ACK: u32 = 1;
pub const REP_SERVER: u32 = 2;
pub const REP_INFO: u32 = 3;
pub const REP_ERR_UNSUP: u32 = 0x8000_0001;
pub const REP_ERR_POLICY: u32 = 0x8000_0002;
pub const REP_ERR_INVALID: u32 = 0x8000_0003;
pub const REP_ERR_UNKNOWN: u32 = 0x8000_0006;

pub const INFO_EXPORT: u16 = 0;
pub const INFO_NAME: u16 = 1;
pub const INFO_DESCRIPTION: u16 = 2;
pub const INFO_BLOCK_SIZE: u16 = 3;

pub const TFLAG_HAS_FLAGS: u16 = 1;
pub const TFLAG_READ_ONLY: u16 = 2;
pub const TFLAG_SEND_FLUSH: u16 = 4;
pub const TFLAG_SEND_FUA: u16 = 8;
pub const TFLAG_SEND_TRIM: u16 = 32;
pub const TFLAG_SEND_WRITE_ZEROES: u16 = 64;
pub const TFLAG_CAN_MULTI_CONN: u16 = 256;

pub const CMD_READ: u16 = 0;
pub const CMD_WRITE: u16 = 1;
pub const CMD_DISC: u16 = 2;
pub const CMD_FLUSH: u16 = 3;
pub const CMD_TRIM: u16 = 4;
pub const CMD_WRITE_ZEROES: u16 = 6;

pub const EPERM: u32 = 1;
pub const EIO: u32 = 5;
pub const EINVAL: u32 = 22;
pub const ENOSPC: u32 = 28;
pub const ENOTSUP: u32 = 95;

/// The largest request payload accepted (QEMU's limit as well).
pub const MAX_REQUEST: u32 = 32 * 1024 * 1024;
/// Longest option payload a client may send.
pub const MAX_OPTION: u32 = 64 * 1024;

/// The data behind an export.
pub trait ExportBackend: Send + Sync {
    fn size(&self) -> u64;
    fn read(&self, offset: u64, buf: &mut [u8]) -> Result<()>;
    fn write(&self, offset: u64, data: &[u8]) -> Result<()>;
    fn write_zeroes(&self, offset: u64, len: u64) -> Result<()>;
    fn trim(&self, offset: u64, len: u64) -> Result<()>;
    fn flush(&self) -> Result<()>;
    /// Whether `len` bytes at `offset` are known to read as zeroes without reading them (a
    /// copy then writes zeroes instead of moving data).
    fn reads_zeroes(&self, _offset: u64, _len: u64) -> bool {
        false
    }
}

/// An open image shared between the graph and exports.
pub type SharedImage = Arc<RwLock<Image>>;

fn poisoned() -> Error {
    Error::generic("image lock poisoned")
}

impl ExportBackend for RwLock<Image> {
    fn size(&self) -> u64 {
        self.read().map(|i| i.size()).unwrap_or(0)
    }
    fn read(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        RwLock::read(self)
            .map_err(|_| poisoned())?
            .read(buf, offset)
    }
    fn write(&self, offset: u64, data: &[u8]) -> Result<()> {
        RwLock::read(self)
            .map_err(|_| poisoned())?
            .write(data, offset)
    }
    fn write_zeroes(&self, offset: u64, len: u64) -> Result<()> {
        RwLock::read(self)
            .map_err(|_| poisoned())?
            .write_zeroes(offset, len)
    }
    fn trim(&self, offset: u64, len: u64) -> Result<()> {
        RwLock::write(self)
            .map_err(|_| poisoned())?
            .discard(offset, len)
    }
    fn flush(&self) -> Result<()> {
        RwLock::read(self).map_err(|_| poisoned())?.flush()
    }
}

/// A data path its owner can point elsewhere while clients use it: an export's block
/// backend, which follows its node's place in the graph (onto a job's filter while the job
/// runs, onto a mirror's target once it pivots).
pub struct Switchable(RwLock<Arc<dyn ExportBackend>>);

impl std::fmt::Debug for Switchable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Switchable")
    }
}

impl Switchable {
    pub fn new(backend: Arc<dyn ExportBackend>) -> Switchable {
        Switchable(RwLock::new(backend))
    }

    /// From now on, requests go to `backend`.
    pub fn set(&self, backend: Arc<dyn ExportBackend>) {
        if let Ok(mut b) = self.0.write() {
            *b = backend;
        }
    }

    fn current(&self) -> Result<Arc<dyn ExportBackend>> {
        Ok(self.0.read().map_err(|_| poisoned())?.clone())
    }
}

impl ExportBackend for Switchable {
    fn size(&self) -> u64 {
        self.current().map(|b| b.size()).unwrap_or(0)
    }
    fn read(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.current()?.read(offset, buf)
    }
    fn write(&self, offset: u64, data: &[u8]) -> Result<()> {
        self.current()?.write(offset, data)
    }
    fn write_zeroes(&self, offset: u64, len: u64) -> Result<()> {
        self.current()?.write_zeroes(offset, len)
    }
    fn trim(&self, offset: u64, len: u64) -> Result<()> {
        self.current()?.trim(offset, len)
    }
    fn flush(&self) -> Result<()> {
        self.current()?.flush()
    }
    fn reads_zeroes(&self, offset: u64, len: u64) -> bool {
        self.current()
            .map(|b| b.reads_zeroes(offset, len))
            .unwrap_or(false)
    }
}

/// One export as the server offers it.
#[derive(Clone)]
pub struct NbdExport {
    pub name: String,
    pub description: Option<String>,
    pub writable: bool,
    pub backend: Arc<dyn ExportBackend>,
}

impl std::fmt::Debug for NbdExport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NbdExport")
            .field("name", &self.name)
            .field("writable", &self.writable)
            .finish()
    }
}

impl NbdExport {
    fn transmission_flags(&self) -> u16 {
        let mut f = TFLAG_HAS_FLAGS | TFLAG_SEND_FLUSH | TFLAG_SEND_FUA | TFLAG_CAN_MULTI_CONN;
        if self.writable {
            f |= TFLAG_SEND_TRIM | TFLAG_SEND_WRITE_ZEROES;
        } else {
            f |= TFLAG_READ_ONLY;
        }
        f
    }
}

/// The exports a server offers, by name.
pub type ExportTable = Arc<Mutex<BTreeMap<String, NbdExport>>>;

/// One transmission-phase request header (28 bytes on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    pub flags: u16,
    pub kind: u16,
    pub handle: u64,
    pub offset: u64,
    pub length: u32,
}

/// Why a request header was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestError {
    /// Fewer than 28 bytes.
    Short,
    /// Not the request magic: the session cannot go on.
    BadMagic(u32),
}

impl Request {
    pub const LEN: usize = 28;

    pub fn parse(b: &[u8]) -> std::result::Result<Request, RequestError> {
        let b: &[u8; 28] = b
            .get(..Self::LEN)
            .and_then(|s| s.try_into().ok())
            .ok_or(RequestError::Short)?;
        let magic = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        if magic != REQUEST_MAGIC {
            return Err(RequestError::BadMagic(magic));
        }
        let mut h = [0u8; 8];
        h.copy_from_slice(&b[8..16]);
        let mut o = [0u8; 8];
        o.copy_from_slice(&b[16..24]);
        Ok(Request {
            flags: u16::from_be_bytes([b[4], b[5]]),
            kind: u16::from_be_bytes([b[6], b[7]]),
            handle: u64::from_be_bytes(h),
            offset: u64::from_be_bytes(o),
            length: u32::from_be_bytes([b[24], b[25], b[26], b[27]]),
        })
    }

    pub fn encode(&self) -> [u8; 28] {
        let mut b = [0u8; 28];
        b[0..4].copy_from_slice(&REQUEST_MAGIC.to_be_bytes());
        b[4..6].copy_from_slice(&self.flags.to_be_bytes());
        b[6..8].copy_from_slice(&self.kind.to_be_bytes());
        b[8..16].copy_from_slice(&self.handle.to_be_bytes());
        b[16..24].copy_from_slice(&self.offset.to_be_bytes());
        b[24..28].copy_from_slice(&self.length.to_be_bytes());
        b
    }
}

/// An option request's payload for `NBD_OPT_INFO` / `NBD_OPT_GO`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InfoRequest {
    pub name: String,
    pub requests: Vec<u16>,
}

impl InfoRequest {
    pub fn parse(data: &[u8]) -> Option<InfoRequest> {
        let len = u32::from_be_bytes(data.get(0..4)?.try_into().ok()?) as usize;
        let name_end = 4usize.checked_add(len)?;
        let name = data.get(4..name_end)?;
        let n = u16::from_be_bytes(data.get(name_end..name_end + 2)?.try_into().ok()?) as usize;
        let rest = data.get(name_end + 2..)?;
        if rest.len() != n * 2 {
            return None;
        }
        let requests = rest
            .chunks_exact(2)
            .map(|c| u16::from_be_bytes([c[0], c[1]]))
            .collect();
        Some(InfoRequest {
            name: String::from_utf8(name.to_vec()).ok()?,
            requests,
        })
    }
}

fn read_exact_or_eof<S: Read>(s: &mut S, buf: &mut [u8]) -> io::Result<()> {
    s.read_exact(buf)
}

fn read_u32<S: Read>(s: &mut S) -> io::Result<u32> {
    let mut b = [0u8; 4];
    read_exact_or_eof(s, &mut b)?;
    Ok(u32::from_be_bytes(b))
}

fn read_u64<S: Read>(s: &mut S) -> io::Result<u64> {
    let mut b = [0u8; 8];
    read_exact_or_eof(s, &mut b)?;
    Ok(u64::from_be_bytes(b))
}

fn invalid(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

fn opt_reply<S: Write>(s: &mut S, opt: u32, kind: u32, data: &[u8]) -> io::Result<()> {
    let mut b = Vec::with_capacity(20 + data.len());
    b.extend_from_slice(&REPLY_MAGIC_OPT.to_be_bytes());
    b.extend_from_slice(&opt.to_be_bytes());
    b.extend_from_slice(&kind.to_be_bytes());
    b.extend_from_slice(&(data.len() as u32).to_be_bytes());
    b.extend_from_slice(data);
    s.write_all(&b)
}

fn simple_reply<S: Write>(s: &mut S, error: u32, handle: u64, data: &[u8]) -> io::Result<()> {
    let mut b = Vec::with_capacity(16 + data.len());
    b.extend_from_slice(&SIMPLE_REPLY_MAGIC.to_be_bytes());
    b.extend_from_slice(&error.to_be_bytes());
    b.extend_from_slice(&handle.to_be_bytes());
    b.extend_from_slice(data);
    s.write_all(&b)
}

fn lookup(exports: &ExportTable, name: &str) -> Option<NbdExport> {
    let table = exports.lock().ok()?;
    if name.is_empty() && table.len() == 1 {
        // An empty name selects the only export, as QEMU's server does.
        return table.values().next().cloned();
    }
    table.get(name).cloned()
}

fn send_info<S: Write>(s: &mut S, opt: u32, e: &NbdExport, requests: &[u16]) -> io::Result<()> {
    for &r in requests {
        match r {
            INFO_NAME => {
                let mut d = INFO_NAME.to_be_bytes().to_vec();
                d.extend_from_slice(e.name.as_bytes());
                opt_reply(s, opt, REP_INFO, &d)?;
            }
            INFO_DESCRIPTION => {
                if let Some(desc) = &e.description {
                    let mut d = INFO_DESCRIPTION.to_be_bytes().to_vec();
                    d.extend_from_slice(desc.as_bytes());
                    opt_reply(s, opt, REP_INFO, &d)?;
                }
            }
            INFO_BLOCK_SIZE => {
                let mut d = INFO_BLOCK_SIZE.to_be_bytes().to_vec();
                d.extend_from_slice(&1u32.to_be_bytes());
                d.extend_from_slice(&4096u32.to_be_bytes());
                d.extend_from_slice(&MAX_REQUEST.to_be_bytes());
                opt_reply(s, opt, REP_INFO, &d)?;
            }
            _ => {}
        }
    }
    let mut d = INFO_EXPORT.to_be_bytes().to_vec();
    d.extend_from_slice(&e.backend.size().to_be_bytes());
    d.extend_from_slice(&e.transmission_flags().to_be_bytes());
    opt_reply(s, opt, REP_INFO, &d)?;
    opt_reply(s, opt, REP_ACK, &[])
}

/// Runs the handshake; returns the export chosen, or None when the client left.
fn negotiate<S: Read + Write>(s: &mut S, exports: &ExportTable) -> io::Result<Option<NbdExport>> {
    let mut hello = Vec::with_capacity(18);
    hello.extend_from_slice(&NBDMAGIC.to_be_bytes());
    hello.extend_from_slice(&IHAVEOPT.to_be_bytes());
    hello.extend_from_slice(&(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES).to_be_bytes());
    s.write_all(&hello)?;
    let client_flags = read_u32(s)?;
    if client_flags & !3 != 0 {
        return Err(invalid("unknown client flags"));
    }
    let no_zeroes = client_flags & u32::from(FLAG_NO_ZEROES) != 0;
    loop {
        if read_u64(s)? != IHAVEOPT {
            return Err(invalid("bad option magic"));
        }
        let opt = read_u32(s)?;
        let len = read_u32(s)?;
        if len > MAX_OPTION {
            // Drain what we can refuse without buffering, then refuse it.
            io::copy(&mut (&mut *s).take(u64::from(len)), &mut io::sink())?;
            opt_reply(s, opt, REP_ERR_INVALID, b"option too long")?;
            continue;
        }
        let mut data = vec![0u8; len as usize];
        read_exact_or_eof(s, &mut data)?;
        match opt {
            OPT_EXPORT_NAME => {
                let name = String::from_utf8_lossy(&data).into_owned();
                let Some(e) = lookup(exports, &name) else {
                    // No way to say no to EXPORT_NAME but to hang up.
                    return Ok(None);
                };
                let mut b = e.backend.size().to_be_bytes().to_vec();
                b.extend_from_slice(&e.transmission_flags().to_be_bytes());
                if !no_zeroes {
                    b.extend_from_slice(&[0u8; 124]);
                }
                s.write_all(&b)?;
                return Ok(Some(e));
            }
            OPT_ABORT => {
                opt_reply(s, opt, REP_ACK, &[])?;
                return Ok(None);
            }
            OPT_LIST => {
                if !data.is_empty() {
                    opt_reply(s, opt, REP_ERR_INVALID, b"NBD_OPT_LIST takes no data")?;
                    continue;
                }
                let list: Vec<NbdExport> = exports
                    .lock()
                    .map(|t| t.values().cloned().collect())
                    .unwrap_or_default();
                for e in list {
                    let mut d = (e.name.len() as u32).to_be_bytes().to_vec();
                    d.extend_from_slice(e.name.as_bytes());
                    if let Some(desc) = &e.description {
                        d.extend_from_slice(desc.as_bytes());
                    }
                    opt_reply(s, opt, REP_SERVER, &d)?;
                }
                opt_reply(s, opt, REP_ACK, &[])?;
            }
            OPT_INFO | OPT_GO => {
                let Some(req) = InfoRequest::parse(&data) else {
                    opt_reply(s, opt, REP_ERR_INVALID, b"malformed info request")?;
                    continue;
                };
                match lookup(exports, &req.name) {
                    None => {
                        let msg = format!("export '{}' not present", req.name);
                        opt_reply(s, opt, REP_ERR_UNKNOWN, msg.as_bytes())?;
                    }
                    Some(e) => {
                        send_info(s, opt, &e, &req.requests)?;
                        if opt == OPT_GO {
                            return Ok(Some(e));
                        }
                    }
                }
            }
            OPT_STARTTLS => opt_reply(s, opt, REP_ERR_POLICY, b"TLS not configured")?,
            _ => opt_reply(s, opt, REP_ERR_UNSUP, b"option not supported")?,
        }
    }
}

fn errno(e: &Error) -> u32 {
    if e.desc.contains("No space") {
        ENOSPC
    } else {
        EIO
    }
}

/// Serves one client over any byte stream until it disconnects or misbehaves.
pub fn serve_connection<S: Read + Write>(s: &mut S, exports: &ExportTable) -> io::Result<()> {
    serve_connection_told(s, exports, |_| {})
}

/// [`serve_connection`], telling `chosen` the export's name once the client has chosen one.
fn serve_connection_told<S: Read + Write>(
    s: &mut S,
    exports: &ExportTable,
    chosen: impl FnOnce(&str),
) -> io::Result<()> {
    let Some(export) = negotiate(s, exports)? else {
        return Ok(());
    };
    chosen(&export.name);
    let backend = export.backend.clone();
    let mut header = [0u8; Request::LEN];
    let mut buf = Vec::new();
    loop {
        read_exact_or_eof(s, &mut header)?;
        let req = match Request::parse(&header) {
            Ok(r) => r,
            Err(_) => return Err(invalid("bad request magic")),
        };
        let size = backend.size();
        let len = u64::from(req.length);
        let in_range = req.offset.checked_add(len).is_some_and(|end| end <= size);
        match req.kind {
            CMD_READ => {
                if req.length > MAX_REQUEST || !in_range {
                    simple_reply(s, EINVAL, req.handle, &[])?;
                    continue;
                }
                buf.resize(req.length as usize, 0);
                match backend.read(req.offset, &mut buf) {
                    Ok(()) => simple_reply(s, 0, req.handle, &buf)?,
                    Err(e) => simple_reply(s, errno(&e), req.handle, &[])?,
                }
            }
            CMD_WRITE => {
                if req.length > MAX_REQUEST {
                    // The payload cannot be skipped safely: end the session.
                    return Err(invalid("write request too large"));
                }
                buf.resize(req.length as usize, 0);
                read_exact_or_eof(s, &mut buf)?;
                let err = if !export.writable {
                    EPERM
                } else if !in_range {
                    ENOSPC
                } else {
                    match backend.write(req.offset, &buf) {
                        Ok(()) => 0,
                        Err(e) => errno(&e),
                    }
                };
                simple_reply(s, err, req.handle, &[])?;
            }
            CMD_WRITE_ZEROES | CMD_TRIM => {
                let err = if !export.writable {
                    EPERM
                } else if !in_range {
                    ENOSPC
                } else {
                    let r = if req.kind == CMD_TRIM {
                        backend.trim(req.offset, len)
                    } else {
                        backend.write_zeroes(req.offset, len)
                    };
                    r.map_or_else(|e| errno(&e), |()| 0)
                };
                simple_reply(s, err, req.handle, &[])?;
            }
            CMD_FLUSH => {
                let err = backend.flush().map_or_else(|e| errno(&e), |()| 0);
                simple_reply(s, err, req.handle, &[])?;
            }
            CMD_DISC => {
                let _ = backend.flush();
                return Ok(());
            }
            _ => simple_reply(s, EINVAL, req.handle, &[])?,
        }
    }
}

/// Where a server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NbdListen {
    Unix(PathBuf),
    Tcp(SocketAddr),
}

enum Listener {
    Unix(UnixListener),
    Tcp(TcpListener),
}

enum Conn {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl Conn {
    fn try_clone(&self) -> io::Result<Conn> {
        Ok(match self {
            Conn::Unix(s) => Conn::Unix(s.try_clone()?),
            Conn::Tcp(s) => Conn::Tcp(s.try_clone()?),
        })
    }
    fn shutdown(&self) {
        let _ = match self {
            Conn::Unix(s) => s.shutdown(Shutdown::Both),
            Conn::Tcp(s) => s.shutdown(Shutdown::Both),
        };
    }
    /// Whether the client has hung up (it may still have a request to be read, such as
    /// its `NBD_CMD_DISC`): a client that is leaving.
    fn peer_gone(&self) -> bool {
        use std::os::fd::AsRawFd;
        let fd = match self {
            Conn::Unix(s) => s.as_raw_fd(),
            Conn::Tcp(s) => s.as_raw_fd(),
        };
        let mut p = libc::pollfd {
            fd,
            events: libc::POLLRDHUP,
            revents: 0,
        };
        // SAFETY: one valid pollfd, a zero timeout.
        let n = unsafe { libc::poll(&mut p, 1, 0) };
        n > 0 && p.revents & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR) != 0
    }
    fn set_blocking(&self) -> io::Result<()> {
        match self {
            Conn::Unix(s) => s.set_nonblocking(false),
            Conn::Tcp(s) => s.set_nonblocking(false),
        }
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Conn::Unix(s) => s.read(buf),
            Conn::Tcp(s) => s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Conn::Unix(s) => s.write(buf),
            Conn::Tcp(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Conn::Unix(s) => s.flush(),
            Conn::Tcp(s) => s.flush(),
        }
    }
}

/// A client connection: its number, the socket, and the export it chose (once it has).
struct Client {
    id: u64,
    conn: Conn,
    export: Option<String>,
}

struct Shared {
    stop: AtomicBool,
    conns: Mutex<Vec<Client>>,
}

/// A running NBD server. Dropping it (or [`NbdServer::stop`]) closes the listener and every
/// client connection and joins its threads.
pub struct NbdServer {
    listen: NbdListen,
    exports: ExportTable,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<Vec<JoinHandle<()>>>>,
}

impl std::fmt::Debug for NbdServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NbdServer")
            .field("listen", &self.listen)
            .finish()
    }
}

impl NbdServer {
    /// Binds and starts accepting. A TCP port 0 binds any free port ([`NbdServer::address`]
    /// tells which).
    pub fn start(listen: NbdListen) -> Result<NbdServer> {
        let (listener, listen) = match &listen {
            NbdListen::Unix(path) => {
                // As QEMU does, a file left at the path (a stale socket) is replaced.
                if let Err(e) = std::fs::remove_file(path) {
                    if e.kind() != std::io::ErrorKind::NotFound {
                        return Err(Error::generic(format!(
                            "Failed to unlink socket {}: {e}",
                            path.display()
                        )));
                    }
                }
                let l = UnixListener::bind(path).map_err(|e| {
                    Error::generic(format!(
                        "Failed to bind socket to {}: {}",
                        path.display(),
                        e
                    ))
                })?;
                (Listener::Unix(l), listen.clone())
            }
            NbdListen::Tcp(addr) => {
                let l = TcpListener::bind(addr)
                    .map_err(|e| Error::generic(format!("Failed to bind socket: {e}")))?;
                let local = l.local_addr()?;
                (Listener::Tcp(l), NbdListen::Tcp(local))
            }
        };
        match &listener {
            Listener::Unix(l) => l.set_nonblocking(true)?,
            Listener::Tcp(l) => l.set_nonblocking(true)?,
        }
        let exports: ExportTable = Arc::default();
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            conns: Mutex::new(Vec::new()),
        });
        let acceptor = {
            let exports = exports.clone();
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("nbd-accept".into())
                .spawn(move || accept_loop(listener, exports, shared))?
        };
        Ok(NbdServer {
            listen,
            exports,
            shared,
            acceptor: Some(acceptor),
        })
    }

    /// Where the server listens (the bound port for TCP).
    pub fn address(&self) -> &NbdListen {
        &self.listen
    }

    /// Offers an export; a name already offered is refused.
    pub fn add_export(&self, export: NbdExport) -> Result<()> {
        let mut t = self.exports.lock().map_err(|_| poisoned())?;
        if t.contains_key(&export.name) {
            return Err(Error::generic(format!(
                "Block export id '{}' is already in use",
                export.name
            )));
        }
        t.insert(export.name.clone(), export);
        Ok(())
    }

    /// Withdraws an export from new clients; returns whether it was offered.
    pub fn remove_export(&self, name: &str) -> bool {
        self.exports
            .lock()
            .map(|mut t| t.remove(name).is_some())
            .unwrap_or(false)
    }

    pub fn export_names(&self) -> Vec<String> {
        self.exports
            .lock()
            .map(|t| t.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Number of clients connected now.
    pub fn connections(&self) -> usize {
        self.shared.conns.lock().map(|c| c.len()).unwrap_or(0)
    }

    /// Number of clients connected now to export `name` (one that has hung up is leaving and
    /// not counted).
    pub fn export_clients(&self, name: &str) -> usize {
        self.shared
            .conns
            .lock()
            .map(|c| {
                c.iter()
                    .filter(|c| c.export.as_deref() == Some(name) && !c.conn.peer_gone())
                    .count()
            })
            .unwrap_or(0)
    }

    /// Disconnects every client of export `name`; how many there were.
    pub fn disconnect_export(&self, name: &str) -> usize {
        let Ok(conns) = self.shared.conns.lock() else {
            return 0;
        };
        let mine: Vec<&Client> = conns
            .iter()
            .filter(|c| c.export.as_deref() == Some(name))
            .collect();
        for c in &mine {
            c.conn.shutdown();
        }
        mine.len()
    }

    /// Stops listening, disconnects every client and waits for the threads.
    pub fn stop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(acceptor) = self.acceptor.take() {
            let workers = acceptor.join().unwrap_or_default();
            if let Ok(conns) = self.shared.conns.lock() {
                for c in conns.iter() {
                    c.conn.shutdown();
                }
            }
            for w in workers {
                let _ = w.join();
            }
        }
        if let NbdListen::Unix(path) = &self.listen {
            let _ = std::fs::remove_file(path);
        }
    }
}

impl Drop for NbdServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn accept_loop(
    listener: Listener,
    exports: ExportTable,
    shared: Arc<Shared>,
) -> Vec<JoinHandle<()>> {
    let mut workers: Vec<JoinHandle<()>> = Vec::new();
    let mut next_id = 0u64;
    while !shared.stop.load(Ordering::SeqCst) {
        let accepted = match &listener {
            Listener::Unix(l) => l.accept().map(|(s, _)| Conn::Unix(s)),
            Listener::Tcp(l) => l.accept().map(|(s, _)| Conn::Tcp(s)),
        };
        let conn = match accepted {
            Ok(c) => c,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(10));
                workers.retain(|w| !w.is_finished());
                continue;
            }
            Err(_) => {
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        if conn.set_blocking().is_err() {
            continue;
        }
        let Ok(clone) = conn.try_clone() else {
            continue;
        };
        let id = next_id;
        next_id += 1;
        if let Ok(mut c) = shared.conns.lock() {
            c.push(Client {
                id,
                conn: clone,
                export: None,
            });
        }
        let exports = exports.clone();
        let shared2 = shared.clone();
        let spawned = std::thread::Builder::new()
            .name("nbd-client".into())
            .spawn(move || {
                let mut conn = conn;
                let _ = serve_connection_told(&mut conn, &exports, |name| {
                    if let Ok(mut c) = shared2.conns.lock() {
                        if let Some(c) = c.iter_mut().find(|c| c.id == id) {
                            c.export = Some(name.to_string());
                        }
                    }
                });
                conn.shutdown();
                if let Ok(mut c) = shared2.conns.lock() {
                    c.retain(|c| c.id != id);
                }
            });
        if let Ok(w) = spawned {
            workers.push(w);
        }
    }
    workers
}
