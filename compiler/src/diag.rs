//! Diagnostics: plain values with spans, collected by every pass and rendered
//! (with miette) only at the edge, by the CLI and the snapshot tests.

use std::ops::Range;
use std::path::PathBuf;

/// How bad a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Warning,
    Error,
}

/// One problem in a spec: what, where (a byte range of the spec text), and how to fix it.
#[derive(Debug, Clone, PartialEq)]
pub struct Diagnostic {
    pub severity: Severity,
    /// Stable identifier such as `kiln::unknown-column`.
    pub code: &'static str,
    pub message: String,
    pub span: Range<usize>,
    /// Text shown under the underlined span.
    pub label: String,
    pub related: Vec<(Range<usize>, String)>,
    pub help: Option<String>,
    pub notes: Vec<String>,
}

impl Diagnostic {
    pub fn error(code: &'static str, span: Range<usize>, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Error,
            code,
            message: message.into(),
            span,
            label: String::new(),
            related: Vec::new(),
            help: None,
            notes: Vec::new(),
        }
    }

    pub fn warning(code: &'static str, span: Range<usize>, message: impl Into<String>) -> Self {
        Diagnostic { severity: Severity::Warning, ..Diagnostic::error(code, span, message) }
    }

    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = label.into();
        self
    }

    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    pub fn note(mut self, note: impl Into<String>) -> Self {
        self.notes.push(note.into());
        self
    }

    pub fn related(mut self, span: Range<usize>, label: impl Into<String>) -> Self {
        self.related.push((span, label.into()));
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// A sink for diagnostics that passes push into.
#[derive(Debug, Default)]
pub struct Diags(pub Vec<Diagnostic>);

impl Diags {
    pub fn push(&mut self, d: Diagnostic) {
        self.0.push(d);
    }

    pub fn has_errors(&self) -> bool {
        self.0.iter().any(Diagnostic::is_error)
    }
}

/// "did you mean `x`?" for the closest of `candidates`, when one is close enough.
pub fn did_you_mean<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let lower = name.to_ascii_lowercase();
    candidates
        .into_iter()
        // Suggesting the very name that was rejected helps nobody.
        .filter(|c| *c != name)
        .map(|c| (strsim::jaro_winkler(&lower, &c.to_ascii_lowercase()), c))
        .filter(|(score, _)| *score >= 0.8)
        // Equal scores: the shorter, then the alphabetically first name (candidates
        // often come from a hash map; the hint must not change between runs).
        .max_by(|a, b| a.0.total_cmp(&b.0).then_with(|| b.1.len().cmp(&a.1.len())).then_with(|| b.1.cmp(a.1)))
        .map(|(_, c)| format!("did you mean `{c}`?"))
}

/// A spec file: its path (as the user gave it) and its text.
#[derive(Debug, Clone)]
pub struct SourceFile {
    pub path: PathBuf,
    pub text: String,
}

impl SourceFile {
    /// 1-based line and column (in characters) of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let before = &self.text[..offset.min(self.text.len())];
        let line = before.matches('\n').count() + 1;
        let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        (line, col)
    }
}

/// Renders diagnostics the way `kiln check` prints them: a `file:line:col`
/// header, then miette's snippet with the span underlined, help and notes.
pub fn render(file: &SourceFile, diags: &[Diagnostic], color: bool) -> String {
    use miette::{GraphicalReportHandler, GraphicalTheme, LabeledSpan, MietteDiagnostic, NamedSource, Report};
    let theme = if color { GraphicalTheme::unicode() } else { GraphicalTheme::unicode_nocolor() };
    let handler = GraphicalReportHandler::new_themed(theme).with_width(100).with_links(false);
    let name = file.path.display().to_string();
    let mut out = String::new();
    for d in diags {
        let (line, col) = file.line_col(d.span.start);
        let kind = if d.is_error() { "error" } else { "warning" };
        out.push_str(&format!("{kind}[{}]: {name}:{line}:{col}: {}\n", d.code, d.message));
        let mut labels = vec![LabeledSpan::new_primary_with_span(
            (!d.label.is_empty()).then(|| d.label.clone()),
            d.span.clone(),
        )];
        labels.extend(d.related.iter().map(|(s, l)| LabeledSpan::new_with_span(Some(l.clone()), s.clone())));
        let mut help = d.help.clone();
        for n in &d.notes {
            help = Some(match help {
                Some(h) => format!("{h}\nnote: {n}"),
                None => format!("note: {n}"),
            });
        }
        let mut md = MietteDiagnostic::new(String::new())
            .with_severity(if d.is_error() { miette::Severity::Error } else { miette::Severity::Warning })
            .with_labels(labels);
        if let Some(h) = help {
            md = md.with_help(h);
        }
        let report = Report::new(md).with_source_code(NamedSource::new(name.clone(), file.text.clone()));
        let mut text = String::new();
        let _ = handler.render_report(&mut text, report.as_ref());
        // The message is on the header line already; drop miette's empty title line.
        for line in text.lines().filter(|l| l.trim() != "×") {
            out.push_str(line);
            out.push('\n');
        }
        out.push('\n');
    }
    let errors = diags.iter().filter(|d| d.is_error()).count();
    let warnings = diags.len() - errors;
    if errors + warnings > 0 {
        out.push_str(&format!("{name}: {errors} error(s), {warnings} warning(s)\n"));
    }
    out
}
