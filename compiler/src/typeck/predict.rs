//! `[models.NAME]` and `predict`: the weights' shapes against the architecture,
//! and the node's features against the model.

use std::collections::HashMap;

use datafusion::arrow::datatypes::DataType;
use datafusion::logical_expr::LogicalPlan;
use kiln::plan::{Activation, Architecture, Features, Model, ModelDevice, Op};

use super::lower::{require_column, schema_names};
use crate::diag::{Diagnostic, Diags, did_you_mean};
use crate::models::ModelFiles;
use crate::udfs::RustFile;
use crate::spec::types::display;
use crate::spec::{ModelDecl, Sp, TransformDecl};

/// Rows per model call when the node does not say.
pub const DEFAULT_BATCH_SIZE: usize = 1024;

/// Every model, by name: `None` when its declaration or file is wrong (reported here).
pub(super) fn lower_models(models: &[ModelDecl], files: &ModelFiles, rust: &[RustFile], d: &mut Diags) -> HashMap<String, Option<Model>> {
    models.iter().map(|m| (m.name.value.clone(), lower_model(m, files, rust, d))).collect()
}

fn lower_model(m: &ModelDecl, files: &ModelFiles, rust: &[RustFile], d: &mut Diags) -> Option<Model> {
    let custom = rust.iter().flat_map(|f| &f.models).find(|s| s.name == m.architecture.value);
    let act = |a: &Option<Sp<String>>, default: Activation| a.as_ref().and_then(|a| Activation::from_name(&a.value)).unwrap_or(default);
    let architecture = match m.architecture.as_str() {
        "linear" => Architecture::Linear,
        "logistic" => Architecture::Logistic,
        "mlp" => Architecture::Mlp {
            layers: m.layers.as_ref()?.value.iter().map(|l| l.value as usize).collect(),
            activation: act(&m.activation, Activation::Relu),
            output_activation: act(&m.output_activation, Activation::Identity),
        },
        _ if custom.is_some() => Architecture::Custom(m.architecture.value.clone()),
        other => {
            let mut diag = Diagnostic::error("kiln::unknown-model-type", m.architecture.span.clone(), format!("model `{}`: unknown architecture `{other}`", m.name.value))
                .label("not a built-in architecture, nor a #[kiln::model] type of this pipeline's `udfs`")
                .help("built in: linear, logistic, mlp");
            if let Some(h) = did_you_mean(other, crate::spec::model::BUILT_IN.iter().copied()) {
                diag = diag.help(h);
            }
            d.push(diag);
            return None;
        }
    };
    let device = match m.device.as_ref().map(|v| v.as_str()) {
        Some("cuda") => ModelDevice::Cuda,
        Some("auto") => ModelDevice::Auto,
        _ => ModelDevice::Cpu,
    };
    let found = match files.get(&m.name.value) {
        Some(Ok(found)) => found,
        Some(Err(why)) => {
            d.push(
                Diagnostic::error("kiln::model-unreadable", m.path.span.clone(), format!("model `{}`: cannot read its weights", m.name.value))
                    .label(why.clone())
                    .help(if kiln::storage::is_remote(&m.path.value) {
                        "the object must exist and be readable with the environment's credentials (or the model's `storage_options`) when the spec is checked"
                    } else {
                        "the path is relative to the spec's directory; the file must exist when the spec is checked"
                    }),
            );
            return None;
        }
        None => return None,
    };
    if let Some(sig) = custom {
        let missing: Vec<&String> = sig.tensors.iter().filter(|t| !found.contains_key(*t)).collect();
        if !missing.is_empty() {
            let listing: Vec<String> = found.keys().cloned().collect();
            d.push(
                Diagnostic::error("kiln::model-shape", m.path.span.clone(), format!("model `{}`: {} lacks tensors that `{}` ({}) reads", m.name.value, m.path.value, sig.name, sig.place))
                    .label(format!("missing: {}", missing.iter().map(|t| format!("`{t}`")).collect::<Vec<_>>().join(", ")))
                    .note(format!("the file holds: {}", listing.join(", "))),
            );
            return None;
        }
        return Some(Model { name: m.name.value.clone(), path: m.path.value.clone(), architecture, device, inputs: sig.inputs, outputs: sig.outputs });
    }
    let (inputs, outputs) = match kiln::models::shape_of(&architecture, found) {
        Ok(shape) => shape,
        Err(problems) => {
            let span = m.layers.as_ref().map_or(m.architecture.span.clone(), |l| l.span.clone());
            let listing: Vec<String> = found.iter().map(|(n, t)| format!("{n} {:?} {}", t.shape, t.dtype)).collect();
            let mut diag = Diagnostic::error("kiln::model-shape", span, format!("model `{}`: the weights in {} do not fit `{}`", m.name.value, m.path.value, m.architecture.value))
                .label(problems.join("; "))
                .note(format!("the file holds: {}", if listing.is_empty() { "no tensors".to_string() } else { listing.join(", ") }));
            diag = match &architecture {
                Architecture::Mlp { .. } => diag.help("an mlp with layers = [a, b, c] reads layers.0.weight [b, a], layers.0.bias [b], layers.1.weight [c, b], layers.1.bias [c]"),
                _ => diag.help("linear and logistic read `weight` [outputs, inputs] and `bias` [outputs]"),
            };
            d.push(diag);
            return None;
        }
    };
    Some(Model { name: m.name.value.clone(), path: m.path.value.clone(), architecture, device, inputs, outputs })
}

