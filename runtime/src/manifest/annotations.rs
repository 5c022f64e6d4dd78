//! The annotations wpod reads, parsed into typed fields of
//! [`PodSpec`](super::PodSpec) when a pod is read or built, and checked by
//! `validate`: `wpod validate` and `wpod run` see the same values and refuse
//! the same mistakes.

use super::egress::{EGRESS_HINT, EgressPolicy};
use super::quantity::{self, QuantityError};
use super::validate::Problem;
use std::collections::BTreeMap;

/// Allows the pod's containers to connect outside the pod:
/// `wpod.dev/egress: "10.0.0.0/8, 192.0.2.7:443, *"`, parsed into
/// [`PodSpec::egress`](super::PodSpec::egress).
pub const EGRESS_ANNOTATION: &str = "wpod.dev/egress";

/// Sets the pod's cgroup memory limit behind the OS wall (a quantity such as
/// `96Mi`), instead of the sum of its containers' `limits.memory` plus the
/// runtime's allowance; parsed into
/// [`PodSpec::memory_limit`](super::PodSpec::memory_limit). It is how a pod
/// whose containers have no Wasm memory limit still gets a backstop.
pub const MEMORY_ANNOTATION: &str = "wpod.dev/memory-limit";

/// How many WASI resources (open files and folders, sockets, streams) each
/// container of the pod may hold at once: `wpod.dev/descriptor-limit:
/// "8192"`, parsed into
/// [`PodSpec::descriptor_limit`](super::PodSpec::descriptor_limit).
pub const DESCRIPTOR_ANNOTATION: &str = "wpod.dev/descriptor-limit";

/// How many requests each HTTP container (a `wasi:http/proxy` component)
/// of the pod serves at once, each an instance of its own:
/// `wpod.dev/http-concurrency: "16"`, parsed into
/// [`PodSpec::http_concurrency`](super::PodSpec::http_concurrency).
pub const HTTP_CONCURRENCY_ANNOTATION: &str = "wpod.dev/http-concurrency";

/// The typed values of the annotations wpod reads.
#[derive(Debug, Default)]
pub(crate) struct Parsed {
    pub egress: EgressPolicy,
    pub memory_limit: Option<u64>,
    pub descriptor_limit: Option<usize>,
    pub http_concurrency: Option<usize>,
}

