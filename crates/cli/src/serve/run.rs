//! Serving: one machine or a fleet, each behind its own QMP server and
//! transports; `-daemonize` and `-pidfile`; clean stop on SIGINT/SIGTERM.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use qmpkit_machine::{Machine, MachineConfig};
use qmpkit_machine_server::MachineHandle;
use qmpkit_machine_server::{expand_pattern, fleet_machine, has_index, try_fleet_machine};
use qmpkit_schema::Schema;
use qmpkit_server::{
    BindOptions, Listener, Monitor, MonitorMode, Registry, Server, ServerOptions, SessionOptions,
    Transport, Unhandled,
};

use super::opts::ServeOptions;

/// Where the default socket goes: `$XDG_RUNTIME_DIR`, else `/tmp`.
fn runtime_dir() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(d) if !d.is_empty() && std::path::Path::new(&d).is_dir() => PathBuf::from(d),
        _ => PathBuf::from("/tmp"),
    }
}

/// The monitor specs of the configuration as a QEMU command line.
fn monitor_args(c: &MachineConfig, index: Option<usize>) -> Vec<String> {
    let x = |s: &String| match index {
        Some(i) => expand_pattern(s, i),
        None => s.clone(),
    };
    let mut v = Vec::new();
    for s in &c.chardevs {
        v.push("-chardev".to_string());
        v.push(x(s));
    }
    for s in &c.mon {
        v.push("-mon".to_string());
        v.push(x(s));
    }
    for s in &c.qmp_pretty {
        v.push("-qmp-pretty".to_string());
        v.push(x(s));
    }
    for s in &c.monitor {
        v.push("-monitor".to_string());
        v.push(x(s));
    }
    for s in &c.qmp {
        v.push("-qmp".to_string());
        let mut spec = x(s);
        // A fleet's monitors listen: `--machines N --qmp unix:/run/vm-%d.sock`
        // needs no `server=on` (a single machine keeps QEMU's meaning of a
        // bare `-qmp unix:PATH`: connect to a listening peer).
        if index.is_some() && (s.starts_with("unix:") || s.starts_with("tcp:")) {
            let kv = qmpkit_machine::config::parse_keyval(&spec, None);
            if !kv.contains_key("server") && !kv.contains_key("wait") {
                spec.push_str(",server=on,wait=off");
            }
        }
        v.push(spec);
    }
    v
}

fn raise_fd_limit() {
    // SAFETY: plain getrlimit/setrlimit on a local struct.
    unsafe {
        let mut r = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 && r.rlim_cur < r.rlim_max {
            r.rlim_cur = r.rlim_max;
            let _ = libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
    }
}

/// `-daemonize`: fork; the parent waits until the child is serving (or
/// failed) and exits with its verdict. Returns the pipe end the child
/// reports readiness on.
fn daemonize() -> Result<Option<i32>, String> {
    let mut fds = [0i32; 2];
    // SAFETY: pipe/fork/setsid/read/close on fds we own; called before any
    // thread (the runtime) exists.
    unsafe {
        if libc::pipe(fds.as_mut_ptr()) != 0 {
            return Err("-daemonize: pipe failed".into());
        }
        match libc::fork() {
            -1 => Err("-daemonize: fork failed".into()),
            0 => {
                libc::close(fds[0]);
                libc::setsid();
                // As QEMU: a second fork, so that the daemon is no session
                // leader; the intermediate child exits at once.
                match libc::fork() {
                    -1 => libc::_exit(1),
                    0 => {}
                    _ => libc::_exit(0),
                }
                // Staying where it was started is harmless if this fails.
                let _ = libc::chdir(c"/".as_ptr());
                Ok(Some(fds[1]))
            }
            _ => {
                libc::close(fds[1]);
                let mut b = [0u8; 1];
                let n = libc::read(fds[0], b.as_mut_ptr().cast(), 1);
                std::process::exit(if n == 1 && b[0] == b'0' { 0 } else { 1 });
            }
        }
    }
}

fn report_ready(fd: Option<i32>, ok: bool) {
    if let Some(fd) = fd {
        let b = [if ok { b'0' } else { b'1' }];
        // SAFETY: writing one byte to our pipe end, then closing it; the
        // standard streams are pointed at /dev/null as QEMU does.
        unsafe {
            libc::write(fd, b.as_ptr().cast(), 1);
            libc::close(fd);
            if ok {
                let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
                if null >= 0 {
                    libc::dup2(null, 0);
                    libc::dup2(null, 1);
                    libc::dup2(null, 2);
                }
            }
        }
    }
}

/// How long a fleet member keeps its server once its last client left
/// (`QMPKIT_IDLE_RELEASE_MS` overrides it, for tests).
fn idle_release() -> Duration {
    std::env::var("QMPKIT_IDLE_RELEASE_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map(Duration::from_millis)
        .unwrap_or(Duration::from_secs(10))
}

/// Give memory freed by released servers back to the system: at most once
/// a second, a second after a release (so that a burst of releases is one
/// trim). `pending` is the fleet's.
fn trim_soon(pending: &Arc<AtomicBool>) {
    if pending.swap(true, Ordering::SeqCst) {
        return;
    }
    let pending = pending.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(1)).await;
        pending.store(false, Ordering::SeqCst);
        // SAFETY: malloc_trim only releases free memory.
        unsafe {
            libc::malloc_trim(0);
        }
    });
}

