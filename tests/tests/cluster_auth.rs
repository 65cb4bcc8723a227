//! The cluster's shared secret (SPEC §10, issue 16): with a token, every role
//! listens behind a TLS gate that admits only holders of the same token. A job
//! submitted with the token runs (shuffles between executors included) and
//! writes the local run's rows; a client or executor without it, or with
//! another token, is refused and writes nothing; a non-loopback address
//! without a token is refused at start; the token is printed nowhere.

use std::net::{IpAddr, TcpListener, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use kiln_tests::{Procs, build_job, parquet_outputs as outputs, repo_root, spawn_listening};

const TOKEN: &str = "kiln-test-token-7f3a9c1e5b2d4806a1b2c3d4";
const OTHER_TOKEN: &str = "another-token-0a1b2c3d4e5f60718293a4b5c6";


/// This machine's address on its default route, when it has one (a non-loopback
/// address, as a cluster node would use); loopback otherwise. No packet is sent.
fn host_ip() -> IpAddr {
    let probe = || -> Option<IpAddr> {
        let s = UdpSocket::bind("0.0.0.0:0").ok()?;
        s.connect("192.0.2.1:9").ok()?;
        Some(s.local_addr().ok()?.ip())
    };
    probe().filter(|ip| !ip.is_loopback() && !ip.is_unspecified()).unwrap_or(IpAddr::from([127, 0, 0, 1]))
}

fn free_pair(ip: IpAddr) -> u16 {
    loop {
        let p = TcpListener::bind((ip, 0)).unwrap().local_addr().unwrap().port();
        if p < u16::MAX && TcpListener::bind((ip, p + 1)).is_ok() && TcpListener::bind(("0.0.0.0", p)).is_ok() {
            return p;
        }
    }
}

fn params(out: &Path) -> Vec<String> {
    let data = repo_root().join("specs/data");
    ["--param".to_string(), format!("output={}", out.display()), "--param".to_string(), format!("data={}", data.display())].to_vec()
}


fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// A command of the job binary without any token in its environment.
fn job(binary: &Path) -> Command {
    let mut c = Command::new(binary);
    c.env_remove("KILN_CLUSTER_TOKEN").env("KILN_LOG", "info");
    c
}

fn spawn_logged(mut cmd: Command, log: &Path) -> Child {
    let f = std::fs::File::create(log).unwrap();
    cmd.stdout(Stdio::null()).stderr(f).spawn().unwrap()
}

#[test]
fn a_cluster_with_a_token_admits_only_its_own_processes() {
    let binary = build_job("specs/skew_join.toml");
    let ip = host_ip();
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).unwrap();

    // A non-loopback address without a token is refused before anything listens.
    let out = job(&binary).args(["scheduler", "--bind", "0.0.0.0:0"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("--auth-token-file") && text(&out).contains("KILN_CLUSTER_TOKEN"), "{}", text(&out));
    let short = dir.path().join("short");
    std::fs::write(&short, "tooshort").unwrap();
    let out = job(&binary).args(["scheduler", "--auth-token-file"]).arg(&short).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("at least 32") && !text(&out).contains("tooshort\n"), "{}", text(&out));
    // A wildcard address needs the name executors call the scheduler back at.
    let out = job(&binary).env("KILN_CLUSTER_TOKEN", TOKEN).args(["scheduler", "--bind", "0.0.0.0:50999"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("--external-host"), "{}", text(&out));

    // The scheduler on every interface (the token from a file); executors on this
    // machine's address (the token from the environment), as pods would be.
    let (scheduler, sched) = spawn_listening(ip, 1, |sched| {
        let mut c = job(&binary);
        c.args(["scheduler", "--bind", &format!("0.0.0.0:{sched}"), "--external-host", &ip.to_string(), "--auth-token-file"]).arg(&token_file);
        spawn_logged(c, &logs.join("scheduler.log"))
    });
    let mut procs = Procs(vec![scheduler]);
    for i in 0..2 {
        let (child, _) = spawn_listening(ip, 2, |port| {
            let mut c = job(&binary);
            c.env("KILN_CLUSTER_TOKEN", TOKEN)
                .args(["executor", "--scheduler", &format!("{ip}:{sched}"), "--bind", &format!("{ip}:{port}"), "--slots", "1"]);
            spawn_logged(c, &logs.join(format!("executor{i}.log")))
        });
        procs.0.push(child);
    }
    let scheduler_addr = format!("{ip}:{sched}");

    let local = tempfile::tempdir().unwrap();
    let out = job(&binary).arg("run").args(params(local.path())).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let expected = outputs(local.path());
    assert!(!expected.is_empty());

    // With the token: the job runs on the two executors and writes the local rows.
    let remote = tempfile::tempdir().unwrap();
    let metrics = local.path().join("metrics.json");
    let out = job(&binary).env("KILN_CLUSTER_TOKEN", TOKEN).args(["submit", "--scheduler", &scheduler_addr, "--metrics", metrics.to_str().unwrap()]).args(params(remote.path())).output().unwrap();
    assert!(out.status.success(), "submit with the token: {}", text(&out));
    assert_eq!(outputs(remote.path()), expected, "the authenticated cluster's output differs from the local run's");
    // The scheduler's job status (`--metrics` on a cluster) comes through the gate too.
    let metrics: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&metrics).unwrap()).unwrap();
    assert_eq!(metrics["cluster_jobs"][0]["status"], "successful", "{metrics:#}");
    assert!(metrics["nodes"].as_object().is_some_and(|n| !n.is_empty()), "{metrics:#}");

    // Without a token, and with another one: refused, nothing written.
    for (what, token, says) in [("no token", None, "--auth-token-file"), ("a wrong token", Some(OTHER_TOKEN), "token differs from the cluster's")] {
        let refused = tempfile::tempdir().unwrap();
        let target = refused.path().join("out");
        let mut c = job(&binary);
        if let Some(t) = token {
            c.env("KILN_CLUSTER_TOKEN", t);
        }
        let out = c.args(["submit", "--scheduler", &scheduler_addr]).args(params(&target)).output().unwrap();
        assert!(!out.status.success(), "a client with {what} was served: {}", text(&out));
        assert!(!target.exists() || std::fs::read_dir(&target).unwrap().next().is_none(), "a refused client with {what} wrote output");
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        let error = stderr.lines().find(|l| l.starts_with("error:")).unwrap_or_else(|| panic!("no error line: {stderr}"));
        assert!(error.contains(&format!("cannot talk to the scheduler at {scheduler_addr}")) && says.split('|').any(|s| error.contains(s)), "{what}: {error}");
        assert!(!text(&out).contains(OTHER_TOKEN), "the token was printed");
    }

    // An executor with another token cannot join: it exits with an error.
    let port = free_pair(ip);
    let mut intruder = job(&binary)
        .env("KILN_CLUSTER_TOKEN", OTHER_TOKEN)
        .args(["executor", "--scheduler", &scheduler_addr, "--bind", &format!("{ip}:{port}"), "--slots", "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(s) = intruder.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > Duration::from_secs(60) {
            let _ = intruder.kill();
            panic!("an executor with a wrong token kept running");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(!status.success());

    // The cluster still serves its own client after the refusals.
    let again = tempfile::tempdir().unwrap();
    let out = job(&binary).env("KILN_CLUSTER_TOKEN", TOKEN).args(["submit", "--scheduler", &scheduler_addr]).args(params(again.path())).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(outputs(again.path()), expected);

    // The servers logged the refusals, and no log holds the token.
    drop(procs);
    let mut all = String::new();
    for entry in std::fs::read_dir(&logs).unwrap() {
        all.push_str(&std::fs::read_to_string(entry.unwrap().path()).unwrap());
    }
    assert!(all.contains("refused a TLS connection from") && all.contains("another cluster token?"), "the intruder's refusal was not logged:\n{all}");
    assert!(!all.contains(TOKEN) && !all.contains(OTHER_TOKEN), "a token was logged");
}

/// A raw connection that speaks plain gRPC (HTTP/2) to a gated port gets no answer.
#[test]
fn a_plain_text_client_gets_nothing_from_a_gated_port() {
    use std::io::{Read, Write};
    let binary = build_job("specs/etl.toml");
    let ip = IpAddr::from([127, 0, 0, 1]);
    let dir = tempfile::tempdir().unwrap();
    let (child, port) = spawn_listening(ip, 1, |port| {
        let mut c = job(&binary);
        c.env("KILN_CLUSTER_TOKEN", TOKEN).args(["scheduler", "--bind", &format!("127.0.0.1:{port}")]);
        spawn_logged(c, &dir.path().join("scheduler.log"))
    });
    let _procs = Procs(vec![child]);
    let mut s = std::net::TcpStream::connect((ip, port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00").unwrap();
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0, "a plain-text client got {n} bytes back: {:?}", &buf[..n]);
}

/// A CA (PEM) and a node certificate + key it signs for `names`, in `dir`.
fn issue(dir: &Path, names: &[String]) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose};
    std::fs::create_dir_all(dir).unwrap();
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.distinguished_name.push(DnType::CommonName, format!("operators' CA {}", dir.display()));
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let mut node = CertificateParams::new(names.to_vec()).unwrap();
    node.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    let cert = node.signed_by(&key, &issuer).unwrap();
    let paths = (dir.join("ca.pem"), dir.join("node.pem"), dir.join("node.key"));
    std::fs::write(&paths.0, ca_cert.pem()).unwrap();
    std::fs::write(&paths.1, cert.pem()).unwrap();
    std::fs::write(&paths.2, key.serialize_pem()).unwrap();
    paths
}

