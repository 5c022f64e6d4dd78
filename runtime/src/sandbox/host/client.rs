//! The caller's side of the pod host: [`PodHost`] starts the helper,
//! sends requests and reads what the host says; [`compile_ahead`] runs the
//! compiler child.

use super::wire::{self, Channel, FromHost, Outputs, RuntimeSettings, ToHost};
use super::{
    COMPILE_ARG, HOST_ARG, HOST_FD, HostConfig, HostError, HostEvent, HostedContainer,
    READY_TIMEOUT, plan, serve,
};
use crate::pod::ContainerUsage;
use crate::sandbox::{ErrorReport, sys};
use rustix::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, oneshot};

/// The caller's handle on a running pod host.
#[derive(Debug)]
pub struct PodHost {
    channel: Arc<Channel>,
    pending: Arc<Pending>,
    seq: AtomicU64,
    /// The helper (the caller's child) and the walled process (its child).
    pid: u32,
    walled_pid: u32,
    ended: Mutex<Option<oneshot::Receiver<()>>>,
}

/// Answers awaited, by container id or sequence number.
#[derive(Debug, Default)]
struct Pending {
    starts: Mutex<HashMap<String, oneshot::Sender<Result<(), ErrorReport>>>>,
    usage: Mutex<HashMap<u64, oneshot::Sender<Vec<ContainerUsage>>>>,
}

impl PodHost {
    /// Executes the helper, which puts up the wall and starts the runtime;
    /// returns once it serves, with the receiver of its [`HostEvent`]s.
    /// Must be called inside a tokio runtime.
    ///
    /// # Errors
    ///
    /// [`HostError`] when the helper cannot start, its wall cannot be put up
    /// (the report says which step and why), or it does not answer in time.
    pub async fn start(
        config: HostConfig,
    ) -> Result<(PodHost, mpsc::UnboundedReceiver<HostEvent>), HostError> {
        let (ours, theirs) = wire::socket_pair().map_err(HostError::Channel)?;
        let (pid, ended) = spawn_helper(&config.program, theirs)?;
        let channel = Arc::new(Channel::new(ours).map_err(HostError::Channel)?);
        let setup = ToHost::Setup(Box::new(wire::Setup {
            name: config.name.clone(),
            plan: plan(&config),
            cgroups: config.cgroups.clone(),
            runtime: RuntimeSettings::new(&config.runtime),
            caller: std::process::id(),
        }));
        channel
            .send(&setup, &[])
            .await
            .map_err(HostError::Channel)?;
        let walled_pid = tokio::time::timeout(READY_TIMEOUT, wait_ready(&channel))
            .await
            .map_err(|_| {
                kill(pid);
                HostError::Timeout
            })??;
        let (events, receiver) = mpsc::unbounded_channel();
        let pending = Arc::new(Pending::default());
        tokio::spawn(read_events(channel.clone(), pending.clone(), events));
        let host = PodHost {
            channel,
            pending,
            seq: AtomicU64::new(0),
            pid,
            walled_pid,
            ended: Mutex::new(Some(ended)),
        };
        Ok((host, receiver))
    }

    /// The helper's PID (the caller's child).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The walled process's PID, in the caller's PID namespace.
    pub fn walled_pid(&self) -> u32 {
        self.walled_pid
    }

