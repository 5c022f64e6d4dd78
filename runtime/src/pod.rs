//! Pods: the lifecycle. A [`Runtime`] holds what is built once per process
//! (the wasmtime engine, linkers, compile cache); [`Runtime::start`] prepares
//! a pod (images, volumes, network: every check before any container runs)
//! and hands back a [`PodHandle`] while one task drives the pod: init
//! containers one at a time, in order, each to completion; then the app
//! containers together, restarted as `restartPolicy` says with the kubelet's
//! back-off.

use crate::container::{self, ContainerPlan, Linkers, PodMemory, Program};
use crate::image::{Compiler, Image, ImageError, ImagePath};
use crate::log::{ContainerOutput, DiscardLogs, LogSink, LogStore, Stream};
use crate::manifest::{ContainerSpec, PodSpec, RestartPolicy};
use crate::network::{EgressPolicy, HostSockets, PodNetwork, PortSpace};
use crate::status::{ContainerState, ContainerStatus, PodPhase, PodStatus, Termination, Timestamp};
use crate::volume::Volumes;
use crate::{Error, Result};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use wasmtime::Engine;

/// Settings of a [`Runtime`], fixed for its life.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Where compiled programs are cached between runs; `None` disables the
    /// disk cache (programs are still compiled once per runtime).
    pub cache_dir: Option<PathBuf>,
}

impl RuntimeConfig {
    /// `WPOD_CACHE_DIR`, else `$XDG_CACHE_HOME/wpod`, else `~/.cache/wpod`
    /// (`%LOCALAPPDATA%\wpod\cache` on Windows).
    pub fn from_env() -> RuntimeConfig {
        let var = |name: &str| {
            std::env::var_os(name)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        let cache_dir = var("WPOD_CACHE_DIR")
            .or_else(|| var("XDG_CACHE_HOME").map(|d| d.join("wpod")))
            .or_else(|| {
                if cfg!(windows) {
                    var("LOCALAPPDATA").map(|d| d.join("wpod").join("cache"))
                } else {
                    None
                }
            })
            .or_else(|| var("HOME").map(|d| d.join(".cache").join("wpod")));
        RuntimeConfig { cache_dir }
    }
}

/// Options for one pod.
#[derive(Clone)]
pub struct PodOptions {
    /// Where image references are looked up (after the manifest's `images/`).
    pub image_path: ImagePath,
    /// Where images from registries are kept, and how registries are
    /// reached.
    pub registries: crate::registry::Registries,
    /// Where containers may connect outside the pod, added to what the pod's
    /// `wpod.dev/egress` annotation allows.
    pub egress: EgressPolicy,
    /// The restart back-off: first delay, doubled after each restart up to
    /// `max`. The kubelet's is 10 s to 5 min.
    pub backoff: Backoff,
    /// Receives every line the containers print.
    pub log_sink: Arc<dyn LogSink>,
    /// Where the pod's private folders (emptyDirs) are made: a folder of
    /// the caller's own, checked (not a symlink, not someone else's) before
    /// use. The default is `$XDG_RUNTIME_DIR/wpod`, else `$TMPDIR/wpod-<uid>`.
    pub state_dir: PathBuf,
    /// Folders the host has already prepared for some of the pod's
    /// `emptyDir` volumes, by volume name (the OS wall mounts a tmpfs for
    /// each `medium: Memory` one); wpod uses them as they are and leaves
    /// their removal to whoever made them.
    pub prepared_volumes: HashMap<String, PathBuf>,
    /// Whether this process holds the Wasm memories of all of the pod's
    /// containers together to the pod's memory ceiling: its
    /// `wpod.dev/memory-limit` annotation, else half the host's memory (a
    /// growth past it fails in the guest, which then ends `OOMKilled`). On
    /// by default; the OS wall turns it off, since there the pod's cgroup
    /// holds the same ceiling and counts the runtime too.
    pub memory_ceiling: bool,
}

impl Default for PodOptions {
    /// No image path beyond the manifest's folder, no egress, the kubelet's
    /// back-off, output discarded, state in the user's own state folder.
    fn default() -> PodOptions {
        PodOptions {
            image_path: ImagePath::default(),
            registries: crate::registry::Registries::default(),
            egress: EgressPolicy::default(),
            backoff: Backoff::KUBELET,
            log_sink: Arc::new(DiscardLogs),
            state_dir: crate::state::default_root(),
            prepared_volumes: HashMap::new(),
            memory_ceiling: true,
        }
    }
}

impl std::fmt::Debug for PodOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PodOptions")
            .field("image_path", &self.image_path)
            .field("egress", &self.egress)
            .field("backoff", &self.backoff)
            .field("state_dir", &self.state_dir)
            .finish_non_exhaustive()
    }
}

