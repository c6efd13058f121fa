//! What the shell knows about the server's interface, from its `query-qmp-schema` answer
//! loaded into the checked model: command names, argument members (nested, union branches once
//! the discriminator is typed), enum values, one-line signatures; and which arguments take live
//! values (node names, job ids, chardev ids, QOM paths), fetched from the server when completing.

use crate::qmp_syntax;
use qmpkit_schema::model::{EntityId, EntityKind};
use qmpkit_schema::Schema;
use serde_json::{Map, Value};

/// Deepest type nesting walked (schemas are acyclic through objects only by convention).
const MAX_WALK: usize = 32;

/// Where live values come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Live {
    NodeName,
    JobId,
    ChardevId,
    QomPath,
    QomProperty,
    /// Ids of devices the user created (`/machine/peripheral`).
    DeviceId,
    /// Ids of user-created objects (`/objects`).
    ObjectId,
}

/// The interface of one server.
pub struct Model {
    pub schema: Schema,
    commands: Vec<String>,
}

impl Model {
    pub fn new(schema: Schema) -> Model {
        let mut commands: Vec<String> = schema
            .iter()
            .filter(|(_, e)| matches!(e.kind, EntityKind::Command(_)))
            .map(|(_, e)| e.name.to_string())
            .collect();
        commands.sort();
        Model { schema, commands }
    }

    pub fn commands(&self) -> &[String] {
        &self.commands
    }

    fn command_args(&self, name: &str) -> Option<EntityId> {
        let id = self.schema.lookup(name)?;
        match &self.schema.entity(id).kind {
            EntityKind::Command(c) => c.arg_type,
            _ => None,
        }
    }

    /// The object type behind `id` (an alternate's object alternative).
    fn object_of(&self, id: EntityId) -> Option<EntityId> {
        match &self.schema.entity(id).kind {
            EntityKind::Object(_) => Some(id),
            EntityKind::Alternate(a) => a
                .variants
                .iter()
                .find(|v| matches!(self.schema.entity(v.typ).kind, EntityKind::Object(_)))
                .map(|v| v.typ),
            _ => None,
        }
    }

    /// Members of object `id`, with the branch chosen by the discriminator value in `typed`.
    fn members(
        &self,
        id: EntityId,
        typed: Option<&Map<String, Value>>,
    ) -> Vec<(String, EntityId, bool)> {
        self.members_walk(id, typed, 0)
    }

    fn members_walk(
        &self,
        id: EntityId,
        typed: Option<&Map<String, Value>>,
        depth: usize,
    ) -> Vec<(String, EntityId, bool)> {
        let mut out = Vec::new();
        if depth > MAX_WALK {
            return out;
        }
        let EntityKind::Object(o) = &self.schema.entity(id).kind else {
            return out;
        };
        for m in self.schema.object_members(id) {
            out.push((m.name.to_string(), m.typ, m.optional));
        }
        if let (Some(b), Some(typed)) = (&o.branches, typed) {
            if let Some(Value::String(tag)) = typed.get(b.tag_name.as_str()) {
                if let Some(v) = b.variants.iter().find(|v| &v.name == tag) {
                    for m in self.members_walk(v.typ, Some(typed), depth + 1) {
                        if !out.iter().any(|x| x.0 == m.0) {
                            out.push(m);
                        }
                    }
                }
            }
        }
        out
    }

    /// The type at dotted `path` under object `id`.
    fn walk(
        &self,
        mut id: EntityId,
        path: &[&str],
        typed: &Map<String, Value>,
    ) -> Option<EntityId> {
        let mut here = Some(typed);
        for p in path {
            let obj = self.object_of(id)?;
            let (_, t, _) = self.members(obj, here).into_iter().find(|m| m.0 == *p)?;
            here = here.and_then(|h| h.get(*p)).and_then(Value::as_object);
            id = t;
        }
        Some(id)
    }

    /// Enum values (or `true`/`false`) a value of type `id` may take.
    fn values_of(&self, id: EntityId) -> Vec<String> {
        match &self.schema.entity(id).kind {
            EntityKind::Enum(e) => e.members.iter().map(|m| m.name.to_string()).collect(),
            EntityKind::Builtin(b) if b.json_type == "boolean" => {
                vec!["true".into(), "false".into()]
            }
            EntityKind::Alternate(a) => {
                let mut v = Vec::new();
                for x in &a.variants {
                    v.extend(self.values_of(x.typ));
                }
                v
            }
            _ => Vec::new(),
        }
    }

