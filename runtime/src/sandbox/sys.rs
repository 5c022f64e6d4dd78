//! The OS wall's system calls, one small function per operation, and the only
//! home of `unsafe` in the sandbox (Linux only).
//!
//! Safe wrappers come first: rustix does the mounts, namespaces, pivot_root,
//! prctls, capabilities, pipes and poll with no `unsafe` here. libc is used
//! only where rustix has no wrapper: `fork` (rustix's is experimental and
//! unsafe all the same), `seccomp(SET_MODE_FILTER)`, `signalfd`, the signal
//! mask, `close_range`, `_exit` and the `SIOCSIFFLAGS` ioctl that brings `lo`
//! up.
//!
//! Every error names the system call and, where there is one, the path:
//! [`SysError`] reaches the user as `mount(/tmp/x): Operation not permitted`.

use rustix::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use rustix::io::Errno;
use std::path::{Path, PathBuf};

/// A failed system call: which, on what, and the errno.
#[derive(Debug, thiserror::Error)]
#[error("{call}{}: {source}", path.as_ref().map(|p| format!("({})", p.display())).unwrap_or_default())]
pub(crate) struct SysError {
    pub call: &'static str,
    pub path: Option<PathBuf>,
    #[source]
    pub source: std::io::Error,
}

impl SysError {
    fn new(call: &'static str, errno: Errno) -> SysError {
        SysError {
            call,
            path: None,
            source: errno.into(),
        }
    }

    fn at(call: &'static str, path: &Path, errno: impl Into<std::io::Error>) -> SysError {
        SysError {
            call,
            path: Some(path.to_owned()),
            source: errno.into(),
        }
    }
}

type Result<T> = std::result::Result<T, SysError>;

/// The namespaces of the wall, as one `unshare` flag set.
pub(crate) fn namespace_flags(net: bool) -> rustix::thread::UnshareFlags {
    use rustix::thread::UnshareFlags as F;
    let mut flags = F::NEWUSER | F::NEWNS | F::NEWPID | F::NEWUTS | F::NEWIPC | F::NEWCGROUP;
    if net {
        flags |= F::NEWNET;
    }
    flags
}

/// Whether this kernel lets the calling user create these namespaces: a
/// throw-away child tries an `unshare` with these flags. Only used to tell
/// which part the kernel refused, once a pod process's own `unshare` failed.
/// The parent may have threads, so the child calls only `unshare` and
/// `_exit` (both async-signal-safe) before it ends.
pub(crate) fn probe_unshare(flags: rustix::thread::UnshareFlags) -> Result<()> {
    // SAFETY: in the child, only async-signal-safe system calls run
    // (unshare, _exit), so forking a possibly multi-threaded process is sound.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(SysError::new("fork", Errno::from_raw_os_error(errno())));
    }
    if pid == 0 {
        // SAFETY: raw system calls in the forked child; no allocation, no locks.
        unsafe {
            let code = if libc::unshare(flags.bits() as libc::c_int) == 0 {
                0
            } else {
                *libc::__errno_location()
            };
            libc::_exit(code);
        }
    }
    let pid = rustix::process::Pid::from_raw(pid).expect("fork returned a positive pid");
    let status = wait_for(pid)?;
    match status {
        0 => Ok(()),
        errno => Err(SysError::new("unshare", Errno::from_raw_os_error(errno))),
    }
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// `unshare(flags)`: the calling process (which must have one thread) moves
/// into new namespaces; a new PID namespace applies to its next child.
pub(crate) fn enter_namespaces(flags: rustix::thread::UnshareFlags) -> Result<()> {
    // SAFETY: the flags never include CLONE_FILES, the one flag that makes
    // `unshare` unsafe (fd tables diverging between threads); the caller is
    // single-threaded anyway, as CLONE_NEWUSER requires.
    unsafe { rustix::thread::unshare_unsafe(flags) }.map_err(|e| SysError::new("unshare", e))
}

