//! `SchemaInfo` values survive a JSON round trip unchanged.

use proptest::prelude::*;
use qmpkit_schema::introspect::*;

fn name() -> impl Strategy<Value = String> {
    "[a-z0-9][a-z0-9-]{0,12}"
}

fn features() -> impl Strategy<Value = Option<Vec<String>>> {
    proptest::option::of(proptest::collection::vec(name(), 0..3))
}

fn meta() -> impl Strategy<Value = SchemaInfoMeta> {
    prop_oneof![
        "[a-z]{1,8}".prop_map(|json_type| SchemaInfoMeta::Builtin { json_type }),
        (
            proptest::collection::vec((name(), features()), 0..4),
            any::<bool>()
        )
            .prop_map(|(ms, values)| {
                let v: Vec<String> = ms.iter().map(|m| m.0.clone()).collect();
                SchemaInfoMeta::Enum {
                    members: ms
                        .into_iter()
                        .map(|(name, features)| SchemaInfoEnumMember { name, features })
                        .collect(),
                    values: values.then_some(v),
                }
            }),
        name().prop_map(|element_type| SchemaInfoMeta::Array { element_type }),
        (
            proptest::collection::vec((name(), name(), any::<bool>(), features()), 0..4),
            proptest::option::of((name(), proptest::collection::vec((name(), name()), 0..3))),
        )
            .prop_map(|(ms, tagged)| SchemaInfoMeta::Object {
                members: ms
                    .into_iter()
                    .map(|(name, typ, optional, features)| SchemaInfoObjectMember {
                        name,
                        typ,
                        optional,
                        features
                    })
                    .collect(),
                tag: tagged.as_ref().map(|t| t.0.clone()),
                variants: tagged.map(|t| {
                    t.1.into_iter()
                        .map(|(case, typ)| SchemaInfoObjectVariant { case, typ })
                        .collect()
                }),
            }),
        proptest::collection::vec(name(), 1..4).prop_map(|ts| SchemaInfoMeta::Alternate {
            members: ts
                .into_iter()
                .map(|typ| SchemaInfoAlternateMember { typ })
                .collect()
        }),
        (name(), name(), proptest::option::of(Just(true))).prop_map(
            |(arg_type, ret_type, allow_oob)| {
                SchemaInfoMeta::Command {
                    arg_type,
                    ret_type,
                    allow_oob,
                }
            }
        ),
        name().prop_map(|arg_type| SchemaInfoMeta::Event { arg_type }),
    ]
}

proptest! {
    #[test]
    fn json_round_trip(infos in proptest::collection::vec((name(), meta(), features()), 0..6)) {
        let infos: Vec<SchemaInfo> =
            infos.into_iter().map(|(name, meta, features)| SchemaInfo { name, meta, features }).collect();
        let text = to_json_text(&infos).expect("serialise");
        let back: Vec<SchemaInfo> = serde_json::from_str(&text).expect("deserialise");
        prop_assert_eq!(back, infos);
    }
}

#[test]
fn optional_members_show_default_null() {
    let m = SchemaInfoObjectMember {
        name: "a".into(),
        typ: "int".into(),
        optional: true,
        features: None,
    };
    assert_eq!(
        serde_json::to_string(&m).expect("json"),
        r#"{"name":"a","type":"int","default":null}"#
    );
    let m = SchemaInfoObjectMember {
        optional: false,
        ..m
    };
    assert_eq!(
        serde_json::to_string(&m).expect("json"),
        r#"{"name":"a","type":"int"}"#
    );
}
