//! The length QEMU counts for file and raw nodes. QEMU reads a file's length once, in whole
//! 512-byte sectors, when the node opens, and keeps it: another node that grows or shrinks
//! the same file does not change it. It changes when a write through the node ends beyond
//! it (it grows to the write's end), when the node or a parent truncates the file through it
//! (it is counted again), and when the node is reopened (with the nodes it opened
//! implicitly). A raw node counts its file child's length the same way, when it opens, is
//! resized or reopened. `query-named-block-nodes` shows these lengths, and jobs compare them.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::{BlockGraph, ChildRole, Driver};

/// How far writes through a node's data path (an export's, a job's) grew its file since
/// the node last counted its length: shared with the data path, which runs on other threads.
pub type GrownCell = Arc<AtomicU64>;

/// The file and raw nodes below a node's data path, to reach the new end of their file
/// after each write (a qcow2 image allocating clusters grows its file).
#[derive(Debug, Default, Clone)]
pub struct Growth(Vec<(GrownCell, PathBuf)>);

impl Growth {
    /// After a write: each node reaches its file's end, if the file grew beyond it.
    pub fn after_write(&self) {
        for (cell, path) in &self.0 {
            if let Some(now) = disk_length(path) {
                cell.fetch_max(now, Ordering::Relaxed);
            }
        }
    }
}

/// A length in whole sectors.
fn sectors(len: u64) -> u64 {
    len.div_ceil(512) * 512
}

/// The file's length now, in whole sectors.
fn disk_length(path: &Path) -> Option<u64> {
    std::fs::metadata(path).ok().map(|m| sectors(m.len()))
}

/// The lengths of the files below a node that a write or truncation is about to reach
/// ([`BlockGraph::lengths_before`]), to compare with afterwards.
#[derive(Debug, Default, Clone)]
pub struct LengthsBefore(Vec<(String, Option<u64>)>);

impl BlockGraph {
    /// The length QEMU shows for a file or raw node (None for other drivers).
    pub(super) fn counted_length(&self, name: &str) -> Option<u64> {
        self.counted_length_at(name, 0)
    }

    fn counted_length_at(&self, name: &str, depth: u32) -> Option<u64> {
        let node = self.nodes.get(name)?;
        if depth > 64 {
            return None;
        }
        let counted = match node.driver {
            Driver::File => node.length.or_else(|| disk_length(&node.path())),
            // A raw node over a node of another kind (a format node, a null node) has that
            // node's size, not its file's length.
            Driver::Raw => node
                .length
                .or_else(|| match self.child_of(name, ChildRole::File) {
                    Some(child) => self.counted_length_at(child, depth + 1),
                    None => disk_length(&node.path()),
                }),
            _ => None,
        }?;
        Some(counted.max(node.grown.load(Ordering::Relaxed)))
    }

    /// The node whose data a node passes on: `name`, or the node below the filters on it.
    pub(super) fn data_node<'a>(&'a self, name: &'a str) -> &'a str {
        let mut cur = name;
        for _ in 0..64 {
            let Some(n) = self.nodes.get(cur) else { break };
            match n.driver.filtered_role().and_then(|r| self.child_of(cur, r)) {
                Some(c) => cur = c,
                None => break,
            }
        }
        cur
    }

    /// Counts a file or raw node's length as it opens (or is reopened): a file's from the
    /// file, a raw node's from its file child.
    pub(super) fn count_length(&mut self, name: &str) {
        let Some(node) = self.nodes.get(name) else {
            return;
        };
        let length = match node.driver {
            Driver::File => disk_length(&node.path()),
            Driver::Raw => match self.child_of(name, ChildRole::File) {
                Some(c) => self.counted_length(c),
                None => disk_length(&node.path()),
            },
            _ => return,
        };
        self.set_length(name, length);
    }

    /// Sets a node's counted length (what its data path grew it by is in it now).
    fn set_length(&mut self, name: &str, length: Option<u64>) {
        if let Some(n) = self.nodes.get_mut(name) {
            n.length = length;
            n.grown.store(0, Ordering::Relaxed);
        }
    }

    /// What a write into `name`'s data path grows (see [`Growth`]).
    pub(super) fn growth_of(&self, name: &str) -> Growth {
        let LengthsBefore(chain) = self.lengths_before(name);
        Growth(
            chain
                .into_iter()
                .filter_map(|(n, _)| self.nodes.get(&n))
                .map(|n| (n.grown.clone(), n.path()))
                .collect(),
        )
    }

    /// A node was reopened: it counts its length again, after the children it opened
    /// implicitly (which QEMU reopens with it).
    pub fn recount_reopened(&mut self, name: &str) {
        self.recount_reopened_at(name, 0);
    }

    fn recount_reopened_at(&mut self, name: &str, depth: u32) {
        if depth > 64 {
            return;
        }
        let implicit: Vec<String> = self
            .nodes
            .get(name)
            .map(|n| {
                n.children
                    .iter()
                    .filter(|e| self.nodes.get(&e.child).is_some_and(|c| !c.monitor_owned))
                    .map(|e| e.child.clone())
                    .collect()
            })
            .unwrap_or_default();
        for c in implicit {
            self.recount_reopened_at(&c, depth + 1);
        }
        self.count_length(name);
    }

    /// The file and raw nodes a write into `name` goes through (the node itself, when it is
    /// one, then its file children down to the file), with their files' lengths now.
    pub fn lengths_before(&self, name: &str) -> LengthsBefore {
        let mut out = Vec::new();
        let mut at = self.data_node(name).to_string();
        for _ in 0..64 {
            let Some(node) = self.nodes.get(&at) else {
                break;
            };
            if matches!(node.driver, Driver::File | Driver::Raw) {
                out.push((at.clone(), disk_length(&node.path())));
            }
            match self.child_of(&at, ChildRole::File) {
                Some(c) if node.driver != Driver::File => at = c.to_string(),
                _ => break,
            }
        }
        LengthsBefore(out)
    }

    /// Writes went through the nodes of `before`: a file that grew makes each node's length
    /// reach its new end; one that shrank was truncated through them, and they count it
    /// again.
    pub fn note_written(&mut self, before: LengthsBefore) {
        for (name, was) in before.0 {
            let Some(node) = self.nodes.get(&name) else {
                continue;
            };
            let (Some(was), Some(now)) = (was, disk_length(&node.path())) else {
                continue;
            };
            let counted = self.counted_length(&name);
            let length = if now < was {
                Some(now)
            } else if now > was {
                Some(counted.map_or(now, |c| c.max(now)))
            } else {
                continue;
            };
            self.set_length(&name, length);
        }
    }

    /// An image was written into the file of `name` up to `end` (`blockdev-create`): the
    /// nodes the writes went through reach at least that far.
    pub fn note_written_to(&mut self, name: &str, end: u64) {
        let LengthsBefore(chain) = self.lengths_before(name);
        for (n, _) in chain {
            let counted = self.counted_length(&n);
            self.set_length(
                &n,
                Some(counted.map_or(sectors(end), |c| c.max(sectors(end)))),
            );
        }
    }

    /// A file or raw node was truncated to `size` (`block_resize`): it and the nodes below it
    /// count their lengths again (the raw node itself takes the size asked for).
    pub fn note_truncated(&mut self, name: &str, size: u64) {
        let LengthsBefore(chain) = self.lengths_before(name);
        for (n, _) in chain.into_iter().rev() {
            self.count_length(&n);
        }
        if self
            .nodes
            .get(name)
            .is_some_and(|n| matches!(n.driver, Driver::File | Driver::Raw))
        {
            self.set_length(name, Some(sectors(size)));
        }
    }
}
