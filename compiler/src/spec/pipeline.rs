//! `[pipeline]`, `[params.NAME]` and `[runtime]`.

use super::reader::{Table, literal};
use super::{Literal, Sp};
use crate::diag::{Diagnostic, Diags};

#[derive(Debug, Clone, Default)]
pub struct PipelineDecl {
    pub name: Sp<String>,
    pub description: String,
    /// Rust files holding `#[kiln::udf]` functions and `#[kiln::model]` types.
    pub udfs: Vec<Sp<String>>,
    /// `mode = "streaming"` (SPEC §8); `batch` otherwise.
    pub mode: Option<Sp<String>>,
    /// `trigger = "available_now" | "10s"` (streaming only).
    pub trigger: Option<Sp<String>>,
}

#[derive(Debug, Clone)]
pub struct ParamDecl {
    pub name: Sp<String>,
    pub default: Option<Sp<Literal>>,
    /// `type = "int64"` when there is no default to take the type from.
    pub type_name: Option<Sp<String>>,
    pub env: Option<Sp<String>>,
    pub description: String,
}

#[derive(Debug, Clone, Default)]
pub struct RuntimeDecl {
    pub target_partitions: Option<Sp<i64>>,
    pub batch_size: Option<Sp<i64>>,
    pub memory_limit: Option<Sp<String>>,
    pub spill_dir: Option<Sp<String>>,
    pub broadcast_threshold: Option<Sp<String>>,
    /// Where `checkpoint = true` transforms keep their results.
    pub checkpoint_dir: Option<Sp<String>>,
    /// Cluster sizing for `kiln deploy`: executor replicas, cores (= task slots) and memory each.
    pub executors: Option<Sp<i64>>,
    pub executor_cores: Option<Sp<i64>>,
    pub executor_memory: Option<Sp<String>>,
}

pub(super) fn parse_pipeline(t: &Table, d: &mut Diags) -> PipelineDecl {
    let mut decl = PipelineDecl::default();
    if let Some(name) = t.req_str("name", d, Some("the name becomes the binary's name, e.g. name = \"etl\"")) {
        if super::check_name(&name, "pipeline", d) && name.as_str() == "kiln" {
            d.push(
                Diagnostic::error("kiln::bad-name", name.span.clone(), "a pipeline cannot be called `kiln`")
                    .label("its binary would replace the kiln CLI"),
            );
        }
        decl.name = name;
    }
    decl.description = t.str("description", d).map(|s| s.value).unwrap_or_default();
    decl.udfs = t.str_list("udfs", d).map(|l| l.value).unwrap_or_default();
    decl.mode = t.str("mode", d);
    if let Some(m) = &decl.mode {
        super::one_of(m, &["batch", "streaming"], "pipeline mode", d);
    }
    decl.trigger = t.str("trigger", d);
    if let Some(tr) = &decl.trigger {
        if kiln::plan::Trigger::parse(&tr.value).is_none() {
            d.push(
                Diagnostic::error("kiln::bad-value", tr.span.clone(), format!("pipeline: `trigger = \"{}\"` is neither \"available_now\" nor a duration", tr.value))
                    .label("not a trigger")
                    .help("trigger = \"available_now\", or an interval such as \"10s\", \"500ms\", \"1m\""),
            );
        }
    }
    t.finish(d);
    decl
}

pub(super) fn parse_param(name: Sp<String>, t: &Table, d: &mut Diags) -> ParamDecl {
    let default = t.get("default").and_then(|v| literal(v, &t.what, "default", d));
    let type_name = t.str("type", d);
    let env = t.str("env", d);
    let description = t.str("description", d).map(|s| s.value).unwrap_or_default();
    t.finish(d);
    ParamDecl { name, default, type_name, env, description }
}

pub(super) fn parse_runtime(t: &Table, d: &mut Diags) -> RuntimeDecl {
    let positive = |v: Option<Sp<i64>>, key: &str, d: &mut Diags| {
        if let Some(n) = &v {
            if n.value < 1 {
                d.push(Diagnostic::error("kiln::bad-value", n.span.clone(), format!("runtime: `{key}` must be at least 1")).label("here"));
                return None;
            }
        }
        v
    };
    let size = |v: Option<Sp<String>>, key: &str, d: &mut Diags| {
        if let Some(s) = &v {
            if kiln::session::parse_size(&s.value).is_none() {
                d.push(
                    Diagnostic::error("kiln::bad-value", s.span.clone(), format!("runtime: `{key}` is not a size"))
                        .label("expected a size such as \"512MB\" or \"4GB\""),
                );
                return None;
            }
        }
        v
    };
    let tp = t.int("target_partitions", d);
    let bs = t.int("batch_size", d);
    let ml = t.str("memory_limit", d);
    let bt = t.str("broadcast_threshold", d);
    let (ex, ec, em) = (t.int("executors", d), t.int("executor_cores", d), t.str("executor_memory", d));
    let decl = RuntimeDecl {
        executors: positive(ex, "executors", d),
        executor_cores: positive(ec, "executor_cores", d),
        executor_memory: size(em, "executor_memory", d),
        target_partitions: positive(tp, "target_partitions", d),
        batch_size: positive(bs, "batch_size", d),
        memory_limit: size(ml, "memory_limit", d),
        spill_dir: t.str("spill_dir", d),
        broadcast_threshold: size(bt, "broadcast_threshold", d),
        checkpoint_dir: t.str("checkpoint_dir", d),
    };
    t.finish(d);
    decl
}
