//! Network: `netdev_add` / `netdev_del` with each back end type's options checked in QEMU's
//! words, `set_link` and the guest's receive filter (`query-rx-filter`,
//! `NIC_RX_FILTER_CHANGED` in QEMU's once-until-read rhythm). The expected errors are what
//! QEMU 10.0.2 (`qemu-system-x86_64 -S -nodefaults`) answered to the same requests, and, for
//! the 2.12 machine, what its `netdev_add` said before the command took QAPI's `Netdev`.

mod common;

use common::{args, machine_with, run};
use qmpkit_machine::{Cx, Machine, MachineConfig};
use serde_json::{json, Value};

fn machine_at(version: (u64, u64, u64), f: impl FnOnce(&mut MachineConfig)) -> Machine {
    machine_with(|c| {
        c.qemu_version = version;
        f(c)
    })
}

fn netdev_add(m: &mut Machine, a: Value) -> Result<Value, String> {
    run(m, "netdev_add", a)
}

fn events(m: &mut Machine) -> Vec<(String, Value)> {
    m.take_raw_events()
        .into_iter()
        .map(|(n, d)| (n, d.unwrap_or(Value::Null)))
        .collect()
}

fn filter_changed(name: &str) -> (String, Value) {
    (
        "NIC_RX_FILTER_CHANGED".to_string(),
        json!({"name": name, "path": format!("/machine/peripheral/{name}/virtio-backend")}),
    )
}

