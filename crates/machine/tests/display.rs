mod common;

use common::*;
use qmpkit_machine::Machine;
use serde_json::json;

/// The error `cmd` answers, as "Class: desc".
fn fails(m: &mut Machine, cmd: &str, a: serde_json::Value) -> String {
    run(m, cmd, a).unwrap_err()
}

fn screendump(m: &mut Machine, name: &str) -> Vec<u8> {
    let f = tmp(name);
    ok(run(
        m,
        "screendump",
        json!({"filename": f.to_str().unwrap()}),
    ));
    std::fs::read(&f).unwrap()
}

#[test]
fn screendump_is_a_ppm_that_follows_the_guest() {
    let mut m = machine();
    let a = screendump(&mut m, "s1.ppm");
    let header = b"P6\n720 400\n255\n";
    assert_eq!(&a[..header.len()], header);
    assert_eq!(a.len(), header.len() + 720 * 400 * 3);
    // Not blank.
    assert!(a[header.len()..].iter().any(|&b| b != 0));
    // Typing changes the picture; the same state gives the same picture.
    ok(run(
        &mut m,
        "send-key",
        json!({"keys": [{"type": "qcode", "data": "r"}]}),
    ));
    let b = screendump(&mut m, "s2.ppm");
    assert_ne!(a, b);
    let c = screendump(&mut m, "s3.ppm");
    assert_eq!(b, c);
    // Before the guest starts, QEMU's placeholder text.
    let mut p = machine_with(|c| c.start_paused = true);
    let text = qmpkit_machine::display::screen_text(&p);
    assert_eq!(text, vec!["Guest has not initialized the display (yet)."]);
    let d = screendump(&mut p, "s4.ppm");
    assert_ne!(d, a);
}

#[test]
fn screendump_errors() {
    let mut m = machine();
    assert_eq!(
        fails(
            &mut m,
            "screendump",
            json!({"filename": "/nonexistent/x.ppm"})
        ),
        "GenericError: failed to open file '/nonexistent/x.ppm': No such file or directory"
    );
}

#[test]
fn vnc_queries_and_passwords() {
    let mut m = machine();
    assert_eq!(
        ok(run(&mut m, "query-vnc", json!({}))),
        json!({"enabled": true, "host": "0.0.0.0", "family": "ipv4", "service": "5900", "auth": "vnc", "clients": []})
    );
    ok(run(
        &mut m,
        "set_password",
        json!({"protocol": "vnc", "password": "secret"}),
    ));
    assert_eq!(m.display.password.as_deref(), Some("secret"));
    ok(run(
        &mut m,
        "expire_password",
        json!({"protocol": "vnc", "time": "+60"}),
    ));
    ok(run(
        &mut m,
        "expire_password",
        json!({"protocol": "vnc", "time": "never"}),
    ));
    ok(run(
        &mut m,
        "change",
        json!({"device": "vnc", "target": "password", "arg": "foobar1"}),
    ));
    assert_eq!(m.display.password.as_deref(), Some("foobar1"));
    ok(run(&mut m, "change-vnc-password", json!({"password": "x"})));
    assert_eq!(
        fails(
            &mut m,
            "set_password",
            json!({"protocol": "spice", "password": "s"})
        ),
        "DeviceNotActive: No spice device has been activated"
    );
    assert_eq!(
        fails(
            &mut m,
            "set_password",
            json!({"protocol": "rdp", "password": "s"})
        ),
        "GenericError: Invalid parameter 'protocol'"
    );
    assert_eq!(
        fails(
            &mut m,
            "set_password",
            json!({"protocol": "vnc", "password": "s", "connected": "fail"})
        ),
        "GenericError: Invalid parameter 'connected'"
    );
    let mut off = machine_with(|c| c.vnc = None);
    assert_eq!(
        ok(run(&mut off, "query-vnc", json!({}))),
        json!({"enabled": false})
    );
    assert_eq!(
        fails(
            &mut off,
            "set_password",
            json!({"protocol": "vnc", "password": "s"})
        ),
        "GenericError: Could not set password"
    );
}

