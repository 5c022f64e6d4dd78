//! ConfigMaps and Secrets: the documents of a manifest that pods refer to
//! (`configMap`/`secret` volumes, `valueFrom`, `envFrom`), read before the
//! pods of the file.

use super::raw;
use super::validate::Problem;

/// The ConfigMaps and Secrets of a manifest: by kind and name, their keys
/// and values (a Secret's decoded).
#[derive(Default)]
pub(crate) struct Objects {
    maps: std::collections::HashMap<
        (&'static str, String),
        std::collections::BTreeMap<String, Vec<u8>>,
    >,
}

impl Objects {
    /// Reads a ConfigMap or Secret document, its problems into `problems`.
    pub(super) fn read(&mut self, document: raw::Pod, problems: &mut Vec<Problem>) {
        use base64::Engine as _;
        let kind: &'static str = if document.kind.as_deref() == Some("Secret") {
            "Secret"
        } else {
            "ConfigMap"
        };
        if document.api_version.as_deref() != Some("v1") {
            problems.push(Problem::new(
                "apiVersion",
                format!("a {kind}'s API version is v1"),
                "write `apiVersion: v1`",
            ));
        }
        if document.spec.is_some() {
            problems.push(Problem::new(
                "spec",
                format!("a {kind} has no spec"),
                "give its keys under `data`",
            ));
        }
        let Some(name) = document.metadata.and_then(|m| m.name) else {
            problems.push(Problem::new(
                "metadata.name",
                "required field is missing",
                format!("name the {kind}, as the pods refer to it"),
            ));
            return;
        };
        let mut keys = std::collections::BTreeMap::new();
        let decode = |field: &str, key: &str, text: &str, problems: &mut Vec<Problem>| {
            base64::engine::general_purpose::STANDARD
                .decode(text.trim())
                .map_err(|_| {
                    problems.push(Problem::new(
                        format!("{field}.{key}"),
                        "is not base64",
                        "encode the value with base64, or give it as text (stringData)",
                    ));
                })
                .ok()
        };
        match kind {
            "Secret" => {
                for (key, text) in document.data.unwrap_or_default() {
                    if let Some(bytes) = decode("data", &key, &text, problems) {
                        keys.insert(key, bytes);
                    }
                }
                for (key, text) in document.string_data.unwrap_or_default() {
                    keys.insert(key, text.into_bytes());
                }
                if document.binary_data.is_some() {
                    problems.push(Problem::new(
                        "binaryData",
                        "a Secret has no binaryData",
                        "put base64 values under `data`",
                    ));
                }
            }
            _ => {
                for (key, text) in document.data.unwrap_or_default() {
                    keys.insert(key, text.into_bytes());
                }
                for (key, text) in document.binary_data.unwrap_or_default() {
                    if let Some(bytes) = decode("binaryData", &key, &text, problems) {
                        keys.insert(key, bytes);
                    }
                }
                if document.string_data.is_some() || document.kind_of_secret.is_some() {
                    problems.push(Problem::new(
                        "stringData",
                        "a ConfigMap has only data and binaryData",
                        "put the values under `data`",
                    ));
                }
            }
        }
        self.maps.insert((kind, name), keys);
    }

    pub(super) fn get(
        &self,
        kind: &'static str,
        name: &str,
    ) -> Option<&std::collections::BTreeMap<String, Vec<u8>>> {
        self.maps.get(&(kind, name.to_owned()))
    }
}

/// The kubelet's words for an object or key that is not there.
pub(super) fn not_found(kind: &str, namespace: &str, name: &str, key: Option<&str>) -> String {
    match key {
        None => format!("{} \"{name}\" not found", kind.to_lowercase()),
        Some(key) => format!("couldn't find key {key} in {kind} {namespace}/{name}"),
    }
}

/// This host's name: the node's, for `spec.nodeName`.
pub(super) fn node_name() -> Option<String> {
    #[cfg(unix)]
    {
        Some(
            rustix::system::uname()
                .nodename()
                .to_string_lossy()
                .into_owned(),
        )
    }
    #[cfg(not(unix))]
    {
        std::env::var("COMPUTERNAME").ok()
    }
}
