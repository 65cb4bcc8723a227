//! Type checking and lowering: the resolved spec becomes a [`kiln::plan::Pipeline`].
//!
//! Nodes are visited in dependency order. Each expression is parsed against
//! its input's schema and checked by DataFusion's analyzer; then the node's plan
//! is built with the runtime's own [`kiln::transforms::build`] over empty
//! sources with the pinned schemas, which gives the schema the next node sees.
//! A node whose input failed is skipped, so one mistake is reported once.

mod expect;
mod expr;
mod join;
mod lower;
mod predict;
mod spark;
mod streaming;
mod tests;
mod window;

use std::collections::HashMap;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use datafusion::logical_expr::LogicalPlan;
use kiln::plan::{Param, Pipeline, RuntimeOptions};

use crate::diag::{Diagnostic, Diags};
use crate::resolve::{Graph, NodeRef};
use crate::schemas::FileSchemas;
use crate::spec::{Literal, Spec};

pub use expr::{ExprChecker, clean_message};

/// What type checking needs besides the spec.
pub struct Input<'a> {
    pub spec: &'a Spec,
    pub graph: &'a Graph,
    pub file_schemas: &'a FileSchemas,
    pub model_files: &'a crate::models::ModelFiles,
    /// The `udfs` files' functions and model types.
    pub rust: &'a [crate::udfs::RustFile],
    /// The spec's text (to point inside expression strings).
    pub text: &'a str,
    /// Hex SHA-256 of the spec's text.
    pub spec_hash: String,
}

/// Checks every node and, when nothing is wrong, returns the pipeline.
pub fn typeck(input: &Input) -> (Option<Pipeline>, Vec<Diagnostic>) {
    let mut d = Diags::default();
    let spec = input.spec;
    let params = lower_params(spec, &mut d);
    let types: HashMap<String, DataType> = params.iter().map(|p| (p.name.clone(), p.data_type.clone())).collect();
    let checker = ExprChecker::new(input.text, types, input.rust);
    if spec.runtime.checkpoint_dir.is_none() {
        for t in &spec.transforms {
            if let Some(c) = t.checkpoint.as_ref().filter(|c| c.value) {
                d.push(
                    Diagnostic::error("kiln::missing-key", c.span.clone(), format!("transform `{}`: checkpoint = true needs [runtime] checkpoint_dir", t.name.value))
                        .label("where should the result be kept?")
                        .help("[runtime]\ncheckpoint_dir = \"checkpoints\""),
                );
            }
        }
    }
    for text in plain_strings(spec) {
        for diag in checker.check_references(text) {
            d.push(diag);
        }
    }
    let mut plans: HashMap<String, LogicalPlan> = HashMap::new();
    let models = predict::lower_models(&spec.models, input.model_files, input.rust, &mut d);
    let mut nodes = Vec::new();
    // A lowering that fails must say why; an unexplained failure becomes an
    // internal error rather than a pipeline that silently lacks a node.
    let explain = |d: &mut Diags, errors_before: usize, span: &std::ops::Range<usize>, what: &str| {
        if d.0.iter().filter(|x| x.is_error()).count() == errors_before {
            d.push(Diagnostic::error("kiln::internal", span.clone(), format!("internal error: kiln could not plan {what}")).label("here"));
        }
    };
    let errors = |d: &Diags| d.0.iter().filter(|x| x.is_error()).count();
    for node in &input.graph.order {
        let before = errors(&d);
        let (lowered, name) = match *node {
            NodeRef::Source(i) => (lower::source(&spec.sources[i], input.file_schemas, &mut d), &spec.sources[i].name),
            NodeRef::Broken => continue,
            NodeRef::Transform(i) => {
                let t = &spec.transforms[i];
                // An input that failed was reported where it failed.
                let Some(input_plans) = t.inputs.iter().map(|i| plans.get(i.as_str()).cloned()).collect::<Option<Vec<_>>>() else {
                    continue;
                };
                // So was a model that failed.
                if let crate::spec::TransformBody::Predict { model, .. } = &t.body {
                    if matches!(models.get(model.as_str()), Some(None)) {
                        continue;
                    }
                }
                (lower::transform(t, &input_plans, &checker, &models, &mut d), &t.name)
            }
        };
        match lowered {
            Some((n, plan)) => {
                // An `expect` node comes with its quarantine, `NAME.quarantine`.
                let quarantine = match &n.op {
                    kiln::plan::Op::Expect { input, rules, .. } => {
                        let op = kiln::plan::Op::Expect { input: input.clone(), rules: rules.clone(), output: kiln::plan::ExpectOutput::Quarantined };
                        let name = format!("{}.quarantine", n.name);
                        let inputs: Vec<LogicalPlan> = op.inputs().iter().filter_map(|i| plans.get(*i).cloned()).collect();
                        kiln::transforms::build(&name, &op, &inputs).ok().map(|p| (kiln::plan::Node { name, op }, p))
                    }
                    _ => None,
                };
                plans.insert(n.name.clone(), plan);
                nodes.push(n);
                if let Some((q, plan)) = quarantine {
                    plans.insert(q.name.clone(), plan);
                    nodes.push(q);
                }
            }
            None => explain(&mut d, before, &name.span, &format!("`{}`", name.value)),
        }
    }
    let mut sinks = Vec::new();
    for &i in &input.graph.sinks {
        let s = &spec.sinks[i];
        let Some(plan) = plans.get(s.input.as_str()) else { continue };
        let before = errors(&d);
        match lower::sink(s, plan, &checker, &mut d) {
            Some(sink) => sinks.push(sink),
            None => explain(&mut d, before, &s.name.span, &format!("sink `{}`", s.name.value)),
        }
    }
    let tests = tests::lower(spec, &nodes, &plans, &mut d);
    let streaming = if d.has_errors() { None } else { streaming::lower(spec, &nodes, &mut d) };
    if d.has_errors() || sinks.len() != spec.sinks.len() {
        // A sink whose input failed is covered by that input's error.
        return (None, d.0);
    }
    let pipeline = Pipeline {
        name: spec.pipeline.name.value.clone(),
        description: spec.pipeline.description.clone(),
        spec_hash: input.spec_hash.clone(),
        params,
        runtime: lower_runtime(spec),
        nodes,
        sinks,
        tests,
        streaming,
    };
    (Some(pipeline), d.0)
}