#[test]
fn screendump_png() {
    // `format` came with QEMU 7.1.
    let mut m = machine_10();
    let f = tmp("s.png");
    ok(run(
        &mut m,
        "screendump",
        json!({"filename": f.to_str().unwrap(), "format": "png"}),
    ));
    let data = std::fs::read(&f).unwrap();
    assert_eq!(&data[..8], b"\x89PNG\r\n\x1a\n");
    assert_eq!(&data[12..16], b"IHDR");
    assert_eq!(
        u32::from_be_bytes([data[16], data[17], data[18], data[19]]),
        720
    );
    assert_eq!(
        u32::from_be_bytes([data[20], data[21], data[22], data[23]]),
        400
    );
    // Decode with Python's zlib when there is one: the pixels equal the PPM's.
    let ppm = {
        let p = tmp("s-cmp.ppm");
        ok(run(
            &mut m,
            "screendump",
            json!({"filename": p.to_str().unwrap()}),
        ));
        std::fs::read(&p).unwrap()
    };
    let script = r#"
import sys, zlib, struct
d = open(sys.argv[1], 'rb').read()
i, idat = 8, b''
while i < len(d):
    n, = struct.unpack('>I', d[i:i+4]); k = d[i+4:i+8]
    body = d[i+8:i+8+n]
    assert zlib.crc32(k + body) & 0xffffffff == struct.unpack('>I', d[i+8+n:i+12+n])[0]
    if k == b'IDAT': idat += body
    i += 12 + n
raw = zlib.decompress(idat)
w = 720 * 3 + 1
sys.stdout.buffer.write(b''.join(raw[r*w+1:(r+1)*w] for r in range(400)))
"#;
    match std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(&f)
        .output()
    {
        Ok(out) if out.status.success() => {
            assert_eq!(out.stdout, ppm[15..].to_vec());
        }
        Ok(out) => panic!("png check failed: {}", String::from_utf8_lossy(&out.stderr)),
        Err(_) => qmpkit_testkit::skip::skip("python3 not found"),
    }
}

fn viewer(m: &mut Machine, a: serde_json::Value) -> serde_json::Value {
    ok(run(m, "__org.qmpkit_viewer-connect", a))
}

const SERVER: &str =
    r#"{"host":"0.0.0.0","service":"5900","family":"ipv4","websocket":false,"auth":"vnc"}"#;

