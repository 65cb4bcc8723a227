//! `kiln deploy SPEC --k8s DIR`: Kubernetes manifests and a Dockerfile for a
//! pipeline's binary, which is its own Ballista scheduler, executors and client.
//!
//! Sizing comes from the spec's `[runtime]`: `executors` (replicas, default 2),
//! `executor_cores` (default 4; each executor runs that many tasks at once:
//! `--slots`) and `executor_memory` (default "8GB": the container's request and
//! limit; `--memory-limit` gets 80% of it, the rest is for Arrow buffers outside
//! DataFusion's memory pool, network buffers and the binary). Manifests are JSON,
//! which is YAML too: `kubectl apply -f DIR` reads them.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::spec::Spec;

pub const SCHEDULER_PORT: u16 = 50050;
pub const EXECUTOR_PORT: u16 = 50051;

/// What the manifests are made from.
#[derive(Debug, Clone)]
pub struct Sizing {
    pub executors: u64,
    pub cores: u64,
    pub memory_bytes: u64,
}

impl Sizing {
    pub fn from_spec(spec: &Spec) -> Sizing {
        let r = &spec.runtime;
        Sizing {
            executors: r.executors.as_ref().map_or(2, |v| v.value as u64),
            cores: r.executor_cores.as_ref().map_or(4, |v| v.value as u64),
            memory_bytes: r.executor_memory.as_ref().and_then(|v| kiln::session::parse_size(&v.value)).unwrap_or(8 << 30),
        }
    }

    /// What `--memory-limit` gets: 80% of the container's memory.
    pub fn memory_limit(&self) -> u64 {
        self.memory_bytes / 5 * 4
    }
}

fn mib(bytes: u64) -> String {
    format!("{}Mi", bytes / (1 << 20))
}

/// What every pod of the job gets besides its role's arguments.
#[derive(Debug, Clone, Default)]
pub struct Environment {
    /// Parameters passed to the submit Job: (variable, default value).
    pub params: Vec<(String, String)>,
    /// Variables the spec reads as `${env.X}`: each comes from the Secret
    /// `NAME-secrets` (a `secretKeyRef`, never a literal), in every pod.
    pub secrets: Vec<String>,
    /// `--shared-volume CLAIM[:MOUNT]`: a PersistentVolumeClaim mounted in every pod.
    pub shared_volume: Option<(String, String)>,
    /// `--tls-secret SECRET`: the cluster authenticates with the certificate in this
    /// `kubernetes.io/tls` Secret (mounted in every pod) instead of a token.
    pub tls_secret: Option<String>,
}

/// Where a `--tls-secret` is mounted in every pod.
pub const TLS_MOUNT: &str = "/etc/kiln/tls";

/// The one DNS name every node's certificate carries under `--tls-secret`, which
/// clients check (`--tls-server-name`): pods dial executors by IP.
pub fn cluster_tls_name(name: &str) -> String {
    format!("{}-cluster", name.replace('_', "-"))
}

/// The Secret holding the `${env.X}` values and the object-store credentials.
pub fn secret_name(name: &str) -> String {
    format!("{}-secrets", name.replace('_', "-"))
}

/// The Secret holding the cluster's shared token (key `token`, SPEC §10), which
/// every role reads as `KILN_CLUSTER_TOKEN`. Kiln never writes its value.
pub fn token_secret_name(name: &str) -> String {
    format!("{}-cluster-token", name.replace('_', "-"))
}

