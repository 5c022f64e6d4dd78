//! Container output: stdout and stderr become lines tagged with the pod and
//! container, handed to a [`LogSink`] and kept per container for later reading.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// Which output a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// One line a container printed, without its newline.
#[derive(Debug, Clone, Copy)]
pub struct LogLine<'a> {
    pub pod: &'a str,
    pub container: &'a str,
    pub stream: Stream,
    /// The line's bytes as the guest wrote them (not necessarily UTF-8).
    pub text: &'a [u8],
}

/// Receives containers' output, line by line. Called from the thread running
/// the guest: keep it quick (hand off to a channel for slow work).
///
/// # Examples
///
/// ```
/// struct Print;
/// impl wpod::LogSink for Print {
///     fn line(&self, line: wpod::LogLine<'_>) {
///         println!("[{}] {}", line.container, String::from_utf8_lossy(line.text));
///     }
/// }
/// ```
pub trait LogSink: Send + Sync + 'static {
    fn line(&self, line: LogLine<'_>);

    /// A piece of a line not finished yet (a prompt without its newline),
    /// as soon as it is written: only the new bytes. The whole line still
    /// comes to [`LogSink::line`] once it ends. The default ignores pieces.
    fn partial(&self, piece: LogLine<'_>) {
        let _ = piece;
    }

    /// Something happened to `container` of `pod` that its user should
    /// hear of, in words (a probe failed, it restarts): the terminal shows
    /// these with the container's lines. The default ignores them.
    fn event(&self, pod: &str, container: &str, message: &str) {
        let _ = (pod, container, message);
    }

    /// `container` of `pod` is about to run again (its `restart_count`th
    /// restart): what comes next is a new instance's output, as the
    /// kubelet's log files tell apart. The default does nothing.
    fn restarted(&self, pod: &str, container: &str, restart_count: u32) {
        let _ = (pod, container, restart_count);
    }
}

/// Drops every line (the default sink: the library never prints).
#[derive(Debug, Default)]
pub struct DiscardLogs;

impl LogSink for DiscardLogs {
    fn line(&self, _: LogLine<'_>) {}
}

/// Writes each container's lines to `<root>/<pod>/logs/<container>.log` in
/// the kubelet's CRI log format, one line per line the container printed:
/// `2026-11-29T10:00:00.123456789Z stdout F text`. A file is rotated to
/// `<container>.log.1` when it passes `max_bytes` (one old file is kept).
/// When a container restarts, its file becomes `<container>.previous.log`
/// (`wpod logs --previous`, as the kubelet keeps the last instance's log).
/// Lines that cannot be written (a full disk) are dropped: a container never
/// waits for its logs.
///
/// # Examples
///
/// ```
/// let logs = wpod::FileLogs::new(std::env::temp_dir().join("wpod-doc-logs"), 10 << 20);
/// # let _ = logs;
/// ```
#[derive(Debug)]
pub struct FileLogs {
    root: std::path::PathBuf,
    max_bytes: u64,
    files: Mutex<HashMap<(String, String), (std::fs::File, u64)>>,
}

impl FileLogs {
    pub fn new(root: impl Into<std::path::PathBuf>, max_bytes: u64) -> FileLogs {
        FileLogs {
            root: root.into(),
            max_bytes,
            files: Mutex::new(HashMap::new()),
        }
    }

    /// Where `container` of `pod` logs under `root`.
    pub fn path(root: &std::path::Path, pod: &str, container: &str) -> std::path::PathBuf {
        root.join(pod).join("logs").join(format!("{container}.log"))
    }

    /// Where the log of the instance of `container` before its last
    /// restart is kept.
    pub fn previous_path(root: &std::path::Path, pod: &str, container: &str) -> std::path::PathBuf {
        root.join(pod)
            .join("logs")
            .join(format!("{container}.previous.log"))
    }

    fn open(&self, pod: &str, container: &str) -> io::Result<(std::fs::File, u64)> {
        let path = FileLogs::path(&self.root, pod, container);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)?;
        let size = file.metadata()?.len();
        Ok((file, size))
    }
}

