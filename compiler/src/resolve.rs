//! Name resolution: one namespace for sources, transforms and sinks; every
//! input exists; the nodes form a DAG. Produces the nodes in dependency order.

use std::collections::HashMap;
use std::ops::Range;

use crate::diag::{Diagnostic, Diags, did_you_mean};
use crate::spec::Spec;

/// What a name refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeRef {
    Source(usize),
    Transform(usize),
    /// Declared with errors (already reported): readers are skipped quietly.
    Broken,
}

/// The resolved graph: sources and transforms in an order where every node
/// comes after its inputs (declaration order where free), and sinks that are
/// known to read an existing node.
#[derive(Debug, Clone, Default)]
pub struct Graph {
    pub order: Vec<NodeRef>,
    pub sinks: Vec<usize>,
}

pub fn resolve(spec: &Spec) -> (Graph, Vec<Diagnostic>) {
    let mut d = Diags::default();
    let mut names: HashMap<String, (Range<usize>, Option<NodeRef>)> = HashMap::new();
    let mut declare = |name: &str, span: &Range<usize>, node: Option<NodeRef>, d: &mut Diags| {
        if let Some((first, _)) = names.get(name) {
            d.push(
                Diagnostic::error("kiln::duplicate-name", span.clone(), format!("`{name}` is defined twice"))
                    .label("second definition")
                    .related(first.clone(), "first defined here")
                    .help("sources, transforms and sinks share one namespace; rename one of them"),
            );
        } else {
            names.insert(name.to_string(), (span.clone(), node));
        }
    };
    for (i, s) in spec.sources.iter().enumerate() {
        declare(s.name.as_str(), &s.name.span, Some(NodeRef::Source(i)), &mut d);
    }
    for (i, t) in spec.transforms.iter().enumerate() {
        declare(t.name.as_str(), &t.name.span, Some(NodeRef::Transform(i)), &mut d);
    }
    for s in &spec.sinks {
        declare(s.name.as_str(), &s.name.span, None, &mut d);
    }
    for b in &spec.broken {
        declare(b.as_str(), &b.span, Some(NodeRef::Broken), &mut d);
    }
    let node_names: Vec<&str> = spec
        .sources
        .iter()
        .map(|s| s.name.as_str())
        .chain(spec.transforms.iter().map(|t| t.name.as_str()))
        .collect();
    // `NAME.quarantine` of an `expect` transform reads as that transform (same place in the order).
    let quarantine_of = |name: &str| -> Option<NodeRef> {
        let base = name.strip_suffix(".quarantine")?;
        match names.get(base) {
            Some((_, Some(NodeRef::Transform(i)))) if spec.transforms[*i].kind.as_str() == "expect" => Some(NodeRef::Transform(*i)),
            _ => None,
        }
    };
    let lookup = |name: &str, span: &Range<usize>, d: &mut Diags| -> Option<NodeRef> {
        if let Some(node) = quarantine_of(name) {
            return Some(node);
        }
        match names.get(name) {
            Some((_, Some(node))) => Some(*node),
            Some((def, None)) => {
                d.push(
                    Diagnostic::error("kiln::input-is-sink", span.clone(), format!("`{name}` is a sink; sinks cannot be read"))
                        .label("not a source or transform")
                        .related(def.clone(), "defined as a sink here"),
                );
                None
            }
            None => {
                let mut diag = Diagnostic::error("kiln::unknown-input", span.clone(), format!("unknown input `{name}`"))
                    .label("no source or transform has this name");
                diag = match did_you_mean(name, node_names.iter().copied()) {
                    Some(h) => diag.help(h),
                    None => diag.help(format!("defined nodes: {}", node_names.join(", "))),
                };
                d.push(diag);
                None
            }
        }
    };

    // Edges: each transform's inputs (missing inputs are reported, not followed).
    let input_of: Vec<Vec<Option<NodeRef>>> = spec
        .transforms
        .iter()
        .map(|t| t.inputs.iter().map(|i| lookup(i.as_str(), &i.span, &mut d)).collect())
        .collect();
    let sinks: Vec<usize> = spec
        .sinks
        .iter()
        .enumerate()
        .filter_map(|(i, s)| lookup(s.input.as_str(), &s.input.span, &mut d).filter(|n| *n != NodeRef::Broken).map(|_| i))
        .collect();

    // Depth-first topological order; a back edge is a cycle, reported with its path.
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Active,
        Done,
    }
    let mut marks = vec![Mark::New; spec.transforms.len()];
    let mut order: Vec<NodeRef> = (0..spec.sources.len()).map(NodeRef::Source).collect();
    let mut reported_cycle = false;
    for start in 0..spec.transforms.len() {
        let mut stack: Vec<usize> = vec![start];
        while let Some(&top) = stack.last() {
            if marks[top] == Mark::Done {
                stack.pop();
                continue;
            }
            marks[top] = Mark::Active;
            // The first input not finished yet; none left: `top` is done.
            let pending = input_of[top].iter().enumerate().find_map(|(k, n)| match n {
                Some(NodeRef::Transform(next)) if marks[*next] != Mark::Done => Some((k, *next)),
                _ => None,
            });
            let Some((edge, next)) = pending else {
                marks[top] = Mark::Done;
                order.push(NodeRef::Transform(top));
                stack.pop();
                continue;
            };
            {
                match marks[next] {
                    Mark::New => stack.push(next),
                    Mark::Active => {
                        // `next` is on the stack: the cycle is the stack from `next` on.
                        let from = stack.iter().rposition(|&n| n == next).unwrap_or(0);
                        let cycle: Vec<usize> = stack[from..].to_vec();
                        if !reported_cycle {
                            let mut path: Vec<&str> = cycle.iter().rev().map(|&n| spec.transforms[n].name.as_str()).collect();
                            // Data flows against the `input` edges: show it in flow order, closing the ring.
                            path.push(path[0]);
                            let closing = &spec.transforms[top].inputs[edge];
                            let mut diag = Diagnostic::error("kiln::cycle", closing.span.clone(), format!("cycle: {}", path.join(" → ")))
                                .label("this input closes the cycle");
                            for w in stack[from..].windows(2) {
                                let (reader, read) = (&spec.transforms[w[0]], &spec.transforms[w[1]]);
                                if let Some(i) = reader.inputs.iter().find(|i| i.value == read.name.value) {
                                    diag = diag.related(i.span.clone(), format!("`{}` reads `{}`", reader.name.value, i.value));
                                }
                            }
                            d.push(diag.help("a pipeline is a DAG: some node of the cycle must read a source or another transform"));
                            reported_cycle = true;
                        }
                        // Break the cycle: finish the nodes on it without following further.
                        for &n in &cycle {
                            if marks[n] == Mark::Active {
                                marks[n] = Mark::Done;
                            }
                        }
                        stack.truncate(from);
                    }
                    Mark::Done => {}
                }
            }
        }
    }
    if reported_cycle {
        return (Graph { order: Vec::new(), sinks: Vec::new() }, d.0);
    }
    for (i, inputs) in input_of.iter().enumerate() {
        if inputs.iter().any(|n| matches!(n, None | Some(NodeRef::Broken))) {
            // Input missing or a sink: already reported; keep the node out of planning.
            order.retain(|n| *n != NodeRef::Transform(i));
        }
    }
    (Graph { order, sinks }, d.0)
}
