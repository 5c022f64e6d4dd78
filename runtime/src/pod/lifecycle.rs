//! A pod's life, once prepared: init containers one at a time, in order,
//! each to completion; then the app containers together, restarted as
//! `restartPolicy` says with the kubelet's back-off; the end, and an
//! eviction for an emptyDir past its `sizeLimit`.

use super::probe::{self, ProbeKind, ProbeReport};
use super::{Backoff, PodEvent};
use crate::container::{self, ContainerPlan};
use crate::log::{ContainerOutput, LogSink, LogStore, Stream};
use crate::manifest::RestartPolicy;
use crate::status::{ContainerState, ContainerStatus, PodPhase, PodStatus, Termination, Timestamp};
use crate::volume::Volumes;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

/// The state one pod's task works on.
pub(super) struct PodRun {
    /// Runs exec probes.
    pub(super) execer: super::Execer,
    pub(super) pod_name: Arc<str>,
    pub(super) restart_policy: RestartPolicy,
    pub(super) init_count: usize,
    /// Init containers first, then app containers.
    pub(super) plans: Arc<[ContainerPlan]>,
    pub(super) backoff: Backoff,
    pub(super) sink: Arc<dyn LogSink>,
    pub(super) logs: Arc<LogStore>,
    pub(super) status: watch::Sender<PodStatus>,
    pub(super) events: mpsc::UnboundedSender<PodEvent>,
    pub(super) stop: CancellationToken,
    /// Cancelled to stop the pod gracefully (see `PodHandle::terminate`).
    pub(super) terminating: CancellationToken,
    /// `terminationGracePeriodSeconds`.
    pub(super) grace: Duration,
    /// Why the pod was stopped from within, if it was: evicted (an
    /// emptyDir past its `sizeLimit`), or past its `activeDeadlineSeconds`.
    pub(super) ended_by: std::sync::Mutex<Option<EndedBy>>,
    /// `activeDeadlineSeconds`.
    pub(super) active_deadline: Option<Duration>,
    /// Dropped (emptyDirs removed) when the pod's task ends.
    pub(super) volumes: Volumes,
}

/// How a container's run, restarts included, ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    Succeeded,
    Failed,
    Stopped,
}

/// A container restarted after running this long starts its back-off over.
const BACKOFF_RESET: Duration = Duration::from_secs(600);

impl PodRun {
    pub(super) async fn lifecycle(self: Arc<Self>) -> PodStatus {
        let watcher = (!self.volumes.size_limited().is_empty())
            .then(|| tokio::spawn(self.clone().watch_volume_sizes()));
        let deadline = self
            .active_deadline
            .map(|deadline| tokio::spawn(self.clone().watch_deadline(deadline)));
        let status = self.clone().run_all().await;
        if let Some(deadline) = deadline {
            deadline.abort();
        }
        if let Some(watcher) = watcher {
            // Awaited, not just aborted: the task holds the pod (and its
            // emptyDirs), which must be dropped now, not at some later poll.
            watcher.abort();
            let _ = watcher.await;
        }
        status
    }

    /// Evicts the pod, as the kubelet does, when an emptyDir on disk holds
    /// more than its `sizeLimit`: every container is stopped and the pod
    /// fails with reason `Evicted`. The folders are measured as `du` does,
    /// at most every 250 ms, and less often where that takes long (a tenth
    /// of the time at most).
    async fn watch_volume_sizes(self: Arc<Self>) {
        let mut interval = Duration::from_millis(250);
        loop {
            tokio::select! {
                () = tokio::time::sleep(interval) => {}
                () = self.stop.cancelled() => return,
            }
            let limited = self.volumes.size_limited().to_vec();
            let measured = tokio::task::spawn_blocking(move || {
                let started = Instant::now();
                let over = limited.into_iter().find_map(|(name, dir, limit)| {
                    let used = crate::volume::disk_usage(&dir);
                    (used > limit).then_some((name, used, limit))
                });
                (over, started.elapsed())
            })
            .await;
            let Ok((over, took)) = measured else { return };
            if let Some((name, used, limit)) = over {
                let message = format!(
                    "Usage of EmptyDir volume \"{name}\" exceeds the limit \"{}\" ({used} bytes used)",
                    human_quantity(limit)
                );
                tracing::warn!(pod = %self.pod_name, "evicted: {message}");
                self.end_by(
                    EndedBy {
                        reason: "Evicted",
                        message,
                        for_containers: "the pod was evicted",
                    },
                    false,
                );
                return;
            }
            interval = Duration::from_millis(250).max(took * 10);
        }
    }

