//! The task API containerd calls (runtime v2, `containerd.task.v2.Task` over
//! ttrpc), each call checked and answered from the shim's [`Service`]:
//! create, start, state, kill, exec, wait, delete, pids, stats, connect,
//! shutdown. Pause, resume, checkpoint, update, resize-pty and close-io keep
//! containerd-shim's default answer (not implemented): a Wasm guest has none
//! of them.

use crate::process::{Exit, Process, Status as ProcessStatus};
use crate::service::{ExecProcess, Service, error, unmount};
use async_trait::async_trait;
use containerd_shim::protos::api::{
    ConnectRequest, ConnectResponse, CreateTaskRequest, CreateTaskResponse, DeleteRequest,
    DeleteResponse, Empty, ExecProcessRequest, KillRequest, PidsRequest, PidsResponse, ProcessInfo,
    ShutdownRequest, StartRequest, StartResponse, StateRequest, StateResponse, StatsRequest,
    StatsResponse, Status, WaitRequest, WaitResponse,
};
use containerd_shim::protos::events::task::{
    TaskCreate, TaskDelete, TaskExecAdded, TaskExecStarted, TaskIO, TaskStart,
};
use containerd_shim::protos::protobuf::well_known_types::timestamp::Timestamp;
use containerd_shim::protos::protobuf::{EnumOrUnknown, MessageField};
use containerd_shim::protos::shim_async::Task;
use containerd_shim::protos::topics::{
    TASK_CREATE_EVENT_TOPIC, TASK_DELETE_EVENT_TOPIC, TASK_EXEC_ADDED_EVENT_TOPIC,
    TASK_EXEC_STARTED_EVENT_TOPIC, TASK_START_EVENT_TOPIC,
};
use containerd_shim::protos::ttrpc::{self, Code};
use containerd_shim::{TtrpcContext, TtrpcResult};
use std::sync::Arc;

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
            if let Err(e) = service
                .start_exec(&req.id, &req.exec_id, &task, &exec)
                .await
            {
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
        service.deleted(&req.id, &task).await;
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
        self.0.task(&req.id)?;
        let usage = self.0.usage(&req.id).await;
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
            // Nothing of the pod outlives the shim: its walled process and
            // its folder go first.
            self.0.tear_down().await;
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
