//! Volumes: `emptyDir` and `hostPath` become host directories, then each
//! container gets its table of preopens from its `volumeMounts`.
//!
//! Paths that a guest can influence (a `subPath`, anything inside a hostPath)
//! are opened inside the volume with cap-std, never joined as plain paths:
//! Kubernetes' CVE-2017-1002101 was a subPath symlink escape. On Linux the
//! opened directory is then handed to WASI as `/proc/self/fd/N`, so what WASI
//! opens is the very directory cap-std checked, with no window for a swap.

use crate::manifest::{ContainerSpec, HostPathType, PodSpec, VolumeSource};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The pod's volumes on the host. Dropping it removes every `emptyDir` (and
/// the pod's private folder that holds them); hostPath content is never
/// touched.
#[derive(Debug)]
pub(crate) struct Volumes {
    dirs: HashMap<String, PathBuf>,
    /// emptyDirs on disk with a `sizeLimit`: name, folder, limit in bytes.
    limited: Vec<(String, PathBuf, u64)>,
    /// The pod's private folder (emptyDirs live here), removed on drop.
    scratch: Option<Scratch>,
    /// Volumes every container sees read-only, whatever its mount says
    /// (ConfigMaps and Secrets, as in Kubernetes).
    read_only: std::collections::HashSet<String>,
    /// Each container's `/run/wpod` folder, by container name: where the
    /// file that asks it to end appears (see [`TERMINATING`]).
    run_dirs: HashMap<String, PathBuf>,
}

/// The file that appears in a container's `/run/wpod` when it is asked to
/// end (the pod stops, or a probe restarts it): Wasm has no signals, so a
/// guest that wants to clean up looks for it, as a process handles SIGTERM.
pub const TERMINATING: &str = "terminating";

/// Where a container sees its [`TERMINATING`] file's folder.
pub const RUN_DIR: &str = "/run/wpod";

/// A directory to preopen in one container.
#[derive(Debug)]
pub(crate) struct Preopen {
    /// What WASI opens: a path, or on Linux `/proc/self/fd/N` of `_dir`.
    pub host: PathBuf,
    pub guest: String,
    pub read_only: bool,
    /// Keeps the checked directory open until WASI has opened it.
    _dir: Option<cap_std::fs::Dir>,
}

