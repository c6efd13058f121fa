//! Transports: QEMU's option syntax, binding rules, and serving over each kind of stream.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::Duration;

use qmpkit_server::{bind, BindOptions, ServerError, ServerOptions, Transport};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

fn unix(p: &str, server: bool, wait: bool) -> Transport {
    Transport::Unix {
        path: PathBuf::from(p),
        server,
        wait,
    }
}

#[test]
fn qmp_option_syntax() {
    assert_eq!(
        Transport::parse_qmp("unix:/tmp/q.sock,server=on,wait=off").unwrap(),
        unix("/tmp/q.sock", true, false)
    );
    assert_eq!(
        Transport::parse_qmp("unix:/tmp/q.sock,server,nowait").unwrap(),
        unix("/tmp/q.sock", true, false)
    );
    assert_eq!(
        Transport::parse_qmp("unix:/tmp/q.sock").unwrap(),
        unix("/tmp/q.sock", false, true)
    );
    assert_eq!(
        Transport::parse_qmp("unix:/tmp/a,,b.sock,server=on").unwrap(),
        unix("/tmp/a,b.sock", true, true)
    );
    assert_eq!(
        Transport::parse_qmp("tcp:localhost:4444,server=on,wait=off").unwrap(),
        Transport::Tcp {
            host: "localhost".into(),
            port: 4444,
            server: true,
            wait: false
        }
    );
    assert_eq!(
        Transport::parse_qmp("tcp:[::1]:4444,server").unwrap(),
        Transport::Tcp {
            host: "::1".into(),
            port: 4444,
            server: true,
            wait: true
        }
    );
    assert_eq!(Transport::parse_qmp("stdio").unwrap(), Transport::Stdio);
    for bad in [
        "vc",
        "unix:",
        "tcp:host",
        "tcp:host:99999",
        "unix:/x,server=maybe",
        "unix:/x,bogus=1",
    ] {
        assert!(Transport::parse_qmp(bad).is_err(), "{bad}");
    }
}

#[test]
fn chardev_and_mon_options() {
    let args = [
        "-S",
        "-chardev",
        "socket,id=mon0,path=/tmp/m.sock,server=on,wait=off",
        "-mon",
        "chardev=mon0,mode=control",
        "-qmp",
        "tcp:127.0.0.1:5555,server,nowait",
        "-m",
        "512",
    ];
    let t = Transport::from_command_line(args).unwrap();
    assert_eq!(
        t,
        vec![
            Transport::Tcp {
                host: "127.0.0.1".into(),
                port: 5555,
                server: true,
                wait: false
            },
            unix("/tmp/m.sock", true, false),
        ]
    );
    // The storage daemon's spelling.
    let t = Transport::from_command_line([
        "--chardev",
        "socket,path=/tmp/q.sock,server=on,wait=off,id=m",
        "--monitor",
        "chardev=m",
    ])
    .unwrap();
    assert_eq!(t, vec![unix("/tmp/q.sock", true, false)]);
    let (id, t) =
        Transport::parse_chardev("socket,id=t,host=127.0.0.1,port=4000,server=on").unwrap();
    assert_eq!(id, "t");
    assert!(matches!(t, Transport::Tcp { port: 4000, .. }));
    let (_, t) = Transport::parse_chardev("stdio,id=s,signal=off").unwrap();
    assert_eq!(t, Transport::Stdio);
    // Errors: unknown chardev, human monitor, missing id, unsupported backend.
    assert!(Transport::from_command_line(["-mon", "chardev=nope,mode=control"]).is_err());
    assert!(Transport::from_command_line([
        "-chardev",
        "stdio,id=s",
        "-mon",
        "chardev=s,mode=readline"
    ])
    .is_err());
    assert!(Transport::parse_chardev("socket,path=/x").is_err());
    assert!(Transport::parse_chardev("pty,id=p").is_err());
    assert!(Transport::parse_chardev("socket,id=x,path=/x,host=h,port=1").is_err());
}

#[test]
fn unix_socket_is_private_and_replaces_a_stale_one() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q.sock");
    // A stale socket: bound once, its listener gone.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    rt.block_on(async {
        let l = bind(
            &unix(path.to_str().unwrap(), true, false),
            &BindOptions::default(),
        )
        .await
        .unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(l.unix_path(), Some(path.as_path()));
        let server = qmpkit_server::Server::new(
            common::mini_schema(),
            common::mini_registry(),
            ServerOptions::default(),
        );
        let s2 = server.clone();
        let task = tokio::spawn(async move { s2.serve(l).await });
        let s = tokio::net::UnixStream::connect(&path).await.unwrap();
        let mut r = BufReader::new(s);
        let mut line = String::new();
        r.read_line(&mut line).await.unwrap();
        assert!(line.starts_with("{\"QMP\": "));
        server.shutdown();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("serve returns after shutdown")
            .unwrap()
            .unwrap();
        assert!(
            !path.exists(),
            "the socket file is removed when serving ends"
        );
    });
    // Not a socket: left alone.
    std::fs::write(&path, b"data").unwrap();
    let e = rt
        .block_on(bind(
            &unix(path.to_str().unwrap(), true, false),
            &BindOptions::default(),
        ))
        .unwrap_err();
    assert!(matches!(e, ServerError::NotASocket(_)), "{e}");
    assert_eq!(std::fs::read(&path).unwrap(), b"data");
}