#[test]
fn netdev_errors_in_qemus_words() {
    let mut m = machine_at((10, 0, 2), |_| {});
    let cases: &[(Value, &str)] = &[
        (json!({"type": "user", "id": "1bad"}), "Parameter 'id' expects an identifier"),
        (json!({"type": "user", "id": "hostnet0"}), "Duplicate ID 'hostnet0'"),
        // The type is checked before the id is.
        (
            json!({"type": "nic", "id": "hostnet0"}),
            "network backend 'nic' is not compiled into this binary",
        ),
        (
            json!({"type": "user", "id": "u", "net": "10.0.2.0/40"}),
            "Invalid netmask provided (must be in range 4-32)",
        ),
        (json!({"type": "user", "id": "u", "net": "nonsense"}), "Failed to parse netmask"),
        (
            json!({"type": "user", "id": "u", "net": "10.0.2.0/24", "host": "10.0.3.2"}),
            "Host doesn't belong to network",
        ),
        (
            json!({"type": "user", "id": "u", "dhcpstart": "10.0.3.15"}),
            "DHCP doesn't belong to network",
        ),
        (json!({"type": "user", "id": "u", "ipv4": false, "ipv6": false}), "IPv4 and IPv6 disabled"),
        (
            json!({"type": "user", "id": "u", "ipv6-prefixlen": 200}),
            "Invalid IPv6 prefix provided (IPv6 prefix length must be between 0 and 126)",
        ),
        (json!({"type": "user", "id": "u", "ipv6-prefix": "bad"}), "Failed to parse IPv6 prefix"),
        (
            json!({"type": "user", "id": "u", "hostfwd": [{"str": "tcp::bad"}]}),
            "Invalid host forwarding rule 'tcp::bad' (Bad host port separator)",
        ),
        (
            json!({"type": "user", "id": "u", "hostfwd": [{"str": "foo::2222-:22"}]}),
            "Invalid host forwarding rule 'foo::2222-:22' (Bad protocol name)",
        ),
        (
            json!({"type": "user", "id": "u", "hostfwd": [{"str": "tcp::x-:22"}]}),
            "Invalid host forwarding rule 'tcp::x-:22' (Bad host port)",
        ),
        (
            json!({"type": "user", "id": "u", "hostfwd": [{"str": "tcp:bad:22-:22"}]}),
            "Invalid host forwarding rule 'tcp:bad:22-:22' (Bad host address)",
        ),
        (
            json!({"type": "user", "id": "u", "hostfwd": [{"str": "tcp::22-bad:22"}]}),
            "Invalid host forwarding rule 'tcp::22-bad:22' (Bad guest address)",
        ),
        (
            json!({"type": "user", "id": "u", "hostfwd": [{"str": "tcp::22-:x"}]}),
            "Invalid host forwarding rule 'tcp::22-:x' (Bad guest port)",
        ),
        (
            json!({"type": "user", "id": "u", "hostfwd": [{"str": "tcp::22-22"}]}),
            "Invalid host forwarding rule 'tcp::22-22' (Missing guest address)",
        ),
        (
            json!({"type": "user", "id": "u", "hostfwd": [{"str": "tcp"}]}),
            "Invalid host forwarding rule 'tcp' (No : separators)",
        ),
        (
            json!({"type": "user", "id": "u", "guestfwd": [{"str": "tcp:10.0.2.100-x"}]}),
            "Invalid guest forwarding rule 'tcp:10.0.2.100-x'",
        ),
        (
            json!({"type": "socket", "id": "s"}),
            "exactly one of listen=, connect=, mcast= or udp= is required",
        ),
        (
            json!({"type": "socket", "id": "s", "listen": "127.0.0.1:1", "connect": "127.0.0.1:2"}),
            "exactly one of listen=, connect=, mcast= or udp= is required",
        ),
        (json!({"type": "socket", "id": "s", "udp": "127.0.0.1:5000"}), "localaddr= is mandatory with udp="),
        (
            json!({"type": "socket", "id": "s", "listen": "127.0.0.1:5000", "localaddr": "127.0.0.1"}),
            "localaddr= is only valid with mcast= or udp=",
        ),
        (
            json!({"type": "socket", "id": "s", "listen": "5000"}),
            "host address '5000' doesn't contain ':' separating host from port",
        ),
        (
            json!({"type": "socket", "id": "s", "mcast": "127.0.0.1:5000"}),
            "specified mcastaddr 127.0.0.1 (0x7f000001) does not contain a multicast address",
        ),
        (json!({"type": "socket", "id": "s", "fd": "x"}), "File descriptor named 'x' has not been found"),
        (
            json!({"type": "tap", "id": "t", "fd": "3", "ifname": "x"}),
            "ifname=, script=, downscript=, vnet_hdr=, helper=, queues=, fds=, and vhostfds= are invalid with fd=",
        ),
        (
            json!({"type": "tap", "id": "t", "fds": "3", "ifname": "x"}),
            "ifname=, script=, downscript=, vnet_hdr=, helper=, queues=, and vhostfd= are invalid with fds=",
        ),
        (
            json!({"type": "tap", "id": "t", "helper": "/bin/false", "ifname": "x"}),
            "ifname=, script=, downscript=, vnet_hdr=, queues=, and vhostfds= are invalid with helper=",
        ),
        (
            json!({"type": "tap", "id": "t", "fds": "a:b", "vhostfds": "c"}),
            "The number of fds passed does not match the number of vhostfds passed",
        ),
        (json!({"type": "tap", "id": "t", "fd": "nofd"}), "File descriptor named 'nofd' has not been found"),
        (json!({"type": "tap", "id": "t", "vhostfd": "x"}), "File descriptor named 'x' has not been found"),
        (json!({"type": "bridge", "id": "b"}), "bridge helper failed"),
        (json!({"type": "vhost-user", "id": "v", "chardev": "nope"}), "chardev \"nope\" not found"),
        (
            json!({"type": "l2tpv3", "id": "l", "src": "127.0.0.1", "dst": "127.0.0.1"}),
            "Parameter 'txsession' is missing",
        ),
        (
            json!({"type": "hubport", "id": "h", "hubid": 0, "netdev": "nope"}),
            "netdev 'nope' not found",
        ),
        (json!({"type": "vde", "id": "d"}), "Could not open vde: No such file or directory"),
        (
            json!({"type": "netmap", "id": "d", "ifname": "x"}),
            "network backend 'netmap' is not compiled into this binary",
        ),
        (json!({"type": "dgram", "id": "d"}), "dgram requires local= parameter"),
        (
            json!({"type": "vhost-vdpa", "id": "d"}),
            "vhost-vdpa: neither vhostdev= nor vhostfd= was specified",
        ),
    ];
    for (a, want) in cases {
        assert_eq!(
            netdev_add(&mut m, a.clone()),
            Err(format!("GenericError: {want}")),
            "{a}"
        );
    }
    // A ring buffer is no socket for vhost-user.
    run(
        &mut m,
        "chardev-add",
        json!({"id": "rb0", "backend": {"type": "ringbuf", "data": {}}}),
    )
    .expect("chardev-add");
    assert_eq!(
        netdev_add(
            &mut m,
            json!({"type": "vhost-user", "id": "v", "chardev": "rb0"})
        ),
        Err("GenericError: chardev \"rb0\" is not reconnectable".into())
    );
    // What QEMU accepts, the machine accepts; each back end then exists once.
    for a in [
        json!({"type": "user", "id": "u1", "hostfwd": [{"str": "tcp::2222-:22"}], "dns": "10.0.2.3"}),
        json!({"type": "user", "id": "u2", "net": "192.168.7.0/24", "host": "192.168.7.2"}),
        json!({"type": "socket", "id": "s1", "listen": "127.0.0.1:45678"}),
        json!({"type": "socket", "id": "s2", "mcast": "230.0.0.1:1234"}),
        json!({"type": "hubport", "id": "h1", "hubid": 0}),
        json!({"type": "hubport", "id": "h2", "hubid": 1, "netdev": "hostnet0"}),
        json!({"type": "l2tpv3", "id": "l1", "src": "127.0.0.1", "dst": "127.0.0.1", "txsession": 1}),
        json!({"type": "tap", "id": "t1", "ifname": "qmpkit0"}),
    ] {
        assert_eq!(netdev_add(&mut m, a.clone()), Ok(json!({})), "{a}");
    }
    assert_eq!(
        netdev_add(&mut m, json!({"type": "user", "id": "u1"})),
        Err("GenericError: Duplicate ID 'u1'".into())
    );
    assert_eq!(
        run(&mut m, "netdev_del", json!({"id": "u1"})),
        Ok(json!({}))
    );
    assert_eq!(
        run(&mut m, "netdev_del", json!({"id": "u1"})),
        Err("DeviceNotFound: Device 'u1' not found".into())
    );
    assert_eq!(
        netdev_add(&mut m, json!({"type": "user", "id": "u1"})),
        Ok(json!({}))
    );
}