/// Maps the calling user to root in the new user namespace, one id each,
/// which works for root and rootless alike (a process may map its own ids).
/// `setgroups` must be denied first or the kernel refuses an unprivileged
/// gid_map (user_namespaces(7)); bubblewrap does the same.
pub(crate) fn write_id_maps(outer_uid: u32, outer_gid: u32) -> Result<()> {
    let write = |path: &str, text: String| {
        std::fs::write(path, text).map_err(|e| SysError::at("write", Path::new(path), e))
    };
    write("/proc/self/setgroups", "deny".into())?;
    write("/proc/self/uid_map", format!("0 {outer_uid} 1\n"))?;
    write("/proc/self/gid_map", format!("0 {outer_gid} 1\n"))
}

/// Who we are outside.
pub(crate) fn outer_ids() -> (u32, u32) {
    (
        rustix::process::getuid().as_raw(),
        rustix::process::getgid().as_raw(),
    )
}

/// The result of [`fork`].
pub(crate) enum Forked {
    Parent(rustix::process::Pid),
    Child,
}

/// `fork()`, for the supervisor (the child is pod-init) and for pod-init (the
/// child is PID 1 of the new PID namespace).
///
/// # Safety
///
/// The calling process must have one thread: a child forked from a process
/// with more could inherit a lock (the allocator's, stdio's) that another
/// thread held, and deadlock on it. The supervisor checks its thread count
/// before it forks (`crate::run` documents the requirement, and
/// `unshare(CLONE_NEWUSER)` in the child would fail otherwise); pod-init and
/// the compiler child are such children themselves.
pub(crate) unsafe fn fork() -> Result<Forked> {
    // SAFETY: the caller guarantees a single thread (see # Safety), so the
    // child inherits no lock held by another thread, and it may allocate and
    // run ordinary code.
    let pid = unsafe { libc::fork() };
    match pid {
        -1 => Err(SysError::new("fork", Errno::from_raw_os_error(errno()))),
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent(
            rustix::process::Pid::from_raw(pid).expect("a positive pid"),
        )),
    }
}

/// `clone3(CLONE_PARENT)`: [`fork`], except that the child's parent is our
/// own parent. pod-init makes PID 1 so, and exits at once: the supervisor
/// waits for PID 1 itself, one process fewer a pod, and no pod-init exit
/// between the pod's end and the supervisor's. `None` where the kernel
/// (before 5.3) or a seccomp filter (Docker's default answers `ENOSYS`)
/// refuses `clone3`: the caller forks instead.
///
/// The child's C library believes it has the thread id of its parent:
/// glibc's `fork` corrects that, a raw `clone3` does not. glibc (2.34 and
/// later) asks the kernel for the id where it signals itself (`raise`,
/// `abort`), and nothing in the pod process signals its main thread by
/// its handle.
///
/// # Safety
///
/// As [`fork`]: the calling process must have one thread.
pub(crate) unsafe fn fork_sibling() -> Option<Result<Forked>> {
    /// `struct clone_args` as of Linux 5.3 (`CLONE_ARGS_SIZE_VER0`).
    #[repr(C)]
    struct CloneArgs {
        flags: u64,
        pidfd: u64,
        child_tid: u64,
        parent_tid: u64,
        exit_signal: u64,
        stack: u64,
        stack_size: u64,
        tls: u64,
    }
    let args = CloneArgs {
        flags: libc::CLONE_PARENT as u64,
        pidfd: 0,
        child_tid: 0,
        parent_tid: 0,
        // With CLONE_PARENT the kernel takes ours (SIGCHLD, as fork made
        // us) and refuses any other.
        exit_signal: 0,
        // No stack: the child goes on on a copy of ours, as after `fork`.
        stack: 0,
        stack_size: 0,
        tls: 0,
    };
    // SAFETY: `args` is a valid `clone_args` of the size passed, alive for
    // the call; without CLONE_VM the child gets a copy of our memory, and
    // the caller guarantees one thread (see # Safety).
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    match pid {
        -1 => match errno() {
            libc::ENOSYS | libc::EPERM => None,
            code => Some(Err(SysError::new("clone3", Errno::from_raw_os_error(code)))),
        },
        0 => Some(Ok(Forked::Child)),
        pid => Some(Ok(Forked::Parent(
            rustix::process::Pid::from_raw(pid as i32).expect("a positive pid"),
        ))),
    }
}

