//! The Pod manifest as serde reads it: the YAML boundary, converted by hand into
//! [`PodSpec`](super::PodSpec) by `super::convert`.
//!
//! Every struct denies unknown fields, so a typo is an error with its path.
//! Kubernetes fields are sorted into three kinds:
//! - read: typed fields that wpod implements;
//! - `Ignored`: real fields that change nothing for a single-host Wasm pod
//!   (scheduling hints, pull policy, ...), accepted and dropped;
//! - `Unsupported`: real fields wpod does not implement yet; reading one fails
//!   with [`NOT_SUPPORTED`], and serde_path_to_error adds its path, so no field
//!   is ever silently ignored and no list of names is kept twice.

// Ignored and unsupported fields are declared only so that serde accepts or
// refuses them by name; nothing reads them.
#![allow(dead_code)]

use serde::de::{Error as _, IgnoredAny};
use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;

/// The message of a refused field; `convert` recognises it to add a hint.
pub(crate) const NOT_SUPPORTED: &str = "not supported yet";

/// A field accepted and dropped because it changes nothing here.
pub(crate) type Ignored = Option<IgnoredAny>;
/// A field refused with "not supported yet" when present (and not null).
pub(crate) type Unsupported = Option<Refused>;

/// Fails to deserialize, whatever the value: see [`Unsupported`].
pub(crate) struct Refused;

