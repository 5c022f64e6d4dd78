//! The shim's state and work: one [`Service`] per shim process, holding
//! every task of one pod sandbox (the calls containerd makes are in
//! [`crate::task`]).
//!
//! The containers run in the pod's walled process, wpod's pod host (see
//! [`crate::pod`]): each a one-container wpod pod on the host's runtime (one
//! engine, one compile cache for the whole pod sandbox), started, stopped,
//! exec'd in and measured by messages over a socket. The host starts with
//! the sandbox's first task and ends with the sandbox (or with the shim);
//! the sandbox task runs nothing and only lives until it is killed. Every
//! task reports the shim's own PID: there is no process per container to
//! point at.
//!
//! `exec` runs a program from the container's image in the running
//! container, as `wpod exec` does (wpod's `Execer`): `kubectl exec` without a
//! terminal, exec probes and hooks.
//!
//! Events go to containerd as the runc shim sends them: `/tasks/create`,
//! `/tasks/start`, `/tasks/exec-added`, `/tasks/exec-started`, `/tasks/exit`,
//! `/tasks/delete`. When the walled process dies, every container and exec
//! that ran in it ends with 137, as processes killed with the pod's.

use crate::bundle::{Bundle, BundleError, ContainerTask, TaskKind};
use crate::process::{Action, Process, Status};
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
use wpod::RuntimeConfig;
use wpod::pod_host::{HostConfig, HostError, HostEvent, PodHost};

