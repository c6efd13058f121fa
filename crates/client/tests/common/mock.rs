//! An in-process QMP server for tests: blocking threads on a unix socket, a handful of commands
//! that make the client's hard cases happen on demand (slow and out-of-order replies, events,
//! replies without or with foreign ids, fds received with SCM_RIGHTS, dropped connections).

use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub struct Mock {
    pub socket: PathBuf,
    _dir: tempfile::TempDir,
}

/// Listen on a fresh socket and serve every connection on its own thread.
pub fn start() -> Mock {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("mock.sock");
    let listener = UnixListener::bind(&socket).expect("bind");
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            match conn {
                Ok(s) => {
                    std::thread::spawn(move || serve(s));
                }
                Err(_) => break,
            }
        }
    });
    Mock { socket, _dir: dir }
}

/// One recvmsg: bytes and any descriptors that came with them.
fn recv(sock: RawFd, buf: &mut [u8], fds: &mut Vec<OwnedFd>) -> std::io::Result<usize> {
    let mut control = [0u64; 64];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr() as *mut libc::c_void,
        iov_len: buf.len(),
    };
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr() as *mut libc::c_void;
        msg.msg_controllen = std::mem::size_of_val(&control) as _;
        let n = libc::recvmsg(sock, &mut msg, libc::MSG_CMSG_CLOEXEC);
        if n < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(cmsg) as *const RawFd;
                let count = ((*cmsg).cmsg_len as usize - libc::CMSG_LEN(0) as usize)
                    / std::mem::size_of::<RawFd>();
                for i in 0..count {
                    fds.push(OwnedFd::from_raw_fd(std::ptr::read_unaligned(data.add(i))));
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
        Ok(n as usize)
    }
}

fn send(w: &Arc<Mutex<UnixStream>>, v: &Value) {
    let mut line = serde_json::to_vec(v).unwrap_or_default();
    line.extend_from_slice(b"\r\n");
    if let Ok(mut s) = w.lock() {
        let _ = s.write_all(&line);
    }
}

fn reply(w: &Arc<Mutex<UnixStream>>, id: &Option<Value>, body: (&str, Value)) {
    let mut m = Map::new();
    if body.0 == "error" {
        if let Some(id) = id {
            m.insert("id".into(), id.clone());
        }
        m.insert("error".into(), body.1);
    } else {
        m.insert("return".into(), body.1);
        if let Some(id) = id {
            m.insert("id".into(), id.clone());
        }
    }
    send(w, &Value::Object(m));
}

fn error(class: &str, desc: String) -> (&'static str, Value) {
    ("error", json!({"class": class, "desc": desc}))
}

fn serve(stream: UnixStream) {
    let fd = stream.as_raw_fd();
    let w = Arc::new(Mutex::new(match stream.try_clone() {
        Ok(s) => s,
        Err(_) => return,
    }));
    send(
        &w,
        &json!({"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 9},
            "package": "mock"}, "capabilities": ["oob"]}}),
    );
    let mut pending_fds: Vec<OwnedFd> = Vec::new();
    let mut named: BTreeMap<String, String> = BTreeMap::new();
    let mut fdsets = 0i64;
    let mut acc: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 65536];
    loop {
        let n = match recv(fd, &mut buf, &mut pending_fds) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        acc.extend_from_slice(&buf[..n]);
        while let Some(pos) = acc.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = acc.drain(..=pos).collect();
            let Ok(Value::Object(req)) = serde_json::from_slice::<Value>(&line) else {
                reply(&w, &None, error("GenericError", "JSON parse error".into()));
                continue;
            };
            let id = req.get("id").cloned();
            let cmd = req
                .get("execute")
                .or_else(|| req.get("exec-oob"))
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let args = req.get("arguments").cloned().unwrap_or_else(|| json!({}));
            match cmd.as_str() {
                "qmp_capabilities" => reply(&w, &id, ("return", json!({}))),
                "query-version" => reply(
                    &w,
                    &id,
                    (
                        "return",
                        json!({"qemu": {"micro": 0, "minor": 2, "major": 9}, "package": "mock"}),
                    ),
                ),
                "echo" => reply(&w, &id, ("return", args)),
                "sleep" => {
                    // Answers later, from another thread: later requests overtake it.
                    let ms = args.get("ms").and_then(Value::as_u64).unwrap_or(0);
                    let w = w.clone();
                    std::thread::spawn(move || {
                        std::thread::sleep(Duration::from_millis(ms));
                        reply(&w, &id, ("return", json!({"slept": ms})));
                    });
                }
                "emit" => {
                    let name = args.get("name").and_then(Value::as_str).unwrap_or("EV");
                    let count = args.get("count").and_then(Value::as_u64).unwrap_or(1);
                    for i in 0..count {
                        send(
                            &w,
                            &json!({"timestamp": {"seconds": 1, "microseconds": i},
                                "event": name, "data": {"i": i}}),
                        );
                    }
                    reply(&w, &id, ("return", json!({})));
                }
                "stray" => {
                    send(
                        &w,
                        &json!({"error": {"class": "GenericError",
                            "desc": "JSON parse error, expecting value"}}),
                    );
                    send(&w, &json!({"return": {}, "id": "not-ours"}));
                    send(&w, &json!([1, 2]));
                    reply(&w, &id, ("return", json!({"after": "stray"})));
                }
                "getfd" => {
                    let name = args.get("fdname").and_then(Value::as_str).unwrap_or("");
                    match pending_fds.pop() {
                        Some(f) => {
                            let mut file = std::fs::File::from(f);
                            let mut s = String::new();
                            let _ = file.read_to_string(&mut s);
                            named.insert(name.to_string(), s);
                            reply(&w, &id, ("return", json!({})));
                        }
                        None => reply(
                            &w,
                            &id,
                            error(
                                "GenericError",
                                "No file descriptor supplied via SCM_RIGHTS".into(),
                            ),
                        ),
                    }
                }
                "add-fd" => match pending_fds.pop() {
                    Some(f) => {
                        let set =
                            args.get("fdset-id")
                                .and_then(Value::as_i64)
                                .unwrap_or_else(|| {
                                    fdsets += 1;
                                    fdsets - 1
                                });
                        let raw = f.as_raw_fd();
                        std::mem::forget(f);
                        reply(&w, &id, ("return", json!({"fdset-id": set, "fd": raw})));
                    }
                    None => reply(
                        &w,
                        &id,
                        error(
                            "GenericError",
                            "No file descriptor supplied via SCM_RIGHTS".into(),
                        ),
                    ),
                },
                "mock-fds" => reply(&w, &id, ("return", json!(named))),
                "die" => {
                    let _ = stream.shutdown(std::net::Shutdown::Both);
                    return;
                }
                other => reply(
                    &w,
                    &id,
                    error(
                        "CommandNotFound",
                        format!("The command {other} has not been found"),
                    ),
                ),
            }
        }
    }
}