/// Lowers a `predict` node.
#[allow(clippy::too_many_arguments)]
pub(super) fn lower(
    t: &TransformDecl,
    input: &LogicalPlan,
    model: &Sp<String>,
    features: &Sp<Vec<Sp<String>>>,
    list: bool,
    output: &Sp<String>,
    batch_size: Option<&Sp<i64>>,
    models: &HashMap<String, Option<Model>>,
    d: &mut Diags,
) -> Option<Op> {
    let Some(found) = models.get(&model.value) else {
        let mut diag = Diagnostic::error("kiln::unknown-model", model.span.clone(), format!("{}: no model named `{}`", t.name.value, model.value))
            .label("not declared");
        diag = match did_you_mean(&model.value, models.keys().map(String::as_str)) {
            Some(h) => diag.help(h),
            None => diag.help(format!("declare it:\n[models.{}]\npath = \"models/{}.safetensors\"\narchitecture = \"mlp\"\nlayers = [16, 32, 1]", model.value, model.value)),
        };
        d.push(diag);
        return None;
    };
    let model = found.clone()?; // a broken model was reported where it is declared
    let schema = input.schema();
    let columns = schema_names(schema.inner());
    let type_of = |c: &str| schema.field_with_unqualified_name(c).ok().map(|f| f.data_type().clone());
    let numeric = |t: &DataType| t.is_numeric() || matches!(t, DataType::Boolean);
    let before = d.0.len();
    let features_op = if list {
        let c = &features.value[0];
        if require_column(c, &columns, d) {
            let ty = type_of(&c.value)?;
            let (item, fixed) = match &ty {
                DataType::List(f) | DataType::LargeList(f) => (f.data_type().clone(), None),
                DataType::FixedSizeList(f, n) => (f.data_type().clone(), Some(*n as usize)),
                _ => (ty.clone(), Some(0)),
            };
            if !ty.is_nested() || !numeric(&item) {
                d.push(
                    Diagnostic::error("kiln::type-mismatch", c.span.clone(), format!("feature column `{}` is {}, not a list of numbers", c.value, display(&ty)))
                        .label("one string names a list<float32> column")
                        .help(format!("to use numeric columns, list them: features = [\"{}\", ...]", c.value)),
                );
            } else if let Some(n) = fixed.filter(|n| *n != model.inputs) {
                d.push(count_mismatch(&model, &c.span, n, "holds"));
            }
        }
        Features::List(c.value.clone())
    } else {
        for c in &features.value {
            if require_column(c, &columns, d) {
                let ty = type_of(&c.value)?;
                if !numeric(&ty) {
                    d.push(
                        Diagnostic::error("kiln::type-mismatch", c.span.clone(), format!("feature `{}` is {}; a model takes numbers", c.value, display(&ty)))
                            .label("not numeric")
                            .help("cast it first, or encode it as a number in a with_columns transform"),
                    );
                }
            }
        }
        if features.value.len() != model.inputs {
            d.push(count_mismatch(&model, &features.span, features.value.len(), "lists"));
        }
        Features::Columns(features.value.iter().map(|c| c.value.clone()).collect())
    };
    let mut outputs = vec![output.value.clone()];
    if model.outputs > 1 {
        outputs.push(format!("{}_probability", output.value));
    }
    for o in &outputs {
        if columns.contains(o) {
            d.push(
                Diagnostic::error("kiln::duplicate-column", output.span.clone(), format!("{}: the input already has a column `{o}`", t.name.value))
                    .label("the prediction would replace it")
                    .help("choose another name: output = \"score\""),
            );
        }
    }
    if d.0.len() != before {
        return None;
    }
    let batch_size = batch_size.map_or(DEFAULT_BATCH_SIZE, |b| b.value as usize);
    Some(Op::Predict { input: t.input().value.clone(), model, features: features_op, output: output.value.clone(), batch_size })
}

fn count_mismatch(model: &Model, span: &std::ops::Range<usize>, n: usize, verb: &str) -> Diagnostic {
    Diagnostic::error("kiln::feature-count", span.clone(), format!("model `{}` takes {} features; this {verb} {n}", model.name, model.inputs))
        .label(format!("{n} feature(s)"))
        .note(format!("the input width comes from the weights in {}", model.path))
}
