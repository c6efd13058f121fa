//! Where a server listens: QEMU's monitor options parsed into a [`Transport`], bound into a
//! [`Listener`], served by [`Server::serve`].
//!
//! Accepted forms (as QEMU's command line writes them):
//!
//! * `-qmp unix:PATH[,server=on|off][,wait=on|off]`, `-qmp tcp:HOST:PORT[,server][,nowait]`,
//!   `-qmp stdio`;
//! * `-chardev socket,id=ID,path=PATH,server=on,wait=off`,
//!   `-chardev socket,id=ID,host=HOST,port=PORT,...`, `-chardev stdio,id=ID`, with
//!   `-mon chardev=ID,mode=control` (or the storage daemon's `--monitor chardev=ID`).
//!
//! `server=off` connects out to a listening peer and serves that one connection. Unix sockets
//! are created with mode 0600, replacing a stale socket file. TCP listens only on loopback
//! addresses unless [`BindOptions::allow_remote_tcp`] is set.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tokio::io::{AsyncRead, AsyncWrite};

use crate::error::ServerError;
use crate::server::Server;
use crate::session::{OnEof, SessionOptions, Sock};

/// A monitor endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    Unix {
        path: PathBuf,
        /// Listen (true) or connect to a listening peer (false).
        server: bool,
        /// QEMU waits for the first client before starting the guest; recorded only (this
        /// server serves from the start either way).
        wait: bool,
    },
    Tcp {
        host: String,
        port: u16,
        server: bool,
        wait: bool,
    },
    /// Standard input and output.
    Stdio,
    /// A socket the process inherited (`-chardev socket,id=…,fd=N,…`): a
    /// listening socket when `server`, else a connected one.
    Fd { fd: i32, server: bool },
}

/// What a monitor speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MonitorMode {
    /// QMP; `pretty`: QEMU's `pretty=on` (each message over several indented lines).
    Control { pretty: bool },
    /// The human monitor with QEMU's line editor (`-monitor`, `-mon …,mode=readline`).
    Readline,
}

/// One monitor of a QEMU command line: where and what it speaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Monitor {
    pub transport: Transport,
    pub mode: MonitorMode,
}

/// Choices made when binding, beyond what QEMU's options say.
#[derive(Debug, Clone, Default)]
pub struct BindOptions {
    /// Allow listening on (or connecting to) a non-loopback TCP address.
    pub allow_remote_tcp: bool,
}

fn opt_err(msg: impl Into<String>) -> ServerError {
    ServerError::Option(msg.into())
}

/// QEMU's boolean option values (`on`/`off`, `yes`/`no`, `true`/`false`).
fn parse_bool(key: &str, v: &str) -> Result<bool, ServerError> {
    match v {
        "on" | "yes" | "true" | "y" => Ok(true),
        "off" | "no" | "false" | "n" => Ok(false),
        _ => Err(opt_err(format!("Parameter '{key}' expects 'on' or 'off'"))),
    }
}

pub use qmpkit_wire::opts::split_options;

#[derive(Default)]
struct SocketOpts {
    server: Option<bool>,
    wait: Option<bool>,
}

impl SocketOpts {
    /// Apply one option; false when `key` is not a socket flag.
    fn apply(&mut self, key: &str, value: Option<&str>) -> Result<bool, ServerError> {
        match (key, value) {
            ("server", None) => self.server = Some(true),
            ("noserver", None) => self.server = Some(false),
            ("wait", None) => self.wait = Some(true),
            ("nowait", None) => self.wait = Some(false),
            ("server", Some(v)) => self.server = Some(parse_bool(key, v)?),
            ("wait", Some(v)) => self.wait = Some(parse_bool(key, v)?),
            // Accepted and without effect here.
            (
                "nodelay" | "ipv4" | "ipv6" | "to" | "reconnect" | "reconnect-ms" | "tight"
                | "abstract",
                _,
            ) => {}
            _ => return Ok(false),
        }
        Ok(true)
    }

    fn server(&self) -> bool {
        self.server.unwrap_or(false)
    }

    fn wait(&self) -> bool {
        self.wait.unwrap_or(true)
    }
}

