//! The pod host: one walled process that runs the containers of a pod, each
//! a one-container wpod pod on one [`Runtime`](crate::Runtime), started and
//! stopped by requests over a socket from a caller that stays outside the
//! wall. It is what the containerd shim (`shim/`) runs per pod sandbox: the
//! shim talks to containerd, mounts each container's root filesystem and
//! opens its output FIFOs as containerd asks, whenever it asks, which a
//! walled process could not; the host runs the guests behind the OS wall.
//!
//! - [`PodHost::start`] executes a helper (the caller's own binary, whose
//!   `main` calls [`main_if_helper`] first) that puts up the wall as
//!   `wpod run`'s pod-init does (`serve.rs` has the steps): user, mount, PID,
//!   UTS, IPC and cgroup namespaces, a minimal root holding only the pod
//!   folder, the compile cache (read-only) and the files for name lookup,
//!   each at its own path, `pivot_root`, no capabilities, no_new_privs and
//!   the seccomp filter. Executed, not forked: the caller is a
//!   multi-threaded tokio process, and `unshare(CLONE_NEWUSER)` needs a
//!   process with one thread.
//! - Not the network namespace: the pod's network is the caller's.
//! - The pod folder is the caller's shared mount: the walled process holds a
//!   slave copy of it at the same path, so what the caller mounts there
//!   later (a container's root filesystem, its volumes) appears inside by
//!   propagation. No directory descriptor is ever passed in (one would lead
//!   out of the new root); only files (the output FIFOs), with `SCM_RIGHTS`.
//! - Requests and answers (`wire.rs`) are typed messages: start, stop, exec,
//!   usage; the host reports each container's and exec's end.
//! - The compile cache is read-only inside, as for `wpod run`: a pod must
//!   not write code that other pods load. [`compile_ahead`] compiles a
//!   container's programs in a child process outside the wall first.
//! - The host ends when the caller closes its end or dies (the helper
//!   executed with `PR_SET_PDEATHSIG` from a thread that lives as long as
//!   it; the socket's end of file too). The caller learns the host's end
//!   from the same socket: [`HostEvent::Gone`].
//!
//! Files: this one has the types and the wall's plan, `client.rs` the
//! caller's side, `serve.rs` the helper's and PID 1's, `wire.rs` the
//! messages, `output.rs` the output FIFOs' writer.
//!
//! Not for embedders yet: the API is the shim's (hidden from the docs).

mod client;
mod output;
mod serve;
pub(in crate::sandbox) mod wire;

pub use client::{PodHost, compile_ahead};
pub use serve::main_if_helper;

use crate::manifest::{ContainerSpec, HostPathType, PodSpec, PortSpec, Protocol, RestartPolicy};
use crate::sandbox::{Bind, ErrorReport, Limits, MemorySource, Plan};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The first argument that makes the caller's binary the pod host's helper.
pub const HOST_ARG: &str = "--wpod-pod-host";
/// The first argument that makes the caller's binary the compiler child.
pub const COMPILE_ARG: &str = "--wpod-compile";
/// Where the helper finds its socket.
const HOST_FD: i32 = 3;
/// How long the wall and the runtime may take to come up.
const READY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// One container, as the pod host runs it: a one-container wpod pod whose
/// image is a folder `<image_root>/<namespace>/<id>` (`rootfs/` and
/// `image.json`), as data that crosses the socket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostedContainer {
    /// The pod's name (a DNS-1123 label).
    pub pod_name: String,
    /// The container's name in it (a DNS-1123 label).
    pub container_name: String,
    /// The image reference, looked up in `image_root`.
    pub image: String,
    pub image_root: PathBuf,
    /// Where relative paths of the pod are resolved.
    pub base_dir: PathBuf,
    /// The pod's private folder (its `/run/wpod`).
    pub state_dir: PathBuf,
    /// Folders given to the container, each at its destination.
    pub mounts: Vec<HostedMount>,
    pub memory_limit: Option<u64>,
    pub ports: Vec<HostedPort>,
}

/// A folder of the host given to the container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostedMount {
    pub source: PathBuf,
    pub destination: String,
    pub read_only: bool,
}

/// A port of the container (an HTTP component is served on one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostedPort {
    pub name: Option<String>,
    pub container_port: u16,
    pub udp: bool,
}

