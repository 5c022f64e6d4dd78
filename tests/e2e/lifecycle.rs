//! The lifecycle: init containers in order, each to completion; restart
//! policies with back-off; phases, states and exit codes; -o json/yaml;
//! signals stop the pod and clean up.

use crate::support::{Workspace, container};
#[cfg(target_os = "linux")]
use std::time::{Duration, Instant};

const SHARED: &str = "  volumes:\n  - {name: data, emptyDir: {}}\n";

#[test]
fn init_containers_run_in_order_before_the_app() {
    let workspace = Workspace::new();
    let run = workspace.run_pod(
        &format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: order}}\nspec:\n  restartPolicy: Never\n{SHARED}  initContainers:
  - {{name: first, image: '@probe@', args: [append, /d/log, first], volumeMounts: [{{name: data, mountPath: /d}}]}}
  - {{name: second, image: '@probe@', args: [append, /d/log, second], volumeMounts: [{{name: data, mountPath: /d}}]}}
  containers:
  - {{name: app, image: '@probe@', args: [read, /d/log], volumeMounts: [{{name: data, mountPath: /d}}]}}
"
        ),
        &["-o", "json"],
    );
    run.expect_code(0);
    assert!(
        run.stderr.contains("[app] first\n[app] second\n"),
        "{}",
        run.stderr
    );
    let status = run.json();
    assert_eq!(status["phase"], "Succeeded");
    for name in ["first", "second", "app"] {
        let terminated = &container(&status, name)["state"]["terminated"];
        assert_eq!(terminated["exitCode"], 0);
        assert_eq!(terminated["reason"], "Completed");
        assert!(terminated["startedAt"].as_str().unwrap().ends_with('Z'));
        assert!(terminated["finishedAt"].is_string());
    }
    assert!(
        container(&status, "first")["state"]["terminated"]["finishedAt"].as_str()
            <= container(&status, "app")["state"]["terminated"]["startedAt"].as_str()
    );
}

#[test]
fn failed_init_container_with_never_fails_the_pod() {
    let workspace = Workspace::new();
    let run = workspace.run_pod(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: initfail}\nspec:\n  restartPolicy: Never\n  initContainers:\n  - {name: setup, image: '@probe@', args: [exit, '3']}\n  - {name: later, image: '@hello@'}\n  containers:\n  - {name: app, image: '@hello@'}\n",
        &["-o", "json"],
    );
    // The failed container's exit code is wpod's, as with `docker run`.
    run.expect_code(3);
    assert!(
        run.stderr
            .contains("container `setup` exited with code 3 (Error)"),
        "{}",
        run.stderr
    );
    assert!(
        !run.stderr.contains("hello from wpod"),
        "a later container ran:\n{}",
        run.stderr
    );
    let status = run.json();
    assert_eq!(status["phase"], "Failed");
    assert_eq!(status["reason"], "InitContainerFailed");
    assert_eq!(
        container(&status, "setup")["state"]["terminated"]["exitCode"],
        3
    );
    assert_eq!(
        container(&status, "later")["state"]["waiting"]["reason"],
        "PodInitializing"
    );
    assert_eq!(
        container(&status, "app")["state"]["waiting"]["reason"],
        "PodInitializing"
    );
}

#[test]
fn failed_init_container_with_on_failure_restarts_until_it_succeeds() {
    let workspace = Workspace::new();
    // Fails on its first run, succeeds on the second: the marker file remembers.
    let run = workspace.run_pod(
        &format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: retry}}\nspec:\n  restartPolicy: OnFailure\n{SHARED}  initContainers:
  - name: flaky
    image: busybox
    command: [sh, -c, 'test -f /d/marker && exit 0; touch /d/marker; exit 1']
    volumeMounts: [{{name: data, mountPath: /d}}]
  containers:
  - {{name: app, image: '@hello@'}}
"
        ),
        &["-o", "json", "--restart-backoff", "50ms"],
    );
    run.expect_code(0);
    let status = run.json();
    assert_eq!(container(&status, "flaky")["restartCount"], 1);
    assert_eq!(
        container(&status, "flaky")["lastState"]["terminated"]["exitCode"],
        1
    );
    assert_eq!(status["phase"], "Succeeded");
}

