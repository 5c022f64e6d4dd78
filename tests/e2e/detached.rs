//! Detached pods: `wpod run -d`, then `ps`, `logs`, `stop` and `rm` from
//! other invocations, reading the pods' folders.
#![cfg(target_os = "linux")]

use crate::support::{Run, Workspace};
use std::time::{Duration, Instant};

const POD: &str = "apiVersion: v1
kind: Pod
metadata: {name: chatter}
spec:
  restartPolicy: Never
  containers:
  - name: talker
    image: busybox
    command: [sh, -c, 'echo one; echo two >&2; sleep 1; echo three; sleep 600']
  - name: quiet
    image: '@probe@'
    args: [sleep, '600000']
";

/// Runs `wpod ARGS` until `check` holds, for up to 120 s; the last run.
fn until(workspace: &Workspace, args: &[&str], check: impl Fn(&Run) -> bool) -> Run {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let run = workspace.run(args);
        if check(&run) || Instant::now() > deadline {
            return run;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The supervisor's pid, from the pod's folder.
fn supervisor(workspace: &Workspace, pod: &str) -> u32 {
    let record = std::fs::read_to_string(
        workspace
            .state_dir(crate::support::current_uid())
            .join("pods")
            .join(pod)
            .join("supervisor.pid"),
    )
    .expect("supervisor.pid");
    record.split_whitespace().next().unwrap().parse().unwrap()
}

/// Nothing of the workspace's pods is left in the state folder but the
/// (empty) store of detached pods: their private folders went with them.
fn assert_nothing_left_but_the_store(workspace: &Workspace) {
    let others: Vec<_> = workspace
        .leftovers()
        .into_iter()
        .filter(|name| name != "pods")
        .collect();
    assert!(others.is_empty(), "{others:?}");
}

/// Whether process `pid` has ended: gone, or a zombie its adopter has not
/// reaped yet (a detached supervisor's adopter is PID 1).
fn ended(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return true;
    };
    let after = &stat[stat.rfind(')').unwrap() + 1..];
    matches!(after.split_whitespace().next(), Some("Z" | "X"))
}

fn session_of(pid: u32) -> String {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 1..];
    after.split_whitespace().nth(3).unwrap().to_owned()
}

#[test]
fn run_detached_then_ps_logs_stop_and_rm_leave_nothing() {
    let workspace = Workspace::new();
    let pod = workspace.pod(POD);
    let started = workspace.run(&["run", "-d", pod.to_str().unwrap()]);
    started.expect_code(0);
    assert_eq!(started.stdout, "chatter\n");

    // `run -d` returns once a container has started; the second may still
    // be starting on a busy machine.
    let ps = until(&workspace, &["ps"], |run| {
        run.stdout
            .lines()
            .any(|l| l.starts_with("chatter") && l.contains("2/2") && l.contains("Running"))
    });
    ps.expect_code(0);
    let row = ps
        .stdout
        .lines()
        .find(|l| l.starts_with("chatter"))
        .unwrap_or_else(|| panic!("{ps:?}"));
    assert!(row.contains("2/2") && row.contains("Running"), "{row}");

    // A session of its own: closing the terminal does not reach it.
    let pid = supervisor(&workspace, "chatter");
    assert_ne!(session_of(pid), session_of(std::process::id()));

    let logs = until(&workspace, &["logs", "chatter", "-c", "talker"], |run| {
        run.stdout.contains("three")
    });
    logs.expect_code(0);
    assert_eq!(logs.stdout, "one\ntwo\nthree\n");
    let tail = workspace.run(&["logs", "chatter", "-c", "talker", "--tail", "1"]);
    assert_eq!(tail.stdout, "three\n");
    // --since: all three within the hour; none within the last few
    // milliseconds once the talker has gone quiet (it sleeps after them).
    let hour = workspace.run(&["logs", "chatter", "-c", "talker", "--since", "1h"]);
    assert_eq!(hour.stdout, "one\ntwo\nthree\n");
    std::thread::sleep(Duration::from_millis(300));
    let recent = workspace.run(&["logs", "chatter", "-c", "talker", "--since", "200ms"]);
    recent.expect_code(0);
    assert_eq!(recent.stdout, "");
    // -o wide: the supervisor's PID and the images; -o yaml: the list.
    let wide = workspace.run(&["ps", "-o", "wide"]);
    let header = wide.stdout.lines().next().unwrap_or_default();
    assert!(
        header.contains("PID") && header.contains("IMAGES"),
        "{wide:?}"
    );
    let yaml = workspace.run(&["ps", "-o", "yaml"]);
    assert!(
        yaml.stdout.contains("kind: List") && yaml.stdout.contains("name: chatter"),
        "{yaml:?}"
    );
    let ambiguous = workspace.run(&["logs", "chatter"]);
    ambiguous.expect_code(125);
    assert!(
        ambiguous
            .stderr
            .contains("name one with -c (talker, quiet)"),
        "{ambiguous:?}"
    );

    let inspect = workspace.run(&["inspect", "chatter"]);
    inspect.expect_code(0);
    assert!(
        inspect.stdout.contains("kind: Pod") && inspect.stdout.contains("phase: Running"),
        "{inspect:?}"
    );
    assert!(
        inspect
            .stdout
            .contains(&format!("wpod.dev/supervisor-pid: '{pid}'")),
        "{inspect:?}"
    );
    // A second pod of the same name is refused, and --replace is not used.
    workspace
        .run(&["run", "-d", pod.to_str().unwrap()])
        .expect_code(125);
    // rm refuses a running pod.
    workspace.run(&["rm", "chatter"]).expect_code(125);

    workspace
        .run(&["stop", "-t", "1", "chatter"])
        .expect_code(0);
    assert!(ended(pid), "process {pid} still runs");
    let ps = workspace.run(&["ps"]);
    assert!(!ps.stdout.contains("chatter"), "{ps:?}");
    let all = workspace.run(&["ps", "-a"]);
    assert!(
        all.stdout
            .lines()
            .any(|l| l.starts_with("chatter") && l.contains("Stopped")),
        "{all:?}"
    );
    // The logs outlive the pod until rm.
    let logs = workspace.run(&["logs", "chatter", "-c", "talker"]);
    assert_eq!(logs.stdout, "one\ntwo\nthree\n");

    workspace.run(&["rm", "chatter"]).expect_code(0);
    let all = workspace.run(&["ps", "-a"]);
    assert_eq!(all.stdout.lines().count(), 1, "{all:?}");
    let pods = workspace
        .state_dir(crate::support::current_uid())
        .join("pods");
    assert_eq!(std::fs::read_dir(&pods).unwrap().count(), 0);
    // Nothing else of the pod is left: its private folder went with it.
    assert_nothing_left_but_the_store(&workspace);
}

