//! The pod's cgroup: memory, CPU quota and pids, nested under the cgroup
//! `wpod run` itself is in (`<its cgroup>/wpod/<pod>-<pid>-<n>`), never at the
//! root of a hierarchy, so whatever limits the caller's own cgroup has still
//! apply above the pod's.
//!
//! cgroup v1 where the memory controller is mounted as v1 (as on this
//! project's machines: v1 memory, pids and cpu, and a unified mount with no
//! controllers); else v2, where the controllers can be enabled for our
//! subtree (delegated to us, or we are at the root). A pod's cgroup is
//! removed when the pod ends; one left by a `wpod` that was killed (`kill -9`)
//! is swept by the next run once its owner pid is gone.

use super::Limits;
use std::path::{Path, PathBuf};

/// The v1 controllers wpod limits.
const V1_CONTROLLERS: [&str; 3] = ["memory", "pids", "cpu"];

/// Why the pods' cgroups could not be found, checked or made, or a process
/// not moved into one. Its text is the reason the user reads in the warning
/// or the refusal that follows.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CgroupError {
    /// Reading /proc/self/mountinfo or /proc/self/cgroup failed.
    #[error("reading {path}: {source}")]
    Read {
        path: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// Neither a v1 memory controller nor a cgroup v2 filesystem is mounted.
    #[error("no cgroup filesystem is mounted")]
    NoFilesystem,
    /// cgroup v2 is mounted, but /proc/self/cgroup has no `0::` line for it.
    #[error("/proc/self/cgroup has no cgroup v2 entry")]
    NoV2Entry,
    /// v1: none of [`V1_CONTROLLERS`] is mounted where we have a cgroup.
    #[error("no memory, pids or cpu cgroup controller is mounted")]
    NoController,
    /// Creating a cgroup directory failed.
    #[error("mkdir {}: {source}", path.display())]
    Mkdir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The parent of the pods' cgroups is not ours to write.
    #[error("{}: {source}", path.display())]
    NotWritable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Writing a value to a cgroup file (a limit, a pid) failed.
    #[error("writing `{value}` to {}: {source}", path.display())]
    Write {
        path: PathBuf,
        value: String,
        #[source]
        source: std::io::Error,
    },
    /// cgroup v2: enabling the controllers in our own cgroup (`own`) failed,
    /// so they were not delegated to us.
    #[error(
        "writing `{value}` to {}: {source} (cgroup v2: the memory, pids and cpu controllers are not delegated to {})",
        path.display(),
        own.display()
    )]
    NotDelegated {
        own: PathBuf,
        path: PathBuf,
        value: &'static str,
        #[source]
        source: std::io::Error,
    },
}

/// Where cgroups of wpod's pods go, per hierarchy.
#[derive(Debug, Clone)]
pub(crate) struct Hierarchies {
    /// `(controller, <own cgroup>/wpod)` for v1, or one `("", ...)` for v2.
    parents: Vec<(&'static str, PathBuf)>,
    v2: bool,
}

/// One pod's cgroup (a directory per v1 controller, or one for v2).
#[derive(Debug)]
pub(crate) struct PodCgroup {
    dirs: Vec<(&'static str, PathBuf)>,
    v2: bool,
}

impl Hierarchies {
    /// Finds the hierarchies from /proc/self/mountinfo and /proc/self/cgroup.
    pub(crate) fn find() -> Result<Hierarchies, CgroupError> {
        let read = |path: &'static str| {
            std::fs::read_to_string(path).map_err(|source| CgroupError::Read { path, source })
        };
        let mountinfo = read("/proc/self/mountinfo")?;
        let own = read("/proc/self/cgroup")?;
        let mounts: Vec<Mount> = mountinfo.lines().filter_map(Mount::parse).collect();
        let own_path = |controller: &str| {
            own.lines().find_map(|line| {
                let mut parts = line.splitn(3, ':');
                let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
                let matches = if controller.is_empty() {
                    controllers.is_empty()
                } else {
                    controllers.split(',').any(|c| c == controller)
                };
                matches.then(|| path.to_owned())
            })
        };
        let v1_memory = mounts
            .iter()
            .any(|m| m.fstype == "cgroup" && m.has_controller("memory"));
        if v1_memory {
            let mut parents = Vec::new();
            for controller in V1_CONTROLLERS {
                let Some(mount) = mounts
                    .iter()
                    .find(|m| m.fstype == "cgroup" && m.has_controller(controller))
                else {
                    continue;
                };
                let Some(path) = own_path(controller) else {
                    continue;
                };
                parents.push((controller, mount.dir_of(&path).join("wpod")));
            }
            return Ok(Hierarchies { parents, v2: false });
        }
        let mount = mounts
            .iter()
            .find(|m| m.fstype == "cgroup2")
            .ok_or(CgroupError::NoFilesystem)?;
        let path = own_path("").ok_or(CgroupError::NoV2Entry)?;
        Ok(Hierarchies {
            parents: vec![("", mount.dir_of(&path).join("wpod"))],
            v2: true,
        })
    }

