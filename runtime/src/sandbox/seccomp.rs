//! The seccomp filter of a pod's process: what a pod never needs fails with
//! EPERM (never a kill: a runtime that probes a call keeps working). The
//! rules are data ([`rules`]) and compiled to BPF by rust-vmm's
//! `seccompiler` (Firecracker's), which also checks the architecture (a
//! foreign ABI's numbers would mean other calls, so one is killed, as
//! Docker's default profile does).
//!
//! seccompiler cannot say "any number from 0x4000_0000 up", which is how
//! x86_64's x32 ABI reaches the same calls under other numbers: one
//! four-instruction filter of wpod's own ([`x32_guard`]) refuses that ABI
//! outright, as libseccomp does for a native x86_64 filter.

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule,
};
use std::collections::BTreeMap;

/// One rule of the filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rule {
    /// The call fails with EPERM.
    Deny(libc::c_long),
    /// The call fails with ENOSYS, so that callers fall back to an older
    /// call the filter can inspect (`clone3` → `clone`, as Docker does).
    NoSys(libc::c_long),
    /// `ioctl(fd, request)` fails with EPERM for this request (compared on
    /// the low 32 bits, which is all the kernel reads: CVE-2019-10063).
    DenyIoctl(u32),
    /// `clone` fails with EPERM when any of these flags is set.
    DenyCloneFlags(u64),
}

/// What a pod never needs. `openat2` is not here at all: rustix and cap-std
/// try it and fall back on ENOSYS.
pub(crate) fn rules() -> Vec<Rule> {
    use libc::*;
    let mut rules: Vec<Rule> = [
        SYS_mount,
        SYS_umount2,
        SYS_pivot_root,
        SYS_chroot,
        SYS_unshare,
        SYS_setns,
        SYS_ptrace,
        SYS_process_vm_readv,
        SYS_process_vm_writev,
        SYS_bpf,
        SYS_keyctl,
        SYS_add_key,
        SYS_request_key,
        SYS_kexec_load,
        SYS_kexec_file_load,
        SYS_init_module,
        SYS_finit_module,
        SYS_delete_module,
        SYS_io_uring_setup,
        SYS_io_uring_enter,
        SYS_io_uring_register,
        SYS_perf_event_open,
        SYS_userfaultfd,
        SYS_fsopen,
        SYS_fsmount,
        SYS_fsconfig,
        SYS_fspick,
        SYS_move_mount,
        SYS_open_tree,
        SYS_mount_setattr,
        SYS_open_by_handle_at,
        SYS_name_to_handle_at,
        SYS_swapon,
        SYS_swapoff,
        SYS_reboot,
        SYS_settimeofday,
        SYS_clock_settime,
        SYS_clock_adjtime,
        SYS_adjtimex,
        SYS_acct,
        SYS_quotactl,
        SYS_syslog,
        SYS_personality,
        SYS_vhangup,
        SYS_lookup_dcookie,
    ]
    .into_iter()
    .map(Rule::Deny)
    .collect();
    rules.push(Rule::NoSys(SYS_clone3));
    rules.push(Rule::DenyIoctl(TIOCSTI as u32));
    rules.push(Rule::DenyIoctl(TIOCLINUX as u32));
    rules.push(Rule::DenyCloneFlags(
        (CLONE_NEWUSER
            | CLONE_NEWNS
            | CLONE_NEWPID
            | CLONE_NEWNET
            | CLONE_NEWUTS
            | CLONE_NEWIPC
            | CLONE_NEWCGROUP) as u64,
    ));
    rules
}

