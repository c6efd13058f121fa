//! The model's semantic rules beyond the sampled QEMU cases, each with
//! QEMU's exact wording.

use qmpkit_schema::{dump, Dialect, MemoryProvider};

fn run(src: &str, dialect: Dialect) -> dump::QemuTestOutput {
    let mut files = MemoryProvider::new();
    files.add("t.json", src);
    dump::run_qemu_test_from("t.json", dialect, &files)
}

/// Lets the clash tests use '_' in names.
const EXCEPTIONS: &str =
    "{ 'pragma': { 'member-name-exceptions': [ 'MyEnum', 'my-cmd', 'MyAlt' ] } }\n";

fn err(src: &str) -> String {
    let r = run(src, Dialect::Modern);
    assert!(!r.ok, "expected an error for {src}");
    r.stderr
}

#[test]
fn clashes_by_c_name() {
    assert_eq!(
        err(&format!(
            "{EXCEPTIONS}{{ 'enum': 'MyEnum', 'data': [ 'a-b', 'a_b' ] }}"
        )),
        "t.json: In enum 'MyEnum':\nt.json:2: value 'a_b' collides with value 'a-b'\n"
    );
    assert_eq!(
        err(&format!(
            "{EXCEPTIONS}{{ 'command': 'my-cmd', 'data': {{ 'a-b': 'int', 'a_b': 'str' }} }}"
        )),
        "t.json: In command 'my-cmd':\nt.json:2: parameter 'a_b' collides with parameter 'a-b'\n"
    );
    assert_eq!(
        err("{ 'struct': 'MyStruct', 'data': { 'a': 'int' }, 'features': [ 'f-x', 'f-x' ] }"),
        "t.json: In struct 'MyStruct':\nt.json:1: feature 'f-x' collides with feature 'f-x'\n"
    );
    // Reserved words are protected with q_: 'unix' and 'q-unix' would be
    // one C name, but 'q-' names are rejected earlier; 'if' and 'q_if'
    // cannot both be written either. 'wchar-t' is fine on its own.
    assert!(
        run(
            "{ 'struct': 'MyStruct', 'data': { 'wchar-t': 'int' } }",
            Dialect::Modern
        )
        .ok
    );
}

#[test]
fn special_features_are_not_for_types() {
    assert_eq!(
        err("{ 'struct': 'MyStruct', 'data': { 'a': 'int' }, 'features': [ 'deprecated' ] }"),
        "t.json: In struct 'MyStruct':\nt.json:1: feature 'deprecated' is not supported for types\n"
    );
    assert!(
        run(
            "{ 'struct': 'MyStruct', 'data': { 'a': { 'type': 'int', 'features': [ 'unstable' ] } } }\n\
         { 'command': 'c', 'features': [ 'deprecated' ] }",
            Dialect::Modern
        )
        .ok
    );
}

#[test]
fn union_rules() {
    let base = "{ 'enum': 'MyEnum', 'data': [ 'a', 'b' ] }\n{ 'struct': 'Branch', 'data': { 'x': 'int' } }\n";
    assert_eq!(
        err(&format!(
            "{base}{{ 'union': 'MyUnion', 'base': {{ 'k': 'MyEnum' }}, 'discriminator': 'k', 'data': {{ 'c': 'Branch' }} }}"
        )),
        "t.json: In union 'MyUnion':\nt.json:3: branch 'c' is not a value of enum type 'MyEnum'\n"
    );
    assert_eq!(
        err(&format!(
            "{base}{{ 'union': 'MyUnion', 'base': {{ 'k': 'str' }}, 'discriminator': 'k', 'data': {{ 'a': 'Branch' }} }}"
        )),
        "t.json: In union 'MyUnion':\nt.json:3: discriminator member 'k' of 'base' must be of enum type\n"
    );
    assert_eq!(
        err(&format!(
            "{base}{{ 'union': 'MyUnion', 'base': {{ 'k': {{ 'type': 'MyEnum', 'if': 'X' }} }}, 'discriminator': 'k', 'data': {{ 'a': 'Branch' }} }}"
        )),
        "t.json: In union 'MyUnion':\nt.json:3: discriminator member 'k' of 'base' must not be conditional\n"
    );
    assert_eq!(
        err("{ 'enum': 'MyEnum', 'data': [ ] }\n{ 'union': 'MyUnion', 'base': { 'k': 'MyEnum' }, 'discriminator': 'k', 'data': { } }"),
        "t.json: In union 'MyUnion':\nt.json:2: union has no branches\n"
    );
    // Values without a branch get q_empty, with the value's condition.
    let r = run(
        "{ 'enum': 'MyEnum', 'data': [ 'a', { 'name': 'b', 'if': 'B' } ] }\n\
         { 'struct': 'Branch', 'data': { 'x': 'int' } }\n\
         { 'union': 'MyUnion', 'base': { 'k': 'MyEnum' }, 'discriminator': 'k', 'data': { 'a': 'Branch' } }",
        Dialect::Modern,
    );
    assert!(r.stdout.contains("object MyUnion\n    base q_obj_MyUnion-base\n    tag k\n    case a: Branch\n    case b: q_empty\n        if B\n"), "{}", r.stdout);
}

