//! Pod manifests: YAML in, a validated [`PodSpec`] out.
//!
//! This is the only module that knows YAML. `raw` holds the serde types (the
//! boundary); `convert` turns them into the model below by hand; `validate`
//! checks the model as the API server would, for manifests and for pods built
//! in code alike. The module does no IO beyond reading the manifest file:
//! image paths and hostPaths are checked later, by `image` and `volume`.

mod annotations;
mod bounds;
mod convert;
mod egress;
mod objects;
pub(crate) mod quantity;
mod raw;
mod validate;
mod workload;

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use annotations::{
    DESCRIPTOR_ANNOTATION, EGRESS_ANNOTATION, HTTP_CONCURRENCY_ANNOTATION, MEMORY_ANNOTATION,
};
pub use bounds::{MAX_MANIFEST_BYTES, MAX_NESTING_DEPTH};
pub use egress::{EgressPolicy, EgressRule, EgressRuleError, HostRule};
pub use validate::Problem;

/// A validated Pod: what wpod runs. Build one from YAML with
/// [`PodSpec::from_yaml_file`] / [`PodSpec::from_yaml_str`], or in code with
/// [`PodSpec::builder`].
///
/// # Examples
///
/// ```
/// let pods = wpod::PodSpec::from_yaml_str(
///     "apiVersion: v1\nkind: Pod\nmetadata: {name: demo}\nspec:\n  containers:\n  - {name: app, image: app.wasm}\n",
///     "demo.yaml",
/// )?;
/// assert_eq!(pods[0].name, "demo");
/// assert_eq!(pods[0].containers[0].image, "app.wasm");
/// # Ok::<(), wpod::ManifestError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct PodSpec {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.namespace`, `default` when absent.
    pub namespace: String,
    /// `metadata.uid`: as written (a pod read back from a cluster), else a
    /// random UUID made when the pod is read or built, as the API server
    /// makes one.
    pub uid: String,
    pub labels: BTreeMap<String, String>,
    /// `metadata.annotations` as written. Those wpod reads are parsed into
    /// the typed fields below when the pod is read or built, and checked by
    /// [`PodSpec::validate`]; the typed fields are what wpod applies.
    pub annotations: BTreeMap<String, String>,
    /// Where the pod's containers may connect outside the pod: the
    /// [`EGRESS_ANNOTATION`] (`wpod.dev/egress`); empty, nowhere.
    pub egress: EgressPolicy,
    /// The pod's memory ceiling behind the OS wall, in bytes: the
    /// [`MEMORY_ANNOTATION`] (`wpod.dev/memory-limit`).
    pub memory_limit: Option<u64>,
    /// How many WASI resources each container may hold at once: the
    /// [`DESCRIPTOR_ANNOTATION`] (`wpod.dev/descriptor-limit`); `None`,
    /// wpod's default.
    pub descriptor_limit: Option<usize>,
    /// How many requests each HTTP container serves at once: the
    /// [`HTTP_CONCURRENCY_ANNOTATION`] (`wpod.dev/http-concurrency`); `None`,
    /// wpod's default (`DEFAULT_HTTP_CONCURRENCY`).
    pub http_concurrency: Option<usize>,
    /// `spec.initContainers`, run one at a time, in order, each to completion.
    pub init_containers: Vec<ContainerSpec>,
    /// `spec.containers`, run together once every init container succeeded.
    pub containers: Vec<ContainerSpec>,
    pub volumes: Vec<VolumeSpec>,
    pub restart_policy: RestartPolicy,
    /// `spec.hostname`, else the pod's name.
    pub hostname: String,
    /// `spec.hostNetwork`: the pod uses the host's network directly.
    pub host_network: bool,
    /// `spec.dnsPolicy` and `spec.dnsConfig`: where the pod's names are
    /// resolved.
    pub dns: Dns,
    /// `spec.hostAliases`: names the pod resolves to these addresses
    /// before anything else (its `/etc/hosts` behind the OS wall, and
    /// outgoing HTTP everywhere).
    pub host_aliases: Vec<HostAlias>,
    /// `spec.terminationGracePeriodSeconds` (default 30 s).
    pub termination_grace_period: Duration,
    /// `spec.activeDeadlineSeconds`: how long the pod may be active before
    /// it is stopped and fails with reason `DeadlineExceeded`.
    pub active_deadline: Option<Duration>,
    /// The folder that relative image paths are resolved against: the
    /// manifest's folder, or the current directory for pods built in code.
    pub base_dir: PathBuf,
    /// Set when this is a Job (`kind: Job`): the Job read as its pod
    /// template, named after the Job. It is not run as a pod: the run
    /// makes the Job's pods of it, as the Job controller does.
    pub job: Option<JobSpec>,
}

