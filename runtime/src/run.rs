//! The whole run of a manifest's pods, behind the OS wall or in this
//! process: what `wpod run` does, for any front end ([`run`]).
//!
//! Behind the wall, the `sandbox` module's supervisor forks one pod process
//! per pod, and each calls [`pod_process_main`] once its wall is up; without
//! the wall (`--isolation=none`, a refused wall under `auto`, other
//! systems), the pods run here on one tokio runtime. Either way the caller
//! gets a [`RunOutcome`]: each pod's final status, and the signal that
//! stopped the run, if one did.

use crate::job::{JobOutcome, Jobs};
use crate::manifest::PodSpec;
use crate::pod::{PodOptions, Runtime, RuntimeConfig};
use crate::sandbox::{ErrorReport, Isolation, PodProcess, Sandbox, SandboxConfig, SandboxError};
use crate::status::PodStatus;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Hears every pod's status as it changes, in the process that called
/// [`run`] (behind the wall, the supervisor passes on what the pod processes
/// report, and last the final status, also of a pod process that was
/// killed). Called from that process's only thread or its tokio runtime:
/// keep it quick.
pub trait StatusSink: Send + Sync + 'static {
    fn status(&self, pod: &str, status: &PodStatus);
}

/// Hears how compiling goes when a run has programs to compile first (the
/// first run of a large module takes seconds): called about every 100 ms
/// from the thread that called [`run`], then once with `done`.
pub trait CompileProgress: Send + Sync + 'static {
    /// `programs` (image references) are being compiled, for `elapsed` so far.
    fn compiling(&self, programs: &[String], elapsed: std::time::Duration);
    /// Compiling is over.
    fn done(&self);
    /// The pods have ended and `programs`, which ran from Winch's code,
    /// are still being compiled by Cranelift for later runs, for `elapsed`
    /// so far (zero the first time); `done` follows. The default says
    /// nothing.
    fn optimising(&self, programs: &[String], elapsed: std::time::Duration) {
        let _ = (programs, elapsed);
    }
}

/// Everything a run needs besides its pods, typed: the same values reach
/// the pod processes behind the wall (they are forks of the caller).
#[derive(Clone)]
pub struct RunConfig {
    /// How much of the OS wall to insist on.
    pub isolation: Isolation,
    /// The runtime's settings (the compile cache).
    pub runtime: RuntimeConfig,
    /// The pods' options: image path, egress, back-off, where their lines
    /// go ([`PodOptions::log_sink`]: behind the wall it runs in the pod
    /// process, which shares the caller's stdout and stderr), state folder.
    pub options: PodOptions,
    /// Where to write the host PIDs of the pods' processes once they run
    /// (behind the wall, PID 1 of each pod's namespaces, one a line in
    /// manifest order; without it, this process).
    pub pid_file: Option<PathBuf>,
    /// Stop the pods on SIGINT or SIGTERM, and say so in
    /// [`RunOutcome::signal`] (the CLI's Ctrl-C). Behind the wall this is
    /// always so: the supervisor forwards both signals to the pod processes.
    pub stop_on_signals: bool,
    /// The caller exits as soon as `run` returns: leave the async runtime
    /// and the engine to process exit instead of tearing them down
    /// (measured: most of a short pod's end). Leaks them otherwise.
    pub exit_after: bool,
    /// A folder of the caller's with one subfolder per pod
    /// (`<pod_files>/<pod name>`, made by the caller) that the pod may
    /// write, behind the wall too, where it is bound read-write: for a log
    /// sink that writes files ([`crate::FileLogs`]).
    pub pod_files: Option<PathBuf>,
    /// Hears every pod's status as it changes.
    pub status_sink: Option<Arc<dyn StatusSink>>,
    /// Hears how the compiling before a walled start goes.
    pub progress: Option<Arc<dyn CompileProgress>>,
}

impl std::fmt::Debug for RunConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunConfig")
            .field("isolation", &self.isolation)
            .field("runtime", &self.runtime)
            .field("options", &self.options)
            .field("pid_file", &self.pid_file)
            .field("stop_on_signals", &self.stop_on_signals)
            .field("exit_after", &self.exit_after)
            .field("pod_files", &self.pod_files)
            .finish_non_exhaustive()
    }
}