/// The files to write, by name.
pub fn k8s(name: &str, image: &str, sizing: &Sizing, environment: &Environment) -> Vec<(String, String)> {
    let app = |role: &str| json!({ "app.kubernetes.io/name": name, "app.kubernetes.io/component": role });
    let service = format!("{}-scheduler", name.replace('_', "-"));
    let dns = name.replace('_', "-");
    let scheduler_addr = format!("{service}:{SCHEDULER_PORT}");
    let secret = secret_name(name);
    // Every pod: the spec's `${env.X}` from the Secret, and the Secret's other keys
    // (AWS_*, GOOGLE_*, AZURE_* credentials) as variables, when it exists.
    let secret_env: Vec<Value> =
        environment.secrets.iter().map(|k| json!({ "name": k, "valueFrom": { "secretKeyRef": { "name": secret, "key": k } } })).collect();
    let env_list: Vec<Value> = environment.params.iter().map(|(k, v)| json!({ "name": k, "value": v })).chain(secret_env.iter().cloned()).collect();
    // The cluster token, in every pod: the roles listen on the pod network only behind
    // its TLS gate, and the client presents it (the Secret must exist: no token, no pod).
    let token_env = json!({ "name": "KILN_CLUSTER_TOKEN", "valueFrom": { "secretKeyRef": { "name": token_secret_name(name), "key": "token" } } });
    let container = |role: &str, args: Vec<String>, extra: Value| {
        let mut c = json!({ "name": role, "image": image, "args": args, "envFrom": [{ "secretRef": { "name": secret, "optional": true } }] });
        if let (Some(c), Some(extra)) = (c.as_object_mut(), extra.as_object()) {
            c.extend(extra.clone());
        }
        if let Some((_, mount)) = &environment.shared_volume {
            c["volumeMounts"] = json!([{ "name": "shared", "mountPath": mount }]);
        }
        let mut env = c["env"].as_array().cloned().unwrap_or_default();
        if role != "submit" {
            env.extend(secret_env.iter().cloned());
        }
        match &environment.tls_secret {
            None => env.push(token_env.clone()),
            Some(_) => {
                if let Some(args) = c["args"].as_array_mut() {
                    for (flag, value) in [
                        ("--tls-cert", format!("{TLS_MOUNT}/tls.crt")),
                        ("--tls-key", format!("{TLS_MOUNT}/tls.key")),
                        ("--tls-ca", format!("{TLS_MOUNT}/ca.crt")),
                        ("--tls-server-name", cluster_tls_name(name)),
                    ] {
                        args.push(json!(flag));
                        args.push(json!(value));
                    }
                }
                let mut mounts = c["volumeMounts"].as_array().cloned().unwrap_or_default();
                mounts.push(json!({ "name": "cluster-tls", "mountPath": TLS_MOUNT, "readOnly": true }));
                c["volumeMounts"] = Value::Array(mounts);
            }
        }
        c["env"] = Value::Array(env);
        c
    };
    let volumes = |spec: Value| -> Value {
        let mut spec = spec;
        let mut list = Vec::new();
        if let Some((claim, _)) = &environment.shared_volume {
            list.push(json!({ "name": "shared", "persistentVolumeClaim": { "claimName": claim } }));
        }
        if let Some(secret) = &environment.tls_secret {
            list.push(json!({ "name": "cluster-tls", "secret": { "secretName": secret, "defaultMode": 0o400 } }));
        }
        if !list.is_empty() {
            spec["volumes"] = Value::Array(list);
        }
        spec
    };
    let scheduler = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": { "name": format!("{dns}-scheduler"), "labels": app("scheduler") },
        "spec": {
            "replicas": 1,
            "selector": { "matchLabels": app("scheduler") },
            "template": {
                "metadata": { "labels": app("scheduler") },
                "spec": volumes(json!({ "containers": [container("scheduler", vec!["scheduler".into(), "--bind".into(), format!("0.0.0.0:{SCHEDULER_PORT}"), "--external-host".into(), service.clone()],
                    json!({ "ports": [{ "containerPort": SCHEDULER_PORT, "name": "grpc" }] }))] }))
            }
        }
    });
    let svc = json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": { "name": service, "labels": app("scheduler") },
        "spec": { "selector": app("scheduler"), "ports": [{ "name": "grpc", "port": SCHEDULER_PORT, "targetPort": SCHEDULER_PORT }] }
    });
    let resources = json!({
        "requests": { "cpu": sizing.cores.to_string(), "memory": mib(sizing.memory_bytes) },
        "limits": { "cpu": sizing.cores.to_string(), "memory": mib(sizing.memory_bytes) }
    });
    let executor_args = vec![
        "executor".to_string(),
        "--scheduler".into(),
        scheduler_addr.clone(),
        "--bind".into(),
        format!("0.0.0.0:{EXECUTOR_PORT}"),
        "--external-host".into(),
        "$(POD_IP)".into(),
        "--slots".into(),
        sizing.cores.to_string(),
        "--memory-limit".into(),
        mib(sizing.memory_limit()).replace("Mi", "MB"),
    ];
    let executor = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": { "name": format!("{dns}-executor"), "labels": app("executor") },
        "spec": {
            "replicas": sizing.executors,
            "selector": { "matchLabels": app("executor") },
            "template": {
                "metadata": { "labels": app("executor") },
                "spec": volumes(json!({ "containers": [container("executor", executor_args, json!({
                    "env": [{ "name": "POD_IP", "valueFrom": { "fieldRef": { "fieldPath": "status.podIP" } } }],
                    "ports": [{ "containerPort": EXECUTOR_PORT, "name": "flight" }, { "containerPort": EXECUTOR_PORT + 1, "name": "grpc" }],
                    "resources": resources
                }))] }))
            }
        }
    });
    let job = json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": { "name": format!("{dns}-submit"), "labels": app("submit") },
        "spec": {
            "backoffLimit": 0,
            "template": {
                "metadata": { "labels": app("submit") },
                "spec": volumes(json!({
                    "restartPolicy": "Never",
                    "containers": [container("submit", vec!["submit".into(), "--scheduler".into(), scheduler_addr], json!({ "env": env_list }))]
                }))
            }
        }
    });
    // Only the job's own pods may reach its scheduler and executors (the token
    // still guards every port where the cluster enforces no NetworkPolicy).
    let network_policy = json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": { "name": format!("{dns}-internal"), "labels": { "app.kubernetes.io/name": name } },
        "spec": {
            "podSelector": { "matchLabels": { "app.kubernetes.io/name": name } },
            "policyTypes": ["Ingress"],
            "ingress": [{ "from": [{ "podSelector": { "matchLabels": { "app.kubernetes.io/name": name } } }] }]
        }
    });
    let pretty = |v: &Value| serde_json::to_string_pretty(v).unwrap_or_default() + "\n";
    let dockerfile = format!(
        "# The {name} pipeline's binary: Ballista scheduler, executor and client in one.\n\
         # 1. kiln build SPEC --release        (prints the binary's path; copy it next to this file)\n\
         # 2. docker build -t {image} .\n\
         # The base image needs a glibc at least as new as the build machine's.\n\
         FROM debian:trixie-slim\n\
         RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/*\n\
         COPY {name} /usr/local/bin/{name}\n\
         ENTRYPOINT [\"/usr/local/bin/{name}\"]\n"
    );
    vec![
        ("Dockerfile".into(), dockerfile),
        ("scheduler-deployment.yaml".into(), pretty(&scheduler)),
        ("scheduler-service.yaml".into(), pretty(&svc)),
        ("executor-deployment.yaml".into(), pretty(&executor)),
        ("submit-job.yaml".into(), pretty(&job)),
        ("network-policy.yaml".into(), pretty(&network_policy)),
    ]
}

/// Writes the files into `dir`; returns their paths.
pub fn write(dir: &Path, files: &[(String, String)]) -> Result<Vec<PathBuf>, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    files
        .iter()
        .map(|(name, text)| {
            let p = dir.join(name);
            std::fs::write(&p, text).map_err(|e| format!("cannot write {}: {e}", p.display()))?;
            Ok(p)
        })
        .collect()
}
