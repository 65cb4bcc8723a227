//! Expressions: SQL text → DataFusion `Expr`, checked against an input schema
//! through DataFusion's own planner and analyzer (type coercion included), with
//! errors turned into diagnostics that point into the spec.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field};
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DFSchema, DataFusionError, SchemaError};
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::session_state::SessionState;
use datafusion::logical_expr::expr::Placeholder;
use datafusion::logical_expr::expr_rewriter::unnormalize_col;
use datafusion::logical_expr::{Expr, LogicalPlan, SortExpr};

use crate::diag::{Diagnostic, did_you_mean};
use crate::spec::Sp;

/// How deeply an expression may nest (operators plus parentheses).
pub const MAX_DEPTH: usize = 400;

/// Parses and checks expressions for one spec.
pub struct ExprChecker<'a> {
    state: SessionState,
    /// Parameter name → type.
    params: HashMap<String, DataType>,
    /// The spec text, to map positions inside expression strings.
    text: &'a str,
    /// `#[kiln::udf]`s: (name, signature, file:line), for messages about their calls.
    udfs: Vec<(String, String, String)>,
}

impl<'a> ExprChecker<'a> {
    pub fn new(text: &'a str, params: HashMap<String, DataType>, rust: &[crate::udfs::RustFile]) -> Self {
        use datafusion::execution::FunctionRegistry;
        let mut config = kiln::session::config(&Default::default());
        config.options_mut().sql_parser.collect_spans = true;
        let mut state = SessionStateBuilder::new().with_config(config).with_default_features().build();
        kiln::functions::install(&mut state);
        for stub in crate::udfs::stubs(rust) {
            let _ = state.register_udf(stub);
        }
        for stub in super::spark::stubs(|name| state.udf(name).is_ok()) {
            let _ = state.register_udf(stub);
        }
        let udfs = rust.iter().flat_map(|f| &f.udfs).map(|u| (u.name.clone(), u.text.clone(), u.place.clone())).collect();
        ExprChecker { state, params, text, udfs }
    }

    /// Parses `text` against `schema`. Columns come out unqualified; params
    /// become typed placeholders.
    pub fn parse(&self, text: &Sp<String>, schema: &DFSchema) -> Result<Expr, Diagnostic> {
        Ok(unnormalize_col(self.parse_qualified(text, schema)?))
    }

    /// Plans a SQL query over `tables` (empty, with the given schemas).
    /// Expressions nest at most [`MAX_DEPTH`] deep: planning, type checking and
    /// code generation recurse over the tree, and a chain of thousands of `OR`s
    /// is better written as `x IN (…)`.
    fn check_size(&self, text: &Sp<String>, limit: usize) -> Result<(), Diagnostic> {
        use datafusion::sql::sqlparser::dialect::GenericDialect;
        use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
        let Ok(tokens) = Tokenizer::new(&GenericDialect {}, &text.value).tokenize() else { return Ok(()) };
        let (mut depth, mut max_depth, mut operators) = (0usize, 0usize, 0usize);
        for t in &tokens {
            match t {
                Token::LParen => {
                    depth += 1;
                    max_depth = max_depth.max(depth);
                }
                Token::RParen => depth = depth.saturating_sub(1),
                Token::Word(w) if matches!(w.value.to_ascii_uppercase().as_str(), "AND" | "OR" | "NOT") => operators += 1,
                Token::Plus | Token::Minus | Token::Mul | Token::Div | Token::Mod | Token::StringConcat | Token::Eq | Token::Neq | Token::Lt | Token::Gt | Token::LtEq | Token::GtEq => operators += 1,
                _ => {}
            }
        }
        if max_depth + operators > limit {
            return Err(Diagnostic::error("kiln::too-deep", self.span_of(text), format!("this expression nests {} deep; kiln allows {limit}", max_depth + operators))
                .label("too many operators or parentheses")
                .help("a long chain of `x = a OR x = b …` is `x IN (a, b, …)`; split long arithmetic over several with_columns entries"));
        }
        Ok(())
    }

