//! `wpod run` and `wpod validate`: the run's settings from the flags, the
//! call into the library, and what is printed (containers' lines, the
//! compile progress, the statuses with `-o`).

use crate::BadInput;
use crate::images;
use clap::ValueEnum;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use wpod::{
    Backoff, CompilerChoice, EgressPolicy, ImagePath, Isolation, LogLine, LogSink, PodOptions,
    PodOutcome, PodPhase, PodSpec, RunConfig, RunOutcome, RuntimeConfig, Stream,
};

/// How the manifest is read: `run` and `validate` share these.
#[derive(clap::Args, Clone, Default)]
pub struct ReadArgs {
    /// A file of ConfigMaps and Secrets the pods refer to (repeatable, as
    /// podman kube play's); the manifest's own objects of the same name win.
    #[arg(long = "configmap", value_name = "FILE")]
    configmaps: Vec<PathBuf>,
    /// Refuse what would be skipped with a warning (a Service, an Ingress ...).
    #[arg(long)]
    strict: bool,
}

impl ReadArgs {
    pub fn options(&self) -> wpod::ReadOptions {
        wpod::ReadOptions {
            config_files: self.configmaps.clone(),
            strict: self.strict,
        }
    }
}

#[derive(clap::Args)]
pub struct RunArgs {
    /// The Pod manifest (YAML; several documents separated by `---`), or
    /// `-` for standard input.
    manifest: PathBuf,
    #[command(flatten)]
    read: ReadArgs,
    /// Print the final status: json or yaml, in the shape of a Kubernetes PodStatus.
    #[arg(short, long, value_enum)]
    output: Option<Format>,
    /// Print containers' output without the `[container]` tag.
    #[arg(long)]
    no_tags: bool,
    /// Compile every program afresh and write nothing to the compile cache.
    #[arg(long)]
    no_cache: bool,
    /// Run WASI 0.3 components too (wasmtime 48's experimental p3; every
    /// program then starts a little slower). Also `WPOD_WASIP3=1`.
    #[arg(long)]
    wasip3: bool,
    /// Which compiler makes programs' code: auto (a program never compiled
    /// runs at once from Winch's fast compile while Cranelift compiles it
    /// for later runs), cranelift or winch. Also `WPOD_COMPILER`.
    #[arg(long, value_enum)]
    compiler: Option<CompilerArg>,
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
    /// Attach this terminal's input to the container with `stdin: true`
    /// (as `kubectl run -i`); without it, every container's stdin is empty.
    #[arg(short, long, conflicts_with = "detach")]
    interactive: bool,
    /// With -d: stop and remove a detached pod of the same name first.
    #[arg(long, requires = "detach")]
    replace: bool,
    #[command(flatten)]
    registries: images::RegistryArgs,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum IsolationArg {
    Auto,
    Required,
    None,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Format {
    Json,
    Yaml,
}

/// `wpod validate`: the manifest, then (unless `--offline`, `on_host`
/// `None`) what it needs of this host: its images resolve to runnable
/// programs, its hostPaths are there, its hostPorts are free (a warning).
pub fn validate(
    manifest: &std::path::Path,
    read: &ReadArgs,
    on_host: Option<wpod::Registries>,
) -> anyhow::Result<ExitCode> {
    let (pods, _) = read_manifest(manifest, &read.options())?;
    if let Some(registries) = on_host {
        let warnings =
            wpod::check_host(&pods).map_err(|e| crate::InManifest::wrap(manifest, e.into()))?;
        for warning in warnings {
            eprintln!("wpod: warning: {}: {warning}", manifest.display());
        }
        let tokio = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        tokio
            .block_on(wpod::check_images(
                &pods,
                &ImagePath::from_env(),
                &registries,
            ))
            .map_err(|e| crate::InManifest::wrap(manifest, e.into()))?;
    }
    for pod in &pods {
        let what = match &pod.job {
            Some(job) => format!(
                "job `{}` is valid ({} completions, parallelism {}, backoffLimit {}; ",
                pod.name,
                job.completions
                    .map_or_else(|| "a work queue: no".into(), |n| n.to_string()),
                job.parallelism,
                job.backoff_limit
            ),
            None => format!("pod `{}` is valid (", pod.name),
        };
        println!(
            "{}: {what}{} init, {} app containers)",
            manifest.display(),
            pod.init_containers.len(),
            pod.containers.len()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The pods of `manifest`, and its text: the file, or standard input for
/// `-` (image paths then relative to the current folder, errors naming
/// `<stdin>`), as `kubectl apply -f -` reads it.
pub fn read_manifest(
    manifest: &std::path::Path,
    options: &wpod::ReadOptions,
) -> anyhow::Result<(Vec<PodSpec>, Vec<u8>)> {
    use std::io::Read as _;
    if manifest.as_os_str() != "-" {
        let pods = PodSpec::from_yaml_file_with(manifest, options)?;
        return Ok((pods, std::fs::read(manifest).unwrap_or_default()));
    }
    // One byte past the limit tells input that is too large.
    let mut bytes = Vec::new();
    std::io::stdin()
        .take(wpod::MAX_MANIFEST_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| BadInput(format!("reading the manifest from standard input: {e}")))?;
    let text = String::from_utf8(bytes)
        .map_err(|_| BadInput("<stdin>: the manifest is not UTF-8 text".into()))?;
    let pods = PodSpec::from_yaml_str_with(&text, "<stdin>", options)?;
    Ok((pods, text.into_bytes()))
}

/// `-i` attaches the input to one container: exactly one must ask for it.
fn check_one_stdin(manifest: &std::path::Path, pods: &[PodSpec]) -> anyhow::Result<()> {
    let asking: Vec<String> = pods
        .iter()
        .flat_map(|pod| {
            pod.all_containers()
                .filter(|c| c.stdin)
                .map(move |c| format!("{}/{}", pod.name, c.name))
        })
        .collect();
    match asking.as_slice() {
        [_] => Ok(()),
        [] => Err(BadInput(format!(
            "{}: -i: no container has `stdin: true`; add it to the container that reads the input",
            manifest.display()
        ))
        .into()),
        several => Err(BadInput(format!(
            "{}: -i: several containers have `stdin: true` ({}); the input goes to one: keep it on that one",
            manifest.display(),
            several.join(", ")
        ))
        .into()),
    }
}

pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let (pods, text) = read_manifest(&args.manifest, &args.read.options())?;
    if args.detach
        && let Some(job) = pods.iter().find(|pod| pod.job.is_some())
    {
        return Err(BadInput(format!(
            "{}: Job `{}`: a Job runs in the foreground for now (wpod run without -d); detached Jobs are not supported yet",
            args.manifest.display(),
            job.name
        ))
        .into());
    }
    if args.interactive && args.manifest.as_os_str() == "-" {
        return Err(BadInput(
            "-i with a manifest from standard input: the input cannot be both; give the manifest as a file".into(),
        )
        .into());
    }
    if args.interactive {
        check_one_stdin(&args.manifest, &pods)?;
    }
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
    runtime.wasip3 |= args.wasip3;
    runtime.compiler = match args.compiler {
        Some(CompilerArg::Auto) => CompilerChoice::Auto,
        Some(CompilerArg::Cranelift) => CompilerChoice::Cranelift,
        Some(CompilerArg::Winch) => CompilerChoice::Winch,
        None => match std::env::var("WPOD_COMPILER") {
            Ok(value) if !value.is_empty() => value
                .parse()
                .map_err(|e| BadInput(format!("WPOD_COMPILER: {e}")))?,
            _ => CompilerChoice::Auto,
        },
    };
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
                ..Terminal::default()
            }),
            attach_stdin: args.interactive,
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
        let names = wpod::run_detached(&text, pods, config, &store, args.replace)
            .map_err(|e| crate::InManifest::wrap(&args.manifest, e.into()))?;
        for name in names {
            println!("{name}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let outcome = match wpod::run(pods, config) {
        Ok(outcome) => outcome,
        Err(wpod::SandboxError::Pulling { report, pods }) => {
            // Nothing ran: with -o, the pods as they stand (Pending, the
            // container waiting with ErrImagePull), then the error.
            if let Some(format) = args.output {
                print_statuses(
                    &RunOutcome {
                        pods,
                        signal: None,
                        jobs: Vec::new(),
                    },
                    format,
                )?;
            }
            return Err(wpod::SandboxError::Pulling {
                report,
                pods: Vec::new(),
            }
            .into());
        }
        Err(error) => return Err(crate::InManifest::wrap(&args.manifest, error.into())),
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
    for job in &outcome.jobs {
        let counts = format!("{} succeeded, {} failed", job.succeeded, job.failed);
        match &job.condition {
            Some(wpod::JobCondition::Complete) => {
                eprintln!("wpod: job `{}` complete ({counts})", job.name);
            }
            Some(wpod::JobCondition::Failed { reason, message }) => {
                eprintln!(
                    "wpod: job `{}` failed: {reason}: {message} ({counts})",
                    job.name
                );
            }
            None => eprintln!("wpod: job `{}` stopped ({counts})", job.name),
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

/// `--compiler`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum CompilerArg {
    Auto,
    Cranelift,
    Winch,
}

/// A line on stderr (a terminal only) while programs compile for more than
/// half a second: which, and for how long. indicatif without its ticker
/// thread: the caller ticks it (the supervisor must keep one thread).
#[derive(Default)]
struct Progress {
    bar: std::sync::Mutex<Option<indicatif::ProgressBar>>,
}

impl Progress {
    /// Shows `message` on a spinner line: a terminal only, and only once
    /// the work has taken half a second.
    fn show(&self, elapsed: Duration, message: impl FnOnce() -> String) {
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
        bar.set_message(message());
        bar.tick();
    }
}

impl wpod::CompileProgress for Progress {
    fn compiling(&self, programs: &[String], elapsed: Duration) {
        self.show(elapsed, || {
            format!(
                "compiling {} ({:.1} s; a second run loads it from the cache)",
                programs.join(", "),
                elapsed.as_secs_f64()
            )
        });
    }

    fn optimising(&self, programs: &[String], elapsed: Duration) {
        self.show(elapsed, || {
            format!(
                "compiling {} with Cranelift for later runs ({:.1} s; Ctrl-C skips it)",
                programs.join(", "),
                elapsed.as_secs_f64()
            )
        });
    }

    fn done(&self) {
        if let Ok(mut bar) = self.bar.lock()
            && let Some(bar) = bar.take()
        {
            bar.finish_and_clear();
        }
    }
}

/// Prints containers' lines: stdout to stdout, stderr to stderr. A piece of
/// a line (a prompt) is printed at once; the rest of it when it ends.
#[derive(Default)]
struct Terminal {
    tags: bool,
    all_to_stderr: bool,
    /// Bytes of each container's unfinished line already printed.
    shown: std::sync::Mutex<std::collections::HashMap<(String, bool), usize>>,
}

impl Terminal {
    fn write(&self, stream: Stream, bytes: &[u8]) {
        // A closed terminal is no reason to disturb the pod.
        let _ = match stream {
            Stream::Stdout if !self.all_to_stderr => {
                let mut out = std::io::stdout().lock();
                out.write_all(bytes).and_then(|()| out.flush())
            }
            _ => std::io::stderr().lock().write_all(bytes),
        };
    }

    fn tag(&self, container: &str, buffer: &mut Vec<u8>) {
        if self.tags {
            buffer.extend_from_slice(b"[");
            buffer.extend_from_slice(container.as_bytes());
            buffer.extend_from_slice(b"] ");
        }
    }
}

impl LogSink for Terminal {
    fn line(&self, line: LogLine<'_>) {
        let key = (line.container.to_owned(), line.stream == Stream::Stderr);
        let shown = self
            .shown
            .lock()
            .ok()
            .and_then(|mut shown| shown.remove(&key))
            .unwrap_or(0);
        let mut buffer = Vec::with_capacity(line.text.len() + line.container.len() + 4);
        if shown == 0 {
            self.tag(line.container, &mut buffer);
        }
        buffer.extend_from_slice(line.text.get(shown..).unwrap_or_default());
        buffer.push(b'\n');
        self.write(line.stream, &buffer);
    }

    /// Events (a probe failed, a restart) go to stderr, always tagged.
    fn event(&self, _pod: &str, container: &str, message: &str) {
        let line = format!("[{container}] {message}\n");
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn partial(&self, piece: LogLine<'_>) {
        let key = (piece.container.to_owned(), piece.stream == Stream::Stderr);
        let Ok(mut shown) = self.shown.lock() else {
            return;
        };
        let already = shown.entry(key).or_insert(0);
        let mut buffer = Vec::with_capacity(piece.text.len() + piece.container.len() + 4);
        if *already == 0 {
            self.tag(piece.container, &mut buffer);
        }
        buffer.extend_from_slice(piece.text);
        *already += piece.text.len();
        self.write(piece.stream, &buffer);
    }
}
