//! An OCI bundle (`config.json` and `rootfs/`, as containerd lays it out for a
//! task) read into what the shim runs: the pod sandbox, or a container as a
//! one-container wpod pod ([`wpod::pod_host::HostedContainer`]) whose image is
//! the container's folder in the pod folder (see [`crate::pod`]), which holds
//! the bundle's `rootfs/` and the `image.json` made here.
//!
//! No IO here beyond reading `config.json` and looking into `rootfs/` for the
//! program: the shim mounts the rootfs, fills the pod folder and writes
//! `image.json`.

use oci_spec::runtime::{LinuxNamespaceType, Spec};
use std::path::{Path, PathBuf};
use wpod::pod_host::{HostedContainer, HostedMount, HostedPort};

/// The CRI annotation naming the pod sandbox a container belongs to.
pub const SANDBOX_ID_ANNOTATION: &str = "io.kubernetes.cri.sandbox-id";
/// The CRI annotation saying whether a task is the sandbox or a container.
pub const CONTAINER_TYPE_ANNOTATION: &str = "io.kubernetes.cri.container-type";
/// The CRI annotation with the container's name in its pod.
pub const CONTAINER_NAME_ANNOTATION: &str = "io.kubernetes.cri.container-name";
/// The kubelet's annotation with the container's `ports` (JSON), which the
/// CRI plugin passes into the spec when the runtime's
/// `container_annotations` lists it. An HTTP component is served on one.
pub const PORTS_ANNOTATION: &str = "io.kubernetes.container.ports";

/// What a bundle asks the shim to run.
#[derive(Debug, Clone)]
pub struct Bundle {
    /// The bundle's folder (containerd's `<state>/io.containerd.runtime.v2.task/<ns>/<id>`).
    pub path: PathBuf,
    /// The sandbox this task belongs to (its own id for a sandbox, or for a
    /// task outside any pod, as `ctr run` makes).
    pub sandbox_id: String,
    /// The pod's hostname (the spec's `hostname`), if it names one.
    pub hostname: Option<String>,
    /// The pod's cgroup (`linux.cgroupsPath`), if the spec names one.
    pub cgroups_path: Option<String>,
    /// The network namespace the sandbox's containers share, when the
    /// runtime made one for the pod (a CNI network); `None` for
    /// `hostNetwork` pods and for tasks without a path to join.
    pub netns: Option<PathBuf>,
    pub kind: TaskKind,
}

/// The sandbox, or a Wasm container.
#[derive(Debug, Clone)]
pub enum TaskKind {
    /// The pod's sandbox ("pause") container: it runs nothing and lives
    /// until it is killed; its image is never read.
    Sandbox,
    Container(Box<ContainerTask>),
}

/// A container: the pod wpod runs for it, as the walled host sees it, and
/// the image config the shim writes beside its `rootfs/` (`image.json`) so
/// that wpod finds the program there as it does in any image folder.
#[derive(Debug, Clone)]
pub struct ContainerTask {
    pub container: HostedContainer,
    /// The container's folder in the pod folder.
    pub dir: crate::pod::ContainerDir,
    /// `image.json`'s content: the process's args, env and cwd as an OCI
    /// image config (`Entrypoint`, `Env`, `WorkingDir`).
    pub image_json: serde_json::Value,
    /// The volumes to bind into the container's folder: (index, the
    /// kubelet's folder, read-only).
    pub volumes: Vec<(usize, PathBuf, bool)>,
    /// The bind mounts that were not given to the container, with why
    /// (files such as `/etc/hosts`: WASI preopens folders only).
    pub skipped_mounts: Vec<String>,
}

/// Why a bundle cannot run. Each names the bundle and what to change.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("{path}: cannot read the OCI runtime spec: {message}")]
    Spec { path: PathBuf, message: String },
    #[error("{bundle}: `process` is missing from config.json; the container has nothing to run")]
    NoProcess { bundle: PathBuf },
    #[error(
        "{bundle}: `process.terminal` is true; wpod containers have no terminal (drop `-t`/`tty: true`)"
    )]
    Terminal { bundle: PathBuf },
    #[error(
        "{bundle}: no program to run: `process.args` is empty and rootfs holds {found} `.wasm` files; set the image's entrypoint to the `.wasm` file"
    )]
    NoProgram { bundle: PathBuf, found: usize },
    #[error(
        "{bundle}: the bundle's folder cannot serve as a wpod image folder (`<root>/<namespace>/<id>`); use containerd's own bundle layout"
    )]
    Layout { bundle: PathBuf },
    #[error(
        "{bundle}: annotation `{PORTS_ANNOTATION}` is not the kubelet's list of ports: {message}"
    )]
    Ports { bundle: PathBuf, message: String },
    #[error("{bundle}: the container does not make a valid wpod pod: {message}")]
    Pod { bundle: PathBuf, message: String },
}

