//! Jobs: the Job controller's part of a run. A Job's [`PodSpec`] is its
//! template; the run starts pods made of it (at most `parallelism` at
//! once), and as each ends, this controller says which to start next and
//! which to stop, until the Job is complete or has failed. Both ways of
//! running pods (behind the wall, and in this process) drive it the same
//! way: [`Jobs::new`], then [`Jobs::status`] and [`Jobs::ended`] as pods
//! change and end.

use crate::manifest::JobSpec;
use crate::{PodPhase, PodSpec, PodStatus, RestartPolicy};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// How a Job ended, as its `Complete` or `Failed` condition says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobCondition {
    /// `completions` pods succeeded (or, for a work queue, one did and the
    /// rest ended).
    Complete,
    /// `reason` is Kubernetes' (`BackoffLimitExceeded`, `DeadlineExceeded`,
    /// `PodTemplateError` when a pod could not be made of the template).
    Failed { reason: String, message: String },
}

/// One Job of a run, at its end.
#[derive(Debug, Clone)]
pub struct JobOutcome {
    pub name: String,
    /// The Job's pods that succeeded and failed.
    pub succeeded: u32,
    pub failed: u32,
    /// `None` when the run was stopped (a signal) before the Job ended.
    pub condition: Option<JobCondition>,
    /// The names of the pods made for the Job, in the order they started.
    pub pods: Vec<String>,
}

impl JobOutcome {
    /// The Job in Kubernetes' shape (`batch/v1` `Job` with its `status`).
    pub fn to_json(&self) -> serde_json::Value {
        let conditions = match &self.condition {
            None => Vec::new(),
            Some(JobCondition::Complete) => {
                vec![serde_json::json!({"type": "Complete", "status": "True"})]
            }
            Some(JobCondition::Failed { reason, message }) => vec![serde_json::json!({
                "type": "Failed", "status": "True", "reason": reason, "message": message,
            })],
        };
        let mut status = serde_json::json!({"conditions": conditions});
        if self.succeeded > 0 {
            status["succeeded"] = self.succeeded.into();
        }
        if self.failed > 0 {
            status["failed"] = self.failed.into();
        }
        serde_json::json!({
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": self.name},
            "status": status,
        })
    }
}

/// What to do after a pod of a Job changed or ended.
#[derive(Debug, Default)]
pub(crate) struct Step {
    /// New pods of the Job, to start now.
    pub start: Vec<PodSpec>,
    /// Running pods of the Job, to stop (gracefully): it has failed.
    pub stop: Vec<String>,
}

/// The Jobs of a run.
#[derive(Debug, Default)]
pub(crate) struct Jobs {
    jobs: Vec<Job>,
    /// The run is stopping: no more pods.
    stopping: bool,
}

#[derive(Debug)]
struct Job {
    /// The Job read as its template (see [`PodSpec::job`]).
    template: PodSpec,
    spec: JobSpec,
    /// The Job's own uid, its pods' `controller-uid` label.
    uid: String,
    started: Instant,
    /// The pods running now, with their index (Indexed Jobs).
    active: BTreeMap<String, Option<u32>>,
    succeeded: u32,
    failed: u32,
    /// Indexes whose pod succeeded (Indexed Jobs).
    done: BTreeSet<u32>,
    /// Container restarts of each running pod (`restartPolicy: OnFailure`).
    restarts: BTreeMap<String, u32>,
    made: Vec<String>,
    condition: Option<JobCondition>,
}

impl Jobs {
    /// Takes the Jobs out of `pods`: the pods to run now are the others and
    /// each Job's first pods.
    pub(crate) fn new(pods: Vec<PodSpec>) -> (Jobs, Vec<PodSpec>) {
        let mut jobs = Jobs::default();
        let mut run = Vec::new();
        for pod in pods {
            let Some(spec) = pod.job.clone() else {
                run.push(pod);
                continue;
            };
            let mut job = Job {
                template: pod,
                spec,
                uid: uuid::Uuid::new_v4().to_string(),
                started: Instant::now(),
                active: BTreeMap::new(),
                succeeded: 0,
                failed: 0,
                done: BTreeSet::new(),
                restarts: BTreeMap::new(),
                made: Vec::new(),
                condition: None,
            };
            run.extend(job.next());
            jobs.jobs.push(job);
        }
        (jobs, run)
    }