#[test]
fn a_detached_pod_that_cannot_start_says_why_and_leaves_nothing() {
    let workspace = Workspace::new();
    let pod = workspace.pod(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: broken}\nspec:\n  containers:\n  - {name: a, image: no-such/image}\n",
    );
    let run = workspace.run(&["run", "-d", pod.to_str().unwrap()]);
    run.expect_code(127);
    assert!(
        run.stderr.contains("image `no-such/image` not found"),
        "{run:?}"
    );
    assert!(workspace.run(&["ps", "-a"]).stdout.lines().count() == 1);
}

#[test]
fn a_killed_supervisor_leaves_state_that_ps_shows_failed_and_rm_cleans() {
    let workspace = Workspace::new();
    let pod = workspace.pod(POD);
    workspace
        .run(&["run", "-d", pod.to_str().unwrap()])
        .expect_code(0);
    let pid = supervisor(&workspace, "chatter");
    // SAFETY: kill takes plain integers.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    let all = until(&workspace, &["ps", "-a"], |run| {
        run.stdout.contains("Failed")
    });
    assert!(
        all.stdout
            .lines()
            .any(|l| l.starts_with("chatter") && l.contains("Failed")),
        "{all:?}"
    );
    workspace.run(&["rm", "chatter"]).expect_code(0);
    assert_eq!(workspace.run(&["ps", "-a"]).stdout.lines().count(), 1);
}

#[test]
fn down_stops_and_removes_the_pods_of_a_manifest_and_replace_restarts_one() {
    let workspace = Workspace::new();
    let pod = workspace.pod(POD);
    let path = pod.to_str().unwrap();
    workspace.run(&["run", "-d", path]).expect_code(0);
    let first = supervisor(&workspace, "chatter");
    workspace
        .run(&["run", "-d", "--replace", path])
        .expect_code(0);
    let second = supervisor(&workspace, "chatter");
    assert_ne!(first, second);
    assert!(ended(first), "process {first} still runs");
    let down = workspace.run(&["down", "-t", "0", path]);
    down.expect_code(0);
    assert_eq!(down.stdout, "chatter\n");
    assert_eq!(workspace.run(&["ps", "-a"]).stdout.lines().count(), 1);
    assert!(ended(second), "process {second} still runs");
}

