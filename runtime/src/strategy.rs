//! Join strategy selection (SPEC.md §4.1), done by the binary when it starts,
//! from [`crate::stats`] estimates of the data it is about to read (and by
//! `kiln check`/`kiln explain` on the spec's default data). A join left on
//! `auto` gets
//! - `broadcast` of the smaller side that may be broadcast (the side whose
//!   unmatched rows the join does not keep: either for inner, the right for
//!   left/semi/anti, the left for right, none for full) when it is under
//!   `broadcast_threshold` (default 10 MB, as Spark);
//! - `sort_merge` when `memory_limit` could not hold a hash table of the
//!   smaller side (sort-merge spills where a hash join would fail);
//! - `shuffle` otherwise.
//!
//! Hints are obeyed; a broadcast of a side estimated far over the threshold
//! comes back as a warning with the estimate.

use std::collections::HashMap;

use crate::plan::{JoinHow, JoinStrategy, Op, Pipeline, Side};
use crate::stats::{Estimate, bytes};

/// Spark's `autoBroadcastJoinThreshold`.
pub const DEFAULT_BROADCAST_THRESHOLD: u64 = 10 * 1024 * 1024;

/// A hash table costs about this many times the rows' size.
const HASH_TABLE_OVERHEAD: f64 = 3.0;

/// What was decided, per join, and what `explain` says per node.
#[derive(Debug, Clone, Default)]
pub struct Choices {
    pub strategies: HashMap<String, JoinStrategy>,
    /// (node, line) in node order: estimates and join choices with their reasons.
    pub notes: Vec<(String, String)>,
    /// (node, message): hints that look wrong.
    pub warnings: Vec<(String, String)>,
}

