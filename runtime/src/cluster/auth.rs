//! The cluster's shared secret (SPEC §10): `--auth-token-file FILE` or
//! `KILN_CLUSTER_TOKEN`, checked by every server and presented by every client.
//!
//! Ballista 55's servers have no hook that sees a request before it is served,
//! so with a token each role's Ballista server listens on a private loopback
//! address and Kiln's *gate* listens where the user asked: a TLS 1.3 endpoint
//! that requires a client certificate and then relays the bytes to the private
//! address. Ballista's clients (scheduler → executor, executor → scheduler,
//! shuffle reads between executors, the submitting client → scheduler and
//! executors) get an endpoint override that speaks TLS with the same identity.
//!
//! The token itself never crosses the network: the cluster's certificate
//! authority key (Ed25519) is derived from it, and each process signs its own
//! certificate with that key. A process holding the same token proves it in
//! the handshake; one holding another token, or none, fails the handshake in
//! both directions (servers verify clients, clients verify servers), and a
//! plain-text client never reaches Ballista. Anyone who can read the token can
//! join the cluster: keep it in a Kubernetes Secret or a file only the job's
//! user reads, and make it random (`openssl rand -hex 32`).
//!
//! Instead of a token, a cluster can use certificates its operators issue
//! (`--tls-cert`, `--tls-key`, `--tls-ca`, PEM): every process presents its
//! certificate, and servers and clients alike admit only certificates signed
//! by the CA. Clients check the server's name too: the host they connect to,
//! or `--tls-server-name` when every node's certificate carries one name.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use ballista_core::extension::EndpointOverrideFn;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use sha2::{Digest, Sha256};
use tokio::net::{TcpListener, TcpStream};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

use crate::{Error, Result};

/// The environment variable holding the token when no `--auth-token-file` is given.
pub const TOKEN_ENV: &str = "KILN_CLUSTER_TOKEN";
/// Fewer bytes than this is refused: the token is the only key to the cluster,
/// and anyone who can start a handshake gets material to test guesses offline.
pub const MIN_TOKEN_BYTES: usize = 32;
/// A token of fewer distinct bytes than this is not random (`aaaa…`, a word repeated).
const MIN_DISTINCT_BYTES: usize = 10;
/// Handshakes in progress at once per gate; more connections wait to be accepted.
const MAX_PENDING_HANDSHAKES: usize = 256;
/// The name every node's certificate carries and every client checks.
const NODE_NAME: &str = "kiln-cluster";
/// Where a role's Ballista server listens when the gate takes a loopback or
/// wildcard address (Linux routes all of 127/8 to the loopback interface).
const PRIVATE_LOOPBACK: Ipv4Addr = Ipv4Addr::new(127, 75, 76, 78);

/// A cluster identity, derived from the token or read from the operator's
/// certificates: TLS settings for the gate and for Ballista's clients. Debug
/// prints nothing secret.
pub struct ClusterAuth {
    server: Arc<rustls::ServerConfig>,
    client: ClientTlsConfig,
    /// The certificates' files when the operator brought them (None: the token's).
    files: Option<TlsFiles>,
}

/// Certificates an operator brings instead of a token (PEM files).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// This process's certificate (chain), presented to servers and clients alike.
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
    /// The CA whose signature every peer's certificate must carry.
    pub ca: std::path::PathBuf,
    /// The name clients check servers' certificates against (default: the host connected to).
    pub server_name: Option<String>,
}

impl std::fmt::Debug for ClusterAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterAuth(..)")
    }
}

static CURRENT: OnceLock<Option<Arc<ClusterAuth>>> = OnceLock::new();

/// The process's cluster identity, once [`init`] ran (none before, or without a token).
pub fn current() -> Option<Arc<ClusterAuth>> {
    CURRENT.get().cloned().flatten()
}

