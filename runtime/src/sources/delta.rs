//! Delta Lake tables (SPEC §3, §6a), read and written through delta-rs
//! (`deltalake-core`) and its DataFusion integration.
//!
//! Kiln builds each table's log store itself from the store Kiln's registry
//! would use for the path (the same credentials and `storage_options`), rather
//! than through delta-rs' global URL factories: one place decides how a URL
//! reaches storage, and a sink can wrap the log store to hold its commit (see
//! `sinks::delta`).

use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use datafusion::arrow::datatypes::Schema;
use datafusion::catalog::TableProvider;
use datafusion::prelude::SessionContext;
use deltalake_core::DeltaTable;
use deltalake_core::logstore::{LogStoreRef, StorageConfig, default_logstore};
use object_store::ObjectStore;
use object_store::prefix::PrefixStore;
use url::Url;

use crate::plan::DeltaSource;
use crate::storage;
use crate::{Error, Result};

/// A time-travel `timestamp`: RFC 3339 (`2024-05-01T12:00:00Z`, any offset),
/// `2024-05-01 12:00:00` (UTC), or a date (`2024-05-01`, midnight UTC).
pub fn parse_timestamp(text: &str) -> std::result::Result<DateTime<Utc>, String> {
    let text = text.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    for format in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(text, format) {
            return Ok(t.and_utc());
        }
    }
    if let Ok(d) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(d.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc());
    }
    Err(format!("`{text}` is not a time (RFC 3339, `YYYY-MM-DD HH:MM:SS` in UTC, or `YYYY-MM-DD`)"))
}

/// The table's root as a URL: object-store URLs as written, local paths made
/// absolute (`file:///…/`).
pub fn table_url(location: &str) -> Result<Url> {
    if storage::is_remote(location) {
        return Url::parse(&format!("{}/", location.trim_end_matches('/'))).map_err(|e| Error::Usage(format!("`{}` is not a URL: {e}", crate::redact::text(location))));
    }
    let path = location.strip_prefix("file://").unwrap_or(location);
    let abs = std::path::absolute(path).map_err(|e| Error::io(format!("resolving {path}"), e))?;
    Url::from_directory_path(&abs).map_err(|()| Error::Usage(format!("`{}` is not a path Delta can use", abs.display())))
}

/// The log store of the table at `location`, on the store Kiln resolves that
/// location with.
pub fn log_store(location: &str) -> Result<LogStoreRef> {
    let url = table_url(location)?;
    let (root, prefix): (Arc<dyn ObjectStore>, object_store::path::Path) = if storage::is_remote(location) {
        let loc = storage::locate(location)?;
        (loc.raw, loc.path)
    } else {
        let path = object_store::path::Path::from_url_path(url.path()).map_err(|e| Error::Usage(format!("`{location}`: {e}")))?;
        (Arc::new(object_store::local::LocalFileSystem::new()), path)
    };
    let prefixed: Arc<dyn ObjectStore> = Arc::new(PrefixStore::new(root.clone(), prefix));
    Ok(default_logstore(prefixed, root, &url, &StorageConfig::default()))
}

/// An error of delta-rs about the table at `location`, on one line, redacted.
pub fn error(location: &str, e: impl std::error::Error) -> Error {
    Error::Read { path: crate::redact::text(location), message: crate::redact::text(&storage::one_line(&e)) }
}

/// The table at `location`, loaded at the version or time `travel` names.
pub async fn open(location: &str, travel: &DeltaSource) -> Result<DeltaTable> {
    let mut table = DeltaTable::new(log_store(location)?);
    if !table.verify_deltatable_existence().await.map_err(|e| error(location, e))? {
        return Err(Error::Read { path: crate::redact::text(location), message: "not a Delta table (no _delta_log/ commits under it)".into() });
    }
    let loaded = match (&travel.version, &travel.timestamp) {
        (Some(v), _) => table.load_version(*v as _).await,
        (None, Some(ts)) => {
            let at = parse_timestamp(ts).map_err(Error::Usage)?;
            table.load_with_datetime(at).await
        }
        (None, None) => table.load().await,
    };
    loaded.map_err(|e| {
        let what = match (&travel.version, &travel.timestamp) {
            (Some(v), _) => format!("version {v}: "),
            (None, Some(ts)) => format!("timestamp {ts}: "),
            _ => String::new(),
        };
        Error::Read { path: crate::redact::text(location), message: crate::redact::text(&format!("{what}{}", storage::one_line(&e))) }
    })?;
    Ok(table)
}

/// The columns a scan of the table yields (data columns, then partition
/// columns), with partition values as their plain type (delta-rs hands them
/// out dictionary-encoded; Kiln's source casts them back).
pub async fn schema(location: &str, travel: &DeltaSource) -> Result<Schema> {
    let table = open(location, travel).await?;
    let provider = table.table_provider().await.map_err(|e| error(location, e))?;
    Ok(plain(provider.schema().as_ref()))
}

pub(crate) fn plain(schema: &Schema) -> Schema {
    use datafusion::arrow::datatypes::{DataType, Field};
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| match f.data_type() {
            DataType::Dictionary(_, value) => f.as_ref().clone().with_data_type(value.as_ref().clone()),
            _ => f.as_ref().clone(),
        })
        .collect();
    Schema::new(fields)
}

/// A DataFusion table over the table's files at the pinned version, its
/// schema checked against the one pinned at compile time.
pub async fn provider(ctx: &SessionContext, location: &str, travel: &DeltaSource, pinned: &Schema) -> Result<Arc<dyn TableProvider>> {
    let table = open(location, travel).await?;
    table.update_datafusion_session(&ctx.state()).map_err(|e| error(location, e))?;
    let provider = table.table_provider().await.map_err(|e| error(location, e))?;
    let found = plain(provider.schema().as_ref());
    super::drift::compare(pinned, &found, false).map_err(|message| Error::Read {
        path: crate::redact::text(location),
        message: format!("the table's schema changed since `kiln check` pinned it: {message}; check and build the spec again"),
    })?;
    Ok(provider)
}