/// Why a volume could not be set up. Each names the volume and what to do.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("hostPath {} {problem}; {hint}", path.display())]
    HostPath {
        volume: String,
        path: PathBuf,
        problem: String,
        hint: String,
    },
    #[error("`{volume}` at {mount_path}: {problem}; {hint}")]
    Mount {
        container: String,
        volume: String,
        mount_path: String,
        problem: String,
        hint: String,
    },
    #[error("cannot create the pod's scratch folder {}: {source}", path.display())]
    Scratch {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl VolumeError {
    /// The field path in `pod` of what is at fault: the volume's
    /// `spec.volumes[N].hostPath.path`, the mount's
    /// `spec.containers[N].volumeMounts[M]`, else `spec.volumes`.
    pub fn field(&self, pod: &PodSpec) -> String {
        match self {
            VolumeError::HostPath { volume, .. } => pod
                .volumes
                .iter()
                .position(|v| v.name == *volume)
                .map_or_else(
                    || "spec.volumes".to_owned(),
                    |i| format!("spec.volumes[{i}].hostPath.path"),
                ),
            VolumeError::Mount {
                container,
                mount_path,
                ..
            } => {
                let found = [
                    ("spec.initContainers", &pod.init_containers),
                    ("spec.containers", &pod.containers),
                ]
                .into_iter()
                .find_map(|(list, containers)| {
                    let (i, spec) = containers
                        .iter()
                        .enumerate()
                        .find(|(_, c)| c.name == *container)?;
                    let j = spec
                        .volume_mounts
                        .iter()
                        .position(|m| m.mount_path == *mount_path)?;
                    Some(format!("{list}[{i}].volumeMounts[{j}]"))
                });
                found.unwrap_or_else(|| format!("container `{container}`"))
            }
            _ => "spec.volumes".to_owned(),
        }
    }
}

/// Checks the pod's hostPath volumes (and creates those of type
/// `DirectoryOrCreate`/`FileOrCreate`) as [`Volumes::prepare`] does, without
/// making the pod's private folder: the OS wall's supervisor checks them on
/// the host's side before the pod process starts.
#[cfg(target_os = "linux")]
pub(crate) fn prepare_host_paths(pod: &PodSpec) -> Result<(), VolumeError> {
    for volume in &pod.volumes {
        if let VolumeSource::HostPath { path, kind } = &volume.source {
            host_path(&volume.name, path, *kind)?;
        }
    }
    Ok(())
}

impl Volumes {
    /// Checks and creates the pod's volumes. `state_root` is where the pod's
    /// private folder (for emptyDirs) goes.
    pub(crate) fn prepare(
        pod: &PodSpec,
        state_root: &Path,
        prepared: &HashMap<String, PathBuf>,
    ) -> Result<Volumes, VolumeError> {
        let mut volumes = Volumes {
            dirs: HashMap::new(),
            limited: Vec::new(),
            scratch: None,
            read_only: std::collections::HashSet::new(),
            run_dirs: HashMap::new(),
        };
        let scratch = Scratch::create(state_root, &pod.name)?;
        for container in pod.all_containers() {
            let dir = scratch.path.join("run").join(&container.name);
            std::fs::create_dir_all(&dir).map_err(|source| VolumeError::Scratch {
                path: dir.clone(),
                source,
            })?;
            volumes.run_dirs.insert(container.name.clone(), dir);
        }
        volumes.scratch = Some(scratch);
        for volume in &pod.volumes {
            let dir = match &volume.source {
                VolumeSource::EmptyDir { .. } if prepared.contains_key(&volume.name) => {
                    prepared[&volume.name].clone()
                }
                VolumeSource::EmptyDir { .. } => {
                    let scratch = match &volumes.scratch {
                        Some(scratch) => scratch,
                        None => volumes
                            .scratch
                            .insert(Scratch::create(state_root, &pod.name)?),
                    };
                    let dir = scratch.path.join("volumes").join(&volume.name);
                    std::fs::create_dir_all(&dir).map_err(|source| VolumeError::Scratch {
                        path: dir.clone(),
                        source,
                    })?;
                    dir
                }
                VolumeSource::HostPath { path, kind } => host_path(&volume.name, path, *kind)?,
                VolumeSource::Files { files, .. } => {
                    let scratch = volumes.scratch.as_ref().expect("made above");
                    let dir = scratch.path.join("volumes").join(&volume.name);
                    write_files(&dir, files).map_err(|source| VolumeError::Scratch {
                        path: dir.clone(),
                        source,
                    })?;
                    volumes.read_only.insert(volume.name.clone());
                    dir
                }
            };
            // A tmpfs the wall prepared holds its size itself.
            if let VolumeSource::EmptyDir {
                size_limit: Some(limit),
                ..
            } = &volume.source
                && !prepared.contains_key(&volume.name)
            {
                volumes
                    .limited
                    .push((volume.name.clone(), dir.clone(), *limit));
            }
            volumes.dirs.insert(volume.name.clone(), dir);
        }
        Ok(volumes)
    }

    /// The host folder of `container`'s `/run/wpod`.
    pub(crate) fn run_dir(&self, container: &str) -> Option<&Path> {
        self.run_dirs.get(container).map(PathBuf::as_path)
    }

    /// The emptyDirs on disk that have a `sizeLimit` (name, folder, bytes):
    /// the pod is evicted when one holds more, as the kubelet does.
    pub(crate) fn size_limited(&self) -> &[(String, PathBuf, u64)] {
        &self.limited
    }

    /// The preopens of one container: the image's files (`rootfs`) read-only
    /// at `/`, then its volumeMounts. A volume mounted at `/` (wpod's
    /// extension; Kubernetes refuses it) replaces the image's files there:
    /// one root, as `wasmtime run --dir DIR::/` gives it, where two preopens
    /// named `/` would leave the choice to the guest's libc.
    pub(crate) fn preopens(
        &self,
        container: &ContainerSpec,
        rootfs: Option<&Path>,
    ) -> Result<Vec<Preopen>, VolumeError> {
        let mut preopens = Vec::with_capacity(container.volume_mounts.len() + 1);
        if let Some(rootfs) = rootfs
            && !container
                .volume_mounts
                .iter()
                .any(|mount| mount.mount_path.trim_end_matches('/').is_empty())
        {
            preopens.push(Preopen::image_root(rootfs));
        }
        for mount in &container.volume_mounts {
            let error = |problem: String, hint: &str| VolumeError::Mount {
                container: container.name.clone(),
                volume: mount.name.clone(),
                mount_path: mount.mount_path.clone(),
                problem,
                hint: hint.into(),
            };
            let host = self
                .dirs
                .get(&mount.name)
                .expect("validated: every mount names a volume");
            if !host.is_dir() {
                return Err(error(
                    format!("{} is a file", host.display()),
                    "WASI gives containers directories only: mount the folder that holds the file",
                ));
            }
            let guest = match mount.mount_path.trim_end_matches('/') {
                "" => "/".to_owned(),
                path => path.to_owned(),
            };
            let read_only = mount.read_only || self.read_only.contains(&mount.name);
            let Some(sub_path) = &mount.sub_path else {
                preopens.push(Preopen {
                    host: host.clone(),
                    guest,
                    read_only,
                    _dir: None,
                });
                continue;
            };
            let root = cap_std::fs::Dir::open_ambient_dir(host, cap_std::ambient_authority())
                .map_err(|e| {
                    error(
                        format!("cannot open {}: {e}", host.display()),
                        "check the volume's folder",
                    )
                })?;
            // The kubelet creates a missing subPath; cap-std refuses any path
            // that leaves the volume, through `..` or a symlink.
            if !read_only {
                root.create_dir_all(sub_path).map_err(|e| {
                    error(
                        format!("subPath `{sub_path}`: {e}"),
                        "subPath must stay inside the volume",
                    )
                })?;
            }
            let dir = root.open_dir(sub_path).map_err(|e| {
                error(
                    format!("subPath `{sub_path}`: {e}"),
                    "subPath must name a folder inside the volume",
                )
            })?;
            preopens.push(Preopen::checked(dir, host.join(sub_path), guest, read_only));
        }
        if let Some(run_dir) = self.run_dirs.get(&container.name)
            && !container
                .volume_mounts
                .iter()
                .any(|mount| mount.mount_path.trim_end_matches('/') == RUN_DIR)
        {
            preopens.push(Preopen {
                host: run_dir.clone(),
                guest: RUN_DIR.into(),
                read_only: true,
                _dir: None,
            });
        }
        Ok(preopens)
    }
}

impl Preopen {
    /// A root filesystem shown read-only at `/` (an image's files).
    fn image_root(rootfs: &Path) -> Preopen {
        Preopen {
            host: rootfs.to_owned(),
            guest: "/".into(),
            read_only: true,
            _dir: None,
        }
    }

    #[cfg(target_os = "linux")]
    fn checked(dir: cap_std::fs::Dir, _joined: PathBuf, guest: String, read_only: bool) -> Preopen {
        use std::os::fd::AsRawFd;
        let host = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
        Preopen {
            host,
            guest,
            read_only,
            _dir: Some(dir),
        }
    }

    /// Without /proc, the path cap-std checked is opened again by path; a
    /// symlink swapped in between is the remaining (documented) risk.
    #[cfg(not(target_os = "linux"))]
    fn checked(dir: cap_std::fs::Dir, joined: PathBuf, guest: String, read_only: bool) -> Preopen {
        drop(dir);
        Preopen {
            host: joined,
            guest,
            read_only,
            _dir: None,
        }
    }
}

/// Checks the pod's hostPaths as `wpod run` would, without creating any:
/// a `Directory` or `File` must be there and be one; the others only must
/// not be the wrong kind where they exist.
pub(crate) fn check_host_paths(pod: &PodSpec) -> Result<(), VolumeError> {
    for volume in &pod.volumes {
        if let VolumeSource::HostPath { path, kind } = &volume.source {
            let creates = matches!(
                kind,
                HostPathType::Unchecked
                    | HostPathType::DirectoryOrCreate
                    | HostPathType::FileOrCreate
            );
            if creates && !path.exists() {
                continue;
            }
            host_path(&volume.name, path, *kind)?;
        }
    }
    Ok(())
}

fn host_path(volume: &str, path: &Path, kind: HostPathType) -> Result<PathBuf, VolumeError> {
    let error = |problem: &str, hint: &str| VolumeError::HostPath {
        volume: volume.into(),
        path: path.to_owned(),
        problem: problem.into(),
        hint: hint.into(),
    };
    let meta = std::fs::metadata(path);
    match kind {
        HostPathType::Directory => match meta {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => {
                return Err(error(
                    "is not a directory",
                    "point hostPath.path at a directory",
                ));
            }
            Err(_) => {
                return Err(error(
                    "does not exist",
                    "create it, or use type DirectoryOrCreate",
                ));
            }
        },
        // `""` skips the checks; as Docker did, a missing path becomes a folder.
        HostPathType::Unchecked | HostPathType::DirectoryOrCreate => match meta {
            Ok(meta) if meta.is_dir() || kind == HostPathType::Unchecked => {}
            Ok(_) => {
                return Err(error(
                    "is not a directory",
                    "point hostPath.path at a directory",
                ));
            }
            Err(_) => {
                create_dir_0755(path).map_err(|e| {
                    error(
                        &format!("cannot be created: {e}"),
                        "check the parent folder's permissions",
                    )
                })?;
            }
        },
        HostPathType::File => match meta {
            Ok(meta) if meta.is_file() => {}
            Ok(_) => return Err(error("is not a file", "point hostPath.path at a file")),
            Err(_) => {
                return Err(error(
                    "does not exist",
                    "create it, or use type FileOrCreate",
                ));
            }
        },
        HostPathType::FileOrCreate => match meta {
            Ok(meta) if meta.is_file() => {}
            Ok(_) => return Err(error("is not a file", "point hostPath.path at a file")),
            Err(_) => {
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| {
                        error(
                            &format!("cannot be created: {e}"),
                            "its parent folder must exist",
                        )
                    })?;
            }
        },
    }
    Ok(path.to_owned())
}

