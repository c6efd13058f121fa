//! Message builders and envelope checks against lines QEMU sent.

use qmpkit_wire::{
    encode_line, json::decode_all, qemu_order, response_error, response_return, ErrorClass, Event,
    Greeting, QmpError, Request,
};
use serde_json::{json, Value};

fn line(v: &Value) -> String {
    String::from_utf8_lossy(&encode_line(v)).into_owned()
}

fn request(text: &str, allow_oob: bool) -> Result<Request, String> {
    let v = decode_all(text.as_bytes()).remove(0).expect("valid JSON");
    Request::parse(v, allow_oob).map_err(|e| line(&e.to_response()))
}

#[test]
fn greeting() {
    let g = Greeting {
        major: 10,
        minor: 0,
        micro: 2,
        package: "Debian 1:10.0.2+ds-2+deb13u1~bpo12+1".into(),
        capabilities: vec!["oob".into()],
    };
    assert_eq!(
        line(&g.to_value()),
        "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 2, \"minor\": 0, \"major\": 10}, \"package\": \"Debian 1:10.0.2+ds-2+deb13u1~bpo12+1\"}, \"capabilities\": [\"oob\"]}}\r\n"
    );
}

#[test]
fn responses() {
    assert_eq!(
        line(&response_return(json!({}), None)),
        "{\"return\": {}}\r\n"
    );
    assert_eq!(
        line(&response_return(json!({}), Some(json!("q")))),
        "{\"return\": {}, \"id\": \"q\"}\r\n"
    );
    let e = QmpError::new(
        ErrorClass::CommandNotFound,
        "The command nope has not been found",
    );
    assert_eq!(
        line(&response_error(&e, Some(json!({"k": [1, 2.5]})))),
        "{\"id\": {\"k\": [1, 2.5]}, \"error\": {\"class\": \"CommandNotFound\", \"desc\": \"The command nope has not been found\"}}\r\n"
    );
    // A result built in schema order prints in QEMU's order after qemu_order.
    let status = json!({"running": false, "singlestep": false, "status": "prelaunch"});
    assert_eq!(
        line(&response_return(qemu_order(status), Some(json!("str")))),
        "{\"return\": {\"status\": \"prelaunch\", \"singlestep\": false, \"running\": false}, \"id\": \"str\"}\r\n"
    );
}

#[test]
fn events() {
    let e = Event {
        seconds: 1795462007,
        microseconds: 768529,
        event: "SHUTDOWN".into(),
        data: Some(json!({"guest": false, "reason": "host-qmp-quit"})),
    };
    assert_eq!(
        line(&e.to_value()),
        "{\"timestamp\": {\"seconds\": 1795462007, \"microseconds\": 768529}, \"event\": \"SHUTDOWN\", \"data\": {\"guest\": false, \"reason\": \"host-qmp-quit\"}}\r\n"
    );
    let e = Event {
        seconds: 1,
        microseconds: 2,
        event: "STOP".into(),
        data: None,
    };
    assert_eq!(
        line(&e.to_value()),
        "{\"timestamp\": {\"seconds\": 1, \"microseconds\": 2}, \"event\": \"STOP\"}\r\n"
    );
    let now = Event::now("RESUME", None);
    assert!(now.seconds > 1_700_000_000 && (0..1_000_000).contains(&now.microseconds));
}

