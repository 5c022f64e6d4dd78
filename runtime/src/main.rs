//! The `wpod` command: parses arguments, calls the library, prints results and
//! picks the exit code. Everything else lives in the library.

use clap::{Parser, Subcommand, ValueEnum};
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
#[path = "cli/detached.rs"]
mod detached;
#[path = "cli/images.rs"]
mod images;

use wpod::{
    Backoff, EgressPolicy, Fault, ImagePath, Isolation, LogLine, LogSink, PodOptions, PodOutcome,
    PodPhase, PodSpec, RunConfig, RunOutcome, RuntimeConfig, Stream,
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
        /// Also check that every image resolves: local ones on disk (with
        /// their program), registry ones in their registry (nothing pulled).
        #[arg(long)]
        check_images: bool,
        #[command(flatten)]
        registries: images::RegistryArgs,
    },
    /// List detached pods (`run -d`): the running ones, or all with -a.
    Ps(detached::PsArgs),
    /// Print the logs of a detached pod's container.
    Logs(detached::LogsArgs),
    /// Stop detached pods: their containers are stopped, their state kept.
    Stop(detached::StopArgs),
    /// Remove detached pods: their state and logs (-f stops them first).
    Rm(detached::RmArgs),
    /// Show a detached pod as `kubectl get pod -o yaml` would: its status.
    Inspect(detached::InspectArgs),
    /// Stop and remove the detached pods of a manifest (as `podman kube down`).
    Down(detached::DownArgs),
    /// Pull images from their registries into the image store.
    Pull(images::PullArgs),
    /// Push a Wasm program to a registry as a Wasm OCI artifact.
    Push(images::PushArgs),
    /// List the images in the image store.
    Images(images::ImagesArgs),
    /// Remove images from the image store.
    Rmi(images::RmiArgs),
    /// Manage the image store.
    #[command(subcommand)]
    Image(images::ImageCommand),
    /// Print a completion script for a shell: `wpod completion bash > /etc/bash_completion.d/wpod`.
    Completion {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
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
    /// Run the pods in the background: print their names once they run and
    /// return; `wpod ps`, `logs`, `stop` and `rm` find them.
    #[arg(short, long, conflicts_with_all = ["output", "pid_file"])]
    detach: bool,
    /// With -d: stop and remove a detached pod of the same name first.
    #[arg(long, requires = "detach")]
    replace: bool,
    #[command(flatten)]
    registries: images::RegistryArgs,
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
        Command::Validate {
            manifest,
            check_images,
            registries,
        } => validate(&manifest, check_images.then(|| registries.registries())),
        Command::Run(args) => run(args),
        Command::Ps(args) => detached::ps(&args),
        Command::Logs(args) => detached::logs(&args),
        Command::Stop(args) => detached::stop(&args),
        Command::Rm(args) => detached::rm(&args),
        Command::Inspect(args) => detached::inspect(&args),
        Command::Down(args) => detached::down(&args),
        Command::Pull(args) => images::pull(&args),
        Command::Push(args) => images::push(&args),
        Command::Images(args) => images::images(&args),
        Command::Rmi(args) => images::rmi(&args),
        Command::Image(command) => images::image(&command),
        Command::Completion { shell } => {
            use clap::CommandFactory as _;
            clap_complete::generate(shell, &mut Cli::command(), "wpod", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
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
    // Colour on a terminal, unless NO_COLOR says otherwise (no-color.org).
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(colour)
        .without_time();
    let registry = tracing_subscriber::registry().with(fmt);
    let quiet =
        || tracing_subscriber::filter::Targets::new().with_target("wpod", tracing::Level::WARN);
    // `WPOD_LOG` takes EnvFilter's whole syntax; without it a plain target
    // filter does (it parses no directives: this is on every pod's start).
    match std::env::var("WPOD_LOG") {
        Ok(directives) if !directives.is_empty() => {
            match tracing_subscriber::EnvFilter::try_new(&directives) {
                Ok(filter) => registry.with(filter).init(),
                Err(error) => {
                    registry.with(quiet()).init();
                    tracing::warn!(
                        "WPOD_LOG={directives:?} is not understood ({error}); e.g. WPOD_LOG=wpod=debug"
                    );
                }
            }
        }
        _ => registry.with(quiet()).init(),
    }
}

/// Bad input found by the CLI itself (a flag's value).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadInput(pub String);

fn validate(
    manifest: &PathBuf,
    check_images: Option<wpod::Registries>,
) -> anyhow::Result<ExitCode> {
    let pods = PodSpec::from_yaml_file(manifest)?;
    if let Some(registries) = check_images {
        let tokio = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        tokio.block_on(wpod::check_images(
            &pods,
            &ImagePath::from_env(),
            &registries,
        ))?;
    }
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
    let mut runtime = RuntimeConfig::from_env();
    if args.no_cache {
        runtime.cache_dir = None;
    }
    let config = RunConfig {
        isolation: match args.isolation {
            IsolationArg::Auto => Isolation::Auto,
            IsolationArg::Required => Isolation::Required,
            IsolationArg::None => Isolation::None,
        },
        runtime,
        options: PodOptions {
            image_path: ImagePath::from_env(),
            registries: args.registries.registries(),
            egress,
            backoff: Backoff {
                initial: args.restart_backoff,
                max: Backoff::KUBELET.max.max(args.restart_backoff),
            },
            // With -o, stdout holds only the status: containers' lines go to stderr.
            log_sink: Arc::new(Terminal {
                tags: !args.no_tags,
                all_to_stderr: args.output.is_some(),
            }),
            ..PodOptions::default()
        },
        pid_file: args.pid_file.clone(),
        stop_on_signals: true,
        exit_after: true,
        pod_files: None,
        status_sink: None,
        progress: Some(Arc::new(Progress::default())),
    };
    if args.detach {
        let store = wpod::PodStore::new(&PodOptions::default().state_dir);
        for name in wpod::run_detached(&args.manifest, pods, config, &store, args.replace)? {
            println!("{name}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let outcome = match wpod::run(&args.manifest, pods, config) {
        Ok(outcome) => outcome,
        Err(wpod::SandboxError::Pulling { report, pods }) => {
            // Nothing ran: with -o, the pods as they stand (Pending, the
            // container waiting with ErrImagePull), then the error.
            if let Some(format) = args.output {
                print_statuses(&RunOutcome { pods, signal: None }, format)?;
            }
            return Err(wpod::SandboxError::Pulling {
                report,
                pods: Vec::new(),
            }
            .into());
        }
        Err(error) => return Err(error.into()),
    };
    report(&outcome, args.output)?;
    Ok(ExitCode::from(outcome.exit_status()))
}

/// Says on stderr why each pod that did not succeed ended; with `-o`,
/// prints the statuses on stdout in the shape of Kubernetes' `PodStatus`.
fn report(outcome: &RunOutcome, format: Option<Format>) -> anyhow::Result<()> {
    for PodOutcome { name, status, .. } in &outcome.pods {
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
            let message = status.message.as_deref().unwrap_or_default();
            eprintln!("wpod: pod `{name}` {:?}: {message}", status.phase);
        }
    }
    match format {
        Some(format) => print_statuses(outcome, format),
        None => Ok(()),
    }
}

/// The pods' statuses on stdout, in the shape of Kubernetes' `PodStatus`.
fn print_statuses(outcome: &RunOutcome, format: Format) -> anyhow::Result<()> {
    let value = outcome.to_json()?;
    let text = match format {
        Format::Json => serde_json::to_string_pretty(&value)? + "\n",
        Format::Yaml => serde_yaml_ng::to_string(&value)?,
    };
    std::io::stdout().write_all(text.as_bytes())?;
    Ok(())
}

/// A line on stderr (a terminal only) while programs compile for more than
/// half a second: which, and for how long. indicatif without its ticker
/// thread: the caller ticks it (the supervisor must keep one thread).
#[derive(Default)]
struct Progress {
    bar: std::sync::Mutex<Option<indicatif::ProgressBar>>,
}

impl wpod::CompileProgress for Progress {
    fn compiling(&self, programs: &[String], elapsed: Duration) {
        if elapsed < Duration::from_millis(500)
            || !std::io::IsTerminal::is_terminal(&std::io::stderr())
        {
            return;
        }
        let Ok(mut bar) = self.bar.lock() else { return };
        let bar = bar.get_or_insert_with(|| {
            let bar = indicatif::ProgressBar::new_spinner();
            bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
            if let Ok(style) = indicatif::ProgressStyle::with_template("{spinner} {msg}") {
                bar.set_style(style);
            }
            bar
        });
        bar.set_message(format!(
            "compiling {} ({:.1} s; a second run loads it from the cache)",
            programs.join(", "),
            elapsed.as_secs_f64()
        ));
        bar.tick();
    }

    fn done(&self) {
        if let Ok(mut bar) = self.bar.lock()
            && let Some(bar) = bar.take()
        {
            bar.finish_and_clear();
        }
    }
}

/// Prints containers' lines: stdout to stdout, stderr to stderr.
struct Terminal {
    tags: bool,
    all_to_stderr: bool,
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
