//! Pods: the runtime and its handles. A [`Runtime`] holds what is built once per process
//! (the wasmtime engine, linkers, compile cache); [`Runtime::start`] prepares
//! a pod (images, volumes, network: every check before any container runs)
//! and hands back a [`PodHandle`] while one task drives the pod: init
//! containers one at a time, in order, each to completion; then the app
//! containers together, restarted as `restartPolicy` says with the kubelet's
//! back-off.

mod exec;
mod lifecycle;
mod prepare;
mod probe;

pub use probe::ProbeKind;
pub(crate) use probe::Probes;

pub use exec::{
    ContainerUsage, DEFAULT_CONTAINER_ANNOTATION, ExecError, ExecOutcome, ExecOutput, ExecRequest,
    Execer,
};
// The OS wall's supervisor (Linux) resolves the containers too.
#[cfg_attr(not(target_os = "linux"), allow(unused_imports))]
pub(crate) use prepare::{image_error, initial_status, resolve_container, resolve_containers};

use crate::container::{Linkers, Program};
use crate::image::{Compiler, ImageError, ImagePath, Tier};
use crate::log::{DiscardLogs, LogSink, LogStore};
use crate::manifest::PodSpec;
use crate::network::{EgressPolicy, HostSockets, PodNetwork, PortSpace};
use crate::status::{PodPhase, PodStatus, Termination};
use crate::volume::Volumes;
use crate::{Error, Result};
use lifecycle::PodRun;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use wasmtime::Engine;

/// Settings of a [`Runtime`], fixed for its life. The default: no disk
/// cache, WASI 0.3 off, tiered compilation.
#[derive(Debug, Clone, Default)]
pub struct RuntimeConfig {
    /// Where compiled programs are cached between runs; `None` disables the
    /// disk cache (programs are still compiled once per runtime).
    pub cache_dir: Option<PathBuf>,
    /// Run WASI 0.3 components (`--wasip3`, `WPOD_WASIP3=1`): turns on the
    /// component model's async ABI and the store's concurrency support,
    /// which wasmtime 48 calls experimental and which makes every program
    /// start and every HTTP request about 10 % slower (bench/README.md).
    /// Off, a WASI 0.3 component is refused with a message saying so.
    pub wasip3: bool,
    /// Which compiler makes programs' code: tiered (`auto`, the default),
    /// or one of wasmtime's two only (`--compiler`, `WPOD_COMPILER`).
    pub compiler: crate::CompilerChoice,
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
        let wasip3 = std::env::var_os("WPOD_WASIP3").is_some_and(|v| v == "1");
        // A value that is not a compiler's name is the CLI's to refuse
        // (`wpod run` checks it); here it is the default.
        let compiler = std::env::var("WPOD_COMPILER")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or_default();
        RuntimeConfig {
            cache_dir,
            wasip3,
            compiler,
        }
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
    /// Whether the container with `stdin: true` reads this process's
    /// standard input (`wpod run -i`); otherwise every stdin is empty.
    pub attach_stdin: bool,
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
            attach_stdin: false,
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
#[non_exhaustive]
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
    /// A probe attempt failed (`message` says why, in the kubelet's words).
    ProbeFailed {
        container: String,
        probe: ProbeKind,
        message: String,
    },
    /// The container's `ready` changed (its readiness probe, or its start).
    ReadyChanged {
        container: String,
        ready: bool,
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
/// let runtime = Runtime::new(RuntimeConfig::default())?;
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
    linkers: Linkers,
    /// The linkers of the Winch engine, made with it.
    winch_linkers: std::sync::OnceLock<Linkers>,
    compiler: Compiler,
    wasip3: bool,
}

/// wasmtime's settings, the same for every engine of a runtime (the one
/// that compiles and runs, and the pooled ones of HTTP containers), so that
/// a program compiled by one loads into the others.
fn engine_config(wasip3: bool, tier: Tier) -> wasmtime::Config {
    let mut config = wasmtime::Config::new();
    if tier == Tier::Winch {
        config.strategy(wasmtime::Strategy::Winch);
    }
    config
        .epoch_interruption(true)
        .wasm_component_model(true)
        // WASI 0.3 components use the component model's async ABI
        // (`stream`, `future`, async exports). Only on request: the
        // store's concurrency support it needs costs every program
        // (about 10 % of a start, and of an HTTP request). Said either
        // way, so that the engine's configuration (and so the compile
        // cache's key) never changes with a dependency's defaults.
        .concurrency_support(wasip3)
        .wasm_component_model_async(wasip3)
        .parallel_compilation(true);
    config
}

impl RuntimeInner {
    /// Whether a program's code is Cranelift's.
    fn is_cranelift(&self, program: &Program) -> bool {
        Engine::same(program.engine(), self.linkers.engine())
    }

