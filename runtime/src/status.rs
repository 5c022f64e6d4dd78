//! A pod's status in the shape of Kubernetes' `PodStatus`: phase, and per
//! container its state (Waiting / Running / Terminated), restarts and times.
//! Serializes with Kubernetes' field names, so `-o json` reads like kubectl's.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::time::SystemTime;

/// `status.phase`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PodPhase {
    /// Accepted; init containers are running or the app containers are starting.
    Pending,
    /// Every init container succeeded and the app containers are running.
    Running,
    /// Every container terminated successfully and none will restart.
    Succeeded,
    /// Every container terminated, at least one in failure, and none will restart.
    Failed,
}

/// The status of a pod.
// Deserialize too: a pod behind the OS wall (`sandbox`) sends its status to
// the supervisor as JSON, in this very shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodStatus {
    pub phase: PodPhase,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Timestamp>,
    /// Why the pod failed, in a word (`Stopped`, `InitContainerFailed`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// `PodScheduled`, `Initialized`, `ContainersReady` and `Ready`, as
    /// the kubelet keeps them ([`PodStatus::refresh_conditions`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<PodCondition>,
    pub init_container_statuses: Vec<ContainerStatus>,
    pub container_statuses: Vec<ContainerStatus>,
}

/// One of a pod's conditions, in Kubernetes' shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodCondition {
    #[serde(rename = "type")]
    pub kind: String,
    /// `True` or `False`.
    pub status: String,
    /// Always null, as the kubelet leaves it for these conditions.
    pub last_probe_time: Option<Timestamp>,
    pub last_transition_time: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// The status of one container.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerStatus {
    pub name: String,
    pub image: String,
    pub ready: bool,
    pub started: bool,
    pub restart_count: u32,
    pub state: ContainerState,
    /// The state before the last restart.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_state: Option<ContainerState>,
}

/// `state`: exactly one of waiting, running, terminated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ContainerState {
    #[serde(rename_all = "camelCase")]
    Waiting {
        reason: String,
        /// Why, when there is more to say than the reason (`ErrImagePull`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
    },
    #[serde(rename_all = "camelCase")]
    Running {
        started_at: Timestamp,
    },
    Terminated(Termination),
}

/// `state.terminated`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Termination {
    pub exit_code: i32,
    /// `Completed` (exit 0), `Error`, or `OOMKilled`.
    pub reason: String,
    /// The trap or the reason wpod stopped it, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    pub started_at: Timestamp,
    pub finished_at: Timestamp,
}

impl Termination {
    pub fn succeeded(&self) -> bool {
        self.exit_code == 0
    }
}

impl ContainerStatus {
    pub(crate) fn waiting(name: &str, image: &str, reason: &str) -> ContainerStatus {
        ContainerStatus {
            name: name.into(),
            image: image.into(),
            ready: false,
            started: false,
            restart_count: 0,
            state: ContainerState::Waiting {
                reason: reason.into(),
                message: None,
            },
            last_state: None,
        }
    }

    /// The termination, if the container is terminated now.
    pub fn terminated(&self) -> Option<&Termination> {
        match &self.state {
            ContainerState::Terminated(termination) => Some(termination),
            _ => None,
        }
    }
}

impl PodStatus {
    /// Works out the pod's conditions from its phase and its containers'
    /// statuses, as the kubelet does: `Initialized` once every init
    /// container has succeeded, `ContainersReady` and `Ready` while every
    /// app container is ready (`PodCompleted` once the pod has ended). A
    /// condition's `lastTransitionTime` changes only when its status does.
    pub fn refresh_conditions(&mut self) {
        self.refresh_conditions_with(|_| false);
    }

    /// [`PodStatus::refresh_conditions`] for a pod whose init containers
    /// named by `is_sidecar` are native sidecars: one counts as initialized
    /// once it has started, and its readiness counts for the pod's.
    pub(crate) fn refresh_conditions_with(&mut self, is_sidecar: impl Fn(&str) -> bool) {
        let ended = matches!(self.phase, PodPhase::Succeeded | PodPhase::Failed);
        let done = |c: &ContainerStatus| {
            c.terminated().is_some_and(Termination::succeeded)
                || (is_sidecar(&c.name) && (c.started || ended))
        };
        let initialized = self.init_container_statuses.iter().all(done);
        let unready: Vec<&str> = self
            .init_container_statuses
            .iter()
            .filter(|c| is_sidecar(&c.name))
            .chain(&self.container_statuses)
            .filter(|c| !c.ready)
            .map(|c| c.name.as_str())
            .collect();
        let not_ready = |message: String| {
            if ended {
                (false, Some("PodCompleted".to_owned()), None)
            } else {
                (false, Some("ContainersNotReady".to_owned()), Some(message))
            }
        };
        let ready = if unready.is_empty() && !ended {
            (true, None, None)
        } else {
            not_ready(format!(
                "containers with unready status: [{}]",
                unready.join(" ")
            ))
        };
        let uninitialized: Vec<&str> = self
            .init_container_statuses
            .iter()
            .filter(|c| !done(c))
            .map(|c| c.name.as_str())
            .collect();
        let initialized = if initialized {
            (true, None, None)
        } else {
            (
                false,
                Some("ContainersNotInitialized".to_owned()),
                Some(format!(
                    "containers with incomplete status: [{}]",
                    uninitialized.join(" ")
                )),
            )
        };
        let wanted = [
            ("Initialized", initialized),
            ("Ready", ready.clone()),
            ("ContainersReady", ready),
            ("PodScheduled", (true, None, None)),
        ];
        let now = Timestamp::now();
        let previous = std::mem::take(&mut self.conditions);
        self.conditions = wanted
            .into_iter()
            .map(|(kind, (status, reason, message))| {
                let status = if status { "True" } else { "False" }.to_owned();
                let since = previous
                    .iter()
                    .find(|c| c.kind == kind && c.status == status)
                    .map_or(now, |c| c.last_transition_time);
                PodCondition {
                    kind: kind.into(),
                    status,
                    last_probe_time: None,
                    last_transition_time: since,
                    reason,
                    message,
                }
            })
            .collect();
    }

    /// The first container (init containers first) that ended in failure.
    pub fn failed_container(&self) -> Option<(&ContainerStatus, &Termination)> {
        self.init_container_statuses
            .iter()
            .chain(&self.container_statuses)
            .find_map(|status| {
                status
                    .terminated()
                    .filter(|t| !t.succeeded())
                    .map(|t| (status, t))
            })
    }

    /// Every container that ended in failure, with its place in the pod
    /// (init containers first), in that order.
    pub fn failed_containers(&self) -> impl Iterator<Item = (usize, &Termination)> {
        self.init_container_statuses
            .iter()
            .chain(&self.container_statuses)
            .enumerate()
            .filter_map(|(order, status)| status.terminated().map(|t| (order, t)))
            .filter(|(_, t)| !t.succeeded())
    }

    /// A container's status by name.
    pub fn container(&self, name: &str) -> Option<&ContainerStatus> {
        self.init_container_statuses
            .iter()
            .chain(&self.container_statuses)
            .find(|s| s.name == name)
    }
}

/// A point in time, serialized as RFC 3339 (`2026-11-27T12:00:00Z`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timestamp(pub SystemTime);

impl Timestamp {
    pub fn now() -> Timestamp {
        Timestamp(SystemTime::now())
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Timestamp, D::Error> {
        let text = String::deserialize(deserializer)?;
        humantime::parse_rfc3339(&text)
            .map(Timestamp)
            .map_err(serde::de::Error::custom)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&humantime::format_rfc3339_seconds(self.0))
    }
}
