//! Workloads: a Deployment, ReplicaSet, StatefulSet or DaemonSet read as
//! the pods its controller would make of its template.

use super::convert::{Document, schema_problem};
use super::raw;
use super::validate::Problem;

/// A Deployment, ReplicaSet, StatefulSet or DaemonSet as the pods its
/// controller would make of its template: `replicas` of them (1 when not
/// given; a DaemonSet's one, for this one node), named as the controller
/// names them (`web-0`, `web-1` for a StatefulSet; `web-HASH-XXXXX` for a
/// Deployment, `web-XXXXX` otherwise), with suffixes derived from the
/// template, so that a second read (`wpod down`) finds the same names.
/// Problems are the workload's, with their paths (`spec.template.spec...`).
pub(super) fn expand_workload(value: serde_yaml_ng::Value, kind: &str) -> Vec<Document> {
    let failed = |problems: Vec<Problem>| vec![(None, problems)];
    let workload: raw::Workload = match serde_path_to_error::deserialize(value.clone()) {
        Ok(workload) => workload,
        Err(error) => return failed(vec![schema_problem(error)]),
    };
    let Head {
        mut problems,
        metadata,
        name,
        spec,
    } = match head(
        kind,
        workload.api_version,
        "apps/v1",
        workload.metadata,
        workload.spec,
    ) {
        Ok(head) => head,
        Err(problems) => return failed(problems),
    };
    let replicas = match (kind, spec.replicas) {
        ("DaemonSet", _) | (_, None) => 1,
        (_, Some(n)) if (0..=1000).contains(&n) => n as usize,
        (_, Some(n)) => {
            problems.push(Problem::new(
                "spec.replicas",
                format!("{n} replicas cannot be run"),
                "give 0 to 1000",
            ));
            return failed(problems);
        }
    };
    if spec.template.is_none() {
        problems.push(Problem::new(
            "spec.template",
            "required field is missing",
            "give the pod template: metadata.labels and spec.containers",
        ));
    }
    if !problems.is_empty() {
        return failed(problems);
    }
    let template = value
        .get("spec")
        .and_then(|s| s.get("template"))
        .cloned()
        .unwrap_or(serde_yaml_ng::Value::Null);
    // The template's text names it: its hash, as the controller's
    // pod-template-hash, and from it each pod's suffix.
    let template_text = serde_yaml_ng::to_string(&template).unwrap_or_default();
    let suffix = |seed: &str, length: usize| {
        use sha2::Digest as _;
        // The controllers' alphabet: no vowels, no look-alikes.
        const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
        sha2::Sha256::digest(format!("{name}\n{template_text}\n{seed}"))
            .iter()
            .take(length)
            .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
            .collect::<String>()
    };
    let template_hash = suffix("pod-template-hash", 10);
    (0..replicas)
        .map(|replica| {
            let pod_name = match kind {
                "StatefulSet" => format!("{name}-{replica}"),
                "Deployment" => {
                    format!("{name}-{template_hash}-{}", suffix(&replica.to_string(), 5))
                }
                _ => format!("{name}-{}", suffix(&replica.to_string(), 5)),
            };
            // Each replica reads the template afresh: a pod of its own.
            let mut pod = match template_pod(&template, pod_name, metadata.namespace.as_ref()) {
                Ok(pod) => pod,
                Err(problem) => return (None, vec![problem]),
            };
            if let (Some(meta), "Deployment") = (&mut pod.metadata, kind) {
                meta.labels
                    .insert("pod-template-hash".into(), template_hash.clone());
            }
            (Some(pod), Vec::new())
        })
        .collect()
}

/// What every workload document has, checked: its name and spec (and the
/// problems found so far, of its API version).
struct Head<S> {
    problems: Vec<Problem>,
    metadata: raw::ObjectMeta,
    name: String,
    spec: S,
}