    /// Starts container `id`, its output into `stdout` and `stderr` (FIFOs
    /// open for writing); returns once it runs. Its end comes as
    /// [`HostEvent::Exited`].
    ///
    /// # Errors
    ///
    /// [`HostError::NotStarted`] when it cannot start (the report names the
    /// program and why), [`HostError::Gone`] when the host has ended.
    pub async fn start_container(
        &self,
        id: &str,
        container: &HostedContainer,
        stdout: Option<OwnedFd>,
        stderr: Option<OwnedFd>,
    ) -> Result<(), HostError> {
        let (answer, answered) = oneshot::channel();
        self.pending
            .starts
            .lock()
            .expect("pending starts")
            .insert(id.to_owned(), answer);
        let outputs = Outputs {
            stdout: stdout.is_some(),
            stderr: stderr.is_some(),
        };
        let files: Vec<BorrowedFd<'_>> = stdout.iter().chain(&stderr).map(|f| f.as_fd()).collect();
        let request = ToHost::Start {
            id: id.to_owned(),
            container: Box::new(container.clone()),
            outputs,
        };
        if let Err(error) = self.channel.send(&request, &files).await {
            self.pending
                .starts
                .lock()
                .expect("pending starts")
                .remove(id);
            return Err(HostError::Channel(error));
        }
        // Our copies of the FIFOs: the host has its own now.
        drop((stdout, stderr));
        match answered.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(report)) => Err(HostError::NotStarted(report)),
            Err(_) => Err(HostError::Gone),
        }
    }

    /// Stops container `id`: at once (`force`: exit 137), or gracefully
    /// (its `/run/wpod/terminating` appears; wpod interrupts it after 30 s).
    pub async fn stop(&self, id: &str, force: bool) {
        let request = ToHost::Stop {
            id: id.to_owned(),
            force,
        };
        let _ = self.channel.send(&request, &[]).await;
    }

    /// Runs `command` in running container `id` as `wpod exec` does; its end
    /// comes as [`HostEvent::ExecEnded`].
    ///
    /// # Errors
    ///
    /// [`HostError::Channel`] when the request cannot be sent.
    pub async fn exec(
        &self,
        id: &str,
        exec_id: &str,
        command: Vec<String>,
        stdout: Option<OwnedFd>,
        stderr: Option<OwnedFd>,
    ) -> Result<(), HostError> {
        let outputs = Outputs {
            stdout: stdout.is_some(),
            stderr: stderr.is_some(),
        };
        let files: Vec<BorrowedFd<'_>> = stdout.iter().chain(&stderr).map(|f| f.as_fd()).collect();
        let request = ToHost::Exec {
            id: id.to_owned(),
            exec_id: exec_id.to_owned(),
            command,
            outputs,
        };
        self.channel
            .send(&request, &files)
            .await
            .map_err(HostError::Channel)
    }

    /// Stops an exec (its run is dropped: exit 137).
    pub async fn stop_exec(&self, id: &str, exec_id: &str) {
        let request = ToHost::StopExec {
            id: id.to_owned(),
            exec_id: exec_id.to_owned(),
        };
        let _ = self.channel.send(&request, &[]).await;
    }

    /// What container `id` uses now (nothing when it does not run, or the
    /// host does not answer within a second).
    pub async fn usage(&self, id: &str) -> Vec<ContainerUsage> {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let (answer, answered) = oneshot::channel();
        self.pending
            .usage
            .lock()
            .expect("pending usage")
            .insert(seq, answer);
        let request = ToHost::Usage {
            seq,
            id: id.to_owned(),
        };
        if self.channel.send(&request, &[]).await.is_err() {
            return Vec::new();
        }
        let waited = tokio::time::timeout(std::time::Duration::from_secs(1), answered).await;
        self.pending
            .usage
            .lock()
            .expect("pending usage")
            .remove(&seq);
        waited.ok().and_then(Result::ok).unwrap_or_default()
    }

    /// Ends the host: its end of the socket closes, and it exits with every
    /// container; killed if it has not within 5 s. Returns once the helper
    /// has been reaped: nothing of the pod runs then.
    pub async fn shut_down(&self) {
        self.channel.shut_down();
        let ended = self.ended.lock().expect("host end").take();
        if let Some(ended) = ended
            && tokio::time::timeout(std::time::Duration::from_secs(5), ended)
                .await
                .is_err()
        {
            kill(self.pid);
            // The waiting thread reaps it; the kill is immediate.
        }
    }
}

/// Compiles the programs of `container` that the compile cache lacks, in a
/// child process outside the wall (the caller's binary, [`COMPILE_ARG`]),
/// so that the host finds them compiled in its read-only cache; returns
/// when the first tier is done (the child goes on with Cranelift when
/// tiered). Nothing happens without a cache, or when the cache has them;
/// a failure is left to the host, which compiles in memory.
pub async fn compile_ahead(
    program: &Path,
    container: &HostedContainer,
    runtime: &crate::RuntimeConfig,
) {
    // Looking is quick (the image's config, a stat, the cache's index):
    // done here, so that a warm cache costs no child.
    if serve::missing_programs(container, runtime).is_empty() {
        return;
    }
    let request = serve::CompileRequest {
        container: container.clone(),
        runtime: RuntimeSettings::new(runtime),
    };
    let Ok(input) = serde_json::to_vec(&request) else {
        return;
    };
    let program = program.to_owned();
    let (done, compiled) = oneshot::channel();
    // A thread of its own spawns it and waits for it: the child's
    // PR_SET_PDEATHSIG follows that thread.
    let spawned = std::thread::Builder::new()
        .name("wpod-compile".into())
        .spawn(move || {
            use std::io::Write;
            let mut command = std::process::Command::new(&program);
            command
                .arg(COMPILE_ARG)
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::null());
            // SAFETY: the closure runs in the forked child before exec and
            // makes one async-signal-safe system call (prctl).
            unsafe {
                std::os::unix::process::CommandExt::pre_exec(&mut command, die_with_parent);
            }
            let Ok(mut child) = command.spawn() else {
                let _ = done.send(());
                return;
            };
            if let Some(mut stdin) = child.stdin.take() {
                let _ = stdin.write_all(&input);
            }
            // It says `compiled` and closes its output once the first tier
            // is in the cache (it may go on with Cranelift's): that end of
            // file is what is waited for, not the word.
            if let Some(mut stdout) = child.stdout.take() {
                let _ = std::io::copy(&mut stdout, &mut std::io::sink());
            }
            let _ = done.send(());
            let _ = child.wait();
        });
    if spawned.is_ok() {
        let _ = compiled.await;
    }
}

