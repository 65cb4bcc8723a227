//! `join`: every `how`, `on` as shared column names (one output column per
//! key, as Spark's USING) or as `l.x = r.y` conditions (both columns kept), and
//! the spec's strategy as a hint on the hash join (see [`crate::join_strategy`]).

use datafusion::common::{Column, JoinType};
use datafusion::logical_expr::{Expr, LogicalPlan, LogicalPlanBuilder};

use crate::expr::call;
use crate::join_strategy::{Hint, hint};
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

const SALT: &str = "__kiln_salt";

/// The join split in two: rows whose key is not hot join as usual (shuffle);
/// hot left rows get a random salt in `0..buckets` and join the right rows with
/// hot keys, each replicated once per salt, on (key, salt). The union of both is
/// the unsalted join's result for inner, left, semi and anti joins (each hot
/// left row meets every right row of its key exactly once, in its own salt).
fn salted(left: LogicalPlan, right: LogicalPlan, how: JoinHow, on: &JoinOn, salt: &Salt) -> Result<LogicalPlan> {
    use datafusion::logical_expr::{in_list, lit};
    let buckets = salt.buckets.unwrap_or(2).max(1) as i64;
    let (lkey, rkey) = match on {
        JoinOn::Using(keys) if keys.len() == 1 => (Expr::Column(column(&left, &keys[0])?), Expr::Column(column(&right, &keys[0])?)),
        JoinOn::Keys { left: l, right: r, .. } if l.len() == 1 && r.len() == 1 => (l[0].clone(), r[0].clone()),
        _ => return Err(Error::Usage("salting needs a join on one key".into())),
    };
    let cold_on = on.clone();
    let plain = |l: LogicalPlan, r: LogicalPlan, on: &JoinOn| build(l, r, how, on, JoinStrategy::Shuffle, None);
    if salt.hot_keys.is_empty() {
        return plain(left, right, &cold_on);
    }
    let hot: Vec<Expr> = salt.hot_keys.iter().map(|v| lit(v.clone())).collect();
    let is_hot = |key: &Expr| in_list(key.clone(), hot.clone(), false);
    // NULL keys are not hot: they go the unsalted way (and never match).
    let cold_left = LogicalPlanBuilder::from(left.clone()).filter(lkey.clone().is_null().or(in_list(lkey.clone(), hot.clone(), true)))?.build()?;
    let cold = plain(cold_left, right.clone(), &cold_on)?;
    let with_columns = |plan: LogicalPlan, extra: Expr| -> Result<LogicalPlan> {
        let mut exprs: Vec<Expr> = plan.schema().columns().into_iter().map(Expr::Column).collect();
        exprs.push(extra);
        Ok(LogicalPlanBuilder::from(plan).project(exprs)?.build()?)
    };
    let random_salt = datafusion::logical_expr::cast(
        call("floor", vec![call("random", vec![])? * lit(buckets as f64)])?,
        datafusion::arrow::datatypes::DataType::Int64,
    );
    // Each side keeps its node's qualifier, salt column included, so the join sees `l.salt = r.salt`.
    let qualifier = |plan: &LogicalPlan| plan.schema().iter().next().and_then(|(q, _)| q.cloned());
    let (lq, rq) = (qualifier(&left), qualifier(&right));
    let requalify = |plan: LogicalPlan, q: &Option<datafusion::common::TableReference>| -> Result<LogicalPlan> {
        Ok(match q {
            Some(q) => LogicalPlanBuilder::from(plan).alias(q.clone())?.build()?,
            None => plan,
        })
    };
    let hot_left = LogicalPlanBuilder::from(left).filter(is_hot(&lkey))?.build()?;
    let hot_left = requalify(with_columns(hot_left, random_salt.alias(SALT))?, &lq)?;
    let salts = LogicalPlanBuilder::values((0..buckets).map(|b| vec![lit(b)]).collect())?
        .project(vec![Expr::Column(Column::from_name("column1")).alias("__kiln_salt_value")])?
        .alias("__kiln_salts")?
        .build()?;
    let hot_right = LogicalPlanBuilder::from(right).filter(is_hot(&rkey))?.cross_join(salts)?.build()?;
    let right_columns: Vec<Expr> = hot_right
        .schema()
        .columns()
        .into_iter()
        .filter(|c| c.name != "__kiln_salt_value")
        .map(|c| {
            let name = c.name.clone();
            Expr::Column(c).alias(name)
        })
        .chain([Expr::Column(Column::new(Some("__kiln_salts"), "__kiln_salt_value")).alias(SALT)])
        .collect();
    let hot_right = requalify(LogicalPlanBuilder::from(hot_right).project(right_columns)?.build()?, &rq)?;
    let hot_on = match on {
        JoinOn::Using(keys) => JoinOn::Using(keys.iter().cloned().chain([SALT.to_string()]).collect()),
        JoinOn::Keys { left: l, right: r, filter } => JoinOn::Keys {
            left: l.iter().cloned().chain([Expr::Column(Column::new(lq.clone(), SALT))]).collect(),
            right: r.iter().cloned().chain([Expr::Column(Column::new(rq.clone(), SALT))]).collect(),
            filter: filter.clone(),
        },
        JoinOn::None => return Err(Error::Usage("salting needs a join on one key".into())),
    };
    // The replicated hot rows of the right side are few (hot keys x buckets):
    // they are the build side, collected once, and the hot left rows are probed
    // where they are read instead of being shuffled onto one partition.
    let hot_joined = build(hot_left, hot_right, how, &hot_on, JoinStrategy::Broadcast { side: Side::Right }, None)?;
    // Back to the unsalted join's columns, in its order.
    let columns: Vec<Expr> = cold
        .schema()
        .iter()
        .map(|(q, f)| {
            let name = f.name();
            match hot_joined.schema().qualified_field_with_name(q, name) {
                Ok((hq, _)) => Expr::Column(Column::new(hq.cloned(), name)),
                Err(_) => Expr::Column(Column::from_name(name)),
            }
        })
        .collect();
    let hot_joined = LogicalPlanBuilder::from(hot_joined).project(columns)?.build()?;
    Ok(LogicalPlanBuilder::from(cold).union(hot_joined)?.build()?)
}

/// `name` as a column of `plan`, with its qualifier.
fn column(plan: &LogicalPlan, name: &str) -> Result<Column> {
    let (q, f) = plan
        .schema()
        .qualified_field_with_unqualified_name(name)
        .map_err(|_| Error::Usage(format!("join key `{name}` is not a column of one side")))?;
    Ok(Column::new(q.cloned(), f.name()))
}
