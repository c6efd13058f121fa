//! The proxy's sockets: a read side registered for readability only, and a write side shared
//! by the tasks that write to it.
//!
//! A socket is registered with the runtime for readability alone: when a peer drains what the
//! proxy wrote, the kernel signals write space, and a registration for writability would wake
//! the proxy for it each time (once or twice per round trip through the proxy, each a wake-up
//! of the process for nothing). Writability is asked for only while bytes wait for room, on a
//! duplicate of the descriptor registered for that alone and dropped once they are written.
//!
//! Bytes are written at once, in the writer's task, when the socket takes them (the common case:
//! no hand-over to another task, no wake-up); what it does not take is queued, in order, for a
//! flusher task that writes it as the socket drains. Whole messages only are passed in, so
//! messages from different writers never interleave. Descriptors (SCM_RIGHTS, unix sockets
//! only) go with the first byte of the bytes they were given with, queued or not.

use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::sync::Notify;

/// A connected socket (non-blocking).
pub enum Stream {
    Unix(std::os::unix::net::UnixStream),
    Tcp(std::net::TcpStream),
}

impl AsRawFd for Stream {
    fn as_raw_fd(&self) -> RawFd {
        match self {
            Stream::Unix(s) => s.as_raw_fd(),
            Stream::Tcp(s) => s.as_raw_fd(),
        }
    }
}

impl Stream {
    /// A tokio unix stream, taken out of the runtime's hands.
    pub fn unix(s: tokio::net::UnixStream) -> std::io::Result<Stream> {
        Ok(Stream::Unix(s.into_std()?))
    }

    /// A tokio TCP stream (without Nagle's delay), taken out of the runtime's hands.
    pub fn tcp(s: tokio::net::TcpStream) -> std::io::Result<Stream> {
        s.set_nodelay(true)?;
        Ok(Stream::Tcp(s.into_std()?))
    }

    fn try_clone(&self) -> std::io::Result<Stream> {
        Ok(match self {
            Stream::Unix(s) => Stream::Unix(s.try_clone()?),
            Stream::Tcp(s) => Stream::Tcp(s.try_clone()?),
        })
    }

    /// Split into a read side and a write side.
    pub fn split(self) -> std::io::Result<(ReadHalf, Arc<Sink>)> {
        let w = self.try_clone()?;
        // SAFETY: the stream owns its descriptor, which stays open and the same for as long
        // as the AsyncFd holds it.
        let fd = unsafe { AsyncFd::register_with_interest(self, Interest::READABLE) }
            .map_err(|e| e.into_parts().1)?;
        Ok((ReadHalf { fd }, Sink::new(w)))
    }

    /// One non-blocking write; the descriptors go with its first byte (unix only: on TCP,
    /// which cannot carry them, they are closed).
    fn write_fds(&self, b: &[u8], fds: &[OwnedFd]) -> std::io::Result<usize> {
        match self {
            Stream::Unix(s) if !fds.is_empty() => {
                qmpkit_client::fdpass::send_with_fds(s.as_raw_fd(), b, fds)
            }
            Stream::Unix(s) => (&*s).write(b),
            Stream::Tcp(s) => (&*s).write(b),
        }
    }
}

/// A socket's read side, registered for readability only.
pub struct ReadHalf {
    fd: AsyncFd<Stream>,
}

impl ReadHalf {
    /// One read (0 at the end of the stream). On a unix socket with `fds`, descriptors that
    /// came with the bytes are appended to it; without, a plain read.
    pub async fn read(
        &self,
        buf: &mut [u8],
        mut fds: Option<&mut Vec<OwnedFd>>,
    ) -> std::io::Result<usize> {
        let len = buf.len();
        loop {
            let mut guard = self.fd.readable().await?;
            let mut brought_fds = false;
            let r = guard.try_io(|s| match (s.get_ref(), fds.as_deref_mut()) {
                (Stream::Unix(u), Some(fds)) => {
                    let before = fds.len();
                    let n = qmpkit_server::fdpass::recv_with_fds(u.as_raw_fd(), buf, fds)?;
                    brought_fds = fds.len() > before;
                    Ok(n)
                }
                (Stream::Unix(u), None) => (&*u).read(buf),
                (Stream::Tcp(t), _) => (&*t).read(buf),
            });
            match r {
                // Nothing to read: readiness cleared, wait again.
                Err(_would_block) => continue,
                Ok(Ok(n)) => {
                    // A short read drained the socket: the read that would only say EAGAIN is
                    // saved. Not after descriptors: the kernel ends a read after the bytes
                    // that carried them, even when more is queued.
                    if n > 0 && n < len && !brought_fds {
                        guard.clear_ready();
                    }
                    return Ok(n);
                }
                Ok(Err(e)) => return Err(e),
            }
        }
    }
}

#[derive(Default)]
struct State {
    pending: Vec<u8>,
    /// Descriptors waiting with `pending`, each at the offset of the byte they go with.
    marks: VecDeque<(usize, Vec<OwnedFd>)>,
    closed: bool,
}