#[test]
fn viewers_connect_authenticate_and_leave_with_qemus_events() {
    let mut m = machine();
    events(&mut m);
    // No password set: QEMU refuses every viewer of a password server.
    assert_eq!(
        viewer(
            &mut m,
            json!({"protocol": "vnc", "service": "40001", "password": "x"})
        ),
        json!({"service": "40001", "accepted": false, "reason": "Authentication failed"})
    );
    let client = r#"{"host":"127.0.0.1","service":"40001","family":"ipv4","websocket":false}"#;
    assert_eq!(
        events(&mut m),
        [
            format!("VNC_CONNECTED {{\"server\":{SERVER},\"client\":{client}}}"),
            format!("VNC_DISCONNECTED {{\"server\":{SERVER},\"client\":{client}}}"),
        ]
    );
    ok(run(
        &mut m,
        "set_password",
        json!({"protocol": "vnc", "password": "secret"}),
    ));
    // Only the first eight characters count, as in VNC's DES authentication.
    assert_eq!(
        viewer(
            &mut m,
            json!({"protocol": "vnc", "service": "40002", "password": "secret"})
        )["accepted"],
        true
    );
    assert_eq!(
        viewer(
            &mut m,
            json!({"protocol": "vnc", "host": "::1", "password": "secret\u{0}\u{0}xyz"})
        )["accepted"],
        true
    );
    assert_eq!(
        viewer(&mut m, json!({"protocol": "vnc", "password": "wrong"}))["accepted"],
        false
    );
    let ev = events(&mut m);
    let names: Vec<&str> = ev.iter().map(|e| e.split(' ').next().unwrap()).collect();
    assert_eq!(
        names,
        [
            "VNC_CONNECTED",
            "VNC_INITIALIZED",
            "VNC_CONNECTED",
            "VNC_INITIALIZED",
            "VNC_CONNECTED",
            "VNC_DISCONNECTED"
        ]
    );
    assert_eq!(
        ev[3],
        format!("VNC_INITIALIZED {{\"server\":{SERVER},\"client\":{{\"host\":\"::1\",\"service\":\"49152\",\"family\":\"ipv6\",\"websocket\":false}}}}")
    );
    // The newest viewer first, as QEMU lists them.
    let clients = json!([
        {"host": "::1", "service": "49152", "family": "ipv6", "websocket": false},
        {"host": "127.0.0.1", "service": "40002", "family": "ipv4", "websocket": false}
    ]);
    assert_eq!(ok(run(&mut m, "query-vnc", json!({})))["clients"], clients);
    assert_eq!(
        ok(run(&mut m, "query-vnc-servers", json!({})))[0]["clients"],
        clients
    );
    assert_eq!(
        hmp(&mut m, "info vnc"),
        "default:\r\n  Server: 0.0.0.0:5900 (ipv4)\r\n    Auth: vnc (Sub: none)\r\n  \
         Client: ::1:49152 (ipv6)\r\n    x509_dname: none\r\n    sasl_username: none\r\n  \
         Client: 127.0.0.1:40002 (ipv4)\r\n    x509_dname: none\r\n    sasl_username: none\r\n  \
         Display: video0\r\n"
    );
    ok(run(
        &mut m,
        "__org.qmpkit_viewer-disconnect",
        json!({"protocol": "vnc", "service": "40002"}),
    ));
    assert_eq!(
        events(&mut m),
        [format!("VNC_DISCONNECTED {{\"server\":{SERVER},\"client\":{{\"host\":\"127.0.0.1\",\"service\":\"40002\",\"family\":\"ipv4\",\"websocket\":false}}}}")]
    );
    assert_eq!(
        ok(run(&mut m, "query-vnc", json!({})))["clients"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        fails(
            &mut m,
            "__org.qmpkit_viewer-disconnect",
            json!({"protocol": "vnc", "service": "40002"})
        ),
        "GenericError: No VNC viewer is connected from port 40002"
    );
    // A server without a password lets every viewer in.
    let mut open = machine_with(|c| c.vnc = Some("127.0.0.1:3".into()));
    assert_eq!(ok(run(&mut open, "query-vnc", json!({})))["auth"], "none");
    assert_eq!(
        viewer(&mut open, json!({"protocol": "vnc"}))["accepted"],
        true
    );
    assert_eq!(
        fails(
            &mut open,
            "set_password",
            json!({"protocol": "vnc", "password": "s"})
        ),
        "GenericError: Could not set password"
    );
}

#[test]
fn server_authentication_shapes_follow_the_options() {
    let mut m = machine_with(|c| {
        c.vnc = Some("127.0.0.1:77,websocket=on,sasl=on".into());
    });
    assert_eq!(
        ok(run(&mut m, "query-vnc-servers", json!({}))),
        json!([{"id": "default", "server": [
            {"host": "127.0.0.1", "service": "5777", "family": "ipv4", "websocket": true, "auth": "sasl"},
            {"host": "127.0.0.1", "service": "5977", "family": "ipv4", "websocket": false, "auth": "sasl"}],
            "clients": [], "auth": "sasl", "display": "video0"}])
    );
    // A SASL viewer names its user; the websocket one says so; the events name the main
    // listener.
    assert_eq!(
        viewer(
            &mut m,
            json!({"protocol": "vnc", "websocket": true, "sasl-username": "fred"})
        )["accepted"],
        true
    );
    assert_eq!(
        events(&mut m)[1],
        "VNC_INITIALIZED {\"server\":{\"host\":\"127.0.0.1\",\"service\":\"5977\",\"family\":\"ipv4\",\"websocket\":false,\"auth\":\"sasl\"},\
         \"client\":{\"host\":\"127.0.0.1\",\"service\":\"49152\",\"family\":\"ipv4\",\"websocket\":true,\"sasl_username\":\"fred\"}}"
    );
    assert_eq!(
        fails(
            &mut m,
            "__org.qmpkit_viewer-connect",
            json!({"protocol": "vnc", "x509-dname": "CN=a"})
        ),
        "GenericError: A client certificate needs a VNC server with x509 credentials"
    );
    let mut tls = machine_with(|c| {
        c.vnc = Some("127.0.0.1:77,tls-creds=tls0,password=on".into());
    });
    assert_eq!(
        ok(run(&mut tls, "query-vnc", json!({})))["auth"],
        "vencrypt+x509+vnc"
    );
    let s = ok(run(&mut tls, "query-vnc-servers", json!({})));
    assert_eq!(
        (&s[0]["auth"], &s[0]["vencrypt"]),
        (&json!("vencrypt"), &json!("x509-vnc"))
    );
    ok(run(
        &mut tls,
        "set_password",
        json!({"protocol": "vnc", "password": "pw"}),
    ));
    viewer(
        &mut tls,
        json!({"protocol": "vnc", "password": "pw", "x509-dname": "CN=viewer"}),
    );
    assert_eq!(
        ok(run(&mut tls, "query-vnc", json!({})))["clients"][0]["x509_dname"],
        "CN=viewer"
    );
    let mut none = machine_with(|c| c.vnc = None);
    let e = fails(
        &mut none,
        "__org.qmpkit_viewer-connect",
        json!({"protocol": "vnc"}),
    );
    assert_eq!(e, "GenericError: The machine has no VNC server");
}

/// `expire_password` for VNC at `time`.
fn expire(m: &mut Machine, time: impl Into<serde_json::Value>) {
    ok(run(
        m,
        "expire_password",
        json!({"protocol": "vnc", "time": time.into()}),
    ));
}

#[test]
fn password_expiry_follows_the_machine_clock() {
    let mut m = machine();
    ok(run(
        &mut m,
        "set_password",
        json!({"protocol": "vnc", "password": "pw"}),
    ));
    let try_in = |m: &mut Machine| {
        viewer(m, json!({"protocol": "vnc", "password": "pw"}))["accepted"] == json!(true)
    };
    expire(&mut m, "+60");
    // The clock may sit anywhere inside its current second: 59 s on is still before the
    // expiry, 61 s on is after it.
    step(&mut m, 59_000);
    assert!(try_in(&mut m));
    step(&mut m, 2_000);
    assert!(!try_in(&mut m));
    // Setting the password again keeps the expiry, as QEMU does.
    ok(run(
        &mut m,
        "set_password",
        json!({"protocol": "vnc", "password": "pw"}),
    ));
    assert!(!try_in(&mut m));
    expire(&mut m, "never");
    assert!(try_in(&mut m));
    expire(&mut m, "now");
    assert!(!try_in(&mut m));
    // Absolute times are seconds since the epoch on the machine's clock.
    let now = qmpkit_machine::display::wall_secs(&m);
    expire(&mut m, (now + 10).to_string());
    assert!(try_in(&mut m));
    step(&mut m, 12_000);
    assert!(!try_in(&mut m));
    // strtoull's forms: blanks before the number, a sign (a negative time is long past).
    for t in [" 5", "-5", "+-5"] {
        expire(&mut m, "never");
        expire(&mut m, t);
        assert!(!try_in(&mut m), "{t}");
    }
    // Anything else is refused in QEMU's words, and the expiry stays.
    expire(&mut m, "never");
    for t in [
        "abc",
        "+abc",
        "",
        "5x",
        "+",
        "NOW",
        "99999999999999999999999",
    ] {
        assert_eq!(
            fails(
                &mut m,
                "expire_password",
                json!({"protocol": "vnc", "time": t})
            ),
            format!("GenericError: Parameter 'time' doesn't take value '{t}'")
        );
    }
    assert!(try_in(&mut m));
}

/// A client's side of RFB 3.8 on `s`, up to `ServerInit`: what the server sent at each
/// step. `poll` lets the machine serve the connection.
fn rfb_client(
    s: &mut std::os::unix::net::UnixStream,
    password: Option<&str>,
    mut poll: impl FnMut(),
) -> Vec<Vec<u8>> {
    use std::io::{Read, Write};
    s.set_read_timeout(Some(std::time::Duration::from_millis(50)))
        .unwrap();
    let read = |s: &mut std::os::unix::net::UnixStream, poll: &mut dyn FnMut()| {
        let mut got = Vec::new();
        for _ in 0..20 {
            poll();
            let mut b = [0u8; 65536];
            match s.read(&mut b) {
                Ok(0) => break,
                Ok(n) => {
                    got.extend_from_slice(&b[..n]);
                    break;
                }
                Err(_) => {}
            }
        }
        got
    };
    let mut seen = vec![read(s, &mut poll)];
    s.write_all(b"RFB 003.008\n").unwrap();
    seen.push(read(s, &mut poll));
    let sec = seen[1].get(1).copied().unwrap_or(0);
    s.write_all(&[sec]).unwrap();
    if sec == 2 {
        let ch: [u8; 16] = read(s, &mut poll).try_into().unwrap();
        s.write_all(&qmpkit_machine::display::rfb::vnc_response(
            password.unwrap_or(""),
            &ch,
        ))
        .unwrap();
    }
    let result = read(s, &mut poll);
    let refused = result.first() != Some(&0) || result.len() < 4 || result[..4] != [0, 0, 0, 0];
    seen.push(result);
    if !refused {
        s.write_all(&[1]).unwrap();
        seen.push(read(s, &mut poll));
    }
    seen
}

#[test]
fn add_client_hands_a_real_viewer_to_the_vnc_server() {
    use std::os::fd::OwnedFd;
    let mut m = machine();
    events(&mut m);
    ok(run(
        &mut m,
        "set_password",
        json!({"protocol": "vnc", "password": "secret"}),
    ));
    let pass = |m: &mut Machine, fd: OwnedFd, extra: serde_json::Value| {
        let mut cx = qmpkit_machine::Cx {
            now_ns: m.now_ns,
            fds: vec![fd],
            ..Default::default()
        };
        ok(run_cx(m, "getfd", json!({"fdname": "v"}), &mut cx));
        let mut a = json!({"protocol": "vnc", "fdname": "v"});
        a.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        run_cx(m, "add_client", a, &mut cx)
    };
    let (mut mine, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
    ok(pass(&mut m, theirs.into(), json!({})));
    let unix = r#"{"host":"","service":"","family":"unix","websocket":false}"#;
    assert_eq!(
        events(&mut m),
        [format!(
            "VNC_CONNECTED {{\"server\":{SERVER},\"client\":{unix}}}"
        )]
    );
    let cell = std::cell::RefCell::new(&mut m);
    let seen = rfb_client(&mut mine, Some("secret"), || {
        step(&mut cell.borrow_mut(), 20)
    });
    assert_eq!(seen[0], b"RFB 003.008\n");
    assert_eq!(seen[1], [1, 2]);
    assert_eq!(seen[2], [0, 0, 0, 0]);
    // ServerInit: 720x400, QEMU's pixel format, the name.
    let mut init = vec![0x02, 0xd0, 0x01, 0x90];
    init.extend_from_slice(b"\x20\x18\x00\x01\x00\xff\x00\xff\x00\xff\x10\x08\x00\x00\x00\x00");
    init.extend_from_slice(&[0, 0, 0, 4]);
    init.extend_from_slice(b"QEMU");
    assert_eq!(seen[3], init);
    assert_eq!(
        events(&mut m),
        [format!(
            "VNC_INITIALIZED {{\"server\":{SERVER},\"client\":{unix}}}"
        )]
    );
    // A full update request gets the screen, in raw encoding.
    {
        use std::io::{Read, Write};
        mine.write_all(&[3, 0, 0, 0, 0, 0, 0x02, 0xd0, 0x01, 0x90])
            .unwrap();
        step(&mut m, 20);
        let mut got = Vec::new();
        let mut b = vec![0u8; 1 << 20];
        while got.len() < 16 + 720 * 400 * 4 {
            step(&mut m, 20);
            match mine.read(&mut b) {
                Ok(n) if n > 0 => got.extend_from_slice(&b[..n]),
                _ => break,
            }
        }
        assert_eq!(
            &got[..16],
            [0, 0, 0, 1, 0, 0, 0, 0, 0x02, 0xd0, 0x01, 0x90, 0, 0, 0, 0]
        );
        let rgb = qmpkit_machine::display::render(&m);
        let first: Vec<u8> = got[16..16 + 720 * 4]
            .chunks(4)
            .flat_map(|p| [p[2], p[1], p[0]])
            .collect();
        assert_eq!(first, rgb[..720 * 3]);
    }
    assert_eq!(
        ok(run(&mut m, "query-vnc", json!({})))["clients"],
        json!([{"host": "", "service": "", "family": "unix", "websocket": false}])
    );
    drop(mine);
    step(&mut m, 20);
    assert_eq!(
        events(&mut m),
        [format!(
            "VNC_DISCONNECTED {{\"server\":{SERVER},\"client\":{unix}}}"
        )]
    );
    assert_eq!(
        ok(run(&mut m, "query-vnc", json!({})))["clients"],
        json!([])
    );
    // A wrong password: refused with QEMU's reason, then VNC_DISCONNECTED.
    let (mut mine, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
    ok(pass(&mut m, theirs.into(), json!({})));
    let cell = std::cell::RefCell::new(&mut m);
    let seen = rfb_client(&mut mine, Some("nope"), || step(&mut cell.borrow_mut(), 20));
    assert_eq!(
        seen[2],
        b"\x00\x00\x00\x01\x00\x00\x00\x16Authentication failed\x00"
    );
    step(&mut m, 20);
    let ev = events(&mut m);
    assert!(
        ev[0].starts_with("VNC_CONNECTED ") && ev[1].starts_with("VNC_DISCONNECTED "),
        "{ev:?}"
    );
    // skipauth: security type None for this viewer.
    let (mut mine, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
    ok(pass(&mut m, theirs.into(), json!({"skipauth": true})));
    events(&mut m);
    let cell = std::cell::RefCell::new(&mut m);
    let seen = rfb_client(&mut mine, None, || step(&mut cell.borrow_mut(), 20));
    assert_eq!(
        (&seen[1][..], &seen[2][..]),
        (&[1u8, 1][..], &[0u8, 0, 0, 0][..])
    );
    // A descriptor that is not a socket: QEMU's words.
    let f = std::fs::File::open("/dev/null").unwrap();
    assert_eq!(
        pass(&mut m, f.into(), json!({})).unwrap_err(),
        "GenericError: parameter @fdname must name a socket"
    );
}

/// SPICE (checked against qemu-system-x86_64 10.0.2 with a client speaking the link
/// protocol): the server in query-spice, a viewer's main channel linked (SPICE_CONNECTED),
/// its ticket accepted (SPICE_INITIALIZED) or refused (SPICE_DISCONNECTED), passwords and
/// their expiry, `connected` on a new password.
#[test]
fn spice_viewers_and_passwords() {
    let mut m = machine_with(|c| {
        c.spice = Some("port=5930,addr=127.0.0.1,password-secret=sec0".into());
        c.objects.push(qmpkit_machine::config::ObjectConfig {
            qom_type: "secret".into(),
            id: "sec0".into(),
            props: [("data".to_string(), "hunter2".to_string())].into(),
        });
    });
    events(&mut m);
    assert_eq!(
        ok(run(&mut m, "query-spice", json!({}))),
        json!({"enabled": true, "migrated": false, "host": "127.0.0.1", "port": 5930,
               "auth": "spice", "compiled-version": "0.15.1", "mouse-mode": "server",
               "channels": []})
    );
    let server = r#"{"host":"127.0.0.1","port":"5930","family":"ipv4"}"#;
    let client = r#"{"host":"127.0.0.1","port":"40010","family":"ipv4"}"#;
    let v = viewer(
        &mut m,
        json!({"protocol": "spice", "service": "40010", "password": "hunter2"}),
    );
    assert_eq!(v, json!({"service": "40010", "accepted": true}));
    let ev = events(&mut m);
    assert_eq!(
        ev[0],
        format!("SPICE_CONNECTED {{\"server\":{server},\"client\":{client}}}")
    );
    let channels = ok(run(&mut m, "query-spice", json!({})))["channels"].clone();
    let id = channels[0]["connection-id"].clone();
    assert_eq!(
        channels,
        json!([{"host": "127.0.0.1", "port": "40010", "family": "ipv4",
                "connection-id": id, "channel-type": 1, "channel-id": 0, "tls": false}])
    );
    assert_eq!(
        ev[1],
        format!(
            "SPICE_INITIALIZED {{\"server\":{{\"host\":\"127.0.0.1\",\"port\":\"5930\",\"family\":\"ipv4\",\"auth\":\"spice\"}},\"client\":{}}}",
            channels[0]
        )
    );
    // A wrong ticket: linked, then dropped.
    let v = viewer(&mut m, json!({"protocol": "spice", "password": "wrong"}));
    assert_eq!(v["accepted"], false);
    let ev = events(&mut m);
    assert!(
        ev[0].starts_with("SPICE_CONNECTED ") && ev[1].starts_with("SPICE_DISCONNECTED "),
        "{ev:?}"
    );
    // `connected`: fail while a viewer is there; disconnect drops it.
    let set = |m: &mut Machine, connected: &str| {
        run(
            m,
            "set_password",
            json!({"protocol": "spice", "password": "new", "connected": connected}),
        )
    };
    assert_eq!(
        set(&mut m, "fail").unwrap_err(),
        "GenericError: Could not set password"
    );
    ok(set(&mut m, "disconnect"));
    assert_eq!(
        events(&mut m),
        [format!(
            "SPICE_DISCONNECTED {{\"server\":{server},\"client\":{client}}}"
        )]
    );
    assert_eq!(
        ok(run(&mut m, "query-spice", json!({})))["channels"],
        json!([])
    );
    ok(set(&mut m, "fail"));
    let try_in = |m: &mut Machine, pw: &str| {
        viewer(m, json!({"protocol": "spice", "password": pw}))["accepted"] == json!(true)
    };
    assert!(!try_in(&mut m, "hunter2"));
    assert!(try_in(&mut m, "new"));
    // Expiry on the machine's clock; a new password keeps it.
    ok(run(
        &mut m,
        "expire_password",
        json!({"protocol": "spice", "time": "+10"}),
    ));
    step(&mut m, 12_000);
    assert!(!try_in(&mut m, "new"));
    ok(run(
        &mut m,
        "set_password",
        json!({"protocol": "spice", "password": "newer"}),
    ));
    assert!(!try_in(&mut m, "newer"));
    ok(run(
        &mut m,
        "client_migrate_info",
        json!({"protocol": "spice", "hostname": "localhost", "port": 5931}),
    ));
    // Without ticketing every viewer is in, and no password can be set.
    let mut open = machine_with(|c| c.spice = Some("port=5930,disable-ticketing=on".into()));
    let q = ok(run(&mut open, "query-spice", json!({})));
    assert_eq!((&q["host"], &q["auth"]), (&json!("*"), &json!("none")));
    assert!(try_in(&mut open, ""));
    assert_eq!(
        fails(
            &mut open,
            "set_password",
            json!({"protocol": "spice", "password": "x"})
        ),
        "GenericError: Could not set password"
    );
}

/// QEMU 10.0.2's words (run against `qemu-system-x86_64 -vnc :N,password=on`, and without
/// `-vnc`): `connected` other than `keep` for VNC, and an expiry without a VNC server.
#[test]
fn vnc_password_errors_in_10_0s_words() {
    let mut m = machine_with(|c| {
        c.qemu_version = (10, 0, 2);
        c.vnc = Some("0.0.0.0:0,password=on".into());
    });
    for connected in ["fail", "disconnect"] {
        assert_eq!(
            fails(
                &mut m,
                "set_password",
                json!({"protocol": "vnc", "password": "s", "connected": connected})
            ),
            "GenericError: parameter 'connected' must be 'keep' when 'protocol' is 'vnc'"
        );
    }
    ok(run(
        &mut m,
        "set_password",
        json!({"protocol": "vnc", "password": "s", "connected": "keep"}),
    ));
    let mut off = machine_with(|c| {
        c.qemu_version = (10, 0, 2);
        c.vnc = None;
    });
    assert_eq!(
        fails(
            &mut off,
            "expire_password",
            json!({"protocol": "vnc", "time": "now"})
        ),
        "GenericError: Could not set password expire time"
    );
    let mut old = machine_with(|c| c.vnc = None);
    assert_eq!(
        fails(
            &mut old,
            "expire_password",
            json!({"protocol": "vnc", "time": "now"})
        ),
        "GenericError: Could not set password expire time."
    );
}

/// HMP `info spice` in QEMU 10.0.2's words (`qemu-system-x86_64 -spice
/// port=…,tls-port=…,addr=127.0.0.1,disable-ticketing=on`, a viewer linking its main
/// channel), and without SPICE.
#[test]
fn hmp_info_spice() {
    let hmp = |m: &mut Machine| {
        ok(run(
            m,
            "human-monitor-command",
            json!({"command-line": "info spice"}),
        ))
        .as_str()
        .unwrap_or_default()
        .to_string()
    };
    let mut off = machine_with(|c| c.spice = None);
    assert_eq!(hmp(&mut off), "Server: disabled\r\n");
    let mut m = machine_with(|c| {
        c.spice = Some("port=5951,tls-port=5952,addr=127.0.0.1,disable-ticketing=on".into())
    });
    let server = "Server:\r\n     address: 127.0.0.1:5951\r\n     address: 127.0.0.1:5952 [tls]\r\n    migrated: false\r\n        auth: none\r\n    compiled: 0.15.1\r\n  mouse-mode: server\r\n";
    assert_eq!(hmp(&mut m), format!("{server}Channels: none\r\n"));
    ok(run(
        &mut m,
        "__org.qmpkit_viewer-connect",
        json!({"protocol": "spice", "service": "53136"}),
    ));
    let session = ok(run(&mut m, "query-spice", json!({})))["channels"][0]["connection-id"]
        .as_i64()
        .expect("a channel");
    assert_eq!(
        hmp(&mut m),
        format!("{server}Channel:\r\n     address: 127.0.0.1:53136\r\n     session: {session}\r\n     channel: 1:0\r\n     channel name: main\r\n")
    );
}

/// `add_client` with `protocol: spice`, as qemu-system-x86_64 10.0.2 answers it: the
/// socket's two ends in SPICE_CONNECTED (`localhost` with no port for a unix socket, the
/// numeric address and port for TCP), SPICE_DISCONNECTED when the peer sends what is no
/// link or goes away, a TLS client refused without the server's TLS set-up, a descriptor
/// that is no socket refused before anything else, and the descriptor taken whatever the
/// answer.
#[test]
fn add_client_hands_a_socket_to_the_spice_server() {
    use std::io::Write;
    use std::os::fd::OwnedFd;
    let pass = |m: &mut Machine, fd: OwnedFd, a: serde_json::Value| {
        let mut cx = qmpkit_machine::Cx {
            now_ns: m.now_ns,
            fds: vec![fd],
            ..Default::default()
        };
        ok(run_cx(m, "getfd", json!({"fdname": "s"}), &mut cx));
        let r = run_cx(m, "add_client", a, &mut cx);
        let closed = run_cx(m, "closefd", json!({"fdname": "s"}), &mut cx);
        assert_eq!(
            closed.unwrap_err(),
            "GenericError: File descriptor named 's' not found"
        );
        r
    };
    let spice = json!({"protocol": "spice", "fdname": "s"});
    let spice_tls = json!({"protocol": "spice", "fdname": "s", "tls": true});
    // No SPICE server.
    let mut m = machine();
    let (_mine, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
    let e = pass(&mut m, theirs.into(), spice.clone()).unwrap_err();
    assert_eq!(e, "DeviceNotActive: SPICE is not in use");
    let (r, _w) = std::io::pipe().unwrap();
    let e = pass(&mut m, OwnedFd::from(r), spice.clone()).unwrap_err();
    assert_eq!(e, "GenericError: parameter @fdname must name a socket");
    // With one.
    let mut m = machine_with(|c| c.spice = Some("port=5930,disable-ticketing=on".into()));
    events(&mut m);
    let unix = r#"{"host":"localhost","port":"","family":"unix"}"#;
    let both = format!("{{\"server\":{unix},\"client\":{unix}}}");
    let (mut mine, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
    ok(pass(&mut m, theirs.into(), spice.clone()));
    assert_eq!(events(&mut m), [format!("SPICE_CONNECTED {both}")]);
    step(&mut m, 100);
    assert!(events(&mut m).is_empty());
    mine.write_all(b"no link message").unwrap();
    step(&mut m, 100);
    assert_eq!(events(&mut m), [format!("SPICE_DISCONNECTED {both}")]);
    assert_eq!(
        ok(run(&mut m, "query-spice", json!({})))["channels"],
        json!([])
    );
    let (_mine, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
    let e = pass(&mut m, theirs.into(), spice_tls).unwrap_err();
    assert_eq!(e, "GenericError: spice failed to add client");
    assert_eq!(
        events(&mut m),
        [
            format!("SPICE_CONNECTED {both}"),
            format!("SPICE_DISCONNECTED {both}")
        ]
    );
    // TCP: both ends by address and port; the peer closing ends the connection.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let peer = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (ours, _) = l.accept().unwrap();
    let ends = format!(
        "{{\"server\":{{\"host\":\"127.0.0.1\",\"port\":\"{}\",\"family\":\"ipv4\"}},\
         \"client\":{{\"host\":\"127.0.0.1\",\"port\":\"{}\",\"family\":\"ipv4\"}}}}",
        l.local_addr().unwrap().port(),
        peer.local_addr().unwrap().port()
    );
    ok(pass(&mut m, ours.into(), spice));
    assert_eq!(events(&mut m), [format!("SPICE_CONNECTED {ends}")]);
    drop(peer);
    step(&mut m, 100);
    assert_eq!(events(&mut m), [format!("SPICE_DISCONNECTED {ends}")]);
}