/// The restart back-off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
}

impl Backoff {
    /// 10 s doubling to 5 min, reset after 10 min of running.
    pub const KUBELET: Backoff = Backoff {
        initial: Duration::from_secs(10),
        max: Duration::from_secs(300),
    };
}

/// What happened in a pod, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum PodEvent {
    PhaseChanged {
        phase: PodPhase,
    },
    ContainerStarted {
        container: String,
        restart_count: u32,
    },
    ContainerExited {
        container: String,
        termination: Termination,
    },
    ContainerRestarting {
        container: String,
        restart_count: u32,
        backoff: Duration,
    },
}

/// Runs pods. Build one per process and share it: it owns the wasmtime
/// engine, the linkers and the compile cache, so each pod only instantiates.
///
/// # Examples
///
/// ```
/// # // The smallest WASI command, `(module (func (export "_start")))`, and one that
/// # // spins forever, `(module (func (export "_start") (loop br 0)))`.
/// # fn wasm_file(name: &str, spin: bool) -> String {
/// #     let code: &[u8] = if spin { b"\x0a\x09\x01\x07\x00\x03\x40\x0c\x00\x0b\x0b" } else { b"\x0a\x04\x01\x02\x00\x0b" };
/// #     let mut bytes = b"\0asm\x01\0\0\0\x01\x04\x01\x60\0\0\x03\x02\x01\0\x07\x0a\x01\x06_start\0\0".to_vec();
/// #     bytes.extend_from_slice(code);
/// #     let path = std::env::temp_dir().join(format!("wpod-doc-{}-{name}.wasm", std::process::id()));
/// #     std::fs::write(&path, bytes).unwrap();
/// #     path.display().to_string()
/// # }
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use wpod::{ContainerSpec, PodOptions, PodPhase, PodSpec, RestartPolicy, Runtime, RuntimeConfig};
///
/// let runtime = Runtime::new(RuntimeConfig { cache_dir: None })?;
/// let pod = PodSpec::builder("demo")
///     .container(ContainerSpec::new("app", wasm_file("app", false)))
///     .restart_policy(RestartPolicy::Never)
///     .build()?;
/// let status = runtime.run(pod, PodOptions::default()).await?;
/// assert_eq!(status.phase, PodPhase::Succeeded);
/// assert_eq!(status.container_statuses[0].terminated().unwrap().reason, "Completed");
/// # Ok::<(), wpod::Error>(())
/// # }).unwrap();
/// ```
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<RuntimeInner>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime").finish_non_exhaustive()
    }
}

struct RuntimeInner {
    engine: Engine,
    linkers: Linkers,
    compiler: Compiler,
}

impl RuntimeInner {
    /// Links a compiled program; a program that is not a WASI command is the
    /// image's error.
    fn link(
        &self,
        reference: &str,
        path: &std::path::Path,
        compiled: &crate::image::Compiled,
    ) -> std::result::Result<Program, ImageError> {
        self.linkers
            .link(compiled)
            .map_err(|message| ImageError::NotCommand {
                reference: reference.to_owned(),
                path: path.to_owned(),
                message,
            })
    }
}

/// How often running guests yield to the executor (and notice a stop).
const EPOCH_TICK: Duration = Duration::from_millis(10);

impl Runtime {
    /// Builds the engine and linkers.
    ///
    /// # Errors
    ///
    /// [`Error::Engine`] if wasmtime cannot be configured on this machine.
    pub fn new(config: RuntimeConfig) -> Result<Runtime> {
        let mut wasmtime_config = wasmtime::Config::new();
        wasmtime_config
            .epoch_interruption(true)
            .wasm_component_model(true)
            .parallel_compilation(true);
        let engine = Engine::new(&wasmtime_config).map_err(|e| Error::Engine(format!("{e:#}")))?;
        let linkers = Linkers::new(&engine);
        let compiler = Compiler::new(engine.clone(), config.cache_dir);
        start_epoch_ticker(&engine);
        Ok(Runtime {
            inner: Arc::new(RuntimeInner {
                engine,
                linkers,
                compiler,
            }),
        })
    }