    // The supervisor behind the OS wall (Linux) asks.
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    pub(crate) fn is_empty(&self) -> bool {
        self.jobs.is_empty()
    }

    /// The Job that `pod` belongs to, if any.
    pub(crate) fn job_of(&self, pod: &str) -> Option<&str> {
        self.jobs
            .iter()
            .find(|job| job.made.iter().any(|made| made == pod))
            .map(|job| job.template.name.as_str())
    }

    /// A pod's status changed: with `restartPolicy: OnFailure`, its
    /// containers' restarts count against the Job's `backoffLimit`.
    pub(crate) fn status(&mut self, pod: &str, status: &PodStatus) -> Step {
        let Some(job) = self.jobs.iter_mut().find(|j| j.active.contains_key(pod)) else {
            return Step::default();
        };
        if job.template.restart_policy != RestartPolicy::OnFailure || job.condition.is_some() {
            return Step::default();
        }
        let restarts = status
            .init_container_statuses
            .iter()
            .chain(&status.container_statuses)
            .map(|c| c.restart_count)
            .sum();
        job.restarts.insert(pod.to_owned(), restarts);
        let total: u32 = job.restarts.values().sum();
        let limit = job.spec.backoff_limit;
        if (limit == 0 && total > 0) || (limit > 0 && total >= limit) {
            job.fail(
                "BackoffLimitExceeded",
                "Job has reached the specified backoff limit",
            );
            return Step {
                start: Vec::new(),
                stop: job.active.keys().cloned().collect(),
            };
        }
        Step::default()
    }

    /// A pod ended with `status`: what the Job does next.
    pub(crate) fn ended(&mut self, pod: &str, status: &PodStatus) -> Step {
        self.count(pod, status.phase == PodPhase::Succeeded)
    }

    fn count(&mut self, pod: &str, succeeded: bool) -> Step {
        let stopping = self.stopping;
        let Some(job) = self.jobs.iter_mut().find(|j| j.active.contains_key(pod)) else {
            return Step::default();
        };
        let index = job.active.remove(pod).flatten();
        job.restarts.remove(pod);
        if succeeded {
            job.succeeded += 1;
            if let Some(index) = index {
                job.done.insert(index);
            }
        } else {
            job.failed += 1;
        }
        if job.condition.is_some() || stopping {
            return Step::default();
        }
        let past_deadline = job
            .spec
            .active_deadline
            .is_some_and(|deadline| job.started.elapsed() >= deadline);
        if past_deadline {
            job.fail(
                "DeadlineExceeded",
                "Job was active longer than specified deadline",
            );
        } else if job.failed > job.spec.backoff_limit {
            job.fail(
                "BackoffLimitExceeded",
                "Job has reached the specified backoff limit",
            );
        } else if job.complete() {
            job.condition = Some(JobCondition::Complete);
        }
        if job.condition.is_some() {
            return Step {
                start: Vec::new(),
                stop: job.active.keys().cloned().collect(),
            };
        }
        Step {
            start: job.next(),
            stop: Vec::new(),
        }
    }

    /// A pod of a Job could not be started: it counts as failed.
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    pub(crate) fn not_started(&mut self, pod: &str, why: &str) -> Step {
        if let Some(job) = self.jobs.iter_mut().find(|j| j.active.contains_key(pod)) {
            tracing::warn!(job = %job.template.name, %pod, "the Job's pod could not start: {why}");
        }
        self.count(pod, false)
    }

    /// The run is stopping: no Job starts another pod.
    pub(crate) fn stop(&mut self) {
        self.stopping = true;
    }

    pub(crate) fn outcomes(&self) -> Vec<JobOutcome> {
        self.jobs
            .iter()
            .map(|job| JobOutcome {
                name: job.template.name.clone(),
                succeeded: job.succeeded,
                failed: job.failed,
                condition: job.condition.clone(),
                pods: job.made.clone(),
            })
            .collect()
    }
}

impl Job {
    fn fail(&mut self, reason: &str, message: &str) {
        self.condition = Some(JobCondition::Failed {
            reason: reason.into(),
            message: message.into(),
        });
    }

