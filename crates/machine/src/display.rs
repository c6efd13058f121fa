//! The display: `screendump` writes a P6 PPM (or, with `format: png`, a
//! PNG) of the simulated VGA text
//! screen (720x400: 80x25 cells of 9x16 pixels), whose content follows the
//! machine (run state, name, what was typed); the VNC server's queries and
//! passwords (`query-vnc`, `query-vnc-servers`, `set_password`,
//! `expire_password`, `change-vnc-password`, `change vnc …`).
//!
//! Glyphs are drawn procedurally (a fixed bit pattern per character), not
//! from a real font: the image is deterministic and changes with the text.

use std::io::Write;

use crate::api;
use crate::{Machine, RunState};
use qmpkit_qapi::Enum;
use qmpkit_wire::{ErrorClass, QmpError};

pub const WIDTH: usize = 720;
pub const HEIGHT: usize = 400;
pub const COLS: usize = 80;
pub const ROWS: usize = 25;

/// When the VNC password stops working.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Expiry {
    #[default]
    Never,
    /// Seconds since the epoch (0: now).
    At(u64),
}

/// VNC server state.
#[derive(Debug, Clone, Default)]
pub struct DisplayState {
    pub password: Option<String>,
    pub expiry: Expiry,
}

/// The VNC listening address `(host, port)` from `-vnc`, if enabled.
pub fn vnc_addr(m: &Machine) -> Option<(String, u16)> {
    let spec = m.config.vnc.as_deref()?;
    let first = spec.split(',').next().unwrap_or("");
    if first == "none" {
        return None;
    }
    let (host, disp) = match first.rsplit_once(':') {
        Some((h, d)) => (h, d),
        None => ("", first),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let host = if host.is_empty() { "0.0.0.0" } else { host };
    let disp: u16 = disp.parse().unwrap_or(0);
    Some((host.to_string(), 5900u16.saturating_add(disp)))
}

/// VNC authentication: password authentication unless `-vnc …,password=off`.
pub fn vnc_auth(m: &Machine) -> &'static str {
    match m.config.vnc.as_deref() {
        Some(s) if s.contains("password=off") => "none",
        _ => "vnc",
    }
}

fn family(host: &str) -> &'static str {
    if host.contains(':') {
        "ipv6"
    } else {
        "ipv4"
    }
}

/// `query-vnc`.
pub fn query_vnc(m: &Machine) -> api::VncInfo {
    match vnc_addr(m) {
        None => api::VncInfo {
            enabled: false,
            host: None,
            family: None,
            service: None,
            auth: None,
            clients: None,
        },
        Some((host, port)) => api::VncInfo {
            enabled: true,
            family: Some(api::NetworkAddressFamily::from_name(family(&host))),
            host: Some(host),
            service: Some(port.to_string()),
            auth: Some(vnc_auth(m).to_string()),
            clients: Some(Vec::new()),
        },
    }
}

/// `query-vnc-servers`: the one VNC server, if enabled.
pub fn query_vnc_servers(m: &Machine) -> Vec<api::VncInfo2> {
    let Some((host, port)) = vnc_addr(m) else {
        return Vec::new();
    };
    let auth = api::VncPrimaryAuth::from_name(vnc_auth(m));
    vec![api::VncInfo2 {
        id: "default".into(),
        server: vec![api::VncServerInfo2 {
            family: api::NetworkAddressFamily::from_name(family(&host)),
            host,
            service: port.to_string(),
            websocket: false,
            auth: auth.clone(),
            vencrypt: None,
        }],
        clients: Vec::new(),
        auth,
        vencrypt: None,
        display: Some("video0".into()),
    }]
}

/// `query-spice`: the machine has no SPICE server.
pub fn query_spice() -> api::SpiceInfo {
    api::SpiceInfo {
        enabled: false,
        migrated: false,
        host: None,
        port: None,
        tls_port: None,
        auth: None,
        compiled_version: None,
        mouse_mode: api::SpiceQueryMouseMode::Client,
        channels: None,
    }
}

