//! The file name QEMU shows for a node (`file` of `query-named-block-nodes`, an image's
//! `filename`, a `backing_file`), worked out as QEMU refreshes it: from the node's children
//! up, a node either has a plain name (a protocol node's, or a format node's over a protocol
//! node it does not change) or is named `json:` by its full options.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

use qmpkit_block::graph::{BlockGraph, ChildRole, Generation};
use qmpkit_block::Driver;
use serde_json::{json, Map, Value};

/// The room QEMU has for a file name, its end included (a longer `json:` name is cut and
/// ends in `...`).
const PATH_MAX: usize = 4096;

/// What QEMU knows of a node's name: the plain name (empty when it has none), the name it
/// shows, and its full options.
struct Refreshed {
    exact: String,
    filename: String,
    options: Value,
}

/// The file name QEMU shows for `node`.
pub fn filename(g: &BlockGraph, node: &str) -> String {
    refreshed(g, node, &mut Memo::default()).filename.clone()
}

/// What was worked out of each node so far: a node's name is made of its children's, so each
/// node is worked out once for all its parents, and describing a stack of N nodes costs what
/// its names' text costs, not N times that.
type Memo = HashMap<String, Arc<Refreshed>, foldhash::fast::FixedState>;

/// File names worked out for one graph, kept while the graph stays the same (its
/// [`Generation`]): any change to its nodes or users (a node opened, reopened or deleted, a
/// snapshot's overlay, a child or medium attached or moved, a job's filter) forgets them all.
#[derive(Debug, Default)]
pub struct Names {
    cache: RefCell<(Generation, Memo)>,
}

/// Graphs up to this many worked-out nodes have each name checked again on every use in
/// builds with debug assertions; larger ones (deep stacks of filters, where checking would
/// cost what the memo saves) are not.
const CHECKED_NODES: usize = 64;

impl Names {
    /// [`filename`], worked out once per node while `g` does not change.
    pub fn filename(&self, g: &BlockGraph, node: &str) -> String {
        let mut cache = self.cache.borrow_mut();
        let (seen, memo) = &mut *cache;
        let now = g.generation();
        if *seen != now {
            memo.clear();
            *seen = now;
        }
        if let Some(r) = memo.get(node) {
            // Builds with debug assertions (the tests) check that nothing the name depends
            // on changed without the graph's generation moving.
            if cfg!(debug_assertions) && memo.len() <= CHECKED_NODES {
                debug_assert_eq!(r.filename, filename(g, node), "stale file name of {node}");
            }
            return r.filename.clone();
        }
        refreshed(g, node, memo).filename.clone()
    }
}

impl std::fmt::Debug for Refreshed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.filename)
    }
}

/// Whether QEMU takes `driver`'s nodes for protocol nodes (whose name a format node over
/// them may take).
fn is_protocol(driver: Driver) -> bool {
    matches!(driver, Driver::File | Driver::NullCo | Driver::NullAio)
}

/// The nodes whose names `node`'s is made of (see [`refresh_one`]).
fn inputs(g: &BlockGraph, node: &str) -> Vec<String> {
    let Ok(driver) = g.driver(node) else {
        return Vec::new();
    };
    let filtered = driver.filtered_role().and_then(|r| g.child(node, r));
    if g.is_implicit(node) {
        if let Some(c) = filtered {
            return vec![c];
        }
    }
    let mut v: Vec<String> = g.child(node, ChildRole::Backing).into_iter().collect();
    if driver == Driver::Quorum {
        v.extend(g.quorum_children(node));
    }
    v.extend(g.child(node, ChildRole::File));
    v.extend(g.child(node, ChildRole::Target));
    v
}

/// `node`'s name, and those of the nodes below it on the way, each worked out once into
/// `memo`: children before their parents, on a stack of its own (a stack of filters may be
/// deeper than a thread's stack would take).
fn refreshed(g: &BlockGraph, node: &str, memo: &mut Memo) -> Arc<Refreshed> {
    if let Some(r) = memo.get(node) {
        return r.clone();
    }
    // (node, whether its inputs were pushed); a node whose inputs were pushed is on the way
    // down from `node` until it is worked out, so meeting it again would be a cycle (which
    // the graph never has; its name then goes without that child's).
    let mut stack = vec![(node.to_string(), false)];
    let mut on_way: std::collections::HashSet<String, foldhash::fast::FixedState> =
        Default::default();
    while let Some((n, expanded)) = stack.pop() {
        if memo.contains_key(&n) {
            continue;
        }
        if expanded {
            let r = refresh_one(g, &n, memo);
            on_way.remove(&n);
            memo.insert(n, Arc::new(r));
            continue;
        }
        let ins = inputs(g, &n);
        on_way.insert(n.clone());
        stack.push((n, true));
        for c in ins {
            if !memo.contains_key(&c) && !on_way.contains(&c) {
                stack.push((c, false));
            }
        }
    }
    memo.get(node)
        .cloned()
        .unwrap_or_else(|| Arc::new(plain(String::new())))
}

fn plain(name: String) -> Refreshed {
    Refreshed {
        exact: name.clone(),
        filename: name,
        options: Value::Null,
    }
}

