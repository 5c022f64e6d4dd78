//! `limits.memory` caps all of a container's Wasm memory: growth beyond it
//! fails inside the guest, a guest that dies of it is OOMKilled, and its
//! siblings run on.

use crate::support::{Workspace, container};

#[test]
fn growth_beyond_the_limit_fails_inside_the_guest() {
    let workspace = Workspace::new();
    let run = workspace.run_pod(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: grow}\nspec:\n  restartPolicy: Never\n  containers:\n  - name: app\n    image: '@probe@'\n    args: [grow-memory]\n    resources: {limits: {memory: 64Mi}}\n",
        &[],
    );
    run.expect_code(0);
    let refused = run
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("[app] refused after "))
        .unwrap_or_else(|| panic!("{}", run.stdout));
    let mib: u64 = refused.trim_end_matches(" MiB").parse().unwrap();
    assert!(
        (32..64).contains(&mib),
        "refused after {mib} MiB with a 64 MiB limit"
    );
}

#[test]
fn a_guest_that_dies_of_it_is_oom_killed_and_its_sibling_runs_on() {
    let workspace = Workspace::new();
    let run = workspace.run_pod(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: oom}\nspec:\n  restartPolicy: Never\n  containers:\n  - name: hog\n    image: '@probe@'\n    args: [grow-memory, --die]\n    resources: {limits: {memory: 32Mi}}\n  - name: sibling\n    image: '@probe@'\n    args: [sleep, '300']\n",
        &["-o", "json"],
    );
    run.expect_code(137);
    let status = run.json();
    let hog = &container(&status, "hog")["state"]["terminated"];
    assert_eq!(hog["reason"], "OOMKilled", "{status:#}");
    assert_eq!(hog["exitCode"], 137);
    let sibling = &container(&status, "sibling")["state"]["terminated"];
    assert_eq!(sibling["reason"], "Completed");
    assert!(run.stderr.contains("[sibling] slept 300"), "{}", run.stderr);
}

#[test]
fn core_modules_are_capped_too() {
    let workspace = Workspace::new();
    let run = workspace.run_pod(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: grow1}\nspec:\n  restartPolicy: Never\n  containers:\n  - name: app\n    image: '@probe.p1@'\n    args: [grow-memory]\n    resources: {limits: {memory: 48Mi}}\n",
        &[],
    );
    run.expect_code(0);
    assert!(run.stdout.contains("[app] refused after"), "{}", run.stdout);
}

#[test]
fn without_limits_the_pods_ceiling_holds_all_its_containers_together() {
    // In wpod's own process (no OS wall, no cgroup): the annotation sets the
    // pod's ceiling (else it is half the host's memory), and the Wasm
    // memories of all its containers together stay below it.
    let workspace = Workspace::new();
    let run = workspace.run_pod(
        "apiVersion: v1
kind: Pod
metadata:
  name: ceiling
  annotations: {wpod.dev/memory-limit: 96Mi}
spec:
  restartPolicy: Never
  containers:
  - name: hog
    image: '@probe@'
    args: [grow-memory, --die]
  - name: sibling
    image: '@probe@'
    args: [sleep, '500']
",
        &["-o", "json", "--isolation=none"],
    );
    run.expect_code(137);
    let status = run.json();
    let hog = &container(&status, "hog")["state"]["terminated"];
    assert_eq!(hog["reason"], "OOMKilled", "{status:#}");
    let message = hog["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("the pod's memory ceiling (100663296 bytes: set by the wpod.dev/memory-limit annotation) was reached"),
        "{message}"
    );
    let sibling = &container(&status, "sibling")["state"]["terminated"];
    assert_eq!(sibling["reason"], "Completed", "{status:#}");
}
