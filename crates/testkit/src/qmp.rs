//! A blocking, line-based QMP connection over a unix socket (greeting and negotiation done
//! on opening), for tests and the benchmark harness.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};

/// A line-based QMP connection.
pub struct Conn {
    r: BufReader<UnixStream>,
    w: UnixStream,
}

impl Conn {
    /// Connect, read the greeting, negotiate.
    pub fn open(p: &Path) -> Result<Conn, String> {
        let s = UnixStream::connect(p).map_err(|e| format!("{}: {e}", p.display()))?;
        s.set_read_timeout(Some(Duration::from_secs(60)))
            .map_err(|e| e.to_string())?;
        let w = s.try_clone().map_err(|e| e.to_string())?;
        let mut c = Conn {
            r: BufReader::new(s),
            w,
        };
        c.read()?;
        c.ok("qmp_capabilities", json!({}))?;
        Ok(c)
    }

    /// The next message.
    pub fn read(&mut self) -> Result<Value, String> {
        let mut l = String::new();
        match self.r.read_line(&mut l) {
            Ok(0) => Err("connection closed".into()),
            Ok(_) => serde_json::from_str(&l).map_err(|e| format!("{e}: {l}")),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Send a command without waiting for its reply.
    pub fn send(&mut self, cmd: &str, args: Value) -> Result<(), String> {
        self.send_line(&request_line(cmd, args))
    }

    /// Send a request encoded beforehand with [`request_line`] (a loop that sends the same
    /// request many times encodes it once).
    pub fn send_line(&mut self, line: &[u8]) -> Result<(), String> {
        self.w.write_all(line).map_err(|e| e.to_string())
    }

    /// The `return` of the oldest command not yet answered (events skipped; an error reply
    /// is an `Err` with the reply's text).
    pub fn reply(&mut self, cmd: &str) -> Result<Value, String> {
        loop {
            let v = self.read()?;
            if v.get("event").is_some() {
                continue;
            }
            return match v.get("return") {
                Some(r) => Ok(r.clone()),
                None => Err(format!("{cmd}: {v}")),
            };
        }
    }

    /// Send a command and answer its `return`.
    pub fn ok(&mut self, cmd: &str, args: Value) -> Result<Value, String> {
        self.send(cmd, args)?;
        self.reply(cmd)
    }
}

/// The line that sends `cmd` with `args`.
pub fn request_line(cmd: &str, args: Value) -> Vec<u8> {
    let mut line = json!({"execute": cmd, "arguments": args}).to_string();
    line.push('\n');
    line.into_bytes()
}
