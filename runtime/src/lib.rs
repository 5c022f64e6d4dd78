//! wpod runs Kubernetes Pods whose containers are WebAssembly programs.
//!
//! A pod is read from its manifest into a [`PodSpec`] (or built in code with
//! [`PodSpec::builder`]), then run by a [`Runtime`], which owns the wasmtime
//! engine shared by every container. [`Runtime::start`] checks everything a
//! pod needs (images, volumes) before any container runs, and returns a
//! [`PodHandle`]: events, status, logs, `wait` and `stop`.
//!
//! Data flows one way through the modules, each named for its noun:
//! `manifest` (YAML to [`PodSpec`]) → `image` (a reference to a compiled
//! program) → `volume` (host folders and preopens) → `network` (what sockets
//! a container may use) → `container` (one wasmtime store, run to an exit
//! status) → `pod` (the lifecycle) → `status` (Kubernetes' `PodStatus`) →
//! `sandbox` (the OS wall around a pod's process) → `run` ([`run`]: a manifest's pods,
//! walled or not, to their end).
//!
//! The library never prints, never installs a tracing subscriber and never
//! exits the process; it handles signals only when asked
//! ([`RunConfig::stop_on_signals`]) and in the pod processes it forks. It
//! emits `tracing` events, and the `wpod` binary (feature `cli`) does the
//! rest.
//!
//! # Examples
//!
//! ```
//! # // The smallest WASI command, `(module (func (export "_start")))`, and one that
//! # // spins forever, `(module (func (export "_start") (loop br 0)))`.
//! # fn wasm_file(name: &str, spin: bool) -> String {
//! #     let code: &[u8] = if spin { b"\x0a\x09\x01\x07\x00\x03\x40\x0c\x00\x0b\x0b" } else { b"\x0a\x04\x01\x02\x00\x0b" };
//! #     let mut bytes = b"\0asm\x01\0\0\0\x01\x04\x01\x60\0\0\x03\x02\x01\0\x07\x0a\x01\x06_start\0\0".to_vec();
//! #     bytes.extend_from_slice(code);
//! #     let path = std::env::temp_dir().join(format!("wpod-doc-{}-{name}.wasm", std::process::id()));
//! #     std::fs::write(&path, bytes).unwrap();
//! #     path.display().to_string()
//! # }
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use wpod::{ContainerSpec, PodOptions, PodPhase, PodSpec, RestartPolicy, Runtime, RuntimeConfig};
//!
//! // One runtime per process: it owns the engine every container shares
//! // (no disk cache here: `RuntimeConfig::from_env` finds wpod's).
//! let runtime = Runtime::new(RuntimeConfig::default())?;
//! // A pod from YAML (or built in code with `PodSpec::builder`).
//! let yaml = format!(
//!     "apiVersion: v1\nkind: Pod\nmetadata: {{name: hello}}\nspec:\n  restartPolicy: Never\n  containers:\n  - {{name: app, image: '{}'}}\n",
//!     wasm_file("hello", false),
//! );
//! let pod = PodSpec::from_yaml_str(&yaml, "hello.yaml")?.remove(0);
//! let status = runtime.run(pod, PodOptions::default()).await?;
//! assert_eq!(status.phase, PodPhase::Succeeded);
//! # Ok::<(), wpod::Error>(())
//! # }).unwrap();
//! ```
//!
//! Where to read next: [`PodSpec`] (the model and its validation), [`Runtime`]
//! and [`PodOptions`] (running), [`PodHandle`] (events, status, logs, stop),
//! [`PodStatus`] (the result), [`LogSink`] (containers' output).

mod container;
mod control;
mod detached;
mod epoch;
mod http;
mod image;
mod job;
mod log;
mod manifest;
mod network;
mod pod;
mod registry;
mod run;
mod sandbox;
mod state;
mod status;
mod volume;

