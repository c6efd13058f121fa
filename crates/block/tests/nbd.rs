//! The NBD server against the real qemu-img, qemu-io and qemu-nbd clients, and random bytes.

use std::io::{self, Read, Write};
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, RwLock};

use proptest::prelude::*;
use qmpkit_block::image::{self, CreateOptions, Image, ImageFormat};
use qmpkit_block::nbd::{self, ExportTable, NbdExport, NbdListen, NbdServer, Request};
use qmpkit_testkit::program_or_skip;

fn run(prog: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(prog).args(args).output().expect("run program");
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

fn export(name: &str, img: Image, writable: bool) -> NbdExport {
    NbdExport {
        name: name.into(),
        description: Some(format!("{name} described")),
        writable,
        backend: Arc::new(RwLock::new(img)),
    }
}

#[test]
fn qemu_clients_read_and_write_a_unix_export() {
    let qemu_img = program_or_skip!("qemu-img");
    let qemu_io = program_or_skip!("qemu-io");
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("disk.qcow2");
    image::create(&disk, &CreateOptions::new(ImageFormat::Qcow2, 8 << 20)).unwrap();
    {
        let img = Image::open(&disk, None, true).unwrap();
        img.write(&vec![0x41; 4096], 0).unwrap();
    }
    let sock = dir.path().join("nbd.sock");
    let server = NbdServer::start(NbdListen::Unix(sock.clone())).unwrap();
    server
        .add_export(export(
            "disk0",
            Image::open(&disk, None, true).unwrap(),
            true,
        ))
        .unwrap();
    let url = format!("nbd+unix:///disk0?socket={}", sock.display());

    let (ok, text) = run(&qemu_img, &["info", "--output=json", &url]);
    assert!(ok, "{text}");
    let info: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(info["virtual-size"], 8 << 20, "{text}");
    assert_eq!(info["format"], "raw");

    let (ok, text) = run(&qemu_io, &["-f", "raw", "-c", "read -P 0x41 0 4k", &url]);
    assert!(ok && !text.contains("failed"), "{text}");
    let (ok, text) = run(
        &qemu_io,
        &[
            "-f",
            "raw",
            "-c",
            "write -P 0x55 1M 64k",
            "-c",
            "flush",
            &url,
        ],
    );
    assert!(ok && !text.contains("error"), "{text}");
    let (ok, text) = run(&qemu_io, &["-f", "raw", "-c", "write -z 0 4k", &url]);
    assert!(ok && !text.contains("error"), "{text}");
    let (ok, text) = run(&qemu_io, &["-f", "raw", "-c", "discard 2M 64k", &url]);
    assert!(ok && !text.contains("error"), "{text}");
    let (ok, text) = run(&qemu_io, &["-f", "raw", "-c", "read -P 0x55 1M 64k", &url]);
    assert!(ok && !text.contains("failed"), "{text}");
    // Reading past the end is refused, not a crash.
    let (_, text) = run(&qemu_io, &["-f", "raw", "-c", "read 8M 4k", &url]);
    assert!(
        text.contains("error") || text.contains("Input/output") || text.contains("Invalid"),
        "{text}"
    );

    // Unknown export names are refused in the handshake.
    let bad = format!("nbd+unix:///nope?socket={}", sock.display());
    let (ok, text) = run(&qemu_img, &["info", &bad]);
    assert!(!ok, "{text}");

    // qemu-nbd lists the exports.
    if let Some(qemu_nbd) = qmpkit_testkit::skip::program("qemu-nbd") {
        let (ok, text) = run(&qemu_nbd, &["--list", "-k", sock.to_str().unwrap()]);
        assert!(ok, "{text}");
        assert!(text.contains("disk0"), "{text}");
    }
    drop(server);
    assert!(!sock.exists());

    // What the clients wrote is in the real file.
    let img = Image::open(&disk, None, false).unwrap();
    let mut buf = vec![0u8; 65536];
    img.read(&mut buf, 1 << 20).unwrap();
    assert!(buf.iter().all(|&b| b == 0x55));
    img.read(&mut buf[..4096], 0).unwrap();
    assert!(buf[..4096].iter().all(|&b| b == 0));
    drop(img);
    let (ok, text) = run(&qemu_img, &["check", disk.to_str().unwrap()]);
    assert!(ok, "{text}");
}

#[test]
fn read_only_tcp_export_refuses_writes() {
    let qemu_io = program_or_skip!("qemu-io");
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("disk.raw");
    image::create(&disk, &CreateOptions::new(ImageFormat::Raw, 1 << 20)).unwrap();
    Image::open(&disk, None, true)
        .unwrap()
        .write(&[0x7a; 512], 512)
        .unwrap();
    let server = NbdServer::start(NbdListen::Tcp("127.0.0.1:0".parse().unwrap())).unwrap();
    server
        .add_export(export(
            "ro",
            Image::open(&disk, None, false).unwrap(),
            false,
        ))
        .unwrap();
    let NbdListen::Tcp(addr) = server.address().clone() else {
        panic!("tcp")
    };
    let url = format!("nbd://{addr}/ro");
    let (ok, text) = run(
        &qemu_io,
        &["-f", "raw", "-r", "-c", "read -P 0x7a 512 512", &url],
    );
    assert!(ok && !text.contains("failed"), "{text}");
    let (_, text) = run(&qemu_io, &["-f", "raw", "-c", "write 0 512", &url]);
    assert!(text.contains("Permission denied"), "{text}");
    assert!(server.export_names() == vec!["ro".to_string()]);
    assert!(server.remove_export("ro"));
    assert!(!server.remove_export("ro"));
}

/// A stream whose reads come from a fixed buffer and whose writes are discarded.
struct Fake<'a> {
    input: &'a [u8],
    written: usize,
}

