//! The differential corpus of `qmpkit_testkit::differential` (about 8800 requests around the
//! protocol's edges) against the live qemu-storage-daemon 10.0.2 and `qmpkit serve` over the
//! daemon's schema, build configuration, version and package: every reply must be the same
//! bytes. Skipped when qemu-storage-daemon 10.0.2 is not installed.

#[path = "serve_support/mod.rs"]
mod support;

#[test]
fn qmpkit_serve_answers_generated_requests_as_qemu_storage_daemon_does() {
    qmpkit_testkit::program_or_skip!("qemu-storage-daemon");
    let qsd = match qmpkit_testkit::qsd::start() {
        Ok(q) => q,
        Err(reason) => qmpkit_testkit::skip!("{reason}"),
    };
    let greeting: serde_json::Value =
        serde_json::from_slice(&qmpkit_testkit::qsd::greeting(&qsd)).expect("greeting");
    let ver = &greeting["QMP"]["version"]["qemu"];
    let version = format!("{}.{}.{}", ver["major"], ver["minor"], ver["micro"]);
    let package = greeting["QMP"]["version"]["package"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let schema =
        qmpkit_testkit::data::qemu_ref("schema-10.0.2/storage-daemon/qapi/qapi-schema.json");
    let cfg = qmpkit_testkit::data::qemu_ref("introspection/cfg-qemu-storage-daemon-10.0.2.txt");
    let dir = support::tmpdir("differential");
    let socket = dir.join("qmp.sock");
    let qmp = format!("unix:{},server=on,wait=off", socket.display());
    let _serve = support::spawn(&[
        "--schema",
        &schema.to_string_lossy(),
        "--cfg-file",
        &cfg.to_string_lossy(),
        "--qemu-version",
        &version,
        "--package",
        &package,
        "--qmp",
        &qmp,
    ]);
    support::wait_for(&socket);
    qmpkit_testkit::differential::assert_same(&qsd.socket, &socket);
    let _ = std::fs::remove_dir_all(&dir);
}
