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
//! status) → `pod` (the lifecycle) → `status` (Kubernetes' `PodStatus`).
//!
//! The library never prints, never installs a tracing subscriber or signal
//! handlers and never exits the process: it emits `tracing` events, and the
//! `wpod` binary (feature `cli`) does the rest.
//!
//! # Examples
//!
//! ```no_run
//! # async fn demo() -> Result<(), wpod::Error> {
//! use wpod::{ContainerSpec, PodOptions, PodSpec, RestartPolicy, Runtime, RuntimeConfig};
//!
//! let runtime = Runtime::new(RuntimeConfig { cache_dir: None })?;
//! let pod = PodSpec::builder("hello")
//!     .container(ContainerSpec::new("hello", "hello.wasm"))
//!     .restart_policy(RestartPolicy::Never)
//!     .build()?;
//! let status = runtime.run(pod, PodOptions::default()).await?;
//! assert_eq!(status.phase, wpod::PodPhase::Succeeded);
//! # Ok(()) }
//! ```

mod container;
mod image;
mod log;
mod manifest;
mod network;
mod pod;
mod status;
mod volume;

pub use image::{ImageError, ImagePath};
pub use log::{DiscardLogs, LogLine, LogSink, Stream};
pub use manifest::{
    ContainerSpec, EnvVar, HostPathType, ManifestError, PodBuilder, PodSpec, PortSpec, Problem,
    Protocol, Resources, RestartPolicy, VolumeMount, VolumeSource, VolumeSpec,
};
pub use network::{EgressPolicy, EgressRule, PortError};
pub use pod::{Backoff, PodEvent, PodHandle, PodOptions, Runtime, RuntimeConfig};
pub use status::{ContainerState, ContainerStatus, PodPhase, PodStatus, Termination, Timestamp};
pub use volume::VolumeError;

/// What can go wrong in wpod itself (a guest failing is a [`PodStatus`]).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error("pod `{pod}`, container `{container}`: {source}")]
    Image {
        pod: String,
        container: String,
        #[source]
        source: Box<ImageError>,
    },
    #[error("pod `{pod}`: {source}")]
    Volume {
        pod: String,
        #[source]
        source: Box<VolumeError>,
    },
    #[error("pod `{pod}`: {source}")]
    Port {
        pod: String,
        #[source]
        source: PortError,
    },
    #[error("wasmtime: {0}")]
    Engine(String),
}

impl Error {
    /// Whether the error is the user's input (manifest, image, volume), as
    /// opposed to wpod or the machine failing.
    pub fn is_bad_input(&self) -> bool {
        !matches!(self, Error::Engine(_))
    }
}

/// `Result` with wpod's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
