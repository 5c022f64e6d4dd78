//! From the serde types in `raw` to the model, by hand: required fields,
//! enumerations and quantities are checked here, then `validate` checks the
//! model as a whole.

use super::objects::{Objects, node_name, not_found};
use super::raw;
use super::validate::Problem;
use super::workload::{expand_job, expand_workload};
use downward::Reader;

mod downward;
use super::{
    ContainerSpec, Dns, EnvVar, Hook, HostAlias, HostPathType, HttpGet, JobSpec, ManifestError,
    PodSpec, PortSpec, Probe, ProbeAction, Protocol, PullPolicy, ReadOptions, Resources,
    RestartPolicy, VolumeFile, VolumeMount, VolumeSource, VolumeSpec, annotations, bounds,
    quantity,
};
use quantity::QuantityError;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub(crate) fn pods_from_yaml(
    text: &str,
    file: &Path,
    base_dir: &Path,
    options: &ReadOptions,
) -> Result<Vec<PodSpec>, ManifestError> {
    // The ConfigMaps and Secrets of other files first (`--configmap`); the
    // manifest's own, read after them, win over them.
    let mut objects = Objects::default();
    for config_file in &options.config_files {
        read_objects(config_file, &mut objects)?;
    }
    // Bounded before parsing: the parser's time grows with the square of the
    // nesting depth (see `bounds`).
    if text.len() > bounds::MAX_MANIFEST_BYTES {
        return Err(ManifestError::TooLarge {
            file: file.to_owned(),
            limit: bounds::MAX_MANIFEST_BYTES,
        });
    }
    bounds::check_depth(text, bounds::MAX_NESTING_DEPTH).map_err(|deep| {
        ManifestError::TooDeep {
            file: file.to_owned(),
            line: deep.line,
            limit: bounds::MAX_NESTING_DEPTH,
        }
    })?;
    // Straight into the schema first; only a manifest that fails is read
    // again in two steps, for an error that says where (a YAML tree is most
    // of the parse, and every pod start parses its manifest).
    let documents = match parse_directly(text) {
        Some(documents) => documents.into_iter().map(|pod| (pod, Vec::new())).collect(),
        None => parse_in_two_steps(text, file, options.strict)?,
    };
    // Every problem of every document, reported together.
    let several = documents.len() > 1;
    // ConfigMaps and Secrets first: the pods of the file refer to them.
    let mut documents: Vec<(Option<raw::Pod>, Vec<Problem>)> = documents
        .into_iter()
        .map(|(document, mut problems)| match document {
            Some(document) if matches!(document.kind.as_deref(), Some("ConfigMap" | "Secret")) => {
                objects.read(document, &mut problems);
                (None, problems)
            }
            other => (other, problems),
        })
        .collect();
    let objects = Arc::new(objects);
    let mut pods = Vec::new();
    let mut all_problems = Vec::new();
    for (index, (pod, mut problems)) in documents.drain(..).enumerate() {
        // An empty document (a trailing `---`) holds no pod.
        if let Some(pod) = pod {
            // Where the schema's problems were: what the conversion then
            // finds in those objects follows from the fields taken out.
            let broken: Vec<String> = problems.iter().map(|p| parent_path(&p.path)).collect();
            let mut found = Vec::new();
            let pod = Converter {
                problems: &mut found,
                base_dir,
                objects: &objects,
                pod: PodFacts::default(),
            }
            .pod(pod);
            if let Some(pod) = &pod {
                found.extend(pod.validate().err().unwrap_or_default());
            }
            problems.extend(
                found
                    .into_iter()
                    .filter(|p| !broken.iter().any(|b| follows_from(&p.path, &p.message, b))),
            );
            if let Some(pod) = pod.filter(|_| problems.is_empty()) {
                pods.push(pod);
            }
        }
        all_problems.extend(problems.into_iter().map(|mut problem| {
            if several {
                problem.path = format!("(document {}) {}", index + 1, problem.path);
            }
            problem
        }));
    }
    if !all_problems.is_empty() {
        return Err(ManifestError::Invalid {
            file: file.to_owned(),
            problems: all_problems,
        });
    }
    if pods.is_empty() {
        return Err(ManifestError::Invalid {
            file: file.to_owned(),
            problems: vec![Problem::new(
                "",
                "the manifest holds no Pod",
                "write a Pod: apiVersion: v1, kind: Pod, metadata.name and spec.containers",
            )],
        });
    }
    Ok(pods)
}

/// Reads the ConfigMaps and Secrets of `file` (`--configmap`) into
/// `objects`; any other kind is an error, as are their problems.
fn read_objects(file: &Path, objects: &mut Objects) -> Result<(), ManifestError> {
    let text = super::read_text(file)?;
    let mut problems = Vec::new();
    for (index, document) in serde_yaml_ng::Deserializer::from_str(&text).enumerate() {
        let value = serde_yaml_ng::Value::deserialize(document)
            .map_err(|error| syntax_error(file, index, &error))?;
        if value.is_null() {
            continue;
        }
        let mut found = Vec::new();
        match value.get("kind").and_then(serde_yaml_ng::Value::as_str) {
            Some("ConfigMap" | "Secret") => {
                match serde_path_to_error::deserialize::<_, raw::Pod>(value) {
                    Ok(document) => objects.read(document, &mut found),
                    Err(error) => found.push(schema_problem(error)),
                }
            }
            other => found.push(Problem::new(
                "kind",
                format!(
                    "`{}` is not a ConfigMap or a Secret",
                    other.unwrap_or("(none)")
                ),
                "--configmap files hold ConfigMaps and Secrets; give pods as the manifest",
            )),
        }
        problems.extend(found.into_iter().map(|mut problem| {
            problem.path = format!("(document {}) {}", index + 1, problem.path);
            problem
        }));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ManifestError::Invalid {
            file: file.to_owned(),
            problems,
        })
    }
}

/// Every document of `text` as a raw Pod, or `None` at the first error.
fn parse_directly(text: &str) -> Option<Vec<Option<raw::Pod>>> {
    serde_yaml_ng::Deserializer::from_str(text)
        .map(|document| Option::<raw::Pod>::deserialize(document).ok())
        .collect()
}

/// The path of the object that holds the field at `path`.
fn parent_path(path: &str) -> String {
    let cut = path.rfind(['.', '[']).unwrap_or(0);
    path[..cut].to_owned()
}

/// Whether a problem at `path` follows from a field taken out of the
/// object at `broken`: a field found missing there (a misspelt `image`), or
/// a complaint about an object that holds it (a container dropped, so "no
/// container"). Problems of the object's other fields still count.
fn follows_from(path: &str, message: &str, broken: &str) -> bool {
    let inside = |inner: &str, outer: &str| {
        outer.is_empty()
            || inner == outer
            || inner
                .strip_prefix(outer)
                .is_some_and(|rest| rest.starts_with(['.', '[']))
    };
    (parent_path(path) == broken && message == "required field is missing") || inside(broken, path)
}

/// One document of a manifest as read: its pod, if the schema let it be
/// read, and the schema's problems.
pub(super) type Document = (Option<raw::Pod>, Vec<Problem>);

/// The most schema problems reported for one document.
const MAX_SCHEMA_PROBLEMS: usize = 50;

/// As [`parse_directly`], in two steps that tell the errors apart: YAML
/// syntax first (with a line and column), then the Pod schema (with a field
/// path). Every schema problem of a document is found, not only the first:
/// the field at fault is taken out and the document read again, so that
/// the rest is still checked (and converted, for the problems found then).
fn parse_in_two_steps(
    text: &str,
    file: &Path,
    strict: bool,
) -> Result<Vec<Document>, ManifestError> {
    let mut documents = Vec::new();
    for (index, document) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let value = serde_yaml_ng::Value::deserialize(document)
            .map_err(|error| syntax_error(file, index, &error))?;
        read_document(value, file, index, strict, &mut documents);
    }
    Ok(documents)
}

