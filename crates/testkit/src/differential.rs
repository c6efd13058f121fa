//! A differential corpus for QMP servers: thousands of generated requests around the
//! protocol's edges, sent as the same bytes to qemu-storage-daemon and to a qmpkit server,
//! whose replies must be the same bytes (`crates/server/tests/differential_qsd.rs` against an
//! in-process server, `crates/cli/tests/serve_differential_qsd.rs` against `qmpkit serve`).
//!
//! The areas, each generated systematically rather than listed by hand:
//!
//! * number spellings: every string of up to four characters over a number alphabet, random
//!   doubles in several spellings, integers around the 2^53 / 2^63 / 2^64 boundaries, long
//!   digit strings, tiny and huge exponents (what the lexer accepts, how QEMU echoes it);
//! * string escapes: `\u` with every kind of bad or partial hex, surrogates paired, unpaired
//!   and out of order, noncharacters, every single-character escape, every raw byte inside a
//!   string, in both quote styles;
//! * the request envelope: every ordered choice of up to three members out of ten
//!   (`execute`, `exec-oob`, `arguments`, `id`, … with good and bad values), before
//!   negotiation, after it, and with `oob` enabled;
//! * sizes and limits: nesting around QEMU's depth limit, unbalanced input, thousands of
//!   members and elements, long strings, names and command names;
//! * token soup: random sequences of tokens, stray bytes and broken tokens (lexer recovery).
//!
//! Each case is followed by the byte 0x01 and a request with a unique id: QEMU's lexer
//! rejects 0x01 in every state, which ends whatever the case left open (a string, an
//! escape, a number, nesting) with one error, so every case starts from a clean stream and
//! its replies are complete when the sync reply arrives. Nothing in these replies depends on
//! the machine: the server under test greets with the daemon's own version and package, and
//! none of the requests reaches a command whose answer depends on the host. Before
//! negotiation and without `oob`, QEMU answers in order, so all cases go out at once; with
//! `oob`, each waits for the previous sync reply, so an out-of-band reply cannot overtake one.
//!
//! The daemon reads large requests slowly (about 100 KB/s), so sizes stay within a few hundred
//! kilobytes in all; the limits that need more (64 MiB per token and per message, 2 Mi
//! tokens) are covered by the wire crate's own tests.
//!
//! The tests skip (through [`crate::skip`]) when qemu-storage-daemon 10.0.2 is not installed.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

/// Where a case is sent: which negotiation the session went through first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Capabilities negotiation not done.
    Greeted,
    /// `qmp_capabilities` without `oob`.
    Command,
    /// `qmp_capabilities` with `oob`.
    Oob,
}

pub const MODES: [Mode; 3] = [Mode::Greeted, Mode::Command, Mode::Oob];

pub struct Case {
    pub mode: Mode,
    /// Which generator made it.
    pub area: &'static str,
    pub bytes: Vec<u8>,
}

/// A small deterministic generator (xorshift64*), so a failure reproduces.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// A number below `n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
    /// True `percent` times in a hundred.
    pub fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
}

fn with_id(id: &[u8]) -> Vec<u8> {
    let mut v = b"{\"execute\": \"query-version\", \"id\": ".to_vec();
    v.extend_from_slice(id);
    v.push(b'}');
    v
}

fn cmd(bytes: Vec<u8>, area: &'static str) -> Case {
    Case {
        mode: Mode::Command,
        area,
        bytes,
    }
}

// ---------------------------------------------------------------------------
// Generators.