#[test]
fn references() {
    assert_eq!(
        err("{ 'command': 'c', 'returns': 'Nope' }"),
        "t.json: In command 'c':\nt.json:1: command's 'returns' uses unknown type 'Nope'\n"
    );
    assert_eq!(
        err("{ 'command': 'c', 'data': 'str', 'boxed': true }"),
        "t.json: In command 'c':\nt.json:1: command's 'data' cannot take built-in type 'str'\n"
    );
    assert_eq!(
        err("{ 'event': 'MY_EVENT', 'data': 'Nope' }"),
        "t.json: In event 'MY_EVENT':\nt.json:1: event's 'data' uses unknown type 'Nope'\n"
    );
    assert_eq!(
        err("{ 'command': 'number', 'data': { } }"),
        "t.json: In command 'number':\nt.json:1: built-in type 'number' is already defined\n"
    );
    assert_eq!(
        err("{ 'struct': 'MyStruct', 'data': { } }\n{ 'enum': 'MyStruct', 'data': [ ] }"),
        "t.json: In enum 'MyStruct':\nt.json:2: 'MyStruct' is already defined\nt.json: In struct 'MyStruct':\nt.json:1: previous definition\n"
    );
}

#[test]
fn arrays_follow_their_element() {
    let r = run(
        "{ 'struct': 'MyStruct', 'data': { 'a': 'int' }, 'if': 'X' }\n{ 'command': 'c', 'data': { 'l': [ 'MyStruct' ] } }",
        Dialect::Modern,
    );
    assert!(r.ok, "{}", r.stderr);
    assert!(
        r.stdout.contains("array MyStructList MyStruct\n    if X\n"),
        "{}",
        r.stdout
    );
}

#[test]
fn docs_must_match() {
    assert_eq!(
        err(
            "##\n# @MyStruct:\n#\n# @b: nope\n##\n{ 'struct': 'MyStruct', 'data': { 'a': 'int', 'b': 'int' } }\n\
             ##\n# @MyOther:\n##\n{ 'struct': 'MyOther', 'data': { } }"
        ),
        "t.json: In struct 'MyStruct':\nt.json:6: member 'a' lacks documentation\n"
    );
    assert_eq!(
        err("##\n# @MyStruct:\n#\n# @a: yes\n# @c: nope\n##\n{ 'struct': 'MyStruct', 'data': { 'a': 'int' } }"),
        "t.json:5: documented member 'c' does not exist\n"
    );
    // Several at once: all named, in the comment's order, at the first one's line; members
    // before features.
    assert_eq!(
        err("##\n# @MyStruct:\n#\n# @z: nope\n# @a: yes\n# @c: nope\n# @b: nope\n#\n# Features:\n# @f: nope\n# @g: nope\n##\n{ 'struct': 'MyStruct', 'data': { 'a': 'int' } }"),
        "t.json:4: documented members 'z', 'c', 'b' do not exist\n"
    );
    assert_eq!(
        err("##\n# @cmd:\n#\n# @a: yes\n#\n# Features:\n# @f: nope\n# @deprecated: yes\n# @g: nope\n##\n{ 'command': 'cmd', 'data': { 'a': 'int' }, 'features': [ 'deprecated' ] }"),
        "t.json:7: documented features 'f', 'g' do not exist\n"
    );
    assert_eq!(
        err("##\n# @EV:\n#\n# @x: nope\n# @y: nope\n##\n{ 'event': 'EV' }"),
        "t.json:4: documented members 'x', 'y' do not exist\n"
    );
}

#[test]
fn legacy_simple_union() {
    let src = "{ 'type': 'Branch', 'data': { 'x': 'int' } }\n{ 'union': 'MyUnion', 'data': { 'a': 'Branch', 'n': 'int' } }\n\
               { 'command': 'c', 'data': { 'arg': 'MyUnion' }, 'returns': 'Branch' }";
    let r = run(src, Dialect::Legacy);
    assert!(r.ok, "{}", r.stderr);
    let want = "object q_obj_Branch-wrapper\n    member data: Branch optional=False\n\
                object q_obj_int-wrapper\n    member data: int optional=False\n\
                enum MyUnionKind\n    member a\n    member n\n\
                object MyUnion\n    member type: MyUnionKind optional=False\n    tag type\n    case a: q_obj_Branch-wrapper\n    case n: q_obj_int-wrapper\n";
    assert!(r.stdout.contains(want), "{}", r.stdout);
    let s = qmpkit_schema::stats::SchemaStats::of(&{
        let mut files = MemoryProvider::new();
        files.add("t.json", src);
        qmpkit_schema::load_from("t.json", Dialect::Legacy, &files).expect("loads")
    });
    assert_eq!((s.structs, s.unions, s.enums, s.commands), (1, 1, 0, 1));
}

#[test]
fn deep_base_chains_are_an_error_not_a_crash() {
    let mut src = String::new();
    for i in 0..5000 {
        src.push_str(&format!(
            "{{ 'struct': 'Type{i}', 'base': 'Type{}', 'data': {{ 'm{i}': 'int' }} }}\n",
            i + 1
        ));
    }
    src.push_str("{ 'struct': 'Type5000', 'data': { } }\n");
    let r = run(&src, Dialect::Modern);
    assert!(!r.ok);
    assert!(
        r.stderr
            .contains("nests bases and branches more than 200 levels deep"),
        "{}",
        r.stderr
    );
    // A chain of 150 is fine.
    let mut src = String::new();
    for i in 0..150 {
        src.push_str(&format!(
            "{{ 'struct': 'Type{i}', 'base': 'Type{}', 'data': {{ 'm{i}': 'int' }} }}\n",
            i + 1
        ));
    }
    src.push_str("{ 'struct': 'Type150', 'data': { } }\n");
    let r = run(&src, Dialect::Modern);
    assert!(r.ok, "{}", r.stderr);
}
