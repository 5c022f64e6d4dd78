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
    pub init_container_statuses: Vec<ContainerStatus>,
    pub container_statuses: Vec<ContainerStatus>,
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