impl Read for Fake<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf.len().min(self.input.len());
        buf[..n].copy_from_slice(&self.input[..n]);
        self.input = &self.input[n..];
        Ok(n)
    }
}

impl Write for Fake<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.written += buf.len();
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

struct Mem(RwLock<Vec<u8>>);

impl nbd::ExportBackend for Mem {
    fn size(&self) -> u64 {
        self.0.read().map(|v| v.len() as u64).unwrap_or(0)
    }
    fn read(&self, offset: u64, buf: &mut [u8]) -> qmpkit_block::Result<()> {
        let v = self.0.read().unwrap();
        buf.copy_from_slice(&v[offset as usize..offset as usize + buf.len()]);
        Ok(())
    }
    fn write(&self, offset: u64, data: &[u8]) -> qmpkit_block::Result<()> {
        let mut v = self.0.write().unwrap();
        v[offset as usize..offset as usize + data.len()].copy_from_slice(data);
        Ok(())
    }
    fn write_zeroes(&self, _: u64, _: u64) -> qmpkit_block::Result<()> {
        Ok(())
    }
    fn trim(&self, _: u64, _: u64) -> qmpkit_block::Result<()> {
        Ok(())
    }
    fn flush(&self) -> qmpkit_block::Result<()> {
        Ok(())
    }
}

fn mem_table() -> ExportTable {
    let t: ExportTable = Arc::default();
    t.lock().unwrap().insert(
        "m".into(),
        NbdExport {
            name: "m".into(),
            description: None,
            writable: true,
            backend: Arc::new(Mem(RwLock::new(vec![0; 65536]))),
        },
    );
    t
}

/// A well-formed opening that reaches the transmission phase on export "m".
fn opening() -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&3u32.to_be_bytes());
    v.extend_from_slice(&nbd::IHAVEOPT.to_be_bytes());
    v.extend_from_slice(&nbd::OPT_GO.to_be_bytes());
    v.extend_from_slice(&7u32.to_be_bytes());
    v.extend_from_slice(&1u32.to_be_bytes());
    v.push(b'm');
    v.extend_from_slice(&0u16.to_be_bytes());
    v
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn request_parser_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        if let Ok(r) = Request::parse(&bytes) {
            prop_assert_eq!(&r.encode()[..], &bytes[..28]);
        }
    }

    #[test]
    fn random_handshakes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let table = mem_table();
        let mut s = Fake { input: &bytes, written: 0 };
        let _ = nbd::serve_connection(&mut s, &table);
    }

    #[test]
    fn random_requests_never_panic(
        reqs in proptest::collection::vec(
            (any::<u16>(), 0u16..10, any::<u64>(), prop_oneof![0u64..70000, any::<u64>()],
             prop_oneof![0u32..70000, any::<u32>()]),
            0..16),
        tail in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let mut input = opening();
        for (flags, kind, handle, offset, length) in reqs {
            input.extend_from_slice(&Request { flags, kind, handle, offset, length }.encode());
            if kind == nbd::CMD_WRITE && length < 70000 {
                input.extend(std::iter::repeat_n(0xAB, length as usize));
            }
        }
        input.extend_from_slice(&tail);
        let table = mem_table();
        let mut s = Fake { input: &input, written: 0 };
        let _ = nbd::serve_connection(&mut s, &table);
        prop_assert!(s.written > 0);
    }
}

#[test]
fn dropping_the_server_disconnects_its_clients() {
    use std::os::unix::net::UnixStream;
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("s.sock");
    let server = NbdServer::start(NbdListen::Unix(sock.clone())).unwrap();
    server
        .add_export(NbdExport {
            name: "m".into(),
            description: None,
            writable: false,
            backend: mem_table().lock().unwrap()["m"].backend.clone(),
        })
        .unwrap();
    let mut c = UnixStream::connect(&sock).unwrap();
    let mut hello = [0u8; 18];
    c.read_exact(&mut hello).unwrap();
    assert_eq!(&hello[..8], b"NBDMAGIC");
    assert_eq!(
        u64::from_be_bytes(hello[8..16].try_into().unwrap()),
        nbd::IHAVEOPT
    );
    assert_eq!(u16::from_be_bytes([hello[16], hello[17]]), 3);
    let t = std::time::Instant::now();
    while server.connections() == 0 && t.elapsed().as_secs() < 5 {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert_eq!(server.connections(), 1);
    drop(server);
    let mut rest = Vec::new();
    assert_eq!(c.read_to_end(&mut rest).unwrap(), 0);
    assert!(!sock.exists());
}