    /// Prepares a pod and starts it: images are found and compiled (distinct
    /// programs in parallel), volumes created and checked, then the pod runs
    /// on the current tokio runtime until it ends or is stopped.
    ///
    /// # Errors
    ///
    /// Any problem found before a container runs: [`Error::Image`],
    /// [`Error::Volume`], [`Error::Port`], [`Error::Manifest`] (a pod built in code that does not validate).
    pub async fn start(&self, pod: PodSpec, options: PodOptions) -> Result<PodHandle> {
        self.start_with(pod, options, None).await
    }

    /// [`Runtime::start`] for a pod in a network namespace of its own, whose
    /// sockets of the host's namespace come from `host_sockets`.
    pub(crate) async fn start_with(
        &self,
        pod: PodSpec,
        options: PodOptions,
        host_sockets: Option<Arc<dyn HostSockets>>,
    ) -> Result<PodHandle> {
        if let Err(problems) = pod.validate() {
            return Err(Error::Manifest(crate::ManifestError::Invalid {
                file: PathBuf::from(format!("pod {}", pod.name)),
                problems,
            }));
        }
        crate::registry::pull_for(std::slice::from_ref(&pod), &options.registries).await?;
        let egress = pod_egress(&pod, &options.egress)?;
        let published = crate::network::published_ports(&pod);
        let ports = if pod.host_network {
            tracing::warn!(
                pod = %pod.name,
                "hostNetwork: the pod uses the host's network directly, with no port space of its own and no egress policy"
            );
            PortSpace::default()
        } else if host_sockets.is_some() {
            PortSpace::published_elsewhere(&published)
        } else {
            PortSpace::publish(&published).map_err(|source| Error::Port {
                pod: pod.name.clone(),
                source,
            })?
        };
        let network = PodNetwork {
            pod: pod.name.as_str().into(),
            host_network: pod.host_network,
            egress: Arc::new(egress),
            ports: Arc::new(ports),
            host_sockets,
            udp_egress: Arc::default(),
            udp_streams: Arc::default(),
        };
        let volumes = Volumes::prepare(&pod, &options.state_dir, &options.prepared_volumes)
            .map_err(|source| Error::Volume {
                pod: pod.name.clone(),
                source: Box::new(source),
            })?;
        let plans = self
            .plan_containers(&pod, &options, &volumes, &network)
            .await?;
        let (status_tx, status_rx) = watch::channel(initial_status(&pod));
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let stop = CancellationToken::new();
        let logs = Arc::new(LogStore::default());
        let run = PodRun {
            engine: self.inner.engine.clone(),
            pod_name: pod.name.as_str().into(),
            restart_policy: pod.restart_policy,
            init_count: pod.init_containers.len(),
            plans,
            backoff: options.backoff,
            sink: options.log_sink.clone(),
            logs: logs.clone(),
            status: status_tx,
            events: events_tx,
            stop: stop.clone(),
            evicted: std::sync::Mutex::new(None),
            volumes,
        };
        let task = tokio::spawn(Arc::new(run).lifecycle());
        Ok(PodHandle {
            name: pod.name,
            status: status_rx,
            events: events_rx,
            stop,
            logs,
            task: Some(task),
        })
    }

    /// Compiles the programs that the compile cache lacks and writes them
    /// there, several at once; a program that does not compile is left for
    /// the pod to report. The OS wall's supervisor calls this (in a child
    /// process, since compiling starts threads) so that the cache can be
    /// read-only behind the wall.
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    pub(crate) fn fill_cache(&self, programs: &[(String, PathBuf)]) {
        std::thread::scope(|scope| {
            for (reference, path) in programs {
                scope.spawn(move || {
                    // `compile` also refreshes the file's index entry, and
                    // finds by content what was compiled before.
                    if let Err(error) = self.inner.compiler.compile(reference, path) {
                        tracing::debug!(program = %path.display(), %error, "not compiled ahead");
                    }
                });
            }
        });
    }

    /// Starts the pod and waits for its end.
    ///
    /// # Errors
    ///
    /// As [`Runtime::start`].
    pub async fn run(&self, pod: PodSpec, options: PodOptions) -> Result<PodStatus> {
        Ok(self.start(pod, options).await?.wait().await)
    }

