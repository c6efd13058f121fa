//! `qmpkit serve` options: qmpkit's own (`--schema`, `--machines`, …) and
//! QEMU's options that mean the same here (`-S`, `-m`, `-qmp`, …).

use std::path::PathBuf;

use qmpkit_machine::config::{option_takes_value, parse_version, MachineConfig};
use qmpkit_schema::Dialect;

pub const HELP: &str = "\
usage: qmpkit serve [options] [QEMU options]

Run a simulated machine (or a fleet) behind a QMP monitor.

qmpkit options:
  --schema FILE          serve this QAPI schema instead of the built-in one
                         (source, or a server's query-qmp-schema answer)
  --dialect legacy|modern  language of --schema (default: the one it declares,
                         else modern, else legacy, as `schema diff` reads it)
  --cfg SYMBOL           enable a build configuration symbol (repeatable)
  --cfg-file FILE        symbols from a file, one per line
  --qemu-version X.Y.Z   version reported by the greeting and query-version
                         (default: the machine file's, else the one the --schema
                         path names, else inferred from the schema, else 2.12.0)
  --package STR          package string reported likewise
  --strict               commands the machine does not implement are left out:
                         they answer CommandNotFound, as in a QEMU built without them
  --synthesize           commands the machine does not implement answer a value made
                         up from their return type (a mock of the --schema; without
                         it, and without --strict, they answer GenericError saying
                         that they are not implemented)
  --list-handlers        list the served commands and how each is answered
  --machines N           serve N independent machines, monitors from a %d pattern
                         (--qmp unix:/run/vm-%d.sock; a fleet's monitors listen)
  --config FILE          TOML machine file (QEMU options below override it)
  --print-config         print the machine's configuration as TOML and exit
                         (every key a machine file may set)
  --qmp SPEC             same as -qmp
  --allow-remote-tcp     allow listening on a non-loopback TCP address
  --test-control         offer the __org.qmpkit_ test-control commands even when
                         the --schema lacks them

QEMU options understood:
  -qmp unix:PATH[,server=on,wait=off] | tcp:HOST:PORT[,...] | stdio
  -chardev socket,id=ID,path=PATH,server=on,wait=off   -mon chardev=ID,mode=control
  -S  -name NAME  -uuid UUID  -m SIZE  -smp N[,maxcpus=M]  -drive ...  -device ...
  -netdev ...  -object ...  -machine ...  -cpu ...  -enable-kvm  -vnc ...  -serial ...
  -incoming URI  -no-shutdown  -no-reboot  -no-acpi  -watchdog-action ACTION  -nodefaults
  -pidfile FILE  -daemonize

Without -qmp/-mon, QMP listens on a unix socket under $XDG_RUNTIME_DIR (or /tmp),
whose path is printed.";

/// Everything `qmpkit serve` was asked.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub schema: Option<PathBuf>,
    /// `--dialect`; `None`: detected as `schema diff` does.
    pub dialect: Option<Dialect>,
    pub cfg: Vec<String>,
    pub cfg_files: Vec<PathBuf>,
    pub qemu_version: Option<(u64, u64, u64)>,
    pub package: Option<String>,
    pub strict: bool,
    pub synthesize: bool,
    pub list_handlers: bool,
    pub print_config: bool,
    pub help: bool,
    pub machines: usize,
    pub allow_remote_tcp: bool,
    pub test_control: bool,
    pub config: MachineConfig,
    /// `--schema` was a `query-qmp-schema` answer (set when it is loaded).
    pub from_introspection: bool,
    /// Running as an emulator under this program name (`qmpkit emulate`,
    /// or a binary named `qemu-system-x86_64`): messages carry the name,
    /// as QEMU's do, and nothing is printed beyond what QEMU prints.
    pub emulator: Option<String>,
    /// Running as qemu-storage-daemon: the QMP commands its options stand for, run on the
    /// machine before serving (`(option as given, command, arguments)`).
    pub storage_daemon: Option<Vec<(String, &'static str, serde_json::Value)>>,
}

impl ServeOptions {
    /// An emulator's options: its configuration, nothing of qmpkit's own.
    pub fn emulator(config: MachineConfig, prog: &str) -> ServeOptions {
        ServeOptions {
            schema: None,
            dialect: None,
            cfg: Vec::new(),
            cfg_files: Vec::new(),
            qemu_version: Some(config.qemu_version),
            package: None,
            strict: false,
            synthesize: false,
            list_handlers: false,
            print_config: false,
            help: false,
            machines: 1,
            allow_remote_tcp: false,
            test_control: false,
            config,
            from_introspection: false,
            emulator: Some(prog.to_string()),
            storage_daemon: None,
        }
    }

    /// What the commands the machine does not implement answer.
    pub fn unhandled(&self) -> qmpkit_server::Unhandled {
        if self.strict {
            qmpkit_server::Unhandled::NotFound
        } else if self.synthesize {
            qmpkit_server::Unhandled::Synthesize
        } else {
            qmpkit_server::Unhandled::NotImplemented
        }
    }
}

/// Parse the arguments after `serve`. Errors are one line, naming the
/// option.
pub fn parse(args: &[String]) -> Result<ServeOptions, String> {
    // The machine file first: QEMU options given beside it override it.
    let mut config = MachineConfig::default_machine();
    let mut toml_sets_version = false;
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        let (name, inline) = split(a);
        if name == "config" && a.starts_with("--") {
            let v = match inline {
                Some(v) => v,
                None => {
                    i += 1;
                    args.get(i)
                        .cloned()
                        .ok_or_else(|| "--config: requires a file name".to_string())?
                }
            };
            let text = std::fs::read_to_string(&v).map_err(|e| format!("--config {v}: {e}"))?;
            config = MachineConfig::from_toml(&text).map_err(|e| toml_error(&v, &e.0))?;
            toml_sets_version = top_level_key(&text, "qemu-version");
        }
        i += 1;
    }
    let mut o = ServeOptions {
        schema: None,
        dialect: None,
        cfg: Vec::new(),
        cfg_files: Vec::new(),
        qemu_version: None,
        package: None,
        strict: false,
        synthesize: false,
        list_handlers: false,
        print_config: false,
        help: false,
        machines: 1,
        allow_remote_tcp: false,
        test_control: false,
        config,
        from_introspection: false,
        emulator: None,
        storage_daemon: None,
    };
    let mut qemu_opts: Vec<(String, Option<String>)> = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let a = args[i].clone();
        if !a.starts_with('-') || a == "-" {
            return Err(format!(
                "'{a}': unexpected argument (options start with '-')"
            ));
        }
        let (name, inline) = split(&a);
        let double = a.starts_with("--");
        let ours_with_value = matches!(
            name.as_str(),
            "schema"
                | "dialect"
                | "cfg"
                | "cfg-file"
                | "qemu-version"
                | "package"
                | "machines"
                | "config"
        );
        let ours_flag = matches!(
            name.as_str(),
            "strict"
                | "synthesize"
                | "list-handlers"
                | "print-config"
                | "help"
                | "allow-remote-tcp"
                | "test-control"
        ) || a == "-h";
        let take_value = |i: &mut usize| -> Result<String, String> {
            if let Some(v) = inline.clone() {
                return Ok(v);
            }
            *i += 1;
            args.get(*i)
                .cloned()
                .ok_or_else(|| format!("{a}: requires an argument"))
        };
        if ours_flag {
            if inline.is_some() {
                return Err(format!("{a}: option takes no argument"));
            }
            match name.as_str() {
                "strict" => o.strict = true,
                "synthesize" => o.synthesize = true,
                "list-handlers" => o.list_handlers = true,
                "print-config" => o.print_config = true,
                "allow-remote-tcp" => o.allow_remote_tcp = true,
                "test-control" => o.test_control = true,
                _ => o.help = true,
            }
        } else if ours_with_value && (double || name == "machines") {
            let v = take_value(&mut i)?;
            match name.as_str() {
                "schema" => o.schema = Some(PathBuf::from(v)),
                "dialect" => {
                    o.dialect = match v.as_str() {
                        "legacy" => Some(Dialect::Legacy),
                        "modern" => Some(Dialect::Modern),
                        _ => return Err(format!("--dialect {v}: expected 'legacy' or 'modern'")),
                    }
                }
                "cfg" => o.cfg.push(v),
                "cfg-file" => o.cfg_files.push(PathBuf::from(v)),
                "qemu-version" => {
                    o.qemu_version =
                        Some(parse_version(&v).map_err(|e| format!("--qemu-version: {e}"))?)
                }
                "package" => o.package = Some(v),
                "machines" => {
                    let n: usize = v
                        .parse()
                        .ok()
                        .filter(|n| *n >= 1 && *n <= 1_000_000)
                        .ok_or_else(|| {
                            format!("--machines {v}: expected a number from 1 to 1000000")
                        })?;
                    o.machines = n;
                }
                _ => {} // --config: read above
            }
        } else {
            match option_takes_value(&name) {
                None => return Err(format!("{a}: invalid option")),
                Some(false) => {
                    if inline.is_some() {
                        return Err(format!("{a}: option takes no argument"));
                    }
                    qemu_opts.push((name.clone(), None));
                }
                Some(true) => {
                    let v = take_value(&mut i)?;
                    qemu_opts.push((name.clone(), Some(v)));
                }
            }
        }
        i += 1;
    }
    o.config.apply_options(&qemu_opts).map_err(|e| e.0)?;
    if o.strict && o.synthesize {
        return Err(
            "--strict and --synthesize: choose one (commands the machine does not implement are either left out or made up)"
                .into(),
        );
    }
    // --qemu-version, else the machine file's qemu-version, else the version
    // the --schema path names; otherwise `serve` infers it from the schema.
    if o.qemu_version.is_none() && toml_sets_version {
        o.qemu_version = Some(o.config.qemu_version);
    }
    if o.qemu_version.is_none() {
        o.qemu_version = o.schema.as_deref().and_then(super::version::from_path);
    }
    if let Some(v) = o.qemu_version {
        o.config.qemu_version = v;
    }
    if let Some(p) = &o.package {
        o.config.package = p.clone();
    }
    Ok(o)
}

