//! Bindings generated at build time (see `build.rs`) for the workspace's tests: one module per
//! schema, each with its generated types and a `COMMANDS` table.

use serde_json::Value;

/// Round trip one JSON value through a generated type: decode strictly, encode back.
pub type RoundTrip = fn(&Value) -> Result<Value, qmpkit_qapi::DecodeError>;

/// Round trip of a command's `arguments` (`null` for none).
pub fn args<C: qmpkit_qapi::Command>(v: &Value) -> Result<Value, qmpkit_qapi::DecodeError> {
    let v = if v.is_null() {
        Value::Object(Default::default())
    } else {
        v.clone()
    };
    let c: C = qmpkit_qapi::decode_strict(&v)?;
    Ok(serde_json::to_value(&c).unwrap_or(Value::Null))
}

/// Round trip of a command's `return` value.
pub fn reply<C: qmpkit_qapi::Command>(v: &Value) -> Result<Value, qmpkit_qapi::DecodeError> {
    let r: C::Returns = qmpkit_qapi::decode_strict(v)?;
    Ok(serde_json::to_value(&r).unwrap_or(Value::Null))
}

/// The two functions of `name` in a `COMMANDS` table.
pub fn find(table: &[(&str, RoundTrip, RoundTrip)], name: &str) -> Option<(RoundTrip, RoundTrip)> {
    table
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, a, r)| (*a, *r))
}

macro_rules! bindings {
    ($($(#[$a:meta])* $m:ident),*) => {$(
        #[allow(clippy::all)]
        $(#[$a])*
        pub mod $m {
            include!(concat!(env!("OUT_DIR"), "/", stringify!($m), ".rs"));
        }
    )*};
}

bindings!(
    #[cfg(feature = "all")]
    seed_2_12,
    #[cfg(feature = "all")]
    qsd_7_2_22,
    qsd_10_0_2,
    #[cfg(feature = "all")]
    system_7_2_22,
    #[cfg(feature = "all")]
    system_10_0_2,
    #[cfg(feature = "all")]
    machine
);

/// Where the bindings of `qsd_10_0_2` come from: `live` (the qemu-storage-daemon that runs
/// here answered `query-qmp-schema` at build time) or `saved` (the recorded answer of
/// qemu-storage-daemon 10.0.2).
pub const QSD_SCHEMA_SOURCE: &str = env!("QSD_SCHEMA_SOURCE");
