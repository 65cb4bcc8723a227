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
    /// How the image gets the binary.
    pub docker: Docker,
}

/// How `kiln deploy`'s Dockerfile gets the job's binary.
#[derive(Debug, Clone)]
pub enum Docker {
    /// Built inside the image (the default): its first stage installs kiln from
    /// `kiln_git` (at `kiln_rev`, when not empty) and builds `spec` (relative to the
    /// build context, the repository's root), so the binary links the glibc of the
    /// image it runs in.
    Build { spec: String, kiln_git: String, kiln_rev: String },
    /// `--binary PATH`: a binary built elsewhere, copied in; the newest glibc
    /// symbol version it needs, when it has one.
    Prebuilt { min_glibc: Option<(u32, u32)> },
}

impl Default for Docker {
    fn default() -> Self {
        Docker::Prebuilt { min_glibc: None }
    }
}

/// glibc of the images the Dockerfiles use (Debian trixie).
pub const IMAGE_GLIBC: (u32, u32) = (2, 41);

/// The newest `GLIBC_2.N` symbol version an ELF binary asks for: the oldest
/// glibc it runs with (`None`: no glibc symbol versions, e.g. a static binary).
/// The version names are strings of the dynamic string table; scanning the
/// bytes for them finds exactly those (a Rust binary holds no other).
pub fn min_glibc(binary: &[u8]) -> Option<(u32, u32)> {
    let needle = b"GLIBC_2.";
    let mut best: Option<(u32, u32)> = None;
    let mut i = 0;
    while let Some(at) = binary[i..].iter().position(|&b| b == b'G') {
        let start = i + at + needle.len();
        if !binary[i + at..].starts_with(needle) {
            i += at + 1;
            continue;
        }
        let minor: String = binary[start..].iter().take_while(|b| b.is_ascii_digit()).map(|&b| b as char).collect();
        let patch_ok = binary.get(start + minor.len()).is_none_or(|&b| b == 0 || b == b'.');
        if let (Ok(m), true) = (minor.parse::<u32>(), patch_ok) {
            best = best.max(Some((2, m)));
        }
        i = start;
    }
    best
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
    let dockerfile = dockerfile(name, image, &environment.docker);
    let mut files = vec![
        ("Dockerfile".into(), dockerfile),
        ("scheduler-deployment.yaml".into(), pretty(&scheduler)),
        ("scheduler-service.yaml".into(), pretty(&svc)),
        ("executor-deployment.yaml".into(), pretty(&executor)),
        ("submit-job.yaml".into(), pretty(&job)),
        ("network-policy.yaml".into(), pretty(&network_policy)),
    ];
    if matches!(environment.docker, Docker::Build { .. }) {
        // The in-image build's context is the repository: BuildKit reads this file
        // beside the Dockerfile, so job binaries, build outputs and the history stay out.
        files.push(("Dockerfile.dockerignore".into(), DOCKERIGNORE.into()));
    }
    files
}

/// What the in-image build leaves out of its context (the repository).
const DOCKERIGNORE: &str = "# Written by kiln deploy: kept out of the image build's context.\n.git\n**/target\n";

/// The Dockerfile: a two-stage build (kiln and the job compiled in a Rust image,
/// the binary copied into a slim one of the same Debian release), or a
/// prebuilt binary copied in, with the glibc it needs stated.
fn dockerfile(name: &str, image: &str, docker: &Docker) -> String {
    let (major, minor) = IMAGE_GLIBC;
    let runtime = format!(
        "FROM debian:trixie-slim\n\
         RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/*\n"
    );
    match docker {
        Docker::Build { spec, kiln_git, kiln_rev } => format!(
            "# The {name} pipeline's image: Ballista scheduler, executor and client in one binary.\n\
             # The binary is built inside the image, so it links the glibc of the image it runs in\n\
             # (Debian trixie, glibc {major}.{minor}) whatever machine runs the build. From the repository's root:\n\
             #   docker build -f path/to/this/Dockerfile -t {image} .\n\
             # The first build compiles Kiln and DataFusion (about 30 minutes on 2 cores); the cache\n\
             # mounts keep them for the next one.\n\
             FROM rust:1.95-slim-trixie AS build\n\
             RUN apt-get update && apt-get install -y --no-install-recommends git make ca-certificates && rm -rf /var/lib/apt/lists/*\n\
             # make: librdkafka (Kafka sources) builds from its bundled sources.\n\
             ARG KILN_GIT={kiln_git}\n\
             # A commit or tag of KILN_GIT; empty: its default branch.\n\
             ARG KILN_REV={kiln_rev}\n\
             RUN --mount=type=cache,target=/usr/local/cargo/registry cargo install --locked --git \"$KILN_GIT\" ${{KILN_REV:+--rev \"$KILN_REV\"}} kiln-compiler\n\
             WORKDIR /src\n\
             COPY . .\n\
             RUN --mount=type=cache,target=/usr/local/cargo/registry --mount=type=cache,target=/root/.cache/kiln \\\n    \
             kiln build --release {spec} && cp target/kiln/{name} /{name}\n\n\
             {runtime}\
             COPY --from=build /{name} /usr/local/bin/{name}\n\
             ENTRYPOINT [\"/usr/local/bin/{name}\"]\n"
        ),
        Docker::Prebuilt { min_glibc } => {
            let needs = match min_glibc {
                Some((a, b)) => format!("# The binary needs glibc {a}.{b} or newer (its newest glibc symbol version); this image has {major}.{minor}.\n"),
                None => "# The binary asks for no glibc symbol version (static): any base image runs it.\n".to_string(),
            };
            format!(
                "# The {name} pipeline's image: Ballista scheduler, executor and client in one binary,\n\
                 # built on this machine (kiln build SPEC --release; copy it next to this file):\n\
                 #   docker build -t {image} .\n\
                 {needs}\
                 {runtime}\
                 COPY {name} /usr/local/bin/{name}\n\
                 ENTRYPOINT [\"/usr/local/bin/{name}\"]\n"
            )
        }
    }
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

#[cfg(test)]
mod glibc_tests {
    use super::min_glibc;

    #[test]
    fn the_newest_glibc_version_is_the_minimum() {
        assert_eq!(min_glibc(b"\0GLIBC_2.2.5\0GLIBC_2.34\0GLIBC_2.17\0GLIBC_PRIVATE\0"), Some((2, 34)));
        assert_eq!(min_glibc(b"no versions here, GLIBC_ alone"), None);
    }
}
