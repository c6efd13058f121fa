//! Decoder-level replay of QEMU's transcripts: for every chunk sent, the
//! decoder and the envelope checks must produce the error lines QEMU answered
//! (byte for byte), the right number of replies, and echo the right `id`;
//! every line QEMU sent must re-encode to exactly the same bytes.

use qmpkit_testkit::transcript::unrepr;
use qmpkit_wire::{encode_line, json::decode_all, response_error, JsonStreamer, QmpError, Request};
use serde_json::Value;
/// A `>>>` line's bytes; abbreviated ones (`[N bytes] b'head' ... b'tail'`) are
/// rebuilt by repeating the head's last and the tail's first byte so that
/// brackets balance and the length is N.
fn sent_bytes(line: &str) -> Vec<u8> {
    if let Some(rest) = line.strip_prefix('[') {
        let (n, rest) = rest.split_once(" bytes] ").expect("length");
        let n: usize = n.parse().expect("number");
        let (head, rest) = unrepr(rest).expect("head");
        let rest = rest
            .trim_start()
            .strip_prefix("...")
            .expect("ellipsis")
            .trim_start();
        let (tail, _) = unrepr(rest).expect("tail");
        let open = head[head.len() - 1];
        let close = tail[0];
        let opens = head.iter().filter(|&&b| b == open).count() as i64;
        let closes = tail.iter().filter(|&&b| b == close).count() as i64;
        let extra = (n - head.len() - tail.len()) as i64;
        // a + b = extra, opens + a = closes + b
        let a = (extra + closes - opens) / 2;
        let b = extra - a;
        let mut v = head.clone();
        v.resize(v.len() + a as usize, open);
        v.resize(v.len() + b as usize, close);
        v.extend_from_slice(&tail);
        assert_eq!(v.len(), n);
        return v;
    }
    unrepr(line).expect("bytes repr").0
}

#[derive(Debug)]
enum Reply {
    /// A full line QEMU sent.
    Line(Vec<u8>),
    /// A long reply shown truncated.
    Long,
}

#[derive(Debug)]
struct Exchange {
    title: String,
    session: usize,
    sent: Vec<u8>,
    replies: Vec<Reply>,
}

fn parse_transcript(text: &str) -> (Vec<Exchange>, Vec<Vec<u8>>) {
    let mut exchanges = Vec::new();
    let mut all_lines = Vec::new();
    let mut title = String::new();
    let mut session = 1;
    for line in text.lines() {
        if let Some(t) = line.strip_prefix("### ") {
            title = t.to_owned();
        } else if line.starts_with("# ---- session") {
            session += 1;
        } else if let Some(s) = line.strip_prefix(">>> ") {
            exchanges.push(Exchange {
                title: title.clone(),
                session,
                sent: sent_bytes(s),
                replies: Vec::new(),
            });
        } else if let Some(r) = line.strip_prefix("<<< ") {
            let reply = if r.starts_with('[') {
                Reply::Long
            } else if r.starts_with("b'<") || r.starts_with('(') {
                continue;
            } else {
                let (bytes, rest) = unrepr(r).expect("reply repr");
                all_lines.push(bytes.clone());
                let times = rest
                    .trim()
                    .strip_prefix("[x")
                    .and_then(|r| r.split_once(' '))
                    .and_then(|(n, _)| n.parse::<usize>().ok())
                    .unwrap_or(1);
                for _ in 1..times {
                    if let Some(e) = exchanges.last_mut() {
                        e.replies.push(Reply::Line(bytes.clone()));
                    }
                }
                Reply::Line(bytes)
            };
            if let Some(e) = exchanges.last_mut() {
                e.replies.push(reply);
            }
        }
    }
    (exchanges, all_lines)
}

fn transcripts() -> Vec<(String, String)> {
    let dir = qmpkit_testkit::data::qemu_ref("transcripts");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("transcripts") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "txt") {
            let text = std::fs::read_to_string(&path).expect("read transcript");
            let name = path
                .file_name()
                .expect("name")
                .to_string_lossy()
                .into_owned();
            out.push((name, text));
        }
    }
    out.sort();
    out
}

fn is_event(line: &[u8]) -> bool {
    line.starts_with(b"{\"timestamp\"")
}

