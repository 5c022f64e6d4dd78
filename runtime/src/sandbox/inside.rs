//! Inside the namespaces: pod-init (the supervisor's forked child, one
//! thread) and PID 1 of the new PID namespace, which puts up the wall and
//! then runs the pod.
//!
//! The order, and why:
//! 1. pod-init: only its status pipe, its end of the socket broker (see
//!    `broker`) and stdio kept (the supervisor's other
//!    descriptors must not cross the wall), an empty signal mask,
//!    `PR_SET_PDEATHSIG`, then check the supervisor is still our parent (it
//!    may have died before the prctl); `setsid` so that the terminal's
//!    Ctrl-C reaches only the supervisor, which forwards it.
//! 2. Into the pod's cgroup, so that everything below is charged there and
//!    the cgroup namespace made next is rooted at the pod's cgroup.
//! 3. `unshare` every namespace at once, the user namespace among them, so
//!    that it owns the others (bubblewrap clones with all the flags at once).
//! 4. Map our uid and gid to root inside (`setgroups` denied first).
//! 5. `clone3(CLONE_PARENT)`: a new PID namespace applies to children only;
//!    the child is PID 1, and the supervisor's child, not ours. pod-init
//!    tells the supervisor its pid and exits at once: one process fewer a
//!    pod, and the supervisor learns of the pod's end from PID 1 itself.
//!    Where the kernel refuses `clone3` or pidfds (before 5.3, or a
//!    seccomp filter), a plain `fork`: pod-init waits for PID 1 and exits
//!    with its status.
//! 6. PID 1: `PR_SET_PDEATHSIG` again (a fork clears it), and a check that
//!    its parent did not die before that: the supervisor's pidfd, or a
//!    lifeline pipe that pod-init holds.
//! 7. Mounts private; open every bind source (`O_PATH`) while the host's
//!    tree is in view; a tmpfs as the new root (on `/tmp`, as bubblewrap
//!    does); each source bound at its own path, restricted (ro, nosuid, nodev,
//!    noexec as planned); a fresh `/proc` of our PID namespace (it must be
//!    mounted while the host's proc is still visible); `pivot_root` and detach
//!    the old root; the new root sealed read-only.
//! 8. hostname; `lo` up in the new network namespace.
//! 9. `setsid`, no_new_privs, every capability dropped (the bounding set
//!    first, while CAP_SETPCAP remains), and the seccomp filter last: it
//!    denies `mount` and friends, which the steps above still needed.
//! 10. Only now is the CLI's pod function called, to start tokio and wasmtime:
//!     every thread they make inherits the namespaces, the empty capability
//!     sets and the filter.
//!
//! Neither process ever returns into the supervisor's code it was forked
//! from: both leave with an exit, so none of the supervisor's values (its
//! cgroups, folders, other pods' processes) is dropped here.

