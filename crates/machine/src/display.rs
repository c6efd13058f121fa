//! The display: `screendump` writes a P6 PPM (or, with `format: png`, a
//! PNG) of the simulated VGA text
//! screen (720x400: 80x25 cells of 9x16 pixels), whose content follows the
//! machine (run state, name, what was typed); the VNC server's queries and
//! passwords (`query-vnc`, `query-vnc-servers`, `set_password`,
//! `expire_password`, `change-vnc-password`, `change vnc …`) and its viewers: those test
//! control connects ([`connect_viewer`]) and real ones handed over with `add_client`, which
//! the server speaks RFB to ([`rfb`]). The password's expiry follows the machine's clock.
//!
//! Glyphs are drawn procedurally (a fixed bit pattern per character), not
//! from a real font: the image is deterministic and changes with the text.

use std::io::Write;
use std::os::fd::OwnedFd;

use crate::api;
use crate::{Machine, RunState, TimerAction};
use qmpkit_qapi::Enum;
use qmpkit_wire::{ErrorClass, QmpError};

pub mod rfb;
pub mod spice;

pub const WIDTH: usize = 720;
pub const HEIGHT: usize = 400;
pub const COLS: usize = 80;
pub const ROWS: usize = 25;

/// When the VNC password stops working.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Expiry {
    #[default]
    Never,
    /// Seconds since the epoch on the machine's clock; the password is refused once this
    /// is before the current second (0: at once).
    At(i64),
}

/// A viewer connected to the VNC server: one test control made, or a real connection
/// (`add_client`).
#[derive(Debug)]
pub struct Viewer {
    pub host: String,
    pub service: String,
    pub family: api::NetworkAddressFamily,
    pub websocket: bool,
    pub x509_dname: Option<String>,
    pub sasl_username: Option<String>,
    /// `add_client` with `skipauth`: no authentication on this connection.
    pub skipauth: bool,
    /// The real connection, if any.
    conn: Option<rfb::Conn>,
}

/// How often real viewers' connections are served, in ns.
const POLL_NS: u64 = 10_000_000;

/// The display subsystem's timer: serve real viewers' connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Timer {
    Poll,
}

/// VNC server state.
#[derive(Debug)]
pub struct DisplayState {
    pub password: Option<String>,
    pub expiry: Expiry,
    /// Seconds since the epoch when the machine started: its wall clock is this plus its
    /// simulated time.
    pub epoch_at_start: i64,
    /// Connected viewers, the newest first (as QEMU lists them).
    pub viewers: Vec<Viewer>,
    /// The port test control gives the next viewer that names none.
    next_port: u32,
    /// Whether the poll timer is pending.
    polling: bool,
    /// The SPICE server's password and viewers.
    pub spice: spice::SpiceState,
}

impl Default for DisplayState {
    fn default() -> DisplayState {
        let epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        DisplayState {
            password: None,
            expiry: Expiry::Never,
            epoch_at_start: epoch,
            viewers: Vec::new(),
            next_port: 49152,
            polling: false,
            spice: Default::default(),
        }
    }
}

/// Which credentials a VNC server's TLS uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tls {
    X509,
    Anon,
}

/// The VNC server as `-vnc` configured it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VncConfig {
    pub host: String,
    pub port: u16,
    /// The websocket listener's port, if any.
    pub websocket: Option<u16>,
    pub password: bool,
    pub sasl: bool,
    pub tls: Option<Tls>,
}

/// Whether a `-vnc` flag is on (`flag`, `flag=on`).
fn flag_on(opts: &[(&str, Option<&str>)], name: &str) -> bool {
    opts.iter()
        .any(|(k, v)| *k == name && matches!(v, None | Some("on") | Some("yes") | Some("true")))
}

