//! The OS wall on Linux, checked from the host the way an operator would:
//! `--pid-file` gives the pod process, and `/proc/PID/...` tells its
//! namespaces, root, mounts, privileges and network. Then the cgroup
//! backstop, a rootless run, and `kill -9` at random points leaving nothing.
//!
//! On Linux as root these always run. Elsewhere, or where user namespaces
//! are disabled for a non-root user, each test prints why and returns.
#![cfg(target_os = "linux")]

use crate::support::{Workspace, container, current_uid};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Whether the wall can be had here; prints why not.
pub(crate) fn wall_available() -> bool {
    if is_root() {
        return true;
    }
    let ok = Command::new("unshare")
        .args([
            "--user",
            "--map-root-user",
            "--pid",
            "--fork",
            "--mount",
            "--net",
            "true",
        ])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("skipped: user namespaces are not available to this user");
    }
    ok
}

/// Whether pod cgroups can be had here (the wall, as root); prints why not.
pub(crate) fn cgroups_available() -> bool {
    if !wall_available() {
        return false;
    }
    if !is_root() {
        eprintln!("skipped: a non-root user has no cgroup of its own to limit");
        return false;
    }
    true
}

pub(crate) fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
}

/// A pod running behind the wall, its supervisor and the pod process's PID.
pub(crate) struct Walled {
    wpod: Child,
    /// The first pod's process.
    pid: u32,
    /// Every pod's, in the order of the file.
    pids: Vec<u32>,
    /// wpod's standard output so far, once [`Walled::wait_for_output`] has
    /// started reading it.
    stdout: Option<(
        std::sync::Arc<std::sync::Mutex<String>>,
        std::thread::JoinHandle<()>,
    )>,
}

impl Walled {
    /// Starts `wpod run` and waits (with a deadline) for the pid file, which
    /// is written once the wall is up.
    pub(crate) fn start(workspace: &Workspace, yaml: &str, extra: &[&str]) -> Walled {
        Walled::start_with(workspace, yaml, extra, workspace.wpod())
    }

    /// [`Walled::start`] with a `wpod` command of the caller's.
    pub(crate) fn start_with(
        workspace: &Workspace,
        yaml: &str,
        extra: &[&str],
        mut command: Command,
    ) -> Walled {
        let pod = workspace.pod(yaml);
        let pid_file = workspace.path().join("pod.pid");
        let _ = std::fs::remove_file(&pid_file);
        let mut wpod = command
            .args([
                "run",
                pod.to_str().unwrap(),
                "--pid-file",
                pid_file.to_str().unwrap(),
            ])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting wpod");
        // The first walled run compiles its programs before the pod starts
        // (a debug wasmtime, the other tests busy on the same cores): a
        // deadline that only a failure reaches.
        let text = wait_for(Duration::from_secs(120), || {
            if let Ok(Some(status)) = wpod.try_wait() {
                let output = wpod_output(&mut wpod);
                panic!("wpod ended ({status}) before its pod was up:\n{output}");
            }
            std::fs::read_to_string(&pid_file)
                .ok()
                .filter(|t| t.ends_with('\n'))
        })
        .expect("the pid file within 120 s");
        let pids: Vec<u32> = text
            .lines()
            .map(|line| line.parse().expect("a pid"))
            .collect();
        Walled {
            wpod,
            pid: pids[0],
            pids,
            stdout: None,
        }
    }

    pub(crate) fn proc(&self, name: &str) -> PathBuf {
        Path::new("/proc").join(self.pid.to_string()).join(name)
    }

    /// The pod process's parent (`PPid:` of its status).
    pub(crate) fn parent(&self) -> u32 {
        parent_of(self.pid)
    }

    /// [`Walled::terminate`], which must end it with SIGTERM's 143 and leave
    /// nothing of it on the host. Returns wpod's output.
    pub(crate) fn terminate_leaving_nothing(self, workspace: &Workspace) -> String {
        let (code, output) = self.terminate();
        assert_eq!(code, 143, "{output}");
        assert!(
            workspace.leftovers().is_empty(),
            "left behind: {:?}",
            workspace.leftovers()
        );
        output
    }