/// The [`Head`] of a `kind` document, or every problem if it has none.
fn head<S>(
    kind: &str,
    api_version: Option<String>,
    expected: &str,
    metadata: Option<raw::ObjectMeta>,
    spec: Option<S>,
) -> Result<Head<S>, Vec<Problem>> {
    let mut problems = Vec::new();
    if api_version.as_deref() != Some(expected) {
        problems.push(Problem::new(
            "apiVersion",
            format!("a {kind}'s API version is {expected}"),
            format!("write `apiVersion: {expected}`"),
        ));
    }
    let mut metadata = metadata.unwrap_or_else(|| raw::ObjectMeta::named(None));
    let Some(name) = metadata.name.take() else {
        problems.push(Problem::new(
            "metadata.name",
            "required field is missing",
            format!("name the {kind}: its pods are named after it"),
        ));
        return Err(problems);
    };
    let Some(spec) = spec else {
        problems.push(Problem::new(
            "spec",
            "required field is missing",
            "add `spec.template`",
        ));
        return Err(problems);
    };
    Ok(Head {
        problems,
        metadata,
        name,
        spec,
    })
}

/// A workload's pod template as the Pod `name` (in the workload's
/// `namespace`, if it has one); the problem of a part that cannot be read.
fn template_pod(
    template: &serde_yaml_ng::Value,
    name: String,
    namespace: Option<&String>,
) -> Result<raw::Pod, Problem> {
    let meta = template_part::<Option<raw::ObjectMeta>>(template, "metadata")?;
    let spec = template_part::<Option<raw::PodSpec>>(template, "spec")?;
    let mut meta = meta.unwrap_or_else(|| raw::ObjectMeta::named(None));
    meta.name = Some(name);
    meta.namespace = namespace.cloned().or(meta.namespace);
    Ok(raw::Pod {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        metadata: Some(meta),
        spec,
        status: None,
        data: None,
        string_data: None,
        binary_data: None,
        immutable: None,
        kind_of_secret: None,
        job: None,
    })
}

/// The `field` of a workload's pod template, read as `T`; its problem with
/// its path under `spec.template`.
fn template_part<T: serde::de::DeserializeOwned>(
    template: &serde_yaml_ng::Value,
    field: &str,
) -> Result<T, Problem> {
    let value = template
        .get(field)
        .cloned()
        .unwrap_or(serde_yaml_ng::Value::Null);
    serde_path_to_error::deserialize(value).map_err(|error| {
        let mut problem = schema_problem(error);
        problem.path = format!("spec.template.{field}.{}", problem.path);
        problem
    })
}

/// What a Job adds to its pod template, checked (see [`expand_job`]), and
/// the template as a Pod document, made into each of the Job's pods when
/// it runs.
#[derive(Debug, Clone)]
pub(crate) struct JobParts {
    pub completions: Option<u32>,
    pub parallelism: u32,
    pub backoff_limit: u32,
    pub active_deadline: Option<std::time::Duration>,
    pub indexed: bool,
    pub document: serde_yaml_ng::Value,
}

/// The most pods a Job may ask for at once, or in all.
const MAX_JOB_PODS: i64 = 1000;