#[test]
fn logs_follow_one_container_while_another_prints_until_the_pod_ends() {
    let workspace = Workspace::new();
    let pod = workspace.pod(
        "apiVersion: v1
kind: Pod
metadata: {name: follow}
spec:
  restartPolicy: Never
  containers:
  - name: slow
    image: busybox
    command: [sh, -c, 'echo first; sleep 1; echo second; sleep 1; echo third']
  - name: noisy
    image: '@probe@'
    args: [lines, '200']
",
    );
    workspace
        .run(&["run", "-d", pod.to_str().unwrap()])
        .expect_code(0);
    // Started while the pod runs; returns once it has ended.
    let followed = workspace.run(&["logs", "-f", "follow", "-c", "slow"]);
    followed.expect_code(0);
    assert_eq!(followed.stdout, "first\nsecond\nthird\n");
    let noisy = workspace.run(&["logs", "follow", "-c", "noisy", "--tail", "2"]);
    assert_eq!(noisy.stdout, "line 200\nerr 200\n");
    let ps = workspace.run(&["ps", "-a"]);
    assert!(
        ps.stdout
            .lines()
            .any(|l| l.starts_with("follow") && l.contains("Completed")),
        "{ps:?}"
    );
    workspace.run(&["rm", "follow"]).expect_code(0);
}

#[test]
fn exec_runs_a_program_of_the_image_in_the_running_pod_and_top_measures_it() {
    let workspace = Workspace::new();
    let pod = workspace.pod(
        "apiVersion: v1
kind: Pod
metadata: {name: lookin}
spec:
  restartPolicy: Never
  volumes: [{name: shared, emptyDir: {}}]
  containers:
  - name: writer
    image: probe
    command: [sh, -c, 'echo from-the-writer > /shared/note; sleep 600']
    env: [{name: GREETING, value: hi}]
    volumeMounts: [{name: shared, mountPath: /shared}]
  - name: web
    image: nginx
    args: [-p, '8080', -h, /usr/share/nginx/html]
",
    );
    workspace
        .run(&["run", "-d", pod.to_str().unwrap()])
        .expect_code(0);
    // The file the running container wrote into the emptyDir.
    let cat = until(
        &workspace,
        &[
            "exec",
            "lookin",
            "-c",
            "writer",
            "--",
            "cat",
            "/shared/note",
        ],
        |run| run.code == 0,
    );
    cat.expect_code(0);
    assert_eq!(cat.stdout, "from-the-writer\n");
    // The pod's localhost: the sibling's server (no -c: the first container).
    let connect = until(
        &workspace,
        &["exec", "lookin", "--", "probe", "connect", "127.0.0.1:8080"],
        |run| run.code == 0,
    );
    assert_eq!(connect.stdout, "connected\n", "{connect:?}");
    // The container's environment and working directory; its status back.
    let env = workspace.run(&["exec", "lookin", "--", "probe", "env"]);
    env.expect_code(0);
    assert!(env.stdout.contains("env GREETING=hi"), "{env:?}");
    let failed = workspace.run(&[
        "exec",
        "lookin",
        "--",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 3",
    ]);
    failed.expect_code(3);
    assert_eq!(
        (failed.stdout.as_str(), failed.stderr.as_str()),
        ("out\n", "err\n")
    );
    // What exec writes, the container sees.
    workspace
        .run(&[
            "exec",
            "lookin",
            "--",
            "sh",
            "-c",
            "echo from-exec > /shared/back",
        ])
        .expect_code(0);
    let back = workspace.run(&["exec", "lookin", "--", "probe", "read", "/shared/back"]);
    assert_eq!(back.stdout, "from-exec\n");

    // wpod's own errors, as podman exec tells them.
    let missing = workspace.run(&["exec", "lookin", "--", "no-such-program"]);
    missing.expect_code(127);
    assert!(
        missing.stderr.contains("`no-such-program` not found"),
        "{missing:?}"
    );
    let nobody = workspace.run(&["exec", "lookin", "-c", "nobody", "--", "true"]);
    nobody.expect_code(125);
    assert!(
        nobody.stderr.contains("its containers: writer, web"),
        "{nobody:?}"
    );

    // top: each container's Wasm memory and CPU time, from the pod itself.
    let top = workspace.run(&["top", "lookin", "-o", "json"]);
    top.expect_code(0);
    let report: serde_json::Value = serde_json::from_str(&top.stdout).expect("json");
    let containers = report["containers"].as_array().expect("containers");
    let names: Vec<&str> = containers
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["writer", "web"]);
    for container in containers {
        assert!(container["memory_bytes"].as_u64().unwrap() > 0, "{report}");
        let cpu = &container["cpu_time"];
        let nanos = cpu["secs"].as_u64().unwrap() * 1_000_000_000 + cpu["nanos"].as_u64().unwrap();
        assert!(nanos > 0, "{report}");
    }
    assert!(report["process_rss"].as_u64().unwrap() > 0, "{report}");
    let table = workspace.run(&["top", "lookin"]);
    assert!(table.stdout.starts_with("CONTAINER"), "{table:?}");

    let pid = supervisor(&workspace, "lookin");
    let cgroups_of_the_pod = || -> Vec<String> {
        crate::sandbox::pod_cgroup_parents()
            .iter()
            .flat_map(|parent| std::fs::read_dir(parent).into_iter().flatten().flatten())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|name| name.contains(&format!("-{pid}-w")))
            .collect()
    };
    if crate::sandbox::cgroups_available() {
        assert!(
            !cgroups_of_the_pod().is_empty(),
            "the running pod has cgroups"
        );
    }
    workspace.run(&["stop", "-t", "1", "lookin"]).expect_code(0);
    assert!(ended(pid), "process {pid} still runs");
    let stopped = workspace.run(&["exec", "lookin", "--", "true"]);
    stopped.expect_code(125);
    assert!(stopped.stderr.contains("is not running"), "{stopped:?}");
    workspace.run(&["rm", "lookin"]).expect_code(0);
    assert_nothing_left_but_the_store(&workspace);
    // Its cgroups (named after the supervisor) went with it.
    let left = cgroups_of_the_pod();
    assert!(left.is_empty(), "cgroups left: {left:?}");
}

