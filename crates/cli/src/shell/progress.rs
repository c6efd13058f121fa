//! Block jobs as progress bars. indicatif renders each bar from `query-jobs`' progress; a frame
//! is handed to the shell's printer as one line, so bars appear above the line being typed
//! without taking the terminal from the line editor.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle, TermLike};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Where finished lines go.
pub type Print = Arc<dyn Fn(String) + Send + Sync>;

/// A terminal for indicatif that prints each frame as a line (cursor movement is ignored;
/// a frame equal to the last one printed is not printed again).
struct LineTerm {
    buf: Mutex<(String, String)>,
    print: Print,
}

impl std::fmt::Debug for LineTerm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LineTerm")
    }
}

impl LineTerm {
    fn with<R>(&self, f: impl FnOnce(&mut (String, String)) -> R) -> R {
        match self.buf.lock() {
            Ok(mut g) => f(&mut g),
            Err(e) => f(&mut e.into_inner()),
        }
    }
}

impl TermLike for LineTerm {
    fn width(&self) -> u16 {
        100
    }
    fn move_cursor_up(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }
    fn move_cursor_down(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }
    fn move_cursor_right(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }
    fn move_cursor_left(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }
    fn write_line(&self, s: &str) -> std::io::Result<()> {
        self.with(|b| {
            b.0.push_str(s);
            b.0.push('\n');
        });
        Ok(())
    }
    fn write_str(&self, s: &str) -> std::io::Result<()> {
        self.with(|b| b.0.push_str(s));
        Ok(())
    }
    fn clear_line(&self) -> std::io::Result<()> {
        Ok(())
    }
    fn flush(&self) -> std::io::Result<()> {
        let line = self.with(|b| {
            let frame = std::mem::take(&mut b.0);
            let frame = frame.trim_end().to_string();
            if frame.is_empty() || frame == b.1 {
                None
            } else {
                b.1 = frame.clone();
                Some(frame)
            }
        });
        if let Some(l) = line {
            (self.print)(l);
        }
        Ok(())
    }
}

/// The bars of the jobs seen running.
pub struct Bars {
    bars: HashMap<String, (ProgressBar, u64)>,
    print: Print,
}

/// Job states in which a job makes progress (or may again).
fn active(status: &str) -> bool {
    matches!(
        status,
        "running" | "paused" | "ready" | "standby" | "waiting" | "pending"
    )
}

impl Bars {
    pub fn new(print: Print) -> Bars {
        Bars {
            bars: HashMap::new(),
            print,
        }
    }

    /// Update from `query-jobs`' answer; true while some job is active. A bar is redrawn when
    /// its job moved by a tenth or more, and finished when its job is no longer active.
    pub fn update(&mut self, jobs: &[Value]) -> bool {
        let mut seen = Vec::new();
        for j in jobs {
            let (Some(id), Some(status)) = (j["id"].as_str(), j["status"].as_str()) else {
                continue;
            };
            let total = j["total-progress"].as_u64().unwrap_or(0);
            let cur = j["current-progress"].as_u64().unwrap_or(0).min(total);
            if !active(status) {
                continue;
            }
            seen.push(id.to_string());
            let tenth = cur.saturating_mul(10).checked_div(total).unwrap_or(0);
            match self.bars.get_mut(id) {
                Some((bar, last)) => {
                    if bar.length() != Some(total) {
                        bar.set_length(total);
                    }
                    if *last != tenth {
                        *last = tenth;
                        bar.set_position(cur);
                    }
                }
                None => {
                    let term = LineTerm {
                        buf: Mutex::new(Default::default()),
                        print: self.print.clone(),
                    };
                    let style =
                        ProgressStyle::with_template("job {prefix} [{bar:30}] {percent:>3}% {msg}")
                            .unwrap_or_else(|_| ProgressStyle::default_bar())
                            .progress_chars("#>-");
                    let bar = ProgressBar::with_draw_target(
                        Some(total),
                        ProgressDrawTarget::term_like(Box::new(term)),
                    )
                    .with_style(style)
                    .with_prefix(id.to_string())
                    .with_message(j["type"].as_str().unwrap_or("").to_string());
                    bar.set_position(cur);
                    self.bars.insert(id.to_string(), (bar, tenth));
                }
            }
        }
        let gone: Vec<String> = self
            .bars
            .keys()
            .filter(|k| !seen.contains(k))
            .cloned()
            .collect();
        for k in gone {
            if let Some((bar, _)) = self.bars.remove(&k) {
                if let Some(len) = bar.length() {
                    bar.set_position(len);
                }
                bar.finish();
            }
        }
        !self.bars.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn frames_become_lines() {
        let lines = Arc::new(Mutex::new(Vec::<String>::new()));
        let l2 = lines.clone();
        let mut bars = Bars::new(Arc::new(move |s| l2.lock().unwrap().push(s)));
        let job = |cur: u64, status: &str| {
            json!([{"id": "j0", "type": "backup", "status": status,
                "current-progress": cur, "total-progress": 1000}])
        };
        assert!(bars.update(job(0, "running").as_array().unwrap()));
        assert!(bars.update(job(450, "running").as_array().unwrap()));
        assert!(bars.update(job(460, "running").as_array().unwrap()));
        assert!(!bars.update(job(1000, "concluded").as_array().unwrap()));
        let lines = lines.lock().unwrap().clone();
        assert_eq!(
            lines,
            [
                "job j0 [------------------------------]   0% backup",
                "job j0 [#############>----------------]  45% backup",
                "job j0 [##############################] 100% backup",
            ]
        );
    }
}