/// How a run ended.
#[derive(Debug)]
pub struct RunOutcome {
    /// The pods, in manifest order; a Job's pods after them, in the order
    /// they started.
    pub pods: Vec<PodOutcome>,
    /// The signal (SIGINT 2, SIGTERM 15) that stopped the run, if one did.
    pub signal: Option<i32>,
    /// The Jobs of the manifest, in its order.
    pub jobs: Vec<JobOutcome>,
}

impl RunOutcome {
    /// The exit status of `wpod run`, as `docker run` and `podman run` give
    /// theirs: 0 when every pod succeeded and every Job is complete (the
    /// pods a complete Job retried do not count); 128 + the signal that
    /// stopped the run (130 for Ctrl-C, 143 for SIGTERM); else the exit code
    /// of the container that failed first (by finish time, then manifest
    /// order), 1 when its low 8 bits are 0 or no container failed. 125, 126
    /// and 127 are wpod's own ([`crate::Fault::exit_code`]).
    pub fn exit_status(&self) -> u8 {
        if let Some(signal) = self.signal {
            return u8::try_from(128 + signal).unwrap_or(1);
        }
        // A complete Job's pods are its business: its failed tries count
        // for nothing once it is complete.
        let counted = |pod: &&PodOutcome| {
            !self.jobs.iter().any(|job| {
                job.condition == Some(crate::JobCondition::Complete) && job.pods.contains(&pod.name)
            })
        };
        let jobs_complete = self
            .jobs
            .iter()
            .all(|job| job.condition == Some(crate::JobCondition::Complete));
        if jobs_complete
            && self
                .pods
                .iter()
                .filter(counted)
                .all(|pod| pod.status.phase == crate::PodPhase::Succeeded)
        {
            return 0;
        }
        let first_failure = self
            .pods
            .iter()
            .filter(counted)
            .enumerate()
            .flat_map(|(index, pod)| {
                pod.status
                    .failed_containers()
                    .map(move |(order, termination)| {
                        ((termination.finished_at, index, order), termination)
                    })
            })
            .min_by_key(|(key, _)| *key);
        match first_failure {
            // Only the low 8 bits reach a parent, as with any process.
            Some((_, termination)) => match (termination.exit_code & 0xff) as u8 {
                0 => 1,
                code => code,
            },
            None => 1,
        }
    }

    /// The pods' statuses in Kubernetes' shape, with no field Kubernetes
    /// does not have: one pod's `PodStatus`, or a `List` of `Pod`s with
    /// their `status`, where the host PID of each pod's process behind the
    /// wall is the annotation `wpod.dev/pid` (for one pod, `--pid-file`
    /// gives it).
    ///
    /// # Errors
    ///
    /// None in practice: the statuses are plain data.
    pub fn to_json(&self) -> Result<serde_json::Value, serde_json::Error> {
        Ok(match self.pods.as_slice() {
            [pod] if self.jobs.is_empty() => serde_json::to_value(&pod.status)?,
            pods => {
                let items = pods
                    .iter()
                    .map(|pod| {
                        let mut metadata = serde_json::json!({"name": pod.name});
                        if let Some(pid) = pod.pid {
                            metadata["annotations"] =
                                serde_json::json!({"wpod.dev/pid": pid.to_string()});
                        }
                        Ok(serde_json::json!({
                            "apiVersion": "v1",
                            "kind": "Pod",
                            "metadata": metadata,
                            "status": serde_json::to_value(&pod.status)?,
                        }))
                    })
                    .collect::<Result<Vec<_>, serde_json::Error>>()?;
                let mut items = items;
                items.extend(self.jobs.iter().map(JobOutcome::to_json));
                serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items})
            }
        })
    }
}

/// One pod's end.
#[derive(Debug)]
pub struct PodOutcome {
    pub name: String,
    /// The host PID of the pod's process behind the wall (PID 1 of its
    /// namespaces); `None` without the wall.
    pub pid: Option<u32>,
    pub status: PodStatus,
}

