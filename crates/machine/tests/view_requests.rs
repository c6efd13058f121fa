//! The version view's request side: a request of a served interface reaches the machine's
//! handlers in the machine's own form (a command under its unstable name, flat properties
//! under `props`, an older interface's no-op answered), and what the own form has no place
//! for is refused in so many words rather than dropped.

mod common;

use std::sync::Arc;

use common::{events, machine, machine_10, run};
use qmpkit_machine::{Machine, MachineConfig};
use serde_json::{json, Value};

/// The `qdev` of the default machine's CD-ROM drive.
fn cd_qdev(m: &mut Machine) -> String {
    let v = run(m, "query-block", json!({})).expect("query-block");
    v.as_array()
        .into_iter()
        .flatten()
        .find(|d| d["device"] == "ide1-cd0")
        .and_then(|d| d["qdev"].as_str())
        .expect("ide1-cd0 has a device")
        .to_string()
}

#[test]
fn a_stable_name_reaches_the_unstable_command() {
    let mut m = machine_10();
    let qdev = cd_qdev(&mut m);
    assert_eq!(
        run(&mut m, "blockdev-remove-medium", json!({"id": qdev})),
        Err(format!("GenericError: Tray of device '{qdev}' is not open"))
    );
    run(&mut m, "blockdev-open-tray", json!({"id": qdev})).expect("open");
    events(&mut m);
    run(&mut m, "blockdev-remove-medium", json!({"id": qdev})).expect("remove");
    let v = run(&mut m, "query-block", json!({})).expect("query-block");
    let cd = v
        .as_array()
        .and_then(|l| l.iter().find(|d| d["device"] == "ide1-cd0"))
        .expect("ide1-cd0");
    assert_eq!(cd.get("inserted"), None, "{cd}");
}

/// QEMU 10.0.2's `blockdev-insert-medium` names no device in its errors (its
/// `blockdev-remove-medium` does), as `qemu-system-x86_64` answers with an `ide-cd` and an
/// `ide-hd` device.
#[test]
fn inserting_a_medium_in_10_0s_words() {
    let mut m = machine_10();
    let qdev = cd_qdev(&mut m);
    for n in ["n1", "n2"] {
        run(
            &mut m,
            "blockdev-add",
            json!({"driver": "null-co", "node-name": n}),
        )
        .expect("blockdev-add");
    }
    let insert = |m: &mut Machine, node: &str| {
        run(
            m,
            "blockdev-insert-medium",
            json!({"id": qdev, "node-name": node}),
        )
    };
    assert_eq!(
        insert(&mut m, "n1"),
        Err("GenericError: Tray of the device is not open".into())
    );
    run(&mut m, "blockdev-open-tray", json!({"id": qdev})).expect("open");
    run(&mut m, "blockdev-remove-medium", json!({"id": qdev})).expect("remove");
    insert(&mut m, "n1").expect("insert");
    assert_eq!(
        insert(&mut m, "n2"),
        Err("GenericError: There already is a medium in the device".into())
    );
    run(&mut m, "blockdev-close-tray", json!({"id": qdev})).expect("close");
    assert_eq!(
        run(&mut m, "blockdev-remove-medium", json!({"id": qdev})),
        Err(format!("GenericError: Tray of device '{qdev}' is not open"))
    );
    let hd = run(&mut m, "query-block", json!({}))
        .expect("query-block")
        .as_array()
        .and_then(|l| l.iter().find(|d| d["device"] == "ide0-hd0").cloned())
        .and_then(|d| d["qdev"].as_str().map(str::to_string))
        .expect("ide0-hd0 has a device");
    assert_eq!(
        run(
            &mut m,
            "blockdev-insert-medium",
            json!({"id": hd, "node-name": "n2"})
        ),
        Err("GenericError: Device is not removable".into())
    );
}

