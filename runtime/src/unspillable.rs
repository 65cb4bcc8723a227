//! What a run cannot spill, said before it starts.
//!
//! Under a memory limit DataFusion's sorts, aggregates, sort-merge joins and
//! Kiln's dedupe and shared queues spill to disk; a few operators hold an
//! input in memory and cannot. They reserve that memory from the pool, so past
//! the limit they fail with "Resources exhausted" (naming the top consumers)
//! rather than meet the kernel's OOM killer; this module names them before the
//! run, per sink, so a user learns it from the first line, not the last.

use std::sync::Arc;

use datafusion::physical_plan::ExecutionPlan;

/// Operators of `plan` that hold an input in memory, each described once, in plan order
/// (a hash join with its build side's estimated size when DataFusion knows it).
pub fn holders(plan: &Arc<dyn ExecutionPlan>) -> Vec<String> {
    let mut found: Vec<String> = Vec::new();
    let mut stack = vec![plan.clone()];
    while let Some(p) = stack.pop() {
        let what = match p.name() {
            "HashJoinExec" => Some(match build_side_bytes(&p) {
                Some(bytes) => format!("a hash join (its build side whole, ~{})", crate::report::human_bytes(bytes)),
                None => "a hash join (its build side whole)".to_string(),
            }),
            "NestedLoopJoinExec" | "CrossJoinExec" => Some("a nested-loop or cross join (one side whole)".to_string()),
            "WindowAggExec" => Some("a window over whole partitions (each window partition's rows at once)".to_string()),
            _ => None,
        };
        if let Some(w) = what.filter(|w| !found.contains(w)) {
            found.push(w);
        }
        stack.extend(p.children().into_iter().rev().cloned());
    }
    found
}

/// The estimated size of a hash join's build side (its left input), when known.
fn build_side_bytes(join: &Arc<dyn ExecutionPlan>) -> Option<u64> {
    let left = join.children().first().copied()?;
    let stats = datafusion::physical_plan::StatisticsContext::new().compute(left.as_ref(), &datafusion::physical_plan::StatisticsArgs::new()).ok()?;
    stats.total_byte_size.get_value().map(|b| *b as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::*;

    #[tokio::test]
    async fn hash_joins_and_whole_partition_windows_are_named() {
        let ctx = SessionContext::new();
        ctx.sql("CREATE TABLE a AS VALUES (1, 'x'), (2, 'y')").await.unwrap();
        ctx.sql("CREATE TABLE b AS VALUES (1, 10), (2, 20)").await.unwrap();
        let plan = |sql: &'static str| {
            let ctx = ctx.clone();
            async move { ctx.sql(sql).await.unwrap().create_physical_plan().await.unwrap() }
        };
        let join = plan("SELECT * FROM a JOIN b ON a.column1 = b.column1").await;
        let held = holders(&join);
        assert_eq!(held.len(), 1, "{held:?}");
        assert!(held[0].starts_with("a hash join (its build side whole"), "{held:?}");
        let window = plan("SELECT column1, ntile(2) OVER (PARTITION BY column2 ORDER BY column1 ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING) FROM a").await;
        assert_eq!(holders(&window), ["a window over whole partitions (each window partition's rows at once)"]);
        let sorted = plan("SELECT * FROM a ORDER BY column2").await;
        assert!(holders(&sorted).is_empty());
    }
}
