//! The simulated keyboard and mice: `send-key`, `input-send-event`,
//! `query-mice`, and the test query `__org.qmpkit_query-keyboard`
//! (`{pressed: [qcode], typed: text}`: keys held down now, and the text the
//! guest has seen typed, with shift, backspace and return applied).

use crate::api;
use crate::devices::PlugInfo;
use crate::qom::{types, NodeId, Tree};
use crate::{Machine, RunState, TimerAction};
use qmpkit_qapi::Enum;
use qmpkit_wire::{ErrorClass, QmpError};

/// What the keyboard does later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timer {
    /// A key of a `send-key` sequence goes down or up.
    Key { key: &'static str, down: bool },
}

/// Default time between the key events of `send-key` (QEMU's keyboard
/// queue delay); `hold-time` replaces it.
pub const DEFAULT_DELAY_MS: u64 = 10;

/// How much typed text is kept.
pub const TYPED_MAX: usize = 4096;

/// A pointing device the guest sees.
#[derive(Debug, Clone, PartialEq)]
pub struct Mouse {
    pub index: u32,
    pub name: &'static str,
    pub absolute: bool,
    /// Canonical QOM path of the device providing it (empty: built in).
    pub path: String,
}

/// Keyboard and mouse state.
#[derive(Debug, Clone, Default)]
pub struct InputState {
    /// QKeyCodes held down, in press order.
    pub pressed: Vec<&'static str>,
    /// Text typed so far (the last [`TYPED_MAX`] characters).
    pub typed: String,
    /// Mice, oldest first; the newest is current.
    pub mice: Vec<Mouse>,
    /// Next input-handler index.
    pub next_index: u32,
    /// Pointer position (absolute axes, 0..=32767) and relative motion sum.
    pub abs: (i64, i64),
    pub rel: (i64, i64),
    /// Buttons held down.
    pub buttons: Vec<&'static str>,
    /// When the key events queued by `send-key` will all have been sent
    /// (ns, machine time).
    pub queue_until: u64,
    /// Machine resets already applied to this state.
    pub resets_seen: u64,
}

fn mouse_model(ty: &str) -> Option<(&'static str, bool)> {
    Some(match ty {
        "usb-tablet" => ("QEMU HID Tablet", true),
        "usb-mouse" => ("QEMU HID Mouse", false),
        "virtio-tablet-pci" => ("QEMU Virtio Tablet", true),
        "virtio-mouse-pci" => ("QEMU Virtio Mouse", false),
        _ => return None,
    })
}

impl InputState {
    /// The built-in PS/2 keyboard (index 0) and mouse (index 1), plus mice
    /// among the configured devices.
    pub fn new(tree: &Tree) -> InputState {
        let mut s = InputState {
            mice: vec![Mouse {
                index: 1,
                name: "QEMU PS/2 Mouse",
                absolute: false,
                path: String::new(),
            }],
            next_index: 2,
            abs: (16384, 16384),
            ..Default::default()
        };
        for n in crate::devices::all_devices(tree) {
            s.device_added(tree.node(n).ty, tree.path(n));
        }
        s
    }

    fn device_added(&mut self, ty: &str, path: String) {
        if let Some((name, absolute)) = mouse_model(ty) {
            self.mice.push(Mouse {
                index: self.next_index,
                name,
                absolute,
                path,
            });
        }
        if types::is_a(ty, "device") && is_input_device(ty) {
            self.next_index += 1;
        }
    }

    /// Hook: a device was plugged (a mouse joins the list).
    pub fn on_plug(&mut self, info: &PlugInfo) {
        self.device_added(info.ty, info.path.clone());
    }

    /// Hook: a device is about to be removed.
    pub fn on_unplug(&mut self, info: &PlugInfo) {
        self.mice.retain(|mo| mo.path != info.path);
    }
}

fn is_input_device(ty: &str) -> bool {
    mouse_model(ty).is_some() || matches!(ty, "usb-kbd" | "virtio-keyboard-pci")
}

/// Apply machine resets that happened since the last look: the keyboard
/// and mouse reset and the guest's screen starts over.
pub fn sync_reset(m: &mut Machine) {
    if m.input.resets_seen == m.run.reset_count {
        return;
    }
    m.input.resets_seen = m.run.reset_count;
    let i = &mut m.input;
    i.pressed.clear();
    i.typed.clear();
    i.buttons.clear();
    i.rel = (0, 0);
}

