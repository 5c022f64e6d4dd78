//! The wall on Linux: where pod cgroups go (`probe`; whether the kernel
//! allows the namespaces, the first pod process's `unshare` tells), why a
//! refused wall was refused, and the entry point to the supervisor.

use super::cgroup::Hierarchies;
use super::{Isolation, PodMain, Sandbox, SandboxConfig, SandboxError, SandboxedRun, sys};
use crate::manifest::PodSpec;

/// What the probe found.
#[derive(Debug)]
pub(super) struct State {
    /// Where pod cgroups go; `None` when cgroups are out of reach (rootless,
    /// or cgroup v2 not delegated) and `auto` goes on without them.
    pub cgroups: Option<Hierarchies>,
}

/// Finds where pod cgroups can go. Whether the kernel allows the namespaces
/// is found by the first pod process's own `unshare` (see `supervisor`).
pub(super) fn probe(config: SandboxConfig) -> Result<Option<Sandbox>, SandboxError> {
    let required = config.isolation == Isolation::Required;
    let cgroups = match Hierarchies::find().and_then(|h| h.check().map(|()| h)) {
        Ok(hierarchies) => Some(hierarchies),
        Err(reason) => {
            let fix = "run wpod as root, or in a cgroup delegated to your user (systemd-run --user -p Delegate=yes)";
            if required {
                return Err(SandboxError::Unavailable {
                    part: "the pod cgroup".into(),
                    reason: reason.to_string(),
                    fix: fix.into(),
                });
            }
            tracing::warn!(
                "the OS wall has no cgroup: {reason}; pods run without a cgroup memory, CPU and pids backstop; {fix}"
            );
            None
        }
    };
    Ok(Some(Sandbox {
        config,
        state: State { cgroups },
    }))
}

/// Names the missing part of the wall, why, and the fix (bubblewrap names the
/// sysctl too), from what the pod process's `unshare` said.
pub(super) fn explain_namespaces(error: &str) -> (String, String, String) {
    let read = |path: &str| {
        std::fs::read_to_string(path)
            .ok()
            .map(|text| text.trim().to_owned())
    };
    if sys::probe_unshare(rustix::thread::UnshareFlags::NEWUSER).is_err() {
        let (reason, fix) = if read("/proc/sys/user/max_user_namespaces").as_deref() == Some("0") {
            (
                "user.max_user_namespaces is 0".to_owned(),
                "enable them: sysctl -w user.max_user_namespaces=15000",
            )
        } else if read("/proc/sys/kernel/unprivileged_userns_clone").as_deref() == Some("0") {
            (
                "kernel.unprivileged_userns_clone is 0".to_owned(),
                "enable them: sysctl -w kernel.unprivileged_userns_clone=1",
            )
        } else if read("/proc/sys/kernel/apparmor_restrict_unprivileged_userns").as_deref()
            == Some("1")
        {
            (
                "AppArmor restricts unprivileged user namespaces (kernel.apparmor_restrict_unprivileged_userns is 1)".to_owned(),
                "allow them for wpod with an AppArmor profile, or sysctl -w kernel.apparmor_restrict_unprivileged_userns=0",
            )
        } else {
            (
                error.to_owned(),
                "check user.max_user_namespaces and kernel.unprivileged_userns_clone, and whether a container runtime's seccomp profile forbids unshare",
            )
        };
        return ("user namespaces".into(), reason, fix.into());
    }
    (
        "namespaces (mount, pid, net, uts, ipc, cgroup)".into(),
        error.to_owned(),
        "check that the kernel was built with them (CONFIG_*_NS)".into(),
    )
}

pub(super) fn run(
    sandbox: &Sandbox,
    pods: &[PodSpec],
    jobs: &mut crate::job::Jobs,
    pod_main: PodMain,
) -> Result<Option<SandboxedRun>, SandboxError> {
    super::supervisor::run(
        &sandbox.config,
        sandbox.state.cgroups.as_ref(),
        pods,
        jobs,
        pod_main,
    )
}

/// [`super::in_child`] on Linux: a fork, its result as JSON on a pipe.
pub(super) fn in_child<E>(work: impl FnOnce() -> Result<(), E>) -> Result<(), E>
where
    E: serde::Serialize + serde::de::DeserializeOwned + From<super::ErrorReport>,
{
    use std::io::{Read as _, Write as _};
    let host = |what: &str, error: &dyn std::error::Error| {
        E::from(super::ErrorReport::new(
            &std::io::Error::other(format!("{what}: {error}")),
            crate::Fault::Host,
        ))
    };
    let (read, write) = super::sys::pipe().map_err(|e| host("creating a pipe", &e))?;
    let _ = std::io::stdout().flush();
    // SAFETY: the caller checked that this process has one thread.
    match unsafe { super::sys::fork() } {
        Err(error) => Err(host("forking", &error)),
        Ok(super::sys::Forked::Child) => {
            drop(read);
            let _ = super::sys::die_with_parent();
            let result = work();
            let mut pipe = std::fs::File::from(write);
            let _ = pipe.write_all(&serde_json::to_vec(&result).unwrap_or_default());
            drop(pipe);
            super::sys::exit_now(i32::from(result.is_err()))
        }
        Ok(super::sys::Forked::Parent(pid)) => {
            drop(write);
            let mut text = Vec::new();
            let _ = std::fs::File::from(read).read_to_end(&mut text);
            let status = super::sys::wait_for(pid);
            match serde_json::from_slice::<Result<(), E>>(&text) {
                Ok(result) => result,
                Err(_) => Err(host(
                    "the child process",
                    &std::io::Error::other(format!("ended without a word ({status:?})")),
                )),
            }
        }
    }
}
