//! Front-end rules beyond the sampled QEMU cases: exact messages for
//! syntax, doc comment and expression errors, and the normalised form the
//! model is built from.

use qmpkit_schema::ast::*;
use qmpkit_schema::{parse_schema, Dialect, MemoryProvider};

fn parse(text: &str) -> Result<ParsedSchema, String> {
    parse_schema(
        "s.json",
        Dialect::Modern,
        &MemoryProvider::from_files([("s.json", text)]),
    )
    .map_err(|e| e.to_string())
}

fn err(text: &str) -> String {
    match parse(text) {
        Ok(_) => "OK".to_string(),
        Err(e) => e,
    }
}

#[test]
fn syntax_errors() {
    assert_eq!(
        err("{ 'text': 'lorem ipsum }"),
        "s.json:1:11: missing terminating \"'\""
    );
    assert_eq!(
        err("{ 'a': '\u{1f}' }"),
        "s.json:1:8: funny character in string"
    );
    assert_eq!(err("{ 'command': 'foo' } \\"), "s.json:1:22: stray '\\'");
    assert_eq!(err("{ 'enum' 'Status' }"), "s.json:1:10: expected ':'");
    assert_eq!(
        err("{ 'a': 'b' 'c': 'd' }"),
        "s.json:1:12: expected ',' or '}'"
    );
    assert_eq!(
        err("{ 'a': [ 'b' 'c' ] }"),
        "s.json:1:14: expected ',' or ']'"
    );
    assert_eq!(
        err("{ 'a': ## doc\n 'b' }"),
        "s.json:1:8: expected '{', '[', string, or boolean"
    );
    assert_eq!(err("{ 'a': truex }"), "s.json:1:8: stray 'truex'");
    assert_eq!(err("{ 'a\\\\b': 'c' }"), "s.json:1: expression must have exactly one key 'enum', 'struct', 'union', 'alternate', 'command', 'event'");
}

#[test]
fn directive_errors() {
    assert_eq!(
        err("{ 'include': 'x.json', 'junk': true }"),
        "s.json:1: invalid 'include' directive"
    );
    assert_eq!(
        err("{ 'include': [ 'a', 'b' ] }"),
        "s.json:1: value of 'include' must be a string"
    );
    assert_eq!(
        err("{ 'pragma': { 'doc-required': 'crap' } }"),
        "s.json:1: pragma 'doc-required' must be boolean"
    );
    assert_eq!(
        err("{ 'pragma': { 'member-name-exceptions': 'crap' } }"),
        "s.json:1: pragma member-name-exceptions must be a list of strings"
    );
    assert_eq!(
        err("##\n# @foo:\n##\n{ 'pragma': { 'doc-required': true } }"),
        "s.json:1: documentation for 'foo' is not followed by the definition"
    );
}

