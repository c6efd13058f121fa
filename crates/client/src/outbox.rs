//! The write side of a connection.
//!
//! A request is written by the task that makes it, straight from its first poll, when nothing is
//! waiting to be written before it; whatever the socket does not take at once (and everything on
//! a stream that is not a socket) is queued, as whole frames, for the connection's writer task,
//! which writes queued frames in order and coalesces them. One party writes at a time: the
//! callers while the writer task is idle, the writer task while it has frames (`busy`).
//!
//! So a request is either written or queued in full before its future first yields, and dropping
//! the future never leaves part of a message on the wire.

use crate::transport::Socket;
use std::collections::VecDeque;
use std::io;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::Notify;

/// Where the writer task writes.
pub(crate) enum WriteSide {
    Socket(Arc<Socket>),
    /// Any byte stream: no direct writes, no file descriptors.
    Io(Box<dyn AsyncWrite + Send + Unpin>),
}

enum Frame {
    Data(Vec<u8>),
    WithFds(Vec<u8>, Vec<OwnedFd>),
}

struct State {
    /// Frames for the writer task, in order; consecutive plain frames are merged.
    queue: VecDeque<Frame>,
    /// The writer task has frames to write (callers then queue rather than write).
    busy: bool,
    /// Shut the write side down once the queue is written; nothing more is accepted.
    close: bool,
    /// Writing failed: nothing more is written.
    dead: bool,
    /// The buffer requests are encoded into, kept between requests.
    scratch: Vec<u8>,
}

/// Why a frame was not sent.
pub(crate) enum SendError<E> {
    /// The encoder failed; nothing was sent.
    Encode(E),
    /// The connection is closing or its writer stopped.
    Stopped,
    /// The socket refused the write: the connection is broken.
    Failed(io::Error),
}

/// Largest encoding buffer kept for the next request.
const KEEP_SCRATCH: usize = 64 * 1024;

pub(crate) struct Outbox {
    state: Mutex<State>,
    notify: Notify,
    direct: Option<Arc<Socket>>,
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Outbox {
    pub(crate) fn new(side: &WriteSide) -> Outbox {
        Outbox {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                busy: false,
                close: false,
                dead: false,
                scratch: Vec::with_capacity(256),
            }),
            notify: Notify::new(),
            direct: match side {
                WriteSide::Socket(s) => Some(s.clone()),
                WriteSide::Io(_) => None,
            },
        }
    }

    /// Encode one frame with `encode` and send it: written at once when `direct` allows it,
    /// nothing is queued before it and the socket takes it, else (the rest of it) queued for the
    /// writer task.
    pub(crate) fn send<E>(
        &self,
        direct: bool,
        fds: Vec<OwnedFd>,
        encode: impl FnOnce(&mut Vec<u8>) -> Result<(), E>,
    ) -> Result<(), SendError<E>> {
        let mut st = lock(&self.state);
        if st.close || st.dead {
            return Err(SendError::Stopped);
        }
        let mut buf = std::mem::take(&mut st.scratch);
        buf.clear();
        if let Err(e) = encode(&mut buf) {
            st.scratch = buf;
            return Err(SendError::Encode(e));
        }
        let mut fds = fds;
        if direct && !st.busy {
            if let Some(sock) = &self.direct {
                let r = if fds.is_empty() {
                    sock.try_send(&buf)
                } else {
                    sock.try_send_fds(&buf, &fds)
                };
                match r {
                    Ok(n) if n >= buf.len() => {
                        if buf.capacity() <= KEEP_SCRATCH {
                            st.scratch = buf;
                        }
                        return Ok(());
                    }
                    Ok(n) => {
                        buf.drain(..n);
                        if n > 0 {
                            // The descriptors went with the first byte.
                            fds = Vec::new();
                        }
                    }
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                        ) => {}
                    Err(e) => {
                        st.dead = true;
                        return Err(SendError::Failed(e));
                    }
                }
            }
        }
        if fds.is_empty() {
            if let Some(Frame::Data(last)) = st.queue.back_mut() {
                last.extend_from_slice(&buf);
                if buf.capacity() <= KEEP_SCRATCH {
                    st.scratch = buf;
                }
            } else {
                st.queue.push_back(Frame::Data(buf));
            }
        } else {
            st.queue.push_back(Frame::WithFds(buf, fds));
        }
        self.wake_writer(st);
        Ok(())
    }

    fn wake_writer(&self, mut st: MutexGuard<'_, State>) {
        if !st.busy {
            st.busy = true;
            drop(st);
            self.notify.notify_one();
        }
    }

    /// Write what is queued, then shut the write side down; refuse anything new.
    pub(crate) fn close(&self) {
        let mut st = lock(&self.state);
        st.close = true;
        self.wake_writer(st);
    }

    /// The writer task: writes queued frames until closed; `Err` when a write fails.
    pub(crate) async fn run(self: Arc<Self>, mut side: WriteSide) -> io::Result<()> {
        let mut batch: VecDeque<Frame> = VecDeque::new();
        loop {
            {
                let mut st = lock(&self.state);
                if st.dead {
                    return Ok(());
                }
                if st.queue.is_empty() {
                    if st.close {
                        st.dead = true;
                        break;
                    }
                    st.busy = false;
                } else {
                    std::mem::swap(&mut st.queue, &mut batch);
                }
            }
            if batch.is_empty() {
                self.notify.notified().await;
                continue;
            }
            for frame in batch.drain(..) {
                let (buf, fds) = match &frame {
                    Frame::Data(b) => (b, &[][..]),
                    Frame::WithFds(b, f) => (b, &f[..]),
                };
                let r = match &mut side {
                    WriteSide::Socket(s) => s.send_all(buf, fds).await,
                    WriteSide::Io(w) if fds.is_empty() => match w.write_all(buf).await {
                        Ok(()) => w.flush().await,
                        Err(e) => Err(e),
                    },
                    WriteSide::Io(_) => Err(io::Error::new(
                        io::ErrorKind::Unsupported,
                        "file descriptors need a unix socket",
                    )),
                };
                if let Err(e) = r {
                    lock(&self.state).dead = true;
                    return Err(e);
                }
            }
        }
        match &mut side {
            WriteSide::Socket(s) => s.shutdown_write(),
            WriteSide::Io(w) => {
                let _ = w.shutdown().await;
            }
        }
        Ok(())
    }
}