/// Loads the token (the file wins over [`TOKEN_ENV`]), or the operator's
/// certificates, and makes it the process's identity. Errors name the file,
/// never the token.
pub fn init(token_file: Option<&Path>, tls: Option<&TlsFiles>) -> Result<Option<Arc<ClusterAuth>>> {
    if let Some(files) = tls {
        let token_given = token_file.is_some() || std::env::var_os(TOKEN_ENV).is_some_and(|v| !v.is_empty());
        if token_given {
            return Err(Error::Usage(format!(
                "both a cluster token (--auth-token-file or ${TOKEN_ENV}) and certificates (--tls-cert) were given: a cluster uses one or the other"
            )));
        }
        let auth = Some(Arc::new(ClusterAuth::from_files(files)?));
        let _ = CURRENT.set(auth.clone());
        return Ok(current().or(auth));
    }
    let token = match token_file {
        Some(path) => {
            let text = std::fs::read(path).map_err(|e| Error::Usage(format!("--auth-token-file {}: {e}", path.display())))?;
            Some((text, format!("the token in {}", path.display())))
        }
        None => std::env::var_os(TOKEN_ENV).filter(|v| !v.is_empty()).map(|v| (v.into_encoded_bytes(), format!("${TOKEN_ENV}"))),
    };
    let auth = match token {
        None => None,
        Some((bytes, what)) => {
            let token = bytes.trim_ascii();
            let distinct = token.iter().collect::<std::collections::BTreeSet<_>>().len();
            if token.len() < MIN_TOKEN_BYTES || distinct < MIN_DISTINCT_BYTES {
                return Err(Error::Usage(format!(
                    "{what} has {} bytes ({distinct} distinct); a cluster token needs at least {MIN_TOKEN_BYTES} random characters (e.g. `openssl rand -hex 32`)",
                    token.len()
                )));
            }
            Some(Arc::new(ClusterAuth::from_token(token)?))
        }
    };
    let _ = CURRENT.set(auth.clone());
    Ok(current().or(auth))
}

fn tls_err(e: impl std::fmt::Display) -> Error {
    Error::Usage(format!("cluster TLS: {e}"))
}

/// An Ed25519 key from 32 secret bytes, as PKCS#8 v1 (RFC 8410).
fn ed25519_pkcs8(seed: &[u8; 32]) -> Vec<u8> {
    let mut der = vec![0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];
    der.extend_from_slice(seed);
    der
}

