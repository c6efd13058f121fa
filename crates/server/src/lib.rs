//! qmpkit-server
