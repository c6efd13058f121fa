//! QOM: the machine's object tree (`/machine`, `/objects`, `/chardevs`, …)
//! and the commands that walk it: `qom-list`, `qom-get`, `qom-set`,
//! `qom-list-types`, `qom-list-properties`, `device-list-properties`.
//!
//! The tree is an arena of nodes; a node knows its type (a name in the
//! static registry of [`types`]), its children (`child<…>` properties, in
//! insertion order), its link properties and the property values that
//! differ from the type's defaults. Everything else is answered from the
//! registry, so an idle machine's tree stays small.

pub mod daemon;
pub mod hashorder;
pub mod props;
pub mod types;
pub mod value;

use serde_json::Value;

use crate::api;
use qmpkit_wire::{ErrorClass, QmpError};

pub use types::{PropDef, TypeDef};
pub use value::QomValue;

/// Index of a node in the arena.
pub type NodeId = u32;

/// A `link<…>` property.
#[derive(Debug, Clone)]
pub struct Link {
    pub name: Box<str>,
    /// The property's type, e.g. `link<PCI>`.
    pub ty: Box<str>,
    /// Canonical path of the target, `""` when unset.
    pub target: Box<str>,
}

/// One object.
#[derive(Debug, Clone)]
pub struct Node {
    pub name: Box<str>,
    pub ty: &'static str,
    pub parent: Option<NodeId>,
    pub children: Vec<NodeId>,
    pub links: Vec<Link>,
    /// Values set explicitly (differing from the registry's defaults).
    pub vals: Vec<(Box<str>, QomValue)>,
    pub alive: bool,
    /// A container's property table, which orders its children as QEMU lists them
    /// ([`hashorder`]); `children` follows it.
    pub table: Option<Box<hashorder::HashOrder<NodeId>>>,
}

/// Why a path did not resolve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResolveError {
    NotFound,
    Ambiguous,
}

/// The object tree.
#[derive(Debug, Clone)]
pub struct Tree {
    pub nodes: Vec<Node>,
}

impl Default for Tree {
    fn default() -> Self {
        Tree::new()
    }
}

impl Tree {
    /// A tree with only the root container.
    pub fn new() -> Tree {
        Tree {
            nodes: vec![Node {
                name: "".into(),
                ty: "container",
                parent: None,
                children: Vec::new(),
                links: Vec::new(),
                vals: Vec::new(),
                alive: true,
                table: Some(Box::default()),
            }],
        }
    }

    pub const ROOT: NodeId = 0;

