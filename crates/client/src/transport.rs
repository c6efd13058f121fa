//! The connection's socket, and the line reader over it.
//!
//! A socket is registered with the runtime for reading only: a client writes far less often
//! than the socket could take, and a registration for writing would wake the runtime every time
//! the server drains the socket. Writes go straight to the socket; only when it is full does the
//! writer task register a second descriptor for the same socket, for writing, until it drains.

use crate::fdpass::send_with_fds;
use std::io;
use std::ops::Range;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, Interest, ReadBuf};

/// A connected stream socket (unix or TCP), non-blocking, registered for reading.
pub(crate) struct Socket {
    fd: AsyncFd<OwnedFd>,
    unix: bool,
}

fn check(n: isize) -> io::Result<usize> {
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Register a descriptor with the runtime (which must be current).
fn register(fd: OwnedFd, interest: Interest) -> io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: an `OwnedFd` is an open descriptor that stays open, always the same, until it is
    // dropped, which happens only with the `AsyncFd` that owns it.
    unsafe { AsyncFd::register_with_interest(fd, interest) }.map_err(io::Error::from)
}

impl Socket {
    /// Take over a non-blocking socket.
    pub(crate) fn new(fd: OwnedFd, unix: bool) -> io::Result<Socket> {
        Ok(Socket {
            fd: register(fd, Interest::READABLE)?,
            unix,
        })
    }

    /// True for a unix socket (file descriptors can be passed).
    pub(crate) fn is_unix(&self) -> bool {
        self.unix
    }

    fn raw(&self) -> RawFd {
        self.fd.get_ref().as_raw_fd()
    }

    /// Write what the socket takes now (`WouldBlock` when nothing).
    pub(crate) fn try_send(&self, buf: &[u8]) -> io::Result<usize> {
        // SAFETY: `buf` is valid for `buf.len()` bytes during the call; the descriptor is open
        // as long as `self`.
        check(unsafe {
            libc::send(
                self.raw(),
                buf.as_ptr().cast(),
                buf.len(),
                libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
            )
        })
    }

    /// Like [`Socket::try_send`], the descriptors going with the first byte.
    pub(crate) fn try_send_fds(&self, buf: &[u8], fds: &[OwnedFd]) -> io::Result<usize> {
        if !self.unix {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "file descriptors need a unix socket",
            ));
        }
        send_with_fds(self.raw(), buf, fds)
    }

    /// Write all of `buf` (the descriptors with its first byte), waiting while the socket is full.
    pub(crate) async fn send_all(&self, mut buf: &[u8], mut fds: &[OwnedFd]) -> io::Result<()> {
        // Registered for writing only while the socket is full.
        let mut writable: Option<AsyncFd<OwnedFd>> = None;
        while !buf.is_empty() {
            let attempt = || {
                if fds.is_empty() {
                    self.try_send(buf)
                } else {
                    self.try_send_fds(buf, fds)
                }
            };
            let r = match &writable {
                None => attempt(),
                Some(w) => {
                    let mut guard = w.writable().await?;
                    match guard.try_io(|_| attempt()) {
                        Ok(r) => r,
                        Err(_would_block) => continue,
                    }
                }
            };
            match r {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    buf = buf.get(n..).unwrap_or_default();
                    fds = &[];
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if writable.is_none() {
                        let dup = self.fd.get_ref().try_clone()?;
                        writable = Some(register(dup, Interest::WRITABLE)?);
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Read what is there (0 at end of file), or register `cx` to hear when there is more.
    pub(crate) fn poll_recv(
        &self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        loop {
            let mut guard = ready!(self.fd.poll_read_ready(cx))?;
            let len = buf.len();
            // SAFETY: `buf` is valid for writing `len` bytes during the call.
            let r = guard.try_io(|fd| {
                check(unsafe {
                    libc::recv(fd.get_ref().as_raw_fd(), buf.as_mut_ptr().cast(), len, 0)
                })
            });
            match r {
                Ok(Ok(n)) => {
                    if n > 0 && n < len {
                        // Drained: the next arrival is a new edge, no need to ask the socket.
                        guard.clear_ready();
                    }
                    return Poll::Ready(Ok(n));
                }
                Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                Err(_would_block) => {}
            }
        }
    }

    /// Shut the sending direction down (the server sees end of file).
    pub(crate) fn shutdown_write(&self) {
        // SAFETY: shutdown(2) on a descriptor `self` keeps open; no memory is involved.
        unsafe {
            libc::shutdown(self.raw(), libc::SHUT_WR);
        }
    }
}

/// Where messages come from.
pub(crate) enum Source {
    Socket(Arc<Socket>),
    Io(Box<dyn AsyncRead + Send + Unpin>),
}

impl Source {
    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        match self {
            Source::Socket(s) => s.poll_recv(cx, buf),
            Source::Io(r) => {
                let mut rb = ReadBuf::new(buf);
                ready!(Pin::new(r).poll_read(cx, &mut rb))?;
                Poll::Ready(Ok(rb.filled().len()))
            }
        }
    }
}

/// Splits what the server sends into `\n`-terminated messages.
pub(crate) struct Lines {
    src: Source,
    buf: Vec<u8>,
    /// The unread bytes are `buf[start..end]`; `buf[start..scanned]` holds no newline.
    start: usize,
    scanned: usize,
    end: usize,
    max: usize,
}

const CHUNK: usize = 64 * 1024;

impl Lines {
    pub(crate) fn new(src: Source, max: usize) -> Lines {
        Lines {
            src,
            buf: vec![0; CHUNK],
            start: 0,
            scanned: 0,
            end: 0,
            max,
        }
    }

    /// Where the next message (with its line end) sits in [`Lines::get`]; at end of file, what
    /// is left (if anything), then `None`.
    pub(crate) fn poll_next(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<Option<Range<usize>>>> {
        loop {
            let unread = &self.buf[self.scanned..self.end];
            if let Some(i) = unread.iter().position(|&b| b == b'\n') {
                let (s, e) = (self.start, self.scanned + i + 1);
                self.start = e;
                self.scanned = e;
                return Poll::Ready(Ok(Some(s..e)));
            }
            self.scanned = self.end;
            if self.end - self.start > self.max {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("message from the server longer than {} bytes", self.max),
                )));
            }
            if self.start == self.end {
                self.start = 0;
                self.scanned = 0;
                self.end = 0;
                if self.buf.len() > 4 * CHUNK {
                    self.buf.truncate(CHUNK);
                    self.buf.shrink_to_fit();
                }
            } else if self.buf.len() - self.end < CHUNK / 4 {
                if self.start > 0 {
                    self.buf.copy_within(self.start..self.end, 0);
                    self.end -= self.start;
                    self.scanned = self.end;
                    self.start = 0;
                }
                if self.buf.len() - self.end < CHUNK / 4 {
                    let len = self.buf.len();
                    self.buf.resize(len + len.max(CHUNK), 0);
                }
            }
            let n = ready!(self.src.poll_read(cx, &mut self.buf[self.end..]))?;
            if n == 0 {
                if self.start == self.end {
                    return Poll::Ready(Ok(None));
                }
                let s = self.start;
                self.start = self.end;
                self.scanned = self.end;
                return Poll::Ready(Ok(Some(s..self.end)));
            }
            self.end += n;
        }
    }

    /// The bytes of a message [`Lines::poll_next`] found.
    pub(crate) fn get(&self, r: Range<usize>) -> &[u8] {
        self.buf.get(r).unwrap_or_default()
    }
}
