//! The `wpod` command: parses arguments, calls the library, prints results and
//! picks the exit code. Everything else lives in the library.

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use wpod::{
    Backoff, EgressPolicy, Fault, ImagePath, Isolation, LogLine, LogSink, PodOptions, PodPhase,
    PodProcess, PodSpec, PodStatus, Runtime, RuntimeConfig, Sandbox, SandboxConfig, Stream,
};

/// Run Kubernetes Pods whose containers are WebAssembly programs.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the pods of a manifest until they end.
    Run(RunArgs),
    /// Check a manifest without running it.
    Validate {
        /// The Pod manifest (YAML; several documents separated by `---`).
        manifest: PathBuf,
    },
}

#[derive(clap::Args)]
struct RunArgs {
    /// The Pod manifest (YAML; several documents separated by `---`).
    manifest: PathBuf,
    /// Print the final status: json or yaml, in the shape of a Kubernetes PodStatus.
    #[arg(short, long, value_enum)]
    output: Option<Format>,
    /// Print containers' output without the `[container]` tag.
    #[arg(long)]
    no_tags: bool,
    /// Compile every program afresh and write nothing to the compile cache.
    #[arg(long)]
    no_cache: bool,
    /// First restart back-off (doubles up to 5 min), e.g. `100ms`; the kubelet's is 10s.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
    restart_backoff: Duration,
    /// Allow egress to these destinations (CIDR or address, optional port;
    /// comma-separated, `*` for all), for every pod of the manifest.
    #[arg(long, value_name = "RULES")]
    allow_egress: Option<String>,
    /// The OS wall around each pod's process (Linux: namespaces, own root,
    /// cgroup, seccomp): auto (where the kernel allows, else a warning),
    /// required (refuse to run without all of it) or none.
    #[arg(long, value_enum, default_value = "auto")]
    isolation: IsolationArg,
    /// Write the host PID of each pod's process (PID 1 of its namespaces)
    /// here, one a line, once its wall is up.
    #[arg(long, value_name = "PATH")]
    pid_file: Option<PathBuf>,
}

#[derive(Clone, Copy, ValueEnum)]
enum IsolationArg {
    Auto,
    Required,
    None,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Json,
    Yaml,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    raise_descriptor_limit();
    let result = match cli.command {
        Command::Validate { manifest } => validate(&manifest),
        Command::Run(args) => run(args),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            let fault = if let Some(error) = error.downcast_ref::<wpod::Error>() {
                eprintln!("wpod: error: {error}");
                error.fault()
            } else if let Some(error) = error.downcast_ref::<wpod::SandboxError>() {
                eprintln!("wpod: error: {error}");
                error.fault()
            } else {
                // Others get their chain.
                eprintln!("wpod: error: {error:#}");
                if error.downcast_ref::<wpod::ManifestError>().is_some()
                    || error.downcast_ref::<BadInput>().is_some()
                {
                    Fault::Input
                } else {
                    Fault::Host
                }
            };
            ExitCode::from(fault.exit_code())
        }
    }
}

/// Raises the soft limit on open descriptors to the hard one, as the Go
/// runtime and systemd's services do: every container of a pod shares this
/// process's descriptors (each holds at most its own limit of them, see
/// `wpod.dev/descriptor-limit`), and a soft limit of 1024 would be reached by
/// one busy container.
fn raise_descriptor_limit() {
    #[cfg(unix)]
    {
        use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
        let limit = getrlimit(Resource::Nofile);
        if limit.current < limit.maximum {
            let raised = Rlimit {
                current: limit.maximum,
                maximum: limit.maximum,
            };
            if let Err(error) = setrlimit(Resource::Nofile, raised) {
                tracing::debug!(%error, "could not raise the descriptor limit");
            }
        }
    }
}

fn init_tracing() {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .without_time();
    let registry = tracing_subscriber::registry().with(fmt);
    // `WPOD_LOG` takes EnvFilter's whole syntax; without it a plain target
    // filter does (it parses no directives: this is on every pod's start).
    match tracing_subscriber::EnvFilter::try_from_env("WPOD_LOG") {
        Ok(filter) => registry.with(filter).init(),
        Err(_) => registry
            .with(
                tracing_subscriber::filter::Targets::new()
                    .with_target("wpod", tracing::Level::WARN),
            )
            .init(),
    }
}

