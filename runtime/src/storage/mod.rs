//! Storage: object-store URLs (`s3://`, `gs://`, `az://`) beside local paths.
//!
//! One place turns a URL into an [`ObjectStore`]: credentials, region and
//! endpoint come from the variables the object_store crate reads (`AWS_*`,
//! `GOOGLE_*`, `AZURE_*`), overridden per bucket by a spec's `storage_options`
//! ([`configure`]). Every DataFusion session Kiln builds (a local run, a
//! cluster client, the scheduler, each executor) resolves URLs through
//! [`registry`], so a plan shipped to another process finds the same store.
//!
//! Sinks on object stores commit with a manifest ([`remote`]); the stores
//! handed to DataFusion list only what a target's manifest names, so Kiln's
//! readers never see a half-committed or abandoned write ([`manifest`]).

pub mod manifest;
pub mod remote;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use datafusion::execution::object_store::{DefaultObjectStoreRegistry, ObjectStoreRegistry};
use futures::TryStreamExt;
use object_store::path::Path as StorePath;
use object_store::{ObjectMeta, ObjectStore};
use url::Url;

use crate::{Error, Result};

/// Whether `path` names an object store rather than the local file system.
pub fn is_remote(path: &str) -> bool {
    path.split_once("://").is_some_and(|(scheme, _)| scheme != "file")
}

/// Schemes Kiln reads and writes, and the store that serves each.
fn kind(scheme: &str) -> Option<&'static str> {
    match scheme {
        "s3" | "s3a" => Some("s3"),
        "gs" => Some("gcs"),
        "az" | "azure" | "abfs" | "abfss" => Some("azure"),
        _ => None,
    }
}

/// A place in an object store: the store, and the path inside it.
#[derive(Debug, Clone)]
pub struct Location {
    /// As the user wrote it (after `${...}` substitution), without a trailing `/`.
    pub url: String,
    /// Lists through manifests (what readers see).
    pub store: Arc<dyn ObjectStore>,
    /// Lists everything (what a commit sees).
    pub raw: Arc<dyn ObjectStore>,
    pub path: StorePath,
}

impl Location {
    /// `self` extended by `/`-separated `rel`.
    /// `rel` is in the store's encoded form (as listings give it: `v=50%25`).
    pub fn join(&self, rel: &str) -> Location {
        let rel = rel.trim_matches('/');
        let joined = if self.path.as_ref().is_empty() { rel.to_string() } else { format!("{}/{rel}", self.path) };
        let path = StorePath::parse(&joined).unwrap_or_else(|_| StorePath::from(joined.as_str()));
        Location { url: format!("{}/{}", self.url, rel.trim_matches('/')), store: self.store.clone(), raw: self.raw.clone(), path }
    }

    /// The location one level up (sharing the store); itself at a bucket's root.
    pub fn parent(&self) -> Location {
        let parts: Vec<_> = self.path.parts().collect();
        if parts.is_empty() {
            return self.clone();
        }
        let path: StorePath = parts[..parts.len() - 1].iter().cloned().collect();
        let url = self.url.rsplit_once('/').map_or(self.url.clone(), |(dir, _)| dir.to_string());
        Location { url, store: self.store.clone(), raw: self.raw.clone(), path }
    }

    /// Every object at or under this location that a reader sees, each with its
    /// path relative to it (empty for the object itself).
    pub async fn list(&self) -> Result<Vec<(String, ObjectMeta)>> {
        list(&self.store, &self.url, &self.path).await
    }

    /// Every object at or under this location, manifests or not.
    pub async fn list_all(&self) -> Result<Vec<(String, ObjectMeta)>> {
        list(&self.raw, &self.url, &self.path).await
    }