/// The VNC server of the configuration, if enabled.
pub fn vnc_config(m: &Machine) -> Option<VncConfig> {
    let spec = m.config.vnc.as_deref()?;
    let mut parts = spec.split(',');
    let first = parts.next().unwrap_or("");
    if first == "none" {
        return None;
    }
    let opts: Vec<(&str, Option<&str>)> = parts
        .map(|o| match o.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (o, None),
        })
        .collect();
    let (host, disp) = match first.rsplit_once(':') {
        Some((h, d)) => (h, d),
        None => ("", first),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let host = if host.is_empty() { "0.0.0.0" } else { host };
    let disp: u16 = disp.parse().unwrap_or(0);
    let websocket = opts
        .iter()
        .find(|(k, _)| *k == "websocket")
        .and_then(|(_, v)| match v {
            None | Some("on") => Some(5700u16.saturating_add(disp)),
            Some("off") => None,
            Some(a) => a.rsplit(':').next().and_then(|p| p.parse().ok()),
        });
    let tls = opts
        .iter()
        .find(|(k, _)| *k == "tls-creds")
        .and_then(|(_, v)| *v)
        .map(|id| {
            let anon = m
                .config
                .objects
                .iter()
                .any(|o| o.id == id && o.qom_type == "tls-creds-anon");
            if anon {
                Tls::Anon
            } else {
                Tls::X509
            }
        });
    Some(VncConfig {
        host: host.to_string(),
        port: 5900u16.saturating_add(disp),
        websocket,
        password: flag_on(&opts, "password"),
        sasl: flag_on(&opts, "sasl"),
        tls,
    })
}

/// The VNC listening address `(host, port)` from `-vnc`, if enabled.
pub fn vnc_addr(m: &Machine) -> Option<(String, u16)> {
    vnc_config(m).map(|c| (c.host, c.port))
}

impl VncConfig {
    /// The method inside TLS, or without it: `vnc` with a password, else `sasl`, else
    /// `none`.
    fn inner(&self) -> &'static str {
        if self.password {
            "vnc"
        } else if self.sasl {
            "sasl"
        } else {
            "none"
        }
    }

    /// The authentication as `query-vnc` and the events name it (`vencrypt+x509+vnc`).
    pub fn auth(&self) -> String {
        match self.tls {
            Some(t) => format!("vencrypt+{}+{}", tls_name(t), self.inner()),
            None => self.inner().to_string(),
        }
    }

    /// The primary method and the VeNCrypt sub-method, as `query-vnc-servers` names them.
    pub fn auth2(&self) -> (api::VncPrimaryAuth, Option<api::VncVencryptSubAuth>) {
        match self.tls {
            Some(t) => (
                api::VncPrimaryAuth::Vencrypt,
                Some(api::VncVencryptSubAuth::from_name(&format!(
                    "{}-{}",
                    tls_name(t),
                    self.inner()
                ))),
            ),
            None => (api::VncPrimaryAuth::from_name(self.inner()), None),
        }
    }

    /// The RFB security type a viewer has to choose.
    fn security_type(&self) -> u8 {
        match (self.tls, self.inner()) {
            (Some(_), _) => 19,
            (None, "vnc") => rfb::SEC_VNC,
            (None, "sasl") => 20,
            _ => rfb::SEC_NONE,
        }
    }
}

fn tls_name(t: Tls) -> &'static str {
    match t {
        Tls::X509 => "x509",
        Tls::Anon => "tls",
    }
}

fn family(host: &str) -> api::NetworkAddressFamily {
    if host.contains(':') {
        api::NetworkAddressFamily::Ipv6
    } else {
        api::NetworkAddressFamily::Ipv4
    }
}

impl Viewer {
    fn client_info(&self) -> api::VncClientInfo {
        api::VncClientInfo {
            host: self.host.clone(),
            service: self.service.clone(),
            family: self.family.clone(),
            websocket: self.websocket,
            x509_dname: self.x509_dname.clone(),
            sasl_username: self.sasl_username.clone(),
        }
    }

    fn basic_info(&self) -> api::VncBasicInfo {
        api::VncBasicInfo {
            host: self.host.clone(),
            service: self.service.clone(),
            family: self.family.clone(),
            websocket: self.websocket,
        }
    }
}

/// The server end the VNC events name: the main listener (also for websocket viewers).
fn server_info(c: &VncConfig) -> api::VncServerInfo {
    api::VncServerInfo {
        family: family(&c.host),
        host: c.host.clone(),
        service: c.port.to_string(),
        websocket: false,
        auth: Some(c.auth()),
    }
}

