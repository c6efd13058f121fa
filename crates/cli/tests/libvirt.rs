//! libvirt runs qmpkit as its QEMU: Debian's libvirtd, started by this test
//! with a private configuration, probes the binary (named
//! `qemu-system-x86_64` through a symlink), defines domains whose
//! `<emulator>` it is and drives them through their lifecycle; each step's
//! `virsh domstate --reason` must be what real QEMU 10.0.2 gives for the
//! same steps (run beside it when installed). A second domain with a qcow2
//! disk, a CD-ROM, a serial port on a file and a NIC starts too, and a
//! libvirtd restart reconnects to a running domain. The capability caches
//! libvirt writes for both binaries must hold the same flags (the difference
//! is printed), and each booted domain's idle resident set is reported.
//!
//! libvirtd runs as root in a private mount namespace (`unshare`): its
//! configuration, state, cache and run directories are bound from a
//! temporary directory, `security_driver = "none"`, no cgroups, no
//! namespaces, no virtlogd; `virsh` talks to its private socket.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// libvirt's directories that the private root replaces, and the name of
/// each one's stand-in under the root.
const BINDS: &[(&str, &str)] = &[
    ("/etc/libvirt", "etc"),
    ("/run/libvirt", "run"),
    ("/var/lib/libvirt", "lib"),
    ("/var/cache/libvirt", "cache"),
    ("/var/log/libvirt", "log"),
];

struct Libvirtd {
    root: PathBuf,
    child: Option<Child>,
}

impl Libvirtd {
    fn uri(&self) -> String {
        format!(
            "qemu:///system?socket={}",
            self.root.join("sock/libvirt-sock").display()
        )
    }

    /// Write the private configuration under `root` (once).
    fn configure(root: &Path) {
        for (_, d) in BINDS {
            std::fs::create_dir_all(root.join(d)).expect("dir");
        }
        std::fs::create_dir_all(root.join("sock")).expect("dir");
        let r = root.display();
        std::fs::write(
            root.join("etc/libvirtd.conf"),
            format!(
                "unix_sock_dir = \"{r}/sock\"\nunix_sock_rw_perms = \"0700\"\n\
                 auth_unix_rw = \"none\"\nauth_unix_ro = \"none\"\n\
                 log_outputs = \"1:file:{r}/libvirtd.log\"\n\
                 log_filters = \"1:qemu 1:libvirt 4:object 4:json 4:event 4:util 4:rpc\"\n"
            ),
        )
        .expect("libvirtd.conf");
        std::fs::write(
            root.join("etc/qemu.conf"),
            "user = \"root\"\ngroup = \"root\"\nsecurity_driver = \"none\"\n\
             dynamic_ownership = 0\nremember_owner = 0\ncgroup_controllers = [ ]\n\
             namespaces = [ ]\nstdio_handler = \"file\"\n",
        )
        .expect("qemu.conf");
    }

    fn start(root: &Path) -> Result<Libvirtd, String> {
        let mut script = String::from("set -e\n");
        for (target, d) in BINDS {
            script.push_str(&format!(
                "mkdir -p {target}\nmount --bind {} {target}\n",
                root.join(d).display()
            ));
        }
        script.push_str(&format!(
            "exec libvirtd --config {} --pid-file {}\n",
            root.join("etc/libvirtd.conf").display(),
            root.join("libvirtd.pid").display()
        ));
        let _ = std::fs::remove_file(root.join("sock/libvirt-sock"));
        let child = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(root.join("libvirtd.stderr")).map_err(|e| e.to_string())?)
            .spawn()
            .map_err(|e| format!("unshare: {e}"))?;
        let mut d = Libvirtd {
            root: root.to_path_buf(),
            child: Some(child),
        };
        let t = Instant::now();
        loop {
            if d.root.join("sock/libvirt-sock").exists() && d.virsh(&["version"]).0 == 0 {
                return Ok(d);
            }
            if let Some(c) = d.child.as_mut() {
                if let Ok(Some(st)) = c.try_wait() {
                    let err =
                        std::fs::read_to_string(d.root.join("libvirtd.stderr")).unwrap_or_default();
                    d.child = None;
                    return Err(format!("libvirtd exited ({st}): {err}"));
                }
            }
            if t.elapsed() > Duration::from_secs(20) {
                return Err("libvirtd did not answer within 20 s".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn virsh(&self, args: &[&str]) -> (i32, String, String) {
        let out = Command::new("virsh")
            .arg("-c")
            .arg(self.uri())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("virsh");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).trim().to_string(),
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        )
    }

    /// `virsh ARGS`, which must succeed.
    fn ok(&self, args: &[&str]) -> String {
        let (code, out, err) = self.virsh(args);
        assert_eq!(code, 0, "virsh {args:?}: {out} {err}\n{}", self.log_tail());
        out
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.root.join("libvirtd.log")).unwrap_or_default();
        let errors: Vec<&str> = log.lines().filter(|l| l.contains(": error :")).collect();
        let mut out = errors[errors.len().saturating_sub(5)..].join("\n");
        // The domains' own logs (the emulators' standard error).
        if let Ok(rd) = std::fs::read_dir(self.root.join("log/qemu")) {
            for e in rd.flatten() {
                let text = std::fs::read_to_string(e.path()).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                out.push_str(&format!("\n--- {}\n", e.path().display()));
                out.push_str(&lines[lines.len().saturating_sub(5)..].join("\n"));
            }
        }
        out
    }