/// A Job (`kind: Job`), as the Job controller runs it: pods made from its
/// template, at most `parallelism` at once, until `completions` of them
/// succeeded (the Job is `Complete`), or more than `backoff_limit` failed,
/// or `active_deadline` passed (the Job `Failed`). Without `completions`,
/// a work queue: the Job is complete once one pod succeeded and the rest
/// ended.
#[derive(Debug, Clone, PartialEq)]
pub struct JobSpec {
    /// `spec.completions`.
    pub completions: Option<u32>,
    /// `spec.parallelism` (default 1).
    pub parallelism: u32,
    /// `spec.backoffLimit` (default 6): with `restartPolicy: Never`, the
    /// pods that may fail; with `OnFailure`, the restarts of their
    /// containers, in all.
    pub backoff_limit: u32,
    /// `spec.activeDeadlineSeconds`, from the Job's start.
    pub active_deadline: Option<Duration>,
    /// `completionMode: Indexed`: each pod has its index (0 to
    /// completions - 1) in `JOB_COMPLETION_INDEX` and the annotation
    /// `batch.kubernetes.io/job-completion-index`.
    pub indexed: bool,
    pub(crate) template: convert::Template,
}

/// How a pod resolves names: `spec.dnsPolicy` and `spec.dnsConfig`.
///
/// wpod has no cluster DNS, so `ClusterFirst` (the default) and
/// `ClusterFirstWithHostNet` resolve as `Default` does, as the kubelet does
/// where no cluster DNS is configured: with the host's resolver
/// configuration, to which `dnsConfig` adds. `None` uses `dnsConfig` alone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dns {
    /// `dnsPolicy: None`: the host's resolver configuration is not used.
    pub policy_none: bool,
    /// `dnsConfig.nameservers`.
    pub nameservers: Vec<std::net::IpAddr>,
    /// `dnsConfig.searches`.
    pub searches: Vec<String>,
    /// `dnsConfig.options`: name and optional value (`ndots`, `2`).
    pub options: Vec<(String, Option<String>)>,
}

/// One of `spec.hostAliases`: `hostnames` resolve to `ip` in the pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostAlias {
    pub ip: IpAddr,
    pub hostnames: Vec<String>,
}

impl HostAlias {
    /// The address `host` has in `aliases`, if it has one.
    pub fn lookup(aliases: &[HostAlias], host: &str) -> Option<IpAddr> {
        aliases
            .iter()
            .find(|alias| {
                alias
                    .hostnames
                    .iter()
                    .any(|name| name.eq_ignore_ascii_case(host))
            })
            .map(|alias| alias.ip)
    }

    /// `aliases` as lines of `/etc/hosts`, as the kubelet adds them.
    pub fn hosts_lines(aliases: &[HostAlias]) -> String {
        let mut text = String::from("\n# Entries added by HostAliases.\n");
        for alias in aliases {
            text.push_str(&format!("{}\t{}\n", alias.ip, alias.hostnames.join("\t")));
        }
        text
    }
}

/// One container of a pod (`spec.containers[]` or `spec.initContainers[]`).
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerSpec {
    pub name: String,
    /// A path to a `.wasm` file (absolute or relative to the manifest) or an
    /// image reference (`name[:tag]`) looked up in the image path.
    pub image: String,
    /// Replaces the image's entrypoint (Kubernetes' `command`).
    pub command: Option<Vec<String>>,
    /// Replaces the image's default arguments (Kubernetes' `args`).
    pub args: Option<Vec<String>>,
    /// `env[]` in order, values not yet expanded (`$(VAR)` is expanded when the
    /// container starts, as the kubelet does).
    pub env: Vec<EnvVar>,
    pub working_dir: Option<String>,
    pub volume_mounts: Vec<VolumeMount>,
    pub ports: Vec<PortSpec>,
    pub resources: Resources,
    /// `imagePullPolicy`, for an image from a registry; `None`, the
    /// kubelet's default (see [`ContainerSpec::pull_policy`]).
    pub image_pull_policy: Option<PullPolicy>,
    /// `startupProbe`: until it succeeds, the other probes wait; past its
    /// failure threshold the container is restarted.
    pub startup_probe: Option<Probe>,
    /// `readinessProbe`: the container's `ready`.
    pub readiness_probe: Option<Probe>,
    /// `livenessProbe`: past its failure threshold the container is
    /// restarted (as `restartPolicy` allows).
    pub liveness_probe: Option<Probe>,
    /// `restartPolicy: Always` on an init container: a native sidecar,
    /// started in order with the init containers, kept running beside the
    /// app containers (restarted whenever it ends) and stopped after them.
    pub sidecar: bool,
    /// `lifecycle.postStart`: run as the container starts; if it fails, the
    /// container is stopped and restarts as its policy says.
    pub post_start: Option<Hook>,
    /// `lifecycle.preStop`: run when the container is asked to end, before
    /// it is told (`/run/wpod/terminating`), within the grace period.
    pub pre_stop: Option<Hook>,
    /// `stdin: true`: the container reads the terminal's input when the run
    /// attaches it (`wpod run -i`); otherwise its stdin is empty.
    pub stdin: bool,
    /// `stdinOnce`: only the container's first run reads it; after a
    /// restart its stdin is empty.
    pub stdin_once: bool,
    /// Why the container cannot start, if it cannot: a ConfigMap, Secret or
    /// key it needs that is not there and not optional (the kubelet's
    /// `CreateContainerConfigError`).
    pub config_error: Option<String>,
}

