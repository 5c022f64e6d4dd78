//! The task service containerd calls (runtime v2, `containerd.task.v2.Task`
//! over ttrpc): one per shim process, holding every task of one pod sandbox.
//!
//! Each container is a one-container wpod pod on the shim's [`wpod::Runtime`]
//! (one engine, one compile cache for the whole pod sandbox); the sandbox
//! task runs nothing and only lives until it is killed. Every task reports
//! the shim's own PID: there is no process per container to point at.
//!
//! Events go to containerd as the runc shim sends them: `/tasks/create`,
//! `/tasks/start`, `/tasks/exit`, `/tasks/delete`.

use crate::bundle::{Bundle, BundleError, ContainerTask, TaskKind};
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
use containerd_shim::protos::events::task::{TaskCreate, TaskDelete, TaskExit, TaskIO, TaskStart};
use containerd_shim::protos::protobuf::well_known_types::timestamp::Timestamp;
use containerd_shim::protos::protobuf::{EnumOrUnknown, MessageDyn, MessageField};
use containerd_shim::protos::shim_async::Task;
use containerd_shim::protos::topics::{
    TASK_CREATE_EVENT_TOPIC, TASK_DELETE_EVENT_TOPIC, TASK_EXIT_EVENT_TOPIC, TASK_START_EVENT_TOPIC,
};
use containerd_shim::protos::ttrpc::{self, Code};
use containerd_shim::{Context, TtrpcContext, TtrpcResult};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;
use wpod::{ImagePath, PodOptions, Runtime, RuntimeConfig};

/// How a task ended.
#[derive(Debug, Clone)]
struct Exit {
    code: u32,
    at: Timestamp,
}

/// Something done to a running task from where its pod's handle is not.
type Action = Box<dyn Fn() + Send + Sync>;

/// Where a task is in its life.
enum Phase {
    Created,
    /// Started; the actions stop it (at once, and gracefully).
    Running {
        stop: Action,
        terminate: Action,
    },
    Stopped(Exit),
}

struct TaskState {
    bundle: Bundle,
    /// containerd's `CreateTaskRequest`'s stdio paths, as given.
    io: (String, String, String),
    rootfs_mounted: bool,
    phase: Mutex<Phase>,
    /// `Some` once the task has ended.
    exited: watch::Sender<Option<Exit>>,
    /// The wpod pod's usage, while it runs.
    execer: Mutex<Option<wpod::Execer>>,
    /// Set once containerd was told of the start (`/tasks/start`).
    start_published: watch::Sender<bool>,
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

