//! QEMU's JSON dialect, case by case: what each input decodes to, in QEMU's
//! output form, or which errors (QEMU's `desc`) it produces.

use qmpkit_wire::{encode_line, to_qemu_string, JsonStreamer, Request};

fn run(s: &mut JsonStreamer, input: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    s.feed(input, &mut out);
    out.into_iter()
        .map(|r| match r {
            Ok(v) => to_qemu_string(&v),
            Err(e) => format!("ERR {e}"),
        })
        .collect()
}

fn decode(input: &[u8]) -> Vec<String> {
    let fast = run(&mut JsonStreamer::new(), input);
    assert_eq!(
        fast,
        run(&mut JsonStreamer::exact_only(), input),
        "fast and exact paths differ"
    );
    fast
}

fn finish(s: &mut JsonStreamer) -> Vec<String> {
    let mut out = Vec::new();
    s.finish(&mut out);
    out.into_iter()
        .map(|r| match r {
            Ok(v) => to_qemu_string(&v),
            Err(e) => format!("ERR {e}"),
        })
        .collect()
}

const EXPECTING: &str = "ERR JSON parse error, expecting value";

#[test]
fn values() {
    let cases: &[(&[u8], &str)] = &[
        (b"{}", "{}"),
        (b"[]", "[]"),
        (b"{'a': 'it\\'s', \"b\": \"say \\\"hi\\\"\"}", r#"{"a": "it's", "b": "say \"hi\""}"#),
        (b"['\"', \"'\", '\\\"']", r#"["\"", "'", "\""]"#),
        (b"[\"\\/\\b\\f\\n\\r\\t\\\\\"]", r#"["/\b\f\n\r\t\\"]"#),
        (b"[\"\\u0000\", \"\xc0\x80\"]", r#"["\u0000", "\u0000"]"#),
        (b"[\"\xc3\xa9\xf0\x9f\x98\x80\x7f\"]", r#"["\u00E9\uD83D\uDE00\u007F"]"#),
        (b"[\"\\ud83d\\ude00\"]", r#"["\uD83D\uDE00"]"#),
        (b"[1e3, 1E+3, 1.5, 2.50, 0.1, -0, -0.0, 1e-7, 1e400]", "[1000, 1000, 1.5, 2.5, 0.10000000000000001, 0, -0, 9.9999999999999995e-08, inf]"),
        // Beyond a double's range: QEMU keeps an infinity and prints it with "%.17g".
        (b"[-1e400, 1E+309, -2e308, 123456789e301, 1e-400, -1e-400, 1.7976931348623155e308]",
         "[-inf, inf, -inf, inf, 0, -0, 1.7976931348623155e+308]"),
        (b"[9223372036854775807, 9223372036854775808, 18446744073709551615, 18446744073709551616]",
         "[9223372036854775807, 9223372036854775808, 18446744073709551615, 1.8446744073709552e+19]"),
        (b"[-9223372036854775808, -9223372036854775809]", "[-9223372036854775808, -9.2233720368547758e+18]"),
        (b"[0.0e1, 0.5E-2, 10e1, -0.0E+0]", "[0, 0.0050000000000000001, 100, -0]"),
        (b"[true, false, null]", "[true, false, null]"),
        (b"{\"a\": {\"b\": [1, {\"c\": []}]}}", r#"{"a": {"b": [1, {"c": []}]}}"#),
    ];
    for (input, expected) in cases {
        let mut line = input.to_vec();
        line.push(b'\n');
        assert_eq!(
            decode(&line),
            [*expected],
            "{}",
            String::from_utf8_lossy(input)
        );
    }
}

#[test]
fn errors() {
    let e = |s: &str| format!("ERR JSON parse error, {s}");
    let cases: Vec<(&[u8], Vec<String>)> = vec![
        (b"{\"a\" 1}", vec![e("missing : in object pair")]),
        (
            b"{\"a\": 1 \"b\": 2}",
            vec![e("expected separator in dict")],
        ),
        (b"[1 2]", vec![e("expected separator in list")]),
        (b"[1,]", vec![EXPECTING.into()]),
        (b"{1: 2}", vec![e("key is not a string in object")]),
        (b"[tru]", vec![e("invalid keyword 'tru'")]),
        (b"{\"a\": 1, \"a\": 2}", vec![e("duplicate key")]),
        (b"[\"\\x\"]", vec![e("invalid escape sequence in string")]),
        (
            b"[\"\\u12\"]",
            vec![e("\\u12\" is not a valid Unicode character")],
        ),
        (
            b"[\"\\u0g00x\"]",
            vec![e("\\u0g00 is not a valid Unicode character")],
        ),
        (
            b"[\"\\udc00\"]",
            vec![e("\\udc00 is not a valid Unicode character")],
        ),
        (
            b"[\"\\ud800\\u0041\"]",
            vec![e("\\ud800 is not a valid Unicode character")],
        ),
        (
            b"[\"\\uFFFE\"]",
            vec![e("\\uFFFE is not a valid Unicode character")],
        ),
        (
            b"[\"\\ud83f\\udffe\"]",
            vec![e("\\ud83f\\udffe is not a valid Unicode character")],
        ),
        (
            b"[\"\xef\xbf\xbe\"]",
            vec![e("invalid UTF-8 sequence in string")],
        ),
        (b"[\"\xc3\"]", vec![e("invalid UTF-8 sequence in string")]),
        (
            b"[\"\xe0\x80\x80\"]",
            vec![e("invalid UTF-8 sequence in string")],
        ),
        (b"%d\n", vec![e("stray '%'")]),
        // The offending byte belongs to the stray token.
        (b"[1.]", vec![e("stray '1.]'")]),
        (b"[1e]\n", vec![e("stray '1e]'")]),
        // A leading zero takes a fraction but no exponent: the number ends before the `e`
        // (a keyword) or the `E` (stray).
        (b"[0e1]", vec![e("expected separator in list")]),
        (b"[-0e1]", vec![e("expected separator in list")]),
        (b"[0E1]", vec![e("stray 'E'"), EXPECTING.into()]),
        (b"[0e]", vec![e("expected separator in list")]),
        (b"[-x]", vec![e("stray '-x'"), EXPECTING.into()]),
        (b"[\"a\tb\"]", vec![e("stray '\"a\t'"), EXPECTING.into()]),
        (b"[\"a\x00b\"]", vec![e("stray '\"a'"), EXPECTING.into()]),
        (b"\xc3\xa9\n", vec![e("stray '\u{FFFD}'")]),
        (b"Infinity\n", vec![e("stray 'I'")]),
        (b"[}", vec![EXPECTING.into()]),
        // Recovery skips spaces and tabs, stops at brackets, braces, commas, colons and
        // control characters, which are read afresh.
        (b"@ \t [1]", vec![e("stray '@'"), "[1]".into()]),
        (
            b"@x y,1\n",
            vec![e("stray '@'"), EXPECTING.into(), "1".into()],
        ),
        (
            b"@x\"y:[1]",
            vec![e("stray '@'"), EXPECTING.into(), "[1]".into()],
        ),
        (
            b"@x}1\n",
            vec![e("stray '@'"), EXPECTING.into(), "1".into()],
        ),
        // A control character ends recovery, and is itself stray.
        (
            b"@x\x01[1]",
            vec![e("stray '@'"), e("stray '\u{1}'"), "[1]".into()],
        ),
    ];
    for (input, expected) in cases {
        assert_eq!(
            decode(input),
            expected,
            "{}",
            String::from_utf8_lossy(input)
        );
    }
}

#[test]
fn error_desc_is_encoded_as_qemu_does() {
    let out = decode(b"{\"execute\": \"query\x01status\"}\n");
    assert_eq!(out.len(), 2);
    let mut s = JsonStreamer::new();
    let mut items = Vec::new();
    s.feed(b"\"\xf0\x9f\x98\x80\x01", &mut items);
    let Some(Err(e)) = items.pop() else {
        panic!("error expected")
    };
    let line = encode_line(&qmpkit_wire::response_error(&e.into(), None));
    assert_eq!(
        String::from_utf8_lossy(&line),
        "{\"error\": {\"class\": \"GenericError\", \"desc\": \"JSON parse error, stray '\\\"\\uD83D\\uDE00\\u0001'\"}}\r\n"
    );
}

#[test]
fn waiting_and_end_of_input() {
    let mut s = JsonStreamer::new();
    assert!(run(&mut s, b"{\"execute\": \"query-version\"\n").is_empty());
    assert_eq!(run(&mut s, b"}\n"), [r#"{"execute": "query-version"}"#]);

    // A top-level scalar needs the byte after it.
    let mut s = JsonStreamer::new();
    assert!(run(&mut s, b"42").is_empty());
    assert_eq!(run(&mut s, b"1 "), ["421"]);
    assert!(run(&mut s, b"tru").is_empty());
    assert_eq!(
        finish(&mut s),
        ["ERR JSON parse error, invalid keyword 'tru'"]
    );

    let mut s = JsonStreamer::new();
    assert!(run(&mut s, b"{\"a\": [1, 2").is_empty());
    assert_eq!(finish(&mut s), ["ERR JSON parse error, premature EOI"]);

    let mut s = JsonStreamer::new();
    assert!(run(&mut s, b"[\"abc").is_empty());
    assert_eq!(finish(&mut s), ["ERR JSON parse error, stray '\"abc'"]);
    assert_eq!(run(&mut s, b"[1]"), ["[1]"], "usable again after finish");
    assert!(finish(&mut s).is_empty());

    let mut s = JsonStreamer::new();
    assert!(run(&mut s, b"\n\n   \r\n").is_empty());
    assert!(finish(&mut s).is_empty());
}

#[test]
fn answers_come_without_waiting() {
    // Found by the fuzz target: the fast path must not wait for bytes that
    // cannot change QEMU's answer.
    let e = |s: &str| format!("ERR JSON parse error, {s}");
    let cases: &[(&[u8], String)] = &[
        (b"{\"ess\\u\"}", e("\\u\" is not a valid Unicode character")),
        (
            b"[\"\\u12\"]",
            e("\\u12\" is not a valid Unicode character"),
        ),
        (b"[\"\xf0\"]", e("invalid UTF-8 sequence in string")),
        (b"[\"\xe2\x82\"]", e("invalid UTF-8 sequence in string")),
        (
            b"[\"\\ud800\"]",
            e("\\ud800 is not a valid Unicode character"),
        ),
        (
            b"[\"\\ud800\\x\"]",
            e("\\ud800 is not a valid Unicode character"),
        ),
    ];
    for (input, expected) in cases {
        assert_eq!(
            decode(input),
            std::slice::from_ref(expected),
            "{}",
            String::from_utf8_lossy(input)
        );
    }
}

#[test]
fn two_messages_and_split_messages() {
    assert_eq!(
        decode(b"{\"execute\": \"a\", \"id\": 1}{\"execute\": \"b\", \"id\": 2}\n"),
        [
            r#"{"execute": "a", "id": 1}"#,
            r#"{"execute": "b", "id": 2}"#
        ]
    );
    let input = b"{\"execute\": \"a\"} {'execute': 'b'} @ [1]";
    let whole = decode(input);
    for cut in 0..input.len() {
        let mut s = JsonStreamer::new();
        let mut got = run(&mut s, &input[..cut]);
        got.extend(run(&mut s, &input[cut..]));
        assert_eq!(got, whole, "cut at {cut}");
    }
}

fn nested(depth: usize) -> Vec<u8> {
    let mut v = b"{\"execute\": \"x\", \"id\": ".to_vec();
    v.resize(v.len() + depth, b'[');
    v.resize(v.len() + depth, b']');
    v.extend_from_slice(b"}\n");
    v
}

#[test]
fn nesting_limit() {
    let out = decode(&nested(1025));
    assert_eq!(out.len(), 1 + 1 + 1025);
    assert_eq!(out[0], "ERR JSON nesting depth limit exceeded");
    assert_eq!(out[1], "[]");
    assert!(out[2..].iter().all(|o| o == EXPECTING));
    let out = decode(&nested(1023));
    assert_eq!(out.len(), 1);
    assert!(!out[0].starts_with("ERR"));
}

#[test]
fn deep_values_need_little_stack() {
    // Decoding, checking, reordering and printing 1024 levels runs on a small
    // thread stack (debug build; a release build needs far less).
    let handle = std::thread::Builder::new()
        .stack_size(1 << 20)
        .spawn(|| {
            let mut s = JsonStreamer::new();
            let mut out = Vec::new();
            s.feed(&nested(1023), &mut out);
            let v = out.pop().and_then(Result::ok).expect("value");
            let req = Request::parse(v, false).expect("request");
            let id = req.id.expect("id");
            to_qemu_string(&id).len()
        })
        .expect("thread");
    assert_eq!(handle.join().ok(), Some(2 * 1023));
}

#[test]
fn token_count_limit() {
    // 2 Mi + 1 tokens in one message.
    let n = (2 << 20) / 2;
    let mut input = b"[".to_vec();
    for _ in 0..n {
        input.extend_from_slice(b"1,");
    }
    input.extend_from_slice(b"1]");
    let out = decode(&input);
    assert_eq!(out[0], "ERR JSON token count limit exceeded");
    // What follows the cut is read afresh: "1", ",", "1", "]" …
    assert_eq!(out.len(), 3);
    assert_eq!(out[1], "1");
    assert_eq!(out[2], EXPECTING);
}

#[test]
fn token_size_limit() {
    // A 64 MiB string: the token is cut at the limit and the rest read afresh.
    let mut input = b"{\"execute\": \"x\", \"arguments\": {\"s\": \"".to_vec();
    input.resize(input.len() + (64 << 20), b'a');
    input.extend_from_slice(b"\"}}\n{\"execute\": \"after\"}\n");
    let mut s = JsonStreamer::new();
    let mut out = Vec::new();
    for chunk in input.chunks(1 << 16) {
        s.feed(chunk, &mut out);
    }
    let out: Vec<String> = out
        .into_iter()
        .map(|r| {
            r.map(|v| to_qemu_string(&v))
                .unwrap_or_else(|e| format!("ERR {e}"))
        })
        .collect();
    // The closing quote then opens a string that a newline makes stray;
    // recovery ends at the next brace.
    assert_eq!(
        out,
        [
            "ERR JSON token size limit exceeded",
            "ERR JSON parse error, stray '\"}}\n'",
            r#"{"execute": "after"}"#
        ]
    );
}

#[test]
fn largest_double_in_an_id_is_echoed_as_itself() {
    // QEMU echoes the largest double as itself and a number beyond it as an infinity, at any
    // depth of the id, whatever else the id holds; both paths and any chunking agree.
    let input: &[u8] = b"{\"execute\": \"query-version\", \"id\": [1.7976931348623157e308, 1e400, \
        {\"b\": -1.7976931348623157e308, \"a\": [-1e309, 1.7976931348623158e308]}, 1.7976931348623155e308]}\n";
    let expected = "[1.7976931348623157e+308, inf, {\"a\": [-inf, 1.7976931348623157e+308], \
        \"b\": -1.7976931348623157e+308}, 1.7976931348623155e+308]";
    for mut s in [JsonStreamer::new(), JsonStreamer::exact_only()] {
        for cut in [0, 40, 60, input.len()] {
            let mut out = Vec::new();
            s.feed(&input[..cut], &mut out);
            s.feed(&input[cut..], &mut out);
            let v = out.pop().and_then(Result::ok).expect("value");
            let req = Request::parse(v, false).expect("request");
            let line = encode_line(&qmpkit_wire::response_return(serde_json::json!({}), req.id));
            assert_eq!(
                String::from_utf8_lossy(&line),
                format!("{{\"return\": {{}}, \"id\": {expected}}}\r\n")
            );
        }
    }
    // Any top-level object's id is echoed (in QEMU's errors too): marked likewise.
    let mut out = Vec::new();
    JsonStreamer::new().feed(b"{\"id\": 1.7976931348623157e308}\n", &mut out);
    let v = out.pop().and_then(Result::ok).expect("value");
    let e = Request::parse(v, false).expect_err("no execute");
    assert_eq!(
        String::from_utf8_lossy(&encode_line(&e.to_response())),
        "{\"id\": 1.7976931348623157e+308, \"error\": {\"class\": \"GenericError\", \"desc\": \"QMP input lacks member 'execute'\"}}\r\n"
    );
    // Elsewhere (arguments, other values) the largest double is a plain number.
    let out = decode(b"{\"execute\": \"x\", \"arguments\": {\"n\": 1.7976931348623157e308}}\n");
    assert_eq!(out, ["{\"execute\": \"x\", \"arguments\": {\"n\": inf}}"]);
    let mut out = Vec::new();
    JsonStreamer::new().feed(
        b"{\"execute\": \"x\", \"arguments\": {\"n\": 1.7976931348623157e308}}\n",
        &mut out,
    );
    let v = out.pop().and_then(Result::ok).expect("value");
    assert_eq!(v["arguments"]["n"].as_f64(), Some(f64::MAX));
}
