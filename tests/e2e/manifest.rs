//! Bad manifests: each is one clear error naming the file and the field,
//! exit code 125 (as `docker run`), never a panic.

use crate::support::Workspace;

/// Validates `yaml` and checks the error names the file and says `expected`.
#[track_caller]
fn check(yaml: &str, expected: &str) {
    let workspace = Workspace::new();
    let pod = workspace.pod(yaml);
    let run = workspace.run(&["validate", pod.to_str().unwrap()]);
    run.expect_code(125);
    assert!(
        run.stderr.contains(&format!("{}", pod.display())),
        "error does not name the file:\n{}",
        run.stderr
    );
    assert!(
        run.stderr.contains(expected),
        "expected {expected:?} in:\n{}",
        run.stderr
    );
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
}

const HEAD: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: bad\nspec:\n";

#[test]
fn unknown_field_is_named_with_a_suggestion() {
    check(
        &format!("{HEAD}  containers:\n  - name: app\n    imagee: x.wasm\n"),
        "spec.containers[0].imagee: unknown field `imagee`; did you mean `image`?",
    );
}

#[test]
fn unsupported_field_is_refused_by_path() {
    check(
        &format!(
            "{HEAD}  containers:\n  - name: app\n    image: x.wasm\n    volumeDevices:\n    - {{name: disk, devicePath: /dev/xvda}}\n"
        ),
        "spec.containers[0].volumeDevices: not supported yet",
    );
}

#[test]
fn unsupported_volume_source_is_refused_by_path() {
    check(
        &format!(
            "{HEAD}  containers:\n  - {{name: app, image: x.wasm}}\n  volumes:\n  - name: c\n    nfs: {{server: x, path: /}}\n"
        ),
        "spec.volumes[0].nfs: not supported yet",
    );
}

#[test]
fn mount_of_a_missing_volume() {
    check(
        &format!(
            "{HEAD}  volumes:\n  - {{name: data, emptyDir: {{}}}}\n  containers:\n  - name: app\n    image: x.wasm\n    volumeMounts:\n    - {{name: dat, mountPath: /data}}\n"
        ),
        "spec.containers[0].volumeMounts[0].name: volume `dat` is not declared; declare it under spec.volumes or use one of: data",
    );
}

#[test]
fn duplicate_container_names_across_init_and_app() {
    check(
        &format!(
            "{HEAD}  initContainers:\n  - {{name: app, image: x.wasm}}\n  containers:\n  - {{name: app, image: y.wasm}}\n"
        ),
        "spec.containers[0].name: duplicate container name `app` (also spec.initContainers[0].name)",
    );
}

#[test]
fn relative_and_duplicate_mount_paths() {
    let yaml = format!(
        "{HEAD}  volumes:\n  - {{name: a, emptyDir: {{}}}}\n  - {{name: b, emptyDir: {{}}}}\n  containers:\n  - name: app\n    image: x.wasm\n    volumeMounts:\n    - {{name: a, mountPath: data}}\n    - {{name: a, mountPath: /d}}\n    - {{name: b, mountPath: /d/}}\n"
    );
    check(
        &yaml,
        "spec.containers[0].volumeMounts[0].mountPath: `data` is not an absolute path",
    );
    check(
        &yaml,
        "spec.containers[0].volumeMounts[2].mountPath: `/d/` is already mounted by volumeMounts[1]",
    );
}

#[test]
fn udp_host_port_is_refused_until_it_is_published() {
    check(
        &format!(
            "{HEAD}  containers:\n  - name: dns\n    image: x.wasm\n    ports: [{{containerPort: 53, hostPort: 5353, protocol: UDP}}]\n"
        ),
        "spec.containers[0].ports[0].hostPort: publishing a UDP port is not supported yet",
    );
}

#[test]
fn names_must_be_dns_1123() {
    check(
        &format!("{HEAD}  containers:\n  - {{name: My_App, image: x.wasm}}\n"),
        "spec.containers[0].name: `My_App` is not a valid DNS-1123 name",
    );
}

#[test]
fn yaml_syntax_error_has_a_line() {
    check(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: x\n",
        "YAML syntax error",
    );
    check(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: x\n",
        "pod.yaml:",
    );
}

