//! The commands on detached pods (`wpod run -d`): `ps`, `logs`, `stop` and
//! `rm`, kubectl- and podman-shaped, reading the pods' folders of the user's
//! `wpod::PodStore`.

use crate::BadInput;
use std::io::Write as _;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};
use wpod::{PodOptions, PodStore, StoredPod};

#[derive(clap::Args)]
pub struct PsArgs {
    /// Every pod, stopped ones too.
    #[arg(short, long)]
    all: bool,
    /// json: the pods with their statuses, as `kubectl get pods -o json`.
    #[arg(short, long, value_enum)]
    output: Option<PsFormat>,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum PsFormat {
    /// The table with more columns: the supervisor's PID and the images.
    Wide,
    Json,
    Yaml,
}

#[derive(clap::Args)]
pub struct LogsArgs {
    /// The pod's name.
    pod: String,
    /// The container (needed when the pod has several).
    #[arg(short, long)]
    container: Option<String>,
    /// Keep printing new lines until the pod ends.
    #[arg(short, long)]
    follow: bool,
    /// Only the last N lines.
    #[arg(long, value_name = "N")]
    tail: Option<usize>,
    /// Only lines newer than this, e.g. `10s`, `5m`, `1h` (as kubectl's).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    since: Option<Duration>,
    /// Each line with its RFC 3339 time.
    #[arg(long)]
    timestamps: bool,
    /// The lines of the container's instance before its last restart.
    #[arg(short, long, conflicts_with = "follow")]
    previous: bool,
}

#[derive(clap::Args)]
#[command(trailing_var_arg = true)]
pub struct ExecArgs {
    /// The pod's name.
    pod: String,
    /// The container (default: the pod's kubectl.kubernetes.io/default-container,
    /// else its first app container).
    #[arg(short, long)]
    container: Option<String>,
    /// The program from the container's image and its arguments, after `--`.
    #[arg(required = true, allow_hyphen_values = true, value_name = "COMMAND")]
    command: Vec<String>,
}

#[derive(clap::Args)]
pub struct TopArgs {
    /// The pod's name.
    pod: String,
    /// json: the figures in bytes and nanoseconds.
    #[arg(short, long, value_enum)]
    output: Option<TopFormat>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum TopFormat {
    Json,
}

#[derive(clap::Args)]
pub struct StopArgs {
    /// The pods' names.
    #[arg(required = true)]
    pods: Vec<String>,
    /// Seconds to wait for a pod to stop gracefully (its containers see
    /// /run/wpod/terminating) before stopping it at once.
    #[arg(short, long, default_value = "10")]
    time: u64,
}

#[derive(clap::Args)]
pub struct InspectArgs {
    /// The pod's name.
    pod: String,
    /// yaml (the default) or json.
    #[arg(short, long, value_enum, default_value = "yaml")]
    output: InspectFormat,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum InspectFormat {
    Yaml,
    Json,
}

#[derive(clap::Args)]
pub struct DownArgs {
    /// The manifest the pods were started from (`wpod run -d FILE`), or `-`.
    manifest: std::path::PathBuf,
    /// Seconds to wait for a pod to stop gracefully before stopping it at
    /// once.
    #[arg(short, long, default_value = "10")]
    time: u64,
}

#[derive(clap::Args)]
pub struct RmArgs {
    /// The pods' names.
    #[arg(required = true)]
    pods: Vec<String>,
    /// Stop running pods first.
    #[arg(short, long)]
    force: bool,
}

fn store() -> PodStore {
    PodStore::new(&PodOptions::default().state_dir)
}

fn find(store: &PodStore, name: &str) -> anyhow::Result<StoredPod> {
    store
        .pod(name)
        .ok_or_else(|| BadInput(format!("no detached pod `{name}` (wpod ps -a lists them)")).into())
}

/// `NAME READY STATUS RESTARTS AGE`, as `kubectl get pods`.
pub fn ps(args: &PsArgs) -> anyhow::Result<ExitCode> {
    let pods: Vec<StoredPod> = store()
        .pods()
        .into_iter()
        .filter(|pod| args.all || pod.is_running())
        .collect();
    if let Some(format @ (PsFormat::Json | PsFormat::Yaml)) = args.output {
        let items: Vec<serde_json::Value> = pods
            .iter()
            .map(|pod| {
                serde_json::json!({
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": {"name": pod.name},
                    "status": pod.status,
                })
            })
            .collect();
        let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items});
        match format {
            PsFormat::Yaml => print!("{}", serde_yaml_ng::to_string(&list)?),
            _ => println!("{}", serde_json::to_string_pretty(&list)?),
        }
        return Ok(ExitCode::SUCCESS);
    }
    let wide = args.output == Some(PsFormat::Wide);
    let mut rows = vec![vec![
        "NAME".to_owned(),
        "READY".into(),
        "STATUS".into(),
        "RESTARTS".into(),
        "AGE".into(),
    ]];
    if wide {
        rows[0].extend(["PID".to_owned(), "IMAGES".into()]);
    }
    for pod in &pods {
        let (ready, total, restarts) = pod.status.as_ref().map_or((0, 0, 0), |status| {
            let apps = &status.container_statuses;
            (
                apps.iter().filter(|c| c.ready).count(),
                apps.len(),
                apps.iter().map(|c| c.restart_count).sum::<u32>(),
            )
        });
        let mut row = vec![
            pod.name.clone(),
            format!("{ready}/{total}"),
            pod.shown_status(),
            restarts.to_string(),
            age(pod.created),
        ];
        if wide {
            let images: Vec<&str> = containers_of(pod).map(|c| c.image.as_str()).collect();
            row.push(pod.supervisor.map_or("-".into(), |pid| pid.to_string()));
            row.push(images.join(","));
        }
        rows.push(row);
    }
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|column| rows.iter().map(|row| row[column].len()).max().unwrap_or(0))
        .collect();
    let mut out = std::io::stdout().lock();
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        writeln!(out, "{}", line.join("   ").trim_end())?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `5s`, `3m`, `2h`, `4d`, as kubectl shows an age.
fn age(created: SystemTime) -> String {
    let seconds = SystemTime::now()
        .duration_since(created)
        .unwrap_or_default()
        .as_secs();
    match seconds {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

/// A stored pod's containers as its last status has them, init ones first.
fn containers_of(pod: &StoredPod) -> impl Iterator<Item = &wpod::ContainerStatus> {
    pod.status.iter().flat_map(|s| {
        s.init_container_statuses
            .iter()
            .chain(&s.container_statuses)
    })
}

/// The lines of a container's CRI log file, as the container printed them.
pub fn logs(args: &LogsArgs) -> anyhow::Result<ExitCode> {
    let pod = find(&store(), &args.pod)?;
    let containers: Vec<String> = containers_of(&pod).map(|c| c.name.clone()).collect();
    let container = match (&args.container, containers.as_slice()) {
        (Some(name), _) if containers.contains(name) || containers.is_empty() => name.clone(),
        (Some(name), _) => {
            return Err(BadInput(format!(
                "pod `{}` has no container `{name}`; its containers: {}",
                pod.name,
                containers.join(", ")
            ))
            .into());
        }
        (None, [only]) => only.clone(),
        (None, _) => {
            return Err(BadInput(format!(
                "pod `{}` has several containers: name one with -c ({})",
                pod.name,
                containers.join(", ")
            ))
            .into());
        }
    };
    let path = if args.previous {
        let previous = pod.previous_log_path(&container);
        if !previous.exists() {
            return Err(BadInput(format!(
                "container `{container}` of pod `{}` has not restarted: there is no previous instance to show",
                pod.name
            ))
            .into());
        }
        previous
    } else {
        pod.log_path(&container)
    };
    let mut printed = 0u64;
    let text = std::fs::read(&path).unwrap_or_default();
    let since = args
        .since
        .and_then(|since| SystemTime::now().checked_sub(since));
    let lines: Vec<&[u8]> = text
        .split_inclusive(|b| *b == b'\n')
        .filter(|line| since.is_none_or(|since| written_at(line).is_some_and(|t| t >= since)))
        .collect();
    let skip = args.tail.map_or(0, |n| lines.len().saturating_sub(n));
    let mut out = std::io::stdout().lock();
    for line in &lines[skip..] {
        print_record(&mut out, line, args.timestamps)?;
    }
    printed += text.len() as u64;
    if !args.follow {
        return Ok(ExitCode::SUCCESS);
    }
    drop(out);
    loop {
        let running = store().pod(&pod.name).is_some_and(|p| p.is_running());
        let text = std::fs::read(&path).unwrap_or_default();
        if (text.len() as u64) < printed {
            // Rotated: start over in the new file.
            printed = 0;
        }
        let fresh = &text[printed as usize..];
        // Whole lines only; a partial one waits for its end.
        let complete = fresh.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        let mut out = std::io::stdout().lock();
        for line in fresh[..complete].split_inclusive(|b| *b == b'\n') {
            print_record(&mut out, line, args.timestamps)?;
        }
        out.flush()?;
        printed += complete as u64;
        if !running {
            return Ok(ExitCode::SUCCESS);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One CRI record (`TIME STREAM TAG TEXT`), printed as its text.
/// When a CRI log record was written (its first field, RFC 3339).
fn written_at(record: &[u8]) -> Option<SystemTime> {
    let time = record.split(|b| *b == b' ').next()?;
    humantime::parse_rfc3339(std::str::from_utf8(time).ok()?).ok()
}

fn print_record(
    out: &mut impl std::io::Write,
    record: &[u8],
    timestamps: bool,
) -> std::io::Result<()> {
    let mut fields = record.splitn(4, |b| *b == b' ');
    let (Some(time), Some(_stream), Some(_tag), Some(text)) =
        (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return Ok(());
    };
    if timestamps {
        out.write_all(time)?;
        out.write_all(b" ")?;
    }
    out.write_all(text)
}

/// Runs a program from a container's image in the running pod; exits with
/// its status (125, 126, 127 for wpod's own, as `podman exec`).
pub fn exec(args: ExecArgs) -> anyhow::Result<ExitCode> {
    let pod = find(&store(), &args.pod)?;
    let request = wpod::ExecRequest {
        container: args.container,
        command: args.command,
    };
    let ended = pod.exec(
        request,
        &mut std::io::stdout().lock(),
        &mut std::io::stderr().lock(),
    );
    match ended {
        Ok(outcome) => {
            if let Some(message) = outcome.message.filter(|_| outcome.exit_code != 0) {
                eprintln!("wpod: {}: {message}", outcome.reason);
            }
            Ok(ExitCode::from((outcome.exit_code & 0xff) as u8))
        }
        Err(error) => {
            eprintln!("wpod: {error}");
            Ok(ExitCode::from(error.exit_code()))
        }
    }
}

/// What each container of a running pod uses: `NAME MEMORY LIMIT CPU`.
pub fn top(args: &TopArgs) -> anyhow::Result<ExitCode> {
    let pod = find(&store(), &args.pod)?;
    let report = pod.top().map_err(|e| BadInput(e.to_string()))?;
    if let Some(TopFormat::Json) = args.output {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    let mut rows = vec![[
        "CONTAINER".to_owned(),
        "MEMORY".to_owned(),
        "LIMIT".to_owned(),
        "CPU".to_owned(),
    ]];
    for container in &report.containers {
        rows.push([
            container.name.clone(),
            human_bytes(container.memory_bytes),
            container.memory_limit.map_or("-".into(), human_bytes),
            format!("{:.3}s", container.cpu_time.as_secs_f64()),
        ]);
    }
    if let Some(rss) = report.process_rss {
        rows.push([
            "(pod process)".into(),
            human_bytes(rss),
            "-".into(),
            "-".into(),
        ]);
    }
    let width = |column: usize| rows.iter().map(|row| row[column].len()).max().unwrap_or(0);
    let widths = [width(0), width(1), width(2)];
    let mut out = std::io::stdout().lock();
    for row in &rows {
        writeln!(
            out,
            "{:w0$}   {:w1$}   {:w2$}   {}",
            row[0],
            row[1],
            row[2],
            row[3],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2]
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `1.5Mi`, `64Ki`, `300B`: a byte count as `kubectl top` writes memory.
fn human_bytes(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 => format!("{:.1}Gi", b as f64 / f64::from(1u32 << 30)),
        b if b >= 1 << 20 => format!("{:.1}Mi", b as f64 / f64::from(1u32 << 20)),
        b if b >= 1 << 10 => format!("{:.1}Ki", b as f64 / 1024.0),
        b => format!("{b}B"),
    }
}

pub fn stop(args: &StopArgs) -> anyhow::Result<ExitCode> {
    let store = store();
    for name in &args.pods {
        find(&store, name)?.stop(Duration::from_secs(args.time))?;
        println!("{name}");
    }
    Ok(ExitCode::SUCCESS)
}

pub fn rm(args: &RmArgs) -> anyhow::Result<ExitCode> {
    let store = store();
    for name in &args.pods {
        let pod = find(&store, name)?;
        // -f: the pod goes now, as `podman rm -f` kills.
        if args.force {
            pod.stop(Duration::ZERO)?;
        }
        // Read again: a stopped pod's supervisor is gone.
        let pod = find(&store, name)?;
        if pod.is_running() {
            return Err(BadInput(format!(
                "pod `{name}` is running; stop it first (wpod stop {name}), or remove it with -f"
            ))
            .into());
        }
        pod.remove()?;
        println!("{name}");
    }
    Ok(ExitCode::SUCCESS)
}

/// The pod as `kubectl get pod -o yaml` shows one: its name, wpod's own
/// data as annotations (the supervisor, the manifest), and its status.
pub fn inspect(args: &InspectArgs) -> anyhow::Result<ExitCode> {
    let pod = find(&store(), &args.pod)?;
    let mut annotations = serde_json::Map::new();
    annotations.insert(
        "wpod.dev/manifest".into(),
        pod.dir.join("manifest.yaml").display().to_string().into(),
    );
    if let Some(pid) = pod.supervisor {
        annotations.insert("wpod.dev/supervisor-pid".into(), pid.to_string().into());
    }
    let created = humantime::format_rfc3339_seconds(pod.created).to_string();
    let value = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": pod.name,
            "creationTimestamp": created,
            "annotations": annotations,
        },
        "status": pod.status,
    });
    match args.output {
        InspectFormat::Json => println!("{}", serde_json::to_string_pretty(&value)?),
        InspectFormat::Yaml => print!("{}", serde_yaml_ng::to_string(&value)?),
    }
    Ok(ExitCode::SUCCESS)
}

/// Stops and removes the detached pods of a manifest.
pub fn down(args: &DownArgs) -> anyhow::Result<ExitCode> {
    let store = store();
    let (pods, _) = crate::run::read_manifest(&args.manifest, &wpod::ReadOptions::default())?;
    for spec in pods {
        let Some(pod) = store.pod(&spec.name) else {
            continue;
        };
        pod.stop(Duration::from_secs(args.time))?;
        if let Some(pod) = store.pod(&spec.name) {
            pod.remove()?;
        }
        println!("{}", spec.name);
    }
    Ok(ExitCode::SUCCESS)
}