fn key_value(part: &str) -> (&str, Option<&str>) {
    match part.split_once('=') {
        Some((k, v)) => (k, Some(v)),
        None => (part, None),
    }
}

/// `HOST:PORT` (the host may be bracketed IPv6, or empty for all addresses).
fn host_port(s: &str) -> Result<(String, u16), ServerError> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (h, p) = rest
            .split_once("]:")
            .ok_or_else(|| opt_err(format!("invalid address '{s}': expected HOST:PORT")))?;
        (h.to_string(), p)
    } else {
        let (h, p) = s
            .rsplit_once(':')
            .ok_or_else(|| opt_err(format!("invalid address '{s}': expected HOST:PORT")))?;
        (h.to_string(), p)
    };
    let port = port
        .parse::<u16>()
        .map_err(|_| opt_err(format!("invalid port '{port}'")))?;
    Ok((host, port))
}

impl Transport {
    /// The argument of QEMU's `-qmp` option.
    pub fn parse_qmp(spec: &str) -> Result<Transport, ServerError> {
        let parts = split_options(spec);
        let first = parts.first().map(String::as_str).unwrap_or("");
        let mut so = SocketOpts::default();
        for p in parts.iter().skip(1) {
            let (k, v) = key_value(p);
            if !so.apply(k, v)? {
                return Err(opt_err(format!("Invalid parameter '{k}'")));
            }
        }
        if first == "stdio" {
            return Ok(Transport::Stdio);
        }
        if let Some(path) = first.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(opt_err("unix: needs a socket path"));
            }
            return Ok(Transport::Unix {
                path: PathBuf::from(path),
                server: so.server(),
                wait: so.wait(),
            });
        }
        if let Some(addr) = first.strip_prefix("tcp:") {
            let (host, port) = host_port(addr)?;
            return Ok(Transport::Tcp {
                host,
                port,
                server: so.server(),
                wait: so.wait(),
            });
        }
        Err(opt_err(format!(
            "'{first}' is not a supported QMP character device (unix:PATH, tcp:HOST:PORT, stdio)"
        )))
    }

    /// The argument of QEMU's `-chardev` option: the chardev's id and its transport.
    pub fn parse_chardev(spec: &str) -> Result<(String, Transport), ServerError> {
        let parts = split_options(spec);
        let backend = parts.first().map(String::as_str).unwrap_or("");
        let mut id = None;
        let mut path = None;
        let mut host = None;
        let mut port = None;
        let mut fd = None;
        let mut so = SocketOpts::default();
        for p in parts.iter().skip(1) {
            let (k, v) = key_value(p);
            match (k, v) {
                ("backend", Some(b)) if backend.is_empty() => {
                    return Transport::parse_chardev(&format!("{b},{}", parts[1..].join(",")))
                }
                ("id", Some(v)) => id = Some(v.to_string()),
                ("path", Some(v)) => path = Some(v.to_string()),
                ("host", Some(v)) => host = Some(v.to_string()),
                ("port", Some(v)) => {
                    port = Some(
                        v.parse::<u16>()
                            .map_err(|_| opt_err(format!("invalid port '{v}'")))?,
                    )
                }
                ("fd", Some(v)) if backend == "socket" => {
                    fd =
                        Some(v.parse::<i32>().ok().filter(|n| *n >= 0).ok_or_else(|| {
                            opt_err(format!("File descriptor '{v}' is not a socket"))
                        })?)
                }
                ("signal" | "mux" | "logfile" | "logappend", _) if backend == "stdio" => {}
                _ => {
                    if !so.apply(k, v)? {
                        return Err(opt_err(format!("Invalid parameter '{k}'")));
                    }
                }
            }
        }
        let id = id.ok_or_else(|| opt_err("chardev: \"id\" is required"))?;
        let t = match backend {
            "stdio" => Transport::Stdio,
            "socket" if fd.is_some() => {
                if path.is_some() || host.is_some() {
                    return Err(opt_err(
                        "chardev: socket: 'fd' is mutually exclusive with 'path' and 'host'",
                    ));
                }
                Transport::Fd {
                    fd: fd.unwrap_or(-1),
                    server: so.server(),
                }
            }
            "socket" => match (path, host, port) {
                (Some(path), None, None) => Transport::Unix {
                    path: PathBuf::from(path),
                    server: so.server(),
                    wait: so.wait(),
                },
                (None, host, Some(port)) => Transport::Tcp {
                    host: host.unwrap_or_default(),
                    port,
                    server: so.server(),
                    wait: so.wait(),
                },
                (None, Some(_), None) => {
                    return Err(opt_err("chardev: socket: \"port\" is required"))
                }
                (None, None, None) => {
                    return Err(opt_err(
                        "chardev: socket: \"path\" or \"host\" and \"port\" are required",
                    ))
                }
                _ => {
                    return Err(opt_err(
                        "chardev: socket: \"path\" and \"host\" are mutually exclusive",
                    ))
                }
            },
            other => {
                return Err(opt_err(format!(
                    "chardev backend '{other}' is not supported for QMP (socket, stdio)"
                )))
            }
        };
        Ok((id, t))
    }

    /// All QMP monitors a QEMU-style command line asks for: every `-qmp`, and every
    /// `-mon`/`--monitor` in control mode with the `-chardev` it names. Options may be
    /// written `-opt value`, `--opt value` or `--opt=value`; other options are ignored.
    /// A human monitor or `pretty=on` is an error here: [`Transport::monitors_from_command_line`]
    /// reports those.
    pub fn from_command_line<I, S>(args: I) -> Result<Vec<Transport>, ServerError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut out = Vec::new();
        for m in Transport::monitors_from_command_line(args)? {
            match m.mode {
                MonitorMode::Control { pretty: false } => out.push(m.transport),
                MonitorMode::Control { pretty: true } => {
                    return Err(opt_err("pretty=on needs a server that pretty-prints"))
                }
                MonitorMode::Readline => {
                    return Err(opt_err("a human monitor (mode=readline) is not QMP"))
                }
            }
        }
        Ok(out)
    }

    /// Every monitor a QEMU-style command line asks for, in command-line order: `-qmp DEV`,
    /// `-qmp-pretty DEV` (QMP, pretty-printed), `-monitor DEV` (the human monitor; `none`
    /// for none), and `-mon [chardev=]ID[,mode=readline|control][,pretty=on|off]` with the
    /// `-chardev` it names (the storage daemon's `--monitor` defaults to control mode).
    pub fn monitors_from_command_line<I, S>(args: I) -> Result<Vec<Monitor>, ServerError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let args: Vec<String> = args.into_iter().map(|s| s.as_ref().to_string()).collect();
        let mut chardevs: HashMap<String, Result<Transport, ServerError>> = HashMap::new();
        let mut mons: Vec<(String, String, MonitorMode)> = Vec::new();
        let mut out: Vec<(usize, Monitor)> = Vec::new();
        let mut i = 0;
        while i < args.len() {
            let a = args[i].trim_start_matches('-');
            let dashed = args[i].starts_with('-');
            let double = args[i].starts_with("--");
            let (name, inline) = match a.split_once('=') {
                Some((n, v)) if double => (n, Some(v.to_string())),
                _ => (a, None),
            };
            let takes =
                dashed && matches!(name, "qmp" | "chardev" | "mon" | "monitor" | "qmp-pretty");
            if !takes {
                i += 1;
                continue;
            }
            let value = match inline {
                Some(v) => v,
                None => {
                    i += 1;
                    args.get(i)
                        .cloned()
                        .ok_or_else(|| opt_err(format!("option '-{name}' needs an argument")))?
                }
            };
            // The storage daemon's `--monitor` is `-mon`; QEMU's `-monitor` takes a device.
            let storage_daemon_monitor =
                name == "monitor" && (double || value.contains("chardev="));
            match name {
                "qmp" | "qmp-pretty" => {
                    let pretty = name == "qmp-pretty";
                    out.push((
                        i,
                        Monitor {
                            transport: Transport::parse_qmp(&value)?,
                            mode: MonitorMode::Control { pretty },
                        },
                    ));
                }
                "monitor" if !storage_daemon_monitor => {
                    if value != "none" {
                        out.push((
                            i,
                            Monitor {
                                transport: Transport::parse_qmp(&value)?,
                                mode: MonitorMode::Readline,
                            },
                        ));
                    }
                }
                "chardev" => {
                    // Only a monitor's chardev must be one QMP can speak
                    // on; any other back end belongs to a device (a serial
                    // port on a file, a pty, …) and is checked when a
                    // monitor names it.
                    match Transport::parse_chardev(&value) {
                        Ok((id, t)) => {
                            chardevs.insert(id, Ok(t));
                        }
                        Err(e) => {
                            let kv: Vec<String> = split_options(&value);
                            let backend = kv.first().map(String::as_str).unwrap_or("");
                            let id = kv.iter().find_map(|p| match key_value(p) {
                                ("id", Some(v)) => Some(v.to_string()),
                                _ => None,
                            });
                            match id {
                                Some(id) if !matches!(backend, "socket" | "stdio") => {
                                    chardevs.insert(id, Err(e));
                                }
                                _ => return Err(e),
                            }
                        }
                    }
                }
                _ => {
                    let mut chardev = None;
                    let mut readline = name != "monitor";
                    let mut pretty = false;
                    for (n, p) in split_options(&value).into_iter().enumerate() {
                        match key_value(&p) {
                            ("chardev", Some(v)) => chardev = Some(v.to_string()),
                            (v, None) if n == 0 && !v.is_empty() => chardev = Some(v.to_string()),
                            ("mode", Some("control")) => readline = false,
                            ("mode", Some("readline")) => readline = true,
                            ("mode", Some(v)) => {
                                return Err(opt_err(format!(
                                    "-mon {value}: Parameter 'mode' does not accept value '{v}'"
                                )))
                            }
                            ("pretty", Some(v)) => pretty = parse_bool("pretty", v)?,
                            ("pretty", None) => pretty = true,
                            ("id", _) => {}
                            (k, _) => return Err(opt_err(format!("Invalid parameter '{k}'"))),
                        }
                    }
                    let chardev =
                        chardev.ok_or_else(|| opt_err("monitor: \"chardev\" is required"))?;
                    let mode = if readline {
                        if pretty {
                            return Err(opt_err(format!(
                                "-mon {value}: 'pretty' is not compatible with HMP monitors"
                            )));
                        }
                        MonitorMode::Readline
                    } else {
                        MonitorMode::Control { pretty }
                    };
                    mons.push((value.clone(), chardev, mode));
                }
            }
            i += 1;
        }
        for (n, (spec, id, mode)) in mons.into_iter().enumerate() {
            let t = match chardevs.remove(&id) {
                Some(t) => t?,
                None => return Err(opt_err(format!("-mon {spec}: chardev \"{id}\" not found"))),
            };
            out.push((usize::MAX - 1000 + n, Monitor { transport: t, mode }));
        }
        out.sort_by_key(|(i, _)| *i);
        Ok(out.into_iter().map(|(_, m)| m).collect())
    }
}

