//! Lowering `join` (SPEC.md §4, §11): `on` is either shared column names (one
//! output column per key, as Spark's USING) or conditions written with the
//! inputs' node names as qualifiers (`orders.cust = customers.id`; both columns
//! kept). Equalities between one side and the other become hash-join keys, the
//! rest a join filter. An output with two columns of one name is an error.

use std::collections::HashMap;

use datafusion::logical_expr::{BinaryExpr, Expr, LogicalPlan, Operator};
use kiln::plan::{JoinHow, JoinOn, JoinStrategy, Op, Salt, Side};

use super::expr::ExprChecker;
use super::lower::schema_names;
use crate::diag::{Diagnostic, Diags, did_you_mean};
use crate::spec::{SaltDecl, Sp, TransformDecl};

pub(super) fn lower(
    t: &TransformDecl,
    inputs: &[LogicalPlan],
    how: &Sp<String>,
    on: &[Sp<String>],
    strategy: Option<&Sp<String>>,
    salt: Option<&SaltDecl>,
    checker: &ExprChecker,
    d: &mut Diags,
) -> Option<Op> {
    let before = d.0.len();
    let (left, right) = (&inputs[0], &inputs[1]);
    let (ln, rn) = (&t.inputs[0], &t.inputs[1]);
    if ln.value == rn.value {
        d.push(
            Diagnostic::error("kiln::self-join", rn.span.clone(), format!("`{}` is joined with itself", rn.value))
                .label("same node on both sides")
                .help("add a `select` transform that reads it under another name, and join with that"),
        );
        return None;
    }
    let how_v = match how.as_str() {
        "left" => JoinHow::Left,
        "right" => JoinHow::Right,
        "full" => JoinHow::Full,
        "semi" => JoinHow::Semi,
        "anti" => JoinHow::Anti,
        "cross" => JoinHow::Cross,
        _ => JoinHow::Inner,
    };
    let (lcols, rcols) = (schema_names(left.schema().inner()), schema_names(right.schema().inner()));
    let is_name = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_alphanumeric() || c == '_') && !s.starts_with(|c: char| c.is_ascii_digit());
    let on_v = if how_v == JoinHow::Cross {
        JoinOn::None
    } else if on.iter().all(|o| is_name(o.as_str())) {
        let mut ok = true;
        for key in on {
            for (side, cols) in [(ln, &lcols), (rn, &rcols)] {
                if !cols.contains(&key.value) {
                    let mut diag = Diagnostic::error("kiln::unknown-column", key.span.clone(), format!("join key `{}` is not a column of `{}`", key.value, side.value))
                        .label(format!("missing on the {} side", if side == ln { "left" } else { "right" }));
                    if let Some(h) = did_you_mean(&key.value, cols.iter().map(String::as_str)) {
                        diag = diag.help(h);
                    }
                    d.push(diag.note(format!("`{}` has: {}", side.value, cols.join(", "))).note(format!("to join columns of different names, write on = [\"l.x = r.y\"] (or with the node names: \"{}.x = {}.y\")", ln.value, rn.value)));
                    ok = false;
                }
            }
        }
        if !ok {
            return None;
        }
        JoinOn::Using(on.iter().map(|k| k.value.clone()).collect())
    } else {
        let (mut lkeys, mut rkeys, mut rest) = (Vec::new(), Vec::new(), Vec::new());
        for cond in on {
            // Each side is named by its node name, or by `l`/`left` and `r`/`right` (SPEC §4).
            let (lq, rq) = side_qualifiers(cond.as_str(), &ln.value, &rn.value);
            let both = match qualified(left, &lq).and_then(|l| l.join(&qualified(right, &rq)?)) {
                Ok(s) => s,
                Err(e) => {
                    d.push(Diagnostic::error("kiln::invalid-transform", t.name.span.clone(), format!("cannot combine the inputs' schemas: {e}")).label("this join"));
                    return None;
                }
            };
            if is_name(cond.as_str()) {
                d.push(
                    Diagnostic::error("kiln::bad-value", cond.span.clone(), "a join's `on` mixes column names and conditions")
                        .label("a column name")
                        .help(format!("write it as a condition: \"{}.{} = {}.{}\"", ln.value, cond.value, rn.value, cond.value)),
                );
                continue;
            }
            let Ok(e) = checker.parse_qualified(cond, &both).map_err(|e| d.push(e)) else { continue };
            let Ok(e) = requalify(e, &[(&lq, &ln.value), (&rq, &rn.value)])
                .map_err(|e| d.push(Diagnostic::error("kiln::internal", cond.span.clone(), e.to_string()).label("this condition")))
            else {
                continue;
            };
            let side_of = |e: &Expr| -> Option<Side> {
                let refs = e.column_refs();
                let all = |name: &str| !refs.is_empty() && refs.iter().all(|c| c.relation.as_ref().is_some_and(|r| r.table() == name));
                if all(&ln.value) {
                    Some(Side::Left)
                } else if all(&rn.value) {
                    Some(Side::Right)
                } else {
                    None
                }
            };
            match &e {
                Expr::BinaryExpr(BinaryExpr { left: a, op: Operator::Eq, right: b }) => match (side_of(a), side_of(b)) {
                    (Some(Side::Left), Some(Side::Right)) => {
                        lkeys.push(*a.clone());
                        rkeys.push(*b.clone());
                    }
                    (Some(Side::Right), Some(Side::Left)) => {
                        lkeys.push(*b.clone());
                        rkeys.push(*a.clone());
                    }
                    _ => rest.push(e),
                },
                _ => rest.push(e),
            }
        }
        if d.0.len() > before {
            return None;
        }
        let filter = rest.into_iter().reduce(Expr::and);
        JoinOn::Keys { left: lkeys, right: rkeys, filter }
    };
    let strategy_v = match strategy.map(|s| s.as_str()) {
        Some("broadcast") if how_v == JoinHow::Full => {
            // A hint that cannot be obeyed is a warning (§4.1), and the join still runs.
            d.push(
                Diagnostic::warning("kiln::bad-strategy", strategy?.span.clone(), "a full join cannot broadcast either side; it runs as a shuffle join")
                    .label("both sides keep their unmatched rows")
                    .help("use strategy = \"shuffle\" (or leave it to \"auto\")"),
            );
            JoinStrategy::Shuffle
        }
        // The side that need not keep unmatched rows: the right one, unless the join keeps the right's rows.
        Some("broadcast") => JoinStrategy::Broadcast { side: if how_v == JoinHow::Right { Side::Left } else { Side::Right } },
        Some("shuffle") => JoinStrategy::Shuffle,
        Some("salted") => JoinStrategy::Salted,
        _ => JoinStrategy::Auto,
    };
    // Salting replicates the other side's hot rows, which would repeat its unmatched
    // rows in right and full joins: those run as shuffle joins (same rows), with a warning.
    let strategy_v = match (strategy_v, how_v) {
        (JoinStrategy::Salted, JoinHow::Right | JoinHow::Full) => {
            let at = strategy.map_or(t.name.span.clone(), |s| s.span.clone());
            d.push(
                Diagnostic::warning("kiln::salt-ignored", at, format!("a {} join cannot be salted; it runs as a shuffle join", how_v.name()))
                    .label("salting is for inner, left, semi and anti joins")
                    .help("put the skewed side on the left of a left join to salt it"),
            );
            return finish(t, ln, rn, how_v, on_v, JoinStrategy::Shuffle, None, &lcols, &rcols, before, d);
        }
        (s, _) => s,
    };
    let salt_v = match (salt, strategy_v) {
        (None, JoinStrategy::Salted) => Some(Salt { buckets: None, hot_keys: Vec::new(), detect: true, threshold: DEFAULT_HOT_SHARE }),
        (None, _) => None,
        (Some(s), _) => Some(lower_salt(s, how_v, &on_v, left, d)?),
    };
    finish(t, ln, rn, how_v, on_v, strategy_v, salt_v, &lcols, &rcols, before, d)
}