#[test]
fn on_failure_restarts_failed_app_containers_and_never_does_not() {
    let workspace = Workspace::new();
    let yaml = |policy: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: policy}}\nspec:\n  restartPolicy: {policy}\n{SHARED}  containers:
  - name: flaky
    image: busybox
    command: [sh, -c, 'echo run >> /d/runs; test $(wc -l < /d/runs) -ge 3']
    volumeMounts: [{{name: data, mountPath: /d}}]
  - {{name: steady, image: '@hello@'}}
"
        )
    };
    let run = workspace.run_pod(
        &yaml("OnFailure"),
        &["-o", "json", "--restart-backoff", "20ms"],
    );
    run.expect_code(0);
    let status = run.json();
    assert_eq!(container(&status, "flaky")["restartCount"], 2, "{status:#}");
    assert_eq!(container(&status, "steady")["restartCount"], 0);

    let run = workspace.run_pod(&yaml("Never"), &["-o", "json", "--restart-backoff", "20ms"]);
    run.expect_code(1);
    let status = run.json();
    assert_eq!(status["phase"], "Failed");
    assert_eq!(container(&status, "flaky")["restartCount"], 0);
    // One container failing does not stop its sibling.
    assert_eq!(
        container(&status, "steady")["state"]["terminated"]["reason"],
        "Completed"
    );
}

#[test]
fn a_trap_is_a_failed_container_with_its_message() {
    let workspace = Workspace::new();
    let run = workspace.run_pod("apiVersion: v1\nkind: Pod\nmetadata: {name: trap}\nspec:\n  restartPolicy: Never\n  containers:\n  - {name: app, image: '@probe@', args: [trap]}\n", &["-o", "yaml"]);
    run.expect_code(134);
    assert!(run.stderr.contains("container `app` exited with code 134 (Error): wasm trap: wasm `unreachable` instruction executed"), "{}", run.stderr);
    assert!(run.stdout.contains("phase: Failed"), "{}", run.stdout);
    assert!(run.stdout.contains("exitCode: 134"), "{}", run.stdout);
}

#[cfg(unix)]
#[test]
fn sigterm_and_sigint_stop_the_pod_and_clean_up() {
    use std::io::{BufRead, BufReader};
    for (signal, code) in [("TERM", 143), ("INT", 130)] {
        let workspace = Workspace::new();
        let pod = workspace.pod(&format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: sig}}\nspec:\n  restartPolicy: Always\n  terminationGracePeriodSeconds: 1\n{SHARED}  containers:\n  - {{name: spinner, image: '@probe@', args: [spin], volumeMounts: [{{name: data, mountPath: /d}}]}}\n  - {{name: sleeper, image: '@probe@', args: [sleep, '600000']}}\n"
        ));
        let mut child = workspace
            .wpod()
            .arg("run")
            .arg(&pod)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Ready when the spinner says so: it is then busy in a loop, which
        // only epoch interruption can stop.
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        assert_eq!(line, "[spinner] spinning\n");
        assert!(
            !workspace.leftovers().is_empty(),
            "the emptyDir exists while the pod runs"
        );
        let killed = std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(child.id().to_string())
            .status()
            .unwrap();
        assert!(killed.success());
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(code), "SIG{signal}");
        assert!(
            workspace.leftovers().is_empty(),
            "left behind: {:?}",
            workspace.leftovers()
        );
    }
}

