//! The task service containerd calls (runtime v2, `containerd.task.v2.Task`
//! over ttrpc): one per shim process, holding every task of one pod sandbox.
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
use crate::process::{Action, Exit, Process, Status as ProcessStatus};
use crate::stdio::Stdio;
use async_trait::async_trait;
use containerd_shim::asynchronous::ExitSignal;
use containerd_shim::asynchronous::publisher::RemotePublisher;
use containerd_shim::protos::api::{
    ConnectRequest, ConnectResponse, CreateTaskRequest, CreateTaskResponse, DeleteRequest,
    DeleteResponse, Empty, ExecProcessRequest, KillRequest, PidsRequest, PidsResponse, ProcessInfo,
    ShutdownRequest, StartRequest, StartResponse, StateRequest, StateResponse, StatsRequest,
    StatsResponse, Status, WaitRequest, WaitResponse,
};
use containerd_shim::protos::events::task::{
    TaskCreate, TaskDelete, TaskExecAdded, TaskExecStarted, TaskExit, TaskIO, TaskStart,
};
use containerd_shim::protos::protobuf::well_known_types::timestamp::Timestamp;
use containerd_shim::protos::protobuf::{EnumOrUnknown, MessageDyn, MessageField};
use containerd_shim::protos::shim_async::Task;
use containerd_shim::protos::topics::{
    TASK_CREATE_EVENT_TOPIC, TASK_DELETE_EVENT_TOPIC, TASK_EXEC_ADDED_EVENT_TOPIC,
    TASK_EXEC_STARTED_EVENT_TOPIC, TASK_EXIT_EVENT_TOPIC, TASK_START_EVENT_TOPIC,
};
use containerd_shim::protos::ttrpc::{self, Code};
use containerd_shim::{Context, TtrpcContext, TtrpcResult};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use wpod::{ExecRequest, ImagePath, PodOptions, Runtime, RuntimeConfig};

struct TaskState {
    bundle: Bundle,
    rootfs_mounted: bool,
    /// The container (or the sandbox).
    init: Process,
    /// The wpod pod's `exec` and usage, while it runs.
    execer: Mutex<Option<wpod::Execer>>,
    /// The task's `exec` processes, by exec id.
    execs: Mutex<HashMap<String, Arc<ExecProcess>>>,
}

/// A program run in a container by `exec`.
struct ExecProcess {
    /// The program and its arguments.
    args: Vec<String>,
    process: Process,
}