#[test]
fn netdev_add_before_qapi_netdev() {
    // The 2.12 interface takes options as strings and checks the id first.
    let mut m = machine_at((2, 12, 0), |_| {});
    assert_eq!(
        netdev_add(&mut m, json!({"type": "user", "id": "hostnet0"})),
        Err("GenericError: Duplicate ID 'hostnet0' for netdev".into())
    );
    assert_eq!(
        netdev_add(&mut m, json!({"type": "nic", "id": "n1"})),
        Err("GenericError: Parameter 'type' expects a netdev backend type".into())
    );
    assert_eq!(
        netdev_add(
            &mut m,
            json!({"type": "user", "id": "u", "net": "10.0.2.0/40"})
        ),
        Err("GenericError: Invalid netmask provided (must be in range 4-32)".into())
    );
    assert_eq!(
        netdev_add(
            &mut m,
            json!({"type": "user", "id": "u", "hostfwd": "tcp::bad", "ipv4": "on"})
        ),
        Err(
            "GenericError: Invalid host forwarding rule 'tcp::bad' (Bad host port separator)"
                .into()
        )
    );
    assert_eq!(
        netdev_add(&mut m, json!({"type": "hubport", "id": "h", "hubid": "0"})),
        Ok(json!({}))
    );
}

#[test]
fn tap_takes_a_passed_descriptor_and_netdev_del_releases_it() {
    let mut m = machine_at((10, 0, 2), |_| {});
    let (a, _b) = std::os::unix::net::UnixStream::pair().expect("pair");
    let fd: std::os::fd::OwnedFd = a.into();
    let mut cx = Cx {
        fds: vec![fd],
        ..Default::default()
    };
    m.execute("getfd", &args(json!({"fdname": "tapfd"})), &mut cx)
        .expect("getfd handled")
        .expect("getfd");
    assert_eq!(
        netdev_add(&mut m, json!({"type": "tap", "id": "t", "fd": "tapfd"})),
        Ok(json!({}))
    );
    // Taken: the name is free again.
    assert_eq!(
        netdev_add(&mut m, json!({"type": "tap", "id": "t2", "fd": "tapfd"})),
        Err("GenericError: File descriptor named 'tapfd' has not been found".into())
    );
    assert_eq!(m.net.held.get("t").map(Vec::len), Some(1));
    assert_eq!(run(&mut m, "netdev_del", json!({"id": "t"})), Ok(json!({})));
    assert!(m.net.held.get("t").is_none());
}

