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
//! Not for embedders yet: the API is the shim's (hidden from the docs).

mod output;
mod serve;
mod wire;

pub use serve::main_if_helper;

use crate::manifest::{ContainerSpec, HostPathType, PodSpec, PortSpec, Protocol, RestartPolicy};
use crate::pod::ContainerUsage;
use crate::sandbox::{Bind, ErrorReport, Limits, MemorySource, Plan};
use rustix::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, oneshot};
use wire::{Channel, FromHost, Outputs, RuntimeSettings, ToHost};

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
/// with wpod's pids limit ([`crate::sandbox::PIDS_LIMIT`]) and no other.
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

/// The caller's handle on a running pod host.
#[derive(Debug)]
pub struct PodHost {
    channel: Arc<Channel>,
    pending: Arc<Pending>,
    seq: AtomicU64,
    /// The helper (the caller's child) and the walled process (its child).
    pid: u32,
    walled_pid: u32,
    ended: Mutex<Option<oneshot::Receiver<()>>>,
}

/// Answers awaited, by container id or sequence number.
#[derive(Debug, Default)]
struct Pending {
    starts: Mutex<HashMap<String, oneshot::Sender<Result<(), ErrorReport>>>>,
    usage: Mutex<HashMap<u64, oneshot::Sender<Vec<ContainerUsage>>>>,
}

impl PodHost {
    /// Executes the helper, which puts up the wall and starts the runtime;
    /// returns once it serves, with the receiver of its [`HostEvent`]s.
    /// Must be called inside a tokio runtime.
    ///
    /// # Errors
    ///
    /// [`HostError`] when the helper cannot start, its wall cannot be put up
    /// (the report says which step and why), or it does not answer in time.
    pub async fn start(
        config: HostConfig,
    ) -> Result<(PodHost, mpsc::UnboundedReceiver<HostEvent>), HostError> {
        let (ours, theirs) = wire::socket_pair().map_err(HostError::Channel)?;
        let (pid, ended) = spawn_helper(&config.program, theirs)?;
        let channel = Arc::new(Channel::new(ours).map_err(HostError::Channel)?);
        let setup = ToHost::Setup(Box::new(wire::Setup {
            name: config.name.clone(),
            plan: plan(&config),
            cgroups: config.cgroups.clone(),
            runtime: RuntimeSettings::new(&config.runtime),
            caller: std::process::id(),
        }));
        channel
            .send(&setup, &[])
            .await
            .map_err(HostError::Channel)?;
        let walled_pid = tokio::time::timeout(READY_TIMEOUT, wait_ready(&channel))
            .await
            .map_err(|_| {
                kill(pid);
                HostError::Timeout
            })??;
        let (events, receiver) = mpsc::unbounded_channel();
        let pending = Arc::new(Pending::default());
        tokio::spawn(read_events(channel.clone(), pending.clone(), events));
        let host = PodHost {
            channel,
            pending,
            seq: AtomicU64::new(0),
            pid,
            walled_pid,
            ended: Mutex::new(Some(ended)),
        };
        Ok((host, receiver))
    }

    /// The helper's PID (the caller's child).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The walled process's PID, in the caller's PID namespace.
    pub fn walled_pid(&self) -> u32 {
        self.walled_pid
    }