/// A pidfd of `pid` (Linux 5.3): readable once that process has ended.
/// `None` where the kernel or a seccomp filter refuses it.
pub(crate) fn pidfd(pid: u32) -> Option<OwnedFd> {
    let pid = rustix::process::Pid::from_raw(pid as i32)?;
    rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).ok()
}

/// Whether the process behind `pidfd` has ended, without waiting.
pub(crate) fn has_ended(pidfd: BorrowedFd<'_>) -> bool {
    poll_now(pidfd).is_none_or(|events| !events.is_empty())
}

/// What `poll` says of `fd` (asked for input) right now; `None` if it
/// failed.
fn poll_now(fd: BorrowedFd<'_>) -> Option<rustix::event::PollFlags> {
    use rustix::event::{PollFd, PollFlags};
    let mut fds = [PollFd::new(&fd, PollFlags::IN)];
    let zero = rustix::time::Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    rustix::event::poll(&mut fds, Some(&zero)).ok()?;
    Some(fds[0].revents())
}

/// In a forked child: closes every descriptor but stdin, stdout, stderr and
/// `keep`. The supervisor's other descriptors (its signalfd, other pods'
/// pipes) must not cross the wall.
///
/// # Safety
///
/// Every `OwnedFd` (and `File`, socket, ...) of the process but `keep`'s
/// and the standard ones is closed under its owner: the caller must be a
/// freshly forked, single-threaded child that never uses them again nor
/// returns into the code that owns them (it leaves with `exit`).
pub(crate) unsafe fn close_inherited_fds(keep: &[BorrowedFd<'_>]) -> Result<()> {
    let close_range = |first: libc::c_uint, last: libc::c_uint| {
        if first > last {
            return Ok(());
        }
        // SAFETY: close_range only closes descriptors; the caller guarantees
        // that nothing uses or closes them again (see # Safety).
        let done = unsafe { libc::syscall(libc::SYS_close_range, first, last, 0) };
        if done == 0 {
            Ok(())
        } else {
            Err(SysError::new(
                "close_range",
                Errno::from_raw_os_error(errno()),
            ))
        }
    };
    let mut kept: Vec<libc::c_uint> = keep
        .iter()
        .map(|fd| fd.as_raw_fd() as libc::c_uint)
        .filter(|fd| *fd >= 3)
        .collect();
    kept.sort_unstable();
    // Close every gap between the standard descriptors and the kept ones.
    let mut first = 3;
    for fd in kept {
        close_range(first, fd.saturating_sub(1))?;
        first = fd + 1;
    }
    close_range(first, libc::c_uint::MAX)
}

/// In a forked child of the supervisor: an empty signal mask. The supervisor
/// blocks SIGINT and SIGTERM (it reads them from a signalfd); a pod process
/// that kept that mask would never see the SIGTERM it is forwarded.
pub(crate) fn unblock_signals() -> Result<()> {
    // SAFETY: `empty` is initialised by sigemptyset before it is read, and
    // both pointers are to this frame's locals or null.
    let failed = unsafe {
        let mut empty = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
        libc::sigemptyset(empty.as_mut_ptr());
        libc::pthread_sigmask(libc::SIG_SETMASK, empty.as_ptr(), std::ptr::null_mut()) != 0
    };
    if failed {
        return Err(SysError::new("pthread_sigmask", Errno::INVAL));
    }
    Ok(())
}

/// The name `ps` and `top` show for this process (`/proc/PID/comm`, 15
/// bytes at most: longer names are cut).
pub(crate) fn set_process_name(name: &str) {
    let mut bytes: Vec<u8> = name.bytes().filter(|b| *b != 0).take(15).collect();
    bytes.push(0);
    if let Ok(name) = std::ffi::CStr::from_bytes_with_nul(&bytes) {
        let _ = rustix::thread::set_name(name);
    }
}

/// Ends the process now with `code`, running nothing else: no destructor,
/// no atexit handler, no flush of buffers that are copies of the parent's.
pub(crate) fn exit_now(code: i32) -> ! {
    // SAFETY: _exit takes no pointer and is always safe to call; skipping
    // destructors is its purpose here.
    unsafe { libc::_exit(code) }
}

/// The exit status of a child, if it has ended (reaped then), as
/// [`wait_for`] gives it.
pub(crate) fn try_wait(pid: u32) -> Option<i32> {
    let pid = rustix::process::Pid::from_raw(pid as i32)?;
    match rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::NOHANG) {
        Ok(Some((_, status))) => status
            .exit_status()
            .or_else(|| status.terminating_signal().map(|signal| 128 + signal)),
        _ => None,
    }
}

