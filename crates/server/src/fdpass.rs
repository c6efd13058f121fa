//! Receiving file descriptors (SCM_RIGHTS) alongside bytes on a unix socket.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use tokio::io::Interest;

/// One read from a ready tokio unix socket, descriptors appended to `fds`; `WouldBlock` when
/// there is nothing to read. A short read clears the socket's readiness (as tokio's own reads
/// do: it saves the read that would only say `EAGAIN`), except a read that brought
/// descriptors: the kernel ends a read after the bytes that carried them, even when more is
/// queued.
pub fn try_read_unix(
    s: &tokio::net::UnixStream,
    buf: &mut [u8],
    fds: &mut Vec<OwnedFd>,
) -> io::Result<usize> {
    let len = buf.len();
    let mut got = 0usize;
    let r = s.try_io(Interest::READABLE, || {
        let before = fds.len();
        let n = recv_with_fds(s.as_raw_fd(), buf, fds)?;
        if fds.len() > before {
            return Ok(n);
        }
        short_read(n, len, &mut got)
    });
    match r {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock && got > 0 => Ok(got),
        other => other,
    }
}

/// `Ok(n)` for a full buffer or end of stream; for a short read, remember `n` and report
/// `WouldBlock` so that the caller's readiness is cleared.
pub(crate) fn short_read(n: usize, len: usize, got: &mut usize) -> io::Result<usize> {
    if n > 0 && n < len {
        *got = n;
        Err(io::ErrorKind::WouldBlock.into())
    } else {
        Ok(n)
    }
}

/// One non-blocking `recvmsg` into `buf`; descriptors that came with the bytes are appended to
/// `fds` (close-on-exec). Returns the number of bytes read (0 at end of stream).
pub fn recv_with_fds(sock: RawFd, buf: &mut [u8], fds: &mut Vec<OwnedFd>) -> io::Result<usize> {
    // Room for the kernel's maximum of 253 descriptors in one message.
    let mut control = [0u64; 136];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr() as *mut libc::c_void,
        iov_len: buf.len(),
    };
    // SAFETY: an all-zero msghdr is valid; iov and control point into live buffers of the
    // given sizes for the duration of the call; the control messages walked below were written
    // by the kernel within `msg_controllen`, and every descriptor in SCM_RIGHTS is new and ours.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr() as *mut libc::c_void;
        msg.msg_controllen = std::mem::size_of_val(&control) as _;
        let n = libc::recvmsg(sock, &mut msg, libc::MSG_CMSG_CLOEXEC | libc::MSG_DONTWAIT);
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(cmsg) as *const RawFd;
                let len = ((*cmsg).cmsg_len as usize).saturating_sub(libc::CMSG_LEN(0) as usize);
                for i in 0..len / std::mem::size_of::<RawFd>() {
                    let fd = std::ptr::read_unaligned(data.add(i));
                    if fd >= 0 {
                        fds.push(OwnedFd::from_raw_fd(fd));
                    }
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
        Ok(n as usize)
    }
}
