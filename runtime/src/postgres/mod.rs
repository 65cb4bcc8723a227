//! PostgreSQL sources and sinks (SPEC §3, §6), through tokio-postgres and
//! PostgreSQL's binary COPY in both directions.
//!
//! Reads: a source is a [`read::PgTable`]; its scan ([`read::scan_exec`]) has
//! one partition per range of `partition_column` (Spark's JDBC reader), each
//! running `COPY (SELECT cols FROM … WHERE range AND pushed filters) TO STDOUT
//! (FORMAT binary)` on its own connection, so on Ballista each is a task.
//! Writes ([`write`]): one transaction per sink, held open until the run's
//! commit point; a failed or killed run leaves the table as it was.
//!
//! The url never appears in a message: [`describe`] prints `user@host:port/db`.

pub mod read;
pub mod tls;
pub mod write;

use std::time::Duration;

use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use tokio_postgres::types::{Kind, Type};
use tokio_postgres::{Client, Config};

/// Seconds a connection attempt may take unless the url says (`connect_timeout=`).
const CONNECT_TIMEOUT: u64 = 10;

/// `user@host:port/db` for messages: never the password, never the whole url.
pub fn describe(url: &str) -> String {
    match tls::split(url).ok().and_then(|(rest, _)| rest.parse::<Config>().ok()) {
        Some(cfg) => describe_config(&cfg),
        None => "the PostgreSQL server (its url does not parse)".into(),
    }
}

fn describe_config(cfg: &Config) -> String {
    let host = match cfg.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    };
    let port = cfg.get_ports().first().copied().unwrap_or(5432);
    let user = cfg.get_user().map(|u| format!("{u}@")).unwrap_or_default();
    let db = cfg.get_dbname().map(|d| format!("/{d}")).unwrap_or_default();
    format!("{user}{host}:{port}{db}")
}

/// A PostgreSQL error as a person reads it: the server's message, detail and
/// hint when it sent them, else the client's error and its cause.
pub fn error_text(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        let mut s = format!("{}: {}", db.severity(), db.message());
        if let Some(d) = db.detail() {
            s.push_str(&format!(" ({d})"));
        }
        if let Some(h) = db.hint() {
            s.push_str(&format!("; hint: {h}"));
        }
        return s;
    }
    let mut s = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        s.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    s
}

/// Opens a connection (its driver runs on a spawned task), over TLS as the
/// url's `sslmode` says (libpq's default, `prefer`, when it says nothing).
pub async fn connect(url: &str) -> Result<Client, String> {
    let (rest, tls) = tls::split(url).map_err(|e| format!("the PostgreSQL url: {e}"))?;
    let mut cfg: Config = rest.parse().map_err(|e| format!("the PostgreSQL url does not parse: {e}"))?;
    if tls.mode_given {
        cfg.ssl_mode(tls.pg_mode());
    }
    let client_cert = tls.cert.is_some();
    let connector = tls.connector().map_err(|e| format!("TLS to {}: {e}", describe_config(&cfg)))?;
    if cfg.get_connect_timeout().is_none() {
        cfg.connect_timeout(Duration::from_secs(CONNECT_TIMEOUT));
    }
    // Kiln's timestamps are UTC: so is every conversion the server makes between
    // timestamp and timestamptz (pushed-down filters, casts to a declared schema).
    let options = match cfg.get_options() {
        Some(o) if !o.trim().is_empty() => format!("{o} -c TimeZone=UTC"),
        _ => "-c TimeZone=UTC".to_string(),
    };
    cfg.options(options);
    let mut attempt = cfg.connect(connector).await;
    let mut tls_failure = None;
    // libpq's `prefer`/`allow`: a TLS handshake that fails is retried without TLS.
    if let Err(e) = &attempt {
        let opportunistic = matches!(tls.mode, tls::SslMode::Prefer | tls::SslMode::Allow) && cfg.get_ssl_mode() == tokio_postgres::config::SslMode::Prefer;
        if opportunistic && e.as_db_error().is_none() && is_tls_failure(&error_text(e)) {
            tracing::info!("PostgreSQL at {}: the TLS handshake failed ({}); trying without TLS, as sslmode=prefer does", describe_config(&cfg), error_text(e));
            let mut plain = cfg.clone();
            plain.ssl_mode(tokio_postgres::config::SslMode::Disable);
            tls_failure = Some(error_text(e));
            attempt = plain.connect(tls.connector().map_err(|e| format!("TLS to {}: {e}", describe_config(&cfg)))?).await;
        }
    }
    let (client, connection) = attempt.map_err(|e| {
        let why = error_text(&e);
        let hint = if why.contains("not valid for name") {
            " (sslmode=verify-full checks that the certificate was issued for the url's host: connect by that name, or use sslmode=verify-ca)"
        } else if why.contains("UnknownIssuer") || why.contains("BadSignature") {
            " (the server's certificate is not signed by a root in sslrootcert)"
        } else if why.contains("received fatal alert") && client_cert {
            " (the server refused the TLS handshake: it does not trust the client certificate in sslcert)"
        } else {
            ""
        };
        match &tls_failure {
            Some(first) => format!("cannot connect to {}: the TLS handshake failed ({first}), and without TLS: {why}{hint}", describe_config(&cfg)),
            None => format!("cannot connect to {}: {why}{hint}", describe_config(&cfg)),
        }
    })?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!("PostgreSQL connection ended: {e}");
        }
    });
    Ok(client)
}

