//! One whole server session on arbitrary bytes: the machine's schema, no
//! handlers (every command answers its synthesised return value, so every
//! command's arguments go through the validator), the stream served in
//! process over an in-memory duplex.
//!
//! The first byte is not sent: it chooses how the session starts and how
//! the rest arrives.
//!
//! * bits 0-1: `0` sends the bytes as they are (the client has to
//!   negotiate itself), `1` negotiates first, `2` negotiates with `oob`,
//!   `3` negotiates twice with `oob` (the second one is refused);
//! * bits 2-4: the size of the writes the bytes arrive in (1 byte to all
//!   at once, at most 64 writes), so that requests are cut at any place;
//! * bits 5-7: the duplex buffer's size, small ones making the server
//!   wait for the client to read.
//!
//! Invariants: the session never panics and ends (in bounded time) once
//! the client has sent everything and reads what comes; everything it
//! writes is lines ending in CRLF, each a JSON object that is a greeting,
//! a reply (`return` or `error`) or an event.

#![no_main]

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use qmpkit_server::{Registry, Server, ServerOptions};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long one input may take, all of it (a live session answers in
/// microseconds; a hang is anything near this).
const BOUND: Duration = Duration::from_secs(20);

struct Fixture {
    rt: tokio::runtime::Runtime,
    server: Server,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let schema = match qmpkit_machine::embedded::load_schema() {
            Ok(s) => s,
            Err(e) => panic!("embedded schema does not load: {e}"),
        };
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => panic!("runtime: {e}"),
        };
        let server = Server::new(Arc::new(schema), Registry::new(), ServerOptions::default());
        Fixture { rt, server }
    })
}

const NEGOTIATE: &[u8] = b"{\"execute\": \"qmp_capabilities\"}\n";
const NEGOTIATE_OOB: &[u8] =
    b"{\"execute\": \"qmp_capabilities\", \"arguments\": {\"enable\": [\"oob\"]}}\n";

const CHUNKS: [usize; 8] = [1, 2, 3, 7, 64, 509, 4096, usize::MAX];
const BUFFERS: [usize; 8] = [16, 64, 100, 1024, 4096, 65536, 1 << 20, 1 << 20];

/// Strict JSON (not QEMU's dialect), as deep as the server's own decoder
/// lets requests (and so their echoed ids) nest.
fn parse_json(text: &[u8]) -> Result<Value, serde_json::Error> {
    use serde::Deserialize;
    let mut de = serde_json::Deserializer::from_slice(text);
    de.disable_recursion_limit();
    let v = Value::deserialize(&mut de)?;
    de.end()?;
    Ok(v)
}

fn check_output(out: &[u8]) {
    assert!(
        out.is_empty() || out.ends_with(b"\r\n"),
        "output does not end with CRLF: {:?}",
        String::from_utf8_lossy(&out[out.len().saturating_sub(200)..])
    );
    let mut lines = 0usize;
    for line in out.split_inclusive(|&b| b == b'\n') {
        lines += 1;
        let Some(body) = line.strip_suffix(b"\r\n") else {
            panic!(
                "line {lines} does not end with CRLF: {:?}",
                String::from_utf8_lossy(line)
            );
        };
        let v = match parse_json(body) {
            Ok(v) => v,
            Err(e) => panic!(
                "line {lines} is not JSON ({e}): {:?}",
                String::from_utf8_lossy(body)
            ),
        };
        let Value::Object(m) = &v else {
            panic!("line {lines} is not an object: {v}");
        };
        let kinds = ["QMP", "return", "error", "event"]
            .iter()
            .filter(|k| m.contains_key(**k))
            .count();
        assert_eq!(kinds, 1, "line {lines} is no QMP message: {v}");
        if lines == 1 {
            assert!(m.contains_key("QMP"), "the first line is no greeting: {v}");
        } else {
            assert!(!m.contains_key("QMP"), "a second greeting: {v}");
        }
        if let Some(e) = m.get("error") {
            assert!(
                e.get("class").and_then(Value::as_str).is_some()
                    && e.get("desc").and_then(Value::as_str).is_some(),
                "line {lines}: error without class and desc: {v}"
            );
        }
    }
    assert!(lines >= 1, "no greeting");
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut input = Vec::with_capacity(rest.len() + 2 * NEGOTIATE_OOB.len());
    match mode & 3 {
        0 => {}
        1 => input.extend_from_slice(NEGOTIATE),
        2 => input.extend_from_slice(NEGOTIATE_OOB),
        _ => {
            input.extend_from_slice(NEGOTIATE_OOB);
            input.extend_from_slice(NEGOTIATE_OOB);
        }
    }
    input.extend_from_slice(rest);
    let chunk = CHUNKS[usize::from((mode >> 2) & 7)];
    let buffer = BUFFERS[usize::from(mode >> 5)];

    let f = fixture();
    let out = f.rt.block_on(async {
        let (client, server_side) = tokio::io::duplex(buffer);
        let server = f.server.clone();
        let session = tokio::spawn(async move { server.serve_stream(server_side).await });
        let (mut rd, mut wr) = tokio::io::split(client);
        let writer = async move {
            // At most 64 writes per input, whatever the write size.
            let chunk = chunk.min(input.len()).max(input.len() / 64).max(1);
            for piece in input.chunks(chunk) {
                if wr.write_all(piece).await.is_err() {
                    break;
                }
            }
            let _ = wr.shutdown().await;
        };
        let reader = async move {
            let mut out = Vec::new();
            let _ = rd.read_to_end(&mut out).await;
            out
        };
        let run = async {
            let ((), out) = tokio::join!(writer, reader);
            let served = session.await;
            (out, served)
        };
        match tokio::time::timeout(BOUND, run).await {
            Ok((out, served)) => {
                match served {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => panic!("serve_stream failed: {e}"),
                    Err(e) => panic!("the session task panicked: {e}"),
                }
                out
            }
            Err(_) => panic!("the session did not end within {BOUND:?}"),
        }
    });
    check_output(&out);
});
