//! The pod host's own processes: the helper the caller executes (it puts up
//! the wall, as pod-init does for `wpod run`), PID 1 behind the wall (it
//! serves the caller's requests), and the compiler child.
//!
//! The order, and why (`inside.rs` gives the reasons of the shared steps):
//! 1. The helper is a fresh exec (one thread, as `unshare(CLONE_NEWUSER)`
//!    requires): it keeps only stdio and its socket (fd 3), reads its
//!    [`Setup`], checks that its parent (the caller's thread that waits for
//!    it, which set `PR_SET_PDEATHSIG` before the exec) is alive, and joins
//!    the pod's cgroup, if there is one.
//! 2. `unshare` user, mount, PID, UTS, IPC and cgroup namespaces, not the
//!    network one: the pod's network is the caller's (the CRI's network
//!    namespace, which the shim joined, or the node's); the caller's ids
//!    mapped to root inside.
//! 3. `fork`: the child is PID 1 of the new PID namespace. The helper drops
//!    its copy of the socket (PID 1's end is then the only one: the caller
//!    reads the end of file when PID 1 is gone), locks itself down
//!    (no_new_privs, no capabilities, the seccomp filter) and waits for
//!    PID 1; PID 1's `pivot_root` moves the helper's root too (they share
//!    the mount namespace).
//! 4. PID 1 puts up the wall (`inside::build_wall`) with its mounts made
//!    slaves of the host's rather than private, so that what the caller
//!    mounts later in its shared pod folder (a container's root filesystem,
//!    its volumes) appears inside at the same path; then tokio and wasmtime
//!    start, and each request is served until the caller closes its end.

use super::output::Output;
use super::wire::{self, Channel, FromHost, Outputs, Setup, ToHost};
use super::{COMPILE_ARG, HOST_ARG, HOST_FD, HostEvent, HostedContainer};
use crate::pod::{ExecRequest, Execer, PodOptions, Runtime};
use crate::sandbox::sys;
use crate::sandbox::{ErrorReport, inside};
use rustix::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::sync::{Arc, Mutex};

/// The helpers' entry point: what the caller's binary calls first in
/// `main`, before anything else runs. Returns when the process is not one
/// of wpod's helpers (its first argument is neither).
pub fn main_if_helper() {
    let Some(first) = std::env::args_os().nth(1) else {
        return;
    };
    if first == HOST_ARG {
        host_main()
    } else if first == COMPILE_ARG {
        compile_main()
    }
}

