//! Job crates on disk: finding the workspace, writing `generated/NAME/`, and
//! building it with cargo into the workspace's one target directory.

use std::path::{Path, PathBuf};
use std::process::Command;

use kiln::plan::Pipeline;

use crate::codegen::{self, CrateInfo};

/// The Kiln workspace that job crates are generated into.
#[derive(Debug, Clone)]
pub struct Workspace {
    pub root: PathBuf,
    pub target_dir: PathBuf,
}

/// Finds the workspace: `explicit`, else `$KILN_WORKSPACE`, else the workspace
/// this `kiln` was built from. cargo_metadata confirms it holds the runtime and
/// gives the target directory (which honours `CARGO_TARGET_DIR`).
pub fn locate(explicit: Option<&Path>) -> Result<Workspace, String> {
    let root = explicit
        .map(Path::to_path_buf)
        .or_else(|| std::env::var_os("KILN_WORKSPACE").map(PathBuf::from))
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".."));
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
        Ok(binary)
    }
}

/// A variable cargo sets for the package it runs (a binary or a test), not for builds.
pub fn inherited_package_var(key: &str) -> bool {
    key.starts_with("CARGO_PKG_")
        || key.starts_with("CARGO_BIN_")
        || matches!(key, "CARGO_MANIFEST_DIR" | "CARGO_MANIFEST_PATH" | "CARGO_MANIFEST_LINKS" | "CARGO_CRATE_NAME" | "CARGO_PRIMARY_PACKAGE" | "CARGO_TARGET_TMPDIR" | "CARGO_RUSTC_CURRENT_DIR")
}