/// An `httpGet` action (a probe's or a hook's): `GET path` on the pod's
/// own `port` (its localhost), with `headers` added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpGet {
    pub path: String,
    pub port: u16,
    pub headers: Vec<(String, String)>,
}

/// A lifecycle hook's action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hook {
    /// Runs `command` from the container's image in the container.
    Exec { command: Vec<String> },
    /// `GET path` to the pod's port, as a probe does.
    HttpGet(HttpGet),
    /// Waits.
    Sleep(Duration),
}

/// A probe, as the kubelet runs it: the action every `period` (the first
/// after `initial_delay`), each with `timeout`; `success_threshold`
/// successes in a row make it pass, `failure_threshold` failures in a row
/// make it fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    pub action: ProbeAction,
    pub initial_delay: Duration,
    pub period: Duration,
    pub timeout: Duration,
    pub success_threshold: u32,
    pub failure_threshold: u32,
    /// `terminationGracePeriodSeconds` of a liveness or startup probe: the
    /// grace a container it stops gets, instead of the pod's.
    pub termination_grace_period: Option<Duration>,
}

impl Probe {
    /// `action` with the kubelet's defaults: no initial delay, every 10 s,
    /// 1 s timeout, 1 success, 3 failures.
    pub fn new(action: ProbeAction) -> Probe {
        Probe {
            action,
            initial_delay: Duration::ZERO,
            period: Duration::from_secs(10),
            timeout: Duration::from_secs(1),
            success_threshold: 1,
            failure_threshold: 3,
            termination_grace_period: None,
        }
    }
}

/// What a probe does. Ports are the pod's own (its localhost), named ports
/// already resolved against the container's `ports`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeAction {
    /// Runs `command` as a Wasm program from the container's image, in the
    /// container (as `wpod exec`); exit status 0 passes.
    Exec { command: Vec<String> },
    /// `GET path` over HTTP/1.1 to the pod's port; a status from 200 to 399
    /// passes.
    HttpGet(HttpGet),
    /// A TCP connection to the pod's port opens.
    TcpSocket { port: u16 },
    /// The gRPC health service on the pod's port answers `SERVING` for
    /// `service` (`""`: the server as a whole).
    Grpc { port: u16, service: String },
}

/// When an image from a registry is pulled (`imagePullPolicy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullPolicy {
    /// At every start of the pod.
    Always,
    /// Only when the store lacks it.
    IfNotPresent,
    /// Never: the store must have it (offline use).
    Never,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvVar {
    pub name: String,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeMount {
    /// The name of a volume in [`PodSpec::volumes`].
    pub name: String,
    /// Absolute path inside the container.
    pub mount_path: String,
    pub read_only: bool,
    /// A relative path inside the volume to mount instead of its root.
    pub sub_path: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortSpec {
    pub name: Option<String>,
    pub container_port: u16,
    pub host_port: Option<u16>,
    /// Where a hostPort is published; all addresses when `None`.
    pub host_ip: Option<IpAddr>,
    pub protocol: Protocol,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Protocol {
    Tcp,
    Udp,
}

/// `resources`: limits and requests in bytes and millicores.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Resources {
    /// `limits.memory`: the cap on all of the container's Wasm memories.
    pub memory_limit: Option<u64>,
    /// `limits.cpu` in millicores, enforced by the OS wall's cgroup.
    pub cpu_limit_millis: Option<u64>,
    pub memory_request: Option<u64>,
    pub cpu_request_millis: Option<u64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct VolumeSpec {
    pub name: String,
    pub source: VolumeSource,
}

#[derive(Debug, Clone, PartialEq)]
pub enum VolumeSource {
    /// A fresh directory per pod, removed when the pod ends.
    EmptyDir {
        /// `medium: Memory` (tmpfs under the OS wall).
        memory: bool,
        size_limit: Option<u64>,
    },
    /// A directory or file of the host.
    HostPath { path: PathBuf, kind: HostPathType },
    /// Files made for the pod from a ConfigMap or a Secret (`configMap`,
    /// `secret`): read-only in every container, as in Kubernetes. `missing`
    /// names the object or key that could not be had (not optional): the
    /// containers that mount it cannot start (`CreateContainerConfigError`).
    Files {
        files: Vec<VolumeFile>,
        missing: Option<String>,
    },
}

/// One file of a [`VolumeSource::Files`] volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeFile {
    /// Relative to the volume's root (`items[].path`, else the key).
    pub path: String,
    pub content: Vec<u8>,
    /// `mode`, else `defaultMode` (0644).
    pub mode: u32,
}

/// `hostPath.type`. Kinds WASI cannot express (sockets, devices) are refused
/// when the manifest is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostPathType {
    /// `""`: no check.
    Unchecked,
    Directory,
    DirectoryOrCreate,
    File,
    FileOrCreate,
}

/// `spec.restartPolicy`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RestartPolicy {
    #[default]
    Always,
    OnFailure,
    Never,
}