    pub(crate) fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.proc(name))
            .unwrap_or_else(|e| panic!("/proc/{}/{name}: {e}", self.pid))
    }

    /// Waits (up to `limit`) until wpod has printed `text` on its standard
    /// output.
    pub(crate) fn wait_for_output(&mut self, text: &str, limit: Duration) -> bool {
        if self.stdout.is_none() {
            let mut out = self.wpod.stdout.take().expect("wpod's stdout");
            let seen = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
            let writer = seen.clone();
            let reader = std::thread::spawn(move || {
                use std::io::BufRead as _;
                for line in std::io::BufReader::new(&mut out).lines() {
                    let Ok(line) = line else { return };
                    let mut seen = writer.lock().unwrap();
                    seen.push_str(&line);
                    seen.push('\n');
                }
            });
            self.stdout = Some((seen, reader));
        }
        let (seen, _) = self.stdout.as_ref().unwrap();
        wait_for(limit, || seen.lock().unwrap().contains(text).then_some(())).is_some()
    }

    /// Sends `signal` to wpod (which forwards SIGINT and SIGTERM).
    pub(crate) fn signal(&self, signal: i32) {
        send(self.wpod.id(), signal);
    }

    /// Waits for wpod to end after signals sent with [`Walled::signal`];
    /// returns its exit code and output.
    pub(crate) fn wait(mut self) -> (i32, String) {
        let status = self.wpod.wait().expect("waiting for wpod");
        let mut output = String::new();
        if let Some((seen, reader)) = self.stdout.take() {
            let _ = reader.join();
            output = seen.lock().unwrap().clone();
        }
        output.push_str(&wpod_output(&mut self.wpod));
        (status.code().unwrap_or(-1), output)
    }

    /// SIGTERM to wpod, which forwards it, then SIGINT to stop the pod at
    /// once (not waiting for its grace period); returns its exit code (the
    /// first signal's) and output.
    pub(crate) fn terminate(self) -> (i32, String) {
        self.signal(libc::SIGTERM);
        // Apart, so that SIGTERM comes first (a signalfd gives the lower
        // number first).
        std::thread::sleep(Duration::from_millis(200));
        self.signal(libc::SIGINT);
        self.wait()
    }
}

/// A process's parent (`PPid:` of its status).
fn parent_of(pid: u32) -> u32 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("PPid:"))
        .and_then(|pid| pid.trim().parse().ok())
        .unwrap_or_else(|| panic!("no PPid line for {pid}"))
}

fn wpod_output(wpod: &mut Child) -> String {
    use std::io::Read;
    let mut text = String::new();
    if let Some(out) = wpod.stdout.as_mut() {
        let _ = out.read_to_string(&mut text);
    }
    if let Some(err) = wpod.stderr.as_mut() {
        let _ = err.read_to_string(&mut text);
    }
    text
}

fn send(pid: u32, signal: i32) {
    // SAFETY: kill takes plain integers.
    unsafe { libc::kill(pid as i32, signal) };
}

