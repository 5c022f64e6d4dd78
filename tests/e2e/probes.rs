//! Probes with real guests: a server that starts late (startup, tcpSocket)
//! and is ready only once a file exists (readiness, httpGet), through the
//! library's events; a container that turns unhealthy and is killed by its
//! liveness probe (exec, a Wasm command from its image), behind the wall;
//! readiness of a port published on the host, seen by `wpod inspect`; and
//! probes the API server would refuse.

use crate::support::{Workspace, guests};
use std::time::{Duration, Instant};
use wpod::{
    ContainerSpec, PodEvent, PodOptions, PodSpec, Probe, ProbeAction, ProbeKind, Runtime,
    RuntimeConfig,
};

fn every_second(action: ProbeAction) -> Probe {
    Probe {
        period: Duration::from_secs(1),
        failure_threshold: 10,
        ..Probe::new(action)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_and_readiness_probes_follow_a_server_that_starts_late() {
    let mut web = ContainerSpec::new("web", "busybox")
        .command(["sh", "-c", "sleep 1; httpd -p 8080 -h /www -q"])
        .mount("www", "/www", false);
    web.startup_probe = Some(every_second(ProbeAction::TcpSocket { port: 8080 }));
    web.readiness_probe = Some(every_second(ProbeAction::HttpGet(wpod::HttpGet {
        path: "/ready".into(),
        port: 8080,
        headers: vec![("X-Probe".into(), "wpod".into())],
    })));
    let pod = PodSpec::builder("late")
        .empty_dir("www")
        .container(web)
        .container(
            ContainerSpec::new("maker", "busybox")
                .command(["sh", "-c", "sleep 3; echo ok > /www/ready; sleep 600"])
                .mount("www", "/www", false),
        )
        .build()
        .unwrap();
    let runtime = Runtime::new(RuntimeConfig {
        cache_dir: Some(crate::support::cache_dir()),
        wasip3: false,
        compiler: wpod::CompilerChoice::Auto,
    })
    .unwrap();
    let options = PodOptions {
        image_path: wpod::ImagePath {
            roots: vec![guests().images.clone()],
        },
        state_dir: tempfile::tempdir().unwrap().keep(),
        ..PodOptions::default()
    };
    let mut handle = runtime.start(pod, options).await.unwrap();
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let event = tokio::time::timeout_at(deadline.into(), handle.next_event())
            .await
            .unwrap_or_else(|_| panic!("web never became ready; events: {seen:#?}"))
            .expect("the pod ended");
        let done = matches!(&event, PodEvent::ReadyChanged { container, ready: true } if container == "web");
        seen.push(event);
        if done {
            break;
        }
    }
    let failed = |kind: ProbeKind, text: &str| {
        seen.iter().any(|e| {
            matches!(e, PodEvent::ProbeFailed { container, probe, message }
                if container == "web" && *probe == kind && message.contains(text))
        })
    };
    // Before httpd listens, the startup probe is refused; once it does,
    // the file is missing: 404, not ready.
    assert!(failed(ProbeKind::Startup, "localhost:8080"), "{seen:#?}");
    assert!(failed(ProbeKind::Readiness, "statuscode: 404"), "{seen:#?}");
    let status = handle.status();
    let web = &status.container_statuses[0];
    assert!(web.started && web.ready, "{status:?}");
    // The maker has no probe: ready as soon as it runs.
    assert!(status.container_statuses[1].ready, "{status:?}");
    handle.stop();
    let _ = handle.wait().await;
}

#[test]
fn a_liveness_exec_probe_restarts_a_container_that_turns_unhealthy() {
    let workspace = Workspace::new();
    // Healthy for 2 s, then not: each instance is killed by its probe and
    // restarted, until the deadline ends the pod.
    let run = workspace.run_pod(
        "apiVersion: v1
kind: Pod
metadata: {name: sick}
spec:
  restartPolicy: Always
  activeDeadlineSeconds: 8
  terminationGracePeriodSeconds: 3
  containers:
  - name: app
    image: busybox
    command: [sh, -c, 'echo ok > /tmp/healthy; sleep 2; rm /tmp/healthy; sleep 600']
    volumeMounts: [{name: tmp, mountPath: /tmp}]
    livenessProbe:
      exec: {command: [cat, /tmp/healthy]}
      periodSeconds: 1
      failureThreshold: 2
      terminationGracePeriodSeconds: 1
  volumes: [{name: tmp, emptyDir: {}}]
",
        &["-o", "json", "--restart-backoff", "100ms"],
    );
    run.expect_code(137);
    assert!(
        run.stderr
            .contains("[app] liveness probe failed (1 of 2): cat: /tmp/healthy"),
        "{run:?}"
    );
    assert!(
        run.stderr
            .contains("[app] killed: liveness probe failed: cat: /tmp/healthy"),
        "{run:?}"
    );
    // The probe's own grace period, not the pod's.
    assert!(
        run.stderr
            .contains("[app] asked to end: 1s to do so, then interrupted"),
        "{run:?}"
    );
    let status: serde_json::Value = serde_json::from_str(&run.stdout).expect("json");
    assert_eq!(status["reason"], "DeadlineExceeded", "{status}");
    let app = &status["containerStatuses"][0];
    assert!(app["restartCount"].as_u64().unwrap() >= 1, "{status}");
    let killed = &app["lastState"]["terminated"];
    assert_eq!(killed["exitCode"], 137, "{status}");
    let message = killed["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with("liveness probe failed: cat: /tmp/healthy"),
        "{status}"
    );
}

#[test]
fn a_restart_says_why_and_when_on_the_terminal() {
    let workspace = Workspace::new();
    let run = workspace.run_pod(
        "apiVersion: v1
kind: Pod
metadata: {name: again}
spec:
  restartPolicy: OnFailure
  volumes: [{name: d, emptyDir: {}}]
  containers:
  - name: job
    image: busybox
    command: [sh, -c, 'test -e /d/ran && exit 0; touch /d/ran; exit 3']
    volumeMounts: [{name: d, mountPath: /d}]
",
        &["--restart-backoff", "200ms"],
    );
    run.expect_code(0);
    assert!(
        run.stderr
            .contains("[job] exited 3; restarting in 200ms (restartPolicy: OnFailure)"),
        "{run:?}"
    );
}

/// Runs the manifest `pod` detached and waits (up to 60 s) until the first
/// container of pod `name` is ready, as `wpod inspect` shows it; whether it
/// was.
fn run_until_ready(workspace: &Workspace, pod: &std::path::Path, name: &str) -> bool {
    workspace
        .run(&["run", "-d", pod.to_str().unwrap()])
        .expect_code(0);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let inspect = workspace.run(&["inspect", name, "-o", "json"]);
        let pod: serde_json::Value = serde_json::from_str(&inspect.stdout).expect("json");
        let ready = pod["status"]["containerStatuses"][0]["ready"] == true;
        if ready || Instant::now() > deadline {
            return ready;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn readiness_reaches_a_port_published_on_the_host() {
    let workspace = Workspace::new();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let pod = workspace.pod(&format!(
        "apiVersion: v1
kind: Pod
metadata: {{name: published}}
spec:
  containers:
  - name: web
    image: nginx
    args: [-p, '8080', -h, /usr/share/nginx/html, -q]
    ports: [{{name: http, containerPort: 8080, hostPort: {port}, hostIP: 127.0.0.1}}]
    readinessProbe:
      httpGet: {{path: /, port: http}}
      periodSeconds: 1
"
    ));
    let ready = run_until_ready(&workspace, &pod, "published");
    workspace.run(&["rm", "-f", "published"]).expect_code(0);
    assert!(ready, "the published server never became ready");
}

#[test]
fn probes_the_api_server_would_refuse_are_refused_with_their_path() {
    let workspace = Workspace::new();
    let cases = [
        (
            "readinessProbe: {tcpSocket: {port: 80}, exec: {command: [true]}}",
            "spec.containers[0].readinessProbe: the probe has more than one handler",
        ),
        (
            "livenessProbe: {tcpSocket: {port: web}}",
            "spec.containers[0].livenessProbe.tcpSocket.port: the container has no port named `web`",
        ),
        (
            "livenessProbe: {tcpSocket: {port: 80}, successThreshold: 2}",
            "spec.containers[0].livenessProbe.successThreshold: must be 1",
        ),
        (
            "readinessProbe: {httpGet: {port: 80, host: example.com}}",
            "spec.containers[0].readinessProbe.httpGet.host: host `example.com` is not the pod",
        ),
        (
            "readinessProbe: {tcpSocket: {port: 80}, periodSeconds: 0}",
            "spec.containers[0].readinessProbe.periodSeconds: 0 is less than 1",
        ),
        (
            "readinessProbe: {grpc: {service: x}}",
            "spec.containers[0].readinessProbe.grpc.port: required field is missing",
        ),
    ];
    for (probe, expected) in cases {
        let pod = workspace.pod(&format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: bad}}\nspec:\n  containers:\n  - name: c\n    image: busybox\n    {probe}\n"
        ));
        let run = workspace.run(&["validate", pod.to_str().unwrap()]);
        run.expect_code(125);
        assert!(run.stderr.contains(expected), "{probe}: {run:?}");
    }
    let init = workspace.pod(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: bad}\nspec:\n  initContainers:\n  - name: i\n    image: busybox\n    livenessProbe: {tcpSocket: {port: 80}}\n  containers:\n  - {name: c, image: busybox}\n",
    );
    let run = workspace.run(&["validate", init.to_str().unwrap()]);
    run.expect_code(125);
    assert!(
        run.stderr.contains(
            "spec.initContainers[0].livenessProbe: an init container may not have probes"
        ),
        "{run:?}"
    );
}

#[test]
fn a_grpc_readiness_probe_waits_for_the_health_service_to_serve() {
    let workspace = Workspace::new();
    let pod = workspace.pod(
        "apiVersion: v1
kind: Pod
metadata: {name: grpc}
spec:
  containers:
  - name: server
    image: '@grpc_health@'
    args: ['9090', --not-serving-ms, '1500']
    readinessProbe:
      grpc: {port: 9090}
      periodSeconds: 1
",
    );
    let ready = run_until_ready(&workspace, &pod, "grpc");
    let logs = workspace.run(&["logs", "grpc"]);
    workspace.run(&["rm", "-f", "grpc"]).expect_code(0);
    assert!(ready, "never ready: {logs:?}");
    // Asked while not serving (not ready), then while serving (ready).
    assert!(logs.stdout.contains("answered NOT_SERVING"), "{logs:?}");
    assert!(logs.stdout.contains("answered SERVING"), "{logs:?}");
}