pub use control::{ControlError, TopReport};
pub use detached::{PodStore, StoredPod, run_detached};
pub use http::DEFAULT_HTTP_CONCURRENCY;
pub use image::{CompilerChoice, ImageError, ImagePath};
pub use job::{JobCondition, JobOutcome};
pub use log::{DiscardLogs, FileLogs, LogLine, LogSink, Stream};
pub use manifest::{
    ContainerSpec, DESCRIPTOR_ANNOTATION, Dns, EGRESS_ANNOTATION, EgressRuleError, EnvVar,
    HTTP_CONCURRENCY_ANNOTATION, Hook, HostAlias, HostPathType, HttpGet, JobSpec,
    MAX_MANIFEST_BYTES, MAX_NESTING_DEPTH, MEMORY_ANNOTATION, ManifestError, PodBuilder, PodSpec,
    PortSpec, Probe, ProbeAction, Problem, Protocol, PullPolicy, ReadOptions, Resources,
    RestartPolicy, VolumeMount, VolumeSource, VolumeSpec,
};
pub use network::{EgressPolicy, EgressRule, HostRule, PortError};
pub use pod::{
    Backoff, ContainerUsage, DEFAULT_CONTAINER_ANNOTATION, ExecError, ExecOutcome, ExecOutput,
    ExecRequest, Execer, PodEvent, PodHandle, PodOptions, ProbeKind, Runtime, RuntimeConfig,
};
pub use registry::{
    Flavour, ImageStore, Pruned, PullError, PullProgress, Registries, StoredImage, check_host,
    check_images, is_registry_reference, push_wasm,
};
pub use run::{CompileProgress, PodOutcome, RunConfig, RunOutcome, StatusSink, run};
/// The walled pod host that the containerd shim feeds over a socket (Linux
/// only; not for embedders yet).
#[cfg(target_os = "linux")]
#[doc(hidden)]
pub use sandbox::host as pod_host;
pub use sandbox::{ErrorReport, Isolation, SandboxError};
pub use status::{
    ContainerState, ContainerStatus, PodCondition, PodPhase, PodStatus, Termination, Timestamp,
};
pub use volume::VolumeError;

impl Error {
    /// A volume's error, with the field path of what is at fault.
    pub(crate) fn volume(pod: &PodSpec, source: VolumeError) -> Error {
        Error::Volume {
            pod: pod.name.clone(),
            field: source.field(pod),
            source: Box::new(source),
        }
    }
}

/// What can go wrong in wpod itself (a guest failing is a [`PodStatus`]).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error("(pod `{pod}`) {field}: {source}")]
    Image {
        pod: String,
        container: String,
        /// The image's field path, e.g. `spec.initContainers[0].image`.
        field: String,
        #[source]
        source: Box<ImageError>,
    },
    #[error("(pod `{pod}`) {field}: {source}")]
    Volume {
        pod: String,
        /// The field path of the volume or mount at fault, e.g.
        /// `spec.volumes[0].hostPath.path` (see [`VolumeError::field`]).
        field: String,
        #[source]
        source: Box<VolumeError>,
    },
    #[error("(pod `{pod}`) {source}")]
    Port {
        pod: String,
        #[source]
        source: PortError,
    },
    /// An HTTP component (`wasi:http/proxy`) whose port cannot be told: it
    /// has no TCP `containerPort`, or several and none named `http`.
    #[error("(pod `{pod}`) {field}: {problem}")]
    HttpPort {
        pod: String,
        container: String,
        field: String,
        problem: String,
    },
    #[error("wasmtime: {0}")]
    Engine(String),
}

impl Error {
    /// Whether the error is the user's input (manifest, image, volume), as
    /// opposed to wpod or the machine failing.
    pub fn is_bad_input(&self) -> bool {
        self.fault() != Fault::Host
    }

    /// Whose fault it is, for the exit status.
    pub fn fault(&self) -> Fault {
        match self {
            Error::Manifest(_)
            | Error::Volume { .. }
            | Error::Port { .. }
            | Error::HttpPort { .. } => Fault::Input,
            Error::Image { source, .. } => source.fault(),
            Error::Engine(_) => Fault::Host,
        }
    }
}

/// Why wpod could not run a pod, in the classes `docker run` and `podman run`
/// tell apart by their exit status ([`Fault::exit_code`]); a container that
/// ran and failed is not a fault but a [`PodStatus`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Fault {
    /// The user's input: the manifest, a volume, a port, a flag (125).
    Input,
    /// wpod itself or the machine (125, as `docker run`'s own errors).
    Host,
    /// An image that is there but is not a program wpod can run: not
    /// WebAssembly, not a WASI command, unreadable (126, "cannot execute").
    NotRunnable,
    /// An image, or the program its `command` names, not found (127).
    NotFound,
}

impl Fault {
    /// The exit status of `wpod run` for this fault: 125, 126 or 127.
    pub fn exit_code(self) -> u8 {
        match self {
            Fault::Input | Fault::Host => 125,
            Fault::NotRunnable => 126,
            Fault::NotFound => 127,
        }
    }
}

/// `Result` with wpod's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
