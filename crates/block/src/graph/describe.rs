//! Node descriptions: `query-named-block-nodes`' and `query-block`'s `BlockDeviceInfo` of a
//! node, with the images below it. A node's description is made of those below it (a
//! filter shows its child's image, a non-flat entry nests every layer below), so one query
//! works out each node's image and each nested description once and reuses it for every
//! node above: its cost follows the size of its answer, also over deep stacks of filters.
//! The walks down a stack go on a list, not the thread's stack.

use std::collections::HashMap;

use super::{
    child_in, not_found, BlockGraph, CacheInfo, ChildRole, Data, Driver, Node, NodeInfo, PermSet,
};

use crate::image::{self, ImageFormat, ImageInfo};
use crate::{Error, Result};

/// How many layers below a node `query-named-block-nodes` and `query-block` describe at most
/// (far more than the chains the graph's images open: see `chain_spec`).
const MAX_INFO_DEPTH: usize = 1024;

/// What one query worked out so far, by node name.
#[derive(Default)]
struct Memo {
    /// Each node's image as it shows it.
    images: HashMap<String, ImageInfo>,
    /// Each node's description with those below it nested (kept only when several
    /// descriptions are asked for: a lone one is built once, bottom up).
    infos: Option<HashMap<String, NodeInfo>>,
    /// How many layers lie below each node.
    depths: HashMap<String, u64>,
}

impl BlockGraph {
    /// One node's `BlockDeviceInfo` as `query-block` shows a drive's; with `deep`,
    /// `backing_image` follows the chain (past the filters jobs put in without a name).
    pub fn node_info(&self, name: &str, deep: bool) -> Result<NodeInfo> {
        self.node_info_in(name, deep, true, &mut Memo::default())
    }

    /// `query-named-block-nodes`: newest first, as QEMU lists them.
    pub fn named_nodes(&self, flat: bool) -> Result<Vec<NodeInfo>> {
        let mut memo = Memo {
            infos: (!flat).then(HashMap::new),
            ..Memo::default()
        };
        self.node_names()
            .iter()
            .map(|n| {
                let mut info = self.node_info_in(n, !flat, false, &mut memo)?;
                // The flat list does not count backing files (QEMU 10.0 leaves it 0).
                if flat {
                    info.backing_file_depth = 0;
                }
                Ok(info)
            })
            .collect()
    }

    /// The node a description nests below `node`'s: a filter's filtered child, another
    /// node's backing child (past the filters jobs put in without a name, with
    /// `skip_implicit`).
    fn described_below<'a>(&'a self, node: &'a Node, skip_implicit: bool) -> Option<&'a str> {
        let role = node.driver.filtered_role().unwrap_or(ChildRole::Backing);
        child_in(node, role).map(|b| {
            if skip_implicit {
                self.below_implicit(b)
            } else {
                b
            }
        })
    }

    /// `name`'s description, and with `deep` those nested below it, worked out from the
    /// bottom up.
    fn node_info_in(
        &self,
        name: &str,
        deep: bool,
        skip_implicit: bool,
        memo: &mut Memo,
    ) -> Result<NodeInfo> {
        if let Some(i) = memo.infos.as_ref().and_then(|m| m.get(name)) {
            return Ok(i.clone());
        }
        let mut chain = vec![self.node(name)?];
        if deep {
            while let Some(b) = chain
                .last()
                .and_then(|n| self.described_below(n, skip_implicit))
            {
                if chain.len() > MAX_INFO_DEPTH {
                    return Err(Error::generic("Backing chain too deep"));
                }
                let known = memo.infos.as_ref().is_some_and(|m| m.contains_key(b));
                chain.push(self.node(b)?);
                if known {
                    break;
                }
            }
        }
        let mut below: Option<NodeInfo> = None;
        for node in chain.into_iter().rev() {
            let known = memo.infos.as_ref().and_then(|m| m.get(&node.name));
            let info = match known {
                Some(i) => i.clone(),
                None => {
                    let info = self.one_info(node, below.take().map(Box::new), memo)?;
                    if let Some(m) = memo.infos.as_mut() {
                        m.insert(node.name.clone(), info.clone());
                    }
                    info
                }
            };
            below = Some(info);
        }
        below.ok_or_else(|| not_found(name))
    }