#[test]
fn unplugging_a_link_changes_the_guest_filter() {
    let mut m = machine_at((2, 12, 0), |_| {});
    events(&mut m);
    let f = run(&mut m, "query-rx-filter", json!({})).expect("query-rx-filter");
    assert_eq!(
        f,
        json!([{
            "name": "net0", "promiscuous": false, "multicast": "normal", "unicast": "normal",
            "vlan": "normal", "broadcast-allowed": false, "multicast-overflow": false,
            "unicast-overflow": false, "main-mac": "52:54:00:12:34:56", "vlan-table": [0],
            "unicast-table": [],
            "multicast-table": ["01:00:5e:00:00:01", "33:33:00:00:00:01", "33:33:ff:12:34:56"]
        }])
    );
    // Link down: the guest leaves its IPv6 groups, and says so once.
    assert_eq!(
        run(&mut m, "set_link", json!({"name": "net0", "up": false})),
        Ok(json!({}))
    );
    assert_eq!(events(&mut m), vec![filter_changed("net0")]);
    let f = run(&mut m, "query-rx-filter", json!({"name": "net0"})).expect("query");
    assert_eq!(f[0]["multicast-table"], json!(["01:00:5e:00:00:01"]));
    // Back up: the groups come back; the query re-armed the event.
    run(&mut m, "set_link", json!({"name": "net0", "up": true})).expect("set_link");
    assert_eq!(events(&mut m), vec![filter_changed("net0")]);
    // Down again without a query in between: the filter changes, no event.
    run(&mut m, "set_link", json!({"name": "net0", "up": false})).expect("set_link");
    assert!(events(&mut m).is_empty());
    let f = run(&mut m, "query-rx-filter", json!({"name": "net0"})).expect("query");
    assert_eq!(f[0]["multicast-table"], json!(["01:00:5e:00:00:01"]));
    // The back end's own link: the guest does not see it.
    run(&mut m, "set_link", json!({"name": "net0", "up": true})).expect("set_link");
    events(&mut m);
    run(&mut m, "query-rx-filter", json!({})).expect("query");
    run(&mut m, "set_link", json!({"name": "hostnet0", "up": false})).expect("set_link");
    assert!(events(&mut m).is_empty());
    assert_eq!(
        run(&mut m, "set_link", json!({"name": "nope", "up": false})),
        Err("DeviceNotFound: Device 'nope' not found".into())
    );
}