/// Waits for a child and returns its status as a shell would: the exit
/// code, or 128 + the signal that killed it.
pub(crate) fn wait_for(pid: rustix::process::Pid) -> Result<i32> {
    loop {
        match rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::empty()) {
            Ok(Some((_, status))) => {
                if let Some(code) = status.exit_status() {
                    return Ok(code);
                }
                if let Some(signal) = status.terminating_signal() {
                    return Ok(128 + signal);
                }
            }
            Ok(None) => {}
            Err(Errno::INTR) => {}
            Err(e) => return Err(SysError::new("waitpid", e)),
        }
    }
}

/// How many threads this process has (`Threads:` of `/proc/self/status`).
pub(crate) fn thread_count() -> Option<usize> {
    std::fs::read_to_string("/proc/self/status")
        .ok()?
        .lines()
        .find_map(|line| line.strip_prefix("Threads:"))?
        .trim()
        .parse()
        .ok()
}

/// [`wait_for`] by number.
pub(crate) fn wait_for_pid(pid: u32) -> Result<i32> {
    let pid = rustix::process::Pid::from_raw(pid as i32)
        .ok_or_else(|| SysError::new("waitpid", Errno::INVAL))?;
    wait_for(pid)
}

/// `prctl(PR_SET_PDEATHSIG, SIGKILL)`: this process dies with its parent.
pub(crate) fn die_with_parent() -> Result<()> {
    rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))
        .map_err(|e| SysError::new("prctl(PR_SET_PDEATHSIG)", e))
}

/// The parent's pid (0 when the parent is outside our PID namespace).
pub(crate) fn parent_pid() -> u32 {
    rustix::process::getppid().map_or(0, |p| p.as_raw_nonzero().get() as u32)
}

/// `setsid()`: a session of our own, with no controlling terminal, so the
/// terminal's Ctrl-C reaches only the supervisor (which forwards it) and the
/// pod can never reach the terminal (TIOCSTI, job control).
pub(crate) fn new_session() -> Result<()> {
    rustix::process::setsid()
        .map(drop)
        .map_err(|e| SysError::new("setsid", e))
}

/// A pipe whose write end the parent keeps: the child sees POLLHUP on the
/// read end once the parent is gone. Closes the window between `fork` and
/// `PR_SET_PDEATHSIG` in the child, which a `getppid` check cannot (the
/// parent is outside the child's PID namespace).
pub(crate) fn lifeline() -> Result<(OwnedFd, OwnedFd)> {
    pipe()
}

/// A pipe, both ends close-on-exec.
pub(crate) fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map_err(|e| SysError::new("pipe", e))
}

/// Whether the other end of a pipe is closed, without waiting.
pub(crate) fn hung_up(fd: BorrowedFd<'_>) -> bool {
    poll_now(fd).is_none_or(|events| events.contains(rustix::event::PollFlags::HUP))
}

/// `mount("", "/", MS_REC | MS_PRIVATE)`: nothing we mount propagates back to
/// the host, and nothing the host mounts later appears here.
pub(crate) fn make_mounts_private() -> Result<()> {
    use rustix::mount::MountPropagationFlags as P;
    rustix::mount::mount_change("/", P::PRIVATE | P::REC)
        .map_err(|e| SysError::at("mount(MS_REC|MS_PRIVATE)", Path::new("/"), e))
}

