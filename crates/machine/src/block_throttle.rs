//! I/O limits of drives (`block_set_io_throttle`) and the throttle groups drives share: a
//! group's limits are its members' limits, setting them on one member sets them for all;
//! all-zero limits take a drive out of its group. QEMU's validation words. The simulated guest
//! does no timed I/O, so the limits are kept and reported, not enforced.

use std::collections::BTreeMap;

/// QEMU's largest limit value.
pub const VALUE_MAX: u64 = 1_000_000_000_000_000;

/// One bucket: the average rate, the burst rate and the burst's length in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bucket {
    pub avg: u64,
    pub max: u64,
    pub burst_length: u64,
}

impl Default for Bucket {
    fn default() -> Self {
        Bucket {
            avg: 0,
            max: 0,
            burst_length: 1,
        }
    }
}

/// `ThrottleConfig`: buckets in QEMU's order (bps total, read, write; iops total, read, write)
/// and the iops size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Limits {
    pub buckets: [Bucket; 6],
    pub op_size: u64,
}

fn err(s: &str) -> String {
    s.to_string()
}

impl Limits {
    /// Whether any limit is set (all zero turns throttling off).
    pub fn enabled(&self) -> bool {
        self.buckets.iter().any(|b| b.avg != 0 || b.max != 0)
    }

    /// QEMU's checks, in QEMU's order and words.
    pub fn validate(&self) -> Result<(), String> {
        let b = &self.buckets;
        let both = |t: usize, get: fn(&Bucket) -> u64| {
            get(&b[t]) != 0 && (get(&b[t + 1]) != 0 || get(&b[t + 2]) != 0)
        };
        if both(0, |x| x.avg) || both(3, |x| x.avg) || both(0, |x| x.max) || both(3, |x| x.max) {
            return Err(err(
                "bps/iops/max total values and read/write values cannot be used at the same time",
            ));
        }
        if self.op_size != 0 && b[3].avg == 0 && b[4].avg == 0 && b[5].avg == 0 {
            return Err(err("iops size requires an iops value to be set"));
        }
        for k in b {
            if k.avg > VALUE_MAX || k.max > VALUE_MAX {
                return Err(format!(
                    "bps/iops/max values must be within [0, {VALUE_MAX}]"
                ));
            }
            if k.burst_length == 0 {
                return Err(err("the burst length cannot be 0"));
            }
            if k.burst_length > 1 && k.max == 0 {
                return Err(err("burst length set without burst rate"));
            }
            if k.max != 0 && k.burst_length > VALUE_MAX / k.max {
                return Err(err("burst length too high for this burst rate"));
            }
            if k.max != 0 && k.avg == 0 {
                return Err(err(
                    "bps_max/iops_max require corresponding bps/iops values",
                ));
            }
            if k.max != 0 && k.max < k.avg {
                return Err(err("bps_max/iops_max cannot be lower than bps/iops"));
            }
        }
        Ok(())
    }
}

/// The machine's throttle groups and which drive is in which.
#[derive(Debug, Clone, Default)]
pub struct Throttles {
    groups: BTreeMap<String, Limits>,
    members: BTreeMap<String, String>,
}

impl Throttles {
    /// Applies `limits` to drive `drive` in `group` (all-zero limits: out of any group).
    pub fn set(&mut self, drive: &str, group: &str, limits: Limits) {
        if let Some(old) = self.members.remove(drive) {
            if !self.members.values().any(|g| *g == old) {
                self.groups.remove(&old);
            }
        }
        if limits.enabled() {
            self.members.insert(drive.to_string(), group.to_string());
            self.groups.insert(group.to_string(), limits);
        }
    }

    /// A drive's group and limits, when it is throttled.
    pub fn of(&self, drive: &str) -> Option<(&str, &Limits)> {
        let g = self.members.get(drive)?;
        Some((g.as_str(), self.groups.get(g)?))
    }
}
