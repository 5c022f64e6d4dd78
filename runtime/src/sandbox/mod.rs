//! The OS wall: on Linux, each pod's process runs in namespaces of its own
//! (user, mount, pid, net, uts, ipc, cgroup), on a minimal root that holds
//! only what the pod needs, in a cgroup with the pod's limits, with no
//! capabilities, no_new_privs and a seccomp filter. It is the second wall,
//! behind the Wasm sandbox. Elsewhere it is a documented no-op.
//!
//! Three processes (see DESIGN.md, "Process model on Linux"):
//! - the **supervisor** (`supervisor.rs`): `wpod run` itself, in the host's
//!   namespaces. It checks what comes from the user (images, hostPaths),
//!   makes the [`Plan`], creates the cgroup, starts the pod process, forwards
//!   SIGINT/SIGTERM, reports the status and cleans up.
//! - **pod-init** (`inside.rs`): the supervisor's forked child. The
//!   supervisor still has one thread when it forks, so pod-init has one too
//!   (`unshare(CLONE_NEWUSER)` fails in a process with two), and it has the
//!   parsed pod in memory: nothing is executed or parsed again. It unshares
//!   the namespaces, maps its ids and forks;
//! - **PID 1** of the new PID namespace (`inside.rs`): builds the root,
//!   pivots into it, locks itself down, and only then calls the CLI's pod
//!   function ([`PodMain`]) to start tokio and wasmtime and run the pod
//!   ([`PodProcess`]), and exits with what it returns.
//!
//! They talk through `protocol.rs`; every system call is in `sys.rs`.
//!
//! Paths are the same inside as outside: each thing the pod needs is bound at
//! its own host path on an empty tmpfs root (bubblewrap's `--bind SRC SRC`).
//! The pod's manifest, image path and cache directory need no rewriting, and
//! every error names the path the user knows.

// The plan, the protocol and the error types are plain data and compile
// everywhere (so they stay portable and unit-tested), but only Linux's
// implementation uses them.
#![cfg_attr(not(target_os = "linux"), allow(dead_code))]

mod protocol;

#[cfg(target_os = "linux")]
mod broker;
#[cfg(target_os = "linux")]
mod cgroup;
#[cfg(target_os = "linux")]
mod dns;
#[cfg(target_os = "linux")]
mod forker;
#[cfg(target_os = "linux")]
pub mod host;
#[cfg(target_os = "linux")]
mod inside;
#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
mod seccomp;
#[cfg(target_os = "linux")]
mod supervisor;
#[cfg(target_os = "linux")]
pub(crate) mod sys;
#[cfg(not(target_os = "linux"))]
mod unsupported;

/// The platform's implementation: one name, one `cfg` (STYLE §1).
#[cfg(target_os = "linux")]
use linux as imp;
#[cfg(not(target_os = "linux"))]
use unsupported as imp;

pub use protocol::ErrorReport;

use crate::manifest::{PodSpec, VolumeSource};
use crate::pod::{PodOptions, RuntimeConfig};
use crate::status::PodStatus;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// How much of the OS wall `wpod run` insists on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Isolation {
    /// The whole wall where the kernel allows it; otherwise one warning that
    /// names what is missing and why, and the pod runs without that part.
    #[default]
    Auto,
    /// Every part of the wall, or no run at all (exit 125). Always refused on
    /// systems other than Linux.
    Required,
    /// No wall: the pods run inside the `wpod` process, as on other systems.
    None,
}

