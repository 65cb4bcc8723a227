//! Eager aggregation: an aggregate over an inner hash join pre-aggregates the
//! join's probe side by its join keys, so the join matches one row per key
//! instead of every row (Yan & Larson, "Eager Aggregation and Lazy
//! Aggregation", VLDB 1995; DuckDB does the same since 2026).
//!
//! The guide's join jobs sum 10M transactions per region of their customer:
//! DataFusion probes the customers' hash table with all 10M rows, copies each
//! match's region out, and groups 10M rows by it. Summed per customer first,
//! 100,000 rows reach the join:
//!
//! ```text
//! AggregateExec Partial [region] sum(amount)      AggregateExec PartialReduce [region] sum(amount)
//!   HashJoinExec customer_id = customer_id   =>     ProjectionExec region, sum(amount)[sum]
//!     customers                                       HashJoinExec customer_id = customer_id
//!     transactions                                      customers
//!                                                       AggregateExec Partial [customer_id] sum(amount)
//!                                                         transactions
//! ```
//!
//! Exact for an inner join whatever its fan-out: a pre-aggregated row stands
//! for all its rows, and joins the rows they would each have joined, so the
//! aggregate above merges the partial state of each matching (key, row) pair
//! once — as it would have merged each of the rows. Only aggregates whose
//! merged states equal the aggregate of the union are pushed: `sum`, `count`,
//! `min`, `max`, `avg`, none DISTINCT, filtered or ordered. A float sum adds
//! in another order, as any parallel aggregation does.
//!
//! The aggregate may read the join through projections of columns and a
//! round-robin repartition; its arguments may be any deterministic expression
//! of probe-side columns (`avg(int)` reads `CAST(x AS DOUBLE)`); the probe
//! side's join keys must be plain columns. A plan that fails to build keeps its
//! original form.
//!
//! When the probe side's keys are nearly unique, DataFusion's partial
//! aggregation stops grouping after its first 100,000 rows and passes rows
//! through as states (`skip_partial_aggregation_probe_ratio_threshold`), so a
//! wrong guess costs a copy, not a hash table per row. Runs with `--metrics`
//! or `--report` keep the plan as written (a node's marker sits between the
//! aggregate and the join, and the join's row count is what they report);
//! cluster plans too (Ballista's plan codec has no `PartialReduce`).

use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{JoinType, Result};
use datafusion::config::ConfigOptions;
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr_common::physical_expr::is_volatile;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode, PhysicalGroupBy};
use datafusion::physical_plan::joins::{HashJoinExec, PartitionMode};
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::{ExecutionPlan, ExecutionPlanProperties, InputOrderMode, Partitioning};

/// Pushes a partial aggregate below an inner hash join's probe side (see the module's doc).
#[derive(Debug)]
pub struct EagerAggregation;

