//! The `quorum` driver: a node over `children.N` children that writes to all of them and
//! reads by vote, and `x-blockdev-change`, which adds a child to a quorum or removes one.
//!
//! The rules, as measured on qemu-storage-daemon 10.0.2: the children are numbered from 0 in
//! the order given; a child added later takes the next number, and removing the child with
//! the highest number hands that number out again (only that one: numbers freed below it
//! stay unused). A quorum passes its parents' permissions to every child and shares only
//! reads and unchanged writes. Its size is its children's, which must all be the same when
//! it opens. Reads with `read-pattern=quorum` read every child and compare: children that
//! disagree with the winning version are reported (`QUORUM_REPORT_BAD`, and rewritten with
//! `rewrite-corrupted`), and a winner with fewer votes than the threshold fails the read
//! (`QUORUM_FAILURE`, an I/O error). `fifo` reads the first child that answers. Writes go to
//! every child and succeed when at least the threshold of them do.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use super::{inherit_cache, BlockGraph, BlockdevOptions, BlockdevRef, ChildRole, Data, Driver};
use crate::nbd::ExportBackend;
use crate::{Error, Result};

/// `QuorumReadPattern`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadPattern {
    Quorum,
    Fifo,
}

impl ReadPattern {
    pub fn name(self) -> &'static str {
        match self {
            ReadPattern::Quorum => "quorum",
            ReadPattern::Fifo => "fifo",
        }
    }
}

/// `BlockdevOptionsQuorum`: optional members as given (a node's `json:` name shows those
/// given, and only those).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumOptions {
    pub children: Vec<BlockdevRef>,
    pub vote_threshold: i64,
    pub blkverify: Option<bool>,
    pub rewrite_corrupted: Option<bool>,
    pub read_pattern: Option<ReadPattern>,
}

impl QuorumOptions {
    pub fn new(children: Vec<BlockdevRef>, vote_threshold: i64) -> QuorumOptions {
        QuorumOptions {
            children,
            vote_threshold,
            blkverify: None,
            rewrite_corrupted: None,
            read_pattern: None,
        }
    }
}

/// `QuorumOpType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuorumOp {
    Read,
    Write,
    Flush,
}

impl QuorumOp {
    pub fn name(self) -> &'static str {
        match self {
            QuorumOp::Read => "read",
            QuorumOp::Write => "write",
            QuorumOp::Flush => "flush",
        }
    }
}

/// What a quorum's I/O reports (`QUORUM_REPORT_BAD` and `QUORUM_FAILURE`), in 512-byte
/// sectors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QuorumEvent {
    /// A child failed (`error`) or disagreed with the winning version.
    ReportBad {
        op: QuorumOp,
        error: Option<String>,
        node: String,
        sector_num: u64,
        sectors_count: u64,
    },
    /// No version had the votes the threshold asks for.
    Failure {
        reference: String,
        sector_num: u64,
        sectors_count: u64,
    },
}

/// A quorum node's settings, children and the reports of its I/O: shared between the graph
/// and the exports and jobs that do I/O through the node.
pub(crate) struct QuorumData {
    node: String,
    /// The options as given.
    settings: QuorumSettings,
    threshold: usize,
    pattern: ReadPattern,
    rewrite: bool,
    /// The size its children had when it opened (QEMU keeps it: children added later may
    /// differ).
    size: u64,
    /// The number the next child added takes.
    next_index: AtomicU32,
    /// The children's data, in the order of their numbers.
    children: RwLock<Vec<(String, Arc<dyn ExportBackend>)>>,
    events: Mutex<Vec<QuorumEvent>>,
}

impl std::fmt::Debug for QuorumData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuorumData")
            .field("node", &self.node)
            .field("threshold", &self.threshold)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

fn eio() -> Error {
    Error::generic("Input/output error")
}

/// The sectors a request covers.
fn sectors(offset: u64, len: u64) -> (u64, u64) {
    let first = offset / 512;
    (first, offset.saturating_add(len).div_ceil(512) - first)
}

impl QuorumData {
    pub(crate) fn size(&self) -> u64 {
        self.size
    }

    fn children(&self) -> Vec<(String, Arc<dyn ExportBackend>)> {
        self.children.read().map(|c| c.clone()).unwrap_or_default()
    }

    fn report(&self, e: QuorumEvent) {
        if let Ok(mut q) = self.events.lock() {
            q.push(e);
        }
    }

    fn bad(&self, op: QuorumOp, error: Option<&Error>, node: &str, offset: u64, len: u64) {
        let (sector_num, sectors_count) = sectors(offset, len);
        self.report(QuorumEvent::ReportBad {
            op,
            error: error.map(|e| e.desc.clone()),
            node: node.to_string(),
            sector_num,
            sectors_count,
        });
    }