    /// [`Runtime::run`] for a host without an async runtime: runs the pod
    /// to its end on a single-threaded tokio runtime made for the call, and
    /// blocks until then. (Inside an async context, `.await` [`Runtime::run`]
    /// instead: tokio refuses to block a thread that drives tasks.)
    ///
    /// # Errors
    ///
    /// As [`Runtime::start`], and [`Error::Engine`] if no tokio runtime can
    /// be made.
    ///
    /// # Examples
    ///
    /// ```
    /// # let wasm = std::env::temp_dir().join(format!("wpod-doc-{}-blocking.wasm", std::process::id()));
    /// # std::fs::write(&wasm, b"\0asm\x01\0\0\0\x01\x04\x01\x60\0\0\x03\x02\x01\0\x07\x0a\x01\x06_start\0\0\x0a\x04\x01\x02\x00\x0b").unwrap();
    /// use wpod::{ContainerSpec, PodOptions, PodSpec, RestartPolicy, Runtime, RuntimeConfig};
    ///
    /// let runtime = Runtime::new(RuntimeConfig { cache_dir: None })?;
    /// let pod = PodSpec::builder("blocking")
    ///     .container(ContainerSpec::new("app", wasm.display().to_string()))
    ///     .restart_policy(RestartPolicy::Never)
    ///     .build()?;
    /// let status = runtime.run_blocking(pod, PodOptions::default())?;
    /// assert_eq!(status.phase, wpod::PodPhase::Succeeded);
    /// # Ok::<(), wpod::Error>(())
    /// ```
    pub fn run_blocking(&self, pod: PodSpec, options: PodOptions) -> Result<PodStatus> {
        let tokio = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::Engine(format!("cannot start a tokio runtime: {e}")))?;
        tokio.block_on(self.run(pod, options))
    }

    async fn plan_containers(
        &self,
        pod: &PodSpec,
        options: &PodOptions,
        volumes: &Volumes,
        network: &PodNetwork,
    ) -> Result<Vec<ContainerPlan>> {
        let image_error = |container: &ContainerSpec, source| image_error(pod, container, source);
        // Resolve every container's image and program first (cheap), ...
        let resolved: Vec<_> =
            resolve_containers(pod, &pod.base_dir, &options.image_path, &options.registries)?
                .into_iter()
                .map(|r| (r.spec, r.image, r.argv, r.env, r.working_dir, r.program))
                .collect();
        // ... then compile each distinct program once, in parallel. One
        // compiled before is loaded and linked right here: a blocking task
        // (a thread to start) would cost more than the load.
        let mut programs = HashMap::new();
        let mut compiling: HashMap<
            PathBuf,
            tokio::task::JoinHandle<std::result::Result<Program, ImageError>>,
        > = HashMap::new();
        for (spec, _, _, _, _, program) in &resolved {
            if compiling.contains_key(program) || programs.contains_key(program) {
                continue;
            }
            if let Some(compiled) = self.inner.compiler.cached(program) {
                let linked = self.inner.link(&spec.image, program, &compiled);
                programs.insert(program.clone(), linked);
                continue;
            }
            let inner = self.inner.clone();
            let (reference, path) = (spec.image.clone(), program.clone());
            compiling.insert(
                program.clone(),
                tokio::task::spawn_blocking(move || {
                    let compiled = inner.compiler.compile(&reference, &path)?;
                    inner.link(&reference, &path, &compiled)
                }),
            );
        }
        for (path, task) in compiling {
            let linked = task
                .await
                .map_err(|e| Error::Engine(format!("compile task failed: {e}")))?;
            programs.insert(path, linked);
        }
        let pod_memory = Arc::new(match pod.memory_limit {
            _ if !options.memory_ceiling => PodMemory::new(None, "none in this process"),
            Some(bytes) => PodMemory::new(
                Some(bytes),
                crate::sandbox::MemorySource::Annotation.explain(),
            ),
            None => PodMemory::new(
                container::host_memory_share(),
                crate::sandbox::MemorySource::HostShare.explain(),
            ),
        });
        let mut plans = Vec::new();
        for (spec, image, argv, env, working_dir, program) in resolved {
            let program = match programs.get(&program).expect("compiled above") {
                Ok(program) => program.clone(),
                Err(_) => {
                    // Report the error against the first container that uses it.
                    let error = programs
                        .remove(&program)
                        .expect("present")
                        .err()
                        .expect("an error");
                    return Err(image_error(spec, error));
                }
            };
            let preopens = volumes
                .preopens(spec, image.rootfs.as_deref())
                .map_err(|source| Error::Volume {
                    pod: pod.name.clone(),
                    source: Box::new(source),
                })?;
            plans.push(ContainerPlan {
                name: spec.name.clone(),
                argv,
                env,
                working_dir,
                preopens,
                memory_limit: spec.resources.memory_limit,
                pod_memory: pod_memory.clone(),
                descriptor_limit: pod
                    .descriptor_limit
                    .unwrap_or(container::DEFAULT_DESCRIPTOR_LIMIT),
                program,
                network: network.clone(),
            });
        }
        Ok(plans)
    }
}