    /// Starts container `id`, its output into `stdout` and `stderr` (FIFOs
    /// open for writing); returns once it runs. Its end comes as
    /// [`HostEvent::Exited`].
    ///
    /// # Errors
    ///
    /// [`HostError::NotStarted`] when it cannot start (the report names the
    /// program and why), [`HostError::Gone`] when the host has ended.
    pub async fn start_container(
        &self,
        id: &str,
        container: &HostedContainer,
        stdout: Option<OwnedFd>,
        stderr: Option<OwnedFd>,
    ) -> Result<(), HostError> {
        let (answer, answered) = oneshot::channel();
        self.pending
            .starts
            .lock()
            .expect("pending starts")
            .insert(id.to_owned(), answer);
        let outputs = Outputs {
            stdout: stdout.is_some(),
            stderr: stderr.is_some(),
        };
        let files: Vec<BorrowedFd<'_>> = stdout.iter().chain(&stderr).map(|f| f.as_fd()).collect();
        let request = ToHost::Start {
            id: id.to_owned(),
            container: Box::new(container.clone()),
            outputs,
        };
        if let Err(error) = self.channel.send(&request, &files).await {
            self.pending
                .starts
                .lock()
                .expect("pending starts")
                .remove(id);
            return Err(HostError::Channel(error));
        }
        // Our copies of the FIFOs: the host has its own now.
        drop((stdout, stderr));
        match answered.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(report)) => Err(HostError::NotStarted(report)),
            Err(_) => Err(HostError::Gone),
        }
    }

    /// Stops container `id`: at once (`force`: exit 137), or gracefully
    /// (its `/run/wpod/terminating` appears; wpod interrupts it after 30 s).
    pub async fn stop(&self, id: &str, force: bool) {
        let request = ToHost::Stop {
            id: id.to_owned(),
            force,
        };
        let _ = self.channel.send(&request, &[]).await;
    }

    /// Runs `command` in running container `id` as `wpod exec` does; its end
    /// comes as [`HostEvent::ExecEnded`].
    ///
    /// # Errors
    ///
    /// [`HostError::Channel`] when the request cannot be sent.
    pub async fn exec(
        &self,
        id: &str,
        exec_id: &str,
        command: Vec<String>,
        stdout: Option<OwnedFd>,
        stderr: Option<OwnedFd>,
    ) -> Result<(), HostError> {
        let outputs = Outputs {
            stdout: stdout.is_some(),
            stderr: stderr.is_some(),
        };
        let files: Vec<BorrowedFd<'_>> = stdout.iter().chain(&stderr).map(|f| f.as_fd()).collect();
        let request = ToHost::Exec {
            id: id.to_owned(),
            exec_id: exec_id.to_owned(),
            command,
            outputs,
        };
        self.channel
            .send(&request, &files)
            .await
            .map_err(HostError::Channel)
    }

    /// Stops an exec (its run is dropped: exit 137).
    pub async fn stop_exec(&self, id: &str, exec_id: &str) {
        let request = ToHost::StopExec {
            id: id.to_owned(),
            exec_id: exec_id.to_owned(),
        };
        let _ = self.channel.send(&request, &[]).await;
    }

    /// What container `id` uses now (nothing when it does not run, or the
    /// host does not answer within a second).
    pub async fn usage(&self, id: &str) -> Vec<ContainerUsage> {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let (answer, answered) = oneshot::channel();
        self.pending
            .usage
            .lock()
            .expect("pending usage")
            .insert(seq, answer);
        let request = ToHost::Usage {
            seq,
            id: id.to_owned(),
        };
        if self.channel.send(&request, &[]).await.is_err() {
            return Vec::new();
        }
        let waited = tokio::time::timeout(std::time::Duration::from_secs(1), answered).await;
        self.pending
            .usage
            .lock()
            .expect("pending usage")
            .remove(&seq);
        waited.ok().and_then(Result::ok).unwrap_or_default()
    }

    /// Ends the host: its end of the socket closes, and it exits with every
    /// container; killed if it has not within 5 s. Returns once the helper
    /// has been reaped: nothing of the pod runs then.
    pub async fn shut_down(&self) {
        self.channel.shut_down();
        let ended = self.ended.lock().expect("host end").take();
        if let Some(ended) = ended
            && tokio::time::timeout(std::time::Duration::from_secs(5), ended)
                .await
                .is_err()
        {
            kill(self.pid);
            // The waiting thread reaps it; the kill is immediate.
        }
    }
}

/// Compiles the programs of `container` that the compile cache lacks, in a
/// child process outside the wall (the caller's binary, [`COMPILE_ARG`]),
/// so that the host finds them compiled in its read-only cache; returns
/// when the first tier is done (the child goes on with Cranelift when
/// tiered). Nothing happens without a cache, or when the cache has them;
/// a failure is left to the host, which compiles in memory.
pub async fn compile_ahead(
    program: &Path,
    container: &HostedContainer,
    runtime: &crate::RuntimeConfig,
) {
    // Looking is quick (the image's config, a stat, the cache's index):
    // done here, so that a warm cache costs no child.
    if serve::missing_programs(container, runtime).is_empty() {
        return;
    }
    let request = serve::CompileRequest {
        container: container.clone(),
        runtime: RuntimeSettings::new(runtime),
    };
    let Ok(input) = serde_json::to_vec(&request) else {
        return;
    };
    let program = program.to_owned();
    let (done, compiled) = oneshot::channel();
    // A thread of its own spawns it and waits for it: the child's
    // PR_SET_PDEATHSIG follows that thread.
    let spawned = std::thread::Builder::new()
        .name("wpod-compile".into())
        .spawn(move || {
            use std::io::{Read, Write};
            let mut command = std::process::Command::new(&program);
            command
                .arg(COMPILE_ARG)
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::null());
            // SAFETY: the closure runs in the forked child before exec and
            // makes one async-signal-safe system call (prctl).
            unsafe {
                std::os::unix::process::CommandExt::pre_exec(&mut command, || {
                    die_with_parent_raw();
                    Ok(())
                });
            }
            let Ok(mut child) = command.spawn() else {
                let _ = done.send(());
                return;
            };
            if let Some(mut stdin) = child.stdin.take() {
                let _ = stdin.write_all(&input);
            }
            let mut said = String::new();
            if let Some(mut stdout) = child.stdout.take() {
                let _ = stdout.read_to_string(&mut said);
            }
            let _ = done.send(());
            let _ = child.wait();
        });
    if spawned.is_ok() {
        let _ = compiled.await;
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

/// Executes the helper with `socket` as its fd [`HOST_FD`], from a thread
/// that then waits for it (its `PR_SET_PDEATHSIG` follows that thread).
/// Returns its PID and a receiver told when it has been reaped.
fn spawn_helper(
    program: &Path,
    socket: OwnedFd,
) -> Result<(u32, oneshot::Receiver<()>), HostError> {
    let (spawned, spawn_result) = std::sync::mpsc::channel();
    let (ended, ended_receiver) = oneshot::channel();
    let owned_program = program.to_owned();
    let thread = std::thread::Builder::new()
        .name("wpod-pod-host".into())
        .spawn(move || {
            let mut command = std::process::Command::new(&owned_program);
            command
                .arg(HOST_ARG)
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null());
            let raw = socket.as_raw_fd();
            // SAFETY: the closure runs in the forked child before exec and
            // makes only async-signal-safe system calls (fcntl, dup2,
            // prctl) on numbers it was given.
            unsafe {
                std::os::unix::process::CommandExt::pre_exec(&mut command, move || {
                    place_socket_raw(raw)?;
                    die_with_parent_raw();
                    Ok(())
                });
            }
            let child = command.spawn();
            drop(socket);
            match child {
                Ok(mut child) => {
                    let _ = spawned.send(Ok(child.id()));
                    let _ = child.wait();
                    let _ = ended.send(());
                }
                Err(error) => {
                    let _ = spawned.send(Err(error));
                }
            }
        });
    let spawn_error = |source| HostError::Spawn {
        program: program.to_owned(),
        source,
    };
    thread.map_err(spawn_error)?;
    match spawn_result.recv() {
        Ok(Ok(pid)) => Ok((pid, ended_receiver)),
        Ok(Err(error)) => Err(spawn_error(error)),
        Err(_) => Err(spawn_error(std::io::Error::other(
            "the spawning thread ended",
        ))),
    }
}