/// One node's name from its children's, which `memo` has.
fn refresh_one(g: &BlockGraph, node: &str, memo: &Memo) -> Refreshed {
    let get = |n: &str| -> Arc<Refreshed> {
        memo.get(n)
            .cloned()
            .unwrap_or_else(|| Arc::new(plain(String::new())))
    };
    let Ok(driver) = g.driver(node) else {
        return plain(String::new());
    };
    let own = g.filename(node).unwrap_or_default();
    let filtered = driver.filtered_role().and_then(|r| g.child(node, r));
    // A filter a job put in without a name is its child to the user.
    if g.is_implicit(node) {
        if let Some(c) = &filtered {
            let r = get(c);
            return Refreshed {
                exact: r.exact.clone(),
                filename: r.filename.clone(),
                options: r.options.clone(),
            };
        }
    }
    let backing = g.child(node, ChildRole::Backing);
    let backing_r = backing.as_deref().map(get);
    let auto = g.auto_backing_file(node);
    // The client chose another backing than the image's own (or none where it has one).
    let backing_overridden = g.dropped_from_chain(node)
        || match &backing_r {
            Some(b) => auto.as_deref() != Some(b.filename.as_str()),
            None => auto.is_some(),
        };
    // The driver's options that change what the node is ("strong" ones), then its children.
    let mut o = Map::new();
    let mut strong = false;
    match driver {
        Driver::NullCo | Driver::NullAio => {
            // Named by its options when it was given any (see the graph's null nodes).
            if let Some(Value::Object(m)) = own
                .strip_prefix("json:")
                .and_then(|j| serde_json::from_str::<Value>(j).ok())
            {
                o = m;
            }
        }
        Driver::Quorum => {
            // Named by its options and its children's, always.
            if let Some(q) = g.quorum_settings(node) {
                o.insert("vote-threshold".into(), json!(q.vote_threshold));
                if let Some(b) = q.blkverify {
                    o.insert("blkverify".into(), json!(b));
                }
                if let Some(r) = q.rewrite_corrupted {
                    o.insert("rewrite-corrupted".into(), json!(r));
                }
                if let Some(p) = q.read_pattern {
                    o.insert("read-pattern".into(), json!(p.name()));
                }
            }
            let children: Vec<Value> = g
                .quorum_children(node)
                .iter()
                .map(|c| get(c).options.clone())
                .collect();
            o.insert("children".into(), Value::Array(children));
            strong = true;
        }
        Driver::Throttle => {
            if let Some(t) = g.throttle_group(node) {
                o.insert("throttle-group".into(), json!(t));
                strong = true;
            }
        }
        _ => {}
    }
    if !o.contains_key("driver") {
        o.insert("driver".into(), json!(driver.name()));
    }
    if driver == Driver::File {
        o.insert("filename".into(), json!(own));
    }
    // Children newest first, as QEMU keeps them: a backing child after the file child.
    if backing_overridden {
        let b = backing_r
            .as_ref()
            .map_or(Value::Null, |b| b.options.clone());
        o.insert("backing".into(), b);
    }
    let file = g.child(node, ChildRole::File);
    let file_r = file.as_deref().map(get);
    if let Some(f) = &file_r {
        o.insert("file".into(), f.options.clone());
    }
    if let Some(t) = g.child(node, ChildRole::Target) {
        o.insert("target".into(), get(&t).options.clone());
    }
    let options = Value::Object(o);
    let exact = match driver {
        Driver::File => own,
        Driver::NullCo | Driver::NullAio if !own.starts_with("json:") => own,
        Driver::NullCo | Driver::NullAio => String::new(),
        // A mirror's or commit's filter takes its child's name.
        Driver::MirrorTop | Driver::CommitActiveTop | Driver::CommitTop => backing_r
            .as_ref()
            .map(|b| b.filename.clone())
            .unwrap_or_default(),
        Driver::CopyBeforeWrite => file_r
            .as_ref()
            .map(|f| f.filename.clone())
            .unwrap_or_default(),
        _ => {
            // A format node over a protocol node it does not change takes that node's name.
            let primary = file.as_deref().zip(file_r.as_ref()).filter(|(f, r)| {
                !r.exact.is_empty() && g.driver(f).map(is_protocol).unwrap_or(false)
            });
            match primary {
                Some((_, r)) if filtered.is_none() && !strong && !backing_overridden => {
                    r.exact.clone()
                }
                _ => String::new(),
            }
        }
    };
    let filename = if exact.is_empty() {
        let text = format!(
            "json:{}",
            qmpkit_wire::json::to_qemu_string(&qmpkit_wire::qdict::qemu_order(options.clone()))
        );
        cut(text)
    } else {
        exact.clone()
    };
    Refreshed {
        exact,
        filename,
        options,
    }
}

/// A name cut to the length QEMU keeps, ending in `...` where it was cut.
fn cut(mut text: String) -> String {
    if text.len() < PATH_MAX {
        return text;
    }
    let mut end = PATH_MAX - 4;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.push_str("...");
    text
}