    pub fn plan_sql(&self, query: &Sp<String>, tables: &[(String, datafusion::arrow::datatypes::SchemaRef)]) -> Result<LogicalPlan, Diagnostic> {
        // A query holds many expressions side by side: the bound is on the whole text.
        self.check_size(query, 10 * MAX_DEPTH)?;
        use datafusion::datasource::empty::EmptyTable;
        use datafusion::prelude::SessionContext;
        let sql = self.substitute_params(query)?;
        let ctx = SessionContext::new_with_state(self.state.clone());
        let first = tables.first().map(|(_, s)| s.clone());
        for (name, schema) in tables {
            // The state's catalog is shared by every query of the spec: each sees only its own inputs.
            let _ = ctx.deregister_table(name.as_str());
            ctx.register_table(name.as_str(), Arc::new(EmptyTable::new(schema.clone())))
                .map_err(|e| Diagnostic::error("kiln::invalid-transform", query.span.clone(), format!("cannot expose `{name}` to the query: {e}")).label("here"))?;
        }
        let runtime = tokio::runtime::Builder::new_current_thread().build().map_err(|e| Diagnostic::error("kiln::internal", query.span.clone(), e.to_string()))?;
        let schema = first.and_then(|s| DFSchema::try_from(s.as_ref().clone()).ok()).unwrap_or_else(DFSchema::empty);
        let planned = runtime.block_on(ctx.state().create_logical_plan(&sql));
        for (name, _) in tables {
            let _ = ctx.deregister_table(name.as_str());
        }
        let planned = planned.and_then(super::spark::rewrite_plan);
        let plan = planned.map_err(|e| {
            let d = self.diagnostic(&e, query, &schema, sql != query.value);
            match clean_message(&e).strip_prefix("table '").and_then(|t| t.split_once("' not found")) {
                Some((table, _)) => {
                    let table = table.rsplit('.').next().unwrap_or(table);
                    let names: Vec<&str> = tables.iter().map(|(n, _)| n.as_str()).collect();
                    Diagnostic::error("kiln::unknown-input", d.span, format!("the query reads `{table}`, which is not one of its inputs"))
                        .label("not in `inputs`")
                        .help(format!("add it: inputs = [{}]", names.iter().chain([&table]).map(|n| format!("\"{n}\"")).collect::<Vec<_>>().join(", ")))
                }
                None => d,
            }
        })?;
        self.analyze(plan.clone()).map_err(|e| self.diagnostic(&e, query, &schema, sql != query.value))?;
        Ok(plan)
    }

    /// Like [`parse`](Self::parse), keeping the columns' qualifiers.
    pub fn parse_qualified(&self, text: &Sp<String>, schema: &DFSchema) -> Result<Expr, Diagnostic> {
        self.check_size(text, MAX_DEPTH)?;
        let sql = self.substitute_params(text)?;
        let expr = self
            .state
            .create_logical_expr(&sql, schema)
            .map_err(|e| self.diagnostic(&e, text, schema, sql != text.value))?;
        let expr = super::spark::rewrite(expr, schema).map_err(|e| self.diagnostic(&e, text, schema, true))?;
        let expr = expr
            .transform(|e| {
                Ok(match e {
                    Expr::Placeholder(p) if p.field.is_none() => {
                        let name = p.id.trim_start_matches('$').to_string();
                        let dt = self.params.get(&name).cloned().unwrap_or(DataType::Utf8);
                        Transformed::yes(Expr::Placeholder(Placeholder::new_with_field(p.id, Some(Arc::new(Field::new(name, dt, true))))))
                    }
                    e => Transformed::no(e),
                })
            })
            .map(|t| t.data)
            .map_err(|e| self.diagnostic(&e, text, schema, true))?;
        let expr = spark_semantics(expr, schema).map_err(|e| self.diagnostic(&e, text, schema, true))?;
        if let Some(d) = self.lint_comparisons(&expr, text, schema) {
            return Err(d);
        }
        // What type-checks must generate; what cannot is an error here, at the expression.
        // (A window call is stored as its function and arguments: those are what generate.)
        let generated: Vec<&Expr> = match &expr {
            Expr::WindowFunction(w) => w.params.args.iter().collect(),
            Expr::Alias(a) => match a.expr.as_ref() {
                Expr::WindowFunction(w) => w.params.args.iter().collect(),
                e => vec![e],
            },
            // Window calls inside an expression are rejected by the window lowering.
            e if e.exists(|x| Ok(matches!(x, Expr::WindowFunction(_)))).unwrap_or(false) => vec![],
            e => vec![e],
        };
        if let Some(crate::codegen::Unsupported(what)) = generated.into_iter().find_map(|e| crate::codegen::expr::expr(e).err()) {
            return Err(Diagnostic::error("kiln::unsupported", self.span_of(text), format!("kiln cannot generate code for {what} yet")).label("in this expression"));
        }
        Ok(expr)
    }