/// `change-vnc-password`, `change vnc password`.
pub fn set_vnc_password(m: &mut Machine, password: &str) -> Result<(), QmpError> {
    if vnc_addr(m).is_none() || vnc_auth(m) == "none" {
        return Err(QmpError::generic("Could not set password"));
    }
    m.display.password = Some(password.to_string());
    Ok(())
}

fn no_spice() -> QmpError {
    QmpError::new(
        ErrorClass::DeviceNotActive,
        "No spice device has been activated",
    )
}

/// `set_password`.
pub fn set_password(
    m: &mut Machine,
    protocol: &str,
    password: &str,
    connected: Option<&str>,
) -> Result<(), QmpError> {
    let (fail, disconnect) = match connected {
        None | Some("keep") => (false, false),
        Some("fail") => (true, false),
        Some("disconnect") => (false, true),
        Some(_) => return Err(QmpError::generic("Invalid parameter 'connected'")),
    };
    match protocol {
        "spice" => Err(no_spice()),
        "vnc" => {
            if fail || disconnect {
                return Err(QmpError::generic("Invalid parameter 'connected'"));
            }
            set_vnc_password(m, password)
        }
        _ => Err(QmpError::generic("Invalid parameter 'protocol'")),
    }
}

/// `expire_password`.
pub fn expire_password(m: &mut Machine, protocol: &str, time: &str) -> Result<(), QmpError> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let expiry = match time {
        "now" => Expiry::At(0),
        "never" => Expiry::Never,
        t if t.starts_with('+') => Expiry::At(now.saturating_add(lead_number(&t[1..]))),
        t => Expiry::At(lead_number(t)),
    };
    match protocol {
        "spice" => Err(no_spice()),
        "vnc" => {
            if vnc_addr(m).is_none() {
                return Err(QmpError::generic("Could not set password expire time."));
            }
            m.display.expiry = expiry;
            Ok(())
        }
        _ => Err(QmpError::generic("Invalid parameter 'protocol'")),
    }
}

/// The leading decimal number of `s` (like `strtoull`), 0 if none.
fn lead_number(s: &str) -> u64 {
    let digits: String = s
        .trim_start()
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.parse().unwrap_or(0)
}

/// `change vnc …`: the password (`target` "password", the password in `arg`), or a new
/// listening address, which the machine cannot start.
pub fn change_vnc(m: &mut Machine, target: &str, arg: Option<&str>) -> Result<(), QmpError> {
    match target {
        "password" => match arg {
            None => Err(QmpError::generic("Parameter 'password' is missing")),
            Some(p) => set_vnc_password(m, p),
        },
        _ => Err(QmpError::generic(
            "Could not start VNC server on ".to_string() + target,
        )),
    }
}

// ---------------------------------------------------------------------------
// The screen.

/// The 80x25 text of the screen.
pub fn screen_text(m: &Machine) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    if m.is(RunState::Prelaunch) {
        lines.push("Guest has not initialized the display (yet).".into());
        return lines;
    }
    let name = m.ident.name.clone().unwrap_or_else(|| "qmpkit".into());
    lines.push(format!(
        "{name} - {} - {} MiB, {} vCPUs",
        m.run.state.as_str(),
        m.config.memory_bytes >> 20,
        m.ident.cpus.len()
    ));
    lines.push(String::new());
    lines.push(format!("{name} login: "));
    // Typed text, wrapped, the last lines kept.
    let mut cur = lines.pop().unwrap_or_default();
    for ch in m.input.typed.chars() {
        match ch {
            '\n' => lines.push(std::mem::take(&mut cur)),
            '\t' => cur.push_str("    "),
            c => cur.push(c),
        }
        if cur.chars().count() >= COLS {
            lines.push(std::mem::take(&mut cur));
        }
    }
    lines.push(cur + "_");
    if lines.len() > ROWS {
        let keep = lines.split_off(lines.len() - (ROWS - 1));
        lines.truncate(1);
        lines.extend(keep);
    }
    lines
}

