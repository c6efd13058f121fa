//! Block jobs and migration as progress bars. indicatif renders each bar from `query-jobs`'
//! progress or `query-migrate`'s RAM counters; a frame is handed to the shell's printer as one
//! line, so bars appear above the line being typed without taking the terminal from the line
//! editor.

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

/// One thing making progress, as a bar shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    /// What the bar is called: `job ID` or `migration`.
    pub name: String,
    /// Shown after the bar (the job's type, the migration's status).
    pub msg: String,
    /// Whether it makes progress (or may again); a bar ends when its item is no longer active.
    pub active: bool,
    pub current: u64,
    pub total: u64,
}

/// `query-jobs`' answer as bars.
pub fn jobs(jobs: &[Value]) -> Vec<Item> {
    jobs.iter()
        .filter_map(|j| {
            let (id, status) = (j["id"].as_str()?, j["status"].as_str()?);
            Some(Item {
                name: format!("job {id}"),
                msg: j["type"].as_str().unwrap_or("").to_string(),
                active: active(status),
                current: j["current-progress"].as_u64().unwrap_or(0),
                total: j["total-progress"].as_u64().unwrap_or(0),
            })
        })
        .collect()
}

/// `query-migrate`'s answer as a bar: RAM sent of RAM in all (what remains counted out, as
/// pages dirtied again are sent again).
pub fn migration(info: &Value) -> Vec<Item> {
    let Some(status) = info["status"].as_str() else {
        return Vec::new();
    };
    let total = info["ram"]["total"].as_u64().unwrap_or(0);
    let remaining = info["ram"]["remaining"].as_u64().unwrap_or(total);
    let active = matches!(
        status,
        "setup"
            | "active"
            | "pre-switchover"
            | "device"
            | "postcopy-active"
            | "postcopy-paused"
            | "postcopy-recover-setup"
            | "postcopy-recover"
            | "wait-unplug"
            | "cancelling"
    );
    vec![Item {
        name: "migration".to_string(),
        msg: status.to_string(),
        active,
        current: total.saturating_sub(remaining),
        total,
    }]
}

/// The bars of the items seen active.
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

    /// Update from the latest answer; true while some item is active. A bar is redrawn when
    /// its item moved by a tenth or more, and finished when its item is no longer active.
    pub fn update(&mut self, items: &[Item]) -> bool {
        let mut seen = Vec::new();
        for it in items {
            let (id, total) = (it.name.as_str(), it.total);
            let cur = it.current.min(total);
            if !it.active {
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
                        bar.set_message(it.msg.clone());
                        bar.set_position(cur);
                    }
                }
                None => {
                    let term = LineTerm {
                        buf: Mutex::new(Default::default()),
                        print: self.print.clone(),
                    };
                    let style =
                        ProgressStyle::with_template("{prefix} [{bar:30}] {percent:>3}% {msg}")
                            .unwrap_or_else(|_| ProgressStyle::default_bar())
                            .progress_chars("#>-");
                    let bar = ProgressBar::with_draw_target(
                        Some(total),
                        ProgressDrawTarget::term_like(Box::new(term)),
                    )
                    .with_style(style)
                    .with_prefix(id.to_string())
                    .with_message(it.msg.clone());
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
        let job = |cur, status| jobs(job(cur, status).as_array().unwrap());
        assert!(bars.update(&job(0, "running")));
        assert!(bars.update(&job(450, "running")));
        assert!(bars.update(&job(460, "running")));
        assert!(!bars.update(&job(1000, "concluded")));
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

    #[test]
    fn migration_bar_from_query_migrate() {
        let lines = Arc::new(Mutex::new(Vec::<String>::new()));
        let l2 = lines.clone();
        let mut bars = Bars::new(Arc::new(move |s| l2.lock().unwrap().push(s)));
        let info = |status: &str, remaining: u64| {
            migration(&json!({"status": status,
                "ram": {"total": 1000, "remaining": remaining, "transferred": 5000}}))
        };
        assert!(bars.update(&info("active", 1000)));
        assert!(bars.update(&info("active", 300)));
        assert!(bars.update(&info("device", 0)));
        assert!(!bars.update(&info("completed", 0)));
        // Nothing yet (no `status`): no bar.
        assert!(migration(&json!({})).is_empty());
        let lines = lines.lock().unwrap().clone();
        assert_eq!(
            lines,
            [
                "migration [------------------------------]   0% active",
                "migration [#####################>--------]  70% active",
                // A new status is drawn with the move it comes with.
                "migration [#####################>--------]  70% device",
                "migration [##############################] 100% device",
            ]
        );
    }
}
