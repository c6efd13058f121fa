//! The server side of the RFB protocol (VNC) on a real connection, as QEMU speaks it: the
//! version handshake (3.3, 3.7, 3.8), the security types `None` and `VNC Authentication`
//! (DES challenge and response), `ServerInit`, and then the client's messages, of which
//! framebuffer update requests are answered with the simulated screen (raw encoding, in the
//! pixel format the viewer asked for).
//!
//! Like the machine's socket character devices, a connection never blocks and never has a
//! task of its own: [`Conn::poll`] reads what arrived, moves the handshake on and writes
//! what is due; the display subsystem calls it when it is used and from its timer.

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;

use des::cipher::{BlockEncrypt, KeyInit};

/// What the server says first.
pub const VERSION: &[u8; 12] = b"RFB 003.008\n";
/// Why QEMU refuses a viewer whose authentication failed.
pub const AUTH_FAILED: &str = "Authentication failed";

/// RFB security types.
pub const SEC_NONE: u8 = 1;
pub const SEC_VNC: u8 = 2;

/// Where the handshake is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for the client's 12-byte version.
    Version,
    /// Waiting for the security type the client chose (3.7 and 3.8).
    SecurityType,
    /// Waiting for the 16-byte response to the challenge.
    Response,
    /// Waiting for `ClientInit` (the shared flag).
    ClientInit,
    /// Initialised: client messages.
    Running,
}

/// What moving the connection on brought about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// Nothing the monitor reports.
    Nothing,
    /// The viewer sent `ClientInit` and got `ServerInit`: VNC_INITIALIZED.
    Initialized,
    /// The connection ended (the viewer went away, or the server refused it).
    Closed,
}

/// What the server asks of the display subsystem while a viewer authenticates.
pub trait Server {
    /// The security type of the server (`SEC_NONE` or `SEC_VNC`; anything else is refused).
    fn security_type(&self) -> u8;
    /// Whether `response` answers `challenge` with a password that is set and not expired.
    fn check_response(&self, challenge: &[u8; 16], response: &[u8]) -> bool;
    /// `ServerInit`'s name and the screen: width, height, and RGB pixels (3 bytes each).
    fn screen(&self) -> (String, usize, usize, Vec<u8>);
}

/// A viewer's pixel format (true colour only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PixelFormat {
    bpp: u8,
    big_endian: bool,
    max: [u16; 3],
    shift: [u8; 3],
}

/// QEMU's format in `ServerInit`: 32 bits, depth 24, little endian, 8 bits per channel.
const SERVER_FORMAT: PixelFormat = PixelFormat {
    bpp: 32,
    big_endian: false,
    max: [255, 255, 255],
    shift: [16, 8, 0],
};

/// One viewer's connection.
#[derive(Debug)]
pub struct Conn {
    stream: UnixStream,
    phase: Phase,
    /// The minor protocol version the client asked for (3, 7 or 8).
    minor: u8,
    challenge: [u8; 16],
    input: Vec<u8>,
    output: Vec<u8>,
    format: PixelFormat,
    /// The screen last sent, to answer incremental requests only on a change.
    sent: Option<Vec<u8>>,
    /// An incremental update request waiting for the screen to change.
    pending: bool,
    closing: bool,
}

/// The 8-byte DES key of a VNC password: its first eight bytes, padded with zeros, each
/// byte's bits in reverse order (as every VNC implementation does).
fn des_key(password: &[u8]) -> [u8; 8] {
    let mut k = [0u8; 8];
    for (i, b) in password.iter().take(8).enumerate() {
        k[i] = b.reverse_bits();
    }
    k
}

/// The response a viewer knowing `password` gives to `challenge`.
pub fn vnc_response(password: &str, challenge: &[u8; 16]) -> [u8; 16] {
    let key = des_key(password.as_bytes());
    let cipher = des::Des::new(&key.into());
    let mut out = *challenge;
    for half in out.chunks_mut(8) {
        cipher.encrypt_block(half.into());
    }
    out
}

impl Conn {
    /// Take `fd` (a connected socket) as a viewer: the server's version goes out at once.
    /// `challenge` is the VNC authentication challenge this connection will use.
    pub fn new(fd: OwnedFd, challenge: [u8; 16]) -> std::io::Result<Conn> {
        let stream = UnixStream::from(fd);
        stream.set_nonblocking(true)?;
        let mut c = Conn {
            stream,
            phase: Phase::Version,
            minor: 8,
            challenge,
            input: Vec::new(),
            output: VERSION.to_vec(),
            format: SERVER_FORMAT,
            sent: None,
            pending: false,
            closing: false,
        };
        c.flush();
        Ok(c)
    }