/// `mount("", "/", MS_REC | MS_SLAVE)`: as [`make_mounts_private`], nothing
/// we mount propagates back to the host, but what the host mounts later under
/// a shared mount still appears here (the shim's pod folder, see
/// `sandbox::host`).
pub(crate) fn make_mounts_slave() -> Result<()> {
    use rustix::mount::MountPropagationFlags as P;
    rustix::mount::mount_change("/", P::DOWNSTREAM | P::REC)
        .map_err(|e| SysError::at("mount(MS_REC|MS_SLAVE)", Path::new("/"), e))
}

/// Opens a bind source as an `O_PATH` descriptor: the mount then binds what
/// was opened here, not whatever the path names later (no symlink swap
/// between the check and the mount; runc mounts from /proc/self/fd too).
pub(crate) fn open_path(path: &Path) -> Result<OwnedFd> {
    use rustix::fs::{Mode, OFlags};
    rustix::fs::open(path, OFlags::PATH | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| SysError::at("open(O_PATH)", path, e))
}

/// Makes `target` and mounts a private tmpfs there (`mode=0700`, sized by
/// `size` bytes when given): an emptyDir with `medium: Memory`.
pub(crate) fn mount_memory_volume(target: &Path, size: Option<u64>) -> Result<()> {
    std::fs::create_dir_all(target).map_err(|e| SysError::at("mkdir", target, e))?;
    let size = size
        .map(|bytes| format!(",size={bytes}"))
        .unwrap_or_default();
    let options =
        std::ffi::CString::new(format!("mode=0700{size}")).expect("no NUL in tmpfs options");
    mount_tmpfs(target, &options)
}

/// Mounts a tmpfs at `target`.
pub(crate) fn mount_tmpfs(target: &Path, options: &std::ffi::CStr) -> Result<()> {
    use rustix::mount::MountFlags as M;
    rustix::mount::mount(
        "tmpfs",
        target,
        "tmpfs",
        M::NOSUID | M::NODEV | M::NOEXEC,
        Some(options),
    )
    .map_err(|e| SysError::at("mount(tmpfs)", target, e))
}

/// Binds what `source` (an `O_PATH` fd) refers to at `target`, recursively
/// (as bubblewrap's `--bind`: submounts of a hostPath stay visible).
pub(crate) fn bind(source: BorrowedFd<'_>, target: &Path) -> Result<()> {
    let from = format!("/proc/self/fd/{}", source.as_raw_fd());
    rustix::mount::mount_bind_recursive(from.as_str(), target)
        .map_err(|e| SysError::at("mount(MS_BIND)", target, e))
}

/// The per-mount flags a bind remount may set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MountAccess {
    pub read_only: bool,
    pub exec: bool,
}

/// Remounts the bind at `target` with nosuid and nodev, plus read-only and
/// noexec as asked. The flags the mount already has that a user namespace may
/// not clear (the atime ones, and nosuid/nodev/noexec/ro themselves) are
/// kept, as bubblewrap's `bind_mount` does, or the kernel refuses with EPERM.
pub(crate) fn restrict_bind(target: &Path, access: MountAccess) -> Result<()> {
    use rustix::fs::StatVfsMountFlags as S;
    use rustix::mount::MountFlags as M;
    let current = rustix::fs::statvfs(target)
        .map_err(|e| SysError::at("statvfs", target, e))?
        .f_flag;
    let mut flags = M::BIND | M::NOSUID | M::NODEV;
    for (has, keep) in [
        (S::RDONLY, M::RDONLY),
        (S::NOEXEC, M::NOEXEC),
        (S::NOATIME, M::NOATIME),
        (S::NODIRATIME, M::NODIRATIME),
        (S::RELATIME, M::RELATIME),
    ] {
        if current.contains(has) {
            flags |= keep;
        }
    }
    if access.read_only {
        flags |= M::RDONLY;
    }
    if !access.exec {
        flags |= M::NOEXEC;
    }
    rustix::mount::mount_remount(target, flags, "")
        .map_err(|e| SysError::at("mount(MS_REMOUNT|MS_BIND)", target, e))
}