    /// Whether enough pods succeeded.
    fn complete(&self) -> bool {
        match self.spec.completions {
            Some(n) if self.spec.indexed => self.done.len() as u32 >= n,
            Some(n) => self.succeeded >= n,
            // A work queue: one succeeded, and the rest ended.
            None => self.succeeded > 0 && self.active.is_empty(),
        }
    }

    /// The pods to start so that as many run as the Job wants now; a Job
    /// with nothing left to do is complete.
    fn next(&mut self) -> Vec<PodSpec> {
        if self.condition.is_none() && self.complete() {
            self.condition = Some(JobCondition::Complete);
        }
        if self.condition.is_some() {
            return Vec::new();
        }
        let wanted = match self.spec.completions {
            Some(n) if self.spec.indexed => (n - self.done.len() as u32).min(self.spec.parallelism),
            Some(n) => n.saturating_sub(self.succeeded).min(self.spec.parallelism),
            None if self.succeeded > 0 => 0,
            None => self.spec.parallelism,
        };
        let mut pods = Vec::new();
        while (self.active.len() as u32) < wanted {
            let index = self.spec.indexed.then(|| {
                (0..)
                    .find(|i| {
                        !self.done.contains(i) && !self.active.values().any(|a| *a == Some(*i))
                    })
                    .unwrap_or(0)
            });
            match self.make(index) {
                Ok(pod) => {
                    self.active.insert(pod.name.clone(), index);
                    self.made.push(pod.name.clone());
                    pods.push(pod);
                }
                Err(message) => {
                    self.fail("PodTemplateError", &message);
                    break;
                }
            }
        }
        if self.condition.is_some() {
            // Those made before the failure are not started.
            for pod in &pods {
                self.active.remove(&pod.name);
            }
            return Vec::new();
        }
        pods
    }

    /// A pod of the template, as the controller makes it: named
    /// `JOB-XXXXX` (`JOB-INDEX-XXXXX`), with the Job's labels, and the
    /// time left of the Job's deadline as its own.
    fn make(&self, index: Option<u32>) -> Result<PodSpec, String> {
        let name = &self.template.name;
        let base = match index {
            Some(index) => format!("{name}-{index}-"),
            None => format!("{name}-"),
        };
        // As `generateName`: the base cut so that the name fits in 63.
        let base: String = base.chars().take(58).collect();
        let pod_name = loop {
            let candidate = format!("{base}{}", random_suffix());
            if !self.made.contains(&candidate) {
                break candidate;
            }
        };
        let mut labels = BTreeMap::new();
        for (key, value) in [
            ("batch.kubernetes.io/controller-uid", &self.uid),
            ("batch.kubernetes.io/job-name", name),
            ("controller-uid", &self.uid),
            ("job-name", name),
        ] {
            labels.insert(key.to_owned(), value.clone());
        }
        let mut annotations = BTreeMap::new();
        if let Some(index) = index {
            let key = "batch.kubernetes.io/job-completion-index".to_owned();
            labels.insert(key.clone(), index.to_string());
            annotations.insert(key, index.to_string());
        }
        let mut pod = self
            .spec
            .template
            .pod(&pod_name, &labels, &annotations)
            .map_err(|problems| {
                problems
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ")
            })?;
        if let Some(index) = index {
            for container in pod.init_containers.iter_mut().chain(&mut pod.containers) {
                if !container
                    .env
                    .iter()
                    .any(|v| v.name == "JOB_COMPLETION_INDEX")
                {
                    container.env.push(crate::manifest::EnvVar {
                        name: "JOB_COMPLETION_INDEX".into(),
                        value: index.to_string(),
                    });
                }
            }
        }
        if let Some(deadline) = self.spec.active_deadline {
            let left = deadline
                .saturating_sub(self.started.elapsed())
                .max(Duration::from_millis(1));
            pod.active_deadline = Some(pod.active_deadline.map_or(left, |own| own.min(left)));
        }
        Ok(pod)
    }
}

/// Five characters of the controllers' alphabet (no vowels, no
/// look-alikes), at random.
fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    uuid::Uuid::new_v4()
        .as_bytes()
        .iter()
        .take(5)
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect()
}
