//! The decoder on arbitrary bytes: it never panics, the fast path and the
//! exact path agree, the way the input is cut into chunks does not matter,
//! and every value it yields prints and reads back to the same text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use qmpkit_wire::{to_qemu_string, JsonStreamer, Request};

type Item = Result<String, String>;

/// Outputs, each with the index of the chunk whose arrival produced it.
fn decode_timed(mut s: JsonStreamer, data: &[u8], cuts: &[usize]) -> Vec<(usize, Item)> {
    let mut timed = Vec::new();
    let mut last = 0;
    for (i, &c) in cuts.iter().chain(std::iter::once(&data.len())).enumerate() {
        let c = c.clamp(last, data.len());
        let mut out = Vec::new();
        s.feed(&data[last..c], &mut out);
        last = c;
        timed.extend(shown(out).into_iter().map(|o| (i, o)));
    }
    let mut out = Vec::new();
    s.finish(&mut out);
    timed.extend(shown(out).into_iter().map(|o| (usize::MAX, o)));
    timed
}

fn decode(s: JsonStreamer, data: &[u8], cuts: &[usize]) -> Vec<Item> {
    decode_timed(s, data, cuts)
        .into_iter()
        .map(|(_, o)| o)
        .collect()
}

fn shown(out: Vec<Result<serde_json::Value, qmpkit_wire::JsonError>>) -> Vec<Item> {
    out.into_iter()
        .map(|r| match r {
            Ok(v) => {
                let text = to_qemu_string(&v);
                let _ = Request::parse(v, true);
                Ok(text)
            }
            Err(e) => Err(e.to_string()),
        })
        .collect()
}

/// True when `text` (the writer's output) holds `inf` outside strings.
fn prints_infinity(text: &str) -> bool {
    let mut in_string = false;
    let mut escaped = false;
    for b in text.bytes() {
        match (in_string, escaped, b) {
            (true, true, _) => escaped = false,
            (true, false, b'\\') => escaped = true,
            (true, false, b'"') => in_string = false,
            (true, false, _) => {}
            (false, _, b'"') => in_string = true,
            (false, _, b'i') => return true,
            _ => {}
        }
    }
    false
}

fuzz_target!(|data: &[u8]| {
    // The first byte chooses where to cut.
    let (seed, data) = match data.split_first() {
        Some((s, d)) => (*s as usize, d),
        None => return,
    };
    let mut cuts: Vec<usize> = (0..seed % 8)
        .map(|k| (seed * 31 + k * 97 + k * k * 13) % (data.len() + 1))
        .collect();
    cuts.sort_unstable();
    let whole = decode(JsonStreamer::new(), data, &[]);
    let exact = decode(JsonStreamer::exact_only(), data, &[]);
    assert_eq!(whole, exact, "fast and exact paths differ");
    let chunked = decode(JsonStreamer::new(), data, &cuts);
    assert_eq!(whole, chunked, "chunking changed the result");
    assert_eq!(
        decode_timed(JsonStreamer::new(), data, &cuts),
        decode_timed(JsonStreamer::exact_only(), data, &cuts),
        "an answer came later (or earlier) than QEMU would give it"
    );
    for text in whole.iter().flatten() {
        if prints_infinity(text) {
            // A number beyond a double's range prints as QEMU prints its infinity, which no
            // JSON reader (QEMU's included) takes back.
            continue;
        }
        let again = decode(JsonStreamer::new(), format!("{text}\n").as_bytes(), &[]);
        assert_eq!(again.len(), 1, "{text}");
        if let Some(Ok(t)) = again.first() {
            // "-0" reads back as the integer 0; anything else prints the same.
            if !text.contains("-0") {
                assert_eq!(t, text);
            }
        }
    }
});
