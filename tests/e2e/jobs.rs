//! Jobs and the downward API: pods made of a Job's template until enough
//! succeed, as the Job controller makes them, and what a pod's containers
//! read of the pod (variables, `downwardAPI` and `projected` volumes).

use crate::support::{Run, Workspace};

/// The `kind`, name and status of each item of a `-o json` List.
fn items(run: &Run) -> Vec<(String, String, serde_json::Value)> {
    let list = run.json();
    list["items"]
        .as_array()
        .unwrap_or_else(|| panic!("not a List: {list}"))
        .iter()
        .map(|item| {
            (
                item["kind"].as_str().unwrap().to_owned(),
                item["metadata"]["name"].as_str().unwrap().to_owned(),
                item["status"].clone(),
            )
        })
        .collect()
}

/// A Job of 3 completions, 2 at a time, whose first two pods fail (each
/// pod counts the pods that came before it in a hostPath folder): the
/// failed pods are replaced, at most 2 run at once, and the run succeeds
/// once 3 succeeded.
#[test]
fn a_job_runs_its_completions_two_at_a_time_and_replaces_failed_pods() {
    for isolation in ["auto", "none"] {
        let workspace = Workspace::new();
        std::fs::create_dir_all(workspace.path().join("state/running")).unwrap();
        let run = workspace.run_pod(
            "apiVersion: batch/v1
kind: Job
metadata: {name: retry}
spec:
  completions: 3
  parallelism: 2
  backoffLimit: 3
  template:
    metadata: {labels: {app: retry}}
    spec:
      restartPolicy: Never
      volumes: [{name: state, hostPath: {path: '@ws@/state', type: Directory}}]
      containers:
      - name: work
        image: busybox
        command:
        - sh
        - -c
        - |
          touch /state/running/$POD
          sleep 0.2
          set -- /state/running/*
          echo $# > /state/$POD.together
          rm /state/running/$POD
          touch /state/$POD.tried
          set -- /state/*.tried
          echo \"$POD try $#\"
          [ $# -gt 2 ]
        env: [{name: POD, valueFrom: {fieldRef: {fieldPath: metadata.name}}}]
        volumeMounts: [{name: state, mountPath: /state}]
",
            &["-o", "json", &format!("--isolation={isolation}")],
        );
        run.expect_code(0);
        let items = items(&run);
        let pods: Vec<&(String, String, serde_json::Value)> =
            items.iter().filter(|(kind, _, _)| kind == "Pod").collect();
        assert_eq!(pods.len(), 5, "{isolation}: {items:?}");
        for (_, name, _) in &pods {
            let suffix = name.strip_prefix("retry-").unwrap_or_default();
            assert_eq!(suffix.len(), 5, "{isolation}: {name}");
        }
        let phases: Vec<&str> = pods
            .iter()
            .map(|(_, _, status)| status["phase"].as_str().unwrap())
            .collect();
        assert_eq!(
            phases.iter().filter(|p| **p == "Failed").count(),
            2,
            "{isolation}: {phases:?}"
        );
        let (_, name, job) = items.iter().find(|(kind, _, _)| kind == "Job").unwrap();
        assert_eq!(name, "retry");
        assert_eq!(job["succeeded"], 3, "{isolation}: {job}");
        assert_eq!(job["failed"], 2, "{isolation}: {job}");
        assert_eq!(
            job["conditions"][0]["type"], "Complete",
            "{isolation}: {job}"
        );
        assert!(
            run.stderr
                .contains("wpod: job `retry` complete (3 succeeded, 2 failed)"),
            "{isolation}: {run:?}"
        );
        // Never more than two at once.
        let together: Vec<u32> = std::fs::read_dir(workspace.path().join("state"))
            .unwrap()
            .filter_map(|entry| {
                let path = entry.unwrap().path();
                (path.extension()? == "together").then(|| {
                    std::fs::read_to_string(&path)
                        .unwrap()
                        .trim()
                        .parse()
                        .unwrap()
                })
            })
            .collect();
        assert_eq!(together.len(), 5, "{isolation}: {together:?}");
        assert!(
            together.iter().all(|n| (1..=2).contains(n)),
            "{isolation}: {together:?}"
        );
    }
}

/// A Job whose pods always fail: `restartPolicy: Never` makes a new pod per
/// try, `OnFailure` restarts the containers of one; either way the Job
/// fails past `backoffLimit`, and the run exits with the container's code.
#[test]
fn a_job_past_its_backoff_limit_fails_with_the_containers_exit_code() {
    let workspace = Workspace::new();
    // Never: three pods fail (more than 2). OnFailure: one pod, and at its
    // containers' second restart the Job has reached the limit.
    for (policy, pods, tries) in [("Never", 3, 3), ("OnFailure", 1, 2)] {
        let run = workspace.run_pod(
            &format!(
                "apiVersion: batch/v1
kind: Job
metadata: {{name: doomed}}
spec:
  backoffLimit: 2
  template:
    spec:
      restartPolicy: {policy}
      containers:
      - {{name: try, image: busybox, command: [sh, -c, 'echo trying; exit 3']}}
"
            ),
            &["-o", "json", "--restart-backoff", "10ms"],
        );
        run.expect_code(3);
        let items = items(&run);
        assert_eq!(
            items.iter().filter(|(kind, _, _)| kind == "Pod").count(),
            pods,
            "{policy}: {items:?}"
        );
        let (_, _, job) = items.iter().find(|(kind, _, _)| kind == "Job").unwrap();
        assert_eq!(job["conditions"][0]["type"], "Failed", "{policy}: {job}");
        assert_eq!(
            job["conditions"][0]["reason"], "BackoffLimitExceeded",
            "{policy}: {job}"
        );
        assert_eq!(
            run.stderr.matches("[try] trying").count(),
            tries,
            "{policy}: {run:?}"
        );
        assert!(
            run.stderr.contains(
                "wpod: job `doomed` failed: BackoffLimitExceeded: Job has reached the specified backoff limit"
            ),
            "{policy}: {run:?}"
        );
    }
}

/// An Indexed Job: one pod per index, each told its index.
#[test]
fn an_indexed_job_gives_each_pod_its_index() {
    let workspace = Workspace::new();
    let run = workspace.run_pod(
        "apiVersion: batch/v1
kind: Job
metadata: {name: shard}
spec:
  completions: 3
  parallelism: 3
  completionMode: Indexed
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: shard
        image: busybox
        command: [sh, -c, 'echo \"shard $JOB_COMPLETION_INDEX of $POD is $ANNOTATED\"']
        env:
        - {name: POD, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
        - {name: ANNOTATED, valueFrom: {fieldRef: {fieldPath: \"metadata.annotations['batch.kubernetes.io/job-completion-index']\"}}}
",
        &[],
    );
    run.expect_code(0);
    for index in 0..3 {
        let line = run
            .stdout
            .lines()
            .find(|line| line.starts_with(&format!("[shard] shard {index} of shard-{index}-")))
            .unwrap_or_else(|| panic!("no line for index {index}: {run:?}"));
        assert!(line.ends_with(&format!(" is {index}")), "{line}");
    }
}

#[test]
fn a_job_is_checked_and_refused_where_it_cannot_run() {
    let workspace = Workspace::new();
    let pod = workspace.pod(
        "apiVersion: batch/v1
kind: Job
metadata: {name: bad}
spec:
  parallelism: 0
  completionMode: Sometimes
  template:
    spec:
      restartPolicy: Always
      containers: [{name: c, image: busybox}]
",
    );
    let run = workspace.run(&["validate", pod.to_str().unwrap()]);
    run.expect_code(125);
    for expected in [
        "spec.parallelism: 0 is out of range",
        "spec.completionMode: unknown completion mode `Sometimes`",
        "spec.template.spec.restartPolicy: a Job's pods cannot have restartPolicy `Always`",
    ] {
        assert!(run.stderr.contains(expected), "{expected:?}: {run:?}");
    }
    let good = workspace.pod(
        "apiVersion: batch/v1
kind: Job
metadata: {name: good}
spec:
  template:
    spec:
      restartPolicy: Never
      containers: [{name: c, image: busybox, command: [\"true\"]}]
",
    );
    let validate = workspace.run(&["validate", good.to_str().unwrap()]);
    validate.expect_code(0);
    assert!(
        validate.stdout.contains("job `good` is valid (1 completions, parallelism 1, backoffLimit 6; 0 init, 1 app containers)"),
        "{validate:?}"
    );
    let detached = workspace.run(&["run", "-d", good.to_str().unwrap()]);
    detached.expect_code(125);
    assert!(
        detached
            .stderr
            .contains("a Job runs in the foreground for now"),
        "{detached:?}"
    );
}

/// The downward API as variables and as files: the pod's name, uid,
/// labels and annotations, and a container's limits and requests.
#[test]
fn the_downward_api_gives_variables_and_files() {
    let workspace = Workspace::new();
    let run = workspace.run_pod(
        "apiVersion: v1
kind: ConfigMap
metadata: {name: settings}
data: {mode: fast}
---
apiVersion: v1
kind: Secret
metadata: {name: keys}
stringData: {key: k-123}
---
apiVersion: v1
kind: Pod
metadata:
  name: aware
  uid: 6a1f2b9e-0000-4000-8000-000000000001
  labels: {app: aware, tier: back}
  annotations: {note: \"say \\\"hi\\\"\"}
spec:
  restartPolicy: Never
  volumes:
  - name: info
    downwardAPI:
      defaultMode: 0440
      items:
      - {path: labels, fieldRef: {fieldPath: metadata.labels}}
      - {path: note, fieldRef: {fieldPath: metadata.annotations}}
      - {path: sub/name, fieldRef: {fieldPath: metadata.name}, mode: 0400}
      - {path: mem, resourceFieldRef: {containerName: app, resource: limits.memory, divisor: 1Mi}}
  - name: all
    projected:
      sources:
      - configMap: {name: settings}
      - secret: {name: keys, items: [{key: key, path: secret/key}]}
      - downwardAPI: {items: [{path: uid, fieldRef: {fieldPath: metadata.uid}}]}
  containers:
  - name: app
    image: busybox
    resources: {limits: {memory: 64Mi, cpu: 500m}, requests: {memory: 32Mi}}
    command:
    - sh
    - -c
    - |
      echo \"$NAME $UID_ $MEM_LIMIT $MEM_REQUEST $CPU_REQUEST $CPU_LIMIT $NODE_CPUS\"
      cat /info/labels; echo
      cat /info/note; echo
      cat /info/sub/name; echo; cat /info/mem; echo
      ls /info/sub
      cat /all/mode /all/secret/key /all/uid; echo
      touch /info/new || echo read-only
    env:
    - {name: NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
    - {name: UID_, valueFrom: {fieldRef: {fieldPath: metadata.uid}}}
    - {name: MEM_LIMIT, valueFrom: {resourceFieldRef: {resource: limits.memory, divisor: 1Mi}}}
    - {name: MEM_REQUEST, valueFrom: {resourceFieldRef: {resource: requests.memory}}}
    - {name: CPU_REQUEST, valueFrom: {resourceFieldRef: {resource: requests.cpu, divisor: 1m}}}
    - {name: CPU_LIMIT, valueFrom: {resourceFieldRef: {resource: limits.cpu}}}
    - {name: NODE_CPUS, valueFrom: {resourceFieldRef: {containerName: other, resource: limits.cpu}}}
    volumeMounts: [{name: info, mountPath: /info}, {name: all, mountPath: /all}]
  - {name: other, image: busybox, command: [\"true\"]}
",
        &[],
    );
    run.expect_code(0);
    let cpus = std::thread::available_parallelism().unwrap().get();
    let uid = "6a1f2b9e-0000-4000-8000-000000000001";
    let expected = format!(
        "[app] aware {uid} 64 33554432 500 1 {cpus}\n\
         [app] app=\"aware\"\n[app] tier=\"back\"\n\
         [app] note=\"say \\\"hi\\\"\"\n\
         [app] aware\n[app] 64\n\
         [app] name\n\
         [app] fastk-123{uid}\n\
         [app] read-only\n"
    );
    assert_eq!(run.stdout, expected, "{run:?}");

    // Without one, a uid is made for each pod.
    let made = workspace.run_pod(
        "apiVersion: v1
kind: Pod
metadata: {name: fresh}
spec:
  restartPolicy: Never
  containers:
  - {name: c, image: busybox, command: [sh, -c, 'echo $U'], env: [{name: U, valueFrom: {fieldRef: {fieldPath: metadata.uid}}}]}
",
        &[],
    );
    made.expect_code(0);
    let uid = made.stdout.trim().trim_start_matches("[c] ");
    assert_eq!(uid.len(), 36, "{made:?}");
    assert_eq!(uid.matches('-').count(), 4, "{made:?}");

    // What a file may not hold, and a file's resource without a container.
    let bad = workspace.pod(
        "apiVersion: v1
kind: Pod
metadata: {name: bad}
spec:
  volumes:
  - name: info
    downwardAPI:
      items:
      - {path: node, fieldRef: {fieldPath: spec.nodeName}}
      - {path: mem, resourceFieldRef: {resource: limits.memory}}
      - {path: ../escape, fieldRef: {fieldPath: metadata.name}}
  containers:
  - name: c
    image: busybox
    env: [{name: X, valueFrom: {resourceFieldRef: {resource: limits.cpu, divisor: 2}}}]
    volumeMounts: [{name: info, mountPath: /info}]
",
    );
    let refused = workspace.run(&["validate", bad.to_str().unwrap()]);
    refused.expect_code(125);
    for expected in [
        "spec.volumes[0].downwardAPI.items[0].fieldRef.fieldPath: `spec.nodeName` is not a field the downward API gives here",
        "spec.volumes[0].downwardAPI.items[1].resourceFieldRef.containerName: required field is missing",
        "spec.volumes[0].downwardAPI.items[2].path: `../escape` must stay inside the volume",
        "spec.containers[0].env[0].valueFrom.resourceFieldRef.divisor: `2` is not a divisor for CPU",
    ] {
        assert!(
            refused.stderr.contains(expected),
            "{expected:?}: {refused:?}"
        );
    }
}

/// `--configmap FILE`: the ConfigMaps and Secrets of another file.
#[test]
fn configmaps_may_come_from_other_files() {
    let workspace = Workspace::new();
    let config = workspace.write(
        "config.yaml",
        "apiVersion: v1
kind: ConfigMap
metadata: {name: site}
data: {greeting: from another file}
---
apiVersion: v1
kind: Secret
metadata: {name: pass}
data: {word: b3BlbiBzZXNhbWU=}
",
    );
    let yaml = "apiVersion: v1
kind: Pod
metadata: {name: uses}
spec:
  restartPolicy: Never
  containers:
  - name: c
    image: busybox
    command: [sh, -c, 'echo \"$G, $W\"']
    env:
    - {name: G, valueFrom: {configMapKeyRef: {name: site, key: greeting}}}
    - {name: W, valueFrom: {secretKeyRef: {name: pass, key: word}}}
";
    let run = workspace.run_pod(yaml, &["--configmap", config.to_str().unwrap()]);
    run.expect_code(0);
    assert_eq!(
        run.stdout, "[c] from another file, open sesame\n",
        "{run:?}"
    );
    // Without it, the container cannot start.
    let without = workspace.run_pod(yaml, &[]);
    without.expect_code(1);
    assert!(
        without.stderr.contains("configmap \"site\" not found"),
        "{without:?}"
    );
    // A pod in a --configmap file is an error naming that file.
    let wrong = workspace.write(
        "wrong.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c, image: busybox}]}\n",
    );
    let pod = workspace.pod(yaml);
    let refused = workspace.run(&[
        "validate",
        pod.to_str().unwrap(),
        "--configmap",
        wrong.to_str().unwrap(),
    ]);
    refused.expect_code(125);
    assert!(
        refused.stderr.contains(&format!(
            "{}: (document 1) kind: `Pod` is not a ConfigMap or a Secret",
            wrong.display()
        )),
        "{refused:?}"
    );
}

/// `kind: List` (what `kubectl get -o yaml` prints for several objects):
/// its items are read as documents of their own.
#[test]
fn a_list_of_objects_is_read_item_by_item() {
    let workspace = Workspace::new();
    let run = workspace.run_pod(
        "apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: ConfigMap
  metadata: {name: words}
  data: {word: listed}
- apiVersion: v1
  kind: Service
  metadata: {name: skipped}
  spec: {ports: [{port: 80}]}
- apiVersion: batch/v1
  kind: Job
  metadata: {name: once}
  spec:
    template:
      spec:
        restartPolicy: Never
        containers:
        - {name: say, image: busybox, command: [sh, -c, 'echo $W'], env: [{name: W, valueFrom: {configMapKeyRef: {name: words, key: word}}}]}
",
        &[],
    );
    run.expect_code(0);
    assert_eq!(run.stdout, "[say] listed\n", "{run:?}");
    assert!(run.stderr.contains("skipped Service `skipped`"), "{run:?}");
    assert!(
        run.stderr
            .contains("wpod: job `once` complete (1 succeeded, 0 failed)"),
        "{run:?}"
    );
}
