//! Checks a [`PodSpec`] as the API server would: names, references between
//! fields, paths. Shared by manifests and pods built in code.

use super::quantity::{show_bytes, show_millis};
use super::{ContainerSpec, PodSpec, Protocol, annotations};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// One thing wrong with a pod: where, what, and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The field path, as `kubectl explain` spells it
    /// (`spec.initContainers[0].volumeMounts[1].name`).
    pub path: String,
    pub message: String,
    /// What to do about it.
    pub hint: String,
}

impl Problem {
    pub(crate) fn new(
        path: impl Into<String>,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) -> Problem {
        Problem {
            path: path.into(),
            message: message.into(),
            hint: hint.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        write!(f, "{}", self.message)?;
        if !self.hint.is_empty() {
            write!(f, "; {}", self.hint)?;
        }
        Ok(())
    }
}

pub(crate) fn pod(pod: &PodSpec) -> Vec<Problem> {
    let mut problems = Vec::new();
    if let Some(message) = dns1123_subdomain(&pod.name) {
        problems.push(Problem::new(
            "metadata.name",
            message,
            "use lowercase letters, digits, '-' and '.', e.g. `my-pod`",
        ));
    }
    // A hostname taken from the name is checked with the name.
    if let Some(message) = dns1123_label(&pod.hostname).filter(|_| pod.hostname != pod.name) {
        problems.push(Problem::new(
            "spec.hostname",
            message,
            "use lowercase letters, digits and '-'",
        ));
    }
    if pod.containers.is_empty() {
        problems.push(Problem::new(
            "spec.containers",
            "a pod needs at least one container",
            "add a container with a `name` and an `image`",
        ));
    }
    problems.extend(annotations::parse(&pod.annotations).1);

    let mut volume_names = BTreeSet::new();
    for (i, volume) in pod.volumes.iter().enumerate() {
        let path = format!("spec.volumes[{i}].name");
        if let Some(message) = dns1123_label(&volume.name) {
            problems.push(Problem::new(
                &path,
                message,
                "use lowercase letters, digits and '-'",
            ));
        }
        if !volume_names.insert(volume.name.as_str()) {
            problems.push(Problem::new(
                &path,
                format!("duplicate volume name `{}`", volume.name),
                "give each volume its own name",
            ));
        }
    }

    let mut container_names: BTreeMap<&str, String> = BTreeMap::new();
    let mut host_ports: BTreeMap<(u16, Protocol), String> = BTreeMap::new();
    let groups = [
        ("spec.initContainers", &pod.init_containers),
        ("spec.containers", &pod.containers),
    ];
    for (group, containers) in groups {
        for (i, container) in containers.iter().enumerate() {
            let path = format!("{group}[{i}]");
            if let Some(first) = container_names.get(container.name.as_str()) {
                problems.push(Problem::new(
                    format!("{path}.name"),
                    format!(
                        "duplicate container name `{}` (also {first}.name)",
                        container.name
                    ),
                    "container names must be unique across initContainers and containers",
                ));
            } else {
                container_names.insert(&container.name, path.clone());
            }
            self::container(container, &path, &volume_names, &mut problems);
            for (p, port) in container.ports.iter().enumerate() {
                let Some(host_port) = port.host_port else {
                    continue;
                };
                if port.protocol == Protocol::Udp {
                    problems.push(Problem::new(
                        format!("{path}.ports[{p}].hostPort"),
                        "publishing a UDP port is not supported yet",
                        "drop hostPort (containers of the pod still reach the port over localhost), or use TCP",
                    ));
                }
                let port_path = format!("{path}.ports[{p}].hostPort");
                if pod.host_network && host_port != port.container_port {
                    problems.push(Problem::new(
                        &port_path,
                        "with hostNetwork, hostPort must equal containerPort",
                        "drop hostPort or make it equal",
                    ));
                }
                if let Some(first) =
                    host_ports.insert((host_port, port.protocol), port_path.clone())
                {
                    problems.push(Problem::new(
                        &port_path,
                        format!("host port {host_port} is also published by {first}"),
                        "publish each host port once",
                    ));
                }
            }
        }
    }
    problems
}

fn container(
    container: &ContainerSpec,
    path: &str,
    volumes: &BTreeSet<&str>,
    problems: &mut Vec<Problem>,
) {
    if let Some(message) = dns1123_label(&container.name) {
        problems.push(Problem::new(
            format!("{path}.name"),
            message,
            "use lowercase letters, digits and '-', e.g. `web`",
        ));
    }
    if container.image.trim().is_empty() {
        problems.push(Problem::new(
            format!("{path}.image"),
            "must not be empty",
            "give the path of a .wasm file or an image reference",
        ));
    }
    if let Some(dir) = &container.working_dir
        && !dir.starts_with('/')
    {
        problems.push(Problem::new(
            format!("{path}.workingDir"),
            format!("`{dir}` is not an absolute path"),
            "start it with /",
        ));
    }
    for (i, var) in container.env.iter().enumerate() {
        if var.name.is_empty() || var.name.contains('=') || var.name.contains('\0') {
            problems.push(Problem::new(
                format!("{path}.env[{i}].name"),
                format!("`{}` is not a valid variable name", var.name),
                "use letters, digits, '_', '-' and '.'",
            ));
        }
    }
    let mut mount_paths: BTreeMap<String, usize> = BTreeMap::new();
    for (i, mount) in container.volume_mounts.iter().enumerate() {
        let mount_path_field = format!("{path}.volumeMounts[{i}]");
        if !volumes.contains(mount.name.as_str()) {
            let hint = match volumes.len() {
                0 => "declare it under spec.volumes".to_owned(),
                _ => format!(
                    "declare it under spec.volumes or use one of: {}",
                    volumes.iter().copied().collect::<Vec<_>>().join(", ")
                ),
            };
            problems.push(Problem::new(
                format!("{mount_path_field}.name"),
                format!("volume `{}` is not declared", mount.name),
                hint,
            ));
        }
        // `/` is wpod's extension (Kubernetes refuses it): the container's
        // root, as `wasmtime run --dir DIR::/` gives it.
        let normalized = match mount.mount_path.trim_end_matches('/') {
            "" => "/",
            path => path,
        };
        if !mount.mount_path.starts_with('/') {
            problems.push(Problem::new(
                format!("{mount_path_field}.mountPath"),
                format!("`{}` is not an absolute path", mount.mount_path),
                "start it with /",
            ));
        } else if mount.mount_path.split('/').any(|part| part == "..") {
            problems.push(Problem::new(
                format!("{mount_path_field}.mountPath"),
                "must not contain `..`",
                "write the path without `..`",
            ));
        } else if let Some(first) = mount_paths.insert(normalized.to_owned(), i) {
            problems.push(Problem::new(
                format!("{mount_path_field}.mountPath"),
                format!(
                    "`{}` is already mounted by volumeMounts[{first}]",
                    mount.mount_path
                ),
                "mount each path once",
            ));
        }
        if let Some(sub_path) = &mount.sub_path
            && (sub_path.starts_with('/') || sub_path.split('/').any(|part| part == ".."))
        {
            problems.push(Problem::new(
                format!("{mount_path_field}.subPath"),
                format!("`{sub_path}` must be a relative path without `..`"),
                "name a path inside the volume, e.g. `logs/app`",
            ));
        }
    }
    let resources = &container.resources;
    if resources.memory_limit == Some(0) {
        problems.push(Problem::new(
            format!("{path}.resources.limits.memory"),
            "must be more than 0",
            "write e.g. `64Mi`",
        ));
    }
    if let (Some(request), Some(limit)) = (resources.memory_request, resources.memory_limit)
        && request > limit
    {
        problems.push(Problem::new(
            format!("{path}.resources.requests.memory"),
            format!(
                "`{}` must be less than or equal to the memory limit of {}",
                show_bytes(request),
                show_bytes(limit)
            ),
            "lower the request or raise the limit",
        ));
    }
    if let (Some(request), Some(limit)) = (resources.cpu_request_millis, resources.cpu_limit_millis)
        && request > limit
    {
        problems.push(Problem::new(
            format!("{path}.resources.requests.cpu"),
            format!(
                "`{}` must be less than or equal to the cpu limit of {}",
                show_millis(request),
                show_millis(limit)
            ),
            "lower the request or raise the limit",
        ));
    }
}

/// `None` when `name` is a DNS-1123 label (container, volume names).
fn dns1123_label(name: &str) -> Option<String> {
    if name.len() > 63 {
        return Some(format!("`{name}` is longer than 63 characters"));
    }
    dns1123_subdomain(name).or_else(|| {
        name.contains('.')
            .then(|| format!("`{name}` must not contain '.'"))
    })
}

/// `None` when `name` is a DNS-1123 subdomain (pod names).
fn dns1123_subdomain(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("must not be empty".into());
    }
    if name.len() > 253 {
        return Some(format!("`{name}` is longer than 253 characters"));
    }
    let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.';
    let alphanumeric =
        |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if !name.chars().all(allowed)
        || !alphanumeric(name.chars().next())
        || !alphanumeric(name.chars().last())
    {
        return Some(format!("`{name}` is not a valid DNS-1123 name"));
    }
    None
}