/// The programs to install, in order: the x32 guard (x86_64 only), the
/// EPERM filter and the ENOSYS filter (a filter has one action for what it
/// matches; the kernel applies the strictest answer of all filters, and
/// their calls do not overlap).
pub(crate) fn filters() -> Result<Vec<BpfProgram>, seccompiler::Error> {
    let arch = std::env::consts::ARCH.try_into()?;
    let mut eperm: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    let mut enosys: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for rule in rules() {
        match rule {
            // No conditions: the call matches whatever its arguments.
            Rule::Deny(nr) => {
                eperm.insert(nr, Vec::new());
            }
            Rule::NoSys(nr) => {
                enosys.insert(nr, Vec::new());
            }
            Rule::DenyIoctl(request) => {
                let condition = SeccompCondition::new(
                    1,
                    SeccompCmpArgLen::Dword,
                    SeccompCmpOp::Eq,
                    u64::from(request),
                )?;
                eperm
                    .entry(libc::SYS_ioctl)
                    .or_default()
                    .push(SeccompRule::new(vec![condition])?);
            }
            Rule::DenyCloneFlags(flags) => {
                // One rule per flag: any one set denies the call.
                for bit in (0..64).map(|b| 1u64 << b).filter(|bit| flags & bit != 0) {
                    let condition = SeccompCondition::new(
                        0,
                        SeccompCmpArgLen::Qword,
                        SeccompCmpOp::MaskedEq(bit),
                        bit,
                    )?;
                    eperm
                        .entry(libc::SYS_clone)
                        .or_default()
                        .push(SeccompRule::new(vec![condition])?);
                }
            }
        }
    }
    let compile = |rules, action| -> Result<BpfProgram, seccompiler::Error> {
        Ok(SeccompFilter::new(rules, SeccompAction::Allow, action, arch)?.try_into()?)
    };
    let mut programs = Vec::new();
    programs.extend(x32_guard());
    programs.push(compile(eperm, SeccompAction::Errno(libc::EPERM as u32))?);
    programs.push(compile(enosys, SeccompAction::Errno(libc::ENOSYS as u32))?);
    Ok(programs)
}

/// Installs `programs` on the calling thread (threads started afterwards
/// inherit them). Needs no_new_privs, so it comes last of all the set-up,
/// like bubblewrap's ("the last thing before execve()").
pub(crate) fn install(programs: &[BpfProgram]) -> Result<(), seccompiler::Error> {
    for program in programs {
        seccompiler::apply_filter(program)?;
    }
    Ok(())
}

