//! What a proxy listener lets its clients do: `--listen ADDRESS[,option]…`.
//!
//! Options (after the address, comma-separated, repeatable where lists):
//! - `readonly=on`: only `query-*`/`x-query-*` and a few commands that change nothing;
//! - `allow=PATTERN[:PATTERN…]`: only these commands (a pattern ends in `*` for a prefix);
//! - `deny=PATTERN[:PATTERN…]`: never these commands (checked first);
//! - `rate=N`: at most N commands per second per client (a burst of N is allowed);
//! - `uid=N[:N…]`: only unix peers with these user ids may connect (SO_PEERCRED);
//! - `admin-uid=N[:N…]`: unix peers with these user ids are not restricted by the command
//!   lists, the argument rules or the rate;
//! - `arg=PATTERN.MEMBER[.MEMBER…]=VALUE[|VALUE…]`: where a command matching PATTERN is sent
//!   with that argument (a dotted path for members of members), its value must be one of
//!   these (a string, or a number, `true`, `false` or `null` as written in JSON; a value
//!   ending in `*` matches strings beginning with the rest). An argument not given is not
//!   checked. Repeatable; every rule that names a command applies.
//!
//! Rule sets by peer (`--uid-rules UID[:UID…],OPTION[,OPTION…]`, repeatable) take `readonly`,
//! `allow`, `deny`, `rate` and `arg` as above. A unix client whose peer user id (SO_PEERCRED)
//! is listed is held to that set as well as to its listener's rules: a command goes through
//! only when every rule that applies lets it (`admin-uid` exempts from the listener's rules
//! only). The rules of a set name the user id when they refuse.
//!
//! `qmp_capabilities` is always allowed (negotiation is the proxy's own business).

use serde_json::{Map, Value};
use std::sync::Arc;
use std::time::Instant;

/// Commands that change nothing, allowed on a read-only listener besides `query-*`.
const READONLY_EXTRA: &[&str] = &[
    "qom-get",
    "qom-list",
    "qom-list-types",
    "qom-list-properties",
    "device-list-properties",
    "qmp_capabilities",
];

/// Where a listener listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    Unix(std::path::PathBuf),
    Tcp(String),
}

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Address::Unix(p) => write!(f, "unix:{}", p.display()),
            Address::Tcp(a) => write!(f, "tcp:{a}"),
        }
    }
}

/// One listener's address and rules.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    pub readonly: bool,
    pub allow: Vec<String>,
    pub deny: Vec<String>,
    /// Commands per second per client.
    pub rate: Option<u32>,
    pub uids: Vec<u32>,
    pub admin_uids: Vec<u32>,
    pub args: Vec<ArgRule>,
    /// A `--uid-rules` set (its refusals name the user id) rather than a listener's rules.
    pub per_uid: bool,
}

/// `arg=COMMAND.PATH=VALUES`: the values an argument may take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgRule {
    /// A command pattern (`*` at the end for a prefix).
    pub command: String,
    /// Member names, outermost first.
    pub path: Vec<String>,
    /// Value patterns.
    pub values: Vec<String>,
}

impl ArgRule {
    fn parse(v: &str) -> Result<ArgRule, String> {
        let bad = || format!("arg={v}: expected COMMAND.ARGUMENT=VALUE[|VALUE...]");
        let (lhs, values) = v.split_once('=').ok_or_else(bad)?;
        let (command, path) = lhs.split_once('.').ok_or_else(bad)?;
        let path: Vec<String> = path.split('.').map(str::to_string).collect();
        let values: Vec<String> = values.split('|').map(str::to_string).collect();
        if command.is_empty()
            || path.iter().any(String::is_empty)
            || values.iter().all(String::is_empty)
        {
            return Err(bad());
        }
        Ok(ArgRule {
            command: command.to_string(),
            path,
            values,
        })
    }