impl LogSink for FileLogs {
    fn line(&self, line: LogLine<'_>) {
        use std::io::Write as _;
        let mut record = humantime::format_rfc3339_nanos(std::time::SystemTime::now())
            .to_string()
            .into_bytes();
        record.extend_from_slice(match line.stream {
            Stream::Stdout => b" stdout F ",
            Stream::Stderr => b" stderr F ",
        });
        record.extend_from_slice(line.text);
        record.push(b'\n');
        let Ok(mut files) = self.files.lock() else {
            return;
        };
        let key = (line.pod.to_owned(), line.container.to_owned());
        if !files.contains_key(&key) {
            match self.open(line.pod, line.container) {
                Ok(opened) => {
                    files.insert(key.clone(), opened);
                }
                Err(_) => return,
            }
        }
        let Some((file, size)) = files.get_mut(&key) else {
            return;
        };
        if *size > 0 && *size + record.len() as u64 > self.max_bytes {
            let path = FileLogs::path(&self.root, line.pod, line.container);
            let _ = std::fs::rename(&path, path.with_extension("log.1"));
            match self.open(line.pod, line.container) {
                Ok((reopened, _)) => *file = reopened,
                Err(_) => return,
            }
            *size = 0;
        }
        if file.write_all(&record).is_ok() {
            *size += record.len() as u64;
        }
    }

    fn restarted(&self, pod: &str, container: &str, _restart_count: u32) {
        let Ok(mut files) = self.files.lock() else {
            return;
        };
        files.remove(&(pod.to_owned(), container.to_owned()));
        let path = FileLogs::path(&self.root, pod, container);
        let _ = std::fs::remove_file(path.with_extension("log.1"));
        let _ = std::fs::rename(&path, FileLogs::previous_path(&self.root, pod, container));
    }
}

/// The last lines of each container, kept for [`crate::PodHandle::logs`].
#[derive(Debug, Default)]
pub(crate) struct LogStore {
    containers: Mutex<HashMap<String, Kept>>,
}

/// One container's kept lines and their size in bytes.
#[derive(Debug, Default)]
struct Kept {
    lines: VecDeque<String>,
    bytes: usize,
}

/// How much of each container's output is kept in memory: its last lines
/// up to this many bytes (the oldest go first). Bounded in bytes, not lines,
/// so that a container printing long lines costs no more than one printing
/// short ones: the pod process holds this outside any container's memory
/// limit. Together with [`MAX_LINE`] for each stream's partial line, it is
/// the most a container's output can cost.
pub(crate) const KEPT_LOG_BYTES: usize = 1024 * 1024;

/// What a kept line costs besides its text (the `String` and its slot).
const LINE_OVERHEAD: usize = 32;

impl LogStore {
    fn push(&self, container: &str, text: &[u8]) {
        let mut containers = self.containers.lock().expect("log store poisoned");
        let kept = match containers.get_mut(container) {
            Some(kept) => kept,
            None => containers.entry(container.to_owned()).or_default(),
        };
        let line = String::from_utf8_lossy(text).into_owned();
        kept.bytes += line.len() + LINE_OVERHEAD;
        kept.lines.push_back(line);
        while kept.bytes > KEPT_LOG_BYTES && kept.lines.len() > 1 {
            let dropped = kept.lines.pop_front().expect("more than one line");
            kept.bytes -= dropped.len() + LINE_OVERHEAD;
        }
        if kept.lines.capacity() > 4 * kept.lines.len().max(64) {
            kept.lines.shrink_to_fit();
        }
    }

    pub(crate) fn lines(&self, container: &str) -> Vec<String> {
        let containers = self.containers.lock().expect("log store poisoned");
        containers
            .get(container)
            .map(|kept| kept.lines.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// The bytes kept for `container`, as [`KEPT_LOG_BYTES`] counts them.
    #[cfg(test)]
    fn kept_bytes(&self, container: &str) -> usize {
        let containers = self.containers.lock().expect("log store poisoned");
        containers.get(container).map_or(0, |kept| kept.bytes)
    }
}

/// A container's stdout or stderr, as WASI sees it.
#[derive(Clone)]
pub(crate) struct ContainerOutput {
    pub pod: Arc<str>,
    pub container: Arc<str>,
    pub stream: Stream,
    pub sink: Arc<dyn LogSink>,
    pub store: Arc<LogStore>,
}

impl IsTerminal for ContainerOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for ContainerOutput {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(LineWriter::new(self.clone()))
    }

    /// A synchronous stream: lines reach the sink during the guest's write,
    /// so every line is delivered before the container's exit is reported
    /// (wasmtime-wasi's default adapter writes from a background task).
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(LineWriter::new(self.clone()))
    }
}

