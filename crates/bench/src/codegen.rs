//! Typed bindings: generating QEMU 10.0.2's (system schema, x86_64 build symbols) from the
//! checked model, and decoding a `query-qmp-schema` reply (qemu-storage-daemon 10.0.2's,
//! 117 KB) into generated types against decoding it into `serde_json::Value`, from the same
//! text in the same run. Figures are the best of the iterations, with the median beside.

use qmpkit_codegen_tests::qsd_10_0_2 as q;
use serde_json::{json, Map, Value};
use std::hint::black_box;
use std::time::Instant;

fn best_median<T>(iters: usize, mut f: impl FnMut() -> Option<T>) -> Option<(f64, f64)> {
    for _ in 0..3 {
        f()?;
    }
    let mut s = Vec::with_capacity(iters);
    for _ in 0..iters {
        let t = Instant::now();
        let r = black_box(f());
        s.push(t.elapsed().as_secs_f64() * 1e3);
        drop(r);
    }
    s.sort_by(|a, b| a.total_cmp(b));
    Some((s[0], s[s.len() / 2]))
}

pub fn run(results: &mut Map<String, Value>) {
    println!("== typed bindings ==");
    let data = qmpkit_testkit::data::dir();
    let main = data.join("qemu-ref/schema-10.0.2/qapi/qapi-schema.json");
    let Ok(schema) = qmpkit_schema::load(&main, qmpkit_schema::Dialect::Modern) else {
        println!("skipped: cannot load {}", main.display());
        return;
    };
    let cfg_text = std::fs::read_to_string(
        data.join("qemu-ref/introspection/cfg-qemu-system-x86_64-7.2.22.txt"),
    )
    .unwrap_or_default();
    let opts = qmpkit_codegen::Options {
        cfg: qmpkit_schema::introspect::parse_cfg_file(&cfg_text)
            .into_iter()
            .collect(),
        ..Default::default()
    };
    let lines = qmpkit_codegen::generate(&schema, &opts).lines().count();
    let Some((gen_min, gen_med)) =
        best_median(20, || Some(qmpkit_codegen::generate(&schema, &opts)))
    else {
        return;
    };
    println!(
        "generate QEMU 10.0.2 bindings ({lines} lines): {gen_min:.1} ms (median {gen_med:.1}); target < 50 ms"
    );
    let text = std::fs::read_to_string(
        data.join("qemu-ref/introspection/qemu-storage-daemon-10.0.2-query-qmp-schema.json"),
    )
    .unwrap_or_default();
    // The `return` value of the reply, as text (both decoders read the same bytes).
    let text = text
        .trim_end()
        .strip_prefix("{\"return\": ")
        .and_then(|t| t.strip_suffix('}'))
        .unwrap_or(&text)
        .to_string();
    let typed = best_median(50, || {
        qmpkit_qapi::decode_str::<Vec<q::QueryQmpSchemaRet>>(&text).ok()
    });
    let value = best_median(50, || serde_json::from_str::<Value>(&text).ok());
    let (Some((t_min, t_med)), Some((v_min, v_med))) = (typed, value) else {
        println!("skipped: the saved answer does not decode");
        return;
    };
    println!(
        "decode query-qmp-schema ({} KB): generated types {t_min:.2} ms (median {t_med:.2}), serde_json::Value {v_min:.2} ms (median {v_med:.2}); typed/Value {:.2}",
        text.len() / 1024,
        t_min / v_min
    );
    results.insert(
        "codegen".into(),
        json!({
            "generate_qemu_10_0_2_ms": gen_min,
            "generated_lines": lines,
            "decode_schema_typed_ms": t_min,
            "decode_schema_value_ms": v_min,
            "typed_over_value": t_min / v_min,
        }),
    );
}