#[test]
fn wrong_kind_and_missing_fields() {
    check(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec: {containers: [{name: a, image: a.wasm}]}\n",
        "kind: `Deployment` is not supported: wpod runs Pods",
    );
    check(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: x}\nspec:\n  containers:\n  - name: a\n",
        "spec.containers[0].image: required field is missing",
    );
}

#[test]
fn bad_quantities_and_policies() {
    check(
        &format!(
            "{HEAD}  containers:\n  - name: a\n    image: a.wasm\n    resources: {{limits: {{memory: lots}}}}\n"
        ),
        "spec.containers[0].resources.limits.memory: `lots` is not a quantity",
    );
    check(
        &format!(
            "{HEAD}  restartPolicy: Sometimes\n  containers:\n  - {{name: a, image: a.wasm}}\n"
        ),
        "spec.restartPolicy: unknown restart policy `Sometimes`; use Always, OnFailure or Never",
    );
}

#[test]
fn sub_path_must_stay_inside() {
    check(
        &format!(
            "{HEAD}  volumes:\n  - {{name: a, emptyDir: {{}}}}\n  containers:\n  - name: app\n    image: x.wasm\n    volumeMounts:\n    - {{name: a, mountPath: /d, subPath: ../../etc}}\n"
        ),
        "subPath: `../../etc` must be a relative path without `..`",
    );
}

#[test]
fn fields_that_change_nothing_pass() {
    let workspace = Workspace::new();
    let pod = workspace.pod(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: ok\n  namespace: team\n  labels: {app: web}\n  annotations: {note: hi}\n  uid: 1234\nspec:\n  nodeSelector: {disk: ssd}\n  tolerations: []\n  dnsPolicy: ClusterFirst\n  containers:\n  - name: app\n    image: x.wasm\n    imagePullPolicy: Always\n    terminationMessagePath: /dev/termination-log\n---\n",
    );
    // The manifest alone: its image does not exist (by default, validate
    // says so too).
    let run = workspace.run(&["validate", "--offline", pod.to_str().unwrap()]);
    run.expect_code(0);
    assert!(run.stdout.contains("pod `ok` is valid"), "{}", run.stdout);
    workspace
        .run(&["validate", pod.to_str().unwrap()])
        .expect_code(127);
}

#[test]
fn missing_manifest_file() {
    let workspace = Workspace::new();
    let run = workspace.run(&["validate", "nowhere.yaml"]);
    run.expect_code(125);
    assert!(
        run.stderr
            .contains("nowhere.yaml: cannot read the manifest"),
        "{}",
        run.stderr
    );
}

#[test]
fn deep_nesting_is_refused_in_milliseconds() {
    let workspace = Workspace::new();
    for (name, text) in [
        ("unclosed.yaml", "[".repeat(200_000)),
        (
            "nested.yaml",
            format!("{}1{}", "{a: ".repeat(50_000), "}".repeat(50_000)),
        ),
    ] {
        let pod = workspace.write(name, text);
        let started = std::time::Instant::now();
        let run = workspace.run(&["validate", pod.to_str().unwrap()]);
        let elapsed = started.elapsed();
        run.expect_code(125);
        assert!(
            run.stderr.contains(&format!(
                "{}:1: the manifest nests deeper than 64 levels",
                pod.display()
            )),
            "{}",
            run.stderr
        );
        // Before the bound, the parser took 30 s and more on these.
        assert!(elapsed < std::time::Duration::from_secs(1), "{elapsed:?}");
    }
}

#[test]
fn a_manifest_over_4_mib_is_refused_unread() {
    let workspace = Workspace::new();
    let pod = workspace.write("large.yaml", vec![b'#'; 5 << 20]);
    let run = workspace.run(&["validate", pod.to_str().unwrap()]);
    run.expect_code(125);
    assert!(
        run.stderr
            .contains("the manifest is larger than 4194304 bytes (4 MiB)"),
        "{}",
        run.stderr
    );
}

