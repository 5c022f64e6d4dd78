//! The shim's state and work: one [`Service`] per shim process, holding
//! every task of one pod sandbox (the calls containerd makes are in
//! [`crate::task`]).
//!
//! Each container is a one-container wpod pod on the shim's [`wpod::Runtime`]
//! (one engine, one compile cache for the whole pod sandbox); the sandbox
//! task runs nothing and only lives until it is killed. Every task reports
//! the shim's own PID: there is no process per container to point at.
//!
//! `exec` runs a program from the container's image in the running
//! container, as `wpod exec` does (wpod's `Execer`): `kubectl exec` without a
//! terminal, exec probes and hooks.
//!
//! Events go to containerd as the runc shim sends them: `/tasks/create`,
//! `/tasks/start`, `/tasks/exec-added`, `/tasks/exec-started`, `/tasks/exit`,
//! `/tasks/delete`.

use crate::bundle::{Bundle, BundleError, ContainerTask, TaskKind};
use crate::process::{Action, Process};
use crate::stdio::Stdio;
use containerd_shim::asynchronous::ExitSignal;
use containerd_shim::asynchronous::publisher::RemotePublisher;
use containerd_shim::protos::api::CreateTaskRequest;
use containerd_shim::protos::events::task::TaskExit;
use containerd_shim::protos::protobuf::{MessageDyn, MessageField};
use containerd_shim::protos::topics::TASK_EXIT_EVENT_TOPIC;
use containerd_shim::protos::ttrpc::{self, Code};
use containerd_shim::{Context, TtrpcResult};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use wpod::{ExecRequest, ImagePath, PodOptions, Runtime, RuntimeConfig};

pub(crate) struct TaskState {
    pub(crate) bundle: Bundle,
    pub(crate) rootfs_mounted: bool,
    /// The container (or the sandbox).
    pub(crate) init: Process,
    /// The wpod pod's `exec` and usage, while it runs.
    pub(crate) execer: Mutex<Option<wpod::Execer>>,
    /// The task's `exec` processes, by exec id.
    pub(crate) execs: Mutex<HashMap<String, Arc<ExecProcess>>>,
}

/// A program run in a container by `exec`.
pub(crate) struct ExecProcess {
    /// The program and its arguments.
    pub(crate) args: Vec<String>,
    pub(crate) process: Process,
}

impl TaskState {
    /// One of the task's execs.
    pub(crate) fn process(&self, id: &str, exec_id: &str) -> TtrpcResult<Arc<ExecProcess>> {
        self.execs
            .lock()
            .expect("execs lock")
            .get(exec_id)
            .cloned()
            .ok_or_else(|| {
                error(
                    Code::NOT_FOUND,
                    format!("task `{id}` has no process `{exec_id}`"),
                )
            })
    }
}