/// One container's image and program, found on disk (no Wasm read yet).
pub(crate) struct Resolved<'a> {
    pub spec: &'a ContainerSpec,
    pub image: Image,
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub working_dir: String,
    /// The Wasm file that runs: the image's `.wasm`, or the program that
    /// `command[0]` (or the image's entrypoint) names inside its rootfs.
    pub program: PathBuf,
}

/// Finds every container's image and program, relative to `base_dir` and
/// along `image_path`: the one resolution, used by [`Runtime::start`] and by
/// the OS wall's supervisor (which binds the images into the pod's root and
/// compiles what the cache lacks).
pub(crate) fn resolve_containers<'a>(
    pod: &'a PodSpec,
    base_dir: &std::path::Path,
    image_path: &ImagePath,
    registries: &crate::registry::Registries,
) -> Result<Vec<Resolved<'a>>> {
    pod.all_containers()
        .map(|spec| resolve_container(pod, spec, base_dir, image_path, registries))
        .collect()
}

/// One container of `pod`: its image found and the program that runs.
pub(crate) fn resolve_container<'a>(
    pod: &PodSpec,
    spec: &'a ContainerSpec,
    base_dir: &std::path::Path,
    image_path: &ImagePath,
    registries: &crate::registry::Registries,
) -> Result<Resolved<'a>> {
    let image = Image::resolve(&spec.image, base_dir, image_path, registries)
        .map_err(|e| image_error(pod, spec, e))?;
    let image_name = image
        .wasm_file
        .as_ref()
        .and_then(|f| f.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| spec.image.clone());
    let (mut argv, env, working_dir) = ContainerPlan::command_line(spec, &image, &image_name);
    let program = image
        .program(&spec.image, &mut argv, &working_dir)
        .map_err(|e| image_error(pod, spec, e))?;
    Ok(Resolved {
        spec,
        image,
        argv,
        env,
        working_dir,
        program,
    })
}

/// An image error of one of `pod`'s containers, with its field path
/// (`spec.initContainers[0].image`).
pub(crate) fn image_error(pod: &PodSpec, container: &ContainerSpec, source: ImageError) -> Error {
    let position = |list: &[ContainerSpec]| list.iter().position(|c| std::ptr::eq(c, container));
    let field = match (position(&pod.init_containers), position(&pod.containers)) {
        (Some(index), _) => format!("spec.initContainers[{index}].image"),
        (_, Some(index)) => format!("spec.containers[{index}].image"),
        _ => "image".into(),
    };
    Error::Image {
        pod: pod.name.clone(),
        container: container.name.clone(),
        field,
        source: Box::new(source),
    }
}

/// The pod's egress policy (its `wpod.dev/egress` annotation, parsed and
/// checked with the manifest) plus the run's.
fn pod_egress(pod: &PodSpec, extra: &EgressPolicy) -> Result<EgressPolicy> {
    let mut egress = extra.clone();
    egress.allow.extend(pod.egress.allow.iter().cloned());
    Ok(egress)
}

/// `20Mi`, `1Gi`, or plain bytes: a byte quantity as Kubernetes writes it.
fn human_quantity(bytes: u64) -> String {
    match bytes {
        0 => "0".into(),
        b if b % (1 << 30) == 0 => format!("{}Gi", b >> 30),
        b if b % (1 << 20) == 0 => format!("{}Mi", b >> 20),
        b if b % (1 << 10) == 0 => format!("{}Ki", b >> 10),
        b => b.to_string(),
    }
}

