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
