//! The differential corpus of `qmpkit_testkit::differential` (number spellings and values,
//! string escapes, envelopes in every negotiation state, sizes and limits, token soup: about
//! 8800 requests) against the live qemu-storage-daemon 10.0.2 and an in-process server over
//! its schema: every reply must be the same bytes. Skipped when qemu-storage-daemon 10.0.2 is
//! not installed.

mod common;

#[test]
fn generated_requests_get_the_same_bytes_as_from_qemu_storage_daemon() {
    qmpkit_testkit::program_or_skip!("qemu-storage-daemon");
    let qsd = match qmpkit_testkit::qsd::start() {
        Ok(q) => q,
        Err(reason) => qmpkit_testkit::skip!("{reason}"),
    };
    let ours = common::qsd::twin(&qmpkit_testkit::qsd::greeting(&qsd));
    qmpkit_testkit::differential::assert_same(&qsd.socket, &ours.socket);
}
