//! The pod's folder and its walled process.
//!
//! The shim stays outside the OS wall (it talks to containerd, mounts each
//! container's root filesystem, opens the output FIFOs) and runs the
//! containers in one walled process per pod sandbox, wpod's pod host
//! ([`wpod::pod_host`]), fed over a socket. What the host must see is made
//! visible by mount propagation, never by passing a directory descriptor:
//!
//! - the **pod folder**, `<containerd state>/wpod/<namespace>/<sandbox id>`,
//!   is bound onto itself and made a shared mount before the host starts;
//!   the host binds it into its new root at the same path, as a slave
//!   (a user namespace's mount namespace turns shared into slave);
//! - for each container the shim makes `<pod folder>/<namespace>/<id>/`,
//!   laid out as a wpod image folder (`rootfs/`, bound read-only from the
//!   bundle's `rootfs/`; `image.json`), with the container's private
//!   folder (`wpod/`) and its volumes (`mounts/<n>/`, bound from the
//!   kubelet's folders, read-only where asked): the host sees each mount
//!   appear at the same path, by propagation.
//!
//! The folder is removed with the pod: its mounts detached, then its files.
//! A shim that was killed leaves it to containerd's `delete`, which removes
//! it the same way ([`tear_down`]).

use std::path::{Path, PathBuf};

/// Why the pod's folder or a container's place in it cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum PodFolderError {
    #[error(
        "{bundle}: the bundle is not in containerd's layout (`<state>/io.containerd.runtime.v2.task/<namespace>/<id>`)"
    )]
    Layout { bundle: PathBuf },
    #[error("{path}: {what}: {source}")]
    Io {
        path: PathBuf,
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
}

/// The pod folder of the sandbox `sandbox_id`, whose task (or one of whose
/// containers' tasks) has its bundle at `bundle`: in containerd's state
/// folder, beside its tasks' bundles (not inside one: containerd removes a
/// bundle's folder with everything below it).
pub fn folder_for(bundle: &Path, sandbox_id: &str) -> Result<PathBuf, PodFolderError> {
    let layout = || PodFolderError::Layout {
        bundle: bundle.to_owned(),
    };
    let namespace_dir = bundle.parent().ok_or_else(layout)?;
    let namespace = namespace_dir.file_name().ok_or_else(layout)?;
    let tasks = namespace_dir.parent().ok_or_else(layout)?;
    let state = tasks.parent().ok_or_else(layout)?;
    if tasks
        .file_name()
        .is_none_or(|name| name != "io.containerd.runtime.v2.task")
    {
        return Err(layout());
    }
    Ok(state.join("wpod").join(namespace).join(sandbox_id))
}