#[test]
fn validate_and_run_refuse_the_same_annotations() {
    let workspace = Workspace::new();
    for (annotation, expected) in [
        (
            "wpod.dev/egress: '10.0.0.0/99'",
            "metadata.annotations[wpod.dev/egress]: `10.0.0.0/99` is not an egress rule (the prefix length 99 is more than the address's 32 bits)",
        ),
        (
            "wpod.dev/memory-limit: lots",
            "metadata.annotations[wpod.dev/memory-limit]: `lots` is not a quantity",
        ),
        (
            "wpod.dev/descriptor-limit: '3'",
            "metadata.annotations[wpod.dev/descriptor-limit]: `3` is not a number from 16 to 1048576",
        ),
    ] {
        let pod = workspace.pod(&format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: bad\n  annotations:\n    {annotation}\nspec:\n  containers:\n  - {{name: a, image: a.wasm}}\n"
        ));
        for command in ["validate", "run"] {
            let run = workspace.run(&[command, pod.to_str().unwrap()]);
            run.expect_code(125);
            assert!(
                run.stderr.contains(expected),
                "{command}: expected {expected:?} in:\n{}",
                run.stderr
            );
        }
    }
}

#[test]
fn completions_and_man_pages_are_generated_and_a_bad_wpod_log_is_reported() {
    let workspace = Workspace::new();
    for shell in ["bash", "zsh", "fish"] {
        let run = workspace.run(&["completion", shell]);
        run.expect_code(0);
        assert!(
            run.stdout.contains("wpod") && run.stdout.contains("validate"),
            "{shell}"
        );
    }
    // Man pages from the same definition: one per command.
    let man = workspace.path().join("man");
    workspace
        .run(&["man", "--dir", man.to_str().unwrap()])
        .expect_code(0);
    let page = std::fs::read_to_string(man.join("wpod-pull.1")).unwrap();
    assert!(page.contains("wpod\\-pull \\- Pull images"), "{page}");
    for command in [
        "run", "validate", "ps", "logs", "stop", "rm", "images", "push",
    ] {
        assert!(
            man.join(format!("wpod-{command}.1")).exists(),
            "wpod-{command}.1"
        );
    }
    assert!(workspace.run(&["man"]).stdout.contains(".TH wpod 1"));
    let pod = workspace.pod("apiVersion: v1\nkind: Pod\nmetadata: {name: ok}\nspec:\n  containers:\n  - {name: a, image: a.wasm}\n");
    let run = workspace
        .wpod()
        .env("WPOD_LOG", "wpod=loud")
        .args(["validate", "--offline", pod.to_str().unwrap()])
        .output()
        .map(crate::support::Run::from)
        .unwrap();
    run.expect_code(0);
    assert!(
        run.stderr
            .contains("WPOD_LOG=\"wpod=loud\" is not understood"),
        "{run:?}"
    );
}

#[test]
fn a_manifest_from_standard_input_runs_and_its_errors_name_stdin() {
    let workspace = Workspace::new();
    let with_stdin = |args: &[&str], yaml: &str| {
        let run = workspace.run_with_input(
            args,
            crate::support::expand(yaml, workspace.path()).as_bytes(),
        );
        (Some(run.code), run.stdout, run.stderr)
    };
    let hello = format!(
        "{HEAD}  restartPolicy: Never\n  containers:\n  - {{name: hi, image: '@hello@'}}\n"
    );
    let (code, stdout, stderr) = with_stdin(&["run", "-"], &hello);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(stdout, "[hi] hello from wpod\n");
    let (code, stdout, _) = with_stdin(&["validate", "-"], &hello);
    assert_eq!(code, Some(0));
    assert!(stdout.contains("pod `bad` is valid"), "{stdout}");
    let (code, _, stderr) = with_stdin(
        &["validate", "-"],
        &format!("{HEAD}  containers:\n  - name: app\n    imagee: x.wasm\n"),
    );
    assert_eq!(code, Some(125));
    assert!(stderr.contains("<stdin>"), "{stderr}");
    assert!(stderr.contains("spec.containers[0].imagee"), "{stderr}");
}

