//! Internal snapshots of a node's qcow2 image (`blockdev-snapshot-internal-sync` and
//! `blockdev-snapshot-delete-internal-sync`), with QEMU's checks and words.

use super::{BlockGraph, Driver};
use crate::qcow2_snapshots::{self, Entry, Stamp};
use crate::{Error, Result};

impl BlockGraph {
    fn snapshot_target(&self, node: &str, device: &str) -> Result<()> {
        let n = self.node(node)?;
        if n.driver != Driver::Qcow2 {
            return Err(Error::generic(format!(
                "Block format '{}' used by device '{device}' does not support internal snapshots",
                n.driver.name()
            )));
        }
        Ok(())
    }

    /// Takes an internal snapshot `name` of a qcow2 node; `device` is how errors name it.
    pub fn snapshot_internal(
        &mut self,
        node: &str,
        device: &str,
        name: &str,
        stamp: Stamp,
    ) -> Result<Entry> {
        self.snapshot_target(node, device)?;
        if self.is_read_only(node)? {
            return Err(Error::generic(format!("Device '{device}' is read only")));
        }
        if name.is_empty() {
            return Err(Error::generic("Name is empty"));
        }
        self.check_job_blocked(node)?;
        let path = self.host_path(node)?;
        let existing = qcow2_snapshots::list(&path)?;
        if existing.iter().any(|e| e.name == name) {
            return Err(Error::generic(format!(
                "Snapshot with name '{name}' already exists on device '{device}'"
            )));
        }
        self.edit_closed(node, |p| qcow2_snapshots::create(p, name, stamp))
    }

    /// Deletes the internal snapshot with `id` and/or `name`; returns what it was.
    pub fn snapshot_delete_internal(
        &mut self,
        node: &str,
        device: &str,
        id: Option<&str>,
        name: Option<&str>,
    ) -> Result<Entry> {
        if id.is_none() && name.is_none() {
            return Err(Error::generic("Name or id must be provided"));
        }
        if self.node(node)?.driver != Driver::Qcow2 {
            return Err(Error::generic(
                "Failed to get a snapshot list: Operation not supported",
            ));
        }
        self.check_job_blocked(node)?;
        let matches = |e: &Entry| id.is_none_or(|i| e.id == i) && name.is_none_or(|n| e.name == n);
        let missing = || {
            Error::generic(format!(
                "Snapshot with id '{}' and name '{}' does not exist on device '{device}'",
                id.unwrap_or("null"),
                name.unwrap_or("null")
            ))
        };
        let path = self.host_path(node)?;
        if !qcow2_snapshots::list(&path)?.iter().any(matches) {
            return Err(missing());
        }
        if self.is_read_only(node)? {
            return Err(Error::generic(format!("Device '{device}' is read only")));
        }
        self.edit_closed(node, |p| qcow2_snapshots::delete(p, matches))?
            .ok_or_else(missing)
    }

    /// The internal snapshots of a qcow2 node's image, in table order (none for other
    /// drivers).
    pub fn snapshots(&self, node: &str) -> Result<Vec<Entry>> {
        if self.node(node)?.driver != Driver::Qcow2 {
            return Ok(Vec::new());
        }
        qcow2_snapshots::list(&self.host_path(node)?)
    }

    /// Reverts a qcow2 node's image to its snapshot named `name`.
    pub fn snapshot_goto(&mut self, node: &str, name: &str) -> Result<Entry> {
        self.check_job_blocked(node)?;
        self.edit_closed(node, |p| qcow2_snapshots::goto(p, |e| e.name == name))?
            .ok_or_else(|| {
                Error::generic(format!(
                    "Snapshot '{name}' does not exist in one or more devices"
                ))
            })
    }
}
