//! Looking into a running pod: [`Execer::exec`] runs a program from a
//! container's image inside that container (its volumes, environment,
//! working directory, network and memory limit), as `kubectl exec` does;
//! [`Execer::usage`] tells what each container uses now, as `kubectl top`
//! would if it could see one Wasm container apart from another.

use super::RuntimeInner;
use crate::container::{self, ContainerPlan};
use crate::image::ImageError;
use crate::log::Stream;
use crate::status::{ContainerState, PodStatus};
use serde::{Deserialize, Serialize};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::AsyncWrite;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// The annotation that names the container `exec` picks when none is given
/// (kubectl's).
pub const DEFAULT_CONTAINER_ANNOTATION: &str = "kubectl.kubernetes.io/default-container";

/// What to run in a pod, and in which container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecRequest {
    /// The container; `None` for the pod's default: the one its
    /// `kubectl.kubernetes.io/default-container` annotation names, else its
    /// first app container.
    pub container: Option<String>,
    /// The program and its arguments. The program is looked up in the
    /// container's image as its `command` would be: along the image's `PATH`
    /// in its root filesystem (a name with a `/` relative to the working
    /// directory), or, for an image that is one `.wasm` file, that file.
    pub command: Vec<String>,
}

/// How a program that `exec` ran ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecOutcome {
    pub exit_code: i32,
    /// `Completed`, `Error`, `OOMKilled`, or `Stopped` when the pod stopped
    /// first.
    pub reason: String,
    pub message: Option<String>,
}

/// Receives what a program that `exec` runs writes, as it writes it (not in
/// lines). Called from the thread that runs the guest: keep it quick.
pub trait ExecOutput: Send + Sync + 'static {
    fn write(&self, stream: Stream, bytes: &[u8]);
}

/// What one container uses now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerUsage {
    pub name: String,
    /// The Wasm memory its programs hold (linear memories), in bytes.
    pub memory_bytes: u64,
    /// Its `limits.memory`, if it has one.
    pub memory_limit: Option<u64>,
    /// The CPU time spent in its programs since the pod started, restarts
    /// and `exec`s included.
    pub cpu_time: Duration,
}

/// Why `exec` could not run a program. Each names the pod and the fix.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("no command to run; give it after `--`: wpod exec POD -- COMMAND [ARG...]")]
    NoCommand,
    #[error("pod `{pod}` has no container `{container}`; its containers: {}", containers.join(", "))]
    NoContainer {
        pod: String,
        container: String,
        containers: Vec<String>,
    },
    #[error(
        "container `{container}` of pod `{pod}` is not running ({state}); exec runs programs in a running container only"
    )]
    NotRunning {
        pod: String,
        container: String,
        state: String,
    },
    #[error("pod `{pod}`, container `{container}`: {source}")]
    Image {
        pod: String,
        container: String,
        #[source]
        source: Box<ImageError>,
    },
    #[error("pod `{pod}`, container `{container}`: cannot run `{program}`: {message}")]
    CannotRun {
        pod: String,
        container: String,
        program: String,
        message: String,
    },
}

impl ExecError {
    /// Whose fault, as `podman exec` tells it by its exit status: 125 for
    /// the request, 126 for a program that cannot run, 127 for one not found.
    pub fn fault(&self) -> crate::Fault {
        match self {
            ExecError::NoCommand | ExecError::NoContainer { .. } | ExecError::NotRunning { .. } => {
                crate::Fault::Input
            }
            ExecError::Image { source, .. } => source.fault(),
            ExecError::CannotRun { .. } => crate::Fault::NotRunnable,
        }
    }
}

/// Runs programs in a pod's containers while it runs, and reads what they
/// use: from [`crate::PodHandle::execer`], cheap to clone, usable from any
/// task.
#[derive(Clone)]
pub struct Execer {
    inner: Arc<Shared>,
}

impl Execer {
    /// The container's program compiled by Cranelift, once its background
    /// compile is done, if it runs from Winch's code now: a restart takes it.
    pub(super) fn optimised(&self, plan: &ContainerPlan) -> Option<crate::container::Program> {
        let runtime = &self.inner.runtime;
        if plan.http.is_some() || runtime.is_cranelift(&plan.program) {
            return None;
        }
        let compiled = runtime.compiler.optimised(&plan.source)?;
        runtime.link(&plan.reference, &plan.source, &compiled).ok()
    }
}

struct Shared {
    runtime: Arc<RuntimeInner>,
    pod: Arc<str>,
    default_container: Option<String>,
    /// Init containers first, as in the pod's task.
    plans: Arc<[ContainerPlan]>,
    init_count: usize,
    status: watch::Receiver<PodStatus>,
    stop: CancellationToken,
}

impl std::fmt::Debug for Execer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Execer")
            .field("pod", &self.inner.pod)
            .finish_non_exhaustive()
    }
}

impl Execer {
    pub(super) fn new(
        runtime: Arc<RuntimeInner>,
        pod: &crate::PodSpec,
        plans: Arc<[ContainerPlan]>,
        status: watch::Receiver<PodStatus>,
        stop: CancellationToken,
    ) -> Execer {
        Execer {
            inner: Arc::new(Shared {
                runtime,
                pod: pod.name.as_str().into(),
                default_container: pod.annotations.get(DEFAULT_CONTAINER_ANNOTATION).cloned(),
                plans,
                init_count: pod.init_containers.len(),
                status,
                stop,
            }),
        }
    }