    /// A short rendering of a type for signatures.
    pub fn type_text(&self, id: EntityId, depth: usize) -> String {
        let e = self.schema.entity(id);
        match &e.kind {
            EntityKind::Builtin(_) => e.name.to_string(),
            EntityKind::Enum(en) => {
                let names: Vec<&str> = en.members.iter().map(|m| m.name.as_str()).collect();
                if names.len() <= 6 {
                    names.join("|")
                } else {
                    format!("{}|…", names[..5].join("|"))
                }
            }
            EntityKind::Array(a) if depth < 3 => {
                format!("[{}]", self.type_text(a.element, depth + 1))
            }
            EntityKind::Array(_) => "[…]".into(),
            EntityKind::Alternate(a) if depth < 3 => a
                .variants
                .iter()
                .map(|v| self.type_text(v.typ, depth + 1))
                .collect::<Vec<_>>()
                .join(" or "),
            EntityKind::Object(_) | EntityKind::Alternate(_) => "{…}".into(),
            _ => e.name.to_string(),
        }
    }

    /// `name member: type, member?: type… -> returns`, or `None` for an unknown command.
    pub fn signature(&self, name: &str) -> Option<String> {
        let id = self.schema.lookup(name)?;
        let EntityKind::Command(c) = &self.schema.entity(id).kind else {
            return None;
        };
        let mut s = name.to_string();
        if let Some(a) = c.arg_type {
            let mut parts = Vec::new();
            for (m, t, opt) in self.members(a, None) {
                parts.push(format!(
                    "{m}{}: {}",
                    if opt { "?" } else { "" },
                    self.type_text(t, 0)
                ));
            }
            if let EntityKind::Object(o) = &self.schema.entity(a).kind {
                if let Some(b) = &o.branches {
                    parts.push(format!("(more members by {})", b.tag_name));
                }
            }
            if !parts.is_empty() {
                s.push(' ');
                s.push_str(&parts.join(", "));
            }
        }
        if let Some(r) = c.ret_type {
            s.push_str(" -> ");
            s.push_str(&self.type_text(r, 0));
        }
        Some(s)
    }
}

/// Where live values are wanted for member `key` of `command`.
pub fn live_kind(command: &str, key: &str) -> Option<Live> {
    let last = key.rsplit('.').next().unwrap_or(key);
    if command.starts_with("qom-") {
        return match last {
            "path" => Some(Live::QomPath),
            "property" => Some(Live::QomProperty),
            _ => None,
        };
    }
    if last == "id" {
        let tray_or_medium = command.starts_with("blockdev-")
            && (command.ends_with("-tray") || command.ends_with("-medium"));
        if command == "device_del" || tray_or_medium {
            return Some(Live::DeviceId);
        }
        if command == "object-del" {
            return Some(Live::ObjectId);
        }
    }
    if command.starts_with("chardev-") && last == "id" || last == "chardev" {
        return Some(Live::ChardevId);
    }
    if (command.starts_with("job-") || command.starts_with("block-job-"))
        && (last == "id" || last == "device")
    {
        return Some(Live::JobId);
    }
    match last {
        "node-name" | "node" | "device" | "target" | "base" | "top" | "base-node" | "top-node"
        | "overlay" | "backing" | "file" | "image-node-name" | "reference" | "node-names" => {
            Some(Live::NodeName)
        }
        "job-id" => Some(Live::JobId),
        _ => None,
    }
}

/// What is being completed.
#[derive(Debug, PartialEq)]
pub enum Want {
    /// Candidates to offer, replacing the text from the byte offset.
    Words(usize, Vec<String>),
    /// Live values of this kind (filtered by the prefix), replacing from the offset; `QomPath`
    /// and `QomProperty` carry the path typed so far.
    Live(usize, Live, String, String),
}