#[test]
fn guest_programs_its_filter() {
    let mut m = machine_at((2, 12, 0), |_| {});
    events(&mut m);
    let set = |m: &mut Machine, a: Value| run(m, "__org.qmpkit_guest-rx-filter", a);
    set(
        &mut m,
        json!({"name": "net0", "promiscuous": true, "vlan-table": [100, 4, 100],
               "unicast-table": ["52:54:00:aa:bb:cc"], "multicast": "all"}),
    )
    .expect("guest-rx-filter");
    assert_eq!(events(&mut m), vec![filter_changed("net0")]);
    // Another change before anybody read the filter: no second event.
    set(
        &mut m,
        json!({"name": "net0", "main-mac": "52:54:00:AB:CD:EF"}),
    )
    .expect("guest-rx-filter");
    assert!(events(&mut m).is_empty());
    let f = run(&mut m, "query-rx-filter", json!({"name": "net0"})).expect("query");
    assert_eq!(f[0]["promiscuous"], true);
    assert_eq!(f[0]["multicast"], "all");
    assert_eq!(f[0]["vlan-table"], json!([100, 4]));
    assert_eq!(f[0]["unicast-table"], json!(["52:54:00:aa:bb:cc"]));
    assert_eq!(f[0]["main-mac"], "52:54:00:ab:cd:ef");
    // Setting what is already there changes nothing and says nothing.
    set(&mut m, json!({"name": "net0", "promiscuous": true})).expect("guest-rx-filter");
    assert!(events(&mut m).is_empty());
    set(&mut m, json!({"name": "net0", "promiscuous": false})).expect("guest-rx-filter");
    assert_eq!(events(&mut m), vec![filter_changed("net0")]);
}

#[test]
fn rx_filter_of_each_card_and_qemus_errors() {
    let mut m = machine_at((10, 0, 2), |c| {
        c.apply_option("netdev", Some("user,id=n1"))
            .expect("-netdev");
        c.apply_option("device", Some("e1000,id=e0,netdev=n1"))
            .expect("-device");
        c.apply_option("device", Some("virtio-net-pci,id=net2"))
            .expect("-device");
    });
    let all = run(&mut m, "query-rx-filter", json!({})).expect("query");
    let names: Vec<&str> = all
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f["name"].as_str())
        .collect();
    // Only virtio cards have a filter to read.
    assert_eq!(names, ["net0", "net2"]);
    // net0 took 52:54:00:12:34:56; the e1000 took :57, so net2 has :58.
    assert_eq!(all[1]["main-mac"], "52:54:00:12:34:58");
    let err = |m: &mut Machine, name: &str| run(m, "query-rx-filter", json!({ "name": name }));
    assert_eq!(
        err(&mut m, "e0"),
        Err("GenericError: net client(e0) doesn't support rx-filter querying".into())
    );
    assert_eq!(
        err(&mut m, "hostnet0"),
        Err("GenericError: net client(hostnet0) isn't a NIC".into())
    );
    assert_eq!(
        err(&mut m, "nope"),
        Err("GenericError: invalid net client name: nope".into())
    );
    // set_link on a card of any model.
    assert_eq!(
        run(&mut m, "set_link", json!({"name": "e0", "up": false})),
        Ok(json!({}))
    );
}

#[test]
fn rocker_without_a_switch() {
    let mut m = machine_at((10, 0, 2), |_| {});
    for cmd in [
        "query-rocker",
        "query-rocker-ports",
        "query-rocker-of-dpa-flows",
        "query-rocker-of-dpa-groups",
    ] {
        assert_eq!(
            run(&mut m, cmd, json!({"name": "sw1"})),
            Err("GenericError: rocker sw1 not found".into()),
            "{cmd}"
        );
    }
}

#[test]
fn a_card_plugged_again_starts_afresh() {
    let mut m = machine_at((2, 12, 0), |_| {});
    run(&mut m, "set_link", json!({"name": "net0", "up": false})).expect("set_link");
    run(&mut m, "device_del", json!({"id": "net0"})).expect("device_del");
    common::step(&mut m, 10_000);
    assert!(events(&mut m).iter().any(|(n, _)| n == "DEVICE_DELETED"));
    assert_eq!(
        run(&mut m, "query-rx-filter", json!({"name": "net0"})),
        Err("GenericError: invalid net client name: net0".into())
    );
    run(
        &mut m,
        "device_add",
        json!({"driver": "virtio-net-pci", "id": "net0", "netdev": "hostnet0"}),
    )
    .expect("device_add");
    let f = run(&mut m, "query-rx-filter", json!({"name": "net0"})).expect("query");
    assert_eq!(
        f[0]["multicast-table"],
        json!([
            "01:00:5e:00:00:01",
            "33:33:00:00:00:01",
            "33:33:ff:12:34:56"
        ])
    );
}
