//! The SPICE server of `-spice`: `query-spice`, its password and expiry, and the viewers
//! test control connects, each with its main channel, with QEMU 10.0.2's events
//! (SPICE_CONNECTED when the link is made, SPICE_INITIALIZED once the ticket is accepted,
//! SPICE_DISCONNECTED when the viewer goes or is refused). A viewer's other channels
//! (display, inputs, cursor, …) are not modelled.

use qmpkit_wire::QmpError;

use super::{family, parse_expiry, wall_secs, Expiry, ViewerRequest};
use crate::api;
use crate::Machine;

/// The library version QEMU 10.0.2's build reports.
const COMPILED_VERSION: &str = "0.15.1";

/// The SPICE server as `-spice` configured it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpiceConfig {
    /// `addr`, if given (the server listens on every address otherwise).
    pub addr: Option<String>,
    pub port: Option<u16>,
    pub tls_port: Option<u16>,
    /// Ticketing (a password) is on unless `disable-ticketing`.
    pub ticketing: bool,
    pub sasl: bool,
    /// The password of the command line (`password=`, or `password-secret=` naming a
    /// `secret` object's `data`).
    pub password: Option<String>,
}

/// A viewer's main channel.
#[derive(Debug, Clone)]
pub struct Channel {
    pub host: String,
    pub port: String,
    pub family: api::NetworkAddressFamily,
    pub connection_id: i64,
}

/// The SPICE server's state.
#[derive(Debug, Default)]
pub struct SpiceState {
    /// The password `set_password` set (the command line's until then).
    pub password: Option<String>,
    pub expiry: Expiry,
    /// Connected viewers' main channels, in connection order.
    pub channels: Vec<Channel>,
    /// Sessions opened so far (each gets its own connection id).
    sessions: u32,
    /// `client_migrate_info` named where viewers are to follow a migration.
    pub migrate_target: bool,
    /// A migration completed with viewers told where to follow (`query-spice`'s
    /// `migrated`).
    pub migrated: bool,
    /// Sockets `add_client` handed over whose viewer has not linked yet: the server waits
    /// for the link message on each.
    pub pending: Vec<PendingClient>,
}

/// A socket `add_client` gave the SPICE server, as its two ends were when it came.
#[derive(Debug)]
pub struct PendingClient {
    fd: std::os::fd::OwnedFd,
    server: api::SpiceBasicInfo,
    client: api::SpiceBasicInfo,
}

/// One end of a socket as SPICE's events name it: a TCP end by its numeric address and
/// port, any other socket as `localhost` with no port.
fn socket_end(fd: &std::os::fd::OwnedFd, peer: bool) -> api::SpiceBasicInfo {
    let tcp = fd.try_clone().ok().map(std::net::TcpStream::from);
    let addr = tcp.and_then(|s| if peer { s.peer_addr() } else { s.local_addr() }.ok());
    match addr {
        Some(a) => basic(
            &a.ip().to_string(),
            &a.port().to_string(),
            &if a.is_ipv4() {
                api::NetworkAddressFamily::Ipv4
            } else {
                api::NetworkAddressFamily::Ipv6
            },
        ),
        None => basic("localhost", "", &api::NetworkAddressFamily::Unix),
    }
}

/// `add_client` for SPICE (the server is configured; `fd` is a connected socket): the
/// socket becomes a viewer's connection (SPICE_CONNECTED, naming both its ends) and the
/// server waits for the viewer's link message on it. A TLS client needs the server's TLS
/// set-up (`tls-port`): without it the connection ends at once (SPICE_DISCONNECTED) and
/// QEMU's words say so. The link itself is not modelled: whatever the viewer sends, or its
/// closing the socket, ends the connection (SPICE_DISCONNECTED), as a peer that does not
/// speak SPICE sees from QEMU.
pub fn add_client(m: &mut Machine, fd: std::os::fd::OwnedFd, tls: bool) -> Result<(), QmpError> {
    let Some(c) = config(m) else {
        return Err(crate::generic("SPICE is not in use"));
    };
    let client = PendingClient {
        server: socket_end(&fd, false),
        client: socket_end(&fd, true),
        fd,
    };
    m.emit_event(api::SpiceConnected {
        server: client.server.clone(),
        client: client.client.clone(),
    });
    if tls && c.tls_port.is_none() {
        m.emit_event(api::SpiceDisconnected {
            server: client.server,
            client: client.client,
        });
        return Err(crate::generic("spice failed to add client"));
    }
    m.display.spice.pending.push(client);
    super::schedule_poll(m);
    Ok(())
}

