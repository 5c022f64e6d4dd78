//! A Rust host embedding wpod: it builds a two-container pod in code, runs it
//! on its own tokio runtime, prints the pod's events as they happen, and
//! reads a container's output from the handle.
//!
//! Run it with `cargo run -p wpod-embed`.

use std::sync::Arc;
use wpod::{
    ContainerSpec, LogLine, LogSink, PodEvent, PodOptions, PodSpec, RestartPolicy, Runtime,
    RuntimeConfig,
};

/// The host decides where containers' output goes: here, to stdout with a
/// prefix of its own.
struct HostLogs;

impl LogSink for HostLogs {
    fn line(&self, line: LogLine<'_>) {
        println!(
            "  | {}/{}: {}",
            line.pod,
            line.container,
            String::from_utf8_lossy(line.text)
        );
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The example's guests come from this repository's guests/ folder.
    let root = xtask::workspace_root();
    xtask::build_guests(&root)?;
    let guest = |name: &str| {
        xtask::guest(&root, "wasm32-wasip2", name)
            .display()
            .to_string()
    };

    let runtime = Runtime::new(RuntimeConfig::from_env())?;
    let pod = PodSpec::builder("embedded")
        .empty_dir("shared")
        .container(
            ContainerSpec::new("writer", guest("probe"))
                .args(["write", "/shared/note.txt", "written by the writer"])
                .mount("shared", "/shared", false),
        )
        .container(ContainerSpec::new("greeter", guest("hello")))
        .restart_policy(RestartPolicy::Never)
        .build()?;
    let options = PodOptions {
        log_sink: Arc::new(HostLogs),
        ..PodOptions::default()
    };

    let mut handle = runtime.start(pod, options).await?;
    while let Some(event) = handle.next_event().await {
        match &event {
            PodEvent::PhaseChanged { phase } => println!("pod is {phase:?}"),
            PodEvent::ContainerStarted { container, .. } => println!("{container} started"),
            PodEvent::ContainerExited {
                container,
                termination,
            } => {
                println!(
                    "{container} exited with {} ({})",
                    termination.exit_code, termination.reason
                )
            }
            PodEvent::ContainerRestarting {
                container, backoff, ..
            } => println!("{container} restarts in {backoff:?}"),
            PodEvent::ProbeFailed {
                container,
                probe,
                message,
            } => println!("{container}: {probe} probe failed: {message}"),
            PodEvent::ReadyChanged { container, ready } => println!("{container} ready: {ready}"),
            // PodEvent grows as wpod learns more of the kubelet's lifecycle.
            _ => {}
        }
    }
    println!("greeter printed: {:?}", handle.logs("greeter"));
    let status = handle.wait().await;
    println!("final phase: {:?}", status.phase);
    Ok(())
}