impl ClusterAuth {
    /// The identity every holder of `token` derives: one CA key, and a node
    /// certificate of this process signed by it.
    pub fn from_token(token: &[u8]) -> Result<Self> {
        use rcgen::{BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, PKCS_ED25519};
        let seed: [u8; 32] = Sha256::new().chain_update(b"kiln cluster CA v1\0").chain_update(token).finalize().into();
        let ca_key = KeyPair::from_pkcs8_der_and_sign_algo(&PrivatePkcs8KeyDer::from(ed25519_pkcs8(&seed)), &PKCS_ED25519).map_err(tls_err)?;
        let mut ca = CertificateParams::default();
        ca.distinguished_name = DistinguishedName::new();
        ca.distinguished_name.push(DnType::CommonName, "kiln cluster CA");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
        let ca_cert = ca.self_signed(&ca_key).map_err(tls_err)?;
        let issuer = Issuer::new(ca, ca_key);

        let node_key = KeyPair::generate_for(&PKCS_ED25519).map_err(tls_err)?;
        let mut node = CertificateParams::new(vec![NODE_NAME.to_string()]).map_err(tls_err)?;
        node.distinguished_name.push(DnType::CommonName, NODE_NAME);
        node.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        let node_cert = node.signed_by(&node_key, &issuer).map_err(tls_err)?;

        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca_cert.der().clone()).map_err(tls_err)?;
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone()).build().map_err(tls_err)?;
        let chain: Vec<CertificateDer<'static>> = vec![node_cert.der().clone(), ca_cert.der().clone()];
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(node_key.serialize_der()));
        let mut server = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(tls_err)?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .map_err(tls_err)?;
        server.alpn_protocols = vec![b"h2".to_vec()];

        let client = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(ca_cert.pem()))
            .identity(Identity::from_pem(node_cert.pem(), node_key.serialize_pem()))
            .domain_name(NODE_NAME);
        Ok(ClusterAuth { server: Arc::new(server), client, files: None })
    }

    /// The identity in the operator's files: the gate presents `cert` and admits
    /// clients whose certificate `ca` signed; Ballista's clients present `cert`
    /// and admit servers `ca` signed, for the host they dial (or `server_name`).
    pub fn from_files(files: &TlsFiles) -> Result<Self> {
        let read = |flag: &str, path: &Path| std::fs::read(path).map_err(|e| Error::Usage(format!("{flag} {}: {e}", path.display())));
        let (cert_pem, key_pem, ca_pem) = (read("--tls-cert", &files.cert)?, read("--tls-key", &files.key)?, read("--tls-ca", &files.ca)?);
        let pem_err = |flag: &str, path: &Path, e: &dyn std::fmt::Display| Error::Usage(format!("{flag} {}: {e}", path.display()));
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| pem_err("--tls-cert", &files.cert, &e))?;
        let Some(leaf) = chain.first().cloned() else { return Err(pem_err("--tls-cert", &files.cert, &"no PEM certificate in it")) };
        let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| pem_err("--tls-key", &files.key, &e))?;
        let mut roots = rustls::RootCertStore::empty();
        let cas: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&ca_pem)
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| pem_err("--tls-ca", &files.ca, &e))?;
        if cas.is_empty() {
            return Err(pem_err("--tls-ca", &files.ca, &"no PEM certificate in it"));
        }
        for ca in cas {
            roots.add(ca).map_err(|e| pem_err("--tls-ca", &files.ca, &e))?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone()).build().map_err(tls_err)?;
        // A certificate the CA did not sign would be refused by every peer: say so now.
        let now = rustls::pki_types::UnixTime::now();
        if let Err(e) = verifier.verify_client_cert(&leaf, &chain[1..], now) {
            return Err(Error::Usage(format!(
                "--tls-cert {} is not accepted under --tls-ca {}: {e}",
                files.cert.display(),
                files.ca.display()
            )));
        }
        // With --tls-server-name, a peer must also carry that name (the CA may sign others'
        // certificates too); this process's own certificate first.
        let verifier: Arc<dyn rustls::server::danger::ClientCertVerifier> = match &files.server_name {
            None => verifier,
            Some(name) => {
                let name = rustls::pki_types::ServerName::try_from(name.clone()).map_err(|e| Error::Usage(format!("--tls-server-name {name}: {e}")))?;
                let named = Arc::new(NamedClients { inner: verifier, name });
                if let Err(e) = named.check_name(&leaf) {
                    return Err(Error::Usage(format!("--tls-cert {} does not carry --tls-server-name {}: {e}", files.cert.display(), named.name.to_str())));
                }
                named
            }
        };
        let mut server = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(tls_err)?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .map_err(|e| Error::Usage(format!("--tls-cert {} with --tls-key {}: {e}", files.cert.display(), files.key.display())))?;
        server.alpn_protocols = vec![b"h2".to_vec()];
        let mut client = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&ca_pem)).identity(Identity::from_pem(&cert_pem, &key_pem));
        if let Some(name) = &files.server_name {
            client = client.domain_name(name.clone());
        }
        Ok(ClusterAuth { server: Arc::new(server), client, files: Some(files.clone()) })
    }

    /// What proves membership, for messages: "the cluster's token" or the CA's file.
    pub fn proof(&self) -> String {
        match &self.files {
            None => "the cluster's token".into(),
            Some(f) => format!("a certificate signed by the CA in --tls-ca {}", f.ca.display()),
        }
    }

    /// For Ballista's clients: every connection goes over TLS with this identity.
    pub fn endpoint_override(&self) -> EndpointOverrideFn {
        let tls = self.client.clone();
        Arc::new(move |endpoint: Endpoint| {
            let uri = endpoint.uri();
            let authority = uri.authority().ok_or("a gRPC endpoint without host:port")?;
            let config = ballista_core::utils::GrpcClientConfig::default();
            let endpoint = ballista_core::utils::create_grpc_client_endpoint(format!("https://{authority}"), Some(&config))?;
            Ok(endpoint.tls_config(tls.clone())?)
        })
    }
}

/// The CA's verdict on a client certificate, and then its name: with
/// `--tls-server-name`, every node of the cluster carries that name, so a
/// certificate the CA signed for another workload is refused.
#[derive(Debug)]
struct NamedClients {
    inner: Arc<dyn rustls::server::danger::ClientCertVerifier>,
    name: rustls::pki_types::ServerName<'static>,
}

impl NamedClients {
    fn check_name(&self, end_entity: &CertificateDer<'_>) -> std::result::Result<(), rustls::Error> {
        let parsed = rustls::server::ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_name(&parsed, &self.name)
    }
}