fn numbers(rng: &mut Rng, out: &mut Vec<Case>) {
    // Every spelling of up to three characters, and a third of those of four.
    const ALPHABET: &[u8] = b"019-+.eE";
    let mut spellings: Vec<Vec<u8>> = vec![Vec::new()];
    let mut all = Vec::new();
    for len in 1..=4 {
        let mut next = Vec::new();
        for s in &spellings {
            for &c in ALPHABET {
                let mut t = s.clone();
                t.push(c);
                next.push(t);
            }
        }
        for (i, s) in next.iter().enumerate() {
            if len < 4 || i % 3 == 0 {
                all.push(s.clone());
            }
        }
        spellings = next;
    }
    for (i, s) in all.iter().enumerate() {
        // Alone as the id, and inside an array (where the next byte is `]`, not `}`).
        let bytes = if i % 2 == 0 {
            with_id(s)
        } else {
            let mut v = b"[".to_vec();
            v.extend_from_slice(s);
            v.extend_from_slice(b", 1]");
            with_id(&v)
        };
        out.push(cmd(bytes, "number spelling"));
    }
    for s in [
        "0x10", "0X1", "+1", "1e+", "1e-", "-", "--1", "1.e5", ".5e1", "1_000", "Infinity", "NaN",
        "-inf", "nan", "1ee5", "1e5e5", "1.5.5", "00.5", "-00", "0.00e-0",
    ] {
        out.push(cmd(with_id(s.as_bytes()), "number spelling"));
    }
    // Random doubles in several spellings.
    let mut values = Vec::new();
    for _ in 0..300 {
        let f = f64::from_bits(rng.next());
        if f.is_finite() {
            values.push(format!("{f:?}"));
            values.push(format!("{f:e}"));
            values.push(format!("{f:.25e}"));
        }
    }
    // Decimal mantissas with exponents from tiny to huge (including beyond a double's range).
    for _ in 0..150 {
        let digits = 1 + rng.below(25);
        let mantissa: String = (0..digits)
            .map(|k| {
                let d = rng.below(10) as u8;
                char::from(b'0' + if k == 0 { d.max(1) } else { d })
            })
            .collect();
        let exp = rng.below(700) as i64 - 350;
        values.push(format!("{mantissa}e{exp}"));
        values.push(format!("-{mantissa}.{}E{exp:+}", rng.below(1000)));
    }
    for e in -20..=25 {
        values.push(format!("1e{e}"));
        values.push(format!("1.5e{e}"));
        values.push(format!("123456789.123456789e{e}"));
    }
    // Integers at the boundaries of the integer types, and long digit strings.
    for b in [1u128 << 53, 1 << 63, 1 << 64] {
        for d in [-2i128, -1, 0, 1, 2, 2048] {
            let v = b as i128 + d;
            values.push(v.to_string());
            values.push((-v).to_string());
        }
        values.push(format!("{b}.0"));
    }
    for k in [15, 17, 19, 20, 21, 25, 40, 100, 309, 310, 400] {
        values.push("9".repeat(k));
        values.push(format!("-{}", "9".repeat(k)));
        values.push(format!("1{}", "0".repeat(k)));
    }
    for s in [
        "4.9406564584124654e-324",
        "2.4703282292062328e-324",
        "2.4703282292062327e-324",
        "2.2250738585072014e-308",
        "2.2250738585072009e-308",
        "1.7976931348623155e308",
        "1.7976931348623157e308",
        "-1.7976931348623157e308",
        "1.7976931348623158e308",
        "1.7976931348623158079e308",
        "-1.797693134862315807e308",
        "1.7976931348623159e308",
        "1e309",
        "-1e309",
        "1e400",
        "-1e400",
        "1e-400",
        "-1e-400",
        "0.0",
        "-0.0",
        "-0",
        "0e0",
        "0.000001",
        "0.0001",
        "1e16",
        "1e17",
        "100000000000000000000.0",
    ] {
        values.push(s.into());
    }
    for (i, v) in values.iter().enumerate() {
        let bytes = if i % 5 == 0 {
            with_id(format!("[{v}, {{\"k\": {v}}}]").as_bytes())
        } else {
            with_id(v.as_bytes())
        };
        out.push(cmd(bytes, "number value"));
    }
}

