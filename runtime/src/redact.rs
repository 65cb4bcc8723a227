//! `${env.X}` values never appear in any output (SPEC §10).
//!
//! Every value the run reads from the environment — `${env.X}` in a string, a
//! parameter set by its `env` variable — is remembered with the template that
//! names it, and every place Kiln prints (errors, progress lines, `explain`,
//! `--metrics`) passes its text through [`text`], which writes the template
//! (`${env.DB_PASSWORD}`) where the value would appear. Values shorter than
//! [`MIN_LEN`] characters are not replaced (they would mangle every number in
//! the output); nothing a spec reads from the environment should be that short
//! a secret. A value is also replaced in the forms other printers give it:
//! escaped as JSON does (JSON log lines, `--metrics`), as Rust's `{:?}` does
//! (debug logs), and percent-encoded as a URL path (DataFusion's file URLs).

use std::sync::RwLock;

/// The shortest value that is replaced.
pub const MIN_LEN: usize = 4;

static SECRETS: RwLock<Vec<(String, String)>> = RwLock::new(Vec::new());

/// Remembers that `value` came from the environment, as `template`.
pub fn remember(value: &str, template: &str) {
    if value.chars().count() < MIN_LEN {
        return;
    }
    // DataFusion shows local files as object-store paths, without the leading `/`.
    if let Some(relative) = value.strip_prefix('/') {
        remember(relative, template);
    }
    let mut secrets = SECRETS.write().unwrap_or_else(|e| e.into_inner());
    for form in forms(value) {
        if !secrets.iter().any(|(v, _)| *v == form) {
            secrets.push((form, template.to_string()));
        }
    }
    // Longest first, so a value that contains another is replaced whole.
    secrets.sort_by(|a, b| b.0.len().cmp(&a.0.len()));
}

/// `value` as printed: itself, JSON-escaped, `{:?}`-escaped, percent-encoded.
fn forms(value: &str) -> Vec<String> {
    let quoted = |s: String| s.strip_prefix('"').and_then(|s| s.strip_suffix('"')).map(str::to_string).unwrap_or(s);
    let json = quoted(serde_json::to_string(value).unwrap_or_default());
    let debug = quoted(format!("{value:?}"));
    let mut url = String::new();
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/:@!$&'()*+,;=".contains(&b) {
            url.push(b as char);
        } else {
            url.push_str(&format!("%{b:02X}"));
        }
    }
    let mut out = vec![value.to_string()];
    for f in [json, debug, url] {
        if !f.is_empty() && !out.contains(&f) {
            out.push(f);
        }
    }
    out
}

/// `s` with every remembered value replaced by its template.
pub fn text(s: &str) -> String {
    let secrets = SECRETS.read().unwrap_or_else(|e| e.into_inner());
    let mut out = s.to_string();
    for (value, template) in secrets.iter() {
        if out.contains(value.as_str()) {
            out = out.replace(value.as_str(), template);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn values_become_templates_longest_first() {
        super::remember("hunter2-secret", "${env.PW}");
        super::remember("hunter2", "${env.SHORTER}");
        super::remember("abc", "${env.TINY}");
        assert_eq!(super::text("postgres://u:hunter2-secret@h/db and hunter2 and abc"), "postgres://u:${env.PW}@h/db and ${env.SHORTER} and abc");
    }

    #[test]
    fn escaped_and_encoded_forms_are_replaced_too() {
        super::remember("pa\"ss\\word x", "${env.Q}");
        let json = serde_json::json!({ "msg": "pa\"ss\\word x" }).to_string();
        assert_eq!(super::text(&json), r#"{"msg":"${env.Q}"}"#);
        assert_eq!(super::text(&format!("{:?}", "pa\"ss\\word x")), "\"${env.Q}\"");
        assert_eq!(super::text("file:///pa%22ss%5Cword%20x/t.csv"), "file:///${env.Q}/t.csv");
    }
}