#[test]
fn what_the_own_form_lacks_is_refused() {
    let mut m = machine_10();
    let addr = json!({"type": "unix", "data": {"path": "/nonexistent/nbd.sock"}});
    // QEMU 5.2 added the limit on connections.
    assert_eq!(
        run(
            &mut m,
            "nbd-server-start",
            json!({"addr": addr, "max-connections": 2})
        ),
        Err(
            "GenericError: Command 'nbd-server-start' with 'max-connections' is not \
             implemented by this simulated machine"
                .into()
        )
    );
    // An enum value the machine's interface does not have.
    assert_eq!(
        run(
            &mut m,
            "send-key",
            json!({"keys": [{"type": "qcode", "data": "lang1"}]})
        ),
        Err(
            "GenericError: Command 'send-key' with 'keys.0.data' = \"lang1\" is not \
             implemented by this simulated machine"
                .into()
        )
    );
    // The same call without it goes through.
    run(
        &mut m,
        "send-key",
        json!({"keys": [{"type": "qcode", "data": "a"}]}),
    )
    .expect("send-key");
}

#[test]
fn flat_object_properties_go_under_props() {
    let mut m = machine_10();
    run(
        &mut m,
        "object-add",
        json!({"qom-type": "iothread", "id": "io9", "poll-max-ns": 1000}),
    )
    .expect("object-add");
    let v = run(
        &mut m,
        "qom-get",
        json!({"path": "/objects/io9", "property": "poll-max-ns"}),
    );
    assert_eq!(v, Ok(json!(1000)));
}

/// A default machine serving the seed at `rel` (under the test data's seeds).
fn seed_machine(rel: &str, version: (u64, u64, u64)) -> Machine {
    let p = qmpkit_testkit::data::path(&format!("seeds/{rel}"));
    let s = qmpkit_schema::load(&p, qmpkit_schema::Dialect::Legacy).expect("seed loads");
    let mut c = MachineConfig::default_machine();
    c.qemu_version = version;
    Machine::new(Arc::new(c), Arc::new(s))
}

#[test]
fn query_events_lists_the_served_interface() {
    // The machine's own interface has grown the newer job events; QEMU 2.12's seed lacks
    // them.
    let mut own = machine();
    let mut seed = seed_machine("qemu-2.12-dev/qapi-schema.json", (2, 12, 0));
    let names = |v: Value| -> Vec<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e["name"].as_str().map(str::to_string))
            .collect()
    };
    let own_events = names(run(&mut own, "query-events", json!({})).expect("own"));
    let served = names(run(&mut seed, "query-events", json!({})).expect("2.12 seed"));
    for (list, has, lacks) in [
        (&own_events, "JOB_STATUS_CHANGE", "__org.qmpkit_none"),
        (&served, "BLOCK_JOB_READY", "JOB_STATUS_CHANGE"),
    ] {
        assert!(list.iter().any(|e| e == has), "{has} missing: {list:?}");
        assert!(!list.iter().any(|e| e == lacks), "{lacks} listed");
    }
    assert_ne!(own_events.len(), served.len());
}

#[test]
fn an_older_interfaces_cpu_is_answered() {
    let mut m = seed_machine("qemu-1.0-dev.json", (1, 0, 0));
    assert_eq!(run(&mut m, "cpu", json!({"index": 0})), Ok(json!({})));
}

#[test]
fn a_request_in_the_own_form_passes_as_it_came() {
    use qmpkit_machine::view::{request, Request};
    use std::borrow::Cow;
    let args = json!({"device": "rb", "data": "aGk=", "format": "base64"});
    let args = args.as_object().expect("object");
    match request("ringbuf-write", args) {
        // Not copied, not changed.
        Ok(Request::Own {
            command,
            args: Cow::Borrowed(a),
        }) => {
            assert_eq!(command, "ringbuf-write");
            assert_eq!(a, args);
        }
        Ok(Request::Own { args: a, .. }) => panic!("copied: {a:?}"),
        Ok(Request::Answered(v)) => panic!("answered {v}"),
        Err(e) => panic!("{}", e.desc),
    }
    // Members in another order than the type's are put in its order.
    let swapped = json!({"data": "aGk=", "device": "rb"});
    match request("ringbuf-write", swapped.as_object().expect("object")) {
        Ok(Request::Own { args: a, .. }) => {
            assert_eq!(a.keys().collect::<Vec<_>>(), ["device", "data"])
        }
        _ => panic!("not passed on"),
    }
}