/// `query-mice`: newest first; the newest is current.
pub fn query_mice(m: &mut Machine) -> Vec<api::MouseInfo> {
    sync_reset(m);
    let n = m.input.mice.len();
    m.input
        .mice
        .iter()
        .enumerate()
        .rev()
        .map(|(i, mo)| api::MouseInfo {
            name: mo.name.to_string(),
            index: mo.index.into(),
            current: i + 1 == n,
            absolute: mo.absolute,
        })
        .collect()
}

/// QKeyCode names (QAPI enum order).
pub static QKEYCODES: &[&str] = &[
    "unmapped",
    "shift",
    "shift_r",
    "alt",
    "alt_r",
    "ctrl",
    "ctrl_r",
    "menu",
    "esc",
    "1",
    "2",
    "3",
    "4",
    "5",
    "6",
    "7",
    "8",
    "9",
    "0",
    "minus",
    "equal",
    "backspace",
    "tab",
    "q",
    "w",
    "e",
    "r",
    "t",
    "y",
    "u",
    "i",
    "o",
    "p",
    "bracket_left",
    "bracket_right",
    "ret",
    "a",
    "s",
    "d",
    "f",
    "g",
    "h",
    "j",
    "k",
    "l",
    "semicolon",
    "apostrophe",
    "grave_accent",
    "backslash",
    "z",
    "x",
    "c",
    "v",
    "b",
    "n",
    "m",
    "comma",
    "dot",
    "slash",
    "asterisk",
    "spc",
    "caps_lock",
    "f1",
    "f2",
    "f3",
    "f4",
    "f5",
    "f6",
    "f7",
    "f8",
    "f9",
    "f10",
    "num_lock",
    "scroll_lock",
    "kp_divide",
    "kp_multiply",
    "kp_subtract",
    "kp_add",
    "kp_enter",
    "kp_decimal",
    "sysrq",
    "kp_0",
    "kp_1",
    "kp_2",
    "kp_3",
    "kp_4",
    "kp_5",
    "kp_6",
    "kp_7",
    "kp_8",
    "kp_9",
    "less",
    "f11",
    "f12",
    "print",
    "home",
    "pgup",
    "pgdn",
    "end",
    "left",
    "up",
    "down",
    "right",
    "insert",
    "delete",
    "stop",
    "again",
    "props",
    "undo",
    "front",
    "copy",
    "open",
    "paste",
    "find",
    "cut",
    "lf",
    "help",
    "meta_l",
    "meta_r",
    "compose",
    "pause",
    "ro",
    "hiragana",
    "henkan",
    "yen",
    "muhenkan",
    "katakanahiragana",
    "kp_comma",
    "kp_equals",
    "power",
    "sleep",
    "wake",
    "audionext",
    "audioprev",
    "audiostop",
    "audioplay",
    "audiomute",
    "volumeup",
    "volumedown",
    "mediaselect",
    "mail",
    "calculator",
    "computer",
    "ac_home",
    "ac_back",
    "ac_forward",
    "ac_refresh",
    "ac_bookmarks",
    "lang1",
    "lang2",
];

fn qcode(name: &str) -> Option<&'static str> {
    QKEYCODES.iter().copied().find(|&k| k == name)
}

/// PC scancode (set 1, extended keys as 0x80 | code) to QKeyCode.
pub fn number_to_qcode(n: i64) -> &'static str {
    const ROW: &[&str] = &[
        "unmapped",
        "esc",
        "1",
        "2",
        "3",
        "4",
        "5",
        "6",
        "7",
        "8",
        "9",
        "0",
        "minus",
        "equal",
        "backspace",
        "tab",
        "q",
        "w",
        "e",
        "r",
        "t",
        "y",
        "u",
        "i",
        "o",
        "p",
        "bracket_left",
        "bracket_right",
        "ret",
        "ctrl",
        "a",
        "s",
        "d",
        "f",
        "g",
        "h",
        "j",
        "k",
        "l",
        "semicolon",
        "apostrophe",
        "grave_accent",
        "shift",
        "backslash",
        "z",
        "x",
        "c",
        "v",
        "b",
        "n",
        "m",
        "comma",
        "dot",
        "slash",
        "shift_r",
        "kp_multiply",
        "alt",
        "spc",
        "caps_lock",
        "f1",
        "f2",
        "f3",
        "f4",
        "f5",
        "f6",
        "f7",
        "f8",
        "f9",
        "f10",
        "num_lock",
        "scroll_lock",
        "kp_7",
        "kp_8",
        "kp_9",
        "kp_subtract",
        "kp_4",
        "kp_5",
        "kp_6",
        "kp_add",
        "kp_1",
        "kp_2",
        "kp_3",
        "kp_0",
        "kp_decimal",
        "sysrq",
        "unmapped",
        "less",
        "f11",
        "f12",
    ];
    if (0..ROW.len() as i64).contains(&n) {
        return ROW[n as usize];
    }
    match n {
        0x9c => "kp_enter",
        0x9d => "ctrl_r",
        0xb5 => "kp_divide",
        0xb7 => "print",
        0xb8 => "alt_r",
        0xc7 => "home",
        0xc8 => "up",
        0xc9 => "pgup",
        0xcb => "left",
        0xcd => "right",
        0xcf => "end",
        0xd0 => "down",
        0xd1 => "pgdn",
        0xd2 => "insert",
        0xd3 => "delete",
        0xdb => "meta_l",
        0xdc => "meta_r",
        0xdd => "menu",
        _ => "unmapped",
    }
}

