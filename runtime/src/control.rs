//! A running detached pod's control socket: `<pod folder>/control.sock`, a
//! Unix stream socket that the pod's own process serves (behind the OS wall
//! too: the folder is bound into it), so that `wpod exec` and `wpod top` reach
//! the pod without a daemon. Only the pod's user may connect: the folder is
//! theirs (0700), and the server checks the peer's uid as well.
//!
//! One request a connection, a JSON line ([`Request`]). `Top` is answered
//! with one JSON line ([`TopReport`]). `Exec` is answered with frames, each
//! a tag byte, a big-endian `u32` length and that many bytes: stdout and
//! stderr as the program writes them, then its [`ExecOutcome`] (JSON), or,
//! instead, why it could not run ([`Refusal`], JSON). A client that hangs up
//! ends the program, as a closed `kubectl exec` does.
//!
//! Elsewhere than on Unix there is no such socket: only the types remain.
#![cfg_attr(not(unix), allow(dead_code, unused_imports))]

use crate::pod::{ContainerUsage, ExecOutcome, ExecRequest};
#[cfg(unix)]
use crate::{
    log::Stream,
    pod::{ExecOutput, Execer},
};
use serde::{Deserialize, Serialize};
use std::io;
#[cfg(unix)]
use std::io::{BufRead, Read, Write};
use std::path::PathBuf;
#[cfg(unix)]
use std::{path::Path, sync::Arc};

/// The socket's file name in a pod's folder.
pub const SOCKET: &str = "control.sock";

const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const OUTCOME: u8 = 3;
const REFUSED: u8 = 4;

/// What a client asks.
#[derive(Debug, Serialize, Deserialize)]
enum Request {
    Exec(ExecRequest),
    Top,
}

/// What `wpod top` shows: each container's use, and the pod process's.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TopReport {
    pub containers: Vec<ContainerUsage>,
    /// The resident memory of the pod's process (runtime, compiled code and
    /// every container together), where the system tells it.
    pub process_rss: Option<u64>,
}

/// Why the pod refused an `exec`, and the exit status that says so.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Refusal {
    message: String,
    exit_code: u8,
}

/// Why a request to a pod's control socket failed.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("pod `{pod}` is not running (nothing answers at {})", socket.display())]
    NotRunning { pod: String, socket: PathBuf },
    #[error("{message}")]
    Refused { message: String, exit_code: u8 },
    #[error("pod `{pod}`: exec and top need Unix sockets, which this system does not have")]
    Unsupported { pod: String },
    #[error("talking to pod `{pod}`: {source}")]
    Io {
        pod: String,
        #[source]
        source: io::Error,
    },
}

impl ControlError {
    /// The exit status for it: the pod's own for a refusal, else 125.
    pub fn exit_code(&self) -> u8 {
        match self {
            ControlError::Refused { exit_code, .. } => *exit_code,
            _ => crate::Fault::Input.exit_code(),
        }
    }
}

#[cfg(unix)]
/// Serves `socket` for the pod of `execer` on the current tokio runtime,
/// until the returned task is aborted (when the pod ends). A stale socket
/// file (from a pod of the same name that was killed) is replaced.
///
/// # Errors
///
/// The socket could not be bound.
pub(crate) fn serve(socket: &Path, execer: Execer) -> io::Result<tokio::task::JoinHandle<()>> {
    let _ = std::fs::remove_file(socket);
    let listener = at_short_path(socket, |path| std::os::unix::net::UnixListener::bind(path))?;
    listener.set_nonblocking(true)?;
    let listener = tokio::net::UnixListener::from_std(listener)?;
    let own_uid = rustix::process::geteuid().as_raw();
    Ok(tokio::spawn(async move {
        loop {
            let Ok((connection, _)) = listener.accept().await else {
                continue;
            };
            // The folder is private already; a peer of another uid (mapped
            // to the overflow id inside the pod's user namespace) is refused.
            if connection.peer_cred().map(|cred| cred.uid()).ok() != Some(own_uid) {
                continue;
            }
            tokio::spawn(answer(connection, execer.clone()));
        }
    }))
}

#[cfg(unix)]
async fn answer(connection: tokio::net::UnixStream, execer: Execer) {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
    let (read, mut write) = connection.into_split();
    let mut read = tokio::io::BufReader::new(read);
    let mut line = String::new();
    if read.read_line(&mut line).await.is_err() {
        return;
    }
    let request: Request = match serde_json::from_str(&line) {
        Ok(request) => request,
        Err(error) => {
            let refusal = Refusal {
                message: format!("a request wpod does not understand: {error}"),
                exit_code: crate::Fault::Input.exit_code(),
            };
            let _ = write.write_all(&frame(REFUSED, &json(&refusal))).await;
            return;
        }
    };
    match request {
        Request::Top => {
            let report = TopReport {
                containers: execer.usage(),
                process_rss: process_rss(),
            };
            let mut bytes = json(&report);
            bytes.push(b'\n');
            let _ = write.write_all(&bytes).await;
        }
        Request::Exec(request) => {
            let (frames, mut queued) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
            let writer = tokio::spawn(async move {
                while let Some(frame) = queued.recv().await {
                    if write.write_all(&frame).await.is_err() {
                        return;
                    }
                }
            });
            let output = Arc::new(Frames(frames.clone()));
            let hung_up = async {
                let mut byte = [0u8; 1];
                // The client sends nothing more: any end of reading is its end.
                let _ = read.read(&mut byte).await;
            };
            let ended = tokio::select! {
                ended = execer.exec(request, output) => ended,
                () = hung_up => return,
            };
            let last = match ended {
                Ok(outcome) => frame(OUTCOME, &json(&outcome)),
                Err(error) => frame(
                    REFUSED,
                    &json(&Refusal {
                        message: error.to_string(),
                        exit_code: error.fault().exit_code(),
                    }),
                ),
            };
            let _ = frames.send(last);
            drop(frames);
            let _ = writer.await;
        }
    }
}