impl Bundle {
    /// Reads `path/config.json`; a container's folder goes in `pod_folder`.
    ///
    /// # Errors
    ///
    /// [`BundleError`] when the spec cannot be read, or asks for what a
    /// Wasm container cannot have (a terminal, no program).
    pub fn read(path: &Path, id: &str, pod_folder: &Path) -> Result<Bundle, BundleError> {
        let spec = load(path)?;
        let annotations = spec.annotations().clone().unwrap_or_default();
        let kind = if annotations
            .get(CONTAINER_TYPE_ANNOTATION)
            .is_some_and(|kind| kind == "sandbox")
        {
            TaskKind::Sandbox
        } else {
            let name = annotations
                .get(CONTAINER_NAME_ANNOTATION)
                .map(String::as_str)
                .unwrap_or("main");
            TaskKind::Container(Box::new(container(path, id, name, &spec, pod_folder)?))
        };
        Ok(Bundle {
            path: path.to_owned(),
            sandbox_id: sandbox_id(&spec, id),
            hostname: spec.hostname().clone().filter(|name| !name.is_empty()),
            cgroups_path: cgroups_path(&spec),
            netns: netns(&spec),
            kind,
        })
    }
}

/// The image reference under which wpod finds the bundle as an image folder:
/// wpod looks `NAME:TAG` up as `<root>/NAME/TAG/`, so the bundle's last two
/// components (`<namespace>/<id>`, both restricted by containerd to
/// `[A-Za-z0-9._-]`) name it, with their parent as the image root.
pub fn image_reference(bundle: &Path) -> Option<(PathBuf, String)> {
    let tag = bundle.file_name()?.to_str()?;
    let parent = bundle.parent()?;
    let name = parent.file_name()?.to_str()?;
    let root = parent.parent()?;
    let plain = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    };
    // A reference ending in `.wasm` would be read as a path.
    (plain(tag) && plain(name) && !tag.ends_with(".wasm"))
        .then(|| (root.to_owned(), format!("{name}:{tag}")))
}

