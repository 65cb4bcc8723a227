//! Code generation: a [`Pipeline`] becomes a small job crate whose `main`
//! rebuilds the same value through the runtime's API and calls
//! [`kiln::cli::main`]. The crate stays thin (data and constructor calls, no
//! generic code), so it rebuilds in seconds; output is formatted with
//! prettyplease and deterministic byte for byte.

pub(crate) mod expr;
mod values;

use std::collections::BTreeMap;
use std::path::PathBuf;

use kiln::plan::{Activation, Architecture, Features, Model, ExpectOutput, JoinOn, JoinStrategy, Keep, Node, OnError, Op, Pipeline, Rule, RuleKind, Sink, SinkFormat, Source, SourceFormat, TestCase, TestData, WriteMode};
use proc_macro2::TokenStream;
use quote::quote;

/// Something the code generator cannot express yet.
#[derive(Debug, Clone, PartialEq)]
pub struct Unsupported(pub String);

/// The files of a generated crate, by path relative to the crate's directory.
pub type CrateFiles = BTreeMap<PathBuf, String>;

/// What a job crate needs to know besides the pipeline.
pub struct CrateInfo<'a> {
    /// The spec's path as shown in the header comment.
    pub spec_path: &'a str,
    /// Path from the crate's directory to the runtime crate.
    pub runtime_path: &'a str,
    /// The spec's `udfs` files, included as modules of the crate.
    pub rust: &'a [RustModule],
}

/// A `udfs` file as a module of the job crate.
#[derive(Debug, Clone)]
pub struct RustModule {
    pub module: String,
    /// `#[path]` of the module: the file, from the crate's `src/`.
    pub path: String,
    /// `#[kiln::udf]` functions and `#[kiln::model]` types it declares.
    pub udfs: Vec<String>,
    pub models: Vec<String>,
}

const CARGO_TEMPLATE: &str = include_str!("../../../templates/job/Cargo.toml");

/// Package name of a pipeline's job crate.
pub fn package_name(pipeline: &str) -> String {
    format!("kiln-job-{}", pipeline.replace('_', "-"))
}

pub fn generate(pipeline: &Pipeline, info: &CrateInfo) -> Result<CrateFiles, Unsupported> {
    let mut files = CrateFiles::new();
    let cargo = CARGO_TEMPLATE
        .replace("{{package}}", &package_name(&pipeline.name))
        .replace("{{binary}}", &pipeline.name)
        .replace("{{runtime_path}}", &toml_escape(info.runtime_path))
        .replace("{{features}}", &runtime_features(pipeline))
        .replace("{{kiln_version}}", kiln::KILN_VERSION);
    files.insert(PathBuf::from("Cargo.toml"), cargo);
    files.insert(PathBuf::from("src/main.rs"), main_rs(pipeline, info)?);
    Ok(files)
}

/// The runtime's optional features the pipeline uses, as the dependency's settings: a job
/// links only those (the guide's jobs, without delta-rs, SQL parser and librdkafka: 195.6 →
/// 164.8 MiB stripped, `bench/binary_size.sh`). DataFusion and every crate it shares are
/// built with the same features either way (runtime/Cargo.toml's pins), so jobs with
/// different feature sets share one DataFusion build and differ in kiln-runtime only.
fn runtime_features(p: &Pipeline) -> String {
    use kiln::plan::{SinkFormat, SourceFormat};
    let sources = || p.nodes.iter().filter_map(|n| if let Op::Source(s) = &n.op { Some(&s.format) } else { None });
    let mut features = Vec::new();
    if sources().any(|f| matches!(f, SourceFormat::Delta(_))) || p.sinks.iter().any(|s| s.format == SinkFormat::Delta) {
        features.push("delta");
    }
    if sources().any(|f| matches!(f, SourceFormat::Kafka(_))) || p.sinks.iter().any(|s| s.format == SinkFormat::Kafka) {
        features.push("kafka");
    }
    // A model that asks for CUDA needs the CUDA toolkit to build.
    if p.nodes.iter().any(|n| matches!(&n.op, Op::Predict { model, .. } if model.device == kiln::plan::ModelDevice::Cuda)) {
        features.push("cuda");
    }
    if features.is_empty() {
        return ", default-features = false".into();
    }
    let quoted: Vec<String> = features.iter().map(|f| format!("\"{f}\"")).collect();
    format!(", default-features = false, features = [{}]", quoted.join(", "))
}

