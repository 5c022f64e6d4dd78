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
    let mut problems = Vec::new();
    if workload.api_version.as_deref() != Some("apps/v1") {
        problems.push(Problem::new(
            "apiVersion",
            format!("a {kind}'s API version is apps/v1"),
            "write `apiVersion: apps/v1`",
        ));
    }
    let metadata = workload
        .metadata
        .unwrap_or_else(|| raw::ObjectMeta::named(None));
    let Some(name) = metadata.name else {
        problems.push(Problem::new(
            "metadata.name",
            "required field is missing",
            format!("name the {kind}: its pods are named after it"),
        ));
        return failed(problems);
    };
    let Some(spec) = workload.spec else {
        problems.push(Problem::new(
            "spec",
            "required field is missing",
            "add `spec.template`",
        ));
        return failed(problems);
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
            let meta = template_part::<Option<raw::ObjectMeta>>(&template, "metadata");
            let pod_spec = template_part::<Option<raw::PodSpec>>(&template, "spec");
            let (meta, pod_spec) = match (meta, pod_spec) {
                (Ok(meta), Ok(spec)) => (meta, spec),
                (Err(problem), _) | (_, Err(problem)) => return (None, vec![problem]),
            };
            let mut meta = meta.unwrap_or_else(|| raw::ObjectMeta::named(None));
            meta.name = Some(pod_name);
            meta.namespace = metadata.namespace.clone().or(meta.namespace);
            if kind == "Deployment" {
                meta.labels
                    .insert("pod-template-hash".into(), template_hash.clone());
            }
            let pod = raw::Pod {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                metadata: Some(meta),
                spec: pod_spec,
                status: None,
                data: None,
                string_data: None,
                binary_data: None,
                immutable: None,
                kind_of_secret: None,
            };
            (Some(pod), Vec::new())
        })
        .collect()
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
