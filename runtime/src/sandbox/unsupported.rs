//! The wall on systems other than Linux: a documented no-op. macOS and
//! Windows have no user namespaces to build it from, so `auto` runs the pods
//! in-process (as `none` does, with one warning) and `required` refuses.

use super::{Isolation, PodMain, Sandbox, SandboxConfig, SandboxError, SandboxedRun};
use crate::manifest::PodSpec;

#[derive(Debug)]
pub(super) struct State;

pub(super) fn probe(config: SandboxConfig) -> Result<Option<Sandbox>, SandboxError> {
    let reason = "namespaces, cgroups and seccomp are Linux's";
    if config.isolation == Isolation::Required {
        return Err(SandboxError::Unavailable {
            part: "the OS wall".into(),
            reason: reason.into(),
            fix: "run on Linux, or with --isolation=auto or none".into(),
        });
    }
    tracing::debug!(
        "running without the OS wall: {reason}; the Wasm sandbox is the only wall here"
    );
    Ok(None)
}

pub(super) fn run(
    _sandbox: &Sandbox,
    _pods: &[PodSpec],
    _jobs: &mut crate::job::Jobs,
    _pod_main: PodMain,
) -> Result<Option<SandboxedRun>, SandboxError> {
    unreachable!("no Sandbox is made on this system")
}