    /// The pod's name.
    pub fn pod(&self) -> &str {
        &self.inner.pod
    }

    /// What each container (init containers first) uses now.
    pub fn usage(&self) -> Vec<ContainerUsage> {
        self.inner
            .plans
            .iter()
            .map(|plan| ContainerUsage {
                name: plan.name.clone(),
                memory_bytes: plan.usage.memory.used(),
                memory_limit: plan.usage.memory.limit(),
                cpu_time: Duration::from_nanos(plan.usage.cpu_nanos.load(Ordering::Relaxed)),
            })
            .collect()
    }

    /// Runs `request.command` in a running container of the pod, its output
    /// to `output`, and returns how it ended. A program that fails is an
    /// outcome; the pod stopping ends it (`Stopped`, 137).
    ///
    /// # Errors
    ///
    /// [`ExecError`]: no such container, not running, the program not found
    /// in the image or not runnable.
    pub async fn exec(
        &self,
        request: ExecRequest,
        output: Arc<dyn ExecOutput>,
    ) -> Result<ExecOutcome, ExecError> {
        let shared = &self.inner;
        let pod = shared.pod.to_string();
        let mut argv = request.command;
        if argv.is_empty() {
            return Err(ExecError::NoCommand);
        }
        let wanted = request
            .container
            .or_else(|| shared.default_container.clone())
            .or_else(|| {
                shared
                    .plans
                    .get(shared.init_count)
                    .map(|plan| plan.name.clone())
            })
            .unwrap_or_default();
        let Some(index) = shared.plans.iter().position(|plan| plan.name == wanted) else {
            return Err(ExecError::NoContainer {
                pod,
                container: wanted,
                containers: shared.plans.iter().map(|plan| plan.name.clone()).collect(),
            });
        };
        let plan = &shared.plans[index];
        let state = {
            let status = shared.status.borrow();
            let entry = if index < shared.init_count {
                status.init_container_statuses.get(index)
            } else {
                status.container_statuses.get(index - shared.init_count)
            };
            entry.map(|c| c.state.clone())
        };
        match state {
            Some(ContainerState::Running { .. }) if !shared.stop.is_cancelled() => {}
            other => {
                return Err(ExecError::NotRunning {
                    pod,
                    container: plan.name.clone(),
                    state: match other {
                        Some(ContainerState::Waiting { reason, .. }) => {
                            format!("waiting: {reason}")
                        }
                        Some(ContainerState::Terminated(t)) => {
                            format!("terminated: {}, exit code {}", t.reason, t.exit_code)
                        }
                        _ => "the pod is stopping".into(),
                    },
                });
            }
        }
        let image_error = |source| ExecError::Image {
            pod: pod.clone(),
            container: plan.name.clone(),
            source: Box::new(source),
        };
        let path = plan
            .image
            .program(&plan.reference, &mut argv, &plan.working_dir)
            .map_err(image_error)?;
        let runtime = shared.runtime.clone();
        let program = match runtime.compiler.cached(&path) {
            Some(compiled) => runtime.link(&plan.reference, &path, &compiled),
            None => {
                let (reference, path) = (plan.reference.clone(), path.clone());
                tokio::task::spawn_blocking(move || {
                    let compiled = runtime.compiler.compile(&reference, &path)?;
                    runtime.link(&reference, &path, &compiled)
                })
                .await
                .map_err(|e| ExecError::CannotRun {
                    pod: pod.clone(),
                    container: plan.name.clone(),
                    program: argv[0].clone(),
                    message: format!("the compile task failed: {e}"),
                })?
            }
        }
        .map_err(image_error)?;
        tracing::info!(pod = %pod, container = %plan.name, command = ?argv, "exec");
        let stream = |stream| ExecStream {
            stream,
            output: output.clone(),
        };
        let run = container::run_program(
            plan,
            &program,
            &argv,
            container::Stdio {
                stdin: false,
                stdout: stream(Stream::Stdout),
                stderr: stream(Stream::Stderr),
            },
        );
        let outcome = tokio::select! {
            outcome = run => outcome,
            () = shared.stop.cancelled() => {
                return Ok(ExecOutcome {
                    exit_code: 137,
                    reason: "Stopped".into(),
                    message: Some(format!("pod `{pod}` stopped")),
                });
            }
        };
        match outcome {
            Ok(outcome) => Ok(ExecOutcome {
                exit_code: outcome.exit_code,
                reason: outcome.reason.into(),
                message: outcome.message,
            }),
            Err(error) => Err(ExecError::CannotRun {
                pod,
                container: plan.name.clone(),
                program: argv[0].clone(),
                message: error.to_string(),
            }),
        }
    }
}

/// stdout or stderr of a program that `exec` runs.
#[derive(Clone)]
struct ExecStream {
    stream: Stream,
    output: Arc<dyn ExecOutput>,
}

impl IsTerminal for ExecStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for ExecStream {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }

    /// Synchronous, as a container's own output: everything is handed over
    /// before the exit is reported.
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
}

impl OutputStream for ExecStream {
    fn write(&mut self, bytes: bytes::Bytes) -> StreamResult<()> {
        self.output.write(self.stream, &bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(crate::log::MAX_LINE)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for ExecStream {
    async fn ready(&mut self) {}
}

impl AsyncWrite for ExecStream {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.output.write(self.stream, buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