fn container(
    bundle: &Path,
    id: &str,
    name: &str,
    spec: &Spec,
    pod_folder: &Path,
) -> Result<ContainerTask, BundleError> {
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| BundleError::NoProcess {
            bundle: bundle.to_owned(),
        })?;
    if process.terminal().unwrap_or(false) {
        return Err(BundleError::Terminal {
            bundle: bundle.to_owned(),
        });
    }
    let mut args = process.args().clone().unwrap_or_default();
    let rootfs = bundle.join("rootfs");
    // The program is `args[0]`, looked up in the image by wpod as a
    // command is (along `PATH`, `#!` followed); a program the image does not
    // hold is refused then, by name. Two conveniences before that: a spec
    // with no args at all runs the image's only `.wasm`, and a bare
    // `name.wasm` at the image's root (runwasi's images name their module
    // so) is that file.
    match args.first() {
        None => match wasm_files(&rootfs).as_slice() {
            [only] => args.push(only.clone()),
            found => {
                return Err(BundleError::NoProgram {
                    bundle: bundle.to_owned(),
                    found: found.len(),
                });
            }
        },
        Some(program)
            if !program.contains('/')
                && program.ends_with(".wasm")
                && rootfs.join(program).is_file() =>
        {
            args[0] = format!("/{program}");
        }
        Some(_) => {}
    }
    let env = process.env().clone().unwrap_or_default();
    let cwd = process.cwd().display().to_string();
    let image_json = serde_json::json!({
        "config": { "Entrypoint": args, "Env": env, "WorkingDir": cwd }
    });
    // The host finds the image as `<pod folder>/<namespace>/<id>`, named
    // `<namespace>:<id>` as the bundle is.
    let layout = || BundleError::Layout {
        bundle: bundle.to_owned(),
    };
    let namespace = (bundle.parent())
        .and_then(|parent| parent.file_name())
        .and_then(|name| name.to_str())
        .ok_or_else(layout)?;
    let dir = crate::pod::ContainerDir::new(pod_folder, namespace, id);
    let (image_root, reference) = image_reference(&dir.path).ok_or_else(layout)?;
    let ports = match spec
        .annotations()
        .as_ref()
        .and_then(|annotations| annotations.get(PORTS_ANNOTATION))
    {
        Some(ports) => ports_of(ports).map_err(|message| BundleError::Ports {
            bundle: bundle.to_owned(),
            message,
        })?,
        None => Vec::new(),
    };
    let memory_limit = spec
        .linux()
        .as_ref()
        .and_then(|linux| linux.resources().as_ref())
        .and_then(|resources| resources.memory().as_ref())
        .and_then(|memory| memory.limit())
        .filter(|limit| *limit > 0)
        .map(i64::unsigned_abs);
    let mut mounts = Vec::new();
    let mut volumes = Vec::new();
    let mut skipped_mounts = Vec::new();
    for (index, mount) in spec.mounts().iter().flatten().enumerate() {
        let options = mount.options().clone().unwrap_or_default();
        let is_bind = mount.typ().as_deref() == Some("bind")
            || options.iter().any(|o| o == "bind" || o == "rbind");
        let destination = mount.destination().display().to_string();
        if !is_bind || system_path(&destination) {
            continue;
        }
        let Some(source) = mount.source().clone() else {
            continue;
        };
        if !source.is_dir() {
            skipped_mounts.push(format!(
                "{destination} (from {}): not a folder, and WASI preopens folders only",
                source.display()
            ));
            continue;
        }
        let read_only = options.iter().any(|o| o == "ro");
        mounts.push(HostedMount {
            source: dir.mount(index),
            destination,
            read_only,
        });
        volumes.push((index, source, read_only));
    }
    let container = HostedContainer {
        // The containers of a pod meet on the network the shim's process is
        // in: the pod's network namespace, which the shim joined at start
        // (see `netns`) and the walled host keeps, as every container of a
        // runc pod joins it.
        pod_name: dns_label(id, "task"),
        container_name: dns_label(name, "main"),
        image: reference,
        image_root,
        base_dir: dir.path.clone(),
        state_dir: dir.state(),
        mounts,
        memory_limit,
        ports,
    };
    container.pod().map_err(|error| BundleError::Pod {
        bundle: bundle.to_owned(),
        message: error.to_string(),
    })?;
    Ok(ContainerTask {
        container,
        dir,
        image_json,
        volumes,
        skipped_mounts,
    })
}

/// The kubelet's `io.kubernetes.container.ports`: the container's `ports` as
/// JSON (`[{"name":"http","containerPort":8080,"protocol":"TCP"}]`). Only
/// what a container port is matters here: a `hostPort` is the network's
/// (CNI's portmap) to publish, not the shim's.
fn ports_of(json: &str) -> Result<Vec<HostedPort>, String> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Port {
        name: Option<String>,
        container_port: u16,
        protocol: Option<String>,
    }
    let ports: Vec<Port> = serde_json::from_str(json).map_err(|e| e.to_string())?;
    ports
        .into_iter()
        .map(|port| {
            let udp = match port.protocol.as_deref() {
                None | Some("TCP") => false,
                Some("UDP") => true,
                Some(other) => return Err(format!("protocol `{other}` is neither TCP nor UDP")),
            };
            Ok(HostedPort {
                name: port.name,
                container_port: port.container_port,
                udp,
            })
        })
        .collect()
}

/// The mounts an OCI runtime gives every Linux container (`/proc`, `/dev`,
/// `/sys` and below): a Wasm guest has none of them.
fn system_path(destination: &str) -> bool {
    ["/proc", "/dev", "/sys"].iter().any(|root| {
        destination == *root
            || destination
                .strip_prefix(root)
                .is_some_and(|rest| rest.starts_with('/'))
    })
}

/// The `.wasm` files of a rootfs (two levels deep, as images put programs at
/// `/` or in `/bin`), as absolute paths inside it, sorted.
fn wasm_files(rootfs: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut folders = vec![(rootfs.to_owned(), 0)];
    while let Some((folder, depth)) = folders.pop() {
        let Ok(entries) = std::fs::read_dir(&folder) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() && depth < 2 {
                folders.push((path, depth + 1));
            } else if kind.is_file()
                && path.extension().is_some_and(|e| e == "wasm")
                && let Ok(inside) = path.strip_prefix(rootfs)
            {
                found.push(format!("/{}", inside.display()));
            }
        }
    }
    found.sort();
    found
}

