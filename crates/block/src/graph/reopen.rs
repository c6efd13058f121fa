//! `blockdev-reopen`: changing the options of existing nodes all together (read-only,
//! detect-zeroes, cache, the file and backing children), with QEMU's checks and words; a
//! failure leaves every node as it was.

use std::path::Path;

use super::{
    BlockGraph, BlockdevOptions, BlockdevRef, ChildRole, DetectZeroes, Driver, Edge, Perm,
};
use crate::image::{self, ImageFormat};
use crate::{Error, Result};

/// What one node becomes.
#[derive(Debug, Clone)]
struct Plan {
    name: String,
    read_only: bool,
    detect_zeroes: DetectZeroes,
    cache_direct: bool,
    cache_no_flush: bool,
    /// A new file child.
    file: Option<String>,
    /// A new backing child (`Some(None)`: none).
    backing: Option<Option<String>>,
}

/// A node as it was, to put back.
#[derive(Debug, Clone)]
struct Saved {
    name: String,
    read_only: bool,
    detect_zeroes: DetectZeroes,
    cache_direct: bool,
    cache_no_flush: bool,
    children: Vec<Edge>,
    filename: String,
    passed: Option<std::sync::Arc<super::PassedFile>>,
}

fn missing(name: &str) -> Error {
    Error::generic(format!("Cannot find device='' nor node-name='{name}'"))
}

impl BlockGraph {
    fn plan(&self, o: &BlockdevOptions) -> Result<Plan> {
        let name = o
            .node_name
            .clone()
            .ok_or_else(|| Error::generic("node-name not specified"))?;
        let n = self.nodes.get(&name).ok_or_else(|| {
            Error::generic(format!("Failed to find node with node-name='{name}'"))
        })?;
        // A quorum cannot be reopened at all (QEMU says so before it looks at the options).
        if n.driver == Driver::Quorum {
            return Err(Error::generic(format!(
                "Block format 'quorum' used by node '{name}' does not support reopening files"
            )));
        }
        if n.driver != o.driver {
            return Err(Error::generic("Cannot change the option 'driver'"));
        }
        let mut file = None;
        // QEMU looks at the backing option before the children it names.
        let backing = if o.driver == Driver::Qcow2 {
            self.plan_backing(&name, o)?
        } else {
            None
        };
        match o.driver {
            Driver::File => {
                if o.filename.as_deref() != Some(Path::new(&n.filename)) {
                    return Err(Error::generic("Cannot change the option 'filename'"));
                }
            }
            Driver::Raw | Driver::Qcow2 => match &o.file {
                Some(BlockdevRef::Node(f)) => {
                    self.nodes.get(f).ok_or_else(|| missing(f))?;
                    if self.child(&name, ChildRole::File).as_deref() != Some(f.as_str()) {
                        self.check_no_cycle(&name, f, ChildRole::File)?;
                        file = Some(f.clone());
                    }
                }
                Some(BlockdevRef::Inline(_)) => {
                    return Err(Error::generic("Cannot change the option 'file.driver'"))
                }
                None => {}
            },
            _ => {}
        }
        Ok(Plan {
            name,
            read_only: o.read_only,
            detect_zeroes: o.detect_zeroes,
            cache_direct: o.cache_direct,
            cache_no_flush: o.cache_no_flush,
            file,
            backing,
        })
    }

    fn plan_backing(&self, name: &str, o: &BlockdevOptions) -> Result<Option<Option<String>>> {
        match &o.backing {
            None => {
                let named = image::image_info(&self.nodes[name].path(), Some(ImageFormat::Qcow2))
                    .map(|i| i.backing_filename.is_some())
                    .unwrap_or(false);
                if named {
                    return Err(Error::generic(format!("backing is missing for '{name}'")));
                }
                Ok(None)
            }
            Some(None) => Ok(Some(None)),
            Some(Some(BlockdevRef::Node(b))) => {
                self.nodes.get(b).ok_or_else(|| missing(b))?;
                self.check_no_cycle(name, b, ChildRole::Backing)?;
                Ok(Some(Some(b.clone())))
            }
            Some(Some(BlockdevRef::Inline(_))) => {
                Err(Error::generic("Cannot change the option 'backing.driver'"))
            }
        }
    }