    /// Runs `op` on every child; succeeds when at least the threshold of them did.
    fn each(
        &self,
        kind: QuorumOp,
        offset: u64,
        len: u64,
        op: impl Fn(&dyn ExportBackend) -> Result<()>,
    ) -> Result<()> {
        let mut ok = 0;
        let mut first_error = None;
        for (name, child) in self.children() {
            match op(&*child) {
                Ok(()) => ok += 1,
                Err(e) => {
                    self.bad(kind, Some(&e), &name, offset, len);
                    first_error.get_or_insert(e);
                }
            }
        }
        if ok >= self.threshold {
            Ok(())
        } else {
            Err(first_error.unwrap_or_else(eio))
        }
    }

    fn read_fifo(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let mut last = None;
        for (name, child) in self.children() {
            match child.read(offset, buf) {
                Ok(()) => return Ok(()),
                Err(e) => {
                    self.bad(QuorumOp::Read, Some(&e), &name, offset, buf.len() as u64);
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or_else(eio))
    }

    fn read_vote(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let len = buf.len() as u64;
        let children = self.children();
        // Each version read, with the children that read it.
        let mut versions: Vec<(Vec<u8>, Vec<usize>)> = Vec::new();
        let mut first_error = None;
        for (i, (name, child)) in children.iter().enumerate() {
            let mut data = vec![0u8; buf.len()];
            match child.read(offset, &mut data) {
                Ok(()) => match versions.iter_mut().find(|(v, _)| *v == data) {
                    Some((_, who)) => who.push(i),
                    None => versions.push((data, vec![i])),
                },
                Err(e) => {
                    self.bad(QuorumOp::Read, Some(&e), name, offset, len);
                    first_error.get_or_insert(e);
                }
            }
        }
        // The version most children read (the first such on a tie).
        let winner = versions
            .iter()
            .enumerate()
            .max_by_key(|(i, (_, who))| (who.len(), std::cmp::Reverse(*i)))
            .map(|(i, _)| i);
        let Some(w) = winner.filter(|w| versions[*w].1.len() >= self.threshold) else {
            if versions.is_empty() {
                return Err(first_error.unwrap_or_else(eio));
            }
            let (sector_num, sectors_count) = sectors(offset, len);
            self.report(QuorumEvent::Failure {
                reference: self.node.clone(),
                sector_num,
                sectors_count,
            });
            return Err(eio());
        };
        let (data, voters) = &versions[w];
        for (i, (_, who)) in versions.iter().enumerate() {
            if i == w {
                continue;
            }
            for c in who {
                let (name, child) = &children[*c];
                self.bad(QuorumOp::Read, None, name, offset, len);
                if self.rewrite {
                    // A failed repair is the next read's concern, as in QEMU.
                    let _ = child.write(offset, data);
                }
            }
        }
        debug_assert!(voters.len() >= self.threshold);
        buf.copy_from_slice(data);
        Ok(())
    }
}

impl ExportBackend for QuorumData {
    fn size(&self) -> u64 {
        self.size
    }

    fn read(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        match self.pattern {
            ReadPattern::Fifo => self.read_fifo(offset, buf),
            ReadPattern::Quorum => self.read_vote(offset, buf),
        }
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<()> {
        self.each(QuorumOp::Write, offset, data.len() as u64, |c| {
            c.write(offset, data)
        })
    }

    fn write_zeroes(&self, offset: u64, len: u64) -> Result<()> {
        self.each(QuorumOp::Write, offset, len, |c| {
            c.write_zeroes(offset, len)
        })
    }

    fn trim(&self, offset: u64, len: u64) -> Result<()> {
        self.each(QuorumOp::Write, offset, len, |c| c.trim(offset, len))
    }

    fn flush(&self) -> Result<()> {
        self.each(QuorumOp::Flush, 0, 0, |c| c.flush())
    }

    fn reads_zeroes(&self, offset: u64, len: u64) -> bool {
        let children = self.children();
        !children.is_empty() && children.iter().all(|(_, c)| c.reads_zeroes(offset, len))
    }
}

/// QEMU's checks of a quorum's options, in its order.
fn check_options(q: &QuorumOptions) -> Result<()> {
    let n = q.children.len() as i64;
    if n < 1 {
        return Err(Error::generic(
            "Number of provided children must be 1 or more",
        ));
    }
    if q.vote_threshold < 1 {
        return Err(Error::generic(
            "Parameter 'vote-threshold' expects a value >= 1",
        ));
    }
    if q.vote_threshold > n {
        return Err(Error::generic("threshold may not exceed children count"));
    }
    if q.blkverify == Some(true) {
        if n != 2 || q.vote_threshold != 2 {
            return Err(Error::generic(
                "blkverify=on can only be set if there are exactly two files and \
                 vote-threshold is 2",
            ));
        }
        if q.rewrite_corrupted == Some(true) {
            return Err(Error::generic(
                "rewrite-corrupted=on cannot be used with blkverify=on",
            ));
        }
    }
    Ok(())
}

impl BlockGraph {
    /// Opens a quorum node (`add_inner`'s part for the driver): its options checked, the node
    /// named, then its children opened and attached. Returns the node's name, file name and
    /// data.
    pub(super) fn open_quorum(
        &mut self,
        o: &BlockdevOptions,
        top: bool,
        added: &mut Vec<String>,
    ) -> Result<(String, Vec<super::Edge>, Data)> {
        let q = o
            .quorum
            .as_ref()
            .ok_or_else(|| Error::generic("Parameter 'children' is missing"))?;
        check_options(q)?;
        // The quorum is named and in the graph's list of nodes before it opens its children.
        let name = self.name_for(o);
        self.put_node(
            &name,
            o,
            top,
            String::new(),
            Vec::new(),
            Data::Null(0, false),
            added,
        );
        let mut children = Vec::new();
        for (i, r) in q.children.iter().enumerate() {
            let child = match r {
                BlockdevRef::Node(n) => {
                    self.node(n)?;
                    n.clone()
                }
                BlockdevRef::Inline(c) => {
                    let mut c = (**c).clone();
                    c.read_only |= o.read_only;
                    inherit_cache(&mut c, o);
                    self.add_inner(&c, false, added)?
                }
            };
            children.push(self.edge(ChildRole::Children(i as u32), &child));
        }
        let placeholder = Data::Null(0, false);
        self.put_node(
            &name,
            o,
            top,
            String::new(),
            children.clone(),
            placeholder,
            added,
        );
        self.check_perms_from(&name)?;
        let mut size = None;
        for e in &children {
            let s = self.size(&e.child)?;
            if size.is_some_and(|z| z != s) {
                return Err(Error::generic(
                    "Could not refresh total sector count: Input/output error",
                ));
            }
            size = Some(s);
        }
        let data = Arc::new(QuorumData {
            node: name.clone(),
            settings: QuorumSettings {
                vote_threshold: q.vote_threshold,
                blkverify: q.blkverify,
                rewrite_corrupted: q.rewrite_corrupted,
                read_pattern: q.read_pattern,
            },
            threshold: q.vote_threshold as usize,
            pattern: q.read_pattern.unwrap_or(ReadPattern::Quorum),
            rewrite: q.rewrite_corrupted == Some(true),
            size: size.unwrap_or(0),
            next_index: AtomicU32::new(children.len() as u32),
            children: RwLock::new(Vec::new()),
            events: Mutex::new(Vec::new()),
        });
        let data = Data::Quorum(data);
        if let Some(n) = self.nodes.get_mut(&name) {
            n.data = data.clone();
        }
        self.refresh_quorum(&name);
        Ok((name, children, data))
    }

    /// The quorum's data path to its children as they are now.
    fn refresh_quorum(&mut self, name: &str) {
        let Some(Data::Quorum(q)) = self.nodes.get(name).map(|n| n.data.clone()) else {
            return;
        };
        let mut edges: Vec<(u32, String)> = self.nodes[name]
            .children
            .iter()
            .filter_map(|e| match e.role {
                ChildRole::Children(i) => Some((i, e.child.clone())),
                _ => None,
            })
            .collect();
        edges.sort();
        let children = edges
            .into_iter()
            .filter_map(|(_, c)| self.backend(&c).ok().map(|b| (c, b)))
            .collect();
        if let Ok(mut c) = q.children.write() {
            *c = children;
        };
    }

    /// The quorum options a node was opened with that its `json:` name shows, and its
    /// threshold: None for other drivers.
    pub fn quorum_settings(&self, name: &str) -> Option<QuorumSettings> {
        match &self.nodes.get(name)?.data {
            Data::Quorum(q) => Some(q.settings.clone()),
            _ => None,
        }
    }

    /// A quorum's children in the order of their numbers.
    pub fn quorum_children(&self, name: &str) -> Vec<String> {
        let Some(node) = self.nodes.get(name) else {
            return Vec::new();
        };
        let mut v: Vec<(u32, &str)> = node
            .children
            .iter()
            .filter_map(|e| match e.role {
                ChildRole::Children(i) => Some((i, e.child.as_str())),
                _ => None,
            })
            .collect();
        v.sort();
        v.into_iter().map(|(_, c)| c.to_string()).collect()
    }

    /// A quorum's child when it has only one (`query-blockstats` shows it as the quorum's
    /// `parent`, as QEMU 10.0 does; none with more).
    pub(super) fn quorum_only_child(&self, name: &str) -> Option<String> {
        match self.quorum_children(name).as_slice() {
            [one] => Some(one.clone()),
            _ => None,
        }
    }

    /// What the quorums' I/O reported since the last call, oldest first per node.
    pub fn take_quorum_events(&self) -> Vec<QuorumEvent> {
        let mut out = Vec::new();
        for n in self.nodes.values() {
            if let Data::Quorum(q) = &n.data {
                if let Ok(mut e) = q.events.lock() {
                    out.append(&mut e);
                }
            }
        }
        out
    }

    /// `x-blockdev-change`: adds `node` to the quorum `parent` as its next child, or removes
    /// its child named `child` (`children.N`), with QEMU's checks and words. `parent` is a
    /// node name (callers resolve a drive's name to its node).
    pub fn change_child(
        &mut self,
        parent: &str,
        child: Option<&str>,
        node: Option<&str>,
    ) -> Result<()> {
        if !self.nodes.contains_key(parent) {
            return Err(super::not_found(parent));
        }
        match (child, node) {
            (Some(_), Some(_)) => Err(Error::generic(
                "The parameters child and node are in conflict",
            )),
            (None, None) => Err(Error::generic("Either child or node must be specified")),
            (None, Some(n)) => self.quorum_add_child(parent, n),
            (Some(c), None) => self.quorum_del_child(parent, c),
        }
    }

    fn quorum_add_child(&mut self, parent: &str, node: &str) -> Result<()> {
        if !self.nodes.contains_key(node) {
            return Err(Error::generic(format!("Node '{node}' not found")));
        }
        let q = match &self.nodes[parent].data {
            Data::Quorum(q) if self.nodes[parent].driver == Driver::Quorum => q.clone(),
            _ => {
                return Err(Error::generic(format!(
                    "The node {parent} does not support adding a child"
                )))
            }
        };
        if self.has_parent_node(node) || self.users.iter().any(|u| u.node == node) {
            return Err(Error::generic(format!(
                "The node {node} already has a parent"
            )));
        }
        let index = q.next_index.load(Ordering::Relaxed);
        if node == parent || self.descendants(node).iter().any(|d| d == parent) {
            return Err(Error::generic(format!(
                "Making '{node}' a children.{index} child of '{parent}' would create a cycle"
            )));
        }
        let edge = self.edge(ChildRole::Children(index), node);
        if let Some(p) = self.nodes.get_mut(parent) {
            p.children.push(edge);
        }
        if let Err(e) = self.check_perms_from(parent) {
            if let Some(p) = self.nodes.get_mut(parent) {
                p.children.retain(|e| e.role != ChildRole::Children(index));
            }
            self.commit_locks();
            return Err(e);
        }
        q.next_index.store(index + 1, Ordering::Relaxed);
        self.refresh_quorum(parent);
        Ok(())
    }

    fn quorum_del_child(&mut self, parent: &str, child: &str) -> Result<()> {
        let p = &self.nodes[parent];
        let Some(edge) = p.children.iter().find(|e| e.role.name() == child).cloned() else {
            return Err(Error::generic(format!(
                "Node '{parent}' does not have child '{child}'"
            )));
        };
        let (Data::Quorum(q), ChildRole::Children(index)) = (&p.data, edge.role) else {
            return Err(Error::generic(format!(
                "The node {parent} does not support removing a child"
            )));
        };
        let q = q.clone();
        if p.children.len() - 1 < q.threshold {
            return Err(Error::generic(format!(
                "The number of children cannot be lower than the vote threshold {}",
                q.threshold
            )));
        }
        if let Some(p) = self.nodes.get_mut(parent) {
            p.children.retain(|e| e.role != edge.role);
        }
        // Only the highest number is handed out again.
        let _ =
            q.next_index
                .compare_exchange(index + 1, index, Ordering::Relaxed, Ordering::Relaxed);
        self.refresh_quorum(parent);
        // A child opened with the quorum goes when nothing else holds it.
        let unused =
            !self.has_parent_node(&edge.child) && !self.users.iter().any(|u| u.node == edge.child);
        let implicit = self
            .nodes
            .get(&edge.child)
            .is_some_and(|c| !c.monitor_owned);
        if unused && implicit {
            self.remove_unreferenced(&edge.child);
        } else {
            self.commit_locks();
        }
        Ok(())
    }
}

/// A quorum's settings as [`BlockGraph::quorum_settings`] gives them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumSettings {
    pub vote_threshold: i64,
    pub blkverify: Option<bool>,
    pub rewrite_corrupted: Option<bool>,
    pub read_pattern: Option<ReadPattern>,
}