/// A bound (or connected) transport, ready for [`Server::serve`].
#[derive(Debug)]
pub enum Listener {
    Unix {
        listener: tokio::net::UnixListener,
        path: PathBuf,
    },
    Tcp {
        listener: tokio::net::TcpListener,
        addr: SocketAddr,
    },
    /// `server=off`: one connection made to a listening peer.
    UnixClient(tokio::net::UnixStream),
    TcpClient(tokio::net::TcpStream),
    Stdio,
}

impl Listener {
    /// Where clients connect, for messages: `unix:PATH`, `tcp:ADDR`, `stdio`, ….
    pub fn describe(&self) -> String {
        match self {
            Listener::Unix { path, .. } => format!("unix:{}", path.display()),
            Listener::Tcp { addr, .. } => format!("tcp:{addr}"),
            Listener::UnixClient(_) => "unix (connected)".into(),
            Listener::TcpClient(s) => match s.peer_addr() {
                Ok(a) => format!("tcp:{a} (connected)"),
                Err(_) => "tcp (connected)".into(),
            },
            Listener::Stdio => "stdio".into(),
        }
    }

    /// The unix socket path, when listening on one.
    pub fn unix_path(&self) -> Option<&Path> {
        match self {
            // An inherited listener (`fd=N`) has no path of its own.
            Listener::Unix { path, .. } if !path.as_os_str().is_empty() => Some(path),
            _ => None,
        }
    }

