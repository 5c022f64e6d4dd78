//! Detached pods (`wpod run -d`): pods that outlive the terminal, with no
//! daemon. [`run_detached`] forks the run's supervisor into a session of its
//! own (as podman's conmon), which runs the pods with [`crate::run`] and
//! keeps each pod's state in a folder of the user's [`PodStore`]:
//!
//! - `manifest.yaml`: the manifest the pod came from, as it was;
//! - `supervisor.pid`: the process that runs it (`wpod stop` signals it);
//! - `status.json`: its `PodStatus`, replaced atomically at every change;
//! - `logs/<container>.log`: its containers' lines in the CRI log format
//!   ([`crate::FileLogs`]; behind the wall the pod's process writes there).
//!
//! Every other command reads these files: nothing talks to a server.
//!
//! Detached runs need `fork`: elsewhere than on Linux `run_detached` refuses,
//! and what only the fork's child uses is unused there.
#![cfg_attr(not(target_os = "linux"), allow(dead_code))]

use crate::control::ControlError;
use crate::manifest::PodSpec;
use crate::run::{RunConfig, StatusSink};
use crate::sandbox::SandboxError;
use crate::status::{PodPhase, PodStatus};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// The most one container's log file holds before it is rotated.
pub const LOG_FILE_BYTES: u64 = 10 << 20;

/// The user's detached pods: `<state folder>/pods/<name>/`.
#[derive(Debug, Clone)]
pub struct PodStore {
    dir: PathBuf,
}

/// One detached pod, as its folder tells.
#[derive(Debug, Clone)]
pub struct StoredPod {
    pub name: String,
    pub dir: PathBuf,
    /// The process running it, while it runs.
    pub supervisor: Option<u32>,
    /// Its last status, once it reported one.
    pub status: Option<PodStatus>,
    /// When it was started.
    pub created: SystemTime,
}

impl PodStore {
    /// The store in the state folder `state_root` (the default is
    /// `PodOptions::default().state_dir`); nothing is made until a pod is.
    pub fn new(state_root: &Path) -> PodStore {
        PodStore {
            dir: state_root.join("pods"),
        }
    }

    /// Every pod of the store, by name.
    pub fn pods(&self) -> Vec<StoredPod> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut pods: Vec<StoredPod> = entries
            .flatten()
            .filter_map(|entry| self.pod(entry.file_name().to_str()?))
            .collect();
        pods.sort_by(|a, b| a.name.cmp(&b.name));
        pods
    }

    /// The pod called `name`, if the store has it.
    pub fn pod(&self, name: &str) -> Option<StoredPod> {
        let dir = self.dir.join(name);
        let created = std::fs::symlink_metadata(&dir)
            .ok()
            .filter(|meta| meta.is_dir())?
            .modified()
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let supervisor = std::fs::read_to_string(dir.join("supervisor.pid"))
            .ok()
            .and_then(|record| live_supervisor(&record));
        let status = std::fs::read(dir.join("status.json"))
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok());
        Some(StoredPod {
            name: name.to_owned(),
            dir,
            supervisor,
            status,
            created,
        })
    }
}

/// When process `pid` started (clock ticks since boot: `/proc/PID/stat`'s
/// 22nd field), if it exists and has not ended. With the pid it names one
/// process for good: a reused pid has another start time. A zombie (ended,
/// not yet reaped by whoever adopted it) counts as ended: `stop` need not
/// wait for the reaper.
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name, in parentheses, may hold spaces: count after it.
    let mut fields = stat[stat.rfind(')')? + 1..].split_whitespace();
    if matches!(fields.next(), Some("Z" | "X")) {
        return None;
    }
    fields.nth(18)?.parse().ok()
}

/// The supervisor recorded in `supervisor.pid` (`PID START`), if that
/// process still runs.
fn live_supervisor(record: &str) -> Option<u32> {
    let mut words = record.split_whitespace();
    let pid: u32 = words.next()?.parse().ok()?;
    let started: u64 = words.next()?.parse().ok()?;
    (start_time(pid) == Some(started)).then_some(pid)
}