/// Polls `check` until it gives a value or `limit` passes.
fn wait_for<T>(limit: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check() {
            return Some(value);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

const SLEEPER: &str = "apiVersion: v1
kind: Pod
metadata: {name: walled}
spec:
  restartPolicy: Never
  hostname: inside-the-wall
  volumes:
  - {name: data, hostPath: {path: '@ws@/data', type: DirectoryOrCreate}}
  - {name: scratch, emptyDir: {}}
  containers:
  - name: app
    image: '@probe@'
    args: [sleep, '60000']
    volumeMounts:
    - {name: data, mountPath: /data, readOnly: true}
    - {name: scratch, mountPath: /scratch}
";

#[test]
fn every_namespace_differs_from_the_hosts_and_sigterm_stops_the_pod() {
    if !wall_available() {
        return;
    }
    let workspace = Workspace::new();
    let pod = Walled::start(&workspace, SLEEPER, &[]);
    for ns in ["user", "mnt", "pid", "net", "uts", "ipc", "cgroup"] {
        let inside = std::fs::read_link(pod.proc(&format!("ns/{ns}"))).unwrap();
        let host = std::fs::read_link(format!("/proc/self/ns/{ns}")).unwrap();
        assert_ne!(inside, host, "the pod shares the host's {ns} namespace");
    }
    // PID 1 of its own PID namespace.
    let status = pod.read("status");
    let ns_pids = status.lines().find(|l| l.starts_with("NSpid:")).unwrap();
    assert!(ns_pids.trim_end().ends_with("\t1"), "{ns_pids}");
    // None of the supervisor's descriptors (its signalfd, pidfds, the read
    // ends of pod pipes) crossed the wall with the fork.
    let fds: Vec<String> = std::fs::read_dir(pod.proc("fd"))
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .map(|target| target.display().to_string())
        .collect();
    assert!(
        !fds.iter()
            .any(|t| t.contains("signalfd") || t.contains("pidfd")),
        "{fds:?}"
    );
    // In its cgroup in every hierarchy wpod limits (pod-init moved itself
    // there, and PID 1 was born in it).
    if is_root() {
        let cgroups = pod.read("cgroup");
        for controller in ["memory", "pids", "cpu"] {
            let line = cgroups
                .lines()
                .find(|l| {
                    l.split(':')
                        .nth(1)
                        .is_some_and(|c| c.split(',').any(|c| c == controller))
                })
                .unwrap_or_else(|| panic!("no {controller} line in {cgroups}"));
            assert!(line.contains("/wpod/walled-"), "{line}");
        }
    }
    // `ps` tells the pod processes apart from wpod itself.
    assert_eq!(pod.read("comm").trim(), "pod walled");
    // Its parent is wpod itself: pod-init made it with CLONE_PARENT and
    // exited, one process fewer a pod.
    assert_eq!(pod.parent(), pod.wpod.id(), "{status}");
    pod.terminate_leaving_nothing(&workspace);
}

/// `count` copies of [`SLEEPER`] in one file, named `walled-0`, ...
fn several_sleepers(count: usize) -> String {
    (0..count)
        .map(|n| SLEEPER.replace("name: walled", &format!("name: walled-{n}")))
        .collect::<Vec<_>>()
        .join("---\n")
}

#[test]
fn a_run_of_many_pods_forks_them_from_a_fork_server_that_then_ends() {
    if !wall_available() {
        return;
    }
    // Three pods in one file: the first is forked by wpod, the others by
    // the fork server; every pod process is wpod's child all the same, and
    // once all are up, wpod's only children are the pod processes (no
    // pod-init, no server).
    let workspace = Workspace::new();
    let three = several_sleepers(3);
    let mut command = workspace.wpod();
    command.env("WPOD_LOG", "wpod=debug");
    let pod = Walled::start_with(&workspace, &three, &[], command);
    assert_eq!(pod.pids.len(), 3);
    let wpod = pod.wpod.id();
    for pid in &pod.pids {
        assert_eq!(parent_of(*pid), wpod);
    }
    // What else wpod has as children, by name (the background compiler
    // may be one).
    let others = || -> Vec<String> {
        std::fs::read_dir(format!("/proc/{wpod}/task"))
            .unwrap()
            .flatten()
            .flat_map(|task| {
                std::fs::read_to_string(task.path().join("children"))
                    .unwrap_or_default()
                    .split_whitespace()
                    .map(|pid| pid.parse::<u32>().unwrap())
                    .collect::<Vec<_>>()
            })
            .filter(|pid| !pod.pids.contains(pid))
            .map(|pid| std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default())
            .collect()
    };
    let settled = wait_for(Duration::from_secs(10), || {
        let others = others();
        (!others
            .iter()
            .any(|name| name.starts_with("wpod pod-init") || name.starts_with("wpod forks")))
        .then_some(())
    });
    assert!(settled.is_some(), "wpod's other children: {:?}", others());
    let output = pod.terminate_leaving_nothing(&workspace);
    assert!(
        output.contains("forked from a fork server pods=2"),
        "{output}"
    );
}

#[test]
fn where_clone3_is_refused_pod_init_stays_the_parent_of_pid_1() {
    if !wall_available() {
        return;
    }
    // Docker's default seccomp profile answers ENOSYS to clone3 (so that
    // the C library falls back to clone); wpod, run under such a filter,
    // forks PID 1 as before, pod-init waits for it, and the pods end
    // cleanly all the same. Three of them: the fork server is refused
    // too, and wpod forks the other two itself.
    let refuse_clone3: seccompiler::BpfProgram = seccompiler::SeccompFilter::new(
        [(libc::SYS_clone3, Vec::new())].into_iter().collect(),
        seccompiler::SeccompAction::Allow,
        seccompiler::SeccompAction::Errno(libc::ENOSYS as u32),
        std::env::consts::ARCH.try_into().unwrap(),
    )
    .unwrap()
    .try_into()
    .unwrap();
    let workspace = Workspace::new();
    let mut command = workspace.wpod();
    // SAFETY: the closure runs in the forked child before exec; it makes two
    // system calls (prctl, seccomp) on a program built before the fork, and
    // allocates nothing.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut command, move || {
            seccompiler::apply_filter(&refuse_clone3).map_err(std::io::Error::other)
        });
    }
    let pod = Walled::start_with(&workspace, &several_sleepers(3), &[], command);
    assert_eq!(pod.pids.len(), 3);
    for pid in &pod.pids {
        let parent = parent_of(*pid);
        let parent_name = std::fs::read_to_string(format!("/proc/{parent}/comm")).unwrap();
        assert_eq!(parent_name.trim(), "wpod pod-init");
    }
    pod.terminate_leaving_nothing(&workspace);
}