/// Ends the pending connections whose viewer sent something or went away.
pub fn poll_pending(m: &mut Machine) {
    use std::os::fd::AsRawFd;
    let pending = std::mem::take(&mut m.display.spice.pending);
    let mut ended = Vec::new();
    for p in pending {
        let mut pfd = libc::pollfd {
            fd: p.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, no waiting.
        let ready = unsafe { libc::poll(&mut pfd, 1, 0) } > 0;
        if ready {
            ended.push(p);
        } else {
            m.display.spice.pending.push(p);
        }
    }
    for p in ended {
        m.emit_event(api::SpiceDisconnected {
            server: p.server,
            client: p.client,
        });
    }
}

/// An outgoing migration completed: with `client_migrate_info` given, the SPICE server
/// reports its viewers' move done (SPICE_MIGRATE_COMPLETED, after MIGRATION's `completed`)
/// and `query-spice` says `migrated`, as QEMU 10.0.2 does even without viewers.
pub fn migration_completed(m: &mut Machine) {
    if config(m).is_none() || !m.display.spice.migrate_target {
        return;
    }
    m.display.spice.migrated = true;
    m.emit_event(api::SpiceMigrateCompleted {});
}

/// The SPICE server of the configuration, if any.
pub fn config(m: &Machine) -> Option<SpiceConfig> {
    let spec = m.config.spice.as_deref()?;
    let kv = crate::config::parse_keyval(spec, None);
    let on = |k: &str| {
        kv.get(k)
            .is_some_and(|v| matches!(v.as_str(), "on" | "yes" | "true" | ""))
    };
    let password = kv.get("password").cloned().or_else(|| {
        let id = kv.get("password-secret")?;
        let o = m.config.objects.iter().find(|o| &o.id == id)?;
        o.props.get("data").cloned()
    });
    Some(SpiceConfig {
        addr: kv.get("addr").cloned(),
        port: kv.get("port").and_then(|p| p.parse().ok()),
        tls_port: kv.get("tls-port").and_then(|p| p.parse().ok()),
        ticketing: !on("disable-ticketing"),
        sasl: on("sasl"),
        password,
    })
}

impl SpiceConfig {
    fn auth(&self) -> &'static str {
        if self.sasl {
            "sasl"
        } else if self.ticketing {
            "spice"
        } else {
            "none"
        }
    }

    /// The server end as a viewer from `viewer_host` reaches it: the configured address,
    /// or the loopback address of the viewer's family when the server listens on all.
    fn server_end(&self, viewer_host: &str) -> (String, api::NetworkAddressFamily) {
        let host = match &self.addr {
            Some(a) => a.clone(),
            None if viewer_host.contains(':') => "::1".to_string(),
            None => "127.0.0.1".to_string(),
        };
        let f = family(&host);
        (host, f)
    }
}

/// `query-spice`.
pub fn query(m: &Machine) -> api::SpiceInfo {
    let Some(c) = config(m) else {
        return api::SpiceInfo {
            enabled: false,
            migrated: false,
            host: None,
            port: None,
            tls_port: None,
            auth: None,
            compiled_version: None,
            mouse_mode: api::SpiceQueryMouseMode::Client,
            channels: None,
        };
    };
    api::SpiceInfo {
        enabled: true,
        migrated: m.display.spice.migrated,
        host: Some(c.addr.clone().unwrap_or_else(|| "*".into())),
        port: c.port.map(i64::from),
        tls_port: c.tls_port.map(i64::from),
        auth: Some(c.auth().to_string()),
        compiled_version: Some(COMPILED_VERSION.into()),
        // No guest agent: the server moves the pointer.
        mouse_mode: api::SpiceQueryMouseMode::Server,
        channels: Some(m.display.spice.channels.iter().map(channel_info).collect()),
    }
}