    /// Whether we may create pod cgroups here (rootless users usually may
    /// not, unless a cgroup v2 subtree is delegated to them).
    pub(crate) fn check(&self) -> Result<(), CgroupError> {
        if self.parents.is_empty() {
            return Err(CgroupError::NoController);
        }
        for (_, parent) in &self.parents {
            if self.v2 {
                enable_v2_controllers(parent)?;
            }
            mkdir_all(parent)?;
            rustix::fs::access(parent, rustix::fs::Access::WRITE_OK).map_err(|errno| {
                CgroupError::NotWritable {
                    path: parent.clone(),
                    source: errno.into(),
                }
            })?;
        }
        Ok(())
    }

    /// Creates the pod's cgroup with its limits.
    pub(crate) fn create(&self, name: &str, limits: &Limits) -> Result<PodCgroup, CgroupError> {
        let mut cgroup = PodCgroup {
            dirs: Vec::new(),
            v2: self.v2,
        };
        for (controller, parent) in &self.parents {
            if self.v2 {
                enable_v2_controllers(parent)?;
            }
            mkdir_all(parent)?;
            if self.v2 {
                write(&parent.join("cgroup.subtree_control"), "+memory +pids +cpu")?;
            }
            let dir = parent.join(name);
            std::fs::create_dir(&dir).map_err(|source| CgroupError::Mkdir {
                path: dir.clone(),
                source,
            })?;
            cgroup.dirs.push((controller, dir));
        }
        cgroup.limit(limits)?;
        Ok(cgroup)
    }

    /// The hierarchies for cgroups below `parent`, a cgroup path as an OCI
    /// spec's `cgroupsPath` names it in cgroupfs form (from each
    /// hierarchy's root, as runc reads it), rather than below wpod's own:
    /// where the containerd shim puts its pod process, under the kubelet's
    /// cgroup of the pod (see `host`).
    pub(crate) fn below(parent: &Path) -> Result<Hierarchies, CgroupError> {
        let path: &'static str = "/proc/self/mountinfo";
        let mountinfo =
            std::fs::read_to_string(path).map_err(|source| CgroupError::Read { path, source })?;
        let mounts: Vec<Mount> = mountinfo.lines().filter_map(Mount::parse).collect();
        let parent = parent.to_string_lossy();
        let v1 = |controller: &str| {
            mounts
                .iter()
                .find(|m| m.fstype == "cgroup" && m.has_controller(controller))
        };
        if v1("memory").is_some() {
            let parents = (V1_CONTROLLERS.iter())
                .filter_map(|c| v1(c).map(|mount| (*c, mount.dir_of(&parent))))
                .collect();
            return Ok(Hierarchies { parents, v2: false });
        }
        let mount = (mounts.iter())
            .find(|m| m.fstype == "cgroup2")
            .ok_or(CgroupError::NoFilesystem)?;
        Ok(Hierarchies {
            parents: vec![("", mount.dir_of(&parent))],
            v2: true,
        })
    }