#[test]
fn doc_errors() {
    assert_eq!(
        err("##\n# @foo:\n#\n# Returns:\n##\n{ 'command': 'foo', 'returns': 'int' }"),
        "s.json:4: text required after 'Returns:'"
    );
    assert_eq!(
        err("##\n# @foo:\n# @a:\n##\n{ 'command': 'foo', 'data': { 'a': 'int' } }"),
        "s.json:3: text required after 'Member:'"
    );
    assert_eq!(
        err("##\n# @foo:\n#\n# Note: x\n##\n{ 'command': 'foo' }"),
        "s.json:4:1: The 'Note' section is no longer supported. Please use rST's '.. note::' or '.. admonition:: notes' directives, or another suitable admonition instead."
    );
    // Schemas written for QEMU before 9.1 use these sections throughout;
    // they are read with the older rules.
    let old = "##\n# @foo:\n#\n# Example: x\n##\n{ 'command': 'foo' }\n".repeat(1)
        + "##\n# @bar:\n#\n# Note: y\n##\n{ 'command': 'bar' }\n"
        + "##\n# @baz:\n#\n# Example:\n#\n# -> x\n##\n{ 'command': 'baz' }\n";
    let p = parse(&old).expect("old doc syntax");
    assert!(p.legacy_docs);
    assert_eq!(p.docs[2].sections[0].text, "Example:\n\n-> x");
    assert_eq!(
        err("##\n# @foo:\n#\n# Examples: x\n##\n{ 'command': 'foo' }"),
        "s.json:4:1: The 'Examples' section is no longer supported. Please use the '.. qmp-example::' directive, or other suitable markup instead."
    );
    assert_eq!(
        err("##\n# @foo:\n##\n{ 'command': 'bar' }"),
        "s.json: In command 'bar':\ns.json:4: documentation comment is for 'foo'"
    );
    assert_eq!(
        err("##\n# @Foo:\n# Returns: x\n##\n{ 'struct': 'Foo', 'data': {} }"),
        "s.json:3: 'Returns' section is only valid for commands"
    );
    assert_eq!(
        err("##\n# @Foo:\n# Errors: x\n##\n{ 'struct': 'Foo', 'data': {} }"),
        "s.json:3: 'Errors' section is only valid for commands"
    );
    assert_eq!(
        err("##\n# @foo:\n#\n# Features:\n# @f:\n# @f: x\n##\n{ 'command': 'foo' }"),
        "s.json:6: 'f' feature name duplicated"
    );
    assert_eq!(
        err("##\n# @foo:\n#\n# Features:\n# @: x\n##\n{ 'command': 'foo' }"),
        "s.json:5: invalid feature name"
    );
    // Indentation: a blank line ends a description; "::" is rST, not a tag.
    let p = parse("##\n# @foo:\n#\n# @a: one\n#    two\n#\n# text\n#\n# Returns:: x\n##\n{ 'command': 'foo', 'data': { 'a': 'int' } }")
        .expect("doc");
    let d = &p.docs[0];
    assert_eq!(d.args[0].text, "one\n   two");
    assert_eq!(d.sections.len(), 1);
    assert_eq!(d.sections[0].kind, SectionKind::Plain);
    assert_eq!(d.sections[0].text, "text\n\nReturns:: x");
}