#[test]
fn the_pod_process_sees_nothing_of_the_hosts_files() {
    if !wall_available() {
        return;
    }
    let workspace = Workspace::new();
    let pod = Walled::start(&workspace, SLEEPER, &[]);
    let root = pod.proc("root");
    assert!(
        !root.join("etc/passwd").exists(),
        "/etc/passwd of the host is visible"
    );
    assert!(!root.join("usr").exists() && !root.join("home").exists());
    // What is there: the volume, the image, the pod's own /proc.
    assert!(
        root.join(workspace.path().join("data").strip_prefix("/").unwrap())
            .is_dir()
    );
    // The hostname is per UTS namespace, so it is read from inside it
    // (reading /proc/PID/root/proc/sys/... would show the reader's own).
    let hostname = Command::new("nsenter")
        .args(["-t", &pod.pid.to_string(), "-u", "hostname"])
        .output()
        .expect("nsenter (util-linux)");
    assert_eq!(
        String::from_utf8_lossy(&hostname.stdout).trim(),
        "inside-the-wall"
    );
    pod.terminate();
}

#[test]
fn a_read_only_volume_is_a_read_only_mount() {
    if !wall_available() {
        return;
    }
    let workspace = Workspace::new();
    let pod = Walled::start(&workspace, SLEEPER, &[]);
    let data = workspace.path().join("data");
    let mountinfo = pod.read("mountinfo");
    let line = mountinfo
        .lines()
        .find(|l| l.split(' ').nth(4) == Some(data.to_str().unwrap()))
        .unwrap_or_else(|| panic!("no mount at {}:\n{mountinfo}", data.display()));
    let options: Vec<&str> = line.split(' ').nth(5).unwrap().split(',').collect();
    for option in ["ro", "nosuid", "nodev", "noexec"] {
        assert!(options.contains(&option), "{option} missing: {line}");
    }
    // The emptyDir's folder (inside the pod's state folder) stays writable.
    let state = mountinfo
        .lines()
        .find(|l| {
            l.split(' ')
                .nth(4)
                .is_some_and(|p| p.contains(&format!("/tmp/wpod-{}/walled-", current_uid())))
        })
        .unwrap_or_else(|| panic!("no state folder mount:\n{mountinfo}"));
    assert!(
        state.split(' ').nth(5).unwrap().starts_with("rw"),
        "{state}"
    );
    pod.terminate();
}

#[test]
fn the_pod_process_has_no_privileges_left() {
    if !wall_available() {
        return;
    }
    let workspace = Workspace::new();
    let pod = Walled::start(&workspace, SLEEPER, &[]);
    // Every thread, the runtime's included (the epoch ticker starts with
    // the engine, just after the pid file is written).
    let tasks = wait_for(Duration::from_secs(10), || {
        let tasks: Vec<_> = std::fs::read_dir(pod.proc("task"))
            .unwrap()
            .flatten()
            .collect();
        (tasks.len() > 1).then_some(tasks)
    })
    .expect("the runtime's threads");
    let mut checked = 0;
    for task in tasks {
        // A thread may end between the listing and the read (a blocking
        // pool's): only the ones still there are checked.
        let Ok(status) = std::fs::read_to_string(task.path().join("status")) else {
            continue;
        };
        checked += 1;
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|v| v.trim().to_owned())
                .unwrap_or_default()
        };
        assert_eq!(field("NoNewPrivs:"), "1", "{status}");
        assert_eq!(field("Seccomp:"), "2", "{status}");
        for set in ["CapEff:", "CapPrm:", "CapInh:", "CapBnd:", "CapAmb:"] {
            assert_eq!(field(set), "0000000000000000", "{set} {status}");
        }
    }
    assert!(checked >= 1, "no thread of the pod process could be read");
    pod.terminate();
}

