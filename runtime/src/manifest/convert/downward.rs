//! The downward API: what a pod's containers may read of the pod and of
//! their own resources, as variables (`fieldRef`, `resourceFieldRef`) and
//! as files (`downwardAPI` volumes, and a `projected` volume's sources).
//!
//! In wpod's network model the pod's address is its own localhost, so
//! `status.podIP` (and `hostIP`) is 127.0.0.1; the node is this host. A
//! limit a container does not set is what it can have: for `limits.cpu`,
//! this host's CPUs; for `limits.memory`, the pod's default ceiling (half of
//! the host's memory), as the kubelet gives the node's allocatable.

use super::{Converter, raw};
use crate::manifest::{Resources, VolumeFile, VolumeSource, quantity};

/// Where a downward API field is read: a variable may name more fields
/// than a file may.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Reader {
    Variable,
    File,
}

impl Converter<'_> {
    /// `fieldRef`: the field's value, or a problem naming it.
    pub(super) fn field_ref(
        &mut self,
        field: raw::FieldRef,
        path: &str,
        reader: Reader,
    ) -> Option<String> {
        let at = format!("{path}.fieldPath");
        let wanted = self.required(field.field_path, &at, "e.g. metadata.name")?;
        if let Some(version) = field.api_version.filter(|v| v != "v1") {
            self.problem(
                format!("{path}.apiVersion"),
                format!("`{version}` is not the API version of a Pod's fields"),
                "write `apiVersion: v1`, or leave it out",
            );
        }
        let quoted = |prefix: &str| {
            wanted
                .strip_prefix(prefix)
                .and_then(|rest| rest.strip_prefix("['").or_else(|| rest.strip_prefix("[\"")))
                .and_then(|rest| rest.strip_suffix("']").or_else(|| rest.strip_suffix("\"]")))
                .map(str::to_owned)
        };
        let pod = &self.pod;
        let value = match (wanted.as_str(), reader) {
            ("metadata.name", _) => Some(pod.name.clone()),
            ("metadata.namespace", _) => Some(pod.namespace.clone()),
            ("metadata.uid", _) => Some(pod.uid.clone()),
            ("metadata.labels", Reader::File) => Some(format_map(&pod.labels)),
            ("metadata.annotations", Reader::File) => Some(format_map(&pod.annotations)),
            ("spec.nodeName", Reader::Variable) => {
                Some(super::node_name().unwrap_or_else(|| "localhost".into()))
            }
            ("spec.serviceAccountName", Reader::Variable) => Some("default".into()),
            (
                "status.podIP" | "status.hostIP" | "status.podIPs" | "status.hostIPs",
                Reader::Variable,
            ) => Some("127.0.0.1".into()),
            _ => quoted("metadata.labels")
                .map(|label| pod.labels.get(&label).cloned().unwrap_or_default())
                .or_else(|| {
                    quoted("metadata.annotations")
                        .map(|key| pod.annotations.get(&key).cloned().unwrap_or_default())
                }),
        };
        if value.is_none() {
            let hint = match reader {
                Reader::Variable => {
                    "use metadata.name, metadata.namespace, metadata.uid, metadata.labels['KEY'], metadata.annotations['KEY'], spec.nodeName, spec.serviceAccountName, status.podIP or status.hostIP"
                }
                Reader::File => {
                    "a file may hold metadata.name, metadata.namespace, metadata.uid, metadata.labels, metadata.annotations, metadata.labels['KEY'] or metadata.annotations['KEY'] (the node's and status fields only as variables)"
                }
            };
            self.problem(
                at,
                format!("`{wanted}` is not a field the downward API gives here"),
                hint,
            );
        }
        value
    }

    /// `resourceFieldRef`: a container's limit or request in `divisor`s,
    /// rounded up. A variable's container is its own unless it names one; a
    /// file's must name one.
    pub(super) fn resource_field_ref(
        &mut self,
        reference: raw::ResourceFieldRef,
        path: &str,
        own: Option<&str>,
    ) -> Option<String> {
        let resource = self.required(
            reference.resource,
            &format!("{path}.resource"),
            "e.g. limits.memory or requests.cpu",
        )?;
        let container = match (reference.container_name.filter(|n| !n.is_empty()), own) {
            (Some(name), _) => name,
            (None, Some(own)) => own.to_owned(),
            (None, None) => {
                self.problem(
                    format!("{path}.containerName"),
                    "required field is missing",
                    "name the container whose resources the file tells",
                );
                return None;
            }
        };
        let Some(resources) = self.pod.resources.get(&container).copied() else {
            self.problem(
                format!("{path}.containerName"),
                format!("`{container}` is not a container of this pod"),
                "name one of spec.containers or spec.initContainers",
            );
            return None;
        };
        let divisor_at = format!("{path}.divisor");
        let divisor = reference.divisor.map(|d| d.text());
        match resource.as_str() {
            "limits.cpu" | "requests.cpu" => {
                // Millicores; a limit not set is this host's CPUs.
                let host = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
                let value = cpu(&resources, &resource, host * 1000);
                let divisor = match divisor.as_deref() {
                    None | Some("1") => 1000,
                    Some("1m") => 1,
                    Some(other) => {
                        self.problem(
                            divisor_at,
                            format!("`{other}` is not a divisor for CPU"),
                            "give 1 (cores) or 1m (millicores)",
                        );
                        return None;
                    }
                };
                Some(value.div_ceil(divisor).to_string())
            }
            "limits.memory" | "requests.memory" => {
                let host = crate::container::host_memory_share().unwrap_or(u64::MAX);
                let value = memory(&resources, &resource, host);
                const DIVISORS: [&str; 13] = [
                    "1", "1k", "1M", "1G", "1T", "1P", "1E", "1Ki", "1Mi", "1Gi", "1Ti", "1Pi",
                    "1Ei",
                ];
                let divisor = match divisor.as_deref() {
                    None => 1,
                    Some(text) if DIVISORS.contains(&text) => {
                        quantity::parse_bytes(text).unwrap_or(1).max(1)
                    }
                    Some(other) => {
                        self.problem(
                            divisor_at,
                            format!("`{other}` is not a divisor for memory"),
                            "give 1, 1k, 1M, 1G, 1T, 1P, 1E, 1Ki, 1Mi, 1Gi, 1Ti, 1Pi or 1Ei",
                        );
                        return None;
                    }
                };
                Some(value.div_ceil(divisor).to_string())
            }
            "limits.ephemeral-storage" | "requests.ephemeral-storage" => {
                self.problem(
                    format!("{path}.resource"),
                    "wpod does not account ephemeral storage",
                    "ask for limits.memory, limits.cpu, requests.memory or requests.cpu",
                );
                None
            }
            other => {
                self.problem(
                    format!("{path}.resource"),
                    format!("`{other}` is not a resource the downward API gives"),
                    "use limits.memory, limits.cpu, requests.memory or requests.cpu",
                );
                None
            }
        }
    }

    /// The files of a `downwardAPI` volume or projection.
    pub(super) fn downward_files(
        &mut self,
        items: Vec<raw::DownwardApiFile>,
        default_mode: u32,
        path: &str,
    ) -> Vec<VolumeFile> {
        let mut files = Vec::new();
        for (i, item) in items.into_iter().enumerate() {
            let at = format!("{path}.items[{i}]");
            let Some(file) = self.required(item.path, &format!("{at}.path"), "e.g. labels") else {
                continue;
            };
            if !self.inside_volume(&file, &format!("{at}.path")) {
                continue;
            }
            let mode = self
                .file_mode(item.mode, &format!("{at}.mode"))
                .unwrap_or(default_mode);
            let content = match (item.field_ref, item.resource_field_ref) {
                (Some(field), None) => {
                    self.field_ref(field, &format!("{at}.fieldRef"), Reader::File)
                }
                (None, Some(reference)) => {
                    self.resource_field_ref(reference, &format!("{at}.resourceFieldRef"), None)
                }
                _ => {
                    self.problem(
                        at,
                        "give exactly one of fieldRef and resourceFieldRef",
                        "one source per file",
                    );
                    None
                }
            };
            if let Some(content) = content {
                files.push(VolumeFile {
                    path: file,
                    content: content.into_bytes(),
                    mode,
                });
            }
        }
        files
    }

    /// A `projected` volume: the files of its ConfigMap, Secret and
    /// downward API sources in one folder (`defaultMode` for all).
    pub(super) fn projected(
        &mut self,
        volume: raw::ProjectedVolume,
        path: &str,
    ) -> Option<VolumeSource> {
        let default_mode = self.file_mode(volume.default_mode, &format!("{path}.defaultMode"));
        let mut files: Vec<VolumeFile> = Vec::new();
        let mut missing = None;
        for (i, source) in volume.sources.unwrap_or_default().into_iter().enumerate() {
            let at = format!("{path}.sources[{i}]");
            let found = match (source.config_map, source.secret, source.downward_api) {
                (Some(mut map), None, None) => {
                    map.default_mode = default_mode.map(|m| raw::FileMode::Number(m.into()));
                    self.object_volume("ConfigMap", map, &format!("{at}.configMap"))
                }
                (None, Some(mut secret), None) => {
                    // A projected Secret is named with `name`.
                    secret.secret_name = secret.name.take();
                    secret.default_mode = default_mode.map(|m| raw::FileMode::Number(m.into()));
                    self.object_volume("Secret", secret, &format!("{at}.secret"))
                }
                (None, None, Some(downward)) => {
                    if downward.default_mode.is_some() {
                        self.problem(
                            format!("{at}.downwardAPI.defaultMode"),
                            "a projection has no mode of its own",
                            "give the projected volume's defaultMode, or each item's mode",
                        );
                    }
                    Some(VolumeSource::Files {
                        files: self.downward_files(
                            downward.items.unwrap_or_default(),
                            default_mode.unwrap_or(0o644),
                            &format!("{at}.downwardAPI"),
                        ),
                        missing: None,
                    })
                }
                _ => {
                    self.problem(
                        &at,
                        "give exactly one of configMap, secret and downwardAPI",
                        "one source per entry",
                    );
                    None
                }
            };
            if let Some(VolumeSource::Files {
                files: more,
                missing: lacking,
            }) = found
            {
                for file in more {
                    if files.iter().any(|f| f.path == file.path) {
                        self.problem(
                            &at,
                            format!("`{}` is given by an earlier source too", file.path),
                            "give each file one source (items pick and rename keys)",
                        );
                    } else {
                        files.push(file);
                    }
                }
                if missing.is_none() {
                    missing = lacking;
                }
            }
        }
        Some(VolumeSource::Files { files, missing })
    }

    /// Whether `file` (an item's path) stays inside its volume; a problem at
    /// `at` if not.
    pub(super) fn inside_volume(&mut self, file: &str, at: &str) -> bool {
        let inside =
            !file.starts_with('/') && !file.split('/').any(|part| part == ".." || part.is_empty());
        if !inside {
            self.problem(
                at,
                format!("`{file}` must stay inside the volume"),
                "give a relative path without `..`",
            );
        }
        inside
    }
}

/// Millicores of `resource` (`limits.cpu` or `requests.cpu`): a request
/// not set is the limit (as the API server defaults it), else none; a limit
/// not set is `host`.
fn cpu(resources: &Resources, resource: &str, host: u64) -> u64 {
    match resource {
        "limits.cpu" => resources.cpu_limit_millis.unwrap_or(host),
        _ => resources
            .cpu_request_millis
            .or(resources.cpu_limit_millis)
            .unwrap_or(0),
    }
}

/// Bytes of `resource`, as [`cpu`].
fn memory(resources: &Resources, resource: &str, host: u64) -> u64 {
    match resource {
        "limits.memory" => resources.memory_limit.unwrap_or(host),
        _ => resources
            .memory_request
            .or(resources.memory_limit)
            .unwrap_or(0),
    }
}

/// Labels or annotations as a file, as the kubelet writes them: one
/// `key="value"` line each (the value quoted), sorted by key.
fn format_map(map: &std::collections::BTreeMap<String, String>) -> String {
    map.iter()
        .map(|(key, value)| format!("{key}={value:?}"))
        .collect::<Vec<_>>()
        .join("\n")
}