impl TaskState {
    /// The task's init process (`exec_id` empty) or one of its execs.
    fn process(&self, id: &str, exec_id: &str) -> TtrpcResult<Arc<ExecProcess>> {
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
    exit: Arc<ExitSignal>,
    /// Made with the first container (sandboxes need no engine).
    runtime: Mutex<Option<Runtime>>,
    tasks: Mutex<HashMap<String, Arc<TaskState>>>,
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

    fn task(&self, id: &str) -> TtrpcResult<Arc<TaskState>> {
        self.tasks
            .lock()
            .expect("tasks lock")
            .get(id)
            .cloned()
            .ok_or_else(|| error(Code::NOT_FOUND, format!("task `{id}` not found")))
    }

    /// Calls `with` on the task's init process (`exec_id` empty) or exec.
    fn with_process<T>(
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

    async fn publish(&self, topic: &str, event: Box<dyn MessageDyn>) {
        if let Err(e) = self
            .publisher
            .publish(Context::default(), topic, &self.namespace, event)
            .await
        {
            log::warn!("cannot publish {topic}: {e}");
        }
    }

    async fn create_task(&self, req: &CreateTaskRequest) -> Result<Arc<TaskState>, ServiceError> {
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
    async fn start_task(self: &Arc<Self>, id: &str, task: &Arc<TaskState>) -> TtrpcResult<()> {
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
    fn start_exec(
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
    async fn ended(&self, id: &str, exec_id: &str, process: &Process, code: i32) {
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

/// The shim's service, as containerd-shim's server wants it.
#[derive(Clone, Debug)]
pub struct TaskService(pub Arc<Service>);

#[async_trait]
impl Task for TaskService {
    async fn create(
        &self,
        _ctx: &TtrpcContext,
        req: CreateTaskRequest,
    ) -> TtrpcResult<CreateTaskResponse> {
        let service = &self.0;
        if service
            .tasks
            .lock()
            .expect("tasks lock")
            .contains_key(&req.id)
        {
            return Err(error(
                Code::ALREADY_EXISTS,
                format!("task `{}` already exists", req.id),
            ));
        }
        if req.terminal {
            return Err(no_terminal(&req.id));
        }
        let task = service
            .create_task(&req)
            .await
            .map_err(|e| error(Code::INVALID_ARGUMENT, e.to_string()))?;
        service
            .tasks
            .lock()
            .expect("tasks lock")
            .insert(req.id.clone(), task);
        let pid = std::process::id();
        service
            .publish(
                TASK_CREATE_EVENT_TOPIC,
                Box::new(TaskCreate {
                    container_id: req.id.clone(),
                    bundle: req.bundle.clone(),
                    rootfs: req.rootfs.clone(),
                    io: MessageField::some(TaskIO {
                        stdin: req.stdin.clone(),
                        stdout: req.stdout.clone(),
                        stderr: req.stderr.clone(),
                        terminal: req.terminal,
                        ..Default::default()
                    }),
                    checkpoint: req.checkpoint.clone(),
                    pid,
                    ..Default::default()
                }),
            )
            .await;
        Ok(CreateTaskResponse {
            pid,
            ..Default::default()
        })
    }

    async fn start(&self, _ctx: &TtrpcContext, req: StartRequest) -> TtrpcResult<StartResponse> {
        let service = &self.0;
        let task = service.task(&req.id)?;
        let pid = std::process::id();
        if req.exec_id.is_empty() {
            if !task.init.is_created() {
                return Err(already_started(&req.id));
            }
            if let Err(e) = service.start_task(&req.id, &task).await {
                // Whatever kept it from starting, it is stopped now (as a
                // runc container whose start failed), so that it can be
                // deleted.
                service.ended(&req.id, "", &task.init, 128).await;
                return Err(e);
            }
            service
                .publish(
                    TASK_START_EVENT_TOPIC,
                    Box::new(TaskStart {
                        container_id: req.id.clone(),
                        pid,
                        ..Default::default()
                    }),
                )
                .await;
            task.init.start_published();
        } else {
            let exec = task.process(&req.id, &req.exec_id)?;
            if !exec.process.is_created() {
                return Err(already_started(&req.exec_id));
            }
            if let Err(e) = service.start_exec(&req.id, &req.exec_id, &task, &exec) {
                service
                    .ended(&req.id, &req.exec_id, &exec.process, 128)
                    .await;
                return Err(e);
            }
            service
                .publish(
                    TASK_EXEC_STARTED_EVENT_TOPIC,
                    Box::new(TaskExecStarted {
                        container_id: req.id.clone(),
                        exec_id: req.exec_id.clone(),
                        pid,
                        ..Default::default()
                    }),
                )
                .await;
            exec.process.start_published();
        }
        Ok(StartResponse {
            pid,
            ..Default::default()
        })
    }

    async fn state(&self, _ctx: &TtrpcContext, req: StateRequest) -> TtrpcResult<StateResponse> {
        self.0.with_process(&req.id, &req.exec_id, |task, process| {
            let (status, exit) = match process.status() {
                ProcessStatus::Created => (Status::CREATED, None),
                ProcessStatus::Running => (Status::RUNNING, None),
                ProcessStatus::Stopped(exit) => (Status::STOPPED, Some(exit)),
            };
            StateResponse {
                id: req.id.clone(),
                exec_id: req.exec_id.clone(),
                bundle: task.bundle.path.display().to_string(),
                pid: std::process::id(),
                status: EnumOrUnknown::new(status),
                stdin: process.io.0.clone(),
                stdout: process.io.1.clone(),
                stderr: process.io.2.clone(),
                exit_status: exit.as_ref().map_or(0, |e| e.code),
                exited_at: exit.map(|e| e.at).into(),
                ..Default::default()
            }
        })
    }

    async fn kill(&self, _ctx: &TtrpcContext, req: KillRequest) -> TtrpcResult<Empty> {
        let service = &self.0;
        let never_started = service.with_process(&req.id, &req.exec_id, |_, process| {
            process.signal(req.signal)
        })?;
        if never_started {
            // A process killed before it started never runs.
            let task = service.task(&req.id)?;
            let code = 128 + req.signal as i32;
            if req.exec_id.is_empty() {
                service.ended(&req.id, "", &task.init, code).await;
            } else {
                let exec = task.process(&req.id, &req.exec_id)?;
                service
                    .ended(&req.id, &req.exec_id, &exec.process, code)
                    .await;
            }
        }
        Ok(Empty::new())
    }

    async fn exec(&self, _ctx: &TtrpcContext, req: ExecProcessRequest) -> TtrpcResult<Empty> {
        let service = &self.0;
        let task = service.task(&req.id)?;
        if req.terminal {
            return Err(no_terminal(&req.id));
        }
        if !req.stdin.is_empty() {
            log::debug!("exec {} in {}: stdin is not read", req.exec_id, req.id);
        }
        // The process is the OCI spec's `process`, as JSON.
        let args = req
            .spec
            .as_ref()
            .and_then(|spec| serde_json::from_slice::<serde_json::Value>(&spec.value).ok())
            .and_then(|process| {
                serde_json::from_value::<Vec<String>>(process.get("args")?.clone()).ok()
            })
            .filter(|args| !args.is_empty())
            .ok_or_else(|| {
                error(
                    Code::INVALID_ARGUMENT,
                    format!(
                        "exec {} in {}: the process has no args",
                        req.exec_id, req.id
                    ),
                )
            })?;
        {
            let mut execs = task.execs.lock().expect("execs lock");
            if execs.contains_key(&req.exec_id) {
                return Err(error(
                    Code::ALREADY_EXISTS,
                    format!("task `{}` has a process `{}` already", req.id, req.exec_id),
                ));
            }
            let process = Process::new(&req.stdin, &req.stdout, &req.stderr);
            execs.insert(req.exec_id.clone(), Arc::new(ExecProcess { args, process }));
        }
        service
            .publish(
                TASK_EXEC_ADDED_EVENT_TOPIC,
                Box::new(TaskExecAdded {
                    container_id: req.id.clone(),
                    exec_id: req.exec_id.clone(),
                    ..Default::default()
                }),
            )
            .await;
        Ok(Empty::new())
    }

    async fn wait(&self, _ctx: &TtrpcContext, req: WaitRequest) -> TtrpcResult<WaitResponse> {
        let task = self.0.task(&req.id)?;
        let exit = if req.exec_id.is_empty() {
            task.init.wait().await
        } else {
            task.process(&req.id, &req.exec_id)?.process.wait().await
        };
        Ok(WaitResponse {
            exit_status: exit.code,
            exited_at: MessageField::some(exit.at),
            ..Default::default()
        })
    }

    async fn delete(&self, _ctx: &TtrpcContext, req: DeleteRequest) -> TtrpcResult<DeleteResponse> {
        let service = &self.0;
        let task = service.task(&req.id)?;
        let exit = service.with_process(&req.id, &req.exec_id, |_, process| {
            match process.status() {
                ProcessStatus::Running => Err(error(
                    Code::FAILED_PRECONDITION,
                    format!(
                        "process `{}` of task `{}` is running; kill it first",
                        req.exec_id, req.id
                    ),
                )),
                ProcessStatus::Created => Ok(Exit {
                    code: 0,
                    at: Timestamp::now(),
                }),
                ProcessStatus::Stopped(exit) => Ok(exit),
            }
        })??;
        let pid = std::process::id();
        if !req.exec_id.is_empty() {
            task.execs.lock().expect("execs lock").remove(&req.exec_id);
            return Ok(DeleteResponse {
                pid,
                exit_status: exit.code,
                exited_at: MessageField::some(exit.at),
                ..Default::default()
            });
        }
        service.tasks.lock().expect("tasks lock").remove(&req.id);
        if task.rootfs_mounted {
            unmount(&task.bundle.path.join("rootfs"));
        }
        service
            .publish(
                TASK_DELETE_EVENT_TOPIC,
                Box::new(TaskDelete {
                    container_id: req.id.clone(),
                    id: req.id.clone(),
                    pid,
                    exit_status: exit.code,
                    exited_at: MessageField::some(exit.at.clone()),
                    ..Default::default()
                }),
            )
            .await;
        Ok(DeleteResponse {
            pid,
            exit_status: exit.code,
            exited_at: MessageField::some(exit.at),
            ..Default::default()
        })
    }

    async fn pids(&self, _ctx: &TtrpcContext, req: PidsRequest) -> TtrpcResult<PidsResponse> {
        self.0.task(&req.id)?;
        Ok(PidsResponse {
            processes: vec![ProcessInfo {
                pid: std::process::id(),
                ..Default::default()
            }],
            ..Default::default()
        })
    }

    async fn stats(&self, _ctx: &TtrpcContext, req: StatsRequest) -> TtrpcResult<StatsResponse> {
        use containerd_shim::protos::cgroups::metrics::{
            CPUStat, CPUUsage, MemoryEntry, MemoryStat, Metrics,
        };
        let task = self.0.task(&req.id)?;
        let usage = task
            .execer
            .lock()
            .expect("execer lock")
            .as_ref()
            .map(|execer| execer.usage())
            .unwrap_or_default();
        let memory: u64 = usage.iter().map(|u| u.memory_bytes).sum();
        let cpu: u128 = usage.iter().map(|u| u.cpu_time.as_nanos()).sum();
        let limit = usage.iter().filter_map(|u| u.memory_limit).sum::<u64>();
        // cgroup v1's shape, which containerd's CRI plugin reads: the Wasm
        // memory the container holds and the CPU time spent in it.
        let metrics = Metrics {
            memory: MessageField::some(MemoryStat {
                usage: MessageField::some(MemoryEntry {
                    usage: memory,
                    limit,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            cpu: MessageField::some(CPUStat {
                usage: MessageField::some(CPUUsage {
                    total: u64::try_from(cpu).unwrap_or(u64::MAX),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let stats = containerd_shim::util::convert_to_any(Box::new(metrics))
            .map_err(|e| error(Code::INTERNAL, e.to_string()))?;
        Ok(StatsResponse {
            stats: MessageField::some(stats),
            ..Default::default()
        })
    }

    async fn connect(
        &self,
        _ctx: &TtrpcContext,
        req: ConnectRequest,
    ) -> TtrpcResult<ConnectResponse> {
        self.0.task(&req.id)?;
        Ok(ConnectResponse {
            shim_pid: std::process::id(),
            task_pid: std::process::id(),
            ..Default::default()
        })
    }

    async fn shutdown(&self, _ctx: &TtrpcContext, req: ShutdownRequest) -> TtrpcResult<Empty> {
        // containerd asks after each task's delete; the shim holds the
        // whole pod, so it goes only with its last task.
        if req.now || self.0.tasks.lock().expect("tasks lock").is_empty() {
            self.0.exit.signal();
        }
        Ok(Empty::new())
    }
}

fn no_terminal(id: &str) -> ttrpc::Error {
    error(
        Code::INVALID_ARGUMENT,
        format!("task `{id}`: wpod containers have no terminal (drop `-t`/`tty: true`)"),
    )
}

fn already_started(id: &str) -> ttrpc::Error {
    error(
        Code::FAILED_PRECONDITION,
        format!("process `{id}` was already started"),
    )
}

fn error(code: Code, message: String) -> ttrpc::Error {
    ttrpc::Error::RpcStatus(ttrpc::get_status(code, message))
}

/// Unmounts a container's root filesystem; a failure is logged (containerd
/// unmounts the bundle's rootfs again when it removes the bundle).
fn unmount(rootfs: &std::path::Path) {
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
