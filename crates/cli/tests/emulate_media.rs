//! Removable media and drive images, side by side with qemu-system-x86_64 10.0.2: the same
//! command line and the same requests go to the real emulator and to `qmpkit emulate`, and
//! what each answers (replies, events, what it prints on standard error) must be the same,
//! up to what differs between any two runs (timestamps, generated node names).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_qmpkit"))
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("qmpkit-media-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

/// qemu-system-x86_64 when it is 10.0.2, else a skip reason.
fn real_qemu() -> Result<PathBuf, String> {
    let p = qmpkit_testkit::skip::program("qemu-system-x86_64")
        .ok_or("qemu-system-x86_64 is not installed")?;
    let out = Command::new(&p)
        .arg("--version")
        .output()
        .map_err(|e| e.to_string())?;
    let v = String::from_utf8_lossy(&out.stdout);
    if !v.contains("version 10.0.2") {
        return Err(format!("qemu-system-x86_64 is not 10.0.2 ({})", v.trim()));
    }
    Ok(p)
}

/// One emulator process with its QMP monitor.
struct Vm {
    child: Child,
    r: BufReader<UnixStream>,
    w: UnixStream,
    stderr: PathBuf,
}

/// How one of the two emulators ran a script: each request's messages (events, then the
/// reply), normalised, and what it printed on standard error.
#[derive(Debug, PartialEq)]
struct Run {
    messages: Vec<Vec<Value>>,
    stderr: String,
}

impl Vm {
    /// Starts `program` (with `pre` before QEMU's arguments) on `args`, its monitor in `dir`
    /// under `tag`; `Err`: it exited, with its status and standard error.
    fn start(
        program: &Path,
        pre: &[&str],
        args: &[String],
        dir: &Path,
        tag: &str,
    ) -> Result<Vm, String> {
        let sock = dir.join(format!("{tag}.sock"));
        let stderr = dir.join(format!("{tag}.err"));
        let _ = std::fs::remove_file(&sock);
        let mut child = Command::new(program)
            .args(pre)
            .args(args)
            .arg("-qmp")
            .arg(format!("unix:{},server=on,wait=off", sock.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).expect("stderr file"))
            .spawn()
            .expect("spawn");
        let t = Instant::now();
        while !sock.exists() {
            if let Ok(Some(st)) = child.try_wait() {
                let err = std::fs::read_to_string(&stderr).unwrap_or_default();
                return Err(format!("exit {}: {err}", st.code().unwrap_or(-1)));
            }
            assert!(
                t.elapsed() < Duration::from_secs(20),
                "{tag} did not listen"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        // A program that stops at a later option has made its monitor's socket already:
        // no greeting, then its exit.
        let exited = |mut child: Child| {
            let status = wait_exit(&mut child);
            let err = std::fs::read_to_string(&stderr).unwrap_or_default();
            Err(format!("exit {status}: {err}"))
        };
        // The socket's file appears when it is bound, a moment before it listens.
        let t = Instant::now();
        let s = loop {
            match UnixStream::connect(&sock) {
                Ok(s) => break s,
                Err(_) if t.elapsed() < Duration::from_secs(10) => {
                    if let Ok(Some(_)) = child.try_wait() {
                        return exited(child);
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(_) => return exited(child),
            }
        };
        let mut r = BufReader::new(s.try_clone().expect("clone"));
        let mut greeting = String::new();
        if r.read_line(&mut greeting).unwrap_or(0) == 0 {
            return exited(child);
        }
        // It may greet and then stop at a later option all the same.
        let mut w = s;
        let mut reply = String::new();
        let negotiated = writeln!(w, "{}", json!({"execute": "qmp_capabilities"})).is_ok()
            && r.read_line(&mut reply).unwrap_or(0) > 0;
        if !negotiated {
            return exited(child);
        }
        Ok(Vm {
            child,
            r,
            w,
            stderr: stderr.clone(),
        })
    }

    fn line(&mut self) -> Value {
        let mut l = String::new();
        self.r.read_line(&mut l).expect("read");
        serde_json::from_str(&l).unwrap_or_else(|e| panic!("{e}: {l:?}"))
    }

    /// The messages up to and with the reply to `req`, normalised; `None` when the process
    /// went away first (a program that stops at a later option may greet and answer
    /// before it stops).
    fn try_request(&mut self, req: &Value) -> Option<Vec<Value>> {
        writeln!(self.w, "{req}").ok()?;
        let mut out = Vec::new();
        loop {
            let mut l = String::new();
            if self.r.read_line(&mut l).ok()? == 0 {
                return None;
            }
            let mut v: Value = serde_json::from_str(&l).unwrap_or_else(|e| panic!("{e}: {l:?}"));
            let done = v.get("event").is_none();
            normalise(&mut v);
            out.push(v);
            if done {
                return Some(out);
            }
        }
    }

    /// How the process ended, in the form `start` gives for one that stops at an option.
    fn exit(mut self) -> String {
        let status = wait_exit(&mut self.child);
        let err = std::fs::read_to_string(&self.stderr).unwrap_or_default();
        format!("exit {status}: {err}")
    }

    /// The messages up to and with the reply to `req`, normalised.
    fn request(&mut self, req: &Value) -> Vec<Value> {
        writeln!(self.w, "{req}").expect("write");
        let mut out = Vec::new();
        loop {
            let mut v = self.line();
            let done = v.get("event").is_none();
            normalise(&mut v);
            out.push(v);
            if done {
                return out;
            }
        }
    }

    /// Quits and returns what it printed on standard error.
    fn quit(self) -> String {
        self.try_quit().unwrap_or_else(|e| panic!("quit: {e}"))
    }

    /// Quits; what it printed on standard error when it answered `quit` and then ended with
    /// status 0, and otherwise how it ended (QEMU may answer requests while it is still
    /// reading its options, in a nested event loop, and then stop at a later option).
    fn try_quit(mut self) -> Result<String, String> {
        if self.try_request(&json!({"execute": "quit"})).is_none() {
            return Err(self.exit());
        }
        let status = wait_exit(&mut self.child);
        let err = std::fs::read_to_string(&self.stderr).unwrap_or_default();
        if status == 0 {
            Ok(err)
        } else {
            Err(format!("exit {status}: {err}"))
        }
    }
}

/// The exit status of a process that is ending, within ten seconds (killed after that: -1).
fn wait_exit(child: &mut Child) -> i32 {
    let t = Instant::now();
    loop {
        if let Ok(Some(st)) = child.try_wait() {
            return st.code().unwrap_or(-1);
        }
        if t.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            let _ = child.wait();
            return -1;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// What differs between any two runs: event timestamps, the random digits of generated node
/// names, sizes the host's file system decides.
fn normalise(v: &mut Value) {
    match v {
        Value::Object(o) => {
            o.remove("timestamp");
            o.remove("actual-size");
            for (_, x) in o.iter_mut() {
                normalise(x);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(normalise),
        Value::String(s) if s.starts_with("#block") => *s = "#block".into(),
        _ => {}
    }
}

/// Runs `script` (requests; a string is a human monitor command line) on real QEMU and on
/// the emulator with the same `args`; `None` when real QEMU is not there (a skip).
fn side_by_side(dir: &Path, args: &[String], script: &[Value]) -> Option<(Run, Run)> {
    let qemu = match real_qemu() {
        Ok(q) => q,
        Err(why) => {
            qmpkit_testkit::skip::skip(&why);
            return None;
        }
    };
    let mut runs = Vec::new();
    for (program, pre, tag) in [(qemu, vec![], "qemu"), (bin(), vec!["emulate"], "qmpkit")] {
        let mut vm =
            Vm::start(&program, &pre, args, dir, tag).unwrap_or_else(|e| panic!("{tag}: {e}"));
        let mut messages = Vec::new();
        for req in script {
            let req = match req {
                Value::String(line) => json!({"execute": "human-monitor-command",
                                              "arguments": {"command-line": line}}),
                r => r.clone(),
            };
            messages.push(vm.request(&req));
        }
        let stderr = vm.quit();
        runs.push(Run { messages, stderr });
    }
    let ours = runs.pop()?;
    let real = runs.pop()?;
    Some((real, ours))
}

/// Compares two runs request by request, so that a failure names the request.
fn assert_same(script: &[Value], real: &Run, ours: &Run) {
    for (i, req) in script.iter().enumerate() {
        assert_eq!(
            ours.messages.get(i),
            real.messages.get(i),
            "request {i}: {req}"
        );
    }
    assert_eq!(ours.stderr, real.stderr, "standard error");
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

/// A file of `len` bytes of `byte`.
fn file(dir: &Path, name: &str, len: usize, byte: u8) -> String {
    let p = dir.join(name);
    std::fs::write(&p, vec![byte; len]).expect("file");
    p.display().to_string()
}

/// A qcow2 image made by the image crate.
fn qcow2(dir: &Path, name: &str) -> String {
    let p = dir.join(name);
    let o = qmpkit_block::CreateOptions::new(qmpkit_block::ImageFormat::Qcow2, 1 << 20);
    qmpkit_block::image::create(&p, &o).expect("qcow2");
    p.display().to_string()
}

/// `blockdev-change-medium` and the human monitor's `change` with a new image that does not
/// open (missing, a directory, no file name, not of the format given, a driver that is not
/// there) are refused in QEMU's words before the tray moves, and the drive keeps its medium;
/// one that opens but cannot go in (a drive that is not removable) is refused after it
/// opened; one that opens goes in through the tray.
#[test]
fn media_that_do_not_open_are_refused_like_qemu() {
    let dir = tmp("change");
    let cd = file(&dir, "cd.iso", 1 << 20, 0);
    let hd = file(&dir, "hd.raw", 1 << 20, 0);
    let fd = file(&dir, "fd.raw", 1_474_560, 0);
    let small = file(&dir, "small.txt", 6, b'x');
    let empty = file(&dir, "empty.img", 0, 0);
    let q = qcow2(&dir, "q.qcow2");
    let missing = dir.join("missing.iso").display().to_string();
    let sub = dir.join("sub");
    std::fs::create_dir_all(&sub).expect("dir");
    let sub = sub.display().to_string();
    let args = s(&[
        "-M",
        "pc",
        "-nodefaults",
        "-display",
        "none",
        "-S",
        "-drive",
        &format!("if=ide,index=2,media=cdrom,file={cd},format=raw"),
        "-drive",
        &format!("if=ide,index=0,file={hd},format=raw"),
        "-drive",
        &format!("if=floppy,index=0,file={fd},format=raw"),
    ]);
    let change = |dev: &str, f: &str, fmt: Option<&str>| {
        let mut a = json!({"device": dev, "filename": f});
        if let Some(x) = fmt {
            a["format"] = json!(x);
        }
        json!({"execute": "blockdev-change-medium", "arguments": a})
    };
    let query = json!({"execute": "query-block"});
    let mut script = vec![
        change("ide1-cd0", &missing, None),
        change("ide1-cd0", &sub, None),
        change("ide1-cd0", "", None),
        change("ide1-cd0", &missing, Some("nosuch")),
        change("ide1-cd0", &cd, Some("qcow2")),
        change("nosuch", &missing, None),
        change("ide0-hd0", &missing, None),
        change("ide0-hd0", &q, None),
        change("fd0", &missing, None),
        change("floppy0", &sub, Some("raw")),
        query.clone(),
    ];
    for f in [&small, &empty, &q, &cd] {
        for fmt in [
            "vmdk",
            "vdi",
            "qed",
            "vhdx",
            "luks",
            "qcow",
            "vpc",
            "parallels",
            "dmg",
            "bochs",
            "cloop",
            "nbd",
            "host_device",
            "host_cdrom",
        ] {
            script.push(change("ide1-cd0", f, Some(fmt)));
        }
    }
    script.extend([
        query.clone(),
        json!(format!("change ide1-cd0 {missing}")),
        json!(format!("change ide1-cd0 {sub}")),
        json!(format!("change ide1-cd0 {cd} qcow2")),
        query.clone(),
        // What opens goes in, through the tray.
        change("ide1-cd0", &q, None),
        change("floppy0", &q, Some("qcow2")),
        json!(format!("change ide1-cd0 {cd} raw")),
        query,
    ]);
    let Some((real, ours)) = side_by_side(&dir, &args, &script) else {
        return;
    };
    // Nothing changed before the good changes at the end.
    assert!(
        real.messages[1][0]["error"].is_object(),
        "{:?}",
        real.messages[1]
    );
    assert_same(&script, &real, &ours);
    let _ = std::fs::remove_dir_all(&dir);
}

/// QEMU's warning for a drive image opened for writing whose format it had to probe and
/// found raw: at start-up for each such `-drive` (none for one read-only, a CD-ROM, a
/// snapshot, or one whose format is given), and when a medium changes to one.
#[test]
fn probing_raw_warns_like_qemu() {
    let dir = tmp("probe");
    let raw = |n: &str| file(&dir, n, 1 << 20, 0);
    let (a, ro, snap, fmt, hd, cd) = (
        raw("a.raw"),
        raw("ro.raw"),
        raw("snap.raw"),
        raw("fmt.raw"),
        raw("hd.raw"),
        raw("cd.raw"),
    );
    let (f1, f2, f3) = (raw("f1.raw"), raw("f2.raw"), raw("f3.raw"));
    let q = qcow2(&dir, "q.qcow2");
    let args = s(&[
        "-M",
        "pc",
        "-nodefaults",
        "-display",
        "none",
        "-S",
        "-drive",
        &format!("if=none,id=a,file={a}"),
        "-drive",
        &format!("if=none,id=ro,file={ro},readonly=on"),
        "-drive",
        &format!("if=none,id=snap,file={snap},snapshot=on"),
        "-drive",
        &format!("if=none,id=fmt,file={fmt},format=raw"),
        "-drive",
        &format!("if=none,id=cow,file={q}"),
        "-hda",
        &hd,
        "-cdrom",
        &cd,
        "-drive",
        "if=floppy,index=0",
    ]);
    let change = |f: &str, ro: Option<&str>| {
        let mut a = json!({"device": "floppy0", "filename": f});
        if let Some(m) = ro {
            a["read-only-mode"] = json!(m);
        }
        json!({"execute": "blockdev-change-medium", "arguments": a})
    };
    let q2 = qcow2(&dir, "q2.qcow2");
    let script = vec![
        change(&f1, Some("read-only")),
        change(&q2, None),
        change(&f2, Some("read-write")),
        json!(format!("change ide1-cd0 {f3}")),
        json!({"execute": "query-block"}),
    ];
    let Some((mut real, mut ours)) = side_by_side(&dir, &args, &script) else {
        return;
    };
    // QEMU's snapshot is a temporary qcow2 overlay, which the emulator does not make: that
    // drive's entry is left out of the comparison (its warning, or none, is not).
    for run in [&mut real, &mut ours] {
        if let Some(Value::Array(list)) = run
            .messages
            .last_mut()
            .and_then(|m| m.last_mut())
            .and_then(|r| r.get_mut("return"))
        {
            list.retain(|b| b["device"] != "snap");
        }
    }
    assert!(
        real.stderr.contains("probing guessed raw"),
        "{}",
        real.stderr
    );
    assert_same(&script, &real, &ours);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The board's devices under `/machine/unattached` (each `device[N]` and its type), the
/// chipset's functions under PIIX3, the vCPUs' paths, the drives' devices and the PCI bus's
/// hotplug handler are numbered and placed as qemu-system-x86_64 10.0.2 places them on the
/// PC, for command lines with IDE and floppy drives, more vCPUs, serial and parallel ports
/// and a VGA asked for.
#[test]
fn unattached_devices_are_numbered_like_qemu() {
    let dir = tmp("unattached");
    let a = file(&dir, "a.raw", 1 << 20, 0);
    let b = file(&dir, "b.raw", 1_474_560, 0);
    let c = file(&dir, "c.raw", 1_474_560, 0);
    let d = file(&dir, "d.raw", 1 << 20, 0);
    let base = ["-M", "pc", "-nodefaults", "-display", "none", "-S"];
    let lines: Vec<Vec<String>> = vec![
        vec![],
        vec!["-cdrom".into(), a.clone()],
        vec!["-fda".into(), b.clone()],
        vec![
            "-fdb".into(),
            c.clone(),
            "-fda".into(),
            b.clone(),
            "-cdrom".into(),
            a.clone(),
        ],
        vec![
            "-drive".into(),
            format!("if=ide,index=3,file={d},format=raw"),
            "-drive".into(),
            format!("if=ide,index=1,file={a},format=raw"),
            "-smp".into(),
            "2".into(),
        ],
        vec![
            "-hda".into(),
            d.clone(),
            "-drive".into(),
            format!("if=floppy,index=1,file={c},format=raw"),
            "-vga".into(),
            "std".into(),
            "-serial".into(),
            "null".into(),
            "-serial".into(),
            "null".into(),
            "-parallel".into(),
            "null".into(),
        ],
    ];
    let unattached = json!({"execute": "qom-list", "arguments": {"path": "/machine/unattached"}});
    let script = vec![
        unattached,
        json!({"execute": "qom-list", "arguments": {"path": "/machine/unattached/device[3]"}}),
        json!({"execute": "query-cpus-fast"}),
        json!({"execute": "qom-get", "arguments": {"path": "/machine/i440fx/pci.0",
                                                   "property": "hotplug-handler"}}),
        json!({"execute": "query-block"}),
    ];
    for extra in lines {
        let mut args = s(&base);
        args.extend(extra.iter().cloned());
        let Some((mut real, mut ours)) = side_by_side(&dir, &args, &script) else {
            return;
        };
        for run in [&mut real, &mut ours] {
            // The devices of the first two lists, by name, in name order; the vCPUs' paths;
            // the handler; each drive's device.
            for (i, msgs) in run.messages.iter_mut().enumerate() {
                let reply = msgs.last_mut().expect("reply");
                let r = &mut reply["return"];
                match i {
                    0 | 1 => {
                        let mut v: Vec<(String, String)> = r
                            .as_array()
                            .into_iter()
                            .flatten()
                            // Memory regions are not modelled.
                            .filter(|p| {
                                p["type"].as_str().is_some_and(|t| {
                                    t.starts_with("child<") && t != "child<memory-region>"
                                })
                            })
                            .filter(|p| {
                                let n = p["name"].as_str().unwrap_or("");
                                i == 1 || n.starts_with("device[")
                            })
                            .map(|p| (p["name"].to_string(), p["type"].to_string()))
                            .collect();
                        v.sort();
                        *r = json!(v);
                    }
                    2 => {
                        let v: Vec<Value> = r
                            .as_array()
                            .into_iter()
                            .flatten()
                            .map(|c| json!([c["cpu-index"], c["qom-path"]]))
                            .collect();
                        *r = json!(v);
                    }
                    4 => {
                        let v: Vec<Value> = r
                            .as_array()
                            .into_iter()
                            .flatten()
                            .map(|b| json!([b["device"], b["qdev"]]))
                            .collect();
                        *r = json!(v);
                    }
                    _ => {}
                }
            }
        }
        assert!(
            real.messages[0][0]["return"]
                .as_array()
                .is_some_and(|a| a.len() > 10),
            "{:?}",
            real.messages[0]
        );
        for (i, req) in script.iter().enumerate() {
            assert_eq!(ours.messages[i], real.messages[i], "{extra:?}: {req}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A read-write drive over `/dev/fdset/N` whose set holds only a read-only descriptor: QEMU
/// opens it all the same (reading is all it needs until something writes), reports it
/// read-write, and refuses whatever would write: a device on it (the board's own, a
/// `-device`, one added at run time), a qcow2 image (which writes its header). The same
/// command lines and requests on both.
#[test]
fn read_only_fd_sets_under_read_write_drives_like_qemu() {
    use std::os::fd::AsRawFd;
    let dir = tmp("fdset");
    let raw = file(&dir, "disk.raw", 1 << 20, 0);
    let q = qcow2(&dir, "disk.qcow2");
    let raw_file = std::fs::File::open(&raw).expect("open raw");
    let q_file = std::fs::File::open(&q).expect("open qcow2");
    // SAFETY: duplicates of open descriptors; the copies have no close-on-exec, so the
    // emulators inherit them.
    let (raw_fd, q_fd) = unsafe {
        (
            libc::dup(raw_file.as_raw_fd()),
            libc::dup(q_file.as_raw_fd()),
        )
    };
    assert!(raw_fd > 2 && q_fd > 2);
    let base = ["-M", "pc", "-nodefaults", "-display", "none", "-S"];
    let cases: Vec<(i32, Vec<&str>)> = vec![
        (
            raw_fd,
            vec!["-drive", "file=/dev/fdset/1,if=none,id=d0,format=raw"],
        ),
        (raw_fd, vec!["-drive", "file=/dev/fdset/1,if=none,id=d0"]),
        (
            raw_fd,
            vec![
                "-drive",
                "file=/dev/fdset/1,if=none,id=d0,format=raw,readonly=on",
            ],
        ),
        (
            raw_fd,
            vec![
                "-drive",
                "file=/dev/fdset/1,if=none,id=d0,format=raw",
                "-device",
                "ide-hd,drive=d0,bus=ide.0",
            ],
        ),
        (
            raw_fd,
            vec![
                "-drive",
                "file=/dev/fdset/1,if=none,id=d0,format=raw",
                "-device",
                "virtio-blk-pci,drive=d0",
            ],
        ),
        (
            raw_fd,
            vec!["-drive", "file=/dev/fdset/1,if=ide,id=d0,format=raw"],
        ),
        (
            q_fd,
            vec!["-drive", "file=/dev/fdset/1,if=none,id=d0,format=qcow2"],
        ),
        (
            q_fd,
            vec![
                "-drive",
                "file=/dev/fdset/1,if=none,id=d0,format=qcow2,readonly=on",
            ],
        ),
    ];
    let qemu = match real_qemu() {
        Ok(q) => q,
        Err(why) => {
            qmpkit_testkit::skip::skip(&why);
            return;
        }
    };
    let query = json!({"execute": "query-block"});
    for (i, (fd, extra)) in cases.iter().enumerate() {
        let mut args = s(&base);
        args.push("-add-fd".into());
        args.push(format!("fd={fd},set=1"));
        args.extend(extra.iter().map(|x| x.to_string()));
        let mut outcomes = Vec::new();
        for (program, pre, tag) in [
            (qemu.clone(), vec![], format!("qemu{i}")),
            (bin(), vec!["emulate"], format!("qmpkit{i}")),
        ] {
            outcomes.push(match Vm::start(&program, &pre, &args, &dir, &tag) {
                Ok(mut vm) => {
                    // A device that writes, plugged at run time, between two queries.
                    let device = json!({"execute": "device_add",
                        "arguments": {"driver": "virtio-blk-pci", "drive": "d0", "id": "v0"}});
                    let mut replies = Some(Vec::new());
                    for req in [&query, &device, &query] {
                        replies = replies.and_then(|mut all| {
                            all.extend(vm.try_request(req)?);
                            Some(all)
                        });
                    }
                    match replies {
                        Some(replies) => vm.try_quit().map(|stderr| (replies, stderr)),
                        None => Err(vm.exit()),
                    }
                }
                Err(e) => Err(e),
            });
        }
        assert_eq!(outcomes[1], outcomes[0], "{extra:?}");
    }
    // SAFETY: the duplicates made above, closed once.
    unsafe {
        libc::close(raw_fd);
        libc::close(q_fd);
    }
    let _ = std::fs::remove_dir_all(&dir);
}