    /// One node's description, with `below` nested in it.
    fn one_info(
        &self,
        node: &Node,
        below: Option<Box<NodeInfo>>,
        memo: &mut Memo,
    ) -> Result<NodeInfo> {
        // A filter shows no backing file of its own; another node, the second of its
        // backing chain (past the job filters).
        let backing = match node.driver.filtered_role() {
            Some(_) => None,
            None => child_in(node, ChildRole::Backing)
                .map(|b| self.below_filters(b, false))
                .and_then(|b| self.nodes.get(b)),
        };
        Ok(NodeInfo {
            node_name: node.name.clone(),
            file: node.filename.clone(),
            // A commit's filter below the active layer is opened read-only.
            ro: node.read_only || node.driver == Driver::CommitTop,
            drv: node.driver.name().to_string(),
            backing_file: backing.map(|b| b.filename.clone()),
            backing_file_depth: self.depth_below(node, memo),
            encrypted: false,
            detect_zeroes: node.detect_zeroes,
            bps: 0,
            bps_rd: 0,
            bps_wr: 0,
            iops: 0,
            iops_rd: 0,
            iops_wr: 0,
            write_threshold: node.write_threshold,
            cache: CacheInfo {
                writeback: true,
                direct: node.cache_direct,
                no_flush: node.cache_no_flush,
            },
            active: true,
            image_format: node.driver.name().to_string(),
            image: self.image_info_in(node, memo)?,
            backing_image: below,
            bitmaps: node
                .bitmaps
                .lock()
                .map(|set| set.list.clone())
                .unwrap_or_default(),
        })
    }

    /// How many filtered or backing children lie below `node` (QEMU counts filters as
    /// layers): [`BlockGraph::layers_below`]'s count, without the list.
    fn depth_below(&self, node: &Node, memo: &mut Memo) -> u64 {
        let mut path = Vec::new();
        let mut cur = node;
        let base = loop {
            if let Some(&d) = memo.depths.get(&cur.name) {
                break d;
            }
            // A walk longer than the graph would be a cycle, which the graph never has.
            if path.len() > self.nodes.len() {
                return 0;
            }
            let role = cur.driver.filtered_role().unwrap_or(ChildRole::Backing);
            match child_in(cur, role) {
                None => break 0,
                Some(c) => {
                    path.push(cur);
                    match self.nodes.get(c) {
                        Some(n) => cur = n,
                        // A child that is not a node counts as a layer with none below.
                        None => break 0,
                    }
                }
            }
        };
        let mut d = base;
        for n in path.into_iter().rev() {
            d += 1;
            memo.depths.insert(n.name.clone(), d);
        }
        d
    }

    /// The image `node` shows: a filter its child's, a pass-through raw node its file's
    /// (without the format's own facts), worked out once per node.
    fn image_info_in(&self, node: &Node, memo: &mut Memo) -> Result<ImageInfo> {
        // Down the filters and pass-through raw nodes to the node whose image this is.
        let mut path = vec![node];
        let mut cur = node;
        while !memo.images.contains_key(&cur.name) {
            let next = if let Some(role) = cur.driver.filtered_role() {
                child_in(cur, role)
            } else if cur.passthrough {
                self.passes_to(cur)
            } else {
                break;
            };
            let next = next
                .and_then(|c| self.nodes.get(c))
                .ok_or_else(|| not_found(&cur.name))?;
            if path.len() > MAX_INFO_DEPTH {
                return Err(Error::generic("Backing chain too deep"));
            }
            path.push(next);
            cur = next;
        }
        let mut info = match memo.images.get(&cur.name) {
            Some(i) => i.clone(),
            None => {
                let i = self.own_image_info(cur, memo)?;
                memo.images.insert(cur.name.clone(), i.clone());
                i
            }
        };
        path.pop();
        for n in path.into_iter().rev() {
            if n.driver.filtered_role().is_some() {
                // A filter shows its child's image, without the format's own facts (a job's
                // filter without its backing file either).
                info.qcow2 = None;
                if n.driver.is_job_filter() {
                    info.backing_filename = None;
                    info.full_backing_filename = None;
                    info.backing_filename_format = None;
                    info.snapshots.clear();
                }
            } else {
                // A raw node over another node shows that node's data as raw: its size,
                // cluster size and allocation, none of a format's own facts.
                info.format = ImageFormat::Raw;
                info.qcow2 = None;
                info.backing_filename = None;
                info.full_backing_filename = None;
                info.backing_filename_format = None;
                info.snapshots.clear();
            }
            memo.images.insert(n.name.clone(), info.clone());
        }
        Ok(info)
    }