/// Runs `pods` to their end, each behind the OS wall as `config.isolation`
/// says, or in this process.
///
/// Call it while the process has one thread (before any tokio runtime or
/// other thread exists): the walled pod processes are forks of this one,
/// and `unshare(CLONE_NEWUSER)` needs a single thread. Behind the wall,
/// SIGINT and SIGTERM are blocked on this thread and read from a signalfd
/// while the pods run.
///
/// # Examples
///
/// ```no_run
/// use wpod::{Isolation, PodOptions, PodSpec, RunConfig, RuntimeConfig};
///
/// let manifest = std::path::Path::new("pod.yaml");
/// let pods = PodSpec::from_yaml_file(manifest)?;
/// let outcome = wpod::run(
///     pods,
///     RunConfig {
///         isolation: Isolation::Auto,
///         runtime: RuntimeConfig::from_env(),
///         options: PodOptions::default(),
///         pid_file: None,
///         stop_on_signals: true,
///         exit_after: false,
///         pod_files: None,
///         status_sink: None,
///         progress: None,
///     },
/// )?;
/// std::process::exit(outcome.exit_status().into());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
///
/// The first pod that could not start, its input checked first
/// ([`SandboxError::fault`] tells whose fault); [`SandboxError::Unavailable`]
/// for [`Isolation::Required`] without the whole wall.
pub fn run(pods: Vec<PodSpec>, mut config: RunConfig) -> Result<RunOutcome, SandboxError> {
    pull_images(&pods, &config.options.registries)?;
    // A Job is its template: its first pods run, the rest as they end.
    let (mut jobs, pods) = Jobs::new(pods);
    // Pulled now, once: neither the pod processes nor the pods below pull.
    config.options.registries.offline = true;
    let sandbox = Sandbox::new(SandboxConfig {
        isolation: config.isolation,
        runtime: config.runtime.clone(),
        options: config.options.clone(),
        pid_file: config.pid_file.clone(),
        pod_files: config.pod_files.clone(),
        status_sink: config.status_sink.clone(),
        progress: config.progress.clone(),
    })?;
    if let Some(sandbox) = sandbox
        && let Some(run) = sandbox.run(&pods, &mut jobs, pod_process_main)?
    {
        return Ok(RunOutcome {
            jobs: jobs.outcomes(),
            pods: run
                .pods
                .into_iter()
                .map(|pod| PodOutcome {
                    name: pod.name,
                    pid: pod.pid,
                    status: pod.status,
                })
                .collect(),
            signal: run.signal,
        });
    }
    run_in_process(pods, jobs, config)
}

/// The images the pods pull from registries, before anything else, in a
/// child process (see `sandbox::in_child`): the pod processes forked later
/// must not inherit what the pull's async runtime set up.
fn pull_images(pods: &[PodSpec], registries: &crate::Registries) -> Result<(), SandboxError> {
    let from_registries = pods
        .iter()
        .flat_map(|pod| pod.all_containers())
        .any(|c| crate::is_registry_reference(&c.image));
    if registries.offline || !from_registries {
        return Ok(());
    }
    let pulled = crate::sandbox::in_child(|| {
        let tokio = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| PullFailed::from(ErrorReport::new(&e, crate::Fault::Host)))?;
        tokio
            .block_on(crate::registry::pull_for(pods, registries))
            .map_err(|error| PullFailed {
                report: ErrorReport::new(&error, error.fault()),
                at: match &error {
                    crate::Error::Image { pod, container, .. } => {
                        Some((pod.clone(), container.clone()))
                    }
                    _ => None,
                },
            })
    });
    pulled.map_err(|PullFailed { report, at }| {
        let message = report.to_string();
        let pods = pods
            .iter()
            .map(|pod| {
                let mut status = crate::pod::initial_status(pod);
                for container in status
                    .init_container_statuses
                    .iter_mut()
                    .chain(status.container_statuses.iter_mut())
                {
                    if at
                        .as_ref()
                        .is_some_and(|(p, c)| *p == pod.name && *c == container.name)
                    {
                        container.state = crate::ContainerState::Waiting {
                            reason: "ErrImagePull".into(),
                            message: Some(message.clone()),
                        };
                    }
                }
                PodOutcome {
                    name: pod.name.clone(),
                    pid: None,
                    status,
                }
            })
            .collect();
        SandboxError::Pulling { report, pods }
    })
}

