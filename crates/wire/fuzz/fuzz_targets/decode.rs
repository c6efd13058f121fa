//! The decoder on arbitrary bytes: it never panics, the fast path and the
//! exact path agree, the way the input is cut into chunks does not matter,
//! and every value it yields prints and reads back to the same text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use qmpkit_wire::{to_qemu_string, JsonStreamer, Request};

fn decode(mut s: JsonStreamer, data: &[u8], cuts: &[usize]) -> Vec<Result<String, String>> {
    let mut out = Vec::new();
    let mut last = 0;
    for &c in cuts {
        let c = c.clamp(last, data.len());
        s.feed(&data[last..c], &mut out);
        last = c;
    }
    s.feed(&data[last..], &mut out);
    s.finish(&mut out);
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

fuzz_target!(|data: &[u8]| {
    // The first byte chooses where to cut.
    let (seed, data) = match data.split_first() {
        Some((s, d)) => (*s as usize, d),
        None => return,
    };
    let cuts: Vec<usize> = (1..=seed % 5).map(|i| data.len() * i * 7 / (5 * 8) + seed % 3).collect();
    let whole = decode(JsonStreamer::new(), data, &[]);
    let exact = decode(JsonStreamer::exact_only(), data, &[]);
    assert_eq!(whole, exact, "fast and exact paths differ");
    let chunked = decode(JsonStreamer::new(), data, &cuts);
    assert_eq!(whole, chunked, "chunking changed the result");
    for text in whole.iter().flatten() {
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
