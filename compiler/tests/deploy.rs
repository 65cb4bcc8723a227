//! `kiln deploy SPEC --k8s DIR`: the manifests parse, and the fields that matter
//! (replicas, resources, slots, memory limit, the scheduler's address, ports,
//! parameters) come from the spec.

use std::process::Command;

use serde_json::Value;

#[test]
fn deploy_writes_manifests_sized_by_the_spec() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("scoring_job.toml");
    std::fs::write(
        &spec,
        r#"[pipeline]
name = "scoring_job"

[params.output]
default = "s3://bucket/out"
env = "SCORING_OUTPUT"

[runtime]
executors = 3
executor_cores = 5
executor_memory = "10GB"

[sources.people]
format = "inline"
rows = [ { name = "ada" } ]

[sinks.out]
input = "people"
format = "parquet"
path = "${params.output}"
storage_options = { endpoint = "https://minio.internal:9000", secret_access_key = "${env.S3_SECRET}" }
"#,
    )
    .unwrap();
    let out = dir.path().join("k8s");
    let output = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(["deploy", spec.to_str().unwrap(), "--k8s", out.to_str().unwrap(), "--image", "registry.example/scoring:1"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    // The default route says which glibc the binary will need: the image's own.
    assert!(String::from_utf8_lossy(&output.stderr).contains("it needs the image's own glibc 2.41"), "{}", String::from_utf8_lossy(&output.stderr));
    let read = |f: &str| -> Value { serde_json::from_str(&std::fs::read_to_string(out.join(f)).unwrap()).unwrap() };

    let sched = read("scheduler-deployment.yaml");
    assert_eq!(sched["kind"], "Deployment");
    let c = &sched["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["image"], "registry.example/scoring:1");
    assert_eq!(c["args"], serde_json::json!(["scheduler", "--bind", "0.0.0.0:50050", "--external-host", "scoring-job-scheduler"]));

    let svc = read("scheduler-service.yaml");
    assert_eq!((svc["kind"].as_str(), svc["metadata"]["name"].as_str()), (Some("Service"), Some("scoring-job-scheduler")));
    assert_eq!(svc["spec"]["ports"][0]["port"], 50050);
    assert_eq!(svc["spec"]["selector"], sched["spec"]["template"]["metadata"]["labels"]);

    let ex = read("executor-deployment.yaml");
    assert_eq!(ex["spec"]["replicas"], 3);
    let c = &ex["spec"]["template"]["spec"]["containers"][0];
    let args: Vec<&str> = c["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    let arg = |flag: &str| args[args.iter().position(|a| *a == flag).unwrap() + 1];
    assert_eq!(args[0], "executor");
    assert_eq!(arg("--scheduler"), "scoring-job-scheduler:50050");
    assert_eq!(arg("--slots"), "5");
    assert_eq!(arg("--memory-limit"), "8192MB", "80% of 10 GB");
    assert_eq!(arg("--external-host"), "$(POD_IP)");
    assert_eq!(c["resources"]["limits"]["cpu"], "5");
    assert_eq!(c["resources"]["limits"]["memory"], "10240Mi");
    assert_eq!(c["resources"]["requests"], c["resources"]["limits"]);

    let job = read("submit-job.yaml");
    assert_eq!(job["kind"], "Job");
    let c = &job["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["args"], serde_json::json!(["submit", "--scheduler", "scoring-job-scheduler:50050"]));
    assert_eq!(
        c["env"],
        serde_json::json!([
            { "name": "SCORING_OUTPUT", "value": "s3://bucket/out" },
            { "name": "S3_SECRET", "valueFrom": { "secretKeyRef": { "name": "scoring-job-secrets", "key": "S3_SECRET" } } },
            { "name": "KILN_CLUSTER_TOKEN", "valueFrom": { "secretKeyRef": { "name": "scoring-job-cluster-token", "key": "token" } } }
        ])
    );
    // Every pod reads `${env.X}` from the Secret, never a literal, and takes the
    // Secret's other keys (object-store credentials) as variables.
    for (file, role) in [("scheduler-deployment.yaml", "scheduler"), ("executor-deployment.yaml", "executor"), ("submit-job.yaml", "submit")] {
        let c = &read(file)["spec"]["template"]["spec"]["containers"][0];
        let env = c["env"].as_array().unwrap();
        let secret = env.iter().find(|e| e["name"] == "S3_SECRET").unwrap_or_else(|| panic!("{role}: {env:?}"));
        assert_eq!(secret["valueFrom"]["secretKeyRef"]["name"], "scoring-job-secrets", "{role}");
        assert!(secret.get("value").is_none(), "{role}: a literal");
        assert_eq!(c["envFrom"], serde_json::json!([{ "secretRef": { "name": "scoring-job-secrets", "optional": true } }]), "{role}");
        assert!(c.get("volumeMounts").is_none(), "{role}: object-store paths need no volume");
        // The cluster token (SPEC §10) from its own Secret, in every role.
        let token = env.iter().find(|e| e["name"] == "KILN_CLUSTER_TOKEN").unwrap_or_else(|| panic!("{role}: no token: {env:?}"));
        assert_eq!(token["valueFrom"]["secretKeyRef"], serde_json::json!({ "name": "scoring-job-cluster-token", "key": "token" }), "{role}");
    }
    // Only the job's own pods reach its ports.
    let policy = read("network-policy.yaml");
    assert_eq!(policy["kind"], "NetworkPolicy");
    let own = serde_json::json!({ "matchLabels": { "app.kubernetes.io/name": "scoring_job" } });
    assert_eq!(policy["spec"]["podSelector"], own);
    assert_eq!(policy["spec"]["policyTypes"], serde_json::json!(["Ingress"]));
    assert_eq!(policy["spec"]["ingress"], serde_json::json!([{ "from": [{ "podSelector": own }] }]));
    for file in ["scheduler-deployment.yaml", "executor-deployment.yaml", "submit-job.yaml"] {
        let labels = &read(file)["spec"]["template"]["metadata"]["labels"];
        assert_eq!(labels["app.kubernetes.io/name"], "scoring_job", "{file}: its pods must match the policy");
    }

    // By default the binary is built inside the image, on the Debian release it runs on.
    let docker = std::fs::read_to_string(out.join("Dockerfile")).unwrap();
    let spec_arg = spec.to_str().unwrap().trim_start_matches("./");
    assert!(docker.contains("FROM rust:1.95-slim-trixie AS build") && docker.contains("FROM debian:trixie-slim"), "{docker}");
    assert!(docker.contains("cargo install --locked --git \"$KILN_GIT\" ${KILN_REV:+--rev \"$KILN_REV\"} kiln-compiler"), "{docker}");
    assert!(docker.contains("ARG KILN_REV=\n") && docker.contains("git make ca-certificates"), "no rev given: the default branch; make for librdkafka: {docker}");
    assert!(docker.contains(&format!("kiln build --release {spec_arg} && cp target/kiln/scoring_job /scoring_job")), "{docker}");
    assert!(docker.contains("COPY --from=build /scoring_job /usr/local/bin/scoring_job") && docker.contains("ENTRYPOINT [\"/usr/local/bin/scoring_job\"]"), "{docker}");
    // The build context (the repository) leaves out job binaries and the git history.
    let ignore = std::fs::read_to_string(out.join("Dockerfile.dockerignore")).unwrap();
    assert_eq!(ignore.lines().filter(|l| !l.starts_with('#')).collect::<Vec<_>>(), [".git", "**/target"]);

    // With --binary, the Dockerfile copies it in and states the glibc it needs: that of
    // this very `kiln` binary here (a Rust binary linked like the jobs).
    let kiln_bin = env!("CARGO_BIN_EXE_kiln");
    let want = kiln_compiler::deploy::min_glibc(&std::fs::read(kiln_bin).unwrap()).unwrap();
    assert!(want >= (2, 17), "{want:?}");
    let out2 = dir.path().join("k8s-prebuilt");
    let output = Command::new(kiln_bin).args(["deploy", spec.to_str().unwrap(), "--k8s", out2.to_str().unwrap(), "--binary", kiln_bin]).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let stated = format!("needs glibc {}.{} or newer", want.0, want.1);
    assert!(String::from_utf8_lossy(&output.stderr).contains(&stated), "{}", String::from_utf8_lossy(&output.stderr));
    let docker = std::fs::read_to_string(out2.join("Dockerfile")).unwrap();
    assert!(docker.contains(&stated) && docker.contains("COPY scoring_job /usr/local/bin/scoring_job") && !docker.contains("AS build"), "{docker}");
    assert!(!out2.join("Dockerfile.dockerignore").exists(), "a prebuilt binary's context is the directory it is copied to");
}

/// Local paths on a cluster lose output (each pod writes its own disk): deploy
/// refuses them unless every pod mounts one volume (`--shared-volume`).
#[test]
fn deploy_refuses_local_paths_without_a_shared_volume() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("local_job.toml");
    std::fs::write(
        &spec,
        "[pipeline]\nname = \"local_job\"\n\n[sources.people]\nformat = \"inline\"\nrows = [ { name = \"ada\" } ]\n\n[sinks.out]\ninput = \"people\"\nformat = \"parquet\"\npath = \"/data/out\"\n",
    )
    .unwrap();
    let out = dir.path().join("k8s");
    let deploy = |extra: &[&str]| Command::new(env!("CARGO_BIN_EXE_kiln")).args(["deploy", spec.to_str().unwrap(), "--k8s", out.to_str().unwrap()]).args(extra).output().unwrap();
    let refused = deploy(&[]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("sink `out` (/data/out)") && stderr.contains("--shared-volume"), "{stderr}");
    assert!(!out.exists(), "nothing written");

    let ok = deploy(&["--shared-volume", "pipeline-data"]);
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    for file in ["scheduler-deployment.yaml", "executor-deployment.yaml", "submit-job.yaml"] {
        let v: Value = serde_json::from_str(&std::fs::read_to_string(out.join(file)).unwrap()).unwrap();
        let pod = &v["spec"]["template"]["spec"];
        assert_eq!(pod["volumes"], serde_json::json!([{ "name": "shared", "persistentVolumeClaim": { "claimName": "pipeline-data" } }]), "{file}");
        assert_eq!(pod["containers"][0]["volumeMounts"], serde_json::json!([{ "name": "shared", "mountPath": "/data" }]), "{file}");
    }
}

/// `--tls-secret`: the operator's certificate (a `kubernetes.io/tls` Secret) instead of
/// the token, mounted read-only in every pod and passed as the roles' TLS flags.
#[test]
fn deploy_with_a_tls_secret_uses_certificates_instead_of_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("scoring_job.toml");
    std::fs::write(
        &spec,
        "[pipeline]\nname = \"scoring_job\"\n[sources.people]\nformat = \"inline\"\nrows = [ { name = \"ada\" } ]\n[sinks.out]\ninput = \"people\"\nformat = \"parquet\"\npath = \"s3://bucket/out\"\n",
    )
    .unwrap();
    let out = dir.path().join("k8s");
    let run = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(["deploy", spec.to_str().unwrap(), "--k8s", out.to_str().unwrap(), "--tls-secret", "scoring-tls", "--shared-volume", "data"])
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let said = String::from_utf8_lossy(&run.stderr);
    assert!(said.contains("scoring-tls") && said.contains("scoring-job-cluster") && !said.contains("openssl rand"), "{said}");
    let read = |f: &str| -> Value { serde_json::from_str(&std::fs::read_to_string(out.join(f)).unwrap()).unwrap() };
    for (file, role) in [("scheduler-deployment.yaml", "scheduler"), ("executor-deployment.yaml", "executor"), ("submit-job.yaml", "submit")] {
        let pod = &read(file)["spec"]["template"]["spec"];
        let c = &pod["containers"][0];
        let args: Vec<&str> = c["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
        let arg = |flag: &str| args.iter().position(|a| *a == flag).map(|i| args[i + 1]).unwrap_or_else(|| panic!("{role}: no {flag} in {args:?}"));
        assert_eq!(args[0], role);
        assert_eq!(
            (arg("--tls-cert"), arg("--tls-key"), arg("--tls-ca"), arg("--tls-server-name")),
            ("/etc/kiln/tls/tls.crt", "/etc/kiln/tls/tls.key", "/etc/kiln/tls/ca.crt", "scoring-job-cluster"),
            "{role}"
        );
        let env = c["env"].as_array().unwrap();
        assert!(env.iter().all(|e| e["name"] != "KILN_CLUSTER_TOKEN"), "{role}: a token as well: {env:?}");
        assert_eq!(
            c["volumeMounts"],
            serde_json::json!([{ "name": "shared", "mountPath": "/data" }, { "name": "cluster-tls", "mountPath": "/etc/kiln/tls", "readOnly": true }]),
            "{role}"
        );
        assert_eq!(
            pod["volumes"],
            serde_json::json!([
                { "name": "shared", "persistentVolumeClaim": { "claimName": "data" } },
                { "name": "cluster-tls", "secret": { "secretName": "scoring-tls", "defaultMode": 256 } }
            ]),
            "{role}"
        );
    }
}
