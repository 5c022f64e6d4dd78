//! The library, as a Rust host uses it: a pod built in code, run on the
//! host's tokio runtime, observed through events, status and logs, stopped.

use crate::support::{component, guests, module};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use wpod::{
    Backoff, ContainerSpec, PodEvent, PodOptions, PodPhase, PodSpec, RestartPolicy, Runtime,
    RuntimeConfig,
};

/// A log sink that keeps what it is given.
#[derive(Default)]
struct Collect(Mutex<Vec<String>>);

impl wpod::LogSink for Collect {
    fn line(&self, line: wpod::LogLine<'_>) {
        self.0.lock().unwrap().push(format!(
            "{}/{}: {}",
            line.pod,
            line.container,
            String::from_utf8_lossy(line.text)
        ));
    }
}

fn options(sink: Arc<Collect>) -> PodOptions {
    let state = tempfile::tempdir().unwrap().keep();
    PodOptions {
        image_path: wpod::ImagePath {
            roots: vec![guests().images.clone()],
        },
        backoff: Backoff {
            initial: Duration::from_millis(20),
            max: Duration::from_millis(100),
        },
        log_sink: sink,
        state_dir: state,
        ..PodOptions::default()
    }
}

fn runtime() -> Runtime {
    Runtime::new(RuntimeConfig {
        cache_dir: Some(crate::support::cache_dir()),
        wasip3: false,
        compiler: wpod::CompilerChoice::Auto,
    })
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_built_in_code_runs_with_events_logs_and_status() {
    let sink = Arc::new(Collect::default());
    let pod = PodSpec::builder("built")
        .empty_dir("shared")
        .init_container(
            ContainerSpec::new("init", component("probe").to_str().unwrap())
                .args(["write", "/s/note", "from init"])
                .mount("shared", "/s", false),
        )
        .container(
            ContainerSpec::new("reader", module("probe").to_str().unwrap())
                .args(["read", "/s/note"])
                .mount("shared", "/s", true),
        )
        .container(ContainerSpec::new(
            "hello",
            component("hello").to_str().unwrap(),
        ))
        .restart_policy(RestartPolicy::Never)
        .build()
        .unwrap();
    let mut handle = runtime().start(pod, options(sink.clone())).await.unwrap();
    let mut events = Vec::new();
    while let Some(event) = handle.next_event().await {
        events.push(event);
    }
    assert_eq!(handle.logs("reader"), ["from init"]);
    let status = handle.wait().await;
    assert_eq!(status.phase, PodPhase::Succeeded);
    assert!(
        matches!(events.first(), Some(PodEvent::ContainerStarted { container, .. }) if container == "init"),
        "{events:?}"
    );
    assert!(events.contains(&PodEvent::PhaseChanged {
        phase: PodPhase::Running
    }));
    assert_eq!(
        events.last(),
        Some(&PodEvent::PhaseChanged {
            phase: PodPhase::Succeeded
        })
    );
    let exits = events
        .iter()
        .filter(|e| matches!(e, PodEvent::ContainerExited { .. }))
        .count();
    assert_eq!(exits, 3);
    let lines = sink.0.lock().unwrap().clone();
    assert!(
        lines.contains(&"built/reader: from init".to_owned()),
        "{lines:?}"
    );
    assert!(
        lines.contains(&"built/hello: hello from wpod".to_owned()),
        "{lines:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn always_restarts_with_back_off_until_stopped() {
    let pod = PodSpec::builder("looping")
        .container(
            ContainerSpec::new("quick", component("probe").to_str().unwrap()).args(["exit", "0"]),
        )
        .restart_policy(RestartPolicy::Always)
        .build()
        .unwrap();
    let mut handle = runtime().start(pod, options(Arc::default())).await.unwrap();
    let mut restarts = 0;
    while let Some(event) = handle.next_event().await {
        if let PodEvent::ContainerRestarting {
            restart_count,
            backoff,
            ..
        } = event
        {
            restarts = restart_count;
            assert!(backoff <= Duration::from_millis(100));
            if restart_count == 3 {
                handle.stop();
            }
        }
    }
    let status = handle.wait().await;
    assert_eq!(restarts, 3);
    assert_eq!(status.phase, PodPhase::Failed);
    assert_eq!(status.reason.as_deref(), Some("Stopped"));
    assert_eq!(status.container_statuses[0].restart_count, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_interrupts_a_spinning_guest() {
    let pod = PodSpec::builder("spin")
        .container(
            ContainerSpec::new("spinner", component("probe").to_str().unwrap()).args(["spin"]),
        )
        .restart_policy(RestartPolicy::Never)
        .build()
        .unwrap();
    let mut handle = runtime().start(pod, options(Arc::default())).await.unwrap();
    // Started, then (the guest prints "spinning") stop it.
    while handle.logs("spinner").is_empty() {
        handle.status_changed().await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    handle.stop();
    let status = handle.wait().await;
    let termination = status.container_statuses[0]
        .terminated()
        .expect("terminated");
    assert_eq!(termination.exit_code, 137);
    assert_eq!(termination.message.as_deref(), Some("stopped by wpod"));
}

#[test]
fn builder_checks_like_the_api_server() {
    let error = PodSpec::builder("Bad_Name")
        .container(ContainerSpec::new("a", "a.wasm").mount("nope", "/x", false))
        .build()
        .unwrap_err();
    let text = error.to_string();
    assert!(
        text.contains("metadata.name: `Bad_Name` is not a valid DNS-1123 name"),
        "{text}"
    );
    assert!(
        text.contains("spec.containers[0].volumeMounts[0].name: volume `nope` is not declared"),
        "{text}"
    );
    assert_eq!(error.problems().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_embedder_puts_its_own_wasm_bytes_in_a_store_of_its_own_and_runs_them() {
    // Bytes in memory, as a host that built or fetched them its own way has
    // them; a store of the host's own.
    let bytes = std::fs::read(component("hello")).unwrap();
    let store_dir = tempfile::tempdir().unwrap();
    let registries = wpod::Registries {
        store: store_dir.path().to_owned(),
        ..wpod::Registries::default()
    };
    let store = wpod::ImageStore::new(&registries.store);
    let imported = store
        .import_wasm("embedded.local/hello:v1", &bytes)
        .unwrap();
    assert_eq!(imported.flavour, wpod::Flavour::WasmArtifact);
    assert!(
        store
            .import_wasm("embedded.local/text:v1", b"hello")
            .is_err()
    );
    let mut container = ContainerSpec::new("app", "embedded.local/hello:v1");
    container.image_pull_policy = Some(wpod::PullPolicy::Never);
    let pod = PodSpec::builder("embedded")
        .container(container)
        .restart_policy(RestartPolicy::Never)
        .build()
        .unwrap();
    let sink = Arc::new(Collect::default());
    let status = runtime()
        .run(
            pod,
            PodOptions {
                registries,
                ..options(sink.clone())
            },
        )
        .await
        .unwrap();
    assert_eq!(status.phase, PodPhase::Succeeded);
    assert_eq!(
        sink.0.lock().unwrap().as_slice(),
        ["embedded/app: hello from wpod"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_sidecars_start_in_order_and_stop_after_the_app_in_reverse() {
    let sink = Arc::new(Collect::default());
    let probe = component("probe");
    let probe = probe.to_str().unwrap();
    let out = tempfile::tempdir().unwrap();
    let mut first = ContainerSpec::new("first-sidecar", probe)
        .args(["graceful", "/out"])
        .mount("out", "/out", false)
        .sidecar();
    // The next init container waits for this one's startup probe.
    first.startup_probe = Some(wpod::Probe {
        period: Duration::from_secs(1),
        ..wpod::Probe::new(wpod::ProbeAction::Exec {
            command: vec![probe.to_owned(), "exit".into(), "0".into()],
        })
    });
    let pod = PodSpec::builder("sidecars")
        .host_path("out", out.path(), wpod::HostPathType::Directory)
        .init_container(first)
        .init_container(ContainerSpec::new("setup", probe).args(["exit", "0"]))
        .init_container(
            ContainerSpec::new("second-sidecar", probe)
                .args(["sleep", "600000"])
                .sidecar(),
        )
        .container(ContainerSpec::new("job", probe).args(["sleep", "300"]))
        .restart_policy(RestartPolicy::Never)
        .termination_grace_period(Duration::from_secs(1))
        .build()
        .unwrap();
    let mut handle = runtime().start(pod, options(sink)).await.unwrap();
    let mut events = Vec::new();
    while let Some(event) = handle.next_event().await {
        events.push(event);
    }
    let status = handle.wait().await;
    // The job succeeded: the pod completes, whatever the sidecars' ends.
    assert_eq!(status.phase, PodPhase::Succeeded, "{status:?}");
    let at = |wanted: &dyn Fn(&PodEvent) -> bool| {
        events
            .iter()
            .position(wanted)
            .unwrap_or_else(|| panic!("{events:#?}"))
    };
    let started = |name: &'static str| move |e: &PodEvent| matches!(e, PodEvent::ContainerStarted { container, .. } if container == name);
    let exited = |name: &'static str| move |e: &PodEvent| matches!(e, PodEvent::ContainerExited { container, .. } if container == name);
    // Started in order; the setup container after the first sidecar's
    // startup probe passed (it became ready).
    let ready = at(
        &|e| matches!(e, PodEvent::ReadyChanged { container, ready: true } if container == "first-sidecar"),
    );
    assert!(at(&started("first-sidecar")) < ready, "{events:#?}");
    assert!(ready < at(&started("setup")), "{events:#?}");
    assert!(
        at(&started("second-sidecar")) < at(&started("job")),
        "{events:#?}"
    );
    // Stopped after the job, the second sidecar before the first.
    assert!(
        at(&exited("job")) < at(&exited("second-sidecar")),
        "{events:#?}"
    );
    assert!(
        at(&exited("second-sidecar")) < at(&exited("first-sidecar")),
        "{events:#?}"
    );
    // The first sidecar was asked to end and cleaned up; the second ignored
    // it and was interrupted after the grace period.
    assert_eq!(
        std::fs::read_to_string(out.path().join("cleanup")).unwrap(),
        "cleaned up\n"
    );
    let first = status
        .container("first-sidecar")
        .unwrap()
        .terminated()
        .unwrap();
    assert_eq!(first.exit_code, 0, "{status:?}");
    let second = status
        .container("second-sidecar")
        .unwrap()
        .terminated()
        .unwrap();
    assert_eq!(second.exit_code, 137, "{status:?}");
}