    /// Why `args` break this rule, if they do (`place`: where the rule holds, for the text).
    fn refuses(&self, command: &str, args: &Map<String, Value>, place: &str) -> Option<String> {
        let mut at = args.get(self.path.first()?)?;
        for key in &self.path[1..] {
            at = at.as_object()?.get(key)?;
        }
        let ok = self.values.iter().any(|p| match at {
            Value::String(s) => matches(p, s),
            Value::Number(_) | Value::Bool(_) | Value::Null => *p == at.to_string(),
            _ => false,
        });
        if ok {
            return None;
        }
        Some(format!(
            "Parameter '{}' of {command} may only be {} on {place}",
            self.path.join("."),
            self.values.join(" or ")
        ))
    }
}

/// Parse `unix:PATH[,opt=val…]`, `tcp:HOST:PORT[,…]` or a bare path.
pub fn parse_listen(spec: &str) -> Result<(Address, Policy), String> {
    let mut parts = spec.split(',');
    let addr = parts.next().unwrap_or("");
    let address = if let Some(p) = addr.strip_prefix("unix:") {
        Address::Unix(p.into())
    } else if let Some(a) = addr.strip_prefix("tcp:") {
        Address::Tcp(a.into())
    } else if !addr.is_empty() && !addr.contains(':') {
        Address::Unix(addr.into())
    } else {
        return Err(format!("'{addr}': expected unix:PATH or tcp:HOST:PORT"));
    };
    if matches!(&address, Address::Unix(p) if p.as_os_str().is_empty()) {
        return Err("unix: needs a path".into());
    }
    let p = parse_options(parts, false)?;
    if !p.uids.is_empty() || !p.admin_uids.is_empty() {
        if let Address::Tcp(_) = address {
            return Err("uid= and admin-uid= need a unix socket (peer credentials)".into());
        }
    }
    Ok((address, p))
}

/// Parse `--uid-rules UID[:UID...],OPTION[,OPTION...]`: the user ids and their rules.
pub fn parse_uid_rules(spec: &str) -> Result<(Vec<u32>, Policy), String> {
    let mut parts = spec.split(',');
    let ids = parts.next().unwrap_or("");
    let uids = ids
        .split(':')
        .map(|u| {
            u.parse::<u32>()
                .map_err(|_| format!("'{u}' is not a user id (expected UID[:UID...],OPTION...)"))
        })
        .collect::<Result<Vec<u32>, String>>()?;
    let mut p = parse_options(parts, true)?;
    p.per_uid = true;
    Ok((uids, p))
}

/// The options of a listener (`per_uid`: of a `--uid-rules` set, which takes no user ids).
fn parse_options<'a>(
    parts: impl Iterator<Item = &'a str>,
    per_uid: bool,
) -> Result<Policy, String> {
    let mut p = Policy::default();
    for opt in parts {
        let (k, v) = opt
            .split_once('=')
            .ok_or_else(|| format!("'{opt}': expected KEY=VALUE"))?;
        let list = || v.split(':').filter(|s| !s.is_empty()).map(str::to_string);
        let uids = || {
            list()
                .map(|u| {
                    u.parse::<u32>()
                        .map_err(|_| format!("{k}={v}: '{u}' is not a user id"))
                })
                .collect::<Result<Vec<u32>, String>>()
        };
        match k {
            "readonly" => {
                p.readonly = match v {
                    "on" | "yes" | "true" => true,
                    "off" | "no" | "false" => false,
                    _ => return Err(format!("readonly={v}: expected on or off")),
                }
            }
            "allow" => p.allow.extend(list()),
            "deny" => p.deny.extend(list()),
            "rate" => {
                let n: u32 = v.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                    format!("rate={v}: expected a positive number of commands per second")
                })?;
                p.rate = Some(n);
            }
            "uid" if !per_uid => p.uids.extend(uids()?),
            "admin-uid" if !per_uid => p.admin_uids.extend(uids()?),
            "arg" => p.args.push(ArgRule::parse(v)?),
            _ if per_uid => {
                return Err(format!(
                    "'{k}': unknown option for a user id's rules (readonly, allow, deny, rate, arg)"
                ))
            }
            _ => {
                return Err(format!(
                "'{k}': unknown listener option (readonly, allow, deny, rate, uid, admin-uid, arg)"
            ))
            }
        }
    }
    Ok(p)
}

