//! A container's (or an exec's) output FIFOs, as containerd names them:
//! opened here, outside the wall, and passed to the pod's walled process
//! (files cross the socket; the FIFOs' folder is never visible inside),
//! which writes the container's lines into them (`ctr` copies them to its
//! terminal, the CRI plugin into the kubelet's log files).

use rustix::fd::OwnedFd;
use std::path::PathBuf;

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

/// Opens the FIFOs at `stdout` and `stderr` (either may be empty: that
/// stream is dropped; `ctr run` without `-t` may give one FIFO for both).
///
/// # Errors
///
/// [`StdioError`] when a path is not a FIFO the shim can open.
pub fn open(stdout: &str, stderr: &str) -> Result<(Option<OwnedFd>, Option<OwnedFd>), StdioError> {
    Ok((open_fifo(stdout)?, open_fifo(stderr)?))
}

fn open_fifo(path: &str) -> Result<Option<OwnedFd>, StdioError> {
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
    // reader sees the end of file once the pod process closes it (the
    // shim's copy is closed once passed).
    use rustix::fs::{Mode, OFlags};
    rustix::fs::open(path, OFlags::RDWR | OFlags::CLOEXEC, Mode::empty())
        .map(Some)
        .map_err(|errno| StdioError::Open {
            path: path.into(),
            source: errno.into(),
        })
}