    pub fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id as usize]
    }

    fn node_mut(&mut self, id: NodeId) -> &mut Node {
        &mut self.nodes[id as usize]
    }

    /// Add a child object `name` of type `ty` under `parent`.
    pub fn add(&mut self, parent: NodeId, name: &str, ty: &'static str) -> NodeId {
        let id = self.nodes.len() as NodeId;
        self.nodes.push(Node {
            name: name.into(),
            ty,
            parent: Some(parent),
            children: Vec::new(),
            links: Vec::new(),
            vals: Vec::new(),
            alive: true,
            table: (ty == "container").then(Box::default),
        });
        let p = self.node_mut(parent);
        match &mut p.table {
            Some(t) => {
                t.insert(name, id);
                p.children = t.listed();
            }
            None => p.children.push(id),
        }
        id
    }

    /// Add (or fetch) a container child.
    pub fn container(&mut self, parent: NodeId, name: &str) -> NodeId {
        match self.child(parent, name) {
            Some(c) => c,
            None => self.add(parent, name, "container"),
        }
    }

    /// Remove `id` and everything below it.
    pub fn remove(&mut self, id: NodeId) {
        if id == Tree::ROOT {
            return;
        }
        if let Some(p) = self.node(id).parent {
            let name = self.node(id).name.clone();
            let p = self.node_mut(p);
            p.children.retain(|&c| c != id);
            if let Some(t) = &mut p.table {
                t.remove(&name);
            }
        }
        let mut stack = vec![id];
        while let Some(n) = stack.pop() {
            let node = self.node_mut(n);
            node.alive = false;
            stack.extend(std::mem::take(&mut node.children));
        }
        // Reclaim arena slots at the end (the common case of add-then-remove).
        while self.nodes.len() > 1 && self.nodes.last().map(|n| !n.alive).unwrap_or(false) {
            self.nodes.pop();
        }
    }

    pub fn child(&self, parent: NodeId, name: &str) -> Option<NodeId> {
        self.node(parent)
            .children
            .iter()
            .copied()
            .find(|&c| &*self.node(c).name == name)
    }

    pub fn link(&self, id: NodeId, name: &str) -> Option<&Link> {
        self.node(id).links.iter().find(|l| &*l.name == name)
    }

    /// Set (or add) a link property.
    pub fn set_link(&mut self, id: NodeId, name: &str, ty: &str, target: &str) {
        let n = self.node_mut(id);
        if let Some(l) = n.links.iter_mut().find(|l| &*l.name == name) {
            l.target = target.into();
        } else {
            n.links.push(Link {
                name: name.into(),
                ty: ty.into(),
                target: target.into(),
            });
        }
    }

    /// Canonical path of a node.
    pub fn path(&self, id: NodeId) -> String {
        if id == Tree::ROOT {
            return "/".into();
        }
        let mut parts = Vec::new();
        let mut cur = Some(id);
        while let Some(c) = cur {
            if c == Tree::ROOT {
                break;
            }
            parts.push(&*self.node(c).name);
            cur = self.node(c).parent;
        }
        let mut s = String::new();
        for p in parts.iter().rev() {
            s.push('/');
            s.push_str(p);
        }
        s
    }

    /// A stored value of `prop`, if set.
    pub fn val(&self, id: NodeId, prop: &str) -> Option<&QomValue> {
        self.node(id)
            .vals
            .iter()
            .find(|(k, _)| &**k == prop)
            .map(|(_, v)| v)
    }

    /// Store a value.
    pub fn set_val(&mut self, id: NodeId, prop: &str, v: impl Into<QomValue>) {
        let v = v.into();
        let n = self.node_mut(id);
        if let Some(slot) = n.vals.iter_mut().find(|(k, _)| &**k == prop) {
            slot.1 = v;
        } else {
            n.vals.push((prop.into(), v));
        }
    }

    /// The value of a registry property: stored or default.
    pub fn prop_value(&self, id: NodeId, prop: &str) -> Option<QomValue> {
        if let Some(v) = self.val(id, prop) {
            return Some(v.clone());
        }
        let def = types::find_prop(self.node(id).ty, prop)?;
        Some(def.default.map_or(QomValue::Null, QomValue::parse_default))
    }

    /// Follow one path component from `id`: a child, or a link's target.
    fn step(&self, id: NodeId, comp: &str) -> Option<NodeId> {
        if let Some(c) = self.child(id, comp) {
            return Some(c);
        }
        let l = self.link(id, comp)?;
        if l.target.is_empty() {
            return None;
        }
        self.resolve_absolute(&l.target)
    }

    fn resolve_absolute(&self, path: &str) -> Option<NodeId> {
        let mut cur = Tree::ROOT;
        for comp in path.split('/').filter(|c| !c.is_empty()) {
            cur = self.step(cur, comp)?;
        }
        Some(cur)
    }

    /// Resolve a path as QEMU does: absolute (`/machine/peripheral/x`) or
    /// partial (`peripheral/x`, `x`), which must then match exactly one
    /// object anywhere in the tree.
    pub fn resolve(&self, path: &str) -> Result<NodeId, ResolveError> {
        if path.starts_with('/') {
            return self.resolve_absolute(path).ok_or(ResolveError::NotFound);
        }
        let comps: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
        if comps.is_empty() {
            // An empty partial path matches every object.
            return Err(ResolveError::Ambiguous);
        }
        let mut found = None;
        for (i, n) in self.nodes.iter().enumerate() {
            if !n.alive || &*n.name != comps[comps.len() - 1] {
                continue;
            }
            // Walk up matching the remaining components.
            let mut cur = i as NodeId;
            let mut ok = true;
            for comp in comps[..comps.len() - 1].iter().rev() {
                match self.node(cur).parent {
                    Some(p) if p != Tree::ROOT && &*self.node(p).name == *comp => cur = p,
                    _ => {
                        ok = false;
                        break;
                    }
                }
            }
            if ok {
                if found.is_some() {
                    return Err(ResolveError::Ambiguous);
                }
                found = Some(i as NodeId);
            }
        }
        found.ok_or(ResolveError::NotFound)
    }

    /// Nodes of the subtree under `id` (pre-order, `id` first), each node's children in the
    /// order they were added: a container lists its children in its property table's order
    /// ([`hashorder`]), but devices, buses and back ends are realized, numbered and reported
    /// in creation order.
    pub fn walk(&self, id: NodeId) -> Vec<NodeId> {
        let mut out = Vec::new();
        let mut stack = vec![id];
        while let Some(n) = stack.pop() {
            out.push(n);
            let node = self.node(n);
            let from = stack.len();
            stack.extend(node.children.iter().rev());
            if node.table.is_some() {
                // Node ids grow with creation: newest first on the stack, oldest popped first.
                stack[from..].sort_unstable_by(|a, b| b.cmp(a));
            }
        }
        out
    }

    /// Whether a node is a device.
    pub fn is_device(&self, id: NodeId) -> bool {
        types::is_a(self.node(id).ty, "device")
    }

    /// Whether a node is a bus.
    pub fn is_bus(&self, id: NodeId) -> bool {
        types::is_a(self.node(id).ty, "bus")
    }
}