/// Settings for [`Sandbox`]: what the supervisor needs to start pods, typed
/// (the pod processes are forks of the supervisor: they have these values
/// as they are, nothing is parsed again).
#[derive(Clone)]
pub(crate) struct SandboxConfig {
    pub isolation: Isolation,
    /// The runtime's settings. Its compile cache is bound read-only (and
    /// exec: wasmtime maps the compiled code from it) into every pod; the
    /// supervisor fills it.
    pub runtime: RuntimeConfig,
    /// The pods' options; `state_dir` is where each pod's private folder
    /// (for emptyDirs) is made on the host.
    pub options: PodOptions,
    /// Where to write the host PIDs of the pod processes once their walls are
    /// up, one a line in manifest order.
    pub pid_file: Option<PathBuf>,
    /// Each pod's folder `<pod_files>/<pod name>`, bound read-write into its
    /// process (see [`crate::RunConfig::pod_files`]).
    pub pod_files: Option<PathBuf>,
    /// Hears every status the pod processes report.
    pub status_sink: Option<std::sync::Arc<dyn crate::StatusSink>>,
    /// Hears how compiling ahead of the wall goes.
    pub progress: Option<std::sync::Arc<dyn crate::CompileProgress>>,
}

impl std::fmt::Debug for SandboxConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SandboxConfig")
            .field("isolation", &self.isolation)
            .field("runtime", &self.runtime)
            .field("options", &self.options)
            .field("pid_file", &self.pid_file)
            .field("pod_files", &self.pod_files)
            .finish_non_exhaustive()
    }
}

/// The OS wall, ready to run pods behind it. Made by [`Sandbox::new`], which
/// finds out what this kernel allows.
#[derive(Debug)]
pub(crate) struct Sandbox {
    config: SandboxConfig,
    /// What the platform found (on Linux: where the cgroups go, if anywhere).
    state: imp::State,
}

/// How a run behind the wall ended.
#[derive(Debug)]
pub(crate) struct SandboxedRun {
    pub pods: Vec<SandboxedPod>,
    /// The signal (SIGINT 2, SIGTERM 15) that stopped the run, if one did.
    pub signal: Option<i32>,
}

/// One pod's end.
#[derive(Debug)]
pub(crate) struct SandboxedPod {
    pub name: String,
    /// The host PID of the pod process (PID 1 of its namespaces).
    pub pid: Option<u32>,
    pub status: PodStatus,
}

/// Why the wall could not be put up, or a pod not started behind it.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// `--isolation=required` and a part of the wall is not available.
    #[error("--isolation=required: {part} unavailable: {reason}; {fix}")]
    Unavailable {
        part: String,
        reason: String,
        fix: String,
    },
    /// A check of the user's input, before anything started.
    #[error(transparent)]
    Pod(#[from] crate::Error),
    /// The pod process could not put up its wall or start its pod.
    #[error("{}", name_the_pod(pod, report))]
    Inside { pod: String, report: ErrorReport },
    /// Pulling an image failed (in a child process, see `in_child`):
    /// nothing ran. `pods` are the pods as they stand, Pending, the
    /// container whose image failed waiting with reason `ErrImagePull`.
    #[error("{report}")]
    Pulling {
        report: ErrorReport,
        pods: Vec<crate::PodOutcome>,
    },
    /// `wpod run -d` of a pod whose name a detached pod of the user has.
    #[error(
        "pod `{pod}` exists already (wpod ps -a shows it); remove it with `wpod rm {pod}`, or run with --replace"
    )]
    PodExists { pod: String },
    /// The supervisor itself failed (a pipe, the cgroup, starting a process).
    #[error("pod `{pod}`: {what}: {source}")]
    Supervisor {
        pod: String,
        what: String,
        #[source]
        source: std::io::Error,
    },
}

/// `pod `x`: ` before the report, unless the report (a `wpod::Error`) names the pod.
fn name_the_pod(pod: &str, report: &ErrorReport) -> String {
    let prefix = format!("pod `{pod}`");
    if report.message.contains(&prefix) {
        report.to_string()
    } else {
        format!("{prefix}: {report}")
    }
}

impl SandboxError {
    /// Whether the user's input is at fault, as opposed to the machine.
    pub fn is_bad_input(&self) -> bool {
        self.fault() != crate::Fault::Host
    }

