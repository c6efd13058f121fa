//! The model dump in the format of QEMU's schema test harness
//! (`tests/qapi-schema/test-qapi.py`): modules with their entities, then
//! the doc comments.

use crate::model::{EntityKind, Feature, IfCond, Schema, Variant};
use std::fmt::Write;

fn print_if(out: &mut String, ifcond: &IfCond, indent: usize) {
    if ifcond.is_present() {
        let _ = writeln!(out, "{:indent$}if {}", "", ifcond.to_qemu_repr());
    }
}

fn print_features(out: &mut String, features: &[Feature], indent: usize) {
    for f in features {
        let _ = writeln!(out, "{:indent$}feature {}", "", f.name);
        print_if(out, &f.ifcond, indent + 4);
    }
}

fn print_variants(out: &mut String, schema: &Schema, tag: &str, variants: &[Variant]) {
    let _ = writeln!(out, "    tag {tag}");
    for v in variants {
        let tname = type_name(schema, v.typ, &v.type_name);
        let _ = writeln!(out, "    case {}: {}", v.name, tname);
        print_if(out, &v.ifcond, 8);
    }
}

fn type_name<'a>(schema: &'a Schema, id: usize, fallback: &'a str) -> &'a str {
    if id < schema.entities.len() {
        &schema.entities[id].name
    } else {
        fallback
    }
}

/// The entity part of the dump (what the harness prints while visiting).
pub fn dump_entities(schema: &Schema, out: &mut String) {
    for module in &schema.modules {
        let _ = writeln!(out, "module {}", module.name);
        for &id in &module.entities {
            let e = &schema.entities[id];
            match &e.kind {
                EntityKind::Include(inc) => {
                    let _ = writeln!(out, "include {}", schema.modules[inc.module].name);
                }
                EntityKind::Builtin(_) => {}
                EntityKind::Enum(en) => {
                    let _ = writeln!(out, "enum {}", e.name);
                    if let Some(p) = &en.prefix {
                        let _ = writeln!(out, "    prefix {p}");
                    }
                    for m in &en.members {
                        let _ = writeln!(out, "    member {}", m.name);
                        print_if(out, &m.ifcond, 8);
                        print_features(out, &m.features, 8);
                    }
                    print_if(out, &e.ifcond, 4);
                    print_features(out, &e.features, 4);
                }
                EntityKind::Array(a) => {
                    if e.info.is_none() {
                        continue; // built-in arrays are not shown
                    }
                    let _ = writeln!(
                        out,
                        "array {} {}",
                        e.name,
                        type_name(schema, a.element, &a.element_name)
                    );
                    print_if(out, schema.ifcond(id), 4);
                }
                EntityKind::Object(o) => {
                    let _ = writeln!(out, "object {}", e.name);
                    if let Some(b) = o.base {
                        let _ = writeln!(out, "    base {}", schema.entities[b].name);
                    }
                    for m in &o.local_members {
                        let _ = writeln!(
                            out,
                            "    member {}: {} optional={}",
                            m.name,
                            type_name(schema, m.typ, &m.type_name),
                            if m.optional { "True" } else { "False" }
                        );
                        print_if(out, &m.ifcond, 8);
                        print_features(out, &m.features, 8);
                    }
                    if let Some(b) = &o.branches {
                        let tag = match b.tag_member {
                            Some(r) => schema.member(r).name.as_str(),
                            None => b.tag_name.as_str(),
                        };
                        print_variants(out, schema, tag, &b.variants);
                    }
                    print_if(out, &e.ifcond, 4);
                    print_features(out, &e.features, 4);
                }
                EntityKind::Alternate(a) => {
                    let _ = writeln!(out, "alternate {}", e.name);
                    print_variants(out, schema, "type", &a.variants);
                    print_if(out, &e.ifcond, 4);
                    print_features(out, &e.features, 4);
                }
                EntityKind::Command(c) => {
                    let arg = c
                        .arg_type
                        .map_or("None", |t| schema.entities[t].name.as_str());
                    let ret = c
                        .ret_type
                        .map_or("None", |t| schema.entities[t].name.as_str());
                    let _ = writeln!(out, "command {} {} -> {}", e.name, arg, ret);
                    let py = |b: bool| if b { "True" } else { "False" };
                    let _ = writeln!(
                        out,
                        "    gen={} success_response={} boxed={} oob={} preconfig={}{}",
                        py(c.gen),
                        py(c.success_response),
                        py(c.boxed),
                        py(c.allow_oob),
                        py(c.allow_preconfig),
                        if c.coroutine { " coroutine=True" } else { "" }
                    );
                    print_if(out, &e.ifcond, 4);
                    print_features(out, &e.features, 4);
                }
                EntityKind::Event(ev) => {
                    let arg = ev
                        .arg_type
                        .map_or("None", |t| schema.entities[t].name.as_str());
                    let _ = writeln!(out, "event {} {}", e.name, arg);
                    let _ = writeln!(out, "    boxed={}", if ev.boxed { "True" } else { "False" });
                    print_if(out, &e.ifcond, 4);
                    print_features(out, &e.features, 4);
                }
            }
        }
    }
}