/// Step 1 to 3 of the module docs, then PID 1. Never returns.
fn host_main() -> ! {
    // SAFETY: fcntl(F_GETFD) on a number only reads its flags; it fails
    // (EBADF) when nothing is open there: a helper run by hand.
    if unsafe { libc::fcntl(HOST_FD, libc::F_GETFD) } < 0 {
        sys::exit_now(2);
    }
    // SAFETY: HOST_FD is open (checked above): the caller placed its socket
    // there before it executed this process, and nothing else of this
    // fresh process owns that number.
    let socket = unsafe { OwnedFd::from_raw_fd(HOST_FD) };
    // SAFETY: a freshly executed process at the top of `main`: no thread
    // was started and no descriptor is owned but `socket`, which is kept.
    if unsafe { sys::close_inherited_fds(&[socket.as_fd()]) }.is_err() {
        sys::exit_now(1);
    }
    let fail = |socket: BorrowedFd<'_>, error: &dyn std::error::Error| -> ! {
        let report = ErrorReport::new(error, crate::Fault::Host);
        let _ = wire::send(socket, &FromHost::Failed(report), &[]);
        sys::exit_now(1)
    };
    let setup = match wire::recv::<ToHost>(socket.as_fd()) {
        Ok(Some((ToHost::Setup(setup), _))) => *setup,
        _ => sys::exit_now(1),
    };
    if sys::parent_pid() != setup.caller {
        // The caller died before PR_SET_PDEATHSIG took effect.
        sys::exit_now(1);
    }
    sys::set_process_name("wpod pod-init");
    for dir in &setup.cgroups {
        // As pod-init moves itself (`PodCgroup::enter`): one thread writing
        // `0` to v1's `tasks` skips the kernel's global migration lock;
        // v2 has `cgroup.procs` only.
        let tasks = dir.join("tasks");
        let file = if tasks.exists() {
            tasks
        } else {
            dir.join("cgroup.procs")
        };
        if let Err(error) = std::fs::write(&file, "0") {
            let error = std::io::Error::other(format!(
                "moving the pod process into its cgroup: {}: {error}",
                file.display()
            ));
            fail(socket.as_fd(), &error);
        }
    }
    let (outer_uid, outer_gid) = sys::outer_ids();
    if let Err(error) = sys::enter_namespaces(sys::namespace_flags(false))
        .and_then(|()| sys::write_id_maps(outer_uid, outer_gid))
    {
        fail(socket.as_fd(), &error);
    }
    let (lifeline_read, lifeline_write) = match sys::lifeline() {
        Ok(pipe) => pipe,
        Err(error) => fail(socket.as_fd(), &error),
    };
    // SAFETY: this process has one thread (a fresh exec that started none).
    match unsafe { sys::fork() } {
        Err(error) => fail(socket.as_fd(), &error),
        Ok(sys::Forked::Parent(pid)) => {
            drop(lifeline_read);
            let walled = FromHost::Walled {
                pid: pid.as_raw_nonzero().get() as u32,
            };
            let _ = wire::send(socket.as_fd(), &walled, &[]);
            drop(socket);
            // Nothing but waiting is left to do here: locked down as PID 1
            // is. A failure leaves the helper as it is, outside nothing new.
            let _ = sys::set_no_new_privs()
                .and_then(|()| sys::drop_capabilities())
                .map(|()| {
                    if let Ok(filters) = crate::sandbox::seccomp::filters() {
                        let _ = crate::sandbox::seccomp::install(&filters);
                    }
                });
            let code = sys::wait_for(pid).unwrap_or(1);
            drop(lifeline_write);
            sys::exit_now(code)
        }
        Ok(sys::Forked::Child) => {
            drop(lifeline_write);
            if sys::die_with_parent().is_err() || sys::hung_up(lifeline_read.as_fd()) {
                sys::exit_now(1);
            }
            drop(lifeline_read);
            sys::set_process_name(&format!("wpod pod {}", setup.name));
            if let Err(error) = inside::build_wall(&setup.plan) {
                fail(socket.as_fd(), &error);
            }
            walled_main(socket, setup)
        }
    }
}

/// PID 1 behind the wall: the runtime, and the caller's requests until it
/// closes its end.
fn walled_main(socket: OwnedFd, setup: Setup) -> ! {
    let tokio = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(tokio) => tokio,
        Err(error) => {
            let report = ErrorReport::new(&error, crate::Fault::Host);
            let _ = wire::send(socket.as_fd(), &FromHost::Failed(report), &[]);
            sys::exit_now(1)
        }
    };
    let code = tokio.block_on(async move {
        let channel = match Channel::new(socket) {
            Ok(channel) => Arc::new(channel),
            Err(_) => return 1,
        };
        let runtime = match Runtime::new(setup.runtime.config()) {
            Ok(runtime) => runtime,
            Err(error) => {
                let report = ErrorReport::new(&error, error.fault());
                let _ = channel.send(&FromHost::Failed(report), &[]).await;
                return 1;
            }
        };
        if channel.send(&FromHost::Ready, &[]).await.is_err() {
            return 1;
        }
        let host = Host {
            channel,
            runtime,
            containers: Mutex::new(HashMap::new()),
        };
        host.serve().await;
        0
    });
    // The caller is gone or done: the guests end with the process (PID 1:
    // the kernel ends every process of the namespace with it).
    sys::exit_now(code)
}

/// PID 1's state: the running containers.
struct Host {
    channel: Arc<Channel>,
    runtime: Runtime,
    containers: Mutex<HashMap<String, Running>>,
}

/// A running container: how to reach it.
struct Running {
    stop: Box<dyn Fn() + Send + Sync>,
    terminate: Box<dyn Fn() + Send + Sync>,
    execer: Execer,
    execs: HashMap<String, tokio::task::AbortHandle>,
}