/// `query-vnc`.
pub fn query_vnc(m: &mut Machine) -> api::VncInfo {
    poll_viewers(m);
    match vnc_config(m) {
        None => api::VncInfo {
            enabled: false,
            host: None,
            family: None,
            service: None,
            auth: None,
            clients: None,
        },
        Some(c) => api::VncInfo {
            enabled: true,
            family: Some(family(&c.host)),
            service: Some(c.port.to_string()),
            auth: Some(c.auth()),
            host: Some(c.host),
            clients: Some(m.display.viewers.iter().map(Viewer::client_info).collect()),
        },
    }
}

/// `query-vnc-servers`: the one VNC server, if enabled (its websocket listener first).
pub fn query_vnc_servers(m: &mut Machine) -> Vec<api::VncInfo2> {
    poll_viewers(m);
    let Some(c) = vnc_config(m) else {
        return Vec::new();
    };
    let (auth, vencrypt) = c.auth2();
    let listener = |service: u16, websocket: bool| api::VncServerInfo2 {
        family: family(&c.host),
        host: c.host.clone(),
        service: service.to_string(),
        websocket,
        auth: auth.clone(),
        vencrypt: vencrypt.clone(),
    };
    let mut server = Vec::new();
    if let Some(ws) = c.websocket {
        server.push(listener(ws, true));
    }
    server.push(listener(c.port, false));
    vec![api::VncInfo2 {
        id: "default".into(),
        server,
        clients: m.display.viewers.iter().map(Viewer::client_info).collect(),
        auth,
        vencrypt,
        display: Some("video0".into()),
    }]
}

/// `query-spice`.
pub fn query_spice(m: &Machine) -> api::SpiceInfo {
    spice::query(m)
}

/// `change-vnc-password`, `change vnc password`: the expiry stays as it was.
pub fn set_vnc_password(m: &mut Machine, password: &str) -> Result<(), QmpError> {
    if !vnc_config(m).is_some_and(|c| c.password) {
        return Err(QmpError::generic("Could not set password"));
    }
    m.display.password = Some(password.to_string());
    Ok(())
}

fn no_spice() -> QmpError {
    QmpError::new(
        ErrorClass::DeviceNotActive,
        "No spice device has been activated",
    )
}

/// `set_password`.
pub fn set_password(
    m: &mut Machine,
    protocol: &str,
    password: &str,
    connected: Option<&str>,
) -> Result<(), QmpError> {
    let (fail, disconnect) = match connected {
        None | Some("keep") => (false, false),
        Some("fail") => (true, false),
        Some("disconnect") => (false, true),
        Some(_) => return Err(QmpError::generic("Invalid parameter 'connected'")),
    };
    match protocol {
        "spice" => spice::set_password(m, password, connected.unwrap_or("keep")),
        "vnc" => {
            if fail || disconnect {
                return Err(QmpError::generic(if m.compat().display_words_10_0 {
                    "parameter 'connected' must be 'keep' when 'protocol' is 'vnc'"
                } else {
                    "Invalid parameter 'connected'"
                }));
            }
            set_vnc_password(m, password)
        }
        _ => Err(QmpError::generic("Invalid parameter 'protocol'")),
    }
}

/// The machine's wall clock: seconds since the epoch.
pub fn wall_secs(m: &Machine) -> i64 {
    m.display
        .epoch_at_start
        .saturating_add((m.now_ns / 1_000_000_000) as i64)
}

/// `expire_password`'s time: `now`, `never`, `+SECONDS` from now, or seconds since the
/// epoch (a number as `strtoull` reads it, whole: blanks before it and a sign allowed).
pub fn parse_expiry(time: &str, now: i64) -> Result<Expiry, QmpError> {
    let number = |t: &str| -> Option<u64> {
        let t = t.trim_start();
        let (neg, digits) = match t.as_bytes().first() {
            Some(b'-') => (true, &t[1..]),
            Some(b'+') => (false, &t[1..]),
            _ => (false, t),
        };
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let v: u64 = digits.parse().ok()?;
        Some(if neg { v.wrapping_neg() } else { v })
    };
    let bad = || QmpError::generic(format!("Parameter 'time' doesn't take value '{time}'"));
    Ok(match time {
        "now" => Expiry::At(0),
        "never" => Expiry::Never,
        t if t.starts_with('+') => {
            Expiry::At(now.wrapping_add(number(&t[1..]).ok_or_else(bad)? as i64))
        }
        t => Expiry::At(number(t).ok_or_else(bad)? as i64),
    })
}