/// Executes the helper with `socket` as its fd [`HOST_FD`], from a thread
/// that then waits for it (its `PR_SET_PDEATHSIG` follows that thread).
/// Returns its PID and a receiver told when it has been reaped.
fn spawn_helper(
    program: &Path,
    socket: OwnedFd,
) -> Result<(u32, oneshot::Receiver<()>), HostError> {
    let (spawned, spawn_result) = std::sync::mpsc::channel();
    let (ended, ended_receiver) = oneshot::channel();
    let owned_program = program.to_owned();
    let thread = std::thread::Builder::new()
        .name("wpod-pod-host".into())
        .spawn(move || {
            let mut command = std::process::Command::new(&owned_program);
            command
                .arg(HOST_ARG)
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null());
            let raw = socket.as_raw_fd();
            // SAFETY: the closure runs in the forked child before exec and
            // makes only async-signal-safe system calls (fcntl, dup2,
            // prctl) on numbers it was given.
            unsafe {
                std::os::unix::process::CommandExt::pre_exec(&mut command, move || {
                    place_socket_raw(raw)?;
                    die_with_parent()
                });
            }
            let child = command.spawn();
            drop(socket);
            match child {
                Ok(mut child) => {
                    let _ = spawned.send(Ok(child.id()));
                    let _ = child.wait();
                    let _ = ended.send(());
                }
                Err(error) => {
                    let _ = spawned.send(Err(error));
                }
            }
        });
    let spawn_error = |source| HostError::Spawn {
        program: program.to_owned(),
        source,
    };
    thread.map_err(spawn_error)?;
    match spawn_result.recv() {
        Ok(Ok(pid)) => Ok((pid, ended_receiver)),
        Ok(Err(error)) => Err(spawn_error(error)),
        Err(_) => Err(spawn_error(std::io::Error::other(
            "the spawning thread ended",
        ))),
    }
}

/// In the forked child: `fd` becomes [`HOST_FD`], inherited by the exec.
fn place_socket_raw(fd: i32) -> std::io::Result<()> {
    // SAFETY: fcntl and dup2 on plain numbers are async-signal-safe and
    // touch no memory; the child owns its copy of the descriptor table.
    let done = unsafe {
        if fd == HOST_FD {
            libc::fcntl(fd, libc::F_SETFD, 0)
        } else {
            libc::dup2(fd, HOST_FD)
        }
    };
    if done < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// In the forked child: `PR_SET_PDEATHSIG(SIGKILL)` (`sys`'s, a raw
/// system call that allocates nothing), as `pre_exec` wants it.
fn die_with_parent() -> std::io::Result<()> {
    sys::die_with_parent().map_err(|error| error.source)
}

/// Sends SIGKILL to `pid`.
fn kill(pid: u32) {
    crate::sandbox::sys::send_signal(pid, libc::SIGKILL);
}

/// Waits for the helper's `Walled` and PID 1's `Ready` (in either order:
/// they are two processes); returns the walled PID.
async fn wait_ready(channel: &Channel) -> Result<u32, HostError> {
    let (mut walled_pid, mut ready) = (None, false);
    loop {
        match channel.recv::<FromHost>().await {
            Ok(Some((FromHost::Walled { pid }, _))) => walled_pid = Some(pid),
            Ok(Some((FromHost::Ready, _))) => ready = true,
            Ok(Some((FromHost::Failed(report), _))) => return Err(HostError::Wall(report)),
            Ok(Some(_)) => {}
            Ok(None) => return Err(HostError::Gone),
            Err(error) => return Err(HostError::Channel(error)),
        }
        if let (Some(pid), true) = (walled_pid, ready) {
            return Ok(pid);
        }
    }
}

/// Reads what the host says until it ends: answers to their askers, events
/// to `events`, and [`HostEvent::Gone`] last.
async fn read_events(
    channel: Arc<Channel>,
    pending: Arc<Pending>,
    events: mpsc::UnboundedSender<HostEvent>,
) {
    loop {
        let message = match channel.recv::<FromHost>().await {
            Ok(Some((message, _))) => message,
            Ok(None) | Err(_) => break,
        };
        match message {
            FromHost::Started { id } => answer_start(&pending, &id, Ok(())),
            FromHost::NotStarted { id, report } => answer_start(&pending, &id, Err(report)),
            FromHost::Event(event) => {
                let _ = events.send(event);
            }
            FromHost::Usage { seq, containers } => {
                let asker = pending.usage.lock().expect("pending usage").remove(&seq);
                if let Some(asker) = asker {
                    let _ = asker.send(containers);
                }
            }
            FromHost::Walled { .. } | FromHost::Ready | FromHost::Failed(_) => {}
        }
    }
    // The askers still waiting learn that the host is gone.
    pending.starts.lock().expect("pending starts").clear();
    pending.usage.lock().expect("pending usage").clear();
    let _ = events.send(HostEvent::Gone);
}

fn answer_start(pending: &Pending, id: &str, answer: Result<(), ErrorReport>) {
    let asker = pending.starts.lock().expect("pending starts").remove(id);
    if let Some(asker) = asker {
        let _ = asker.send(answer);
    }
}