    /// Kiln is stricter than DataFusion here: DataFusion compares a string with a
    /// number as strings (`'10' < '5'`), which Spark users never mean.
    fn lint_comparisons(&self, expr: &Expr, text: &Sp<String>, schema: &DFSchema) -> Option<Diagnostic> {
        use datafusion::common::tree_node::TreeNodeRecursion;
        use datafusion::logical_expr::{BinaryExpr, ExprSchemable, Operator};
        let mut found = None;
        let _ = expr.apply(|e| {
            if let Expr::BinaryExpr(BinaryExpr { left, op, right }) = e {
                if matches!(op, Operator::Eq | Operator::NotEq | Operator::Lt | Operator::LtEq | Operator::Gt | Operator::GtEq) {
                    if let (Ok(l), Ok(r)) = (left.get_type(schema), right.get_type(schema)) {
                        let is_string = |t: &DataType| matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View);
                        if (is_string(&l) && r.is_numeric()) || (l.is_numeric() && is_string(&r)) {
                            let (string_side, number_type) = if is_string(&l) { (left, &r) } else { (right, &l) };
                            let ty = crate::spec::types::display(number_type);
                            let shown = match unnormalize_col(*string_side.clone()) {
                                Expr::Column(c) => c.name,
                                other => other.to_string(),
                            };
                            found = Some(
                                Diagnostic::error("kiln::string-number-comparison", self.span_of(text), format!("the string `{shown}` is compared with a number ({ty})"))
                                    .label(format!("string {op} {ty}"))
                                    .help(format!("cast the string side explicitly, e.g. CAST({shown} AS {}), so the comparison is numeric", sql_type(number_type)))
                                    .note("DataFusion would compare the two as strings, where '10' < '5'"),
                            );
                            return Ok(TreeNodeRecursion::Stop);
                        }
                    }
                }
            }
            Ok(TreeNodeRecursion::Continue)
        });
        found
    }

    /// Parses `expr [ASC|DESC] [NULLS FIRST|LAST]`. Without NULLS, nulls sort
    /// first ascending and last descending (Spark).
    pub fn parse_sort(&self, text: &Sp<String>, schema: &DFSchema) -> Result<SortExpr, Diagnostic> {
        let mut words: Vec<&str> = text.value.split_whitespace().collect();
        let upper = |w: &str| w.to_ascii_uppercase();
        let mut nulls_first = None;
        if words.len() >= 3 && upper(words[words.len() - 2]) == "NULLS" {
            nulls_first = match upper(words[words.len() - 1]).as_str() {
                "FIRST" => Some(true),
                "LAST" => Some(false),
                _ => None,
            };
            if nulls_first.is_some() {
                words.truncate(words.len() - 2);
            }
        }
        let mut asc = true;
        if let Some(last) = words.last().map(|w| upper(w)) {
            if last == "DESC" || last == "ASC" {
                asc = last == "ASC";
                words.pop();
            }
        }
        let expr_text = words.join(" ");
        // Keep the span pointing at the whole item; positions inside are mapped only when unchanged.
        let item = if expr_text == text.value { text.clone() } else { Sp::new(expr_text, text.span.clone()) };
        let expr = self.parse(&item, schema)?;
        Ok(SortExpr::new(expr, asc, nulls_first.unwrap_or(asc)))
    }

    /// Runs DataFusion's analyzer (type coercion and checks) over a plan.
    pub fn analyze(&self, plan: LogicalPlan) -> Result<LogicalPlan, DataFusionError> {
        self.state.analyzer().execute_and_check(plan, self.state.config_options(), |_, _| {})
    }

    /// The `${…}` references of a plain string (a path, a URL): `${params.NAME}`
    /// must be declared, `${env.NAME}` is read at run time; anything else is an error.
    pub fn check_references(&self, text: &Sp<String>) -> Vec<Diagnostic> {
        let mut out = Vec::new();
        let mut offset = 0;
        while let Some(start) = text.value[offset..].find("${").map(|s| s + offset) {
            let Some(len) = text.value[start..].find('}') else {
                out.push(
                    Diagnostic::error("kiln::bad-reference", self.inner_span(text, start..text.value.len()), "unclosed `${`")
                        .label("expected `${params.NAME}` or `${env.NAME}`"),
                );
                break;
            };
            let reference = &text.value[start + 2..start + len];
            let span = self.inner_span(text, start..start + len + 1);
            match reference.split_once('.') {
                Some(("params", name)) if self.params.contains_key(name) => {}
                Some(("env", name)) if !name.is_empty() => {}
                Some(("params", name)) => {
                    let d = Diagnostic::error("kiln::unknown-param", span, format!("unknown parameter `{name}`")).label("not declared in [params]");
                    out.push(match did_you_mean(name, self.params.keys().map(String::as_str)) {
                        Some(h) => d.help(h),
                        None => d.help(format!("declare it:\n[params.{name}]\ndefault = ...")),
                    });
                }
                _ => out.push(
                    Diagnostic::error("kiln::bad-reference", span, format!("`${{{reference}}}` is not a reference"))
                        .label("expected `${params.NAME}` or `${env.NAME}`"),
                ),
            }
            offset = start + len + 1;
        }
        out
    }

    fn substitute_params(&self, text: &Sp<String>) -> Result<String, Diagnostic> {
        let mut out = String::new();
        let mut rest = text.value.as_str();
        let mut offset = 0;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let Some(end) = after.find('}') else {
                return Err(Diagnostic::error("kiln::bad-reference", self.inner_span(text, offset + start..text.value.len()), "unclosed `${`")
                    .label("expected `${params.NAME}`"));
            };
            let reference = &after[..end];
            let span = self.inner_span(text, offset + start..offset + start + end + 3);
            match reference.split_once('.') {
                Some(("params", name)) if self.params.contains_key(name) => out.push_str(&format!("${name}")),
                Some(("params", name)) => {
                    let mut d = Diagnostic::error("kiln::unknown-param", span, format!("unknown parameter `{name}`"))
                        .label("not declared in [params]");
                    d = match did_you_mean(name, self.params.keys().map(String::as_str)) {
                        Some(h) => d.help(h),
                        None => d.help(format!("declare it:\n[params.{name}]\ndefault = ...")),
                    };
                    return Err(d);
                }
                Some(("env", name)) => {
                    return Err(Diagnostic::error("kiln::env-in-expression", span, format!("`${{env.{name}}}` cannot be used inside an expression"))
                        .label("environment variables are for strings such as paths")
                        .help(format!("declare a parameter that reads it:\n[params.{}]\nenv = \"{name}\"\nand write ${{params.{}}}", name.to_ascii_lowercase(), name.to_ascii_lowercase())));
                }
                _ => {
                    return Err(Diagnostic::error("kiln::bad-reference", span, format!("`${{{reference}}}` is not a reference"))
                        .label("expected `${params.NAME}` or `${env.NAME}`"));
                }
            }
            let consumed = start + 2 + end + 1;
            offset += consumed;
            rest = &rest[consumed..];
        }
        out.push_str(rest);
        Ok(out)
    }

    /// The span of an expression's text inside its quotes (the whole string's
    /// span when it is written with escapes).
    pub fn span_of(&self, text: &Sp<String>) -> Range<usize> {
        self.inner_span(text, 0..text.value.len())
    }

    /// The span of `range` (bytes of the expression text) in the spec, when the
    /// string is written without escapes; else the whole string's span.
    fn inner_span(&self, text: &Sp<String>, range: Range<usize>) -> Range<usize> {
        for quote in [1usize, 3] {
            let (s, e) = (text.span.start + quote, text.span.end.saturating_sub(quote));
            if s <= e && self.text.get(s..e) == Some(text.value.as_str()) {
                return s + range.start..s + range.end.min(text.value.len());
            }
        }
        text.span.clone()
    }

    /// A DataFusion error about expression `text` as a diagnostic.
    pub fn diagnostic(&self, err: &DataFusionError, text: &Sp<String>, schema: &DFSchema, rewritten: bool) -> Diagnostic {
        let location = err.diagnostic().and_then(|d| d.span).map(|s| (s.start.line as usize, s.start.column as usize, Some((s.end.line as usize, s.end.column as usize))))
            .or_else(|| parser_location(&err.to_string()).map(|(l, c)| (l, c, None)));
        let span = match location {
            Some((line, column, end)) if !rewritten && line > 0 => {
                let start = offset_of(&text.value, line, column);
                let end = match end {
                    Some((l, c)) => offset_of(&text.value, l, c),
                    // A parser position: underline the token that starts there.
                    None => start.map(|s| s + text.value[s..].find(char::is_whitespace).unwrap_or(text.value.len() - s).max(1)),
                };
                match (start, end) {
                    (Some(a), Some(b)) if a < b => self.inner_span(text, a..b),
                    _ => self.span_of(text),
                }
            }
            _ => self.span_of(text),
        };
        let columns: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
        if let Some(SchemaError::FieldNotFound { field, .. }) = find_schema_error(err) {
            let mut qualifiers: Vec<String> = schema.iter().filter_map(|(q, _)| q.map(|q| q.table().to_string())).collect();
            qualifiers.dedup();
            if let Some(q) = &field.relation {
                // The name exists, the qualifier does not: never suggest the very name rejected.
                if columns.contains(&field.name) || !qualifiers.iter().any(|x| x == q.table()) {
                    let mut d = Diagnostic::error("kiln::unknown-column", span, format!("unknown column `{q}.{}`", field.name))
                        .label(format!("no input here is called `{}`", q.table()));
                    if !qualifiers.is_empty() {
                        d = d.help(format!("qualify columns with {}", qualifiers.iter().map(|q| format!("`{q}`")).collect::<Vec<_>>().join(" or ")));
                    }
                    return d.note(format!("the input's columns: {}", columns.join(", ")));
                }
            }
            let mut d = Diagnostic::error("kiln::unknown-column", span, format!("unknown column `{}`", field.name))
                .label("not a column of the input");
            if let Some(h) = did_you_mean(&field.name, columns.iter().map(String::as_str).filter(|c| *c != field.name)) {
                d = d.help(h);
            }
            return d.note(format!("the input's columns: {}", columns.join(", ")));
        }
        let (message, help) = humanize(&clean_message(err));
        let mut d = Diagnostic::error("kiln::invalid-expression", span, message.clone()).label(format!("in `{}`", text.value));
        if let Some(h) = help {
            d = d.help(h);
        }
        // A call of a #[kiln::udf] that does not fit: show its Rust signature.
        for (name, sig, place) in &self.udfs {
            if [format!("'{name}'"), format!("`{name}`"), format!("{name}(")].iter().any(|n| message.contains(n.as_str())) {
                d = d.note(format!("`{name}` is a #[kiln::udf] ({place}): {sig}"));
            }
        }
        d
    }
}

