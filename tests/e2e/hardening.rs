//! Hostile pods and hostile local users: each test is one attack that once
//! hurt the host, another user or a sibling container, tried again.
#![cfg(target_os = "linux")]

use crate::sandbox::wall_available;
use crate::support::Workspace;
use std::process::Stdio;

#[test]
fn a_chatty_container_costs_no_more_than_its_log_bound() {
    if !wall_available() {
        return;
    }
    // 1 GiB without a newline. wpod once kept 10,000 pieces of 64 KiB (640
    // MiB) of it in the pod process, outside every container's limit; the
    // pod's cgroup (2 × 32Mi + 256Mi for the runtime) then killed the
    // sibling too.
    let workspace = Workspace::new();
    let pod = workspace.pod(
        "apiVersion: v1
kind: Pod
metadata: {name: chatty}
spec:
  restartPolicy: Never
  containers:
  - name: chatty
    image: '@probe@'
    args: [spew, '1073741824']
    resources: {limits: {memory: 32Mi}}
  - name: sibling
    image: '@probe@'
    args: [sleep, '2000']
    resources: {limits: {memory: 32Mi}}
",
    );
    let output = workspace
        .wpod()
        .args(["run", pod.to_str().unwrap()])
        .stdout(Stdio::null())
        .output()
        .expect("running wpod");
    let run = crate::support::Run::from(output);
    // 0: both containers completed (the sibling's line went to stdout).
    run.expect_code(0);
    assert!(
        run.stderr.contains("[chatty] spewed 1073741824"),
        "{}",
        run.stderr
    );
}