    /// The TCP address, when listening on one (the port the system chose for port 0).
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        match self {
            Listener::Tcp { addr, .. } => Some(*addr),
            _ => None,
        }
    }
}

/// Bind a unix socket at `path` with mode 0600. A stale socket file there is replaced; any
/// other file is left alone (error). The socket is bound under a temporary name, restricted,
/// then renamed into place, so it is never reachable with wider permissions, and the path
/// appears only once it accepts connections.
pub fn bind_unix(path: &Path) -> Result<tokio::net::UnixListener, ServerError> {
    bind_unix_mode(path, Some(0o600))
}

/// [`bind_unix`] with the socket's mode given, or (`None`) left as the process's umask makes
/// it: for a listener other users may connect to.
pub fn bind_unix_mode(
    path: &Path,
    mode: Option<u32>,
) -> Result<tokio::net::UnixListener, ServerError> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if !m.file_type().is_socket() => {
            return Err(ServerError::NotASocket(path.to_path_buf()))
        }
        _ => {}
    }
    let file = path
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{file}.{}.tmp", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let listener = std::os::unix::net::UnixListener::bind(&tmp)
        .map_err(|e| ServerError::io(format!("{}", path.display()), e))?;
    let ready = mode
        .map_or(Ok(()), |m| {
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(m))
        })
        .and_then(|_| std::fs::rename(&tmp, path))
        .and_then(|_| listener.set_nonblocking(true));
    if let Err(e) = ready {
        let _ = std::fs::remove_file(&tmp);
        return Err(ServerError::io(format!("{}", path.display()), e));
    }
    tokio::net::UnixListener::from_std(listener)
        .map_err(|e| ServerError::io(format!("{}", path.display()), e))
}