impl fmt::Display for RestartPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RestartPolicy::Always => "Always",
            RestartPolicy::OnFailure => "OnFailure",
            RestartPolicy::Never => "Never",
        })
    }
}

/// How a manifest is read, beyond its own text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadOptions {
    /// Files of ConfigMaps and Secrets that the manifest's pods may refer
    /// to (`--configmap`, as podman's), read before the manifest; the
    /// manifest's own objects of the same name win.
    pub config_files: Vec<PathBuf>,
    /// `--strict`: what would be skipped with a warning (a Service, an
    /// Ingress ...) is an error.
    pub strict: bool,
}

/// The text of a manifest file: at most [`MAX_MANIFEST_BYTES`], UTF-8.
fn read_text(path: &Path) -> Result<String, ManifestError> {
    use std::io::Read as _;
    let read_error = |source| ManifestError::Read {
        file: path.to_owned(),
        source,
    };
    // One byte past the limit tells a file that is too large, without
    // reading it whole.
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|file| {
            file.take(MAX_MANIFEST_BYTES as u64 + 1)
                .read_to_end(&mut bytes)
        })
        .map_err(read_error)?;
    if bytes.len() > MAX_MANIFEST_BYTES {
        return Err(ManifestError::TooLarge {
            file: path.to_owned(),
            limit: MAX_MANIFEST_BYTES,
        });
    }
    String::from_utf8(bytes)
        .map_err(|error| read_error(std::io::Error::new(std::io::ErrorKind::InvalidData, error)))
}

/// A manifest that could not be read or is not a valid Pod.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("{}: cannot read the manifest: {source}", file.display())]
    Read {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The manifest holds more than [`MAX_MANIFEST_BYTES`]; it was not parsed.
    #[error("{}: the manifest is larger than {limit} bytes (4 MiB), the most wpod reads; split its pods into several files", file.display())]
    TooLarge { file: PathBuf, limit: usize },
    /// The manifest nests deeper than [`MAX_NESTING_DEPTH`] at `line`; it was
    /// not parsed.
    #[error("{}:{line}: the manifest nests deeper than {limit} levels, the most wpod reads (a Pod nests fewer than 20); look for a bracket left open, or flatten the YAML", file.display())]
    TooDeep {
        file: PathBuf,
        line: usize,
        limit: usize,
    },
    #[error("{}{}: YAML syntax error: {message}", file.display(), location.map(|(l, c)| format!(":{l}:{c}")).unwrap_or_default())]
    Syntax {
        file: PathBuf,
        /// Line and column, 1-based, where the parser stopped.
        location: Option<(usize, usize)>,
        message: String,
    },
    /// The YAML is well formed, but not a valid Pod: every problem found.
    #[error("{}", render_problems(file, problems))]
    Invalid {
        file: PathBuf,
        problems: Vec<Problem>,
    },
}

impl ManifestError {
    /// The problems of an [`ManifestError::Invalid`] manifest, else empty.
    pub fn problems(&self) -> &[Problem] {
        match self {
            ManifestError::Invalid { problems, .. } => problems,
            _ => &[],
        }
    }
}

fn render_problems(file: &Path, problems: &[Problem]) -> String {
    let lines: Vec<String> = problems
        .iter()
        .map(|problem| format!("{}: {problem}", file.display()))
        .collect();
    lines.join("\n")
}

impl PodSpec {
    /// Reads every Pod of a manifest file (documents separated by `---`).
    /// At most [`MAX_MANIFEST_BYTES`] are read.
    ///
    /// # Errors
    ///
    /// [`ManifestError`] naming the file and, for invalid pods, each field path.
    pub fn from_yaml_file(path: impl AsRef<Path>) -> Result<Vec<PodSpec>, ManifestError> {
        PodSpec::from_yaml_file_with(path, &ReadOptions::default())
    }