#[cfg(unix)]
/// Output of an `exec`, queued as frames for the connection's writer (the
/// guest's thread must not block on a slow client: it may be the thread
/// that runs the writer).
struct Frames(tokio::sync::mpsc::UnboundedSender<Vec<u8>>);

#[cfg(unix)]
impl ExecOutput for Frames {
    fn write(&self, stream: Stream, bytes: &[u8]) {
        let tag = match stream {
            Stream::Stdout => STDOUT,
            Stream::Stderr => STDERR,
        };
        let _ = self.0.send(frame(tag, bytes));
    }
}

fn frame(tag: u8, payload: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(5 + payload.len());
    bytes.push(tag);
    bytes.extend_from_slice(
        &u32::try_from(payload.len())
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    );
    bytes.extend_from_slice(payload);
    bytes
}

fn json(value: &impl Serialize) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}

#[cfg(unix)]
/// The resident memory of this process, from `/proc/self/statm`.
fn process_rss() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * rustix::param::page_size() as u64)
}

#[cfg(unix)]
/// Runs `request` in pod `pod` through `socket`, copying its output to
/// `stdout` and `stderr` as it comes; returns how it ended.
///
/// # Errors
///
/// [`ControlError::NotRunning`] when nothing answers; `Refused` when the pod
/// could not run it; `Io` when the connection broke.
pub(crate) fn exec(
    pod: &str,
    socket: &Path,
    request: ExecRequest,
    stdout: &mut dyn Write,
    stderr: &mut dyn Write,
) -> Result<ExecOutcome, ControlError> {
    let mut connection = connect(pod, socket, &Request::Exec(request))?;
    let io = |source| ControlError::Io {
        pod: pod.to_owned(),
        source,
    };
    loop {
        let mut head = [0u8; 5];
        connection.read_exact(&mut head).map_err(io)?;
        let length = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
        let mut payload = vec![0u8; length];
        connection.read_exact(&mut payload).map_err(io)?;
        let bad = |e: serde_json::Error| io(io::Error::new(io::ErrorKind::InvalidData, e));
        match head[0] {
            STDOUT => stdout
                .write_all(&payload)
                .and_then(|()| stdout.flush())
                .map_err(io)?,
            STDERR => stderr
                .write_all(&payload)
                .and_then(|()| stderr.flush())
                .map_err(io)?,
            OUTCOME => return serde_json::from_slice(&payload).map_err(bad),
            REFUSED => {
                let refusal: Refusal = serde_json::from_slice(&payload).map_err(bad)?;
                return Err(ControlError::Refused {
                    message: refusal.message,
                    exit_code: refusal.exit_code,
                });
            }
            tag => {
                return Err(io(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("unknown frame {tag}"),
                )));
            }
        }
    }
}

#[cfg(unix)]
/// What the containers of pod `pod` use now, through `socket`.
///
/// # Errors
///
/// As [`exec`].
pub(crate) fn top(pod: &str, socket: &Path) -> Result<TopReport, ControlError> {
    let connection = connect(pod, socket, &Request::Top)?;
    let mut line = String::new();
    io::BufReader::new(connection)
        .read_line(&mut line)
        .map_err(|source| ControlError::Io {
            pod: pod.to_owned(),
            source,
        })?;
    serde_json::from_str(&line).map_err(|e| ControlError::Io {
        pod: pod.to_owned(),
        source: io::Error::new(io::ErrorKind::InvalidData, e),
    })
}

#[cfg(unix)]
fn connect(
    pod: &str,
    socket: &Path,
    request: &Request,
) -> Result<std::os::unix::net::UnixStream, ControlError> {
    let mut connection =
        at_short_path(socket, |path| std::os::unix::net::UnixStream::connect(path)).map_err(
            |error| match error.kind() {
                io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => {
                    ControlError::NotRunning {
                        pod: pod.to_owned(),
                        socket: socket.to_owned(),
                    }
                }
                _ => ControlError::Io {
                    pod: pod.to_owned(),
                    source: error,
                },
            },
        )?;
    let mut line = json(request);
    line.push(b'\n');
    connection
        .write_all(&line)
        .map_err(|source| ControlError::Io {
            pod: pod.to_owned(),
            source,
        })?;
    Ok(connection)
}

#[cfg(unix)]
/// Calls `use_path` with `path`, or, where `path` is longer than a socket
/// address holds (108 bytes), with the same file reached through an open
/// descriptor of its folder (`/proc/self/fd/N/NAME`).
fn at_short_path<T>(path: &Path, use_path: impl FnOnce(&Path) -> io::Result<T>) -> io::Result<T> {
    const SUN_PATH: usize = 100;
    if path.as_os_str().len() < SUN_PATH || !cfg!(target_os = "linux") {
        return use_path(path);
    }
    let (Some(folder), Some(name)) = (path.parent(), path.file_name()) else {
        return use_path(path);
    };
    let folder = rustix::fs::open(
        folder,
        rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )?;
    let short = Path::new("/proc/self/fd")
        .join(rustix::fd::AsRawFd::as_raw_fd(&folder).to_string())
        .join(name);
    use_path(&short)
}