use super::cgroup::PodCgroup;
use super::protocol::{Channel, ErrorReport, Message, Request};
use super::sys::{self, MountAccess, SysError};
use super::{Plan, PodMain, PodProcess};
use crate::pod::PodOptions;
use rustix::fd::{AsFd as _, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where the new root is built before `pivot_root`: a tmpfs over `/tmp`, in
/// our own mount namespace only (bubblewrap's fallback `base_path`).
const NEW_ROOT: &str = "/tmp";

/// A step of the wall that failed: what we were doing, the system call, and
/// how to get past it.
#[derive(Debug, thiserror::Error)]
#[error("setting up the OS wall: {step}: {source}; {hint}")]
pub(super) struct WallError {
    step: &'static str,
    #[source]
    source: SysError,
    hint: &'static str,
}

const HINT_KERNEL: &str = "the kernel refused it inside the pod's namespaces; run with --isolation=none to do without the OS wall";

fn step(step: &'static str, hint: &'static str) -> impl FnOnce(SysError) -> WallError {
    move |source| WallError { step, source, hint }
}

/// What the pod process keeps of the host's network namespace.
pub(super) struct Outside {
    /// Its end of the socket broker.
    pub broker: Option<OwnedFd>,
    /// Sockets connected to its DNS resolvers.
    pub dns_upstreams: Vec<OwnedFd>,
}

/// pod-init, in the supervisor's child right after the fork: steps 1 to 5,
/// then, in PID 1, the rest and the pod. Never returns.
pub(super) fn pod_init(
    request: Request,
    cgroup: Option<&PodCgroup>,
    channel: OwnedFd,
    outside: Outside,
    supervisor: u32,
    pod_main: PodMain,
) -> ! {
    let mut keep = vec![channel.as_fd()];
    keep.extend(outside.broker.as_ref().map(|fd| fd.as_fd()));
    keep.extend(outside.dns_upstreams.iter().map(|fd| fd.as_fd()));
    // SAFETY: pod-init is the supervisor's fresh, single-threaded child; it
    // never returns into the supervisor's code (every path ends in `exit`).
    if unsafe { sys::close_inherited_fds(&keep) }.is_err() {
        sys::exit_now(1);
    }
    let channel = Arc::new(Channel::new(std::fs::File::from(channel)));
    let fail = |error: &dyn std::error::Error| -> ! {
        channel.send(&Message::Failed(ErrorReport::new(
            error,
            crate::Fault::Host,
        )));
        sys::exit_now(1)
    };
    sys::set_process_name("wpod pod-init");
    if let Err(error) = sys::unblock_signals().and_then(|()| sys::die_with_parent()) {
        fail(&error);
    }
    if sys::parent_pid() != supervisor {
        // The supervisor died before PR_SET_PDEATHSIG took effect.
        sys::exit_now(1);
    }
    // PID 1 is to be the supervisor's own child (step 5): this tells it,
    // once its PR_SET_PDEATHSIG is set, whether the supervisor died before.
    let supervisor_fd = sys::pidfd(supervisor);
    if let Err(error) = sys::new_session() {
        fail(&error);
    }
    if let Some(Err(reason)) = cgroup.map(PodCgroup::enter) {
        fail(&std::io::Error::other(format!(
            "moving the pod process into its cgroup: {reason}"
        )));
    }
    let (outer_uid, outer_gid) = (request.outer_uid, request.outer_gid);
    // The first `unshare` of the run is also the test of whether the kernel
    // allows the wall at all: no separate probe is paid for at every start.
    if let Err(error) = sys::enter_namespaces(sys::namespace_flags(request.plan.net_namespace)) {
        channel.send(&Message::NoNamespaces(ErrorReport::new(
            &error,
            crate::Fault::Host,
        )));
        sys::exit_now(1);
    }
    if let Err(error) = sys::die_with_parent()
        .and_then(|()| sys::write_id_maps(outer_uid, outer_gid))
        .map_err(step(
            "mapping the user into the pod's user namespace",
            HINT_KERNEL,
        ))
    {
        fail(&error);
    }
    let (lifeline_read, lifeline_write) = match sys::lifeline() {
        Ok(pipe) => pipe,
        Err(error) => fail(&error),
    };
    let sibling = match supervisor_fd {
        // SAFETY: pod-init has one thread (a fork of the single-threaded
        // supervisor that has started none).
        Some(_) => unsafe { sys::fork_sibling() },
        None => None,
    };
    let supervisor_is_parent = sibling.is_some();
    let forked = match sibling {
        Some(forked) => forked,
        // SAFETY: as above, one thread.
        None => unsafe { sys::fork() },
    };
    match forked {
        Err(error) => fail(&error),
        Ok(sys::Forked::Parent(pid)) => {
            drop(lifeline_read);
            channel.send(&Message::Started {
                pid: pid.as_raw_nonzero().get() as u32,
                supervisor_is_parent,
            });
            if supervisor_is_parent {
                sys::exit_now(0);
            }
            let code = sys::wait_for(pid).unwrap_or(1);
            drop(lifeline_write);
            sys::exit_now(code)
        }
        Ok(sys::Forked::Child) => {
            drop(lifeline_write);
            // Our parent may have died before PR_SET_PDEATHSIG took effect:
            // the supervisor (its pidfd), or pod-init (the lifeline).
            let orphaned = |()| match &supervisor_fd {
                Some(fd) if supervisor_is_parent => sys::has_ended(fd.as_fd()),
                _ => sys::hung_up(lifeline_read.as_fd()),
            };
            if sys::die_with_parent().map_or(true, orphaned) {
                sys::exit_now(1);
            }
            drop(supervisor_fd);
            drop(lifeline_read);
            sys::set_process_name(&format!("pod {}", request.pod.name));
            let relay = match build_wall(&request.plan) {
                Ok(relay) => relay,
                Err(error) => fail(&error),
            };
            let dns_relay = relay.map(|listener| (listener, outside.dns_upstreams));
            let process = match pod_process(request, channel.clone(), outside.broker, dns_relay) {
                Ok(process) => process,
                Err(error) => {
                    channel.send(&Message::Failed(error));
                    sys::exit_now(1)
                }
            };
            // The pod's own output is flushed by `exit` (Rust's stdout).
            std::process::exit(i32::from(pod_main(process)))
        }
    }
}

/// Steps 7 to 9 of the module docs, in PID 1. Returns the DNS relay's
/// socket, bound while port 53 may still be bound.
pub(super) fn build_wall(plan: &Plan) -> Result<Option<OwnedFd>, WallError> {
    if plan.receive_mounts {
        sys::make_mounts_slave().map_err(step("making mounts slaves", HINT_KERNEL))?;
    } else {
        sys::make_mounts_private().map_err(step("making mounts private", HINT_KERNEL))?;
    }
    let sources = plan
        .binds
        .iter()
        .map(|bind| sys::open_path(&bind.path))
        .collect::<Result<Vec<_>, _>>()
        .map_err(step(
            "opening what the pod needs",
            "check that the path exists and that the user running wpod can reach it",
        ))?;
    let root = Path::new(NEW_ROOT);
    sys::mount_tmpfs(root, c"mode=0755,size=1m")
        .map_err(step("mounting the new root", HINT_KERNEL))?;
    // Before the binds, so that none is hidden under it.
    if let Some(folder) = &plan.private_tmpfs {
        let target = inside(root, folder);
        make_target(&target, false)
            .map_err(step("creating the pod's private folder", HINT_KERNEL))?;
        sys::mount_tmpfs(&target, c"mode=0700")
            .map_err(step("mounting the pod's private folder", HINT_KERNEL))?;
    }
    for (bind, source) in plan.binds.iter().zip(&sources) {
        let target = inside(root, &bind.path);
        make_target(&target, bind.file)
            .map_err(step("creating a mount point in the new root", HINT_KERNEL))?;
        sys::bind(rustix::fd::AsFd::as_fd(source), &target)
            .map_err(step("binding into the new root", HINT_KERNEL))?;
        sys::restrict_bind(
            &target,
            MountAccess {
                read_only: bind.read_only,
                exec: bind.exec,
            },
        )
        .map_err(step("restricting a bind", HINT_KERNEL))?;
    }
    drop(sources);
    if let Some(text) = &plan.resolv_conf {
        write_resolv_conf(root, plan, text)
            .map_err(step("writing the pod's /etc/resolv.conf", HINT_KERNEL))?;
    }
    if let Some(text) = &plan.hosts {
        write_etc_file(root, plan, Path::new("/etc/hosts"), text)
            .map_err(step("writing the pod's /etc/hosts", HINT_KERNEL))?;
    }
    let proc = root.join("proc");
    make_target(&proc, false).map_err(step("creating /proc", HINT_KERNEL))?;
    sys::mount_proc(&proc).map_err(step(
        "mounting /proc",
        "a user namespace may mount proc only where the host's /proc is fully visible (not partly covered, as in some containers); run with --isolation=none",
    ))?;
    sys::pivot_into(root).map_err(step("pivot_root", HINT_KERNEL))?;
    sys::seal_root().map_err(step("sealing the new root", HINT_KERNEL))?;
    // emptyDir `medium: Memory`: a tmpfs in the pod's private folder (bound
    // read-write above), while mounting is still allowed.
    for volume in &plan.memory_volumes {
        sys::mount_memory_volume(&volume.path, volume.size_limit).map_err(step(
            "mounting an emptyDir with medium: Memory",
            HINT_KERNEL,
        ))?;
    }
    sys::set_hostname(&plan.hostname).map_err(step("setting the hostname", HINT_KERNEL))?;
    if plan.net_namespace {
        sys::bring_up_loopback().map_err(step("bringing lo up", HINT_KERNEL))?;
    }
    let relay = match &plan.resolv_conf {
        Some(_) => Some(super::dns::relay_socket().map_err(|source| {
            step("binding the DNS relay at 127.0.0.1:53", HINT_KERNEL)(SysError {
                call: "bind",
                path: None,
                source,
            })
        })?),
        None => None,
    };
    sys::new_session().map_err(step("setsid", HINT_KERNEL))?;
    sys::set_no_new_privs().map_err(step("no_new_privs", HINT_KERNEL))?;
    sys::drop_capabilities().map_err(step("dropping capabilities", HINT_KERNEL))?;
    let seccomp_error = |call: &'static str| {
        move |error: seccompiler::Error| SysError {
            call,
            path: None,
            source: std::io::Error::other(error),
        }
    };
    let filters = super::seccomp::filters()
        .map_err(seccomp_error("seccompiler"))
        .map_err(step("building the seccomp filter", HINT_KERNEL))?;
    super::seccomp::install(&filters)
        .map_err(seccomp_error("seccomp(SECCOMP_SET_MODE_FILTER)"))
        .map_err(step(
            "installing the seccomp filter",
            "the kernel needs CONFIG_SECCOMP_FILTER; run with --isolation=none",
        ))?;
    Ok(relay)
}

