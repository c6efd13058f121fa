//! `qmpkit schema …`: check, dump, stats, introspect, diff and codegen for QAPI schemas.

use clap::{Parser, Subcommand, ValueEnum};
use qmpkit_schema::{Dialect, QapiError, SchemaSource};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(name = "qmpkit schema", about = "Work with QAPI schemas")]
pub(crate) struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum DialectArg {
    /// QEMU 10.0's language
    Modern,
    /// What QEMU accepted from 1.0 to 2.12
    Legacy,
}

impl From<DialectArg> for Dialect {
    fn from(d: DialectArg) -> Dialect {
        match d {
            DialectArg::Modern => Dialect::Modern,
            DialectArg::Legacy => Dialect::Legacy,
        }
    }
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum DumpFormat {
    /// What QEMU's tests/qapi-schema/test-qapi.py prints
    QemuTest,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LangArg {
    /// Rust, for the qmpkit-qapi runtime crate
    Rust,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum DiffFormat {
    /// Human-readable, grouped, with a summary line
    Text,
    /// One JSON object (see the schema crate's `diff` module)
    Json,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Check a schema; diagnostics on stderr, exit 1 on error
    Check {
        /// Dialect of the source [default: the one the text declares]
        #[arg(long, value_enum)]
        dialect: Option<DialectArg>,
        file: PathBuf,
    },
    /// Print the checked model
    Dump {
        #[arg(long, value_enum, default_value = "qemu-test")]
        format: DumpFormat,
        /// Dialect of the source [default: the one the text declares]
        #[arg(long, value_enum)]
        dialect: Option<DialectArg>,
        file: PathBuf,
    },
    /// Count commands, events, types and includes
    Stats {
        /// Dialect of the source [default: the one the text declares]
        #[arg(long, value_enum)]
        dialect: Option<DialectArg>,
        /// Print one JSON object instead of text
        #[arg(long)]
        json: bool,
        file: PathBuf,
    },
    /// Print what query-qmp-schema returns for the schema
    Introspect {
        /// Dialect of the source [default: the one the text declares]
        #[arg(long, value_enum)]
        dialect: Option<DialectArg>,
        /// Enable a configuration symbol (repeatable)
        #[arg(long = "cfg", value_name = "SYMBOL")]
        cfg: Vec<String>,
        /// Read enabled symbols from a file, one per line
        #[arg(long = "cfg-file", value_name = "FILE")]
        cfg_file: Vec<PathBuf>,
        /// Use real type names instead of QEMU's masked numbers
        #[arg(long)]
        unmask: bool,
        file: PathBuf,
    },
    /// Generate bindings for the schema (Rust: types, commands, events, a server trait)
    ///
    /// FILE is schema source in either dialect or a query-qmp-schema answer. `if`
    /// conditions are evaluated against the --cfg symbols.
    Codegen {
        #[arg(long, value_enum, default_value = "rust")]
        lang: LangArg,
        /// Dialect of source input [default: modern, else legacy]
        #[arg(long, value_enum)]
        dialect: Option<DialectArg>,
        /// Enable a configuration symbol (repeatable)
        #[arg(long = "cfg", value_name = "SYMBOL")]
        cfg: Vec<String>,
        /// Read enabled symbols from a file, one per line
        #[arg(long = "cfg-file", value_name = "FILE")]
        cfg_file: Vec<PathBuf>,
        /// Leave out the server trait (`Commands`, `register_commands`)
        #[arg(long)]
        no_server: bool,
        /// Also generate the synchronous handler trait (`Handlers`, `dispatch`)
        #[arg(long)]
        handlers: bool,
        /// Leave out the schema's doc comments
        #[arg(long)]
        no_docs: bool,
        /// Write to this file instead of standard output
        #[arg(short = 'o', long = "output", value_name = "OUT")]
        output: Option<PathBuf>,
        file: PathBuf,
    },
    /// Show what changed between two schemas
    ///
    /// Each side is schema source or a query-qmp-schema answer (JSON, bare
    /// array or {"return": [...]}, recognised by its content). Each change is
    /// rated for existing clients and for existing server implementations.
    /// Exit status as diff(1): 0 no changes, 1 changes, 2 trouble.
    Diff {
        #[arg(long, value_enum, default_value = "text")]
        format: DiffFormat,
        /// Dialect of source inputs [default: modern, else legacy]
        #[arg(long, value_enum)]
        dialect: Option<DialectArg>,
        /// The old schema (source or introspection answer)
        old: PathBuf,
        /// The new schema (source or introspection answer)
        new: PathBuf,
    },
}

pub fn run(args: Vec<String>) -> ExitCode {
    // One command, then the process ends: memory comes from an arena never given back, and
    // the schema crate's helper thread ends as soon as a check no longer needs it.
    crate::arena::enable();
    qmpkit_schema::helper::one_shot();
    let argv = std::iter::once("qmpkit schema".to_string()).chain(args);
    let cli = match Cli::try_parse_from(argv) {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    match cli.cmd {
        // Check and dump judge by the rules of the dialect the text
        // declares (legacy markers: QEMU 1.x's `type` keyword, QEMU 2.x's
        // whitelist pragmas); the others load any schema as diff does.
        Cmd::Check { dialect, file } => check(&file, dialect.map(Dialect::from)),
        Cmd::Dump {
            format: DumpFormat::QemuTest,
            dialect,
            file,
        } => dump(&file, declared(dialect, &file)),
        Cmd::Stats {
            dialect,
            json,
            file,
        } => stats(&file, dialect.map(Dialect::from), json),
        Cmd::Introspect {
            dialect,
            cfg,
            cfg_file,
            unmask,
            file,
        } => introspect(&file, dialect.map(Dialect::from), cfg, &cfg_file, unmask),
        Cmd::Codegen {
            lang: LangArg::Rust,
            dialect,
            cfg,
            cfg_file,
            no_server,
            handlers,
            no_docs,
            output,
            file,
        } => codegen(
            &file,
            dialect.map(Dialect::from),
            cfg,
            &cfg_file,
            !no_server,
            handlers,
            !no_docs,
            output.as_deref(),
        ),
        Cmd::Diff {
            format,
            dialect,
            old,
            new,
        } => diff(&old, &new, dialect.map(Dialect::from), format),
    }
}

/// `--dialect`, else the dialect the file's text declares.
fn declared(dialect: Option<DialectArg>, file: &Path) -> Dialect {
    dialect.map_or_else(|| Dialect::declared_by_file(file), Dialect::from)
}

/// Schema source in `dialect` (when not given: as `schema diff` reads it,
/// the declared dialect, else modern, else legacy), or a
/// `query-qmp-schema` answer (a JSON array, or an object with `return`,
/// recognised by its content).
fn load_any(
    file: &Path,
    dialect: Option<Dialect>,
) -> Result<(qmpkit_schema::Schema, SchemaSource), ExitCode> {
    qmpkit_schema::load_any(file, dialect).map_err(|e| {
        report(&e);
        ExitCode::FAILURE
    })
}

fn check(file: &Path, dialect: Option<Dialect>) -> ExitCode {
    // Checking needs no doc comment text.
    match qmpkit_schema::check_declared(file, dialect) {
        Ok((schema, _)) => {
            // The process ends here: taking the model apart is work nobody needs.
            std::mem::forget(schema);
            ExitCode::SUCCESS
        }
        Err(e) => {
            report(&e);
            ExitCode::FAILURE
        }
    }
}

fn dump(file: &Path, dialect: Dialect) -> ExitCode {
    let r = qmpkit_schema::dump::run_qemu_test(file, dialect);
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(r.stdout.as_bytes());
    let _ = out.flush();
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(r.stderr.as_bytes());
    if r.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn stats(file: &Path, dialect: Option<Dialect>, json: bool) -> ExitCode {
    let (schema, source) = match load_any(file, dialect) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let s = match source {
        SchemaSource::Source(_) => qmpkit_schema::stats::SchemaStats::of(&schema),
        SchemaSource::Introspection => answer_stats(&schema),
    };
    if json {
        match serde_json::to_string(&s) {
            Ok(t) => write_out(&format!("{t}\n")),
            Err(e) => {
                eprintln!("qmpkit schema stats: {e}");
                ExitCode::FAILURE
            }
        }
    } else {
        write_out(&s.to_text())
    }
}

/// Write `text` to stdout; a reader that went away (a closed pipe) ends
/// the command with status 1, never a panic.
fn write_out(text: &str) -> ExitCode {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::FAILURE,
    }
}

/// Counts for a model loaded from a `query-qmp-schema` answer: every
/// entity the server listed (no files, no includes; an answer does not say
/// which object types were implicit, so argument types count as structs).
fn answer_stats(schema: &qmpkit_schema::Schema) -> qmpkit_schema::stats::SchemaStats {
    use qmpkit_schema::model::EntityKind;
    let mut s = qmpkit_schema::stats::SchemaStats::default();
    for e in &schema.entities {
        // Predefined types and the loader's hidden helpers are implicit.
        if e.implicit || qmpkit_schema::model::from_introspection::is_hidden(e) {
            continue;
        }
        match &e.kind {
            EntityKind::Command(_) => s.commands += 1,
            EntityKind::Event(_) => s.events += 1,
            EntityKind::Enum(_) => s.enums += 1,
            EntityKind::Alternate(_) => s.alternates += 1,
            EntityKind::Object(o) if o.branches.is_some() => s.unions += 1,
            EntityKind::Object(_) => s.structs += 1,
            EntityKind::Array(_) | EntityKind::Builtin(_) | EntityKind::Include(_) => {}
        }
    }
    s
}

fn introspect(
    file: &Path,
    dialect: Option<Dialect>,
    mut cfg: Vec<String>,
    cfg_files: &[PathBuf],
    unmask: bool,
) -> ExitCode {
    for f in cfg_files {
        match std::fs::read_to_string(f) {
            Ok(text) => cfg.extend(qmpkit_schema::introspect::parse_cfg_file(&text)),
            Err(e) => {
                eprintln!(
                    "qmpkit schema introspect: can't read '{}': {e}",
                    f.display()
                );
                return ExitCode::FAILURE;
            }
        }
    }
    let (schema, source) = match load_any(file, dialect) {
        Ok(s) => s,
        Err(code) => return code,
    };
    // An answer's type names are already as its server sent them (masked or
    // not): they are repeated, never masked again.
    let opts = qmpkit_schema::introspect::Options {
        enabled: cfg.into_iter().collect(),
        unmask: unmask || source == SchemaSource::Introspection,
    };
    let infos = qmpkit_schema::introspect::introspect(&schema, &opts);
    match qmpkit_schema::introspect::to_json_text(&infos) {
        Ok(t) => write_out(&format!("{t}\n")),
        Err(e) => {
            eprintln!("qmpkit schema introspect: {e}");
            ExitCode::FAILURE
        }
    }
}

fn codegen(
    file: &Path,
    dialect: Option<Dialect>,
    mut cfg: Vec<String>,
    cfg_files: &[PathBuf],
    server: bool,
    handlers: bool,
    docs: bool,
    output: Option<&Path>,
) -> ExitCode {
    for f in cfg_files {
        match std::fs::read_to_string(f) {
            Ok(text) => cfg.extend(qmpkit_schema::introspect::parse_cfg_file(&text)),
            Err(e) => {
                eprintln!("qmpkit schema codegen: can't read '{}': {e}", f.display());
                return ExitCode::FAILURE;
            }
        }
    }
    let schema = match qmpkit_schema::load_any(file, dialect) {
        Ok((s, _)) => s,
        Err(e) => {
            report(&e);
            return ExitCode::FAILURE;
        }
    };
    let opts = qmpkit_codegen::Options {
        cfg: cfg.into_iter().collect(),
        server,
        handlers,
        docs,
        source_name: file.file_name().map(|n| n.to_string_lossy().into_owned()),
    };
    let code = qmpkit_codegen::generate(&schema, &opts);
    match output {
        Some(out) => match std::fs::write(out, code) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!(
                    "qmpkit schema codegen: can't write '{}': {e}",
                    out.display()
                );
                ExitCode::FAILURE
            }
        },
        None => crate::to_stdout(&code, "qmpkit schema codegen"),
    }
}

/// `schema diff`: exit status as diff(1)'s: 0 same, 1 different, 2 trouble.
fn diff(old: &Path, new: &Path, dialect: Option<Dialect>, format: DiffFormat) -> ExitCode {
    let load = |p: &Path| {
        qmpkit_schema::load_any(p, dialect).map_err(|e| {
            report(&e);
            ExitCode::from(2)
        })
    };
    let (a, b) = match (load(old), load(new)) {
        (Ok((a, _)), Ok((b, _))) => (a, b),
        (Err(code), _) | (_, Err(code)) => return code,
    };
    let d = qmpkit_schema::diff::diff(&a, &b);
    let (ol, nl) = (old.display().to_string(), new.display().to_string());
    let text = match format {
        DiffFormat::Text => d.to_text(&ol, &nl),
        DiffFormat::Json => match serde_json::to_string_pretty(&d.to_json(&ol, &nl)) {
            Ok(t) => t + "\n",
            Err(e) => {
                eprintln!("qmpkit schema diff: {e}");
                return ExitCode::from(2);
            }
        },
    };
    let mut out = std::io::stdout().lock();
    if out
        .write_all(text.as_bytes())
        .and_then(|_| out.flush())
        .is_err()
    {
        return ExitCode::from(2);
    }
    if d.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Print a diagnostic once: QEMU's text (include chain, definition context,
/// `file:line[:col]: message`), then, when stderr is a terminal (or
/// `QMPKIT_COLOR=always`, for tests), the source line with a caret under
/// the spot: the offending member where the front end knows it, else the
/// column of a syntax error, else the definition.
fn report(e: &QapiError) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{}", e.full());
    let terminal = match std::env::var("QMPKIT_COLOR").as_deref() {
        Ok("always") => true,
        Ok("never") => false,
        _ => std::io::stderr().is_terminal(),
    };
    if terminal {
        if let Some(s) = snippet(e) {
            let _ = write!(err, "{s}");
        }
    }
}

/// Byte offset range within `line` that QEMU's column `col` points at
/// (tabs advance to the next multiple of 8).
fn col_to_range(line: &str, col: u32) -> std::ops::Range<usize> {
    let mut c = 1u32;
    for (i, ch) in line.char_indices() {
        if c >= col {
            return i..i + ch.len_utf8();
        }
        c = if ch == '\t' {
            c.div_ceil(8) * 8 + 1
        } else {
            c + 1
        };
    }
    line.len()..line.len()
}

/// The source line of the error and a caret line under its spot, without
/// repeating the message:
///
/// ```text
///   --> file.json:3:15
///    |
///  3 |   'data': { 'Bad': 'int' } }
///    |             ^^^^^
/// ```
fn snippet(e: &QapiError) -> Option<String> {
    let info = e.info.as_ref()?;
    if info.line == 0 {
        return None;
    }
    let src = std::fs::read_to_string(&info.file.name).ok()?;
    // The member's own line and byte range when the front end knows it.
    let (line_no, range) = match info.spot.map(|o| o as usize).filter(|o| *o <= src.len()) {
        Some(off) if e.col.is_none() && src.is_char_boundary(off) => {
            let line_start = src[..off].rfind('\n').map_or(0, |i| i + 1);
            let line_no = src[..off].matches('\n').count() + 1;
            let line = src[line_start..].lines().next().unwrap_or("");
            let rel = off - line_start;
            // From the opening quote to the closing one.
            let start = if rel > 0 && matches!(line.as_bytes()[rel - 1], b'\'' | b'"') {
                rel - 1
            } else {
                rel
            };
            let q = line.as_bytes().get(start).copied();
            let end = match q {
                Some(q @ (b'\'' | b'"')) => line[start + 1..]
                    .bytes()
                    .position(|b| b == q)
                    .map_or(line.len(), |p| start + 1 + p + 1),
                _ => line[start..]
                    .find(|c: char| !(c.is_alphanumeric() || "-_*.".contains(c)))
                    .map_or(line.len(), |p| start + p),
            };
            (
                line_no,
                start..end.max(start + 1).min(line.len().max(start + 1)),
            )
        }
        _ => {
            let line_no = info.line as usize;
            let line = src.lines().nth(line_no - 1)?;
            let range = match e.col {
                Some(c) => col_to_range(line, c),
                None => {
                    let start = line.len() - line.trim_start().len();
                    start..line.len().max(start + 1)
                }
            };
            (line_no, range)
        }
    };
    let line = src.lines().nth(line_no - 1)?;
    let col = line[..range.start.min(line.len())].chars().count() + 1;
    let width = line_no.to_string().len();
    let pad = " ".repeat(width);
    // Tabs kept as tabs under the source, so the caret lines up.
    let lead: String = line[..range.start.min(line.len())]
        .chars()
        .map(|c| if c == '\t' { '\t' } else { ' ' })
        .collect();
    let carets = "^".repeat(
        line[range.start.min(line.len())..range.end.min(line.len())]
            .chars()
            .count()
            .max(1),
    );
    Some(format!(
        "{pad}--> {}:{line_no}:{col}\n{pad} |\n{line_no} | {line}\n{pad} | {lead}{carets}\n",
        info.file.name
    ))
}

#[cfg(test)]
mod tests {
    use super::col_to_range;

    #[test]
    fn columns_with_tabs() {
        assert_eq!(col_to_range("abc", 1), 0..1);
        assert_eq!(col_to_range("abc", 3), 2..3);
        assert_eq!(col_to_range("\tx", 9), 1..2);
        assert_eq!(col_to_range("ab", 7), 2..2);
    }
}
