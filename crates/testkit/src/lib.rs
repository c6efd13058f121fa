//! Helpers shared by the tests of the workspace's crates: finding test data, skipping when an
//! optional program is missing (a failure under `QMPKIT_REQUIRE_ALL=1`), reading QEMU's recorded
//! transcripts, finding a Python interpreter that has qemu.qmp, running programs, and the
//! differential corpus run against a live qemu-storage-daemon; a line-based QMP connection, and
//! two fleets of `qmpkit serve` migrating pairwise.

pub mod cmd;
pub mod data;
pub mod differential;
pub mod fleet;
pub mod python;
pub mod qmp;
pub mod qsd;
pub mod skip;
pub mod transcript;
