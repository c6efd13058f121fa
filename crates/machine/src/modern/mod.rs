//! What the machine answers as a modern QEMU that the 2.12-generation
//! subsystems do not model yet.

pub mod probe;