#[test]
fn the_network_namespace_holds_only_lo() {
    if !wall_available() {
        return;
    }
    let workspace = Workspace::new();
    let pod = Walled::start(&workspace, SLEEPER, &[]);
    let dev = pod.read("net/dev");
    let interfaces: Vec<&str> = dev
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next())
        .map(str::trim)
        .collect();
    assert_eq!(interfaces, ["lo"], "{dev}");
    pod.terminate();
}

#[test]
fn required_refuses_a_pod_that_needs_the_host_network() {
    if !wall_available() {
        return;
    }
    let workspace = Workspace::new();
    let run = workspace.run_pod(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: on-the-host}\nspec:\n  restartPolicy: Never\n  hostNetwork: true\n  containers:\n  - name: app\n    image: '@hello@'\n",
        &["--isolation=required"],
    );
    run.expect_code(125);
    assert!(
        run.stderr
            .contains("network namespace for pod `on-the-host` unavailable")
            && run.stderr.contains("hostNetwork: true"),
        "{}",
        run.stderr
    );
}

/// The cgroup paths of wpod's pods (`<our cgroup>/wpod`) per v1 hierarchy,
/// where this machine has them.
pub(crate) fn pod_cgroup_parents() -> Vec<PathBuf> {
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    ["memory", "pids", "cpu"]
        .iter()
        .filter_map(|controller| {
            let path = own.lines().find_map(|l| {
                let mut parts = l.splitn(3, ':');
                let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
                controllers
                    .split(',')
                    .any(|c| c == *controller)
                    .then(|| path.to_owned())
            })?;
            let dir = Path::new("/sys/fs/cgroup")
                .join(controller)
                .join(path.trim_start_matches('/'))
                .join("wpod");
            Path::new("/sys/fs/cgroup")
                .join(controller)
                .is_dir()
                .then_some(dir)
        })
        .collect()
}

#[test]
fn the_cgroup_memory_backstop_stops_a_runaway_pod_and_only_it() {
    if !cgroups_available() {
        return;
    }
    let workspace = Workspace::new();
    // No Wasm memory limit at all: only the cgroup (the annotation) stops it.
    let run = workspace.run_pod(
        "apiVersion: v1
kind: Pod
metadata:
  name: runaway
  annotations: {wpod.dev/memory-limit: 200Mi}
spec:
  restartPolicy: Never
  containers:
  - name: hog
    image: '@probe@'
    args: [grow-memory, --die]
---
apiVersion: v1
kind: Pod
metadata: {name: neighbour}
spec:
  restartPolicy: Never
  containers:
  - name: calm
    image: '@probe@'
    args: [sleep, '1500']
",
        &["-o", "json"],
    );
    run.expect_code(137);
    let list = run.json();
    let status = |name: &str| {
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["metadata"]["name"] == name)
            .map(|i| i["status"].clone())
            .unwrap()
    };
    let runaway = status("runaway");
    assert_eq!(runaway["phase"], "Failed", "{runaway:#}");
    assert_eq!(runaway["reason"], "OOMKilled", "{runaway:#}");
    // The reason says which limit was reached, and where it came from.
    let message = runaway["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(
            "the pod reached its memory ceiling of 200Mi (set by the wpod.dev/memory-limit annotation)"
        ),
        "{message}"
    );
    let hog = &container(&runaway, "hog")["state"]["terminated"];
    assert_eq!(hog["reason"], "OOMKilled", "{runaway:#}");
    assert_eq!(hog["exitCode"], 137);
    let neighbour = status("neighbour");
    assert_eq!(neighbour["phase"], "Succeeded", "{neighbour:#}");
    assert!(run.stderr.contains("[calm] slept 1500"), "{}", run.stderr);
}