fn escapes(out: &mut Vec<Case>) {
    let quoted = |body: &[u8], q: u8| {
        let mut v = vec![q];
        v.extend_from_slice(body);
        v.push(q);
        with_id(&v)
    };
    let mut bodies: Vec<Vec<u8>> = Vec::new();
    let hexes = [
        "0000", "0001", "001f", "0020", "007f", "0080", "00ff", "07ff", "0800", "d7ff", "d800",
        "dbff", "dc00", "dfff", "e000", "fdd0", "fdef", "fffe", "ffff", "FFFD", "D83D", "AbCd", "",
        "1", "12", "123", "g000", "0g00", "00g0", "000g", "12 3", "-123", "+123", " 123", "12\"x",
        "1\\n2",
    ];
    for h in hexes {
        bodies.push(format!("\\u{h}").into_bytes());
        bodies.push(format!("a\\u{h}b").into_bytes());
    }
    // Surrogates: pairs in and out of order, unpaired, followed by broken escapes.
    for a in ["d800", "dbff", "d83d", "dc00", "dfff", "0041", "ffff"] {
        for b in [
            "dc00", "dfff", "de00", "d800", "dbff", "0041", "zzzz", "12", "",
        ] {
            bodies.push(format!("\\u{a}\\u{b}").into_bytes());
            bodies.push(format!("\\u{a}x\\u{b}").into_bytes());
            bodies.push(format!("\\u{a}\\n{b}").into_bytes());
        }
    }
    // Noncharacters beyond the BMP, as pairs.
    for (hi, lo) in [
        ("d83f", "dffe"),
        ("d83f", "dfff"),
        ("dbff", "dfff"),
        ("d800", "dffe"),
    ] {
        bodies.push(format!("\\u{hi}\\u{lo}").into_bytes());
    }
    // Every single-character escape, and every raw byte in a string.
    for c in 0x20u8..0x7F {
        bodies.push(vec![b'\\', c]);
        bodies.push(vec![b'x', b'\\', c, b'y']);
    }
    for c in (0u8..0x20).chain(0x7F..=0xFF) {
        bodies.push(vec![b'x', c, b'y']);
        bodies.push(vec![b'x', b'\\', c, b'y']);
    }
    // Multi-byte sequences, good and bad.
    for s in [
        &b"\xc3\xa9"[..],
        b"\xc3",
        b"\xe2\x82\xac",
        b"\xe2\x82",
        b"\xf0\x9f\x98\x80",
        b"\xf0\x9f\x98",
        b"\xc0\x80",
        b"\xc0\xaf",
        b"\xe0\x80\x80",
        b"\xed\xa0\x80",
        b"\xef\xbf\xbe",
        b"\xef\xb7\x90",
        b"\xf4\x90\x80\x80",
        b"\xf8\x88\x80\x80\x80",
        b"\\u1\xc3\xa9",
        b"\\u12\xc3\xa9",
        b"\\u123\xc3\xa9",
    ] {
        bodies.push(s.to_vec());
    }
    for body in &bodies {
        out.push(cmd(quoted(body, b'"'), "string escape"));
        out.push(cmd(quoted(body, b'\''), "string escape"));
    }
    // The input ends inside an escape (the 0x01 that follows each case ends it).
    for t in [
        "\\",
        "\\u",
        "\\u1",
        "\\u12",
        "\\u123",
        "\\ud800",
        "\\ud800\\",
        "\\ud800\\u",
        "\\ud800\\udc",
    ] {
        out.push(cmd(
            format!("{{\"execute\": \"query-version\", \"id\": \"{t}").into_bytes(),
            "string escape",
        ));
        out.push(cmd(
            format!("{{\"execute\": \"query-version\", \"id\": \"{t}\"").into_bytes(),
            "string escape",
        ));
        out.push(cmd(format!("[\"{t}\"]").into_bytes(), "string escape"));
    }
    // Escapes in member names and command names.
    for n in [
        "exec\\u0075te",
        "execute\\u0000",
        "\\u0065xecute",
        "exec-\\u006f\\u006fb",
    ] {
        out.push(cmd(
            format!("{{\"{n}\": \"query-version\"}}").into_bytes(),
            "string escape",
        ));
    }
}