#[test]
fn tcp_loopback_only_unless_allowed() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let any = Transport::parse_qmp("tcp:0.0.0.0:0,server=on").unwrap();
        let e = bind(&any, &BindOptions::default()).await.unwrap_err();
        assert!(matches!(e, ServerError::NonLoopback(_)), "{e}");
        assert!(e.to_string().contains("non-loopback"), "{e}");
        let empty = Transport::parse_qmp("tcp::0,server=on").unwrap();
        assert!(bind(&empty, &BindOptions::default()).await.is_err());
        bind(
            &any,
            &BindOptions {
                allow_remote_tcp: true,
            },
        )
        .await
        .expect("allowed explicitly");

        let lo = Transport::parse_qmp("tcp:127.0.0.1:0,server=on,wait=off").unwrap();
        let l = bind(&lo, &BindOptions::default()).await.unwrap();
        let addr = l.tcp_addr().unwrap();
        let server = qmpkit_server::Server::new(
            common::mini_schema(),
            common::mini_registry(),
            ServerOptions::default(),
        );
        let s2 = server.clone();
        tokio::spawn(async move { s2.serve(l).await });
        let s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (rd, mut wr) = s.into_split();
        let mut rd = BufReader::new(rd);
        let mut line = String::new();
        rd.read_line(&mut line).await.unwrap();
        wr.write_all(
            b"{\"execute\": \"qmp_capabilities\"}\n{\"execute\": \"query-version\", \"id\": 5}\n",
        )
        .await
        .unwrap();
        line.clear();
        rd.read_line(&mut line).await.unwrap();
        assert_eq!(line, "{\"return\": {}}\r\n");
        line.clear();
        rd.read_line(&mut line).await.unwrap();
        assert!(line.ends_with(", \"id\": 5}\r\n"), "{line}");
        server.shutdown();
    });
}

#[test]
fn any_byte_stream() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let server = qmpkit_server::Server::new(
            common::mini_schema(),
            common::mini_registry(),
            ServerOptions::default(),
        );
        let (ours, theirs) = tokio::io::duplex(4096);
        let task = tokio::spawn(async move { server.serve_stream(theirs).await });
        let (rd, mut wr) = tokio::io::split(ours);
        let mut rd = BufReader::new(rd);
        let mut line = String::new();
        rd.read_line(&mut line).await.unwrap();
        assert!(line.starts_with("{\"QMP\""));
        wr.write_all(
            b"{\"execute\": \"qmp_capabilities\"}\n{\"execute\": \"oob-ping\", \"id\": 1}\n",
        )
        .await
        .unwrap();
        wr.shutdown().await.unwrap();
        let mut rest = String::new();
        while rd.read_line(&mut rest).await.unwrap() > 0 {}
        assert_eq!(
            rest,
            "{\"return\": {}}\r\n{\"return\": {\"pong\": true}, \"id\": 1}\r\n"
        );
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("ends with the stream")
            .unwrap()
            .unwrap();
    });
}

#[test]
fn monitors_with_their_modes() {
    use qmpkit_server::{Monitor, MonitorMode};
    let m = Transport::monitors_from_command_line([
        "-chardev",
        "stdio,id=s",
        "-mon",
        "chardev=s,mode=control,pretty=on",
        "-qmp-pretty",
        "unix:/tmp/p.sock,server=on,wait=off",
        "-monitor",
        "unix:/tmp/h.sock,server=on,wait=off",
        "-monitor",
        "none",
    ])
    .unwrap();
    assert_eq!(
        m,
        vec![
            Monitor {
                transport: unix("/tmp/p.sock", true, false),
                mode: MonitorMode::Control { pretty: true },
            },
            Monitor {
                transport: unix("/tmp/h.sock", true, false),
                mode: MonitorMode::Readline,
            },
            Monitor {
                transport: Transport::Stdio,
                mode: MonitorMode::Control { pretty: true },
            },
        ]
    );
    // -mon's default mode is readline, as QEMU's.
    let m = Transport::monitors_from_command_line(["-chardev", "stdio,id=s", "-mon", "s"]).unwrap();
    assert_eq!(m[0].mode, MonitorMode::Readline);
    // QEMU's words.
    let err = |args: &[&str]| {
        Transport::monitors_from_command_line(args)
            .unwrap_err()
            .to_string()
    };
    assert!(err(&["-chardev", "stdio,id=m", "-mon", "m,pretty=on"])
        .ends_with("-mon m,pretty=on: 'pretty' is not compatible with HMP monitors"));
    assert!(
        err(&["-chardev", "stdio,id=m", "-mon", "chardev=m,mode=bogus"])
            .ends_with("-mon chardev=m,mode=bogus: Parameter 'mode' does not accept value 'bogus'")
    );
    assert!(
        err(&["-mon", "chardev=nope"]).ends_with("-mon chardev=nope: chardev \"nope\" not found")
    );
}