    fn task(&self, id: &str, exec_id: &str) -> TtrpcResult<Arc<TaskState>> {
        if !exec_id.is_empty() {
            return Err(error(
                Code::NOT_FOUND,
                format!(
                    "task `{id}` has no process `{exec_id}`: exec is not supported by wpod's shim yet"
                ),
            ));
        }
        self.tasks
            .lock()
            .expect("tasks lock")
            .get(id)
            .cloned()
            .ok_or_else(|| error(Code::NOT_FOUND, format!("task `{id}` not found")))
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
        let sandbox = crate::bundle::peek_is_sandbox(&path);
        if !sandbox {
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
        let (exited, _) = watch::channel(None);
        Ok(Arc::new(TaskState {
            bundle,
            io: (req.stdin.clone(), req.stdout.clone(), req.stderr.clone()),
            rootfs_mounted,
            phase: Mutex::new(Phase::Created),
            exited,
            execer: Mutex::new(None),
            start_published: watch::channel(false).0,
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
        let mut phase = task.phase.lock().expect("phase lock");
        if matches!(*phase, Phase::Created) {
            *phase = Phase::Running { stop, terminate };
        }
        Ok(())
    }

    /// Starts a container's wpod pod, and a task that reports its end.
    async fn start_container(
        self: &Arc<Self>,
        id: &str,
        task: &Arc<TaskState>,
        container: &ContainerTask,
    ) -> TtrpcResult<(Action, Action)> {
        let (stdin, stdout, stderr) = &task.io;
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
        let handle = runtime
            .start(container.pod.clone(), options)
            .await
            .map_err(|source| {
                let id = id.to_owned();
                error(
                    Code::FAILED_PRECONDITION,
                    ServiceError::Wpod { id, source }.to_string(),
                )
            })?;
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
            // containerd hears of the start before the exit, as from runc's
            // shim, however quickly the guest ended.
            let mut started = task.start_published.subscribe();
            let _ = tokio::time::timeout(
                std::time::Duration::from_secs(10),
                started.wait_for(|published| *published),
            )
            .await;
            service.ended(&id, &task, code).await;
        });
        Ok((Box::new(stop), Box::new(terminate)))
    }

    /// An action that ends `task` with `code` (the sandbox's kill).
    fn end_action(self: &Arc<Self>, id: &str, task: &Arc<TaskState>, code: i32) -> Action {
        let (service, task, id) = (self.clone(), task.clone(), id.to_owned());
        Box::new(move || {
            let (service, task, id) = (service.clone(), task.clone(), id.clone());
            tokio::spawn(async move { service.ended(&id, &task, code).await });
        })
    }

    /// Records a task's end and tells containerd (once).
    async fn ended(&self, id: &str, task: &TaskState, code: i32) {
        let exit = Exit {
            code: code as u32,
            at: Timestamp::now(),
        };
        {
            let mut phase = task.phase.lock().expect("phase lock");
            if matches!(*phase, Phase::Stopped(_)) {
                return;
            }
            *phase = Phase::Stopped(exit.clone());
        }
        task.execer.lock().expect("execer lock").take();
        task.exited.send_replace(Some(exit.clone()));
        self.publish(
            TASK_EXIT_EVENT_TOPIC,
            Box::new(TaskExit {
                container_id: id.to_owned(),
                id: id.to_owned(),
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
            return Err(error(
                Code::INVALID_ARGUMENT,
                format!(
                    "task `{}`: wpod containers have no terminal (drop `-t`/`tty: true`)",
                    req.id
                ),
            ));
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
        let task = service.task(&req.id, &req.exec_id)?;
        if !matches!(*task.phase.lock().expect("phase lock"), Phase::Created) {
            return Err(error(
                Code::FAILED_PRECONDITION,
                format!("task `{}` was already started", req.id),
            ));
        }
        service.start_task(&req.id, &task).await?;
        let pid = std::process::id();
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
        task.start_published.send_replace(true);
        Ok(StartResponse {
            pid,
            ..Default::default()
        })
    }

    async fn state(&self, _ctx: &TtrpcContext, req: StateRequest) -> TtrpcResult<StateResponse> {
        let task = self.0.task(&req.id, &req.exec_id)?;
        let (status, exit) = match &*task.phase.lock().expect("phase lock") {
            Phase::Created => (Status::CREATED, None),
            Phase::Running { .. } => (Status::RUNNING, None),
            Phase::Stopped(exit) => (Status::STOPPED, Some(exit.clone())),
        };
        Ok(StateResponse {
            id: req.id.clone(),
            bundle: task.bundle.path.display().to_string(),
            pid: std::process::id(),
            status: EnumOrUnknown::new(status),
            stdin: task.io.0.clone(),
            stdout: task.io.1.clone(),
            stderr: task.io.2.clone(),
            exit_status: exit.as_ref().map_or(0, |e| e.code),
            exited_at: exit.map(|e| e.at).into(),
            ..Default::default()
        })
    }

    async fn kill(&self, _ctx: &TtrpcContext, req: KillRequest) -> TtrpcResult<Empty> {
        let service = &self.0;
        let task = service.task(&req.id, &req.exec_id)?;
        let created = {
            let phase = task.phase.lock().expect("phase lock");
            match &*phase {
                Phase::Created => true,
                Phase::Running { stop, terminate } => {
                    // Wasm has no signals: SIGKILL interrupts the guest at
                    // once; the signals that ask a process to end ask the
                    // container to (its `/run/wpod/terminating`), with the
                    // pod's grace period before wpod interrupts it.
                    match req.signal {
                        9 => stop(),
                        1 | 2 | 3 | 15 => terminate(),
                        other => log::info!(
                            "task {}: signal {other} ignored (Wasm guests have no signals)",
                            req.id
                        ),
                    }
                    false
                }
                Phase::Stopped(_) => false,
            }
        };
        if created {
            // A task killed before it started never runs.
            service.ended(&req.id, &task, 128 + req.signal as i32).await;
        }
        Ok(Empty::new())
    }

    async fn wait(&self, _ctx: &TtrpcContext, req: WaitRequest) -> TtrpcResult<WaitResponse> {
        let task = self.0.task(&req.id, &req.exec_id)?;
        let mut exited = task.exited.subscribe();
        let exit = exited
            .wait_for(Option::is_some)
            .await
            .map_err(|_| error(Code::INTERNAL, format!("task `{}` vanished", req.id)))?
            .clone()
            .expect("waited for an exit");
        Ok(WaitResponse {
            exit_status: exit.code,
            exited_at: MessageField::some(exit.at),
            ..Default::default()
        })
    }

    async fn delete(&self, _ctx: &TtrpcContext, req: DeleteRequest) -> TtrpcResult<DeleteResponse> {
        let service = &self.0;
        let task = service.task(&req.id, &req.exec_id)?;
        let exit = match &*task.phase.lock().expect("phase lock") {
            Phase::Running { .. } => {
                return Err(error(
                    Code::FAILED_PRECONDITION,
                    format!("task `{}` is running; kill it first", req.id),
                ));
            }
            Phase::Created => Exit {
                code: 0,
                at: Timestamp::now(),
            },
            Phase::Stopped(exit) => exit.clone(),
        };
        service.tasks.lock().expect("tasks lock").remove(&req.id);
        if task.rootfs_mounted {
            unmount(&task.bundle.path.join("rootfs"));
        }
        let pid = std::process::id();
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
        self.0.task(&req.id, "")?;
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
        let task = self.0.task(&req.id, "")?;
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

    async fn exec(&self, _ctx: &TtrpcContext, req: ExecProcessRequest) -> TtrpcResult<Empty> {
        Err(error(
            Code::UNIMPLEMENTED,
            format!(
                "task `{}`: exec is not supported by wpod's shim yet (`wpod exec` runs a program in a pod run by `wpod run`)",
                req.id
            ),
        ))
    }

    async fn connect(
        &self,
        _ctx: &TtrpcContext,
        req: ConnectRequest,
    ) -> TtrpcResult<ConnectResponse> {
        self.0.task(&req.id, "")?;
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