impl<'de> Deserialize<'de> for Refused {
    fn deserialize<D: Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        Err(D::Error::custom(NOT_SUPPORTED))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct Pod {
    pub api_version: Option<String>,
    pub kind: Option<String>,
    pub metadata: Option<ObjectMeta>,
    pub spec: Option<PodSpec>,
    pub status: Ignored,
    // A document of kind ConfigMap or Secret has these instead of `spec`.
    pub data: Option<BTreeMap<String, String>>,
    pub string_data: Option<BTreeMap<String, String>>,
    pub binary_data: Option<BTreeMap<String, String>>,
    pub immutable: Option<bool>,
    #[serde(rename = "type")]
    pub kind_of_secret: Option<String>,
    /// Set for a Job's pod template (see `workload::expand_job`), never
    /// read from YAML.
    #[serde(skip)]
    pub job: Option<super::workload::JobParts>,
}

/// A Deployment, ReplicaSet, StatefulSet or DaemonSet: its pod template,
/// run as `replicas` pods (see `convert::expand_workload`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct Workload {
    pub api_version: Option<String>,
    pub kind: Option<String>,
    pub metadata: Option<ObjectMeta>,
    pub spec: Option<WorkloadSpec>,
    pub status: Ignored,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct WorkloadSpec {
    pub replicas: Option<i64>,
    pub template: Option<PodTemplate>,
    // What only a controller in a cluster does: rollouts, history,
    // selection, ordering, claims. One run of the template has no use for it.
    pub selector: Ignored,
    pub strategy: Ignored,
    pub update_strategy: Ignored,
    pub min_ready_seconds: Ignored,
    pub revision_history_limit: Ignored,
    pub progress_deadline_seconds: Ignored,
    pub paused: Ignored,
    pub service_name: Ignored,
    pub pod_management_policy: Ignored,
    pub persistent_volume_claim_retention_policy: Ignored,
    pub ordinals: Ignored,
    pub volume_claim_templates: Unsupported,
}

/// A Job: its pod template, run as the Job controller runs it (see
/// `workload::expand_job`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct Job {
    pub api_version: Option<String>,
    pub kind: Option<String>,
    pub metadata: Option<ObjectMeta>,
    pub spec: Option<JobSpec>,
    pub status: Ignored,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct JobSpec {
    pub completions: Option<i64>,
    pub parallelism: Option<i64>,
    pub backoff_limit: Option<i64>,
    pub active_deadline_seconds: Option<i64>,
    pub completion_mode: Option<String>,
    pub template: Option<PodTemplate>,
    // Selection and clean-up of API objects: nothing to select or keep
    // here. A failed pod is replaced once it has ended (podReplacementPolicy
    // Failed, which is also what TerminatingOrFailed comes to here).
    pub selector: Ignored,
    pub manual_selector: Ignored,
    pub ttl_seconds_after_finished: Ignored,
    pub pod_replacement_policy: Ignored,
    pub managed_by: Ignored,
    pub suspend: Unsupported,
    pub pod_failure_policy: Unsupported,
    pub backoff_limit_per_index: Unsupported,
    pub max_failed_indexes: Unsupported,
    pub success_policy: Unsupported,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct PodTemplate {
    pub metadata: Option<ObjectMeta>,
    pub spec: Option<PodSpec>,
}

impl ObjectMeta {
    /// Metadata with only a name (or none).
    pub(crate) fn named(name: Option<String>) -> ObjectMeta {
        ObjectMeta {
            name,
            generate_name: None,
            namespace: None,
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
            uid: None,
            resource_version: None,
            generation: None,
            creation_timestamp: None,
            deletion_timestamp: None,
            deletion_grace_period_seconds: None,
            owner_references: None,
            finalizers: None,
            managed_fields: None,
            self_link: None,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct ObjectMeta {
    pub name: Option<String>,
    pub generate_name: Unsupported,
    pub namespace: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    pub uid: Option<String>,
    pub resource_version: Ignored,
    pub generation: Ignored,
    pub creation_timestamp: Ignored,
    pub deletion_timestamp: Ignored,
    pub deletion_grace_period_seconds: Ignored,
    pub owner_references: Ignored,
    pub finalizers: Ignored,
    pub managed_fields: Ignored,
    pub self_link: Ignored,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct PodSpec {
    pub containers: Option<Vec<Container>>,
    pub init_containers: Option<Vec<Container>>,
    pub volumes: Option<Vec<Volume>>,
    pub restart_policy: Option<String>,
    pub hostname: Option<String>,
    pub host_network: Option<bool>,
    pub termination_grace_period_seconds: Option<i64>,
    // Scheduling and API-server bookkeeping: one host, no scheduler.
    pub node_name: Ignored,
    pub node_selector: Ignored,
    pub affinity: Ignored,
    pub tolerations: Ignored,
    pub scheduler_name: Ignored,
    pub priority: Ignored,
    pub priority_class_name: Ignored,
    pub preemption_policy: Ignored,
    pub topology_spread_constraints: Ignored,
    pub scheduling_gates: Ignored,
    pub runtime_class_name: Ignored,
    pub service_account: Ignored,
    pub service_account_name: Ignored,
    pub automount_service_account_token: Ignored,
    pub image_pull_secrets: Ignored,
    pub enable_service_links: Ignored,
    pub subdomain: Ignored,
    pub os: Ignored,
    pub overhead: Ignored,
    pub readiness_gates: Ignored,
    // Real behaviour wpod does not have yet.
    pub active_deadline_seconds: Option<i64>,
    pub security_context: Option<PodSecurityContext>,
    pub host_pid: Unsupported,
    #[serde(rename = "hostIPC")]
    pub host_ipc: Unsupported,
    pub share_process_namespace: Unsupported,
    pub ephemeral_containers: Unsupported,
    pub set_hostname_as_fqdn: Unsupported,
    pub host_users: Unsupported,
    pub resource_claims: Unsupported,
    pub resources: Unsupported,
    // Name resolution.
    pub host_aliases: Option<Vec<HostAlias>>,
    pub dns_policy: Option<String>,
    pub dns_config: Option<DnsConfig>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct DnsConfig {
    pub nameservers: Option<Vec<String>>,
    pub searches: Option<Vec<String>>,
    pub options: Option<Vec<DnsOption>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct DnsOption {
    pub name: Option<String>,
    pub value: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct Container {
    pub name: Option<String>,
    pub image: Option<String>,
    pub command: Option<Vec<String>>,
    pub args: Option<Vec<String>>,
    pub env: Option<Vec<EnvVar>>,
    pub working_dir: Option<String>,
    pub volume_mounts: Option<Vec<VolumeMount>>,
    pub ports: Option<Vec<ContainerPort>>,
    pub resources: Option<Resources>,
    pub image_pull_policy: Option<String>,
    pub termination_message_path: Ignored,
    pub termination_message_policy: Ignored,
    pub resize_policy: Ignored,
    pub liveness_probe: Option<Probe>,
    pub readiness_probe: Option<Probe>,
    pub startup_probe: Option<Probe>,
    pub lifecycle: Option<Lifecycle>,
    pub security_context: Option<SecurityContext>,
    pub env_from: Option<Vec<EnvFromSource>>,
    pub stdin: Option<bool>,
    pub stdin_once: Option<bool>,
    pub tty: Option<bool>,
    pub volume_devices: Unsupported,
    pub restart_policy: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct Probe {
    pub exec: Option<ExecAction>,
    pub http_get: Option<HttpGetAction>,
    pub tcp_socket: Option<TcpSocketAction>,
    pub grpc: Option<GrpcAction>,
    pub initial_delay_seconds: Option<i64>,
    pub period_seconds: Option<i64>,
    pub timeout_seconds: Option<i64>,
    pub success_threshold: Option<i64>,
    pub failure_threshold: Option<i64>,
    pub termination_grace_period_seconds: Option<i64>,
}

/// `spec.securityContext`: what holds in a Wasm sandbox is read and
/// checked (see `convert`); the rest is not supported.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct PodSecurityContext {
    pub run_as_non_root: Option<bool>,
    pub seccomp_profile: Option<SeccompProfile>,
    pub run_as_user: Unsupported,
    pub run_as_group: Unsupported,
    pub fs_group: Unsupported,
    pub fs_group_change_policy: Unsupported,
    pub supplemental_groups: Unsupported,
    pub supplemental_groups_policy: Unsupported,
    pub sysctls: Unsupported,
    #[serde(rename = "seLinuxOptions")]
    pub se_linux_options: Unsupported,
    #[serde(rename = "seLinuxChangePolicy")]
    pub se_linux_change_policy: Unsupported,
    pub windows_options: Unsupported,
    pub app_armor_profile: Unsupported,
}

/// `containers[].securityContext`, as [`PodSecurityContext`].
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct SecurityContext {
    pub run_as_non_root: Option<bool>,
    pub allow_privilege_escalation: Option<bool>,
    pub read_only_root_filesystem: Option<bool>,
    pub privileged: Option<bool>,
    pub capabilities: Option<Capabilities>,
    pub seccomp_profile: Option<SeccompProfile>,
    pub run_as_user: Unsupported,
    pub run_as_group: Unsupported,
    pub proc_mount: Unsupported,
    #[serde(rename = "seLinuxOptions")]
    pub se_linux_options: Unsupported,
    pub windows_options: Unsupported,
    pub app_armor_profile: Unsupported,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct Capabilities {
    pub add: Option<Vec<String>>,
    pub drop: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct SeccompProfile {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub localhost_profile: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct GrpcAction {
    pub port: Option<i64>,
    pub service: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct Lifecycle {
    pub post_start: Option<LifecycleHandler>,
    pub pre_stop: Option<LifecycleHandler>,
    pub stop_signal: Unsupported,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct LifecycleHandler {
    pub exec: Option<ExecAction>,
    pub http_get: Option<HttpGetAction>,
    pub sleep: Option<SleepAction>,
    pub tcp_socket: Unsupported,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct SleepAction {
    pub seconds: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct ExecAction {
    pub command: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct HttpGetAction {
    pub path: Option<String>,
    pub port: Option<IntOrString>,
    pub host: Option<String>,
    pub scheme: Option<String>,
    pub http_headers: Option<Vec<HttpHeader>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct HttpHeader {
    pub name: Option<String>,
    pub value: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct TcpSocketAction {
    pub port: Option<IntOrString>,
    pub host: Option<String>,
}

/// Kubernetes' `IntOrString`: a port by number or by name.
#[derive(Deserialize)]
#[serde(untagged)]
pub(crate) enum IntOrString {
    Int(i64),
    String(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct EnvVar {
    pub name: Option<String>,
    pub value: Option<String>,
    pub value_from: Option<EnvVarSource>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct EnvVarSource {
    pub config_map_key_ref: Option<KeySelector>,
    pub secret_key_ref: Option<KeySelector>,
    pub field_ref: Option<FieldRef>,
    pub resource_field_ref: Option<ResourceFieldRef>,
    pub file_key_ref: Unsupported,
}

/// `resourceFieldRef`: a container's limit or request, as a number of
/// `divisor`s.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct ResourceFieldRef {
    pub container_name: Option<String>,
    pub resource: Option<String>,
    pub divisor: Option<Quantity>,
}

/// A `downwardAPI` volume (or a projected volume's `downwardAPI` source,
/// which has no `defaultMode`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct DownwardApiVolume {
    pub items: Option<Vec<DownwardApiFile>>,
    pub default_mode: Option<FileMode>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct DownwardApiFile {
    pub path: Option<String>,
    pub field_ref: Option<FieldRef>,
    pub resource_field_ref: Option<ResourceFieldRef>,
    pub mode: Option<FileMode>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct ProjectedVolume {
    pub sources: Option<Vec<ProjectedSource>>,
    pub default_mode: Option<FileMode>,
}

/// One source of a `projected` volume. Its `secret` names the Secret with
/// `name` (not `secretName`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct ProjectedSource {
    pub config_map: Option<ObjectVolume>,
    pub secret: Option<ObjectVolume>,
    #[serde(rename = "downwardAPI")]
    pub downward_api: Option<DownwardApiVolume>,
    pub service_account_token: Unsupported,
    pub cluster_trust_bundle: Unsupported,
    pub pod_certificate: Unsupported,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct KeySelector {
    pub name: Option<String>,
    pub key: Option<String>,
    pub optional: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct FieldRef {
    pub field_path: Option<String>,
    pub api_version: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct EnvFromSource {
    pub config_map_ref: Option<ObjectRef>,
    pub secret_ref: Option<ObjectRef>,
    pub prefix: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct ObjectRef {
    pub name: Option<String>,
    pub optional: Option<bool>,
}

/// A `configMap` or `secret` volume (`secretName` for a secret).
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct ObjectVolume {
    pub name: Option<String>,
    pub secret_name: Option<String>,
    pub items: Option<Vec<KeyToPath>>,
    pub default_mode: Option<FileMode>,
    pub optional: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct KeyToPath {
    pub key: Option<String>,
    pub path: Option<String>,
    pub mode: Option<FileMode>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct VolumeMount {
    pub name: Option<String>,
    pub mount_path: Option<String>,
    pub read_only: Option<bool>,
    pub sub_path: Option<String>,
    pub sub_path_expr: Unsupported,
    pub mount_propagation: Unsupported,
    pub recursive_read_only: Unsupported,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct ContainerPort {
    pub container_port: Option<i64>,
    pub host_port: Option<i64>,
    #[serde(rename = "hostIP")]
    pub host_ip: Option<String>,
    pub protocol: Option<String>,
    pub name: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct Resources {
    pub limits: Option<BTreeMap<String, Quantity>>,
    pub requests: Option<BTreeMap<String, Quantity>>,
    pub claims: Unsupported,
}

/// `spec.hostAliases[]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct HostAlias {
    pub ip: Option<String>,
    pub hostnames: Option<Vec<String>>,
}

/// A file mode as people write it: a number (`420`, YAML 1.2's `0o644`),
/// or YAML 1.1's octal `0644`, which a YAML 1.2 reader takes for a string.
#[derive(Deserialize, Clone)]
#[serde(untagged)]
pub(crate) enum FileMode {
    Number(i64),
    Text(String),
}

/// Kubernetes quantities are written both as strings (`"64Mi"`) and as bare
/// numbers (`1`, `0.5`); both mean the same.
#[derive(Deserialize)]
#[serde(untagged)]
pub(crate) enum Quantity {
    Text(String),
    Integer(i64),
    Float(f64),
}

impl Quantity {
    pub fn text(&self) -> String {
        match self {
            Quantity::Text(text) => text.clone(),
            Quantity::Integer(number) => number.to_string(),
            Quantity::Float(number) => number.to_string(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct Volume {
    pub name: Option<String>,
    pub empty_dir: Option<EmptyDir>,
    pub host_path: Option<HostPath>,
    pub config_map: Option<ObjectVolume>,
    pub secret: Option<ObjectVolume>,
    pub projected: Option<ProjectedVolume>,
    #[serde(rename = "downwardAPI")]
    pub downward_api: Option<DownwardApiVolume>,
    // Volume sources wpod does not provide yet, by their Kubernetes names.
    pub persistent_volume_claim: Unsupported,
    pub ephemeral: Unsupported,
    pub csi: Unsupported,
    pub image: Unsupported,
    pub nfs: Unsupported,
    pub iscsi: Unsupported,
    pub git_repo: Unsupported,
    pub aws_elastic_block_store: Unsupported,
    pub gce_persistent_disk: Unsupported,
    pub azure_disk: Unsupported,
    pub azure_file: Unsupported,
    pub cephfs: Unsupported,
    pub cinder: Unsupported,
    pub fc: Unsupported,
    pub flex_volume: Unsupported,
    pub flocker: Unsupported,
    pub glusterfs: Unsupported,
    pub photon_persistent_disk: Unsupported,
    pub portworx_volume: Unsupported,
    pub quobyte: Unsupported,
    pub rbd: Unsupported,
    #[serde(rename = "scaleIO")]
    pub scale_io: Unsupported,
    pub storageos: Unsupported,
    pub vsphere_volume: Unsupported,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct EmptyDir {
    pub medium: Option<String>,
    pub size_limit: Option<Quantity>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct HostPath {
    pub path: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
}
