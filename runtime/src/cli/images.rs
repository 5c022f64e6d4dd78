//! The commands on images from registries: `pull` and `images`, podman-
//! and docker-shaped, on the user's `wpod::ImageStore`.

use std::io::Write as _;
use std::process::ExitCode;
use wpod::{ImageStore, Registries};

#[derive(clap::Args)]
pub struct PullArgs {
    /// Image references naming a registry, e.g. `localhost:5000/hello:v1`.
    #[arg(required = true)]
    references: Vec<String>,
    #[command(flatten)]
    registries: RegistryArgs,
}

/// How registries are reached; shared by `run` and `pull`.
#[derive(clap::Args, Clone, Default)]
pub struct RegistryArgs {
    /// Reach this registry (`host[:port]`) over plain HTTP, as podman's
    /// `--tls-verify=false` (loopback registries always are). Repeatable.
    #[arg(long = "insecure-registry", value_name = "HOST[:PORT]")]
    insecure: Vec<String>,
}

impl RegistryArgs {
    /// The registries' settings, with a progress line per layer on stderr
    /// when it is a terminal.
    pub fn registries(&self) -> Registries {
        let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
        Registries {
            insecure: self.insecure.clone(),
            progress: terminal.then(|| {
                std::sync::Arc::new(PullBars::default()) as std::sync::Arc<dyn wpod::PullProgress>
            }),
            ..Registries::default()
        }
    }
}

/// One line per layer being downloaded: digest, bytes, rate (indicatif).
#[derive(Debug, Default)]
struct PullBars {
    bars: indicatif::MultiProgress,
    by_digest: std::sync::Mutex<std::collections::HashMap<String, indicatif::ProgressBar>>,
}

impl wpod::PullProgress for PullBars {
    fn started(&self, reference: &str, digest: &str, total: u64) {
        let bar = self.bars.add(indicatif::ProgressBar::new(total));
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{prefix} {bytes}/{total_bytes} {bytes_per_sec} {wide_bar}",
        ) {
            bar.set_style(style);
        }
        let short = digest.trim_start_matches("sha256:");
        bar.set_prefix(format!("{reference} {}", &short[..short.len().min(12)]));
        if let Ok(mut bars) = self.by_digest.lock() {
            bars.insert(digest.to_owned(), bar);
        }
    }

    fn advanced(&self, digest: &str, bytes: u64) {
        if let Ok(bars) = self.by_digest.lock()
            && let Some(bar) = bars.get(digest)
        {
            bar.inc(bytes);
        }
    }

    fn finished(&self, digest: &str) {
        if let Ok(mut bars) = self.by_digest.lock()
            && let Some(bar) = bars.remove(digest)
        {
            bar.finish_and_clear();
        }
    }
}

#[derive(clap::Args)]
pub struct PushArgs {
    /// A Wasm program: a component (wasip2) or a core module (wasip1).
    wasm: std::path::PathBuf,
    /// Where to push it, e.g. `localhost:5000/hello:v1`.
    reference: String,
    #[command(flatten)]
    registries: RegistryArgs,
}

#[derive(clap::Args)]
pub struct RmiArgs {
    /// Image references, as pulled.
    #[arg(required = true)]
    references: Vec<String>,
}

#[derive(clap::Subcommand)]
pub enum ImageCommand {
    /// Remove what no image reference uses, what killed pulls left, and the
    /// compile cache's entries for them.
    Prune,
}

#[derive(clap::Args)]
pub struct ImagesArgs {
    /// Digests in full, not their first 12 characters.
    #[arg(long)]
    no_trunc: bool,
}

pub fn pull(args: &PullArgs) -> anyhow::Result<ExitCode> {
    let registries = args.registries.registries();
    let store = ImageStore::new(&registries.store);
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    for reference in &args.references {
        if !wpod::is_registry_reference(reference) {
            return Err(crate::BadInput(format!(
                "`{reference}` names no registry; write it with its host, e.g. docker.io/library/{reference} or localhost:5000/{reference}"
            ))
            .into());
        }
        let image = tokio.block_on(store.pull(reference, &registries))?;
        println!("{}", image.digest);
    }
    Ok(ExitCode::SUCCESS)
}

pub fn push(args: &PushArgs) -> anyhow::Result<ExitCode> {
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let digest = tokio.block_on(wpod::push_wasm(
        &args.wasm,
        &args.reference,
        &args.registries.registries(),
    ))?;
    println!("{digest}");
    Ok(ExitCode::SUCCESS)
}

pub fn images(args: &ImagesArgs) -> anyhow::Result<ExitCode> {
    let store = ImageStore::new(Registries::default().store);
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{:<48} {:<19} {:<18} {:>10}",
        "REFERENCE", "DIGEST", "FLAVOUR", "SIZE"
    )?;
    for image in store.list() {
        let digest = if args.no_trunc {
            image.digest.clone()
        } else {
            image.digest.chars().take(19).collect()
        };
        writeln!(
            out,
            "{:<48} {:<19} {:<18} {:>10}",
            image.reference,
            digest,
            image.flavour.to_string(),
            human_size(image.size)
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

pub fn rmi(args: &RmiArgs) -> anyhow::Result<ExitCode> {
    let store = ImageStore::new(Registries::default().store);
    let cache_dir = wpod::RuntimeConfig::from_env().cache_dir;
    let mut missing = Vec::new();
    for reference in &args.references {
        match store.remove(reference, cache_dir.as_deref())? {
            Some(pruned) => println!("removed {reference} ({} freed)", human_size(pruned.bytes)),
            None => missing.push(reference.as_str()),
        }
    }
    if missing.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        Err(crate::BadInput(format!(
            "not in the image store: {}; `wpod images` lists what is",
            missing.join(", ")
        ))
        .into())
    }
}

pub fn image(command: &ImageCommand) -> anyhow::Result<ExitCode> {
    match command {
        ImageCommand::Prune => {
            let cache_dir = wpod::RuntimeConfig::from_env().cache_dir;
            let pruned =
                ImageStore::new(Registries::default().store).prune(cache_dir.as_deref())?;
            println!(
                "removed {} entries ({} freed)",
                pruned.entries,
                human_size(pruned.bytes)
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `12.3 MB`, as podman prints sizes.
fn human_size(bytes: u64) -> String {
    match bytes {
        b if b >= 1_000_000_000 => format!("{:.1} GB", b as f64 / 1e9),
        b if b >= 1_000_000 => format!("{:.1} MB", b as f64 / 1e6),
        b if b >= 1_000 => format!("{:.1} kB", b as f64 / 1e3),
        b => format!("{b} B"),
    }
}