    /// Stops the pod, as the kubelet does, once it has been active for
    /// `deadline`: it fails with reason `DeadlineExceeded`.
    async fn watch_deadline(self: Arc<Self>, deadline: Duration) {
        tokio::select! {
            () = tokio::time::sleep(deadline) => {}
            () = self.stop.cancelled() => return,
        }
        tracing::warn!(pod = %self.pod_name, "activeDeadlineSeconds passed: stopping the pod");
        self.end_by(
            EndedBy {
                reason: "DeadlineExceeded",
                message: "Pod was active on the node longer than the specified deadline".into(),
                for_containers: "the pod's activeDeadlineSeconds passed",
            },
            true,
        );
    }

    /// Asks a running container to end (its `/run/wpod/terminating` file
    /// appears) and waits for it up to `grace`: its outcome
    /// if it ended by itself, `None` once it is interrupted (the grace
    /// period passed, or the pod was stopped at once meanwhile).
    async fn end_gracefully<F: std::future::Future>(
        &self,
        plan: &ContainerPlan,
        mut run: std::pin::Pin<&mut F>,
        grace: Duration,
        asked_to_end: &CancellationToken,
    ) -> Option<F::Output> {
        let deadline = tokio::time::Instant::now() + grace;
        // preStop first, within the grace period, while the guest runs on.
        if let Some(hook) = &plan.pre_stop {
            let target = self.hook_target(plan);
            tokio::select! {
                outcome = run.as_mut() => return Some(outcome),
                result = probe::run_hook(hook, &target) => {
                    if let Err(why) = result {
                        self.sink.event(&self.pod_name, &plan.name, &format!("preStop hook failed: {why}"));
                    }
                }
                () = tokio::time::sleep_until(deadline) => return None,
                () = self.stop.cancelled() => return None,
            }
        }
        if let Some(dir) = &plan.run_dir {
            let _ = std::fs::write(dir.join(crate::volume::TERMINATING), b"terminating\n");
        }
        // wpod's own server of an HTTP component ends by itself.
        asked_to_end.cancel();
        tokio::select! {
            outcome = run => Some(outcome),
            () = tokio::time::sleep_until(deadline) => None,
            () = self.stop.cancelled() => None,
        }
    }

    /// Stops the pod from within, gracefully or at once, saying why (the
    /// first reason stays).
    fn end_by(&self, ended_by: EndedBy, graceful: bool) {
        self.ended_by
            .lock()
            .expect("end lock")
            .get_or_insert(ended_by);
        if graceful {
            self.terminating.cancel();
        } else {
            self.stop.cancel();
        }
    }

    /// Where container `plan`'s hooks run.
    fn hook_target(&self, plan: &ContainerPlan) -> probe::Target {
        probe::Target {
            container: plan.name.clone(),
            network: plan.network.clone(),
            execer: self.execer.clone(),
            started: tokio::time::Instant::now(),
        }
    }

    fn is_sidecar(&self, name: &str) -> bool {
        self.plans[..self.init_count]
            .iter()
            .any(|plan| plan.sidecar && plan.name == name)
    }

    /// Waits until init container `index` (a sidecar) has started: its
    /// startup probe passed, or it runs when it has none. `false` if the
    /// pod is stopping first.
    async fn sidecar_started(&self, index: usize) -> bool {
        let mut status = self.status.subscribe();
        tokio::select! {
            started = status.wait_for(|s| s.init_container_statuses[index].started) => started.is_ok(),
            () = self.terminating.cancelled() => false,
            () = self.stop.cancelled() => false,
        }
    }

    /// Stops the sidecars after the app containers, in reverse order, each
    /// gracefully, as the kubelet does.
    async fn stop_sidecars(sidecars: Vec<(tokio::task::JoinHandle<Ended>, CancellationToken)>) {
        for (task, terminate) in sidecars.into_iter().rev() {
            terminate.cancel();
            let _ = task.await;
        }
    }