    /// The image of a node that is neither a filter nor a pass-through raw node.
    fn own_image_info(&self, node: &Node, memo: &mut Memo) -> Result<ImageInfo> {
        match (&node.data, node.driver) {
            (Data::Null(..) | Data::Quorum(_), _) => Ok(ImageInfo {
                filename: node.filename.clone(),
                format: ImageFormat::Raw,
                virtual_size: node.data.size(),
                actual_size: Some(0),
                cluster_size: None,
                dirty_flag: false,
                has_info: false,
                encrypted: false,
                backing_filename: None,
                full_backing_filename: None,
                backing_filename_format: None,
                snapshots: Vec::new(),
                qcow2: None,
            }),
            (Data::Image(_), Driver::File) => {
                let mut info = image::image_info(&node.path(), Some(ImageFormat::Raw))?;
                if let Some(length) = self.counted_length(&node.name) {
                    info.virtual_size = length;
                }
                Ok(info)
            }
            (Data::Image(_), Driver::Raw) => {
                let mut info = image::image_info(&node.path(), Some(ImageFormat::Raw))?;
                if let Some(length) = self.counted_length(&node.name) {
                    info.virtual_size = length;
                }
                // A raw node reports its file child's cluster size (a qcow2 node's, when a
                // snapshot put one below it).
                let child = node.children.iter().find(|e| e.role == ChildRole::File);
                if let Some(c) = child.and_then(|e| self.nodes.get(&e.child)) {
                    info.cluster_size = self.image_info_in(c, memo)?.cluster_size;
                }
                Ok(info)
            }
            (Data::Image(_), _) => image::image_info(&node.path(), node.driver.format()),
        }
    }

    /// What the parents of each node take and share, all together (what
    /// `cumulative` says of one node), for every node at once: each node's from its
    /// parents', worked out once, parents first.
    pub(super) fn all_cumulative(&self) -> HashMap<&str, (PermSet, PermSet)> {
        let mut parents: HashMap<&str, Vec<(&Node, ChildRole)>> = HashMap::new();
        for n in self.nodes.values() {
            for e in &n.children {
                parents
                    .entry(e.child.as_str())
                    .or_default()
                    .push((n, e.role));
            }
        }
        let mut out: HashMap<&str, (PermSet, PermSet)> = HashMap::new();
        for start in self.nodes.values() {
            // (node, whether its parents were pushed); a node whose parents were pushed is
            // on the way up until it is worked out (meeting it again would be a cycle, which
            // the graph never has: that parent then counts for nothing).
            let mut stack = vec![(start.name.as_str(), false)];
            let mut on_way: std::collections::HashSet<&str> = Default::default();
            while let Some((n, expanded)) = stack.pop() {
                if out.contains_key(n) {
                    continue;
                }
                let ps = parents.get(n).map(Vec::as_slice).unwrap_or_default();
                if !expanded {
                    on_way.insert(n);
                    stack.push((n, true));
                    for (p, _) in ps {
                        let p = p.name.as_str();
                        if !out.contains_key(p) && !on_way.contains(p) {
                            stack.push((p, false));
                        }
                    }
                    continue;
                }
                let mut perm = PermSet::NONE;
                let mut shared = PermSet::ALL;
                for (p, role) in ps {
                    let (pp, ps) = out
                        .get(p.name.as_str())
                        .copied()
                        .unwrap_or((PermSet::NONE, PermSet::ALL));
                    let (ep, es) = self.edge_perms_given(p, *role, pp, ps);
                    perm = perm.union(ep);
                    shared = shared.intersect(es);
                }
                for u in self.users.iter().filter(|u| u.node == n) {
                    perm = perm.union(u.perm);
                    shared = shared.intersect(u.shared);
                }
                on_way.remove(n);
                out.insert(n, (perm, shared));
            }
        }
        out
    }
}