/// One document (or one item of a `kind: List`), read into `documents`:
/// a workload as its pods, a Job as its template, a kind wpod does not run
/// skipped (or refused, `strict`).
fn read_document(
    mut value: serde_yaml_ng::Value,
    file: &Path,
    index: usize,
    strict: bool,
    documents: &mut Vec<Document>,
) {
    let kind = value
        .get("kind")
        .and_then(serde_yaml_ng::Value::as_str)
        .unwrap_or_default()
        .to_owned();
    match kind.as_str() {
        "" | "Pod" | "ConfigMap" | "Secret" => {}
        "List" => {
            match value
                .get("items")
                .and_then(serde_yaml_ng::Value::as_sequence)
            {
                Some(items) => {
                    for item in items.clone() {
                        read_document(item, file, index, strict, documents);
                    }
                }
                None => documents.push((
                    None,
                    vec![Problem::new(
                        "items",
                        "a List holds its objects in `items`",
                        "give `items: [...]`, or the objects as documents separated by `---`",
                    )],
                )),
            }
            return;
        }
        "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet" => {
            documents.extend(expand_workload(value, &kind));
            return;
        }
        "Job" => {
            documents.extend(expand_job(value));
            return;
        }
        "CronJob" => {
            documents.push((
                None,
                vec![Problem::new(
                    "kind",
                    "`CronJob` is not supported yet: wpod has no scheduler that outlives a run",
                    "run its jobTemplate as a Job (kind: Job, apiVersion: batch/v1), from cron if it must repeat",
                )],
            ));
            return;
        }
        other => {
            let name = value
                .get("metadata")
                .and_then(|m| m.get("name"))
                .and_then(serde_yaml_ng::Value::as_str)
                .unwrap_or("?");
            if strict {
                documents.push((
                    None,
                    vec![Problem::new(
                        "kind",
                        format!("a {other} (`{name}`) has no meaning on one host, and --strict refuses what would be skipped"),
                        "take the document out, or run without --strict to skip it with a warning",
                    )],
                ));
                return;
            }
            tracing::warn!(
                file = %file.display(),
                "skipped {other} `{name}` (document {}): wpod runs Pods, Jobs, and Deployments, ReplicaSets, StatefulSets and DaemonSets as their pods; a {other} has no meaning on one host",
                index + 1
            );
            return;
        }
    }
    let mut problems = Vec::new();
    let pod = loop {
        match serde_path_to_error::deserialize(value.clone()) {
            Ok(pod) => break pod,
            Err(error) => {
                let path: Vec<serde_path_to_error::Segment> =
                    error.path().iter().cloned().collect();
                problems.push(schema_problem(error));
                if problems.len() >= MAX_SCHEMA_PROBLEMS || !remove_at(&mut value, &path) {
                    break None;
                }
            }
        }
    };
    documents.push((pod, problems));
}

/// Takes the node at `path` out of `value`; `false` if there is none (the
/// problem is the whole document, or the path cannot be followed).
fn remove_at(value: &mut serde_yaml_ng::Value, path: &[serde_path_to_error::Segment]) -> bool {
    use serde_path_to_error::Segment;
    use serde_yaml_ng::Value;
    let Some((last, parents)) = path.split_last() else {
        return false;
    };
    let mut node = value;
    for segment in parents {
        node = match (segment, node) {
            (Segment::Map { key }, Value::Mapping(map)) => match map.get_mut(key.as_str()) {
                Some(inner) => inner,
                None => return false,
            },
            (Segment::Seq { index }, Value::Sequence(items)) => match items.get_mut(*index) {
                Some(inner) => inner,
                None => return false,
            },
            (Segment::Enum { .. }, node) => node,
            _ => return false,
        };
    }
    match (last, node) {
        (Segment::Map { key }, Value::Mapping(map)) => map.remove(key.as_str()).is_some(),
        (Segment::Seq { index }, Value::Sequence(items)) if *index < items.len() => {
            items.remove(*index);
            true
        }
        _ => false,
    }
}

fn syntax_error(file: &Path, index: usize, error: &serde_yaml_ng::Error) -> ManifestError {
    let message = strip_location(&error.to_string());
    ManifestError::Syntax {
        file: file.to_owned(),
        location: error.location().map(|l| (l.line(), l.column())),
        message: match index {
            0 => message,
            _ => format!("in document {}: {message}", index + 1),
        },
    }
}

pub(super) fn schema_problem(error: serde_path_to_error::Error<serde_yaml_ng::Error>) -> Problem {
    let path = match error.path().to_string() {
        root if root == "." => String::new(),
        path => path,
    };
    let message = error.into_inner().to_string();
    if message == raw::NOT_SUPPORTED {
        let hint = unsupported_hint(&path);
        Problem::new(path, "not supported yet", hint)
    } else if let Some(rest) = message.strip_prefix("unknown field `") {
        let (field, expected) = rest.split_once('`').unwrap_or((rest, ""));
        let hint = match closest_field(field, expected) {
            Some(close) => format!("did you mean `{close}`? field names are case-sensitive"),
            None => "remove it; it is not a field of this Kubernetes object".to_owned(),
        };
        Problem::new(path, format!("unknown field `{field}`"), hint)
    } else {
        Problem::new(
            path,
            message,
            "see the Pod fields wpod supports in its README",
        )
    }
}

/// serde_yaml_ng appends " at line L column C"; the location is kept apart.
/// The parser's message without its ` at line L column C` (the error
/// gives the position once, before it), wherever it stands.
fn strip_location(message: &str) -> String {
    let Some(at) = message.find(" at line ") else {
        return message.to_owned();
    };
    let rest = &message[at + " at line ".len()..];
    let after_line = rest.trim_start_matches(|c: char| c.is_ascii_digit());
    let after = match after_line.strip_prefix(" column ") {
        Some(column) => column.trim_start_matches(|c: char| c.is_ascii_digit()),
        None => after_line,
    };
    format!("{}{after}", &message[..at])
}

fn unsupported_hint(path: &str) -> String {
    let field = path.rsplit('.').next().unwrap_or(path);
    match field {
        "fileKeyRef" => {
            "give the variable a literal `value`, or take it from a ConfigMap (configMapKeyRef)"
                .into()
        }
        _ => "remove it; see the Pod fields wpod supports in its README".into(),
    }
}

/// The expected field within an edit distance of 2 of `field`, if any.
fn closest_field<'a>(field: &str, expected: &'a str) -> Option<&'a str> {
    // The distance is at least the difference in length: only candidates
    // of about the same length are compared, so that a field name of
    // megabytes costs no more than reading it.
    let length = field.chars().count();
    let field = field.to_lowercase();
    expected
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|candidate| candidate.chars().count().abs_diff(length) <= 2)
        .map(|candidate| (edit_distance(&field, &candidate.to_lowercase()), candidate))
        .filter(|(distance, _)| *distance <= 2)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current.push(substitution.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

/// A Job's pod template: each of the Job's pods is read from it with its
/// own name, uid and labels, as the controller makes a pod of the template
/// and the kubelet reads that pod (so that the downward API tells each pod
/// its own).
#[derive(Clone)]
pub(crate) struct Template(Arc<TemplateParts>);

struct TemplateParts {
    /// The template as a Pod document.
    document: serde_yaml_ng::Value,
    objects: Arc<Objects>,
    base_dir: PathBuf,
}

impl std::fmt::Debug for Template {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Template")
            .field("document", &self.0.document)
            .finish_non_exhaustive()
    }
}