#[test]
fn logs_previous_shows_the_instance_before_the_last_restart() {
    let workspace = Workspace::new();
    let pod = workspace.pod(
        "apiVersion: v1
kind: Pod
metadata: {name: again}
spec:
  restartPolicy: OnFailure
  volumes: [{name: d, emptyDir: {}}]
  containers:
  - name: flaky
    image: busybox
    command: [sh, -c, 'test -e /d/ran && echo second && sleep 600; touch /d/ran; echo first; exit 1']
    volumeMounts: [{name: d, mountPath: /d}]
",
    );
    workspace
        .run(&[
            "run",
            "-d",
            "--restart-backoff",
            "100ms",
            pod.to_str().unwrap(),
        ])
        .expect_code(0);
    let current = until(&workspace, &["logs", "again"], |run| {
        run.stdout.contains("second")
    });
    assert_eq!(current.stdout, "second\n", "{current:?}");
    let previous = workspace.run(&["logs", "again", "--previous"]);
    previous.expect_code(0);
    assert_eq!(previous.stdout, "first\n");
    workspace.run(&["rm", "-f", "again"]).expect_code(0);

    // A container that never restarted has no previous instance.
    let once = workspace.pod(POD);
    workspace
        .run(&["run", "-d", once.to_str().unwrap()])
        .expect_code(0);
    let none = workspace.run(&["logs", "chatter", "-c", "talker", "-p"]);
    none.expect_code(125);
    assert!(none.stderr.contains("has not restarted"), "{none:?}");
    workspace.run(&["rm", "-f", "chatter"]).expect_code(0);
}

#[test]
fn a_compile_shows_progress_on_a_terminal_for_run_d_and_nothing_when_piped() {
    let workspace = Workspace::new();
    let pod = workspace.pod(POD);
    // A cache of its own: the programs are compiled, not loaded (seconds
    // in the debug build the tests run).
    let cold_cache = |name: &str| {
        let dir = workspace.path().join(name);
        std::fs::create_dir(&dir).unwrap();
        dir
    };
    let piped = workspace
        .wpod()
        .env("WPOD_CACHE_DIR", cold_cache("cache-piped"))
        .args(["run", "-d", pod.to_str().unwrap()])
        .output()
        .expect("wpod");
    assert_eq!(piped.status.code(), Some(0), "{piped:?}");
    assert_eq!(String::from_utf8_lossy(&piped.stdout), "chatter\n");
    assert_eq!(
        String::from_utf8_lossy(&piped.stderr),
        "",
        "nothing on a pipe"
    );
    workspace.run(&["rm", "-f", "chatter"]).expect_code(0);

    // On a terminal (script(1) gives it one): the spinner, then the name.
    let line = format!("{} run -d {}", env!("CARGO_BIN_EXE_wpod"), pod.display());
    let base = workspace.wpod();
    let mut script = std::process::Command::new("script");
    script.env_clear().current_dir(workspace.path());
    for (key, value) in base.get_envs() {
        if let Some(value) = value {
            script.env(key, value);
        }
    }
    let terminal = script
        .env("WPOD_CACHE_DIR", cold_cache("cache-terminal"))
        // As a terminal session has it (indicatif draws nothing without).
        .env("TERM", "xterm")
        .args(["-qec", &line, "/dev/null"])
        .output()
        .expect("script(1), of util-linux");
    let shown = String::from_utf8_lossy(&terminal.stdout);
    assert_eq!(terminal.status.code(), Some(0), "{terminal:?}");
    assert!(
        shown.contains("compiling ") && shown.contains("a second run loads it from the cache"),
        "{shown:?}"
    );
    assert!(shown.trim_end().ends_with("chatter"), "{shown:?}");
    workspace.run(&["rm", "-f", "chatter"]).expect_code(0);
}