impl PhysicalOptimizerRule for EagerAggregation {
    fn optimize(&self, plan: Arc<dyn ExecutionPlan>, _config: &ConfigOptions) -> Result<Arc<dyn ExecutionPlan>> {
        // `KILN_EAGER_AGGREGATION=off` keeps DataFusion's plan (for side-by-side runs, as in README's benchmark notes).
        if std::env::var("KILN_EAGER_AGGREGATION").is_ok_and(|v| v == "off") {
            return Ok(plan);
        }
        plan.transform_up(|node| Ok(match push_below_join(&node)? {
            Some(new) => Transformed::yes(new),
            None => Transformed::no(node),
        }))
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "kiln_eager_aggregation"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// Aggregates whose state, merged once per joined copy, is the aggregate of the joined rows.
const PUSHABLE: [&str; 5] = ["sum", "count", "min", "max", "avg"];

/// Where a column of the join's output comes from.
#[derive(Clone, Copy, PartialEq)]
enum Side {
    Left(usize),
    Right(usize),
}

/// `node` with its aggregation pushed below the join it reads, if it can be.
fn push_below_join(node: &Arc<dyn ExecutionPlan>) -> Result<Option<Arc<dyn ExecutionPlan>>> {
    let Some(agg) = node.downcast_ref::<AggregateExec>() else { return Ok(None) };
    // The aggregate above the join now merges states: the same output as before.
    let mode = match agg.mode() {
        AggregateMode::Partial => AggregateMode::PartialReduce,
        AggregateMode::Single => AggregateMode::Final,
        _ => return Ok(None),
    };
    let plain = agg.group_expr().is_single()
        && agg.filter_expr().iter().all(Option::is_none)
        && agg.limit_options().is_none()
        && *agg.input_order_mode() == InputOrderMode::Linear
        && agg.aggr_expr().iter().all(|a| !a.is_distinct() && a.order_bys().is_empty() && PUSHABLE.contains(&a.fun().name()));
    if !plain {
        return Ok(None);
    }
    // Through projections of columns alone (and a round-robin repartition the
    // planner put above a single-partition join), to the join.
    let mut projections = Vec::new();
    let mut round_robin = None;
    let mut below = agg.input();
    loop {
        if let Some(p) = below.downcast_ref::<ProjectionExec>() {
            projections.push(p);
            below = p.input();
        } else if let Some(r) = below.downcast_ref::<RepartitionExec>().filter(|r| matches!(r.partitioning(), Partitioning::RoundRobinBatch(_)) && round_robin.is_none()) {
            round_robin = Some(r.partitioning().clone());
            below = r.input();
        } else {
            break;
        }
    }
    let Some(join) = below.downcast_ref::<HashJoinExec>() else { return Ok(None) };
    if *join.join_type() != JoinType::Inner || join.filter().is_some() || join.null_aware {
        return Ok(None);
    }
    let left_len = join.left().schema().fields().len();
    let side = |expr: &Arc<dyn PhysicalExpr>| -> Option<Side> {
        let mut index = expr.downcast_ref::<Column>()?.index();
        for p in &projections {
            index = p.expr().get(index)?.expr.downcast_ref::<Column>()?.index();
        }
        if let Some(projection) = &join.projection {
            index = *projection.get(index)?;
        }
        Some(if index < left_len { Side::Left(index) } else { Side::Right(index - left_len) })
    };
    let Some(groups) = agg.group_expr().expr().iter().map(|(e, _)| side(e)).collect::<Option<Vec<_>>>() else { return Ok(None) };
    // The aggregated columns must all come from the probe side (the larger one, as
    // the planner placed it): pre-aggregating a small build side gains nothing.
    let mut args = Vec::new();
    let right_schema = join.right().schema();
    for a in agg.aggr_expr() {
        let mut pushed = Vec::new();
        for e in a.expressions() {
            // avg(int) reads CAST(x AS DOUBLE): any deterministic expression of probe-side columns.
            if is_volatile(&e) {
                return Ok(None);
            }
            let mut elsewhere = false;
            let e = e.transform_up(|x| {
                if x.downcast_ref::<Column>().is_none() {
                    return Ok(Transformed::no(x));
                }
                match side(&x) {
                    Some(Side::Right(i)) => Ok(Transformed::yes(Arc::new(Column::new(right_schema.field(i).name(), i)) as Arc<dyn PhysicalExpr>)),
                    _ => {
                        elsewhere = true;
                        Ok(Transformed::no(x))
                    }
                }
            })?;
            if elsewhere {
                return Ok(None);
            }
            pushed.push(e.data);
        }
        args.push(pushed);
    }
    // The probe side grouped by its join keys and the grouping columns it holds.
    let right = join.right();
    let mut keys: Vec<usize> = Vec::new();
    for (_, r) in join.on() {
        let Some(c) = r.downcast_ref::<Column>() else { return Ok(None) };
        if !keys.contains(&c.index()) {
            keys.push(c.index());
        }
    }
    for g in &groups {
        if let Side::Right(i) = *g {
            if !keys.contains(&i) {
                keys.push(i);
            }
        }
    }
    // Named as in the probe side, found there by name (a dynamic filter pushed
    // through the new aggregate is): a duplicated name would find the wrong column.
    if keys.iter().any(|&i| right_schema.index_of(right_schema.field(i).name()).ok() != Some(i)) {
        return Ok(None);
    }
    let key_exprs = keys.iter().map(|&i| {
        let name = right_schema.field(i).name().clone();
        (Arc::new(Column::new(&name, i)) as Arc<dyn PhysicalExpr>, name)
    });
    let mut pushed_aggs = Vec::new();
    for (a, args) in agg.aggr_expr().iter().zip(args) {
        let Some(pushed) = a.with_new_expressions(args, vec![]) else { return Ok(None) };
        pushed_aggs.push(Arc::new(pushed) as Arc<AggregateFunctionExpr>);
    }
    let filters = vec![None; pushed_aggs.len()];
    // Whatever fails to build keeps the plan as it was.
    let Ok(partial) = AggregateExec::try_new(AggregateMode::Partial, PhysicalGroupBy::new_single(key_exprs.collect()), pushed_aggs, filters, Arc::clone(right), Arc::clone(&right_schema)) else {
        return Ok(None);
    };
    let partial: Arc<dyn ExecutionPlan> = Arc::new(partial);
    let key_at = |i: usize| keys.iter().position(|&k| k == i).expect("every join key and probe-side group is a key");
    let on = join
        .on()
        .iter()
        .map(|(l, r)| {
            let c = r.downcast_ref::<Column>().expect("checked above");
            (Arc::clone(l), Arc::new(Column::new(c.name(), key_at(c.index()))) as Arc<dyn PhysicalExpr>)
        })
        .collect::<Vec<_>>();
    // A partitioned join needs the probe side partitioned by its keys, as it was.
    if *join.partition_mode() == PartitionMode::Partitioned {
        let hashed_by_keys = match partial.output_partitioning() {
            Partitioning::Hash(exprs, _) => exprs.len() == on.len() && exprs.iter().zip(&on).all(|(e, (_, r))| e.eq(r)),
            _ => false,
        };
        if !hashed_by_keys {
            return Ok(None);
        }
    }
    let states = partial.schema().fields().len() - keys.len();
    let Ok(new_join) = HashJoinExec::try_new(Arc::clone(join.left()), partial, on, None, &JoinType::Inner, None, *join.partition_mode(), join.null_equality(), false) else {
        return Ok(None);
    };
    let new_join: Arc<dyn ExecutionPlan> = Arc::new(new_join);
    // The aggregate's groups, then the pushed states, as a partial aggregate's output.
    let joined = new_join.schema();
    let column = |i: usize, name: &str| (Arc::new(Column::new(name, i)) as Arc<dyn PhysicalExpr>, name.to_string());
    let mut exprs = Vec::new();
    for (g, (_, alias)) in groups.iter().zip(agg.group_expr().expr()) {
        let at = match *g {
            Side::Left(i) => i,
            Side::Right(i) => left_len + key_at(i),
        };
        exprs.push((Arc::new(Column::new(joined.field(at).name(), at)) as Arc<dyn PhysicalExpr>, alias.clone()));
    }
    for s in 0..states {
        let at = left_len + keys.len() + s;
        exprs.push(column(at, joined.field(at).name()));
    }
    let Ok(projection) = ProjectionExec::try_new(exprs, new_join) else { return Ok(None) };
    let mut input: Arc<dyn ExecutionPlan> = Arc::new(projection);
    if let Some(partitioning) = round_robin {
        input = Arc::new(RepartitionExec::try_new(input, partitioning)?);
    }
    let group_by = agg.group_expr().expr().iter().enumerate().map(|(i, (_, alias))| column(i, alias)).collect();
    let Ok(merged) = AggregateExec::try_new(mode, PhysicalGroupBy::new_single(group_by), agg.aggr_expr().to_vec(), agg.filter_expr().to_vec(), input, agg.input_schema()) else {
        return Ok(None);
    };
    // The same columns out, or the plan as it was.
    let same = merged.schema().fields().len() == agg.schema().fields().len()
        && merged.schema().fields().iter().zip(agg.schema().fields()).all(|(a, b)| a.name() == b.name() && a.data_type() == b.data_type());
    Ok(same.then(|| Arc::new(merged) as Arc<dyn ExecutionPlan>))
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{Array, AsArray, RecordBatch};
    use datafusion::arrow::compute::cast;
    use datafusion::arrow::datatypes::DataType;
    use datafusion::prelude::SessionContext;

    /// A Kiln session with `partitions` target partitions, facts `t` (customer, day,
    /// amount) and dimension `c` (customer, region): c3 twice (a join that fans out),
    /// a NULL customer on both sides, t's c9 and c's c4 unmatched, NULL amounts.
    fn session(partitions: usize, rt: &tokio::runtime::Runtime) -> SessionContext {
        session_with(partitions, None, rt)
    }

    /// Small batches: the tables are read in several batches, so the planner
    /// spreads the scans (not the join's output) over the partitions.
    fn session_with(partitions: usize, batch_size: Option<usize>, rt: &tokio::runtime::Runtime) -> SessionContext {
        let options = crate::session::SessionOptions { target_partitions: Some(partitions), batch_size, ..Default::default() };
        let ctx = crate::session::context(&options).unwrap();
        let facts: Vec<String> = (0..400)
            .map(|i| {
                let customer = match i % 7 { 0 => "NULL".to_string(), 6 => "'c9'".to_string(), k => format!("'c{}'", k % 4) };
                let amount = if i % 5 == 0 { "NULL".to_string() } else { format!("{}", (i * 37) % 101) };
                format!("({customer}, {}, {amount})", i % 3)
            })
            .collect();
        rt.block_on(async {
            ctx.sql(&format!("CREATE TABLE t (customer VARCHAR, day BIGINT, amount BIGINT) AS VALUES {}", facts.join(", "))).await.unwrap();
            ctx.sql("CREATE TABLE c (customer VARCHAR, region VARCHAR) AS VALUES ('c0', 'north'), ('c1', 'south'), ('c2', 'north'), ('c3', 'east'), ('c3', 'west'), ('c4', 'south'), (NULL, 'none')")
                .await
                .unwrap();
        });
        ctx
    }

    fn plan(ctx: &SessionContext, sql: &str, rt: &tokio::runtime::Runtime) -> String {
        rt.block_on(async {
            let physical = ctx.sql(sql).await.unwrap().create_physical_plan().await.unwrap();
            datafusion::physical_plan::displayable(physical.as_ref()).indent(false).to_string()
        })
    }

    /// Every row as text, sorted.
    fn rows(ctx: &SessionContext, sql: &str, rt: &tokio::runtime::Runtime) -> Vec<String> {
        let batches: Vec<RecordBatch> = rt.block_on(async { ctx.sql(sql).await.unwrap().collect().await.unwrap() });
        let mut out = Vec::new();
        for b in &batches {
            let columns: Vec<_> = b.columns().iter().map(|c| cast(c, &DataType::Utf8).unwrap()).collect();
            for r in 0..b.num_rows() {
                let cells: Vec<String> = columns.iter().map(|c| if c.is_null(r) { "NULL".to_string() } else { c.as_string::<i32>().value(r).to_string() }).collect();
                out.push(cells.join("|"));
            }
        }
        out.sort();
        out
    }

    /// The expected rows, computed here from the same generator, not by DataFusion.
    fn expected_by_region() -> Vec<String> {
        let regions: &[(&str, &str)] = &[("c0", "north"), ("c1", "south"), ("c2", "north"), ("c3", "east"), ("c3", "west"), ("c4", "south")];
        let mut acc: std::collections::BTreeMap<&str, (i64, i64, i64, Option<i64>, Option<i64>, i64)> = Default::default();
        for i in 0..400i64 {
            let customer = match i % 7 { 0 | 6 => continue, k => format!("c{}", k % 4) };
            let amount = if i % 5 == 0 { None } else { Some((i * 37) % 101) };
            for (_, region) in regions.iter().filter(|(c, _)| *c == customer) {
                let e = acc.entry(region).or_insert((0, 0, 0, None, None, 0));
                e.0 += 1;
                if let Some(a) = amount {
                    e.1 += a;
                    e.2 += 1;
                    e.3 = Some(e.3.map_or(a, |m| m.min(a)));
                    e.4 = Some(e.4.map_or(a, |m| m.max(a)));
                }
            }
        }
        acc.iter()
            .map(|(region, (rows, sum, n, min, max, _))| {
                let avg_thousandths = (*sum as f64 / *n as f64 * 1000.0).round() as i64;
                format!("{region}|{rows}|{n}|{sum}|{}|{}|{avg_thousandths}", min.unwrap(), max.unwrap())
            })
            .collect()
    }

    const BY_REGION: &str = "SELECT region, count(*), count(amount), sum(amount), min(amount), max(amount), CAST(round(avg(amount) * 1000) AS BIGINT) FROM t JOIN c ON t.customer = c.customer GROUP BY region";

    #[test]
    fn an_aggregate_over_a_join_is_pushed_below_it_with_the_same_rows() {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        // Two partitions: a partial aggregate over the join (merged by PartialReduce),
        // over a round-robin of the join's one partition or of the scans' batches;
        // one: a single aggregate (merged by Final).
        for (partitions, batch_size) in [(2, None), (2, Some(16)), (1, None)] {
            let ctx = session_with(partitions, batch_size, &rt);
            let p = plan(&ctx, BY_REGION, &rt);
            assert!(p.contains("gby=[customer@0 as customer]"), "the facts are grouped by the join key below the join:\n{p}");
            let merge = if partitions == 2 { "mode=PartialReduce" } else { "mode=Final," };
            assert!(p.contains(merge), "{p}");
            assert_eq!(rows(&ctx, BY_REGION, &rt), expected_by_region(), "{partitions} partition(s), batches of {batch_size:?}");
        }
    }

    #[test]
    fn groups_from_both_sides_and_without_groups() {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let ctx = session(2, &rt);
        let plain = SessionContext::new_with_config(datafusion::prelude::SessionConfig::new().with_target_partitions(2));
        rt.block_on(async {
            for name in ["t", "c"] {
                let table = ctx.table(name).await.unwrap().collect().await.unwrap();
                plain.register_batch(name, datafusion::arrow::compute::concat_batches(&table[0].schema(), &table).unwrap()).unwrap();
            }
        });
        // A facts column among the groups (pushed with the key), and a global aggregate.
        let queries = [
            "SELECT region, day, sum(amount), count(*) FROM t JOIN c ON t.customer = c.customer GROUP BY region, day",
            "SELECT sum(amount), count(*), max(amount) FROM t JOIN c ON t.customer = c.customer",
        ];
        for sql in queries {
            let p = plan(&ctx, sql, &rt);
            assert!(p.contains("mode=PartialReduce"), "{p}");
            // DataFusion without Kiln's rules computes them row by row.
            assert_eq!(rows(&ctx, sql, &rt), rows(&plain, sql, &rt), "{sql}");
        }
        // By hand: day 0 of north (c0 and c2 rows whose i % 3 == 0).
        let north_day0: i64 = (0..400i64).filter(|i| i % 3 == 0 && matches!(i % 7, 1 | 2 | 4 | 5) && [0, 2].contains(&((i % 7) % 4)) && i % 5 != 0).map(|i| (i * 37) % 101).sum();
        assert!(rows(&ctx, queries[0], &rt).contains(&format!("north|0|{north_day0}|{}", (0..400i64).filter(|i| i % 3 == 0 && matches!(i % 7, 1 | 2 | 4 | 5) && [0, 2].contains(&((i % 7) % 4))).count())));
    }

    #[test]
    fn what_cannot_be_pushed_stays() {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let ctx = session(2, &rt);
        for sql in [
            // An aggregate not known to merge that way, a left join (unmatched rows count),
            // an aggregate of the dimension's column.
            "SELECT region, median(amount) FROM t JOIN c ON t.customer = c.customer GROUP BY region",
            "SELECT region, sum(amount) FROM t LEFT JOIN c ON t.customer = c.customer GROUP BY region",
            "SELECT day, max(region) FROM t JOIN c ON t.customer = c.customer GROUP BY day",
        ] {
            let p = plan(&ctx, sql, &rt);
            assert!(!p.contains("PartialReduce") && !p.contains("gby=[customer@0 as customer]"), "{sql}\n{p}");
        }
    }
}
