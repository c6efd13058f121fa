//! The serializer writes exactly what the value writer writes for the JSON value of the same
//! thing: `write_qemu_serialized(t)` = `write_qemu_ordered(serde_json::to_value(t))`, for
//! generated JSON values (members in any order, names sharing QEMU's buckets, every kind of
//! number, the largest-double marker) and for typed values of every shape serde has.

use proptest::prelude::*;
use qmpkit_wire::{write_qemu_ordered, write_qemu_serialized};
use serde::Serialize;
use serde_json::{Map, Number, Value};

fn through_value<T: Serialize>(t: &T) -> Vec<u8> {
    let v = serde_json::to_value(t).expect("to_value");
    let mut out = Vec::new();
    write_qemu_ordered(&v, &mut out);
    out
}

fn direct<T: Serialize>(t: &T) -> Vec<u8> {
    let mut out = Vec::new();
    write_qemu_serialized(t, &mut out).expect("serialize");
    out
}

fn same<T: Serialize>(t: &T) {
    let (a, b) = (through_value(t), direct(t));
    assert_eq!(
        String::from_utf8_lossy(&b),
        String::from_utf8_lossy(&a),
        "serializer (left) and value writer (right) differ"
    );
}

fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        // Few short names: objects share names' buckets and member counts vary.
        4 => "[a-e]{1,2}",
        2 => "[a-z_-]{1,12}",
        1 => any::<String>(),
        1 => Just("\u{FFFE}largest double".to_string()),
    ]
}

fn number() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter_map("finite", Number::from_f64)
            .prop_map(Value::Number),
        Just(Value::from(f64::MAX)),
        Just(Value::from(-f64::MAX)),
        Just(Value::from(0.0)),
        Just(Value::from(-0.0)),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        number(),
        any::<String>().prop_map(Value::String),
    ];
    leaf.prop_recursive(6, 96, 24, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::vec((name(), inner.clone()), 0..24)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
            // The marker of a largest double, and things that look like it.
            (
                prop_oneof![Just(f64::MAX), Just(-f64::MAX), Just(1.5)],
                any::<bool>()
            )
                .prop_map(|(f, extra)| {
                    let mut m = Map::new();
                    m.insert("\u{FFFE}largest double".into(), Value::from(f));
                    if extra {
                        m.insert("x".into(), Value::Null);
                    }
                    Value::Object(m)
                }),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn values_write_as_the_value_writer_writes_them(v in value()) {
        same(&v);
    }
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
enum Kind {
    Plain,
    NewType(u8),
    Pair(i32, String),
    Fields { zeta: bool, alpha: Option<u64> },
}

#[derive(Serialize)]
struct Inner {
    name: String,
    size: i64,
    ratio: f32,
    missing: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct Outer {
    device: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    qdev: Option<String>,
    removable: bool,
    locked: bool,
    inserted: Option<Inner>,
    kinds: Vec<Kind>,
    tuple: (u8, char, ()),
    bytes: serde_bytes_like::Bytes,
    map: std::collections::BTreeMap<u32, Vec<Inner>>,
    unit: (),
    nan: f64,
    inf: f64,
    largest: f64,
}

/// `serialize_bytes` without another crate.
mod serde_bytes_like {
    pub struct Bytes(pub Vec<u8>);
    impl serde::Serialize for Bytes {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_bytes(&self.0)
        }
    }
}

#[test]
fn typed_values_of_every_shape() {
    let inner = |n: &str| Inner {
        name: n.into(),
        size: -7,
        ratio: 0.1,
        missing: None,
    };
    let outer = Outer {
        device: "ide0-hd0\u{1}\"é".into(),
        qdev: None,
        removable: true,
        locked: false,
        inserted: Some(inner("disk")),
        kinds: vec![
            Kind::Plain,
            Kind::NewType(3),
            Kind::Pair(-1, "x".into()),
            Kind::Fields {
                zeta: true,
                alpha: Some(u64::MAX),
            },
        ],
        tuple: (1, 'c', ()),
        bytes: serde_bytes_like::Bytes(vec![0, 255]),
        map: [(2, vec![inner("a"), inner("b")]), (10, vec![])]
            .into_iter()
            .collect(),
        unit: (),
        nan: f64::NAN,
        inf: f64::NEG_INFINITY,
        largest: f64::MAX,
    };
    same(&outer);
    same(&vec![outer]);
    same(&Option::<Inner>::None);
    same(&Kind::Plain);
    // Member order is QEMU's: "micro", "minor", "major" for a version.
    let mut m = Map::new();
    for (k, v) in [("major", 10), ("minor", 0), ("micro", 2)] {
        m.insert(k.into(), Value::from(v));
    }
    assert_eq!(
        direct(&Value::Object(m)),
        br#"{"micro": 2, "minor": 0, "major": 10}"#
    );
}

#[test]
fn an_error_leaves_the_output_as_it_was() {
    let mut bad = std::collections::BTreeMap::new();
    bad.insert(vec![1u8], 1);
    let mut out = b"kept".to_vec();
    assert!(write_qemu_serialized(&vec![Value::Null, Value::Null], &mut out).is_ok());
    let before = out.clone();
    assert!(write_qemu_serialized(&bad, &mut out).is_err());
    assert_eq!(out, before);
}

/// A struct with more members than the writer sorts without help, names in many buckets.
#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct Wide {
    node_name: String,
    file: String,
    ro: bool,
    drv: String,
    backing_file_depth: u64,
    encrypted: bool,
    detect_zeroes: String,
    bps: u64,
    bps_rd: u64,
    bps_wr: u64,
    iops: u64,
    iops_rd: u64,
    iops_wr: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    bps_max: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    group: Option<String>,
    image: Inner,
    cache: std::collections::BTreeMap<&'static str, bool>,
    write_threshold: u64,
    active: bool,
    /// Keys that are made for each entry and dropped at once: one spelling may come back at
    /// the same address as another.
    by_number: std::collections::BTreeMap<u64, u8>,
}

#[test]
fn large_replies_with_names_that_come_back() {
    // Many elements of one type (names found again from the second element on), optional
    // members present in some, map keys written from temporaries, and many distinct names
    // (more than the writer keeps) in one value.
    let wide: Vec<Wide> = (0..600u64)
        .map(|i| Wide {
            node_name: format!("#block{i}"),
            file: "null-co://".into(),
            ro: i % 3 == 0,
            drv: "null-co".into(),
            backing_file_depth: i % 2,
            encrypted: false,
            detect_zeroes: "off".into(),
            bps: i,
            bps_rd: 0,
            bps_wr: 0,
            iops: 0,
            iops_rd: 0,
            iops_wr: 0,
            bps_max: (i % 5 == 0).then_some(i * 10),
            group: (i % 7 == 0).then(|| format!("g{i}")),
            image: Inner {
                name: "null-co://".into(),
                size: 1 << 30,
                ratio: 0.5,
                missing: None,
            },
            cache: [("writeback", true), ("direct", false), ("no-flush", false)]
                .into_iter()
                .collect(),
            write_threshold: 0,
            active: true,
            by_number: (0..(i % 4)).map(|k| (i * 1000 + k, k as u8)).collect(),
        })
        .collect();
    same(&wide);
    let mut many = Map::new();
    for i in 0..3000 {
        many.insert(format!("member-{i}"), Value::from(i));
    }
    same(&vec![Value::Object(many.clone()), Value::Object(many)]);
}
