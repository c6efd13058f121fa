//! Which QEMU version a `--schema` file is from, when `--qemu-version` does
//! not say. Behaviour that changed between versions (error messages,
//! reply shapes) follows this number, so guessing 2.12 for a 10.0 schema
//! would answer as an old QEMU did.
//!
//! In order:
//! 1. The path: a component `qemu-X.Y[.Z][-…]`, `schema-X.Y[.Z]`, or a file
//!    name starting with `qemu` that carries `-X.Y[.Z]` between hyphens
//!    (`qemu-storage-daemon-10.0.2-query-qmp-schema.json`), nearest the
//!    file first.
//! 2. The content, as a lower bound: the newest `Since:` written in the
//!    schema's doc comments (`Since: 9.2`, `(since 10.0)`), and the newest
//!    of a fixed list of commands and events that first appeared in a known
//!    release (a `query-qmp-schema` answer has no doc comments). A guess is
//!    reported on stderr.

use std::path::Path;

use qmpkit_schema::Schema;

/// The version named by `p` or one of its parent directories.
pub fn from_path(p: &Path) -> Option<(u64, u64, u64)> {
    let mut cur = Some(p);
    while let Some(path) = cur {
        if let Some(name) = path.file_name() {
            if let Some(v) = from_component(&name.to_string_lossy()) {
                return Some(v);
            }
        }
        cur = path.parent();
    }
    None
}

fn from_component(name: &str) -> Option<(u64, u64, u64)> {
    let name = name.strip_suffix(".json").unwrap_or(name);
    let rest = name
        .strip_prefix("qemu")
        .or_else(|| name.strip_prefix("schema-"))?;
    // Every `-X.Y[.Z]` word (ended by `-` or the end), first one wins.
    let rest = rest.strip_prefix('-').unwrap_or(rest);
    rest.split('-').find_map(version_word)
}

/// `X.Y` or `X.Y.Z`, digits only.
fn version_word(w: &str) -> Option<(u64, u64, u64)> {
    let parts: Vec<&str> = w.split('.').collect();
    if !(2..=3).contains(&parts.len())
        || parts
            .iter()
            .any(|p| p.is_empty() || p.len() > 4 || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return None;
    }
    let n = |i: usize| parts.get(i).and_then(|p| p.parse().ok()).unwrap_or(0);
    Some((n(0), n(1), n(2)))
}

/// Commands and events by the release that introduced them (as their
/// documentation says), newest first. Only presence is tested, so a name
/// that later disappeared still proves its release.
/// A release and names it introduced.
type Probe = ((u64, u64, u64), &'static [&'static str]);

const PROBES: &[Probe] = &[
    (
        (10, 0, 0),
        &["blockdev-set-active", "NETDEV_VHOST_USER_CONNECTED"],
    ),
    ((9, 2, 0), &["device-sync-config"]),
    ((9, 1, 0), &["GUEST_PVSHUTDOWN", "VFIO_MIGRATION"]),
    ((9, 0, 0), &["request-ebpf"]),
    (
        (8, 2, 0),
        &["block-job-change", "query-hv-balloon-status-report"],
    ),
    ((8, 0, 0), &["query-cryptodev", "query-audiodevs"]),
    ((7, 2, 0), &["query-migrationthreads", "dumpdtb"]),
    (
        (7, 1, 0),
        &["query-stats", "query-stats-schemas", "display-update"],
    ),
    ((6, 2, 0), &["DEVICE_UNPLUG_GUEST_ERROR", "x-query-roms"]),
    ((6, 1, 0), &["blockdev-reopen"]),
    ((6, 0, 0), &["query-yank", "yank", "set-action"]),
    (
        (5, 2, 0),
        &["block-export-add", "query-block-exports", "calc-dirty-rate"],
    ),
    ((5, 1, 0), &["x-blockdev-amend"]),
    ((5, 0, 0), &["GUEST_CRASHLOADED"]),
    ((4, 2, 0), &["FAILOVER_NEGOTIATED"]),
    (
        (4, 0, 0),
        &[
            "query-current-machine",
            "announce-self",
            "block-dirty-bitmap-merge",
        ],
    ),
    ((3, 1, 0), &["query-display-options", "query-colo-status"]),
    (
        (3, 0, 0),
        &["query-jobs", "blockdev-create", "JOB_STATUS_CHANGE"],
    ),
    (
        (2, 12, 0),
        &[
            "query-cpus-fast",
            "block-job-dismiss",
            "qom-list-properties",
        ],
    ),
    (
        (2, 11, 0),
        &["watchdog-set-action", "query-memory-size-summary"],
    ),
    ((2, 10, 0), &["chardev-change", "chardev-send-break"]),
    ((2, 9, 0), &["blockdev-del", "query-vm-generation-id"]),
    ((2, 8, 0), &["query-cpu-model-expansion"]),
    ((2, 7, 0), &["query-hotpluggable-cpus"]),
    ((2, 6, 0), &["input-send-event", "query-dump"]),
    ((2, 5, 0), &["query-qmp-schema", "blockdev-open-tray"]),
    ((2, 4, 0), &["MIGRATION", "query-migrate-parameters"]),
    ((2, 3, 0), &["blockdev-backup", "query-vnc-servers"]),
    ((2, 2, 0), &["trace-event-get-state"]),
    ((2, 1, 0), &["query-memdev", "rtc-reset-reinjection"]),
    ((2, 0, 0), &["object-add", "query-iothreads"]),
    ((1, 7, 0), &["blockdev-snapshot-internal-sync"]),
    ((1, 6, 0), &["drive-backup", "query-rx-filter"]),
    (
        (1, 5, 0),
        &["query-command-line-options", "query-tpm", "DEVICE_DELETED"],
    ),
    ((1, 4, 0), &["chardev-add", "ringbuf-read"]),
    ((1, 3, 0), &["block-commit", "drive-mirror", "send-key"]),
    (
        (1, 2, 0),
        &["qom-get", "query-machines", "add-fd", "dump-guest-memory"],
    ),
    (
        (1, 1, 0),
        &["block-job-set-speed", "query-block-jobs", "SUSPEND"],
    ),
];