#[test]
fn a_rootless_run_gets_the_wall_and_its_files_belong_to_the_user() {
    if !wall_available() {
        return;
    }
    if !is_root() {
        eprintln!("skipped: creating a user for the rootless run needs root");
        return;
    }
    let Some(user) = crate::support::other_user() else {
        return;
    };
    let (uid, gid) = (user.uid, user.gid);
    let workspace = Workspace::new();
    let pod = workspace.pod(
        "apiVersion: v1
kind: Pod
metadata: {name: rootless}
spec:
  restartPolicy: Never
  volumes:
  - {name: out, hostPath: {path: '@ws@/out', type: DirectoryOrCreate}}
  containers:
  - name: writer
    image: '@probe@'
    args: [write, /out/made-inside.txt, 'by the pod']
    volumeMounts: [{name: out, mountPath: /out}]
",
    );
    let cache = workspace.path().join("cache");
    std::fs::create_dir_all(&cache).unwrap();
    for path in [
        workspace.path().to_owned(),
        workspace.tmp(),
        cache.clone(),
        pod.clone(),
    ] {
        user.chown(&path);
    }
    // The workspace is the test's (0700); the user must reach into it.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(workspace.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let run = |extra: &[&str]| -> crate::support::Run {
        user.command(&workspace.wpod())
            .env("WPOD_CACHE_DIR", &cache)
            .args(["run", pod.to_str().unwrap()])
            .args(extra)
            .output()
            .expect("runuser")
            .into()
    };
    let walled = run(&[]);
    walled.expect_code(0);
    assert!(
        walled
            .stdout
            .contains("[writer] wrote /out/made-inside.txt"),
        "{walled:?}"
    );
    // One warning: a user has no cgroup of its own here; the rest is up.
    assert_eq!(
        walled.stderr.matches("WARN").count(),
        1,
        "{}",
        walled.stderr
    );
    assert!(walled.stderr.contains("no cgroup"), "{}", walled.stderr);
    let made = workspace.path().join("out/made-inside.txt");
    let meta = std::fs::metadata(&made).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        (meta.uid(), meta.gid()),
        (uid, gid),
        "owner of {}",
        made.display()
    );
    assert_eq!(std::fs::read_to_string(&made).unwrap(), "by the pod");
    // `required` refuses, naming what is missing.
    let refused = run(&["--isolation=required"]);
    refused.expect_code(125);
    assert!(
        refused.stderr.contains("the pod cgroup unavailable"),
        "{}",
        refused.stderr
    );
}

/// The processes of one `wpod run` started with `WPOD_TEST_RUN=tag`: its pod
/// processes (pod-init and PID 1) are forks of it and keep the environment
/// it was started with, even once it is gone.
fn processes_tagged(tag: &str) -> Vec<u32> {
    let wanted = format!("WPOD_TEST_RUN={tag}\0");
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(&wanted))
        })
        .collect()
}

#[test]
fn kill_9_at_random_points_leaves_nothing_behind() {
    if !wall_available() {
        return;
    }
    let workspace = Workspace::new();
    let pod = workspace.pod(SLEEPER);
    // Every other run, four pods: three of them from the fork server.
    let four = workspace.write(
        "four.yaml",
        crate::support::expand(&several_sleepers(4), workspace.path()),
    );
    let mounts_before = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .count();
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    let mut killed = Vec::new();
    for round in 0..10 {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        // A random point in start-up: from before the namespaces exist to
        // well after the guest runs (the pod takes ~20-80 ms to start).
        let delay = Duration::from_micros((seed >> 33) % 150_000);
        let tag = format!("kill-{}-{seed}", std::process::id());
        let file = if round % 2 == 0 { &pod } else { &four };
        let mut wpod = workspace
            .wpod()
            .args(["run", file.to_str().unwrap()])
            .env("WPOD_TEST_RUN", &tag)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        wpod.kill().unwrap();
        wpod.wait().unwrap();
        killed.push(wpod.id());
        let gone = wait_for(Duration::from_secs(10), || {
            processes_tagged(&tag).is_empty().then_some(())
        });
        assert!(
            gone.is_some(),
            "after kill -9 at {delay:?}, pod processes remain: {:?}",
            processes_tagged(&tag)
        );
    }
    // The next run sweeps what the killed ones could not clean up.
    workspace
        .run_pod(
            "apiVersion: v1\nkind: Pod\nmetadata: {name: sweeper}\nspec:\n  restartPolicy: Never\n  containers:\n  - {name: hello, image: '@hello@'}\n",
            &[],
        )
        .expect_code(0);
    assert!(
        workspace.leftovers().is_empty(),
        "folders left: {:?}",
        workspace.leftovers()
    );
    for parent in pod_cgroup_parents() {
        let left: Vec<String> = std::fs::read_dir(&parent)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|name| killed.iter().any(|pid| name.contains(&format!("-{pid}-w"))))
            .collect();
        assert!(
            left.is_empty(),
            "cgroups left in {}: {left:?}",
            parent.display()
        );
    }
    let mounts_after = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .count();
    assert_eq!(
        mounts_before, mounts_after,
        "mounts were left in the host's namespace"
    );
}