/// Mounts a procfs of our PID namespace at `target`. It must happen before
/// the old root is detached: the kernel allows a new proc mount in a user
/// namespace only while a fully visible one exists (`mount_too_revealing`).
pub(crate) fn mount_proc(target: &Path) -> Result<()> {
    use rustix::mount::MountFlags as M;
    rustix::mount::mount(
        "proc",
        target,
        "proc",
        M::NOSUID | M::NODEV | M::NOEXEC,
        None,
    )
    .map_err(|e| SysError::at("mount(proc)", target, e))
}

/// Makes `new_root` the root and detaches the old one, with runc's
/// `pivot_root(".", ".")`: no directory for the old root is needed in the new
/// one; the old root ends up stacked on `.`, and `umount2(MNT_DETACH)` takes it
/// away (runc `libcontainer/rootfs_linux.go`, `pivotRoot`).
pub(crate) fn pivot_into(new_root: &Path) -> Result<()> {
    rustix::process::chdir(new_root).map_err(|e| SysError::at("chdir", new_root, e))?;
    rustix::process::pivot_root(".", ".").map_err(|e| SysError::at("pivot_root", new_root, e))?;
    rustix::mount::unmount(".", rustix::mount::UnmountFlags::DETACH)
        .map_err(|e| SysError::at("umount2(MNT_DETACH)", Path::new("the old root"), e))?;
    rustix::process::chdir("/").map_err(|e| SysError::at("chdir", Path::new("/"), e))
}

/// Remounts the (tmpfs) root read-only: the skeleton of directories leading to
/// the binds cannot be written to.
pub(crate) fn seal_root() -> Result<()> {
    use rustix::mount::MountFlags as M;
    rustix::mount::mount_remount(
        "/",
        M::BIND | M::RDONLY | M::NOSUID | M::NODEV | M::NOEXEC,
        "",
    )
    .map_err(|e| SysError::at("mount(MS_REMOUNT|MS_RDONLY)", Path::new("/"), e))
}

/// `sethostname` in our UTS namespace.
pub(crate) fn set_hostname(name: &str) -> Result<()> {
    rustix::system::sethostname(name.as_bytes()).map_err(|e| SysError::new("sethostname", e))
}

/// Brings `lo` up in our network namespace (a new one starts with it down),
/// with the `SIOCGIFFLAGS`/`SIOCSIFFLAGS` ioctls, as bubblewrap's
/// `loopback_setup` does through netlink.
pub(crate) fn bring_up_loopback() -> Result<()> {
    const SIOCGIFFLAGS: libc::c_ulong = 0x8913;
    const SIOCSIFFLAGS: libc::c_ulong = 0x8914;
    /// `struct ifreq` with the `ifr_flags` member of its union (40 bytes).
    #[repr(C)]
    struct IfreqFlags {
        name: [u8; 16],
        flags: libc::c_short,
        _rest: [u8; 22],
    }
    let socket = rustix::net::socket(
        rustix::net::AddressFamily::INET,
        rustix::net::SocketType::DGRAM,
        None,
    )
    .map_err(|e| SysError::new("socket", e))?;
    let mut request = IfreqFlags {
        name: [0; 16],
        flags: 0,
        _rest: [0; 22],
    };
    request.name[..2].copy_from_slice(b"lo");
    let ioctl = |call: &'static str, number: libc::c_ulong, request: &mut IfreqFlags| {
        // SAFETY: `request` is a valid, initialised `struct ifreq` layout that
        // outlives the call; both ioctls read and write only its 40 bytes.
        let result = unsafe { libc::ioctl(socket.as_raw_fd(), number, request as *mut IfreqFlags) };
        if result < 0 {
            Err(SysError::at(
                call,
                Path::new("lo"),
                std::io::Error::last_os_error(),
            ))
        } else {
            Ok(())
        }
    };
    ioctl("ioctl(SIOCGIFFLAGS)", SIOCGIFFLAGS, &mut request)?;
    request.flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
    ioctl("ioctl(SIOCSIFFLAGS)", SIOCSIFFLAGS, &mut request)
}