    async fn run_all(self: Arc<Self>) -> PodStatus {
        let mut sidecars = Vec::new();
        for index in 0..self.init_count {
            if self.plans[index].sidecar && self.plans[index].config_error.is_none() {
                // Started in order, kept running beside the rest.
                let terminate = self.terminating.child_token();
                let task = tokio::spawn(self.clone().run_container(index, terminate.clone()));
                sidecars.push((task, terminate));
                if !self.sidecar_started(index).await {
                    Self::stop_sidecars(sidecars).await;
                    return self.finish(Ended::Stopped, usize::MAX);
                }
                continue;
            }
            match self
                .clone()
                .run_container(index, self.terminating.clone())
                .await
            {
                Ended::Succeeded => continue,
                ended => {
                    Self::stop_sidecars(sidecars).await;
                    return self.finish(ended, index);
                }
            }
        }
        self.set_phase(PodPhase::Running);
        // One task per app container, so that they run in parallel.
        let tasks: Vec<_> = (self.init_count..self.plans.len())
            .map(|index| {
                let run = self.clone();
                let terminate = run.terminating.clone();
                tokio::spawn(async move { run.run_container(index, terminate).await })
            })
            .collect();
        let mut ended = Vec::with_capacity(tasks.len());
        for task in tasks {
            ended.push(task.await.unwrap_or(Ended::Failed));
        }
        Self::stop_sidecars(sidecars).await;
        let overall = if ended.contains(&Ended::Stopped) {
            Ended::Stopped
        } else if ended.contains(&Ended::Failed) {
            Ended::Failed
        } else {
            Ended::Succeeded
        };
        self.finish(overall, usize::MAX)
    }

    fn finish(&self, ended: Ended, failed_init: usize) -> PodStatus {
        self.status.send_modify(|status| {
            status.phase = if ended == Ended::Succeeded {
                PodPhase::Succeeded
            } else {
                PodPhase::Failed
            };
            let ended_by = self.ended_by.lock().expect("end lock").clone();
            match (ended, ended_by) {
                (Ended::Stopped, Some(by)) => {
                    status.reason = Some(by.reason.into());
                    status.message = Some(by.message);
                }
                (Ended::Stopped, None) => {
                    status.reason = Some("Stopped".into());
                    status.message = Some("the pod was stopped".into());
                }
                (Ended::Failed, _) if failed_init != usize::MAX => {
                    status.reason = Some("InitContainerFailed".into());
                    status.message = Some(format!(
                        "init container `{}` failed",
                        self.plans[failed_init].name
                    ));
                }
                _ => {}
            }
            status.refresh_conditions_with(|name| self.is_sidecar(name));
        });
        let phase = self.status.borrow().phase;
        let _ = self.events.send(PodEvent::PhaseChanged { phase });
        tracing::info!(pod = %self.pod_name, ?phase, "pod ended");
        self.status.borrow().clone()
    }

    fn set_phase(&self, phase: PodPhase) {
        self.status.send_modify(|status| {
            status.phase = phase;
            status.refresh_conditions_with(|name| self.is_sidecar(name));
        });
        let _ = self.events.send(PodEvent::PhaseChanged { phase });
    }

    fn update(&self, index: usize, change: impl FnOnce(&mut ContainerStatus)) {
        self.status.send_modify(|status| {
            let entry = if index < self.init_count {
                &mut status.init_container_statuses[index]
            } else {
                &mut status.container_statuses[index - self.init_count]
            };
            change(entry);
            status.refresh_conditions_with(|name| self.is_sidecar(name));
        });
    }