/// Where Spark and DataFusion give an operator different meanings, Spark's
/// (SPEC §11): `/` of two integers is a fractional division (7 / 2 = 3.5, a
/// double), a division or modulo by zero is NULL, and `concat` is NULL when
/// any argument is NULL.
pub(super) fn spark_semantics(expr: Expr, schema: &DFSchema) -> Result<Expr, DataFusionError> {
    use datafusion::logical_expr::{BinaryExpr, ExprSchemable, Operator, cast};
    Ok(expr
        .transform_up(|e| {
            Ok(match e {
                Expr::BinaryExpr(BinaryExpr { left, op: op @ (Operator::Divide | Operator::Modulo), right }) => {
                    let integers = left.get_type(schema).is_ok_and(|t| t.is_integer()) && right.get_type(schema).is_ok_and(|t| t.is_integer());
                    let (left, right) = match (op, integers) {
                        (Operator::Divide, true) => (cast(*left, DataType::Float64), cast(*right, DataType::Float64)),
                        _ => (*left, *right),
                    };
                    // By zero: NULL, as Spark (DataFusion would fail the run).
                    let zero = Expr::Literal(datafusion::common::ScalarValue::Int64(Some(0)), None);
                    let right = datafusion::functions::expr_fn::nullif(right, zero);
                    Transformed::yes(Expr::BinaryExpr(BinaryExpr::new(Box::new(left), op, Box::new(right))))
                }
                Expr::ScalarFunction(f) if f.func.name() == "concat" && !f.args.is_empty() => {
                    let any_null = f.args.iter().cloned().map(|a| a.is_null()).reduce(Expr::or).unwrap_or(Expr::Literal(datafusion::common::ScalarValue::Boolean(Some(false)), None));
                    Transformed::yes(datafusion::logical_expr::when(any_null, Expr::Literal(datafusion::common::ScalarValue::Utf8(None), None)).otherwise(Expr::ScalarFunction(f))?)
                }
                e => Transformed::no(e),
            })
        })?
        .data)
}

