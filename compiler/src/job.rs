//! Job crates on disk: finding the workspace, writing `generated/NAME/`, and
//! building it with cargo into the workspace's one target directory.
//!
//! The workspace is the Kiln checkout when `kiln` runs inside the checkout it
//! was built from (developing Kiln), else Kiln's home ([`crate::home`]): an
//! installed `kiln` works in any directory, and its binaries are copied to
//! `./target/kiln/NAME`.

use std::path::{Path, PathBuf};
use std::process::Command;

use kiln::plan::Pipeline;

use crate::codegen::{self, CrateInfo};

/// The Kiln workspace that job crates are generated into.
#[derive(Debug, Clone)]
pub struct Workspace {
    pub root: PathBuf,
    pub target_dir: PathBuf,
    /// Kiln's home (an installed `kiln` used outside its checkout).
    pub home: bool,
}

/// The checkout this `kiln` was built from, when the current directory is inside it.
fn own_checkout() -> Option<PathBuf> {
    let checkout = Path::new(env!("CARGO_MANIFEST_DIR")).parent()?.canonicalize().ok()?;
    let here = std::env::current_dir().ok()?.canonicalize().ok()?;
    (here.starts_with(&checkout) && checkout.join("runtime/Cargo.toml").is_file()).then_some(checkout)
}

/// Finds the workspace: `explicit`, else `$KILN_WORKSPACE`, else the checkout
/// this `kiln` was built from when run inside it, else Kiln's home (unpacked
/// on first use). cargo_metadata confirms it holds the runtime and gives the
/// target directory (which honours `CARGO_TARGET_DIR`).
pub fn locate(explicit: Option<&Path>) -> Result<Workspace, String> {
    let chosen = explicit.map(Path::to_path_buf).or_else(|| std::env::var_os("KILN_WORKSPACE").filter(|w| !w.is_empty()).map(PathBuf::from)).or_else(own_checkout);
    let Some(root) = chosen else {
        // The home's manifest is Kiln's own; its `generated/*` may match nothing yet.
        let root = crate::home::ensure()?;
        let target_dir = std::env::var_os("CARGO_TARGET_DIR").filter(|t| !t.is_empty()).map_or_else(|| root.join("target"), PathBuf::from);
        return Ok(Workspace { root, target_dir: std::path::absolute(&target_dir).unwrap_or(target_dir), home: true });
    };
    let manifest = root.join("Cargo.toml");
    let metadata = cargo_metadata::MetadataCommand::new()
        .manifest_path(&manifest)
        .no_deps()
        .exec()
        .map_err(|e| format!("cannot read the Kiln workspace at {}: {e}", root.display()))?;
    if !metadata.packages.iter().any(|p| p.name.as_str() == "kiln-runtime") {
        return Err(format!("{} is not a Kiln workspace (no `kiln-runtime` package)", manifest.display()));
    }
    Ok(Workspace {
        root: metadata.workspace_root.into_std_path_buf(),
        target_dir: metadata.target_directory.into_std_path_buf(),
        home: false,
    })
}

/// The `udfs` files as modules of a crate whose sources are in `src` (paths
/// relative to it), or anywhere (`None`: absolute paths).
pub fn rust_modules(rust: &[crate::udfs::RustFile], src: Option<&Path>) -> Result<Vec<codegen::RustModule>, String> {
    let mut out: Vec<codegen::RustModule> = Vec::new();
    for f in rust {
        let full = f.full.canonicalize().map_err(|e| format!("cannot read {}: {e}", f.full.display()))?;
        let stem: String = full.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default().chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' }).collect();
        let mut module = format!("udf_{stem}");
        while out.iter().any(|m| m.module == module) {
            module.push('_');
        }
        out.push(codegen::RustModule {
            module,
            path: src.map_or_else(|| full.clone(), |src| relative(src, &full)).display().to_string(),
            udfs: f.udfs.iter().map(|u| u.name.clone()).collect(),
            models: f.models.iter().map(|m| m.name.clone()).collect(),
        });
    }
    Ok(out)
}

/// `to` as a path relative to the directory `from` (which may not exist yet).
fn relative(from: &Path, to: &Path) -> PathBuf {
    let from: Vec<_> = from.components().collect();
    let to_c: Vec<_> = to.components().collect();
    let common = from.iter().zip(&to_c).take_while(|(a, b)| a == b).count();
    let mut out = PathBuf::new();
    for _ in common..from.len() {
        out.push("..");
    }
    for c in &to_c[common..] {
        out.push(c.as_os_str());
    }
    out
}

impl Workspace {
    pub fn crate_dir(&self, pipeline: &str) -> PathBuf {
        self.root.join("generated").join(pipeline)
    }

