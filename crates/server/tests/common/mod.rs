//! Shared helpers: the reference material, schemas, an in-process server on its own runtime.

#![allow(dead_code)]

pub mod qsd;

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use qmpkit_schema::{introspect, Dialect, Schema};
use qmpkit_server::{Registry, Server, ServerOptions};

pub fn load_schema(path: &Path) -> Schema {
    match qmpkit_schema::load(path, Dialect::Modern) {
        Ok(s) => s,
        Err(_) => qmpkit_schema::load(path, Dialect::Legacy)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    }
}

pub fn cfg(names: &[&Path]) -> introspect::Options {
    let mut enabled = HashSet::new();
    for n in names {
        let text = std::fs::read_to_string(n).unwrap_or_else(|e| panic!("{}: {e}", n.display()));
        enabled.extend(introspect::parse_cfg_file(&text));
    }
    introspect::Options {
        enabled,
        unmask: false,
    }
}

/// A server on its own runtime, listening on a unix socket in a temporary directory.
pub struct Running {
    pub server: Server,
    pub socket: PathBuf,
    pub rt: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
}

pub fn start(schema: Arc<Schema>, registry: Registry, opts: ServerOptions) -> Running {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("qmp.sock");
    let server = rt.block_on(async { Server::new(schema, registry, opts) });
    let listener = {
        let _g = rt.enter();
        qmpkit_server::bind_unix(&socket).expect("bind")
    };
    let s = server.clone();
    rt.spawn(async move { s.serve_unix(listener).await });
    Running {
        server,
        socket,
        rt,
        _dir: dir,
    }
}

/// A test schema, small and self-contained.
pub const MINI_SCHEMA: &str = r#"
{ 'enum': 'QMPCapability', 'data': [ 'oob' ] }
{ 'command': 'qmp_capabilities', 'data': { '*enable': [ 'QMPCapability' ] }, 'allow-preconfig': true }
{ 'struct': 'VersionTriple', 'data': {'major': 'int', 'minor': 'int', 'micro': 'int'} }
{ 'struct': 'VersionInfo', 'data': {'qemu': 'VersionTriple', 'package': 'str'} }
{ 'command': 'query-version', 'returns': 'VersionInfo', 'allow-preconfig': true }
{ 'struct': 'CommandInfo', 'data': {'name': 'str'} }
{ 'command': 'query-commands', 'returns': ['CommandInfo'], 'allow-preconfig': true }
{ 'command': 'query-qmp-schema', 'returns': [ 'any' ], 'allow-preconfig': true }
{ 'command': 'stop' }
{ 'command': 'cont' }
{ 'command': 'slow', 'data': { 'ms': 'int' } }
{ 'command': 'oob-ping', 'allow-oob': true }
{ 'command': 'getfd', 'data': {'fdname': 'str'} }
{ 'command': 'count-fds' , 'returns': 'int' }
{ 'command': 'echo', 'data': { 'value': 'any' }, 'returns': 'any' }
{ 'command': 'emit', 'data': { 'event': 'str', '*data': 'any' } }
{ 'command': 'silent', 'success-response': false }
{ 'event': 'STOP' }
{ 'event': 'RESUME' }
{ 'event': 'RTC_CHANGE', 'data': { 'offset': 'int' } }
{ 'event': 'VSERPORT_CHANGE', 'data': { 'id': 'str', 'open': 'bool' } }
"#;

pub fn mini_schema() -> Arc<Schema> {
    let provider = qmpkit_schema::MemoryProvider::from_files([("mini.json", MINI_SCHEMA)]);
    Arc::new(
        qmpkit_schema::load_from("mini.json", Dialect::Modern, &provider)
            .or_else(|_| qmpkit_schema::load_from("mini.json", Dialect::Legacy, &provider))
            .expect("mini schema"),
    )
}

/// Handlers for the mini schema.
pub fn mini_registry() -> Registry {
    let mut r = Registry::new();
    r.register_sync("stop", |call| {
        call.events.emit("STOP", None);
        Ok(serde_json::json!({}))
    });
    r.register("slow", |call| async move {
        let ms = call.args.get("ms").and_then(|v| v.as_u64()).unwrap_or(0);
        tokio::time::sleep(Duration::from_millis(ms)).await;
        Ok(serde_json::json!({}))
    });
    r.register_sync("oob-ping", |_| Ok(serde_json::json!({"pong": true})));
    r.register_sync("getfd", |mut call| {
        let name = call
            .args
            .get("fdname")
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_string();
        let Some(fd) = call.fds.pop() else {
            return Err(qmpkit_wire::QmpError::generic(
                "No file descriptor supplied via SCM_RIGHTS",
            ));
        };
        if let Ok(mut m) = call.session.named_fds.lock() {
            m.insert(name, fd);
        }
        Ok(serde_json::json!({}))
    });
    r.register_sync("count-fds", |call| {
        let n = call.session.named_fds.lock().map(|m| m.len()).unwrap_or(0);
        Ok(serde_json::json!(n))
    });
    r.register_sync("echo", |call| {
        Ok(call
            .args
            .get("value")
            .cloned()
            .unwrap_or(serde_json::Value::Null))
    });
    r.register_sync("emit", |call| {
        let name = call
            .args
            .get("event")
            .and_then(|v| v.as_str())
            .unwrap_or("X");
        call.events.emit(name, call.args.get("data").cloned());
        Ok(serde_json::json!({}))
    });
    r
}

/// A blocking client over raw lines.
pub struct Raw {
    pub stream: UnixStream,
    reader: BufReader<UnixStream>,
}

impl Raw {
    pub fn connect(path: &Path) -> Raw {
        let stream = UnixStream::connect(path).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let reader = BufReader::new(stream.try_clone().expect("clone"));
        Raw { stream, reader }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send");
    }

    /// One line with its CRLF, or `None` on timeout/EOF.
    pub fn line(&mut self) -> Option<Vec<u8>> {
        let mut buf = Vec::new();
        match self.reader.read_until(b'\n', &mut buf) {
            Ok(0) => None,
            Ok(_) if buf.ends_with(b"\n") => Some(buf),
            _ => None,
        }
    }

    pub fn line_within(&mut self, d: Duration) -> Option<Vec<u8>> {
        let _ = self.stream.set_read_timeout(Some(d));
        let r = self.line();
        let _ = self.stream.set_read_timeout(Some(Duration::from_secs(10)));
        r
    }

    pub fn json(&mut self) -> serde_json::Value {
        let l = self.line().expect("a reply line");
        serde_json::from_slice(&l).expect("JSON reply")
    }

    /// Greeting and negotiation.
    pub fn negotiate(&mut self, oob: bool) {
        let g = self.json();
        assert!(g.get("QMP").is_some(), "{g}");
        if oob {
            self.send(
                b"{\"execute\": \"qmp_capabilities\", \"arguments\": {\"enable\": [\"oob\"]}}\n",
            );
        } else {
            self.send(b"{\"execute\": \"qmp_capabilities\"}\n");
        }
        assert_eq!(self.line().as_deref(), Some(&b"{\"return\": {}}\r\n"[..]));
    }

    /// True when the server closed the connection (EOF within `d`).
    pub fn closed_within(&mut self, d: Duration) -> bool {
        let _ = self.stream.set_read_timeout(Some(d));
        let mut b = [0u8; 1];
        matches!(self.reader.read(&mut b), Ok(0))
    }
}
