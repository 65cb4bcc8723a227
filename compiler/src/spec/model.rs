//! `[models.NAME]`: a model for `predict` transforms (SPEC.md §5).

use toml::de::DeValue;

use super::reader::Table;
use super::{Sp, one_of};
use crate::diag::{Diagnostic, Diags};

#[derive(Debug, Clone)]
pub struct ModelDecl {
    pub name: Sp<String>,
    pub path: Sp<String>,
    /// `linear`, `logistic`, `mlp`, or the name of a `#[kiln::model]` type.
    pub architecture: Sp<String>,
    /// mlp: the width of every layer, inputs first.
    pub layers: Option<Sp<Vec<Sp<i64>>>>,
    pub activation: Option<Sp<String>>,
    pub output_activation: Option<Sp<String>>,
    pub device: Option<Sp<String>>,
    /// For a model on an object store (SPEC §6a, as a source's).
    pub storage_options: Vec<(Sp<String>, Sp<String>)>,
}

pub const BUILT_IN: &[&str] = &["linear", "logistic", "mlp"];
pub const DEVICES: &[&str] = &["cpu", "cuda", "auto"];

pub(super) fn parse(name: Sp<String>, t: &Table, d: &mut Diags) -> Option<ModelDecl> {
    let path = t.req_str("path", d, Some("path = \"models/scorer.safetensors\""));
    let architecture = t.req_str("architecture", d, Some("architecture = \"mlp\" (or linear, logistic, or a #[kiln::model] type)"));
    let layers = t.get("layers").and_then(|v| match v.get_ref() {
        DeValue::Array(items) => {
            let mut out = Vec::new();
            for i in items {
                match i.get_ref() {
                    DeValue::Integer(n) if i64::from_str_radix(n.as_str(), n.radix()).is_ok_and(|n| n >= 1) => {
                        out.push(Sp::new(i64::from_str_radix(n.as_str(), n.radix()).unwrap_or(1), i.span()))
                    }
                    _ => {
                        d.push(Diagnostic::error("kiln::wrong-value-type", i.span(), format!("{}: each layer is a width of at least 1", t.what)).label("expected a positive integer"));
                        return None;
                    }
                }
            }
            Some(Sp::new(out, v.span()))
        }
        _ => {
            d.push(Diagnostic::error("kiln::wrong-value-type", v.span(), format!("{}: `layers` is a list of widths", t.what)).label("expected e.g. [16, 32, 1]"));
            None
        }
    });
    let activation = t.str("activation", d).filter(|a| one_of(a, kiln::plan::Activation::NAMES, "activation", d));
    let output_activation = t.str("output_activation", d).filter(|a| one_of(a, kiln::plan::Activation::NAMES, "activation", d));
    let device = t.str("device", d).filter(|v| one_of(v, DEVICES, "device", d));
    if let Some(a) = &architecture {
        let is_mlp = a.as_str() == "mlp";
        if is_mlp && layers.is_none() && !t.table.contains_key("layers") {
            d.push(
                Diagnostic::error("kiln::missing-key", a.span.clone(), format!("{}: an mlp needs `layers`", t.what))
                    .label("how wide is each layer?")
                    .help("layers = [16, 32, 1]: 16 features in, one hidden layer of 32, one output"),
            );
        }
        if let Some(l) = layers.as_ref().filter(|l| l.value.len() < 2) {
            d.push(Diagnostic::error("kiln::bad-value", l.span.clone(), format!("{}: `layers` needs at least the input and output widths", t.what)).label("e.g. [16, 1]"));
        }
        if !is_mlp {
            for key in ["layers", "activation", "output_activation"] {
                if let Some(span) = t.key_span(key) {
                    d.push(Diagnostic::error("kiln::bad-value", span, format!("{}: `{key}` is for architecture = \"mlp\"", t.what)).label(format!("not used by `{}`", a.value)));
                }
            }
        }
    }
    let storage_options = super::storage_options(t, path.as_ref(), d);
    t.finish(d);
    Some(ModelDecl { name, path: path?, architecture: architecture?, layers, activation, output_activation, device, storage_options })
}