fn matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => pattern == name,
    }
}

impl Policy {
    /// May a peer with this user id connect?
    pub fn admits(&self, uid: Option<u32>) -> bool {
        if self.uids.is_empty() {
            return true;
        }
        uid.is_some_and(|u| self.uids.contains(&u) || self.admin_uids.contains(&u))
    }

    /// True when the peer is exempt from the command lists and rate.
    pub fn is_admin(&self, uid: Option<u32>) -> bool {
        uid.is_some_and(|u| self.admin_uids.contains(&u))
    }

    /// Where these rules hold, as refusals say it.
    fn place(&self, uid: Option<u32>) -> String {
        match (self.per_uid, uid) {
            (true, Some(u)) => format!("this QMP proxy for user id {u}"),
            _ => "this QMP proxy listener".into(),
        }
    }

    /// Why `command` is refused, if it is.
    pub fn refuses(&self, command: &str, uid: Option<u32>) -> Option<String> {
        if command == "qmp_capabilities" || self.is_admin(uid) {
            return None;
        }
        if self.deny.iter().any(|p| matches(p, command)) {
            return Some(format!(
                "The command {command} is denied on {}",
                self.place(uid)
            ));
        }
        if !self.allow.is_empty() && !self.allow.iter().any(|p| matches(p, command)) {
            return Some(match (self.per_uid, uid) {
                (true, Some(u)) => format!(
                    "The command {command} is not in the allow list for user id {u} on this QMP proxy"
                ),
                _ => format!(
                    "The command {command} is not in this QMP proxy listener's allow list"
                ),
            });
        }
        if self.readonly
            && !(command.starts_with("query-")
                || command.starts_with("x-query-")
                || READONLY_EXTRA.contains(&command))
        {
            return Some(match (self.per_uid, uid) {
                (true, Some(u)) => format!(
                    "The command {command} is not allowed on this QMP proxy for user id {u}, which is read-only"
                ),
                _ => format!(
                    "The command {command} is not allowed on this read-only QMP proxy listener"
                ),
            });
        }
        None
    }

    /// Whether any command list or argument rule is set.
    fn restricts(&self) -> bool {
        !self.allow.is_empty() || !self.deny.is_empty() || self.readonly || !self.args.is_empty()
    }

    /// A refusal for going over the rate.
    fn over_rate(&self, rate: u32, uid: Option<u32>) -> String {
        match (self.per_uid, uid) {
            (true, Some(u)) => format!(
                "Rate limit exceeded: this QMP proxy allows user id {u} {rate} commands per second"
            ),
            _ => format!(
                "Rate limit exceeded: this QMP proxy listener allows {rate} commands per second"
            ),
        }
    }

    /// Whether argument rules apply to `command` (its arguments must be read).
    pub fn constrains(&self, command: &str) -> bool {
        self.args.iter().any(|r| matches(&r.command, command))
    }

    /// Why `command`'s arguments are refused, if they are.
    pub fn refuses_args(
        &self,
        command: &str,
        args: Option<&Map<String, Value>>,
        uid: Option<u32>,
    ) -> Option<String> {
        let args = args?;
        if self.is_admin(uid) {
            return None;
        }
        let place = self.place(uid);
        self.args
            .iter()
            .filter(|r| matches(&r.command, command))
            .find_map(|r| r.refuses(command, args, &place))
    }
}

/// The rules one client is held to: its listener's and the `--uid-rules` sets that list its
/// peer's user id.
pub struct Rules {
    sets: Vec<Arc<Policy>>,
    uid: Option<u32>,
}