async fn resolve(
    host: &str,
    port: u16,
    allow_remote: bool,
) -> Result<Vec<SocketAddr>, ServerError> {
    let h = if host.is_empty() { "0.0.0.0" } else { host };
    let h = h.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((h, port))
        .await
        .map_err(|e| ServerError::io(format!("{host}:{port}"), e))?
        .collect();
    if addrs.is_empty() {
        return Err(opt_err(format!("{host}:{port}: no address")));
    }
    if !allow_remote {
        if let Some(a) = addrs.iter().find(|a| !a.ip().is_loopback()) {
            return Err(ServerError::NonLoopback(a.to_string()));
        }
    }
    Ok(addrs)
}

/// Bind (or connect) `transport`.
pub async fn bind(transport: &Transport, opts: &BindOptions) -> Result<Listener, ServerError> {
    match transport {
        Transport::Stdio => Ok(Listener::Stdio),
        Transport::Fd { fd, server } => inherited(*fd, *server),
        Transport::Unix {
            path, server: true, ..
        } => Ok(Listener::Unix {
            listener: bind_unix(path)?,
            path: path.clone(),
        }),
        Transport::Unix {
            path,
            server: false,
            ..
        } => {
            let s = tokio::net::UnixStream::connect(path)
                .await
                .map_err(|e| ServerError::io(format!("{}", path.display()), e))?;
            Ok(Listener::UnixClient(s))
        }
        Transport::Tcp {
            host, port, server, ..
        } => {
            let addrs = resolve(host, *port, opts.allow_remote_tcp).await?;
            if *server {
                let listener = tokio::net::TcpListener::bind(&addrs[..])
                    .await
                    .map_err(|e| ServerError::io(format!("{host}:{port}"), e))?;
                let addr = listener
                    .local_addr()
                    .map_err(|e| ServerError::io(format!("{host}:{port}"), e))?;
                Ok(Listener::Tcp { listener, addr })
            } else {
                let s = tokio::net::TcpStream::connect(&addrs[..])
                    .await
                    .map_err(|e| ServerError::io(format!("{host}:{port}"), e))?;
                Ok(Listener::TcpClient(s))
            }
        }
    }
}

