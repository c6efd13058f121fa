//! qmpkit-client
