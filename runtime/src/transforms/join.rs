//! `join`: every `how`, `on` as shared column names (one output column per
//! key, as Spark's USING) or as `l.x = r.y` conditions (both columns kept), and
//! the spec's strategy as a hint on the hash join (see [`crate::join_strategy`]).

use datafusion::common::{Column, JoinType};
use datafusion::logical_expr::{Expr, LogicalPlan, LogicalPlanBuilder};

use crate::expr::call;
use crate::join_strategy::{Hint, hint};
use crate::split::split;
use crate::plan::{JoinHow, JoinOn, JoinStrategy, Salt, Side};
use crate::{Error, Result};

pub(super) fn build(left: LogicalPlan, right: LogicalPlan, how: JoinHow, on: &JoinOn, strategy: JoinStrategy, salt: Option<&Salt>) -> Result<LogicalPlan> {
    if strategy == JoinStrategy::Salted {
        let salt = salt.ok_or_else(|| Error::Usage("a salted join without salt settings".into()))?;
        return salted(left, right, how, on, salt);
    }
    let (left, right) = match strategy {
        JoinStrategy::Auto => (left, right),
        JoinStrategy::Broadcast { side: Side::Left } => (hint(left, Hint::Broadcast), right),
        JoinStrategy::Broadcast { side: Side::Right } => (left, hint(right, Hint::Broadcast)),
        JoinStrategy::Shuffle => (left, hint(right, Hint::Shuffle)),
        JoinStrategy::SortMerge => (left, hint(right, Hint::SortMerge)),
        JoinStrategy::Salted => (left, right),
    };
    let join_type = match how {
        JoinHow::Inner | JoinHow::Cross => JoinType::Inner,
        JoinHow::Left => JoinType::Left,
        JoinHow::Right => JoinType::Right,
        JoinHow::Full => JoinType::Full,
        JoinHow::Semi => JoinType::LeftSemi,
        JoinHow::Anti => JoinType::LeftAnti,
    };
    let builder = LogicalPlanBuilder::from(left.clone());
    let plan = match on {
        JoinOn::None => builder.cross_join(right.clone())?.build()?,
        JoinOn::Keys { left: l, right: r, filter } => {
            builder.join_with_expr_keys(right.clone(), join_type, (l.clone(), r.clone()), filter.clone())?.build()?
        }
        JoinOn::Using(keys) => {
            let lk = keys.iter().map(|k| column(&left, k)).collect::<Result<Vec<_>>>()?;
            let rk = keys.iter().map(|k| column(&right, k)).collect::<Result<Vec<_>>>()?;
            let plan = builder.join(right.clone(), join_type, (lk.clone(), rk.clone()), None)?.build()?;
            if matches!(how, JoinHow::Semi | JoinHow::Anti) {
                plan
            } else {
                // Keys once (from the side that has every row), then the left's
                // other columns, then the right's.
                let mut exprs = Vec::new();
                for (k, (l, r)) in keys.iter().zip(lk.iter().zip(&rk)) {
                    let e = match how {
                        JoinHow::Right => Expr::Column(r.clone()),
                        JoinHow::Full => call("coalesce", vec![Expr::Column(l.clone()), Expr::Column(r.clone())])?,
                        _ => Expr::Column(l.clone()),
                    };
                    exprs.push(e.alias(k));
                }
                for side in [&left, &right] {
                    for c in side.schema().columns() {
                        if !keys.contains(&c.name) {
                            exprs.push(Expr::Column(c.clone()).alias(&c.name));
                        }
                    }
                }
                LogicalPlanBuilder::from(plan).project(exprs)?.build()?
            }
        }
    };
    // The node's alias re-qualifies the output; duplicate names were rejected by `kiln check`.
    Ok(plan)
}

/// Salting (SPEC.md §4.1): the join split in two by key. Rows whose key is not
/// hot (NULL keys included) join as they would unsalted (shuffle). The left
/// side's hot rows stay in the partitions they are read in (dealt round robin
/// over `buckets` partitions when the input has fewer than the session's
/// target partitions: a batch's partition is its salt) and are joined there
/// with the right side's hot rows, which every partition holds (replicated:
/// built once and shared, as a broadcast; they are few). No hot row is hashed onto one partition, and each
/// meets every right row of its key exactly once, so the union is the unsalted
/// join's result for inner, left, semi and anti joins. Each side is read once
/// and its rows split between the two joins ([`crate::split`]).
fn salted(left: LogicalPlan, right: LogicalPlan, how: JoinHow, on: &JoinOn, salt: &Salt) -> Result<LogicalPlan> {
    use datafusion::logical_expr::{in_list, lit};
    let (lkey, rkey) = match on {
        JoinOn::Using(keys) if keys.len() == 1 => (Expr::Column(column(&left, &keys[0])?), Expr::Column(column(&right, &keys[0])?)),
        JoinOn::Keys { left: l, right: r, .. } if l.len() == 1 && r.len() == 1 => (l[0].clone(), r[0].clone()),
        _ => return Err(Error::Usage("salting needs a join on one key".into())),
    };
    let join = |l: LogicalPlan, r: LogicalPlan, strategy| build(l, r, how, on, strategy, None);
    if salt.hot_keys.is_empty() {
        return join(left, right, JoinStrategy::Shuffle);
    }
    let hot: Vec<Expr> = salt.hot_keys.iter().map(|v| lit(v.clone())).collect();
    let buckets = salt.buckets.unwrap_or(2).max(1);
    let (hot_left, cold_left) = split(left, in_list(lkey, hot.clone(), false), Some(buckets));
    let (hot_right, cold_right) = split(right, in_list(rkey, hot, false), None);
    let cold = join(cold_left, cold_right, JoinStrategy::Shuffle)?;
    let hot = join(hot_left, hot_right, JoinStrategy::Broadcast { side: Side::Right })?;
    Ok(LogicalPlanBuilder::from(cold).union(hot)?.build()?)
}

/// `name` as a column of `plan`, with its qualifier.
fn column(plan: &LogicalPlan, name: &str) -> Result<Column> {
    let (q, f) = plan
        .schema()
        .qualified_field_with_unqualified_name(name)
        .map_err(|_| Error::Usage(format!("join key `{name}` is not a column of one side")))?;
    Ok(Column::new(q.cloned(), f.name()))
}