#[test]
fn a_security_context_that_holds_in_the_sandbox_is_accepted_and_the_rest_refused() {
    let workspace = Workspace::new();
    let pod = workspace.pod(&format!(
        "{HEAD}  securityContext: {{runAsNonRoot: true, seccompProfile: {{type: RuntimeDefault}}}}
  containers:
  - name: app
    image: busybox
    securityContext:
      runAsNonRoot: true
      allowPrivilegeEscalation: false
      readOnlyRootFilesystem: true
      privileged: false
      capabilities: {{drop: [ALL]}}
      seccompProfile: {{type: RuntimeDefault}}
  - name: empty
    image: busybox
    securityContext: {{}}
"
    ));
    workspace
        .run(&["validate", pod.to_str().unwrap()])
        .expect_code(0);
    for (context, expected) in [
        (
            "{privileged: true}",
            "spec.containers[0].securityContext.privileged: a privileged container cannot be had",
        ),
        (
            "{capabilities: {add: [NET_ADMIN]}}",
            "spec.containers[0].securityContext.capabilities.add: a Wasm guest has no Linux capabilities, so NET_ADMIN cannot be added",
        ),
        (
            "{seccompProfile: {type: Unconfined}}",
            "spec.containers[0].securityContext.seccompProfile.type: `Unconfined` cannot be had",
        ),
        (
            "{runAsUser: 1000}",
            "spec.containers[0].securityContext.runAsUser: not supported yet",
        ),
    ] {
        check(
            &format!(
                "{HEAD}  containers:\n  - name: app\n    image: busybox\n    securityContext: {context}\n"
            ),
            expected,
        );
    }
}

#[test]
fn every_error_of_a_file_is_reported_at_once() {
    let workspace = Workspace::new();
    let pod = workspace.pod(
        "apiVersion: v1
kind: Pod
metadata: {name: many}
spec:
  restartPolicy: Sometimes
  containers:
  - name: app
    imagee: x.wasm
    volumeDevices: [{name: disk, devicePath: /dev/xvda}]
    ports: [{containerPort: 70000}]
  - image: y.wasm
---
apiVersion: v1
kind: Pod
metadata: {name: second}
spec:
  containers:
  - {name: c, image: z.wasm, tty: true}
",
    );
    let run = workspace.run(&["validate", pod.to_str().unwrap()]);
    run.expect_code(125);
    for expected in [
        "(document 1) spec.containers[0].imagee: unknown field `imagee`",
        "(document 1) spec.containers[0].volumeDevices: not supported yet",
        "(document 1) spec.restartPolicy: unknown restart policy `Sometimes`",
        "(document 1) spec.containers[0].ports[0].containerPort: 70000 is not a port number",
        "(document 1) spec.containers[1].name: required field is missing",
        "(document 2) spec.containers[0].tty: a terminal for the container is not supported",
    ] {
        assert!(
            run.stderr.contains(expected),
            "missing {expected:?} in:\n{}",
            run.stderr
        );
    }
}