/// HMP `info spice`: `query-spice` in QEMU 10.0.2's words.
pub fn hmp_info(o: &mut String, v: &api::SpiceInfo) {
    use std::fmt::Write;
    if !v.enabled {
        o.push_str("Server: disabled\n");
        return;
    }
    let host = v.host.as_deref().unwrap_or("");
    o.push_str("Server:\n");
    if let Some(p) = v.port {
        let _ = writeln!(o, "     address: {host}:{p}");
    }
    if let Some(p) = v.tls_port {
        let _ = writeln!(o, "     address: {host}:{p} [tls]");
    }
    let _ = writeln!(o, "    migrated: {}", v.migrated);
    let _ = writeln!(o, "        auth: {}", v.auth.as_deref().unwrap_or(""));
    let _ = writeln!(
        o,
        "    compiled: {}",
        v.compiled_version.as_deref().unwrap_or("")
    );
    let _ = writeln!(o, "  mouse-mode: {}", v.mouse_mode);
    let channels = v.channels.as_deref().unwrap_or_default();
    if channels.is_empty() {
        o.push_str("Channels: none\n");
    }
    for c in channels {
        o.push_str("Channel:\n");
        // The machine's viewers link without TLS.
        let _ = writeln!(o, "     address: {}:{}", c.host, c.port);
        let _ = writeln!(o, "     session: {}", c.connection_id);
        let _ = writeln!(o, "     channel: {}:{}", c.channel_type, c.channel_id);
        let name = CHANNEL_NAMES
            .get(c.channel_type as usize)
            .copied()
            .unwrap_or("unknown");
        let _ = writeln!(o, "     channel name: {name}");
    }
}

/// SPICE channel names by type, as QEMU 10.0.2 prints those a viewer links by default (the
/// machine's viewers link no others).
const CHANNEL_NAMES: &[&str] = &["unknown", "main", "display", "inputs", "cursor"];

fn channel_info(ch: &Channel) -> api::SpiceChannel {
    api::SpiceChannel {
        host: ch.host.clone(),
        port: ch.port.clone(),
        family: ch.family.clone(),
        connection_id: ch.connection_id,
        channel_type: 1,
        channel_id: 0,
        tls: false,
    }
}

/// The password a viewer has to give: set and not expired on the machine's clock.
fn password(m: &Machine, c: &SpiceConfig) -> Option<String> {
    let s = &m.display.spice;
    let p = s.password.clone().or_else(|| c.password.clone())?;
    match s.expiry {
        Expiry::At(t) if t < wall_secs(m) => None,
        _ => Some(p),
    }
}

fn could_not() -> QmpError {
    QmpError::generic("Could not set password")
}

/// `set_password` for SPICE: `connected` says what happens to connected viewers (`keep`
/// them, `fail` while there are any, or `disconnect` them).
pub fn set_password(m: &mut Machine, password: &str, connected: &str) -> Result<(), QmpError> {
    let Some(c) = config(m) else {
        return Err(super::no_spice());
    };
    if !c.ticketing {
        return Err(could_not());
    }
    if connected == "fail" && !m.display.spice.channels.is_empty() {
        return Err(could_not());
    }
    m.display.spice.password = Some(password.to_string());
    if connected == "disconnect" {
        for ch in std::mem::take(&mut m.display.spice.channels) {
            emit_disconnected(m, &c, &ch);
        }
    }
    Ok(())
}

