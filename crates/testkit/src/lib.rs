//! Helpers shared by the tests of the workspace's crates: reading QEMU's recorded
//! transcripts and finding a Python interpreter that has qemu.qmp.

pub mod python;
pub mod transcript;