    /// The object's metadata, `None` when there is none.
    pub async fn head(&self) -> Result<Option<ObjectMeta>> {
        use object_store::ObjectStoreExt;
        match self.store.head(&self.path).await {
            Ok(m) => Ok(Some(m)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(read_error(&self.url, e)),
        }
    }
}

async fn list(store: &Arc<dyn ObjectStore>, url: &str, prefix: &StorePath) -> Result<Vec<(String, ObjectMeta)>> {
    let listed: Vec<ObjectMeta> = store.list(Some(prefix)).try_collect().await.map_err(|e| read_error(url, e))?;
    let mut out: Vec<(String, ObjectMeta)> = listed
        .into_iter()
        .filter_map(|m| {
            let rel = m.location.prefix_match(prefix)?.map(|p| p.as_ref().to_string()).collect::<Vec<_>>().join("/");
            Some((rel, m))
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// A store error with the URL it concerns; never a credential (object_store's
/// messages carry none, and `${env.X}` values are redacted anyway).
pub fn read_error(url: &str, e: object_store::Error) -> Error {
    let message = match &e {
        object_store::Error::NotFound { .. } => "no such object or prefix".to_string(),
        _ => one_line(&e),
    };
    Error::Read { path: crate::redact::text(url), message: crate::redact::text(&message) }
}

/// An error and its causes on one line (object_store nests the HTTP failure).
pub fn one_line(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

/// Per bucket (`s3://bucket`): the spec's `storage_options`.
fn options() -> &'static Mutex<HashMap<String, Vec<(String, String)>>> {
    static OPTIONS: OnceLock<Mutex<HashMap<String, Vec<(String, String)>>>> = OnceLock::new();
    OPTIONS.get_or_init(Default::default)
}

/// `scheme://bucket` of a URL: what one store serves.
fn bucket(url: &Url) -> String {
    format!("{}://{}", url.scheme(), url.host_str().unwrap_or(""))
}

fn parse(text: &str) -> Result<Url> {
    let url = Url::parse(text).map_err(|e| Error::Usage(format!("`{}` is not a URL: {e}", crate::redact::text(text))))?;
    if kind(url.scheme()).is_none() {
        return Err(Error::Usage(format!(
            "`{}`: Kiln reads and writes s3://, gs://, az:// URLs and local paths, not {}://",
            crate::redact::text(text),
            url.scheme()
        )));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(Error::Usage(format!("`{}` names no bucket", crate::redact::text(text))));
    }
    Ok(url)
}

/// Sets the options of the store serving `location`'s bucket (a spec's
/// `storage_options`, `${env.X}` already substituted). Later calls for the same
/// bucket replace earlier ones.
pub fn configure(location: &str, opts: &[(String, String)]) -> Result<()> {
    let url = parse(location)?;
    for (key, _) in opts {
        check_option(url.scheme(), key).map_err(Error::Usage)?;
    }
    options().lock().expect("options lock").insert(bucket(&url), opts.to_vec());
    Ok(())
}

/// Whether `key` is an option the store for `scheme` knows (`endpoint`,
/// `region`, `allow_http`, …, with or without the `aws_`/`google_`/`azure_` prefix).
pub fn check_option(scheme: &str, key: &str) -> std::result::Result<(), String> {
    let key = key.to_ascii_lowercase();
    let ok = match kind(scheme) {
        Some("s3") => aws_key(&key).is_some(),
        Some("gcs") => gcs_key(&key).is_some(),
        Some("azure") => azure_key(&key).is_some(),
        _ => return Err(format!("{scheme}:// is not an object store Kiln knows (s3, gs, az)")),
    };
    if ok { Ok(()) } else { Err(format!("`{key}` is not an option of the {scheme}:// store (e.g. endpoint, region, allow_http)")) }
}

fn aws_key(key: &str) -> Option<object_store::aws::AmazonS3ConfigKey> {
    key.parse().ok().or_else(|| format!("aws_{key}").parse().ok())
}

fn gcs_key(key: &str) -> Option<object_store::gcp::GoogleConfigKey> {
    key.parse().ok().or_else(|| format!("google_{key}").parse().ok())
}

fn azure_key(key: &str) -> Option<object_store::azure::AzureConfigKey> {
    key.parse().ok().or_else(|| format!("azure_{key}").parse().ok())
}

/// A new store for `url`'s bucket, from the environment and the bucket's
/// options: (everything, listing through its targets' manifests).
///
/// Stores are not shared between runs: an HTTP connection pool belongs to the
/// Tokio runtime that opened its connections. A session caches its own (see
/// [`registry`]).
fn new_stores(url: &Url) -> Result<(Arc<dyn ObjectStore>, Arc<dyn ObjectStore>)> {
    let key = bucket(url);
    let opts = options().lock().expect("options lock").get(&key).cloned().unwrap_or_default();
    let built = build(url, &key, &opts).map_err(|e| Error::Read { path: crate::redact::text(&key), message: crate::redact::text(&one_line(&e)) })?;
    Ok((built.clone(), Arc::new(manifest::ManifestStore::new(built))))
}

fn build(url: &Url, base: &str, opts: &[(String, String)]) -> object_store::Result<Arc<dyn ObjectStore>> {
    use object_store::aws::AmazonS3Builder;
    use object_store::azure::MicrosoftAzureBuilder;
    use object_store::gcp::GoogleCloudStorageBuilder;
    let lower = |k: &String| k.to_ascii_lowercase();
    Ok(match kind(url.scheme()) {
        Some("s3") => {
            let b = opts.iter().fold(AmazonS3Builder::from_env().with_url(base), |b, (k, v)| match aws_key(&lower(k)) {
                Some(key) => b.with_config(key, v),
                None => b,
            });
            Arc::new(b.build()?)
        }
        Some("gcs") => {
            let b = opts.iter().fold(GoogleCloudStorageBuilder::from_env().with_url(base), |b, (k, v)| match gcs_key(&lower(k)) {
                Some(key) => b.with_config(key, v),
                None => b,
            });
            Arc::new(b.build()?)
        }
        _ => {
            let b = opts.iter().fold(MicrosoftAzureBuilder::from_env().with_url(base), |b, (k, v)| match azure_key(&lower(k)) {
                Some(key) => b.with_config(key, v),
                None => b,
            });
            Arc::new(b.build()?)
        }
    })
}

/// The location `text` names (`s3://bucket/a/b`).
pub fn locate(text: &str) -> Result<Location> {
    let url = parse(text)?;
    let (raw, store) = new_stores(&url)?;
    let path = StorePath::from_url_path(url.path()).map_err(|e| Error::Usage(format!("`{}`: {e}", crate::redact::text(text))))?;
    Ok(Location { url: text.trim_end_matches('/').to_string(), store, raw, path })
}

/// The registry every Kiln session resolves URLs with: one store per bucket,
/// built on first use and kept for the session.
pub fn registry() -> Arc<dyn ObjectStoreRegistry> {
    Arc::new(Registry { local: DefaultObjectStoreRegistry::new(), stores: Mutex::new(HashMap::new()) })
}

#[derive(Debug)]
struct Registry {
    /// `file://` (and anything registered by hand).
    local: DefaultObjectStoreRegistry,
    stores: Mutex<HashMap<String, Arc<dyn ObjectStore>>>,
}

impl ObjectStoreRegistry for Registry {
    fn register_store(&self, url: &Url, store: Arc<dyn ObjectStore>) -> Option<Arc<dyn ObjectStore>> {
        self.local.register_store(url, store)
    }

    fn deregister_store(&self, url: &Url) -> datafusion::error::Result<Arc<dyn ObjectStore>> {
        self.local.deregister_store(url)
    }

    fn get_store(&self, url: &Url) -> datafusion::error::Result<Arc<dyn ObjectStore>> {
        if kind(url.scheme()).is_some() {
            let mut stores = self.stores.lock().expect("stores lock");
            if let Some(s) = stores.get(&bucket(url)) {
                return Ok(s.clone());
            }
            let (_, store) = new_stores(url).map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?;
            stores.insert(bucket(url), store.clone());
            return Ok(store);
        }
        self.local.get_store(url)
    }
}

/// Runs `fut` to completion from synchronous code, inside or outside a Tokio
/// runtime (on a thread of its own, so it never blocks a runtime's worker).
pub fn block_on<F>(fut: F) -> F::Output
where
    F: std::future::Future + Send,
    F::Output: Send,
{
    std::thread::scope(|s| {
        s.spawn(|| {
            tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a Tokio runtime").block_on(fut)
        })
        .join()
        .expect("storage thread")
    })
}

/// The data files a source URL names: the object itself, the objects under a
/// prefix (hidden `_x`/`.x` names skipped, `key=value` partition prefixes
/// descended), or those a glob matches; sorted, only `.ext` ones for a prefix
/// when `ext` is given. Under a Kiln target, only what its manifest names.
/// The locations share one store (one client for the whole listing).
pub async fn files(text: &str, ext: Option<&str>) -> Result<Vec<(Location, ObjectMeta)>> {
    let (fixed, glob) = match text.find(['*', '?', '[']) {
        Some(i) => (text[..i].rsplit_once('/').map_or(text, |(d, _)| d), true),
        None => (text, false),
    };
    let loc = locate(fixed)?;
    // A listing first: an object is no prefix (nothing lists under `KEY/`), and a
    // HEAD on a prefix is an error on some S3-compatible servers.
    let listed = loc.list().await?;
    if !glob && listed.is_empty() {
        if let Some(meta) = loc.head().await? {
            return Ok(vec![(loc, meta)]);
        }
    }
    let mut out = Vec::new();
    for (rel, meta) in listed {
        if rel.is_empty() || hidden(&rel) {
            continue;
        }
        let file = loc.join(&rel);
        let keep = if glob { crate::sources::glob_match(text, &file.url) } else { ext.is_none_or(|e| rel.ends_with(&format!(".{e}"))) };
        if keep {
            out.push((file, meta));
        }
    }
    Ok(out)
}

/// Whether `text` names a prefix holding objects (a directory), not one object.
pub async fn is_prefix(text: &str) -> Result<bool> {
    use futures::StreamExt;
    let loc = locate(text)?;
    match loc.raw.list(Some(&loc.path)).next().await {
        Some(Ok(_)) => Ok(true),
        Some(Err(e)) => Err(read_error(&loc.url, e)),
        None => Ok(false),
    }
}

/// Whether a relative path passes through a hidden (`_x`, `.x`) name.
pub fn hidden(rel: &str) -> bool {
    rel.split('/').any(|p| p.starts_with(['_', '.']))
}

/// Registers every `storage_options` table of a pipeline (sources and sinks),
/// with `${env.X}` and `${params.X}` substituted.
pub fn configure_pipeline(pipeline: &crate::plan::Pipeline, values: &crate::params::Values) -> Result<()> {
    let env = |v: &str| std::env::var(v).ok();
    for (path, opts) in &pipeline.runtime.storage {
        let opts = opts
            .iter()
            .map(|(k, v)| Ok((k.clone(), crate::params::interpolate(v, values, env)?)))
            .collect::<Result<Vec<_>>>()?;
        // A `${params.X}` path may resolve to a local one: its options do not apply.
        let path = crate::params::interpolate(path, values, env)?;
        if is_remote(&path) {
            configure(&path, &opts)?;
        }
    }
    Ok(())
}