#[test]
fn decoder_matches_transcripts() {
    let files = transcripts();
    assert_eq!(files.len(), 4, "four transcripts");
    let mut checked_errors = 0;
    for (name, text) in &files {
        let (exchanges, _) = parse_transcript(text);
        assert!(exchanges.len() > 80, "{name}: exchanges parsed");
        let mut decoder = JsonStreamer::new();
        let mut session = 0;
        let mut allow_oob = false;
        for ex in &exchanges {
            if ex.session != session {
                session = ex.session;
                decoder = JsonStreamer::new();
                allow_oob = false;
            }
            let mut out = Vec::new();
            decoder.feed(&ex.sent, &mut out);
            let replies: Vec<&Reply> = ex
                .replies
                .iter()
                .filter(|r| !matches!(r, Reply::Line(l) if is_event(l)))
                .collect();
            assert_eq!(
                out.len(),
                replies.len(),
                "{name}: {}: number of replies for {:?}",
                ex.title,
                String::from_utf8_lossy(&ex.sent)
            );
            for (item, reply) in out.into_iter().zip(replies) {
                let request = match item {
                    Err(e) => Err(response_error(&QmpError::from(e), None)),
                    Ok(v) => Request::parse(v, allow_oob).map_err(|e| e.to_response()),
                };
                match (request, reply) {
                    (Err(resp), Reply::Line(line)) => {
                        assert_eq!(
                            String::from_utf8_lossy(&encode_line(&resp)),
                            String::from_utf8_lossy(line),
                            "{name}: {}",
                            ex.title
                        );
                        checked_errors += 1;
                    }
                    (Err(resp), Reply::Long) => {
                        panic!("{name}: {}: {resp} vs long reply", ex.title)
                    }
                    (Ok(_), Reply::Long) => {}
                    (Ok(req), Reply::Line(line)) => {
                        // A command reply: it echoes the id exactly.
                        let v = decode_all(line).remove(0).expect("QEMU's reply decodes");
                        let shown = |id: Option<&Value>| id.map(qmpkit_wire::to_qemu_string);
                        assert_eq!(
                            shown(v.get("id")),
                            shown(req.id.as_ref()),
                            "{name}: {}: id",
                            ex.title
                        );
                        if req.command == "qmp_capabilities"
                            && line.starts_with(b"{\"return\"")
                            && req
                                .arguments
                                .as_ref()
                                .and_then(|a| a.get("enable"))
                                .is_some_and(|e| e.to_string().contains("oob"))
                        {
                            allow_oob = true;
                        }
                    }
                }
            }
        }
    }
    assert!(
        checked_errors > 150,
        "error lines compared: {checked_errors}"
    );
}

#[test]
fn every_line_reencodes_exactly() {
    let files = transcripts();
    let mut n = 0;
    for (name, text) in &files {
        let (_, lines) = parse_transcript(text);
        for line in lines {
            if line.starts_with(b"<") {
                continue;
            }
            let values = decode_all(&line);
            assert_eq!(
                values.len(),
                1,
                "{name}: {}",
                String::from_utf8_lossy(&line)
            );
            let v = values
                .into_iter()
                .next()
                .and_then(Result::ok)
                .expect("decodes");
            assert_eq!(
                String::from_utf8_lossy(&encode_line(&v)),
                String::from_utf8_lossy(&line),
                "{name}"
            );
            n += 1;
        }
    }
    assert!(n > 400, "{n} lines");
}

#[test]
fn introspection_replies_reencode_exactly() {
    let dir = qmpkit_testkit::data::qemu_ref("introspection");
    let entries = std::fs::read_dir(&dir).expect("introspection answers");
    let mut n = 0;
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let bytes = std::fs::read(&path).expect("readable");
        let body = bytes.strip_suffix(b"\r\n").unwrap_or(&bytes);
        let body = body.strip_suffix(b"\n").unwrap_or(body);
        // Whole, and in small chunks.
        let v = decode_all(body)
            .into_iter()
            .next()
            .and_then(Result::ok)
            .expect("decodes");
        assert_eq!(
            qmpkit_wire::to_qemu_string(&v).as_bytes(),
            body,
            "{}",
            path.display()
        );
        let mut s = JsonStreamer::new();
        let mut out = Vec::new();
        for chunk in bytes.chunks(4093) {
            s.feed(chunk, &mut out);
        }
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].as_ref().ok(), Some(&v));
        n += 1;
    }
    assert!(n >= 6, "{n} files");
}

#[test]
fn qdict_order_explains_qemu_output() {
    // query-version's result is built major, minor, micro; QEMU prints micro, minor, major.
    let built: Value =
        serde_json::json!({"qemu": {"major": 10, "minor": 0, "micro": 2}, "package": "p"});
    assert_eq!(
        qmpkit_wire::to_qemu_string(&qmpkit_wire::qemu_order(built)),
        r#"{"qemu": {"micro": 2, "minor": 0, "major": 10}, "package": "p"}"#
    );
}