    /// The cgroup `name` as it is, made or not, to remove it (its `Drop`).
    pub(crate) fn existing(&self, name: &str) -> PodCgroup {
        PodCgroup {
            dirs: (self.parents.iter())
                .map(|(controller, parent)| (*controller, parent.join(name)))
                .collect(),
            v2: self.v2,
        }
    }

    /// Removes cgroups of pods whose `wpod` (the pid in their name) is gone,
    /// killing anything still in them first.
    pub(crate) fn sweep_stale(&self) {
        for (_, parent) in &self.parents {
            for cgroup in crate::volume::left_by_dead_processes(parent) {
                tracing::debug!(cgroup = %cgroup.display(), "removing a stale pod cgroup");
                remove(&cgroup);
            }
        }
    }
}

/// For v2: the controllers must be enabled in every ancestor's
/// `cgroup.subtree_control` down to ours; we try only our own cgroup (the
/// parent of `wpod/`), which works when we are at the root or it was
/// delegated to us.
fn enable_v2_controllers(wpod_dir: &Path) -> Result<(), CgroupError> {
    let own = wpod_dir.parent().expect("wpod/ has a parent");
    let enabled = std::fs::read_to_string(own.join("cgroup.subtree_control")).unwrap_or_default();
    if ["memory", "pids", "cpu"]
        .iter()
        .all(|c| enabled.split_whitespace().any(|e| e == *c))
    {
        return Ok(());
    }
    let (path, value) = (own.join("cgroup.subtree_control"), "+memory +pids +cpu");
    std::fs::write(&path, value).map_err(|source| CgroupError::NotDelegated {
        own: own.to_owned(),
        path,
        value,
        source,
    })
}

impl PodCgroup {
    fn limit(&self, limits: &Limits) -> Result<(), CgroupError> {
        for (controller, dir) in &self.dirs {
            let has = |c: &str| self.v2 || *controller == c;
            if has("memory")
                && let Some(bytes) = limits.memory_bytes
            {
                if self.v2 {
                    write(&dir.join("memory.max"), &bytes.to_string())?;
                    // No swap: the limit is the pod's memory, not its RAM share.
                    let _ = write(&dir.join("memory.swap.max"), "0");
                } else {
                    write(&dir.join("memory.limit_in_bytes"), &bytes.to_string())?;
                    let _ = write(&dir.join("memory.memsw.limit_in_bytes"), &bytes.to_string());
                }
            }
            if has("pids") {
                write(&dir.join("pids.max"), &limits.pids.to_string())?;
            }
            if has("cpu")
                && let Some(millis) = limits.cpu_millis
            {
                // A period of 100 ms, the kernel's default: 1000m is 100 ms
                // of CPU time per 100 ms.
                let quota = (millis * 100).max(1000);
                if self.v2 {
                    write(&dir.join("cpu.max"), &format!("{quota} 100000"))?;
                } else {
                    write(&dir.join("cpu.cfs_period_us"), "100000")?;
                    write(&dir.join("cpu.cfs_quota_us"), &quota.to_string())?;
                }
            }
        }
        Ok(())
    }

    /// Its directories, one per hierarchy.
    pub(crate) fn dirs(&self) -> Vec<PathBuf> {
        self.dirs.iter().map(|(_, dir)| dir.clone()).collect()
    }

    /// Moves the calling process, which must have a single thread (pod-init,
    /// a fork of the single-threaded supervisor), into the cgroup in every
    /// hierarchy.
    ///
    /// On cgroup v1 it writes `0` (itself) to `tasks`: a thread that moves
    /// itself alone is the one migration for which the kernel skips the
    /// global `cgroup_threadgroup_rwsem` (`cgroup_procs_write_start`). A
    /// write to `cgroup.procs` takes that lock for writing, and the first
    /// writer after a quiet spell waits for an RCU grace period: 10-15 ms
    /// measured here for the first start after a pause, against 0.1 ms this
    /// way. cgroup v2 has no `tasks` file outside threaded subtrees:
    /// `cgroup.procs` there.
    pub(crate) fn enter(&self) -> Result<(), CgroupError> {
        let file = if self.v2 { "cgroup.procs" } else { "tasks" };
        for (_, dir) in &self.dirs {
            write(&dir.join(file), "0")?;
        }
        Ok(())
    }

