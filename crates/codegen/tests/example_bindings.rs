//! The example's checked-in bindings (`examples/demo/qapi.rs`) are what the generator makes of
//! `examples/demo/demo.json` today. Run with `QMPKIT_UPDATE=1` to refresh them.

#[test]
fn example_bindings_are_fresh() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/demo");
    let schema = qmpkit_schema::load(&dir.join("demo.json"), qmpkit_schema::Dialect::Modern)
        .expect("the demo schema loads");
    let opts = qmpkit_codegen::Options {
        source_name: Some("demo.json".into()),
        ..Default::default()
    };
    let code = qmpkit_codegen::generate(&schema, &opts);
    let path = dir.join("qapi.rs");
    if std::env::var_os("QMPKIT_UPDATE").is_some() {
        std::fs::write(&path, &code).unwrap();
    }
    let current = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        current == code,
        "{} is stale: run `QMPKIT_UPDATE=1 cargo test -p qmpkit-codegen --test example_bindings` (or `qmpkit schema codegen --lang rust examples/demo/demo.json -o examples/demo/qapi.rs`)",
        path.display()
    );
}
