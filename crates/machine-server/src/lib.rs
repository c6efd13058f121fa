//! qmpkit-machine-server: the simulated machine behind a QMP server.
//!
//! `qmpkit-machine` is a pure library (no sockets, no tasks); this crate puts
//! its machines behind [`qmpkit_server`]:
//!
//! * `glue` — [`MachineHandle`]: handler registration for every command of the
//!   served schema ([`MachineHandle::register`], [`answer_unhandled`] for what
//!   no subsystem implements), events forwarded after each call, the timer
//!   task ([`MachineHandle::run_timers`]) on real time, and the readline
//!   monitor ([`MachineHandle::serve_readline`]).
//! * [`fleet`] — many independent machines in one process, each with its own
//!   name and UUID.

pub mod fleet;
mod glue;

pub use fleet::{build_fleet, expand_pattern, fleet_machine, has_index, try_fleet_machine};
pub use glue::{answer_unhandled, lock, MachineHandle, SERVER_BUILTINS};