fn envelopes(out: &mut Vec<Case>) {
    const MEMBERS: &[&str] = &[
        "\"execute\": \"query-version\"",
        "\"exec-oob\": \"query-version\"",
        "\"exec-oob\": \"x-nope\"",
        "\"execute\": 1",
        "\"exec-oob\": [1]",
        "\"arguments\": {}",
        "\"arguments\": 1",
        "\"id\": 7",
        "\"x\": 1",
        "\"control\": {}",
    ];
    let n = MEMBERS.len();
    let mut combos: Vec<Vec<usize>> = Vec::new();
    for a in 0..n {
        combos.push(vec![a]);
        for b in (0..n).filter(|&b| b != a) {
            combos.push(vec![a, b]);
            for c in (0..n).filter(|&c| c != a && c != b) {
                combos.push(vec![a, b, c]);
            }
        }
    }
    for mode in MODES {
        for c in &combos {
            let body: Vec<&str> = c.iter().map(|&i| MEMBERS[i]).collect();
            out.push(Case {
                mode,
                area: "envelope",
                bytes: format!("{{{}}}", body.join(", ")).into_bytes(),
            });
        }
        for extra in [
            "{}",
            "[]",
            "1",
            "\"execute\"",
            "null",
            "{\"execute\": \"query-version\", \"execute\": \"query-version\"}",
            "{\"id\": 1.7976931348623157e308}",
            "{\"id\": [1.7976931348623157e308, 1e400], \"foo\": 1}",
            "{\"execute\": \"nope\", \"id\": {\"b\": -1.7976931348623157e308, \"a\": -1e999}}",
        ] {
            out.push(Case {
                mode,
                area: "envelope",
                bytes: extra.as_bytes().to_vec(),
            });
        }
    }
}

fn sizes(out: &mut Vec<Case>) {
    let nest = |open: &[u8], inner: &[u8], close: &[u8], d: usize| {
        let mut v = open.repeat(d);
        v.extend_from_slice(inner);
        v.extend_from_slice(&close.repeat(d));
        v
    };
    for d in [1, 2, 64, 1022, 1023, 1024, 1025, 1026, 1100] {
        out.push(cmd(with_id(&nest(b"[", b"", b"]", d)), "nesting"));
        out.push(cmd(nest(b"[", b"", b"]", d), "nesting"));
        out.push(cmd(with_id(&nest(b"{\"a\": ", b"1", b"}", d)), "nesting"));
        out.push(cmd(nest(b"{\"a\": ", b"1", b"}", d), "nesting"));
        // Left open, or closed too often.
        out.push(cmd(b"[".repeat(d), "nesting"));
        out.push(cmd(b"]".repeat(d.min(40)), "nesting"));
        let mut v = b"{\"execute\": \"query-version\", \"id\": ".to_vec();
        v.extend_from_slice(&b"[".repeat(d));
        out.push(cmd(v, "nesting"));
    }
    // Mixed nesting: objects in arrays, over the limit by one at the deepest point.
    let mut v = Vec::new();
    for i in 0..1025 {
        v.extend_from_slice(if i % 2 == 0 { b"[" } else { b"{\"k\": " });
    }
    out.push(cmd(with_id(&v), "nesting"));
    // Many members and elements.
    for n in [1000usize, 5_000] {
        let members: Vec<String> = (0..n).map(|i| format!("\"k{i}\": {i}")).collect();
        let members = members.join(", ");
        out.push(cmd(
            format!("{{\"execute\": \"query-version\", \"arguments\": {{{members}}}}}")
                .into_bytes(),
            "members",
        ));
        if n <= 1000 {
            out.push(cmd(with_id(format!("{{{members}}}").as_bytes()), "members"));
            let elems: Vec<String> = (0..n).map(|i| i.to_string()).collect();
            out.push(cmd(
                with_id(format!("[{}]", elems.join(", ")).as_bytes()),
                "members",
            ));
            // Many members at the top: the first unexpected one is named.
            out.push(cmd(
                format!("{{\"execute\": \"query-version\", {members}}}").into_bytes(),
                "members",
            ));
        }
    }
    // Duplicate member names far apart.
    let mut v = b"{\"execute\": \"query-version\", \"id\": {".to_vec();
    for i in 0..500 {
        v.extend_from_slice(format!("\"k{i}\": {i}, ").as_bytes());
    }
    v.extend_from_slice(b"\"k7\": 0}}");
    out.push(cmd(v, "members"));
    // Long strings, names and command names.
    for n in [255usize, 4096, 12_000] {
        let s = "x".repeat(n);
        out.push(cmd(with_id(format!("\"{s}\"").as_bytes()), "long"));
        out.push(cmd(
            format!("{{\"execute\": \"q{s}\"}}").into_bytes(),
            "long",
        ));
        out.push(cmd(
            format!("{{\"execute\": \"query-version\", \"arguments\": {{\"{s}\": 1}}}}")
                .into_bytes(),
            "long",
        ));
        out.push(cmd(format!("{{\"{s}\": 1}}").into_bytes(), "long"));
        out.push(cmd(
            format!(
                "{{\"execute\": \"query-version\", \"id\": {}}}",
                "1".repeat(n)
            )
            .into_bytes(),
            "long",
        ));
        out.push(cmd(format!("[{}]", "a".repeat(n)).into_bytes(), "long"));
    }
}

