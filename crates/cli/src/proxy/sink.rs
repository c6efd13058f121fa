//! The write side of a socket shared by the tasks that write to it.
//!
//! Bytes are written at once, in the writer's task, when the socket takes them (the common case:
//! no hand-over to another task, no wake-up); what it does not take is queued, in order, for a
//! flusher task that writes it as the socket drains. Whole messages only are passed in, so
//! messages from different writers never interleave.

use std::io::ErrorKind;
use std::sync::{Arc, Mutex, MutexGuard};
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
    closed: bool,
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
        if bytes.is_empty() {
            return;
        }
        let mut st = self.lock();
        if st.closed {
            return;
        }
        if !st.pending.is_empty() {
            st.pending.extend_from_slice(bytes);
            return;
        }
        match self.w.try_write(bytes) {
            Ok(n) if n == bytes.len() => return,
            Ok(n) => st.pending.extend_from_slice(&bytes[n..]),
            Err(e) if e.kind() == ErrorKind::WouldBlock => st.pending.extend_from_slice(bytes),
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
                match self.w.try_write(&st.pending) {
                    Ok(n) => {
                        st.pending.drain(..n);
                    }
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