#[test]
fn expression_errors() {
    assert_eq!(
        err("{ 'enum': 'Foo', 'data': [ { 'name': 'one', 'bad-key': 'str' } ] }"),
        "s.json: In enum 'Foo':\ns.json:1: 'data' member has unknown key 'bad-key'\nValid keys are 'features', 'if', 'name'."
    );
    assert_eq!(
        err("{ 'enum': 'Foo', 'data': [ 'a' ], 'prefix': [ 'x' ] }"),
        "s.json: In enum 'Foo':\ns.json:1: 'prefix' must be a string"
    );
    assert_eq!(
        err("{ 'enum': 'Foo', 'data': [ 'not\\\\possible' ] }"),
        "s.json: In enum 'Foo':\ns.json:1: 'data' member 'not\\possible' has an invalid name"
    );
    assert_eq!(
        err("{ 'struct': 'Foo', 'data': {}, 'features': 'f' }"),
        "s.json: In struct 'Foo':\ns.json:1: 'features' must be an array"
    );
    assert_eq!(
        err("{ 'struct': 'Foo', 'data': {}, 'features': [ { 'name': 'f', 'colour': 'red' } ] }"),
        "s.json: In struct 'Foo':\ns.json:1: 'features' member has unknown key 'colour'\nValid keys are 'if', 'name'."
    );
    assert_eq!(
        err("{ 'struct': 'Foo', 'data': {}, 'features': [ { 'name': { 'a': 'b' } } ] }"),
        "s.json: In struct 'Foo':\ns.json:1: 'features' member requires a string name"
    );
    assert_eq!(
        err("{ 'command': 'foo', 'allow-oob': true, 'coroutine': true }"),
        "s.json: In command 'foo':\ns.json:1: flags 'allow-oob' and 'coroutine' are incompatible"
    );
    assert_eq!(
        err("{ 'command': 'foo', 'gen': 'whatever' }"),
        "s.json: In command 'foo':\ns.json:1: flag 'gen' may only use false value"
    );
    assert_eq!(
        err("{ 'struct': 'Foo', 'data': { '_oops': 'str' } }"),
        "s.json: In struct 'Foo':\ns.json:1: 'data' member '_oops' has an invalid name"
    );
    assert_eq!(
        err("{ 'struct': 'FooList', 'data': {} }"),
        "s.json: In struct 'FooList':\ns.json:1: struct name should not end in 'List'"
    );
    assert_eq!(
        err("{ 'struct': '*oops', 'data': {} }"),
        "s.json: In struct '*oops':\ns.json:1: struct has an invalid name"
    );
    assert_eq!(err("{ 'data': {} }"), "s.json:1: expression must have exactly one key 'enum', 'struct', 'union', 'alternate', 'command', 'event'");
    assert_eq!(
        err("{ 'struct': 'Foo', 'data': {}, 'if': { 'all': 'A' } }"),
        "s.json: In struct 'Foo':\ns.json:1: 'all' condition of struct must be an array"
    );
    assert_eq!(
        err("{ 'struct': 'Foo', 'data': {}, 'if': { 'not': 'a' } }"),
        "s.json: In struct 'Foo':\ns.json:1: 'if' condition 'a' of struct is not a valid identifier"
    );
    assert_eq!(
        err("{ 'command': 'foo', 'data': { 'a': 'int' }, 'boxed': true }"),
        "s.json: In command 'foo':\ns.json:1: 'data' should be a type name"
    );
    assert_eq!(
        err("{ 'command': 'foo', 'data': { 'a': { 'type': 'str', 'x': true } } }"),
        "s.json: In command 'foo':\ns.json:1: 'data' member 'a' has unknown key 'x'\nValid keys are 'features', 'if', 'type'."
    );
    assert_eq!(
        err("{ 'command': 'foo', 'data': { 'has-a': 'int' } }"),
        "s.json: In command 'foo':\ns.json:1: 'data' member 'has-a' uses reserved name"
    );
    assert_eq!(
        err("{ 'command': 'x-Foo' }"),
        "s.json: In command 'x-Foo':\ns.json:1: name of command must not use uppercase or '_'"
    );
    assert!(parse("{ 'command': '__org.qemu_x-foo' }").is_ok());
    assert_eq!(
        err("{ 'enum': 'Ee', 'data': [ '1a', '__com.redhat_b' ] }"),
        "OK"
    );
    assert_eq!(
        parse("{ 'pragma': { 'command-name-exceptions': [ 'a_b' ] } }\n{ 'command': 'a_b' }").err(),
        None
    );
    // Pragmas apply to the whole schema, wherever they are.
    assert_eq!(
        parse("{ 'command': 'a_b' }\n{ 'pragma': { 'command-name-exceptions': [ 'a_b' ] } }").err(),
        None
    );
}