#[test]
fn requests() {
    let r = request(
        r#"{"id": 7, "execute": "query-version", "arguments": {"b": 1, "a": 2}}"#,
        false,
    )
    .expect("ok");
    assert_eq!(
        (r.command.as_str(), r.oob, r.id),
        ("query-version", false, Some(json!(7)))
    );
    assert_eq!(
        r.arguments.map(|a| a.keys().cloned().collect::<Vec<_>>()),
        Some(vec!["b".to_owned(), "a".to_owned()])
    );
    let r = request(r#"{"exec-oob": "migrate-pause", "id": 2}"#, true).expect("ok");
    assert!(r.oob);
    // The id comes out in the order QEMU prints it.
    let r = request(
        r#"{"execute": "x", "id": {"major": 1, "minor": 2, "micro": 3}}"#,
        false,
    )
    .expect("ok");
    assert_eq!(
        qmpkit_wire::to_qemu_string(&r.id.expect("id")),
        r#"{"micro": 3, "minor": 2, "major": 1}"#
    );
}

#[test]
fn envelope_errors() {
    let err =
        |d: &str| format!("{{\"error\": {{\"class\": \"GenericError\", \"desc\": \"{d}\"}}}}\r\n");
    let err_id = |id: &str, d: &str| {
        format!(
            "{{\"id\": {id}, \"error\": {{\"class\": \"GenericError\", \"desc\": \"{d}\"}}}}\r\n"
        )
    };
    let cases: &[(&str, bool, String)] = &[
        ("[]", false, err("QMP input must be a JSON object")),
        ("{}", false, err("QMP input lacks member 'execute'")),
        (
            r#"{"arguments": {}}"#,
            false,
            err("QMP input lacks member 'execute'"),
        ),
        (
            r#"{"execute": 42}"#,
            false,
            err("QMP input member 'execute' must be a string"),
        ),
        (
            r#"{"execute": "x", "arguments": []}"#,
            false,
            err("QMP input member 'arguments' must be an object"),
        ),
        (
            r#"{"execute": "x", "foo": 1}"#,
            false,
            err("QMP input member 'foo' is unexpected"),
        ),
        (
            r#"{"execute": "x", "exec-oob": "y"}"#,
            false,
            err("QMP input member 'exec-oob' is unexpected"),
        ),
        (
            r#"{"exec-oob": "x", "id": 1}"#,
            false,
            err_id("1", "QMP input member 'exec-oob' is unexpected"),
        ),
        (
            r#"{"exec-oob": 1, "id": 1}"#,
            true,
            err_id("1", "QMP input member 'exec-oob' must be a string"),
        ),
        // With oob, both members clash when QEMU meets the second (exec-oob walks first), after
        // the checks of the members it met before and before those of the rest.
        (
            r#"{"exec-oob": "x", "execute": "y", "id": 1}"#,
            true,
            err_id("1", "QMP input member 'execute' clashes with 'exec-oob'"),
        ),
        (
            r#"{"execute": "y", "exec-oob": "x"}"#,
            true,
            err("QMP input member 'execute' clashes with 'exec-oob'"),
        ),
        (
            r#"{"execute": "y", "exec-oob": "x", "arguments": 1, "foo": 2}"#,
            true,
            err("QMP input member 'execute' clashes with 'exec-oob'"),
        ),
        (
            r#"{"execute": "y", "exec-oob": "x", "x": 2}"#,
            true,
            err("QMP input member 'x' is unexpected"),
        ),
        (
            r#"{"execute": 1, "exec-oob": "x"}"#,
            true,
            err("QMP input member 'execute' must be a string"),
        ),
        (
            r#"{"execute": "y", "exec-oob": 1}"#,
            true,
            err("QMP input member 'exec-oob' must be a string"),
        ),
        // Several problems: QEMU reports the first member in its walking order.
        (
            r#"{"arguments": [], "execute": 1}"#,
            false,
            err("QMP input member 'execute' must be a string"),
        ),
        (
            r#"{"zzz": 1, "execute": 1}"#,
            false,
            err("QMP input member 'execute' must be a string"),
        ),
    ];
    for (text, oob, expected) in cases {
        assert_eq!(
            request(text, *oob).err().as_deref(),
            Some(expected.as_str()),
            "{text}"
        );
    }
}

#[test]
fn overflowed_ids_echo_as_infinities() {
    // QEMU reads a number beyond a double's range as an infinity and echoes it with "%.17g".
    let version = json!({"qemu": {"micro": 2, "minor": 0, "major": 10},
        "package": "Debian 1:10.0.2+ds-2+deb13u1~bpo12+1"});
    for (input, id) in [("1e400", "inf"), ("-1e400", "-inf")] {
        let text = format!(r#"{{"execute": "query-version", "id": {input}}}"#);
        for fast in [true, false] {
            let mut s = if fast {
                qmpkit_wire::JsonStreamer::new()
            } else {
                qmpkit_wire::JsonStreamer::exact_only()
            };
            let mut out = Vec::new();
            s.feed(format!("{text}\n").as_bytes(), &mut out);
            let r = Request::parse(out.remove(0).expect("valid JSON"), false).expect("request");
            assert_eq!(
                line(&response_return(version.clone(), r.id.clone())),
                format!("{{\"return\": {{\"qemu\": {{\"micro\": 2, \"minor\": 0, \"major\": 10}}, \"package\": \"Debian 1:10.0.2+ds-2+deb13u1~bpo12+1\"}}, \"id\": {id}}}\r\n")
            );
            let e = QmpError::new(
                ErrorClass::CommandNotFound,
                "The command nope has not been found",
            );
            assert_eq!(
                line(&response_error(&e, r.id)),
                format!("{{\"id\": {id}, \"error\": {{\"class\": \"CommandNotFound\", \"desc\": \"The command nope has not been found\"}}}}\r\n")
            );
        }
    }
    // Inside an id too.
    let r = request(r#"{"execute": "x", "id": [1e400, {"a": -1e999}]}"#, false).expect("ok");
    assert_eq!(
        line(&response_return(json!({}), r.id)),
        "{\"return\": {}, \"id\": [inf, {\"a\": -inf}]}\r\n"
    );
}

#[test]
fn streamer_is_idle_between_messages() {
    let mut s = qmpkit_wire::JsonStreamer::new();
    let mut out = Vec::new();
    assert!(s.is_idle());
    s.feed(b"{\"execute\": \"qmp_capabilities\"}", &mut out);
    assert_eq!(out.len(), 1);
    assert!(s.is_idle());
    s.feed(b"{\"execute\": ", &mut out);
    assert!(!s.is_idle());
    s.feed(b"\"x\"}\n", &mut out);
    assert_eq!(out.len(), 2);
    assert!(s.is_idle());
    s.feed(b"'a", &mut out);
    assert!(!s.is_idle());
}