/// What to offer for `line` up to the cursor.
pub fn complete(model: &Model, line: &str, in_transaction: bool) -> Want {
    let start = line
        .char_indices()
        .rev()
        .find(|(_, c)| c.is_whitespace())
        .map(|(i, c)| i + c.len_utf8())
        .unwrap_or(0);
    let word = &line[start..];
    let before: Vec<&str> = line[..start].split_whitespace().collect();
    let filter = |cands: Vec<String>, prefix: &str| -> Vec<String> {
        cands
            .into_iter()
            .filter(|c| c.starts_with(prefix))
            .collect()
    };
    let Some(first) = before.first().copied() else {
        let mut c: Vec<String> = model.commands().to_vec();
        if !in_transaction {
            c.extend(["help".to_string(), "transaction(".to_string()]);
        }
        return Want::Words(start, filter(c, word));
    };
    let (command, args): (&str, &[&str]) = if first == "transaction(" {
        match before.get(1) {
            Some(c) => (c, &before[2..]),
            None => return Want::Words(start, filter(transaction_actions(model), word)),
        }
    } else {
        (first, &before[1..])
    };
    if command == "help" {
        return Want::Words(start, filter(model.commands().to_vec(), word));
    }
    // Action types inside a transaction use the action's data members.
    let arg_type = if in_transaction || first == "transaction(" {
        transaction_data(model, command)
    } else {
        model.command_args(command)
    };
    let Some(arg_type) = arg_type else {
        return Want::Words(start, Vec::new());
    };
    // What was typed so far (for discriminators); words that don't parse are ignored.
    let mut typed = Map::new();
    for w in args {
        if let Some((k, v)) = w.split_once('=') {
            if let Ok(v) = qmp_syntax::parse_value(v) {
                let _ = qmp_syntax::insert_path(&mut typed, k, v);
            }
        }
    }
    if let Some((key, prefix)) = word.split_once('=') {
        let vstart = start + key.len() + 1;
        let path: Vec<&str> = key.split('.').collect();
        if let Some(live) = live_kind(command, key) {
            let qom_path = typed
                .get("path")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let hint = if live == Live::QomProperty {
                qom_path
            } else {
                String::new()
            };
            // Enum-typed members still take their values from the schema.
            let enum_vals = model
                .walk(arg_type, &path, &typed)
                .map(|t| model.values_of(t))
                .unwrap_or_default();
            if enum_vals.is_empty() {
                return Want::Live(vstart, live, prefix.to_string(), hint);
            }
        }
        let vals = model
            .walk(arg_type, &path, &typed)
            .map(|t| model.values_of(t))
            .unwrap_or_default();
        return Want::Words(vstart, filter(vals, prefix));
    }
    // A member name, possibly dotted.
    let (parent, leaf) = match word.rfind('.') {
        Some(i) => (&word[..i], &word[i + 1..]),
        None => ("", word),
    };
    let ppath: Vec<&str> = if parent.is_empty() {
        Vec::new()
    } else {
        parent.split('.').collect()
    };
    let Some(pt) = model.walk(arg_type, &ppath, &typed) else {
        return Want::Words(start, Vec::new());
    };
    let Some(obj) = model.object_of(pt) else {
        return Want::Words(start, Vec::new());
    };
    let mut here = Some(&typed);
    for p in &ppath {
        here = here.and_then(|h| h.get(*p)).and_then(Value::as_object);
    }
    let mut out = Vec::new();
    for (name, t, _) in model.members(obj, here) {
        if !name.starts_with(leaf) || here.is_some_and(|h| h.contains_key(&name)) {
            continue;
        }
        let full = if parent.is_empty() {
            name.clone()
        } else {
            format!("{parent}.{name}")
        };
        if model.object_of(t).is_some() && model.values_of(t).is_empty() {
            out.push(format!("{full}."));
        }
        out.push(format!("{full}="));
    }
    Want::Words(start, out)
}

/// The action types a `transaction` takes.
fn transaction_actions(model: &Model) -> Vec<String> {
    let Some(t) = action_union(model) else {
        return Vec::new();
    };
    match &model.schema.entity(t).kind {
        EntityKind::Object(o) => o
            .branches
            .as_ref()
            .map(|b| b.variants.iter().map(|v| v.name.to_string()).collect())
            .unwrap_or_default(),
        _ => Vec::new(),
    }
}

/// `transaction`'s `actions` element type.
fn action_union(model: &Model) -> Option<EntityId> {
    let args = model.command_args("transaction")?;
    let (_, arr, _) = model
        .members(args, None)
        .into_iter()
        .find(|m| m.0 == "actions")?;
    match &model.schema.entity(arr).kind {
        EntityKind::Array(a) => Some(a.element),
        _ => None,
    }
}