impl PartialEq for Template {
    fn eq(&self, other: &Template) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.0.document == other.0.document
    }
}

impl Template {
    /// One pod of the template, named `name`, with `labels` and
    /// `annotations` added to the template's.
    ///
    /// # Errors
    ///
    /// The pod's problems (none for a template that was read whole: the
    /// Job's own pod was checked when the manifest was read).
    pub(crate) fn pod(
        &self,
        name: &str,
        labels: &std::collections::BTreeMap<String, String>,
        annotations: &std::collections::BTreeMap<String, String>,
    ) -> Result<PodSpec, Vec<Problem>> {
        use serde_yaml_ng::{Mapping, Value};
        let mut document = self.0.document.clone();
        if let Some(Value::Mapping(meta)) = document.get_mut("metadata") {
            meta.insert("name".into(), name.into());
            for (key, extra) in [("labels", labels), ("annotations", annotations)] {
                let entry = meta
                    .entry(key.into())
                    .or_insert_with(|| Value::Mapping(Mapping::new()));
                if !entry.is_mapping() {
                    *entry = Value::Mapping(Mapping::new());
                }
                if let Value::Mapping(map) = entry {
                    for (k, v) in extra {
                        map.insert(k.as_str().into(), v.as_str().into());
                    }
                }
            }
        }
        let raw: raw::Pod =
            serde_path_to_error::deserialize(document).map_err(|e| vec![schema_problem(e)])?;
        let mut problems = Vec::new();
        let pod = Converter {
            problems: &mut problems,
            base_dir: &self.0.base_dir,
            objects: &self.0.objects,
            pod: PodFacts::default(),
        }
        .pod(raw);
        match pod {
            Some(pod) if problems.is_empty() => pod.validate().map(|()| pod),
            _ => Err(problems),
        }
    }
}

/// Which probe is being read (their rules differ a little).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ProbeKind {
    Startup,
    Readiness,
    Liveness,
}

struct Converter<'a> {
    problems: &'a mut Vec<Problem>,
    base_dir: &'a Path,
    /// The ConfigMaps and Secrets of the file.
    objects: &'a Arc<Objects>,
    /// What the downward API tells of the pod being read.
    pod: PodFacts,
}

/// The pod facts `fieldRef` can name.
#[derive(Default)]
struct PodFacts {
    name: String,
    namespace: String,
    /// `metadata.uid`: as written (a pod read back from a cluster), else
    /// made for this pod, as the API server makes one.
    uid: String,
    /// Each container's resources, for `resourceFieldRef`.
    resources: std::collections::BTreeMap<String, Resources>,
    labels: std::collections::BTreeMap<String, String>,
    annotations: std::collections::BTreeMap<String, String>,
}