/// The join node, once its output names are known to be unique.
#[allow(clippy::too_many_arguments)]
fn finish(
    t: &TransformDecl,
    ln: &Sp<String>,
    rn: &Sp<String>,
    how_v: JoinHow,
    on_v: JoinOn,
    strategy_v: JoinStrategy,
    salt_v: Option<Salt>,
    lcols: &[String],
    rcols: &[String],
    before: usize,
    d: &mut Diags,
) -> Option<Op> {
    // Output names: each must be unique.
    let output: Vec<(&String, &Sp<String>)> = match (&on_v, how_v) {
        (_, JoinHow::Semi | JoinHow::Anti) => vec![],
        (JoinOn::Using(keys), _) => lcols
            .iter()
            .filter(|c| !keys.contains(c))
            .map(|c| (c, ln))
            .chain(rcols.iter().filter(|c| !keys.contains(c)).map(|c| (c, rn)))
            .collect(),
        _ => lcols.iter().map(|c| (c, ln)).chain(rcols.iter().map(|c| (c, rn))).collect(),
    };
    let mut first: HashMap<&String, &Sp<String>> = HashMap::new();
    for (c, side) in output {
        if let Some(other) = first.insert(c, side) {
            if other != side {
                let new_name = format!("{}_{}", rn.value, c);
                d.push(
                    Diagnostic::error("kiln::duplicate-column", t.name.span.clone(), format!("join `{}` would output two columns named `{c}`", t.name.value))
                        .label(format!("`{}` and `{}` both have `{c}`", ln.value, rn.value))
                        .help(format!(
                            "rename it on one side before the join:\n[transforms.{r}_renamed]\ntype = \"rename\"\ninput = \"{r}\"\ncolumns.{c} = \"{new_name}\"\n(or, if `{c}` is a key, join on = [\"{c}\"] to keep it once)",
                            r = rn.value
                        )),
                );
            }
        }
    }
    if d.0.iter().skip(before).any(|x| x.is_error()) {
        return None;
    }
    Some(Op::Join { left: ln.value.clone(), right: rn.value.clone(), how: how_v, on: on_v, strategy: strategy_v, salt: salt_v })
}

