//! What the supervisor and the pod process say to each other.
//!
//! The pod process is a fork of the supervisor, so what it needs (the
//! [`Request`]) it has in memory from the start. It answers through one pipe
//! with [`Message`]s, one JSON object per line (each line is shorter than
//! `PIPE_BUF` or written whole by one `write`, so lines of the two writers,
//! pod-init and PID 1, never interleave).
//!
//! Errors cross as data, their cause chain included ([`ErrorReport`]), as
//! youki's `ErrorEnclosure` carries them out of its test children.

use super::Plan;
use crate::manifest::PodSpec;
use crate::pod::{PodOptions, RuntimeConfig};
use crate::status::PodStatus;
use serde::{Deserialize, Serialize};
use std::io::Write as _;
use std::sync::Mutex;

/// Everything the pod process needs, made by the supervisor before the fork.
#[derive(Debug, Clone)]
pub(crate) struct Request {
    /// The pod, its `base_dir` absolute: the pod process starts in `/` of
    /// its new root.
    pub pod: PodSpec,
    pub plan: Plan,
    /// The supervisor's ids, mapped to root in the user namespace.
    pub outer_uid: u32,
    pub outer_gid: u32,
    /// The run's pod options, paths made absolute; `state_dir` is the
    /// pod's private folder.
    pub options: PodOptions,
    /// The runtime's settings; the cache, if any, is absolute and exists.
    pub runtime: RuntimeConfig,
    /// Where the pod serves `exec` and `top`: in its folder of
    /// `RunConfig::pod_files`, which is bound into its root at the same path.
    pub control_socket: Option<std::path::PathBuf>,
}

/// What the pod process reports, in order.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum Message {
    /// From pod-init: the host PID of PID 1 of the pod's namespaces, and
    /// whether it is the supervisor's child (pod-init made it with
    /// `CLONE_PARENT` and has exited); if not, it is pod-init's, which
    /// exits with its status.
    Started {
        pid: u32,
        supervisor_is_parent: bool,
    },
    /// The wall is up and the pod process handles SIGTERM and SIGINT.
    Ready,
    /// The pod's status changed.
    Status(PodStatus),
    /// The pod could not start; nothing runs.
    Failed(ErrorReport),
    /// From pod-init: the kernel refused the namespaces (user namespaces
    /// disabled, a container's seccomp profile). Nothing has run yet, so
    /// `--isolation=auto` can still run the pods without the wall.
    NoNamespaces(ErrorReport),
    /// The pod ended; its final status.
    Ended(PodStatus),
}

/// An error and its causes, as text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorReport {
    pub message: String,
    pub causes: Vec<String>,
    /// Whose fault it was (the exit status).
    pub fault: crate::Fault,
}

impl ErrorReport {
    pub(crate) fn new(error: &dyn std::error::Error, fault: crate::Fault) -> ErrorReport {
        let message = error.to_string();
        let mut causes = Vec::new();
        let mut source = error.source();
        while let Some(cause) = source {
            let text = cause.to_string();
            // wpod's errors often repeat their source in their own text.
            if !message.contains(&text) && !causes.iter().any(|c: &String| c.contains(&text)) {
                causes.push(text);
            }
            source = cause.source();
        }
        ErrorReport {
            message,
            causes,
            fault,
        }
    }
}

impl std::fmt::Display for ErrorReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)?;
        for cause in &self.causes {
            write!(f, ": {cause}")?;
        }
        Ok(())
    }
}

/// The pod process's end of the status pipe.
#[derive(Debug)]
pub(crate) struct Channel {
    file: Mutex<std::fs::File>,
}

impl Channel {
    pub(crate) fn new(file: std::fs::File) -> Channel {
        Channel {
            file: Mutex::new(file),
        }
    }

    /// Sends one message. A supervisor that is gone cannot be told anything;
    /// PR_SET_PDEATHSIG ends us soon after.
    pub(crate) fn send(&self, message: &Message) {
        let mut line = serde_json::to_vec(message).expect("messages serialize");
        line.push(b'\n');
        if let Ok(mut file) = self.file.lock() {
            let _ = file.write_all(&line);
        }
    }
}

/// Splits what arrived on the status pipe into messages; keeps a partial line.
#[derive(Debug, Default)]
pub(crate) struct Reader {
    buffer: Vec<u8>,
}

impl Reader {
    pub(crate) fn push(&mut self, bytes: &[u8]) -> Vec<Message> {
        self.buffer.extend_from_slice(bytes);
        let mut messages = Vec::new();
        while let Some(end) = self.buffer.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.buffer.drain(..=end).collect();
            match serde_json::from_slice(&line) {
                Ok(message) => messages.push(message),
                Err(error) => tracing::warn!(%error, "unreadable message from a pod process"),
            }
        }
        messages
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_survive_the_pipe_split_anywhere() {
        let channel_bytes = {
            let mut bytes = serde_json::to_vec(&Message::Started {
                pid: 42,
                supervisor_is_parent: true,
            })
            .unwrap();
            bytes.push(b'\n');
            let report = ErrorReport {
                message: "mount(MS_BIND)(/x): Permission denied".into(),
                causes: vec!["EPERM".into()],
                fault: crate::Fault::Host,
            };
            bytes.extend(serde_json::to_vec(&Message::Failed(report)).unwrap());
            bytes.push(b'\n');
            bytes
        };
        for split in 0..channel_bytes.len() {
            let mut reader = Reader::default();
            let mut got = reader.push(&channel_bytes[..split]);
            got.extend(reader.push(&channel_bytes[split..]));
            assert_eq!(got.len(), 2, "split at {split}");
            assert!(matches!(got[0], Message::Started { pid: 42, .. }));
            match &got[1] {
                Message::Failed(report) => assert_eq!(
                    report.to_string(),
                    "mount(MS_BIND)(/x): Permission denied: EPERM"
                ),
                other => panic!("{other:?}"),
            }
        }
    }
}