impl Converter<'_> {
    fn problem(
        &mut self,
        path: impl Into<String>,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) {
        self.problems.push(Problem::new(path, message, hint));
    }

    fn quantity_problem(&mut self, path: String, text: &str, error: QuantityError, example: &str) {
        let hint = match error {
            QuantityError::Malformed => {
                format!(
                    "write e.g. {example}: a number with an optional suffix (m, k, M, G, Ki, Mi, Gi, ...)"
                )
            }
            QuantityError::Negative => format!("write e.g. {example}"),
            QuantityError::TooLarge => "leave it out for no limit".to_owned(),
        };
        self.problem(path, format!("`{text}` {error}"), hint);
    }

    fn required<T>(&mut self, value: Option<T>, path: &str, hint: &str) -> Option<T> {
        if value.is_none() {
            self.problem(path, "required field is missing", hint);
        }
        value
    }

    fn pod(&mut self, pod: raw::Pod) -> Option<PodSpec> {
        match pod.api_version.as_deref() {
            Some("v1") => {}
            Some(other) => self.problem(
                "apiVersion",
                format!("`{other}` is not a Pod's API version"),
                "write `apiVersion: v1`",
            ),
            None => self.problem(
                "apiVersion",
                "required field is missing",
                "write `apiVersion: v1`",
            ),
        }
        match pod.kind.as_deref() {
            Some("Pod") => {}
            Some(other) => self.problem(
                "kind",
                format!("`{other}` is not supported: wpod runs Pods"),
                "write `kind: Pod` (for a Deployment or Job, run its pod template as a Pod)",
            ),
            None => self.problem("kind", "required field is missing", "write `kind: Pod`"),
        }
        let job = pod.job;
        let metadata = self.required(pod.metadata, "metadata", "add `metadata: {name: my-pod}`");
        let spec = self.required(pod.spec, "spec", "add `spec.containers`");
        let metadata = metadata?;
        let name = self.required(
            metadata.name,
            "metadata.name",
            "name the pod, e.g. `name: my-pod`",
        );
        let spec = spec?;
        for (field, set) in [
            ("data", pod.data.is_some()),
            ("stringData", pod.string_data.is_some()),
            ("binaryData", pod.binary_data.is_some()),
            ("immutable", pod.immutable.is_some()),
            ("type", pod.kind_of_secret.is_some()),
        ] {
            if set {
                self.problem(
                    field,
                    "not a field of a Pod",
                    "a ConfigMap or Secret is a document of its own (`---`), with its own kind",
                );
            }
        }
        // Every container's resources first: a variable or a file may
        // name another container's (their problems are found below).
        let resources = {
            let mut unheard = Vec::new();
            let mut quiet = Converter {
                problems: &mut unheard,
                base_dir: self.base_dir,
                objects: self.objects,
                pod: PodFacts::default(),
            };
            spec.init_containers
                .iter()
                .flatten()
                .chain(spec.containers.iter().flatten())
                .filter_map(|c| Some((c.name.clone()?, quiet.resources(c.resources.as_ref(), ""))))
                .collect()
        };
        self.pod = PodFacts {
            name: name.clone().unwrap_or_default(),
            namespace: metadata
                .namespace
                .clone()
                .unwrap_or_else(|| "default".into()),
            uid: metadata
                .uid
                .clone()
                .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
            resources,
            labels: metadata.labels.clone(),
            annotations: metadata.annotations.clone(),
        };
        let mut containers = self.containers(spec.containers, "spec.containers");
        let mut init_containers = self.containers(spec.init_containers, "spec.initContainers");
        if containers.is_empty() && self.problems.is_empty() {
            self.problem(
                "spec.containers",
                "a pod needs at least one container",
                "add a container with a `name` and an `image`",
            );
        }
        let volumes = spec
            .volumes
            .unwrap_or_default()
            .into_iter()
            .enumerate()
            .filter_map(|(i, volume)| self.volume(volume, &format!("spec.volumes[{i}]")))
            .collect();
        // A container that mounts a ConfigMap or Secret that is not there
        // cannot start.
        let volumes: Vec<VolumeSpec> = volumes;
        for container in init_containers.iter_mut().chain(containers.iter_mut()) {
            let missing = container.volume_mounts.iter().find_map(|mount| {
                volumes.iter().find_map(|volume| match &volume.source {
                    VolumeSource::Files {
                        missing: Some(missing),
                        ..
                    } if volume.name == mount.name => Some(missing.clone()),
                    _ => None,
                })
            });
            if container.config_error.is_none() {
                container.config_error = missing;
            }
        }
        let restart_policy = match spec.restart_policy.as_deref() {
            None | Some("Always") => RestartPolicy::Always,
            Some("OnFailure") => RestartPolicy::OnFailure,
            Some("Never") => RestartPolicy::Never,
            Some(other) => {
                self.problem(
                    "spec.restartPolicy",
                    format!("unknown restart policy `{other}`"),
                    "use Always, OnFailure or Never",
                );
                RestartPolicy::Always
            }
        };
        let grace = spec.termination_grace_period_seconds.unwrap_or(30);
        if grace < 0 {
            self.problem(
                "spec.terminationGracePeriodSeconds",
                "must not be negative",
                "use 0 or more seconds",
            );
        }
        if let Some(context) = &spec.security_context {
            self.seccomp_profile(context.seccomp_profile.as_ref(), "spec.securityContext");
        }
        let active_deadline = match spec.active_deadline_seconds {
            None => None,
            Some(seconds) if seconds >= 1 => Some(Duration::from_secs(seconds as u64)),
            Some(seconds) => {
                self.problem(
                    "spec.activeDeadlineSeconds",
                    format!("{seconds} is not a positive number of seconds"),
                    "give 1 or more, or leave it out for no deadline",
                );
                None
            }
        };
        let dns = self.dns(spec.dns_policy.as_deref(), spec.dns_config);
        let host_aliases = self.host_aliases(spec.host_aliases.unwrap_or_default());
        let name = name?;
        // A bad value is reported by `validate`, with the rest.
        let (annotations, _) = annotations::parse(&metadata.annotations);
        Some(PodSpec {
            hostname: spec.hostname.unwrap_or_else(|| name.clone()),
            name,
            namespace: metadata.namespace.unwrap_or_else(|| "default".into()),
            labels: metadata.labels,
            annotations: metadata.annotations,
            egress: annotations.egress,
            memory_limit: annotations.memory_limit,
            descriptor_limit: annotations.descriptor_limit,
            http_concurrency: annotations.http_concurrency,
            init_containers,
            containers,
            volumes,
            restart_policy,
            host_network: spec.host_network.unwrap_or(false),
            host_aliases,
            dns,
            termination_grace_period: Duration::from_secs(grace.max(0) as u64),
            active_deadline,
            base_dir: self.base_dir.to_owned(),
            uid: self.pod.uid.clone(),
            job: job.map(|parts| JobSpec {
                completions: parts.completions,
                parallelism: parts.parallelism,
                backoff_limit: parts.backoff_limit,
                active_deadline: parts.active_deadline,
                indexed: parts.indexed,
                template: Template(Arc::new(TemplateParts {
                    document: parts.document,
                    objects: self.objects.clone(),
                    base_dir: self.base_dir.to_owned(),
                })),
            }),
        })
    }

    /// `spec.hostAliases`, checked as the API server does: an address, and
    /// at least one name.
    fn host_aliases(&mut self, aliases: Vec<raw::HostAlias>) -> Vec<HostAlias> {
        let mut result = Vec::new();
        for (i, alias) in aliases.into_iter().enumerate() {
            let at = format!("spec.hostAliases[{i}]");
            let ip = self.required(alias.ip, &format!("{at}.ip"), "e.g. 127.0.0.2");
            let ip = ip.and_then(|text| match text.parse::<std::net::IpAddr>() {
                Ok(ip) => Some(ip),
                Err(_) => {
                    self.problem(
                        format!("{at}.ip"),
                        format!("`{text}` is not an IP address"),
                        "give an IPv4 or IPv6 address",
                    );
                    None
                }
            });
            let hostnames = alias.hostnames.unwrap_or_default();
            if hostnames.is_empty() {
                self.problem(
                    format!("{at}.hostnames"),
                    "required field is missing",
                    "give the names that resolve to the address",
                );
            }
            for (j, name) in hostnames.iter().enumerate() {
                let valid = name.len() <= 253
                    && name.split('.').all(|label| {
                        !label.is_empty()
                            && label.len() <= 63
                            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                            && !label.starts_with('-')
                            && !label.ends_with('-')
                    });
                if !valid {
                    self.problem(
                        format!("{at}.hostnames[{j}]"),
                        format!("`{name}` is not a host name"),
                        "give a DNS name, e.g. api.test",
                    );
                }
            }
            if let Some(ip) = ip {
                result.push(HostAlias { ip, hostnames });
            }
        }
        result
    }

    /// `spec.dnsPolicy` and `spec.dnsConfig`, checked as the API server does.
    fn dns(&mut self, policy: Option<&str>, config: Option<raw::DnsConfig>) -> Dns {
        let policy_none = match policy {
            None | Some("ClusterFirst" | "ClusterFirstWithHostNet" | "Default") => false,
            Some("None") => true,
            Some(other) => {
                self.problem(
                    "spec.dnsPolicy",
                    format!("unknown DNS policy `{other}`"),
                    "use ClusterFirst, ClusterFirstWithHostNet, Default or None",
                );
                false
            }
        };
        let config = config.unwrap_or(raw::DnsConfig {
            nameservers: None,
            searches: None,
            options: None,
        });
        let mut nameservers = Vec::new();
        for (i, text) in config.nameservers.unwrap_or_default().iter().enumerate() {
            match text.parse() {
                Ok(ip) => nameservers.push(ip),
                Err(_) => self.problem(
                    format!("spec.dnsConfig.nameservers[{i}]"),
                    format!("`{text}` is not an IP address"),
                    "give the resolver's address, e.g. 10.0.0.10",
                ),
            }
        }
        if nameservers.len() > 3 {
            self.problem(
                "spec.dnsConfig.nameservers",
                format!("{} nameservers, at most 3 are allowed", nameservers.len()),
                "keep three",
            );
        }
        if policy_none && nameservers.is_empty() {
            self.problem(
                "spec.dnsConfig.nameservers",
                "dnsPolicy None needs at least one nameserver",
                "list the resolver's address in dnsConfig.nameservers",
            );
        }
        let searches = config.searches.unwrap_or_default();
        for (i, search) in searches.iter().enumerate() {
            if search.is_empty() || search.len() > 253 || search.contains(char::is_whitespace) {
                self.problem(
                    format!("spec.dnsConfig.searches[{i}]"),
                    format!("`{search}` is not a DNS domain"),
                    "give a domain such as ns1.svc.cluster.local",
                );
            }
        }
        let mut options = Vec::new();
        for (i, option) in config.options.unwrap_or_default().into_iter().enumerate() {
            match option.name {
                Some(name) if !name.is_empty() && !name.contains(char::is_whitespace) => {
                    options.push((name, option.value))
                }
                _ => self.problem(
                    format!("spec.dnsConfig.options[{i}].name"),
                    "a resolver option needs a name",
                    "e.g. {name: ndots, value: \"2\"}",
                ),
            }
        }
        Dns {
            policy_none,
            nameservers,
            searches,
            options,
        }
    }

    fn containers(
        &mut self,
        containers: Option<Vec<raw::Container>>,
        path: &str,
    ) -> Vec<ContainerSpec> {
        containers
            .unwrap_or_default()
            .into_iter()
            .enumerate()
            .filter_map(|(i, container)| {
                let path = format!("{path}[{i}]");
                let container = self.container(container, &path)?;
                // As the API server: probes are for app containers and
                // sidecars.
                if path.starts_with("spec.initContainers") && !container.sidecar {
                    let probes = [
                        ("startupProbe", container.startup_probe.is_some()),
                        ("readinessProbe", container.readiness_probe.is_some()),
                        ("livenessProbe", container.liveness_probe.is_some()),
                        ("lifecycle.postStart", container.post_start.is_some()),
                        ("lifecycle.preStop", container.pre_stop.is_some()),
                    ];
                    for (field, _) in probes.iter().filter(|(_, set)| *set) {
                        self.problem(
                            format!("{path}.{field}"),
                            "an init container may not have probes or lifecycle hooks",
                            "probe the app containers; an init container runs to its end (a sidecar, restartPolicy: Always, may have them)",
                        );
                    }
                }
                Some(container)
            })
            .collect()
    }

    fn container(&mut self, container: raw::Container, path: &str) -> Option<ContainerSpec> {
        let name = self.required(
            container.name,
            &format!("{path}.name"),
            "name the container",
        );
        let image = self.required(
            container.image,
            &format!("{path}.image"),
            "give the path of a .wasm file or an image reference",
        );
        let name_of_container = name.clone();
        // What keeps the container from starting (a ConfigMap, Secret or key
        // that is not there and not optional), as the kubelet reports it.
        let mut config_error = None;
        // envFrom first; env after it, overriding, as the kubelet does.
        let mut env: Vec<EnvVar> = Vec::new();
        for (i, source) in container
            .env_from
            .unwrap_or_default()
            .into_iter()
            .enumerate()
        {
            self.env_from(
                source,
                &format!("{path}.envFrom[{i}]"),
                &mut env,
                &mut config_error,
            );
        }
        for (i, var) in container.env.unwrap_or_default().into_iter().enumerate() {
            let at = format!("{path}.env[{i}]");
            let Some(name) = self.required(var.name, &format!("{at}.name"), "name the variable")
            else {
                continue;
            };
            let value = match var.value_from {
                None => Some(var.value.unwrap_or_default()),
                Some(_) if var.value.is_some() => {
                    self.problem(
                        format!("{at}.valueFrom"),
                        "a variable has a value or a valueFrom, not both",
                        "keep one of them",
                    );
                    None
                }
                Some(source) => self.value_from(
                    source,
                    &format!("{at}.valueFrom"),
                    name_of_container.as_deref().unwrap_or_default(),
                    &mut config_error,
                ),
            };
            if let Some(value) = value {
                env.push(EnvVar { name, value });
            }
        }
        let volume_mounts = container
            .volume_mounts
            .unwrap_or_default()
            .into_iter()
            .enumerate()
            .filter_map(|(i, mount)| {
                let path = format!("{path}.volumeMounts[{i}]");
                let name = self.required(
                    mount.name,
                    &format!("{path}.name"),
                    "name one of spec.volumes",
                );
                let mount_path = self.required(
                    mount.mount_path,
                    &format!("{path}.mountPath"),
                    "give an absolute path",
                );
                Some(VolumeMount {
                    name: name?,
                    mount_path: mount_path?,
                    read_only: mount.read_only.unwrap_or(false),
                    sub_path: mount.sub_path.filter(|sub_path| !sub_path.is_empty()),
                })
            })
            .collect();
        let ports = container
            .ports
            .unwrap_or_default()
            .into_iter()
            .enumerate()
            .filter_map(|(i, port)| self.port(port, &format!("{path}.ports[{i}]")))
            .collect();
        let resources = self.resources(container.resources.as_ref(), &format!("{path}.resources"));
        let image_pull_policy = match container.image_pull_policy.as_deref() {
            None => None,
            Some("Always") => Some(PullPolicy::Always),
            Some("IfNotPresent") => Some(PullPolicy::IfNotPresent),
            Some("Never") => Some(PullPolicy::Never),
            Some(other) => {
                self.problem(
                    format!("{path}.imagePullPolicy"),
                    format!("unknown pull policy `{other}`"),
                    "use Always, IfNotPresent or Never",
                );
                None
            }
        };
        let ports: Vec<PortSpec> = ports;
        let mut probe = |probe: Option<raw::Probe>, field: &str, kind: ProbeKind| {
            probe.and_then(|probe| self.probe(probe, &format!("{path}.{field}"), kind, &ports))
        };
        let startup_probe = probe(container.startup_probe, "startupProbe", ProbeKind::Startup);
        let readiness_probe = probe(
            container.readiness_probe,
            "readinessProbe",
            ProbeKind::Readiness,
        );
        let liveness_probe = probe(
            container.liveness_probe,
            "livenessProbe",
            ProbeKind::Liveness,
        );
        if let Some(context) = &container.security_context {
            self.security_context(context, &format!("{path}.securityContext"));
        }
        if container.tty == Some(true) {
            self.problem(
                format!("{path}.tty"),
                "a terminal for the container is not supported",
                "leave tty out: with stdin: true and wpod run -i the container reads the input as a stream",
            );
        }
        let (post_start, pre_stop) = match container.lifecycle {
            None => (None, None),
            Some(lifecycle) => (
                lifecycle.post_start.and_then(|handler| {
                    self.hook(handler, &format!("{path}.lifecycle.postStart"), &ports)
                }),
                lifecycle.pre_stop.and_then(|handler| {
                    self.hook(handler, &format!("{path}.lifecycle.preStop"), &ports)
                }),
            ),
        };
        Some(ContainerSpec {
            name: name?,
            image: image?,
            command: container.command,
            args: container.args,
            env,
            working_dir: container.working_dir.filter(|dir| !dir.is_empty()),
            volume_mounts,
            ports,
            resources,
            image_pull_policy,
            config_error,
            startup_probe,
            readiness_probe,
            liveness_probe,
            post_start,
            pre_stop,
            stdin: container.stdin.unwrap_or(false),
            stdin_once: container.stdin_once.unwrap_or(false),
            sidecar: match container.restart_policy.as_deref() {
                None => false,
                Some("Always") if path.starts_with("spec.initContainers") => true,
                Some(other) => {
                    let (message, hint) = if path.starts_with("spec.initContainers") {
                        (
                            format!("restart policy `{other}` is not allowed here"),
                            "use Always (a native sidecar), or leave it out",
                        )
                    } else {
                        (
                            "an app container has no restart policy of its own".to_owned(),
                            "leave it out: spec.restartPolicy applies; only init containers may be sidecars (restartPolicy: Always)",
                        )
                    };
                    self.problem(format!("{path}.restartPolicy"), message, hint);
                    false
                }
            },
        })
    }

    /// A probe, its times checked as the API server does and its port
    /// resolved against the container's `ports`.
    fn probe(
        &mut self,
        probe: raw::Probe,
        path: &str,
        kind: ProbeKind,
        ports: &[PortSpec],
    ) -> Option<Probe> {
        let mut actions = Vec::new();
        if let Some(exec) = probe.exec {
            let command = self.required(
                exec.command.filter(|c| !c.is_empty()),
                &format!("{path}.exec.command"),
                "give the program from the image and its arguments, e.g. [cat, /tmp/healthy]",
            );
            actions.push(command.map(|command| ProbeAction::Exec { command }));
        }
        if let Some(get) = probe.http_get {
            let get = self.http_get(get, &format!("{path}.httpGet"), ports);
            actions.push(get.map(ProbeAction::HttpGet));
        }
        if let Some(tcp) = probe.tcp_socket {
            let at = format!("{path}.tcpSocket");
            self.probe_host(tcp.host.as_deref(), &at);
            let port = self.probe_port(tcp.port, &format!("{at}.port"), ports);
            actions.push(port.map(|port| ProbeAction::TcpSocket { port }));
        }
        if let Some(grpc) = probe.grpc {
            let at = format!("{path}.grpc.port");
            let port = self
                .required(grpc.port, &at, "give the port the gRPC server listens on")
                .and_then(|number| self.port_number(number, &at));
            let service = grpc.service.unwrap_or_default();
            actions.push(port.map(|port| ProbeAction::Grpc { port, service }));
        }
        if actions.len() != 1 {
            self.problem(
                path,
                if actions.is_empty() {
                    "the probe has no handler"
                } else {
                    "the probe has more than one handler"
                },
                "give exactly one of exec, httpGet, tcpSocket and grpc",
            );
            return None;
        }
        let action = actions.pop().flatten()?;
        let mut seconds = |value: Option<i64>, field: &str, default: u64, least: i64| match value {
            None => Some(Duration::from_secs(default)),
            Some(n) if n >= least => Some(Duration::from_secs(n as u64)),
            Some(n) => {
                self.problem(
                    format!("{path}.{field}"),
                    format!("{n} is less than {least}"),
                    format!("give a whole number of seconds, {least} or more"),
                );
                None
            }
        };
        let initial_delay = seconds(probe.initial_delay_seconds, "initialDelaySeconds", 0, 0);
        let period = seconds(probe.period_seconds, "periodSeconds", 10, 1);
        let timeout = seconds(probe.timeout_seconds, "timeoutSeconds", 1, 1);
        let mut count = |value: Option<i64>, field: &str, default: u32| match value {
            None => Some(default),
            Some(n) if n >= 1 => Some(u32::try_from(n).unwrap_or(u32::MAX)),
            Some(n) => {
                self.problem(
                    format!("{path}.{field}"),
                    format!("{n} is less than 1"),
                    "give a number of probes in a row, 1 or more",
                );
                None
            }
        };
        let success_threshold = count(probe.success_threshold, "successThreshold", 1);
        let failure_threshold = count(probe.failure_threshold, "failureThreshold", 3);
        if kind != ProbeKind::Readiness && success_threshold.is_some_and(|n| n != 1) {
            self.problem(
                format!("{path}.successThreshold"),
                "must be 1 for a liveness or startup probe",
                "leave it out",
            );
            return None;
        }
        Some(Probe {
            action,
            initial_delay: initial_delay?,
            period: period?,
            timeout: timeout?,
            success_threshold: success_threshold?,
            failure_threshold: failure_threshold?,
            termination_grace_period: match probe.termination_grace_period_seconds {
                None => None,
                Some(_) if kind == ProbeKind::Readiness => {
                    self.problem(
                        format!("{path}.terminationGracePeriodSeconds"),
                        "a readiness probe stops nothing",
                        "leave it out (it is for liveness and startup probes)",
                    );
                    return None;
                }
                Some(seconds) if seconds >= 1 => Some(Duration::from_secs(seconds as u64)),
                Some(seconds) => {
                    self.problem(
                        format!("{path}.terminationGracePeriodSeconds"),
                        format!("{seconds} is less than 1"),
                        "give 1 or more seconds, or leave it out for the pod's",
                    );
                    return None;
                }
            },
        })
    }

    /// An `httpGet` action (a probe's or a hook's) at `at`: its path, port
    /// and headers.
    fn http_get(
        &mut self,
        get: raw::HttpGetAction,
        at: &str,
        ports: &[PortSpec],
    ) -> Option<HttpGet> {
        self.probe_host(get.host.as_deref(), at);
        match get.scheme.as_deref() {
            None | Some("HTTP") => {}
            Some(other) => self.problem(
                format!("{at}.scheme"),
                format!("scheme `{other}` is not supported yet"),
                "use HTTP (the request stays on the pod's own localhost)",
            ),
        }
        let port = self.probe_port(get.port, &format!("{at}.port"), ports);
        let headers = get
            .http_headers
            .unwrap_or_default()
            .into_iter()
            .enumerate()
            .filter_map(|(i, header)| {
                let name = self.required(
                    header.name.filter(|n| !n.is_empty()),
                    &format!("{at}.httpHeaders[{i}].name"),
                    "name the header",
                )?;
                Some((name, header.value.unwrap_or_default()))
            })
            .collect();
        let path = get
            .path
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| "/".into());
        Some(HttpGet {
            path,
            port: port?,
            headers,
        })
    }

    /// A file mode at `at`: 0 to 0777.
    fn file_mode(&mut self, value: Option<raw::FileMode>, at: &str) -> Option<u32> {
        let (mode, text) = match value? {
            raw::FileMode::Number(mode) => (Some(mode), mode.to_string()),
            // `0644`: octal, as YAML 1.1 (and so kubectl) reads it.
            raw::FileMode::Text(text) => (
                text.strip_prefix("0o")
                    .or_else(|| text.strip_prefix('0'))
                    .and_then(|digits| i64::from_str_radix(digits, 8).ok())
                    .or((text == "0").then_some(0)),
                text,
            ),
        };
        match mode {
            Some(mode) if (0..=0o777).contains(&mode) => Some(mode as u32),
            _ => {
                self.problem(
                    at,
                    format!("{text} is not a file mode"),
                    "give a mode from 0 to 0777 (511), e.g. 0644 (420)",
                );
                None
            }
        }
    }

    /// A `configMap` or `secret` volume: its files, from the object of the
    /// file (`items` pick keys and name their files; modes as given, else
    /// `defaultMode`, else 0644).
    fn object_volume(
        &mut self,
        kind: &'static str,
        source: raw::ObjectVolume,
        path: &str,
    ) -> Option<VolumeSource> {
        let (name, name_field) = match kind {
            "Secret" => (source.secret_name, "secretName"),
            _ => (source.name, "name"),
        };
        let name = self.required(
            name,
            &format!("{path}.{name_field}"),
            "name the object, a document of the same file",
        )?;
        let default_mode = self
            .file_mode(source.default_mode, &format!("{path}.defaultMode"))
            .unwrap_or(0o644);
        let optional = source.optional == Some(true);
        let namespace = self.pod.namespace.clone();
        let objects = self.objects;
        let keys = objects.get(kind, &name);
        let mut files = Vec::new();
        let mut missing = None;
        match (&source.items, keys) {
            (_, None) if optional => {}
            (_, None) => missing = Some(not_found(kind, &namespace, &name, None)),
            (None, Some(keys)) => files.extend(keys.iter().map(|(key, content)| VolumeFile {
                path: key.clone(),
                content: content.clone(),
                mode: default_mode,
            })),
            (Some(items), Some(keys)) => {
                for (i, item) in items.iter().enumerate() {
                    let at = format!("{path}.items[{i}]");
                    let (Some(key), Some(file)) = (&item.key, &item.path) else {
                        self.problem(
                            at,
                            "an item needs a key and a path",
                            "e.g. {key: app.conf, path: conf/app.conf}",
                        );
                        continue;
                    };
                    if !self.inside_volume(file, &format!("{at}.path")) {
                        continue;
                    }
                    let item_mode = self.file_mode(item.mode.clone(), &format!("{at}.mode"));
                    match keys.get(key) {
                        Some(content) => files.push(VolumeFile {
                            path: file.clone(),
                            content: content.clone(),
                            mode: item_mode.unwrap_or(default_mode),
                        }),
                        None if optional => {}
                        None => {
                            missing.get_or_insert(not_found(kind, &namespace, &name, Some(key)));
                        }
                    }
                }
            }
        }
        Some(VolumeSource::Files { files, missing })
    }

    /// `envFrom[]`: every key of a ConfigMap or Secret as a variable (with
    /// `prefix`), appended to `env`.
    fn env_from(
        &mut self,
        source: raw::EnvFromSource,
        path: &str,
        env: &mut Vec<EnvVar>,
        config_error: &mut Option<String>,
    ) {
        let (kind, reference, field) = match (source.config_map_ref, source.secret_ref) {
            (Some(reference), None) => ("ConfigMap", reference, "configMapRef"),
            (None, Some(reference)) => ("Secret", reference, "secretRef"),
            _ => {
                self.problem(
                    path,
                    "give exactly one of configMapRef and secretRef",
                    "one source per entry",
                );
                return;
            }
        };
        let Some(name) = self.required(
            reference.name,
            &format!("{path}.{field}.name"),
            "name the object",
        ) else {
            return;
        };
        let prefix = source.prefix.unwrap_or_default();
        match self.objects.get(kind, &name) {
            Some(keys) => {
                for (key, value) in keys {
                    env.push(EnvVar {
                        name: format!("{prefix}{key}"),
                        value: String::from_utf8_lossy(value).into_owned(),
                    });
                }
            }
            None if reference.optional == Some(true) => {}
            None => {
                config_error.get_or_insert(not_found(kind, &self.pod.namespace, &name, None));
            }
        }
    }

    /// `valueFrom`: a key of a ConfigMap or Secret, or a field of the pod
    /// (the downward API); `None` for an optional key that is not there.
    fn value_from(
        &mut self,
        source: raw::EnvVarSource,
        path: &str,
        own: &str,
        config_error: &mut Option<String>,
    ) -> Option<String> {
        let mut key_of = |kind: &'static str, field: &str, selector: raw::KeySelector| {
            let name = self.required(
                selector.name,
                &format!("{path}.{field}.name"),
                "name the object",
            )?;
            let key =
                self.required(selector.key, &format!("{path}.{field}.key"), "name the key")?;
            let found = self.objects.get(kind, &name).map(|keys| {
                keys.get(&key)
                    .map(|v| String::from_utf8_lossy(v).into_owned())
            });
            match found {
                Some(Some(value)) => Some(value),
                _ if selector.optional == Some(true) => None,
                Some(None) => {
                    config_error.get_or_insert(not_found(
                        kind,
                        &self.pod.namespace,
                        &name,
                        Some(&key),
                    ));
                    None
                }
                None => {
                    config_error.get_or_insert(not_found(kind, &self.pod.namespace, &name, None));
                    None
                }
            }
        };
        match (
            source.config_map_key_ref,
            source.secret_key_ref,
            source.field_ref,
        ) {
            (Some(selector), None, None) => key_of("ConfigMap", "configMapKeyRef", selector),
            (None, Some(selector), None) => key_of("Secret", "secretKeyRef", selector),
            (None, None, Some(field)) if source.resource_field_ref.is_none() => {
                self.field_ref(field, &format!("{path}.fieldRef"), Reader::Variable)
            }
            (None, None, None) if source.resource_field_ref.is_some() => {
                let reference = source.resource_field_ref?;
                self.resource_field_ref(reference, &format!("{path}.resourceFieldRef"), Some(own))
            }
            _ => {
                self.problem(
                    path,
                    "give exactly one of configMapKeyRef, secretKeyRef, fieldRef and resourceFieldRef",
                    "one source per variable",
                );
                None
            }
        }
    }

    /// A container's `securityContext`: what holds for a Wasm guest, which
    /// has no user, no capabilities and no privilege to gain, is accepted;
    /// what asks for more than the sandbox gives is refused.
    fn security_context(&mut self, context: &raw::SecurityContext, path: &str) {
        if context.privileged == Some(true) {
            self.problem(
                format!("{path}.privileged"),
                "a privileged container cannot be had: a Wasm guest reaches only what wpod hands it",
                "leave privileged out, or set it to false",
            );
        }
        if let Some(added) = context
            .capabilities
            .as_ref()
            .and_then(|c| c.add.as_ref())
            .filter(|added| !added.is_empty())
        {
            self.problem(
                format!("{path}.capabilities.add"),
                format!(
                    "a Wasm guest has no Linux capabilities, so {} cannot be added",
                    added.join(", ")
                ),
                "leave capabilities.add out (capabilities.drop is accepted: there is nothing to drop)",
            );
        }
        self.seccomp_profile(context.seccomp_profile.as_ref(), path);
    }

    /// `seccompProfile`: `RuntimeDefault` holds (behind the OS wall, wpod's
    /// own filter); `Unconfined` and `Localhost` cannot.
    fn seccomp_profile(&mut self, profile: Option<&raw::SeccompProfile>, path: &str) {
        let Some(profile) = profile else { return };
        match profile.kind.as_deref() {
            Some("RuntimeDefault") if profile.localhost_profile.is_none() => {}
            Some("RuntimeDefault") => self.problem(
                format!("{path}.seccompProfile.localhostProfile"),
                "only for type Localhost",
                "leave localhostProfile out",
            ),
            Some(other) => self.problem(
                format!("{path}.seccompProfile.type"),
                format!(
                    "`{other}` cannot be had: the pod's process always runs under wpod's own filter"
                ),
                "use RuntimeDefault, or leave seccompProfile out",
            ),
            None => self.problem(
                format!("{path}.seccompProfile.type"),
                "required field is missing",
                "write `type: RuntimeDefault`",
            ),
        }
    }

    /// A lifecycle hook (`postStart`, `preStop`): exactly one of exec,
    /// httpGet and sleep.
    fn hook(
        &mut self,
        handler: raw::LifecycleHandler,
        path: &str,
        ports: &[PortSpec],
    ) -> Option<Hook> {
        let mut actions = Vec::new();
        if let Some(exec) = handler.exec {
            let command = self.required(
                exec.command.filter(|c| !c.is_empty()),
                &format!("{path}.exec.command"),
                "give the program from the image and its arguments",
            );
            actions.push(command.map(|command| Hook::Exec { command }));
        }
        if let Some(get) = handler.http_get {
            let get = self.http_get(get, &format!("{path}.httpGet"), ports);
            actions.push(get.map(Hook::HttpGet));
        }
        if let Some(sleep) = handler.sleep {
            let at = format!("{path}.sleep.seconds");
            let seconds = self.required(sleep.seconds, &at, "give a number of seconds");
            actions.push(match seconds {
                Some(n) if n >= 0 => Some(Hook::Sleep(Duration::from_secs(n as u64))),
                Some(n) => {
                    self.problem(at, format!("{n} is negative"), "give 0 or more seconds");
                    None
                }
                None => None,
            });
        }
        if actions.len() != 1 {
            self.problem(
                path,
                if actions.is_empty() {
                    "the hook has no handler"
                } else {
                    "the hook has more than one handler"
                },
                "give exactly one of exec, httpGet and sleep",
            );
            return None;
        }
        actions.pop().flatten()
    }

    /// A probe's `host`: the pod's own localhost only.
    fn probe_host(&mut self, host: Option<&str>, path: &str) {
        if let Some(host) = host.filter(|h| !matches!(*h, "" | "localhost" | "127.0.0.1" | "::1")) {
            self.problem(
                format!("{path}.host"),
                format!("host `{host}` is not the pod"),
                "leave host out: a probe reaches the pod's own ports on its localhost",
            );
        }
    }

    /// A probe's `port`: a number, or the name of one of the container's
    /// `ports`.
    fn probe_port(
        &mut self,
        port: Option<raw::IntOrString>,
        path: &str,
        ports: &[PortSpec],
    ) -> Option<u16> {
        match self.required(
            port,
            path,
            "give a port number or the name of one of the container's ports",
        )? {
            raw::IntOrString::Int(number) => self.port_number(number, path),
            raw::IntOrString::String(name) => {
                if let Ok(number) = name.parse::<i64>() {
                    return self.port_number(number, path);
                }
                let found = ports
                    .iter()
                    .find(|p| p.name.as_deref() == Some(name.as_str()))
                    .map(|p| p.container_port);
                if found.is_none() {
                    let names: Vec<&str> = ports.iter().filter_map(|p| p.name.as_deref()).collect();
                    self.problem(
                        path,
                        format!("the container has no port named `{name}`"),
                        if names.is_empty() {
                            "give the port's number, or name it in the container's ports".to_owned()
                        } else {
                            format!("name one of its ports ({})", names.join(", "))
                        },
                    );
                }
                found
            }
        }
    }

    fn port(&mut self, port: raw::ContainerPort, path: &str) -> Option<PortSpec> {
        let container_port = self.required(
            port.container_port,
            &format!("{path}.containerPort"),
            "give the port the container listens on",
        );
        let container_port = self.port_number(container_port?, &format!("{path}.containerPort"))?;
        let host_port = match port.host_port {
            None | Some(0) => None,
            Some(number) => Some(self.port_number(number, &format!("{path}.hostPort"))?),
        };
        let host_ip = match port.host_ip.as_deref() {
            None | Some("") => None,
            Some(text) => match text.parse() {
                Ok(ip) => Some(ip),
                Err(_) => {
                    self.problem(
                        format!("{path}.hostIP"),
                        format!("`{text}` is not an IP address"),
                        "write an address such as 127.0.0.1, or leave it out for all addresses",
                    );
                    return None;
                }
            },
        };
        let protocol = match port.protocol.as_deref() {
            None | Some("TCP") => Protocol::Tcp,
            Some("UDP") => Protocol::Udp,
            Some(other) => {
                self.problem(
                    format!("{path}.protocol"),
                    format!("protocol `{other}` is not supported"),
                    "use TCP or UDP",
                );
                return None;
            }
        };
        Some(PortSpec {
            name: port.name,
            container_port,
            host_port,
            host_ip,
            protocol,
        })
    }

    fn port_number(&mut self, number: i64, path: &str) -> Option<u16> {
        match u16::try_from(number) {
            Ok(port) if port > 0 => Some(port),
            _ => {
                self.problem(
                    path,
                    format!("{number} is not a port number"),
                    "use a number from 1 to 65535",
                );
                None
            }
        }
    }

    fn resources(&mut self, resources: Option<&raw::Resources>, path: &str) -> Resources {
        let mut result = Resources::default();
        let Some(resources) = resources else {
            return result;
        };
        for (kind, map) in [
            ("limits", &resources.limits),
            ("requests", &resources.requests),
        ] {
            for (name, value) in map.iter().flatten() {
                let field = format!("{path}.{kind}.{name}");
                let text = value.text();
                let (parsed, example) = match name.as_str() {
                    "memory" => (quantity::parse_bytes(&text), "`64Mi`"),
                    "cpu" => (quantity::parse_millis(&text), "`500m` or `2`"),
                    _ => {
                        self.problem(
                            field,
                            format!("resource `{name}` is not supported"),
                            "use cpu and memory",
                        );
                        continue;
                    }
                };
                let parsed = match parsed {
                    Ok(parsed) => parsed,
                    Err(error) => {
                        self.quantity_problem(field, &text, error, example);
                        continue;
                    }
                };
                let slot = match (kind, name.as_str()) {
                    ("limits", "memory") => &mut result.memory_limit,
                    ("limits", _) => &mut result.cpu_limit_millis,
                    (_, "memory") => &mut result.memory_request,
                    _ => &mut result.cpu_request_millis,
                };
                *slot = Some(parsed);
            }
        }
        result
    }

    fn volume(&mut self, volume: raw::Volume, path: &str) -> Option<VolumeSpec> {
        let name = self.required(volume.name, &format!("{path}.name"), "name the volume");
        let sources = [
            volume.empty_dir.is_some(),
            volume.host_path.is_some(),
            volume.config_map.is_some(),
            volume.secret.is_some(),
            volume.downward_api.is_some(),
            volume.projected.is_some(),
        ];
        if sources.iter().filter(|set| **set).count() > 1 {
            self.problem(path, "the volume has two sources", "keep one of them");
            return None;
        }
        if let Some(downward) = volume.downward_api {
            let default_mode = self
                .file_mode(
                    downward.default_mode,
                    &format!("{path}.downwardAPI.defaultMode"),
                )
                .unwrap_or(0o644);
            let files = self.downward_files(
                downward.items.unwrap_or_default(),
                default_mode,
                &format!("{path}.downwardAPI"),
            );
            return Some(VolumeSpec {
                name: name?,
                source: VolumeSource::Files {
                    files,
                    missing: None,
                },
            });
        }
        if let Some(projected) = volume.projected {
            let source = self.projected(projected, &format!("{path}.projected"))?;
            return Some(VolumeSpec {
                name: name?,
                source,
            });
        }
        let object = match (volume.config_map, volume.secret) {
            (Some(source), None) => Some(("ConfigMap", source, "configMap")),
            (None, Some(source)) => Some(("Secret", source, "secret")),
            (None, None) => None,
            (Some(_), Some(_)) => {
                self.problem(path, "the volume has two sources", "keep one of them");
                return None;
            }
        };
        if let Some((kind, source, field)) = object {
            if volume.empty_dir.is_some() || volume.host_path.is_some() {
                self.problem(path, "the volume has two sources", "keep one of them");
                return None;
            }
            let source = self.object_volume(kind, source, &format!("{path}.{field}"))?;
            return Some(VolumeSpec {
                name: name?,
                source,
            });
        }
        let source = match (volume.empty_dir, volume.host_path) {
            (Some(empty_dir), None) => {
                let memory = match empty_dir.medium.as_deref() {
                    None | Some("") => false,
                    Some("Memory") => true,
                    Some(other) => {
                        self.problem(
                            format!("{path}.emptyDir.medium"),
                            format!("medium `{other}` is not supported"),
                            "use \"\" (disk) or Memory",
                        );
                        false
                    }
                };
                let size_limit = match empty_dir.size_limit.map(|q| q.text()) {
                    None => None,
                    Some(text) => match quantity::parse_bytes(&text) {
                        Ok(bytes) => Some(bytes),
                        Err(error) => {
                            let field = format!("{path}.emptyDir.sizeLimit");
                            self.quantity_problem(field, &text, error, "`64Mi`");
                            None
                        }
                    },
                };
                VolumeSource::EmptyDir { memory, size_limit }
            }
            (None, Some(host_path)) => {
                let host_path_path = format!("{path}.hostPath.path");
                let host = self.required(
                    host_path.path,
                    &host_path_path,
                    "give an absolute host path",
                );
                let kind = match host_path.kind.as_deref() {
                    None | Some("") => HostPathType::Unchecked,
                    Some("Directory") => HostPathType::Directory,
                    Some("DirectoryOrCreate") => HostPathType::DirectoryOrCreate,
                    Some("File") => HostPathType::File,
                    Some("FileOrCreate") => HostPathType::FileOrCreate,
                    Some(other @ ("Socket" | "CharDevice" | "BlockDevice")) => {
                        self.problem(format!("{path}.hostPath.type"), format!("`{other}` cannot be given to a Wasm container: WASI has no sockets or devices as files"), "use Directory, DirectoryOrCreate, File or FileOrCreate");
                        return None;
                    }
                    Some(other) => {
                        self.problem(
                            format!("{path}.hostPath.type"),
                            format!("unknown hostPath type `{other}`"),
                            "use \"\", Directory, DirectoryOrCreate, File or FileOrCreate",
                        );
                        return None;
                    }
                };
                let host = host?;
                if !Path::new(&host).is_absolute() {
                    self.problem(
                        host_path_path,
                        format!("`{host}` is not an absolute path"),
                        "hostPath.path must start with /",
                    );
                    return None;
                }
                VolumeSource::HostPath {
                    path: host.into(),
                    kind,
                }
            }
            (None, None) => {
                self.problem(
                    path,
                    "the volume has no source",
                    "add `emptyDir: {}`, `hostPath: {path: /some/dir}`, `configMap: {name: NAME}` or `secret: {secretName: NAME}`",
                );
                return None;
            }
            (Some(_), Some(_)) => {
                self.problem(
                    path,
                    "the volume has two sources, emptyDir and hostPath",
                    "keep one of them",
                );
                return None;
            }
        };
        Some(VolumeSpec {
            name: name?,
            source,
        })
    }
}
