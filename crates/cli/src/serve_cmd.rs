//! `qmpkit serve …`: a simulated machine (or a fleet of them) behind QMP
//! monitors. Options are parsed in `serve/opts.rs`; serving is in
//! `serve/run.rs`.

use std::process::ExitCode;
use std::sync::Arc;

#[path = "serve/opts.rs"]
mod opts;
#[path = "serve/run.rs"]
mod run;
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
        println!("{}", opts::HELP);
        return ExitCode::SUCCESS;
    }
    if o.print_config {
        print!("{}", o.config.to_toml());
        return ExitCode::SUCCESS;
    }
    let mut o = o;
    let schema = match load_schema(&mut o) {
        Ok(mut s) => {
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
    if let Err(e) = o.config.validate() {
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

/// The embedded schema, or `--schema`: source text in `--dialect`, or a
/// server's `query-qmp-schema` answer (recognised by its content).
fn load_schema(o: &mut opts::ServeOptions) -> Result<qmpkit_schema::Schema, ExitCode> {
    let r = match &o.schema {
        Some(p) => qmpkit_schema::load_any(p, o.dialect).map(|(s, src)| {
            // An answer's names are already as its server sent them (masked
            // or not): introspection repeats them rather than masking anew.
            o.from_introspection = src == qmpkit_schema::SchemaSource::Introspection;
            s
        }),
        None => qmpkit_machine::embedded::load_schema(),
    };
    r.map_err(|e| {
        eprintln!("{}", e.full());
        if let Some(p) = &o.schema {
            eprintln!("qmpkit serve: can't load schema '{}'", p.display());
        }
        ExitCode::FAILURE
    })
}

/// Every command the server offers and how it is answered: `handler`
/// (the machine implements it), `builtin` (the protocol's own answers) or
/// `synthesized` (a value made from the return type).
fn list_handlers(
    o: &opts::ServeOptions,
    schema: &Arc<qmpkit_schema::Schema>,
    enabled: Vec<String>,
) -> ExitCode {
    use qmpkit_server::{Served, Server, ServerOptions};
    let machine = qmpkit_machine::Machine::new(Arc::new(o.config.clone()), schema.clone());
    let handle = qmpkit_machine::glue::MachineHandle::new(machine);
    let implemented = qmpkit_machine::handled();
    let mut reg = qmpkit_server::Registry::new();
    handle.register_with(&mut reg, schema, o.strict, o.test_control);
    let sopts = ServerOptions {
        qemu_version: o.config.qemu_version,
        package: o.config.package.clone(),
        strict: o.strict,
        introspection: qmpkit_schema::introspect::Options {
            enabled: enabled.into_iter().collect(),
            unmask: o.from_introspection,
        },
        ..ServerOptions::default()
    };
    let server = Server::new(schema.clone(), reg, sopts);
    let (mut handled, mut synthesized) = (0, 0);
    let rows = server.commands();
    for (name, how) in &rows {
        // The glue answers unimplemented commands itself (so that injected
        // failures reach them) with the synthesised value.
        let how = match how {
            Served::Builtin => "builtin",
            _ if implemented.binary_search(&name.as_str()).is_ok() => {
                handled += 1;
                "handler"
            }
            _ => {
                synthesized += 1;
                "synthesized"
            }
        };
        println!("{name}\t{how}");
    }
    eprintln!(
        "{} commands: {handled} with a handler, {synthesized} synthesized from their return type{}",
        rows.len(),
        if o.strict {
            " (--strict: the schema's other commands answer CommandNotFound)"
        } else {
            ""
        }
    );
    ExitCode::SUCCESS
}