    /// As [`PodSpec::from_yaml_file`], with the ConfigMaps and Secrets of
    /// other files, or strictly ([`ReadOptions`]).
    ///
    /// # Errors
    ///
    /// [`ManifestError`] naming the file (the manifest, or the file of
    /// ConfigMaps at fault) and, for invalid pods, each field path.
    pub fn from_yaml_file_with(
        path: impl AsRef<Path>,
        options: &ReadOptions,
    ) -> Result<Vec<PodSpec>, ManifestError> {
        let path = path.as_ref();
        let text = read_text(path)?;
        let base_dir = match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_owned(),
            _ => PathBuf::from("."),
        };
        convert::pods_from_yaml(&text, path, &base_dir, options)
    }

    /// Reads every Pod of a YAML text; `origin` names it in errors. Relative
    /// image paths resolve against the current directory. The text is held to
    /// the same bounds as a file ([`MAX_MANIFEST_BYTES`],
    /// [`MAX_NESTING_DEPTH`]).
    ///
    /// # Errors
    ///
    /// [`ManifestError`] naming `origin` and each field path.
    pub fn from_yaml_str(
        text: &str,
        origin: impl AsRef<Path>,
    ) -> Result<Vec<PodSpec>, ManifestError> {
        PodSpec::from_yaml_str_with(text, origin, &ReadOptions::default())
    }

    /// As [`PodSpec::from_yaml_str`], with [`ReadOptions`].
    ///
    /// # Errors
    ///
    /// As [`PodSpec::from_yaml_file_with`].
    pub fn from_yaml_str_with(
        text: &str,
        origin: impl AsRef<Path>,
        options: &ReadOptions,
    ) -> Result<Vec<PodSpec>, ManifestError> {
        convert::pods_from_yaml(text, origin.as_ref(), Path::new("."), options)
    }

    /// Starts a pod in code; see [`PodBuilder`].
    pub fn builder(name: impl Into<String>) -> PodBuilder {
        PodBuilder::new(name.into())
    }

    /// Every container, init containers first, in order.
    pub fn all_containers(&self) -> impl Iterator<Item = &ContainerSpec> {
        self.init_containers.iter().chain(&self.containers)
    }

    /// Checks the pod as the API server would.
    ///
    /// # Errors
    ///
    /// Every [`Problem`] found, each with its field path.
    pub fn validate(&self) -> Result<(), Vec<Problem>> {
        let problems = validate::pod(self);
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }
}

impl ContainerSpec {
    /// A container running `image` with the image's own entrypoint and
    /// arguments, no environment, no mounts and no limits.
    pub fn new(name: impl Into<String>, image: impl Into<String>) -> ContainerSpec {
        ContainerSpec {
            name: name.into(),
            image: image.into(),
            command: None,
            args: None,
            env: Vec::new(),
            working_dir: None,
            volume_mounts: Vec::new(),
            ports: Vec::new(),
            resources: Resources::default(),
            image_pull_policy: None,
            startup_probe: None,
            readiness_probe: None,
            liveness_probe: None,
            sidecar: false,
            post_start: None,
            pre_stop: None,
            stdin: false,
            stdin_once: false,
            config_error: None,
        }
    }

    /// Makes this init container a native sidecar (`restartPolicy: Always`).
    pub fn sidecar(mut self) -> Self {
        self.sidecar = true;
        self
    }

    /// The pull policy in effect: as set, else the kubelet's default,
    /// `Always` for the tag `latest` or no tag (and no digest), else
    /// `IfNotPresent`.
    pub fn pull_policy(&self) -> PullPolicy {
        if let Some(policy) = self.image_pull_policy {
            return policy;
        }
        let name = self.image.rsplit('/').next().unwrap_or_default();
        let pinned = self.image.contains('@');
        let tag = name.split_once(':').map(|(_, tag)| tag);
        if !pinned && matches!(tag, None | Some("latest")) {
            PullPolicy::Always
        } else {
            PullPolicy::IfNotPresent
        }
    }

    /// Sets `command` (replaces the entrypoint).
    pub fn command<S: Into<String>>(mut self, command: impl IntoIterator<Item = S>) -> Self {
        self.command = Some(command.into_iter().map(Into::into).collect());
        self
    }

    /// Sets `args` (replaces the default arguments).
    pub fn args<S: Into<String>>(mut self, args: impl IntoIterator<Item = S>) -> Self {
        self.args = Some(args.into_iter().map(Into::into).collect());
        self
    }

    /// Appends an environment variable.
    pub fn env(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push(EnvVar {
            name: name.into(),
            value: value.into(),
        });
        self
    }

    /// Mounts the pod's volume `volume` at `mount_path`.
    pub fn mount(
        mut self,
        volume: impl Into<String>,
        mount_path: impl Into<String>,
        read_only: bool,
    ) -> Self {
        self.volume_mounts.push(VolumeMount {
            name: volume.into(),
            mount_path: mount_path.into(),
            read_only,
            sub_path: None,
        });
        self
    }

    /// Caps the container's Wasm memories, all together, at `bytes`.
    pub fn memory_limit(mut self, bytes: u64) -> Self {
        self.resources.memory_limit = Some(bytes);
        self
    }