/// Bad input found by the CLI itself (a flag's value).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct BadInput(String);

fn validate(manifest: &PathBuf) -> anyhow::Result<ExitCode> {
    let pods = PodSpec::from_yaml_file(manifest)?;
    for pod in &pods {
        println!(
            "{}: pod `{}` is valid ({} init, {} app containers)",
            manifest.display(),
            pod.name,
            pod.init_containers.len(),
            pod.containers.len()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let pods = PodSpec::from_yaml_file(&args.manifest)?;
    let egress = match &args.allow_egress {
        Some(rules) => {
            EgressPolicy::parse(rules).map_err(|e| BadInput(format!("--allow-egress: {e}")))?
        }
        None => EgressPolicy::default(),
    };
    let mut config = RuntimeConfig::from_env();
    if args.no_cache {
        config.cache_dir = None;
    }
    let backoff = Backoff {
        initial: args.restart_backoff,
        max: Backoff::KUBELET.max.max(args.restart_backoff),
    };
    let sandbox = Sandbox::new(SandboxConfig {
        isolation: match args.isolation {
            IsolationArg::Auto => Isolation::Auto,
            IsolationArg::Required => Isolation::Required,
            IsolationArg::None => Isolation::None,
        },
        image_path: ImagePath::from_env(),
        cache_dir: config.cache_dir.clone(),
        state_dir: PodOptions::default().state_dir,
        allow_egress: args.allow_egress.clone(),
        backoff,
        pid_file: args.pid_file.clone(),
        pass_through: Terminal::from_args(&args).to_pass_through(),
    })?;
    if let Some(sandbox) = sandbox
        && let Some(code) = run_behind_the_wall(&sandbox, &args, &pods)?
    {
        return Ok(code);
    }
    let app_containers = pods.iter().map(|pod| pod.containers.len()).sum();
    let tokio = async_runtime(app_containers).context("starting the async runtime")?;
    let code = tokio.block_on(async move {
        let runtime = Runtime::new(config)?;
        let options = PodOptions {
            image_path: ImagePath::from_env(),
            egress,
            backoff,
            // With -o, stdout holds only the status: containers' lines go to stderr.
            log_sink: Arc::new(Terminal::from_args(&args)),
            ..PodOptions::default()
        };
        // Signal handlers first: a signal that arrives while pods start
        // must stop them, not kill wpod with its scratch folders in place.
        let signals = Signals::install()?;
        let mut handles = Vec::new();
        for pod in pods {
            handles.push(runtime.start(pod, options.clone()).await?);
        }
        if let Some(path) = &args.pid_file {
            // Without the wall the pods' process is this one.
            std::fs::write(path, format!("{}\n", std::process::id()))
                .with_context(|| format!("writing the pid file {}", path.display()))?;
        }
        let stop_all: Vec<_> = handles.iter().map(|h| h.stopper()).collect();
        let signal = tokio::spawn(async move {
            let code = signals.wait().await;
            for stop in &stop_all {
                stop();
            }
            code
        });
        let mut statuses = Vec::new();
        for handle in handles {
            let name = handle.name().to_owned();
            statuses.push((name, handle.wait().await));
        }
        let signalled = if signal.is_finished() {
            signal.await.ok()
        } else {
            None
        };
        if let Some(path) = &args.pid_file {
            let _ = std::fs::remove_file(path);
        }
        report(&statuses, &[], args.output)?;
        leave_to_exit(runtime);
        Ok::<_, anyhow::Error>(exit_code(&statuses, signalled))
    })?;
    leave_to_exit(tokio);
    Ok(code)
}

/// The async runtime for `app_containers` containers that run at once: one
/// runs on the main thread (as `run_blocking` does); more get a worker thread
/// each, up to the number of CPUs. Spawning and joining threads nobody uses
/// is a good part of a short pod's start and end.
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

/// Leaves `value` to the end of the process instead of dropping it: the pods
/// have ended, their folders are gone and the output is written, so joining
/// tokio's threads and unmapping the engine's code would be work for nothing
/// (measured: most of a short pod's teardown).
fn leave_to_exit<T>(value: T) {
    std::mem::forget(value);
}

/// `wpod run`'s exit status, as `docker run`'s: 0 when every pod succeeded;
/// else the exit code of the container that failed first (1 for a pod that
/// failed with no failed container, or whose code is a multiple of 256);
/// 128 + the signal that stopped the pods (130 for Ctrl-C, 143 for SIGTERM).
/// 125, 126 and 127 are wpod's own ([`Fault::exit_code`]).
fn exit_code(statuses: &[(String, PodStatus)], signalled: Option<u8>) -> ExitCode {
    if let Some(code) = signalled {
        return ExitCode::from(code);
    }
    if statuses
        .iter()
        .all(|(_, status)| status.phase == PodPhase::Succeeded)
    {
        return ExitCode::SUCCESS;
    }
    let first_failure = statuses
        .iter()
        .enumerate()
        .filter_map(|(pod, (_, status))| {
            status
                .failed_containers()
                .map(move |(order, termination)| {
                    ((termination.finished_at, pod, order), termination)
                })
                .min_by_key(|(key, _)| *key)
        })
        .min_by_key(|(key, _)| *key);
    match first_failure {
        Some((_, termination)) => {
            // Only the low 8 bits reach a parent, as with any process.
            let code = (termination.exit_code & 0xff) as u8;
            ExitCode::from(if code == 0 { 1 } else { code })
        }
        None => ExitCode::FAILURE,
    }
}

/// The signals that stop the pods: Ctrl-C (exit 130), SIGTERM (exit 143).
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

    async fn wait(mut self) -> u8 {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.interrupt.recv() => 130,
                _ = self.terminate.recv() => 143,
            }
        }
        #[cfg(not(unix))]
        {
            let _ = &mut self;
            let _ = tokio::signal::ctrl_c().await;
            130
        }
    }
}