    /// An HTTP container's program in an engine of its own whose pooling
    /// allocator holds `concurrency` instances, as `wasmtime serve` runs
    /// its components: an instance per request then takes a ready slot
    /// (memory, tables, fiber stack) instead of mapping, protecting and
    /// unmapping its own (bench/README.md: about a seventh of a request's
    /// CPU). The pool is sized from the component (its memories and tables
    /// per instance), so only pods that serve HTTP pay for it, and only as
    /// much as their concurrency needs. `None` (the program is served from
    /// the runtime's own engine, one allocation per instance) when the
    /// component's needs cannot be known or the pool cannot be made.
    fn pooled_http(
        &self,
        path: &std::path::Path,
        program: &Program,
        concurrency: usize,
    ) -> Option<crate::http::HttpPre<crate::container::P2State>> {
        let Program::Http(pre) = program else {
            return None;
        };
        let started = std::time::Instant::now();
        let component = pre.component();
        let needs = component.resources_required()?;
        let slots = u32::try_from(concurrency).ok()?.max(1);
        let mut pool = wasmtime::PoolingAllocationConfig::default();
        pool.total_component_instances(slots)
            .total_stacks(slots)
            // A component's core instances are not counted by wasmtime
            // (`resources_required` has no such figure); an instance slot
            // is a counter, not reserved memory, so be generous.
            .total_core_instances(slots.saturating_mul(32))
            .total_memories(slots.saturating_mul(needs.num_memories.max(1)))
            .max_memories_per_component(needs.num_memories.max(1))
            .total_tables(slots.saturating_mul(needs.num_tables.max(1)))
            .max_tables_per_component(needs.num_tables.max(1));
        let tier = if Engine::same(component.engine(), self.linkers.engine()) {
            Tier::Cranelift
        } else {
            Tier::Winch
        };
        let mut config = engine_config(self.wasip3, tier);
        config.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pool));
        let engine = match Engine::new(&config) {
            Ok(engine) => engine,
            Err(error) => {
                tracing::debug!(%error, "no pooling allocator for an HTTP container");
                return None;
            }
        };
        // From the compile cache's file when there is one (mapped, not
        // copied: 1.3 ms less for a small component than serializing it
        // again and loading the copy).
        let component = match self.compiler.artifact(path).filter(|(_, t)| *t == tier) {
            // SAFETY: as `Compiler::load_cached`: a wasmtime-serialized
            // component from wpod's private cache, compiled by an engine of
            // the same settings (wasmtime checks the header against this one).
            Some((file, _)) => unsafe {
                wasmtime::component::Component::deserialize_file(&engine, file)
            },
            None => {
                let bytes = component.serialize().ok()?;
                // SAFETY: the bytes are this process's own serialization of
                // a component compiled by an engine of the same settings (and
                // the same wasmtime): nothing another program could have written.
                unsafe { wasmtime::component::Component::deserialize(&engine, bytes) }
            }
        };
        let pre = match component.map_err(|e| e.to_string()).and_then(|component| {
            Linkers::new(&engine, self.wasip3)
                .link(&crate::image::Compiled::Component(component))
                .map_err(|e| e.to_string())
        }) {
            Ok(Program::Http(pre)) => pre,
            Ok(_) => return None,
            Err(error) => {
                tracing::debug!(%error, "an HTTP component does not load into its pooled engine");
                return None;
            }
        };
        crate::epoch::start_ticker(&engine);
        tracing::debug!(
            instances = slots,
            memories = needs.num_memories,
            elapsed = ?started.elapsed(),
            "an HTTP container's instances come from a pool"
        );
        Some(pre)
    }

    /// Links a compiled program; a program that is not a WASI command is the
    /// image's error.
    fn link(
        &self,
        reference: &str,
        path: &std::path::Path,
        compiled: &crate::image::Compiled,
    ) -> std::result::Result<Program, ImageError> {
        let linkers = if Engine::same(compiled.engine(), self.linkers.engine()) {
            &self.linkers
        } else {
            self.winch_linkers
                .get_or_init(|| Linkers::new(compiled.engine(), self.wasip3))
        };
        linkers
            .link(compiled)
            .map_err(|error| ImageError::NotCommand {
                reference: reference.to_owned(),
                path: path.to_owned(),
                message: error.to_string(),
            })
    }
}