/// A pull that failed in the child process: why, and for which pod and
/// container.
#[derive(serde::Serialize, serde::Deserialize)]
struct PullFailed {
    report: ErrorReport,
    at: Option<(String, String)>,
}

impl From<ErrorReport> for PullFailed {
    fn from(report: ErrorReport) -> PullFailed {
        PullFailed { report, at: None }
    }
}

/// The pods in this process, on one tokio runtime; a Job's next pods
/// start as its pods end.
fn run_in_process(
    pods: Vec<PodSpec>,
    mut jobs: Jobs,
    config: RunConfig,
) -> Result<RunOutcome, SandboxError> {
    let app_containers = pods.iter().map(|pod| pod.containers.len()).sum();
    let tokio = async_runtime(app_containers).map_err(|e| {
        SandboxError::Pod(crate::Error::Engine(format!(
            "cannot start the async runtime: {e}"
        )))
    })?;
    let exit_after = config.exit_after;
    let outcome = tokio.block_on(async move {
        let runtime = Runtime::new(config.runtime.clone())?;
        // Signal handlers first: a signal that arrives while pods start
        // must stop them, not kill the process with its folders in place.
        let signals = if config.stop_on_signals {
            Some(Signals::install().map_err(|e| {
                crate::Error::Engine(format!("cannot handle SIGINT and SIGTERM: {e}"))
            })?)
        } else {
            None
        };
        // The signal, once one came; the pods started so far stop with it:
        // gracefully, and at once on a second signal.
        let (signalled_tx, mut signalled) = tokio::sync::watch::channel(None::<i32>);
        let stoppers: Arc<std::sync::Mutex<Vec<(String, Stopper, Stopper)>>> = Arc::default();
        let signal = signals.map(|mut signals| {
            let stoppers = stoppers.clone();
            tokio::spawn(async move {
                let signal = signals.wait().await;
                let _ = signalled_tx.send(Some(signal));
                for (_, terminate, _) in stoppers.lock().expect("stoppers").iter() {
                    terminate();
                }
                let stoppers = stoppers.clone();
                tokio::spawn(async move {
                    signals.wait().await;
                    for (_, _, stop) in stoppers.lock().expect("stoppers").iter() {
                        stop();
                    }
                });
                signal
            })
        });
        // A Job's pods report their changes here (restarts count against
        // its backoff limit); every pod's task ends with its outcome.
        let (changes_tx, mut changes) =
            tokio::sync::mpsc::unbounded_channel::<(String, PodStatus)>();
        let mut tasks = tokio::task::JoinSet::new();
        let mut queue: std::collections::VecDeque<PodSpec> = pods.into();
        let mut order = Vec::new();
        let mut outcomes = Vec::new();
        let mut pid_file_written = false;
        loop {
            if signalled.borrow().is_some() {
                jobs.stop();
                queue.clear();
            }
            while let Some(pod) = queue.pop_front() {
                // A signal while programs compile (seconds, the first time)
                // ends the run at once: what started stops, the rest never
                // does.
                let started = tokio::select! {
                    started = runtime.start(pod, config.options.clone()) => Some(started?),
                    _ = signalled.wait_for(Option::is_some) => None,
                };
                let Some(handle) = started else {
                    jobs.stop();
                    queue.clear();
                    break;
                };
                let name = handle.name().to_owned();
                stoppers.lock().expect("stoppers").push((
                    name.clone(),
                    Box::new(handle.terminator()),
                    Box::new(handle.stopper()),
                ));
                if signalled.borrow().is_some() {
                    handle.terminate();
                }
                let control = config.pod_files.as_ref().and_then(|dir| {
                    serve_control(&dir.join(&name).join(crate::control::SOCKET), &handle)
                });
                let job_pod = jobs.job_of(&name).is_some();
                let sink = config.status_sink.clone();
                let changes = changes_tx.clone();
                order.push(name);
                // One task a pod, so that every pod's changes reach the
                // sink as they happen.
                tasks.spawn(async move {
                    let mut handle = handle;
                    let name = handle.name().to_owned();
                    if sink.is_some() || job_pod {
                        if let Some(sink) = &sink {
                            sink.status(&name, &handle.status());
                        }
                        while let Some(status) = handle.status_changed().await {
                            if let Some(sink) = &sink {
                                sink.status(&name, &status);
                            }
                            if job_pod {
                                let _ = changes.send((name.clone(), status));
                            }
                        }
                    }
                    let status = handle.wait().await;
                    end_control(control);
                    if let Some(sink) = &sink {
                        sink.status(&name, &status);
                    }
                    PodOutcome {
                        name,
                        pid: None,
                        status,
                    }
                });
            }
            if !pid_file_written {
                pid_file_written = true;
                if let Some(path) = &config.pid_file
                    && let Err(error) = std::fs::write(path, format!("{}\n", std::process::id()))
                {
                    tracing::warn!(path = %path.display(), %error, "could not write the pid file");
                }
            }
            if tasks.is_empty() {
                break;
            }
            let step = tokio::select! {
                Some((pod, status)) = changes.recv() => jobs.status(&pod, &status),
                joined = tasks.join_next() => match joined {
                    Some(Ok(outcome)) => {
                        let step = jobs.ended(&outcome.name, &outcome.status);
                        outcomes.push(outcome);
                        step
                    }
                    Some(Err(e)) => {
                        return Err(crate::Error::Engine(format!("a pod's task failed: {e}")));
                    }
                    None => break,
                },
            };
            for (name, terminate, _) in stoppers.lock().expect("stoppers").iter() {
                if step.stop.contains(name) {
                    terminate();
                }
            }
            queue.extend(step.start);
        }
        // In the order the pods started: the manifest's, then the Jobs'.
        outcomes.sort_by_key(|outcome| order.iter().position(|name| *name == outcome.name));
        // Cranelift's compiles of programs that ran from Winch's code end
        // before the run does, so that the next run finds them; a signal
        // skips them (the next run starts from Winch's code again).
        let waited = std::time::Instant::now();
        let mut optimising = runtime.compiling_in_background();
        let mut first = true;
        while !optimising.is_empty() && signalled.borrow().is_none() {
            if let Some(progress) = &config.progress {
                let names: Vec<String> =
                    optimising.iter().map(|p| p.display().to_string()).collect();
                let elapsed = if first {
                    std::time::Duration::ZERO
                } else {
                    waited.elapsed()
                };
                progress.optimising(&names, elapsed);
                first = false;
            }
            tokio::select! {
                () = tokio::time::sleep(std::time::Duration::from_millis(100)) => {}
                _ = signalled.wait_for(Option::is_some) => {}
            }
            optimising = runtime.compiling_in_background();
        }
        if let Some(progress) = &config.progress
            && waited.elapsed() > std::time::Duration::from_millis(100)
        {
            progress.done();
        }
        let signalled = match signal {
            Some(task) if task.is_finished() => task.await.ok(),
            Some(task) => {
                task.abort();
                None
            }
            None => None,
        };
        if let Some(path) = &config.pid_file {
            let _ = std::fs::remove_file(path);
        }
        if exit_after {
            std::mem::forget(runtime);
        }
        Ok::<_, crate::Error>(RunOutcome {
            pods: outcomes,
            signal: signalled,
            jobs: jobs.outcomes(),
        })
    });
    if exit_after {
        std::mem::forget(tokio);
    }
    Ok(outcome?)
}

