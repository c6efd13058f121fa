//! `qmpkit`: one binary for QAPI schemas and QMP.
//!
//! This file only routes the first word of the command line to a module that
//! owns the subcommand; each module parses its own options.
//!
//! On Linux with glibc the binary starts at its own C `main` ([`start`]) rather than
//! through Rust's start-up, which asks the C library where the main thread's stack
//! lies (reading and parsing `/proc/self/maps`) and sets up a signal stack for
//! stack overflow reports: some twenty system calls and 0.1 ms of every process,
//! most of a short command's start. What the program relies on from Rust's
//! start-up is done there too.
#![cfg_attr(all(target_os = "linux", target_env = "gnu", not(test)), no_main)]

use std::process::ExitCode;

mod arena;
mod docs_cmd;
mod proxy;
mod qmp_cmd;
mod qmp_syntax;
mod replay_cmd;
mod schema_cmd;
mod serve_cmd;
mod shell;

const USAGE: &str = "\
usage: qmpkit <command> [options]

commands:
  schema check|dump|stats|introspect|diff|codegen
                                            work with QAPI schemas
  serve                                     run a simulated machine's QMP monitor
  emulate [QEMU options]                    run it as qemu-system-x86_64 10.0.2 would run
  storage-daemon [options]                  run as qemu-storage-daemon 10.0.2 would run
  qmp SERVER COMMAND [KEY=VALUE...]         run QMP commands for scripts
  proxy --upstream ADDR --listen ADDR[,...]  share one QMP monitor between many clients
  replay TRANSCRIPT --listen ADDR            serve a recorded QMP session back, strictly
  shell SERVER | --sim                      interactive QMP shell (qmp-shell's syntax, completion)
  completions bash|zsh|fish|elvish|powershell  print a shell completion script
  man [COMMAND]                             print a man page
  help                                      show this text

Run `qmpkit <command> --help` for the options of one command.";

/// The system's allocator, or an arena for the one-shot schema commands (see `arena`).
#[global_allocator]
static ALLOC: arena::Alloc = arena::Alloc;

/// `RUST_LOG` (e.g. `RUST_LOG=qmpkit_server=debug` for every request and
/// reply): diagnostics on stderr, never on stdout (`-qmp stdio` speaks
/// there). Without it no subscriber is installed and logging costs nothing.
fn init_logging() {
    let Some(spec) = std::env::var_os("RUST_LOG") else {
        return;
    };
    if spec.is_empty() {
        return;
    }
    let filter = tracing_subscriber::EnvFilter::from_default_env();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init();
}

#[cfg(any(not(all(target_os = "linux", target_env = "gnu")), test))]
fn main() -> ExitCode {
    qmpkit_main()
}

/// The process's entry point on Linux with glibc (the command line reaches `std::env::args`
/// through glibc's start-up, as it does under Rust's).
#[cfg(all(target_os = "linux", target_env = "gnu", not(test)))]
mod start {
    use std::process::ExitCode;

    #[no_mangle]
    extern "C" fn main(_argc: libc::c_int, _argv: *const *const libc::c_char) -> libc::c_int {
        prepare();
        // A panic (a bug) ends the process with Rust's status for it.
        let code =
            std::panic::catch_unwind(super::qmpkit_main).unwrap_or_else(|_| ExitCode::from(101));
        // `exit` flushes standard output as returning from Rust's `main` does.
        std::process::exit(super::status(code))
    }

    /// What Rust's start-up does that the program relies on: standard input, output and
    /// error are open (on `/dev/null` when the parent closed them, so that no file the
    /// program opens takes their place), and writing to a closed pipe is an error
    /// (`EPIPE`, which the commands handle), not a signal that ends the process.
    fn prepare() {
        let mut fds = [0, 1, 2].map(|fd| libc::pollfd {
            fd,
            events: 0,
            revents: 0,
        });
        // SAFETY: plain C calls on the process's own descriptors and signal dispositions;
        // `fds` outlives the `poll` call that writes to it.
        unsafe {
            if libc::poll(fds.as_mut_ptr(), 3, 0) != -1 {
                for f in &fds {
                    if f.revents & libc::POLLNVAL != 0
                        && libc::open(c"/dev/null".as_ptr(), libc::O_RDWR) != f.fd
                    {
                        libc::abort();
                    }
                }
            }
            libc::signal(libc::SIGPIPE, libc::SIG_IGN);
        }
    }
}

/// The status `code` stands for, for [`start`]. `ExitCode` keeps its number to itself (its
/// accessor is not stable), but every code is `ExitCode::from(n)` for one byte `n` on Unix,
/// and codes compare equal exactly when their numbers do: the number is the byte whose code
/// equals it.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn status(code: ExitCode) -> i32 {
    (0..=u8::MAX)
        .find(|&n| ExitCode::from(n) == code)
        .map_or(1, i32::from)
}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    use super::*;

    #[test]
    fn status_is_the_codes_number() {
        assert_eq!(status(ExitCode::SUCCESS), 0);
        assert_eq!(status(ExitCode::FAILURE), 1);
        for n in 0..=u8::MAX {
            assert_eq!(status(ExitCode::from(n)), i32::from(n));
        }
    }
}

