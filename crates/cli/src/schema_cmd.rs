//! `qmpkit schema …`

use std::process::ExitCode;

pub fn run(_args: Vec<String>) -> ExitCode {
    eprintln!("qmpkit schema: not built yet");
    ExitCode::FAILURE
}