/// One thread per process advances the engines' epochs; it ends with the
/// last runtime of its engine.
fn start_epoch_ticker(engine: &Engine) {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("wpod-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })
        .expect("spawning the epoch thread");
}

pub(crate) fn initial_status(pod: &PodSpec) -> PodStatus {
    let waiting = |spec: &ContainerSpec, reason: &str| {
        ContainerStatus::waiting(&spec.name, &spec.image, reason)
    };
    PodStatus {
        phase: PodPhase::Pending,
        start_time: Some(Timestamp::now()),
        reason: None,
        message: None,
        init_container_statuses: pod
            .init_containers
            .iter()
            .map(|c| waiting(c, "PodInitializing"))
            .collect(),
        container_statuses: pod
            .containers
            .iter()
            .map(|c| waiting(c, "PodInitializing"))
            .collect(),
    }
}

/// A running pod.
///
/// # Examples
///
/// Events as they happen, then a stop:
///
/// ```
/// # // The smallest WASI command, `(module (func (export "_start")))`, and one that
/// # // spins forever, `(module (func (export "_start") (loop br 0)))`.
/// # fn wasm_file(name: &str, spin: bool) -> String {
/// #     let code: &[u8] = if spin { b"\x0a\x09\x01\x07\x00\x03\x40\x0c\x00\x0b\x0b" } else { b"\x0a\x04\x01\x02\x00\x0b" };
/// #     let mut bytes = b"\0asm\x01\0\0\0\x01\x04\x01\x60\0\0\x03\x02\x01\0\x07\x0a\x01\x06_start\0\0".to_vec();
/// #     bytes.extend_from_slice(code);
/// #     let path = std::env::temp_dir().join(format!("wpod-doc-{}-{name}.wasm", std::process::id()));
/// #     std::fs::write(&path, bytes).unwrap();
/// #     path.display().to_string()
/// # }
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use wpod::{ContainerSpec, PodEvent, PodOptions, PodPhase, PodSpec, RestartPolicy, Runtime, RuntimeConfig};
///
/// let runtime = Runtime::new(RuntimeConfig { cache_dir: None })?;
/// let pod = PodSpec::builder("spinner")
///     .container(ContainerSpec::new("busy", wasm_file("busy", true)))
///     .restart_policy(RestartPolicy::Never)
///     .build()?;
/// let mut handle = runtime.start(pod, PodOptions::default()).await?;
/// while let Some(event) = handle.next_event().await {
///     println!("{event:?}");
///     if let PodEvent::ContainerStarted { container, .. } = &event {
///         assert_eq!(container, "busy");
///         // The guest loops forever: stop interrupts it.
///         handle.stop();
///     }
/// }
/// let status = handle.wait().await;
/// assert_eq!(status.phase, PodPhase::Failed);
/// assert_eq!(status.reason.as_deref(), Some("Stopped"));
/// # Ok::<(), wpod::Error>(())
/// # }).unwrap();
/// ```
#[derive(Debug)]
pub struct PodHandle {
    name: String,
    status: watch::Receiver<PodStatus>,
    events: mpsc::UnboundedReceiver<PodEvent>,
    stop: CancellationToken,
    logs: Arc<LogStore>,
    task: Option<tokio::task::JoinHandle<PodStatus>>,
}

impl PodHandle {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The pod's status now.
    pub fn status(&self) -> PodStatus {
        self.status.borrow().clone()
    }

    /// Waits until the status changes, then returns it.
    pub async fn status_changed(&mut self) -> Option<PodStatus> {
        self.status.changed().await.ok()?;
        Some(self.status.borrow_and_update().clone())
    }

    /// The next event; `None` once the pod has ended and every event was read.
    pub async fn next_event(&mut self) -> Option<PodEvent> {
        self.events.recv().await
    }

    /// The lines a container printed (stdout and stderr), the last 10,000.
    pub fn logs(&self, container: &str) -> Vec<String> {
        self.logs.lines(container)
    }

    /// A function that stops the pod, for use where the handle is not (a
    /// signal handler's task).
    pub fn stopper(&self) -> impl Fn() + Send + Sync + 'static {
        let stop = self.stop.clone();
        move || stop.cancel()
    }

    /// Stops the pod: running guests are interrupted at once (Wasm has no
    /// signals to catch), no container restarts, and the pod ends Failed with
    /// reason `Stopped`, its volumes cleaned up.
    pub fn stop(&self) {
        self.stop.cancel();
    }

    /// Waits for the pod to end and returns its final status.
    pub async fn wait(mut self) -> PodStatus {
        let task = self.task.take().expect("wait consumes the handle");
        match task.await {
            Ok(status) => status,
            Err(error) => {
                let mut status = self.status();
                status.phase = PodPhase::Failed;
                status.reason = Some("InternalError".into());
                status.message = Some(format!("the pod's task failed: {error}"));
                status
            }
        }
    }
}

impl Drop for PodHandle {
    /// A dropped handle stops its pod: nothing runs on unobserved.
    fn drop(&mut self) {
        if self.task.is_some() {
            self.stop.cancel();
        }
    }
}