fn find_schema_error(err: &DataFusionError) -> Option<&SchemaError> {
    match err {
        DataFusionError::SchemaError(e, _) => Some(e),
        DataFusionError::Context(_, inner) => find_schema_error(inner),
        DataFusionError::Diagnostic(_, inner) => find_schema_error(inner),
        DataFusionError::Shared(inner) => find_schema_error(inner),
        _ => None,
    }
}

/// DataFusion's message without its category prefixes and backtrace.
pub fn clean_message(err: &DataFusionError) -> String {
    let mut text = err.strip_backtrace();
    for prefix in ["Error during planning: ", "Schema error: ", "SQL error: ", "Optimizer rule 'type_coercion' failed\ncaused by\n", "type_coercion\ncaused by\n", "Internal error: ", "This feature is not implemented: ", "Arrow error: "] {
        while let Some(pos) = text.find(prefix) {
            text.replace_range(pos..pos + prefix.len(), "");
        }
    }
    text.trim().to_string()
}

/// DataFusion's wording made shorter, in Kiln's type names, with the
/// candidate signatures moved to a help line.
fn humanize(text: &str) -> (String, Option<String>) {
    let text = match text.find("This issue was likely caused by a bug") {
        Some(start) => {
            let end = text[start..].find("issues.").map_or(text.len(), |e| start + e + "issues.".len());
            format!("{}{}", &text[..start], &text[end..])
        }
        None => text.to_string(),
    };
    const MARK: &str = "No function matches the given name and argument types '";
    if let Some(pos) = text.find(MARK) {
        let rest = &text[pos + MARK.len()..];
        let call = rest.split('\'').next().unwrap_or("");
        let candidates: Vec<String> = text
            .split("Candidate functions:")
            .nth(1)
            .map(|c| c.lines().map(str::trim).filter(|l| !l.is_empty()).map(kiln_types).collect())
            .unwrap_or_default();
        let fname = call.split('(').next().unwrap_or(call);
        let message = format!("`{fname}` cannot be called with these argument types: {}", kiln_types(call));
        let help = (!candidates.is_empty()).then(|| format!("`{fname}` accepts: {}", candidates.join(", ")));
        return (message, help);
    }
    if let Some(inner) = text.strip_prefix("ParserError(\"").and_then(|t| t.strip_suffix("\")")) {
        let inner = inner.split(" at Line: ").next().unwrap_or(inner);
        return (format!("syntax error: {inner}"), None);
    }
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    let first = lines.next().unwrap_or("").to_string();
    let help = lines.find(|l| l.starts_with("Did you mean")).map(|l| l.replace('\'', "`").replace("Did you mean", "did you mean"));
    (kiln_types(&first), help)
}