impl HostedContainer {
    /// The wpod pod: restartPolicy `Never` (restarts are the kubelet's), the
    /// network of the host process (`hostNetwork`), each mount a hostPath
    /// volume.
    ///
    /// # Errors
    ///
    /// [`crate::ManifestError`] when the pod is not valid (a bad name, a
    /// destination that is not absolute...).
    pub fn pod(&self) -> Result<PodSpec, crate::ManifestError> {
        let mut container = ContainerSpec::new(&self.container_name, &self.image);
        container.ports = (self.ports.iter())
            .map(|port| PortSpec {
                name: port.name.clone(),
                container_port: port.container_port,
                host_port: None,
                host_ip: None,
                protocol: if port.udp {
                    Protocol::Udp
                } else {
                    Protocol::Tcp
                },
            })
            .collect();
        if let Some(limit) = self.memory_limit {
            container = container.memory_limit(limit);
        }
        let mut builder = PodSpec::builder(&self.pod_name)
            .restart_policy(RestartPolicy::Never)
            .host_network(true)
            .base_dir(&self.base_dir);
        for (index, mount) in self.mounts.iter().enumerate() {
            let volume = format!("mount-{index}");
            builder = builder.host_path(volume.clone(), &mount.source, HostPathType::Directory);
            container = container.mount(volume, &mount.destination, mount.read_only);
        }
        builder.container(container).build()
    }
}

/// Settings of a pod host.
#[derive(Debug, Clone)]
pub struct HostConfig {
    /// The name `ps` shows for the walled process (`wpod pod NAME`).
    pub name: String,
    /// The pod's hostname, in its UTS namespace.
    pub hostname: String,
    /// The caller's shared mount, bound read-write at its own path.
    pub pod_folder: PathBuf,
    /// The binary to execute as the helper (its `main` calls
    /// [`main_if_helper`]): the caller's own, `/proc/self/exe`.
    pub program: PathBuf,
    pub runtime: crate::RuntimeConfig,
    /// The pod's cgroup, a directory per hierarchy, made by the caller:
    /// the host joins it before anything runs.
    pub cgroups: Vec<PathBuf>,
}

/// Why the pod host failed.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("starting the pod process ({}): {source}", program.display())]
    Spawn {
        program: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("talking to the pod process: {0}")]
    Channel(#[source] std::io::Error),
    #[error("the pod process could not put up its OS wall: {0}")]
    Wall(ErrorReport),
    #[error("the pod process did not come up within {}s", READY_TIMEOUT.as_secs())]
    Timeout,
    #[error("the pod process has ended")]
    Gone,
    /// A container could not start (its program not found, not runnable).
    #[error("{0}")]
    NotStarted(ErrorReport),
    #[error("the pod's cgroup `{path}`: {reason}")]
    Cgroup { path: String, reason: String },
}

impl HostError {
    /// The exit status of a container that could not start for it, as
    /// `wpod run`'s (125, 126, 127).
    pub fn exit_code(&self) -> i32 {
        match self {
            HostError::NotStarted(report) => i32::from(report.fault.exit_code()),
            _ => i32::from(crate::Fault::Host.exit_code()),
        }
    }
}

/// What the pod host tells of its own accord.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum HostEvent {
    /// A container ended.
    Exited {
        id: String,
        exit_code: i32,
        message: Option<String>,
    },
    /// An exec ended.
    ExecEnded {
        id: String,
        exec_id: String,
        exit_code: i32,
    },
    /// The pod process ended (killed, or failed): every container with it.
    /// The last event (the caller's own: the host cannot say it).
    Gone,
}

/// The pod's cgroup at the path an OCI spec names (`linux.cgroupsPath`, in
/// cgroupfs form: `/kubepods/pod<uid>/<sandbox id>`), below the kubelet's
/// cgroup of the pod, whose limits then apply to the pod host; made by the
/// caller before the host starts (the host joins it before it unshares),
/// with wpod's pids limit (`PIDS_LIMIT`, as `wpod run`'s pods have) and no other.
/// Dropped, it is removed, anything left in it killed first.
#[derive(Debug)]
pub struct HostCgroup(crate::sandbox::cgroup::PodCgroup);