/// A socket the process inherited as file descriptor `fd`: a listener
/// (unix or TCP, as the socket is) when `server`, else one connection.
fn inherited(fd: i32, server: bool) -> Result<Listener, ServerError> {
    use std::os::fd::FromRawFd;
    let not_socket = || opt_err(format!("File descriptor '{fd}' is not a socket"));
    let mut addr: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: getsockname fills `addr` up to `len` bytes; a descriptor
    // that is not a socket (or not open) makes it fail.
    let r = unsafe {
        libc::getsockname(
            fd,
            (&mut addr as *mut libc::sockaddr_storage).cast(),
            &mut len,
        )
    };
    if r != 0 {
        return Err(not_socket());
    }
    let io = |e: std::io::Error| ServerError::io(format!("fd {fd}"), e);
    // The descriptor is this process's from here on (closed on exec).
    // SAFETY: fcntl on a descriptor getsockname just accepted.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFD);
        if flags >= 0 {
            libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC);
        }
    }
    let unix = i32::from(addr.ss_family) == libc::AF_UNIX;
    // SAFETY (each from_raw_fd): `fd` is an open socket of that family that
    // nothing else in the process owns.
    match (unix, server) {
        (true, true) => {
            let l = unsafe { std::os::unix::net::UnixListener::from_raw_fd(fd) };
            l.set_nonblocking(true).map_err(io)?;
            let listener = tokio::net::UnixListener::from_std(l).map_err(io)?;
            Ok(Listener::Unix {
                listener,
                path: PathBuf::new(),
            })
        }
        (true, false) => {
            let s = unsafe { std::os::unix::net::UnixStream::from_raw_fd(fd) };
            s.set_nonblocking(true).map_err(io)?;
            Ok(Listener::UnixClient(
                tokio::net::UnixStream::from_std(s).map_err(io)?,
            ))
        }
        (false, true) => {
            let l = unsafe { std::net::TcpListener::from_raw_fd(fd) };
            l.set_nonblocking(true).map_err(io)?;
            let addr = l.local_addr().map_err(io)?;
            let listener = tokio::net::TcpListener::from_std(l).map_err(io)?;
            Ok(Listener::Tcp { listener, addr })
        }
        (false, false) => {
            let s = unsafe { std::net::TcpStream::from_raw_fd(fd) };
            s.set_nonblocking(true).map_err(io)?;
            Ok(Listener::TcpClient(
                tokio::net::TcpStream::from_std(s).map_err(io)?,
            ))
        }
    }
}

impl Server {
    /// Serve a bound transport until [`Server::shutdown`] (listeners) or until the one
    /// connection ends (connected transports, stdio). Every connection gets its own task.
    pub async fn serve(&self, listener: Listener) -> Result<(), ServerError> {
        self.serve_with(listener, SessionOptions::default()).await
    }

    /// [`Server::serve`] with per-monitor session options (`pretty=on`).
    pub async fn serve_with(
        &self,
        listener: Listener,
        sopts: SessionOptions,
    ) -> Result<(), ServerError> {
        match listener {
            Listener::Unix { listener, path } => {
                let r = self
                    .accept_loop(
                        || async { listener.accept().await.map(|(s, _)| s) },
                        move |me, s| async move { me.serve_unix_stream_with(s, sopts).await },
                    )
                    .await;
                let _ = std::fs::remove_file(&path);
                r
            }
            Listener::Tcp { listener, .. } => {
                self.accept_loop(
                    || async { listener.accept().await.map(|(s, _)| s) },
                    move |me, s| async move { me.serve_tcp_stream_with(s, sopts).await },
                )
                .await
            }
            Listener::UnixClient(s) => {
                self.serve_unix_stream_with(s, sopts).await;
                Ok(())
            }
            Listener::TcpClient(s) => {
                self.serve_tcp_stream_with(s, sopts).await;
                Ok(())
            }
            Listener::Stdio => {
                // As QEMU's `-qmp stdio`: the end of standard input ends no output; events
                // go on until the server shuts down.
                let io = tokio::io::join(tokio::io::stdin(), tokio::io::stdout());
                self.serve_stream_with(io, OnEof::KeepOutput, sopts).await
            }
        }
    }

