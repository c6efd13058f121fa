//! Property tests: round trips, no panics, chunking invariance, and the fast
//! path agreeing with the exact path.

use proptest::prelude::*;
use qmpkit_wire::{to_qemu_string, JsonError, JsonStreamer};
use serde_json::{Map, Number, Value};

/// Characters QEMU accepts in a string (it refuses noncharacters).
fn qemu_char() -> impl Strategy<Value = char> {
    prop_oneof![
        4 => proptest::char::range(' ', '~'),
        1 => proptest::char::range('\0', '\u{1f}'),
        1 => any::<char>().prop_filter("noncharacter", |c| {
            let cp = *c as u32;
            !((0xFDD0..=0xFDEF).contains(&cp) || cp & 0xFFFE == 0xFFFE)
        }),
    ]
}

fn qemu_string() -> impl Strategy<Value = String> {
    proptest::collection::vec(qemu_char(), 0..12).prop_map(|v| v.into_iter().collect())
}

fn number() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        // -0.0 prints as "-0", which QEMU (and we) read back as the integer 0.
        any::<f64>()
            .prop_filter("negative zero", |f| *f != 0.0 || f.is_sign_positive())
            .prop_filter_map("finite", Number::from_f64)
            .prop_map(Value::Number),
        (-1000i32..1000, -30i32..30).prop_filter_map("finite", |(m, e)| {
            let m = if m == 0 { 1 } else { m };
            Number::from_f64(f64::from(m) * 10f64.powi(e)).map(Value::Number)
        }),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        number(),
        qemu_string().prop_map(Value::String),
    ];
    leaf.prop_recursive(6, 64, 8, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            proptest::collection::vec((qemu_string(), inner), 0..8)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

type Item = Result<String, String>;

fn shown(out: Vec<Result<Value, JsonError>>) -> Vec<Item> {
    out.into_iter()
        .map(|r| r.map(|v| to_qemu_string(&v)).map_err(|e| e.to_string()))
        .collect()
}

fn decode_chunks(mut s: JsonStreamer, input: &[u8], cuts: &[usize]) -> Vec<Item> {
    let mut out = Vec::new();
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
    cuts.sort_unstable();
    let mut last = 0;
    for c in cuts {
        s.feed(&input[last..c], &mut out);
        last = c;
    }
    s.feed(&input[last..], &mut out);
    s.finish(&mut out);
    shown(out)
}

/// Outputs tagged with the index of the chunk whose arrival produced them.
fn decode_timed(mut s: JsonStreamer, input: &[u8], cuts: &[usize]) -> Vec<(usize, Item)> {
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
    cuts.sort_unstable();
    cuts.push(input.len());
    let mut timed = Vec::new();
    let mut last = 0;
    for (i, c) in cuts.into_iter().enumerate() {
        let mut out = Vec::new();
        s.feed(&input[last..c], &mut out);
        last = c;
        timed.extend(shown(out).into_iter().map(|o| (i, o)));
    }
    let mut out = Vec::new();
    s.finish(&mut out);
    timed.extend(shown(out).into_iter().map(|o| (usize::MAX, o)));
    timed
}

/// Byte soup made of JSON's pieces, QEMU's extensions and troublemakers.
fn jsonish() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just(&b"{"[..]),
        Just(&b"}"[..]),
        Just(&b"["[..]),
        Just(&b"]"[..]),
        Just(&b","[..]),
        Just(&b":"[..]),
        Just(&b" "[..]),
        Just(&b"\n"[..]),
        Just(&b"\"a\""[..]),
        Just(&b"\"execute\""[..]),
        Just(&b"'b'"[..]),
        Just(&b"\""[..]),
        Just(&b"'"[..]),
        Just(&b"\\"[..]),
        Just(&b"\\u00e9"[..]),
        Just(&b"\\ud83d\\ude00"[..]),
        Just(&b"\\ud800"[..]),
        Just(&b"\\uFFFE"[..]),
        Just(&b"\\'"[..]),
        Just(&b"1"[..]),
        Just(&b"0"[..]),
        Just(&b"-"[..]),
        Just(&b"."[..]),
        Just(&b"e"[..]),
        Just(&b"1.5"[..]),
        Just(&b"99999999999999999999"[..]),
        Just(&b"true"[..]),
        Just(&b"nul"[..]),
        Just(&b"\x01"[..]),
        Just(&b"\xff"[..]),
        Just(&b"\xc3\xa9"[..]),
        Just(&b"\xef\xbf\xbe"[..]),
        Just(&b"\xc0\x80"[..]),
        Just(&b"%"[..]),
        Just(&b"@"[..]),
        Just(&b"E"[..]),
        Just(&b"0e1"[..]),
        Just(&b"-0E"[..]),
        Just(&b"\\u1g"[..]),
        Just(&b"\"id\": 1.7976931348623157e308"[..]),
        Just(&b"1e400"[..]),
        Just(&b"\t"[..]),
        Just(&b"{\"execute\": \"query-version\", \"id\": 1}"[..]),
    ];
    proptest::collection::vec(piece, 0..40).prop_map(|ps| ps.concat())
}