fn soup(rng: &mut Rng, out: &mut Vec<Case>) {
    const TOKENS: &[&[u8]] = &[
        b"{",
        b"}",
        b"[",
        b"]",
        b":",
        b",",
        b" ",
        b"\t",
        b"\n",
        b"\r",
        b"\"execute\"",
        b"\"query-version\"",
        b"\"id\"",
        b"\"arguments\"",
        b"\"exec-oob\"",
        b"'execute'",
        b"'x'",
        b"\"a\\\"b\"",
        b"\"\\u00e9\"",
        b"\"\\ud800\"",
        b"\"\\x\"",
        b"1",
        b"-1",
        b"1.5",
        b"1e5",
        b"0",
        b"00",
        b"1.",
        b"-",
        b".",
        b"e",
        b"true",
        b"false",
        b"null",
        b"nul",
        b"tru",
        b"True",
        b"NULL",
        b"@",
        b"#",
        b"\x00",
        b"\x01",
        b"\x7f",
        b"\xfe",
        b"\xff",
        b"\xc3\xa9",
        b"\xc3",
        b"\"",
        b"'",
        b"\\",
        b"\"unterminated",
    ];
    for _ in 0..1200 {
        let mode = *rng.pick(&MODES);
        let mut v = Vec::new();
        // Often start like a request, so that the rest lands inside one.
        if rng.below(2) == 0 {
            v.extend_from_slice(b"{\"execute\": \"query-version\", \"id\": ");
        }
        for _ in 0..1 + rng.below(12) {
            let t: &[u8] = rng.pick::<&[u8]>(TOKENS);
            v.extend_from_slice(t);
        }
        out.push(Case {
            mode,
            area: "token soup",
            bytes: v,
        });
    }
}

/// The whole corpus, the same on every run.
pub fn corpus() -> Vec<Case> {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut out = Vec::new();
    numbers(&mut rng, &mut out);
    escapes(&mut out);
    envelopes(&mut out);
    sizes(&mut out);
    soup(&mut rng, &mut out);
    out
}

// ---------------------------------------------------------------------------
// Running a corpus against one server.

/// The greeting line, then for each case the lines it drew (without their CRLF).
pub type Replies = (Vec<u8>, Vec<Vec<Vec<u8>>>);

pub struct Conn {
    w: UnixStream,
    r: BufReader<UnixStream>,
}

/// A connection in `mode`, and the greeting line.
pub fn connect(path: &Path, mode: Mode) -> (Conn, Vec<u8>) {
    let s = crate::cmd::connect_unix(path);
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut c = Conn {
        w: s.try_clone().expect("clone"),
        r: BufReader::new(s),
    };
    let mut greeting = Vec::new();
    c.r.read_until(b'\n', &mut greeting).expect("greeting");
    let negotiate: &[u8] = match mode {
        Mode::Greeted => b"",
        Mode::Command => b"{\"execute\": \"qmp_capabilities\"}\n",
        Mode::Oob => {
            b"{\"execute\": \"qmp_capabilities\", \"arguments\": {\"enable\": [\"oob\"]}}\n"
        }
    };
    if !negotiate.is_empty() {
        c.w.write_all(negotiate).expect("negotiate");
        let mut l = Vec::new();
        c.r.read_until(b'\n', &mut l).expect("negotiated");
        assert_eq!(l, b"{\"return\": {}}\r\n", "{}", path.display());
    }
    (c, greeting)
}

/// The sync request is short (the daemon reads its monitor a byte at a time) and names no
/// command, so it fails the same way in every mode; its id is unlike any in the corpus.
const SYNC_TAG: &str = "#";

fn message(i: usize, case: &Case) -> Vec<u8> {
    let mut msg = case.bytes.clone();
    msg.extend_from_slice(
        format!("\x01\n{{\"execute\":\"z\",\"id\":\"{SYNC_TAG}{i}\"}}\n").as_bytes(),
    );
    msg
}