    /// Bind `transport` and serve it.
    pub async fn serve_transport(
        &self,
        transport: &Transport,
        opts: &BindOptions,
    ) -> Result<(), ServerError> {
        let l = bind(transport, opts).await?;
        self.serve(l).await
    }

    /// Accept connections on a unix listener until shutdown.
    pub async fn serve_unix(&self, listener: tokio::net::UnixListener) -> Result<(), ServerError> {
        self.accept_loop(
            || async { listener.accept().await.map(|(s, _)| s) },
            |me, s| async move { me.serve_unix_stream(s).await },
        )
        .await
    }

    /// Accept connections on a TCP listener until shutdown.
    pub async fn serve_tcp(&self, listener: tokio::net::TcpListener) -> Result<(), ServerError> {
        self.accept_loop(
            || async { listener.accept().await.map(|(s, _)| s) },
            |me, s| async move { me.serve_tcp_stream(s).await },
        )
        .await
    }

    /// Accept with `accept` until shutdown, one task per connection running `serve`.
    async fn accept_loop<S, A, AF, F, FF>(&self, accept: A, serve: F) -> Result<(), ServerError>
    where
        A: Fn() -> AF,
        AF: std::future::Future<Output = std::io::Result<S>>,
        F: Fn(Server, S) -> FF,
        FF: std::future::Future<Output = ()> + Send + 'static,
    {
        self.note_runtime();
        let mut shutdown = self.inner.shutdown.subscribe();
        loop {
            if *shutdown.borrow() {
                return Ok(());
            }
            tokio::select! {
                r = accept() => match r {
                    Ok(s) => {
                        tokio::spawn(serve(self.clone(), s));
                    }
                    Err(_) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
                },
                _ = shutdown.changed() => {}
            }
        }
    }

    /// Serve one connected unix stream (with fd passing) until it ends.
    pub async fn serve_unix_stream(&self, s: tokio::net::UnixStream) {
        self.serve_unix_stream_with(s, SessionOptions::default())
            .await
    }

    /// [`Server::serve_unix_stream`] with session options.
    pub async fn serve_unix_stream_with(&self, s: tokio::net::UnixStream, sopts: SessionOptions) {
        self.note_runtime();
        self.run_session_with(Sock::Unix(s), OnEof::End, sopts)
            .await
    }

    /// Serve one connected TCP stream until it ends.
    pub async fn serve_tcp_stream(&self, s: tokio::net::TcpStream) {
        self.serve_tcp_stream_with(s, SessionOptions::default())
            .await
    }

    /// [`Server::serve_tcp_stream`] with session options.
    pub async fn serve_tcp_stream_with(&self, s: tokio::net::TcpStream, sopts: SessionOptions) {
        self.note_runtime();
        let _ = s.set_nodelay(true);
        self.run_session_with(Sock::Tcp(s), OnEof::End, sopts).await
    }

    /// Serve any byte stream (stdio, pipes, in-memory duplexes) as one session, until it
    /// ends. No fd passing.
    pub async fn serve_stream<S>(&self, stream: S) -> Result<(), ServerError>
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        self.serve_stream_with(stream, OnEof::End, SessionOptions::default())
            .await
    }

    async fn serve_stream_with<S>(
        &self,
        stream: S,
        on_eof: OnEof,
        sopts: SessionOptions,
    ) -> Result<(), ServerError>
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        self.note_runtime();
        let (ours, bridge) =
            tokio::net::UnixStream::pair().map_err(|e| ServerError::io("socketpair", e))?;
        let (mut sr, mut sw) = tokio::io::split(stream);
        let (mut br, mut bw) = bridge.into_split();
        let inbound = tokio::spawn(async move {
            let _ = tokio::io::copy(&mut sr, &mut bw).await;
            // Dropping the write half shuts the bridge down for writing: the session sees EOF.
        });
        let outbound = tokio::spawn(async move {
            let _ = tokio::io::copy(&mut br, &mut sw).await;
            let _ = tokio::io::AsyncWriteExt::shutdown(&mut sw).await;
        });
        self.run_session_with(Sock::Unix(ours), on_eof, sopts).await;
        inbound.abort();
        let _ = outbound.await;
        Ok(())
    }
}