/// QOM state of a machine.
#[derive(Debug, Clone, Default)]
pub struct QomState {
    pub tree: Tree,
}

// ---------------------------------------------------------------------------
// Errors in QEMU's words.

pub(crate) fn err_not_found(path: &str) -> QmpError {
    QmpError::new(
        ErrorClass::DeviceNotFound,
        format!("Device '{path}' not found"),
    )
}

pub(crate) fn err_resolve(path: &str, e: ResolveError) -> QmpError {
    match e {
        ResolveError::NotFound => err_not_found(path),
        ResolveError::Ambiguous => QmpError::generic(format!("Path '{path}' is ambiguous")),
    }
}

/// QEMU 2.x printed no type name here; QEMU 6.0 and later do.
pub fn err_prop_not_found(modern: bool, ty: &str, prop: &str) -> QmpError {
    if modern {
        QmpError::generic(format!("Property '{ty}.{prop}' not found"))
    } else {
        QmpError::generic(format!("Property '.{prop}' not found"))
    }
}

pub(crate) fn err_permission() -> QmpError {
    QmpError::generic("Insufficient permission to perform this operation")
}

/// Writing a property that has no setter: QEMU 2.x refused without naming
/// it, QEMU 6.0 and later name it.
pub fn err_not_writable(modern: bool, ty: &str, prop: &str) -> QmpError {
    if modern {
        QmpError::generic(format!("Property '{ty}.{prop}' is not writable"))
    } else {
        err_permission()
    }
}

// ---------------------------------------------------------------------------
// Properties of a node, as qom-list sees them.

/// `(name, type)` of every property of `id`, in listing order.
pub fn list_props(tree: &Tree, id: NodeId) -> Vec<(String, String)> {
    let n = tree.node(id);
    let mut out: Vec<(String, String)> = vec![("type".into(), "string".into())];
    if tree.is_device(id) {
        out.push(("parent_bus".into(), "link<bus>".into()));
        out.push(("realized".into(), "bool".into()));
        out.push(("hotplugged".into(), "bool".into()));
        out.push(("hotpluggable".into(), "bool".into()));
    } else if tree.is_bus(id) {
        out.push(("realized".into(), "bool".into()));
        out.push(("hotplug-handler".into(), "link<hotplug-handler>".into()));
    }
    // Registry properties: the base types' first, like class properties.
    let chain: Vec<&TypeDef> = types::ancestry(n.ty).collect();
    for t in chain.iter().rev() {
        for p in t.props {
            if !out.iter().any(|(k, _)| k == p.name) {
                out.push((p.name.into(), p.ty.into()));
            }
        }
    }
    for l in &n.links {
        if !out.iter().any(|(k, _)| k == &*l.name) {
            out.push((l.name.to_string(), l.ty.to_string()));
        }
    }
    for &c in &n.children {
        let cn = tree.node(c);
        out.push((cn.name.to_string(), format!("child<{}>", cn.ty)));
    }
    out
}