/// Sends every case of `corpus` to the QMP server at `path` (a connection per mode).
pub fn run(path: &Path, corpus: &[Case]) -> Replies {
    let mut replies = vec![Vec::new(); corpus.len()];
    let mut greeting = Vec::new();
    for mode in MODES {
        let (mut c, g) = connect(path, mode);
        greeting = g;
        let cases: Vec<(usize, &Case)> = corpus
            .iter()
            .enumerate()
            .filter(|(_, c)| c.mode == mode)
            .collect();
        std::thread::scope(|s| {
            // In-band requests are answered in order: send them all at once. Out-of-band
            // replies may overtake, so with oob each case waits for the previous sync.
            let (tx, rx) = std::sync::mpsc::channel::<()>();
            let lockstep = mode == Mode::Oob;
            let mut w = c.w.try_clone().expect("clone");
            // If the reader gives up, the writer must not block for ever.
            w.set_write_timeout(Some(Duration::from_secs(30)))
                .expect("write timeout");
            let cases = &cases;
            s.spawn(move || {
                for &(i, case) in cases {
                    if w.write_all(&message(i, case)).is_err() {
                        return;
                    }
                    if lockstep && rx.recv().is_err() {
                        return;
                    }
                }
            });
            for &(i, _) in cases {
                let tag = format!("\"{SYNC_TAG}{i}\"");
                loop {
                    let mut l = Vec::new();
                    match c.r.read_until(b'\n', &mut l) {
                        Ok(n) if n > 0 => {}
                        other => {
                            panic!(
                                "{}: no sync reply after case {i}: {other:?}",
                                path.display()
                            )
                        }
                    }
                    if String::from_utf8_lossy(&l).contains(&tag) {
                        break;
                    }
                    if l.ends_with(b"\r\n") {
                        l.truncate(l.len() - 2);
                    }
                    replies[i].push(l);
                }
                let _ = tx.send(());
            }
        });
    }
    (greeting, replies)
}

fn show(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(bytes);
    let s: String = s.escape_debug().collect();
    if s.len() > 300 {
        let cut = (0..=300)
            .rev()
            .find(|&k| s.is_char_boundary(k))
            .unwrap_or(0);
        format!("{}… ({} bytes)", &s[..cut], bytes.len())
    } else {
        s
    }
}

/// The cases whose replies differ (and the greeting, if it does), described for a failure
/// message.
pub fn differences(corpus: &[Case], theirs: &Replies, mine: &Replies) -> Vec<String> {
    let mut diffs = Vec::new();
    if theirs.0 != mine.0 {
        diffs.push(format!(
            "greeting\n   qsd    {}\n   ours   {}",
            show(&theirs.0),
            show(&mine.0)
        ));
    }
    for (i, case) in corpus.iter().enumerate() {
        let (a, b) = (&theirs.1[i], &mine.1[i]);
        if a != b {
            let lines = |v: &Vec<Vec<u8>>| {
                v.iter()
                    .map(|l| show(l))
                    .collect::<Vec<_>>()
                    .join("\n          ")
            };
            diffs.push(format!(
                "[{} / {:?}] {}\n   qsd    {}\n   ours   {}",
                case.area,
                case.mode,
                show(&case.bytes),
                lines(a),
                lines(b)
            ));
        }
    }
    diffs
}

/// Runs the corpus against the daemon at `qsd` and the server at `ours` at the same time,
/// and fails with the differences, if any.
pub fn assert_same(qsd: &Path, ours: &Path) {
    let corpus = corpus();
    assert!(corpus.len() > 5000, "{} cases", corpus.len());
    let started = Instant::now();
    let (theirs, mine) = std::thread::scope(|s| {
        let theirs = s.spawn(|| run(qsd, &corpus));
        let mine = run(ours, &corpus);
        (theirs.join().expect("daemon run"), mine)
    });
    eprintln!(
        "{} cases in {:.1} s",
        corpus.len(),
        started.elapsed().as_secs_f64()
    );
    let diffs = differences(&corpus, &theirs, &mine);
    for d in diffs.iter().take(40) {
        eprintln!("{d}");
    }
    assert!(
        diffs.is_empty(),
        "{} of {} cases differ",
        diffs.len(),
        corpus.len()
    );
}