impl State {
    /// What to write next: up to the next mark, with the descriptors of a mark at the start.
    fn next_chunk(&self) -> (&[u8], &[OwnedFd]) {
        let mut end = self.pending.len();
        let mut fds: &[OwnedFd] = &[];
        for (at, f) in &self.marks {
            if *at == 0 {
                fds = f;
            } else {
                end = end.min(*at);
                break;
            }
        }
        (&self.pending[..end], fds)
    }

    /// `n` bytes of the chunk were written.
    fn written(&mut self, n: usize) {
        if n == 0 {
            return;
        }
        self.pending.drain(..n);
        self.marks.retain_mut(|(at, _)| {
            if *at == 0 {
                return false;
            }
            *at -= n;
            true
        });
    }
}

pub struct Sink {
    w: Stream,
    st: Mutex<State>,
    notify: Notify,
}

impl Sink {
    /// A sink and the task that flushes what the socket did not take at once (it ends when the
    /// sink is closed or the socket fails).
    pub fn new(w: Stream) -> Arc<Sink> {
        let s = Arc::new(Sink {
            w,
            st: Mutex::new(State::default()),
            notify: Notify::new(),
        });
        tokio::spawn(s.clone().flusher());
        s
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        match self.st.lock() {
            Ok(g) => g,
            Err(e) => e.into_inner(),
        }
    }

    /// Write whole messages (nothing happens once the sink is closed).
    pub fn send(&self, bytes: &[u8]) {
        self.send_fds(bytes, Vec::new());
    }

    /// [`Sink::send`], with `fds` going along with the first byte.
    pub fn send_fds(&self, bytes: &[u8], fds: Vec<OwnedFd>) {
        if bytes.is_empty() {
            return;
        }
        let mut st = self.lock();
        if st.closed {
            return;
        }
        if !st.pending.is_empty() {
            if !fds.is_empty() {
                let at = st.pending.len();
                st.marks.push_back((at, fds));
            }
            st.pending.extend_from_slice(bytes);
            return;
        }
        match self.w.write_fds(bytes, &fds) {
            Ok(n) if n == bytes.len() => return,
            Ok(n) => st.pending.extend_from_slice(&bytes[n..]),
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                if !fds.is_empty() {
                    st.marks.push_back((0, fds));
                }
                st.pending.extend_from_slice(bytes);
            }
            Err(_) => {
                st.closed = true;
            }
        }
        drop(st);
        self.notify.notify_one();
    }

    /// Stop writing; the flusher ends.
    pub fn close(&self) {
        self.lock().closed = true;
        self.notify.notify_one();
    }

    async fn flusher(self: Arc<Sink>) {
        loop {
            self.notify.notified().await;
            if self.flush().await.is_err() {
                self.lock().closed = true;
                return;
            }
            if self.lock().closed {
                return;
            }
        }
    }

    /// Write what is queued as the socket takes it, waiting for room on a duplicate of the
    /// descriptor registered for writability (for as long as bytes wait only).
    async fn flush(&self) -> std::io::Result<()> {
        let mut room: Option<AsyncFd<Stream>> = None;
        loop {
            {
                let st = self.lock();
                if st.closed || st.pending.is_empty() {
                    return Ok(());
                }
            }
            let fd = match &room {
                Some(fd) => fd,
                // SAFETY: the duplicate owns its descriptor, open and the same for as long as
                // the AsyncFd holds it.
                None => room.insert(
                    unsafe {
                        AsyncFd::register_with_interest(self.w.try_clone()?, Interest::WRITABLE)
                    }
                    .map_err(|e| e.into_parts().1)?,
                ),
            };
            let mut guard = fd.writable().await?;
            let mut st = self.lock();
            let (chunk, fds) = st.next_chunk();
            match guard.try_io(|_| self.w.write_fds(chunk, fds)) {
                Ok(Ok(n)) => st.written(n),
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queued_descriptors_go_with_their_byte() {
        let fd = || -> OwnedFd { std::io::pipe().expect("pipe").0.into() };
        let mut st = State {
            pending: b"aaabbbcc".to_vec(),
            ..State::default()
        };
        st.marks.push_back((3, vec![fd()]));
        st.marks.push_back((6, vec![fd(), fd()]));
        let (chunk, fds) = st.next_chunk();
        assert_eq!((chunk, fds.len()), (&b"aaa"[..], 0));
        st.written(2);
        let (chunk, fds) = st.next_chunk();
        assert_eq!((chunk, fds.len()), (&b"a"[..], 0));
        st.written(1);
        let (chunk, fds) = st.next_chunk();
        assert_eq!((chunk, fds.len()), (&b"bbb"[..], 1));
        // A part written carried the descriptors; the rest goes without them.
        st.written(1);
        let (chunk, fds) = st.next_chunk();
        assert_eq!((chunk, fds.len()), (&b"bb"[..], 0));
        st.written(2);
        let (chunk, fds) = st.next_chunk();
        assert_eq!((chunk, fds.len()), (&b"cc"[..], 2));
        st.written(2);
        assert!(st.pending.is_empty() && st.marks.is_empty());
    }
}