#[cfg(unix)]
#[test]
fn ctrl_c_during_the_first_compile_stops_at_once_and_caches_nothing_half_done() {
    // The box image takes seconds to compile by Cranelift the first time
    // (more than ten in a debug build); Ctrl-C must not wait for it, with or
    // without the wall. (`tiered.rs` has the same for `auto`.)
    for isolation in ["--isolation=auto", "--isolation=none"] {
        let workspace = Workspace::new();
        let cache = workspace.path().join("cold-cache");
        let pod = workspace.pod(
            "apiVersion: v1\nkind: Pod\nmetadata: {name: cold}\nspec:\n  restartPolicy: Never\n  containers:\n  - {name: sh, image: busybox, command: [sh, -c, 'echo never']}\n",
        );
        let wpod = workspace
            .wpod()
            .env("WPOD_CACHE_DIR", &cache)
            .args(["run", pod.to_str().unwrap(), isolation])
            .args(["--compiler", "cranelift"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(1500));
        let sent = std::time::Instant::now();
        // SAFETY: kill takes plain integers.
        unsafe { libc::kill(wpod.id() as i32, libc::SIGINT) };
        let output = wpod.wait_with_output().unwrap();
        let took = sent.elapsed();
        let run = crate::support::Run::from(output);
        run.expect_code(130);
        assert!(!run.stdout.contains("never"), "{isolation}: {run:?}");
        // Well before the compile could have finished.
        assert!(
            took < std::time::Duration::from_secs(5),
            "{isolation}: {took:?}"
        );
        let entries: Vec<_> = std::fs::read_dir(&cache)
            .map(|dir| dir.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(
            entries.iter().all(|name| name == "files"),
            "{isolation}: {entries:?}"
        );
    }
}

#[test]
fn active_deadline_seconds_stops_the_pod_with_deadline_exceeded() {
    let workspace = Workspace::new();
    let run = workspace.run_pod(
        "apiVersion: v1
kind: Pod
metadata: {name: late}
spec:
  activeDeadlineSeconds: 1
  terminationGracePeriodSeconds: 1
  containers:
  - {name: sleeper, image: '@probe@', args: [sleep, '600000']}
",
        &["-o", "json"],
    );
    run.expect_code(137);
    let status = run.json();
    assert_eq!(status["phase"], "Failed");
    assert_eq!(status["reason"], "DeadlineExceeded", "{status}");
    let terminated = &status["containerStatuses"][0]["state"]["terminated"];
    assert!(
        terminated["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("the pod's activeDeadlineSeconds passed")),
        "{status}"
    );
}

/// Every key Kubernetes' v1 `PodStatus` (and what it holds) may have: the
/// API's own field names, so that `-o json` holds nothing a Kubernetes
/// client would not know.
fn kubernetes_keys(path: &str) -> &'static [&'static str] {
    match path {
        "status" => &[
            "phase",
            "conditions",
            "message",
            "reason",
            "nominatedNodeName",
            "hostIP",
            "hostIPs",
            "podIP",
            "podIPs",
            "startTime",
            "initContainerStatuses",
            "containerStatuses",
            "qosClass",
            "ephemeralContainerStatuses",
            "resize",
            "resourceClaimStatuses",
            "observedGeneration",
        ],
        "condition" => &[
            "type",
            "status",
            "lastProbeTime",
            "lastTransitionTime",
            "reason",
            "message",
            "observedGeneration",
        ],
        "container" => &[
            "name",
            "state",
            "lastState",
            "ready",
            "restartCount",
            "image",
            "imageID",
            "containerID",
            "started",
            "allocatedResources",
            "resources",
            "volumeMounts",
            "user",
            "allocatedResourcesStatus",
            "stopSignal",
        ],
        "state" => &["waiting", "running", "terminated"],
        "waiting" => &["reason", "message"],
        "running" => &["startedAt"],
        "terminated" => &[
            "exitCode",
            "signal",
            "reason",
            "message",
            "startedAt",
            "finishedAt",
            "containerID",
        ],
        _ => &[],
    }
}

fn check_keys(value: &serde_json::Value, kind: &str, at: &str) {
    let object = value
        .as_object()
        .unwrap_or_else(|| panic!("{at} is not an object: {value}"));
    for (key, inner) in object {
        assert!(
            kubernetes_keys(kind).contains(&key.as_str()),
            "{at}.{key} is not a field of Kubernetes' {kind}"
        );
        let at = format!("{at}.{key}");
        match (kind, key.as_str()) {
            ("status", "conditions") => {
                for (i, c) in inner.as_array().unwrap().iter().enumerate() {
                    check_keys(c, "condition", &format!("{at}[{i}]"));
                }
            }
            ("status", "initContainerStatuses" | "containerStatuses") => {
                for (i, c) in inner.as_array().unwrap().iter().enumerate() {
                    check_keys(c, "container", &format!("{at}[{i}]"));
                }
            }
            ("container", "state" | "lastState") => check_keys(inner, "state", &at),
            ("state", state) => check_keys(inner, state, &at),
            _ => {}
        }
    }
}

#[test]
fn json_status_has_kubernetes_fields_only_with_their_conditions() {
    let workspace = Workspace::new();
    let pods = [
        // Init and app containers, succeeded.
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: done}}\nspec:\n  restartPolicy: Never\n{SHARED}  initContainers:
  - {{name: init, image: '@probe@', args: [write, /d/x, x], volumeMounts: [{{name: data, mountPath: /d}}]}}
  containers:
  - {{name: app, image: '@probe@', args: [read, /d/x], volumeMounts: [{{name: data, mountPath: /d}}]}}
"
        ),
        // A restart, then a failure: lastState and a terminated message.
        "apiVersion: v1\nkind: Pod\nmetadata: {name: failing}\nspec:\n  restartPolicy: OnFailure\n  activeDeadlineSeconds: 2\n  terminationGracePeriodSeconds: 1\n  containers:\n  - {name: app, image: '@probe@', args: [exit, '3']}\n".to_owned(),
        // A failed init container: the app never started.
        "apiVersion: v1\nkind: Pod\nmetadata: {name: blocked}\nspec:\n  restartPolicy: Never\n  initContainers:\n  - {name: init, image: '@probe@', args: [exit, '1']}\n  containers:\n  - {name: app, image: '@probe@', args: [env]}\n".to_owned(),
    ];
    for yaml in &pods {
        let run = workspace.run_pod(yaml, &["-o", "json", "--restart-backoff", "100ms"]);
        let status = run.json();
        check_keys(&status, "status", "status");
        let condition = |kind: &str| {
            status["conditions"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["type"] == kind)
                .unwrap_or_else(|| panic!("no {kind} condition: {status}"))
                .clone()
        };
        assert_eq!(condition("PodScheduled")["status"], "True", "{status}");
        // Ended pods are not ready, whatever their containers were.
        assert_eq!(condition("Ready")["status"], "False", "{status}");
        assert_eq!(condition("Ready")["reason"], "PodCompleted", "{status}");
        let initialized = condition("Initialized")["status"].clone();
        let init_failed = yaml.contains("name: blocked");
        assert_eq!(
            initialized,
            if init_failed { "False" } else { "True" },
            "{status}"
        );
        if yaml.contains("name: failing") {
            let app = &status["containerStatuses"][0];
            assert!(app["restartCount"].as_u64().unwrap() >= 1, "{status}");
            assert_eq!(app["lastState"]["terminated"]["exitCode"], 3, "{status}");
        }
    }
    // Several pods: a List of Pods, wpod's pid as an annotation.
    let two = "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nspec:\n  restartPolicy: Never\n  containers:\n  - {name: c, image: '@hello@'}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: b}\nspec:\n  restartPolicy: Never\n  containers:\n  - {name: c, image: '@hello@'}\n";
    let run = workspace.run_pod(two, &["-o", "json"]);
    run.expect_code(0);
    let list = run.json();
    assert_eq!(list["kind"], "List");
    for item in list["items"].as_array().unwrap() {
        check_keys(&item["status"], "status", "status");
        #[cfg(target_os = "linux")]
        if crate::sandbox::wall_available() {
            assert!(
                item["metadata"]["annotations"]["wpod.dev/pid"].is_string(),
                "{item}"
            );
        }
    }
}