/// The spec's strings that are not expressions but may hold `${…}`: paths and the like.
fn plain_strings(spec: &Spec) -> Vec<&crate::spec::Sp<String>> {
    let mut out = Vec::new();
    for s in &spec.sources {
        out.extend(s.path.iter().chain(&s.quarantine).chain(&s.null_value));
        if let Some(k) = &s.kafka {
            out.push(&k.brokers);
            out.push(&k.topic);
            out.extend(k.assign.iter());
            out.extend(k.options.iter().map(|(_, v)| v));
        }
    }
    for s in &spec.sinks {
        out.extend(s.path.iter());
    }
    for m in &spec.models {
        out.push(&m.path);
    }
    out.extend(spec.runtime.spill_dir.iter());
    out.extend(spec.runtime.checkpoint_dir.iter());
    out
}

fn lower_runtime(spec: &Spec) -> RuntimeOptions {
    let r = &spec.runtime;
    RuntimeOptions {
        target_partitions: r.target_partitions.as_ref().map(|v| v.value as usize),
        batch_size: r.batch_size.as_ref().map(|v| v.value as usize),
        memory_limit: r.memory_limit.as_ref().and_then(|v| kiln::session::parse_size(&v.value)),
        spill_dir: r.spill_dir.as_ref().map(|v| v.value.clone()),
        broadcast_threshold: r.broadcast_threshold.as_ref().and_then(|v| kiln::session::parse_size(&v.value)),
        checkpoint_dir: r.checkpoint_dir.as_ref().map(|v| v.value.clone()),
        checkpoints: spec.transforms.iter().filter(|t| t.checkpoint.as_ref().is_some_and(|c| c.value)).map(|t| t.name.value.clone()).collect(),
        storage: storage_options(spec),
    }
}