/// `expire_password`.
pub fn expire_password(m: &mut Machine, protocol: &str, time: &str) -> Result<(), QmpError> {
    let expiry = parse_expiry(time, wall_secs(m))?;
    match protocol {
        "spice" => spice::expire_password(m, time),
        "vnc" => {
            if vnc_addr(m).is_none() {
                return Err(QmpError::generic(if m.compat().display_words_10_0 {
                    "Could not set password expire time"
                } else {
                    "Could not set password expire time."
                }));
            }
            m.display.expiry = expiry;
            Ok(())
        }
        _ => Err(QmpError::generic("Invalid parameter 'protocol'")),
    }
}

/// Whether the VNC password is set and not expired on the machine's clock.
fn password_usable(m: &Machine) -> Option<&str> {
    let p = m.display.password.as_deref()?;
    match m.display.expiry {
        Expiry::At(t) if t < wall_secs(m) => None,
        _ => Some(p),
    }
}

/// `change vnc …`: the password (`target` "password", the password in `arg`), or a new
/// listening address, which the machine cannot start.
pub fn change_vnc(m: &mut Machine, target: &str, arg: Option<&str>) -> Result<(), QmpError> {
    match target {
        "password" => match arg {
            None => Err(QmpError::generic("Parameter 'password' is missing")),
            Some(p) => set_vnc_password(m, p),
        },
        _ => Err(QmpError::generic(
            "Could not start VNC server on ".to_string() + target,
        )),
    }
}

// ---------------------------------------------------------------------------
// Viewers.

/// What a test-control viewer brings: where it comes from and what it answers.
#[derive(Debug, Default)]
pub struct ViewerRequest {
    pub host: Option<String>,
    pub service: Option<String>,
    pub websocket: bool,
    pub password: Option<String>,
    pub x509_dname: Option<String>,
    pub sasl_username: Option<String>,
}

/// `__org.qmpkit_viewer-connect` for VNC: the viewer connects (VNC_CONNECTED), answers the
/// server's authentication and is initialised (VNC_INITIALIZED) or refused
/// (VNC_DISCONNECTED). Returns the viewer's port and the reason of a refusal.
pub fn connect_viewer(
    m: &mut Machine,
    r: ViewerRequest,
) -> Result<(String, Option<&'static str>), QmpError> {
    let Some(c) = vnc_config(m) else {
        return Err(crate::generic("The machine has no VNC server"));
    };
    if r.websocket && c.websocket.is_none() {
        return Err(crate::generic("The VNC server has no websocket listener"));
    }
    if r.x509_dname.is_some() && c.tls != Some(Tls::X509) {
        return Err(crate::generic(
            "A client certificate needs a VNC server with x509 credentials",
        ));
    }
    if r.sasl_username.is_some() && c.inner() != "sasl" {
        return Err(crate::generic(
            "A SASL user name needs a VNC server with SASL",
        ));
    }
    poll_viewers(m);
    let service = match r.service {
        Some(s) => s,
        None => free_port(m),
    };
    let host = r.host.unwrap_or_else(|| "127.0.0.1".into());
    if m.display
        .viewers
        .iter()
        .any(|v| v.host == host && v.service == service)
    {
        return Err(crate::generic(format!(
            "A viewer from {host}:{service} is connected already"
        )));
    }
    let accepted = match c.inner() {
        "vnc" => {
            let given = r.password.as_deref().unwrap_or("");
            password_usable(m).is_some_and(|p| {
                let challenge = [0x5au8; 16];
                rfb::vnc_response(p, &challenge) == rfb::vnc_response(given, &challenge)
            })
        }
        // The machine has no SASL user database: a viewer naming a user is let in.
        "sasl" => r.sasl_username.is_some(),
        _ => true,
    };
    let viewer = Viewer {
        family: family(&host),
        host,
        service: service.clone(),
        websocket: r.websocket,
        x509_dname: r.x509_dname,
        sasl_username: r.sasl_username,
        skipauth: false,
        conn: None,
    };
    m.emit_event(api::VncConnected {
        server: server_info(&c),
        client: viewer.basic_info(),
    });
    if accepted {
        m.emit_event(api::VncInitialized {
            server: server_info(&c),
            client: viewer.client_info(),
        });
        m.display.viewers.insert(0, viewer);
        Ok((service, None))
    } else {
        m.emit_event(api::VncDisconnected {
            server: server_info(&c),
            client: viewer.client_info(),
        });
        Ok((service, Some(rfb::AUTH_FAILED)))
    }
}