    /// Runs container `index` with its restarts until it is done for good.
    async fn run_container(self: Arc<Self>, index: usize, terminate: CancellationToken) -> Ended {
        let plan = &self.plans[index];
        // A sidecar is an init container that lives as an app container.
        let is_init = index < self.init_count && !plan.sidecar;
        let mut backoff = self.backoff.initial;
        let mut restart_count = 0u32;
        // A ConfigMap, Secret or key it needs is not there: it cannot start
        // (the kubelet would wait for it; wpod's objects come with the
        // manifest, so none will come).
        if let Some(why) = &plan.config_error {
            self.update(index, |status| {
                status.state = ContainerState::Waiting {
                    reason: "CreateContainerConfigError".into(),
                    message: Some(why.clone()),
                };
            });
            self.sink
                .event(&self.pod_name, &plan.name, &format!("cannot start: {why}"));
            return Ended::Failed;
        }
        loop {
            if terminate.is_cancelled() || self.stop.is_cancelled() {
                return Ended::Stopped;
            }
            if restart_count > 0 {
                self.sink
                    .restarted(&self.pod_name, &plan.name, restart_count);
                if let Some(dir) = &plan.run_dir {
                    let _ = std::fs::remove_file(dir.join(crate::volume::TERMINATING));
                }
            }
            let started_at = Timestamp::now();
            let clock = Instant::now();
            // A startup probe holds `started`; a readiness probe, `ready`.
            let probes = &plan.probes;
            let ready = !is_init && probes.startup.is_none() && probes.readiness.is_none();
            self.update(index, |status| {
                status.state = ContainerState::Running { started_at };
                status.started = probes.startup.is_none();
                status.ready = ready;
            });
            if ready {
                let _ = self.events.send(PodEvent::ReadyChanged {
                    container: plan.name.clone(),
                    ready: true,
                });
            }
            let _ = self.events.send(PodEvent::ContainerStarted {
                container: plan.name.clone(),
                restart_count,
            });
            tracing::debug!(pod = %self.pod_name, container = %plan.name, "container started");
            // Let whoever watches the status on this thread (a current-thread
            // runtime) see `Running` before the guest runs: a guest that is
            // killed (the cgroup's OOM killer) may get no other chance.
            tokio::task::yield_now().await;
            let output = |stream| ContainerOutput {
                pod: self.pod_name.clone(),
                container: plan.name.as_str().into(),
                stream,
                sink: self.sink.clone(),
                store: self.logs.clone(),
            };
            // stdinOnce: only the first run reads the input.
            let stdin = plan.stdin && (restart_count == 0 || !plan.stdin_once);
            let control = container::RunControl {
                asked_to_end: CancellationToken::new(),
                event: {
                    let (sink, pod, name) =
                        (self.sink.clone(), self.pod_name.clone(), plan.name.clone());
                    Arc::new(move |message: &str| sink.event(&pod, &name, message))
                },
            };
            // A restart of a program that ran from Winch's code takes
            // Cranelift's once it is compiled.
            let optimised = self.execer.optimised(plan);
            if optimised.is_some() {
                (control.event)("runs from Cranelift's code from now on");
            }
            let run = container::run(
                plan,
                optimised.as_ref().unwrap_or(&plan.program),
                stdin,
                output(Stream::Stdout),
                output(Stream::Stderr),
                &control,
            );
            let mut run = std::pin::pin!(run);
            let reporter = Arc::new(Reporter {
                run: self.clone(),
                index,
                restart: CancellationToken::new(),
                why: std::sync::Mutex::new(None),
                grace: std::sync::Mutex::new(None),
            });
            let probing = probes.any().then(|| {
                let target = probe::Target {
                    container: plan.name.clone(),
                    network: plan.network.clone(),
                    execer: self.execer.clone(),
                    started: clock.into(),
                };
                tokio::spawn(probe::watch(
                    probes.clone(),
                    target,
                    reporter.clone() as Arc<dyn ProbeReport>,
                ))
            });
            // postStart runs beside the guest; if it fails, the container
            // is stopped as a failed liveness probe stops it.
            let post_start = plan.post_start.clone().map(|hook| {
                let target = self.hook_target(plan);
                let reporter = reporter.clone();
                tokio::spawn(async move {
                    if let Err(why) = probe::run_hook(&hook, &target).await {
                        reporter.hook_failed("postStart", &why);
                    }
                })
            });
            let (cause, outcome) = tokio::select! {
                outcome = &mut run => (Cause::Exited, Some(outcome)),
                () = reporter.restart.cancelled() => (Cause::Probe, None),
                () = terminate.cancelled() => (Cause::Terminate, None),
                () = self.stop.cancelled() => (Cause::Interrupt, None),
            };
            for task in [probing, post_start].into_iter().flatten() {
                task.abort();
            }
            // A probe's restart and a graceful stop let the guest end by
            // itself first, within the grace period.
            let outcome = match cause {
                Cause::Probe | Cause::Terminate => {
                    let grace_period = match cause {
                        Cause::Probe => *reporter.grace.lock().expect("probe lock"),
                        _ => None,
                    }
                    .unwrap_or(self.grace);
                    let grace = humantime::format_duration(grace_period);
                    let why = if cause == Cause::Probe {
                        format!("asked to end: {grace} to do so, then interrupted")
                    } else if self.terminating.is_cancelled() {
                        format!(
                            "stopping: {grace} to end by itself, then interrupted (Ctrl-C again: at once)"
                        )
                    } else {
                        format!("the app containers are done: asked to end within {grace}")
                    };
                    self.sink.event(&self.pod_name, &plan.name, &why);
                    self.end_gracefully(plan, run.as_mut(), grace_period, &control.asked_to_end)
                        .await
                }
                Cause::Exited | Cause::Interrupt => outcome,
            };
            let stopped = matches!(cause, Cause::Terminate | Cause::Interrupt);
            let probe_why = reporter.why.lock().expect("probe lock").clone();
            let (exit_code, reason, message) = match outcome {
                Some(Ok(outcome)) => (
                    outcome.exit_code,
                    outcome.reason.to_owned(),
                    probe_why.or(outcome.message),
                ),
                Some(Err(error)) => (
                    128,
                    "ContainerCannotRun".to_owned(),
                    Some(error.to_string()),
                ),
                // As the kubelet's kill leaves it: SIGKILL's status.
                None if cause == Cause::Probe => (137, "Error".to_owned(), probe_why),
                None => {
                    let ended_by = self.ended_by.lock().expect("end lock").clone();
                    let message = match ended_by {
                        Some(by) => format!("{}: {}", by.for_containers, by.message),
                        None if cause == Cause::Terminate => format!(
                            "stopped by wpod after its grace period ({})",
                            humantime::format_duration(self.grace)
                        ),
                        None => "stopped by wpod".to_owned(),
                    };
                    (137, "Error".to_owned(), Some(message))
                }
            };
            let termination = Termination {
                exit_code,
                reason,
                message,
                started_at,
                finished_at: Timestamp::now(),
            };
            tracing::info!(pod = %self.pod_name, container = %plan.name, exit_code, reason = %termination.reason, "container exited");
            let succeeded = termination.succeeded();
            self.update(index, |status| {
                status.state = ContainerState::Terminated(termination.clone());
                status.ready = false;
            });
            let _ = self.events.send(PodEvent::ContainerExited {
                container: plan.name.clone(),
                termination: termination.clone(),
            });
            if stopped {
                return Ended::Stopped;
            }
            // Init containers restart only on failure, whatever the policy;
            // a sidecar, whenever it ends (its own restartPolicy: Always).
            let restart = match self.restart_policy {
                _ if plan.sidecar => true,
                RestartPolicy::Never => false,
                RestartPolicy::OnFailure => !succeeded,
                RestartPolicy::Always => !is_init || !succeeded,
            };
            if !restart {
                return if succeeded {
                    Ended::Succeeded
                } else {
                    Ended::Failed
                };
            }
            if clock.elapsed() >= BACKOFF_RESET {
                backoff = self.backoff.initial;
            }
            restart_count += 1;
            let what = match (&termination.message, termination.reason.as_str()) {
                (Some(why), _) if reporter.restart.is_cancelled() => format!("killed: {why}"),
                (_, "Completed" | "Error") => format!("exited {}", termination.exit_code),
                (_, reason) => format!("exited {} ({reason})", termination.exit_code),
            };
            self.sink.event(
                &self.pod_name,
                &plan.name,
                &format!(
                    "{what}; restarting in {} (restartPolicy: {:?})",
                    humantime::format_duration(backoff),
                    if plan.sidecar {
                        RestartPolicy::Always
                    } else {
                        self.restart_policy
                    }
                ),
            );
            self.update(index, |status| {
                status.last_state = Some(ContainerState::Terminated(termination));
                status.state = ContainerState::Waiting {
                    message: None,
                    reason: if succeeded {
                        "Completed".into()
                    } else {
                        "CrashLoopBackOff".into()
                    },
                };
                status.restart_count = restart_count;
            });
            let _ = self.events.send(PodEvent::ContainerRestarting {
                container: plan.name.clone(),
                restart_count,
                backoff,
            });
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                () = async { tokio::select! {
                    () = self.stop.cancelled() => {}
                    () = terminate.cancelled() => {}
                } } => {
                    // Stopped while waiting to restart: it ends as its last
                    // instance did (which `lastState` keeps too).
                    self.update(index, |status| {
                        if let Some(last) = &status.last_state {
                            status.state = last.clone();
                        }
                    });
                    return Ended::Stopped;
                }
            }
            backoff = (backoff * 2).min(self.backoff.max);
        }
    }
}

