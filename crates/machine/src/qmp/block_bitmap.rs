//! Dirty bitmap commands over the graph's bitmaps (`qmpkit_block::bitmap`): add (with 4.0's
//! `disabled`), remove, clear, 4.0's enable, disable and merge, the checksum, and the
//! transaction actions with their undo. The `dirty-bitmaps` that `query-block` and
//! `query-named-block-nodes` show are the block layer's (`crate::block::dirty_info`).

use qmpkit_block::bitmap::{AddOptions, DirtyBitmap};
use qmpkit_qapi::Empty;

use super::R;
use crate::api;
use crate::block::{self, qerr};
use crate::{generic, Cx, Machine};

/// The node a bitmap command's `node` names: a drive's node by drive name, else the name
/// itself (the graph answers "Node '…' not found" for a missing one).
fn node_of(m: &Machine, node: &str) -> R<String> {
    if m.block.find(node).is_some() {
        return block::resolve_node(m, node);
    }
    Ok(node.to_string())
}

fn add(m: &mut Machine, node: &str, name: &str, opts: &AddOptions) -> R<String> {
    // `add` looks its node up with the words of commands that take a device or node name.
    let node = if name.is_empty() {
        node.to_string()
    } else {
        block::resolve_node(m, node)?
    };
    m.block.graph.bitmap_add(&node, name, opts).map_err(qerr)?;
    Ok(node)
}

fn add_options(a: &api::BlockDirtyBitmapAdd) -> R<AddOptions> {
    let persistent = a.persistent.unwrap_or(false);
    if a.autoload == Some(true) && !persistent {
        return Err(generic(
            "Autoload flag must be used only for persistent bitmaps",
        ));
    }
    Ok(AddOptions {
        granularity: a.granularity.map(u64::from),
        persistent,
        disabled: a.disabled.unwrap_or(false),
    })
}

pub fn block_dirty_bitmap_add(
    m: &mut Machine,
    a: api::BlockDirtyBitmapAdd,
    _: &mut Cx,
) -> R<Empty> {
    let opts = add_options(&a)?;
    add(m, &a.node, &a.name, &opts)?;
    Ok(Empty)
}

pub fn block_dirty_bitmap_remove(
    m: &mut Machine,
    a: api::BlockDirtyBitmapRemove,
    _: &mut Cx,
) -> R<Empty> {
    let node = node_of(m, &a.node)?;
    m.block.graph.bitmap_remove(&node, &a.name).map_err(qerr)?;
    Ok(Empty)
}

pub fn block_dirty_bitmap_clear(
    m: &mut Machine,
    a: api::BlockDirtyBitmapClear,
    _: &mut Cx,
) -> R<Empty> {
    let node = node_of(m, &a.node)?;
    m.block.graph.bitmap_clear(&node, &a.name).map_err(qerr)?;
    Ok(Empty)
}

pub fn block_dirty_bitmap_enable(
    m: &mut Machine,
    a: api::BlockDirtyBitmapEnable,
    _: &mut Cx,
) -> R<Empty> {
    set_enabled(m, &a.node, &a.name, true)
}

pub fn block_dirty_bitmap_disable(
    m: &mut Machine,
    a: api::BlockDirtyBitmapDisable,
    _: &mut Cx,
) -> R<Empty> {
    set_enabled(m, &a.node, &a.name, false)
}

fn set_enabled(m: &mut Machine, node: &str, name: &str, enabled: bool) -> R<Empty> {
    let node = node_of(m, node)?;
    m.block
        .graph
        .bitmap_set_enabled(&node, name, enabled)
        .map_err(qerr)?;
    Ok(Empty)
}

pub fn block_dirty_bitmap_merge(
    m: &mut Machine,
    a: api::BlockDirtyBitmapMerge,
    _: &mut Cx,
) -> R<Empty> {
    let node = node_of(m, &a.node)?;
    let mut sources = Vec::new();
    for s in &a.bitmaps {
        match s {
            api::BlockDirtyBitmapOrStr::Local(name) => sources.push((None, name.clone())),
            api::BlockDirtyBitmapOrStr::External(b) => {
                sources.push((Some(node_of(m, &b.node)?), b.name.clone()));
            }
        }
    }
    m.block
        .graph
        .bitmap_merge(&node, &a.target, &sources)
        .map_err(qerr)?;
    Ok(Empty)
}

pub fn x_debug_block_dirty_bitmap_sha256(
    m: &mut Machine,
    a: api::XDebugBlockDirtyBitmapSha256,
    _: &mut Cx,
) -> R<api::BlockDirtyBitmapSha256> {
    let node = node_of(m, &a.node)?;
    let b = m.block.graph.bitmap(&node, &a.name).map_err(qerr)?;
    Ok(api::BlockDirtyBitmapSha256 { sha256: b.sha256() })
}

/// What a transaction undoes for a bitmap action.
pub enum Undo {
    Added { node: String, name: String },
    Cleared { node: String, old: DirtyBitmap },
}

pub fn add_action(m: &mut Machine, a: &api::BlockDirtyBitmapAdd) -> R<Undo> {
    let opts = add_options(a)?;
    let node = add(m, &a.node, &a.name, &opts)?;
    Ok(Undo::Added {
        node,
        name: a.name.clone(),
    })
}

pub fn clear_action(m: &mut Machine, a: &api::BlockDirtyBitmap) -> R<Undo> {
    let node = node_of(m, &a.node)?;
    let old = m.block.graph.bitmap_clear(&node, &a.name).map_err(qerr)?;
    Ok(Undo::Cleared { node, old })
}

pub fn undo(m: &mut Machine, u: Undo) {
    match u {
        Undo::Added { node, name } => {
            let _ = m.block.graph.bitmap_remove(&node, &name);
        }
        Undo::Cleared { node, old } => {
            let _ = m.block.graph.bitmap_replace(&node, old);
        }
    }
}
