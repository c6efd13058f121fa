//! `qmpkit emulate` and the binary run as `qemu-system-x86_64`: QEMU 10.0.2's
//! identity, interface and command line as management tools write it.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_qmpkit"))
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("qmpkit-emulate-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

/// A symlink named `qemu-system-x86_64` to the binary, in `dir`.
fn emulator(dir: &Path) -> PathBuf {
    let p = dir.join("qemu-system-x86_64");
    let _ = std::fs::remove_file(&p);
    std::os::unix::fs::symlink(bin(), &p).expect("symlink");
    p
}

struct Qmp {
    r: BufReader<UnixStream>,
    w: UnixStream,
}

impl Qmp {
    fn connect(path: &Path) -> Qmp {
        let s = qmpkit_testkit::cmd::connect_unix(path);
        let mut q = Qmp {
            r: BufReader::new(s.try_clone().expect("clone")),
            w: s,
        };
        let greeting = q.line();
        assert_eq!(
            greeting["QMP"]["version"]["qemu"],
            serde_json::json!({"major": 10, "minor": 0, "micro": 2})
        );
        q.cmd("qmp_capabilities", None);
        q
    }

    fn line(&mut self) -> Value {
        let mut l = String::new();
        self.r.read_line(&mut l).expect("read");
        serde_json::from_str(&l).unwrap_or_else(|e| panic!("{e}: {l:?}"))
    }

    fn cmd(&mut self, name: &str, args: Option<Value>) -> Value {
        let mut m = serde_json::json!({ "execute": name });
        if let Some(a) = args {
            m["arguments"] = a;
        }
        writeln!(self.w, "{m}").expect("write");
        loop {
            let v = self.line();
            if v.get("event").is_none() {
                return v;
            }
        }
    }
}

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(bin())
        .arg("emulate")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn version_and_probes() {
    let dir = tmp("version");
    let out = Command::new(emulator(&dir))
        .arg("-version")
        .output()
        .expect("run");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("QEMU emulator version 10.0.2\n"), "{text}");
    let (code, text, _) = run(&["-machine", "help"]);
    assert_eq!(code, 0);
    assert!(text.contains("pc-i440fx-10.0"), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn errors_in_qemus_words() {
    for (args, want) in [
        (&["-frob"][..], "qemu-system-x86_64: -frob: invalid option"),
        (&["-no-hpet"], "qemu-system-x86_64: -no-hpet: invalid option"),
        (
            &["-object", r#"{"qom-type":"secret"}"#],
            r#"qemu-system-x86_64: -object {"qom-type":"secret"}: Parameter 'id' is missing"#,
        ),
        (
            &["-device", r#"{"driver":"nosuch"}"#],
            r#"qemu-system-x86_64: -device {"driver":"nosuch"}: 'nosuch' is not a valid device model name"#,
        ),
        (
            &["-smp", "4,sockets=2,cores=1,threads=1"],
            "qemu-system-x86_64: Invalid CPU topology: product of the hierarchy must match maxcpus: sockets (2) * dies (1) * modules (1) * cores (1) * threads (1) != maxcpus (4)",
        ),
        (&["-smp", "1,foo=2"], "qemu-system-x86_64: Parameter 'smp.foo' is unexpected"),
        (&["-m", "64,slots=2"], "qemu-system-x86_64: slots specified but no max-size"),
        (
            &["-machine", "pc,memory-backend=nope"],
            "qemu-system-x86_64: Memory backend 'nope' not found",
        ),
        (
            &["-add-fd", "fd=2,set=1,opaque=x"],
            "qemu-system-x86_64: -add-fd fd=2,set=1,opaque=x: fd cannot be a standard I/O stream",
        ),
        (
            &["-add-fd", "fd=99,set=1"],
            "qemu-system-x86_64: -add-fd fd=99,set=1: fd is not valid or already in use",
        ),
        (
            &["-chardev", "socket,id=c,fd=99,server=on,wait=off", "-mon", "chardev=c,mode=control"],
            "qemu-system-x86_64: File descriptor '99' is not a socket",
        ),
    ] {
        let (code, _, err) = run(args);
        assert_eq!(code, 1, "{args:?}");
        assert_eq!(err.trim_end(), want, "{args:?}");
    }
}

/// A drive the command line gives whose image does not open stops start-up with QEMU's
/// words after the option as written, and status 1 (what qemu-system-x86_64 10.0.2 prints
/// for each).
#[test]
fn drives_whose_images_do_not_open_stop_start_up() {
    let dir = tmp("drives");
    let raw = dir.join("a.raw");
    std::fs::write(&raw, vec![0u8; 1 << 16]).expect("image");
    let (raw, dir_s) = (raw.display().to_string(), dir.display().to_string());
    // An option whose file `f` does not exist.
    let missing = |opt: &str, arg: &str, f: &str| {
        (
            vec![opt.to_string(), arg.to_string()],
            format!("{opt} {arg}: Could not open '{f}': No such file or directory"),
        )
    };
    let refused = |arg: String, why: String| {
        (
            vec!["-drive".to_string(), arg.clone()],
            format!("-drive {arg}: {why}"),
        )
    };
    let cases: Vec<(Vec<String>, String)> = vec![
        missing("-drive", "file=/nonexistent.img", "/nonexistent.img"),
        missing("-hda", "/nonexistent.img", "/nonexistent.img"),
        missing("-fda", "/nonexistent.img", "/nonexistent.img"),
        missing("-cdrom", "/nonexistent.iso", "/nonexistent.iso"),
        missing(
            "-drive",
            "if=none,id=d,driver=file,filename=/nonexist",
            "/nonexist",
        ),
        missing(
            "-drive",
            "file=/nonexistent.vmdk,format=vmdk",
            "/nonexistent.vmdk",
        ),
        refused(
            "file=/dev/fdset/2,format=raw,if=none,id=d0".into(),
            "Failed to find fdset /dev/fdset/2".into(),
        ),
        refused(
            format!("file={raw},format=qcow2,if=none,id=d0"),
            "Image is not in qcow2 format".into(),
        ),
        refused(
            format!("file={dir_s},format=raw,if=none,id=d0"),
            format!("'file' driver requires '{dir_s}' to be a regular file"),
        ),
        refused(
            "if=none,id=d,driver=file".into(),
            "The 'file' block driver requires a file name".into(),
        ),
    ];
    for (args, want) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (code, out, err) = run(&args);
        assert_eq!(code, 1, "{args:?}");
        assert_eq!(out, "", "{args:?}");
        assert_eq!(err, format!("qemu-system-x86_64: {want}\n"), "{args:?}");
    }
}

/// `query-block` lists the command line's drives in its order, then QEMU's default CD-ROM and
/// floppy drive where the command line left them room (qemu-system-x86_64 10.0.2's lists for
/// the same command lines; the PC has no disks of its own).
#[test]
fn default_drives_come_after_the_command_lines() {
    let dir = tmp("order");
    let img = |n: &str| {
        let p = dir.join(n);
        std::fs::write(&p, vec![0u8; 1 << 16]).expect("image");
        p.display().to_string()
    };
    let (a, b, c) = (img("a.img"), img("b.img"), img("c.img"));
    let drive = |id: &str, f: &str| format!("file={f},format=raw,if=none,id={id}");
    let cases: Vec<(Vec<String>, &[&str])> = vec![
        (vec![], &["ide1-cd0", "floppy0"]),
        (
            vec!["-fdb".into(), b.clone(), "-fda".into(), a.clone()],
            &["floppy1", "floppy0", "ide1-cd0"],
        ),
        (
            vec!["-cdrom".into(), c.clone(), "-fda".into(), a.clone()],
            &["ide1-cd0", "floppy0"],
        ),
        (
            vec!["-drive".into(), drive("x", &a), "-fdb".into(), b.clone()],
            &["x", "floppy1", "ide1-cd0", "floppy0"],
        ),
        (
            vec!["-hdb".into(), a.clone(), "-hda".into(), b.clone()],
            &["ide0-hd1", "ide0-hd0", "ide1-cd0", "floppy0"],
        ),
        (
            vec!["-machine".into(), "q35".into(), "-fdb".into(), a.clone()],
            &["floppy1", "ide2-cd0"],
        ),
        (
            vec![
                "-machine".into(),
                "q35".into(),
                "-hda".into(),
                b.clone(),
                "-cdrom".into(),
                c,
            ],
            &["ide0-hd0", "ide2-cd0"],
        ),
    ];
    for (i, (args, want)) in cases.into_iter().enumerate() {
        let sock = dir.join(format!("q{i}.sock"));
        let mut child = Command::new(bin())
            .arg("emulate")
            .args(["-S", "-display", "none", "-qmp"])
            .arg(format!("unix:{},server=on,wait=off", sock.display()))
            .args(&args)
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        let mut q = Qmp::connect(&sock);
        let blocks = q.cmd("query-block", None);
        let devices: Vec<&str> = blocks["return"]
            .as_array()
            .map(|a| a.iter().filter_map(|b| b["device"].as_str()).collect())
            .unwrap_or_default();
        assert_eq!(devices, want, "{args:?}");
        q.cmd("quit", None);
        let _ = child.wait();
    }
}

/// The probe libvirt runs (`-daemonize`, `-pidfile`): the parent exits once
/// the monitor listens, the pid file names the daemon and stays locked; the
/// interface is QEMU 10.0.2's x86_64 build, byte for byte.
#[test]
fn daemon_serves_qemu_10_0_2() {
    let dir = tmp("daemon");
    let sock = dir.join("qmp.sock");
    let pidfile = dir.join("qmp.pid");
    let st = Command::new(emulator(&dir))
        .args(["-S", "-no-user-config", "-nodefaults", "-nographic"])
        .args(["-machine", "none,accel=kvm:tcg"])
        .arg("-qmp")
        .arg(format!("unix:{},server=on,wait=off", sock.display()))
        .arg("-pidfile")
        .arg(&pidfile)
        .arg("-daemonize")
        .stdin(Stdio::null())
        .status()
        .expect("run");
    assert!(st.success());
    // The monitor is ready when the parent has exited.
    assert!(sock.exists());
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .expect("pid file")
        .trim()
        .parse()
        .expect("pid");
    // A second instance cannot take the pid file.
    let (code, _, err) = run(&["-nodefaults", "-pidfile", pidfile.to_str().expect("utf-8")]);
    assert_eq!(code, 1);
    assert_eq!(
        err.trim_end(),
        "qemu-system-x86_64: cannot create PID file: Cannot lock pid file: Resource temporarily unavailable"
    );
    let mut q = Qmp::connect(&sock);
    let v = q.cmd("query-version", None);
    assert_eq!(v["return"]["qemu"]["minor"], 0);
    let real: Value = serde_json::from_str(&qmpkit_testkit::data::read(
        "qemu-ref/introspection/qemu-system-x86_64-10.0.2-query-qmp-schema.json",
    ))
    .expect("JSON");
    let ours = q.cmd("query-qmp-schema", None);
    assert!(
        ours["return"] == real["return"],
        "query-qmp-schema differs from qemu-system-x86_64 10.0.2's"
    );
    assert_eq!(q.cmd("query-status", None)["return"]["status"], "prelaunch");
    q.cmd("quit", None);
    let t = std::time::Instant::now();
    // SAFETY: kill with signal 0 only checks that the process exists.
    while unsafe { libc::kill(pid, 0) } == 0 && t.elapsed().as_secs() < 10 {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A command line as libvirt 9.0 writes it for a domain with a disk, a
/// CD-ROM, a NIC and a serial port on a passed file descriptor, its monitor
/// on a listening socket it passes in: everything lands in the machine.
#[test]
fn libvirt_command_line() {
    use std::os::fd::AsRawFd;
    let dir = tmp("cmdline");
    let msock = dir.join("monitor.sock");
    let listener = std::os::unix::net::UnixListener::bind(&msock).expect("bind");
    let serial = std::fs::File::create(dir.join("serial.log")).expect("serial file");
    // Both descriptors are inherited by the child (no close-on-exec).
    let lfd = dup_inheritable(listener.as_raw_fd());
    let sfd = dup_inheritable(serial.as_raw_fd());
    let args: Vec<String> = [
        "-name", "guest=vm2,debug-threads=on", "-S",
        "-machine", "pc-i440fx-10.0,usb=off,dump-guest-core=off,memory-backend=pc.ram",
        "-accel", "tcg", "-cpu", "qemu64", "-m", "128",
        "-object", r#"{"qom-type":"memory-backend-ram","id":"pc.ram","size":134217728}"#,
        "-overcommit", "mem-lock=off", "-smp", "2,sockets=2,cores=1,threads=1",
        "-uuid", "3a3a9d89-2ed9-4402-a2c8-7d4b394649ea", "-display", "none",
        "-no-user-config", "-nodefaults",
        "-chardev", &format!("socket,id=charmonitor,fd={lfd},server=on,wait=off"),
        "-mon", "chardev=charmonitor,id=monitor,mode=control",
        "-rtc", "base=utc", "-no-shutdown", "-boot", "strict=on",
        "-device", r#"{"driver":"piix3-usb-uhci","id":"usb","bus":"pci.0","addr":"0x1.0x2"}"#,
        "-blockdev", r#"{"driver":"file","filename":"/nonexistent/disk.qcow2","node-name":"libvirt-2-storage","auto-read-only":true,"discard":"unmap"}"#,
        "-blockdev", r#"{"node-name":"libvirt-2-format","read-only":false,"driver":"qcow2","file":"libvirt-2-storage","backing":null}"#,
        "-device", r#"{"driver":"virtio-blk-pci","bus":"pci.0","addr":"0x3","drive":"libvirt-2-format","id":"virtio-disk0","bootindex":1}"#,
        "-drive", "if=none,id=cd1,readonly=on",
        "-device", r#"{"driver":"ide-cd","bus":"ide.1","unit":0,"drive":"cd1","id":"ide0-1-0"}"#,
        "-netdev", r#"{"type":"user","id":"hostnet0"}"#,
        "-device", r#"{"driver":"virtio-net-pci","netdev":"hostnet0","id":"net0","mac":"52:54:00:11:22:33","bus":"pci.0","addr":"0x2"}"#,
        "-add-fd", &format!("set=0,fd={sfd},opaque=serial0-source"),
        "-chardev", "file,id=charserial0,path=/dev/fdset/0,append=on",
        "-device", r#"{"driver":"isa-serial","chardev":"charserial0","id":"serial0","index":0}"#,
        "-audiodev", r#"{"id":"audio1","driver":"none"}"#,
        "-device", r#"{"driver":"virtio-balloon-pci","id":"balloon0","bus":"pci.0","addr":"0x4"}"#,
        "-sandbox", "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny",
        "-msg", "timestamp=on",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut child = Command::new(bin())
        .arg("emulate")
        .args(&args)
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    // SAFETY: closing the duplicates this process made for the child.
    unsafe {
        libc::close(lfd);
        libc::close(sfd);
    }
    let s = UnixStream::connect(&msock).expect("connect to the passed socket");
    drop(listener);
    let mut q = Qmp {
        r: BufReader::new(s.try_clone().expect("clone")),
        w: s,
    };
    let g = q.line();
    assert_eq!(g["QMP"]["version"]["qemu"]["major"], 10);
    q.cmd("qmp_capabilities", None);
    assert_eq!(q.cmd("query-status", None)["return"]["status"], "prelaunch");
    let cpus = q.cmd("query-cpus-fast", None);
    assert_eq!(cpus["return"].as_array().map(Vec::len), Some(2), "{cpus}");
    let mem = q.cmd("query-memory-size-summary", None);
    assert_eq!(mem["return"]["base-memory"], 128 << 20);
    let chardevs = q.cmd("query-chardev", None);
    let labels: Vec<&str> = chardevs["return"]
        .as_array()
        .map(|a| a.iter().filter_map(|c| c["label"].as_str()).collect())
        .unwrap_or_default();
    assert!(
        labels.contains(&"charmonitor") && labels.contains(&"charserial0"),
        "{chardevs}"
    );
    let peripherals = q.cmd(
        "qom-list",
        Some(serde_json::json!({"path": "/machine/peripheral"})),
    );
    for id in [
        "usb",
        "virtio-disk0",
        "ide0-1-0",
        "net0",
        "serial0",
        "balloon0",
    ] {
        assert!(
            peripherals.to_string().contains(&format!("\"{id}\"")),
            "{id} missing: {peripherals}"
        );
    }
    // The CD-ROM's drive is removable because an ide-cd holds it.
    let block = q.cmd("query-block", None);
    let cd = block["return"]
        .as_array()
        .and_then(|a| a.iter().find(|b| b["device"] == "cd1"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(cd["removable"], true, "{block}");
    let ej = q.cmd("eject", Some(serde_json::json!({"device": "cd1"})));
    assert!(ej.get("return").is_some(), "{ej}");
    q.cmd("quit", None);
    let st = child.wait().expect("wait");
    assert!(st.success());
    let _ = std::fs::remove_dir_all(&dir);
}

/// A duplicate of `fd` that a child process inherits.
fn dup_inheritable(fd: i32) -> i32 {
    // SAFETY: dup of an open descriptor; the copy has no close-on-exec.
    let n = unsafe { libc::dup(fd) };
    assert!(n > 2);
    n
}