/// A pod whose container works until asked to end, then writes a note into
/// `dir` (a hostPath: it outlives the pod).
#[cfg(target_os = "linux")]
fn graceful_pod(dir: &std::path::Path, grace: u32, args: &str) -> String {
    format!(
        "apiVersion: v1
kind: Pod
metadata: {{name: graceful}}
spec:
  terminationGracePeriodSeconds: {grace}
  volumes: [{{name: out, hostPath: {{path: {}}}}}]
  containers:
  - name: worker
    image: '@probe@'
    args: {args}
    volumeMounts: [{{name: out, mountPath: /out}}]
",
        dir.display()
    )
}

// Signals reach the pod through the wall's supervisor (Linux).
#[cfg(target_os = "linux")]
#[test]
fn sigterm_lets_a_guest_clean_up_before_the_pod_ends() {
    if !crate::sandbox::wall_available() {
        return;
    }
    let workspace = Workspace::new();
    let out = workspace.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let yaml = graceful_pod(&out, 30, "[graceful, /out]");
    let mut pod = crate::sandbox::Walled::start(&workspace, &yaml, &[]);
    assert!(pod.wait_for_output("working", Duration::from_secs(60)));
    let asked = Instant::now();
    pod.signal(libc::SIGTERM);
    let (code, output) = pod.wait();
    assert_eq!(code, 143, "{output}");
    assert!(output.contains("cleaned up"), "{output}");
    assert_eq!(
        std::fs::read_to_string(out.join("cleanup")).unwrap(),
        "cleaned up\n"
    );
    // It ended by itself, long before its 30 s of grace.
    assert!(
        asked.elapsed() < Duration::from_secs(20),
        "{:?}",
        asked.elapsed()
    );
}

