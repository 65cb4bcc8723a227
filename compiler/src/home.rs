//! Kiln's home: where a `kiln` used outside its own checkout generates and
//! builds job crates (issue 20).
//!
//! The binary carries the runtime's sources (packed by `build.rs`). On first
//! use they are unpacked into `$KILN_HOME/kiln-VERSION-HASH/` (default
//! `$XDG_CACHE_HOME/kiln`, else `~/.cache/kiln`), a small Cargo workspace:
//! the runtime, its macros, `generated/*` for job crates, the dependency pins
//! and `Cargo.lock` of the Kiln that was built. Its target directory is shared
//! by every job that Kiln builds (or `CARGO_TARGET_DIR`, where set), so
//! DataFusion is compiled once per Kiln version. The hash is the bundle's, so
//! two Kiln versions (or two builds of one) never share a home, and their
//! builds never mix: the home's packages carry it in their version
//! (`0.1.0-home.HASH`), which keeps their build outputs apart from a
//! checkout's in a shared target directory.

use std::path::{Path, PathBuf};

static BUNDLE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/runtime-sources.bin"));
const HASH: &str = include_str!(concat!(env!("OUT_DIR"), "/runtime-sources.hash"));

/// The directory homes live in.
pub fn base() -> PathBuf {
    if let Some(h) = std::env::var_os("KILN_HOME").filter(|h| !h.is_empty()) {
        return PathBuf::from(h);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    cache.join("kiln")
}

/// The version the home's runtime carries: Kiln's, with the bundle's hash.
fn home_version() -> String {
    format!("{}-home.{}", kiln::KILN_VERSION, &HASH[..12])
}

/// This Kiln's home (not necessarily unpacked yet).
pub fn dir() -> PathBuf {
    base().join(format!("kiln-{}-{}", kiln::KILN_VERSION, &HASH[..12]))
}

/// The home, unpacked if it is not yet. A home is written under a temporary
/// name and renamed into place, so a concurrent `kiln` sees all of it or none.
pub fn ensure() -> Result<PathBuf, String> {
    let home = dir();
    if home.join(".kiln-home").is_file() {
        return Ok(home);
    }
    let parent = base();
    std::fs::create_dir_all(&parent).map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    let tmp = parent.join(format!(".unpacking-{}-{}", std::process::id(), &HASH[..12]));
    let _ = std::fs::remove_dir_all(&tmp);
    unpack(&tmp).map_err(|e| {
        let _ = std::fs::remove_dir_all(&tmp);
        e
    })?;
    match std::fs::rename(&tmp, &home) {
        Ok(()) => Ok(home),
        // Another kiln unpacked it first: the same bytes.
        Err(_) if home.join(".kiln-home").is_file() => {
            let _ = std::fs::remove_dir_all(&tmp);
            Ok(home)
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            Err(format!("cannot create {}: {e}", home.display()))
        }
    }
}

/// The bundle's files, as (path relative to the workspace root, bytes).
fn files() -> Result<Vec<(&'static str, &'static [u8])>, String> {
    let bad = || "the runtime bundled in this kiln is damaged: reinstall kiln".to_string();
    let mut rest = BUNDLE;
    let mut out = Vec::new();
    while !rest.is_empty() {
        let (len, r) = rest.split_first_chunk::<4>().ok_or_else(bad)?;
        let len = u32::from_le_bytes(*len) as usize;
        let (path, r) = (r.get(..len).ok_or_else(bad)?, &r[len..]);
        let (size, r) = r.split_first_chunk::<8>().ok_or_else(bad)?;
        let size = u64::from_le_bytes(*size) as usize;
        let (bytes, r) = (r.get(..size).ok_or_else(bad)?, &r[size..]);
        out.push((std::str::from_utf8(path).map_err(|_| bad())?, bytes));
        rest = r;
    }
    Ok(out)
}

fn unpack(to: &Path) -> Result<(), String> {
    for (rel, bytes) in files()? {
        let path = to.join(rel);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        let bytes = if rel == "Cargo.toml" { workspace_manifest(bytes)?.into_bytes() } else { bytes.to_vec() };
        std::fs::write(&path, bytes).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    std::fs::create_dir_all(to.join("generated")).map_err(|e| format!("cannot create {}: {e}", to.display()))?;
    let marker = format!("Kiln {} (runtime bundle {HASH}): job crates are generated under generated/ and built here.\n", kiln::KILN_VERSION);
    std::fs::write(to.join(".kiln-home"), marker).map_err(|e| format!("cannot write {}: {e}", to.display()))
}

/// Kiln's workspace manifest with the home's members: the runtime, its macros
/// and the job crates (the compiler, tests and embedding crates stay behind);
/// the dependency pins and profiles are kept as they are.
fn workspace_manifest(bytes: &[u8]) -> Result<String, String> {
    let text = std::str::from_utf8(bytes).map_err(|e| e.to_string())?;
    let mut doc: toml::Table = toml::from_str(text).map_err(|e| format!("the bundled Cargo.toml: {e}"))?;
    let ws = doc.get_mut("workspace").and_then(|w| w.as_table_mut()).ok_or("the bundled Cargo.toml has no [workspace]")?;
    ws.insert("members".into(), toml::Value::Array(["runtime", "macros", "generated/*"].iter().map(|m| toml::Value::String(m.to_string())).collect()));
    // Cargo names a path package's build outputs by its path relative to the workspace
    // root and its version: the home's `runtime` would share them with a Kiln checkout's
    // (or another home's) in one CARGO_TARGET_DIR, and each build would pass for the
    // other's. The bundle's hash in the version keeps them apart.
    if let Some(package) = ws.get_mut("package").and_then(|p| p.as_table_mut()) {
        package.insert("version".into(), toml::Value::String(home_version()));
    }
    ws.remove("default-members");
    if let Some(deps) = ws.get_mut("dependencies").and_then(|d| d.as_table_mut()) {
        // Path dependencies on crates the home does not hold.
        deps.retain(|_, v| v.get("path").and_then(|p| p.as_str()).is_none_or(|p| matches!(p, "runtime" | "macros")));
    }
    let body = toml::to_string(&doc).map_err(|e| e.to_string())?;
    Ok(format!("# Kiln's home workspace (written by kiln {}; see `kiln --help`). Do not edit.\n{body}", kiln::KILN_VERSION))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bundle_holds_the_runtime_and_a_manifest_for_the_home() {
        let files = files().unwrap();
        let names: Vec<&str> = files.iter().map(|(n, _)| *n).collect();
        for want in ["Cargo.toml", "Cargo.lock", "runtime/Cargo.toml", "runtime/src/lib.rs", "macros/Cargo.toml", "macros/src/lib.rs"] {
            assert!(names.contains(&want), "{want} missing from {names:?}");
        }
        let (_, manifest) = files.iter().find(|(n, _)| *n == "Cargo.toml").unwrap();
        let text = workspace_manifest(manifest).unwrap();
        let doc: toml::Table = toml::from_str(&text).unwrap();
        let ws = doc["workspace"].as_table().unwrap();
        assert_eq!(ws["members"].as_array().unwrap().len(), 3);
        assert!(!ws.contains_key("default-members"));
        let deps = ws["dependencies"].as_table().unwrap();
        assert!(deps.contains_key("kiln") && deps.contains_key("datafusion") && !deps.contains_key("kiln-compiler"), "{deps:?}");
        assert!(doc.contains_key("profile"));
        assert_eq!(ws["package"]["version"].as_str().unwrap(), home_version());
    }
}
