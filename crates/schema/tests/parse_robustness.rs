//! Bad input never panics, never overflows the stack and never reads
//! unbounded data: each case gives a clear error (or, for an empty file,
//! an empty schema, which QEMU accepts too).

use proptest::prelude::*;
use qmpkit_schema::source::MAX_FILE_SIZE;
use qmpkit_schema::{parse_schema, Dialect, DirProvider, FsProvider, MemoryProvider};
use std::path::PathBuf;

fn mem(text: &str) -> MemoryProvider {
    MemoryProvider::from_files([("s.json", text)])
}

fn err_of(text: &str) -> String {
    match parse_schema("s.json", Dialect::Modern, &mem(text)) {
        Ok(_) => "OK".to_string(),
        Err(e) => e.to_string(),
    }
}

fn tempdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("qmpkit-parse-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

#[test]
fn empty_file_is_an_empty_schema() {
    let p = parse_schema("s.json", Dialect::Modern, &mem("")).expect("empty schema");
    assert!(p.exprs.is_empty());
    assert!(p.docs.is_empty());
}

#[test]
fn binary_garbage() {
    assert_eq!(
        err_of("\u{1}\u{2}\u{3}"),
        "s.json:1:1: stray '\u{1}\u{2}\u{3}'"
    );
    assert_eq!(
        err_of("{ 'a\u{7f}': 'b' }"),
        "s.json:1:3: funny character in string"
    );
    assert_eq!(
        err_of("{ 'a\tb': 'c' }"),
        "s.json:1:3: funny character in string"
    );
    assert_eq!(
        err_of("{ 'é': 'c' }"),
        "s.json:1:3: funny character in string"
    );
}

#[test]
fn invalid_utf8() {
    let d = tempdir("utf8");
    std::fs::write(d.join("bad.json"), b"{ 'a': '\xff\xfe' }\n").expect("write");
    let e = parse_schema("bad.json", Dialect::Modern, &DirProvider::new(&d)).unwrap_err();
    assert_eq!(
        e.to_string(),
        "can't read schema file 'bad.json': invalid UTF-8 at byte offset 8"
    );
    std::fs::write(d.join("top.json"), "{ 'include': 'bad.json' }\n").expect("write");
    let e = parse_schema("top.json", Dialect::Modern, &DirProvider::new(&d)).unwrap_err();
    assert_eq!(
        e.to_string(),
        "top.json:1: can't read include file 'bad.json': invalid UTF-8 at byte offset 8"
    );
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn missing_file() {
    let e = parse_schema("nope.json", Dialect::Modern, &MemoryProvider::new()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "can't read schema file 'nope.json': No such file or directory"
    );
    let e = parse_schema(
        "/nonexistent/qmpkit/nope.json",
        Dialect::Modern,
        &FsProvider,
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "can't read schema file '/nonexistent/qmpkit/nope.json': No such file or directory"
    );
}

#[test]
fn include_of_a_directory() {
    let d = tempdir("dir");
    std::fs::create_dir_all(d.join("sub")).expect("mkdir");
    std::fs::write(d.join("top.json"), "{ 'include': 'sub' }\n").expect("write");
    let e = parse_schema("top.json", Dialect::Modern, &DirProvider::new(&d)).unwrap_err();
    assert_eq!(
        e.to_string(),
        "top.json:1: can't read include file 'sub': Is a directory"
    );
    let e = parse_schema("sub", Dialect::Modern, &DirProvider::new(&d)).unwrap_err();
    assert_eq!(
        e.to_string(),
        "can't read schema file 'sub': Is a directory"
    );
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn include_of_dev_zero() {
    let p = MemoryProvider::from_files([("top.json", "{ 'include': '/dev/zero' }\n")]);
    // The in-memory provider has no /dev/zero; the file system one has.
    let e = parse_schema("top.json", Dialect::Modern, &p).unwrap_err();
    assert_eq!(
        e.to_string(),
        "top.json:1: can't read include file '/dev/zero': No such file or directory"
    );
    let d = tempdir("zero");
    std::fs::write(d.join("top.json"), "{ 'include': '/dev/zero' }\n").expect("write");
    let e = parse_schema("top.json", Dialect::Modern, &DirProvider::new(&d)).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("top.json:1: can't read include file '/dev/zero': file too large (more than {MAX_FILE_SIZE} bytes)")
    );
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn file_of_100_mb() {
    let d = tempdir("big");
    let path = d.join("big.json");
    {
        use std::io::Write;
        let f = std::fs::File::create(&path).expect("create");
        let mut w = std::io::BufWriter::new(f);
        // 100 comment lines of 1 MiB each.
        let line = format!("# {}\n", "x".repeat(1024 * 1024 - 3));
        for _ in 0..100 {
            w.write_all(line.as_bytes()).expect("write");
        }
        w.write_all(b"{ 'enum': 'Big', 'data': [ 'a' ] }\n{ 'oops' }\n")
            .expect("write");
        w.flush().expect("flush");
    }
    let e = parse_schema("big.json", Dialect::Modern, &DirProvider::new(&d)).unwrap_err();
    assert_eq!(e.to_string(), "big.json:102:10: expected ':'");
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn nested_brackets_100_000() {
    let deep = "[".repeat(100_000);
    assert_eq!(
        err_of(&deep),
        "s.json:1:258: nesting too deep (more than 256 levels)"
    );
    let deep = format!("{}{}", "{ 'a': ".repeat(100_000), "}".repeat(100_000));
    assert_eq!(
        err_of(&deep),
        "s.json:1:1800: nesting too deep (more than 256 levels)"
    );
    // Just within the limit: parses (and fails later as not a definition).
    let ok = format!("{{ 'a': {}{} }}", "[".repeat(255), "]".repeat(255));
    assert_eq!(
        err_of(&ok),
        "s.json:1: expression must have exactly one key 'enum', 'struct', 'union', 'alternate', 'command', 'event'"
    );
}

#[test]
fn unterminated_things() {
    assert_eq!(err_of("{ 'a"), "s.json:1:3: missing terminating \"'\"");
    assert_eq!(err_of("{ 'a': 'b\\"), "s.json:1:8: unknown escape \\\n");
    assert_eq!(err_of("{"), "s.json:1:2: expected string or '}'");
    assert_eq!(
        err_of("["),
        "s.json:1:2: expected '{', '[', ']', string, or boolean"
    );
    // At the end of input QEMU points at the last newline.
    assert_eq!(
        err_of("##\n# @x:\n"),
        "s.json:2:6: documentation comment must end with '##'"
    );
}

#[test]
fn long_include_chain_and_self_includes() {
    let mut m = MemoryProvider::new();
    for i in 0..300 {
        m.add(
            &format!("f{i}.json"),
            format!("{{ 'include': 'f{}.json' }}\n", i + 1),
        );
    }
    m.add("f300.json", "");
    let e = parse_schema("f0.json", Dialect::Modern, &m).unwrap_err();
    assert!(
        e.to_string()
            .ends_with("includes nested too deeply (more than 128 levels)"),
        "{e}"
    );
}

#[test]
fn legacy_hints_are_notes_not_text() {
    let e = parse_schema(
        "s.json",
        Dialect::Modern,
        &mem("{ 'type': 'Foo', 'data': {} }"),
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "s.json:1: expression must have exactly one key 'enum', 'struct', 'union', 'alternate', 'command', 'event'"
    );
    assert!(e.is_legacy_construct());
    assert!(e.full().ends_with("\nnote: accepted with --dialect legacy"));
    assert!(parse_schema(
        "s.json",
        Dialect::Legacy,
        &mem("{ 'type': 'Foo', 'data': {} }")
    )
    .is_ok());
    let e = parse_schema(
        "s.json",
        Dialect::Modern,
        &mem("{ 'command': 'c', 'data': { 'a': { 'b': 'int' } }, 'gen': 'no' }"),
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "s.json: In command 'c':\ns.json:1: 'data' member 'a' misses key 'type'"
    );
    assert!(e.is_legacy_construct());
    assert!(parse_schema(
        "s.json",
        Dialect::Legacy,
        &mem("{ 'command': 'c', 'data': { 'a': { 'b': 'int' } }, 'gen': 'no' }")
    )
    .is_ok());
    let e = parse_schema(
        "s.json",
        Dialect::Modern,
        &mem("{ 'pragma': { 'returns-whitelist': [] } }"),
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "s.json:1: unknown pragma 'returns-whitelist'"
    );
    assert!(e.is_legacy_construct());
    let e = parse_schema(
        "s.json",
        Dialect::Modern,
        &mem("{ 'union': 'Uni', 'data': { 'a': 'int' } }"),
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "s.json: In union 'Uni':\ns.json:1: union misses keys 'base', 'discriminator'"
    );
    assert!(e.is_legacy_construct());
}

#[test]
fn tabs_expand_to_eight() {
    assert_eq!(err_of("\t;"), "s.json:1:9: stray ';'");
    assert_eq!(err_of("  \t;"), "s.json:1:9: stray ';'");
    assert_eq!(err_of("\t\t x"), "s.json:1:18: stray 'x'");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, .. ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let text = String::from_utf8_lossy(&bytes).into_owned();
        for dialect in [Dialect::Modern, Dialect::Legacy] {
            let _ = parse_schema("s.json", dialect, &mem(&text));
        }
    }

    #[test]
    fn schema_like_text_never_panics(parts in proptest::collection::vec(
        prop_oneof![
            Just("{"), Just("}"), Just("["), Just("]"), Just(","), Just(":"), Just("'"),
            Just("'a'"), Just("'data'"), Just("'struct'"), Just("'command'"), Just("'union'"),
            Just("'if'"), Just("'features'"), Just("'*b'"), Just("'type'"), Just("true"),
            Just("false"), Just("\n"), Just("##\n"), Just("# @a:\n"), Just("# Features:\n"),
            Just("# Returns: x\n"), Just("#  indented\n"), Just("# text\n"), Just("'include'"),
            Just("'pragma'"), Just("'doc-required'"), Just("\\"), Just("\t"),
        ],
        0..80,
    )) {
        let text: String = parts.concat();
        for dialect in [Dialect::Modern, Dialect::Legacy] {
            let _ = parse_schema("s.json", dialect, &mem(&text));
        }
    }
}
