//! `kiln check` must never panic or abort, whatever it is given.
//!
//! Seeds: every spec of the diagnostics corpus, the guide's specs and the
//! conformance suite. Each is mutated (deterministically: a fixed seed) by
//! deleting, duplicating, swapping and truncating lines and bytes, and by
//! splicing in fragments that have broken the checker before (deep types,
//! long `OR` chains, unclosed `${`, stray quotes, huge numbers). Every mutant
//! goes through the whole pass chain and code generation.
//!
//! `KILN_FUZZ_ITERS` sets the number of mutants (default 400, a few seconds);
//! `tests/fuzz.sh` runs a long campaign.

use std::path::{Path, PathBuf};

/// xorshift64*: a small deterministic generator (no dependency, same run every time).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 { 0 } else { (self.next() % n as u64) as usize }
    }
}

const FRAGMENTS: &[&str] = &[
    "\"", "'", "[", "]", "{", "}", "=", ",", "\n", "${", "${params.", "${env.", "}", "(", ")", "list<", ">", "not null",
    " OR a = 1", " AND ", "CASE WHEN", "INTERVAL '1 day'", "count_distinct(", "l.", "r.", "9999999999999999999999",
    "-1", "0", "1e308", "NaN", "\u{feff}", "ü", "\\", "\"\"\"", "#", "[[tests]]", "[transforms.x]", "type = \"join\"",
    "partitions = 4000000000", "buckets = 0", "format = \"delta\"", "input = \"x\"", "on = [\"l.k = r.k\"]",
];

fn seeds(root: &Path) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    let mut stack = vec![root.join("tests/diagnostics"), root.join("specs"), root.join("tests/conformance")];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "toml") && !p.ends_with("Cargo.toml") {
                if let Ok(text) = std::fs::read_to_string(&p) {
                    out.push((p, text));
                }
            }
        }
    }
    out.sort();
    out
}

fn mutate(text: &str, rng: &mut Rng) -> String {
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    for _ in 0..1 + rng.below(4) {
        if lines.is_empty() {
            lines.push(String::new());
        }
        let i = rng.below(lines.len());
        match rng.below(7) {
            0 => {
                lines.remove(i);
            }
            1 => {
                let l = lines[i].clone();
                lines.insert(i, l);
            }
            2 => {
                let j = rng.below(lines.len());
                lines.swap(i, j);
            }
            3 => {
                let l = &mut lines[i];
                let cut = rng.below(l.len() + 1);
                let cut = (0..=cut).rev().find(|&c| l.is_char_boundary(c)).unwrap_or(0);
                l.truncate(cut);
            }
            _ => {
                let l = &mut lines[i];
                let at = rng.below(l.len() + 1);
                let at = (0..=at).rev().find(|&c| l.is_char_boundary(c)).unwrap_or(0);
                l.insert_str(at, FRAGMENTS[rng.below(FRAGMENTS.len())]);
            }
        }
    }
    lines.join("\n")
}

/// Checks `text` as a spec in `base`, then generates code for it: a panic fails.
fn check(name: &str, text: &str, base: &Path) {
    let checked = kiln_compiler::check_text(Path::new(name), text, base);
    let rendered = checked.render(false);
    assert!(!rendered.contains("panicked"), "kiln check panicked on {name}:\n{text}\n---\n{rendered}");
    if let Some(p) = &checked.pipeline {
        let modules = kiln_compiler::job::rust_modules(&checked.rust, None).unwrap_or_default();
        let info = kiln_compiler::codegen::CrateInfo { spec_path: name, runtime_path: "../../runtime", rust: &modules };
        let _ = kiln_compiler::codegen::generate(p, &info);
    }
}