impl rustls::server::danger::ClientCertVerifier for NamedClients {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: rustls::pki_types::UnixTime,
    ) -> std::result::Result<rustls::server::danger::ClientCertVerified, rustls::Error> {
        let verified = self.inner.verify_client_cert(end_entity, intermediates, now)?;
        self.check_name(end_entity)?;
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The endpoint of the scheduler at `addr` (`host:port`): TLS with this
/// process's identity when the cluster has a token or certificates.
fn scheduler_endpoint(addr: &str, auth: Option<&ClusterAuth>) -> Result<Endpoint> {
    let refused = |why: String| Error::Cluster(format!("cannot talk to the scheduler at {addr}: {why}"));
    let mut endpoint = ballista_core::utils::create_grpc_client_endpoint(format!("http://{addr}"), Some(&ballista_core::utils::GrpcClientConfig::default()))
        .map_err(|e| refused(e.to_string()))?;
    if let Some(auth) = auth {
        endpoint = (auth.endpoint_override())(endpoint).map_err(|e| refused(e.to_string()))?;
    }
    Ok(endpoint)
}

/// A channel to the scheduler at `addr`, as [`probe_scheduler`] opens it.
pub async fn scheduler_channel(addr: &str, auth: Option<&ClusterAuth>) -> Result<tonic::transport::Channel> {
    scheduler_endpoint(addr, auth)?.connect().await.map_err(|e| Error::Cluster(format!("cannot talk to the scheduler at {addr}: {e}")))
}

/// Asks the scheduler at `addr` one question (a job's status) before a job is
/// planned, so that a refused connection is reported as such: without a token
/// against a gated cluster, with another token, or an unreachable address.
pub async fn probe_scheduler(addr: &str, auth: Option<&ClusterAuth>) -> Result<()> {
    use ballista_core::serde::protobuf::{GetJobStatusParams, scheduler_grpc_client::SchedulerGrpcClient};
    let refused = |why: String| Error::Cluster(format!("cannot talk to the scheduler at {addr}: {why}"));
    let endpoint = scheduler_endpoint(addr, auth)?;
    let answer = match endpoint.connect().await {
        Ok(channel) => SchedulerGrpcClient::new(channel).get_job_status(GetJobStatusParams { job_id: "kiln-probe".into() }).await.map(|_| ()).map_err(|status| {
            // A status the scheduler sent (the job is unknown, say) proves the connection works.
            use std::error::Error as _;
            match status.source() {
                Some(source) => format!("{status}: {source:?}"),
                None if matches!(status.code(), tonic::Code::Unknown | tonic::Code::Unavailable | tonic::Code::Cancelled) => status.to_string(),
                None => String::new(),
            }
        }),
        Err(e) => Err(format!("{e:?}")),
    };
    match answer {
        Ok(()) => Ok(()),
        Err(why) if why.is_empty() => Ok(()),
        Err(why) if auth.is_some_and(|a| a.files.is_none()) && why.contains("Certificate") => Err(refused(format!(
            "it did not prove the cluster's token (the TLS handshake failed: {}); this client's token differs from the cluster's",
            if why.contains("BadSignature") || why.contains("UnknownIssuer") { "a certificate signed for another token" } else { "bad certificate" }
        ))),
        Err(why) if auth.is_some_and(|a| a.files.is_some()) && (why.contains("Certificate") || why.contains("certificate") || why.contains("alert")) => Err(refused(format!(
            "the TLS handshake failed ({}): the scheduler's certificate and this client's must both be signed by the CA in --tls-ca, and the scheduler's issued for the host dialled (or --tls-server-name)",
            tls_reason(&why)
        ))),
        // TLS 1.3: a server refusing the client's certificate may close the connection
        // after the client finished its side of the handshake: the client sees it closed.
        Err(why) if auth.is_some_and(|a| a.files.is_some()) && (why.contains("closed") || why.contains("Canceled") || why.contains("reset")) => Err(refused(
            "the TLS handshake failed (the scheduler closed the connection: either it does not accept this client's certificate — is it signed by a CA in the scheduler's --tls-ca? — or it went away)".to_string()
        )),
        Err(why) if auth.is_none() && (why.contains("closed") || why.contains("Reset") || why.contains("reset") || why.contains("transport error")) => Err(refused(format!(
            "it closed the connection unanswered (a cluster started with a token or certificates refuses clients without them: pass the same token with --auth-token-file FILE or ${TOKEN_ENV}, or the cluster's certificates with --tls-cert/--tls-key/--tls-ca)"
        ))),
        Err(why) if auth.is_some() && (why.contains("InvalidContentType") || why.contains("CorruptMessage") || why.contains("InvalidMessage")) => Err(refused(format!(
            "it does not speak TLS: was it started without {}? ({})",
            auth.map(|a| a.proof()).unwrap_or_default(),
            one_line(&why)
        ))),
        Err(why) => Err(refused(one_line(&why))),
    }
}

/// The rustls reason inside a transport error's debug text (`UnknownIssuer`,
/// `NotValidForName`, an alert from the server), else the text on one line.
fn tls_reason(why: &str) -> String {
    for reason in ["UnknownIssuer", "BadSignature", "NotValidForName", "Expired", "NotValidYet", "UnknownCA", "BadCertificate", "CertificateRequired", "DecryptError"] {
        if why.contains(reason) {
            return match reason {
                "UnknownIssuer" | "BadSignature" => format!("{reason}: the scheduler's certificate is not signed by this client's --tls-ca"),
                "UnknownCA" | "BadCertificate" | "DecryptError" => format!("{reason}: the scheduler does not accept this client's certificate"),
                "CertificateRequired" => format!("{reason}: the scheduler wants a client certificate"),
                "NotValidForName" => format!("{reason}: the scheduler's certificate was not issued for the host dialled"),
                _ => reason.to_string(),
            };
        }
    }
    one_line(why)
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Where a role's Ballista server listens when a gate takes `public`.
pub fn private_address(public: SocketAddr) -> SocketAddr {
    let ip = if public.ip().is_loopback() || public.ip().is_unspecified() { PRIVATE_LOOPBACK } else { Ipv4Addr::LOCALHOST };
    SocketAddr::new(IpAddr::V4(ip), public.port())
}

/// Refuses a non-loopback address without a token (SPEC §10), and port 0 with
/// one (the gate and the server behind it must agree on the port).
pub fn check_bind(flag: &str, addr: SocketAddr, auth: Option<&ClusterAuth>) -> Result<()> {
    if auth.is_none() && !addr.ip().is_loopback() {
        return Err(Error::Usage(format!(
            "{flag} {addr}: listening on a non-loopback address needs the cluster's token (--auth-token-file FILE or ${TOKEN_ENV}) or certificates (--tls-cert/--tls-key/--tls-ca), so that only the job's own processes can talk to it"
        )));
    }
    if auth.is_some() && addr.port() == 0 {
        return Err(Error::Usage(format!("{flag} {addr}: with a cluster token or certificates, name the port")));
    }
    Ok(())
}

/// Opens gates on `public` (every interface address when it is a wildcard) that
/// relay authenticated connections to `private`. Listening when this returns.
pub async fn open_gate(public: SocketAddr, private: SocketAddr, auth: &ClusterAuth) -> Result<()> {
    let ips = if public.ip().is_unspecified() { interface_addresses(public.is_ipv6())? } else { vec![public.ip()] };
    let acceptor = tokio_rustls::TlsAcceptor::from(auth.server.clone());
    for ip in ips {
        let addr = SocketAddr::new(ip, public.port());
        let listener = TcpListener::bind(addr).await.map_err(|e| Error::Usage(format!("cannot listen on {addr}: {e}")))?;
        let suspect = if auth.files.is_some() { "a certificate the cluster's CA did not sign?" } else { "another cluster token?" };
        tokio::spawn(serve(listener, private, acceptor.clone(), suspect));
    }
    Ok(())
}

async fn serve(listener: TcpListener, private: SocketAddr, acceptor: tokio_rustls::TlsAcceptor, suspect: &'static str) {
    let pending = Arc::new(tokio::sync::Semaphore::new(MAX_PENDING_HANDSHAKES));
    loop {
        let Ok(permit) = pending.clone().acquire_owned().await else { return };
        let (socket, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!("cluster gate on {:?}: accept: {e}", listener.local_addr().ok());
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let _ = socket.set_nodelay(true);
            // Within 10 s: the first byte, then the whole handshake.
            let handshake = async {
                let mut first = [0u8; 1];
                match socket.peek(&mut first).await {
                    // 0x16: a TLS handshake record. Anything else is a client without the
                    // cluster's token (or Ballista's own plain connectivity probe); nothing
                    // at all is a port check.
                    Ok(1) if first[0] == 0x16 => Some(acceptor.accept(socket).await),
                    Ok(1) => {
                        tracing::debug!("cluster gate: refused a plain-text connection from {peer} (no cluster token)");
                        // Nothing is relayed; the socket is held (reads discarded) until the peer
                        // hangs up or 2 s pass, so Ballista's registration probe, which only
                        // connects and hangs up, never races the gate's close.
                        let mut socket = socket;
                        let mut sink = [0u8; 4096];
                        let _ = tokio::time::timeout(Duration::from_secs(2), async {
                            use tokio::io::AsyncReadExt;
                            while matches!(socket.read(&mut sink).await, Ok(n) if n > 0) {}
                        })
                        .await;
                        None
                    }
                    _ => None,
                }
            };
            let tls = match tokio::time::timeout(Duration::from_secs(10), handshake).await {
                Ok(Some(Ok(tls))) => tls,
                Ok(Some(Err(e))) => {
                    tracing::warn!("cluster gate: refused a TLS connection from {peer} ({suspect}): {e}");
                    return;
                }
                Ok(None) => return,
                Err(_) => {
                    tracing::info!("cluster gate: dropped a connection from {peer}: no TLS handshake within 10s");
                    return;
                }
            };
            drop(permit);
            let mut tls = tls;
            match TcpStream::connect(private).await {
                Ok(mut inner) => {
                    let _ = inner.set_nodelay(true);
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut inner).await;
                }
                Err(e) => tracing::warn!("cluster gate: cannot reach the local server at {private}: {e}"),
            }
        });
    }
}