/// Read property `prop` of node `id`.
/// Read property `prop` of node `id` (`modern`: answer as QEMU 6.0 and later do).
/// Properties that other subsystems own are theirs to answer first.
pub fn get_prop(tree: &Tree, modern: bool, id: NodeId, prop: &str) -> Result<QomValue, QmpError> {
    let n = tree.node(id);
    match prop {
        "type" => return Ok(n.ty.into()),
        "realized" if tree.is_device(id) || tree.is_bus(id) => {
            return Ok(tree
                .val(id, "realized")
                .cloned()
                .unwrap_or(QomValue::Bool(true)))
        }
        "hotplugged" if tree.is_device(id) => {
            return Ok(tree
                .val(id, "hotplugged")
                .cloned()
                .unwrap_or(QomValue::Bool(false)))
        }
        "hotpluggable" if tree.is_device(id) => return Ok(types::hotpluggable(n.ty).into()),
        "parent_bus" if tree.is_device(id) => {
            return Ok(tree
                .link(id, "parent_bus")
                .map(|l| l.target.to_string())
                .unwrap_or_default()
                .into())
        }
        "hotplug-handler" if tree.is_bus(id) => {
            // The PC's PCI bus is hot-plugged through the chipset's ACPI function.
            let handler = match n.ty {
                "PCI" => tree
                    .walk(Tree::ROOT)
                    .into_iter()
                    .find(|&x| tree.node(x).ty == "PIIX4_PM")
                    .map(|x| tree.path(x))
                    .unwrap_or_default(),
                _ => String::new(),
            };
            return Ok(handler.into());
        }
        _ => {}
    }
    if let Some(c) = tree.child(id, prop) {
        return Ok(tree.path(c).into());
    }
    if let Some(l) = tree.link(id, prop) {
        return Ok(l.target.to_string().into());
    }
    if types::is_a(n.ty, "x86_64-cpu") && matches!(prop, "feature-words" | "filtered-features") {
        return Ok(cpu_feature_words(prop == "filtered-features"));
    }
    if types::find_prop(n.ty, prop).is_none() {
        return Err(err_prop_not_found(modern, n.ty, prop));
    }
    Ok(match tree.prop_value(id, prop) {
        // Unset strings read as empty.
        None | Some(QomValue::Null) => QomValue::Str(String::new()),
        Some(v) => v,
    })
}

/// CPUID feature words of the modelled vCPU (a qemu64 model under KVM):
/// `(leaf, subleaf, register, bits)` in QEMU's feature-word order.
const FEATURE_WORDS: &[(u32, Option<u32>, &str, u64)] = &[
    (1, None, "EDX", 0x078b_fbfd),
    (1, None, "ECX", 0xf6fa_3203),
    (7, Some(0), "EBX", 0x0000_0000),
    (7, Some(0), "ECX", 0x0000_0000),
    (7, Some(0), "EDX", 0x0000_0000),
    (0x8000_0001, None, "EDX", 0x2010_0800),
    (0x8000_0001, None, "ECX", 0x0000_0001),
    (0x8000_0007, None, "EDX", 0x0000_0000),
    (0x8000_0008, None, "EBX", 0x0000_0000),
    (0xc000_0001, None, "EDX", 0x0000_0000),
    (0x4000_0001, None, "EAX", 0x0100_07fb),
    (0x4000_0001, None, "EDX", 0x0000_0000),
    (0x4000_0003, None, "EAX", 0x0000_0000),
    (0x4000_0003, None, "EBX", 0x0000_0000),
    (0x4000_0003, None, "EDX", 0x0000_0000),
    (0x8000_000a, None, "EDX", 0x0000_0000),
    (0xd, Some(1), "EAX", 0x0000_0000),
    (6, None, "EAX", 0x0000_0004),
    (0xd, Some(0), "EAX", 0x0000_0007),
    (0xd, Some(0), "EDX", 0x0000_0000),
];