/// x86_64's x32 ABI numbers its calls from 0x4000_0000: refuse them all
/// with EPERM. (The architecture itself is checked by seccompiler's
/// filters: x32 shares x86_64's AUDIT_ARCH.)
fn x32_guard() -> Option<BpfProgram> {
    if !cfg!(target_arch = "x86_64") {
        return None;
    }
    use libc::{BPF_ABS, BPF_JGE, BPF_JMP, BPF_K, BPF_LD, BPF_RET, BPF_W};
    let statement = |code: u32, k: u32| seccompiler::sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    };
    // Offset of the call's number in `struct seccomp_data`.
    const NR: u32 = 0;
    Some(vec![
        statement(BPF_LD | BPF_W | BPF_ABS, NR),
        seccompiler::sock_filter {
            code: (BPF_JMP | BPF_JGE | BPF_K) as u16,
            jt: 0,
            jf: 1,
            k: 0x4000_0000,
        },
        statement(
            BPF_RET | BPF_K,
            libc::SECCOMP_RET_ERRNO | libc::EPERM as u32,
        ),
        statement(BPF_RET | BPF_K, libc::SECCOMP_RET_ALLOW),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `body` in a forked, single-threaded child and returns its exit
    /// code: youki's `test_in_child_process`. The test harness has threads, so
    /// the child does nothing but raw system calls and `_exit`.
    fn in_child(body: impl FnOnce() -> i32) -> i32 {
        let programs = filters().expect("the filters build");
        // SAFETY: the child only makes raw system calls (prctl, seccomp and
        // whatever `body` does, all allocation-free) and leaves with `_exit`.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            // SAFETY: raw calls in the child, see above; the programs were
            // built before the fork, so nothing allocates here.
            unsafe {
                if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                    libc::_exit(100);
                }
                for program in &programs {
                    let fprog = libc::sock_fprog {
                        len: program.len() as u16,
                        filter: program.as_ptr().cast_mut().cast(),
                    };
                    if libc::syscall(libc::SYS_seccomp, libc::SECCOMP_SET_MODE_FILTER, 0, &fprog)
                        != 0
                    {
                        libc::_exit(101);
                    }
                }
                libc::_exit(body());
            }
        }
        let pid = rustix::process::Pid::from_raw(pid).expect("a child pid");
        match rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::empty()) {
            Ok(Some((_, status))) => status.exit_status().unwrap_or(-1),
            _ => -1,
        }
    }

    /// The errno of a raw call that should fail, or 0 if it succeeded.
    fn errno_of(result: libc::c_long) -> i32 {
        if result < 0 {
            // SAFETY: reading this thread's errno right after the call.
            unsafe { *libc::__errno_location() }
        } else {
            0
        }
    }

    /// A system call to try, and the errno the filter must answer.
    type Case = (&'static str, fn() -> libc::c_long, i32);

    #[test]
    fn the_filter_denies_what_a_pod_never_needs_with_eperm() {
        let cases: Vec<Case> = vec![
            (
                "mount",
                || {
                    // SAFETY: valid NUL-terminated strings; the call is refused.
                    unsafe {
                        libc::syscall(
                            libc::SYS_mount,
                            c"none".as_ptr(),
                            c"/".as_ptr(),
                            c"tmpfs".as_ptr(),
                            0,
                            0,
                        )
                    }
                },
                libc::EPERM,
            ),
            (
                "unshare",
                || {
                    // SAFETY: a plain system call with an integer argument.
                    unsafe { libc::syscall(libc::SYS_unshare, libc::CLONE_NEWUSER) }
                },
                libc::EPERM,
            ),
            (
                "ptrace",
                || {
                    // SAFETY: PTRACE_TRACEME takes no pointers.
                    unsafe { libc::syscall(libc::SYS_ptrace, libc::PTRACE_TRACEME, 0, 0, 0) }
                },
                libc::EPERM,
            ),
            (
                "bpf",
                || {
                    // SAFETY: the call is refused before the kernel reads the pointer.
                    unsafe { libc::syscall(libc::SYS_bpf, 0, 0, 0) }
                },
                libc::EPERM,
            ),
            (
                "io_uring_setup",
                || {
                    // SAFETY: as above.
                    unsafe { libc::syscall(libc::SYS_io_uring_setup, 1, 0) }
                },
                libc::EPERM,
            ),
            (
                "clone3",
                || {
                    // SAFETY: as above.
                    unsafe { libc::syscall(libc::SYS_clone3, 0, 0) }
                },
                libc::ENOSYS,
            ),
            (
                "TIOCSTI",
                || {
                    let c = 0u8;
                    // SAFETY: `c` outlives the call, which is refused anyway.
                    unsafe {
                        libc::syscall(
                            libc::SYS_ioctl,
                            0,
                            libc::TIOCSTI as libc::c_ulong | (1 << 32),
                            &c,
                        )
                    }
                },
                libc::EPERM,
            ),
            (
                "clone(CLONE_NEWUSER)",
                || {
                    // SAFETY: refused before the kernel makes a child.
                    unsafe {
                        libc::syscall(
                            libc::SYS_clone,
                            libc::CLONE_NEWUSER as libc::c_ulong | libc::SIGCHLD as libc::c_ulong,
                            0,
                            0,
                            0,
                            0,
                        )
                    }
                },
                libc::EPERM,
            ),
            #[cfg(target_arch = "x86_64")]
            (
                "x32 mount",
                || {
                    // SAFETY: refused whatever the arguments.
                    unsafe { libc::syscall(libc::SYS_mount | 0x4000_0000, 0, 0, 0, 0, 0) }
                },
                libc::EPERM,
            ),
        ];
        for (name, call, expected) in cases {
            let got = in_child(|| errno_of(call()));
            assert_eq!(got, expected, "{name}: errno {got}, expected {expected}");
        }
    }

    #[test]
    fn the_filter_allows_what_the_runtime_uses() {
        // getpid, a plain clone-free call, and openat2 (probed by rustix and
        // cap-std, which fall back on ENOSYS; it must never be killed).
        let got = in_child(|| {
            // SAFETY: getpid has no arguments.
            let pid = unsafe { libc::syscall(libc::SYS_getpid) };
            if pid <= 0 {
                return 1;
            }
            // SAFETY: a NULL `how` is refused by the kernel with EFAULT/EINVAL.
            let result =
                unsafe { libc::syscall(libc::SYS_openat2, libc::AT_FDCWD, c"/".as_ptr(), 0, 0) };
            let errno = errno_of(result);
            if errno == libc::EPERM { 2 } else { 0 }
        });
        assert_eq!(got, 0, "the filter blocked getpid (1) or openat2 (2)");
    }
}