/// Every source's, sink's and model's `storage_options`, with the path each applies to.
fn storage_options(spec: &Spec) -> Vec<(String, Vec<(String, String)>)> {
    let text = |o: &[(crate::spec::Sp<String>, crate::spec::Sp<String>)]| o.iter().map(|(k, v)| (k.value.clone(), v.value.clone())).collect::<Vec<_>>();
    let sources = spec.sources.iter().filter(|s| !s.storage_options.is_empty()).filter_map(|s| Some((s.path.as_ref()?.value.clone(), text(&s.storage_options))));
    let sinks = spec.sinks.iter().filter(|s| !s.storage_options.is_empty()).filter_map(|s| Some((s.path.as_ref()?.value.clone(), text(&s.storage_options))));
    let models = spec.models.iter().filter(|m| !m.storage_options.is_empty()).map(|m| (m.path.value.clone(), text(&m.storage_options)));
    sources.chain(sinks).chain(models).collect()
}

fn lower_params(spec: &Spec, d: &mut Diags) -> Vec<Param> {
    let mut out = Vec::new();
    for p in &spec.params {
        let declared = p.type_name.as_ref().and_then(|t| match crate::spec::types::parse(&t.value) {
            Ok(ct) => Some(ct.data_type),
            Err(msg) => {
                d.push(bad_type(t, &msg));
                None
            }
        });
        let default_type = p.default.as_ref().map(|v| literal_type(&v.value));
        let data_type = declared.clone().or(default_type).unwrap_or(DataType::Utf8);
        let default = match &p.default {
            Some(v) => match literal_value(&v.value, &data_type) {
                Ok(s) => Some(s),
                Err(msg) => {
                    d.push(Diagnostic::error("kiln::type-mismatch", v.span.clone(), format!("param `{}`: default {msg}", p.name.value)).label("here"));
                    None
                }
            },
            None => None,
        };
        out.push(Param {
            name: p.name.value.clone(),
            data_type,
            default,
            env: p.env.as_ref().map(|e| e.value.clone()),
            description: p.description.clone(),
        });
    }
    out
}

/// A wrong type name, with "did you mean".
pub(crate) fn bad_type(t: &crate::spec::Sp<String>, msg: &str) -> Diagnostic {
    let mut diag = Diagnostic::error("kiln::unknown-type", t.span.clone(), msg.to_string()).label("not a Kiln type");
    let word = t.value.split(|c: char| c == '(' || c == '<' || c.is_whitespace()).next().unwrap_or("");
    diag = match crate::diag::did_you_mean(word, crate::spec::types::TYPE_NAMES.iter().copied()) {
        Some(h) => diag.help(h),
        None => diag.help(format!("types: {}", crate::spec::types::TYPE_NAMES.join(", "))),
    };
    diag
}

/// The type a TOML literal has on its own.
pub(crate) fn literal_type(l: &Literal) -> DataType {
    match l {
        Literal::Str(_) => DataType::Utf8,
        Literal::Int(_) => DataType::Int64,
        Literal::Float(_) => DataType::Float64,
        Literal::Bool(_) => DataType::Boolean,
    }
}

/// A TOML literal as a value of `dt`; the error says why it does not fit.
pub(crate) fn literal_value(l: &Literal, dt: &DataType) -> Result<ScalarValue, String> {
    let display = crate::spec::types::display(dt);
    let from = match l {
        Literal::Str(s) => return ScalarValue::try_from_string(s.clone(), dt).map_err(|_| format!("\"{s}\" is not a {display}")),
        Literal::Int(i) => ScalarValue::Int64(Some(*i)),
        Literal::Float(f) => ScalarValue::Float64(Some(*f)),
        Literal::Bool(b) => ScalarValue::Boolean(Some(*b)),
    };
    let ok = match (l, dt) {
        (Literal::Bool(_), DataType::Boolean) => true,
        (Literal::Bool(_), _) | (_, DataType::Boolean) => false,
        (_, DataType::Utf8) => false,
        (Literal::Float(_), d) if d.is_integer() => false,
        _ => dt.is_numeric(),
    };
    if !ok {
        return Err(format!("{from} is not a {display}"));
    }
    from.cast_to(dt).map_err(|_| format!("{from} does not fit in {display}"))
}