    /// Write what is due, as far as the socket takes it.
    fn flush(&mut self) -> bool {
        while !self.output.is_empty() {
            match self.stream.write(&self.output) {
                Ok(0) => return false,
                Ok(n) => {
                    self.output.drain(..n);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return true,
                Err(_) => return false,
            }
        }
        true
    }

    /// Read what arrived; `false` once the peer has gone.
    fn fill(&mut self) -> bool {
        let mut buf = [0u8; 4096];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => return false,
                Ok(n) => self.input.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return true,
                Err(_) => return false,
            }
        }
    }

    /// Refuse the viewer: the security result says failed (with the reason from 3.8 on),
    /// then the connection closes.
    fn refuse(&mut self) {
        self.output.extend_from_slice(&1u32.to_be_bytes());
        if self.minor >= 8 {
            // QEMU counts and sends the reason's terminating NUL.
            self.output
                .extend_from_slice(&(AUTH_FAILED.len() as u32 + 1).to_be_bytes());
            self.output.extend_from_slice(AUTH_FAILED.as_bytes());
            self.output.push(0);
        }
        self.closing = true;
    }

    /// Move the connection on: read, run the handshake and the messages, write.
    pub fn poll(&mut self, server: &dyn Server) -> Progress {
        let alive = self.fill();
        let mut progress = Progress::Nothing;
        while !self.closing {
            match self.step(server) {
                Some(Progress::Initialized) => progress = Progress::Initialized,
                Some(_) => {}
                None => break,
            }
        }
        if self.phase == Phase::Running && self.pending && !self.closing {
            self.update(server, true);
        }
        let written = self.flush();
        if !alive || !written || (self.closing && self.output.is_empty()) {
            let _ = self.stream.shutdown(std::net::Shutdown::Both);
            return Progress::Closed;
        }
        progress
    }

    /// One step of the protocol on what has arrived; `None` when more input is needed.
    fn step(&mut self, server: &dyn Server) -> Option<Progress> {
        match self.phase {
            Phase::Version => {
                let v: [u8; 12] = self.input.get(..12)?.try_into().ok()?;
                self.input.drain(..12);
                let text = std::str::from_utf8(&v).unwrap_or("");
                let parsed = text
                    .strip_prefix("RFB ")
                    .and_then(|t| t.strip_suffix('\n'))
                    .and_then(|t| t.split_once('.'))
                    .and_then(|(a, b)| Some((a.parse::<u32>().ok()?, b.parse::<u32>().ok()?)));
                let Some((major, minor)) = parsed else {
                    // Not RFB at all: the connection is dropped.
                    self.closing = true;
                    return Some(Progress::Nothing);
                };
                let sec = server.security_type();
                match (major, minor) {
                    (3, 3) | (3, 4) | (3, 6) => {
                        self.minor = 3;
                        if sec != SEC_NONE && sec != SEC_VNC {
                            self.output.extend_from_slice(&0u32.to_be_bytes());
                            self.closing = true;
                            return Some(Progress::Nothing);
                        }
                        self.output.extend_from_slice(&u32::from(sec).to_be_bytes());
                        self.begin_auth(sec);
                    }
                    (3, 7) | (3, 8) | (3, 889) => {
                        self.minor = if minor == 7 { 7 } else { 8 };
                        self.output.extend_from_slice(&[1, sec]);
                        self.phase = Phase::SecurityType;
                    }
                    _ => {
                        // An unsupported version: an invalid security type, then the end.
                        self.output.extend_from_slice(&0u32.to_be_bytes());
                        self.closing = true;
                    }
                }
                Some(Progress::Nothing)
            }
            Phase::SecurityType => {
                let chosen = *self.input.first()?;
                self.input.drain(..1);
                let sec = server.security_type();
                if chosen != sec || (sec != SEC_NONE && sec != SEC_VNC) {
                    self.refuse();
                    return Some(Progress::Nothing);
                }
                if sec == SEC_NONE && self.minor >= 8 {
                    self.output.extend_from_slice(&0u32.to_be_bytes());
                }
                self.begin_auth(sec);
                Some(Progress::Nothing)
            }
            Phase::Response => {
                let r: Vec<u8> = self.input.get(..16)?.to_vec();
                self.input.drain(..16);
                if server.check_response(&self.challenge, &r) {
                    self.output.extend_from_slice(&0u32.to_be_bytes());
                    self.phase = Phase::ClientInit;
                } else {
                    self.refuse();
                }
                Some(Progress::Nothing)
            }
            Phase::ClientInit => {
                self.input.first()?;
                self.input.drain(..1);
                let (name, w, h, _) = server.screen();
                let o = &mut self.output;
                o.extend_from_slice(&(w as u16).to_be_bytes());
                o.extend_from_slice(&(h as u16).to_be_bytes());
                o.extend_from_slice(&encode_format(&SERVER_FORMAT));
                o.extend_from_slice(&(name.len() as u32).to_be_bytes());
                o.extend_from_slice(name.as_bytes());
                self.phase = Phase::Running;
                Some(Progress::Initialized)
            }
            Phase::Running => self.message(server),
        }
    }

    fn begin_auth(&mut self, sec: u8) {
        if sec == SEC_VNC {
            self.output.extend_from_slice(&self.challenge);
            self.phase = Phase::Response;
        } else {
            self.phase = Phase::ClientInit;
        }
    }

    /// One client message, once it has arrived whole.
    fn message(&mut self, server: &dyn Server) -> Option<Progress> {
        let kind = *self.input.first()?;
        let need = match kind {
            0 => 20,
            2 => {
                4 + 4 * usize::from(u16::from_be_bytes([
                    *self.input.get(2)?,
                    *self.input.get(3)?,
                ]))
            }
            3 => 10,
            4 => 8,
            5 => 6,
            6 => 8 + u32::from_be_bytes(self.input.get(4..8)?.try_into().ok()?) as usize,
            // QEMU's extension messages and anything unknown: the connection is dropped.
            _ => {
                self.closing = true;
                return Some(Progress::Nothing);
            }
        };
        if self.input.len() < need {
            return None;
        }
        let msg: Vec<u8> = self.input.drain(..need).collect();
        match kind {
            0 => {
                let f = &msg[4..20];
                let bpp = f[0];
                let true_colour = f[3] != 0;
                if !true_colour || !matches!(bpp, 8 | 16 | 32) {
                    // Colour maps are not served.
                    self.closing = true;
                    return Some(Progress::Nothing);
                }
                self.format = PixelFormat {
                    bpp,
                    big_endian: f[2] != 0,
                    max: [
                        u16::from_be_bytes([f[4], f[5]]),
                        u16::from_be_bytes([f[6], f[7]]),
                        u16::from_be_bytes([f[8], f[9]]),
                    ],
                    shift: [f[10], f[11], f[12]],
                };
                self.sent = None;
            }
            3 => {
                let incremental = msg[1] != 0;
                self.update(server, incremental);
            }
            _ => {}
        }
        Some(Progress::Nothing)
    }

    /// Answer an update request: the whole screen (raw encoding), at once when not
    /// incremental, otherwise when it changed since it was last sent.
    fn update(&mut self, server: &dyn Server, incremental: bool) {
        let (_, w, h, rgb) = server.screen();
        if incremental && self.sent.as_deref() == Some(rgb.as_slice()) {
            self.pending = true;
            return;
        }
        self.pending = false;
        let o = &mut self.output;
        o.extend_from_slice(&[0, 0]);
        o.extend_from_slice(&1u16.to_be_bytes());
        o.extend_from_slice(&[0, 0, 0, 0]);
        o.extend_from_slice(&(w as u16).to_be_bytes());
        o.extend_from_slice(&(h as u16).to_be_bytes());
        o.extend_from_slice(&0i32.to_be_bytes());
        let f = self.format;
        let bytes = usize::from(f.bpp / 8);
        o.reserve(w * h * bytes);
        for px in rgb.chunks(3) {
            let mut v: u32 = 0;
            for c in 0..3 {
                let scaled = u32::from(px[c]) * u32::from(f.max[c]) / 255;
                v |= scaled.checked_shl(u32::from(f.shift[c])).unwrap_or(0);
            }
            let all = if f.big_endian {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            };
            if f.big_endian {
                o.extend_from_slice(&all[4 - bytes..]);
            } else {
                o.extend_from_slice(&all[..bytes]);
            }
        }
        self.sent = Some(rgb);
    }
}