/// Splits what the guest writes into lines; a partial line waits for its
/// newline, or is emitted when the stream ends or grows past [`MAX_LINE`].
struct LineWriter {
    output: ContainerOutput,
    pending: Vec<u8>,
}

/// A line longer than this is emitted in pieces (so a stream's partial line
/// never holds more).
pub(crate) const MAX_LINE: usize = 64 * 1024;

impl LineWriter {
    fn new(output: ContainerOutput) -> LineWriter {
        LineWriter {
            output,
            pending: Vec::new(),
        }
    }

    fn emit(&self, text: &[u8]) {
        let text = text.strip_suffix(b"\r").unwrap_or(text);
        let output = &self.output;
        output.store.push(&output.container, text);
        output.sink.line(LogLine {
            pod: &output.pod,
            container: &output.container,
            stream: output.stream,
            text,
        });
    }

    fn push(&mut self, buf: &[u8]) {
        let mut rest = buf;
        while let Some(newline) = rest.iter().position(|b| *b == b'\n') {
            if self.pending.is_empty() {
                self.emit(&rest[..newline]);
            } else {
                self.pending.extend_from_slice(&rest[..newline]);
                let line = std::mem::take(&mut self.pending);
                self.emit(&line);
            }
            rest = &rest[newline + 1..];
        }
        if !rest.is_empty() {
            let output = &self.output;
            output.sink.partial(LogLine {
                pod: &output.pod,
                container: &output.container,
                stream: output.stream,
                text: rest,
            });
        }
        self.pending.extend_from_slice(rest);
        if self.pending.len() >= MAX_LINE {
            let line = std::mem::take(&mut self.pending);
            self.emit(&line);
        }
    }
}

impl OutputStream for LineWriter {
    fn write(&mut self, bytes: bytes::Bytes) -> StreamResult<()> {
        self.push(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(MAX_LINE)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for LineWriter {
    async fn ready(&mut self) {}
}

impl AsyncWrite for LineWriter {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().push(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.pending.is_empty() {
            let line = std::mem::take(&mut this.pending);
            this.emit(&line);
        }
        Poll::Ready(Ok(()))
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        if !self.pending.is_empty() {
            let line = std::mem::take(&mut self.pending);
            self.emit(&line);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn writer(store: &Arc<LogStore>) -> LineWriter {
        LineWriter::new(ContainerOutput {
            pod: "pod".into(),
            container: "chatty".into(),
            stream: Stream::Stdout,
            sink: Arc::new(DiscardLogs),
            store: store.clone(),
        })
    }

    #[test]
    fn output_without_newlines_is_kept_within_the_bound() {
        let store = Arc::new(LogStore::default());
        let mut out = writer(&store);
        let chunk = vec![b'x'; 8192];
        // 64 MiB without a newline: pieces of MAX_LINE each.
        for _ in 0..(64 * 1024 * 1024 / chunk.len()) {
            out.push(&chunk);
        }
        assert!(out.pending.len() < MAX_LINE);
        let kept = store.kept_bytes("chatty");
        assert!(kept <= KEPT_LOG_BYTES, "{kept} bytes kept");
        assert!(kept > KEPT_LOG_BYTES / 2, "only {kept} bytes kept");
        let lines = store.lines("chatty");
        assert!(lines.iter().all(|line| line.len() == MAX_LINE));
    }

    #[test]
    fn short_lines_keep_the_newest() {
        let store = Arc::new(LogStore::default());
        let mut out = writer(&store);
        for n in 0..200_000 {
            out.push(format!("line {n}\n").as_bytes());
        }
        let lines = store.lines("chatty");
        assert_eq!(lines.last().map(String::as_str), Some("line 199999"));
        assert!(store.kept_bytes("chatty") <= KEPT_LOG_BYTES);
        assert!(lines.len() < 200_000);
    }

    #[test]
    fn one_line_longer_than_the_bound_is_still_kept() {
        let store = LogStore::default();
        store.push("c", &[b'y'; 10]);
        store.push("c", &vec![b'z'; KEPT_LOG_BYTES + 10]);
        assert_eq!(store.lines("c").len(), 1);
    }
}