/// The next port test control gives a viewer that names none: from 49152 on, not taken.
fn free_port(m: &mut Machine) -> String {
    loop {
        let p = m.display.next_port;
        m.display.next_port = if p >= 65535 { 49152 } else { p + 1 };
        let s = p.to_string();
        let d = &m.display;
        if !d.viewers.iter().any(|v| v.service == s)
            && !d.spice.channels.iter().any(|c| c.port == s)
        {
            return s;
        }
    }
}

/// `__org.qmpkit_viewer-connect` for SPICE.
pub fn connect_spice_viewer(
    m: &mut Machine,
    mut r: ViewerRequest,
) -> Result<(String, Option<&'static str>), QmpError> {
    let port = match r.service.take() {
        Some(p) => p,
        None => free_port(m),
    };
    spice::connect(m, r, port)
}

/// `__org.qmpkit_viewer-disconnect` for VNC.
pub fn disconnect_viewer(m: &mut Machine, service: &str) -> Result<(), QmpError> {
    poll_viewers(m);
    let Some(i) = m.display.viewers.iter().position(|v| v.service == service) else {
        return Err(crate::generic(format!(
            "No VNC viewer is connected from port {service}"
        )));
    };
    let v = m.display.viewers.remove(i);
    if let Some(c) = vnc_config(m) {
        m.emit_event(api::VncDisconnected {
            server: server_info(&c),
            client: v.client_info(),
        });
    }
    Ok(())
}

/// Whether `fd` is a socket.
pub fn is_socket(fd: &OwnedFd) -> bool {
    use std::os::fd::AsRawFd;
    let mut ty: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `ty`, which is that large.
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_TYPE,
            (&mut ty as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    r == 0
}

/// The peer of a connected socket as QEMU reports a viewer: host, port and family (a unix
/// socket has neither host nor port).
fn peer_of(fd: &OwnedFd) -> (String, String, api::NetworkAddressFamily) {
    let tcp = fd
        .try_clone()
        .ok()
        .map(std::net::TcpStream::from)
        .and_then(|s| s.peer_addr().ok());
    match tcp {
        Some(std::net::SocketAddr::V4(a)) => (
            a.ip().to_string(),
            a.port().to_string(),
            api::NetworkAddressFamily::Ipv4,
        ),
        Some(std::net::SocketAddr::V6(a)) => (
            a.ip().to_string(),
            a.port().to_string(),
            api::NetworkAddressFamily::Ipv6,
        ),
        None => (
            String::new(),
            String::new(),
            api::NetworkAddressFamily::Unix,
        ),
    }
}

/// A fresh authentication challenge.
fn challenge() -> [u8; 16] {
    let mut c = [0u8; 16];
    // SAFETY: getrandom writes at most 16 bytes into the 16-byte buffer.
    let n = unsafe { libc::getrandom(c.as_mut_ptr().cast(), c.len(), 0) };
    if n != 16 {
        // No entropy source: the clock still makes each challenge differ.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        c.copy_from_slice(&t.to_le_bytes());
    }
    c
}

/// `add_client` for VNC: the connected socket `fd` becomes a viewer (VNC_CONNECTED); the
/// server speaks RFB on it from now on. Without a VNC server QEMU answers with success and
/// keeps nothing.
pub fn add_client(m: &mut Machine, fd: OwnedFd, skipauth: bool) -> Result<(), QmpError> {
    let Some(c) = vnc_config(m) else {
        return Ok(());
    };
    let (host, service, family) = peer_of(&fd);
    let conn =
        rfb::Conn::new(fd, challenge()).map_err(|e| crate::generic(crate::memory::strerror(&e)))?;
    let viewer = Viewer {
        host,
        service,
        family,
        websocket: false,
        x509_dname: None,
        sasl_username: None,
        skipauth,
        conn: Some(conn),
    };
    m.emit_event(api::VncConnected {
        server: server_info(&c),
        client: viewer.basic_info(),
    });
    m.display.viewers.insert(0, viewer);
    schedule_poll(m);
    Ok(())
}

fn schedule_poll(m: &mut Machine) {
    let waiting =
        m.display.viewers.iter().any(|v| v.conn.is_some()) || !m.display.spice.pending.is_empty();
    if !m.display.polling && waiting {
        m.display.polling = true;
        m.schedule(POLL_NS, TimerAction::Display(Timer::Poll));
    }
}

/// The display subsystem's timer.
pub fn on_timer(m: &mut Machine, t: Timer) {
    match t {
        Timer::Poll => {
            m.display.polling = false;
            poll_viewers(m);
            spice::poll_pending(m);
            schedule_poll(m);
        }
    }
}

/// What a real viewer's connection asks of the machine.
struct ServerSide<'a> {
    m: &'a Machine,
    config: &'a VncConfig,
    skipauth: bool,
}