impl Rules {
    pub fn new(
        listener: Arc<Policy>,
        per_uid: &[(Vec<u32>, Arc<Policy>)],
        uid: Option<u32>,
    ) -> Rules {
        let mut sets = vec![listener];
        if let Some(u) = uid {
            sets.extend(
                per_uid
                    .iter()
                    .filter(|(ids, _)| ids.contains(&u))
                    .map(|(_, p)| p.clone()),
            );
        }
        Rules { sets, uid }
    }

    /// Why `command` is refused, if it is.
    pub fn refuses(&self, command: &str) -> Option<String> {
        self.sets.iter().find_map(|p| p.refuses(command, self.uid))
    }

    /// Why `command`'s arguments are refused, if they are.
    pub fn refuses_args(&self, command: &str, args: Option<&Map<String, Value>>) -> Option<String> {
        self.sets
            .iter()
            .find_map(|p| p.refuses_args(command, args, self.uid))
    }

    /// Whether any command list or argument rule applies to this client at all.
    pub fn restricts(&self) -> bool {
        self.sets
            .iter()
            .any(|p| p.restricts() && !p.is_admin(self.uid))
    }

    /// Whether argument rules apply to `command` (its arguments must be read).
    pub fn constrains(&self, command: &str) -> bool {
        self.sets
            .iter()
            .any(|p| !p.is_admin(self.uid) && p.constrains(command))
    }

    /// The strictest rate that applies, as a bucket and the refusal past it.
    pub fn bucket(&self) -> Option<(Bucket, String)> {
        self.sets
            .iter()
            .filter(|p| !p.is_admin(self.uid))
            .filter_map(|p| p.rate.map(|r| (r, p)))
            .min_by_key(|(r, _)| *r)
            .map(|(r, p)| (Bucket::new(r), p.over_rate(r, self.uid)))
    }
}

/// A token bucket: `rate` commands per second, bursts of `rate`.
#[derive(Debug)]
pub struct Bucket {
    rate: f64,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    pub fn new(rate: u32) -> Bucket {
        Bucket {
            rate: f64::from(rate),
            tokens: f64::from(rate),
            last: Instant::now(),
        }
    }

