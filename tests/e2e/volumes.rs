//! Volumes: emptyDir (shared, then removed), hostPath types, readOnly
//! enforced for every kind of write, subPath kept inside its volume, and
//! nothing of the host visible beyond what is mounted.

use crate::support::{Workspace, container};

#[test]
fn init_container_hands_a_file_to_the_app_through_an_empty_dir() {
    let workspace = Workspace::new();
    let run = workspace.run_pod(
        "apiVersion: v1
kind: Pod
metadata: {name: handoff}
spec:
  restartPolicy: Never
  volumes:
  - {name: shared, emptyDir: {}}
  initContainers:
  - name: producer
    image: '@probe@'
    args: [write, /out/message.txt, 'handed over']
    volumeMounts: [{name: shared, mountPath: /out}]
  containers:
  - name: consumer
    image: '@probe.p1@'
    args: [read, /in/message.txt]
    volumeMounts: [{name: shared, mountPath: /in, readOnly: true}]
",
        &[],
    );
    run.expect_code(0);
    assert!(run.stdout.contains("[consumer] handed over"), "{run:?}");
    assert!(
        workspace.leftovers().is_empty(),
        "emptyDir left behind: {:?}",
        workspace.leftovers()
    );
}

#[test]
fn read_only_mount_refuses_every_write() {
    let workspace = Workspace::new();
    let host = workspace.path().join("host");
    std::fs::create_dir_all(host.join("sub")).unwrap();
    std::fs::write(host.join("existing.txt"), "original").unwrap();
    for image in ["@probe@", "@probe.p1@"] {
        let run = workspace.run_pod(
            &format!(
                "apiVersion: v1
kind: Pod
metadata: {{name: ro}}
spec:
  restartPolicy: Never
  volumes:
  - {{name: host, hostPath: {{path: '@ws@/host', type: Directory}}}}
  - {{name: scratch, emptyDir: {{}}}}
  containers:
  - name: prober
    image: '{image}'
    args: [readonly, /ro, existing.txt]
    volumeMounts:
    - {{name: host, mountPath: /ro, readOnly: true}}
    - {{name: scratch, mountPath: /rw}}
"
            ),
            &[],
        );
        assert!(!run.stdout.contains("ALLOWED"), "{image}: {}", run.stdout);
        run.expect_code(0);
        for op in [
            "create", "write", "append", "truncate", "set_len", "rename", "unlink", "mkdir",
            "hardlink", "symlink",
        ] {
            assert!(
                run.stdout.contains(&format!("{op}: denied")),
                "{image}: no denial of {op}:\n{}",
                run.stdout
            );
        }
    }
    assert_eq!(
        std::fs::read_to_string(host.join("existing.txt")).unwrap(),
        "original"
    );
    let mut entries: Vec<_> = std::fs::read_dir(&host)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    entries.sort();
    assert_eq!(entries, ["existing.txt", "sub"]);
}

#[test]
fn host_path_types() {
    let workspace = Workspace::new();
    let pod = |kind: &str, path: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: hp}}\nspec:\n  restartPolicy: Never\n  volumes:\n  - {{name: h, hostPath: {{path: '{path}', type: '{kind}'}}}}\n  containers:\n  - name: app\n    image: '@probe@'\n    args: [write, /h/file.txt, data]\n    volumeMounts: [{{name: h, mountPath: /h}}]\n"
        )
    };
    let missing = format!("{}/missing", workspace.path().display());
    let run = workspace.run_pod(&pod("Directory", &missing), &[]);
    run.expect_code(125);
    assert!(
        run.stderr
            .contains("(pod `hp`) spec.volumes[0].hostPath.path: hostPath")
            && run
                .stderr
                .contains("does not exist; create it, or use type DirectoryOrCreate"),
        "{}",
        run.stderr
    );

    let created = format!("{}/made/here", workspace.path().display());
    workspace
        .run_pod(&pod("DirectoryOrCreate", &created), &[])
        .expect_code(0);
    assert_eq!(
        std::fs::read_to_string(format!("{created}/file.txt")).unwrap(),
        "data"
    );

    let file = workspace.write("plain.txt", "x");
    let run = workspace.run_pod(&pod("Directory", file.to_str().unwrap()), &[]);
    run.expect_code(125);
    assert!(run.stderr.contains("is not a directory"), "{}", run.stderr);

    let run = workspace.run_pod(&pod("File", file.to_str().unwrap()), &[]);
    run.expect_code(125);
    assert!(
        run.stderr
            .contains("WASI gives containers directories only"),
        "{}",
        run.stderr
    );

    let run = workspace.run_pod(&pod("Socket", file.to_str().unwrap()), &[]);
    run.expect_code(125);
    assert!(
        run.stderr.contains(
            "spec.volumes[0].hostPath.type: `Socket` cannot be given to a Wasm container"
        ),
        "{}",
        run.stderr
    );
}