impl StoredPod {
    /// Whether the pod still runs (its supervisor is alive).
    pub fn is_running(&self) -> bool {
        self.supervisor.is_some()
    }

    /// Its phase as `ps` shows it: what it reported, `Failed` for a pod
    /// whose supervisor is gone without a final word (a `kill -9`).
    pub fn shown_status(&self) -> String {
        let Some(status) = &self.status else {
            return if self.is_running() {
                "Pending".into()
            } else {
                "Failed".into()
            };
        };
        let ended = matches!(status.phase, PodPhase::Succeeded | PodPhase::Failed);
        if !self.is_running() && !ended {
            return "Failed".into();
        }
        match (status.phase, status.reason.as_deref()) {
            (PodPhase::Succeeded, _) => "Completed".into(),
            (PodPhase::Failed, Some(reason)) => reason.into(),
            (PodPhase::Failed, None) => "Error".into(),
            (phase, _) => format!("{phase:?}"),
        }
    }

    /// Runs `request` in the pod (see [`crate::Execer::exec`]) through its
    /// control socket, its output copied to `stdout` and `stderr` as it
    /// comes.
    ///
    /// # Errors
    ///
    /// [`ControlError::NotRunning`] for a pod that has ended; `Refused` for
    /// a request the pod turned down (no such container, program not found).
    pub fn exec(
        &self,
        request: crate::ExecRequest,
        stdout: &mut dyn std::io::Write,
        stderr: &mut dyn std::io::Write,
    ) -> Result<crate::ExecOutcome, ControlError> {
        if !self.is_running() {
            return Err(self.not_running());
        }
        #[cfg(unix)]
        return crate::control::exec(&self.name, &self.control_socket(), request, stdout, stderr);
        #[cfg(not(unix))]
        {
            let _ = (request, stdout, stderr);
            Err(ControlError::Unsupported {
                pod: self.name.clone(),
            })
        }
    }

    /// What the pod's containers use now, from the pod itself.
    ///
    /// # Errors
    ///
    /// As [`StoredPod::exec`].
    pub fn top(&self) -> Result<crate::TopReport, ControlError> {
        if !self.is_running() {
            return Err(self.not_running());
        }
        #[cfg(unix)]
        return crate::control::top(&self.name, &self.control_socket());
        #[cfg(not(unix))]
        Err(ControlError::Unsupported {
            pod: self.name.clone(),
        })
    }

    fn control_socket(&self) -> PathBuf {
        self.dir.join(crate::control::SOCKET)
    }

    fn not_running(&self) -> ControlError {
        ControlError::NotRunning {
            pod: self.name.clone(),
            socket: self.control_socket(),
        }
    }

    /// The log file of `container`.
    pub fn log_path(&self, container: &str) -> PathBuf {
        self.dir.join("logs").join(format!("{container}.log"))
    }

    /// The log file of `container`'s instance before its last restart.
    pub fn previous_log_path(&self, container: &str) -> PathBuf {
        self.dir
            .join("logs")
            .join(format!("{container}.previous.log"))
    }