fn tls_flags((ca, cert, key): &(std::path::PathBuf, std::path::PathBuf, std::path::PathBuf)) -> Vec<std::ffi::OsString> {
    vec!["--tls-cert".into(), cert.into(), "--tls-key".into(), key.into(), "--tls-ca".into(), ca.into()]
}

#[test]
fn a_cluster_with_the_operators_certificates_admits_only_their_holders() {
    let binary = build_job("specs/skew_join.toml");
    let ip = host_ip();
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    // The cluster's CA signs one certificate for this machine's address; another CA
    // signs an intruder's certificate for the same names.
    let names = vec![ip.to_string(), "localhost".to_string()];
    let ours = issue(&dir.path().join("ours"), &names);
    let theirs = issue(&dir.path().join("theirs"), &names);

    // Bad flags are refused before anything listens: a key without a certificate,
    // a certificate its --tls-ca did not sign, a token and certificates together.
    let out = job(&binary).args(["scheduler", "--tls-key"]).arg(&ours.2).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("--tls-cert"), "{}", text(&out));
    let out = job(&binary).arg("scheduler").args(["--tls-cert".into(), ours.1.clone().into_os_string(), "--tls-key".into(), ours.2.clone().into(), "--tls-ca".into(), theirs.0.clone().into()]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("is not accepted under --tls-ca"), "{}", text(&out));
    let out = job(&binary).env("KILN_CLUSTER_TOKEN", TOKEN).arg("scheduler").args(tls_flags(&ours)).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("one or the other"), "{}", text(&out));

    // The scheduler on every interface, two executors on this machine's address.
    let (scheduler, sched) = spawn_listening(ip, 1, |sched| {
        let mut c = job(&binary);
        c.args(["scheduler", "--bind", &format!("0.0.0.0:{sched}"), "--external-host", &ip.to_string()]).args(tls_flags(&ours));
        spawn_logged(c, &logs.join("scheduler.log"))
    });
    let mut procs = Procs(vec![scheduler]);
    for i in 0..2 {
        let (child, _) = spawn_listening(ip, 2, |port| {
            let mut c = job(&binary);
            c.args(["executor", "--scheduler", &format!("{ip}:{sched}"), "--bind", &format!("{ip}:{port}"), "--slots", "1"]).args(tls_flags(&ours));
            spawn_logged(c, &logs.join(format!("executor{i}.log")))
        });
        procs.0.push(child);
    }
    let scheduler_addr = format!("{ip}:{sched}");
    let local = tempfile::tempdir().unwrap();
    let out = job(&binary).arg("run").args(params(local.path())).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let expected = outputs(local.path());
    assert!(!expected.is_empty());

    // A client with the cluster's certificate: the job runs (shuffles between the two
    // executors over TLS too) and writes the local run's rows.
    let remote = tempfile::tempdir().unwrap();
    let out = job(&binary).args(["submit", "--scheduler", &scheduler_addr]).args(tls_flags(&ours)).args(params(remote.path())).output().unwrap();
    assert!(out.status.success(), "submit with the certificates: {}", text(&out));
    assert_eq!(outputs(remote.path()), expected, "the cluster's output differs from the local run's");

    // Refused, nothing written: no certificate, a certificate of another CA (the
    // client also refuses the scheduler's), and the token instead of certificates.
    // An intruder trusting both CAs gets past its own check and trusts the scheduler;
    // the scheduler's gate refuses its certificate.
    let both = dir.path().join("both-cas.pem");
    std::fs::write(&both, std::fs::read_to_string(&ours.0).unwrap() + &std::fs::read_to_string(&theirs.0).unwrap()).unwrap();
    let other_ca_only = (both, theirs.1.clone(), theirs.2.clone());
    let cases: Vec<(&str, Vec<std::ffi::OsString>, Option<&str>, &str)> = vec![
        ("no certificate", vec![], None, "--tls-cert/--tls-key/--tls-ca"),
        ("another CA's certificate", tls_flags(&theirs), None, "the TLS handshake failed"),
        // The gate refuses the certificate after the client finished its side of the TLS 1.3
        // handshake: the client sees the alert, the connection closed, or (under load) its
        // own timeout. The gate's log says why (checked below).
        ("another CA's certificate, trusting both CAs", tls_flags(&other_ca_only), None, "does not accept this client's certificate|Timeout expired"),
        ("a token", vec![], Some(TOKEN), "token differs from the cluster's"),
    ];
    for (what, flags, token, says) in cases {
        let refused = tempfile::tempdir().unwrap();
        let target = refused.path().join("out");
        let mut c = job(&binary);
        if let Some(t) = token {
            c.env("KILN_CLUSTER_TOKEN", t);
        }
        let out = c.args(["submit", "--scheduler", &scheduler_addr]).args(flags).args(params(&target)).output().unwrap();
        assert!(!out.status.success(), "a client with {what} was served: {}", text(&out));
        assert!(!target.exists() || std::fs::read_dir(&target).unwrap().next().is_none(), "a refused client with {what} wrote output");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let error = stderr.lines().find(|l| l.starts_with("error:")).unwrap_or_else(|| panic!("no error line: {stderr}"));
        assert!(error.contains(&format!("cannot talk to the scheduler at {scheduler_addr}")) && says.split('|').any(|s| error.contains(s)), "{what}: {error}");
    }

    // A server name its own certificate does not carry is refused at start; the one it carries works.
    let out = job(&binary)
        .args(["submit", "--scheduler", &scheduler_addr, "--tls-server-name", "kiln.example"])
        .args(tls_flags(&ours))
        .args(params(&dir.path().join("named")))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("does not carry --tls-server-name kiln.example"), "{}", text(&out));
    let named = tempfile::tempdir().unwrap();
    let out = job(&binary).args(["submit", "--scheduler", &scheduler_addr, "--tls-server-name", "localhost"]).args(tls_flags(&ours)).args(params(named.path())).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(outputs(named.path()), expected);

    drop(procs);
    let mut all = String::new();
    for entry in std::fs::read_dir(&logs).unwrap() {
        all.push_str(&std::fs::read_to_string(entry.unwrap().path()).unwrap());
    }
    assert!(all.contains("refused a TLS connection from") && all.contains("a certificate the cluster's CA did not sign?"), "the refusals were not logged:\n{all}");
}