/// A Job: one document, its pod template read as a Pod named after the Job
/// (what is checked and shown), which carries the Job's parts; the run
/// makes the Job's pods of it as the Job controller does.
pub(super) fn expand_job(value: serde_yaml_ng::Value) -> Vec<Document> {
    let failed = |problems: Vec<Problem>| vec![(None, problems)];
    let job: raw::Job = match serde_path_to_error::deserialize(value.clone()) {
        Ok(job) => job,
        Err(error) => return failed(vec![schema_problem(error)]),
    };
    let Head {
        mut problems,
        metadata,
        name,
        spec,
    } = match head("Job", job.api_version, "batch/v1", job.metadata, job.spec) {
        Ok(head) => head,
        Err(problems) => return failed(problems),
    };
    let mut count = |field: &str, value: Option<i64>, least: i64, default: i64| -> u32 {
        match value.unwrap_or(default) {
            n if (least..=MAX_JOB_PODS).contains(&n) => n as u32,
            n => {
                problems.push(Problem::new(
                    format!("spec.{field}"),
                    format!("{n} is out of range"),
                    format!("give {least} to {MAX_JOB_PODS}"),
                ));
                default as u32
            }
        }
    };
    // Neither completions nor parallelism: one pod must succeed. Only
    // parallelism: a work queue.
    let completions = match (spec.completions, spec.parallelism) {
        (None, Some(_)) => None,
        (completions, _) => Some(count("completions", completions.or(Some(1)), 0, 1)),
    };
    let parallelism = count("parallelism", spec.parallelism, 1, 1);
    let backoff_limit = count("backoffLimit", spec.backoff_limit, 0, 6);
    let active_deadline = match spec.active_deadline_seconds {
        None => None,
        Some(seconds) if seconds >= 1 => Some(std::time::Duration::from_secs(seconds as u64)),
        Some(seconds) => {
            problems.push(Problem::new(
                "spec.activeDeadlineSeconds",
                format!("{seconds} is not a positive number of seconds"),
                "give 1 or more, or leave it out for no deadline",
            ));
            None
        }
    };
    let indexed = match spec.completion_mode.as_deref() {
        None | Some("NonIndexed") => false,
        Some("Indexed") => {
            if completions.is_none() {
                problems.push(Problem::new(
                    "spec.completions",
                    "an Indexed Job needs completions",
                    "give the number of indexes, e.g. `completions: 3`",
                ));
            }
            true
        }
        Some(other) => {
            problems.push(Problem::new(
                "spec.completionMode",
                format!("unknown completion mode `{other}`"),
                "use NonIndexed or Indexed",
            ));
            false
        }
    };
    let Some(_) = spec.template else {
        problems.push(Problem::new(
            "spec.template",
            "required field is missing",
            "give the pod template: its spec.containers and spec.restartPolicy",
        ));
        return failed(problems);
    };
    let template = value
        .get("spec")
        .and_then(|s| s.get("template"))
        .cloned()
        .unwrap_or(serde_yaml_ng::Value::Null);
    let restart_policy = template
        .get("spec")
        .and_then(|s| s.get("restartPolicy"))
        .and_then(serde_yaml_ng::Value::as_str);
    match restart_policy {
        Some("Never" | "OnFailure") => {}
        Some(other) => problems.push(Problem::new(
            "spec.template.spec.restartPolicy",
            format!("a Job's pods cannot have restartPolicy `{other}`"),
            "use Never (a failed pod is replaced) or OnFailure (its containers restart)",
        )),
        None => problems.push(Problem::new(
            "spec.template.spec.restartPolicy",
            "required field is missing",
            "use Never (a failed pod is replaced) or OnFailure (its containers restart)",
        )),
    }
    let mut pod = match template_pod(&template, name, metadata.namespace.as_ref()) {
        Ok(pod) => pod,
        Err(problem) => {
            problems.push(problem);
            return failed(problems);
        }
    };
    // The template as a Pod document: each of the Job's pods is read from
    // it, with its own name and labels.
    let mut document = serde_yaml_ng::Mapping::new();
    document.insert("apiVersion".into(), "v1".into());
    document.insert("kind".into(), "Pod".into());
    let mut pod_meta = match template.get("metadata") {
        Some(serde_yaml_ng::Value::Mapping(meta)) => meta.clone(),
        _ => serde_yaml_ng::Mapping::new(),
    };
    if let Some(namespace) = &metadata.namespace {
        pod_meta.insert("namespace".into(), namespace.clone().into());
    }
    document.insert("metadata".into(), pod_meta.into());
    if let Some(spec) = template.get("spec") {
        document.insert("spec".into(), spec.clone());
    }
    pod.job = Some(JobParts {
        completions,
        parallelism,
        backoff_limit,
        active_deadline,
        indexed,
        document: document.into(),
    });
    vec![(Some(pod), problems)]
}