/// The state one pod's task works on.
struct PodRun {
    engine: Engine,
    pod_name: Arc<str>,
    restart_policy: RestartPolicy,
    init_count: usize,
    /// Init containers first, then app containers.
    plans: Vec<ContainerPlan>,
    backoff: Backoff,
    sink: Arc<dyn LogSink>,
    logs: Arc<LogStore>,
    status: watch::Sender<PodStatus>,
    events: mpsc::UnboundedSender<PodEvent>,
    stop: CancellationToken,
    /// Why the pod was evicted (an emptyDir past its `sizeLimit`), if it was.
    evicted: std::sync::Mutex<Option<String>>,
    /// Dropped (emptyDirs removed) when the pod's task ends.
    volumes: Volumes,
}

/// How a container's run, restarts included, ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    Succeeded,
    Failed,
    Stopped,
}

/// A container restarted after running this long starts its back-off over.
const BACKOFF_RESET: Duration = Duration::from_secs(600);

impl PodRun {
    async fn lifecycle(self: Arc<Self>) -> PodStatus {
        let watcher = (!self.volumes.size_limited().is_empty())
            .then(|| tokio::spawn(self.clone().watch_volume_sizes()));
        let status = self.clone().run_all().await;
        if let Some(watcher) = watcher {
            // Awaited, not just aborted: the task holds the pod (and its
            // emptyDirs), which must be dropped now, not at some later poll.
            watcher.abort();
            let _ = watcher.await;
        }
        status
    }

    /// Evicts the pod, as the kubelet does, when an emptyDir on disk holds
    /// more than its `sizeLimit`: every container is stopped and the pod
    /// fails with reason `Evicted`. The folders are measured as `du` does,
    /// at most every 250 ms, and less often where that takes long (a tenth
    /// of the time at most).
    async fn watch_volume_sizes(self: Arc<Self>) {
        let mut interval = Duration::from_millis(250);
        loop {
            tokio::select! {
                () = tokio::time::sleep(interval) => {}
                () = self.stop.cancelled() => return,
            }
            let limited = self.volumes.size_limited().to_vec();
            let measured = tokio::task::spawn_blocking(move || {
                let started = Instant::now();
                let over = limited.into_iter().find_map(|(name, dir, limit)| {
                    let used = crate::volume::disk_usage(&dir);
                    (used > limit).then_some((name, used, limit))
                });
                (over, started.elapsed())
            })
            .await;
            let Ok((over, took)) = measured else { return };
            if let Some((name, used, limit)) = over {
                let message = format!(
                    "Usage of EmptyDir volume \"{name}\" exceeds the limit \"{}\" ({used} bytes used)",
                    human_quantity(limit)
                );
                tracing::warn!(pod = %self.pod_name, "evicted: {message}");
                *self.evicted.lock().expect("eviction lock") = Some(message);
                self.stop.cancel();
                return;
            }
            interval = Duration::from_millis(250).max(took * 10);
        }
    }

    async fn run_all(self: Arc<Self>) -> PodStatus {
        for index in 0..self.init_count {
            match self.run_container(index).await {
                Ended::Succeeded => continue,
                ended => return self.finish(ended, index),
            }
        }
        self.set_phase(PodPhase::Running);
        // One task per app container, so that they run in parallel.
        let tasks: Vec<_> = (self.init_count..self.plans.len())
            .map(|index| {
                let run = self.clone();
                tokio::spawn(async move { run.run_container(index).await })
            })
            .collect();
        let mut ended = Vec::with_capacity(tasks.len());
        for task in tasks {
            ended.push(task.await.unwrap_or(Ended::Failed));
        }
        let overall = if ended.contains(&Ended::Stopped) {
            Ended::Stopped
        } else if ended.contains(&Ended::Failed) {
            Ended::Failed
        } else {
            Ended::Succeeded
        };
        self.finish(overall, usize::MAX)
    }

    fn finish(&self, ended: Ended, failed_init: usize) -> PodStatus {
        self.status.send_modify(|status| {
            status.phase = if ended == Ended::Succeeded {
                PodPhase::Succeeded
            } else {
                PodPhase::Failed
            };
            let evicted = self.evicted.lock().expect("eviction lock").clone();
            match ended {
                Ended::Stopped if evicted.is_some() => {
                    status.reason = Some("Evicted".into());
                    status.message = evicted;
                }
                Ended::Stopped => {
                    status.reason = Some("Stopped".into());
                    status.message = Some("the pod was stopped".into());
                }
                Ended::Failed if failed_init != usize::MAX => {
                    status.reason = Some("InitContainerFailed".into());
                    status.message = Some(format!(
                        "init container `{}` failed",
                        self.plans[failed_init].name
                    ));
                }
                _ => {}
            }
        });
        let phase = self.status.borrow().phase;
        let _ = self.events.send(PodEvent::PhaseChanged { phase });
        tracing::info!(pod = %self.pod_name, ?phase, "pod ended");
        self.status.borrow().clone()
    }