/// The task service of one shim process.
pub struct Service {
    namespace: String,
    publisher: RemotePublisher,
    pub(crate) exit: Arc<ExitSignal>,
    /// Made with the first container (sandboxes need no engine).
    runtime: Mutex<Option<Runtime>>,
    pub(crate) tasks: Mutex<HashMap<String, Arc<TaskState>>>,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

/// What the shim can fail at (a guest failing is an exit status).
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Bundle(#[from] BundleError),
    #[error("{bundle}: cannot mount the container's root filesystem: {message}")]
    Mount { bundle: PathBuf, message: String },
    #[error("{path}: cannot write the container's image config: {source}")]
    ImageConfig {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Stdio(#[from] crate::stdio::StdioError),
    #[error("container `{id}`: {source}")]
    Wpod {
        id: String,
        #[source]
        source: wpod::Error,
    },
    #[error("wasmtime cannot be set up: {0}")]
    Engine(wpod::Error),
}

impl Service {
    /// A service publishing to `publisher`; `exit` is signalled when the
    /// last task is gone and containerd asks the shim to shut down.
    pub fn new(namespace: &str, publisher: RemotePublisher, exit: Arc<ExitSignal>) -> Service {
        Service {
            namespace: namespace.to_owned(),
            publisher,
            exit,
            runtime: Mutex::new(None),
            tasks: Mutex::new(HashMap::new()),
        }
    }

    /// The shim's wpod runtime (one engine and compile cache for the pod),
    /// made on first use.
    fn runtime(&self) -> Result<Runtime, ServiceError> {
        let mut runtime = self.runtime.lock().expect("runtime lock");
        if let Some(runtime) = &*runtime {
            return Ok(runtime.clone());
        }
        let mut config = RuntimeConfig::from_env();
        if config.cache_dir.is_none() {
            // containerd's shims run with containerd's environment, often
            // without HOME: compiled programs are then kept where root's
            // caches go.
            config.cache_dir = Some(PathBuf::from("/var/cache/wpod"));
        }
        let made = Runtime::new(config).map_err(ServiceError::Engine)?;
        *runtime = Some(made.clone());
        Ok(made)
    }

    pub(crate) fn task(&self, id: &str) -> TtrpcResult<Arc<TaskState>> {
        self.tasks
            .lock()
            .expect("tasks lock")
            .get(id)
            .cloned()
            .ok_or_else(|| error(Code::NOT_FOUND, format!("task `{id}` not found")))
    }

    /// Calls `with` on the task's init process (`exec_id` empty) or exec.
    pub(crate) fn with_process<T>(
        &self,
        id: &str,
        exec_id: &str,
        with: impl FnOnce(&TaskState, &Process) -> T,
    ) -> TtrpcResult<T> {
        let task = self.task(id)?;
        if exec_id.is_empty() {
            return Ok(with(&task, &task.init));
        }
        let exec = task.process(id, exec_id)?;
        Ok(with(&task, &exec.process))
    }

    pub(crate) async fn publish(&self, topic: &str, event: Box<dyn MessageDyn>) {
        if let Err(e) = self
            .publisher
            .publish(Context::default(), topic, &self.namespace, event)
            .await
        {
            log::warn!("cannot publish {topic}: {e}");
        }
    }

    pub(crate) async fn create_task(
        &self,
        req: &CreateTaskRequest,
    ) -> Result<Arc<TaskState>, ServiceError> {
        let path = PathBuf::from(&req.bundle);
        let rootfs = path.join("rootfs");
        // containerd hands the snapshot's mounts to the shim, which mounts
        // them at `rootfs/` (as the runc shim does); the sandbox needs none.
        let mut rootfs_mounted = false;
        if !crate::bundle::peek_is_sandbox(&path) {
            for mount in &req.rootfs {
                containerd_shim::mount::mount_rootfs(
                    Some(mount.type_.as_str()).filter(|t| !t.is_empty()),
                    Some(mount.source.as_str()),
                    &mount.options,
                    &rootfs,
                )
                .map_err(|e| ServiceError::Mount {
                    bundle: path.clone(),
                    message: e.to_string(),
                })?;
                rootfs_mounted = true;
            }
        }
        let bundle = match Bundle::read(&path, &req.id) {
            Ok(bundle) => bundle,
            Err(e) => {
                if rootfs_mounted {
                    unmount(&rootfs);
                }
                return Err(e.into());
            }
        };
        if let TaskKind::Container(container) = &bundle.kind {
            let image_json = path.join("image.json");
            std::fs::write(&image_json, container.image_json.to_string()).map_err(|source| {
                ServiceError::ImageConfig {
                    path: image_json,
                    source,
                }
            })?;
            for skipped in &container.skipped_mounts {
                log::info!("container {}: mount {skipped}", req.id);
            }
        }
        Ok(Arc::new(TaskState {
            bundle,
            rootfs_mounted,
            init: Process::new(&req.stdin, &req.stdout, &req.stderr),
            execer: Mutex::new(None),
            execs: Mutex::new(HashMap::new()),
        }))
    }

    /// Starts a created task; its end is published from a task of its own.
    pub(crate) async fn start_task(
        self: &Arc<Self>,
        id: &str,
        task: &Arc<TaskState>,
    ) -> TtrpcResult<()> {
        let (stop, terminate): (Action, Action) = match &task.bundle.kind {
            // The sandbox ends when it is killed: SIGKILL as a killed
            // process (137), anything else as pause does (0).
            TaskKind::Sandbox => (self.end_action(id, task, 137), self.end_action(id, task, 0)),
            TaskKind::Container(container) => self.start_container(id, task, container).await?,
        };
        task.init.running(stop, terminate);
        Ok(())
    }

    /// Starts a container's wpod pod, and a task that reports its end.
    async fn start_container(
        self: &Arc<Self>,
        id: &str,
        task: &Arc<TaskState>,
        container: &ContainerTask,
    ) -> TtrpcResult<(Action, Action)> {
        let (stdin, stdout, stderr) = &task.init.io;
        if !stdin.is_empty() {
            log::debug!(
                "container {id}: stdin is not read (wpod gives containers an empty stdin here)"
            );
        }
        let stdio = Stdio::open(stdout, stderr)
            .map_err(|e| error(Code::INVALID_ARGUMENT, e.to_string()))?;
        let (root, _) = crate::bundle::image_reference(&task.bundle.path).ok_or_else(|| {
            error(
                Code::INVALID_ARGUMENT,
                BundleError::Layout {
                    bundle: task.bundle.path.clone(),
                }
                .to_string(),
            )
        })?;
        let state_dir = task.bundle.path.join("wpod");
        create_private_dir(&state_dir)
            .map_err(|e| error(Code::INTERNAL, format!("{}: {e}", state_dir.display())))?;
        let options = PodOptions {
            image_path: ImagePath { roots: vec![root] },
            log_sink: Arc::new(stdio.sink()),
            state_dir,
            ..PodOptions::default()
        };
        let runtime = self
            .runtime()
            .map_err(|e| error(Code::INTERNAL, e.to_string()))?;
        let handle = match runtime.start(container.pod.clone(), options).await {
            Ok(handle) => handle,
            Err(source) => {
                // The container never ran: it ends as `wpod run` would
                // (127 for a program not found, 126 for one that cannot
                // run), so that containerd can delete it.
                let code = i32::from(source.fault().exit_code());
                self.ended(id, "", &task.init, code).await;
                let id = id.to_owned();
                return Err(error(
                    Code::FAILED_PRECONDITION,
                    ServiceError::Wpod { id, source }.to_string(),
                ));
            }
        };
        *task.execer.lock().expect("execer lock") = Some(handle.execer());
        let stop = handle.stopper();
        let terminate = handle.terminator();
        let (service, task, id) = (self.clone(), task.clone(), id.to_owned());
        tokio::spawn(async move {
            let status = handle.wait().await;
            stdio.close().await;
            let code = status
                .container_statuses
                .first()
                .and_then(|c| c.terminated())
                .map_or(128, |t| t.exit_code);
            if let Some(message) = status.message.as_deref() {
                log::info!("container {id}: {message}");
            }
            task.execer.lock().expect("execer lock").take();
            task.init.after_start_published().await;
            service.ended(&id, "", &task.init, code).await;
        });
        Ok((Box::new(stop), Box::new(terminate)))
    }

    /// Starts an exec: the program runs in the container through wpod's
    /// `Execer`; a program that cannot run ends it as `wpod exec` ends
    /// (126, 127), with the reason on its stderr.
    pub(crate) fn start_exec(
        self: &Arc<Self>,
        id: &str,
        exec_id: &str,
        task: &TaskState,
        exec: &Arc<ExecProcess>,
    ) -> TtrpcResult<()> {
        let execer = task
            .execer
            .lock()
            .expect("execer lock")
            .clone()
            .ok_or_else(|| {
                error(
                    Code::FAILED_PRECONDITION,
                    format!("task `{id}` is not running: nothing to exec in"),
                )
            })?;
        let (_, stdout, stderr) = &exec.process.io;
        let stdio = Stdio::open(stdout, stderr)
            .map_err(|e| error(Code::INVALID_ARGUMENT, e.to_string()))?;
        let output = Arc::new(stdio.sink());
        let request = ExecRequest {
            container: None,
            command: exec.args.clone(),
        };
        let run = tokio::spawn({
            let output = output.clone();
            async move { execer.exec(request, output).await }
        });
        // Wasm has no signals: a kill of the exec drops its run, which
        // stops the guest.
        let abort = run.abort_handle();
        let abort_again = run.abort_handle();
        exec.process.running(
            Box::new(move || abort.abort()),
            Box::new(move || abort_again.abort()),
        );
        let (service, exec, id, exec_id) = (
            self.clone(),
            exec.clone(),
            id.to_owned(),
            exec_id.to_owned(),
        );
        tokio::spawn(async move {
            let code = match run.await {
                Ok(Ok(outcome)) => outcome.exit_code,
                Ok(Err(e)) => {
                    output.write_bytes(wpod::Stream::Stderr, format!("{e}\n").into_bytes());
                    i32::from(e.fault().exit_code())
                }
                Err(_) => 137,
            };
            stdio.close().await;
            exec.process.after_start_published().await;
            service.ended(&id, &exec_id, &exec.process, code).await;
        });
        Ok(())
    }

    /// An action that ends the sandbox with `code`.
    fn end_action(self: &Arc<Self>, id: &str, task: &Arc<TaskState>, code: i32) -> Action {
        let (service, task, id) = (self.clone(), task.clone(), id.to_owned());
        Box::new(move || {
            let (service, task, id) = (service.clone(), task.clone(), id.clone());
            tokio::spawn(async move { service.ended(&id, "", &task.init, code).await });
        })
    }

    /// Records a process's end and tells containerd (once).
    pub(crate) async fn ended(&self, id: &str, exec_id: &str, process: &Process, code: i32) {
        let Some(exit) = process.end(code) else {
            return;
        };
        self.publish(
            TASK_EXIT_EVENT_TOPIC,
            Box::new(TaskExit {
                container_id: id.to_owned(),
                id: if exec_id.is_empty() { id } else { exec_id }.to_owned(),
                pid: std::process::id(),
                exit_status: exit.code,
                exited_at: MessageField::some(exit.at),
                ..Default::default()
            }),
        )
        .await;
    }
}

pub(crate) fn error(code: Code, message: String) -> ttrpc::Error {
    ttrpc::Error::RpcStatus(ttrpc::get_status(code, message))
}

/// Unmounts a container's root filesystem; a failure is logged (containerd
/// unmounts the bundle's rootfs again when it removes the bundle).
pub(crate) fn unmount(rootfs: &std::path::Path) {
    if let Err(e) = rustix::mount::unmount(rootfs, rustix::mount::UnmountFlags::DETACH) {
        log::warn!("cannot unmount {}: {e}", rootfs.display());
    }
}

/// The pod's private folder in the bundle (wpod checks that it is the
/// caller's own and not a symlink).
fn create_private_dir(path: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    match std::fs::DirBuilder::new().mode(0o700).create(path) {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        other => other,
    }
}