#[test]
fn host_path_content_survives_the_pod() {
    let workspace = Workspace::new();
    let data = workspace.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("keep.txt"), "mine").unwrap();
    workspace
        .run_pod(
            "apiVersion: v1\nkind: Pod\nmetadata: {name: keep}\nspec:\n  restartPolicy: Never\n  volumes:\n  - {name: d, hostPath: {path: '@ws@/data'}}\n  containers:\n  - name: app\n    image: '@probe@'\n    args: [write, /d/new.txt, added]\n    volumeMounts: [{name: d, mountPath: /d}]\n",
            &[],
        )
        .expect_code(0);
    assert_eq!(
        std::fs::read_to_string(data.join("keep.txt")).unwrap(),
        "mine"
    );
    assert_eq!(
        std::fs::read_to_string(data.join("new.txt")).unwrap(),
        "added"
    );
}

#[test]
fn sub_path_mounts_a_folder_inside_the_volume() {
    let workspace = Workspace::new();
    let run = workspace.run_pod(
        "apiVersion: v1
kind: Pod
metadata: {name: sub}
spec:
  restartPolicy: Never
  volumes:
  - {name: d, hostPath: {path: '@ws@/vol', type: DirectoryOrCreate}}
  containers:
  - name: app
    image: '@probe@'
    args: [write, /logs/app.log, entry]
    volumeMounts: [{name: d, mountPath: /logs, subPath: app/logs}]
",
        &[],
    );
    run.expect_code(0);
    assert_eq!(
        std::fs::read_to_string(workspace.path().join("vol/app/logs/app.log")).unwrap(),
        "entry"
    );
}

#[cfg(unix)]
#[test]
fn sub_path_symlink_cannot_escape_the_volume() {
    let workspace = Workspace::new();
    let vol = workspace.path().join("vol");
    std::fs::create_dir(&vol).unwrap();
    std::os::unix::fs::symlink("/etc", vol.join("escape")).unwrap();
    let run = workspace.run_pod(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: esc}\nspec:\n  restartPolicy: Never\n  volumes:\n  - {name: d, hostPath: {path: '@ws@/vol'}}\n  containers:\n  - name: app\n    image: '@probe@'\n    args: [read, /x/passwd]\n    volumeMounts: [{name: d, mountPath: /x, subPath: escape}]\n",
        &[],
    );
    run.expect_code(125);
    assert!(run.stderr.contains("subPath `escape`"), "{}", run.stderr);
    assert!(!run.stdout.contains("root:"), "{}", run.stdout);
}

#[test]
fn nothing_of_the_host_is_visible_beyond_the_mounts() {
    let workspace = Workspace::new();
    let run = workspace.run_pod(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: blind}\nspec:\n  restartPolicy: Never\n  containers:\n  - name: root\n    image: '@probe@'\n    args: [ls, /]\n  - name: passwd\n    image: '@probe@'\n    args: [read, /etc/passwd]\n",
        &["-o", "json"],
    );
    run.expect_code(1);
    let status = run.json();
    assert_eq!(
        container(&status, "root")["state"]["terminated"]["exitCode"],
        1,
        "{}",
        run.stdout
    );
    assert_eq!(
        container(&status, "passwd")["state"]["terminated"]["exitCode"],
        1
    );
}

#[test]
fn a_volume_at_root_is_the_containers_root_in_place_of_the_image_files() {
    let workspace = Workspace::new();
    workspace.write("root/etc/greeting.txt", "from the volume");
    let run = workspace.run_pod(
        "apiVersion: v1
kind: Pod
metadata: {name: root}
spec:
  restartPolicy: Never
  volumes:
  - {name: root, hostPath: {path: '@ws@/root', type: Directory}}
  containers:
  - name: component
    image: '@probe@'
    args: [read, /etc/greeting.txt]
    volumeMounts: [{name: root, mountPath: /}]
  - name: module
    image: '@probe.p1@'
    args: [write, /written.txt, by the module]
    volumeMounts: [{name: root, mountPath: /}]
  - name: image
    image: probe
    args: [stat, /etc/motd]
    volumeMounts: [{name: root, mountPath: /}]
",
        &[],
    );
    run.expect_code(0);
    assert!(
        run.stdout.contains("[component] from the volume"),
        "{run:?}"
    );
    assert!(
        run.stdout.contains("[module] wrote /written.txt"),
        "{run:?}"
    );
    // The image's program runs, but its rootfs is not what the guest sees.
    assert!(run.stdout.contains("[image] exists=false"), "{run:?}");
    assert_eq!(
        std::fs::read_to_string(workspace.path().join("root/written.txt")).unwrap(),
        "by the module"
    );
}