/// A pixel format as the protocol writes it (16 bytes).
fn encode_format(f: &PixelFormat) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[0] = f.bpp;
    b[1] = if f.bpp == 32 { 24 } else { f.bpp };
    b[2] = u8::from(f.big_endian);
    b[3] = 1;
    b[4..6].copy_from_slice(&f.max[0].to_be_bytes());
    b[6..8].copy_from_slice(&f.max[1].to_be_bytes());
    b[8..10].copy_from_slice(&f.max[2].to_be_bytes());
    b[10..13].copy_from_slice(&f.shift);
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_format_is_qemus() {
        assert_eq!(
            encode_format(&SERVER_FORMAT),
            *b"\x20\x18\x00\x01\x00\xff\x00\xff\x00\xff\x10\x08\x00\x00\x00\x00"
        );
    }

    #[test]
    fn des_response_matches_a_known_vector() {
        // The classic DES test vector (key 0x133457799BBCDFF1, plaintext 0x0123456789ABCDEF,
        // ciphertext 0x85E813540F0AB405), with the key's bits reversed per byte as VNC
        // passwords are.
        let key: Vec<u8> = [0x13u8, 0x34, 0x57, 0x79, 0x9b, 0xbc, 0xdf, 0xf1]
            .iter()
            .map(|b| b.reverse_bits())
            .collect();
        let cipher = des::Des::new(&des_key(&key).into());
        let mut block = [0x01u8, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef];
        cipher.encrypt_block((&mut block).into());
        assert_eq!(block, [0x85, 0xe8, 0x13, 0x54, 0x0f, 0x0a, 0xb4, 0x05]);
    }
}
