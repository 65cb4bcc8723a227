//! The Rust files of `[pipeline] udfs`, read with syn at compile time: every
//! `#[kiln::udf]` function's signature (to type-check calls in the spec's
//! expressions) and every `#[kiln::model]` type's tensors and shape (to check
//! `[models.NAME] architecture = "Type"`). With `schemas` and `models`, the
//! only pass input that touches the disk.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::logical_expr::{ColumnarValue, ScalarUDF};

use crate::diag::{Diagnostic, Diags};
use crate::spec::{Sp, Spec};

/// One `udfs` file and what it declares.
#[derive(Debug, Clone)]
pub struct RustFile {
    /// As written in the spec (relative to the spec's directory).
    pub path: String,
    /// Where it is on disk.
    pub full: PathBuf,
    pub udfs: Vec<UdfSig>,
    pub models: Vec<ModelSig>,
}

/// A `#[kiln::udf]` function's signature.
#[derive(Debug, Clone)]
pub struct UdfSig {
    pub name: String,
    /// (parameter, SQL type, is an `Option`)
    pub params: Vec<(String, DataType, bool)>,
    pub returns: DataType,
    /// `fn risk(amount: f64, category: Option<&str>) -> f64`, for messages.
    pub text: String,
    /// `udfs/risk.rs:3`
    pub place: String,
}

/// A `#[kiln::model(inputs, outputs)]` type.
#[derive(Debug, Clone)]
pub struct ModelSig {
    pub name: String,
    /// Field names = tensor names.
    pub tensors: Vec<String>,
    pub inputs: usize,
    pub outputs: usize,
    pub place: String,
}

/// Every file's declarations, and the problems found reading them (at the
/// file's entry in `udfs`).
pub fn read(spec: &Spec, base: &Path) -> (Vec<RustFile>, Vec<Diagnostic>) {
    let mut d = Diags::default();
    let mut files = Vec::new();
    for entry in &spec.pipeline.udfs {
        if let Some(f) = read_file(entry, base, &mut d) {
            files.push(f);
        }
    }
    let mut seen = std::collections::HashMap::new();
    for f in &files {
        for u in &f.udfs {
            if let Some(first) = seen.insert(u.name.clone(), u.place.clone()) {
                let span = spec.pipeline.udfs.iter().find(|e| e.value == f.path).map_or(0..0, |e| e.span.clone());
                d.push(Diagnostic::error("kiln::duplicate-udf", span, format!("two #[kiln::udf] functions are named `{}` ({first} and {})", u.name, u.place)).label("here"));
            }
        }
    }
    (files, d.0)
}

