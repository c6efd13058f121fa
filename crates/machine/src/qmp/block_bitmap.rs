//! Dirty bitmap commands over the graph's bitmaps (`qmpkit_block::bitmap`): add, remove,
//! clear and the checksum in the machine's own schema; enable, disable, merge and `add`'s
//! `disabled` of newer interfaces by name; the `dirty-bitmaps` that `query-block` and
//! `query-named-block-nodes` show; and the transaction actions with their undo.

use qmpkit_block::bitmap::{AddOptions, DirtyBitmap};
use qmpkit_qapi::Empty;
use serde_json::{json, Map, Value};

use super::R;
use crate::api;
use crate::block::{self, qerr};
use crate::{arg_bool, arg_str, arg_u64, generic, Args, CmdResult, Cx, Machine};

/// Commands of newer interfaces answered here by name.
pub const HANDLED: &[&str] = &[
    "block-dirty-bitmap-disable",
    "block-dirty-bitmap-enable",
    "block-dirty-bitmap-merge",
];

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
        disabled: false,
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

/// `dirty-bitmaps` of a drive's node in the machine's own (2.12) form; None when it has none.
pub fn dirty_info(m: &Machine, node: &str) -> Option<Vec<api::BlockDirtyInfo>> {
    let list = m.block.graph.bitmaps(node);
    (!list.is_empty()).then(|| {
        list.iter()
            .map(|b| api::BlockDirtyInfo {
                name: Some(b.name.clone()),
                count: block::i(b.count()),
                granularity: u32::try_from(b.granularity).unwrap_or(u32::MAX),
                status: if b.enabled {
                    api::DirtyBitmapStatus::Active
                } else {
                    api::DirtyBitmapStatus::Disabled
                },
            })
            .collect()
    })
}

/// `dirty-bitmaps` of a node in QEMU 4.0's and later form (`BlockDeviceInfo`'s member there):
/// recording, busy, persistent, and `inconsistent` when set. None when it has none.
pub fn dirty_info_newer(m: &Machine, node: &str) -> Option<Value> {
    let list = m.block.graph.bitmaps(node);
    (!list.is_empty()).then(|| {
        Value::Array(
            list.iter()
                .map(|b| {
                    let mut o = json!({
                        "name": b.name,
                        "recording": b.enabled,
                        "persistent": b.persistent,
                        "busy": false,
                        "granularity": b.granularity,
                        "count": b.count(),
                    });
                    if b.inconsistent {
                        o["inconsistent"] = json!(true);
                    }
                    o
                })
                .collect(),
        )
    })
}

fn empty() -> CmdResult {
    Ok(Value::Object(Map::new()))
}

fn str_arg<'a>(args: &'a Args, name: &str) -> &'a str {
    arg_str(args, name).unwrap_or("")
}

/// Newer interfaces' bitmap commands, by name; `block-dirty-bitmap-add` only when it carries
/// `disabled` (QEMU 4.0), which the machine's own form lacks.
pub fn execute_newer(m: &mut Machine, cmd: &str, args: &Args) -> Option<CmdResult> {
    Some(match cmd {
        "block-dirty-bitmap-add" if args.contains_key("disabled") => {
            let opts = AddOptions {
                granularity: arg_u64(args, "granularity"),
                persistent: arg_bool(args, "persistent").unwrap_or(false),
                disabled: arg_bool(args, "disabled").unwrap_or(false),
            };
            add(m, str_arg(args, "node"), str_arg(args, "name"), &opts).and_then(|_| empty())
        }
        "block-dirty-bitmap-enable" | "block-dirty-bitmap-disable" => {
            let enabled = cmd.ends_with("enable");
            node_of(m, str_arg(args, "node"))
                .and_then(|node| {
                    m.block
                        .graph
                        .bitmap_set_enabled(&node, str_arg(args, "name"), enabled)
                        .map_err(qerr)
                })
                .and_then(|()| empty())
        }
        "block-dirty-bitmap-merge" => merge(m, args).and_then(|()| empty()),
        _ => return None,
    })
}

fn merge(m: &mut Machine, args: &Args) -> R<()> {
    let node = node_of(m, str_arg(args, "node"))?;
    let mut sources = Vec::new();
    for s in args
        .get("bitmaps")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        match s {
            Value::String(name) => sources.push((None, name.clone())),
            Value::Object(o) => {
                let n = o.get("node").and_then(Value::as_str).unwrap_or("");
                let n = node_of(m, n)?;
                let name = o.get("name").and_then(Value::as_str).unwrap_or("");
                sources.push((Some(n), name.to_string()));
            }
            _ => {}
        }
    }
    m.block
        .graph
        .bitmap_merge(&node, str_arg(args, "target"), &sources)
        .map_err(qerr)
}
