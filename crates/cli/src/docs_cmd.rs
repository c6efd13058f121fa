//! `qmpkit completions SHELL` and `qmpkit man [COMMAND]`: shell completion scripts and man
//! pages for the whole binary, generated from one description of its command line.
//!
//! Commands parsed with clap contribute their own `clap::Command`; `serve`, which takes
//! QEMU's single-dash options, is described here by hand (its long options and a free list
//! of QEMU options).

use clap::{Arg, ArgAction, Command, ValueHint};
use clap_complete::Shell;
use std::io::Write;
use std::process::ExitCode;

fn serve_command() -> Command {
    let file = |name: &'static str, help: &'static str| {
        Arg::new(name)
            .long(name)
            .value_name("FILE")
            .value_hint(ValueHint::FilePath)
            .help(help)
    };
    let flag = |name: &'static str, help: &'static str| {
        Arg::new(name)
            .long(name)
            .action(ArgAction::SetTrue)
            .help(help)
    };
    Command::new("serve")
        .about("Run a simulated machine (or a fleet) behind a QMP monitor")
        .arg(file(
            "schema",
            "Serve this QAPI schema (source or a query-qmp-schema answer)",
        ))
        .arg(
            Arg::new("dialect")
                .long("dialect")
                .value_parser(["modern", "legacy"])
                .help("Language of --schema"),
        )
        .arg(
            Arg::new("cfg")
                .long("cfg")
                .value_name("SYMBOL")
                .action(ArgAction::Append)
                .help("Enable a build configuration symbol"),
        )
        .arg(file(
            "cfg-file",
            "Configuration symbols from a file, one per line",
        ))
        .arg(
            Arg::new("qemu-version")
                .long("qemu-version")
                .value_name("X.Y.Z")
                .help("Version reported by the greeting and query-version"),
        )
        .arg(
            Arg::new("package")
                .long("package")
                .value_name("STR")
                .help("Package string reported"),
        )
        .arg(flag(
            "strict",
            "Commands the machine does not implement are left out (CommandNotFound)",
        ))
        .arg(flag(
            "synthesize",
            "Commands the machine does not implement answer a value made up from their return type",
        ))
        .arg(flag(
            "list-handlers",
            "List the served commands and how each is answered",
        ))
        .arg(
            Arg::new("machines")
                .long("machines")
                .value_name("N")
                .help("Serve N independent machines"),
        )
        .arg(file("config", "TOML machine file"))
        .arg(flag(
            "print-config",
            "Print the machine's configuration as TOML and exit",
        ))
        .arg(
            Arg::new("qmp")
                .long("qmp")
                .value_name("SPEC")
                .help("unix:PATH[,server=on,wait=off] | tcp:HOST:PORT | stdio, like QEMU's -qmp"),
        )
        .arg(flag(
            "allow-remote-tcp",
            "Allow listening on a non-loopback TCP address",
        ))
        .arg(flag(
            "test-control",
            "Offer the __org.qmpkit_ test-control commands",
        ))
        .arg(
            Arg::new("qemu-options")
                .value_name("QEMU OPTIONS")
                .num_args(0..)
                .trailing_var_arg(true)
                .allow_hyphen_values(true)
                .help(
                    "QEMU options: -qmp, -chardev, -mon, -S, -name, -m, -smp, -drive, -device, …",
                ),
        )
}

/// `qmpkit` and every subcommand, as clap sees them.
pub(crate) fn binary() -> Command {
    use clap::CommandFactory;
    Command::new("qmpkit")
        .version(env!("CARGO_PKG_VERSION"))
        .about("QEMU's machine protocol (QMP) and schema language (QAPI): tools")
        .subcommand_required(true)
        .subcommand(
            crate::schema_cmd::Cli::command()
                .name("schema")
                .about("Work with QAPI schemas: check, dump, stats, introspect, diff"),
        )
        .subcommand(serve_command())
        .subcommand(crate::qmp_cmd::command().about("Run QMP commands for scripts"))
        .subcommand(crate::shell::command().about("Interactive QMP shell"))
        .subcommand(
            crate::replay_cmd::command().about("Serve a recorded QMP session back, strictly"),
        )
        .subcommand(crate::proxy::command().about("Share one QMP monitor between many clients"))
        .subcommand(
            Command::new("completions")
                .about("Print a shell completion script")
                .arg(
                    Arg::new("shell")
                        .required(true)
                        .value_parser(clap::value_parser!(Shell)),
                ),
        )
        .subcommand(
            Command::new("man")
                .about("Print a man page (roff) for qmpkit or one of its commands")
                .arg(Arg::new("command").value_name("COMMAND")),
        )
}

pub fn completions(args: Vec<String>) -> ExitCode {
    let parsed = binary().find_subcommand("completions").cloned().map(|c| {
        c.name("qmpkit completions")
            .try_get_matches_from(std::iter::once("qmpkit completions".to_string()).chain(args))
    });
    let m = match parsed {
        Some(Ok(m)) => m,
        Some(Err(e)) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
        None => return ExitCode::from(2),
    };
    let Some(shell) = m.get_one::<Shell>("shell").copied() else {
        return ExitCode::from(2);
    };
    let mut cmd = binary();
    let mut out = std::io::stdout().lock();
    clap_complete::generate(shell, &mut cmd, "qmpkit", &mut out);
    let _ = out.flush();
    ExitCode::SUCCESS
}

pub fn man(args: Vec<String>) -> ExitCode {
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("usage: qmpkit man [COMMAND]\n\nPrint the man page of qmpkit, or of one of its commands (qmpkit-COMMAND(1)), as roff.");
        return ExitCode::SUCCESS;
    }
    let root = binary();
    let page = match args.as_slice() {
        [] => root,
        [name] => match root.find_subcommand(name) {
            Some(c) => {
                let c = c.clone();
                c.clone()
                    .name(format!("qmpkit-{}", c.get_name()))
                    .bin_name(format!("qmpkit {}", c.get_name()))
            }
            None => {
                eprintln!("qmpkit man: no command '{name}'");
                return ExitCode::from(2);
            }
        },
        _ => {
            eprintln!("usage: qmpkit man [COMMAND]");
            return ExitCode::from(2);
        }
    };
    let mut buf = Vec::new();
    if let Err(e) = clap_mangen::Man::new(page).render(&mut buf) {
        eprintln!("qmpkit man: {e}");
        return ExitCode::from(2);
    }
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(&buf);
    let _ = out.flush();
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_description_is_consistent() {
        super::binary().debug_assert();
    }
}