    /// Whose fault it is, for the exit status.
    pub fn fault(&self) -> crate::Fault {
        match self {
            SandboxError::Unavailable { .. } | SandboxError::PodExists { .. } => {
                crate::Fault::Input
            }
            SandboxError::Pod(error) => error.fault(),
            SandboxError::Inside { report, .. } | SandboxError::Pulling { report, .. } => {
                report.fault
            }
            SandboxError::Supervisor { .. } => crate::Fault::Host,
        }
    }
}

impl Sandbox {
    /// Finds out what the kernel allows (where the pod cgroups go; whether
    /// it allows the namespaces, the first pod process finds out: see
    /// [`Sandbox::run`]). `Ok(None)` means "run in-process":
    /// `--isolation=none`, or `auto` where no wall can be had (after one
    /// warning saying why).
    ///
    /// # Errors
    ///
    /// [`SandboxError::Unavailable`] for `required` when a part is missing.
    pub fn new(config: SandboxConfig) -> Result<Option<Sandbox>, SandboxError> {
        if config.isolation == Isolation::None {
            return Ok(None);
        }
        imp::probe(config)
    }

    /// Runs the pods of a manifest, each in its own pod process behind the
    /// wall, until they end. `pods` are the manifest's pods, in order; each
    /// pod process calls `pod_main` with its pod, behind its wall, and exits
    /// with the code it returns. As `jobs`' pods end, their next pods start
    /// in pod processes of their own.
    ///
    /// Call it while the process has one thread (before any tokio runtime
    /// or other thread exists): the pod processes are forks of this one, and
    /// `unshare(CLONE_NEWUSER)` needs a single thread. SIGINT and SIGTERM are
    /// blocked on this thread and read from a signalfd while the pods run.
    ///
    /// `Ok(None)`: with [`Isolation::Auto`], the kernel refused the
    /// namespaces to the first pod process (before anything of the pods ran;
    /// a warning says why): run the pods without the wall.
    ///
    /// # Errors
    ///
    /// The first pod that could not start, checked input first (exit 125);
    /// [`SandboxError::Unavailable`] for `required` without namespaces.
    pub fn run(
        &self,
        pods: &[PodSpec],
        jobs: &mut crate::job::Jobs,
        pod_main: PodMain,
    ) -> Result<Option<SandboxedRun>, SandboxError> {
        imp::run(self, pods, jobs, pod_main)
    }
}

/// Runs `work` in a forked child and returns what it reports, so that what
/// it starts (threads, tokio's process-wide signal pipe, which a later pod
/// process would inherit closed) never exists in this process, which forks
/// the pod processes later. In-process where there is no fork (other OSes)
/// or this process already has threads (then there is no OS wall either).
pub(crate) fn in_child<E>(work: impl FnOnce() -> Result<(), E>) -> Result<(), E>
where
    E: Serialize + serde::de::DeserializeOwned + From<ErrorReport>,
{
    #[cfg(target_os = "linux")]
    if sys::thread_count().is_some_and(|n| n == 1) {
        return linux::in_child(work);
    }
    work()
}

/// What a pod process does once its wall is up: run the pod (a tokio
/// runtime, [`crate::Runtime`], reporting through the [`PodProcess`]) and
/// return the process's exit code.
pub(crate) type PodMain = fn(PodProcess) -> u8;

/// PID 1 of the pod's namespaces, behind its wall: what to run, and the way
/// back to the supervisor.
#[derive(Debug)]
pub(crate) struct PodProcess {
    pub pod: PodSpec,
    /// The run's options, with this pod's private folder and prepared
    /// volumes.
    pub options: PodOptions,
    pub runtime_config: RuntimeConfig,
    /// Where the pod serves `exec` and `top` (see `control`), if anywhere.
    pub control_socket: Option<std::path::PathBuf>,
    #[cfg(target_os = "linux")]
    channel: std::sync::Arc<protocol::Channel>,
    /// Sockets of the host's network, for a pod in a namespace of its own
    /// that publishes ports or may reach out.
    pub host_sockets: Option<std::sync::Arc<dyn crate::network::HostSockets>>,
    /// The DNS relay's socket in the pod and its resolvers' sockets
    /// outside, for a pod that may reach out (see `dns`).
    #[cfg(target_os = "linux")]
    pub dns_relay: Option<(rustix::fd::OwnedFd, Vec<rustix::fd::OwnedFd>)>,
}