    /// Take a token if there is one.
    pub fn take(&mut self) -> bool {
        let now = Instant::now();
        let dt = now.duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + dt * self.rate).min(self.rate);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listener_options() {
        let (a, p) = parse_listen("unix:/tmp/ro.sock,readonly=on,deny=query-qmp-schema").unwrap();
        assert_eq!(a, Address::Unix("/tmp/ro.sock".into()));
        assert_eq!(p.refuses("query-status", None), None);
        assert_eq!(p.refuses("qom-get", None), None);
        assert_eq!(
            p.refuses("quit", None).unwrap(),
            "The command quit is not allowed on this read-only QMP proxy listener"
        );
        assert!(p
            .refuses("query-qmp-schema", None)
            .unwrap()
            .contains("denied"));
        let (_, p) = parse_listen("tcp:127.0.0.1:4444,allow=query-*:stop,rate=5").unwrap();
        assert_eq!(p.refuses("stop", None), None);
        assert!(p.refuses("cont", None).unwrap().contains("allow list"));
        assert_eq!(p.rate, Some(5));
        let (_, p) = parse_listen("/tmp/x.sock,uid=1000:1001,admin-uid=0,readonly=on").unwrap();
        assert!(p.admits(Some(1000)) && p.admits(Some(0)) && !p.admits(Some(5)) && !p.admits(None));
        assert_eq!(p.refuses("quit", Some(0)), None);
        assert!(p.refuses("quit", Some(1000)).is_some());
        for bad in [
            "",
            "tcp:h:1,uid=3",
            "x.sock,readonly=maybe",
            "x.sock,rate=0",
            "x.sock,bogus=1",
            "x.sock,deny",
            "x.sock,uid=me",
        ] {
            assert!(parse_listen(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rule_sets_by_uid() {
        let (ids, p) = parse_uid_rules("1000:1001,readonly=on,rate=4").unwrap();
        assert_eq!(ids, vec![1000, 1001]);
        assert!(p.per_uid && p.readonly && p.rate == Some(4));
        let sets = vec![(ids, Arc::new(p))];
        let listener = Arc::new(parse_listen("x.sock,deny=stop").unwrap().1);
        let r = Rules::new(listener.clone(), &sets, Some(1001));
        assert_eq!(
            r.refuses("quit").unwrap(),
            "The command quit is not allowed on this QMP proxy for user id 1001, which is read-only"
        );
        assert_eq!(
            r.refuses("stop").unwrap(),
            "The command stop is denied on this QMP proxy listener"
        );
        assert_eq!(r.refuses("query-status"), None);
        let (_, over) = r.bucket().unwrap();
        assert_eq!(
            over,
            "Rate limit exceeded: this QMP proxy allows user id 1001 4 commands per second"
        );
        for uid in [Some(7), None] {
            let r = Rules::new(listener.clone(), &sets, uid);
            assert_eq!(r.refuses("quit"), None);
            assert!(r.bucket().is_none());
        }
        for bad in [
            "",
            "me,readonly=on",
            "1000,uid=3",
            "1000,admin-uid=3",
            "1000,bogus=1",
        ] {
            assert!(parse_uid_rules(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn argument_rules() {
        let (_, p) = parse_listen(
            "x.sock,arg=blockdev-add.driver=null-co|raw,arg=blockdev-add.file.filename=/img/*,\
             arg=block_set_io_throttle.bps=0|1000,arg=x-*.force=false,admin-uid=0",
        )
        .unwrap();
        let args = |v: Value| v.as_object().cloned().unwrap();
        let r = |cmd: &str, v: Value| p.refuses_args(cmd, Some(&args(v)), Some(1000));
        assert!(
            p.constrains("blockdev-add") && p.constrains("x-y") && !p.constrains("query-block")
        );
        assert_eq!(
            r("blockdev-add", serde_json::json!({"driver": "raw"})),
            None
        );
        assert_eq!(
            r("blockdev-add", serde_json::json!({"driver": "qcow2"})).unwrap(),
            "Parameter 'driver' of blockdev-add may only be null-co or raw on this QMP proxy listener"
        );
        assert_eq!(
            r(
                "blockdev-add",
                serde_json::json!({"driver": "raw", "file": {"filename": "/img/a"}})
            ),
            None
        );
        assert!(r(
            "blockdev-add",
            serde_json::json!({"driver": "raw", "file": {"filename": "/etc/x"}})
        )
        .unwrap()
        .contains("'file.filename'"));
        // Not given: not checked; given as another type: refused.
        assert_eq!(
            r("blockdev-add", serde_json::json!({"file": "node0"})),
            None
        );
        assert!(r("blockdev-add", serde_json::json!({"driver": ["raw"]})).is_some());
        assert_eq!(
            r("block_set_io_throttle", serde_json::json!({"bps": 1000})),
            None
        );
        assert!(r("block_set_io_throttle", serde_json::json!({"bps": 5})).is_some());
        assert!(r("x-anything", serde_json::json!({"force": true})).is_some());
        assert_eq!(
            p.refuses_args(
                "blockdev-add",
                Some(&args(serde_json::json!({"driver": "qcow2"}))),
                Some(0)
            ),
            None
        );
        assert_eq!(p.refuses_args("blockdev-add", None, Some(1000)), None);
        for bad in [
            "x.sock,arg=blockdev-add",
            "x.sock,arg=driver=raw",
            "x.sock,arg=a.=b",
            "x.sock,arg=a.b=",
        ] {
            assert!(parse_listen(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bucket_limits_bursts() {
        let mut b = Bucket::new(3);
        assert!(b.take() && b.take() && b.take());
        assert!(!b.take());
    }
}