/// `20Mi`, `1Gi`, or plain bytes: a byte quantity as Kubernetes writes it.
fn human_quantity(bytes: u64) -> String {
    match bytes {
        0 => "0".into(),
        b if b % (1 << 30) == 0 => format!("{}Gi", b >> 30),
        b if b % (1 << 20) == 0 => format!("{}Mi", b >> 20),
        b if b % (1 << 10) == 0 => format!("{}Ki", b >> 10),
        b => b.to_string(),
    }
}

/// Why a container's instance ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cause {
    /// The guest returned.
    Exited,
    /// A probe failed past its threshold: it restarts (policy allowing).
    Probe,
    /// The pod stops gracefully.
    Terminate,
    /// The pod stops at once.
    Interrupt,
}

/// Why a pod was stopped from within.
#[derive(Debug, Clone)]
pub(super) struct EndedBy {
    /// The pod's `reason`.
    reason: &'static str,
    /// The pod's `message`.
    message: String,
    /// What its containers' terminations say before the message.
    for_containers: &'static str,
}

/// What the probes of one instance of container `index` change.
struct Reporter {
    run: Arc<PodRun>,
    index: usize,
    /// Cancelled when a probe says the container must restart.
    restart: CancellationToken,
    /// Why, for the termination's message.
    why: std::sync::Mutex<Option<String>>,
    /// The failing probe's own grace period, if it has one.
    grace: std::sync::Mutex<Option<Duration>>,
}