impl PodProcess {
    /// Starts the pod's DNS relay, if it has one, on the current tokio
    /// runtime.
    pub fn start_dns_relay(&mut self) {
        #[cfg(target_os = "linux")]
        if let Some((listener, upstreams)) = self.dns_relay.take() {
            tokio::spawn(async move {
                if let Err(error) = dns::relay(listener, upstreams).await {
                    tracing::warn!(%error, "the pod's DNS relay stopped");
                }
            });
        }
    }
}

impl PodProcess {
    /// Tells the supervisor that SIGTERM/SIGINT handlers are installed: from
    /// now on it forwards signals instead of killing the pod process.
    pub fn ready(&self) {
        #[cfg(target_os = "linux")]
        self.channel.send(&protocol::Message::Ready);
    }

    /// A function that reports each status change to the supervisor (which
    /// needs the last one if the pod process is killed, e.g. by the cgroup's
    /// OOM killer).
    pub fn status_reporter(&self) -> impl Fn(&PodStatus) + Send + Sync + 'static {
        #[cfg(target_os = "linux")]
        {
            let channel = self.channel.clone();
            move |status: &PodStatus| channel.send(&protocol::Message::Status(status.clone()))
        }
        #[cfg(not(target_os = "linux"))]
        |_: &PodStatus| {}
    }

    /// The pod could not start: the supervisor prints `error` and exits.
    pub fn failed(&self, error: &dyn std::error::Error, fault: crate::Fault) {
        #[cfg(target_os = "linux")]
        self.channel
            .send(&protocol::Message::Failed(ErrorReport::new(error, fault)));
        #[cfg(not(target_os = "linux"))]
        let _ = (error, fault);
    }

    /// The pod ended with `status`.
    pub fn ended(&self, status: &PodStatus) {
        #[cfg(target_os = "linux")]
        self.channel.send(&protocol::Message::Ended(status.clone()));
        #[cfg(not(target_os = "linux"))]
        let _ = status;
    }
}

/// The wall for one pod, as plain data: what the supervisor decided and the
/// pod process carries out. A test can build it and compare it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub hostname: String,
    /// A network namespace of its own (holding only `lo`); false for pods
    /// that need the host's network (see [`needs_host_network`]).
    pub net_namespace: bool,
    /// In mount order: parents before what is bound inside them.
    pub binds: Vec<Bind>,
    /// `emptyDir` volumes with `medium: Memory`: a tmpfs each, mounted in
    /// the pod's private folder (sized by `sizeLimit`, else tmpfs's default
    /// of half the RAM; the pod's cgroup is charged for what it holds).
    pub memory_volumes: Vec<MemoryVolume>,
    pub limits: Limits,
    /// The pod's `/etc/resolv.conf`, naming the DNS relay in the pod (see
    /// `dns`), written into the new root; `None` for no DNS.
    pub resolv_conf: Option<String>,
    /// The pod's `/etc/hosts` (the host's and the pod's `hostAliases`),
    /// written into the new root; `None`: the host's, bound.
    pub hosts: Option<String>,
    /// The pod's private folder as a tmpfs of its own mount namespace, at
    /// this path, instead of a host folder bound there (then it is among
    /// [`Plan::binds`]): for pods with no emptyDir on disk. Its run folders,
    /// ConfigMaps and Secrets then never touch the host's disk, and it goes
    /// with the namespace; the pod's cgroup is charged for what it holds.
    #[serde(default)]
    pub private_tmpfs: Option<PathBuf>,
    /// Whether mounts made later on the host under a bound path that is a
    /// shared mount appear in the pod (the pod host of the containerd shim,
    /// see `host`): the pod's mounts are then made slaves of the host's
    /// instead of private. Never the other way: nothing the pod mounts
    /// reaches the host.
    #[serde(default)]
    pub receive_mounts: bool,
}