/// `text` as a DNS-1123 label (what wpod requires of pod and container
/// names): lowercase alphanumerics and `-`, at most 63 characters; `fallback`
/// when nothing is left.
fn dns_label(text: &str, fallback: &str) -> String {
    let mut label: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .take(63)
        .collect();
    while label.ends_with('-') {
        label.pop();
    }
    let label = label.trim_start_matches('-').to_owned();
    if label.is_empty() {
        fallback.to_owned()
    } else {
        label
    }
}

/// What the shim's `start` needs of a bundle: the sandbox to group the task
/// with and the network namespace to join. Only the spec is read: whatever
/// else is wrong is refused at create, where containerd shows the message.
///
/// # Errors
///
/// [`BundleError::Spec`] when `config.json` cannot be read.
pub fn peek(path: &Path, id: &str) -> Result<(String, Option<PathBuf>), BundleError> {
    let spec = load(path)?;
    Ok((sandbox_id(&spec, id), netns(&spec)))
}

/// The bundle's `linux.cgroupsPath`, if its spec can be read and names one.
pub fn peek_cgroups_path(path: &Path) -> Option<String> {
    load(path).ok().as_ref().and_then(cgroups_path)
}

/// Whether the bundle is a pod's sandbox (read before its rootfs is
/// mounted: a sandbox needs none). A spec that cannot be read is not one.
pub fn peek_is_sandbox(path: &Path) -> bool {
    load(path).is_ok_and(|spec| {
        spec.annotations()
            .as_ref()
            .and_then(|annotations| annotations.get(CONTAINER_TYPE_ANNOTATION))
            .is_some_and(|kind| kind == "sandbox")
    })
}

fn load(bundle: &Path) -> Result<Spec, BundleError> {
    let config = bundle.join("config.json");
    Spec::load(&config).map_err(|error| BundleError::Spec {
        path: config.clone(),
        message: error.to_string(),
    })
}

fn sandbox_id(spec: &Spec, id: &str) -> String {
    spec.annotations()
        .as_ref()
        .and_then(|annotations| annotations.get(SANDBOX_ID_ANNOTATION))
        .cloned()
        .unwrap_or_else(|| id.to_owned())
}

fn cgroups_path(spec: &Spec) -> Option<String> {
    spec.linux()
        .as_ref()
        .and_then(|linux| linux.cgroups_path().as_ref())
        .map(|path| path.display().to_string())
        .filter(|path| !path.is_empty())
}

fn netns(spec: &Spec) -> Option<PathBuf> {
    spec.linux()
        .as_ref()
        .and_then(|linux| linux.namespaces().as_ref())
        .and_then(|namespaces| {
            namespaces
                .iter()
                .find(|ns| ns.typ() == LinuxNamespaceType::Network)
        })
        .and_then(|ns| ns.path().clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels() {
        assert_eq!(dns_label("Hello_World", "x"), "hello-world");
        assert_eq!(dns_label("--", "x"), "x");
        assert_eq!(dns_label(&"a".repeat(80), "x").len(), 63);
    }

    #[test]
    fn system_paths() {
        assert!(system_path("/dev/shm"));
        assert!(system_path("/proc"));
        assert!(!system_path("/devices"));
        assert!(!system_path("/data"));
    }

    #[test]
    fn ports() {
        let ports = ports_of(r#"[{"name":"http","containerPort":8080,"protocol":"TCP"},{"containerPort":53,"protocol":"UDP","hostPort":53}]"#).unwrap();
        assert_eq!(ports.len(), 2);
        assert_eq!(
            (ports[0].name.as_deref(), ports[0].container_port),
            (Some("http"), 8080)
        );
        assert!(ports[1].udp);
        assert!(ports_of(r#"[{"containerPort":1,"protocol":"SCTP"}]"#).is_err());
        assert!(ports_of("{}").is_err());
    }

    #[test]
    fn references() {
        let (root, reference) =
            image_reference(Path::new("/run/c/io.containerd.runtime.v2.task/k8s.io/abc")).unwrap();
        assert_eq!(root, Path::new("/run/c/io.containerd.runtime.v2.task"));
        assert_eq!(reference, "k8s.io:abc");
        assert!(image_reference(Path::new("/run/c/ns/x.wasm")).is_none());
        assert!(image_reference(Path::new("/run/c/ns/a:b")).is_none());
    }
}