// Signals reach the pod through the wall's supervisor (Linux).
#[cfg(target_os = "linux")]
#[test]
fn a_guest_that_ignores_the_stop_is_interrupted_after_its_grace_period() {
    if !crate::sandbox::wall_available() {
        return;
    }
    let workspace = Workspace::new();
    let out = workspace.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let yaml = graceful_pod(&out, 2, "[sleep, '600000']");
    let pod = crate::sandbox::Walled::start(&workspace, &yaml, &["-o", "json"]);
    std::thread::sleep(Duration::from_millis(300));
    let asked = Instant::now();
    pod.signal(libc::SIGTERM);
    let (code, output) = pod.wait();
    let took = asked.elapsed();
    assert_eq!(code, 143, "{output}");
    assert!(
        took >= Duration::from_secs(2),
        "ended after {took:?}, before its grace"
    );
    assert!(took < Duration::from_secs(15), "ended after {took:?}");
    assert!(
        output.contains("stopped by wpod after its grace period (2s)"),
        "{output}"
    );

    // A second signal does not wait for the grace period.
    let yaml = graceful_pod(&out, 60, "[sleep, '600000']");
    let pod = crate::sandbox::Walled::start(&workspace, &yaml, &[]);
    std::thread::sleep(Duration::from_millis(300));
    let asked = Instant::now();
    pod.signal(libc::SIGINT);
    std::thread::sleep(Duration::from_millis(300));
    pod.signal(libc::SIGINT);
    let (code, output) = pod.wait();
    assert_eq!(code, 130, "{output}");
    assert!(
        asked.elapsed() < Duration::from_secs(15),
        "{:?}",
        asked.elapsed()
    );
}

// Signals reach the pod through the wall's supervisor (Linux).
#[cfg(target_os = "linux")]
#[test]
fn pre_stop_runs_before_the_guest_is_told_and_post_start_failing_stops_it() {
    if !crate::sandbox::wall_available() {
        return;
    }
    let workspace = Workspace::new();
    let out = workspace.path().join("out");
    std::fs::create_dir(&out).unwrap();
    // preStop (a program of the image, in the container) writes its note;
    // then the guest is told, and cleans up.
    let yaml = format!(
        "apiVersion: v1
kind: Pod
metadata: {{name: hooks}}
spec:
  volumes: [{{name: out, hostPath: {{path: {}}}}}]
  containers:
  - name: worker
    image: probe
    args: [graceful, /out]
    volumeMounts: [{{name: out, mountPath: /out}}]
    lifecycle:
      preStop:
        exec: {{command: [sh, -c, 'test -e /run/wpod/terminating || echo before > /out/prestop']}}
",
        out.display()
    );
    let mut pod = crate::sandbox::Walled::start(&workspace, &yaml, &[]);
    assert!(pod.wait_for_output("working", Duration::from_secs(60)));
    pod.signal(libc::SIGTERM);
    let (code, output) = pod.wait();
    assert_eq!(code, 143, "{output}");
    assert_eq!(
        std::fs::read_to_string(out.join("prestop")).unwrap(),
        "before\n",
        "{output}"
    );
    assert_eq!(
        std::fs::read_to_string(out.join("cleanup")).unwrap(),
        "cleaned up\n"
    );

    // A postStart that fails stops the container (restartPolicy: Never:
    // for good), with the hook's word in its termination.
    let run = workspace.run_pod(
        "apiVersion: v1
kind: Pod
metadata: {name: poststart}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: probe
    args: [sleep, '600000']
    lifecycle:
      postStart: {exec: {command: [sh, -c, 'echo no way >&2; exit 3']}}
",
        &["-o", "json"],
    );
    run.expect_code(137);
    assert!(
        run.stderr.contains("[app] postStart hook failed: no way"),
        "{run:?}"
    );
    let status = run.json();
    let message = status["containerStatuses"][0]["state"]["terminated"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        message.starts_with("postStart hook failed: no way"),
        "{status}"
    );
}