/// True when the TOML `text` sets `key` before its first table header.
fn top_level_key(text: &str, key: &str) -> bool {
    for line in text.lines() {
        let l = line.trim_start();
        if l.starts_with('[') {
            return false;
        }
        let k = l.split('=').next().unwrap_or("").trim();
        if k == key || k.trim_matches('"') == key || k.trim_matches('\'') == key {
            return true;
        }
    }
    false
}

/// A machine file's error on one line: `FILE:LINE:COLUMN: message`. The
/// TOML reader's own text spans several lines (position, the line quoted
/// with a caret, then the message).
fn toml_error(file: &str, e: &str) -> String {
    let e = e.strip_prefix("machine file: ").unwrap_or(e);
    let mut lines = e.lines();
    let first = lines.next().unwrap_or("").trim();
    let pos = first
        .strip_prefix("TOML parse error at line ")
        .and_then(|r| {
            let (l, c) = r.split_once(", column ")?;
            Some((l.trim().parse::<u64>().ok()?, c.trim().parse::<u64>().ok()?))
        });
    match pos {
        Some((l, c)) => {
            // After the quoted source (lines starting with a number or
            // `|`), the message.
            let msg: Vec<&str> = lines
                .map(str::trim)
                .filter(|x| {
                    !x.is_empty()
                        && !x.starts_with('|')
                        && !x
                            .split_once('|')
                            .is_some_and(|(n, _)| n.trim().bytes().all(|b| b.is_ascii_digit()))
                })
                .collect();
            let msg = if msg.is_empty() {
                "invalid machine file".to_string()
            } else {
                msg.join("; ")
            };
            format!("{file}:{l}:{c}: {msg}")
        }
        None => {
            let msg: Vec<&str> = e.lines().map(str::trim).filter(|x| !x.is_empty()).collect();
            format!("{file}: {}", msg.join("; "))
        }
    }
}