/// The whole `.out` text: entities, then doc comments.
pub fn dump_qemu_test(schema: &Schema) -> String {
    let mut out = String::with_capacity(64 * 1024);
    dump_entities(schema, &mut out);
    dump_docs(schema, &mut out);
    out
}

/// The doc comment part.
pub fn dump_docs(schema: &Schema, out: &mut String) {
    for (i, doc) in schema.docs.iter().enumerate() {
        match &doc.symbol {
            Some(sym) => {
                let _ = writeln!(out, "doc symbol={sym}");
            }
            None => out.push_str("doc freeform\n"),
        }
        let _ = writeln!(out, "    body=\n{}", doc.body.text);
        for a in &doc.args {
            let _ = writeln!(
                out,
                "    arg={}\n{}",
                a.name.as_deref().unwrap_or(""),
                a.text
            );
        }
        if let Some(links) = schema.doc_links.get(i) {
            for stub in &links.stub_args {
                let _ = writeln!(out, "    arg={stub}\n");
            }
        }
        for f in &doc.features {
            let _ = writeln!(
                out,
                "    feature={}\n{}",
                f.name.as_deref().unwrap_or(""),
                f.text
            );
        }
        for s in &doc.sections {
            let _ = writeln!(out, "    section={}\n{}", s.kind, s.text);
        }
    }
}

/// What the test harness produces for one schema file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QemuTestOutput {
    /// The `.out` text.
    pub stdout: String,
    /// The `.err` text (empty on success).
    pub stderr: String,
    /// False when the schema has an error.
    pub ok: bool,
}

/// Run QEMU's schema test harness logic on `path`: dump the model, or on
/// error give the error text with the file's directory prefix removed
/// (the harness's way of making the text independent of where it runs).
pub fn run_qemu_test(path: &std::path::Path, dialect: crate::Dialect) -> QemuTestOutput {
    run_qemu_test_from(&path.to_string_lossy(), dialect, &crate::FsProvider)
}

/// [`run_qemu_test`] with files from any provider.
pub fn run_qemu_test_from(
    path: &str,
    dialect: crate::Dialect,
    provider: &dyn crate::SourceProvider,
) -> QemuTestOutput {
    match crate::load_from(path, dialect, provider) {
        Ok(schema) => QemuTestOutput {
            stdout: dump_qemu_test(&schema),
            stderr: String::new(),
            ok: true,
        },
        Err(e) => {
            let mut text = format!("{e}\n");
            if let Some(i) = path.rfind('/') {
                let dir = &path[..i];
                let dir = if dir.is_empty() { "/" } else { dir };
                let prefix = if dir.ends_with('/') {
                    dir.to_string()
                } else {
                    format!("{dir}/")
                };
                text = text.replace(&prefix, "");
            }
            QemuTestOutput {
                stdout: String::new(),
                stderr: text,
                ok: false,
            }
        }
    }
}
