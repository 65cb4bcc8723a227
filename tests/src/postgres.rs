//! A real PostgreSQL server for a test: Debian's `postgresql` package, a fresh
//! cluster in a temporary directory (`initdb` as the `postgres` user when the
//! tests run as root, since it refuses root), on a free port of 127.0.0.1 with
//! password (SCRAM) authentication. Stopped and removed when dropped.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The superuser's password in every test cluster.
pub const PASSWORD: &str = "kiln-test-pg-secret-7f3a9c";

pub struct Postgres {
    pub port: u16,
    bin: PathBuf,
    dir: PathBuf,
    as_postgres: bool,
}

/// The directory holding `initdb`, `pg_ctl` and `psql`.
fn bin_dir() -> PathBuf {
    if let Ok(b) = std::env::var("KILN_PG_BIN") {
        return PathBuf::from(b);
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| d.flatten().map(|e| e.path().join("bin")).filter(|b| b.join("initdb").exists()).collect())
        .unwrap_or_default();
    found.sort();
    found.pop().unwrap_or_else(|| {
        panic!("PostgreSQL is not installed: `apt-get install postgresql` (.ci/run does), or set KILN_PG_BIN to the directory holding initdb")
    })
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0").unwrap_or(false)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The user a [`TlsServer`] authenticates by client certificate alone.
pub const CERT_USER: &str = "certuser";

/// A server that only takes TLS connections: its certificate, for `localhost`
/// only, is signed by `ca`; `other_ca` signed nothing of it.
pub struct TlsServer {
    pub pg: Postgres,
    pub ca: PathBuf,
    pub other_ca: PathBuf,
    /// `CERT_USER`'s certificate and key, signed by `ca` (and by `other_ca` under `other/`).
    pub certs: PathBuf,
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.certs);
    }
}