/// `wpod run` behind the OS wall: the pods run in their own processes, this
/// one supervises them (see the `sandbox` module). `None`: the kernel
/// refused the wall (`auto` warned): run the pods in-process.
fn run_behind_the_wall(
    sandbox: &Sandbox,
    args: &RunArgs,
    pods: &[PodSpec],
) -> anyhow::Result<Option<ExitCode>> {
    let Some(run) = sandbox.run(&args.manifest, pods, run_pod_process)? else {
        return Ok(None);
    };
    let statuses: Vec<(String, PodStatus)> = run
        .pods
        .iter()
        .map(|pod| (pod.name.clone(), pod.status.clone()))
        .collect();
    let pids: Vec<Option<u32>> = run.pods.iter().map(|pod| pod.pid).collect();
    report(&statuses, &pids, args.output)?;
    Ok(Some(exit_code(
        &statuses,
        run.signal.map(|signal| 128 + signal as u8),
    )))
}

/// PID 1 of a pod's namespaces, its wall up: runs its one pod as `run` does
/// and reports to the supervisor, which prints the status.
fn run_pod_process(process: PodProcess) -> u8 {
    let mut options = process.options.clone();
    options.log_sink = Arc::new(Terminal::from_pass_through(&process.pass_through));
    let tokio = match async_runtime(process.pod.containers.len()) {
        Ok(tokio) => tokio,
        Err(error) => {
            process.failed(&error, Fault::Host);
            return 1;
        }
    };
    let code = tokio.block_on(async move {
        // PID 1 of a PID namespace gets no signal it has no handler for:
        // these handlers are what lets the supervisor's SIGTERM stop the pod.
        let signals = match Signals::install() {
            Ok(signals) => signals,
            Err(error) => {
                process.failed(&error, Fault::Host);
                return 1;
            }
        };
        process.ready();
        let runtime = match Runtime::new(process.runtime_config.clone()) {
            Ok(runtime) => runtime,
            Err(error) => {
                process.failed(&error, error.fault());
                return 1;
            }
        };
        let mut handle = match runtime.start(process.pod.clone(), options).await {
            Ok(handle) => handle,
            Err(error) => {
                process.failed(&error, error.fault());
                return 1;
            }
        };
        let stop = handle.stopper();
        tokio::spawn(async move {
            signals.wait().await;
            stop();
        });
        let report_status = process.status_reporter();
        while let Some(status) = handle.status_changed().await {
            report_status(&status);
        }
        let status = handle.wait().await;
        process.ended(&status);
        leave_to_exit(runtime);
        0
    });
    leave_to_exit(tokio);
    code
}