/// Arrow type names in a message, as Kiln spells them.
fn kiln_types(text: &str) -> String {
    const NAMES: &[(&str, &str)] = &[
        ("LargeUtf8", "string"), ("Utf8View", "string"), ("Utf8", "string"), ("Boolean", "bool"),
        ("Float64", "float64"), ("Float32", "float32"), ("Int64", "int64"), ("Int32", "int32"),
        ("Int16", "int16"), ("Int8", "int8"), ("UInt64", "uint64"), ("UInt32", "uint32"),
        ("UInt16", "uint16"), ("UInt8", "uint8"), ("Date32", "date"),
    ];
    let mut out = String::with_capacity(text.len());
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        let mapped = NAMES.iter().find(|(a, _)| *a == word.as_str()).map_or(word.as_str(), |(_, b)| *b);
        out.push_str(mapped);
        word.clear();
    };
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            word.push(c);
        } else {
            flush(&mut word, &mut out);
            out.push(c);
        }
    }
    flush(&mut word, &mut out);
    out
}

fn sql_type(t: &DataType) -> &'static str {
    match t {
        DataType::Float32 | DataType::Float64 => "DOUBLE",
        DataType::Decimal128(..) | DataType::Decimal256(..) => "DECIMAL",
        _ => "BIGINT",
    }
}

/// `Line: L, Column: C` in a SQL parser message.
fn parser_location(message: &str) -> Option<(usize, usize)> {
    let rest = &message[message.find("Line: ")? + 6..];
    let (line, rest) = rest.split_once(", Column: ")?;
    let column: String = rest.chars().take_while(char::is_ascii_digit).collect();
    Some((line.trim().parse().ok()?, column.parse().ok()?))
}

/// Byte offset of a 1-based line/column (in characters) inside `text`.
fn offset_of(text: &str, line: usize, column: usize) -> Option<usize> {
    let mut offset = 0;
    for (i, l) in text.split('\n').enumerate() {
        if i + 1 == line {
            let byte = l.char_indices().nth(column.saturating_sub(1)).map_or(l.len(), |(b, _)| b);
            return Some(offset + byte);
        }
        offset += l.len() + 1;
    }
    None
}