/// The `data` type of transaction action `action`.
fn transaction_data(model: &Model, action: &str) -> Option<EntityId> {
    let u = action_union(model)?;
    let EntityKind::Object(o) = &model.schema.entity(u).kind else {
        return None;
    };
    let v = o
        .branches
        .as_ref()?
        .variants
        .iter()
        .find(|v| v.name == action)?;
    // The branch is a wrapper `{data: T}` (simple-union style) or T itself.
    let data = model
        .members(v.typ, None)
        .into_iter()
        .find(|m| m.0 == "data");
    Some(data.map(|d| d.1).unwrap_or(v.typ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model() -> Model {
        Model::new(qmpkit_machine::embedded::load_schema().expect("schema"))
    }

    fn words(w: Want) -> Vec<String> {
        match w {
            Want::Words(_, w) => w,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn commands_members_branches_and_enums() {
        let m = model();
        assert_eq!(words(complete(&m, "query-stat", false)), ["query-status"]);
        assert_eq!(
            words(complete(&m, "blockdev-backup dev", false)),
            ["device="]
        );
        assert_eq!(
            words(complete(&m, "blockdev-backup device=x sync=f", false)),
            ["full"]
        );
        // A union's branch members appear once its discriminator is typed.
        assert!(words(complete(&m, "blockdev-add lat", false)).is_empty());
        assert_eq!(
            words(complete(&m, "blockdev-add driver=null-co lat", false)),
            ["latency-ns="]
        );
        assert!(words(complete(&m, "blockdev-add driver=qcow2 fi", false))
            .contains(&"file.".to_string()));
        assert!(words(complete(
            &m,
            "blockdev-add driver=qcow2 file.driver=file file.fil",
            false
        ))
        .contains(&"file.filename=".to_string()));
        assert_eq!(
            words(complete(&m, "help query-stat", false)),
            ["query-status"]
        );
        assert_eq!(
            complete(&m, "qom-get path=/mach", false),
            Want::Live(13, Live::QomPath, "/mach".into(), String::new())
        );
        assert!(matches!(
            complete(&m, "blockdev-backup device=ide", false),
            Want::Live(23, Live::NodeName, _, _)
        ));
        for (cmd, key, kind) in [
            ("device_del", "id", Some(Live::DeviceId)),
            ("blockdev-open-tray", "id", Some(Live::DeviceId)),
            ("blockdev-change-medium", "id", Some(Live::DeviceId)),
            ("object-del", "id", Some(Live::ObjectId)),
            ("chardev-remove", "id", Some(Live::ChardevId)),
            ("job-cancel", "id", Some(Live::JobId)),
            ("blockdev-add", "id", None),
        ] {
            assert_eq!(live_kind(cmd, key), kind, "{cmd} {key}");
        }
        // Inside a transaction: the action names, then the action's members.
        assert!(
            words(complete(&m, "transaction( block-dirty-bitmap-a", false))
                .contains(&"block-dirty-bitmap-add".to_string())
        );
        assert!(
            words(complete(&m, "block-dirty-bitmap-add na", true)).contains(&"name=".to_string())
        );
    }

    #[test]
    fn odd_input_does_not_panic() {
        let m = model();
        for line in [
            "",
            " ",
            "\u{3000}",
            "blockdev-add\u{3000}dri",
            "blockdev-add driver=null-co\u{3000}la",
            "qom-get path=\u{e9}/\u{e9}",
            "x.y.z",
            "blockdev-add ..=",
            "blockdev-add a..b.",
            "=",
            "transaction(",
            "transaction( nope x",
            "help",
            "blockdev-add file.file.file.file.",
            "blockdev-add driver={'x': [",
            "'\"",
            "blockdev-backup sync=\u{1F600}",
        ] {
            let _ = complete(&m, line, false);
            let _ = complete(&m, line, true);
        }
    }

    #[test]
    fn signatures() {
        let m = model();
        let s = m.signature("blockdev-backup").expect("signature");
        assert!(s.starts_with("blockdev-backup job-id?: str, device: str, target: str, sync: top|full|none|incremental"), "{s}");
        assert_eq!(m.signature("nope"), None);
    }
}
