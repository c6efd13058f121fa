//! The graph's dirty bitmaps: QEMU's bitmap commands on nodes, and loading and storing the
//! persistent ones in qcow2 images when nodes open, close or become read-only.

use std::path::Path;

use super::{BlockGraph, Data, Driver};
use crate::bitmap::{check_new, AddOptions, BitmapSet, DirtyBitmap, DEFAULT_GRANULARITY};
use crate::image::{self, ImageFormat};
use crate::nbd::ExportBackend;
use crate::qcow2_bitmaps::{self, StoredBitmap};
use crate::{Error, Result};

/// What an image file holds when its node opens: its bitmaps, and whether it has a bitmap
/// directory at all (which a later store replaces).
#[derive(Debug, Default)]
pub(super) struct Stored {
    bitmaps: Vec<StoredBitmap>,
    has_directory: bool,
}

/// Reads a qcow2 file's persistent bitmaps; a directory that cannot be read counts as none
/// (and is then left alone).
pub(super) fn load_stored(path: &Path) -> Stored {
    match qcow2_bitmaps::load(path) {
        Ok(bitmaps) => Stored {
            has_directory: qcow2_bitmaps::has_bitmaps(path).unwrap_or(false),
            bitmaps,
        },
        Err(_) => Stored::default(),
    }
}

fn lookup_error(node: &str) -> Error {
    Error::generic(format!("Node '{node}' not found"))
}

impl BlockGraph {
    /// Makes the bitmaps read from a node's file the node's own (file order; the newest,
    /// listed first, is the last in the file).
    pub(super) fn attach_stored_bitmaps(&mut self, name: &str, stored: Stored) {
        let Some(node) = self.nodes.get(name) else {
            return;
        };
        let size = node.data.size();
        let read_only = node.read_only;
        let Ok(mut set) = node.bitmaps.lock() else {
            return;
        };
        set.file_has_bitmaps = stored.has_directory;
        for s in stored.bitmaps {
            let mut b = DirtyBitmap::new(&s.name, 1u64 << s.granularity_bits, size);
            b.load_bytes(&s.data);
            b.persistent = true;
            b.enabled = s.auto;
            b.inconsistent = s.in_use;
            b.readonly = read_only;
            set.file_order.push(s.name);
            set.list.insert(0, b);
        }
        let mark = !read_only && set.file_has_bitmaps;
        drop(set);
        if mark {
            self.mark_bitmaps_in_use(name);
        }
    }

    /// A writable qcow2 node's file shows its bitmaps as in use while the node is open.
    pub(super) fn mark_bitmaps_in_use(&self, name: &str) {
        let Some(n) = self.nodes.get(name) else {
            return;
        };
        let has = n.bitmaps.lock().is_ok_and(|s| s.file_has_bitmaps);
        if n.driver == Driver::Qcow2 && !n.read_only && has {
            let _ = qcow2_bitmaps::mark_in_use(&n.path());
        }
    }

    fn with_bitmaps<T>(
        &self,
        node: &str,
        f: impl FnOnce(&mut BitmapSet) -> Result<T>,
    ) -> Result<T> {
        let n = self.nodes.get(node).ok_or_else(|| lookup_error(node))?;
        let mut set = n
            .bitmaps
            .lock()
            .map_err(|_| Error::generic("bitmap lock poisoned"))?;
        f(&mut set)
    }

    /// The granularity a new bitmap gets by default: the image's cluster size within 4 KiB
    /// and 64 KiB, as QEMU chooses it.
    fn default_granularity(&self, node: &str) -> u64 {
        let Some(n) = self.nodes.get(node) else {
            return DEFAULT_GRANULARITY;
        };
        if n.driver != Driver::Qcow2 {
            return DEFAULT_GRANULARITY;
        }
        image::image_info(&n.path(), Some(ImageFormat::Qcow2))
            .ok()
            .and_then(|i| i.cluster_size)
            .map_or(DEFAULT_GRANULARITY, |c| c.clamp(4096, DEFAULT_GRANULARITY))
    }