impl Host {
    async fn serve(self) {
        let host = Arc::new(self);
        loop {
            let (message, files) = match host.channel.recv::<ToHost>().await {
                Ok(Some(received)) => received,
                // The caller closed its end (or died): the pod ends.
                Ok(None) | Err(_) => return,
            };
            match message {
                ToHost::Setup(_) => {}
                ToHost::Start {
                    id,
                    container,
                    outputs,
                } => {
                    let host = host.clone();
                    tokio::spawn(async move { host.start(id, *container, outputs, files).await });
                }
                ToHost::Stop { id, force } => {
                    if let Some(running) = host.containers.lock().expect("containers").get(&id) {
                        if force {
                            (running.stop)();
                        } else {
                            (running.terminate)();
                        }
                    }
                }
                ToHost::Exec {
                    id,
                    exec_id,
                    command,
                    outputs,
                } => host.exec(id, exec_id, command, outputs, files),
                ToHost::StopExec { id, exec_id } => {
                    let containers = host.containers.lock().expect("containers");
                    if let Some(run) = containers.get(&id).and_then(|c| c.execs.get(&exec_id)) {
                        run.abort();
                    }
                }
                ToHost::Usage { seq, id } => {
                    let containers = host
                        .containers
                        .lock()
                        .expect("containers")
                        .get(&id)
                        .map(|running| running.execer.usage())
                        .unwrap_or_default();
                    let channel = host.channel.clone();
                    tokio::spawn(async move {
                        let _ = channel
                            .send(&FromHost::Usage { seq, containers }, &[])
                            .await;
                    });
                }
            }
        }
    }

    /// Starts a container and reports its end.
    async fn start(
        self: Arc<Self>,
        id: String,
        container: HostedContainer,
        outputs: Outputs,
        files: Vec<OwnedFd>,
    ) {
        let not_started = |report: ErrorReport| FromHost::NotStarted {
            id: id.clone(),
            report,
        };
        let output = match split_outputs(outputs, files).and_then(|(o, e)| Output::new(o, e)) {
            Ok(output) => output,
            Err(error) => {
                let report = ErrorReport::new(&error, crate::Fault::Host);
                let _ = self.channel.send(&not_started(report), &[]).await;
                return;
            }
        };
        let pod = match container.pod() {
            Ok(pod) => pod,
            Err(error) => {
                let report = ErrorReport::new(&error, crate::Fault::Input);
                let _ = self.channel.send(&not_started(report), &[]).await;
                return;
            }
        };
        let options = PodOptions {
            image_path: crate::ImagePath {
                roots: vec![container.image_root.clone()],
            },
            log_sink: Arc::new(output.sink()),
            state_dir: container.state_dir.clone(),
            ..PodOptions::default()
        };
        let handle = match self.runtime.start(pod, options).await {
            Ok(handle) => handle,
            Err(error) => {
                let report = ErrorReport::new(&error, error.fault());
                let _ = self.channel.send(&not_started(report), &[]).await;
                output.close().await;
                return;
            }
        };
        let running = Running {
            stop: Box::new(handle.stopper()),
            terminate: Box::new(handle.terminator()),
            execer: handle.execer(),
            execs: HashMap::new(),
        };
        self.containers
            .lock()
            .expect("containers")
            .insert(id.clone(), running);
        let _ = self
            .channel
            .send(&FromHost::Started { id: id.clone() }, &[])
            .await;
        let status = handle.wait().await;
        output.close().await;
        let terminated = status
            .container_statuses
            .first()
            .and_then(|c| c.terminated());
        let ended = FromHost::Event(HostEvent::Exited {
            id: id.clone(),
            exit_code: terminated.map_or(128, |t| t.exit_code),
            message: status
                .message
                .clone()
                .or_else(|| terminated.and_then(|t| t.message.clone())),
        });
        if let Some(running) = self.containers.lock().expect("containers").remove(&id) {
            running.execs.values().for_each(|run| run.abort());
        }
        let _ = self.channel.send(&ended, &[]).await;
    }

    /// Runs a program in a running container, through wpod's `Execer`; a
    /// program that cannot run ends the exec as `wpod exec` ends (126,
    /// 127), with the reason on its stderr.
    fn exec(
        self: &Arc<Self>,
        id: String,
        exec_id: String,
        command: Vec<String>,
        outputs: Outputs,
        files: Vec<OwnedFd>,
    ) {
        let output = split_outputs(outputs, files).and_then(|(o, e)| Output::new(o, e));
        let mut containers = self.containers.lock().expect("containers");
        let (Ok(output), Some(running)) = (output, containers.get_mut(&id)) else {
            let channel = self.channel.clone();
            tokio::spawn(async move {
                let ended = FromHost::Event(HostEvent::ExecEnded {
                    id,
                    exec_id,
                    exit_code: 137,
                });
                let _ = channel.send(&ended, &[]).await;
            });
            return;
        };
        let execer = running.execer.clone();
        let sink = Arc::new(output.sink());
        let run = tokio::spawn({
            let sink = sink.clone();
            let request = ExecRequest {
                container: None,
                command,
            };
            async move { execer.exec(request, sink).await }
        });
        running.execs.insert(exec_id.clone(), run.abort_handle());
        let host = self.clone();
        tokio::spawn(async move {
            let exit_code = match run.await {
                Ok(Ok(outcome)) => outcome.exit_code,
                Ok(Err(error)) => {
                    let text = format!("{error}\n").into_bytes();
                    sink.write_bytes(crate::Stream::Stderr, text);
                    i32::from(error.fault().exit_code())
                }
                Err(_) => 137,
            };
            output.close().await;
            if let Some(running) = host.containers.lock().expect("containers").get_mut(&id) {
                running.execs.remove(&exec_id);
            }
            let ended = FromHost::Event(HostEvent::ExecEnded {
                id,
                exec_id,
                exit_code,
            });
            let _ = host.channel.send(&ended, &[]).await;
        });
    }
}

