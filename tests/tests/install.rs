//! Kiln outside its own repository (issue 20): `cargo install` a `kiln` into a
//! temporary prefix and use it in a project outside the checkout — `kiln init`,
//! `check`, `test`, `build`, the binary — with output equal to rows computed by
//! hand from the sample data `kiln init` writes. A second Kiln, from another
//! checkout with a different runtime, gets a home of its own; neither disturbs
//! the other, and the second keeps working after its checkout is deleted.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use kiln_tests::{Row, f, i, read_parquet_rows, repo_root, row, s, sorted};

/// The target directory the tests' own builds use, so the install and the job
/// builds reuse DataFusion instead of compiling it again.
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| repo_root().join("target"), PathBuf::from)
}

/// `cmd` without the variables cargo sets for this test process.
fn clean(mut cmd: Command, home: &Path) -> Command {
    for (key, _) in std::env::vars_os() {
        if kiln_compiler::job::inherited_package_var(&key.to_string_lossy()) {
            cmd.env_remove(&key);
        }
    }
    cmd.env_remove("KILN_WORKSPACE").env("KILN_HOME", home).env("CARGO_TARGET_DIR", target_dir());
    cmd
}

fn ok(output: Output, what: &str) -> String {
    assert!(output.status.success(), "{what}: {}\n{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Installs the `kiln` of the checkout at `checkout` into `prefix` (a dev build, as the tests' own).
fn install(checkout: &Path, prefix: &Path, home: &Path) -> PathBuf {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["install", "--debug", "--locked", "--offline", "--path"]).arg(checkout.join("compiler")).arg("--root").arg(prefix);
    ok(clean(cmd, home).output().unwrap(), "cargo install");
    prefix.join("bin/kiln")
}

/// Installs `kiln-compiler` with `cargo install --git file://CHECKOUT --rev REV`, as
/// `kiln init`'s workflow installs a pinned Kiln; cargo builds it in a clone of its own.
fn install_git(checkout: &Path, rev: &str, prefix: &Path, home: &Path) -> PathBuf {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    // Not --offline: cargo refuses to fetch even a file:// repository offline.
    cmd.args(["install", "--debug", "--locked", "--git"]).arg(format!("file://{}", checkout.display())).args(["--rev", rev, "kiln-compiler", "--root"]).arg(prefix);
    ok(clean(cmd, home).output().unwrap(), "cargo install --git");
    prefix.join("bin/kiln")
}

fn kiln(bin: &Path, home: &Path, dir: &Path, args: &[&str]) -> String {
    let mut cmd = Command::new(bin);
    cmd.args(args).current_dir(dir);
    ok(clean(cmd, home).output().unwrap(), &format!("kiln {args:?}"))
}

/// The homes (one per Kiln build) under `home`.
fn homes(home: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(home).unwrap().flatten().map(|e| e.path()).filter(|p| p.join(".kiln-home").is_file()).collect();
    out.sort();
    out
}

/// The sample data's paid orders with an amount, per country (by hand from `kiln init`'s CSV).
fn expected() -> Vec<Row> {
    sorted(vec![
        row(&[("country", s("DE")), ("orders", i(1)), ("revenue", f(30.0))]),
        row(&[("country", s("FR")), ("orders", i(2)), ("revenue", f(30.5))]),
        row(&[("country", s("US")), ("orders", i(2)), ("revenue", f(150.0))]),
    ])
}

/// Builds the project's pipeline with `bin`, runs the binary from the spec's
/// directory, and returns the binary's path and the rows it wrote.
fn build_and_run(bin: &Path, home: &Path, project: &Path) -> (PathBuf, Vec<Row>) {
    let out = kiln(bin, home, project, &["build", "pipelines/orders.toml"]);
    let binary = PathBuf::from(out.lines().last().unwrap());
    assert_eq!(binary, project.join("target/kiln/orders"));
    let output = project.join("pipelines/out/paid_by_country.parquet");
    let _ = std::fs::remove_file(&output);
    ok(Command::new(&binary).arg("run").current_dir(project.join("pipelines")).output().unwrap(), "the binary");
    (binary, sorted(read_parquet_rows(&output)))
}

#[test]
fn an_installed_kiln_works_in_any_repository() {
    let tmp = tempfile::tempdir().unwrap();
    assert!(!tmp.path().starts_with(repo_root()));
    // Kiln's home and the second checkout at fixed paths in the target directory: cargo
    // keys build outputs by a package's path, so a fresh path each run would add
    // another build of the runtime to the target directory every time.
    let fixed = target_dir().join("kiln-install-test");
    let _ = std::fs::remove_dir_all(&fixed);
    let home = fixed.join("home");
    let project = tmp.path().join("project");
    std::fs::create_dir_all(&project).unwrap();
    ok(Command::new("git").args(["init", "--quiet"]).current_dir(&project).output().unwrap(), "git init");
    std::fs::write(project.join(".gitignore"), "*.log\n").unwrap();

    let first = install(&repo_root(), &tmp.path().join("prefix"), &home);
    let written = kiln(&first, &home, &project, &["init"]);
    for f in ["pipelines/orders.toml", "pipelines/data/orders.csv", ".github/workflows/kiln.yml"] {
        assert!(project.join(f).is_file(), "{f} missing: {written}");
    }
    // The existing .gitignore keeps its lines and gains Kiln's.
    assert_eq!(std::fs::read_to_string(project.join(".gitignore")).unwrap(), "*.log\n# Kiln: job binaries and the sample pipeline's output\n/target/\n/pipelines/out/\n");
    let workflow = std::fs::read_to_string(project.join(".github/workflows/kiln.yml")).unwrap();
    assert!(workflow.contains("kiln check \"$spec\"") && workflow.contains("kiln test \"$spec\"") && workflow.contains("~/.cache/kiln"), "{workflow}");
    // A second init keeps everything.
    assert_eq!(kiln(&first, &home, &project, &["init"]), "");

    kiln(&first, &home, &project, &["check", "pipelines/orders.toml"]);
    kiln(&first, &home, &project, &["test", "pipelines/orders.toml"]);
    let (binary, rows) = build_and_run(&first, &home, &project);
    assert_eq!(rows, expected());
    // Built in Kiln's home, not in the checkout kiln was installed from.
    let first_home = homes(&home);
    assert_eq!(first_home.len(), 1, "{first_home:?}");
    assert!(first_home[0].join("generated/orders/Cargo.toml").is_file());
    assert!(!repo_root().join("generated/orders").exists());
    // Built from a subdirectory, the binary still goes to the repository's target/kiln/,
    // where kiln init's `/target/` line ignores it.
    let from_sub = kiln(&first, &home, &project.join("pipelines"), &["build", "orders.toml"]);
    assert_eq!(PathBuf::from(from_sub.lines().last().unwrap()), binary);
    assert!(!project.join("pipelines/target").exists());
    let version = |b: &Path| ok(Command::new(b).arg("--version").output().unwrap(), "--version");
    let first_version = version(&binary);

    // The quick start's last steps: `kiln run`, and `kiln deploy`, which refuses the sample's
    // local paths (each pod has its own disk) unless one volume is mounted in every pod.
    let output = project.join("pipelines/out/paid_by_country.parquet");
    std::fs::remove_file(&output).unwrap();
    kiln(&first, &home, &project, &["run", "pipelines/orders.toml"]);
    assert_eq!(sorted(read_parquet_rows(&output)), expected());
    let mut cmd = Command::new(&first);
    cmd.args(["deploy", "pipelines/orders.toml", "--k8s", "k8s"]).current_dir(&project);
    let refused = clean(cmd, &home).output().unwrap();
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && err.contains("--shared-volume") && err.contains("data/orders.csv"), "{err}");
    assert!(!project.join("k8s").exists(), "nothing written");
    kiln(&first, &home, &project, &["deploy", "pipelines/orders.toml", "--k8s", "k8s", "--shared-volume", "pipelines", "--kiln-git", "https://example.com/kiln.git", "--kiln-rev", "v0.1.0"]);
    let dockerfile = std::fs::read_to_string(project.join("k8s/Dockerfile")).unwrap();
    for want in ["make", "kiln build --release pipelines/orders.toml", "ARG KILN_GIT=https://example.com/kiln.git", "ARG KILN_REV=v0.1.0", "--rev \"$KILN_REV\""] {
        assert!(dockerfile.contains(want), "{want}: {dockerfile}");
    }
    assert!(std::fs::read_dir(project.join("k8s")).unwrap().flatten().any(|e| std::fs::read_to_string(e.path()).unwrap_or_default().contains("claimName")), "a manifest mounts the claim");

    // Two projects build a pipeline of one name at once in the shared home: each gets its own
    // binary (their specs differ), not the other's.
    let other = tmp.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    kiln(&first, &home, &other, &["init", "--kiln-git", "https://example.com/kiln.git", "--kiln-rev", "0123abc"]);
    let workflow = std::fs::read_to_string(other.join(".github/workflows/kiln.yml")).unwrap();
    assert!(workflow.contains("KILN_GIT: https://example.com/kiln.git") && workflow.contains("KILN_REV: \"0123abc\""), "{workflow}");
    let spec = other.join("pipelines/orders.toml");
    let text = std::fs::read_to_string(&spec).unwrap();
    std::fs::write(&spec, text.replace("predicate = \"status = 'paid' AND amount IS NOT NULL\"", "predicate = \"status = 'refunded'\"")).unwrap();
    let built: Vec<(PathBuf, Vec<Row>)> = std::thread::scope(|scope| {
        let a = scope.spawn(|| build_and_run(&first, &home, &project));
        let b = scope.spawn(|| build_and_run(&first, &home, &other));
        vec![a.join().unwrap(), b.join().unwrap()]
    });
    assert_eq!(built[0].1, expected());
    // The sample's one refunded order (by hand from `kiln init`'s CSV).
    assert_eq!(built[1].1, vec![row(&[("country", s("DE")), ("orders", i(1)), ("revenue", f(7.25))])]);

    // A second Kiln from another checkout whose runtime differs: a home of its own.
    let second_checkout = fixed.join("second");
    ok(Command::new("git").args(["clone", "--quiet"]).arg(repo_root()).arg(&second_checkout).output().unwrap(), "git clone");
    let lib = second_checkout.join("runtime/src/lib.rs");
    let text = std::fs::read_to_string(&lib).unwrap();
    std::fs::write(&lib, format!("{text}\n// A second Kiln (tests/tests/install.rs).\n")).unwrap();
    // Another version, as a second Kiln is: cargo keys a path package's build outputs by
    // its workspace-relative path and version, so the same version would share (and
    // overwrite) this checkout's outputs in the shared target directory.
    let manifest = second_checkout.join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    // The version names this checkout's commit too: cargo 1.95 takes a build of a git
    // package of the same name and version in the shared target directory for fresh,
    // whatever its commit (a two-commit crate installed with --git --rev shows it), so an
    // older commit's kiln was installed.
    let head = ok(Command::new("git").args(["rev-parse", "--short=12", "HEAD"]).current_dir(repo_root()).output().unwrap(), "git rev-parse");
    std::fs::write(&manifest, text.replacen("version = \"0.1.0\"", &format!("version = \"0.1.0-second.g{}\"", head.trim()), 1)).unwrap();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut update = Command::new(cargo);
    update.args(["update", "--workspace", "--offline"]).current_dir(&second_checkout);
    ok(clean(update, &home).output().unwrap(), "cargo update --workspace");
    // Committed with fixed names and dates, so the same Kiln tree is the same commit and
    // cargo's build of it stays fresh between runs.
    let git = |args: &[&str]| {
        let mut cmd = Command::new("git");
        cmd.args(["-c", "user.name=kiln-test", "-c", "user.email=test@kiln.invalid"]).args(args).current_dir(&second_checkout);
        cmd.env("GIT_AUTHOR_DATE", "2026-01-01T00:00:00Z").env("GIT_COMMITTER_DATE", "2026-01-01T00:00:00Z");
        ok(cmd.output().unwrap(), &format!("git {args:?}"))
    };
    git(&["commit", "--quiet", "--all", "--message", "A second Kiln"]);
    let second_rev = git(&["rev-parse", "HEAD"]).trim().to_string();
    let second = install_git(&second_checkout, &second_rev, &tmp.path().join("prefix2"), &home);
    std::fs::remove_dir_all(&second_checkout).unwrap();
    // Installed from git, kiln init's workflow pins the commit it was built from, and
    // names the package's repository rather than cargo's local clone.
    let third = tmp.path().join("third");
    std::fs::create_dir_all(&third).unwrap();
    kiln(&second, &home, &third, &["init"]);
    let workflow = std::fs::read_to_string(third.join(".github/workflows/kiln.yml")).unwrap();
    assert!(workflow.contains(&format!("KILN_REV: \"{second_rev}\"")) && workflow.contains("KILN_GIT: https://github.com/kiln-pipelines/kiln\n"), "{workflow}");
    let (_, rows) = build_and_run(&second, &home, &project);
    assert_eq!(rows, expected());
    // The binary delivered is the second Kiln's: its runtime's version names its home.
    let second_version = version(&binary);
    assert_ne!(second_version, first_version);
    let both = homes(&home);
    assert_eq!(both.len(), 2, "{both:?}");
    assert!(both.contains(&first_home[0]));
    // The first is undisturbed: its home, its build, its binary.
    let (again, rows) = build_and_run(&first, &home, &project);
    assert_eq!((again, rows), (binary.clone(), expected()));
    assert_eq!(version(&binary), first_version);
}