/// The pod's `/etc/resolv.conf` (and an `/etc/nsswitch.conf` that reads
/// `/etc/hosts` first) in the new root (a tmpfs, sealed read-only later),
/// unless a bind covers `/etc`: then it is the host's own folder, never
/// written.
fn write_resolv_conf(root: &Path, plan: &Plan, text: &str) -> Result<(), SysError> {
    if !write_etc_file(root, plan, Path::new("/etc/resolv.conf"), text)? {
        return Ok(());
    }
    // /etc/hosts before DNS, as hosts configure it: without this file glibc
    // would ask DNS first.
    let nsswitch = inside(root, Path::new("/etc/nsswitch.conf"));
    if let Ok(mut created) = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&nsswitch)
    {
        let _ = std::io::Write::write_all(&mut created, b"hosts: files dns\n");
    }
    Ok(())
}

/// Writes `file` (under `/etc`) with `text` into the new root, unless a
/// bind covers it (then it is the host's own, never written): whether it
/// was written.
fn write_etc_file(root: &Path, plan: &Plan, file: &Path, text: &str) -> Result<bool, SysError> {
    if plan
        .binds
        .iter()
        .any(|bind| file.starts_with(&bind.path) && bind.path != file)
    {
        return Ok(false);
    }
    let target = inside(root, file);
    let error = |source| SysError {
        call: "open",
        path: Some(target.clone()),
        source,
    };
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent).map_err(error)?;
    }
    let mut created = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&target)
        .map_err(error)?;
    std::io::Write::write_all(&mut created, text.as_bytes()).map_err(error)?;
    Ok(true)
}