impl Runtime {
    /// Builds the engine and linkers.
    ///
    /// # Errors
    ///
    /// [`Error::Engine`] if wasmtime cannot be configured on this machine.
    pub fn new(config: RuntimeConfig) -> Result<Runtime> {
        let engine = Engine::new(&engine_config(config.wasip3, Tier::Cranelift))
            .map_err(|e| Error::Engine(format!("{e:#}")))?;
        let linkers = Linkers::new(&engine, config.wasip3);
        let compiler = Compiler::new(
            engine.clone(),
            engine_config(config.wasip3, Tier::Winch),
            config.compiler,
            config.cache_dir,
        );
        crate::epoch::start_ticker(&engine);
        Ok(Runtime {
            inner: Arc::new(RuntimeInner {
                linkers,
                winch_linkers: std::sync::OnceLock::new(),
                compiler,
                wasip3: config.wasip3,
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
        let egress = prepare::pod_egress(&pod, &options.egress)?;
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
            host_aliases: pod.host_aliases.as_slice().into(),
        };
        let volumes = Volumes::prepare(&pod, &options.state_dir, &options.prepared_volumes)
            .map_err(|source| Error::volume(&pod, source))?;
        let plans = self
            .plan_containers(&pod, &options, &volumes, &network)
            .await?;
        let (status_tx, status_rx) = watch::channel(initial_status(&pod));
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let stop = CancellationToken::new();
        let terminating = CancellationToken::new();
        let logs = Arc::new(LogStore::default());
        let plans: Arc<[_]> = plans.into();
        let execer = Execer::new(
            self.inner.clone(),
            &pod,
            plans.clone(),
            status_rx.clone(),
            stop.clone(),
        );
        let run = PodRun {
            execer: execer.clone(),
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
            terminating: terminating.clone(),
            grace: pod.termination_grace_period,
            ended_by: std::sync::Mutex::new(None),
            active_deadline: pod.active_deadline,
            volumes,
        };
        let task = tokio::spawn(Arc::new(run).lifecycle());
        Ok(PodHandle {
            name: pod.name,
            status: status_rx,
            events: events_rx,
            stop,
            terminating,
            logs,
            execer,
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

    /// The programs Cranelift is still compiling in the background (they
    /// ran from Winch's code: [`crate::CompilerChoice::Auto`]). A process
    /// that ends before they are done leaves them for a later run to
    /// compile again.
    pub fn compiling_in_background(&self) -> Vec<PathBuf> {
        self.inner.compiler.compiling_in_background()
    }

    /// Waits until Cranelift's background compiles are done (blocking).
    pub fn finish_background_compiles(&self) {
        self.inner.compiler.finish_background();
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
    /// let runtime = Runtime::new(RuntimeConfig::default())?;
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
/// let runtime = Runtime::new(RuntimeConfig::default())?;
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
    terminating: CancellationToken,
    logs: Arc<LogStore>,
    execer: Execer,
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

    /// Runs programs in the pod's containers while it runs (`exec`), and
    /// reads what they use; usable where the handle is not.
    pub fn execer(&self) -> Execer {
        self.execer.clone()
    }

    /// What each container (init containers first) uses now.
    pub fn usage(&self) -> Vec<ContainerUsage> {
        self.execer.usage()
    }

    /// A function that stops the pod, for use where the handle is not (a
    /// signal handler's task).
    pub fn stopper(&self) -> impl Fn() + Send + Sync + 'static {
        let stop = self.stop.clone();
        move || stop.cancel()
    }

    /// A function that stops the pod gracefully ([`PodHandle::terminate`]),
    /// for use where the handle is not.
    pub fn terminator(&self) -> impl Fn() + Send + Sync + 'static {
        let terminating = self.terminating.clone();
        move || terminating.cancel()
    }

    /// Stops the pod as the kubelet does when a pod is deleted: each
    /// running container is told (its `/run/wpod/terminating` file
    /// appears, see the README) and given the pod's
    /// `terminationGracePeriodSeconds` to end by itself, then interrupted.
    /// No container restarts; the pod ends Failed with reason `Stopped`.
    /// [`PodHandle::stop`] after this interrupts at once.
    pub fn terminate(&self) {
        self.terminating.cancel();
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