    /// The folder of the memory controller (v2: the one folder).
    fn memory_dir(&self) -> Option<&std::path::Path> {
        self.dirs
            .iter()
            .find(|(controller, _)| self.v2 || *controller == "memory")
            .map(|(_, dir)| dir.as_path())
    }

    /// Whether the kernel's OOM killer killed a process of this cgroup.
    pub(crate) fn oom_killed(&self) -> bool {
        let Some(dir) = self.memory_dir() else {
            return false;
        };
        let file = if self.v2 {
            "memory.events"
        } else {
            "memory.oom_control"
        };
        std::fs::read_to_string(dir.join(file))
            .unwrap_or_default()
            .lines()
            .any(|line| {
                line.strip_prefix("oom_kill ")
                    .and_then(|n| n.trim().parse::<u64>().ok())
                    .is_some_and(|n| n > 0)
            })
    }

    /// Whether the pod's memory reached the cgroup's limit (v1's
    /// `memory.failcnt` or its peak usage, v2's `max` event): an OOM kill without it was the
    /// host running out of memory, not the pod reaching its ceiling.
    pub(crate) fn limit_reached(&self) -> bool {
        let Some(dir) = self.memory_dir() else {
            return false;
        };
        let count = |text: String, key: &str| -> u64 {
            text.lines()
                .find_map(|line| line.strip_prefix(key))
                .and_then(|n| n.trim().parse().ok())
                .unwrap_or(0)
        };
        if self.v2 {
            let events = std::fs::read_to_string(dir.join("memory.events")).unwrap_or_default();
            count(events, "max ") > 0
        } else {
            // failcnt stays 0 on recent kernels when the memory+swap limit
            // is set too (it is charged first): the peak tells instead.
            let read = |file: &str| -> u64 {
                count(
                    std::fs::read_to_string(dir.join(file)).unwrap_or_default(),
                    "",
                )
            };
            let limit = read("memory.limit_in_bytes");
            let peak =
                read("memory.max_usage_in_bytes").max(read("memory.memsw.max_usage_in_bytes"));
            read("memory.failcnt") > 0 || (limit > 0 && peak.saturating_add(1 << 20) >= limit)
        }
    }