proptest! {
    /// Writing in QEMU's walking order directly gives the bytes of reordering, then writing.
    #[test]
    fn ordered_writer_matches_reorder_then_write(v in value()) {
        let mut direct = Vec::new();
        qmpkit_wire::write_qemu_ordered(&v, &mut direct);
        let mut via = Vec::new();
        qmpkit_wire::write_qemu(&qmpkit_wire::qemu_order(v), &mut via);
        prop_assert_eq!(direct, via);
    }
}

#[test]
fn ordered_writer_matches_reorder_then_write_deep() {
    // Past the writer's recursion depth, with objects of many members on the way down.
    let mut v = Value::from(1);
    for i in 0..100 {
        let mut m = Map::new();
        for j in 0..(i % 20) {
            m.insert(format!("m{j}"), Value::from(j));
        }
        m.insert("inner".into(), v);
        v = if i % 3 == 0 {
            Value::Array(vec![Value::Object(m)])
        } else {
            Value::Object(m)
        };
    }
    let mut direct = Vec::new();
    qmpkit_wire::write_qemu_ordered(&v, &mut direct);
    let mut via = Vec::new();
    qmpkit_wire::write_qemu(&qmpkit_wire::qemu_order(v), &mut via);
    assert_eq!(direct, via);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, .. ProptestConfig::default() })]

    #[test]
    fn values_round_trip(v in value()) {
        let text = to_qemu_string(&v);
        prop_assert!(text.is_ascii());
        let mut s = JsonStreamer::new();
        let mut out = Vec::new();
        s.feed(text.as_bytes(), &mut out);
        s.feed(b"\n", &mut out);
        prop_assert_eq!(out.len(), 1);
        let back = out.remove(0).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(to_qemu_string(&back), text);
    }

    #[test]
    fn values_round_trip_in_pieces(v in value(), cuts in proptest::collection::vec(any::<usize>(), 0..6)) {
        let text = format!("{}\n", to_qemu_string(&v));
        let whole = decode_chunks(JsonStreamer::new(), text.as_bytes(), &[]);
        prop_assert_eq!(&whole, &decode_chunks(JsonStreamer::new(), text.as_bytes(), &cuts));
        prop_assert_eq!(whole, vec![Ok(text.trim_end().to_owned())]);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300),
                                   cuts in proptest::collection::vec(any::<usize>(), 0..8)) {
        let _ = decode_chunks(JsonStreamer::new(), &bytes, &cuts);
    }

    #[test]
    fn chunking_does_not_matter(bytes in jsonish(), cuts in proptest::collection::vec(any::<usize>(), 0..8)) {
        let whole = decode_chunks(JsonStreamer::new(), &bytes, &[]);
        prop_assert_eq!(&whole, &decode_chunks(JsonStreamer::new(), &bytes, &cuts));
        prop_assert_eq!(&whole, &decode_chunks(JsonStreamer::exact_only(), &bytes, &cuts));
        // And every answer comes as soon as QEMU would give it.
        prop_assert_eq!(
            decode_timed(JsonStreamer::new(), &bytes, &cuts),
            decode_timed(JsonStreamer::exact_only(), &bytes, &cuts)
        );
    }

    #[test]
    fn fast_path_agrees_with_exact_path(vs in proptest::collection::vec(value(), 1..4),
                                        cuts in proptest::collection::vec(any::<usize>(), 0..4)) {
        // serde_json's own output (no QEMU extensions, unescaped non-ASCII) in objects.
        let mut input = Vec::new();
        for v in &vs {
            let wrapped = serde_json::json!({"execute": "x", "arguments": {"v": v}});
            input.extend_from_slice(serde_json::to_string(&wrapped).unwrap_or_default().as_bytes());
            input.extend_from_slice(b"\r\n");
        }
        let fast = decode_chunks(JsonStreamer::new(), &input, &cuts);
        prop_assert_eq!(&fast, &decode_chunks(JsonStreamer::exact_only(), &input, &[]));
        prop_assert_eq!(fast.len(), vs.len());
        prop_assert_eq!(
            decode_timed(JsonStreamer::new(), &input, &cuts),
            decode_timed(JsonStreamer::exact_only(), &input, &cuts)
        );
    }
}