fn glyph_row(c: char, row: usize) -> u8 {
    if c == ' ' || !(2..14).contains(&row) {
        return 0;
    }
    if c == '_' {
        return if row == 13 { 0xff } else { 0 };
    }
    let mut x = (c as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (row as u64 / 2);
    x ^= x >> 29;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 32;
    // Keep a one-pixel margin on each side.
    ((x as u8) & 0x7e) | 0x18
}

/// Render the screen as RGB pixels.
pub fn render(m: &Machine) -> Vec<u8> {
    let mut px = vec![0u8; WIDTH * HEIGHT * 3];
    let lines = screen_text(m);
    let fg = [0xaa, 0xaa, 0xaa];
    let status_bg = [0x00, 0x00, 0xaa];
    for (r, line) in lines.iter().enumerate().take(ROWS) {
        let chars: Vec<char> = line.chars().collect();
        for cy in 0..16 {
            let y = r * 16 + cy;
            for col in 0..COLS {
                let c = chars.get(col).copied().unwrap_or(' ');
                let bits = glyph_row(c, cy);
                for cx in 0..9 {
                    let on = cx < 8 && bits & (0x80 >> cx) != 0;
                    let x = col * 9 + cx;
                    let o = (y * WIDTH + x) * 3;
                    let color = if on {
                        fg
                    } else if r == 0 && !m.is(RunState::Prelaunch) {
                        status_bg
                    } else {
                        [0, 0, 0]
                    };
                    px[o..o + 3].copy_from_slice(&color);
                }
            }
        }
    }
    px
}

fn crc32(data: &[u8], mut crc: u32) -> u32 {
    crc = !crc;
    for &b in data {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn png_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let crc = crc32(data, crc32(kind, 0));
    out.extend_from_slice(&crc.to_be_bytes());
}

/// Encode RGB pixels as a PNG (zlib stream of stored blocks: valid,
/// uncompressed).
pub fn png(width: usize, height: usize, rgb: &[u8]) -> Vec<u8> {
    let mut raw = Vec::with_capacity(height * (width * 3 + 1));
    for row in rgb.chunks(width * 3).take(height) {
        raw.push(0);
        raw.extend_from_slice(row);
    }
    let mut z = vec![0x78, 0x01];
    let mut blocks = raw.chunks(65535).peekable();
    while let Some(b) = blocks.next() {
        z.push(u8::from(blocks.peek().is_none()));
        z.extend_from_slice(&(b.len() as u16).to_le_bytes());
        z.extend_from_slice(&(!(b.len() as u16)).to_le_bytes());
        z.extend_from_slice(b);
    }
    let (mut a, mut b) = (1u32, 0u32);
    for &x in &raw {
        a = (a + x as u32) % 65521;
        b = (b + a) % 65521;
    }
    z.extend_from_slice(&((b << 16) | a).to_be_bytes());
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&(width as u32).to_be_bytes());
    ihdr.extend_from_slice(&(height as u32).to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    png_chunk(&mut out, b"IHDR", &ihdr);
    png_chunk(&mut out, b"IDAT", &z);
    png_chunk(&mut out, b"IEND", &[]);
    out
}

/// `screendump`: the screen of the console of `device` (and `head`; the one screen when
/// no device is named) to `filename`, as PPM or PNG.
pub fn screendump(
    m: &mut Machine,
    filename: &str,
    device: Option<&str>,
    head: Option<i64>,
    as_png: bool,
) -> Result<(), QmpError> {
    crate::input::sync_reset(m);
    if let Some(dev) = device {
        crate::input::console_of(m, dev, head.unwrap_or(0))?;
    }
    let mut f = std::fs::File::create(filename).map_err(|e| {
        QmpError::generic(format!(
            "failed to open file '{filename}': {}",
            crate::memory::strerror(&e)
        ))
    })?;
    let pixels = render(m);
    let data = if as_png {
        png(WIDTH, HEIGHT, &pixels)
    } else {
        let mut d = format!("P6\n{WIDTH} {HEIGHT}\n255\n").into_bytes();
        d.extend_from_slice(&pixels);
        d
    };
    f.write_all(&data).map_err(|e| {
        QmpError::generic(format!(
            "failed to write to file '{filename}': {}",
            crate::memory::strerror(&e)
        ))
    })
}