/// `(name, inline value)` of an option word: `--opt=value`, `-opt`, `--opt`.
fn split(a: &str) -> (String, Option<String>) {
    let bare = a.trim_start_matches('-');
    match bare.split_once('=') {
        Some((n, v)) if a.starts_with("--") => (n.to_string(), Some(v.to_string())),
        _ => (bare.to_string(), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(v: &[&str]) -> Result<ServeOptions, String> {
        parse(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn parses() {
        let o = p(&[
            "-S",
            "--qmp",
            "unix:/tmp/x.sock",
            "-m",
            "2G",
            "--machines",
            "3",
        ])
        .unwrap();
        assert!(o.config.start_paused);
        assert_eq!(o.config.qmp, ["unix:/tmp/x.sock"]);
        assert_eq!(o.config.memory_bytes, 2 << 30);
        assert_eq!(o.machines, 3);
        assert_eq!(
            p(&["-frobnicate"]).unwrap_err(),
            "-frobnicate: invalid option"
        );
        assert_eq!(p(&["-m"]).unwrap_err(), "-m: requires an argument");
        // -usb takes no argument: the next option is one.
        let o = p(&["-usb", "-S"]).unwrap();
        assert!(o.config.start_paused);
        let o = p(&["--schema", "/x/qemu-1.3-dev.json"]).unwrap();
        assert_eq!(o.config.qemu_version, (1, 3, 0));
    }

    #[test]
    fn version_precedence_and_machine_file_errors() {
        let dir = std::env::temp_dir().join(format!("qmpkit-opts-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let vm = dir.join("vm.toml");
        std::fs::write(&vm, "# a machine\nqemu-version = \"7.2.0\"\n[guest]\n").unwrap();
        let vm_s = vm.to_str().unwrap();
        // The machine file's version beats the --schema path's; --qemu-version beats both.
        let o = p(&["--config", vm_s, "--schema", "/s/qemu-1.3-dev.json"]).unwrap();
        assert_eq!(o.config.qemu_version, (7, 2, 0));
        assert_eq!(o.qemu_version, Some((7, 2, 0)));
        let o = p(&["--qemu-version", "4.0", "--config", vm_s]).unwrap();
        assert_eq!(o.config.qemu_version, (4, 0, 0));
        // Neither: left for the schema's content.
        let o = p(&["--schema", "/s/mine.json"]).unwrap();
        assert_eq!(o.qemu_version, None);
        assert!(!top_level_key(
            "[x]\nqemu-version = \"1.0\"\n",
            "qemu-version"
        ));
        assert!(top_level_key(
            "\"qemu-version\" = \"1.0\"\n",
            "qemu-version"
        ));
        assert_eq!(
            toml_error(
                "vm.toml",
                "machine file: TOML parse error at line 3, column 5\n  |\n3 | a = \n  |     ^\nstring values must be quoted\n"
            ),
            "vm.toml:3:5: string values must be quoted"
        );
        assert_eq!(toml_error("vm.toml", "machine file: odd"), "vm.toml: odd");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn odd_input_is_an_error_not_a_panic() {
        let cases: &[&[&str]] = &[
            &["-m", ""],
            &["-m", "1.5.5G"],
            &["-m", "size=0"],
            &["-smp", ",,,"],
            &["-smp", "0"],
            &["-smp", "cpus=99999999999"],
            &["-drive", "index=99999999999999999999"],
            &["-drive", "media=floppy"],
            &["-drive", "if=bogus"],
            &["-name", ""],
            &["-name", "debug-threads=on"],
            &["--machines", "-1"],
            &["--machines", "ten"],
            &["-uuid"],
            &["--qemu-version", "1.2.3.4"],
            &["--qemu-version", "a.b"],
            &["-device", ""],
            &["-device", "e1000,id=a", "-device", "e1000,id=a"],
            &["-netdev", "user"],
            &["-object", "iothread"],
            &["-watchdog-action", "explode"],
            &["--config"],
            &["-S=1"],
            &["--strict=yes"],
            &["--synthesize=yes"],
            &["--strict", "--synthesize"],
            &["-"],
            &["plain"],
        ];
        for c in cases {
            let r = p(c);
            assert!(r.is_err(), "{c:?} accepted");
            let e = r.unwrap_err();
            assert!(!e.is_empty() && !e.contains('\n'), "{c:?}: {e}");
        }
        // Accepted oddities.
        assert!(p(&["-m", "1.5G"]).is_ok());
        assert!(p(&["-name", "a,,b"]).is_ok());
        assert!(p(&["--qemu-version=7.2"]).is_ok());
    }
}
