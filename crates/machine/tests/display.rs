mod common;

use common::*;
use qmpkit_machine::Machine;
use serde_json::json;

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
        run(
            &mut m,
            "screendump",
            json!({"filename": "/nonexistent/x.ppm"})
        )
        .unwrap_err(),
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
        run(
            &mut m,
            "set_password",
            json!({"protocol": "spice", "password": "s"})
        )
        .unwrap_err(),
        "DeviceNotActive: No spice device has been activated"
    );
    assert_eq!(
        run(
            &mut m,
            "set_password",
            json!({"protocol": "rdp", "password": "s"})
        )
        .unwrap_err(),
        "GenericError: Invalid parameter 'protocol'"
    );
    assert_eq!(
        run(
            &mut m,
            "set_password",
            json!({"protocol": "vnc", "password": "s", "connected": "fail"})
        )
        .unwrap_err(),
        "GenericError: Invalid parameter 'connected'"
    );
    let mut off = machine_with(|c| c.vnc = None);
    assert_eq!(
        ok(run(&mut off, "query-vnc", json!({}))),
        json!({"enabled": false})
    );
    assert_eq!(
        run(
            &mut off,
            "set_password",
            json!({"protocol": "vnc", "password": "s"})
        )
        .unwrap_err(),
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
