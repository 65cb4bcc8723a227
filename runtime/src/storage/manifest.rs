//! Reading object-store targets through their manifests.
//!
//! A Kiln sink on an object store (see [`super::remote`]) names its committed
//! files in `_kiln_manifest.json`. [`ManifestStore`] wraps a store so that a
//! listing under a prefix holding a manifest (or under a prefix inside such a
//! target, as partition pruning lists) yields only the files the manifest
//! names: parts of a commit in progress, of a killed run, or old files not yet
//! deleted are invisible to Kiln's readers. Kiln's own bookkeeping
//! (`_kiln_*`, `_SUCCESS`) is never listed as data.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore, ObjectStoreExt, PutMultipartOptions, PutOptions, PutPayload, PutResult,
    RenameOptions, Result,
};
use serde::{Deserialize, Serialize};

/// The manifest's file name, beside the files it names.
pub const MANIFEST: &str = "_kiln_manifest.json";

/// What a committed target holds.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub version: u32,
    /// The run that committed it.
    pub run: String,
    /// Paths relative to the target, sorted.
    pub files: Vec<String>,
    pub rows: u64,
}

/// Kiln's bookkeeping objects: never data.
pub fn is_bookkeeping(name: &str) -> bool {
    name.starts_with("_kiln") || name == "_SUCCESS"
}

/// Reads the manifest of the target at `dir`, if it has one.
pub async fn read(store: &dyn ObjectStore, dir: &Path) -> Result<Option<Manifest>> {
    match store.get(&dir.clone().join(MANIFEST)).await {
        Ok(got) => {
            let bytes = got.bytes().await?;
            serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| object_store::Error::Generic { store: "kiln", source: format!("{dir}/{MANIFEST} is not a Kiln manifest: {e}").into() })
        }
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// A store whose listings follow manifests.
#[derive(Debug)]
pub struct ManifestStore {
    inner: Arc<dyn ObjectStore>,
}

impl ManifestStore {
    pub fn new(inner: Arc<dyn ObjectStore>) -> Self {
        ManifestStore { inner }
    }
}

impl fmt::Display for ManifestStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.inner)
    }
}

/// The objects of `listed` (under `prefix`) that a reader should see.
async fn visible(store: &dyn ObjectStore, prefix: Option<&Path>, listed: Vec<ObjectMeta>) -> Result<Vec<ObjectMeta>> {
    if listed.is_empty() {
        return Ok(listed);
    }
    // Targets: directories of listed manifests, and `prefix` or any ancestor with one.
    let mut dirs: Vec<Path> = listed
        .iter()
        .filter(|m| m.location.filename() == Some(MANIFEST))
        .map(|m| parent(&m.location))
        .collect();
    if let Some(prefix) = prefix {
        let parts: Vec<_> = prefix.parts().collect();
        for n in 1..=parts.len() {
            let dir: Path = parts[..n].iter().cloned().collect();
            if dirs.contains(&dir) {
                continue;
            }
            // Only "not found" means no manifest: a refused or failed request must not
            // make uncommitted files visible.
            match store.head(&dir.clone().join(MANIFEST)).await {
                Ok(_) => dirs.push(dir),
                Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
    }
    let mut named: HashMap<Path, HashSet<String>> = HashMap::new();
    for dir in dirs {
        if let Some(m) = read(store, &dir).await? {
            named.insert(dir, m.files.into_iter().collect());
        }
    }
    Ok(listed
        .into_iter()
        .filter(|m| !m.location.filename().is_some_and(is_bookkeeping))
        .filter(|m| {
            // The innermost target holding the object decides.
            let parts: Vec<_> = m.location.parts().collect();
            (0..parts.len()).rev().find_map(|n| {
                let dir: Path = parts[..n].iter().cloned().collect();
                let files = named.get(&dir)?;
                let rel = parts[n..].iter().map(|p| p.as_ref().to_string()).collect::<Vec<_>>().join("/");
                Some(files.contains(&rel))
            })
            .unwrap_or(true)
        })
        .collect())
}

fn parent(path: &Path) -> Path {
    let parts: Vec<_> = path.parts().collect();
    parts[..parts.len().saturating_sub(1)].iter().cloned().collect()
}

#[async_trait::async_trait]
impl ObjectStore for ManifestStore {
    async fn put_opts(&self, location: &Path, payload: PutPayload, opts: PutOptions) -> Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(&self, location: &Path, opts: PutMultipartOptions) -> Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(&self, locations: BoxStream<'static, Result<Path>>) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        let (inner, prefix) = (self.inner.clone(), prefix.cloned());
        futures::stream::once(async move {
            let listed: Vec<ObjectMeta> = inner.list(prefix.as_ref()).try_collect().await?;
            visible(inner.as_ref(), prefix.as_ref(), listed).await
        })
        .map_ok(|v| futures::stream::iter(v.into_iter().map(Ok)))
        .try_flatten()
        .boxed()
    }

    fn list_with_offset(&self, prefix: Option<&Path>, offset: &Path) -> BoxStream<'static, Result<ObjectMeta>> {
        let offset = offset.clone();
        self.list(prefix).try_filter(move |m| futures::future::ready(m.location > offset)).boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        let mut result = self.inner.list_with_delimiter(prefix).await?;
        result.objects = visible(self.inner.as_ref(), prefix, result.objects).await?;
        result.common_prefixes.retain(|p| !p.filename().is_some_and(|n| n.starts_with(['_', '.'])));
        Ok(result)
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        self.inner.rename_opts(from, to, options).await
    }
}