fn report(
    statuses: &[(String, PodStatus)],
    pids: &[Option<u32>],
    format: Option<Format>,
) -> anyhow::Result<()> {
    for (name, status) in statuses {
        if status.reason.as_deref() == Some("Stopped") {
            // The user asked for it (Ctrl-C, SIGTERM): no container "failed".
            eprintln!("wpod: pod `{name}` stopped");
        } else if let Some((container, termination)) = status.failed_container() {
            let detail = termination
                .message
                .as_deref()
                .map(|m| format!(": {m}"))
                .unwrap_or_default();
            eprintln!(
                "wpod: pod `{name}` {:?}: container `{}` exited with code {} ({}){detail}",
                status.phase, container.name, termination.exit_code, termination.reason
            );
        } else if status.phase != PodPhase::Succeeded {
            eprintln!(
                "wpod: pod `{name}` {:?}{}",
                status.phase,
                status
                    .message
                    .as_deref()
                    .map(|m| format!(": {m}"))
                    .unwrap_or_default()
            );
        }
    }
    let Some(format) = format else { return Ok(()) };
    // wpod's own field: the host PID of the pod's process behind the wall.
    let with_pid = |index: usize, status: &PodStatus| -> anyhow::Result<serde_json::Value> {
        let mut value = serde_json::to_value(status)?;
        if let (Some(Some(pid)), Some(object)) = (pids.get(index), value.as_object_mut()) {
            object.insert("pid".into(), (*pid).into());
        }
        Ok(value)
    };
    let value = if statuses.len() == 1 {
        with_pid(0, &statuses[0].1)?
    } else {
        let items = statuses
            .iter()
            .enumerate()
            .map(|(index, (name, status))| Ok(serde_json::json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "status": with_pid(index, status)?})))
            .collect::<anyhow::Result<Vec<_>>>()?;
        serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items})
    };
    let text = match format {
        Format::Json => serde_json::to_string_pretty(&value)? + "\n",
        Format::Yaml => serde_yaml_ng::to_string(&value)?,
    };
    std::io::stdout().write_all(text.as_bytes())?;
    Ok(())
}

/// Prints containers' lines: stdout to stdout, stderr to stderr.
struct Terminal {
    tags: bool,
    all_to_stderr: bool,
}

impl Terminal {
    fn from_args(args: &RunArgs) -> Terminal {
        Terminal {
            tags: !args.no_tags,
            all_to_stderr: args.output.is_some(),
        }
    }

    /// The settings as words, for the pod process behind the wall (which
    /// inherits our stdout and stderr and prints the lines itself).
    fn to_pass_through(&self) -> Vec<String> {
        let mut words = Vec::new();
        if !self.tags {
            words.push("--no-tags".to_owned());
        }
        if self.all_to_stderr {
            words.push("--all-to-stderr".to_owned());
        }
        words
    }

    fn from_pass_through(words: &[String]) -> Terminal {
        Terminal {
            tags: !words.iter().any(|w| w == "--no-tags"),
            all_to_stderr: words.iter().any(|w| w == "--all-to-stderr"),
        }
    }
}

impl LogSink for Terminal {
    fn line(&self, line: LogLine<'_>) {
        let mut buffer = Vec::with_capacity(line.text.len() + line.container.len() + 4);
        if self.tags {
            buffer.extend_from_slice(b"[");
            buffer.extend_from_slice(line.container.as_bytes());
            buffer.extend_from_slice(b"] ");
        }
        buffer.extend_from_slice(line.text);
        buffer.push(b'\n');
        // A closed terminal is no reason to disturb the pod.
        let _ = match line.stream {
            Stream::Stdout if !self.all_to_stderr => std::io::stdout().lock().write_all(&buffer),
            Stream::Stdout => std::io::stderr().lock().write_all(&buffer),
            Stream::Stderr => std::io::stderr().lock().write_all(&buffer),
        };
    }
}