/// Parses the annotations wpod reads; a bad value is a [`Problem`] at
/// `metadata.annotations[KEY]`, and leaves its field at its default.
pub(crate) fn parse(annotations: &BTreeMap<String, String>) -> (Parsed, Vec<Problem>) {
    let mut parsed = Parsed::default();
    let mut problems = Vec::new();
    let path = |key: &str| format!("metadata.annotations[{key}]");
    if let Some(text) = annotations.get(EGRESS_ANNOTATION) {
        match EgressPolicy::parse(text) {
            Ok(policy) => parsed.egress = policy,
            Err(error) => problems.push(Problem::new(
                path(EGRESS_ANNOTATION),
                format!("`{}` is not an egress rule ({})", error.rule, error.reason),
                EGRESS_HINT,
            )),
        }
    }
    if let Some(text) = annotations.get(MEMORY_ANNOTATION) {
        let hint = "write a memory quantity, e.g. `96Mi` or `1Gi`";
        match quantity::parse_bytes(text) {
            Ok(0) => problems.push(Problem::new(
                path(MEMORY_ANNOTATION),
                "must be more than 0",
                hint,
            )),
            Ok(bytes) => parsed.memory_limit = Some(bytes),
            Err(error @ (QuantityError::Malformed | QuantityError::Negative)) => problems.push(
                Problem::new(path(MEMORY_ANNOTATION), format!("`{text}` {error}"), hint),
            ),
            Err(error @ QuantityError::TooLarge) => problems.push(Problem::new(
                path(MEMORY_ANNOTATION),
                format!("`{text}` {error}"),
                "leave the annotation out for no limit",
            )),
        }
    }
    if let Some(text) = annotations.get(DESCRIPTOR_ANNOTATION) {
        match text.trim().parse::<usize>() {
            Ok(n) if (16..=1 << 20).contains(&n) => parsed.descriptor_limit = Some(n),
            _ => problems.push(Problem::new(
                path(DESCRIPTOR_ANNOTATION),
                format!("`{text}` is not a number from 16 to 1048576"),
                "write how many files, sockets and streams a container may hold, e.g. \"8192\"",
            )),
        }
    }
    if let Some(text) = annotations.get(HTTP_CONCURRENCY_ANNOTATION) {
        match text.trim().parse::<usize>() {
            Ok(n) if (1..=100_000).contains(&n) => parsed.http_concurrency = Some(n),
            _ => problems.push(Problem::new(
                path(HTTP_CONCURRENCY_ANNOTATION),
                format!("`{text}` is not a number from 1 to 100000"),
                "write how many requests an HTTP container serves at once, e.g. \"16\"",
            )),
        }
    }
    (parsed, problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The problems of a pod annotated `key: value`, as the user reads them.
    #[track_caller]
    fn check(key: &str, value: &str, expected: &[&str]) {
        let annotations = BTreeMap::from([(key.to_owned(), value.to_owned())]);
        let (_, problems) = parse(&annotations);
        let shown: Vec<String> = problems.iter().map(Problem::to_string).collect();
        assert_eq!(shown, expected, "{key}: {value}");
    }

    #[test]
    fn good_values_are_typed() {
        let annotations = BTreeMap::from([
            (EGRESS_ANNOTATION.to_owned(), "10.0.0.0/8, *".to_owned()),
            (MEMORY_ANNOTATION.to_owned(), "1.5Gi".to_owned()),
            ("note".to_owned(), "anything".to_owned()),
        ]);
        let (parsed, problems) = parse(&annotations);
        assert_eq!(problems, []);
        assert_eq!(parsed.egress.allow.len(), 3);
        assert_eq!(parsed.memory_limit, Some(1536 << 20));
        check(MEMORY_ANNOTATION, "96Mi", &[]);
        check(MEMORY_ANNOTATION, "100M", &[]);
        check(MEMORY_ANNOTATION, "1e9", &[]);
        check(EGRESS_ANNOTATION, "", &[]);
        check(HTTP_CONCURRENCY_ANNOTATION, "16", &[]);
        check(
            HTTP_CONCURRENCY_ANNOTATION,
            "0",
            &[
                "metadata.annotations[wpod.dev/http-concurrency]: `0` is not a number from 1 to 100000; write how many requests an HTTP container serves at once, e.g. \"16\"",
            ],
        );
    }

    #[test]
    fn bad_values_are_problems() {
        check(
            EGRESS_ANNOTATION,
            "10.0.0.0/99",
            &[&format!(
                "metadata.annotations[wpod.dev/egress]: `10.0.0.0/99` is not an egress rule (the prefix length 99 is more than the address's 32 bits); {EGRESS_HINT}"
            )],
        );
        check(
            MEMORY_ANNOTATION,
            "lots",
            &[
                "metadata.annotations[wpod.dev/memory-limit]: `lots` is not a quantity; write a memory quantity, e.g. `96Mi` or `1Gi`",
            ],
        );
        check(
            MEMORY_ANNOTATION,
            "-1Gi",
            &[
                "metadata.annotations[wpod.dev/memory-limit]: `-1Gi` must not be negative; write a memory quantity, e.g. `96Mi` or `1Gi`",
            ],
        );
        check(
            MEMORY_ANNOTATION,
            "0",
            &[
                "metadata.annotations[wpod.dev/memory-limit]: must be more than 0; write a memory quantity, e.g. `96Mi` or `1Gi`",
            ],
        );
        check(
            MEMORY_ANNOTATION,
            "9Ei",
            &[
                "metadata.annotations[wpod.dev/memory-limit]: `9Ei` is too large (the most is 2^63 - 1, about 8Ei); leave the annotation out for no limit",
            ],
        );
    }
}