    /// Publishes `container_port` on the host's `host_port` (TCP).
    pub fn host_port(mut self, container_port: u16, host_port: u16) -> Self {
        self.ports.push(PortSpec {
            name: None,
            container_port,
            host_port: Some(host_port),
            host_ip: None,
            protocol: Protocol::Tcp,
        });
        self
    }
}

/// Builds a [`PodSpec`] in code, checked by the same rules as a manifest.
///
/// # Examples
///
/// ```
/// use wpod::{ContainerSpec, PodSpec, RestartPolicy};
///
/// let pod = PodSpec::builder("hello")
///     .empty_dir("shared")
///     .init_container(ContainerSpec::new("fetch", "fetch.wasm").mount("shared", "/data", false))
///     .container(ContainerSpec::new("serve", "serve.wasm").mount("shared", "/data", true))
///     .restart_policy(RestartPolicy::Never)
///     .build()?;
/// assert_eq!(pod.init_containers.len(), 1);
/// # Ok::<(), wpod::ManifestError>(())
/// ```
#[derive(Debug, Clone)]
pub struct PodBuilder {
    pod: PodSpec,
}

impl PodBuilder {
    fn new(name: String) -> PodBuilder {
        PodBuilder {
            pod: PodSpec {
                hostname: name.clone(),
                name,
                namespace: "default".into(),
                labels: BTreeMap::new(),
                annotations: BTreeMap::new(),
                egress: EgressPolicy::default(),
                memory_limit: None,
                descriptor_limit: None,
                http_concurrency: None,
                init_containers: Vec::new(),
                containers: Vec::new(),
                volumes: Vec::new(),
                restart_policy: RestartPolicy::Always,
                host_network: false,
                dns: Dns::default(),
                host_aliases: Vec::new(),
                termination_grace_period: Duration::from_secs(30),
                active_deadline: None,
                base_dir: PathBuf::from("."),
                uid: uuid::Uuid::new_v4().to_string(),
                job: None,
            },
        }
    }

    pub fn init_container(mut self, container: ContainerSpec) -> Self {
        self.pod.init_containers.push(container);
        self
    }

    pub fn container(mut self, container: ContainerSpec) -> Self {
        self.pod.containers.push(container);
        self
    }

    /// Adds an `emptyDir` volume.
    pub fn empty_dir(mut self, name: impl Into<String>) -> Self {
        self.pod.volumes.push(VolumeSpec {
            name: name.into(),
            source: VolumeSource::EmptyDir {
                memory: false,
                size_limit: None,
            },
        });
        self
    }

    /// Adds a `hostPath` volume.
    pub fn host_path(
        mut self,
        name: impl Into<String>,
        path: impl Into<PathBuf>,
        kind: HostPathType,
    ) -> Self {
        self.pod.volumes.push(VolumeSpec {
            name: name.into(),
            source: VolumeSource::HostPath {
                path: path.into(),
                kind,
            },
        });
        self
    }

    pub fn restart_policy(mut self, policy: RestartPolicy) -> Self {
        self.pod.restart_policy = policy;
        self
    }

    /// How long a stopping container may take to end by itself
    /// (`terminationGracePeriodSeconds`; 30 s by default).
    pub fn termination_grace_period(mut self, grace: Duration) -> Self {
        self.pod.termination_grace_period = grace;
        self
    }

    /// Fails the pod with reason `DeadlineExceeded` once it has been active
    /// for `deadline` (`activeDeadlineSeconds`).
    pub fn active_deadline(mut self, deadline: Duration) -> Self {
        self.pod.active_deadline = Some(deadline);
        self
    }

    /// Puts the pod on the host's network (`hostNetwork: true`).
    pub fn host_network(mut self, enable: bool) -> Self {
        self.pod.host_network = enable;
        self
    }

    /// Sets an annotation. Those wpod reads ([`EGRESS_ANNOTATION`],
    /// [`MEMORY_ANNOTATION`]) set their typed fields of [`PodSpec`] when the
    /// pod is built, and a bad value fails [`PodBuilder::build`].
    pub fn annotation(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.pod.annotations.insert(key.into(), value.into());
        self
    }

