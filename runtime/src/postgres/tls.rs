//! TLS to PostgreSQL with libpq's meaning of `sslmode`, `sslrootcert`,
//! `sslcert` and `sslkey` (rustls with ring, as the cluster's TLS).
//!
//! tokio-postgres knows only `disable`, `prefer` and `require` and verifies
//! nothing itself, so [`split`] takes libpq's TLS parameters off the url and
//! [`Tls`] brings the verification each mode promises:
//!
//! | `sslmode`       | encrypted                      | server certificate checked          |
//! |-----------------|--------------------------------|-------------------------------------|
//! | `disable`       | never                          | –                                   |
//! | `allow`, `prefer` (default) | when the server offers TLS | no                          |
//! | `require`       | always                         | no; with `sslrootcert`, as `verify-ca` |
//! | `verify-ca`     | always                         | signed by a root of `sslrootcert`   |
//! | `verify-full`   | always                         | as `verify-ca`, and issued for the host |
//!
//! `sslrootcert` is a PEM file (default `~/.postgresql/root.crt`, as libpq) or
//! `system` for the operating system's roots. `sslcert` + `sslkey` present a
//! client certificate. No channel binding is offered (SCRAM without `-PLUS`).

use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::config::SslMode as PgSslMode;
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};

/// libpq's `sslmode` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Allow,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    fn parse(value: &str) -> Result<SslMode, String> {
        Ok(match value {
            "disable" => SslMode::Disable,
            "allow" => SslMode::Allow,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            other => return Err(format!("sslmode `{other}` is not one of disable, allow, prefer, require, verify-ca, verify-full")),
        })
    }
}

/// The TLS parameters of a url (libpq's names).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsParams {
    pub mode: SslMode,
    /// Whether the url said `sslmode` (else libpq's default applies).
    pub mode_given: bool,
    pub root_cert: Option<String>,
    pub cert: Option<String>,
    pub key: Option<String>,
}

impl Default for TlsParams {
    fn default() -> Self {
        TlsParams { mode: SslMode::Prefer, mode_given: false, root_cert: None, cert: None, key: None }
    }
}

const TLS_KEYS: [&str; 4] = ["sslmode", "sslrootcert", "sslcert", "sslkey"];

/// Splits libpq's TLS parameters off `url` (a `postgres://` url or a
/// `key=value` string): the rest is what tokio-postgres parses.
pub fn split(url: &str) -> Result<(String, TlsParams), String> {
    let mut params = TlsParams::default();
    let mut take = |key: &str, value: String| -> Result<(), String> {
        match key {
            "sslmode" => {
                params.mode = SslMode::parse(&value)?;
                params.mode_given = true;
            }
            "sslrootcert" => params.root_cert = Some(value),
            "sslcert" => params.cert = Some(value),
            "sslkey" => params.key = Some(value),
            _ => unreachable!(),
        }
        Ok(())
    };
    let rest = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        match url.split_once('?') {
            None => url.to_string(),
            Some((base, query)) => {
                let mut kept = Vec::new();
                for pair in query.split('&').filter(|p| !p.is_empty()) {
                    let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                    if TLS_KEYS.contains(&k) {
                        take(k, percent_decode(v))?;
                    } else {
                        kept.push(pair);
                    }
                }
                if kept.is_empty() { base.to_string() } else { format!("{base}?{}", kept.join("&")) }
            }
        }
    } else {
        // libpq's key = value form: spaces around `=`, values in single quotes with \' and \\.
        let mut rest = String::new();
        for (key, value, text) in conninfo_pairs(url)? {
            if TLS_KEYS.contains(&key.as_str()) {
                take(&key, value)?;
            } else {
                if !rest.is_empty() {
                    rest.push(' ');
                }
                rest.push_str(text);
            }
        }
        rest
    };
    if params.cert.is_some() != params.key.is_some() {
        return Err("a client certificate needs both `sslcert` and `sslkey`".into());
    }
    // libpq 16: the operating system's roots trust any public certificate, so they only
    // mean something with the host name checked.
    if params.root_cert.as_deref() == Some("system") {
        if !params.mode_given {
            params.mode = SslMode::VerifyFull;
        } else if params.mode != SslMode::VerifyFull {
            return Err("sslrootcert=system needs sslmode=verify-full (any public certificate is signed by a system root: only the host name check makes it safe)".into());
        }
    }
    Ok((rest, params))
}