pub(crate) struct TaskState {
    pub(crate) bundle: Bundle,
    pub(crate) rootfs_mounted: bool,
    /// The container (or the sandbox).
    pub(crate) init: Process,
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

/// The pod sandbox: its folder and its walled process.
pub(crate) struct Pod {
    pub(crate) sandbox_id: String,
    pub(crate) folder: PathBuf,
    hostname: String,
    /// The pod's cgroup, where the sandbox's spec puts it; removed with
    /// the pod (after its process).
    cgroup: Option<wpod::pod_host::HostCgroup>,
    /// The walled process, while it runs (started again for the next
    /// container if it died).
    host: tokio::sync::Mutex<Option<Arc<PodHost>>>,
}

/// The task service of one shim process.
pub struct Service {
    namespace: String,
    publisher: RemotePublisher,
    pub(crate) exit: Arc<ExitSignal>,
    pub(crate) tasks: Mutex<HashMap<String, Arc<TaskState>>>,
    /// Made with the sandbox's first task.
    pod: Mutex<Option<Arc<Pod>>>,
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
    #[error(transparent)]
    PodFolder(#[from] crate::pod::PodFolderError),
    #[error("{bundle}: cannot mount the container's root filesystem: {message}")]
    Mount { bundle: PathBuf, message: String },
    #[error(transparent)]
    Stdio(#[from] crate::stdio::StdioError),
    #[error("container `{id}`: {source}")]
    Host {
        id: String,
        #[source]
        source: HostError,
    },
}

impl Service {
    /// A service publishing to `publisher`; `exit` is signalled when the
    /// last task is gone and containerd asks the shim to shut down.
    pub fn new(namespace: &str, publisher: RemotePublisher, exit: Arc<ExitSignal>) -> Service {
        Service {
            namespace: namespace.to_owned(),
            publisher,
            exit,
            tasks: Mutex::new(HashMap::new()),
            pod: Mutex::new(None),
        }
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
        self: &Arc<Self>,
        req: &CreateTaskRequest,
    ) -> Result<Arc<TaskState>, ServiceError> {
        let path = PathBuf::from(&req.bundle);
        let rootfs = path.join("rootfs");
        let (sandbox_id, _) = crate::bundle::peek(&path, &req.id)?;
        let folder = crate::pod::folder_for(&path, &sandbox_id)?;
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
        let prepared = Bundle::read(&path, &req.id, &folder)
            .map_err(ServiceError::from)
            .and_then(|bundle| {
                self.pod(&bundle, &folder)?;
                if let TaskKind::Container(container) = &bundle.kind {
                    container.dir.create(
                        &rootfs,
                        &container.image_json.to_string(),
                        &container.volumes,
                    )?;
                    for skipped in &container.skipped_mounts {
                        log::info!("container {}: mount {skipped}", req.id);
                    }
                }
                Ok(bundle)
            });
        let bundle = match prepared {
            Ok(bundle) => bundle,
            Err(e) => {
                if rootfs_mounted {
                    unmount(&rootfs);
                }
                return Err(e);
            }
        };
        Ok(Arc::new(TaskState {
            bundle,
            rootfs_mounted,
            init: Process::new(&req.stdin, &req.stdout, &req.stderr),
            execs: Mutex::new(HashMap::new()),
        }))
    }

    /// The pod, made with its folder by the sandbox's first task, whose
    /// walled process then starts in the background (RunPodSandbox need not
    /// wait for it; the first container does).
    fn pod(
        self: &Arc<Self>,
        bundle: &Bundle,
        folder: &std::path::Path,
    ) -> Result<Arc<Pod>, ServiceError> {
        let mut pod = self.pod.lock().expect("pod lock");
        if let Some(pod) = &*pod {
            return Ok(pod.clone());
        }
        crate::pod::create(folder)?;
        let hostname = bundle
            .hostname
            .clone()
            .unwrap_or_else(|| bundle.sandbox_id.chars().take(12).collect());
        // The sandbox's `cgroupsPath` (the kubelet's cgroup of the pod, and
        // the sandbox's name), where runc would put the pause process.
        let cgroup = bundle.cgroups_path.as_deref().and_then(|path| {
            wpod::pod_host::HostCgroup::create(path)
                .map_err(|e| log::warn!("the pod process stays in the shim's cgroup: {e}"))
                .ok()
        });
        let made = Arc::new(Pod {
            sandbox_id: bundle.sandbox_id.clone(),
            folder: folder.to_owned(),
            hostname,
            cgroup,
            host: tokio::sync::Mutex::new(None),
        });
        *pod = Some(made.clone());
        let service = self.clone();
        tokio::spawn(async move {
            if let Err(e) = service.host().await {
                log::warn!("the pod process did not start: {e}");
            }
        });
        Ok(made)
    }

    /// The pod's walled process, started if it does not run.
    async fn host(self: &Arc<Self>) -> Result<Arc<PodHost>, HostError> {
        let pod = self
            .pod
            .lock()
            .expect("pod lock")
            .clone()
            .ok_or(HostError::Gone)?;
        let mut host = pod.host.lock().await;
        if let Some(host) = &*host {
            return Ok(host.clone());
        }
        let runtime = runtime_config();
        if let Some(cache) = &runtime.cache_dir {
            use std::os::unix::fs::DirBuilderExt;
            let _ = std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(cache);
        }
        let config = HostConfig {
            name: pod.sandbox_id.chars().take(12).collect(),
            hostname: pod.hostname.clone(),
            pod_folder: pod.folder.clone(),
            program: PathBuf::from("/proc/self/exe"),
            runtime,
            cgroups: pod.cgroup.as_ref().map(|c| c.dirs()).unwrap_or_default(),
        };
        let starting = std::time::Instant::now();
        let (started, events) = PodHost::start(config).await?;
        let started = Arc::new(started);
        log::info!(
            "the pod's walled process: {} (helper {}), up in {:?}",
            started.walled_pid(),
            started.pid(),
            starting.elapsed()
        );
        *host = Some(started.clone());
        tokio::spawn(self.clone().follow(started.clone(), events));
        Ok(started)
    }

    /// Turns what the host tells into the tasks' ends.
    async fn follow(
        self: Arc<Self>,
        host: Arc<PodHost>,
        mut events: tokio::sync::mpsc::UnboundedReceiver<HostEvent>,
    ) {
        while let Some(event) = events.recv().await {
            let service = self.clone();
            match event {
                HostEvent::Exited {
                    id,
                    exit_code,
                    message,
                } => {
                    if let Some(message) = message {
                        log::info!("container {id}: {message}");
                    }
                    tokio::spawn(async move {
                        if let Ok(task) = service.task(&id) {
                            task.init.after_start_published().await;
                            service.ended(&id, "", &task.init, exit_code).await;
                        }
                    });
                }
                HostEvent::ExecEnded {
                    id,
                    exec_id,
                    exit_code,
                } => {
                    tokio::spawn(async move {
                        if let Ok(exec) = service.task(&id).and_then(|t| t.process(&id, &exec_id)) {
                            exec.process.after_start_published().await;
                            service.ended(&id, &exec_id, &exec.process, exit_code).await;
                        }
                    });
                }
                HostEvent::Gone => {
                    self.host_gone(&host).await;
                    return;
                }
            }
        }
    }

    /// The walled process ended (killed, or out of memory): every container
    /// and exec that ran in it ends with 137; the next container starts a
    /// new one.
    async fn host_gone(&self, host: &Arc<PodHost>) {
        host.shut_down().await;
        let pod = self.pod.lock().expect("pod lock").clone();
        if let Some(pod) = pod {
            let mut current = pod.host.lock().await;
            if current.as_ref().is_some_and(|h| Arc::ptr_eq(h, host)) {
                log::warn!("the pod's walled process ended; its containers end with it");
                *current = None;
            }
        }
        let tasks: Vec<(String, Arc<TaskState>)> = (self.tasks.lock().expect("tasks lock"))
            .iter()
            .map(|(id, task)| (id.clone(), task.clone()))
            .collect();
        for (id, task) in tasks {
            if matches!(task.bundle.kind, TaskKind::Sandbox) {
                continue;
            }
            let execs: Vec<(String, Arc<ExecProcess>)> = (task.execs.lock().expect("execs lock"))
                .iter()
                .map(|(exec_id, exec)| (exec_id.clone(), exec.clone()))
                .collect();
            for (exec_id, exec) in execs {
                if matches!(exec.process.status(), Status::Running) {
                    self.ended(&id, &exec_id, &exec.process, 137).await;
                }
            }
            if matches!(task.init.status(), Status::Running) {
                self.ended(&id, "", &task.init, 137).await;
            }
        }
    }

    /// Starts a created task; its end is published when the host reports it.
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

    /// Starts a container in the pod's walled process: its programs
    /// compiled ahead (outside the wall), its output FIFOs passed in.
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
        let (stdout, stderr) = crate::stdio::open(stdout, stderr)
            .map_err(|e| error(Code::INVALID_ARGUMENT, e.to_string()))?;
        let failed = |source: HostError| ServiceError::Host {
            id: id.to_owned(),
            source,
        };
        let host = self
            .host()
            .await
            .map_err(|e| error(Code::INTERNAL, failed(e).to_string()))?;
        wpod::pod_host::compile_ahead(
            std::path::Path::new("/proc/self/exe"),
            &container.container,
            &runtime_config(),
        )
        .await;
        if let Err(source) = host
            .start_container(id, &container.container, stdout, stderr)
            .await
        {
            // The container never ran: it ends as `wpod run` would (127 for
            // a program not found, 126 for one that cannot run), so that
            // containerd can delete it.
            self.ended(id, "", &task.init, source.exit_code()).await;
            return Err(error(Code::FAILED_PRECONDITION, failed(source).to_string()));
        }
        let action = |force: bool| -> Action {
            let (host, id) = (host.clone(), id.to_owned());
            Box::new(move || {
                let (host, id) = (host.clone(), id.clone());
                tokio::spawn(async move { host.stop(&id, force).await });
            })
        };
        Ok((action(true), action(false)))
    }

    /// Starts an exec: the program runs in the container through wpod's
    /// `Execer`, in the walled process; a program that cannot run ends it as
    /// `wpod exec` ends (126, 127), with the reason on its stderr.
    pub(crate) async fn start_exec(
        self: &Arc<Self>,
        id: &str,
        exec_id: &str,
        task: &TaskState,
        exec: &Arc<ExecProcess>,
    ) -> TtrpcResult<()> {
        let not_running = || {
            error(
                Code::FAILED_PRECONDITION,
                format!("task `{id}` is not running: nothing to exec in"),
            )
        };
        if !matches!(task.init.status(), Status::Running) {
            return Err(not_running());
        }
        let host = self.running_host().await.ok_or_else(not_running)?;
        let (_, stdout, stderr) = &exec.process.io;
        let (stdout, stderr) = crate::stdio::open(stdout, stderr)
            .map_err(|e| error(Code::INVALID_ARGUMENT, e.to_string()))?;
        host.exec(id, exec_id, exec.args.clone(), stdout, stderr)
            .await
            .map_err(|e| error(Code::INTERNAL, e.to_string()))?;
        // Wasm has no signals: a kill of the exec drops its run, which
        // stops the guest.
        let action = || -> Action {
            let (host, id, exec_id) = (host.clone(), id.to_owned(), exec_id.to_owned());
            Box::new(move || {
                let (host, id, exec_id) = (host.clone(), id.clone(), exec_id.clone());
                tokio::spawn(async move { host.stop_exec(&id, &exec_id).await });
            })
        };
        exec.process.running(action(), action());
        Ok(())
    }

    /// The walled process, if it runs.
    async fn running_host(&self) -> Option<Arc<PodHost>> {
        let pod = self.pod.lock().expect("pod lock").clone()?;
        pod.host.lock().await.clone()
    }

    /// What container `id` uses now (nothing when it does not run).
    pub(crate) async fn usage(&self, id: &str) -> Vec<wpod::ContainerUsage> {
        match self.running_host().await {
            Some(host) => host.usage(id).await,
            None => Vec::new(),
        }
    }

    /// After a task's delete: its place in the pod folder goes; with the
    /// sandbox's own task, the pod goes (its walled process, its folder and
    /// cgroup).
    pub(crate) async fn deleted(&self, id: &str, task: &TaskState) {
        if let TaskKind::Container(container) = &task.bundle.kind {
            container.dir.remove();
        }
        let sandbox = self
            .pod
            .lock()
            .expect("pod lock")
            .as_ref()
            .is_some_and(|pod| pod.sandbox_id == id);
        if sandbox {
            self.tear_down().await;
        }
    }

    /// Ends the pod: its walled process, then its folder and cgroup.
    pub(crate) async fn tear_down(&self) {
        let pod = self.pod.lock().expect("pod lock").take();
        let Some(pod) = pod else {
            return;
        };
        let host = pod.host.lock().await.take();
        if let Some(host) = host {
            host.shut_down().await;
        }
        crate::pod::tear_down(&pod.folder);
        // The cgroup goes with `pod` (its `Drop`), now that nothing runs in
        // it.
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

/// The runtime's settings: the compile cache as `wpod` finds it, else
/// `/var/cache/wpod` (containerd's shims run with containerd's environment,
/// often without HOME: compiled programs are then kept where root's caches
/// go).
fn runtime_config() -> RuntimeConfig {
    let mut config = RuntimeConfig::from_env();
    if config.cache_dir.is_none() {
        config.cache_dir = Some(PathBuf::from("/var/cache/wpod"));
    }
    config
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
