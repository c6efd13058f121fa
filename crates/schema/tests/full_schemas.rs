//! QEMU's real full schemas load clean under the modern dialect.

use qmpkit_schema::Dialect;

fn check(rel: &str) {
    let path = qmpkit_testkit::data::path("qemu-ref").join(rel);
    if let Err(e) = qmpkit_schema::load(&path, Dialect::Modern) {
        panic!("{rel}:\n{e}");
    }
}

#[test]
fn qemu_10_0_system() {
    check("schema-10.0.2/qapi/qapi-schema.json");
}

#[test]
fn qemu_10_0_storage_daemon() {
    check("schema-10.0.2/storage-daemon/qapi/qapi-schema.json");
}

#[test]
fn qemu_7_2_system() {
    check("schema-7.2.22/qapi/qapi-schema.json");
}

#[test]
fn qemu_7_2_storage_daemon() {
    check("schema-7.2.22/storage-daemon/qapi/qapi-schema.json");
}

/// Runs that set how large a schema must be to be checked on two cores (for the whole
/// process) one at a time.
static MODE: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn checked_with(parallel_min: usize, f: impl FnOnce() -> String) -> String {
    let _one_at_a_time = MODE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    qmpkit_schema::model::check::set_parallel_check_min(parallel_min);
    let r = f();
    qmpkit_schema::model::check::set_parallel_check_min(usize::MAX);
    r
}

/// A large schema checked on two cores gives the model checking in order gives.
#[test]
fn two_cores_give_the_model_of_checking_in_order() {
    for rel in [
        "schema-10.0.2/qapi/qapi-schema.json",
        "schema-7.2.22/qapi/qapi-schema.json",
        "schema-10.0.2/storage-daemon/qapi/qapi-schema.json",
    ] {
        let path = qmpkit_testkit::data::path("qemu-ref").join(rel);
        let model = |parallel_min| {
            checked_with(parallel_min, || {
                let s = qmpkit_schema::load(&path, Dialect::Modern).expect("loads");
                let c = qmpkit_schema::load_checking(&path, Dialect::Modern).expect("loads");
                // What the checks made of it (where file texts lie in memory aside).
                let text = format!(
                    "{:?}\n{:?}\n{:?}\n{:?}\n{:?}",
                    s.entities, s.modules, s.doc_links, c.entities, c.doc_links
                );
                let mut out = String::with_capacity(text.len());
                for (k, part) in text.split("text_at: (").enumerate() {
                    let rest = if k == 0 {
                        part
                    } else {
                        part.split_once(')').map_or(part, |(_, r)| r)
                    };
                    out.push_str(rest);
                }
                out
            })
        };
        let (in_order, split) = (model(usize::MAX), model(0));
        if in_order != split {
            let at = in_order
                .bytes()
                .zip(split.bytes())
                .position(|(a, b)| a != b)
                .unwrap_or(in_order.len().min(split.len()));
            let near = |t: &str| {
                t.get(at.saturating_sub(300)..(at + 100).min(t.len()))
                    .unwrap_or("")
                    .to_string()
            };
            panic!(
                "{rel}: the models differ:\n{}\n{}",
                near(&in_order),
                near(&split)
            );
        }
    }
}

/// QEMU 10.0.2's schema with `edits` made (file, text, replacement): the error checking it
/// reports, on two cores as in order.
fn error_of_edited(edits: &[(&str, &str, &str)]) -> String {
    let dir = qmpkit_testkit::data::path("qemu-ref/schema-10.0.2/qapi");
    let mut files = qmpkit_schema::MemoryProvider::new();
    for entry in std::fs::read_dir(&dir).expect("schema files") {
        let p = entry.expect("schema file").path();
        let name = p
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        if !name.ends_with(".json") {
            continue;
        }
        let mut text = std::fs::read_to_string(&p).expect("schema text");
        for (file, from, to) in edits {
            if *file == name {
                assert!(text.contains(from), "{file} has no {from:?}");
                text = text.replacen(from, to, 1);
            }
        }
        files.add(&format!("/q/{name}"), text);
    }
    let error = |parallel_min| {
        checked_with(parallel_min, || {
            let load = qmpkit_schema::load_from("/q/qapi-schema.json", Dialect::Modern, &files);
            match load {
                Ok(_) => "no error".to_string(),
                Err(e) => e.to_string(),
            }
        })
    };
    let in_order = error(usize::MAX);
    assert_eq!(error(0), in_order, "edits {edits:?}");
    in_order
}

/// Each kind of error the checks on two cores look for, in a large schema, is reported as
/// checking in order reports it; so is the first of two errors that the two passes find in
/// the other order.
#[test]
fn two_cores_report_the_error_checking_in_order_reports() {
    let enum_value = (
        "common.json",
        "'data': [ 'auto', 'on', 'off' ]",
        "'data': [ 'auto', 'on', 'off', 'extra' ]",
    );
    let member = (
        "sockets.json",
        "    '*numeric':  'bool',",
        "    '*numeric':  'bool',\n    '*port': 'str',",
    );
    let branch = (
        "common.json",
        "            'n': 'null' } }",
        "            'n': 'null', 'b': 'str' } }",
    );
    let doc = (
        "common.json",
        "# @off: Disabled\n",
        "# @off: Disabled\n#\n# @bogus: Nothing\n",
    );
    let late_type = (
        "control.json",
        "{ 'command': 'query-version', 'returns': 'VersionInfo',",
        "{ 'command': 'query-version', 'returns': 'NoSuchInfo',",
    );
    let cases = [
        (vec![enum_value], "value 'extra' lacks documentation"),
        (
            vec![member],
            "member 'port' collides with member 'port' of type 'InetSocketAddressBase'",
        ),
        (vec![branch], "can't be distinguished from 's'"),
        (vec![doc], "documented member 'bogus' does not exist"),
        (vec![late_type], "uses unknown type 'NoSuchInfo'"),
        (
            vec![enum_value, late_type],
            "value 'extra' lacks documentation",
        ),
        (vec![member, late_type], "collides with member 'port'"),
        // Doc comments are checked last, in order as on two cores.
        (vec![doc, late_type], "uses unknown type 'NoSuchInfo'"),
    ];
    for (edits, want) in cases {
        let got = error_of_edited(&edits);
        assert!(got.contains(want), "edits {edits:?}: {got}");
    }
    assert_eq!(error_of_edited(&[]), "no error");
}