/// Makes the pod folder (private to root) and makes it a shared mount of
/// itself, unless it is one already.
pub fn create(folder: &Path) -> Result<(), PodFolderError> {
    use std::os::unix::fs::DirBuilderExt;
    let io = |what| {
        move |source| PodFolderError::Io {
            path: folder.to_owned(),
            what,
            source,
        }
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(folder)
        .map_err(io("creating the pod folder"))?;
    if is_mount_point(folder) {
        return Ok(());
    }
    rustix::mount::mount_bind(folder, folder)
        .map_err(|e| io("binding the pod folder onto itself")(e.into()))?;
    rustix::mount::mount_change(folder, rustix::mount::MountPropagationFlags::SHARED)
        .map_err(|e| io("making the pod folder a shared mount")(e.into()))
}

/// One container's place in the pod folder.
#[derive(Debug, Clone)]
pub struct ContainerDir {
    /// `<pod folder>/<namespace>/<id>`: what the host sees as the
    /// container's image folder.
    pub path: PathBuf,
}

impl ContainerDir {
    pub fn new(folder: &Path, namespace: &str, id: &str) -> ContainerDir {
        ContainerDir {
            path: folder.join(namespace).join(id),
        }
    }

    pub fn rootfs(&self) -> PathBuf {
        self.path.join("rootfs")
    }

    /// Where volume `index` is bound.
    pub fn mount(&self, index: usize) -> PathBuf {
        self.path.join("mounts").join(index.to_string())
    }

    /// The container's private folder (wpod's state for its one-container
    /// pod: `/run/wpod`).
    pub fn state(&self) -> PathBuf {
        self.path.join("wpod")
    }

    /// Makes the folder, with `image.json`, the container's root filesystem
    /// (`bundle_rootfs`, bound read-only) and its volumes (`(index, source,
    /// read-only)`). On an error, what was made is undone.
    pub fn create(
        &self,
        bundle_rootfs: &Path,
        image_json: &str,
        volumes: &[(usize, PathBuf, bool)],
    ) -> Result<(), PodFolderError> {
        let made = self.fill(bundle_rootfs, image_json, volumes);
        if made.is_err() {
            self.remove();
        }
        made
    }

    fn fill(
        &self,
        bundle_rootfs: &Path,
        image_json: &str,
        volumes: &[(usize, PathBuf, bool)],
    ) -> Result<(), PodFolderError> {
        use std::os::unix::fs::DirBuilderExt;
        let io = |path: &Path, what| {
            let path = path.to_owned();
            move |source| PodFolderError::Io { path, what, source }
        };
        let mkdir = |path: &Path, mode| {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(mode)
                .create(path)
                .map_err(io(path, "creating a folder in the pod folder"))
        };
        mkdir(&self.path, 0o755)?;
        std::fs::write(self.path.join("image.json"), image_json)
            .map_err(io(&self.path, "writing image.json"))?;
        mkdir(&self.state(), 0o700)?;
        mkdir(&self.rootfs(), 0o755)?;
        bind(bundle_rootfs, &self.rootfs(), true).map_err(io(
            &self.rootfs(),
            "binding the container's root filesystem",
        ))?;
        for (index, source, read_only) in volumes {
            let target = self.mount(*index);
            mkdir(&target, 0o755)?;
            bind(source, &target, *read_only).map_err(io(&target, "binding a volume"))?;
        }
        Ok(())
    }

    /// Unmounts what was bound here (the host's copies go by propagation)
    /// and removes the folder. What cannot be unmounted is left, with the
    /// folder, rather than risk removing a volume's files.
    pub fn remove(&self) {
        let mounts_dir = self.path.join("mounts");
        let mut mounted: Vec<PathBuf> = std::fs::read_dir(&mounts_dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|entry| entry.path())
            .collect();
        mounted.push(self.rootfs());
        let mut left = false;
        for target in &mounted {
            if is_mount_point(target)
                && let Err(e) = rustix::mount::unmount(target, rustix::mount::UnmountFlags::DETACH)
            {
                log::warn!("cannot unmount {}: {e}", target.display());
                left = true;
            }
            let _ = std::fs::remove_dir(target);
        }
        if left {
            return;
        }
        let _ = std::fs::remove_dir(&mounts_dir);
        let _ = std::fs::remove_dir_all(self.state());
        let _ = std::fs::remove_file(self.path.join("image.json"));
        let _ = std::fs::remove_dir(&self.path);
        if let Some(namespace_dir) = self.path.parent() {
            let _ = std::fs::remove_dir(namespace_dir);
        }
    }
}

/// Removes the pod folder: its mount and every mount below it detached
/// (`MNT_DETACH` takes the whole tree), then, once nothing is mounted below
/// it any more, its files; then the namespace's folder if it is empty.
pub fn tear_down(folder: &Path) {
    if is_mount_point(folder)
        && let Err(e) = rustix::mount::unmount(folder, rustix::mount::UnmountFlags::DETACH)
    {
        log::warn!("cannot unmount the pod folder {}: {e}", folder.display());
        return;
    }
    if !mounts_under(folder).is_empty() {
        log::warn!(
            "mounts are left under {}; the folder is kept",
            folder.display()
        );
        return;
    }
    if let Err(e) = std::fs::remove_dir_all(folder)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        log::warn!("cannot remove the pod folder {}: {e}", folder.display());
    }
    for parent in folder.ancestors().skip(1).take(2) {
        if std::fs::remove_dir(parent).is_err() {
            break;
        }
    }
}

/// Binds `source` at `target`, with everything mounted below it, and makes
/// it read-only when asked (the top mount: the guest's view of the volume).
fn bind(source: &Path, target: &Path, read_only: bool) -> std::io::Result<()> {
    rustix::mount::mount_bind_recursive(source, target)?;
    if read_only {
        use rustix::mount::MountFlags as M;
        rustix::mount::mount_remount(target, M::BIND | M::RDONLY | M::NOSUID | M::NODEV, "")?;
    }
    Ok(())
}

/// Whether something is mounted at `path` (its mountinfo entry).
fn is_mount_point(path: &Path) -> bool {
    mount_points().iter().any(|point| point == path)
}

/// What is mounted below `path` (not at it).
fn mounts_under(path: &Path) -> Vec<PathBuf> {
    mount_points()
        .into_iter()
        .filter(|point| point != path && point.starts_with(path))
        .collect()
}

/// The mount points of the shim's mount namespace.
fn mount_points() -> Vec<PathBuf> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|point| PathBuf::from(unescape(point)))
        .collect()
}

/// mountinfo's octal escapes (`\040` for a space).
fn unescape(text: &str) -> String {
    let mut out = Vec::with_capacity(text.len());
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && let Ok(value) = u8::from_str_radix(&text[i + 1..i + 4], 8)
        {
            out.push(value);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pod_folder_is_beside_the_bundles() {
        let bundle = Path::new("/run/c/io.containerd.runtime.v2.task/k8s.io/abc");
        assert_eq!(
            folder_for(bundle, "sb").unwrap(),
            Path::new("/run/c/wpod/k8s.io/sb")
        );
        assert!(folder_for(Path::new("/x/k8s.io/abc"), "sb").is_err());
        assert_eq!(unescape("/a\\040b"), "/a b");
    }
}
