//! [`StateDict`]: named tensors (PyTorch's `state_dict()`), and loading one
//! into a module with every mismatch reported.

use crate::module::{Entry, Module, Visitor};
use oar_tensor::{Error, ErrorKind, Result, Tensor};
use std::collections::HashMap;

/// Tensors by dotted name, in insertion order (a module's declaration order).
#[derive(Clone, Debug, Default)]
pub struct StateDict {
    entries: Vec<(String, Tensor)>,
    index: HashMap<String, usize>,
}

impl StateDict {
    pub fn new() -> Self {
        StateDict::default()
    }

    /// Adds or replaces `name`.
    pub fn insert(&mut self, name: impl Into<String>, tensor: Tensor) {
        let name = name.into();
        match self.index.get(&name) {
            Some(&i) => self.entries[i].1 = tensor,
            None => {
                self.index.insert(name.clone(), self.entries.len());
                self.entries.push((name, tensor));
            }
        }
    }

    pub fn get(&self, name: &str) -> Option<&Tensor> {
        self.index.get(name).map(|&i| &self.entries[i].1)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn keys(&self) -> Vec<&str> {
        self.entries.iter().map(|(k, _)| k.as_str()).collect()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &Tensor)> {
        self.entries.iter().map(|(k, t)| (k.as_str(), t))
    }

    /// The entries whose names start with `prefix.`, with the prefix removed
    /// (a sub-module's part of a larger state dict).
    pub fn strip_prefix(&self, prefix: &str) -> StateDict {
        let mut out = StateDict::new();
        let dotted = format!("{prefix}.");
        for (k, t) in &self.entries {
            if let Some(rest) = k.strip_prefix(&dotted) {
                out.insert(rest, t.clone());
            }
        }
        out
    }

    /// Every name prefixed with `prefix.`.
    pub fn with_prefix(&self, prefix: &str) -> StateDict {
        let mut out = StateDict::new();
        for (k, t) in &self.entries {
            out.insert(format!("{prefix}.{k}"), t.clone());
        }
        out
    }
}

impl FromIterator<(String, Tensor)> for StateDict {
    fn from_iter<I: IntoIterator<Item = (String, Tensor)>>(iter: I) -> Self {
        let mut sd = StateDict::new();
        for (k, t) in iter {
            sd.insert(k, t);
        }
        sd
    }
}

/// What [`Module::load_state_dict`] found besides the entries it loaded.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// Names the module has and the state dict lacks.
    pub missing: Vec<String>,
    /// Names the state dict has and the module lacks.
    pub unexpected: Vec<String>,
}

impl LoadReport {
    pub fn is_clean(&self) -> bool {
        self.missing.is_empty() && self.unexpected.is_empty()
    }
}

pub(crate) fn load_into<M: Module + ?Sized>(module: &M, state: &StateDict, strict: bool) -> Result<LoadReport> {
    // Check everything first, so a failed load changes nothing.
    let mut problems = Vec::new();
    let mut report = LoadReport::default();
    let mut seen = std::collections::HashSet::new();
    let mut plan: Vec<(Target, Tensor)> = Vec::new();
    module.visit(&mut Visitor::new(&mut |name, e| {
        seen.insert(name.to_string());
        let current = match e {
            Entry::Param(p) => p.get(),
            Entry::Buffer(b) => b.get(),
        };
        let Some(given) = state.get(name) else {
            report.missing.push(name.to_string());
            return;
        };
        if given.shape() != current.shape() {
            problems.push(format!(
                "{name}: shape {} in the state dict, {} in the model",
                given.shape(),
                current.shape()
            ));
        } else if given.dtype() != current.dtype() {
            problems.push(format!(
                "{name}: dtype {} in the state dict, {} in the model",
                given.dtype(),
                current.dtype()
            ));
        } else {
            let target = match e {
                Entry::Param(p) => Target::Param(p.clone()),
                Entry::Buffer(b) => Target::Buffer(b.clone()),
            };
            plan.push((target, given.clone()));
        }
    }));
    report.unexpected = state.keys().into_iter().filter(|k| !seen.contains(*k)).map(str::to_string).collect();
    if strict {
        problems.extend(report.missing.iter().map(|k| format!("{k}: missing from the state dict")));
        problems.extend(report.unexpected.iter().map(|k| format!("{k}: not in the model (unexpected key)")));
    }
    if !problems.is_empty() {
        return Err(Error::from(ErrorKind::StateDict {
            msg: format!("{} problem(s): {}", problems.len(), problems.join("; ")),
        }));
    }
    for (target, value) in plan {
        match target {
            Target::Param(p) => {
                let value = value.to_device(&p.device())?;
                p.set(&value)?
            }
            Target::Buffer(b) => {
                let value = value.to_device(b.get().device())?;
                b.set(&value)?
            }
        }
    }
    Ok(report)
}

enum Target {
    Param(crate::Param),
    Buffer(crate::Buffer),
}