    fn set_phase(&self, phase: PodPhase) {
        self.status.send_modify(|status| status.phase = phase);
        let _ = self.events.send(PodEvent::PhaseChanged { phase });
    }

    fn update(&self, index: usize, change: impl FnOnce(&mut ContainerStatus)) {
        self.status.send_modify(|status| {
            let entry = if index < self.init_count {
                &mut status.init_container_statuses[index]
            } else {
                &mut status.container_statuses[index - self.init_count]
            };
            change(entry);
        });
    }

    /// Runs container `index` with its restarts until it is done for good.
    async fn run_container(&self, index: usize) -> Ended {
        let plan = &self.plans[index];
        let is_init = index < self.init_count;
        let mut backoff = self.backoff.initial;
        let mut restart_count = 0u32;
        loop {
            let started_at = Timestamp::now();
            let clock = Instant::now();
            self.update(index, |status| {
                status.state = ContainerState::Running { started_at };
                status.started = true;
                status.ready = !is_init;
            });
            let _ = self.events.send(PodEvent::ContainerStarted {
                container: plan.name.clone(),
                restart_count,
            });
            tracing::debug!(pod = %self.pod_name, container = %plan.name, "container started");
            // Let whoever watches the status on this thread (a current-thread
            // runtime) see `Running` before the guest runs: a guest that is
            // killed (the cgroup's OOM killer) may get no other chance.
            tokio::task::yield_now().await;
            let output = |stream| ContainerOutput {
                pod: self.pod_name.clone(),
                container: plan.name.as_str().into(),
                stream,
                sink: self.sink.clone(),
                store: self.logs.clone(),
            };
            let run = container::run(
                plan,
                &self.engine,
                output(Stream::Stdout),
                output(Stream::Stderr),
            );
            let outcome = tokio::select! {
                outcome = run => Some(outcome),
                () = self.stop.cancelled() => None,
            };
            let stopped = outcome.is_none();
            let (exit_code, reason, message) = match outcome {
                Some(Ok(outcome)) => (
                    outcome.exit_code,
                    outcome.reason.to_owned(),
                    outcome.message,
                ),
                Some(Err(message)) => (128, "ContainerCannotRun".to_owned(), Some(message)),
                None => {
                    let evicted = self.evicted.lock().expect("eviction lock").clone();
                    let message = match evicted {
                        Some(why) => format!("the pod was evicted: {why}"),
                        None => "stopped by wpod".to_owned(),
                    };
                    (137, "Error".to_owned(), Some(message))
                }
            };
            let termination = Termination {
                exit_code,
                reason,
                message,
                started_at,
                finished_at: Timestamp::now(),
            };
            tracing::info!(pod = %self.pod_name, container = %plan.name, exit_code, reason = %termination.reason, "container exited");
            let succeeded = termination.succeeded();
            self.update(index, |status| {
                status.state = ContainerState::Terminated(termination.clone());
                status.ready = false;
            });
            let _ = self.events.send(PodEvent::ContainerExited {
                container: plan.name.clone(),
                termination: termination.clone(),
            });
            if stopped {
                return Ended::Stopped;
            }
            // Init containers restart only on failure, whatever the policy.
            let restart = match self.restart_policy {
                RestartPolicy::Never => false,
                RestartPolicy::OnFailure => !succeeded,
                RestartPolicy::Always => !is_init || !succeeded,
            };
            if !restart {
                return if succeeded {
                    Ended::Succeeded
                } else {
                    Ended::Failed
                };
            }
            if clock.elapsed() >= BACKOFF_RESET {
                backoff = self.backoff.initial;
            }
            restart_count += 1;
            self.update(index, |status| {
                status.last_state = Some(ContainerState::Terminated(termination));
                status.state = ContainerState::Waiting {
                    message: None,
                    reason: if succeeded {
                        "Completed".into()
                    } else {
                        "CrashLoopBackOff".into()
                    },
                };
                status.restart_count = restart_count;
            });
            let _ = self.events.send(PodEvent::ContainerRestarting {
                container: plan.name.clone(),
                restart_count,
                backoff,
            });
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                () = self.stop.cancelled() => {
                    self.update(index, |status| {
                        if let Some(last) = status.last_state.take() {
                            status.state = last;
                        }
                    });
                    return Ended::Stopped;
                }
            }
            backoff = (backoff * 2).min(self.backoff.max);
        }
    }
}
