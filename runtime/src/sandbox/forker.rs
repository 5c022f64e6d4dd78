//! The fork server: where a run of many pods forks their pod-inits from.
//!
//! Each pod process is a fork of the process that starts it, and keeps
//! that process's memory copy-on-write. Forked from the supervisor, the
//! n-th pod got the supervisor's heap as it was after n - 1 starts, and
//! every page the supervisor wrote after a fork (its bookkeeping of the
//! pods started since, their messages) left the pods forked before it with
//! a copy of their own: at 1,000 idle pods the last ones held 4.3 MiB each
//! and the first 1.0 MiB. The fork server is a copy of the supervisor made
//! once, after every pod of the run is prepared; it writes almost nothing
//! from then on, so the pods it forks share one heap, whatever their
//! number.
//!
//! The supervisor sends it a pod's index and the write end of that pod's
//! status pipe (`SCM_RIGHTS` on a `SOCK_SEQPACKET` pair, the pod host's
//! `wire`); it makes pod-init with `clone3(CLONE_PARENT)`, so that pod-init
//! is the supervisor's child as if the supervisor had forked it, answers
//! with its pid, and closes its copies of that pod's descriptors. Where
//! `clone3` is refused it answers so, and the supervisor forks the pod
//! itself. It ends when the supervisor closes its end (after the run's
//! first pods have started) or dies.

use super::host::wire;
use super::sys;
use rustix::fd::{AsFd as _, BorrowedFd, OwnedFd};
use serde::{Deserialize, Serialize};

/// The supervisor's side.
pub(super) struct ForkServer {
    socket: OwnedFd,
    pid: rustix::process::Pid,
    /// It said `clone3` is refused: not asked again.
    refused: std::cell::Cell<bool>,
}

/// Start pod `pod`; its status pipe's write end is attached.
#[derive(Serialize, Deserialize)]
struct Fork {
    pod: usize,
}

#[derive(Serialize, Deserialize)]
enum Forked {
    /// pod-init runs, the supervisor's child.
    Started { pid: u32 },
    /// The kernel (or a seccomp filter) refuses `clone3`: fork it yourself.
    Refused,
    /// `clone3` failed (no memory, the pids limit).
    Failed { errno: i32 },
}

impl ForkServer {
    /// Forks the server, which works on its copy of `pods` (the caller's
    /// stay the caller's): `start` runs in each pod-init it makes and should
    /// never return (the process exits if it does); `done` runs in the
    /// server after each fork, to close its copies of that pod's
    /// descriptors.
    ///
    /// # Safety
    ///
    /// As [`sys::fork`]: the calling process must have one thread. The
    /// server never returns into the caller's code (it leaves with `exit`),
    /// so none of the caller's values is dropped there.
    pub(super) unsafe fn start<S>(
        pods: &mut S,
        supervisor: u32,
        mut start: impl FnMut(&mut S, usize, OwnedFd),
        mut done: impl FnMut(&mut S, usize),
    ) -> std::io::Result<ForkServer> {
        let (ours, theirs) = wire::socket_pair()?;
        // SAFETY: one thread, as the caller guarantees.
        match unsafe { sys::fork() }.map_err(|e| e.source)? {
            sys::Forked::Parent(pid) => {
                drop(theirs);
                Ok(ForkServer {
                    socket: ours,
                    pid,
                    refused: std::cell::Cell::new(false),
                })
            }
            sys::Forked::Child => {
                drop(ours);
                // A panic must not unwind into the supervisor's code.
                let served = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    serve(theirs.as_fd(), supervisor, pods, &mut start, &mut done)
                }));
                sys::exit_now(i32::from(served.is_err()))
            }
        }
    }

    /// Asks for pod `pod`'s pod-init, with `status` (the write end of its
    /// status pipe). `Ok(None)`: refused, fork it yourself.
    pub(super) fn fork(&self, pod: usize, status: BorrowedFd<'_>) -> std::io::Result<Option<u32>> {
        if self.refused.get() {
            return Ok(None);
        }
        wire::send(self.socket.as_fd(), &Fork { pod }, &[status])?;
        match wire::recv::<Forked>(self.socket.as_fd())? {
            Some((Forked::Started { pid }, _)) => Ok(Some(pid)),
            Some((Forked::Refused, _)) => {
                self.refused.set(true);
                Ok(None)
            }
            Some((Forked::Failed { errno }, _)) => Err(std::io::Error::from_raw_os_error(errno)),
            None => Err(std::io::Error::other("the fork server ended")),
        }
    }
}

impl Drop for ForkServer {
    fn drop(&mut self) {
        // Its end of file: it exits.
        let _ = rustix::net::shutdown(&self.socket, rustix::net::Shutdown::Both);
        let _ = sys::wait_for(self.pid);
    }
}

/// The server's loop. Returns when the supervisor closed its end.
fn serve<S>(
    socket: BorrowedFd<'_>,
    supervisor: u32,
    pods: &mut S,
    start: &mut impl FnMut(&mut S, usize, OwnedFd),
    done: &mut impl FnMut(&mut S, usize),
) {
    sys::set_process_name("wpod forks");
    if sys::die_with_parent().is_err() || sys::parent_pid() != supervisor {
        return;
    }
    while let Ok(Some((Fork { pod }, mut files))) = wire::recv::<Fork>(socket) {
        let Some(status) = files.pop() else { return };
        // SAFETY: the server has one thread (a fork of the single-threaded
        // supervisor that has started none).
        let answer = match unsafe { sys::fork_sibling() } {
            None => Forked::Refused,
            Some(Err(error)) => Forked::Failed {
                errno: error.source.raw_os_error().unwrap_or(libc::EIO),
            },
            Some(Ok(sys::Forked::Child)) => {
                start(pods, pod, status);
                sys::exit_now(1)
            }
            Some(Ok(sys::Forked::Parent(pid))) => Forked::Started {
                pid: pid.as_raw_nonzero().get() as u32,
            },
        };
        drop(status);
        done(pods, pod);
        if wire::send(socket, &answer, &[]).is_err() {
            return;
        }
    }
}