/// `feature-words` (or, with `filtered`, `filtered-features`: nothing was
/// filtered out) of a vCPU.
pub fn cpu_feature_words(filtered: bool) -> QomValue {
    QomValue::List(
        FEATURE_WORDS
            .iter()
            .map(|&(eax, ecx, reg, bits)| {
                let mut o = vec![("cpuid-input-eax".to_string(), QomValue::from(eax))];
                if let Some(c) = ecx {
                    o.push(("cpuid-input-ecx".into(), c.into()));
                }
                o.push(("cpuid-register".into(), reg.into()));
                o.push(("features".into(), (if filtered { 0 } else { bits }).into()));
                QomValue::Dict(o)
            })
            .collect(),
    )
}

/// Check that `v` fits a property of QOM type `ty`; returns it as the tree keeps it.
pub fn check_value(prop: &str, ty: &str, v: &Value) -> Result<QomValue, QmpError> {
    let want = |what: &str| {
        QmpError::generic(format!(
            "Invalid parameter type for '{prop}', expected: {what}"
        ))
    };
    match ty {
        "bool" => v
            .as_bool()
            .map(QomValue::Bool)
            .ok_or_else(|| want("boolean")),
        "int" | "int8" | "int16" | "int32" | "int64" | "size" => {
            if v.is_i64() || v.is_u64() {
                Ok(QomValue::from_json(v))
            } else {
                Err(want("integer"))
            }
        }
        "uint8" | "uint16" | "uint32" | "uint64" => {
            if v.is_u64() {
                Ok(QomValue::from_json(v))
            } else if v.is_i64() {
                Err(QmpError::generic(format!(
                    "Parameter '{prop}' expects {ty}"
                )))
            } else {
                Err(want("integer"))
            }
        }
        "string" | "str" => v.as_str().map(QomValue::from).ok_or_else(|| want("string")),
        t if t.starts_with("link<") => v.as_str().map(QomValue::from).ok_or_else(|| want("string")),
        _ => {
            // Enumerations and structured types: take strings and objects.
            Ok(QomValue::from_json(v))
        }
    }
}

/// Write property `prop` of node `id` (`modern`: answer as QEMU 6.0 and later do).
/// Properties that other subsystems own are theirs to write first.
pub fn set_prop(
    tree: &mut Tree,
    modern: bool,
    id: NodeId,
    prop: &str,
    v: &Value,
) -> Result<(), QmpError> {
    let n = tree.node(id);
    let ty = n.ty;
    if prop == "type" || tree.child(id, prop).is_some() {
        return Err(err_not_writable(modern, ty, prop));
    }
    if tree.is_device(id) {
        match prop {
            "realized" => {
                let b = check_value(prop, "bool", v)?;
                tree.set_val(id, prop, b);
                return Ok(());
            }
            "hotplugged" | "hotpluggable" | "parent_bus" => {
                return Err(err_not_writable(modern, ty, prop))
            }
            _ => {}
        }
    } else if tree.is_bus(id) && (prop == "realized" || prop == "hotplug-handler") {
        return Err(err_not_writable(modern, ty, prop));
    }
    if tree.link(id, prop).is_some() {
        return Err(err_not_writable(modern, ty, prop));
    }
    let def = match types::find_prop(ty, prop) {
        Some(d) => d,
        None => return Err(err_prop_not_found(modern, ty, prop)),
    };
    if !def.dynamic {
        // qdev static properties: fixed once the device is realized.
        let dev_id = if tree.node(id).parent.map(|p| &*tree.node(p).name) == Some("peripheral") {
            Some(tree.node(id).name.to_string())
        } else {
            None
        };
        return Err(QmpError::generic(match dev_id {
            Some(d) => format!(
                "Attempt to set property '{prop}' on device '{d}' (type '{ty}') after it was realized"
            ),
            None => format!(
                "Attempt to set property '{prop}' on anonymous device (type '{ty}') after it was realized"
            ),
        }));
    }
    let nv = check_value(prop, def.ty, v)?;
    if types::is_a(ty, "memory-backend")
        && matches!(
            prop,
            "size" | "policy" | "host-nodes" | "share" | "mem-path" | "align"
        )
    {
        return Err(QmpError::generic("cannot change property value"));
    }
    if ty == "throttle-group" {
        return Err(QmpError::generic(
            "Property cannot be set after initialization",
        ));
    }
    if types::is_a(ty, "rng-backend") && matches!(prop, "filename" | "chardev") {
        return Err(err_permission());
    }
    let negative = nv.as_i64().map(|x| x < 0).unwrap_or(true);
    if ty == "iothread" && matches!(prop, "poll-max-ns" | "poll-grow" | "poll-shrink") && negative {
        return Err(QmpError::generic(format!(
            "{prop} value must be in range [0, {}]",
            i64::MAX
        )));
    }
    tree.set_val(id, prop, nv);
    Ok(())
}