/// The newest release whose commands or events `schema` has.
pub fn from_probes(schema: &Schema) -> Option<(u64, u64, u64)> {
    PROBES
        .iter()
        .find(|(_, names)| names.iter().any(|n| schema.lookup(n).is_some()))
        .map(|(v, _)| *v)
}

/// The newest `since X.Y[.Z]` in the schema's doc comments.
pub fn from_docs(schema: &Schema) -> Option<(u64, u64, u64)> {
    let mut best = None;
    for d in &schema.docs {
        let sections = std::iter::once(&d.body)
            .chain(&d.args)
            .chain(&d.features)
            .chain(&d.sections);
        for s in sections {
            for v in sinces(&s.text) {
                best = best.max(Some(v));
            }
        }
    }
    best
}

/// Versions after the word "since" (any case, then optional `:` and
/// blanks) in `text`.
fn sinces(text: &str) -> impl Iterator<Item = (u64, u64, u64)> + '_ {
    let lower = text.to_ascii_lowercase();
    let mut found = Vec::new();
    let mut at = 0;
    while let Some(i) = lower[at..].find("since") {
        let start = at + i + "since".len();
        at = start;
        let after = lower[start..].trim_start_matches([':', ' ', '\t', '\n']);
        let word: String = after
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.')
            .collect();
        if let Some(v) = version_word(word.trim_end_matches('.')) {
            // No QEMU release is newer than this; a larger number is a typo.
            if v.0 < 100 {
                found.push(v);
            }
        }
    }
    found.into_iter()
}

/// The content's guess: the newer of the docs' and the probes' answers.
pub fn infer(schema: &Schema) -> Option<(u64, u64, u64)> {
    from_docs(schema).max(from_probes(schema))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        let p = |s: &str| from_path(Path::new(s));
        assert_eq!(p("tests/data/seeds/qemu-1.3-dev.json"), Some((1, 3, 0)));
        assert_eq!(
            p("/x/seeds/qemu-2.12-dev/qapi-schema.json"),
            Some((2, 12, 0))
        );
        assert_eq!(
            p("/w/qemu-ref/schema-10.0.2/qapi/qapi-schema.json"),
            Some((10, 0, 2))
        );
        assert_eq!(
            p("/w/schema-7.2.22/storage-daemon/qapi/qapi-schema.json"),
            Some((7, 2, 22))
        );
        assert_eq!(
            p("/i/qemu-storage-daemon-10.0.2-query-qmp-schema.json"),
            Some((10, 0, 2))
        );
        assert_eq!(
            p("/i/qemu-system-x86_64-7.2.22-query-qmp-schema.json"),
            Some((7, 2, 22))
        );
        assert_eq!(p("/w/qemu-ref/qapi/qapi-schema.json"), None);
        assert_eq!(p("/w/my-schema.json"), None);
        assert_eq!(p(""), None);
    }

    #[test]
    fn since_words() {
        let v: Vec<_> = sinces("Since: 9.2\n(since 10.0) since 1.2.3. Since QEMU 4").collect();
        assert_eq!(v, [(9, 2, 0), (10, 0, 0), (1, 2, 3)]);
        assert_eq!(sinces("since 99999999999999999999.1").count(), 0);
    }
}