    /// The memory limit as the kernel holds it, for messages.
    pub(crate) fn describe(&self) -> String {
        self.dirs
            .iter()
            .map(|(_, dir)| dir.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl Drop for PodCgroup {
    fn drop(&mut self) {
        for (_, dir) in &self.dirs {
            remove(dir);
        }
    }
}

/// Kills what is left in a cgroup directory, then removes it. A process
/// leaves its cgroup when it exits, so once the kill lands the directory is
/// empty; we retry briefly for the kernel to finish.
fn remove(dir: &Path) {
    for _ in 0..100 {
        let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
        for pid in procs.lines().filter_map(|p| p.trim().parse::<u32>().ok()) {
            super::sys::send_signal(pid, libc::SIGKILL);
        }
        match std::fs::remove_dir(dir) {
            Ok(()) => return,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(5)),
        }
    }
    tracing::warn!(cgroup = %dir.display(), "could not remove the pod's cgroup");
}

/// `mkdir -p` of a cgroup directory.
fn mkdir_all(path: &Path) -> Result<(), CgroupError> {
    std::fs::create_dir_all(path).map_err(|source| CgroupError::Mkdir {
        path: path.to_owned(),
        source,
    })
}

fn write(path: &Path, value: &str) -> Result<(), CgroupError> {
    std::fs::write(path, value).map_err(|source| CgroupError::Write {
        path: path.to_owned(),
        value: value.to_owned(),
        source,
    })
}

/// One line of /proc/self/mountinfo, the parts we need.
#[derive(Debug)]
struct Mount {
    root: String,
    mount_point: PathBuf,
    fstype: String,
    super_options: String,
}

impl Mount {
    fn parse(line: &str) -> Option<Mount> {
        let (left, right) = line.split_once(" - ")?;
        let fields: Vec<&str> = left.split(' ').collect();
        let right: Vec<&str> = right.split(' ').collect();
        Some(Mount {
            root: fields.get(3)?.to_string(),
            mount_point: PathBuf::from(fields.get(4)?),
            fstype: right.first()?.to_string(),
            super_options: right.get(2).unwrap_or(&"").to_string(),
        })
    }

    fn has_controller(&self, controller: &str) -> bool {
        self.super_options.split(',').any(|o| o == controller)
    }

    /// The directory of cgroup `path` (as /proc/self/cgroup names it) under
    /// this mount, whose own root may be a sub-cgroup.
    fn dir_of(&self, path: &str) -> PathBuf {
        let relative = path
            .strip_prefix(self.root.as_str())
            .unwrap_or(path)
            .trim_start_matches('/');
        self.mount_point.join(relative)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_lines_give_the_cgroup_directories() {
        let v1 = Mount::parse(
            "35 25 0:30 / /sys/fs/cgroup/memory rw,relatime shared:14 - cgroup cgroup rw,memory",
        )
        .unwrap();
        assert!(v1.has_controller("memory") && !v1.has_controller("cpu"));
        assert_eq!(
            v1.dir_of("/process_api/abc"),
            Path::new("/sys/fs/cgroup/memory/process_api/abc")
        );
        let nested =
            Mount::parse("40 25 0:31 /user.slice /sys/fs/cgroup rw - cgroup2 cgroup2 rw").unwrap();
        assert_eq!(nested.fstype, "cgroup2");
        assert_eq!(
            nested.dir_of("/user.slice/session-1.scope"),
            Path::new("/sys/fs/cgroup/session-1.scope")
        );
    }

    #[test]
    fn errors_read_as_the_messages_did() {
        let denied = || std::io::Error::from_raw_os_error(libc::EACCES);
        let wpod = PathBuf::from("/sys/fs/cgroup/user.slice/wpod");
        let cases = [
            (
                CgroupError::Read {
                    path: "/proc/self/cgroup",
                    source: denied(),
                },
                "reading /proc/self/cgroup: Permission denied (os error 13)",
            ),
            (
                CgroupError::Mkdir {
                    path: wpod.clone(),
                    source: denied(),
                },
                "mkdir /sys/fs/cgroup/user.slice/wpod: Permission denied (os error 13)",
            ),
            (
                CgroupError::NotWritable {
                    path: wpod.clone(),
                    source: denied(),
                },
                "/sys/fs/cgroup/user.slice/wpod: Permission denied (os error 13)",
            ),
            (
                CgroupError::Write {
                    path: wpod.join("p-1-0/pids.max"),
                    value: "1024".into(),
                    source: denied(),
                },
                "writing `1024` to /sys/fs/cgroup/user.slice/wpod/p-1-0/pids.max: Permission denied (os error 13)",
            ),
            (
                CgroupError::NotDelegated {
                    own: "/sys/fs/cgroup/user.slice".into(),
                    path: "/sys/fs/cgroup/user.slice/cgroup.subtree_control".into(),
                    value: "+memory +pids +cpu",
                    source: denied(),
                },
                "writing `+memory +pids +cpu` to /sys/fs/cgroup/user.slice/cgroup.subtree_control: Permission denied (os error 13) (cgroup v2: the memory, pids and cpu controllers are not delegated to /sys/fs/cgroup/user.slice)",
            ),
        ];
        for (error, text) in cases {
            assert_eq!(error.to_string(), text);
        }
    }
}
