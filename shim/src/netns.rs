//! Joining the pod's network namespace.
//!
//! The CRI plugin makes a network namespace for a pod (unless it uses the
//! host's network) and names it in every container's spec, for the runtime
//! to put the container's process in. Here the containers are guests of the
//! pod's walled process, which the shim starts and which inherits the shim's
//! network namespace, so the shim joins it: before any thread starts, since
//! `setns` moves only the calling thread and threads inherit the namespace
//! of the thread that made them.

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

/// Why the shim cannot join the pod's network.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("{path}: cannot open the pod's network namespace: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path}: cannot join the pod's network namespace: {source}; the shim needs CAP_SYS_ADMIN (containerd runs it as root)"
    )]
    Join {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Moves the calling thread into the network namespace at `path`. Call it
/// while the process has one thread, so that every thread it makes later is
/// in that namespace too.
///
/// # Errors
///
/// [`NetnsError`] when the namespace cannot be opened or joined.
pub fn join(path: &Path) -> Result<(), NetnsError> {
    let file = std::fs::File::open(path).map_err(|source| NetnsError::Open {
        path: path.to_owned(),
        source,
    })?;
    rustix::thread::move_into_link_name_space(
        file.as_fd(),
        Some(rustix::thread::LinkNameSpaceType::Network),
    )
    .map_err(|errno| NetnsError::Join {
        path: path.to_owned(),
        source: errno.into(),
    })
}
