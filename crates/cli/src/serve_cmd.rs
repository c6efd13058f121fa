//! `qmpkit serve …`: a simulated machine (or a fleet of them) behind QMP
//! monitors. Options are parsed in `serve/opts.rs`; serving is in
//! `serve/run.rs`.

use std::process::ExitCode;
use std::sync::Arc;

/// `(path, text)` of a file of QEMU 10.0.2's schema directory `qapi/`, embedded.
macro_rules! qapi_file {
    ($name:literal) => {
        (
            concat!("qapi/", $name),
            include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../tests/data/qemu-ref/schema-10.0.2/qapi/",
                $name
            )),
        )
    };
}

#[path = "serve/emulate.rs"]
pub mod emulate;
#[path = "serve/opts.rs"]
mod opts;
#[path = "serve/run.rs"]
mod run;
#[path = "serve/storage_daemon.rs"]
pub mod storage_daemon;
#[path = "serve/version.rs"]
mod version;

pub fn run(args: Vec<String>) -> ExitCode {
    let o = match opts::parse(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("qmpkit serve: {}", one_line(&e));
            return ExitCode::FAILURE;
        }
    };
    if o.help {
        return crate::to_stdout(&format!("{}\n", opts::HELP), "qmpkit serve");
    }
    if o.print_config {
        return crate::to_stdout(&o.config.to_toml(), "qmpkit serve");
    }
    let mut o = o;
    let schema = match load_schema(&mut o) {
        // The machine's own interface, shared with the machine's conversions.
        Ok(Loaded::Own(s)) => s,
        Ok(Loaded::Other(mut s)) => {
            if o.schema.is_some() && o.qemu_version.is_none() {
                // Neither --qemu-version nor the path says: the content does.
                match version::infer(&s) {
                    Some(v) => {
                        eprintln!(
                            "qmpkit serve: note: reporting QEMU {}.{}.{}, inferred from the schema's content (set it with --qemu-version)",
                            v.0, v.1, v.2
                        );
                        o.config.qemu_version = v;
                    }
                    None => {
                        let v = o.config.qemu_version;
                        eprintln!(
                            "qmpkit serve: note: can't tell the schema's QEMU version; reporting {}.{}.{} (set it with --qemu-version)",
                            v.0, v.1, v.2
                        );
                    }
                }
            }
            // Serving needs no doc comments: an idle machine is smaller
            // without them.
            s.docs = Vec::new();
            s.doc_links = Vec::new();
            Arc::new(s)
        }
        Err(code) => return code,
    };
    let mut enabled: Vec<String> = o.cfg.clone();
    for f in &o.cfg_files {
        match std::fs::read_to_string(f) {
            Ok(t) => enabled.extend(qmpkit_schema::introspect::parse_cfg_file(&t)),
            Err(e) => {
                eprintln!("qmpkit serve: --cfg-file {}: {e}", f.display());
                return ExitCode::FAILURE;
            }
        }
    }
    // Checks that need the whole command line (back ends named by devices,
    // in any option order) and the final version (QEMU's wording changed).
    if let Err(e) = o.config.check_fds().and_then(|()| o.config.validate()) {
        eprintln!("qmpkit serve: {}", one_line(&e.0));
        return ExitCode::FAILURE;
    }
    if o.list_handlers {
        return list_handlers(&o, &schema, enabled);
    }
    run::serve(o, schema, enabled)
}

/// An error on one line, whatever its checker wrote.
fn one_line(e: &str) -> String {
    let lines: Vec<&str> = e.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    lines.join("; ")
}

/// Room for the embedded schema's model and a single machine with its
/// server (what does not fit goes to the system's allocator; what is left
/// over is given back once they are built).
const START_ARENA: usize = 1152 << 10;

/// A schema to serve: the machine's own, or another.
enum Loaded {
    Own(Arc<qmpkit_schema::Schema>),
    Other(qmpkit_schema::Schema),
}

/// The embedded schema, or `--schema`: source text in `--dialect`, or a
/// server's `query-qmp-schema` answer (recognised by its content).
fn load_schema(o: &mut opts::ServeOptions) -> Result<Loaded, ExitCode> {
    let r = match &o.schema {
        Some(p) => qmpkit_schema::load_any(p, o.dialect).map(|(s, src)| {
            // An answer's names are already as its server sent them (masked
            // or not): introspection repeats them rather than masking anew.
            o.from_introspection = src == qmpkit_schema::SchemaSource::Introspection;
            Loaded::Other(s)
        }),
        // Checked when the binary was built and compiled into it as static
        // data: borrowed, neither parsed nor built, once for the server and
        // the machine's conversions alike. A single machine and its server
        // are built in memory that is kept for good (see `arena`; `run`
        // pauses the arena once they are); a fleet's machines are not.
        None => {
            crate::arena::enable_prefaulted(START_ARENA);
            let s = qmpkit_machine::embedded::shared();
            if o.machines > 1 {
                crate::arena::pause();
            }
            s.map(Loaded::Own)
        }
    };
    r.map_err(|e| {
        eprintln!("qmpkit serve: {}", schema_error_line(&e));
        ExitCode::FAILURE
    })
}

/// A schema error on one line: where (`file:line[:col]`, without QEMU's
/// include chain and definition lines) and what, then the note if any.
fn schema_error_line(e: &qmpkit_schema::QapiError) -> String {
    let mut s = match &e.info {
        Some(info) => match e.col {
            Some(c) => format!("{}:{c}: {}", info.loc(), e.msg),
            None => format!("{}: {}", info.loc(), e.msg),
        },
        None => e.msg.clone(),
    };
    let s1 = one_line(&s);
    s = s1;
    if let Some(h) = &e.hint {
        s.push_str(" (");
        s.push_str(h);
        s.push(')');
    }
    s
}