fn create_dir_0755(path: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o755);
    builder.create(path)
}

/// The space `dir` takes on disk, as `du` counts it: the blocks of every
/// file and folder under it, each hard-linked file once, symlinks not
/// followed.
pub(crate) fn disk_usage(dir: &Path) -> u64 {
    let mut total = 0;
    // Hard-linked files seen, by (device, inode).
    let mut seen: std::collections::HashSet<(u64, u64)> = std::collections::HashSet::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(folder) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&folder) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.path().symlink_metadata() else {
                continue;
            };
            #[cfg(unix)]
            let size = {
                use std::os::unix::fs::MetadataExt;
                if meta.nlink() > 1 && !meta.is_dir() && !seen.insert((meta.dev(), meta.ino())) {
                    continue;
                }
                meta.blocks() * 512
            };
            #[cfg(not(unix))]
            let size = {
                let _ = &mut seen;
                meta.len()
            };
            total += size;
            if meta.is_dir() {
                pending.push(entry.path());
            }
        }
    }
    total
}

/// The pod's private folder: `<state_root>/<pod>-<pid>-<n>`, removed on drop.
#[derive(Debug)]
struct Scratch {
    path: PathBuf,
}

impl Scratch {
    fn create(state_root: &Path, pod: &str) -> Result<Scratch, VolumeError> {
        static SWEPT: std::sync::Once = std::sync::Once::new();
        SWEPT.call_once(|| sweep_stale(state_root));
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("{pod}-{}-{n}", std::process::id());
        crate::state::ensure_private_root(state_root)
            .and_then(|()| crate::state::create_private_child(state_root, &name))
            .map(|path| Scratch { path })
            .map_err(|source| VolumeError::Scratch {
                path: state_root.join(&name),
                source,
            })
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Err(error) = std::fs::remove_dir_all(&self.path) {
            tracing::warn!(path = %self.path.display(), %error, "could not remove the pod's scratch folder");
        }
    }
}