/// A pod's control socket being served, and where.
type Control = (tokio::task::JoinHandle<()>, PathBuf);

/// Serves `exec` and `top` for the pod of `handle` at `socket` (Unix only;
/// a socket that cannot be bound only costs those commands, with a warning).
fn serve_control(socket: &Path, handle: &crate::PodHandle) -> Option<Control> {
    #[cfg(unix)]
    match crate::control::serve(socket, handle.execer()) {
        Ok(task) => Some((task, socket.to_owned())),
        Err(error) => {
            tracing::warn!(pod = %handle.name(), socket = %socket.display(), %error, "exec and top will not reach the pod: its control socket could not be bound");
            None
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (socket, handle);
        None
    }
}

/// Stops serving a pod that ended, and removes its socket.
fn end_control(control: Option<Control>) {
    if let Some((task, socket)) = control {
        task.abort();
        let _ = std::fs::remove_file(socket);
    }
}

/// Stops one started pod.
type Stopper = Box<dyn Fn() + Send + Sync>;

/// PID 1 of a pod's namespaces, its wall up: runs its one pod as
/// [`run_in_process`] does, reporting each status to the supervisor, and
/// returns the process's exit code.
pub(crate) fn pod_process_main(mut process: PodProcess) -> u8 {
    let tokio = match async_runtime(process.pod.containers.len()) {
        Ok(tokio) => tokio,
        Err(error) => {
            process.failed(&error, crate::Fault::Host);
            return 1;
        }
    };
    let code = tokio.block_on(async move {
        // PID 1 of a PID namespace gets no signal it has no handler for:
        // these handlers are what lets the supervisor's SIGTERM stop the pod.
        let signals = match Signals::install() {
            Ok(signals) => signals,
            Err(error) => {
                process.failed(&error, crate::Fault::Host);
                return 1;
            }
        };
        process.ready();
        process.start_dns_relay();
        let runtime = match Runtime::new(process.runtime_config.clone()) {
            Ok(runtime) => runtime,
            Err(error) => {
                process.failed(&error, error.fault());
                return 1;
            }
        };
        let options: PodOptions = process.options.clone();
        let started = runtime
            .start_with(process.pod.clone(), options, process.host_sockets.clone())
            .await;
        let mut handle = match started {
            Ok(handle) => handle,
            Err(error) => {
                process.failed(&error, error.fault());
                return 1;
            }
        };
        // The first signal stops the pod gracefully, a second one at once.
        let (terminate, stop) = (handle.terminator(), handle.stopper());
        let mut signals = signals;
        tokio::spawn(async move {
            signals.wait().await;
            terminate();
            signals.wait().await;
            stop();
        });
        let control = process
            .control_socket
            .as_deref()
            .and_then(|socket| serve_control(socket, &handle));
        let report_status = process.status_reporter();
        while let Some(status) = handle.status_changed().await {
            report_status(&status);
        }
        let status = handle.wait().await;
        end_control(control);
        process.ended(&status);
        // The process exits right after: nothing to tear down.
        std::mem::forget(runtime);
        0
    });
    std::mem::forget(tokio);
    code
}

/// The async runtime for `app_containers` containers that run at once: one
/// runs on the calling thread (as `Runtime::run_blocking` does); more get a
/// worker thread each, up to the number of CPUs. Spawning and joining
/// threads nobody uses is a good part of a short pod's start and end.
fn async_runtime(app_containers: usize) -> std::io::Result<tokio::runtime::Runtime> {
    if app_containers <= 1 {
        return tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build();
    }
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(app_containers.min(cpus))
        .enable_all()
        .build()
}

/// The signals that stop the pods: SIGINT (2), SIGTERM (15).
struct Signals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl Signals {
    /// Registers the handlers now (tokio's `ctrl_c()` would only on first poll).
    fn install() -> std::io::Result<Signals> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Signals {
                interrupt: signal(SignalKind::interrupt())?,
                terminate: signal(SignalKind::terminate())?,
            })
        }
        #[cfg(not(unix))]
        Ok(Signals {})
    }

    /// The next signal that comes.
    async fn wait(&mut self) -> i32 {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.interrupt.recv() => 2,
                _ = self.terminate.recv() => 15,
            }
        }
        #[cfg(not(unix))]
        {
            let _ = self;
            let _ = tokio::signal::ctrl_c().await;
            2
        }
    }
}