    /// `block-dirty-bitmap-add` on a node (callers resolve device names first).
    pub fn bitmap_add(&mut self, node: &str, name: &str, opts: &AddOptions) -> Result<()> {
        if name.is_empty() {
            return Err(Error::generic("Bitmap name cannot be empty"));
        }
        let n = self.node(node)?;
        let can_persist = (n.driver != Driver::Qcow2).then_some("Operation not supported");
        let size = self.size(node)?;
        let mut opts = opts.clone();
        if opts.granularity.is_none() {
            opts.granularity = Some(self.default_granularity(node));
        }
        self.with_bitmaps(node, |set| {
            let granularity = check_new(set, node, name, &opts, can_persist)?;
            let mut b = DirtyBitmap::new(name, granularity, size);
            b.persistent = opts.persistent;
            b.enabled = !opts.disabled;
            set.list.insert(0, b);
            Ok(())
        })
    }

    /// `block-dirty-bitmap-remove`: the bitmap as it was (to put back if a transaction fails).
    pub fn bitmap_remove(&mut self, node: &str, name: &str) -> Result<DirtyBitmap> {
        self.with_bitmaps(node, |set| set.remove(name))
    }

    /// Puts a removed bitmap back (newest first, as it was added).
    pub fn bitmap_restore(&mut self, node: &str, bitmap: DirtyBitmap) -> Result<()> {
        self.with_bitmaps(node, |set| {
            set.list.insert(0, bitmap);
            Ok(())
        })
    }

    /// `block-dirty-bitmap-clear`: the bitmap before clearing (for a transaction's undo).
    pub fn bitmap_clear(&mut self, node: &str, name: &str) -> Result<DirtyBitmap> {
        self.with_bitmaps(node, |set| {
            let b = set.get_writable(name)?;
            let old = b.clone();
            b.clear();
            Ok(old)
        })
    }

    /// Puts a bitmap's bits back as they were (a failed transaction's clear).
    pub fn bitmap_replace(&mut self, node: &str, bitmap: DirtyBitmap) -> Result<()> {
        self.with_bitmaps(node, |set| {
            let b = set.get_mut(&bitmap.name.clone())?;
            *b = bitmap;
            Ok(())
        })
    }

    /// `block-dirty-bitmap-enable` / `-disable`.
    pub fn bitmap_set_enabled(&mut self, node: &str, name: &str, enabled: bool) -> Result<()> {
        self.with_bitmaps(node, |set| {
            set.get_usable(name)?.enabled = enabled;
            Ok(())
        })
    }

    /// A job takes a bitmap: it is busy, and an anonymous successor (listed first) records
    /// the writes meanwhile, as the bitmap did.
    pub fn bitmap_freeze(&mut self, node: &str, name: &str) -> Result<()> {
        self.with_bitmaps(node, |set| {
            let b = set.get_usable(name)?;
            b.busy = true;
            let mut s = DirtyBitmap::new("", b.granularity, 0);
            s.resize(b.bits() * b.granularity);
            s.enabled = b.enabled;
            s.successor_of = Some(name.to_string());
            set.list.insert(0, s);
            Ok(())
        })
    }

    /// The job lets go of a bitmap. `restart`: the successor takes its place (it marks only
    /// the writes since the job began); otherwise the successor's marks are merged back, after
    /// clearing the first `copied` bytes' worth the job copied.
    pub fn bitmap_thaw(&mut self, node: &str, name: &str, restart: bool, copied: Option<u64>) {
        let _ = self.with_bitmaps(node, |set| {
            let Some(si) = set
                .list
                .iter()
                .position(|b| b.successor_of.as_deref() == Some(name))
            else {
                return Ok(());
            };
            let mut succ = set.list.remove(si);
            let b = set.get_mut(name)?;
            b.busy = false;
            if restart {
                succ.name = b.name.clone();
                succ.successor_of = None;
                succ.enabled = b.enabled;
                succ.persistent = b.persistent;
                succ.readonly = b.readonly;
                succ.inconsistent = b.inconsistent;
                set.list.retain(|x| x.name != name);
                set.list.insert(si.min(set.list.len()), succ);
            } else {
                if let Some(c) = copied {
                    b.clear_first(c);
                }
                b.merge_from(&succ);
            }
            Ok(())
        });
    }

    /// A job's filter's own anonymous bitmaps (not recording).
    pub fn add_job_bitmaps(&mut self, node: &str, count: usize, granularity: u64) {
        let Ok(size) = self.size(node) else { return };
        let _ = self.with_bitmaps(node, |set| {
            for _ in 0..count {
                let mut b = DirtyBitmap::new("", granularity, size);
                b.enabled = false;
                set.list.push(b);
            }
            Ok(())
        });
    }