/// The character a key types (unshifted, shifted).
fn key_char(k: &str) -> Option<(char, char)> {
    const DIGITS: &str = ")!@#$%^&*(";
    Some(match k {
        d if d.len() == 1 && d.as_bytes()[0].is_ascii_digit() => {
            let i = (d.as_bytes()[0] - b'0') as usize;
            (d.chars().next()?, DIGITS.chars().nth(i)?)
        }
        l if l.len() == 1 && l.as_bytes()[0].is_ascii_lowercase() => {
            let c = l.chars().next()?;
            (c, c.to_ascii_uppercase())
        }
        "spc" => (' ', ' '),
        "ret" | "kp_enter" => ('\n', '\n'),
        "tab" => ('\t', '\t'),
        "minus" => ('-', '_'),
        "equal" => ('=', '+'),
        "bracket_left" => ('[', '{'),
        "bracket_right" => (']', '}'),
        "semicolon" => (';', ':'),
        "apostrophe" => ('\'', '"'),
        "grave_accent" => ('`', '~'),
        "backslash" => ('\\', '|'),
        "comma" => (',', '<'),
        "dot" => ('.', '>'),
        "slash" => ('/', '?'),
        "kp_multiply" | "asterisk" => ('*', '*'),
        "kp_add" => ('+', '+'),
        "kp_subtract" => ('-', '-'),
        "kp_divide" => ('/', '/'),
        "kp_decimal" => ('.', '.'),
        k if k.starts_with("kp_") && k.len() == 4 => {
            let c = k.chars().nth(3)?;
            (c, c)
        }
        _ => return None,
    })
}

/// A key goes down or up.
pub fn key_event(m: &mut Machine, key: &'static str, down: bool) {
    let inp = &mut m.input;
    if down {
        let ctrl_alt = inp
            .pressed
            .iter()
            .any(|k| matches!(*k, "ctrl" | "ctrl_r" | "alt" | "alt_r"));
        if !inp.pressed.contains(&key) {
            inp.pressed.push(key);
        }
        if ctrl_alt {
            return;
        }
        let shift = inp
            .pressed
            .iter()
            .any(|k| matches!(*k, "shift" | "shift_r"));
        if key == "backspace" {
            inp.typed.pop();
        } else if let Some((lo, hi)) = key_char(key) {
            inp.typed.push(if shift { hi } else { lo });
            if inp.typed.len() > TYPED_MAX {
                let cut = inp.typed.len() - TYPED_MAX;
                let cut = (cut..inp.typed.len())
                    .find(|&i| inp.typed.is_char_boundary(i))
                    .unwrap_or(0);
                inp.typed.drain(..cut);
            }
        }
    } else {
        inp.pressed.retain(|k| *k != key);
    }
}

fn key_value(v: &api::KeyValue) -> Result<&'static str, QmpError> {
    let name = match v {
        api::KeyValue::Number(n) => return Ok(number_to_qcode(*n)),
        api::KeyValue::Qcode(q) => q.as_str(),
        api::KeyValue::Unknown(v) => v.get("data").and_then(|d| d.as_str()).unwrap_or(""),
    };
    qcode(name).ok_or_else(|| {
        QmpError::generic(format!("Parameter 'data' does not accept value '{name}'"))
    })
}