/// The `key = value` pairs of a libpq connection string, each with its text as written.
fn conninfo_pairs(s: &str) -> Result<Vec<(String, String, &str)>, String> {
    let b = s.as_bytes();
    let mut i = 0;
    let mut out = Vec::new();
    loop {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= b.len() {
            return Ok(out);
        }
        let start = i;
        while i < b.len() && b[i] != b'=' && !b[i].is_ascii_whitespace() {
            i += 1;
        }
        let key = s[start..i].to_string();
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= b.len() || b[i] != b'=' {
            return Err(format!("the PostgreSQL connection string has `{key}` without `=`"));
        }
        i += 1;
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        let mut value = Vec::new();
        if i < b.len() && b[i] == b'\'' {
            i += 1;
            loop {
                match b.get(i) {
                    None => return Err(format!("the value of `{key}` has no closing quote")),
                    Some(b'\\') if i + 1 < b.len() => {
                        value.push(b[i + 1]);
                        i += 2;
                    }
                    Some(b'\'') => {
                        i += 1;
                        break;
                    }
                    Some(c) => {
                        value.push(*c);
                        i += 1;
                    }
                }
            }
        } else {
            while i < b.len() && !b[i].is_ascii_whitespace() {
                value.push(b[i]);
                i += 1;
            }
        }
        out.push((key, String::from_utf8_lossy(&value).into_owned(), &s[start..i]));
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Some(b) = std::str::from_utf8(&bytes[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl TlsParams {
    /// What tokio-postgres negotiates: whether TLS is tried, and required.
    pub fn pg_mode(&self) -> PgSslMode {
        match self.mode {
            SslMode::Disable => PgSslMode::Disable,
            SslMode::Allow | SslMode::Prefer => PgSslMode::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => PgSslMode::Require,
        }
    }

    /// The connector: a rustls client configured for this mode. Reads the
    /// certificate files, so a missing or unreadable one is an error here.
    pub fn connector(&self) -> Result<Tls, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        // libpq: `require` with a root certificate file present verifies like `verify-ca`.
        let mode = match self.mode {
            SslMode::Require if self.root_cert.is_some() => SslMode::VerifyCa,
            m => m,
        };
        let inner = match mode {
            SslMode::VerifyCa | SslMode::VerifyFull => {
                let roots = self.roots()?;
                Some(WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone()).build().map_err(|e| format!("sslrootcert: {e}"))?)
            }
            _ => None,
        };
        let verifier = Verifier { inner, check_name: mode == SslMode::VerifyFull, provider: provider.clone() };
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier));
        let config = match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => {
                let chain = CertificateDer::pem_file_iter(cert)
                    .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                    .map_err(|e| format!("sslcert {cert}: {e}"))?;
                let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("sslkey {key}: {e}"))?;
                builder.with_client_auth_cert(chain, key_der).map_err(|e| format!("sslcert/sslkey: {e}"))?
            }
            _ => builder.with_no_client_auth(),
        };
        Ok(Tls(Arc::new(config)))
    }

    fn roots(&self) -> Result<RootCertStore, String> {
        let mut roots = RootCertStore::empty();
        if self.root_cert.as_deref() == Some("system") {
            let found = rustls_native_certs::load_native_certs();
            if found.certs.is_empty() {
                return Err(format!("sslrootcert=system: no trusted roots found on this machine ({} errors)", found.errors.len()));
            }
            roots.add_parsable_certificates(found.certs);
            return Ok(roots);
        }
        let path = match &self.root_cert {
            Some(p) => PathBuf::from(p),
            None => {
                let Some(home) = std::env::var_os("HOME").filter(|h| !h.is_empty()).map(PathBuf::from) else {
                    return Err("sslmode=verify-ca/verify-full without sslrootcert looks for ~/.postgresql/root.crt, and HOME is not set: set sslrootcert=FILE".into());
                };
                let default = home.join(".postgresql/root.crt");
                if !default.exists() {
                    return Err(format!(
                        "sslmode={} verifies the server's certificate, but no root certificate was given and {} does not exist: set sslrootcert=FILE (or sslrootcert=system for this machine's trusted roots), or use sslmode=require",
                        if self.mode == SslMode::VerifyFull { "verify-full" } else { "verify-ca" },
                        default.display()
                    ));
                }
                default
            }
        };
        let certs = CertificateDer::pem_file_iter(&path)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| format!("sslrootcert {}: {e}", path.display()))?;
        if certs.is_empty() {
            return Err(format!("sslrootcert {}: no PEM certificate in it", path.display()));
        }
        for cert in certs {
            roots.add(cert).map_err(|e| format!("sslrootcert {}: {e}", path.display()))?;
        }
        Ok(roots)
    }
}

