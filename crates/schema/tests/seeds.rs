//! The seed schemas (QEMU 1.0 to 2.12) load under the legacy dialect with
//! the expected counts. Counting rule (see `stats`): definitions written as
//! expressions only; implicit types (arrays, `q_obj_*`, simple-union
//! `*Kind` enums and wrappers, nested anonymous structs) are not counted.

use qmpkit_schema::{stats::SchemaStats, Dialect};

fn load(rel: &str) -> Option<SchemaStats> {
    let path = qmpkit_testkit::data::path("seeds").join(rel);
    match qmpkit_schema::load(&path, Dialect::Legacy) {
        Ok(s) => Some(SchemaStats::of(&s)),
        Err(e) => panic!("{rel} does not load under legacy:\n{e}"),
    }
}

#[test]
fn qemu_1_0() {
    let Some(s) = load("qemu-1.0-dev.json") else {
        return;
    };
    assert_eq!((s.commands, s.structs, s.enums), (19, 19, 2));
    assert_eq!((s.events, s.unions, s.alternates), (0, 0, 0));
}

#[test]
fn qemu_1_1() {
    let Some(s) = load("qemu-1.1-dev.json") else {
        return;
    };
    assert_eq!((s.commands, s.structs, s.enums), (47, 27, 2));
}

#[test]
fn qemu_1_3() {
    let Some(s) = load("qemu-1.3-dev.json") else {
        return;
    };
    assert_eq!((s.commands, s.structs, s.unions, s.enums), (82, 56, 4, 10));
}

#[test]
fn qemu_2_12() {
    let Some(s) = load("qemu-2.12-dev/qapi-schema.json") else {
        return;
    };
    assert_eq!(
        (
            s.commands,
            s.events,
            s.structs,
            s.unions,
            s.alternates,
            s.enums
        ),
        (156, 37, 201, 22, 4, 79)
    );
    assert_eq!(s.files, 16);
}