/// One machine behind its monitors. Its server (command table, encoded
/// replies) is built on the first connection; in a fleet it is a sibling of
/// the fleet's template (the encoded answers are shared: about 0.2 ms and
/// 50 KiB per server) and is released again when no client has been
/// connected for a while ([`idle_release`]), the freed memory given back to
/// the system ([`trim_soon`]), so a fleet costs its machines' state plus one
/// server per machine in use.
#[derive(Clone)]
struct Unit {
    handle: MachineHandle,
    server: Arc<Mutex<Option<Server>>>,
    /// Connected clients.
    active: Arc<AtomicUsize>,
    /// Bumped whenever a server is built.
    generation: Arc<AtomicU64>,
    timers_started: Arc<AtomicBool>,
    release_idle: bool,
    /// A fleet's first server: the others are its siblings and share its
    /// encoded answers (query-qmp-schema, query-commands, synthesised
    /// replies). A single machine has none.
    template: Option<Server>,
    /// A memory trim is scheduled (one flag for the fleet).
    trim_pending: Arc<AtomicBool>,
    schema: Arc<Schema>,
    sopts: Arc<ServerOptions>,
    /// The `query-qmp-schema` answer built with the binary, when it is the
    /// one to serve (the embedded schema, default introspection options).
    schema_reply: Option<&'static [u8]>,
    unhandled: Unhandled,
    test_control: bool,
}