#[cfg(test)]
mod tests {
    use crate::manifest::{ContainerSpec, HostPathType, PodSpec};

    fn mount_problems(paths: &[&str]) -> Vec<String> {
        let mut container = ContainerSpec::new("app", "app.wasm");
        for path in paths {
            container = container.mount("v", *path, false);
        }
        let pod = PodSpec::builder("p")
            .host_path("v", "/tmp", HostPathType::Directory)
            .container(container);
        match pod.build() {
            Ok(_) => Vec::new(),
            Err(crate::ManifestError::Invalid { problems, .. }) => {
                problems.iter().map(ToString::to_string).collect()
            }
            Err(other) => panic!("{other}"),
        }
    }

    #[test]
    fn a_volume_may_be_mounted_at_root() {
        assert_eq!(mount_problems(&["/"]), Vec::<String>::new());
        assert_eq!(mount_problems(&["/", "/data"]), Vec::<String>::new());
        assert_eq!(
            mount_problems(&["/", "//"]),
            [
                "spec.containers[0].volumeMounts[1].mountPath: `//` is already mounted by volumeMounts[0]; mount each path once"
            ]
        );
        assert_eq!(
            mount_problems(&["/.."]),
            [
                "spec.containers[0].volumeMounts[0].mountPath: must not contain `..`; write the path without `..`"
            ]
        );
        assert_eq!(
            mount_problems(&["data"]),
            [
                "spec.containers[0].volumeMounts[0].mountPath: `data` is not an absolute path; start it with /"
            ]
        );
    }
}