/// `PR_SET_NO_NEW_PRIVS`: nothing this process or its threads do can gain
/// privileges (no setuid exec); also what lets an unprivileged process
/// install a seccomp filter.
pub(crate) fn set_no_new_privs() -> Result<()> {
    rustix::thread::set_no_new_privs(true)
        .map_err(|e| SysError::new("prctl(PR_SET_NO_NEW_PRIVS)", e))
}

/// Drops every capability: the bounding set first (which needs
/// CAP_SETPCAP, so while we still have it), the ambient set, then the
/// effective, permitted and inheritable sets. Threads started later inherit
/// the empty sets.
pub(crate) fn drop_capabilities() -> Result<()> {
    use rustix::thread::{CapabilitySet, CapabilitySets};
    let last = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|text| text.trim().parse::<u32>().ok())
        .unwrap_or(40)
        .min(63);
    for cap in 0..=last {
        match rustix::thread::remove_capability_from_bounding_set(CapabilitySet::from_bits_retain(
            1 << cap,
        )) {
            // Capabilities newer than the kernel are EINVAL: nothing to drop.
            Ok(()) | Err(Errno::INVAL) => {}
            Err(e) => return Err(SysError::new("prctl(PR_CAPBSET_DROP)", e)),
        }
    }
    rustix::thread::clear_ambient_capability_set()
        .map_err(|e| SysError::new("prctl(PR_CAP_AMBIENT_CLEAR_ALL)", e))?;
    rustix::thread::set_capabilities(
        None,
        CapabilitySets {
            effective: CapabilitySet::empty(),
            permitted: CapabilitySet::empty(),
            inheritable: CapabilitySet::empty(),
        },
    )
    .map_err(|e| SysError::new("capset", e))
}

/// SIGINT, SIGTERM and SIGCHLD, blocked on the calling thread and readable
/// from a signalfd instead, for the supervisor's poll loop: Ctrl-C and
/// SIGTERM to forward, and the ends of its children. (A blocked mask is
/// inherited through fork: [`unblock_signals`] clears it in the pod process.)
pub(crate) struct SignalFd {
    fd: OwnedFd,
}

/// The signals [`SignalFd`] takes over.
const SUPERVISOR_SIGNALS: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGCHLD];

/// `SUPERVISOR_SIGNALS` as a signal set.
fn supervisor_signal_set() -> libc::sigset_t {
    // SAFETY: `set` is initialised by sigemptyset before any other use, and
    // every pointer passed is to this frame's own local.
    unsafe {
        let mut set = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
        libc::sigemptyset(set.as_mut_ptr());
        for signal in SUPERVISOR_SIGNALS {
            libc::sigaddset(set.as_mut_ptr(), signal);
        }
        set.assume_init()
    }
}

impl SignalFd {
    pub(crate) fn for_supervisor() -> Result<SignalFd> {
        let set = supervisor_signal_set();
        // SAFETY: `set` is an initialised signal set on this frame; the
        // previous mask is not asked for (null).
        let fd = unsafe {
            if libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) != 0 {
                return Err(SysError::new("pthread_sigmask", Errno::INVAL));
            }
            libc::signalfd(-1, &set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK)
        };
        if fd < 0 {
            return Err(SysError::new("signalfd", Errno::from_raw_os_error(errno())));
        }
        // SAFETY: signalfd returned a new descriptor that nothing else owns.
        let fd = unsafe { <OwnedFd as rustix::fd::FromRawFd>::from_raw_fd(fd) };
        Ok(SignalFd { fd })
    }

    /// The signal waiting to be read, if any.
    pub(crate) fn take(&self) -> Option<i32> {
        let mut info = [0u8; std::mem::size_of::<libc::signalfd_siginfo>()];
        match rustix::io::read(&self.fd, &mut info) {
            Ok(n) if n == info.len() => Some(u32::from_ne_bytes(info[..4].try_into().ok()?) as i32),
            _ => None,
        }
    }

    pub(crate) fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Drop for SignalFd {
    /// Unblocks the signals again (the CLI may go on to run pods in-process).
    fn drop(&mut self) {
        let set = supervisor_signal_set();
        // SAFETY: as in `for_supervisor`.
        unsafe {
            libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
        }
    }
}

