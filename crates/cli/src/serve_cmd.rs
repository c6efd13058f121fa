//! `qmpkit serve …`: a simulated machine (or a fleet of them) behind QMP
//! monitors. Options are parsed in `serve/opts.rs`; serving is in
//! `serve/run.rs`.

use std::process::ExitCode;
use std::sync::Arc;

#[path = "serve/opts.rs"]
mod opts;
#[path = "serve/run.rs"]
mod run;

pub fn run(args: Vec<String>) -> ExitCode {
    let o = match opts::parse(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("qmpkit serve: {e}");
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
    let schema = match load_schema(&o) {
        Ok(mut s) => {
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
    if o.list_handlers {
        return list_handlers(&schema, o.strict);
    }
    run::serve(o, schema, enabled)
}

fn load_schema(o: &opts::ServeOptions) -> Result<qmpkit_schema::Schema, ExitCode> {
    let r = match &o.schema {
        Some(p) => qmpkit_schema::load(p, o.dialect),
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

/// Every command of the schema and how it is answered.
fn list_handlers(schema: &qmpkit_schema::Schema, strict: bool) -> ExitCode {
    use qmpkit_schema::model::EntityKind;
    let implemented = qmpkit_machine::handled();
    let mut rows: Vec<(String, &str)> = schema
        .iter()
        .filter(|(_, e)| matches!(e.kind, EntityKind::Command(_)))
        .map(|(_, e)| {
            let how = if qmpkit_machine::glue::SERVER_BUILTINS.contains(&e.name.as_str()) {
                "builtin"
            } else if implemented.binary_search(&e.name.as_str()).is_ok() {
                "handler"
            } else if strict {
                "not-found"
            } else {
                "synthesized"
            };
            (e.name.clone(), how)
        })
        .collect();
    rows.sort();
    let handled = rows.iter().filter(|r| r.1 == "handler").count();
    for (name, how) in &rows {
        println!("{name}\t{how}");
    }
    eprintln!(
        "{} commands: {} with a handler, {} {}",
        rows.len(),
        handled,
        rows.iter()
            .filter(|r| r.1 == "synthesized" || r.1 == "not-found")
            .count(),
        if strict {
            "answering CommandNotFound"
        } else {
            "synthesized from their return type"
        }
    );
    ExitCode::SUCCESS
}