    /// The domain's state and reason, once it is `want` (or the last seen
    /// after thirty seconds: a loaded host can take that long).
    fn state(&self, dom: &str, want: &str) -> String {
        self.state_within(dom, want, Duration::from_secs(30))
    }

    /// The state and reason of `dom` once it is `want`, or after `limit`.
    fn state_within(&self, dom: &str, want: &str, limit: Duration) -> String {
        let t = Instant::now();
        loop {
            let (_, s, _) = self.virsh(&["domstate", dom, "--reason"]);
            if s == want || t.elapsed() > limit {
                return s;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stop libvirtd (the domains it started keep running).
    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: SIGTERM to the libvirtd this test started.
            unsafe {
                libc::kill(c.id() as i32, libc::SIGTERM);
            }
            let t = Instant::now();
            while t.elapsed() < Duration::from_secs(10) {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Libvirtd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Kill the emulators libvirtd left running under `root` (their pid files).
fn kill_domains(root: &Path) {
    if let Ok(rd) = std::fs::read_dir(root.join("run/qemu")) {
        for e in rd.flatten() {
            if e.path().extension().and_then(|x| x.to_str()) != Some("pid") {
                continue;
            }
            let pid = std::fs::read_to_string(e.path())
                .ok()
                .and_then(|t| t.trim().parse::<i32>().ok());
            if let Some(pid) = pid.filter(|p| *p > 1) {
                // SAFETY: SIGKILL to an emulator this test's libvirtd started.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                }
            }
        }
    }
}

struct Root(PathBuf);

impl Drop for Root {
    fn drop(&mut self) {
        kill_domains(&self.0);
        if std::env::var_os("QMPKIT_KEEP_LIBVIRT_ROOT").is_none() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn domain_xml(name: &str, kind: &str, emulator: &Path, devices: &str) -> String {
    format!(
        "<domain type='{kind}'>\n  <name>{name}</name>\n  <memory unit='MiB'>64</memory>\n  \
         <vcpu>1</vcpu>\n  <os><type arch='x86_64' machine='pc'>hvm</type></os>\n  \
         <features><acpi/></features>\n  <on_reboot>restart</on_reboot>\n  \
         <devices>\n    <emulator>{}</emulator>\n{devices}  </devices>\n</domain>\n",
        emulator.display()
    )
}

/// The guest's answer to an ACPI power button on real QEMU, which has no
/// guest to give it: the sleep control register of the PIIX4's power
/// management function, enabled at I/O port 0x600, is written with S5's
/// sleep enable, as a guest's ACPI driver would write it.
fn guest_powers_off(d: &Libvirtd, dom: &str) {
    for cmd in [
        "o /w 0xcf8 0x80000b40",
        "o /w 0xcfc 0x601",
        "o /w 0xcf8 0x80000b80",
        "o /b 0xcfc 0x1",
    ] {
        d.ok(&["qemu-monitor-command", dom, "--hmp", cmd]);
    }
    // The emulator may be gone before its reply is read (libvirt ends it
    // once the guest is off): the reply does not matter.
    let _ = d.virsh(&["qemu-monitor-command", dom, "--hmp", "o /h 0x604 0x2000"]);
}

/// The resident set of domain `dom`'s emulator (its pid file), in KiB, after
/// a second of rest.
fn idle_rss_kib(d: &Libvirtd, dom: &str) -> Option<u64> {
    std::thread::sleep(Duration::from_secs(1));
    let pid = std::fs::read_to_string(d.root.join(format!("run/qemu/{dom}.pid"))).ok()?;
    qmpkit_testkit::fleet::rss_kib(pid.trim().parse().ok()?)
}

/// Drive one domain of `emulator` through its lifecycle; each step's state
/// and reason, and the emulator's idle resident set (KiB) once it has
/// booted. `plays_guest`: the test answers power requests for the guest
/// (real QEMU); qmpkit's modelled guest answers them itself.
fn lifecycle(d: &Libvirtd, dom: &str, plays_guest: bool) -> (Vec<(String, String)>, Option<u64>) {
    let mut seen = Vec::new();
    let mut step = |name: &str, args: &[&str], want: &str, power: bool| {
        d.ok(args);
        if power {
            // The request reaches the guest after the command returns.
            std::thread::sleep(Duration::from_millis(200));
            if plays_guest {
                guest_powers_off(d, dom);
                // A reset libvirt makes late for an earlier request (a reboot's)
                // undoes the guest's power management set-up: the guest answers
                // again until libvirt sees the state wanted.
                for _ in 0..3 {
                    if d.state_within(dom, want, Duration::from_secs(5)) == want {
                        break;
                    }
                    guest_powers_off(d, dom);
                }
            }
            // The guest's answer, then libvirt's reaction to it.
            std::thread::sleep(Duration::from_millis(1500));
        }
        seen.push((name.to_string(), d.state(dom, want)));
    };
    step(
        "start --paused",
        &["start", dom, "--paused"],
        "paused (user)",
        false,
    );
    step("resume", &["resume", dom], "running (unpaused)", false);
    step("suspend", &["suspend", dom], "paused (user)", false);
    step("resume", &["resume", dom], "running (unpaused)", false);
    step("reboot", &["reboot", dom], "running (unpaused)", true);
    step("shutdown", &["shutdown", dom], "shut off (shutdown)", true);
    step("start", &["start", dom], "running (booted)", false);
    let rss = idle_rss_kib(d, dom);
    step("destroy", &["destroy", dom], "shut off (destroyed)", false);
    (seen, rss)
}

/// What libvirt 9.0 reports after each step for a guest that answers
/// power requests (as real QEMU 10.0.2 gives them here).
const EXPECTED: &[(&str, &str)] = &[
    ("start --paused", "paused (user)"),
    ("resume", "running (unpaused)"),
    ("suspend", "paused (user)"),
    ("resume", "running (unpaused)"),
    // libvirt resets the guest that powered off and resumes it.
    ("reboot", "running (unpaused)"),
    ("shutdown", "shut off (shutdown)"),
    ("start", "running (booted)"),
    ("destroy", "shut off (destroyed)"),
];

/// The `<flag name=…/>`s of the capability cache libvirt wrote for
/// `emulator`.
fn cached_flags(root: &Path, emulator: &Path) -> Option<BTreeSet<String>> {
    let want = format!("<emulator>{}</emulator>", emulator.display());
    for e in std::fs::read_dir(root.join("cache/qemu/capabilities"))
        .ok()?
        .flatten()
    {
        let text = std::fs::read_to_string(e.path()).unwrap_or_default();
        if !text.contains(&want) {
            continue;
        }
        return Some(
            text.lines()
                .filter_map(|l| l.trim().strip_prefix("<flag name='"))
                .filter_map(|l| l.split('\'').next())
                .map(str::to_string)
                .collect(),
        );
    }
    None
}

fn probe(d: &Libvirtd, emulator: &Path, kind: &str) -> Duration {
    let t = Instant::now();
    let caps = d.ok(&[
        "domcapabilities",
        "--emulatorbin",
        emulator.to_str().expect("utf-8 path"),
        "--virttype",
        kind,
    ]);
    let took = t.elapsed();
    assert!(caps.contains("<machine>pc-i440fx-10.0</machine>"), "{caps}");
    took
}

#[test]
fn libvirt_runs_qmpkit_as_qemu() {
    for p in ["libvirtd", "virsh", "unshare", "qemu-img"] {
        if qmpkit_testkit::skip::program(p).is_none() {
            return;
        }
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        qmpkit_testkit::skip::skip("libvirtd's system instance needs root");
        return;
    }
    let root = Root(std::env::temp_dir().join(format!("qmpkit-libvirt-{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&root.0);
    Libvirtd::configure(&root.0);
    let bin_dir = root.0.join("bin");
    std::fs::create_dir_all(&bin_dir).expect("bin dir");
    let ours = bin_dir.join("qemu-system-x86_64");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_qmpkit"), &ours).expect("symlink");
    let real = PathBuf::from("/usr/bin/qemu-system-x86_64");
    let real_version = Command::new(&real)
        .arg("-version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let have_real = real_version.starts_with("QEMU emulator version 10.0.2");
    let kvm = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok();
    let kind = if kvm { "kvm" } else { "qemu" };

    let mut d = Libvirtd::start(&root.0).unwrap_or_else(|e| panic!("{e}"));
    // 1. The probe (both passes when KVM is there).
    let took = probe(&d, &ours, kind);
    eprintln!("libvirt: probe of qmpkit took {took:?}");

    // 2. The lifecycle, against real QEMU 10.0.2 too when it is installed.
    let xml = root.0.join("vm1.xml");
    std::fs::write(&xml, domain_xml("vm1", kind, &ours, "")).expect("xml");
    d.ok(&["define", xml.to_str().expect("utf-8")]);
    let (got, rss) = lifecycle(&d, "vm1", false);
    let kib = |r: Option<u64>| r.map_or("unknown".to_string(), |k| format!("{k} KiB"));
    eprintln!("libvirt: idle RSS of a booted domain: qmpkit {}", kib(rss));
    let want: Vec<(String, String)> = EXPECTED
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    if have_real {
        let took = probe(&d, &real, kind);
        eprintln!("libvirt: probe of real QEMU took {took:?}");
        let xml = root.0.join("real1.xml");
        std::fs::write(&xml, domain_xml("real1", kind, &real, "")).expect("xml");
        d.ok(&["define", xml.to_str().expect("utf-8")]);
        let (theirs, real_rss) = lifecycle(&d, "real1", true);
        eprintln!(
            "libvirt: idle RSS of a booted domain: qmpkit {}, real QEMU 10.0.2 {}",
            kib(rss),
            kib(real_rss)
        );
        eprintln!("libvirt: real QEMU's states: {theirs:?}");
        eprintln!("libvirt: qmpkit's states:    {got:?}");
        assert_eq!(theirs, want, "real QEMU's states (the expectation) changed");
    } else {
        eprintln!(
            "libvirt: real QEMU 10.0.2 not installed; states compared with its recorded ones"
        );
    }
    assert_eq!(
        got,
        want,
        "qmpkit's states differ from real QEMU's\n{}",
        d.log_tail()
    );

    // 3. A domain with a disk, a CD-ROM, a serial port on a file and a NIC.
    let disk = root.0.join("disk.qcow2");
    let st = Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2"])
        .arg(&disk)
        .arg("64M")
        .status()
        .expect("qemu-img");
    assert!(st.success());
    let serial = root.0.join("serial.log");
    let devices = format!(
        "    <disk type='file' device='disk'>\n      <driver name='qemu' type='qcow2'/>\n      \
         <source file='{}'/>\n      <target dev='vda' bus='virtio'/>\n    </disk>\n    \
         <disk type='file' device='cdrom'>\n      <driver name='qemu' type='raw'/>\n      \
         <target dev='hdc' bus='ide'/>\n      <readonly/>\n    </disk>\n    \
         <serial type='file'>\n      <source path='{}'/>\n      <target port='0'/>\n    </serial>\n    \
         <interface type='user'>\n      <mac address='52:54:00:11:22:33'/>\n      \
         <model type='virtio'/>\n    </interface>\n",
        disk.display(),
        serial.display()
    );
    let xml = root.0.join("vm2.xml");
    std::fs::write(&xml, domain_xml("vm2", kind, &ours, &devices)).expect("xml");
    d.ok(&["define", xml.to_str().expect("utf-8")]);
    d.ok(&["start", "vm2"]);
    assert_eq!(d.state("vm2", "running (booted)"), "running (booted)");
    let blk = d.ok(&["domblklist", "vm2"]);
    assert!(
        blk.contains("vda") && blk.contains(disk.to_str().unwrap_or("")),
        "{blk}"
    );
    let ifs = d.ok(&["domiflist", "vm2"]);
    assert!(ifs.contains("52:54:00:11:22:33"), "{ifs}");

    // 4. libvirtd restarts while vm2 runs: it reconnects.
    d.stop();
    let d2 = Libvirtd::start(&root.0).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(d2.state("vm2", "running (booted)"), "running (booted)");
    d2.ok(&["suspend", "vm2"]);
    assert_eq!(d2.state("vm2", "paused (user)"), "paused (user)");
    d2.ok(&["destroy", "vm2"]);
    assert_eq!(
        d2.state("vm2", "shut off (destroyed)"),
        "shut off (destroyed)"
    );

    // 5. What libvirt concluded about each binary.
    if let (Some(a), true) = (cached_flags(&root.0, &ours), have_real) {
        let b = cached_flags(&root.0, &real).unwrap_or_default();
        let only_real: Vec<&String> = b.difference(&a).collect();
        let only_ours: Vec<&String> = a.difference(&b).collect();
        eprintln!(
            "libvirt: capability flags: qmpkit {}, real QEMU 10.0.2 {}; only real's ({}): {}; only qmpkit's ({}): {}",
            a.len(),
            b.len(),
            only_real.len(),
            only_real.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" "),
            only_ours.len(),
            only_ours.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" "),
        );
        assert_eq!(
            a, b,
            "libvirt's capability flags for qmpkit differ from real QEMU 10.0.2's"
        );
    }
    drop(d2);
}