/// Sends `signal` to a process.
pub(crate) fn send_signal(pid: u32, signal: i32) {
    if let (Some(pid), Some(signal)) = (
        rustix::process::Pid::from_raw(pid as i32),
        rustix::process::Signal::from_named_raw(signal),
    ) {
        let _ = rustix::process::kill_process(pid, signal);
    }
}

/// Waits until one of `fds` is readable or hung up, or `timeout` passes.
/// Returns which were.
pub(crate) fn wait_readable(fds: &[BorrowedFd<'_>], timeout_ms: Option<u64>) -> Vec<bool> {
    use rustix::event::{PollFd, PollFlags};
    let mut polls: Vec<PollFd<'_>> = fds
        .iter()
        .map(|fd| PollFd::new(fd, PollFlags::IN))
        .collect();
    let timeout = timeout_ms.map(|ms| rustix::time::Timespec {
        tv_sec: (ms / 1000) as i64,
        tv_nsec: ((ms % 1000) * 1_000_000) as i64,
    });
    match rustix::event::poll(&mut polls, timeout.as_ref()) {
        Ok(_) => polls.iter().map(|p| !p.revents().is_empty()).collect(),
        Err(_) => vec![false; fds.len()],
    }
}

/// Puts `socket` in the place of this process's one TCP socket bound at
/// `local`: found among the descriptors in `/proc/self/fd` by that address
/// (unique in the pod's network namespace: a port the kernel chose for it
/// alone), and replaced with `dup3`, which closes the old socket under the
/// same number. The caller owns that descriptor (wasmtime-wasi's socket,
/// which does not expose it) and keeps using it. Only behind the OS wall,
/// where `/proc` is the pod's own.
pub(crate) fn replace_socket_bound_at(
    local: std::net::SocketAddr,
    socket: OwnedFd,
) -> std::io::Result<()> {
    use rustix::fd::FromRawFd;
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc/self/fd")? {
        let Some(fd) = entry?
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        if fd == socket.as_raw_fd() {
            continue;
        }
        // SAFETY: the descriptor is only read (getsockname) while this
        // function runs; one closed meanwhile by another thread (the
        // directory's own, or an unrelated file) just fails the call. The
        // guest's socket cannot be closed meanwhile: its resource is held
        // by the caller's store.
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        if rustix::net::getsockname(fd)
            .ok()
            .and_then(|addr| std::net::SocketAddr::try_from(addr).ok())
            == Some(local)
            && rustix::net::sockopt::socket_type(fd).ok() == Some(rustix::net::SocketType::STREAM)
        {
            found.push(fd.as_raw_fd());
        }
    }
    let [target] = found[..] else {
        return Err(std::io::Error::other(format!(
            "{} sockets bound at {local}, not one",
            found.len()
        )));
    };
    // SAFETY: `target` is the guest's socket, open and owned by the
    // caller's store (see above); dup3 replaces the file behind that number
    // atomically, so the store's owner keeps a valid descriptor.
    let mut target = unsafe { OwnedFd::from_raw_fd(target) };
    let replaced = rustix::io::dup3(&socket, &mut target, rustix::io::DupFlags::CLOEXEC);
    // The number stays the store's: it must not be closed here.
    std::mem::forget(target);
    replaced.map_err(std::io::Error::from)
}

/// A socket of `address`'s family (IPv4 or IPv6), non-blocking and
/// close-on-exec, as tokio and wasmtime-wasi make theirs.
pub(crate) fn inet_socket(
    address: &std::net::SocketAddr,
    kind: rustix::net::SocketType,
) -> std::io::Result<OwnedFd> {
    use rustix::net::{AddressFamily, SocketFlags};
    let family = if address.is_ipv4() {
        AddressFamily::INET
    } else {
        AddressFamily::INET6
    };
    Ok(rustix::net::socket_with(
        family,
        kind,
        SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
        None,
    )?)
}
