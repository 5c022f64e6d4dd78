//! A container's (or an exec's) output into the FIFOs its caller passed in:
//! containerd's, which `ctr` copies to its terminal and the CRI plugin into
//! the kubelet's log files.
//!
//! wpod hands every line to a [`LogSink`] on the thread that runs the guest,
//! which must not wait for a slow reader: lines go through a bounded channel
//! to one task per container that writes them, and closes the FIFOs (the
//! reader's end of file) once the container has ended and every line is out.

use crate::log::{LogLine, LogSink, Stream};
use crate::pod::ExecOutput;
use rustix::fd::OwnedFd;
use tokio::io::AsyncWriteExt;
use tokio::net::unix::pipe;
use tokio::sync::mpsc;

/// How many lines (or pieces of an exec's output) may wait for the FIFO.
pub(super) const QUEUE: usize = 4096;

/// Where one container's output goes.
#[derive(Debug)]
pub(super) struct Output {
    sender: mpsc::Sender<Option<(Stream, Vec<u8>)>>,
    writer: tokio::task::JoinHandle<()>,
}

impl Output {
    /// Writes to `stdout` and `stderr` (either may be missing: that stream
    /// is dropped). Must be called inside the tokio runtime.
    ///
    /// # Errors
    ///
    /// A file that is not a FIFO open for writing.
    pub(super) fn new(stdout: Option<OwnedFd>, stderr: Option<OwnedFd>) -> std::io::Result<Output> {
        let open = |fd: Option<OwnedFd>| fd.map(pipe::Sender::from_owned_fd).transpose();
        let (stdout, stderr) = (open(stdout)?, open(stderr)?);
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
        Ok(Output { sender, writer })
    }

    /// The sink to give wpod for the container's lines, or an exec's output.
    pub(super) fn sink(&self) -> FifoSink {
        FifoSink {
            sender: self.sender.clone(),
        }
    }

    /// Waits until every line sent so far is written, then closes the
    /// FIFOs. Call once the container has ended; later lines are dropped.
    pub(super) async fn close(self) {
        let Output { sender, writer } = self;
        // The end is said, not inferred from the senders' drop: wpod may
        // keep a clone of the sink for as long as it keeps the pod's data.
        // A reader that stopped reading must not hold the host: after a
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
pub(super) struct FifoSink {
    sender: mpsc::Sender<Option<(Stream, Vec<u8>)>>,
}

impl FifoSink {
    /// Queues `bytes` for `stream` as they are. Past [`QUEUE`] pieces
    /// waiting (a reader that stopped reading), the new ones are dropped: a
    /// container never waits for its output, and the host does not grow
    /// with it.
    pub(super) fn write_bytes(&self, stream: Stream, bytes: Vec<u8>) {
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
