//! The file name QEMU shows for a node (`file` of `query-named-block-nodes`, an image's
//! `filename`, a `backing_file`), worked out as QEMU refreshes it: from the node's children
//! up, a node either has a plain name (a protocol node's, or a format node's over a protocol
//! node it does not change) or is named `json:` by its full options.

use std::cell::RefCell;
use std::collections::HashMap;

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
    refresh(g, node, 0).filename
}

/// File names worked out for one graph, kept while the graph stays the same (its
/// [`Generation`]): any change to its nodes or users (a node opened, reopened or deleted, a
/// snapshot's overlay, a child or medium attached or moved, a job's filter) forgets them all.
#[derive(Debug, Default)]
pub struct Names {
    cache: RefCell<(
        Generation,
        HashMap<String, String, foldhash::fast::FixedState>,
    )>,
}

impl Names {
    /// [`filename`], worked out once per node while `g` does not change.
    pub fn filename(&self, g: &BlockGraph, node: &str) -> String {
        let mut cache = self.cache.borrow_mut();
        let (seen, names) = &mut *cache;
        let now = g.generation();
        if *seen != now {
            names.clear();
            *seen = now;
        }
        if let Some(name) = names.get(node) {
            // Builds with debug assertions (the tests) check that nothing the name depends
            // on changed without the graph's generation moving.
            debug_assert_eq!(*name, filename(g, node), "stale file name of {node}");
            return name.clone();
        }
        let name = filename(g, node);
        names.insert(node.to_string(), name.clone());
        name
    }
}

/// Whether QEMU takes `driver`'s nodes for protocol nodes (whose name a format node over
/// them may take).
fn is_protocol(driver: Driver) -> bool {
    matches!(driver, Driver::File | Driver::NullCo | Driver::NullAio)
}

fn refresh(g: &BlockGraph, node: &str, depth: u32) -> Refreshed {
    let plain = |name: String| Refreshed {
        exact: name.clone(),
        filename: name,
        options: Value::Null,
    };
    let Ok(driver) = g.driver(node) else {
        return plain(String::new());
    };
    let own = g.filename(node).unwrap_or_default();
    if depth > 64 {
        return plain(own);
    }
    let filtered = driver.filtered_role().and_then(|r| g.child(node, r));
    // A filter a job put in without a name is its child to the user.
    if g.is_implicit(node) {
        if let Some(c) = &filtered {
            return refresh(g, c, depth + 1);
        }
    }
    let backing = g.child(node, ChildRole::Backing);
    let backing_r = backing.as_deref().map(|b| refresh(g, b, depth + 1));
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
                .map(|c| refresh(g, c, depth + 1).options)
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
    let file_r = file.as_deref().map(|f| refresh(g, f, depth + 1));
    if let Some(f) = &file_r {
        o.insert("file".into(), f.options.clone());
    }
    if let Some(t) = g.child(node, ChildRole::Target) {
        o.insert("target".into(), refresh(g, &t, depth + 1).options);
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
