//! QEMU's human monitor line editor, as a byte-in/bytes-out state machine
//! (no I/O): what a readline monitor (`-monitor`, `-mon …,mode=readline`)
//! echoes for each byte typed, and the command lines it hands over.
//!
//! QEMU redraws the line after every change: the cursor back over what was
//! shown (`ESC [ D` per character), the whole line, then `ESC [ K` (erase
//! to the end of the line); Enter echoes CR LF. Supported editing: printable
//! characters, backspace/delete, Enter (CR, LF or CR LF); escape sequences
//! (cursor keys) and other control characters are ignored.

/// The banner a readline monitor greets with.
pub fn banner(version: (u64, u64, u64)) -> String {
    format!(
        "QEMU {}.{}.{} monitor - type 'help' for more information\r\n",
        version.0, version.1, version.2
    )
}

/// The prompt.
pub const PROMPT: &str = "(qemu) ";

/// Where an escape sequence being skipped is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Esc {
    None,
    /// After ESC.
    Start,
    /// After ESC [ or ESC O: parameters until a final byte.
    Csi,
}

/// One monitor's line being typed.
#[derive(Debug)]
pub struct LineEditor {
    line: Vec<u8>,
    /// Characters of the line shown on the terminal.
    shown: usize,
    after_cr: bool,
    esc: Esc,
}

/// Longest line kept (QEMU's own limit is smaller); bytes past it are dropped.
const MAX_LINE: usize = 4096;

impl Default for LineEditor {
    fn default() -> Self {
        LineEditor::new()
    }
}

impl LineEditor {
    pub fn new() -> LineEditor {
        LineEditor {
            line: Vec::new(),
            shown: 0,
            after_cr: false,
            esc: Esc::None,
        }
    }

    /// Take one byte typed; the echo goes to `echo`. Returns the command
    /// line when the byte ends it.
    pub fn feed(&mut self, b: u8, echo: &mut Vec<u8>) -> Option<String> {
        let after_cr = std::mem::replace(&mut self.after_cr, b == b'\r');
        match self.esc {
            Esc::Start => {
                self.esc = if b == b'[' || b == b'O' {
                    Esc::Csi
                } else {
                    Esc::None
                };
                return None;
            }
            Esc::Csi => {
                if (0x40..=0x7e).contains(&b) {
                    self.esc = Esc::None;
                }
                return None;
            }
            Esc::None => {}
        }
        match b {
            b'\n' if after_cr => None,
            b'\r' | b'\n' => {
                echo.extend_from_slice(b"\r\n");
                self.shown = 0;
                let line = String::from_utf8_lossy(&self.line).into_owned();
                self.line.clear();
                Some(line)
            }
            0x1b => {
                self.esc = Esc::Start;
                None
            }
            0x7f | 0x08 => {
                if self.line.pop().is_some() {
                    self.redraw(echo);
                }
                None
            }
            b if b >= 0x20 => {
                if self.line.len() < MAX_LINE {
                    self.line.push(b);
                    self.redraw(echo);
                }
                None
            }
            _ => None,
        }
    }

    fn redraw(&mut self, echo: &mut Vec<u8>) {
        for _ in 0..self.shown {
            echo.extend_from_slice(b"\x1b[D");
        }
        echo.extend_from_slice(&self.line);
        echo.extend_from_slice(b"\x1b[K");
        self.shown = self.line.len();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typed(input: &[u8]) -> (Vec<u8>, Vec<String>) {
        let mut ed = LineEditor::new();
        let (mut echo, mut lines) = (Vec::new(), Vec::new());
        for &b in input {
            if let Some(l) = ed.feed(b, &mut echo) {
                lines.push(l);
            }
        }
        (echo, lines)
    }

    #[test]
    fn echo_is_qemus() {
        // Real QEMU 10.0.2's echo of these lines, byte for byte.
        let (echo, lines) = typed(b"c\n");
        assert_eq!(echo, b"c\x1b[K\r\n");
        assert_eq!(lines, ["c"]);
        let (echo, _) = typed(b"bogus\n");
        assert_eq!(
            echo,
            b"b\x1b[K\x1b[Dbo\x1b[K\x1b[D\x1b[Dbog\x1b[K\x1b[D\x1b[D\x1b[Dbogu\x1b[K\x1b[D\x1b[D\x1b[D\x1b[Dbogus\x1b[K\r\n"
        );
        let (echo, lines) = typed(b"\n");
        assert_eq!((echo.as_slice(), lines.len()), (&b"\r\n"[..], 1));
        // CR LF is one Enter; backspace and cursor keys.
        let (_, lines) = typed(b"info x\x7fstatus\r\ninfo\x1b[Dname\n");
        assert_eq!(lines, ["info status", "infoname"]);
    }
}