/// Writes a ConfigMap's or Secret's files into `dir` (made here), with
/// their modes: the volume's content, fixed for the pod's life.
fn write_files(dir: &Path, files: &[crate::manifest::VolumeFile]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for file in files {
        let path = dir.join(&file.path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, &file.content)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(file.mode))?;
        }
    }
    Ok(())
}

/// Removes scratch folders left by wpod processes that no longer exist (a
/// `kill -9` gives no chance to clean up). Linux only: elsewhere there is no
/// cheap way to ask whether a pid is alive, and they are left to the OS's
/// temp cleaner.
fn sweep_stale(state_root: &Path) {
    #[cfg(target_os = "linux")]
    for path in left_by_dead_processes(state_root) {
        let _ = std::fs::remove_dir_all(path);
    }
    #[cfg(not(target_os = "linux"))]
    let _ = state_root;
}

/// The entries of `dir` named `<name>-<pid>-<n>` (scratch folders, the OS
/// wall's private folders and cgroups) whose wpod process `pid` is gone:
/// what a `kill -9` left behind.
#[cfg(target_os = "linux")]
pub(crate) fn left_by_dead_processes(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|entry| {
            let name = entry.file_name();
            let pid = name
                .to_str()
                .and_then(|n| n.rsplit('-').nth(1))
                .and_then(|p| p.parse::<u32>().ok());
            pid.is_some_and(|pid| {
                pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists()
            })
        })
        .map(|entry| entry.path())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::ContainerSpec;

    /// The preopens but `/run/wpod`, which every container has.
    fn guests(preopens: &[Preopen]) -> Vec<(&str, &Path, bool)> {
        let run = preopens
            .iter()
            .filter(|p| p.guest == RUN_DIR)
            .collect::<Vec<_>>();
        assert!(
            matches!(run.as_slice(), [p] if p.read_only && p.host.is_dir()),
            "one read-only /run/wpod"
        );
        preopens
            .iter()
            .filter(|p| p.guest != RUN_DIR)
            .map(|p| (p.guest.as_str(), p.host.as_path(), p.read_only))
            .collect()
    }

    #[test]
    fn a_volume_at_root_replaces_the_image_files() {
        let host = tempfile::tempdir().unwrap();
        let data = host.path().join("data");
        std::fs::create_dir(&data).unwrap();
        let rootfs = host.path().join("rootfs");
        let pod = PodSpec::builder("root")
            .host_path("root", host.path(), HostPathType::Directory)
            .host_path("data", &data, HostPathType::Directory)
            .container(
                ContainerSpec::new("at-root", "app.wasm")
                    .mount("data", "/data", true)
                    .mount("root", "/", false),
            )
            .container(ContainerSpec::new("trailing", "app.wasm").mount("root", "//", false))
            .container(ContainerSpec::new("elsewhere", "app.wasm").mount("data", "/data/", false))
            .build()
            .unwrap();
        let volumes = Volumes::prepare(&pod, host.path(), &HashMap::new()).unwrap();
        let preopens = |index: usize, rootfs: Option<&Path>| {
            volumes.preopens(&pod.containers[index], rootfs).unwrap()
        };

        // The volume is the root; the image's files are not preopened at all.
        assert_eq!(
            guests(&preopens(0, Some(&rootfs))),
            [("/data", data.as_path(), true), ("/", host.path(), false)]
        );
        assert_eq!(
            guests(&preopens(1, Some(&rootfs))),
            [("/", host.path(), false)]
        );
        assert_eq!(guests(&preopens(1, None)), [("/", host.path(), false)]);
        // Without a volume at `/`, the image's files are, read-only, first.
        assert_eq!(
            guests(&preopens(2, Some(&rootfs))),
            [
                ("/", rootfs.as_path(), true),
                ("/data", data.as_path(), false)
            ]
        );
        assert_eq!(
            guests(&preopens(2, None)),
            [("/data", data.as_path(), false)]
        );
    }
}