/// The `udfs` files as modules, and the statements that register their
/// functions and model types (empty when there are none).
fn rust_items(rust: &[RustModule]) -> (TokenStream, TokenStream) {
    let modules = rust.iter().map(|m| {
        let (module, path) = (proc_macro2::Ident::new(&m.module, proc_macro2::Span::call_site()), &m.path);
        quote!(#[path = #path] mod #module;)
    });
    let udfs = rust.iter().flat_map(|m| {
        let module = proc_macro2::Ident::new(&m.module, proc_macro2::Span::call_site());
        m.udfs.iter().map(move |u| {
            let f = ident(&format!("{u}_udf"));
            quote!(#module::#f())
        })
    });
    let models = rust.iter().flat_map(|m| {
        let module = proc_macro2::Ident::new(&m.module, proc_macro2::Span::call_site());
        m.models.iter().map(move |t| {
            let ty = ident(t);
            quote!(kiln::models::register::<#module::#ty>(#t);)
        })
    });
    let register = if rust.is_empty() {
        quote!()
    } else {
        quote! {
            // The spec's #[kiln::udf] functions and #[kiln::model] types, known before anything is planned.
            kiln::functions::register_udfs([#(#udfs),*]);
            #(#models)*
        }
    };
    (quote!(#(#modules)*), register)
}

/// A pipeline as a Rust module `NAME` for code that embeds it
/// (`kiln::include_pipeline!`, `kiln_compiler::Build`): `pipeline()`,
/// `register()`, `build(ctx, params)` and `run(params)`. `rust` paths are absolute.
pub fn embed(p: &Pipeline, spec_path: &str, rust: &[RustModule]) -> Result<TokenStream, Unsupported> {
    let body = pipeline(p)?;
    let (modules, register) = rust_items(rust);
    let module = proc_macro2::Ident::new(&p.name, proc_macro2::Span::call_site());
    let doc = format!(" The pipeline of {spec_path} (spec sha256:{}), checked when this crate was built.", p.spec_hash);
    Ok(quote! {
        #[doc = #doc]
        pub mod #module {
            use ::kiln::prelude::*;
            use ::kiln as kiln;

            #modules

            /// Makes the spec's `#[kiln::udf]`s and `#[kiln::model]`s known (done by `pipeline()`).
            pub fn register() {
                #register
            }

            /// The pipeline as plain data.
            pub fn pipeline() -> kiln::Result<Pipeline> {
                register();
                Ok(#body)
            }

            fn owned(params: &[(&str, &str)]) -> Vec<(String, String)> {
                params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
            }

            /// Every node's logical plan on `ctx` (make it with `kiln::session::context`), parameters bound:
            /// `params` beat each param's `env` variable, which beats its default.
            pub async fn build(
                ctx: &kiln::datafusion::prelude::SessionContext,
                params: &[(&str, &str)],
            ) -> kiln::Result<std::collections::HashMap<String, kiln::datafusion::logical_expr::LogicalPlan>> {
                let p = pipeline()?;
                let values = kiln::params::resolve(&p.params, &owned(params), |name| std::env::var(name).ok())?;
                kiln::run::node_plans(&p, ctx, &values).await
            }

            /// Runs the pipeline as `NAME run` does: every sink written, all or none.
            pub async fn run(params: &[(&str, &str)]) -> kiln::Result<kiln::run::Report> {
                let p = pipeline()?;
                kiln::run::run(&p, &kiln::run::RunOptions { params: owned(params), ..Default::default() }).await
            }
        }
    })
}

/// The formatted `src/main.rs`.
pub fn main_rs(p: &Pipeline, info: &CrateInfo) -> Result<String, Unsupported> {
    let body = pipeline(p)?;
    let (modules, register) = rust_items(info.rust);
    let file = quote! {
        use kiln::prelude::*;

        #modules

        fn main() -> std::process::ExitCode {
            #register
            match pipeline() {
                Ok(pipeline) => kiln::cli::main(pipeline),
                Err(e) => {
                    eprintln!("error: cannot construct the pipeline: {e}");
                    std::process::ExitCode::from(1)
                }
            }
        }

        /// The pipeline, as checked by `kiln check`.
        fn pipeline() -> kiln::Result<Pipeline> {
            Ok(#body)
        }
    };
    let syntax: syn::File = syn::parse2(file).map_err(|e| Unsupported(format!("generated code does not parse: {e}")))?;
    let header = format!(
        "// Generated by kiln {} from {} (spec sha256:{}).\n// Do not edit: change the spec and run `kiln build` again.\n\n",
        kiln::KILN_VERSION,
        comment_safe(info.spec_path),
        p.spec_hash
    );
    Ok(header + &prettyplease::unparse(&syntax))
}

fn pipeline(p: &Pipeline) -> Result<TokenStream, Unsupported> {
    let (name, description, hash) = (&p.name, &p.description, &p.spec_hash);
    let params = p.params.iter().map(|param| {
        let (n, desc) = (&param.name, &param.description);
        let dt = values::data_type(&param.data_type)?;
        let default = option(param.default.as_ref().map(values::scalar).transpose()?);
        let env = option(param.env.as_ref().map(|e| quote!(#e.into())));
        Ok(quote!(Param { name: #n.into(), data_type: #dt, default: #default, env: #env, description: #desc.into() }))
    }).collect::<Result<Vec<_>, Unsupported>>()?;
    let r = &p.runtime;
    let runtime = {
        let tp = option(r.target_partitions.map(|v| quote!(#v)));
        let bs = option(r.batch_size.map(|v| quote!(#v)));
        let ml = option(r.memory_limit.map(|v| quote!(#v)));
        let sd = option(r.spill_dir.as_ref().map(|v| quote!(#v.into())));
        let bt = option(r.broadcast_threshold.map(|v| quote!(#v)));
        let cd = option(r.checkpoint_dir.as_ref().map(|v| quote!(#v.into())));
        let cps = r.checkpoints.iter().map(|c| quote!(#c.into()));
        let storage = r.storage.iter().map(|(path, opts)| {
            let opts = opts.iter().map(|(k, v)| quote!((#k.into(), #v.into())));
            quote!((#path.into(), Vec::from([#(#opts),*])))
        });
        quote!(RuntimeOptions {
            target_partitions: #tp,
            batch_size: #bs,
            memory_limit: #ml,
            spill_dir: #sd,
            broadcast_threshold: #bt,
            checkpoint_dir: #cd,
            checkpoints: Vec::from([#(#cps),*]),
            storage: Vec::from([#(#storage),*]),
        })
    };
    let nodes = p.nodes.iter().map(node).collect::<Result<Vec<_>, _>>()?;
    let sinks = p.sinks.iter().map(sink).collect::<Result<Vec<_>, _>>()?;
    let tests = p.tests.iter().map(test).collect::<Result<Vec<_>, _>>()?;
    let streaming = option(p.streaming.as_ref().map(|s| {
        let trigger = match s.trigger {
            kiln::plan::Trigger::AvailableNow => quote!(Trigger::AvailableNow),
            kiln::plan::Trigger::IntervalMs(ms) => quote!(Trigger::IntervalMs(#ms)),
        };
        let sources = s.sources.iter().map(|(n, max)| {
            let max = option(max.map(|m| quote!(#m)));
            quote!((#n.into(), #max))
        });
        quote!(Streaming { trigger: #trigger, sources: Vec::from([#(#sources),*]) })
    }));
    Ok(quote! {
        Pipeline {
            name: #name.into(),
            description: #description.into(),
            spec_hash: #hash.into(),
            params: Vec::from([#(#params),*]),
            runtime: #runtime,
            nodes: Vec::from([#(#nodes),*]),
            sinks: Vec::from([#(#sinks),*]),
            tests: Vec::from([#(#tests),*]),
            streaming: #streaming,
        }
    })
}

fn test(t: &TestCase) -> Result<TokenStream, Unsupported> {
    let name = &t.name;
    let inputs = t
        .inputs
        .iter()
        .map(|(n, d)| test_data(d).map(|d| quote!((#n.into(), #d))))
        .collect::<Result<Vec<_>, _>>()?;
    let expect = t
        .expect
        .iter()
        .map(|e| {
            let (node, ordered) = (&e.node, e.ordered);
            let rows = option(e.rows.as_ref().map(test_data).transpose()?);
            let count = option(e.count.map(|c| quote!(#c)));
            Ok(quote!(TestExpect { node: #node.into(), rows: #rows, count: #count, ordered: #ordered }))
        })
        .collect::<Result<Vec<_>, Unsupported>>()?;
    Ok(quote!(TestCase { name: #name.into(), inputs: Vec::from([#(#inputs),*]), expect: Vec::from([#(#expect),*]) }))
}

/// Rows of values: `Vec::from([Vec::from([...]), ...])`.
fn rows_tokens(rows: &[Vec<datafusion::common::ScalarValue>]) -> Result<TokenStream, Unsupported> {
    let rows = rows
        .iter()
        .map(|row| row.iter().map(values::scalar).collect::<Result<Vec<_>, _>>().map(|cells| quote!(Vec::from([#(#cells),*]))))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(quote!(Vec::from([#(#rows),*])))
}

fn test_data(d: &TestData) -> Result<TokenStream, Unsupported> {
    Ok(match d {
        TestData::File(path) => quote!(TestData::File(#path.into())),
        TestData::Rows(rows) => {
            let rows = rows_tokens(rows)?;
            quote!(TestData::Rows(#rows))
        }
    })
}

fn option(t: Option<TokenStream>) -> TokenStream {
    match t {
        Some(t) => quote!(Some(#t)),
        None => quote!(None),
    }
}

fn rule(r: &Rule) -> Result<TokenStream, Unsupported> {
    let name = &r.name;
    let on_fail = syn::Ident::new(&format!("{:?}", r.on_fail), proc_macro2::Span::call_site());
    let opt = |v: Option<u64>| match v {
        Some(v) => quote!(Some(#v)),
        None => quote!(None),
    };
    let kind = match &r.kind {
        RuleKind::Check(e) => {
            let e = expr::expr(e)?;
            quote!(RuleKind::Check(#e))
        }
        RuleKind::Unique(keys) => {
            let keys = strings(keys);
            quote!(RuleKind::Unique(#keys))
        }
        RuleKind::ExistsIn { node, keys, columns } => {
            let (keys, columns) = (strings(keys), strings(columns));
            quote!(RuleKind::ExistsIn { node: #node.into(), keys: #keys, columns: #columns })
        }
        RuleKind::RowCount { min, max } => {
            let (min, max) = (opt(*min), opt(*max));
            quote!(RuleKind::RowCount { min: #min, max: #max })
        }
    };
    Ok(quote!(Rule { name: #name.into(), on_fail: OnFail::#on_fail, kind: #kind }))
}

fn exprs(items: &[datafusion::logical_expr::Expr]) -> Result<TokenStream, Unsupported> {
    let items = items.iter().map(expr::expr).collect::<Result<Vec<_>, _>>()?;
    Ok(quote!(Vec::from([#(#items),*])))
}

fn strings(items: &[String]) -> TokenStream {
    quote!(Vec::from([#(#items.into()),*]))
}

fn node(n: &Node) -> Result<TokenStream, Unsupported> {
    let name = &n.name;
    let op = match &n.op {
        Op::Source(s) => {
            let s = source(s)?;
            quote!(Op::Source(#s))
        }
        Op::Filter { input, predicate } => {
            let e = expr::expr(predicate)?;
            quote!(Op::Filter { input: #input.into(), predicate: #e })
        }
        Op::Select { input, columns } => {
            let cols = columns.iter().map(expr::expr).collect::<Result<Vec<_>, _>>()?;
            quote!(Op::Select { input: #input.into(), columns: Vec::from([#(#cols),*]) })
        }
        Op::WithColumns { input, columns } => {
            let cols = columns
                .iter()
                .map(|(n, e)| expr::expr(e).map(|e| quote!((#n.into(), #e))))
                .collect::<Result<Vec<_>, _>>()?;
            quote!(Op::WithColumns { input: #input.into(), columns: Vec::from([#(#cols),*]) })
        }
        Op::Drop { input, columns } => {
            let cols = strings(columns);
            quote!(Op::Drop { input: #input.into(), columns: #cols })
        }
        Op::Rename { input, columns } => {
            let pairs = columns.iter().map(|(o, n)| quote!((#o.into(), #n.into())));
            quote!(Op::Rename { input: #input.into(), columns: Vec::from([#(#pairs),*]) })
        }
        Op::Cast { input, columns } => {
            let pairs = columns
                .iter()
                .map(|(n, t)| values::data_type(t).map(|t| quote!((#n.into(), #t))))
                .collect::<Result<Vec<_>, _>>()?;
            quote!(Op::Cast { input: #input.into(), columns: Vec::from([#(#pairs),*]) })
        }
        Op::FillNull { input, values: vals } => {
            let pairs = vals
                .iter()
                .map(|(n, v)| values::scalar(v).map(|v| quote!((#n.into(), #v))))
                .collect::<Result<Vec<_>, _>>()?;
            quote!(Op::FillNull { input: #input.into(), values: Vec::from([#(#pairs),*]) })
        }
        Op::Dedupe { input, keys, keep, order_by } => {
            let keys = strings(keys);
            let keep = match keep {
                Keep::Any => quote!(Keep::Any),
                Keep::First => quote!(Keep::First),
                Keep::Last => quote!(Keep::Last),
            };
            let order = order_by.iter().map(expr::sort).collect::<Result<Vec<_>, _>>()?;
            quote!(Op::Dedupe { input: #input.into(), keys: #keys, keep: #keep, order_by: Vec::from([#(#order),*]) })
        }
        Op::Aggregate { input, group_by, aggregates, having } => {
            let group = group_by.iter().map(expr::expr).collect::<Result<Vec<_>, _>>()?;
            let aggs = aggregates.iter().map(expr::expr).collect::<Result<Vec<_>, _>>()?;
            let having = option(having.as_ref().map(expr::expr).transpose()?);
            quote!(Op::Aggregate { input: #input.into(), group_by: Vec::from([#(#group),*]), aggregates: Vec::from([#(#aggs),*]), having: #having })
        }
        Op::EventWindow { input, window: w } => {
            let (time, size, slide, watermark) = (&w.time_column, w.size_us, w.slide_us, w.watermark_us);
            let keys = exprs(&w.keys)?;
            let aggs = exprs(&w.aggregates)?;
            let mode = match w.output_mode {
                kiln::plan::OutputMode::Append => quote!(OutputMode::Append),
                kiln::plan::OutputMode::Update => quote!(OutputMode::Update),
            };
            quote!(Op::EventWindow {
                input: #input.into(),
                window: EventWindow { time_column: #time.into(), size_us: #size, slide_us: #slide, watermark_us: #watermark, keys: #keys, aggregates: #aggs, output_mode: #mode },
            })
        }
        Op::Window { input, partition_by, order_by, frame, columns } => {
            let partition = exprs(partition_by)?;
            let order = order_by.iter().map(expr::sort).collect::<Result<Vec<_>, _>>()?;
            let frame = option(frame.as_ref().map(values::window_frame).transpose()?);
            let cols = columns
                .iter()
                .map(|(n, c)| {
                    let (function, aggregate, distinct) = (&c.function, c.aggregate, c.distinct);
                    let args = exprs(&c.args)?;
                    Ok(quote!((#n.into(), WindowCall { function: #function.into(), aggregate: #aggregate, args: #args, distinct: #distinct })))
                })
                .collect::<Result<Vec<_>, Unsupported>>()?;
            quote!(Op::Window { input: #input.into(), partition_by: #partition, order_by: Vec::from([#(#order),*]), frame: #frame, columns: Vec::from([#(#cols),*]) })
        }
        Op::Join { left, right, how, on, strategy, salt } => {
            let how = syn::Ident::new(&format!("{how:?}"), proc_macro2::Span::call_site());
            let on = match on {
                JoinOn::Using(keys) => {
                    let keys = strings(keys);
                    quote!(JoinOn::Using(#keys))
                }
                JoinOn::Keys { left, right, filter } => {
                    let (l, r) = (exprs(left)?, exprs(right)?);
                    let filter = option(filter.as_ref().map(expr::expr).transpose()?);
                    quote!(JoinOn::Keys { left: #l, right: #r, filter: #filter })
                }
                JoinOn::None => quote!(JoinOn::None),
            };
            let strategy = match strategy {
                JoinStrategy::Auto => quote!(JoinStrategy::Auto),
                JoinStrategy::Shuffle => quote!(JoinStrategy::Shuffle),
                JoinStrategy::SortMerge => quote!(JoinStrategy::SortMerge),
                JoinStrategy::Salted => quote!(JoinStrategy::Salted),
                JoinStrategy::Broadcast { side } => {
                    let side = syn::Ident::new(&format!("{side:?}"), proc_macro2::Span::call_site());
                    quote!(JoinStrategy::Broadcast { side: Side::#side })
                }
            };
            let salt = match salt {
                None => quote!(None),
                Some(s) => {
                    let buckets = option(s.buckets.map(|b| quote!(#b)));
                    let keys = s.hot_keys.iter().map(values::scalar).collect::<Result<Vec<_>, _>>()?;
                    let (detect, threshold) = (s.detect, proc_macro2::Literal::f64_suffixed(s.threshold));
                    quote!(Some(Salt { buckets: #buckets, hot_keys: Vec::from([#(#keys),*]), detect: #detect, threshold: #threshold }))
                }
            };
            quote!(Op::Join { left: #left.into(), right: #right.into(), how: JoinHow::#how, on: #on, strategy: #strategy, salt: #salt })
        }
        Op::Union { inputs, by_name, distinct } => {
            let inputs = strings(inputs);
            quote!(Op::Union { inputs: #inputs, by_name: #by_name, distinct: #distinct })
        }
        Op::Sort { input, order_by } => {
            let order = order_by.iter().map(expr::sort).collect::<Result<Vec<_>, _>>()?;
            quote!(Op::Sort { input: #input.into(), order_by: Vec::from([#(#order),*]) })
        }
        Op::Limit { input, n } => quote!(Op::Limit { input: #input.into(), n: #n }),
        Op::Repartition { input, partitions, by } => {
            let by = exprs(by)?;
            quote!(Op::Repartition { input: #input.into(), partitions: #partitions, by: #by })
        }
        Op::Coalesce { input, partitions } => quote!(Op::Coalesce { input: #input.into(), partitions: #partitions }),
        Op::Expect { input, rules, output } => {
            let rules = rules.iter().map(rule).collect::<Result<Vec<_>, _>>()?;
            let output = match output {
                ExpectOutput::Passed => quote!(ExpectOutput::Passed),
                ExpectOutput::Quarantined => quote!(ExpectOutput::Quarantined),
            };
            quote!(Op::Expect { input: #input.into(), rules: Vec::from([#(#rules),*]), output: #output })
        }
        Op::Predict { input, model, features, output, batch_size } => {
            let model = model_tokens(model);
            let features = match features {
                Features::Columns(cols) => {
                    let cols = strings(cols);
                    quote!(Features::Columns(#cols))
                }
                Features::List(c) => quote!(Features::List(#c.into())),
            };
            quote!(Op::Predict { input: #input.into(), model: #model, features: #features, output: #output.into(), batch_size: #batch_size })
        }
        Op::Sql { inputs, query, plan } => {
            let inputs = strings(inputs);
            let bytes = proc_macro2::Literal::byte_string(plan);
            quote!(Op::Sql { inputs: #inputs, query: #query.into(), plan: #bytes.to_vec() })
        }
    };
    Ok(quote!(Node { name: #name.into(), op: #op }))
}

fn model_tokens(m: &Model) -> TokenStream {
    let act = |a: &Activation| {
        let v = proc_macro2::Ident::new(&format!("{a:?}"), proc_macro2::Span::call_site());
        quote!(Activation::#v)
    };
    let architecture = match &m.architecture {
        Architecture::Linear => quote!(Architecture::Linear),
        Architecture::Logistic => quote!(Architecture::Logistic),
        Architecture::Mlp { layers, activation, output_activation } => {
            let (a, o) = (act(activation), act(output_activation));
            quote!(Architecture::Mlp { layers: Vec::from([#(#layers),*]), activation: #a, output_activation: #o })
        }
        Architecture::Custom(name) => quote!(Architecture::Custom(#name.into())),
    };
    let device = proc_macro2::Ident::new(&format!("{:?}", m.device), proc_macro2::Span::call_site());
    let (name, path, inputs, outputs) = (&m.name, &m.path, m.inputs, m.outputs);
    quote!(Model {
        name: #name.into(),
        path: #path.into(),
        architecture: #architecture,
        device: ModelDevice::#device,
        inputs: #inputs,
        outputs: #outputs,
    })
}

fn source(s: &Source) -> Result<TokenStream, Unsupported> {
    let fields = s
        .schema
        .fields()
        .iter()
        .map(|f| {
            let (n, nullable) = (f.name(), f.is_nullable());
            values::data_type(f.data_type()).map(|t| quote!(field(#n, #t, #nullable)))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let format = match &s.format {
        SourceFormat::Csv(o) => {
            let header = o.header;
            let delimiter = proc_macro2::Literal::byte_character(o.delimiter);
            let quote_char = proc_macro2::Literal::byte_character(o.quote);
            let null_value = option(o.null_value.as_ref().map(|v| quote!(#v.into())));
            let on_error = match &o.on_error {
                OnError::Fail => quote!(OnError::Fail),
                OnError::Skip => quote!(OnError::Skip),
                OnError::Quarantine(path) => quote!(OnError::Quarantine(#path.into())),
            };
            quote!(SourceFormat::Csv(CsvOptions { header: #header, delimiter: #delimiter, quote: #quote_char, null_value: #null_value, on_error: #on_error }))
        }
        SourceFormat::Parquet => quote!(SourceFormat::Parquet),
        SourceFormat::Json => quote!(SourceFormat::Json),
        SourceFormat::Avro => quote!(SourceFormat::Avro),
        SourceFormat::Orc => quote!(SourceFormat::Orc),
        SourceFormat::Postgres(pg) => {
            let url = &pg.url;
            let table = option(pg.table.as_ref().map(|t| quote!(#t.into())));
            let query = option(pg.query.as_ref().map(|q| quote!(#q.into())));
            let column = option(pg.partition_column.as_ref().map(|c| quote!(#c.into())));
            let partitions = pg.partitions;
            let lower = option(pg.lower_bound.map(|b| quote!(#b)));
            let upper = option(pg.upper_bound.map(|b| quote!(#b)));
            quote!(SourceFormat::Postgres(PgSource { url: #url.into(), table: #table, query: #query, partition_column: #column, partitions: #partitions, lower_bound: #lower, upper_bound: #upper }))
        }
        SourceFormat::Delta(d) => {
            let version = option(d.version.map(|v| quote!(#v)));
            let timestamp = option(d.timestamp.as_ref().map(|t| quote!(#t.into())));
            quote!(SourceFormat::Delta(DeltaSource { version: #version, timestamp: #timestamp }))
        }
        SourceFormat::Kafka(k) => {
            let (brokers, topic, earliest) = (&k.brokers, &k.topic, k.earliest);
            let value_format = match k.value_format {
                kiln::plan::KafkaValueFormat::Json => quote!(KafkaValueFormat::Json),
                kiln::plan::KafkaValueFormat::Csv => quote!(KafkaValueFormat::Csv),
                kiln::plan::KafkaValueFormat::Avro => quote!(KafkaValueFormat::Avro),
                kiln::plan::KafkaValueFormat::AvroConfluent => quote!(KafkaValueFormat::AvroConfluent),
            };
            let max = option(k.max_offsets_per_trigger.map(|n| quote!(#n)));
            let options = k.options.iter().map(|(a, b)| quote!((#a.into(), #b.into())));
            let assign = &k.assign;
            quote!(SourceFormat::Kafka(KafkaSource {
                brokers: #brokers.into(),
                topic: #topic.into(),
                earliest: #earliest,
                value_format: #value_format,
                max_offsets_per_trigger: #max,
                assign: #assign.into(),
                options: Vec::from([#(#options),*]),
            }))
        }
        SourceFormat::Inline(rows) => {
            let rows = rows_tokens(rows)?;
            quote!(SourceFormat::Inline(#rows))
        }
    };
    let path = &s.path;
    let partitions = s
        .partitions
        .iter()
        .map(|(n, t)| values::data_type(t).map(|t| quote!((#n.into(), #t))))
        .collect::<Result<Vec<_>, _>>()?;
    let hints = {
        let rows = option(s.hints.rows.map(|v| quote!(#v)));
        let bytes = option(s.hints.bytes.map(|v| quote!(#v)));
        quote!(SizeHints { rows: #rows, bytes: #bytes })
    };
    Ok(quote!(Source { format: #format, path: #path.into(), schema: schema(Vec::from([#(#fields),*])), partitions: Vec::from([#(#partitions),*]), hints: #hints }))
}

fn sink(s: &Sink) -> Result<TokenStream, Unsupported> {
    let (name, input, path) = (&s.name, &s.input, &s.path);
    let format = match s.format {
        SinkFormat::Parquet => quote!(SinkFormat::Parquet),
        SinkFormat::Csv => quote!(SinkFormat::Csv),
        SinkFormat::Json => quote!(SinkFormat::Json),
        SinkFormat::Avro => quote!(SinkFormat::Avro),
        SinkFormat::Orc => quote!(SinkFormat::Orc),
        SinkFormat::Postgres => quote!(SinkFormat::Postgres),
        SinkFormat::Delta => quote!(SinkFormat::Delta),
        SinkFormat::Kafka => quote!(SinkFormat::Kafka),
        SinkFormat::Console => quote!(SinkFormat::Console),
    };
    let mode = match s.mode {
        WriteMode::Overwrite => quote!(WriteMode::Overwrite),
        WriteMode::Append => quote!(WriteMode::Append),
        WriteMode::ErrorIfExists => quote!(WriteMode::ErrorIfExists),
        WriteMode::Ignore => quote!(WriteMode::Ignore),
        WriteMode::OverwritePartitions => quote!(WriteMode::OverwritePartitions),
        WriteMode::Upsert => quote!(WriteMode::Upsert),
        WriteMode::Merge => quote!(WriteMode::Merge),
    };
    let partition_by = strings(&s.partition_by);
    let compression = option(s.compression.as_ref().map(|c| quote!(#c.into())));
    let single_file = s.single_file;
    let table = &s.table;
    let keys = strings(&s.keys);
    let replace_where = option(s.replace_where.as_ref().map(expr::expr).transpose()?);
    let delete_where = option(s.delete_where.as_ref().map(expr::expr).transpose()?);
    let schema_merge = s.schema_merge;
    let kafka = option(s.kafka.as_ref().map(|k| {
        let value_format = match k.value_format {
            kiln::plan::KafkaValueFormat::Json => quote!(KafkaValueFormat::Json),
            kiln::plan::KafkaValueFormat::Csv => quote!(KafkaValueFormat::Csv),
            // A sink writes JSON or CSV (the compiler refuses Avro there).
            kiln::plan::KafkaValueFormat::Avro | kiln::plan::KafkaValueFormat::AvroConfluent => quote!(KafkaValueFormat::Json),
        };
        let key = option(k.key.as_ref().map(|c| quote!(#c.into())));
        let options = k.options.iter().map(|(a, b)| quote!((#a.into(), #b.into())));
        quote!(KafkaSink { value_format: #value_format, key: #key, options: Vec::from([#(#options),*]) })
    }));
    Ok(quote!(Sink {
        name: #name.into(),
        input: #input.into(),
        format: #format,
        path: #path.into(),
        mode: #mode,
        partition_by: #partition_by,
        compression: #compression,
        single_file: #single_file,
        table: #table.into(),
        keys: #keys,
        replace_where: #replace_where,
        delete_where: #delete_where,
        schema_merge: #schema_merge,
        kafka: #kafka,
    }))
}

/// An identifier for a Rust name read from a udf file (unraw'd by `udfs`): raw
/// (`r#match`) where the name is a keyword.
fn ident(name: &str) -> proc_macro2::Ident {
    match syn::parse_str::<proc_macro2::Ident>(name) {
        Ok(i) => i,
        Err(_) => proc_macro2::Ident::new_raw(name, proc_macro2::Span::call_site()),
    }
}

/// Text for a `//` comment: control characters (a newline would end the comment
/// and let a file name inject code) written as escapes.
fn comment_safe(text: &str) -> String {
    text.chars().flat_map(|c| if c.is_control() { c.escape_default().collect::<Vec<_>>() } else { vec![c] }).collect()
}

/// Text for the inside of a TOML basic string ("…").
fn toml_escape(text: &str) -> String {
    text.chars()
        .flat_map(|c| match c {
            '"' | '\\' => vec!['\\', c],
            c if c.is_control() => format!("\\u{:04X}", c as u32).chars().collect(),
            c => vec![c],
        })
        .collect()
}
