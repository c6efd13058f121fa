//! The back ends `chardev-add` creates, for real: ring buffers in memory,
//! files opened on the host, pseudo-terminals allocated from the host's
//! pty multiplexer, and the null device. This is the one place where the
//! chardev subsystem holds host resources; it never starts a task or
//! polls: every read and write happens inside the command that asks for
//! it, without blocking (a pty's master is non-blocking).

use std::collections::VecDeque;
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;

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

/// One back end made at run time.
#[derive(Debug)]
pub enum Backend {
    Null,
    /// `memory`: whether it was added under that name (its type and file
    /// name say `memory`).
    Ringbuf(Ringbuf, bool),
    File {
        out: File,
        _input: Option<File>,
    },
    Pty(Pty),
}

impl Backend {
    /// The backend's name as `query-chardev` gives it.
    pub fn filename(&self) -> String {
        match self {
            Backend::Null => "null".into(),
            Backend::Ringbuf(_, false) => "ringbuf".into(),
            Backend::Ringbuf(_, true) => "memory".into(),
            Backend::File { .. } => "file".into(),
            Backend::Pty(p) => format!("pty:{}", p.path),
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
        }
    }
}

/// An OS error's text without Rust's "(os error N)" suffix: what
/// `strerror` says, as QEMU quotes it.
pub fn os_text(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.rfind(" (os error ") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

/// Open a file back end: `out` first (created with mode 0666 less the
/// umask, truncated unless `append`), then `input` for reading. The error
/// is QEMU's `Could not open 'PATH': REASON`.
pub fn open_file(out: &str, input: Option<&str>, append: bool) -> Result<Backend, String> {
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create(true).mode(0o666);
    if append {
        o.append(true);
    } else {
        o.truncate(true);
    }
    let out_f = o
        .open(out)
        .map_err(|e| format!("Could not open '{out}': {}", os_text(&e)))?;
    let in_f = match input {
        Some(p) => {
            Some(File::open(p).map_err(|e| format!("Could not open '{p}': {}", os_text(&e)))?)
        }
        None => None,
    };
    Ok(Backend::File {
        out: out_f,
        _input: in_f,
    })
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