/// `--tls-server-name`: every node's certificate carries one name, and the gates
/// refuse a certificate the same CA signed for another workload.
#[test]
fn with_a_server_name_the_gate_refuses_the_cas_other_certificates() {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
    let binary = build_job("specs/skew_join.toml");
    let dir = tempfile::tempdir().unwrap();
    // One CA; the cluster's certificate (kiln-node, and 127.0.0.1 so that a client
    // without --tls-server-name accepts the scheduler), and a billing service's.
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.distinguished_name.push(DnType::CommonName, "shared issuer");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    std::fs::write(dir.path().join("ca.pem"), ca_cert.pem()).unwrap();
    for (file, names) in [("node", vec!["kiln-node".to_string(), "127.0.0.1".to_string()]), ("billing", vec!["billing".to_string()])] {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(names).unwrap().signed_by(&key, &issuer).unwrap();
        std::fs::write(dir.path().join(format!("{file}.pem")), cert.pem()).unwrap();
        std::fs::write(dir.path().join(format!("{file}.key")), key.serialize_pem()).unwrap();
    }
    let flags = |who: &str, name: Option<&str>| {
        let mut f: Vec<std::ffi::OsString> = vec!["--tls-cert".into(), dir.path().join(format!("{who}.pem")).into(), "--tls-key".into(), dir.path().join(format!("{who}.key")).into(), "--tls-ca".into(), dir.path().join("ca.pem").into()];
        if let Some(n) = name {
            f.extend(["--tls-server-name".into(), n.into()]);
        }
        f
    };
    // A certificate without the name is refused at start.
    let out = job(&binary).arg("scheduler").args(flags("billing", Some("kiln-node"))).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("does not carry --tls-server-name kiln-node"), "{}", text(&out));

    let ip = IpAddr::from([127, 0, 0, 1]);
    let (scheduler, sched) = spawn_listening(ip, 1, |sched| {
        let mut c = job(&binary);
        c.args(["scheduler", "--bind", &format!("127.0.0.1:{sched}")]).args(flags("node", Some("kiln-node")));
        spawn_logged(c, &dir.path().join("scheduler.log"))
    });
    let mut procs = Procs(vec![scheduler]);
    let (child, _) = spawn_listening(ip, 2, |port| {
        let mut c = job(&binary);
        c.args(["executor", "--scheduler", &format!("127.0.0.1:{sched}"), "--bind", &format!("127.0.0.1:{port}"), "--slots", "2"]).args(flags("node", Some("kiln-node")));
        spawn_logged(c, &dir.path().join("executor.log"))
    });
    procs.0.push(child);
    let addr = format!("127.0.0.1:{sched}");

    // The cluster's own client runs the job.
    let local = tempfile::tempdir().unwrap();
    let out = job(&binary).arg("run").args(params(local.path())).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let remote = tempfile::tempdir().unwrap();
    let out = job(&binary).args(["submit", "--scheduler", &addr]).args(flags("node", Some("kiln-node"))).args(params(remote.path())).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(outputs(remote.path()), outputs(local.path()));

    // The billing service's certificate, from the same CA: the scheduler's gate refuses it.
    let refused = tempfile::tempdir().unwrap();
    let target = refused.path().join("out");
    let out = job(&binary).args(["submit", "--scheduler", &addr]).args(flags("billing", None)).args(params(&target)).output().unwrap();
    assert!(!out.status.success(), "the CA's other certificate was served: {}", text(&out));
    // (The alert, the closed connection or, under load, a timeout: see the test above.)
    assert!(["does not accept this client's certificate", "Timeout expired"].iter().any(|s| text(&out).contains(s)), "{}", text(&out));
    assert!(!target.exists() || std::fs::read_dir(&target).unwrap().next().is_none());
    drop(procs);
    let log = std::fs::read_to_string(dir.path().join("scheduler.log")).unwrap();
    assert!(log.contains("refused a TLS connection") && log.contains("not valid for name \"kiln-node\""), "{log}");
}