pub fn choose(pipeline: &Pipeline, estimates: &HashMap<String, (Estimate, String)>, memory_limit: Option<u64>) -> Choices {
    let threshold = pipeline.runtime.broadcast_threshold.unwrap_or(DEFAULT_BROADCAST_THRESHOLD) as f64;
    let memory = memory_limit.or(pipeline.runtime.memory_limit).map(|m| m as f64);
    let mut out = Choices::default();
    for node in &pipeline.nodes {
        if let Some((e, from)) = estimates.get(&node.name) {
            let text = if e.rows.is_nan() { format!("estimate: {from}") } else if from.is_empty() { format!("estimate: {e}") } else { format!("estimate: {e} ({from})") };
            out.notes.push((node.name.clone(), text));
        }
        let Op::Join { left, right, how, strategy, salt, .. } = &node.op else { continue };
        // Declared or detected hot keys make an `auto` join salted.
        if *strategy == JoinStrategy::Auto && salt.as_ref().is_some_and(|s| !s.hot_keys.is_empty() || s.detect) {
            out.strategies.insert(node.name.clone(), JoinStrategy::Salted);
            out.notes.push((node.name.clone(), "join strategy: salted: hot keys are declared or detected".into()));
            continue;
        }
        let known = |n: &str| estimates.get(n).map(|(e, _)| *e).filter(|e| !e.bytes.is_nan());
        let (le, re) = (known(left), known(right));
        let allowed: &[Side] = match how {
            JoinHow::Inner | JoinHow::Cross => &[Side::Left, Side::Right],
            JoinHow::Left | JoinHow::Semi | JoinHow::Anti => &[Side::Right],
            JoinHow::Right => &[Side::Left],
            JoinHow::Full => &[],
        };
        let side_name = |s: Side| if s == Side::Left { left.as_str() } else { right.as_str() };
        let side_est = |s: Side| if s == Side::Left { le } else { re };
        let (chosen, reason) = match *strategy {
            JoinStrategy::Auto => {
                let candidate = allowed
                    .iter()
                    .filter_map(|&s| side_est(s).map(|e| (s, e)))
                    .filter(|(_, e)| e.bytes <= threshold)
                    .min_by(|a, b| a.1.bytes.total_cmp(&b.1.bytes));
                let smaller = [le, re].into_iter().flatten().map(|e| e.bytes).fold(f64::INFINITY, f64::min);
                match (candidate, le, re) {
                    (Some((side, e)), _, _) => (
                        JoinStrategy::Broadcast { side },
                        format!("broadcast `{}` ({}, under broadcast_threshold {})", side_name(side), bytes(e.bytes), bytes(threshold)),
                    ),
                    (None, Some(_), Some(_)) if memory.is_some_and(|m| smaller * HASH_TABLE_OVERHEAD > m) => (
                        JoinStrategy::SortMerge,
                        format!(
                            "sort-merge: a hash table of the smaller side ({}) would not fit memory_limit {}; sort-merge spills",
                            bytes(smaller),
                            bytes(memory.unwrap_or_default())
                        ),
                    ),
                    (None, Some(_), Some(_)) if allowed.is_empty() => (JoinStrategy::Shuffle, "shuffle: a full join cannot broadcast either side".into()),
                    (None, Some(_), Some(_)) => (
                        JoinStrategy::Shuffle,
                        format!("shuffle: no side that may be broadcast is under broadcast_threshold {}", bytes(threshold)),
                    ),
                    _ => (JoinStrategy::Shuffle, "shuffle: a side's size is unknown (give its source `rows` or `size`)".into()),
                }
            }
            JoinStrategy::Broadcast { side } => {
                if let Some(e) = side_est(side).filter(|e| e.bytes > 10.0 * threshold) {
                    out.warnings.push((
                        node.name.clone(),
                        format!("broadcasting `{}`, estimated at {e}: {}x broadcast_threshold {}", side_name(side), (e.bytes / threshold).round(), bytes(threshold)),
                    ));
                }
                (*strategy, format!("broadcast `{}` (hint)", side_name(side)))
            }
            JoinStrategy::Shuffle => (*strategy, "shuffle (hint)".into()),
            JoinStrategy::SortMerge => (*strategy, "sort-merge (hint)".into()),
            JoinStrategy::Salted => (*strategy, "salted: hot keys of the left side spread over buckets, the rest unsalted (hint)".into()),
        };
        out.strategies.insert(node.name.clone(), chosen);
        out.notes.push((node.name.clone(), format!("join strategy: {reason}")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expr::schema;
    use crate::plan::{JoinOn, Node, RuntimeOptions, Source, SourceFormat};

    fn pipeline(how: JoinHow, strategy: JoinStrategy, memory_limit: Option<u64>) -> Pipeline {
        let source = |name: &str| Node {
            name: name.into(),
            op: Op::Source(Source { format: SourceFormat::Inline(vec![]), path: String::new(), schema: schema(vec![]), partitions: vec![], hints: Default::default() }),
        };
        Pipeline {
            name: "p".into(),
            description: String::new(),
            spec_hash: String::new(),
            params: vec![],
            runtime: RuntimeOptions { memory_limit, ..Default::default() },
            nodes: vec![
                source("big"),
                source("small"),
                Node { name: "j".into(), op: Op::Join { left: "big".into(), right: "small".into(), how, on: JoinOn::Using(vec!["k".into()]), strategy, salt: None } },
            ],
            sinks: vec![],
            tests: vec![],
            streaming: None,
        }
    }

    fn sizes(big: f64, small: f64) -> HashMap<String, (Estimate, String)> {
        HashMap::from([
            ("big".to_string(), (Estimate { rows: big / 100.0, bytes: big }, String::new())),
            ("small".to_string(), (Estimate { rows: small / 100.0, bytes: small }, String::new())),
        ])
    }

    const MB: f64 = 1024.0 * 1024.0;

    #[test]
    fn auto_broadcasts_the_small_side_only_where_the_join_type_allows() {
        let pick = |how, big, small| choose(&pipeline(how, JoinStrategy::Auto, None), &sizes(big, small), None).strategies["j"];
        assert_eq!(pick(JoinHow::Inner, 500.0 * MB, 3.0 * MB), JoinStrategy::Broadcast { side: Side::Right });
        assert_eq!(pick(JoinHow::Inner, 3.0 * MB, 500.0 * MB), JoinStrategy::Broadcast { side: Side::Left });
        assert_eq!(pick(JoinHow::Left, 500.0 * MB, 3.0 * MB), JoinStrategy::Broadcast { side: Side::Right });
        // A left join keeps every left row: the small left side cannot be the broadcast one.
        assert_eq!(pick(JoinHow::Left, 3.0 * MB, 500.0 * MB), JoinStrategy::Shuffle);
        assert_eq!(pick(JoinHow::Right, 3.0 * MB, 500.0 * MB), JoinStrategy::Broadcast { side: Side::Left });
        assert_eq!(pick(JoinHow::Full, 500.0 * MB, 3.0 * MB), JoinStrategy::Shuffle);
        assert_eq!(pick(JoinHow::Inner, 500.0 * MB, 50.0 * MB), JoinStrategy::Shuffle);
        // Unknown sizes: shuffle.
        let unknown = choose(&pipeline(JoinHow::Inner, JoinStrategy::Auto, None), &HashMap::new(), None);
        assert_eq!(unknown.strategies["j"], JoinStrategy::Shuffle);
        assert!(unknown.notes.iter().any(|(_, n)| n.contains("size is unknown")));
    }

    #[test]
    fn sort_merge_when_a_hash_table_would_not_fit_memory() {
        let c = choose(&pipeline(JoinHow::Inner, JoinStrategy::Auto, Some(100 * 1024 * 1024)), &sizes(500.0 * MB, 50.0 * MB), None);
        assert_eq!(c.strategies["j"], JoinStrategy::SortMerge);
        assert!(c.notes.iter().any(|(_, n)| n.contains("would not fit memory_limit 100 MB")), "{:?}", c.notes);
    }

    #[test]
    fn hints_are_obeyed_and_a_large_broadcast_is_a_warning() {
        let c = choose(&pipeline(JoinHow::Inner, JoinStrategy::Broadcast { side: Side::Left }, None), &sizes(500.0 * MB, 3.0 * MB), None);
        assert_eq!(c.strategies["j"], JoinStrategy::Broadcast { side: Side::Left });
        assert_eq!(c.warnings.len(), 1);
        assert!(c.warnings[0].1.contains("broadcasting `big`, estimated at ~5.2 M rows, ~500 MB"), "{:?}", c.warnings);
    }
}
