//! `qmpkit serve …`

use std::process::ExitCode;

pub fn run(_args: Vec<String>) -> ExitCode {
    eprintln!("qmpkit serve: the simulated machine is not built yet");
    ExitCode::FAILURE
}