    /// Holds the job crate `pipeline` for one write-build-deliver. Two `kiln build`s of
    /// pipelines with one name (two projects sharing Kiln's home, both with the starter
    /// `orders`; or parallel builds in a checkout) would otherwise write one crate in turn
    /// and each deliver the other's binary. The lock is released when the file is dropped
    /// (or the process dies).
    pub fn lock(&self, pipeline: &str) -> Result<std::fs::File, String> {
        let dir = self.root.join("generated");
        std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let path = dir.join(format!(".{pipeline}.lock"));
        let file = std::fs::File::options().create(true).truncate(false).write(true).open(&path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                eprintln!("waiting for another build of {pipeline} in {}", self.root.display());
                file.lock().map_err(|e| format!("cannot lock {}: {e}", path.display()))?;
            }
            // A file system without locks: build as before, unguarded.
            Err(std::fs::TryLockError::Error(e)) if e.kind() == std::io::ErrorKind::Unsupported => {
                eprintln!("warning: {} cannot be locked here ({e}): builds of {pipeline} at the same moment may mix", path.display());
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(format!("cannot lock {}: {e}", path.display())),
        }
        Ok(file)
    }

    /// Writes the job crate; files whose content is unchanged are not touched,
    /// so cargo does not rebuild them.
    pub fn write_crate(&self, pipeline: &Pipeline, spec_path: &str, rust: &[crate::udfs::RustFile]) -> Result<PathBuf, String> {
        let dir = self.crate_dir(&pipeline.name);
        let modules = rust_modules(rust, Some(&dir.join("src")))?;
        let info = CrateInfo { spec_path, runtime_path: "../../runtime", rust: &modules };
        let files = codegen::generate(pipeline, &info).map_err(|u| format!("kiln cannot generate code for {} yet", u.0))?;
        for (rel, content) in files {
            let path = dir.join(rel);
            if std::fs::read_to_string(&path).ok().as_deref() == Some(content.as_str()) {
                continue;
            }
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
            }
            std::fs::write(&path, content).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        }
        Ok(dir)
    }

    /// Builds the job crate and returns the binary's path. Cargo's progress goes to stderr.
    pub fn cargo_build(&self, pipeline: &str, release: bool) -> Result<PathBuf, String> {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.current_dir(&self.root).arg("build").arg("-p").arg(codegen::package_name(pipeline));
        if release {
            cmd.arg("--release");
        }
        // Under `cargo run` or `cargo test`, this process carries the variables cargo sets
        // for a package (CARGO_MANIFEST_DIR, CARGO_PKG_*…). Build scripts that watch one
        // (ring's watches CARGO_MANIFEST_DIR) would see it change between this build and a
        // plain `cargo build`, and rebuild — and DataFusion above them — every other time.
        for (key, _) in std::env::vars_os() {
            let key = key.to_string_lossy();
            if inherited_package_var(&key) {
                cmd.env_remove(&*key);
            }
        }
        // Progress and warnings go to stderr; stdout stays for the binary's path.
        cmd.stdout(std::process::Stdio::null());
        let status = cmd.status().map_err(|e| format!("cannot run cargo: {e}"))?;
        if !status.success() {
            return Err(format!("cargo build of {} failed ({status})", self.crate_dir(pipeline).display()));
        }
        let binary = self.target_dir.join(if release { "release" } else { "debug" }).join(pipeline);
        if !binary.exists() {
            return Err(format!("cargo succeeded but {} is missing", binary.display()));
        }
        if self.home { deliver(&binary, pipeline) } else { Ok(binary) }
    }
}

/// Copies a binary built in Kiln's home to `target/kiln/NAME` in the project
/// (through a temporary name, so a running copy is replaced, not overwritten):
/// the home's target directory is shared by every project this Kiln builds for.
fn deliver(binary: &Path, pipeline: &str) -> Result<PathBuf, String> {
    let cwd = std::env::current_dir().map_err(|e| format!("cannot read the current directory: {e}"))?;
    let dir = project_root(&cwd).join("target").join("kiln");
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let to = dir.join(pipeline);
    let tmp = dir.join(format!(".{pipeline}.{}", std::process::id()));
    std::fs::copy(binary, &tmp).map_err(|e| format!("cannot copy {} to {}: {e}", binary.display(), tmp.display()))?;
    std::fs::rename(&tmp, &to).map_err(|e| format!("cannot write {}: {e}", to.display()))?;
    Ok(std::path::absolute(&to).unwrap_or(to))
}

/// The project a build from `dir` delivers into: the git repository holding it
/// (as cargo delivers into its workspace's root, and where `kiln init`'s
/// `/target/` line ignores it), else `dir` itself.
pub fn project_root(dir: &Path) -> PathBuf {
    dir.ancestors().find(|d| d.join(".git").exists()).unwrap_or(dir).to_path_buf()
}

/// A variable cargo sets for the package it runs (a binary or a test), not for builds.
/// `OUT_DIR` too: `cargo run` sets it for a package with a build script (the compiler
/// has one), and ring's build script watches it, so a job built from `cargo run -p
/// kiln-compiler` rebuilt ring, rustls and the 50 crates above them, and `cargo test`
/// rebuilt them back.
pub fn inherited_package_var(key: &str) -> bool {
    key.starts_with("CARGO_PKG_")
        || key.starts_with("CARGO_BIN_")
        || key.starts_with("CARGO_CFG_")
        || matches!(key, "CARGO_MANIFEST_DIR" | "CARGO_MANIFEST_PATH" | "CARGO_MANIFEST_LINKS" | "CARGO_CRATE_NAME" | "CARGO_PRIMARY_PACKAGE" | "CARGO_TARGET_TMPDIR" | "CARGO_RUSTC_CURRENT_DIR" | "OUT_DIR")
}