/// What the scanner says of `input` must agree with the exact decoder: a complete object is
/// one message with exactly the members (key and value) the scanner found; an incomplete one is
/// nothing yet.
fn scanner_agrees(input: &[u8]) -> Result<(), TestCaseError> {
    use qmpkit_wire::{ObjectScanner, Scanned};
    let mut sc = ObjectScanner::new();
    match sc.scan(input) {
        Scanned::Object(len) => {
            let items = qmpkit_wire::json::decode_all(&input[..len]);
            prop_assert_eq!(items.len(), 1);
            let Ok(Value::Object(obj)) = &items[0] else {
                return Err(TestCaseError::fail(format!("not an object: {items:?}")));
            };
            prop_assert_eq!(obj.len(), sc.members.len());
            for ((k, v), (key, val)) in sc.members.iter().zip(obj) {
                prop_assert_eq!(&input[k.clone()], key.as_bytes());
                // Alone in an object under the same key: how a value is read can depend on
                // where it stands (the largest double in an `id` is kept as written).
                let inner = [
                    &b"{\""[..],
                    key.as_bytes(),
                    b"\": ",
                    &input[v.clone()],
                    b"}",
                ]
                .concat();
                let one = qmpkit_wire::json::decode_all(&inner);
                prop_assert_eq!(one.len(), 1);
                if let Ok(Value::Object(x)) = &one[0] {
                    prop_assert_eq!(x.get(key.as_str()), Some(val));
                } else {
                    return Err(TestCaseError::fail(format!("{one:?}")));
                }
            }
        }
        Scanned::Incomplete => {
            let mut out = Vec::new();
            JsonStreamer::exact_only().feed(input, &mut out);
            prop_assert!(out.is_empty(), "{:?}", out);
        }
        Scanned::Refused => {}
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn object_scanner_agrees_with_exact_path(bytes in jsonish()) {
        let mut input = b"{".to_vec();
        input.extend_from_slice(&bytes);
        scanner_agrees(&input)?;
    }

    #[test]
    fn object_scanner_reads_plain_requests(v in value(), cut in any::<usize>()) {
        let wrapped = serde_json::json!({"execute": "x", "arguments": {"v": v}, "id": v});
        let text = serde_json::to_vec(&wrapped).unwrap_or_default();
        scanner_agrees(&text)?;
        scanner_agrees(&text[..cut % (text.len() + 1)])?;
    }
}

#[test]
fn object_scanner_outline() {
    use qmpkit_wire::{ObjectScanner, Scanned};
    let mut sc = ObjectScanner::new();
    let msg = b"{\"execute\": \"q\", \"arguments\": {\"a\": [1, {\"b\": null}]}, \"id\": \"x\"}\n";
    assert_eq!(sc.scan(msg), Scanned::Object(msg.len() - 1));
    let parts: Vec<(&[u8], &[u8])> = sc
        .members
        .iter()
        .map(|(k, v)| (&msg[k.clone()], &msg[v.clone()]))
        .collect();
    assert_eq!(
        parts,
        [
            (&b"execute"[..], &b"\"q\""[..]),
            (b"arguments", b"{\"a\": [1, {\"b\": null}]}"),
            (b"id", b"\"x\""),
        ]
    );
    assert_eq!(sc.scan(b"{\"execute\": \"q\", \"a"), Scanned::Incomplete);
    // Left to the exact path: a duplicate key at any depth, `\u`, non-ASCII, QEMU's quotes.
    for refused in [
        &b"{\"a\": {\"b\": 1, \"b\": 2}}"[..],
        b"{\"a\": \"\\u0041\"}",
        b"{\"a\": \"\xc3\xa9\"}",
        b"{'a': 1}",
        b"{\"a\": 0e1}",
    ] {
        assert_eq!(
            sc.scan(refused),
            Scanned::Refused,
            "{:?}",
            String::from_utf8_lossy(refused)
        );
    }
}
