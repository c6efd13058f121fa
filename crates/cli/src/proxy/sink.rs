//! The write side of a socket shared by the tasks that write to it.
//!
//! Bytes are written at once, in the writer's task, when the socket takes them (the common case:
//! no hand-over to another task, no wake-up); what it does not take is queued, in order, for a
//! flusher task that writes it as the socket drains. Whole messages only are passed in, so
//! messages from different writers never interleave. Descriptors (SCM_RIGHTS, unix sockets
//! only) go with the first byte of the bytes they were given with, queued or not.

use std::collections::VecDeque;
use std::io::ErrorKind;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::io::Interest;
use tokio::sync::Notify;

/// A socket's write half.
pub enum WriteHalf {
    Unix(tokio::net::unix::OwnedWriteHalf),
    Tcp(tokio::net::tcp::OwnedWriteHalf),
}

impl WriteHalf {
    fn try_write(&self, b: &[u8]) -> std::io::Result<usize> {
        match self {
            WriteHalf::Unix(w) => w.try_write(b),
            WriteHalf::Tcp(w) => w.try_write(b),
        }
    }

    /// A write whose first byte carries `fds` (a plain write when there are none, or on TCP,
    /// which cannot carry them: they are closed).
    fn try_write_fds(&self, b: &[u8], fds: &[OwnedFd]) -> std::io::Result<usize> {
        match self {
            WriteHalf::Unix(w) if !fds.is_empty() => {
                let s: &tokio::net::UnixStream = w.as_ref();
                s.try_io(Interest::WRITABLE, || {
                    qmpkit_client::fdpass::send_with_fds(s.as_raw_fd(), b, fds)
                })
            }
            _ => self.try_write(b),
        }
    }

    async fn writable(&self) -> std::io::Result<()> {
        match self {
            WriteHalf::Unix(w) => w.writable().await,
            WriteHalf::Tcp(w) => w.writable().await,
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
    w: WriteHalf,
    st: Mutex<State>,
    notify: Notify,
}

impl Sink {
    /// A sink and the task that flushes what the socket did not take at once (it ends when the
    /// sink is closed or the socket fails).
    pub fn new(w: WriteHalf) -> Arc<Sink> {
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
        match self.w.try_write_fds(bytes, &fds) {
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
            loop {
                {
                    let st = self.lock();
                    if st.closed {
                        return;
                    }
                    if st.pending.is_empty() {
                        break;
                    }
                }
                if self.w.writable().await.is_err() {
                    self.lock().closed = true;
                    return;
                }
                let mut st = self.lock();
                let (chunk, fds) = st.next_chunk();
                match self.w.try_write_fds(chunk, fds) {
                    Ok(n) => st.written(n),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                    Err(_) => {
                        st.closed = true;
                        return;
                    }
                }
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