    /// Stops the pod: SIGTERM to its supervisor, which stops the containers
    /// gracefully and writes the final status; after `grace` a second
    /// signal stops them at once, and SIGKILL 5 s later if it is still
    /// there. Returns once the supervisor is gone.
    ///
    /// # Errors
    ///
    /// The supervisor outlived SIGKILL for 5 s (it cannot be signalled).
    pub fn stop(&self, grace: Duration) -> std::io::Result<()> {
        let Some(pid) = self.supervisor else {
            return Ok(());
        };
        let started = start_time(pid);
        let alive = || started.is_some() && start_time(pid) == started;
        let gone = |limit: Duration| {
            let deadline = std::time::Instant::now() + limit;
            while std::time::Instant::now() < deadline {
                if !alive() {
                    return true;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            !alive()
        };
        // As the kubelet: SIGTERM asks the pods to stop gracefully; past
        // `grace`, a second signal stops them at once (the supervisor
        // forwards both), and SIGKILL is the last resort.
        signal(pid, libc_signal::TERM);
        if gone(grace) {
            return Ok(());
        }
        signal(pid, libc_signal::INT);
        if gone(Duration::from_secs(5)) {
            return Ok(());
        }
        signal(pid, libc_signal::KILL);
        if gone(Duration::from_secs(5)) {
            Ok(())
        } else {
            Err(std::io::Error::other(format!(
                "the supervisor of pod `{}` (pid {pid}) did not end",
                self.name
            )))
        }
    }

    /// Removes the pod's folder (its state and logs). The pod must have
    /// stopped.
    ///
    /// # Errors
    ///
    /// The pod still runs, or the folder could not be removed.
    pub fn remove(self) -> std::io::Result<()> {
        if self.is_running() {
            return Err(std::io::Error::other(format!(
                "pod `{}` is running; stop it first (wpod stop {0}), or remove it with -f",
                self.name
            )));
        }
        std::fs::remove_dir_all(&self.dir)
    }
}

/// The signals `stop` sends, without `libc` on every system.
mod libc_signal {
    pub const INT: i32 = 2;
    pub const TERM: i32 = 15;
    pub const KILL: i32 = 9;
}

fn signal(pid: u32, signal: i32) {
    #[cfg(unix)]
    if let (Some(pid), Some(signal)) = (
        rustix::process::Pid::from_raw(pid as i32),
        rustix::process::Signal::from_named_raw(signal),
    ) {
        let _ = rustix::process::kill_process(pid, signal);
    }
    #[cfg(not(unix))]
    let _ = (pid, signal);
}

/// Starts `pods` detached: each gets its folder in `store`, then a process
/// of their own (in a new session, its standard streams on `/dev/null`)
/// runs them with [`crate::run`] and `config`, their lines going to log files
/// and their statuses to `status.json`. Returns the pods' names once every
/// pod runs (or has ended), or the error that kept them from starting, as
/// the foreground run would have reported it. `manifest` is the text the
/// pods were read from, kept in each pod's folder.
///
/// Call it while the process has one thread, as [`crate::run`].
///
/// # Errors
///
/// [`SandboxError::PodExists`] for a name the store has (unless `replace`:
/// that pod is stopped and removed first); whatever [`crate::run`] refused.
pub fn run_detached(
    manifest: &[u8],
    pods: Vec<PodSpec>,
    config: RunConfig,
    store: &PodStore,
    replace: bool,
) -> Result<Vec<String>, SandboxError> {
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (manifest, pods, config, store, replace);
        Err(SandboxError::Unavailable {
            part: "detached pods".into(),
            reason: "they need fork(), which this system does not have".into(),
            fix: "run the pods in the foreground".into(),
        })
    }
    #[cfg(target_os = "linux")]
    {
        use crate::sandbox::sys;
        let supervisor_error = |what: &str, source: std::io::Error| SandboxError::Supervisor {
            pod: pods.first().map(|p| p.name.clone()).unwrap_or_default(),
            what: what.into(),
            source,
        };
        // The store is a private folder of its own (0700, checked), in the
        // user's checked state folder.
        crate::state::ensure_private_root(store.dir.parent().unwrap_or(&store.dir))
            .and_then(|()| crate::state::ensure_private_root(&store.dir))
            .map_err(|e| supervisor_error("making the store of detached pods", e))?;
        let names: Vec<String> = pods.iter().map(|p| p.name.clone()).collect();
        for name in &names {
            if let Some(existing) = store.pod(name) {
                if !replace {
                    return Err(SandboxError::PodExists { pod: name.clone() });
                }
                existing
                    .stop(Duration::ZERO)
                    .and_then(|()| store.pod(name).map_or(Ok(()), |stopped| stopped.remove()))
                    .map_err(|e| supervisor_error("replacing the pod", e))?;
            }
            let dir = crate::state::create_private_child(&store.dir, name)
                .map_err(|e| supervisor_error("making the pod's folder", e))?;
            std::fs::create_dir(dir.join("logs"))
                .and_then(|()| std::fs::write(dir.join("manifest.yaml"), manifest))
                .map_err(|e| supervisor_error("writing the pod's folder", e))?;
        }
        let (ready_read, ready_write) =
            sys::pipe().map_err(|e| supervisor_error("creating a pipe", e.source))?;
        let progress = config.progress.clone();
        let _ = std::io::Write::flush(&mut std::io::stdout());
        // SAFETY: the caller has one thread (documented above; `run`, in
        // the child, checks it again before it forks the pod processes).
        match unsafe { sys::fork() }.map_err(|e| supervisor_error("forking", e.source))? {
            sys::Forked::Child => {
                drop(ready_read);
                let code = supervise_detached(pods, config, store, ready_write);
                sys::exit_now(code);
            }
            sys::Forked::Parent(child) => {
                drop(ready_write);
                // "compiling MS PROGRAM..." lines while it compiles (shown
                // here: the supervisor has no terminal), then "running", or
                // "failed CODE" and the error's text: read to that line's end
                // only (the supervisor goes on running).
                let mut reader = std::io::BufReader::new(std::fs::File::from(ready_read));
                let mut first = String::new();
                loop {
                    first.clear();
                    let _ = std::io::BufRead::read_line(&mut reader, &mut first);
                    let Some(compiling) = first.strip_prefix("compiling ") else {
                        break;
                    };
                    let mut words = compiling.split_whitespace();
                    let elapsed = words.next().and_then(|ms| ms.parse().ok()).unwrap_or(0);
                    let programs: Vec<String> = words.map(str::to_owned).collect();
                    if let Some(progress) = &progress {
                        progress.compiling(&programs, Duration::from_millis(elapsed));
                    }
                }
                if let Some(progress) = &progress {
                    progress.done();
                }
                let mut answer = first.clone();
                if first.starts_with("failed") {
                    let _ = std::io::Read::read_to_string(&mut reader, &mut answer);
                }
                let mut lines = answer.lines();
                match lines.next() {
                    Some("running") => Ok(names.clone()),
                    Some(failed) => {
                        // It exits right after saying so: let it, so that its
                        // pods' folders can go.
                        let _ = sys::wait_for(child);
                        let fault = match failed.strip_prefix("failed ") {
                            Some("126") => crate::Fault::NotRunnable,
                            Some("127") => crate::Fault::NotFound,
                            _ => crate::Fault::Input,
                        };
                        let message = lines.collect::<Vec<_>>().join("\n");
                        Err(SandboxError::Inside {
                            pod: names.first().cloned().unwrap_or_default(),
                            report: crate::ErrorReport {
                                message,
                                causes: Vec::new(),
                                fault,
                            },
                        })
                    }
                    None => Err({
                        let _ = sys::wait_for(child);
                        supervisor_error(
                            "starting the detached pods",
                            std::io::Error::other("the supervisor ended without a word"),
                        )
                    }),
                }
            }
        }
        .inspect_err(|_| {
            // Nothing of a pod that did not start stays behind.
            for name in &names {
                if let Some(pod) = store.pod(name)
                    && !pod.is_running()
                    && pod.status.is_none()
                {
                    let _ = pod.remove();
                }
            }
        })
    }
}

/// The detached run's supervisor, in its own session: runs the pods and
/// tells the waiting `run_detached` once they run. Returns the exit code.
#[cfg(target_os = "linux")]
fn supervise_detached(
    pods: Vec<PodSpec>,
    mut config: RunConfig,
    store: &PodStore,
    ready: rustix::fd::OwnedFd,
) -> i32 {
    let _ = rustix::process::setsid();
    // The terminal may go: nothing of ours writes to it any more.
    if let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        let _ = rustix::stdio::dup2_stdin(&null);
        let _ = rustix::stdio::dup2_stdout(&null);
        let _ = rustix::stdio::dup2_stderr(&null);
    }
    let me = std::process::id();
    let pid = format!("{me} {}\n", start_time(me).unwrap_or(0));
    for pod in &pods {
        let _ = std::fs::write(store.dir.join(&pod.name).join("supervisor.pid"), &pid);
    }
    let ready = Arc::new(Mutex::new(Some(std::fs::File::from(ready))));
    let sink = Arc::new(StoreSink {
        dir: store.dir.clone(),
        waiting: Mutex::new(pods.iter().map(|p| p.name.clone()).collect()),
        ready: ready.clone(),
    });
    config.options.log_sink =
        Arc::new(crate::log::FileLogs::new(store.dir.clone(), LOG_FILE_BYTES));
    config.pod_files = Some(store.dir.clone());
    config.status_sink = Some(sink);
    config.progress = Some(Arc::new(PipeProgress {
        ready: ready.clone(),
    }));
    config.stop_on_signals = true;
    config.exit_after = true;
    config.pid_file = None;
    match crate::run(pods, config) {
        Ok(outcome) => {
            // Pods that ended before they were seen running were told too.
            i32::from(outcome.exit_status())
        }
        Err(error) => {
            let fault = error.fault();
            if let Ok(mut slot) = ready.lock()
                && let Some(mut file) = slot.take()
            {
                let _ = std::io::Write::write_all(
                    &mut file,
                    format!("failed {}\n{error}\n", fault.exit_code()).as_bytes(),
                );
            }
            i32::from(fault.exit_code())
        }
    }
}