/// One `emptyDir` with `medium: Memory`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryVolume {
    pub name: String,
    /// Where the tmpfs goes, inside the pod's private folder.
    pub path: PathBuf,
    pub size_limit: Option<u64>,
}

/// One host path bound at the same path in the pod's root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bind {
    pub path: PathBuf,
    /// A file (an image's `.wasm`, `/etc/hosts`) rather than a directory.
    pub file: bool,
    pub read_only: bool,
    /// Whether code may be mapped executable from it (the compile cache).
    pub exec: bool,
}

/// The pod's cgroup limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    pub memory_bytes: Option<u64>,
    /// Where `memory_bytes` comes from, to say so when it is reached.
    pub memory_source: MemorySource,
    pub cpu_millis: Option<u64>,
    pub pids: u64,
}

/// Where a pod's memory ceiling comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MemorySource {
    /// The sum of its containers' `limits.memory` (every container has one)
    /// plus [`RUNTIME_MEMORY_ALLOWANCE`].
    Containers,
    /// The pod's [`MEMORY_ANNOTATION`].
    Annotation,
    /// [`crate::container::host_memory_share`]: the default, so that a pod without
    /// limits cannot take the whole host.
    HostShare,
    /// None could be had (the host's memory is unknown).
    Unlimited,
}

impl MemorySource {
    /// Why the ceiling is what it is, and how to change it.
    pub(crate) fn explain(self) -> &'static str {
        match self {
            MemorySource::Containers => "the containers' limits.memory plus 256Mi for the runtime",
            MemorySource::Annotation => "set by the wpod.dev/memory-limit annotation",
            MemorySource::HostShare => {
                "wpod's default, half the host's memory; set limits.memory on every container or the wpod.dev/memory-limit annotation"
            }
            MemorySource::Unlimited => "none",
        }
    }
}

/// What wasmtime, tokio and the compiler take besides the guests' memories:
/// added to the sum of the containers' `limits.memory` for the pod's cgroup.
pub const RUNTIME_MEMORY_ALLOWANCE: u64 = 256 << 20;

/// The pids limit: the runtime's threads count (tokio's workers, its blocking
/// pool of up to 512, the compiler's one per core, the epoch ticker), so this
/// leaves room for all of them at once, and stops only a runaway.
pub const PIDS_LIMIT: u64 = 1024;

/// The annotation that sets the pod's cgroup memory limit directly (a
/// quantity such as `96Mi`), instead of the sum of its containers'
/// `limits.memory` plus [`RUNTIME_MEMORY_ALLOWANCE`]; the manifest parses it
/// into [`PodSpec::memory_limit`].
#[cfg_attr(not(test), allow(unused_imports))]
pub use crate::manifest::MEMORY_ANNOTATION;

/// Why a pod must share the host's network namespace, if it must: only
/// `hostNetwork: true`. Every other pod gets a namespace of its own, and
/// what it needs of the host's network (published ports, connections out)
/// comes in as sockets from the supervisor (see `crate::network`).
pub fn needs_host_network(pod: &PodSpec) -> Option<&'static str> {
    pod.host_network.then_some("hostNetwork: true")
}

/// Whether the pod has an `emptyDir` on disk (not `medium: Memory`): its
/// private folder is then a host folder, as the kubelet keeps emptyDirs on
/// the node's disk.
pub fn needs_disk_emptydir(pod: &PodSpec) -> bool {
    pod.volumes
        .iter()
        .any(|v| matches!(v.source, VolumeSource::EmptyDir { memory: false, .. }))
}