/// In the forked child: `fd` becomes [`HOST_FD`], inherited by the exec.
fn place_socket_raw(fd: i32) -> std::io::Result<()> {
    // SAFETY: fcntl and dup2 on plain numbers are async-signal-safe and
    // touch no memory; the child owns its copy of the descriptor table.
    let done = unsafe {
        if fd == HOST_FD {
            libc::fcntl(fd, libc::F_SETFD, 0)
        } else {
            libc::dup2(fd, HOST_FD)
        }
    };
    if done < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// In the forked child: `PR_SET_PDEATHSIG(SIGKILL)`.
fn die_with_parent_raw() {
    // SAFETY: prctl with integer arguments is async-signal-safe.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong);
    }
}

/// Sends SIGKILL to `pid`.
fn kill(pid: u32) {
    crate::sandbox::sys::send_signal(pid, libc::SIGKILL);
}

/// Waits for the helper's `Walled` and PID 1's `Ready` (in either order:
/// they are two processes); returns the walled PID.
async fn wait_ready(channel: &Channel) -> Result<u32, HostError> {
    let (mut walled_pid, mut ready) = (None, false);
    loop {
        match channel.recv::<FromHost>().await {
            Ok(Some((FromHost::Walled { pid }, _))) => walled_pid = Some(pid),
            Ok(Some((FromHost::Ready, _))) => ready = true,
            Ok(Some((FromHost::Failed(report), _))) => return Err(HostError::Wall(report)),
            Ok(Some(_)) => {}
            Ok(None) => return Err(HostError::Gone),
            Err(error) => return Err(HostError::Channel(error)),
        }
        if let (Some(pid), true) = (walled_pid, ready) {
            return Ok(pid);
        }
    }
}

/// Reads what the host says until it ends: answers to their askers, events
/// to `events`, and [`HostEvent::Gone`] last.
async fn read_events(
    channel: Arc<Channel>,
    pending: Arc<Pending>,
    events: mpsc::UnboundedSender<HostEvent>,
) {
    loop {
        let message = match channel.recv::<FromHost>().await {
            Ok(Some((message, _))) => message,
            Ok(None) | Err(_) => break,
        };
        match message {
            FromHost::Started { id } => answer_start(&pending, &id, Ok(())),
            FromHost::NotStarted { id, report } => answer_start(&pending, &id, Err(report)),
            FromHost::Event(event) => {
                let _ = events.send(event);
            }
            FromHost::Usage { seq, containers } => {
                let asker = pending.usage.lock().expect("pending usage").remove(&seq);
                if let Some(asker) = asker {
                    let _ = asker.send(containers);
                }
            }
            FromHost::Walled { .. } | FromHost::Ready | FromHost::Failed(_) => {}
        }
    }
    // The askers still waiting learn that the host is gone.
    pending.starts.lock().expect("pending starts").clear();
    pending.usage.lock().expect("pending usage").clear();
    let _ = events.send(HostEvent::Gone);
}

fn answer_start(pending: &Pending, id: &str, answer: Result<(), ErrorReport>) {
    let asker = pending.starts.lock().expect("pending starts").remove(id);
    if let Some(asker) = asker {
        let _ = asker.send(answer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
