//! `--report FILE.html` (SPEC §10): one self-contained page about a run —
//! the pipeline's DAG coloured by each node's share of the compute time, the
//! per-node figures of [`crate::node_metrics`], each multi-partition node's
//! partition sizes as a histogram (the skew view), the data-quality results,
//! the executed plans with their operators' metrics, the parameters and the
//! spec's hash. No network: inline CSS, inline SVG and a few lines of inline
//! JavaScript (clicking a node highlights its row). Every value from the
//! environment is redacted ([`crate::redact::text`]) before it is escaped.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;

use crate::plan::{Op, Pipeline};
use crate::run::Report;

/// `s` with every environment value replaced by its template, then HTML-escaped
/// (redacting after escaping would miss a value holding `&`, `<`, `"`…).
fn esc(s: &str) -> String {
    crate::redact::text(s).replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
}

/// `1536` as `1.5 KB` (the report, the progress line).
pub(crate) fn human_bytes(b: u64) -> String {
    let units = ["B", "KB", "MB", "GB", "TB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < units.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 { format!("{b} B") } else { format!("{v:.1} {}", units[u]) }
}

/// `1234567` as `1,234,567` (the report, the progress line).
pub(crate) fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// White → orange → red as `share` goes 0 → 1.
fn heat(share: f64) -> String {
    let s = share.clamp(0.0, 1.0);
    let (r, g, b) = if s < 0.5 {
        let t = s / 0.5;
        (255.0, 255.0 - t * (255.0 - 196.0), 255.0 - t * 255.0)
    } else {
        let t = (s - 0.5) / 0.5;
        (255.0 - t * (255.0 - 214.0), 196.0 - t * (196.0 - 69.0), t * 50.0)
    };
    format!("#{:02x}{:02x}{:02x}", r as u8, g as u8, b as u8)
}

/// A box of the DAG: a node or a sink.
struct Vertex {
    id: String,
    label: String,
    kind: String,
    inputs: Vec<String>,
    is_sink: bool,
}

/// The page for `report`, a run of `pipeline` with parameters `params`.
pub fn html(pipeline: &Pipeline, report: &Report, params: &BTreeMap<String, String>) -> String {
    let mut vertices: Vec<Vertex> = pipeline
        .nodes
        .iter()
        .map(|n| Vertex { id: n.name.clone(), label: n.name.clone(), kind: n.op.kind().to_string(), inputs: n.op.inputs().iter().map(|s| s.to_string()).collect(), is_sink: false })
        .collect();
    for s in &pipeline.sinks {
        vertices.push(Vertex { id: format!("sink:{}", s.name), label: s.name.clone(), kind: format!("sink ({})", format!("{:?}", s.format).to_lowercase()), inputs: vec![s.input.clone()], is_sink: true });
    }
    // Layers: a vertex sits one column right of its deepest input.
    let mut depth: HashMap<String, usize> = HashMap::new();
    for v in &vertices {
        let d = v.inputs.iter().filter_map(|i| depth.get(i)).map(|d| d + 1).max().unwrap_or(0);
        depth.insert(v.id.clone(), d);
    }
    let mut rows_in_layer: HashMap<usize, usize> = HashMap::new();
    let mut pos: HashMap<String, (f64, f64)> = HashMap::new();
    let (w, h, dx, dy) = (190.0, 64.0, 240.0, 88.0);
    for v in &vertices {
        let d = depth[&v.id];
        let row = rows_in_layer.entry(d).or_default();
        pos.insert(v.id.clone(), (20.0 + d as f64 * dx, 20.0 + *row as f64 * dy));
        *row += 1;
    }
    let width = 20.0 + (depth.values().max().copied().unwrap_or(0) as f64 + 1.0) * dx;
    let height = 20.0 + rows_in_layer.values().max().copied().unwrap_or(1) as f64 * dy;
    let total_ms: f64 = report.nodes.values().map(|m| m.elapsed_ms).sum::<f64>().max(1e-9);
    let sink_rows: HashMap<&str, Option<u64>> = report.sinks.iter().map(|s| (s.name.as_str(), s.rows)).collect();

    let mut svg = String::new();
    let _ = write!(
        svg,
        r##"<svg id="dag" xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" role="img" aria-label="pipeline DAG"><defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#666"/></marker></defs>"##
    );
    for v in &vertices {
        let (x2, y2) = pos[&v.id];
        for i in &v.inputs {
            if let Some((x1, y1)) = pos.get(i) {
                let (sx, sy, ex, ey) = (x1 + w, y1 + h / 2.0, x2, y2 + h / 2.0);
                let _ = write!(
                    svg,
                    r##"<path class="edge" data-from="{}" data-to="{}" d="M{sx:.0},{sy:.0} C{:.0},{sy:.0} {:.0},{ey:.0} {ex:.0},{ey:.0}" fill="none" stroke="#666" stroke-width="1.5" marker-end="url(#arrow)"/>"##,
                    esc(i),
                    esc(&v.id),
                    (sx + ex) / 2.0,
                    (sx + ex) / 2.0
                );
            }
        }
    }
    for v in &vertices {
        let (x, y) = pos[&v.id];
        let (fill, figure, rows_attr) = if v.is_sink {
            let rows = sink_rows.get(v.label.as_str()).copied().flatten();
            ("#dbe9f6".to_string(), rows.map_or("skipped".to_string(), |r| format!("{} rows written", thousands(r))), rows.map(|r| r.to_string()).unwrap_or_default())
        } else {
            match report.nodes.get(&v.id) {
                Some(m) => (heat(m.elapsed_ms / total_ms), format!("{} rows · {:.0} ms", thousands(m.rows_out), m.elapsed_ms), m.rows_out.to_string()),
                None => ("#f0f0f0".to_string(), "not run".to_string(), String::new()),
            }
        };
        let _ = write!(
            svg,
            r##"<g class="vertex{}" data-node="{}" data-rows="{}" tabindex="0"><rect x="{x:.0}" y="{y:.0}" width="{w:.0}" height="{h:.0}" rx="{}" fill="{fill}" stroke="#333"/><text x="{:.0}" y="{:.0}" class="name">{}</text><text x="{:.0}" y="{:.0}" class="kind">{}</text><text x="{:.0}" y="{:.0}" class="figure">{}</text></g>"##,
            if v.is_sink { " sink" } else { "" },
            esc(&v.id),
            rows_attr,
            if v.is_sink { 14 } else { 4 },
            x + 8.0,
            y + 18.0,
            esc(&v.label),
            x + 8.0,
            y + 35.0,
            esc(&v.kind),
            x + 8.0,
            y + 53.0,
            esc(&figure)
        );
    }
    svg.push_str("</svg>");

    // The figures, one row per node that ran.
    let mut table = String::from(
        "<table id=\"nodes\"><thead><tr><th>node</th><th>type</th><th>rows in</th><th>rows out</th><th>bytes out</th><th>compute ms</th><th>share</th><th>wall ms</th><th>spill</th><th>peak memory</th><th>partitions</th><th>max / median rows</th><th>operators</th></tr></thead><tbody>",
    );
    for n in &pipeline.nodes {
        let Some(m) = report.nodes.get(&n.name) else { continue };
        let ratio = if m.partition_rows_median > 0 { format!("{:.1}", m.partition_rows_max as f64 / m.partition_rows_median as f64) } else if m.partition_rows_max > 0 { "∞".into() } else { "–".into() };
        let _ = write!(
            table,
            "<tr data-node=\"{}\"><td>{}</td><td>{}</td><td class=\"num rows-in\">{}</td><td class=\"num rows\">{}</td><td class=\"num\">{}</td><td class=\"num\">{:.1}</td><td class=\"num\">{:.0}%</td><td class=\"num\">{:.1}</td><td class=\"num spill\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{} / {} ({ratio})</td><td class=\"ops\">{}</td></tr>",
            esc(&n.name),
            esc(&n.name),
            match &m.join_strategy {
                Some(why) => format!("{} <small class=\"strategy\">{}</small>", n.op.kind(), esc(why)),
                None => n.op.kind().to_string(),
            },
            m.rows_in.map_or("–".into(), thousands),
            thousands(m.rows_out),
            human_bytes(m.bytes_out),
            m.elapsed_ms,
            m.elapsed_ms * 100.0 / total_ms,
            m.wall_ms,
            if m.spill_count > 0 { format!("{} ({} files, {} rows)", human_bytes(m.spill_bytes), m.spill_count, thousands(m.spill_rows)) } else { "none".into() },
            if m.peak_memory_bytes > 0 { human_bytes(m.peak_memory_bytes) } else { "–".into() },
            m.partitions,
            thousands(m.partition_rows_max),
            thousands(m.partition_rows_median),
            esc(&m.operators.join(", "))
        );
    }
    table.push_str("</tbody></table>");

    // The skew view: partition sizes of every node the run split into partitions.
    let mut skew = String::new();
    for n in &pipeline.nodes {
        let Some(m) = report.nodes.get(&n.name) else { continue };
        if m.partitions < 2 {
            continue;
        }
        let heavy = matches!(n.op, Op::Join { .. } | Op::Aggregate { .. });
        let (hw, hh) = (320.0, 90.0);
        let bar = hw / m.partitions as f64;
        let max = m.partition_rows_max.max(1) as f64;
        let _ = write!(
            skew,
            "<figure class=\"histogram{}\" data-node=\"{}\"><figcaption><b>{}</b> ({}): {} partitions, max {} / median {} rows</figcaption><svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{hw:.0}\" height=\"{:.0}\" role=\"img\" aria-label=\"rows per partition of {}\">",
            if heavy { " heavy" } else { "" },
            esc(&n.name),
            esc(&n.name),
            n.op.kind(),
            m.partitions,
            thousands(m.partition_rows_max),
            thousands(m.partition_rows_median),
            hh + 4.0,
            esc(&n.name)
        );
        let _ = write!(skew, "<line x1=\"0\" y1=\"{:.1}\" x2=\"{hw:.0}\" y2=\"{:.1}\" stroke=\"#888\"/>", hh + 2.5, hh + 2.5);
        for (i, rows) in m.partition_rows.iter().enumerate() {
            let bh = (*rows as f64 / max * hh).max(if *rows > 0 { 1.0 } else { 0.0 });
            let _ = write!(
                skew,
                "<rect class=\"bar\" data-partition=\"{i}\" data-rows=\"{rows}\" x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{bh:.1}\" fill=\"{}\"><title>partition {i}: {} rows</title></rect>",
                i as f64 * bar + 0.5,
                hh - bh + 2.0,
                (bar - 1.0).max(0.5),
                if *rows > 10 * m.partition_rows_median.max(1) { "#d64545" } else { "#4a7fb5" },
                thousands(*rows)
            );
        }
        skew.push_str("</svg></figure>");
    }
    if skew.is_empty() {
        skew.push_str("<p>No node ran in more than one partition.</p>");
    }

    let mut quality = String::new();
    for q in &report.quality {
        let _ = write!(quality, "<h3>{} ({} rows checked)</h3><table class=\"quality\"><tr><th>rule</th><th>on fail</th><th>rows failing</th></tr>", esc(&q.node), thousands(q.rows));
        for r in &q.rules {
            let _ = write!(quality, "<tr class=\"{}\"><td>{}</td><td>{}</td><td class=\"num\">{}</td></tr>", if r.failed > 0 { "failed" } else { "passed" }, esc(&r.rule), esc(&r.on_fail), thousands(r.failed));
        }
        quality.push_str("</table>");
    }
    if quality.is_empty() {
        quality.push_str("<p>The spec has no <code>expect</code> node.</p>");
    }

    let mut sinks = String::from("<table id=\"sinks\"><tr><th>sink</th><th>rows</th><th>target</th></tr>");
    for s in &report.sinks {
        let _ = write!(sinks, "<tr data-sink=\"{}\"><td>{}</td><td class=\"num\">{}</td><td><code>{}</code></td></tr>", esc(&s.name), esc(&s.name), s.rows.map_or("skipped (exists)".into(), thousands), esc(&s.path));
    }
    sinks.push_str("</table>");

    let mut params_html = String::from("<table id=\"params\"><tr><th>parameter</th><th>value</th></tr>");
    for (k, v) in params {
        let _ = write!(params_html, "<tr><td>{}</td><td><code>{}</code></td></tr>", esc(k), esc(v));
    }
    params_html.push_str("</table>");

    let mut plans = String::new();
    for (node, text) in &report.plans {
        let _ = write!(plans, "<details><summary>sink <b>{}</b></summary><pre>{}</pre></details>", esc(node), esc(text));
    }

    format!(
        r##"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{name}: Kiln run report</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #222; }}
h1 {{ font-size: 22px; margin: 0 0 4px; }} h2 {{ font-size: 17px; margin: 28px 0 8px; border-bottom: 1px solid #ddd; }}
.meta {{ color: #555; }} code, pre {{ font: 12px/1.35 ui-monospace, monospace; }}
pre {{ background: #f6f6f6; padding: 8px; overflow: auto; }}
table {{ border-collapse: collapse; }} th, td {{ border: 1px solid #ddd; padding: 3px 8px; text-align: left; }}
th {{ background: #f3f3f3; }} td.num {{ text-align: right; font-variant-numeric: tabular-nums; }} td.ops {{ color: #555; font-size: 12px; }}
tr.selected td {{ background: #fff3bf; }} tr.failed td {{ color: #b00020; }}
#dag text {{ font: 12px system-ui, sans-serif; }} #dag .name {{ font-weight: 600; }} #dag .kind, #dag .figure {{ fill: #333; }}
#dag .vertex {{ cursor: pointer; }} #dag .vertex.selected rect {{ stroke: #1a56db; stroke-width: 3; }}
.legend span {{ display: inline-block; width: 60px; height: 10px; border: 1px solid #999; }}
figure.histogram {{ display: inline-block; margin: 6px 18px 6px 0; }} figcaption {{ font-size: 12px; }}
</style></head>
<body>
<h1>{name}</h1>
<p class="meta">Kiln {version} · run <code id="run-id">{run_id}</code> · spec sha256:<code id="spec-hash">{hash}</code> · ran in <span id="seconds">{seconds:.2}</span> s · metrics format version 1</p>
<h2>Pipeline</h2>
<p class="legend">Boxes are coloured by their share of the run's compute time: <span style="background:{c0}"></span> none <span style="background:{c1}"></span> half <span style="background:{c2}"></span> all. Click one to find its row.</p>
{svg}
<h2>Sinks</h2>
{sinks}
<h2>Nodes</h2>
<p class="meta">Rows out count what left each node in the executed plan. Compute time is the node's operators' time summed over partitions; DataFusion may run an operator (a sort) in the node below the one that asked for it, and it counts there.</p>
{table}
<h2>Partitions (skew)</h2>
{skew}
<h2>Data quality</h2>
{quality}
<h2>Plans</h2>
{plans}
<h2>Parameters</h2>
{params_html}
<script>
(function () {{
  function select(name) {{
    document.querySelectorAll('.selected').forEach(function (e) {{ e.classList.remove('selected'); }});
    document.querySelectorAll('[data-node="' + name + '"]').forEach(function (e) {{ e.classList.add('selected'); }});
  }}
  document.querySelectorAll('#dag .vertex').forEach(function (g) {{
    g.addEventListener('click', function () {{
      select(g.getAttribute('data-node'));
      var row = document.querySelector('#nodes tr[data-node="' + g.getAttribute('data-node') + '"]');
      if (row) {{ row.scrollIntoView({{ block: 'center' }}); }}
    }});
  }});
  document.body.setAttribute('data-ready', 'yes');
}})();
</script>
</body></html>
"##,
        name = esc(&pipeline.name),
        version = crate::KILN_VERSION,
        hash = esc(&pipeline.spec_hash),
        run_id = crate::logging::run_id(),
        seconds = report.seconds,
        c0 = heat(0.0),
        c1 = heat(0.5),
        c2 = heat(1.0),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_values_are_redacted_before_they_are_escaped() {
        crate::redact::remember("p&ss<w\"rd-7f3a", "${env.KILN_REPORT_TEST_PW}");
        let pipeline = Pipeline {
            name: "t".into(),
            description: String::new(),
            spec_hash: String::new(),
            params: vec![],
            runtime: Default::default(),
            nodes: vec![],
            sinks: vec![],
            tests: vec![],
            streaming: None,
        };
        let report = Report {
            sinks: vec![crate::run::SinkReport { name: "s".into(), path: "/data/p&ss<w\"rd-7f3a/out".into(), rows: Some(1) }],
            quality: vec![],
            seconds: 0.1,
            batches: vec![],
            cluster_jobs: vec![],
            nodes: Default::default(),
            plans: [("s".to_string(), "DataSourceExec: file=p&ss<w\"rd-7f3a".to_string())].into(),
            params: [("pw".to_string(), "p&ss<w\"rd-7f3a".to_string())].into(),
        };
        let page = html(&pipeline, &report, &report.params);
        for leaked in ["p&ss<w\"rd-7f3a", "p&amp;ss&lt;w&quot;rd-7f3a", "7f3a"] {
            assert!(!page.contains(leaked), "{leaked} in the page");
        }
        assert!(page.contains("${env.KILN_REPORT_TEST_PW}"));
    }
}