/// What [`plan`] needs besides the pod: the host paths the supervisor found.
#[derive(Debug, Clone)]
pub struct PlanInputs {
    /// Each container's image: an image folder or a `.wasm` file.
    pub images: Vec<PathBuf>,
    pub cache_dir: Option<PathBuf>,
    /// The pod's private state folder.
    pub state_dir: PathBuf,
    /// Whether the private folder must be on the host's disk (the pod has
    /// an emptyDir there, see [`needs_disk_emptydir`]).
    pub state_on_disk: bool,
    /// Files for name lookup that exist on the host (`/etc/hosts`, ...).
    pub etc_files: Vec<PathBuf>,
    pub net_namespace: bool,
    /// The pod's `/etc/resolv.conf`, if it has a DNS relay.
    pub resolv_conf: Option<String>,
    /// The pod's `/etc/hosts`, written instead of binding the host's, when
    /// the pod has `hostAliases`.
    pub hosts: Option<String>,
    /// A folder of the caller's that the pod process may write (a detached
    /// pod's logs), bound read-write.
    pub writable: Option<PathBuf>,
}

/// Decides the pod's wall: binds, hostname, namespaces and limits.
///
/// A hostPath is bound read-only only when every container mounts it
/// readOnly: the containers share one process, so the per-container
/// difference is the Wasm layer's to enforce.
///
/// Nothing here fails: [`MEMORY_ANNOTATION`] is checked with the manifest,
/// into [`PodSpec::memory_limit`].
pub fn plan(pod: &PodSpec, inputs: &PlanInputs) -> Plan {
    let mut binds: Vec<Bind> = Vec::new();
    let mut add = |bind: Bind| match binds.iter_mut().find(|b| b.path == bind.path) {
        Some(existing) => {
            existing.read_only &= bind.read_only;
            existing.exec |= bind.exec;
        }
        None => binds.push(bind),
    };
    for volume in &pod.volumes {
        let VolumeSource::HostPath { path, .. } = &volume.source else {
            continue;
        };
        let read_only = pod
            .all_containers()
            .flat_map(|c| &c.volume_mounts)
            .filter(|m| m.name == volume.name)
            .all(|m| m.read_only);
        add(Bind {
            path: path.clone(),
            file: path.is_file(),
            read_only,
            exec: false,
        });
    }
    for image in &inputs.images {
        add(Bind {
            path: image.clone(),
            file: image.extension().is_some_and(|e| e == "wasm") || image.is_file(),
            read_only: true,
            exec: false,
        });
    }
    if let Some(cache) = &inputs.cache_dir {
        // Read-only: the supervisor compiled what was missing before the
        // pod process started (`compile_ahead`); a pod must not write code
        // that later pods load and run. exec: wasmtime maps the code.
        add(Bind {
            path: cache.clone(),
            file: false,
            read_only: true,
            exec: true,
        });
    }
    if let Some(writable) = &inputs.writable {
        add(Bind {
            path: writable.clone(),
            file: false,
            read_only: false,
            exec: false,
        });
    }
    for file in &inputs.etc_files {
        if inputs.hosts.is_some() && file.as_path() == Path::new("/etc/hosts") {
            continue;
        }
        add(Bind {
            path: file.clone(),
            file: true,
            read_only: true,
            exec: false,
        });
    }
    // A tmpfs unless the disk is needed, or the folder lies inside another
    // bind (its mount point would then be made in the host's folder).
    let inside_a_bind = binds.iter().any(|b| inputs.state_dir.starts_with(&b.path));
    let private_tmpfs = if inputs.state_on_disk || inside_a_bind {
        binds.push(Bind {
            path: inputs.state_dir.clone(),
            file: false,
            read_only: false,
            exec: false,
        });
        None
    } else {
        Some(inputs.state_dir.clone())
    };
    // Parents first, so that a path bound inside another bind is mounted
    // on top of it, not hidden under it.
    binds.sort_by_key(|b| (b.path.components().count(), b.path.clone()));
    let memory_volumes = pod
        .volumes
        .iter()
        .filter_map(|volume| match volume.source {
            VolumeSource::EmptyDir {
                memory: true,
                size_limit,
            } => Some(MemoryVolume {
                name: volume.name.clone(),
                path: inputs.state_dir.join("memory").join(&volume.name),
                size_limit,
            }),
            _ => None,
        })
        .collect();
    Plan {
        hostname: pod.hostname.clone(),
        net_namespace: inputs.net_namespace,
        binds,
        memory_volumes,
        limits: limits(pod),
        resolv_conf: inputs.resolv_conf.clone(),
        hosts: inputs.hosts.clone(),
        private_tmpfs,
        receive_mounts: false,
    }
}