#[test]
fn where_the_kernel_refuses_namespaces_auto_runs_without_the_wall_and_required_refuses() {
    if !wall_available() {
        return;
    }
    // A user namespace of the test's own whose limit of nested user
    // namespaces is 0: there the kernel refuses wpod's `unshare` as it does
    // where user namespaces are disabled (ENOSPC), host untouched.
    let workspace = Workspace::new();
    let pod = workspace.pod(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: plain}\nspec:\n  restartPolicy: Never\n  containers:\n  - {name: hello, image: '@hello@'}\n",
    );
    let run = |isolation: &str| -> crate::support::Run {
        let wpod = workspace.wpod();
        let mut command = Command::new("unshare");
        command
            .args(["--user", "--map-root-user", "--", "sh", "-c"])
            .arg("echo 0 > /proc/sys/user/max_user_namespaces && exec \"$@\"")
            .arg("sh")
            .arg(wpod.get_program())
            .args(["run", pod.to_str().unwrap(), isolation]);
        for (key, value) in wpod.get_envs() {
            match value {
                Some(value) => command.env(key, value),
                None => command.env_remove(key),
            };
        }
        command.output().unwrap().into()
    };
    let auto = run("--isolation=auto");
    auto.expect_code(0);
    assert!(
        auto.stdout.contains("[hello] hello from wpod"),
        "{}",
        auto.stdout
    );
    assert!(
        auto.stderr.contains("running without the OS wall")
            && auto.stderr.contains("user.max_user_namespaces is 0"),
        "{}",
        auto.stderr
    );
    // `required` refuses (there the cgroups, out of reach of a user
    // namespace, are the first part it finds missing).
    let required = run("--isolation=required");
    required.expect_code(125);
    assert!(
        required.stderr.contains("--isolation=required: ")
            && required.stderr.contains(" unavailable: "),
        "{}",
        required.stderr
    );
    assert!(
        !required.stdout.contains("hello from wpod"),
        "{}",
        required.stdout
    );
    assert!(
        workspace.leftovers().is_empty(),
        "left behind: {:?}",
        workspace.leftovers()
    );
}

#[test]
fn the_private_folder_touches_the_hosts_disk_only_for_an_empty_dir_there() {
    if !wall_available() {
        return;
    }
    let workspace = Workspace::new();
    let state = workspace.state_dir(current_uid());
    // No emptyDir: the pod's private folder (its /run/wpod folders) is a
    // tmpfs of its own mount namespace; nothing of it is on the host.
    let plain = SLEEPER
        .replace("  - {name: scratch, emptyDir: {}}\n", "")
        .replace("    - {name: scratch, mountPath: /scratch}\n", "");
    assert!(!plain.contains("scratch"), "{plain}");
    let pod = Walled::start(&workspace, &plain, &[]);
    assert!(
        workspace.leftovers().is_empty(),
        "on the host: {:?}",
        workspace.leftovers()
    );
    let private_tmpfs = pod.read("mountinfo").lines().any(|line| {
        let mount_point = line.split(' ').nth(4).unwrap_or_default();
        mount_point.starts_with(state.to_str().unwrap()) && line.contains(" - tmpfs ")
    });
    assert!(private_tmpfs, "{}", pod.read("mountinfo"));
    let (code, output) = pod.terminate();
    assert_eq!(code, 143, "{output}");
    // An emptyDir on disk: the folder is the host's while the pod runs,
    // and removed after.
    let pod = Walled::start(&workspace, SLEEPER, &[]);
    assert_eq!(
        workspace.leftovers().len(),
        1,
        "{:?}",
        workspace.leftovers()
    );
    pod.terminate_leaving_nothing(&workspace);
}

