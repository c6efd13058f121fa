//! qmpkit-machine