/// The pod's cgroup limits: as Kubernetes sizes a pod, the larger of the app
/// containers' sum and the largest init container (they run one at a
/// time), and only when every container has a limit.
fn limits(pod: &PodSpec) -> Limits {
    let effective = |limit: fn(&crate::manifest::ContainerSpec) -> Option<u64>| {
        // Saturating: two limits of 7Ei would overflow a sum.
        let apps = (pod.containers.iter().map(limit))
            .try_fold(0u64, |sum, limit| Some(sum.saturating_add(limit?)));
        let inits: Option<Vec<u64>> = pod.init_containers.iter().map(limit).collect();
        Some(apps?.max(inits?.into_iter().max().unwrap_or(0)))
    };
    let (memory_bytes, memory_source) = match pod.memory_limit {
        Some(bytes) => (Some(bytes), MemorySource::Annotation),
        None => match effective(|c| c.resources.memory_limit) {
            Some(sum) => (
                Some(sum.saturating_add(RUNTIME_MEMORY_ALLOWANCE)),
                MemorySource::Containers,
            ),
            None => match crate::container::host_memory_share() {
                Some(bytes) => (Some(bytes), MemorySource::HostShare),
                None => (None, MemorySource::Unlimited),
            },
        },
    };
    Limits {
        memory_bytes,
        memory_source,
        cpu_millis: effective(|c| c.resources.cpu_limit_millis),
        pids: PIDS_LIMIT,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{ContainerSpec, HostPathType};

    fn inputs() -> PlanInputs {
        PlanInputs {
            images: vec!["/images/box/latest".into(), "/wasm/hello.wasm".into()],
            cache_dir: Some("/home/u/.cache/wpod".into()),
            state_dir: "/tmp/wpod/demo-7-w0".into(),
            state_on_disk: true,
            etc_files: vec![],
            net_namespace: true,
            resolv_conf: None,
            hosts: None,
            writable: None,
        }
    }

    #[test]
    fn the_private_folder_is_a_tmpfs_of_the_pod_unless_an_empty_dir_needs_the_disk() {
        let state = Path::new("/tmp/wpod/demo-7-w0");
        let bound = |plan: &Plan| plan.binds.iter().any(|b| b.path == state);
        let hello = || ContainerSpec::new("a", "hello.wasm");
        let plain = PodSpec::builder("demo").container(hello()).build().unwrap();
        let mut inputs = inputs();
        inputs.state_on_disk = needs_disk_emptydir(&plain);
        let planned = super::plan(&plain, &inputs);
        assert_eq!(planned.private_tmpfs.as_deref(), Some(state));
        assert!(!bound(&planned));

        let scratch = PodSpec::builder("demo")
            .empty_dir("scratch")
            .container(hello().mount("scratch", "/scratch", false))
            .build()
            .unwrap();
        inputs.state_on_disk = needs_disk_emptydir(&scratch);
        let planned = super::plan(&scratch, &inputs);
        assert_eq!(planned.private_tmpfs, None);
        assert!(bound(&planned));

        // Inside a hostPath, its mount point would be made in the host's
        // folder: it stays a host folder, bound.
        let under = PodSpec::builder("demo")
            .host_path("tmp", "/tmp", HostPathType::Directory)
            .container(hello().mount("tmp", "/tmp", false))
            .build()
            .unwrap();
        inputs.state_on_disk = needs_disk_emptydir(&under);
        let planned = super::plan(&under, &inputs);
        assert_eq!(planned.private_tmpfs, None);
        assert!(bound(&planned));
    }

    #[test]
    fn the_plan_binds_each_path_once_parents_first() {
        let pod = PodSpec::builder("demo")
            .host_path("data", "/srv/data", HostPathType::Directory)
            .host_path("nested", "/srv/data/logs", HostPathType::DirectoryOrCreate)
            .container(
                ContainerSpec::new("a", "box")
                    .mount("data", "/data", true)
                    .mount("nested", "/logs", false)
                    .memory_limit(64 << 20),
            )
            .container(
                ContainerSpec::new("b", "hello.wasm")
                    .mount("data", "/d", true)
                    .memory_limit(32 << 20),
            )
            .build()
            .unwrap();
        let plan = plan(&pod, &inputs());
        let shown: Vec<String> = plan
            .binds
            .iter()
            .map(|b| {
                format!(
                    "{} {}{}{}",
                    b.path.display(),
                    if b.read_only { "ro" } else { "rw" },
                    if b.exec { ",exec" } else { "" },
                    if b.file { ",file" } else { "" }
                )
            })
            .collect();
        assert_eq!(
            shown,
            [
                "/srv/data ro",
                "/wasm/hello.wasm ro,file",
                "/images/box/latest ro",
                "/srv/data/logs rw",
                "/tmp/wpod/demo-7-w0 rw",
                "/home/u/.cache/wpod ro,exec",
            ]
        );
        assert_eq!(plan.hostname, "demo");
        assert_eq!(
            plan.limits.memory_bytes,
            Some((96 << 20) + RUNTIME_MEMORY_ALLOWANCE)
        );
        assert_eq!(plan.limits.cpu_millis, None);
        assert_eq!(plan.limits.pids, PIDS_LIMIT);
    }

    #[test]
    fn memory_is_unlimited_unless_every_container_has_a_limit_or_the_annotation_says() {
        let unlimited = PodSpec::builder("p")
            .container(ContainerSpec::new("a", "x.wasm").memory_limit(1 << 20))
            .container(ContainerSpec::new("b", "x.wasm"))
            .build()
            .unwrap();
        // Not every container has a limit: the default ceiling holds.
        let limits = plan(&unlimited, &inputs()).limits;
        assert_eq!(limits.memory_bytes, crate::container::host_memory_share());
        assert!(limits.memory_bytes.is_some());
        assert_eq!(limits.memory_source, MemorySource::HostShare);
        let annotated = PodSpec::builder("p")
            .annotation(MEMORY_ANNOTATION, "96Mi")
            .container(ContainerSpec::new("a", "x.wasm"))
            .build()
            .unwrap();
        assert_eq!(
            plan(&annotated, &inputs()).limits.memory_bytes,
            Some(96 << 20)
        );
        let bad = PodSpec::builder("p")
            .annotation(MEMORY_ANNOTATION, "lots")
            .container(ContainerSpec::new("a", "x.wasm"))
            .build()
            .unwrap_err();
        assert_eq!(
            bad.problems()[0].path,
            "metadata.annotations[wpod.dev/memory-limit]"
        );
        let huge = PodSpec::builder("p")
            .container(ContainerSpec::new("a", "x.wasm").memory_limit(u64::MAX / 2 + 1))
            .container(ContainerSpec::new("b", "x.wasm").memory_limit(u64::MAX / 2 + 1))
            .build()
            .unwrap();
        assert_eq!(plan(&huge, &inputs()).limits.memory_bytes, Some(u64::MAX));
    }

    #[test]
    fn only_host_network_shares_the_hosts_network_namespace() {
        let published = PodSpec::builder("p")
            .container(ContainerSpec::new("a", "x.wasm").host_port(80, 8080))
            .annotation(crate::manifest::EGRESS_ANNOTATION, "*")
            .build()
            .unwrap();
        assert_eq!(needs_host_network(&published), None);
        let mut host = published.clone();
        host.host_network = true;
        assert_eq!(needs_host_network(&host), Some("hostNetwork: true"));
    }
}