/// Checks the server's certificate as the mode says: its chain against the
/// roots (`inner`), its name only when `check_name`; handshake signatures always.
#[derive(Debug)]
struct Verifier {
    inner: Option<Arc<WebPkiServerVerifier>>,
    check_name: bool,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(inner) = &self.inner else { return Ok(ServerCertVerified::assertion()) };
        // webpki checks the chain first and the name after it: a name error
        // means the chain is good, which is all `verify-ca` asks.
        match inner.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            Err(rustls::Error::InvalidCertificate(CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. })) if !self.check_name => {
                Ok(ServerCertVerified::assertion())
            }
            other => other,
        }
    }

    fn verify_tls12_signature(&self, message: &[u8], cert: &CertificateDer<'_>, dss: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(&self, message: &[u8], cert: &CertificateDer<'_>, dss: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// tokio-postgres's TLS connector over rustls.
#[derive(Clone)]
pub struct Tls(Arc<ClientConfig>);

impl<S> MakeTlsConnect<S> for Tls
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = Stream<S>;
    type TlsConnect = Connect;
    type Error = io::Error;

    /// A host that is no DNS name or IP (a Unix socket's directory, none with
    /// `hostaddr`) fails only if TLS is actually attempted: tokio-postgres asks
    /// for a connector before it knows whether it will use one.
    fn make_tls_connect(&mut self, domain: &str) -> io::Result<Connect> {
        let name = ServerName::try_from(domain.to_string()).map_err(|e| format!("TLS needs the server's host name, and `{domain}` is none: {e}"));
        Ok(Connect { config: self.0.clone(), name })
    }
}

pub struct Connect {
    config: Arc<ClientConfig>,
    name: Result<ServerName<'static>, String>,
}

impl<S> TlsConnect<S> for Connect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = Stream<S>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Stream<S>>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        Box::pin(async move {
            let name = self.name.map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
            Ok(Stream(tokio_rustls::TlsConnector::from(self.config).connect(name, stream).await?))
        })
    }
}

pub struct Stream<S>(tokio_rustls::client::TlsStream<S>);

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for Stream<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Stream<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> TlsStream for Stream<S> {
    fn channel_binding(&self) -> ChannelBinding {
        ChannelBinding::none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_parameters_leave_the_url_tokio_postgres_parses() {
        let (rest, p) = split("postgresql://u:p@db:5432/x?sslmode=verify-full&application_name=a&sslrootcert=%2Fetc%2Fca.pem").unwrap();
        assert_eq!(rest, "postgresql://u:p@db:5432/x?application_name=a");
        assert_eq!(p, TlsParams { mode: SslMode::VerifyFull, mode_given: true, root_cert: Some("/etc/ca.pem".into()), cert: None, key: None });
        let (rest, p) = split("postgres://u@db/x").unwrap();
        assert_eq!((rest.as_str(), p), ("postgres://u@db/x", TlsParams::default()));
        let (rest, p) = split("host=db user=u sslmode=require dbname=x").unwrap();
        assert_eq!((rest.as_str(), p.mode), ("host=db user=u dbname=x", SslMode::Require));
        // libpq's spaces around `=` and quoted values.
        let (rest, p) = split("host=db sslmode = require password='a  b\\'c' sslrootcert = '/a b/ca.pem'").unwrap();
        assert_eq!(rest, "host=db password='a  b\\'c'");
        assert_eq!((p.mode, p.mode_given, p.root_cert.as_deref()), (SslMode::Require, true, Some("/a b/ca.pem")));
        // The system's roots only with the host checked.
        assert_eq!(split("postgres://db/x?sslrootcert=system").unwrap().1.mode, SslMode::VerifyFull);
        assert!(split("postgres://db/x?sslrootcert=system&sslmode=require").unwrap_err().contains("verify-full"));
        assert!(!split("postgres://db/x").unwrap().1.mode_given);
        assert!(split("postgres://db/x?sslmode=verify").unwrap_err().contains("not one of"));
        assert!(split("postgres://db/x?sslcert=/c.pem").unwrap_err().contains("sslkey"));
    }
}
