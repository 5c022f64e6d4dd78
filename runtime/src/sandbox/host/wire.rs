//! What the pod host and its caller say to each other, and how it travels.
//!
//! One `SOCK_SEQPACKET` socket pair per pod host, as the socket broker has
//! (`broker.rs`): a message is one packet, a JSON object, so no framing is
//! needed and the files attached to it (`SCM_RIGHTS`: a container's output
//! FIFOs) arrive with the message they belong to. Errors cross as
//! [`ErrorReport`]s, cause chain included, as the supervisor's do
//! (`protocol.rs`). Only files cross this way, never a directory: a
//! directory's descriptor would let the walled process walk `..` out of its
//! new root.

use super::{HostEvent, HostedContainer};
use crate::pod::ContainerUsage;
use crate::sandbox::{ErrorReport, Plan};
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};
use serde::{Deserialize, Serialize};
use std::io::{IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::path::PathBuf;

/// The largest message: a container's description is a few KiB, a usage
/// report less; the socket's own buffer holds about 200 KiB.
const MAX_PACKET: usize = 128 << 10;

/// The most files one message carries (stdout and stderr).
const MAX_FILES: usize = 2;

/// From the caller (the shim) to the pod host.
#[derive(Debug, Serialize, Deserialize)]
pub(super) enum ToHost {
    /// The first message: the wall to put up and the runtime to start.
    Setup(Box<Setup>),
    /// Start a container as a one-container pod; its stdout and stderr
    /// FIFOs are attached, as `outputs` says.
    Start {
        id: String,
        container: Box<HostedContainer>,
        outputs: Outputs,
    },
    /// Stop a container: at once (`force`, SIGKILL) or gracefully (SIGTERM).
    Stop { id: String, force: bool },
    /// Run a program in a running container; its output FIFOs attached.
    Exec {
        id: String,
        exec_id: String,
        command: Vec<String>,
        outputs: Outputs,
    },
    /// Stop an exec (Wasm has no signals: its run is dropped).
    StopExec { id: String, exec_id: String },
    /// What a container uses now; answered with `seq`.
    Usage { seq: u64, id: String },
}

/// Which output files are attached to a message, in this order.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub(super) struct Outputs {
    pub stdout: bool,
    pub stderr: bool,
}

/// What the pod host needs before it puts up its wall.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Setup {
    /// The name `ps` shows (`wpod pod NAME`).
    pub name: String,
    pub plan: Plan,
    /// The shim's cgroup for the pod (a directory per hierarchy), which the
    /// host joins before it unshares.
    pub cgroups: Vec<PathBuf>,
    pub runtime: RuntimeSettings,
    /// The caller's PID: the helper's parent, or the caller is gone.
    pub caller: u32,
}

/// [`crate::RuntimeConfig`], as data.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct RuntimeSettings {
    pub cache_dir: Option<PathBuf>,
    pub wasip3: bool,
    pub compiler: String,
}

impl RuntimeSettings {
    pub(super) fn new(config: &crate::RuntimeConfig) -> RuntimeSettings {
        RuntimeSettings {
            cache_dir: config.cache_dir.clone(),
            wasip3: config.wasip3,
            compiler: match config.compiler {
                crate::CompilerChoice::Auto => "auto",
                crate::CompilerChoice::Cranelift => "cranelift",
                crate::CompilerChoice::Winch => "winch",
            }
            .to_owned(),
        }
    }

    pub(super) fn config(&self) -> crate::RuntimeConfig {
        crate::RuntimeConfig {
            cache_dir: self.cache_dir.clone(),
            wasip3: self.wasip3,
            compiler: self.compiler.parse().unwrap_or_default(),
        }
    }
}

/// From the pod host to its caller.
#[derive(Debug, Serialize, Deserialize)]
pub(super) enum FromHost {
    /// From the host's first process: the host PID of the walled process
    /// (PID 1 of the pod's PID namespace).
    Walled {
        pid: u32,
    },
    /// The wall is up and the runtime made: requests are served.
    Ready,
    /// The wall or the runtime could not be had; the host exits.
    Failed(ErrorReport),
    Started {
        id: String,
    },
    /// The container could not start (its program not found, not runnable).
    NotStarted {
        id: String,
        report: ErrorReport,
    },
    /// A container or an exec ended.
    Event(HostEvent),
    Usage {
        seq: u64,
        containers: Vec<ContainerUsage>,
    },
}

