//! Skipping a test whose optional program is missing.
//!
//! A test that needs a program that may be absent (qemu-storage-daemon, Python's qemu.qmp,
//! libvirt, …) prints `skipped: <reason>` and returns. Under `QMPKIT_REQUIRE_ALL=1` (set by
//! `.ci/run`) a skip is a failure instead, so CI runs everything.

/// True when `QMPKIT_REQUIRE_ALL` is set to anything but `0` or the empty string.
pub fn require_all() -> bool {
    std::env::var("QMPKIT_REQUIRE_ALL").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// Reports a skip: prints `skipped: <reason>` on stderr, or panics under `QMPKIT_REQUIRE_ALL`.
pub fn skip(reason: &str) {
    if require_all() {
        panic!("QMPKIT_REQUIRE_ALL is set and this test would be skipped: {reason}");
    }
    eprintln!("skipped: {reason}");
}

/// Finds `program` on PATH; on failure reports a skip (see [`skip`]) and returns None.
pub fn program(program: &str) -> Option<std::path::PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(program))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        skip(&format!("{program} is not installed"));
    }
    found
}

/// `skip!("reason {}", x)` reports a skip and returns from the calling test.
#[macro_export]
macro_rules! skip {
    ($($arg:tt)*) => {{
        $crate::skip::skip(&format!($($arg)*));
        return;
    }};
}

/// `let p = program_or_skip!("qemu-storage-daemon");` the program's path, or a skip and a
/// return from the calling test.
#[macro_export]
macro_rules! program_or_skip {
    ($name:expr) => {
        match $crate::skip::program($name) {
            Some(p) => p,
            None => return,
        }
    };
}