    /// `blockdev-reopen`: every node in `list` gets its new options, or none does.
    pub fn reopen_options(&mut self, list: &[BlockdevOptions]) -> Result<()> {
        let plans = list
            .iter()
            .map(|o| self.plan(o))
            .collect::<Result<Vec<_>>>()?;
        let saved: Vec<Saved> = plans
            .iter()
            .filter_map(|p| self.nodes.get(&p.name))
            .map(|n| Saved {
                name: n.name.clone(),
                read_only: n.read_only,
                detect_zeroes: n.detect_zeroes,
                cache_direct: n.cache_direct,
                cache_no_flush: n.cache_no_flush,
                children: n.children.clone(),
                filename: n.filename.clone(),
                passed: n.passed.clone(),
            })
            .collect();
        let r = self.apply_plans(&plans);
        if r.is_ok() {
            for p in &plans {
                self.recount_reopened(&p.name);
            }
        }
        if r.is_err() {
            for s in &saved {
                if let Some(n) = self.nodes.get_mut(&s.name) {
                    n.read_only = s.read_only;
                    n.detect_zeroes = s.detect_zeroes;
                    n.cache_direct = s.cache_direct;
                    n.cache_no_flush = s.cache_no_flush;
                    n.children = s.children.clone();
                    n.filename = s.filename.clone();
                    n.passed = s.passed.clone();
                }
            }
            for s in &saved {
                let _ = self.reopen(&s.name);
            }
        }
        r
    }

    fn final_read_only(&self, plans: &[Plan], name: &str) -> bool {
        plans
            .iter()
            .find(|p| p.name == name)
            .map(|p| p.read_only)
            .unwrap_or_else(|| self.nodes.get(name).is_some_and(|n| n.read_only))
    }

    fn apply_plans(&mut self, plans: &[Plan]) -> Result<()> {
        // Checks against the state the whole list makes.
        for p in plans {
            if p.read_only {
                let users_write = self
                    .users
                    .iter()
                    .any(|u| u.node == p.name && u.perm.contains(Perm::Write));
                let parent_writes = self.nodes.values().any(|n| {
                    !self.final_read_only(plans, &n.name)
                        && n.driver == Driver::Qcow2
                        && n.children
                            .iter()
                            .any(|e| e.role == ChildRole::File && e.child == p.name)
                });
                if users_write || parent_writes {
                    return Err(Error::generic(format!(
                        "Read-only block node '{}' cannot support read-write users",
                        p.name
                    )));
                }
            } else {
                let file = p
                    .file
                    .clone()
                    .or_else(|| self.child(&p.name, ChildRole::File));
                if file.is_some_and(|f| self.final_read_only(plans, &f)) {
                    return Err(Error::generic("Block node is read-only"));
                }
            }
        }
        // Persistent bitmaps go into images that stop being writable.
        for p in plans {
            if p.read_only && !self.nodes[&p.name].read_only {
                self.store_bitmaps(&p.name)?;
            }
        }
        for p in plans {
            // Each new file child against the graph the earlier ones made: together they
            // may close a cycle that none closes alone.
            if let Some(f) = &p.file {
                self.check_no_cycle(&p.name, f, ChildRole::File)?;
            }
            let file_name = match &p.file {
                Some(f) => Some((self.nodes[f].filename.clone(), self.nodes[f].passed.clone())),
                None => None,
            };
            let n = self
                .nodes
                .get_mut(&p.name)
                .ok_or_else(|| missing(&p.name))?;
            n.read_only = p.read_only;
            n.detect_zeroes = p.detect_zeroes;
            n.cache_direct = p.cache_direct;
            n.cache_no_flush = p.cache_no_flush;
            if let (Some(f), Some(file_name)) = (&p.file, file_name) {
                for e in n.children.iter_mut().filter(|e| e.role == ChildRole::File) {
                    e.child = f.clone();
                }
                (n.filename, n.passed) = file_name;
            }
        }
        self.check_all_perms()?;
        // File nodes first, so formats open over their files' new state.
        let mut order: Vec<&Plan> = plans.iter().collect();
        order.sort_by_key(|p| self.nodes.get(&p.name).map(|n| n.driver != Driver::File));
        for p in order {
            match &p.backing {
                Some(b) => self.set_backing(&p.name, b.as_deref())?,
                None => self.reopen(&p.name)?,
            }
            self.bitmaps_follow_read_only(&p.name, p.read_only);
        }
        Ok(())
    }
}
