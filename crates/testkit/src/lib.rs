//! Helpers shared by the tests of the workspace's crates: reading QEMU's recorded
//! transcripts, finding a Python interpreter that has qemu.qmp and running programs.

pub mod cmd;
pub mod python;
pub mod transcript;