impl HostCgroup {
    /// Makes the cgroup `path` in every hierarchy wpod uses (v1 memory,
    /// pids and cpu; or v2).
    ///
    /// # Errors
    ///
    /// [`HostError::Cgroup`] for a path in systemd's form
    /// (`slice:prefix:name`), or one that cannot be made.
    pub fn create(path: &str) -> Result<HostCgroup, HostError> {
        let (hierarchies, name) = Self::hierarchies(path)?;
        let limits = Limits {
            memory_bytes: None,
            memory_source: MemorySource::Unlimited,
            cpu_millis: None,
            pids: crate::sandbox::PIDS_LIMIT,
        };
        hierarchies
            .create(&name, &limits)
            .map(HostCgroup)
            .map_err(|error| HostError::Cgroup {
                path: path.to_owned(),
                reason: error.to_string(),
            })
    }

    /// Removes the cgroup `path` if it is there (one a killed caller left).
    pub fn remove(path: &str) {
        if let Ok((hierarchies, name)) = Self::hierarchies(path) {
            drop(HostCgroup(hierarchies.existing(&name)));
        }
    }

    /// Its directories, one per hierarchy: [`HostConfig::cgroups`].
    pub fn dirs(&self) -> Vec<PathBuf> {
        self.0.dirs()
    }

    fn hierarchies(path: &str) -> Result<(crate::sandbox::cgroup::Hierarchies, String), HostError> {
        let refused = |reason: &str| HostError::Cgroup {
            path: path.to_owned(),
            reason: reason.to_owned(),
        };
        let as_path = Path::new(path);
        let (Some(parent), Some(name)) = (as_path.parent(), as_path.file_name()) else {
            return Err(refused("not a cgroup path"));
        };
        if !as_path.is_absolute() || path.contains(':') {
            return Err(refused(
                "not a cgroupfs path (`/parent/name`); systemd's `slice:prefix:name` is not supported",
            ));
        }
        let hierarchies = crate::sandbox::cgroup::Hierarchies::below(parent)
            .map_err(|error| refused(&error.to_string()))?;
        Ok((hierarchies, name.to_string_lossy().into_owned()))
    }
}

/// Files bound read-only for name lookups (those that exist), as for a
/// `wpod run` pod on the host's network: the pod's network is the caller's.
const ETC_FILES: [&str; 2] = ["/etc/hosts", "/etc/resolv.conf"];

/// The wall of the pod host, as `sandbox::plan` makes `wpod run`'s: the
/// pod folder read-write, the compile cache read-only (exec: wasmtime maps
/// its code), the host's files for name lookup, each at its own path; no
/// network namespace; later mounts received from the host. (The limits are
/// the caller's cgroup's, not the plan's.)
fn plan(config: &HostConfig) -> Plan {
    let mut binds = vec![Bind {
        path: config.pod_folder.clone(),
        file: false,
        read_only: false,
        exec: false,
    }];
    if let Some(cache) = config.runtime.cache_dir.as_ref().filter(|dir| dir.is_dir()) {
        // Read-only: `compile_ahead` compiled what the pod runs.
        binds.push(Bind {
            path: cache.clone(),
            file: false,
            read_only: true,
            exec: true,
        });
    }
    for file in ETC_FILES.iter().map(PathBuf::from).filter(|p| p.exists()) {
        binds.push(Bind {
            path: file,
            file: true,
            read_only: true,
            exec: false,
        });
    }
    // Parents first, as `sandbox::plan` orders them.
    binds.sort_by_key(|b| (b.path.components().count(), b.path.clone()));
    Plan {
        hostname: config.hostname.clone(),
        net_namespace: false,
        binds,
        memory_volumes: Vec::new(),
        limits: Limits {
            memory_bytes: None,
            memory_source: MemorySource::Unlimited,
            cpu_millis: None,
            pids: crate::sandbox::PIDS_LIMIT,
        },
        resolv_conf: None,
        hosts: None,
        // The containers' private folders are in the pod folder.
        private_tmpfs: None,
        receive_mounts: true,
    }
}

#[cfg(test)]
mod tests {
    use super::wire::ToHost;
    use super::*;
    use rustix::fd::AsFd;

    fn config(cache: Option<PathBuf>) -> HostConfig {
        HostConfig {
            name: "sandbox".into(),
            hostname: "web-0".into(),
            pod_folder: "/run/c/wpod/k8s.io/sandbox".into(),
            program: "/proc/self/exe".into(),
            runtime: crate::RuntimeConfig {
                cache_dir: cache,
                ..Default::default()
            },
            cgroups: Vec::new(),
        }
    }

