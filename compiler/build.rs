//! Packs the runtime's sources into the `kiln` binary (issue 20).
//!
//! An installed `kiln` (`cargo install --path compiler`, or `--git`) must build
//! job crates without the checkout it was built from: it carries the runtime
//! (`runtime/`, `macros/`), the workspace manifest that pins their dependency
//! versions, and `Cargo.lock`, and unpacks them into a directory of its own
//! (`compiler/src/home.rs`). The bundle is a list of (path, bytes) records; its
//! FNV-1a hash names the directory, so two Kiln builds never share one.

use std::path::{Path, PathBuf};

fn main() {
    let compiler = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let root = compiler.parent().expect("the compiler lives in the Kiln workspace").to_path_buf();
    let mut files: Vec<PathBuf> = vec![root.join("Cargo.toml"), root.join("Cargo.lock"), root.join("runtime/Cargo.toml"), root.join("macros/Cargo.toml")];
    for dir in ["runtime/src", "macros/src"] {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
        walk(&root.join(dir), &mut files);
    }
    for f in ["Cargo.toml", "Cargo.lock", "runtime/Cargo.toml", "macros/Cargo.toml"] {
        println!("cargo:rerun-if-changed={}", root.join(f).display());
    }
    files.sort();
    let mut bundle = Vec::new();
    for f in &files {
        let rel = f.strip_prefix(&root).expect("under the root").to_string_lossy().replace('\\', "/");
        let bytes = std::fs::read(f).unwrap_or_else(|e| panic!("reading {}: {e}", f.display()));
        bundle.extend_from_slice(&(rel.len() as u32).to_le_bytes());
        bundle.extend_from_slice(rel.as_bytes());
        bundle.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
        bundle.extend_from_slice(&bytes);
    }
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in &bundle {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    // Where `kiln init`'s workflow and `kiln deploy`'s image install Kiln from: this
    // checkout's origin when it is a URL others can reach. `cargo install --git`
    // builds in a clone of its own database (origin `file://…/.cargo/git/db/…`), so
    // there the package's `repository` stands instead, and the commit being built
    // (the checkout cargo marks with `.cargo-ok`) pins the revision.
    let origin = git(&root, &["config", "--get", "remote.origin.url"]).and_then(|u| public_url(&u));
    if let Some(url) = origin {
        println!("cargo:rustc-env=KILN_GIT_URL={url}");
    }
    if root.join(".cargo-ok").is_file() {
        if let Some(rev) = git(&root, &["rev-parse", "HEAD"]) {
            println!("cargo:rustc-env=KILN_GIT_REV={rev}");
        }
    }
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
    std::fs::write(out.join("runtime-sources.bin"), &bundle).expect("writing the bundle");
    std::fs::write(out.join("runtime-sources.hash"), format!("{hash:016x}")).expect("writing the hash");
}

/// `git -C root ARGS`'s trimmed output, when it succeeds.
fn git(root: &Path, args: &[&str]) -> Option<String> {
    let o = std::process::Command::new("git").arg("-C").arg(root).args(args).output().ok().filter(|o| o.status.success())?;
    Some(String::from_utf8_lossy(&o.stdout).trim().to_string()).filter(|s| !s.is_empty())
}

/// The remote as another machine clones it with `cargo install --git`: an
/// `https://` URL without credentials (a token in the origin would otherwise be
/// compiled into kiln and written into workflows). scp-style (`git@host:org/repo`)
/// and `ssh://` remotes become `https://host/org/repo`, which a CI runner without
/// an SSH key can fetch; local paths and `file://` URLs (cargo's own clone) are none.
fn public_url(url: &str) -> Option<String> {
    let url = url.trim();
    if url.starts_with("file:") || url.starts_with('/') || url.starts_with('.') {
        return None;
    }
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (scheme, rest.to_string()),
        // scp-style: [user@]host:path
        None => {
            let (host, path) = url.split_once(':')?;
            ("ssh", format!("{host}/{}", path.trim_start_matches('/')))
        }
    };
    let (authority, path) = rest.split_once('/').unwrap_or((&rest, ""));
    let host = authority.rsplit('@').next()?;
    if host.is_empty() {
        return None;
    }
    let scheme = if matches!(scheme, "ssh" | "git" | "git+ssh") { "https" } else { scheme };
    let host = if scheme == "https" { host.split(':').next().unwrap_or(host) } else { host };
    Some(format!("{scheme}://{host}/{path}"))
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let path = e.path();
        if path.is_dir() {
            walk(&path, out);
        } else if path.is_file() {
            out.push(path);
        }
    }
}