impl rfb::Server for ServerSide<'_> {
    fn security_type(&self) -> u8 {
        if self.skipauth {
            rfb::SEC_NONE
        } else {
            self.config.security_type()
        }
    }

    fn check_response(&self, challenge: &[u8; 16], response: &[u8]) -> bool {
        password_usable(self.m).is_some_and(|p| rfb::vnc_response(p, challenge) == response)
    }

    fn screen(&self) -> (String, usize, usize, Vec<u8>) {
        let name = match &self.m.ident.name {
            Some(n) => format!("QEMU ({n})"),
            None => "QEMU".to_string(),
        };
        (name, WIDTH, HEIGHT, render(self.m))
    }
}

/// Serve the real viewers' connections: what they sent moves their handshake on
/// (VNC_INITIALIZED), and those that ended are removed (VNC_DISCONNECTED).
pub fn poll_viewers(m: &mut Machine) {
    if !m.display.viewers.iter().any(|v| v.conn.is_some()) {
        return;
    }
    let Some(c) = vnc_config(m) else { return };
    let mut viewers = std::mem::take(&mut m.display.viewers);
    let mut events = Vec::new();
    viewers.retain_mut(|v| {
        let Some(conn) = &mut v.conn else {
            return true;
        };
        let side = ServerSide {
            m,
            config: &c,
            skipauth: v.skipauth,
        };
        match conn.poll(&side) {
            rfb::Progress::Nothing => true,
            rfb::Progress::Initialized => {
                events.push((true, v.client_info()));
                true
            }
            rfb::Progress::Closed => {
                events.push((false, v.client_info()));
                false
            }
        }
    });
    m.display.viewers = viewers;
    for (initialized, client) in events {
        if initialized {
            m.emit_event(api::VncInitialized {
                server: server_info(&c),
                client,
            });
        } else {
            m.emit_event(api::VncDisconnected {
                server: server_info(&c),
                client,
            });
        }
    }
}

// ---------------------------------------------------------------------------
// The screen.

/// The 80x25 text of the screen.
pub fn screen_text(m: &Machine) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    if m.is(RunState::Prelaunch) {
        lines.push("Guest has not initialized the display (yet).".into());
        return lines;
    }
    let name = m.ident.name.clone().unwrap_or_else(|| "qmpkit".into());
    lines.push(format!(
        "{name} - {} - {} MiB, {} vCPUs",
        m.run.state.as_str(),
        m.config.memory_bytes >> 20,
        m.ident.cpus.len()
    ));
    lines.push(String::new());
    lines.push(format!("{name} login: "));
    // Typed text, wrapped, the last lines kept.
    let mut cur = lines.pop().unwrap_or_default();
    for ch in m.input.typed.chars() {
        match ch {
            '\n' => lines.push(std::mem::take(&mut cur)),
            '\t' => cur.push_str("    "),
            c => cur.push(c),
        }
        if cur.chars().count() >= COLS {
            lines.push(std::mem::take(&mut cur));
        }
    }
    lines.push(cur + "_");
    if lines.len() > ROWS {
        let keep = lines.split_off(lines.len() - (ROWS - 1));
        lines.truncate(1);
        lines.extend(keep);
    }
    lines
}