/// PEM files of a CA and of a server certificate (and key) it signs for `names`;
/// it also signs a client certificate for the user `certuser` (client.crt, client.key).
fn make_certs(dir: &Path, names: &[&str]) -> (PathBuf, PathBuf, PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.distinguished_name.push(DnType::CommonName, "kiln test CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    params.distinguished_name.push(DnType::CommonName, names[0]);
    let cert = params.signed_by(&key, &issuer).unwrap();
    let (ca_path, cert_path, key_path) = (dir.join("ca.pem"), dir.join("server.crt"), dir.join("server.key"));
    std::fs::write(&ca_path, ca_cert.pem()).unwrap();
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    let client_key = KeyPair::generate().unwrap();
    let mut client = CertificateParams::new(Vec::<String>::new()).unwrap();
    client.distinguished_name.push(DnType::CommonName, CERT_USER);
    let client_cert = client.signed_by(&client_key, &issuer).unwrap();
    std::fs::write(dir.join("client.crt"), client_cert.pem()).unwrap();
    std::fs::write(dir.join("client.key"), client_key.serialize_pem()).unwrap();
    (ca_path, cert_path, key_path)
}

impl Postgres {
    pub fn start() -> Postgres {
        Postgres::start_with(None)
    }

    /// A server with `ssl = on` whose pg_hba.conf refuses connections without TLS
    /// (`hostssl` only), logging each connection (`SSL enabled (protocol=…)`).
    pub fn start_tls() -> TlsServer {
        let certs = tempfile::Builder::new().prefix("kiln-pg-certs-").tempdir_in("/tmp").unwrap().keep();
        std::fs::create_dir_all(certs.join("other")).unwrap();
        let (ca, cert, key) = make_certs(&certs, &["localhost"]);
        let (other_ca, _, _) = make_certs(&certs.join("other"), &["localhost"]);
        let pg = Postgres::start_with(Some((cert, key, ca.clone())));
        pg.psql(&format!("CREATE USER {CERT_USER} SUPERUSER"));
        TlsServer { pg, ca, other_ca, certs }
    }

    fn start_with(tls: Option<(PathBuf, PathBuf, PathBuf)>) -> Postgres {
        let bin = bin_dir();
        let as_postgres = is_root();
        let dir = tempfile::Builder::new().prefix("kiln-pg-").tempdir_in("/tmp").unwrap().keep();
        std::fs::write(dir.join("pw"), PASSWORD).unwrap();
        if as_postgres {
            assert!(Command::new("chown").args(["-R", "postgres:postgres"]).arg(&dir).status().unwrap().success());
        }
        let mut pg = Postgres { port: free_port(), bin, dir, as_postgres };
        let data = pg.dir.join("data");
        pg.run(
            "initdb",
            &["-D", &data.to_string_lossy(), "-U", "postgres", "-E", "UTF8", "--locale=C.UTF-8", "--auth-local=trust", "--auth-host=scram-sha-256", "--pwfile", &pg.dir.join("pw").to_string_lossy()],
        );
        let mut opts = format!("-k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200 -c log_statement=all", pg.dir.display());
        if let Some((cert, key, ca)) = tls {
            // The server reads its key only if the postgres user owns it, mode 0600.
            for (from, name) in [(cert, "server.crt"), (key, "server.key"), (ca, "root.crt")] {
                std::fs::copy(&from, data.join(name)).unwrap();
                if pg.as_postgres {
                    assert!(Command::new("chown").args(["postgres:postgres"]).arg(data.join(name)).status().unwrap().success());
                }
            }
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(data.join("server.key"), std::fs::Permissions::from_mode(0o600)).unwrap();
            std::fs::write(data.join("pg_hba.conf"), format!("local all all trust\nhostssl all {CERT_USER} 127.0.0.1/32 cert\nhostssl all all 127.0.0.1/32 scram-sha-256\n")).unwrap();
            opts.push_str(" -c ssl=on -c ssl_ca_file=root.crt -c log_connections=on");
        }
        // A parallel test may take the probed port first: then start on another.
        for attempt in 0.. {
            let start = ["-D", &data.to_string_lossy(), "-l", &pg.dir.join("log").to_string_lossy(), "-w", "-t", "60", "-o", &format!("-p {} {opts}", pg.port), "start"].map(String::from);
            let start: Vec<&str> = start.iter().map(String::as_str).collect();
            if attempt == 2 {
                pg.run("pg_ctl", &start);
                break;
            }
            if pg.output("pg_ctl", &start).status.success() {
                break;
            }
            pg.port = free_port();
        }
        pg
    }

    fn output(&self, tool: &str, args: &[&str]) -> std::process::Output {
        let exe = self.bin.join(tool);
        if self.as_postgres {
            Command::new("runuser").args(["-u", "postgres", "--"]).arg(&exe).args(args).output()
        } else {
            Command::new(&exe).args(args).output()
        }
        .unwrap_or_else(|e| panic!("running {}: {e}", exe.display()))
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let out = self.output(tool, args);
        let log = std::fs::read_to_string(self.dir.join("log")).unwrap_or_default();
        assert!(out.status.success(), "{tool} failed: {}\n{}\nserver log:\n{log}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    }

    /// The directory holding the server's Unix socket (`local` connections: trust).
    pub fn socket_dir(&self) -> &Path {
        &self.dir
    }

    /// The server's log (every statement: `log_statement = all`).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }

    /// A url for the superuser; `password` replaces the right one when given.
    pub fn url_with(&self, password: &str) -> String {
        format!("postgres://postgres:{password}@127.0.0.1:{}/postgres", self.port)
    }

    pub fn url(&self) -> String {
        self.url_with(PASSWORD)
    }

    /// Runs SQL with psql (unaligned, tuples only, `|` between fields, NULL as `NULL`);
    /// panics on an error.
    pub fn psql(&self, sql: &str) -> String {
        let out = self.psql_result(sql);
        out.unwrap_or_else(|e| panic!("psql failed on {sql}: {e}"))
    }

    pub fn psql_result(&self, sql: &str) -> Result<String, String> {
        let out = Command::new(self.bin.join("psql"))
            .args(["-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-P", "null=NULL", "-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", "postgres", "-d", "postgres", "-c", sql])
            .env("PGPASSWORD", PASSWORD)
            .output()
            .unwrap();
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim_end().to_string())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// Runs a SQL file with psql.
    pub fn psql_file(&self, file: &Path) {
        let out = Command::new(self.bin.join("psql"))
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", "postgres", "-d", "postgres", "-f"])
            .arg(file)
            .env("PGPASSWORD", PASSWORD)
            .output()
            .unwrap();
        assert!(out.status.success(), "psql -f {} failed: {}", file.display(), String::from_utf8_lossy(&out.stderr));
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let data = self.dir.join("data");
        let exe = self.bin.join("pg_ctl");
        let args = ["-D", &*data.to_string_lossy(), "-m", "immediate", "-w", "stop"].map(String::from);
        let _ = if self.as_postgres {
            Command::new("runuser").args(["-u", "postgres", "--"]).arg(&exe).args(&args).output()
        } else {
            Command::new(&exe).args(&args).output()
        };
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
