//! A container's output into the FIFOs containerd gave for it (`ctr` copies
//! them to its terminal, the CRI plugin into the kubelet's log files).
//!
//! wpod hands every line to a [`wpod::LogSink`] on the thread that runs the
//! guest, which must not wait for a slow reader: lines go through a channel
//! to one task per container that writes them, and closes the FIFOs (the
//! reader's end of file) once the container has ended and every line is out.
//! An `exec`'s output goes the same way, as it is written.

use std::path::{Path, PathBuf};
use tokio::io::AsyncWriteExt;
use tokio::net::unix::pipe;
use tokio::sync::mpsc;
use wpod::{ExecOutput, LogLine, LogSink, Stream};

/// How many lines (or pieces of an exec's output) may wait for the FIFO.
pub const QUEUE: usize = 4096;

/// Where one container's output goes.
#[derive(Debug)]
pub struct Stdio {
    sender: mpsc::Sender<Option<(Stream, Vec<u8>)>>,
    writer: tokio::task::JoinHandle<()>,
}

/// Why a container's output cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum StdioError {
    #[error(
        "{path}: only FIFO paths are supported for a container's output, not `{scheme}` URIs (ctr's `--log-uri`)"
    )]
    Scheme { path: String, scheme: String },
    #[error("{path}: cannot open the container's output FIFO: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl Stdio {
    /// Opens the FIFOs at `stdout` and `stderr` (either may be empty: that
    /// stream is dropped). Must be called inside the tokio runtime.
    ///
    /// # Errors
    ///
    /// [`StdioError`] when a path is not a FIFO the shim can open.
    pub fn open(stdout: &str, stderr: &str) -> Result<Stdio, StdioError> {
        let stdout = open_fifo(stdout)?;
        // `ctr run` without `-t` may give one FIFO for both streams.
        let stderr = open_fifo(stderr)?;
        let (sender, mut receiver) = mpsc::channel::<Option<(Stream, Vec<u8>)>>(QUEUE);
        let writer = tokio::spawn(async move {
            let (mut stdout, mut stderr) = (stdout, stderr);
            while let Some(Some((stream, bytes))) = receiver.recv().await {
                let target = match stream {
                    Stream::Stdout => stdout.as_mut(),
                    Stream::Stderr => stderr.as_mut(),
                };
                if let Some(fifo) = target {
                    // A reader that went away drops the rest of that
                    // stream; the container goes on.
                    if fifo.write_all(&bytes).await.is_err() {
                        match stream {
                            Stream::Stdout => stdout = None,
                            Stream::Stderr => stderr = None,
                        }
                    }
                }
            }
        });
        Ok(Stdio { sender, writer })
    }

    /// The sink to give wpod for the container's lines.
    pub fn sink(&self) -> FifoSink {
        FifoSink {
            sender: self.sender.clone(),
        }
    }

    /// Waits until every line sent so far is written, then closes the
    /// FIFOs. Call once the container has ended; later lines are dropped.
    pub async fn close(self) {
        let Stdio { sender, writer } = self;
        // The end is said, not inferred from the senders' drop: wpod may
        // keep a clone of the sink for as long as it keeps the pod's data.
        // A reader that stopped reading must not hold the shim: after a
        // while, the lines left are dropped with the FIFOs.
        let abort = writer.abort_handle();
        let drained = async move {
            let _ = sender.send(None).await;
            let _ = writer.await;
        };
        if tokio::time::timeout(std::time::Duration::from_secs(10), drained)
            .await
            .is_err()
        {
            abort.abort();
        }
    }
}

/// The [`LogSink`] of one container, and the [`ExecOutput`] of one exec.
#[derive(Debug, Clone)]
pub struct FifoSink {
    sender: mpsc::Sender<Option<(Stream, Vec<u8>)>>,
}

impl FifoSink {
    /// Queues `bytes` for `stream` as they are.
    /// Past [`QUEUE`] pieces waiting (a reader that stopped reading), the
    /// new ones are dropped: a container never waits for its output, and
    /// the shim does not grow with it.
    pub fn write_bytes(&self, stream: Stream, bytes: Vec<u8>) {
        let _ = self.sender.try_send(Some((stream, bytes)));
    }
}

impl LogSink for FifoSink {
    fn line(&self, line: LogLine<'_>) {
        let mut bytes = Vec::with_capacity(line.text.len() + 1);
        bytes.extend_from_slice(line.text);
        bytes.push(b'\n');
        self.write_bytes(line.stream, bytes);
    }
}

impl ExecOutput for FifoSink {
    fn write(&self, stream: Stream, bytes: &[u8]) {
        self.write_bytes(stream, bytes.to_vec());
    }
}

fn open_fifo(path: &str) -> Result<Option<pipe::Sender>, StdioError> {
    if path.is_empty() {
        return Ok(None);
    }
    if let Some((scheme, _)) = path.split_once("://") {
        return Err(StdioError::Scheme {
            path: path.to_owned(),
            scheme: scheme.to_owned(),
        });
    }
    // Opened read-write: a FIFO opened so never blocks and never fails for
    // want of a reader (containerd opens its end when it likes), and the
    // reader sees the end of file once the shim closes it.
    pipe::OpenOptions::new()
        .read_write(true)
        .open_sender(Path::new(path))
        .map(Some)
        .map_err(|source| StdioError::Open {
            path: path.into(),
            source,
        })
}