    /// Resolves relative image paths against `dir`.
    pub fn base_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.pod.base_dir = dir.into();
        self
    }

    /// Checks the pod and returns it.
    ///
    /// # Errors
    ///
    /// [`ManifestError::Invalid`] (file `<builder>`) listing every problem.
    pub fn build(mut self) -> Result<PodSpec, ManifestError> {
        let (parsed, _) = annotations::parse(&self.pod.annotations);
        self.pod.egress = parsed.egress;
        self.pod.memory_limit = parsed.memory_limit;
        self.pod.descriptor_limit = parsed.descriptor_limit;
        self.pod.http_concurrency = parsed.http_concurrency;
        match self.pod.validate() {
            Ok(()) => Ok(self.pod),
            Err(problems) => Err(ManifestError::Invalid {
                file: PathBuf::from("<builder>"),
                problems,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n";

    /// The one error of reading `yaml`, as the user reads it.
    #[track_caller]
    fn check(yaml: &str, expected: &str) {
        let error = PodSpec::from_yaml_str(yaml, "pod.yaml").unwrap_err();
        assert_eq!(error.to_string(), expected, "{yaml:?}");
    }

    fn pod(yaml: &str) -> PodSpec {
        PodSpec::from_yaml_str(yaml, "pod.yaml").unwrap().remove(0)
    }

    #[test]
    fn dns_policy_and_config_are_read_and_checked() {
        let containers = "  containers:\n  - {name: a, image: a.wasm}\n";
        let read = pod(&format!(
            "{HEAD}spec:\n  dnsPolicy: None\n  dnsConfig:\n    nameservers: [10.0.0.10]\n    searches: [svc.local]\n    options: [{{name: ndots, value: '2'}}, {{name: edns0}}]\n{containers}"
        ));
        assert_eq!(
            read.dns,
            Dns {
                policy_none: true,
                nameservers: vec!["10.0.0.10".parse().unwrap()],
                searches: vec!["svc.local".into()],
                options: vec![("ndots".into(), Some("2".into())), ("edns0".into(), None)],
            }
        );
        check(
            &format!("{HEAD}spec:\n  dnsPolicy: None\n{containers}"),
            "pod.yaml: spec.dnsConfig.nameservers: dnsPolicy None needs at least one nameserver; list the resolver's address in dnsConfig.nameservers",
        );
        check(
            &format!("{HEAD}spec:\n  dnsConfig: {{nameservers: [dns.example]}}\n{containers}"),
            "pod.yaml: spec.dnsConfig.nameservers[0]: `dns.example` is not an IP address; give the resolver's address, e.g. 10.0.0.10",
        );
        check(
            &format!("{HEAD}spec:\n  dnsPolicy: Cluster\n{containers}"),
            "pod.yaml: spec.dnsPolicy: unknown DNS policy `Cluster`; use ClusterFirst, ClusterFirstWithHostNet, Default or None",
        );
    }

    /// The fuzzer's seeds (fuzz/seeds/manifest), every one read to its end.
    #[test]
    fn the_fuzz_seeds_are_read_without_a_panic() {
        let seeds = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds/manifest");
        let mut read = 0;
        for entry in std::fs::read_dir(&seeds).unwrap() {
            let bytes = std::fs::read(entry.unwrap().path()).unwrap();
            let _ = PodSpec::from_yaml_str(&String::from_utf8_lossy(&bytes), "seed.yaml");
            read += 1;
        }
        assert!(read >= 10, "{read} seeds in {}", seeds.display());
    }

    #[test]
    fn a_long_unknown_field_gets_no_suggestion_and_costs_little() {
        // A complex key (`? `) has no length limit in YAML; comparing a 3 MB
        // one with each field's name took 8 s (release build).
        let field = "x".repeat(100_000);
        let yaml = format!("{HEAD}spec:\n  containers:\n  - name: a\n    ? {field}\n    : 1\n");
        let error = PodSpec::from_yaml_str(&yaml, "pod.yaml").unwrap_err();
        let problem = &error.problems()[0];
        assert_eq!(problem.message, format!("unknown field `{field}`"));
        assert_eq!(
            problem.hint,
            "remove it; it is not a field of this Kubernetes object"
        );
        check(
            &format!("{HEAD}spec:\n  containers:\n  - name: a\n    imagee: a.wasm\n"),
            "pod.yaml: spec.containers[0].imagee: unknown field `imagee`; did you mean `image`? field names are case-sensitive",
        );
    }

    #[test]
    fn deep_nesting_is_refused_before_parsing() {
        // Before the bounds, the parser took 3 s on 50,000 nested `[` and 91 s
        // on 50,000 nested `{a: ` (a debug build).
        let deep = [
            "[".repeat(200_000),
            format!("{}{}", "[".repeat(50_000), "]".repeat(50_000)),
            format!("{}1{}", "{a: ".repeat(50_000), "}".repeat(50_000)),
            format!("{}x\n", "- ".repeat(50_000)),
            format!(
                "{HEAD}spec:\n  containers:\n  - name: a\n    image: a.wasm\n    args: {}\n",
                "[".repeat(100)
            ),
        ];
        for text in deep {
            let error = PodSpec::from_yaml_str(&text, "deep.yaml").unwrap_err();
            assert!(
                matches!(error, ManifestError::TooDeep { limit: 64, .. }),
                "{error}"
            );
        }
        check(
            &"[".repeat(65),
            "pod.yaml:1: the manifest nests deeper than 64 levels, the most wpod reads (a Pod nests fewer than 20); look for a bracket left open, or flatten the YAML",
        );
    }

    #[test]
    fn a_large_manifest_is_refused_before_parsing() {
        let large = format!("{HEAD}# {}\n", "x".repeat(MAX_MANIFEST_BYTES));
        check(
            &large,
            "pod.yaml: the manifest is larger than 4194304 bytes (4 MiB), the most wpod reads; split its pods into several files",
        );
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("large.yaml");
        std::fs::write(&file, &large).unwrap();
        assert!(matches!(
            PodSpec::from_yaml_file(&file),
            Err(ManifestError::TooLarge { .. })
        ));
        std::fs::write(&file, b"\xff\xfe").unwrap();
        assert!(matches!(
            PodSpec::from_yaml_file(&file),
            Err(ManifestError::Read { .. })
        ));
    }

    #[test]
    fn annotations_are_typed_fields() {
        let yaml = format!(
            "{HEAD}  annotations:\n    wpod.dev/egress: '10.0.0.0/8, 192.0.2.7:443'\n    wpod.dev/memory-limit: 0.5Gi\n    note: hi\nspec:\n  containers:\n  - {{name: a, image: a.wasm}}\n"
        );
        let read = pod(&yaml);
        assert_eq!(
            read.egress,
            EgressPolicy::parse("10.0.0.0/8, 192.0.2.7:443").unwrap()
        );
        assert_eq!(read.memory_limit, Some(512 << 20));
        assert_eq!(read.annotations.len(), 3);
        let built = PodSpec::builder("p")
            .annotation(EGRESS_ANNOTATION, "10.0.0.0/8, 192.0.2.7:443")
            .annotation(MEMORY_ANNOTATION, "512Mi")
            .annotation("note", "hi")
            .container(ContainerSpec::new("a", "a.wasm"))
            .build()
            .unwrap();
        assert_eq!(
            (built.egress, built.memory_limit),
            (read.egress, read.memory_limit)
        );
    }

    #[test]
    fn bad_annotations_fail_validation_for_yaml_and_builder_alike() {
        for (key, value) in [
            (EGRESS_ANNOTATION, "10.0.0.0/99"),
            (MEMORY_ANNOTATION, "lots"),
        ] {
            let yaml = format!(
                "{HEAD}  annotations: {{{key}: '{value}'}}\nspec:\n  containers:\n  - {{name: a, image: a.wasm}}\n"
            );
            let from_yaml = PodSpec::from_yaml_str(&yaml, "pod.yaml").unwrap_err();
            let built = PodSpec::builder("p")
                .annotation(key, value)
                .container(ContainerSpec::new("a", "a.wasm"))
                .build()
                .unwrap_err();
            assert_eq!(from_yaml.problems(), built.problems());
            assert_eq!(
                from_yaml.problems()[0].path,
                format!("metadata.annotations[{key}]")
            );
        }
    }

    #[test]
    fn quantities_are_exact() {
        let yaml = format!(
            "{HEAD}spec:\n  containers:\n  - name: a\n    image: a.wasm\n    resources:\n      limits: {{cpu: 4.03, memory: 1e3}}\n      requests: {{cpu: 9m, memory: 0.1}}\n"
        );
        let resources = pod(&yaml).containers[0].resources;
        assert_eq!(resources.cpu_limit_millis, Some(4030));
        assert_eq!(resources.memory_limit, Some(1000));
        assert_eq!(resources.cpu_request_millis, Some(9));
        assert_eq!(resources.memory_request, Some(1));
    }

    #[test]
    fn quantity_problems_say_what_is_wrong() {
        let with = |resources: &str| {
            format!(
                "{HEAD}spec:\n  containers:\n  - name: a\n    image: a.wasm\n    resources: {resources}\n"
            )
        };
        check(
            &with("{limits: {memory: -1Mi}}"),
            "pod.yaml: spec.containers[0].resources.limits.memory: `-1Mi` must not be negative; write e.g. `64Mi`",
        );
        check(
            &with("{limits: {cpu: 1e30}}"),
            "pod.yaml: spec.containers[0].resources.limits.cpu: `1000000000000000000000000000000` is too large (the most is 2^63 - 1, about 8Ei); leave it out for no limit",
        );
        check(
            &with("{limits: {memory: 2 Gi}}"),
            "pod.yaml: spec.containers[0].resources.limits.memory: `2 Gi` is not a quantity; write e.g. `64Mi`: a number with an optional suffix (m, k, M, G, Ki, Mi, Gi, ...)",
        );
        check(
            &with("{limits: {memory: 1Gi, cpu: 500m}, requests: {memory: 1536Mi, cpu: 1.5}}"),
            "pod.yaml: spec.containers[0].resources.requests.memory: `1536Mi` must be less than or equal to the memory limit of 1Gi; lower the request or raise the limit\npod.yaml: spec.containers[0].resources.requests.cpu: `1500m` must be less than or equal to the cpu limit of 500m; lower the request or raise the limit",
        );
    }
}