#[test]
fn mutants_of_every_known_spec_never_panic() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let seeds = seeds(&root);
    assert!(seeds.len() > 100, "only {} seed specs", seeds.len());
    let iters: usize = std::env::var("KILN_FUZZ_ITERS").ok().and_then(|v| v.parse().ok()).unwrap_or(400);
    let mut rng = Rng(0x6b69_6c6e_2026_1130 ^ std::env::var("KILN_FUZZ_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(0));
    for n in 0..iters {
        let (path, text) = &seeds[rng.below(seeds.len())];
        let mutant = mutate(text, &mut rng);
        let base = path.parent().unwrap_or(Path::new("."));
        check(&format!("mutant-{n}-of-{}", path.file_name().unwrap().to_string_lossy()), &mutant, base);
    }
}

const HEAD: &str = "[pipeline]\nname = \"deep\"\n\n[sources.t]\nformat = \"inline\"\nrows = [ { a = 1, s = \"x\" } ]\n";

#[test]
fn a_type_nested_thousands_deep_is_an_error() {
    let ty = format!("{}int64{}", "list<".repeat(5000), ">".repeat(5000));
    let text = format!("[pipeline]\nname = \"deep\"\n\n[sources.t]\nformat = \"json\"\npath = \"t.json\"\nschema = {{ a = \"{ty}\" }}\n");
    let checked = kiln_compiler::check_text(Path::new("deep.toml"), &text, Path::new("."));
    assert!(checked.render(false).contains("types may nest at most"), "{}", checked.render(false));
}

#[test]
fn an_or_chain_of_ten_thousand_terms_is_an_error() {
    let chain = (0..10_000).map(|i| format!("a = {i}")).collect::<Vec<_>>().join(" OR ");
    let text = format!("{HEAD}\n[transforms.f]\ntype = \"filter\"\ninput = \"t\"\npredicate = \"{chain}\"\n");
    let checked = kiln_compiler::check_text(Path::new("deep.toml"), &text, Path::new("."));
    let rendered = checked.render(false);
    assert!(rendered.contains("kiln::too-deep") && rendered.contains("IN ("), "{rendered}");
}

#[test]
fn a_long_in_list_is_fine_and_deep_parentheses_are_an_error() {
    let list = (0..10_000).map(|i| i.to_string()).collect::<Vec<_>>().join(", ");
    let text = format!("{HEAD}\n[transforms.f]\ntype = \"filter\"\ninput = \"t\"\npredicate = \"a IN ({list})\"\n\n[sinks.out]\ninput = \"f\"\nformat = \"console\"\n");
    let checked = kiln_compiler::check_text(Path::new("deep.toml"), &text, Path::new("."));
    assert!(!checked.has_errors(), "{}", checked.render(false));
    let parens = format!("{}a{}", "(".repeat(3000), ")".repeat(3000));
    let text = format!("{HEAD}\n[transforms.f]\ntype = \"with_columns\"\ninput = \"t\"\ncolumns.b = \"{parens}\"\n");
    let checked = kiln_compiler::check_text(Path::new("deep.toml"), &text, Path::new("."));
    assert!(checked.render(false).contains("kiln::too-deep"), "{}", checked.render(false));
}

#[test]
fn deeply_nested_toml_does_not_abort() {
    let text = format!("{HEAD}\nx = {}1{}\n", "[".repeat(20_000), "]".repeat(20_000));
    let checked = kiln_compiler::check_text(Path::new("deep.toml"), &text, Path::new("."));
    assert!(checked.has_errors());
}

#[test]
fn a_udf_with_a_raw_identifier_generates_code() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("udfs")).unwrap();
    std::fs::write(dir.path().join("udfs/kw.rs"), "#[kiln::udf]\npub fn r#match(a: i64) -> i64 {\n    a + 1\n}\n").unwrap();
    let text = format!("[pipeline]\nname = \"kw\"\nudfs = [\"udfs/kw.rs\"]\n{}\n[transforms.f]\ntype = \"with_columns\"\ninput = \"t\"\ncolumns.b = \"\\\"match\\\"(a)\"\n\n[sinks.out]\ninput = \"f\"\nformat = \"console\"\n", &HEAD[HEAD.find("[sources").unwrap()..]);
    let checked = kiln_compiler::check_text(Path::new("kw.toml"), &text, dir.path());
    assert!(!checked.has_errors(), "{}", checked.render(false));
    let modules = kiln_compiler::job::rust_modules(&checked.rust, None).unwrap();
    let info = kiln_compiler::codegen::CrateInfo { spec_path: "kw.toml", runtime_path: "../../runtime", rust: &modules };
    let files = kiln_compiler::codegen::generate(checked.pipeline.as_ref().unwrap(), &info).unwrap();
    assert!(files[Path::new("src/main.rs")].contains("match_udf"), "{}", files[Path::new("src/main.rs")]);
}

#[test]
fn a_file_name_cannot_inject_code_into_the_generated_crate() {
    let text = format!("{HEAD}\n[sinks.out]\ninput = \"t\"\nformat = \"console\"\n");
    let checked = kiln_compiler::check_text(Path::new("x.toml"), &text, Path::new("."));
    let pipeline = checked.pipeline.expect("a valid spec");
    let evil = "specs/a\nfn injected() {}\n//.toml";
    let info = kiln_compiler::codegen::CrateInfo { spec_path: evil, runtime_path: "../r\"untime\n[x]", rust: &[] };
    let files = kiln_compiler::codegen::generate(&pipeline, &info).unwrap();
    let main = &files[Path::new("src/main.rs")];
    assert!(!main.contains("\nfn injected"), "{main}");
    assert!(main.lines().next().unwrap().contains(r"specs/a\nfn injected() {}\n//.toml"), "{main}");
    let cargo: toml::Table = files[Path::new("Cargo.toml")].parse().expect("Cargo.toml parses");
    assert_eq!(cargo["dependencies"]["kiln"]["path"].as_str(), Some("../r\"untime\n[x]"));
}