/// Resolve a path for `qom-list`: an ambiguous partial path says so.
pub fn resolve_listed(tree: &Tree, path: &str) -> Result<NodeId, QmpError> {
    tree.resolve(path).map_err(|e| err_resolve(path, e))
}

/// `qom-get` and `qom-set` do not tell an ambiguous path from a missing one.
pub fn resolve_plain(tree: &Tree, path: &str) -> Result<NodeId, QmpError> {
    tree.resolve(path).map_err(|_| err_not_found(path))
}

/// `qom-list-types`: every type (non-abstract ones unless `abstract`),
/// optionally only those implementing `implements`.
pub fn list_types(implements: Option<&str>, abstract_too: bool) -> Vec<api::ObjectTypeInfo> {
    list_in(types::TYPES, types::is_a, implements, abstract_too)
}

/// `qom-list-types` of the storage daemon: its own types (see [`daemon`]).
pub fn list_daemon_types(implements: Option<&str>, abstract_too: bool) -> Vec<api::ObjectTypeInfo> {
    list_in(daemon::TYPES, daemon::is_a, implements, abstract_too)
}

fn list_in(
    table: &[types::TypeDef],
    is_a: fn(&str, &str) -> bool,
    implements: Option<&str>,
    abstract_too: bool,
) -> Vec<api::ObjectTypeInfo> {
    table
        .iter()
        .filter(|t| abstract_too || !t.is_abstract)
        .filter(|t| implements.map(|i| is_a(t.name, i)).unwrap_or(true))
        .map(|t| api::ObjectTypeInfo {
            name: t.name.into(),
            r#abstract: t.is_abstract.then_some(true),
            parent: t.parent.map(Into::into),
        })
        .collect()
}

fn class_not_found(name: &str) -> QmpError {
    QmpError::new(
        ErrorClass::DeviceNotFound,
        format!("Class '{name}' not found"),
    )
}

/// `device-list-properties`: the properties of a creatable device type.
pub fn device_properties(name: &str) -> Result<Vec<api::DevicePropertyInfo>, QmpError> {
    let Some(t) = types::find(name) else {
        return Err(class_not_found(name));
    };
    if !types::is_a(name, "device") {
        return Err(QmpError::generic("Parameter 'typename' expects device"));
    }
    if t.is_abstract {
        return Err(QmpError::generic(
            "Parameter 'typename' expects non-abstract device type",
        ));
    }
    Ok(types::all_props(name).map(device_property).collect())
}

fn device_property(p: &PropDef) -> api::DevicePropertyInfo {
    api::DevicePropertyInfo {
        name: p.name.into(),
        r#type: p.ty.into(),
        description: p.desc.map(Into::into),
        default_value: None,
    }
}

/// `qom-list-properties` (QEMU 2.12 and later): the properties of any type, `type` first.
pub fn type_properties(name: &str) -> Result<Vec<api::ObjectPropertyInfo>, QmpError> {
    if types::find(name).is_none() {
        return Err(class_not_found(name));
    }
    let mut out = vec![api::ObjectPropertyInfo {
        name: "type".into(),
        r#type: "string".into(),
        description: None,
        default_value: None,
    }];
    out.extend(types::all_props(name).map(|p| api::ObjectPropertyInfo {
        name: p.name.into(),
        r#type: p.ty.into(),
        description: p.desc.map(Into::into),
        default_value: None,
    }));
    Ok(out)
}