    #[test]
    fn the_wall_binds_the_pod_folder_the_cache_and_the_name_files_and_receives_mounts() {
        let cache = std::env::temp_dir();
        let plan = plan(&config(Some(cache.clone())));
        assert!(plan.receive_mounts);
        assert!(!plan.net_namespace);
        assert_eq!(plan.hostname, "web-0");
        let folder = (plan.binds.iter())
            .find(|b| b.path == Path::new("/run/c/wpod/k8s.io/sandbox"))
            .expect("the pod folder");
        assert!(!folder.read_only && !folder.exec && !folder.file);
        let cached = (plan.binds.iter())
            .find(|b| b.path == cache)
            .expect("the cache");
        assert!(cached.read_only && cached.exec);
        for bind in &plan.binds {
            let expected = [Path::new("/run/c/wpod/k8s.io/sandbox"), &cache];
            let name_file = ETC_FILES.iter().any(|f| bind.path == Path::new(f));
            assert!(
                expected.contains(&bind.path.as_path()) || (name_file && bind.read_only),
                "{bind:?}"
            );
        }
        // A cache that is not there is not bound.
        let without = super::plan(&config(Some("/nonexistent/wpod-cache".into())));
        assert!(without.binds.iter().all(|b| !b.exec));
    }

    #[test]
    fn a_hosted_container_is_a_one_container_pod_of_host_paths() {
        let container = HostedContainer {
            pod_name: "abc".into(),
            container_name: "web".into(),
            image: "k8s.io:abc".into(),
            image_root: "/p".into(),
            base_dir: "/p/k8s.io/abc".into(),
            state_dir: "/p/k8s.io/abc/wpod".into(),
            mounts: vec![HostedMount {
                source: "/p/k8s.io/abc/mounts/3".into(),
                destination: "/data".into(),
                read_only: true,
            }],
            memory_limit: Some(64 << 20),
            ports: vec![HostedPort {
                name: Some("http".into()),
                container_port: 8080,
                udp: false,
            }],
        };
        let pod = container.pod().unwrap();
        assert_eq!(pod.name, "abc");
        assert!(pod.host_network);
        assert_eq!(pod.restart_policy, RestartPolicy::Never);
        let spec = &pod.containers[0];
        assert_eq!(
            (spec.name.as_str(), spec.image.as_str()),
            ("web", "k8s.io:abc")
        );
        assert_eq!(spec.resources.memory_limit, Some(64 << 20));
        assert_eq!(spec.ports[0].container_port, 8080);
        assert_eq!(spec.volume_mounts[0].mount_path, "/data");
        assert!(spec.volume_mounts[0].read_only);
        assert!(matches!(
            &pod.volumes[0].source,
            crate::VolumeSource::HostPath { path, .. } if path == Path::new("/p/k8s.io/abc/mounts/3")
        ));
        // What the manifest refuses, the host refuses: a name that is no
        // DNS label.
        let bad = HostedContainer {
            container_name: "Not_A_Label".into(),
            ..container
        };
        assert!(bad.pod().is_err());
    }

    #[test]
    fn a_message_and_its_files_cross_the_socket_together() {
        let (ours, theirs) = wire::socket_pair().unwrap();
        let (read, write) = rustix::pipe::pipe().unwrap();
        let request = ToHost::Stop {
            id: "web".into(),
            force: true,
        };
        wire::send(ours.as_fd(), &request, &[write.as_fd()]).unwrap();
        drop(write);
        let (got, files) = wire::recv::<ToHost>(theirs.as_fd()).unwrap().unwrap();
        assert!(matches!(got, ToHost::Stop { ref id, force: true } if id == "web"));
        assert_eq!(files.len(), 1);
        rustix::io::write(&files[0], b"through").unwrap();
        drop(files);
        let mut buffer = [0u8; 16];
        let n = rustix::io::read(&read, &mut buffer).unwrap();
        assert_eq!(&buffer[..n], b"through");
        // The other end closed: the end of file, not an error.
        drop(ours);
        assert!(wire::recv::<ToHost>(theirs.as_fd()).unwrap().is_none());
    }
}
