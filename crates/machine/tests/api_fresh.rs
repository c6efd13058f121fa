//! `crates/machine/src/api.rs` is generated from `schema/`: this test fails when it is stale.
//! Refresh it with `QMPKIT_UPDATE=1 cargo test -p qmpkit-machine --test api_fresh`.

use std::path::Path;

#[test]
fn generated_interface_is_fresh() {
    let schema = match qmpkit_machine::embedded::load_schema() {
        Ok(s) => s,
        Err(e) => panic!("the machine's schema does not load: {e}"),
    };
    let opts = qmpkit_codegen::Options {
        handlers: true,
        source_name: Some(qmpkit_machine::embedded::ROOT.to_string()),
        ..Default::default()
    };
    let code = qmpkit_codegen::generate(&schema, &opts);
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/api.rs");
    if std::env::var_os("QMPKIT_UPDATE").is_some() {
        std::fs::write(&path, &code).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        return;
    }
    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        on_disk == code,
        "{} is stale: run `QMPKIT_UPDATE=1 cargo test -p qmpkit-machine --test api_fresh`",
        path.display()
    );
}