impl Unit {
    fn new(
        machine: Machine,
        schema: &Arc<Schema>,
        sopts: &Arc<ServerOptions>,
        template: Option<&Server>,
        schema_reply: Option<&'static [u8]>,
        trim_pending: &Arc<AtomicBool>,
        o: &ServeOptions,
    ) -> Unit {
        Unit {
            handle: MachineHandle::new(machine),
            server: Arc::new(Mutex::new(None)),
            active: Arc::new(AtomicUsize::new(0)),
            generation: Arc::new(AtomicU64::new(0)),
            timers_started: Arc::new(AtomicBool::new(false)),
            release_idle: o.machines > 1,
            template: template.cloned(),
            trim_pending: trim_pending.clone(),
            schema: schema.clone(),
            sopts: sopts.clone(),
            schema_reply,
            unhandled: o.unhandled(),
            test_control: o.test_control,
        }
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, Option<Server>> {
        match self.server.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// The unit's server, built (and the machine's timers started) when
    /// there is none.
    fn server(&self) -> Server {
        let mut slot = self.slot();
        if let Some(s) = &*slot {
            return s.clone();
        }
        let mut reg = Registry::new();
        self.handle
            .register_with(&mut reg, &self.schema, self.unhandled, self.test_control);
        let server = new_server(
            &self.schema,
            reg,
            &self.sopts,
            self.template.as_ref(),
            self.schema_reply,
        );
        self.handle.set_events(Some(server.events()));
        if !self.timers_started.swap(true, Ordering::SeqCst) {
            tokio::spawn(self.handle.clone().run_timers(None));
        }
        self.generation.fetch_add(1, Ordering::SeqCst);
        *slot = Some(server.clone());
        server
    }

    /// Serve one client connection.
    async fn client(self, conn: Conn, mode: MonitorMode) {
        let pretty = match mode {
            MonitorMode::Control { pretty } => pretty,
            MonitorMode::Readline => {
                match conn {
                    Conn::Unix(s) => self.handle.serve_readline(s).await,
                    Conn::Tcp(s) => self.handle.serve_readline(s).await,
                }
                return;
            }
        };
        let sopts = SessionOptions { pretty };
        // Counted before the server is taken: a release that runs
        // meanwhile sees the client and keeps the server.
        self.active.fetch_add(1, Ordering::SeqCst);
        let srv = self.server();
        match conn {
            Conn::Unix(s) => srv.serve_unix_stream_with(s, sopts).await,
            Conn::Tcp(s) => srv.serve_tcp_stream_with(s, sopts).await,
        }
        drop(srv);
        if self.active.fetch_sub(1, Ordering::SeqCst) == 1 && self.release_idle {
            let generation = self.generation.load(Ordering::SeqCst);
            tokio::spawn(async move {
                tokio::time::sleep(idle_release()).await;
                let mut slot = self.slot();
                if self.active.load(Ordering::SeqCst) == 0
                    && self.generation.load(Ordering::SeqCst) == generation
                {
                    let old = slot.take();
                    self.handle.set_events(None);
                    drop(slot);
                    drop(old);
                    trim_soon(&self.trim_pending);
                }
            });
        }
    }

    /// Serve one bound transport until the machine ends.
    async fn serve(self, l: Listener, mode: MonitorMode) {
        match l {
            Listener::Unix { listener, path } => {
                loop {
                    let r = tokio::select! {
                        r = listener.accept() => r,
                        _ = self.handle.wait_exit() => break,
                    };
                    match r {
                        Ok((s, _)) => {
                            tokio::spawn(self.clone().client(Conn::Unix(s), mode));
                        }
                        Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                    }
                }
                drop(listener);
                let _ = std::fs::remove_file(&path);
            }
            Listener::Tcp { listener, .. } => loop {
                let r = tokio::select! {
                    r = listener.accept() => r,
                    _ = self.handle.wait_exit() => break,
                };
                match r {
                    Ok((s, _)) => {
                        tokio::spawn(self.clone().client(Conn::Tcp(s), mode));
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                }
            },
            Listener::UnixClient(s) => self.client(Conn::Unix(s), mode).await,
            Listener::TcpClient(s) => self.client(Conn::Tcp(s), mode).await,
            Listener::Stdio => match mode {
                MonitorMode::Readline => {
                    let io = tokio::io::join(tokio::io::stdin(), tokio::io::stdout());
                    self.handle.serve_readline(io).await
                }
                MonitorMode::Control { pretty } => {
                    let _ = self
                        .server()
                        .serve_with(Listener::Stdio, SessionOptions { pretty })
                        .await;
                }
            },
        }
    }

    /// Stop serving (after the machine ended): sessions end once their
    /// output is written.
    fn shutdown(&self) {
        if let Some(s) = &*self.slot() {
            s.shutdown();
        }
    }
}

/// A server for one machine: a sibling of the fleet's template, or one
/// of its own (with the ready-made `query-qmp-schema` answer if there is
/// one).
fn new_server(
    schema: &Arc<Schema>,
    reg: Registry,
    sopts: &ServerOptions,
    template: Option<&Server>,
    schema_reply: Option<&'static [u8]>,
) -> Server {
    match (template, schema_reply) {
        (Some(t), _) => t.sibling(reg, sopts.clone()),
        (None, Some(r)) => Server::with_schema_reply(schema.clone(), reg, sopts.clone(), r),
        (None, None) => Server::new(schema.clone(), reg, sopts.clone()),
    }
}

enum Conn {
    Unix(tokio::net::UnixStream),
    Tcp(tokio::net::TcpStream),
}

/// The prefix of messages: the emulator's name, else `qmpkit serve`.
fn prog(o: &ServeOptions) -> &str {
    o.emulator.as_deref().unwrap_or("qmpkit serve")
}

pub fn serve(o: ServeOptions, schema: Arc<Schema>, enabled: Vec<String>) -> ExitCode {
    raise_fd_limit();
    let ready_fd = if o.config.daemonize {
        match daemonize() {
            Ok(fd) => fd,
            Err(e) => {
                eprintln!("{}: {e}", prog(&o));
                return ExitCode::FAILURE;
            }
        }
    } else {
        None
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{}: {e}", prog(&o));
            report_ready(ready_fd, false);
            return ExitCode::FAILURE;
        }
    };
    let code = rt.block_on(serve_async(o, schema, enabled, ready_fd));
    // Everything owed was written (serve_async waits for the sessions); a
    // reader blocked on standard input must not hold the exit up.
    rt.shutdown_background();
    code
}

async fn serve_async(
    o: ServeOptions,
    schema: Arc<Schema>,
    enabled: Vec<String>,
    ready_fd: Option<i32>,
) -> ExitCode {
    let name = prog(&o).to_string();
    let fail = |msg: String| {
        eprintln!("{name}: {msg}");
        report_ready(ready_fd, false);
        ExitCode::FAILURE
    };
    let mut config = o.config.clone();
    let n = o.machines;
    let mut default_path = None;
    // The storage daemon serves no monitor unless asked for one.
    if o.storage_daemon.is_none()
        && config.qmp.is_empty()
        && config.mon.is_empty()
        && config.qmp_pretty.is_empty()
        && config.monitor.is_empty()
    {
        let dir = runtime_dir();
        let pid = std::process::id();
        let p = if n > 1 {
            dir.join(format!("qmpkit-{pid}-%d.sock"))
        } else {
            dir.join(format!("qmpkit-{pid}.sock"))
        };
        let p = p.to_string_lossy().into_owned();
        config.qmp.push(format!("unix:{p},server=on,wait=off"));
        default_path = Some(p);
    } else if n > 1 {
        let all = monitor_args(&config, None).join(" ");
        if !has_index(&all) {
            return fail(format!(
                "--machines {n}: the monitor path needs a %d for the machine's number (e.g. --qmp unix:/run/vm-%d.sock,server=on,wait=off)"
            ));
        }
    }
    let sopts = ServerOptions {
        qemu_version: config.qemu_version,
        package: config.package.clone(),
        unhandled: o.unhandled(),
        introspection: qmpkit_schema::introspect::Options {
            enabled: enabled.into_iter().collect(),
            unmask: o.from_introspection,
        },
        ..ServerOptions::default()
    };
    let config = Arc::new(config);
    let bind_opts = BindOptions {
        allow_remote_tcp: o.allow_remote_tcp,
    };
    // The embedded schema's answer was encoded when the binary was built, and so was the
    // emulator's (QEMU 10.0.2's with its build symbols).
    let schema_reply = if o.emulator.is_none() {
        (o.schema.is_none()
            && sopts.introspection.enabled.is_empty()
            && !sopts.introspection.unmask)
            .then_some(qmpkit_machine::embedded::QMP_SCHEMA_REPLY)
    } else {
        use super::emulate;
        (o.storage_daemon.is_none()
            && !sopts.introspection.unmask
            && sopts.introspection.enabled
                == emulate::cfg_symbols()
                    .into_iter()
                    .collect::<std::collections::HashSet<String>>())
        .then_some(emulate::QMP_SCHEMA_REPLY)
    };
    let sopts = Arc::new(sopts);
    // The fleet's servers are siblings of one built now with no handlers:
    // the schema's answers are encoded once for all of them.
    // Its handlers are a throwaway machine's, registered as the fleet's
    // are, so that its command table (and query-commands) is theirs.
    let template = (n > 1).then(|| {
        let mut reg = Registry::new();
        MachineHandle::new(fleet_machine(&config, &schema, 0)).register_with(
            &mut reg,
            &schema,
            o.unhandled(),
            o.test_control,
        );
        new_server(&schema, reg, &sopts, None, schema_reply)
    });
    let trim_pending = Arc::new(AtomicBool::new(false));
    let mut units: Vec<(Unit, Vec<(Listener, MonitorMode)>)> = Vec::with_capacity(n);
    for i in 0..n {
        let built = if n > 1 {
            try_fleet_machine(&config, &schema, i)
        } else {
            Machine::try_new(config.clone(), schema.clone())
        };
        let mut machine = match built {
            Ok(m) => m,
            Err(e) => {
                for (_, ls) in &units {
                    remove_sockets(ls);
                }
                return fail(e);
            }
        };
        if let Some(startup) = &o.storage_daemon {
            let enabled = &sopts.introspection.enabled;
            if let Err(e) = super::storage_daemon::start(&mut machine, &schema, enabled, startup) {
                return fail(e);
            }
        }
        let args = monitor_args(&config, if n > 1 { Some(i) } else { None });
        let monitors = match Transport::monitors_from_command_line(&args) {
            Ok(t) => t,
            Err(e) => return fail(e.to_string()),
        };
        let mut listeners = Vec::new();
        for Monitor { transport: t, mode } in &monitors {
            match qmpkit_server::bind(t, &bind_opts).await {
                Ok(l) => listeners.push((l, *mode)),
                Err(e) => {
                    for (_, ls) in &units {
                        remove_sockets(ls);
                    }
                    remove_sockets(&listeners);
                    // As in QEMU, a monitor without `server=on` connects to
                    // a listening peer; say so when there is none.
                    let client = matches!(
                        t,
                        Transport::Unix { server: false, .. }
                            | Transport::Tcp { server: false, .. }
                    );
                    let msg = match &e {
                        qmpkit_server::ServerError::NonLoopback(addr) => format!(
                            "refusing to serve QMP on non-loopback address '{addr}': anyone who can reach it controls the machine (pass --allow-remote-tcp to allow it)"
                        ),
                        _ if client => format!(
                            "{e} (this monitor connects to a listening peer; add ,server=on,wait=off to listen)"
                        ),
                        _ => e.to_string(),
                    };
                    return fail(msg);
                }
            }
        }
        units.push((
            Unit::new(
                machine,
                &schema,
                &sopts,
                template.as_ref(),
                schema_reply,
                &trim_pending,
                &o,
            ),
            listeners,
        ));
    }
    // Held (with its lock) until the process exits.
    let mut _pidfile = None;
    if let Some(p) = &config.pidfile {
        match write_pidfile(p) {
            Ok(f) => _pidfile = Some(f),
            Err(e) => {
                for (_, ls) in &units {
                    remove_sockets(ls);
                }
                return fail(format!("cannot create PID file: {e}"));
            }
        }
    }
    if let Some(p) = &default_path {
        // Written without println!: a closed stdout must not end the
        // machine.
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let first = expand_pattern(p, 0);
        let hint = if n > 1 {
            format!("{n} machines; connect to one with: qmp-shell {first}   (or: socat - UNIX-CONNECT:{first})")
        } else {
            format!("connect with: qmp-shell {p}   (or: socat - UNIX-CONNECT:{p})")
        };
        let _ = writeln!(out, "{p}\n{hint}");
        let _ = out.flush();
    }
    // A single machine gets its server now (a fleet's come with their
    // first clients, like the template's command table).
    let first = match (units.as_slice(), &template) {
        ([(unit, _)], _) => Some(unit.server()),
        (_, Some(t)) => Some(t.clone()),
        _ => None,
    };
    if let (Some(server), None) = (first, &o.emulator) {
        // One line on how the commands are answered, so that nobody takes
        // a made-up or refused answer for the machine's behaviour.
        let census =
            crate::serve_cmd::Census::counts(&server, &schema, &sopts.introspection.enabled);
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "qmpkit serve: {}",
            census.summary(o.unhandled())
        );
    }
    // What is built from here on comes from the system's allocator.
    crate::arena::pause();
    report_ready(ready_fd, true);
    // Loading the schema and building the servers leave freed memory in
    // the allocator's arenas; give it back to the system.
    // SAFETY: malloc_trim only releases free memory.
    unsafe {
        libc::malloc_trim(0);
    }

    let mut tasks = tokio::task::JoinSet::new();
    let mut all = Vec::with_capacity(units.len());
    for (unit, listeners) in units {
        for (l, mode) in listeners {
            tasks.spawn(unit.clone().serve(l, mode));
        }
        // A machine that ends (quit, guest shutdown) stops its server.
        let u = unit.clone();
        tasks.spawn(async move {
            u.handle.wait_exit().await;
            // Let the last replies and events go out.
            tokio::time::sleep(Duration::from_millis(20)).await;
            u.shutdown();
        });
        all.push(unit);
    }

    let signal = wait_signal();
    tokio::pin!(signal);
    let mut signalled = None;
    loop {
        tokio::select! {
            sig = &mut signal, if signalled.is_none() => {
                signalled = Some(sig);
                // The storage daemon ends quietly, as the real one does.
                if o.storage_daemon.is_none() {
                    use std::io::Write;
                    let _ = writeln!(std::io::stderr(), "qmpkit: terminating on signal {sig}");
                }
                for u in &all {
                    u.handle.host_signal();
                }
            }
            next = tasks.join_next() => {
                if next.is_none() {
                    break;
                }
            }
        }
    }
    for u in &all {
        u.shutdown();
    }
    // Nothing a client is owed is lost on exit: every session writes its
    // last replies and events first (each bounded in time by the server).
    let servers: Vec<Server> = all.iter().filter_map(|u| u.slot().clone()).collect();
    let _ = tokio::time::timeout(Duration::from_secs(15), async {
        for s in &servers {
            s.drained().await;
        }
    })
    .await;
    if let Some(p) = &config.pidfile {
        let _ = std::fs::remove_file(p);
    }
    ExitCode::SUCCESS
}

/// QEMU's pid file: opened, locked (a second process with the same file
/// fails), emptied, then this process's id written; the lock lasts as long
/// as the returned file is open.
fn write_pidfile(p: &str) -> Result<std::fs::File, String> {
    use std::io::Write;
    use std::os::fd::AsRawFd;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(false)
        .open(p)
        .map_err(|e| format!("Cannot open pid file: {}", os_error(&e)))?;
    // SAFETY: lockf on a descriptor this function owns.
    if unsafe { libc::lockf(f.as_raw_fd(), libc::F_TLOCK, 0) } != 0 {
        let e = std::io::Error::last_os_error();
        return Err(format!("Cannot lock pid file: {}", os_error(&e)));
    }
    f.set_len(0)
        .and_then(|_| write!(f, "{}\n", std::process::id()))
        .map_err(|e| format!("Failed to write pid file: {}", os_error(&e)))?;
    Ok(f)
}

/// An OS error as C's strerror words it (without Rust's "(os error N)").
fn os_error(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

fn remove_sockets(listeners: &[(Listener, MonitorMode)]) {
    for (l, _) in listeners {
        if let Some(p) = l.unix_path() {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// The first of SIGINT, SIGTERM, SIGHUP; its number.
async fn wait_signal() -> i32 {
    use tokio::signal::unix::{signal, SignalKind};
    let mk = |k: SignalKind| signal(k).ok();
    let (mut a, mut b, mut c) = (
        mk(SignalKind::interrupt()),
        mk(SignalKind::terminate()),
        mk(SignalKind::hangup()),
    );
    async fn recv(s: &mut Option<tokio::signal::unix::Signal>) {
        match s {
            Some(s) => {
                s.recv().await;
            }
            None => std::future::pending::<()>().await,
        }
    }
    tokio::select! {
        _ = recv(&mut a) => 2,
        _ = recv(&mut b) => 15,
        _ = recv(&mut c) => 1,
    }
}
