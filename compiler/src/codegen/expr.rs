//! Tokens that rebuild a DataFusion `Expr` through `kiln::expr`'s constructors
//! and DataFusion's builder methods, so the generated code reads like the
//! expression it came from: `col("amount").gt(lit(0f64))`.

use datafusion::logical_expr::expr::{AggregateFunction, Alias, Between, BinaryExpr, Case, Cast, InList, Like, ScalarFunction, TryCast};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::{Expr, Operator, SortExpr};
use proc_macro2::TokenStream;
use quote::quote;

use super::Unsupported;
use super::values::{data_type, scalar};

pub fn expr(e: &Expr) -> Result<TokenStream, Unsupported> {
    Ok(match e {
        Expr::Column(c) => {
            let name = &c.name;
            match &c.relation {
                Some(r) => {
                    let r = r.to_string();
                    quote!(qcol(#r, #name))
                }
                None => quote!(col(#name)),
            }
        }
        Expr::Literal(v, None) => literal(v)?,
        Expr::Alias(Alias { expr: inner, name, relation: None, .. }) => {
            let inner = expr(inner)?;
            quote!(#inner.alias(#name))
        }
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
            let (l, r) = (expr(left)?, expr(right)?);
            match method(op) {
                Some(m) => quote!(#l.#m(#r)),
                None => {
                    let op = operator(op)?;
                    quote!(binary_expr(#l, Operator::#op, #r))
                }
            }
        }
        Expr::Not(inner) => {
            let inner = expr(inner)?;
            quote!(not(#inner))
        }
        Expr::IsNull(inner) => unary(inner, quote!(is_null))?,
        Expr::IsNotNull(inner) => unary(inner, quote!(is_not_null))?,
        Expr::IsTrue(inner) => unary(inner, quote!(is_true))?,
        Expr::IsFalse(inner) => unary(inner, quote!(is_false))?,
        Expr::IsNotTrue(inner) => unary(inner, quote!(is_not_true))?,
        Expr::IsNotFalse(inner) => unary(inner, quote!(is_not_false))?,
        Expr::IsUnknown(inner) => unary(inner, quote!(is_unknown))?,
        Expr::IsNotUnknown(inner) => unary(inner, quote!(is_not_unknown))?,
        Expr::Negative(inner) => {
            let inner = expr(inner)?;
            quote!(negative(#inner))
        }
        Expr::Between(Between { expr: inner, negated, low, high }) => {
            let (inner, low, high) = (expr(inner)?, expr(low)?, expr(high)?);
            if *negated { quote!(#inner.not_between(#low, #high)) } else { quote!(#inner.between(#low, #high)) }
        }
        Expr::Like(Like { negated, expr: inner, pattern, escape_char, case_insensitive }) => {
            let (inner, pattern) = (expr(inner)?, expr(pattern)?);
            let escape = match escape_char {
                Some(c) => quote!(Some(#c)),
                None => quote!(None),
            };
            let m = match (negated, case_insensitive) {
                (false, false) => quote!(like),
                (true, false) => quote!(not_like),
                (false, true) => quote!(ilike),
                (true, true) => quote!(not_ilike),
            };
            if escape_char.is_some() {
                quote!(Expr::Like(datafusion::logical_expr::expr::Like::new(#negated, Box::new(#inner), Box::new(#pattern), #escape, #case_insensitive)))
            } else {
                quote!(#inner.#m(#pattern))
            }
        }
        Expr::Case(Case { expr: base, when_then_expr, else_expr }) => {
            let mut arms = Vec::new();
            for (w, t) in when_then_expr {
                arms.push((expr(w)?, expr(t)?));
            }
            let (w0, t0) = arms.first().cloned().ok_or_else(|| Unsupported("a CASE without WHEN".into()))?;
            let mut out = match base {
                Some(b) => {
                    let b = expr(b)?;
                    quote!(case(#b).when(#w0, #t0))
                }
                None => quote!(when(#w0, #t0)),
            };
            for (w, t) in arms.iter().skip(1) {
                out = quote!(#out.when(#w, #t));
            }
            match else_expr {
                Some(e) => {
                    let e = expr(e)?;
                    quote!(#out.otherwise(#e)?)
                }
                None => quote!(#out.end()?),
            }
        }
        Expr::Cast(Cast { expr: inner, field }) => {
            let (inner, dt) = (expr(inner)?, data_type(field.data_type())?);
            quote!(cast(#inner, #dt))
        }
        Expr::TryCast(TryCast { expr: inner, field }) => {
            let (inner, dt) = (expr(inner)?, data_type(field.data_type())?);
            quote!(try_cast(#inner, #dt))
        }
        Expr::ScalarFunction(ScalarFunction { func, args }) => {
            let name = func.name();
            let args = args.iter().map(expr).collect::<Result<Vec<_>, _>>()?;
            quote!(call(#name, Vec::from([#(#args),*]))?)
        }
        Expr::AggregateFunction(AggregateFunction { func, params }) => {
            if params.filter.is_some() || !params.order_by.is_empty() || params.null_treatment.is_some() {
                return Err(Unsupported("FILTER, ORDER BY or IGNORE NULLS inside an aggregate call".into()));
            }
            let name = func.name();
            let distinct = params.distinct;
            let args = params.args.iter().map(expr).collect::<Result<Vec<_>, _>>()?;
            quote!(aggregate(#name, Vec::from([#(#args),*]), #distinct)?)
        }
        Expr::InList(InList { expr: inner, list, negated }) => {
            let inner = expr(inner)?;
            let list = list.iter().map(expr).collect::<Result<Vec<_>, _>>()?;
            quote!(in_list(#inner, Vec::from([#(#list),*]), #negated))
        }
        Expr::Placeholder(p) => {
            let name = p.id.trim_start_matches('$');
            let dt = p.field.as_ref().map(|f| data_type(f.data_type())).transpose()?.unwrap_or(quote!(DataType::Utf8));
            quote!(param(#name, #dt))
        }
        other => return Err(Unsupported(format!("the expression `{other}`"))),
    })
}

pub fn sort(s: &SortExpr) -> Result<TokenStream, Unsupported> {
    let e = expr(&s.expr)?;
    let (asc, nulls_first) = (s.asc, s.nulls_first);
    Ok(quote!(sort(#e, #asc, #nulls_first)))
}

/// `lit(...)` with the shortest spelling that gives the same `ScalarValue`.
fn literal(v: &ScalarValue) -> Result<TokenStream, Unsupported> {
    Ok(match v {
        ScalarValue::Utf8(Some(s)) => quote!(lit(#s)),
        ScalarValue::Boolean(Some(b)) => quote!(lit(#b)),
        ScalarValue::Int32(Some(i)) => quote!(lit(#i)),
        ScalarValue::Int64(Some(i)) => quote!(lit(#i)),
        ScalarValue::Float64(Some(x)) if x.is_finite() => {
            let x = proc_macro2::Literal::f64_suffixed(*x);
            quote!(lit(#x))
        }
        v => {
            let v = scalar(v)?;
            quote!(lit(#v))
        }
    })
}

fn unary(inner: &Expr, m: TokenStream) -> Result<TokenStream, Unsupported> {
    let inner = expr(inner)?;
    Ok(quote!(#inner.#m()))
}

fn method(op: &Operator) -> Option<TokenStream> {
    Some(match op {
        Operator::Eq => quote!(eq),
        Operator::NotEq => quote!(not_eq),
        Operator::Lt => quote!(lt),
        Operator::LtEq => quote!(lt_eq),
        Operator::Gt => quote!(gt),
        Operator::GtEq => quote!(gt_eq),
        Operator::And => quote!(and),
        Operator::Or => quote!(or),
        _ => return None,
    })
}

fn operator(op: &Operator) -> Result<TokenStream, Unsupported> {
    let name = format!("{op:?}");
    // Operator's variants are plain identifiers; Debug prints the variant name.
    name.parse::<TokenStream>().map_err(|_| Unsupported(format!("the operator {op}")))
}