fn read_file(entry: &Sp<String>, base: &Path, d: &mut Diags) -> Option<RustFile> {
    let full = base.join(entry.as_str());
    let err = |d: &mut Diags, msg: String, label: String| d.push(Diagnostic::error("kiln::udf-file", entry.span.clone(), msg).label(label));
    let text = match std::fs::read_to_string(&full) {
        Ok(t) => t,
        Err(e) => {
            err(d, format!("cannot read {}", entry.value), e.to_string());
            return None;
        }
    };
    let file = match syn::parse_file(&text) {
        Ok(f) => f,
        Err(e) => {
            err(d, format!("{}: not valid Rust", entry.value), e.to_string());
            return None;
        }
    };
    let mut out = RustFile { path: entry.value.clone(), full, udfs: Vec::new(), models: Vec::new() };
    for item in &file.items {
        match item {
            syn::Item::Fn(f) if has_attr(&f.attrs, "udf") => {
                let place = format!("{}:{}", entry.value, line_of(&text, "fn", &syn::ext::IdentExt::unraw(&f.sig.ident).to_string()));
                match signature(&f.sig) {
                    Ok((params, returns)) => {
                        let sig = &f.sig;
                        let text = quote::quote!(#sig).to_string().replace(" (", "(").replace(" ,", ",").replace(" : ", ": ").replace("& ", "&").replace(" < ", "<").replace(" >", ">").replace("< ", "<");
                        out.udfs.push(UdfSig { name: syn::ext::IdentExt::unraw(&f.sig.ident).to_string(), params, returns, text, place });
                    }
                    Err(why) => err(d, format!("{place}: `{}` cannot be a #[kiln::udf]", f.sig.ident), why),
                }
            }
            syn::Item::Struct(s) if has_attr(&s.attrs, "model") => {
                let place = format!("{}:{}", entry.value, line_of(&text, "struct", &syn::ext::IdentExt::unraw(&s.ident).to_string()));
                let (mut inputs, mut outputs) = (0, 0);
                if let Some(attr) = s.attrs.iter().find(|a| a.path().segments.last().is_some_and(|l| l.ident == "model")) {
                    let _ = attr.parse_nested_meta(|meta| {
                        let n: syn::LitInt = meta.value()?.parse()?;
                        let n = n.base10_parse::<usize>()?;
                        if meta.path.is_ident("inputs") {
                            inputs = n;
                        } else if meta.path.is_ident("outputs") {
                            outputs = n;
                        }
                        Ok(())
                    });
                }
                if !matches!(s.vis, syn::Visibility::Public(_)) {
                    err(d, format!("{place}: #[kiln::model] type `{}` must be `pub`", s.ident), "the generated binary registers it by name".into());
                    continue;
                }
                if inputs == 0 || outputs == 0 {
                    err(d, format!("{place}: #[kiln::model] on `{}` needs `inputs` and `outputs`", s.ident), "write #[kiln::model(inputs = 16, outputs = 1)]".into());
                    continue;
                }
                let tensors = s.fields.iter().filter_map(|f| f.ident.as_ref().map(|i| i.to_string())).collect();
                out.models.push(ModelSig { name: syn::ext::IdentExt::unraw(&s.ident).to_string(), tensors, inputs, outputs, place });
            }
            _ => {}
        }
    }
    Some(out)
}

/// The line of `KEYWORD NAME` in `text` (1-based; syn's spans carry no lines
/// without a proc-macro2 feature that would rebuild every proc macro).
fn line_of(text: &str, keyword: &str, name: &str) -> usize {
    let words = |l: &str| l.split(|c: char| !(c.is_alphanumeric() || c == '_')).filter(|w| !w.is_empty()).map(str::to_string).collect::<Vec<_>>();
    text.lines()
        .position(|l| words(l).windows(2).any(|w| w[0] == keyword && w[1] == name))
        .map_or(0, |i| i + 1)
}

fn has_attr(attrs: &[syn::Attribute], name: &str) -> bool {
    attrs.iter().any(|a| a.path().segments.last().is_some_and(|l| l.ident == name))
}

/// Parameters and result as SQL types, or why not.
#[allow(clippy::type_complexity)]
fn signature(sig: &syn::Signature) -> Result<(Vec<(String, DataType, bool)>, DataType), String> {
    let mut params = Vec::new();
    for input in &sig.inputs {
        let syn::FnArg::Typed(t) = input else { return Err("a #[kiln::udf] takes no `self`".into()) };
        let name = match &*t.pat {
            syn::Pat::Ident(i) => i.ident.to_string(),
            _ => return Err("name each parameter".into()),
        };
        let (ty, optional) = sql_type(&t.ty).ok_or_else(|| unsupported(&t.ty))?;
        params.push((name, ty, optional));
    }
    let syn::ReturnType::Type(_, ret) = &sig.output else { return Err("a #[kiln::udf] must return a value".into()) };
    let (returns, _) = sql_type(ret).ok_or_else(|| unsupported(ret))?;
    Ok((params, returns))
}

fn unsupported(ty: &syn::Type) -> String {
    format!(
        "type `{}` has no SQL equivalent; use i8..i64, u8..u64, f32, f64, bool, &str, String, NaiveDate, or an Option of one",
        quote::quote!(#ty).to_string().replace(' ', "")
    )
}

/// The SQL type of a Rust parameter or result type, and whether it is an `Option`.
pub fn sql_type(ty: &syn::Type) -> Option<(DataType, bool)> {
    match ty {
        syn::Type::Reference(r) => match &*r.elem {
            syn::Type::Path(p) if p.path.is_ident("str") => Some((DataType::Utf8, false)),
            _ => None,
        },
        syn::Type::Path(p) => {
            let last = p.path.segments.last()?;
            let name = last.ident.to_string();
            if name == "Option" {
                let syn::PathArguments::AngleBracketed(a) = &last.arguments else { return None };
                let Some(syn::GenericArgument::Type(inner)) = a.args.first() else { return None };
                let (t, nested) = sql_type(inner)?;
                return (!nested).then_some((t, true));
            }
            let t = match name.as_str() {
                "i8" => DataType::Int8,
                "i16" => DataType::Int16,
                "i32" => DataType::Int32,
                "i64" => DataType::Int64,
                "u8" => DataType::UInt8,
                "u16" => DataType::UInt16,
                "u32" => DataType::UInt32,
                "u64" => DataType::UInt64,
                "f32" => DataType::Float32,
                "f64" => DataType::Float64,
                "bool" => DataType::Boolean,
                "String" => DataType::Utf8,
                "NaiveDate" => DataType::Date32,
                _ => return None,
            };
            Some((t, false))
        }
        _ => None,
    }
}

/// Stand-ins for the spec's UDFs while checking: same name and types; they
/// cannot run (the bodies exist only in the generated binary).
pub fn stubs(files: &[RustFile]) -> Vec<Arc<ScalarUDF>> {
    fn cannot_run(_: &[ColumnarValue], _: usize) -> datafusion::common::Result<ColumnarValue> {
        datafusion::common::exec_err!("a #[kiln::udf] runs only in the generated binary (kiln build; NAME run / NAME test)")
    }
    files
        .iter()
        .flat_map(|f| &f.udfs)
        .map(|u| {
            // The registry keeps names for the process's life; kiln checks a handful of specs.
            let name: &'static str = Box::leak(u.name.clone().into_boxed_str());
            kiln::udfs::RustUdf::new(name, u.params.iter().map(|(_, t, _)| t.clone()).collect(), u.returns.clone(), cannot_run)
        })
        .collect()
}