    /// A job's filter's last bitmap (a mirror's only one) marks `bytes` bytes left to copy.
    pub fn set_job_bitmap_count(&self, node: &str, bytes: u64) {
        let _ = self.with_bitmaps(node, |set| {
            if let Some(b) = set.list.last_mut() {
                b.set_first(bytes);
            }
            Ok(())
        });
    }

    /// A backup filter's first bitmap marks the whole disk (what the filter may be asked
    /// to read: measured on qemu-storage-daemon 10.0.2, whatever the sync mode, from the
    /// start to the job's end).
    pub fn set_job_bitmap_full(&self, node: &str) {
        let _ = self.with_bitmaps(node, |set| {
            if let Some(b) = set.list.first_mut() {
                b.set_first(u64::MAX);
            }
            Ok(())
        });
    }

    /// `block-dirty-bitmap-merge`: sources are `(node, name)`, a missing node meaning the
    /// target's.
    pub fn bitmap_merge(
        &mut self,
        node: &str,
        target: &str,
        sources: &[(Option<String>, String)],
    ) -> Result<()> {
        self.with_bitmaps(node, |set| set.get_writable(target).map(|_| ()))?;
        let mut merged = Vec::new();
        for (n, name) in sources {
            let n = n.as_deref().unwrap_or(node);
            let b = self.bitmap(n, name)?;
            if b.busy {
                return Err(crate::bitmap::in_use(name));
            }
            merged.push(b);
        }
        self.with_bitmaps(node, |set| {
            let t = set.get_mut(target)?;
            for s in &merged {
                t.merge_from(s);
            }
            Ok(())
        })
    }

    /// One bitmap (a copy).
    pub fn bitmap(&self, node: &str, name: &str) -> Result<DirtyBitmap> {
        self.with_bitmaps(node, |set| set.get(name).cloned())
    }

    /// A node's bitmaps, newest first.
    pub fn bitmaps(&self, node: &str) -> Vec<DirtyBitmap> {
        self.with_bitmaps(node, |set| Ok(set.list.clone()))
            .unwrap_or_default()
    }

    pub(super) fn resize_bitmaps(&self, node: &str, size: u64) {
        let _ = self.with_bitmaps(node, |set| {
            set.list.iter_mut().for_each(|b| b.resize(size));
            Ok(())
        });
    }

    /// Writes a writable qcow2 node's persistent bitmaps into its file (what closing the node
    /// or making it read-only does), replacing the directory the file had.
    pub fn store_bitmaps(&self, node: &str) -> Result<()> {
        let n = self.node(node)?;
        if n.driver != Driver::Qcow2 || n.read_only {
            return Ok(());
        }
        let Data::Image(img) = &n.data else {
            return Ok(());
        };
        let mut set = n
            .bitmaps
            .lock()
            .map_err(|_| Error::generic("bitmap lock poisoned"))?;
        let order: Vec<StoredBitmap> = set
            .store_order()
            .into_iter()
            .map(|b| StoredBitmap {
                name: b.name.clone(),
                granularity_bits: b.granularity.trailing_zeros() as u8,
                auto: b.enabled,
                in_use: false,
                data: b.to_bytes(),
            })
            .collect();
        if order.is_empty() && !set.file_has_bitmaps {
            return Ok(());
        }
        ExportBackend::flush(&**img)?;
        qcow2_bitmaps::store(&n.path(), &order)?;
        set.file_order = order.iter().map(|b| b.name.clone()).collect();
        set.file_has_bitmaps = !order.is_empty();
        Ok(())
    }

    /// [`BlockGraph::store_bitmaps`] where nothing can answer an error (a node going away).
    pub(super) fn store_bitmaps_quietly(&self, node: &str) {
        let _ = self.store_bitmaps(node);
    }

    /// A node became read-only or writable: its persistent bitmaps follow (stored before it
    /// becomes read-only, by the caller).
    pub(super) fn bitmaps_follow_read_only(&self, node: &str, read_only: bool) {
        let _ = self.with_bitmaps(node, |set| {
            for b in set.list.iter_mut().filter(|b| b.persistent) {
                b.readonly = read_only;
            }
            Ok(())
        });
    }
}