fn glyph_row(c: char, row: usize) -> u8 {
    if c == ' ' || !(2..14).contains(&row) {
        return 0;
    }
    if c == '_' {
        return if row == 13 { 0xff } else { 0 };
    }
    let mut x = (c as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (row as u64 / 2);
    x ^= x >> 29;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 32;
    // Keep a one-pixel margin on each side.
    ((x as u8) & 0x7e) | 0x18
}

/// Render the screen as RGB pixels.
pub fn render(m: &Machine) -> Vec<u8> {
    let mut px = vec![0u8; WIDTH * HEIGHT * 3];
    let lines = screen_text(m);
    let fg = [0xaa, 0xaa, 0xaa];
    let status_bg = [0x00, 0x00, 0xaa];
    for (r, line) in lines.iter().enumerate().take(ROWS) {
        let chars: Vec<char> = line.chars().collect();
        for cy in 0..16 {
            let y = r * 16 + cy;
            for col in 0..COLS {
                let c = chars.get(col).copied().unwrap_or(' ');
                let bits = glyph_row(c, cy);
                for cx in 0..9 {
                    let on = cx < 8 && bits & (0x80 >> cx) != 0;
                    let x = col * 9 + cx;
                    let o = (y * WIDTH + x) * 3;
                    let color = if on {
                        fg
                    } else if r == 0 && !m.is(RunState::Prelaunch) {
                        status_bg
                    } else {
                        [0, 0, 0]
                    };
                    px[o..o + 3].copy_from_slice(&color);
                }
            }
        }
    }
    px
}

fn crc32(data: &[u8], mut crc: u32) -> u32 {
    crc = !crc;
    for &b in data {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn png_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let crc = crc32(data, crc32(kind, 0));
    out.extend_from_slice(&crc.to_be_bytes());
}

/// Encode RGB pixels as a PNG (zlib stream of stored blocks: valid,
/// uncompressed).
pub fn png(width: usize, height: usize, rgb: &[u8]) -> Vec<u8> {
    let mut raw = Vec::with_capacity(height * (width * 3 + 1));
    for row in rgb.chunks(width * 3).take(height) {
        raw.push(0);
        raw.extend_from_slice(row);
    }
    let mut z = vec![0x78, 0x01];
    let mut blocks = raw.chunks(65535).peekable();
    while let Some(b) = blocks.next() {
        z.push(u8::from(blocks.peek().is_none()));
        z.extend_from_slice(&(b.len() as u16).to_le_bytes());
        z.extend_from_slice(&(!(b.len() as u16)).to_le_bytes());
        z.extend_from_slice(b);
    }
    let (mut a, mut b) = (1u32, 0u32);
    for &x in &raw {
        a = (a + x as u32) % 65521;
        b = (b + a) % 65521;
    }
    z.extend_from_slice(&((b << 16) | a).to_be_bytes());
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&(width as u32).to_be_bytes());
    ihdr.extend_from_slice(&(height as u32).to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    png_chunk(&mut out, b"IHDR", &ihdr);
    png_chunk(&mut out, b"IDAT", &z);
    png_chunk(&mut out, b"IEND", &[]);
    out
}

/// `screendump`: the screen of the console of `device` (and `head`; the one screen when
/// no device is named) to `filename`, as PPM or PNG.
pub fn screendump(
    m: &mut Machine,
    filename: &str,
    device: Option<&str>,
    head: Option<i64>,
    as_png: bool,
) -> Result<(), QmpError> {
    crate::input::sync_reset(m);
    if let Some(dev) = device {
        crate::input::console_of(m, dev, head.unwrap_or(0))?;
    }
    let mut f = std::fs::File::create(filename).map_err(|e| {
        QmpError::generic(format!(
            "failed to open file '{filename}': {}",
            crate::memory::strerror(&e)
        ))
    })?;
    let pixels = render(m);
    let data = if as_png {
        png(WIDTH, HEIGHT, &pixels)
    } else {
        let mut d = format!("P6\n{WIDTH} {HEIGHT}\n255\n").into_bytes();
        d.extend_from_slice(&pixels);
        d
    };
    f.write_all(&data).map_err(|e| {
        QmpError::generic(format!(
            "failed to write to file '{filename}': {}",
            crate::memory::strerror(&e)
        ))
    })
}