#[test]
fn lifecycle_hooks_the_api_server_would_refuse_are_refused() {
    let workspace = Workspace::new();
    let cases = [
        (
            "lifecycle: {preStop: {sleep: {seconds: 1}, exec: {command: [true]}}}",
            "spec.containers[0].lifecycle.preStop: the hook has more than one handler",
        ),
        (
            "lifecycle: {postStart: {tcpSocket: {port: 80}}}",
            "spec.containers[0].lifecycle.postStart.tcpSocket: not supported yet",
        ),
        (
            "lifecycle: {preStop: {sleep: {seconds: -1}}}",
            "spec.containers[0].lifecycle.preStop.sleep.seconds: -1 is negative",
        ),
        (
            "restartPolicy: Always",
            "spec.containers[0].restartPolicy: an app container has no restart policy of its own",
        ),
    ];
    for (field, expected) in cases {
        let pod = workspace.pod(&format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: bad}}\nspec:\n  containers:\n  - name: c\n    image: busybox\n    {field}\n"
        ));
        let run = workspace.run(&["validate", pod.to_str().unwrap()]);
        run.expect_code(125);
        assert!(run.stderr.contains(expected), "{field}: {run:?}");
    }
}

#[test]
fn run_i_attaches_the_input_to_the_container_with_stdin_true() {
    let workspace = Workspace::new();
    let pod = workspace.pod(
        "apiVersion: v1
kind: Pod
metadata: {name: reader}
spec:
  restartPolicy: Never
  containers:
  - {name: reader, image: busybox, command: [cat], stdin: true, stdinOnce: true}
  - {name: other, image: busybox, command: [cat]}
",
    );
    let with_input = |args: &[&str]| {
        let run = workspace.run_with_input(args, b"hello\nworld\n");
        (Some(run.code), run.stdout, run.stderr)
    };
    let path = pod.to_str().unwrap();
    let (code, stdout, stderr) = with_input(&["run", "-i", path]);
    assert_eq!(code, Some(0), "{stderr}");
    // Only the container that asked reads it; the other's stdin is empty.
    assert_eq!(stdout, "[reader] hello\n[reader] world\n", "{stderr}");
    // Without -i, nobody reads it.
    let (code, stdout, stderr) = with_input(&["run", path]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(stdout, "", "{stderr}");

    let nobody = workspace.pod(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: none}\nspec:\n  containers:\n  - {name: c, image: busybox}\n",
    );
    let run = workspace.run(&["run", "-i", nobody.to_str().unwrap()]);
    run.expect_code(125);
    assert!(
        run.stderr.contains("-i: no container has `stdin: true`"),
        "{run:?}"
    );
    let two = workspace.pod(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: two}\nspec:\n  containers:\n  - {name: a, image: busybox, stdin: true}\n  - {name: b, image: busybox, stdin: true}\n",
    );
    let run = workspace.run(&["run", "-i", two.to_str().unwrap()]);
    run.expect_code(125);
    assert!(
        run.stderr
            .contains("several containers have `stdin: true` (two/a, two/b)"),
        "{run:?}"
    );
    let tty = workspace.pod(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: tty}\nspec:\n  containers:\n  - {name: a, image: busybox, stdin: true, tty: true}\n",
    );
    let run = workspace.run(&["validate", tty.to_str().unwrap()]);
    run.expect_code(125);
    assert!(run.stderr.contains("spec.containers[0].tty"), "{run:?}");
}
