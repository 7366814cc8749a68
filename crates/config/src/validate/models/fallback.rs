//! Fallback cycles: `a` falls back to `b`, which falls back to `a`, would
//! loop until the request budget ran out, so a cycle is a load error.

use std::collections::{HashMap, HashSet};

use crate::error::KeyPath;
use crate::schema::ModelConfig;
use crate::validate::Checker;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Visit {
    InProgress,
    Done,
}

/// Depth-first search state over the fallback graph.
struct Search<'a> {
    graph: HashMap<&'a str, &'a [String]>,
    visits: HashMap<&'a str, Visit>,
    stack: Vec<&'a str>,
    cycles: Vec<Vec<&'a str>>,
}

// === impl Checker ===

impl Checker {
    /// Records one problem per fallback cycle, at the `fallback` key of the
    /// cycle's first model in file order: `fallback cycle: a -> b -> a`.
    pub(in crate::validate) fn check_fallback_cycles(&mut self, models: &[ModelConfig]) {
        let mut search = Search {
            graph: models
                .iter()
                .map(|model| (model.name.as_str(), model.fallback.as_slice()))
                .collect(),
            visits: HashMap::new(),
            stack: Vec::new(),
            cycles: Vec::new(),
        };
        for model in models {
            search.visit(&model.name);
        }
        let file_order: HashMap<&str, usize> = models
            .iter()
            .enumerate()
            .map(|(index, model)| (model.name.as_str(), index))
            .collect();
        let mut reported: HashSet<Vec<&str>> = HashSet::new();
        for mut cycle in search.cycles {
            let Some(start) =
                (0..cycle.len()).min_by_key(|&position| file_order.get(cycle[position]))
            else {
                continue;
            };
            cycle.rotate_left(start);
            let mut members = cycle.clone();
            members.sort_unstable();
            if !reported.insert(members) {
                continue;
            }
            let mut names = cycle.clone();
            names.push(cycle[0]);
            let path = KeyPath::root().key("models").key(cycle[0]).key("fallback");
            self.problems
                .push(&path, format!("fallback cycle: {}", names.join(" -> ")));
        }
    }
}

// === impl Search ===

impl<'a> Search<'a> {
    fn visit(&mut self, name: &'a str) {
        match self.visits.get(name) {
            Some(Visit::Done) => return,
            Some(Visit::InProgress) => {
                if let Some(position) = self.stack.iter().position(|&on_stack| on_stack == name) {
                    self.cycles.push(self.stack[position..].to_vec());
                }
                return;
            }
            None => {}
        }
        self.visits.insert(name, Visit::InProgress);
        self.stack.push(name);
        let next: &'a [String] = self.graph.get(name).copied().unwrap_or_default();
        for fallback in next {
            self.visit(fallback);
        }
        self.stack.pop();
        self.visits.insert(name, Visit::Done);
    }
}