fn qmpkit_main() -> ExitCode {
    init_logging();
    let args: Vec<String> = std::env::args().collect();
    // Run as `qemu-system-x86_64` (e.g. through a symlink): QEMU's command
    // line, QEMU's behaviour.
    if let Some(prog) = args
        .first()
        .and_then(|a| serve_cmd::emulate::invoked_as_emulator(a))
    {
        return serve_cmd::emulate::run(&prog, &args[1..]);
    }
    // Run as `qemu-storage-daemon`: the daemon's command line and behaviour.
    if let Some(prog) = args
        .first()
        .and_then(|a| serve_cmd::storage_daemon::invoked_as_storage_daemon(a))
    {
        return serve_cmd::storage_daemon::run(&prog, &args[0], &args[1..]);
    }
    let rest = if args.len() > 2 {
        args[2..].to_vec()
    } else {
        Vec::new()
    };
    // `qmpkit help COMMAND [SUBCOMMAND]` is `qmpkit COMMAND [SUBCOMMAND] --help`.
    if args.get(1).map(String::as_str) == Some("help") {
        if let Some((command, sub)) = rest.split_first() {
            if command != "help" {
                let mut words = vec![args[0].clone(), command.clone()];
                words.extend(sub.iter().cloned());
                words.push("--help".to_string());
                return route(words);
            }
        }
    }
    route(args)
}

/// Run the command the second word names.
fn route(args: Vec<String>) -> ExitCode {
    let rest = if args.len() > 2 {
        args[2..].to_vec()
    } else {
        Vec::new()
    };
    match args.get(1).map(String::as_str) {
        Some("schema") => schema_cmd::run(rest),
        Some("serve") => serve_cmd::run(rest),
        Some("emulate") => serve_cmd::emulate::run(serve_cmd::emulate::DEFAULT_NAME, &rest),
        Some("storage-daemon") => {
            use serve_cmd::storage_daemon::{run, DEFAULT_NAME};
            run(DEFAULT_NAME, DEFAULT_NAME, &rest)
        }
        Some("qmp") => qmp_cmd::run(rest),
        Some("proxy") => proxy::run(rest),
        Some("replay") => replay_cmd::run(rest),
        Some("shell") => shell::run(rest),
        Some("completions") => docs_cmd::completions(rest),
        Some("man") => docs_cmd::man(rest),
        Some("help") | Some("--help") | Some("-h") => to_stdout(&format!("{USAGE}\n"), "qmpkit"),
        // A command is required: usage on stderr, status 2 (as for any
        // other usage error).
        None => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
        Some("--version") | Some("-V") => {
            println!("qmpkit {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Some(other) => {
            eprintln!("qmpkit: unknown command '{other}' (try 'qmpkit help')");
            ExitCode::from(2)
        }
    }
}

/// Write a command's whole output to stdout. A reader that went away
/// (`| head`) ends the command quietly with success, as it does for QEMU's
/// tools; any other write error is reported under `what`.
pub(crate) fn to_stdout(text: &str, what: &str) -> ExitCode {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{what}: {e}");
            ExitCode::FAILURE
        }
    }
}