#[test]
fn normalised_form() {
    let p = parse(
        "{ 'struct': 'Foo', 'base': 'Base',
           'data': { 'a': 'int', '*b': ['str'],
                     'c': { 'type': 'Bar', 'if': { 'all': [ 'X', { 'not': 'Y' } ] }, 'features': [ 'unstable' ] } },
           'if': 'COND', 'features': [ 'deprecated', { 'name': 'f2', 'if': 'Z' } ] }
         { 'union': 'Uni', 'base': { 'kind': 'K' }, 'discriminator': 'kind',
           'data': { 'x': 'Foo', 'y': { 'type': 'Foo', 'if': 'Q' } } }
         { 'command': 'cmd', 'data': 'Foo', 'boxed': true, 'returns': ['Foo'],
           'allow-oob': true, 'allow-preconfig': true }
         { 'event': 'EV', 'data': { '*x': 'int' } }
         { 'alternate': 'Alt', 'data': { 'a': 'int', 'b': ['str'] } }",
    )
    .expect("valid");
    assert_eq!(p.exprs.len(), 5);
    let ExprKind::Struct(s) = &p.exprs[0].kind else {
        panic!("struct")
    };
    assert_eq!(s.common.name, "Foo");
    assert_eq!(s.base.as_deref(), Some("Base"));
    assert_eq!(s.common.ifcond.to_qemu_repr(), "COND");
    let feats: Vec<(&str, String)> = s
        .common
        .features
        .iter()
        .map(|f| (f.name.as_str(), f.ifcond.to_qemu_repr()))
        .collect();
    assert_eq!(
        feats,
        vec![("deprecated", "None".to_string()), ("f2", "Z".to_string())]
    );
    assert_eq!(s.members.len(), 3);
    assert_eq!(
        (s.members[0].name.as_str(), s.members[0].optional),
        ("a", false)
    );
    assert_eq!(s.members[0].typ, TypeRef::Named("int".into()));
    assert_eq!(
        (s.members[1].name.as_str(), s.members[1].optional),
        ("b", true)
    );
    assert_eq!(s.members[1].typ, TypeRef::Array("str".into()));
    assert_eq!(
        s.members[2].ifcond.to_qemu_repr(),
        "{'all': ['X', {'not': 'Y'}]}"
    );
    assert_eq!(s.members[2].features[0].name, "unstable");
    assert_eq!(
        s.common.info.to_string(),
        "s.json: In struct 'Foo':\ns.json:1"
    );
    let ExprKind::Union(u) = &p.exprs[1].kind else {
        panic!("union")
    };
    assert_eq!(u.discriminator.as_deref(), Some("kind"));
    assert!(matches!(&u.base, BaseDef::Members(m) if m[0].name == "kind"));
    assert_eq!(u.branches.len(), 2);
    assert_eq!(u.branches[1].ifcond, IfCond::Name("Q".into()));
    let ExprKind::Command(c) = &p.exprs[2].kind else {
        panic!("command")
    };
    assert_eq!(c.data, ArgsDef::Type("Foo".into()));
    assert_eq!(c.returns, Some(TypeRef::Array("Foo".into())));
    assert!(c.flags.boxed && c.flags.allow_oob && c.flags.allow_preconfig && c.flags.gen);
    let ExprKind::Event(e) = &p.exprs[3].kind else {
        panic!("event")
    };
    assert!(matches!(&e.data, ArgsDef::Members(m) if m[0].name == "x" && m[0].optional));
    let ExprKind::Alternate(a) = &p.exprs[4].kind else {
        panic!("alternate")
    };
    assert_eq!(a.branches[1].typ, TypeRef::Array("str".into()));
}

#[test]
fn includes_in_memory() {
    let files = MemoryProvider::from_files([
        (
            "schema/main.json",
            "{ 'include': 'sub/a.json' }\n{ 'include': 'sub/a.json' }\n",
        ),
        (
            "schema/sub/a.json",
            "{ 'include': '../b.json' }\n{ 'enum': 'Aa', 'data': [ 'x' ] }\n",
        ),
        ("schema/b.json", "{ 'include': 'sub/a.json' }\n"),
    ]);
    let e = parse_schema("schema/main.json", Dialect::Modern, &files).unwrap_err();
    assert_eq!(
        e.to_string(),
        "In file included from schema/main.json:1:\nIn file included from schema/sub/a.json:1:\nschema/sub/../b.json:1: inclusion loop for sub/a.json"
    );
    let files = MemoryProvider::from_files([
        (
            "schema/main.json",
            "{ 'include': 'sub/a.json' }\n{ 'include': 'sub/a.json' }\n",
        ),
        (
            "schema/sub/a.json",
            "{ 'include': 'b.json' }\n{ 'enum': 'Aa', 'data': [ 'x' ] }\n",
        ),
        ("schema/sub/b.json", "{ 'include': 'a.json' }\n"),
    ]);
    let e = parse_schema("schema/main.json", Dialect::Modern, &files).unwrap_err();
    assert_eq!(
        e.to_string(),
        "In file included from schema/main.json:1:\nIn file included from schema/sub/a.json:1:\nschema/sub/b.json:1: inclusion loop for a.json"
    );
    let files = MemoryProvider::from_files([
        (
            "schema/main.json",
            "{ 'include': 'sub/a.json' }\n{ 'include': 'sub/a.json' }\n",
        ),
        ("schema/sub/a.json", "{ 'enum': 'Aa', 'data': [ 'x' ] }\n"),
    ]);
    let p = parse_schema("schema/main.json", Dialect::Modern, &files).expect("valid");
    let incs: Vec<(&str, &str, bool)> = p
        .exprs
        .iter()
        .filter_map(|e| match &e.kind {
            ExprKind::Include(i) => Some((i.name.as_str(), i.path.as_str(), i.repeated)),
            _ => None,
        })
        .collect();
    assert_eq!(
        incs,
        vec![
            ("sub/a.json", "schema/sub/a.json", false),
            ("sub/a.json", "schema/sub/a.json", true)
        ]
    );
    assert_eq!(p.exprs.len(), 3);
    assert_eq!(
        p.exprs[1].info.to_string(),
        "In file included from schema/main.json:1:\nschema/sub/a.json:1"
    );
}