/// The attached files as stdout and stderr, as `outputs` says they come.
fn split_outputs(
    outputs: Outputs,
    files: Vec<OwnedFd>,
) -> std::io::Result<(Option<OwnedFd>, Option<OwnedFd>)> {
    let expected = usize::from(outputs.stdout) + usize::from(outputs.stderr);
    if files.len() != expected {
        return Err(std::io::Error::other(format!(
            "{} output files came, {expected} were announced",
            files.len()
        )));
    }
    let mut files = files.into_iter();
    let stdout = if outputs.stdout { files.next() } else { None };
    let stderr = if outputs.stderr { files.next() } else { None };
    Ok((stdout, stderr))
}

/// What the compiler child is asked: the container whose programs to
/// compile into the cache, outside the wall.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(super) struct CompileRequest {
    pub container: HostedContainer,
    pub runtime: wire::RuntimeSettings,
}

/// The compiler child (`COMPILE_ARG`): reads a [`CompileRequest`] on stdin,
/// compiles what the cache lacks with the first tier, says `compiled` on
/// stdout and closes it (the caller starts the container then), and, when
/// tiered, compiles the same programs with Cranelift for later starts.
/// Never returns.
fn compile_main() -> ! {
    let mut text = Vec::new();
    let request: Option<CompileRequest> = std::io::stdin()
        .read_to_end(&mut text)
        .ok()
        .and_then(|_| serde_json::from_slice(&text).ok());
    let Some(request) = request else {
        sys::exit_now(1)
    };
    sys::set_process_name("wpod compile");
    let config = request.runtime.config();
    let missing = missing_programs(&request.container, &config);
    let tiered = crate::image::tiered(config.compiler);
    let first_tier = if tiered {
        crate::CompilerChoice::Winch
    } else {
        config.compiler
    };
    if !missing.is_empty()
        && let Ok(runtime) = Runtime::new(crate::RuntimeConfig {
            compiler: first_tier,
            ..config.clone()
        })
    {
        runtime.fill_cache(&missing);
    }
    let mut stdout = std::io::stdout();
    let _ = stdout
        .write_all(b"compiled\n")
        .and_then(|()| stdout.flush());
    // The caller reads its end of file here, and starts the container.
    let _ = rustix::stdio::dup2_stdout(
        rustix::fs::open(
            "/dev/null",
            rustix::fs::OFlags::WRONLY | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .unwrap_or_else(|_| sys::exit_now(0)),
    );
    if tiered
        && !missing.is_empty()
        && let Ok(runtime) = Runtime::new(crate::RuntimeConfig {
            compiler: crate::CompilerChoice::Cranelift,
            ..config
        })
    {
        runtime.fill_cache(&missing);
    }
    sys::exit_now(0)
}

/// The container's programs that the cache lacks: (reference, path).
pub(super) fn missing_programs(
    container: &HostedContainer,
    config: &crate::RuntimeConfig,
) -> Vec<(String, std::path::PathBuf)> {
    let Some(cache_dir) = &config.cache_dir else {
        return Vec::new();
    };
    let Ok(pod) = container.pod() else {
        return Vec::new();
    };
    let image_path = crate::ImagePath {
        roots: vec![container.image_root.clone()],
    };
    let registries = crate::registry::Registries::default();
    let Ok(resolved) =
        crate::pod::resolve_containers(&pod, &container.base_dir, &image_path, &registries)
    else {
        return Vec::new();
    };
    resolved
        .into_iter()
        .map(|resolved| (resolved.spec.image.clone(), resolved.program))
        .filter(|(_, program)| !crate::image::looks_cached(cache_dir, program, config.compiler))
        .collect()
}
