//! SPEC §10: "Values of `${env.X}` never appear in any output, log, metrics or
//! report." A job whose paths and a parameter come from the environment runs,
//! explains and fails with a sentinel value in those variables; the sentinel
//! must appear in no output, no metrics file, and not in the binary.

use std::process::Command;

const SENTINEL: &str = "s3cr3t-sentinel-7f3a";

#[test]
fn environment_values_are_never_printed() {
    let binary = kiln_tests::build_job("tests/fixtures/secrets/secrets.toml");
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join(SENTINEL);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("t.csv"), "a,g\n1,x\n200,y\n").unwrap();
    let metrics = root.path().join("m.json");
    let run = |args: &[&str], dir: &std::path::Path, limit: Option<&str>| {
        let mut cmd = Command::new(&binary);
        cmd.args(args).env("KILN_TEST_SECRET_DIR", dir).env_remove("KILN_TEST_SECRET_LIMIT");
        if let Some(l) = limit {
            cmd.env("KILN_TEST_SECRET_LIMIT", l);
        }
        let out = cmd.output().unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        (out.status.code(), text)
    };
    let clean = |what: &str, text: &str| assert!(!text.contains(SENTINEL), "{what} shows the secret:\n{text}");

    let report = root.path().join("r.html");
    let (code, text) = run(&["run", "--metrics", metrics.to_str().unwrap(), "--report", report.to_str().unwrap()], &dir, Some("150"));
    assert_eq!(code, Some(0), "{text}");
    clean("run", &text);
    assert!(text.contains("${env.KILN_TEST_SECRET_DIR}/out"), "the template is shown instead:\n{text}");
    let json = std::fs::read_to_string(&metrics).unwrap();
    clean("--metrics", &json);
    let page = std::fs::read_to_string(&report).unwrap();
    clean("--report", &page);
    assert!(page.contains("${env.KILN_TEST_SECRET_DIR}") && page.contains("KilnNodeExec"), "the report shows the template and the plan");
    assert_eq!(kiln_tests::read_parquet_rows(&dir.join("out")).len(), 1, "the env param (150) filtered the rows");

    // Debug logs (Kiln's, DataFusion's, Ballista's), as text and as JSON; also for a
    // value that JSON and `{:?}` escape and a URL percent-encodes (a quote, a space).
    let debug_logs = |dir: &std::path::Path, what: &str| {
        for format in ["text", "json"] {
            let out = Command::new(&binary)
                .arg("run")
                .env("KILN_TEST_SECRET_DIR", dir)
                .env("KILN_TEST_SECRET_LIMIT", "150")
                .env("KILN_LOG", "debug")
                .env("KILN_LOG_FORMAT", format)
                .output()
                .unwrap();
            let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
            assert!(out.status.success(), "{text}");
            assert!(text.lines().count() > 20 && text.contains("${env.KILN_TEST_SECRET_DIR}"), "debug logs name the template: {text}");
            clean(&format!("{format} debug logs{what}"), &text);
        }
    };
    debug_logs(&dir, "");
    let odd = root.path().join(format!("a \"quoted\" {SENTINEL}"));
    std::fs::create_dir_all(&odd).unwrap();
    std::fs::write(odd.join("t.csv"), "a,g\n1,x\n200,y\n").unwrap();
    debug_logs(&odd, " of a quoted value");
    assert_eq!(kiln_tests::read_parquet_rows(&odd.join("out")).len(), 1);

    let (code, text) = run(&["explain"], &dir, Some("150"));
    assert_eq!(code, Some(0), "{text}");
    clean("explain", &text);

    // A failing run: the input is missing under the secret location.
    let (code, text) = run(&["run"], &dir.join("missing"), None);
    assert_eq!(code, Some(1), "{text}");
    clean("the error", &text);

    // A bad parameter value from the environment is not echoed.
    let (code, text) = run(&["run"], &dir, Some(&format!("not-a-number-{SENTINEL}")));
    assert_eq!(code, Some(2), "{text}");
    clean("the parameter error", &text);

    // Nothing of the environment is baked into the binary.
    let bytes = std::fs::read(&binary).unwrap();
    assert!(!bytes.windows(SENTINEL.len()).any(|w| w == SENTINEL.as_bytes()));
}

/// A credential written as a literal in `storage_options` is compiled into the
/// binary: `kiln check` warns at the value and points to `${env.X}`; the same
/// key read from the environment draws no warning.
#[test]
fn a_literal_credential_in_storage_options_is_a_warning() {
    let spec = |value: &str| {
        format!(
            "[pipeline]\nname = \"creds\"\n\n[sources.t]\nformat = \"inline\"\nrows = [ {{ a = 1 }} ]\n\n[sinks.out]\ninput = \"t\"\nformat = \"parquet\"\npath = \"s3://bucket/out\"\nstorage_options = {{ region = \"eu-west-1\", secret_access_key = \"{value}\" }}\n"
        )
    };
    let literal = kiln_compiler::check_text(std::path::Path::new("creds.toml"), &spec("abc123"), std::path::Path::new("."));
    let text = literal.render(false);
    assert!(!literal.has_errors(), "{text}");
    assert!(text.contains("creds.toml:12:63") && text.contains("`secret_access_key` is written as a literal") && text.contains("${env.SECRET_ACCESS_KEY}"), "{text}");
    let from_env = kiln_compiler::check_text(std::path::Path::new("creds.toml"), &spec("${env.S3_SECRET}"), std::path::Path::new("."));
    assert!(!from_env.render(false).contains("literal"), "{}", from_env.render(false));
}