#[test]
fn legacy_dialect() {
    let legacy = |t: &str| {
        parse_schema(
            "s.json",
            Dialect::Legacy,
            &MemoryProvider::from_files([("s.json", t)]),
        )
        .map_err(|e| e.to_string())
    };
    let p = legacy(
        "{ 'type': 'VersionInfo', 'data': {'qemu': {'major': 'int', 'minor': 'int'}, 'package': 'str'} }
         { 'union': 'Simple', 'data': { 'a': 'VersionInfo', 'b': 'int' } }
         { 'command': 'query-version', 'returns': 'VersionInfo', 'gen': 'no' }
         { 'command': 'qom-get', 'data': { 'path': 'str' }, 'returns': 'visitor' }
         { 'command': 'device_add', 'data': {'driver': 'str', '*props': '**'}, 'gen': false }
         { 'pragma': { 'returns-whitelist': [ 'qom-get' ], 'name-case-whitelist': [ 'CamelCaseMember' ] } }",
    )
    .expect("legacy");
    let ExprKind::Struct(s) = &p.exprs[0].kind else {
        panic!("struct")
    };
    assert!(s.legacy_type_keyword);
    let TypeRef::Nested(n) = &s.members[0].typ else {
        panic!("nested")
    };
    assert_eq!(
        n.iter().map(|m| m.name.as_str()).collect::<Vec<_>>(),
        ["major", "minor"]
    );
    let ExprKind::Union(u) = &p.exprs[1].kind else {
        panic!("union")
    };
    assert_eq!((u.discriminator.is_none(), &u.base), (true, &BaseDef::None));
    let ExprKind::Command(c) = &p.exprs[2].kind else {
        panic!("command")
    };
    assert!(!c.flags.gen);
    let ExprKind::Command(c) = &p.exprs[4].kind else {
        panic!("command")
    };
    assert!(matches!(&c.data, ArgsDef::Members(m) if m[1].typ == TypeRef::Named("**".into())));
    assert_eq!(p.legacy_returns_whitelist, ["qom-get"]);
    assert!(p
        .pragma
        .command_returns_exceptions
        .contains(&"qom-get".to_string()));
    assert_eq!(p.legacy_name_case_whitelist, ["CamelCaseMember"]);
    // QEMU 1.x's parser did not insist on commas.
    assert!(legacy("{ 'enum': 'E'\n 'data': [ 'a' 'b', ] }").is_ok());
    assert_eq!(
        err("{ 'enum': 'E'\n 'data': [ 'a' ] }"),
        "s.json:2:2: expected ',' or '}'"
    );
    // Under the modern dialect QEMU's error stands, with a note.
    let modern = |t: &str| {
        parse_schema(
            "s.json",
            Dialect::Modern,
            &MemoryProvider::from_files([("s.json", t)]),
        )
        .unwrap_err()
    };
    let e = modern("{ 'enum': 'Ee', 'data': [ 'a', ] }");
    assert_eq!(
        e.to_string(),
        "s.json:1:32: expected '{', '[', string, or boolean"
    );
    assert!(e.is_legacy_construct());
    let e = modern("##\n# @Ee\n##\n{ 'enum': 'Ee', 'data': [ 'a' ] }");
    assert_eq!(e.to_string(), "s.json:2:1: line should end with ':'");
    assert!(e.is_legacy_construct());
    assert!(e
        .full()
        .contains("note: accepted with --dialect legacy (which reads doc comments"));
    let e = modern("{ 'enum': 'Ee', 'data': [ 'a' ]; }");
    assert!(!e.is_legacy_construct());
}