/// Whether a connection error came from the TLS layer (not the server or the network).
fn is_tls_failure(text: &str) -> bool {
    ["TLS", "tls", "certificate", "handshake", "alert", "HandshakeFailure", "PeerIncompatible"].iter().any(|w| text.contains(w))
}

/// `name` as a PostgreSQL identifier: `schema.table` quoted part by part.
pub fn quote_name(name: &str) -> String {
    name.split('.').map(quote_ident).collect::<Vec<_>>().join(".")
}

pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The relation a source reads, as SQL for `FROM`.
pub fn relation(table: Option<&str>, query: Option<&str>) -> String {
    match (table, query) {
        (Some(t), _) => quote_name(t),
        (None, Some(q)) => format!("({}) AS kiln_query", q.trim().trim_end_matches(';')),
        (None, None) => "(SELECT) AS kiln_empty".into(),
    }
}

/// The Arrow type Kiln reads a PostgreSQL column as (SPEC §3's type table in the
/// README); `None` for a type it does not read.
pub fn arrow_type(t: &Type, modifier: i32) -> Option<DataType> {
    Some(match *t {
        Type::BOOL => DataType::Boolean,
        Type::INT2 => DataType::Int16,
        Type::INT4 => DataType::Int32,
        Type::INT8 => DataType::Int64,
        Type::OID => DataType::Int64,
        Type::FLOAT4 => DataType::Float32,
        Type::FLOAT8 => DataType::Float64,
        Type::NUMERIC => {
            // numeric(p,s) carries (p << 16 | s) + 4; unconstrained numeric reads as
            // decimal(38,18), as Spark's JDBC reader does.
            if modifier >= 4 {
                let p = ((modifier - 4) >> 16) as u8;
                let s = ((modifier - 4) & 0xffff) as i8;
                if p > 38 {
                    return None;
                }
                DataType::Decimal128(p, s)
            } else {
                DataType::Decimal128(38, 18)
            }
        }
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UUID | Type::JSON | Type::JSONB => DataType::Utf8,
        Type::BYTEA => DataType::Binary,
        Type::DATE => DataType::Date32,
        Type::TIMESTAMP => DataType::Timestamp(TimeUnit::Microsecond, None),
        Type::TIMESTAMPTZ => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        Type::TIME => DataType::Time64(TimeUnit::Microsecond),
        _ => match t.kind() {
            Kind::Array(inner) => {
                let item = arrow_type(inner, -1)?;
                if matches!(item, DataType::List(_)) {
                    return None;
                }
                DataType::List(std::sync::Arc::new(Field::new("item", item, true)))
            }
            Kind::Enum(_) => DataType::Utf8,
            _ => return None,
        },
    })
}

/// The schema of `relation` as the server describes it, with its columns' PostgreSQL types.
pub async fn describe_relation(client: &Client, relation: &str) -> Result<(Schema, Vec<Type>), String> {
    let stmt = client.prepare(&format!("SELECT * FROM {relation} LIMIT 0")).await.map_err(|e| error_text(&e))?;
    let mut fields = Vec::new();
    let mut types = Vec::new();
    for c in stmt.columns() {
        let dt = arrow_type(c.type_(), c.type_modifier()).ok_or_else(|| {
            format!("column `{}` has PostgreSQL type {}, which Kiln does not read; cast it in a `query` (e.g. {}::text)", c.name(), c.type_().name(), quote_ident(c.name()))
        })?;
        fields.push(Field::new(c.name(), dt, true));
        types.push(c.type_().clone());
    }
    Ok((Schema::new(fields), types))
}

/// The schema a source reads (what `kiln check` pins): connects, describes, disconnects.
pub async fn source_schema(url: &str, table: Option<&str>, query: Option<&str>) -> Result<Schema, String> {
    let client = connect(url).await?;
    let what = match table {
        Some(t) => format!("table {t}"),
        None => "the query".into(),
    };
    describe_relation(&client, &relation(table, query)).await.map(|(s, _)| s).map_err(|e| format!("{what} on {}: {e}", describe(url)))
}