#[test]
fn an_idle_pod_wakes_no_thread() {
    if !wall_available() {
        return;
    }
    let workspace = Workspace::new();
    let pod = Walled::start(&workspace, SLEEPER, &[]);
    // The epoch tickers advance the epoch only while a guest runs Wasm
    // code; this one sleeps in a host call, so they stay parked (a check
    // a second), where they used to wake every 10 ms.
    let tickers = || {
        std::fs::read_dir(pod.proc("task"))
            .unwrap()
            .flatten()
            .filter(|task| {
                std::fs::read_to_string(task.path().join("comm"))
                    .is_ok_and(|comm| comm.trim() == "wpod-epoch")
            })
            .collect::<Vec<_>>()
    };
    // The pid file is written once the wall is up; the engine (and its
    // ticker) comes a moment later, later still on a busy machine.
    wait_for(Duration::from_secs(60), || {
        (!tickers().is_empty()).then_some(())
    })
    .expect("a wpod-epoch thread in the pod process within 60 s");
    let switches = || -> u64 {
        tickers()
            .into_iter()
            .map(|task| {
                let status = std::fs::read_to_string(task.path().join("status")).unwrap();
                status
                    .lines()
                    .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
                    .and_then(|n| n.trim().parse::<u64>().ok())
                    .unwrap_or(0)
            })
            .sum()
    };
    // Until the guest is asleep (it compiles, starts and reaches its
    // sleep), the tickers run: wait for a quiet half second first.
    let mut before = switches();
    wait_for(Duration::from_secs(60), || {
        std::thread::sleep(Duration::from_millis(500));
        let now = switches();
        let quiet = now - before <= 2;
        before = now;
        quiet.then_some(())
    })
    .expect("the tickers quiet within 60 s");
    std::thread::sleep(Duration::from_secs(2));
    let woken = switches() - before;
    assert!(woken <= 10, "the epoch tickers woke {woken} times in 2 s");
    let (code, output) = pod.terminate();
    assert_eq!(code, 143, "{output}");
}

#[test]
fn a_memory_empty_dir_is_a_tmpfs_of_its_size_limit() {
    if !wall_available() {
        return;
    }
    let workspace = Workspace::new();
    // 1 MiB of tmpfs: a small file fits, 2 MB do not; the data vanishes
    // with the pod's mount namespace.
    let yaml = "apiVersion: v1
kind: Pod
metadata: {name: memory}
spec:
  restartPolicy: Never
  volumes:
  - {name: scratch, emptyDir: {medium: Memory, sizeLimit: 1Mi}}
  containers:
  - name: small
    image: busybox
    command: [sh, -c, 'echo fits > /m/small && cat /m/small']
    volumeMounts: [{name: scratch, mountPath: /m}]
  - name: big
    image: busybox
    command: [sh, -c, 'seq 1 300000 > /m/big']
    volumeMounts: [{name: scratch, mountPath: /m}]
";
    let run = workspace.run_pod(yaml, &["--isolation", "required", "-o", "json"]);
    run.expect_code(1);
    let status = run.json();
    assert_eq!(
        container(&status, "small")["state"]["terminated"]["exitCode"],
        0,
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("[small] fits"), "{}", run.stderr);
    assert_ne!(
        container(&status, "big")["state"]["terminated"]["exitCode"],
        0
    );
    // WASI reports ENOSPC as an I/O error to the guest.
    assert!(
        run.stderr.contains("[big] seq: I/O error"),
        "{}",
        run.stderr
    );
    // Without the wall the same emptyDir is a plain folder: the write
    // succeeds (a pod that went on running would then be evicted).
    workspace
        .run_pod(yaml, &["--isolation", "none"])
        .expect_code(0);
    assert!(
        workspace.leftovers().is_empty(),
        "left behind: {:?}",
        workspace.leftovers()
    );
}

#[test]
fn the_library_refuses_to_fork_pod_processes_from_a_process_with_threads() {
    if !wall_available() {
        return;
    }
    // This test binary has the harness's threads: forking it would be unsound.
    let workspace = Workspace::new();
    let config = wpod::RunConfig {
        isolation: wpod::Isolation::Auto,
        runtime: wpod::RuntimeConfig {
            cache_dir: None,
            wasip3: false,
            compiler: wpod::CompilerChoice::Auto,
        },
        options: wpod::PodOptions {
            state_dir: workspace.path().join("state"),
            ..wpod::PodOptions::default()
        },
        pid_file: None,
        stop_on_signals: false,
        exit_after: false,
        pod_files: None,
        status_sink: None,
        progress: None,
    };
    let pods = wpod::PodSpec::from_yaml_str(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: threads}\nspec:\n  containers:\n  - {name: a, image: a.wasm}\n",
        workspace.path().join("pod.yaml"),
    )
    .unwrap();
    let error = wpod::run(pods, config).expect_err("refused");
    assert!(error.to_string().contains("one thread"), "{error}");
    assert!(!error.is_bad_input());
}
