//! The binary's modules: shared objects that register QOM types (and command-line options)
//! only once loaded. A fresh process has none loaded; a look-up of a type by name that a
//! module declares loads that module and the modules it needs; `qom-list-types` loads them
//! all; an option a module registers, given on the command line, loads that module. Until
//! its module is loaded, a module's type is not found and its option not listed.

use std::collections::{BTreeMap, BTreeSet, HashMap};

/// One module, as `modules.json` records it.
#[derive(serde::Deserialize)]
struct Row {
    /// The modules loading this one loads too (their own dependencies included).
    #[serde(default)]
    deps: Vec<String>,
    /// Every type the module registers.
    #[serde(default)]
    types: Vec<String>,
    /// The types whose look-up by name loads the module.
    #[serde(default)]
    lookup: Vec<String>,
    /// The command-line options it registers.
    #[serde(default)]
    options: Vec<String>,
    /// Types of its whose instances need more modules (for their parts), and those.
    #[serde(default)]
    instances: BTreeMap<String, Vec<String>>,
}

/// The modules of a binary.
#[derive(Default)]
pub struct Modules {
    names: Vec<String>,
    /// Each module's dependencies, itself included.
    closure: Vec<Vec<usize>>,
    /// The module registering each module type.
    type_owner: HashMap<String, usize>,
    /// The module a look-up of each type loads.
    lookup: HashMap<String, usize>,
    /// The module registering each option.
    option_owner: HashMap<String, usize>,
    /// The modules an instance of a type needs beyond its own.
    instance: HashMap<String, Vec<usize>>,
}

/// The modules a machine has loaded (a fresh process: none).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Loaded(BTreeSet<usize>);

impl Modules {
    pub fn parse(text: &str) -> Modules {
        let rows: BTreeMap<String, Row> = serde_json::from_str(text).unwrap_or_default();
        let names: Vec<String> = rows.keys().cloned().collect();
        let index = |n: &str| names.iter().position(|x| x == n);
        let mut m = Modules::default();
        for (i, row) in rows.values().enumerate() {
            let mut closure: Vec<usize> = row.deps.iter().filter_map(|d| index(d)).collect();
            closure.push(i);
            m.closure.push(closure);
            m.type_owner
                .extend(row.types.iter().map(|t| (t.clone(), i)));
            m.lookup.extend(row.lookup.iter().map(|t| (t.clone(), i)));
            m.option_owner
                .extend(row.options.iter().map(|o| (o.clone(), i)));
            for (t, needs) in &row.instances {
                let needs = needs.iter().filter_map(|d| index(d)).collect();
                m.instance.insert(t.clone(), needs);
            }
        }
        m.names = names;
        m
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// The names of the modules `loaded` holds, in name order.
    pub fn names<'a>(&'a self, loaded: &'a Loaded) -> impl Iterator<Item = &'a str> + 'a {
        loaded.0.iter().map(|&i| self.names[i].as_str())
    }

    fn load(&self, loaded: &mut Loaded, module: usize) {
        loaded.0.extend(self.closure[module].iter().copied());
    }

    /// Whether type `name` is registered: built in, or its module is loaded.
    pub fn registered(&self, loaded: &Loaded, name: &str) -> bool {
        self.type_owner
            .get(name)
            .is_none_or(|m| loaded.0.contains(m))
    }

    /// A look-up of type `name` by name: a module type not yet registered that a module
    /// declares loads that module.
    pub fn look_up(&self, loaded: &mut Loaded, name: &str) {
        if !self.registered(loaded, name) {
            if let Some(&m) = self.lookup.get(name) {
                self.load(loaded, m);
            }
        }
    }

    /// An instance of type `name` made (its properties listed, a device or object
    /// created): the modules its parts need load.
    pub fn instantiate(&self, loaded: &mut Loaded, name: &str) {
        for &m in self.instance.get(name).into_iter().flatten() {
            self.load(loaded, m);
        }
    }

    /// What `qom-list-types` does first: load every module.
    pub fn load_all(&self, loaded: &mut Loaded) {
        loaded.0.extend(0..self.names.len());
    }

    /// Option `name` given on the command line: the module registering it loads.
    pub fn use_option(&self, loaded: &mut Loaded, name: &str) {
        if let Some(&m) = self.option_owner.get(name) {
            self.load(loaded, m);
        }
    }

    /// Whether `query-command-line-options` lists option `name`.
    pub fn option_listed(&self, loaded: &Loaded, name: &str) -> bool {
        self.option_owner
            .get(name)
            .is_none_or(|m| loaded.0.contains(m))
    }
}