/// `expire_password` for SPICE.
pub fn expire_password(m: &mut Machine, time: &str) -> Result<(), QmpError> {
    let expiry = parse_expiry(time, wall_secs(m))?;
    if config(m).is_none() {
        return Err(super::no_spice());
    }
    m.display.spice.expiry = expiry;
    Ok(())
}

fn basic(host: &str, port: &str, f: &api::NetworkAddressFamily) -> api::SpiceBasicInfo {
    api::SpiceBasicInfo {
        host: host.to_string(),
        port: port.to_string(),
        family: f.clone(),
    }
}

fn server_basic(c: &SpiceConfig, viewer_host: &str) -> api::SpiceBasicInfo {
    let (host, f) = c.server_end(viewer_host);
    let port = c.port.map(|p| p.to_string()).unwrap_or_default();
    basic(&host, &port, &f)
}

fn emit_disconnected(m: &mut Machine, c: &SpiceConfig, ch: &Channel) {
    m.emit_event(api::SpiceDisconnected {
        server: server_basic(c, &ch.host),
        client: basic(&ch.host, &ch.port, &ch.family),
    });
}

/// `__org.qmpkit_viewer-connect` for SPICE: the viewer links its main channel
/// (SPICE_CONNECTED) and sends its ticket: accepted (SPICE_INITIALIZED) or refused
/// (SPICE_DISCONNECTED). Returns the viewer's port and, when refused, why.
pub fn connect(
    m: &mut Machine,
    r: ViewerRequest,
    port: String,
) -> Result<(String, Option<&'static str>), QmpError> {
    let Some(c) = config(m) else {
        return Err(crate::generic("The machine has no SPICE server"));
    };
    if r.websocket || r.x509_dname.is_some() || r.sasl_username.is_some() {
        return Err(crate::generic(
            "A SPICE viewer takes no websocket, certificate or SASL user name",
        ));
    }
    let host = r.host.unwrap_or_else(|| "127.0.0.1".into());
    if m.display
        .spice
        .channels
        .iter()
        .any(|ch| ch.host == host && ch.port == port)
    {
        return Err(crate::generic(format!(
            "A viewer from {host}:{port} is connected already"
        )));
    }
    let accepted =
        !c.ticketing || password(m, &c).is_some_and(|p| Some(p.as_str()) == r.password.as_deref());
    let s = &mut m.display.spice;
    s.sessions = s.sessions.wrapping_add(1);
    // QEMU's ids are random 32-bit numbers, reported signed; these are spread the same way.
    let connection_id = i64::from(s.sessions.wrapping_mul(0x9e37_79b1) as i32);
    let ch = Channel {
        family: family(&host),
        host,
        port: port.clone(),
        connection_id,
    };
    m.emit_event(api::SpiceConnected {
        server: server_basic(&c, &ch.host),
        client: basic(&ch.host, &ch.port, &ch.family),
    });
    if !accepted {
        emit_disconnected(m, &c, &ch);
        return Ok((port, Some("Permission denied")));
    }
    let (host, f) = c.server_end(&ch.host);
    m.emit_event(api::SpiceInitialized {
        server: api::SpiceServerInfo {
            host,
            port: c.port.map(|p| p.to_string()).unwrap_or_default(),
            family: f,
            auth: Some(c.auth().to_string()),
        },
        client: channel_info(&ch),
    });
    m.display.spice.channels.push(ch);
    Ok((port, None))
}

/// `__org.qmpkit_viewer-disconnect` for SPICE.
pub fn disconnect(m: &mut Machine, port: &str) -> Result<(), QmpError> {
    let Some(c) = config(m) else {
        return Err(crate::generic("The machine has no SPICE server"));
    };
    let Some(i) = m
        .display
        .spice
        .channels
        .iter()
        .position(|ch| ch.port == port)
    else {
        return Err(crate::generic(format!(
            "No SPICE viewer is connected from port {port}"
        )));
    };
    let ch = m.display.spice.channels.remove(i);
    emit_disconnected(m, &c, &ch);
    Ok(())
}