/// Sends `message` with `files` attached, as one packet.
pub(in crate::sandbox) fn send(
    socket: BorrowedFd<'_>,
    message: &impl Serialize,
    files: &[BorrowedFd<'_>],
) -> std::io::Result<()> {
    let bytes = serde_json::to_vec(message).map_err(std::io::Error::other)?;
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FILES))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !files.is_empty() && !control.push(SendAncillaryMessage::ScmRights(files)) {
        return Err(std::io::Error::other("too many files for one message"));
    }
    rustix::net::sendmsg(
        socket,
        &[IoSlice::new(&bytes)],
        &mut control,
        SendFlags::NOSIGNAL,
    )?;
    Ok(())
}

/// Receives one packet: its message and the files attached. `Ok(None)`:
/// the other end is closed.
pub(in crate::sandbox) fn recv<T: serde::de::DeserializeOwned>(
    socket: BorrowedFd<'_>,
) -> std::io::Result<Option<(T, Vec<OwnedFd>)>> {
    let mut packet = vec![0u8; MAX_PACKET];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FILES))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let received = rustix::net::recvmsg(
        socket,
        &mut [IoSliceMut::new(&mut packet)],
        &mut control,
        RecvFlags::CMSG_CLOEXEC,
    )?;
    let files: Vec<OwnedFd> = control
        .drain()
        .flat_map(|message| match message {
            RecvAncillaryMessage::ScmRights(fds) => fds.collect::<Vec<_>>(),
            _ => Vec::new(),
        })
        .collect();
    if received.bytes == 0 {
        return Ok(None);
    }
    if received
        .flags
        .intersects(ReturnFlags::TRUNC | ReturnFlags::CTRUNC)
    {
        return Err(std::io::Error::other("a message was cut"));
    }
    let message = serde_json::from_slice(&packet[..received.bytes])
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
    Ok(Some((message, files)))
}

/// A socket pair: (ours, theirs), both close-on-exec.
pub(in crate::sandbox) fn socket_pair() -> std::io::Result<(OwnedFd, OwnedFd)> {
    Ok(rustix::net::socketpair(
        rustix::net::AddressFamily::UNIX,
        rustix::net::SocketType::SEQPACKET,
        rustix::net::SocketFlags::CLOEXEC,
        None,
    )?)
}

/// One end of the socket pair on tokio: sends from any task, receives in one.
#[derive(Debug)]
pub(super) struct Channel {
    socket: tokio::io::unix::AsyncFd<OwnedFd>,
}

impl Channel {
    /// Must be called inside a tokio runtime.
    pub(super) fn new(socket: OwnedFd) -> std::io::Result<Channel> {
        rustix::io::ioctl_fionbio(&socket, true)?;
        // SAFETY: the `OwnedFd` is moved in: nothing else closes or
        // replaces that descriptor while the `AsyncFd` owns it.
        let socket = unsafe { tokio::io::unix::AsyncFd::register(socket)? };
        Ok(Channel { socket })
    }

    pub(super) async fn send(
        &self,
        message: &impl Serialize,
        files: &[BorrowedFd<'_>],
    ) -> std::io::Result<()> {
        loop {
            let mut ready = self.socket.writable().await?;
            match ready.try_io(|socket| send(socket.get_ref().as_fd(), message, files)) {
                Ok(sent) => return sent,
                Err(_would_block) => continue,
            }
        }
    }

    pub(super) async fn recv<T: serde::de::DeserializeOwned>(
        &self,
    ) -> std::io::Result<Option<(T, Vec<OwnedFd>)>> {
        loop {
            let mut ready = self.socket.readable().await?;
            match ready.try_io(|socket| recv(socket.get_ref().as_fd())) {
                Ok(received) => return received,
                Err(_would_block) => continue,
            }
        }
    }

    /// Closes both directions: the other end reads its end of file.
    pub(super) fn shut_down(&self) {
        let _ = rustix::net::shutdown(self.socket.get_ref(), rustix::net::Shutdown::Both);
    }
}