/// `send-key`: presses in order, releases in reverse, `hold_time` ms apart (QEMU's queue
/// delay when not given).
pub fn send_key(
    m: &mut Machine,
    keys: &[api::KeyValue],
    hold_time: Option<i64>,
) -> Result<(), QmpError> {
    sync_reset(m);
    let delay_ms = hold_time
        .filter(|&h| h > 0)
        .map(|h| h as u64)
        .unwrap_or(DEFAULT_DELAY_MS);
    let mut codes = Vec::with_capacity(keys.len());
    for k in keys {
        codes.push(key_value(k)?);
    }
    // Presses in order, releases in reverse, one step apart; queued after
    // whatever earlier calls still have in flight.
    let mut steps: Vec<(&'static str, bool)> = codes.iter().map(|&k| (k, true)).collect();
    steps.extend(codes.iter().rev().map(|&k| (k, false)));
    let d = delay_ms.saturating_mul(1_000_000);
    let now = m.now_ns;
    let start = m.input.queue_until.max(now);
    for (j, (k, down)) in steps.iter().enumerate() {
        let at = start.saturating_add(d.saturating_mul(j as u64));
        if *k == "unmapped" {
            continue;
        }
        if at <= now {
            key_event(m, k, *down);
        } else {
            m.schedule(
                at - now,
                TimerAction::Input(Timer::Key {
                    key: k,
                    down: *down,
                }),
            );
        }
    }
    m.input.queue_until = start.saturating_add(d.saturating_mul(steps.len() as u64));
    Ok(())
}

/// Timer callback.
pub fn on_timer(m: &mut Machine, t: Timer) {
    sync_reset(m);
    let Timer::Key { key, down } = t;
    key_event(m, key, down);
}

/// Find the console of `device` (a display device's id).
pub fn console_of(m: &Machine, device: &str, head: i64) -> Result<NodeId, QmpError> {
    let tree = &m.qom.tree;
    let Some(n) = crate::devices::find_device(m, device) else {
        return Err(QmpError::new(
            ErrorClass::DeviceNotFound,
            format!("Device '{device}' not found"),
        ));
    };
    let ty = tree.node(n).ty;
    let is_display = matches!(
        ty,
        "VGA" | "cirrus-vga" | "qxl-vga" | "secondary-vga" | "virtio-vga"
    );
    if !is_display || head != 0 {
        return Err(QmpError::generic(format!(
            "Device '{device}' (head {head}) is not a graphic console"
        )));
    }
    Ok(n)
}

fn button(b: &api::InputButton) -> &'static str {
    match b.as_str() {
        "left" => "left",
        "middle" => "middle",
        "right" => "right",
        "wheel-up" => "wheel-up",
        "wheel-down" => "wheel-down",
        "side" => "side",
        _ => "extra",
    }
}

/// `input-send-event`: the events, in order, to the guest (checked before any acts).
pub fn input_send_event(
    m: &mut Machine,
    device: Option<&str>,
    head: Option<i64>,
    events: &[api::InputEvent],
) -> Result<(), QmpError> {
    sync_reset(m);
    if let Some(dev) = device {
        console_of(m, dev, head.unwrap_or(0))?;
    }
    if !(m.is(RunState::Running) || m.is(RunState::Suspended)) {
        return Err(QmpError::generic("VM not running"));
    }
    let axis = |a: &api::InputAxis| if a.as_str() == "y" { "y" } else { "x" };
    // Check everything before acting.
    let mut parsed = Vec::new();
    for e in events {
        match e {
            api::InputEvent::Key(k) => parsed.push(("key", key_value(&k.key)?, k.down, 0i64)),
            api::InputEvent::Btn(b) => parsed.push(("btn", button(&b.button), b.down, 0)),
            api::InputEvent::Rel(r) => parsed.push(("rel", axis(&r.axis), false, r.value)),
            api::InputEvent::Abs(a) => parsed.push(("abs", axis(&a.axis), false, a.value)),
            api::InputEvent::Unknown(_) => {}
        }
    }
    for (ty, what, down, v) in parsed {
        match ty {
            "key" => {
                if what != "unmapped" {
                    key_event(m, what, down);
                }
            }
            "btn" => {
                let b = &mut m.input.buttons;
                if down {
                    if !b.contains(&what) {
                        b.push(what);
                    }
                } else {
                    b.retain(|x| *x != what);
                }
            }
            "rel" => {
                let r = &mut m.input.rel;
                if what == "x" {
                    r.0 = r.0.saturating_add(v);
                } else {
                    r.1 = r.1.saturating_add(v);
                }
            }
            _ => {
                let a = &mut m.input.abs;
                if what == "x" {
                    a.0 = v;
                } else {
                    a.1 = v;
                }
            }
        }
    }
    Ok(())
}

/// `__org.qmpkit_query-keyboard`: keys held down now and the text typed.
pub fn query_keyboard(m: &mut Machine) -> api::OrgQmpkitKeyboardState {
    sync_reset(m);
    api::OrgQmpkitKeyboardState {
        pressed: m.input.pressed.iter().map(|k| k.to_string()).collect(),
        typed: m.input.typed.clone(),
    }
}