/// The machine's addresses of one family (for a wildcard bind), skipping IPv6
/// link-local ones (they need a scope to bind).
fn interface_addresses(v6: bool) -> Result<Vec<IpAddr>> {
    let mut out = Vec::new();
    // SAFETY: getifaddrs hands back a linked list we only read and then free.
    unsafe {
        let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
        if libc::getifaddrs(&mut list) != 0 {
            return Err(Error::Usage(format!("cannot list network interfaces: {}", std::io::Error::last_os_error())));
        }
        let mut p = list;
        while !p.is_null() {
            let addr = (*p).ifa_addr;
            if !addr.is_null() {
                match (*addr).sa_family as i32 {
                    libc::AF_INET if !v6 => {
                        let sin = addr as *const libc::sockaddr_in;
                        out.push(IpAddr::V4(Ipv4Addr::from(u32::from_be((*sin).sin_addr.s_addr))));
                    }
                    libc::AF_INET6 if v6 => {
                        let sin6 = addr as *const libc::sockaddr_in6;
                        let ip = std::net::Ipv6Addr::from((*sin6).sin6_addr.s6_addr);
                        if ip.segments()[0] & 0xffc0 != 0xfe80 {
                            out.push(IpAddr::V6(ip));
                        }
                    }
                    _ => {}
                }
            }
            p = (*p).ifa_next;
        }
        libc::freeifaddrs(list);
    }
    out.sort();
    out.dedup();
    if out.is_empty() {
        return Err(Error::Usage("no network interface address to listen on".into()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_tokens_are_refused_without_echoing_them() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "hunter2-short\n").unwrap();
        let err = init(Some(&file), None).unwrap_err().to_string();
        assert!(err.contains("13 bytes") && err.contains("at least 32"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
        std::fs::write(&file, "ab".repeat(40)).unwrap();
        let err = init(Some(&file), None).unwrap_err().to_string();
        assert!(err.contains("80 bytes (2 distinct)"), "{err}");
    }

    #[test]
    fn private_addresses_never_overlap_the_public_one() {
        let p = |s: &str| private_address(s.parse().unwrap());
        assert_eq!(p("127.0.0.1:50050"), "127.75.76.78:50050".parse().unwrap());
        assert_eq!(p("0.0.0.0:50050"), "127.75.76.78:50050".parse().unwrap());
        assert_eq!(p("10.1.2.3:50051"), "127.0.0.1:50051".parse().unwrap());
    }

    #[test]
    fn a_non_loopback_bind_needs_a_token() {
        let auth = ClusterAuth::from_token(b"0123456789abcdef0123").unwrap();
        assert!(check_bind("--bind", "127.0.0.1:1".parse().unwrap(), None).is_ok());
        let err = check_bind("--bind", "0.0.0.0:50050".parse().unwrap(), None).unwrap_err().to_string();
        assert!(err.contains("--auth-token-file") && err.contains(TOKEN_ENV), "{err}");
        assert!(check_bind("--bind", "0.0.0.0:50050".parse().unwrap(), Some(&auth)).is_ok());
        assert!(check_bind("--bind", "127.0.0.1:0".parse().unwrap(), Some(&auth)).unwrap_err().to_string().contains("name the port"));
    }
}