/// The qualifiers a condition uses for the left and right side: the node
/// names, unless it writes `l.`/`left.` or `r.`/`right.` and no node is named so.
fn side_qualifiers(cond: &str, left: &str, right: &str) -> (String, String) {
    use datafusion::sql::sqlparser::dialect::GenericDialect;
    use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
    let tokens = Tokenizer::new(&GenericDialect {}, cond).tokenize().unwrap_or_default();
    let tokens: Vec<&Token> = tokens.iter().filter(|t| !matches!(t, Token::Whitespace(_))).collect();
    let mut used = Vec::new();
    for w in tokens.windows(2) {
        if let (Token::Word(word), Token::Period) = (w[0], w[1]) {
            used.push(word.value.clone());
        }
    }
    let pick = |node: &str, aliases: [&str; 2]| -> String {
        if used.iter().any(|q| q == node) {
            return node.to_string();
        }
        aliases.iter().find(|a| used.iter().any(|q| q == *a) && **a != left && **a != right).map_or(node.to_string(), |a| a.to_string())
    };
    (pick(left, ["l", "left"]), pick(right, ["r", "right"]))
}

/// A plan's schema with every column qualified by `name`.
fn qualified(plan: &LogicalPlan, name: &str) -> datafusion::common::Result<datafusion::common::DFSchema> {
    datafusion::common::DFSchema::try_from_qualified_schema(name, plan.schema().inner())
}

/// Columns qualified by an alias (`l`) renamed to the node's name (`orders`).
fn requalify(e: Expr, renames: &[(&String, &String)]) -> datafusion::common::Result<Expr> {
    use datafusion::common::tree_node::{Transformed, TreeNode};
    e.transform(|e| {
        Ok(match e {
            Expr::Column(c) => match c.relation.as_ref().and_then(|r| renames.iter().find(|(from, _)| r.table() == from.as_str())) {
                Some((_, to)) => Transformed::yes(Expr::Column(datafusion::common::Column::new(Some(to.as_str()), c.name))),
                None => Transformed::no(Expr::Column(c)),
            },
            e => Transformed::no(e),
        })
    })
    .map(|t| t.data)
}

/// A key holding this share of the left side's rows is hot, unless `salt.threshold` says otherwise.
const DEFAULT_HOT_SHARE: f64 = 0.1;

fn lower_salt(s: &SaltDecl, how: JoinHow, on: &JoinOn, left: &LogicalPlan, d: &mut Diags) -> Option<Salt> {
    let before = d.0.len();
    if !matches!(how, JoinHow::Inner | JoinHow::Left | JoinHow::Semi | JoinHow::Anti) {
        d.push(
            Diagnostic::error("kiln::bad-strategy", s.span.clone(), format!("salting is for inner, left, semi and anti joins, not {} joins", how.name()))
                .label("the right side's unmatched rows would be repeated per salt")
                .help("put the skewed side on the left and use one of those join types"),
        );
    }
    let key_type = match on {
        JoinOn::Using(keys) if keys.len() == 1 => left.schema().field_with_unqualified_name(&keys[0]).ok().map(|f| f.data_type().clone()),
        JoinOn::Keys { left: l, right: r, .. } if l.len() == 1 && r.len() == 1 => {
            use datafusion::logical_expr::ExprSchemable;
            let both = left.schema();
            l[0].get_type(both).ok()
        }
        _ => {
            d.push(Diagnostic::error("kiln::bad-strategy", s.span.clone(), "salting needs a join on exactly one key").label("several keys (or none) here"));
            None
        }
    };
    let mut hot_keys = Vec::new();
    if let Some(dt) = &key_type {
        for k in &s.hot_keys {
            match super::literal_value(&k.value, dt) {
                Ok(v) => hot_keys.push(v),
                Err(msg) => d.push(Diagnostic::error("kiln::type-mismatch", k.span.clone(), format!("hot key: {msg}")).label("not a value of the join key's type")),
            }
        }
    }
    let threshold = match &s.threshold {
        None => DEFAULT_HOT_SHARE,
        Some(t) => match t.value {
            crate::spec::Literal::Float(x) if x > 0.0 && x <= 1.0 => x,
            _ => {
                d.push(Diagnostic::error("kiln::bad-value", t.span.clone(), "`threshold` is a share of rows between 0 and 1").label("e.g. 0.1 for 10%"));
                DEFAULT_HOT_SHARE
            }
        },
    };
    let detect = s.detect.as_ref().map_or(s.hot_keys.is_empty(), |b| b.value);
    if d.0.len() > before {
        return None;
    }
    Some(Salt { buckets: s.buckets.as_ref().map(|b| b.value.max(1) as usize), hot_keys, detect, threshold })
}