/// `path` under the new root.
fn inside(root: &Path, path: &Path) -> PathBuf {
    root.join(path.strip_prefix("/").unwrap_or(path))
}

/// Creates a mount point: a directory, or an empty file for a file bind.
/// It is created only where missing: a mount point inside an earlier bind
/// is the host's own path, which exists (each path is bound at itself).
fn make_target(target: &Path, file: bool) -> Result<(), SysError> {
    let error = |source| SysError {
        call: "mkdir",
        path: Some(target.to_owned()),
        source,
    };
    if file {
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(error)?;
        }
        if std::fs::symlink_metadata(target).is_err() {
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(target)
                .map_err(error)?;
        }
        Ok(())
    } else {
        std::fs::create_dir_all(target).map_err(error)
    }
}

/// PID 1 behind its wall: the pod and its options from the request.
fn pod_process(
    request: Request,
    channel: Arc<Channel>,
    host_sockets: Option<OwnedFd>,
    dns_relay: Option<(OwnedFd, Vec<OwnedFd>)>,
) -> Result<PodProcess, ErrorReport> {
    let options = PodOptions {
        prepared_volumes: request
            .plan
            .memory_volumes
            .iter()
            .map(|volume| (volume.name.clone(), volume.path.clone()))
            .collect(),
        // The pod's cgroup holds its ceiling.
        memory_ceiling: false,
        ..request.options
    };
    Ok(PodProcess {
        pod: request.pod,
        options,
        runtime_config: request.runtime,
        control_socket: request.control_socket,
        channel,
        host_sockets: host_sockets.map(|channel| {
            Arc::new(super::broker::BrokerClient::new(channel))
                as Arc<dyn crate::network::HostSockets>
        }),
        dns_relay,
    })
}
