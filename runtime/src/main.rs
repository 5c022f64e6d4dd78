//! The `wpod` command: parses arguments, calls the library, prints results and
//! picks the exit code. Everything else lives in the library.

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
#[path = "cli/detached.rs"]
mod detached;
#[path = "cli/images.rs"]
mod images;
#[path = "cli/run.rs"]
mod run;
#[path = "cli/setup.rs"]
mod setup;

use wpod::Fault;

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
    Run(run::RunArgs),
    /// Check a manifest without running it.
    Validate {
        /// The Pod manifest (YAML; several documents separated by `---`), or
        /// `-` for standard input.
        manifest: PathBuf,
        #[command(flatten)]
        read: run::ReadArgs,
        /// Check the manifest alone: not its images (on disk, or in their
        /// registry), hostPaths and hostPorts, which are checked by default.
        #[arg(long)]
        offline: bool,
        /// What validate now does by default (kept for scripts).
        #[arg(long, hide = true, conflicts_with = "offline")]
        check_images: bool,
        #[command(flatten)]
        registries: images::RegistryArgs,
    },
    /// List detached pods (`run -d`): the running ones, or all with -a.
    Ps(detached::PsArgs),
    /// Print the logs of a detached pod's container.
    Logs(detached::LogsArgs),
    /// Run a program from a container's image inside a running detached pod:
    /// `wpod exec POD [-c CONTAINER] -- COMMAND [ARG...]`.
    Exec(detached::ExecArgs),
    /// Show what each container of a running detached pod uses: Wasm memory
    /// and CPU time.
    Top(detached::TopArgs),
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
    /// Print the man page (roff), or with --dir write one per command there:
    /// `wpod man | man -l -`.
    Man {
        /// Write `wpod.1` and `wpod-COMMAND.1` for every command here.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Print a completion script for a shell: `wpod completion bash > /etc/bash_completion.d/wpod`.
    Completion {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    setup::init_tracing();
    setup::raise_descriptor_limit();
    let result = match cli.command {
        Command::Validate {
            manifest,
            read,
            offline,
            check_images: _,
            registries,
        } => run::validate(
            &manifest,
            &read,
            (!offline).then(|| registries.registries()),
        ),
        Command::Run(args) => run::run(args),
        Command::Ps(args) => detached::ps(&args),
        Command::Logs(args) => detached::logs(&args),
        Command::Exec(args) => detached::exec(args),
        Command::Top(args) => detached::top(&args),
        Command::Stop(args) => detached::stop(&args),
        Command::Rm(args) => detached::rm(&args),
        Command::Inspect(args) => detached::inspect(&args),
        Command::Down(args) => detached::down(&args),
        Command::Pull(args) => images::pull(&args),
        Command::Push(args) => images::push(&args),
        Command::Images(args) => images::images(&args),
        Command::Rmi(args) => images::rmi(&args),
        Command::Image(command) => images::image(&command),
        Command::Man { dir } => man(dir.as_deref()),
        Command::Completion { shell } => {
            use clap::CommandFactory as _;
            clap_complete::generate(shell, &mut Cli::command(), "wpod", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            let fault = if let Some(error) = error.downcast_ref::<InManifest>() {
                eprintln!("wpod: error: {error}");
                error.fault
            } else if let Some(error) = error.downcast_ref::<wpod::ManifestError>() {
                // Its message holds its cause already: once.
                eprintln!("wpod: error: {error}");
                Fault::Input
            } else if let Some(error) = error.downcast_ref::<wpod::Error>() {
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

/// An error in what a manifest says, found when it is run or checked (an
/// image, a volume, a port): named with the manifest's file first, as the
/// manifest's own problems are (`FILE: (pod `x`) FIELD: what; fix`).
#[derive(Debug, thiserror::Error)]
#[error("{}: {message}", file.display())]
pub struct InManifest {
    pub file: std::path::PathBuf,
    pub message: String,
    pub fault: Fault,
}

impl InManifest {
    /// `error` with `file` before it when it is about the manifest's
    /// content; as it is otherwise.
    pub fn wrap(file: &std::path::Path, error: anyhow::Error) -> anyhow::Error {
        let about_manifest = |error: &wpod::Error| {
            matches!(
                error,
                wpod::Error::Image { .. }
                    | wpod::Error::Volume { .. }
                    | wpod::Error::Port { .. }
                    | wpod::Error::HttpPort { .. }
            )
        };
        let (message, fault) = if let Some(e) = error.downcast_ref::<wpod::Error>() {
            if !about_manifest(e) {
                return error;
            }
            (e.to_string(), e.fault())
        } else if let Some(e) = error.downcast_ref::<wpod::SandboxError>() {
            match e {
                wpod::SandboxError::Pod(inner) if about_manifest(inner) => {
                    (e.to_string(), e.fault())
                }
                // From a pod process: its messages about the manifest
                // name the pod first.
                wpod::SandboxError::Inside { report, .. }
                    if report.message.starts_with("(pod `") =>
                {
                    (e.to_string(), e.fault())
                }
                _ => return error,
            }
        } else {
            return error;
        };
        InManifest {
            file: file.to_owned(),
            message,
            fault,
        }
        .into()
    }
}

/// Bad input found by the CLI itself (a flag's value).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadInput(pub String);

/// The man pages, from the clap definition.
fn man(dir: Option<&std::path::Path>) -> anyhow::Result<ExitCode> {
    use clap::CommandFactory as _;
    let command = Cli::command();
    let Some(dir) = dir else {
        clap_mangen::Man::new(command).render(&mut std::io::stdout())?;
        return Ok(ExitCode::SUCCESS);
    };
    std::fs::create_dir_all(dir)?;
    let mut page = Vec::new();
    clap_mangen::Man::new(command.clone()).render(&mut page)?;
    std::fs::write(dir.join("wpod.1"), page)?;
    for sub in command.get_subcommands() {
        let name = format!("wpod-{}", sub.get_name());
        let mut page = Vec::new();
        let sub = sub
            .clone()
            .bin_name(format!("wpod {}", sub.get_name()))
            .display_name(name.clone());
        clap_mangen::Man::new(sub)
            .title(name.clone())
            .render(&mut page)?;
        std::fs::write(dir.join(format!("{name}.1")), page)?;
    }
    Ok(ExitCode::SUCCESS)
}