/// How the served commands are answered: one row per command the server
/// offers (`handler`: the machine implements it; `builtin`: the protocol's
/// own answer; `unimplemented`: a GenericError saying so; `synthesized`: a
/// value made up from the return type, with `--synthesize`), and how many
/// commands of the schema `--strict` left out.
pub struct Census {
    /// Sorted by name; empty for [`Census::counts`].
    pub rows: Vec<(String, &'static str)>,
    pub total: usize,
    pub handled: usize,
    pub builtin: usize,
    pub unimplemented: usize,
    pub left_out: usize,
}

impl Census {
    pub fn of(
        server: &qmpkit_server::Server,
        schema: &qmpkit_schema::Schema,
        enabled: &std::collections::HashSet<String>,
    ) -> Census {
        let mut c = Census::tally(server, schema, enabled, true);
        c.rows.sort_unstable();
        c
    }

    /// The counts alone, without the rows (what [`Census::summary`] says).
    pub fn counts(
        server: &qmpkit_server::Server,
        schema: &qmpkit_schema::Schema,
        enabled: &std::collections::HashSet<String>,
    ) -> Census {
        Census::tally(server, schema, enabled, false)
    }

    fn tally(
        server: &qmpkit_server::Server,
        schema: &qmpkit_schema::Schema,
        enabled: &std::collections::HashSet<String>,
        rows: bool,
    ) -> Census {
        use qmpkit_server::Served;
        let mut c = Census {
            rows: Vec::new(),
            total: 0,
            handled: 0,
            builtin: 0,
            unimplemented: 0,
            left_out: 0,
        };
        let synthesize = server.options().unhandled == qmpkit_server::Unhandled::Synthesize;
        for (name, how) in server.command_kinds() {
            // The glue registers a handler for every command (so that
            // injected failures reach them all): what the machine
            // implements tells them apart.
            let how = match how {
                Served::Builtin => {
                    c.builtin += 1;
                    "builtin"
                }
                _ if qmpkit_machine::implements(name) => {
                    c.handled += 1;
                    "handler"
                }
                _ => {
                    c.unimplemented += 1;
                    if synthesize {
                        "synthesized"
                    } else {
                        "unimplemented"
                    }
                }
            };
            c.total += 1;
            if rows {
                c.rows.push((name.to_string(), how));
            }
        }
        // Only `--strict` leaves unimplemented commands out (another target's commands are
        // left out whatever the mode, as QEMU's x86 build lacks them: not counted here).
        if server.options().unhandled == qmpkit_server::Unhandled::NotFound {
            let on = |s: &str| enabled.contains(s);
            c.left_out = schema
                .iter()
                .filter(|(_, e)| {
                    matches!(e.kind, qmpkit_schema::model::EntityKind::Command(_))
                        && e.ifcond.eval(&on)
                        && !server.serves(&e.name)
                        && !qmpkit_machine::OTHER_TARGETS.contains(&e.name.as_str())
                })
                .count();
        }
        c
    }

    /// One line for stderr: how many commands are served and how.
    pub fn summary(&self, unhandled: qmpkit_server::Unhandled) -> String {
        use qmpkit_server::Unhandled;
        let total = self.total;
        let head = format!(
            "{total} commands: {} implemented by the machine, {} built into the protocol",
            self.handled, self.builtin
        );
        match unhandled {
            Unhandled::NotImplemented => format!(
                "{head}, {} not implemented (they answer GenericError; --list-handlers lists them)",
                self.unimplemented
            ),
            Unhandled::Synthesize => format!(
                "{head}, {} not implemented and synthesized (--synthesize: they answer a value made up from their return type, without doing anything)",
                self.unimplemented
            ),
            Unhandled::NotFound => format!(
                "{head}; {} more of the schema not implemented and left out (--strict: they answer CommandNotFound)",
                self.left_out
            ),
        }
    }
}

/// Every command the server offers and how it is answered (see [`Census`]).
fn list_handlers(
    o: &opts::ServeOptions,
    schema: &Arc<qmpkit_schema::Schema>,
    enabled: Vec<String>,
) -> ExitCode {
    use qmpkit_server::{Server, ServerOptions};
    let machine = qmpkit_machine::Machine::new(Arc::new(o.config.clone()), schema.clone());
    let handle = qmpkit_machine_server::MachineHandle::new(machine);
    let mut reg = qmpkit_server::Registry::new();
    handle.register_with(&mut reg, schema, o.unhandled(), o.test_control);
    let sopts = ServerOptions {
        qemu_version: o.config.qemu_version,
        package: o.config.package.clone(),
        unhandled: o.unhandled(),
        introspection: qmpkit_schema::introspect::Options {
            enabled: enabled.into_iter().collect(),
            unmask: o.from_introspection,
        },
        ..ServerOptions::default()
    };
    let server = Server::new(schema.clone(), reg, sopts);
    let census = Census::of(&server, schema, &server.options().introspection.enabled);
    let rows: String = census
        .rows
        .iter()
        .map(|(name, how)| format!("{name}\t{how}\n"))
        .collect();
    let status = crate::to_stdout(&rows, "qmpkit serve");
    eprintln!("{}", census.summary(o.unhandled()));
    status
}