#[test]
fn configmaps_and_secrets_of_the_file_become_files_and_variables() {
    let workspace = Workspace::new();
    let run = workspace.run_pod(
        r#"apiVersion: v1
kind: ConfigMap
metadata: {name: web-config}
data:
  index.html: "<h1>from a ConfigMap</h1>\n"
  greeting: hello
---
apiVersion: v1
kind: Secret
metadata: {name: creds}
type: Opaque
data:
  password: c2VjcmV0
stringData:
  user: admin
---
apiVersion: v1
kind: Pod
metadata: {name: configured, labels: {app: demo}}
spec:
  restartPolicy: Never
  volumes:
  - {name: config, configMap: {name: web-config, items: [{key: index.html, path: html/index.html}]}}
  - {name: secret, secret: {secretName: creds}}
  containers:
  - name: app
    image: busybox
    command: [sh, -c, 'cat /config/html/index.html; cat /secret/user; echo; echo "$GREETING $PASSWORD $POD $APP $IP $CFG_greeting"; ls /config; touch /secret/new || echo read-only']
    env:
    - {name: GREETING, valueFrom: {configMapKeyRef: {name: web-config, key: greeting}}}
    - {name: PASSWORD, valueFrom: {secretKeyRef: {name: creds, key: password}}}
    - {name: POD, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
    - {name: APP, valueFrom: {fieldRef: {fieldPath: "metadata.labels['app']"}}}
    - {name: IP, valueFrom: {fieldRef: {fieldPath: status.podIP}}}
    - {name: NONE, valueFrom: {configMapKeyRef: {name: web-config, key: absent, optional: true}}}
    envFrom: [{configMapRef: {name: web-config}, prefix: CFG_}]
    volumeMounts: [{name: config, mountPath: /config}, {name: secret, mountPath: /secret}]
"#,
        &[],
    );
    run.expect_code(0);
    assert_eq!(
        run.stdout,
        "[app] <h1>from a ConfigMap</h1>\n[app] admin\n[app] hello secret configured demo 127.0.0.1 hello\n[app] html\n[app] read-only\n",
        "{run:?}"
    );

    // An object that is not there (and not optional): the container cannot
    // start, as the kubelet says it.
    let missing = workspace.run_pod(
        "apiVersion: v1
kind: Pod
metadata: {name: unconfigured}
spec:
  restartPolicy: Never
  containers:
  - name: app
    image: busybox
    command: [sh, -c, 'echo $X']
    env: [{name: X, valueFrom: {configMapKeyRef: {name: nope, key: x}}}]
",
        &["-o", "json"],
    );
    missing.expect_code(1);
    let status = missing.json();
    let waiting = &status["containerStatuses"][0]["state"]["waiting"];
    assert_eq!(waiting["reason"], "CreateContainerConfigError", "{status}");
    assert_eq!(
        waiting["message"], "configmap \"nope\" not found",
        "{status}"
    );
    assert!(
        missing
            .stderr
            .contains("[app] cannot start: configmap \"nope\" not found"),
        "{missing:?}"
    );
}

#[test]
fn workloads_run_as_their_pods_and_other_kinds_are_skipped_with_a_warning() {
    let workspace = Workspace::new();
    let yaml = "apiVersion: v1
kind: ConfigMap
metadata: {name: page}
data: {index.html: \"from the configmap\\n\"}
---
apiVersion: v1
kind: Secret
metadata: {name: token}
stringData: {token: s3cret}
---
apiVersion: v1
kind: Pod
metadata: {name: lone}
spec:
  restartPolicy: Never
  containers:
  - {name: lone, image: busybox, command: [echo, a pod beside them]}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec: {selector: {app: web}, ports: [{port: 80}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  strategy: {type: RollingUpdate}
  template:
    metadata: {labels: {app: web}}
    spec:
      restartPolicy: Never
      volumes: [{name: page, configMap: {name: page}}]
      containers:
      - name: reader
        image: busybox
        command: [sh, -c, 'cat /page/index.html; echo \"token $TOKEN\"']
        env: [{name: TOKEN, valueFrom: {secretKeyRef: {name: token, key: token}}}]
        volumeMounts: [{name: page, mountPath: /page}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db}
spec:
  replicas: 2
  serviceName: db
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec:
      restartPolicy: Never
      containers:
      - {name: db, image: busybox, command: [echo, db]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: none}
spec:
  replicas: 0
  template:
    spec:
      containers:
      - {name: c, image: busybox}
";
    let run = workspace.run_pod(yaml, &["-o", "json"]);
    run.expect_code(0);
    assert!(run.stderr.contains("skipped Service `web`"), "{run:?}");
    let list = run.json();
    let names: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 6, "{names:?}");
    assert!(names.contains(&"lone"), "{names:?}");
    let web: Vec<&&str> = names.iter().filter(|n| n.starts_with("web-")).collect();
    assert_eq!(web.len(), 3, "{names:?}");
    // web-HASH-XXXXX: one template hash, three suffixes.
    let hash = web[0].split('-').nth(1).unwrap();
    assert_eq!(hash.len(), 10, "{names:?}");
    assert!(
        web.iter().all(|n| n.split('-').nth(1) == Some(hash)),
        "{names:?}"
    );
    assert!(
        names.contains(&"db-0") && names.contains(&"db-1"),
        "{names:?}"
    );
    for line in ["[reader] from the configmap\n", "[reader] token s3cret\n"] {
        assert_eq!(run.stderr.matches(line).count(), 3, "{run:?}");
    }
    assert!(run.stderr.contains("[lone] a pod beside them"), "{run:?}");
    // The same file, read again, names the same pods (wpod down finds them).
    let again = workspace.run_pod(yaml, &["-o", "json"]);
    let again_json = again.json();
    let again_names: Vec<&str> = again_json["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, again_names);
    // --strict refuses what would be skipped.
    let strict = workspace.run_pod(yaml, &["--strict"]);
    strict.expect_code(125);
    assert!(
        strict
            .stderr
            .contains("(document 4) kind: a Service (`web`) has no meaning on one host"),
        "{strict:?}"
    );
}
