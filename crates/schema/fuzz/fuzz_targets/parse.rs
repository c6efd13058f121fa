//! Fuzz the schema front end (and the model after it): any bytes, split at
//! NUL bytes into a main file and files it may include (`a.json`,
//! `b.json`, ...), must give a schema or an error, never a panic, a hang
//! or a stack overflow.

#![no_main]

use libfuzzer_sys::fuzz_target;
use qmpkit_schema::{parse_schema, Dialect, MemoryProvider};

const NAMES: [&str; 4] = ["main.json", "a.json", "b.json", "sub/c.json"];

fuzz_target!(|data: &[u8]| {
    let mut files = MemoryProvider::new();
    for (name, chunk) in NAMES.iter().zip(data.split(|&b| b == 0)) {
        files.add(name, String::from_utf8_lossy(chunk).into_owned());
    }
    for dialect in [Dialect::Modern, Dialect::Legacy] {
        match parse_schema("main.json", dialect, &files) {
            Ok(parsed) => {
                // The model must cope with whatever the front end accepts.
                if let Ok(schema) = qmpkit_schema::model::Schema::from_parsed(parsed) {
                    let _ = qmpkit_schema::dump::dump_qemu_test(&schema);
                }
            }
            Err(e) => {
                let _ = e.full();
            }
        }
    }
});