/// Passes compile progress to the waiting `run_detached`, which shows it.
#[derive(Debug)]
struct PipeProgress {
    ready: Arc<Mutex<Option<std::fs::File>>>,
}

impl crate::CompileProgress for PipeProgress {
    fn compiling(&self, programs: &[String], elapsed: Duration) {
        if let Ok(mut slot) = self.ready.lock()
            && let Some(file) = slot.as_mut()
        {
            // Image references hold no whitespace.
            let line = format!("compiling {} {}\n", elapsed.as_millis(), programs.join(" "));
            let _ = std::io::Write::write_all(file, line.as_bytes());
        }
    }

    fn done(&self) {}
}

/// Writes each pod's `status.json`, and tells `run_detached` once every pod
/// runs or has ended.
#[derive(Debug)]
struct StoreSink {
    dir: PathBuf,
    waiting: Mutex<Vec<String>>,
    ready: Arc<Mutex<Option<std::fs::File>>>,
}

impl StatusSink for StoreSink {
    fn status(&self, pod: &str, status: &PodStatus) {
        let dir = self.dir.join(pod);
        if let Ok(json) = serde_json::to_vec_pretty(status) {
            let temporary = dir.join(".status.json.tmp");
            if std::fs::write(&temporary, json).is_ok() {
                let _ = std::fs::rename(&temporary, dir.join("status.json"));
            }
        }
        // Running, ended, or running its init containers: started.
        let started = status
            .init_container_statuses
            .iter()
            .chain(&status.container_statuses)
            .any(|c| c.started);
        if status.phase == PodPhase::Pending && !started {
            return;
        }
        let Ok(mut waiting) = self.waiting.lock() else {
            return;
        };
        waiting.retain(|name| name != pod);
        if waiting.is_empty()
            && let Ok(mut slot) = self.ready.lock()
            && let Some(mut file) = slot.take()
        {
            let _ = std::io::Write::write_all(&mut file, b"running\n");
        }
    }
}