impl Reporter {
    fn name(&self) -> &str {
        &self.run.plans[self.index].name
    }

    fn say(&self, message: &str) {
        self.run
            .sink
            .event(&self.run.pod_name, self.name(), message);
    }
}

impl ProbeReport for Reporter {
    fn started(&self) {
        let ready = self.run.plans[self.index].probes.readiness.is_none();
        self.run.update(self.index, |status| {
            status.started = true;
            status.ready = ready;
        });
        if ready {
            self.ready_event(true);
        }
    }

    fn ready(&self, ready: bool, why: Option<&str>) {
        self.run.update(self.index, |status| status.ready = ready);
        self.ready_event(ready);
        match why {
            Some(why) => self.say(&format!("readiness probe failed: {why}; not ready")),
            None => self.say("ready"),
        }
    }

    fn failed(&self, kind: ProbeKind, why: &str, in_a_row: u32, threshold: u32) {
        let _ = self.run.events.send(PodEvent::ProbeFailed {
            container: self.name().to_owned(),
            probe: kind,
            message: why.to_owned(),
        });
        if kind == ProbeKind::Readiness {
            self.say(&format!("readiness probe failed: {why}"));
        } else {
            self.say(&format!(
                "{kind} probe failed ({in_a_row} of {threshold}): {why}"
            ));
        }
    }

    fn restart(&self, kind: ProbeKind, why: &str, grace: Option<Duration>) {
        *self.grace.lock().expect("probe lock") = grace;
        let _ = self.run.events.send(PodEvent::ProbeFailed {
            container: self.name().to_owned(),
            probe: kind,
            message: why.to_owned(),
        });
        let message = format!("{kind} probe failed: {why}");
        self.say(&format!("{message}; the container is stopped"));
        *self.why.lock().expect("probe lock") = Some(message);
        self.restart.cancel();
    }
}

impl Reporter {
    /// A lifecycle hook failed: the container is stopped, as the kubelet
    /// does (`FailedPostStartHook`), and restarts as its policy says.
    fn hook_failed(&self, hook: &str, why: &str) {
        let message = format!("{hook} hook failed: {why}");
        self.say(&format!("{message}; the container is stopped"));
        *self.why.lock().expect("probe lock") = Some(message);
        self.restart.cancel();
    }

    fn ready_event(&self, ready: bool) {
        let _ = self.run.events.send(PodEvent::ReadyChanged {
            container: self.name().to_owned(),
            ready,
        });
    }
}
